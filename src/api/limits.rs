//! Patterns and limits shared by the CRD schema (`src/crd.rs`, checked by the API server at
//! admission) and the local validation of `src/policy.rs` (policy files never see an API server):
//! one definition, so both paths accept and refuse the same documents.

/// Every duration field: Go-style compound durations (`90s`, `15m`, `1h30m`, `2d12h`,
/// `1h30m0s` as `metav1.Duration` prints them), with days, and each unit at most once, in the
/// order d, h, m, s, with up to 7 digits each. Narrower than Go's `time.ParseDuration` (no `ms`,
/// `us`, `ns`, fractions or signs, no unit twice or out of order) so that the CRD's CEL rules can
/// turn the string into seconds with plain string functions and mean exactly what the operator
/// means (`crate::crd::cel_seconds`, `crate::policy::parse_duration`). The alternation keeps the
/// empty string out without look-ahead, which RE2 (the API server's regex engine) lacks.
pub const DURATION: &str = "^([0-9]{1,7}d([0-9]{1,7}h)?([0-9]{1,7}m)?([0-9]{1,7}s)?|[0-9]{1,7}h([0-9]{1,7}m)?([0-9]{1,7}s)?|[0-9]{1,7}m([0-9]{1,7}s)?|[0-9]{1,7}s)$";
/// The units of [`DURATION`], in their order, with their length in seconds.
pub const DURATION_UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
/// Longest duration string: four units of seven digits each.
pub const DURATION_MAX_LEN: usize = 32;
/// What [`DURATION`] accepts, for rejection messages.
pub const DURATION_HELP: &str = "whole numbers with the units d, h, m and s, each at most once and in that order, e.g. 90s, 15m, 1h30m, 2d12h (no fractions, no ms)";

/// Longest `pollInterval`, in seconds: 24h. The poll is the only way the operator discovers a
/// failure, so the interval is the longest a failure waits before it is even seen. A day keeps at
/// least 14 polls inside the longest Step Functions window (AWS redrives up to 14 days after a
/// stop), keeps `status.lastPoll` fresh enough for "is this policy alive" alerts, and already
/// covers the slowest real cadence (a daily batch); `400d` can only be a typo.
pub const MAX_POLL_INTERVAL_SECS: u64 = 86_400;
/// Shortest `pollInterval`, in seconds.
pub const MIN_POLL_INTERVAL_SECS: u64 = 10;

/// AWS partition of a region, by region-name prefix, as in the AWS SDKs' `partitions.json`
/// (`regionRegex`): a region with none of these prefixes is in the `aws` partition. An IAM role
/// or a state machine ARN of another partition cannot be used in that region (STS and the
/// service endpoints are per partition), so admission rejects the mix instead of the first poll.
pub const REGION_PARTITIONS: [(&str, &str); 6] = [
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-iso-", "aws-iso"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("eu-isoe-", "aws-iso-e"),
];
/// The partition of every other region.
pub const DEFAULT_PARTITION: &str = "aws";

/// The AWS partition of `region` (see [`REGION_PARTITIONS`]).
pub fn partition_of(region: &str) -> &'static str {
    REGION_PARTITIONS
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or(DEFAULT_PARTITION, |(_, partition)| partition)
}
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
