//! Conformance tests of the CodePipeline emulator against api-facts §2 / §4.2 / §5.2, through
//! the real `aws-sdk-codepipeline` client (and raw HTTP for the wire format). Written from the
//! facts, not from the implementation: each test names the rule it checks.

use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::retry::RetryConfig;
use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::types::{
    ActionCategory as SdkCategory, ActionDeclaration, ActionExecutionStatus, ActionOwner,
    ActionTypeId, ArtifactStore, ArtifactStoreType, FailureConditions, PipelineDeclaration,
    PipelineExecutionStatus, PipelineType as SdkPipelineType, Result as SdkResult,
    RetryConfiguration, RetryTrigger, StageDeclaration, StageExecutionStatus, StageRetryMode,
    StageState, Tag,
};
use redrive_emulator::{
    self as emulator, ActionCategory, ActionOutcome, ActionSpec, BucketSpec, EmulatorConfig,
    EmulatorHandle, FaultConfig, OnFailureSpec, PipelineExecutionSpec, PipelineSpec, QuotaPreset,
    RetryOutcome, RoleSpec, Scenario, StageSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "123456789012";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn client_with(h: &EmulatorHandle, akid: &str) -> Client {
    let conf = aws_sdk_codepipeline::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&h.endpoint)
        .credentials_provider(Credentials::new(akid, "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

async fn emu_with(config: EmulatorConfig, scenario: Scenario) -> (EmulatorHandle, Client) {
    let h = emulator::start(config, scenario)
        .await
        .expect("emulator starts");
    let c = client_with(&h, "AKIDCODEPIPELINE");
    (h, c)
}

async fn emu(scenario: Scenario) -> (EmulatorHandle, Client) {
    emu_with(EmulatorConfig::default(), scenario).await
}

/// Service error code of an SDK error (None for transport errors).
fn code<E: ProvideErrorMetadata, R>(
    e: &aws_sdk_codepipeline::error::SdkError<E, R>,
) -> Option<String> {
    e.as_service_error()
        .and_then(|s| s.code())
        .map(str::to_string)
}

fn message<E: ProvideErrorMetadata, R>(e: &aws_sdk_codepipeline::error::SdkError<E, R>) -> String {
    e.as_service_error()
        .and_then(|s| s.message())
        .unwrap_or_default()
        .to_string()
}

async fn state(c: &Client, name: &str) -> GetPipelineStateOutput {
    c.get_pipeline_state()
        .name(name)
        .send()
        .await
        .expect("GetPipelineState")
}

fn stage<'a>(s: &'a GetPipelineStateOutput, name: &str) -> &'a StageState {
    s.stage_states()
        .iter()
        .find(|st| st.stage_name() == Some(name))
        .unwrap_or_else(|| panic!("no stage {name}"))
}

fn stage_status(s: &StageState) -> Option<StageExecutionStatus> {
    s.latest_execution().map(|l| l.status().clone())
}

fn action<'a>(s: &'a StageState, name: &str) -> &'a aws_sdk_codepipeline::types::ActionExecution {
    s.action_states()
        .iter()
        .find(|a| a.action_name() == Some(name))
        .and_then(|a| a.latest_execution())
        .unwrap_or_else(|| panic!("action {name} never ran"))
}

fn manual_attempts(s: &StageState) -> Option<i32> {
    s.retry_stage_metadata()
        .and_then(|m| m.manual_stage_retry_attempt())
}

fn auto_attempts(s: &StageState) -> Option<i32> {
    s.retry_stage_metadata()
        .and_then(|m| m.auto_stage_retry_attempt())
}

fn trigger(s: &StageState) -> Option<RetryTrigger> {
    s.retry_stage_metadata()
        .and_then(|m| m.latest_retry_trigger())
        .cloned()
}

async fn retry(
    c: &Client,
    pipeline: &str,
    stage: &str,
    id: &str,
    mode: StageRetryMode,
) -> Result<String, String> {
    c.retry_stage_execution()
        .pipeline_name(pipeline)
        .stage_name(stage)
        .pipeline_execution_id(id)
        .retry_mode(mode)
        .send()
        .await
        .map(|o| o.pipeline_execution_id().unwrap_or_default().to_string())
        .map_err(|e| code(&e).unwrap_or_else(|| format!("transport: {e:?}")))
}

/// `Source → Build → Deploy`, 10 s per action; Deploy runs `App` and `Db` side by side.
/// `Db` fails twice with `JobFailed`, then succeeds; `App` always succeeds.
fn web(name: &str) -> PipelineSpec {
    PipelineSpec::new(name)
        .tag("team", "web")
        .action_duration(secs(10))
        .stage(StageSpec::new("Source").action(ActionSpec::new("Src", ActionCategory::Source)))
        .stage(StageSpec::new("Build").action(ActionSpec::new("Compile", ActionCategory::Build)))
        .stage(
            StageSpec::new("Deploy")
                .action(ActionSpec::new("App", ActionCategory::Deploy))
                .action(ActionSpec::new("Db", ActionCategory::Deploy).outcomes([
                    ActionOutcome::fail_with("JobFailed", "migration 42 failed: lock timeout"),
                    ActionOutcome::fail_with("JobFailed", "migration 42 failed: lock timeout"),
                    ActionOutcome::succeed(),
                ])),
        )
}

/// A `web` pipeline whose execution failed in Deploy 5 minutes ago; returns its id.
async fn failed_web(name: &str) -> (EmulatorHandle, Client, String) {
    let (h, c) = emu(Scenario::new()
        .with_pipeline(web(name).execution(PipelineExecutionSpec::failed_ago(secs(300)))))
    .await;
    let s = state(&c, name).await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    let id = d
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    (h, c, id)
}

// ------------------------------------------------------------------------------------------
// Raw HTTP

