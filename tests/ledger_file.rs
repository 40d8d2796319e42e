//! The local-mode attempt ledger (`FileLedger`): the same claim / settle / take-over semantics
//! as the in-cluster one, between two ledgers (and two processes) on one directory, across
//! crashes (torn last line), reopen, read-only use (`plan`) and compaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::executor::block_on;
use jiff::{SignedDuration, Timestamp};
use redrive_operator::ledger::file::{LOCK_FILE, LOG_FILE};
use redrive_operator::ledger::{
    AttemptKey, AttemptRecord, ClaimResult, FileLedger, Ledger, LedgerError, NewClaim, Outcome,
    Phase,
};
use redrive_operator::targets::ErrorCategory;

const NS: &str = "default";

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// A claim of attempt `attempt` of `run` by `holder`, made three hours ago, valid until
/// `valid_for` seconds from now (negative: already expired).
fn claim(run: &str, attempt: u32, holder: &str, valid_for: i64) -> NewClaim {
    let at = now();
    NewClaim {
        key: AttemptKey::new(NS, "flowservice", run, attempt),
        policy: "nightly".into(),
        workflow: "flow-1".into(),
        root: run.split('#').next().unwrap().into(),
        holder: holder.into(),
        now: at - secs(10_800),
        deadline: at + secs(valid_for),
    }
}

fn claimed(r: Result<ClaimResult, LedgerError>) -> AttemptRecord {
    match r {
        Ok(ClaimResult::Claimed(rec)) => rec,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LOG_FILE)).unwrap()
}

#[test]
fn claim_settle_and_take_over_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let l = FileLedger::open(dir.path()).unwrap();

    // Create is claim; the second claim gets the first one's record.
    let mine = claimed(block_on(l.claim(claim("run-a", 1, "replica-a", 300))));
    assert_eq!(mine.phase, Phase::Intent);
    assert_eq!(mine.holder, "replica-a");
    match block_on(l.claim(claim("run-a", 1, "replica-b", 300))).unwrap() {
        ClaimResult::Taken(rec) => assert_eq!(rec, mine),
        other => panic!("second claim must be Taken: {other:?}"),
    }
    // Another attempt of the same run is another key.
    claimed(block_on(l.claim(claim("run-a", 2, "replica-b", 300))));

    // Settle by compare-and-swap: the stale version conflicts (retryable), Acted is final.
    let outcome = Outcome {
        code: Some("Succeeded".into()),
        new_run_id: Some("run-a-2".into()),
        ..Outcome::default()
    };
    let settled = block_on(l.settle(&mine, Phase::Acted, Some(outcome.clone()), now())).unwrap();
    assert_eq!(settled.phase, Phase::Acted);
    assert_eq!(settled.outcome, Some(outcome));
    assert!(settled.settled_at.is_some());
    assert_ne!(settled.version, mine.version);
    let err = block_on(l.settle(&mine, Phase::Failed, None, now())).unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Transient);
    let err = block_on(l.settle(&settled, Phase::NotActed, None, now())).unwrap_err();
    assert!(matches!(err, LedgerError::AlreadySettled { .. }), "{err}");
    let err = block_on(l.take_over(&settled, "replica-b", now(), now() + secs(60))).unwrap_err();
    assert!(matches!(err, LedgerError::NotReclaimable { .. }), "{err}");
    assert!(block_on(l.settle(&settled, Phase::Intent, None, now())).is_err());

    // Take-over: an unexpired intent is refused; an expired one goes to exactly one racer.
    let live = claimed(block_on(l.claim(claim("run-b", 1, "replica-a", 300))));
    let err = block_on(l.take_over(&live, "replica-b", now(), now() + secs(60))).unwrap_err();
    assert!(matches!(err, LedgerError::NotReclaimable { .. }), "{err}");
    let stale = claimed(block_on(l.claim(claim("run-c", 1, "replica-a", -60))));
    let first = block_on(l.take_over(&stale, "replica-b", now(), now() + secs(60))).unwrap();
    let second = block_on(l.take_over(&stale, "replica-c", now(), now() + secs(60))).unwrap();
    let winner = claimed(Ok(first));
    assert_eq!(winner.holder, "replica-b");
    assert_eq!(winner.phase, Phase::Intent);
    assert_eq!(second, ClaimResult::Taken(winner.clone()));

    // A Failed attempt may be taken over at once (the service rejected the call).
    let failed = block_on(l.settle(&winner, Phase::Failed, None, now())).unwrap();
    let retry = claimed(block_on(l.take_over(
        &failed,
        "replica-c",
        now(),
        now() + secs(60),
    )));
    assert_eq!((retry.phase, retry.settled_at), (Phase::Intent, None));

    // get / list see the latest state.
    assert_eq!(
        block_on(l.get(&retry.key)).unwrap().as_ref(),
        Some(&retry),
        "get returns the stored record"
    );
    assert_eq!(
        block_on(l.get(&AttemptKey::new(NS, "flowservice", "nope", 1))).unwrap(),
        None
    );
    let all = block_on(l.list(NS, None)).unwrap();
    assert_eq!(all.len(), 4);
    let run_a = block_on(l.list(NS, Some("run-a"))).unwrap();
    assert_eq!(run_a.len(), 2);
    assert!(run_a.iter().all(|r| r.root == "run-a"));
    assert!(block_on(l.list("elsewhere", None)).unwrap().is_empty());

    // Invalid claims are refused before anything is written.
    let before = log_text(dir.path());
    let mut bad = claim("run-z", 0, "replica-a", 60);
    bad.key.attempt = 0;
    let err = block_on(l.claim(bad)).unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Invalid, "{err}");
    assert_eq!(log_text(dir.path()), before);
}

