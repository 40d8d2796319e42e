//! Conformance tests of the Step Functions emulator against api-facts §1 / §4.1, using the real
//! `aws-sdk-sfn` client (and raw HTTP for the wire format). Independent of the operator code.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::retry::RetryConfig;
use aws_sdk_sfn::config::{BehaviorVersion, Region};
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::{ExecutionRedriveFilter, ExecutionRedriveStatus, ExecutionStatus, Tag};
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorHandle, ExecutionSpec, FaultConfig, GenerateSpec,
    LedgerOutcome, MapRunSpec, Outcome, QuotaPreset, Scenario, StateMachineSpec, reasons,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn client(h: &EmulatorHandle) -> Client {
    let conf = aws_sdk_sfn::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&h.endpoint)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

async fn emu(scenario: Scenario) -> (EmulatorHandle, Client) {
    emu_with(EmulatorConfig::default(), scenario).await
}

async fn emu_with(config: EmulatorConfig, scenario: Scenario) -> (EmulatorHandle, Client) {
    let h = emulator::start(config, scenario)
        .await
        .expect("emulator starts");
    let c = client(&h);
    (h, c)
}

/// Service error code of an SDK error (None for transport errors).
fn code<E: ProvideErrorMetadata, R>(e: &aws_sdk_sfn::error::SdkError<E, R>) -> Option<String> {
    e.as_service_error()
        .and_then(|s| s.code())
        .map(str::to_string)
}

async fn describe(
    c: &Client,
    arn: &str,
) -> aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput {
    c.describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .expect("describe")
}

// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_operation_happy_path() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("etl")
            .execution(
                ExecutionSpec::failed("parent", "States.ExceedToleratedFailureThreshold")
                    .started_ago(secs(2 * HOUR))
                    .stopped_ago(secs(HOUR)),
            )
            .map_run(
                MapRunSpec::new("Items", "parent")
                    .child(ExecutionSpec::failed("c1", "Lambda.ServiceException"))
                    .child(ExecutionSpec::succeeded("c2")),
            ),
    );
    let (h, c) = emu(sc).await;

    // CreateStateMachine + ListStateMachines + DescribeStateMachine + ListTagsForResource
    let created = c
        .create_state_machine()
        .name("orders")
        .definition(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#)
        .role_arn("arn:aws:iam::123456789012:role/sfn")
        .tags(Tag::builder().key("team").value("payments").build())
        .send()
        .await
        .unwrap();
    let sm_arn = created.state_machine_arn().to_string();
    assert_eq!(
        sm_arn,
        "arn:aws:states:us-east-1:123456789012:stateMachine:orders"
    );
    let list = c.list_state_machines().send().await.unwrap();
    let names: Vec<&str> = list.state_machines().iter().map(|s| s.name()).collect();
    assert_eq!(names, vec!["etl", "orders"]);
    let d = c
        .describe_state_machine()
        .state_machine_arn(&sm_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(d.name(), "orders");
    assert_eq!(d.r#type().as_str(), "STANDARD");
    assert_eq!(d.status().map(|s| s.as_str()), Some("ACTIVE"));
    let tags = c
        .list_tags_for_resource()
        .resource_arn(&sm_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 1);
    assert_eq!(tags.tags()[0].key(), Some("team"));
    assert_eq!(tags.tags()[0].value(), Some("payments"));

    // StartExecution → RUNNING → (default script: succeed after redriveRunTime 0) SUCCEEDED
    let started = c
        .start_execution()
        .state_machine_arn(&sm_arn)
        .name("o-1")
        .input(r#"{"order":1}"#)
        .send()
        .await
        .unwrap();
    let ex_arn = started.execution_arn().to_string();
    assert_eq!(
        ex_arn,
        "arn:aws:states:us-east-1:123456789012:execution:orders:o-1"
    );
    let d = describe(&c, &ex_arn).await;
    assert_eq!(d.status(), &ExecutionStatus::Succeeded);
    assert_eq!(d.input(), Some(r#"{"order":1}"#));
    assert_eq!(d.output(), Some("{}"));
    assert!(d.stop_date().is_some());
    let l = c
        .list_executions()
        .state_machine_arn(&sm_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(l.executions().len(), 1);
    assert_eq!(l.executions()[0].name(), "o-1");
    assert!(l.next_token().is_none());

    // GetExecutionHistory
    let hist = c
        .get_execution_history()
        .execution_arn(&ex_arn)
        .send()
        .await
        .unwrap();
    let events = hist.events();
    assert_eq!(
        events.first().unwrap().r#type().as_str(),
        "ExecutionStarted"
    );
    assert_eq!(
        events.last().unwrap().r#type().as_str(),
        "ExecutionSucceeded"
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id(), i as i64 + 1);
        assert_eq!(e.previous_event_id(), i as i64);
    }

    // DescribeMapRun
    let mr = h.state().map_run_arns()[0].clone();
    let dm = c.describe_map_run().map_run_arn(&mr).send().await.unwrap();
    assert_eq!(dm.status().as_str(), "FAILED");
    assert_eq!(dm.execution_arn(), h.execution_arn("etl", "parent"));
    assert_eq!(dm.execution_counts().unwrap().failed(), 1);
    assert_eq!(dm.execution_counts().unwrap().succeeded(), 1);

    // RedriveExecution
    let parent = h.execution_arn("etl", "parent");
    let r = c
        .redrive_execution()
        .execution_arn(&parent)
        .send()
        .await
        .unwrap();
    let d = describe(&c, &parent).await;
    assert_eq!(d.redrive_count(), Some(1));
    assert_eq!(d.redrive_date(), Some(r.redrive_date()));
    assert_eq!(h.stats().calls("RedriveExecution"), 1);
    assert_eq!(h.stats().access_key_ids.get("AKIDTEST").copied(), Some(11));
    h.shutdown().await;
}

#[tokio::test]
async fn list_executions_pagination_and_filters() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("backlog")
            .generate(
                GenerateSpec::new(250, "b-", [Outcome::fail("Lambda.ServiceException")])
                    .started_ago(secs(HOUR))
                    .every(secs(1)),
            )
            .execution(
                ExecutionSpec::succeeded("ok-1")
                    .started_ago(secs(30))
                    .stopped_ago(secs(20)),
            )
            .execution(
                ExecutionSpec::failed("redriven-1", "States.Timeout")
                    .redriven(2)
                    .started_ago(secs(2 * HOUR)),
            ),
    );
    let (h, c) = emu(sc).await;
    let sm = h.state_machine_arn("backlog");

    // default page size 100, newest first
    let p1 = c
        .list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap();
    assert_eq!(p1.executions().len(), 100);
    assert_eq!(p1.executions()[0].name(), "ok-1");
    assert_eq!(p1.executions()[1].name(), "b-00000");
    let starts: Vec<f64> = p1
        .executions()
        .iter()
        .map(|e| e.start_date().as_secs_f64())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // maxResults 0 = default
    let p0 = c
        .list_executions()
        .state_machine_arn(&sm)
        .max_results(0)
        .send()
        .await
        .unwrap();
    assert_eq!(p0.executions().len(), 100);

    // walk all pages
    let mut token = None;
    let mut seen = Vec::new();
    loop {
        let p = c
            .list_executions()
            .state_machine_arn(&sm)
            .max_results(120)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        seen.extend(p.executions().iter().map(|e| e.name().to_string()));
        token = p.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 252);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 252);

    // maxResults bounds
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .max_results(1001)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ValidationException"));
    assert!(e.into_service_error().is_validation_exception());

    // statusFilter / redriveFilter
    let s = c
        .list_executions()
        .state_machine_arn(&sm)
        .status_filter(ExecutionStatus::Succeeded)
        .send()
        .await
        .unwrap();
    assert_eq!(s.executions().len(), 1);
    let r = c
        .list_executions()
        .state_machine_arn(&sm)
        .redrive_filter(ExecutionRedriveFilter::Redriven)
        .send()
        .await
        .unwrap();
    assert_eq!(r.executions().len(), 1);
    assert_eq!(r.executions()[0].name(), "redriven-1");
    assert_eq!(r.executions()[0].redrive_count(), Some(2));
    assert!(r.executions()[0].redrive_date().is_some());
    let nr = c
        .list_executions()
        .state_machine_arn(&sm)
        .redrive_filter(ExecutionRedriveFilter::NotRedriven)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    assert_eq!(nr.executions().len(), 251);

    // list items never carry error/cause/redriveStatus: checked on the raw wire
    let (_, _, body) = raw_aws(
        &h,
        "ListExecutions",
        &format!(r#"{{"stateMachineArn":"{sm}","maxResults":5}}"#),
    )
    .await;
    assert!(!body.contains("\"error\""));
    assert!(!body.contains("redriveStatus"));

    // token bound to its arguments
    let t = p1.next_token().unwrap().to_string();
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .status_filter(ExecutionStatus::Failed)
        .next_token(&t)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidToken"));
    // garbage token
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidToken"));
    // still valid before 24 h, expired after
    h.advance_clock(secs(23 * HOUR));
    c.list_executions()
        .state_machine_arn(&sm)
        .next_token(&t)
        .send()
        .await
        .unwrap();
    h.advance_clock(secs(2 * HOUR));
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .next_token(&t)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidToken"));
    assert!(e.into_service_error().is_invalid_token());

    // exactly one of stateMachineArn / mapRunArn
    let e = c.list_executions().send().await.unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ValidationException"));
    // unknown state machine / malformed ARN
    let e = c
        .list_executions()
        .state_machine_arn(h.state_machine_arn("nope"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("StateMachineDoesNotExist"));
    let e = c
        .list_executions()
        .state_machine_arn("arn:aws:lambda:us-east-1:123456789012:function:x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidArn"));
    // PENDING_REDRIVE only with mapRunArn
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .status_filter(ExecutionStatus::PendingRedrive)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ValidationException"));

    // ListStateMachines pagination
    let more = Scenario::new()
        .with(StateMachineSpec::standard("a1"))
        .with(StateMachineSpec::standard("a2"))
        .with(StateMachineSpec::standard("a3"));
    h.seed(more).unwrap();
    let p = c.list_state_machines().max_results(2).send().await.unwrap();
    assert_eq!(p.state_machines().len(), 2);
    let p2 = c
        .list_state_machines()
        .max_results(2)
        .next_token(p.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(p2.state_machines().len(), 2);
    assert!(p2.next_token().is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn error_shapes_and_validation() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("sm")
            .execution(ExecutionSpec::failed("e1", "Lambda.ServiceException")),
    );
    let (h, c) = emu(sc).await;
    let e1 = h.execution_arn("sm", "e1");

    let e = c
        .describe_execution()
        .execution_arn(h.execution_arn("sm", "missing"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_does_not_exist());
    let e = c
        .redrive_execution()
        .execution_arn(h.execution_arn("sm", "missing"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_does_not_exist());

    let e = c
        .redrive_execution()
        .execution_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    let se = e.into_service_error();
    assert!(se.is_invalid_arn());
    assert_eq!(
        se.message(),
        Some("Invalid Arn: 'Invalid ARN prefix: not-an-arn'")
    );
    let e = c
        .describe_execution()
        .execution_arn(h.state_machine_arn("sm"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_arn());

    // clientToken: 65 chars
    let long = "x".repeat(65);
    let e = c
        .redrive_execution()
        .execution_arn(&e1)
        .client_token(&long)
        .send()
        .await
        .unwrap_err();
    let se = e.into_service_error();
    assert!(se.is_validation_exception());
    assert_eq!(
        se.message(),
        Some(
            format!(
                "1 validation error detected: Value '{long}' at 'clientToken' failed to satisfy constraint: Member must have length less than or equal to 64"
            )
            .as_str()
        )
    );
    // 64 chars is fine
    c.redrive_execution()
        .execution_arn(&e1)
        .client_token("y".repeat(64))
        .send()
        .await
        .unwrap();
    // space → pattern violation
    let e = c
        .redrive_execution()
        .execution_arn(&e1)
        .client_token("has space")
        .send()
        .await
        .unwrap_err();
    let se = e.into_service_error();
    assert!(se.is_validation_exception());
    assert!(
        se.message()
            .unwrap()
            .contains("at 'clientToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [!-~]+")
    );
    // executionArn > 256 chars
    let e = c
        .describe_execution()
        .execution_arn(format!("{e1}{}", "z".repeat(300)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ValidationException"));

    // validation failures never reach the model as redrives
    let ledger = h.ledger();
    assert!(ledger.iter().filter(|l| l.outcome.is_redriven()).count() == 1);
    assert!(
        ledger
            .iter()
            .any(|l| matches!(l.outcome, LedgerOutcome::InvalidArn))
    );
    assert!(
        ledger
            .iter()
            .any(|l| matches!(l.outcome, LedgerOutcome::DoesNotExist))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn eligibility_rules_match_describe() {
    let launch_before = "2023-10-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap();
    let sc = Scenario::new()
        .with(
            StateMachineSpec::standard("rules")
                .execution(
                    ExecutionSpec::failed("fresh", "Lambda.ServiceException")
                        .started_ago(secs(10 * MIN)),
                )
                .execution(ExecutionSpec::succeeded("done"))
                .execution(ExecutionSpec::running("busy"))
                .execution(
                    ExecutionSpec::failed("stale", "Lambda.ServiceException")
                        .started_ago(secs(15 * DAY + HOUR))
                        .stopped_ago(secs(15 * DAY)),
                )
                .execution(
                    ExecutionSpec::failed("edge", "Lambda.ServiceException")
                        .started_ago(secs(14 * DAY))
                        .stopped_ago(secs(14 * DAY - MIN)),
                )
                .execution(
                    ExecutionSpec::failed("ancient", "States.Timeout")
                        .started_ago(secs(366 * DAY))
                        .stopped_ago(secs(DAY)),
                )
                .execution(
                    ExecutionSpec::failed("prelaunch", "States.Timeout")
                        .started_at(launch_before)
                        .stopped_ago(secs(DAY)),
                )
                .execution(
                    ExecutionSpec::failed("huge", "Lambda.ServiceException")
                        .started_ago(secs(3 * HOUR))
                        .history_events(24_999),
                )
                .execution(
                    ExecutionSpec::failed("almost-huge", "Lambda.ServiceException")
                        .started_ago(secs(3 * HOUR))
                        .history_events(24_998),
                ),
        )
        .with(
            StateMachineSpec::standard("going-away")
                .deleting()
                .execution(ExecutionSpec::failed("f", "Lambda.ServiceException")),
        );
    let (h, c) = emu(sc).await;
    let arn = |n: &str| h.execution_arn("rules", n);

    // fresh failure: REDRIVABLE, no reason, count 0
    let d = describe(&c, &arn("fresh")).await;
    assert_eq!(d.status(), &ExecutionStatus::Failed);
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );
    assert_eq!(d.redrive_status_reason(), None);
    assert_eq!(d.redrive_count(), Some(0));
    assert_eq!(d.error(), Some("Lambda.ServiceException"));
    assert!(d.cause().is_some());
    let d = describe(&c, &arn("edge")).await;
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );
    let d = describe(&c, &arn("almost-huge")).await;
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );

    let cases: Vec<(String, &str)> = vec![
        (arn("done"), reasons::SUCCEEDED),
        (arn("busy"), reasons::RUNNING),
        (arn("stale"), reasons::PERIOD),
        (arn("ancient"), reasons::MAX_TIME),
        (arn("prelaunch"), reasons::BEFORE_LAUNCH),
        (arn("huge"), reasons::HISTORY_LIMIT),
        (h.execution_arn("going-away", "f"), reasons::DELETING),
    ];
    for (a, reason) in &cases {
        let d = describe(&c, a).await;
        assert_eq!(
            d.redrive_status(),
            Some(&ExecutionRedriveStatus::NotRedrivable),
            "{a}"
        );
        assert_eq!(d.redrive_status_reason(), Some(*reason), "{a}");
        let e = c
            .redrive_execution()
            .execution_arn(a)
            .send()
            .await
            .unwrap_err();
        let se = e.into_service_error();
        assert!(se.is_execution_not_redrivable(), "{a}: {se:?}");
        assert_eq!(se.message(), Some(*reason));
    }
    // exact reason texts (api-facts §1.3)
    assert_eq!(
        reasons::SUCCEEDED,
        "Execution is SUCCEEDED and cannot be redriven"
    );
    assert_eq!(
        reasons::RUNNING,
        "Execution is RUNNING and cannot be redriven"
    );
    assert_eq!(reasons::PERIOD, "Execution redrivable period exceeded");

    // 14-day boundary is exact: two more minutes and "edge" is out
    h.advance_clock(secs(2 * MIN));
    let d = describe(&c, &arn("edge")).await;
    assert_eq!(d.redrive_status_reason(), Some(reasons::PERIOD));

    // the ledger saw every NotRedrivable
    let nr = h
        .ledger()
        .iter()
        .filter(|l| matches!(l.outcome, LedgerOutcome::NotRedrivable { .. }))
        .count();
    assert_eq!(nr, cases.len());
    h.shutdown().await;
}

#[tokio::test]
async fn idempotency_window() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("idem")
            .redrive_run_time(secs(HOUR))
            .execution(ExecutionSpec::failed("a", "Lambda.ServiceException"))
            .execution(ExecutionSpec::failed("b", "Lambda.ServiceException"))
            .execution(ExecutionSpec::failed("c", "Lambda.ServiceException")),
    );
    let (h, c) = emu(sc).await;
    let a = h.execution_arn("idem", "a");
    let b = h.execution_arn("idem", "b");

    let r1 = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("tok-1")
        .send()
        .await
        .unwrap();
    let events_after = describe_history_len(&c, &a).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // replay: same redriveDate, nothing changes, even though the execution is RUNNING
    let r1b = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r1.redrive_date(), r1b.redrive_date());
    let d = describe(&c, &a).await;
    assert_eq!(d.status(), &ExecutionStatus::Running);
    assert_eq!(d.redrive_count(), Some(1));
    assert_eq!(d.stop_date(), None);
    assert_eq!(d.error(), None);
    assert_eq!(describe_history_len(&c, &a).await, events_after);
    // tokens are case-sensitive: TOK-1 is a fresh request → RUNNING → not redrivable
    let e = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("TOK-1")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_not_redrivable());

    // same token on another execution is independent
    c.redrive_execution()
        .execution_arn(&b)
        .client_token("tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(describe(&c, &b).await.redrive_count(), Some(1));

    // 10 more successful tokens on `a` evict tok-1 (only the last 10 are kept)
    let mut dates = Vec::new();
    for i in 2..=11 {
        assert!(h.fail_execution(&a, "Lambda.ServiceException", "again"));
        let r = c
            .redrive_execution()
            .execution_arn(&a)
            .client_token(format!("tok-{i}"))
            .send()
            .await
            .unwrap();
        dates.push(*r.redrive_date());
    }
    assert_eq!(describe(&c, &a).await.redrive_count(), Some(11));
    // tok-1 evicted → fresh request → the execution is RUNNING → ExecutionNotRedrivable
    let e = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("tok-1")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_not_redrivable());
    // tok-2 still in the window → replay with its own original date
    let r2 = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("tok-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r2.redrive_date(), &dates[0]);

    // 15-minute expiry: tok-11 replays at 14 min, is a fresh request at 16 min
    h.advance_clock(secs(14 * MIN));
    c.redrive_execution()
        .execution_arn(&a)
        .client_token("tok-11")
        .send()
        .await
        .unwrap();
    h.advance_clock(secs(2 * MIN));
    let e = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("tok-11")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_not_redrivable());
    assert_eq!(describe(&c, &a).await.redrive_count(), Some(11));

    // no clientToken on the wire = a fresh request each time
    let cx = h.execution_arn("idem", "c");
    let body = format!(r#"{{"executionArn":"{cx}"}}"#);
    let (s1, _, _) = raw_aws(&h, "RedriveExecution", &body).await;
    let (s2, _, b2) = raw_aws(&h, "RedriveExecution", &body).await;
    assert_eq!(s1, 200);
    assert_eq!(s2, 400);
    assert!(b2.contains("ExecutionNotRedrivable"), "{b2}");

    // ledger: every call that reached the model, with outcome and count before
    let ledger = h.ledger();
    let replays: Vec<_> = ledger
        .iter()
        .filter(|l| matches!(l.outcome, LedgerOutcome::Replayed { .. }))
        .collect();
    assert_eq!(replays.len(), 3);
    assert_eq!(replays[0].client_token.as_deref(), Some("tok-1"));
    assert_eq!(replays[0].redrive_count_before, 1);
    let redriven = ledger.iter().filter(|l| l.outcome.is_redriven()).count();
    assert_eq!(redriven, 1 + 1 + 10 + 1);
    h.shutdown().await;
}

async fn describe_history_len(c: &Client, arn: &str) -> usize {
    c.get_execution_history()
        .execution_arn(arn)
        .max_results(1000)
        .send()
        .await
        .unwrap()
        .events()
        .len()
}

#[tokio::test]
async fn outcome_scripts_follow_redrives_and_clock() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("script").execution(
            ExecutionSpec::new("flaky")
                .outcomes([
                    Outcome::fail("Lambda.ServiceException"),
                    Outcome::fail("Lambda.TooManyRequestsException"),
                    Outcome::succeed(),
                ])
                .redrive_run_time(secs(30)),
        ),
    );
    let (h, c) = emu(sc).await;
    let a = h.execution_arn("script", "flaky");
    let sm = h.state_machine_arn("script");

    let r = c
        .redrive_execution()
        .execution_arn(&a)
        .send()
        .await
        .unwrap();
    let d = describe(&c, &a).await;
    assert_eq!(d.status(), &ExecutionStatus::Running);
    assert_eq!(d.stop_date(), None);
    assert_eq!(d.error(), None);
    assert_eq!(d.cause(), None);
    assert_eq!(d.redrive_date(), Some(r.redrive_date()));
    assert_eq!(d.redrive_status_reason(), Some(reasons::RUNNING));
    // listed as REDRIVEN
    let l = c
        .list_executions()
        .state_machine_arn(&sm)
        .redrive_filter(ExecutionRedriveFilter::Redriven)
        .send()
        .await
        .unwrap();
    assert_eq!(l.executions().len(), 1);
    assert_eq!(l.executions()[0].status(), &ExecutionStatus::Running);

    h.advance_clock(secs(31));
    let d = describe(&c, &a).await;
    assert_eq!(d.status(), &ExecutionStatus::Failed);
    assert_eq!(d.error(), Some("Lambda.TooManyRequestsException"));
    assert!(d.stop_date().unwrap().as_secs_f64() > r.redrive_date().as_secs_f64());
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );

    c.redrive_execution()
        .execution_arn(&a)
        .send()
        .await
        .unwrap();
    h.advance_clock(secs(31));
    let d = describe(&c, &a).await;
    assert_eq!(d.status(), &ExecutionStatus::Succeeded);
    assert_eq!(d.redrive_count(), Some(2));
    let e = c
        .redrive_execution()
        .execution_arn(&a)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_not_redrivable());

    // history: ExecutionRedriven events with redriveCount, ids continue the sequence
    let hist = c
        .get_execution_history()
        .execution_arn(&a)
        .send()
        .await
        .unwrap();
    let redriven: Vec<i32> = hist
        .events()
        .iter()
        .filter(|e| e.r#type().as_str() == "ExecutionRedriven")
        .map(|e| {
            e.execution_redriven_event_details()
                .unwrap()
                .redrive_count()
                .unwrap()
        })
        .collect();
    assert_eq!(redriven, vec![1, 2]);
    let types: Vec<&str> = hist.events().iter().map(|e| e.r#type().as_str()).collect();
    assert_eq!(types.iter().filter(|t| **t == "ExecutionFailed").count(), 2);
    assert_eq!(types.last(), Some(&"ExecutionSucceeded"));
    for (i, e) in hist.events().iter().enumerate() {
        assert_eq!(e.id(), i as i64 + 1);
    }
    let rev = c
        .get_execution_history()
        .execution_arn(&a)
        .reverse_order(true)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(rev.events()[0].id(), hist.events().len() as i64);
    assert!(rev.next_token().is_some());

    // redriveRunTime 0 resolves at the next request
    let sc =
        Scenario::new().with(StateMachineSpec::standard("zero").execution(
            ExecutionSpec::new("z").outcomes([Outcome::timed_out(), Outcome::succeed()]),
        ));
    h.seed(sc).unwrap();
    let z = h.execution_arn("zero", "z");
    assert_eq!(describe(&c, &z).await.status(), &ExecutionStatus::TimedOut);
    c.redrive_execution()
        .execution_arn(&z)
        .send()
        .await
        .unwrap();
    assert_eq!(describe(&c, &z).await.status(), &ExecutionStatus::Succeeded);
    h.shutdown().await;
}

#[tokio::test]
async fn large_history_pages_without_storing_events() {
    let sc =
        Scenario::new().with(StateMachineSpec::standard("big").execution(
            ExecutionSpec::failed("h", "Lambda.ServiceException").history_events(24_999),
        ));
    let (h, c) = emu(sc).await;
    let a = h.execution_arn("big", "h");
    let mut token = None;
    let mut n = 0i64;
    let mut last_type = String::new();
    loop {
        let p = c
            .get_execution_history()
            .execution_arn(&a)
            .max_results(1000)
            .include_execution_data(false)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for e in p.events() {
            n += 1;
            assert_eq!(e.id(), n);
            last_type = e.r#type().as_str().to_string();
        }
        token = p.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(n, 24_999);
    assert_eq!(last_type, "ExecutionFailed");
    h.shutdown().await;
}

#[tokio::test]
async fn execution_limit_exceeded() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("cap")
            .redrive_run_time(secs(HOUR))
            .execution(ExecutionSpec::running("r"))
            .execution(ExecutionSpec::failed("f", "Lambda.ServiceException")),
    );
    let cfg = EmulatorConfig {
        max_open_executions: 1,
        ..Default::default()
    };
    let (h, c) = emu_with(cfg, sc).await;
    let f = h.execution_arn("cap", "f");
    let e = c
        .redrive_execution()
        .execution_arn(&f)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_limit_exceeded());
    assert_eq!(describe(&c, &f).await.redrive_count(), Some(0));
    assert!(matches!(
        h.ledger().last().unwrap().outcome,
        LedgerOutcome::LimitExceeded
    ));
    // once the running one ends, the redrive goes through (and counts as open again)
    assert!(h.fail_execution(&h.execution_arn("cap", "r"), "X", "y"));
    c.redrive_execution()
        .execution_arn(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(h.stats().open_executions, 1);
    let e = c
        .start_execution()
        .state_machine_arn(h.state_machine_arn("cap"))
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_limit_exceeded());
    h.shutdown().await;
}

#[tokio::test]
async fn throttling_token_buckets() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("t")
            .execution(ExecutionSpec::failed("f1", "Lambda.ServiceException"))
            .execution(ExecutionSpec::failed("f2", "Lambda.ServiceException")),
    );
    // ListExecutions us-east-1 bucket 200 → 10 at scale 0.05 (refill 0.25/s)
    let cfg = EmulatorConfig {
        quota: QuotaPreset::UsEast1,
        quota_scale: 0.05,
        ..Default::default()
    };
    let (h, c) = emu_with(cfg, sc).await;
    let sm = h.state_machine_arn("t");
    for _ in 0..10 {
        c.list_executions()
            .state_machine_arn(&sm)
            .send()
            .await
            .unwrap();
    }
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ThrottlingException"));
    assert_eq!(
        e.as_service_error().unwrap().message(),
        Some("Rate exceeded")
    );
    // other APIs have their own bucket
    describe(&c, &h.execution_arn("t", "f1")).await;
    // refill on the emulated clock
    h.advance_clock(secs(60));
    c.list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap();
    let st = h.stats();
    assert_eq!(st.throttled("ListExecutions"), 1);
    assert_eq!(st.calls("ListExecutions"), 12);
    h.shutdown().await;

    // a throttled RedriveExecution performs nothing (bucket of 1 at scale 0.001)
    let sc = Scenario::new().with(
        StateMachineSpec::standard("t")
            .execution(ExecutionSpec::failed("f1", "Lambda.ServiceException"))
            .execution(ExecutionSpec::failed("f2", "Lambda.ServiceException")),
    );
    let cfg = EmulatorConfig {
        quota: QuotaPreset::OtherRegions,
        quota_scale: 0.001,
        ..Default::default()
    };
    let (h, c) = emu_with(cfg, sc).await;
    let f1 = h.execution_arn("t", "f1");
    let f2 = h.execution_arn("t", "f2");
    c.redrive_execution()
        .execution_arn(&f1)
        .send()
        .await
        .unwrap();
    let e = c
        .redrive_execution()
        .execution_arn(&f2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ThrottlingException"));
    assert_eq!(h.execution(&f2).unwrap().redrive_count, 0);
    let last = h.ledger().last().cloned().unwrap();
    assert_eq!(last.outcome, LedgerOutcome::Throttled);
    assert!(!last.outcome.reached_model());
    assert_eq!(last.execution_arn, f2);
    h.advance_clock(secs(HOUR));
    c.redrive_execution()
        .execution_arn(&f2)
        .send()
        .await
        .unwrap();
    h.shutdown().await;
}

