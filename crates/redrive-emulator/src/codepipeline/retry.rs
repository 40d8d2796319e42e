//! RetryStageExecution's checks and effect, and the native `onFailure: RETRY` retry.

use std::collections::HashMap;

use super::model::{ActionKey, Model, PipelineSetup, Refusal, Script, refuse};
use super::scenario::{ExecutionMode, StageRetryMode};
use super::view::{
    ActionExecutionStatus, PipelineExecutionStatus, RetryTrigger, StageExecutionStatus,
};
use crate::config::PendingAutoRetry;
use crate::events::StageState;
use crate::model::Ms;

impl Model {
    /// The checks of RetryStageExecution after validation and pipeline/stage lookup, in the
    /// documented order (emulator.md): latest execution, structure, state, actions, limits.
    pub fn check_retry(
        &self,
        p: u32,
        stage: &str,
        exec_id: &str,
        mode: StageRetryMode,
    ) -> Result<(u32, usize), Refusal> {
        let pl = &self.pipelines[p as usize];
        let Some(&latest) = pl.latest_in_stage.get(stage) else {
            return Err(refuse(
                "StageNotRetryableException",
                format!("Stage '{stage}' has not run yet, so it has no failed actions to retry"),
            ));
        };
        if self.execs[latest as usize].id != exec_id {
            return Err(refuse(
                "NotLatestPipelineExecutionException",
                format!(
                    "Pipeline execution '{exec_id}' is not the latest execution of stage '{stage}' in pipeline '{}': the latest is '{}'",
                    pl.name, self.execs[latest as usize].id
                ),
            ));
        }
        let x = latest;
        let e = &self.execs[x as usize];
        let not_retryable = |why: &str| {
            refuse(
                "StageNotRetryableException",
                format!(
                    "Stage '{stage}' of pipeline execution '{exec_id}' cannot be retried: {why}"
                ),
            )
        };
        if e.version != pl.version() {
            return Err(not_retryable(&format!(
                "the pipeline structure changed (version {} → {}) after the execution started",
                e.version,
                pl.version()
            )));
        }
        let Some(s) = e.decl.stage_index(stage) else {
            return Err(not_retryable("the stage is not part of this execution"));
        };
        let Some(run) = e.stages[s].as_ref() else {
            return Err(not_retryable("the stage has not run in this execution"));
        };
        let retrying = run.manual_retries + run.auto_retries > 0;
        match run.status {
            StageExecutionStatus::InProgress if retrying => {
                return Err(refuse(
                    "ConflictException",
                    format!("A retry of stage '{stage}' is already in progress"),
                ));
            }
            StageExecutionStatus::InProgress => {
                return Err(not_retryable("the stage is still in progress"));
            }
            StageExecutionStatus::Stopping => {
                return Err(refuse(
                    "ConflictException",
                    format!("Pipeline execution '{exec_id}' is stopping; try again later"),
                ));
            }
            StageExecutionStatus::Failed | StageExecutionStatus::Stopped => {}
            other => {
                return Err(not_retryable(&format!("the stage is {}", other.as_str())));
            }
        }
        if run.auto_retry_due.is_some()
            && self.config.retry_while_auto_retry_pending == PendingAutoRetry::Conflict
        {
            return Err(refuse(
                "ConflictException",
                format!("An automatic retry of stage '{stage}' is pending; try again later"),
            ));
        }
        let stopped = run.status == StageExecutionStatus::Stopped;
        let has_failed = run.actions.iter().any(|a| {
            a.failed()
                || (stopped
                    && (a.needs_run || a.status() == Some(ActionExecutionStatus::Abandoned)))
        });
        if !has_failed {
            return Err(not_retryable("the stage contains no failed actions"));
        }
        if mode == StageRetryMode::AllActions && run.any_in_progress() {
            return Err(not_retryable(
                "retryMode ALL_ACTIONS requires that no action of the stage is in progress",
            ));
        }
        if let Some(limit) = pl.max_concurrent
            && !e.is_open()
            && self.open_executions(p) >= limit
        {
            return Err(refuse(
                "ConcurrentPipelineExecutionsLimitExceededException",
                format!(
                    "Pipeline '{}' has reached its limit of {limit} concurrent pipeline executions",
                    pl.name
                ),
            ));
        }
        Ok((x, s))
    }

