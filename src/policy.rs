//! A validated, typed view of a `RedrivePolicy`: durations parsed, globs and regexes compiled.
//!
//! The API server checks the schema and CEL rules at admission; this module repeats the checks it
//! cannot do (regex syntax, glob syntax) and the ones a policy file read in local mode never went
//! through, so both paths end with the same [`Policy`] or the same [`SpecError`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::{Regex, RegexBuilder};

use crate::crd::{
    CodePipelineTarget, DEFAULT_SFN_STATUSES, FailureStatus, FlowServiceTarget, RedriveOrder,
    RedrivePolicy, RedrivePolicySpec, RetryMode, StageStatus, StepFunctionsTarget,
};
use crate::engine::RunStatus;

/// Upper bound on a compiled regex, so a hostile pattern cannot exhaust memory. Rust's regex
/// engine runs in linear time, so catastrophic backtracking is not a risk.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// AWS: an execution can be redriven at most 14 days after it stopped.
pub const AWS_REDRIVE_PERIOD: Duration = Duration::from_secs(14 * 86_400);

/// Longest `window.maxAge` for targets without a service-side redrive period (CodePipeline keeps
/// 12 months of execution history).
pub const MAX_WINDOW: Duration = Duration::from_secs(365 * 86_400);

use crate::api::limits::{
    DURATION, DURATION_HELP, DURATION_MAX_LEN, DURATION_UNITS, FLOW_ID, MAX_GLOBS,
    MAX_POLL_INTERVAL_SECS, MAX_SELECTOR_TAGS, MAX_WORKFLOWS, MIN_POLL_INTERVAL_SECS, OBJECT_NAME,
    PIPELINE_NAME, REGION, ROLE_ARN, SANDBOX_NAME, STATE_MACHINE_ARN, partition_of,
};

/// Default `window.maxAge` of Flow Service policies: re-ingesting data weeks old is rarely
/// wanted, so the default is as short as Step Functions' redrive period (the maximum is 365d).
pub const FLOW_SERVICE_DEFAULT_WINDOW: Duration = Duration::from_secs(14 * 86_400);

/// Namespace and name of a policy (the namespace is empty for files in local mode).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A spec problem, naming the field in the same dotted form `kubectl explain` uses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Exponential backoff parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    pub jitter: f64,
}

/// Compiled error filters.
#[derive(Clone, Debug)]
pub struct ErrorFilter {
    pub include: Option<GlobSet>,
    pub exclude: Option<GlobSet>,
    pub cause_regex: Option<Regex>,
}

/// Compiled state machine selector.
#[derive(Clone, Debug)]
pub struct Selector {
    pub name_regex: Option<Regex>,
    pub tags: BTreeMap<String, String>,
}

impl Selector {
    pub fn matches_name(&self, name: &str) -> bool {
        self.name_regex.as_ref().is_none_or(|r| r.is_match(name))
    }
}

/// The service a policy targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    StepFunctions,
    CodePipeline,
    FlowService,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [
        TargetKind::StepFunctions,
        TargetKind::CodePipeline,
        TargetKind::FlowService,
    ];

    /// What one workflow is called in messages.
    pub fn workflow_noun(self) -> &'static str {
        match self {
            TargetKind::StepFunctions => "state machine",
            TargetKind::CodePipeline => "pipeline",
            TargetKind::FlowService => "dataflow",
        }
    }

    /// What runs are called in messages (plural).
    pub fn runs_noun(self) -> &'static str {
        match self {
            TargetKind::StepFunctions => "executions",
            TargetKind::CodePipeline => "failed stages",
            TargetKind::FlowService => "dataflow runs",
        }
    }

    /// Stable name for metrics labels, status and output (`target="codepipeline"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::StepFunctions => "stepfunctions",
            TargetKind::CodePipeline => "codepipeline",
            TargetKind::FlowService => "flowservice",
        }
    }
}

/// The Step Functions member, validated.
#[derive(Clone, Debug)]
pub struct StepFunctionsSpec {
    pub region: String,
    pub role_arn: Option<String>,
    pub state_machines: Vec<String>,
    pub selector: Option<Selector>,
    pub max_run_time: Duration,
}

/// The CodePipeline member, validated.
#[derive(Clone, Debug)]
pub struct CodePipelineSpec {
    pub region: String,
    pub role_arn: Option<String>,
    pub pipelines: Vec<String>,
    pub selector: Option<Selector>,
    /// Stage globs (None: every stage), with their source text for messages.
    pub stages: Option<GlobSet>,
    pub stage_patterns: Vec<String>,
    pub retry_mode: RetryMode,
}

impl CodePipelineSpec {
    pub fn stage_selected(&self, stage: &str) -> bool {
        self.stages.as_ref().is_none_or(|g| g.is_match(stage))
    }
}

/// The Flow Service member, validated.
#[derive(Clone, Debug)]
pub struct FlowServiceSpec {
    pub sandbox: String,
    /// Name of the credentials Secret in the policy's namespace.
    pub credentials_secret: String,
    pub flows: Vec<String>,
    /// Compiled `selector.nameRegex`.
    pub selector: Option<Regex>,
    pub include_empty_success: bool,
}

/// Exactly one target per policy.
#[derive(Clone, Debug)]
pub enum TargetSpec {
    StepFunctions(StepFunctionsSpec),
    CodePipeline(CodePipelineSpec),
    FlowService(FlowServiceSpec),
}

