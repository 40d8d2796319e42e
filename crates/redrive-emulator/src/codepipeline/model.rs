//! The CodePipeline engine: pipelines, executions, stage runs and action runs on the emulated
//! clock.
//!
//! Like the Step Functions model, nothing runs in the background: every request first calls
//! [`Model::settle`], which processes due events (an action attempt finishing, a native
//! automatic retry starting) in time order, at their due time. Stage progression follows
//! api-facts §2 / §4.2; the choices on UNCONFIRMED points are listed in docs/emulator.md.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::declaration::Declaration;
use super::scenario::ActionOutcome;
use super::view::{
    ActionExecutionStatus, PipelineExecutionStatus, RetryTrigger, StageExecutionStatus,
};
use crate::config::CodePipelineConfig;
use crate::events::{Emitter, StageState, StageStateChange};
use crate::model::{Ms, SEC};

/// Default run time of an action attempt when neither the action nor the pipeline sets one.
pub(crate) const DEFAULT_ACTION_DURATION: Ms = 30 * SEC;

/// Script key: (stage name, action name).
pub(crate) type ActionKey = (String, String);
pub(crate) type Script = Arc<[ActionOutcome]>;

/// Everything needed to add a pipeline.
#[derive(Clone)]
pub(crate) struct PipelineSetup {
    pub decl: Declaration,
    pub tags: Vec<(String, String)>,
    pub created: Ms,
    pub scripts: HashMap<ActionKey, Script>,
    pub durations: HashMap<ActionKey, Ms>,
    pub action_duration: Ms,
    pub auto_retry_delay: Option<Ms>,
    pub max_concurrent: Option<u32>,
}

pub(crate) struct Pipeline {
    pub name: String,
    pub arn: String,
    /// Declarations by version (`versions[v - 1]`); the last one is current.
    pub versions: Vec<Arc<Declaration>>,
    pub created: Ms,
    pub updated: Ms,
    pub tags: Vec<(String, String)>,
    /// Executions, newest first (start desc, index desc).
    pub execs: Vec<u32>,
    pub exec_by_id: HashMap<String, u32>,
    /// Stage name → the execution that entered it last (GetPipelineState's `latestExecution`).
    pub latest_in_stage: HashMap<String, u32>,
    /// Stage name → the execution currently holding it (not kept in PARALLEL mode).
    pub occupant: HashMap<String, u32>,
    /// Stage name → executions waiting to enter it (at most one in SUPERSEDED mode).
    pub waiting: HashMap<String, VecDeque<u32>>,
    pub scripts: HashMap<ActionKey, Script>,
    pub durations: HashMap<ActionKey, Ms>,
    pub action_duration: Ms,
    pub auto_retry_delay: Option<Ms>,
    pub max_concurrent: Option<u32>,
    /// StartPipelineExecution `clientRequestToken` → execution.
    pub start_tokens: HashMap<String, u32>,
}

