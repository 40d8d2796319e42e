//! The `flows:` and `imsClients:` parts of a scenario: Flow Service dataflows, their seeded runs,
//! outcome scripts and schedules, and the IMS OAuth server-to-server clients.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scenario::{Dur, Scenario};

/// Scopes the Adobe docs show for Platform API credentials (api-facts §3.1).
pub const DEFAULT_SCOPES: &[&str] = &[
    "openid",
    "AdobeID",
    "read_organizations",
    "additional_info.projectedProductContext",
    "session",
];

/// Flow spec id used for batch flows unless a flow sets `flowSpecId` (a cloud-storage batch spec).
pub const BATCH_FLOW_SPEC_ID: &str = "9753525b-82c7-4dce-8a9b-5ccfce2b9876";
/// Flow spec id used for streaming flows unless a flow sets `flowSpecId`.
pub const STREAMING_FLOW_SPEC_ID: &str = "d69717ba-71b4-4313-b654-49f9cf126d7a";

/// Batch or streaming source dataflow. Only batch runs can be re-triggered (api-facts §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    /// Scheduled batch ingestion (re-triggerable).
    #[default]
    Batch,
    /// Streaming ingestion (runs cannot be re-triggered).
    Streaming,
}

/// Run status (`metrics.statusSummary.status`). Wire values: `success`, `failed` (documented)
/// and `inProgress` (emulator choice: the run enum is UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowRunStatus {
    /// Still running.
    #[serde(rename = "inProgress")]
    InProgress,
    /// Completed successfully (possibly with errors below the threshold, or zero records).
    #[serde(rename = "success")]
    Success,
    /// Failed.
    #[serde(rename = "failed")]
    Failed,
}

