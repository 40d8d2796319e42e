//! What tests and the admin API do to pipelines outside the AWS API: seed them, read snapshots,
//! change their structure, complete actions now, inject limits.

use std::collections::HashMap;
use std::sync::Arc;

use super::declaration::{self, Declaration};
use super::ledger::RetryLedgerEntry;
use super::model::{ActionKey, Model, PipelineSetup, Script};
use super::scenario::{ActionOutcome, PipelineSpec, PipelineType};
use super::view::{self, PipelineExecutionSnapshot, PipelineStateSnapshot};
use crate::model::{DAY, Ms};
use crate::scenario::ScenarioError;
use crate::state::{EmulatorState, lock};

/// Errors of the pipeline helpers on [`EmulatorState`] / [`crate::EmulatorHandle`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineAdminError {
    /// No pipeline with that name.
    #[error("no pipeline named '{0}'")]
    PipelineNotFound(String),
    /// The pipeline has no such stage.
    #[error("pipeline '{pipeline}' has no stage '{stage}'")]
    StageNotFound {
        /// Pipeline.
        pipeline: String,
        /// Stage.
        stage: String,
    },
    /// The stage has no such action.
    #[error("stage '{stage}' of pipeline '{pipeline}' has no action '{action}'")]
    ActionNotFound {
        /// Pipeline.
        pipeline: String,
        /// Stage.
        stage: String,
        /// Action.
        action: String,
    },
    /// The stage never ran, so there is no execution to act on.
    #[error("stage '{stage}' of pipeline '{pipeline}' has not run yet")]
    StageNeverRan {
        /// Pipeline.
        pipeline: String,
        /// Stage.
        stage: String,
    },
    /// The action's latest attempt is not in progress.
    #[error("action '{action}' of stage '{stage}' in execution '{execution}' is not in progress")]
    ActionNotInProgress {
        /// Execution id.
        execution: String,
        /// Stage.
        stage: String,
        /// Action.
        action: String,
    },
    /// `maxConcurrentExecutions` reached.
    #[error("pipeline '{pipeline}' has reached its limit of {limit} concurrent executions")]
    ConcurrencyLimit {
        /// Pipeline.
        pipeline: String,
        /// The limit.
        limit: u32,
    },
    /// The new structure is invalid (the message CreatePipeline would give).
    #[error("invalid pipeline structure: {0}")]
    InvalidStructure(String),
}

