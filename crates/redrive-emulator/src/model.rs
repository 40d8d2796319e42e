//! In-memory Step Functions model: state machines, executions, Map Runs, redrive rules.
//!
//! Times are `i64` milliseconds since the Unix epoch on the emulated clock. State is settled
//! lazily: every request first calls [`Model::settle`], which resolves redriven/started
//! executions whose run time has elapsed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::arn;
use super::config::{ReplayMode, TokenScope};
use super::events::{Emitter, SfnStatusChange};
use super::scenario::{
    ExecutionSpec, GenerateSpec, Outcome, Scenario, ScenarioError, StateMachineSpec,
    StateMachineStatus, StateMachineType,
};

/// Milliseconds since the Unix epoch (emulated clock).
pub(crate) type Ms = i64;
pub(crate) const SEC: Ms = 1000;
pub(crate) const MIN: Ms = 60 * SEC;
pub(crate) const HOUR: Ms = 60 * MIN;
pub(crate) const DAY: Ms = 24 * HOUR;
/// 2023-11-15T00:00:00Z, launch of RedriveExecution.
pub(crate) const LAUNCH_MS: Ms = 1_700_006_400_000;
pub(crate) const REDRIVABLE_PERIOD: Ms = 14 * DAY;
pub(crate) const MAX_EXECUTION_TIME: Ms = 365 * DAY;
pub(crate) const HISTORY_REDRIVE_LIMIT: u32 = 24_999;
pub(crate) const TOKEN_TTL: Ms = 15 * MIN;
pub(crate) const TOKENS_KEPT: usize = 10;
pub(crate) const MAP_RUN_REDRIVE_LIMIT: u32 = 1000;
/// Scenario limits (AWS caps history at 25,000 events).
const MAX_HISTORY: u32 = 25_000;
const MAX_SEEDED_REDRIVES: u32 = 4_000;

/// Documented `redriveStatusReason` strings (api-facts §1.3).
pub mod reasons {
    /// State machine being deleted.
    pub const DELETING: &str = "State machine is in DELETING status";
    /// Execution still running.
    pub const RUNNING: &str = "Execution is RUNNING and cannot be redriven";
    /// Execution succeeded.
    pub const SUCCEEDED: &str = "Execution is SUCCEEDED and cannot be redriven";
    /// Started before 2023-11-15.
    pub const BEFORE_LAUNCH: &str = "Execution was started before the launch of RedriveExecution";
    /// History ≥ 24,999 events.
    pub const HISTORY_LIMIT: &str = "Execution history event limit exceeded";
    /// Started more than a year ago.
    pub const MAX_TIME: &str = "Execution has exceeded the max execution time";
    /// Stopped more than 14 days ago.
    pub const PERIOD: &str = "Execution redrivable period exceeded";
    /// Emulator message when RedriveExecution targets a Map Run child (REDRIVABLE_BY_MAP_RUN).
    pub const BY_MAP_RUN: &str = "Execution is a Map Run child execution and can only be redriven by redriving its parent execution";
}

/// Execution status (wire names via [`ExecutionStatus::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    /// Running (also after a redrive).
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Timed out.
    TimedOut,
    /// Aborted.
    Aborted,
    /// Map Run child queued for redrive.
    PendingRedrive,
}

impl ExecutionStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
            ExecutionStatus::PendingRedrive => "PENDING_REDRIVE",
        }
    }
    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RUNNING" => ExecutionStatus::Running,
            "SUCCEEDED" => ExecutionStatus::Succeeded,
            "FAILED" => ExecutionStatus::Failed,
            "TIMED_OUT" => ExecutionStatus::TimedOut,
            "ABORTED" => ExecutionStatus::Aborted,
            "PENDING_REDRIVE" => ExecutionStatus::PendingRedrive,
            _ => return None,
        })
    }
    fn of(o: &Outcome) -> Self {
        match o {
            Outcome::Succeed { .. } => ExecutionStatus::Succeeded,
            Outcome::Fail { .. } => ExecutionStatus::Failed,
            Outcome::TimedOut { .. } => ExecutionStatus::TimedOut,
            Outcome::Aborted { .. } => ExecutionStatus::Aborted,
            Outcome::Running => ExecutionStatus::Running,
        }
    }
    /// FAILED, TIMED_OUT or ABORTED.
    pub fn is_unsuccessful(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted
        )
    }
}

/// `redriveStatus` of DescribeExecution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedriveStatus {
    /// Can be redriven with RedriveExecution.
    Redrivable,
    /// Cannot; see the reason.
    NotRedrivable,
    /// Distributed Map child: redrive the parent instead.
    RedrivableByMapRun,
}

impl RedriveStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RedriveStatus::Redrivable => "REDRIVABLE",
            RedriveStatus::NotRedrivable => "NOT_REDRIVABLE",
            RedriveStatus::RedrivableByMapRun => "REDRIVABLE_BY_MAP_RUN",
        }
    }
}

/// One attempt (the original run or a redrive) in an execution's synthetic history.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub start: Ms,
    pub first_id: u32,
    pub events: u32,
    pub stop: Option<Ms>,
    pub end: Option<Arc<Outcome>>,
    /// 0 for the original run, else the redriveCount this redrive produced.
    pub redrive_count: u32,
    /// Map Run redriven as part of this attempt (adds a `MapRunRedriven` event at offset 1).
    pub map_run: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct TokenRec {
    pub token: Box<str>,
    pub first_use: Ms,
    pub redrive_date: Ms,
}

