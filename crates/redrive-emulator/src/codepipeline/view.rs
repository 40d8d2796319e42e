//! Read-only views of the engine: the public snapshots handed to tests, and the JSON shapes of
//! GetPipelineState / ListPipelineExecutions / GetPipelineExecution built from them (one source
//! of truth, so what a test reads through the handle is what the SDK sees).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::declaration::StageDecl;
use super::model::{Model, StageRun};
use super::scenario::FailureResult;
use crate::history::epoch;
use crate::model::{Ms, ts};

wire_enum!(
    /// Stage execution status (`stageStates[].latestExecution.status`).
    StageExecutionStatus {
        /// Running (also while retried).
        InProgress = "InProgress",
        /// An action failed.
        Failed = "Failed",
        /// Stopped by StopPipelineExecution.
        Stopped = "Stopped",
        /// StopPipelineExecution without abandon, waiting for running actions.
        Stopping = "Stopping",
        /// All actions succeeded.
        Succeeded = "Succeeded",
        /// The pipeline was updated before the stage finished.
        Cancelled = "Cancelled",
        /// Skipped (not produced by the emulator).
        Skipped = "Skipped",
    }
);
wire_enum!(
    /// Action execution status (`actionStates[].latestExecution.status`).
    ActionExecutionStatus {
        /// Running.
        InProgress = "InProgress",
        /// Stopped with abandon, or cancelled by a pipeline update.
        Abandoned = "Abandoned",
        /// Succeeded.
        Succeeded = "Succeeded",
        /// Failed (with `errorDetails`).
        Failed = "Failed",
    }
);
wire_enum!(
    /// Pipeline execution status.
    PipelineExecutionStatus {
        /// Running, or waiting for a stage.
        InProgress = "InProgress",
        /// A stage failed.
        Failed = "Failed",
        /// Stopped.
        Stopped = "Stopped",
        /// Stopping (waiting for running actions).
        Stopping = "Stopping",
        /// Every stage succeeded.
        Succeeded = "Succeeded",
        /// A newer execution overtook it while it waited for a stage.
        Superseded = "Superseded",
        /// The pipeline was updated before it finished.
        Cancelled = "Cancelled",
    }
);
wire_enum!(
    /// `retryStageMetadata.latestRetryTrigger`.
    RetryTrigger {
        /// The native `onFailure: RETRY` retry.
        AutomatedStageRetry = "AutomatedStageRetry",
        /// RetryStageExecution.
        ManualStageRetry = "ManualStageRetry",
    }
);

/// One action's latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionStateSnapshot {
    /// Action name.
    pub action_name: String,
    /// Id of the latest attempt (None if it never ran in this execution).
    pub action_execution_id: Option<String>,
    /// Status of the latest attempt.
    pub status: Option<ActionExecutionStatus>,
    /// When the latest attempt last changed status.
    pub last_status_change: Option<jiff::Timestamp>,
    /// `errorDetails.code` of a failed attempt.
    pub error_code: Option<String>,
    /// `errorDetails.message` of a failed attempt.
    pub error_message: Option<String>,
    /// `summary` of a successful attempt.
    pub summary: Option<String>,
    /// Attempts started in this pipeline execution.
    pub attempts: u32,
    /// When the running attempt ends on its own (None = no scheduled end).
    pub completes_at: Option<jiff::Timestamp>,
}

/// One stage as GetPipelineState shows it (or as one execution saw it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageStateSnapshot {
    /// Stage name.
    pub stage_name: String,
    /// The stage's latest execution (None if the stage never ran).
    pub pipeline_execution_id: Option<String>,
    /// Its status in that execution.
    pub status: Option<StageExecutionStatus>,
    /// Actions in declaration order.
    pub actions: Vec<ActionStateSnapshot>,
    /// `retryStageMetadata.autoStageRetryAttempt` (0 = absent).
    pub auto_stage_retry_attempt: u32,
    /// `retryStageMetadata.manualStageRetryAttempt` (0 = absent).
    pub manual_stage_retry_attempt: u32,
    /// `retryStageMetadata.latestRetryTrigger`.
    pub latest_retry_trigger: Option<RetryTrigger>,
    /// A native automatic retry is pending and starts at this time.
    pub auto_retry_due: Option<jiff::Timestamp>,
    /// Executions waiting to enter the stage (`inboundExecutions`).
    pub inbound_execution_ids: Vec<String>,
    /// The declared `onFailure.result`.
    pub on_failure: FailureResult,
}

