//! The emulator's EventBridge events (issue 15) through a real third-party EventBridge and SQS:
//! moto's `moto_server` (scripts/moto.sh). Chain: emulator status change → `PutEvents` → moto
//! rule with the documented pattern → moto SQS queue → `aws-sdk-sqs` long polling. The
//! envelopes are checked against api-facts §1.10 / §5.2 field by field.
//!
//! moto is found through `REDRIVE_MOTO_SERVER` (scripts/test.sh exports it) or
//! `scripts/moto.sh path`; if it cannot be found or started these tests fail, never skip.
//! One moto serves the whole binary; each test uses its own region (moto keeps a separate
//! backend per region), so tests running in parallel never see each other's events.

use std::time::{Duration, Instant};

use aws_sdk_codepipeline::types::StageRetryMode;
use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use redrive_emulator::events::event_time;
use redrive_emulator::{
    self as emulator, ActionCategory, ActionOutcome, ActionSpec, EmulatorConfig, EmulatorHandle,
    EventFaults, EventsConfig, Outcome, PipelineSpec, Scenario, StageSpec, StateMachineSpec,
};
use serde_json::{Value, json};

const ACCOUNT: &str = "123456789012";
const SFN_FAILED_PATTERN: &str = r#"{"source":["aws.states"],"detail-type":["Step Functions Execution Status Change"],"detail":{"status":["FAILED","TIMED_OUT","ABORTED"]}}"#;
const STAGE_FAILED_PATTERN: &str = r#"{"source":["aws.codepipeline"],"detail-type":["CodePipeline Stage Execution State Change"],"detail":{"state":["FAILED"]}}"#;

// ------------------------------------------------------------------------------------------
// moto

fn moto() -> &'static str {
    redrive_emulator::moto::endpoint()
}

fn creds() -> Credentials {
    Credentials::new("AKIDEVENTSTEST", "secret", None, None, "test")
}

fn eventbridge(region: &str) -> aws_sdk_eventbridge::Client {
    aws_sdk_eventbridge::Client::from_conf(
        aws_sdk_eventbridge::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(moto())
            .credentials_provider(creds())
            .build(),
    )
}

fn sqs(region: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new(region.to_string()))
            .endpoint_url(moto())
            .credentials_provider(creds())
            .build(),
    )
}

/// A queue fed by a rule with `pattern` on `bus` (in moto, in `region`).
struct Feed {
    sqs: aws_sdk_sqs::Client,
    url: String,
}

async fn feed(region: &str, bus: &str, name: &str, pattern: &str) -> Feed {
    let sqs = sqs(region);
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("QueueArn");
    let eb = eventbridge(region);
    eb.put_rule()
        .name(format!("{name}-rule"))
        .event_bus_name(bus)
        .event_pattern(pattern)
        .send()
        .await
        .expect("PutRule");
    let t = eb
        .put_targets()
        .rule(format!("{name}-rule"))
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("PutTargets");
    assert_eq!(t.failed_entry_count(), 0);
    Feed { sqs, url }
}

impl Feed {
    /// Long-poll until `want` messages arrived or `within` passed; deletes what it reads.
    async fn receive(&self, want: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left.as_secs().clamp(1, 20) as i32;
            let r = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait)
                .send()
                .await
                .expect("ReceiveMessage");
            for m in r.messages() {
                out.push(serde_json::from_str(m.body().expect("body")).expect("JSON event"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.url)
                    .receipt_handle(m.receipt_handle().expect("receipt handle"))
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
        out
    }

    /// Exactly `n` messages, then nothing more for a second.
    async fn exactly(&self, n: usize) -> Vec<Value> {
        let got = self.receive(n, Duration::from_secs(20)).await;
        assert_eq!(got.len(), n, "expected {n} events, got {got:#?}");
        let more = self.receive(usize::MAX, Duration::from_secs(1)).await;
        assert!(more.is_empty(), "unexpected extra events: {more:#?}");
        got
    }
}

/// moto 5.2.5's default target template (`EventTemplateParser`) leaves `account` out of what
/// it delivers, where EventBridge sends it; our own envelope has it (unit tests of
/// `events::envelope`). Accept the gap, and only that: present means ours.
fn account_as_moto_delivers(ev: &Value) {
    assert!(
        ev.get("account").is_none_or(|a| a == ACCOUNT),
        "account: {:?}",
        ev.get("account")
    );
}

// ------------------------------------------------------------------------------------------
// Emulator

fn config(region: &str, bus: &str, faults: EventFaults) -> EmulatorConfig {
    EmulatorConfig {
        region: region.to_string(),
        events: EventsConfig {
            eventbridge_endpoint: Some(moto().to_string()),
            event_bus_name: bus.to_string(),
            faults,
            ..EventsConfig::default()
        },
        ..EmulatorConfig::default()
    }
}

/// Executions of `orders` run until failed by hand; `fast` is EXPRESS.
fn sfn_scenario() -> Scenario {
    Scenario::new()
        .with(StateMachineSpec::standard("orders").start_outcomes([Outcome::running()]))
        .with(StateMachineSpec::express("fast"))
}

fn sfn(h: &EmulatorHandle, region: &str) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new(region.to_string()))
            .endpoint_url(&h.endpoint)
            .credentials_provider(creds())
            .build(),
    )
}

