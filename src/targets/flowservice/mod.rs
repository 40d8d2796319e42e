//! Adobe Experience Platform Flow Service target: failed batch dataflow runs are re-triggered
//! (`POST /runs/{id}/action?op=re-trigger`, api-facts §3).
//!
//! A re-trigger creates a **new** run and carries no idempotency key, so "never act twice" rests
//! on the attempt ledger ([`Idempotency::Ledger`]) and on lineage ([`lineage`]): attempt *n* of
//! root *R* is claimed as the record `(R, n)` before acting, acts on the lineage's tip (the run
//! attempt *n − 1* created, or *R*), and records the new run's id and etag. Protocol:
//! 1. claim `(R, n)` (create-is-claim);
//! 2. re-read the tip (still failed?) and the flow's newest successes (superseded?);
//! 3. re-trigger with `If-Match` on the etag just read, never retried blindly;
//! 4. settle with the new run. A claim left in `Intent` by a crash is resolved after its
//!    deadline by **adopting** the run our client created after the claim that no record owns;
//!    only when there is none is it taken over (compare-and-swap) and acted on.

pub mod credentials;
pub mod http;
pub mod ims;
pub mod lineage;
pub mod platform;
pub mod run;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jiff::Timestamp;

use self::credentials::{Credentials, SecretStore};
use self::lineage::{FlowView, adoptions};
use self::platform::{Platform, ReTriggerResult};
use self::run::{Flow, FlowRun, RunState};
use super::{
    Discovery, ErrorCategory, RedriveOutcome, Target, TargetError, WorkflowIssue, ledger_error,
    not_this_target, outcome,
};
use crate::clock::shift;
use crate::engine::{
    Candidate, Details, Idempotency, Reason, TargetLimits, signed_duration as signed,
};
use crate::ledger::{AttemptKey, AttemptRecord, ClaimResult, Ledger, NewClaim, Outcome, Phase};
use crate::policy::{Policy, TargetKind};

/// Flows read at once within one policy.
const FLOW_CONCURRENCY: usize = 4;
/// Failed runs read per flow and poll at most (newest first).
const MAX_FAILED_RUNS: usize = 1000;
/// Successful runs read per flow to decide supersession.
const SUCCESSES_READ: usize = 5;
/// Runs that start this long before the window are still listed (a run's window counts from
/// its completion, the listing filter from its creation).
const LONGEST_RUN: Duration = Duration::from_secs(86_400);
/// Clock skew allowed between the operator and Adobe, and between replicas.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long a claim may stay in `Intent` before it is resolved from the service: two reads
/// and the re-trigger, each bounded by the operation timeout, plus clock skew. The holder never
/// starts the re-trigger with less than one operation timeout left.
pub fn claim_deadline(operation_timeout: Duration) -> Duration {
    operation_timeout * 3 + CLOCK_SKEW
}

/// Adobe's production endpoints (api-facts §3.1).
pub const DEFAULT_PLATFORM_URL: &str = "https://platform.adobe.io/data/foundation/flowservice";
pub const DEFAULT_IMS_URL: &str = "https://ims-na1.adobelogin.com/ims/token/v3";

/// Operator-level Adobe settings (flags): endpoints are never policy fields, so a tenant cannot
/// send its bearer token to a host of its choosing.
#[derive(Clone, Debug)]
pub struct AdobeSettings {
    pub platform_url: String,
    pub ims_url: String,
    pub retrigger_op: platform::ReTriggerOp,
}

impl Default for AdobeSettings {
    fn default() -> Self {
        Self {
            platform_url: DEFAULT_PLATFORM_URL.into(),
            ims_url: DEFAULT_IMS_URL.into(),
            retrigger_op: platform::ReTriggerOp::default(),
        }
    }
}

