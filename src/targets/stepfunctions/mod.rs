//! AWS Step Functions target: cheap first (design.md section 4).
//!
//! 1. Resolve state machines: explicit ARNs cost nothing; a selector costs ListStateMachines and
//!    ListTagsForResource (1 call/s quota), both cached for `discovery_ttl`.
//! 2. ListExecutions per selected status, newest first, 1,000 per page; paging stops at
//!    executions that started before `now - (window.maxAge + stepFunctions.maxRunTime)`. List
//!    items carry stopDate, redriveCount and redriveDate, enough for the window, maxRedrives and
//!    backoff rules. EXPRESS state machines answer StateMachineTypeNotSupported: skipped with a
//!    reason, without a DescribeStateMachine call.
//! 3. Details only when the engine asks (error filters), through two buckets: the last event of
//!    `GetExecutionHistory(reverseOrder, maxResults 1, no data)` carries the error and cause of
//!    a FAILED / TIMED_OUT / ABORTED execution and its id is the history length (the
//!    25,000-event rule), so it serves as well as DescribeExecution, from its own bucket (20/s
//!    next to 10-15/s). Each read goes to whichever API's pacer can send sooner; Map Run children
//!    and unexpected last events fall back to DescribeExecution. History says nothing of
//!    `redriveStatus`: the rules the list cannot decide (a DELETING state machine) then show up
//!    as an `ExecutionNotRedrivable` answer to the redrive, which is harmless.
//! 4. RedriveExecution with the engine's token. ExecutionNotRedrivable for a RUNNING execution
//!    means someone already redrove it: not an error.
//!
//! Every call is paced by the process-wide pacer of its API ([`crate::aws::paced`]), which also
//! retries throttled answers (a retried RedriveExecution sends the same token).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sfn::config::retry::RetryPartition;
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
use aws_sdk_sfn::types::{
    ExecutionRedriveFilter, ExecutionRedriveStatus, ExecutionStatus, HistoryEventType,
    StateMachineType,
};
use futures::{StreamExt, TryStreamExt, stream};
use jiff::{SignedDuration, Timestamp};

use super::{
    Discovery, ErrorCategory, RedriveOutcome, Target, TargetError, WorkflowIssue, not_this_target,
    to_timestamp,
};
use crate::aws::paced::{ApiPacer, CallLimits, Pacing, Reserved, reserve_sooner};
use crate::clock::ServiceClock;
use crate::engine::{Candidate, Details, Reason, Redrivability, RunStatus, TargetLimits};
use crate::policy::{AWS_REDRIVE_PERIOD, Policy, TargetKind};

/// Documented reason strings (DescribeExecution `redriveStatusReason`).
pub const REASON_PERIOD_EXCEEDED: &str = "Execution redrivable period exceeded";
pub const REASON_MAX_TIME: &str = "Execution has exceeded the max execution time";
pub const REASON_BEFORE_LAUNCH: &str =
    "Execution was started before the launch of RedriveExecution";
pub const REASON_HISTORY_LIMIT: &str = "Execution history event limit exceeded";

/// A history of this many events or more cannot be redriven: a redrive appends at least two
/// and the limit is 25,000 (api-facts §1.2).
pub const HISTORY_REDRIVE_LIMIT: i64 = 24_999;

/// RedriveExecution launched on 2023-11-15; older executions can never be redriven.
pub const REDRIVE_LAUNCH: Timestamp = Timestamp::constant(1_700_006_400, 0);

/// Step Functions' own redrive limits, each with the reason AWS gives when it applies.
pub const LIMITS: TargetLimits = TargetLimits {
    redrive_period: Some((AWS_REDRIVE_PERIOD, REASON_PERIOD_EXCEEDED)),
    max_open_time: Some((Duration::from_secs(365 * 86_400), REASON_MAX_TIME)),
    not_before: Some((REDRIVE_LAUNCH, REASON_BEFORE_LAUNCH)),
};

const LIST_PAGE_SIZE: i32 = 1000;
/// State machines listed at once within one policy (ListExecutions refills at 2-5 calls/s).
const LIST_CONCURRENCY: usize = 4;

/// One state machine as listed.
#[derive(Clone, Debug)]
struct StateMachineInfo {
    arn: String,
    name: String,
    express: bool,
}

