//! Scenario: the state machines, executions and pipelines the emulator starts with (YAML or
//! JSON). The CodePipeline part (`pipelines:`) is defined in `codepipeline/scenario.rs`.
//!
//! All times are relative to the emulator's clock at seeding time (`startedAgo: 3h`), or absolute
//! (`startedAt: 2023-10-01T00:00:00Z`). The format is documented in `docs/emulator.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::codepipeline::PipelineSpec;
use super::config::parse_duration;
use super::flowservice::{FlowSpec, ImsClientSpec};
use super::sts::RoleSpec;

/// Errors loading or seeding a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// File could not be read.
    #[error("cannot read scenario file {path}: {source}")]
    Io {
        /// Path of the file.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Neither valid YAML nor valid JSON.
    #[error("cannot parse scenario: {0}")]
    Parse(String),
    /// Semantically invalid (duplicate names, unknown parent execution, ...).
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

/// A duration written as a humantime string (`"15d"`, `"2h 30m"`, `"250ms"`) or seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// Seconds.
    pub fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    /// Minutes.
    pub fn mins(m: u64) -> Self {
        Dur(Duration::from_secs(m * 60))
    }
    /// Hours.
    pub fn hours(h: u64) -> Self {
        Dur(Duration::from_secs(h * 3600))
    }
    /// Days.
    pub fn days(d: u64) -> Self {
        Dur(Duration::from_secs(d * 86_400))
    }
    /// Milliseconds as i64 (saturating).
    pub fn as_ms(self) -> i64 {
        i64::try_from(self.0.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(u64),
            Num(f64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(n) => Ok(Dur(Duration::from_secs(n))),
            Repr::Num(n) => Duration::try_from_secs_f64(n)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Repr::Str(s) => parse_duration(&s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The status an execution attempt ends in (or `Running` forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `SUCCEEDED`, with optional output JSON.
    Succeed {
        /// Output document (default `{}`).
        output: Option<String>,
    },
    /// `FAILED` with error and cause.
    Fail {
        /// Error name, e.g. `Lambda.ServiceException`.
        error: String,
        /// Cause text.
        cause: String,
    },
    /// `TIMED_OUT` (error defaults to `States.Timeout`).
    TimedOut {
        /// Error name.
        error: String,
        /// Cause text.
        cause: String,
    },
    /// `ABORTED` (StopExecution), optional error/cause.
    Aborted {
        /// Error given to StopExecution, if any.
        error: Option<String>,
        /// Cause given to StopExecution, if any.
        cause: Option<String>,
    },
    /// Stays `RUNNING` (until forced with `fail_execution`).
    Running,
}

impl Outcome {
    /// `SUCCEEDED`.
    pub fn succeed() -> Self {
        Outcome::Succeed { output: None }
    }
    /// `FAILED` with `error` and a realistic default cause.
    pub fn fail(error: &str) -> Self {
        Outcome::Fail {
            error: error.to_string(),
            cause: default_cause(error),
        }
    }
    /// `FAILED` with `error` and `cause`.
    pub fn fail_with(error: &str, cause: &str) -> Self {
        Outcome::Fail {
            error: error.to_string(),
            cause: cause.to_string(),
        }
    }
    /// `TIMED_OUT` (`States.Timeout`).
    pub fn timed_out() -> Self {
        Outcome::TimedOut {
            error: "States.Timeout".to_string(),
            cause: default_cause("States.Timeout"),
        }
    }
    /// `ABORTED` without error/cause.
    pub fn aborted() -> Self {
        Outcome::Aborted {
            error: None,
            cause: None,
        }
    }
    /// `RUNNING` forever.
    pub fn running() -> Self {
        Outcome::Running
    }

    /// Parse the compact string form (`fail(Lambda.ServiceException)`, `succeed`, `timeout`, ...).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (head, args) = if let Some(open) = s.find('(') {
            if !s.ends_with(')') {
                return Err(format!("outcome '{s}': missing ')'"));
            }
            (&s[..open], Some(&s[open + 1..s.len() - 1]))
        } else if let Some(colon) = s.find(':') {
            (&s[..colon], Some(&s[colon + 1..]))
        } else {
            (s, None)
        };
        let sep = if s.contains('(') { ',' } else { ':' };
        let (error, cause) = match args {
            None => (None, None),
            Some(a) => match a.split_once(sep) {
                Some((e, c)) => (Some(e.trim().to_string()), Some(c.trim().to_string())),
                None if a.trim().is_empty() => (None, None),
                None => (Some(a.trim().to_string()), None),
            },
        };
        let head = head.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Ok(match head.as_str() {
            "succeed" | "succeeded" | "success" | "ok" => Outcome::Succeed { output: error },
            "fail" | "failed" | "failure" => {
                let error = error.unwrap_or_else(|| "States.TaskFailed".to_string());
                let cause = cause.unwrap_or_else(|| default_cause(&error));
                Outcome::Fail { error, cause }
            }
            "timeout" | "timedout" => {
                let error = error.unwrap_or_else(|| "States.Timeout".to_string());
                let cause = cause.unwrap_or_else(|| default_cause(&error));
                Outcome::TimedOut { error, cause }
            }
            "abort" | "aborted" => Outcome::Aborted { error, cause },
            "running" | "run" => Outcome::Running,
            other => return Err(format!("unknown outcome '{other}' in '{s}'")),
        })
    }

    /// `ExecutionStatus` string of this outcome.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Succeed { .. } => "SUCCEEDED",
            Outcome::Fail { .. } => "FAILED",
            Outcome::TimedOut { .. } => "TIMED_OUT",
            Outcome::Aborted { .. } => "ABORTED",
            Outcome::Running => "RUNNING",
        }
    }

    /// Error name, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Fail { error, .. } | Outcome::TimedOut { error, .. } => Some(error),
            Outcome::Aborted { error, .. } => error.as_deref(),
            _ => None,
        }
    }

    /// Cause text, if any.
    pub fn cause(&self) -> Option<&str> {
        match self {
            Outcome::Fail { cause, .. } | Outcome::TimedOut { cause, .. } => Some(cause),
            Outcome::Aborted { cause, .. } => cause.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeed { output: None } => write!(f, "succeed"),
            Outcome::Succeed { output: Some(o) } => write!(f, "succeed({o})"),
            Outcome::Fail { error, cause } => write!(f, "fail({error}, {cause})"),
            Outcome::TimedOut { error, cause } => write!(f, "timeout({error}, {cause})"),
            Outcome::Aborted {
                error: Some(e),
                cause: Some(c),
            } => write!(f, "abort({e}, {c})"),
            Outcome::Aborted { error: Some(e), .. } => write!(f, "abort({e})"),
            Outcome::Aborted { .. } => write!(f, "abort"),
            Outcome::Running => write!(f, "running"),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeMap {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = OutcomeMap {
            status: self.status().to_string(),
            error: self.error().map(str::to_string),
            cause: self.cause().map(str::to_string),
            output: match self {
                Outcome::Succeed { output } => output.clone(),
                _ => None,
            },
        };
        m.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Map(OutcomeMap),
        }
        match Repr::deserialize(d)? {
            Repr::Str(s) => Outcome::parse(&s).map_err(serde::de::Error::custom),
            Repr::Map(m) => {
                let status = m.status.to_ascii_uppercase();
                let error_or = |dflt: &str| m.error.clone().unwrap_or_else(|| dflt.to_string());
                Ok(match status.as_str() {
                    "SUCCEEDED" | "SUCCEED" => Outcome::Succeed { output: m.output },
                    "FAILED" | "FAIL" => {
                        let error = error_or("States.TaskFailed");
                        let cause = m.cause.unwrap_or_else(|| default_cause(&error));
                        Outcome::Fail { error, cause }
                    }
                    "TIMED_OUT" | "TIMEOUT" => {
                        let error = error_or("States.Timeout");
                        let cause = m.cause.unwrap_or_else(|| default_cause(&error));
                        Outcome::TimedOut { error, cause }
                    }
                    "ABORTED" | "ABORT" => Outcome::Aborted {
                        error: m.error,
                        cause: m.cause,
                    },
                    "RUNNING" => Outcome::Running,
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "unknown outcome status '{other}'"
                        )));
                    }
                })
            }
        }
    }
}

