//! Bad input: one clear error line naming the policy and the field or API, a non-zero exit for
//! `plan`, and (for `run`) the other policies keep working.

mod support;

use std::time::Duration;

use redrive_emulator::{
    self as emulator, EmulatorConfig, ExecutionSpec, Scenario, StateMachineSpec,
};
use support::*;

const LIMIT: Duration = Duration::from_secs(120);

fn scenario() -> Scenario {
    let sm = StateMachineSpec::standard("orders")
        .execution(
            ExecutionSpec::failed("e1", "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(600)),
        )
        .execution(
            ExecutionSpec::failed("e2", "Lambda.ServiceException")
                .stopped_ago(Duration::from_secs(900)),
        );
    Scenario {
        state_machines: vec![sm],
        ..Scenario::default()
    }
}

fn good_policy() -> String {
    policy_yaml("good", &["orders"], "")
}

/// Exactly one `error:` line, and it contains every needle.
fn assert_one_error(run: &Run, needles: &[&str]) {
    let errors = run.error_lines();
    assert_eq!(
        errors.len(),
        1,
        "expected one error line, got:\n{}",
        run.stderr
    );
    for n in needles {
        assert!(
            errors[0].contains(n),
            "error line {:?} lacks {n:?}",
            errors[0]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_file_is_one_error_and_the_other_policies_still_plan() {
    let handle = emulator::start(EmulatorConfig::default(), scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: redrive.dev/v1alpha1\nkind: [unclosed\n",
    );
    let good = write(dir.path(), "good.yaml", &good_policy());
    let run = operator(
        &[
            "plan",
            "-f",
            bad.to_str().unwrap(),
            "-f",
            good.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert_one_error(&run, &["bad.yaml", "not valid YAML"]);
    assert!(run.stdout.contains("good: 2 executions"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_errors_name_the_policy_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "regex",
            policy_yaml("bad-regex", &["orders"], "  errors:\n    causeRegex: \"(unclosed\"\n"),
            // Local mode runs the CRD's CEL rules first (kube's CEL, Rust regex) and policy.rs
            // after: either names the field and the parser's reason.
            vec!["policy bad-regex", "spec.errors.causeRegex", "unclosed group"],
        ),
        (
            "max-age",
            policy_yaml("too-long", &["orders"], "  window: {maxAge: 15d}\n"),
            vec!["policy too-long", "window.maxAge must be at most 14d"],
        ),
        (
            "duration",
            policy_yaml("bad-duration", &["orders"], "  pollInterval: 30m1h\n"),
            vec!["policy bad-duration", "spec.pollInterval", "must be a duration", "1h30m, 2d12h"],
        ),
        (
            "poll-interval",
            policy_yaml("slow-poll", &["orders"], "  pollInterval: 400d\n"),
            vec!["policy slow-poll", "spec.pollInterval", "must be at most 24h"],
        ),
        (
            "compound-window",
            policy_yaml("compound-window", &["orders"], "  window: {minAge: 1h30m, maxAge: 1h}\n"),
            vec!["policy compound-window", "window.minAge must be shorter than window.maxAge"],
        ),
        (
            "repeated-arn",
            policy_yaml("repeated-arn", &["orders", "orders"], ""),
            vec!["policy repeated-arn", "spec.stepFunctions.stateMachines", "must not repeat an ARN"],
        ),
        (
            "partition",
            policy_yaml("partition", &["orders"], "").replace(
                "    region: us-east-1\n",
                "    region: us-east-1\n    roleArn: arn:aws-cn:iam::123456789012:role/r\n",
            ),
            vec!["policy partition", "spec.stepFunctions.roleArn", "partition"],
        ),
        (
            "type",
            policy_yaml("bad-type", &["orders"], "  maxRedrives: lots\n"),
            vec!["policy bad-type", "spec.maxRedrives"],
        ),
        (
            "no-target",
            "apiVersion: redrive.dev/v1alpha1\nkind: RedrivePolicy\nmetadata: {name: empty}\nspec:\n  stepFunctions: {region: us-east-1}\n".to_string(),
            vec!["policy empty", "set at least one of stepFunctions.stateMachines or stepFunctions.selector"],
        ),
        (
            "kind",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n".to_string(),
            vec!["policy cm", "apiVersion"],
        ),
        (
            "arn",
            policy_yaml("bad-arn", &["orders"], "").replace("stateMachine:orders", "function:orders"),
            vec!["policy bad-arn", "spec.stepFunctions.stateMachines[0]"],
        ),
    ];
    for (name, text, needles) in cases {
        let file = write(dir.path(), &format!("{name}.yaml"), &text);
        // No endpoint is needed: validation fails before any AWS call.
        let run = operator(&["plan", "-f", file.to_str().unwrap()], LIMIT).await;
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert_one_error(&run, &needles);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_state_machine_is_reported_and_the_known_one_is_still_planned() {
    let handle = emulator::start(EmulatorConfig::default(), scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml("mixed", &["orders", "does-not-exist"], ""),
    );
    let run = operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert_one_error(
        &run,
        &[
            "policy mixed",
            "does-not-exist",
            "ListExecutions",
            "StateMachineDoesNotExist",
        ],
    );
    assert!(
        run.stdout
            .contains("mixed: 2 executions in 1 state machines"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_endpoint_is_one_error_naming_the_api() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &good_policy());
    let url = format!("http://127.0.0.1:{port}");
    let run = operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &url,
            "--aws-max-attempts",
            "1",
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert_one_error(
        &run,
        &["policy good", "ListExecutions", "connection failed"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_cannot_be_assumed_is_a_credentials_error() {
    let handle = emulator::start(EmulatorConfig::default(), scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = policy_yaml("with-role", &["orders"], "").replace(
        "    region: us-east-1\n",
        "    region: us-east-1\n    roleArn: arn:aws:iam::123456789012:role/not-assumable\n",
    );
    let file = write(dir.path(), "p.yaml", &text);
    let run = operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
            "--aws-max-attempts",
            "1",
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1));
    assert_one_error(&run, &["policy with-role", "ListExecutions", "credentials"]);
    assert_eq!(
        handle.stats().calls("ListExecutions"),
        0,
        "no unsigned call was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_keeps_going_for_the_valid_policies() {
    let handle = emulator::start(EmulatorConfig::default(), scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        &policy_yaml("bad", &["orders"], "  window: {maxAge: 30d}\n"),
    );
    let unknown = write(
        dir.path(),
        "unknown.yaml",
        &policy_yaml("unknown", &["nope"], ""),
    );
    let good = write(dir.path(), "good.yaml", &good_policy());
    let run = operator(
        &[
            "run",
            "--once",
            "-f",
            bad.to_str().unwrap(),
            "-f",
            unknown.to_str().unwrap(),
            "-f",
            good.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(1), "errors make run --once exit non-zero");
    assert_eq!(run.error_lines().len(), 2, "{}", run.stderr);
    assert_eq!(
        redriven_executions(&handle).len(),
        2,
        "the valid policy redrove its executions"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compound_durations_are_accepted_in_local_mode() {
    let handle = emulator::start(EmulatorConfig::default(), scenario())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &policy_yaml(
            "compound",
            &["orders"],
            "  window: {minAge: 1m30s, maxAge: 2d12h}\n  backoff: {initial: 90s, max: 1h30m}\n  pollInterval: 1m30s\n",
        ),
    );
    let run = operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &handle.endpoint,
        ],
        LIMIT,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.error_lines().is_empty(), "{}", run.stderr);
    assert!(
        run.stdout.contains("compound: 2 executions"),
        "{}",
        run.stdout
    );
}
