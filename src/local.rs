//! Local mode: the poll loop on policies read from files (`run -f`, `plan -f`, `demo`).
//!
//! Each policy runs in its own task on its own pollInterval, so a slow, failing or invalid
//! policy never holds up the others.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::watch;
use tracing::warn;

use crate::events::consumer::{self, ConsumerStats, Handled, QueueSettings};
use crate::events::message::Hint;
use crate::events::router::{BACKLOG, Delivery, Route, Router};
use crate::policy::Policy;
use crate::reconcile::{Context, PolicyState, PollError, PollReport};

/// Polls in flight at once, all policies together (the controller's counterpart is
/// `--reconcile-concurrency`). Without a bound, a thousand policies polling together open a
/// thousand-odd connections and memory grows with them.
pub const MAX_CONCURRENT_POLLS: usize = 32;

/// Something that wants to see every poll (the CLI printer, the demo, tests).
pub trait PollObserver: Send + Sync + 'static {
    fn observe(&self, policy: &Policy, result: &Result<PollReport, PollError>, state: &PolicyState);
}

/// Totals of a local run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunTotals {
    pub polls: u64,
    pub failed_polls: u64,
    pub redriven: u64,
    /// Errors seen in otherwise successful polls (per state machine, per call).
    pub errors: u64,
}

impl std::ops::AddAssign for RunTotals {
    fn add_assign(&mut self, o: Self) {
        self.polls += o.polls;
        self.failed_polls += o.failed_polls;
        self.redriven += o.redriven;
        self.errors += o.errors;
    }
}

/// Decide one hint for one policy; a wait it ends in is re-decided when due.
async fn decide_hint(
    ctx: &Context,
    policy: &Policy,
    state: &Mutex<PolicyState>,
    hint: &Hint,
    observer: &Arc<dyn PollObserver>,
    totals: &mut RunTotals,
    pending: &mut Vec<(Instant, Hint)>,
) -> Handled {
    let result = ctx.decide_hinted(policy, state, hint, Timestamp::now).await;
    let handled = match &result {
        Ok(report) => {
            totals.redriven += report.action_counts().get("Redriven").copied().unwrap_or(0);
            totals.errors += report.errors().len() as u64;
            // A backoff or minAge not yet due: decide again exactly then, not at the sweep.
            if let Some(until) = report.plan.entries.iter().find_map(|e| match e.decision {
                crate::engine::Decision::Wait { until, .. } => Some(until),
                _ => None,
            }) && pending.len() < MAX_PENDING
            {
                let wait = until.duration_since(Timestamp::now()).unsigned_abs();
                pending.push((Instant::now() + wait, hint.clone()));
            }
            Handled::Done
        }
        Err(e) if e.category().is_retryable() => Handled::Retry,
        Err(_) => Handled::Done,
    };
    if let Err(e) = &result {
        warn!(policy = %policy.id, category = e.category().as_str(), error = %e, "deciding an event hint failed");
    }
    observer.observe(policy, &result, &state.lock().expect("policy state lock"));
    handled
}

/// Delay before retrying a policy whose poll failed: 5 s doubling, capped at the larger of its
/// pollInterval and 5 minutes.
pub fn error_backoff(policy: &Policy, consecutive_failures: u32) -> Duration {
    let cap = policy.poll_interval.max(Duration::from_secs(300));
    let exp = consecutive_failures.saturating_sub(1).min(16);
    Duration::from_secs(5).saturating_mul(1 << exp).min(cap)
}

/// Event hints for local mode: where they come from and how often the sweep (the full poll)
/// still runs.
pub struct LocalEvents {
    pub client: aws_sdk_sqs::Client,
    pub queues: Vec<QueueSettings>,
    /// With events on, a policy's full poll runs every max(pollInterval, sweepInterval).
    pub sweep_interval: Duration,
    pub consumer_stats: Arc<ConsumerStats>,
}

/// Hint re-decisions waiting for a backoff or minAge per policy, at most.
const MAX_PENDING: usize = 1000;

/// Poll every policy until `stop` turns true (or once each with `once`).
pub async fn run(
    ctx: Arc<Context>,
    policies: Vec<Policy>,
    once: bool,
    force_dry_run: bool,
    observer: Arc<dyn PollObserver>,
    stop: watch::Receiver<bool>,
) -> RunTotals {
    run_with_events(ctx, policies, once, force_dry_run, observer, stop, None).await
}