#[derive(Debug)]
pub(crate) struct Execution {
    pub sm: u32,
    pub map_run: Option<u32>,
    pub name: Box<str>,
    pub input: Arc<str>,
    pub script: Arc<[Arc<Outcome>]>,
    pub script_pos: u32,
    /// Outcome that overrides the script for the pending attempt (Map Run redrive limit).
    pub pending_override: Option<Arc<Outcome>>,
    pub status: ExecutionStatus,
    pub start: Ms,
    pub stop: Option<Ms>,
    pub redrive_count: u32,
    pub redrive_date: Option<Ms>,
    pub attempts: Vec<Attempt>,
    pub history_len: u32,
    pub tokens: Vec<TokenRec>,
    pub resolve_at: Option<Ms>,
    pub generation: u32,
    pub redrive_run_time: Option<Ms>,
}

impl Execution {
    /// Outcome of the latest finished attempt.
    pub fn current_outcome(&self) -> Option<&Arc<Outcome>> {
        self.attempts.last().and_then(|a| a.end.as_ref())
    }
}

#[derive(Debug)]
pub(crate) struct StateMachine {
    /// `name` or `name/label`.
    pub name: String,
    pub arn: String,
    pub kind: StateMachineType,
    pub status: StateMachineStatus,
    pub tags: Vec<(String, String)>,
    pub definition: String,
    pub role_arn: String,
    pub description: Option<String>,
    pub created: Ms,
    /// Labelled (Distributed Map) pseudo state machine: index of the real one.
    pub parent: Option<u32>,
    pub label: Option<String>,
    /// Executions, newest first (startDate desc, id desc).
    pub index: Vec<u32>,
    pub by_name: HashMap<Box<str>, u32>,
    pub redrive_run_time: Option<Ms>,
    pub start_outcomes: Option<Arc<[Arc<Outcome>]>>,
    pub express_started: u64,
    pub revision: u32,
}

#[derive(Debug)]
pub(crate) struct MapRun {
    pub arn: String,
    pub parent_exec: u32,
    /// Children, newest first.
    pub children: Vec<u32>,
    pub redrive_count: u32,
    pub redrive_date: Option<Ms>,
    pub start: Ms,
}

/// Result of a redrive attempt in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedriveResult {
    Redriven(Ms),
    Replayed(Ms),
    NotRedrivable(&'static str),
    LimitExceeded,
    TokenConflict,
}

/// Public, owned view of one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSnapshot {
    /// Execution ARN.
    pub execution_arn: String,
    /// State machine ARN (labelled for Map Run children).
    pub state_machine_arn: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: ExecutionStatus,
    /// Start.
    pub start_date: jiff::Timestamp,
    /// Stop (None while running).
    pub stop_date: Option<jiff::Timestamp>,
    /// Error of the latest stop.
    pub error: Option<String>,
    /// Cause of the latest stop.
    pub cause: Option<String>,
    /// Successful redrives so far.
    pub redrive_count: u32,
    /// Latest redrive.
    pub redrive_date: Option<jiff::Timestamp>,
    /// Redrive status as DescribeExecution reports it.
    pub redrive_status: RedriveStatus,
    /// Reason when NOT_REDRIVABLE.
    pub redrive_status_reason: Option<String>,
    /// Number of history events.
    pub history_events: u32,
    /// Map Run that dispatched it.
    pub map_run_arn: Option<String>,
    /// When a running attempt will take its next outcome (None = no scheduled change).
    pub resolves_at: Option<jiff::Timestamp>,
}

pub(crate) fn ts(ms: Ms) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms.clamp(-377_705_116_800_000, 253_402_207_199_999))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The model itself.
#[derive(Debug)]
pub(crate) struct Model {
    pub region: String,
    pub account: String,
    pub partition: &'static str,
    pub sms: Vec<StateMachine>,
    pub sm_by_name: HashMap<String, u32>,
    pub execs: Vec<Execution>,
    pub map_runs: Vec<MapRun>,
    pub map_run_by_arn: HashMap<String, u32>,
    heap: BinaryHeap<Reverse<(Ms, u32, u32)>>,
    pub open: u64,
    pub default_redrive_run_time: Ms,
    pub default_start_outcomes: Arc<[Arc<Outcome>]>,
    pub replay: ReplayMode,
    pub token_scope: TokenScope,
    pub max_open: u64,
    /// token → (execution, first use), only maintained for `TokenScope::RejectCrossExecution`.
    global_tokens: HashMap<Box<str>, (u32, Ms)>,
    pub redrives: u64,
    /// Status-change events (disabled unless the emulator publishes to EventBridge).
    pub events: Emitter,
}

fn script_of(outcomes: &[Outcome]) -> Arc<[Arc<Outcome>]> {
    if outcomes.is_empty() {
        Arc::from(vec![Arc::new(Outcome::fail("States.TaskFailed"))])
    } else {
        outcomes.iter().cloned().map(Arc::new).collect()
    }
}

fn default_definition() -> String {
    r#"{"Comment":"emulated","StartAt":"Work","States":{"Work":{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}}}"#.to_string()
}