/// A value and when it was fetched.
type Cached<T> = (Instant, T);

/// One client per API the adapter calls, each in its own retry partition `<account key>/<API>`.
///
/// AWS throttles every API with its own token bucket (DescribeExecution refills at 10–15/s,
/// RedriveExecution at 150–300/s), and the SDK's standard mode keeps one retry quota (for
/// transport errors) per partition: one API's faults must not spend another's retries. Rates
/// are the pacers' ([`ApiPacers`]).
struct ApiClients {
    list_executions: aws_sdk_sfn::Client,
    describe_execution: aws_sdk_sfn::Client,
    get_execution_history: aws_sdk_sfn::Client,
    redrive_execution: aws_sdk_sfn::Client,
    list_state_machines: aws_sdk_sfn::Client,
    list_tags_for_resource: aws_sdk_sfn::Client,
}

impl ApiClients {
    fn new(client: &aws_sdk_sfn::Client, partition_key: &str) -> Self {
        let partitioned = |api: &str| {
            let conf = client
                .config()
                .to_builder()
                .retry_partition(RetryPartition::new(format!("{partition_key}/{api}")))
                .build();
            aws_sdk_sfn::Client::from_conf(conf)
        };
        ApiClients {
            list_executions: partitioned("ListExecutions"),
            describe_execution: partitioned("DescribeExecution"),
            get_execution_history: partitioned("GetExecutionHistory"),
            redrive_execution: partitioned("RedriveExecution"),
            list_state_machines: partitioned("ListStateMachines"),
            list_tags_for_resource: partitioned("ListTagsForResource"),
        }
    }
}

/// The shared pacer of every API the adapter calls.
struct ApiPacers {
    list_executions: ApiPacer,
    describe_execution: ApiPacer,
    get_execution_history: ApiPacer,
    redrive_execution: ApiPacer,
    list_state_machines: ApiPacer,
    list_tags_for_resource: ApiPacer,
    limits: CallLimits,
}

impl ApiPacers {
    fn new(pacing: &Pacing) -> Self {
        ApiPacers {
            list_executions: pacing.api("ListExecutions"),
            describe_execution: pacing.api("DescribeExecution"),
            get_execution_history: pacing.api("GetExecutionHistory"),
            redrive_execution: pacing.api("RedriveExecution"),
            list_state_machines: pacing.api("ListStateMachines"),
            list_tags_for_resource: pacing.api("ListTagsForResource"),
            limits: pacing.limits,
        }
    }
}

/// The Step Functions adapter for one (region, credentials) client.
pub struct StepFunctions {
    clients: ApiClients,
    pacers: ApiPacers,
    /// GetExecutionHistory was refused (a role granted before the operator used it): details
    /// come from DescribeExecution alone from then on.
    history_denied: AtomicBool,
    /// The service's clock as its answers tell it (fed by the client's interceptor when built
    /// with [`crate::aws::sfn_client`] and the same clock).
    clock: ServiceClock,
    discovery_ttl: Duration,
    machines: Mutex<Option<Cached<Vec<StateMachineInfo>>>>,
    tags: Mutex<HashMap<String, Cached<BTreeMap<String, String>>>>,
}

impl StepFunctions {
    /// `partition_key` names the AWS account and region the client's credentials reach (e.g.
    /// `redrive-sfn/eu-west-1/arn:aws:iam::123456789012:role/x`): the SDK's retry partitions and
    /// the clock estimate are named after it. Paced by pacers of its own until
    /// [`StepFunctions::with_pacing`].
    pub fn new(client: aws_sdk_sfn::Client, partition_key: &str, discovery_ttl: Duration) -> Self {
        Self {
            clients: ApiClients::new(&client, partition_key),
            pacers: ApiPacers::new(&Pacing::unshared(TargetKind::StepFunctions)),
            history_denied: AtomicBool::new(false),
            clock: ServiceClock::new(partition_key),
            discovery_ttl,
            machines: Mutex::new(None),
            tags: Mutex::new(HashMap::new()),
        }
    }

    /// Pace every call with `pacing`'s pacers (shared with every client of the same account and
    /// region) instead of pacers of its own.
    pub fn with_pacing(mut self, pacing: &Pacing) -> Self {
        self.pacers = ApiPacers::new(pacing);
        self
    }