/// Everything the engine and targets need from a policy, validated.
#[derive(Clone, Debug)]
pub struct Policy {
    pub id: PolicyId,
    pub generation: Option<i64>,
    pub suspend: bool,
    pub dry_run: bool,
    pub target: TargetSpec,
    /// Run statuses to act on, in the engine's service-neutral terms.
    pub statuses: Vec<RunStatus>,
    pub errors: Option<ErrorFilter>,
    pub min_age: Duration,
    pub max_age: Duration,
    pub max_redrives: u32,
    pub backoff: Option<BackoffPolicy>,
    pub redrives_per_minute: Option<u32>,
    pub max_running_redriven: Option<u32>,
    /// Which eligible failures the budget serves first (`spec.order`).
    pub order: RedriveOrder,
    pub poll_interval: Duration,
}

impl Policy {
    /// Validate a policy object (from the cluster or from a file).
    pub fn from_resource(obj: &RedrivePolicy) -> Result<Self, SpecError> {
        let id = PolicyId {
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
        };
        if id.name.is_empty() {
            return Err(SpecError::new("metadata.name", "is required"));
        }
        let mut policy = Self::from_spec(id, &obj.spec)?;
        policy.generation = obj.metadata.generation;
        Ok(policy)
    }

    /// Validate a spec. Errors name the first offending field.
    pub fn from_spec(id: PolicyId, spec: &RedrivePolicySpec) -> Result<Self, SpecError> {
        let targets = [
            spec.step_functions.is_some(),
            spec.code_pipeline.is_some(),
            spec.flow_service.is_some(),
        ];
        if targets.iter().filter(|set| **set).count() != 1 {
            return Err(SpecError::new(
                "spec",
                "set exactly one target: spec.stepFunctions, spec.codePipeline or spec.flowService",
            ));
        }
        if spec.statuses.is_some() && spec.step_functions.is_none() {
            return Err(SpecError::new(
                "spec.statuses",
                "applies to stepFunctions policies only (deprecated): use spec.codePipeline.statuses",
            ));
        }
        let (target, statuses) = if let Some(sf) = &spec.step_functions {
            let member = step_functions(sf)?;
            if spec.statuses.is_some() && sf.statuses.is_some() {
                return Err(SpecError::new(
                    "spec.statuses",
                    "set spec.stepFunctions.statuses or the deprecated spec.statuses, not both",
                ));
            }
            let (field, listed) = match (&sf.statuses, &spec.statuses) {
                (Some(s), _) => ("spec.stepFunctions.statuses", s.as_slice()),
                (None, Some(s)) => ("spec.statuses", s.as_slice()),
                (None, None) => ("spec.stepFunctions.statuses", &DEFAULT_SFN_STATUSES[..]),
            };
            let statuses = distinct(field, listed, 3, "FAILED, TIMED_OUT, ABORTED")?;
            let statuses = statuses.into_iter().map(sfn_run_status).collect();
            (TargetSpec::StepFunctions(member), statuses)
        } else if let Some(cp) = &spec.code_pipeline {
            let member = code_pipeline(cp)?;
            let listed = cp.statuses.as_deref().unwrap_or(&[StageStatus::Failed]);
            let statuses = distinct("spec.codePipeline.statuses", listed, 2, "Failed, Stopped")?;
            let statuses = statuses
                .into_iter()
                .map(|s| match s {
                    StageStatus::Failed => RunStatus::Failed,
                    StageStatus::Stopped => RunStatus::Stopped,
                })
                .collect();
            (TargetSpec::CodePipeline(member), statuses)
        } else {
            let fs = spec
                .flow_service
                .as_ref()
                .expect("exactly one target is set");
            let member = flow_service(fs)?;
            // A zero-record success is a candidate with status Succeeded; listing only returns
            // it when includeEmptySuccess is on.
            let mut statuses = vec![RunStatus::Failed];
            if member.include_empty_success {
                statuses.push(RunStatus::Succeeded);
            }
            (TargetSpec::FlowService(member), statuses)
        };

        let errors = match &spec.errors {
            None => None,
            Some(e) => Some(ErrorFilter {
                // compile_globs bounds the length first: the repeat check is quadratic.
                include: compile_globs("spec.errors.include", &e.include).and_then(|g| {
                    no_repeats("spec.errors.include", &e.include, "a glob").map(|()| g)
                })?,
                exclude: compile_globs("spec.errors.exclude", &e.exclude).and_then(|g| {
                    no_repeats("spec.errors.exclude", &e.exclude, "a glob").map(|()| g)
                })?,
                cause_regex: e
                    .cause_regex
                    .as_deref()
                    .map(|r| compile_regex("spec.errors.causeRegex", r, 1024))
                    .transpose()?,
            }),
        };
        // An empty `errors: {}` block needs no DescribeExecution: treat it as absent.
        let errors = errors
            .filter(|e| e.include.is_some() || e.exclude.is_some() || e.cause_regex.is_some());

        let window = spec.window.clone().unwrap_or_default();
        let min_age = window
            .min_age
            .as_deref()
            .map(|d| parse_duration("spec.window.minAge", d))
            .transpose()?
            .unwrap_or(Duration::ZERO);
        let max_age = window
            .max_age
            .as_deref()
            .map(|d| parse_duration("spec.window.maxAge", d))
            .transpose()?
            .unwrap_or(target.default_window());
        if max_age > target.max_window() {
            return Err(SpecError::new(
                "spec.window.maxAge",
                match target {
                    TargetSpec::StepFunctions(_) => {
                        "must be at most 14d: AWS cannot redrive an execution more than 14 days after it stopped"
                    }
                    TargetSpec::CodePipeline(_) | TargetSpec::FlowService(_) => {
                        "must be at most 365d"
                    }
                },
            ));
        }
        if min_age >= max_age {
            return Err(SpecError::new(
                "spec.window.minAge",
                "must be shorter than window.maxAge",
            ));
        }

        if !(1..=1000).contains(&spec.max_redrives) {
            return Err(SpecError::new(
                "spec.maxRedrives",
                "must be between 1 and 1000",
            ));
        }

        let backoff = match &spec.backoff {
            None => None,
            Some(b) => {
                let initial = parse_duration("spec.backoff.initial", &b.initial)?;
                let max = parse_duration("spec.backoff.max", &b.max)?;
                if initial > max {
                    return Err(SpecError::new(
                        "spec.backoff.initial",
                        "must not exceed backoff.max",
                    ));
                }
                if !(1.0..=10.0).contains(&b.factor) {
                    return Err(SpecError::new(
                        "spec.backoff.factor",
                        "must be between 1 and 10",
                    ));
                }
                if !(0.0..=1.0).contains(&b.jitter) {
                    return Err(SpecError::new(
                        "spec.backoff.jitter",
                        "must be between 0 and 1",
                    ));
                }
                Some(BackoffPolicy {
                    initial,
                    factor: b.factor,
                    max,
                    jitter: b.jitter,
                })
            }
        };

        let budget = spec.budget.clone().unwrap_or_default();
        if budget.redrives_per_minute == Some(0) {
            return Err(SpecError::new(
                "spec.budget.redrivesPerMinute",
                "must be at least 1",
            ));
        }
        if budget.max_running_redriven == Some(0) {
            return Err(SpecError::new(
                "spec.budget.maxRunningRedriven",
                "must be at least 1",
            ));
        }

        let poll_interval = parse_duration("spec.pollInterval", &spec.poll_interval)?;
        if poll_interval < Duration::from_secs(MIN_POLL_INTERVAL_SECS) {
            return Err(SpecError::new("spec.pollInterval", "must be at least 10s"));
        }
        if poll_interval > Duration::from_secs(MAX_POLL_INTERVAL_SECS) {
            return Err(SpecError::new(
                "spec.pollInterval",
                "must be at most 24h: the poll is how failures are found, and a longer interval lets them wait days",
            ));
        }

        Ok(Self {
            id,
            generation: None,
            suspend: spec.suspend,
            dry_run: spec.dry_run,
            target,
            statuses,
            errors,
            min_age,
            max_age,
            max_redrives: spec.max_redrives,
            backoff,
            redrives_per_minute: budget.redrives_per_minute,
            max_running_redriven: budget.max_running_redriven,
            order: spec.order.unwrap_or_default(),
            poll_interval,
        })
    }

