//! AWS JSON 1.1 handling of `CodePipeline_20150709.*`: validation, operations, error shapes.
//!
//! Errors carry bare codes (`{"__type": "PipelineNotFoundException", "message": ...}`, HTTP 400),
//! api-facts §2.1 / §4.2. Processing order per request: throttling, JSON, validation, access
//! (configured denials, then the assumed role's `pipelines`), existence, the operation.

use serde_json::{Value, json};

use super::declaration::{self, NAME_PATTERN, valid_name};
use super::ledger::{RetryLedgerEntry, RetryOutcome};
use super::model::{DEFAULT_ACTION_DURATION, Model, PipelineSetup, StopRefusal};
use super::scenario::{PipelineType, StageRetryMode};
use super::view::{self, RetryTrigger};
use super::{api_key, operation_of};
use crate::api::{ApiError, Input, RequestMeta, Validator};
use crate::history::epoch;
use crate::model::{Ms, ts};
use crate::state::{CallResult, EmulatorState, lock};
use crate::sts::SessionView;

const EXECUTION_ID_PATTERN: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const CLIENT_TOKEN_PATTERN: &str = "^[a-zA-Z0-9-]+$";

/// True for a lowercase hyphenated UUID (`pipelineExecutionId`).
pub(crate) fn valid_execution_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

fn cp(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::bare(code, message)
}

fn pipeline_not_found(m: &Model, name: &str) -> ApiError {
    cp(
        "PipelineNotFoundException",
        format!(
            "Account '{}' does not have a pipeline with name '{name}'",
            m.account
        ),
    )
}

/// Handle one authenticated CodePipeline request: throttling, then the operation.
pub(crate) fn dispatch(
    state: &EmulatorState,
    meta: &RequestMeta,
    session: Option<SessionView>,
    target: &str,
    body: &[u8],
    now: Ms,
) -> (u16, Vec<u8>) {
    let Some(op) = operation_of(target) else {
        let e = ApiError::unknown_operation().into_bare();
        state.record_call("Unknown", CallResult::Error(e.code().to_string()));
        return (e.status, e.body());
    };
    let key = api_key(op);
    if !lock(&state.throttle).try_acquire(key, now) {
        state.record_call(key, CallResult::Throttled);
        if op == "RetryStageExecution" {
            record_unreached_retry(state, meta, body, now, RetryOutcome::Throttled);
        }
        let e = ApiError::throttling().into_bare();
        return (e.status, e.body());
    }
    let cx = Cx {
        state,
        meta,
        session,
        op,
        now,
    };
    match run(&cx, body) {
        Ok(v) => {
            state.record_call(key, CallResult::Ok);
            (
                200,
                serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
            )
        }
        Err(e) => {
            state.record_call(key, CallResult::Error(e.code().to_string()));
            (e.status, e.body())
        }
    }
}

/// Ledger entry for a RetryStageExecution that never reached the model.
pub(crate) fn record_unreached_retry(
    state: &EmulatorState,
    meta: &RequestMeta,
    body: &[u8],
    now: Ms,
    outcome: RetryOutcome,
) {
    let raw = RawRetry::of(body);
    let before = raw.manual_before(&lock(&state.pipelines));
    state.record_retry(raw.entry(before, outcome, now, meta));
}

/// The members of a RetryStageExecution body, read leniently for the ledger.
struct RawRetry {
    pipeline: String,
    stage: String,
    execution: String,
    mode: String,
}

impl RawRetry {
    fn of(body: &[u8]) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let f = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        RawRetry {
            pipeline: f("pipelineName"),
            stage: f("stageName"),
            execution: f("pipelineExecutionId"),
            mode: f("retryMode"),
        }
    }
    fn manual_before(&self, m: &Model) -> u32 {
        m.find(&self.pipeline)
            .and_then(|p| m.find_exec(p, &self.execution))
            .and_then(|x| m.stage_run(x, &self.stage))
            .map_or(0, |(_, r)| r.manual_retries)
    }
    fn entry(
        self,
        before: u32,
        outcome: RetryOutcome,
        now: Ms,
        meta: &RequestMeta,
    ) -> RetryLedgerEntry {
        RetryLedgerEntry {
            pipeline_name: self.pipeline,
            stage_name: self.stage,
            pipeline_execution_id: self.execution,
            retry_mode: self.mode,
            manual_stage_retry_attempt_before: before,
            outcome,
            at: ts(now),
            access_key_id: meta.access_key_id.clone(),
        }
    }
}

