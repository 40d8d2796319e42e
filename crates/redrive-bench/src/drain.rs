//! Phases 1 and 2: draining a backlog, by the operator and by a naive script.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::{ExecutionRedriveStatus, ExecutionStatus};
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::watch;

use super::Quota;
use super::check::{self, Correctness};
use super::data::{self, Backlog, BacklogSummary};
use super::quota::{self, Bound};
use redrive_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, Stats};
use redrive_operator::local::{self, PollObserver};
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};

/// Calls and throttling as the emulator counted them (every HTTP attempt).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Calls {
    pub by_api: BTreeMap<String, u64>,
    pub throttled_by_api: BTreeMap<String, u64>,
    pub total: u64,
    pub throttled: u64,
}

/// `ListExecutions` → `List`, `RedriveExecution` → `Redrive`,
/// `codepipeline:RetryStageExecution` → `RetryStage`.
pub fn short_api(api: &str) -> &str {
    let api = api.strip_prefix("codepipeline:").unwrap_or(api);
    api.trim_end_matches("Execution")
        .trim_end_matches("Executions")
}

impl Calls {
    pub fn from_stats(s: &Stats) -> Self {
        Calls {
            by_api: s.by_api.iter().map(|(k, v)| (k.clone(), v.calls)).collect(),
            throttled_by_api: s
                .by_api
                .iter()
                .filter(|(_, v)| v.throttled > 0)
                .map(|(k, v)| (k.clone(), v.throttled))
                .collect(),
            total: s.total_calls,
            throttled: s.throttled,
        }
    }

    pub fn api(&self, api: &str) -> u64 {
        self.by_api.get(api).copied().unwrap_or(0)
    }

