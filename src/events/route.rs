//! Which policies a hint concerns, and which hints were seen recently. Pure.
//!
//! A hint is routed only to policies that already cover its workflow: the workflows a policy
//! resolved at its last poll (explicit names and selector matches, so routing costs no service
//! call and a message cannot widen what a policy covers). The decision that follows re-reads
//! the run with that policy's own credentials.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::message::Hint;
use crate::policy::TargetKind;

/// The service a hint is about.
pub fn kind_of(hint: &Hint) -> TargetKind {
    match hint {
        Hint::StepFunctions { .. } => TargetKind::StepFunctions,
        Hint::CodePipeline { .. } => TargetKind::CodePipeline,
    }
}

/// The workflow a hint names, as policies list it (state machine ARN, pipeline name).
pub fn workflow_of(hint: &Hint) -> &str {
    match hint {
        Hint::StepFunctions {
            state_machine_arn, ..
        } => state_machine_arn,
        Hint::CodePipeline { pipeline, .. } => pipeline,
    }
}

/// Whether a policy of `kind` whose last poll resolved `workflows` covers `hint`. A state
/// machine listed with a version or alias qualifier (`…:stateMachine:orders:prod`) covers the
/// executions of `…:stateMachine:orders`, whose events name the unqualified ARN.
pub fn covers(kind: TargetKind, workflows: &[String], hint: &Hint) -> bool {
    if kind != kind_of(hint) {
        return false;
    }
    let wanted = workflow_of(hint);
    workflows.iter().any(|w| match hint {
        Hint::StepFunctions { .. } => unqualified(w) == wanted,
        Hint::CodePipeline { .. } => w == wanted,
    })
}

fn unqualified(arn: &str) -> &str {
    // arn:aws:states:REGION:ACCOUNT:stateMachine:NAME[:QUALIFIER]
    match arn.match_indices(':').nth(6) {
        Some((i, _)) => &arn[..i],
        None => arn,
    }
}

/// Keys seen within `ttl`, at most `capacity` of them (oldest forgotten first): duplicated
/// deliveries are dropped cheaply. Forgetting early only costs a read, never an action.
pub struct Seen {
    ttl: Duration,
    capacity: usize,
    at: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl Seen {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            at: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Record `key` at `now`; `false` if it was already seen within the TTL.
    pub fn first_time(&mut self, key: &str, now: Instant) -> bool {
        while let Some((t, k)) = self.order.front() {
            if now.duration_since(*t) < self.ttl && self.order.len() <= self.capacity {
                break;
            }
            if self.at.get(k) == Some(t) {
                self.at.remove(k);
            }
            self.order.pop_front();
        }
        if self
            .at
            .get(key)
            .is_some_and(|t| now.duration_since(*t) < self.ttl)
        {
            return false;
        }
        self.at.insert(key.to_string(), now);
        self.order.push_back((now, key.to_string()));
        true
    }

    /// Forget `key` (a hint that could not be decided: its redelivery must go through).
    pub fn forget(&mut self, key: &str) {
        self.at.remove(key);
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orders";

    fn sfn() -> Hint {
        Hint::StepFunctions {
            execution_arn: "arn:aws:states:us-east-1:123456789012:execution:orders:r".into(),
            state_machine_arn: M.into(),
            status: "FAILED".into(),
        }
    }

    #[test]
    fn only_policies_covering_the_workflow_get_the_hint() {
        let h = sfn();
        assert!(covers(TargetKind::StepFunctions, &[M.into()], &h));
        assert!(covers(
            TargetKind::StepFunctions,
            &[format!("{M}:prod")],
            &h
        ));
        assert!(!covers(TargetKind::StepFunctions, &[format!("{M}x")], &h));
        assert!(!covers(TargetKind::CodePipeline, &[M.into()], &h));
        assert!(!covers(TargetKind::StepFunctions, &[], &h));
        let cp = Hint::CodePipeline {
            pipeline: "deploys".into(),
            execution_id: "e".into(),
            stage: "Deploy".into(),
            state: "FAILED".into(),
        };
        assert!(covers(TargetKind::CodePipeline, &["deploys".into()], &cp));
        assert!(!covers(
            TargetKind::CodePipeline,
            &["deploys-2".into()],
            &cp
        ));
    }

    #[test]
    fn duplicates_within_the_ttl_are_dropped_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut s = Seen::new(Duration::from_secs(60), 3);
        assert!(s.first_time("a", t0));
        assert!(!s.first_time("a", t0 + Duration::from_secs(1)));
        assert!(s.first_time("a", t0 + Duration::from_secs(61)));
        for k in ["b", "c", "d", "e"] {
            s.first_time(k, t0 + Duration::from_secs(62));
        }
        assert!(s.len() <= 4, "{}", s.len());
    }
}
