//! Scenario part for CodePipeline: pipelines, their stages and actions with per-attempt outcome
//! scripts, and executions started at seeding time (the `pipelines:` list of a [`Scenario`]).
//!
//! The stage `onFailure` block mirrors the AWS declaration (`{result, retryConfiguration:
//! {retryMode}}`) so a declaration can be copied into a scenario unchanged.
//!
//! [`Scenario`]: crate::Scenario

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scenario::{Dur, Scenario};

wire_enum!(
    /// `pipelineType`. Native stage auto-retry (`onFailure: RETRY`) is V2-only (api-facts §2.5).
    PipelineType { /** Legacy pipelines. */ V1 = "V1", /** Current pipelines. */ V2 = "V2" }
);
wire_enum!(
    /// `executionMode`: how a newer execution treats an older one waiting for the same stage.
    ExecutionMode {
        /// A newer execution overtakes (supersedes) an older one waiting for a stage (default).
        Superseded = "SUPERSEDED",
        /// Executions wait for a stage in start order.
        Queued = "QUEUED",
        /// Executions never wait for each other.
        Parallel = "PARALLEL",
    }
);
wire_enum!(
    /// Stage `onFailure.result`.
    FailureResult {
        /// Fail the stage (default).
        Fail = "FAIL",
        /// Retry the stage automatically, once (api-facts §2.5).
        Retry = "RETRY",
        /// Accepted but not modelled: behaves like FAIL.
        Rollback = "ROLLBACK",
        /// Accepted but not modelled: behaves like FAIL.
        Skip = "SKIP",
    }
);
wire_enum!(
    /// `retryMode` of RetryStageExecution and of `retryConfiguration`.
    StageRetryMode {
        /// Re-run only the failed actions; in-progress actions keep running.
        FailedActions = "FAILED_ACTIONS",
        /// Re-run the stage from its first action; no action may be in progress.
        AllActions = "ALL_ACTIONS",
    }
);
wire_enum!(
    /// `actionTypeId.category`.
    ActionCategory {
        /// Source.
        Source = "Source",
        /// Build.
        Build = "Build",
        /// Deploy.
        Deploy = "Deploy",
        /// Test.
        Test = "Test",
        /// Invoke.
        Invoke = "Invoke",
        /// Approval.
        Approval = "Approval",
        /// Compute.
        Compute = "Compute",
    }
);

impl ActionCategory {
    /// A realistic provider for the category (used when a scenario gives none).
    pub fn default_provider(self) -> &'static str {
        match self {
            ActionCategory::Source => "CodeStarSourceConnection",
            ActionCategory::Build | ActionCategory::Test => "CodeBuild",
            ActionCategory::Deploy => "CodeDeploy",
            ActionCategory::Invoke => "Lambda",
            ActionCategory::Approval => "Manual",
            ActionCategory::Compute => "Commands",
        }
    }
}

/// What one run (attempt) of an action ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    /// `Succeeded`, with an optional `summary`.
    Succeed {
        /// Summary shown in `latestExecution.summary`.
        summary: Option<String>,
        /// Run time of this attempt (default: the action's `duration`).
        duration: Option<Dur>,
    },
    /// `Failed` with `errorDetails {code, message}`.
    Fail {
        /// Error code, e.g. `JobFailed` (the FailureType values AWS uses).
        code: String,
        /// Error message.
        message: String,
        /// Run time of this attempt (default: the action's `duration`).
        duration: Option<Dur>,
    },
    /// Stays `InProgress` until completed with a handle helper (or abandoned / cancelled).
    Running,
}

