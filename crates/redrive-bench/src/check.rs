//! Correctness from the emulator's ledger (what AWS would have recorded), and timelines.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::Timestamp;
use serde::Serialize;

use redrive_emulator::LedgerEntry;

/// Per phase: every eligible execution redriven, none twice, nothing ineligible.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Correctness {
    pub eligible: u64,
    /// Distinct eligible executions the ledger shows redriven.
    pub redriven: u64,
    /// (executionArn, redriveCount before) pairs redriven more than once (extra redrives).
    pub duplicates: u64,
    /// Eligible executions never redriven.
    pub left_behind: u64,
    /// Redrives of executions that were not eligible.
    pub ineligible_redriven: u64,
    pub ok: bool,
}

impl Correctness {
    pub fn merge(&mut self, o: &Correctness) {
        self.eligible += o.eligible;
        self.redriven += o.redriven;
        self.duplicates += o.duplicates;
        self.left_behind += o.left_behind;
        self.ineligible_redriven += o.ineligible_redriven;
        self.ok = self.ok && o.ok;
    }
}

/// Seconds from each eligible execution's failure (`seeded_at + finishes[i]` on the emulated
/// clock) to its first redrive in the ledger, sorted; executions never redriven are left out.
pub fn latencies(
    ledger: &[LedgerEntry],
    eligible: &[String],
    finishes: &[std::time::Duration],
    seeded_at: Timestamp,
) -> Vec<f64> {
    let firsts = first_redrives(ledger, eligible);
    let mut lat: Vec<f64> = eligible
        .iter()
        .zip(finishes)
        .filter_map(|(arn, f)| {
            let failed_at = seeded_at + jiff::SignedDuration::try_from(*f).ok()?;
            Some(firsts.get(arn)?.duration_since(failed_at).as_secs_f64())
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    lat
}

/// Check a Step Functions ledger against the eligible set.
pub fn check<'a>(
    ledger: &[LedgerEntry],
    eligible: impl IntoIterator<Item = &'a String>,
) -> Correctness {
    tally(
        ledger
            .iter()
            .filter(|e| e.outcome.is_redriven())
            .map(|e| (e.execution_arn.as_str(), e.redrive_count_before)),
        eligible,
    )
}

/// Correctness of performed actions, each `(run, attempts before it)`, against the eligible
/// runs: a second action on the same (run, attempts before) is a duplicate, an action on a run
/// outside `eligible` is ineligible. Shared by every target's ledger.
pub fn tally<'a, 'b>(
    acts: impl IntoIterator<Item = (&'b str, u32)>,
    eligible: impl IntoIterator<Item = &'a String>,
) -> Correctness {
    let eligible: HashSet<&str> = eligible.into_iter().map(String::as_str).collect();
    let mut per_attempt: HashMap<(&str, u32), u64> = HashMap::new();
    let mut acted: HashSet<&str> = HashSet::new();
    let mut ineligible = 0u64;
    for (run, before) in acts {
        *per_attempt.entry((run, before)).or_default() += 1;
        if eligible.contains(run) {
            acted.insert(run);
        } else {
            ineligible += 1;
        }
    }
    let duplicates = per_attempt.values().map(|n| n.saturating_sub(1)).sum();
    let left_behind = eligible.len() as u64 - acted.len() as u64;
    Correctness {
        eligible: eligible.len() as u64,
        redriven: acted.len() as u64,
        duplicates,
        left_behind,
        ineligible_redriven: ineligible,
        ok: duplicates == 0 && left_behind == 0 && ineligible == 0,
    }
}

/// First redrive time of every redriven execution in `eligible`.
pub fn first_redrives<'a>(
    ledger: &[LedgerEntry],
    eligible: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, Timestamp> {
    first_acts(
        ledger
            .iter()
            .filter(|e| e.outcome.is_redriven())
            .map(|e| (e.execution_arn.as_str(), e.at)),
        eligible,
    )
}

/// First action time of every run in `eligible`, from `(run, at)` of performed actions.
pub fn first_acts<'a, 'b>(
    acts: impl IntoIterator<Item = (&'b str, Timestamp)>,
    eligible: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, Timestamp> {
    let eligible: HashSet<&str> = eligible.into_iter().map(String::as_str).collect();
    let mut out: BTreeMap<String, Timestamp> = BTreeMap::new();
    for (run, at) in acts {
        if eligible.contains(run) {
            out.entry(run.to_string())
                .and_modify(|t| *t = (*t).min(at))
                .or_insert(at);
        }
    }
    out
}

/// Backlog remaining over time: `(seconds since t0, remaining)` steps, at most ~`points` of them.
pub fn remaining_series(
    times: &[Timestamp],
    n: u64,
    t0: Timestamp,
    points: usize,
) -> Vec<(f64, u64)> {
    let mut secs: Vec<f64> = times
        .iter()
        .map(|t| t.duration_since(t0).as_secs_f64().max(0.0))
        .collect();
    secs.sort_by(f64::total_cmp);
    let mut out = vec![(0.0, n)];
    let step = (secs.len() / points.max(1)).max(1);
    for (i, s) in secs.iter().enumerate() {
        let done = i as u64 + 1;
        if done.is_multiple_of(step as u64) || i + 1 == secs.len() {
            out.push((*s, n.saturating_sub(done)));
        }
    }
    out
}

/// The q-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_emulator::LedgerOutcome;

    fn entry(arn: &str, before: u32, redriven: bool) -> LedgerEntry {
        LedgerEntry {
            execution_arn: arn.to_string(),
            client_token: None,
            redrive_count_before: before,
            outcome: if redriven {
                LedgerOutcome::Redriven {
                    redrive_date: Timestamp::UNIX_EPOCH,
                }
            } else {
                LedgerOutcome::Throttled
            },
            at: Timestamp::UNIX_EPOCH,
            access_key_id: None,
        }
    }

    #[test]
    fn finds_duplicates_left_behind_and_ineligible() {
        let eligible = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let ledger = vec![
            entry("a", 0, true),
            entry("a", 0, true),
            entry("b", 0, false),
            entry("c", 0, true),
            entry("x", 0, true),
        ];
        let c = check(&ledger, &eligible);
        assert_eq!(
            (c.duplicates, c.left_behind, c.ineligible_redriven, c.ok),
            (1, 1, 1, false)
        );
        let ok = check(&ledger[3..4], &eligible[2..]);
        assert!(ok.ok);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.99), 4.0);
        let s = remaining_series(&[Timestamp::UNIX_EPOCH; 3], 3, Timestamp::UNIX_EPOCH, 10);
        assert_eq!(s.last(), Some(&(0.0, 0)));
    }
}
