//! What tests and the admin API do to Flow Service outside its API: seed flows, read runs,
//! start and complete runs now, manage IMS clients, inject 429s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::ims::ImsToken;
use super::ledger::ReTriggerLedgerEntry;
use super::model::{FlowRunSnapshot, RunTrigger, SCHEDULER_CLIENT};
use super::scenario::{FlowRunStatus, FlowSpec, ImsClientSpec, RunOutcome};
use crate::scenario::ScenarioError;
use crate::server::{json_err, json_ok};
use crate::state::{EmulatorState, lock};

/// Errors of the Flow Service helpers on [`EmulatorState`] / [`crate::EmulatorHandle`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowAdminError {
    /// No flow with that id.
    #[error("no flow with id '{0}'")]
    FlowNotFound(String),
    /// No run with that id.
    #[error("no run with id '{0}'")]
    RunNotFound(String),
    /// The run already completed.
    #[error("run '{0}' is not in progress")]
    RunNotInProgress(String),
    /// `running` is not a completion.
    #[error("a run cannot be completed with outcome 'running'")]
    InvalidOutcome,
    /// No IMS client with that id.
    #[error("no IMS client with id '{0}'")]
    ClientNotFound(String),
}

impl EmulatorState {
    /// Seed Flow Service flows and IMS clients (validated before anything changes); returns the
    /// run ids seeded per flow spec.
    pub(crate) fn seed_flow_specs(
        &self,
        flows: &[FlowSpec],
        clients: &[ImsClientSpec],
    ) -> Result<Vec<Vec<String>>, ScenarioError> {
        if let Some(c) = clients
            .iter()
            .find(|c| c.client_id.trim().is_empty() || c.client_secret.is_empty())
        {
            return Err(ScenarioError::Invalid(format!(
                "IMS client '{}' needs a clientId and a clientSecret",
                c.client_id
            )));
        }
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        m.validate(flows)?;
        let org = m.cfg.org_id.clone();
        for c in clients {
            m.ims.put_client(c, &org);
        }
        m.seed(flows, now)
    }

    /// Validate flows without seeding them.
    pub(crate) fn validate_flow_specs(&self, flows: &[FlowSpec]) -> Result<(), ScenarioError> {
        lock(&self.flows).validate(flows)
    }

    /// Seed one flow (or merge runs and script into the flow with the same id); returns the ids
    /// of the runs it seeded.
    pub fn seed_flow(&self, spec: FlowSpec) -> Result<Vec<String>, ScenarioError> {
        Ok(self
            .seed_flow_specs(std::slice::from_ref(&spec), &[])?
            .pop()
            .unwrap_or_default())
    }

    /// Every re-trigger call so far, in order.
    pub fn flowservice_ledger(&self) -> Vec<ReTriggerLedgerEntry> {
        lock(&self.flows).ledger.clone()
    }

    /// One run (settled to now).
    pub fn flow_run(&self, run_id: &str) -> Option<FlowRunSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        let i = m.run_idx(run_id)?;
        Some(m.snapshot(i, now))
    }

    /// Every run of a flow, newest first (empty if the flow is unknown).
    pub fn flow_runs(&self, flow_id: &str) -> Vec<FlowRunSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        let Some(f) = m.flow_idx(flow_id) else {
            return Vec::new();
        };
        let mut idx = m.flows[f].runs.clone();
        idx.sort_by_key(|&i| std::cmp::Reverse((m.runs[i].created, i)));
        idx.into_iter().map(|i| m.snapshot(i, now)).collect()
    }

    /// Id of a flow by name (first match).
    pub fn flow_id(&self, name: &str) -> Option<String> {
        lock(&self.flows)
            .flows
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.id.clone())
    }

    /// Start a run of a flow now (like a scheduled run), taking its next scripted outcome.
    pub fn start_flow_run(&self, flow_id: &str) -> Result<String, FlowAdminError> {
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        let f = m
            .flow_idx(flow_id)
            .ok_or_else(|| FlowAdminError::FlowNotFound(flow_id.to_string()))?;
        let i = m.start_run(f, now, RunTrigger::Manual, SCHEDULER_CLIENT);
        Ok(m.runs[i].id.clone())
    }

    /// End an in-progress run now with `outcome`.
    pub fn complete_flow_run(
        &self,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), FlowAdminError> {
        if outcome.status == FlowRunStatus::InProgress {
            return Err(FlowAdminError::InvalidOutcome);
        }
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        let i = m
            .run_idx(run_id)
            .ok_or_else(|| FlowAdminError::RunNotFound(run_id.to_string()))?;
        if m.runs[i].status(now) != FlowRunStatus::InProgress {
            return Err(FlowAdminError::RunNotInProgress(run_id.to_string()));
        }
        let r = &mut m.runs[i];
        r.ends = Some(now.max(r.created));
        r.result = outcome;
        Ok(())
    }

    /// Replace a flow's outcome script (for runs created from now on).
    pub fn set_flow_outcomes(
        &self,
        flow_id: &str,
        outcomes: Vec<RunOutcome>,
    ) -> Result<(), FlowAdminError> {
        let mut m = lock(&self.flows);
        let f = m
            .flow_idx(flow_id)
            .ok_or_else(|| FlowAdminError::FlowNotFound(flow_id.to_string()))?;
        m.flows[f].outcomes = outcomes;
        m.flows[f].next_outcome = 0;
        Ok(())
    }

    /// Add (or replace) an IMS client credential.
    pub fn add_ims_client(&self, c: ImsClientSpec) {
        let mut m = lock(&self.flows);
        let org = m.cfg.org_id.clone();
        m.ims.put_client(&c, &org);
    }

    /// Rotate a client's secret: the old one is refused from now on; issued tokens stay valid.
    pub fn rotate_ims_secret(
        &self,
        client_id: &str,
        new_secret: &str,
    ) -> Result<(), FlowAdminError> {
        if lock(&self.flows).ims.rotate_secret(client_id, new_secret) {
            Ok(())
        } else {
            Err(FlowAdminError::ClientNotFound(client_id.to_string()))
        }
    }

    /// Revoke every live token of a client (they answer `401013` from now on); returns how many.
    pub fn revoke_ims_tokens(&self, client_id: &str) -> Result<usize, FlowAdminError> {
        let mut m = lock(&self.flows);
        if !m.ims.has_client(client_id) {
            return Err(FlowAdminError::ClientNotFound(client_id.to_string()));
        }
        Ok(m.ims.revoke(client_id))
    }

    /// What IMS knows about an issued token.
    pub fn ims_token_info(&self, token: &str) -> Option<ImsToken> {
        lock(&self.flows).ims.token(token)
    }

    /// Inject 429 `429050` on this fraction of Platform calls, answering `Retry-After`.
    pub fn set_flowservice_throttle(&self, rate: f64, retry_after: Duration) {
        let mut m = lock(&self.flows);
        m.throttle_rate = rate.clamp(0.0, 1.0);
        m.retry_after = retry_after;
    }

    /// (flows, runs, in-progress runs) for statistics.
    pub(crate) fn flowservice_counts(&self) -> (u64, u64, u64) {
        let now = self.now_ms();
        let mut m = lock(&self.flows);
        m.settle(now);
        let open = m
            .runs
            .iter()
            .filter(|r| r.status(now) == FlowRunStatus::InProgress)
            .count();
        (m.flows.len() as u64, m.runs.len() as u64, open as u64)
    }
}

