//! AWS JSON 1.0 request handling (Step Functions): validation, operations, error shapes.
//! CodePipeline requests are routed to `codepipeline::dispatch` after authentication.
//!
//! [`handle_request`] is a pure entry point (no HTTP) suitable for fuzzing: it never panics.

use serde_json::{Map, Value, json};

use super::arn::{self, Resource};
use super::codepipeline::{self, RetryOutcome};
use super::history::{self, epoch};
use super::model::{
    DAY, ExecutionStatus, Model, Ms, RedriveResult, RedriveStatus, StateMachine, sha2_hex, ts,
};
use super::scenario::{StateMachineSpec, StateMachineStatus, StateMachineType};
use super::state::{CallResult, EmulatorState, LedgerEntry, LedgerOutcome, lock};
use super::sts::{AuthFailure, SessionView};

/// Operations the emulator implements (`X-Amz-Target: AWSStepFunctions.<Op>`).
pub const OPERATIONS: &[&str] = &[
    "CreateStateMachine",
    "ListStateMachines",
    "DescribeStateMachine",
    "ListTagsForResource",
    "StartExecution",
    "ListExecutions",
    "DescribeExecution",
    "GetExecutionHistory",
    "DescribeMapRun",
    "RedriveExecution",
];

const TARGET_PREFIX: &str = "AWSStepFunctions.";
const SFN_NS: &str = "com.amazonaws.swf.service.v2.model#";
const TOKEN_TTL: Ms = DAY;

/// The operation named by an `X-Amz-Target` header value, if implemented.
pub fn operation_of(target: &str) -> Option<&'static str> {
    let op = target.trim().strip_prefix(TARGET_PREFIX)?;
    OPERATIONS.iter().copied().find(|o| *o == op)
}

/// Caller information from the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// Access key id from the SigV4 `Authorization` header.
    pub access_key_id: Option<String>,
    /// `X-Amz-Security-Token` (required, and must match, for keys issued by AssumeRole).
    pub session_token: Option<String>,
}

/// An error response.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: u16,
    pub ty: String,
    pub message: String,
    pub extra: Vec<(&'static str, Value)>,
}

impl ApiError {
    fn new(status: u16, ty: String, message: impl Into<String>) -> Self {
        ApiError {
            status,
            ty,
            message: message.into(),
            extra: Vec::new(),
        }
    }
    /// A CodePipeline-style (AWS JSON 1.1) error: bare `__type` code, HTTP 400.
    pub fn bare(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code.to_string(), message)
    }
    /// The same error with a bare `__type` and no extra members (AWS JSON 1.1 services such
    /// as CodePipeline model none of Step Functions' `reason` members).
    pub fn into_bare(mut self) -> Self {
        self.ty = self.code().to_string();
        self.extra.clear();
        self
    }
    pub fn sfn(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, format!("{SFN_NS}{code}"), message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "com.amazon.coral.validate#ValidationException".into(),
            message,
        )
    }
    pub fn throttling() -> Self {
        Self::new(
            400,
            "com.amazon.coral.availability#ThrottlingException".into(),
            "Rate exceeded",
        )
    }
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#AccessDeniedException".into(),
            message,
        )
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#SerializationException".into(),
            message,
        )
    }
    pub fn unknown_operation() -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#UnknownOperationException".into(),
            "",
        )
    }
    pub fn expired_token() -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#ExpiredTokenException".into(),
            "The security token included in the request is expired",
        )
    }
    pub fn unrecognized_client() -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#UnrecognizedClientException".into(),
            "The security token included in the request is invalid.",
        )
    }
    pub fn missing_auth() -> Self {
        Self::new(
            400,
            "com.amazon.coral.service#MissingAuthenticationTokenException".into(),
            "Missing Authentication Token",
        )
    }
    pub fn internal_failure() -> Self {
        Self::new(
            500,
            "com.amazon.coral.service#InternalFailure".into(),
            "An internal error occurred",
        )
    }
    pub fn service_unavailable() -> Self {
        Self::new(
            503,
            "com.amazon.coral.availability#ServiceUnavailableException".into(),
            "Service Unavailable",
        )
    }
    fn invalid_arn(detail: &str) -> Self {
        Self::sfn("InvalidArn", format!("Invalid Arn: '{detail}'"))
    }
    fn invalid_token(detail: &str) -> Self {
        Self::sfn("InvalidToken", format!("Invalid Token: '{detail}'"))
    }
    fn resource_not_found(arn: &str) -> Self {
        let mut e = Self::sfn("ResourceNotFound", format!("Resource not found: '{arn}'"));
        e.extra.push(("resourceName", json!(arn)));
        e
    }
    fn with_reason(mut self, reason: &str) -> Self {
        self.extra.push(("reason", json!(reason)));
        self
    }
    /// Short code (after `#`).
    pub fn code(&self) -> &str {
        self.ty.rsplit('#').next().unwrap_or(&self.ty)
    }
    pub fn body(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("__type".into(), json!(self.ty));
        m.insert("message".into(), json!(self.message));
        for (k, v) in &self.extra {
            m.insert((*k).into(), v.clone());
        }
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }
}

/// Handle one AWS JSON request without HTTP: `target` is the `X-Amz-Target` value
/// (`AWSStepFunctions.*`, JSON 1.0, or `CodePipeline_20150709.*`, JSON 1.1).
/// Returns `(HTTP status, body)`. Throttling applies; faults and authentication do not.
pub fn handle_request(state: &EmulatorState, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    dispatch(state, &RequestMeta::default(), target, body)
}

