//! The operator's own throttle retries: every AWS call of the adapters goes through the
//! [`Pacer`] of its (service, region, account, API), shared by every policy and client of the
//! process, as AWS's bucket is.
//!
//! The SDK does not retry throttled answers ([`super::NoThrottleRetries`]): its retries would
//! bypass the pacer, and its adaptive mode cut the rate on every echoed throttle (88 % of the
//! bound, docs/benchmark.md). It still retries transport errors and 5xx. Here a throttled call
//! waits for a new slot and is sent again, with the same input (a RedriveExecution keeps its
//! client token), at most `attempts` times and within `timeout` (waits included), then fails
//! with [`ErrorCategory::Throttled`].
//!
//! A read may first queue for its slot for up to `queue` ([`CallLimits::queue`]): when the pace
//! or a quota share is what binds, a fleet's reads line up behind each other, and failing them
//! after `timeout` would waste the quota their policy's other reads already spent. A call that
//! acts ([`CallLimits::acting`]) never queues beyond `timeout`: its effect must land within the
//! limit a claim's fencing relies on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use prometheus_client::metrics::histogram::Histogram;

use super::pacer::{Pacer, PacerConfig, Rate, Slot};
use super::quotas;
use crate::metrics::Metrics;
use crate::policy::TargetKind;
use crate::targets::{ErrorCategory, TargetError};

/// The process's pacers, by (service, region, account, API). Cheap to clone (shared).
///
/// Entries are never evicted: a few hundred bytes per (account, region, API) the process ever
/// called, bounded by the policies' roles.
#[derive(Clone, Debug)]
pub struct Pacers {
    /// Time zero of every pacer of the table, so slots of two APIs compare.
    epoch: Instant,
    /// Each API's cap: this share of its published bucket (1 = no cap).
    share: f64,
    /// Factor on the published buckets the share applies to (1 but for scaled emulators).
    quota_scale: f64,
    /// Where slot waits are observed (`redrive_aws_send_wait_seconds`).
    metrics: Option<Arc<Metrics>>,
    table: Arc<Mutex<HashMap<PacerKey, Arc<Mutex<Pacer>>>>>,
}

type PacerKey = (TargetKind, String, String, &'static str);

impl Pacers {
    /// `share` (0 < share <= 1) caps every API with a published bucket at that share of its
    /// refill and burst; 1 caps nothing (the pacer follows the bucket, even a raised one).
    pub fn new(share: f64) -> Self {
        let share = if share.is_finite() && share > 0.0 {
            share.min(1.0)
        } else {
            1.0
        };
        Self {
            epoch: Instant::now(),
            share,
            quota_scale: 1.0,
            metrics: None,
            table: Arc::default(),
        }
    }

    /// Observe every call's wait for its send slot in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The share applies to the published buckets × `scale` (refill and burst): for an
    /// emulator whose buckets are scaled so (the benchmark). Ignored unless finite and > 0.
    pub fn with_quota_scale(mut self, scale: f64) -> Self {
        if scale.is_finite() && scale > 0.0 {
            self.quota_scale = scale;
        }
        self
    }

    pub fn share(&self) -> f64 {
        self.share
    }

    /// The pacer of `api` for `service` in `region` with the credentials of `account` (an
    /// account id, or a name for the default credentials).
    pub fn api(
        &self,
        service: TargetKind,
        region: &str,
        account: &str,
        api: &'static str,
    ) -> ApiPacer {
        let key = (service, region.to_string(), account.to_string(), api);
        let cap = (self.share < 1.0)
            .then(|| quotas::published(service, region, api))
            .flatten()
            .map(|bucket| {
                let scaled = Rate {
                    per_second: bucket.per_second * self.quota_scale,
                    burst: (bucket.burst * self.quota_scale).round().max(1.0),
                };
                Rate::share_of(scaled, self.share)
            });
        let pacer = self
            .table
            .lock()
            .expect("pacer table lock")
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Pacer::new(PacerConfig {
                    cap,
                    ..PacerConfig::default()
                })))
            })
            .clone();
        ApiPacer {
            api,
            epoch: self.epoch,
            pacer,
            waits: self
                .metrics
                .as_ref()
                .map(|m| m.send_wait(service.as_str(), api)),
        }
    }
}