#[tokio::test]
async fn fault_injection() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("faulty")
            .execution(ExecutionSpec::failed("f", "Lambda.ServiceException")),
    );
    let (h, c) = emu(sc).await;
    let sm = h.state_machine_arn("faulty");
    let f = h.execution_arn("faulty", "f");

    // every call a 5xx
    h.set_faults(FaultConfig {
        server_error_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..6 {
        let e = c
            .list_executions()
            .state_machine_arn(&sm)
            .send()
            .await
            .unwrap_err();
        let raw = e.raw_response().expect("has a response");
        assert!(raw.status().is_server_error(), "{:?}", raw.status());
    }
    let e = c
        .redrive_execution()
        .execution_arn(&f)
        .send()
        .await
        .unwrap_err();
    assert!(e.raw_response().unwrap().status().is_server_error());
    assert_eq!(h.execution(&f).unwrap().redrive_count, 0);
    assert!(matches!(
        h.ledger().last().unwrap().outcome,
        LedgerOutcome::Faulted { .. }
    ));

    // malformed bodies: SDK error, no panic
    h.set_faults(FaultConfig {
        malformed_rate: 1.0,
        ..Default::default()
    });
    for _ in 0..8 {
        let r = c.list_executions().state_machine_arn(&sm).send().await;
        assert!(r.is_err());
    }
    // dropped connections
    h.set_faults(FaultConfig {
        drop_rate: 1.0,
        ..Default::default()
    });
    let r = c.describe_execution().execution_arn(&f).send().await;
    assert!(r.is_err());
    assert!(r.unwrap_err().raw_response().is_none());

    // restricted to one API (with latency)
    h.set_faults(FaultConfig {
        server_error_rate: 1.0,
        latency: Some(Duration::from_millis(20)),
        latency_rate: 1.0,
        only_apis: vec!["RedriveExecution".into()],
        ..Default::default()
    });
    c.list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap();
    assert!(
        c.redrive_execution()
            .execution_arn(&f)
            .send()
            .await
            .is_err()
    );

    h.set_faults(FaultConfig::default());
    c.redrive_execution()
        .execution_arn(&f)
        .send()
        .await
        .unwrap();
    let st = h.stats();
    assert!(st.faults_injected.get("server-error").copied().unwrap_or(0) >= 8);
    assert!(
        st.faults_injected
            .get("malformed-html")
            .copied()
            .unwrap_or(0)
            + st.faults_injected
                .get("malformed-truncated")
                .copied()
                .unwrap_or(0)
            == 8
    );
    assert_eq!(st.faults_injected.get("drop").copied(), Some(1));
    assert_eq!(st.faults_injected.get("latency").copied(), Some(1));
    h.shutdown().await;
}

#[tokio::test]
async fn access_denied_per_state_machine() {
    let sc = Scenario::new()
        .with(
            StateMachineSpec::standard("secret")
                .execution(ExecutionSpec::failed("s1", "Lambda.ServiceException")),
        )
        .with(
            StateMachineSpec::standard("open")
                .execution(ExecutionSpec::failed("o1", "Lambda.ServiceException")),
        );
    let (h, c) = emu(sc).await;
    let secret = h.state_machine_arn("secret");
    h.set_faults(FaultConfig {
        access_denied_state_machines: vec![secret.clone()],
        ..Default::default()
    });
    let s1 = h.execution_arn("secret", "s1");
    let e = c
        .list_executions()
        .state_machine_arn(&secret)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    assert!(
        e.as_service_error()
            .unwrap()
            .message()
            .unwrap()
            .contains("is not authorized to perform: states:ListExecutions")
    );
    let e = c
        .describe_execution()
        .execution_arn(&s1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    let e = c
        .redrive_execution()
        .execution_arn(&s1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    let e = c
        .describe_state_machine()
        .state_machine_arn(&secret)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    let e = c
        .list_tags_for_resource()
        .resource_arn(&secret)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    // others unaffected, ListStateMachines still lists it
    c.redrive_execution()
        .execution_arn(h.execution_arn("open", "o1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.list_state_machines()
            .send()
            .await
            .unwrap()
            .state_machines()
            .len(),
        2
    );
    assert_eq!(h.execution(&s1).unwrap().redrive_count, 0);
    assert!(
        h.ledger()
            .iter()
            .any(|l| l.outcome == LedgerOutcome::AccessDenied)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn express_state_machines() {
    let sc = Scenario::new().with(StateMachineSpec::express("fast").tag("team", "x"));
    let (h, c) = emu(sc).await;
    let sm = h.state_machine_arn("fast");
    let e = c
        .list_executions()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_state_machine_type_not_supported());
    let d = c
        .describe_state_machine()
        .state_machine_arn(&sm)
        .send()
        .await
        .unwrap();
    assert_eq!(d.r#type().as_str(), "EXPRESS");
    let s = c
        .start_execution()
        .state_machine_arn(&sm)
        .name("e1")
        .send()
        .await
        .unwrap();
    assert!(
        s.execution_arn()
            .starts_with("arn:aws:states:us-east-1:123456789012:express:fast:e1:")
    );
    let e = c
        .describe_execution()
        .execution_arn(s.execution_arn())
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_does_not_exist());
    let e = c
        .redrive_execution()
        .execution_arn(s.execution_arn())
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_does_not_exist());
    let e = c
        .get_execution_history()
        .execution_arn(s.execution_arn())
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_does_not_exist());
    h.shutdown().await;
}

#[tokio::test]
async fn map_run_children() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("dm")
            .execution(
                ExecutionSpec::new("parent")
                    .outcomes([
                        Outcome::fail("States.ExceedToleratedFailureThreshold"),
                        Outcome::succeed(),
                    ])
                    .started_ago(secs(HOUR)),
            )
            .map_run(
                MapRunSpec::new("Items", "parent")
                    .child(
                        ExecutionSpec::new("c-fail")
                            .outcomes([
                                Outcome::fail("Lambda.ServiceException"),
                                Outcome::succeed(),
                            ])
                            .started_ago(secs(50 * MIN)),
                    )
                    .child(ExecutionSpec::succeeded("c-ok").started_ago(secs(49 * MIN))),
            ),
    );
    let (h, c) = emu(sc).await;
    let child = h.execution_arn("dm/Items", "c-fail");
    let mr = h.state().map_run_arns()[0].clone();
    assert!(mr.starts_with("arn:aws:states:us-east-1:123456789012:mapRun:dm/Items:"));

    let d = describe(&c, &child).await;
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::RedrivableByMapRun)
    );
    assert_eq!(d.map_run_arn(), Some(mr.as_str()));
    assert_eq!(
        d.state_machine_arn(),
        "arn:aws:states:us-east-1:123456789012:stateMachine:dm/Items"
    );
    let e = c
        .redrive_execution()
        .execution_arn(&child)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_not_redrivable());

    // listing by mapRunArn: children with mapRunArn + itemCount
    let l = c.list_executions().map_run_arn(&mr).send().await.unwrap();
    assert_eq!(l.executions().len(), 2);
    assert_eq!(l.executions()[0].name(), "c-ok");
    assert_eq!(l.executions()[0].map_run_arn(), Some(mr.as_str()));
    assert_eq!(l.executions()[0].item_count(), Some(1));
    let l = c
        .list_executions()
        .map_run_arn(&mr)
        .status_filter(ExecutionStatus::PendingRedrive)
        .send()
        .await
        .unwrap();
    assert!(l.executions().is_empty());
    // labelled ARN as stateMachineArn (emulator choice: lists the children)
    let l = c
        .list_executions()
        .state_machine_arn(h.state_machine_arn("dm/Items"))
        .send()
        .await
        .unwrap();
    assert_eq!(l.executions().len(), 2);
    // the parent's listing does not include children
    let l = c
        .list_executions()
        .state_machine_arn(h.state_machine_arn("dm"))
        .send()
        .await
        .unwrap();
    assert_eq!(l.executions().len(), 1);
    // unknown map run
    let e = c
        .list_executions()
        .map_run_arn(format!("{mr}x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ResourceNotFound"));

    // redrive the parent: Map Run redriven, failed child redriven
    c.redrive_execution()
        .execution_arn(h.execution_arn("dm", "parent"))
        .send()
        .await
        .unwrap();
    let dm = c.describe_map_run().map_run_arn(&mr).send().await.unwrap();
    assert_eq!(dm.redrive_count(), Some(1));
    assert!(dm.redrive_date().is_some());
    let d = describe(&c, &child).await;
    assert_eq!(d.redrive_count(), Some(1));
    assert_eq!(d.status(), &ExecutionStatus::Succeeded); // redriveRunTime 0
    let hist = c
        .get_execution_history()
        .execution_arn(h.execution_arn("dm", "parent"))
        .send()
        .await
        .unwrap();
    assert!(
        hist.events()
            .iter()
            .any(|e| e.r#type().as_str() == "MapRunRedriven")
    );
    h.shutdown().await;
}