    /// Use `clock`, the estimate the client's interceptor feeds, for [`Target::clock_skew`].
    pub fn with_clock(mut self, clock: ServiceClock) -> Self {
        self.clock = clock;
        self
    }

    async fn all_state_machines(&self) -> Result<Vec<StateMachineInfo>, TargetError> {
        if let Some((at, list)) = self.machines.lock().expect("lock").as_ref()
            && at.elapsed() < self.discovery_ttl
        {
            return Ok(list.clone());
        }
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let token = next.take();
            let page = self
                .pacers
                .list_state_machines
                .call(self.pacers.limits, || {
                    let token = token.clone();
                    async move {
                        self.clients
                            .list_state_machines
                            .list_state_machines()
                            .max_results(LIST_PAGE_SIZE)
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| TargetError::from_sdk("ListStateMachines", &e))
                    }
                })
                .await?;
            for sm in page.state_machines() {
                out.push(StateMachineInfo {
                    arn: sm.state_machine_arn().to_string(),
                    name: sm.name().to_string(),
                    express: *sm.r#type() == StateMachineType::Express,
                });
            }
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        *self.machines.lock().expect("lock") = Some((Instant::now(), out.clone()));
        Ok(out)
    }

    async fn tags_of(&self, arn: &str) -> Result<BTreeMap<String, String>, TargetError> {
        if let Some((at, tags)) = self.tags.lock().expect("lock").get(arn)
            && at.elapsed() < self.discovery_ttl
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
            .filter_map(|t| {
                Some((
                    t.key()?.to_string(),
                    t.value().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        self.tags
            .lock()
            .expect("lock")
            .insert(arn.to_string(), (Instant::now(), tags.clone()));
        Ok(tags)
    }

    /// Explicit ARNs plus the selector's matches, deduplicated, in a stable order.
    async fn resolve(
        &self,
        policy: &Policy,
    ) -> Result<(Vec<String>, Vec<(String, WorkflowIssue)>), TargetError> {
        let Some(spec) = policy.step_functions() else {
            return Err(not_this_target(policy));
        };
        let mut arns: Vec<String> = spec.state_machines.clone();
        let mut issues = Vec::new();
        if let Some(selector) = &spec.selector {
            for sm in self.all_state_machines().await? {
                if !selector.matches_name(&sm.name) {
                    continue;
                }
                if !selector.tags.is_empty() {
                    let tags = self.tags_of(&sm.arn).await?;
                    if !selector.tags.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                        continue;
                    }
                }
                if sm.express {
                    issues.push((sm.arn, WorkflowIssue::Skipped(Reason::ExpressNotSupported)));
                } else {
                    arns.push(sm.arn);
                }
            }
        }
        arns.sort();
        arns.dedup();
        Ok((arns, issues))
    }

    /// All executions of one state machine with one status, newest first, down to `cutoff`.
    async fn list(
        &self,
        sm: &str,
        status: ExecutionStatus,
        cutoff: Timestamp,
    ) -> Result<Vec<Candidate>, TargetError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let token = next.take();
            let page = self
                .pacers
                .list_executions
                .call(self.pacers.limits, || {
                    let (token, status) = (token.clone(), status.clone());
                    async move {
                        self.clients
                            .list_executions
                            .list_executions()
                            .state_machine_arn(sm)
                            .status_filter(status)
                            .max_results(LIST_PAGE_SIZE)
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| TargetError::from_sdk("ListExecutions", &e))
                    }
                })
                .await?;
            let mut reached_cutoff = false;
            for item in page.executions() {
                let started = to_timestamp(item.start_date());
                if started < cutoff {
                    reached_cutoff = true;
                }
                out.push(Candidate {
                    id: item.execution_arn().to_string(),
                    workflow: item.state_machine_arn().to_string(),
                    status: run_status(item.status()),
                    started,
                    stopped: item.stop_date().map(to_timestamp),
                    // Missing redriveCount means never redriven.
                    attempts: item
                        .redrive_count()
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0),
                    last_attempt: item.redrive_date().map(to_timestamp),
                    redriven_by_parent: item.map_run_arn().is_some()
                        || is_map_run_child(item.execution_arn()),
                    hold: None,
                    root: None,
                    details: None,
                });
            }
            next = page.next_token().map(str::to_string);
            // Newest first: once a page reaches past the cutoff, older pages cannot hold anything
            // the window admits.
            if next.is_none() || reached_cutoff {
                return Ok(out);
            }
        }
    }

    /// DescribeExecution, its first send in `first` when reserved already.
    async fn describe_execution(
        &self,
        arn: &str,
        first: Option<Reserved>,
    ) -> Result<DescribeExecutionOutput, TargetError> {
        self.pacers
            .describe_execution
            .call_reserved(first, self.pacers.limits, || async {
                self.clients
                    .describe_execution
                    .describe_execution()
                    .execution_arn(arn)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("DescribeExecution", &e))
            })
            .await
    }

    /// The newest event of an execution's history, without its data.
    async fn last_event(
        &self,
        arn: &str,
        first: Option<Reserved>,
    ) -> Result<GetExecutionHistoryOutput, TargetError> {
        self.pacers
            .get_execution_history
            .call_reserved(first, self.pacers.limits, || async {
                self.clients
                    .get_execution_history
                    .get_execution_history()
                    .execution_arn(arn)
                    .reverse_order(true)
                    .max_results(1)
                    .include_execution_data(false)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("GetExecutionHistory", &e))
            })
            .await
    }

    /// Details from the last history event, or None where it cannot tell (then describe).
    async fn details_from_history(
        &self,
        c: &Candidate,
        first: Reserved,
    ) -> Result<Option<Details>, TargetError> {
        match self.last_event(&c.id, Some(first)).await {
            Ok(out) => Ok(details_of_last_event(c.status, &out)),
            Err(e) if e.category == ErrorCategory::AccessDenied => {
                if !self.history_denied.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "GetExecutionHistory refused: reading details with DescribeExecution only \
                         (grant states:GetExecutionHistory for twice the rate, docs/iam.md)"
                    );
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn count_running_redriven(&self, sm: &str) -> Result<u32, TargetError> {
        let mut n = 0u32;
        let mut next: Option<String> = None;
        loop {
            let token = next.take();
            let page = self
                .pacers
                .list_executions
                .call(self.pacers.limits, || {
                    let token = token.clone();
                    async move {
                        self.clients
                            .list_executions
                            .list_executions()
                            .state_machine_arn(sm)
                            .status_filter(ExecutionStatus::Running)
                            .redrive_filter(ExecutionRedriveFilter::Redriven)
                            .max_results(LIST_PAGE_SIZE)
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| TargetError::from_sdk("ListExecutions", &e))
                    }
                })
                .await?;
            n = n.saturating_add(u32::try_from(page.executions().len()).unwrap_or(u32::MAX));
            next = page.next_token().map(str::to_string);
            if next.is_none() {
                return Ok(n);
            }
        }
    }
}