    /// `List 12, Describe 1000 (40 throttled), Redrive 1000`.
    pub fn short(&self) -> String {
        self.by_api
            .iter()
            .map(|(api, n)| {
                let short = short_api(api);
                match self.throttled_by_api.get(api) {
                    Some(t) => format!("{short} {n} ({t} thr.)"),
                    None => format!("{short} {n}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a drain's data set held.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum DrainData {
    Executions(BacklogSummary),
    Pipelines(super::pipeline::PipelineSummary),
}

/// One drain of one backlog.
#[derive(Clone, Debug, Serialize)]
pub struct DrainResult {
    pub name: String,
    /// `operator` or `baseline`.
    pub runner: &'static str,
    pub error_filter: bool,
    pub region: String,
    pub data: DrainData,
    pub n: u64,
    /// From the start of the run to the last eligible redrive (emulated clock).
    pub wall_s: f64,
    /// From the start of the run to the first eligible redrive.
    pub first_redrive_s: f64,
    pub redrives_per_s: f64,
    pub calls: Calls,
    /// All attempts of all APIs (throttled ones included) per eligible execution.
    pub calls_per_redrive: f64,
    pub bound: Bound,
    /// `time_min / wall` = achieved throughput / quota-bound throughput.
    pub ratio_to_bound: Option<f64>,
    /// Operator: polls and errors reported by polls (a redrive that failed after all SDK
    /// attempts waits for the next poll).
    pub polls: Option<u64>,
    pub poll_errors: Option<u64>,
    pub correctness: Correctness,
    pub timed_out: bool,
    /// `(seconds, remaining)` steps.
    pub series: Vec<(f64, u64)>,
}

pub(crate) struct NullObserver;

impl PollObserver for NullObserver {
    fn observe(&self, _: &Policy, _: &Result<PollReport, PollError>, _: &PolicyState) {}
}

/// Counts polls as they end, so the counts survive a loop that [`drive`] drops.
#[derive(Default)]
struct PollCounter {
    polls: AtomicU64,
    failed: AtomicU64,
    errors: AtomicU64,
}

impl PollObserver for PollCounter {
    fn observe(&self, _: &Policy, result: &Result<PollReport, PollError>, _: &PolicyState) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(report) => {
                self.errors
                    .fetch_add(report.errors().len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub fn emulator_config(region: &str, q: Quota) -> EmulatorConfig {
    EmulatorConfig {
        region: region.to_string(),
        quota: q.preset,
        quota_scale: q.scale,
        ..EmulatorConfig::default()
    }
}

/// Wait until the emulator has seen `n` redrives, checking every `every`; `true` when `timeout`
/// (from `started`) passed first.
pub async fn until_redriven(
    handle: &EmulatorHandle,
    n: u64,
    started: Instant,
    timeout: Duration,
    every: Duration,
) -> bool {
    until_count(|| handle.stats().redrives, n, started, timeout, every).await
}

/// Wait until `count()` reaches `n`, checking every `every`; `true` when `timeout` (from
/// `started`) passed first.
pub async fn until_count(
    count: impl Fn() -> u64,
    n: u64,
    started: Instant,
    timeout: Duration,
    every: Duration,
) -> bool {
    while count() < n {
        if started.elapsed() > timeout {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Default poll settings with every AWS client pointed at the emulator.
pub fn settings_for(handle: &EmulatorHandle) -> PollSettings {
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    settings
}

/// Drive `run` until `watch` finishes, then give `run` `grace` to wind down before dropping it
/// (`None`): polls queued behind a quota share, or the rest of a drain a phase does not
/// measure, would otherwise keep a finished phase waiting. Dropping `local::run` aborts its
/// tasks; the emulator's ledger still holds whatever they did.
pub async fn drive<R, W: Future>(
    run: impl Future<Output = R>,
    watch: W,
    grace: Duration,
) -> (Option<R>, W::Output) {
    tokio::pin!(run);
    tokio::pin!(watch);
    tokio::select! {
        r = &mut run => (Some(r), watch.await),
        w = &mut watch => (tokio::time::timeout(grace, run).await.ok(), w),
    }
}

/// The operator's local-mode loop (`local::run`) on `policies` until `count()` reaches `n` or
/// `timeout` passes (then the second value is `true`); the loop then has `grace` to stop.
pub async fn operate(
    ctx: Arc<Context>,
    policies: Vec<Policy>,
    count: impl Fn() -> u64,
    n: u64,
    timeout: Duration,
    grace: Duration,
) -> (local::RunTotals, bool) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let counter = Arc::new(PollCounter::default());
    let run = local::run(ctx, policies, false, false, counter.clone(), stop_rx);
    // local::run's future is not Send: drive it and the watcher in this task.
    let watch = async {
        let timed_out = until_count(count, n, started, timeout, Duration::from_millis(50)).await;
        let _ = stop_tx.send(true);
        timed_out
    };
    let (_, timed_out) = drive(run, watch, grace).await;
    let totals = local::RunTotals {
        polls: counter.polls.load(Ordering::Relaxed),
        failed_polls: counter.failed.load(Ordering::Relaxed),
        errors: counter.errors.load(Ordering::Relaxed),
        ..local::RunTotals::default()
    };
    (totals, timed_out)
}

/// Time a drain's loop gets to finish its last poll after the backlog is drained.
pub const GRACE: Duration = Duration::from_secs(10);

/// The calls any redriver needs for `b` (pages of 1,000, one details read per eligible failure
/// with a filter, from either detail bucket, one redrive per eligible failure) and the
/// resulting bound.
pub fn backlog_bound(q: Quota, b: &Backlog, filter: bool) -> Bound {
    let n = b.eligible.len() as u64;
    let mut calls = vec![("ListExecutions", b.list_pages(1000, false))];
    if filter {
        calls.push((quota::DETAILS, n));
    }
    calls.push(("RedriveExecution", n));
    quota::bound(q.preset, q.scale, &calls, n)
}

/// What a drain measured: its identity, the first action per eligible run, and the calls.
pub struct Measured<'a> {
    pub name: &'a str,
    pub runner: &'static str,
    pub error_filter: bool,
    pub region: &'a str,
    pub data: DrainData,
    /// First action of every eligible run that was acted on.
    pub firsts: Vec<Timestamp>,
    pub eligible: u64,
    pub correctness: Correctness,
    pub calls: Calls,
    pub bound: Bound,
    pub t0: Timestamp,
    pub timed_out: bool,
}

impl DrainResult {
    /// Wall time, rates and the series from what a drain measured (every target's drain).
    pub fn from_measured(m: Measured<'_>) -> Self {
        let n = m.eligible;
        let last = m.firsts.iter().max().copied().unwrap_or(m.t0);
        let wall_s = last.duration_since(m.t0).as_secs_f64().max(1e-3);
        DrainResult {
            name: m.name.to_string(),
            runner: m.runner,
            error_filter: m.error_filter,
            region: m.region.to_string(),
            data: m.data,
            n,
            wall_s,
            first_redrive_s: m
                .firsts
                .iter()
                .min()
                .map_or(f64::NAN, |t| t.duration_since(m.t0).as_secs_f64()),
            redrives_per_s: m.correctness.redriven as f64 / wall_s,
            calls_per_redrive: m.calls.total as f64 / n.max(1) as f64,
            calls: m.calls,
            ratio_to_bound: (m.bound.time_min_s > 0.0).then(|| m.bound.time_min_s / wall_s),
            bound: m.bound,
            polls: None,
            poll_errors: None,
            correctness: m.correctness,
            timed_out: m.timed_out,
            series: check::remaining_series(&m.firsts, n, m.t0, 400),
        }
    }
}

// One call site assembles a result from the measured pieces; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn finish(
    name: &str,
    runner: &'static str,
    filter: bool,
    q: Quota,
    b: &Backlog,
    handle: &EmulatorHandle,
    t0: Timestamp,
    timed_out: bool,
) -> DrainResult {
    let ledger = handle.ledger();
    DrainResult::from_measured(Measured {
        name,
        runner,
        error_filter: filter,
        region: &b.region,
        data: DrainData::Executions(b.summary()),
        firsts: check::first_redrives(&ledger, &b.eligible)
            .into_values()
            .collect(),
        eligible: b.eligible.len() as u64,
        correctness: check::check(&ledger, &b.eligible),
        calls: Calls::from_stats(&handle.stats()),
        bound: backlog_bound(q, b, filter),
        t0,
        timed_out,
    })
}

/// The operator's local-mode loop (`local::run`, pollInterval 10 s) until the backlog is drained.
pub async fn run_operator(
    name: &str,
    q: Quota,
    b: &Backlog,
    filter: bool,
    timeout: Duration,
) -> Result<DrainResult, String> {
    let handle = emulator::start(emulator_config(&b.region, q), b.scenario.clone())
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let policy = data::drain_policy("drain", &b.region, &b.machines, filter);
    let ctx = Arc::new(Context::new(settings_for(&handle)));
    let n = b.eligible.len() as u64;
    let t0 = handle.now();
    let (totals, timed_out) = operate(
        ctx,
        vec![policy],
        || handle.stats().redrives,
        n,
        timeout,
        GRACE,
    )
    .await;
    let mut r = finish(name, "operator", filter, q, b, &handle, t0, timed_out);
    r.polls = Some(totals.polls);
    r.poll_errors = Some(totals.errors + totals.failed_polls);
    handle.shutdown().await;
    Ok(r)
}

/// The start of an error-filter drain on a large backlog: from the poll's start to the first
/// redrive. The run stops there (the drain phase measures the rest on a smaller backlog).
#[derive(Clone, Debug, Serialize)]
pub struct FirstRedriveResult {
    pub data: BacklogSummary,
    pub first_redrive_s: f64,
    /// Redrives performed by the time the run stopped.
    pub redriven: u64,
    pub calls: Calls,
    /// Duplicates and ineligible redrives of what it did (nothing counts as left behind).
    pub correctness: Correctness,
    pub timed_out: bool,
}

/// [`run_operator`] with the error filter, stopped at the first redrive.
pub async fn run_first_redrive(
    q: Quota,
    b: &Backlog,
    timeout: Duration,
) -> Result<FirstRedriveResult, String> {
    let handle = emulator::start(emulator_config(&b.region, q), b.scenario.clone())
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let policy = data::drain_policy("first", &b.region, &b.machines, true);
    let ctx = Arc::new(Context::new(settings_for(&handle)));
    let t0 = handle.now();
    // Stop at the first redrive: the rest of the drain is not this run's.
    let (_, timed_out) = operate(
        ctx,
        vec![policy],
        || handle.stats().redrives,
        1,
        timeout,
        Duration::ZERO,
    )
    .await;
    let ledger = handle.ledger();
    let first = check::first_redrives(&ledger, &b.eligible)
        .values()
        .min()
        .map_or(f64::NAN, |t| t.duration_since(t0).as_secs_f64());
    let mut correctness = check::check(&ledger, &b.eligible);
    correctness.eligible = correctness.redriven;
    correctness.left_behind = 0;
    correctness.ok = correctness.duplicates == 0 && correctness.ineligible_redriven == 0;
    let r = FirstRedriveResult {
        data: b.summary(),
        first_redrive_s: first,
        redriven: correctness.redriven,
        calls: Calls::from_stats(&handle.stats()),
        correctness,
        timed_out,
    };
    handle.shutdown().await;
    Ok(r)
}

/// A naive script: list every FAILED execution of each state machine with the SDK paginator
/// (default page size), then one by one DescribeExecution and, if redrivable, RedriveExecution.
/// The SDK's standard retry mode (3 attempts) is on; a ThrottlingException that still comes
/// through makes the script sleep 1 s and retry the same call, as common scripts do.
pub async fn run_baseline(
    name: &str,
    q: Quota,
    b: &Backlog,
    filter: bool,
    timeout: Duration,
) -> Result<DrainResult, String> {
    let handle = emulator::start(emulator_config(&b.region, q), b.scenario.clone())
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let client = baseline_client(&handle.endpoint, &b.region).await;
    let t0 = handle.now();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    'machines: for sm in &b.machines {
        let mut listed = Vec::new();
        loop {
            listed.clear();
            let mut pages = client
                .list_executions()
                .state_machine_arn(sm)
                .status_filter(ExecutionStatus::Failed)
                .into_paginator()
                .send();
            let mut throttled = false;
            let mut failed = false;
            while let Some(page) = pages.next().await {
                match page {
                    Ok(p) => {
                        listed.extend(p.executions().iter().map(|e| e.execution_arn().to_string()))
                    }
                    Err(e) if e.code() == Some("ThrottlingException") => {
                        throttled = true;
                        break;
                    }
                    // EXPRESS (StateMachineTypeNotSupported) and anything else: next machine.
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                continue 'machines;
            }
            if !throttled {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for arn in &listed {
            if Instant::now() > deadline {
                timed_out = true;
                break 'machines;
            }
            let out = loop {
                match client.describe_execution().execution_arn(arn).send().await {
                    Ok(o) => break Some(o),
                    Err(e) if e.code() == Some("ThrottlingException") => {
                        tokio::time::sleep(Duration::from_secs(1)).await
                    }
                    Err(_) => break None,
                }
            };
            let Some(out) = out else { continue };
            let redrivable = out.redrive_status() == Some(&ExecutionRedriveStatus::Redrivable)
                && out.redrive_count().unwrap_or(0) < data::MAX_REDRIVES as i32;
            let error_ok = !filter
                || out.error().is_some_and(|e| {
                    data::ERROR_FILTER
                        .iter()
                        .any(|g| e.starts_with(g.trim_end_matches('*')))
                });
            if !(redrivable && error_ok) {
                continue;
            }
            loop {
                match client.redrive_execution().execution_arn(arn).send().await {
                    Err(e) if e.code() == Some("ThrottlingException") => {
                        tokio::time::sleep(Duration::from_secs(1)).await
                    }
                    _ => break,
                }
            }
        }
    }
    let r = finish(name, "baseline", filter, q, b, &handle, t0, timed_out);
    handle.shutdown().await;
    Ok(r)
}

async fn baseline_client(endpoint: &str, region: &str) -> aws_sdk_sfn::Client {
    use aws_config::{BehaviorVersion, Region, retry::RetryConfig};
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "AKIDREDRIVEBENCHBASE",
            "redrive-bench-dummy-secret",
            None,
            None,
            "redrive-bench-baseline",
        ))
        .retry_config(RetryConfig::standard())
        .load()
        .await;
    let conf = aws_sdk_sfn::config::Builder::from(&sdk)
        .retry_partition(aws_sdk_sfn::config::retry::RetryPartition::new(
            "redrive-bench-baseline",
        ))
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}
