//! One poll of one policy: discover, describe where needed, plan, act.
//!
//! Shared by local mode (`run -f`) and the in-cluster controller, so both take exactly the same
//! decisions. Per-policy memory (rate bucket, details cache, totals) lives in [`PolicyState`].
//!
//! Two clocks (docs/reliability.md, "Clock skew"): the rules measured against the service's
//! timestamps (windows, minAge, backoff, the service's own limits) are decided on the
//! **service's** clock, `now + skew`, with the target's estimate of the skew
//! ([`Target::clock_skew`], from the service's `Date` headers). Everything else stays on the
//! operator's clock: the report's times, the waits it reports (converted back), the rate
//! budget, the poll schedule, claim deadlines and ledger times.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use crate::admin::Health;
use crate::aws::{AwsSettings, CallCounter};
use crate::clock::shift;
use crate::engine::{
    self, BudgetState, Candidate, Details, Plan, RateBucket, signed_duration as signed,
};
use crate::events::message::Hint;
use crate::ledger::Ledger;
use crate::metrics::{Metrics, PollSummary};
use crate::policy::{Policy, PolicyId};
use crate::targets::flowservice::credentials::SecretStore;
use crate::targets::registry::{AnyTarget, RegistrySettings, TargetRegistry};
use crate::targets::stepfunctions::StepFunctions;
use crate::targets::{ErrorCategory, RedriveOutcome, Target, TargetError, WorkflowIssue};

/// How many recent redrives a policy remembers (and shows in status).
pub const RECENT_LIMIT: usize = 20;

/// Operator-wide settings for polls.
#[derive(Clone, Debug)]
pub struct PollSettings {
    pub aws: AwsSettings,
    /// RedriveExecution / DescribeExecution calls in flight per policy.
    pub concurrency: usize,
    /// How long selector results (ListStateMachines, tags) are reused.
    pub discovery_ttl: Duration,
    /// This replica's identity in attempt-ledger claims.
    pub holder: String,
    /// Adobe endpoints (Flow Service).
    pub adobe: crate::targets::flowservice::AdobeSettings,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            aws: AwsSettings::default(),
            concurrency: 16,
            discovery_ttl: Duration::from_secs(300),
            holder: crate::targets::registry::default_holder(),
            adobe: Default::default(),
        }
    }
}

/// Shared, long-lived clients (one per service, region, role and namespace, so SDK rate limiting
/// and selector caches span polls and policies), metrics and health.
pub struct Context {
    pub settings: PollSettings,
    pub calls: CallCounter,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    registry: TargetRegistry,
    /// Outlives registry rebuilds: one pacer per (account, region, API) for the process.
    pacers: crate::aws::paced::Pacers,
    ledger: Option<Arc<dyn Ledger>>,
    secrets: SecretStore,
    /// When each ledger namespace was last pruned.
    pruned: Mutex<HashMap<String, std::time::Instant>>,
}

/// How often one namespace's attempt records are pruned.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Records are kept for the longest redrive window of any ledger target plus a day, whatever
/// window the polling policy has: another policy of the namespace may need them longer.
pub const LEDGER_RETENTION: Duration = Duration::from_secs((365 + 1) * 86_400);

impl Context {
    pub fn new(settings: PollSettings) -> Self {
        Self::with_observability(settings, Arc::new(Metrics::new()), Arc::new(Health::new(5)))
    }

    /// A context whose polls and AWS calls feed `metrics` and `health` (the admin server's).
    pub fn with_observability(
        settings: PollSettings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let calls = CallCounter::with_metrics(metrics.clone());
        let pacers = crate::aws::paced::Pacers::new(settings.aws.quota_share)
            .with_quota_scale(settings.aws.quota_scale)
            .with_metrics(metrics.clone());
        let registry = TargetRegistry::new(
            registry_settings(&settings, None, SecretStore::None, &pacers),
            calls.clone(),
        );
        Self {
            settings,
            calls,
            metrics,
            health,
            registry,
            pacers,
            ledger: None,
            secrets: SecretStore::None,
            pruned: Mutex::new(HashMap::new()),
        }
    }

