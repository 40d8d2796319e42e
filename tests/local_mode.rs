//! `plan` and `run --once` (the real binary, the real aws-sdk-sfn client over HTTP) against the
//! Step Functions emulator.

mod support;

use std::time::Duration;

use redrive_emulator::{
    self as emulator, EmulatorConfig, ExecutionSpec, FaultConfig, GenerateSpec, Outcome,
    QuotaPreset, Scenario, StateMachineSpec,
};
use serde_json::Value;
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

fn day(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// One state machine with one execution per rule of the policy below.
fn rules_scenario() -> Scenario {
    let sm = StateMachineSpec::standard("orders")
        .execution(
            ExecutionSpec::failed("transient", "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(3600)),
        )
        .execution(
            ExecutionSpec::new("timed-out")
                .outcomes([Outcome::timed_out()])
                .stopped_ago(Duration::from_secs(7200)),
        )
        .execution(
            ExecutionSpec::new("aborted")
                .outcomes([Outcome::aborted()])
                .stopped_ago(Duration::from_secs(7200)),
        )
        .execution(
            ExecutionSpec::failed("permanent", "ValidationError")
                .stopped_ago(Duration::from_secs(3600)),
        )
        .execution(
            ExecutionSpec::failed("too-old", "Lambda.ServiceException")
                .started_ago(day(16))
                .stopped_ago(day(15)),
        )
        .execution(
            ExecutionSpec::failed("outside-window", "Lambda.ServiceException")
                .started_ago(day(9))
                .stopped_ago(day(8)),
        )
        .execution(
            ExecutionSpec::failed("exhausted", "Lambda.ServiceException")
                .redriven(3)
                .stopped_ago(Duration::from_secs(3600)),
        )
        .execution(
            ExecutionSpec::failed("too-young", "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(30)),
        )
        .execution(ExecutionSpec::succeeded("fine").stopped_ago(Duration::from_secs(3600)))
        .execution(
            ExecutionSpec::failed("huge-history", "Lambda.ServiceException")
                .history_events(24_999)
                .stopped_ago(Duration::from_secs(3600)),
        );
    Scenario {
        state_machines: vec![sm],
        ..Scenario::default()
    }
}

const RULES_SPEC: &str = "  statuses: [FAILED, TIMED_OUT]
  errors:
    exclude: [ValidationError]
  window: {minAge: 2m, maxAge: 7d}
  maxRedrives: 3
";

fn decisions(plan: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    plan["policies"][0]["runs"]
        .as_array()
        .expect("runs array")
        .iter()
        .map(|e| {
            let name = e["executionArn"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            (
                name,
                (
                    e["decision"].as_str().unwrap().to_string(),
                    e["reason"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_explains_every_decision_and_never_redrives() {
    let handle = emulator::start(EmulatorConfig::default(), rules_scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml("orders", &["orders"], RULES_SPEC),
    );
    let f = file.to_str().unwrap();

    let run = operator(
        &[
            "plan",
            "-f",
            f,
            "--endpoint-url",
            &handle.endpoint,
            "-o",
            "json",
        ],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "plan failed: {}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).expect("plan -o json prints JSON");
    let d = decisions(&plan);
    let expect = |name: &str, decision: &str, reason: &str| {
        assert_eq!(
            d.get(name),
            Some(&(decision.to_string(), reason.to_string())),
            "{name}: {d:?}"
        );
    };
    expect("transient", "Skip", "DryRun");
    expect("timed-out", "Skip", "DryRun");
    expect("permanent", "Skip", "ErrorExcluded");
    expect("too-old", "Skip", "NotRedrivable");
    expect("outside-window", "Skip", "OutsideWindow");
    expect("exhausted", "Skip", "MaxRedrivesReached");
    expect("too-young", "Wait", "TooYoung");
    // Only DescribeExecution knows about the history limit.
    expect("huge-history", "Skip", "NotRedrivable");
    // Not listed at all: ABORTED is not selected, SUCCEEDED is never listed.
    assert!(
        !d.contains_key("aborted") && !d.contains_key("fine"),
        "{d:?}"
    );

    assert_eq!(
        handle.stats().calls("RedriveExecution"),
        0,
        "plan must never redrive"
    );
    assert!(handle.ledger().is_empty());

    let table = operator(
        &["plan", "-f", f, "--endpoint-url", &handle.endpoint],
        LIMIT,
    )
    .await;
    assert!(table.ok(), "{}", table.stderr);
    assert!(
        table.stdout.contains("EXECUTION") && table.stdout.contains("would redrive"),
        "{}",
        table.stdout
    );
    assert!(
        table
            .stdout
            .contains("orders: 8 executions in 1 state machines"),
        "{}",
        table.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_once_redrives_exactly_what_the_policy_allows() {
    let handle = emulator::start(EmulatorConfig::default(), rules_scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml("orders", &["orders"], RULES_SPEC),
    );
    let run = operator(
        &[
            "run",
            "--once",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "run failed: {}\n{}", run.stdout, run.stderr);
    let redriven = redriven_executions(&handle);
    let expected: std::collections::BTreeSet<String> = ["transient", "timed-out"]
        .iter()
        .map(|n| exec_arn("orders", n))
        .collect();
    assert_eq!(redriven, expected);
    assert_no_duplicates(&handle);
    // The only RedriveExecution calls were those two: nothing excluded was even tried.
    assert_eq!(handle.stats().calls("RedriveExecution"), 2);
    assert!(run.stdout.contains("2 redriven with"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_and_suspend_never_call_redrive() {
    let handle = emulator::start(EmulatorConfig::default(), rules_scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dry = write(
        dir.path(),
        "dry.yaml",
        &policy_yaml("dry", &["orders"], &format!("  dryRun: true\n{RULES_SPEC}")),
    );
    let suspended = write(
        dir.path(),
        "sus.yaml",
        &policy_yaml(
            "sus",
            &["orders"],
            &format!("  suspend: true\n{RULES_SPEC}"),
        ),
    );
    let run = operator(
        &[
            "run",
            "--once",
            "-f",
            dry.to_str().unwrap(),
            "-f",
            suspended.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert!(run.ok(), "{}", run.stderr);
    assert_eq!(handle.stats().calls("RedriveExecution"), 0);
    // Suspended makes no AWS call at all; dry run only lists and describes.
    assert_eq!(
        handle.stats().calls("ListExecutions"),
        2,
        "one per selected status, for the dry-run policy only"
    );
}

/// `count` failed executions in `machines` state machines that fail again at once when redriven.
fn backlog(machines: usize, per_machine: u32) -> Scenario {
    let state_machines = (0..machines)
        .map(|i| {
            StateMachineSpec::standard(&format!("backlog-{i}")).generate(GenerateSpec {
                count: per_machine,
                name_prefix: "run".into(),
                outcomes: vec![Outcome::fail("Lambda.ServiceException")],
                ..GenerateSpec::default()
            })
        })
        .collect();
    let mut s = Scenario {
        state_machines,
        ..Scenario::default()
    };
    // The hardest case for duplicates: a redriven execution fails again immediately.
    s.defaults.redrive_run_time = redrive_emulator::Dur::secs(0);
    s
}

fn backlog_policy(machines: usize, extra: &str) -> String {
    let names: Vec<String> = (0..machines).map(|i| format!("backlog-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    policy_yaml("backlog", &refs, &format!("  maxRedrives: 1\n{extra}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_started_together_redrive_each_execution_once() {
    let handle = emulator::start(EmulatorConfig::default(), backlog(3, 100))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &backlog_policy(3, ""));
    let f = file.to_str().unwrap().to_string();
    let endpoint = handle.endpoint.clone();
    let args = ["run", "--once", "-f", &f, "--endpoint-url", &endpoint];
    let a = operator(&args, LIMIT);
    let b = operator(&args, LIMIT);
    let (a, b) = tokio::join!(a, b);
    assert!(a.ok() && b.ok(), "a: {}\nb: {}", a.stderr, b.stderr);
    let per_attempt = redrives_per_attempt(&handle.ledger());
    assert_eq!(per_attempt.len(), 300, "every execution redriven");
    assert!(
        per_attempt.values().all(|n| *n == 1),
        "duplicates: {per_attempt:?}"
    );
    // Both processes did call RedriveExecution for (most of) the same executions: the
    // deterministic token is what made AWS perform each redrive once.
    let calls = handle.stats().calls("RedriveExecution");
    assert!(
        calls > 300,
        "expected overlapping calls from both processes, got {calls}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_2000_is_drained_under_aws_default_throttling() {
    let config = EmulatorConfig {
        quota: QuotaPreset::OtherRegions,
        ..EmulatorConfig::default()
    };
    let handle = emulator::start(config, backlog(4, 500)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &backlog_policy(4, ""));
    let run = operator(
        &[
            "run",
            "--once",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    println!(
        "{}\nemulator: {:?}",
        run.stdout,
        handle.stats().by_api.get("RedriveExecution")
    );
    assert!(run.ok(), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        redriven_executions(&handle).len(),
        2000,
        "nothing left behind"
    );
    assert_no_duplicates(&handle);
    let summary = run.stdout.lines().last().unwrap_or_default();
    assert!(summary.starts_with("2,000 redriven with "), "{summary}");
    assert!(
        summary.contains("ListExecutions") && summary.contains("RedriveExecution"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_faults_lose_nothing_and_duplicate_nothing() {
    let faults = FaultConfig {
        server_error_rate: 0.15,
        malformed_rate: 0.05,
        drop_rate: 0.05,
        latency: Some(Duration::from_millis(20)),
        latency_rate: 0.1,
        ..FaultConfig::default()
    };
    let config = EmulatorConfig {
        faults,
        quota: QuotaPreset::UsEast1,
        seed: 7,
        ..EmulatorConfig::default()
    };
    let handle = emulator::start(config, backlog(2, 100)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &backlog_policy(2, ""));
    let f = file.to_str().unwrap().to_string();
    let mut passes = 0;
    while redriven_executions(&handle).len() < 200 && passes < 8 {
        passes += 1;
        // Exit code may be non-zero while faults persist; the process must not crash.
        let run = operator(
            &[
                "run",
                "--once",
                "-f",
                &f,
                "--endpoint-url",
                &handle.endpoint,
            ],
            LIMIT,
        )
        .await;
        assert!(run.code.is_some(), "killed by a signal: {}", run.stderr);
        assert_no_duplicates(&handle);
    }
    assert_eq!(
        redriven_executions(&handle).len(),
        200,
        "all redriven within {passes} passes"
    );
    assert!(
        handle.stats().faults_injected.values().sum::<u64>() > 0,
        "faults were injected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sustained_throttling_is_absorbed_by_retries_with_backoff() {
    // A fifth of the "other regions" quotas: RedriveExecution 160 burst, 30/s refill.
    let config = EmulatorConfig {
        quota: QuotaPreset::OtherRegions,
        quota_scale: 0.2,
        ..EmulatorConfig::default()
    };
    let handle = emulator::start(config, backlog(1, 400)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &backlog_policy(1, ""));
    let run = operator(
        &[
            "run",
            "--once",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    println!("{}\n{}", run.stdout, run.stderr);
    let stats = handle.stats();
    assert!(
        stats.throttled("RedriveExecution") > 0,
        "the quota was hit: {stats:?}"
    );
    assert_eq!(redriven_executions(&handle).len(), 400, "nothing lost");
    assert_no_duplicates(&handle);
    assert!(run.ok(), "{}", run.stderr);
    assert!(
        run.stdout.contains("throttled and retried"),
        "{}",
        run.stdout
    );
}
