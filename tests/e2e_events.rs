//! Event-driven redrive in cluster mode, on a real kube-apiserver + etcd, through a real
//! third-party EventBridge and SQS (moto): emulator status change → moto EventBridge rule →
//! moto SQS → the operator's consumer → the policy's hint worker → one read of the run → the
//! engine → the redrive. The sweep is an hour away in these tests, so whatever is redriven was
//! redriven from its event; forged messages act on nothing. Step Functions and CodePipeline.
//! One control plane serves the whole binary; moto comes from scripts/moto.sh (without it
//! these fail).

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator;
#[path = "support/shared_cluster.rs"]
mod shared_cluster;
mod support;

use std::time::Duration;

use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, EventsConfig, ExecutionSpec,
    PipelineExecutionSpec, PipelineSpec, Scenario, StateMachineSpec,
};
use serde_json::{Value, json};
use support::events;
use support::pipelines::{
    assert_no_duplicate_retries, deploy_status, fails_then_succeeds, retried, wait_for,
};

use cluster::Cluster;
use operator::OperatorProcess;
use shared_cluster::{ClusterGuard, SharedCluster};

const ACCOUNT: &str = support::ACCOUNT;
const CLUSTER_TESTS: usize = 2;

static SHARED: SharedCluster = SharedCluster::new(CLUSTER_TESTS);

async fn cluster() -> ClusterGuard {
    SHARED.get(cluster::start_with_crds).await
}

#[test]
fn the_shared_cluster_knows_how_many_tests_use_it() {
    assert_eq!(
        shared_cluster::count_tests(include_str!("e2e_events.rs")),
        CLUSTER_TESTS,
        "update CLUSTER_TESTS: every tokio test here uses the shared cluster"
    );
}

/// An emulator in `region` that publishes its status changes to moto's EventBridge.
async fn start_emulator(region: &str, scenario: Scenario) -> EmulatorHandle {
    let config = EmulatorConfig {
        region: region.to_string(),
        events: EventsConfig {
            eventbridge_endpoint: Some(redrive_emulator::moto::endpoint().to_string()),
            ..EventsConfig::default()
        },
        ..EmulatorConfig::default()
    };
    emulator::start(config, scenario).await.expect("emulator")
}

