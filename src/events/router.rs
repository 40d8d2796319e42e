//! From a parsed message to the policies it concerns: cheap drops first (not a failure,
//! duplicate, no policy covers the workflow), then one delivery per covering policy, whose task
//! decides and answers. The message is deleted only when every delivery was decided.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::consumer::{Handled, Handler};
use super::message::{Hint, Received};
use super::route::{Seen, covers};
use crate::metrics::Metrics;
use crate::policy::{PolicyId, TargetKind};

/// Deliveries buffered per policy; beyond it hints are dropped (counted) and the sweep catches
/// those runs.
pub const BACKLOG: usize = 256;

/// One hint for one policy; the task answers on `done`.
pub struct Delivery {
    pub hint: Hint,
    pub done: oneshot::Sender<Handled>,
}

/// A policy events can reach.
pub struct Route {
    pub policy: PolicyId,
    pub kind: TargetKind,
    /// The workflows its last full poll resolved (updated by its task).
    pub workflows: Arc<RwLock<Vec<String>>>,
    pub tx: mpsc::Sender<Delivery>,
}

/// Why a hint went nowhere, or where it went (metrics label).
pub const OUTCOMES: [&str; 6] = [
    "routed",
    "not_failure",
    "duplicate",
    "not_covered",
    "backlog_full",
    "retry",
];

/// Counts by outcome (also exported as metrics).
#[derive(Debug, Default)]
pub struct RouterStats {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Event time → decided, for hints with an event time (sum and count, seconds).
    lag: Mutex<(f64, u64)>,
    metrics: Arc<Metrics>,
}

impl RouterStats {
    fn add(&self, outcome: &'static str) {
        *self
            .counts
            .lock()
            .expect("stats lock")
            .entry(outcome)
            .or_insert(0) += 1;
        self.metrics.record_event(outcome);
    }

    fn lagged(&self, seconds: f64) {
        let mut l = self.lag.lock().expect("stats lock");
        l.0 += seconds;
        l.1 += 1;
        self.metrics.event_lag.observe(seconds);
    }

    pub fn count(&self, outcome: &str) -> u64 {
        self.counts
            .lock()
            .expect("stats lock")
            .get(outcome)
            .copied()
            .unwrap_or(0)
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().expect("stats lock").clone()
    }

    /// Mean lag (event time → decided) in seconds, and how many were measured.
    pub fn lag(&self) -> (f64, u64) {
        let (sum, n) = *self.lag.lock().expect("stats lock");
        (if n == 0 { 0.0 } else { sum / n as f64 }, n)
    }
}

/// The router of one operator. Routes come and go with the policies (cluster mode).
pub struct Router {
    routes: RwLock<HashMap<PolicyId, Route>>,
    seen: Mutex<Seen>,
    /// How long a handler waits for the policies' answers before leaving the message for a
    /// redelivery.
    answer_within: Duration,
    pub stats: Arc<RouterStats>,
}

impl Router {
    pub fn new(answer_within: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            routes: RwLock::default(),
            // Duplicates within 10 minutes are dropped; forgetting early costs only a read.
            seen: Mutex::new(Seen::new(Duration::from_secs(600), 100_000)),
            answer_within,
            stats: Arc::new(RouterStats {
                metrics,
                ..RouterStats::default()
            }),
        }
    }

    /// Route hints to a policy (replacing its earlier route: the old channel closes, so its
    /// worker ends).
    pub fn upsert(&self, route: Route) {
        self.routes
            .write()
            .expect("routes lock")
            .insert(route.policy.clone(), route);
    }

    /// Stop routing to a policy (deleted, suspended, invalid): its worker ends.
    pub fn remove(&self, policy: &PolicyId) {
        self.routes.write().expect("routes lock").remove(policy);
    }

    /// Whether hints reach `policy`.
    pub fn routes_to(&self, policy: &PolicyId) -> bool {
        self.routes
            .read()
            .expect("routes lock")
            .contains_key(policy)
    }

    /// Keep only the routes of `live` policies.
    pub fn retain(&self, live: &std::collections::HashSet<PolicyId>) {
        self.routes
            .write()
            .expect("routes lock")
            .retain(|id, _| live.contains(id));
    }

    /// The consumer's handler.
    pub fn handler(self: &Arc<Self>) -> Handler {
        let me = self.clone();
        Arc::new(move |r: Received| {
            let me = me.clone();
            async move { me.route(r).await }.boxed()
        })
    }

    async fn route(&self, r: Received) -> Handled {
        if !r.hint.is_failure() {
            self.stats.add("not_failure");
            return Handled::Done;
        }
        let key = format!("{}\n{}", r.hint.dedupe_key(), r.attempt_marker);
        if !self
            .seen
            .lock()
            .expect("seen lock")
            .first_time(&key, Instant::now())
        {
            self.stats.add("duplicate");
            return Handled::Done;
        }
        let mut answers = Vec::new();
        for route in self.routes.read().expect("routes lock").values() {
            let covered = covers(
                route.kind,
                &route.workflows.read().expect("workflows lock"),
                &r.hint,
            );
            if !covered {
                continue;
            }
            let (done, answer) = oneshot::channel();
            match route.tx.try_send(Delivery {
                hint: r.hint.clone(),
                done,
            }) {
                Ok(()) => answers.push(answer),
                Err(_) => {
                    self.stats.add("backlog_full");
                    tracing::debug!(policy = %route.policy, "hint backlog full; the sweep catches this run");
                }
            }
        }
        if answers.is_empty() {
            self.stats.add("not_covered");
            return Handled::Done;
        }
        self.stats.add("routed");
        let all = futures::future::join_all(answers);
        let handled = match tokio::time::timeout(self.answer_within, all).await {
            Ok(results) => {
                if results.iter().all(|a| matches!(a, Ok(Handled::Done))) {
                    Handled::Done
                } else {
                    Handled::Retry
                }
            }
            Err(_) => Handled::Retry,
        };
        if handled == Handled::Retry {
            // Let the redelivery through.
            self.seen.lock().expect("seen lock").forget(&key);
            self.stats.add("retry");
        } else if let Some(t) = r.time {
            let lag = jiff::Timestamp::now()
                .duration_since(t)
                .as_secs_f64()
                .max(0.0);
            self.stats.lagged(lag);
        }
        handled
    }
}