async fn raw_http(
    endpoint: &str,
    target: Option<&str>,
    body: &str,
    signed: bool,
) -> (u16, Vec<(String, String)>, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(t) = target {
        req.push_str(&format!("X-Amz-Target: {t}\r\n"));
    }
    if signed {
        req.push_str("Authorization: AWS4-HMAC-SHA256 Credential=AKIDRAW/20260101/us-east-1/codepipeline/aws4_request, SignedHeaders=host, Signature=00\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(hs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn http_get(endpoint: &str, path: &str) -> (u16, serde_json::Value) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or_default())
}

// ------------------------------------------------------------------------------------------

/// §2.1 / §4.2.1: JSON 1.1, `CodePipeline_20150709.*`, HTTP 400 with bare `__type` codes,
/// epoch-second timestamps.
#[tokio::test]
async fn wire_format_is_json_1_1_with_bare_error_codes() {
    let (h, _c) = emu(Scenario::new()
        .with_pipeline(web("wire").execution(PipelineExecutionSpec::started_ago(secs(15)))))
    .await;
    let (st, hs, body) = raw_http(
        &h.endpoint,
        Some("CodePipeline_20150709.GetPipelineState"),
        r#"{"name":"nope"}"#,
        true,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert!(header(&hs, "x-amzn-requestid").is_some());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "PipelineNotFoundException");
    assert!(v["message"].as_str().unwrap().contains("nope"));

    let (st, hs, body) = raw_http(
        &h.endpoint,
        Some("CodePipeline_20150709.GetPipelineState"),
        r#"{"name":"wire"}"#,
        true,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/x-amz-json-1.1")
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let created = v["created"].as_f64().expect("created is a JSON number");
    let now = h.now().as_millisecond() as f64 / 1000.0;
    assert!(created > 1.6e9 && created < now, "epoch seconds: {created}");
    let source = &v["stageStates"][0];
    let change = source["actionStates"][0]["latestExecution"]["lastStatusChange"]
        .as_f64()
        .unwrap();
    assert!(
        change > created,
        "lastStatusChange is epoch seconds: {change}"
    );
    assert_eq!(
        v["stageStates"][0]["latestExecution"]["status"],
        "Succeeded"
    );

    // A CodePipeline target the emulator does not implement, and an unsigned request.
    let (st, _, body) = raw_http(
        &h.endpoint,
        Some("CodePipeline_20150709.DeletePipeline"),
        "{}",
        true,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["__type"],
        "UnknownOperationException"
    );
    let (st, hs, body) = raw_http(
        &h.endpoint,
        Some("CodePipeline_20150709.ListPipelines"),
        "{}",
        false,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        header(&hs, "content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["__type"],
        "MissingAuthenticationTokenException"
    );
    // Malformed JSON is a bare SerializationException too.
    let (st, _, body) = raw_http(
        &h.endpoint,
        Some("CodePipeline_20150709.GetPipelineState"),
        "{",
        true,
    )
    .await;
    assert_eq!(st, 400);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(!v["__type"].as_str().unwrap().contains('#'), "{v}");
    h.shutdown().await;
}

fn sdk_stage(name: &str, category: SdkCategory, provider: &str) -> StageDeclaration {
    StageDeclaration::builder()
        .name(name)
        .actions(
            ActionDeclaration::builder()
                .name(format!("{name}Action"))
                .action_type_id(
                    ActionTypeId::builder()
                        .category(category)
                        .owner(ActionOwner::Aws)
                        .provider(provider)
                        .version("1")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn sdk_pipeline(name: &str, stages: Vec<StageDeclaration>) -> PipelineDeclaration {
    PipelineDeclaration::builder()
        .name(name)
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/cp-service"))
        .pipeline_type(SdkPipelineType::V2)
        .artifact_store(
            ArtifactStore::builder()
                .r#type(ArtifactStoreType::S3)
                .location("artifacts")
                .build()
                .unwrap(),
        )
        .set_stages(Some(stages))
        .build()
        .unwrap()
}

/// Every implemented operation through the SDK: CreatePipeline (which starts a first
/// execution), GetPipeline, ListPipelines, ListTagsForResource, Start/Get/List executions,
/// GetPipelineState, StopPipelineExecution, UpdatePipeline.
#[tokio::test]
async fn every_operation_through_the_sdk() {
    let (h, c) = emu(Scenario::new()).await;
    let mut deploy = sdk_stage("Deploy", SdkCategory::Deploy, "CodeDeploy");
    deploy.on_failure = Some(
        FailureConditions::builder()
            .result(SdkResult::Retry)
            .retry_configuration(
                RetryConfiguration::builder()
                    .retry_mode(StageRetryMode::AllActions)
                    .build(),
            )
            .build(),
    );
    let decl = sdk_pipeline(
        "api-made",
        vec![sdk_stage("Source", SdkCategory::Source, "S3"), deploy],
    );
    let created = c
        .create_pipeline()
        .pipeline(decl.clone())
        .tags(Tag::builder().key("team").value("web").build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(created.pipeline().unwrap().version(), Some(1));
    assert_eq!(created.tags().len(), 1);
    let dup = c
        .create_pipeline()
        .pipeline(decl.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&dup).as_deref(), Some("PipelineNameInUseException"));

    let got = c.get_pipeline().name("api-made").send().await.unwrap();
    let arn = format!("arn:aws:codepipeline:us-east-1:{ACCOUNT}:api-made");
    assert_eq!(got.metadata().unwrap().pipeline_arn(), Some(arn.as_str()));
    let stages = got.pipeline().unwrap().stages();
    assert_eq!(stages.len(), 2);
    let on_failure = stages[1].on_failure().unwrap();
    assert_eq!(on_failure.result(), Some(&SdkResult::Retry));
    assert_eq!(
        on_failure.retry_configuration().unwrap().retry_mode(),
        Some(&StageRetryMode::AllActions)
    );
    let list = c.list_pipelines().send().await.unwrap();
    assert_eq!(list.pipelines().len(), 1);
    assert_eq!(list.pipelines()[0].name(), Some("api-made"));
    let tags = c
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "team");
    assert_eq!(tags.tags()[0].value(), "web");
    let e = c
        .list_tags_for_resource()
        .resource_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidArnException"));
    let e = c
        .list_tags_for_resource()
        .resource_arn(format!("arn:aws:codepipeline:us-east-1:{ACCOUNT}:ghost"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ResourceNotFoundException"));

    // AWS runs a new pipeline once on creation.
    let execs = c
        .list_pipeline_executions()
        .pipeline_name("api-made")
        .send()
        .await
        .unwrap();
    assert_eq!(execs.pipeline_execution_summaries().len(), 1);
    let first = &execs.pipeline_execution_summaries()[0];
    assert_eq!(
        first.trigger().unwrap().trigger_type().map(|t| t.as_str()),
        Some("CreatePipeline")
    );

    let started = c
        .start_pipeline_execution()
        .name("api-made")
        .send()
        .await
        .unwrap();
    let id = started.pipeline_execution_id().unwrap().to_string();
    let ge = c
        .get_pipeline_execution()
        .pipeline_name("api-made")
        .pipeline_execution_id(&id)
        .send()
        .await
        .unwrap();
    let pe = ge.pipeline_execution().unwrap();
    assert_eq!(pe.status(), Some(&PipelineExecutionStatus::InProgress));
    assert_eq!(pe.pipeline_version(), Some(1));
    let e = c
        .get_pipeline_execution()
        .pipeline_name("api-made")
        .pipeline_execution_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e).as_deref(),
        Some("PipelineExecutionNotFoundException")
    );

    let s = state(&c, "api-made").await;
    assert_eq!(s.pipeline_version(), Some(1));
    assert_eq!(s.stage_states().len(), 2);

    let stopped = c
        .stop_pipeline_execution()
        .pipeline_name("api-made")
        .pipeline_execution_id(&id)
        .abandon(true)
        .reason("operator test")
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.pipeline_execution_id(), Some(id.as_str()));
    let again = c
        .stop_pipeline_execution()
        .pipeline_name("api-made")
        .pipeline_execution_id(&id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&again).as_deref(),
        Some("PipelineExecutionNotStoppableException")
    );
    let summary = c
        .list_pipeline_executions()
        .pipeline_name("api-made")
        .send()
        .await
        .unwrap();
    let mine = summary
        .pipeline_execution_summaries()
        .iter()
        .find(|s| s.pipeline_execution_id() == Some(id.as_str()))
        .unwrap();
    assert_eq!(mine.status(), Some(&PipelineExecutionStatus::Stopped));
    assert_eq!(mine.stop_trigger().unwrap().reason(), Some("operator test"));

    let mut v2 = decl.clone();
    v2.stages
        .push(sdk_stage("Test", SdkCategory::Test, "CodeBuild"));
    let updated = c.update_pipeline().pipeline(v2).send().await.unwrap();
    assert_eq!(updated.pipeline().unwrap().version(), Some(2));
    assert_eq!(state(&c, "api-made").await.stage_states().len(), 3);
    assert_eq!(h.stats().calls("codepipeline:CreatePipeline"), 2);
    assert_eq!(h.stats().calls("codepipeline:GetPipelineState"), 2);
    h.shutdown().await;
}

/// §4.2.2: the validation and lookup errors of RetryStageExecution.
#[tokio::test]
async fn retry_stage_execution_validation_and_lookup_errors() {
    let (h, c, id) = failed_web("web").await;
    // Malformed execution id (the doc's own sample id is not a UUID), retry mode, names.
    for bad_id in ["3137f7cb-7cf7-EXAMPLE", &id.to_uppercase()] {
        let e = retry(&c, "web", "Deploy", bad_id, StageRetryMode::FailedActions).await;
        assert_eq!(e.unwrap_err(), "ValidationException", "{bad_id}");
    }
    let e = retry(
        &c,
        "web",
        "Deploy",
        &id,
        StageRetryMode::from("SOME_ACTIONS"),
    )
    .await;
    assert_eq!(e.unwrap_err(), "ValidationException");
    let e = retry(&c, "web site", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "ValidationException");
    let e = retry(
        &c,
        "web",
        &"D".repeat(101),
        &id,
        StageRetryMode::FailedActions,
    )
    .await;
    assert_eq!(e.unwrap_err(), "ValidationException");
    // Unknown pipeline, unknown stage.
    let e = retry(&c, "ghost", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "PipelineNotFoundException");
    let e = retry(&c, "web", "Ghost", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "StageNotFoundException");
    // A well-formed id that is not the stage's latest execution.
    let other = "0f0e0d0c-0b0a-4908-8706-050403020100";
    let e = retry(&c, "web", "Deploy", other, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "NotLatestPipelineExecutionException");
    // Every message names what is wrong.
    let err = c
        .retry_stage_execution()
        .pipeline_name("web")
        .stage_name("Deploy")
        .pipeline_execution_id("3137f7cb-7cf7-EXAMPLE")
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap_err();
    assert!(
        message(&err).contains("pipelineExecutionId"),
        "{}",
        message(&err)
    );
    // Nothing was retried.
    let s = state(&c, "web").await;
    assert_eq!(
        stage_status(stage(&s, "Deploy")),
        Some(StageExecutionStatus::Failed)
    );
    assert_eq!(manual_attempts(stage(&s, "Deploy")), None);
    assert!(
        h.codepipeline_ledger()
            .iter()
            .all(|e| !e.outcome.is_retried())
    );
    assert_eq!(h.codepipeline_ledger().len(), 9);
    h.shutdown().await;
}

/// §2.2 semantics / §4.2.3: FAILED_ACTIONS re-runs only the failed action, returns the same
/// execution id, and sets manualStageRetryAttempt and latestRetryTrigger.
#[tokio::test]
async fn failed_actions_retry_reruns_only_failed_actions_and_records_metadata() {
    let (h, c, id) = failed_web("web").await;
    let before = state(&c, "web").await;
    let d = stage(&before, "Deploy");
    let db = action(d, "Db");
    assert_eq!(db.status(), Some(&ActionExecutionStatus::Failed));
    let err = db.error_details().unwrap();
    assert_eq!(err.code(), Some("JobFailed"));
    assert_eq!(err.message(), Some("migration 42 failed: lock timeout"));
    let app_before = action(d, "App").action_execution_id().unwrap().to_string();
    let db_before = db.action_execution_id().unwrap().to_string();
    assert_eq!(
        action(d, "App").status(),
        Some(&ActionExecutionStatus::Succeeded)
    );
    assert_eq!(d.retry_stage_metadata(), None);

    let out = retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(out.as_deref(), Ok(id.as_str()), "same pipelineExecutionId");
    let after = state(&c, "web").await;
    let d = stage(&after, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::InProgress));
    assert_eq!(d.latest_execution().unwrap().pipeline_execution_id(), id);
    assert_eq!(manual_attempts(d), Some(1));
    assert_eq!(auto_attempts(d), None);
    assert_eq!(trigger(d), Some(RetryTrigger::ManualStageRetry));
    let db = action(d, "Db");
    assert_eq!(db.status(), Some(&ActionExecutionStatus::InProgress));
    assert_ne!(db.action_execution_id(), Some(db_before.as_str()));
    assert_eq!(db.error_details(), None);
    let app = action(d, "App");
    assert_eq!(app.status(), Some(&ActionExecutionStatus::Succeeded));
    assert_eq!(app.action_execution_id(), Some(app_before.as_str()));
    let exec = c
        .get_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        exec.pipeline_execution().unwrap().status(),
        Some(&PipelineExecutionStatus::InProgress)
    );

    // Db fails a second time (its script), then a further retry succeeds.
    h.advance_clock(secs(11));
    let s = state(&c, "web").await;
    assert_eq!(
        stage_status(stage(&s, "Deploy")),
        Some(StageExecutionStatus::Failed)
    );
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    h.advance_clock(secs(11));
    let s = state(&c, "web").await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Succeeded));
    assert_eq!(manual_attempts(d), Some(2));
    let exec = c
        .get_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        exec.pipeline_execution().unwrap().status(),
        Some(&PipelineExecutionStatus::Succeeded)
    );
    // Succeeded now: nothing left to retry.
    let e = retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "StageNotRetryableException");
    h.shutdown().await;
}

