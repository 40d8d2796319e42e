//! Local mode: the poll loop on policies read from files (`run -f`, `plan -f`, `demo`).
//!
//! Each policy runs in its own task on its own pollInterval, so a slow, failing or invalid
//! policy never holds up the others.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tracing::warn;

use crate::events::EventSource;
use crate::events::router::{BACKLOG, Delivery, Route};
use crate::events::worker::{self, Decided};
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

impl RunTotals {
    fn add_report(&mut self, report: &PollReport) {
        self.redriven += report.action_counts().get("Redriven").copied().unwrap_or(0);
        self.errors += report.errors().len() as u64;
    }
}

impl std::ops::AddAssign for RunTotals {
    fn add_assign(&mut self, o: Self) {
        self.polls += o.polls;
        self.failed_polls += o.failed_polls;
        self.redriven += o.redriven;
        self.errors += o.errors;
    }
}

/// Delay before retrying a policy whose poll failed: 5 s doubling, capped at the larger of its
/// pollInterval and 5 minutes.
pub fn error_backoff(policy: &Policy, consecutive_failures: u32) -> Duration {
    let cap = policy.poll_interval.max(Duration::from_secs(300));
    let exp = consecutive_failures.saturating_sub(1).min(16);
    Duration::from_secs(5).saturating_mul(1 << exp).min(cap)
}

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
/// covering policy's hint worker between its polls (one read of the run, the usual engine;
/// never during a poll of the same policy), a wait it ends in (backoff, minAge) is re-decided
/// precisely then, and the full poll becomes the sweep.
pub async fn run_with_events(
    ctx: Arc<Context>,
    policies: Vec<Policy>,
    once: bool,
    force_dry_run: bool,
    observer: Arc<dyn PollObserver>,
    mut stop: watch::Receiver<bool>,
    events: Option<EventSource>,
) -> RunTotals {
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_POLLS));
    // A single pass has no time for hints.
    let events = if once { None } else { events };
    let router = events
        .as_ref()
        .map(|ev| ev.start(ctx.metrics.clone(), &ctx.health, stop.clone()).0);
    let events = events.map(Arc::new);
    for mut policy in policies {
        if force_dry_run {
            policy.dry_run = true;
        }
        let policy = Arc::new(policy);
        let state = Arc::new(Mutex::new(PolicyState::default()));
        // Polls and hint decisions of one policy take turns: budgets and caps stay exact.
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let workflows: Arc<RwLock<Vec<String>>> = Arc::default();
        let totals = Arc::new(Mutex::new(RunTotals::default()));
        if let Some(router) = &router {
            let (tx, hints) = tokio::sync::mpsc::channel::<Delivery>(BACKLOG);
            router.upsert(Route {
                policy: policy.id.clone(),
                kind: policy.kind(),
                workflows: workflows.clone(),
                tx,
            });
            let (ctx, policy, state, turn, observer, totals, stop) = (
                ctx.clone(),
                policy.clone(),
                state.clone(),
                turn.clone(),
                observer.clone(),
                totals.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                worker::run(hints, stop, move |hint| {
                    let (ctx, policy, state, turn, observer, totals) = (
                        ctx.clone(),
                        policy.clone(),
                        state.clone(),
                        turn.clone(),
                        observer.clone(),
                        totals.clone(),
                    );
                    async move {
                        let _turn = turn.lock().await;
                        let result = ctx
                            .decide_hinted(&policy, &state, &hint, Timestamp::now)
                            .await;
                        ctx.observe_hint(&policy, &result);
                        match &result {
                            Ok(report) => totals.lock().expect("totals lock").add_report(report),
                            Err(e) => {
                                warn!(policy = %policy.id, category = e.category().as_str(), error = %e, "deciding an event hint failed")
                            }
                        }
                        observer.observe(&policy, &result, &state.lock().expect("policy state lock"));
                        Decided::of(&result)
                    }
                })
                .await;
                RunTotals::default()
            });
        }
        let ctx = ctx.clone();
        let observer = observer.clone();
        let mut stop = stop.clone();
        let slots = slots.clone();
        let events = events.clone();
        tasks.spawn(async move {
            let mut failures = 0u32;
            loop {
                let started = std::time::Instant::now();
                let result = {
                    let _slot = slots.acquire().await.expect("poll slots are never closed");
                    let _turn = turn.lock().await;
                    ctx.poll(&policy, &state, Timestamp::now).await
                };
                totals.lock().expect("totals lock").polls += 1;
                // `next`: when the policy's rules ask for the next poll; `swept`: whether
                // events may stretch that to the sweep.
                let (next, swept) = match &result {
                    Ok(report) => {
                        failures = 0;
                        totals.lock().expect("totals lock").add_report(report);
                        *workflows.write().expect("workflows lock") = report.workflows.clone();
                        (report.next_poll.duration_since(Timestamp::now()).unsigned_abs(), true)
                    }
                    Err(e) => {
                        failures += 1;
                        totals.lock().expect("totals lock").failed_polls += 1;
                        warn!(policy = %policy.id, category = e.category().as_str(), error = %e, "poll failed");
                        (error_backoff(&policy, failures), false)
                    }
                };
                let expected = match &events {
                    Some(ev) if swept => ev.sweep_after(next),
                    _ => next,
                };
                ctx.observe_poll(&policy, &result, started.elapsed(), expected);
                observer.observe(&policy, &result, &state.lock().expect("policy state lock"));
                if once {
                    break;
                }
                // Wake when the rules ask; with events, poll then only if the sweep is due or
                // hints may be lost (a queue that cannot be read), else wait on.
                let polled = std::time::Instant::now();
                let mut wait = next;
                let stopped = loop {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => break true,
                    }
                    match &events {
                        Some(ev) if swept && !ev.poll_due(polled.elapsed()) => {
                            let left = ev.sweep_interval.saturating_sub(polled.elapsed());
                            wait = policy.poll_interval.min(left).max(Duration::from_secs(1));
                        }
                        _ => break false,
                    }
                };
                if stopped {
                    break;
                }
            }
            // A hint decision in flight finishes first: its redrives count.
            let _turn = turn.lock().await;
            totals.lock().expect("totals lock").clone()
        });
    }
    // Without events the route table is empty; the workers end with `stop`.
    drop(router);
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
