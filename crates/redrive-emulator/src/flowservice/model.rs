//! Flows, runs and their lifecycle on the emulated clock.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::ims::Ims;
use super::ledger::ReTriggerLedgerEntry;
use super::scenario::{
    BATCH_FLOW_SPEC_ID, FlowKind, FlowRunStatus, FlowSpec, RunError, RunOutcome,
    STREAMING_FLOW_SPEC_ID,
};
use crate::config::FlowServiceConfig;
use crate::model::{HOUR, Ms, ts};
use crate::scenario::ScenarioError;

/// Most scheduled runs created for one flow by one settle (older due ones are skipped).
const MAX_SCHEDULED_PER_SETTLE: i64 = 1_000;

/// `createdClient` of scheduled and seeded runs (emulator choice).
pub const SCHEDULER_CLIENT: &str = "acp_flowservice_scheduler";

/// A UUID-shaped id derived from a kind and a name.
pub(crate) fn derived_uuid(kind: &str, name: &str) -> String {
    let d = Sha256::digest(format!("{kind}:{name}"));
    uuid_of(&d[..16])
}

fn uuid_of(b: &[u8]) -> String {
    let h: String = b.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How a run came to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum RunTrigger {
    /// Seeded by the scenario.
    Seeded,
    /// Created by the flow's schedule.
    Scheduled,
    /// Started by a handle helper / admin call.
    Manual,
    /// Created by `POST /runs/{source}/action?op=re-trigger`.
    ReTrigger {
        /// The run that was re-triggered.
        source_run_id: String,
    },
}

/// A run as tests see it (settled to now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRunSnapshot {
    /// Run id.
    pub id: String,
    /// Flow id.
    pub flow_id: String,
    /// Flow name.
    pub flow_name: String,
    /// Status now.
    pub status: FlowRunStatus,
    /// `statusSummary.errors` (empty while in progress).
    pub errors: Vec<RunError>,
    /// `recordSummary.inputRecordCount`.
    pub input_records: u64,
    /// `recordSummary.outputRecordCount`.
    pub output_records: u64,
    /// `recordSummary.failedRecordCount`.
    pub failed_records: u64,
    /// Start.
    pub created_at: jiff::Timestamp,
    /// Last change.
    pub updated_at: jiff::Timestamp,
    /// Completion (None while in progress).
    pub completed_at: Option<jiff::Timestamp>,
    /// Quoted etag as on the wire.
    pub etag: String,
    /// Origin.
    pub trigger: RunTrigger,
    /// `createdClient`.
    pub created_client: String,
}

#[derive(Debug)]
pub(crate) struct Flow {
    pub id: String,
    pub name: String,
    pub kind: FlowKind,
    pub sandbox: String,
    pub flow_spec_id: String,
    pub run_time: Ms,
    pub outcomes: Vec<RunOutcome>,
    pub next_outcome: usize,
    /// (every, next due).
    pub schedule: Option<(Ms, Ms)>,
    pub created: Ms,
    pub runs: Vec<usize>,
}

#[derive(Debug)]
pub(crate) struct Run {
    pub id: String,
    pub flow: usize,
    pub created: Ms,
    /// None = stays in progress until completed.
    pub ends: Option<Ms>,
    pub result: RunOutcome,
    pub trigger: RunTrigger,
    pub created_client: String,
    pub provider_ref: String,
}

impl Run {
    pub fn status(&self, now: Ms) -> FlowRunStatus {
        match self.ends {
            Some(e) if now >= e => self.result.status,
            _ => FlowRunStatus::InProgress,
        }
    }
    fn done(&self, now: Ms) -> bool {
        self.status(now) != FlowRunStatus::InProgress
    }
    pub fn updated(&self, now: Ms) -> Ms {
        match self.ends {
            Some(e) if now >= e => e,
            _ => self.created,
        }
    }
    pub fn etag(&self, now: Ms) -> String {
        let d = Sha256::digest(format!("etag:{}:{}", self.id, self.updated(now)));
        let h: String = d[..10].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{}-0000-0200-0000-{}\"", &h[0..8], &h[8..20])
    }
}

