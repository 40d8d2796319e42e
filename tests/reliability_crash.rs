//! Reliability (issue 7, items 1 and 2, local mode): the real binary is `kill -9`ed at seeded
//! random moments while it works through a backlog, and three processes race on the same
//! policies without any coordination. At the end the emulator's ledger must show every eligible
//! execution redriven exactly once per attempt: no duplicate, nothing left behind, nothing the
//! policy excludes.
//!
//! `REDRIVE_LONG=1` runs more iterations; `REDRIVE_SEED=N` replays a seed.

#[path = "support/operator.rs"]
mod operator;
mod reliability_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::Rng;
use redrive_emulator::{
    self as emulator, Dur, EmulatorConfig, EmulatorHandle, ExecutionStatus, FaultConfig,
    GenerateSpec, LedgerOutcome, Outcome, Scenario, StateMachineSpec,
};
use reliability_common::*;
use support::*;

use operator::OperatorProcess;

const MACHINES: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
/// Attempts each eligible execution gets (maxRedrives).
const ATTEMPTS: u32 = 2;

/// The policy of the crash and race tests: two attempts one second apart, permanent errors
/// excluded (so the DescribeExecution path and its cache are exercised too).
fn policy(name: &str) -> String {
    policy_yaml(
        name,
        &MACHINES,
        &format!(
            "  maxRedrives: {ATTEMPTS}
  errors:
    exclude: [ValidationError]
  backoff: {{initial: 1s, max: 1s, factor: 1, jitter: 0}}
  pollInterval: 10s
"
        ),
    )
}

/// `per_machine` transient failures (fail again at once when redriven) and a fifth as many
/// permanent ones (`ValidationError`, excluded by the policy) in each machine, under `prefix`.
fn batch(prefix: &str, per_machine: u32) -> Scenario {
    let mut s = Scenario {
        state_machines: MACHINES
            .iter()
            .map(|m| {
                StateMachineSpec::standard(m)
                    .generate(GenerateSpec::new(
                        per_machine,
                        &format!("{prefix}t-"),
                        [Outcome::fail("Lambda.ServiceException")],
                    ))
                    .generate(GenerateSpec::new(
                        (per_machine / 5).max(1),
                        &format!("{prefix}p-"),
                        [Outcome::fail("ValidationError")],
                    ))
            })
            .collect(),
        ..Scenario::default()
    };
    // The hardest case for duplicates: a redriven execution fails again immediately, so the
    // next attempt's token differs and a stale view could act on it.
    s.defaults.redrive_run_time = Dur::secs(0);
    s
}

fn is_permanent(arn: &str) -> bool {
    arn.rsplit(':').next().is_some_and(|n| n.contains("p-"))
}

/// Every execution of the crash machines.
fn all_executions(h: &EmulatorHandle) -> Vec<String> {
    MACHINES
        .iter()
        .flat_map(|m| h.executions_of(m))
        .map(|s| s.execution_arn)
        .collect()
}

/// The end state every test here must reach: each transient failure redriven exactly once for
/// each of its `ATTEMPTS` attempts, each permanent one never.
fn converged(h: &EmulatorHandle) -> Result<(), String> {
    let per = redrives_per_attempt(&h.ledger());
    let mut missing = Vec::new();
    for arn in all_executions(h) {
        let attempts: Vec<u32> = (0..ATTEMPTS)
            .filter(|k| per.contains_key(&(arn.clone(), *k)))
            .collect();
        if is_permanent(&arn) {
            if !attempts.is_empty() {
                return Err(format!("{arn} is excluded by the policy but was redriven"));
            }
        } else if attempts.len() != ATTEMPTS as usize {
            missing.push(format!("{arn} {attempts:?}"));
        }
    }
    if let Some(((arn, k), n)) = per.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{arn} attempt {k} redriven {n} times"));
    }
    if let Some(((arn, k), _)) = per.iter().find(|((_, k), _)| *k >= ATTEMPTS) {
        return Err(format!("{arn} redriven at count {k} beyond maxRedrives"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} executions not fully redriven, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ))
    }
}

/// `run --once` passes (no faults) until the ledger converges; returns the passes it took.
async fn drain(h: &EmulatorHandle, file: &str, max_passes: usize) -> usize {
    for pass in 1..=max_passes {
        let run = operator(
            &[
                "run",
                "--once",
                "-f",
                file,
                "--endpoint-url",
                &h.endpoint,
                "--admin-addr",
                "off",
            ],
            Duration::from_secs(120),
        )
        .await;
        assert!(run.code.is_some(), "killed by a signal: {}", run.stderr);
        assert!(duplicates(h).is_empty(), "duplicates: {:?}", duplicates(h));
        if converged(h).is_ok() {
            return pass;
        }
        // Second attempts wait for the 1 s backoff.
        sleep_ms(1100).await;
    }
    panic!(
        "not converged after {max_passes} passes: {}",
        converged(h).unwrap_err()
    );
}

