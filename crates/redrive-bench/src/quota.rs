//! The quota-bound limit: the shortest time in which *any* client could make a set of calls
//! against AWS's per-API token buckets (api-facts §1.9), scaled like the emulator scales them.
//!
//! Each API has its own bucket of size `B` that refills at `R` per second and starts full. A job
//! that needs `C` calls of that API cannot finish before `max(0, C − B) / R` seconds, and the APIs
//! refill independently, so
//!
//! ```text
//! time_min   = max over APIs of max(0, C_api − B_api) / R_api
//! throughput = N / time_min          (N = redrives the job performs)
//! ```

use serde::Serialize;

use redrive_emulator::QuotaPreset;

/// A failure's error and cause come from either of two APIs with separate buckets
/// (DescribeExecution, or the last GetExecutionHistory event): any client can spend both, so
/// the bound counts them as one bucket of their summed size and refill.
pub const DETAILS: &str = "DescribeExecution+GetExecutionHistory";

/// Bucket size and refill rate of one API under a preset and scale, exactly as the emulator
/// applies them (size rounded, at least 1); [`DETAILS`] is the sum of its two. `None`: not
/// throttled.
pub fn bucket(preset: QuotaPreset, scale: f64, api: &str) -> Option<(f64, f64)> {
    if api == DETAILS {
        let d = bucket(preset, scale, "DescribeExecution")?;
        let h = bucket(preset, scale, "GetExecutionHistory")?;
        return Some((d.0 + h.0, d.1 + h.1));
    }
    let (b, r) = preset.bucket(api)?;
    Some(((b * scale).round().max(1.0), r * scale))
}

/// Calls of one API a job cannot avoid.
#[derive(Clone, Debug, Serialize)]
pub struct Need {
    pub api: &'static str,
    pub calls: u64,
    /// Bucket size and refill per second used (None: not throttled).
    pub bucket: Option<f64>,
    pub refill_per_s: Option<f64>,
    /// `max(0, calls − bucket) / refill`.
    pub seconds: f64,
}

/// The bound of one job.
#[derive(Clone, Debug, Serialize)]
pub struct Bound {
    pub needs: Vec<Need>,
    /// The API whose bucket binds.
    pub binding_api: &'static str,
    pub time_min_s: f64,
    /// `N / time_min` (None when the buckets alone absorb the job: no finite bound).
    pub throughput_per_s: Option<f64>,
}

/// `time_min` for `calls` (API, count) and `n` redrives.
pub fn bound(preset: QuotaPreset, scale: f64, calls: &[(&'static str, u64)], n: u64) -> Bound {
    bound_shared(preset, scale, 1.0, calls, n)
}

/// [`bound`] for a client that may use `share` of every bucket (refill and burst), as the
/// operator's `--aws-quota-share` allows.
pub fn bound_shared(
    preset: QuotaPreset,
    scale: f64,
    share: f64,
    calls: &[(&'static str, u64)],
    n: u64,
) -> Bound {
    let mut needs = Vec::new();
    let mut worst = (0.0f64, calls.first().map_or("RedriveExecution", |c| c.0));
    for &(api, c) in calls {
        let b = bucket(preset, scale, api).map(|(size, refill)| (size * share, refill * share));
        let seconds = match b {
            Some((size, refill)) if refill > 0.0 => (c as f64 - size).max(0.0) / refill,
            _ => 0.0,
        };
        if seconds > worst.0 {
            worst = (seconds, api);
        }
        needs.push(Need {
            api,
            calls: c,
            bucket: b.map(|x| x.0),
            refill_per_s: b.map(|x| x.1),
            seconds,
        });
    }
    Bound {
        needs,
        binding_api: worst.1,
        time_min_s: worst.0,
        throughput_per_s: (worst.0 > 0.0).then(|| n as f64 / worst.0),
    }
}

/// Redrives the quota allows by `t` seconds when each redrive needs one call of every API in
/// `per_redrive` (the "quota-bound line" of the plot; listing is a few calls and ignored).
pub fn redrives_possible(
    preset: QuotaPreset,
    scale: f64,
    per_redrive: &[&'static str],
    t: f64,
) -> f64 {
    per_redrive
        .iter()
        .filter_map(|api| bucket(preset, scale, api))
        .map(|(b, r)| b + r * t)
        .fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_east_1_redrive_bound() {
        let b = bound(
            QuotaPreset::UsEast1,
            1.0,
            &[("ListExecutions", 20), ("RedriveExecution", 10_000)],
            10_000,
        );
        assert_eq!(b.binding_api, "RedriveExecution");
        assert!((b.time_min_s - 29.0).abs() < 1e-9);
        let with_filter = bound(
            QuotaPreset::UsEast1,
            1.0,
            &[
                ("ListExecutions", 20),
                ("DescribeExecution", 1000),
                ("RedriveExecution", 1000),
            ],
            1000,
        );
        assert_eq!(with_filter.binding_api, "DescribeExecution");
        assert!((with_filter.time_min_s - 700.0 / 15.0).abs() < 1e-9);
        // Both detail buckets: (10,000 − 300 − 400) ÷ (15 + 20) per second.
        let both = bound(
            QuotaPreset::UsEast1,
            1.0,
            &[(DETAILS, 10_000), ("RedriveExecution", 10_000)],
            10_000,
        );
        assert_eq!(both.binding_api, DETAILS);
        assert!((both.time_min_s - 9_300.0 / 35.0).abs() < 1e-9);
        assert!(
            (redrives_possible(
                QuotaPreset::UsEast1,
                1.0,
                &["DescribeExecution", "RedriveExecution"],
                2.0
            ) - 330.0)
                .abs()
                < 1e-9
        );
        assert_eq!(
            bound(QuotaPreset::Unlimited, 1.0, &[("RedriveExecution", 5)], 5).throughput_per_s,
            None
        );
        // Half of every bucket: 5,000 listings at 100 burst, 2.5/s.
        let half = bound_shared(
            QuotaPreset::UsEast1,
            1.0,
            0.5,
            &[("ListExecutions", 5_000)],
            0,
        );
        assert!((half.time_min_s - 4_900.0 / 2.5).abs() < 1e-9);
    }
}
