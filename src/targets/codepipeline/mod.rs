//! AWS CodePipeline target: failed stages are retried with `RetryStageExecution`.
//!
//! Cheap first: one `GetPipelineState` per pipeline and poll gives every stage's status, latest
//! execution id, failed actions (error code and message, `lastStatusChange`) and
//! `retryStageMetadata`. `GetPipeline` (the declaration: which stages have the native
//! `onFailure: RETRY`) is cached per pipeline version; a selector adds `ListPipelines` and
//! `ListTagsForResource`, cached for `discovery_ttl`.
//!
//! `RetryStageExecution` has no client token, so a repeated call is a second retry. The attempt
//! ledger makes "never act twice" hold anyway ([`Idempotency::Ledger`]):
//! 1. claim (create the attempt's record, phase Intent; AlreadyExists = someone owns it);
//! 2. re-read the stage's live state (GetPipelineState) after claiming, so nobody acts between
//!    our check and our call unseen;
//! 3. act; 4. record the outcome. A claim left in Intent by a crash is resolved after its
//!    deadline from the stage's state (`manualStageRetryAttempt`, latest execution id), never by
//!    acting blindly.
//!
//! Every call is paced by the process-wide pacer of its API ([`crate::aws::paced`]), which also
//! retries throttled answers; a paced call (waits, sends, retries) ends within the operation
//! timeout, which the claim deadline is built on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_codepipeline::config::retry::RetryPartition;
use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::types::{
    ActionExecutionStatus, StageExecutionStatus, StageRetryMode, StageState,
};
use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};

use super::{
    Discovery, ErrorCategory, RedriveOutcome, Target, TargetError, ledger_error, not_this_target,
    outcome, to_timestamp,
};
use crate::aws::paced::{ApiPacer, CallLimits, Pacing};
use crate::clock::{ServiceClock, shift};
use crate::crd::RetryMode;
use crate::engine::{
    Candidate, Details, Idempotency, Reason, RunStatus, TargetLimits, signed_duration as signed,
};
use crate::ledger::{AttemptKey, AttemptRecord, ClaimResult, Ledger, NewClaim, Phase};
use crate::policy::{Policy, TargetKind};

/// Pipelines read at once within one policy.
const STATE_CONCURRENCY: usize = 4;

/// Clock skew allowed between replicas in claim deadlines.
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);

/// How long a claim may stay in Intent before another replica may resolve it from the service:
/// the re-read and the RetryStageExecution call, each bounded by the SDK's operation timeout
/// (all retries included), plus clock skew. The holder never starts the call when less than one
/// operation timeout is left before the deadline, so a take-over after the deadline cannot
/// overlap the holder's call.
pub fn claim_deadline(operation_timeout: Duration) -> Duration {
    operation_timeout * 2 + CLOCK_SKEW
}

/// How long after a stage failure AWS's own automatic retry (`onFailure: RETRY`) is waited for
/// before the operator acts anyway (it normally starts within seconds; a V1 pipeline never
/// auto-retries although its declaration may say RETRY).
pub const AUTO_RETRY_GRACE: Duration = Duration::from_secs(600);

/// Settings of the adapter.
#[derive(Clone)]
pub struct CodePipelineSettings {
    pub discovery_ttl: Duration,
    /// Namespace the ledger records go to (the policies' namespace; empty in local mode).
    pub namespace: String,
    /// This replica's identity in ledger claims.
    pub holder: String,
    /// The attempt ledger; `None` means acting is refused (local mode without `--state-dir`).
    pub ledger: Option<Arc<dyn Ledger>>,
    /// The SDK's operation timeout (one call, all retries).
    pub operation_timeout: Duration,
}

type Cached<T> = (Instant, T);

/// What the adapter needs from a pipeline declaration.
#[derive(Clone, Debug, Default)]
struct Declaration {
    version: i32,
    arn: Option<String>,
    /// Stages whose declaration has `onFailure.result: RETRY`.
    auto_retry: Vec<String>,
}

/// The shared pacer of every API the adapter calls.
struct ApiPacers {
    get_pipeline_state: ApiPacer,
    get_pipeline: ApiPacer,
    list_pipelines: ApiPacer,
    list_tags_for_resource: ApiPacer,
    retry_stage_execution: ApiPacer,
    limits: CallLimits,
}