// ------------------------------------------------------------------------------------------

struct Cx<'a> {
    state: &'a EmulatorState,
    meta: &'a RequestMeta,
    session: Option<SessionView>,
    op: &'static str,
    now: Ms,
}

impl Cx<'_> {
    /// AccessDenied if the pipeline is configured as denied or outside the assumed role.
    fn check_access(&self, m: &Model, pipeline: &str, resource: &str) -> Result<(), ApiError> {
        let arn = m.pipeline_arn(pipeline);
        let action = format!("codepipeline:{}", self.op);
        let denied = |who: &str| {
            ApiError::access_denied(format!(
                "User: {who} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action"
            ))
            .into_bare()
        };
        let configured = self
            .state
            .faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .access_denied_pipelines
            .iter()
            .any(|d| *d == pipeline || *d == arn);
        if configured {
            let who = self
                .meta
                .access_key_id
                .as_deref()
                .unwrap_or("emulator-user");
            return Err(denied(&format!(
                "arn:{}:iam::{}:user/{who}",
                m.partition, m.account
            )));
        }
        match &self.session {
            Some(s) if !s.allows_pipeline(pipeline, &arn) => Err(denied(&s.assumed_role_arn)),
            _ => Ok(()),
        }
    }

    fn caller_arn(&self, m: &Model) -> String {
        match &self.session {
            Some(s) => s.assumed_role_arn.clone(),
            None => format!("arn:{}:iam::{}:user/emulator", m.partition, m.account),
        }
    }
}

fn run(cx: &Cx<'_>, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = Input::parse(body).map_err(ApiError::into_bare);
    let mut m = lock(&cx.state.pipelines);
    m.settle(cx.now);
    if cx.op == "RetryStageExecution" {
        return retry_stage_execution(cx, &mut m, parsed, body);
    }
    let input = parsed?;
    match cx.op {
        "CreatePipeline" => create_pipeline(cx, &mut m, &input),
        "UpdatePipeline" => update_pipeline(cx, &mut m, &input),
        "GetPipeline" => get_pipeline(cx, &m, &input),
        "ListPipelines" => list_pipelines(cx, &m, &input),
        "ListTagsForResource" => list_tags(cx, &m, &input),
        "StartPipelineExecution" => start_pipeline_execution(cx, &mut m, &input),
        "StopPipelineExecution" => stop_pipeline_execution(cx, &mut m, &input),
        "GetPipelineState" => get_pipeline_state(cx, &m, &input),
        "ListPipelineExecutions" => list_pipeline_executions(cx, &m, &input),
        "GetPipelineExecution" => get_pipeline_execution(cx, &m, &input),
        _ => Err(ApiError::unknown_operation().into_bare()),
    }
}

/// Validate a pipeline/stage name member.
fn name_member<'a>(v: &mut Validator, k: &str, value: Option<&'a str>) -> &'a str {
    let s = v.required(k, value);
    v.len(k, value, 1, 100);
    v.pattern(k, value, valid_name, NAME_PATTERN);
    s
}

fn execution_id_member<'a>(v: &mut Validator, k: &str, value: Option<&'a str>) -> &'a str {
    let s = v.required(k, value);
    v.pattern(k, value, valid_execution_id, EXECUTION_ID_PATTERN);
    s
}

fn finish(v: Validator) -> Result<(), ApiError> {
    v.finish().map_err(ApiError::into_bare)
}

fn str_in<'a>(input: &'a Input, k: &str) -> Result<Option<&'a str>, ApiError> {
    input.str(k).map_err(ApiError::into_bare)
}

