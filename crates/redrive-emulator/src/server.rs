//! HTTP layer: AWS JSON 1.0 (Step Functions), AWS JSON 1.1 (CodePipeline) and awsQuery (STS)
//! on `POST /`, admin API under `/_emulator/`, fault injection.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::api::{self, ApiError, RequestMeta, operation_of};
use super::codepipeline::{self, ActionOutcome, PipelineSpec, RetryOutcome};
use super::config::FaultConfig;
use super::events::EventFaults;
use super::scenario::Scenario;
use super::state::{CallResult, EmulatorState, LedgerOutcome, lock};
use super::sts;

pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// CodePipeline speaks AWS JSON 1.1.
pub(crate) const CONTENT_TYPE_1_1: &str = "application/x-amz-json-1.1";

/// The service an `X-Amz-Target` addresses, for response shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    StepFunctions,
    CodePipeline,
}

impl Service {
    fn of(target: &str) -> Self {
        if codepipeline::is_target(target) {
            Service::CodePipeline
        } else {
            Service::StepFunctions
        }
    }
    fn content_type(self) -> &'static str {
        match self {
            Service::StepFunctions => CONTENT_TYPE,
            Service::CodePipeline => CONTENT_TYPE_1_1,
        }
    }
    /// Common errors in this service's shape (bare `__type` codes for JSON 1.1).
    fn shape(self, e: ApiError) -> ApiError {
        match self {
            Service::StepFunctions => e,
            Service::CodePipeline => e.into_bare(),
        }
    }
    /// The operation and its statistics key, if implemented.
    fn api(self, target: &str) -> Option<(&'static str, &'static str)> {
        match self {
            Service::StepFunctions => operation_of(target).map(|op| (op, op)),
            Service::CodePipeline => {
                codepipeline::operation_of(target).map(|op| (op, codepipeline::api_key(op)))
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Listener whose connections can be killed from a handler (the "drop" fault).

/// Connection info: peer address plus a kill switch.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    #[allow(dead_code)]
    pub remote: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl ConnInfo {
    pub(crate) fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

pub(crate) struct ConnListener(pub TcpListener);

pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl Listener for ConnListener {
    type Io = KillableStream;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((s, remote)) => {
                    let _ = s.set_nodelay(true);
                    let kill = Arc::new(AtomicBool::new(false));
                    return (
                        KillableStream {
                            inner: s,
                            kill: kill.clone(),
                        },
                        ConnInfo { remote, kill },
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ConnInfo {
            remote: self.0.local_addr()?,
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, ConnListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, ConnListener>) -> Self {
        stream.remote_addr().clone()
    }
}

fn killed() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "connection dropped by fault injection",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.kill.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ------------------------------------------------------------------------------------------
// Router

pub(crate) fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/", post(aws).get(root_get))
        .route("/_emulator/health", get(health))
        .route("/_emulator/ledger", get(ledger))
        .route("/_emulator/sts", get(sts_ledger))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/clock", get(clock))
        .route("/_emulator/clock/advance", post(advance_clock))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/events/stats", get(event_stats))
        .route(
            "/_emulator/events/faults",
            get(get_event_faults).put(put_event_faults),
        )
        .route("/_emulator/scenario", post(seed))
        .route("/_emulator/executions", get(get_execution))
        .route("/_emulator/executions/fail", post(fail_execution))
        .route("/_emulator/codepipeline/ledger", get(cp_ledger))
        .route(
            "/_emulator/codepipeline/pipelines/{name}",
            get(cp_pipeline_state),
        )
        .route(
            "/_emulator/codepipeline/pipelines/{name}/executions",
            get(cp_executions).post(cp_start_execution),
        )
        .route(
            "/_emulator/codepipeline/pipelines/{name}/update",
            post(cp_update_pipeline),
        )
        .route(
            "/_emulator/codepipeline/actions/complete",
            post(cp_complete_action),
        )
        .merge(crate::flowservice::router())
        .fallback(not_found)
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            date_header,
        ))
        .with_state(state)
}

/// Every answer's `Date` is the emulated clock, as AWS and Adobe answer with theirs: clients
/// that estimate clock skew from it (the SDKs for signing, the operator for ages) see the
/// emulator's offset.
async fn date_header(State(st): State<Arc<EmulatorState>>, mut r: Response) -> Response {
    let date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&st.now());
    if let Ok(v) = date.map(|d| HeaderValue::from_str(&d))
        && let Ok(v) = v
    {
        r.headers_mut().insert(header::DATE, v);
    }
    r
}

fn aws_response(status: u16, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

fn error_response(e: &ApiError) -> Response {
    aws_response(e.status, e.body(), CONTENT_TYPE)
}

fn service_error(service: Service, e: ApiError) -> Response {
    let e = service.shape(e);
    aws_response(e.status, e.body(), service.content_type())
}

/// An STS (awsQuery) request: no `X-Amz-Target` and a form-encoded body.
fn is_sts(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").is_none()
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
}

fn sts_response(r: sts::StsReply) -> Response {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(&r.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    resp
}

/// Access key id from `Credential=AKID/date/region/service/aws4_request`.
pub(crate) fn access_key_id(auth: &str) -> Option<String> {
    let rest = auth.split("Credential=").nth(1)?;
    let akid = rest.split('/').next()?.trim();
    (!akid.is_empty()).then(|| akid.to_string())
}

pub(crate) enum Fault {
    Drop,
    ServerError,
    Unavailable,
    Html,
    Truncated,
}

pub(crate) fn decide(f: &FaultConfig, rng: &mut impl Rng) -> (Option<Duration>, Option<Fault>) {
    let latency = match f.latency {
        Some(d) if roll_once(rng, f.latency_rate) => Some(d),
        _ => None,
    };
    let fault = if roll_once(rng, f.drop_rate) {
        Some(Fault::Drop)
    } else if roll_once(rng, f.server_error_rate) {
        Some(if rng.random_bool(0.5) {
            Fault::ServerError
        } else {
            Fault::Unavailable
        })
    } else if roll_once(rng, f.malformed_rate) {
        Some(if rng.random_bool(0.5) {
            Fault::Html
        } else {
            Fault::Truncated
        })
    } else {
        None
    };
    (latency, fault)
}

fn roll_once(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

async fn aws(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let signed = auth.starts_with("AWS4-HMAC-SHA256");
    let session_token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if is_sts(&headers) {
        let akid = if signed { access_key_id(auth) } else { None };
        if let Some(a) = &akid {
            st.record_access_key(a);
        }
        let meta = RequestMeta {
            access_key_id: akid,
            session_token,
        };
        return sts_response(sts::handle(&st, signed, &meta, &body));
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let service = Service::of(&target);
    if !signed {
        st.record_missing_auth();
        return service_error(service, ApiError::missing_auth());
    }
    let akid = access_key_id(auth);
    if let Some(a) = &akid {
        st.record_access_key(a);
    }
    let meta = RequestMeta {
        access_key_id: akid,
        session_token,
    };
    // Authentication comes before faults and throttling (dispatch checks again, cheaply).
    if let Err(e) = api::authenticate(&st, &meta, &target, &body, st.now_ms()) {
        return service_error(service, e);
    }
    if let Some((op, key)) = service.api(&target) {
        let faults = st.faults();
        if faults.applies_to_api(op, key) {
            let (latency, fault) = decide(&faults, &mut *lock(&st.rng));
            if let Some(d) = latency {
                st.record_latency_fault();
                tokio::time::sleep(d).await;
            }
            if let Some(fault) = fault {
                let kind = match fault {
                    Fault::Drop => "drop",
                    Fault::ServerError | Fault::Unavailable => "server-error",
                    Fault::Html => "malformed-html",
                    Fault::Truncated => "malformed-truncated",
                };
                st.record_call(key, CallResult::Fault(kind));
                if service == Service::CodePipeline && op == "RetryStageExecution" {
                    codepipeline::record_unreached_retry(
                        &st,
                        &meta,
                        &body,
                        st.now_ms(),
                        RetryOutcome::Faulted {
                            fault: kind.to_string(),
                        },
                    );
                }
                if service == Service::StepFunctions && op == "RedriveExecution" {
                    api::record_unreached_redrive(
                        &st,
                        &meta,
                        &body,
                        st.now_ms(),
                        LedgerOutcome::Faulted {
                            fault: kind.to_string(),
                        },
                    );
                }
                return match fault {
                    Fault::Drop => {
                        conn.kill();
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                    Fault::ServerError => service_error(service, ApiError::internal_failure()),
                    Fault::Unavailable => service_error(service, ApiError::service_unavailable()),
                    Fault::Html => {
                        let mut r = Response::new(Body::from(
                            "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1><p>The server encountered an internal error.</p></body></html>",
                        ));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("text/html; charset=utf-8"),
                        );
                        r
                    }
                    Fault::Truncated => aws_response(
                        200,
                        match service {
                            Service::StepFunctions => {
                                br#"{"executions":[{"executionArn":"arn:aws:states:us-east-1:1234"#
                                    .to_vec()
                            }
                            Service::CodePipeline => {
                                br#"{"pipelineExecutionSummaries":[{"pipelineExecutionId":"3137f7"#
                                    .to_vec()
                            }
                        },
                        service.content_type(),
                    ),
                };
            }
        }
    }
    let (status, out) = api::dispatch(&st, &meta, &target, &body);
    aws_response(status, out, service.content_type())
}

async fn root_get() -> Response {
    error_response(&ApiError::unknown_operation())
}

pub(crate) fn json_ok(v: serde_json::Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&v).unwrap_or_default(),
    )
        .into_response()
}

pub(crate) fn json_err(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&json!({"error": msg.into()})).unwrap_or_default(),
    )
        .into_response()
}

async fn health(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(json!({"status": "ok", "now": st.now(), "region": st.region, "account": st.account}))
}

async fn ledger(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.ledger()).unwrap_or_default())
}