/// Why a re-trigger is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub cfg: FlowServiceConfig,
    pub flows: Vec<Flow>,
    pub runs: Vec<Run>,
    run_index: HashMap<String, usize>,
    flow_index: HashMap<String, usize>,
    pub ims: Ims,
    pub ledger: Vec<ReTriggerLedgerEntry>,
    pub rng: StdRng,
    pub throttle_rate: f64,
    pub retry_after: std::time::Duration,
}

fn dur_ms(d: std::time::Duration) -> Ms {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Model {
    pub fn new(cfg: FlowServiceConfig, seed: u64) -> Self {
        Model {
            throttle_rate: cfg.throttle_rate,
            retry_after: cfg.retry_after,
            cfg,
            flows: Vec::new(),
            runs: Vec::new(),
            run_index: HashMap::new(),
            flow_index: HashMap::new(),
            ims: Ims::default(),
            ledger: Vec::new(),
            rng: StdRng::seed_from_u64(seed ^ 0xF10E_5E1C),
        }
    }

    pub fn new_id(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let mut u = uuid::Builder::from_random_bytes(b).into_uuid().to_string();
        u.make_ascii_lowercase();
        u
    }

    pub fn flow_idx(&self, id: &str) -> Option<usize> {
        self.flow_index.get(id).copied()
    }

    pub fn run_idx(&self, id: &str) -> Option<usize> {
        self.run_index.get(id).copied()
    }

    /// Check specs against each other and the existing flows without changing anything.
    pub fn validate(&self, specs: &[FlowSpec]) -> Result<(), ScenarioError> {
        let mut ids = std::collections::HashSet::new();
        let mut run_ids = std::collections::HashSet::new();
        for f in specs {
            let bad = |m: String| ScenarioError::Invalid(format!("flow '{}': {m}", f.name));
            if f.name.trim().is_empty() {
                return Err(ScenarioError::Invalid("a flow has an empty name".into()));
            }
            if f.sandbox.trim().is_empty() {
                return Err(bad("empty sandbox".into()));
            }
            let id = f.flow_id();
            if !ids.insert(id.clone()) {
                return Err(bad(format!("duplicate flow id {id}")));
            }
            if let Some(s) = f.schedule
                && s.every.as_ms() < 1_000
            {
                return Err(bad("schedule.every must be at least 1s".into()));
            }
            if let Some(i) = self.flow_idx(&id)
                && self.flows[i].kind != f.kind
            {
                return Err(bad(format!(
                    "flow {id} exists as {:?}; its kind cannot change",
                    self.flows[i].kind
                )));
            }
            for r in &f.runs {
                if let Some(rid) = &r.id
                    && (self.run_index.contains_key(rid) || !run_ids.insert(rid.clone()))
                {
                    return Err(bad(format!("duplicate run id {rid}")));
                }
                if r.then.is_some() && r.finishes_in.is_none() {
                    return Err(bad("a run sets `then` without `finishesIn`".into()));
                }
            }
        }
        Ok(())
    }

    /// Seed flows (merging runs and scripts into existing flows with the same id); returns the
    /// run ids created per spec.
    pub fn seed(&mut self, specs: &[FlowSpec], now: Ms) -> Result<Vec<Vec<String>>, ScenarioError> {
        self.validate(specs)?;
        let mut out = Vec::new();
        for f in specs {
            let id = f.flow_id();
            let run_time = f
                .run_time
                .map_or(dur_ms(self.cfg.default_run_time), |d| d.as_ms());
            let fi = match self.flow_idx(&id) {
                Some(i) => {
                    let fl = &mut self.flows[i];
                    if !f.outcomes.is_empty() {
                        fl.outcomes = f.outcomes.clone();
                        fl.next_outcome = 0;
                    }
                    fl.run_time = run_time;
                    i
                }
                None => {
                    let i = self.flows.len();
                    self.flows.push(Flow {
                        id: id.clone(),
                        name: f.name.clone(),
                        kind: f.kind,
                        sandbox: f.sandbox.clone(),
                        flow_spec_id: f.flow_spec_id.clone().unwrap_or_else(|| {
                            match f.kind {
                                FlowKind::Batch => BATCH_FLOW_SPEC_ID,
                                FlowKind::Streaming => STREAMING_FLOW_SPEC_ID,
                            }
                            .to_string()
                        }),
                        run_time,
                        outcomes: f.outcomes.clone(),
                        next_outcome: 0,
                        schedule: None,
                        created: now - 30 * 24 * HOUR,
                        runs: Vec::new(),
                    });
                    self.flow_index.insert(id.clone(), i);
                    i
                }
            };
            if let Some(s) = f.schedule {
                let every = s.every.as_ms();
                let first = s.first_in.map_or(every, |d| d.as_ms());
                self.flows[fi].schedule = Some((every, now + first));
            }
            let mut ids = Vec::new();
            // Oldest first so indexes follow creation order.
            let mut runs: Vec<_> = f.runs.iter().collect();
            runs.sort_by_key(|r| std::cmp::Reverse(r.started_ago.map_or(HOUR, |d| d.as_ms())));
            for r in runs {
                let created = now - r.started_ago.map_or(HOUR, |d| d.as_ms());
                let (ends, result) = if r.outcome.status == FlowRunStatus::InProgress {
                    match r.finishes_in {
                        Some(d) => (
                            Some(now + d.as_ms()),
                            r.then.clone().unwrap_or_else(|| RunOutcome::success(100)),
                        ),
                        None => (None, r.outcome.clone()),
                    }
                } else {
                    let len = r
                        .finishes_in
                        .or(r.outcome.duration)
                        .map_or(run_time, |d| d.as_ms());
                    ((Some((created + len).min(now))), r.outcome.clone())
                };
                let rid = match &r.id {
                    Some(id) => id.clone(),
                    None => self.new_id(),
                };
                self.push_run(
                    fi,
                    rid.clone(),
                    created,
                    ends,
                    result,
                    RunTrigger::Seeded,
                    SCHEDULER_CLIENT,
                );
                ids.push(rid);
            }
            out.push(ids);
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn push_run(
        &mut self,
        flow: usize,
        id: String,
        created: Ms,
        ends: Option<Ms>,
        result: RunOutcome,
        trigger: RunTrigger,
        client: &str,
    ) -> usize {
        let i = self.runs.len();
        let provider_ref = self.new_id();
        self.runs.push(Run {
            id: id.clone(),
            flow,
            created,
            ends,
            result,
            trigger,
            created_client: client.to_string(),
            provider_ref,
        });
        self.run_index.insert(id, i);
        self.flows[flow].runs.push(i);
        i
    }

    /// Start a new run of a flow at `at` taking the next scripted outcome.
    pub fn start_run(&mut self, flow: usize, at: Ms, trigger: RunTrigger, client: &str) -> usize {
        let f = &mut self.flows[flow];
        let outcome = if f.outcomes.is_empty() {
            RunOutcome::success(100)
        } else {
            let o = f.outcomes[f.next_outcome.min(f.outcomes.len() - 1)].clone();
            f.next_outcome = (f.next_outcome + 1).min(f.outcomes.len() - 1);
            o
        };
        let ends = if outcome.status == FlowRunStatus::InProgress {
            None
        } else {
            Some(at + outcome.duration.map_or(f.run_time, |d| d.as_ms()))
        };
        let id = self.new_id();
        self.push_run(flow, id, at, ends, outcome, trigger, client)
    }

    /// Create the scheduled runs due by `now`.
    pub fn settle(&mut self, now: Ms) {
        for fi in 0..self.flows.len() {
            let Some((every, mut next)) = self.flows[fi].schedule else {
                continue;
            };
            if next > now {
                continue;
            }
            let due = (now - next) / every + 1;
            if due > MAX_SCHEDULED_PER_SETTLE {
                next += (due - MAX_SCHEDULED_PER_SETTLE) * every;
            }
            while next <= now {
                self.start_run(fi, next, RunTrigger::Scheduled, SCHEDULER_CLIENT);
                next += every;
            }
            self.flows[fi].schedule = Some((every, next));
        }
    }

    /// Eligibility of a run for re-trigger (api-facts §3.4).
    pub fn check_retrigger(&self, run: usize, now: Ms) -> Result<(), Refusal> {
        let r = &self.runs[run];
        let f = &self.flows[r.flow];
        let refuse = |code: &'static str, message: String| Refusal {
            status: 400,
            code,
            message,
        };
        if f.kind == FlowKind::Streaming {
            return Err(refuse(
                "RUN_NOT_RETRIGGERABLE_STREAMING",
                format!(
                    "Run {} belongs to streaming flow {}; only runs of batch sources can be re-triggered",
                    r.id, f.id
                ),
            ));
        }
        match r.status(now) {
            FlowRunStatus::Failed => Ok(()),
            FlowRunStatus::Success if r.result.output_records == 0 => Ok(()),
            FlowRunStatus::Success => Err(refuse(
                "RUN_NOT_RETRIGGERABLE_SUCCEEDED",
                format!(
                    "Run {} succeeded with {} ingested records; only failed runs or successful runs with zero ingested records can be re-triggered",
                    r.id, r.result.output_records
                ),
            )),
            FlowRunStatus::InProgress => Err(refuse(
                "RUN_NOT_RETRIGGERABLE_IN_PROGRESS",
                format!("Run {} is still in progress", r.id),
            )),
        }
    }

    pub fn snapshot(&self, run: usize, now: Ms) -> FlowRunSnapshot {
        let r = &self.runs[run];
        let f = &self.flows[r.flow];
        let done = r.done(now);
        FlowRunSnapshot {
            id: r.id.clone(),
            flow_id: f.id.clone(),
            flow_name: f.name.clone(),
            status: r.status(now),
            errors: if done {
                r.result.errors.clone()
            } else {
                Vec::new()
            },
            input_records: if done { r.result.input_records } else { 0 },
            output_records: if done { r.result.output_records } else { 0 },
            failed_records: if done { r.result.failed_records } else { 0 },
            created_at: ts(r.created),
            updated_at: ts(r.updated(now)),
            completed_at: done.then(|| ts(r.updated(now))),
            etag: r.etag(now),
            trigger: r.trigger.clone(),
            created_client: r.created_client.clone(),
        }
    }

    fn sandbox_id(sandbox: &str) -> String {
        derived_uuid("sandbox", sandbox)
    }

    /// The wire run object (api-facts §3.3, §5.3).
    pub fn run_json(&self, run: usize, now: Ms) -> Value {
        let r = &self.runs[run];
        let f = &self.flows[r.flow];
        let done = r.done(now);
        let status = r.status(now);
        let (inp, out, failed) = if done {
            (
                r.result.input_records,
                r.result.output_records,
                r.result.failed_records,
            )
        } else {
            (0, 0, 0)
        };
        let errors: Vec<Value> = if done {
            r.result
                .errors
                .iter()
                .map(|e| json!({"code": e.code, "message": e.message}))
                .collect()
        } else {
            Vec::new()
        };
        let activity_id = derived_uuid("activity", &r.id);
        let duration = if done {
            json!({"startedAtUTC": r.created, "completedAtUTC": r.updated(now)})
        } else {
            json!({"startedAtUTC": r.created})
        };
        let summaries = json!({
            "durationSummary": duration,
            "sizeSummary": {"inputBytes": inp * 512, "outputBytes": out * 480},
            "recordSummary": {
                "inputRecordCount": inp,
                "createdRecordCount": out,
                "outputRecordCount": out,
                "failedRecordCount": failed,
            },
            "fileSummary": {"inputFileCount": u64::from(inp > 0), "outputFileCount": u64::from(out > 0), "manifest": {}},
            "statusSummary": {
                "status": status.as_str(),
                "errors": errors,
                "activityRefs": [activity_id],
            },
        });
        let mut activity = summaries.clone();
        if let Some(m) = activity.as_object_mut() {
            m.insert("id".into(), json!(activity_id));
            m.insert("name".into(), json!("Ingestion"));
            if let Some(s) = m.get_mut("statusSummary").and_then(Value::as_object_mut) {
                s.remove("activityRefs");
            }
        }
        let by = format!("{}@AdobeID", r.created_client);
        json!({
            "id": r.id,
            "flowId": f.id,
            "createdAt": r.created,
            "updatedAt": r.updated(now),
            "createdBy": by,
            "updatedBy": by,
            "createdClient": r.created_client,
            "updatedClient": r.created_client,
            "sandboxId": Self::sandbox_id(&f.sandbox),
            "sandboxName": f.sandbox,
            "imsOrgId": self.cfg.org_id,
            "flowSpec": {"id": f.flow_spec_id, "version": "1.0"},
            "providerRefId": r.provider_ref,
            "etag": r.etag(now),
            "metrics": summaries,
            "activities": [activity],
        })
    }

    /// The wire flow object.
    pub fn flow_json(&self, flow: usize, now: Ms) -> Value {
        let f = &self.flows[flow];
        let etag = {
            let d = Sha256::digest(format!("flow-etag:{}", f.id));
            let h: String = d[..10].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{}-0000-0200-0000-{}\"", &h[0..8], &h[8..20])
        };
        let last = f.runs.iter().max_by_key(|&&i| (self.runs[i].created, i));
        let mut v = json!({
            "id": f.id,
            "name": f.name,
            "description": format!("{} ({} dataflow, emulated)", f.name, match f.kind { FlowKind::Batch => "batch", FlowKind::Streaming => "streaming" }),
            "flowSpec": {"id": f.flow_spec_id, "version": "1.0"},
            "state": "enabled",
            "version": etag,
            "etag": etag,
            "sandboxId": Self::sandbox_id(&f.sandbox),
            "sandboxName": f.sandbox,
            "imsOrgId": self.cfg.org_id,
            "createdAt": f.created,
            "updatedAt": f.created,
            "createdBy": format!("{SCHEDULER_CLIENT}@AdobeID"),
            "sourceConnectionIds": [derived_uuid("source-connection", &f.id)],
            "targetConnectionIds": [derived_uuid("target-connection", &f.id)],
            "inheritedAttributes": {"properties": {"isSourceFlow": true}},
        });
        if let (Some(m), FlowKind::Batch) = (v.as_object_mut(), f.kind) {
            let (freq, interval) = match f.schedule {
                Some((every, _)) if every % 60_000 == 0 => ("minute", every / 60_000),
                Some((every, _)) => ("second", every / 1000),
                None => ("once", 0),
            };
            m.insert(
                "scheduleParams".into(),
                json!({"startTime": f.created / 1000, "frequency": freq, "interval": interval}),
            );
        }
        if let (Some(m), Some(&i)) = (v.as_object_mut(), last) {
            let r = &self.runs[i];
            let mut d =
                json!({"id": r.id, "state": r.status(now).as_str(), "startedAtUTC": r.created});
            if r.done(now) {
                d["completedAtUTC"] = json!(r.updated(now));
            }
            m.insert("lastRunDetails".into(), d);
        }
        v
    }
}
