//! The background task between the models' event channel and EventBridge `PutEvents`:
//! injected drop / duplicate / reorder / delay, then batches of up to 10 entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::config::retry::RetryConfig;
use aws_sdk_eventbridge::config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Event, EventFaults, EventsError, Shared, bump};

/// `PutEvents` takes at most 10 entries per call.
const MAX_BATCH: usize = 10;
const DEFAULT_REORDER_HOLD: Duration = Duration::from_secs(1);

/// What the publisher needs besides the channel.
pub(crate) struct PublisherSetup {
    pub endpoint: String,
    pub region: String,
    pub event_bus_name: String,
    pub seed: u64,
    pub shared: Arc<Shared>,
}

/// Build the EventBridge client and spawn the publisher on the current runtime. Ends when
/// every sender is gone (the emulator state was dropped), after publishing what is due.
pub(crate) fn spawn_publisher(
    setup: PublisherSetup,
    rx: mpsc::Receiver<Event>,
) -> Result<tokio::task::JoinHandle<()>, EventsError> {
    let ep = setup.endpoint.trim().to_string();
    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
        return Err(EventsError::InvalidEndpoint(ep));
    }
    // Static fake credentials: the emulator speaks for "AWS", and moto does not check
    // signatures (a real EventBridge would refuse `aws.*` sources from a caller anyway).
    let conf = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(setup.region.clone()))
        .endpoint_url(ep)
        // Two attempts and a short connect timeout: a dead endpoint costs the publisher little
        // time, and what still fails is counted, never retried forever.
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .credentials_provider(Credentials::new(
            "AKIDREDRIVEEMULATOR",
            "redrive-emulator-secret",
            None,
            None,
            "redrive-emulator",
        ))
        .build();
    let client = aws_sdk_eventbridge::Client::from_conf(conf);
    let p = Publisher {
        client,
        bus: setup.event_bus_name,
        shared: setup.shared,
        rng: StdRng::seed_from_u64(setup.seed ^ 0xE7E7_B41D),
        due: BinaryHeap::new(),
        seq: 0,
        held: None,
    };
    Ok(tokio::spawn(p.run(rx)))
}

struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
    shared: Arc<Shared>,
    rng: StdRng,
    /// Events waiting for their (delayed) publication time, in (time, arrival) order.
    due: BinaryHeap<Reverse<(Instant, u64, Slot)>>,
    seq: u64,
    /// An event held back by `reorderRate` and when it must go anyway.
    held: Option<(Event, Instant)>,
}

/// Heap payload: ordered by (time, seq) only.
struct Slot(Event);

impl PartialEq for Slot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Publisher {
    async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        let mut open = true;
        while open || !self.due.is_empty() || self.held.is_some() {
            let wake = self.next_wake();
            tokio::select! {
                got = rx.recv(), if open => match got {
                    Some(ev) => self.ingest(ev),
                    None => open = false,
                },
                () = sleep_until(wake) => {}
            }
            // Drain what else is already queued so it can share a batch.
            while open {
                match rx.try_recv() {
                    Ok(ev) => self.ingest(ev),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }
            let now = Instant::now();
            if !open || self.held.as_ref().is_some_and(|(_, until)| *until <= now) {
                // Nothing later will come (or it waited long enough): let it go.
                if let Some((ev, _)) = self.held.take() {
                    self.schedule(ev, now);
                }
            }
            self.publish_due(if open { now } else { far_future() })
                .await;
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let a = self.due.peek().map(|Reverse((t, _, _))| *t);
        let b = self.held.as_ref().map(|(_, t)| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn schedule(&mut self, ev: Event, at: Instant) {
        self.seq += 1;
        self.due.push(Reverse((at, self.seq, Slot(ev))));
    }

    /// Apply the injected faults to one event from the models.
    fn ingest(&mut self, ev: Event) {
        let f: EventFaults = self.shared.faults();
        let shared = self.shared.clone();
        let c = &shared.counters;
        if f.drop_rate > 0.0 && self.rng.random::<f64>() < f.drop_rate {
            bump(&c.dropped, 1);
            return;
        }
        let copies = if f.duplicate_rate > 0.0 && self.rng.random::<f64>() < f.duplicate_rate {
            bump(&c.duplicated, 1);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let ev = ev.clone();
            let mut delay = f.delay.unwrap_or_default();
            if let Some(j) = f.delay_jitter.filter(|j| !j.is_zero()) {
                delay += j.mul_f64(self.rng.random::<f64>());
            }
            let at = Instant::now() + delay;
            if self.held.is_none()
                && f.reorder_rate > 0.0
                && self.rng.random::<f64>() < f.reorder_rate
            {
                bump(&c.reordered, 1);
                let hold = f.reorder_hold.unwrap_or(DEFAULT_REORDER_HOLD);
                self.held = Some((ev, at + hold));
                continue;
            }
            self.schedule(ev, at);
            // A later event was scheduled: the held one now goes right after it.
            if let Some((held, _)) = self.held.take() {
                self.schedule(held, at);
            }
        }
    }

    /// Publish every event due by `now`, in batches.
    async fn publish_due(&mut self, now: Instant) {
        loop {
            let mut batch = Vec::new();
            while batch.len() < MAX_BATCH
                && self.due.peek().is_some_and(|Reverse((t, _, _))| *t <= now)
            {
                if let Some(Reverse((_, _, Slot(ev)))) = self.due.pop() {
                    batch.push(ev);
                }
            }
            if batch.is_empty() {
                return;
            }
            self.put(batch).await;
        }
    }

    async fn put(&self, batch: Vec<Event>) {
        let c = &self.shared.counters;
        let n = batch.len() as u64;
        let entries: Vec<PutEventsRequestEntry> = batch
            .into_iter()
            .map(|ev| {
                PutEventsRequestEntry::builder()
                    .source(ev.source)
                    .detail_type(ev.detail_type)
                    .set_resources(Some(ev.resources))
                    .detail(ev.detail.to_string())
                    .time(DateTime::from_millis(ev.time))
                    .event_bus_name(&self.bus)
                    .build()
            })
            .collect();
        bump(&c.put_events_calls, 1);
        match self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let failed = u64::try_from(out.failed_entry_count().max(0)).unwrap_or(0);
                bump(&c.failed, failed.min(n));
                bump(&c.published, n.saturating_sub(failed));
                if failed > 0 {
                    tracing::warn!(failed, "EventBridge refused some PutEvents entries");
                }
            }
            Err(e) => {
                bump(&c.failed, n);
                tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&e), "PutEvents failed");
            }
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