    /// Valid but self-defeating settings, one message each, naming the fields: for a status
    /// condition (and `plan` output). Empty for a sensible policy. Pure: depends on the spec only.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        // A failure is eligible while its age is in [minAge, maxAge); polls `pollInterval` apart
        // can step over a window that is not longer than the interval.
        let width = self.max_age.saturating_sub(self.min_age);
        if self.poll_interval >= width {
            let window = if self.min_age.is_zero() {
                format!("window.maxAge ({})", format_duration(self.max_age))
            } else {
                format!(
                    "the window (window.maxAge {} - window.minAge {} = {})",
                    format_duration(self.max_age),
                    format_duration(self.min_age),
                    format_duration(width)
                )
            };
            out.push(format!(
                "spec.pollInterval ({}) is not shorter than {window}: a failure can leave the window between two polls and never be redriven; shorten pollInterval or lengthen window.maxAge",
                format_duration(self.poll_interval)
            ));
        }
        // The first redrive waits backoff.initial from the stop date (less the jitter).
        if let Some(b) = &self.backoff {
            let earliest = b.initial.mul_f64(1.0 - b.jitter);
            if earliest >= self.max_age {
                let initial = if b.jitter > 0.0 {
                    format!(
                        "{}, at least {} with jitter {}",
                        format_duration(b.initial),
                        format_duration(earliest),
                        b.jitter
                    )
                } else {
                    format_duration(b.initial)
                };
                out.push(format!(
                    "spec.backoff.initial ({initial}) is not shorter than window.maxAge ({}): no failure becomes due for its first redrive before it leaves the window",
                    format_duration(self.max_age)
                ));
            }
        }
        out
    }

    /// Whether deciding on a candidate needs its error and cause (one DescribeExecution each).
    pub fn needs_error_details(&self) -> bool {
        self.errors.is_some()
    }

    pub fn kind(&self) -> TargetKind {
        self.target.kind()
    }

    /// AWS region of the target (`None` for services outside AWS).
    pub fn region(&self) -> Option<&str> {
        match &self.target {
            TargetSpec::StepFunctions(t) => Some(&t.region),
            TargetSpec::CodePipeline(t) => Some(&t.region),
            TargetSpec::FlowService(_) => None,
        }
    }

    /// IAM role assumed for this policy.
    pub fn role_arn(&self) -> Option<&str> {
        match &self.target {
            TargetSpec::StepFunctions(t) => t.role_arn.as_deref(),
            TargetSpec::CodePipeline(t) => t.role_arn.as_deref(),
            TargetSpec::FlowService(_) => None,
        }
    }

    /// What the policy's client depends on besides its namespace: (region, role ARN) for AWS,
    /// (sandbox, credentials Secret) for Flow Service. Policies with the same scope share one
    /// client (rate limiting, caches, token).
    pub fn client_scope(&self) -> (&str, Option<&str>) {
        match &self.target {
            TargetSpec::StepFunctions(t) => (&t.region, t.role_arn.as_deref()),
            TargetSpec::CodePipeline(t) => (&t.region, t.role_arn.as_deref()),
            TargetSpec::FlowService(t) => (&t.sandbox, Some(&t.credentials_secret)),
        }
    }

    pub fn step_functions(&self) -> Option<&StepFunctionsSpec> {
        match &self.target {
            TargetSpec::StepFunctions(t) => Some(t),
            _ => None,
        }
    }

    pub fn code_pipeline(&self) -> Option<&CodePipelineSpec> {
        match &self.target {
            TargetSpec::CodePipeline(t) => Some(t),
            _ => None,
        }
    }

    pub fn flow_service(&self) -> Option<&FlowServiceSpec> {
        match &self.target {
            TargetSpec::FlowService(t) => Some(t),
            _ => None,
        }
    }
}