/// Settings of one adapter (one namespace, sandbox and credentials Secret).
#[derive(Clone)]
pub struct FlowServiceSettings {
    pub discovery_ttl: Duration,
    /// Namespace of the ledger records (`local` in local mode).
    pub namespace: String,
    /// Namespace the Secret is read from (empty in local mode).
    pub secret_namespace: String,
    pub secret_name: String,
    pub sandbox: String,
    pub holder: String,
    pub ledger: Option<Arc<dyn Ledger>>,
    pub operation_timeout: Duration,
}

type Cached<T> = (Instant, T);

/// The Flow Service adapter.
pub struct FlowService {
    platform: Arc<Platform>,
    secrets: SecretStore,
    settings: FlowServiceSettings,
    flows: Mutex<HashMap<String, Cached<Option<Flow>>>>,
    all_flows: Mutex<Option<Cached<Vec<Flow>>>>,
    /// `createdAt` of lineage roots (immutable facts, fetched once).
    root_created: Mutex<HashMap<String, i64>>,
}

impl FlowService {
    pub fn new(
        platform: Arc<Platform>,
        secrets: SecretStore,
        settings: FlowServiceSettings,
    ) -> Self {
        Self {
            platform,
            secrets,
            settings,
            flows: Mutex::new(HashMap::new()),
            all_flows: Mutex::new(None),
            root_created: Mutex::new(HashMap::new()),
        }
    }

    async fn credentials(&self) -> Result<Credentials, TargetError> {
        self.secrets
            .credentials(&self.settings.secret_namespace, &self.settings.secret_name)
            .await
    }

    fn sandbox(&self) -> &str {
        &self.settings.sandbox
    }

    async fn flow(&self, creds: &Credentials, id: &str) -> Result<Option<Flow>, TargetError> {
        if let Some((at, f)) = self.flows.lock().expect("lock").get(id)
            && at.elapsed() < self.settings.discovery_ttl
        {
            return Ok(f.clone());
        }
        let f = self.platform.get_flow(creds, self.sandbox(), id).await?;
        self.flows
            .lock()
            .expect("lock")
            .insert(id.to_string(), (Instant::now(), f.clone()));
        Ok(f)
    }