    /// Use `ledger` for targets without a service token (CodePipeline, Flow Service). Without
    /// one they refuse to act.
    pub fn with_ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.ledger = Some(ledger);
        self.rebuild_registry()
    }

    /// Read Flow Service credentials Secrets from `secrets`. Without a store those policies
    /// report a Credentials error.
    pub fn with_secrets(mut self, secrets: SecretStore) -> Self {
        self.secrets = secrets;
        self.rebuild_registry()
    }

    fn rebuild_registry(mut self) -> Self {
        self.registry = TargetRegistry::new(
            registry_settings(
                &self.settings,
                self.ledger.clone(),
                self.secrets.clone(),
                &self.pacers,
            ),
            self.calls.clone(),
        );
        self
    }

    /// Delete the attempt records of the policy's namespace that no policy can need any more
    /// (older than [`LEDGER_RETENTION`]), at most every [`PRUNE_EVERY`] per namespace. Never
    /// fails the poll: a failed prune is retried at the next one.
    async fn prune_ledger(&self, policy: &Policy) {
        let Some(ledger) = &self.ledger else { return };
        if policy.dry_run || policy.suspend {
            return;
        }
        let ns = external_id(&policy.id);
        {
            let mut pruned = self.pruned.lock().expect("prune lock");
            if pruned.get(&ns).is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            pruned.insert(ns.clone(), std::time::Instant::now());
        }
        let cutoff = Timestamp::now() - signed(LEDGER_RETENTION);
        match ledger.prune(&ns, cutoff).await {
            Ok(0) => {}
            Ok(n) => info!(namespace = %ns, deleted = n, "pruned attempt records"),
            Err(e) => {
                self.pruned.lock().expect("prune lock").remove(&ns);
                warn!(namespace = %ns, category = e.category().as_str(), error = %e, "pruning attempt records failed");
            }
        }
    }

    /// Record a finished poll (metrics, liveness schedule).
    pub fn observe_poll(
        &self,
        policy: &Policy,
        result: &Result<PollReport, PollError>,
        took: Duration,
        retry_in: Duration,
    ) {
        match result {
            Ok(report) => {
                self.metrics
                    .record_poll(policy.kind().as_str(), &report.summary(), took);
                if policy.suspend {
                    self.health.forget(&policy.id);
                } else {
                    self.health
                        .poll_scheduled(&policy.id, retry_in, policy.poll_interval);
                }
            }
            Err(e) => {
                self.metrics
                    .record_failed_poll(&policy.id, e.category().as_str(), took);
                self.health
                    .poll_scheduled(&policy.id, retry_in, policy.poll_interval);
            }
        }
    }

    /// Record a decided event hint: its redrives count like a poll's; the decision gauges and
    /// the poll schedule stay those of the last full poll.
    pub fn observe_hint(&self, policy: &Policy, result: &Result<PollReport, PollError>) {
        if let Ok(report) = result {
            self.metrics.record_redrives(
                &policy.id,
                policy.kind().as_str(),
                &report.summary().outcomes,
            );
        }
    }

    /// The target client for a policy.
    pub async fn target(&self, policy: &Policy) -> AnyTarget {
        self.registry.target(policy).await
    }

    /// The Step Functions target of a Step Functions policy (tests and the benchmark).
    pub async fn stepfunctions(&self, policy: &Policy) -> Arc<StepFunctions> {
        match self.target(policy).await {
            AnyTarget::StepFunctions(t) => t,
            AnyTarget::CodePipeline(_) | AnyTarget::FlowService(_) => {
                panic!("policy {} is not a stepFunctions policy", policy.id)
            }
        }
    }

    /// One poll of `policy` with its target: [`poll_on_service_clock`] on whichever service it
    /// names (`now` is the operator's clock).
    pub async fn poll(
        &self,
        policy: &Policy,
        state: &Mutex<PolicyState>,
        now: impl Fn() -> Timestamp,
    ) -> Result<PollReport, PollError> {
        let concurrency = self.settings.concurrency;
        match self.target(policy).await {
            AnyTarget::StepFunctions(t) => {
                poll_on_service_clock(t.as_ref(), policy, state, concurrency, now).await
            }
            AnyTarget::CodePipeline(t) => {
                let report =
                    poll_on_service_clock(t.as_ref(), policy, state, concurrency, now).await;
                if report.is_ok() {
                    self.prune_ledger(policy).await;
                }
                report
            }
            AnyTarget::FlowService(t) => {
                let report =
                    poll_on_service_clock(t.as_ref(), policy, state, concurrency, now).await;
                if report.is_ok() {
                    self.prune_ledger(policy).await;
                }
                report
            }
        }
    }
}

