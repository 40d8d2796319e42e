//! Shared emulator state: the Step Functions and CodePipeline models, clock, throttling,
//! faults, ledgers and statistics. The CodePipeline helpers live in `codepipeline/admin.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::codepipeline::{self, RetryLedgerEntry};
use super::config::{EmulatorConfig, FaultConfig};
use super::events::{Emitter, EventFaults, EventStats};
use super::flowservice;
use super::model::{ExecutionSnapshot, Model, Ms, ts};
use super::scenario::{Scenario, ScenarioError};
use super::sts::{self, RoleSpec, StsLedgerEntry, StsSession, StsState};
use super::throttle::Throttle;

/// What happened to one RedriveExecution call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum LedgerOutcome {
    /// Performed a redrive (redriveCount incremented).
    Redriven {
        /// The new redriveDate.
        redrive_date: jiff::Timestamp,
    },
    /// Idempotent replay of a live client token: nothing changed.
    Replayed {
        /// The redriveDate returned.
        redrive_date: jiff::Timestamp,
    },
    /// `ExecutionNotRedrivable`.
    NotRedrivable {
        /// Reason / message returned.
        reason: String,
    },
    /// `ExecutionDoesNotExist` (also EXPRESS ARNs).
    DoesNotExist,
    /// `InvalidArn`.
    InvalidArn,
    /// `ValidationException` (including a cross-execution token conflict in strict mode).
    ValidationError {
        /// The validation message.
        message: String,
    },
    /// `ExecutionLimitExceeded`.
    LimitExceeded,
    /// `AccessDeniedException` (configured denied state machine, or a state machine outside the
    /// assumed role's `stateMachines`).
    AccessDenied,
    /// Rejected before reaching the model because of the caller's session key:
    /// `ExpiredTokenException` or `UnrecognizedClientException`.
    Unauthenticated {
        /// Error code.
        code: String,
    },
    /// `ThrottlingException`: the call never reached the model.
    Throttled,
    /// An injected fault answered instead of the model (`server-error`, `malformed-html`,
    /// `malformed-truncated`, `drop`).
    Faulted {
        /// Fault kind.
        fault: String,
    },
}

impl LedgerOutcome {
    /// True if the call reached the model (not throttled, not faulted).
    pub fn reached_model(&self) -> bool {
        !matches!(
            self,
            LedgerOutcome::Throttled
                | LedgerOutcome::Faulted { .. }
                | LedgerOutcome::Unauthenticated { .. }
        )
    }
    /// True for a performed redrive.
    pub fn is_redriven(&self) -> bool {
        matches!(self, LedgerOutcome::Redriven { .. })
    }
}

/// One RedriveExecution call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// `executionArn` as sent (empty if missing).
    pub execution_arn: String,
    /// `clientToken` as sent.
    pub client_token: Option<String>,
    /// The execution's redriveCount before the call (0 if unknown).
    pub redrive_count_before: u32,
    /// Outcome.
    pub outcome: LedgerOutcome,
    /// Emulated time of the call.
    pub at: jiff::Timestamp,
    /// Access key id from the SigV4 `Credential=` (None for direct `handle_request` calls).
    pub access_key_id: Option<String>,
}

/// Per-API counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiStats {
    /// Every request for this API (including throttled/faulted).
    pub calls: u64,
    /// Answered 200 by the model.
    pub ok: u64,
    /// Answered ThrottlingException.
    pub throttled: u64,
    /// Answered by an injected fault (not counting pure latency).
    pub faults: u64,
    /// Error responses by short code (`ExecutionNotRedrivable`, ...).
    pub errors: BTreeMap<String, u64>,
}

/// Emulator statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// All AWS API requests (excluding `/_emulator/` admin calls).
    pub total_calls: u64,
    /// Per API (`ListExecutions`, ..., CodePipeline as `codepipeline:<Op>`; unknown targets
    /// under `Unknown`).
    pub by_api: BTreeMap<String, ApiStats>,
    /// Total throttled.
    pub throttled: u64,
    /// Injected faults by kind (`server-error`, `malformed-html`, `malformed-truncated`, `drop`, `latency`).
    pub faults_injected: BTreeMap<String, u64>,
    /// Requests per SigV4 access key id.
    pub access_key_ids: BTreeMap<String, u64>,
    /// Requests rejected with MissingAuthenticationTokenException.
    pub missing_auth: u64,
    /// Executions stored.
    pub executions: u64,
    /// Open (RUNNING) executions.
    pub open_executions: u64,
    /// Successful redrives performed.
    pub redrives: u64,
    /// CodePipeline pipelines.
    #[serde(default)]
    pub pipelines: u64,
    /// CodePipeline executions stored.
    #[serde(default)]
    pub pipeline_executions: u64,
    /// Open (in progress, stopping or waiting) CodePipeline executions.
    #[serde(default)]
    pub open_pipeline_executions: u64,
    /// Stage retries performed by RetryStageExecution.
    #[serde(default)]
    pub manual_stage_retries: u64,
    /// Native automatic stage retries performed.
    #[serde(default)]
    pub auto_stage_retries: u64,
    /// Flow Service flows.
    #[serde(default)]
    pub flows: u64,
    /// Flow Service runs stored.
    #[serde(default)]
    pub flow_runs: u64,
    /// Flow Service runs in progress.
    #[serde(default)]
    pub open_flow_runs: u64,
    /// Remaining tokens per throttling bucket.
    pub bucket_levels: BTreeMap<String, f64>,
    /// EventBridge event publishing.
    #[serde(default)]
    pub events: EventStats,
}

