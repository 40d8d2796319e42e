//! Phase 3: idle cost. Policies whose state machines have no failures, polled repeatedly.

use std::sync::{Arc, Mutex};

use futures::future::join_all;
use jiff::Timestamp;
use serde::Serialize;

use super::data;
use super::drain::Calls;
use redrive_emulator::{self as emulator, EmulatorConfig, QuotaPreset};
use redrive_operator::reconcile::{Context, PolicyState, PollSettings, poll};

#[derive(Clone, Debug, Serialize)]
pub struct IdleResult {
    pub how: &'static str,
    pub policies: u64,
    pub intervals: u64,
    pub state_machines_per_policy: u64,
    pub statuses_per_policy: u64,
    pub calls: Calls,
    pub list_per_policy_per_interval: f64,
    /// ListExecutions per (state machine, selected status) per interval (target ≤ 1).
    pub list_per_machine_status_per_interval: f64,
    /// Calls other than ListExecutions (target 0).
    pub other_calls: u64,
    pub failed_polls: u64,
    pub redrives: u64,
    /// What this idle load means against the preset's ListExecutions refill (at scale 1):
    /// calls per second at pollInterval 10 s and 1 m, and that refill.
    pub list_per_s_at_10s: f64,
    pub list_per_s_at_1m: f64,
    pub list_refill_per_s: Option<f64>,
}

pub const HOW: &str = "reconcile::poll driven directly: every interval polls all policies \
concurrently (as local::run's tasks would), intervals back to back instead of 10 s apart, \
PolicyState kept across intervals; emulator without throttling so every call is one attempt";

pub async fn run(preset: QuotaPreset, policies: u32, intervals: u32) -> Result<IdleResult, String> {
    let region = "eu-central-1";
    let (scenario, policies_v) = data::idle(region, policies);
    let config = EmulatorConfig {
        region: region.to_string(),
        ..EmulatorConfig::default()
    };
    let handle = emulator::start(config, scenario)
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    let ctx = Arc::new(Context::new(settings));
    let states: Vec<Mutex<PolicyState>> = policies_v
        .iter()
        .map(|_| Mutex::new(PolicyState::default()))
        .collect();
    let mut targets = Vec::new();
    for p in &policies_v {
        targets.push(ctx.stepfunctions(p).await);
    }
    let mut failed = 0u64;
    for _ in 0..intervals {
        let polls = policies_v
            .iter()
            .zip(&states)
            .zip(&targets)
            .map(|((p, s), t)| poll(t.as_ref(), p, s, ctx.settings.concurrency, Timestamp::now));
        for r in join_all(polls).await {
            match r {
                Ok(report) if report.errors().is_empty() => {}
                _ => failed += 1,
            }
        }
    }
    let stats = handle.stats();
    handle.shutdown().await;
    let calls = Calls::from_stats(&stats);
    let statuses = policies_v.first().map_or(0, |p| p.statuses.len() as u64);
    let list = calls.api("ListExecutions") as f64;
    let per_interval = |n: f64| n / f64::from(policies.max(1)) / f64::from(intervals.max(1));
    let list_per_policy = per_interval(list);
    Ok(IdleResult {
        how: HOW,
        policies: u64::from(policies),
        intervals: u64::from(intervals),
        state_machines_per_policy: 1,
        statuses_per_policy: statuses,
        other_calls: calls.total - calls.api("ListExecutions"),
        list_per_policy_per_interval: list_per_policy,
        list_per_machine_status_per_interval: list_per_policy / statuses.max(1) as f64,
        failed_polls: failed,
        redrives: stats.redrives,
        list_per_s_at_10s: list_per_policy * f64::from(policies) / 10.0,
        list_per_s_at_1m: list_per_policy * f64::from(policies) / 60.0,
        list_refill_per_s: preset.bucket("ListExecutions").map(|b| b.1),
        calls,
    })
}
