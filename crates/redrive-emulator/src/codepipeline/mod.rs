//! AWS CodePipeline emulator (api-facts §2, §4.2, §5.2), served on the same endpoint and state
//! as Step Functions.
//!
//! Requests whose `X-Amz-Target` starts with `CodePipeline_20150709.` are AWS JSON 1.1
//! CodePipeline calls: the real `aws-sdk-codepipeline` client works against the emulator with
//! `endpoint_url`. Pipelines run stages in order, each stage its actions in run-order groups;
//! every action attempt takes an emulated duration and then succeeds or fails per a scenario
//! script. RetryStageExecution, the native `onFailure: RETRY` auto-retry, superseding,
//! stopping and pipeline updates follow the documented semantics. See `docs/emulator.md`
//! (section "CodePipeline") for the scenario format and the choices on UNCONFIRMED points.

/// An enum of wire names (`as_str`, `parse`, `ALL`, serde by wire name).
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $wire)] $variant),+
        }
        impl $name {
            /// Wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
            /// Parse a wire name (exact, case-sensitive as AWS is).
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
            /// Every wire name, for validation messages.
            pub const ALL: &'static [&'static str] = &[$($wire),+];
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod admin;
mod api;
mod declaration;
mod ledger;
mod model;
mod progress;
mod retry;
mod scenario;
mod view;

pub use admin::PipelineAdminError;
pub(crate) use api::{dispatch, record_unreached_retry};
pub use ledger::{RetryLedgerEntry, RetryOutcome};
pub(crate) use model::Model;
pub use scenario::{
    ActionCategory, ActionOutcome, ActionSpec, ExecutionMode, FailureResult, OnFailureSpec,
    PipelineExecutionSpec, PipelineSpec, PipelineType, RetryConfigurationSpec, StageRetryMode,
    StageSpec, default_error_message,
};
pub use view::{
    ActionExecutionStatus, ActionStateSnapshot, PipelineExecutionSnapshot, PipelineExecutionStatus,
    PipelineStateSnapshot, RetryTrigger, StageExecutionStatus, StageStateSnapshot,
};

/// `X-Amz-Target` prefix of every CodePipeline operation.
pub const TARGET_PREFIX: &str = "CodePipeline_20150709.";

/// Implemented operations and the key each is counted, throttled and fault-filtered under
/// (its IAM action name, so `ListTagsForResource` does not collide with Step Functions').
const APIS: &[(&str, &str)] = &[
    ("CreatePipeline", "codepipeline:CreatePipeline"),
    ("UpdatePipeline", "codepipeline:UpdatePipeline"),
    ("GetPipeline", "codepipeline:GetPipeline"),
    ("ListPipelines", "codepipeline:ListPipelines"),
    ("ListTagsForResource", "codepipeline:ListTagsForResource"),
    (
        "StartPipelineExecution",
        "codepipeline:StartPipelineExecution",
    ),
    (
        "StopPipelineExecution",
        "codepipeline:StopPipelineExecution",
    ),
    ("GetPipelineState", "codepipeline:GetPipelineState"),
    (
        "ListPipelineExecutions",
        "codepipeline:ListPipelineExecutions",
    ),
    ("GetPipelineExecution", "codepipeline:GetPipelineExecution"),
    ("RetryStageExecution", "codepipeline:RetryStageExecution"),
];

/// Operations the CodePipeline emulator implements (`X-Amz-Target: CodePipeline_20150709.<Op>`).
pub const OPERATIONS: &[&str] = &[
    "CreatePipeline",
    "UpdatePipeline",
    "GetPipeline",
    "ListPipelines",
    "ListTagsForResource",
    "StartPipelineExecution",
    "StopPipelineExecution",
    "GetPipelineState",
    "ListPipelineExecutions",
    "GetPipelineExecution",
    "RetryStageExecution",
];

/// True if `target` addresses CodePipeline (whether or not the operation exists).
pub fn is_target(target: &str) -> bool {
    target.trim().starts_with(TARGET_PREFIX)
}

/// The CodePipeline operation named by an `X-Amz-Target` value, if implemented.
pub fn operation_of(target: &str) -> Option<&'static str> {
    let op = target.trim().strip_prefix(TARGET_PREFIX)?;
    APIS.iter().map(|(o, _)| *o).find(|o| *o == op)
}

/// The statistics / throttling / `onlyApis` key of an operation: `codepipeline:<Op>`.
pub fn api_key(op: &str) -> &'static str {
    APIS.iter()
        .find(|(o, _)| *o == op)
        .map_or("Unknown", |(_, k)| *k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            operation_of("CodePipeline_20150709.RetryStageExecution"),
            Some("RetryStageExecution")
        );
        assert_eq!(operation_of("CodePipeline_20150709.DeletePipeline"), None);
        assert_eq!(operation_of("AWSStepFunctions.ListExecutions"), None);
        assert!(is_target(" CodePipeline_20150709.Nope"));
        assert_eq!(
            api_key("ListTagsForResource"),
            "codepipeline:ListTagsForResource"
        );
        assert_eq!(OPERATIONS.len(), APIS.len());
        assert!(APIS.iter().zip(OPERATIONS).all(|((a, _), b)| a == b));
    }
}