impl ActionOutcome {
    /// `Succeeded`.
    pub fn succeed() -> Self {
        ActionOutcome::Succeed {
            summary: None,
            duration: None,
        }
    }
    /// `Failed` with `code` and a realistic default message.
    pub fn fail(code: &str) -> Self {
        Self::fail_with(code, &default_error_message(code))
    }
    /// `Failed` with `code` and `message`.
    pub fn fail_with(code: &str, message: &str) -> Self {
        ActionOutcome::Fail {
            code: code.to_string(),
            message: message.to_string(),
            duration: None,
        }
    }
    /// Stays `InProgress`.
    pub fn running() -> Self {
        ActionOutcome::Running
    }
    /// The same outcome reached after `d` instead of the action's duration.
    pub fn after(self, d: Duration) -> Self {
        match self {
            ActionOutcome::Succeed { summary, .. } => ActionOutcome::Succeed {
                summary,
                duration: Some(Dur(d)),
            },
            ActionOutcome::Fail { code, message, .. } => ActionOutcome::Fail {
                code,
                message,
                duration: Some(Dur(d)),
            },
            ActionOutcome::Running => ActionOutcome::Running,
        }
    }
    /// Per-attempt run time, if set.
    pub fn duration(&self) -> Option<Dur> {
        match self {
            ActionOutcome::Succeed { duration, .. } | ActionOutcome::Fail { duration, .. } => {
                *duration
            }
            ActionOutcome::Running => None,
        }
    }
    /// Wire status this outcome ends in (`Succeeded`, `Failed`, `InProgress`).
    pub fn status(&self) -> &'static str {
        match self {
            ActionOutcome::Succeed { .. } => "Succeeded",
            ActionOutcome::Fail { .. } => "Failed",
            ActionOutcome::Running => "InProgress",
        }
    }

    /// Parse the compact form: `succeed`, `succeed(summary)`, `fail`, `fail(Code)`,
    /// `fail(Code, message)` or `fail:Code:message`, `running`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (head, args, sep) = if let Some(open) = s.find('(') {
            if !s.ends_with(')') {
                return Err(format!("action outcome '{s}': missing ')'"));
            }
            (&s[..open], Some(&s[open + 1..s.len() - 1]), ',')
        } else if let Some(colon) = s.find(':') {
            (&s[..colon], Some(&s[colon + 1..]), ':')
        } else {
            (s, None, ':')
        };
        let args = args.map(str::trim).filter(|a| !a.is_empty());
        let head = head.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Ok(match head.as_str() {
            "succeed" | "succeeded" | "success" | "ok" => ActionOutcome::Succeed {
                summary: args.map(str::to_string),
                duration: None,
            },
            "fail" | "failed" | "failure" => {
                let (code, message) = match args.map(|a| a.split_once(sep)) {
                    None => ("JobFailed".to_string(), None),
                    Some(Some((c, m))) => (c.trim().to_string(), Some(m.trim().to_string())),
                    Some(None) => (args.unwrap_or("JobFailed").to_string(), None),
                };
                let message = message.unwrap_or_else(|| default_error_message(&code));
                ActionOutcome::Fail {
                    code,
                    message,
                    duration: None,
                }
            }
            "running" | "inprogress" => ActionOutcome::Running,
            other => return Err(format!("unknown action outcome '{other}' in '{s}'")),
        })
    }
}

impl fmt::Display for ActionOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionOutcome::Succeed { summary: None, .. } => write!(f, "succeed"),
            ActionOutcome::Succeed {
                summary: Some(s), ..
            } => write!(f, "succeed({s})"),
            ActionOutcome::Fail { code, message, .. } => write!(f, "fail({code}, {message})"),
            ActionOutcome::Running => write!(f, "running"),
        }
    }
}

/// A realistic `errorDetails.message` for the FailureType codes.
pub fn default_error_message(code: &str) -> String {
    match code {
        "JobFailed" => "Action execution failed: the job did not complete successfully".to_string(),
        "ConfigurationError" => {
            "Action configuration is invalid: the referenced project does not exist".to_string()
        }
        "PermissionError" => "The provided role does not have sufficient permissions".to_string(),
        "RevisionOutOfSync" => "The revision is out of sync with the source".to_string(),
        "RevisionUnavailable" => "The source revision is no longer available".to_string(),
        "SystemUnavailable" => "The service is temporarily unavailable".to_string(),
        other => format!("{other}: simulated failure"),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeMap {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<Dur>,
}

impl Serialize for ActionOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (code, message, summary) = match self {
            ActionOutcome::Fail { code, message, .. } => {
                (Some(code.clone()), Some(message.clone()), None)
            }
            ActionOutcome::Succeed { summary, .. } => (None, None, summary.clone()),
            ActionOutcome::Running => (None, None, None),
        };
        OutcomeMap {
            status: self.status().to_string(),
            code,
            message,
            summary,
            duration: self.duration(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActionOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Map(OutcomeMap),
        }
        match Repr::deserialize(d)? {
            Repr::Str(s) => ActionOutcome::parse(&s).map_err(serde::de::Error::custom),
            Repr::Map(m) => {
                let status = m.status.to_ascii_lowercase().replace(['-', '_'], "");
                Ok(match status.as_str() {
                    "succeeded" | "succeed" => ActionOutcome::Succeed {
                        summary: m.summary,
                        duration: m.duration,
                    },
                    "failed" | "fail" => {
                        let code = m.code.unwrap_or_else(|| "JobFailed".to_string());
                        let message = m.message.unwrap_or_else(|| default_error_message(&code));
                        ActionOutcome::Fail {
                            code,
                            message,
                            duration: m.duration,
                        }
                    }
                    "inprogress" | "running" => ActionOutcome::Running,
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "unknown action outcome status '{other}'"
                        )));
                    }
                })
            }
        }
    }
}