fn int_in(input: &Input, k: &str) -> Result<Option<i64>, ApiError> {
    input.int(k).map_err(ApiError::into_bare)
}

fn tags_of(input: &Input) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    match input.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for t in items {
                let (Some(k), Some(v)) = (
                    t.get("key").and_then(Value::as_str),
                    t.get("value").and_then(Value::as_str),
                ) else {
                    return Err(cp(
                        "InvalidTagsException",
                        "Every tag must have a string key and value",
                    ));
                };
                if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                    return Err(cp(
                        "InvalidTagsException",
                        format!("Tag '{k}' is invalid: keys are 1-128 and values 0-256 characters"),
                    ));
                }
                match out.iter_mut().find(|(tk, _)| tk == k) {
                    Some(e) => e.1 = v.to_string(),
                    None => out.push((k.to_string(), v.to_string())),
                }
            }
        }
        Some(_) => {
            return Err(ApiError::serialization(
                "Unexpected value for field 'tags': expected a list",
            )
            .into_bare());
        }
    }
    if out.len() > 50 {
        return Err(cp(
            "TooManyTagsException",
            "A pipeline can have at most 50 tags",
        ));
    }
    Ok(out)
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

fn create_pipeline(cx: &Cx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let Some(decl_v) = input.get("pipeline").filter(|v| !v.is_null()) else {
        let mut v = Validator::default();
        v.required("pipeline", None);
        return Err(finish(v).unwrap_err());
    };
    let decl = declaration::parse(decl_v, PipelineType::V1)?;
    cx.check_access(m, &decl.name, &m.pipeline_arn(&decl.name))?;
    let tags = tags_of(input)?;
    if m.find(&decl.name).is_some() {
        return Err(cp(
            "PipelineNameInUseException",
            format!(
                "A pipeline with the name '{}' already exists in account '{}'",
                decl.name, m.account
            ),
        ));
    }
    let default_duration = i64::try_from(m.config.default_action_duration.as_millis())
        .unwrap_or(DEFAULT_ACTION_DURATION);
    let out = json!({"pipeline": decl.to_json(1), "tags": tags_json(&tags)});
    let p = m.add_pipeline(PipelineSetup {
        decl,
        tags,
        created: cx.now,
        scripts: Default::default(),
        durations: Default::default(),
        action_duration: default_duration,
        auto_retry_delay: None,
        max_concurrent: None,
    });
    // AWS starts a first execution when a pipeline is created (trigger `CreatePipeline`).
    if m.config.start_on_create {
        let who = cx.caller_arn(m);
        m.start_execution(p, cx.now, "CreatePipeline", &who, None, Default::default());
    }
    Ok(out)
}

fn update_pipeline(cx: &Cx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let Some(decl_v) = input.get("pipeline").filter(|v| !v.is_null()) else {
        let mut v = Validator::default();
        v.required("pipeline", None);
        return Err(finish(v).unwrap_err());
    };
    let name = decl_v.get("name").and_then(Value::as_str).unwrap_or("");
    let current = m
        .find(name)
        .map(|p| m.pipelines[p as usize].decl().pipeline_type);
    let decl = declaration::parse(decl_v, current.unwrap_or(PipelineType::V1))?;
    cx.check_access(m, &decl.name, &m.pipeline_arn(&decl.name))?;
    // UpdatePipeline models no PipelineNotFoundException: an unknown name is a validation error.
    let Some(p) = m.find(&decl.name) else {
        return Err(cp(
            "ValidationException",
            format!(
                "Pipeline '{}' does not exist in account '{}'",
                decl.name, m.account
            ),
        ));
    };
    let v = m.update_pipeline(p, decl, cx.now);
    Ok(json!({"pipeline": m.pipelines[p as usize].decl().to_json(v)}))
}

fn get_pipeline(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "name", str_in(input, "name")?);
    let version = int_in(input, "version")?;
    v.range("version", version, 1, i64::from(i32::MAX));
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    let pl = &m.pipelines[p as usize];
    let ver = version.map_or(pl.version(), |n| n as u32);
    let Some(decl) = pl.versions.get(ver as usize - 1) else {
        return Err(cp(
            "PipelineVersionNotFoundException",
            format!("Pipeline '{name}' has no version {ver}"),
        ));
    };
    Ok(json!({
        "pipeline": decl.to_json(ver),
        "metadata": {
            "pipelineArn": pl.arn,
            "created": epoch(pl.created),
            "updated": epoch(pl.updated),
        },
    }))
}