impl Default for Pacers {
    fn default() -> Self {
        Self::new(1.0)
    }
}

/// What an adapter needs to pace its calls: the shared table, where its credentials reach, and
/// how far one call may go.
#[derive(Clone, Debug)]
pub struct Pacing {
    pub pacers: Pacers,
    pub service: TargetKind,
    pub region: String,
    /// An account id, or a name for the default credentials.
    pub account: String,
    pub limits: CallLimits,
}

impl Pacing {
    /// Pacing with a table of its own (an adapter built outside a registry).
    pub fn unshared(service: TargetKind) -> Self {
        Self {
            pacers: Pacers::default(),
            service,
            region: String::new(),
            account: String::new(),
            limits: CallLimits {
                attempts: 5,
                timeout: Duration::from_secs(30),
                queue: Duration::from_secs(300),
            },
        }
    }

    /// The shared pacer of `api`.
    pub fn api(&self, api: &'static str) -> ApiPacer {
        self.pacers
            .api(self.service, &self.region, &self.account, api)
    }
}

/// The account a role ARN belongs to (`arn:aws:iam::123456789012:role/x`), which is what AWS's
/// buckets are per; else the role ARN itself.
pub fn account_of_role(role_arn: &str) -> &str {
    match role_arn.split(':').nth(4) {
        Some(account) if !account.is_empty() => account,
        _ => role_arn,
    }
}

/// How far one logical call may go.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// Sends of the call, throttled ones included (the SDK's transport retries are its own).
    pub attempts: u32,
    /// Time for the whole call from its first send: every send and the waits for slots
    /// between them (from the start of the call, slot wait included, for [`Self::acting`]).
    pub timeout: Duration,
    /// Longest wait for the first send's slot of a read (zero: `timeout` bounds it).
    pub queue: Duration,
}

impl CallLimits {
    /// The limits of a call that acts (a redrive, a stage retry): no queueing beyond `timeout`,
    /// so the whole call, first slot included, ends within it.
    pub fn acting(self) -> Self {
        Self {
            queue: Duration::ZERO,
            ..self
        }
    }
}

/// One API's shared pacer.
#[derive(Clone, Debug)]
pub struct ApiPacer {
    api: &'static str,
    epoch: Instant,
    pacer: Arc<Mutex<Pacer>>,
    waits: Option<Histogram>,
}

/// A slot reserved on one of several pacers ([`reserve_sooner`]).
#[derive(Debug)]
pub struct Reserved {
    slot: Slot,
}

