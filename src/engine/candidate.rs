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
}

/// Details that cost an extra call to obtain (Step Functions: DescribeExecution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Details {
    pub error: Option<String>,
    pub cause: Option<String>,
    pub redrivability: Option<Redrivability>,
}

/// One failed (or otherwise terminal) run that a policy may act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Unique id of the run (Step Functions: execution ARN).
    pub id: String,
    /// The workflow it belongs to (Step Functions: state machine ARN).
    pub parent: String,
    pub status: RunStatus,
    pub started: Timestamp,
    pub stopped: Option<Timestamp>,
    /// Successful redrives so far, as reported by the service (missing = 0).
    pub redrive_count: u32,
    pub redrive_date: Option<Timestamp>,
    /// A child run that the service redrives through its parent (Distributed Map child).
    pub redriven_by_parent: bool,
    pub details: Option<Details>,
}
