//! EventBridge events on every status change (issue 15): Step Functions "Execution Status
//! Change" and CodePipeline "Stage Execution State Change", published with `PutEvents` to a
//! configurable EventBridge endpoint (moto in the tests), with drop / duplicate / reorder /
//! delay injection.
//!
//! The models call `Emitter::emit` at each transition while they hold their lock; it only
//! `try_send`s into a bounded channel (a full channel counts a drop), so publishing never
//! blocks or slows an API handler. A background task applies the injected faults and calls
//! `PutEvents`. See docs/emulator.md, section "Events".

mod envelope;
mod publisher;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use envelope::{
    CODEPIPELINE_SOURCE, Event, MAX_INLINE_DATA, SFN_DETAIL_TYPE, SFN_SOURCE, STAGE_DETAIL_TYPE,
    SfnStatusChange, StageState, StageStateChange, envelope, event_time,
};
pub(crate) use publisher::{PublisherSetup, spawn_publisher};

use crate::config::opt_duration;

/// Where and how events are published. Without `eventbridge_endpoint` nothing is built or sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventsConfig {
    /// EventBridge endpoint URL (e.g. moto's `http://127.0.0.1:PORT`); None = events off.
    pub eventbridge_endpoint: Option<String>,
    /// Event bus the events go to (AWS services publish to `default`).
    pub event_bus_name: String,
    /// Events buffered between the models and the publisher; beyond it events are dropped and
    /// counted (`droppedQueueFull`).
    pub queue_capacity: usize,
    /// How often (real time) the emulator settles its models so that time-driven changes
    /// (an execution finishing, an action ending) are published without any API call.
    #[serde(with = "crate::config::humantime_duration")]
    pub settle_interval: Duration,
    /// Fault injection on the way to EventBridge.
    pub faults: EventFaults,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            eventbridge_endpoint: None,
            event_bus_name: "default".to_string(),
            queue_capacity: 10_000,
            settle_interval: Duration::from_millis(100),
            faults: EventFaults::default(),
        }
    }
}

/// Faults injected between a status change and `PutEvents`. Rates are probabilities in
/// `[0, 1]` drawn, per event in emission order, from an RNG seeded with the emulator's seed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventFaults {
    /// Probability that an event is never published.
    pub drop_rate: f64,
    /// Probability that an event is published twice (two `PutEvents` entries).
    pub duplicate_rate: f64,
    /// Probability that an event is held back and published after the next one (or after
    /// `reorder_hold` if no other event comes), i.e. out of order.
    pub reorder_rate: f64,
    /// Longest time a held-back event waits for a later one (default 1 s).
    #[serde(with = "opt_duration")]
    pub reorder_hold: Option<Duration>,
    /// Fixed delay (real time) before an event is published.
    #[serde(with = "opt_duration")]
    pub delay: Option<Duration>,
    /// Extra random delay, uniform in `[0, delay_jitter]`, per event.
    #[serde(with = "opt_duration")]
    pub delay_jitter: Option<Duration>,
}

impl EventFaults {
    /// Clamp rates into `[0, 1]` (NaN counts as 0).
    pub fn sanitized(mut self) -> Self {
        for r in [
            &mut self.drop_rate,
            &mut self.duplicate_rate,
            &mut self.reorder_rate,
        ] {
            *r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
        }
        self
    }
}

/// Event counters (also in [`crate::Stats::events`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EventStats {
    /// Whether an EventBridge endpoint is configured.
    pub enabled: bool,
    /// Status changes handed to the publisher.
    pub emitted: u64,
    /// Not handed over: the channel was full.
    pub dropped_queue_full: u64,
    /// Dropped by the injected `dropRate`.
    pub dropped: u64,
    /// Events published a second time by `duplicateRate`.
    pub duplicated: u64,
    /// Events held back by `reorderRate`.
    pub reordered: u64,
    /// Entries EventBridge accepted.
    pub published: u64,
    /// Entries that failed (the call failed, or EventBridge refused the entry).
    pub failed: u64,
    /// `PutEvents` calls made (up to 10 entries each).
    pub put_events_calls: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    emitted: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    published: AtomicU64,
    failed: AtomicU64,
    put_events_calls: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// What the emitters (in the models) and the publisher task share; it does not hold the
/// sender, so the publisher ends when the last emitter is gone.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub counters: Counters,
    faults: RwLock<EventFaults>,
}

