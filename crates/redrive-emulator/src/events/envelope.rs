//! The EventBridge events the emulator publishes, as pure data and pure builders (api-facts
//! §1.10 for Step Functions, §5.2 for CodePipeline). No I/O here: the publisher sends what these
//! build, and the unit tests check them against the documented shapes.

use serde_json::{Value, json};

use crate::model::{ExecutionStatus, Ms, RedriveStatus, ts};

/// `source` of Step Functions events.
pub const SFN_SOURCE: &str = "aws.states";
/// `detail-type` of Step Functions execution status changes.
pub const SFN_DETAIL_TYPE: &str = "Step Functions Execution Status Change";
/// `source` of CodePipeline events.
pub const CODEPIPELINE_SOURCE: &str = "aws.codepipeline";
/// `detail-type` of CodePipeline stage state changes.
pub const STAGE_DETAIL_TYPE: &str = "CodePipeline Stage Execution State Change";

/// Above this many bytes of JSON-escaped input + output, Step Functions drops the input from
/// the event (and the output too if it alone is above it): 248 KiB (api-facts §1.10).
pub const MAX_INLINE_DATA: usize = 248 * 1024;

/// One event as `PutEvents` takes it: the envelope fields EventBridge adds itself (`version`,
/// `id`, `account`, `region`) are not here; [`envelope`] adds them for a full document.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `source`.
    pub source: &'static str,
    /// `detail-type`.
    pub detail_type: &'static str,
    /// `resources`.
    pub resources: Vec<String>,
    /// `detail`.
    pub detail: Value,
    /// `time`: when the change happened on the emulated clock (epoch ms).
    pub time: Ms,
}

/// `time` as EventBridge writes it: ISO-8601 UTC, whole seconds.
pub fn event_time(ms: Ms) -> String {
    ts(ms).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The whole event document a rule target (an SQS queue) receives.
pub fn envelope(event: &Event, id: &str, account: &str, region: &str) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": event.detail_type,
        "source": event.source,
        "account": account,
        "time": event_time(event.time),
        "region": region,
        "resources": event.resources,
        "detail": event.detail,
    })
}

/// A Step Functions execution's status after a change (STANDARD executions only).
#[derive(Debug, Clone, PartialEq)]
pub struct SfnStatusChange {
    /// `executionArn`.
    pub execution_arn: String,
    /// `stateMachineArn`.
    pub state_machine_arn: String,
    /// `name`.
    pub name: String,
    /// `status`.
    pub status: ExecutionStatus,
    /// `startDate` (epoch ms).
    pub start_date: Ms,
    /// `stopDate` (epoch ms; None while running, also after a redrive).
    pub stop_date: Option<Ms>,
    /// `input` (the execution input JSON as a string).
    pub input: String,
    /// `output` (only for SUCCEEDED).
    pub output: Option<String>,
    /// `redriveCount` (observed, not in the documented schema).
    pub redrive_count: u32,
    /// `redriveDate` (observed; epoch ms).
    pub redrive_date: Option<Ms>,
    /// `redriveStatus` (observed).
    pub redrive_status: RedriveStatus,
    /// `redriveStatusReason` (observed).
    pub redrive_status_reason: Option<String>,
    /// `error` of the latest stop (observed).
    pub error: Option<String>,
    /// `cause` of the latest stop (observed).
    pub cause: Option<String>,
}

/// Length of a string once JSON-escaped (what the 248 KiB rule counts).
fn escaped_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(s.len(), |e| e.len())
}

impl SfnStatusChange {
    /// The documented `detail` plus the observed optional fields that are set.
    pub fn detail(&self) -> Value {
        let out_len = self.output.as_deref().map_or(0, escaped_len);
        let output_fits = out_len <= MAX_INLINE_DATA;
        let input_fits =
            escaped_len(&self.input) + if output_fits { out_len } else { 0 } <= MAX_INLINE_DATA;
        let mut d = json!({
            "executionArn": self.execution_arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status.as_str(),
            "startDate": self.start_date,
            "stopDate": self.stop_date,
            "input": if input_fits { Some(self.input.as_str()) } else { None },
            "inputDetails": {"included": input_fits},
            "output": Value::Null,
            "outputDetails": Value::Null,
            "redriveCount": self.redrive_count,
            "redriveStatus": self.redrive_status.as_str(),
        });
        // Output and its details are null unless the execution succeeded (the documented
        // RUNNING / FAILED examples show both null).
        if let Some(o) = &self.output {
            d["output"] = if output_fits { json!(o) } else { Value::Null };
            d["outputDetails"] = json!({"included": output_fits});
        }
        let optional = [
            ("redriveDate", self.redrive_date.map(|v| json!(v))),
            (
                "redriveStatusReason",
                self.redrive_status_reason.as_ref().map(|v| json!(v)),
            ),
            ("error", self.error.as_ref().map(|v| json!(v))),
            ("cause", self.cause.as_ref().map(|v| json!(v))),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                d[k] = v;
            }
        }
        d
    }

    /// The event published for this change at `time`.
    pub fn event(&self, time: Ms) -> Event {
        Event {
            source: SFN_SOURCE,
            detail_type: SFN_DETAIL_TYPE,
            resources: vec![self.execution_arn.clone()],
            detail: self.detail(),
            time,
        }
    }
}

