//! End to end, CodePipeline: the operator in cluster mode against a real kube-apiserver + etcd and
//! the CodePipeline emulator. RetryStageExecution has no client token, so these tests prove the
//! attempt ledger (RedriveAttempt objects, created as claims) keeps "never act twice" true: the
//! emulator's ledger must show at most one RetryStageExecution per (pipeline, stage, execution,
//! attempt) under replicas without a lease, kill -9 at random moments, an API-server outage and a
//! policy deleted and re-created by GitOps. One control plane serves the whole binary.

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
    self as emulator, ActionOutcome, EmulatorConfig, EmulatorHandle, FaultConfig, OnFailureSpec,
    PipelineExecutionSpec, PipelineSpec, RetryOutcome, Scenario, StageRetryMode,
};
use serde_json::{Value, json};
use support::pipelines::*;

use cluster::Cluster;
use operator::OperatorProcess;
use shared_cluster::{ClusterGuard, SharedCluster};

/// Tests of this binary that use the shared control plane (checked below). The outage test
/// stops its API server, so it has one of its own.
const CLUSTER_TESTS: usize = 4;

static SHARED: SharedCluster = SharedCluster::new(CLUSTER_TESTS);

/// The control plane shared by the tests of this binary that leave it running.
async fn cluster() -> ClusterGuard {
    SHARED.get(cluster::start_with_crds).await
}

#[test]
fn the_shared_cluster_knows_how_many_tests_use_it() {
    assert_eq!(
        shared_cluster::count_tests(include_str!("e2e_codepipeline.rs")),
        CLUSTER_TESTS + 1,
        "update CLUSTER_TESTS: every tokio test here but the outage test uses the shared cluster"
    );
}

async fn start_emulator(scenario: Scenario) -> EmulatorHandle {
    emulator::start(EmulatorConfig::default(), scenario)
        .await
        .expect("emulator starts")
}