/// A realistic cause text for well-known error names.
pub fn default_cause(error: &str) -> String {
    match error {
        "Lambda.ServiceException" => "Lambda returned a 5xx status code: An error occurred (ServiceException) when calling the Invoke operation (reached max retries: 3): Service unavailable. Please try again later.".to_string(),
        "Lambda.TooManyRequestsException" => "Rate Exceeded. (Service: Lambda, Status Code: 429, Request ID: 7c1f3e8e-1d2b-4a55-9f0e-3b2d1a6c9e44)".to_string(),
        "Lambda.SdkClientException" => "Unable to execute HTTP request: Connection reset".to_string(),
        "States.Timeout" => "The state or execution ran longer than the specified TimeoutSeconds value.".to_string(),
        "States.TaskFailed" => "The task failed.".to_string(),
        "States.DataLimitExceeded" => "The state/task returned a result with a size exceeding the maximum number of bytes service limit.".to_string(),
        "States.Runtime" => "An error occurred while executing the state.".to_string(),
        "ValidationError" => "{\"errorMessage\":\"Invalid order: missing customerId\",\"errorType\":\"ValidationError\"}".to_string(),
        other => format!("{other}: simulated failure"),
    }
}

/// `STANDARD` or `EXPRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StateMachineType {
    /// Standard workflows (redrivable).
    #[default]
    #[serde(rename = "STANDARD", alias = "standard")]
    Standard,
    /// Express workflows (not listable, not describable, not redrivable).
    #[serde(rename = "EXPRESS", alias = "express")]
    Express,
}