fn dur_ms(d: std::time::Duration) -> Ms {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn scripts_of(spec: &PipelineSpec) -> (HashMap<ActionKey, Script>, HashMap<ActionKey, Ms>) {
    let mut scripts = HashMap::new();
    let mut durations = HashMap::new();
    for s in &spec.stages {
        for a in &s.actions {
            let key = (s.name.clone(), a.name.clone());
            if !a.outcomes.is_empty() {
                scripts.insert(key.clone(), Arc::from(a.outcomes.clone()));
            }
            if let Some(d) = a.duration {
                durations.insert(key, d.as_ms());
            }
        }
    }
    (scripts, durations)
}

fn overrides_of(e: &super::scenario::PipelineExecutionSpec) -> HashMap<ActionKey, Script> {
    e.outcomes
        .iter()
        .flat_map(|(stage, actions)| {
            actions
                .iter()
                .map(move |(a, o)| ((stage.clone(), a.clone()), Arc::from(o.clone())))
        })
        .collect()
}

fn same_structure(a: &Declaration, b: &Declaration) -> bool {
    a.stages == b.stages
        && a.pipeline_type == b.pipeline_type
        && a.execution_mode == b.execution_mode
}

/// A validated pipeline spec, ready to apply.
struct Prepared {
    existing: Option<u32>,
    setup: PipelineSetup,
    /// (start, id, per-execution scripts), in spec order.
    executions: Vec<(Ms, Option<String>, HashMap<ActionKey, Script>)>,
}

fn invalid(name: &str, msg: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Invalid(format!("pipeline '{name}': {msg}"))
}

/// Validate pipeline specs against the model (all or nothing).
fn prepare(m: &Model, specs: &[PipelineSpec], now: Ms) -> Result<Vec<Prepared>, ScenarioError> {
    let mut out = Vec::with_capacity(specs.len());
    let mut names = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for spec in specs {
        if !names.insert(spec.name.as_str()) {
            return Err(invalid(&spec.name, "listed twice"));
        }
        let json = declaration::spec_json(spec, &m.account, m.partition);
        let decl = declaration::parse(&json, PipelineType::V2)
            .map_err(|e| invalid(&spec.name, format!("{}: {}", e.code(), e.message)))?;
        let existing = m.find(&spec.name);
        if let Some(p) = existing
            && !same_structure(m.pipelines[p as usize].decl(), &decl)
        {
            return Err(invalid(
                &spec.name,
                "already exists with another structure (use update_pipeline to change it)",
            ));
        }
        let (mut scripts, mut durations) = scripts_of(spec);
        if let Some(p) = existing {
            let pl = &m.pipelines[p as usize];
            for (k, v) in &pl.scripts {
                scripts.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &pl.durations {
                durations.entry(k.clone()).or_insert(*v);
            }
        }
        let mut tags: Vec<(String, String)> = existing
            .map(|p| m.pipelines[p as usize].tags.clone())
            .unwrap_or_default();
        for (k, v) in &spec.tags {
            match tags.iter_mut().find(|(tk, _)| tk == k) {
                Some(t) => t.1 = v.clone(),
                None => tags.push((k.clone(), v.clone())),
            }
        }
        let setup = PipelineSetup {
            decl,
            tags,
            created: now.saturating_sub(spec.created_ago.map_or(30 * DAY, |d| d.as_ms())),
            scripts,
            durations,
            action_duration: spec
                .action_duration
                .map_or(dur_ms(m.config.default_action_duration), |d| d.as_ms()),
            auto_retry_delay: spec.auto_retry_delay.map(|d| d.as_ms()),
            max_concurrent: spec.max_concurrent_executions,
        };
        let mut executions = Vec::with_capacity(spec.executions.len());
        for (i, e) in spec.executions.iter().enumerate() {
            if let Some(id) = &e.id {
                let taken = existing.is_some_and(|p| m.find_exec(p, id).is_some());
                if !super::api::valid_execution_id(id) || taken || !ids.insert(id.clone()) {
                    return Err(invalid(
                        &spec.name,
                        format!("execution id '{id}' is not a fresh lowercase UUID"),
                    ));
                }
            }
            for (stage, actions) in &e.outcomes {
                let Some(st) = setup.decl.stages.iter().find(|s| &s.name == stage) else {
                    return Err(invalid(
                        &spec.name,
                        format!("execution {i}: no stage '{stage}'"),
                    ));
                };
                if let Some(a) = actions
                    .keys()
                    .find(|a| !st.actions.iter().any(|d| &d.name == *a))
                {
                    return Err(invalid(
                        &spec.name,
                        format!("execution {i}: stage '{stage}' has no action '{a}'"),
                    ));
                }
            }
            let overrides = overrides_of(e);
            let start = match (e.started_ago, e.failed_ago) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &spec.name,
                        format!("execution {i}: give startedAgo or failedAgo, not both"),
                    ));
                }
                (Some(a), None) => now.saturating_sub(a.as_ms()),
                (None, Some(f)) => {
                    let Some(offset) = m.failure_offset(&setup, &overrides) else {
                        return Err(invalid(
                            &spec.name,
                            format!(
                                "execution {i}: failedAgo is set but its scripts never fail a stage"
                            ),
                        ));
                    };
                    now.saturating_sub(f.as_ms()).saturating_sub(offset)
                }
                (None, None) => now,
            };
            executions.push((start, e.id.clone(), overrides));
        }
        out.push(Prepared {
            existing,
            setup,
            executions,
        });
    }
    Ok(out)
}

/// Apply prepared specs; returns the seeded execution ids per pipeline (spec order).
fn apply(m: &mut Model, prepared: Vec<Prepared>, now: Ms) -> Vec<Vec<String>> {
    let mut all = Vec::with_capacity(prepared.len());
    for p in prepared {
        let idx = match p.existing {
            Some(i) => {
                let pl = &mut m.pipelines[i as usize];
                pl.tags = p.setup.tags;
                pl.scripts = p.setup.scripts;
                pl.durations = p.setup.durations;
                pl.action_duration = p.setup.action_duration;
                if p.setup.auto_retry_delay.is_some() {
                    pl.auto_retry_delay = p.setup.auto_retry_delay;
                }
                if p.setup.max_concurrent.is_some() {
                    pl.max_concurrent = p.setup.max_concurrent;
                }
                i
            }
            None => m.add_pipeline(p.setup),
        };
        // Simulate the executions in start order so they meet each other as they would have.
        let mut order: Vec<usize> = (0..p.executions.len()).collect();
        order.sort_by_key(|&i| p.executions[i].0);
        let mut ids = vec![String::new(); p.executions.len()];
        for i in order {
            let (start, id, overrides) = &p.executions[i];
            let start = (*start).min(now);
            m.settle(start);
            let x = m.start_execution(
                idx,
                start,
                "StartPipelineExecution",
                "emulator-scenario",
                id.clone(),
                overrides.clone(),
            );
            ids[i] = m.execs[x as usize].id.clone();
        }
        m.settle(now);
        all.push(ids);
    }
    all
}

