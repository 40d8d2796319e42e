//! Data sets: emulator scenarios and the policies that cover them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use redrive_emulator::{
    ExecutionSpec, GenerateSpec, MapRunSpec, Outcome, Scenario, StateMachineSpec,
};
use redrive_operator::policy::Policy;

pub const ACCOUNT: &str = "123456789012";
/// The error every eligible failure carries (matched by [`ERROR_FILTER`]).
pub const ELIGIBLE_ERROR: &str = "Lambda.ServiceException";
/// The error filter of the "with filter" runs: needs one DescribeExecution per failure.
pub const ERROR_FILTER: &[&str] = &["Lambda.*", "States.*"];
pub const MAX_REDRIVES: u32 = 3;

pub fn sm_arn(region: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{ACCOUNT}:stateMachine:{name}")
}

pub fn exec_arn(region: &str, sm: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{ACCOUNT}:execution:{sm}:{name}")
}

/// Name of the i-th execution of a generated batch (the emulator's naming).
pub fn gen_name(prefix: &str, i: u32) -> String {
    format!("{prefix}{i:05}")
}

/// `total` split into `parts` nearly equal shares.
fn share(total: u32, parts: u32, i: u32) -> u32 {
    total / parts + u32::from(i < total % parts)
}

fn batch(
    count: u32,
    prefix: &str,
    started_ago: Duration,
    every: Duration,
    outcomes: Vec<Outcome>,
) -> GenerateSpec {
    GenerateSpec {
        count,
        name_prefix: prefix.to_string(),
        outcomes,
        ..GenerateSpec::default()
    }
    .started_ago(started_ago)
    .every(every)
    .run_time(Duration::from_secs(30))
}

/// A backlog: `n` eligible failures over `m` STANDARD state machines, plus `n` ineligible
/// executions (a quarter each: stopped more than 14 days ago, SUCCEEDED, exhausted
/// (redriveCount = maxRedrives), failed Distributed Map children) and one EXPRESS state machine.
#[derive(Clone, Debug)]
pub struct Backlog {
    pub region: String,
    pub scenario: Scenario,
    /// Every state machine the policy names (STANDARD ones, then the EXPRESS one).
    pub machines: Vec<String>,
    pub eligible: Vec<String>,
    pub counts: BTreeMap<&'static str, u64>,
    /// Per STANDARD machine: FAILED executions inside the lookback (eligible + exhausted) and
    /// all FAILED executions (the old ones too).
    pub failed_recent: Vec<u64>,
    pub failed_all: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BacklogSummary {
    pub eligible: u64,
    pub ineligible: BTreeMap<&'static str, u64>,
    pub standard_state_machines: u64,
    pub express_state_machines: u64,
}

impl Backlog {
    pub fn summary(&self) -> BacklogSummary {
        BacklogSummary {
            eligible: self.eligible.len() as u64,
            ineligible: self
                .counts
                .iter()
                .filter(|(k, _)| **k != "eligible")
                .map(|(k, v)| (*k, *v))
                .collect(),
            standard_state_machines: self.failed_recent.len() as u64,
            express_state_machines: 1,
        }
    }