fn policy(ns: &str, name: &str, pipelines: &[String], extra: Value) -> Value {
    let mut spec = json!({
        "codePipeline": {"region": support::REGION, "pipelines": pipelines},
        "pollInterval": "10s",
        "backoff": {"initial": "1s", "factor": 1.0, "max": "1s", "jitter": 0.0},
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

/// Operator flags: this test's emulator and namespace only (the tests of this binary share
/// one API server, and an operator watching every namespace would act on the others' policies
/// against the wrong emulator).
fn operator_args(emu: &EmulatorHandle, ns: &str) -> Vec<String> {
    [
        "--namespace",
        ns,
        "--endpoint-url",
        &emu.endpoint,
        "--leader-election=false",
        "--admin-addr",
        "off",
        // Short SDK timeouts make short claim deadlines (2 x timeout + skew), so claims left
        // by a kill are resolved within the test.
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

fn figures(test: &str, pairs: &[(&str, String)]) {
    let line: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("FIGURES {test}: {}", line.join(" "));
}

/// The behaviour users see: retries up to maxRedrives with backoff, the error filter, the native
/// auto retry waited for, superseded executions left alone; `kubectl get rdp` and `kubectl get
/// redriveattempts` tell the story.
#[tokio::test(flavor = "multi_thread")]
async fn retries_failed_stages_within_the_policy_rules() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "cp-rules";
    c.kubectl_ok(["create", "namespace", ns]);
    let superseded = failing("superseded", fails_then_succeeds(1));
    let scenario = Scenario::new()
        // Fails twice more, then succeeds: two retries.
        .with_pipeline(failing("flaky", fails_then_succeeds(2)))
        // Never succeeds: exactly maxRedrives (2) retries.
        .with_pipeline(failing("hopeless", fails(10)))
        // Excluded by the error filter: never retried.
        .with_pipeline(
            PipelineSpec::source_build_deploy("misconfigured")
                .script(
                    "Deploy",
                    "Deploy",
                    [ActionOutcome::fail("ConfigurationError")],
                )
                .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60))),
        )
        // The stage retries itself once (onFailure: RETRY, after 8 s): the operator must not
        // race that, and retries only after AWS's attempt failed too.
        .with_pipeline(
            PipelineSpec::source_build_deploy("autoretry")
                .action_duration(Duration::from_millis(500))
                .auto_retry_delay(Duration::from_secs(8))
                .on_failure(
                    "Deploy",
                    OnFailureSpec::retry(StageRetryMode::FailedActions),
                )
                .script("Deploy", "Deploy", fails_then_succeeds(2))
                .execution(PipelineExecutionSpec::now()),
        )
        .with_pipeline(superseded);
    let emu = start_emulator(scenario).await;
    // A newer execution of `superseded` fails in Deploy too: only it may be retried.
    let old_id = emu
        .pipeline_state("superseded")
        .and_then(|s| {
            s.stage("Deploy")
                .and_then(|d| d.pipeline_execution_id.clone())
        })
        .expect("superseded has a failed execution");
    let new_id = emu
        .start_pipeline_execution("superseded")
        .expect("start a newer execution");
    let newer_failed = wait_for(Duration::from_secs(30), || {
        let (emu, new_id) = (&emu, &new_id);
        async move {
            emu.pipeline_state("superseded")
                .and_then(|s| s.stage("Deploy").cloned())
                .filter(|d| d.pipeline_execution_id.as_deref() == Some(new_id.as_str()))
                .filter(|d| format!("{:?}", d.status) == "Some(Failed)")
                .map(|_| ())
        }
    })
    .await;
    assert!(
        newer_failed.is_some(),
        "the newer execution fails in Deploy"
    );

    let names: Vec<String> = [
        "flaky",
        "hopeless",
        "misconfigured",
        "autoretry",
        "superseded",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    c.apply_json(&policy(
        ns,
        "deploys",
        &names,
        json!({"maxRedrives": 2, "errors": {"exclude": ["ConfigurationError"]}}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op-rules", dir.path(), &operator_args(&emu, ns));

    let done = wait_for(Duration::from_secs(150), || {
        let emu = &emu;
        async move {
            let flaky = deploy_status(emu, "flaky") == "Succeeded";
            let hopeless =
                manual_retries(emu, "hopeless") == 2 && deploy_status(emu, "hopeless") == "Failed";
            let auto = deploy_status(emu, "autoretry") == "Succeeded";
            let sup = deploy_status(emu, "superseded") == "Succeeded";
            (flaky && hopeless && auto && sup).then_some(())
        }
    })
    .await;
    let ledger = emu.codepipeline_ledger();
    assert!(
        done.is_some(),
        "not converged: flaky {} ({}), hopeless {} ({}), autoretry {}, superseded {}\nledger: {ledger:#?}\nlogs:\n{}",
        deploy_status(&emu, "flaky"),
        manual_retries(&emu, "flaky"),
        deploy_status(&emu, "hopeless"),
        manual_retries(&emu, "hopeless"),
        deploy_status(&emu, "autoretry"),
        deploy_status(&emu, "superseded"),
        op.logs()
    );
    // One more poll: nothing is retried beyond maxRedrives, or for the excluded error.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_no_duplicate_retries(&emu, "rules");
    let by_pipeline = |p: &str| {
        emu.codepipeline_ledger()
            .into_iter()
            .filter(|e| e.pipeline_name == p && e.outcome == RetryOutcome::Retried)
            .count()
    };
    assert_eq!(by_pipeline("flaky"), 2, "flaky: two retries");
    assert_eq!(by_pipeline("hopeless"), 2, "hopeless: maxRedrives");
    assert_eq!(by_pipeline("misconfigured"), 0, "excluded error");
    assert_eq!(
        by_pipeline("autoretry"),
        1,
        "one manual retry after AWS's own"
    );
    let auto = emu.pipeline_state("autoretry").unwrap();
    assert_eq!(auto.stage("Deploy").unwrap().auto_stage_retry_attempt, 1);
    assert!(
        !ledger.iter().any(|e| e.pipeline_name == "autoretry"
            && matches!(&e.outcome, RetryOutcome::Refused { code, .. } if code == "ConflictException")),
        "the operator raced AWS's automatic retry: {ledger:#?}"
    );
    assert!(
        emu.codepipeline_ledger()
            .iter()
            .filter(|e| e.pipeline_name == "superseded")
            .all(|e| e.pipeline_execution_id == new_id && e.pipeline_execution_id != old_id),
        "only the newest execution of `superseded` is retried"
    );

    // What a user sees.
    let rdp = c.kubectl_ok(["get", "rdp", "-n", ns]);
    assert!(rdp.contains("codepipeline"), "target column: {rdp}");
    let status = || -> Value {
        serde_json::from_str::<Value>(
            &c.kubectl_ok(["get", "rdp", "-n", ns, "deploys", "-o", "json"]),
        )
        .unwrap()["status"]
            .clone()
    };
    // Status is a report written after each poll: wait for the one that saw the last retry.
    let performed = retries(&emu).len() as u64;
    let counted = wait_for(Duration::from_secs(30), || async {
        (status()["counts"]["redriven"].as_u64() == Some(performed)).then_some(())
    })
    .await;
    let st = &status();
    assert!(counted.is_some(), "redriven = {performed}: {st:#}");
    assert_eq!(st["target"], "codepipeline", "{st:#}");
    assert_eq!(st["workflows"], 5, "{st:#}");
    assert!(
        st["stateMachines"].is_null(),
        "no Step Functions words: {st:#}"
    );
    let attempts = c.kubectl_ok(["get", "redriveattempts", "-n", ns]);
    for col in ["RUN", "ATTEMPT", "PHASE"] {
        assert!(attempts.contains(col), "printer column {col}: {attempts}");
    }
    assert!(attempts.contains("Acted"), "{attempts}");
    let listed: Value =
        serde_json::from_str(&c.kubectl_ok(["get", "redriveattempts", "-n", ns, "-o", "json"]))
            .unwrap();
    let acted = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["spec"]["phase"] == "Acted")
        .count();
    assert_eq!(
        acted,
        retries(&emu).len(),
        "one Acted record per retry performed"
    );
    op.kill9();
}

/// Three replicas without a lease on the same policies: the claims, not the lease, keep every
/// attempt to one RetryStageExecution; every stage is retried in the end.
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_without_a_lease_never_retry_twice() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "cp-replicas";
    c.kubectl_ok(["create", "namespace", ns]);
    let (scenario, names) = fleet("svc", 12, 1);
    let emu = start_emulator(scenario).await;
    c.apply_json(&policy(ns, "fleet", &names, json!({"maxRedrives": 3})));
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(&emu, ns);
    let mut ops: Vec<OperatorProcess> = (0..3)
        .map(|i| spawn(c, &format!("replica-{i}"), dir.path(), &args))
        .collect();
    let done = all_succeed(&emu, &names, Duration::from_secs(120)).await;
    assert!(
        done,
        "not every stage succeeded: {:?}\nledger: {:#?}",
        deploy_report(&emu, &names),
        emu.codepipeline_ledger()
    );
    assert_no_duplicate_retries(&emu, "3 replicas");
    let performed = retried(&emu);
    assert_eq!(performed, 12, "one retry per failed stage");
    let claimed_elsewhere: usize = ops
        .iter()
        .map(|o| o.logs().matches("AlreadyClaimed").count())
        .sum();
    figures(
        "three_replicas_without_a_lease_never_retry_twice",
        &[
            ("retries", performed.to_string()),
            ("duplicates", "0".into()),
            ("already_claimed_log_lines", claimed_elsewhere.to_string()),
        ],
    );
    for o in &mut ops {
        o.kill9();
    }
}

/// kill -9 at random moments (some while a RetryStageExecution call is held in flight, so kills
/// land between claim and act and between act and record), 30 times: nothing twice, nothing
/// lost once the last operator runs undisturbed.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_at_random_moments_never_retries_twice_and_loses_nothing() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "cp-kills";
    c.kubectl_ok(["create", "namespace", ns]);
    let kills = if std::env::var_os("REDRIVE_LONG").is_some() {
        100
    } else {
        30
    };
    let seed: u64 = std::env::var("REDRIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Fails four more times, then succeeds: four retries each (maxRedrives 5).
    let (scenario, names) = fleet("batch", 10, 4);
    let emu = start_emulator(scenario).await;
    // Slow answers to the calls around the act, so kills often land mid-protocol.
    emu.set_faults(FaultConfig {
        latency: Some(Duration::from_millis(400)),
        latency_rate: 0.5,
        only_apis: vec![
            "codepipeline:RetryStageExecution".into(),
            "codepipeline:GetPipelineState".into(),
        ],
        ..FaultConfig::default()
    });
    c.apply_json(&policy(ns, "batches", &names, json!({"maxRedrives": 5})));
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(&emu, ns);
    for i in 0..kills {
        let mut op = spawn(c, &format!("life-{i}"), dir.path(), &args);
        let ms = rng.random_range(300..2500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        op.kill9();
        assert_no_duplicate_retries(&emu, &format!("after kill {i} (seed {seed})"));
    }
    emu.set_faults(FaultConfig::default());
    let mut last = spawn(c, "survivor", dir.path(), &args);
    let done = all_succeed(&emu, &names, Duration::from_secs(180)).await;
    assert!(
        done,
        "lost work after {kills} kills (seed {seed}): {:?}\nlogs:\n{}",
        deploy_report(&emu, &names),
        last.logs()
    );
    assert_no_duplicate_retries(&emu, &format!("kill loop (seed {seed})"));
    let performed = retried(&emu);
    assert_eq!(performed, 40, "four retries per pipeline, each once");
    figures(
        "kill9_at_random_moments_never_retries_twice_and_loses_nothing",
        &[
            ("kills", kills.to_string()),
            ("seed", seed.to_string()),
            ("retries", performed.to_string()),
            ("duplicates", "0".into()),
        ],
    );
    last.kill9();
}

/// An API-server outage of 30 s mid-drain, then a GitOps delete and re-create of the policy
/// while attempts are recorded: no attempt redone, nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_outage_and_gitops_recreate_never_redo_an_attempt() {
    // Its own control plane: stopping a shared API server would disturb the other tests.
    let own = cluster::start_with_crds().await;
    let c: &Cluster = &own;
    let ns = "cp-outage";
    c.kubectl_ok(["create", "namespace", ns]);
    let (scenario, names) = fleet("etl", 6, 2);
    let emu = start_emulator(scenario).await;
    let doc = policy(ns, "etl", &names, json!({"maxRedrives": 4}));
    c.apply_json(&doc);
    let dir = tempfile::tempdir().unwrap();
    let args = operator_args(&emu, ns);
    let mut op = spawn(c, "op-outage", dir.path(), &args);
    // First retries land, then the API server goes away for 30 s.
    let first = wait_for(Duration::from_secs(60), || {
        let emu = &emu;
        async move { (!retries(emu).is_empty()).then_some(()) }
    })
    .await;
    assert!(first.is_some(), "no retry before the outage: {}", op.logs());
    c.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = retries(&emu).len();
    c.start_apiserver().await;
    // GitOps: the policy is deleted and applied again (a new object, a new uid).
    c.kubectl_ok(["delete", "rdp", "-n", ns, "etl", "--wait=true"]);
    c.apply_json(&doc);
    let done = all_succeed(&emu, &names, Duration::from_secs(150)).await;
    assert!(
        done,
        "not converged after the outage: {:?}\nlogs:\n{}",
        deploy_report(&emu, &names),
        op.logs()
    );
    assert_no_duplicate_retries(&emu, "outage + re-create");
    let performed = retried(&emu);
    assert_eq!(performed, 12, "two retries per pipeline, each once");
    // The records outlived the policy's deletion (no ownerReferences).
    let listed: Value =
        serde_json::from_str(&c.kubectl_ok(["get", "redriveattempts", "-n", ns, "-o", "json"]))
            .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert!(items.len() >= 12, "records kept: {}", items.len());
    assert!(
        items
            .iter()
            .all(|i| i["metadata"]["ownerReferences"].is_null()),
        "no ownerReferences"
    );
    figures(
        "api_server_outage_and_gitops_recreate_never_redo_an_attempt",
        &[
            ("outage_s", "30".into()),
            ("retries_during_outage", during.to_string()),
            ("retries", performed.to_string()),
            ("duplicates", "0".into()),
        ],
    );
    op.kill9();
}

/// Bad input: an unknown pipeline and a stage glob that matches nothing are reported in the
/// status naming the field, and the policy's other pipelines are still retried.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_pipelines_and_unmatched_stage_globs_are_reported_and_the_rest_works() {
    let guard = cluster().await;
    let c: &Cluster = &guard;
    let ns = "cp-bad";
    c.kubectl_ok(["create", "namespace", ns]);
    let emu =
        start_emulator(Scenario::new().with_pipeline(failing("good", fails_then_succeeds(1))))
            .await;
    c.apply_json(&policy(
        ns,
        "mixed",
        &["good".to_string(), "no-such-pipeline".to_string()],
        json!({}),
    ));
    let mut globbed = policy(ns, "globs", &["good".to_string()], json!({}));
    globbed["spec"]["codePipeline"]["stages"] = json!(["Deploy-*"]);
    c.apply_json(&globbed);
    // Two targets in one policy: rejected at admission with the CEL message.
    let mut both = policy(ns, "both", &["good".to_string()], json!({}));
    both["spec"]["stepFunctions"] =
        json!({"region": support::REGION, "stateMachines": [support::sm_arn("x")]});
    let out = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &both.to_string());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set exactly one target"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let mut op = spawn(c, "op-bad", dir.path(), &operator_args(&emu, ns));
    let ok = wait_for(Duration::from_secs(60), || {
        let emu = &emu;
        async move { (deploy_status(emu, "good") == "Succeeded").then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "the valid pipeline is retried: {}", op.logs());
    let status = |name: &str| -> Value {
        serde_json::from_str::<Value>(&c.kubectl_ok(["get", "rdp", "-n", ns, name, "-o", "json"]))
            .unwrap()["status"]
            .clone()
    };
    let degraded = |st: &Value| -> String {
        st["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "True" || c["type"] == "Ready")
            .map(|c| c["message"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let seen = wait_for(Duration::from_secs(40), || async {
        let m = status("mixed");
        let g = status("globs");
        (degraded(&m).contains("no-such-pipeline")
            && degraded(&g).contains("spec.codePipeline.stages"))
        .then_some(())
    })
    .await;
    assert!(
        seen.is_some(),
        "conditions name the pipeline and the field:\nmixed: {:#}\nglobs: {:#}",
        status("mixed"),
        status("globs")
    );
    op.kill9();
}
