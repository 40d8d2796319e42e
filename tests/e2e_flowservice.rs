//! End to end, Adobe Flow Service: the operator in cluster mode against a real kube-apiserver +
//! etcd and the Flow Service + IMS emulator. A re-trigger creates a new run and has no
//! idempotency key, so these tests prove lineage in the attempt ledger keeps "never act twice"
//! true: the emulator's ledger must show each run re-triggered at most once and at most
//! maxRedrives re-triggers per root, under three replicas without a lease, kill -9 at random
//! moments, short-lived tokens and 429 storms; and that credentials come from the policy's own
//! Secret, rotate without a restart and never appear in logs, status or events. One control
//! plane serves the whole binary.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator;
#[path = "support/shared_cluster.rs"]
mod shared_cluster;
mod support;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, FlowRunSpec, FlowSpec, ImsClientSpec,
    RunOutcome, Scenario,
};
use serde_json::{Value, json};
use support::flows::*;
use support::pipelines::wait_for;

use cluster::Cluster;
use operator::OperatorProcess;
use shared_cluster::{ClusterGuard, SharedCluster};

/// Tests of this binary that use the shared control plane.
const CLUSTER_TESTS: usize = 4;

static SHARED: SharedCluster = SharedCluster::new(CLUSTER_TESTS);

async fn cluster() -> ClusterGuard {
    SHARED.get(cluster::start_with_crds).await
}

#[test]
fn the_shared_cluster_knows_how_many_tests_use_it() {
    assert_eq!(
        shared_cluster::count_tests(include_str!("e2e_flowservice.rs")),
        CLUSTER_TESTS,
        "update CLUSTER_TESTS: every tokio test here uses the shared cluster"
    );
}

fn policy(ns: &str, name: &str, secret: &str, flows: &[String], extra: Value) -> Value {
    let mut spec = json!({
        "flowService": {"credentialsSecretRef": {"name": secret}, "flows": flows},
        "pollInterval": "10s",
        "backoff": {"initial": "1s", "factor": 1.0, "max": "1s", "jitter": 0.0},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "flowService" {
                for (fk, fv) in v.as_object().unwrap() {
                    s["flowService"][fk] = fv.clone();
                }
            } else {
                s.insert(k.clone(), v.clone());
            }
        }
    }
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    })
}

fn apply(c: &Cluster, doc: &Value) -> std::process::Output {
    c.kubectl_with_stdin(
        ["apply", "--server-side", "--validate=strict", "-f", "-"],
        &doc.to_string(),
    )
}

fn create_secret(c: &Cluster, ns: &str, name: &str, secret: &str) {
    let doc = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": secret_data(secret),
    });
    c.apply_json(&doc);
}