impl StateMachineType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StateMachineType::Standard => "STANDARD",
            StateMachineType::Express => "EXPRESS",
        }
    }
}

/// `ACTIVE` or `DELETING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StateMachineStatus {
    /// Normal.
    #[default]
    #[serde(rename = "ACTIVE", alias = "active")]
    Active,
    /// Being deleted: executions are not redrivable.
    #[serde(rename = "DELETING", alias = "deleting")]
    Deleting,
}

impl StateMachineStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StateMachineStatus::Active => "ACTIVE",
            StateMachineStatus::Deleting => "DELETING",
        }
    }
}

/// Whole scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    /// Defaults for everything below.
    pub defaults: ScenarioDefaults,
    /// State machines (merged by name with existing ones when seeding more).
    pub state_machines: Vec<StateMachineSpec>,
    /// Roles the STS stand-in lets AssumeRole assume (replaced by ARN when seeding more).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleSpec>,
    /// CodePipeline pipelines (merged by name when seeding more: tags, scripts and executions
    /// are added; the structure must be the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<PipelineSpec>,
    /// Adobe Flow Service dataflows (merged by id when seeding more: runs are added, a
    /// non-empty outcome script replaces the flow's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<FlowSpec>,
    /// IMS OAuth server-to-server credentials (replaced by client id when seeding more).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ims_clients: Vec<ImsClientSpec>,
}

/// Scenario-wide defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioDefaults {
    /// How long a redriven (or started) execution runs before taking its next outcome.
    /// `0s` = it resolves at the next request after the redrive.
    pub redrive_run_time: Dur,
    /// Default `startedAgo` of seeded executions.
    pub started_ago: Dur,
    /// Default time between start and stop of seeded stopped executions.
    pub run_time: Dur,
    /// Outcome script for executions created with StartExecution.
    pub start_outcomes: Vec<Outcome>,
}

impl Default for ScenarioDefaults {
    fn default() -> Self {
        ScenarioDefaults {
            redrive_run_time: Dur(Duration::ZERO),
            started_ago: Dur::hours(1),
            run_time: Dur::mins(1),
            start_outcomes: vec![Outcome::succeed()],
        }
    }
}

/// One state machine and its executions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct StateMachineSpec {
    /// Name (1–80 chars, no ARN-forbidden characters).
    pub name: String,
    /// `STANDARD` (default) or `EXPRESS`.
    #[serde(rename = "type")]
    pub kind: StateMachineType,
    /// `ACTIVE` (default) or `DELETING`.
    pub status: StateMachineStatus,
    /// Tags returned by ListTagsForResource.
    pub tags: BTreeMap<String, String>,
    /// ASL definition (a small Task definition is generated if absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Role ARN (generated if absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Creation date relative to now (default 90d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ago: Option<Dur>,
    /// Per-state-machine redrive run time (overrides defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_run_time: Option<Dur>,
    /// Script for executions created with StartExecution (overrides defaults).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub start_outcomes: Vec<Outcome>,
    /// Explicit executions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<ExecutionSpec>,
    /// Generated batches of executions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generate: Vec<GenerateSpec>,
    /// Distributed Map runs (children live under `stateMachine:<name>/<label>`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub map_runs: Vec<MapRunSpec>,
}