/// §2.2: ALL_ACTIONS re-runs the stage from its first action, including succeeded ones.
#[tokio::test]
async fn all_actions_retry_reruns_every_action() {
    let (h, c, id) = failed_web("web").await;
    let before = state(&c, "web").await;
    let app_before = action(stage(&before, "Deploy"), "App")
        .action_execution_id()
        .unwrap()
        .to_string();
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::AllActions).await,
        Ok(id.clone())
    );
    let s = state(&c, "web").await;
    let d = stage(&s, "Deploy");
    let app = action(d, "App");
    assert_eq!(app.status(), Some(&ActionExecutionStatus::InProgress));
    assert_ne!(app.action_execution_id(), Some(app_before.as_str()));
    assert_eq!(
        action(d, "Db").status(),
        Some(&ActionExecutionStatus::InProgress)
    );
    assert_eq!(manual_attempts(d), Some(1));
    // Earlier stages are not re-run.
    let src = action(stage(&s, "Source"), "Src");
    let src_before = action(stage(&before, "Source"), "Src");
    assert_eq!(src.action_execution_id(), src_before.action_execution_id());
    h.shutdown().await;
}

/// §2.2 / §4.2.2: with an action still in progress, ALL_ACTIONS is refused
/// (StageNotRetryableException, the emulator's choice) while FAILED_ACTIONS proceeds and
/// leaves the running action alone.
#[tokio::test]
async fn all_actions_is_refused_while_an_action_runs_but_failed_actions_proceeds() {
    let spec = PipelineSpec::new("slow")
        .action_duration(secs(5))
        .stage(StageSpec::new("Source").action(ActionSpec::new("Src", ActionCategory::Source)))
        .stage(
            StageSpec::new("Deploy")
                .action(
                    ActionSpec::new("Fast", ActionCategory::Deploy)
                        .outcomes([ActionOutcome::fail("JobFailed"), ActionOutcome::succeed()]),
                )
                .action(ActionSpec::new("Slow", ActionCategory::Deploy).duration(secs(600))),
        )
        .execution(PipelineExecutionSpec::now());
    let (h, c) = emu(Scenario::new().with_pipeline(spec)).await;
    h.advance_clock(secs(11)); // Source done at 5 s, Fast failed at 10 s, Slow runs until 605 s
    let s = state(&c, "slow").await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(
        action(d, "Slow").status(),
        Some(&ActionExecutionStatus::InProgress)
    );
    let id = d
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    let slow_id = action(d, "Slow").action_execution_id().unwrap().to_string();

    let e = retry(&c, "slow", "Deploy", &id, StageRetryMode::AllActions).await;
    assert_eq!(e.unwrap_err(), "StageNotRetryableException");
    assert_eq!(
        retry(&c, "slow", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    let s = state(&c, "slow").await;
    let d = stage(&s, "Deploy");
    assert_eq!(
        action(d, "Fast").status(),
        Some(&ActionExecutionStatus::InProgress)
    );
    assert_eq!(
        action(d, "Slow").action_execution_id(),
        Some(slow_id.as_str())
    );
    h.advance_clock(secs(600));
    let s = state(&c, "slow").await;
    assert_eq!(
        stage_status(stage(&s, "Deploy")),
        Some(StageExecutionStatus::Succeeded)
    );
    h.shutdown().await;
}

/// §2.2: a stage that succeeded, is still in its first run, or never ran is not retryable.
#[tokio::test]
async fn stages_that_did_not_fail_are_not_retryable() {
    let spec = web("web").execution(PipelineExecutionSpec::now());
    let (h, c) = emu(Scenario::new().with_pipeline(spec)).await;
    h.advance_clock(secs(12)); // Source succeeded, Build in progress, Deploy not reached
    let s = state(&c, "web").await;
    let id = stage(&s, "Source")
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    assert_eq!(
        stage_status(stage(&s, "Source")),
        Some(StageExecutionStatus::Succeeded)
    );
    assert_eq!(
        stage_status(stage(&s, "Build")),
        Some(StageExecutionStatus::InProgress)
    );
    assert!(stage(&s, "Deploy").latest_execution().is_none());
    for st in ["Source", "Build", "Deploy"] {
        let e = retry(&c, "web", st, &id, StageRetryMode::FailedActions).await;
        assert_eq!(e.unwrap_err(), "StageNotRetryableException", "{st}");
    }
    h.shutdown().await;
}

/// §4.2.4: no idempotency — a second call while the retry runs is a ConflictException; after
/// the retry fails again, the same call performs another retry. The ledger records each call
/// with the attempt count seen before it.
#[tokio::test]
async fn repeat_calls_conflict_while_running_and_retry_again_after_refailure() {
    let (h, c, id) = failed_web("web").await;
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    let e = retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "ConflictException");
    let e = retry(&c, "web", "Deploy", &id, StageRetryMode::AllActions).await;
    assert_eq!(e.unwrap_err(), "ConflictException");
    h.advance_clock(secs(11)); // the retry fails again
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    let s = state(&c, "web").await;
    assert_eq!(manual_attempts(stage(&s, "Deploy")), Some(2));

    let ledger = h.codepipeline_ledger();
    let summary: Vec<(u32, &str, &str)> = ledger
        .iter()
        .map(|e| {
            (
                e.manual_stage_retry_attempt_before,
                e.outcome.code(),
                e.retry_mode.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, "Retried", "FAILED_ACTIONS"),
            (1, "ConflictException", "FAILED_ACTIONS"),
            (1, "ConflictException", "ALL_ACTIONS"),
            (1, "Retried", "FAILED_ACTIONS"),
        ]
    );
    for e in &ledger {
        assert_eq!(e.pipeline_name, "web");
        assert_eq!(e.stage_name, "Deploy");
        assert_eq!(e.pipeline_execution_id, id);
        assert_eq!(e.access_key_id.as_deref(), Some("AKIDCODEPIPELINE"));
        assert!(e.outcome.reached_model());
    }
    assert!(ledger[0].at < ledger[3].at);
    // The admin API serves the same ledger.
    let (st, v) = http_get(&h.endpoint, "/_emulator/codepipeline/ledger").await;
    assert_eq!(st, 200);
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert_eq!(v[1]["outcome"]["kind"], "refused");
    assert_eq!(v[1]["outcome"]["code"], "ConflictException");
    assert_eq!(v[3]["manualStageRetryAttemptBefore"], 1);
    assert_eq!(
        h.stats()
            .errors("codepipeline:RetryStageExecution", "ConflictException"),
        2
    );
    h.shutdown().await;
}

/// §2.5 / §4.2.5: `onFailure: RETRY` retries a failed stage automatically exactly once, after
/// a delay during which a manual retry is refused; later failures are left to the caller.
#[tokio::test]
async fn native_auto_retry_happens_exactly_once() {
    let spec = PipelineSpec::new("auto")
        .action_duration(secs(10))
        .auto_retry_delay(secs(60))
        .stage(StageSpec::new("Source").action(ActionSpec::new("Src", ActionCategory::Source)))
        .stage(
            StageSpec::new("Deploy")
                .on_failure(OnFailureSpec::retry(
                    redrive_emulator::StageRetryMode::FailedActions,
                ))
                .action(ActionSpec::new("App", ActionCategory::Deploy).outcomes([
                    ActionOutcome::fail("JobFailed"),
                    ActionOutcome::fail("JobFailed"),
                    ActionOutcome::fail("JobFailed"),
                    ActionOutcome::succeed(),
                ])),
        )
        .execution(PipelineExecutionSpec::now());
    let (h, c) = emu(Scenario::new().with_pipeline(spec)).await;
    h.advance_clock(secs(21)); // Source 0-10 s, Deploy fails at 20 s
    let s = state(&c, "auto").await;
    let d = stage(&s, "Deploy");
    let id = d
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(d.retry_stage_metadata(), None, "auto retry still pending");
    let pending = h.pipeline_state("auto").unwrap();
    assert!(pending.stage("Deploy").unwrap().auto_retry_due.is_some());
    let e = retry(&c, "auto", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "ConflictException");

    h.advance_clock(secs(60)); // the automatic retry starts at 80 s
    let s = state(&c, "auto").await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::InProgress));
    assert_eq!(auto_attempts(d), Some(1));
    assert_eq!(manual_attempts(d), None);
    assert_eq!(trigger(d), Some(RetryTrigger::AutomatedStageRetry));

    h.advance_clock(secs(3600)); // it fails again at 90 s; no second automatic retry
    let s = state(&c, "auto").await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(auto_attempts(d), Some(1));

    // A manual retry is recorded as such and is not followed by another automatic one.
    assert_eq!(
        retry(&c, "auto", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    h.advance_clock(secs(3600));
    let s = state(&c, "auto").await;
    let d = stage(&s, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(auto_attempts(d), Some(1));
    assert_eq!(manual_attempts(d), Some(1));
    assert_eq!(trigger(d), Some(RetryTrigger::ManualStageRetry));
    assert_eq!(h.stats().auto_stage_retries, 1);
    // The automatic retry is not a RetryStageExecution call.
    assert_eq!(
        h.codepipeline_ledger()
            .iter()
            .filter(|e| e.outcome.is_retried())
            .count(),
        1
    );
    h.shutdown().await;
}

/// §4.2.5: a V1 pipeline cannot declare the native retry (V2-only feature).
#[tokio::test]
async fn native_retry_is_v2_only() {
    let (h, c) = emu(Scenario::new()).await;
    let mut deploy = sdk_stage("Deploy", SdkCategory::Deploy, "CodeDeploy");
    deploy.on_failure = Some(
        FailureConditions::builder()
            .result(SdkResult::Retry)
            .build(),
    );
    let mut decl = sdk_pipeline(
        "legacy",
        vec![sdk_stage("Source", SdkCategory::Source, "S3"), deploy],
    );
    decl.pipeline_type = Some(SdkPipelineType::V1);
    let e = c.create_pipeline().pipeline(decl).send().await.unwrap_err();
    // The error code is not documented; the emulator answers InvalidStructureException.
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));
    assert_eq!(code(&e).as_deref(), Some("InvalidStructureException"));
    assert!(message(&e).contains("V2"), "{}", message(&e));
    let missing = c.get_pipeline().name("legacy").send().await.unwrap_err();
    assert_eq!(code(&missing).as_deref(), Some("PipelineNotFoundException"));
    h.shutdown().await;
}

