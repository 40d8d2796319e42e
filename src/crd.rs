//! The `RedrivePolicy` custom resource (`redrive.dev/v1alpha1`).
//!
//! These Rust types are the single source of truth for the CRD: `redrive-operator crd` prints the
//! schema generated from them and `crds/redrivepolicies.redrive.dev.yaml` is checked against it by a
//! test. Validation that the API server can do lives in the schema (patterns, bounds, CEL rules);
//! what it cannot do (regex syntax) is checked by [`crate::policy`] and reported in a condition.

use std::collections::BTreeMap;

use kube::core::Rule;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::api::limits;

/// Pattern shared by every duration field (see [`limits::DURATION`]).
pub const DURATION_PATTERN: &str = limits::DURATION;

/// CEL expression turning the duration string `f` (a CEL path such as `self.window.maxAge`) into
/// seconds: for each unit of [`limits::DURATION_UNITS`], the digits before it (`find`, from the
/// Kubernetes CEL regex library), as `int`, times the unit; a unit that is absent counts 0 (the
/// `'0' +` prefix). The same sum [`crate::policy::parse_duration`] computes, for every string
/// [`DURATION_PATTERN`] accepts. Never a runtime error, even on strings the pattern refuses
/// (`{1,7}` cannot overflow), so a malformed duration is reported once, by [`duration_rule`].
fn cel_seconds(f: &str) -> String {
    let terms: Vec<String> = limits::DURATION_UNITS
        .iter()
        .map(|(unit, secs)| {
            format!("int('0' + {f}.find('[0-9]{{1,7}}{unit}').replace('{unit}', '')) * {secs}")
        })
        .collect();
    format!("({})", terms.join(" + "))
}

/// CEL: whether the string `f` is a duration. [`DURATION_PATTERN`] goes into a CEL string literal
/// as is: it has no quote or backslash (checked by a test).
fn cel_is_duration(f: &str) -> String {
    format!("{f}.matches('{DURATION_PATTERN}')")
}

/// CEL: `expr`, checked only when every field of `fields` is a well-formed duration (a malformed
/// one is already reported by its [`duration_rule`]: one message per mistake).
fn cel_if_durations(fields: &[&str], expr: &str) -> String {
    let guards: Vec<String> = fields
        .iter()
        .map(|f| format!("!{}", cel_is_duration(f)))
        .collect();
    format!("{} || {expr}", guards.join(" || "))
}

/// The rule every duration field carries: its format, with a message that shows the accepted
/// forms. A CEL rule rather than the schema's `pattern`, whose rejection would only quote the
/// regular expression.
fn duration_rule(field: &str) -> Rule {
    Rule::new(cel_is_duration("self"))
        .message(format!("{field} must be a duration: {}", limits::DURATION_HELP).as_str())
}

/// A rule on the duration field itself (`self`), checked once it is well-formed.
fn duration_bound(expr: &str, message: &str) -> Rule {
    Rule::new(cel_if_durations(&["self"], expr)).message(message)
}

/// CEL: the AWS partition of the region string `r` (see [`limits::REGION_PARTITIONS`]).
fn cel_partition(r: &str) -> String {
    let mut expr = format!("'{}'", limits::DEFAULT_PARTITION);
    for (prefix, partition) in limits::REGION_PARTITIONS.iter().rev() {
        expr = format!("{r}.startsWith('{prefix}') ? '{partition}' : {expr}");
    }
    format!("({expr})")
}

/// How partitions follow regions, for messages.
const PARTITION_HELP: &str = "arn:aws-cn: for cn-* regions, arn:aws-us-gov: for us-gov-*, arn:aws-iso*: for the ISO regions, arn:aws: for every other region";

/// The role of an AWS target must be in the partition of its region.
fn role_partition_rule(member: &str, also: &str) -> Rule {
    Rule::new(format!(
        "!has(self.roleArn) || self.roleArn.startsWith('arn:' + {} + ':')",
        cel_partition("self.region")
    ))
    .message(
        format!(
            "{member}.roleArn must be in the AWS partition of {member}.region{also} ({PARTITION_HELP})"
        )
        .as_str(),
    )
    .field_path(".roleArn")
}