/// What the process was doing when it was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    /// Before its first RedriveExecution reached AWS (start-up, listing, describing).
    BeforeRedrive,
    /// Inside a redrive burst: some redrives answered, others in flight, nothing recorded.
    MidRedriveBurst,
    /// After its poll finished (sleeping until the next one).
    AfterPoll,
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_at_random_moments_never_duplicates_and_loses_nothing() {
    let iterations = scale(36, 150);
    let per_batch = 12u32;
    let (mut rng, seed) = rng(0x7e57_c4a5);
    let config = EmulatorConfig {
        // Every RedriveExecution waits 150 ms before AWS acts on it: a wide window in which
        // the process is killed with calls in flight.
        faults: FaultConfig {
            latency: Some(Duration::from_millis(150)),
            latency_rate: 1.0,
            only_apis: vec!["RedriveExecution".into()],
            ..FaultConfig::default()
        },
        seed,
        ..EmulatorConfig::default()
    };
    let h = emulator::start(config, batch("b0-", 20)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "crash.yaml", &policy("crash"));
    let f = file.to_str().unwrap().to_string();

    let mut kills: BTreeMap<KillPoint, u32> = BTreeMap::new();
    let mut landed_after_kill = 0u64;
    let started = Instant::now();
    for i in 0..iterations {
        // Fresh failures keep arriving, so every iteration has a backlog to be killed in.
        if i > 0 && i % 3 == 0 {
            h.seed(batch(&format!("b{i}-"), per_batch)).unwrap();
        }
        let calls_before = h.stats().calls("RedriveExecution");
        let name = format!("crash-{i}");
        let mut op = OperatorProcess::spawn_local(
            &name,
            dir.path(),
            &[
                "-f",
                &f,
                "--endpoint-url",
                &h.endpoint,
                "--admin-addr",
                "off",
                "--concurrency",
                "8",
            ],
        );
        // Half the kills at a random time, half after a random number of redrive calls
        // reached AWS (which lands them inside a burst).
        let by_time = rng.random_bool(0.5);
        let delay = Duration::from_millis(rng.random_range(0..2500));
        let after_calls = rng.random_range(1..40u64);
        let t0 = Instant::now();
        loop {
            let arrived = h.stats().calls("RedriveExecution") - calls_before;
            let due = if by_time {
                t0.elapsed() >= delay
            } else {
                arrived >= after_calls || t0.elapsed() > Duration::from_secs(4)
            };
            if due || !op.alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let killed_at = h.now();
        assert!(op.alive(), "{name} exited by itself:\n{}", op.logs());
        op.kill9();
        let arrived = h.stats().calls("RedriveExecution") - calls_before;
        let logs = op.logs();
        assert!(!logs.contains("panicked"), "{name} panicked:\n{logs}");
        let point = if logs.contains("; acted: ") {
            KillPoint::AfterPoll
        } else if arrived > 0 {
            KillPoint::MidRedriveBurst
        } else {
            KillPoint::BeforeRedrive
        };
        *kills.entry(point).or_insert(0) += 1;
        // Calls already inside AWS when the client died: does AWS still act on them?
        sleep_ms(200).await;
        landed_after_kill += h
            .ledger()
            .iter()
            .filter(|e| e.at > killed_at && e.outcome.is_redriven())
            .count() as u64;
        let dups = duplicates(&h);
        assert!(
            dups.is_empty(),
            "iteration {i} (seed {seed}): duplicates {dups:?}"
        );
    }
    let crash_phase = started.elapsed();

    // Recovery: the faults clear and plain `run --once` passes finish the job.
    h.set_faults(FaultConfig::default());
    let passes = drain(&h, &f, 8).await;
    converged(&h).unwrap();
    assert!(duplicates(&h).is_empty());

    let ledger = h.ledger();
    let counts = outcome_counts(&ledger);
    let executions = all_executions(&h);
    let eligible = executions.iter().filter(|a| !is_permanent(a)).count();
    figures(
        "crash_local",
        &[
            ("seed", seed.to_string()),
            ("iterations", iterations.to_string()),
            (
                "kills_before_redrive",
                kills
                    .get(&KillPoint::BeforeRedrive)
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ),
            (
                "kills_mid_redrive_burst",
                kills
                    .get(&KillPoint::MidRedriveBurst)
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ),
            (
                "kills_after_poll",
                kills
                    .get(&KillPoint::AfterPoll)
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ),
            ("redrives_landed_after_kill", landed_after_kill.to_string()),
            ("executions", executions.len().to_string()),
            ("eligible", eligible.to_string()),
            ("ledger", format!("{counts:?}").replace(' ', "")),
            ("recovery_passes", passes.to_string()),
            ("crash_phase_s", crash_phase.as_secs().to_string()),
            ("duplicates", "0".into()),
        ],
    );
    assert!(
        kills.get(&KillPoint::MidRedriveBurst).copied().unwrap_or(0) >= (iterations / 4) as u32,
        "too few kills inside a redrive burst to prove anything: {kills:?}"
    );
    assert_eq!(
        counts.get("redriven").copied().unwrap_or(0),
        eligible as u64 * u64::from(ATTEMPTS),
        "exactly one redrive per eligible execution and attempt"
    );
}

/// Item 2 in local mode: three processes poll the same policies on the same backlog with no
/// lease and no shared state. Deterministic tokens must make AWS perform each redrive once.
#[tokio::test(flavor = "multi_thread")]
async fn three_uncoordinated_processes_never_duplicate() {
    let (mut rng, seed) = rng(0x3_5ca1e);
    let config = EmulatorConfig {
        // A little latency on every redrive makes the three processes overlap in AWS.
        faults: FaultConfig {
            latency: Some(Duration::from_millis(20)),
            latency_rate: 1.0,
            only_apis: vec!["RedriveExecution".into()],
            ..FaultConfig::default()
        },
        seed,
        ..EmulatorConfig::default()
    };
    let per_machine = scale(60, 300) as u32;
    let h = emulator::start(config, batch("r-", per_machine))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "race.yaml", &policy("race"));
    let f = file.to_str().unwrap().to_string();
    let mut procs: Vec<OperatorProcess> = Vec::new();
    for i in 0..3 {
        procs.push(OperatorProcess::spawn_local(
            &format!("replica-{i}"),
            dir.path(),
            &[
                "-f",
                &f,
                "--endpoint-url",
                &h.endpoint,
                "--admin-addr",
                "off",
                "--concurrency",
                "8",
            ],
        ));
        // Stagger the starts a little (seeded), so the polls interleave differently per seed.
        sleep_ms(rng.random_range(0..300)).await;
    }
    // Two polls each (pollInterval 10 s): the first redrives attempt 0, the second attempt 1.
    let deadline = Instant::now() + Duration::from_secs(40);
    while converged(&h).is_err() && Instant::now() < deadline {
        assert!(
            duplicates(&h).is_empty(),
            "duplicates: {:?}",
            duplicates(&h)
        );
        sleep_ms(500).await;
    }
    for p in &mut procs {
        assert!(p.alive(), "{} died:\n{}", p.name, p.logs());
        assert_eq!(
            p.terminate(Duration::from_secs(20)),
            Some(0),
            "{}",
            p.logs()
        );
    }
    converged(&h).unwrap();
    let ledger = h.ledger();
    let counts = outcome_counts(&ledger);
    let redriven = counts.get("redriven").copied().unwrap_or(0);
    let calls = ledger.len() as u64;
    // Who performed the redrives: the work is shared, the waste is the other calls.
    let acting: BTreeSet<usize> = procs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.logs().contains("\"outcome\":\"Redriven\""))
        .map(|(i, _)| i)
        .collect();
    figures(
        "race_local_3_processes",
        &[
            ("seed", seed.to_string()),
            ("redrives", redriven.to_string()),
            ("redrive_calls", calls.to_string()),
            ("ledger", format!("{counts:?}").replace(' ', "")),
            ("processes_that_acted", acting.len().to_string()),
            ("duplicates", "0".into()),
        ],
    );
    assert!(
        calls > redriven,
        "the processes overlapped (more calls than redrives)"
    );
    // Every execution that is still failed is exhausted: nothing left behind.
    for arn in all_executions(&h) {
        let snap = h.execution(&arn).unwrap();
        if !is_permanent(&arn) {
            assert_eq!(snap.redrive_count, ATTEMPTS, "{arn}");
            assert_eq!(snap.status, ExecutionStatus::Failed, "{arn}");
        }
    }
    let replays = ledger
        .iter()
        .filter(|e| matches!(e.outcome, LedgerOutcome::Replayed { .. }))
        .count();
    println!("replayed tokens: {replays}");
}
