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
}

impl EventSource {
    /// When a policy's next full poll is due, `next` being what its rules alone ask for.
    pub fn sweep_after(&self, next: Duration) -> Duration {
        next.max(self.sweep_interval)
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
        let tasks = self
            .queues
            .iter()
            .map(|q| {
                let stats = Arc::new(consumer::ConsumerStats::with_metrics(metrics.clone()));
                health.watch_consumer(&q.url, stats.clone(), consumer::turn_bound(q));
                tokio::spawn(consumer::run(
                    self.client.clone(),
                    q.clone(),
                    router.handler(),
                    stats,
                    stop.clone(),
                ))
            })
            .collect();
        (router, tasks)
    }
}