fn admin_error(e: &FlowAdminError) -> Response {
    let status = match e {
        FlowAdminError::FlowNotFound(_)
        | FlowAdminError::RunNotFound(_)
        | FlowAdminError::ClientNotFound(_) => StatusCode::NOT_FOUND,
        FlowAdminError::RunNotInProgress(_) => StatusCode::CONFLICT,
        FlowAdminError::InvalidOutcome => StatusCode::BAD_REQUEST,
    };
    json_err(status, e.to_string())
}

pub(crate) async fn ledger(State(st): State<Arc<EmulatorState>>) -> Response {
    json_ok(serde_json::to_value(st.flowservice_ledger()).unwrap_or_default())
}

pub(crate) async fn flow_runs(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
) -> Response {
    if lock(&st.flows).flow_idx(&id).is_none() {
        return admin_error(&FlowAdminError::FlowNotFound(id));
    }
    json_ok(serde_json::to_value(st.flow_runs(&id)).unwrap_or_default())
}

pub(crate) async fn start_run(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
) -> Response {
    match st.start_flow_run(&id) {
        Ok(run) => json_ok(json!({"runId": run})),
        Err(e) => admin_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteReq {
    outcome: RunOutcome,
}

pub(crate) async fn complete_run(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r: CompleteReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"outcome\": \"failed(CODE)\" | \"success(N)\" | {{...}}}}: {e}"
                ),
            );
        }
    };
    match st.complete_flow_run(&id, r.outcome) {
        Ok(()) => json_ok(serde_json::to_value(st.flow_run(&id)).unwrap_or_default()),
        Err(e) => admin_error(&e),
    }
}

pub(crate) async fn put_outcomes(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let o: Vec<RunOutcome> = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected [outcome, ...]: {e}"),
            );
        }
    };
    match st.set_flow_outcomes(&id, o) {
        Ok(()) => json_ok(json!({"flowId": id})),
        Err(e) => admin_error(&e),
    }
}

pub(crate) async fn add_client(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ImsClientSpec>(&body) {
        Ok(c) if !c.client_id.trim().is_empty() && !c.client_secret.is_empty() => {
            let id = c.client_id.clone();
            st.add_ims_client(c);
            json_ok(json!({"clientId": id}))
        }
        Ok(_) => json_err(
            StatusCode::BAD_REQUEST,
            "clientId and clientSecret are required",
        ),
        Err(e) => json_err(StatusCode::BAD_REQUEST, format!("invalid IMS client: {e}")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SecretReq {
    client_secret: String,
}

pub(crate) async fn rotate_secret(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let r = match serde_json::from_slice::<SecretReq>(&body) {
        Ok(r) if !r.client_secret.is_empty() => r,
        Ok(_) => return json_err(StatusCode::BAD_REQUEST, "clientSecret must not be empty"),
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"clientSecret\": \"...\"}}: {e}"),
            );
        }
    };
    match st.rotate_ims_secret(&id, &r.client_secret) {
        Ok(()) => json_ok(json!({"clientId": id})),
        Err(e) => admin_error(&e),
    }
}

pub(crate) async fn revoke(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
) -> Response {
    match st.revoke_ims_tokens(&id) {
        Ok(n) => json_ok(json!({"clientId": id, "revoked": n})),
        Err(e) => admin_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ThrottleReq {
    rate: f64,
    #[serde(default)]
    retry_after_seconds: Option<f64>,
}

pub(crate) async fn throttle(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let r: ThrottleReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"rate\": P, \"retryAfterSeconds\": N}}: {e}"),
            );
        }
    };
    let after = r
        .retry_after_seconds
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(2));
    st.set_flowservice_throttle(r.rate, after);
    json_ok(json!({"rate": r.rate.clamp(0.0, 1.0), "retryAfterSeconds": after.as_secs_f64()}))
}