/// §4.2.2 / §2.4: a newer execution whose same stage fails makes the older id stale
/// (NotLatestPipelineExecutionException); the failed older execution stays Failed, and an
/// execution overtaken while waiting for a stage becomes Superseded.
#[tokio::test]
async fn newer_executions_supersede_older_ones() {
    let (h, c, old) = failed_web("web").await;
    let newer = c
        .start_pipeline_execution()
        .name("web")
        .send()
        .await
        .unwrap()
        .pipeline_execution_id()
        .unwrap()
        .to_string();
    // While the newer one has not reached Deploy, the old failure is still the latest there.
    let s = state(&c, "web").await;
    assert_eq!(
        stage(&s, "Deploy")
            .latest_execution()
            .unwrap()
            .pipeline_execution_id(),
        old
    );
    h.advance_clock(secs(31)); // newer: Source, Build, then Deploy fails (Db's first attempt)
    let s = state(&c, "web").await;
    let d = stage(&s, "Deploy");
    assert_eq!(d.latest_execution().unwrap().pipeline_execution_id(), newer);
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    let e = retry(&c, "web", "Deploy", &old, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "NotLatestPipelineExecutionException");
    assert_eq!(
        retry(&c, "web", "Deploy", &newer, StageRetryMode::FailedActions).await,
        Ok(newer.clone())
    );
    let old_exec = c
        .get_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old_exec.pipeline_execution().unwrap().status(),
        Some(&PipelineExecutionStatus::Failed)
    );

    // Three quick starts: the second waits for Source behind the first and is overtaken by
    // the third.
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                c.start_pipeline_execution()
                    .name("web")
                    .send()
                    .await
                    .unwrap()
                    .pipeline_execution_id()
                    .unwrap()
                    .to_string(),
            );
        }
        v
    };
    let list = c
        .list_pipeline_executions()
        .pipeline_name("web")
        .send()
        .await
        .unwrap();
    let status_of = |id: &str| {
        list.pipeline_execution_summaries()
            .iter()
            .find(|s| s.pipeline_execution_id() == Some(id))
            .and_then(|s| s.status().cloned())
    };
    assert_eq!(
        status_of(&ids[0]),
        Some(PipelineExecutionStatus::InProgress)
    );
    assert_eq!(
        status_of(&ids[1]),
        Some(PipelineExecutionStatus::Superseded)
    );
    assert_eq!(
        status_of(&ids[2]),
        Some(PipelineExecutionStatus::InProgress)
    );
    assert_eq!(status_of(&old), Some(PipelineExecutionStatus::Failed));
    let s = state(&c, "web").await;
    let src = stage(&s, "Source");
    assert_eq!(
        src.latest_execution().unwrap().pipeline_execution_id(),
        ids[0]
    );
    assert_eq!(
        src.inbound_execution().map(|e| e.pipeline_execution_id()),
        Some(ids[2].as_str())
    );
    h.shutdown().await;
}

