//! Client-side pacing of one throttled AWS API.
//!
//! AWS throttles each (account, region, API) with a token bucket: burst `B`, refill `R`/s.
//! Keep one [`Pacer`] per such key, shared by every caller in the process. It is pure and
//! synchronous: time is a [`Duration`] since any epoch, passed in by the caller, so tests drive
//! it with a simulated clock.
//!
//! Caller protocol: `slot = reserve(now)`; sleep until `slot.at`; `confirm(slot, now)`: `Ok`
//! = send now, `Err(slot)` = a cut moved the call, sleep again; then report the answer with
//! `on_success(sent, now)` or `on_throttle(sent, now)`. A throttled call goes through the pacer
//! again before its retry (the SDK must not retry throttles on its own).
//!
//! How it works:
//! - Unpaced (only the optional cap applies) until the first throttle: a backlog first uses the
//!   whole AWS burst at full speed.
//! - A throttle means AWS's bucket was empty when it decided that call (estimated as the
//!   midpoint of the round trip). Between two such moments every success was refill, so
//!   `successes / elapsed` between them *is* `R` (or what others leave of it). Two anchors taken
//!   at throttles, 10-20 s apart, give that measurement; the pacer sends at it plus a 0.5 %
//!   overshoot, so a throttle comes now and then (about 0.5 % of calls) and refreshes it.
//! - The first throttle has nothing to measure: the rate drops to 1/32 of what got through in
//!   the last second (below `R` for every published bucket), then doubles per second until the
//!   next throttle. Sending below `R` costs no time: AWS's bucket saves the difference and the
//!   faster phase spends it; sending above `R` costs throttles.
//! - Echoes: calls sent before a cut come back throttled together; they carry no news, so their
//!   throttles are ignored and cuts never compound. Calls still waiting for a slot at a cut get
//!   a new slot on the new schedule (`confirm`), so only calls already in flight echo.
//! - No throttle for a while (twice the expected gap, 0.5-30 s): the estimate may be low or the
//!   quota raised; the rate grows 10 %/s. After a minute without throttles: unpaced again.
//! - An optional hard cap (rate, burst; e.g. a tenant's share) is a GCRA, enforced always.
//!
//! Cost: O(1) per call, no allocation, fixed size (a 10-slot ring holds "the last second").

use std::time::Duration;

/// A token-bucket rate: `per_second` refill, `burst` tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `share` (0..=1) of a bucket: the same share of both refill and burst. Pacers whose shares
    /// sum to 1 then never exceed the bucket together: over any window `w` their sum admits at
    /// most `B + R*w`, exactly what AWS admits.
    pub fn share_of(bucket: Rate, share: f64) -> Rate {
        let share = share.clamp(0.0, 1.0);
        Rate {
            per_second: bucket.per_second * share,
            burst: (bucket.burst * share).max(1.0),
        }
    }
}

/// Tuning; [`Default`] holds the values the tests validate.
#[derive(Clone, Copy, Debug)]
pub struct PacerConfig {
    /// Hard ceiling, enforced paced or not (e.g. a tenant's quota share).
    pub cap: Option<Rate>,
    /// First cut: this fraction of the successes of the last second.
    pub first_cut: f64,
    /// Pace this much above the measured refill, so throttles keep measuring it.
    pub overshoot: f64,
    /// A measurement shorter than `trust_span` keeps at least this fraction of the rate.
    pub min_keep: f64,
    pub trust_span: Duration,
    /// Growth per second after the first cut, until the first measurement.
    pub start_growth_per_second: f64,
    /// Growth per second once `quiet` has passed without a throttle.
    pub growth_per_second: f64,
    /// Quiet time before growing, as a multiple of the expected time between throttles
    /// (`1 / (overshoot * rate)`), clamped to `quiet_min..=quiet_max`.
    pub quiet_factor: f64,
    pub quiet_min: Duration,
    pub quiet_max: Duration,
    /// Unpaced again after this long without a throttle.
    pub unpace_after: Duration,
    /// The measurement spans between one and two of these (older anchor dropped after it).
    pub window: Duration,
    /// Floor of the paced rate, per second.
    pub min_rate: f64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            cap: None,
            first_cut: 1.0 / 32.0,
            overshoot: 0.005,
            min_keep: 0.25,
            trust_span: Duration::from_secs(1),
            start_growth_per_second: 1.0,
            growth_per_second: 0.10,
            quiet_factor: 2.0,
            quiet_min: Duration::from_millis(500),
            quiet_max: Duration::from_secs(30),
            unpace_after: Duration::from_secs(60),
            window: Duration::from_secs(10),
            min_rate: 0.1,
        }
    }
}

/// A point where AWS's bucket was empty: when the throttled call was decided (estimated as the
/// midpoint of its round trip), and how many successes were decided before it.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    at: Duration,
    successes: u64,
}

