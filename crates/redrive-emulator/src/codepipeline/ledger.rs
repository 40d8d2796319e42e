//! The RetryStageExecution ledger: every call, whatever its outcome, in order.

use serde::{Deserialize, Serialize};

/// What happened to one RetryStageExecution call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum RetryOutcome {
    /// The stage was retried (`manualStageRetryAttempt` incremented).
    Retried,
    /// Refused by the service with this code (`ValidationException`, `PipelineNotFoundException`,
    /// `StageNotFoundException`, `NotLatestPipelineExecutionException`,
    /// `StageNotRetryableException`, `ConflictException`,
    /// `ConcurrentPipelineExecutionsLimitExceededException`, `AccessDeniedException`,
    /// `SerializationException`).
    Refused {
        /// Error code (`__type`).
        code: String,
        /// Error message.
        message: String,
    },
    /// Rejected before reaching the model because of the caller's session key:
    /// `ExpiredTokenException` or `UnrecognizedClientException`.
    Unauthenticated {
        /// Error code.
        code: String,
    },
    /// `ThrottlingException`: the call never reached the model.
    Throttled,
    /// An injected fault answered instead of the model.
    Faulted {
        /// Fault kind (`server-error`, `malformed-html`, `malformed-truncated`, `drop`).
        fault: String,
    },
}

impl RetryOutcome {
    /// `Retried`, the service error code, `ThrottlingException`, or the fault kind.
    pub fn code(&self) -> &str {
        match self {
            RetryOutcome::Retried => "Retried",
            RetryOutcome::Refused { code, .. } | RetryOutcome::Unauthenticated { code } => code,
            RetryOutcome::Throttled => "ThrottlingException",
            RetryOutcome::Faulted { fault } => fault,
        }
    }
    /// True for a performed retry.
    pub fn is_retried(&self) -> bool {
        matches!(self, RetryOutcome::Retried)
    }
    /// True if the call reached the model (not throttled, faulted or unauthenticated).
    pub fn reached_model(&self) -> bool {
        matches!(self, RetryOutcome::Retried | RetryOutcome::Refused { .. })
    }
}

/// One RetryStageExecution call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryLedgerEntry {
    /// `pipelineName` as sent (empty if missing).
    pub pipeline_name: String,
    /// `stageName` as sent.
    pub stage_name: String,
    /// `pipelineExecutionId` as sent.
    pub pipeline_execution_id: String,
    /// `retryMode` as sent.
    pub retry_mode: String,
    /// `manualStageRetryAttempt` of that stage in that execution before the call (0 if none).
    pub manual_stage_retry_attempt_before: u32,
    /// Outcome.
    pub outcome: RetryOutcome,
    /// Emulated time of the call.
    pub at: jiff::Timestamp,
    /// Access key id from the SigV4 `Credential=` (None for direct `handle_request` calls).
    pub access_key_id: Option<String>,
}