fn operator_args(emu: &EmulatorHandle, ns: &str) -> Vec<String> {
    [
        "--namespace",
        ns,
        "--adobe-platform-url",
        &emu.flowservice_url(),
        "--adobe-ims-url",
        &emu.ims_token_url(),
        "--leader-election=false",
        "--admin-addr",
        "off",
        // Short timeouts make short claim deadlines, so claims left by a kill resolve in time.
        "--aws-timeout",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(c: &Cluster, name: &str, dir: &std::path::Path, args: &[String]) -> OperatorProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    OperatorProcess::spawn(name, &c.kubeconfig_path, dir, &args)
}

fn status(c: &Cluster, ns: &str, name: &str) -> Value {
    serde_json::from_str::<Value>(&c.kubectl_ok(["get", "rdp", "-n", ns, name, "-o", "json"]))
        .unwrap()["status"]
        .clone()
}

fn condition(st: &Value, kind: &str) -> Value {
    st["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Every condition message of a policy, joined (for "names the field" checks).
fn messages(st: &Value) -> String {
    st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn start_emulator(config: EmulatorConfig, scenario: Scenario) -> EmulatorHandle {
    emulator::start(config, scenario)
        .await
        .expect("emulator starts")
}

fn figures(test: &str, pairs: &[(&str, String)]) {
    let line: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("FIGURES {test}: {}", line.join(" "));
}

/// What users see: re-triggers up to maxRedrives per root across generations (lineage), the
/// error filter, superseded and streaming runs left alone, the zero-records option; `kubectl get
/// redriveattempts` shows root, attempt and new run.
#[tokio::test(flavor = "multi_thread")]
async fn retriggers_failed_runs_within_the_policy_rules() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "fs-rules";
    c.kubectl_ok(["create", "namespace", ns]);
    let scenario = Scenario::new()
        .with_ims_client(ImsClientSpec::new(CLIENT_ID, CLIENT_SECRET))
        // Re-triggers fail once more, then succeed: two generations.
        .with_flow(failing_flow("flaky", 2))
        // Never succeeds: exactly maxRedrives (2) re-triggers of its root.
        .with_flow(failing_flow("hopeless", 10))
        // Excluded by the error filter.
        .with_flow(
            FlowSpec::batch("misconfigured")
                .run_time(Duration::from_millis(300))
                .run(FlowRunSpec::failed(
                    "CONNECTOR-4001",
                    Duration::from_secs(120),
                )),
        )
        // A later scheduled run succeeded: the old failure is superseded.
        .with_flow(
            FlowSpec::batch("superseded")
                .run_time(Duration::from_millis(300))
                .run(FlowRunSpec::failed(
                    "CONNECTOR-2001",
                    Duration::from_secs(300),
                ))
                .run(FlowRunSpec::succeeded(10, Duration::from_secs(120))),
        )
        // Streaming sources cannot be re-triggered.
        .with_flow(FlowSpec::streaming("stream").run(FlowRunSpec::failed(
            "CONNECTOR-2001",
            Duration::from_secs(120),
        )))
        // Succeeded with zero records: re-triggered once (includeEmptySuccess).
        .with_flow(
            FlowSpec::batch("empty")
                .run_time(Duration::from_millis(300))
                .outcomes([RunOutcome::success(50)])
                .run(FlowRunSpec::new(
                    RunOutcome::success_zero_records(),
                    Duration::from_secs(120),
                )),
        );
    let emu = start_emulator(EmulatorConfig::default(), scenario).await;
    let id = |name: &str| emu.flow_id(name).unwrap();
    let all: Vec<String> = [
        "flaky",
        "hopeless",
        "misconfigured",
        "superseded",
        "stream",
        "empty",
    ]
    .iter()
    .map(|n| id(n))
    .collect();
    create_secret(c, ns, "aep", CLIENT_SECRET);
    c.apply_json(&policy(
        ns,
        "dataflows",
        "aep",
        &all,
        json!({
            "maxRedrives": 2,
            "errors": {"exclude": ["CONNECTOR-4*"]},
            "flowService": {"includeEmptySuccess": true},
        }),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op", dir.path(), &operator_args(&emu, ns));
    let per_root = |name: &str| -> usize {
        let flow = id(name);
        emu.flowservice_ledger()
            .iter()
            .filter(|e| {
                e.flow_id.as_deref() == Some(flow.as_str())
                    && e.outcome == redrive_emulator::ReTriggerOutcome::ReTriggered
            })
            .count()
    };
    let done = wait_for(Duration::from_secs(90), || async {
        (flow_succeeded(&emu, &id("flaky"))
            && per_root("hopeless") == 2
            && flow_succeeded(&emu, &id("empty")))
        .then_some(())
    })
    .await;
    assert!(done.is_some(), "{:#?}\n{}", report(&emu, &all), op.logs());
    // Let a few more polls pass: nothing else may happen.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(per_root("flaky"), 2, "two generations");
    assert_eq!(
        per_root("hopeless"),
        2,
        "maxRedrives per root, across generations"
    );
    assert_eq!(per_root("misconfigured"), 0, "error filter");
    assert_eq!(per_root("superseded"), 0, "superseded by a later success");
    assert_eq!(per_root("stream"), 0, "streaming");
    assert_eq!(per_root("empty"), 1, "zero records, includeEmptySuccess");
    assert_no_duplicate_retriggers(&emu, 2, "rules");

    // The lineage in the ledger: hopeless's root, attempts 1 and 2, each naming its new run,
    // and attempt 2 acting on the run attempt 1 created.
    let attempts: Value = serde_json::from_str(&c.kubectl_ok([
        "get",
        "redriveattempts",
        "-n",
        ns,
        "-l",
        "redrive.dev/target=flowservice",
        "-o",
        "json",
    ]))
    .unwrap();
    let hopeless = id("hopeless");
    let mut lineage: Vec<(u64, String, String)> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["spec"]["workflow"] == hopeless.as_str())
        .map(|a| {
            (
                a["spec"]["attempt"].as_u64().unwrap(),
                a["spec"]["root"].as_str().unwrap().to_string(),
                a["spec"]["outcome"]["newRunId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    lineage.sort();
    assert_eq!(lineage.len(), 2, "{attempts:#}");
    assert_eq!(lineage[0].1, lineage[1].1, "one root: {lineage:?}");
    let created_by_first = &lineage[0].2;
    // `kubectl get redriveattempts` tells the lineage: root (RUN), attempt and the run it made.
    let table = c.kubectl_ok(["get", "redriveattempts", "-n", ns]);
    assert!(
        table.lines().next().unwrap_or_default().contains("NEW RUN"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains(&lineage[0].1) && l.contains(created_by_first.as_str())),
        "{table}"
    );
    assert!(
        emu.flowservice_ledger()
            .iter()
            .any(|e| &e.run_id == created_by_first),
        "attempt 2 re-triggered the run attempt 1 created: {lineage:?}"
    );
    let table = c.kubectl_ok(["get", "rdp", "-n", ns]);
    assert!(table.contains("flowservice"), "{table}");
    let st = status(c, ns, "dataflows");
    assert_eq!(st["target"], "flowservice", "{st:#}");
    assert!(
        st["counts"]["byReason"]["Superseded"].as_u64().unwrap_or(0) >= 1,
        "{st:#}"
    );
    assert!(
        messages(&st).contains("StreamingSource") || st.to_string().contains("StreamingSource"),
        "{st:#}"
    );
    let everything = format!(
        "{st}{}{}",
        c.kubectl_ok(["get", "events", "-n", ns, "-o", "json"]),
        op.logs()
    );
    assert!(
        !everything.contains(CLIENT_SECRET),
        "the client secret leaked"
    );
    figures(
        "retriggers_failed_runs_within_the_policy_rules",
        &[("retriggers", retriggered(&emu).to_string())],
    );
    op.kill9();
}

/// Three replicas without a lease, 30 kill -9 at random moments (some while the re-trigger is
/// held in flight), 5 s tokens and a 429 storm: never a run re-triggered twice, nothing left
/// behind once the faults clear.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_kills_token_expiry_and_429_storms_never_retrigger_twice() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "fs-chaos";
    c.kubectl_ok(["create", "namespace", ns]);
    let kills = if std::env::var_os("REDRIVE_LONG").is_some() {
        100
    } else {
        30
    };
    let seed: u64 = std::env::var("REDRIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xf5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (scenario, flows) = fleet("chaos", 8, 2);
    let mut config = EmulatorConfig::default();
    config.flowservice.token_ttl = Duration::from_secs(5);
    let emu = start_emulator(config, scenario).await;
    emu.set_faults(redrive_emulator::FaultConfig {
        latency: Some(Duration::from_millis(400)),
        latency_rate: 0.5,
        only_apis: vec!["flowservice:ReTriggerRun".into()],
        ..Default::default()
    });
    emu.set_flowservice_throttle(0.2, Duration::from_secs(1));
    create_secret(c, ns, "aep", CLIENT_SECRET);
    c.apply_json(&policy(
        ns,
        "fleet",
        "aep",
        &flows,
        json!({"maxRedrives": 3}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(&emu, ns);
    let mut replicas: Vec<OperatorProcess> = (0..3)
        .map(|i| spawn(c, &format!("replica-{i}"), dir.path(), &args))
        .collect();
    for i in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        let victim = rng.random_range(0..replicas.len());
        replicas[victim].kill9();
        replicas[victim] = spawn(c, &format!("replica-{victim}-life-{i}"), dir.path(), &args);
        assert_no_duplicate_retriggers(&emu, 3, &format!("after kill {i} (seed {seed})"));
    }
    emu.set_flowservice_throttle(0.0, Duration::from_secs(1));
    emu.set_faults(redrive_emulator::FaultConfig::default());
    let done = all_succeed(&emu, &flows, Duration::from_secs(150)).await;
    assert!(
        done,
        "lost work (seed {seed}): {:#?}\n{}",
        report(&emu, &flows),
        replicas[0].logs()
    );
    assert_no_duplicate_retriggers(&emu, 3, "chaos");
    assert_eq!(retriggered(&emu), 8 * 2, "{:#?}", report(&emu, &flows));
    let adopted = c
        .kubectl_ok(["get", "redriveattempts", "-n", ns, "-o", "json"])
        .matches("\"Adopted\"")
        .count();
    figures(
        "replicas_kills_token_expiry_and_429_storms_never_retrigger_twice",
        &[
            ("kills", kills.to_string()),
            ("seed", seed.to_string()),
            ("retriggers", retriggered(&emu).to_string()),
            ("adopted", adopted.to_string()),
            ("ims_tokens", emu.stats().calls("ims:Token").to_string()),
            ("duplicates", "0".into()),
        ],
    );
    for r in &mut replicas {
        r.kill9();
    }
}

/// Rotation: the IMS secret is rotated and the old tokens revoked; until the Secret is updated
/// the policy shows a Credentials condition (not a crash loop), then works again without a
/// restart.
#[tokio::test(flavor = "multi_thread")]
async fn secret_rotation_takes_effect_without_a_restart() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "fs-rotation";
    c.kubectl_ok(["create", "namespace", ns]);
    let (scenario, flows) = fleet("rot", 1, 1);
    let emu = start_emulator(EmulatorConfig::default(), scenario).await;
    create_secret(c, ns, "aep", CLIENT_SECRET);
    c.apply_json(&policy(
        ns,
        "rotating",
        "aep",
        &flows,
        json!({"maxRedrives": 5}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op", dir.path(), &operator_args(&emu, ns));
    assert!(
        all_succeed(&emu, &flows, Duration::from_secs(60)).await,
        "{}",
        op.logs()
    );
    // Rotate at IMS and revoke the live token: the old secret is refused from now on.
    let new_secret = "rotated-secret-0xabcdef";
    emu.rotate_ims_secret(CLIENT_ID, new_secret).unwrap();
    emu.revoke_ims_tokens(CLIENT_ID).unwrap();
    emu.set_flow_outcomes(&flows[0], vec![RunOutcome::success(10)])
        .unwrap();
    let failed = emu.start_flow_run(&flows[0]).unwrap();
    emu.complete_flow_run(&failed, RunOutcome::failed("CONNECTOR-2001"))
        .unwrap();
    let refused = wait_for(Duration::from_secs(40), || async {
        let ready = condition(&status(c, ns, "rotating"), "Ready");
        (ready["status"] == "False" && ready["reason"] == "Credentials").then_some(ready)
    })
    .await;
    assert!(
        refused.is_some(),
        "{:#}\n{}",
        status(c, ns, "rotating"),
        op.logs()
    );
    let message = refused.unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("invalid_client") || message.contains("IMS"),
        "{message}"
    );
    assert!(op.alive(), "a revoked secret must not crash the operator");
    create_secret(c, ns, "aep", new_secret);
    let ok = wait_for(Duration::from_secs(60), || async {
        flow_succeeded(&emu, &flows[0]).then_some(())
    })
    .await;
    assert!(ok.is_some(), "{:#?}\n{}", report(&emu, &flows), op.logs());
    let everything = format!(
        "{}{}{}",
        status(c, ns, "rotating"),
        c.kubectl_ok(["get", "events", "-n", ns, "-o", "json"]),
        op.logs()
    );
    assert!(!everything.contains(CLIENT_SECRET) && !everything.contains(new_secret));
    op.kill9();
}

/// Bad input: a missing Secret, a dataflow that does not exist and a streaming dataflow each
/// give one clear condition naming the field or the code; the other policy keeps working; the
/// API server rejects two targets and a flowService without flows.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_reported_and_the_rest_works() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "fs-bad";
    c.kubectl_ok(["create", "namespace", ns]);
    let (scenario, flows) = fleet("good", 1, 1);
    let scenario = scenario.with_flow(FlowSpec::streaming("events-stream"));
    let emu = start_emulator(EmulatorConfig::default(), scenario).await;
    let stream = emu.flow_id("events-stream").unwrap();
    create_secret(c, ns, "aep", CLIENT_SECRET);
    c.apply_json(&policy(ns, "good", "aep", &flows, json!({})));
    c.apply_json(&policy(ns, "no-secret", "missing", &flows, json!({})));
    // Valid but self-defeating: a failure can leave the window between two polls.
    c.apply_json(&policy(
        ns,
        "slow",
        "aep",
        &flows,
        json!({"pollInterval": "1h", "window": {"maxAge": "1h"}}),
    ));
    c.apply_json(&policy(
        ns,
        "unknown-flow",
        "aep",
        &["no-such-flow".to_string(), stream],
        json!({}),
    ));
    // Admission: both targets, and no flows.
    let mut both = policy(ns, "both", "aep", &flows, json!({}));
    both["spec"]["codePipeline"] = json!({"region": "us-east-1", "pipelines": ["x"]});
    let out = apply(c, &both);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set exactly one target"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty = policy(ns, "empty", "aep", &[], json!({}));
    let out = apply(c, &empty);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flowService.flows or flowService.selector"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op", dir.path(), &operator_args(&emu, ns));
    assert!(
        all_succeed(&emu, &flows, Duration::from_secs(60)).await,
        "the valid policy works: {}",
        op.logs()
    );
    let seen = wait_for(Duration::from_secs(40), || async {
        let missing = status(c, ns, "no-secret");
        let unknown = status(c, ns, "unknown-flow");
        let slow = condition(&status(c, ns, "slow"), "Warning");
        (messages(&missing).contains("missing")
            && messages(&missing).contains("credentialsSecretRef")
            && condition(&missing, "Ready")["status"] == "False"
            && messages(&unknown).contains("no-such-flow")
            && slow["status"] == "True"
            && slow["message"]
                .as_str()
                .is_some_and(|m| m.contains("spec.pollInterval")))
        .then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "no-secret: {:#}\nunknown-flow: {:#}\nslow: {:#}",
        status(c, ns, "no-secret"),
        status(c, ns, "unknown-flow"),
        status(c, ns, "slow")
    );
    let table = c.kubectl_ok(["get", "rdp", "-n", ns]);
    let row = table
        .lines()
        .find(|l| l.starts_with("no-secret"))
        .unwrap_or_default();
    assert!(
        row.contains("False") && row.contains("Credentials"),
        "the table tells the story: {table}"
    );
    assert!(!op.logs().contains(CLIENT_SECRET));
    op.kill9();
}
