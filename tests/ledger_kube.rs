//! The in-cluster attempt ledger (`KubeLedger`, `RedriveAttempt` objects) on a real
//! kube-apiserver + etcd: create-is-claim under concurrency, compare-and-swap settle and
//! take-over, the CRD's server-side guards, lifecycle without ownerReferences, listing, pruning,
//! printer columns and object names for hostile run ids.
//!
//! One control plane serves every test of this binary; each test works in its own namespace.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/shared_cluster.rs"]
mod shared_cluster;

use std::time::Duration;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use redrive_operator::api::attempt::{
    LABEL_POLICY, LABEL_ROOT, LABEL_TARGET, RedriveAttempt, attempt_crd_yaml, root_label_value,
};
use redrive_operator::ledger::{
    AttemptKey, AttemptRecord, ClaimResult, KubeLedger, Ledger, LedgerError, NewClaim, Outcome,
    Phase,
};
use redrive_operator::targets::ErrorCategory;

use cluster::Cluster;
use shared_cluster::{ClusterGuard, SharedCluster};

const POLICY_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/redrivepolicies.redrive.dev.yaml"
);

/// Number of tests in this file that use [`cluster`] (checked by
/// `the_shared_cluster_knows_how_many_tests_use_it`).
const CLUSTER_TESTS: usize = 9;

static SHARED: SharedCluster = SharedCluster::new(CLUSTER_TESTS);

/// The shared control plane, started (with both CRDs installed) by the first test that needs
/// it.
async fn cluster() -> ClusterGuard {
    SHARED.get(start_with_crds).await
}

async fn start_with_crds() -> Cluster {
    let c = cluster::start().await;
    let out = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &attempt_crd_yaml());
    assert!(
        out.status.success(),
        "the generated RedriveAttempt CRD is rejected by the API server:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kubectl_ok(["apply", "--server-side", "-f", POLICY_CRD]);
    c.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/redriveattempts.redrive.dev",
        "crd/redrivepolicies.redrive.dev",
    ]);
    c
}

#[test]
fn the_shared_cluster_knows_how_many_tests_use_it() {
    assert_eq!(
        shared_cluster::count_tests(include_str!("ledger_kube.rs")),
        CLUSTER_TESTS,
        "update CLUSTER_TESTS: every tokio test here uses the shared cluster"
    );
}