impl Context {
    /// [`decide_hinted`] on whichever service the policy names.
    pub async fn decide_hinted(
        &self,
        policy: &Policy,
        state: &Mutex<PolicyState>,
        hint: &Hint,
        now: impl Fn() -> Timestamp,
    ) -> Result<PollReport, PollError> {
        let concurrency = self.settings.concurrency;
        match self.target(policy).await {
            AnyTarget::StepFunctions(t) => {
                decide_hinted(t.as_ref(), policy, state, hint, concurrency, now).await
            }
            AnyTarget::CodePipeline(t) => {
                decide_hinted(t.as_ref(), policy, state, hint, concurrency, now).await
            }
            AnyTarget::FlowService(t) => {
                decide_hinted(t.as_ref(), policy, state, hint, concurrency, now).await
            }
        }
    }
}

fn registry_settings(
    settings: &PollSettings,
    ledger: Option<Arc<dyn Ledger>>,
    secrets: SecretStore,
    pacers: &crate::aws::paced::Pacers,
) -> RegistrySettings {
    RegistrySettings {
        aws: settings.aws.clone(),
        discovery_ttl: settings.discovery_ttl,
        holder: settings.holder.clone(),
        ledger,
        adobe: settings.adobe.clone(),
        secrets,
        pacers: pacers.clone(),
    }
}

pub use crate::targets::registry::external_id;

/// One redrive the operator performed or attempted.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// The run acted on.
    pub run: String,
    /// Attempts observed before this one (Step Functions: redriveCount).
    pub attempts: u32,
    pub client_token: String,
    pub at: Timestamp,
    pub result: Result<RedriveOutcome, TargetError>,
}

impl Action {
    /// `Redriven`, `AlreadyRedriven`, `NotRedrivable`, `NotFound`, or `Failed`.
    pub fn outcome_code(&self) -> &'static str {
        match &self.result {
            Ok(o) => o.code(),
            Err(_) => "Failed",
        }
    }
}

/// Per-policy memory across polls.
#[derive(Debug, Default)]
pub struct PolicyState {
    bucket: Option<RateBucket>,
    /// Details by (execution, redriveCount): a failure's error and cause never change, so each is
    /// described once. Pruned to the candidates of the last poll, so it stays bounded.
    details: HashMap<(String, u32), Details>,
    pub redriven_total: u64,
    pub recent: VecDeque<Action>,
    pub polls: u64,
    /// (execution, redriveCount) already reported as exhausted; pruned to the last poll's
    /// candidates, so it stays bounded.
    exhausted: std::collections::HashSet<(String, u32)>,
    /// The workflows the last full poll resolved: events are routed to the policy only for
    /// these, and a hinted decision counts the concurrency cap over all of them.
    pub workflows: Vec<String>,
    /// Decisions taken for event hints (outside full polls).
    pub hinted: u64,
}

impl PolicyState {
    fn rate_budget(&mut self, policy: &Policy, now: Timestamp) -> (Option<u32>, Option<Timestamp>) {
        match policy.redrives_per_minute {
            None => {
                self.bucket = None;
                (None, None)
            }
            Some(per_minute) => {
                let bucket = match &mut self.bucket {
                    Some(b) if b.per_minute() == per_minute => b,
                    slot => slot.insert(RateBucket::new(per_minute, now)),
                };
                (Some(bucket.available(now)), Some(bucket.next_token_at(now)))
            }
        }
    }
}

