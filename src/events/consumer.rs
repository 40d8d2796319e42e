//! The SQS consumer: long polling, a bounded backlog, deletes in batches after the hint was
//! handled, poison messages deleted and counted (never redelivered forever).
//!
//! A message is deleted only once its handler returned: if the operator dies first, SQS makes
//! it visible again after the visibility timeout and another replica (or this one, restarted)
//! handles it. Handling is idempotent (hints are re-read from the service and decided with the
//! usual tokens and claims), so a redelivery costs a read, never a second action.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::message::{self, Received, Rejected};

/// SQS's largest batch.
const BATCH: i32 = 10;
/// Long polling: SQS's maximum wait.
const WAIT_SECONDS: i32 = 20;

/// What a handler did with a hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Decided (acted, skipped or dropped as not actionable): delete the message.
    Done,
    /// Could not be decided now (a service or ledger error): leave the message; SQS redelivers
    /// it after the visibility timeout.
    Retry,
}

/// The handler of parsed hints.
pub type Handler = Arc<dyn Fn(Received) -> BoxFuture<'static, Handled> + Send + Sync>;

/// Counters of one consumer (also exported as metrics by the caller).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    pub received: AtomicU64,
    pub handled: AtomicU64,
    pub retried: AtomicU64,
    pub deleted: AtomicU64,
    pub rejected: [AtomicU64; Rejected::ALL.len()],
    pub receive_errors: AtomicU64,
    /// Seconds since the Unix epoch of the last successful ReceiveMessage.
    pub last_receive: AtomicU64,
    /// Seconds since the Unix epoch when the loop last started a receive, successful or not:
    /// /livez fails when it stops moving (a wedged consumer), not when the queue is down
    /// (a restart would not bring the queue back; the sweep covers meanwhile).
    pub last_turn: AtomicU64,
    /// Whether the last ReceiveMessage failed: while it does, policies poll on their
    /// pollInterval instead of waiting for the sweep.
    pub failing: std::sync::atomic::AtomicBool,
    /// Where the counts above are also exported.
    pub metrics: Arc<crate::metrics::Metrics>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ConsumerStats {
    pub fn with_metrics(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// How long ago the loop last turned (None before its first turn).
    pub fn since_last_turn(&self) -> Option<Duration> {
        match self.last_turn.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_secs(unix_now().saturating_sub(t))),
        }
    }

    pub fn rejected(&self, r: Rejected) -> u64 {
        let i = Rejected::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }
}

/// Settings of one queue.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub url: String,
    /// How long a received message stays invisible: sized to the work one hint costs (a few
    /// service calls with the SDK's retries).
    pub visibility_timeout: Duration,
    /// Hints handled at once.
    pub concurrency: usize,
}

/// The longest one turn of the loop takes when nothing is wrong: the long poll, the longest
/// backoff after a failed receive, and a batch whose every hint waits its full answer time
/// (half the visibility timeout) one after the other.
pub fn turn_bound(settings: &QueueSettings) -> Duration {
    Duration::from_secs(WAIT_SECONDS as u64 + 30) + settings.visibility_timeout / 2 * BATCH as u32
}

/// Run the consumer until `stop` turns true.
pub async fn run(
    client: aws_sdk_sqs::Client,
    settings: QueueSettings,
    handler: Handler,
    stats: Arc<ConsumerStats>,
    mut stop: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        stats.last_turn.store(unix_now(), Ordering::Relaxed);
        let receive = client
            .receive_message()
            .queue_url(&settings.url)
            .max_number_of_messages(BATCH)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(settings.visibility_timeout.as_secs().clamp(1, 43_200) as i32)
            .send();
        let out = tokio::select! {
            r = receive => r,
            _ = stop.changed() => return,
        };
        let messages = match out {
            Ok(o) => {
                backoff = Duration::from_millis(200);
                let now = unix_now();
                stats.last_receive.store(now, Ordering::Relaxed);
                stats.failing.store(false, Ordering::Relaxed);
                stats.metrics.event_last_receive.set(now as f64);
                o.messages.unwrap_or_default()
            }
            Err(e) => {
                stats.receive_errors.fetch_add(1, Ordering::Relaxed);
                stats.failing.store(true, Ordering::Relaxed);
                stats.metrics.event_receive_errors.inc();
                let e = crate::targets::TargetError::from_sdk("ReceiveMessage", &e);
                tracing::warn!(queue = %settings.url, error = %e, "receiving events failed; polling keeps working");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        stats
            .received
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let results: Vec<(String, Handled)> = futures::stream::iter(messages)
            .filter_map(|m| async move {
                let receipt = m.receipt_handle?;
                Some((receipt, m.body.unwrap_or_default()))
            })
            .map(|(receipt, body)| {
                let handler = handler.clone();
                let stats = stats.clone();
                async move {
                    match message::parse(&body) {
                        Err(r) => {
                            let i = Rejected::ALL.iter().position(|x| *x == r).unwrap_or(0);
                            stats.rejected[i].fetch_add(1, Ordering::Relaxed);
                            stats.metrics.record_event(r.as_str());
                            tracing::debug!(reason = r.as_str(), "event dropped");
                            (receipt, Handled::Done)
                        }
                        Ok(received) => {
                            let h = handler(received).await;
                            match h {
                                Handled::Done => stats.handled.fetch_add(1, Ordering::Relaxed),
                                Handled::Retry => stats.retried.fetch_add(1, Ordering::Relaxed),
                            };
                            (receipt, h)
                        }
                    }
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        let done: Vec<String> = results
            .into_iter()
            .filter(|(_, h)| *h == Handled::Done)
            .map(|(r, _)| r)
            .collect();
        if started.elapsed() > settings.visibility_timeout {
            tracing::warn!(queue = %settings.url, took = ?started.elapsed(), "handling a batch took longer than the visibility timeout: messages may be delivered again (harmless, costs reads)");
        }
        delete(&client, &settings.url, done, &stats).await;
    }
}

async fn delete(
    client: &aws_sdk_sqs::Client,
    url: &str,
    receipts: Vec<String>,
    stats: &ConsumerStats,
) {
    for chunk in receipts.chunks(BATCH as usize) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        match client
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                stats
                    .deleted
                    .fetch_add(out.successful().len() as u64, Ordering::Relaxed);
            }
            // The messages come back after the visibility timeout: handled again, harmlessly.
            Err(e) => {
                let e = crate::targets::TargetError::from_sdk("DeleteMessageBatch", &e);
                tracing::warn!(queue = %url, error = %e, "deleting handled events failed");
            }
        }
    }
}