impl ApiPacers {
    fn new(pacing: &Pacing) -> Self {
        ApiPacers {
            get_pipeline_state: pacing.api("GetPipelineState"),
            get_pipeline: pacing.api("GetPipeline"),
            list_pipelines: pacing.api("ListPipelines"),
            list_tags_for_resource: pacing.api("ListTagsForResource"),
            retry_stage_execution: pacing.api("RetryStageExecution"),
            limits: pacing.limits,
        }
    }
}

/// One client per API, each in its own retry partition (see the Step Functions adapter).
struct ApiClients {
    get_pipeline_state: aws_sdk_codepipeline::Client,
    get_pipeline: aws_sdk_codepipeline::Client,
    list_pipelines: aws_sdk_codepipeline::Client,
    list_tags_for_resource: aws_sdk_codepipeline::Client,
    retry_stage_execution: aws_sdk_codepipeline::Client,
}

impl ApiClients {
    fn new(client: &aws_sdk_codepipeline::Client, partition_key: &str) -> Self {
        let partitioned = |api: &str| {
            let conf = client
                .config()
                .to_builder()
                .retry_partition(RetryPartition::new(format!("{partition_key}/{api}")))
                .build();
            aws_sdk_codepipeline::Client::from_conf(conf)
        };
        ApiClients {
            get_pipeline_state: partitioned("GetPipelineState"),
            get_pipeline: partitioned("GetPipeline"),
            list_pipelines: partitioned("ListPipelines"),
            list_tags_for_resource: partitioned("ListTagsForResource"),
            retry_stage_execution: partitioned("RetryStageExecution"),
        }
    }
}

/// The CodePipeline adapter for one (region, credentials, namespace).
pub struct CodePipeline {
    clients: ApiClients,
    pacers: ApiPacers,
    /// The service's clock as its answers tell it (fed by the client's interceptor when built
    /// with [`crate::aws::codepipeline_client`] and the same clock).
    clock: ServiceClock,
    settings: CodePipelineSettings,
    names: Mutex<Option<Cached<Vec<String>>>>,
    tags: Mutex<HashMap<String, Cached<BTreeMap<String, String>>>>,
    declarations: Mutex<HashMap<String, Declaration>>,
}

/// A run id: `pipeline/stage/pipelineExecutionId` (names cannot contain `/`).
pub fn run_id(pipeline: &str, stage: &str, execution_id: &str) -> String {
    format!("{pipeline}/{stage}/{execution_id}")
}