impl StateMachineSpec {
    /// A STANDARD state machine.
    pub fn standard(name: &str) -> Self {
        StateMachineSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// An EXPRESS state machine.
    pub fn express(name: &str) -> Self {
        StateMachineSpec {
            name: name.to_string(),
            kind: StateMachineType::Express,
            ..Default::default()
        }
    }
    /// Add a tag.
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }
    /// Mark as `DELETING`.
    pub fn deleting(mut self) -> Self {
        self.status = StateMachineStatus::Deleting;
        self
    }
    /// Set the redrive run time.
    pub fn redrive_run_time(mut self, d: Duration) -> Self {
        self.redrive_run_time = Some(Dur(d));
        self
    }
    /// Set the StartExecution script.
    pub fn start_outcomes(mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        self.start_outcomes = outcomes.into_iter().collect();
        self
    }
    /// Add an execution.
    pub fn execution(mut self, e: ExecutionSpec) -> Self {
        self.executions.push(e);
        self
    }
    /// Add a generated batch.
    pub fn generate(mut self, g: GenerateSpec) -> Self {
        self.generate.push(g);
        self
    }
    /// Add a Map Run.
    pub fn map_run(mut self, m: MapRunSpec) -> Self {
        self.map_runs.push(m);
        self
    }
}

/// One seeded execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecutionSpec {
    /// Execution name (1–80 chars).
    pub name: String,
    /// Outcome script: the first entry is the current state, each successful redrive moves to
    /// the next entry after the redrive run time; the last entry repeats.
    /// Default `[fail(States.TaskFailed)]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<Outcome>,
    /// Start time relative to now (default `defaults.startedAgo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_ago: Option<Dur>,
    /// Absolute start time (wins over `startedAgo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    /// Stop time relative to now (default start + runTime, capped at now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_ago: Option<Dur>,
    /// Absolute stop time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<jiff::Timestamp>,
    /// Duration from start to stop when no stop time is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_time: Option<Dur>,
    /// For an initial `running` outcome: it takes the next outcome this long after seeding
    /// (absent = runs until forced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finishes_in: Option<Dur>,
    /// Redrives that already happened before seeding.
    pub redrive_count: u32,
    /// When the latest pre-seeded redrive happened (default: shortly before the stop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_ago: Option<Dur>,
    /// Total history events (default: 7 for the first attempt + 6 per redrive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_events: Option<u32>,
    /// Input JSON (default `{}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Per-execution redrive run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_run_time: Option<Dur>,
}

impl ExecutionSpec {
    /// An execution with the default script (`fail(States.TaskFailed)`).
    pub fn new(name: &str) -> Self {
        ExecutionSpec {
            name: name.to_string(),
            ..Default::default()
        }
    }
    /// A FAILED execution with `error`.
    pub fn failed(name: &str, error: &str) -> Self {
        Self::new(name).outcomes([Outcome::fail(error)])
    }
    /// A SUCCEEDED execution.
    pub fn succeeded(name: &str) -> Self {
        Self::new(name).outcomes([Outcome::succeed()])
    }
    /// A RUNNING execution (runs until forced).
    pub fn running(name: &str) -> Self {
        Self::new(name).outcomes([Outcome::running()])
    }
    /// Set the outcome script.
    pub fn outcomes(mut self, o: impl IntoIterator<Item = Outcome>) -> Self {
        self.outcomes = o.into_iter().collect();
        self
    }
    /// Start time relative to now.
    pub fn started_ago(mut self, d: Duration) -> Self {
        self.started_ago = Some(Dur(d));
        self
    }
    /// Absolute start time.
    pub fn started_at(mut self, t: jiff::Timestamp) -> Self {
        self.started_at = Some(t);
        self
    }
    /// Stop time relative to now.
    pub fn stopped_ago(mut self, d: Duration) -> Self {
        self.stopped_ago = Some(Dur(d));
        self
    }
    /// Pre-seeded redrive count.
    pub fn redriven(mut self, count: u32) -> Self {
        self.redrive_count = count;
        self
    }
    /// Total history events.
    pub fn history_events(mut self, n: u32) -> Self {
        self.history_events = Some(n);
        self
    }
    /// Redrive run time.
    pub fn redrive_run_time(mut self, d: Duration) -> Self {
        self.redrive_run_time = Some(Dur(d));
        self
    }
    /// Input JSON.
    pub fn input(mut self, json: &str) -> Self {
        self.input = Some(json.to_string());
        self
    }
    /// For a running execution: finish after `d`.
    pub fn finishes_in(mut self, d: Duration) -> Self {
        self.finishes_in = Some(Dur(d));
        self
    }
}

