//! Admin HTTP server: `/metrics` (OpenMetrics), `/livez`, `/readyz`.
//!
//! `/livez` fails when the operator is wedged: the Kubernetes API has not answered the
//! heartbeat for `stale_factor` heartbeat intervals (the watch is cut), or a policy's poll is
//! overdue by more than `stale_factor` poll intervals, or an event queue consumer stopped
//! turning for `stale_factor` of its longest turn. `/readyz` is true once the initial list is
//! done (local mode: once the policy files are loaded); standby replicas are ready too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tracing::info;

use crate::events::consumer::ConsumerStats;
use crate::metrics::Metrics;
use crate::policy::PolicyId;

/// What liveness and readiness are computed from.
#[derive(Debug)]
pub struct Health {
    ready: AtomicBool,
    stale_factor: u32,
    /// Last successful Kubernetes API heartbeat and the heartbeat interval (cluster mode only).
    kube: Mutex<Option<(Instant, Duration)>>,
    /// Per policy: when its next poll is due and its interval.
    polls: Mutex<HashMap<PolicyId, (Instant, Duration)>>,
    /// Event queue consumers: queue URL, their counters, the longest turn of their loop.
    consumers: Mutex<Vec<(String, Arc<ConsumerStats>, Duration)>>,
}

impl Health {
    pub fn new(stale_factor: u32) -> Self {
        Self {
            ready: AtomicBool::new(false),
            stale_factor: stale_factor.max(1),
            kube: Mutex::new(None),
            polls: Mutex::new(HashMap::new()),
            consumers: Mutex::new(Vec::new()),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The Kubernetes API answered (heartbeat every `interval`).
    pub fn kube_ok(&self, interval: Duration) {
        *self.kube.lock().expect("health lock") = Some((Instant::now(), interval));
    }

    /// A policy's next poll is due in `due_in`; it polls every `interval`.
    pub fn poll_scheduled(&self, policy: &PolicyId, due_in: Duration, interval: Duration) {
        self.polls
            .lock()
            .expect("health lock")
            .insert(policy.clone(), (Instant::now() + due_in, interval));
    }

    /// A policy that no longer polls (deleted, suspended, invalid).
    pub fn forget(&self, policy: &PolicyId) {
        self.polls.lock().expect("health lock").remove(policy);
    }

    /// An event queue consumer whose loop turns at least every `turn_bound` while it works.
    pub fn watch_consumer(&self, queue: &str, stats: Arc<ConsumerStats>, turn_bound: Duration) {
        self.consumers
            .lock()
            .expect("health lock")
            .push((queue.to_string(), stats, turn_bound));
    }

    /// `Err(reason)` when the operator looks wedged.
    pub fn liveness(&self) -> Result<(), String> {
        let now = Instant::now();
        let factor = self.stale_factor;
        if let Some((at, interval)) = *self.kube.lock().expect("health lock") {
            let limit = interval * factor;
            if now.duration_since(at) > limit {
                return Err(format!(
                    "no answer from the Kubernetes API for {}s (limit {}s)",
                    now.duration_since(at).as_secs(),
                    limit.as_secs()
                ));
            }
        }
        for (queue, stats, bound) in self.consumers.lock().expect("health lock").iter() {
            let limit = *bound * factor;
            // A queue that cannot be read is not a wedge (the loop keeps turning and the sweep
            // covers); a loop that stopped turning is.
            if let Some(since) = stats.since_last_turn()
                && since > limit
            {
                return Err(format!(
                    "event consumer of {queue} stuck for {}s (limit {}s)",
                    since.as_secs(),
                    limit.as_secs()
                ));
            }
        }
        for (policy, (due, interval)) in self.polls.lock().expect("health lock").iter() {
            let limit = *interval * factor;
            if now > *due + limit {
                return Err(format!(
                    "poll of {policy} overdue by {}s (limit {}s)",
                    now.duration_since(*due).as_secs(),
                    limit.as_secs()
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn livez(State(s): State<AdminState>) -> impl IntoResponse {
    match s.health.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "initial list not done\n")
    }
}

/// The admin routes.
pub fn router(metrics_: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(AdminState {
            metrics: metrics_,
            health,
        })
}

/// Bind `addr` and serve in the background; returns the bound address.
pub async fn spawn(
    addr: SocketAddr,
    metrics_: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(admin_addr = %bound, "admin server listening (/metrics, /livez, /readyz)");
    let app = router(metrics_, health);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_fails_on_stale_kube_and_overdue_polls() {
        let h = Health::new(2);
        assert!(h.liveness().is_ok());
        *h.kube.lock().unwrap() = Some((
            Instant::now() - Duration::from_secs(30),
            Duration::from_secs(10),
        ));
        assert!(h.liveness().unwrap_err().contains("Kubernetes API"));
        h.kube_ok(Duration::from_secs(10));
        assert!(h.liveness().is_ok());
        let id = PolicyId {
            namespace: "ns".into(),
            name: "p".into(),
        };
        h.polls.lock().unwrap().insert(
            id.clone(),
            (
                Instant::now() - Duration::from_secs(25),
                Duration::from_secs(10),
            ),
        );
        assert!(h.liveness().unwrap_err().contains("ns/p overdue"));
        h.forget(&id);
        assert!(h.liveness().is_ok());
    }

    #[test]
    fn liveness_fails_on_a_consumer_that_stopped_turning_not_on_one_that_fails() {
        use std::sync::atomic::Ordering;
        let h = Health::new(2);
        let stats = Arc::new(ConsumerStats::default());
        h.watch_consumer("https://sqs/q", stats.clone(), Duration::from_secs(60));
        // Not started yet: not a wedge.
        assert!(h.liveness().is_ok());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Turning, while every receive fails: alive.
        stats.last_turn.store(now - 100, Ordering::Relaxed);
        stats.receive_errors.store(50, Ordering::Relaxed);
        assert!(h.liveness().is_ok());
        stats.last_turn.store(now - 121, Ordering::Relaxed);
        let err = h.liveness().unwrap_err();
        assert!(
            err.contains("event consumer of https://sqs/q stuck"),
            "{err}"
        );
    }
}