impl StageStateSnapshot {
    /// The action named `name`.
    pub fn action(&self, name: &str) -> Option<&ActionStateSnapshot> {
        self.actions.iter().find(|a| a.action_name == name)
    }
}

/// GetPipelineState as a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStateSnapshot {
    /// Name.
    pub pipeline_name: String,
    /// `arn:aws:codepipeline:{region}:{account}:{name}`.
    pub pipeline_arn: String,
    /// Current version (1 + number of updates).
    pub pipeline_version: u32,
    /// Creation time.
    pub created: jiff::Timestamp,
    /// Last update.
    pub updated: jiff::Timestamp,
    /// Stages of the current declaration.
    pub stages: Vec<StageStateSnapshot>,
}

impl PipelineStateSnapshot {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageStateSnapshot> {
        self.stages.iter().find(|s| s.stage_name == name)
    }
}

/// One pipeline execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineExecutionSnapshot {
    /// Execution id (lowercase UUID).
    pub pipeline_execution_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Pipeline version it runs.
    pub pipeline_version: u32,
    /// Status.
    pub status: PipelineExecutionStatus,
    /// Start.
    pub start_time: jiff::Timestamp,
    /// Last change.
    pub last_update_time: jiff::Timestamp,
    /// `trigger.triggerType` (`StartPipelineExecution`, `CreatePipeline`).
    pub trigger_type: String,
    /// `stopTrigger.reason`.
    pub stop_reason: Option<String>,
    /// Its stages as it saw them.
    pub stages: Vec<StageStateSnapshot>,
}

impl PipelineExecutionSnapshot {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageStateSnapshot> {
        self.stages.iter().find(|s| s.stage_name == name)
    }
}

fn stage_snapshot(
    m: &Model,
    x: Option<u32>,
    decl: &StageDecl,
    inbound: Vec<String>,
) -> StageStateSnapshot {
    let run: Option<&StageRun> = x.and_then(|x| m.stage_run(x, &decl.name).map(|(_, r)| r));
    // Action runs are matched by name, since the declaration may have changed since.
    let exec_stage = x.and_then(|x| {
        let e = &m.execs[x as usize];
        e.decl.stage_index(&decl.name).map(|s| &e.decl.stages[s])
    });
    let actions = decl
        .actions
        .iter()
        .map(|a| {
            let ar = exec_stage
                .and_then(|st| st.actions.iter().position(|d| d.name == a.name))
                .and_then(|i| run.map(|r| &r.actions[i]));
            let l = ar.and_then(|r| r.latest.as_ref());
            ActionStateSnapshot {
                action_name: a.name.clone(),
                action_execution_id: l.map(|l| l.id.clone()),
                status: l.map(|l| l.status),
                last_status_change: l.map(|l| ts(l.last_change)),
                error_code: l.and_then(|l| l.error.as_ref().map(|e| e.0.clone())),
                error_message: l.and_then(|l| l.error.as_ref().map(|e| e.1.clone())),
                summary: l.and_then(|l| l.summary.clone()),
                attempts: ar.map_or(0, |r| r.attempts),
                completes_at: l.and_then(|l| l.due).map(ts),
            }
        })
        .collect();
    StageStateSnapshot {
        stage_name: decl.name.clone(),
        pipeline_execution_id: x.map(|x| m.execs[x as usize].id.clone()),
        status: run.map(|r| r.status),
        actions,
        auto_stage_retry_attempt: run.map_or(0, |r| r.auto_retries),
        manual_stage_retry_attempt: run.map_or(0, |r| r.manual_retries),
        latest_retry_trigger: run.and_then(|r| r.latest_trigger),
        auto_retry_due: run.and_then(|r| r.auto_retry_due).map(ts),
        inbound_execution_ids: inbound,
        on_failure: decl.on_failure,
    }
}