fn list_pipelines(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let max = int_in(input, "maxResults")?;
    let token = str_in(input, "nextToken")?;
    v.range("maxResults", max, 1, 1000);
    v.len("nextToken", token, 1, 2048);
    finish(v)?;
    let max = max.unwrap_or(1000) as usize;
    let after = match token {
        Some(t) => Some(decode_token(cx, "lp", "-", t)?),
        None => None,
    };
    let mut names: Vec<&str> = m.pipelines.iter().map(|p| p.name.as_str()).collect();
    names.sort_unstable();
    let start = after
        .as_deref()
        .map_or(0, |a| names.partition_point(|n| *n <= a));
    let page: Vec<&str> = names.iter().skip(start).take(max).copied().collect();
    let items: Vec<Value> = page
        .iter()
        .filter_map(|n| m.find(n))
        .map(|p| {
            let pl = &m.pipelines[p as usize];
            json!({
                "name": pl.name,
                "version": pl.version(),
                "pipelineType": pl.decl().pipeline_type.as_str(),
                "executionMode": pl.decl().execution_mode.as_str(),
                "created": epoch(pl.created),
                "updated": epoch(pl.updated),
            })
        })
        .collect();
    let mut out = json!({"pipelines": items});
    if start + page.len() < names.len()
        && let Some(last) = page.last()
    {
        out["nextToken"] = json!(encode_token(cx, "lp", "-", last));
    }
    Ok(out)
}

fn list_tags(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn = v.required("resourceArn", str_in(input, "resourceArn")?);
    v.len("resourceArn", str_in(input, "resourceArn")?, 1, 1011);
    let max = int_in(input, "maxResults")?;
    v.range("maxResults", max, 1, 100);
    v.len("nextToken", str_in(input, "nextToken")?, 1, 2048);
    finish(v)?;
    // arn:{partition}:codepipeline:{region}:{account}:{name}
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "codepipeline"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty();
    if !well_formed {
        return Err(cp(
            "InvalidArnException",
            format!("The ARN '{arn}' is not a valid CodePipeline resource ARN"),
        ));
    }
    let name = parts[5];
    cx.check_access(m, name, arn)?;
    let found = m.find(name).filter(|&p| m.pipelines[p as usize].arn == arn);
    let Some(p) = found else {
        return Err(cp(
            "ResourceNotFoundException",
            format!("The resource with the ARN '{arn}' was not found"),
        ));
    };
    Ok(json!({"tags": tags_json(&m.pipelines[p as usize].tags)}))
}

fn start_pipeline_execution(cx: &Cx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "name", str_in(input, "name")?);
    let token = str_in(input, "clientRequestToken")?;
    v.len("clientRequestToken", token, 1, 128);
    v.pattern(
        "clientRequestToken",
        token,
        |t| t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        CLIENT_TOKEN_PATTERN,
    );
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    // The SDK fills clientRequestToken (idempotency token): a replay returns the same execution.
    if let Some(t) = token
        && let Some(&x) = m.pipelines[p as usize].start_tokens.get(t)
    {
        return Ok(json!({"pipelineExecutionId": m.execs[x as usize].id}));
    }
    if let Some(limit) = m.pipelines[p as usize].max_concurrent
        && m.open_executions(p) >= limit
    {
        return Err(cp(
            "ConcurrentPipelineExecutionsLimitExceededException",
            format!(
                "Pipeline '{name}' has reached its limit of {limit} concurrent pipeline executions"
            ),
        ));
    }
    let who = cx.caller_arn(m);
    let x = m.start_execution(
        p,
        cx.now,
        "StartPipelineExecution",
        &who,
        None,
        Default::default(),
    );
    if let Some(t) = token {
        m.pipelines[p as usize]
            .start_tokens
            .insert(t.to_string(), x);
    }
    Ok(json!({"pipelineExecutionId": m.execs[x as usize].id}))
}

