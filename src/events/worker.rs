//! One policy's hint worker, the same in local and cluster mode: it decides the hints routed to
//! the policy one at a time, and re-decides a hint whose decision ended in a wait (backoff,
//! minAge) exactly when that wait ends, instead of at the next sweep.

use std::collections::HashMap;
use std::future::Future;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::consumer::Handled;
use super::message::Hint;
use super::router::Delivery;
use crate::engine::Decision;
use crate::reconcile::{PollError, PollReport};

/// Waits remembered per policy at most; beyond it the sweep catches those runs.
pub const MAX_PENDING: usize = 1000;

/// What one decision means for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decided {
    /// Whether the message may be deleted.
    pub handled: Handled,
    /// Decide the hint again then (the decision was a wait).
    pub again_at: Option<Timestamp>,
}

impl Decided {
    /// From a hinted decision's result: a retryable failure leaves the message for a
    /// redelivery; any other failure is final for this message (the sweep covers the run).
    pub fn of(result: &Result<PollReport, PollError>) -> Self {
        match result {
            Ok(report) => Self {
                handled: Handled::Done,
                again_at: report.plan.entries.iter().find_map(|e| match e.decision {
                    Decision::Wait { until, .. } => Some(until),
                    _ => None,
                }),
            },
            Err(e) => Self {
                handled: if e.category().is_retryable() {
                    Handled::Retry
                } else {
                    Handled::Done
                },
                again_at: None,
            },
        }
    }
}

/// Run until `hints` closes (the route was removed) or `stop` turns true.
pub async fn run<F, Fut>(
    mut hints: mpsc::Receiver<Delivery>,
    mut stop: watch::Receiver<bool>,
    mut decide: F,
) where
    F: FnMut(Hint) -> Fut,
    Fut: Future<Output = Decided>,
{
    // By dedupe key: a run hinted again while it waits keeps one wake-up.
    let mut pending: HashMap<String, (Instant, Hint)> = HashMap::new();
    enum Wake {
        Stop,
        Hint(Delivery),
        Due,
    }
    loop {
        let due = pending.values().map(|(t, _)| *t).min();
        // Select first, act after: no borrow of `stop` lives across a decision.
        let wake = tokio::select! {
            _ = stop.wait_for(|s| *s) => Wake::Stop,
            d = hints.recv() => match d {
                Some(d) => Wake::Hint(d),
                None => Wake::Stop,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Wake::Due,
        };
        match wake {
            Wake::Stop => return,
            Wake::Hint(d) => {
                let decided = decide(d.hint.clone()).await;
                remember(&mut pending, decided, d.hint);
                let _ = d.done.send(decided.handled);
            }
            Wake::Due => {
                let now = Instant::now();
                let ready: Vec<String> = pending
                    .iter()
                    .filter(|(_, (t, _))| *t <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in ready {
                    if let Some((_, hint)) = pending.remove(&key) {
                        let decided = decide(hint.clone()).await;
                        remember(&mut pending, decided, hint);
                    }
                }
            }
        }
    }
}

fn remember(pending: &mut HashMap<String, (Instant, Hint)>, decided: Decided, hint: Hint) {
    let key = hint.dedupe_key();
    match decided.again_at {
        Some(at) if pending.len() < MAX_PENDING || pending.contains_key(&key) => {
            let wait = at.duration_since(Timestamp::now()).unsigned_abs();
            pending.insert(key, (Instant::now() + wait, hint));
        }
        Some(_) => {
            tracing::debug!("too many hinted waits; the sweep decides this run");
        }
        None => {
            pending.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn hint(n: u32) -> Hint {
        Hint::StepFunctions {
            execution_arn: format!("arn:aws:states:us-east-1:123456789012:execution:m:{n}"),
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:m".into(),
            status: "FAILED".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_decided_again_when_due_and_a_stop_ends_the_worker() {
        let (tx, rx) = mpsc::channel(8);
        let (stop_tx, stop) = watch::channel(false);
        let seen: Arc<Mutex<Vec<(Hint, Instant)>>> = Arc::default();
        let log = seen.clone();
        let started = Instant::now();
        let worker = tokio::spawn(run(rx, stop, move |h: Hint| {
            let log = log.clone();
            async move {
                let mut l = log.lock().unwrap();
                l.push((h, Instant::now()));
                // The first decision waits 30 s; the second acts.
                let again_at = (l.len() == 1).then(|| Timestamp::now() + Duration::from_secs(30));
                Decided {
                    handled: Handled::Done,
                    again_at,
                }
            }
        }));
        let (done, answer) = oneshot::channel();
        tx.send(Delivery {
            hint: hint(1),
            done,
        })
        .await
        .unwrap();
        assert_eq!(answer.await.unwrap(), Handled::Done);
        tokio::time::sleep(Duration::from_secs(40)).await;
        {
            let l = seen.lock().unwrap();
            assert_eq!(l.len(), 2, "decided once, then again when the wait ended");
            assert_eq!(l[1].0, hint(1));
            let at = l[1].1.duration_since(started);
            assert!(
                at >= Duration::from_secs(29) && at <= Duration::from_secs(31),
                "{at:?}"
            );
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "no wait left: no more decisions"
        );
        stop_tx.send(true).unwrap();
        worker.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_hinted_again_while_waiting_keeps_one_wake_up_and_a_closed_route_ends_it() {
        let (tx, rx) = mpsc::channel(8);
        let (_stop_tx, stop) = watch::channel(false);
        let count = Arc::new(Mutex::new(0u32));
        let c = count.clone();
        let worker = tokio::spawn(run(rx, stop, move |_h: Hint| {
            let c = c.clone();
            async move {
                let mut n = c.lock().unwrap();
                *n += 1;
                Decided {
                    handled: Handled::Done,
                    // The first two decisions wait; the third acts.
                    again_at: (*n <= 2).then(|| Timestamp::now() + Duration::from_secs(10)),
                }
            }
        }));
        for _ in 0..2 {
            let (done, answer) = oneshot::channel();
            tx.send(Delivery {
                hint: hint(7),
                done,
            })
            .await
            .unwrap();
            answer.await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        // Two hints, one pending wake-up (not two), then done.
        assert_eq!(*count.lock().unwrap(), 3);
        drop(tx);
        worker.await.unwrap();
    }
}
