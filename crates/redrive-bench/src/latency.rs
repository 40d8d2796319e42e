//! Phase 5: latency from failure to redrive while failures keep arriving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::Quota;
use super::check::{self, Correctness};
use super::data;
use super::drain::{Calls, emulator_config, until_redriven};
use redrive_emulator::{self as emulator, ExecutionSpec, Outcome, Scenario, StateMachineSpec};
use redrive_operator::local;
use redrive_operator::reconcile::{Context, PollSettings};

#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    pub how: &'static str,
    pub poll_interval_s: f64,
    pub failures_per_s: f64,
    pub injection_s: f64,
    pub injected: u64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
    pub mean_s: f64,
    pub calls: Calls,
    pub correctness: Correctness,
    pub timed_out: bool,
}

pub const HOW: &str = "executions seeded RUNNING with staggered finishesIn, so the emulator \
turns one FAILED every 1/rate s (stopDate = that instant, on the emulated clock); local::run \
with pollInterval 10s; latency = first redrive in the ledger (at) minus stopDate";

pub async fn run(
    q: Quota,
    poll_interval: Duration,
    rate: f64,
    injection: Duration,
) -> Result<LatencyResult, String> {
    let region = "ap-southeast-2";
    let sm = "latency-orders";
    let handle = emulator::start(
        emulator_config(region, q),
        Scenario::new().with(StateMachineSpec::standard(sm)),
    )
    .await
    .map_err(|e| format!("emulator: {e}"))?;
    let k = (rate * injection.as_secs_f64()).floor().max(1.0) as u32;
    let mut spec = StateMachineSpec::standard(sm);
    let mut finishes = Vec::new();
    for i in 0..k {
        let at = Duration::from_secs_f64(f64::from(i + 1) / rate);
        finishes.push(at);
        spec = spec.execution(
            ExecutionSpec::new(&format!("steady-{i:05}"))
                .outcomes([
                    Outcome::running(),
                    Outcome::fail(data::ELIGIBLE_ERROR),
                    Outcome::succeed(),
                ])
                .started_ago(Duration::from_secs(60))
                .finishes_in(at),
        );
    }
    let seeded_at = handle.now();
    handle
        .seed(Scenario::new().with(spec))
        .map_err(|e| format!("seed: {e}"))?;
    let eligible: Vec<String> = (0..k)
        .map(|i| data::exec_arn(region, sm, &format!("steady-{i:05}")))
        .collect();
    let policy = data::policy(
        "latency",
        serde_json::json!({
            "stepFunctions": {"region": region, "stateMachines": [data::sm_arn(region, sm)]},
            "statuses": ["FAILED"],
            "pollInterval": format!("{}s", poll_interval.as_secs().max(10)),
        }),
    );
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    let ctx = Arc::new(Context::new(settings));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let run = local::run(
        ctx,
        vec![policy],
        false,
        false,
        Arc::new(super::drain::NullObserver),
        stop_rx,
    );
    let timeout = injection + poll_interval * 3 + Duration::from_secs(10);
    let watch = async {
        let timed_out = until_redriven(
            &handle,
            u64::from(k),
            started,
            timeout,
            Duration::from_millis(100),
        )
        .await;
        let _ = stop_tx.send(true);
        timed_out
    };
    let (_, timed_out) = tokio::join!(run, watch);
    let ledger = handle.ledger();
    let stats = handle.stats();
    handle.shutdown().await;
    let correctness = check::check(&ledger, &eligible);
    let lat = check::latencies(&ledger, &eligible, &finishes, seeded_at);
    Ok(LatencyResult {
        how: HOW,
        poll_interval_s: poll_interval.as_secs_f64(),
        failures_per_s: rate,
        injection_s: injection.as_secs_f64(),
        injected: u64::from(k),
        p50_s: check::quantile(&lat, 0.5),
        p99_s: check::quantile(&lat, 0.99),
        max_s: lat.last().copied().unwrap_or(f64::NAN),
        mean_s: lat.iter().sum::<f64>() / lat.len().max(1) as f64,
        calls: Calls::from_stats(&stats),
        correctness,
        timed_out,
    })
}
