//! Event-driven hints (issue 15): EventBridge rules feed SQS queues with the services' status
//! change events; the operator reads them as hints that a run may need a decision now, while
//! the regular polls stay the safety net (events are best effort: lost, duplicated, reordered).

pub mod consumer;
pub mod message;
pub mod route;
pub mod router;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::Health;
use crate::metrics::Metrics;

/// Where hints come from and how often the sweep (the full poll) still runs. Operator-level
/// configuration only: a policy cannot choose a queue.
pub struct EventSource {
    pub client: aws_sdk_sqs::Client,
    pub queues: Vec<consumer::QueueSettings>,
    /// With events on, a policy's full poll runs every max(pollInterval, sweepInterval).
    pub sweep_interval: Duration,
    /// The consumers' counters, once started.
    pub consumers: std::sync::OnceLock<Vec<Arc<consumer::ConsumerStats>>>,
}

impl EventSource {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queues: Vec<consumer::QueueSettings>,
        sweep_interval: Duration,
    ) -> Self {
        Self {
            client,
            queues,
            sweep_interval,
            consumers: std::sync::OnceLock::new(),
        }
    }

    /// When a policy's next full poll is due while hints flow, `next` being what its rules
    /// alone ask for.
    pub fn sweep_after(&self, next: Duration) -> Duration {
        next.max(self.sweep_interval)
    }

    /// Whether every queue answered its last receive: while one does not, hints may be lost
    /// and policies poll on their own pollInterval (the latency they had without events).
    pub fn healthy(&self) -> bool {
        self.consumers.get().is_none_or(|c| {
            c.iter()
                .all(|s| !s.failing.load(std::sync::atomic::Ordering::Relaxed))
        })
    }

    /// Whether a policy whose rules ask for a poll now, and whose last full poll was
    /// `since_last` ago, polls: when the sweep is due, or when hints may be lost.
    pub fn poll_due(&self, since_last: Duration) -> bool {
        since_last >= self.sweep_interval || !self.healthy()
    }

    /// A router for hints, and one consumer task per queue feeding it until `stop` (each
    /// watched by /livez). Routes are added by the caller as policies are polled.
    pub fn start(
        &self,
        metrics: Arc<Metrics>,
        health: &Health,
        stop: watch::Receiver<bool>,
    ) -> (Arc<router::Router>, Vec<tokio::task::JoinHandle<()>>) {
        // A hint whose policies have not answered within half the visibility timeout is left
        // for a redelivery, before another consumer could see it.
        let answer_within = self
            .queues
            .iter()
            .map(|q| q.visibility_timeout / 2)
            .min()
            .unwrap_or(Duration::from_secs(30));
        let router = Arc::new(router::Router::new(answer_within, metrics.clone()));
        let mut all = Vec::new();
        let tasks = self
            .queues
            .iter()
            .map(|q| {
                let stats = Arc::new(consumer::ConsumerStats::with_metrics(metrics.clone()));
                health.watch_consumer(&q.url, stats.clone(), consumer::turn_bound(q));
                all.push(stats.clone());
                tokio::spawn(consumer::run(
                    self.client.clone(),
                    q.clone(),
                    router.handler(),
                    stats,
                    stop.clone(),
                ))
            })
            .collect();
        let _ = self.consumers.set(all);
        (router, tasks)
    }
}
