//! Observability: metrics agree with the emulator's ledger, secrets never reach logs or output,
//! and the README's metrics table matches the registry.

#[path = "support/operator.rs"]
mod operator;
mod support;

use std::time::Duration;

use operator::{OperatorProcess, admin_addr_in, http_get, metric_sum, wait_until};
use redrive_emulator::{
    self as emulator, EmulatorConfig, ExecutionSpec, GenerateSpec, Outcome, QuotaPreset, Scenario,
    StateMachineSpec,
};
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_match_the_emulator_ledger_exactly() {
    // Small buckets so that throttling happens and must be counted too.
    let config = EmulatorConfig {
        quota: QuotaPreset::OtherRegions,
        quota_scale: 0.1,
        ..EmulatorConfig::default()
    };
    let sm = StateMachineSpec::standard("orders").generate(GenerateSpec {
        count: 300,
        name_prefix: "m".into(),
        outcomes: vec![Outcome::fail("Lambda.ServiceException")],
        ..GenerateSpec::default()
    });
    let emu = emulator::start(
        config,
        Scenario {
            state_machines: vec![sm],
            ..Scenario::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml(
            "metrics",
            &["orders"],
            "  maxRedrives: 1\n  pollInterval: 10s\n",
        ),
    );
    let op = OperatorProcess::spawn_local(
        "metrics-op",
        dir.path(),
        &[
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &emu.endpoint,
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    let diag = || op.logs();
    let addr = wait_until(
        Duration::from_secs(30),
        "the admin address",
        &diag,
        || async { admin_addr_in(&op.logs()) },
    )
    .await;
    wait_until(Duration::from_secs(90), "300 redrives", &diag, || async {
        (redriven_executions(&emu).len() == 300).then_some(())
    })
    .await;

    // Compare a scrape with the emulator's own counters; retry while a poll is in flight.
    wait_until(
        Duration::from_secs(60),
        "metrics equal to the emulator's counters",
        &diag,
        || async {
            let before = emu.stats();
            let (code, text) = http_get(&addr, "/metrics").await?;
            let after = emu.stats();
            if code != 200 || before.total_calls != after.total_calls {
                return None;
            }
            let ledger_redriven = emu
                .ledger()
                .iter()
                .filter(|e| e.outcome.is_redriven())
                .count() as f64;
            let checks = [
                (
                    metric_sum(&text, "redrive_redrives_total", &[("outcome", "Redriven")]),
                    ledger_redriven,
                ),
                (
                    metric_sum(
                        &text,
                        "redrive_aws_requests_total",
                        &[("api", "RedriveExecution")],
                    ),
                    after.calls("RedriveExecution") as f64,
                ),
                (
                    metric_sum(
                        &text,
                        "redrive_aws_requests_total",
                        &[("api", "RedriveExecution"), ("result", "throttled")],
                    ),
                    after.throttled("RedriveExecution") as f64,
                ),
                (
                    metric_sum(
                        &text,
                        "redrive_aws_requests_total",
                        &[("api", "ListExecutions")],
                    ),
                    after.calls("ListExecutions") as f64,
                ),
                (
                    metric_sum(
                        &text,
                        "redrive_aws_requests_total",
                        &[("result", "throttled")],
                    ),
                    after.throttled as f64,
                ),
            ];
            checks
                .iter()
                .all(|(ours, theirs)| ours == theirs)
                .then_some(())
        },
    )
    .await;
    assert!(
        emu.stats().throttled > 0,
        "the scenario must exercise throttling"
    );
    let (_, text) = http_get(&addr, "/metrics").await.unwrap();
    assert_eq!(metric_sum(&text, "redrive_leader", &[]), 1.0);
    // The next poll sees them all failed again with maxRedrives 1: exhausted, counted once.
    wait_until(
        Duration::from_secs(60),
        "300 exhausted executions",
        &diag,
        || async {
            let (_, text) = http_get(&addr, "/metrics").await?;
            (metric_sum(
                &text,
                "redrive_executions_exhausted_total",
                &[("policy", "metrics")],
            ) == 300.0)
                .then_some(())
        },
    )
    .await;
    let (live, _) = http_get(&addr, "/livez").await.unwrap();
    let (ready, _) = http_get(&addr, "/readyz").await.unwrap();
    assert_eq!((live, ready), (200, 200));
}

const LEAK: &str = "LEAKCHECK";

#[tokio::test(flavor = "multi_thread")]
async fn credentials_and_execution_data_never_reach_logs_or_output() {
    let sm = StateMachineSpec::standard("orders").execution(
        ExecutionSpec::new("secretive")
            .outcomes([Outcome::fail_with(
                "Lambda.ServiceException",
                "api_key=sk_live_LEAKCHECK rejected",
            )])
            .input(r#"{"password":"hunter2-LEAKCHECK","card":"4111-LEAKCHECK"}"#)
            .stopped_ago(Duration::from_secs(300)),
    );
    let emu = emulator::start(
        EmulatorConfig::default(),
        Scenario {
            state_machines: vec![sm],
            ..Scenario::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An error filter makes the operator describe the execution (which returns input and cause).
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml(
            "leaks",
            &["orders"],
            "  errors:\n    include: [\"Lambda.*\"]\n    causeRegex: \"api_key\"\n",
        ),
    );
    let f = file.to_str().unwrap();
    // The secret key and the session token are the secrets (an access key id is an identifier
    // that AWS itself shows in CloudTrail; the SDK logs it at debug level).
    let secret_env = [
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0000"),
        ("AWS_SECRET_ACCESS_KEY", "secret-LEAKCHECK-key"),
        ("AWS_SESSION_TOKEN", "session-LEAKCHECK-token"),
    ];
    for args in [
        vec![
            "plan",
            "-f",
            f,
            "--endpoint-url",
            &emu.endpoint,
            "-o",
            "json",
        ],
        vec!["plan", "-f", f, "--endpoint-url", &emu.endpoint],
        vec![
            "run",
            "--once",
            "-f",
            f,
            "--endpoint-url",
            &emu.endpoint,
            "--admin-addr",
            "off",
            "--log-format",
            "json",
        ],
    ] {
        let run = operator_with(&args, &secret_env, "debug", Duration::from_secs(120)).await;
        assert!(run.ok(), "{args:?}: {}", run.stderr);
        assert!(
            !run.stdout.contains(LEAK),
            "{args:?} printed a secret:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(LEAK),
            "{args:?} logged a secret:\n{}",
            run.stderr
        );
    }
    // The redrive happened, signed with the environment's credentials.
    assert_eq!(redriven_executions(&emu).len(), 1);
    assert!(
        emu.ledger()
            .iter()
            .any(|e| e.access_key_id.as_deref() == Some("AKIAEXAMPLEKEYID0000"))
    );
}

#[test]
fn readme_metrics_table_matches_the_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let documented: std::collections::BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `redrive_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("redrive_{n}"))
        .collect();
    let metrics = redrive_operator::metrics::Metrics::new();
    let exported: std::collections::BTreeSet<String> =
        metrics.catalog().iter().map(|m| m.name.clone()).collect();
    assert_eq!(
        documented, exported,
        "README's metrics table (Operate section) and the registry differ"
    );
}