/// [`run`], with event hints from SQS queues when `events` is set: a hint is decided by the
/// covering policy's task between its polls (one read of the run, the usual engine), a wait it
/// ends in (backoff, minAge) is re-decided precisely then, and the full poll becomes the sweep.
pub async fn run_with_events(
    ctx: Arc<Context>,
    policies: Vec<Policy>,
    once: bool,
    force_dry_run: bool,
    observer: Arc<dyn PollObserver>,
    mut stop: watch::Receiver<bool>,
    events: Option<LocalEvents>,
) -> RunTotals {
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_POLLS));
    let sweep = events.as_ref().map(|e| e.sweep_interval);
    let mut routes = Vec::new();
    for mut policy in policies {
        if force_dry_run {
            policy.dry_run = true;
        }
        let ctx = ctx.clone();
        let observer = observer.clone();
        let mut stop = stop.clone();
        let slots = slots.clone();
        let (tx, mut hints) = tokio::sync::mpsc::channel::<Delivery>(BACKLOG);
        let workflows: Arc<RwLock<Vec<String>>> = Arc::default();
        routes.push(Route {
            policy: policy.id.clone(),
            kind: policy.kind(),
            workflows: workflows.clone(),
            tx,
        });
        tasks.spawn(async move {
            let state = Mutex::new(PolicyState::default());
            let mut totals = RunTotals::default();
            let mut failures = 0u32;
            let mut pending: Vec<(Instant, Hint)> = Vec::new();
            loop {
                let started = std::time::Instant::now();
                let slot = slots.acquire().await.expect("poll slots are never closed");
                let result = ctx.poll(&policy, &state, Timestamp::now).await;
                drop(slot);
                totals.polls += 1;
                let wait = match &result {
                    Ok(report) => {
                        failures = 0;
                        totals.redriven += report.action_counts().get("Redriven").copied().unwrap_or(0);
                        totals.errors += report.errors().len() as u64;
                        *workflows.write().expect("workflows lock") = report.workflows.clone();
                        let next = report.next_poll.duration_since(Timestamp::now()).unsigned_abs();
                        match sweep {
                            Some(s) => next.max(s),
                            None => next,
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        totals.failed_polls += 1;
                        warn!(policy = %policy.id, category = e.category().as_str(), error = %e, "poll failed");
                        error_backoff(&policy, failures)
                    }
                };
                ctx.observe_poll(&policy, &result, started.elapsed(), wait);
                observer.observe(&policy, &result, &state.lock().expect("policy state lock"));
                if once {
                    break;
                }
                // Until the next poll: decide hints as they come and waits as they end.
                let next_poll = tokio::time::Instant::now() + wait;
                enum Wake {
                    Poll,
                    Stop,
                    Hint(Delivery),
                    Due,
                }
                let stopped = loop {
                    let due = pending.iter().map(|(t, _)| *t).min();
                    // Select first, act after: no borrow of `stop` lives across the decision.
                    let wake = tokio::select! {
                        _ = tokio::time::sleep_until(next_poll) => Wake::Poll,
                        _ = stop.wait_for(|s| *s) => Wake::Stop,
                        Some(d) = hints.recv() => Wake::Hint(d),
                        _ = tokio::time::sleep_until(due.map(tokio::time::Instant::from_std).unwrap_or(next_poll)), if due.is_some() => Wake::Due,
                    };
                    match wake {
                        Wake::Poll => break false,
                        Wake::Stop => break true,
                        Wake::Hint(d) => {
                            let handled = decide_hint(&ctx, &policy, &state, &d.hint, &observer, &mut totals, &mut pending).await;
                            let _ = d.done.send(handled);
                        }
                        Wake::Due => {
                            let now = Instant::now();
                            let (ready, later): (Vec<_>, Vec<_>) =
                                pending.drain(..).partition(|(t, _)| *t <= now);
                            pending = later;
                            for (_, hint) in ready {
                                decide_hint(&ctx, &policy, &state, &hint, &observer, &mut totals, &mut pending).await;
                            }
                        }
                    }
                };
                if stopped {
                    break;
                }
            }
            totals
        });
    }
    if let Some(ev) = events {
        let router = Arc::new(Router::new(
            routes,
            ev.queues
                .iter()
                .map(|q| q.visibility_timeout / 2)
                .min()
                .unwrap_or(Duration::from_secs(30)),
        ));
        for q in ev.queues {
            tasks.spawn({
                let client = ev.client.clone();
                let handler = router.handler();
                let stats = ev.consumer_stats.clone();
                let stop = stop.clone();
                async move {
                    consumer::run(client, q, handler, stats, stop).await;
                    RunTotals::default()
                }
            });
        }
    }
    let mut totals = RunTotals::default();
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(t)) => totals += t,
                Some(Err(e)) => {
                    warn!(error = %e, "policy task ended abnormally");
                    totals.failed_polls += 1;
                }
                None => break,
            },
            _ = stop.wait_for(|s| *s), if !once => {
                // Let in-flight polls finish: each task sees `stop` at its next wait.
                while let Some(joined) = tasks.join_next().await {
                    if let Ok(t) = joined {
                        totals += t;
                    }
                }
                break;
            }
        }
    }
    totals
}
