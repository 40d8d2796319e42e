//! The HTTP client for Adobe's APIs: hyper 1 with the rustls connector the kube and AWS stacks
//! already bring (aws-lc-rs provider, native roots), so no second HTTP or TLS stack enters the
//! binary (build-notes.md).
//!
//! Every call is bounded (operation timeout, response size), counted like AWS calls
//! (`redrive_aws_requests_total{target="flowservice"}`), and honours a 429's `Retry-After` for every
//! later call of the same client: no request goes out before the service said it may.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::run::ErrorBody;
use crate::aws::{AttemptResult, CallCounter};
use crate::clock::ServiceClock;
use crate::policy::TargetKind;
use crate::targets::error::clip;
use crate::targets::{ErrorCategory, TargetError};

/// Largest response body read (a page of 100 runs is ~200 KB).
pub const MAX_BODY: usize = 16 << 20;

/// Longest `Retry-After` waited for inside one call; longer ones fail the call as throttled
/// (the next poll tries again, still after the service's time).
pub const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(10);

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The error this answer stands for (status ≥ 300), classified.
    pub fn error(&self, api: &'static str) -> TargetError {
        let parsed: ErrorBody = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = parsed.code();
        let message = parsed
            .message()
            .map(|m| clip(&m))
            .unwrap_or_else(|| format!("HTTP {}", self.status.as_u16()));
        TargetError {
            api,
            category: category_of(self.status, code.as_deref()),
            code,
            message,
        }
    }

    /// `Retry-After` in whole seconds (the HTTP-date form is not used by Adobe's gateway).
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(hyper::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse::<u64>()
            .ok()
            .map(|s| Duration::from_secs(s.min(3600)))
    }
}

/// The category of an Adobe error (api-facts §3.5): gateway codes first, then the status.
pub fn category_of(status: StatusCode, code: Option<&str>) -> ErrorCategory {
    match code {
        // Token missing or not valid, API key missing or invalid: the credentials.
        Some("401013" | "403010" | "403000" | "403003") => ErrorCategory::Credentials,
        // IMS: wrong client id or secret, bad grant.
        Some("invalid_client" | "unsupported_grant_type" | "invalid_request") => {
            ErrorCategory::Credentials
        }
        Some("403011" | "invalid_scope") => ErrorCategory::AccessDenied,
        Some("429050" | "429001" | "429002") => ErrorCategory::Throttled,
        _ => match status.as_u16() {
            429 => ErrorCategory::Throttled,
            401 => ErrorCategory::Credentials,
            403 => ErrorCategory::AccessDenied,
            404 => ErrorCategory::NotFound,
            400 | 409 | 412 | 422 => ErrorCategory::Invalid,
            500..=599 => ErrorCategory::Transient,
            _ => ErrorCategory::Unexpected,
        },
    }
}

/// A bounded, counted HTTP client.
#[derive(Clone)]
pub struct Http {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    calls: CallCounter,
    /// No request before this instant (a 429's Retry-After).
    not_before: Arc<Mutex<Option<Instant>>>,
    /// Fed with every answer's `Date` header (the service this client talks to).
    clock: Option<ServiceClock>,
}