/// Everything one poll saw and did.
#[derive(Clone, Debug)]
pub struct PollReport {
    pub policy: PolicyId,
    pub target: crate::policy::TargetKind,
    pub started: Timestamp,
    pub finished: Timestamp,
    pub workflows: Vec<String>,
    pub issues: Vec<(String, WorkflowIssue)>,
    /// DescribeExecution failures (the candidates wait with DetailsUnavailable).
    pub describe_errors: Vec<(String, TargetError)>,
    /// Failure to count running redriven executions (the concurrency cap then waits).
    pub budget_error: Option<TargetError>,
    pub plan: Plan,
    pub actions: Vec<Action>,
    /// Executions that reached maxRedrives and were not reported so by an earlier poll.
    pub newly_exhausted: Vec<(String, u32)>,
    pub next_poll: Timestamp,
    /// The service's clock minus the operator's that this poll decided with (zero for
    /// [`poll`], or when the target has no estimate).
    pub clock_skew: SignedDuration,
    /// A decision for one event hint, not a full poll (no listing; its counts are not the
    /// policy's).
    pub hinted: bool,
}

impl PollReport {
    fn empty(policy: &Policy, now: Timestamp) -> Self {
        Self {
            policy: policy.id.clone(),
            target: policy.kind(),
            started: now,
            finished: now,
            workflows: Vec::new(),
            issues: Vec::new(),
            describe_errors: Vec::new(),
            budget_error: None,
            plan: Plan::default(),
            actions: Vec::new(),
            newly_exhausted: Vec::new(),
            next_poll: now + signed(policy.poll_interval),
            clock_skew: SignedDuration::ZERO,
            hinted: false,
        }
    }

    /// Actions by outcome code.
    pub fn action_counts(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut m = std::collections::BTreeMap::new();
        for a in &self.actions {
            *m.entry(a.outcome_code()).or_insert(0) += 1;
        }
        m
    }

    /// Whether the poll reached none of its workflows: every one it resolved failed (or its
    /// credentials did), so the policy did nothing. Not ready, and not a successful poll.
    pub fn reached_none(&self) -> bool {
        self.workflows.is_empty()
            && self
                .issues
                .iter()
                .any(|(_, i)| matches!(i, WorkflowIssue::Failed(_)))
    }

    /// What the metrics record of this poll.
    pub fn summary(&self) -> PollSummary {
        PollSummary {
            reached_none: self.reached_none(),
            policy: self.policy.clone(),
            finished: self.finished,
            outcomes: self.actions.iter().map(Action::outcome_code).collect(),
            decisions: self.plan.counts(),
            waiting: self
                .plan
                .entries
                .iter()
                .filter(|e| matches!(e.decision, engine::Decision::Wait { .. }))
                .count() as u64,
            newly_exhausted: self.newly_exhausted.len() as u64,
            error_categories: self.errors().iter().map(|e| e.category.as_str()).collect(),
        }
    }

    /// Every error of this poll, for conditions and events.
    pub fn errors(&self) -> Vec<&TargetError> {
        let mut out: Vec<&TargetError> = self
            .issues
            .iter()
            .filter_map(|(_, i)| match i {
                WorkflowIssue::Failed(e) => Some(e),
                WorkflowIssue::Skipped(_) => None,
            })
            .collect();
        out.extend(self.describe_errors.iter().map(|(_, e)| e));
        out.extend(self.budget_error.iter());
        out.extend(self.actions.iter().filter_map(|a| a.result.as_ref().err()));
        out
    }
}

/// Errors that stop a whole poll (the policy is reported Degraded and retried with backoff).
#[derive(Clone, Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Target(#[from] TargetError),
}

impl PollError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            PollError::Target(e) => e.category,
        }
    }
}

/// Run one poll of `policy` against `target`, deciding on `now` as given: the caller's clock is
/// taken to be the service's (tests drive it with the emulator's clock). The operator itself
/// polls with [`poll_on_service_clock`].
pub async fn poll<T: Target>(
    target: &T,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    concurrency: usize,
    now: impl Fn() -> Timestamp,
) -> Result<PollReport, PollError> {
    poll_inner(target, policy, state, concurrency, now, false, None).await
}

/// Run one poll of `policy` against `target`. `now` is the operator's clock; the rules measured
/// against the service's timestamps are decided on `now + target.clock_skew()`, read once per
/// poll after discovery (so even a client's first poll uses its listing's `Date` headers).
/// Waits in the report are converted back to the operator's clock.
pub async fn poll_on_service_clock<T: Target>(
    target: &T,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    concurrency: usize,
    now: impl Fn() -> Timestamp,
) -> Result<PollReport, PollError> {
    poll_inner(target, policy, state, concurrency, now, true, None).await
}