/// GetPipelineState of pipeline `p`.
pub(crate) fn pipeline_state(m: &Model, p: u32) -> PipelineStateSnapshot {
    let pl = &m.pipelines[p as usize];
    let stages = pl
        .decl()
        .stages
        .iter()
        .map(|st| {
            let inbound = pl
                .waiting
                .get(&st.name)
                .map(|q| q.iter().map(|&y| m.execs[y as usize].id.clone()).collect())
                .unwrap_or_default();
            stage_snapshot(m, pl.latest_in_stage.get(&st.name).copied(), st, inbound)
        })
        .collect();
    PipelineStateSnapshot {
        pipeline_name: pl.name.clone(),
        pipeline_arn: pl.arn.clone(),
        pipeline_version: pl.version(),
        created: ts(pl.created),
        updated: ts(pl.updated),
        stages,
    }
}

/// Snapshot of execution `x`.
pub(crate) fn execution(m: &Model, x: u32) -> PipelineExecutionSnapshot {
    let e = &m.execs[x as usize];
    let stages = e
        .decl
        .stages
        .iter()
        .enumerate()
        .map(|(s, st)| {
            let entered = e.stages[s].is_some();
            stage_snapshot(m, entered.then_some(x), st, Vec::new())
        })
        .collect();
    PipelineExecutionSnapshot {
        pipeline_execution_id: e.id.clone(),
        pipeline_name: m.pipelines[e.pipeline as usize].name.clone(),
        pipeline_version: e.version,
        status: e.status,
        start_time: ts(e.start),
        last_update_time: ts(e.last_update),
        trigger_type: e.trigger_type.to_string(),
        stop_reason: e.stop_reason.clone(),
        stages,
    }
}

fn ms(t: jiff::Timestamp) -> Ms {
    t.as_millisecond()
}

/// A `stageStates[]` member.
fn stage_state_json(s: &StageStateSnapshot, first: bool) -> Value {
    let mut o = Map::new();
    o.insert("stageName".into(), json!(s.stage_name));
    if !first {
        o.insert("inboundTransitionState".into(), json!({"enabled": true}));
    }
    if let Some(first_inbound) = s.inbound_execution_ids.first() {
        o.insert(
            "inboundExecution".into(),
            json!({"pipelineExecutionId": first_inbound, "status": "InProgress", "type": "STANDARD"}),
        );
        o.insert(
            "inboundExecutions".into(),
            Value::Array(
                s.inbound_execution_ids
                    .iter()
                    .map(|id| json!({"pipelineExecutionId": id, "status": "InProgress", "type": "STANDARD"}))
                    .collect(),
            ),
        );
    }
    let actions: Vec<Value> = s
        .actions
        .iter()
        .map(|a| {
            let mut ao = Map::new();
            ao.insert("actionName".into(), json!(a.action_name));
            if let (Some(id), Some(st)) = (&a.action_execution_id, a.status) {
                let mut le = Map::new();
                le.insert("actionExecutionId".into(), json!(id));
                le.insert("status".into(), json!(st.as_str()));
                if let Some(t) = a.last_status_change {
                    le.insert("lastStatusChange".into(), epoch(ms(t)));
                }
                if let Some(sum) = &a.summary {
                    le.insert("summary".into(), json!(sum));
                }
                if let (Some(c), Some(msg)) = (&a.error_code, &a.error_message) {
                    le.insert("errorDetails".into(), json!({"code": c, "message": msg}));
                }
                le.insert("externalExecutionId".into(), json!(id));
                ao.insert("latestExecution".into(), Value::Object(le));
            }
            Value::Object(ao)
        })
        .collect();
    o.insert("actionStates".into(), Value::Array(actions));
    if let (Some(id), Some(st)) = (&s.pipeline_execution_id, s.status) {
        o.insert(
            "latestExecution".into(),
            json!({"pipelineExecutionId": id, "status": st.as_str(), "type": "STANDARD"}),
        );
    }
    // The model's minimum is 1 for both counters: absent until the first retry of each kind.
    let mut meta = Map::new();
    if s.auto_stage_retry_attempt > 0 {
        meta.insert(
            "autoStageRetryAttempt".into(),
            json!(s.auto_stage_retry_attempt),
        );
    }
    if s.manual_stage_retry_attempt > 0 {
        meta.insert(
            "manualStageRetryAttempt".into(),
            json!(s.manual_stage_retry_attempt),
        );
    }
    if let Some(t) = s.latest_retry_trigger {
        meta.insert("latestRetryTrigger".into(), json!(t.as_str()));
    }
    if !meta.is_empty() {
        o.insert("retryStageMetadata".into(), Value::Object(meta));
    }
    Value::Object(o)
}