impl FlowRunStatus {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowRunStatus::InProgress => "inProgress",
            FlowRunStatus::Success => "success",
            FlowRunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for FlowRunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `statusSummary.errors[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunError {
    /// Error code, e.g. `CONNECTOR-2001`.
    pub code: String,
    /// Error message.
    pub message: String,
}

impl RunError {
    /// An error with a realistic default message for well-known codes.
    pub fn new(code: &str) -> Self {
        RunError {
            code: code.to_string(),
            message: default_run_error_message(code),
        }
    }
}

/// A realistic message for a Flow Service error code.
pub fn default_run_error_message(code: &str) -> String {
    match code {
        "CONNECTOR-1001" => "Something went wrong while reading from the source".to_string(),
        "CONNECTOR-2001" => {
            "Unable to connect to the source: connection timed out or was refused".to_string()
        }
        "CONNECTOR-3001" => "Authentication with the source failed".to_string(),
        other => format!("{other}: simulated failure"),
    }
}

/// What a run ends in, and its record counts.
///
/// String forms: `success` (100 records), `success(N)` (N records; `success(0)` = zero ingested,
/// re-triggerable), `failed` (`CONNECTOR-1001`), `failed(CODE)`, `failed(CODE, message)`,
/// `running` (stays in progress until completed by a handle helper). Map form:
/// `{status, code?, message?, errors?, inputRecords?, outputRecords?, failedRecords?, duration?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Final status (`InProgress` = never completes by itself).
    pub status: FlowRunStatus,
    /// `statusSummary.errors`.
    pub errors: Vec<RunError>,
    /// `recordSummary.inputRecordCount`.
    pub input_records: u64,
    /// `recordSummary.outputRecordCount` (the ingested records).
    pub output_records: u64,
    /// `recordSummary.failedRecordCount`.
    pub failed_records: u64,
    /// Run time of this run (default: the flow's `runTime`).
    pub duration: Option<Dur>,
}

impl RunOutcome {
    /// `success` with `records` read and ingested.
    pub fn success(records: u64) -> Self {
        RunOutcome {
            status: FlowRunStatus::Success,
            errors: Vec::new(),
            input_records: records,
            output_records: records,
            failed_records: 0,
            duration: None,
        }
    }
    /// `success` with zero ingested records (re-triggerable).
    pub fn success_zero_records() -> Self {
        Self::success(0)
    }
    /// `failed` with one error `code` and its default message.
    pub fn failed(code: &str) -> Self {
        Self::failed_with(code, &default_run_error_message(code))
    }
    /// `failed` with one error.
    pub fn failed_with(code: &str, message: &str) -> Self {
        RunOutcome {
            status: FlowRunStatus::Failed,
            errors: vec![RunError {
                code: code.to_string(),
                message: message.to_string(),
            }],
            input_records: 0,
            output_records: 0,
            failed_records: 0,
            duration: None,
        }
    }
    /// Stays in progress.
    pub fn running() -> Self {
        RunOutcome {
            status: FlowRunStatus::InProgress,
            errors: Vec::new(),
            input_records: 0,
            output_records: 0,
            failed_records: 0,
            duration: None,
        }
    }
    /// The same outcome reached after `d`.
    pub fn after(mut self, d: Duration) -> Self {
        self.duration = Some(Dur(d));
        self
    }
    /// Parse the string form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (head, args) = match t.split_once('(') {
            Some((h, rest)) => {
                let inner = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("missing ')' in run outcome '{s}'"))?;
                (h.trim(), Some(inner.trim()))
            }
            None => (t, None),
        };
        let head = head.to_ascii_lowercase().replace(['-', '_'], "");
        match head.as_str() {
            "success" | "succeeded" | "succeed" => match args {
                None | Some("") => Ok(Self::success(100)),
                Some(n) => n
                    .trim_start_matches("records=")
                    .parse::<u64>()
                    .map(Self::success)
                    .map_err(|_| format!("expected a record count in '{s}'")),
            },
            "failed" | "fail" | "failure" => match args {
                None | Some("") => Ok(Self::failed("CONNECTOR-1001")),
                Some(a) => match a.split_once(',') {
                    Some((code, msg)) => Ok(Self::failed_with(code.trim(), msg.trim())),
                    None => Ok(Self::failed(a)),
                },
            },
            "running" | "inprogress" => Ok(Self::running()),
            other => Err(format!(
                "unknown run outcome '{other}' in '{s}' (expected success, success(N), failed(CODE[, message]) or running)"
            )),
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            FlowRunStatus::Success => write!(f, "success({})", self.output_records),
            FlowRunStatus::InProgress => write!(f, "running"),
            FlowRunStatus::Failed => match self.errors.first() {
                Some(e) => write!(f, "failed({}, {})", e.code, e.message),
                None => write!(f, "failed"),
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutcomeMap {
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RunError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_records: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<Dur>,
}

impl Serialize for RunOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        OutcomeMap {
            status: self.status.as_str().to_string(),
            code: None,
            message: None,
            errors: self.errors.clone(),
            input_records: Some(self.input_records),
            output_records: Some(self.output_records),
            failed_records: Some(self.failed_records),
            duration: self.duration,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RunOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Str(String),
            Map(OutcomeMap),
        }
        match Repr::deserialize(d)? {
            Repr::Str(s) => RunOutcome::parse(&s).map_err(serde::de::Error::custom),
            Repr::Map(m) => {
                let mut o = RunOutcome::parse(&m.status).map_err(serde::de::Error::custom)?;
                if o.status == FlowRunStatus::Failed {
                    o.errors.clear();
                }
                if let Some(code) = m.code {
                    let message = m
                        .message
                        .unwrap_or_else(|| default_run_error_message(&code));
                    o.errors.push(RunError { code, message });
                } else if o.status == FlowRunStatus::Failed && m.errors.is_empty() {
                    o.errors.push(RunError::new("CONNECTOR-1001"));
                }
                o.errors.extend(m.errors);
                if let Some(n) = m.input_records {
                    o.input_records = n;
                }
                if let Some(n) = m.output_records {
                    o.output_records = n;
                }
                if let Some(n) = m.failed_records {
                    o.failed_records = n;
                }
                o.duration = m.duration;
                Ok(o)
            }
        }
    }
}

/// A run that exists when the flow is seeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowRunSpec {
    /// Run id (a UUID is generated if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the run ended in (or `running`).
    pub outcome: RunOutcome,
    /// When it started, relative to the clock at seeding (default 1 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ago: Option<Dur>,
    /// Run time (default: the outcome's `duration`, else the flow's `runTime`). A running run
    /// with `finishesIn` completes that long after seeding with `then` (default success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finishes_in: Option<Dur>,
    /// The outcome a `running` run with `finishesIn` ends in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<RunOutcome>,
}

