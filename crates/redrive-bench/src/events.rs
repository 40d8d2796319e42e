//! Phase 6: event hints. The latency phase's steady stream of failures, with the emulator
//! publishing its status changes to moto's EventBridge, a rule feeding a moto SQS queue and the
//! operator reading it (`local::run_with_events`): failure → redrive latency with events, the
//! ListExecutions an idle policy spends per hour with the sweep, and correctness when events are
//! dropped and duplicated (the sweep must catch the dropped ones). Every fourth failure carries
//! an error the policy excludes: acting on one would be an event widening the policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use serde::Serialize;
use tokio::sync::watch;

use super::Quota;
use super::check::{self, Correctness};
use super::data;
use super::drain::{Calls, emulator_config, until_redriven};
use redrive_emulator::{
    self as emulator, EventFaults, EventsConfig, ExecutionSpec, Outcome, Scenario, StateMachineSpec,
};
use redrive_operator::events::EventSource;
use redrive_operator::events::consumer::QueueSettings;
use redrive_operator::local;
use redrive_operator::reconcile::{Context, PollSettings};

/// An error outside the policy's filter.
const EXCLUDED_ERROR: &str = "Custom.Fatal";

#[derive(Clone, Debug, Serialize)]
pub struct EventsResult {
    pub how: &'static str,
    pub name: String,
    pub poll_interval_s: f64,
    pub sweep_s: f64,
    pub drop_rate: f64,
    pub duplicate_rate: f64,
    pub failures_per_s: f64,
    pub injection_s: f64,
    /// Eligible failures (the excluded ones are not counted here).
    pub injected: u64,
    pub excluded: u64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
    pub run_s: f64,
    /// ListExecutions of the run (one machine, one status), and those after the first sweep.
    pub list_calls: u64,
    pub list_after_first_sweep: u64,
    /// The sweep's ceiling: ListExecutions per (state machine, status) per hour.
    pub sweep_list_per_hour: f64,
    /// What polling spends for the same latency: its p99 is about its pollInterval, so one
    /// ListExecutions every max(p99, 2 s) seconds (2 s: the issue's target).
    pub polling_list_per_hour_at_same_p99: f64,
    pub events_published: u64,
    pub events_dropped: u64,
    pub calls: Calls,
    pub correctness: Correctness,
    pub timed_out: bool,
}

pub const HOW: &str = "executions seeded RUNNING with staggered finishesIn (one FAILED every \
1/rate s, every fourth with an excluded error); the emulator publishes each status change with \
PutEvents to moto's EventBridge, a rule sends FAILED/TIMED_OUT/ABORTED to a moto SQS queue, and \
local::run_with_events reads it; latency = first redrive in the ledger minus stopDate";

fn credentials() -> Credentials {
    Credentials::new("AKIDBENCH", "bench-secret", None, None, "redrive-bench")
}

/// A moto queue in `region` fed by the documented Step Functions failure rule.
async fn queue(region: &str, name: &str) -> Result<String, String> {
    let moto = redrive_emulator::moto::endpoint();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .endpoint_url(moto)
            .credentials_provider(credentials())
            .build(),
    );
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| format!("moto CreateQueue: {e}"))?
        .queue_url
        .ok_or("moto CreateQueue: no URL")?;
    let eb = aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
            .region(aws_sdk_eventbridge::config::Region::new(region.to_string()))
            .endpoint_url(moto)
            .credentials_provider(credentials())
            .build(),
    );
    let rule = format!("{name}-rule");
    eb.put_rule()
        .name(&rule)
        .event_pattern(
            r#"{"source":["aws.states"],"detail-type":["Step Functions Execution Status Change"],"detail":{"status":["FAILED","TIMED_OUT","ABORTED"]}}"#,
        )
        .send()
        .await
        .map_err(|e| format!("moto PutRule: {e}"))?;
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(format!("arn:aws:sqs:{region}:{}:{name}", data::ACCOUNT))
        .build()
        .map_err(|e| format!("target: {e}"))?;
    eb.put_targets()
        .rule(&rule)
        .targets(target)
        .send()
        .await
        .map_err(|e| format!("moto PutTargets: {e}"))?;
    Ok(url)
}