impl Pipeline {
    pub fn version(&self) -> u32 {
        self.versions.len() as u32
    }
    pub fn decl(&self) -> &Arc<Declaration> {
        &self.versions[self.versions.len() - 1]
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ActionExec {
    pub id: String,
    pub status: ActionExecutionStatus,
    pub last_change: Ms,
    pub due: Option<Ms>,
    pub pending: ActionOutcome,
    pub error: Option<(String, String)>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ActionRun {
    /// Attempts started in this pipeline execution.
    pub attempts: u32,
    pub latest: Option<ActionExec>,
    /// Must (re-)run when its run-order group comes up.
    pub needs_run: bool,
    pub generation: u32,
}

impl ActionRun {
    pub(super) fn status(&self) -> Option<ActionExecutionStatus> {
        self.latest.as_ref().map(|l| l.status)
    }
    pub(super) fn in_progress(&self) -> bool {
        self.status() == Some(ActionExecutionStatus::InProgress)
    }
    /// Failed in the current attempt of the stage (not already queued to re-run).
    pub(super) fn failed(&self) -> bool {
        !self.needs_run && self.status() == Some(ActionExecutionStatus::Failed)
    }
    pub(super) fn done_ok(&self) -> bool {
        !self.needs_run && self.status() == Some(ActionExecutionStatus::Succeeded)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StageRun {
    pub status: StageExecutionStatus,
    pub actions: Vec<ActionRun>,
    pub manual_retries: u32,
    pub auto_retries: u32,
    pub latest_trigger: Option<RetryTrigger>,
    /// A native automatic retry is due at this time.
    pub auto_retry_due: Option<Ms>,
    pub auto_generation: u32,
}

impl StageRun {
    pub(super) fn new(actions: usize) -> Self {
        StageRun {
            status: StageExecutionStatus::InProgress,
            actions: (0..actions)
                .map(|_| ActionRun {
                    needs_run: true,
                    ..Default::default()
                })
                .collect(),
            manual_retries: 0,
            auto_retries: 0,
            latest_trigger: None,
            auto_retry_due: None,
            auto_generation: 0,
        }
    }
    pub fn any_in_progress(&self) -> bool {
        self.actions.iter().any(ActionRun::in_progress)
    }
}

pub(crate) struct Execution {
    pub id: String,
    pub pipeline: u32,
    pub decl: Arc<Declaration>,
    pub version: u32,
    pub status: PipelineExecutionStatus,
    pub start: Ms,
    pub last_update: Ms,
    pub trigger_type: &'static str,
    pub trigger_detail: String,
    pub stop_reason: Option<String>,
    /// Per stage of `decl`: None until entered.
    pub stages: Vec<Option<StageRun>>,
    /// Index of the last stage entered.
    pub current: Option<usize>,
    /// Stage it waits to enter.
    pub waiting_for: Option<usize>,
    pub overrides: HashMap<ActionKey, Script>,
}

impl Execution {
    pub fn is_open(&self) -> bool {
        matches!(
            self.status,
            PipelineExecutionStatus::InProgress | PipelineExecutionStatus::Stopping
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    ActionDone {
        exec: u32,
        stage: u16,
        action: u16,
        generation: u32,
    },
    AutoRetry {
        exec: u32,
        stage: u16,
        generation: u32,
    },
}

/// Why RetryStageExecution is refused (code + message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

pub(super) fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Why StopPipelineExecution is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopRefusal {
    NotStoppable,
    Duplicated,
}

pub(crate) struct Model {
    pub region: String,
    pub account: String,
    pub partition: &'static str,
    pub pipelines: Vec<Pipeline>,
    pub by_name: HashMap<String, u32>,
    pub execs: Vec<Execution>,
    pub(super) heap: BinaryHeap<Reverse<(Ms, u64, Event)>>,
    seq: u64,
    rng: StdRng,
    pub config: CodePipelineConfig,
    pub manual_retries: u64,
    pub auto_retries: u64,
    /// Stage state-change events (disabled unless the emulator publishes to EventBridge).
    pub events: Emitter,
}

impl Model {
    pub fn new(region: &str, account: &str, seed: u64, config: CodePipelineConfig) -> Self {
        Model {
            region: region.to_string(),
            account: account.to_string(),
            partition: crate::arn::partition(region),
            pipelines: Vec::new(),
            by_name: HashMap::new(),
            execs: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed ^ 0xC0DE_919E),
            config,
            manual_retries: 0,
            auto_retries: 0,
            events: Emitter::default(),
        }
    }

    /// Publish a stage state change of execution `x` (called once per transition: enter,
    /// succeed, fail, retry, cancel).
    pub(super) fn emit_stage(&self, x: u32, s: usize, state: StageState, at: Ms) {
        if !self.events.enabled() {
            return;
        }
        let e = &self.execs[x as usize];
        let pl = &self.pipelines[e.pipeline as usize];
        let retries: u32 = e
            .stages
            .iter()
            .flatten()
            .map(|r| r.manual_retries + r.auto_retries)
            .sum();
        let change = StageStateChange {
            pipeline: pl.name.clone(),
            pipeline_arn: pl.arn.clone(),
            version: e.version,
            execution_id: e.id.clone(),
            start_time: e.start,
            stage: e.decl.stages[s].name.clone(),
            state,
            attempt: 1 + retries,
        };
        self.events.emit(change.event(at));
    }

    pub fn pipeline_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:codepipeline:{}:{}:{name}",
            self.partition, self.region, self.account
        )
    }

    pub fn find(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }

    pub fn find_exec(&self, p: u32, id: &str) -> Option<u32> {
        self.pipelines[p as usize].exec_by_id.get(id).copied()
    }

    /// A random lowercase v4 UUID from the seeded RNG (deterministic per seed and call order).
    pub fn uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }

    pub(super) fn push(&mut self, at: Ms, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, e)));
    }