impl EmulatorState {
    /// Validate and seed pipelines (all or nothing); returns the seeded execution ids per
    /// pipeline, in spec order.
    pub(crate) fn seed_pipeline_specs(
        &self,
        specs: &[PipelineSpec],
        now: Ms,
    ) -> Result<Vec<Vec<String>>, ScenarioError> {
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let prepared = prepare(&m, specs, now)?;
        Ok(apply(&mut m, prepared, now))
    }

    /// Check pipeline specs without applying them.
    pub(crate) fn validate_pipeline_specs(
        &self,
        specs: &[PipelineSpec],
        now: Ms,
    ) -> Result<(), ScenarioError> {
        prepare(&lock(&self.pipelines), specs, now).map(|_| ())
    }

    /// Seed one more pipeline (or merge executions and tags into an existing one with the same
    /// structure); returns the ids of the executions it started, in spec order.
    pub fn seed_pipeline(&self, spec: PipelineSpec) -> Result<Vec<String>, ScenarioError> {
        let now = self.now_ms();
        Ok(self
            .seed_pipeline_specs(std::slice::from_ref(&spec), now)?
            .pop()
            .unwrap_or_default())
    }

    /// Every RetryStageExecution call so far, in order (whatever the outcome).
    pub fn codepipeline_ledger(&self) -> Vec<RetryLedgerEntry> {
        lock(&self.cp_ledger).clone()
    }

