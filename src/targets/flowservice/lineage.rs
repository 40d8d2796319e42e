//! Lineage: which failed run is the next attempt of which original failure. Pure.
//!
//! A re-trigger creates a new run, so Flow Service keeps no attempt counter. The ledger does:
//! the record of attempt *n* of root *R* names (once acted) the run it created
//! (`outcome.newRunId`). So for a failed run:
//! - it is some record's new run → attempt *n* of that record's root, the lineage's **tip**
//!   (unless a later attempt of the root already acted: then it is history);
//! - it is a root with an acted record → history: its tip is a newer run;
//! - it was created by our own client, no record owns it, and a claim of this flow is still
//!   in `Intent` → maybe the run that claim's crashed holder created: **InDoubt** until the
//!   claim is resolved (adopted), never acted on as a new root;
//! - otherwise it is a new root (attempt 0).
//!
//! A lineage is **Superseded** when a successful run of the flow that is not part of it was
//! created after its root (a later scheduled run, or a re-trigger by someone else).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;

use super::run::{FlowRun, RunState};
use crate::engine::{
    Candidate, Details, Reason, Redrivability, RunStatus, signed_duration as signed,
};
use crate::ledger::{AttemptRecord, Phase};

/// What one flow looks like at one poll.
pub struct FlowView<'a> {
    pub flow_id: &'a str,
    /// Failed runs (and zero-record successes when included), any order.
    pub runs: &'a [FlowRun],
    /// The newest successful runs of the flow.
    pub successes: &'a [FlowRun],
    /// The ledger records of this flow.
    pub records: &'a [AttemptRecord],
    /// Our IMS client id (the `createdClient` of runs our re-triggers create).
    pub client_id: &'a str,
    /// `createdAt` (epoch ms) of roots that are not in `runs`.
    pub root_created: &'a HashMap<String, i64>,
    pub include_empty_success: bool,
    pub now: Timestamp,
    pub poll_interval: Duration,
}