/// A regular expression (RE2) checked by the API server: `matches` compiles its pattern, so an
/// invalid one is an evaluation error, which the API server reports with the parser's reason
/// followed by this rule's message ("error parsing regexp: missing closing ): `(a` evaluating
/// rule: ..."). The rule is never false (`in [true, false]` propagates the error, unlike `||`,
/// which would absorb it). Go's RE2 and the operator's Rust `regex` differ at the edges (Go
/// accepts `\Q...\E`, Rust enforces a compiled-size limit), so the operator still compiles every
/// pattern and reports what it refuses in the InvalidSpec condition.
fn regex_rule(field: &str) -> Rule {
    Rule::new("''.matches(self) in [true, false]")
        .message(format!("{field} must be a valid regular expression (RE2 syntax)").as_str())
}

/// A list of at most `max` values, none repeated. A CEL rule rather than
/// `x-kubernetes-list-type: set`, which would also change how server-side apply merges the list
/// (per value, across field managers, instead of replacing it as a whole). The check is
/// quadratic, so a list longer than its `maxItems` skips it: the API server refuses such a list
/// before any CEL rule runs, but local mode evaluates the rules on whatever a file holds (and
/// `policy.rs` refuses the length).
fn unique_rule(max: usize, message: &str) -> Rule {
    Rule::new(format!(
        "size(self) > {max} || self.all(a, self.exists_one(b, b == a))"
    ))
    .message(message)
}

