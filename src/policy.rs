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
    CodePipelineTarget, DEFAULT_SFN_STATUSES, FailureStatus, FlowServiceTarget, RedrivePolicy,
    RedrivePolicySpec, RetryMode, StageStatus, StepFunctionsTarget,
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
    FLOW_ID, MAX_GLOBS, MAX_SELECTOR_TAGS, MAX_WORKFLOWS, OBJECT_NAME, PIPELINE_NAME, REGION,
    ROLE_ARN, SANDBOX_NAME, STATE_MACHINE_ARN,
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
                include: compile_globs("spec.errors.include", &e.include)?,
                exclude: compile_globs("spec.errors.exclude", &e.exclude)?,
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
        if poll_interval < Duration::from_secs(10) {
            return Err(SpecError::new("spec.pollInterval", "must be at least 10s"));
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
            poll_interval,
        })
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

fn region_and_role(member: &str, region: &str, role: Option<&str>) -> Result<(), SpecError> {
    check_pattern(
        &format!("spec.{member}.region"),
        region,
        REGION,
        "an AWS region such as eu-west-1",
    )?;
    if let Some(role) = role {
        check_pattern(
            &format!("spec.{member}.roleArn"),
            role,
            ROLE_ARN,
            "an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
        )?;
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
    }
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
        stages: compile_globs("spec.codePipeline.stages", &cp.stages)?,
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
        if fs.flows[..i].contains(id) {
            return Err(SpecError::new(
                format!("spec.flowService.flows[{i}]"),
                "must not repeat a flow id",
            ));
        }
    }
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

/// Parse a duration in the CRD's format: one whole number and one unit of s, m, h or d.
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, SpecError> {
    let bad = || {
        SpecError::new(
            field,
            format!(
                "{value:?} is not a duration: use a whole number and one unit of s, m, h or d (e.g. 90s, 15m, 36h, 7d)"
            ),
        )
    };
    let unit_at = value.len().checked_sub(1).ok_or_else(bad)?;
    // A multi-byte last character ("5é") is not a unit; splitting inside it would panic.
    let (number, unit) = value.split_at_checked(unit_at).ok_or_else(bad)?;
    if number.is_empty() || number.len() > 7 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// The constant patterns, compiled once.
static PATTERNS: std::sync::LazyLock<std::collections::HashMap<&'static str, Regex>> =
    std::sync::LazyLock::new(|| {
        [
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

    #[test]
    fn durations_follow_the_crd_pattern() {
        assert_eq!(parse_duration("f", "90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("f", "15m").unwrap(),
            Duration::from_secs(900)
        );
        assert_eq!(
            parse_duration("f", "36h").unwrap(),
            Duration::from_secs(36 * 3600)
        );
        assert_eq!(
            parse_duration("f", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in [
            "",
            "d",
            "1",
            "1h30m",
            "1.5h",
            "-1m",
            "1w",
            " 1m",
            "12345678s",
            "１m",
            "5é",
            "😀",
        ] {
            let err = parse_duration("spec.window.maxAge", bad).unwrap_err();
            assert_eq!(err.field, "spec.window.maxAge", "{bad:?}");
            assert!(err.message.contains("not a duration"), "{bad:?}: {err}");
        }
    }
}