/// A fresh namespace and a ledger on a client of this test's runtime.
async fn setup(ns: &str) -> (ClusterGuard, KubeLedger, kube::Client) {
    let c = cluster().await;
    c.kubectl_ok(["create", "namespace", ns]);
    let client = c.client().await;
    (c, KubeLedger::new(client.clone()), client)
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// Attempt `attempt` of `run` (root `root`) claimed by `holder` three hours ago, valid until
/// `valid_for` seconds from now (negative: expired).
fn claim_in(
    ns: &str,
    run: &str,
    root: &str,
    attempt: u32,
    holder: &str,
    valid_for: i64,
) -> NewClaim {
    let now = Timestamp::now();
    NewClaim {
        key: AttemptKey::new(ns, "codepipeline", run, attempt),
        policy: "orders".into(),
        workflow: "orders-pipeline".into(),
        root: root.into(),
        holder: holder.into(),
        now: now - secs(10_800),
        deadline: now + secs(valid_for),
    }
}

fn claimed(r: Result<ClaimResult, LedgerError>) -> AttemptRecord {
    match r {
        Ok(ClaimResult::Claimed(rec)) => rec,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn is_dns_label(s: &str) -> bool {
    let re = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
    s.len() <= 63 && re.is_match(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_claims_of_one_key_yield_exactly_one_claim() {
    let ns = "ledger-race";
    let (_cluster, _, client) = setup(ns).await;
    let run = "orders-pipeline/Deploy/0f8fad5b-d9cb-469f-a165-70867728950e";
    // Sixteen replicas, each with its own ledger, all claiming the same attempt at once.
    let ledgers: Vec<KubeLedger> = (0..16).map(|_| KubeLedger::new(client.clone())).collect();
    let results = join_all(
        ledgers
            .iter()
            .enumerate()
            .map(|(i, l)| l.claim(claim_in(ns, run, run, 1, &format!("replica-{i}"), 300))),
    )
    .await;
    let results: Vec<ClaimResult> = results.into_iter().map(Result::unwrap).collect();
    let winners: Vec<&AttemptRecord> = results
        .iter()
        .filter(|r| r.is_claimed())
        .map(ClaimResult::record)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:#?}");
    let winner = winners[0];
    for r in &results {
        assert_eq!(
            r.record().holder,
            winner.holder,
            "every Taken reports the winner"
        );
        assert_eq!(r.record().key, winner.key);
    }
    // The API server holds the winner's claim, with the labels and no ownerReferences.
    let api: Api<RedriveAttempt> = Api::namespaced(client, ns);
    let obj = api.get(&winner.name).await.unwrap();
    assert_eq!(obj.spec.holder, winner.holder);
    assert_eq!(obj.spec.phase, Phase::Intent);
    assert_eq!(obj.metadata.owner_references, None);
    let labels = obj.metadata.labels.unwrap();
    assert_eq!(labels[LABEL_TARGET], "codepipeline");
    assert_eq!(labels[LABEL_POLICY], "orders");
    assert_eq!(labels[LABEL_ROOT], root_label_value(run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_is_a_compare_and_swap_and_settled_records_are_final() {
    let ns = "ledger-settle";
    let (_cluster, l, client) = setup(ns).await;
    let rec = claimed(l.claim(claim_in(ns, "p/s/e1", "p/s/e1", 1, "a", 300)).await);

    let outcome = Outcome {
        code: Some("Succeeded".into()),
        message: Some("retried stage Deploy".into()),
        new_run_id: None,
        etag: Some("W/\"42\"".into()),
    };
    let settled = l
        .settle(&rec, Phase::Acted, Some(outcome.clone()), Timestamp::now())
        .await
        .unwrap();
    assert_eq!(settled.phase, Phase::Acted);
    assert_eq!(settled.outcome, Some(outcome));
    assert_ne!(settled.version, rec.version, "a new resourceVersion");
    assert_eq!(l.get(&rec.key).await.unwrap(), Some(settled.clone()));

    // The stale version loses: Conflict, retryable, nothing changed.
    let err = l
        .settle(&rec, Phase::Failed, None, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    assert_eq!(err.category(), ErrorCategory::Transient);
    assert_eq!(l.get(&rec.key).await.unwrap(), Some(settled.clone()));
    // Acted is final for the ledger ...
    let err = l
        .settle(&settled, Phase::NotActed, None, Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::AlreadySettled { .. }), "{err}");
    // ... and for the API server: a writer that bypasses the ledger is rejected by CEL.
    let api: Api<RedriveAttempt> = Api::namespaced(client, ns);
    let mut obj = api.get(&settled.name).await.unwrap();
    obj.spec.phase = Phase::Intent;
    obj.spec.holder = "rogue".into();
    let err = api
        .replace(&settled.name, &PostParams::default(), &obj)
        .await
        .unwrap_err();
    let mapped = redrive_operator::ledger::kube::from_kube("replace", err);
    assert!(
        matches!(&mapped, LedgerError::Invalid { message } if message.contains("is final")),
        "{mapped}"
    );
    let mut obj = api.get(&settled.name).await.unwrap();
    obj.spec.run = "p/s/other".into();
    let err = api
        .replace(&settled.name, &PostParams::default(), &obj)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("run is immutable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn take_over_refuses_live_intents_and_has_one_winner_for_expired_ones() {
    let ns = "ledger-takeover";
    let (_cluster, l, client) = setup(ns).await;
    let now = Timestamp::now();

    let live = claimed(
        l.claim(claim_in(ns, "p/s/live", "p/s/live", 1, "a", 300))
            .await,
    );
    let err = l
        .take_over(&live, "b", now, now + secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::NotReclaimable { .. }), "{err}");
    assert_eq!(l.get(&live.key).await.unwrap(), Some(live.clone()));

    // An expired intent, resolved by two replicas at once: exactly one wins.
    let stale = claimed(
        l.claim(claim_in(ns, "p/s/stale", "p/s/stale", 1, "a", -60))
            .await,
    );
    let (x, y) = (
        KubeLedger::new(client.clone()),
        KubeLedger::new(client.clone()),
    );
    let (rx, ry) = tokio::join!(
        x.take_over(&stale, "b", now, now + secs(300)),
        y.take_over(&stale, "c", now, now + secs(300)),
    );
    let (rx, ry) = (rx.unwrap(), ry.unwrap());
    assert_ne!(
        rx.is_claimed(),
        ry.is_claimed(),
        "one winner: {rx:?} {ry:?}"
    );
    let (winner, loser) = if rx.is_claimed() { (rx, ry) } else { (ry, rx) };
    assert_eq!(loser, ClaimResult::Taken(winner.record().clone()));
    let w = winner.into_record();
    assert_eq!(w.phase, Phase::Intent);
    assert!(w.holder == "b" || w.holder == "c");
    assert_eq!(w.intent_at, now);
    // The stale copy cannot be taken over again, and the winner's intent is now live.
    let again = l.take_over(&stale, "d", now, now + secs(60)).await.unwrap();
    assert_eq!(again, ClaimResult::Taken(w.clone()));
    let err = l.take_over(&w, "d", now, now + secs(60)).await.unwrap_err();
    assert!(matches!(err, LedgerError::NotReclaimable { .. }), "{err}");

    // A Failed attempt may be retried at once.
    let failed = l
        .settle(&w, Phase::Failed, None, Timestamp::now())
        .await
        .unwrap();
    let retry = claimed(l.take_over(&failed, "d", now, now + secs(60)).await);
    assert_eq!(
        (retry.phase, retry.settled_at, retry.outcome),
        (Phase::Intent, None, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_have_no_owner_references_and_outlive_their_policy() {
    let ns = "ledger-lifecycle";
    let (c, l, client) = setup(ns).await;
    let policy = serde_json::json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"stepFunctions": {
            "region": "us-east-1",
            "stateMachines": ["arn:aws:states:us-east-1:123456789012:stateMachine:orders"],
        }},
    });
    let out = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &policy.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut names = Vec::new();
    for attempt in 1..=3 {
        let rec = claimed(
            l.claim(claim_in(ns, "p/s/e", "p/s/e", attempt, "a", 300))
                .await,
        );
        if attempt < 3 {
            l.settle(&rec, Phase::Acted, None, Timestamp::now())
                .await
                .unwrap();
        }
        names.push(rec.name);
    }
    let api: Api<RedriveAttempt> = Api::namespaced(client, ns);
    for name in &names {
        let obj = api.get(name).await.unwrap();
        assert_eq!(obj.metadata.owner_references, None, "{name}");
        assert_eq!(obj.metadata.finalizers, None, "{name}");
    }

    // GitOps deletes the policy (and every other policy of the namespace) ...
    c.kubectl_ok([
        "delete",
        "redrivepolicies",
        "--all",
        "-n",
        ns,
        "--wait=true",
    ]);
    assert_eq!(
        c.kubectl_ok(["get", "redrivepolicies", "-n", ns, "-o", "name"])
            .trim(),
        ""
    );
    // ... and the records stay (no garbage collector is needed to prove it: without an
    // ownerReference nothing could delete them, and a bare API server's GC is not running).
    let left = l.list(ns, None).await.unwrap();
    assert_eq!(left.len(), 3);
    // A re-created policy claims the same attempts again: taken, not redone.
    let out = c.kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &policy.to_string());
    assert!(out.status.success());
    for attempt in 1..=3 {
        let r = l
            .claim(claim_in(ns, "p/s/e", "p/s/e", attempt, "new-replica", 300))
            .await
            .unwrap();
        assert!(
            !r.is_claimed(),
            "attempt {attempt} redone after the policy came back"
        );
        assert_eq!(r.record().holder, "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_by_root_returns_one_lineage() {
    let ns = "ledger-list";
    let (c, l, _) = setup(ns).await;
    // Flow Service lineage: run-1 failed, its re-run run-1b failed too: one root.
    let lineage = [("flow/run-1", 1), ("flow/run-1", 2), ("flow/run-1b", 1)];
    for (run, attempt) in lineage {
        claimed(
            l.claim(claim_in(ns, run, "flow/run-1", attempt, "a", 300))
                .await,
        );
    }
    claimed(
        l.claim(claim_in(ns, "flow/run-2", "flow/run-2", 1, "a", 300))
            .await,
    );
    let other_ns = "ledger-list-other";
    c.kubectl_ok(["create", "namespace", other_ns]);
    claimed(
        l.claim(claim_in(other_ns, "flow/run-1", "flow/run-1", 1, "a", 300))
            .await,
    );

    let one = l.list(ns, Some("flow/run-1")).await.unwrap();
    let mut got: Vec<(String, u32)> = one
        .iter()
        .map(|r| (r.key.run.clone(), r.key.attempt))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("flow/run-1".to_string(), 1),
            ("flow/run-1".to_string(), 2),
            ("flow/run-1b".to_string(), 1)
        ]
    );
    assert!(one.iter().all(|r| r.key.namespace == ns));
    assert_eq!(l.list(ns, Some("flow/run-2")).await.unwrap().len(), 1);
    assert!(l.list(ns, Some("flow/none")).await.unwrap().is_empty());
    let all = l.list(ns, None).await.unwrap();
    assert_eq!(all.len(), 4);
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(all, sorted, "sorted by name");
    assert_eq!(l.list(other_ns, None).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_old_settled_and_long_expired_records() {
    let ns = "ledger-prune";
    let (_cluster, l, _) = setup(ns).await;
    let now = Timestamp::now();
    let old_settled = claimed(
        l.claim(claim_in(
            ns,
            "r/old-settled",
            "r/old-settled",
            1,
            "a",
            -5400,
        ))
        .await,
    );
    l.settle(&old_settled, Phase::Acted, None, now - secs(7200))
        .await
        .unwrap();
    let old_failed = claimed(
        l.claim(claim_in(ns, "r/old-failed", "r/old-failed", 1, "a", -5400))
            .await,
    );
    l.settle(&old_failed, Phase::Failed, None, now - secs(7200))
        .await
        .unwrap();
    claimed(
        l.claim(claim_in(ns, "r/old-intent", "r/old-intent", 1, "a", -5400))
            .await,
    );
    let recent = claimed(
        l.claim(claim_in(ns, "r/recent", "r/recent", 1, "a", 300))
            .await,
    );
    l.settle(&recent, Phase::NotActed, None, now).await.unwrap();
    claimed(l.claim(claim_in(ns, "r/live", "r/live", 1, "a", 300)).await);
    claimed(
        l.claim(claim_in(
            ns,
            "r/just-expired",
            "r/just-expired",
            1,
            "a",
            -60,
        ))
        .await,
    );

    let err = l.prune(ns, now + secs(60)).await.unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Invalid, "{err}");
    assert_eq!(l.list(ns, None).await.unwrap().len(), 6);

    let n = l.prune(ns, now - secs(3600)).await.unwrap();
    assert_eq!(n, 3);
    let mut left: Vec<String> = l
        .list(ns, None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.run)
        .collect();
    left.sort();
    assert_eq!(left, ["r/just-expired", "r/live", "r/recent"]);
    assert_eq!(l.prune(ns, now - secs(3600)).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_target_run_attempt_and_phase() {
    let ns = "ledger-kubectl";
    let (c, l, _) = setup(ns).await;
    let run = "orders-pipeline/Deploy/7d444840-9dc0-11d1-b245-5ffdce74fad2";
    let rec = claimed(
        l.claim(claim_in(ns, run, run, 2, "redrive-operator-0", 300))
            .await,
    );
    l.settle(&rec, Phase::Acted, None, Timestamp::now())
        .await
        .unwrap();
    claimed(
        l.claim(claim_in(ns, run, run, 3, "redrive-operator-0", 300))
            .await,
    );

    let out = c.kubectl_ok(["get", "redriveattempts", "-n", ns]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "TARGET", "POLICY", "RUN", "ATTEMPT", "PHASE", "NEW", "RUN", "AGE"
        ],
        "{out}"
    );
    // CodePipeline retries never create a new run, so the "New run" column is empty.
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| r.len() == 7), "{out}");
    let mut cells: Vec<(&str, &str, &str, &str)> =
        rows.iter().map(|r| (r[1], r[3], r[4], r[5])).collect();
    cells.sort();
    assert_eq!(
        cells,
        [
            ("codepipeline", run, "2", "Acted"),
            ("codepipeline", run, "3", "Intent")
        ],
        "{out}"
    );
    assert!(rows.iter().any(|r| r[0] == rec.name), "{out}");
    // Short name, category and the wide columns.
    let short = c.kubectl_ok(["get", "rda", "-n", ns, "-o", "name"]);
    assert_eq!(short.lines().count(), 2, "{short}");
    let category = c.kubectl_ok(["get", "redrive", "-n", ns, "-o", "name"]);
    assert!(
        category.contains("redriveattempt.redrive.dev/"),
        "{category}"
    );
    let wide = c.kubectl_ok(["get", "rda", "-n", ns, "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("HOLDER"), "{wide}");
    assert!(wide.contains("redrive-operator-0"), "{wide}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_run_ids_get_valid_names_and_round_trip() {
    let ns = "ledger-names";
    let (_cluster, l, _) = setup(ns).await;
    let kib = format!("pipeline/stage/{}", "x".repeat(1024));
    let runs: Vec<String> = vec![
        "ünïcødé/ステージ/🚀".into(),
        kib,
        "../../etc/passwd".into(),
        "UPPER/Case/Run".into(),
        "with spaces\tand\nnewlines".into(),
        "-dash-/.dot./_under_".into(),
        "a".into(),
        "é".repeat(4096),
    ];
    for run in &runs {
        let rec = claimed(l.claim(claim_in(ns, run, run, 1, "a", 300)).await);
        assert!(is_dns_label(&rec.name), "{run:?}: {}", rec.name);
        let got = l.get(&rec.key).await.unwrap().expect("stored");
        assert_eq!(&got.key.run, run, "run id stored byte for byte");
        assert_eq!(got, rec);
        // The same key maps to the same object: a second claim is taken.
        assert!(
            !l.claim(claim_in(ns, run, run, 1, "b", 300))
                .await
                .unwrap()
                .is_claimed()
        );
    }
    assert_eq!(l.list(ns, None).await.unwrap().len(), runs.len());
    // Longer than the schema allows: refused before any request, as Invalid.
    let too_long = "x".repeat(4097);
    let err = l
        .claim(claim_in(ns, &too_long, &too_long, 1, "a", 300))
        .await
        .unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Invalid, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_a_retryable_error_never_a_claim() {
    let c = cluster().await;
    let mut config = c.kube_config().await;
    // Nothing listens on port 1 (and the CA is the cluster's): connection refused.
    config.cluster_url = "https://127.0.0.1:1".parse().unwrap();
    config.connect_timeout = Some(Duration::from_secs(2));
    let l = KubeLedger::new(kube::Client::try_from(config).unwrap());
    let err = l
        .claim(claim_in("default", "p/s/e", "p/s/e", 1, "a", 300))
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.category(), ErrorCategory::Transient);
    let err = l.list("default", None).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