/// Authenticate the caller's access key: `Ok(Some(session))` for a valid key issued by
/// AssumeRole, `Ok(None)` for any other key (full access). An expired session key gives
/// `ExpiredTokenException`; an unknown `ASIA…` key or a wrong/missing session token gives
/// `UnrecognizedClientException`. A rejection is recorded (statistics, and the ledger for
/// RedriveExecution).
pub(crate) fn authenticate(
    state: &EmulatorState,
    meta: &RequestMeta,
    target: &str,
    body: &[u8],
    now: Ms,
) -> Result<Option<SessionView>, ApiError> {
    let failure = match lock(&state.sts).authenticate(meta, now) {
        Ok(s) => return Ok(s),
        Err(f) => f,
    };
    let e = match failure {
        AuthFailure::Expired => ApiError::expired_token(),
        AuthFailure::Invalid => ApiError::unrecognized_client(),
    };
    if codepipeline::is_target(target) {
        let e = e.into_bare();
        let op = codepipeline::operation_of(target);
        state.record_call(
            op.map_or("Unknown", codepipeline::api_key),
            CallResult::Error(e.code().to_string()),
        );
        if op == Some("RetryStageExecution") {
            codepipeline::record_unreached_retry(
                state,
                meta,
                body,
                now,
                RetryOutcome::Unauthenticated {
                    code: e.code().to_string(),
                },
            );
        }
        return Err(e);
    }
    let op = operation_of(target);
    state.record_call(
        op.unwrap_or("Unknown"),
        CallResult::Error(e.code().to_string()),
    );
    if op == Some("RedriveExecution") {
        record_unreached_redrive(
            state,
            meta,
            body,
            now,
            LedgerOutcome::Unauthenticated {
                code: e.code().to_string(),
            },
        );
    }
    Err(e)
}

/// Like [`handle_request`] with caller metadata. Keys issued by the STS stand-in are
/// authenticated and limited to their role's state machines; other keys have full access.
pub fn dispatch(
    state: &EmulatorState,
    meta: &RequestMeta,
    target: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let now = state.now_ms();
    let session = match authenticate(state, meta, target, body, now) {
        Ok(s) => s,
        Err(e) => return (e.status, e.body()),
    };
    if codepipeline::is_target(target) {
        return codepipeline::dispatch(state, meta, session, target, body, now);
    }
    let Some(op) = operation_of(target) else {
        let e = ApiError::unknown_operation();
        state.record_call("Unknown", CallResult::Error(e.code().to_string()));
        return (e.status, e.body());
    };
    if !lock(&state.throttle).try_acquire(op, now) {
        state.record_call(op, CallResult::Throttled);
        if op == "RedriveExecution" {
            record_unreached_redrive(state, meta, body, now, LedgerOutcome::Throttled);
        }
        let e = ApiError::throttling();
        return (e.status, e.body());
    }
    match run(state, meta, session, op, body, now) {
        Ok(v) => {
            state.record_call(op, CallResult::Ok);
            (
                200,
                serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
            )
        }
        Err(e) => {
            state.record_call(op, CallResult::Error(e.code().to_string()));
            (e.status, e.body())
        }
    }
}

/// Ledger entry for a RedriveExecution that never reached the model (throttled or faulted).
pub(crate) fn record_unreached_redrive(
    state: &EmulatorState,
    meta: &RequestMeta,
    body: &[u8],
    now: Ms,
    outcome: LedgerOutcome,
) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let arn = v
        .get("executionArn")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let token = v
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    let before = {
        let m = lock(&state.model);
        m.exec_by_arn(&arn)
            .map_or(0, |id| m.execs[id as usize].redrive_count)
    };
    state.record_ledger(LedgerEntry {
        execution_arn: arn,
        client_token: token,
        redrive_count_before: before,
        outcome,
        at: ts(now),
        access_key_id: meta.access_key_id.clone(),
    });
}

// ------------------------------------------------------------------------------------------
// Input helpers

pub(crate) struct Input(Map<String, Value>);

fn type_error(k: &str, expected: &str) -> ApiError {
    ApiError::serialization(format!(
        "Unexpected value for field '{k}': expected {expected}"
    ))
}

impl Input {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Input(Map::new()));
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Input(m)),
            Ok(_) => Err(ApiError::serialization(
                "Start of structure or map found where not expected.",
            )),
            Err(e) => Err(ApiError::serialization(format!("Malformed JSON: {e}"))),
        }
    }
    /// A raw member (None if absent).
    pub(crate) fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k)
    }
    pub(crate) fn str(&self, k: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(type_error(k, "a string")),
        }
    }
    pub(crate) fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None => match n.as_u64() {
                    Some(_) => Ok(Some(i64::MAX)),
                    None => Err(type_error(k, "an integer")),
                },
            },
            Some(_) => Err(type_error(k, "an integer")),
        }
    }
    pub(crate) fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(type_error(k, "a boolean")),
        }
    }
}

/// Collects coral-style constraint violations into one `ValidationException`.
#[derive(Default)]
pub(crate) struct Validator {
    errors: Vec<String>,
    missing: bool,
}

fn shown(v: &str) -> String {
    v.to_string()
}