/// Epoch milliseconds as a timestamp (out of range: the epoch).
pub fn ms(t: i64) -> Timestamp {
    Timestamp::from_millisecond(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The run a record's attempt created, when it acted.
pub fn new_run(r: &AttemptRecord) -> Option<&str> {
    if r.phase != Phase::Acted {
        return None;
    }
    r.outcome.as_ref()?.new_run_id.as_deref()
}

/// The candidates of one flow.
pub fn candidates(v: &FlowView<'_>) -> Vec<Candidate> {
    let mut owned: HashMap<&str, (&str, u32)> = HashMap::new();
    let mut by_root: HashMap<&str, Vec<&AttemptRecord>> = HashMap::new();
    for r in v.records {
        if let Some(run) = new_run(r) {
            owned.insert(run, (r.root.as_str(), r.key.attempt));
        }
        by_root.entry(r.root.as_str()).or_default().push(r);
    }
    let pending: Vec<&AttemptRecord> = v
        .records
        .iter()
        .filter(|r| r.phase == Phase::Intent)
        .collect();
    let created_of = |id: &str| -> Option<i64> {
        v.runs
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.created_at)
            .or_else(|| v.root_created.get(id).copied())
    };

    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for run in v.runs {
        if !seen.insert(run.id.as_str()) {
            continue;
        }
        let status = match run.state() {
            RunState::Failed => RunStatus::Failed,
            RunState::Succeeded if v.include_empty_success && run.is_empty_success() => {
                RunStatus::Succeeded
            }
            _ => continue,
        };
        let mut hold = None;
        let (root, attempts) = if let Some(&(root, n)) = owned.get(run.id.as_str()) {
            let later = by_root.get(root).is_some_and(|rs| {
                rs.iter()
                    .any(|r| r.key.attempt > n && r.phase == Phase::Acted)
            });
            if later {
                continue;
            }
            (root.to_string(), n)
        } else if let Some(rs) = by_root.get(run.id.as_str()) {
            if rs.iter().any(|r| r.phase == Phase::Acted) {
                continue;
            }
            (run.id.clone(), 0)
        } else {
            if run.created_client.as_deref() == Some(v.client_id) && !pending.is_empty() {
                let until = pending
                    .iter()
                    .map(|r| r.deadline)
                    .max()
                    .filter(|d| *d > v.now)
                    .unwrap_or(v.now + signed(v.poll_interval));
                hold = Some((Reason::InDoubt, until));
            }
            (run.id.clone(), 0)
        };
        // What the ledger already says about the next attempt (the claim still decides).
        if hold.is_none()
            && let Some(r) = by_root
                .get(root.as_str())
                .and_then(|rs| rs.iter().find(|r| r.key.attempt == attempts + 1))
        {
            match r.phase {
                Phase::Intent if v.now <= r.deadline => hold = Some((Reason::InDoubt, r.deadline)),
                Phase::NotActed => {
                    hold = Some((Reason::AlreadyClaimed, v.now + signed(v.poll_interval)))
                }
                _ => {}
            }
        }
        let mut lineage: HashSet<&str> = HashSet::from([root.as_str()]);
        if let Some(rs) = by_root.get(root.as_str()) {
            lineage.extend(rs.iter().filter_map(|r| new_run(r)));
        }
        let superseded = created_of(&root).and_then(|root_at| {
            v.successes
                .iter()
                .filter(|s| {
                    // A success that ingested nothing does not show the data arrived.
                    s.state() == RunState::Succeeded
                        && !s.is_empty_success()
                        && !lineage.contains(s.id.as_str())
                })
                .find(|s| s.created_at > root_at)
        });
        let (error, cause) = run.first_error();
        out.push(Candidate {
            id: run.id.clone(),
            workflow: v.flow_id.to_string(),
            status,
            started: ms(run.started_ms()),
            stopped: run.completed_ms().map(ms),
            attempts,
            last_attempt: None,
            redriven_by_parent: false,
            hold,
            details: Some(Details {
                error,
                cause,
                redrivability: superseded.map(|s| {
                    Redrivability::Superseded(format!(
                        "run {} of the dataflow succeeded after this failure",
                        s.id
                    ))
                }),
            }),
            root: (root != run.id).then_some(root),
        });
    }
    out
}

/// Pairs expired `Intent` claims with the unowned runs our client created after them, oldest
/// first: the runs a crashed holder's re-trigger created. Pure; the caller settles each pair
/// (compare-and-swap) before deciding.
pub fn adoptions<'a>(
    records: &'a [AttemptRecord],
    runs: &'a [FlowRun],
    client_id: &str,
    now: Timestamp,
    skew: Duration,
) -> Vec<(&'a AttemptRecord, &'a FlowRun)> {
    let owned: HashSet<&str> = records.iter().filter_map(new_run).collect();
    let roots: HashSet<&str> = records.iter().map(|r| r.root.as_str()).collect();
    let mut expired: Vec<&AttemptRecord> = records
        .iter()
        .filter(|r| r.phase == Phase::Intent && now > r.deadline)
        .collect();
    expired.sort_by_key(|r| (r.intent_at, r.name.clone()));
    let mut orphans: Vec<&FlowRun> = runs
        .iter()
        .filter(|r| {
            r.created_client.as_deref() == Some(client_id)
                && !owned.contains(r.id.as_str())
                && !roots.contains(r.id.as_str())
        })
        .collect();
    orphans.sort_by_key(|r| (r.created_at, r.id.clone()));
    let mut taken = HashSet::new();
    let mut out = Vec::new();
    for rec in expired {
        let from = (rec.intent_at - signed(skew)).as_millisecond();
        if let Some(run) = orphans
            .iter()
            .find(|r| r.created_at >= from && !taken.contains(r.id.as_str()))
        {
            taken.insert(run.id.as_str());
            out.push((rec, *run));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AttemptKey, Outcome};
    use crate::targets::flowservice::run::{RecordSummary, RunMetrics, StatusSummary};

    const ME: &str = "me";
    const T0: i64 = 1_700_000_000_000;

    fn run(id: &str, status: &str, created: i64, client: &str) -> FlowRun {
        FlowRun {
            id: id.into(),
            flow_id: "f".into(),
            created_at: created,
            updated_at: created + 1000,
            created_client: Some(client.into()),
            etag: Some(format!("\"{id}\"")),
            metrics: RunMetrics {
                status_summary: StatusSummary {
                    status: Some(status.into()),
                    errors: vec![],
                },
                record_summary: RecordSummary {
                    // Runs named e… ingested nothing.
                    output_record_count: Some(if id.starts_with('e') { 0 } else { 5 }),
                },
                ..RunMetrics::default()
            },
        }
    }

    fn record(root: &str, attempt: u32, phase: Phase, new_run: Option<&str>) -> AttemptRecord {
        let now = ms(T0);
        AttemptRecord {
            key: AttemptKey::new("ns", "flowservice", root, attempt),
            name: format!("{root}-{attempt}"),
            policy: "p".into(),
            workflow: "f".into(),
            root: root.into(),
            phase,
            holder: "h".into(),
            intent_at: now,
            deadline: now + jiff::SignedDuration::from_secs(60),
            settled_at: None,
            outcome: new_run.map(|r| Outcome {
                code: Some("ReTriggered".into()),
                message: None,
                new_run_id: Some(r.into()),
                etag: None,
            }),
            version: "1".into(),
        }
    }

    fn plan(
        runs: &[FlowRun],
        successes: &[FlowRun],
        records: &[AttemptRecord],
        empty: bool,
    ) -> Vec<Candidate> {
        let roots = HashMap::new();
        candidates(&FlowView {
            flow_id: "f",
            runs,
            successes,
            records,
            client_id: ME,
            root_created: &roots,
            include_empty_success: empty,
            now: ms(T0 + 3_600_000),
            poll_interval: Duration::from_secs(60),
        })
    }

    fn summary(c: &[Candidate]) -> Vec<(String, u32, Option<String>)> {
        c.iter()
            .map(|c| (c.id.clone(), c.attempts, c.root.clone()))
            .collect()
    }

    #[test]
    fn a_failure_nobody_touched_is_a_new_root() {
        let c = plan(&[run("r", "failed", T0, "scheduler")], &[], &[], false);
        assert_eq!(summary(&c), vec![("r".into(), 0, None)]);
        assert!(c[0].hold.is_none());
    }

    #[test]
    fn a_rerun_that_failed_again_is_the_next_attempt_of_the_same_root() {
        let runs = [
            run("r", "failed", T0, "scheduler"),
            run("x", "failed", T0 + 10, ME),
            run("y", "failed", T0 + 20, ME),
        ];
        let one = [record("r", 1, Phase::Acted, Some("x"))];
        assert_eq!(
            summary(&plan(&runs[..2], &[], &one, false)),
            vec![("x".into(), 1, Some("r".into()))]
        );
        let two = [
            record("r", 1, Phase::Acted, Some("x")),
            record("r", 2, Phase::Acted, Some("y")),
        ];
        assert_eq!(
            summary(&plan(&runs, &[], &two, false)),
            vec![("y".into(), 2, Some("r".into()))]
        );
    }

    #[test]
    fn an_unowned_run_of_our_client_waits_while_a_claim_is_in_doubt() {
        let runs = [
            run("r", "failed", T0, "scheduler"),
            run("z", "failed", T0 + 10, ME),
        ];
        let pending = [record("r", 1, Phase::Intent, None)];
        let c = plan(&runs, &[], &pending, false);
        let z = c.iter().find(|c| c.id == "z").unwrap();
        assert_eq!(z.hold.as_ref().map(|h| h.0.clone()), Some(Reason::InDoubt));
        // Without a pending claim it is someone's manual re-trigger: a root of its own.
        let c = plan(&runs[1..], &[], &[], false);
        assert_eq!(summary(&c), vec![("z".into(), 0, None)]);
        assert!(c[0].hold.is_none());
    }

    #[test]
    fn a_later_success_outside_the_lineage_supersedes_it() {
        let runs = [run("r", "failed", T0, "scheduler")];
        let later = [run("s", "success", T0 + 5, "scheduler")];
        let c = plan(&runs, &later, &[], false);
        assert!(matches!(
            c[0].details.as_ref().unwrap().redrivability,
            Some(Redrivability::Superseded(_))
        ));
        let earlier = [run("s", "success", T0 - 5, "scheduler")];
        let c = plan(&runs, &earlier, &[], false);
        assert_eq!(c[0].details.as_ref().unwrap().redrivability, None);
    }

    #[test]
    fn a_settled_not_acted_attempt_holds_the_lineage() {
        let runs = [run("r", "failed", T0, "scheduler")];
        let c = plan(&runs, &[], &[record("r", 1, Phase::NotActed, None)], false);
        assert_eq!(
            c[0].hold.as_ref().map(|h| h.0.clone()),
            Some(Reason::AlreadyClaimed)
        );
    }

    #[test]
    fn empty_successes_are_candidates_only_when_included() {
        let runs = [run("e", "success", T0, "scheduler")];
        assert!(plan(&runs, &[], &[], false).is_empty());
        let c = plan(&runs, &[], &[], true);
        assert_eq!(c[0].status, RunStatus::Succeeded);
    }

    #[test]
    fn expired_intents_adopt_unowned_runs_of_our_client_oldest_first() {
        let mut a = record("r1", 1, Phase::Intent, None);
        let mut b = record("r2", 1, Phase::Intent, None);
        b.intent_at = a.intent_at + jiff::SignedDuration::from_secs(5);
        a.deadline = a.intent_at;
        b.deadline = b.intent_at;
        let owned = record("r0", 1, Phase::Acted, Some("owned"));
        let records = vec![a, b, owned];
        let runs = [
            run("owned", "success", T0 + 1_000, ME),
            run("x1", "inProgress", T0 + 2_000, ME),
            run("x2", "failed", T0 + 6_000, ME),
            run("foreign", "failed", T0 + 3_000, "someone-else"),
        ];
        let pairs: Vec<(&str, &str)> =
            adoptions(&records, &runs, ME, ms(T0 + 60_000), Duration::from_secs(1))
                .into_iter()
                .map(|(r, run)| (r.root.as_str(), run.id.as_str()))
                .collect();
        assert_eq!(pairs, vec![("r1", "x1"), ("r2", "x2")]);
        // Within the deadline nothing is adopted.
        assert!(adoptions(&records, &runs, ME, ms(T0 - 1), Duration::from_secs(1)).is_empty());
    }
}