/// A compact batch of `count` similar executions named `<namePrefix><index>` (index zero-padded to
/// 5 digits). The first is the newest (started `startedAgo`), each next one `every` older.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateSpec {
    /// Number of executions.
    pub count: u32,
    /// Name prefix.
    pub name_prefix: String,
    /// Start of the newest execution relative to now (default `defaults.startedAgo`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_ago: Option<Dur>,
    /// Spacing between consecutive starts (default 1s).
    pub every: Dur,
    /// Start-to-stop duration (default `defaults.runTime`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_time: Option<Dur>,
    /// Outcome script shared by the batch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<Outcome>,
    /// Pre-seeded redrive count.
    pub redrive_count: u32,
    /// History events per execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_events: Option<u32>,
    /// Input JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Redrive run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_run_time: Option<Dur>,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        GenerateSpec {
            count: 0,
            name_prefix: "exec-".to_string(),
            started_ago: None,
            every: Dur::secs(1),
            run_time: None,
            outcomes: Vec::new(),
            redrive_count: 0,
            history_events: None,
            input: None,
            redrive_run_time: None,
        }
    }
}

impl GenerateSpec {
    /// `count` executions named `<prefix>00000`, ... with script `outcomes`.
    pub fn new(count: u32, prefix: &str, outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        GenerateSpec {
            count,
            name_prefix: prefix.to_string(),
            outcomes: outcomes.into_iter().collect(),
            ..Default::default()
        }
    }
    /// Newest start relative to now.
    pub fn started_ago(mut self, d: Duration) -> Self {
        self.started_ago = Some(Dur(d));
        self
    }
    /// Spacing.
    pub fn every(mut self, d: Duration) -> Self {
        self.every = Dur(d);
        self
    }
    /// Start-to-stop duration.
    pub fn run_time(mut self, d: Duration) -> Self {
        self.run_time = Some(Dur(d));
        self
    }
}

/// A Distributed Map run dispatched by a parent execution of the same state machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MapRunSpec {
    /// Map state label (children's state machine ARN is `...:stateMachine:<sm>/<label>`).
    pub label: String,
    /// Map Run id (default derived from parent and label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name of the parent execution (must be in the same state machine).
    pub parent_execution: String,
    /// Pre-seeded Map Run redrive count.
    pub redrive_count: u32,
    /// Child executions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<ExecutionSpec>,
    /// Generated children.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generate: Vec<GenerateSpec>,
}

impl MapRunSpec {
    /// A Map Run `label` dispatched by `parent_execution`.
    pub fn new(label: &str, parent_execution: &str) -> Self {
        MapRunSpec {
            label: label.to_string(),
            parent_execution: parent_execution.to_string(),
            ..Default::default()
        }
    }
    /// Add a child.
    pub fn child(mut self, e: ExecutionSpec) -> Self {
        self.executions.push(e);
        self
    }
}

impl Scenario {
    /// Empty scenario.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a state machine.
    pub fn with(mut self, sm: StateMachineSpec) -> Self {
        self.state_machines.push(sm);
        self
    }

    /// Add a role for the STS stand-in.
    pub fn with_role(mut self, role: RoleSpec) -> Self {
        self.roles.push(role);
        self
    }

    /// Set the default redrive run time.
    pub fn redrive_run_time(mut self, d: Duration) -> Self {
        self.defaults.redrive_run_time = Dur(d);
        self
    }