    // ----------------------------------------------------------------------------------------
    // Pipelines

    /// Add a pipeline (caller checked the name is free).
    pub fn add_pipeline(&mut self, setup: PipelineSetup) -> u32 {
        let i = self.pipelines.len() as u32;
        let name = setup.decl.name.clone();
        self.pipelines.push(Pipeline {
            arn: self.pipeline_arn(&name),
            name: name.clone(),
            versions: vec![Arc::new(setup.decl)],
            created: setup.created,
            updated: setup.created,
            tags: setup.tags,
            execs: Vec::new(),
            exec_by_id: HashMap::new(),
            latest_in_stage: HashMap::new(),
            occupant: HashMap::new(),
            waiting: HashMap::new(),
            scripts: setup.scripts,
            durations: setup.durations,
            action_duration: setup.action_duration,
            auto_retry_delay: setup.auto_retry_delay,
            max_concurrent: setup.max_concurrent,
            start_tokens: HashMap::new(),
        });
        self.by_name.insert(name, i);
        i
    }

    /// UpdatePipeline: a new version. In-progress (and waiting) executions are cancelled, as
    /// AWS documents `Cancelled` ("definition updated before the execution completed"); stopped
    /// and failed ones keep their state but are no longer retryable (structure changed).
    pub fn update_pipeline(&mut self, p: u32, decl: Declaration, at: Ms) -> u32 {
        let execs = self.pipelines[p as usize].execs.clone();
        for x in execs {
            let mut canceled = None;
            let e = &mut self.execs[x as usize];
            if e.is_open() {
                e.status = PipelineExecutionStatus::Cancelled;
                e.last_update = at;
                e.waiting_for = None;
                if let Some(s) = e.current
                    && let Some(run) = e.stages[s].as_mut()
                    && matches!(
                        run.status,
                        StageExecutionStatus::InProgress | StageExecutionStatus::Stopping
                    )
                {
                    run.status = StageExecutionStatus::Cancelled;
                    abandon_in_progress(run, at);
                    canceled = Some(s);
                }
            }
            for run in e.stages.iter_mut().flatten() {
                if run.auto_retry_due.take().is_some() {
                    run.auto_generation += 1;
                }
            }
            if let Some(s) = canceled {
                self.emit_stage(x, s, StageState::Canceled, at);
            }
        }
        let pl = &mut self.pipelines[p as usize];
        pl.occupant.clear();
        pl.waiting.clear();
        pl.versions.push(Arc::new(decl));
        pl.updated = at;
        pl.version()
    }

    // ----------------------------------------------------------------------------------------
    // Executions

    /// Number of open (in progress, stopping or waiting) executions of a pipeline.
    pub fn open_executions(&self, p: u32) -> u32 {
        self.pipelines[p as usize]
            .execs
            .iter()
            .filter(|&&x| self.execs[x as usize].is_open())
            .count() as u32
    }

