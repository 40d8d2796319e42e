//! End to end: the operator in cluster mode against a real kube-apiserver + etcd (built from
//! source by scripts/control-plane.sh) and the Step Functions emulator, driven with kubectl
//! where a user would use kubectl. A control plane that cannot start fails the test.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator;
mod support;

use std::time::Duration;

use kube::api::Api;
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, ExecutionSpec, Scenario, StateMachineSpec,
};
use redrive_operator::crd::RedrivePolicy;
use serde_json::{Value, json};
use support::*;

use cluster::Cluster;
use operator::{OperatorProcess, wait_until};

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/redrivepolicies.redrive.dev.yaml"
);
const RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml");
const WAIT: Duration = Duration::from_secs(60);

async fn cluster_with_crd() -> Cluster {
    let c = cluster::start().await;
    c.kubectl_ok(["apply", "--server-side", "-f", CRD]);
    c.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/redrivepolicies.redrive.dev",
    ]);
    c
}

fn policy_doc(ns: &str, name: &str, machines: &[&str], extra: Value) -> Value {
    let arns: Vec<String> = machines.iter().map(|m| sm_arn(m)).collect();
    let mut spec = json!({
        "stepFunctions": {"region": REGION, "stateMachines": arns},
        "pollInterval": "10s",
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn kubectl_apply(c: &Cluster, doc: &Value) -> std::process::Output {
    c.kubectl_with_stdin(
        ["apply", "--server-side", "--validate=strict", "-f", "-"],
        &doc.to_string(),
    )
}

fn failed_now(name: &str, error: &str) -> ExecutionSpec {
    ExecutionSpec::failed(name, error).stopped_ago(Duration::from_secs(60))
}

fn orders_scenario(n: u32) -> Scenario {
    let mut sm = StateMachineSpec::standard("orders");
    for i in 0..n {
        sm = sm.execution(failed_now(&format!("o-{i}"), "Lambda.ServiceException"));
    }
    // Input and cause carry secret-looking values: they must never reach status or events.
    sm = sm.execution(
        ExecutionSpec::new("bad-input")
            .outcomes([redrive_emulator::Outcome::fail_with(
                "ValidationError",
                "token=sk_live_LEAKCHECK",
            )])
            .input(r#"{"password":"hunter2-LEAKCHECK"}"#)
            .stopped_ago(Duration::from_secs(60)),
    );
    Scenario {
        state_machines: vec![sm],
        ..Scenario::default()
    }
}

async fn policy_status(c: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let api: Api<RedrivePolicy> = Api::namespaced(c.client().await, ns);
    let p = api.get_opt(name).await.ok()??;
    serde_json::to_value(p.status?).ok()
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn ledger_summary(h: &EmulatorHandle) -> String {
    format!("ledger: {:?}", redrives_per_attempt(&h.ledger()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_rejects_invalid_policies_with_the_crd_messages() {
    let c = cluster_with_crd().await;
    c.kubectl_ok(["create", "namespace", "team-a"]);
    let ok = policy_doc("team-a", "valid", &["orders"], json!({}));
    let out = kubectl_apply(&c, &ok);
    assert!(
        out.status.success(),
        "a valid policy is accepted: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "bad status value",
            json!({"statuses": ["FAILED", "CRASHED"]}),
            "Unsupported value: \"CRASHED\"",
        ),
        (
            "bad order value",
            json!({"order": "Sideways"}),
            "Unsupported value: \"Sideways\"",
        ),
        (
            "maxAge over 14 days",
            json!({"window": {"maxAge": "15d"}}),
            "window.maxAge must be at most 14d",
        ),
        (
            "minAge not below maxAge",
            json!({"window": {"minAge": "2d", "maxAge": "1d"}}),
            "window.minAge must be shorter than window.maxAge",
        ),
        (
            "negative maxRedrives",
            json!({"maxRedrives": -1}),
            "spec.maxRedrives",
        ),
        (
            "unknown field",
            json!({"maxRedrive": 3}),
            ".spec.maxRedrive: field not declared in schema",
        ),
        (
            "poll interval too short",
            json!({"pollInterval": "5s"}),
            "pollInterval must be at least 10s",
        ),
        (
            "duration with units out of order",
            json!({"pollInterval": "1m1h"}),
            "pollInterval must be a duration",
        ),
        (
            "jitter above 1",
            json!({"backoff": {"jitter": 2}}),
            "spec.backoff.jitter",
        ),
        (
            "backoff initial above max",
            json!({"backoff": {"initial": "2h", "max": "1h"}}),
            "backoff.initial must not exceed backoff.max",
        ),
        (
            "repeated status",
            json!({"statuses": ["FAILED", "FAILED"]}),
            "statuses must not repeat a value",
        ),
    ];
    for (what, extra, message) in &cases {
        let doc = policy_doc("team-a", "invalid", &["orders"], extra.clone());
        let out = kubectl_apply(&c, &doc);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: accepted but must be rejected"
        );
        assert!(
            stderr.contains(message),
            "{what}: rejection lacks {message:?}:\n{stderr}"
        );
    }
    // Shapes that need their own documents.
    let mut no_target = policy_doc("team-a", "invalid", &[], json!({}));
    no_target["spec"]["stepFunctions"] = json!({"region": REGION});
    let mut bad_arn = policy_doc("team-a", "invalid", &[], json!({}));
    bad_arn["spec"]["stepFunctions"]["stateMachines"] =
        json!(["arn:aws:lambda:us-east-1:123456789012:function:orders"]);
    let mut wrong_region = policy_doc("team-a", "invalid", &[], json!({}));
    wrong_region["spec"]["stepFunctions"]["stateMachines"] =
        json!(["arn:aws:states:eu-west-1:123456789012:stateMachine:orders"]);
    let mut bad_role = policy_doc("team-a", "invalid", &["orders"], json!({}));
    bad_role["spec"]["stepFunctions"]["roleArn"] = json!("arn:aws:iam::123:role/x");
    for (what, doc, message) in [
        (
            "neither stateMachines nor selector",
            no_target,
            "set at least one of stepFunctions.stateMachines or stepFunctions.selector",
        ),
        (
            "malformed state machine ARN",
            bad_arn,
            "spec.stepFunctions.stateMachines[0]",
        ),
        (
            "ARN in another region",
            wrong_region,
            "must be in stepFunctions.region",
        ),
        ("malformed role ARN", bad_role, "spec.stepFunctions.roleArn"),
    ] {
        let out = kubectl_apply(&c, &doc);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{what}: accepted but must be rejected"
        );
        assert!(
            stderr.contains(message),
            "{what}: rejection lacks {message:?}:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_is_reconciled_and_follows_edits_suspend_dry_run_and_deletion() {
    let c = cluster_with_crd().await;
    let emu = emulator::start(EmulatorConfig::default(), orders_scenario(5))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.kubectl_ok(["create", "namespace", "payments"]);
    let mut op = OperatorProcess::spawn(
        "op-1",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &emu.endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    let diag = || {
        format!(
            "{}\n--- operator log ---\n{}",
            ledger_summary(&emu),
            op_logs(dir.path(), "op-1")
        )
    };

    // 1. Reconciled: the five transient failures (and the permanent one: no filter yet) are redriven.
    let doc = policy_doc("payments", "orders", &["orders"], json!({"maxRedrives": 1}));
    assert!(kubectl_apply(&c, &doc).status.success());
    wait_until(WAIT, "6 redrives", &diag, || async {
        (redriven_executions(&emu).len() == 6).then_some(())
    })
    .await;
    let status = wait_until(WAIT, "status with counts", &diag, || async {
        let s = policy_status(&c, "payments", "orders").await?;
        (s["counts"]["redriven"] == 6).then_some(s)
    })
    .await;
    assert_eq!(
        condition(&status, "Ready").unwrap()["status"],
        "True",
        "{status}"
    );
    assert_eq!(
        condition(&status, "Degraded").unwrap()["status"],
        "False",
        "{status}"
    );
    assert_eq!(
        condition(&status, "Suspended").unwrap()["status"],
        "False",
        "{status}"
    );
    assert_eq!(status["stateMachines"], 1);
    assert!(
        status["recent"].as_array().is_some_and(|r| r.len() == 6),
        "{status}"
    );
    assert!(
        status["lastPoll"].is_string() && status["nextPoll"].is_string(),
        "{status}"
    );

    // `kubectl get rdp` shows the printer columns, `describe` the events.
    let table = c.kubectl_ok(["get", "rdp", "-n", "payments"]);
    let header = table.lines().next().unwrap_or_default();
    for col in [
        "NAME",
        "SUSPENDED",
        "REDRIVEN",
        "WAITING",
        "EXHAUSTED",
        "LAST POLL",
        "READY",
        "REASON",
        "AGE",
    ] {
        assert!(header.contains(col), "missing column {col}: {table}");
    }
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("orders") && row.contains(" 6 ") && row.contains("True"),
        "{table}"
    );
    let events = wait_until(WAIT, "a Redriven event", &diag, || async {
        let out = c.kubectl_ok([
            "get",
            "events.events.k8s.io",
            "-n",
            "payments",
            "-o",
            "json",
        ]);
        out.contains("\"Redriven\"").then_some(out)
    })
    .await;
    // The note stays true for every poll a series aggregates: no counts or samples in it (issue
    // 13: a series once read "x2 … redrove 181" after a poll that redrove 21).
    assert!(
        events.contains("redrove failed executions of this policy; which and how many: status.recent and status.counts.redriven"),
        "{events}"
    );
    assert!(!events.contains("redrove 6"), "{events}");

    // 2. The executions fail again at once (redriveRunTime 0): maxRedrives 1 exhausts them.
    wait_until(WAIT, "an Exhausted event", &diag, || async {
        let out = c.kubectl_ok([
            "get",
            "events.events.k8s.io",
            "-n",
            "payments",
            "-o",
            "json",
        ]);
        out.contains("\"Exhausted\"").then_some(())
    })
    .await;

    // 3. An edit takes effect at once: allow 2 redrives but exclude ValidationError.
    let edited = policy_doc(
        "payments",
        "orders",
        &["orders"],
        json!({"maxRedrives": 2, "errors": {"exclude": ["ValidationError"]}}),
    );
    assert!(kubectl_apply(&c, &edited).status.success());
    wait_until(
        WAIT,
        "second redrives of the transient failures",
        &diag,
        || async {
            let per = redrives_per_attempt(&emu.ledger());
            (per.keys().filter(|(_, n)| *n == 1).count() == 5).then_some(())
        },
    )
    .await;
    let bad = exec_arn("orders", "bad-input");
    assert!(
        !redrives_per_attempt(&emu.ledger()).contains_key(&(bad.clone(), 1)),
        "excluded error redriven again"
    );

    // 4. Suspend: no AWS call at all, shown in status; new failures wait.
    let calls_before = emu.stats().total_calls;
    c.kubectl_ok([
        "patch",
        "rdp",
        "orders",
        "-n",
        "payments",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    wait_until(WAIT, "Suspended=True", &diag, || async {
        let s = policy_status(&c, "payments", "orders").await?;
        (condition(&s, "Suspended")?["status"] == "True").then_some(())
    })
    .await;
    let calls_suspended = emu.stats().total_calls;
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("late-1", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        emu.stats().total_calls,
        calls_suspended,
        "a suspended policy makes no AWS call"
    );
    assert!(calls_suspended >= calls_before);

    // 5. Dry run: polls again, redrives nothing, shows DryRun in the counts.
    c.kubectl_ok([
        "patch",
        "rdp",
        "orders",
        "-n",
        "payments",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false,"dryRun":true}}"#,
    ]);
    wait_until(WAIT, "a DryRun decision in status", &diag, || async {
        let s = policy_status(&c, "payments", "orders").await?;
        (s["counts"]["byReason"]["DryRun"].as_u64()? >= 1).then_some(())
    })
    .await;
    let late = exec_arn("orders", "late-1");
    assert!(
        !redriven_executions(&emu).contains(&late),
        "dry run redrove"
    );

    // 6. Live again: the late failure is redriven.
    c.kubectl_ok([
        "patch",
        "rdp",
        "orders",
        "-n",
        "payments",
        "--type=merge",
        "-p",
        r#"{"spec":{"dryRun":false}}"#,
    ]);
    wait_until(WAIT, "late-1 redriven", &diag, || async {
        redriven_executions(&emu).contains(&late).then_some(())
    })
    .await;

    // Nothing secret-looking from the executions reached status or events.
    let yaml = c.kubectl_ok(["get", "rdp", "orders", "-n", "payments", "-o", "yaml"]);
    let events = c.kubectl_ok([
        "get",
        "events.events.k8s.io",
        "-n",
        "payments",
        "-o",
        "yaml",
    ]);
    assert!(
        !yaml.contains("LEAKCHECK") && !events.contains("LEAKCHECK"),
        "{yaml}\n{events}"
    );

    // 7. Deleted: no more activity.
    c.kubectl_ok(["delete", "rdp", "orders", "-n", "payments"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_after_delete = emu.stats().total_calls;
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("late-2", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        emu.stats().total_calls,
        calls_after_delete,
        "a deleted policy makes no AWS call"
    );
    assert!(op.alive(), "operator still running:\n{}", op.logs());
    assert_no_duplicates(&emu);
}

fn op_logs(dir: &std::path::Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A policy whose object cannot be used (spec error found by the operator, not the schema)
/// gets a condition, and the other policies keep working.
#[tokio::test(flavor = "multi_thread")]
async fn one_bad_policy_never_stalls_the_others() {
    let c = cluster_with_crd().await;
    let emu = emulator::start(EmulatorConfig::default(), orders_scenario(3))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.kubectl_ok(["create", "namespace", "mixed"]);
    // The API server's CEL rejects regexes Go's RE2 cannot compile; one that RE2 accepts and
    // the operator's Rust engine does not (`\Q…\E` quoting) is admitted, then reported.
    let bad = policy_doc(
        "mixed",
        "bad-regex",
        &["orders"],
        json!({"errors": {"causeRegex": "\\Q(\\E"}}),
    );
    // And a plainly invalid one never gets in.
    let unclosed = policy_doc(
        "mixed",
        "unclosed-regex",
        &["orders"],
        json!({"errors": {"causeRegex": "(unclosed"}}),
    );
    let refused = kubectl_apply(&c, &unclosed);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("errors.causeRegex must be a valid regular expression"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let good = policy_doc("mixed", "good", &["orders"], json!({}));
    assert!(kubectl_apply(&c, &bad).status.success());
    assert!(kubectl_apply(&c, &good).status.success());
    let _op = OperatorProcess::spawn(
        "op-mixed",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &emu.endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
        ],
    );
    let diag = || {
        format!(
            "{}\n{}",
            ledger_summary(&emu),
            op_logs(dir.path(), "op-mixed")
        )
    };
    let status = wait_until(WAIT, "InvalidSpec condition", &diag, || async {
        let s = policy_status(&c, "mixed", "bad-regex").await?;
        (condition(&s, "Ready")?["reason"] == "InvalidSpec").then_some(s)
    })
    .await;
    let message = condition(&status, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("spec.errors.causeRegex")
            && message.contains("invalid regular expression"),
        "{message}"
    );
    wait_until(WAIT, "the good policy's redrives", &diag, || async {
        (redriven_executions(&emu).len() == 4).then_some(())
    })
    .await;
    let events = c.kubectl_ok(["get", "events.events.k8s.io", "-n", "mixed", "-o", "json"]);
    assert!(events.contains("\"InvalidSpec\""), "{events}");

    // No reconcile storm: the operator's own status writes do not cause extra polls. Over 21 s
    // the good policy (10 s interval, 2 statuses) lists at most 3 times per status.
    let lists_before = emu.stats().calls("ListExecutions");
    tokio::time::sleep(Duration::from_secs(21)).await;
    let lists = emu.stats().calls("ListExecutions") - lists_before;
    assert!(
        lists <= 6,
        "{lists} ListExecutions in 21 s: status writes trigger polls\n{}",
        diag()
    );

    // An object that no longer matches the Rust types (e.g. after a CRD change) is reported and
    // does not stall the watch. Relax the schema to create one.
    let relax = json!([{"op": "replace", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec",
        "value": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}]);
    c.kubectl_ok([
        "patch",
        "crd",
        "redrivepolicies.redrive.dev",
        "--type=json",
        "-p",
        &relax.to_string(),
    ]);
    let malformed = json!({"apiVersion": "redrive.dev/v1alpha1", "kind": "RedrivePolicy",
        "metadata": {"name": "malformed", "namespace": "mixed"}, "spec": {"stepFunctions": "oops"}});
    wait_until(
        WAIT,
        "the relaxed schema to accept a malformed object",
        &diag,
        || async {
            c.kubectl_with_stdin(["apply", "-f", "-"], &malformed.to_string())
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let status = wait_until(
        WAIT,
        "InvalidSpec on the malformed object",
        &diag,
        || async {
            let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
                c.client().await,
                "mixed",
                &kube::api::ApiResource::erase::<RedrivePolicy>(&()),
            );
            let obj = api.get_opt("malformed").await.ok()??;
            let s = obj.data.get("status")?.clone();
            (condition(&s, "Ready")?["reason"] == "InvalidSpec").then_some(s)
        },
    )
    .await;
    let message = condition(&status, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("cannot be read"), "{message}");
    // The good policy still works.
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("after-malformed", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    let after = exec_arn("orders", "after-malformed");
    wait_until(
        WAIT,
        "a redrive after the malformed object",
        &diag,
        || async { redriven_executions(&emu).contains(&after).then_some(()) },
    )
    .await;
}

/// Two replicas with leader election: one acts; killing it hands over within the lease
/// duration; the API server restarting does not need an operator restart.
#[tokio::test(flavor = "multi_thread")]
async fn leader_election_hands_over_and_the_api_server_can_restart() {
    let c = cluster_with_crd().await;
    let emu = emulator::start(EmulatorConfig::default(), orders_scenario(4))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.kubectl_ok(["create", "namespace", "ha"]);
    c.kubectl_ok(["create", "namespace", "redrive-system"]);
    let args = [
        "--admin-addr",
        "127.0.0.1:0",
        "--kube-heartbeat",
        "1s",
        "--liveness-stale-factor",
        "3",
        "--endpoint-url",
        &emu.endpoint,
        "--lease-namespace",
        "redrive-system",
        "--lease-duration",
        "6s",
        "--lease-grace",
        "2s",
    ];
    let mut a = OperatorProcess::spawn("replica-a", &c.kubeconfig_path, dir.path(), &args);
    // Let replica-a take the lease first.
    wait_until(WAIT, "a lease holder", String::new, || async {
        let out = c.kubectl([
            "get",
            "lease",
            "redrive-operator",
            "-n",
            "redrive-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "replica-a").then_some(())
    })
    .await;
    let mut b = OperatorProcess::spawn("replica-b", &c.kubeconfig_path, dir.path(), &args);
    let diag = || {
        format!(
            "{}\n--- a ---\n{}\n--- b ---\n{}",
            ledger_summary(&emu),
            op_logs(dir.path(), "replica-a"),
            op_logs(dir.path(), "replica-b")
        )
    };

    let doc = policy_doc(
        "ha",
        "orders",
        &["orders"],
        json!({"maxRedrives": 3, "backoff": {"initial": "1s", "max": "2s", "jitter": 0}}),
    );
    assert!(kubectl_apply(&c, &doc).status.success());
    wait_until(WAIT, "first redrives", &diag, || async {
        (redriven_executions(&emu).len() >= 5).then_some(())
    })
    .await;
    // Only the leader acted.
    assert!(
        a.logs().contains("\"redrive\""),
        "the leader redrove:\n{}",
        diag()
    );
    assert!(
        !b.logs().contains("\"redrive\""),
        "the standby must not act:\n{}",
        diag()
    );
    assert!(b.logs().contains("waiting for leadership"), "{}", diag());

    // Kill the leader: the standby takes over within the lease duration and acts.
    a.kill9();
    let killed = std::time::Instant::now();
    wait_until(
        Duration::from_secs(30),
        "replica-b leads",
        &diag,
        || async {
            let out = c.kubectl([
                "get",
                "lease",
                "redrive-operator",
                "-n",
                "redrive-system",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]);
            (String::from_utf8_lossy(&out.stdout) == "replica-b").then_some(())
        },
    )
    .await;
    assert!(
        killed.elapsed() < Duration::from_secs(6 + 5),
        "took over in {:?}",
        killed.elapsed()
    );
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("after-failover", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    let after = exec_arn("orders", "after-failover");
    wait_until(WAIT, "the new leader redrives", &diag, || async {
        redriven_executions(&emu).contains(&after).then_some(())
    })
    .await;

    // API server down and back: /livez flips, then the operator recovers by itself.
    let admin = operator::admin_addr_in(&b.logs()).expect("replica-b logged its admin address");
    let live = |addr: String| async move {
        operator::http_get(&addr, "/livez")
            .await
            .map(|(code, _)| code)
    };
    assert_eq!(live(admin.clone()).await, Some(200), "{}", diag());
    c.stop_apiserver();
    wait_until(
        Duration::from_secs(30),
        "/livez failing while the API server is down",
        &diag,
        || {
            let admin = admin.clone();
            async move { (live(admin).await == Some(503)).then_some(()) }
        },
    )
    .await;
    c.start_apiserver().await;
    wait_until(
        Duration::from_secs(30),
        "/livez healthy again",
        &diag,
        || {
            let admin = admin.clone();
            async move { (live(admin).await == Some(200)).then_some(()) }
        },
    )
    .await;
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("after-restart", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    let after_restart = exec_arn("orders", "after-restart");
    wait_until(
        Duration::from_secs(90),
        "redrive after the API server restart",
        &diag,
        || async {
            redriven_executions(&emu)
                .contains(&after_restart)
                .then_some(())
        },
    )
    .await;
    assert!(
        b.alive(),
        "replica-b survived the API server restart:\n{}",
        diag()
    );
    assert_no_duplicates(&emu);

    // Graceful shutdown releases the lease.
    let code = b.terminate(Duration::from_secs(20));
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{}", diag());
    let holder = c.kubectl([
        "get",
        "lease",
        "redrive-operator",
        "-n",
        "redrive-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&holder.stdout),
        "",
        "lease released"
    );
}

/// The operator with a ServiceAccount token bound to deploy/rbac.yaml (not as admin) works, and
/// removing a permission gives a clear error.
#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_rbac_is_sufficient_and_missing_rights_are_reported() {
    let c = cluster_with_crd().await;
    let emu = emulator::start(EmulatorConfig::default(), orders_scenario(2))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.kubectl_ok(["create", "namespace", "redrive-system"]);
    c.kubectl_ok(["create", "namespace", "tenant"]);
    c.kubectl_ok(["apply", "-f", RBAC]);
    let token = c.kubectl_ok([
        "create",
        "token",
        "redrive-operator",
        "-n",
        "redrive-system",
        "--duration=1h",
    ]);
    let kubeconfig = sa_kubeconfig(&c, dir.path(), token.trim());

    let doc = policy_doc("tenant", "orders", &["orders"], json!({}));
    assert!(kubectl_apply(&c, &doc).status.success());
    let args = [
        "--admin-addr",
        "127.0.0.1:0",
        "--endpoint-url",
        &emu.endpoint,
        "--lease-namespace",
        "redrive-system",
    ];
    let mut op = OperatorProcess::spawn("sa-op", &kubeconfig, dir.path(), &args);
    let diag = || format!("{}\n{}", ledger_summary(&emu), op_logs(dir.path(), "sa-op"));
    wait_until(WAIT, "redrives with the ServiceAccount", &diag, || async {
        (redriven_executions(&emu).len() == 3).then_some(())
    })
    .await;
    wait_until(
        WAIT,
        "status written with the ServiceAccount",
        &diag,
        || async {
            let s = policy_status(&c, "tenant", "orders").await?;
            (s["counts"]["redriven"] == 3).then_some(())
        },
    )
    .await;
    let events = c.kubectl_ok(["get", "events.events.k8s.io", "-n", "tenant", "-o", "json"]);
    assert!(
        events.contains("\"Redriven\""),
        "events written with the ServiceAccount: {events}"
    );
    assert!(
        !op.logs().contains("forbidden"),
        "no permission error with the documented RBAC:\n{}",
        op.logs()
    );
    op.kill9();

    // Without the status permission: the operator says so, clearly.
    let patch = json!([{"op": "remove", "path": "/rules/1"}]);
    c.kubectl_ok([
        "patch",
        "clusterrole",
        "redrive-operator",
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
    emu.seed(Scenario {
        state_machines: vec![
            StateMachineSpec::standard("orders")
                .execution(failed_now("late", "Lambda.ServiceException")),
        ],
        ..Scenario::default()
    })
    .unwrap();
    let op2 = OperatorProcess::spawn("sa-op-2", &kubeconfig, dir.path(), &args);
    wait_until(WAIT, "a clear forbidden error", &|| op2.logs(), || async {
        let logs = op2.logs();
        (logs.contains("writing status of tenant/orders") && logs.contains("forbidden"))
            .then_some(())
    })
    .await;
}

/// A kubeconfig for the same server with a bearer token.
fn sa_kubeconfig(c: &Cluster, dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: sa}}\ncurrent-context: sa\n",
        c.server_url,
        c.ca_cert_path.display()
    );
    let path = dir.join("sa.kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Per-policy AWS identity: `roleArn` is assumed with ExternalId = the policy's namespace (proven
/// against the emulator's STS stand-in), a role trusting another namespace is refused, and the
/// operator's role allowlist denies clearly.
#[tokio::test(flavor = "multi_thread")]
async fn roles_are_assumed_per_namespace_and_denied_outside_their_trust() {
    use redrive_emulator::RoleSpec;
    let role_a = "arn:aws:iam::123456789012:role/team-a-redriver";
    let role_b = "arn:aws:iam::123456789012:role/team-b-redriver";
    let scenario = orders_scenario(2)
        .with_role(RoleSpec {
            external_ids: vec!["team-a".into()],
            ..RoleSpec::new(role_a)
        })
        .with_role(RoleSpec {
            external_ids: vec!["team-b".into()],
            ..RoleSpec::new(role_b)
        });
    let c = cluster_with_crd().await;
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for ns in ["team-a", "team-c", "team-b"] {
        c.kubectl_ok(["create", "namespace", ns]);
    }
    let with_role = |ns: &str, role: &str| {
        let mut doc = policy_doc(ns, "orders", &["orders"], json!({}));
        doc["spec"]["stepFunctions"]["roleArn"] = json!(role);
        doc
    };
    // team-a uses its own role; team-c tries team-a's role; team-b names a role the allowlist
    // does not grant it.
    for doc in [
        with_role("team-a", role_a),
        with_role("team-c", role_a),
        with_role("team-b", role_b),
    ] {
        assert!(kubectl_apply(&c, &doc).status.success());
    }
    let allow = format!("team-a={role_a}");
    let _op = OperatorProcess::spawn(
        "tenancy-op",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &emu.endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
            "--allowed-role",
            &allow,
            "--allowed-role",
            &format!("team-c={role_a}"),
        ],
    );
    let diag = || {
        format!(
            "{}\nsts: {:?}\n{}",
            ledger_summary(&emu),
            emu.sts_ledger(),
            op_logs(dir.path(), "tenancy-op")
        )
    };

    // team-a: redriven through a session of role A assumed with ExternalId team-a.
    wait_until(WAIT, "team-a's redrives", &diag, || async {
        (redriven_executions(&emu).len() == 3).then_some(())
    })
    .await;
    for entry in emu.ledger().iter().filter(|e| e.outcome.is_redriven()) {
        let key = entry.access_key_id.clone().expect("signed request");
        assert_eq!(
            emu.role_of(&key),
            Some((role_a.to_string(), Some("team-a".to_string()))),
            "{}",
            diag()
        );
    }

    // team-c: STS refuses role A (its trust names only team-a); the policy says so.
    let status = wait_until(WAIT, "team-c denied", &diag, || async {
        let s = policy_status(&c, "team-c", "orders").await?;
        (condition(&s, "Degraded")?["status"] == "True").then_some(s)
    })
    .await;
    let degraded = condition(&status, "Degraded").unwrap();
    assert_eq!(degraded["reason"], "Credentials", "{status}");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AccessDenied"),
        "{status}"
    );
    assert!(
        emu.sts_ledger()
            .iter()
            .any(|e| format!("{e:?}").contains("team-c")
                && format!("{e:?}").contains("AccessDenied")),
        "{}",
        diag()
    );

    // team-b: the operator's allowlist refuses role B for team-b before any AWS call.
    let status = wait_until(WAIT, "team-b RoleNotAllowed", &diag, || async {
        let s = policy_status(&c, "team-b", "orders").await?;
        (condition(&s, "Ready")?["reason"] == "RoleNotAllowed").then_some(s)
    })
    .await;
    let message = condition(&status, "Ready").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("not allowed for namespace \"team-b\""),
        "{message}"
    );
    assert!(
        !emu.sts_ledger()
            .iter()
            .any(|e| format!("{e:?}").contains(role_b)),
        "role B was never assumed: {}",
        diag()
    );
    let events = c.kubectl_ok(["get", "events.events.k8s.io", "-n", "team-b", "-o", "json"]);
    assert!(events.contains("\"AccessDenied\""), "{events}");
    assert_no_duplicates(&emu);
}