    /// Parse YAML (a superset of JSON).
    pub fn from_yaml(text: &str) -> Result<Self, ScenarioError> {
        serde_saphyr::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))
    }

    /// Parse JSON.
    pub fn from_json(text: &str) -> Result<Self, ScenarioError> {
        serde_json::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))
    }

    /// Parse JSON if it looks like JSON, else YAML.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        if text.trim_start().starts_with('{') {
            Self::from_json(text)
        } else {
            Self::from_yaml(text)
        }
    }

    /// Load a file (`.json` → JSON, anything else → YAML/JSON sniffing).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if path.extension().is_some_and(|e| e == "json") {
            Self::from_json(&text)
        } else {
            Self::parse(&text)
        }
    }

    /// Number of (STANDARD and EXPRESS-listed) executions this scenario seeds.
    pub fn execution_count(&self) -> u64 {
        self.state_machines
            .iter()
            .map(|sm| {
                let gen_count =
                    |g: &[GenerateSpec]| g.iter().map(|g| u64::from(g.count)).sum::<u64>();
                sm.executions.len() as u64
                    + gen_count(&sm.generate)
                    + sm.map_runs
                        .iter()
                        .map(|m| m.executions.len() as u64 + gen_count(&m.generate))
                        .sum::<u64>()
            })
            .sum()
    }

    /// The realistic, deterministic demo scenario (see docs/emulator.md).
    ///
    /// Four STANDARD state machines (`orders-processing`, `invoice-sync`, `nightly-etl`,
    /// `email-notifications`) plus one EXPRESS (`clickstream-express`), ~330 executions: transient
    /// failures that succeed after 1–2 redrives, permanent ones that keep failing, executions stopped
    /// 15+ days ago, already-redriven ones, successes, running ones, a Distributed Map run with
    /// children and an execution with a 24,999-event history. Redrives run for 2 s.
    pub fn demo() -> Self {
        demo_scenario()
    }
}