impl Validator {
    pub(crate) fn required<'a>(&mut self, k: &str, v: Option<&'a str>) -> &'a str {
        match v {
            Some(s) => s,
            None => {
                self.missing = true;
                self.errors.push(format!(
                    "Value null at '{k}' failed to satisfy constraint: Member must not be null"
                ));
                ""
            }
        }
    }
    pub(crate) fn len(&mut self, k: &str, v: Option<&str>, min: usize, max: usize) {
        let Some(v) = v else { return };
        let n = v.chars().count();
        if n < min {
            self.errors.push(format!(
                "Value '{}' at '{k}' failed to satisfy constraint: Member must have length greater than or equal to {min}",
                shown(v)
            ));
        } else if n > max {
            self.errors.push(format!(
                "Value '{}' at '{k}' failed to satisfy constraint: Member must have length less than or equal to {max}",
                shown(v)
            ));
        }
    }
    fn printable(&mut self, k: &str, v: Option<&str>) {
        let Some(v) = v else { return };
        if !v.is_empty() && !v.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
            self.errors.push(format!(
                "Value '{}' at '{k}' failed to satisfy constraint: Member must satisfy regular expression pattern: [!-~]+",
                shown(v)
            ));
        }
    }
    /// A string that must match `pattern` (checked by `ok`).
    pub(crate) fn pattern(
        &mut self,
        k: &str,
        v: Option<&str>,
        ok: impl Fn(&str) -> bool,
        pattern: &str,
    ) {
        let Some(v) = v else { return };
        if !v.is_empty() && !ok(v) {
            self.errors.push(format!(
                "Value '{}' at '{k}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}",
                shown(v)
            ));
        }
    }
    pub(crate) fn one_of(&mut self, k: &str, v: Option<&str>, set: &[&str]) {
        let Some(v) = v else { return };
        if !set.contains(&v) {
            self.errors.push(format!(
                "Value '{}' at '{k}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                shown(v),
                set.join(", ")
            ));
        }
    }
    pub(crate) fn range(&mut self, k: &str, v: Option<i64>, min: i64, max: i64) {
        let Some(v) = v else { return };
        if v < min {
            self.errors.push(format!(
                "Value '{v}' at '{k}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
            ));
        } else if v > max {
            self.errors.push(format!(
                "Value '{v}' at '{k}' failed to satisfy constraint: Member must have value less than or equal to {max}"
            ));
        }
    }
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.errors.len() {
            0 => Ok(()),
            n => {
                let head = if n == 1 {
                    "1 validation error detected: ".to_string()
                } else {
                    format!("{n} validation errors detected: ")
                };
                let e = ApiError::validation(format!("{head}{}", self.errors.join("; ")));
                Err(if self.missing {
                    e.with_reason("MISSING_REQUIRED_PARAMETER")
                } else {
                    e
                })
            }
        }
    }
}

const STATUSES: &[&str] = &[
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
];
const INCLUDED_DATA: &[&str] = &["ALL_DATA", "METADATA_ONLY"];

// ------------------------------------------------------------------------------------------
// Page tokens: opaque, bound to the request arguments, expire after 24 h of emulated time.

fn args_hash(parts: &[&str]) -> String {
    sha2_hex(&parts.join("\u{1}"))[..16].to_string()
}

fn mac(key: &[u8; 32], payload: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key);
    h.update(payload.as_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn encode_token(key: &[u8; 32], kind: &str, args: &str, now: Ms, cursor: &str) -> String {
    let payload = format!("{kind}|{args}|{now}|{cursor}");
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}{}", mac(key, &payload))
}

fn decode_token(
    key: &[u8; 32],
    kind: &str,
    args: &str,
    now: Ms,
    token: &str,
) -> Result<String, ApiError> {
    let bad = || ApiError::invalid_token("Invalid token");
    if token.len() < 18 || !token.is_ascii() || !token.len().is_multiple_of(2) {
        return Err(bad());
    }
    let (hex, tag) = token.split_at(token.len() - 16);
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let payload = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
    if mac(key, &payload) != tag {
        return Err(bad());
    }
    let mut parts = payload.splitn(4, '|');
    let (Some(k), Some(a), Some(issued), Some(cursor)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if k != kind || a != args {
        return Err(ApiError::invalid_token(
            "Token does not match the request arguments",
        ));
    }
    let issued: Ms = issued.parse().map_err(|_| bad())?;
    if now.saturating_sub(issued) > TOKEN_TTL {
        return Err(ApiError::invalid_token("Token has expired"));
    }
    Ok(cursor.to_string())
}

// ------------------------------------------------------------------------------------------
// Operations

struct Ctx<'a> {
    state: &'a EmulatorState,
    meta: &'a RequestMeta,
    /// The caller's assumed-role session (None = static key, full access).
    session: Option<SessionView>,
    op: &'static str,
    now: Ms,
}

fn run(
    state: &EmulatorState,
    meta: &RequestMeta,
    session: Option<SessionView>,
    op: &'static str,
    body: &[u8],
    now: Ms,
) -> Result<Value, ApiError> {
    let parsed = Input::parse(body);
    let mut m = lock(&state.model);
    m.settle(now);
    let cx = Ctx {
        state,
        meta,
        session,
        op,
        now,
    };
    if op == "RedriveExecution" {
        return redrive_execution(&cx, &mut m, parsed, body);
    }
    let input = parsed?;
    match op {
        "CreateStateMachine" => create_state_machine(&cx, &mut m, &input),
        "ListStateMachines" => list_state_machines(&cx, &m, &input),
        "DescribeStateMachine" => describe_state_machine(&cx, &m, &input),
        "ListTagsForResource" => list_tags(&cx, &m, &input),
        "StartExecution" => start_execution(&cx, &mut m, &input),
        "ListExecutions" => list_executions(&cx, &m, &input),
        "DescribeExecution" => describe_execution(&cx, &m, &input),
        "GetExecutionHistory" => get_execution_history(&cx, &m, &input),
        "DescribeMapRun" => describe_map_run(&cx, &m, &input),
        _ => Err(ApiError::unknown_operation()),
    }
}