fn split_run_id(id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = id.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// What the live stage state says about one attempt.
#[derive(Clone, Debug, PartialEq)]
enum Live {
    /// The stage still shows the failure the claim was made for: acting is right.
    Actionable,
    /// The stage's latest execution is another one.
    Superseded(String),
    /// The manual retry count moved past the observed one: the attempt happened.
    Retried,
    /// In progress, succeeded or otherwise not actionable (text for the record).
    NotActionable(String),
    /// An action of the stage is in progress and the mode is ALL_ACTIONS.
    Busy(String),
}

impl CodePipeline {
    /// `partition_key` names the AWS account and region the client's credentials reach.
    pub fn new(
        client: aws_sdk_codepipeline::Client,
        partition_key: &str,
        settings: CodePipelineSettings,
    ) -> Self {
        let mut own = Pacing::unshared(TargetKind::CodePipeline);
        own.limits.timeout = settings.operation_timeout;
        Self {
            clients: ApiClients::new(&client, partition_key),
            pacers: ApiPacers::new(&own),
            clock: ServiceClock::new(partition_key),
            settings,
            names: Mutex::new(None),
            tags: Mutex::new(HashMap::new()),
            declarations: Mutex::new(HashMap::new()),
        }
    }

    /// Pace every call with `pacing`'s pacers (shared with every client of the same account and
    /// region). Its time limit must not exceed the operation timeout the claim deadline assumes.
    pub fn with_pacing(mut self, pacing: &Pacing) -> Self {
        let mut pacers = ApiPacers::new(pacing);
        pacers.limits.timeout = pacers.limits.timeout.min(self.settings.operation_timeout);
        self.pacers = pacers;
        self
    }

    /// Use `clock`, the estimate the client's interceptor feeds, for [`Target::clock_skew`].
    pub fn with_clock(mut self, clock: ServiceClock) -> Self {
        self.clock = clock;
        self
    }

    async fn all_pipeline_names(&self) -> Result<Vec<String>, TargetError> {
        if let Some((at, list)) = self.names.lock().expect("lock").as_ref()
            && at.elapsed() < self.settings.discovery_ttl
        {
            return Ok(list.clone());
        }
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let token = next.take();
            let page = self
                .pacers
                .list_pipelines
                .call(self.pacers.limits, || {
                    let token = token.clone();
                    async move {
                        self.clients
                            .list_pipelines
                            .list_pipelines()
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| TargetError::from_sdk("ListPipelines", &e))
                    }
                })
                .await?;
            out.extend(
                page.pipelines()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_string)),
            );
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        *self.names.lock().expect("lock") = Some((Instant::now(), out.clone()));
        Ok(out)
    }

    /// The declaration of `pipeline`, fetched again when its version moved.
    async fn declaration(&self, pipeline: &str, version: i32) -> Result<Declaration, TargetError> {
        if let Some(d) = self.declarations.lock().expect("lock").get(pipeline)
            && d.version == version
        {
            return Ok(d.clone());
        }
        let out = self
            .pacers
            .get_pipeline
            .call(self.pacers.limits, || async {
                self.clients
                    .get_pipeline
                    .get_pipeline()
                    .name(pipeline)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("GetPipeline", &e))
            })
            .await?;
        let auto_retry = out
            .pipeline()
            .map(|p| {
                p.stages()
                    .iter()
                    .filter(|s| {
                        s.on_failure()
                            .and_then(|f| f.result())
                            .is_some_and(|r| r.as_str() == "RETRY")
                    })
                    .map(|s| s.name().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let d = Declaration {
            version: out.pipeline().and_then(|p| p.version()).unwrap_or(version),
            arn: out
                .metadata()
                .and_then(|m| m.pipeline_arn())
                .map(str::to_string),
            auto_retry,
        };
        self.declarations
            .lock()
            .expect("lock")
            .insert(pipeline.to_string(), d.clone());
        Ok(d)
    }

    /// The cached declaration of `pipeline`, whatever its version (only its ARN is needed).
    async fn cached_declaration(&self, pipeline: &str) -> Result<Declaration, TargetError> {
        let cached = self
            .declarations
            .lock()
            .expect("lock")
            .get(pipeline)
            .cloned();
        match cached {
            Some(d) => Ok(d),
            None => self.declaration(pipeline, i32::MIN).await,
        }
    }

    async fn tags_of(&self, arn: &str) -> Result<BTreeMap<String, String>, TargetError> {
        if let Some((at, tags)) = self.tags.lock().expect("lock").get(arn)
            && at.elapsed() < self.settings.discovery_ttl
        {
            return Ok(tags.clone());
        }
        let out = self
            .pacers
            .list_tags_for_resource
            .call(self.pacers.limits, || async {
                self.clients
                    .list_tags_for_resource
                    .list_tags_for_resource()
                    .resource_arn(arn)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("ListTagsForResource", &e))
            })
            .await?;
        let tags: BTreeMap<String, String> = out
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        self.tags
            .lock()
            .expect("lock")
            .insert(arn.to_string(), (Instant::now(), tags.clone()));
        Ok(tags)
    }

    /// Explicit names plus the selector's matches, deduplicated, sorted.
    async fn resolve(&self, policy: &Policy) -> Result<Vec<String>, TargetError> {
        let Some(spec) = policy.code_pipeline() else {
            return Err(not_this_target(policy));
        };
        let mut names = spec.pipelines.clone();
        if let Some(selector) = &spec.selector {
            for name in self.all_pipeline_names().await? {
                if !selector.matches_name(&name) {
                    continue;
                }
                if !selector.tags.is_empty() {
                    // The ARN comes from GetPipeline (ListPipelines does not return it).
                    let d = self.cached_declaration(&name).await?;
                    let Some(arn) = d.arn else { continue };
                    let tags = self.tags_of(&arn).await?;
                    if !selector.tags.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                        continue;
                    }
                }
                names.push(name);
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn state(&self, pipeline: &str) -> Result<GetPipelineStateOutput, TargetError> {
        self.pacers
            .get_pipeline_state
            .call(self.pacers.limits, || async {
                self.clients
                    .get_pipeline_state
                    .get_pipeline_state()
                    .name(pipeline)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("GetPipelineState", &e))
            })
            .await
    }

    /// Candidates of one pipeline: its selected stages whose latest execution failed.
    async fn candidates_of(
        &self,
        policy: &Policy,
        pipeline: &str,
        now: Timestamp,
    ) -> Result<Vec<Candidate>, TargetError> {
        let spec = policy
            .code_pipeline()
            .ok_or_else(|| not_this_target(policy))?;
        let state = self.state(pipeline).await?;
        // Read after the call, so the first poll already has its answer's Date.
        let skew = self.clock.skew();
        let stages = state.stage_states();
        let selected: Vec<&StageState> = stages
            .iter()
            .filter(|s| s.stage_name().is_some_and(|n| spec.stage_selected(n)))
            .collect();
        if selected.is_empty() && !spec.stage_patterns.is_empty() {
            return Err(TargetError::new(
                "GetPipelineState",
                ErrorCategory::Invalid,
                format!(
                    "spec.codePipeline.stages {:?} matches no stage of pipeline {pipeline}",
                    spec.stage_patterns
                ),
            ));
        }
        let failing: Vec<&StageState> = selected
            .into_iter()
            .filter(|s| {
                s.latest_execution()
                    .is_some_and(|e| stage_status(e.status()).is_some())
            })
            .collect();
        if failing.is_empty() {
            return Ok(Vec::new());
        }
        let declaration = self
            .declaration(pipeline, state.pipeline_version().unwrap_or(0))
            .await?;
        let mut out: Vec<Candidate> = failing
            .into_iter()
            .filter_map(|s| {
                candidate(
                    pipeline,
                    s,
                    &declaration,
                    spec.retry_mode,
                    policy,
                    shift(now, skew),
                )
            })
            .collect();
        for c in &mut out {
            self.apply_claim(c, policy, now, skew).await;
        }
        Ok(out)
    }

    /// What the ledger already says about a candidate's next attempt, so that `plan` and the
    /// status show it (the claim still decides when acting): a live claim of someone else is
    /// `InDoubt` until its deadline, a settled one `AlreadyClaimed`. An unreadable ledger
    /// changes nothing here. `now` and the records are on the operator's clock; the holds go on
    /// the service's (`+ skew`), like the rest of the candidate.
    async fn apply_claim(
        &self,
        c: &mut Candidate,
        policy: &Policy,
        now: Timestamp,
        skew: SignedDuration,
    ) {
        if c.hold.is_some() {
            return;
        }
        let Some(ledger) = self.settings.ledger.as_deref() else {
            return;
        };
        let key = attempt_key(&self.settings.namespace, c);
        match ledger.get(&key).await {
            Ok(Some(r)) if r.phase == Phase::Intent && now <= r.deadline => {
                c.hold = Some((Reason::InDoubt, shift(r.deadline, skew)));
            }
            Ok(Some(r)) if matches!(r.phase, Phase::Acted | Phase::NotActed) => {
                c.hold = Some((
                    Reason::AlreadyClaimed,
                    shift(now, skew) + signed(policy.poll_interval),
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(run = %c.id, error = %e, "attempt ledger not readable"),
        }
    }

    /// The live state of the stage a candidate names, for the attempt after `observed` retries.
    async fn live(&self, c: &Candidate, mode: RetryMode) -> Result<Live, TargetError> {
        let (pipeline, stage, execution) = split_run_id(&c.id).ok_or_else(|| {
            TargetError::new(
                "RetryStageExecution",
                ErrorCategory::Invalid,
                format!("not a CodePipeline run id: {}", c.id),
            )
        })?;
        let state = self.state(pipeline).await?;
        let Some(s) = state
            .stage_states()
            .iter()
            .find(|s| s.stage_name() == Some(stage))
        else {
            return Ok(Live::NotActionable(format!(
                "stage {stage} no longer exists"
            )));
        };
        Ok(live_of(s, execution, c.attempts, mode))
    }

    async fn retry(&self, c: &Candidate, mode: RetryMode) -> Result<(), TargetError> {
        let (pipeline, stage, execution) = split_run_id(&c.id).unwrap_or_default();
        let mode = match mode {
            RetryMode::FailedActions => StageRetryMode::FailedActions,
            RetryMode::AllActions => StageRetryMode::AllActions,
        };
        // A throttled answer means the retry was not performed: sending it again is safe, and
        // the whole paced call ends within the operation timeout (the claim's fencing).
        self.pacers
            .retry_stage_execution
            .call(self.pacers.limits.acting(), || {
                let mode = mode.clone();
                async move {
                    self.clients
                        .retry_stage_execution
                        .retry_stage_execution()
                        .pipeline_name(pipeline)
                        .stage_name(stage)
                        .pipeline_execution_id(execution)
                        .retry_mode(mode)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| TargetError::from_sdk("RetryStageExecution", &e))
                }
            })
            .await
    }

    /// Steps 2–4 of the protocol for a claim we hold.
    async fn act_on_claim(
        &self,
        ledger: &dyn Ledger,
        record: AttemptRecord,
        c: &Candidate,
        mode: RetryMode,
    ) -> Result<RedriveOutcome, TargetError> {
        let settle = |phase: Phase, code: &str, message: String| {
            let record = &record;
            let outcome = outcome(code, &message);
            async move {
                ledger
                    .settle(record, phase, Some(outcome), Timestamp::now())
                    .await
                    .map_err(ledger_error)
            }
        };
        // A failed re-read leaves the claim in Intent: resolved from the service later.
        match self.live(c, mode).await? {
            Live::Actionable => {}
            Live::Superseded(by) => {
                let why = format!("superseded by execution {by}");
                settle(Phase::NotActed, "Superseded", why.clone()).await?;
                return Ok(RedriveOutcome::Superseded(why));
            }
            Live::Retried => {
                let why = "the stage was retried by someone else".to_string();
                settle(Phase::NotActed, "AlreadyRedriven", why.clone()).await?;
                return Ok(RedriveOutcome::AlreadyRedriven(why));
            }
            Live::NotActionable(why) => {
                settle(Phase::NotActed, "NotRedrivable", why.clone()).await?;
                return Ok(RedriveOutcome::NotRedrivable(why));
            }
            Live::Busy(why) => {
                settle(Phase::Failed, "TargetBusy", why.clone()).await?;
                return Ok(RedriveOutcome::Busy(why));
            }
        }
        // Fencing: past this point another replica may take the claim over; never start the call
        // when it could still be in flight then.
        if Timestamp::now() + signed(self.settings.operation_timeout) >= record.deadline {
            return Ok(RedriveOutcome::InDoubt(
                "the claim's deadline is too close to act; resolved at a later poll".into(),
            ));
        }
        match self.retry(c, mode).await {
            Ok(()) => {
                settle(
                    Phase::Acted,
                    "Redriven",
                    format!("RetryStageExecution {} accepted", mode.as_str()),
                )
                .await?;
                Ok(RedriveOutcome::Redriven {
                    at: Some(Timestamp::now()),
                })
            }
            Err(e) => {
                let code = e.code.clone().unwrap_or_default();
                let outcome = classify_retry_error(&code, e.category);
                match outcome {
                    RetryRejection::Superseded => {
                        settle(Phase::NotActed, "Superseded", e.message.clone()).await?;
                        Ok(RedriveOutcome::Superseded(e.message))
                    }
                    RetryRejection::Busy => {
                        // Nothing happened: Failed is reclaimable, the attempt is not consumed.
                        settle(Phase::Failed, "TargetBusy", e.message.clone()).await?;
                        Ok(RedriveOutcome::Busy(e.message))
                    }
                    RetryRejection::NotRetryable => {
                        settle(Phase::NotActed, "NotRedrivable", e.message.clone()).await?;
                        Ok(RedriveOutcome::NotRedrivable(e.message))
                    }
                    RetryRejection::NotFound => {
                        settle(Phase::NotActed, "NotFound", e.message.clone()).await?;
                        Ok(RedriveOutcome::NotFound)
                    }
                    RetryRejection::Rejected => {
                        settle(Phase::Failed, code_or(&e), e.message.clone()).await?;
                        Err(e)
                    }
                    // The call may have reached AWS: leave the claim in Intent, resolved from
                    // the stage's state after the deadline.
                    RetryRejection::Unknown => Err(e),
                }
            }
        }
    }

    /// A claim someone else holds (or held): act only when the record proves nothing happened.
    async fn on_taken(
        &self,
        ledger: &dyn Ledger,
        record: AttemptRecord,
        c: &Candidate,
        mode: RetryMode,
        now: Timestamp,
    ) -> Result<RedriveOutcome, TargetError> {
        match record.phase {
            Phase::Acted | Phase::NotActed => {
                Ok(RedriveOutcome::AlreadyClaimed(record.holder.clone()))
            }
            Phase::Intent if now <= record.deadline => Ok(RedriveOutcome::InDoubt(format!(
                "claimed by {} until {}",
                record.holder, record.deadline
            ))),
            Phase::Intent | Phase::Failed => {
                // Expired intent (a crash between claim and record) or a clean rejection:
                // resolve from the service before anything else.
                if record.phase == Phase::Intent {
                    match self.live(c, mode).await? {
                        Live::Actionable => {}
                        Live::Retried => {
                            ledger
                                .settle(
                                    &record,
                                    Phase::Acted,
                                    Some(outcome(
                                        "Resolved",
                                        "the stage shows the retry: the crashed claim acted",
                                    )),
                                    now,
                                )
                                .await
                                .map_err(ledger_error)?;
                            return Ok(RedriveOutcome::AlreadyRedriven(
                                "resolved an in-doubt claim: the retry happened".into(),
                            ));
                        }
                        Live::Superseded(by) => {
                            let why = format!("superseded by execution {by}");
                            ledger
                                .settle(
                                    &record,
                                    Phase::NotActed,
                                    Some(outcome("Superseded", &why)),
                                    now,
                                )
                                .await
                                .map_err(ledger_error)?;
                            return Ok(RedriveOutcome::Superseded(why));
                        }
                        Live::NotActionable(why) => {
                            // In progress (maybe the crashed claim's own retry still running):
                            // wait; decided at a later poll.
                            return Ok(RedriveOutcome::InDoubt(why));
                        }
                        Live::Busy(why) => return Ok(RedriveOutcome::Busy(why)),
                    }
                }
                let deadline = now + signed(claim_deadline(self.settings.operation_timeout));
                match ledger
                    .take_over(&record, &self.settings.holder, now, deadline)
                    .await
                    .map_err(ledger_error)?
                {
                    ClaimResult::Claimed(mine) => self.act_on_claim(ledger, mine, c, mode).await,
                    ClaimResult::Taken(theirs) => Ok(RedriveOutcome::AlreadyClaimed(theirs.holder)),
                }
            }
        }
    }
}

impl Target for CodePipeline {
    fn name(&self) -> &'static str {
        TargetKind::CodePipeline.as_str()
    }

    fn limits(&self) -> TargetLimits {
        TargetLimits::NONE
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::Ledger
    }

    fn clock_skew(&self) -> SignedDuration {
        self.clock.skew()
    }

    async fn discover(&self, policy: &Policy, now: Timestamp) -> Result<Discovery, TargetError> {
        let pipelines = self.resolve(policy).await?;
        let results: Vec<(String, Result<Vec<Candidate>, TargetError>)> = stream::iter(pipelines)
            .map(|p| async move {
                let r = self.candidates_of(policy, &p, now).await;
                (p, r)
            })
            .buffered(STATE_CONCURRENCY)
            .collect()
            .await;
        let mut out = Discovery::default();
        for (pipeline, result) in results {
            out.push_result(pipeline, result);
        }
        Ok(out)
    }

    async fn describe(&self, candidate: &Candidate) -> Result<Details, TargetError> {
        // GetPipelineState already carried the failed actions' errors.
        Ok(candidate.details.clone().unwrap_or(Details {
            error: None,
            cause: None,
            redrivability: None,
        }))
    }

    async fn candidate_for(
        &self,
        policy: &Policy,
        hint: &crate::events::message::Hint,
        now: Timestamp,
    ) -> Result<Option<Candidate>, TargetError> {
        let crate::events::message::Hint::CodePipeline {
            pipeline, stage, ..
        } = hint
        else {
            return Ok(None);
        };
        // One GetPipelineState: the stage's live state decides, not the message (which may be
        // stale, reordered or forged).
        let found = match self.candidates_of(policy, pipeline, now).await {
            Ok(c) => c,
            Err(e) if e.category == ErrorCategory::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let prefix = format!("{pipeline}/{stage}/");
        Ok(found.into_iter().find(|c| c.id.starts_with(&prefix)))
    }

    async fn running_redriven(&self, workflows: &[String]) -> Result<u32, TargetError> {
        // Stages in progress after a manual retry, across the policy's pipelines.
        let mut n = 0u32;
        for p in workflows {
            let state = self.state(p).await?;
            n += state
                .stage_states()
                .iter()
                .filter(|s| {
                    s.latest_execution()
                        .is_some_and(|e| *e.status() == StageExecutionStatus::InProgress)
                        && manual_attempts(s) > 0
                })
                .count() as u32;
        }
        Ok(n)
    }

    async fn redrive(
        &self,
        policy: &Policy,
        candidate: &Candidate,
        _key: &str,
    ) -> Result<RedriveOutcome, TargetError> {
        let spec = policy
            .code_pipeline()
            .ok_or_else(|| not_this_target(policy))?;
        let Some(ledger) = self.settings.ledger.as_deref() else {
            return Err(TargetError::new(
                "RetryStageExecution",
                ErrorCategory::Invalid,
                "codePipeline policies need a durable attempt ledger: run with --state-dir (local mode) or in a cluster",
            ));
        };
        let now = Timestamp::now();
        let claim = NewClaim {
            key: attempt_key(&self.settings.namespace, candidate),
            policy: policy.id.name.clone(),
            workflow: candidate.workflow.clone(),
            root: candidate.id.clone(),
            holder: self.settings.holder.clone(),
            now,
            deadline: now + signed(claim_deadline(self.settings.operation_timeout)),
        };
        match ledger.claim(claim).await.map_err(ledger_error)? {
            ClaimResult::Claimed(record) => {
                self.act_on_claim(ledger, record, candidate, spec.retry_mode)
                    .await
            }
            ClaimResult::Taken(record) => {
                self.on_taken(ledger, record, candidate, spec.retry_mode, now)
                    .await
            }
        }
    }
}

/// The ledger key of the attempt after `c.attempts` retries.
pub fn attempt_key(namespace: &str, c: &Candidate) -> AttemptKey {
    AttemptKey::new(
        namespace,
        TargetKind::CodePipeline.as_str(),
        c.id.clone(),
        c.attempts.saturating_add(1),
    )
}

/// How a RetryStageExecution error leaves the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RetryRejection {
    Superseded,
    Busy,
    NotRetryable,
    NotFound,
    /// Refused before acting (validation, access, throttling, limits): nothing happened.
    Rejected,
    /// Timeout, dropped connection, 5xx: it may have happened.
    Unknown,
}

fn classify_retry_error(code: &str, category: ErrorCategory) -> RetryRejection {
    match code {
        "NotLatestPipelineExecutionException" => RetryRejection::Superseded,
        "ConflictException" => RetryRejection::Busy,
        "StageNotRetryableException" => RetryRejection::NotRetryable,
        "PipelineNotFoundException" | "StageNotFoundException" => RetryRejection::NotFound,
        _ => match category {
            ErrorCategory::Transient | ErrorCategory::Unexpected => RetryRejection::Unknown,
            _ => RetryRejection::Rejected,
        },
    }
}

fn code_or(e: &TargetError) -> &str {
    e.code.as_deref().unwrap_or(e.category.as_str())
}

fn stage_status(s: &StageExecutionStatus) -> Option<RunStatus> {
    match s {
        StageExecutionStatus::Failed => Some(RunStatus::Failed),
        StageExecutionStatus::Stopped => Some(RunStatus::Stopped),
        _ => None,
    }
}

/// The candidate for one failed (or stopped) stage. Pure: everything comes from GetPipelineState
/// and the cached declaration. `now` is the service's clock (for missing timestamps and holds).
fn candidate(
    pipeline: &str,
    s: &StageState,
    declaration: &Declaration,
    mode: RetryMode,
    policy: &Policy,
    now: Timestamp,
) -> Option<Candidate> {
    let stage = s.stage_name()?;
    let latest = s.latest_execution()?;
    let status = stage_status(latest.status())?;
    let actions = s.action_states();
    let changes = actions
        .iter()
        .filter_map(|a| a.latest_execution()?.last_status_change().map(to_timestamp));
    // The backoff clock starts when the latest attempt failed: the newest action change.
    let stopped = changes.clone().max();
    let started = changes.min().or(stopped).unwrap_or(now);
    let failed = actions.iter().find_map(|a| {
        let e = a.latest_execution()?;
        (e.status() == Some(&ActionExecutionStatus::Failed)).then_some(e)
    });
    let details = Details {
        error: failed
            .and_then(|e| e.error_details())
            .and_then(|d| d.code())
            .map(str::to_string),
        cause: failed
            .and_then(|e| e.error_details())
            .and_then(|d| d.message())
            .map(str::to_string),
        redrivability: None,
    };
    let manual = manual_attempts(s);
    let auto = s
        .retry_stage_metadata()
        .and_then(|m| m.auto_stage_retry_attempt())
        .unwrap_or(0);
    let failed_at = stopped.unwrap_or(now);
    let hold = if status == RunStatus::Failed
        && declaration.auto_retry.iter().any(|n| n == stage)
        && auto == 0
        && manual == 0
    {
        // AWS makes one automatic retry of this stage: do not race it.
        Some((
            Reason::AutoRetryPending,
            failed_at + signed(AUTO_RETRY_GRACE),
        ))
    } else if mode == RetryMode::AllActions && action_in_progress(s) {
        Some((Reason::TargetBusy, now + signed(policy.poll_interval)))
    } else {
        None
    };
    Some(Candidate {
        id: run_id(pipeline, stage, latest.pipeline_execution_id()),
        workflow: pipeline.to_string(),
        status,
        started,
        stopped,
        attempts: manual,
        last_attempt: None,
        redriven_by_parent: false,
        hold,
        root: None,
        details: Some(details),
    })
}

/// The stage's `retryStageMetadata.manualStageRetryAttempt` (missing = 0): the attempts count.
fn manual_attempts(s: &StageState) -> u32 {
    s.retry_stage_metadata()
        .and_then(|m| m.manual_stage_retry_attempt())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Whether an action of the stage is running (ALL_ACTIONS must not fire then).
fn action_in_progress(s: &StageState) -> bool {
    s.action_states().iter().any(|a| {
        a.latest_execution()
            .and_then(|e| e.status())
            .is_some_and(|st| *st == ActionExecutionStatus::InProgress)
    })
}

/// Compare the live stage with the failure a claim was made for (pure).
fn live_of(s: &StageState, execution: &str, observed: u32, mode: RetryMode) -> Live {
    let Some(latest) = s.latest_execution() else {
        return Live::NotActionable("the stage has no execution".into());
    };
    if latest.pipeline_execution_id() != execution {
        return Live::Superseded(latest.pipeline_execution_id().to_string());
    }
    if manual_attempts(s) > observed {
        return Live::Retried;
    }
    if stage_status(latest.status()).is_none() {
        return Live::NotActionable(format!("the stage is {}", latest.status().as_str()));
    }
    if mode == RetryMode::AllActions && action_in_progress(s) {
        return Live::Busy("an action of the stage is in progress (ALL_ACTIONS)".into());
    }
    Live::Actionable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_round_trip() {
        let id = run_id("orders", "Deploy", "2f1d6f0e-8e0a-4c52-9d0c-9a0a8d6b1c11");
        assert_eq!(
            split_run_id(&id),
            Some(("orders", "Deploy", "2f1d6f0e-8e0a-4c52-9d0c-9a0a8d6b1c11"))
        );
        assert_eq!(split_run_id("orders/Deploy"), None);
    }

    #[test]
    fn retry_errors_are_classified_by_what_they_leave_behind() {
        use RetryRejection::*;
        let t = ErrorCategory::Transient;
        assert_eq!(
            classify_retry_error("NotLatestPipelineExecutionException", t),
            Superseded
        );
        assert_eq!(classify_retry_error("ConflictException", t), Busy);
        assert_eq!(
            classify_retry_error("StageNotRetryableException", t),
            NotRetryable
        );
        assert_eq!(
            classify_retry_error("ThrottlingException", ErrorCategory::Throttled),
            Rejected
        );
        assert_eq!(
            classify_retry_error(
                "ConcurrentPipelineExecutionsLimitExceededException",
                ErrorCategory::LimitExceeded
            ),
            Rejected
        );
        assert_eq!(classify_retry_error("", ErrorCategory::Transient), Unknown);
    }
}