#[test]
fn two_ledgers_on_one_dir_never_claim_a_key_twice() {
    const KEYS: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    // Two opens: two file descriptions of the lock file, so the flock really contends (as
    // between two processes), besides the in-process mutex of each ledger.
    let a = Arc::new(FileLedger::open(dir.path()).unwrap());
    let b = Arc::new(FileLedger::open(dir.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = if t % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || {
                let holder = format!("thread-{t}");
                // Half the threads go up, half go down: every key is contended.
                let order: Vec<usize> = if t % 4 < 2 {
                    (0..KEYS).collect()
                } else {
                    (0..KEYS).rev().collect()
                };
                let mut won = Vec::new();
                for i in order {
                    let c = claim(&format!("run-{i}"), 1, &holder, 300);
                    match block_on(ledger.claim(c)).unwrap() {
                        ClaimResult::Claimed(rec) => won.push((i, rec.holder)),
                        ClaimResult::Taken(rec) => assert_ne!(rec.holder, holder),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for t in threads {
        for (i, holder) in t.join().unwrap() {
            winners.entry(i).or_default().push(holder);
        }
    }
    let twice: Vec<_> = winners.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(twice.is_empty(), "keys claimed more than once: {twice:?}");
    assert_eq!(winners.len(), KEYS, "every key claimed exactly once");
    // Both ledgers won some keys, so they really raced each other.
    let by_a = winners
        .values()
        .filter(|h| h[0].trim_start_matches("thread-").parse::<u32>().unwrap() % 2 == 0)
        .count();
    assert!(by_a > 0 && by_a < KEYS, "ledger a won {by_a} of {KEYS}");
    // The log holds exactly one put per key, and a fresh open agrees with both ledgers.
    assert_eq!(log_text(dir.path()).lines().count(), KEYS);
    let fresh = FileLedger::open(dir.path()).unwrap();
    let all = block_on(fresh.list(NS, None)).unwrap();
    assert_eq!(all.len(), KEYS);
    for rec in &all {
        let i: usize = rec.key.run.trim_start_matches("run-").parse().unwrap();
        assert_eq!(rec.holder, winners[&i][0]);
    }
    assert_eq!(block_on(a.list(NS, None)).unwrap(), all);
    assert_eq!(block_on(b.list(NS, None)).unwrap(), all);
}

/// Environment variable that turns `child_process_claims` into the worker of
/// `two_processes_on_one_dir_never_claim_a_key_twice`.
const CHILD_DIR: &str = "REDRIVE_LEDGER_CHILD_DIR";
const PROCESS_KEYS: usize = 300;

#[test]
fn child_process_claims() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return; // only runs as the child of the test below
    };
    let holder = format!("process-{}", std::process::id());
    let l = FileLedger::open(&dir).unwrap();
    for i in 0..PROCESS_KEYS {
        let _ = block_on(l.claim(claim(&format!("run-{i}"), 1, &holder, 300))).unwrap();
    }
}

#[test]
fn two_processes_on_one_dir_never_claim_a_key_twice() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_process_claims", "--test-threads=1"])
                .env(CHILD_DIR, dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let pids: Vec<String> = children
        .iter()
        .map(|c| format!("process-{}", c.id()))
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "child process failed");
    }
    let l = FileLedger::open(dir.path()).unwrap();
    let all = block_on(l.list(NS, None)).unwrap();
    assert_eq!(all.len(), PROCESS_KEYS);
    // One put per key: no key was claimed by both processes.
    assert_eq!(log_text(dir.path()).lines().count(), PROCESS_KEYS);
    for rec in &all {
        assert!(pids.contains(&rec.holder), "{}", rec.holder);
    }
}

#[test]
fn a_torn_last_line_is_ignored_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<AttemptRecord> = {
        let l = FileLedger::open(dir.path()).unwrap();
        (0..3)
            .map(|i| claimed(block_on(l.claim(claim(&format!("run-{i}"), 1, "a", 300)))))
            .collect()
    };
    records.sort_by(|a, b| a.name.cmp(&b.name)); // list order
    let log = dir.path().join(LOG_FILE);
    let intact = std::fs::read(&log).unwrap();
    // A crash in the middle of the fourth append.
    let mut torn = intact.clone();
    torn.extend_from_slice(br#"{"op":"put","seq":4,"namespace":"default","name":"ra1-flowse"#);
    std::fs::write(&log, &torn).unwrap();

    // Read-only: sees the three records and repairs nothing.
    let ro = FileLedger::open_read_only(dir.path()).unwrap();
    assert_eq!(block_on(ro.list(NS, None)).unwrap(), records);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        torn,
        "read-only never repairs"
    );

    // A writer: same records, torn bytes gone, and the next claim gets the next version.
    let l = FileLedger::open(dir.path()).unwrap();
    assert_eq!(block_on(l.list(NS, None)).unwrap(), records);
    assert_eq!(std::fs::read(&log).unwrap(), intact, "torn line truncated");
    let next = claimed(block_on(l.claim(claim("run-3", 1, "a", 300))));
    assert_eq!(next.version, "4");
    // The read-only ledger picks up the appended line on its next read.
    assert_eq!(block_on(ro.list(NS, None)).unwrap().len(), 4);
    drop(l);
    let reopened = FileLedger::open(dir.path()).unwrap();
    assert_eq!(block_on(reopened.list(NS, None)).unwrap().len(), 4);
}