impl ApiPacer {
    pub fn api(&self) -> &'static str {
        self.api
    }

    fn since_epoch(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }

    /// When a call reserved now would be sent (nothing reserved).
    pub fn next_send(&self) -> Instant {
        let now = self.since_epoch(Instant::now());
        self.epoch + self.lock().next_at(now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.pacer.lock().expect("pacer lock")
    }

    /// Paced `send`: see the module docs.
    pub async fn call<T, F, Fut>(&self, limits: CallLimits, send: F) -> Result<T, TargetError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TargetError>>,
    {
        self.call_reserved(None, limits, send).await
    }

    /// [`ApiPacer::call`] whose first send uses `first` (from [`reserve_sooner`]).
    pub async fn call_reserved<T, F, Fut>(
        &self,
        first: Option<Reserved>,
        limits: CallLimits,
        mut send: F,
    ) -> Result<T, TargetError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TargetError>>,
    {
        let started = Instant::now();
        let mut deadline = started + limits.timeout;
        // A read's first slot may come later; its time limit then counts from that send.
        let queue_until = started + limits.queue.max(limits.timeout);
        let mut first = first.map(|r| r.slot);
        let mut last_throttle = None;
        for attempt in 0..limits.attempts.max(1) {
            let wait_until = if attempt == 0 { queue_until } else { deadline };
            let waiting = Instant::now();
            let sent = self.wait_for_slot(first.take(), wait_until).await;
            if let Some(h) = &self.waits {
                h.observe(waiting.elapsed().as_secs_f64());
            }
            let Some(sent) = sent else {
                return Err(
                    self.gave_up(last_throttle, "no send slot within the call's time limit")
                );
            };
            if attempt == 0 && !limits.queue.is_zero() {
                deadline = deadline.max(self.epoch + sent + limits.timeout);
            }
            let result = match tokio::time::timeout_at(deadline, send()).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(TargetError::new(
                        self.api,
                        ErrorCategory::Transient,
                        "timed out",
                    ));
                }
            };
            let answered = self.since_epoch(Instant::now());
            match result {
                Err(e) if e.category == ErrorCategory::Throttled => {
                    self.lock().on_throttle(sent, answered);
                    last_throttle = Some(e);
                }
                Err(e) if e.category == ErrorCategory::Transient => {
                    // No answer, an unreadable one or a server fault (the SDK retried it):
                    // nothing to learn about the bucket.
                    return Err(e);
                }
                // Any other answer, errors included, was admitted by AWS's bucket: it counts
                // as what got through.
                other => {
                    self.lock().on_success(sent, answered);
                    return other;
                }
            }
        }
        Err(self.gave_up(last_throttle, "still throttled after every attempt"))
    }

    fn gave_up(&self, last: Option<TargetError>, why: &str) -> TargetError {
        let code = last.and_then(|e| e.code);
        TargetError {
            api: self.api,
            category: ErrorCategory::Throttled,
            code,
            message: format!("{why} (paced to the API's quota; retried at the next poll)"),
        }
    }

    /// Wait for a slot (a reserved one first); the time it was sent, or None when no slot comes
    /// before `deadline` (then nothing is reserved, so giving up costs others nothing).
    async fn wait_for_slot(&self, first: Option<Slot>, deadline: Instant) -> Option<Duration> {
        let limit = self.since_epoch(deadline);
        let mut slot = match first {
            // Too late to send: a request cut short by the time limit may still reach AWS.
            Some(s) if s.at > limit => return None,
            Some(s) => s,
            None => {
                let mut p = self.lock();
                let now = self.since_epoch(Instant::now());
                if p.next_at(now) > limit {
                    return None;
                }
                p.reserve(now)
            }
        };
        loop {
            tokio::time::sleep_until(self.epoch + slot.at).await;
            let now = self.since_epoch(Instant::now());
            match self.lock().confirm(slot, now) {
                Ok(()) => return Some(now),
                Err(next) if next.at > limit => return None,
                Err(next) => slot = next,
            }
        }
    }
}