// ------------------------------------------------------------------------------------------
// Raw HTTP

async fn raw_http(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDRAW/20260101/us-east-1/states/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";

async fn raw_aws(h: &EmulatorHandle, op: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let target = format!("AWSStepFunctions.{op}");
    raw_http(
        &h.endpoint,
        "POST",
        "/",
        &[
            ("X-Amz-Target", target.as_str()),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("Authorization", AUTH),
        ],
        body,
    )
    .await
}

fn header<'a>(hs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn raw_wire_format() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("w")
            .execution(ExecutionSpec::failed("e", "Lambda.ServiceException")),
    );
    let (h, _c) = emu(sc).await;
    let arn = h.execution_arn("w", "e");

    let (st, hs, body) = raw_aws(
        &h,
        "DescribeExecution",
        &format!(r#"{{"executionArn":"{arn}"}}"#),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/x-amz-json-1.0")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["startDate"].is_f64(), "epoch seconds float: {body}");
    assert!(v["startDate"].as_f64().unwrap() > 1.7e9);
    assert_eq!(v["redriveStatus"], "REDRIVABLE");
    assert!(v.get("redriveStatusReason").is_none());

    let (st, hs, body) = raw_aws(
        &h,
        "DescribeExecution",
        r#"{"executionArn":"arn:aws:states:us-east-1:123456789012:execution:w:nope"}"#,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/x-amz-json-1.0")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["__type"],
        "com.amazonaws.swf.service.v2.model#ExecutionDoesNotExist"
    );
    assert!(v["message"].is_string());

    let (st, _, body) = raw_aws(
        &h,
        "RedriveExecution",
        &format!(r#"{{"executionArn":"{arn}","clientToken":"a b"}}"#),
    )
    .await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "com.amazon.coral.validate#ValidationException");
    assert_eq!(
        v["message"],
        "1 validation error detected: Value 'a b' at 'clientToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [!-~]+"
    );

    let (st, _, body) = raw_aws(&h, "ListExecutions", "{not json").await;
    assert_eq!(st, 400);
    assert!(body.contains("SerializationException"));
    let (st, _, body) = raw_aws(&h, "DescribeExecution", r#"{"executionArn": 5}"#).await;
    assert_eq!(st, 400);
    assert!(body.contains("SerializationException"));
    let (st, _, body) = raw_aws(&h, "DeleteEverything", "{}").await;
    assert_eq!(st, 400);
    assert!(body.contains("UnknownOperationException"));

    // unsigned request
    let (st, _, body) = raw_http(
        &h.endpoint,
        "POST",
        "/",
        &[("X-Amz-Target", "AWSStepFunctions.ListStateMachines")],
        "{}",
    )
    .await;
    assert_eq!(st, 400);
    assert!(body.contains("MissingAuthenticationTokenException"));

    // throttling shape
    let cfg = EmulatorConfig {
        quota: QuotaPreset::UsEast1,
        quota_scale: 0.001,
        ..Default::default()
    };
    let (h2, _) = emu_with(cfg, Scenario::new()).await;
    raw_aws(&h2, "ListStateMachines", "{}").await;
    let (st, _, body) = raw_aws(&h2, "ListStateMachines", "{}").await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["__type"],
        "com.amazon.coral.availability#ThrottlingException"
    );
    assert_eq!(v["message"], "Rate exceeded");

    let stats = h.stats();
    assert_eq!(stats.missing_auth, 1);
    assert!(stats.access_key_ids.contains_key("AKIDRAW"));
    h.shutdown().await;
    h2.shutdown().await;
}

/// Every answer's `Date` header is the emulated clock (what clients estimate skew from), and
/// the clock moves back as well as forward.
#[tokio::test]
async fn the_date_header_is_the_emulated_clock_ahead_or_behind() {
    let (h, _c) = emu(Scenario::new()).await;
    let date_of = |headers: &[(String, String)]| -> jiff::Timestamp {
        let d = &headers
            .iter()
            .find(|(k, _)| k == "date")
            .expect("a Date header")
            .1;
        jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(d)
            .expect("an HTTP-date")
    };
    let skew = |date: jiff::Timestamp| date.duration_since(jiff::Timestamp::now()).as_secs_f64();
    let (st, headers, _) = raw_http(&h.endpoint, "GET", "/_emulator/health", &[], "").await;
    assert_eq!(st, 200);
    assert!(skew(date_of(&headers)).abs() < 2.0, "{headers:?}");

    h.advance_clock(Duration::from_secs(180));
    let (_, headers, _) = raw_http(
        &h.endpoint,
        "POST",
        "/",
        &[
            ("x-amz-target", "AWSStepFunctions.ListStateMachines"),
            ("content-type", "application/x-amz-json-1.0"),
            ("authorization", AUTH),
        ],
        "{}",
    )
    .await;
    assert!((skew(date_of(&headers)) - 180.0).abs() < 2.0, "{headers:?}");

    let (st, _, body) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/clock/advance",
        &[],
        r#"{"seconds": -360}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        (v["offsetSeconds"].as_f64().unwrap() + 180.0).abs() < 0.01,
        "{body}"
    );
    let (_, headers, _) = raw_http(&h.endpoint, "GET", "/_emulator/clock", &[], "").await;
    assert!((skew(date_of(&headers)) + 180.0).abs() < 2.0, "{headers:?}");
    h.rewind_clock(Duration::from_secs(60));
    assert!((h.now().duration_since(jiff::Timestamp::now()).as_secs_f64() + 240.0).abs() < 1.0);
    h.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints() {
    let sc = Scenario::new()
        .with(StateMachineSpec::standard("adm").execution(ExecutionSpec::running("r")));
    let (h, _c) = emu(sc).await;
    let r = h.execution_arn("adm", "r");

    let (st, _, body) = raw_http(&h.endpoint, "GET", "/_emulator/health", &[], "").await;
    assert_eq!(st, 200);
    assert!(body.contains("\"ok\""));

    let before = h.now();
    let (st, _, _) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/clock/advance",
        &[],
        r#"{"seconds": 3600}"#,
    )
    .await;
    assert_eq!(st, 200);
    assert!(h.now().duration_since(before).as_secs() >= 3600);

    let (st, _, _) = raw_http(
        &h.endpoint,
        "PUT",
        "/_emulator/faults",
        &[],
        r#"{"serverErrorRate": 0.5, "latency": "10ms", "onlyApis": ["ListExecutions"]}"#,
    )
    .await;
    assert_eq!(st, 200);
    let (_, _, body) = raw_http(&h.endpoint, "GET", "/_emulator/faults", &[], "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["serverErrorRate"], 0.5);
    assert_eq!(v["onlyApis"][0], "ListExecutions");
    let (st, _, _) = raw_http(&h.endpoint, "PUT", "/_emulator/faults", &[], "{}").await;
    assert_eq!(st, 200);

    let (st, _, body) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/scenario",
        &[],
        r#"{"stateMachines":[{"name":"adm2","executions":[{"name":"x","outcomes":["fail(Lambda.ServiceException)"]}]}]}"#,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(h.execution(&h.execution_arn("adm2", "x")).is_some());
    let (st, _, _) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/scenario",
        &[],
        "stateMachines: 5",
    )
    .await;
    assert_eq!(st, 400);

    let (st, _, body) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/executions/fail",
        &[],
        &format!(r#"{{"arn":"{r}","error":"States.Timeout","cause":"forced"}}"#),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let snap = h.execution(&r).unwrap();
    assert_eq!(snap.error.as_deref(), Some("States.Timeout"));
    let (st, _, _) = raw_http(
        &h.endpoint,
        "POST",
        "/_emulator/executions/fail",
        &[],
        &format!(r#"{{"arn":"{r}","error":"X","cause":"y"}}"#),
    )
    .await;
    assert_eq!(st, 409);

    let (st, _, body) = raw_http(
        &h.endpoint,
        "GET",
        &format!("/_emulator/executions?arn={r}"),
        &[],
        "",
    )
    .await;
    assert_eq!(st, 200);
    assert!(body.contains("\"FAILED\""));

    raw_aws(
        &h,
        "RedriveExecution",
        &format!(r#"{{"executionArn":"{r}","clientToken":"t1"}}"#),
    )
    .await;
    let (st, _, body) = raw_http(&h.endpoint, "GET", "/_emulator/ledger", &[], "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["executionArn"], r.as_str());
    assert_eq!(v[0]["clientToken"], "t1");
    assert_eq!(v[0]["outcome"]["kind"], "redriven");
    assert_eq!(v[0]["accessKeyId"], "AKIDRAW");
    let (st, _, body) = raw_http(&h.endpoint, "GET", "/_emulator/stats", &[], "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["byApi"]["RedriveExecution"]["ok"], 1);
    h.shutdown().await;
}

#[tokio::test]
async fn binary_starts_and_prints_endpoint() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_redrive-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            "demo",
            "--quota",
            "us-east-1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("prints in time")
        .unwrap()
        .unwrap();
    let endpoint = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"));
    let (st, _, _) = raw_http(&endpoint, "GET", "/_emulator/health", &[], "").await;
    assert_eq!(st, 200);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn demo_scenario_is_realistic_and_deterministic() {
    let a = Scenario::demo();
    assert_eq!(a, Scenario::demo());
    let (h, c) = emu(a).await;
    let sms = c.list_state_machines().send().await.unwrap();
    assert_eq!(sms.state_machines().len(), 5);
    let orders = h.state_machine_arn("orders-processing");
    let tags = c
        .list_tags_for_resource()
        .resource_arn(&orders)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some("team") && t.value() == Some("payments"))
    );
    let failed = c
        .list_executions()
        .state_machine_arn(&orders)
        .status_filter(ExecutionStatus::Failed)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    assert!(failed.executions().len() > 20);
    let huge = describe(
        &c,
        &h.execution_arn("orders-processing", "orders-huge-history"),
    )
    .await;
    assert_eq!(huge.redrive_status_reason(), Some(reasons::HISTORY_LIMIT));
    assert!(!h.state().map_run_arns().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn yaml_scenario_format() {
    let yaml = r#"
defaults:
  redriveRunTime: 2s
  startedAgo: 2h
stateMachines:
  - name: orders
    tags: {team: payments}
    executions:
      - name: o-1
        outcomes: ["fail(Lambda.ServiceException)", "fail(Lambda.ServiceException)", succeed]
        stoppedAgo: 15d
        startedAgo: 15d 1h
      - name: o-2
        outcomes:
          - {status: TIMED_OUT}
          - succeed
        redriveCount: 1
    generate:
      - count: 2000
        namePrefix: bulk-
        every: 2s
        outcomes: ["fail:States.Timeout"]
  - name: fast
    type: EXPRESS
"#;
    let sc = Scenario::from_yaml(yaml).unwrap();
    assert_eq!(sc.execution_count(), 2002);
    let (h, c) = emu(sc).await;
    let d = describe(&c, &h.execution_arn("orders", "o-1")).await;
    assert_eq!(d.redrive_status_reason(), Some(reasons::PERIOD));
    let d = describe(&c, &h.execution_arn("orders", "o-2")).await;
    assert_eq!(d.status(), &ExecutionStatus::TimedOut);
    assert_eq!(d.error(), Some("States.Timeout"));
    assert_eq!(d.redrive_count(), Some(1));
    let d = describe(&c, &h.execution_arn("orders", "bulk-01999")).await;
    assert_eq!(d.error(), Some("States.Timeout"));
    assert!(Scenario::from_yaml("stateMachines: [{name: 'bad name'}]").is_ok());
    assert!(
        emulator::start(
            EmulatorConfig::default(),
            Scenario::from_yaml("stateMachines: [{name: 'bad name'}]").unwrap()
        )
        .await
        .is_err()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn hundred_thousand_backlog() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("bench")
            .generate(GenerateSpec::new(
                100_000,
                "x-",
                [Outcome::fail("Lambda.ServiceException")],
            ))
            .execution(ExecutionSpec::succeeded("needle").started_ago(secs(10 * DAY))),
    );
    let (h, c) = emu(sc).await;
    let sm = h.state_machine_arn("bench");
    let p = c
        .list_executions()
        .state_machine_arn(&sm)
        .status_filter(ExecutionStatus::Succeeded)
        .send()
        .await
        .unwrap();
    assert_eq!(p.executions().len(), 1);
    let p = c
        .list_executions()
        .state_machine_arn(&sm)
        .max_results(1000)
        .send()
        .await
        .unwrap();
    assert_eq!(p.executions().len(), 1000);
    assert_eq!(h.stats().executions, 100_001);
    h.shutdown().await;
}

#[test]
fn handle_request_never_panics_on_garbage() {
    let state =
        emulator::EmulatorState::new(&EmulatorConfig::default(), &Scenario::demo()).unwrap();
    let arn = "arn:aws:states:us-east-1:123456789012:execution:orders-processing:orders-0001";
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        vec![0xff, 0xfe, 0x00],
        br#"{"maxResults": 1e400}"#.to_vec(),
        br#"{"maxResults": -99999999999999999999}"#.to_vec(),
        br#"{"maxResults": 18446744073709551615}"#.to_vec(),
        br#"{"stateMachineArn": "arn:aws:states:::stateMachine:"}"#.to_vec(),
        br#"{"executionArn": "arn:aws:states:us-east-1:123456789012:execution:a:b:c:d"}"#.to_vec(),
        br#"{"executionArn": "arn:aws:states:us-east-1:123456789012:mapRun:a/b:c"}"#.to_vec(),
        br#"{"executionArn": "\u0000\u0001"}"#.to_vec(),
        format!(r#"{{"executionArn":"{arn}","clientToken":"é"}}"#).into_bytes(),
        format!(r#"{{"executionArn":"{arn}","nextToken":"ffff","maxResults":5}}"#).into_bytes(),
        br#"{"nextToken":"00","stateMachineArn":"arn:aws:states:us-east-1:123456789012:stateMachine:orders-processing"}"#.to_vec(),
        br#"{"mapRunArn":"arn:aws:states:us-east-1:123456789012:mapRun:x/y:z","statusFilter":"PENDING_REDRIVE"}"#.to_vec(),
        br#"{"name":"x","definition":"{}","roleArn":"r","tags":[1,2]}"#.to_vec(),
    ];
    for op in emulator::OPERATIONS.iter().chain(["Nope", ""].iter()) {
        let target = format!("AWSStepFunctions.{op}");
        for b in &bodies {
            let (status, body) = emulator::handle_request(&state, &target, b);
            assert!(status == 200 || status == 400, "{op} {status}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if status == 400 {
                assert!(v["__type"].is_string());
            }
        }
    }
}

#[tokio::test]
async fn configurable_replay_and_token_scope() {
    use redrive_emulator::{ReplayMode, TokenScope};
    let sc = || {
        Scenario::new().with(
            StateMachineSpec::standard("cfg")
                .execution(ExecutionSpec::failed("a", "Lambda.ServiceException"))
                .execution(ExecutionSpec::failed("b", "Lambda.ServiceException")),
        )
    };
    // LatestRedriveDate: a replay reports the execution's current redriveDate
    let cfg = EmulatorConfig {
        replay: ReplayMode::LatestRedriveDate,
        ..Default::default()
    };
    let (h, c) = emu_with(cfg, sc()).await;
    let a = h.execution_arn("cfg", "a");
    let r1 = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("t1")
        .send()
        .await
        .unwrap();
    // redriveRunTime 0: the next request settles it to FAILED again; redrive once more
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(describe(&c, &a).await.status(), &ExecutionStatus::Failed);
    let r2 = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("t2")
        .send()
        .await
        .unwrap();
    assert_ne!(r1.redrive_date(), r2.redrive_date());
    let replay = c
        .redrive_execution()
        .execution_arn(&a)
        .client_token("t1")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.redrive_date(), r2.redrive_date());
    assert_eq!(describe(&c, &a).await.redrive_count(), Some(2));
    h.shutdown().await;

    // RejectCrossExecution: a live token reused on another execution is rejected
    let cfg = EmulatorConfig {
        token_scope: TokenScope::RejectCrossExecution,
        ..Default::default()
    };
    let (h, c) = emu_with(cfg, sc()).await;
    c.redrive_execution()
        .execution_arn(h.execution_arn("cfg", "a"))
        .client_token("shared")
        .send()
        .await
        .unwrap();
    let e = c
        .redrive_execution()
        .execution_arn(h.execution_arn("cfg", "b"))
        .client_token("shared")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_validation_exception());
    assert_eq!(
        h.execution(&h.execution_arn("cfg", "b"))
            .unwrap()
            .redrive_count,
        0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn start_execution_name_rules() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("s")
            .redrive_run_time(secs(HOUR))
            .start_outcomes([Outcome::fail("Lambda.ServiceException"), Outcome::succeed()]),
    );
    let (h, c) = emu(sc).await;
    let sm = h.state_machine_arn("s");
    let a = c
        .start_execution()
        .state_machine_arn(&sm)
        .name("n1")
        .input("{}")
        .send()
        .await
        .unwrap();
    // same name + same input while running: same response
    let b = c
        .start_execution()
        .state_machine_arn(&sm)
        .name("n1")
        .input("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(a.execution_arn(), b.execution_arn());
    assert_eq!(a.start_date(), b.start_date());
    let e = c
        .start_execution()
        .state_machine_arn(&sm)
        .name("n1")
        .input(r#"{"x":1}"#)
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_execution_already_exists());
    let e = c
        .start_execution()
        .state_machine_arn(&sm)
        .name("bad name")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_name());
    let e = c
        .start_execution()
        .state_machine_arn(&sm)
        .input("{not json")
        .send()
        .await
        .unwrap_err();
    assert!(e.into_service_error().is_invalid_execution_input());
    // the started execution follows startOutcomes: fails after the run time, then redrive → succeed
    h.advance_clock(secs(HOUR + 1));
    let d = describe(&c, a.execution_arn()).await;
    assert_eq!(d.status(), &ExecutionStatus::Failed);
    assert_eq!(
        d.redrive_status(),
        Some(&ExecutionRedriveStatus::Redrivable)
    );
    c.redrive_execution()
        .execution_arn(a.execution_arn())
        .send()
        .await
        .unwrap();
    h.advance_clock(secs(HOUR + 1));
    assert_eq!(
        describe(&c, a.execution_arn()).await.status(),
        &ExecutionStatus::Succeeded
    );
    h.shutdown().await;
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, OnceLock};

    fn state() -> &'static Arc<emulator::EmulatorState> {
        static S: OnceLock<Arc<emulator::EmulatorState>> = OnceLock::new();
        S.get_or_init(|| {
            emulator::EmulatorState::new(&EmulatorConfig::default(), &Scenario::demo()).unwrap()
        })
    }

    const FIELDS: &[&str] = &[
        "executionArn",
        "stateMachineArn",
        "mapRunArn",
        "clientToken",
        "nextToken",
        "maxResults",
        "statusFilter",
        "redriveFilter",
        "reverseOrder",
        "includedData",
        "resourceArn",
        "name",
        "input",
        "definition",
        "roleArn",
        "type",
        "tags",
    ];

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            ".{0,80}".prop_map(serde_json::Value::from),
            "arn:aws:states:us-east-1:123456789012:(execution|stateMachine|mapRun|express):[a-z/:-]{0,40}"
                .prop_map(serde_json::Value::from),
            Just(serde_json::json!([{"key": 1}])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn handle_request_is_total(
            op in 0usize..12,
            raw in proptest::collection::vec(any::<u8>(), 0..64),
            fields in proptest::collection::vec((0usize..17, json_value()), 0..6),
        ) {
            let target = match emulator::OPERATIONS.get(op) {
                Some(o) => format!("AWSStepFunctions.{o}"),
                None => "AWSStepFunctions.Bogus".to_string(),
            };
            let (s, b) = emulator::handle_request(state(), &target, &raw);
            prop_assert!(s == 200 || s == 400);
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&b).is_ok());
            let mut m = serde_json::Map::new();
            for (k, v) in fields {
                m.insert(FIELDS[k].to_string(), v);
            }
            let body = serde_json::to_vec(&serde_json::Value::Object(m)).unwrap();
            let (s, b) = emulator::handle_request(state(), &target, &body);
            prop_assert!(s == 200 || s == 400);
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            if s == 400 {
                prop_assert!(v["__type"].is_string());
            }
        }
    }
}