    /// ListExecutions pages (of `page`) any redriver must read: the recent FAILED executions
    /// (`failed_all` when it pages to the end, as the baseline does).
    pub fn list_pages(&self, page: u64, to_the_end: bool) -> u64 {
        let v = if to_the_end {
            &self.failed_all
        } else {
            &self.failed_recent
        };
        v.iter().map(|n| n.div_ceil(page).max(1)).sum()
    }
}

pub fn backlog(region: &str, n: u32, m: u32) -> Backlog {
    let m = m.max(1);
    let quarter = |k: u32, i: u32| share(share(n, 4, k), m, i);
    let mut scenario = Scenario::new();
    let mut machines = Vec::new();
    let mut eligible = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failed_recent = Vec::new();
    let mut failed_all = Vec::new();
    let fail = || vec![Outcome::fail(ELIGIBLE_ERROR)];
    for i in 0..m {
        let name = format!("bench-{i:03}");
        let e = share(n, m, i);
        let (old, ok, exhausted, children) =
            (quarter(0, i), quarter(1, i), quarter(2, i), quarter(3, i));
        let mut sm = StateMachineSpec::standard(&name)
            .generate(batch(
                e,
                "fail-",
                Duration::from_secs(2 * 3600),
                Duration::from_millis(500),
                vec![Outcome::fail(ELIGIBLE_ERROR), Outcome::succeed()],
            ))
            .generate(batch(
                ok,
                "ok-",
                Duration::from_secs(3600),
                Duration::from_millis(500),
                vec![Outcome::succeed()],
            ))
            .generate(
                GenerateSpec {
                    redrive_count: MAX_REDRIVES,
                    ..batch(
                        exhausted,
                        "exhausted-",
                        Duration::from_secs(4 * 3600),
                        Duration::from_millis(500),
                        fail(),
                    )
                }
                .started_ago(Duration::from_secs(4 * 3600)),
            )
            .generate(batch(
                old,
                "old-",
                Duration::from_secs(16 * 86_400),
                Duration::from_secs(10),
                fail(),
            ));
        if children > 0 {
            let mut map_run = MapRunSpec::new("Items", "map-parent");
            map_run.generate.push(batch(
                children,
                "item-",
                Duration::from_secs(5 * 3600),
                Duration::from_millis(100),
                fail(),
            ));
            sm = sm
                .execution(
                    ExecutionSpec::new("map-parent")
                        .outcomes([Outcome::succeed()])
                        .started_ago(Duration::from_secs(6 * 3600)),
                )
                .map_run(map_run);
            *counts.entry("succeeded").or_default() += 1;
        }
        scenario = scenario.with(sm);
        eligible.extend((0..e).map(|j| exec_arn(region, &name, &gen_name("fail-", j))));
        *counts.entry("eligible").or_default() += u64::from(e);
        *counts.entry("too_old").or_default() += u64::from(old);
        *counts.entry("succeeded").or_default() += u64::from(ok);
        *counts.entry("exhausted").or_default() += u64::from(exhausted);
        *counts.entry("map_run_children").or_default() += u64::from(children);
        failed_recent.push(u64::from(e + exhausted));
        failed_all.push(u64::from(e + exhausted + old));
        machines.push(sm_arn(region, &name));
    }
    scenario = scenario.with(StateMachineSpec::express("bench-express"));
    machines.push(sm_arn(region, "bench-express"));
    Backlog {
        region: region.to_string(),
        scenario,
        machines,
        eligible,
        counts,
        failed_recent,
        failed_all,
    }
}

/// A validated policy from its spec (JSON), named `name`.
pub fn policy(name: &str, spec: serde_json::Value) -> Policy {
    let doc = json!({
        "apiVersion": redrive_operator::policy_file::API_VERSION,
        "kind": redrive_operator::policy_file::KIND,
        "metadata": {"name": name},
        "spec": spec,
    });
    redrive_operator::policy_file::parse_policy(doc)
        .unwrap_or_else(|(_, e)| panic!("benchmark policy {name} is invalid: {e}"))
}

/// The drain policy: FAILED executions of `machines`, optional error filter, 10 s interval.
pub fn drain_policy(name: &str, region: &str, machines: &[String], filter: bool) -> Policy {
    let mut spec = json!({
        "stepFunctions": {"region": region, "stateMachines": machines, "maxRunTime": "1d"},
        "statuses": ["FAILED"],
        "maxRedrives": MAX_REDRIVES,
        "pollInterval": "10s",
    });
    if filter {
        spec["errors"] = json!({"include": ERROR_FILTER});
    }
    policy(name, spec)
}

/// Idle: `policies` state machines with only SUCCEEDED executions, one policy each (default
/// statuses FAILED and TIMED_OUT).
pub fn idle(region: &str, policies: u32) -> (Scenario, Vec<Policy>) {
    let mut scenario = Scenario::new();
    let mut out = Vec::new();
    for p in 0..policies {
        let name = format!("idle-{p:04}");
        scenario = scenario.with(StateMachineSpec::standard(&name).generate(batch(
            20,
            "ok-",
            Duration::from_secs(3600),
            Duration::from_secs(60),
            vec![Outcome::succeed()],
        )));
        out.push(policy(
            &name,
            json!({
                "stepFunctions": {"region": region, "stateMachines": [sm_arn(region, &name)]},
                "pollInterval": "10s",
            }),
        ));
    }
    (scenario, out)
}

/// Scale: `policies` × `per_policy` state machines and `executions` executions in all; each
/// machine has one eligible failure, one exhausted failure and SUCCEEDED executions.
pub fn scale_scenario(_region: &str, policies: u32, per_policy: u32, executions: u32) -> Scenario {
    let machines = policies * per_policy;
    let mut scenario = Scenario::new();
    for p in 0..policies {
        for k in 0..per_policy {
            let name = scale_sm(p, k);
            let total = share(executions, machines.max(1), p * per_policy + k);
            let ok = total.saturating_sub(2);
            scenario = scenario.with(
                StateMachineSpec::standard(&name)
                    .generate(batch(
                        total.min(1),
                        "fail-",
                        Duration::from_secs(1800),
                        Duration::from_secs(1),
                        vec![Outcome::fail(ELIGIBLE_ERROR), Outcome::succeed()],
                    ))
                    .generate(GenerateSpec {
                        redrive_count: MAX_REDRIVES,
                        ..batch(
                            total.saturating_sub(1).min(1),
                            "exhausted-",
                            Duration::from_secs(2 * 3600),
                            Duration::from_secs(1),
                            vec![Outcome::fail(ELIGIBLE_ERROR)],
                        )
                    })
                    .generate(batch(
                        ok,
                        "ok-",
                        Duration::from_secs(3 * 3600),
                        Duration::from_secs(30),
                        vec![Outcome::succeed()],
                    )),
            );
        }
    }
    scenario
}

pub fn scale_sm(p: u32, k: u32) -> String {
    format!("scale-{p:04}-{k}")
}

/// pollInterval of the scale phase's policies: longer than one cycle, so that the cycle is every
/// policy polled once. With 10 s, policies done early poll again while the last ones still wait
/// for ListExecutions tokens, and those re-polls spend the quota the cycle needs.
pub const SCALE_POLL_INTERVAL: Duration = Duration::from_secs(60);

pub fn scale_policies(region: &str, policies: u32, per_policy: u32) -> Vec<Policy> {
    (0..policies)
        .map(|p| {
            let machines: Vec<String> = (0..per_policy)
                .map(|k| sm_arn(region, &scale_sm(p, k)))
                .collect();
            let mut policy = drain_policy(&format!("scale-{p:04}"), region, &machines, false);
            policy.poll_interval = SCALE_POLL_INTERVAL;
            policy
        })
        .collect()
}

pub fn scale_eligible(
    region: &str,
    policies: u32,
    per_policy: u32,
    executions: u32,
) -> Vec<String> {
    let machines = policies * per_policy;
    let mut out = Vec::new();
    for p in 0..policies {
        for k in 0..per_policy {
            if share(executions, machines.max(1), p * per_policy + k) > 0 {
                out.push(exec_arn(region, &scale_sm(p, k), &gen_name("fail-", 0)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_counts_add_up() {
        let b = backlog("us-east-1", 1000, 3);
        assert_eq!(b.eligible.len(), 1000);
        let s = b.summary();
        let inel: u64 = s.ineligible.values().sum();
        // n ineligible executions plus one Map Run parent per machine.
        assert_eq!(inel, 1000 + 3);
        assert_eq!(b.scenario.execution_count(), 2000 + 3);
        assert_eq!(b.machines.len(), 4);
        assert_eq!(b.list_pages(1000, false), 3);
        let p = drain_policy("x", "us-east-1", &b.machines, true);
        assert!(p.needs_error_details());
    }

    #[test]
    fn scale_counts_add_up() {
        let sc = scale_scenario("us-east-1", 10, 5, 1000);
        assert_eq!(sc.execution_count(), 1000);
        assert_eq!(scale_eligible("us-east-1", 10, 5, 1000).len(), 50);
        assert_eq!(scale_policies("us-east-1", 10, 5).len(), 10);
    }
}
