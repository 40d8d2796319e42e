//! Per-API token buckets on the emulated clock (api-facts §1.9; CodePipeline: emulator
//! defaults, api-facts §2.6).

use std::collections::{BTreeMap, HashMap};

use super::config::{BucketSpec, QuotaPreset};
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
    /// Exact buckets by API key, winning over the (scaled) preset.
    overrides: BTreeMap<String, BucketSpec>,
    buckets: HashMap<&'static str, Bucket>,
}

impl Throttle {
    pub fn new(preset: QuotaPreset, scale: f64, overrides: BTreeMap<String, BucketSpec>) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Throttle {
            preset,
            scale,
            overrides,
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `op` at `now`; false = throttled.
    pub fn try_acquire(&mut self, op: &'static str, now: Ms) -> bool {
        let (size, refill, scale) = match self.overrides.get(op) {
            Some(b) => (b.size, b.refill_per_second, 1.0),
            None => match self.preset.bucket(op) {
                Some((size, refill)) => (size, refill, self.scale),
                None => return true,
            },
        };
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

    /// Milliseconds until `op`'s bucket holds a whole token again (None if it has no bucket
    /// yet or never refills).
    pub fn retry_after_ms(&self, op: &str) -> Option<Ms> {
        let b = self.buckets.get(op)?;
        if b.refill_per_ms <= 0.0 {
            return None;
        }
        Some(((1.0 - b.tokens).max(0.0) / b.refill_per_ms).ceil() as Ms)
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
        let mut t = Throttle::new(QuotaPreset::UsEast1, 0.05, BTreeMap::new());
        // ListExecutions: 200 * 0.05 = 10 tokens, refill 0.25/s
        for _ in 0..10 {
            assert!(t.try_acquire("ListExecutions", 0));
        }
        assert!(!t.try_acquire("ListExecutions", 0));
        assert!(t.try_acquire("ListExecutions", 4_000));
        assert!(!t.try_acquire("ListExecutions", 4_000));
        assert!(t.try_acquire("CreateStateMachine", 0));
        let mut u = Throttle::new(QuotaPreset::Unlimited, 1.0, BTreeMap::new());
        for _ in 0..10_000 {
            assert!(u.try_acquire("ListExecutions", 0));
        }
        // CodePipeline defaults come with a preset; overrides apply exactly, even without one.
        let mut cp = Throttle::new(QuotaPreset::OtherRegions, 0.1, BTreeMap::new());
        for _ in 0..5 {
            assert!(cp.try_acquire("codepipeline:RetryStageExecution", 0));
        }
        assert!(!cp.try_acquire("codepipeline:RetryStageExecution", 0));
        let o = BTreeMap::from([(
            "codepipeline:GetPipelineState".to_string(),
            BucketSpec {
                size: 2.0,
                refill_per_second: 1.0,
            },
        )]);
        let mut ov = Throttle::new(QuotaPreset::Unlimited, 0.5, o);
        assert!(ov.try_acquire("codepipeline:GetPipelineState", 0));
        assert!(ov.try_acquire("codepipeline:GetPipelineState", 0));
        assert!(!ov.try_acquire("codepipeline:GetPipelineState", 0));
        assert!(ov.try_acquire("codepipeline:GetPipelineState", 1_000));
        assert!(ov.try_acquire("codepipeline:ListPipelines", 0));
    }
}
