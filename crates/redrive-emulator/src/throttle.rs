//! Per-API token buckets on the emulated clock (api-facts §1.9).

use std::collections::HashMap;

use super::config::QuotaPreset;
use super::model::Ms;

#[derive(Debug)]
struct Bucket {
    size: f64,
    refill_per_ms: f64,
    tokens: f64,
    last: Ms,
}

/// Token buckets, one per operation; buckets start full.
#[derive(Debug)]
pub(crate) struct Throttle {
    preset: QuotaPreset,
    scale: f64,
    buckets: HashMap<&'static str, Bucket>,
}

impl Throttle {
    pub fn new(preset: QuotaPreset, scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Throttle {
            preset,
            scale,
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `op` at `now`; false = throttled.
    pub fn try_acquire(&mut self, op: &'static str, now: Ms) -> bool {
        let Some((size, refill)) = self.preset.bucket(op) else {
            return true;
        };
        let scale = self.scale;
        let b = self.buckets.entry(op).or_insert_with(|| {
            let size = (size * scale).round().max(1.0);
            Bucket {
                size,
                refill_per_ms: refill * scale / 1000.0,
                tokens: size,
                last: now,
            }
        });
        if now > b.last {
            b.tokens = (b.tokens + (now - b.last) as f64 * b.refill_per_ms).min(b.size);
            b.last = now;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Remaining whole tokens per bucket (for stats).
    pub fn levels(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .buckets
            .iter()
            .map(|(k, b)| (k.to_string(), b.tokens))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let mut t = Throttle::new(QuotaPreset::UsEast1, 0.05);
        // ListExecutions: 200 * 0.05 = 10 tokens, refill 0.25/s
        for _ in 0..10 {
            assert!(t.try_acquire("ListExecutions", 0));
        }
        assert!(!t.try_acquire("ListExecutions", 0));
        assert!(t.try_acquire("ListExecutions", 4_000));
        assert!(!t.try_acquire("ListExecutions", 4_000));
        assert!(t.try_acquire("CreateStateMachine", 0));
        let mut u = Throttle::new(QuotaPreset::Unlimited, 1.0);
        for _ in 0..10_000 {
            assert!(u.try_acquire("ListExecutions", 0));
        }
    }
}