async fn start_exec(c: &aws_sdk_sfn::Client, sm_arn: &str, name: &str) -> String {
    c.start_execution()
        .state_machine_arn(sm_arn)
        .name(name)
        .input(r#"{"order":7}"#)
        .send()
        .await
        .expect("StartExecution")
        .execution_arn()
        .to_string()
}

fn ms(t: jiff::Timestamp) -> i64 {
    t.as_millisecond()
}

/// Wait until the publisher has dealt with `n` events (published, dropped or failed).
async fn settled(h: &EmulatorHandle, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = h.event_stats();
        if s.published + s.dropped + s.failed >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "publisher did not handle {n} events: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Tests

/// api-facts §1.10: RUNNING on start and on redrive, FAILED on stop, no event for EXPRESS;
/// the documented rule pattern delivers only FAILED / TIMED_OUT / ABORTED.
#[tokio::test]
async fn step_functions_status_changes_reach_sqs_through_the_documented_rule() {
    let region = "eu-west-1";
    let failed = feed(region, "default", "sfn-failed", SFN_FAILED_PATTERN).await;
    let all = feed(region, "default", "sfn-all", r#"{"source":["aws.states"]}"#).await;
    let h = emulator::start(
        config(region, "default", EventFaults::default()),
        sfn_scenario(),
    )
    .await
    .expect("emulator starts");
    let c = sfn(&h, region);
    let sm = h.state_machine_arn("orders");
    let arn = start_exec(&c, &sm, "run-1").await;
    start_exec(&c, &h.state_machine_arn("fast"), "express-1").await;
    assert!(h.fail_execution(&arn, "States.TaskFailed", "lambda exploded"));
    let after_fail = h.execution(&arn).expect("execution");

    // The documented pattern: the FAILED event only, every field as documented.
    let got = failed.exactly(1).await;
    let ev = &got[0];
    let stop = ms(after_fail.stop_date.expect("stopped"));
    assert_eq!(ev["version"], "0");
    assert!(ev["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(ev["source"], "aws.states");
    assert_eq!(ev["detail-type"], "Step Functions Execution Status Change");
    account_as_moto_delivers(ev);
    assert_eq!(ev["region"], region);
    assert_eq!(ev["time"], event_time(stop));
    assert_eq!(ev["resources"], json!([arn]));
    let start = ms(after_fail.start_date);
    assert_eq!(
        ev["detail"],
        json!({
            "executionArn": arn,
            "stateMachineArn": sm,
            "name": "run-1",
            "status": "FAILED",
            "startDate": start,
            "stopDate": stop,
            "input": "{\"order\":7}",
            "inputDetails": {"included": true},
            "output": null,
            "outputDetails": null,
            "redriveCount": 0,
            "redriveStatus": "REDRIVABLE",
            "error": "States.TaskFailed",
            "cause": "lambda exploded",
        })
    );
    assert!(ev["detail"]["startDate"].is_i64() && ev["detail"]["stopDate"].is_i64());

    // Redrive: RUNNING again, with the redrive fields; not delivered by the FAILED rule.
    c.redrive_execution()
        .execution_arn(&arn)
        .client_token("redrive-1")
        .send()
        .await
        .expect("RedriveExecution");
    let redriven = h.execution(&arn).expect("execution");
    let seen = all.exactly(3).await;
    let statuses: Vec<&str> = seen
        .iter()
        .map(|e| e["detail"]["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, ["RUNNING", "FAILED", "RUNNING"]);
    assert!(
        seen.iter().all(|e| e["resources"] == json!([arn])),
        "no event for the EXPRESS execution"
    );
    let first = &seen[0]["detail"];
    assert_eq!(first["stopDate"], Value::Null);
    assert_eq!(first["redriveCount"], 0);
    assert_eq!(first["redriveStatus"], "NOT_REDRIVABLE");
    assert_eq!(
        first["redriveStatusReason"],
        "Execution is RUNNING and cannot be redriven"
    );
    assert!(first.get("error").is_none() && first.get("redriveDate").is_none());
    let again = &seen[2]["detail"];
    assert_eq!(again["stopDate"], Value::Null);
    assert_eq!(again["startDate"], start, "a redrive keeps the start date");
    assert_eq!(again["redriveCount"], 1);
    assert_eq!(
        again["redriveDate"],
        ms(redriven.redrive_date.expect("redrive date"))
    );
    assert!(again.get("error").is_none(), "no error while running");
    assert!(
        failed
            .receive(usize::MAX, Duration::from_secs(1))
            .await
            .is_empty()
    );

    let s = h.event_stats();
    assert!(s.enabled);
    assert_eq!((s.emitted, s.published, s.failed), (3, 3, 0));
    assert_eq!((s.dropped, s.duplicated, s.dropped_queue_full), (0, 0, 0));
    assert_eq!(h.stats().events, s, "the same counters in Stats");
}

/// api-facts §5.2: STARTED / FAILED / RESUMED / SUCCEEDED on a custom bus; the FAILED rule
/// delivers only the failure.
#[tokio::test]
async fn codepipeline_stage_changes_reach_sqs_through_the_documented_rule() {
    let region = "us-west-2";
    let bus = "redrive-events";
    eventbridge(region)
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .expect("CreateEventBus");
    let failed = feed(region, bus, "stage-failed", STAGE_FAILED_PATTERN).await;
    let all = feed(
        region,
        bus,
        "stage-all",
        r#"{"source":["aws.codepipeline"]}"#,
    )
    .await;
    let spec = PipelineSpec::new("deploy")
        .action_duration(Duration::ZERO)
        .stage(
            StageSpec::new("Build").action(
                ActionSpec::new("Compile", ActionCategory::Build)
                    .outcomes([ActionOutcome::running(), ActionOutcome::succeed()]),
            ),
        )
        .stage(StageSpec::new("Ship").action(ActionSpec::new("Push", ActionCategory::Deploy)));
    let h = emulator::start(
        config(region, bus, EventFaults::default()),
        Scenario::new().with_pipeline(spec),
    )
    .await
    .expect("emulator starts");
    let id = h.start_pipeline_execution("deploy").expect("start");
    h.fail_action("deploy", "Build", "Compile", "JobFailed", "exit 2")
        .expect("fail");
    let started = h.pipeline_execution("deploy", &id).expect("execution");

    let got = failed.exactly(1).await;
    let ev = &got[0];
    let pipeline_arn = h.pipeline_arn("deploy");
    assert_eq!(ev["version"], "0");
    assert_eq!(ev["source"], "aws.codepipeline");
    assert_eq!(
        ev["detail-type"],
        "CodePipeline Stage Execution State Change"
    );
    account_as_moto_delivers(ev);
    assert_eq!(ev["region"], region);
    assert_eq!(ev["resources"], json!([pipeline_arn]));
    // The failure is the execution's last update (fail_action ended it then).
    assert_eq!(ev["time"], event_time(ms(started.last_update_time)));
    let d = &ev["detail"];
    assert_eq!(d["pipeline"], "deploy");
    assert_eq!(d["version"].as_f64(), Some(1.0));
    assert_eq!(d["execution-id"], id);
    assert_eq!(d["stage"], "Build");
    assert_eq!(d["state"], "FAILED");
    assert_eq!(d["pipeline-execution-attempt"].as_f64(), Some(1.0));
    assert_eq!(
        d["start-time"],
        started
            .start_time
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    );

    // RetryStageExecution → RESUMED, then the retried attempt and the next stage succeed.
    let cp = aws_sdk_codepipeline::Client::from_conf(
        aws_sdk_codepipeline::Config::builder()
            .behavior_version(aws_sdk_codepipeline::config::BehaviorVersion::latest())
            .region(aws_sdk_codepipeline::config::Region::new(region))
            .endpoint_url(&h.endpoint)
            .credentials_provider(creds())
            .build(),
    );
    cp.retry_stage_execution()
        .pipeline_name("deploy")
        .stage_name("Build")
        .pipeline_execution_id(&id)
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .expect("RetryStageExecution");
    let seen = all.exactly(6).await;
    let steps: Vec<(String, String, f64)> = seen
        .iter()
        .map(|e| {
            let d = &e["detail"];
            (
                d["stage"].as_str().unwrap_or("?").to_string(),
                d["state"].as_str().unwrap_or("?").to_string(),
                d["pipeline-execution-attempt"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    let want: Vec<(String, String, f64)> = [
        ("Build", "STARTED", 1.0),
        ("Build", "FAILED", 1.0),
        ("Build", "RESUMED", 2.0),
        ("Build", "SUCCEEDED", 2.0),
        ("Ship", "STARTED", 2.0),
        ("Ship", "SUCCEEDED", 2.0),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
    .collect();
    assert_eq!(steps, want);
    assert!(seen.iter().all(|e| e["detail"]["execution-id"] == id));
    assert!(
        failed
            .receive(usize::MAX, Duration::from_secs(1))
            .await
            .is_empty()
    );
    assert_eq!(h.event_stats().published, 6);
}

/// drop = 1.0 publishes nothing and counts every drop; turning it off at run time works.
#[tokio::test]
async fn dropped_events_are_counted_and_never_delivered() {
    let region = "ap-southeast-1";
    let q = feed(region, "default", "dropped", SFN_FAILED_PATTERN).await;
    let drop_all = EventFaults {
        drop_rate: 1.0,
        ..EventFaults::default()
    };
    let h = emulator::start(config(region, "default", drop_all), sfn_scenario())
        .await
        .expect("emulator starts");
    let c = sfn(&h, region);
    let sm = h.state_machine_arn("orders");
    let a = start_exec(&c, &sm, "lost").await;
    assert!(h.fail_execution(&a, "States.TaskFailed", "lost"));
    settled(&h, 2).await;
    let s = h.event_stats();
    assert_eq!(
        (s.emitted, s.dropped, s.published, s.put_events_calls),
        (2, 2, 0, 0)
    );

    // Faults off: the next failure arrives, and it is the only one.
    h.set_event_faults(EventFaults::default());
    let b = start_exec(&c, &sm, "found").await;
    assert!(h.fail_execution(&b, "States.TaskFailed", "found"));
    let got = q.exactly(1).await;
    assert_eq!(got[0]["resources"], json!([b]));
    assert_eq!(h.event_stats().dropped, 2);
}

/// duplicate = 1.0 delivers every event twice, with the same detail.
#[tokio::test]
async fn duplicated_events_are_delivered_twice() {
    let region = "ap-northeast-1";
    let q = feed(region, "default", "duplicated", SFN_FAILED_PATTERN).await;
    let dup = EventFaults {
        duplicate_rate: 1.0,
        ..EventFaults::default()
    };
    let h = emulator::start(config(region, "default", dup), sfn_scenario())
        .await
        .expect("emulator starts");
    let c = sfn(&h, region);
    let a = start_exec(&c, &h.state_machine_arn("orders"), "twice").await;
    assert!(h.fail_execution(&a, "States.TaskFailed", "twice"));
    let got = q.exactly(2).await;
    assert_eq!(got[0]["detail"], got[1]["detail"]);
    assert_eq!(got[0]["detail"]["status"], "FAILED");
    let s = h.event_stats();
    assert_eq!((s.emitted, s.duplicated, s.published), (2, 2, 4));
}

/// reorder = 1.0 holds every other event back until the next one went out: the failure of
/// `first` arrives after the failure of `second`.
#[tokio::test]
async fn reordered_events_arrive_out_of_order() {
    let region = "sa-east-1";
    let q = feed(region, "default", "reordered", SFN_FAILED_PATTERN).await;
    let reorder = EventFaults {
        reorder_rate: 1.0,
        ..EventFaults::default()
    };
    let h = emulator::start(config(region, "default", reorder), sfn_scenario())
        .await
        .expect("emulator starts");
    let c = sfn(&h, region);
    let sm = h.state_machine_arn("orders");
    let first = start_exec(&c, &sm, "first").await;
    let second = start_exec(&c, &sm, "second").await;
    assert!(h.fail_execution(&first, "States.TaskFailed", "1"));
    assert!(h.fail_execution(&second, "States.TaskFailed", "2"));
    let got = q.exactly(2).await;
    let order: Vec<&Value> = got.iter().map(|e| &e["resources"][0]).collect();
    assert_eq!(order, [&json!(second), &json!(first)]);
    let s = h.event_stats();
    assert_eq!((s.emitted, s.reordered, s.published), (4, 2, 4));
}

/// A fixed delay holds publication back (real time) without blocking the API.
#[tokio::test]
async fn delayed_events_arrive_after_the_delay() {
    let region = "ca-central-1";
    let q = feed(region, "default", "delayed", SFN_FAILED_PATTERN).await;
    let delay = EventFaults {
        delay: Some(Duration::from_millis(2500)),
        ..EventFaults::default()
    };
    let h = emulator::start(config(region, "default", delay), sfn_scenario())
        .await
        .expect("emulator starts");
    let c = sfn(&h, region);
    let a = start_exec(&c, &h.state_machine_arn("orders"), "late").await;
    let t0 = Instant::now();
    assert!(h.fail_execution(&a, "States.TaskFailed", "late"));
    // The API answers at once while the event waits.
    c.describe_execution()
        .execution_arn(&a)
        .send()
        .await
        .expect("DescribeExecution");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "the API answers before the event goes"
    );
    let got = q.exactly(1).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(2500),
        "arrived after {:?}",
        t0.elapsed()
    );
    assert_eq!(got[0]["resources"], json!([a]));
}

/// A time-driven change (a run time elapsing on the emulated clock) is published without any
/// API call: the settle ticker drives it.
#[tokio::test]
async fn time_driven_changes_are_published_without_api_calls() {
    let region = "eu-north-1";
    let q = feed(region, "default", "timed", SFN_FAILED_PATTERN).await;
    let sc = Scenario::new().with(
        StateMachineSpec::standard("orders")
            .start_outcomes([Outcome::timed_out()])
            .redrive_run_time(Duration::from_secs(3600)),
    );
    let h = emulator::start(config(region, "default", EventFaults::default()), sc)
        .await
        .expect("emulator starts");
    let c = sfn(&h, region);
    let a = start_exec(&c, &h.state_machine_arn("orders"), "slow").await;
    h.advance_clock(Duration::from_secs(3601));
    let got = q.exactly(1).await;
    assert_eq!(got[0]["detail"]["status"], "TIMED_OUT");
    assert_eq!(got[0]["resources"], json!([a]));
}

/// Raw HTTP/1.1 to the admin API (no HTTP client dependency): (status, JSON body).
async fn admin(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, serde_json::from_str(rest).expect("JSON body"))
}

/// An unreachable EventBridge: every event is counted as failed, the API is unaffected, and
/// the admin API shows and changes the event faults and counters.
#[tokio::test]
async fn unreachable_eventbridge_counts_failures_and_the_admin_api_exposes_events() {
    let dead = {
        let port = redrive_emulator::moto::free_port(); // bound then released: nothing listens there
        format!("http://127.0.0.1:{port}")
    };
    let cfg = EmulatorConfig {
        events: EventsConfig {
            eventbridge_endpoint: Some(dead),
            ..EventsConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let h = emulator::start(cfg, sfn_scenario())
        .await
        .expect("emulator starts");
    let c = sfn(&h, "us-east-1");
    let t0 = Instant::now();
    let a = start_exec(&c, &h.state_machine_arn("orders"), "nowhere").await;
    assert!(h.fail_execution(&a, "States.TaskFailed", "nowhere"));
    assert!(
        t0.elapsed() < Duration::from_secs(2), // generous for a loaded CI machine
        "the API never waits for PutEvents"
    );
    settled(&h, 2).await;
    let s = h.event_stats();
    assert_eq!((s.emitted, s.failed, s.published), (2, 2, 0));

    let (code, stats) = admin(&h.endpoint, "GET", "/_emulator/events/stats", "").await;
    assert_eq!(code, 200);
    assert_eq!(stats["emitted"], 2);
    assert_eq!(stats["failed"], 2);
    assert_eq!(stats["enabled"], true);
    let (_, all) = admin(&h.endpoint, "GET", "/_emulator/stats", "").await;
    assert_eq!(all["events"], stats);

    let (code, f) = admin(
        &h.endpoint,
        "PUT",
        "/_emulator/events/faults",
        r#"{"dropRate":0.25,"duplicateRate":2,"delay":"150ms"}"#,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(f["dropRate"], 0.25);
    assert_eq!(f["duplicateRate"], 1.0, "rates are clamped to [0, 1]");
    assert_eq!(f["delay"], "150ms");
    assert_eq!(h.event_faults().delay, Some(Duration::from_millis(150)));
    let (code, _) = admin(
        &h.endpoint,
        "PUT",
        "/_emulator/events/faults",
        "{\"dropRate\":\"x\"}",
    )
    .await;
    assert_eq!(code, 400);
}