impl FlowRunSpec {
    /// A run that ended in `outcome`, started `started_ago`.
    pub fn new(outcome: RunOutcome, started_ago: Duration) -> Self {
        FlowRunSpec {
            id: None,
            outcome,
            started_ago: Some(Dur(started_ago)),
            finishes_in: None,
            then: None,
        }
    }
    /// A failed run.
    pub fn failed(code: &str, started_ago: Duration) -> Self {
        Self::new(RunOutcome::failed(code), started_ago)
    }
    /// A successful run with `records` ingested.
    pub fn succeeded(records: u64, started_ago: Duration) -> Self {
        Self::new(RunOutcome::success(records), started_ago)
    }
    /// A run still in progress; it ends in `then` after `finishes_in` (None = never by itself).
    pub fn running(started_ago: Duration, finishes_in: Option<(Duration, RunOutcome)>) -> Self {
        let mut r = Self::new(RunOutcome::running(), started_ago);
        if let Some((d, o)) = finishes_in {
            r.finishes_in = Some(Dur(d));
            r.then = Some(o);
        }
        r
    }
    /// Set the run id.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
}

/// Scheduled runs: a new run every `every`, the first `firstIn` after seeding (default `every`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Interval between scheduled runs (at least 1 s).
    pub every: Dur,
    /// Delay from seeding to the first scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_in: Option<Dur>,
}

/// One dataflow (`GET /flows/{id}`) with its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowSpec {
    /// Flow id (UUID-like; generated from the name if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Name.
    pub name: String,
    /// `batch` (default) or `streaming`.
    #[serde(default)]
    pub kind: FlowKind,
    /// Sandbox (`x-sandbox-name`), default `prod`.
    #[serde(default = "default_sandbox")]
    pub sandbox: String,
    /// Flow spec id (default per kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_spec_id: Option<String>,
    /// Run time of new runs (re-triggered or scheduled) unless the outcome sets one (default:
    /// `FlowServiceConfig::default_run_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_time: Option<Dur>,
    /// Outcome script of new runs (re-triggered and scheduled, in creation order); the last
    /// entry repeats. Empty = `success`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<RunOutcome>,
    /// Scheduled runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Runs present at seeding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<FlowRunSpec>,
}

fn default_sandbox() -> String {
    "prod".to_string()
}

impl FlowSpec {
    /// A batch flow in sandbox `prod`.
    pub fn batch(name: &str) -> Self {
        FlowSpec {
            id: None,
            name: name.to_string(),
            kind: FlowKind::Batch,
            sandbox: default_sandbox(),
            flow_spec_id: None,
            run_time: None,
            outcomes: Vec::new(),
            schedule: None,
            runs: Vec::new(),
        }
    }
    /// A streaming flow in sandbox `prod`.
    pub fn streaming(name: &str) -> Self {
        FlowSpec {
            kind: FlowKind::Streaming,
            ..Self::batch(name)
        }
    }
    /// Set the flow id.
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
    /// Set the sandbox.
    pub fn sandbox(mut self, s: &str) -> Self {
        self.sandbox = s.to_string();
        self
    }
    /// Run time of new runs.
    pub fn run_time(mut self, d: Duration) -> Self {
        self.run_time = Some(Dur(d));
        self
    }
    /// Outcome script of new runs.
    pub fn outcomes(mut self, o: impl IntoIterator<Item = RunOutcome>) -> Self {
        self.outcomes = o.into_iter().collect();
        self
    }
    /// Scheduled runs every `every`, the first after `first_in`.
    pub fn every(mut self, every: Duration, first_in: Duration) -> Self {
        self.schedule = Some(ScheduleSpec {
            every: Dur(every),
            first_in: Some(Dur(first_in)),
        });
        self
    }
    /// Add a seeded run.
    pub fn run(mut self, r: FlowRunSpec) -> Self {
        self.runs.push(r);
        self
    }
    /// The flow id this spec gets (explicit, or derived from the name).
    pub fn flow_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| super::model::derived_uuid("flow", &self.name))
    }
}