/// Stage states of "CodePipeline Stage Execution State Change" (api-facts §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageState {
    /// The execution entered the stage.
    Started,
    /// Every action of the stage succeeded.
    Succeeded,
    /// The stage was retried (RetryStageExecution or the native automatic retry).
    Resumed,
    /// An action of the stage failed.
    Failed,
    /// The pipeline was updated while the stage ran.
    Canceled,
}

impl StageState {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Started => "STARTED",
            StageState::Succeeded => "SUCCEEDED",
            StageState::Resumed => "RESUMED",
            StageState::Failed => "FAILED",
            StageState::Canceled => "CANCELED",
        }
    }
}

/// A CodePipeline stage's state after a change.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStateChange {
    /// `pipeline` (name).
    pub pipeline: String,
    /// The pipeline ARN (`resources`).
    pub pipeline_arn: String,
    /// `version`: the pipeline structure version the execution runs.
    pub version: u32,
    /// `execution-id`.
    pub execution_id: String,
    /// `start-time`: start of the pipeline execution (epoch ms).
    pub start_time: Ms,
    /// `stage`.
    pub stage: String,
    /// `state`.
    pub state: StageState,
    /// `pipeline-execution-attempt`: 1 + stage retries of this execution so far.
    pub attempt: u32,
}

impl StageStateChange {
    /// The documented `detail`.
    pub fn detail(&self) -> Value {
        json!({
            "pipeline": self.pipeline,
            // The guide's examples write both numbers as floats (`1.0`); a JSON reader that
            // wants an integer must accept either.
            "version": f64::from(self.version),
            "execution-id": self.execution_id,
            "start-time": ts(self.start_time).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "stage": self.stage,
            "state": self.state.as_str(),
            "pipeline-execution-attempt": f64::from(self.attempt),
        })
    }