/// Every event of an execution's history, oldest first, paged by 1,000.
async fn full_history(
    c: &Client,
    arn: &str,
    reverse: bool,
) -> Vec<aws_sdk_sfn::types::HistoryEvent> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let p = c
            .get_execution_history()
            .execution_arn(arn)
            .reverse_order(reverse)
            .max_results(1000)
            .include_execution_data(false)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        out.extend(p.events().iter().cloned());
        token = p.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

/// The newest event, as the operator asks for it (api-facts §5.1).
async fn last_event(c: &Client, arn: &str) -> aws_sdk_sfn::types::HistoryEvent {
    let p = c
        .get_execution_history()
        .execution_arn(arn)
        .reverse_order(true)
        .max_results(1)
        .include_execution_data(false)
        .send()
        .await
        .unwrap();
    assert_eq!(p.events().len(), 1, "{arn}: one event");
    assert!(p.next_token().is_some(), "{arn}: older events follow");
    p.events()[0].clone()
}

/// api-facts §1.6 / §5.1: in reverse order the history starts with the stop event, whose
/// details carry the error and cause DescribeExecution reports, and whose id is the history
/// length (ids run 1..N); reverse pages are the forward pages backwards. After a redrive, the
/// newest event is the latest attempt's.
#[tokio::test]
async fn reverse_order_history_starts_with_the_stop_event_and_its_id_is_the_length() {
    let sc = Scenario::new().with(
        StateMachineSpec::standard("rev")
            .execution(ExecutionSpec::new("failed").outcomes([Outcome::fail_with(
                "Lambda.ServiceException",
                "the function crashed",
            )]))
            .execution(ExecutionSpec::new("timed-out").outcomes([Outcome::timed_out()]))
            .execution(ExecutionSpec::new("aborted").outcomes([Outcome::aborted()]))
            .execution(ExecutionSpec::succeeded("ok"))
            .execution(ExecutionSpec::failed("long", "States.TaskFailed").history_events(24_999))
            .execution(
                ExecutionSpec::new("again")
                    .outcomes([
                        Outcome::fail_with("States.Timeout", "first attempt"),
                        Outcome::fail_with("Lambda.Unknown", "second attempt"),
                    ])
                    .redrive_run_time(secs(30)),
            ),
    );
    let (h, c) = emu(sc).await;
    let cases = [
        ("failed", "ExecutionFailed", ExecutionStatus::Failed),
        ("timed-out", "ExecutionTimedOut", ExecutionStatus::TimedOut),
        ("aborted", "ExecutionAborted", ExecutionStatus::Aborted),
        ("ok", "ExecutionSucceeded", ExecutionStatus::Succeeded),
        ("long", "ExecutionFailed", ExecutionStatus::Failed),
    ];
    for (name, ty, status) in cases {
        let arn = h.execution_arn("rev", name);
        let forward = full_history(&c, &arn, false).await;
        let n = forward.len() as i64;
        assert!(n >= 2, "{name}: a history");
        for (i, e) in forward.iter().enumerate() {
            assert_eq!(e.id(), i as i64 + 1, "{name}: ids run 1..N");
        }
        let backward = full_history(&c, &arn, true).await;
        let ids: Vec<i64> = backward.iter().map(|e| e.id()).collect();
        let expected: Vec<i64> = (1..=n).rev().collect();
        assert_eq!(ids, expected, "{name}: reverse order is N..1");
        assert_eq!(
            backward
                .iter()
                .map(|e| e.r#type().as_str())
                .collect::<Vec<_>>(),
            forward
                .iter()
                .rev()
                .map(|e| e.r#type().as_str())
                .collect::<Vec<_>>(),
            "{name}: the same events backwards"
        );

        let last = last_event(&c, &arn).await;
        assert_eq!(last.id(), n, "{name}: the newest id is the history length");
        assert_eq!(last.r#type().as_str(), ty, "{name}");
        let d = describe(&c, &arn).await;
        assert_eq!(d.status(), &status, "{name}");
        let (error, cause) = match ty {
            "ExecutionFailed" => {
                let x = last.execution_failed_event_details().expect("details");
                (x.error(), x.cause())
            }
            "ExecutionTimedOut" => {
                let x = last.execution_timed_out_event_details().expect("details");
                (x.error(), x.cause())
            }
            "ExecutionAborted" => {
                let x = last.execution_aborted_event_details().expect("details");
                (x.error(), x.cause())
            }
            _ => (None, None),
        };
        assert_eq!(
            error,
            d.error(),
            "{name}: the same error as DescribeExecution"
        );
        assert_eq!(
            cause,
            d.cause(),
            "{name}: the same cause as DescribeExecution"
        );
    }
    let failed = last_event(&c, &h.execution_arn("rev", "failed")).await;
    let details = failed.execution_failed_event_details().unwrap();
    assert_eq!(details.error(), Some("Lambda.ServiceException"));
    assert_eq!(details.cause(), Some("the function crashed"));
    let timed_out = last_event(&c, &h.execution_arn("rev", "timed-out")).await;
    assert_eq!(
        timed_out
            .execution_timed_out_event_details()
            .unwrap()
            .error(),
        Some("States.Timeout")
    );
    // The 25,000-event rule, read from the id alone.
    let long = h.execution_arn("rev", "long");
    assert_eq!(last_event(&c, &long).await.id(), 24_999);
    assert_eq!(
        describe(&c, &long).await.redrive_status_reason(),
        Some(reasons::HISTORY_LIMIT)
    );

    // Reverse pages: 3 at a time, continuing below the last id seen.
    let failed_arn = h.execution_arn("rev", "failed");
    let n = full_history(&c, &failed_arn, false).await.len() as i64;
    let p1 = c
        .get_execution_history()
        .execution_arn(&failed_arn)
        .reverse_order(true)
        .max_results(3)
        .send()
        .await
        .unwrap();
    let p2 = c
        .get_execution_history()
        .execution_arn(&failed_arn)
        .reverse_order(true)
        .max_results(3)
        .set_next_token(p1.next_token().map(str::to_string))
        .send()
        .await
        .unwrap();
    let ids: Vec<i64> = p1
        .events()
        .iter()
        .chain(p2.events())
        .map(|e| e.id())
        .collect();
    assert_eq!(ids, (n - 5..=n).rev().collect::<Vec<_>>());

    // Redriven and failed again: the newest event is the second failure, ids keep counting.
    let again = h.execution_arn("rev", "again");
    let before = last_event(&c, &again).await;
    assert_eq!(
        before.execution_failed_event_details().unwrap().cause(),
        Some("first attempt")
    );
    c.redrive_execution()
        .execution_arn(&again)
        .send()
        .await
        .unwrap();
    let running = last_event(&c, &again).await;
    assert_ne!(
        running.r#type().as_str(),
        "ExecutionFailed",
        "running again"
    );
    assert!(running.id() > before.id());
    h.advance_clock(secs(31));
    let after = last_event(&c, &again).await;
    assert_eq!(after.r#type().as_str(), "ExecutionFailed");
    let details = after.execution_failed_event_details().unwrap();
    assert_eq!(details.error(), Some("Lambda.Unknown"));
    assert_eq!(details.cause(), Some("second attempt"));
    assert_eq!(
        after.id(),
        full_history(&c, &again, false).await.len() as i64
    );
    let d = describe(&c, &again).await;
    assert_eq!((d.error(), d.cause()), (details.error(), details.cause()));
    assert!(
        full_history(&c, &again, false)
            .await
            .iter()
            .any(|e| e.r#type().as_str() == "ExecutionRedriven"),
        "the redrive is in the history"
    );
    h.shutdown().await;
}