impl Ctx<'_> {
    /// AccessDenied if the base state machine (or its labelled ARN) is configured as denied, or
    /// is outside the caller's assumed role.
    fn check_access(&self, m: &Model, sm_name: &str, resource: &str) -> Result<(), ApiError> {
        self.check_denied(m, sm_name, resource)?;
        self.check_role(m, sm_name, resource)
    }

    /// AccessDenied if the caller is an assumed-role session whose role does not cover the
    /// (base) state machine `sm_name` of `resource`.
    fn check_role(&self, m: &Model, sm_name: &str, resource: &str) -> Result<(), ApiError> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        let base = sm_name.split('/').next().unwrap_or(sm_name);
        // The state machine ARN in the resource's own partition/region/account.
        let sm_arn = match arn::parse(resource) {
            Ok(a) => format!(
                "arn:{}:states:{}:{}:stateMachine:{base}",
                resource.split(':').nth(1).unwrap_or(m.partition),
                a.region,
                a.account
            ),
            Err(_) => m.sm_arn(base),
        };
        if session.allows(base, &sm_arn) {
            return Ok(());
        }
        Err(ApiError::access_denied(format!(
            "User: {} is not authorized to perform: states:{} on resource: {resource} because no identity-based policy allows the states:{} action",
            session.assumed_role_arn, self.op, self.op
        )))
    }

    fn check_denied(&self, m: &Model, sm_name: &str, resource: &str) -> Result<(), ApiError> {
        let denied = &self
            .state
            .faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .access_denied_state_machines;
        if denied.is_empty() {
            return Ok(());
        }
        let base = sm_name.split('/').next().unwrap_or(sm_name);
        let base_arn = m.sm_arn(base);
        let full_arn = m.sm_arn(sm_name);
        if denied.iter().any(|d| *d == base_arn || *d == full_arn) {
            let who = self
                .meta
                .access_key_id
                .as_deref()
                .unwrap_or("emulator-user");
            return Err(ApiError::access_denied(format!(
                "User: arn:{}:iam::{}:user/{who} is not authorized to perform: states:{} on resource: {resource} because no identity-based policy allows the states:{} action",
                m.partition, m.account, self.op, self.op
            )));
        }
        Ok(())
    }

    fn token_key(&self) -> &[u8; 32] {
        &self.state.token_key
    }
}

fn sm_list_item(sm: &StateMachine) -> Value {
    json!({
        "stateMachineArn": sm.arn,
        "name": sm.name,
        "type": sm.kind.as_str(),
        "creationDate": epoch(sm.created),
    })
}

fn create_state_machine(cx: &Ctx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let name = v.required("name", input.str("name")?);
    let definition = v.required("definition", input.str("definition")?);
    let role = v.required("roleArn", input.str("roleArn")?);
    v.len("name", input.str("name")?, 1, 80);
    v.len("definition", input.str("definition")?, 1, 1_048_576);
    v.len("roleArn", input.str("roleArn")?, 1, 256);
    v.one_of("type", input.str("type")?, &["STANDARD", "EXPRESS"]);
    v.finish()?;
    let kind = match input.str("type")? {
        Some("EXPRESS") => StateMachineType::Express,
        _ => StateMachineType::Standard,
    };
    if !arn::valid_name(name) {
        return Err(ApiError::sfn(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    match serde_json::from_str::<Value>(definition) {
        Ok(Value::Object(d)) if d.contains_key("StartAt") && d.contains_key("States") => {}
        _ => {
            return Err(ApiError::sfn(
                "InvalidDefinition",
                "Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The field \"StartAt\" or \"States\" is missing or the definition is not valid JSON'",
            ));
        }
    }
    if !role.starts_with("arn:") {
        return Err(ApiError::invalid_arn(&format!(
            "Invalid ARN prefix: {role}"
        )));
    }
    cx.check_role(m, name, &m.sm_arn(name))?;
    let mut tags = std::collections::BTreeMap::new();
    match input.0.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for t in items {
                let k = t.get("key").and_then(Value::as_str);
                let val = t.get("value").and_then(Value::as_str).unwrap_or_default();
                match k {
                    Some(k) => {
                        tags.insert(k.to_string(), val.to_string());
                    }
                    None => return Err(type_error("tags", "a list of {key, value}")),
                }
            }
        }
        Some(_) => return Err(type_error("tags", "a list")),
    }
    if let Some(i) = m.find_sm(name) {
        let sm = &m.sms[i as usize];
        if sm.definition == definition && sm.role_arn == role && sm.kind == kind {
            return Ok(json!({"stateMachineArn": sm.arn, "creationDate": epoch(sm.created)}));
        }
        return Err(ApiError::sfn(
            "StateMachineAlreadyExists",
            format!("State Machine Already Exists: '{}'", sm.arn),
        ));
    }
    let spec = StateMachineSpec {
        name: name.to_string(),
        kind,
        tags,
        definition: Some(definition.to_string()),
        role_arn: Some(role.to_string()),
        created_ago: Some(std::time::Duration::ZERO.into()),
        ..Default::default()
    };
    let i = m.create_sm(&spec, cx.now);
    let sm = &m.sms[i as usize];
    Ok(json!({"stateMachineArn": sm.arn, "creationDate": epoch(sm.created)}))
}

fn list_state_machines(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let max = input.int("maxResults")?;
    let token = input.str("nextToken")?;
    v.range("maxResults", max, 0, 1000);
    v.len("nextToken", token, 1, 1024);
    v.finish()?;
    let max = match max {
        None | Some(0) => 100,
        Some(n) => n as usize,
    };
    let args = args_hash(&["lsm"]);
    let after = match token {
        Some(t) => Some(decode_token(cx.token_key(), "lsm", &args, cx.now, t)?),
        None => None,
    };
    let mut names: Vec<&StateMachine> = m.sms.iter().filter(|s| s.parent.is_none()).collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let start = match &after {
        Some(a) => names.partition_point(|s| s.name.as_str() <= a.as_str()),
        None => 0,
    };
    let page: Vec<&StateMachine> = names.iter().skip(start).take(max).copied().collect();
    let more = start + page.len() < names.len();
    let mut out =
        json!({"stateMachines": page.iter().map(|s| sm_list_item(s)).collect::<Vec<_>>()});
    if more && let Some(last) = page.last() {
        out["nextToken"] = json!(encode_token(
            cx.token_key(),
            "lsm",
            &args,
            cx.now,
            &last.name
        ));
    }
    Ok(out)
}

/// Resolve a state machine ARN: Ok((index, qualifier)).
fn lookup_sm<'a>(
    m: &Model,
    s: &'a str,
) -> Result<(Option<u32>, Option<&'a str>, &'a str), ApiError> {
    let a = arn::parse(s).map_err(|d| ApiError::invalid_arn(&d))?;
    let Resource::StateMachine { name, qualifier } = a.resource else {
        return Err(ApiError::invalid_arn(&format!(
            "Resource type not valid in this context: {}",
            a.resource.type_name()
        )));
    };
    let found = if m.is_local(&a) {
        m.find_sm(name)
    } else {
        None
    };
    Ok((found, qualifier, name))
}