/// `retryConfiguration` of a stage's `onFailure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfigurationSpec {
    /// Mode of the automatic retry.
    pub retry_mode: StageRetryMode,
}

/// A stage's `onFailure` (AWS `FailureConditions`; `conditions` are not modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnFailureSpec {
    /// `FAIL`, `RETRY`, `ROLLBACK` or `SKIP`.
    pub result: FailureResult,
    /// Mode of the automatic retry (default `FAILED_ACTIONS` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_configuration: Option<RetryConfigurationSpec>,
}

impl OnFailureSpec {
    /// `onFailure: {result: RETRY, retryConfiguration: {retryMode: mode}}`.
    pub fn retry(mode: StageRetryMode) -> Self {
        OnFailureSpec {
            result: FailureResult::Retry,
            retry_configuration: Some(RetryConfigurationSpec { retry_mode: mode }),
        }
    }
    /// `onFailure: {result: FAIL}`.
    pub fn fail() -> Self {
        OnFailureSpec {
            result: FailureResult::Fail,
            retry_configuration: None,
        }
    }
}

/// One action of a stage and its outcome script.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSpec {
    /// Action name (1–100 of `[A-Za-z0-9.@\-_]`), unique in its stage.
    pub name: String,
    /// `actionTypeId.category` (default `Build`).
    pub category: ActionCategory,
    /// `actionTypeId.owner` (default `AWS`).
    pub owner: String,
    /// `actionTypeId.provider` (default depends on the category, e.g. `CodeBuild`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Actions of a stage run in `runOrder` groups (1–999, default 1); equal orders run in parallel.
    pub run_order: u32,
    /// Run time of each attempt (default: the pipeline's `actionDuration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Dur>,
    /// Outcome of each attempt in one pipeline execution; the last entry repeats.
    /// Default `[succeed]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<ActionOutcome>,
}

impl Default for ActionSpec {
    fn default() -> Self {
        ActionSpec {
            name: String::new(),
            category: ActionCategory::Build,
            owner: "AWS".to_string(),
            provider: None,
            run_order: 1,
            duration: None,
            outcomes: Vec::new(),
        }
    }
}

impl ActionSpec {
    /// An action of `category` that always succeeds.
    pub fn new(name: &str, category: ActionCategory) -> Self {
        ActionSpec {
            name: name.to_string(),
            category,
            ..Default::default()
        }
    }
    /// Set the outcome script.
    pub fn outcomes(mut self, o: impl IntoIterator<Item = ActionOutcome>) -> Self {
        self.outcomes = o.into_iter().collect();
        self
    }
    /// Set the run time of each attempt.
    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(Dur(d));
        self
    }
    /// Set the run order.
    pub fn run_order(mut self, n: u32) -> Self {
        self.run_order = n;
        self
    }
    /// The provider (default per category).
    pub fn provider_name(&self) -> &str {
        self.provider
            .as_deref()
            .unwrap_or(self.category.default_provider())
    }
}

/// One stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct StageSpec {
    /// Stage name (1–100 of `[A-Za-z0-9.@\-_]`), unique in the pipeline.
    pub name: String,
    /// At least one action.
    pub actions: Vec<ActionSpec>,
    /// Failure handling (absent = FAIL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailureSpec>,
}