/// A reserved send time; see [`Pacer::reserve`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub at: Duration,
    /// Cut count when reserved.
    epoch: u64,
}

#[derive(Clone, Copy, Debug)]
struct Paced {
    /// Rate set by the last cut (before growth).
    rate: f64,
    cut_at: Duration,
    /// Time the last cut's rate is trusted for before growing.
    quiet: f64,
    /// Growth per second after `quiet`.
    growth: f64,
    /// Calls sent up to here were scheduled before the last cut: their throttles are echoes.
    echo_until: Duration,
    anchors: [Anchor; 2],
}

const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_millis(100);

/// Paces one (account/region, API). See the module docs.
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    config: PacerConfig,
    paced: Option<Paced>,
    /// Next free slot of the paced schedule.
    pace_tat: Duration,
    /// GCRA theoretical arrival time of the cap.
    cap_tat: Duration,
    last_throttle: Duration,
    successes: u64,
    /// Number of cuts: slots reserved before the last one are rescheduled.
    epoch: u64,
    /// Successes per 100 ms slot, for "the last second"; `ring_slot` is the newest slot number.
    ring: [u32; SLOTS],
    ring_slot: u64,
}

impl Pacer {
    pub fn new(config: PacerConfig) -> Self {
        Pacer {
            config,
            paced: None,
            pace_tat: Duration::ZERO,
            cap_tat: Duration::ZERO,
            last_throttle: Duration::ZERO,
            successes: 0,
            epoch: 0,
            ring: [0; SLOTS],
            ring_slot: 0,
        }
    }

    /// Reserve a slot for one call at `now`. Wait until `slot.at`, then [`Pacer::confirm`] it.
    pub fn reserve(&mut self, now: Duration) -> Slot {
        self.maybe_unpace(now);
        let mut at = now;
        if self.paced.is_some() {
            at = at.max(self.pace_tat);
        }
        if let Some(cap) = self.config.cap {
            // GCRA: a bucket of `burst` refilled at `per_second`, as one timestamp.
            let interval = 1.0 / cap.per_second.max(1e-9);
            let tolerance = secs(interval * (cap.burst - 1.0).max(0.0));
            at = at.max(self.cap_tat.saturating_sub(tolerance));
            self.cap_tat = self.cap_tat.max(at) + secs(interval);
        }
        if self.paced.is_some() {
            self.pace_tat = at + secs(1.0 / self.effective_rate(at));
        }
        Slot {
            at,
            epoch: self.epoch,
        }
    }

    /// When a call reserved at `now` would be sent, without reserving: lets a caller that can
    /// get the same facts from two APIs pick the one that answers sooner.
    pub fn next_at(&self, now: Duration) -> Duration {
        let mut at = now;
        let unpaces = now.saturating_sub(self.last_throttle) >= self.config.unpace_after
            || self.paced.is_none();
        if !unpaces {
            at = at.max(self.pace_tat);
        }
        if let Some(cap) = self.config.cap {
            let interval = 1.0 / cap.per_second.max(1e-9);
            let tolerance = secs(interval * (cap.burst - 1.0).max(0.0));
            at = at.max(self.cap_tat.saturating_sub(tolerance));
        }
        at
    }

    /// At `slot.at` (`now`), before sending: Ok = send now. Err = a cut since the reservation
    /// moved the call to the returned slot (calls waiting on the old rate would all be
    /// throttled: without this, every cut costs up to one throttle per waiting caller). A moved
    /// call is charged to the cap again: stricter than needed, and only at cuts.
    pub fn confirm(&mut self, slot: Slot, now: Duration) -> Result<(), Slot> {
        if slot.epoch == self.epoch {
            Ok(())
        } else {
            let next = self.reserve(now.max(slot.at));
            if next.at <= now { Ok(()) } else { Err(next) }
        }
    }

    /// The call sent at `sent` succeeded; answer at `now`.
    pub fn on_success(&mut self, sent: Duration, now: Duration) {
        self.successes += 1;
        self.advance_ring(now);
        self.ring[(self.ring_slot % SLOTS as u64) as usize] += 1;
        // A success decided before an anchor but answered after it belongs before it.
        let decided = midpoint(sent, now);
        if let Some(p) = &mut self.paced {
            for a in &mut p.anchors {
                if decided < a.at {
                    a.successes += 1;
                }
            }
        }
        self.maybe_unpace(now);
    }