    async fn every_flow(&self, creds: &Credentials) -> Result<Vec<Flow>, TargetError> {
        if let Some((at, list)) = self.all_flows.lock().expect("lock").as_ref()
            && at.elapsed() < self.settings.discovery_ttl
        {
            return Ok(list.clone());
        }
        let list = self.platform.list_flows(creds, self.sandbox()).await?;
        *self.all_flows.lock().expect("lock") = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The policy's flows: explicit ids (each must exist) plus the selector's matches.
    async fn resolve(
        &self,
        policy: &Policy,
        creds: &Credentials,
    ) -> Result<(Vec<Flow>, Vec<(String, WorkflowIssue)>), TargetError> {
        let spec = policy
            .flow_service()
            .ok_or_else(|| not_this_target(policy))?;
        let mut flows = Vec::new();
        let mut issues = Vec::new();
        for id in &spec.flows {
            match self.flow(creds, id).await {
                Ok(Some(f)) => flows.push(f),
                Ok(None) => issues.push((
                    id.clone(),
                    WorkflowIssue::Failed(TargetError {
                        api: "GetFlow",
                        category: ErrorCategory::NotFound,
                        code: Some("FLOW_NOT_FOUND".into()),
                        message: format!(
                            "dataflow {id} (spec.flowService.flows) does not exist in sandbox {}",
                            self.sandbox()
                        ),
                    }),
                )),
                Err(e) => issues.push((id.clone(), WorkflowIssue::Failed(e))),
            }
        }
        if let Some(re) = &spec.selector {
            for f in self.every_flow(creds).await? {
                if f.name.as_deref().is_some_and(|n| re.is_match(n))
                    && platform::safe_id(&f.id)
                    && !flows.iter().any(|g: &Flow| g.id == f.id)
                {
                    flows.push(f);
                }
            }
        }
        flows.sort_by(|a, b| a.id.cmp(&b.id));
        let (streaming, batch): (Vec<Flow>, Vec<Flow>) =
            flows.into_iter().partition(Flow::is_streaming);
        for f in streaming {
            issues.push((f.id, WorkflowIssue::Skipped(Reason::StreamingSource)));
        }
        Ok((batch, issues))
    }

    /// The ledger records of this adapter's flows (empty without a ledger).
    async fn records(&self) -> Result<Vec<AttemptRecord>, TargetError> {
        let Some(ledger) = self.settings.ledger.as_deref() else {
            return Ok(Vec::new());
        };
        let all = ledger
            .list(&self.settings.namespace, None)
            .await
            .map_err(ledger_error)?;
        Ok(all
            .into_iter()
            .filter(|r| r.key.target == TargetKind::FlowService.as_str())
            .collect())
    }

    async fn newest_successes(
        &self,
        creds: &Credentials,
        flow: &str,
    ) -> Result<Vec<FlowRun>, TargetError> {
        self.platform
            .list_runs(
                creds,
                self.sandbox(),
                &[
                    format!("flowId=={flow}"),
                    "metrics.statusSummary.status==success".into(),
                ],
                "-createdAt",
                SUCCESSES_READ,
            )
            .await
    }

    /// Settle expired intents of `flow` whose crashed holder's run can be found (adoption).
    /// Returns the records as they are afterwards.
    async fn adopt(
        &self,
        creds: &Credentials,
        flow: &str,
        mut records: Vec<AttemptRecord>,
        now: Timestamp,
    ) -> Result<Vec<AttemptRecord>, TargetError> {
        let Some(ledger) = self.settings.ledger.as_deref() else {
            return Ok(records);
        };
        let Some(oldest) = records
            .iter()
            .filter(|r| r.phase == Phase::Intent && now > r.deadline)
            .map(|r| r.intent_at)
            .min()
        else {
            return Ok(records);
        };
        // Claims are on the operator's clock, runs' createdAt on Adobe's: compare them on Adobe's
        // (CLOCK_SKEW still covers the estimate's error and the replicas' disagreement).
        let skew = self.platform.clock().skew();
        let from = (shift(oldest, skew) - signed(CLOCK_SKEW)).as_millisecond();
        let runs = self
            .platform
            .list_runs(
                creds,
                self.sandbox(),
                &[format!("flowId=={flow}"), format!("createdAt>{from}")],
                "createdAt",
                MAX_FAILED_RUNS,
            )
            .await?;
        let on_service_clock: Vec<AttemptRecord> = records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.intent_at = shift(r.intent_at, skew);
                r.deadline = shift(r.deadline, skew);
                r
            })
            .collect();
        // Settled as stored (operator's clock), never as shifted.
        let pairs: Vec<(AttemptRecord, FlowRun)> = adoptions(
            &on_service_clock,
            &runs,
            &creds.client_id,
            shift(now, skew),
            CLOCK_SKEW,
        )
        .into_iter()
        .filter_map(|(shifted, run)| {
            let stored = records.iter().find(|r| r.name == shifted.name)?;
            Some((stored.clone(), run.clone()))
        })
        .collect();
        for (record, run) in pairs {
            let outcome = Outcome {
                code: Some("Adopted".into()),
                message: Some(format!(
                    "resolved an in-doubt claim: run {} was created by this client after the claim",
                    run.id
                )),
                new_run_id: Some(run.id.clone()),
                etag: run.etag.clone(),
            };
            match ledger
                .settle(&record, Phase::Acted, Some(outcome), now)
                .await
            {
                Ok(stored) => {
                    tracing::info!(attempt = %record.key, run = %run.id, "adopted the run of an in-doubt claim");
                    if let Some(r) = records.iter_mut().find(|r| r.name == stored.name) {
                        *r = stored;
                    }
                }
                // Someone else resolved it first: re-read at the next poll.
                Err(e) => tracing::debug!(attempt = %record.key, error = %e, "adoption lost"),
            }
        }
        Ok(records)
    }

    /// Candidates of one flow.
    async fn candidates_of(
        &self,
        policy: &Policy,
        creds: &Credentials,
        flow: &str,
        records: Vec<AttemptRecord>,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, TargetError> {
        let spec = policy
            .flow_service()
            .ok_or_else(|| not_this_target(policy))?;
        // createdAt is Adobe's clock.
        let lower = (shift(now, self.platform.clock().skew())
            - signed(policy.max_age + LONGEST_RUN))
        .as_millisecond();
        let mut filters = vec![
            format!("flowId=={flow}"),
            "metrics.statusSummary.status==failed".into(),
            format!("createdAt>{lower}"),
        ];
        let mut runs = self
            .platform
            .list_runs(
                creds,
                self.sandbox(),
                &filters,
                "-createdAt",
                MAX_FAILED_RUNS,
            )
            .await?;
        if spec.include_empty_success {
            filters[1] = "metrics.statusSummary.status==success".into();
            filters.push("metrics.recordSummary.outputRecordCount==0".into());
            runs.extend(
                self.platform
                    .list_runs(
                        creds,
                        self.sandbox(),
                        &filters,
                        "-createdAt",
                        MAX_FAILED_RUNS,
                    )
                    .await?,
            );
        }
        // Adoption writes the ledger: never for a dry run or a suspended policy.
        let records = if policy.dry_run || policy.suspend {
            records
        } else {
            self.adopt(creds, flow, records, now).await?
        };
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        {
            // Roots still listed: remember their creation time for the re-check after a claim.
            let mut cache = self.root_created.lock().expect("lock");
            for r in runs
                .iter()
                .filter(|r| records.iter().any(|rec| rec.root == r.id))
            {
                cache.insert(r.id.clone(), r.created_at);
            }
        }
        let successes = self.newest_successes(creds, flow).await?;
        // Roots whose run is older than the listing: their creation time decides supersession.
        let missing: Vec<String> = records
            .iter()
            .map(|r| r.root.clone())
            .filter(|root| !runs.iter().any(|r| &r.id == root))
            .filter(|root| !self.root_created.lock().expect("lock").contains_key(root))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for root in missing {
            if let Some(r) = self.platform.get_run(creds, self.sandbox(), &root).await? {
                self.root_created
                    .lock()
                    .expect("lock")
                    .insert(root, r.created_at);
            }
        }
        let root_created = self.root_created.lock().expect("lock").clone();
        let view = FlowView {
            flow_id: flow,
            runs: &runs,
            successes: &successes,
            records: &records,
            client_id: &creds.client_id,
            root_created: &root_created,
            include_empty_success: spec.include_empty_success,
            now,
            poll_interval: policy.poll_interval,
        };
        // Lineage holds come from the ledger and `now` (the operator's clock); candidates' holds
        // are on the service's clock, like their timestamps.
        let skew = self.platform.clock().skew();
        Ok(lineage::candidates(&view)
            .into_iter()
            .filter(|c| platform::safe_id(&c.id))
            .map(|mut c| {
                if let Some((_, until)) = &mut c.hold {
                    *until = shift(*until, skew);
                }
                c
            })
            .collect())
    }

    fn key(&self, c: &Candidate) -> AttemptKey {
        AttemptKey::new(
            self.settings.namespace.clone(),
            TargetKind::FlowService.as_str(),
            c.root.clone().unwrap_or_else(|| c.id.clone()),
            c.attempts.saturating_add(1),
        )
    }

    /// Steps 2–4 for a claim we hold.
    async fn act_on_claim(
        &self,
        ledger: &dyn Ledger,
        record: AttemptRecord,
        creds: &Credentials,
        c: &Candidate,
        include_empty_success: bool,
    ) -> Result<RedriveOutcome, TargetError> {
        let settle = |phase: Phase, outcome: Outcome| {
            let record = &record;
            async move {
                ledger
                    .settle(record, phase, Some(outcome), Timestamp::now())
                    .await
                    .map_err(ledger_error)
            }
        };
        // A failed re-read leaves the claim in Intent: resolved after the deadline.
        let Some(live) = self.platform.get_run(creds, self.sandbox(), &c.id).await? else {
            settle(
                Phase::NotActed,
                outcome("NotFound", "the run no longer exists"),
            )
            .await?;
            return Ok(RedriveOutcome::NotFound);
        };
        let eligible =
            live.state() == RunState::Failed || (include_empty_success && live.is_empty_success());
        if !eligible {
            let why = format!(
                "the run is {} now",
                live.metrics
                    .status_summary
                    .status
                    .as_deref()
                    .unwrap_or("in an unknown state")
            );
            settle(Phase::NotActed, outcome("NotRedrivable", &why)).await?;
            return Ok(RedriveOutcome::NotRedrivable(why));
        }
        let successes = self.newest_successes(creds, &c.workflow).await?;
        let root = c.root.as_deref().unwrap_or(&c.id);
        let root_at = if root == c.id {
            Some(live.created_at)
        } else {
            self.root_created.lock().expect("lock").get(root).copied()
        };
        let lineage_runs: Vec<String> = ledger
            .list(&self.settings.namespace, Some(root))
            .await
            .map_err(ledger_error)?
            .iter()
            .filter_map(|r| lineage::new_run(r).map(str::to_string))
            .collect();
        if let Some(s) = root_at.and_then(|at| {
            successes.iter().find(|s| {
                s.state() == RunState::Succeeded
                    && !s.is_empty_success()
                    && s.created_at > at
                    && s.id != root
                    && !lineage_runs.contains(&s.id)
            })
        }) {
            let why = format!("run {} of the dataflow succeeded after this failure", s.id);
            settle(Phase::NotActed, outcome("Superseded", &why)).await?;
            return Ok(RedriveOutcome::Superseded(why));
        }
        // One attempt in flight per dataflow: act only when no other claim of this flow is in
        // Intent. Claims are written before this check, so of two racing claims at most one
        // acts, and of several in-doubt claims only the oldest can have acted; that is what
        // makes adoption (oldest claim, oldest unowned run) unambiguous.
        let in_flight = ledger
            .list(&self.settings.namespace, None)
            .await
            .map_err(ledger_error)?
            .into_iter()
            .any(|r| {
                // Defer to older claims only (ties by name), so two claims of one poll never
                // both back off forever.
                r.key.target == TargetKind::FlowService.as_str()
                    && r.workflow == c.workflow
                    && r.phase == Phase::Intent
                    && (r.intent_at, &r.name) < (record.intent_at, &record.name)
            });
        if in_flight {
            let why = "another attempt of this dataflow is in flight".to_string();
            settle(Phase::Failed, outcome("TargetBusy", &why)).await?;
            return Ok(RedriveOutcome::Busy(why));
        }
        // Fencing: after the deadline another replica may resolve the claim; never start the
        // call when it could still be in flight then, and cut it off before the deadline (a
        // token fetch, a refresh and Retry-After waits may add to the POST).
        let left = record.deadline.duration_since(Timestamp::now()) - signed(CLOCK_SKEW);
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        if left < self.settings.operation_timeout {
            return Ok(RedriveOutcome::InDoubt(
                "the claim's deadline is too close to act; resolved at a later poll".into(),
            ));
        }
        let call =
            tokio::time::timeout(left, self.platform.retrigger(creds, self.sandbox(), &live));
        let answer = call.await.unwrap_or_else(|_| {
            Err(TargetError::new(
                "ReTriggerRun",
                ErrorCategory::Transient,
                "the re-trigger did not finish before the claim's deadline: outcome unknown",
            ))
        });
        match answer? {
            ReTriggerResult::Created(new) => {
                let done = Outcome {
                    code: Some("ReTriggered".into()),
                    message: Some(format!("re-triggered run {}", c.id)),
                    new_run_id: Some(new.id.clone()),
                    etag: new.etag.clone(),
                };
                if let Err(e) = settle(Phase::Acted, done).await {
                    // It happened; the Intent is adopted from the new run later.
                    tracing::warn!(attempt = %record.key, new_run = %new.id, error = %e, "re-triggered, but recording the new run failed");
                }
                Ok(RedriveOutcome::Redriven {
                    at: Some(Timestamp::now()),
                })
            }
            ReTriggerResult::Refused(e) => {
                let code = e.code.clone().unwrap_or_default();
                match e.category {
                    ErrorCategory::NotFound => {
                        settle(Phase::NotActed, outcome("NotFound", &e.message)).await?;
                        Ok(RedriveOutcome::NotFound)
                    }
                    // Flow Service refused this run (not eligible; Adobe's error for that is
                    // UNCONFIRMED, so any 4xx refusal counts): final for this attempt, never
                    // re-sent every poll. A 412 (the run changed since it was read) is not.
                    ErrorCategory::Invalid if code != "PRECONDITION_FAILED" => {
                        let code = if code.is_empty() {
                            "NotRedrivable".to_string()
                        } else {
                            code
                        };
                        settle(Phase::NotActed, outcome(&code, &e.message)).await?;
                        Ok(RedriveOutcome::NotRedrivable(format!(
                            "{code}: {}",
                            e.message
                        )))
                    }
                    // Nothing happened (precondition, credentials, throttling): reclaimable.
                    _ => {
                        let failed_code = if code.is_empty() {
                            e.category.as_str()
                        } else {
                            &code
                        };
                        settle(Phase::Failed, outcome(failed_code, &e.message)).await?;
                        Err(e)
                    }
                }
            }
        }
    }

    /// A claim someone else holds or held.
    async fn on_taken(
        &self,
        ledger: &dyn Ledger,
        record: AttemptRecord,
        creds: &Credentials,
        c: &Candidate,
        include_empty_success: bool,
        now: Timestamp,
    ) -> Result<RedriveOutcome, TargetError> {
        match record.phase {
            Phase::Acted | Phase::NotActed => Ok(RedriveOutcome::AlreadyClaimed(record.holder)),
            Phase::Intent if now <= record.deadline => Ok(RedriveOutcome::InDoubt(format!(
                "claimed by {} until {}",
                record.holder, record.deadline
            ))),
            Phase::Intent | Phase::Failed => {
                if record.phase == Phase::Intent {
                    // Adopt the crashed holder's run if it exists; act only when it does not.
                    let records: Vec<AttemptRecord> = self
                        .records()
                        .await?
                        .into_iter()
                        .filter(|r| r.workflow == c.workflow)
                        .collect();
                    let after = self.adopt(creds, &c.workflow, records, now).await?;
                    if let Some(r) = after.iter().find(|r| r.name == record.name)
                        && r.phase != Phase::Intent
                    {
                        return Ok(RedriveOutcome::AlreadyRedriven(format!(
                            "resolved an in-doubt claim: adopted run {}",
                            lineage::new_run(r).unwrap_or("?")
                        )));
                    }
                }
                let deadline = now + signed(claim_deadline(self.settings.operation_timeout));
                match ledger
                    .take_over(&record, &self.settings.holder, now, deadline)
                    .await
                    .map_err(ledger_error)?
                {
                    ClaimResult::Claimed(mine) => {
                        self.act_on_claim(ledger, mine, creds, c, include_empty_success)
                            .await
                    }
                    ClaimResult::Taken(theirs) => Ok(RedriveOutcome::AlreadyClaimed(theirs.holder)),
                }
            }
        }
    }

    /// Runs our re-triggers created that are still running, among `flows`.
    async fn running_of(&self, flows: &[String]) -> Result<u32, TargetError> {
        let creds = self.credentials().await?;
        let records = self.records().await?;
        let mut n = 0u32;
        for flow in flows {
            let ids: Vec<&str> = records
                .iter()
                .filter(|r| &r.workflow == flow)
                .filter_map(lineage::new_run)
                .filter(|id| platform::safe_id(id))
                .collect();
            for chunk in ids.chunks(50) {
                let runs = self
                    .platform
                    .list_runs(
                        &creds,
                        self.sandbox(),
                        &[
                            format!("flowId=={flow}"),
                            format!("id=={}", chunk.join(",")),
                        ],
                        "-createdAt",
                        chunk.len(),
                    )
                    .await?;
                n += runs.iter().filter(|r| r.state() == RunState::Other).count() as u32;
            }
        }
        Ok(n)
    }
}