#[test]
fn reopen_after_drop_sees_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let l = FileLedger::open(dir.path()).unwrap();
        let a = claimed(block_on(l.claim(claim("run-a", 1, "a", 300))));
        block_on(l.settle(&a, Phase::Acted, None, now())).unwrap();
        let b = claimed(block_on(l.claim(claim("run-b", 1, "a", -1))));
        block_on(l.take_over(&b, "b", now(), now() + secs(60))).unwrap();
        let c = claimed(block_on(l.claim(claim("run-c", 1, "a", 300))));
        block_on(l.settle(
            &c,
            Phase::Failed,
            Some(Outcome {
                message: Some("ünïcode ✓ and \"quotes\"\nand newlines".into()),
                ..Outcome::default()
            }),
            now(),
        ))
        .unwrap();
        let mut other = claim("run-d", 1, "a", 300);
        other.key.namespace = "other".into();
        claimed(block_on(l.claim(other)));
        let mut all = block_on(l.list(NS, None)).unwrap();
        all.extend(block_on(l.list("other", None)).unwrap());
        all
    };
    assert_eq!(before.len(), 4);
    let l = FileLedger::open(dir.path()).unwrap();
    let mut after = block_on(l.list(NS, None)).unwrap();
    after.extend(block_on(l.list("other", None)).unwrap());
    assert_eq!(
        after, before,
        "every record, phase, outcome and version survives"
    );
    // Versions keep increasing after reopen (no reuse).
    let next = claimed(block_on(l.claim(claim("run-e", 1, "a", 300))));
    let max: u64 = before
        .iter()
        .map(|r| r.version.parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert!(next.version.parse::<u64>().unwrap() > max);
}

/// Everything in `dir`: names, bytes and mtimes, and the directory's own mtime.
fn snapshot(dir: &Path) -> (SystemTime, BTreeMap<String, (Vec<u8>, SystemTime)>) {
    let files = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (std::fs::read(e.path()).unwrap(), m.modified().unwrap()),
            )
        })
        .collect();
    (std::fs::metadata(dir).unwrap().modified().unwrap(), files)
}