/// Declares which failed workflow runs the operator may resume, and how carefully.
// The repeated `type_` keys belong to different printcolumns, not one attribute twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redrive.dev",
    version = "v1alpha1",
    kind = "RedrivePolicy",
    plural = "redrivepolicies",
    singular = "redrivepolicy",
    shortname = "rdp",
    category = "redrive",
    namespaced,
    status = "RedrivePolicyStatus",
    derive = "PartialEq",
    cel,
    doc = "RedrivePolicy tells redrive-operator which failed workflow runs (AWS Step Functions executions, AWS CodePipeline stages, Adobe Experience Platform dataflow runs) to redrive (resume from the point of failure), when, and at what rate.",
    printcolumn(name = "Target", type_ = "string", json_path = ".status.target"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "DryRun",
        type_ = "boolean",
        json_path = ".spec.dryRun",
        priority = 1
    ),
    printcolumn(
        name = "Redriven",
        type_ = "integer",
        json_path = ".status.counts.redriven"
    ),
    printcolumn(
        name = "Waiting",
        type_ = "integer",
        json_path = ".status.counts.waiting"
    ),
    printcolumn(
        name = "Exhausted",
        type_ = "integer",
        json_path = ".status.counts.exhausted"
    ),
    printcolumn(name = "Last poll", type_ = "date", json_path = ".status.lastPoll"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// One target per policy (the Kubernetes "one of several sources" convention, like Volume
// sources): exactly one member is set, and the kind cannot change after creation because the
// attempt history, status and metrics of a policy belong to one service.
#[x_kube(validation = Rule::new("[has(self.stepFunctions), has(self.codePipeline), has(self.flowService)].filter(x, x).size() == 1").message("set exactly one target: spec.stepFunctions, spec.codePipeline or spec.flowService"))]
#[x_kube(validation = Rule::new("has(self.stepFunctions) == has(oldSelf.stepFunctions) && has(self.codePipeline) == has(oldSelf.codePipeline) && has(self.flowService) == has(oldSelf.flowService)").message("the target kind (spec.stepFunctions, spec.codePipeline or spec.flowService) cannot change after creation: create a new policy"))]
#[x_kube(validation = Rule::new("!has(self.statuses) || has(self.stepFunctions)").message("spec.statuses (deprecated) applies to stepFunctions policies only: use spec.codePipeline.statuses"))]
#[x_kube(validation = Rule::new("!has(self.statuses) || !has(self.stepFunctions) || !has(self.stepFunctions.statuses)").message("set spec.stepFunctions.statuses or the deprecated spec.statuses, not both"))]
#[x_kube(validation = Rule::new(format!("!has(self.stepFunctions) || !has(self.window) || !has(self.window.maxAge) || {}", cel_if_durations(&["self.window.maxAge"], &format!("{} <= 1209600", cel_seconds("self.window.maxAge"))))).message("window.maxAge must be at most 14d: AWS cannot redrive an execution more than 14 days after it stopped"))]
pub struct RedrivePolicySpec {
    /// Stop acting on this policy (no AWS calls); status is kept.
    #[serde(default)]
    pub suspend: bool,

    /// Compute and publish the plan, but never call RedriveExecution.
    #[serde(default)]
    pub dry_run: bool,

    /// Target: the Step Functions state machines this policy covers (exactly one target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_functions: Option<StepFunctionsTarget>,

    /// Target: the CodePipeline pipelines and stages this policy retries (exactly one target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_pipeline: Option<CodePipelineTarget>,

    /// Target: the Adobe Experience Platform dataflows whose failed runs this policy re-triggers
    /// (exactly one target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_service: Option<FlowServiceTarget>,

    /// Deprecated: use stepFunctions.statuses. Execution statuses to redrive (subset of FAILED,
    /// TIMED_OUT, ABORTED); Step Functions policies only.
    // No schema default: the API server would add it to every policy, CodePipeline ones too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))").message("statuses must not repeat a value"))]
    pub statuses: Option<Vec<FailureStatus>>,

    /// Filters on the execution's error name and cause. Setting any of them costs one
    /// DescribeExecution call per candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorFilter>,

    /// Age window of the failure, measured from the execution's stop date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,

    /// Maximum number of redrives of one execution (AWS counts them in redriveCount).
    #[serde(default = "default_max_redrives")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_redrives: u32,

    /// Wait between a failure and its next redrive, growing with each redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,

    /// Rate and concurrency caps for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,

    /// Which eligible failures go first when the budget, the caps or the service's quotas
    /// cannot take them all at once: OldestFirst (default: closest to the service's redrive
    /// limit, 14 days for Step Functions) or NewestFirst (the freshest failures, whose
    /// consumers are most likely still waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<RedriveOrder>,

    /// How often to look for failed runs (e.g. 30s, 1m, 5m, 1h30m): 10s to 24h. Keep it shorter
    /// than the window (window.maxAge - window.minAge), or a failure can leave the window
    /// between two polls (the operator warns in status).
    #[serde(default = "default_poll_interval")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("pollInterval"))]
    #[x_kube(validation = duration_bound(&format!("{} >= {}", cel_seconds("self"), limits::MIN_POLL_INTERVAL_SECS), "pollInterval must be at least 10s"))]
    #[x_kube(validation = duration_bound(&format!("{} <= {}", cel_seconds("self"), limits::MAX_POLL_INTERVAL_SECS), "pollInterval must be at most 24h: the poll is how failures are found, and a longer interval lets them wait days"))]
    pub poll_interval: String,
}

/// The Step Functions side of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.stateMachines) && size(self.stateMachines) > 0) || has(self.selector)").message("set at least one of stepFunctions.stateMachines or stepFunctions.selector"))]
#[x_kube(validation = Rule::new("!has(self.stateMachines) || self.stateMachines.all(a, a.split(':')[3] == self.region)").message("every ARN in stepFunctions.stateMachines must be in stepFunctions.region"))]
#[x_kube(validation = Rule::new(format!("!has(self.stateMachines) || self.stateMachines.all(a, a.startsWith('arn:' + {} + ':'))", cel_partition("self.region"))).message(format!("every ARN in stepFunctions.stateMachines must be in the AWS partition of stepFunctions.region ({PARTITION_HELP})").as_str()).field_path(".stateMachines"))]
#[x_kube(validation = role_partition_rule("stepFunctions", " and of stepFunctions.stateMachines"))]
pub struct StepFunctionsTarget {
    /// AWS region of the state machines, e.g. eu-west-1.
    #[schemars(pattern(limits::REGION), length(max = 32))]
    pub region: String,

    /// IAM role to assume for this policy, with ExternalId set to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(limits::ROLE_ARN), length(max = 600))]
    pub role_arn: Option<String>,

    /// Explicit state machine ARNs (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = limits::MAX_WORKFLOWS),
        inner(
            pattern(limits::STATE_MACHINE_ARN),
            length(max = 256)
        )
    )]
    #[x_kube(validation = unique_rule(limits::MAX_WORKFLOWS, "stepFunctions.stateMachines must not repeat an ARN"))]
    pub state_machines: Vec<String>,

    /// Select state machines by name and tags (costs ListStateMachines and ListTagsForResource
    /// calls, cached between polls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<StateMachineSelector>,

    /// Longest time an execution of these state machines runs, redrives included (e.g. 1h, 2d).
    /// Listing stops at executions that started more than window.maxAge + maxRunTime ago,
    /// because AWS lists executions by start date.
    #[serde(default = "default_max_run_time")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("stepFunctions.maxRunTime"))]
    #[x_kube(validation = duration_bound(&format!("{} <= 31536000", cel_seconds("self")), "stepFunctions.maxRunTime must be at most 365d (the AWS maximum execution time)"))]
    pub max_run_time: String,

    /// Execution statuses to redrive (subset of FAILED, TIMED_OUT, ABORTED; default FAILED,
    /// TIMED_OUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))").message("stepFunctions.statuses must not repeat a value"))]
    pub statuses: Option<Vec<FailureStatus>>,
}

