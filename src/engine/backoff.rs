//! Deterministic exponential backoff between a failure and the next redrive.

use std::time::Duration;

use super::token::unit_hash;
use crate::policy::BackoffPolicy;

/// The wait before redrive number `redrive_count + 1`, counted from the run's stop date:
/// `min(initial * factor^redrive_count, max)`, spread by ±`jitter` with a factor that depends only
/// on `(execution_id, redrive_count)`, so every replica computes the same wait.
pub fn backoff_delay(policy: &BackoffPolicy, execution_id: &str, redrive_count: u32) -> Duration {
    let exponent = i32::try_from(redrive_count).unwrap_or(i32::MAX);
    let grown = policy.initial.as_secs_f64() * policy.factor.powi(exponent);
    // `initial` 0s with an overflowing `factor^redrive_count` is 0 * inf = NaN, and NaN.min(max)
    // would be `max`: a zero initial wait stays zero.
    let base = if policy.initial.is_zero() {
        0.0
    } else {
        grown.min(policy.max.as_secs_f64())
    };
    let spread = policy.jitter * (2.0 * unit_hash(execution_id, redrive_count) - 1.0);
    let secs = (base * (1.0 + spread)).max(0.0);
    // `base` is finite (capped by `max`), so this cannot overflow.
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_secs(60),
            factor: 2.0,
            max: Duration::from_secs(3600),
            jitter,
        }
    }

    #[test]
    fn grows_then_caps_without_jitter() {
        let p = policy(0.0);
        let d: Vec<u64> = (0..10)
            .map(|k| backoff_delay(&p, "e", k).as_secs())
            .collect();
        assert_eq!(
            d,
            vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
        );
        assert_eq!(backoff_delay(&p, "e", u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let p = policy(0.2);
        let mut distinct = std::collections::BTreeSet::new();
        for i in 0..200 {
            let id = format!("arn:{i}");
            let d = backoff_delay(&p, &id, 1).as_secs_f64();
            assert!((96.0..=144.0).contains(&d), "{d}");
            assert_eq!(d, backoff_delay(&p, &id, 1).as_secs_f64());
            distinct.insert(d.to_bits());
        }
        // The spread is real: 200 executions do not all wait the same time.
        assert!(distinct.len() > 150);
    }
}
