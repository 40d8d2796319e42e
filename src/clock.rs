//! Clock skew between the operator's node and the services it polls.
//!
//! Ages (`window.minAge`, `window.maxAge`, the backoff, the services' own redrive periods) are
//! measured against the service's timestamps (`stopDate`, `lastStatusChange`, `completedAt`).
//! When the node's clock and the service's disagree, measuring them with the node's clock makes
//! every decision early (service behind) or late (service ahead) by the difference. So every
//! target client keeps a [`ServiceClock`]: an estimate of *service clock − operator clock* from
//! the HTTP `Date` header of the service's answers (what the AWS SDKs do to sign requests), and
//! [`crate::reconcile`] makes its decisions on `operator now + estimate`.
//!
//! The estimate is conservative by construction. A `Date` header has one-second resolution and
//! is written while the request is being served, so `Date − (operator time the answer was read)`
//! is a *lower bound* of the true skew (by up to 1 s plus the latency). The estimate is the
//! median of the last [`WINDOW`] such samples (lower middle for an even count): one odd answer
//! (a proxy's header, a stalled read) moves nothing, and a skew that changes (NTP stepped the
//! node's clock) takes over after half a window. Samples further than [`MAX_SKEW`] from the
//! operator's clock are ignored with a warning: a service that far off is broken (AWS refuses
//! signatures more than 15 minutes off), and trusting it would let one bad header move every
//! decision by hours. An estimate within [`RESOLUTION`] of zero is zero: below the header's
//! resolution nothing can be told apart, and agreeing clocks keep exactly today's behaviour.
//!
//! Only service-relative ages use the estimate. Claim deadlines, ledger timestamps, status
//! times and the poll schedule stay on the operator's clock: they are compared between
//! replicas, which share no service clock (docs/reliability.md, "Clock skew").

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

/// Samples further than this from the operator's clock are ignored (and reported).
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// Samples the median is taken over.
pub const WINDOW: usize = 15;
/// Estimates closer to zero than this are zero (the `Date` header's resolution).
pub const RESOLUTION: SignedDuration = SignedDuration::from_secs(1);
/// At most one warning about ignored samples per client in this interval.
const WARN_EVERY: Duration = Duration::from_secs(600);
/// An estimate that moved at least this far from the last one logged is logged again.
const LOG_CHANGE: SignedDuration = SignedDuration::from_secs(5);

/// What one sample did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Taken into the window.
    Accepted,
    /// Further than [`MAX_SKEW`] from the operator's clock: ignored.
    Rejected,
}

/// The pure estimator: samples of *service clock − operator clock* in, an estimate out.
#[derive(Clone, Debug, Default)]
pub struct SkewEstimator {
    /// Milliseconds, oldest first, at most [`WINDOW`].
    samples: VecDeque<i64>,
    rejected: u64,
}

impl SkewEstimator {
    /// One answer: the service's `Date` and the operator's time when the answer was read.
    pub fn observe(&mut self, service: Timestamp, received: Timestamp) -> Observation {
        self.observe_offset(service.duration_since(received))
    }

    /// One sample of *service clock − operator clock*.
    pub fn observe_offset(&mut self, offset: SignedDuration) -> Observation {
        if offset.unsigned_abs() > MAX_SKEW {
            self.rejected = self.rejected.saturating_add(1);
            return Observation::Rejected;
        }
        let ms = i64::try_from(offset.as_millis()).unwrap_or(0);
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        Observation::Accepted
    }

    /// *Service clock − operator clock*: the median of the window (the lower middle of an even
    /// count), zero within [`RESOLUTION`] of zero or without samples.
    pub fn estimate(&self) -> SignedDuration {
        if self.samples.is_empty() {
            return SignedDuration::ZERO;
        }
        let mut sorted: Vec<i64> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let median = SignedDuration::from_millis(sorted[(sorted.len() - 1) / 2]);
        if median.abs() < RESOLUTION {
            SignedDuration::ZERO
        } else {
            median
        }
    }

    /// Samples in the window.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Samples ignored so far (further than [`MAX_SKEW`]).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}

/// `t + d`, saturating at the ends of time (holds and waits may be `Timestamp::MAX`).
pub fn shift(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) as a timestamp.
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()
}

/// The skew estimate of one service client, shared by its API clients (cheap to clone).
#[derive(Clone, Debug)]
pub struct ServiceClock {
    label: Arc<str>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    estimator: SkewEstimator,
    last_warned: Option<Instant>,
    rejected_since_warning: u64,
    logged: SignedDuration,
}

impl ServiceClock {
    /// `label` names the client in logs (service, region or endpoint, credentials).
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: Arc::from(label.into()),
            inner: Arc::default(),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The `Date` header of an answer read just now (unparseable values are ignored).
    pub fn observe_date_header(&self, value: &str) {
        if let Some(service) = parse_http_date(value) {
            self.observe(service, Timestamp::now());
        }
    }