/// The CodePipeline side of a policy: failed stages are retried with RetryStageExecution.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.pipelines) && size(self.pipelines) > 0) || has(self.selector)").message("set at least one of codePipeline.pipelines or codePipeline.selector"))]
// There are no ARNs in a CodePipeline spec: the region alone decides the partition.
#[x_kube(validation = role_partition_rule("codePipeline", ""))]
pub struct CodePipelineTarget {
    /// AWS region of the pipelines, e.g. eu-west-1.
    #[schemars(pattern(limits::REGION), length(max = 32))]
    pub region: String,

    /// IAM role to assume for this policy, with ExternalId set to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(limits::ROLE_ARN), length(max = 600))]
    pub role_arn: Option<String>,

    /// Pipeline names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = limits::MAX_WORKFLOWS),
        inner(pattern(limits::PIPELINE_NAME), length(max = 100))
    )]
    #[x_kube(validation = unique_rule(limits::MAX_WORKFLOWS, "codePipeline.pipelines must not repeat a name"))]
    pub pipelines: Vec<String>,

    /// Select pipelines by name and tags (costs ListPipelines and ListTagsForResource calls,
    /// cached between polls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PipelineSelector>,

    /// Stage names or globs (e.g. Deploy*) to retry; default every stage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::MAX_GLOBS), inner(length(min = 1, max = 100)))]
    #[x_kube(validation = unique_rule(limits::MAX_GLOBS, "codePipeline.stages must not repeat a glob"))]
    pub stages: Vec<String>,

    /// Stage statuses to retry: Failed (default), and optionally Stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))").message("codePipeline.statuses must not repeat a value"))]
    pub statuses: Option<Vec<StageStatus>>,

    /// FAILED_ACTIONS (default) re-runs the failed actions; ALL_ACTIONS re-runs the stage from its
    /// first action.
    #[serde(default)]
    pub retry_mode: RetryMode,
}

/// The Adobe Experience Platform Flow Service side of a policy: failed runs of batch source
/// dataflows are re-triggered (`POST /runs/{id}/action?op=re-trigger`), which creates a new run.
/// The Platform and IMS endpoints are operator settings, never policy fields, so a policy cannot
/// send its token to a host of its choosing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.flows) && size(self.flows) > 0) || has(self.selector)").message("set at least one of flowService.flows or flowService.selector"))]
pub struct FlowServiceTarget {
    /// Sandbox of the dataflows (the x-sandbox-name header), e.g. prod.
    #[serde(default = "default_sandbox")]
    #[schemars(pattern(limits::SANDBOX_NAME), length(max = 64))]
    pub sandbox: String,

    /// The Secret, in the policy's own namespace, holding the OAuth server-to-server
    /// credentials: keys clientId, clientSecret, orgId and optionally scopes (comma-separated).
    pub credentials_secret_ref: SecretReference,