fn stop_pipeline_execution(cx: &Cx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "pipelineName", str_in(input, "pipelineName")?);
    let id = execution_id_member(
        &mut v,
        "pipelineExecutionId",
        str_in(input, "pipelineExecutionId")?,
    );
    let reason = str_in(input, "reason")?;
    v.len("reason", reason, 0, 200);
    let abandon = input
        .bool("abandon")
        .map_err(ApiError::into_bare)?
        .unwrap_or(false);
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    let not_stoppable = || {
        cp(
            "PipelineExecutionNotStoppableException",
            format!(
                "Pipeline execution '{id}' of pipeline '{name}' is not in progress and cannot be stopped"
            ),
        )
    };
    let x = m.find_exec(p, id).ok_or_else(not_stoppable)?;
    match m.stop(x, abandon, reason.map(str::to_string), cx.now) {
        Ok(()) => Ok(json!({"pipelineExecutionId": id})),
        Err(StopRefusal::NotStoppable) => Err(not_stoppable()),
        Err(StopRefusal::Duplicated) => Err(cp(
            "DuplicatedStopRequestException",
            format!("Pipeline execution '{id}' is already stopping; use abandon to stop it now"),
        )),
    }
}

fn get_pipeline_state(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "name", str_in(input, "name")?);
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    Ok(view::pipeline_state_json(&view::pipeline_state(m, p)))
}

fn list_pipeline_executions(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "pipelineName", str_in(input, "pipelineName")?);
    let max = int_in(input, "maxResults")?;
    let token = str_in(input, "nextToken")?;
    v.range("maxResults", max, 1, 100);
    v.len("nextToken", token, 1, 2048);
    let succeeded_in = input
        .get("filter")
        .and_then(|f| f.get("succeededInStage"))
        .and_then(|s| s.get("stageName"))
        .and_then(Value::as_str);
    if succeeded_in.is_some() {
        name_member(&mut v, "filter.succeededInStage.stageName", succeeded_in);
    }
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    let max = max.unwrap_or(100) as usize;
    let args = format!("{name}|{}", succeeded_in.unwrap_or("-"));
    let ids = &m.pipelines[p as usize].execs;
    let start = match token {
        Some(t) => {
            let cursor = decode_token(cx, "lpe", &args, t)?;
            let (st, x) = cursor
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<Ms>().ok()?, b.parse::<u32>().ok()?)))
                .ok_or_else(invalid_token)?;
            ids.partition_point(|&y| (m.execs[y as usize].start, y) >= (st, x))
        }
        None => 0,
    };
    let matches = |x: u32| {
        succeeded_in.is_none_or(|s| {
            m.stage_run(x, s)
                .is_some_and(|(_, r)| r.status == view::StageExecutionStatus::Succeeded)
        })
    };
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for &x in ids.iter().skip(start) {
        if !matches(x) {
            continue;
        }
        if items.len() == max {
            more = true;
            break;
        }
        items.push(view::summary_json(m, x));
        last = Some(x);
    }
    let mut out = json!({"pipelineExecutionSummaries": items});
    if more && let Some(l) = last {
        let cursor = format!("{}:{l}", m.execs[l as usize].start);
        out["nextToken"] = json!(encode_token(cx, "lpe", &args, &cursor));
    }
    Ok(out)
}

fn get_pipeline_execution(cx: &Cx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = name_member(&mut v, "pipelineName", str_in(input, "pipelineName")?);
    let id = execution_id_member(
        &mut v,
        "pipelineExecutionId",
        str_in(input, "pipelineExecutionId")?,
    );
    finish(v)?;
    cx.check_access(m, name, &m.pipeline_arn(name))?;
    let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
    let x = m.find_exec(p, id).ok_or_else(|| {
        cp(
            "PipelineExecutionNotFoundException",
            format!("Pipeline execution '{id}' does not exist in pipeline '{name}'"),
        )
    })?;
    Ok(json!({"pipelineExecution": view::execution_json(m, x)}))
}

