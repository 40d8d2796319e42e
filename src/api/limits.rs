//! Patterns and limits shared by the CRD schema (`src/crd.rs`, checked by the API server at
//! admission) and the local validation of `src/policy.rs` (policy files never see an API server):
//! one definition, so both paths accept and refuse the same documents.

/// Every duration field: one whole number and one unit. Deliberately narrower than Go or
/// humantime durations, so that the same string means the same thing in the CRD's CEL rules, in
/// `kubectl explain` and in the operator.
pub const DURATION: &str = r"^[0-9]{1,7}(s|m|h|d)$";
/// An AWS region such as `eu-west-1`.
pub const REGION: &str = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$";
/// An IAM role ARN.
pub const ROLE_ARN: &str = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$";
/// A Step Functions state machine ARN (optionally with a version or alias qualifier).
pub const STATE_MACHINE_ARN: &str = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:[0-9]{12}:stateMachine:[^:\s]{1,80}(/[^:\s]{1,80})?(:[A-Za-z0-9_-]{1,80})?$";
/// A CodePipeline pipeline name (api-facts §2.2).
pub const PIPELINE_NAME: &str = r"^[A-Za-z0-9.@\-_]{1,100}$";

/// An Adobe Experience Platform dataflow (flow) id: a UUID in practice; kept to the characters
/// that are safe inside a `property=flowId==...` query value (no `,`, `&`, `=`, spaces).
pub const FLOW_ID: &str = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$";
/// An Adobe Experience Platform sandbox name (all lowercase, as the `x-sandbox-name` header wants).
pub const SANDBOX_NAME: &str = r"^[a-z0-9][a-z0-9-]{0,63}$";
/// A Kubernetes object name (DNS-1123 subdomain), for Secret references.
pub const OBJECT_NAME: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Explicit workflows (state machine ARNs, pipeline names) per policy.
pub const MAX_WORKFLOWS: usize = 100;
/// Tags a selector may require.
pub const MAX_SELECTOR_TAGS: usize = 20;
/// Globs in one list (errors.include / exclude, codePipeline.stages).
pub const MAX_GLOBS: usize = 50;