/// §2.2 / §4.2.2: after the pipeline structure changes, the failed stage is not retryable;
/// an execution still running when the definition changes is Cancelled (§2.3).
#[tokio::test]
async fn structure_change_makes_a_failed_stage_not_retryable() {
    let (h, c, id) = failed_web("web").await;
    let running = h.start_pipeline_execution("web").unwrap();
    let current = c.get_pipeline().name("web").send().await.unwrap();
    let mut decl = current.pipeline().unwrap().clone();
    decl.stages
        .push(sdk_stage("Smoke", SdkCategory::Test, "CodeBuild"));
    let up = c.update_pipeline().pipeline(decl).send().await.unwrap();
    assert_eq!(up.pipeline().unwrap().version(), Some(2));
    let err = c
        .retry_stage_execution()
        .pipeline_name("web")
        .stage_name("Deploy")
        .pipeline_execution_id(&id)
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("StageNotRetryableException"));
    assert!(message(&err).contains("structure"), "{}", message(&err));
    let r = c
        .get_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&running)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.pipeline_execution().unwrap().status(),
        Some(&PipelineExecutionStatus::Cancelled)
    );
    // The admin equivalent (same structure saved again) has the same effect on a new failure.
    let (h2, c2, id2) = failed_web("again").await;
    assert_eq!(h2.touch_pipeline("again").unwrap(), 2);
    let e = retry(&c2, "again", "Deploy", &id2, StageRetryMode::FailedActions).await;
    assert_eq!(e.unwrap_err(), "StageNotRetryableException");
    h2.shutdown().await;
    h.shutdown().await;
}

/// §2.4: ListPipelineExecutions lists newest first and pages with maxResults / nextToken.
#[tokio::test]
async fn list_pipeline_executions_pages_newest_first() {
    let mut spec = web("paged");
    for i in 0..7u64 {
        spec = spec.execution(PipelineExecutionSpec::started_ago(secs(3600 - i * 300)));
    }
    let (h, c) = emu(Scenario::new().with_pipeline(spec)).await;
    let mut seen: Vec<(String, f64)> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let out = c
            .list_pipeline_executions()
            .pipeline_name("paged")
            .max_results(3)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages.push(out.pipeline_execution_summaries().len());
        for s in out.pipeline_execution_summaries() {
            seen.push((
                s.pipeline_execution_id().unwrap().to_string(),
                s.start_time().unwrap().as_secs_f64(),
            ));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, vec![3, 3, 1]);
    assert!(seen.windows(2).all(|w| w[0].1 > w[1].1), "newest first");
    let mut ids: Vec<&String> = seen.iter().map(|(i, _)| i).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    // The paginator sees the same list.
    let all: Vec<_> = c
        .list_pipeline_executions()
        .pipeline_name("paged")
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let e = c
        .list_pipeline_executions()
        .pipeline_name("paged")
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("InvalidNextTokenException"));
    let e = c
        .list_pipeline_executions()
        .pipeline_name("paged")
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("ValidationException"));
    let e = c
        .list_pipeline_executions()
        .pipeline_name("ghost")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("PipelineNotFoundException"));
    h.shutdown().await;
}