impl Http {
    pub fn new(timeout: Duration, calls: CallCounter) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            // No native roots (a scratch image without CA files): webpki cannot verify anything
            // then, but http:// endpoints (emulators) still work and https fails with a clear error.
            .unwrap_or_else(|_| {
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                )
            })
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self {
            client,
            timeout,
            calls,
            not_before: Arc::new(Mutex::new(None)),
            clock: None,
        }
    }

    /// This client with every answer's `Date` header fed into `clock`.
    pub fn with_clock(mut self, clock: ServiceClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// This client without a clock (for another service sharing its connections and
    /// Retry-After state, e.g. IMS next to the Platform).
    pub fn without_clock(mut self) -> Self {
        self.clock = None;
        self
    }

    /// Send one request; `Ok` for any HTTP answer (the caller classifies statuses), `Err` for no
    /// answer (timeout, connection, unreadable body) or a Retry-After too far away.
    pub async fn send(
        &self,
        api: &'static str,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<Response, TargetError> {
        self.wait_retry_after(api).await?;
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header(hyper::header::CONTENT_TYPE, content_type);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| {
            TargetError::new(
                api,
                ErrorCategory::Invalid,
                format!("cannot build the request: {e}"),
            )
        })?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await.map_err(|e| {
                let what = if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                TargetError::new(api, ErrorCategory::Transient, what)
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| {
                    TargetError::new(
                        api,
                        ErrorCategory::Transient,
                        "the response body could not be read (cut off or larger than 16 MiB)",
                    )
                })?
                .to_bytes();
            Ok::<_, TargetError>(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await
        .unwrap_or_else(|_| Err(TargetError::new(api, ErrorCategory::Transient, "timed out")));
        let counted = match &result {
            Err(_) => AttemptResult::NoResponse,
            Ok(r) if r.status.as_u16() < 300 => AttemptResult::Ok,
            Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => AttemptResult::Throttled,
            Ok(r) if r.status.is_server_error() => AttemptResult::ServerError,
            Ok(_) => AttemptResult::ClientError,
        };
        self.calls.record(
            TargetKind::FlowService.as_str(),
            api,
            counted,
            Some(started.elapsed()),
        );
        if let (Ok(r), Some(clock)) = (&result, &self.clock)
            && let Some(date) = r
                .headers
                .get(hyper::header::DATE)
                .and_then(|v| v.to_str().ok())
        {
            clock.observe_date_header(date);
        }
        if let Ok(r) = &result
            && r.status == StatusCode::TOO_MANY_REQUESTS
        {
            let wait = r.retry_after().unwrap_or(Duration::from_secs(1));
            let until = Instant::now() + wait;
            let mut nb = self.not_before.lock().expect("retry-after lock");
            if nb.is_none_or(|t| t < until) {
                *nb = Some(until);
            }
        }
        result
    }

    /// Sleep until a recorded Retry-After has passed, when it is near; fail as throttled when
    /// it is far.
    async fn wait_retry_after(&self, api: &'static str) -> Result<(), TargetError> {
        let until = *self.not_before.lock().expect("retry-after lock");
        let Some(until) = until else { return Ok(()) };
        let now = Instant::now();
        if until <= now {
            return Ok(());
        }
        let wait = until - now;
        if wait > MAX_INLINE_RETRY_AFTER {
            return Err(TargetError {
                api,
                category: ErrorCategory::Throttled,
                code: Some("429050".into()),
                message: format!(
                    "Adobe asked to wait {}s (Retry-After) before the next call",
                    wait.as_secs()
                ),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_and_ims_codes_are_classified_before_statuses() {
        let s = |n| StatusCode::from_u16(n).unwrap();
        assert_eq!(
            category_of(s(401), Some("401013")),
            ErrorCategory::Credentials
        );
        assert_eq!(
            category_of(s(403), Some("403011")),
            ErrorCategory::AccessDenied
        );
        assert_eq!(
            category_of(s(403), Some("403003")),
            ErrorCategory::Credentials
        );
        assert_eq!(
            category_of(s(400), Some("invalid_client")),
            ErrorCategory::Credentials
        );
        assert_eq!(category_of(s(429), None), ErrorCategory::Throttled);
        assert_eq!(
            category_of(s(400), Some("RUN_NOT_RETRIGGERABLE_STREAMING")),
            ErrorCategory::Invalid
        );
        assert_eq!(category_of(s(404), None), ErrorCategory::NotFound);
        assert_eq!(category_of(s(502), None), ErrorCategory::Transient);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(hyper::header::RETRY_AFTER, "7".parse().unwrap());
        let r = Response {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers,
            body: Bytes::from_static(br#"{"error_code":"429050","message":"Too many requests"}"#),
        };
        assert_eq!(r.retry_after(), Some(Duration::from_secs(7)));
        let e = r.error("ListRuns");
        assert_eq!(e.category, ErrorCategory::Throttled);
        assert_eq!(e.code.as_deref(), Some("429050"));
        assert_eq!(e.message, "Too many requests");
    }

    #[test]
    fn an_html_error_page_is_classified_by_status() {
        let r = Response {
            status: StatusCode::BAD_GATEWAY,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"<html>502</html>"),
        };
        let e = r.error("GetRun");
        assert_eq!(e.category, ErrorCategory::Transient);
        assert_eq!(e.code, None);
        assert_eq!(e.message, "HTTP 502");
    }
}