/// GetPipelineState output.
pub(crate) fn pipeline_state_json(snap: &PipelineStateSnapshot) -> Value {
    json!({
        "pipelineName": snap.pipeline_name,
        "pipelineVersion": snap.pipeline_version,
        "created": epoch(ms(snap.created)),
        "updated": epoch(ms(snap.updated)),
        "stageStates": snap
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| stage_state_json(s, i == 0))
            .collect::<Vec<_>>(),
    })
}

fn trigger_json(m: &Model, x: u32) -> Value {
    let e = &m.execs[x as usize];
    json!({"triggerType": e.trigger_type, "triggerDetail": e.trigger_detail})
}

fn status_summary(m: &Model, x: u32) -> Option<String> {
    let e = &m.execs[x as usize];
    match e.status {
        PipelineExecutionStatus::Failed => e
            .current
            .map(|s| format!("Stage '{}' failed", e.decl.stages[s].name)),
        PipelineExecutionStatus::Superseded => {
            Some("Superseded by a newer pipeline execution".to_string())
        }
        PipelineExecutionStatus::Cancelled => {
            Some("The pipeline was updated before this execution completed".to_string())
        }
        _ => None,
    }
}

/// A `pipelineExecutionSummaries[]` member.
pub(crate) fn summary_json(m: &Model, x: u32) -> Value {
    let e = &m.execs[x as usize];
    let mut o = json!({
        "pipelineExecutionId": e.id,
        "status": e.status.as_str(),
        "startTime": epoch(e.start),
        "lastUpdateTime": epoch(e.last_update),
        "sourceRevisions": [],
        "trigger": trigger_json(m, x),
        "executionMode": e.decl.execution_mode.as_str(),
        "executionType": "STANDARD",
    });
    if let Some(s) = status_summary(m, x) {
        o["statusSummary"] = json!(s);
    }
    if let Some(r) = &e.stop_reason {
        o["stopTrigger"] = json!({"reason": r});
    }
    o
}

/// GetPipelineExecution's `pipelineExecution`.
pub(crate) fn execution_json(m: &Model, x: u32) -> Value {
    let e = &m.execs[x as usize];
    let mut o = json!({
        "pipelineName": m.pipelines[e.pipeline as usize].name,
        "pipelineVersion": e.version,
        "pipelineExecutionId": e.id,
        "status": e.status.as_str(),
        "artifactRevisions": [],
        "variables": [],
        "trigger": trigger_json(m, x),
        "executionMode": e.decl.execution_mode.as_str(),
        "executionType": "STANDARD",
    });
    if let Some(s) = status_summary(m, x) {
        o["statusSummary"] = json!(s);
    }
    o
}