async fn sts_ledger(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.sts_ledger()).unwrap_or_default())
}

async fn stats(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.stats()).unwrap_or_default())
}

async fn clock(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(json!({"now": st.now(), "offsetSeconds": st.clock_offset_signed().as_secs_f64()}))
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let a: Advance = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"seconds\": N}}: {e}"),
            );
        }
    };
    // Negative seconds move the clock back (a service behind its clients).
    match Duration::try_from_secs_f64(a.seconds.abs()) {
        Ok(d) => {
            if a.seconds < 0.0 {
                st.rewind_clock(d);
            } else {
                st.advance_clock(d);
            }
            json_ok(
                json!({"now": st.now(), "offsetSeconds": st.clock_offset_signed().as_secs_f64()}),
            )
        }
        Err(e) => json_err(StatusCode::BAD_REQUEST, format!("invalid seconds: {e}")),
    }
}

async fn get_faults(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.faults()).unwrap_or_default())
}

async fn put_faults(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultConfig>(&body) {
        Ok(f) => {
            st.set_faults(f.clone());
            json_ok(serde_json::to_value(f).unwrap_or_default())
        }
        Err(e) => json_err(StatusCode::BAD_REQUEST, format!("invalid FaultConfig: {e}")),
    }
}

async fn event_stats(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.event_stats()).unwrap_or_default())
}

