//! HTTP handlers: IMS `POST /ims/token/v3` and the Flow Service Platform API under
//! `/data/foundation/flowservice`.
//!
//! Order per Platform request: gateway (x-api-key, bearer token, client match, scopes), injected
//! faults, throttling (`429050` + `Retry-After`), org and sandbox headers, the operation.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use super::filter::{ListQuery, pairs};
use super::ledger::{ReTriggerLedgerEntry, ReTriggerOutcome};
use super::model::RunTrigger;
use super::{BASE_PATH, key};
use crate::config::RetriggerResponse;
use crate::model::{Ms, ts};
use crate::server::{ConnInfo, Fault, decide};
use crate::state::{CallResult, EmulatorState, lock};

fn json_response(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// An API gateway error: `{"error_code", "message"}` (api-facts §3.5).
fn gateway_error(status: u16, code: &str, message: &str) -> Response {
    json_response(status, &json!({"error_code": code, "message": message}))
}

/// A Flow Service error (emulator shape, documented in docs/emulator.md).
pub(crate) fn service_error(status: u16, code: &str, message: &str) -> Response {
    let title = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    json_response(
        status,
        &json!({"code": code, "message": message, "status": status, "title": title}),
    )
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The authenticated caller of a Platform request.
pub(crate) struct Caller {
    pub client_id: String,
    pub sandbox: String,
}

/// A request the preamble answered itself, with its ledger outcome.
pub(crate) struct Rejected {
    pub response: Response,
    pub outcome: ReTriggerOutcome,
}

fn rejected(response: Response, outcome: ReTriggerOutcome) -> Rejected {
    Rejected { response, outcome }
}

fn unauth(st: &EmulatorState, api: &'static str, status: u16, code: &str, msg: &str) -> Rejected {
    st.record_call(api, CallResult::Error(code.to_string()));
    rejected(
        gateway_error(status, code, msg),
        ReTriggerOutcome::Unauthenticated {
            status,
            code: code.to_string(),
        },
    )
}

/// Gateway checks, faults, throttling, org/sandbox headers.
pub(crate) async fn preamble(
    st: &EmulatorState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    op: &'static str,
) -> Result<Caller, Rejected> {
    let api = key(op);
    let now = st.now_ms();
    let Some(api_key) = header_str(headers, "x-api-key") else {
        return Err(unauth(st, api, 403, "403000", "Api Key is required"));
    };
    let bearer = header_str(headers, "authorization").and_then(|a| {
        let (scheme, rest) = a.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|t| !t.is_empty())
    });
    let token = {
        let m = lock(&st.flows);
        if !m.ims.has_client(api_key) {
            drop(m);
            return Err(unauth(st, api, 403, "403003", "Api Key is invalid"));
        }
        let Some(bearer) = bearer else {
            drop(m);
            return Err(unauth(st, api, 403, "403010", "Oauth token is missing"));
        };
        match m.ims.check(bearer, now) {
            Ok(t) => t,
            Err(_) => {
                drop(m);
                return Err(unauth(st, api, 401, "401013", "Oauth token is not valid"));
            }
        }
    };
    if token.client_id != api_key {
        return Err(unauth(st, api, 403, "403003", "Api Key is invalid"));
    }
    let required = lock(&st.flows).cfg.required_scopes.clone();
    if required.iter().any(|s| !token.scopes.contains(s)) {
        return Err(unauth(st, api, 403, "403011", "Scope mismatch"));
    }

    // Faults.
    let faults = st.faults();
    if faults.applies_to_api(op, api) {
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
            st.record_call(api, CallResult::Fault(kind));
            let response = match fault {
                Fault::Drop => {
                    conn.kill();
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                Fault::ServerError => {
                    service_error(500, "INTERNAL_SERVER_ERROR", "An internal error occurred")
                }
                Fault::Unavailable => service_error(
                    503,
                    "SERVICE_UNAVAILABLE",
                    "The service is temporarily unavailable",
                ),
                Fault::Html => {
                    let mut r = Response::new(Body::from(
                        "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
                    ));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    r
                }
                Fault::Truncated => {
                    let mut r =
                        Response::new(Body::from(r#"{"items":[{"id":"3fb0418e-1804-45d6-8d56"#));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
            };
            return Err(rejected(
                response,
                ReTriggerOutcome::Faulted {
                    fault: kind.to_string(),
                },
            ));
        }
    }

    // Throttling: configured token buckets, then the injected rate.
    let now = st.now_ms();
    let bucket_wait = {
        let mut t = lock(&st.throttle);
        if t.try_acquire(api, now) {
            None
        } else {
            Some(t.retry_after_ms(api).unwrap_or(1000))
        }
    };
    let wait = bucket_wait.or_else(|| {
        let mut m = lock(&st.flows);
        let rate = m.throttle_rate;
        (rate > 0.0 && m.rng.random::<f64>() < rate)
            .then(|| i64::try_from(m.retry_after.as_millis()).unwrap_or(1000))
    });
    if let Some(ms) = wait {
        st.record_call(api, CallResult::Throttled);
        let secs = ((ms + 999) / 1000).max(1);
        let mut r = gateway_error(429, "429050", "Too many requests");
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(rejected(r, ReTriggerOutcome::Throttled));
    }

    // Organization and sandbox.
    let refuse = |status: u16, code: &str, msg: String| {
        st.record_call(api, CallResult::Error(code.to_string()));
        rejected(
            service_error(status, code, &msg),
            ReTriggerOutcome::Refused {
                status,
                code: code.to_string(),
                message: msg,
            },
        )
    };
    let Some(org) = header_str(headers, "x-gw-ims-org-id") else {
        return Err(refuse(
            400,
            "MISSING_HEADER",
            "Missing required header x-gw-ims-org-id".into(),
        ));
    };
    if org != token.org_id {
        return Err(refuse(
            403,
            "ORG_MISMATCH",
            format!("The access token does not belong to organization {org}"),
        ));
    }
    let Some(sandbox) = header_str(headers, "x-sandbox-name") else {
        return Err(refuse(
            400,
            "MISSING_HEADER",
            "Missing required header x-sandbox-name".into(),
        ));
    };
    let known = sandbox == "prod" || lock(&st.flows).flows.iter().any(|f| f.sandbox == sandbox);
    if !known {
        return Err(refuse(
            403,
            "SANDBOX_NOT_ACCESSIBLE",
            format!("Sandbox {sandbox} does not exist or is not accessible"),
        ));
    }
    Ok(Caller {
        client_id: token.client_id,
        sandbox: sandbox.to_string(),
    })
}

fn ok(st: &EmulatorState, op: &'static str, v: &Value) -> Response {
    st.record_call(key(op), CallResult::Ok);
    json_response(200, v)
}

fn err(st: &EmulatorState, op: &'static str, status: u16, code: &str, msg: &str) -> Response {
    st.record_call(key(op), CallResult::Error(code.to_string()));
    service_error(status, code, msg)
}

fn list_body(page: Vec<Value>, next: Option<String>, what: &str) -> Value {
    let mut links = serde_json::Map::new();
    if let Some(t) = next {
        links.insert(
            "next".into(),
            json!({"href": format!("/{what}?continuationToken={t}")}),
        );
    }
    json!({"items": page, "_links": links})
}

pub(crate) async fn list_runs(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    const OP: &str = "ListRuns";
    let caller = match preamble(&st, &conn, &headers, OP).await {
        Ok(c) => c,
        Err(r) => return r.response,
    };
    let page_size = lock(&st.flows).cfg.default_page_size;
    let query = match ListQuery::parse(q.as_deref().unwrap_or(""), page_size) {
        Ok(q) => q,
        Err(e) => return err(&st, OP, 400, "INVALID_QUERY", &e),
    };
    let now = st.now_ms();
    let items: Vec<Value> = {
        let mut m = lock(&st.flows);
        m.settle(now);
        (0..m.runs.len())
            .filter(|&i| m.flows[m.runs[i].flow].sandbox == caller.sandbox)
            .map(|i| m.run_json(i, now))
            .collect()
    };
    let (page, total, next) = query.apply(items);
    if query.count {
        return ok(&st, OP, &json!({"count": total}));
    }
    ok(&st, OP, &list_body(page, next, "runs"))
}

pub(crate) async fn get_run(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    const OP: &str = "GetRun";
    let caller = match preamble(&st, &conn, &headers, OP).await {
        Ok(c) => c,
        Err(r) => return r.response,
    };
    let now = st.now_ms();
    let found = {
        let mut m = lock(&st.flows);
        m.settle(now);
        m.run_idx(&id)
            .filter(|&i| m.flows[m.runs[i].flow].sandbox == caller.sandbox)
            .map(|i| m.run_json(i, now))
    };
    match found {
        Some(v) => ok(&st, OP, &json!({"items": [v]})),
        None => err(
            &st,
            OP,
            404,
            "RUN_NOT_FOUND",
            &format!("Run {id} was not found"),
        ),
    }
}

pub(crate) async fn list_flows(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    const OP: &str = "ListFlows";
    let caller = match preamble(&st, &conn, &headers, OP).await {
        Ok(c) => c,
        Err(r) => return r.response,
    };
    let page_size = lock(&st.flows).cfg.default_page_size;
    let query = match ListQuery::parse(q.as_deref().unwrap_or(""), page_size) {
        Ok(q) => q,
        Err(e) => return err(&st, OP, 400, "INVALID_QUERY", &e),
    };
    let now = st.now_ms();
    let items: Vec<Value> = {
        let mut m = lock(&st.flows);
        m.settle(now);
        (0..m.flows.len())
            .filter(|&i| m.flows[i].sandbox == caller.sandbox)
            .map(|i| m.flow_json(i, now))
            .collect()
    };
    let (page, total, next) = query.apply(items);
    if query.count {
        return ok(&st, OP, &json!({"count": total}));
    }
    ok(&st, OP, &list_body(page, next, "flows"))
}

pub(crate) async fn get_flow(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    const OP: &str = "GetFlow";
    let caller = match preamble(&st, &conn, &headers, OP).await {
        Ok(c) => c,
        Err(r) => return r.response,
    };
    let now = st.now_ms();
    let found = {
        let mut m = lock(&st.flows);
        m.settle(now);
        m.flow_idx(&id)
            .filter(|&i| m.flows[i].sandbox == caller.sandbox)
            .map(|i| m.flow_json(i, now))
    };
    match found {
        Some(v) => ok(&st, OP, &json!({"items": [v]})),
        None => err(
            &st,
            OP,
            404,
            "FLOW_NOT_FOUND",
            &format!("Flow {id} was not found"),
        ),
    }
}

/// `op` spellings accepted for a re-trigger: `re-trigger` (tutorial), `RE_TRIGGER` (spec).
fn is_retrigger(op: &str) -> bool {
    op.trim().to_ascii_lowercase().replace('_', "-") == "re-trigger"
}

pub(crate) async fn run_action(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    const OP: &str = "ReTriggerRun";
    let op = pairs(q.as_deref().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let client = header_str(&headers, "x-api-key").map(str::to_string);
    let record = |st: &EmulatorState,
                  flow_id: Option<String>,
                  new_run_id: Option<String>,
                  outcome: ReTriggerOutcome,
                  at: Ms| {
        lock(&st.flows).ledger.push(ReTriggerLedgerEntry {
            run_id: id.clone(),
            flow_id,
            new_run_id,
            op: op.clone(),
            outcome,
            at: ts(at),
            client_id: client.clone(),
        });
    };
    let flow_of = |st: &EmulatorState| {
        let m = lock(&st.flows);
        m.run_idx(&id).map(|i| m.flows[m.runs[i].flow].id.clone())
    };
    let caller = match preamble(&st, &conn, &headers, OP).await {
        Ok(c) => c,
        Err(r) => {
            record(&st, flow_of(&st), None, r.outcome, st.now_ms());
            return r.response;
        }
    };
    let now = st.now_ms();
    let refuse = |status: u16, code: &str, msg: String, flow: Option<String>| {
        record(
            &st,
            flow,
            None,
            ReTriggerOutcome::Refused {
                status,
                code: code.to_string(),
                message: msg.clone(),
            },
            now,
        );
        err(&st, OP, status, code, &msg)
    };
    if !is_retrigger(&op) {
        return refuse(
            400,
            "INVALID_OPERATION",
            format!("Unsupported op '{op}': expected re-trigger"),
            flow_of(&st),
        );
    }
    let if_match = header_str(&headers, "if-match").map(str::to_string);
    let mut m = lock(&st.flows);
    m.settle(now);
    let Some(ri) = m
        .run_idx(&id)
        .filter(|&i| m.flows[m.runs[i].flow].sandbox == caller.sandbox)
    else {
        drop(m);
        return refuse(
            404,
            "RUN_NOT_FOUND",
            format!("Run {id} was not found"),
            None,
        );
    };
    let flow = m.runs[ri].flow;
    let flow_id = m.flows[flow].id.clone();
    if let Some(want) = if_match {
        let etag = m.runs[ri].etag(now);
        let bare = |s: &str| s.trim().trim_matches('"').replace("\\\"", "").to_string();
        if want.trim() != "*" && bare(&want) != bare(&etag) {
            drop(m);
            return refuse(
                412,
                "PRECONDITION_FAILED",
                format!("If-Match {want} does not match the run's etag {etag}"),
                Some(flow_id),
            );
        }
    }
    if let Err(r) = m.check_retrigger(ri, now) {
        drop(m);
        return refuse(r.status, r.code, r.message, Some(flow_id));
    }
    let new = m.start_run(
        flow,
        now,
        RunTrigger::ReTrigger {
            source_run_id: id.clone(),
        },
        &caller.client_id,
    );
    let new_id = m.runs[new].id.clone();
    let body = match m.cfg.retrigger_response {
        RetriggerResponse::IdAndEtag => json!({"id": new_id, "etag": m.runs[new].etag(now)}),
        RetriggerResponse::FullRun => m.run_json(new, now),
    };
    drop(m);
    record(
        &st,
        Some(flow_id),
        Some(new_id),
        ReTriggerOutcome::ReTriggered,
        now,
    );
    ok(&st, OP, &body)
}

/// `POST /ims/token/v3` (form body; query parameters are accepted too).
pub(crate) async fn ims_token(
    State(st): State<Arc<EmulatorState>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    const OP: &str = "Token";
    let api = super::IMS_TOKEN_KEY;
    let faults = st.faults();
    if faults.applies_to_api(OP, api) {
        let (latency, fault) = decide(&faults, &mut *lock(&st.rng));
        if let Some(d) = latency {
            st.record_latency_fault();
            tokio::time::sleep(d).await;
        }
        if let Some(f) = fault {
            st.record_call(api, CallResult::Fault("server-error"));
            if matches!(f, Fault::Drop) {
                conn.kill();
            }
            return json_response(
                503,
                &json!({"error": "server_error", "error_description": "temporarily unavailable"}),
            );
        }
    }
    let mut form = pairs(q.as_deref().unwrap_or(""));
    form.extend(pairs(&String::from_utf8_lossy(&body)));
    let now = st.now_ms();
    let mut m = lock(&st.flows);
    let ttl = m.cfg.token_ttl;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
    let mm = &mut *m;
    let res = mm.ims.issue(&form, now, ttl_ms, &mut mm.rng);
    drop(m);
    match res {
        Ok((token, _)) => {
            st.record_call(api, CallResult::Ok);
            json_response(
                200,
                &json!({"access_token": token, "token_type": "bearer", "expires_in": ttl.as_secs()}),
            )
        }
        Err(e) => {
            st.record_call(api, CallResult::Error(e.error.to_string()));
            json_response(
                e.status,
                &json!({"error": e.error, "error_description": e.description}),
            )
        }
    }
}

/// Prefix of every Platform route.
pub(crate) fn path(p: &str) -> String {
    format!("{BASE_PATH}{p}")
}