fn retry_stage_execution(
    cx: &Cx<'_>,
    m: &mut Model,
    parsed: Result<Input, ApiError>,
    raw: &[u8],
) -> Result<Value, ApiError> {
    let raw_fields = RawRetry::of(raw);
    let before = raw_fields.manual_before(m);
    let result = (|| {
        let input = parsed?;
        let mut v = Validator::default();
        let name = name_member(&mut v, "pipelineName", str_in(&input, "pipelineName")?);
        let stage = name_member(&mut v, "stageName", str_in(&input, "stageName")?);
        let id = execution_id_member(
            &mut v,
            "pipelineExecutionId",
            str_in(&input, "pipelineExecutionId")?,
        );
        let mode_in = str_in(&input, "retryMode")?;
        let mode = v.required("retryMode", mode_in);
        v.one_of("retryMode", mode_in, StageRetryMode::ALL);
        finish(v)?;
        // Validation above guarantees a known mode.
        let mode = StageRetryMode::parse(mode).unwrap_or(StageRetryMode::FailedActions);
        // IAM resource of RetryStageExecution is the stage (api-facts §2.2).
        cx.check_access(m, name, &format!("{}/{stage}", m.pipeline_arn(name)))?;
        let p = m.find(name).ok_or_else(|| pipeline_not_found(m, name))?;
        if m.pipelines[p as usize].decl().stage_index(stage).is_none() {
            return Err(cp(
                "StageNotFoundException",
                format!("Stage '{stage}' does not exist in pipeline '{name}'"),
            ));
        }
        let (x, s) = m
            .check_retry(p, stage, id, mode)
            .map_err(|r| cp(r.code, r.message))?;
        m.retry(x, s, mode, RetryTrigger::ManualStageRetry, cx.now);
        Ok(json!({"pipelineExecutionId": id}))
    })();
    let outcome = match &result {
        Ok(_) => RetryOutcome::Retried,
        Err(e) => RetryOutcome::Refused {
            code: e.code().to_string(),
            message: e.message.clone(),
        },
    };
    cx.state
        .record_retry(raw_fields.entry(before, outcome, cx.now, cx.meta));
    result
}

// ------------------------------------------------------------------------------------------
// Page tokens: opaque, MAC-protected, bound to the request arguments (no expiry is documented).

fn invalid_token() -> ApiError {
    cp(
        "InvalidNextTokenException",
        "The next token was specified in an invalid format. Make sure that the next token you provide is the token returned by a previous call.",
    )
}

fn mac(cx: &Cx<'_>, payload: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(cx.state.token_key);
    h.update(b"codepipeline");
    h.update(payload.as_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode_token(cx: &Cx<'_>, kind: &str, args: &str, cursor: &str) -> String {
    let payload = format!("{kind}|{args}|{cursor}");
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}{}", mac(cx, &payload))
}

fn decode_token(cx: &Cx<'_>, kind: &str, args: &str, token: &str) -> Result<String, ApiError> {
    if token.len() < 18 || !token.is_ascii() || !token.len().is_multiple_of(2) {
        return Err(invalid_token());
    }
    let (hex, tag) = token.split_at(token.len() - 16);
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let payload =
        String::from_utf8(bytes.ok_or_else(invalid_token)?).map_err(|_| invalid_token())?;
    if mac(cx, &payload) != tag {
        return Err(invalid_token());
    }
    let prefix = format!("{kind}|{args}|");
    payload
        .strip_prefix(&prefix)
        .map(str::to_string)
        .ok_or_else(invalid_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids() {
        assert!(valid_execution_id("3137f7cb-7cf7-4b1a-9c2d-0123456789ab"));
        assert!(!valid_execution_id("3137F7CB-7CF7-4B1A-9C2D-0123456789AB"));
        assert!(!valid_execution_id("3137f7cb-7cf7-EXAMPLE"));
        assert!(!valid_execution_id("3137f7cb7cf74b1a9c2d0123456789abcdef"));
    }
}
