//! Stage progression on the emulated clock: processing due events, run-order groups, stage
//! success and failure (with the native auto-retry scheduled), stage locking between
//! executions (SUPERSEDED / QUEUED / PARALLEL).

use std::cmp::Reverse;
use std::collections::VecDeque;

use super::model::{ActionExec, ActionRun, Event, Model, StageRun};
use super::scenario::{ActionOutcome, ExecutionMode, FailureResult, PipelineType};
use super::view::{
    ActionExecutionStatus, PipelineExecutionStatus, RetryTrigger, StageExecutionStatus,
};
use crate::config::AutoRetryScope;
use crate::events::StageState;
use crate::model::Ms;

impl Model {
    /// Process every event due by `now`, each at its own due time.
    pub fn settle(&mut self, now: Ms) {
        while self.step(now).is_some() {}
    }

    /// Process the next event if it is due by `limit`; returns its time.
    pub fn step(&mut self, limit: Ms) -> Option<Ms> {
        let Reverse((at, _, ev)) = *self.heap.peek()?;
        if at > limit {
            return None;
        }
        self.heap.pop();
        match ev {
            Event::ActionDone {
                exec,
                stage,
                action,
                generation,
            } => self.on_action_due(exec, stage as usize, action as usize, generation, at),
            Event::AutoRetry {
                exec,
                stage,
                generation,
            } => {
                let run = self.execs[exec as usize].stages[stage as usize].as_ref();
                if run.is_some_and(|r| r.auto_generation == generation) {
                    self.fire_auto_retry(exec, stage as usize, at);
                }
            }
        }
        Some(at)
    }

    pub(super) fn on_action_due(&mut self, x: u32, s: usize, a: usize, generation: u32, at: Ms) {
        let Some(run) = self.execs[x as usize].stages[s].as_ref() else {
            return;
        };
        let act = &run.actions[a];
        if act.generation != generation || !act.in_progress() {
            return;
        }
        let outcome = act
            .latest
            .as_ref()
            .map(|l| l.pending.clone())
            .unwrap_or(ActionOutcome::succeed());
        self.finish_action(x, s, a, &outcome, at);
    }

    /// End the current attempt of an in-progress action with `outcome` at `at`.
    pub(super) fn finish_action(
        &mut self,
        x: u32,
        s: usize,
        a: usize,
        outcome: &ActionOutcome,
        at: Ms,
    ) {
        let e = &mut self.execs[x as usize];
        let Some(run) = e.stages[s].as_mut() else {
            return;
        };
        let act = &mut run.actions[a];
        let Some(l) = act.latest.as_mut() else { return };
        if l.status != ActionExecutionStatus::InProgress {
            return;
        }
        match outcome {
            ActionOutcome::Running => return,
            ActionOutcome::Succeed { summary, .. } => {
                l.status = ActionExecutionStatus::Succeeded;
                l.summary = summary.clone();
            }
            ActionOutcome::Fail { code, message, .. } => {
                l.status = ActionExecutionStatus::Failed;
                l.error = Some((code.clone(), message.clone()));
            }
        }
        l.due = None;
        l.last_change = at;
        act.generation += 1;
        e.last_update = e.last_update.max(at);
        self.advance_stage(x, s, at);
    }

    // ----------------------------------------------------------------------------------------
    // Stage progression