fn demo_scenario() -> Scenario {
    let mut rng = StdRng::seed_from_u64(0x5EED_DE30);
    let transient = [
        "Lambda.ServiceException",
        "Lambda.TooManyRequestsException",
        "States.Timeout",
    ];
    let permanent = ["ValidationError", "States.DataLimitExceeded"];

    let mut machines = Vec::new();
    type Tags = &'static [(&'static str, &'static str)];
    let specs: [(&str, Tags, u32); 4] = [
        (
            "orders-processing",
            &[
                ("team", "payments"),
                ("env", "prod"),
                ("redrive", "enabled"),
            ],
            120,
        ),
        (
            "invoice-sync",
            &[
                ("team", "payments"),
                ("env", "prod"),
                ("redrive", "enabled"),
            ],
            80,
        ),
        ("nightly-etl", &[("team", "data"), ("env", "prod")], 60),
        (
            "email-notifications",
            &[("team", "growth"), ("env", "staging")],
            50,
        ),
    ];
    for (sm_name, tags, n) in specs {
        let mut sm = StateMachineSpec::standard(sm_name);
        for (k, v) in tags {
            sm = sm.tag(k, v);
        }
        sm.description = Some(format!("{sm_name} workflow (demo)"));
        // Newest executions first: spread over the last ~20 days.
        let mut age_s: u64 = rng.random_range(30..120);
        for i in 0..n {
            age_s += rng.random_range(60..4 * 3600);
            let run_s = rng.random_range(2..600);
            let name = format!("{}-{:04}", short(sm_name), n - i);
            let roll: u32 = rng.random_range(0..100);
            let started = Duration::from_secs(age_s + run_s);
            let stopped = Duration::from_secs(age_s);
            let mut spec = ExecutionSpec::new(&name).started_ago(started);
            spec.stopped_ago = Some(Dur(stopped));
            spec.input = Some(format!(
                "{{\"id\":\"{}-{}\",\"attempt\":1}}",
                short(sm_name),
                10_000 + i
            ));
            spec.outcomes = match roll {
                // transient: succeeds after 1 or 2 redrives
                0..=34 => {
                    let e = transient[rng.random_range(0..transient.len())];
                    let first = if e == "States.Timeout" && rng.random_bool(0.5) {
                        Outcome::timed_out()
                    } else {
                        Outcome::fail(e)
                    };
                    if rng.random_bool(0.5) {
                        vec![first, Outcome::succeed()]
                    } else {
                        vec![first.clone(), first, Outcome::succeed()]
                    }
                }
                // permanent: keeps failing
                35..=49 => {
                    let e = permanent[rng.random_range(0..permanent.len())];
                    vec![Outcome::fail(e)]
                }
                // aborted by an operator: succeeds when redriven
                50..=54 => vec![Outcome::aborted(), Outcome::succeed()],
                // already redriven once or twice, failed again, will succeed
                55..=62 => {
                    spec.redrive_count = rng.random_range(1..=2);
                    vec![
                        Outcome::fail(transient[rng.random_range(0..2)]),
                        Outcome::succeed(),
                    ]
                }
                // running
                63..=66 => {
                    spec.stopped_ago = None;
                    spec.started_ago = Some(Dur::secs(rng.random_range(5..300)));
                    spec.finishes_in = Some(Dur::secs(rng.random_range(3..40)));
                    if rng.random_bool(0.3) {
                        vec![
                            Outcome::running(),
                            Outcome::fail("Lambda.ServiceException"),
                            Outcome::succeed(),
                        ]
                    } else {
                        vec![Outcome::running(), Outcome::succeed()]
                    }
                }
                _ => vec![Outcome::succeed()],
            };
            sm.executions.push(spec);
        }
        machines.push(sm);
    }

    // Old failures beyond the 14-day redrivable period.
    let orders = &mut machines[0];
    for i in 0..6 {
        orders.executions.push(
            ExecutionSpec::failed(&format!("orders-stale-{i:02}"), "Lambda.ServiceException")
                .started_ago(Duration::from_secs(86_400 * (15 + i) + 600))
                .stopped_ago(Duration::from_secs(86_400 * (15 + i))),
        );
    }
    // A failure with a history at the 24,999-event limit.
    orders.executions.push(
        ExecutionSpec::failed("orders-huge-history", "Lambda.ServiceException")
            .started_ago(Duration::from_secs(6 * 3600))
            .stopped_ago(Duration::from_secs(3600))
            .history_events(24_999),
    );

    // nightly-etl: a Distributed Map parent that failed because its Map Run failed.
    let etl = &mut machines[2];
    etl.executions.push(
        ExecutionSpec::new("etl-2024-backfill")
            .outcomes([
                Outcome::fail_with(
                    "States.ExceedToleratedFailureThreshold",
                    "The specified tolerated failure threshold was exceeded",
                ),
                Outcome::succeed(),
            ])
            .started_ago(Duration::from_secs(5 * 3600))
            .stopped_ago(Duration::from_secs(4 * 3600)),
    );
    let mut map_run = MapRunSpec::new("ProcessPartitions", "etl-2024-backfill");
    map_run.id = Some("5f0b6c3e-8d1a-4e2b-9c7d-1a2b3c4d5e6f".to_string());
    for i in 0..8 {
        let outcomes = if i % 3 == 0 {
            vec![
                Outcome::fail("Lambda.TooManyRequestsException"),
                Outcome::succeed(),
            ]
        } else {
            vec![Outcome::succeed()]
        };
        map_run = map_run.child(
            ExecutionSpec::new(&format!("partition-{i:03}"))
                .outcomes(outcomes)
                .started_ago(Duration::from_secs(5 * 3600 - 60 - i * 5))
                .stopped_ago(Duration::from_secs(4 * 3600 + 120)),
        );
    }
    etl.map_runs.push(map_run);

    // email-notifications: a DELETING-free but older backlog generated compactly.
    let email = &mut machines[3];
    email.generate.push(GenerateSpec {
        count: 40,
        name_prefix: "email-batch-".to_string(),
        started_ago: Some(Dur::hours(30)),
        every: Dur::mins(7),
        run_time: Some(Dur::secs(12)),
        outcomes: vec![
            Outcome::fail("Lambda.TooManyRequestsException"),
            Outcome::succeed(),
        ],
        ..Default::default()
    });

    let mut express = StateMachineSpec::express("clickstream-express")
        .tag("team", "analytics")
        .tag("env", "prod");
    express.description = Some("high-volume EXPRESS workflow (not redrivable)".to_string());
    machines.push(express);

    Scenario {
        defaults: ScenarioDefaults {
            redrive_run_time: Dur::secs(2),
            started_ago: Dur::hours(1),
            run_time: Dur::mins(1),
            start_outcomes: vec![Outcome::succeed()],
        },
        state_machines: machines,
        roles: Vec::new(),
        pipelines: Vec::new(),
        flows: Vec::new(),
        ims_clients: Vec::new(),
    }
}

fn short(sm: &str) -> &str {
    sm.split('-').next().unwrap_or(sm)
}