impl TargetSpec {
    pub fn kind(&self) -> TargetKind {
        match self {
            TargetSpec::StepFunctions(_) => TargetKind::StepFunctions,
            TargetSpec::CodePipeline(_) => TargetKind::CodePipeline,
            TargetSpec::FlowService(_) => TargetKind::FlowService,
        }
    }

    /// Maximum `window.maxAge`.
    pub fn max_window(&self) -> Duration {
        match self {
            TargetSpec::StepFunctions(_) => AWS_REDRIVE_PERIOD,
            TargetSpec::CodePipeline(_) | TargetSpec::FlowService(_) => MAX_WINDOW,
        }
    }

    /// `window.maxAge` when the policy sets none.
    pub fn default_window(&self) -> Duration {
        match self {
            TargetSpec::FlowService(_) => FLOW_SERVICE_DEFAULT_WINDOW,
            _ => self.max_window(),
        }
    }
}

fn sfn_run_status(s: FailureStatus) -> RunStatus {
    match s {
        FailureStatus::Failed => RunStatus::Failed,
        FailureStatus::TimedOut => RunStatus::TimedOut,
        FailureStatus::Aborted => RunStatus::Aborted,
    }
}

/// 1 to `max` values, none repeated.
fn distinct<T: Copy + Ord>(
    field: &str,
    listed: &[T],
    max: usize,
    allowed: &str,
) -> Result<Vec<T>, SpecError> {
    if listed.is_empty() || listed.len() > max {
        return Err(SpecError::new(
            field,
            format!("list 1 to {max} of {allowed}"),
        ));
    }
    let mut out = listed.to_vec();
    out.sort();
    out.dedup();
    if out.len() != listed.len() {
        return Err(SpecError::new(field, "must not repeat a value"));
    }
    Ok(listed.to_vec())
}

/// How partitions follow regions, for messages (the CRD's rules say the same).
const PARTITION_HELP: &str = "arn:aws-cn: for cn-* regions, arn:aws-us-gov: for us-gov-*, arn:aws-iso*: for the ISO regions, arn:aws: for every other region";

/// Whether `arn` is in `partition` (`arn:PARTITION:...`).
fn in_partition(arn: &str, partition: &str) -> bool {
    arn.strip_prefix("arn:")
        .and_then(|rest| rest.strip_prefix(partition))
        .is_some_and(|rest| rest.starts_with(':'))
}

fn region_and_role(member: &str, region: &str, role: Option<&str>) -> Result<(), SpecError> {
    check_pattern(
        &format!("spec.{member}.region"),
        region,
        REGION,
        "an AWS region such as eu-west-1",
    )?;
    if let Some(role) = role {
        let field = format!("spec.{member}.roleArn");
        check_pattern(
            &field,
            role,
            ROLE_ARN,
            "an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
        )?;
        let partition = partition_of(region);
        if !in_partition(role, partition) {
            let also = if member == "stepFunctions" {
                " and of stepFunctions.stateMachines"
            } else {
                ""
            };
            return Err(SpecError::new(
                field,
                format!(
                    "must be in the AWS partition of {member}.region{also}: {region:?} is in {partition:?} ({PARTITION_HELP})"
                ),
            ));
        }
    }
    Ok(())
}

/// No value twice: the first repeat, named by its index. Quadratic: call it on lists whose
/// length is already bounded.
fn no_repeats(field: &str, values: &[String], what: &str) -> Result<(), SpecError> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(SpecError::new(
                format!("{field}[{i}]"),
                format!("must not repeat {what}"),
            ));
        }
    }
    Ok(())
}

