//! Event messages from the queue, parsed as **hints**: a message names a run and nothing else
//! is trusted. Anyone who can write to the queue can forge one, so parsing is strict (size,
//! source, detail-type, identifier shapes) and a parsed hint only makes the operator re-read
//! that run from the service with the covering policy's own credentials and decide as usual.
//!
//! Envelopes (api-facts §1.10, §5.2): EventBridge delivers the event JSON as the SQS body:
//! `{"version":"0","id","detail-type","source","account","time","region","resources","detail"}`.

use jiff::Timestamp;
use serde::Deserialize;

use crate::api::limits::PIPELINE_NAME;

/// Largest body accepted (SQS's own maximum message size).
pub const MAX_BODY: usize = 256 * 1024;

pub const SFN_SOURCE: &str = "aws.states";
pub const SFN_DETAIL_TYPE: &str = "Step Functions Execution Status Change";
pub const CP_SOURCE: &str = "aws.codepipeline";
pub const CP_DETAIL_TYPE: &str = "CodePipeline Stage Execution State Change";

/// What a message says happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// An execution changed status.
    StepFunctions {
        execution_arn: String,
        state_machine_arn: String,
        status: String,
    },
    /// A stage execution changed state.
    CodePipeline {
        pipeline: String,
        execution_id: String,
        stage: String,
        state: String,
    },
}

impl Hint {
    /// Whether the status is one a redrive could follow (a failure); other statuses (RUNNING,
    /// SUCCEEDED, RESUMED, …) are dropped cheaply, without any service call.
    pub fn is_failure(&self) -> bool {
        match self {
            Hint::StepFunctions { status, .. } => {
                matches!(status.as_str(), "FAILED" | "TIMED_OUT" | "ABORTED")
            }
            Hint::CodePipeline { state, .. } => matches!(state.as_str(), "FAILED" | "CANCELED"),
        }
    }

    /// A key for deduplication: the same run in the same status.
    pub fn dedupe_key(&self) -> String {
        match self {
            Hint::StepFunctions {
                execution_arn,
                status,
                ..
            } => format!("sfn\n{execution_arn}\n{status}"),
            Hint::CodePipeline {
                pipeline,
                execution_id,
                stage,
                state,
            } => format!("cp\n{pipeline}\n{stage}\n{execution_id}\n{state}"),
        }
    }
}

/// A parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub hint: Hint,
    /// What tells two failures of the same run apart for deduplication (Step Functions:
    /// `stopDate` and `redriveCount`; CodePipeline: `pipeline-execution-attempt`), when sent.
    pub attempt_marker: String,
    /// The envelope's `time` (for lag metrics only: never for decisions).
    pub time: Option<Timestamp>,
    pub region: Option<String>,
}

/// Why a message was dropped (the metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejected {
    TooLarge,
    NotJson,
    UnknownSource,
    UnknownDetailType,
    MissingField,
    BadIdentifier,
}

