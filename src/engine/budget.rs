//! Rate budget: a token bucket of `redrivesPerMinute` tokens, refilled continuously.
//!
//! Pure: time is passed in, so the bucket is unit-testable and replay-safe.

use jiff::Timestamp;

/// A token bucket holding at most `per_minute` tokens, starting full.
#[derive(Clone, Debug, PartialEq)]
pub struct RateBucket {
    per_minute: u32,
    tokens: f64,
    updated: Timestamp,
}

impl RateBucket {
    pub fn new(per_minute: u32, now: Timestamp) -> Self {
        Self {
            per_minute,
            tokens: f64::from(per_minute),
            updated: now,
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn refill(&mut self, now: Timestamp) {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        if elapsed > 0.0 {
            self.tokens = (self.tokens + elapsed * f64::from(self.per_minute) / 60.0)
                .min(f64::from(self.per_minute));
            self.updated = now;
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Timestamp) -> u32 {
        self.refill(now);
        self.tokens.floor() as u32
    }

    /// Take `n` tokens (callers take at most what [`available`](Self::available) returned).
    pub fn take(&mut self, now: Timestamp, n: u32) {
        self.refill(now);
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }

    /// When the next whole token will be available.
    pub fn next_token_at(&mut self, now: Timestamp) -> Timestamp {
        self.refill(now);
        if self.tokens >= 1.0 {
            return now;
        }
        let missing = 1.0 - self.tokens;
        let secs = missing * 60.0 / f64::from(self.per_minute);
        now + jiff::SignedDuration::from_secs_f64(secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_continuously_and_caps() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut b = RateBucket::new(60, t0);
        assert_eq!(b.available(t0), 60);
        b.take(t0, 60);
        assert_eq!(b.available(t0), 0);
        assert_eq!(b.next_token_at(t0), t0 + jiff::SignedDuration::from_secs(1));
        let t10 = t0 + jiff::SignedDuration::from_secs(10);
        assert_eq!(b.available(t10), 10);
        let later = t0 + jiff::SignedDuration::from_secs(3600);
        assert_eq!(b.available(later), 60);
    }
}
