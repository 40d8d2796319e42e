//! The Flow Service wire objects the adapter reads (api-facts §3.3, §5.3), parsed leniently:
//! every field the adapter does not need to decide is optional, unknown fields are ignored, and
//! status strings are matched case-insensitively (the docs disagree on their case).

use serde::Deserialize;

/// `GET /runs` and `GET /runs/{id}`: `{"items": [...], "_links": {"next": {"href": ...}}}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunPage {
    #[serde(default)]
    pub items: Vec<FlowRun>,
    #[serde(default, rename = "_links")]
    pub links: Links,
}

/// `GET /flows`: same envelope.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FlowPage {
    #[serde(default)]
    pub items: Vec<Flow>,
    #[serde(default, rename = "_links")]
    pub links: Links,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub next: Option<Link>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub href: Option<String>,
}

/// A dataflow, as much as the adapter needs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Present on batch (scheduled) source flows; streaming flows have no schedule. Adobe
    /// documents no explicit batch/streaming field on a flow (UNCONFIRMED), so this is the
    /// signal, with the re-trigger's own refusal as the backstop.
    #[serde(default)]
    pub schedule_params: Option<serde_json::Value>,
}

impl Flow {
    pub fn is_streaming(&self) -> bool {
        self.schedule_params.is_none()
    }
}

/// A dataflow run (`FlowRunItemDTO`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FlowRun {
    pub id: String,
    #[serde(default)]
    pub flow_id: String,
    /// Epoch milliseconds.
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
    /// The IMS client that created the run (a re-trigger records the caller's client id).
    #[serde(default)]
    pub created_client: Option<String>,
    /// The OpenAPI schema spells it `eTag`, the examples `etag`.
    #[serde(default, alias = "eTag")]
    pub etag: Option<String>,
    #[serde(default)]
    pub metrics: RunMetrics,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunMetrics {
    #[serde(default)]
    pub duration_summary: DurationSummary,
    #[serde(default)]
    pub record_summary: RecordSummary,
    #[serde(default)]
    pub status_summary: StatusSummary,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DurationSummary {
    #[serde(default, rename = "startedAtUTC")]
    pub started_at_utc: Option<i64>,
    #[serde(default, rename = "completedAtUTC")]
    pub completed_at_utc: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordSummary {
    #[serde(default)]
    pub output_record_count: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub errors: Vec<RunError>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RunError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A run's status as the adapter needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Failed,
    Succeeded,
    /// In progress, or a status the adapter does not know: never acted on.
    Other,
}

impl FlowRun {
    pub fn state(&self) -> RunState {
        match self.metrics.status_summary.status.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("failed") => RunState::Failed,
            Some(s) if s.eq_ignore_ascii_case("success") || s.eq_ignore_ascii_case("succeeded") => {
                RunState::Succeeded
            }
            _ => RunState::Other,
        }
    }

    /// A success that ingested nothing (the second re-triggerable case).
    pub fn is_empty_success(&self) -> bool {
        self.state() == RunState::Succeeded
            && self.metrics.record_summary.output_record_count == Some(0)
    }

    /// When the run started (epoch ms): `startedAtUTC`, else `createdAt`.
    pub fn started_ms(&self) -> i64 {
        self.metrics
            .duration_summary
            .started_at_utc
            .unwrap_or(self.created_at)
    }

    /// When the run finished (epoch ms), if it did: `completedAtUTC`, else `updatedAt` for a
    /// finished run.
    pub fn completed_ms(&self) -> Option<i64> {
        self.metrics
            .duration_summary
            .completed_at_utc
            .or((self.state() != RunState::Other && self.updated_at > 0).then_some(self.updated_at))
    }

    /// The first error's code and message (the error filters match these).
    pub fn first_error(&self) -> (Option<String>, Option<String>) {
        match self.metrics.status_summary.errors.first() {
            Some(e) => (e.code.clone(), e.message.clone()),
            None => (None, None),
        }
    }
}

/// The re-trigger answer: the tutorial's `{id, etag}` of the new run, or (the OpenAPI spec) a
/// full run object, which has the same two fields.
#[derive(Clone, Debug, Deserialize)]
pub struct ReTriggered {
    pub id: String,
    #[serde(default, alias = "eTag")]
    pub etag: Option<String>,
}

/// The IMS token answer.
#[derive(Deserialize)]
pub struct ImsToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// Error bodies: the gateway's `{"error_code","message"}`, the service's `{"code","message"}`,
/// IMS's `{"error","error_description"}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error_code: Option<serde_json::Value>,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

impl ErrorBody {
    /// The most specific code (numbers as text: the gateway sends `"401013"` or `401013`).
    pub fn code(&self) -> Option<String> {
        let as_text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        self.error_code
            .as_ref()
            .and_then(as_text)
            .or_else(|| self.code.as_ref().and_then(as_text))
            .or_else(|| self.error.clone())
    }

    pub fn message(&self) -> Option<String> {
        self.message
            .clone()
            .or_else(|| self.error_description.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_run_parses_and_statuses_match_in_any_case() {
        let run: FlowRun = serde_json::from_value(serde_json::json!({
            "id": "r1", "flowId": "f1", "createdAt": 1000, "updatedAt": 5000,
            "createdClient": "c1", "eTag": "\"abc\"",
            "metrics": {
                "durationSummary": {"startedAtUTC": 1100, "completedAtUTC": 4900},
                "recordSummary": {"outputRecordCount": 0},
                "statusSummary": {"status": "Failed", "errors": [{"code": "CONNECTOR-2001", "message": "timeout"}]}
            },
            "unknown": {"ignored": true}
        }))
        .unwrap();
        assert_eq!(run.state(), RunState::Failed);
        assert_eq!(run.etag.as_deref(), Some("\"abc\""));
        assert_eq!(run.started_ms(), 1100);
        assert_eq!(run.completed_ms(), Some(4900));
        assert_eq!(
            run.first_error(),
            (Some("CONNECTOR-2001".into()), Some("timeout".into()))
        );
        assert!(!run.is_empty_success());
        let mut ok = run.clone();
        ok.metrics.status_summary.status = Some("SUCCESS".into());
        assert!(ok.is_empty_success());
        ok.metrics.status_summary.status = Some("inProgress".into());
        assert_eq!(ok.state(), RunState::Other);
        assert_eq!(ok.completed_ms(), Some(4900));
    }

    #[test]
    fn error_bodies_of_every_shape_give_a_code() {
        let gw: ErrorBody =
            serde_json::from_str(r#"{"error_code":"401013","message":"Oauth token is not valid"}"#)
                .unwrap();
        assert_eq!(gw.code().as_deref(), Some("401013"));
        let num: ErrorBody = serde_json::from_str(r#"{"error_code":403010}"#).unwrap();
        assert_eq!(num.code().as_deref(), Some("403010"));
        let ims: ErrorBody = serde_json::from_str(
            r#"{"error":"invalid_client","error_description":"invalid client_secret parameter"}"#,
        )
        .unwrap();
        assert_eq!(ims.code().as_deref(), Some("invalid_client"));
        assert_eq!(
            ims.message().as_deref(),
            Some("invalid client_secret parameter")
        );
    }
}