fn sm_does_not_exist(arn: &str) -> ApiError {
    ApiError::sfn(
        "StateMachineDoesNotExist",
        format!("State Machine Does Not Exist: '{arn}'"),
    )
}

fn describe_state_machine(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("stateMachineArn", input.str("stateMachineArn")?);
    v.len("stateMachineArn", input.str("stateMachineArn")?, 1, 256);
    v.one_of("includedData", input.str("includedData")?, INCLUDED_DATA);
    v.finish()?;
    let (found, qualifier, name) = lookup_sm(m, arn_s)?;
    cx.check_access(m, name, arn_s)?;
    let (Some(i), None) = (found, qualifier) else {
        return Err(sm_does_not_exist(arn_s));
    };
    let sm = &m.sms[i as usize];
    let base = &m.sms[m.base_sm(i) as usize];
    let mut out = json!({
        "stateMachineArn": sm.arn,
        "name": base.name,
        "status": base.status.as_str(),
        "definition": sm.definition,
        "roleArn": sm.role_arn,
        "type": base.kind.as_str(),
        "creationDate": epoch(sm.created),
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
        "tracingConfiguration": {"enabled": false},
        "revisionId": sha2_hex(&format!("{}:{}", sm.arn, sm.revision))[..32],
    });
    if let Some(d) = &base.description {
        out["description"] = json!(d);
    }
    if let Some(l) = &sm.label {
        out["label"] = json!(l);
    }
    Ok(out)
}

fn list_tags(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("resourceArn", input.str("resourceArn")?);
    v.len("resourceArn", input.str("resourceArn")?, 1, 256);
    v.finish()?;
    let a = arn::parse(arn_s).map_err(|d| ApiError::invalid_arn(&d))?;
    let name = match a.resource {
        Resource::StateMachine {
            name,
            qualifier: None,
        } => name,
        Resource::Activity | Resource::StateMachine { .. } => {
            return Err(ApiError::resource_not_found(arn_s));
        }
        other => {
            return Err(ApiError::invalid_arn(&format!(
                "Resource type not valid in this context: {}",
                other.type_name()
            )));
        }
    };
    cx.check_access(m, name, arn_s)?;
    let found = if m.is_local(&a) {
        m.find_sm(name)
    } else {
        None
    };
    match found {
        Some(i) if m.sms[i as usize].parent.is_none() => {
            let tags: Vec<Value> = m.sms[i as usize]
                .tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            Ok(json!({ "tags": tags }))
        }
        _ => Err(ApiError::resource_not_found(arn_s)),
    }
}