    /// The call sent at `sent` was throttled; answer at `now`.
    pub fn on_throttle(&mut self, sent: Duration, now: Duration) {
        self.advance_ring(now);
        self.last_throttle = now;
        let c = &self.config;
        let here = Anchor {
            at: midpoint(sent, now),
            successes: self.successes,
        };
        let Some(p) = self.paced else {
            // First throttle: nothing measured yet. A fraction of the burst's speed, below R for
            // every published bucket; the start growth finds R from below (see module docs).
            let last_second: u32 = self.ring.iter().sum();
            self.paced = Some(Paced {
                rate: (c.first_cut * f64::from(last_second)).max(c.min_rate),
                cut_at: now,
                quiet: 0.0,
                growth: c.start_growth_per_second,
                echo_until: now,
                anchors: [here; 2],
            });
            // The bucket is empty now: the next call one interval later.
            self.pace_tat = now + secs(1.0 / self.effective_rate(now));
            self.epoch += 1;
            return;
        };
        if sent <= p.echo_until {
            return; // an echo of the last cut: no news
        }
        let current = self.effective_rate(now);
        let a0 = p.anchors[0];
        let span = here.at.saturating_sub(a0.at).as_secs_f64();
        // Empty at a0 and empty now: every success in between was refill.
        let measured = if span > 0.0 {
            self.successes.saturating_sub(a0.successes) as f64 / span * (1.0 + c.overshoot)
        } else {
            current
        };
        // Never up on a throttle; a short measurement is noisy, so it moves the rate only so far.
        let floor = if span >= c.trust_span.as_secs_f64() {
            0.0
        } else {
            current * c.min_keep
        };
        let rate = measured.clamp(floor, current).max(c.min_rate);
        // Trust a short measurement only as long as it lasted.
        let expected_gap = 1.0 / (c.overshoot * rate);
        let quiet = (c.quiet_factor * expected_gap)
            .min(span)
            .clamp(c.quiet_min.as_secs_f64(), c.quiet_max.as_secs_f64());
        let mut anchors = p.anchors;
        if here.at.saturating_sub(anchors[1].at) >= c.window {
            anchors = [anchors[1], here];
        }
        self.paced = Some(Paced {
            rate,
            cut_at: now,
            quiet,
            growth: c.growth_per_second,
            echo_until: now,
            anchors,
        });
        // Waiting callers get new slots on the new schedule (see `confirm`), the first one
        // interval after now: the bucket is empty now.
        self.pace_tat = now + secs(1.0 / rate);
        self.epoch += 1;
    }

    /// Rate set by the last cut, per second (before growth); None while unpaced.
    pub fn rate(&self) -> Option<f64> {
        self.paced.map(|p| p.rate)
    }

    /// Paced rate at `now`, growth included; None while unpaced.
    pub fn rate_at(&self, now: Duration) -> Option<f64> {
        self.paced.map(|_| self.effective_rate(now))
    }

    fn effective_rate(&self, at: Duration) -> f64 {
        let Some(p) = self.paced else {
            return f64::INFINITY;
        };
        let grow_for = (at.saturating_sub(p.cut_at).as_secs_f64() - p.quiet).max(0.0);
        p.rate * (1.0 + p.growth).powf(grow_for)
    }

    fn maybe_unpace(&mut self, now: Duration) {
        if self.paced.is_some()
            && now.saturating_sub(self.last_throttle) >= self.config.unpace_after
        {
            self.paced = None;
        }
    }

    fn advance_ring(&mut self, now: Duration) {
        let slot = (now.as_millis() / SLOT.as_millis()) as u64;
        if slot <= self.ring_slot {
            return;
        }
        // Zero the slots skipped since the last event (at most all of them).
        let skipped = (slot - self.ring_slot).min(SLOTS as u64);
        for i in 1..=skipped {
            self.ring[((self.ring_slot + i) % SLOTS as u64) as usize] = 0;
        }
        self.ring_slot = slot;
    }
}