impl Model {
    pub fn new(
        region: &str,
        account: &str,
        replay: ReplayMode,
        token_scope: TokenScope,
        max_open: u64,
    ) -> Self {
        Model {
            region: region.to_string(),
            account: account.to_string(),
            partition: arn::partition(region),
            sms: Vec::new(),
            sm_by_name: HashMap::new(),
            execs: Vec::new(),
            map_runs: Vec::new(),
            map_run_by_arn: HashMap::new(),
            heap: BinaryHeap::new(),
            open: 0,
            default_redrive_run_time: 0,
            default_start_outcomes: script_of(&[Outcome::succeed()]),
            replay,
            token_scope,
            max_open,
            global_tokens: HashMap::new(),
            redrives: 0,
            events: Emitter::default(),
        }
    }

    fn prefix(&self) -> String {
        format!(
            "arn:{}:states:{}:{}",
            self.partition, self.region, self.account
        )
    }

    pub fn sm_arn(&self, name: &str) -> String {
        format!("{}:stateMachine:{name}", self.prefix())
    }

    pub fn exec_arn(&self, e: u32) -> String {
        let x = &self.execs[e as usize];
        format!(
            "{}:execution:{}:{}",
            self.prefix(),
            self.sms[x.sm as usize].name,
            x.name
        )
    }

    /// True if the ARN is for our region/account.
    pub fn is_local(&self, a: &arn::Arn<'_>) -> bool {
        a.region == self.region && a.account == self.account
    }

    pub fn find_sm(&self, name: &str) -> Option<u32> {
        self.sm_by_name.get(name).copied()
    }

    pub fn find_exec(&self, sm: &str, name: &str) -> Option<u32> {
        let s = self.find_sm(sm)?;
        self.sms[s as usize].by_name.get(name).copied()
    }

    /// Base (unlabelled) state machine of `sm`.
    pub fn base_sm(&self, sm: u32) -> u32 {
        self.sms[sm as usize].parent.unwrap_or(sm)
    }

    // ----------------------------------------------------------------------------------------
    // Seeding

    /// Seed a scenario (atomic: validated first). Returns the number of executions added.
    pub fn seed(&mut self, sc: &Scenario, now: Ms) -> Result<u64, ScenarioError> {
        self.validate(sc)?;
        self.default_redrive_run_time = sc.defaults.redrive_run_time.as_ms();
        if !sc.defaults.start_outcomes.is_empty() {
            self.default_start_outcomes = script_of(&sc.defaults.start_outcomes);
        }
        let before = self.execs.len();
        let mut touched: HashSet<u32> = HashSet::new();
        for spec in &sc.state_machines {
            let sm = self.upsert_sm(spec, now);
            touched.insert(sm);
            for e in &spec.executions {
                self.seed_exec(sm, None, e, &sc.defaults, now);
            }
            for g in &spec.generate {
                self.seed_generated(sm, None, g, &sc.defaults, now);
            }
            for m in &spec.map_runs {
                let label_name = format!("{}/{}", spec.name, m.label);
                let lsm = match self.find_sm(&label_name) {
                    Some(l) => l,
                    None => self.add_labelled_sm(sm, &m.label),
                };
                touched.insert(lsm);
                let parent = self
                    .find_exec(&spec.name, &m.parent_execution)
                    .ok_or_else(|| {
                        ScenarioError::Invalid(format!(
                            "map run {}: parent execution {} not found",
                            m.label, m.parent_execution
                        ))
                    })?;
                let id = m.id.clone().unwrap_or_else(|| {
                    let h = sha2_hex(&format!("{}/{}/{}", spec.name, m.label, m.parent_execution));
                    format!(
                        "{}-{}-{}-{}-{}",
                        &h[0..8],
                        &h[8..12],
                        &h[12..16],
                        &h[16..20],
                        &h[20..32]
                    )
                });
                let mr_arn = format!("{}:mapRun:{}:{}", self.prefix(), label_name, id);
                if self.map_run_by_arn.contains_key(&mr_arn) {
                    return Err(ScenarioError::Invalid(format!(
                        "duplicate map run {mr_arn}"
                    )));
                }
                let mr = self.map_runs.len() as u32;
                let pstart = self.execs[parent as usize].start;
                self.map_runs.push(MapRun {
                    arn: mr_arn.clone(),
                    parent_exec: parent,
                    children: Vec::new(),
                    redrive_count: m.redrive_count,
                    redrive_date: None,
                    start: pstart,
                });
                self.map_run_by_arn.insert(mr_arn, mr);
                for e in &m.executions {
                    self.seed_exec(lsm, Some(mr), e, &sc.defaults, now);
                }
                for g in &m.generate {
                    self.seed_generated(lsm, Some(mr), g, &sc.defaults, now);
                }
            }
        }
        for sm in touched {
            self.sort_index(sm);
        }
        for mr in 0..self.map_runs.len() {
            let mut c = std::mem::take(&mut self.map_runs[mr].children);
            self.sort_ids(&mut c);
            self.map_runs[mr].children = c;
        }
        Ok((self.execs.len() - before) as u64)
    }