/// §2.6 / §4.1.11 machinery: per-API token buckets answer ThrottlingException "Rate exceeded"
/// (HTTP 400); an injected 5xx never reaches the model. Both are in the ledger and the stats.
#[tokio::test]
async fn throttling_and_injected_server_errors() {
    let config = EmulatorConfig {
        quota: QuotaPreset::UsEast1,
        bucket_overrides: [(
            "codepipeline:RetryStageExecution".to_string(),
            BucketSpec {
                size: 2.0,
                refill_per_second: 1.0,
            },
        )]
        .into(),
        ..EmulatorConfig::default()
    };
    let (h, c) = emu_with(
        config,
        Scenario::new()
            .with_pipeline(web("web").execution(PipelineExecutionSpec::failed_ago(secs(60)))),
    )
    .await;
    let s = state(&c, "web").await;
    let id = stage(&s, "Deploy")
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    let ghost = "0f0e0d0c-0b0a-4908-8706-050403020100";
    for _ in 0..2 {
        let e = retry(&c, "web", "Deploy", ghost, StageRetryMode::FailedActions).await;
        assert_eq!(e.unwrap_err(), "NotLatestPipelineExecutionException");
    }
    let err = c
        .retry_stage_execution()
        .pipeline_name("web")
        .stage_name("Deploy")
        .pipeline_execution_id(&id)
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("ThrottlingException"));
    assert_eq!(message(&err), "Rate exceeded");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    // The stage was not touched by the throttled call; the bucket refills on the emulated clock.
    assert_eq!(
        manual_attempts(stage(&state(&c, "web").await, "Deploy")),
        None
    );
    h.advance_clock(secs(1));
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    // The default CodePipeline buckets apply to the other APIs (GetPipelineState: 100 burst).
    assert_eq!(h.stats().throttled("codepipeline:GetPipelineState"), 0);
    assert!(
        h.stats()
            .bucket_levels
            .contains_key("codepipeline:GetPipelineState")
    );

    // 5xx on RetryStageExecution only (fault filters take the plain operation name).
    h.advance_clock(secs(11)); // the retry fails again
    h.set_faults(FaultConfig {
        server_error_rate: 1.0,
        only_apis: vec!["RetryStageExecution".into()],
        ..FaultConfig::default()
    });
    h.advance_clock(secs(5));
    let err = c
        .retry_stage_execution()
        .pipeline_name("web")
        .stage_name("Deploy")
        .pipeline_execution_id(&id)
        .retry_mode(StageRetryMode::FailedActions)
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert!(matches!(status, Some(500 | 503)), "{status:?}");
    let s = state(&c, "web").await; // not faulted
    assert_eq!(
        stage_status(stage(&s, "Deploy")),
        Some(StageExecutionStatus::Failed)
    );
    assert_eq!(manual_attempts(stage(&s, "Deploy")), Some(1));
    h.set_faults(FaultConfig::default());

    let kinds: Vec<RetryOutcome> = h
        .codepipeline_ledger()
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert!(matches!(kinds[2], RetryOutcome::Throttled));
    assert!(kinds[3].is_retried());
    assert!(matches!(&kinds[4], RetryOutcome::Faulted { fault } if fault == "server-error"));
    assert!(!kinds[4].reached_model());
    let stats = h.stats();
    assert_eq!(stats.throttled("codepipeline:RetryStageExecution"), 1);
    assert_eq!(stats.by_api["codepipeline:RetryStageExecution"].faults, 1);
    assert_eq!(stats.calls("codepipeline:RetryStageExecution"), 5);
    h.shutdown().await;
}

/// Tenancy: a session of an assumed role limited to some pipelines is denied the others
/// (AccessDeniedException naming the codepipeline action); the ledger names the session key.
#[tokio::test]
async fn assumed_role_is_denied_pipelines_outside_its_grant() {
    let role = "arn:aws:iam::123456789012:role/redrive-web";
    let sc = Scenario::new()
        .with_pipeline(web("web-frontend").execution(PipelineExecutionSpec::failed_ago(secs(60))))
        .with_pipeline(web("billing").execution(PipelineExecutionSpec::failed_ago(secs(60))))
        .with_role(
            RoleSpec::new(role)
                .external_id("team-web")
                .pipelines(["web-*"]),
        );
    let (h, admin) = emu(sc).await;
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&h.endpoint)
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let provider = AssumeRoleProvider::builder(role)
        .session_name("redrive-operator")
        .external_id("team-web")
        .configure(&base)
        .build()
        .await;
    let conf = aws_sdk_codepipeline::config::Builder::from(&base)
        .credentials_provider(provider)
        .build();
    let c = Client::from_conf(conf);

    let billing_id = stage(&state(&admin, "billing").await, "Deploy")
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    let err = c
        .get_pipeline_state()
        .name("billing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err).as_deref(), Some("AccessDeniedException"));
    assert!(
        message(&err).contains("assumed-role/redrive-web/redrive-operator")
            && message(&err).contains("codepipeline:GetPipelineState"),
        "{}",
        message(&err)
    );
    let e = retry(
        &c,
        "billing",
        "Deploy",
        &billing_id,
        StageRetryMode::FailedActions,
    )
    .await;
    assert_eq!(e.unwrap_err(), "AccessDeniedException");
    // ListPipelines is not resource-scoped.
    assert_eq!(
        c.list_pipelines().send().await.unwrap().pipelines().len(),
        2
    );

    let s = state(&c, "web-frontend").await;
    let id = stage(&s, "Deploy")
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    assert_eq!(
        retry(
            &c,
            "web-frontend",
            "Deploy",
            &id,
            StageRetryMode::FailedActions
        )
        .await,
        Ok(id.clone())
    );
    let ledger = h.codepipeline_ledger();
    assert_eq!(ledger.len(), 2);
    let akid = ledger[1].access_key_id.clone().unwrap();
    assert!(akid.starts_with("ASIA"), "{akid}");
    assert_eq!(ledger[0].access_key_id.as_deref(), Some(akid.as_str()));
    assert_eq!(ledger[0].outcome.code(), "AccessDeniedException");
    assert_eq!(
        h.role_of(&akid),
        Some((role.to_string(), Some("team-web".to_string())))
    );
    // The billing stage was not retried.
    assert_eq!(
        manual_attempts(stage(&state(&admin, "billing").await, "Deploy")),
        None
    );

    // A configured denial applies to static keys too.
    h.set_faults(FaultConfig {
        access_denied_pipelines: vec!["web-frontend".into()],
        ..FaultConfig::default()
    });
    let e = admin
        .get_pipeline_state()
        .name("web-frontend")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("AccessDeniedException"));
    h.shutdown().await;
}

/// RetryStageExecution / StartPipelineExecution document
/// ConcurrentPipelineExecutionsLimitExceededException: injectable per pipeline.
#[tokio::test]
async fn concurrent_execution_limit_is_injectable() {
    let (h, c, id) = failed_web("web").await;
    let running = h.start_pipeline_execution("web").unwrap();
    assert!(h.set_pipeline_concurrency_limit("web", Some(1)));
    let e = c
        .start_pipeline_execution()
        .name("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&e).as_deref(),
        Some("ConcurrentPipelineExecutionsLimitExceededException")
    );
    let e = retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await;
    assert_eq!(
        e.unwrap_err(),
        "ConcurrentPipelineExecutionsLimitExceededException"
    );
    c.stop_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&running)
        .abandon(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        retry(&c, "web", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    h.shutdown().await;
}

/// §2.2: a stage stopped with abandon can have its actions retried; a stop without abandon
/// waits for running actions (Stopping), and a second one is a DuplicatedStopRequestException.
#[tokio::test]
async fn stopped_stages_are_retryable() {
    let (h, c) = emu(Scenario::new().with_pipeline(web("web"))).await;
    let id = h.start_pipeline_execution("web").unwrap();
    c.stop_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&id)
        .abandon(true)
        .send()
        .await
        .unwrap();
    let s = state(&c, "web").await;
    let src = stage(&s, "Source");
    assert_eq!(stage_status(src), Some(StageExecutionStatus::Stopped));
    assert_eq!(
        action(src, "Src").status(),
        Some(&ActionExecutionStatus::Abandoned)
    );
    assert_eq!(
        retry(&c, "web", "Source", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    let s = state(&c, "web").await;
    assert_eq!(
        action(stage(&s, "Source"), "Src").status(),
        Some(&ActionExecutionStatus::InProgress)
    );
    assert_eq!(manual_attempts(stage(&s, "Source")), Some(1));

    let second = h.start_pipeline_execution("web").unwrap();
    h.advance_clock(secs(11)); // first execution moves to Build, the second enters Source
    c.stop_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&second)
        .send()
        .await
        .unwrap();
    let e = c
        .stop_pipeline_execution()
        .pipeline_name("web")
        .pipeline_execution_id(&second)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e).as_deref(), Some("DuplicatedStopRequestException"));
    let snap = h.pipeline_execution("web", &second).unwrap();
    assert_eq!(snap.status.as_str(), "Stopping");
    h.advance_clock(secs(11));
    let snap = h.pipeline_execution("web", &second).unwrap();
    assert_eq!(snap.status.as_str(), "Stopped");
    h.shutdown().await;
}

