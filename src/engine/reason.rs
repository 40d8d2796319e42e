//! Stable, machine-readable reason codes for decisions.

use std::fmt;

/// Why a candidate is skipped or waits. [`Reason::code`] is stable: it appears in status, metrics,
/// events, `plan -o json` and alerts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The policy is suspended.
    Suspended,
    /// Dry run: this execution would have been redriven.
    DryRun,
    /// The execution's status is not in `spec.statuses`.
    StatusNotSelected,
    /// The target says this run can never be redriven (the text is AWS's reason).
    NotRedrivable(String),
    /// A Distributed Map child: AWS redrives it through its parent's Map Run.
    RedrivableByMapRun,
    /// The state machine is EXPRESS: AWS cannot redrive its executions.
    ExpressNotSupported,
    /// Stopped longer ago than `window.maxAge`.
    OutsideWindow,
    /// Stopped more recently than `window.minAge`.
    TooYoung,
    /// `redriveCount` reached `maxRedrives`.
    MaxRedrivesReached,
    /// Waiting for the backoff after the last failure.
    BackingOff,
    /// The error name matches `errors.exclude`.
    ErrorExcluded,
    /// The error name matches none of `errors.include`.
    ErrorNotIncluded,
    /// The cause does not match `errors.causeRegex`.
    CauseNotMatched,
    /// Error filters are set but the error details could not be read yet.
    DetailsUnavailable,
    /// The policy's rate or concurrency budget is used up for now.
    BudgetExhausted,
    /// Another replica (or an earlier life of this process) holds the ledger claim of this
    /// attempt.
    AlreadyClaimed,
    /// A claim of this attempt was left by a crash and its outcome is not known yet: resolved
    /// from the service's state after the claim's deadline, never by acting blindly.
    InDoubt,
    /// A newer run superseded this one (CodePipeline: the stage failed again in a later
    /// execution); the newer one is the candidate now.
    Superseded,
    /// The service is busy with this workflow (CodePipeline ConflictException, an action in
    /// progress): try again later, no attempt consumed.
    TargetBusy,
    /// The service's own automatic retry (CodePipeline `onFailure: RETRY`) has not happened
    /// yet: acting now would race it.
    AutoRetryPending,
    /// A streaming dataflow (Flow Service): only runs of batch sources can be re-triggered.
    StreamingSource,
}

impl Reason {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Suspended => "Suspended",
            Reason::DryRun => "DryRun",
            Reason::StatusNotSelected => "StatusNotSelected",
            Reason::NotRedrivable(_) => "NotRedrivable",
            Reason::RedrivableByMapRun => "RedrivableByMapRun",
            Reason::ExpressNotSupported => "ExpressNotSupported",
            Reason::OutsideWindow => "OutsideWindow",
            Reason::TooYoung => "TooYoung",
            Reason::MaxRedrivesReached => "MaxRedrivesReached",
            Reason::BackingOff => "BackingOff",
            Reason::ErrorExcluded => "ErrorExcluded",
            Reason::ErrorNotIncluded => "ErrorNotIncluded",
            Reason::CauseNotMatched => "CauseNotMatched",
            Reason::DetailsUnavailable => "DetailsUnavailable",
            Reason::BudgetExhausted => "BudgetExhausted",
            Reason::AlreadyClaimed => "AlreadyClaimed",
            Reason::InDoubt => "InDoubt",
            Reason::Superseded => "Superseded",
            Reason::TargetBusy => "TargetBusy",
            Reason::AutoRetryPending => "AutoRetryPending",
            Reason::StreamingSource => "StreamingSource",
        }
    }

    /// Every reason code, for metrics (series exist from the start) and documentation. The match
    /// in [`Reason::example`] makes the compiler reject a new variant missing from this list.
    pub const ALL: [Reason; 21] = [
        Reason::Suspended,
        Reason::DryRun,
        Reason::StatusNotSelected,
        Reason::NotRedrivable(String::new()),
        Reason::RedrivableByMapRun,
        Reason::ExpressNotSupported,
        Reason::OutsideWindow,
        Reason::TooYoung,
        Reason::MaxRedrivesReached,
        Reason::BackingOff,
        Reason::ErrorExcluded,
        Reason::ErrorNotIncluded,
        Reason::CauseNotMatched,
        Reason::DetailsUnavailable,
        Reason::BudgetExhausted,
        Reason::AlreadyClaimed,
        Reason::InDoubt,
        Reason::Superseded,
        Reason::TargetBusy,
        Reason::AutoRetryPending,
        Reason::StreamingSource,
    ];

    /// Position in [`Reason::ALL`]; exhaustive, so adding a variant without listing it fails to
    /// compile here.
    pub fn index(&self) -> usize {
        match self {
            Reason::Suspended => 0,
            Reason::DryRun => 1,
            Reason::StatusNotSelected => 2,
            Reason::NotRedrivable(_) => 3,
            Reason::RedrivableByMapRun => 4,
            Reason::ExpressNotSupported => 5,
            Reason::OutsideWindow => 6,
            Reason::TooYoung => 7,
            Reason::MaxRedrivesReached => 8,
            Reason::BackingOff => 9,
            Reason::ErrorExcluded => 10,
            Reason::ErrorNotIncluded => 11,
            Reason::CauseNotMatched => 12,
            Reason::DetailsUnavailable => 13,
            Reason::BudgetExhausted => 14,
            Reason::AlreadyClaimed => 15,
            Reason::InDoubt => 16,
            Reason::Superseded => 17,
            Reason::TargetBusy => 18,
            Reason::AutoRetryPending => 19,
            Reason::StreamingSource => 20,
        }
    }

    /// Every stable code, in [`Reason::ALL`] order.
    pub fn all_codes() -> impl Iterator<Item = &'static str> {
        const ALL: [Reason; 21] = Reason::ALL;
        static CODES: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(|| ALL.iter().map(Reason::code).collect());
        CODES.iter().copied()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotRedrivable(why) if !why.is_empty() => write!(f, "NotRedrivable({why})"),
            other => f.write_str(other.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_index_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut codes: Vec<&str> = Reason::all_codes().collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
    }
}
