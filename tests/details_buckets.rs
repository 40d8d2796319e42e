//! Error filters read a failure's details through two quota buckets (issue 14, item 2): the
//! last event of GetExecutionHistory and DescribeExecution, whichever API's pacer can send
//! sooner. The decisions are the ones DescribeExecution alone gives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use jiff::Timestamp;
use redrive_emulator::{
    self as emulator, BucketSpec, EmulatorConfig, EmulatorHandle, GenerateSpec, Outcome,
    QuotaPreset, Scenario, StateMachineSpec,
};
use redrive_operator::engine::Reason;
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::{Context, PolicyState, PollSettings};
use serde_json::json;

const REGION: &str = "us-east-1";

fn sm_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:123456789012:stateMachine:{name}")
}

fn policy(name: &str, machine: &str, errors: serde_json::Value) -> Policy {
    redrive_operator::policy_file::parse_policy(json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": name},
        "spec": {
            "stepFunctions": {"region": REGION, "stateMachines": [sm_arn(machine)]},
            "statuses": ["FAILED", "TIMED_OUT", "ABORTED"],
            "errors": errors,
            "budget": {"redrivesPerMinute": 100000},
        },
    }))
    .unwrap()
}

/// 40 executions of each kind; the filter admits the Lambda failures whose cause says
/// "throttled" and the timeouts.
fn scenario() -> Scenario {
    let kinds = [
        (
            "lt-",
            Outcome::fail_with("Lambda.ServiceException", "throttled by the function"),
        ),
        (
            "lo-",
            Outcome::fail_with("Lambda.ServiceException", "out of memory"),
        ),
        (
            "va-",
            Outcome::fail_with("ValidationError", "throttled, but excluded"),
        ),
        (
            "to-",
            Outcome::TimedOut {
                error: "States.Timeout".into(),
                cause: "the state timed out".into(),
            },
        ),
        ("ab-", Outcome::aborted()),
    ];
    let mut sm = StateMachineSpec::standard("orders");
    for (prefix, outcome) in kinds {
        sm = sm.generate(GenerateSpec::new(40, prefix, [outcome]));
    }
    Scenario::new().with(sm)
}

/// Small buckets for both detail APIs (20 burst, 10/s each), so both run dry during the poll
/// and the pacers must share the reads between them.
fn config() -> EmulatorConfig {
    let bucket = BucketSpec {
        size: 20.0,
        refill_per_second: 10.0,
    };
    EmulatorConfig {
        quota: QuotaPreset::UsEast1,
        bucket_overrides: BTreeMap::from([
            ("DescribeExecution".to_string(), bucket),
            ("GetExecutionHistory".to_string(), bucket),
        ]),
        ..EmulatorConfig::default()
    }
}

fn redriven(h: &EmulatorHandle) -> BTreeSet<String> {
    h.ledger()
        .iter()
        .filter(|l| l.outcome.is_redriven())
        .map(|l| l.execution_arn.clone())
        .collect()
}

fn names_with(h: &EmulatorHandle, prefixes: &[&str]) -> BTreeSet<String> {
    h.executions_of("orders")
        .into_iter()
        .filter(|e| prefixes.iter().any(|p| e.name.starts_with(p)))
        .map(|e| e.execution_arn)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn error_filters_read_details_from_both_buckets_and_decide_the_same() {
    let h = emulator::start(config(), scenario()).await.unwrap();
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(h.endpoint.clone());
    let ctx = Context::new(settings);
    let p = policy(
        "both",
        "orders",
        json!({"include": ["Lambda.*", "States.Timeout"], "exclude": ["ValidationError"], "causeRegex": "throttled|timed out|^$"}),
    );
    let state = Mutex::new(PolicyState::default());
    let report = ctx.poll(&p, &state, Timestamp::now).await.unwrap();
    assert!(
        report.describe_errors.is_empty(),
        "{:?}",
        report.describe_errors
    );

    let stats = h.stats();
    let (describe, history) = (
        stats.calls("DescribeExecution"),
        stats.calls("GetExecutionHistory"),
    );
    println!(
        "DescribeExecution {describe} ({} throttled), GetExecutionHistory {history} ({} throttled)",
        stats.throttled("DescribeExecution"),
        stats.throttled("GetExecutionHistory")
    );
    assert!(describe > 0 && history > 0, "both buckets used");
    // One successful read per candidate: all 200 pass the list rules, and only their details
    // tell the filter's answer.
    let reads = describe - stats.throttled("DescribeExecution") + history
        - stats.throttled("GetExecutionHistory");
    assert_eq!(reads, 200, "every execution's details read once");

    // Exactly what the filter admits: Lambda failures with "throttled" in the cause, and the
    // timeouts.
    assert_eq!(redriven(&h), names_with(&h, &["lt-", "to-"]));
    let counts = report.plan.counts();
    assert_eq!(counts.get("Redrive"), Some(&80), "{counts:?}");
    assert_eq!(
        counts.get(Reason::CauseNotMatched.code()),
        Some(&40),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(Reason::ErrorExcluded.code()),
        Some(&40),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(Reason::ErrorNotIncluded.code()),
        Some(&40),
        "aborted without an error: {counts:?}"
    );

    h.shutdown().await;
}