/// Decide for the one run an event hint names, exactly as a poll would (same engine, budgets,
/// tokens and claims), from one read of that run instead of a listing. The caller routed the
/// hint to this policy because its last poll covered the hint's workflow.
pub async fn decide_hinted<T: Target>(
    target: &T,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    hint: &Hint,
    concurrency: usize,
    now: impl Fn() -> Timestamp,
) -> Result<PollReport, PollError> {
    poll_inner(target, policy, state, concurrency, now, true, Some(hint)).await
}

/// Candidates per wave of a pipelined poll, per concurrency slot: large enough to keep the
/// readers busy, small enough that the first redrive follows the first reads.
const WAVE_PER_SLOT: usize = 2;

async fn poll_inner<T: Target>(
    target: &T,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    concurrency: usize,
    now: impl Fn() -> Timestamp,
    service_clock: bool,
    hint: Option<&Hint>,
) -> Result<PollReport, PollError> {
    let started = now();
    let mut report = PollReport::empty(policy, started);
    report.hinted = hint.is_some();
    if policy.suspend {
        // Suspended: no AWS call at all.
        return Ok(report);
    }
    let limits = target.limits();
    let discovery = match hint {
        None => target.discover(policy, started).await?,
        Some(h) => {
            let workflows = state.lock().expect("policy state lock").workflows.clone();
            let candidates = target.candidate_for(policy, h, started).await?;
            crate::targets::Discovery {
                workflows,
                candidates: candidates.into_iter().collect(),
                issues: Vec::new(),
            }
        }
    };
    let skew = if service_clock {
        target.clock_skew()
    } else {
        SignedDuration::ZERO
    };
    report.clock_skew = skew;
    // The service's now: what its stop dates, and the candidates' holds, are compared with.
    let decide_at = shift(started, skew);
    report.workflows = discovery.workflows;
    report.issues = discovery.issues;
    let mut candidates: Vec<Candidate> = discovery.candidates;

    // Details: from the cache, else one read (DescribeExecution, …) for those the engine needs.
    {
        let st = state.lock().expect("policy state lock");
        for c in &mut candidates {
            if let Some(d) = st.details.get(&(c.id.clone(), c.attempts)) {
                c.details = Some(d.clone());
            }
        }
    }

    let mut budget = {
        let running = match policy.max_running_redriven {
            Some(_) => match target.running_redriven(&report.workflows).await {
                Ok(n) => Some(n),
                Err(e) => {
                    report.budget_error = Some(e);
                    // Unknown: act as if the cap were reached rather than risk exceeding it.
                    policy.max_running_redriven
                }
            },
            None => None,
        };
        let mut st = state.lock().expect("policy state lock");
        // The bucket runs on the operator's clock; the engine compares its next token with
        // the service's now.
        let (rate_available, rate_next_at) = st.rate_budget(policy, started);
        BudgetState {
            rate_available,
            rate_next_at: rate_next_at.map(|t| shift(t, skew)),
            running_redriven: running,
        }
    };

    // Pipelined: candidates in the engine's priority order, cut into waves; a wave is read,
    // decided and handed to the redrivers while the next wave is read, so the first redrive
    // does not wait for every read. The budget carries from wave to wave, so rate and
    // concurrency caps stay exact.
    let candidates = engine::priority_order(candidates, policy.order);
    let wave = concurrency.max(1) * WAVE_PER_SLOT;
    let (to_redrive_tx, to_redrive_rx) = futures::channel::mpsc::unbounded::<(Candidate, String)>();
    let mut plan = engine::Plan::default();
    let mut describe_errors = Vec::new();
    let mut redrives_planned = 0u32;
    let decide = async {
        let mut candidates = candidates;
        let mut start = 0;
        while start < candidates.len() {
            let end = (start + wave).min(candidates.len());
            let to_describe: Vec<usize> = (start..end)
                .filter(|i| engine::needs_details(&candidates[*i], policy, decide_at, &limits))
                .collect();
            let described: Vec<(usize, Result<Details, TargetError>)> = stream::iter(to_describe)
                .map(|i| {
                    let c = &candidates[i];
                    async move { (i, target.describe(c).await) }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            for (i, result) in described {
                match result {
                    Ok(d) => candidates[i].details = Some(d),
                    Err(e) => describe_errors.push((candidates[i].id.clone(), e)),
                }
            }
            let mut part =
                engine::plan(&candidates[start..end], policy, decide_at, &limits, &budget);
            // Waits are reported (status, `plan`) and scheduled on the operator's clock.
            if !skew.is_zero() {
                for e in &mut part.entries {
                    if let engine::Decision::Wait { until, .. } = &mut e.decision {
                        *until = shift(*until, -skew);
                    }
                }
            }
            let n = u32::try_from(part.redrives().count()).unwrap_or(u32::MAX);
            budget.spend(n, policy.max_running_redriven.is_some());
            redrives_planned = redrives_planned.saturating_add(n);
            for e in part.redrives() {
                // The receiver lives until the redrivers are done.
                let _ = to_redrive_tx.unbounded_send((e.candidate.clone(), e.client_token.clone()));
            }
            plan.entries.extend(part.entries);
            start = end;
        }
        drop(to_redrive_tx);
        candidates
    };
    let act = to_redrive_rx
        .map(|(c, token)| {
            let now = &now;
            async move {
                let result = target.redrive(policy, &c, &token).await;
                let action = Action {
                    run: c.id.clone(),
                    attempts: c.attempts,
                    client_token: token,
                    at: now(),
                    result,
                };
                log_action(&policy.id, &action);
                action
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<Action>>();
    let (candidates, actions) = futures::join!(decide, act);
    // Redrives first, in priority order, then everything else (as one plan() orders them).
    plan.entries.sort_by_key(|e| !e.decision.is_redrive());
    report.describe_errors = describe_errors;
    if let Some(bucket) = state.lock().expect("policy state lock").bucket.as_mut() {
        bucket.take(started, redrives_planned);
    }

    {
        let mut st = state.lock().expect("policy state lock");
        let fresh = candidates
            .iter()
            .filter_map(|c| c.details.clone().map(|d| ((c.id.clone(), c.attempts), d)));
        if report.hinted {
            // One run: merge, never replace what the last full poll learnt.
            st.hinted += 1;
            st.details.extend(fresh);
        } else {
            st.polls += 1;
            st.details = fresh.collect();
            st.workflows = report.workflows.clone();
        }
        for a in &actions {
            if matches!(a.result, Ok(RedriveOutcome::Redriven { .. })) {
                st.redriven_total += 1;
            }
            st.recent.push_front(a.clone());
        }
        st.recent.truncate(RECENT_LIMIT);
        let exhausted: std::collections::HashSet<(String, u32)> = plan
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.decision,
                    engine::Decision::Skip {
                        reason: engine::Reason::MaxRedrivesReached
                    }
                )
            })
            .map(|e| (e.candidate.id.clone(), e.candidate.attempts))
            .collect();
        let mut newly: Vec<(String, u32)> = exhausted.difference(&st.exhausted).cloned().collect();
        newly.sort();
        report.newly_exhausted = newly;
        if report.hinted {
            st.exhausted.extend(exhausted);
        } else {
            st.exhausted = exhausted;
        }
    }

    report.plan = plan;
    report.actions = actions;
    report.finished = now();
    report.next_poll = report.finished + signed(policy.poll_interval);
    Ok(report)
}

/// One structured line per redrive attempt. Never logs execution input or credentials.
fn log_action(policy: &PolicyId, a: &Action) {
    match &a.result {
        Ok(outcome) => info!(
            policy = %policy,
            run = %a.run,
            attempt = a.attempts + 1,
            token = %a.client_token,
            outcome = outcome.code(),
            "redrive"
        ),
        Err(e) => warn!(
            policy = %policy,
            run = %a.run,
            attempt = a.attempts + 1,
            token = %a.client_token,
            outcome = "Failed",
            category = e.category.as_str(),
            error = %e,
            "redrive failed"
        ),
    }
}