impl Stats {
    /// Calls of one API.
    pub fn calls(&self, api: &str) -> u64 {
        self.by_api.get(api).map_or(0, |a| a.calls)
    }
    /// Throttled calls of one API.
    pub fn throttled(&self, api: &str) -> u64 {
        self.by_api.get(api).map_or(0, |a| a.throttled)
    }
    /// Error count of one API and short error code.
    pub fn errors(&self, api: &str, code: &str) -> u64 {
        self.by_api
            .get(api)
            .and_then(|a| a.errors.get(code))
            .copied()
            .unwrap_or(0)
    }
}

/// Result class of one request, for statistics.
#[derive(Debug, Clone)]
pub(crate) enum CallResult {
    Ok,
    Throttled,
    Fault(&'static str),
    Error(String),
}

/// Everything the server and the handle share.
pub struct EmulatorState {
    pub(crate) region: String,
    pub(crate) account: String,
    pub(crate) faults: RwLock<FaultConfig>,
    clock_offset_ms: AtomicI64,
    pub(crate) model: Mutex<Model>,
    pub(crate) throttle: Mutex<Throttle>,
    stats: Mutex<Stats>,
    ledger: Mutex<Vec<LedgerEntry>>,
    pub(crate) rng: Mutex<StdRng>,
    pub(crate) token_key: [u8; 32],
    pub(crate) sts: Mutex<StsState>,
    pub(crate) pipelines: Mutex<codepipeline::Model>,
    pub(crate) cp_ledger: Mutex<Vec<RetryLedgerEntry>>,
    pub(crate) flows: Mutex<flowservice::Model>,
    /// The models' shared event emitter (disabled unless publishing to EventBridge).
    pub(crate) events: Emitter,
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState")
            .field("region", &self.region)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Lock ignoring poisoning (the emulator never leaves state half-updated across a panic point).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn real_now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Ms)
        .unwrap_or(0)
}

impl EmulatorState {
    /// Build the state and seed `scenario`.
    pub fn new(config: &EmulatorConfig, scenario: &Scenario) -> Result<Arc<Self>, ScenarioError> {
        let mut model = Model::new(
            &config.region,
            &config.account,
            config.replay,
            config.token_scope,
            config.max_open_executions,
        );
        let offset = i64::try_from(config.clock_offset.as_millis()).unwrap_or(0);
        let now = real_now_ms().saturating_add(offset);
        sts::validate_roles(&scenario.roles)?;
        model.seed(scenario, now)?;
        let pipelines = codepipeline::Model::new(
            &config.region,
            &config.account,
            config.seed,
            config.codepipeline.clone(),
        );
        let events = Emitter::new(config.events.faults.clone());
        model.events = events.clone();
        let mut pipelines = pipelines;
        pipelines.events = events.clone();
        let mut sts_state = StsState::new(config.seed);
        sts_state.put_roles(&scenario.roles);
        let key = {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(format!("redrive-emulator-token-key:{}", config.seed));
            let mut k = [0u8; 32];
            k.copy_from_slice(&d);
            k
        };
        let state = Arc::new(EmulatorState {
            region: config.region.clone(),
            account: config.account.clone(),
            faults: RwLock::new(config.faults.clone()),
            clock_offset_ms: AtomicI64::new(offset),
            model: Mutex::new(model),
            throttle: Mutex::new(Throttle::new(
                config.quota,
                config.quota_scale,
                config.bucket_overrides.clone(),
            )),
            stats: Mutex::new(Stats::default()),
            ledger: Mutex::new(Vec::new()),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            token_key: key,
            sts: Mutex::new(sts_state),
            pipelines: Mutex::new(pipelines),
            cp_ledger: Mutex::new(Vec::new()),
            flows: Mutex::new(flowservice::Model::new(
                config.flowservice.clone(),
                config.seed,
            )),
            events,
        });
        state.seed_pipeline_specs(&scenario.pipelines, now)?;
        state.seed_flow_specs(&scenario.flows, &scenario.ims_clients)?;
        Ok(state)
    }

