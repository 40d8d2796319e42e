//! Targets: one adapter per workflow service behind the same small trait.
//!
//! A target discovers candidates cheaply (listing), fetches details only when the engine asks,
//! and performs the redrive with the engine's client token. Service specifics stay here; the
//! engine sees [`Candidate`]s and [`TargetLimits`].

pub mod codepipeline;
pub mod error;
pub mod flowservice;
pub mod registry;
pub mod stepfunctions;

use std::future::Future;

use jiff::{SignedDuration, Timestamp};

pub use error::{ErrorCategory, TargetError};

use crate::engine::{Candidate, Details, Idempotency, Reason, TargetLimits};
use crate::policy::Policy;

/// A workflow that the policy covers but that cannot be acted on (e.g. EXPRESS), or that failed.
#[derive(Clone, Debug)]
pub enum WorkflowIssue {
    /// Skipped for a stable reason.
    Skipped(Reason),
    /// Listing it failed; the other workflows were still listed.
    Failed(TargetError),
}

/// What one discovery pass found.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// Workflows (state machines) the policy resolved to.
    pub workflows: Vec<String>,
    pub candidates: Vec<Candidate>,
    pub issues: Vec<(String, WorkflowIssue)>,
}

impl Discovery {
    /// Add one workflow's listing: its candidates, or the failure that stopped it.
    pub fn push_result(&mut self, workflow: String, result: Result<Vec<Candidate>, TargetError>) {
        match result {
            Ok(mut c) => {
                self.candidates.append(&mut c);
                self.workflows.push(workflow);
            }
            Err(e) => self.issues.push((workflow, WorkflowIssue::Failed(e))),
        }
    }
}

/// Result of one redrive call that the service answered.
#[derive(Clone, Debug, PartialEq)]
pub enum RedriveOutcome {
    /// The service redrove the run (or replayed our own earlier redrive for the same token).
    Redriven { at: Option<Timestamp> },
    /// The run is running again: someone (maybe another replica) redrove it already.
    AlreadyRedriven(String),
    /// The service refuses to redrive it, for the given reason.
    NotRedrivable(String),
    /// The run no longer exists.
    NotFound,
    /// A newer run superseded this one (CodePipeline NotLatestPipelineExecution): not an error,
    /// the newer one is acted on instead.
    Superseded(String),
    /// The service is busy with this workflow (CodePipeline ConflictException, an action in
    /// progress): no attempt was consumed, try again at the next poll.
    Busy(String),
    /// The attempt's ledger claim is held by someone else (the text names the holder).
    AlreadyClaimed(String),
    /// An earlier claim of this attempt was left by a crash and its outcome is not known yet.
    InDoubt(String),
}

impl RedriveOutcome {
    pub fn code(&self) -> &'static str {
        match self {
            RedriveOutcome::Redriven { .. } => "Redriven",
            RedriveOutcome::AlreadyRedriven(_) => "AlreadyRedriven",
            RedriveOutcome::NotRedrivable(_) => "NotRedrivable",
            RedriveOutcome::NotFound => "NotFound",
            RedriveOutcome::Superseded(_) => "Superseded",
            RedriveOutcome::Busy(_) => "TargetBusy",
            RedriveOutcome::AlreadyClaimed(_) => "AlreadyClaimed",
            RedriveOutcome::InDoubt(_) => "InDoubt",
        }
    }
}

/// A workflow service the operator can redrive runs of.
pub trait Target: Send + Sync {
    /// Short name for logs and metrics (`stepfunctions`).
    fn name(&self) -> &'static str;

    /// Hard limits of the service, applied by the engine before the policy's rules.
    fn limits(&self) -> TargetLimits;

    /// How a repeated action is made harmless: a service token, or the attempt ledger.
    fn idempotency(&self) -> Idempotency {
        Idempotency::ServiceToken
    }

    /// The service's clock minus the operator's, as estimated from the service's answers
    /// ([`crate::clock`]); zero when unknown. [`crate::reconcile`] decides on
    /// `now + clock_skew()`.
    fn clock_skew(&self) -> SignedDuration {
        SignedDuration::ZERO
    }

    /// Resolve the policy's workflows and list their failed runs (cheap calls only).
    ///
    /// `now` is the operator's clock: compare it with ledger times (claim deadlines) as is, and
    /// add [`Target::clock_skew`] before comparing it with the service's timestamps. Candidate
    /// timestamps are the service's, as it reported them; a candidate's `hold` is on the
    /// service's clock too (the engine compares it with the service's now), so a hold derived
    /// from a ledger time gets the skew added.
    fn discover(
        &self,
        policy: &Policy,
        now: Timestamp,
    ) -> impl Future<Output = Result<Discovery, TargetError>> + Send;

    /// Fetch the details of one run (error, cause, redrivability).
    fn describe(
        &self,
        candidate: &Candidate,
    ) -> impl Future<Output = Result<Details, TargetError>> + Send;

    /// Number of runs of these workflows that are running after a redrive.
    fn running_redriven(
        &self,
        workflows: &[String],
    ) -> impl Future<Output = Result<u32, TargetError>> + Send;

    /// The candidate for the one run an event names, read from the service with this
    /// target's credentials (Step Functions: one DescribeExecution; CodePipeline: one
    /// GetPipelineState), or `None` when the service says it is not a failed run of the hinted
    /// workflow (running again, succeeded, unknown, another workflow's). The caller has
    /// checked that the policy covers the workflow; nothing else in the hint is trusted.
    /// The default: the target reads no events (every hint is dropped as not a candidate).
    fn candidate_for(
        &self,
        policy: &Policy,
        hint: &crate::events::message::Hint,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Candidate>, TargetError>> + Send {
        let _ = (policy, hint, now);
        std::future::ready(Ok(None))
    }

    /// Redrive one run with the engine's key: the client token ([`Idempotency::ServiceToken`]),
    /// or the name of the attempt's ledger record, claimed before acting ([`Idempotency::Ledger`]).
    fn redrive(
        &self,
        policy: &Policy,
        candidate: &Candidate,
        client_token: &str,
    ) -> impl Future<Output = Result<RedriveOutcome, TargetError>> + Send;
}

/// A policy of another target reached this adapter: a dispatch bug, reported, never acted on.
pub(crate) fn not_this_target(policy: &Policy) -> TargetError {
    TargetError::new(
        "Dispatch",
        ErrorCategory::Unexpected,
        format!(
            "policy {} targets {}, not this adapter",
            policy.id,
            policy.kind().as_str()
        ),
    )
}

/// A ledger failure as the target error of the call it interrupted.
pub(crate) fn ledger_error(e: crate::ledger::LedgerError) -> TargetError {
    TargetError {
        api: "AttemptLedger",
        category: e.category(),
        code: Some(e.code().to_string()),
        message: e.to_string(),
    }
}

/// A ledger outcome with a code and a message.
pub(crate) fn outcome(code: &str, message: &str) -> crate::ledger::Outcome {
    crate::ledger::Outcome {
        code: Some(code.to_string()),
        message: Some(message.to_string()),
        new_run_id: None,
        etag: None,
    }
}

/// An AWS SDK timestamp as a `jiff` one (out of range: the epoch).
pub(crate) fn to_timestamp(t: &aws_smithy_types::DateTime) -> Timestamp {
    Timestamp::new(t.secs(), i32::try_from(t.subsec_nanos()).unwrap_or(0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}