#[test]
fn read_only_mode_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (live, expired) = {
        let l = FileLedger::open(dir.path()).unwrap();
        let live = claimed(block_on(l.claim(claim("run-a", 1, "a", 300))));
        let expired = claimed(block_on(l.claim(claim("run-b", 1, "a", -60))));
        (live, expired)
    };
    // Coarse mtime granularity must not hide a write.
    std::thread::sleep(Duration::from_millis(20));
    let before = snapshot(dir.path());
    assert!(before.1.contains_key(LOG_FILE) && before.1.contains_key(LOCK_FILE));

    let ro = FileLedger::open_read_only(dir.path()).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(block_on(ro.get(&live.key)).unwrap(), Some(live.clone()));
    assert_eq!(block_on(ro.list(NS, None)).unwrap().len(), 2);
    let refused = [
        block_on(ro.claim(claim("run-c", 1, "a", 300))).map(|_| ()),
        block_on(ro.settle(&live, Phase::Acted, None, now())).map(|_| ()),
        block_on(ro.take_over(&expired, "b", now(), now() + secs(60))).map(|_| ()),
        block_on(ro.prune(NS, now())).map(|_| ()),
    ];
    for r in refused {
        let err = r.unwrap_err();
        assert!(matches!(err, LedgerError::ReadOnly { .. }), "{err}");
    }
    drop(ro);
    assert_eq!(
        snapshot(dir.path()),
        before,
        "read-only use changed the directory"
    );

    // A missing directory: a clear error, and still nothing created.
    let missing = dir.path().join("no-such-state-dir");
    let err = FileLedger::open_read_only(&missing).unwrap_err();
    assert!(matches!(err, LedgerError::NotFound { .. }), "{err}");
    assert!(
        err.to_string().contains("no-such-state-dir"),
        "the error names the directory: {err}"
    );
    assert!(!missing.exists(), "read-only open created the directory");

    // An existing but empty directory reads as empty, and stays empty.
    let empty = tempfile::tempdir().unwrap();
    let ro = FileLedger::open_read_only(empty.path()).unwrap();
    assert!(block_on(ro.list(NS, None)).unwrap().is_empty());
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn prune_compacts_and_other_openers_follow() {
    let dir = tempfile::tempdir().unwrap();
    let l = FileLedger::open(dir.path()).unwrap();
    let other = FileLedger::open(dir.path()).unwrap();
    let long_ago = now() - secs(7200);
    let mut keep = Vec::new();
    for i in 0..20 {
        let rec = claimed(block_on(l.claim(claim(&format!("old-{i}"), 1, "a", -5400))));
        // Settled two hours ago: prunable with a one-hour cutoff.
        block_on(l.settle(&rec, Phase::Acted, None, long_ago)).unwrap();
    }
    // An intent expired long ago: prunable. A live intent, a recently settled record and a
    // recently expired intent: kept.
    claimed(block_on(l.claim(claim("old-intent", 1, "a", -5400))));
    keep.push(claimed(block_on(l.claim(claim("live", 1, "a", 300)))));
    let recent = claimed(block_on(l.claim(claim("recent", 1, "a", 300))));
    keep.push(block_on(l.settle(&recent, Phase::NotActed, None, now())).unwrap());
    keep.push(claimed(block_on(l.claim(claim(
        "just-expired",
        1,
        "a",
        -60,
    )))));
    let mut elsewhere = claim("old-elsewhere", 1, "a", -5400);
    elsewhere.key.namespace = "other".into();
    let elsewhere = claimed(block_on(l.claim(elsewhere)));

    let size_before = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    let lines_before = log_text(dir.path()).lines().count();
    assert_eq!(lines_before, 20 * 2 + 6);
    let n = block_on(l.prune(NS, now() - secs(3600))).unwrap();
    assert_eq!(n, 21, "20 old settled records and the old intent");
    keep.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(block_on(l.list(NS, None)).unwrap(), keep);

    // Compacted: one mark line plus one line per survivor (of every namespace).
    let text = log_text(dir.path());
    assert_eq!(text.lines().count(), 1 + keep.len() + 1, "{text}");
    assert!(text.starts_with(r#"{"op":"mark","seq":"#), "{text}");
    assert!(std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len() < size_before);
    assert!(!dir.path().join("attempts.v1.jsonl.tmp").exists());
    assert_eq!(block_on(l.list("other", None)).unwrap(), vec![elsewhere]);

    // The other opener follows the rewritten file, and versions are not reused.
    assert_eq!(block_on(other.list(NS, None)).unwrap(), keep);
    let again = claimed(block_on(other.claim(claim("old-0", 1, "b", 300))));
    assert_eq!(again.version, (lines_before + 1).to_string());
    assert_eq!(block_on(l.get(&again.key)).unwrap(), Some(again));
    // Nothing left to prune: no rewrite.
    let text = log_text(dir.path());
    assert_eq!(block_on(l.prune(NS, now() - secs(3600))).unwrap(), 0);
    assert_eq!(log_text(dir.path()), text);
    // A cutoff in the future would delete live intents: refused.
    let err = block_on(l.prune(NS, now() + secs(60))).unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Invalid);

    // A reopen sees exactly the compacted state.
    drop((l, other));
    let l = FileLedger::open(dir.path()).unwrap();
    assert_eq!(block_on(l.list(NS, None)).unwrap().len(), keep.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_inside_a_tokio_runtime_as_a_dyn_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let l: Arc<dyn Ledger> = Arc::new(FileLedger::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(
                async move { l.claim(claim("shared", 1, &format!("task-{i}"), 300)).await },
            )
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        if t.await.unwrap().unwrap().is_claimed() {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 1);
}
