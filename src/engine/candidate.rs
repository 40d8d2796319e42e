//! What a target knows about one failed run, in target-neutral terms.

use jiff::Timestamp;

/// Status of a run, as the engine needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    Failed,
    TimedOut,
    Aborted,
    Running,
    Succeeded,
    /// Stopped by a person or a stop call (CodePipeline `Stopped`).
    Stopped,
    /// Anything else the service reports (e.g. PENDING_REDRIVE).
    Other,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Failed => "FAILED",
            RunStatus::TimedOut => "TIMED_OUT",
            RunStatus::Aborted => "ABORTED",
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Stopped => "STOPPED",
            RunStatus::Other => "OTHER",
        }
    }
}

/// Whether the service itself would accept a redrive (Step Functions: `redriveStatus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redrivability {
    Redrivable,
    NotRedrivable(String),
    ByMapRun,
    /// A newer run of the workflow made this one moot (Flow Service: a later run of the
    /// dataflow succeeded); the text says which.
    Superseded(String),
}

/// Details that cost an extra call to obtain (Step Functions: DescribeExecution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Details {
    pub error: Option<String>,
    pub cause: Option<String>,
    pub redrivability: Option<Redrivability>,
}

/// How a target makes a repeated action harmless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// The service deduplicates by a client token (Step Functions): the key is sent with the call.
    ServiceToken,
    /// No token: the key names a record in the attempt ledger, and creating it is the claim
    /// (CodePipeline, Flow Service).
    Ledger,
}

/// One failed (or otherwise terminal) run that a policy may act on, in service-neutral terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Unique id of the run (Step Functions: execution ARN; CodePipeline:
    /// `pipeline/stage/pipelineExecutionId`).
    pub id: String,
    /// The workflow it belongs to (Step Functions: state machine ARN; CodePipeline: pipeline).
    pub workflow: String,
    pub status: RunStatus,
    pub started: Timestamp,
    /// When the latest attempt failed: the backoff and the window count from here.
    pub stopped: Option<Timestamp>,
    /// Attempts so far, as the service reports them (Step Functions: redriveCount; CodePipeline:
    /// manualStageRetryAttempt). Missing = 0.
    pub attempts: u32,
    /// When the latest attempt started, if the service says (Step Functions: redriveDate).
    pub last_attempt: Option<Timestamp>,
    /// A child run that the service redrives through its parent (Distributed Map child).
    pub redriven_by_parent: bool,
    /// The service says to wait before acting (e.g. CodePipeline's own automatic retry is still
    /// due), until the given time.
    pub hold: Option<(super::Reason, Timestamp)>,
    pub details: Option<Details>,
    /// The original failure of the run's lineage, when acting creates a new run each time
    /// (Flow Service: the failed run that the first re-trigger acted on). `None`: the run is its
    /// own root (services that resume a run in place).
    pub root: Option<String>,
}