    /// Move a stage on after something changed in it.
    pub(super) fn advance_stage(&mut self, x: u32, s: usize, at: Ms) {
        let e = &self.execs[x as usize];
        let Some(run) = e.stages[s].as_ref() else {
            return;
        };
        match run.status {
            StageExecutionStatus::InProgress => {
                // The stage fails as soon as one action fails; actions of the same run order
                // that are still running keep running (and can be seen doing so).
                if run.actions.iter().any(ActionRun::failed) {
                    self.fail_stage(x, s, at);
                    return;
                }
                let decl = e.decl.clone();
                let actions = &decl.stages[s].actions;
                let group = actions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !run.actions[*i].done_ok())
                    .map(|(_, a)| a.run_order)
                    .min();
                match group {
                    None => self.succeed_stage(x, s, at),
                    Some(order) => {
                        let to_start: Vec<usize> = actions
                            .iter()
                            .enumerate()
                            .filter(|(i, a)| a.run_order == order && run.actions[*i].needs_run)
                            .map(|(i, _)| i)
                            .collect();
                        for i in to_start {
                            self.start_action(x, s, i, at);
                        }
                    }
                }
            }
            // A stop without abandon completes once the running actions have ended.
            StageExecutionStatus::Stopping if !run.any_in_progress() => {
                let name = e.decl.stages[s].name.clone();
                let e = &mut self.execs[x as usize];
                if let Some(run) = e.stages[s].as_mut() {
                    run.status = StageExecutionStatus::Stopped;
                }
                e.status = PipelineExecutionStatus::Stopped;
                e.last_update = at;
                self.release(x, &name, at);
            }
            // An ALL_ACTIONS automatic retry waits for the stage's running actions.
            StageExecutionStatus::Failed
                if run.auto_retry_due.is_some_and(|d| d <= at) && !run.any_in_progress() =>
            {
                self.fire_auto_retry(x, s, at);
            }
            _ => {}
        }
    }

    pub(super) fn start_action(&mut self, x: u32, s: usize, a: usize, at: Ms) {
        let id = self.uuid();
        let e = &self.execs[x as usize];
        let p = &self.pipelines[e.pipeline as usize];
        let key = (
            e.decl.stages[s].name.clone(),
            e.decl.stages[s].actions[a].name.clone(),
        );
        let script = e.overrides.get(&key).or_else(|| p.scripts.get(&key));
        let attempt = e.stages[s].as_ref().map_or(0, |r| r.actions[a].attempts) as usize;
        let outcome = match script {
            Some(sc) if !sc.is_empty() => sc[attempt.min(sc.len() - 1)].clone(),
            _ => ActionOutcome::succeed(),
        };
        let dur = outcome
            .duration()
            .map(|d| d.as_ms())
            .or_else(|| p.durations.get(&key).copied())
            .unwrap_or(p.action_duration);
        let due = (!matches!(outcome, ActionOutcome::Running)).then(|| at.saturating_add(dur));
        let Some(run) = self.execs[x as usize].stages[s].as_mut() else {
            return;
        };
        let act = &mut run.actions[a];
        act.attempts += 1;
        act.needs_run = false;
        act.generation += 1;
        let generation = act.generation;
        act.latest = Some(ActionExec {
            id,
            status: ActionExecutionStatus::InProgress,
            last_change: at,
            due,
            pending: outcome,
            error: None,
            summary: None,
        });
        if let Some(due) = due {
            self.push(
                due,
                Event::ActionDone {
                    exec: x,
                    stage: s as u16,
                    action: a as u16,
                    generation,
                },
            );
        }
    }

    pub(super) fn fail_stage(&mut self, x: u32, s: usize, at: Ms) {
        let e = &mut self.execs[x as usize];
        let decl = e.decl.clone();
        let p = e.pipeline;
        e.status = PipelineExecutionStatus::Failed;
        e.last_update = at;
        let Some(run) = e.stages[s].as_mut() else {
            return;
        };
        run.status = StageExecutionStatus::Failed;
        let stage = &decl.stages[s];
        let eligible = stage.on_failure == FailureResult::Retry
            && decl.pipeline_type == PipelineType::V2
            && match self.config.auto_retry_scope {
                AutoRetryScope::OncePerStageExecution => run.auto_retries == 0,
                AutoRetryScope::EveryNonAutomaticFailure => {
                    run.latest_trigger != Some(RetryTrigger::AutomatedStageRetry)
                }
            };
        if eligible {
            let delay = self.pipelines[p as usize]
                .auto_retry_delay
                .unwrap_or_else(|| {
                    i64::try_from(self.config.auto_retry_delay.as_millis()).unwrap_or(i64::MAX / 4)
                });
            let due = at.saturating_add(delay);
            run.auto_retry_due = Some(due);
            run.auto_generation += 1;
            let generation = run.auto_generation;
            self.push(
                due,
                Event::AutoRetry {
                    exec: x,
                    stage: s as u16,
                    generation,
                },
            );
        }
        let name = stage.name.clone();
        self.emit_stage(x, s, StageState::Failed, at);
        self.release(x, &name, at);
    }

    pub(super) fn succeed_stage(&mut self, x: u32, s: usize, at: Ms) {
        let e = &mut self.execs[x as usize];
        if let Some(run) = e.stages[s].as_mut() {
            run.status = StageExecutionStatus::Succeeded;
        }
        e.last_update = at;
        let name = e.decl.stages[s].name.clone();
        self.emit_stage(x, s, StageState::Succeeded, at);
        self.release(x, &name, at);
        self.enter_stage(x, s + 1, at);
    }

    /// Give up `stage` (if `x` holds it) and let the next waiting execution in.
    pub(super) fn release(&mut self, x: u32, stage: &str, at: Ms) {
        let p = self.execs[x as usize].pipeline as usize;
        let pl = &mut self.pipelines[p];
        if pl.occupant.get(stage) == Some(&x) {
            pl.occupant.remove(stage);
        }
        if pl.occupant.contains_key(stage) {
            return;
        }
        let next = pl.waiting.get_mut(stage).and_then(VecDeque::pop_front);
        if let Some(y) = next
            && let Some(s) = self.execs[y as usize].waiting_for
        {
            self.execs[y as usize].waiting_for = None;
            self.enter_stage(y, s, at);
        }
    }

    pub(super) fn enter_stage(&mut self, x: u32, s: usize, at: Ms) {
        let e = &mut self.execs[x as usize];
        if !e.is_open() {
            return;
        }
        if s >= e.decl.stages.len() {
            e.status = PipelineExecutionStatus::Succeeded;
            e.last_update = at;
            return;
        }
        let name = e.decl.stages[s].name.clone();
        let mode = e.decl.execution_mode;
        let n_actions = e.decl.stages[s].actions.len();
        let p = e.pipeline as usize;
        if mode != ExecutionMode::Parallel {
            let busy = self.pipelines[p]
                .occupant
                .get(&name)
                .is_some_and(|&o| o != x);
            if busy {
                self.execs[x as usize].waiting_for = Some(s);
                let q = self.pipelines[p].waiting.entry(name).or_default();
                let overtaken: Vec<u32> = if mode == ExecutionMode::Superseded {
                    q.drain(..).collect()
                } else {
                    Vec::new()
                };
                q.push_back(x);
                for y in overtaken {
                    let o = &mut self.execs[y as usize];
                    o.status = PipelineExecutionStatus::Superseded;
                    o.waiting_for = None;
                    o.last_update = at;
                }
                return;
            }
            self.pipelines[p].occupant.insert(name.clone(), x);
        }
        self.pipelines[p].latest_in_stage.insert(name, x);
        let e = &mut self.execs[x as usize];
        e.current = Some(s);
        e.waiting_for = None;
        e.stages[s] = Some(StageRun::new(n_actions));
        self.emit_stage(x, s, StageState::Started, at);
        self.advance_stage(x, s, at);
    }
}