fn start_execution(cx: &Ctx<'_>, m: &mut Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("stateMachineArn", input.str("stateMachineArn")?);
    v.len("stateMachineArn", input.str("stateMachineArn")?, 1, 256);
    v.len("name", input.str("name")?, 1, 80);
    v.len("input", input.str("input")?, 0, 262_144);
    v.len("traceHeader", input.str("traceHeader")?, 0, 256);
    v.finish()?;
    let (found, qualifier, sm_name) = lookup_sm(m, arn_s)?;
    cx.check_access(m, sm_name, arn_s)?;
    let (Some(i), None) = (found, qualifier) else {
        return Err(sm_does_not_exist(arn_s));
    };
    if m.sms[i as usize].parent.is_some() {
        return Err(ApiError::validation(
            "Labelled state machine ARNs are not supported by this API",
        )
        .with_reason("API_DOES_NOT_SUPPORT_LABELED_ARNS"));
    }
    if m.sms[i as usize].status == StateMachineStatus::Deleting {
        return Err(ApiError::sfn(
            "StateMachineDeleting",
            format!("State Machine is being deleted: '{arn_s}'"),
        ));
    }
    let name = match input.str("name")? {
        Some(n) => n.to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    if !arn::valid_name(&name) {
        return Err(ApiError::sfn(
            "InvalidName",
            format!("Invalid Name: '{name}'"),
        ));
    }
    let exec_input = input.str("input")?.unwrap_or("{}");
    if serde_json::from_str::<Value>(exec_input).is_err() {
        return Err(ApiError::sfn(
            "InvalidExecutionInput",
            "Invalid execution input: the input is not valid JSON",
        ));
    }
    let sm_full = m.sms[i as usize].name.clone();
    if m.sms[i as usize].kind == StateMachineType::Express {
        m.sms[i as usize].express_started += 1;
        let arn = format!(
            "arn:{}:states:{}:{}:express:{sm_full}:{name}:{}",
            m.partition,
            m.region,
            m.account,
            uuid::Uuid::new_v4()
        );
        return Ok(json!({"executionArn": arn, "startDate": epoch(cx.now)}));
    }
    if let Some(existing) = m.find_exec(&sm_full, &name) {
        let e = &m.execs[existing as usize];
        if e.status == ExecutionStatus::Running && &*e.input == exec_input {
            return Ok(json!({"executionArn": m.exec_arn(existing), "startDate": epoch(e.start)}));
        }
        return Err(ApiError::sfn(
            "ExecutionAlreadyExists",
            format!("Execution Already Exists: '{}'", m.exec_arn(existing)),
        ));
    }
    if m.open >= m.max_open {
        return Err(limit_exceeded());
    }
    let id = m.start_execution(i, &name, exec_input, cx.now);
    Ok(json!({"executionArn": m.exec_arn(id), "startDate": epoch(cx.now)}))
}

fn limit_exceeded() -> ApiError {
    ApiError::sfn(
        "ExecutionLimitExceeded",
        "The maximum number of running executions has been reached. Running executions must end or be stopped before a new execution can be started.",
    )
}

fn list_executions(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let sm_arn = input.str("stateMachineArn")?;
    let mr_arn = input.str("mapRunArn")?;
    let status = input.str("statusFilter")?;
    let redrive = input.str("redriveFilter")?;
    let max = input.int("maxResults")?;
    let token = input.str("nextToken")?;
    v.len("stateMachineArn", sm_arn, 1, 256);
    v.len("mapRunArn", mr_arn, 1, 2000);
    v.one_of("statusFilter", status, STATUSES);
    v.one_of("redriveFilter", redrive, &["REDRIVEN", "NOT_REDRIVEN"]);
    v.range("maxResults", max, 0, 1000);
    v.len("nextToken", token, 1, 3096);
    v.finish()?;
    let status = status.and_then(ExecutionStatus::parse);
    let max = match max {
        None | Some(0) => 100,
        Some(n) => n as usize,
    };
    let (ids, by_map_run, mr_arn_out): (&[u32], bool, Option<&str>) = match (sm_arn, mr_arn) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "Exactly one of stateMachineArn or mapRunArn must be specified, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::validation(
                "Exactly one of stateMachineArn or mapRunArn must be specified",
            )
            .with_reason("MISSING_REQUIRED_PARAMETER"));
        }
        (Some(s), None) => {
            let (found, qualifier, name) = lookup_sm(m, s)?;
            cx.check_access(m, name, s)?;
            let Some(i) = found else {
                return Err(sm_does_not_exist(s));
            };
            let sm = &m.sms[i as usize];
            if sm.kind == StateMachineType::Express {
                return Err(ApiError::sfn(
                    "StateMachineTypeNotSupported",
                    "This operation is not supported by EXPRESS state machines",
                ));
            }
            if status == Some(ExecutionStatus::PendingRedrive) {
                return Err(ApiError::validation(
                    "The PENDING_REDRIVE status filter is only supported when listing by mapRunArn",
                ));
            }
            // Version/alias qualifiers are not modelled: no execution was started through one.
            let ids: &[u32] = if qualifier.is_some() { &[] } else { &sm.index };
            (ids, false, None)
        }
        (None, Some(r)) => {
            let a = arn::parse(r).map_err(|d| ApiError::invalid_arn(&d))?;
            let Resource::MapRun { sm, .. } = a.resource else {
                return Err(ApiError::invalid_arn(&format!(
                    "Resource type not valid in this context: {}",
                    a.resource.type_name()
                )));
            };
            cx.check_access(m, sm, r)?;
            let Some(&mr) = m.map_run_by_arn.get(r) else {
                return Err(ApiError::resource_not_found(r));
            };
            let mr_ref = &m.map_runs[mr as usize];
            (&mr_ref.children[..], true, Some(mr_ref.arn.as_str()))
        }
    };
    let args = args_hash(&[
        sm_arn.unwrap_or("-"),
        mr_arn.unwrap_or("-"),
        status.map_or("-", |s| s.as_str()),
        redrive.unwrap_or("-"),
    ]);
    let start = match token {
        Some(t) => {
            let cursor = decode_token(cx.token_key(), "le", &args, cx.now, t)?;
            let (st, id) = cursor
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<Ms>().ok()?, b.parse::<u32>().ok()?)))
                .ok_or_else(|| ApiError::invalid_token("Invalid token"))?;
            ids.partition_point(|&x| (m.execs[x as usize].start, x) >= (st, id))
        }
        None => 0,
    };
    let matches = |id: u32| {
        let e = &m.execs[id as usize];
        status.is_none_or(|s| e.status == s)
            && match redrive {
                Some("REDRIVEN") => e.redrive_count > 0,
                Some("NOT_REDRIVEN") => e.redrive_count == 0,
                _ => true,
            }
    };
    let mut items = Vec::new();
    let mut last: Option<u32> = None;
    let mut more = false;
    for &id in ids.iter().skip(start) {
        if !matches(id) {
            continue;
        }
        if items.len() == max {
            more = true;
            break;
        }
        let e = &m.execs[id as usize];
        let mut it = json!({
            "executionArn": m.exec_arn(id),
            "stateMachineArn": m.sms[e.sm as usize].arn,
            "name": &*e.name,
            "status": e.status.as_str(),
            "startDate": epoch(e.start),
            "redriveCount": e.redrive_count,
        });
        if let Some(s) = e.stop {
            it["stopDate"] = epoch(s);
        }
        if let Some(r) = e.redrive_date {
            it["redriveDate"] = epoch(r);
        }
        if by_map_run {
            it["mapRunArn"] = json!(mr_arn_out);
            it["itemCount"] = json!(1);
        }
        items.push(it);
        last = Some(id);
    }
    let mut out = json!({ "executions": items });
    if more && let Some(l) = last {
        let cursor = format!("{}:{l}", m.execs[l as usize].start);
        out["nextToken"] = json!(encode_token(cx.token_key(), "le", &args, cx.now, &cursor));
    }
    Ok(out)
}