async fn get_event_faults(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.event_faults()).unwrap_or_default())
}

async fn put_event_faults(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<EventFaults>(&body) {
        Ok(f) => {
            st.set_event_faults(f);
            json_ok(serde_json::to_value(st.event_faults()).unwrap_or_default())
        }
        Err(e) => json_err(StatusCode::BAD_REQUEST, format!("invalid EventFaults: {e}")),
    }
}

async fn seed(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let sc = match Scenario::parse(&text) {
        Ok(s) => s,
        Err(e) => return json_err(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match st.seed_counted(&sc) {
        Ok((n, p)) => json_ok(json!({"executionsAdded": n, "pipelineExecutionsAdded": p})),
        Err(e) => json_err(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ArnQuery {
    arn: String,
}

async fn get_execution(
    State(st): State<Arc<EmulatorState>>,
    Query(q): Query<ArnQuery>,
) -> Response {
    match st.execution(&q.arn) {
        Some(s) => json_ok(serde_json::to_value(s).unwrap_or_default()),
        None => json_err(StatusCode::NOT_FOUND, format!("no execution {}", q.arn)),
    }
}

#[derive(Deserialize)]
struct FailReq {
    arn: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    cause: Option<String>,
}

async fn fail_execution(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let r: FailReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"arn\", \"error\", \"cause\"}}: {e}"),
            );
        }
    };
    let Some(snap) = st.execution(&r.arn) else {
        return json_err(StatusCode::NOT_FOUND, format!("no execution {}", r.arn));
    };
    let error = r.error.as_deref().unwrap_or("States.TaskFailed");
    let cause = r.cause.as_deref().unwrap_or("forced failure");
    if st.fail_execution(&r.arn, error, cause) {
        json_ok(serde_json::to_value(st.execution(&r.arn)).unwrap_or_default())
    } else {
        json_err(
            StatusCode::CONFLICT,
            format!("execution is {}, not RUNNING", snap.status.as_str()),
        )
    }
}

// ------------------------------------------------------------------------------------------
// CodePipeline admin

async fn cp_ledger(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.codepipeline_ledger()).unwrap_or_default())
}