/// When AWS decided a call: halfway through its round trip.
fn midpoint(sent: Duration, now: Duration) -> Duration {
    sent + now.saturating_sub(sent) / 2
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Simulated AWS bucket and a discrete-event drain, for tests (here and in the operator's).
#[cfg(test)]
pub mod sim {
    use super::{Pacer, Slot};
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::time::Duration;

    /// AWS's token bucket as the emulator implements it: starts full, refills continuously.
    #[derive(Clone, Debug)]
    pub struct SimBucket {
        pub burst: f64,
        pub refill: f64,
        tokens: f64,
        last: Duration,
    }

    impl SimBucket {
        pub fn new(burst: f64, refill: f64) -> Self {
            SimBucket {
                burst,
                refill,
                tokens: burst,
                last: Duration::ZERO,
            }
        }

        /// Take one token at `now` (calls must come in time order); false = throttled.
        pub fn try_take(&mut self, now: Duration) -> bool {
            if now > self.last {
                let dt = (now - self.last).as_secs_f64();
                self.tokens = (self.tokens + dt * self.refill).min(self.burst);
                self.last = now;
            }
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// splitmix64: tiny, seeded, deterministic.
    #[derive(Clone, Debug)]
    pub struct SplitMix64(pub u64);

    impl SplitMix64 {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in `lo..=hi` milliseconds, at microsecond resolution.
        pub fn latency(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
            let span = (hi_ms - lo_ms) * 1000 + 1;
            Duration::from_micros(lo_ms * 1000 + self.next_u64() % span)
        }
    }

    /// One drain scenario.
    #[derive(Clone, Debug)]
    pub struct Drain {
        /// Calls to complete successfully.
        pub calls: u64,
        /// Callers in flight at once.
        pub concurrency: usize,
        /// Round-trip latency range, ms; AWS decides halfway.
        pub latency_ms: (u64, u64),
        pub seed: u64,
        /// When the drain starts (the pacer may have history before).
        pub start: Duration,
    }

    #[derive(Clone, Debug, Default)]
    pub struct Outcome {
        pub successes: u64,
        pub throttled: u64,
        /// From `start` to the last success's answer.
        pub elapsed: Duration,
        /// Answer times of successes (for window checks).
        pub success_times: Vec<Duration>,
        /// Answer times of throttles.
        pub throttle_times: Vec<Duration>,
        /// Largest `Pacer::rate_at` seen at a reservation.
        pub max_rate: f64,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Ev {
        Send,
        Decide,
        Answer,
    }

    /// Run `pacers.len()` independent clients (each with its own pacer and `drain`) against one
    /// shared bucket; returns one outcome per client.
    pub fn run_shared(
        bucket: &mut SimBucket,
        pacers: &mut [Pacer],
        drains: &[Drain],
    ) -> Vec<Outcome> {
        struct Worker {
            client: usize,
            slot: Slot,
            sent: Duration,
            ok: bool,
        }
        let mut rng: Vec<SplitMix64> = drains.iter().map(|d| SplitMix64(d.seed)).collect();
        let mut left: Vec<u64> = drains.iter().map(|d| d.calls).collect();
        let mut out: Vec<Outcome> = drains.iter().map(|_| Outcome::default()).collect();
        let mut workers = Vec::new();
        // (time, seq, worker, event); seq keeps equal times in a deterministic order.
        let mut queue = BinaryHeap::new();
        let mut seq = 0u64;
        let mut push = |q: &mut BinaryHeap<_>, t: Duration, w: usize, e: Ev| {
            seq += 1;
            q.push(Reverse((t, seq, w, e)));
        };
        for (c, d) in drains.iter().enumerate() {
            for _ in 0..d.concurrency.min(d.calls as usize) {
                let w = workers.len();
                workers.push(Worker {
                    client: c,
                    slot: Slot::default(),
                    sent: Duration::ZERO,
                    ok: false,
                });
                left[c] -= 1;
                let slot = pacers[c].reserve(d.start);
                out[c].max_rate = out[c]
                    .max_rate
                    .max(pacers[c].rate_at(d.start).unwrap_or(0.0));
                workers[w].slot = slot;
                push(&mut queue, slot.at, w, Ev::Send);
            }
        }
        while let Some(Reverse((now, _, w, ev))) = queue.pop() {
            let c = workers[w].client;
            match ev {
                Ev::Send => {
                    if let Err(slot) = pacers[c].confirm(workers[w].slot, now) {
                        workers[w].slot = slot;
                        push(&mut queue, slot.at, w, Ev::Send);
                        continue;
                    }
                    workers[w].sent = now;
                    let lat = rng[c].latency(drains[c].latency_ms.0, drains[c].latency_ms.1);
                    push(&mut queue, now + lat / 2, w, Ev::Decide);
                    push(&mut queue, now + lat, w, Ev::Answer);
                }
                Ev::Decide => workers[w].ok = bucket.try_take(now),
                Ev::Answer => {
                    let o = &mut out[c];
                    if workers[w].ok {
                        pacers[c].on_success(workers[w].sent, now);
                        o.successes += 1;
                        o.success_times.push(now);
                        o.elapsed = now - drains[c].start;
                        if left[c] == 0 {
                            continue; // this worker is done
                        }
                        left[c] -= 1;
                    } else {
                        pacers[c].on_throttle(workers[w].sent, now);
                        o.throttled += 1; // the same call is retried
                        o.throttle_times.push(now);
                    }
                    let slot = pacers[c].reserve(now);
                    o.max_rate = o.max_rate.max(pacers[c].rate_at(now).unwrap_or(0.0));
                    workers[w].slot = slot;
                    push(&mut queue, slot.at, w, Ev::Send);
                }
            }
        }
        out
    }

    /// One client draining against its own bucket.
    pub fn run(bucket: &mut SimBucket, pacer: &mut Pacer, drain: &Drain) -> Outcome {
        run_shared(
            bucket,
            std::slice::from_mut(pacer),
            std::slice::from_ref(drain),
        )
        .pop()
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::sim::*;
    use super::*;

    /// Buckets (burst, refill/s). Step Functions: api-facts §1.9 (dg `service-quotas.html`);
    /// "us-east-1" is the us-east-1 / us-west-2 / eu-west-1 column. CodePipeline publishes no
    /// quota (api-facts §2.6): the emulator's defaults (`redrive-emulator` `QuotaPreset`).
    const PRESETS: &[(&str, f64, f64)] = &[
        ("ListExecutions us-east-1", 200.0, 5.0),
        ("ListExecutions other", 100.0, 2.0),
        ("DescribeExecution us-east-1", 300.0, 15.0),
        ("DescribeExecution other", 250.0, 10.0),
        ("GetExecutionHistory", 400.0, 20.0),
        ("RedriveExecution us-east-1", 1300.0, 300.0),
        ("RedriveExecution other", 800.0, 150.0),
        ("CP GetPipelineState (emu)", 100.0, 10.0),
        ("CP RetryStageExecution (emu)", 50.0, 5.0),
    ];

    /// (callers, latency range ms)
    const SHAPES: &[(usize, (u64, u64))] = &[(16, (30, 80)), (64, (30, 80)), (16, (10, 30))];

    fn drain(b: f64, r: f64, d: Drain, cap: Option<Rate>) -> (Outcome, Pacer) {
        let mut bucket = SimBucket::new(b, r);
        let mut pacer = Pacer::new(PacerConfig {
            cap,
            ..PacerConfig::default()
        });
        let o = run(&mut bucket, &mut pacer, &d);
        assert_eq!(o.successes, d.calls);
        (o, pacer)
    }

    fn shape(calls: u64, n: usize, lat: (u64, u64), seed: u64) -> Drain {
        Drain {
            calls,
            concurrency: n,
            latency_ms: lat,
            seed,
            start: Duration::ZERO,
        }
    }

    fn pct_throttled(o: &Outcome) -> f64 {
        100.0 * o.throttled as f64 / (o.successes + o.throttled) as f64
    }

    #[test]
    fn sim_bucket_starts_full_and_refills() {
        let mut b = SimBucket::new(3.0, 2.0);
        let t0 = Duration::ZERO;
        assert!((0..3).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(Duration::from_millis(499)));
        assert!(b.try_take(Duration::from_millis(500)));
        assert!(b.try_take(Duration::from_secs(100))); // capped at 3, not 200
        assert!(b.try_take(Duration::from_secs(100)));
        assert!(b.try_take(Duration::from_secs(100)));
        assert!(!b.try_take(Duration::from_secs(100)));
    }

    /// Goal 1: a backlog of K = B + 60 R drains in >= 97 % of the bound (K - B) / R, with few
    /// throttles. Every preset, three caller shapes, three seeds.
    #[test]
    fn drain_reaches_the_bound() {
        let mut worst_pct = f64::MAX;
        println!(
            "| preset | B/R | callers | latency ms | % of bound (min..max) | throttled % (max) | throttled (max) |"
        );
        println!("|---|---|---|---|---|---|---|");
        for &(name, b, r) in PRESETS {
            let calls = (b + 60.0 * r) as u64;
            let bound = (calls as f64 - b) / r;
            for &(n, lat) in SHAPES {
                // The callers alone must outrun the refill, else the bound is theirs, not AWS's.
                let callers_max = n as f64 * 2000.0 / (lat.0 + lat.1) as f64;
                if callers_max < 1.25 * r {
                    println!(
                        "| {name} | {b}/{r} | {n} | {lat:?} | skipped: callers max {callers_max:.0}/s < 1.25 R | | |"
                    );
                    continue;
                }
                let (mut lo, mut hi, mut thr_pct, mut thr) = (f64::MAX, 0.0f64, 0.0f64, 0u64);
                for seed in 1..=3 {
                    let (o, _) = drain(b, r, shape(calls, n, lat, seed), None);
                    let pct = 100.0 * bound / o.elapsed.as_secs_f64();
                    lo = lo.min(pct);
                    hi = hi.max(pct);
                    thr_pct = thr_pct.max(pct_throttled(&o));
                    thr = thr.max(o.throttled);
                    assert!(
                        pct >= 97.0,
                        "{name} n={n} {lat:?} seed={seed}: {pct:.2}% of bound"
                    );
                    // The cold start costs about one throttle per caller in flight when AWS's
                    // bucket runs dry (nothing tells the pacer before) and up to 10 more while
                    // it measures R; then <= 1 % (0.5 % overshoot and its echoes).
                    let allowed = n as f64 + 10.0 + 0.01 * calls as f64;
                    assert!(
                        o.throttled as f64 <= allowed,
                        "{name} n={n} {lat:?} seed={seed}: {} throttled > {allowed}",
                        o.throttled
                    );
                }
                worst_pct = worst_pct.min(lo);
                println!(
                    "| {name} | {b}/{r} | {n} | {lat:?} | {lo:.2}..{hi:.2} | {thr_pct:.2} | {thr} of {calls} |"
                );
            }
        }
        println!("worst: {worst_pct:.2}% of bound");
    }

    /// The measured rate ends within 1 % of the refill (overshoot included).
    #[test]
    fn rate_converges_to_refill() {
        for &(name, b, r) in PRESETS {
            let (_, p) = drain(b, r, shape((b + 60.0 * r) as u64, 64, (30, 80), 7), None);
            let rate = p.rate().expect("paced after a drain");
            println!("{name}: paced at {rate:.3}/s for R = {r}");
            assert!((rate / r - 1.0).abs() <= 0.01, "{name}: {rate}");
        }
    }

    /// Largest number of successes in any window of length `w`.
    fn max_in_window(times: &[Duration], w: Duration) -> usize {
        let mut best = 0;
        let mut j = 0;
        for i in 0..times.len() {
            while times[i] - times[j] >= w {
                j += 1;
            }
            best = best.max(i - j + 1);
        }
        best
    }

    /// Goal 2: a cap of share 0.5 = (0.5 R /s, 0.5 B burst). Over any window w the successes stay
    /// <= 0.5 (B + R w) + 1, and the drain takes within 10 % of what the share allows:
    /// (K - 0.5 B) / (0.5 R).
    #[test]
    fn cap_holds_a_quota_share() {
        println!(
            "| preset | callers | cap | share time s | elapsed s | elapsed / share time | worst window excess | throttled |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for &(name, b, r) in PRESETS {
            let cap = Rate::share_of(
                Rate {
                    per_second: r,
                    burst: b,
                },
                0.5,
            );
            let calls = (b + 60.0 * r) as u64;
            let allowed = (calls as f64 - cap.burst) / cap.per_second;
            for &(n, lat) in SHAPES {
                let (o, _) = drain(b, r, shape(calls, n, lat, 3), Some(cap));
                let ratio = o.elapsed.as_secs_f64() / allowed;
                let mut worst = f64::MIN; // max over windows of (seen - allowed)
                for w in [1u64, 5, 10, 30, 60, 120] {
                    let seen = max_in_window(&o.success_times, Duration::from_secs(w)) as f64;
                    let limit = cap.burst + cap.per_second * w as f64 + 1.0;
                    worst = worst.max(seen - limit);
                    assert!(
                        seen <= limit,
                        "{name} n={n}: {seen} successes in {w}s > {limit}"
                    );
                }
                println!(
                    "| {name} | {n} {lat:?} | {:.1}/s, {:.0} | {allowed:.1} | {:.1} | {ratio:.3} | {worst:.1} | {} |",
                    cap.per_second,
                    cap.burst,
                    o.elapsed.as_secs_f64(),
                    o.throttled
                );
                assert!(
                    ratio <= 1.10,
                    "{name} n={n}: {ratio:.3} of the share's time"
                );
                assert!(ratio >= 0.99, "{name} n={n}: faster than the share allows");
            }
        }
    }

    /// Two tenants with share 0.5 each on one bucket: neither throttles the other much and both
    /// finish within 10 % of their share's time.
    #[test]
    fn two_half_shares_fill_one_bucket() {
        for &(name, b, r) in PRESETS {
            let cap = Rate::share_of(
                Rate {
                    per_second: r,
                    burst: b,
                },
                0.5,
            );
            let calls = ((b + 60.0 * r) / 2.0) as u64;
            let allowed = (calls as f64 - cap.burst) / cap.per_second;
            let mut bucket = SimBucket::new(b, r);
            let config = PacerConfig {
                cap: Some(cap),
                ..PacerConfig::default()
            };
            let mut pacers = [Pacer::new(config), Pacer::new(config)];
            let drains = [shape(calls, 16, (10, 30), 1), shape(calls, 16, (30, 80), 2)];
            let out = run_shared(&mut bucket, &mut pacers, &drains);
            for (i, o) in out.iter().enumerate() {
                let ratio = o.elapsed.as_secs_f64() / allowed;
                println!(
                    "{name}: tenant {i}: {:.1}s of {allowed:.1}s ({ratio:.3}), {} throttled ({:.2}%)",
                    o.elapsed.as_secs_f64(),
                    o.throttled,
                    pct_throttled(o)
                );
                assert!(ratio <= 1.10, "{name} tenant {i}: {ratio:.3}");
                assert!(pct_throttled(o) <= 2.0, "{name} tenant {i}");
            }
        }
    }

    /// Feed `count` successes spread over `[from, to)`, each with a 50 ms round trip.
    fn successes(p: &mut Pacer, count: u32, from: Duration, to: Duration) {
        for i in 0..count {
            let now = from + (to - from) * i / count;
            p.on_success(now.saturating_sub(Duration::from_millis(50)), now);
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// Goal 5: 16 echoes (calls sent before a cut) leave the rate where one throttle put it, at
    /// the first throttle and at a later cut.
    #[test]
    fn echoes_do_not_compound() {
        let mut p = Pacer::new(PacerConfig::default());
        successes(&mut p, 288, Duration::ZERO, 999 * MS);
        p.on_throttle(949 * MS, 999 * MS); // all 288 within "the last second"
        let after_one = p.rate().unwrap();
        let mut q = p;
        for i in 1..16 {
            q.on_throttle((950 + i) * MS, (1000 + 5 * i) * MS);
        }
        println!(
            "first throttle: {after_one:.2}/s after 1, {:.2}/s after 16",
            q.rate().unwrap()
        );
        assert_eq!(q.rate(), Some(after_one));
        assert_eq!(after_one, 288.0 / 32.0);

        // Steady state: refill 15/s measured between two throttles, then a cut and 15 echoes.
        successes(&mut q, 150, 1100 * MS, 11_100 * MS);
        q.on_throttle(11_050 * MS, 11_100 * MS);
        let cut = q.rate().unwrap();
        let mut e = q;
        for i in 1..16 {
            e.on_throttle((11_040 + i) * MS, (11_100 + 5 * i) * MS);
        }
        println!(
            "later cut: {cut:.2}/s after 1, {:.2}/s after 16",
            e.rate().unwrap()
        );
        assert_eq!(e.rate(), Some(cut));
        assert!((cut - 15.0 * 1.005).abs() < 0.3, "{cut}");
        // A call sent after the cut is news: it cuts again.
        e.on_throttle(11_200 * MS, 11_250 * MS);
        assert_ne!(e.rate(), Some(cut));
    }

    /// Callers waiting for a slot when a cut comes are moved to the new schedule; a short
    /// measurement moves the rate at most to a quarter.
    #[test]
    fn a_cut_reschedules_waiting_callers() {
        let mut p = Pacer::new(PacerConfig {
            start_growth_per_second: 0.0, // a flat schedule, to check slot times exactly
            ..PacerConfig::default()
        });
        successes(&mut p, 320, Duration::ZERO, 999 * MS);
        p.on_throttle(949 * MS, 999 * MS); // 320 / 32 = 10/s
        let slots: Vec<Slot> = (0..4).map(|_| p.reserve(999 * MS)).collect();
        assert_eq!(slots[1].at - slots[0].at, 100 * MS);
        assert_eq!(p.confirm(slots[0], slots[0].at), Ok(()));
        // No success in the 0.5 s since: measured 0/s, but too short to trust: 10/4.
        p.on_throttle(1450 * MS, 1500 * MS);
        assert_eq!(p.rate(), Some(2.5));
        // slots[1..] were for 1099, 1199, 1299 ms: the cut at 1500 ms makes them stale. The
        // bucket is empty at the cut: the new schedule starts one interval (400 ms) later.
        let now = 1500 * MS;
        let moved = p.confirm(slots[1], now);
        let Err(next) = moved else {
            panic!("not moved: {moved:?}")
        };
        let Err(after) = p.confirm(slots[2], now) else {
            panic!("not moved")
        };
        println!(
            "after the cut: slots in {:?} and {:?}",
            next.at - now,
            after.at - now
        );
        assert_eq!(next.at - now, 400 * MS);
        assert_eq!(after.at - next.at, 400 * MS);
        assert_eq!(p.confirm(next, next.at), Ok(()));
    }

    /// Goal 4: a minute without throttles returns to unpaced (the cap still holds); growth
    /// starts after the quiet time.
    #[test]
    fn a_quiet_minute_unpaces() {
        let cap = Rate {
            per_second: 50.0,
            burst: 5.0,
        };
        let mut p = Pacer::new(PacerConfig {
            cap: Some(cap),
            ..PacerConfig::default()
        });
        successes(&mut p, 320, Duration::ZERO, 999 * MS);
        p.on_throttle(949 * MS, 999 * MS);
        successes(&mut p, 10, 1000 * MS, 3000 * MS);
        p.on_throttle(2950 * MS, 3000 * MS); // measured 5/s over 2 s
        let base = p.rate().unwrap();
        let quiet = 2.0; // min(2 / (0.005 * 5) s, the 2 s the measurement spans)
        let at = |s: f64| Duration::from_secs_f64(3.0 + s);
        assert!((base - 5.0 * 1.005).abs() < 0.05, "{base}");
        assert_eq!(p.rate_at(at(quiet - 0.01)), Some(base));
        let grown = p.rate_at(at(quiet + 10.01)).unwrap();
        println!("base {base:.3}/s, 10 s after quiet {grown:.3}/s");
        assert!((grown / base / 1.1f64.powi(10) - 1.0).abs() < 0.01);
        successes(&mut p, 100, at(0.1), at(59.9));
        p.reserve(at(59.9));
        assert!(p.rate().is_some(), "paced at 59.9 s");
        p.reserve(at(60.0));
        assert_eq!(p.rate(), None, "unpaced after 60 s");
        // Unpaced, the cap still applies: 5 at once, then 50/s.
        let now = at(61.0);
        let waits: Vec<Duration> = (0..7).map(|_| p.reserve(now).at - now).collect();
        println!("unpaced waits under cap: {waits:?}");
        assert!(waits[..5].iter().all(|w| w.is_zero()));
        assert_eq!(waits[5], 20 * MS);
        assert_eq!(waits[6], 40 * MS);
    }

    /// Goal 3: bounded memory. `Pacer` is `Copy`, so it owns no heap memory at all, and its
    /// methods allocate nothing (no collections in them); 100,000 calls cost O(1) each.
    #[test]
    fn pacer_is_small_and_owns_no_heap() {
        fn copy<T: Copy>() {}
        copy::<Pacer>();
        println!("Pacer: {} bytes", size_of::<Pacer>());
        assert!(size_of::<Pacer>() <= 512);
        let mut p = Pacer::new(PacerConfig {
            cap: Some(Rate {
                per_second: 100.0,
                burst: 10.0,
            }),
            ..PacerConfig::default()
        });
        let mut b = SimBucket::new(50.0, 20.0);
        let mut now = Duration::ZERO;
        let (mut ok, mut throttled) = (0u32, 0u32);
        for _ in 0..100_000 {
            let mut slot = p.reserve(now);
            while let Err(s) = p.confirm(slot, slot.at.max(now)) {
                slot = s;
            }
            let sent = slot.at.max(now);
            now = sent + 5 * MS;
            if b.try_take(now) {
                p.on_success(sent, now);
                ok += 1;
            } else {
                p.on_throttle(sent, now);
                throttled += 1;
            }
        }
        let rate = f64::from(ok) / now.as_secs_f64();
        println!("one caller, 5 ms calls: {rate:.2}/s for R = 20, {throttled} throttled");
        assert!((rate - 20.0).abs() < 0.5);
    }

    /// The figures can fail: the same drain without pacing (retry at once) throttles most calls.
    #[test]
    fn without_pacing_the_drain_throttles() {
        let (b, r) = (300.0, 15.0);
        let calls = (b + 60.0 * r) as u64;
        let mut bucket = SimBucket::new(b, r);
        let mut never = Pacer::new(PacerConfig {
            unpace_after: Duration::ZERO, // unpaced again at every call
            ..PacerConfig::default()
        });
        let o = run(&mut bucket, &mut never, &shape(calls, 16, (30, 80), 1));
        let pct = 100.0 * (calls as f64 - b) / r / o.elapsed.as_secs_f64();
        println!(
            "unpaced: {pct:.2}% of bound, {} throttled = {:.2}%",
            o.throttled,
            pct_throttled(&o)
        );
        assert!(pct_throttled(&o) > 90.0);
    }
}

#[cfg(test)]
mod next_at_tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `next_at` is what `reserve` would answer, and changes nothing.
    #[test]
    fn next_at_predicts_reserve_without_reserving() {
        let mut p = Pacer::new(PacerConfig {
            cap: Some(Rate {
                per_second: 10.0,
                burst: 2.0,
            }),
            ..PacerConfig::default()
        });
        let now = Duration::ZERO;
        assert_eq!(p.next_at(now), now);
        assert_eq!(p.next_at(now), now, "peeking reserves nothing");
        assert_eq!(p.reserve(now).at, now);
        assert_eq!(p.reserve(now).at, now, "a burst of 2");
        assert_eq!(p.next_at(now), 100 * MS, "then 10/s");
        assert_eq!(p.reserve(now).at, 100 * MS);
        // Paced after a throttle: the schedule, not the cap, decides.
        let mut q = Pacer::new(PacerConfig {
            start_growth_per_second: 0.0,
            ..PacerConfig::default()
        });
        for i in 0..320u64 {
            q.on_success(
                Duration::from_millis(i * 3),
                Duration::from_millis(i * 3 + 20),
            );
        }
        q.on_throttle(949 * MS, 999 * MS); // 320 / 32 = 10/s
        let at = q.next_at(999 * MS);
        assert_eq!(at, 1099 * MS);
        assert_eq!(q.reserve(999 * MS).at, at);
        // A minute without throttles: unpaced again, at once.
        assert_eq!(q.next_at(61 * 1000 * MS), 61 * 1000 * MS);
    }
}
