//! Reliability (issue 7) in cluster mode, against a real kube-apiserver + etcd and the emulator:
//! - item 1: `kill -9` at seeded moments, including after the redrives and before the status
//!   write reached the API server (a proxy holds the operator's API traffic back 400 ms);
//! - item 2: three replicas with `--leader-election=false` next to a single one: no duplicate,
//!   and what the lease saves (status writes, events, AWS calls), measured;
//! - item 5: the API server down for half a minute, watches resumed (410 Gone), someone else
//!   writing status concurrently: the operator recovers by itself and converges;
//! - item 4 (cluster side): AccessDenied on one state machine and a 5xx burst show in status
//!   and events, the other policy is unaffected, nothing is lost once the fault clears;
//! - item 7: roles per namespace (ExternalId), the allowlist, and no credential in logs (at
//!   debug), events, status, metrics or `plan` output.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/operator.rs"]
mod operator;
mod reliability_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::Api;
use rand::Rng;
use redrive_emulator::{
    self as emulator, Dur, EmulatorConfig, EmulatorHandle, ExecutionSpec, FaultConfig,
    GenerateSpec, Outcome, RoleSpec, Scenario, StateMachineSpec,
};
use redrive_operator::crd::RedrivePolicy;
use reliability_common::*;
use serde_json::{Value, json};
use support::*;

use cluster::Cluster;
use operator::{OperatorProcess, wait_until};

const CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/redrivepolicies.redrive.dev.yaml"
);
const WAIT: Duration = Duration::from_secs(60);

