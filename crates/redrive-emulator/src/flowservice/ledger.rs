//! The re-trigger ledger: every `POST /runs/{id}/action` call, whatever its outcome, in order.

use serde::{Deserialize, Serialize};

/// What happened to one re-trigger call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ReTriggerOutcome {
    /// A new run was created.
    ReTriggered,
    /// Refused by Flow Service (ineligible run, unknown run, bad `op`, `If-Match` mismatch,
    /// wrong org or sandbox).
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code of the body.
        code: String,
        /// Error message.
        message: String,
    },
    /// Rejected by the API gateway (`403000`, `403003`, `403010`, `401013`, `403011`).
    Unauthenticated {
        /// HTTP status.
        status: u16,
        /// Gateway `error_code`.
        code: String,
    },
    /// 429 `429050`: the call never reached Flow Service.
    Throttled,
    /// An injected fault answered (`server-error`, `malformed-html`, `malformed-truncated`, `drop`).
    Faulted {
        /// Fault kind.
        fault: String,
    },
}

impl ReTriggerOutcome {
    /// True for a call that created a run.
    pub fn is_retriggered(&self) -> bool {
        matches!(self, ReTriggerOutcome::ReTriggered)
    }
    /// `ReTriggered`, the error code, `429050`, or the fault kind.
    pub fn code(&self) -> &str {
        match self {
            ReTriggerOutcome::ReTriggered => "ReTriggered",
            ReTriggerOutcome::Refused { code, .. }
            | ReTriggerOutcome::Unauthenticated { code, .. } => code,
            ReTriggerOutcome::Throttled => "429050",
            ReTriggerOutcome::Faulted { fault } => fault,
        }
    }
}

/// One re-trigger call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReTriggerLedgerEntry {
    /// Run id from the path.
    pub run_id: String,
    /// Flow of that run (None if the run is unknown).
    pub flow_id: Option<String>,
    /// Id of the run created (None unless re-triggered).
    pub new_run_id: Option<String>,
    /// `op` as sent.
    pub op: String,
    /// Outcome.
    pub outcome: ReTriggerOutcome,
    /// Emulated time of the call.
    pub at: jiff::Timestamp,
    /// IMS client id of the caller (`x-api-key` as sent; None if missing).
    pub client_id: Option<String>,
}