    /// GetPipelineState of a pipeline (settled to now).
    pub fn pipeline_state(&self, name: &str) -> Option<PipelineStateSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m.find(name)?;
        Some(view::pipeline_state(&m, p))
    }

    /// One execution of a pipeline (settled to now).
    pub fn pipeline_execution(&self, name: &str, id: &str) -> Option<PipelineExecutionSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m.find(name)?;
        let x = m.find_exec(p, id)?;
        Some(view::execution(&m, x))
    }

    /// Every execution of a pipeline, newest first (settled to now).
    pub fn pipeline_executions(&self, name: &str) -> Vec<PipelineExecutionSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let Some(p) = m.find(name) else {
            return Vec::new();
        };
        m.pipelines[p as usize]
            .execs
            .iter()
            .map(|&x| view::execution(&m, x))
            .collect()
    }

    /// `arn:aws:codepipeline:{region}:{account}:{name}`.
    pub fn pipeline_arn(&self, name: &str) -> String {
        lock(&self.pipelines).pipeline_arn(name)
    }

    /// Start an execution now, like StartPipelineExecution (honours the concurrency limit).
    pub fn start_pipeline_execution(&self, name: &str) -> Result<String, PipelineAdminError> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m
            .find(name)
            .ok_or_else(|| PipelineAdminError::PipelineNotFound(name.to_string()))?;
        if let Some(limit) = m.pipelines[p as usize].max_concurrent
            && m.open_executions(p) >= limit
        {
            return Err(PipelineAdminError::ConcurrencyLimit {
                pipeline: name.to_string(),
                limit,
            });
        }
        let x = m.start_execution(
            p,
            now,
            "StartPipelineExecution",
            "emulator-admin",
            None,
            HashMap::new(),
        );
        Ok(m.execs[x as usize].id.clone())
    }

    /// Replace a pipeline's structure (a new version, like UpdatePipeline): in-progress
    /// executions are cancelled and failed stages stop being retryable. The spec's scripts and
    /// durations replace the old ones; tags, limits and executions in the spec are ignored.
    /// Returns the new version.
    pub fn update_pipeline(&self, spec: PipelineSpec) -> Result<u32, PipelineAdminError> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m
            .find(&spec.name)
            .ok_or_else(|| PipelineAdminError::PipelineNotFound(spec.name.clone()))?;
        let json = declaration::spec_json(&spec, &m.account, m.partition);
        let decl = declaration::parse(&json, spec.pipeline_type)
            .map_err(|e| PipelineAdminError::InvalidStructure(e.message.clone()))?;
        let (scripts, durations) = scripts_of(&spec);
        let pl = &mut m.pipelines[p as usize];
        pl.scripts = scripts;
        pl.durations = durations;
        if let Some(d) = spec.action_duration {
            pl.action_duration = d.as_ms();
        }
        Ok(m.update_pipeline(p, decl, now))
    }

    /// Save the current structure again as a new version (what an UpdatePipeline with an
    /// unchanged declaration does): failed stages of older executions stop being retryable.
    pub fn touch_pipeline(&self, name: &str) -> Result<u32, PipelineAdminError> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m
            .find(name)
            .ok_or_else(|| PipelineAdminError::PipelineNotFound(name.to_string()))?;
        let decl = (**m.pipelines[p as usize].decl()).clone();
        Ok(m.update_pipeline(p, decl, now))
    }

    /// End the in-progress attempt of `stage`/`action` in the stage's latest execution now with
    /// `outcome` (a `Running` outcome is refused). Returns that execution's id.
    pub fn complete_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        outcome: ActionOutcome,
    ) -> Result<String, PipelineAdminError> {
        let now = self.now_ms();
        let mut m = lock(&self.pipelines);
        m.settle(now);
        let p = m
            .find(pipeline)
            .ok_or_else(|| PipelineAdminError::PipelineNotFound(pipeline.to_string()))?;
        let decl = m.pipelines[p as usize].decl().clone();
        let Some(st) = decl.stages.iter().find(|s| s.name == stage) else {
            return Err(PipelineAdminError::StageNotFound {
                pipeline: pipeline.to_string(),
                stage: stage.to_string(),
            });
        };
        if !st.actions.iter().any(|a| a.name == action) {
            return Err(PipelineAdminError::ActionNotFound {
                pipeline: pipeline.to_string(),
                stage: stage.to_string(),
                action: action.to_string(),
            });
        }
        let Some(&x) = m.pipelines[p as usize].latest_in_stage.get(stage) else {
            return Err(PipelineAdminError::StageNeverRan {
                pipeline: pipeline.to_string(),
                stage: stage.to_string(),
            });
        };
        let id = m.execs[x as usize].id.clone();
        let not_running = || PipelineAdminError::ActionNotInProgress {
            execution: id.clone(),
            stage: stage.to_string(),
            action: action.to_string(),
        };
        let e = &m.execs[x as usize];
        let s = e.decl.stage_index(stage).ok_or_else(not_running)?;
        let a = e.decl.stages[s]
            .actions
            .iter()
            .position(|d| d.name == action)
            .ok_or_else(not_running)?;
        if m.complete_action(x, s, a, &outcome, now) {
            Ok(id)
        } else {
            Err(not_running())
        }
    }

    /// Fail the in-progress `stage`/`action` of the stage's latest execution now.
    pub fn fail_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        code: &str,
        message: &str,
    ) -> Result<String, PipelineAdminError> {
        self.complete_action(
            pipeline,
            stage,
            action,
            ActionOutcome::fail_with(code, message),
        )
    }

    /// Succeed the in-progress `stage`/`action` of the stage's latest execution now.
    pub fn succeed_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
    ) -> Result<String, PipelineAdminError> {
        self.complete_action(pipeline, stage, action, ActionOutcome::succeed())
    }

    /// Replace the outcome script of one action (applies to attempts started from now on;
    /// the attempt index continues per execution).
    pub fn set_action_outcomes(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        outcomes: Vec<ActionOutcome>,
    ) -> Result<(), PipelineAdminError> {
        let mut m = lock(&self.pipelines);
        let p = m
            .find(pipeline)
            .ok_or_else(|| PipelineAdminError::PipelineNotFound(pipeline.to_string()))?;
        let pl = &mut m.pipelines[p as usize];
        let known = pl
            .decl()
            .stages
            .iter()
            .any(|s| s.name == stage && s.actions.iter().any(|a| a.name == action));
        if !known {
            return Err(PipelineAdminError::ActionNotFound {
                pipeline: pipeline.to_string(),
                stage: stage.to_string(),
                action: action.to_string(),
            });
        }
        pl.scripts
            .insert((stage.to_string(), action.to_string()), Arc::from(outcomes));
        Ok(())
    }

    /// Set (or clear) a pipeline's concurrent-execution limit: beyond it StartPipelineExecution
    /// and RetryStageExecution answer `ConcurrentPipelineExecutionsLimitExceededException`
    /// (`Some(0)` makes every such call fail). False if the pipeline is unknown.
    pub fn set_pipeline_concurrency_limit(&self, pipeline: &str, limit: Option<u32>) -> bool {
        let mut m = lock(&self.pipelines);
        match m.find(pipeline) {
            Some(p) => {
                m.pipelines[p as usize].max_concurrent = limit;
                true
            }
            None => false,
        }
    }
}
