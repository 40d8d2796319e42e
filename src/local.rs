//! Local mode: the poll loop on policies read from files (`run -f`, `plan -f`, `demo`).
//!
//! Each policy runs in its own task on its own pollInterval, so a slow, failing or invalid
//! policy never holds up the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tracing::warn;

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
    mut stop: watch::Receiver<bool>,
) -> RunTotals {
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_POLLS));
    for mut policy in policies {
        if force_dry_run {
            policy.dry_run = true;
        }
        let ctx = ctx.clone();
        let observer = observer.clone();
        let mut stop = stop.clone();
        let slots = slots.clone();
        tasks.spawn(async move {
            let state = Mutex::new(PolicyState::default());
            let mut totals = RunTotals::default();
            let mut failures = 0u32;
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
                        report.next_poll.duration_since(Timestamp::now()).unsigned_abs()
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
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            totals
        });
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
