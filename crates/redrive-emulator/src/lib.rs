//! AWS Step Functions and CodePipeline emulator: test infrastructure and demo backend.
//!
//! Speaks AWS JSON 1.0 on `POST /` (the real `aws-sdk-sfn` client works against it with
//! `endpoint_url`), implements the redrive-related subset of the API with AWS's documented
//! semantics (api-facts §1, §4.1), and adds an admin API under `/_emulator/`. The same endpoint
//! and state serve CodePipeline (AWS JSON 1.1, `X-Amz-Target: CodePipeline_20150709.*`, for the
//! real `aws-sdk-codepipeline` client; api-facts §2, §4.2): see [`codepipeline`]. An STS stand-in
//! (awsQuery `AssumeRole` / `GetCallerIdentity`) answers on the same endpoint, so per-policy role
//! assumption with ExternalId can be tested end to end.
//! An Adobe Experience Platform Flow Service + IMS double (`POST /ims/token/v3`,
//! `/data/foundation/flowservice/{runs,flows}`, re-trigger; api-facts §3, §4.3) is served on the
//! same endpoint, state and clock: see [`flowservice`].
//! With an EventBridge endpoint configured, every Step Functions execution status change and
//! CodePipeline stage state change is published as the documented event with `PutEvents`,
//! with drop / duplicate / reorder / delay injection: see [`events`].
//! See `docs/emulator.md` for the scenario format and the choices made on UNCONFIRMED points.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use redrive_emulator::{self as emulator, EmulatorConfig, Scenario};
//! let handle = emulator::start(EmulatorConfig::default(), Scenario::demo()).await?;
//! println!("endpoint: {}", handle.endpoint);
//! handle.advance_clock(std::time::Duration::from_secs(60));
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod arn;
pub mod codepipeline;
mod config;
pub mod events;
pub mod flowservice;
mod history;
mod model;
pub mod moto;
mod scenario;
mod server;
mod state;
mod sts;
mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::{OPERATIONS, RequestMeta, dispatch, handle_request, operation_of};
pub use codepipeline::{
    ActionCategory, ActionOutcome, ActionSpec, OnFailureSpec, PipelineAdminError,
    PipelineExecutionSnapshot, PipelineExecutionSpec, PipelineSpec, PipelineStateSnapshot,
    RetryLedgerEntry, RetryOutcome, StageRetryMode, StageSpec,
};
pub use config::{
    AutoRetryScope, BucketSpec, CodePipelineConfig, EmulatorConfig, FaultConfig, FlowServiceConfig,
    PendingAutoRetry, QuotaPreset, ReplayMode, RetriggerResponse, TokenScope, parse_duration,
};
pub use events::{EventFaults, EventStats, EventsConfig, EventsError};
pub use flowservice::{
    FlowAdminError, FlowKind, FlowRunSnapshot, FlowRunSpec, FlowRunStatus, FlowSpec, ImsClientSpec,
    ImsToken, ReTriggerLedgerEntry, ReTriggerOutcome, RunError, RunOutcome, RunTrigger,
    ScheduleSpec,
};
pub use model::{ExecutionSnapshot, ExecutionStatus, RedriveStatus, reasons};
pub use scenario::{
    Dur, ExecutionSpec, GenerateSpec, MapRunSpec, Outcome, Scenario, ScenarioDefaults,
    ScenarioError, StateMachineSpec, StateMachineStatus, StateMachineType, default_cause,
};
pub use state::{ApiStats, EmulatorState, LedgerEntry, LedgerOutcome, Stats};
pub use sts::{RoleSpec, StsLedgerEntry, StsOutcome, StsSession};

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The event publishing configuration is invalid.
    #[error(transparent)]
    Events(#[from] EventsError),
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Requested address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// A running emulator. Dropping it stops the server (like [`EmulatorHandle::shutdown`] without waiting).
#[derive(Debug)]
pub struct EmulatorHandle {
    /// `http://127.0.0.1:PORT`: pass it as the SDK's `endpoint_url`.
    pub endpoint: String,
    /// Bound address.
    pub addr: SocketAddr,
    state: Arc<EmulatorState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Alias kept for callers that prefer the short name.
pub type Emulator = EmulatorHandle;

/// Start an emulator on `config.listen` (default `127.0.0.1:0`) with `scenario` seeded.
pub async fn start(
    config: EmulatorConfig,
    scenario: Scenario,
) -> Result<EmulatorHandle, StartError> {
    let state = EmulatorState::new(&config, &scenario)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    if let Some(endpoint) = &config.events.eventbridge_endpoint {
        start_events(&state, &config, endpoint)?;
    }
    let (tx, rx) = oneshot::channel::<()>();
    let app = server::router(state.clone());
    let task = tokio::spawn(async move {
        let svc = app.into_make_service_with_connect_info::<server::ConnInfo>();
        let _ = axum::serve(server::ConnListener(listener), svc)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    tracing::info!(endpoint = %format!("http://{host}"), "step functions / codepipeline emulator listening");
    Ok(EmulatorHandle {
        endpoint: format!("http://{host}"),
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Attach the EventBridge publisher and the settle ticker that makes time-driven changes
/// publish without waiting for an API call. Both stop once the state is gone.
fn start_events(
    state: &Arc<EmulatorState>,
    config: &EmulatorConfig,
    endpoint: &str,
) -> Result<(), EventsError> {
    let Some(rx) = state.events.attach(config.events.queue_capacity) else {
        return Ok(());
    };
    events::spawn_publisher(
        events::PublisherSetup {
            endpoint: endpoint.to_string(),
            region: config.region.clone(),
            event_bus_name: config.events.event_bus_name.clone(),
            seed: config.seed,
            shared: state.events.shared(),
        },
        rx,
    )?;
    let weak = Arc::downgrade(state);
    let every = config.events.settle_interval.max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(st) => st.settle_models(),
                None => return,
            }
        }
    });
    tracing::info!(endpoint, bus = %config.events.event_bus_name, "publishing status-change events to EventBridge");
    Ok(())
}

impl EmulatorHandle {
    /// Shared state (for [`handle_request`] or advanced inspection).
    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }
    /// Every RedriveExecution call so far, in order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.state.ledger()
    }
    /// Every STS AssumeRole call so far, in order (whatever the outcome).
    pub fn sts_ledger(&self) -> Vec<StsLedgerEntry> {
        self.state.sts_ledger()
    }
    /// The session an access key id issued by AssumeRole belongs to.
    pub fn sts_session(&self, access_key_id: &str) -> Option<StsSession> {
        self.state.sts_session(access_key_id)
    }
    /// Every issued session, oldest first.
    pub fn sts_sessions(&self) -> Vec<StsSession> {
        self.state.sts_sessions()
    }
    /// `(role ARN, ExternalId)` of an access key id issued by AssumeRole (None for static keys),
    /// e.g. to tell which role performed a redrive from [`LedgerEntry::access_key_id`].
    pub fn role_of(&self, access_key_id: &str) -> Option<(String, Option<String>)> {
        self.state.role_of(access_key_id)
    }
    /// Add a role AssumeRole may assume (replacing one with the same ARN).
    pub fn add_role(&self, role: RoleSpec) -> Result<(), ScenarioError> {
        self.state.add_role(role)
    }
    /// Remove a role (its sessions stay valid but may act on no state machine).
    pub fn remove_role(&self, arn: &str) -> bool {
        self.state.remove_role(arn)
    }
    /// The configured roles.
    pub fn roles(&self) -> Vec<RoleSpec> {
        self.state.roles()
    }
    /// Call counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }
    /// Emulated now.
    pub fn now(&self) -> jiff::Timestamp {
        self.state.now()
    }
    /// Move the emulated clock forward (also refills throttling buckets).
    pub fn advance_clock(&self, d: Duration) {
        self.state.advance_clock(d)
    }
    /// Move the emulated clock backward: a service whose clock is behind its clients'. Every
    /// answer's `Date` header is the emulated clock.
    pub fn rewind_clock(&self, d: Duration) {
        self.state.rewind_clock(d)
    }
    /// Replace the fault configuration.
    pub fn set_faults(&self, f: FaultConfig) {
        self.state.set_faults(f)
    }
    /// Replace the EventBridge event fault injection (drop / duplicate / reorder / delay).
    pub fn set_event_faults(&self, f: EventFaults) {
        self.state.set_event_faults(f)
    }
    /// Current EventBridge event fault injection.
    pub fn event_faults(&self) -> EventFaults {
        self.state.event_faults()
    }
    /// EventBridge event counters (published, dropped, duplicated, failed, ...).
    pub fn event_stats(&self) -> EventStats {
        self.state.event_stats()
    }
    /// Force a RUNNING execution to FAILED now; false if unknown or not running.
    pub fn fail_execution(&self, arn: &str, error: &str, cause: &str) -> bool {
        self.state.fail_execution(arn, error, cause)
    }
    /// Snapshot of one execution (settled to now).
    pub fn execution(&self, arn: &str) -> Option<ExecutionSnapshot> {
        self.state.execution(arn)
    }
    /// Snapshots of a state machine's executions (name or ARN), newest first.
    pub fn executions_of(&self, state_machine: &str) -> Vec<ExecutionSnapshot> {
        self.state.executions_of(state_machine)
    }
    /// Seed more state machines / executions; returns how many executions were added.
    pub fn seed(&self, more: Scenario) -> Result<u64, ScenarioError> {
        self.state.seed(&more)
    }
    /// ARN of a state machine by name.
    pub fn state_machine_arn(&self, name: &str) -> String {
        self.state.state_machine_arn(name)
    }
    /// ARN of an execution by state machine name and execution name.
    pub fn execution_arn(&self, state_machine: &str, name: &str) -> String {
        self.state.execution_arn(state_machine, name)
    }
    // ----------------------------------------------------------------------------------------
    // CodePipeline

    /// Every RetryStageExecution call so far, in order (whatever the outcome).
    pub fn codepipeline_ledger(&self) -> Vec<RetryLedgerEntry> {
        self.state.codepipeline_ledger()
    }
    /// GetPipelineState of a pipeline as a value (settled to now); None if unknown.
    pub fn pipeline_state(&self, name: &str) -> Option<PipelineStateSnapshot> {
        self.state.pipeline_state(name)
    }
    /// One execution of a pipeline (settled to now).
    pub fn pipeline_execution(&self, name: &str, id: &str) -> Option<PipelineExecutionSnapshot> {
        self.state.pipeline_execution(name, id)
    }
    /// Every execution of a pipeline, newest first.
    pub fn pipeline_executions(&self, name: &str) -> Vec<PipelineExecutionSnapshot> {
        self.state.pipeline_executions(name)
    }
    /// `arn:aws:codepipeline:{region}:{account}:{name}`.
    pub fn pipeline_arn(&self, name: &str) -> String {
        self.state.pipeline_arn(name)
    }
    /// Start an execution now (like StartPipelineExecution); returns its id.
    pub fn start_pipeline_execution(&self, name: &str) -> Result<String, PipelineAdminError> {
        self.state.start_pipeline_execution(name)
    }
    /// Seed one more pipeline (or merge tags, scripts and executions into one with the same
    /// structure); returns the ids of the executions it started, in spec order.
    pub fn seed_pipeline(&self, spec: PipelineSpec) -> Result<Vec<String>, ScenarioError> {
        self.state.seed_pipeline(spec)
    }
    /// Replace a pipeline's structure (a new version, like UpdatePipeline); returns the version.
    pub fn update_pipeline(&self, spec: PipelineSpec) -> Result<u32, PipelineAdminError> {
        self.state.update_pipeline(spec)
    }
    /// Save the current structure again as a new version, so failed stages of existing
    /// executions are no longer retryable; returns the version.
    pub fn touch_pipeline(&self, name: &str) -> Result<u32, PipelineAdminError> {
        self.state.touch_pipeline(name)
    }
    /// End the in-progress attempt of an action in its stage's latest execution now; returns
    /// the execution id.
    pub fn complete_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        outcome: ActionOutcome,
    ) -> Result<String, PipelineAdminError> {
        self.state.complete_action(pipeline, stage, action, outcome)
    }
    /// Fail an in-progress action now with `errorDetails {code, message}`.
    pub fn fail_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        code: &str,
        message: &str,
    ) -> Result<String, PipelineAdminError> {
        self.state
            .fail_action(pipeline, stage, action, code, message)
    }
    /// Succeed an in-progress action now.
    pub fn succeed_action(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
    ) -> Result<String, PipelineAdminError> {
        self.state.succeed_action(pipeline, stage, action)
    }
    /// Replace one action's outcome script (for attempts started from now on).
    pub fn set_action_outcomes(
        &self,
        pipeline: &str,
        stage: &str,
        action: &str,
        outcomes: Vec<ActionOutcome>,
    ) -> Result<(), PipelineAdminError> {
        self.state
            .set_action_outcomes(pipeline, stage, action, outcomes)
    }
    /// Set (or clear) a pipeline's concurrent-execution limit, to inject
    /// `ConcurrentPipelineExecutionsLimitExceededException`; false if the pipeline is unknown.
    pub fn set_pipeline_concurrency_limit(&self, pipeline: &str, limit: Option<u32>) -> bool {
        self.state.set_pipeline_concurrency_limit(pipeline, limit)
    }
    // ----------------------------------------------------------------------------------------
    // Adobe Flow Service / IMS

    /// Every Flow Service re-trigger call so far, in order (whatever the outcome).
    pub fn flowservice_ledger(&self) -> Vec<ReTriggerLedgerEntry> {
        self.state.flowservice_ledger()
    }
    /// One Flow Service run (settled to now).
    pub fn flow_run(&self, run_id: &str) -> Option<FlowRunSnapshot> {
        self.state.flow_run(run_id)
    }
    /// Every run of a flow, newest first.
    pub fn flow_runs(&self, flow_id: &str) -> Vec<FlowRunSnapshot> {
        self.state.flow_runs(flow_id)
    }
    /// Id of a flow by name.
    pub fn flow_id(&self, name: &str) -> Option<String> {
        self.state.flow_id(name)
    }
    /// Seed one more flow (or merge runs and script into the flow with the same id); returns
    /// the ids of the runs it seeded.
    pub fn seed_flow(&self, spec: FlowSpec) -> Result<Vec<String>, ScenarioError> {
        self.state.seed_flow(spec)
    }
    /// Start a run of a flow now (like a scheduled run); returns its id.
    pub fn start_flow_run(&self, flow_id: &str) -> Result<String, FlowAdminError> {
        self.state.start_flow_run(flow_id)
    }
    /// End an in-progress run now with `outcome`.
    pub fn complete_flow_run(
        &self,
        run_id: &str,
        outcome: RunOutcome,
    ) -> Result<(), FlowAdminError> {
        self.state.complete_flow_run(run_id, outcome)
    }
    /// Replace a flow's outcome script (for runs created from now on).
    pub fn set_flow_outcomes(
        &self,
        flow_id: &str,
        outcomes: Vec<RunOutcome>,
    ) -> Result<(), FlowAdminError> {
        self.state.set_flow_outcomes(flow_id, outcomes)
    }
    /// Add (or replace) an IMS client credential.
    pub fn add_ims_client(&self, client: ImsClientSpec) {
        self.state.add_ims_client(client)
    }
    /// Rotate a client's secret (the old secret is refused from now on; issued tokens stay valid).
    pub fn rotate_ims_secret(
        &self,
        client_id: &str,
        new_secret: &str,
    ) -> Result<(), FlowAdminError> {
        self.state.rotate_ims_secret(client_id, new_secret)
    }
    /// Revoke every live token of a client (`401013` from now on); returns how many.
    pub fn revoke_ims_tokens(&self, client_id: &str) -> Result<usize, FlowAdminError> {
        self.state.revoke_ims_tokens(client_id)
    }
    /// What IMS knows about an issued access token.
    pub fn ims_token_info(&self, token: &str) -> Option<ImsToken> {
        self.state.ims_token_info(token)
    }
    /// Answer 429 `429050` with `Retry-After` on this fraction of Flow Service calls.
    pub fn set_flowservice_throttle(&self, rate: f64, retry_after: Duration) {
        self.state.set_flowservice_throttle(rate, retry_after)
    }
    /// `{endpoint}/data/foundation/flowservice`: the Platform base URL.
    pub fn flowservice_url(&self) -> String {
        format!("{}{}", self.endpoint, flowservice::BASE_PATH)
    }
    /// `{endpoint}/ims/token/v3`: the IMS token URL.
    pub fn ims_token_url(&self) -> String {
        format!("{}{}", self.endpoint, flowservice::IMS_TOKEN_PATH)
    }
    /// Stop the server and wait (up to 5 s) for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