    fn validate(&self, sc: &Scenario) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        let mut sm_names = HashSet::new();
        for sm in &sc.state_machines {
            if !arn::valid_name(&sm.name) {
                return bad(format!("invalid state machine name '{}'", sm.name));
            }
            if !sm_names.insert(sm.name.as_str()) {
                return bad(format!("state machine '{}' listed twice", sm.name));
            }
            if let Some(existing) = self.find_sm(&sm.name)
                && self.sms[existing as usize].kind != sm.kind
            {
                return bad(format!(
                    "state machine '{}' already exists with another type",
                    sm.name
                ));
            }
            if sm.kind == StateMachineType::Express
                && (!sm.executions.is_empty() || !sm.generate.is_empty() || !sm.map_runs.is_empty())
            {
                return bad(format!(
                    "EXPRESS state machine '{}' cannot have seeded executions (they are not describable)",
                    sm.name
                ));
            }
            let limits = |name: &str, redrives: u32, history: Option<u32>| {
                if redrives > MAX_SEEDED_REDRIVES || history.is_some_and(|h| h > MAX_HISTORY) {
                    return Err(ScenarioError::Invalid(format!(
                        "{name}: redriveCount must be <= {MAX_SEEDED_REDRIVES} and historyEvents <= {MAX_HISTORY}"
                    )));
                }
                Ok(())
            };
            let check_group = |sm_key: &str,
                               execs: &[ExecutionSpec],
                               gens: &[GenerateSpec]|
             -> Result<(), ScenarioError> {
                let mut names: HashSet<String> = HashSet::new();
                let existing = self.find_sm(sm_key).map(|i| &self.sms[i as usize].by_name);
                let mut add = |n: String| -> Result<(), ScenarioError> {
                    if !arn::valid_name(&n) {
                        return Err(ScenarioError::Invalid(format!(
                            "invalid execution name '{n}' in {sm_key}"
                        )));
                    }
                    if existing.is_some_and(|m| m.contains_key(n.as_str()))
                        || !names.insert(n.clone())
                    {
                        return Err(ScenarioError::Invalid(format!(
                            "duplicate execution name '{n}' in {sm_key}"
                        )));
                    }
                    Ok(())
                };
                for e in execs {
                    add(e.name.clone())?;
                    limits(&e.name, e.redrive_count, e.history_events)?;
                }
                for g in gens {
                    limits(&g.name_prefix, g.redrive_count, g.history_events)?;
                    if g.count > 10_000_000 {
                        return Err(ScenarioError::Invalid("generate.count too large".into()));
                    }
                    for i in 0..g.count {
                        add(gen_name(&g.name_prefix, i))?;
                    }
                }
                Ok(())
            };
            check_group(&sm.name, &sm.executions, &sm.generate)?;
            let mut labels = HashSet::new();
            for m in &sm.map_runs {
                if !arn::valid_name(&m.label) {
                    return bad(format!("invalid map run label '{}'", m.label));
                }
                if !sm.executions.iter().any(|e| e.name == m.parent_execution)
                    && self.find_exec(&sm.name, &m.parent_execution).is_none()
                {
                    return bad(format!(
                        "map run '{}': parent execution '{}' not found in '{}'",
                        m.label, m.parent_execution, sm.name
                    ));
                }
                // Children of several map runs with the same label share one name space.
                if labels.insert(m.label.as_str()) {
                    let all_execs: Vec<ExecutionSpec> = sm
                        .map_runs
                        .iter()
                        .filter(|o| o.label == m.label)
                        .flat_map(|o| o.executions.iter().cloned())
                        .collect();
                    let all_gens: Vec<GenerateSpec> = sm
                        .map_runs
                        .iter()
                        .filter(|o| o.label == m.label)
                        .flat_map(|o| o.generate.iter().cloned())
                        .collect();
                    check_group(&format!("{}/{}", sm.name, m.label), &all_execs, &all_gens)?;
                }
            }
        }
        Ok(())
    }

    /// CreateStateMachine (caller checked it does not exist).
    pub fn create_sm(&mut self, spec: &StateMachineSpec, now: Ms) -> u32 {
        self.upsert_sm(spec, now)
    }

    fn upsert_sm(&mut self, spec: &StateMachineSpec, now: Ms) -> u32 {
        if let Some(i) = self.find_sm(&spec.name) {
            let sm = &mut self.sms[i as usize];
            for (k, v) in &spec.tags {
                match sm.tags.iter_mut().find(|(tk, _)| tk == k) {
                    Some(t) => t.1 = v.clone(),
                    None => sm.tags.push((k.clone(), v.clone())),
                }
            }
            sm.status = spec.status;
            if let Some(r) = spec.redrive_run_time {
                sm.redrive_run_time = Some(r.as_ms());
            }
            if !spec.start_outcomes.is_empty() {
                sm.start_outcomes = Some(script_of(&spec.start_outcomes));
            }
            return i;
        }
        let arn = self.sm_arn(&spec.name);
        let created = now.saturating_sub(spec.created_ago.map_or(90 * DAY, |d| d.as_ms()));
        let role = spec.role_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:{}:iam::{}:role/service-role/StepFunctions-{}-role",
                self.partition, self.account, spec.name
            )
        });
        let i = self.sms.len() as u32;
        self.sms.push(StateMachine {
            name: spec.name.clone(),
            arn,
            kind: spec.kind,
            status: spec.status,
            tags: spec
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            definition: spec.definition.clone().unwrap_or_else(default_definition),
            role_arn: role,
            description: spec.description.clone(),
            created,
            parent: None,
            label: None,
            index: Vec::new(),
            by_name: HashMap::new(),
            redrive_run_time: spec.redrive_run_time.map(|d| d.as_ms()),
            start_outcomes: (!spec.start_outcomes.is_empty())
                .then(|| script_of(&spec.start_outcomes)),
            express_started: 0,
            revision: 1,
        });
        self.sm_by_name.insert(spec.name.clone(), i);
        i
    }

    fn add_labelled_sm(&mut self, parent: u32, label: &str) -> u32 {
        let p = &self.sms[parent as usize];
        let name = format!("{}/{}", p.name, label);
        let sm = StateMachine {
            arn: self.sm_arn(&name),
            name: name.clone(),
            kind: StateMachineType::Standard,
            status: p.status,
            tags: Vec::new(),
            definition: format!(
                r#"{{"StartAt":"{label}Item","States":{{"{label}Item":{{"Type":"Task","Resource":"arn:aws:states:::lambda:invoke","End":true}}}}}}"#
            ),
            role_arn: p.role_arn.clone(),
            description: None,
            created: p.created,
            parent: Some(parent),
            label: Some(label.to_string()),
            index: Vec::new(),
            by_name: HashMap::new(),
            redrive_run_time: p.redrive_run_time,
            start_outcomes: None,
            express_started: 0,
            revision: 1,
        };
        let i = self.sms.len() as u32;
        self.sms.push(sm);
        self.sm_by_name.insert(name, i);
        i
    }

    fn seed_generated(
        &mut self,
        sm: u32,
        map_run: Option<u32>,
        g: &GenerateSpec,
        d: &super::scenario::ScenarioDefaults,
        now: Ms,
    ) {
        let script = script_of(&g.outcomes);
        let input: Arc<str> = Arc::from(g.input.clone().unwrap_or_else(|| "{}".to_string()));
        let newest = now.saturating_sub(g.started_ago.unwrap_or(d.started_ago).as_ms());
        let every = g.every.as_ms();
        let run = g.run_time.unwrap_or(d.run_time).as_ms();
        for i in 0..g.count {
            let start = newest.saturating_sub(every.saturating_mul(i64::from(i)));
            let stop = start.saturating_add(run).min(now).max(start);
            let e = SeedExec {
                name: gen_name(&g.name_prefix, i),
                script: script.clone(),
                input: input.clone(),
                start,
                stop,
                finishes_at: None,
                redrive_count: g.redrive_count,
                redrive_date: None,
                history_events: g.history_events,
                redrive_run_time: g.redrive_run_time.map(|d| d.as_ms()),
            };
            self.insert_seeded(sm, map_run, e, now);
        }
    }

    fn seed_exec(
        &mut self,
        sm: u32,
        map_run: Option<u32>,
        spec: &ExecutionSpec,
        d: &super::scenario::ScenarioDefaults,
        now: Ms,
    ) {
        let start = match spec.started_at {
            Some(t) => t.as_millisecond(),
            None => now.saturating_sub(spec.started_ago.unwrap_or(d.started_ago).as_ms()),
        };
        let stop = match (spec.stopped_at, spec.stopped_ago) {
            (Some(t), _) => t.as_millisecond(),
            (None, Some(a)) => now.saturating_sub(a.as_ms()),
            (None, None) => start
                .saturating_add(spec.run_time.unwrap_or(d.run_time).as_ms())
                .min(now),
        }
        .max(start);
        let e = SeedExec {
            name: spec.name.clone(),
            script: script_of(&spec.outcomes),
            input: Arc::from(spec.input.clone().unwrap_or_else(|| "{}".to_string())),
            start,
            stop,
            finishes_at: spec.finishes_in.map(|f| now.saturating_add(f.as_ms())),
            redrive_count: spec.redrive_count,
            redrive_date: spec.redriven_ago.map(|a| now.saturating_sub(a.as_ms())),
            history_events: spec.history_events,
            redrive_run_time: spec.redrive_run_time.map(|d| d.as_ms()),
        };
        self.insert_seeded(sm, map_run, e, now);
    }

    fn insert_seeded(&mut self, sm: u32, map_run: Option<u32>, s: SeedExec, now: Ms) {
        let first = s.script[0].clone();
        let running = matches!(*first, Outcome::Running);
        let n = s.redrive_count;
        // Attempt boundaries: original run then `n` redrives spread over [start, end].
        let end = if running { now.max(s.start) } else { s.stop };
        let last_start = match s.redrive_date {
            Some(r) if n > 0 => r.clamp(s.start, end),
            _ if n > 0 => frac(s.start, end, n, n + 1),
            _ => s.start,
        };
        let prior_end: Arc<Outcome> = if first.status() != "SUCCEEDED" && !running {
            first.clone()
        } else {
            Arc::new(Outcome::fail("States.TaskFailed"))
        };
        let last_events: u32 = if running { 3 } else { 6 };
        let per_redrive: u32 = 6;
        let total_default =
            7 + per_redrive * n.saturating_sub(1) + if n > 0 { last_events } else { 0 };
        let total_default = if n == 0 && running { 3 } else { total_default };
        let total = s
            .history_events
            .unwrap_or(total_default)
            .max(if running { 1 } else { 2 });
        let others = if n == 0 {
            0
        } else {
            per_redrive * (n - 1) + last_events
        };
        let initial_events =
            total
                .saturating_sub(others)
                .max(if n == 0 && running { 1 } else { 2 });

        let mut attempts = Vec::with_capacity(1 + n as usize);
        let mut next_id = 1u32;
        for k in 0..=n {
            let a_start = if k == 0 {
                s.start
            } else if k == n {
                last_start
            } else {
                frac(s.start, last_start, k, n)
            };
            let is_last = k == n;
            let events = if k == 0 {
                initial_events
            } else if is_last {
                last_events
            } else {
                per_redrive
            };
            let (stop, end_o) = if is_last {
                if running {
                    (None, None)
                } else {
                    (Some(s.stop.max(a_start)), Some(first.clone()))
                }
            } else {
                let next_start = if k + 1 == n {
                    last_start
                } else {
                    frac(s.start, last_start, k + 1, n)
                };
                (Some(next_start.max(a_start)), Some(prior_end.clone()))
            };
            attempts.push(Attempt {
                start: a_start,
                first_id: next_id,
                events,
                stop,
                end: end_o,
                redrive_count: k,
                map_run: None,
            });
            next_id = next_id.saturating_add(events);
        }
        let status = ExecutionStatus::of(&first);
        let (script_pos, resolve_at) = match (running, s.finishes_at) {
            (true, Some(f)) => ((s.script.len().min(2) - 1) as u32, Some(f)),
            _ => (0, None),
        };
        let e = Execution {
            sm,
            map_run,
            name: s.name.clone().into_boxed_str(),
            input: s.input,
            script: s.script,
            script_pos,
            pending_override: None,
            status,
            start: s.start,
            stop: if running { None } else { Some(s.stop) },
            redrive_count: n,
            redrive_date: (n > 0).then_some(last_start),
            attempts,
            history_len: next_id - 1,
            tokens: Vec::new(),
            resolve_at,
            generation: 0,
            redrive_run_time: s.redrive_run_time,
        };
        let id = self.execs.len() as u32;
        if status == ExecutionStatus::Running {
            self.open += 1;
        }
        if let Some(r) = resolve_at {
            self.heap.push(Reverse((r, id, 0)));
        }
        self.execs.push(e);
        let smr = &mut self.sms[sm as usize];
        smr.index.push(id);
        smr.by_name.insert(s.name.into_boxed_str(), id);
        if let Some(mr) = map_run {
            self.map_runs[mr as usize].children.push(id);
        }
    }

    fn sort_ids(&self, ids: &mut [u32]) {
        ids.sort_unstable_by(|&a, &b| {
            (self.execs[b as usize].start, b).cmp(&(self.execs[a as usize].start, a))
        });
    }

    fn sort_index(&mut self, sm: u32) {
        let mut idx = std::mem::take(&mut self.sms[sm as usize].index);
        self.sort_ids(&mut idx);
        self.sms[sm as usize].index = idx;
    }

    // ----------------------------------------------------------------------------------------
    // Time

    /// Resolve every running attempt whose run time has elapsed by `now`.
    pub fn settle(&mut self, now: Ms) {
        while let Some(Reverse((at, id, generation))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let e = &self.execs[id as usize];
            if e.generation != generation || e.status != ExecutionStatus::Running {
                continue;
            }
            let outcome = e
                .pending_override
                .clone()
                .unwrap_or_else(|| e.script[e.script_pos as usize].clone());
            self.finish(id, at, outcome);
        }
    }

    fn finish(&mut self, id: u32, at: Ms, outcome: Arc<Outcome>) {
        let e = &mut self.execs[id as usize];
        e.resolve_at = None;
        e.pending_override = None;
        if matches!(*outcome, Outcome::Running) {
            return;
        }
        e.status = ExecutionStatus::of(&outcome);
        let at = at.max(e.attempts.last().map_or(e.start, |a| a.start));
        e.stop = Some(at);
        if let Some(a) = e.attempts.last_mut() {
            a.stop = Some(at);
            a.end = Some(outcome);
            a.events += 3;
        }
        e.history_len = e.history_len.saturating_add(3);
        self.open = self.open.saturating_sub(1);
        self.emit_status(id, at);
    }

    /// Publish the execution's status as it is now (called once per transition: start,
    /// redrive, stop). STANDARD executions only, as AWS documents (api-facts §1.10).
    fn emit_status(&self, id: u32, at: Ms) {
        if !self.events.enabled() {
            return;
        }
        let e = &self.execs[id as usize];
        if self.sms[self.base_sm(e.sm) as usize].kind != StateMachineType::Standard {
            return;
        }
        let (redrive_status, reason) = self.redrive_status(id, at);
        let o = if e.status != ExecutionStatus::Running {
            e.current_outcome()
        } else {
            None
        };
        let output = match o.map(|o| &**o) {
            Some(Outcome::Succeed { output }) => {
                Some(output.as_deref().unwrap_or("{}").to_string())
            }
            _ => None,
        };
        let change = SfnStatusChange {
            execution_arn: self.exec_arn(id),
            state_machine_arn: self.sms[e.sm as usize].arn.clone(),
            name: e.name.to_string(),
            status: e.status,
            start_date: e.start,
            stop_date: e.stop,
            input: e.input.to_string(),
            output,
            redrive_count: e.redrive_count,
            redrive_date: e.redrive_date,
            redrive_status,
            redrive_status_reason: reason.map(str::to_string),
            error: o.and_then(|o| o.error()).map(str::to_string),
            cause: o.and_then(|o| o.cause()).map(str::to_string),
        };
        self.events.emit(change.event(at));
    }

    /// Force a RUNNING execution to FAILED now. False if not running.
    pub fn force_fail(&mut self, id: u32, error: &str, cause: &str, now: Ms) -> bool {
        let e = &mut self.execs[id as usize];
        if e.status != ExecutionStatus::Running {
            return false;
        }
        e.generation = e.generation.wrapping_add(1);
        self.finish(id, now, Arc::new(Outcome::fail_with(error, cause)));
        true
    }

    // ----------------------------------------------------------------------------------------
    // Redrive

    /// Redrive status and reason as DescribeExecution reports them.
    pub fn redrive_status(&self, id: u32, now: Ms) -> (RedriveStatus, Option<&'static str>) {
        let e = &self.execs[id as usize];
        let base = &self.sms[self.base_sm(e.sm) as usize];
        let not = |r| (RedriveStatus::NotRedrivable, Some(r));
        if base.status == StateMachineStatus::Deleting {
            return not(reasons::DELETING);
        }
        match e.status {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => {
                return not(reasons::RUNNING);
            }
            ExecutionStatus::Succeeded => return not(reasons::SUCCEEDED),
            _ => {}
        }
        if e.start < LAUNCH_MS {
            return not(reasons::BEFORE_LAUNCH);
        }
        if e.history_len >= HISTORY_REDRIVE_LIMIT {
            return not(reasons::HISTORY_LIMIT);
        }
        if now.saturating_sub(e.start) > MAX_EXECUTION_TIME {
            return not(reasons::MAX_TIME);
        }
        if now.saturating_sub(e.stop.unwrap_or(now)) > REDRIVABLE_PERIOD {
            return not(reasons::PERIOD);
        }
        if e.map_run.is_some() {
            return (RedriveStatus::RedrivableByMapRun, None);
        }
        (RedriveStatus::Redrivable, None)
    }

    /// RedriveExecution on an existing STANDARD execution (validation and lookup done).
    pub fn redrive(&mut self, id: u32, token: Option<&str>, now: Ms) -> RedriveResult {
        if let Some(tok) = token {
            let replay = self.replay;
            let e = &mut self.execs[id as usize];
            e.tokens
                .retain(|t| now.saturating_sub(t.first_use) < TOKEN_TTL);
            if let Some(t) = e.tokens.iter().find(|t| &*t.token == tok) {
                return RedriveResult::Replayed(match replay {
                    ReplayMode::OriginalRedriveDate => t.redrive_date,
                    ReplayMode::LatestRedriveDate => e.redrive_date.unwrap_or(t.redrive_date),
                });
            }
            if self.token_scope == TokenScope::RejectCrossExecution {
                self.global_tokens
                    .retain(|_, (_, first)| now.saturating_sub(*first) < TOKEN_TTL);
                if let Some((other, _)) = self.global_tokens.get(tok)
                    && *other != id
                {
                    return RedriveResult::TokenConflict;
                }
            }
        }
        match self.redrive_status(id, now) {
            (RedriveStatus::NotRedrivable, reason) => {
                return RedriveResult::NotRedrivable(reason.unwrap_or(reasons::RUNNING));
            }
            (RedriveStatus::RedrivableByMapRun, _) => {
                return RedriveResult::NotRedrivable(reasons::BY_MAP_RUN);
            }
            (RedriveStatus::Redrivable, _) => {}
        }
        if self.open >= self.max_open {
            return RedriveResult::LimitExceeded;
        }
        self.apply_redrive(id, now);
        // Redrive failed/aborted Map Runs dispatched by this execution.
        let mrs: Vec<u32> = (0..self.map_runs.len() as u32)
            .filter(|&m| self.map_runs[m as usize].parent_exec == id)
            .collect();
        for m in mrs {
            let failed: Vec<u32> = self.map_runs[m as usize]
                .children
                .iter()
                .copied()
                .filter(|&c| self.execs[c as usize].status.is_unsuccessful())
                .collect();
            if failed.is_empty() {
                continue;
            }
            let mr = &mut self.map_runs[m as usize];
            mr.redrive_count += 1;
            mr.redrive_date = Some(now);
            let over = mr.redrive_count > MAP_RUN_REDRIVE_LIMIT;
            let e = &mut self.execs[id as usize];
            if let Some(a) = e.attempts.last_mut()
                && a.map_run.is_none()
            {
                a.map_run = Some(m);
                a.events += 1;
                e.history_len += 1;
            }
            if over {
                e.pending_override = Some(Arc::new(Outcome::fail_with(
                    "States.Runtime",
                    "Map Run redrive limit of 1000 exceeded",
                )));
                continue;
            }
            for c in failed {
                self.apply_redrive(c, now);
            }
        }
        if let Some(tok) = token {
            let e = &mut self.execs[id as usize];
            e.tokens.push(TokenRec {
                token: tok.into(),
                first_use: now,
                redrive_date: now,
            });
            if e.tokens.len() > TOKENS_KEPT {
                e.tokens.remove(0);
            }
            if self.token_scope == TokenScope::RejectCrossExecution {
                self.global_tokens.insert(tok.into(), (id, now));
            }
        }
        self.redrives += 1;
        RedriveResult::Redriven(now)
    }

    fn run_time(&self, id: u32) -> Ms {
        let e = &self.execs[id as usize];
        let sm = &self.sms[e.sm as usize];
        let base = &self.sms[self.base_sm(e.sm) as usize];
        e.redrive_run_time
            .or(sm.redrive_run_time)
            .or(base.redrive_run_time)
            .unwrap_or(self.default_redrive_run_time)
    }

    fn apply_redrive(&mut self, id: u32, now: Ms) {
        let run = self.run_time(id);
        let e = &mut self.execs[id as usize];
        e.status = ExecutionStatus::Running;
        e.redrive_count += 1;
        e.redrive_date = Some(now);
        e.stop = None;
        e.pending_override = None;
        e.script_pos = (e.script_pos + 1).min(e.script.len() as u32 - 1);
        e.attempts.push(Attempt {
            start: now,
            first_id: e.history_len + 1,
            events: 3,
            stop: None,
            end: None,
            redrive_count: e.redrive_count,
            map_run: None,
        });
        e.history_len = e.history_len.saturating_add(3);
        e.generation = e.generation.wrapping_add(1);
        self.open += 1;
        if !matches!(*e.script[e.script_pos as usize], Outcome::Running) {
            let at = now.saturating_add(run);
            e.resolve_at = Some(at);
            self.heap.push(Reverse((at, id, e.generation)));
        } else {
            e.resolve_at = None;
        }
        self.emit_status(id, now);
    }

    /// Create an execution with StartExecution (STANDARD only).
    pub fn start_execution(&mut self, sm: u32, name: &str, input: &str, now: Ms) -> u32 {
        let script = self.sms[sm as usize]
            .start_outcomes
            .clone()
            .unwrap_or_else(|| self.default_start_outcomes.clone());
        let id = self.execs.len() as u32;
        let e = Execution {
            sm,
            map_run: None,
            name: name.into(),
            input: Arc::from(input),
            script,
            script_pos: 0,
            pending_override: None,
            status: ExecutionStatus::Running,
            start: now,
            stop: None,
            redrive_count: 0,
            redrive_date: None,
            attempts: vec![Attempt {
                start: now,
                first_id: 1,
                events: 3,
                stop: None,
                end: None,
                redrive_count: 0,
                map_run: None,
            }],
            history_len: 3,
            tokens: Vec::new(),
            resolve_at: None,
            generation: 0,
            redrive_run_time: None,
        };
        self.execs.push(e);
        self.open += 1;
        let run = self.run_time(id);
        let e = &mut self.execs[id as usize];
        if !matches!(*e.script[0], Outcome::Running) {
            let at = now.saturating_add(run);
            e.resolve_at = Some(at);
            self.heap.push(Reverse((at, id, 0)));
        }
        // Insert into the newest-first index.
        let execs = &self.execs;
        let smr = &mut self.sms[sm as usize];
        let key = (now, id);
        let pos = smr
            .index
            .partition_point(|&x| (execs[x as usize].start, x) > key);
        smr.index.insert(pos, id);
        smr.by_name.insert(name.into(), id);
        self.emit_status(id, now);
        id
    }

    // ----------------------------------------------------------------------------------------
    // Views

    pub fn snapshot(&self, id: u32, now: Ms) -> ExecutionSnapshot {
        let e = &self.execs[id as usize];
        let (rs, reason) = self.redrive_status(id, now);
        let stopped = e.status != ExecutionStatus::Running;
        let o = if stopped { e.current_outcome() } else { None };
        ExecutionSnapshot {
            execution_arn: self.exec_arn(id),
            state_machine_arn: self.sms[e.sm as usize].arn.clone(),
            name: e.name.to_string(),
            status: e.status,
            start_date: ts(e.start),
            stop_date: e.stop.map(ts),
            error: o.and_then(|o| o.error()).map(str::to_string),
            cause: o.and_then(|o| o.cause()).map(str::to_string),
            redrive_count: e.redrive_count,
            redrive_date: e.redrive_date.map(ts),
            redrive_status: rs,
            redrive_status_reason: reason.map(str::to_string),
            history_events: e.history_len,
            map_run_arn: e.map_run.map(|m| self.map_runs[m as usize].arn.clone()),
            resolves_at: e.resolve_at.map(ts),
        }
    }

    /// Look up an execution by ARN (STANDARD only).
    pub fn exec_by_arn(&self, s: &str) -> Option<u32> {
        let a = arn::parse(s).ok()?;
        if !self.is_local(&a) {
            return None;
        }
        match a.resource {
            arn::Resource::Execution { sm, name } => self.find_exec(sm, name),
            _ => None,
        }
    }
}

struct SeedExec {
    name: String,
    script: Arc<[Arc<Outcome>]>,
    input: Arc<str>,
    start: Ms,
    stop: Ms,
    finishes_at: Option<Ms>,
    redrive_count: u32,
    redrive_date: Option<Ms>,
    history_events: Option<u32>,
    redrive_run_time: Option<Ms>,
}

/// `a + (b - a) * num / den` without overflow.
fn frac(a: Ms, b: Ms, num: u32, den: u32) -> Ms {
    let v =
        i128::from(a) + (i128::from(b) - i128::from(a)) * i128::from(num) / i128::from(den.max(1));
    v.clamp(i128::from(Ms::MIN), i128::from(Ms::MAX)) as Ms
}

pub(crate) fn gen_name(prefix: &str, i: u32) -> String {
    format!("{prefix}{i:05}")
}

pub(crate) fn sha2_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(s.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}