impl StageSpec {
    /// A stage with no actions yet.
    pub fn new(name: &str) -> Self {
        StageSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// Add an action.
    pub fn action(mut self, a: ActionSpec) -> Self {
        self.actions.push(a);
        self
    }
    /// Set `onFailure`.
    pub fn on_failure(mut self, f: OnFailureSpec) -> Self {
        self.on_failure = Some(f);
        self
    }
}

/// An execution started at seeding time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineExecutionSpec {
    /// Execution id (lowercase UUID); generated if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Start relative to the seeding time (default 0: starts now). The execution is simulated
    /// from then on, so stages may already have finished, failed or been retried automatically.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_ago: Option<Dur>,
    /// Alternative to `startedAgo`: the start is chosen so that the execution's first stage
    /// failure happened this long before seeding (the scripts must make it fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_ago: Option<Dur>,
    /// Outcome scripts for this execution only: stage name → action name → script.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outcomes: BTreeMap<String, BTreeMap<String, Vec<ActionOutcome>>>,
}

impl PipelineExecutionSpec {
    /// An execution starting at seeding time.
    pub fn now() -> Self {
        Self::default()
    }
    /// An execution that started `d` before seeding.
    pub fn started_ago(d: Duration) -> Self {
        PipelineExecutionSpec {
            started_ago: Some(Dur(d)),
            ..Default::default()
        }
    }
    /// An execution whose first stage failure happened `d` before seeding.
    pub fn failed_ago(d: Duration) -> Self {
        PipelineExecutionSpec {
            failed_ago: Some(Dur(d)),
            ..Default::default()
        }
    }
    /// Fix the execution id.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
    /// Override one action's script for this execution.
    pub fn outcomes(
        mut self,
        stage: &str,
        action: &str,
        o: impl IntoIterator<Item = ActionOutcome>,
    ) -> Self {
        self.outcomes
            .entry(stage.to_string())
            .or_default()
            .insert(action.to_string(), o.into_iter().collect());
        self
    }
}

/// One pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// Pipeline name (1–100 of `[A-Za-z0-9.@\-_]`).
    pub name: String,
    /// `V2` (default in scenarios; the CreatePipeline API defaults to V1 like AWS).
    pub pipeline_type: PipelineType,
    /// `SUPERSEDED` (default), `QUEUED` or `PARALLEL`.
    pub execution_mode: ExecutionMode,
    /// Tags returned by ListTagsForResource.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Service role (generated if absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Creation time relative to seeding (default 30d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ago: Option<Dur>,
    /// Default run time of its actions' attempts (default 30s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_duration: Option<Dur>,
    /// Delay before a native automatic stage retry starts (default: the emulator config's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_retry_delay: Option<Dur>,
    /// Concurrent (in-progress or stopping) executions allowed; StartPipelineExecution and
    /// RetryStageExecution beyond it answer `ConcurrentPipelineExecutionsLimitExceededException`.
    /// Absent = unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_executions: Option<u32>,
    /// At least two stages (as AWS requires).
    pub stages: Vec<StageSpec>,
    /// Executions started at seeding time, in this order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<PipelineExecutionSpec>,
}

impl Default for PipelineSpec {
    fn default() -> Self {
        PipelineSpec {
            name: String::new(),
            pipeline_type: PipelineType::V2,
            execution_mode: ExecutionMode::Superseded,
            tags: BTreeMap::new(),
            role_arn: None,
            created_ago: None,
            action_duration: None,
            auto_retry_delay: None,
            max_concurrent_executions: None,
            stages: Vec::new(),
            executions: Vec::new(),
        }
    }
}