impl Target for StepFunctions {
    fn name(&self) -> &'static str {
        TargetKind::StepFunctions.as_str()
    }

    fn limits(&self) -> TargetLimits {
        LIMITS
    }

    fn clock_skew(&self) -> SignedDuration {
        self.clock.skew()
    }

    async fn discover(&self, policy: &Policy, now: Timestamp) -> Result<Discovery, TargetError> {
        let (workflows, mut issues) = self.resolve(policy).await?;
        // The lookback is compared with the service's startDates.
        let now = crate::clock::shift(now, self.clock.skew());
        let max_run_time = policy
            .step_functions()
            .map(|s| s.max_run_time)
            .unwrap_or_default();
        let lookback =
            SignedDuration::try_from(policy.max_age + max_run_time).unwrap_or(SignedDuration::MAX);
        let cutoff = now.checked_sub(lookback).unwrap_or(Timestamp::MIN);
        let statuses: Vec<ExecutionStatus> = policy
            .statuses
            .iter()
            .map(|s| ExecutionStatus::from(s.as_str()))
            .collect();

        let results: Vec<(String, Result<Vec<Candidate>, TargetError>)> =
            stream::iter(workflows.iter().cloned())
                .map(|sm| {
                    let statuses = statuses.clone();
                    async move {
                        let mut all = Vec::new();
                        for status in statuses {
                            match self.list(&sm, status, cutoff).await {
                                Ok(mut c) => all.append(&mut c),
                                Err(e) => return (sm, Err(e)),
                            }
                        }
                        (sm, Ok(all))
                    }
                })
                .buffered(LIST_CONCURRENCY)
                .collect()
                .await;

        let mut candidates = Vec::new();
        let mut listed = Vec::new();
        for (sm, result) in results {
            match result {
                Ok(mut c) => {
                    candidates.append(&mut c);
                    listed.push(sm);
                }
                Err(e) if e.code.as_deref() == Some("StateMachineTypeNotSupported") => {
                    issues.push((sm, WorkflowIssue::Skipped(Reason::ExpressNotSupported)));
                }
                Err(e) => issues.push((sm, WorkflowIssue::Failed(e))),
            }
        }
        Ok(Discovery {
            workflows: listed,
            candidates,
            issues,
        })
    }

    async fn describe(&self, candidate: &Candidate) -> Result<Details, TargetError> {
        let mut first = None;
        if history_can_tell(candidate) && !self.history_denied.load(Ordering::Relaxed) {
            // History first on a tie: the larger bucket and refill.
            let (i, slot) = reserve_sooner(&[
                &self.pacers.get_execution_history,
                &self.pacers.describe_execution,
            ]);
            if i == 0 {
                if let Some(d) = self.details_from_history(candidate, slot).await? {
                    return Ok(d);
                }
            } else {
                first = Some(slot);
            }
        }
        let out = self.describe_execution(&candidate.id, first).await?;
        Ok(details_of(&out))
    }

    async fn candidate_for(
        &self,
        _policy: &Policy,
        hint: &crate::events::message::Hint,
        _now: Timestamp,
    ) -> Result<Option<Candidate>, TargetError> {
        let crate::events::message::Hint::StepFunctions {
            execution_arn,
            state_machine_arn,
            ..
        } = hint
        else {
            return Ok(None);
        };
        let out = match self.describe_execution(execution_arn, None).await {
            Ok(o) => o,
            // A forged or stale hint: nothing to decide.
            Err(e)
                if e.category == ErrorCategory::NotFound
                    || e.category == ErrorCategory::Invalid =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // The service, not the message, says which machine the execution belongs to.
        if out.state_machine_arn() != state_machine_arn.as_str() {
            return Ok(None);
        }
        let status = run_status(out.status());
        if !matches!(
            status,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Aborted
        ) {
            return Ok(None);
        }
        Ok(Some(Candidate {
            id: out.execution_arn().to_string(),
            workflow: out.state_machine_arn().to_string(),
            status,
            started: to_timestamp(out.start_date()),
            stopped: out.stop_date().map(to_timestamp),
            attempts: out
                .redrive_count()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            last_attempt: out.redrive_date().map(to_timestamp),
            redriven_by_parent: out.map_run_arn().is_some()
                || is_map_run_child(out.execution_arn()),
            hold: None,
            root: None,
            details: Some(details_of(&out)),
        }))
    }

    async fn running_redriven(&self, workflows: &[String]) -> Result<u32, TargetError> {
        let counts: Vec<u32> = stream::iter(workflows.to_vec())
            .map(|sm| async move { self.count_running_redriven(&sm).await })
            .buffered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(counts.into_iter().fold(0u32, u32::saturating_add))
    }

    async fn redrive(
        &self,
        _policy: &Policy,
        candidate: &Candidate,
        client_token: &str,
    ) -> Result<RedriveOutcome, TargetError> {
        // A throttled call is sent again with the same token: AWS performs one redrive.
        let result = self
            .pacers
            .redrive_execution
            .call(self.pacers.limits.acting(), || async {
                self.clients
                    .redrive_execution
                    .redrive_execution()
                    .execution_arn(&candidate.id)
                    .client_token(client_token)
                    .send()
                    .await
                    .map_err(|e| TargetError::from_sdk("RedriveExecution", &e))
            })
            .await;
        match result {
            Ok(out) => Ok(RedriveOutcome::Redriven {
                at: Some(to_timestamp(out.redrive_date())),
            }),
            Err(err) => match err.code.as_deref() {
                Some("ExecutionNotRedrivable") if err.message.contains("RUNNING") => {
                    Ok(RedriveOutcome::AlreadyRedriven(err.message))
                }
                Some("ExecutionNotRedrivable") => Ok(RedriveOutcome::NotRedrivable(err.message)),
                Some("ExecutionDoesNotExist") => Ok(RedriveOutcome::NotFound),
                _ if err.category == ErrorCategory::NotFound => Ok(RedriveOutcome::NotFound),
                _ => Err(err),
            },
        }
    }
}