    /// Dataflow (flow) ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = limits::MAX_WORKFLOWS),
        inner(pattern(limits::FLOW_ID), length(max = 64))
    )]
    #[x_kube(validation = unique_rule(limits::MAX_WORKFLOWS, "flowService.flows must not repeat a flow id"))]
    pub flows: Vec<String>,

    /// Select dataflows by name (costs GET /flows calls, cached between polls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<FlowSelector>,

    /// Also re-trigger runs that succeeded but ingested zero records (the second case Adobe
    /// documents as re-triggerable). Off by default: an empty source is often legitimate.
    #[serde(default)]
    pub include_empty_success: bool,
}

/// A reference to a Secret in the policy's namespace (there is deliberately no namespace field).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(pattern(limits::OBJECT_NAME), length(min = 1, max = 253))]
    pub name: String,
}

/// Selects dataflows by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FlowSelector {
    /// Regular expression (RE2 syntax) matched against the dataflow name.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = regex_rule("flowService.selector.nameRegex"))]
    pub name_regex: String,
}

/// Selects pipelines by name and tags; both must match when both are set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.nameRegex) || (has(self.tags) && size(self.tags) > 0)").message("codePipeline.selector needs nameRegex or tags"))]
pub struct PipelineSelector {
    /// Regular expression (RE2 syntax) matched against the pipeline name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = regex_rule("codePipeline.selector.nameRegex"))]
    pub name_regex: Option<String>,

    /// Tags that the pipeline must carry, all of them, with these exact values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
}

/// A CodePipeline stage status that can be retried.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum StageStatus {
    Failed,
    Stopped,
}

// The order in which eligible failures are redriven (`spec.order`). No doc comment: on an
// optional field the type's description would replace the field's in the CRD.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum RedriveOrder {
    /// Oldest failure first: closest to the service's redrive limit.
    #[default]
    OldestFirst,
    /// Newest failure first.
    NewestFirst,
}

/// RetryStageExecution's retryMode.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryMode {
    #[default]
    FailedActions,
    AllActions,
}

impl RetryMode {
    /// The API's wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailedActions => "FAILED_ACTIONS",
            Self::AllActions => "ALL_ACTIONS",
        }
    }
}

/// Selects state machines by name and tags; both must match when both are set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.nameRegex) || (has(self.tags) && size(self.tags) > 0)").message("stepFunctions.selector needs nameRegex or tags"))]
pub struct StateMachineSelector {
    /// Regular expression (RE2 syntax) matched against the state machine name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = regex_rule("stepFunctions.selector.nameRegex"))]
    pub name_regex: Option<String>,

    /// Tags that the state machine must carry, all of them, with these exact values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 20))]
    pub tags: BTreeMap<String, String>,
}

/// A terminal status that can be redriven.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureStatus {
    Failed,
    TimedOut,
    Aborted,
}

impl FailureStatus {
    pub const ALL: [FailureStatus; 3] = [Self::Failed, Self::TimedOut, Self::Aborted];

    /// The Step Functions `ExecutionStatus` wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }
}

/// Error filters, evaluated against DescribeExecution's `error` and `cause`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ErrorFilter {
    /// Redrive only executions whose error name matches one of these globs (e.g. Lambda.*).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::MAX_GLOBS), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = unique_rule(limits::MAX_GLOBS, "errors.include must not repeat a glob"))]
    pub include: Vec<String>,

    /// Never redrive executions whose error name matches one of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::MAX_GLOBS), inner(length(min = 1, max = 256)))]
    #[x_kube(validation = unique_rule(limits::MAX_GLOBS, "errors.exclude must not repeat a glob"))]
    pub exclude: Vec<String>,

    /// Redrive only executions whose cause matches this regular expression (RE2 syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = regex_rule("errors.causeRegex"))]
    pub cause_regex: Option<String>,
}

/// Age window since the execution stopped.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(format!("!has(self.minAge) || !has(self.maxAge) || {}", cel_if_durations(&["self.minAge", "self.maxAge"], &format!("{} < {}", cel_seconds("self.minAge"), cel_seconds("self.maxAge"))))).message("window.minAge must be shorter than window.maxAge"))]
pub struct Window {
    /// Leave failures alone until they are this old (gives humans and other tools a head start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("window.minAge"))]
    pub min_age: Option<String>,