/// Resolve an execution ARN for Describe/History/Redrive.
fn lookup_exec(cx: &Ctx<'_>, m: &Model, s: &str) -> Result<u32, ApiError> {
    let a = arn::parse(s).map_err(|d| ApiError::invalid_arn(&d))?;
    let not_found = || {
        ApiError::sfn(
            "ExecutionDoesNotExist",
            format!("Execution Does Not Exist: '{s}'"),
        )
    };
    match a.resource {
        Resource::Execution { sm, name } => {
            cx.check_access(m, sm, s)?;
            if !m.is_local(&a) {
                return Err(not_found());
            }
            m.find_exec(sm, name).ok_or_else(not_found)
        }
        Resource::Express { sm } => {
            cx.check_access(m, sm, s)?;
            Err(not_found())
        }
        other => Err(ApiError::invalid_arn(&format!(
            "Resource type not valid in this context: {}",
            other.type_name()
        ))),
    }
}

fn describe_execution(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("executionArn", input.str("executionArn")?);
    v.len("executionArn", input.str("executionArn")?, 1, 256);
    v.one_of("includedData", input.str("includedData")?, INCLUDED_DATA);
    v.finish()?;
    let metadata_only = input.str("includedData")? == Some("METADATA_ONLY");
    let id = lookup_exec(cx, m, arn_s)?;
    let e = &m.execs[id as usize];
    let (rs, reason) = m.redrive_status(id, cx.now);
    let mut out = json!({
        "executionArn": m.exec_arn(id),
        "stateMachineArn": m.sms[e.sm as usize].arn,
        "name": &*e.name,
        "status": e.status.as_str(),
        "startDate": epoch(e.start),
        "redriveCount": e.redrive_count,
        "redriveStatus": rs.as_str(),
    });
    if !metadata_only {
        out["input"] = json!(&*e.input);
        out["inputDetails"] = json!({"included": true});
    }
    if let Some(s) = e.stop {
        out["stopDate"] = epoch(s);
    }
    if e.status != ExecutionStatus::Running
        && let Some(o) = e.current_outcome()
    {
        if let Some(err) = o.error() {
            out["error"] = json!(err);
        }
        if let Some(c) = o.cause() {
            out["cause"] = json!(c);
        }
        if let super::scenario::Outcome::Succeed { output } = &**o
            && !metadata_only
        {
            out["output"] = json!(output.as_deref().unwrap_or("{}"));
            out["outputDetails"] = json!({"included": true});
        }
    }
    if let Some(r) = e.redrive_date {
        out["redriveDate"] = epoch(r);
    }
    if let (RedriveStatus::NotRedrivable, Some(r)) = (rs, reason) {
        out["redriveStatusReason"] = json!(r);
    }
    if let Some(mr) = e.map_run {
        out["mapRunArn"] = json!(m.map_runs[mr as usize].arn);
    }
    Ok(out)
}

fn get_execution_history(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("executionArn", input.str("executionArn")?);
    v.len("executionArn", input.str("executionArn")?, 1, 256);
    let max = input.int("maxResults")?;
    let token = input.str("nextToken")?;
    v.range("maxResults", max, 0, 1000);
    v.len("nextToken", token, 1, 1024);
    let reverse = input.bool("reverseOrder")?.unwrap_or(false);
    let include = input.bool("includeExecutionData")?.unwrap_or(true);
    v.finish()?;
    let max = match max {
        None | Some(0) => 100,
        Some(n) => n as u32,
    };
    let id = lookup_exec(cx, m, arn_s)?;
    let total = m.execs[id as usize].history_len;
    let args = args_hash(&[
        arn_s,
        if reverse { "r" } else { "f" },
        if include { "d" } else { "n" },
    ]);
    let first: u32 = match token {
        Some(t) => decode_token(cx.token_key(), "geh", &args, cx.now, t)?
            .parse()
            .map_err(|_| ApiError::invalid_token("Invalid token"))?,
        None if reverse => total,
        None => 1,
    };
    let mut events = Vec::new();
    let mut next = first;
    while events.len() < max as usize && next >= 1 && next <= total {
        if let Some(ev) = history::event(m, id, next, include) {
            events.push(ev);
        }
        next = if reverse { next - 1 } else { next + 1 };
    }
    let mut out = json!({ "events": events });
    if next >= 1 && next <= total {
        out["nextToken"] = json!(encode_token(
            cx.token_key(),
            "geh",
            &args,
            cx.now,
            &next.to_string()
        ));
    }
    Ok(out)
}