/// Whether the last history event can stand for DescribeExecution: a stopped execution that is
/// not a Map Run child (whose redrivability only DescribeExecution tells).
fn history_can_tell(c: &Candidate) -> bool {
    !c.redriven_by_parent
        && !is_map_run_child(&c.id)
        && matches!(
            c.status,
            RunStatus::Failed | RunStatus::TimedOut | RunStatus::Aborted
        )
}

/// The details the last history event gives: its error and cause, when it is the stop event of
/// the status the list showed; its id is the history length. None: an event of another type
/// (e.g. the execution was redriven since the list), so describe instead.
fn details_of_last_event(status: RunStatus, out: &GetExecutionHistoryOutput) -> Option<Details> {
    let ev = out.events().first()?;
    let (error, cause) = match (ev.r#type(), status) {
        (HistoryEventType::ExecutionFailed, RunStatus::Failed) => {
            let d = ev.execution_failed_event_details()?;
            (d.error(), d.cause())
        }
        (HistoryEventType::ExecutionTimedOut, RunStatus::TimedOut) => {
            let d = ev.execution_timed_out_event_details()?;
            (d.error(), d.cause())
        }
        (HistoryEventType::ExecutionAborted, RunStatus::Aborted) => {
            let d = ev.execution_aborted_event_details()?;
            (d.error(), d.cause())
        }
        _ => return None,
    };
    let redrivability = (ev.id() >= HISTORY_REDRIVE_LIMIT)
        .then(|| Redrivability::NotRedrivable(REASON_HISTORY_LIMIT.to_string()));
    Some(Details {
        error: error.map(str::to_string),
        cause: cause.map(str::to_string),
        redrivability,
    })
}