    /// Ignore failures older than this. At most 14d for Step Functions (AWS refuses to redrive
    /// an execution more than 14 days after it stopped), 365d otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("window.maxAge"))]
    #[x_kube(validation = duration_bound(&format!("{} <= 31536000", cel_seconds("self")), "window.maxAge must be at most 365d"))]
    pub max_age: Option<String>,
}

/// Exponential backoff between a failure and the next redrive.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(cel_if_durations(&["self.initial", "self.max"], &format!("{} <= {}", cel_seconds("self.initial"), cel_seconds("self.max")))).message("backoff.initial must not exceed backoff.max"))]
pub struct Backoff {
    /// Wait before the first redrive, counted from the stop date.
    #[serde(default = "default_backoff_initial")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("backoff.initial"))]
    pub initial: String,

    /// Multiplier applied per earlier redrive (wait = initial * factor^redriveCount).
    #[serde(default = "default_backoff_factor")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub factor: f64,

    /// Upper bound of the wait.
    #[serde(default = "default_backoff_max")]
    #[schemars(length(max = limits::DURATION_MAX_LEN))]
    #[x_kube(validation = duration_rule("backoff.max"))]
    pub max: String,

    /// Spread (0 to 1) applied to each wait, deterministic per execution and attempt.
    #[serde(default = "default_backoff_jitter")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: default_backoff_initial(),
            factor: default_backoff_factor(),
            max: default_backoff_max(),
            jitter: default_backoff_jitter(),
        }
    }
}

/// Rate and concurrency caps.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Maximum RedriveExecution calls per minute for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub redrives_per_minute: Option<u32>,

    /// Maximum number of redriven executions running at once (costs one extra ListExecutions
    /// per state machine and poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_running_redriven: Option<u32>,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePolicyStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Suspended and Degraded conditions (metav1.Condition shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// When the last poll finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<String>,

    /// When the next poll is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_poll: Option<String>,

    /// The target kind: stepfunctions, codepipeline or flowservice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,

    /// Number of workflows (state machines, pipelines, dataflows) the policy resolved to at the last poll.
    #[serde(default)]
    pub workflows: u32,

    /// Deprecated alias of workflows, written for Step Functions policies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_machines: Option<u32>,

    /// Decision counts.
    #[serde(default)]
    pub counts: StatusCounts,

    /// The most recent redrives, newest first (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<RecentRedrive>,

    /// Present when the operator reads event hints (docs/events.md): failures are decided as
    /// their events arrive, and the full poll (the sweep) catches what events miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsStatus>,
}

/// How event hints reach this policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EventsStatus {
    /// How often the full poll runs: max(pollInterval, the operator's --sweep-interval).
    #[serde(default)]
    pub sweep_interval: String,
    /// Redrives decided from event hints (between sweeps), in total.
    #[serde(default)]
    pub redriven_from_hints: u64,
    /// When a hint's decision last acted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hint_action: Option<String>,
}

/// metav1.Condition.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Counters shown by `kubectl get rdp`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    /// Redrives performed by this operator for this policy, in total.
    #[serde(default)]
    pub redriven: u64,
    /// Executions waiting (backoff, minimum age, budget) at the last poll.
    #[serde(default)]
    pub waiting: u64,
    /// Executions that reached maxRedrives, at the last poll.
    #[serde(default)]
    pub exhausted: u64,
    /// Decisions of the last poll by reason code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_reason: BTreeMap<String, u64>,
}

/// One redrive, for the bounded history in status.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecentRedrive {
    /// The run acted on (Step Functions: execution ARN; CodePipeline: pipeline/stage/executionId;
    /// Flow Service: the failed run re-triggered).
    pub run: String,
    /// Attempts observed before this one (Step Functions: redriveCount; CodePipeline:
    /// manualStageRetryAttempt; Flow Service: earlier re-triggers in the run's lineage), from 0.
    pub attempts: u32,
    /// Deprecated alias of run, written for Step Functions policies only (operators before
    /// 0.2 require it: a rolling upgrade runs both versions on the same objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// Deprecated alias of attempts, written for Step Functions policies only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<u32>,
    /// RFC 3339.
    pub at: String,
    /// Redriven, AlreadyRedriven, NotRedrivable, Failed, DryRun...
    pub outcome: String,
}