fn describe_map_run(cx: &Ctx<'_>, m: &Model, input: &Input) -> Result<Value, ApiError> {
    let mut v = Validator::default();
    let arn_s = v.required("mapRunArn", input.str("mapRunArn")?);
    v.len("mapRunArn", input.str("mapRunArn")?, 1, 2000);
    v.finish()?;
    let a = arn::parse(arn_s).map_err(|d| ApiError::invalid_arn(&d))?;
    let Resource::MapRun { sm, .. } = a.resource else {
        return Err(ApiError::invalid_arn(&format!(
            "Resource type not valid in this context: {}",
            a.resource.type_name()
        )));
    };
    cx.check_access(m, sm, arn_s)?;
    let Some(&mr) = m.map_run_by_arn.get(arn_s) else {
        return Err(ApiError::resource_not_found(arn_s));
    };
    let r = &m.map_runs[mr as usize];
    let mut counts = [0u64; 5]; // running, succeeded, failed, timedOut, aborted
    let mut stop: Option<Ms> = None;
    let mut not_redrivable = 0u64;
    for &c in &r.children {
        let e = &m.execs[c as usize];
        let slot = match e.status {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => 0,
            ExecutionStatus::Succeeded => 1,
            ExecutionStatus::Failed => 2,
            ExecutionStatus::TimedOut => 3,
            ExecutionStatus::Aborted => 4,
        };
        counts[slot] += 1;
        if e.status.is_unsuccessful()
            && m.redrive_status(c, cx.now).0 == RedriveStatus::NotRedrivable
        {
            not_redrivable += 1;
        }
        stop = stop.max(e.stop);
    }
    let status = if counts[0] > 0 {
        "RUNNING"
    } else if counts[2] > 0 || counts[3] > 0 {
        "FAILED"
    } else if counts[4] > 0 {
        "ABORTED"
    } else {
        "SUCCEEDED"
    };
    let c = json!({
        "pending": 0, "running": counts[0], "succeeded": counts[1], "failed": counts[2],
        "timedOut": counts[3], "aborted": counts[4], "total": r.children.len(),
        "resultsWritten": counts[1], "failuresNotRedrivable": not_redrivable, "pendingRedrive": 0,
    });
    let mut out = json!({
        "mapRunArn": r.arn,
        "executionArn": m.exec_arn(r.parent_exec),
        "status": status,
        "startDate": epoch(r.start),
        "maxConcurrency": 0,
        "toleratedFailurePercentage": 0.0,
        "toleratedFailureCount": 0,
        "itemCounts": c.clone(),
        "executionCounts": c,
        "redriveCount": r.redrive_count,
    });
    if status != "RUNNING"
        && let Some(s) = stop
    {
        out["stopDate"] = epoch(s);
    }
    if let Some(d) = r.redrive_date {
        out["redriveDate"] = epoch(d);
    }
    Ok(out)
}

fn redrive_execution(
    cx: &Ctx<'_>,
    m: &mut Model,
    parsed: Result<Input, ApiError>,
    raw: &[u8],
) -> Result<Value, ApiError> {
    let lenient: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let arn_raw = lenient
        .get("executionArn")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let token_raw = lenient
        .get("clientToken")
        .and_then(Value::as_str)
        .map(str::to_string);
    let before = m
        .exec_by_arn(&arn_raw)
        .map_or(0, |id| m.execs[id as usize].redrive_count);
    let record = |outcome: LedgerOutcome| {
        cx.state.record_ledger(LedgerEntry {
            execution_arn: arn_raw.clone(),
            client_token: token_raw.clone(),
            redrive_count_before: before,
            outcome,
            at: ts(cx.now),
            access_key_id: cx.meta.access_key_id.clone(),
        });
    };
    let result: Result<(u32, Option<String>), ApiError> = (|| {
        let input = parsed?;
        let mut v = Validator::default();
        let arn_s = v.required("executionArn", input.str("executionArn")?);
        v.len("executionArn", input.str("executionArn")?, 1, 256);
        let token = input.str("clientToken")?;
        v.len("clientToken", token, 1, 64);
        v.printable("clientToken", token);
        v.finish()?;
        let id = lookup_exec(cx, m, arn_s)?;
        Ok((id, token.map(str::to_string)))
    })();
    let (id, token) = match result {
        Ok(x) => x,
        Err(e) => {
            record(match e.code() {
                "ExecutionDoesNotExist" => LedgerOutcome::DoesNotExist,
                "InvalidArn" => LedgerOutcome::InvalidArn,
                "AccessDeniedException" => LedgerOutcome::AccessDenied,
                _ => LedgerOutcome::ValidationError {
                    message: e.message.clone(),
                },
            });
            return Err(e);
        }
    };
    match m.redrive(id, token.as_deref(), cx.now) {
        RedriveResult::Redriven(at) => {
            record(LedgerOutcome::Redriven {
                redrive_date: ts(at),
            });
            Ok(json!({ "redriveDate": epoch(at) }))
        }
        RedriveResult::Replayed(at) => {
            record(LedgerOutcome::Replayed {
                redrive_date: ts(at),
            });
            Ok(json!({ "redriveDate": epoch(at) }))
        }
        RedriveResult::NotRedrivable(reason) => {
            record(LedgerOutcome::NotRedrivable {
                reason: reason.to_string(),
            });
            Err(ApiError::sfn("ExecutionNotRedrivable", reason))
        }
        RedriveResult::LimitExceeded => {
            record(LedgerOutcome::LimitExceeded);
            Err(limit_exceeded())
        }
        RedriveResult::TokenConflict => {
            let msg = format!(
                "Client token '{}' was already used to redrive a different execution",
                token.unwrap_or_default()
            );
            record(LedgerOutcome::ValidationError {
                message: msg.clone(),
            });
            Err(ApiError::validation(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_roundtrip_and_expiry() {
        let key = [7u8; 32];
        let t = encode_token(&key, "le", "abc", 1000, "5:7");
        assert_eq!(decode_token(&key, "le", "abc", 2000, &t).unwrap(), "5:7");
        assert!(decode_token(&key, "le", "abd", 2000, &t).is_err());
        assert!(decode_token(&key, "le", "abc", 1000 + DAY + 1, &t).is_err());
        assert!(decode_token(&key, "le", "abc", 2000, "zz").is_err());
        assert!(decode_token(&key, "le", "abc", 2000, "ééééééééééééééééééé").is_err());
    }
}