    /// Start an execution at `at` (caller checked limits).
    pub fn start_execution(
        &mut self,
        p: u32,
        at: Ms,
        trigger_type: &'static str,
        trigger_detail: &str,
        id: Option<String>,
        overrides: HashMap<ActionKey, Script>,
    ) -> u32 {
        let id = id.unwrap_or_else(|| self.uuid());
        let pl = &self.pipelines[p as usize];
        let decl = pl.decl().clone();
        let x = self.execs.len() as u32;
        self.execs.push(Execution {
            id: id.clone(),
            pipeline: p,
            version: pl.version(),
            stages: vec![None; decl.stages.len()],
            decl,
            status: PipelineExecutionStatus::InProgress,
            start: at,
            last_update: at,
            trigger_type,
            trigger_detail: trigger_detail.to_string(),
            stop_reason: None,
            current: None,
            waiting_for: None,
            overrides,
        });
        let execs = &self.execs;
        let pl = &mut self.pipelines[p as usize];
        let pos = pl
            .execs
            .partition_point(|&y| (execs[y as usize].start, y) > (at, x));
        pl.execs.insert(pos, x);
        pl.exec_by_id.insert(id, x);
        self.enter_stage(x, 0, at);
        x
    }

    /// StopPipelineExecution.
    pub fn stop(
        &mut self,
        x: u32,
        abandon: bool,
        reason: Option<String>,
        at: Ms,
    ) -> Result<(), StopRefusal> {
        let e = &mut self.execs[x as usize];
        match e.status {
            PipelineExecutionStatus::InProgress => {}
            PipelineExecutionStatus::Stopping if abandon => {}
            PipelineExecutionStatus::Stopping => return Err(StopRefusal::Duplicated),
            _ => return Err(StopRefusal::NotStoppable),
        }
        if reason.is_some() {
            e.stop_reason = reason;
        }
        e.last_update = at;
        if let Some(s) = e.waiting_for.take() {
            e.status = PipelineExecutionStatus::Stopped;
            let name = e.decl.stages[s].name.clone();
            let p = e.pipeline as usize;
            if let Some(q) = self.pipelines[p].waiting.get_mut(&name) {
                q.retain(|&y| y != x);
            }
            return Ok(());
        }
        let Some(s) = e.current else {
            e.status = PipelineExecutionStatus::Stopped;
            return Ok(());
        };
        let name = e.decl.stages[s].name.clone();
        let Some(run) = e.stages[s].as_mut() else {
            e.status = PipelineExecutionStatus::Stopped;
            return Ok(());
        };
        if abandon {
            abandon_in_progress(run, at);
            run.status = StageExecutionStatus::Stopped;
            e.status = PipelineExecutionStatus::Stopped;
            self.release(x, &name, at);
        } else {
            run.status = StageExecutionStatus::Stopping;
            e.status = PipelineExecutionStatus::Stopping;
            self.advance_stage(x, s, at);
        }
        Ok(())
    }

    /// Force the current attempt of an in-progress action to end now. False if it is not
    /// in progress.
    pub fn complete_action(
        &mut self,
        x: u32,
        s: usize,
        a: usize,
        outcome: &ActionOutcome,
        at: Ms,
    ) -> bool {
        let ok = self.execs[x as usize].stages[s]
            .as_ref()
            .is_some_and(|r| r.actions[a].in_progress());
        if ok && !matches!(outcome, ActionOutcome::Running) {
            self.finish_action(x, s, a, outcome, at);
            return true;
        }
        false
    }

    /// Stage runs of the execution by stage name (for views).
    pub fn stage_run<'a>(&'a self, x: u32, stage: &str) -> Option<(usize, &'a StageRun)> {
        let e = &self.execs[x as usize];
        let s = e.decl.stage_index(stage)?;
        e.stages[s].as_ref().map(|r| (s, r))
    }
}

pub(super) fn abandon_in_progress(run: &mut StageRun, at: Ms) {
    for a in &mut run.actions {
        if let Some(l) = a.latest.as_mut()
            && l.status == ActionExecutionStatus::InProgress
        {
            l.status = ActionExecutionStatus::Abandoned;
            l.last_change = at;
            l.due = None;
            a.generation += 1;
        }
    }
}