/// Step Functions statuses acted on when a policy names none.
pub const DEFAULT_SFN_STATUSES: [FailureStatus; 2] =
    [FailureStatus::Failed, FailureStatus::TimedOut];
fn default_max_redrives() -> u32 {
    3
}
fn default_poll_interval() -> String {
    "1m".into()
}
fn default_sandbox() -> String {
    "prod".into()
}
fn default_max_run_time() -> String {
    "1d".into()
}
fn default_backoff_initial() -> String {
    "1m".into()
}
fn default_backoff_factor() -> f64 {
    2.0
}
fn default_backoff_max() -> String {
    "1h".into()
}
fn default_backoff_jitter() -> f64 {
    0.2
}

/// The CRD as YAML, exactly as `redrive-operator crd` prints it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RedrivePolicy::crd();
    let body = serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML");
    format!("# Generated by `redrive-operator crd` from src/crd.rs. Do not edit by hand.\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_duration;

    #[test]
    fn the_duration_pattern_fits_in_a_cel_string_literal() {
        assert!(
            !DURATION_PATTERN.contains(['\'', '\\']),
            "{DURATION_PATTERN}"
        );
    }

    /// Which of the CEL rules that compare two durations fail, evaluated client-side (kube's CEL,
    /// the rules the API server runs; tests/control_plane.rs runs them on a real one).
    fn failing_rules(min_age: &str, max_age: &str) -> Vec<String> {
        let doc = serde_json::json!({
            "apiVersion": "redrive.dev/v1alpha1",
            "kind": "RedrivePolicy",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "stepFunctions": {
                    "region": "eu-west-1",
                    "stateMachines": ["arn:aws:states:eu-west-1:123456789012:stateMachine:orders"]
                },
                "window": {"minAge": min_age, "maxAge": max_age},
                "backoff": {"initial": min_age, "max": max_age},
            }
        });
        let obj: RedrivePolicy = serde_json::from_value(doc).unwrap();
        match obj.validate_cel() {
            Ok(()) => vec![],
            Err(errors) => errors.into_iter().map(|e| e.message.clone()).collect(),
        }
    }

    #[test]
    fn cel_seconds_agrees_with_parse_duration() {
        // Each evaluation compiles every rule: compare each sample with a few pivots only.
        let samples = [
            "0s",
            "59s",
            "1m",
            "90s",
            "1m30s",
            "89m59s",
            "1h30m0s",
            "1h30m1s",
            "5400s",
            "23h59m",
            "1440m",
            "2d12h",
            "13d23h59m59s",
            "336h",
            "14d0h0m1s",
            "1209601s",
            "9999999d9999999h9999999m9999999s",
        ];
        let pivots = ["90m", "1d", "14d"];
        let pairs = samples
            .iter()
            .flat_map(|s| pivots.iter().flat_map(move |p| [(*s, *p), (*p, *s)]));
        for (min, max) in pairs {
            let (a, b) = (
                parse_duration("a", min).unwrap(),
                parse_duration("b", max).unwrap(),
            );
            let failing = failing_rules(min, max);
            let has = |m: &str| failing.iter().any(|f| f.contains(m));
            assert_eq!(
                has("window.minAge must be shorter than window.maxAge"),
                a >= b,
                "{min} < {max}: {failing:?}"
            );
            assert_eq!(
                has("backoff.initial must not exceed backoff.max"),
                a > b,
                "{min} <= {max}: {failing:?}"
            );
            assert_eq!(
                has("window.maxAge must be at most 14d"),
                b.as_secs() > 14 * 86_400,
                "{max}: {failing:?}"
            );
            assert!(
                !failing.iter().any(|f| f.contains("evaluation")),
                "{failing:?}"
            );
        }
    }

    #[test]
    fn a_malformed_duration_is_reported_once_with_the_accepted_forms() {
        let expected = ["backoff.initial", "window.minAge"]
            .map(|f| format!("{f} must be a duration: {}", limits::DURATION_HELP));
        for bad in ["1m1h", "1h1h", "1.5h", "90", "500ms", ""] {
            let mut failing = failing_rules(bad, "1h");
            failing.sort();
            assert_eq!(failing, expected, "{bad:?}");
        }
    }
}