    /// Emulated now in milliseconds.
    pub(crate) fn now_ms(&self) -> Ms {
        real_now_ms().saturating_add(self.clock_offset_ms.load(Ordering::SeqCst))
    }

    /// Emulated now.
    pub fn now(&self) -> jiff::Timestamp {
        ts(self.now_ms())
    }

    /// Move the emulated clock forward.
    pub fn advance_clock(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        self.clock_offset_ms.fetch_add(ms, Ordering::SeqCst);
        if self.events.enabled() {
            // Publish what the jump completed now rather than at the next settle tick.
            self.settle_models();
        }
    }

    /// Move the emulated clock backward (a service whose clock is behind its clients'). What
    /// already happened keeps its times; scheduled changes wait for the clock to reach them.
    pub fn rewind_clock(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        self.clock_offset_ms.fetch_sub(ms, Ordering::SeqCst);
    }

    /// Offset of the emulated clock from real time, negative when behind.
    pub fn clock_offset_signed(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_millis(self.clock_offset_ms.load(Ordering::SeqCst))
    }

    /// Resolve every time-driven change due by now in the Step Functions and CodePipeline
    /// models (what every request does first), so their events are published without one.
    pub fn settle_models(&self) {
        let now = self.now_ms();
        lock(&self.model).settle(now);
        lock(&self.pipelines).settle(now);
    }

    /// Replace the event fault injection (takes effect for events published from now on).
    pub fn set_event_faults(&self, f: EventFaults) {
        self.events.set_faults(f)
    }

    /// Current event fault injection.
    pub fn event_faults(&self) -> EventFaults {
        self.events.faults()
    }

    /// Event publishing counters.
    pub fn event_stats(&self) -> EventStats {
        self.events.stats()
    }

    /// Offset of the emulated clock from real time.
    pub fn clock_offset(&self) -> Duration {
        Duration::from_millis(self.clock_offset_ms.load(Ordering::SeqCst).max(0) as u64)
    }

