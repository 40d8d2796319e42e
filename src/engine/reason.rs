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
        }
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
