//! Flow Service calls (api-facts §3): the four headers on every call, one token refresh on
//! `401013`, bounded retries of reads, and re-triggers that are never repeated blindly.

use std::time::Duration;

use hyper::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use super::credentials::Credentials;
use super::http::{Http, Response};
use super::ims::Ims;
use super::run::{Flow, FlowPage, FlowRun, ReTriggered, RunPage};
use crate::clock::ServiceClock;
use crate::targets::{ErrorCategory, TargetError};

/// Page size asked for when listing.
pub const PAGE_SIZE: u32 = 100;
/// Pages followed per listing at most (a hostile or broken `next` link cannot loop forever).
pub const MAX_PAGES: usize = 50;

/// How the re-trigger operation is spelled in `?op=`: the tutorial's `re-trigger` (default) or
/// the OpenAPI spec's `RE_TRIGGER` (api-facts §3.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReTriggerOp {
    #[default]
    #[value(name = "re-trigger")]
    ReTrigger,
    #[value(name = "RE_TRIGGER")]
    ReTriggerUpper,
}

impl ReTriggerOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ReTriggerOp::ReTrigger => "re-trigger",
            ReTriggerOp::ReTriggerUpper => "RE_TRIGGER",
        }
    }
}

/// What a re-trigger call left behind.
#[derive(Debug)]
pub enum ReTriggerResult {
    /// A new run was created.
    Created(ReTriggered),
    /// Refused before anything happened (4xx, gateway, throttling): the error says why.
    Refused(TargetError),
}

/// A run id or flow id that is safe in a URL path and a query value.
pub fn safe_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Platform client of one operator: base URL, IMS, and the re-trigger spelling.
pub struct Platform {
    /// Feeds [`Platform::clock`] (IMS answers do not: another service, another clock).
    http: Http,
    clock: ServiceClock,
    base: String,
    ims: Ims,
    op: ReTriggerOp,
    max_attempts: u32,
}

impl Platform {
    pub fn new(http: Http, base: &str, ims_url: &str, op: ReTriggerOp, max_attempts: u32) -> Self {
        let base = base.trim_end_matches('/').to_string();
        let clock = ServiceClock::new(format!("flowservice {base}"));
        Self {
            ims: Ims::new(http.clone().without_clock(), ims_url.to_string()),
            http: http.with_clock(clock.clone()),
            clock,
            base,
            op,
            max_attempts: max_attempts.max(1),
        }
    }

    /// The Platform's clock as its answers tell it.
    pub fn clock(&self) -> &ServiceClock {
        &self.clock
    }