async fn cluster_with_crd(audit: bool) -> Cluster {
    let c = cluster::start_with(cluster::Options { audit }).await;
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

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether the process runs (not exited, not a zombie), without needing `&mut`.
fn running(p: &OperatorProcess) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", p.pid()))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().chars().next()))
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn tail(p: &OperatorProcess, n: usize) -> String {
    let logs = p.logs();
    let lines: Vec<&str> = logs.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The cluster's kubeconfig with the server replaced by `addr` (a proxy in front of it).
fn kubeconfig_via(c: &Cluster, dir: &Path, addr: std::net::SocketAddr) -> PathBuf {
    let text = std::fs::read_to_string(&c.kubeconfig_path).unwrap();
    let proxied = text.replace(&c.server_url, &format!("https://{addr}"));
    assert_ne!(text, proxied, "the kubeconfig names {}", c.server_url);
    let path = dir.join("proxied.kubeconfig");
    std::fs::write(&path, proxied).unwrap();
    path
}

/// `per` transient failures (failing again at once when redriven) in each of `machines`.
fn batch(machines: &[&str], prefix: &str, per: u32) -> Scenario {
    let mut s = Scenario {
        state_machines: machines
            .iter()
            .map(|m| {
                StateMachineSpec::standard(m).generate(
                    GenerateSpec::new(per, prefix, [Outcome::fail("Lambda.ServiceException")])
                        .started_ago(Duration::from_secs(1800)),
                )
            })
            .collect(),
        ..Scenario::default()
    };
    s.defaults.redrive_run_time = Dur::secs(0);
    s
}

fn executions(h: &EmulatorHandle, machines: &[&str]) -> Vec<String> {
    machines
        .iter()
        .flat_map(|m| h.executions_of(m))
        .map(|e| e.execution_arn)
        .collect()
}

/// Every execution of `machines` redriven exactly once for each attempt below `attempts`.
fn converged(h: &EmulatorHandle, machines: &[&str], attempts: u32) -> Result<(), String> {
    let per = redrives_per_attempt(&h.ledger());
    for a in executions(h, machines) {
        for k in 0..attempts {
            match per.get(&(a.clone(), k)) {
                Some(1) => {}
                other => return Err(format!("{a} attempt {k}: {other:?}")),
            }
        }
        if per.contains_key(&(a.clone(), attempts)) {
            return Err(format!("{a} redriven beyond maxRedrives"));
        }
    }
    Ok(())
}

fn redriven_count(h: &EmulatorHandle, machines: &[&str]) -> u64 {
    let arns: BTreeSet<String> = executions(h, machines).into_iter().collect();
    h.ledger()
        .iter()
        .filter(|e| e.outcome.is_redriven() && arns.contains(&e.execution_arn))
        .count() as u64
}

async fn status_redriven(c: &Cluster, ns: &str, name: &str) -> u64 {
    policy_status(c, ns, name)
        .await
        .and_then(|s| s["counts"]["redriven"].as_u64())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Item 1: crash anywhere, in cluster mode

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_in_cluster_mode_even_between_redrive_and_status_write() {
    const MACHINES: [&str; 2] = ["kc-a", "kc-b"];
    let iterations = scale(8, 30);
    let (mut rng, seed) = rng(0xc105);
    let c = cluster_with_crd(false).await;
    c.kubectl_ok(["create", "namespace", "crash"]);
    let h = emulator::start(
        EmulatorConfig {
            faults: FaultConfig {
                latency: Some(Duration::from_millis(100)),
                latency_rate: 1.0,
                only_apis: vec!["RedriveExecution".into()],
                ..FaultConfig::default()
            },
            seed,
            ..EmulatorConfig::default()
        },
        batch(&MACHINES, "b0-", 10),
    )
    .await
    .unwrap();
    c.apply_json(&policy_doc(
            "crash",
            "orders",
            &MACHINES,
            json!({"maxRedrives": 2, "backoff": {"initial": "1s", "max": "1s", "factor": 1, "jitter": 0}}),
        ),
    );
    // Every byte the operator sends to the API server waits 400 ms in the proxy; a kill in
    // that time drops it, as a crash before the write left the process would.
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{}", c.apiserver_port).parse().unwrap();
    let proxy = Proxy::start(upstream, false).await;
    proxy
        .delay_ms
        .store(400, std::sync::atomic::Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig_via(&c, dir.path(), proxy.addr);
    let args = [
        "--endpoint-url",
        &h.endpoint,
        "--leader-election=false",
        "--admin-addr",
        "127.0.0.1:0",
        "--concurrency",
        "4",
    ];

    let mut kinds: BTreeMap<&str, u32> = BTreeMap::new();
    let mut status_writes_lost = 0u32;
    for i in 0..iterations {
        if i > 0 {
            h.seed(batch(&MACHINES, &format!("b{i}-"), 3)).unwrap();
        }
        let (s0, r0) = (
            status_redriven(&c, "crash", "orders").await,
            redriven_count(&h, &MACHINES),
        );
        let calls0 = h.stats().calls("RedriveExecution");
        let name = format!("op-{i}");
        let mut op = OperatorProcess::spawn(&name, &kubeconfig, dir.path(), &args);
        // Half the kills inside the redrive burst, half just after it (the status write is
        // then held in the proxy).
        let after_burst = i % 2 == 1;
        let k = rng.random_range(1..6u64);
        let extra_ms = rng.random_range(0..250u64);
        let t0 = Instant::now();
        let mut last_change = (calls0, Instant::now());
        let kind = loop {
            let calls = h.stats().calls("RedriveExecution");
            if calls != last_change.0 {
                last_change = (calls, Instant::now());
            }
            let arrived = calls - calls0;
            if !after_burst && arrived >= k {
                break "mid_redrive_burst";
            }
            if after_burst && arrived > 0 && last_change.1.elapsed() > Duration::from_millis(150) {
                sleep_ms(extra_ms).await;
                break "after_redrives_before_status";
            }
            if t0.elapsed() > Duration::from_secs(25) {
                break "idle";
            }
            assert!(op.alive(), "{name} exited:\n{}", tail(&op, 30));
            sleep_ms(5).await;
        };
        op.kill9();
        assert!(!op.logs().contains("panicked"), "{}", op.logs());
        sleep_ms(700).await;
        let (s1, r1) = (
            status_redriven(&c, "crash", "orders").await,
            redriven_count(&h, &MACHINES),
        );
        // Redrives AWS performed for this process that its status never recorded.
        if r1 > r0 && s1.saturating_sub(s0) < r1 - r0 {
            status_writes_lost += 1;
        }
        *kinds.entry(kind).or_insert(0) += 1;
        assert!(
            duplicates(&h).is_empty(),
            "iteration {i}: {:?}",
            duplicates(&h)
        );
    }

    // A last operator, not killed, converges.
    h.set_faults(FaultConfig::default());
    proxy
        .delay_ms
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let op = OperatorProcess::spawn("op-final", &kubeconfig, dir.path(), &args);
    wait_until(
        Duration::from_secs(90),
        "convergence after the crashes",
        || format!("{:?}\n{}", converged(&h, &MACHINES, 2), tail(&op, 30)),
        || async { converged(&h, &MACHINES, 2).is_ok().then_some(()) },
    )
    .await;
    assert!(duplicates(&h).is_empty());
    let status = wait_until(WAIT, "Ready status", String::new, || async {
        let s = policy_status(&c, "crash", "orders").await?;
        (condition(&s, "Ready")?["status"] == "True").then_some(s)
    })
    .await;
    let total = redriven_count(&h, &MACHINES);
    let shown = status["counts"]["redriven"].as_u64().unwrap_or(0);
    figures(
        "crash_cluster",
        &[
            ("seed", seed.to_string()),
            ("iterations", iterations.to_string()),
            ("kills", format!("{kinds:?}").replace(' ', "")),
            (
                "kills_with_redrives_missing_from_status",
                status_writes_lost.to_string(),
            ),
            ("redrives", total.to_string()),
            ("status_counts_redriven", shown.to_string()),
            ("duplicates", "0".into()),
        ],
    );
    assert!(
        status_writes_lost >= 1,
        "no kill landed between the redrives and their status write: {kinds:?}"
    );
    // A single actor never overstates: the status may miss redrives whose write was lost.
    assert!(shown <= total, "status says {shown}, AWS did {total}");
}

// ------------------------------------------------------------------------------------------
// Item 2: racing replicas without a lease

/// Sum of a counter over the operator's /metrics.
async fn scrape(p: &OperatorProcess, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(addr) = operator::admin_addr_in(&p.logs()) else {
        return 0.0;
    };
    match operator::http_get(&addr, "/metrics").await {
        Some((200, body)) => operator::metric_sum(&body, name, labels),
        _ => 0.0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_without_a_lease_never_duplicate_and_what_the_lease_saves() {
    const SOLO: [&str; 2] = ["solo-a", "solo-b"];
    const TRIO: [&str; 2] = ["trio-a", "trio-b"];
    let per = scale(25, 150) as u32;
    let c = cluster_with_crd(true).await;
    for ns in ["solo", "trio"] {
        c.kubectl_ok(["create", "namespace", ns]);
    }
    let mut scenario = batch(&SOLO, "s-", per);
    scenario
        .state_machines
        .extend(batch(&TRIO, "t-", per).state_machines);
    let h = emulator::start(
        EmulatorConfig {
            faults: FaultConfig {
                latency: Some(Duration::from_millis(15)),
                latency_rate: 1.0,
                only_apis: vec!["RedriveExecution".into()],
                ..FaultConfig::default()
            },
            ..EmulatorConfig::default()
        },
        scenario,
    )
    .await
    .unwrap();
    let spec = json!({"maxRedrives": 2, "backoff": {"initial": "1s", "max": "1s", "factor": 1, "jitter": 0}});
    c.apply_json(&policy_doc("solo", "orders", &SOLO, spec.clone()));
    c.apply_json(&policy_doc("trio", "orders", &TRIO, spec));
    let dir = tempfile::tempdir().unwrap();
    let common = |ns: &'static str| {
        vec![
            "--endpoint-url".to_string(),
            h.endpoint.clone(),
            "--leader-election=false".to_string(),
            "--admin-addr".to_string(),
            "127.0.0.1:0".to_string(),
            "--namespace".to_string(),
            ns.to_string(),
        ]
    };
    let solo_args = common("solo");
    let trio_args = common("trio");
    let started = Instant::now();
    let mut procs = vec![OperatorProcess::spawn(
        "solo-0",
        &c.kubeconfig_path,
        dir.path(),
        &as_refs(&solo_args),
    )];
    for i in 0..3 {
        procs.push(OperatorProcess::spawn(
            &format!("trio-{i}"),
            &c.kubeconfig_path,
            dir.path(),
            &as_refs(&trio_args),
        ));
    }
    wait_until(
        Duration::from_secs(90),
        "both sets converged",
        || {
            format!(
                "{:?} {:?}",
                converged(&h, &SOLO, 2),
                converged(&h, &TRIO, 2)
            )
        },
        || async {
            assert!(duplicates(&h).is_empty(), "{:?}", duplicates(&h));
            (converged(&h, &SOLO, 2).is_ok() && converged(&h, &TRIO, 2).is_ok()).then_some(())
        },
    )
    .await;
    // One more poll cycle, so that steady-state costs show as well.
    sleep_ms(11_000).await;
    let took = started.elapsed();
    let mut aws = BTreeMap::new();
    for (who, range) in [("solo", 0..1), ("trio", 1..4)] {
        let mut calls = 0.0;
        for p in &procs[range] {
            calls += scrape(p, "redrive_aws_requests_total", &[]).await;
        }
        aws.insert(who, calls as u64);
    }
    for p in &mut procs {
        assert!(p.alive(), "{}:\n{}", p.name, tail(p, 20));
        p.kill9();
    }
    assert!(duplicates(&h).is_empty());
    converged(&h, &SOLO, 2).unwrap();
    converged(&h, &TRIO, 2).unwrap();

    // What the audit log says each set cost the API server.
    let events = c.audit_events();
    let count = |ns: &str, f: &dyn Fn(&Value) -> bool| {
        events
            .iter()
            .filter(|e| e["objectRef"]["namespace"] == ns && e["stage"] == "ResponseComplete")
            .filter(|e| f(e))
            .count()
    };
    let status_writes = |ns: &str| {
        count(ns, &|e| {
            e["objectRef"]["subresource"] == "status" && e["verb"] == "patch"
        })
    };
    let event_writes = |ns: &str| {
        count(ns, &|e| {
            e["objectRef"]["resource"] == "events"
                && (e["verb"] == "create" || e["verb"] == "patch")
        })
    };
    let ledger_calls = |machines: &[&str]| {
        let arns: BTreeSet<String> = executions(&h, machines).into_iter().collect();
        h.ledger()
            .iter()
            .filter(|e| arns.contains(&e.execution_arn))
            .count()
    };
    let solo_status = status_redriven(&c, "solo", "orders").await;
    let trio_status = status_redriven(&c, "trio", "orders").await;
    figures(
        "race_cluster_3_replicas_no_lease",
        &[
            ("executions_each", (per * 2).to_string()),
            ("redrives_each", redriven_count(&h, &SOLO).to_string()),
            (
                "redrive_calls",
                format!("solo:{},trio:{}", ledger_calls(&SOLO), ledger_calls(&TRIO)),
            ),
            (
                "aws_http_attempts",
                format!("solo:{},trio:{}", aws["solo"], aws["trio"]),
            ),
            (
                "status_writes",
                format!(
                    "solo:{},trio:{}",
                    status_writes("solo"),
                    status_writes("trio")
                ),
            ),
            (
                "event_writes",
                format!(
                    "solo:{},trio:{}",
                    event_writes("solo"),
                    event_writes("trio")
                ),
            ),
            (
                "status_counts_redriven",
                format!("solo:{solo_status},trio:{trio_status}"),
            ),
            ("seconds", took.as_secs().to_string()),
            ("duplicates", "0".into()),
        ],
    );
    assert!(
        ledger_calls(&TRIO) > ledger_calls(&SOLO),
        "the replicas overlapped"
    );
}

// ------------------------------------------------------------------------------------------
// Item 5: API server trouble

#[tokio::test(flavor = "multi_thread")]
async fn api_server_outage_watch_resume_and_status_conflicts_converge() {
    const MACHINES: [&str; 2] = ["api-a", "api-b"];
    let outage = Duration::from_secs(scale(30, 60) as u64);
    let c = cluster_with_crd(true).await;
    c.kubectl_ok(["create", "namespace", "outage"]);
    let h = emulator::start(EmulatorConfig::default(), batch(&MACHINES, "a-", 5))
        .await
        .unwrap();
    c.apply_json(&policy_doc(
        "outage",
        "orders",
        &MACHINES,
        json!({"maxRedrives": 1}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::spawn(
        "survivor",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &h.endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
            "--kube-heartbeat",
            "2s",
            "--log-filter",
            "info,kube_runtime=debug,kube_client=info",
        ],
    );
    let diag = || format!("{:?}\n{}", converged(&h, &MACHINES, 1), tail(&op, 40));
    wait_until(WAIT, "first redrives", &diag, || async {
        converged(&h, &MACHINES, 1).is_ok().then_some(())
    })
    .await;
    wait_until(WAIT, "Ready status", &diag, || async {
        let s = policy_status(&c, "outage", "orders").await?;
        (s["counts"]["redriven"] == 10 && condition(&s, "Ready")?["reason"] == "Polled")
            .then_some(())
    })
    .await;

    // 1. Someone else writes the status, over and over, for 12 s (a second controller, a
    //    script, `kubectl edit --subresource=status`), while new failures arrive.
    h.seed(batch(&MACHINES, "b-", 3)).unwrap();
    let tamper = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": "Tampered", "message": "not me",
                        "lastTransitionTime": "2020-01-01T00:00:00Z"}],
        "lastPoll": "2020-01-01T00:00:00Z",
    }})
    .to_string();
    let until = Instant::now() + Duration::from_secs(12);
    let mut tampered = 0;
    while Instant::now() < until {
        let out = c.kubectl([
            "patch",
            "rdp",
            "orders",
            "-n",
            "outage",
            "--subresource=status",
            "--type=merge",
            "-p",
            &tamper,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tampered += 1;
        sleep_ms(200).await;
    }
    let restored = Instant::now();
    wait_until(
        Duration::from_secs(40),
        "the operator's status restored",
        &diag,
        || async {
            let s = policy_status(&c, "outage", "orders").await?;
            let ready = condition(&s, "Ready")?;
            (ready["status"] == "True"
                && ready["reason"] == "Polled"
                && s["lastPoll"] != "2020-01-01T00:00:00Z")
                .then_some(())
        },
    )
    .await;
    let restore_s = restored.elapsed().as_secs_f64();
    converged(&h, &MACHINES, 1).unwrap();
    let conflicts: Vec<String> = op
        .logs()
        .lines()
        .filter(|l| l.contains("writing status") || l.contains("reconcile failed"))
        .map(str::to_string)
        .collect();
    assert!(
        conflicts.is_empty(),
        "server-side apply with force never conflicts: {conflicts:?}"
    );

    // 2. The API server goes away for `outage` (global resourceVersion moved meanwhile, so the
    //    watch cannot resume where it was).
    for i in 0..5 {
        c.kubectl_ok(["create", "configmap", &format!("bump-{i}"), "-n", "default"]);
    }
    let before_restart = c.audit_events().len();
    c.stop_apiserver();
    let down = Instant::now();
    h.seed(batch(&MACHINES, "c-", 3)).unwrap();
    let during_before = redriven_count(&h, &MACHINES);
    tokio::time::sleep(outage).await;
    let redriven_during_outage = redriven_count(&h, &MACHINES) - during_before;
    assert!(
        running(&op),
        "the operator outlived the outage:\n{}",
        diag()
    );
    let outage_s = down.elapsed().as_secs();
    c.start_apiserver().await;
    let back = Instant::now();
    h.seed(batch(&MACHINES, "d-", 3)).unwrap();
    wait_until(
        Duration::from_secs(120),
        "convergence after the outage",
        &diag,
        || async {
            let s = policy_status(&c, "outage", "orders").await?;
            (converged(&h, &MACHINES, 1).is_ok()
                && condition(&s, "Ready")?["status"] == "True"
                && s["counts"]["redriven"].as_u64()? >= 10 + 3 * 2 * 2)
                .then_some(())
        },
    )
    .await;
    let recovery_s = back.elapsed().as_secs_f64();
    // The existing policy kept working from the controller's cache. A policy created now needs
    // the watch itself: its resourceVersion expired during the outage (410 Gone), so the
    // watcher must list afresh (after its exponential backoff, up to 30 s per step).
    h.seed(batch(&["api-c"], "late-", 2)).unwrap();
    c.apply_json(&policy_doc(
        "outage",
        "late",
        &["api-c"],
        json!({"maxRedrives": 1}),
    ));
    let created = Instant::now();
    wait_until(
        Duration::from_secs(120),
        "a policy created after the outage is reconciled",
        &diag,
        || async {
            let s = policy_status(&c, "outage", "late").await?;
            (converged(&h, &["api-c"], 1).is_ok() && condition(&s, "Ready")?["status"] == "True")
                .then_some(())
        },
    )
    .await;
    let new_policy_s = created.elapsed().as_secs_f64();
    assert!(running(&op), "{}", diag());
    assert!(duplicates(&h).is_empty());
    let logs = op.logs();
    let gone = logs.contains("too old resource version");
    let relists = c.audit_events()[before_restart..]
        .iter()
        .filter(|e| {
            let uri = e["requestURI"].as_str().unwrap_or("");
            e["verb"] == "list"
                && e["objectRef"]["resource"] == "redrivepolicies"
                && e["stage"] == "ResponseComplete"
                && !uri.contains("limit=1&")
                && !uri.ends_with("limit=1")
        })
        .count();
    figures(
        "api_server_trouble",
        &[
            ("status_tamper_writes", tampered.to_string()),
            ("status_restored_after_s", format!("{restore_s:.1}")),
            ("outage_s", outage_s.to_string()),
            ("redrives_during_outage", redriven_during_outage.to_string()),
            ("converged_after_restart_s", format!("{recovery_s:.1}")),
            (
                "new_policy_reconciled_after_s",
                format!("{new_policy_s:.1}"),
            ),
            ("watch_410_gone_seen", gone.to_string()),
            ("relists_after_restart", relists.to_string()),
            ("duplicates", "0".into()),
        ],
    );
    assert!(
        relists >= 1,
        "the watch was re-established with a fresh list after the restart"
    );
    let mut op = op;
    let _ = op.terminate(Duration::from_secs(20));
}

// ------------------------------------------------------------------------------------------
// Item 4, cluster side: faults show in status and events

#[tokio::test(flavor = "multi_thread")]
async fn aws_faults_show_in_status_and_events_and_spare_the_other_policy() {
    let c = cluster_with_crd(false).await;
    c.kubectl_ok(["create", "namespace", "faulty"]);
    let h = emulator::start(
        EmulatorConfig::default(),
        batch(&["f-ok", "f-denied", "f-other"], "a-", 3),
    )
    .await
    .unwrap();
    let denied = sm_arn("f-denied");
    h.set_faults(FaultConfig {
        access_denied_state_machines: vec![denied.clone()],
        ..FaultConfig::default()
    });
    c.apply_json(&policy_doc(
        "faulty",
        "mixed",
        &["f-ok", "f-denied"],
        json!({"maxRedrives": 1}),
    ));
    c.apply_json(&policy_doc(
        "faulty",
        "other",
        &["f-other"],
        json!({"maxRedrives": 1}),
    ));
    let dir = tempfile::tempdir().unwrap();
    let op = OperatorProcess::spawn(
        "faults",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &h.endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
            "--aws-max-attempts",
            "2",
        ],
    );
    let diag = || tail(&op, 30);
    // AccessDenied on one machine: Degraded names it; the policy still works (Ready, the other
    // machine redriven); the other policy is clean.
    let s = wait_until(WAIT, "Degraded=AccessDenied", &diag, || async {
        let s = policy_status(&c, "faulty", "mixed").await?;
        (condition(&s, "Degraded")?["reason"] == "AccessDenied").then_some(s)
    })
    .await;
    let degraded = condition(&s, "Degraded").unwrap();
    assert_eq!(degraded["status"], "True");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("f-denied"),
        "{s}"
    );
    assert_eq!(
        condition(&s, "Ready").unwrap()["reason"],
        "PolledWithErrors"
    );
    converged(&h, &["f-ok", "f-other"], 1).unwrap();
    assert_eq!(redriven_count(&h, &["f-denied"]), 0);
    let other = policy_status(&c, "faulty", "other").await.unwrap();
    assert_eq!(condition(&other, "Degraded").unwrap()["status"], "False");
    let events = c.kubectl_ok(["get", "events.events.k8s.io", "-n", "faulty", "-o", "json"]);
    assert!(events.contains("\"AccessDenied\""), "{events}");

    // A 5xx burst on every API: Degraded=Transient, events, no crash.
    h.set_faults(FaultConfig {
        server_error_rate: 1.0,
        ..FaultConfig::default()
    });
    h.seed(batch(&["f-ok", "f-other"], "b-", 2)).unwrap();
    wait_until(WAIT, "Degraded=Transient on both", &diag, || async {
        let a = policy_status(&c, "faulty", "mixed").await?;
        let b = policy_status(&c, "faulty", "other").await?;
        (condition(&a, "Degraded")?["reason"] == "Transient"
            && condition(&b, "Degraded")?["reason"] == "Transient")
            .then_some(())
    })
    .await;

    // Faults clear: everything converges, Degraded turns False.
    h.set_faults(FaultConfig::default());
    wait_until(WAIT, "recovery", &diag, || async {
        let a = policy_status(&c, "faulty", "mixed").await?;
        let b = policy_status(&c, "faulty", "other").await?;
        (converged(&h, &["f-ok", "f-denied", "f-other"], 1).is_ok()
            && condition(&a, "Degraded")?["status"] == "False"
            && condition(&b, "Degraded")?["status"] == "False")
            .then_some(())
    })
    .await;
    assert!(duplicates(&h).is_empty());
}

// ------------------------------------------------------------------------------------------
// Item 7: tenancy and secrets

/// The secret access keys and session tokens in AssumeRole answers the proxy saw.
fn issued_secrets(recorded: &str) -> Vec<String> {
    let mut out = Vec::new();
    for tag in ["SecretAccessKey", "SessionToken"] {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let mut rest = recorded;
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            if let Some(j) = rest.find(&close) {
                out.push(rest[..j].to_string());
                rest = &rest[j..];
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_act_only_through_roles_that_trust_them_and_credentials_never_leak() {
    let role_a = "arn:aws:iam::123456789012:role/team-a-redriver";
    let role_b = "arn:aws:iam::123456789012:role/team-b-redriver";
    let role_local = "arn:aws:iam::123456789012:role/local-redriver";
    let mut scenario = batch(&["ten-a", "ten-b"], "e-", 2)
        .with_role(RoleSpec::new(role_a).external_id("team-a"))
        .with_role(
            RoleSpec::new(role_b)
                .external_id("team-b")
                .state_machines(["ten-b"]),
        )
        .with_role(RoleSpec::new(role_local).external_id("local"));
    scenario.state_machines.push(
        StateMachineSpec::standard("ten-x")
            .generate(
                GenerateSpec::new(2, "e-", [Outcome::fail("Lambda.ServiceException")])
                    .started_ago(Duration::from_secs(1800)),
            )
            .execution(
                ExecutionSpec::failed("secretive", "Lambda.ServiceException")
                    .stopped_ago(Duration::from_secs(600))
                    .input("{\"password\":\"hunter2-INPUT-SECRET\"}"),
            ),
    );
    let h = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    // Every AWS answer passes through a recording proxy: it sees the credentials STS issues.
    let proxy = Proxy::start(h.addr, true).await;
    let endpoint = format!("http://{}", proxy.addr);
    let c = cluster_with_crd(false).await;
    for ns in ["team-a", "team-b", "team-c"] {
        c.kubectl_ok(["create", "namespace", ns]);
    }
    let with_role = |ns: &str, name: &str, machines: &[&str], role: Option<&str>| {
        let mut d = policy_doc(ns, name, machines, json!({"maxRedrives": 1}));
        if let Some(r) = role {
            d["spec"]["stepFunctions"]["roleArn"] = json!(r);
        }
        d
    };
    // team-b first, so that its session of role B exists (and is cached) before team-a tries
    // role B: the cache must not lend it to another namespace.
    c.apply_json(&with_role("team-b", "orders", &["ten-b"], Some(role_b)));
    // Role B may only touch ten-b: a team-b policy naming ten-x gets AccessDenied from AWS.
    c.apply_json(&with_role("team-b", "overreach", &["ten-x"], Some(role_b)));
    let dir = tempfile::tempdir().unwrap();
    let allow_a = format!("team-a={}", "arn:aws:iam::123456789012:role/*");
    let allow_b = format!("team-b={role_b}");
    let op = OperatorProcess::spawn(
        "tenancy",
        &c.kubeconfig_path,
        dir.path(),
        &[
            "--endpoint-url",
            &endpoint,
            "--leader-election=false",
            "--admin-addr",
            "127.0.0.1:0",
            "--allowed-role",
            &allow_a,
            "--allowed-role",
            &allow_b,
            "--require-role",
            "--log-filter",
            "debug",
        ],
    );
    let diag = || format!("sts: {:?}\n{}", h.sts_ledger(), tail(&op, 30));
    wait_until(WAIT, "team-b redriven", &diag, || async {
        converged(&h, &["ten-b"], 1).is_ok().then_some(())
    })
    .await;
    // Now team-a names role B (trusts only team-b), role A (fine), and team-b names role A
    // (allowlist), team-c names none (--require-role).
    c.apply_json(&with_role("team-a", "orders", &["ten-a"], Some(role_a)));
    c.apply_json(&with_role("team-a", "borrow", &["ten-x"], Some(role_b)));
    c.apply_json(&with_role("team-b", "wrong-role", &["ten-x"], Some(role_a)));
    c.apply_json(&with_role("team-c", "no-role", &["ten-x"], None));

    wait_until(WAIT, "team-a redriven", &diag, || async {
        converged(&h, &["ten-a"], 1).is_ok().then_some(())
    })
    .await;
    let reason = |ns: &'static str, name: &'static str, cond: &'static str| {
        let c = &c;
        async move {
            let s = policy_status(c, ns, name).await?;
            Some((
                condition(&s, cond)?["reason"].as_str()?.to_string(),
                condition(&s, cond)?["message"].as_str()?.to_string(),
            ))
        }
    };
    let borrow = wait_until(WAIT, "team-a/borrow denied", &diag, || async {
        reason("team-a", "borrow", "Degraded")
            .await
            .filter(|(r, _)| r == "Credentials")
    })
    .await;
    assert!(borrow.1.contains("AccessDenied"), "{borrow:?}");
    let overreach = wait_until(WAIT, "team-b/overreach denied", &diag, || async {
        reason("team-b", "overreach", "Degraded")
            .await
            .filter(|(r, _)| r == "AccessDenied")
    })
    .await;
    assert!(overreach.1.contains("ten-x"), "{overreach:?}");
    let wrong = wait_until(WAIT, "team-b/wrong-role refused", &diag, || async {
        reason("team-b", "wrong-role", "Ready")
            .await
            .filter(|(r, _)| r == "RoleNotAllowed")
    })
    .await;
    assert!(
        wrong.1.contains("not allowed for namespace \"team-b\""),
        "{wrong:?}"
    );
    let none = wait_until(WAIT, "team-c/no-role refused", &diag, || async {
        reason("team-c", "no-role", "Ready")
            .await
            .filter(|(r, _)| r == "RoleNotAllowed")
    })
    .await;
    assert!(none.1.contains("roleArn is required"), "{none:?}");

    // Who did what, according to AWS: nothing of ten-x was redriven by anyone; every redrive
    // was made by a session of the role its namespace may use.
    assert_eq!(redriven_count(&h, &["ten-x"]), 0, "{}", diag());
    for e in h.ledger().iter().filter(|e| e.outcome.is_redriven()) {
        let (role, ext) = h
            .role_of(e.access_key_id.as_deref().unwrap_or(""))
            .unwrap_or_else(|| panic!("redrive without an assumed role: {e:?}"));
        let expected = if e.execution_arn.contains(":ten-a:") {
            (role_a, "team-a")
        } else {
            (role_b, "team-b")
        };
        assert_eq!(
            (role.as_str(), ext.as_deref()),
            (expected.0, Some(expected.1))
        );
    }
    let sts = h.sts_ledger();
    assert!(
        sts.iter().any(|e| e.role_arn == role_b
            && e.external_id.as_deref() == Some("team-a")
            && e.outcome.code() == "AccessDenied"),
        "{sts:?}"
    );
    assert!(
        !sts.iter()
            .any(|e| e.role_arn == role_a && e.external_id.as_deref() == Some("team-b")),
        "the allowlist refused before any AssumeRole: {sts:?}"
    );
    assert!(
        !sts.iter()
            .any(|e| e.external_id.as_deref() == Some("team-c")),
        "{sts:?}"
    );

    // `plan` in local mode with a role, at debug, through the same proxy.
    let local = write(
        dir.path(),
        "local.yaml",
        &policy_yaml("local", &["ten-x"], "").replace(
            "    region: us-east-1\n",
            &format!("    region: us-east-1\n    roleArn: {role_local}\n"),
        ),
    );
    let mut plan_out = String::new();
    for fmt in ["table", "json"] {
        let run = operator(
            &[
                "plan",
                "-f",
                local.to_str().unwrap(),
                "--endpoint-url",
                &endpoint,
                "-o",
                fmt,
                "--log-filter",
                "debug",
            ],
            Duration::from_secs(60),
        )
        .await;
        assert!(run.ok(), "{}", run.stderr);
        plan_out.push_str(&run.stdout);
        plan_out.push_str(&run.stderr);
    }

    // The secrets: every credential STS issued (as the proxy saw them), the operator's static
    // dummy secret, and an execution's input.
    let mut secrets = issued_secrets(&proxy.recorded_text());
    let issued = secrets.len();
    assert!(issued >= 6, "AssumeRole answers were recorded: {issued}");
    secrets.push("redrive-emulator-dummy-secret".into());
    secrets.push("hunter2-INPUT-SECRET".into());
    let metrics = match operator::admin_addr_in(&op.logs()) {
        Some(a) => operator::http_get(&a, "/metrics")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default(),
        None => String::new(),
    };
    let places = [
        ("operator log (debug)", op.logs()),
        ("status", c.kubectl_ok(["get", "rdp", "-A", "-o", "json"])),
        (
            "events",
            c.kubectl_ok(["get", "events.events.k8s.io", "-A", "-o", "json"]),
        ),
        ("metrics", metrics),
        ("plan output", plan_out),
    ];
    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty");
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{place} contains a secret ({}…)",
                &s[..s.len().min(6)]
            );
        }
    }
    figures(
        "tenancy",
        &[
            ("assume_role_calls", sts.len().to_string()),
            ("secrets_checked", secrets.len().to_string()),
            (
                "bytes_scanned",
                places
                    .iter()
                    .map(|(_, t)| t.len())
                    .sum::<usize>()
                    .to_string(),
            ),
            ("leaks", "0".into()),
        ],
    );
}