/// Reserve a slot on whichever of `pacers` can send first (ties: the first listed), atomically
/// with respect to the other callers of the same pacers; its index and the slot for
/// [`ApiPacer::call_reserved`]. The pacers must share one [`Pacers`] table (one epoch).
pub fn reserve_sooner(pacers: &[&ApiPacer]) -> (usize, Reserved) {
    assert!(!pacers.is_empty(), "reserve_sooner needs a pacer");
    // Locks are taken in the order given; every caller passes the same APIs in the same order.
    let mut guards: Vec<_> = pacers.iter().map(|p| p.lock()).collect();
    let now = pacers[0].since_epoch(Instant::now());
    let (best, _) = guards
        .iter()
        .enumerate()
        .map(|(i, g)| (i, g.next_at(now)))
        .min_by_key(|&(i, at)| (at, i))
        .expect("not empty");
    let slot = guards[best].reserve(now);
    (best, Reserved { slot })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const LIMITS: CallLimits = CallLimits {
        attempts: 5,
        timeout: Duration::from_secs(30),
        queue: Duration::ZERO,
    };

    fn throttled(api: &'static str) -> TargetError {
        TargetError {
            api,
            category: ErrorCategory::Throttled,
            code: Some("ThrottlingException".into()),
            message: "Rate exceeded".into(),
        }
    }

    /// A throttled call is sent again with the same input until it gets through.
    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_with_the_same_input() {
        let pacers = Pacers::default();
        let p = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "RedriveExecution",
        );
        let sends = AtomicU32::new(0);
        let tokens = Mutex::new(Vec::new());
        let token = "token-of-this-attempt";
        let out = p
            .call(LIMITS, || async {
                tokens.lock().unwrap().push(token.to_string());
                match sends.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(throttled("RedriveExecution")),
                    _ => Ok("redriven"),
                }
            })
            .await;
        assert_eq!(out, Ok("redriven"));
        assert_eq!(sends.load(Ordering::SeqCst), 3);
        assert!(tokens.lock().unwrap().iter().all(|t| t == token));
        // The throttles paced the API: a call now waits for a slot.
        assert!(p.next_send() > Instant::now());
    }

    /// After `attempts` throttled sends the call fails as throttled, naming the service's code.
    #[tokio::test(start_paused = true)]
    async fn giving_up_is_a_throttled_error() {
        let pacers = Pacers::default();
        let p = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "DescribeExecution",
        );
        let sends = AtomicU32::new(0);
        // Nothing gets through, so the pacer slows to its floor (0.1/s): time enough for every
        // attempt.
        let limits = CallLimits {
            timeout: Duration::from_secs(600),
            ..LIMITS
        };
        let out: Result<(), _> = p
            .call(limits, || async {
                sends.fetch_add(1, Ordering::SeqCst);
                Err(throttled("DescribeExecution"))
            })
            .await;
        let err = out.unwrap_err();
        assert_eq!(sends.load(Ordering::SeqCst), limits.attempts);
        assert_eq!(err.category, ErrorCategory::Throttled);
        assert_eq!(err.api, "DescribeExecution");
        assert_eq!(err.code.as_deref(), Some("ThrottlingException"));
        assert!(err.message.contains("still throttled"), "{err}");
    }

    /// Other errors are the caller's: sent once, returned as they are.
    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let pacers = Pacers::default();
        let p = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "RedriveExecution",
        );
        for category in [ErrorCategory::NotFound, ErrorCategory::Transient] {
            let sends = AtomicU32::new(0);
            let out: Result<(), _> = p
                .call(LIMITS, || async {
                    sends.fetch_add(1, Ordering::SeqCst);
                    Err(TargetError::new("RedriveExecution", category, "no"))
                })
                .await;
            assert_eq!(out.unwrap_err().category, category);
            assert_eq!(sends.load(Ordering::SeqCst), 1);
        }
    }

    /// A slot beyond the time limit is not taken: the call fails without sending.
    #[tokio::test(start_paused = true)]
    async fn no_slot_within_the_time_limit_sends_nothing() {
        let pacers = Pacers::default();
        let p = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "ListExecutions",
        );
        // One throttle with nothing through before: the pacer drops to its floor, 0.1/s.
        let once = CallLimits {
            attempts: 1,
            timeout: Duration::from_secs(5),
            queue: Duration::ZERO,
        };
        let out: Result<(), _> = p
            .call(once, || async { Err(throttled("ListExecutions")) })
            .await;
        assert_eq!(out.unwrap_err().category, ErrorCategory::Throttled);
        // The next slot is 10 s away, beyond a 5 s limit.
        let sends = AtomicU32::new(0);
        let err = p
            .call(once, || async {
                sends.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(err.category, ErrorCategory::Throttled);
        assert!(err.message.contains("time limit"), "{err}");
        assert_eq!(sends.load(Ordering::SeqCst), 0);
        // A read may queue for that slot; its time limit then counts from the send, so an
        // answer 4 s later (9 s past the call's start + 5 s) still arrives. Acting never queues.
        let read = CallLimits {
            queue: Duration::from_secs(60),
            ..once
        };
        let acting = p
            .call(read.acting(), || async {
                sends.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(acting.is_err());
        assert_eq!(sends.load(Ordering::SeqCst), 0);
        let start = Instant::now();
        let sent_at = Mutex::new(None);
        p.call(read, || async {
            *sent_at.lock().unwrap() = Some(start.elapsed());
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(())
        })
        .await
        .expect("a queued read gets its slot and its full time limit");
        let waited = sent_at.lock().unwrap().expect("sent");
        assert!(waited > Duration::from_secs(5), "sent after {waited:?}");
    }

    /// One table: two clients of the same account share a pacer; another account has its own.
    #[tokio::test(start_paused = true)]
    async fn pacers_are_shared_per_account_region_and_api() {
        let pacers = Pacers::default();
        let a = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "ListExecutions",
        );
        let b = pacers.clone().api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "ListExecutions",
        );
        let other = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "2",
            "ListExecutions",
        );
        let elsewhere = pacers.api(
            TargetKind::StepFunctions,
            "eu-west-1",
            "1",
            "ListExecutions",
        );
        let once = CallLimits {
            attempts: 1,
            ..LIMITS
        };
        let _ = a
            .call(once, || async { Err::<(), _>(throttled("ListExecutions")) })
            .await;
        let now = Instant::now();
        assert!(b.next_send() > now, "a's throttle paces b");
        assert_eq!(b.next_send(), a.next_send());
        assert_eq!(
            other.next_send(),
            now,
            "another account's bucket is untouched"
        );
        assert_eq!(elsewhere.next_send(), now, "another region's too");
    }

    /// The quota share holds over time: N calls under share 0.5 take (N - B/2) / (R/2).
    #[tokio::test(start_paused = true)]
    async fn a_quota_share_caps_the_rate() {
        let pacers = Pacers::new(0.5);
        let p = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "DescribeExecution",
        );
        let start = Instant::now();
        let limits = CallLimits {
            attempts: 1,
            timeout: Duration::from_secs(3600),
            queue: Duration::ZERO,
        };
        for _ in 0..300 {
            p.call(limits, || async { Ok(()) }).await.unwrap();
        }
        // 150 at once, then 7.5/s: the 300th leaves at (300 - 150) / 7.5 = 20 s (paused time).
        let took = start.elapsed().as_secs_f64();
        assert!((took - 150.0 / 7.5).abs() < 0.2, "{took}");
        // Against buckets scaled ×10 (a scaled emulator): 1,500 at once, then 75/s.
        let scaled = Pacers::new(0.5).with_quota_scale(10.0).api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "DescribeExecution",
        );
        let t = Instant::now();
        for _ in 0..3000 {
            scaled.call(limits, || async { Ok(()) }).await.unwrap();
        }
        let took = t.elapsed().as_secs_f64();
        assert!((took - 1500.0 / 75.0).abs() < 0.2, "{took}");
        // Unpaced by the cap alone: no share, no wait.
        let free = Pacers::new(1.0).api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "DescribeExecution",
        );
        let t = Instant::now();
        for _ in 0..1000 {
            free.call(limits, || async { Ok(()) }).await.unwrap();
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
        // CodePipeline publishes no quota: a share caps nothing there.
        let cp = pacers.api(
            TargetKind::CodePipeline,
            "us-east-1",
            "1",
            "GetPipelineState",
        );
        let t = Instant::now();
        for _ in 0..1000 {
            cp.call(limits, || async { Ok(()) }).await.unwrap();
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
    }

    #[test]
    fn roles_of_one_account_share_its_buckets() {
        assert_eq!(
            account_of_role("arn:aws:iam::123456789012:role/team-a"),
            "123456789012"
        );
        assert_eq!(account_of_role("not-an-arn"), "not-an-arn");
    }

    /// The sooner pacer wins; a tie goes to the first listed.
    #[tokio::test(start_paused = true)]
    async fn reserve_sooner_picks_the_pacer_that_sends_first() {
        let pacers = Pacers::new(0.01);
        // Caps: history 4 burst at 0.2/s, describe 3 burst at 0.15/s.
        let history = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "GetExecutionHistory",
        );
        let describe = pacers.api(
            TargetKind::StepFunctions,
            "us-east-1",
            "1",
            "DescribeExecution",
        );
        let mut picks = Vec::new();
        for _ in 0..7 {
            let (i, _slot) = reserve_sooner(&[&history, &describe]);
            picks.push(i);
        }
        // Both buckets' bursts first (history first on ties), then whichever refills sooner.
        assert_eq!(&picks[..7], &[0, 0, 0, 0, 1, 1, 1]);
        let (i, _) = reserve_sooner(&[&history, &describe]);
        assert_eq!(
            i, 0,
            "history's next token (5 s) comes before describe's (6.7 s)"
        );
    }
}
