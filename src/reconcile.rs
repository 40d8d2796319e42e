//! One poll of one policy: discover, describe where needed, plan, act.
//!
//! Shared by local mode (`run -f`) and the in-cluster controller, so both take exactly the same
//! decisions. Per-policy memory (rate bucket, details cache, totals) lives in [`PolicyState`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use crate::admin::Health;
use crate::aws::{AwsSettings, CallCounter, sdk_config, sfn_client};
use crate::engine::{self, BudgetState, Candidate, Details, Plan, RateBucket};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyId};
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
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            aws: AwsSettings::default(),
            concurrency: 16,
            discovery_ttl: Duration::from_secs(300),
        }
    }
}

/// (region, role ARN, namespace): what a set of credentials and an endpoint depend on.
type TargetKey = (String, Option<String>, String);

/// Shared, long-lived clients: one Step Functions target per (region, role, namespace), so SDK
/// rate limiting and selector caches span polls and policies.
pub struct Context {
    pub settings: PollSettings,
    pub calls: CallCounter,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    targets: tokio::sync::Mutex<HashMap<TargetKey, Arc<StepFunctions>>>,
}

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
        Self {
            settings,
            calls: CallCounter::with_metrics(metrics.clone()),
            metrics,
            health,
            targets: tokio::sync::Mutex::new(HashMap::new()),
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
                self.metrics.record_poll("stepfunctions", report, took);
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

    /// The Step Functions target for a policy: its region, assuming its role (ExternalId = the
    /// policy's namespace) when it names one.
    pub async fn stepfunctions(&self, policy: &Policy) -> Arc<StepFunctions> {
        let key = (
            policy.region.clone(),
            policy.role_arn.clone(),
            policy.id.namespace.clone(),
        );
        let mut targets = self.targets.lock().await;
        if let Some(t) = targets.get(&key) {
            return t.clone();
        }
        let base = sdk_config(&self.settings.aws, &policy.region).await;
        let config = match &policy.role_arn {
            None => base,
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                    .external_id(external_id(&policy.id))
                    .session_name("redrive-operator")
                    .configure(&base)
                    .build()
                    .await;
                base.into_builder()
                    .credentials_provider(
                        aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                    )
                    .build()
            }
        };
        // Per account and region (the scope of AWS's buckets): the role, or the default chain.
        let partition_key = format!(
            "redrive-sfn/{}/{}",
            policy.region,
            policy.role_arn.as_deref().unwrap_or("default-credentials")
        );
        let target = Arc::new(StepFunctions::new(
            sfn_client(&config, &self.calls),
            &partition_key,
            self.settings.discovery_ttl,
        ));
        targets.insert(key, target.clone());
        target
    }
}

/// The ExternalId used when assuming a policy's role: its namespace, so that a role's trust policy
/// decides which namespaces may use it. Local-mode policies have no namespace and use `local`.
pub fn external_id(id: &PolicyId) -> String {
    if id.namespace.is_empty() {
        "local".to_string()
    } else {
        id.namespace.clone()
    }
}

/// One redrive the operator performed or attempted.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub execution: String,
    /// redriveCount observed before the redrive.
    pub redrive_count: u32,
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
}

impl PollReport {
    fn empty(policy: &Policy, now: Timestamp) -> Self {
        Self {
            policy: policy.id.clone(),
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

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
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

/// Run one poll of `policy` against `target`. With `force_dry_run` no redrive is ever called
/// (the `plan` command).
pub async fn poll<T: Target>(
    target: &T,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    concurrency: usize,
    now: impl Fn() -> Timestamp,
) -> Result<PollReport, PollError> {
    let started = now();
    let mut report = PollReport::empty(policy, started);
    if policy.suspend {
        // Suspended: no AWS call at all.
        return Ok(report);
    }
    let limits = target.limits();
    let discovery = target.discover(policy, started).await?;
    report.workflows = discovery.workflows;
    report.issues = discovery.issues;
    let mut candidates: Vec<Candidate> = discovery.candidates;

    // Details: from the cache, else one DescribeExecution for those the engine needs.
    {
        let st = state.lock().expect("policy state lock");
        for c in &mut candidates {
            if let Some(d) = st.details.get(&(c.id.clone(), c.redrive_count)) {
                c.details = Some(d.clone());
            }
        }
    }
    let to_describe: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| engine::needs_details(c, policy, started, &limits))
        .map(|(i, _)| i)
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
            Err(e) => report.describe_errors.push((candidates[i].id.clone(), e)),
        }
    }

    let budget = {
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
        let (rate_available, rate_next_at) = st.rate_budget(policy, started);
        BudgetState {
            rate_available,
            rate_next_at,
            running_redriven: running,
        }
    };

    let plan = engine::plan(&candidates, policy, started, &limits, &budget);

    let to_redrive: Vec<(Candidate, String)> = plan
        .redrives()
        .map(|e| (e.candidate.clone(), e.client_token.clone()))
        .collect();
    if let Some(bucket) = state.lock().expect("policy state lock").bucket.as_mut() {
        bucket.take(started, u32::try_from(to_redrive.len()).unwrap_or(u32::MAX));
    }
    let actions: Vec<Action> = stream::iter(to_redrive)
        .map(|(c, token)| {
            let now = &now;
            async move {
                let result = target.redrive(&c, &token).await;
                let action = Action {
                    execution: c.id.clone(),
                    redrive_count: c.redrive_count,
                    client_token: token,
                    at: now(),
                    result,
                };
                log_action(&policy.id, &action);
                action
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    {
        let mut st = state.lock().expect("policy state lock");
        st.polls += 1;
        st.details = candidates
            .iter()
            .filter_map(|c| {
                c.details
                    .clone()
                    .map(|d| ((c.id.clone(), c.redrive_count), d))
            })
            .collect();
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
            .map(|e| (e.candidate.id.clone(), e.candidate.redrive_count))
            .collect();
        let mut newly: Vec<(String, u32)> = exhausted.difference(&st.exhausted).cloned().collect();
        newly.sort();
        report.newly_exhausted = newly;
        st.exhausted = exhausted;
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
            execution = %a.execution,
            attempt = a.redrive_count + 1,
            token = %a.client_token,
            outcome = outcome.code(),
            "redrive"
        ),
        Err(e) => warn!(
            policy = %policy,
            execution = %a.execution,
            attempt = a.redrive_count + 1,
            token = %a.client_token,
            outcome = "Failed",
            category = e.category.as_str(),
            error = %e,
            "redrive failed"
        ),
    }
}