/// One run: `faults` on the events, the sweep every `sweep`.
pub async fn run(
    name: &str,
    q: Quota,
    poll_interval: Duration,
    sweep: Duration,
    rate: f64,
    injection: Duration,
    faults: EventFaults,
) -> Result<EventsResult, String> {
    // One region per run: moto's default bus and queue names stay apart.
    let region = if faults.drop_rate > 0.0 {
        "eu-north-1"
    } else {
        "eu-south-1"
    };
    let sm = "events-orders";
    let url = queue(region, &format!("bench-{region}")).await?;
    let mut config = emulator_config(region, q);
    config.events = EventsConfig {
        eventbridge_endpoint: Some(redrive_emulator::moto::endpoint().to_string()),
        faults: faults.clone(),
        ..EventsConfig::default()
    };
    let handle = emulator::start(config, Scenario::new().with(StateMachineSpec::standard(sm)))
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let k = (rate * injection.as_secs_f64()).floor().max(1.0) as u32;
    let mut spec = StateMachineSpec::standard(sm);
    let mut eligible = Vec::new();
    let mut finishes = Vec::new();
    for i in 0..k {
        let at = Duration::from_secs_f64(f64::from(i + 1) / rate);
        let excluded = i % 4 == 3;
        let id = format!("steady-{i:05}");
        spec = spec.execution(
            ExecutionSpec::new(&id)
                .outcomes([
                    Outcome::running(),
                    Outcome::fail(if excluded {
                        EXCLUDED_ERROR
                    } else {
                        data::ELIGIBLE_ERROR
                    }),
                    Outcome::succeed(),
                ])
                .started_ago(Duration::from_secs(60))
                .finishes_in(at),
        );
        if !excluded {
            eligible.push(data::exec_arn(region, sm, &id));
            finishes.push(at);
        }
    }
    let seeded_at = handle.now();
    handle
        .seed(Scenario::new().with(spec))
        .map_err(|e| format!("seed: {e}"))?;
    let policy = data::policy(
        "events",
        serde_json::json!({
            "stepFunctions": {"region": region, "stateMachines": [data::sm_arn(region, sm)]},
            "statuses": ["FAILED"],
            "errors": {"include": data::ERROR_FILTER},
            "pollInterval": format!("{}s", poll_interval.as_secs().max(10)),
        }),
    );
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    let sqs_settings = redrive_operator::aws::AwsSettings {
        endpoint_url: Some(redrive_emulator::moto::endpoint().to_string()),
        ..settings.aws.clone()
    };
    let sqs =
        aws_sdk_sqs::Client::new(&redrive_operator::aws::sdk_config(&sqs_settings, region).await);
    let source = EventSource::new(
        sqs,
        vec![QueueSettings {
            url,
            visibility_timeout: Duration::from_secs(30),
            concurrency: 16,
        }],
        sweep,
    );
    let ctx = Arc::new(Context::new(settings));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let run = local::run_with_events(
        ctx,
        vec![policy],
        false,
        false,
        Arc::new(super::drain::NullObserver),
        stop_rx,
        Some(source),
    );
    let want = eligible.len() as u64;
    // Dropped events wait for the sweep.
    let timeout = injection + sweep * 2 + Duration::from_secs(20);
    let watch = async {
        let timed_out =
            until_redriven(&handle, want, started, timeout, Duration::from_millis(100)).await;
        // Late duplicates and the excluded failures' hints get their chance to misbehave.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop_tx.send(true);
        timed_out
    };
    let (_, timed_out) = tokio::join!(run, watch);
    let elapsed = started.elapsed();
    let ledger = handle.ledger();
    let stats = handle.stats();
    let event_stats = handle.event_stats();
    handle.shutdown().await;
    let correctness = check::check(&ledger, &eligible);
    let lat = check::latencies(&ledger, &eligible, &finishes, seeded_at);
    let calls = Calls::from_stats(&stats);
    let p99 = check::quantile(&lat, 0.99);
    Ok(EventsResult {
        how: HOW,
        name: name.to_string(),
        poll_interval_s: poll_interval.as_secs_f64(),
        sweep_s: sweep.as_secs_f64(),
        drop_rate: faults.drop_rate,
        duplicate_rate: faults.duplicate_rate,
        failures_per_s: rate,
        injection_s: injection.as_secs_f64(),
        injected: want,
        excluded: u64::from(k) - want,
        p50_s: check::quantile(&lat, 0.5),
        p99_s: p99,
        max_s: lat.last().copied().unwrap_or(f64::NAN),
        run_s: elapsed.as_secs_f64(),
        // One machine, one status (FAILED): one call per sweep.
        list_calls: calls.api("ListExecutions"),
        list_after_first_sweep: calls.api("ListExecutions").saturating_sub(1),
        sweep_list_per_hour: 3600.0 / sweep.as_secs_f64().max(poll_interval.as_secs_f64()),
        polling_list_per_hour_at_same_p99: 3600.0 / p99.max(2.0),
        events_published: event_stats.published,
        events_dropped: event_stats.dropped,
        calls,
        correctness,
        timed_out,
    })
}