impl Shared {
    pub fn faults(&self) -> EventFaults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The models' handle on the event channel: disabled (every call a no-op) until the
/// publisher is attached by [`Emitter::attach`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Emitter {
    tx: Arc<OnceLock<mpsc::Sender<Event>>>,
    shared: Arc<Shared>,
}

impl Emitter {
    pub fn new(faults: EventFaults) -> Self {
        let e = Emitter::default();
        e.set_faults(faults);
        e
    }

    /// True once a publisher is attached: only then are events built.
    pub fn enabled(&self) -> bool {
        self.tx.get().is_some()
    }

    /// Hand an event to the publisher without waiting.
    pub fn emit(&self, event: Event) {
        let Some(tx) = self.tx.get() else { return };
        let c = &self.shared.counters;
        match tx.try_send(event) {
            Ok(()) => bump(&c.emitted, 1),
            Err(mpsc::error::TrySendError::Full(_)) => bump(&c.dropped_queue_full, 1),
            // The publisher is gone (runtime shutting down): nothing can be published.
            Err(mpsc::error::TrySendError::Closed(_)) => bump(&c.failed, 1),
        }
    }

    /// Attach the channel to a publisher (once; later calls are ignored). Returns the
    /// receiving end for the publisher, or None if already attached.
    pub fn attach(&self, capacity: usize) -> Option<mpsc::Receiver<Event>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.tx.set(tx).ok().map(|()| rx)
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn set_faults(&self, f: EventFaults) {
        *self
            .shared
            .faults
            .write()
            .unwrap_or_else(|e| e.into_inner()) = f.sanitized();
    }

    pub fn faults(&self) -> EventFaults {
        self.shared.faults()
    }

    pub fn stats(&self) -> EventStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EventStats {
            enabled: self.enabled(),
            emitted: g(&c.emitted),
            dropped_queue_full: g(&c.dropped_queue_full),
            dropped: g(&c.dropped),
            duplicated: g(&c.duplicated),
            reordered: g(&c.reordered),
            published: g(&c.published),
            failed: g(&c.failed),
            put_events_calls: g(&c.put_events_calls),
        }
    }
}

/// Errors setting up event publishing.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid EventBridge endpoint '{0}': expected an http:// or https:// URL")]
    InvalidEndpoint(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: i64) -> Event {
        Event {
            source: SFN_SOURCE,
            detail_type: SFN_DETAIL_TYPE,
            resources: vec![],
            detail: serde_json::json!({"i": i}),
            time: i,
        }
    }

    #[test]
    fn disabled_emitter_builds_nothing_and_counts_nothing() {
        let e = Emitter::default();
        assert!(!e.enabled());
        e.emit(sample(1));
        assert_eq!(e.stats(), EventStats::default());
    }

    #[test]
    fn full_channel_counts_a_drop_and_never_blocks() {
        let e = Emitter::default();
        let mut rx = e.attach(2).expect("first attach");
        assert!(e.attach(2).is_none(), "attached once");
        for i in 0..5 {
            e.emit(sample(i));
        }
        let s = e.stats();
        assert!(s.enabled);
        assert_eq!((s.emitted, s.dropped_queue_full), (2, 3));
        assert_eq!(rx.try_recv().map(|ev| ev.time).ok(), Some(0));
        assert_eq!(rx.try_recv().map(|ev| ev.time).ok(), Some(1));
    }

    #[test]
    fn fault_rates_are_clamped() {
        let e = Emitter::new(EventFaults {
            drop_rate: 2.0,
            duplicate_rate: -1.0,
            reorder_rate: f64::NAN,
            ..Default::default()
        });
        let f = e.faults();
        assert_eq!(
            (f.drop_rate, f.duplicate_rate, f.reorder_rate),
            (1.0, 0.0, 0.0)
        );
    }

    #[test]
    fn config_round_trips_with_humantime() {
        let c: EventsConfig = serde_json::from_value(serde_json::json!({
            "eventbridgeEndpoint": "http://127.0.0.1:5000",
            "settleInterval": "250ms",
            "faults": {"dropRate": 0.5, "delay": "2s", "delayJitter": 0.5}
        }))
        .expect("parse");
        assert_eq!(c.event_bus_name, "default");
        assert_eq!(c.settle_interval, Duration::from_millis(250));
        assert_eq!(c.faults.delay, Some(Duration::from_secs(2)));
        assert_eq!(c.faults.delay_jitter, Some(Duration::from_millis(500)));
        let back: EventsConfig =
            serde_json::from_value(serde_json::to_value(&c).expect("ser")).expect("de");
        assert_eq!(back, c);
    }
}