impl Rejected {
    pub const ALL: [Rejected; 6] = [
        Rejected::TooLarge,
        Rejected::NotJson,
        Rejected::UnknownSource,
        Rejected::UnknownDetailType,
        Rejected::MissingField,
        Rejected::BadIdentifier,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejected::TooLarge => "too_large",
            Rejected::NotJson => "not_json",
            Rejected::UnknownSource => "unknown_source",
            Rejected::UnknownDetailType => "unknown_detail_type",
            Rejected::MissingField => "missing_field",
            Rejected::BadIdentifier => "bad_identifier",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    source: Option<String>,
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    time: Option<String>,
    region: Option<String>,
    #[serde(default)]
    detail: serde_json::Value,
}

/// Parse one message body.
pub fn parse(body: &str) -> Result<Received, Rejected> {
    if body.len() > MAX_BODY {
        return Err(Rejected::TooLarge);
    }
    let env: Envelope = serde_json::from_str(body).map_err(|_| Rejected::NotJson)?;
    let source = env.source.as_deref().ok_or(Rejected::MissingField)?;
    let detail_type = env.detail_type.as_deref().ok_or(Rejected::MissingField)?;
    let text = |key: &str| -> Result<String, Rejected> {
        env.detail
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or(Rejected::MissingField)
    };
    let hint = match source {
        SFN_SOURCE => {
            if detail_type != SFN_DETAIL_TYPE {
                return Err(Rejected::UnknownDetailType);
            }
            let execution_arn = text("executionArn")?;
            let state_machine_arn = text("stateMachineArn")?;
            let status = text("status")?;
            if !execution_of(&execution_arn, &state_machine_arn) || !plain_word(&status) {
                return Err(Rejected::BadIdentifier);
            }
            Hint::StepFunctions {
                execution_arn,
                state_machine_arn,
                status,
            }
        }
        CP_SOURCE => {
            if detail_type != CP_DETAIL_TYPE {
                return Err(Rejected::UnknownDetailType);
            }
            let pipeline = text("pipeline")?;
            let execution_id = text("execution-id")?;
            let stage = text("stage")?;
            let state = text("state")?;
            let name = pipeline_name(&pipeline);
            let ok = name
                && (1..=128).contains(&execution_id.len())
                && execution_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && (1..=100).contains(&stage.len())
                && !stage.contains('/')
                && !stage.chars().any(char::is_control)
                && plain_word(&state);
            if !ok {
                return Err(Rejected::BadIdentifier);
            }
            Hint::CodePipeline {
                pipeline,
                execution_id,
                stage,
                state,
            }
        }
        _ => return Err(Rejected::UnknownSource),
    };
    let marker = |k: &str| {
        env.detail
            .get(k)
            .filter(|v| v.is_number() || v.is_string())
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let attempt_marker = match hint {
        Hint::StepFunctions { .. } => format!("{}/{}", marker("stopDate"), marker("redriveCount")),
        Hint::CodePipeline { .. } => marker("pipeline-execution-attempt"),
    };
    Ok(Received {
        hint,
        attempt_marker: attempt_marker.chars().take(64).collect(),
        time: env.time.as_deref().and_then(|t| t.parse().ok()),
        region: env.region.filter(|r| {
            r.len() <= 32
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }),
    })
}

fn plain_word(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

fn pipeline_name(name: &str) -> bool {
    static RE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(PIPELINE_NAME).expect("constant pattern"));
    RE.is_match(name)
}

/// Whether `execution` is an execution ARN of state machine `machine`:
/// `arn:PARTITION:states:REGION:ACCOUNT:execution:NAME:EXEC` for
/// `arn:PARTITION:states:REGION:ACCOUNT:stateMachine:NAME`. A forged message naming a machine
/// and an execution of another cannot route to the first machine's policy.
pub fn execution_of(execution: &str, machine: &str) -> bool {
    if execution.len() > 2048 || machine.len() > 256 {
        return false;
    }
    let e: Vec<&str> = execution.split(':').collect();
    let m: Vec<&str> = machine.split(':').collect();
    e.len() == 8
        && m.len() == 7
        && e[0] == "arn"
        && e[..5] == m[..5]
        && e[2] == "states"
        && e[5] == "execution"
        && m[5] == "stateMachine"
        && e[6] == m[6]
        && !e[7].is_empty()
        && m.iter().all(|p| !p.is_empty())
        && e.iter()
            .all(|p| !p.chars().any(|c| c.is_whitespace() || c.is_control()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sfn(status: &str, exec: &str, machine: &str) -> String {
        serde_json::json!({
            "version": "0", "id": "e1", "detail-type": SFN_DETAIL_TYPE, "source": SFN_SOURCE,
            "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
            "resources": [exec],
            "detail": {"executionArn": exec, "stateMachineArn": machine, "name": "x",
                       "status": status, "startDate": 1, "stopDate": 2}
        })
        .to_string()
    }

    const M: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orders";
    const E: &str = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1";

    #[test]
    fn a_documented_step_functions_event_is_a_hint() {
        let r = parse(&sfn("FAILED", E, M)).unwrap();
        assert!(r.hint.is_failure());
        assert_eq!(r.region.as_deref(), Some("us-east-1"));
        assert_eq!(r.time, Some("2026-12-01T10:00:00Z".parse().unwrap()));
        assert!(!parse(&sfn("RUNNING", E, M)).unwrap().hint.is_failure());
    }

    #[test]
    fn a_codepipeline_stage_event_is_a_hint() {
        let body = serde_json::json!({
            "source": CP_SOURCE, "detail-type": CP_DETAIL_TYPE, "region": "us-east-1",
            "detail": {"pipeline": "deploys", "version": 1.0, "execution-id": "2f1d6f0e-8e0a-4c52-9d0c-9a0a8d6b1c11", "stage": "Deploy", "state": "FAILED"}
        })
        .to_string();
        let r = parse(&body).unwrap();
        assert!(r.hint.is_failure());
        assert_eq!(
            r.hint.dedupe_key(),
            "cp\ndeploys\nDeploy\n2f1d6f0e-8e0a-4c52-9d0c-9a0a8d6b1c11\nFAILED"
        );
    }

    #[test]
    fn hostile_messages_are_rejected_with_a_reason() {
        assert_eq!(parse(&"x".repeat(MAX_BODY + 1)), Err(Rejected::TooLarge));
        assert_eq!(parse("not json"), Err(Rejected::NotJson));
        assert_eq!(parse("{}"), Err(Rejected::MissingField));
        let other = sfn("FAILED", E, M).replace(SFN_SOURCE, "evil.source");
        assert_eq!(parse(&other), Err(Rejected::UnknownSource));
        let dt = sfn("FAILED", E, M).replace(SFN_DETAIL_TYPE, "Something Else");
        assert_eq!(parse(&dt), Err(Rejected::UnknownDetailType));
        // An execution of another machine, account or region than the machine it names.
        for exec in [
            "arn:aws:states:us-east-1:123456789012:execution:payments:run-1",
            "arn:aws:states:us-east-1:999999999999:execution:orders:run-1",
            "arn:aws:states:eu-west-1:123456789012:execution:orders:run-1",
            "arn:aws:states:us-east-1:123456789012:execution:orders:",
            "arn:aws:states:us-east-1:123456789012:execution:orders:a b",
        ] {
            assert_eq!(
                parse(&sfn("FAILED", exec, M)),
                Err(Rejected::BadIdentifier),
                "{exec}"
            );
        }
        assert_eq!(
            parse(&sfn("failed; drop", E, M)),
            Err(Rejected::BadIdentifier)
        );
        let bad_pipeline = serde_json::json!({
            "source": CP_SOURCE, "detail-type": CP_DETAIL_TYPE,
            "detail": {"pipeline": "../etc", "execution-id": "x", "stage": "S", "state": "FAILED"}
        })
        .to_string();
        assert_eq!(parse(&bad_pipeline), Err(Rejected::BadIdentifier));
    }
}