/// The scenario format (YAML, camelCase, unknown fields rejected), seeding over the admin API,
/// and the handle helpers that complete a running action now.
#[tokio::test]
async fn scenario_admin_api_and_action_helpers() {
    let yaml = r#"
pipelines:
  - name: yaml-pipe
    tags: {team: data}
    actionDuration: 20s
    stages:
      - name: Source
        actions: [{name: Src, category: Source}]
      - name: Approve
        actions:
          - name: Gate
            category: Approval
            outcomes: [running]
    executions:
      - startedAgo: 30s
"#;
    let sc = Scenario::parse(yaml).unwrap();
    assert_eq!(sc.pipelines.len(), 1);
    assert!(Scenario::parse("pipelines: [{name: x, bogus: 1}]").is_err());
    assert!(
        Scenario::parse("pipelines: [{name: x, stages: [{name: A, actions: [{name: a}]}]}]")
            .map_err(|e| e.to_string())
            .and_then(
                |s| emulator::EmulatorState::new(&EmulatorConfig::default(), &s)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            )
            .is_err(),
        "one stage is not a valid pipeline"
    );
    let (h, c) = emu(sc).await;
    let s = state(&c, "yaml-pipe").await;
    let gate = stage(&s, "Approve");
    assert_eq!(stage_status(gate), Some(StageExecutionStatus::InProgress));
    let id = gate
        .latest_execution()
        .unwrap()
        .pipeline_execution_id()
        .to_string();
    h.fail_action(
        "yaml-pipe",
        "Approve",
        "Gate",
        "JobFailed",
        "rejected by reviewer",
    )
    .unwrap();
    let s = state(&c, "yaml-pipe").await;
    let gate = stage(&s, "Approve");
    assert_eq!(stage_status(gate), Some(StageExecutionStatus::Failed));
    assert_eq!(
        action(gate, "Gate").error_details().unwrap().message(),
        Some("rejected by reviewer")
    );
    assert_eq!(
        retry(
            &c,
            "yaml-pipe",
            "Approve",
            &id,
            StageRetryMode::FailedActions
        )
        .await,
        Ok(id.clone())
    );
    h.succeed_action("yaml-pipe", "Approve", "Gate").unwrap();
    let snap = h.pipeline_execution("yaml-pipe", &id).unwrap();
    assert_eq!(snap.status.as_str(), "Succeeded");
    assert!(h.succeed_action("yaml-pipe", "Approve", "Gate").is_err());

    // Seeding more over the admin API, then reading it back there.
    let addr = h.endpoint.trim_start_matches("http://").to_string();
    let body = r#"{"pipelines":[{"name":"more","stages":[{"name":"A","actions":[{"name":"a","category":"Source"}]},{"name":"B","actions":[{"name":"b"}]}],"executions":[{}]}]}"#;
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!(
            "POST /_emulator/scenario HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("\"pipelineExecutionsAdded\":1"), "{out}");
    let (st, v) = http_get(&h.endpoint, "/_emulator/codepipeline/pipelines/more").await;
    assert_eq!(st, 200);
    assert_eq!(v["stages"][0]["status"], "InProgress");
    let (st, _) = http_get(&h.endpoint, "/_emulator/codepipeline/pipelines/ghost").await;
    assert_eq!(st, 404);
    h.shutdown().await;
}