impl Target for FlowService {
    fn name(&self) -> &'static str {
        TargetKind::FlowService.as_str()
    }

    fn limits(&self) -> TargetLimits {
        TargetLimits::NONE
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::Ledger
    }

    fn clock_skew(&self) -> jiff::SignedDuration {
        self.platform.clock().skew()
    }

    async fn discover(&self, policy: &Policy, now: Timestamp) -> Result<Discovery, TargetError> {
        let creds = self.credentials().await?;
        let (flows, issues) = self.resolve(policy, &creds).await?;
        let records = self.records().await?;
        let creds = &creds;
        let records = &records;
        let results: Vec<(String, Result<Vec<Candidate>, TargetError>)> = stream::iter(flows)
            .map(|f| async move {
                let mine: Vec<AttemptRecord> = records
                    .iter()
                    .filter(|r| r.workflow == f.id)
                    .cloned()
                    .collect();
                let r = self.candidates_of(policy, creds, &f.id, mine, now).await;
                (f.id, r)
            })
            .buffered(FLOW_CONCURRENCY)
            .collect()
            .await;
        let mut out = Discovery {
            issues,
            ..Discovery::default()
        };
        for (flow, result) in results {
            out.push_result(flow, result);
        }
        Ok(out)
    }

    async fn describe(&self, candidate: &Candidate) -> Result<Details, TargetError> {
        // The run listing already carried the errors.
        Ok(candidate.details.clone().unwrap_or(Details {
            error: None,
            cause: None,
            redrivability: None,
        }))
    }

    // candidate_for: the default (no AWS event names a dataflow run; Adobe I/O Events webhooks
    // are not consumed yet).

    async fn running_redriven(&self, workflows: &[String]) -> Result<u32, TargetError> {
        self.running_of(workflows).await
    }

    async fn redrive(
        &self,
        policy: &Policy,
        candidate: &Candidate,
        _key: &str,
    ) -> Result<RedriveOutcome, TargetError> {
        let spec = policy
            .flow_service()
            .ok_or_else(|| not_this_target(policy))?;
        let Some(ledger) = self.settings.ledger.as_deref() else {
            return Err(TargetError::new(
                "ReTriggerRun",
                ErrorCategory::Invalid,
                "flowService policies need a durable attempt ledger: run with --state-dir (local mode) or in a cluster",
            ));
        };
        let creds = self.credentials().await?;
        let now = Timestamp::now();
        let key = self.key(candidate);
        let claim = NewClaim {
            root: key.run.clone(),
            key,
            policy: policy.id.name.clone(),
            workflow: candidate.workflow.clone(),
            holder: self.settings.holder.clone(),
            now,
            deadline: now + signed(claim_deadline(self.settings.operation_timeout)),
        };
        match ledger.claim(claim).await.map_err(ledger_error)? {
            ClaimResult::Claimed(record) => {
                self.act_on_claim(
                    ledger,
                    record,
                    &creds,
                    candidate,
                    spec.include_empty_success,
                )
                .await
            }
            ClaimResult::Taken(record) => {
                self.on_taken(
                    ledger,
                    record,
                    &creds,
                    candidate,
                    spec.include_empty_success,
                    now,
                )
                .await
            }
        }
    }
}