async fn cp_pipeline_state(
    State(st): State<Arc<EmulatorState>>,
    Path(name): Path<String>,
) -> Response {
    match st.pipeline_state(&name) {
        Some(s) => json_ok(serde_json::to_value(s).unwrap_or_default()),
        None => json_err(StatusCode::NOT_FOUND, format!("no pipeline {name}")),
    }
}

async fn cp_executions(State(st): State<Arc<EmulatorState>>, Path(name): Path<String>) -> Response {
    if st.pipeline_state(&name).is_none() {
        return json_err(StatusCode::NOT_FOUND, format!("no pipeline {name}"));
    }
    json_ok(serde_json::to_value(st.pipeline_executions(&name)).unwrap_or_default())
}

fn admin_error(e: &codepipeline::PipelineAdminError) -> Response {
    use codepipeline::PipelineAdminError as E;
    let status = match e {
        E::PipelineNotFound(_)
        | E::StageNotFound { .. }
        | E::ActionNotFound { .. }
        | E::StageNeverRan { .. } => StatusCode::NOT_FOUND,
        E::ActionNotInProgress { .. } | E::ConcurrencyLimit { .. } => StatusCode::CONFLICT,
        E::InvalidStructure(_) => StatusCode::BAD_REQUEST,
    };
    json_err(status, e.to_string())
}

async fn cp_start_execution(
    State(st): State<Arc<EmulatorState>>,
    Path(name): Path<String>,
) -> Response {
    match st.start_pipeline_execution(&name) {
        Ok(id) => json_ok(json!({"pipelineExecutionId": id})),
        Err(e) => admin_error(&e),
    }
}

/// Body: a pipeline spec (JSON or YAML) to replace the structure, or empty to save the current
/// structure as a new version.
async fn cp_update_pipeline(
    State(st): State<Arc<EmulatorState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    let result = if text.trim().is_empty() {
        st.touch_pipeline(&name)
    } else {
        let spec: Result<PipelineSpec, String> = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(&text).map_err(|e| e.to_string())
        };
        match spec {
            Ok(mut spec) => {
                spec.name = name;
                st.update_pipeline(spec)
            }
            Err(e) => return json_err(StatusCode::BAD_REQUEST, format!("invalid pipeline: {e}")),
        }
    };
    match result {
        Ok(v) => json_ok(json!({"pipelineVersion": v})),
        Err(e) => admin_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteReq {
    pipeline: String,
    stage: String,
    action: String,
    /// An action outcome (`"fail(JobFailed, msg)"`, `"succeed"`, or the map form).
    outcome: ActionOutcome,
}

async fn cp_complete_action(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let r: CompleteReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"pipeline\", \"stage\", \"action\", \"outcome\"}}: {e}"),
            );
        }
    };
    match st.complete_action(&r.pipeline, &r.stage, &r.action, r.outcome) {
        Ok(id) => json_ok(json!({"pipelineExecutionId": id})),
        Err(e) => admin_error(&e),
    }
}

async fn not_found() -> Response {
    json_err(StatusCode::NOT_FOUND, "not found")
}