fn policy(ns: &str, name: &str, target: Value) -> Value {
    let mut spec = json!({
        "pollInterval": "10s",
        "maxRedrives": 3,
        "backoff": {"initial": "1s", "factor": 1.0, "max": "1s", "jitter": 0.0},
    });
    if let (Some(s), Some(t)) = (spec.as_object_mut(), target.as_object()) {
        for (k, v) in t {
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

/// The operator in cluster mode for `ns` only, reading hints from `queue`, sweeping hourly.
fn spawn(
    c: &Cluster,
    name: &str,
    dir: &std::path::Path,
    emu: &EmulatorHandle,
    ns: &str,
    region: &str,
    queue: &str,
) -> OperatorProcess {
    let args = [
        "--namespace",
        ns,
        "--endpoint-url",
        &emu.endpoint,
        "--leader-election=false",
        "--admin-addr",
        "127.0.0.1:0",
        "--event-queue-url",
        queue,
        "--event-queue-region",
        region,
        "--sqs-endpoint-url",
        redrive_emulator::moto::endpoint(),
        "--sweep-interval",
        "1h",
        "--event-visibility-timeout",
        "10s",
    ];
    OperatorProcess::spawn(name, &c.kubeconfig_path, dir, &args)
}

fn status(c: &Cluster, ns: &str, name: &str) -> Value {
    let out = c.kubectl_ok(["get", "rdp", "-n", ns, name, "-o", "json"]);
    serde_json::from_str::<Value>(&out).expect("policy JSON")["status"].clone()
}

async fn metrics(op: &OperatorProcess) -> String {
    let addr = operator::admin_addr_in(&op.logs()).expect("admin address in the logs");
    operator::http_get(&addr, "/metrics")
        .await
        .expect("/metrics")
        .1
}

/// After the first sweep a failure is redriven from its event; a forged FAILED message for a
/// covered execution that is running acts on nothing; the status says the policy is
/// event-driven and counts the hinted redrive; the metrics count the messages.
#[tokio::test(flavor = "multi_thread")]
async fn step_functions_failures_are_redriven_from_their_events_in_cluster_mode() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let (ns, region) = ("events-sfn", "us-west-1");
    c.kubectl_ok(["create", "namespace", ns]);
    let url = events::queue(region, "e2e-events-sfn", events::SFN_PATTERN).await;
    let scenario = Scenario::new().with(
        StateMachineSpec::standard("orders")
            .redrive_run_time(Duration::from_millis(300))
            .execution(ExecutionSpec::running("r1"))
            .execution(ExecutionSpec::running("r2")),
    );
    let emu = start_emulator(region, scenario).await;
    let machine = format!("arn:aws:states:{region}:{ACCOUNT}:stateMachine:orders");
    let exec = |n: &str| format!("arn:aws:states:{region}:{ACCOUNT}:execution:orders:{n}");
    c.apply_json(&policy(
        ns,
        "orders",
        json!({"stepFunctions": {"region": region, "stateMachines": [machine]}}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op-events-sfn", dir.path(), &emu, ns, region, &url);

    let swept = wait_for(Duration::from_secs(60), || async {
        (status(c, ns, "orders")["events"]["sweepInterval"] == "1h").then_some(())
    })
    .await;
    assert!(
        swept.is_some(),
        "no event-driven status: {}\n{}",
        status(c, ns, "orders"),
        op.logs()
    );
    let lists = emu.stats().calls("ListExecutions");

    // Forged: r2 is RUNNING; the hint makes the operator read it, and it does nothing.
    let forged = json!({
        "version": "0", "id": "forged", "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "account": ACCOUNT, "region": region, "time": "2026-12-01T00:00:00Z",
        "resources": [exec("r2")],
        "detail": {"executionArn": exec("r2"), "stateMachineArn": machine, "status": "FAILED"}
    });
    events::send(region, &url, &forged.to_string()).await;

    assert!(emu.fail_execution(&exec("r1"), "Lambda.ServiceException", "boom"));
    let redriven = wait_for(Duration::from_secs(60), || async {
        let s = status(c, ns, "orders");
        (s["events"]["redrivenFromHints"] == 1 && s["counts"]["redriven"] == 1).then_some(())
    })
    .await;
    assert!(
        redriven.is_some(),
        "not redriven from its event: {}\n{}",
        status(c, ns, "orders"),
        op.logs()
    );
    let s = status(c, ns, "orders");
    assert_eq!(s["recent"][0]["run"], exec("r1"), "{s}");
    assert!(s["events"]["lastHintAction"].is_string(), "{s}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acted: Vec<String> = emu
        .ledger()
        .into_iter()
        .filter(|e| e.outcome.is_redriven())
        .map(|e| e.execution_arn)
        .collect();
    assert_eq!(acted, [exec("r1")], "exactly r1, once");
    assert_eq!(
        emu.stats().calls("ListExecutions"),
        lists,
        "an event, not a sweep, redrove it"
    );
    let m = metrics(&op).await;
    let count = |outcome: &str| {
        operator::metric_sum(&m, "redrive_event_messages_total", &[("outcome", outcome)])
    };
    assert!(count("routed") >= 2.0, "{m}");
    assert_eq!(
        operator::metric_sum(
            &m,
            "redrive_redrives_total",
            &[("policy", "orders"), ("outcome", "Redriven")]
        ),
        1.0,
        "{m}"
    );
    // The Redriven event is published for hinted redrives too.
    let evs = c.kubectl_ok([
        "get",
        "events.events.k8s.io",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(evs.contains("Redriven"), "{evs}");
    op.kill9();
}

/// A stage that fails after the first poll is retried from its "Stage Execution State
/// Change" event (the next poll is an hour away), exactly once, and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn codepipeline_stage_failures_are_retried_from_their_events_in_cluster_mode() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let (ns, region) = ("events-cp", "ca-central-1");
    c.kubectl_ok(["create", "namespace", ns]);
    let url = events::queue(region, "e2e-events-cp", events::CODEPIPELINE_PATTERN).await;
    // The seeded execution succeeds; every later one fails in Deploy once (scripts are per
    // execution), then succeeds on a retry.
    let scenario = Scenario::new().with_pipeline(
        PipelineSpec::source_build_deploy("deploys")
            .action_duration(Duration::from_millis(300))
            .script("Deploy", "Deploy", fails_then_succeeds(1))
            .execution(PipelineExecutionSpec::now().outcomes(
                "Deploy",
                "Deploy",
                [redrive_emulator::ActionOutcome::succeed()],
            )),
    );
    let emu = start_emulator(region, scenario).await;
    let settled = wait_for(Duration::from_secs(30), || async {
        (deploy_status(&emu, "deploys") == "Succeeded").then_some(())
    })
    .await;
    assert!(settled.is_some(), "the first execution succeeds");
    c.apply_json(&policy(
        ns,
        "deploys",
        // Polls an hour apart: only an event can lead to the retry within the test.
        json!({"codePipeline": {"region": region, "pipelines": ["deploys"]}, "pollInterval": "1h"}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op-events-cp", dir.path(), &emu, ns, region, &url);
    let swept = wait_for(Duration::from_secs(60), || async {
        (status(c, ns, "deploys")["events"]["sweepInterval"] == "1h").then_some(())
    })
    .await;
    assert!(swept.is_some(), "{}", op.logs());

    emu.start_pipeline_execution("deploys")
        .expect("a new execution");
    let retried_ok = wait_for(Duration::from_secs(90), || async {
        (retried(&emu) == 1 && deploy_status(&emu, "deploys") == "Succeeded").then_some(())
    })
    .await;
    assert!(
        retried_ok.is_some(),
        "not retried from its event: {} retries, Deploy {}\nledger: {:#?}\n{}",
        retried(&emu),
        deploy_status(&emu, "deploys"),
        emu.codepipeline_ledger(),
        op.logs()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_no_duplicate_retries(&emu, "events");
    assert_eq!(retried(&emu), 1);
    let s = status(c, ns, "deploys");
    assert_eq!(s["events"]["redrivenFromHints"], 1, "{s}");
    op.kill9();
}