/// The demo pipelines are separate from the Step Functions demo, deterministic, and show the
/// documented states (a native retry already used, a plain failure).
#[tokio::test]
async fn demo_pipelines_are_separate_and_realistic() {
    assert!(Scenario::demo().pipelines.is_empty());
    assert_eq!(Scenario::demo_pipelines(), Scenario::demo_pipelines());
    let (h, c) = emu(Scenario::demo_pipelines()).await;
    let names: Vec<String> = c
        .list_pipelines()
        .send()
        .await
        .unwrap()
        .pipelines()
        .iter()
        .filter_map(|p| p.name().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 5);
    let web = state(&c, "web-frontend").await;
    let d = stage(&web, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(auto_attempts(d), Some(1), "the native retry already ran");
    let pay = state(&c, "payments-api").await;
    let d = stage(&pay, "Deploy");
    assert_eq!(stage_status(d), Some(StageExecutionStatus::Failed));
    assert_eq!(d.retry_stage_metadata(), None);
    assert_eq!(
        action(d, "Deploy").error_details().unwrap().code(),
        Some("SystemUnavailable")
    );
    h.shutdown().await;
}

/// The in-process entry point never panics on CodePipeline input, answers every error with a
/// bare `__type` and a `message`, and counts every request exactly once.
#[tokio::test]
async fn hostile_input_gets_well_formed_answers() {
    let sc = Scenario::new()
        .with_pipeline(web("web").execution(PipelineExecutionSpec::failed_ago(secs(60))));
    let state = emulator::EmulatorState::new(&EmulatorConfig::default(), &sc).unwrap();
    let id = state
        .pipeline_state("web")
        .unwrap()
        .stage("Deploy")
        .unwrap()
        .pipeline_execution_id
        .clone()
        .unwrap();
    let bodies: Vec<String> = vec![
        String::new(),
        "{".into(),
        "[]".into(),
        "null".into(),
        r#"{"name": 7}"#.into(),
        r#"{"name": "web", "pipelineName": "web", "pipelineExecutionId": "x", "retryMode": 1}"#.into(),
        format!(r#"{{"pipelineName":"web","stageName":"Deploy","pipelineExecutionId":"{id}","retryMode":"ALL_ACTIONS"}}"#),
        r#"{"pipeline": {"name": "p", "roleArn": "arn:aws:iam::123456789012:role/r", "stages": "no"}}"#.into(),
        r#"{"pipeline": {"name": "p", "roleArn": "arn:aws:iam::123456789012:role/r", "stages": [{"name": "A", "actions": [{"name": "a", "runOrder": 1e99}]}, {"name": "B", "actions": [{}]}]}}"#.into(),
        r#"{"pipelineName": "web", "maxResults": 18446744073709551615, "nextToken": "zz"}"#.into(),
        r#"{"resourceArn": "arn:aws:codepipeline:us-east-1:123456789012:"}"#.into(),
        r#"{"name": "web", "version": -1}"#.into(),
        r#"{"pipelineName": "web", "pipelineExecutionId": "00000000-0000-4000-8000-000000000000", "abandon": "yes"}"#.into(),
    ];
    let mut sent = 0u64;
    for op in redrive_emulator::codepipeline::OPERATIONS
        .iter()
        .chain(["Nope", ""].iter())
    {
        let target = format!("CodePipeline_20150709.{op}");
        for b in &bodies {
            let (status, body) = emulator::handle_request(&state, &target, b.as_bytes());
            sent += 1;
            assert!(status == 200 || status == 400, "{op} {b}: {status}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(v.is_object(), "{op}: {v}");
            if status == 400 {
                let ty = v["__type"].as_str().unwrap();
                assert!(!ty.is_empty() && !ty.contains('#'), "{op}: {ty}");
                assert!(v["message"].is_string(), "{op}: {v}");
            }
        }
    }
    assert_eq!(state.stats().total_calls, sent);
    // Exactly one retry went through (the well-formed ALL_ACTIONS call, once).
    let retried = state
        .codepipeline_ledger()
        .iter()
        .filter(|e| e.outcome.is_retried())
        .count();
    assert_eq!(retried, 1);
    assert_eq!(state.codepipeline_ledger().len(), bodies.len());
}

/// Seeding is validated as a whole: bad specs are refused with a reason and change nothing.
#[tokio::test]
async fn invalid_pipeline_specs_are_refused() {
    let (h, _c) = emu(Scenario::new().with_pipeline(web("web"))).await;
    let never_fails = PipelineSpec::source_build_deploy("fine")
        .execution(PipelineExecutionSpec::failed_ago(secs(60)));
    let e = h.seed_pipeline(never_fails).unwrap_err().to_string();
    assert!(e.contains("never fail"), "{e}");
    let bad_id = web("ids").execution(PipelineExecutionSpec::now().id("NOT-A-UUID"));
    assert!(h.seed_pipeline(bad_id).is_err());
    let changed = PipelineSpec::source_build_deploy("web");
    let e = h.seed_pipeline(changed).unwrap_err().to_string();
    assert!(e.contains("structure"), "{e}");
    let too_big = (0..51).fold(PipelineSpec::new("huge"), |p, i| {
        p.stage(
            StageSpec::new(&format!("S{i}")).action(ActionSpec::new("a", ActionCategory::Build)),
        )
    });
    assert!(h.seed_pipeline(too_big).is_err());
    assert!(h.pipeline_state("fine").is_none() && h.pipeline_state("huge").is_none());
    // Merging into an existing pipeline with the same structure adds executions.
    let ids = h
        .seed_pipeline(
            web("web")
                .execution(PipelineExecutionSpec::now().id("0f0e0d0c-0b0a-4908-8706-050403020100")),
        )
        .unwrap();
    assert_eq!(
        ids,
        vec!["0f0e0d0c-0b0a-4908-8706-050403020100".to_string()]
    );
    assert_eq!(h.pipeline_executions("web").len(), 1);
    h.shutdown().await;
}

/// QUEUED executions wait for a stage in start order (none is superseded); PARALLEL ones never
/// wait.
#[tokio::test]
async fn queued_and_parallel_execution_modes() {
    let queued =
        web("queued").execution_mode(redrive_emulator::codepipeline::ExecutionMode::Queued);
    let parallel =
        web("parallel").execution_mode(redrive_emulator::codepipeline::ExecutionMode::Parallel);
    let (h, c) = emu(Scenario::new()
        .with_pipeline(queued)
        .with_pipeline(parallel))
    .await;
    for name in ["queued", "parallel"] {
        for _ in 0..3 {
            h.start_pipeline_execution(name).unwrap();
        }
    }
    let s = state(&c, "queued").await;
    assert_eq!(stage(&s, "Source").inbound_executions().len(), 2);
    let statuses: Vec<_> = h
        .pipeline_executions("queued")
        .iter()
        .map(|e| e.status.as_str())
        .collect();
    assert_eq!(statuses, vec!["InProgress"; 3]);
    h.advance_clock(secs(11)); // the first moves to Build, the second enters Source
    let s = state(&c, "queued").await;
    assert_eq!(stage(&s, "Source").inbound_executions().len(), 1);
    let s = state(&c, "parallel").await;
    assert!(stage(&s, "Source").inbound_executions().is_empty());
    let in_build = h
        .pipeline_executions("parallel")
        .iter()
        .filter(|e| e.stage("Build").and_then(|b| b.status).is_some())
        .count();
    assert_eq!(in_build, 3, "parallel executions all advanced together");
    h.shutdown().await;
}

/// The UNCONFIRMED native-retry choices are configurable: a manual retry may replace a pending
/// automatic one, and a failed manual retry may get its own automatic retry.
#[tokio::test]
async fn native_retry_choices_are_configurable() {
    use redrive_emulator::{AutoRetryScope, CodePipelineConfig, PendingAutoRetry};
    let config = EmulatorConfig {
        codepipeline: CodePipelineConfig {
            auto_retry_delay: secs(30),
            auto_retry_scope: AutoRetryScope::EveryNonAutomaticFailure,
            retry_while_auto_retry_pending: PendingAutoRetry::ManualReplacesAuto,
            ..CodePipelineConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let spec = PipelineSpec::new("cfg")
        .action_duration(secs(10))
        .stage(StageSpec::new("Source").action(ActionSpec::new("Src", ActionCategory::Source)))
        .stage(
            StageSpec::new("Deploy")
                .on_failure(OnFailureSpec::retry(
                    redrive_emulator::StageRetryMode::AllActions,
                ))
                .action(
                    ActionSpec::new("App", ActionCategory::Deploy)
                        .outcomes([ActionOutcome::fail("JobFailed")]),
                ),
        )
        .execution(PipelineExecutionSpec::now());
    let (h, c) = emu_with(config, Scenario::new().with_pipeline(spec)).await;
    h.advance_clock(secs(21));
    let id = h
        .pipeline_state("cfg")
        .unwrap()
        .stage("Deploy")
        .unwrap()
        .pipeline_execution_id
        .clone()
        .unwrap();
    // Pending automatic retry: the manual one runs and replaces it.
    assert_eq!(
        retry(&c, "cfg", "Deploy", &id, StageRetryMode::FailedActions).await,
        Ok(id.clone())
    );
    h.advance_clock(secs(11)); // fails again at +10 s
    let snap = h.pipeline_state("cfg").unwrap();
    let d = snap.stage("Deploy").unwrap();
    assert_eq!(
        (d.manual_stage_retry_attempt, d.auto_stage_retry_attempt),
        (1, 0)
    );
    assert!(
        d.auto_retry_due.is_some(),
        "a failed manual retry gets an automatic one"
    );
    h.advance_clock(secs(31));
    let s = state(&c, "cfg").await;
    let d = stage(&s, "Deploy");
    assert_eq!(auto_attempts(d), Some(1));
    assert_eq!(trigger(d), Some(RetryTrigger::AutomatedStageRetry));
    h.advance_clock(secs(3600)); // the automatic retry's own failure gets none
    let snap = h.pipeline_state("cfg").unwrap();
    let d = snap.stage("Deploy").unwrap();
    assert_eq!(d.auto_stage_retry_attempt, 1);
    assert!(d.auto_retry_due.is_none());
    h.shutdown().await;
}