    /// One authenticated call; a `401013` (token not valid any more) gets one fresh token.
    async fn call(
        &self,
        api: &'static str,
        method: Method,
        url: &str,
        creds: &Credentials,
        sandbox: &str,
    ) -> Result<Response, TargetError> {
        let mut refreshed = false;
        loop {
            let token = self.ims.token(creds).await?;
            let auth = format!("Bearer {}", token.expose_secret());
            let headers = [
                ("authorization", auth.as_str()),
                ("x-api-key", creds.client_id.as_str()),
                ("x-gw-ims-org-id", creds.org_id.as_str()),
                ("x-sandbox-name", sandbox),
                ("accept", "application/json"),
            ];
            let resp = self
                .http
                .send(api, method.clone(), url, &headers, None)
                .await?;
            if resp.status == StatusCode::UNAUTHORIZED && !refreshed {
                let code = resp.error(api).code;
                if code.as_deref() == Some("401013") {
                    self.ims.invalidate(creds);
                    refreshed = true;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// A GET with retries of transient failures and throttling (reads are idempotent).
    async fn get_json<T: DeserializeOwned>(
        &self,
        api: &'static str,
        url: &str,
        creds: &Credentials,
        sandbox: &str,
    ) -> Result<Option<T>, TargetError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.call(api, Method::GET, url, creds, sandbox).await;
            let err = match result {
                Ok(r) if r.status.is_success() => {
                    return serde_json::from_slice(&r.body).map(Some).map_err(|e| {
                        TargetError::new(
                            api,
                            ErrorCategory::Transient,
                            format!(
                                "unreadable answer (line {}, column {})",
                                e.line(),
                                e.column()
                            ),
                        )
                    });
                }
                Ok(r) if r.status == StatusCode::NOT_FOUND => return Ok(None),
                Ok(r) => r.error(api),
                Err(e) => e,
            };
            let retryable = matches!(
                err.category,
                ErrorCategory::Transient | ErrorCategory::Throttled
            );
            if !retryable || attempt >= self.max_attempts {
                return Err(err);
            }
            // Throttled: Http already waits for Retry-After before the next send.
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in query {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{q}", self.base)
        }
    }

    /// The URL of a `_links.next.href`, only when it stays on the Platform base URL and path
    /// (a hostile answer must not send the token elsewhere).
    fn next_url(&self, path: &str, href: &str) -> Result<String, TargetError> {
        let rel = href
            .strip_prefix(&self.base)
            .filter(|r| r.starts_with('/'))
            .unwrap_or(href);
        let ok = rel.starts_with(&format!("{path}?")) && !rel.contains("://") && !rel.contains('#');
        if ok {
            Ok(format!("{}{rel}", self.base))
        } else {
            Err(TargetError::new(
                "ListRuns",
                ErrorCategory::Unexpected,
                "refusing to follow a next link outside the Platform base URL",
            ))
        }
    }

    /// Runs matching every `property` filter, in `orderby` order, at most `max` of them.
    pub async fn list_runs(
        &self,
        creds: &Credentials,
        sandbox: &str,
        properties: &[String],
        orderby: &str,
        max: usize,
    ) -> Result<Vec<FlowRun>, TargetError> {
        let mut query: Vec<(&str, String)> =
            properties.iter().map(|p| ("property", p.clone())).collect();
        query.push(("orderby", orderby.to_string()));
        query.push(("limit", PAGE_SIZE.min(max.max(1) as u32).to_string()));
        let mut url = self.url("/runs", &query);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: RunPage = self
                .get_json("ListRuns", &url, creds, sandbox)
                .await?
                .unwrap_or_default();
            out.extend(page.items);
            if out.len() >= max {
                out.truncate(max);
                break;
            }
            match page.links.next.and_then(|n| n.href) {
                Some(href) if !href.is_empty() => url = self.next_url("/runs", &href)?,
                _ => break,
            }
        }
        Ok(out)
    }

    /// One run (`None`: it does not exist in this sandbox).
    pub async fn get_run(
        &self,
        creds: &Credentials,
        sandbox: &str,
        id: &str,
    ) -> Result<Option<FlowRun>, TargetError> {
        if !safe_id(id) {
            return Ok(None);
        }
        let page: Option<RunPage> = self
            .get_json(
                "GetRun",
                &self.url(&format!("/runs/{id}"), &[]),
                creds,
                sandbox,
            )
            .await?;
        Ok(page.and_then(|p| p.items.into_iter().find(|r| r.id == id)))
    }

    /// One flow (`None`: it does not exist in this sandbox).
    pub async fn get_flow(
        &self,
        creds: &Credentials,
        sandbox: &str,
        id: &str,
    ) -> Result<Option<Flow>, TargetError> {
        if !safe_id(id) {
            return Ok(None);
        }
        let page: Option<FlowPage> = self
            .get_json(
                "GetFlow",
                &self.url(&format!("/flows/{id}"), &[]),
                creds,
                sandbox,
            )
            .await?;
        Ok(page.and_then(|p| p.items.into_iter().find(|f| f.id == id)))
    }

    /// Every flow of the sandbox (for selectors), bounded by [`MAX_PAGES`].
    pub async fn list_flows(
        &self,
        creds: &Credentials,
        sandbox: &str,
    ) -> Result<Vec<Flow>, TargetError> {
        let mut url = self.url("/flows", &[("limit", PAGE_SIZE.to_string())]);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: FlowPage = self
                .get_json("ListFlows", &url, creds, sandbox)
                .await?
                .unwrap_or_default();
            out.extend(page.items);
            match page.links.next.and_then(|n| n.href) {
                Some(href) if !href.is_empty() => url = self.next_url("/flows", &href)?,
                _ => break,
            }
        }
        Ok(out)
    }

    /// `POST /runs/{id}/action?op=re-trigger`, with `If-Match` on the etag read just before,
    /// once (plus one token refresh). `Err` means the outcome is unknown (no answer, 5xx, an
    /// unreadable 2xx): a run may have been created.
    pub async fn retrigger(
        &self,
        creds: &Credentials,
        sandbox: &str,
        run: &FlowRun,
    ) -> Result<ReTriggerResult, TargetError> {
        const API: &str = "ReTriggerRun";
        if !safe_id(&run.id) {
            return Ok(ReTriggerResult::Refused(TargetError::new(
                API,
                ErrorCategory::Invalid,
                "the run id has characters a run id never has",
            )));
        }
        let url = self.url(
            &format!("/runs/{}/action", run.id),
            &[("op", self.op.as_str().to_string())],
        );
        let mut refreshed = false;
        loop {
            let token = match self.ims.token(creds).await {
                Ok(t) => t,
                // No token, no call: nothing happened.
                Err(e) => return Ok(ReTriggerResult::Refused(e)),
            };
            let auth = format!("Bearer {}", token.expose_secret());
            let mut headers = vec![
                ("authorization", auth.as_str()),
                ("x-api-key", creds.client_id.as_str()),
                ("x-gw-ims-org-id", creds.org_id.as_str()),
                ("x-sandbox-name", sandbox),
                ("accept", "application/json"),
            ];
            if let Some(etag) = run
                .etag
                .as_deref()
                .filter(|e| !e.chars().any(char::is_control))
            {
                headers.push(("if-match", etag));
            }
            let resp = match self
                .http
                .send(
                    API,
                    Method::POST,
                    &url,
                    &headers,
                    Some(("application/json", b"{}".to_vec())),
                )
                .await
            {
                Ok(r) => r,
                // The Retry-After gate refused to send: nothing happened.
                Err(e) if e.category == ErrorCategory::Throttled => {
                    return Ok(ReTriggerResult::Refused(e));
                }
                Err(e) => return Err(e),
            };
            if resp.status.is_success() {
                return serde_json::from_slice::<ReTriggered>(&resp.body)
                    .ok()
                    .filter(|r| safe_id(&r.id))
                    .map(ReTriggerResult::Created)
                    .ok_or_else(|| {
                        TargetError::new(
                            API,
                            ErrorCategory::Transient,
                            "the re-trigger was accepted but its answer names no new run",
                        )
                    });
            }
            let err = resp.error(API);
            if resp.status == StatusCode::UNAUTHORIZED
                && err.code.as_deref() == Some("401013")
                && !refreshed
            {
                self.ims.invalidate(creds);
                refreshed = true;
                continue;
            }
            if resp.status.is_server_error() {
                return Err(err);
            }
            return Ok(ReTriggerResult::Refused(err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform() -> Platform {
        let http = Http::new(Duration::from_secs(1), crate::aws::CallCounter::default());
        Platform::new(
            http,
            "https://platform.adobe.io/data/foundation/flowservice/",
            "https://ims-na1.adobelogin.com/ims/token/v3",
            ReTriggerOp::default(),
            3,
        )
    }

    #[test]
    fn next_links_stay_on_the_platform() {
        let p = platform();
        assert_eq!(
            p.next_url("/runs", "/runs?continuationToken=abc").unwrap(),
            "https://platform.adobe.io/data/foundation/flowservice/runs?continuationToken=abc"
        );
        assert!(
            p.next_url(
                "/runs",
                "https://platform.adobe.io/data/foundation/flowservice/runs?continuationToken=x"
            )
            .is_ok()
        );
        for evil in [
            "https://evil.example/runs?continuationToken=x",
            "//evil.example/runs?x",
            "/flows?continuationToken=x",
            "/runs/../../x?y",
        ] {
            assert!(p.next_url("/runs", evil).is_err(), "{evil}");
        }
    }

    #[test]
    fn queries_are_encoded() {
        let p = platform();
        let url = p.url(
            "/runs",
            &[
                ("property", "flowId==f-1".to_string()),
                ("property", "createdAt>5".to_string()),
            ],
        );
        assert_eq!(
            url,
            "https://platform.adobe.io/data/foundation/flowservice/runs?property=flowId%3D%3Df-1&property=createdAt%3E5"
        );
        assert!(safe_id("5f0b6c3e-0000-4000-8000-000000000001"));
        assert!(!safe_id("../x"));
        assert!(!safe_id(""));
    }
}