    /// Re-run a failed or stopped stage (checks done).
    pub fn retry(&mut self, x: u32, s: usize, mode: StageRetryMode, trigger: RetryTrigger, at: Ms) {
        let e = &mut self.execs[x as usize];
        let Some(run) = e.stages[s].as_mut() else {
            return;
        };
        for a in &mut run.actions {
            let rerun = match mode {
                StageRetryMode::AllActions => true,
                StageRetryMode::FailedActions => matches!(
                    a.status(),
                    Some(ActionExecutionStatus::Failed | ActionExecutionStatus::Abandoned)
                ),
            };
            if rerun {
                a.needs_run = true;
            }
        }
        run.status = StageExecutionStatus::InProgress;
        if run.auto_retry_due.take().is_some() {
            run.auto_generation += 1;
        }
        match trigger {
            RetryTrigger::ManualStageRetry => run.manual_retries += 1,
            RetryTrigger::AutomatedStageRetry => run.auto_retries += 1,
        }
        run.latest_trigger = Some(trigger);
        e.status = PipelineExecutionStatus::InProgress;
        e.last_update = at;
        e.current = Some(s);
        let name = e.decl.stages[s].name.clone();
        let mode_exec = e.decl.execution_mode;
        let p = e.pipeline as usize;
        if mode_exec != ExecutionMode::Parallel {
            self.pipelines[p].occupant.insert(name.clone(), x);
        }
        self.pipelines[p].latest_in_stage.insert(name, x);
        match trigger {
            RetryTrigger::ManualStageRetry => self.manual_retries += 1,
            RetryTrigger::AutomatedStageRetry => self.auto_retries += 1,
        }
        self.emit_stage(x, s, StageState::Resumed, at);
        self.advance_stage(x, s, at);
    }

    pub(super) fn fire_auto_retry(&mut self, x: u32, s: usize, at: Ms) {
        let e = &self.execs[x as usize];
        let pl = &self.pipelines[e.pipeline as usize];
        let Some(run) = e.stages[s].as_ref() else {
            return;
        };
        let stage = &e.decl.stages[s];
        let still_valid = run.status == StageExecutionStatus::Failed
            && e.version == pl.version()
            && pl.latest_in_stage.get(&stage.name) == Some(&x);
        if !still_valid {
            let run = self.execs[x as usize].stages[s].as_mut();
            if let Some(run) = run {
                run.auto_retry_due = None;
                run.auto_generation += 1;
            }
            return;
        }
        if stage.retry_mode == StageRetryMode::AllActions && run.any_in_progress() {
            // Deferred: advance_stage fires it when the last running action ends.
            return;
        }
        let mode = stage.retry_mode;
        self.retry(x, s, mode, RetryTrigger::AutomatedStageRetry, at);
    }

    /// Time from start to the first stage failure of a lone execution of `setup` (None if it
    /// never fails), found by simulating it in a scratch model.
    pub fn failure_offset(
        &self,
        setup: &PipelineSetup,
        overrides: &HashMap<ActionKey, Script>,
    ) -> Option<Ms> {
        let mut scratch = Model::new(&self.region, &self.account, 0, self.config.clone());
        let q = scratch.add_pipeline(PipelineSetup {
            tags: Vec::new(),
            created: 0,
            max_concurrent: None,
            ..setup.clone()
        });
        let x =
            scratch.start_execution(q, 0, "StartPipelineExecution", "", None, overrides.clone());
        loop {
            let e = &scratch.execs[x as usize];
            if e.status == PipelineExecutionStatus::Failed {
                return Some(e.last_update);
            }
            scratch.step(Ms::MAX)?;
        }
    }
}