impl PipelineSpec {
    /// A V2, SUPERSEDED pipeline with no stages yet.
    pub fn new(name: &str) -> Self {
        PipelineSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// Add a stage.
    pub fn stage(mut self, s: StageSpec) -> Self {
        self.stages.push(s);
        self
    }
    /// Add a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }
    /// Set the default action run time.
    pub fn action_duration(mut self, d: Duration) -> Self {
        self.action_duration = Some(Dur(d));
        self
    }
    /// Set the automatic-retry delay.
    pub fn auto_retry_delay(mut self, d: Duration) -> Self {
        self.auto_retry_delay = Some(Dur(d));
        self
    }
    /// Set the execution mode.
    pub fn execution_mode(mut self, m: ExecutionMode) -> Self {
        self.execution_mode = m;
        self
    }
    /// Set the pipeline type.
    pub fn pipeline_type(mut self, t: PipelineType) -> Self {
        self.pipeline_type = t;
        self
    }
    /// Limit concurrent executions.
    pub fn max_concurrent_executions(mut self, n: u32) -> Self {
        self.max_concurrent_executions = Some(n);
        self
    }
    /// Add an execution started at seeding time.
    pub fn execution(mut self, e: PipelineExecutionSpec) -> Self {
        self.executions.push(e);
        self
    }
    /// The usual `Source → Build → Deploy` shape with one action per stage (all succeed).
    pub fn source_build_deploy(name: &str) -> Self {
        PipelineSpec::new(name)
            .stage(
                StageSpec::new("Source").action(ActionSpec::new("Source", ActionCategory::Source)),
            )
            .stage(StageSpec::new("Build").action(ActionSpec::new("Build", ActionCategory::Build)))
            .stage(
                StageSpec::new("Deploy").action(ActionSpec::new("Deploy", ActionCategory::Deploy)),
            )
    }
    /// Replace the script of `stage`/`action` (no-op if absent).
    pub fn script(
        mut self,
        stage: &str,
        action: &str,
        o: impl IntoIterator<Item = ActionOutcome>,
    ) -> Self {
        let o: Vec<ActionOutcome> = o.into_iter().collect();
        if let Some(a) = self
            .stages
            .iter_mut()
            .filter(|s| s.name == stage)
            .flat_map(|s| s.actions.iter_mut())
            .find(|a| a.name == action)
        {
            a.outcomes = o;
        }
        self
    }
    /// Set `onFailure` of `stage` (no-op if absent).
    pub fn on_failure(mut self, stage: &str, f: OnFailureSpec) -> Self {
        if let Some(s) = self.stages.iter_mut().find(|s| s.name == stage) {
            s.on_failure = Some(f);
        }
        self
    }
}

impl Scenario {
    /// Add a pipeline.
    pub fn with_pipeline(mut self, p: PipelineSpec) -> Self {
        self.pipelines.push(p);
        self
    }