/// An OAuth server-to-server credential IMS accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImsClientSpec {
    /// `client_id` (also the `x-api-key`).
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// Organization (`x-gw-ims-org-id`); default `FlowServiceConfig::org_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Scopes the client may request (default [`DEFAULT_SCOPES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl ImsClientSpec {
    /// A client with the default scopes and org.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        ImsClientSpec {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            org_id: None,
            scopes: None,
        }
    }
    /// Restrict the scopes the client may request.
    pub fn scopes(mut self, s: &[&str]) -> Self {
        self.scopes = Some(s.iter().map(|s| s.to_string()).collect());
        self
    }
    /// Set the organization.
    pub fn org(mut self, org: &str) -> Self {
        self.org_id = Some(org.to_string());
        self
    }
    /// Scopes granted to the client.
    pub fn granted_scopes(&self) -> Vec<String> {
        self.scopes
            .clone()
            .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect())
    }
}

/// Client id of the demo IMS credential.
pub const DEMO_CLIENT_ID: &str = "demo-client";
/// Client secret of the demo IMS credential.
pub const DEMO_CLIENT_SECRET: &str = "demo-secret";

impl Scenario {
    /// Add a Flow Service dataflow.
    pub fn with_flow(mut self, f: FlowSpec) -> Self {
        self.flows.push(f);
        self
    }

    /// Add an IMS client credential.
    pub fn with_ims_client(mut self, c: ImsClientSpec) -> Self {
        self.ims_clients.push(c);
        self
    }

    /// Flow Service demo data (docs/emulator.md, "Flow Service"): IMS client
    /// `demo-client` / `demo-secret`, and in sandbox `prod`:
    /// - `crm-accounts-daily` (batch): failed twice with `CONNECTOR-2001`; re-triggered runs fail
    ///   once more with it, then succeed.
    /// - `s3-orders-hourly` (batch): a success with zero ingested records (re-triggerable) and
    ///   older successes.
    /// - `sftp-inventory` (batch): failed with `CONNECTOR-3001` (permanent: keeps failing),
    ///   and a run in progress.
    /// - `web-events-stream` (streaming): a failed run (not re-triggerable).
    /// - `ads-spend-nightly` (batch): failed 3 h ago, superseded by a later successful
    ///   scheduled run 1 h ago; scheduled every hour.
    pub fn demo_flows() -> Self {
        let h = |n: u64| Duration::from_secs(n * 3600);
        let m = |n: u64| Duration::from_secs(n * 60);
        Scenario::new()
            .with_ims_client(ImsClientSpec::new(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))
            .with_flow(
                FlowSpec::batch("crm-accounts-daily")
                    .run_time(Duration::from_secs(20))
                    .outcomes([
                        RunOutcome::failed("CONNECTOR-2001"),
                        RunOutcome::success(1200),
                    ])
                    .run(FlowRunSpec::succeeded(1180, h(50)))
                    .run(FlowRunSpec::failed("CONNECTOR-2001", h(26)))
                    .run(FlowRunSpec::failed("CONNECTOR-2001", h(2))),
            )
            .with_flow(
                FlowSpec::batch("s3-orders-hourly")
                    .run_time(Duration::from_secs(10))
                    .outcomes([RunOutcome::success(340)])
                    .run(FlowRunSpec::succeeded(310, h(3)))
                    .run(FlowRunSpec::succeeded(295, h(2)))
                    .run(FlowRunSpec::new(RunOutcome::success_zero_records(), h(1))),
            )
            .with_flow(
                FlowSpec::batch("sftp-inventory")
                    .outcomes([RunOutcome::failed("CONNECTOR-3001")])
                    .run(FlowRunSpec::failed("CONNECTOR-3001", h(5)))
                    .run(FlowRunSpec::running(
                        m(3),
                        Some((m(2), RunOutcome::failed("CONNECTOR-3001"))),
                    )),
            )
            .with_flow(
                FlowSpec::streaming("web-events-stream")
                    .run(FlowRunSpec::succeeded(52_000, h(4)))
                    .run(FlowRunSpec::failed("CONNECTOR-1001", h(1))),
            )
            .with_flow(
                FlowSpec::batch("ads-spend-nightly")
                    .every(h(1), m(30))
                    .outcomes([RunOutcome::success(75)])
                    .run(FlowRunSpec::failed("CONNECTOR-2001", h(3)))
                    .run(FlowRunSpec::succeeded(80, h(1))),
            )
    }
}