fn selector(
    member: &str,
    name_regex: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<Selector, SpecError> {
    if name_regex.is_none() && tags.is_empty() {
        return Err(SpecError::new(
            format!("spec.{member}.selector"),
            "needs nameRegex or tags",
        ));
    }
    if tags.len() > MAX_SELECTOR_TAGS {
        return Err(SpecError::new(
            format!("spec.{member}.selector.tags"),
            "at most 20 tags",
        ));
    }
    let name_regex = name_regex
        .map(|r| compile_regex(&format!("spec.{member}.selector.nameRegex"), r, 256))
        .transpose()?;
    Ok(Selector {
        name_regex,
        tags: tags.clone(),
    })
}

fn step_functions(sf: &StepFunctionsTarget) -> Result<StepFunctionsSpec, SpecError> {
    region_and_role("stepFunctions", &sf.region, sf.role_arn.as_deref())?;
    if sf.state_machines.len() > MAX_WORKFLOWS {
        return Err(SpecError::new(
            "spec.stepFunctions.stateMachines",
            "at most 100 ARNs",
        ));
    }
    for (i, arn) in sf.state_machines.iter().enumerate() {
        let field = format!("spec.stepFunctions.stateMachines[{i}]");
        check_pattern(
            &field,
            arn,
            STATE_MACHINE_ARN,
            "a state machine ARN (arn:aws:states:REGION:ACCOUNT:stateMachine:NAME)",
        )?;
        if arn.split(':').nth(3) != Some(sf.region.as_str()) {
            return Err(SpecError::new(
                field,
                format!("ARN is not in stepFunctions.region {:?}", sf.region),
            ));
        }
        let partition = partition_of(&sf.region);
        if !in_partition(arn, partition) {
            return Err(SpecError::new(
                field,
                format!(
                    "ARN must be in the AWS partition of stepFunctions.region: {:?} is in {partition:?} ({PARTITION_HELP})",
                    sf.region
                ),
            ));
        }
    }
    no_repeats(
        "spec.stepFunctions.stateMachines",
        &sf.state_machines,
        "an ARN",
    )?;
    let selector = sf
        .selector
        .as_ref()
        .map(|sel| selector("stepFunctions", sel.name_regex.as_deref(), &sel.tags))
        .transpose()?;
    if sf.state_machines.is_empty() && selector.is_none() {
        return Err(SpecError::new(
            "spec.stepFunctions",
            "set at least one of stepFunctions.stateMachines or stepFunctions.selector",
        ));
    }
    let max_run_time = parse_duration("spec.stepFunctions.maxRunTime", &sf.max_run_time)?;
    if max_run_time > Duration::from_secs(365 * 86_400) {
        return Err(SpecError::new(
            "spec.stepFunctions.maxRunTime",
            "must be at most 365d (the AWS maximum execution time)",
        ));
    }
    Ok(StepFunctionsSpec {
        region: sf.region.clone(),
        role_arn: sf.role_arn.clone(),
        state_machines: sf.state_machines.clone(),
        selector,
        max_run_time,
    })
}

fn code_pipeline(cp: &CodePipelineTarget) -> Result<CodePipelineSpec, SpecError> {
    region_and_role("codePipeline", &cp.region, cp.role_arn.as_deref())?;
    if cp.pipelines.len() > MAX_WORKFLOWS {
        return Err(SpecError::new(
            "spec.codePipeline.pipelines",
            "at most 100 names",
        ));
    }
    for (i, name) in cp.pipelines.iter().enumerate() {
        check_pattern(
            &format!("spec.codePipeline.pipelines[{i}]"),
            name,
            PIPELINE_NAME,
            "a pipeline name (1 to 100 of A-Z a-z 0-9 . @ - _)",
        )?;
    }
    no_repeats("spec.codePipeline.pipelines", &cp.pipelines, "a name")?;
    let selector = cp
        .selector
        .as_ref()
        .map(|sel| selector("codePipeline", sel.name_regex.as_deref(), &sel.tags))
        .transpose()?;
    if cp.pipelines.is_empty() && selector.is_none() {
        return Err(SpecError::new(
            "spec.codePipeline",
            "set at least one of codePipeline.pipelines or codePipeline.selector",
        ));
    }
    Ok(CodePipelineSpec {
        region: cp.region.clone(),
        role_arn: cp.role_arn.clone(),
        pipelines: cp.pipelines.clone(),
        selector,
        stages: compile_globs("spec.codePipeline.stages", &cp.stages).and_then(|g| {
            no_repeats("spec.codePipeline.stages", &cp.stages, "a glob").map(|()| g)
        })?,
        stage_patterns: cp.stages.clone(),
        retry_mode: cp.retry_mode,
    })
}

fn flow_service(fs: &FlowServiceTarget) -> Result<FlowServiceSpec, SpecError> {
    check_pattern(
        "spec.flowService.sandbox",
        &fs.sandbox,
        SANDBOX_NAME,
        "a sandbox name in lowercase (e.g. prod)",
    )?;
    check_pattern(
        "spec.flowService.credentialsSecretRef.name",
        &fs.credentials_secret_ref.name,
        OBJECT_NAME,
        "a Secret name in the policy's namespace",
    )?;
    if fs.credentials_secret_ref.name.len() > 253 {
        return Err(SpecError::new(
            "spec.flowService.credentialsSecretRef.name",
            "at most 253 characters",
        ));
    }
    if fs.flows.len() > MAX_WORKFLOWS {
        return Err(SpecError::new("spec.flowService.flows", "at most 100 ids"));
    }
    for (i, id) in fs.flows.iter().enumerate() {
        check_pattern(
            &format!("spec.flowService.flows[{i}]"),
            id,
            FLOW_ID,
            "a dataflow id (1 to 64 of A-Z a-z 0-9 - _)",
        )?;
    }
    no_repeats("spec.flowService.flows", &fs.flows, "a flow id")?;
    let selector = fs
        .selector
        .as_ref()
        .map(|s| compile_regex("spec.flowService.selector.nameRegex", &s.name_regex, 256))
        .transpose()?;
    if fs.flows.is_empty() && selector.is_none() {
        return Err(SpecError::new(
            "spec.flowService",
            "set at least one of flowService.flows or flowService.selector",
        ));
    }
    Ok(FlowServiceSpec {
        sandbox: fs.sandbox.clone(),
        credentials_secret: fs.credentials_secret_ref.name.clone(),
        flows: fs.flows.clone(),
        selector,
        include_empty_success: fs.include_empty_success,
    })
}

/// Parse a duration in the CRD's format ([`DURATION`]): Go-style compound durations with days,
/// each of d, h, m, s at most once and in that order (`90s`, `1h30m`, `2d12h`). The value is the
/// sum of the units, exactly as the CRD's CEL rules compute it (`crd::cel_seconds`).
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, SpecError> {
    if value.len() > DURATION_MAX_LEN || !PATTERNS[DURATION].is_match(value) {
        return Err(SpecError::new(
            field,
            format!(
                "{:?} is not a duration: use {DURATION_HELP}",
                truncate(value, 40)
            ),
        ));
    }
    // The pattern admits ASCII digits and unit letters only, at most 7 digits per unit.
    let (mut secs, mut number) = (0u64, 0u64);
    for c in value.chars() {
        match c.to_digit(10) {
            Some(d) => number = number * 10 + u64::from(d),
            None => {
                let (_, unit) = DURATION_UNITS
                    .iter()
                    .find(|(u, _)| *u == c)
                    .expect("the pattern admits only duration units");
                secs += number * unit;
                number = 0;
            }
        }
    }
    Ok(Duration::from_secs(secs))
}

/// A duration in the CRD's format, largest units first (`5400s` prints `1h30m`), for messages.
pub fn format_duration(d: Duration) -> String {
    let mut rest = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in DURATION_UNITS {
        if rest >= secs {
            out.push_str(&format!("{}{unit}", rest / secs));
            rest %= secs;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

/// The constant patterns, compiled once.
static PATTERNS: std::sync::LazyLock<std::collections::HashMap<&'static str, Regex>> =
    std::sync::LazyLock::new(|| {
        [
            DURATION,
            STATE_MACHINE_ARN,
            ROLE_ARN,
            REGION,
            PIPELINE_NAME,
            FLOW_ID,
            SANDBOX_NAME,
            OBJECT_NAME,
        ]
        .into_iter()
        .map(|p| (p, Regex::new(p).expect("constant pattern compiles")))
        .collect()
    });

fn check_pattern(
    field: &str,
    value: &str,
    pattern: &'static str,
    what: &str,
) -> Result<(), SpecError> {
    let re = &PATTERNS[pattern];
    if value.len() <= 2048 && re.is_match(value) {
        Ok(())
    } else {
        Err(SpecError::new(
            field,
            format!("{:?} is not {what}", truncate(value, 120)),
        ))
    }
}

fn compile_regex(field: &str, pattern: &str, max_len: usize) -> Result<Regex, SpecError> {
    if pattern.is_empty() || pattern.len() > max_len {
        return Err(SpecError::new(
            field,
            format!("must be 1 to {max_len} characters"),
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            SpecError::new(
                field,
                format!("invalid regular expression: {}", last_line(&e.to_string())),
            )
        })
}

fn compile_globs(field: &str, globs: &[String]) -> Result<Option<GlobSet>, SpecError> {
    if globs.is_empty() {
        return Ok(None);
    }
    if globs.len() > MAX_GLOBS {
        return Err(SpecError::new(field, "at most 50 patterns"));
    }
    let mut builder = GlobSetBuilder::new();
    for (i, g) in globs.iter().enumerate() {
        if g.is_empty() || g.len() > 256 {
            return Err(SpecError::new(
                format!("{field}[{i}]"),
                "must be 1 to 256 characters",
            ));
        }
        let glob = Glob::new(g)
            .map_err(|e| SpecError::new(format!("{field}[{i}]"), format!("invalid glob: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| SpecError::new(field, format!("invalid glob set: {e}")))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn last_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        Backoff, CodePipelineTarget, ErrorFilter as ErrorFilterSpec, FlowSelector,
        PipelineSelector, SecretReference, StateMachineSelector, Window,
    };

    const SM: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";

    fn spec() -> RedrivePolicySpec {
        serde_json::from_value(serde_json::json!({
            "stepFunctions": {"region": "eu-west-1", "stateMachines": [SM]},
            "window": {"minAge": "2m", "maxAge": "7d"},
        }))
        .unwrap()
    }

    fn cp_spec() -> RedrivePolicySpec {
        let mut s = spec();
        s.step_functions = None;
        s.code_pipeline = Some(CodePipelineTarget {
            region: "eu-west-1".into(),
            role_arn: None,
            pipelines: vec!["web".into()],
            selector: None,
            stages: vec![],
            statuses: None,
            retry_mode: RetryMode::FailedActions,
        });
        s
    }

    fn check(s: &RedrivePolicySpec) -> Result<Policy, SpecError> {
        Policy::from_spec(
            PolicyId {
                namespace: "ns".into(),
                name: "p".into(),
            },
            s,
        )
    }

    fn err(s: &RedrivePolicySpec) -> SpecError {
        check(s).expect_err("the spec must be refused")
    }

    #[test]
    fn durations_follow_the_crd_pattern() {
        for (text, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("36h", 36 * 3600),
            ("7d", 7 * 86_400),
            ("0s", 0),
            ("1h30m", 5400),
            ("1h30m0s", 5400),
            ("90m", 5400),
            ("2d12h", 60 * 3600),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            ("1h90m", 9000),
            ("01m", 60),
            ("13d23h59m59s", 14 * 86_400 - 1),
            (
                "9999999d9999999h9999999m9999999s",
                9_999_999 * (86_400 + 3600 + 60 + 1),
            ),
        ] {
            assert_eq!(
                parse_duration("f", text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in [
            "",
            "d",
            "1",
            "h1",
            "1m1h",
            "1h1h",
            "1d1d",
            "1s1m",
            "1h 30m",
            "1.5h",
            "-1m",
            "+1m",
            "1w",
            "500ms",
            "1us",
            " 1m",
            "1m ",
            "12345678s",
            "1h12345678m",
            "１m",
            "5é",
            "😀",
            "1H",
            "99999999999999999999999999999999s",
        ] {
            let err = parse_duration("spec.window.maxAge", bad).unwrap_err();
            assert_eq!(err.field, "spec.window.maxAge", "{bad:?}");
            assert!(err.message.contains("not a duration"), "{bad:?}: {err}");
            assert!(err.message.contains("1h30m, 2d12h"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn format_duration_is_the_inverse_of_parse_duration() {
        for (secs, text) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m"),
            (5400, "1h30m"),
            (86_400 * 2 + 43_200, "2d12h"),
            (86_400 + 1, "1d1s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration("f", text).unwrap(), d);
        }
    }

    #[test]
    fn compound_durations_mean_the_same_in_every_rule() {
        let mut s = spec();
        s.window = Some(Window {
            min_age: Some("1h30m".into()),
            max_age: Some("1h".into()),
        });
        let e = err(&s);
        assert_eq!(e.field, "spec.window.minAge");
        assert!(e.message.contains("shorter than window.maxAge"), "{e}");
        s.window = Some(Window {
            min_age: Some("90m".into()),
            max_age: Some("1h30m".into()),
        });
        assert_eq!(err(&s).field, "spec.window.minAge", "equal is not shorter");
        s.window = Some(Window {
            min_age: Some("1h30m".into()),
            max_age: Some("13d23h59m59s".into()),
        });
        let p = check(&s).unwrap();
        assert_eq!(p.min_age, Duration::from_secs(5400));
        s.window = Some(Window {
            min_age: None,
            max_age: Some("14d0h0m1s".into()),
        });
        assert!(err(&s).message.contains("at most 14d"));
        s.window = None;
        s.backoff = Some(Backoff {
            initial: "1h0m1s".into(),
            max: "1h".into(),
            ..Backoff::default()
        });
        assert_eq!(err(&s).field, "spec.backoff.initial");
    }

    #[test]
    fn poll_interval_is_bounded_at_24h() {
        let mut s = spec();
        for ok in ["10s", "24h", "23h59m59s", "1d", "1m30s"] {
            s.poll_interval = ok.into();
            assert!(check(&s).is_ok(), "{ok}");
        }
        for bad in ["400d", "24h0m1s", "2d", "9s", "0m9s"] {
            s.poll_interval = bad.into();
            let e = err(&s);
            assert_eq!(e.field, "spec.pollInterval", "{bad}");
            assert!(e.message.contains("must be at"), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_must_not_repeat() {
        let mut s = spec();
        s.step_functions.as_mut().unwrap().state_machines = vec![SM.into(), SM.into()];
        let e = err(&s);
        assert_eq!(e.field, "spec.stepFunctions.stateMachines[1]");
        assert_eq!(e.message, "must not repeat an ARN");

        let mut s = spec();
        s.errors = Some(ErrorFilterSpec {
            include: vec!["Lambda.*".into(), "X".into(), "Lambda.*".into()],
            ..ErrorFilterSpec::default()
        });
        assert_eq!(err(&s).field, "spec.errors.include[2]");
        s.errors = Some(ErrorFilterSpec {
            exclude: vec!["X".into(), "X".into()],
            ..ErrorFilterSpec::default()
        });
        assert_eq!(err(&s).field, "spec.errors.exclude[1]");

        let mut s = cp_spec();
        s.code_pipeline.as_mut().unwrap().pipelines = vec!["web".into(), "web".into()];
        assert_eq!(err(&s).field, "spec.codePipeline.pipelines[1]");
        let mut s = cp_spec();
        s.code_pipeline.as_mut().unwrap().stages = vec!["Deploy*".into(), "Deploy*".into()];
        assert_eq!(err(&s).field, "spec.codePipeline.stages[1]");

        let mut s = spec();
        s.step_functions = None;
        s.flow_service = Some(FlowServiceTarget {
            sandbox: "prod".into(),
            credentials_secret_ref: SecretReference { name: "aep".into() },
            flows: vec!["f1".into(), "f1".into()],
            selector: None,
            include_empty_success: false,
        });
        let e = err(&s);
        assert_eq!(e.field, "spec.flowService.flows[1]");
        assert_eq!(e.message, "must not repeat a flow id");
    }

    #[test]
    fn roles_and_state_machines_stay_in_the_partition_of_the_region() {
        assert_eq!(partition_of("eu-west-1"), "aws");
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("us-isob-east-1"), "aws-iso-b");
        assert!(!in_partition("arn:aws-cn:iam::1:role/r", "aws"));
        assert!(!in_partition("arn:awsx:iam::1:role/r", "aws"));
        assert!(in_partition("arn:aws:iam::1:role/r", "aws"));

        let mut s = spec();
        s.step_functions.as_mut().unwrap().role_arn =
            Some("arn:aws-cn:iam::123456789012:role/r".into());
        let e = err(&s);
        assert_eq!(e.field, "spec.stepFunctions.roleArn");
        assert!(e.message.contains("partition"), "{e}");

        let sf = s.step_functions.as_mut().unwrap();
        sf.role_arn = None;
        sf.state_machines = vec![SM.replace("arn:aws:", "arn:aws-cn:")];
        let e = err(&s);
        assert_eq!(e.field, "spec.stepFunctions.stateMachines[0]");
        assert!(e.message.contains("partition"), "{e}");

        let sf = s.step_functions.as_mut().unwrap();
        sf.region = "cn-north-1".into();
        sf.role_arn = Some("arn:aws-cn:iam::123456789012:role/r".into());
        sf.state_machines =
            vec!["arn:aws-cn:states:cn-north-1:123456789012:stateMachine:orders".into()];
        check(&s).expect("a consistent aws-cn policy");

        let mut s = cp_spec();
        let cp = s.code_pipeline.as_mut().unwrap();
        cp.region = "cn-north-1".into();
        cp.role_arn = Some("arn:aws:iam::123456789012:role/r".into());
        let e = err(&s);
        assert_eq!(e.field, "spec.codePipeline.roleArn");
        assert!(e.message.contains("\"aws-cn\""), "{e}");
        s.code_pipeline.as_mut().unwrap().role_arn =
            Some("arn:aws-cn:iam::123456789012:role/r".into());
        check(&s).expect("a consistent aws-cn pipeline policy");
    }

    #[test]
    fn invalid_regexes_name_their_field() {
        let mut s = spec();
        s.step_functions.as_mut().unwrap().selector = Some(StateMachineSelector {
            name_regex: Some("(unclosed".into()),
            tags: BTreeMap::new(),
        });
        assert_eq!(err(&s).field, "spec.stepFunctions.selector.nameRegex");
        let mut s = cp_spec();
        s.code_pipeline.as_mut().unwrap().selector = Some(PipelineSelector {
            name_regex: Some("[z-a]".into()),
            tags: BTreeMap::new(),
        });
        assert_eq!(err(&s).field, "spec.codePipeline.selector.nameRegex");
        let mut s = spec();
        s.step_functions = None;
        s.flow_service = Some(FlowServiceTarget {
            sandbox: "prod".into(),
            credentials_secret_ref: SecretReference { name: "aep".into() },
            flows: vec![],
            selector: Some(FlowSelector {
                name_regex: "*bad".into(),
            }),
            include_empty_success: false,
        });
        assert_eq!(err(&s).field, "spec.flowService.selector.nameRegex");
    }

    #[test]
    fn warnings_name_the_fields_of_a_self_defeating_policy() {
        let mut s = spec();
        assert_eq!(check(&s).unwrap().warnings(), Vec::<String>::new());
        s.window = Some(Window {
            min_age: None,
            max_age: Some("1h".into()),
        });
        s.poll_interval = "1h".into();
        assert_eq!(
            check(&s).unwrap().warnings(),
            [
                "spec.pollInterval (1h) is not shorter than window.maxAge (1h): a failure can leave the window between two polls and never be redriven; shorten pollInterval or lengthen window.maxAge"
            ]
        );
        s.window = Some(Window {
            min_age: Some("40m".into()),
            max_age: Some("1h".into()),
        });
        s.poll_interval = "30m".into();
        let w = check(&s).unwrap().warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("(window.maxAge 1h - window.minAge 40m = 20m)"),
            "{w:?}"
        );
        // The default window (14d for Step Functions) counts too.
        s.window = None;
        s.poll_interval = "24h".into();
        assert_eq!(check(&s).unwrap().warnings(), Vec::<String>::new());

        s.window = Some(Window {
            min_age: None,
            max_age: Some("1d".into()),
        });
        s.poll_interval = "1m".into();
        s.backoff = Some(Backoff {
            initial: "2d".into(),
            max: "2d".into(),
            jitter: 0.25,
            ..Backoff::default()
        });
        assert_eq!(
            check(&s).unwrap().warnings(),
            [
                "spec.backoff.initial (2d, at least 1d12h with jitter 0.25) is not shorter than window.maxAge (1d): no failure becomes due for its first redrive before it leaves the window"
            ]
        );
        s.backoff.as_mut().unwrap().jitter = 0.6;
        assert_eq!(check(&s).unwrap().warnings(), Vec::<String>::new());
    }
}