    /// Replace the fault configuration.
    pub fn set_faults(&self, f: FaultConfig) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Current fault configuration.
    pub fn faults(&self) -> FaultConfig {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Seed more state machines / executions and pipelines, and add or replace (by ARN) its
    /// roles. Returns the number of Step Functions executions added.
    pub fn seed(&self, more: &Scenario) -> Result<u64, ScenarioError> {
        self.seed_counted(more).map(|(sfn, _)| sfn)
    }

    /// Like [`EmulatorState::seed`]; returns (Step Functions executions, pipeline executions)
    /// added. Everything is validated before anything is applied.
    pub fn seed_counted(&self, more: &Scenario) -> Result<(u64, u64), ScenarioError> {
        sts::validate_roles(&more.roles)?;
        let now = self.now_ms();
        self.validate_pipeline_specs(&more.pipelines, now)?;
        self.validate_flow_specs(&more.flows)?;
        let added = {
            let mut m = lock(&self.model);
            m.settle(now);
            m.seed(more, now)?
        };
        let ids = self.seed_pipeline_specs(&more.pipelines, now)?;
        self.seed_flow_specs(&more.flows, &more.ims_clients)?;
        lock(&self.sts).put_roles(&more.roles);
        Ok((added, ids.iter().map(|v| v.len() as u64).sum()))
    }

    /// Add a role AssumeRole may assume, replacing one with the same ARN.
    pub fn add_role(&self, role: RoleSpec) -> Result<(), ScenarioError> {
        sts::validate_roles(std::slice::from_ref(&role))?;
        lock(&self.sts).put_roles(&[role]);
        Ok(())
    }

    /// Remove a role; sessions issued for it remain valid but may act on no state machine.
    pub fn remove_role(&self, arn: &str) -> bool {
        lock(&self.sts).remove_role(arn)
    }

    /// The configured roles, by ARN.
    pub fn roles(&self) -> Vec<RoleSpec> {
        lock(&self.sts).roles()
    }

    /// Every AssumeRole call so far, in order.
    pub fn sts_ledger(&self) -> Vec<StsLedgerEntry> {
        lock(&self.sts).ledger()
    }

    /// The session an issued access key id belongs to.
    pub fn sts_session(&self, access_key_id: &str) -> Option<StsSession> {
        lock(&self.sts).session(access_key_id)
    }

    /// Every issued session, oldest first.
    pub fn sts_sessions(&self) -> Vec<StsSession> {
        lock(&self.sts).sessions()
    }

    /// `(role ARN, ExternalId)` of an issued access key id; None for static or unknown keys.
    pub fn role_of(&self, access_key_id: &str) -> Option<(String, Option<String>)> {
        self.sts_session(access_key_id)
            .map(|s| (s.role_arn, s.external_id))
    }

    /// Force a RUNNING execution to FAILED now; false if unknown or not running.
    pub fn fail_execution(&self, arn: &str, error: &str, cause: &str) -> bool {
        let now = self.now_ms();
        let mut m = lock(&self.model);
        m.settle(now);
        match m.exec_by_arn(arn) {
            Some(id) => m.force_fail(id, error, cause, now),
            None => false,
        }
    }

    /// Snapshot of one execution (settled to now).
    pub fn execution(&self, arn: &str) -> Option<ExecutionSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.model);
        m.settle(now);
        let id = m.exec_by_arn(arn)?;
        Some(m.snapshot(id, now))
    }

    /// All snapshots of one state machine (by name or ARN), newest first.
    pub fn executions_of(&self, state_machine: &str) -> Vec<ExecutionSnapshot> {
        let now = self.now_ms();
        let mut m = lock(&self.model);
        m.settle(now);
        let name = state_machine
            .rsplit_once(":stateMachine:")
            .map_or(state_machine, |(_, n)| n);
        let Some(sm) = m.find_sm(name) else {
            return Vec::new();
        };
        m.sms[sm as usize]
            .index
            .iter()
            .map(|&id| m.snapshot(id, now))
            .collect()
    }

    /// State machine ARN for a name in this emulator's region/account.
    pub fn state_machine_arn(&self, name: &str) -> String {
        lock(&self.model).sm_arn(name)
    }

    /// Execution ARN for a state machine name and execution name.
    pub fn execution_arn(&self, state_machine: &str, name: &str) -> String {
        let m = lock(&self.model);
        format!(
            "arn:{}:states:{}:{}:execution:{state_machine}:{name}",
            m.partition, m.region, m.account
        )
    }

    /// Map Run ARNs (for tests).
    pub fn map_run_arns(&self) -> Vec<String> {
        lock(&self.model)
            .map_runs
            .iter()
            .map(|m| m.arn.clone())
            .collect()
    }

    /// Copy of the ledger.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        lock(&self.ledger).clone()
    }

    /// Copy of the statistics.
    pub fn stats(&self) -> Stats {
        let mut s = lock(&self.stats).clone();
        {
            let m = lock(&self.model);
            s.executions = m.execs.len() as u64;
            s.open_executions = m.open;
            s.redrives = m.redrives;
        }
        {
            let now = self.now_ms();
            let mut m = lock(&self.pipelines);
            m.settle(now);
            s.pipelines = m.pipelines.len() as u64;
            s.pipeline_executions = m.execs.len() as u64;
            s.open_pipeline_executions = m.execs.iter().filter(|e| e.is_open()).count() as u64;
            s.manual_stage_retries = m.manual_retries;
            s.auto_stage_retries = m.auto_retries;
        }
        (s.flows, s.flow_runs, s.open_flow_runs) = self.flowservice_counts();
        s.bucket_levels = lock(&self.throttle).levels().into_iter().collect();
        s.events = self.events.stats();
        s
    }

    pub(crate) fn record_ledger(&self, e: LedgerEntry) {
        lock(&self.ledger).push(e);
    }

    pub(crate) fn record_retry(&self, e: RetryLedgerEntry) {
        lock(&self.cp_ledger).push(e);
    }

    pub(crate) fn record_call(&self, api: &str, r: CallResult) {
        let mut s = lock(&self.stats);
        s.total_calls += 1;
        if matches!(r, CallResult::Throttled) {
            s.throttled += 1;
        }
        if let CallResult::Fault(kind) = &r {
            *s.faults_injected.entry(kind.to_string()).or_default() += 1;
        }
        let a = s.by_api.entry(api.to_string()).or_default();
        a.calls += 1;
        match r {
            CallResult::Ok => a.ok += 1,
            CallResult::Throttled => a.throttled += 1,
            CallResult::Fault(_) => a.faults += 1,
            CallResult::Error(code) => *a.errors.entry(code).or_default() += 1,
        }
    }

    pub(crate) fn record_latency_fault(&self) {
        *lock(&self.stats)
            .faults_injected
            .entry("latency".to_string())
            .or_default() += 1;
    }

    pub(crate) fn record_access_key(&self, akid: &str) {
        *lock(&self.stats)
            .access_key_ids
            .entry(akid.to_string())
            .or_default() += 1;
    }

    pub(crate) fn record_missing_auth(&self) {
        let mut s = lock(&self.stats);
        s.missing_auth += 1;
    }
}