/// The details DescribeExecution gives (error, cause, redrivability).
fn details_of(out: &DescribeExecutionOutput) -> Details {
    let redrivability = out.redrive_status().map(|s| match s {
        ExecutionRedriveStatus::Redrivable => Redrivability::Redrivable,
        ExecutionRedriveStatus::RedrivableByMapRun => Redrivability::ByMapRun,
        ExecutionRedriveStatus::NotRedrivable => Redrivability::NotRedrivable(
            out.redrive_status_reason()
                .unwrap_or("not redrivable")
                .to_string(),
        ),
        other => Redrivability::NotRedrivable(format!("unknown redriveStatus {}", other.as_str())),
    });
    Details {
        error: out.error().map(str::to_string),
        cause: out.cause().map(str::to_string),
        redrivability,
    }
}

/// `...:execution:stateMachine/mapLabel:name` is a Distributed Map child.
fn is_map_run_child(execution_arn: &str) -> bool {
    execution_arn
        .split(':')
        .nth(6)
        .is_some_and(|sm| sm.contains('/'))
}

fn run_status(s: &ExecutionStatus) -> RunStatus {
    match s {
        ExecutionStatus::Failed => RunStatus::Failed,
        ExecutionStatus::TimedOut => RunStatus::TimedOut,
        ExecutionStatus::Aborted => RunStatus::Aborted,
        ExecutionStatus::Running => RunStatus::Running,
        ExecutionStatus::Succeeded => RunStatus::Succeeded,
        _ => RunStatus::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_date_is_2023_11_15() {
        assert_eq!(REDRIVE_LAUNCH.to_string(), "2023-11-15T00:00:00Z");
    }

    fn last(ty: HistoryEventType, id: i64) -> GetExecutionHistoryOutput {
        use aws_sdk_sfn::types::{
            ExecutionAbortedEventDetails, ExecutionFailedEventDetails,
            ExecutionTimedOutEventDetails, HistoryEvent,
        };
        let mut ev = HistoryEvent::builder()
            .timestamp(aws_smithy_types::DateTime::from_secs(1_800_000_000))
            .r#type(ty.clone())
            .id(id);
        ev = match ty {
            HistoryEventType::ExecutionFailed => ev.execution_failed_event_details(
                ExecutionFailedEventDetails::builder()
                    .error("Lambda.ServiceException")
                    .cause("boom")
                    .build(),
            ),
            HistoryEventType::ExecutionTimedOut => ev.execution_timed_out_event_details(
                ExecutionTimedOutEventDetails::builder()
                    .error("States.Timeout")
                    .build(),
            ),
            HistoryEventType::ExecutionAborted => {
                ev.execution_aborted_event_details(ExecutionAbortedEventDetails::builder().build())
            }
            _ => ev,
        };
        GetExecutionHistoryOutput::builder()
            .events(ev.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn the_stop_event_gives_error_cause_and_the_history_rule() {
        let d = details_of_last_event(
            RunStatus::Failed,
            &last(HistoryEventType::ExecutionFailed, 12),
        )
        .unwrap();
        assert_eq!(d.error.as_deref(), Some("Lambda.ServiceException"));
        assert_eq!(d.cause.as_deref(), Some("boom"));
        assert_eq!(d.redrivability, None, "history cannot tell the rest");
        let t = details_of_last_event(
            RunStatus::TimedOut,
            &last(HistoryEventType::ExecutionTimedOut, 5),
        )
        .unwrap();
        assert_eq!(t.error.as_deref(), Some("States.Timeout"));
        let a = details_of_last_event(
            RunStatus::Aborted,
            &last(HistoryEventType::ExecutionAborted, 5),
        )
        .unwrap();
        assert_eq!((a.error, a.cause), (None, None));
        // The id is the history length: 24,999 events cannot be redriven.
        let long = details_of_last_event(
            RunStatus::Failed,
            &last(HistoryEventType::ExecutionFailed, HISTORY_REDRIVE_LIMIT),
        )
        .unwrap();
        assert_eq!(
            long.redrivability,
            Some(Redrivability::NotRedrivable(REASON_HISTORY_LIMIT.into()))
        );
        let short = details_of_last_event(
            RunStatus::Failed,
            &last(HistoryEventType::ExecutionFailed, HISTORY_REDRIVE_LIMIT - 1),
        )
        .unwrap();
        assert_eq!(short.redrivability, None);
    }

    #[test]
    fn other_last_events_fall_back_to_describe() {
        // Redriven since the list (running again), or a status that does not match the list's.
        for (status, ty) in [
            (RunStatus::Failed, HistoryEventType::ExecutionRedriven),
            (RunStatus::Failed, HistoryEventType::TaskStateEntered),
            (RunStatus::Failed, HistoryEventType::ExecutionTimedOut),
            (RunStatus::TimedOut, HistoryEventType::ExecutionFailed),
            (RunStatus::Aborted, HistoryEventType::ExecutionSucceeded),
        ] {
            assert_eq!(
                details_of_last_event(status, &last(ty.clone(), 9)),
                None,
                "{status:?} / {ty:?}"
            );
        }
        let empty = GetExecutionHistoryOutput::builder()
            .set_events(Some(Vec::new()))
            .build()
            .unwrap();
        assert_eq!(details_of_last_event(RunStatus::Failed, &empty), None);
    }

    #[test]
    fn map_run_children_are_described() {
        let c = |id: &str, by_parent: bool| Candidate {
            id: id.into(),
            workflow: "sm".into(),
            status: RunStatus::Failed,
            started: Timestamp::UNIX_EPOCH,
            stopped: None,
            attempts: 0,
            last_attempt: None,
            redriven_by_parent: by_parent,
            hold: None,
            root: None,
            details: None,
        };
        assert!(history_can_tell(&c(
            "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
            false
        )));
        assert!(!history_can_tell(&c(
            "arn:aws:states:us-east-1:123456789012:execution:sm/Map:child-1",
            false
        )));
        assert!(!history_can_tell(&c(
            "arn:aws:states:us-east-1:123456789012:execution:sm:run-1",
            true
        )));
    }

    #[test]
    fn map_run_children_are_recognised_by_arn() {
        assert!(is_map_run_child(
            "arn:aws:states:us-east-1:123456789012:execution:sm/Map:child-1"
        ));
        assert!(!is_map_run_child(
            "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"
        ));
        assert!(!is_map_run_child("garbage"));
    }
}