    /// The event published for this change at `time`.
    pub fn event(&self, time: Ms) -> Event {
        Event {
            source: CODEPIPELINE_SOURCE,
            detail_type: STAGE_DETAIL_TYPE,
            resources: vec![self.pipeline_arn.clone()],
            detail: self.detail(),
            time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1";
    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orders";
    const T0: Ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn running() -> SfnStatusChange {
        SfnStatusChange {
            execution_arn: ARN.into(),
            state_machine_arn: SM.into(),
            name: "run-1".into(),
            status: ExecutionStatus::Running,
            start_date: T0,
            stop_date: None,
            input: r#"{"order":1}"#.into(),
            output: None,
            redrive_count: 0,
            redrive_date: None,
            redrive_status: RedriveStatus::NotRedrivable,
            redrive_status_reason: Some(crate::model::reasons::RUNNING.into()),
            error: None,
            cause: None,
        }
    }

    #[test]
    fn running_detail_has_null_stop_and_output() {
        let d = running().detail();
        assert_eq!(
            d,
            json!({
                "executionArn": ARN,
                "stateMachineArn": SM,
                "name": "run-1",
                "status": "RUNNING",
                "startDate": T0,
                "stopDate": null,
                "input": "{\"order\":1}",
                "inputDetails": {"included": true},
                "output": null,
                "outputDetails": null,
                "redriveCount": 0,
                "redriveStatus": "NOT_REDRIVABLE",
                "redriveStatusReason": "Execution is RUNNING and cannot be redriven",
            })
        );
        assert!(d["startDate"].is_i64(), "epoch milliseconds as an integer");
    }

    #[test]
    fn failed_detail_carries_stop_error_cause_and_redrive_fields() {
        let c = SfnStatusChange {
            status: ExecutionStatus::Failed,
            stop_date: Some(T0 + 1_500),
            redrive_count: 2,
            redrive_date: Some(T0 + 1_000),
            redrive_status: RedriveStatus::Redrivable,
            redrive_status_reason: None,
            error: Some("States.TaskFailed".into()),
            cause: Some("boom".into()),
            ..running()
        };
        let d = c.detail();
        assert_eq!(d["status"], "FAILED");
        assert_eq!(d["stopDate"], json!(T0 + 1_500));
        assert!(d["stopDate"].is_i64());
        assert_eq!(d["redriveCount"], 2);
        assert_eq!(d["redriveDate"], json!(T0 + 1_000));
        assert_eq!(d["redriveStatus"], "REDRIVABLE");
        assert!(d.get("redriveStatusReason").is_none(), "absent when unset");
        assert_eq!(d["error"], "States.TaskFailed");
        assert_eq!(d["cause"], "boom");
        assert_eq!(d["output"], Value::Null);
        assert_eq!(d["outputDetails"], Value::Null);
    }

    #[test]
    fn succeeded_detail_includes_output() {
        let c = SfnStatusChange {
            status: ExecutionStatus::Succeeded,
            stop_date: Some(T0 + 10),
            output: Some(r#"{"ok":true}"#.into()),
            redrive_status_reason: Some(crate::model::reasons::SUCCEEDED.into()),
            ..running()
        };
        let d = c.detail();
        assert_eq!(d["output"], "{\"ok\":true}");
        assert_eq!(d["outputDetails"], json!({"included": true}));
    }

    #[test]
    fn large_data_drops_input_first_then_output() {
        let big = format!("\"{}\"", "x".repeat(MAX_INLINE_DATA / 2 + 10));
        let c = SfnStatusChange {
            status: ExecutionStatus::Succeeded,
            stop_date: Some(T0 + 10),
            input: big.clone(),
            output: Some(big.clone()),
            ..running()
        };
        let d = c.detail();
        assert_eq!(d["input"], Value::Null);
        assert_eq!(d["inputDetails"], json!({"included": false}));
        assert_eq!(d["output"], json!(big));
        assert_eq!(d["outputDetails"], json!({"included": true}));
        let huge = "y".repeat(MAX_INLINE_DATA + 1);
        let d = SfnStatusChange {
            output: Some(huge),
            ..c
        }
        .detail();
        assert_eq!(d["output"], Value::Null);
        assert_eq!(d["outputDetails"], json!({"included": false}));
        assert_eq!(
            d["input"],
            json!(big),
            "the input fits once the output is dropped"
        );
    }

    #[test]
    fn sfn_envelope() {
        let ev = running().event(T0 + 999);
        let env = envelope(&ev, "id-1", "123456789012", "us-east-1");
        assert_eq!(env["version"], "0");
        assert_eq!(env["id"], "id-1");
        assert_eq!(env["source"], "aws.states");
        assert_eq!(env["detail-type"], "Step Functions Execution Status Change");
        assert_eq!(env["account"], "123456789012");
        assert_eq!(env["region"], "us-east-1");
        assert_eq!(env["time"], "2026-01-01T00:00:00Z");
        assert_eq!(env["resources"], json!([ARN]));
        assert_eq!(env["detail"], running().detail());
    }

    #[test]
    fn stage_detail_and_envelope() {
        let c = StageStateChange {
            pipeline: "deploy".into(),
            pipeline_arn: "arn:aws:codepipeline:us-east-1:123456789012:deploy".into(),
            version: 3,
            execution_id: "11111111-2222-4333-8444-555555555555".into(),
            start_time: T0 + 42,
            stage: "Build".into(),
            state: StageState::Failed,
            attempt: 1,
        };
        let env = envelope(&c.event(T0 + 5_000), "x", "123456789012", "eu-west-1");
        assert_eq!(env["source"], "aws.codepipeline");
        assert_eq!(
            env["detail-type"],
            "CodePipeline Stage Execution State Change"
        );
        assert_eq!(env["time"], "2026-01-01T00:00:05Z");
        assert_eq!(
            env["resources"],
            json!(["arn:aws:codepipeline:us-east-1:123456789012:deploy"])
        );
        assert_eq!(
            env["detail"],
            json!({
                "pipeline": "deploy",
                "version": 3.0,
                "execution-id": "11111111-2222-4333-8444-555555555555",
                "start-time": "2026-01-01T00:00:00.042Z",
                "stage": "Build",
                "state": "FAILED",
                "pipeline-execution-attempt": 1.0,
            })
        );
        let names: Vec<&str> = [
            StageState::Started,
            StageState::Succeeded,
            StageState::Resumed,
            StageState::Failed,
            StageState::Canceled,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(
            names,
            ["STARTED", "SUCCEEDED", "RESUMED", "FAILED", "CANCELED"]
        );
    }
}