    /// One answer: the service's `Date` and the operator's time when it was read.
    pub fn observe(&self, service: Timestamp, received: Timestamp) {
        let offset = service.duration_since(received);
        let mut inner = self.inner.lock().expect("service clock lock");
        match inner.estimator.observe_offset(offset) {
            Observation::Rejected => {
                inner.rejected_since_warning += 1;
                if inner.last_warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    warn!(
                        client = %self.label,
                        skew_seconds = offset.as_secs(),
                        ignored = inner.rejected_since_warning,
                        max_seconds = MAX_SKEW.as_secs(),
                        "the service's clock (HTTP Date) is further from the operator's than the bound: sample ignored, check the node's time (NTP)"
                    );
                    inner.last_warned = Some(Instant::now());
                    inner.rejected_since_warning = 0;
                }
            }
            Observation::Accepted => {
                let estimate = inner.estimator.estimate();
                if (estimate - inner.logged).abs() >= LOG_CHANGE {
                    info!(
                        client = %self.label,
                        skew_ms = estimate.as_millis(),
                        "the service's clock differs from the operator's: ages are measured on the service's clock"
                    );
                    inner.logged = estimate;
                }
            }
        }
    }

    /// *Service clock − operator clock* (zero until an answer carried a `Date`).
    pub fn skew(&self) -> SignedDuration {
        self.inner
            .lock()
            .expect("service clock lock")
            .estimator
            .estimate()
    }

    /// Samples ignored so far.
    pub fn rejected(&self) -> u64 {
        self.inner
            .lock()
            .expect("service clock lock")
            .estimator
            .rejected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: i64) -> SignedDuration {
        SignedDuration::from_secs(secs)
    }

    fn ms(m: i64) -> SignedDuration {
        SignedDuration::from_millis(m)
    }

    #[test]
    fn no_samples_means_no_skew() {
        assert_eq!(SkewEstimator::default().estimate(), SignedDuration::ZERO);
    }

    #[test]
    fn the_median_of_the_window_is_the_estimate() {
        let mut e = SkewEstimator::default();
        for x in [180_200, 179_400, 180_900] {
            assert_eq!(e.observe_offset(ms(x)), Observation::Accepted);
        }
        assert_eq!(e.estimate(), ms(180_200));
        // Lower middle of an even count: the later of the two clocks is never assumed.
        e.observe_offset(ms(181_000));
        assert_eq!(e.estimate(), ms(180_200));
    }

    #[test]
    fn negative_skews_are_estimated_too() {
        let mut e = SkewEstimator::default();
        for x in [-180_600, -180_100, -181_000] {
            e.observe_offset(ms(x));
        }
        assert_eq!(e.estimate(), ms(-180_600));
    }

    #[test]
    fn one_outlier_moves_nothing() {
        let mut e = SkewEstimator::default();
        for _ in 0..6 {
            e.observe_offset(s(-120));
        }
        e.observe_offset(s(600)); // a proxy's header, within the bound
        e.observe_offset(s(-1)); // a stalled read
        assert_eq!(e.estimate(), s(-120));
    }

    #[test]
    fn absurd_samples_are_ignored_and_counted() {
        let mut e = SkewEstimator::default();
        e.observe_offset(s(30));
        assert_eq!(e.observe_offset(s(3600)), Observation::Rejected);
        assert_eq!(e.observe_offset(s(-16 * 60)), Observation::Rejected);
        assert_eq!(
            e.observe_offset(SignedDuration::from_secs(15 * 60)),
            Observation::Accepted
        );
        assert_eq!(e.rejected(), 2);
        assert_eq!(e.samples(), 2);
        // Only absurd samples: the operator's clock is used.
        let mut only_bad = SkewEstimator::default();
        only_bad.observe_offset(s(7200));
        assert_eq!(only_bad.estimate(), SignedDuration::ZERO);
    }

    #[test]
    fn skews_below_the_headers_resolution_are_zero() {
        let mut e = SkewEstimator::default();
        // Agreeing clocks: Date truncated to the second, read a few ms later.
        for x in [-40, -930, -510, -5, -700] {
            e.observe_offset(ms(x));
        }
        assert_eq!(e.estimate(), SignedDuration::ZERO);
        let mut e = SkewEstimator::default();
        e.observe_offset(ms(999));
        assert_eq!(e.estimate(), SignedDuration::ZERO);
        e.observe_offset(ms(1000));
        e.observe_offset(ms(1000));
        assert_eq!(e.estimate(), ms(1000));
    }

    #[test]
    fn a_changed_skew_takes_over_after_half_a_window() {
        let mut e = SkewEstimator::default();
        for _ in 0..WINDOW {
            e.observe_offset(s(180));
        }
        // NTP fixed the node's clock.
        for i in 0..WINDOW {
            e.observe_offset(ms(-300));
            let expect = if i < WINDOW / 2 {
                s(180)
            } else {
                SignedDuration::ZERO
            };
            assert_eq!(e.estimate(), expect, "after {} new samples", i + 1);
        }
        assert_eq!(e.samples(), WINDOW);
    }

    #[test]
    fn a_sample_is_the_date_minus_the_time_it_was_read() {
        let mut e = SkewEstimator::default();
        let read: Timestamp = "2026-03-01T12:00:00.400Z".parse().unwrap();
        let date = parse_http_date("Sun, 01 Mar 2026 12:03:00 GMT").unwrap();
        e.observe(date, read);
        assert_eq!(e.estimate(), ms(179_600));
    }

    #[test]
    fn shifting_saturates() {
        let t: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        assert_eq!(shift(t, s(-180)), "2026-03-01T11:57:00Z".parse().unwrap());
        assert_eq!(shift(Timestamp::MAX, s(180)), Timestamp::MAX);
        assert_eq!(shift(Timestamp::MIN, s(-180)), Timestamp::MIN);
    }

    #[test]
    fn http_dates_parse_and_garbage_does_not() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some("1994-11-06T08:49:37Z".parse().unwrap())
        );
        assert_eq!(
            parse_http_date(" Wed, 21 Oct 2015 07:28:00 GMT "),
            Some("2015-10-21T07:28:00Z".parse().unwrap())
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn a_service_clock_is_shared_by_its_clones() {
        let c = ServiceClock::new("test");
        let d = c.clone();
        let now = Timestamp::now();
        d.observe(now + s(120), now);
        assert_eq!(c.skew(), s(120));
        c.observe(now + s(86_400), now);
        assert_eq!(d.rejected(), 1);
        assert_eq!(d.skew(), s(120));
        c.observe_date_header("not a date");
        assert_eq!(c.skew(), s(120));
    }
}