    /// The CodePipeline demo data (pipelines only; add them to [`Scenario::demo`] with
    /// `let mut s = Scenario::demo(); s.pipelines = Scenario::demo_pipelines().pipelines;`).
    ///
    /// Five V2 pipelines, all with a `Source → Build → Deploy` shape unless noted:
    /// - `web-frontend` {team: web, redrive: enabled}: Deploy has `onFailure: RETRY`; it fails
    ///   three times with `JobFailed` (the native retry takes one), then succeeds. Failed 5 min ago.
    /// - `payments-api` {team: payments, redrive: enabled}: Deploy fails once
    ///   (`SystemUnavailable`), then succeeds; no native retry. Failed 20 min ago.
    /// - `billing-batch` {team: payments, redrive: enabled}: Build fails permanently with
    ///   `ConfigurationError`. Failed 1 h ago.
    /// - `mobile-backend` {team: mobile}: Deploy runs two parallel actions; `DeployEu` fails
    ///   once, `DeployUs` succeeds. Failed 10 min ago.
    /// - `docs-site` {team: web}: succeeds.
    pub fn demo_pipelines() -> Self {
        let mins = |m: u64| Duration::from_secs(m * 60);
        let deploy_failure = |code: &str, msg: &str| ActionOutcome::fail_with(code, msg);
        let web = PipelineSpec::source_build_deploy("web-frontend")
            .tag("team", "web")
            .tag("redrive", "enabled")
            .on_failure(
                "Deploy",
                OnFailureSpec::retry(StageRetryMode::FailedActions),
            )
            .script(
                "Deploy",
                "Deploy",
                [
                    deploy_failure(
                        "JobFailed",
                        "Deployment d-7KQ2 failed: 2 of 4 instances failed health checks",
                    ),
                    deploy_failure(
                        "JobFailed",
                        "Deployment d-7KQ3 failed: 1 of 4 instances failed health checks",
                    ),
                    deploy_failure(
                        "JobFailed",
                        "Deployment d-7KQ4 failed: 1 of 4 instances failed health checks",
                    ),
                    ActionOutcome::succeed(),
                ],
            )
            .execution(PipelineExecutionSpec::failed_ago(mins(5)));
        let payments = PipelineSpec::source_build_deploy("payments-api")
            .tag("team", "payments")
            .tag("redrive", "enabled")
            .script(
                "Deploy",
                "Deploy",
                [
                    deploy_failure("SystemUnavailable", "CodeDeploy is temporarily unavailable"),
                    ActionOutcome::succeed(),
                ],
            )
            .execution(PipelineExecutionSpec::failed_ago(mins(20)));
        let billing = PipelineSpec::source_build_deploy("billing-batch")
            .tag("team", "payments")
            .tag("redrive", "enabled")
            .script(
                "Build",
                "Build",
                [deploy_failure(
                    "ConfigurationError",
                    "Build project billing-batch-build does not exist",
                )],
            )
            .execution(PipelineExecutionSpec::failed_ago(mins(60)));
        let mobile = PipelineSpec::new("mobile-backend")
            .tag("team", "mobile")
            .stage(
                StageSpec::new("Source").action(ActionSpec::new("Source", ActionCategory::Source)),
            )
            .stage(StageSpec::new("Build").action(ActionSpec::new("Build", ActionCategory::Build)))
            .stage(
                StageSpec::new("Deploy")
                    .action(ActionSpec::new("DeployUs", ActionCategory::Deploy))
                    .action(
                        ActionSpec::new("DeployEu", ActionCategory::Deploy).outcomes([
                            deploy_failure(
                                "JobFailed",
                                "Stack mobile-eu is in UPDATE_ROLLBACK_COMPLETE state",
                            ),
                            ActionOutcome::succeed(),
                        ]),
                    ),
            )
            .execution(PipelineExecutionSpec::failed_ago(mins(10)));
        let docs = PipelineSpec::source_build_deploy("docs-site")
            .tag("team", "web")
            .execution(PipelineExecutionSpec::started_ago(mins(90)));
        Scenario::new()
            .with_pipeline(web)
            .with_pipeline(payments)
            .with_pipeline(billing)
            .with_pipeline(mobile)
            .with_pipeline(docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_strings() {
        assert_eq!(
            ActionOutcome::parse("succeed").unwrap(),
            ActionOutcome::succeed()
        );
        assert_eq!(
            ActionOutcome::parse("fail(JobFailed, boom, really)").unwrap(),
            ActionOutcome::fail_with("JobFailed", "boom, really")
        );
        assert_eq!(
            ActionOutcome::parse("fail:PermissionError:no").unwrap(),
            ActionOutcome::fail_with("PermissionError", "no")
        );
        assert_eq!(
            ActionOutcome::parse("fail").unwrap(),
            ActionOutcome::fail("JobFailed")
        );
        assert_eq!(
            ActionOutcome::parse("running").unwrap(),
            ActionOutcome::Running
        );
        assert!(ActionOutcome::parse("explode").is_err());
    }

    #[test]
    fn spec_yaml_round_trip() {
        let yaml = r#"
name: web
stages:
  - name: Source
    actions: [{name: Src, category: Source}]
  - name: Deploy
    onFailure: {result: RETRY, retryConfiguration: {retryMode: ALL_ACTIONS}}
    actions:
      - name: App
        category: Deploy
        duration: 2m
        outcomes: ["fail(JobFailed, health check)", {status: Succeeded, duration: 5s}]
executions: [{failedAgo: 10m}]
"#;
        let p: PipelineSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(p.pipeline_type, PipelineType::V2);
        assert_eq!(
            p.stages[1].on_failure,
            Some(OnFailureSpec::retry(StageRetryMode::AllActions))
        );
        let a = &p.stages[1].actions[0];
        assert_eq!(a.duration, Some(Dur::mins(2)));
        assert_eq!(a.outcomes[1].duration(), Some(Dur::secs(5)));
        let json = serde_json::to_string(&p).unwrap();
        let back: PipelineSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(serde_saphyr::from_str::<PipelineSpec>("name: x\nbogus: 1\n").is_err());
    }
}
