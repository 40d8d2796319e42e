//! Flow Service helpers shared by the e2e (cluster) and local-mode tests: scenarios of failing
//! batch dataflows, credentials, and what the emulator's re-trigger ledger says.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use redrive_emulator::{
    EmulatorHandle, FlowRunSpec, FlowRunStatus, FlowSpec, ImsClientSpec, ReTriggerOutcome,
    RunOutcome, Scenario,
};

pub const CLIENT_ID: &str = "redrive-test-client";
pub const CLIENT_SECRET: &str = "s3cr3t-never-printed-0x5eed";
pub const ORG_ID: &str = "EMU0000000000000000000001@AdobeOrg";

/// A batch flow whose seeded run failed two minutes ago; its re-triggered runs fail
/// `failures - 1` times, then succeed.
pub fn failing_flow(name: &str, failures: usize) -> FlowSpec {
    let mut outcomes = vec![RunOutcome::failed("CONNECTOR-2001"); failures.saturating_sub(1)];
    outcomes.push(RunOutcome::success(100));
    FlowSpec::batch(name)
        .run_time(Duration::from_millis(300))
        .outcomes(outcomes)
        .run(FlowRunSpec::failed(
            "CONNECTOR-2001",
            Duration::from_secs(120),
        ))
}

/// `count` flows named `prefix-00`…, each needing `failures` re-triggers, plus the IMS client.
/// Returns the scenario and the flow ids.
pub fn fleet(prefix: &str, count: usize, failures: usize) -> (Scenario, Vec<String>) {
    let mut scenario =
        Scenario::new().with_ims_client(ImsClientSpec::new(CLIENT_ID, CLIENT_SECRET));
    let mut ids = Vec::new();
    for i in 0..count {
        let flow = failing_flow(&format!("{prefix}-{i:02}"), failures);
        ids.push(flow.flow_id());
        scenario = scenario.with_flow(flow);
    }
    (scenario, ids)
}

/// The credentials as a Secret's key/value pairs.
pub fn secret_data(secret: &str) -> BTreeMap<String, String> {
    [
        ("clientId", CLIENT_ID),
        ("clientSecret", secret),
        ("orgId", ORG_ID),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Write a Secret directory for `--secrets-dir` (`DIR/NAME/KEY`).
pub fn write_secret_dir(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (k, v) in secret_data(secret) {
        std::fs::write(d.join(k), v).unwrap();
    }
    dir.to_path_buf()
}

/// Successful re-triggers by run id (the run acted on).
pub fn retriggers(h: &EmulatorHandle) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for e in h.flowservice_ledger() {
        if e.outcome == ReTriggerOutcome::ReTriggered {
            *m.entry(e.run_id).or_insert(0) += 1;
        }
    }
    m
}

/// Re-triggers performed, in total.
pub fn retriggered(h: &EmulatorHandle) -> u32 {
    retriggers(h).values().sum()
}

/// The root (original failure) of every run a re-trigger created, from the emulator's ledger
/// alone (the operator's records are not trusted here).
pub fn roots(h: &EmulatorHandle) -> HashMap<String, String> {
    let parent: HashMap<String, String> = h
        .flowservice_ledger()
        .into_iter()
        .filter(|e| e.outcome == ReTriggerOutcome::ReTriggered)
        .filter_map(|e| Some((e.new_run_id?, e.run_id)))
        .collect();
    parent
        .keys()
        .map(|child| {
            let mut root = child.clone();
            let mut hops = 0;
            while let Some(p) = parent.get(&root) {
                root = p.clone();
                hops += 1;
                assert!(hops < 10_000, "a cycle in the re-trigger lineage");
            }
            (child.clone(), root)
        })
        .collect()
}

/// Panics if a run was re-triggered twice (the same attempt of one root acted on twice), or a
/// root got more than `max` re-triggers.
pub fn assert_no_duplicate_retriggers(h: &EmulatorHandle, max: u32, context: &str) {
    let dup: Vec<_> = retriggers(h).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        dup.is_empty(),
        "{context}: a run was re-triggered twice: {dup:#?}"
    );
    let mut per_root: BTreeMap<String, u32> = BTreeMap::new();
    for root in roots(h).into_values() {
        *per_root.entry(root).or_insert(0) += 1;
    }
    let over: Vec<_> = per_root.into_iter().filter(|(_, n)| *n > max).collect();
    assert!(
        over.is_empty(),
        "{context}: more than maxRedrives={max} re-triggers of one root: {over:#?}"
    );
}

/// The newest run of a flow succeeded.
pub fn flow_succeeded(h: &EmulatorHandle, flow: &str) -> bool {
    h.flow_runs(flow)
        .first()
        .is_some_and(|r| r.status == FlowRunStatus::Success)
}

/// Wait until the newest run of every flow succeeded.
pub async fn all_succeed(h: &EmulatorHandle, flows: &[String], limit: Duration) -> bool {
    super::pipelines::wait_for(limit, || async {
        flows.iter().all(|f| flow_succeeded(h, f)).then_some(())
    })
    .await
    .is_some()
}

/// Each flow's runs, newest first, as (id, status) for failure messages.
pub fn report(h: &EmulatorHandle, flows: &[String]) -> Vec<(String, Vec<(String, String)>)> {
    flows
        .iter()
        .map(|f| {
            (
                f.clone(),
                h.flow_runs(f)
                    .into_iter()
                    .map(|r| (r.id, format!("{:?}", r.status)))
                    .collect(),
            )
        })
        .collect()
}
