//! The CodePipeline drain: many pipelines with a failed stage, retried by the operator's local
//! loop with the attempt ledger (RetryStageExecution has no client token), under the emulator's
//! CodePipeline buckets (CodePipeline publishes no TPS quotas: the preset is the emulator's
//! choice, docs/benchmark.md).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::Quota;
use super::check;
use super::data;
use super::drain::{self, Calls, DrainData, DrainResult, Measured};
use super::quota::{self, Bound};
use redrive_emulator::{
    self as emulator, ActionOutcome, EmulatorHandle, PipelineExecutionSpec, PipelineSpec, Scenario,
};
use redrive_operator::ledger::MemoryLedger;
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::Context;

pub const REGION: &str = "us-east-1";
/// The stage the policies retry; failures in other stages are excluded by `codePipeline.stages`.
pub const STAGE: &str = "Deploy";
/// Pipelines per policy (`codePipeline.pipelines` holds at most 100 names).
pub const PER_POLICY: u32 = 100;

/// What a pipeline's seeded execution did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Failed in Deploy a minute ago: eligible, once.
    FailedDeploy,
    /// Failed in Build: excluded by the policy's `stages: [Deploy]`.
    FailedBuild,
    /// Succeeded.
    Succeeded,
}

/// `n` eligible pipelines plus `n` ineligible ones (half failed in a stage the policies do not
/// select, half succeeded), interleaved, in policies of [`PER_POLICY`].
#[derive(Clone, Debug)]
pub struct Pipelines {
    pub scenario: Scenario,
    pub names: Vec<String>,
    /// Eligible runs as `pipeline/Deploy`.
    pub eligible: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PipelineSummary {
    pub pipelines: u64,
    pub eligible: u64,
    pub failed_in_unselected_stage: u64,
    pub succeeded: u64,
    pub policies: u64,
}

fn kind_of(i: u32) -> Kind {
    match i % 4 {
        0 | 2 => Kind::FailedDeploy,
        1 => Kind::FailedBuild,
        _ => Kind::Succeeded,
    }
}

pub fn pipelines(n: u32) -> Pipelines {
    let mut scenario = Scenario::new();
    let mut names = Vec::new();
    let mut eligible = Vec::new();
    for i in 0..2 * n {
        let name = format!("bench-cp-{i:05}");
        let base = PipelineSpec::source_build_deploy(&name).action_duration(Duration::from_secs(1));
        let fail_then_succeed = [ActionOutcome::fail("JobFailed"), ActionOutcome::succeed()];
        let spec = match kind_of(i) {
            Kind::FailedDeploy => {
                eligible.push(format!("{name}/{STAGE}"));
                base.script(STAGE, STAGE, fail_then_succeed)
                    .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60)))
            }
            Kind::FailedBuild => base
                .script("Build", "Build", fail_then_succeed)
                .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60))),
            Kind::Succeeded => {
                base.execution(PipelineExecutionSpec::started_ago(Duration::from_secs(600)))
            }
        };
        scenario = scenario.with_pipeline(spec);
        names.push(name);
    }
    Pipelines {
        scenario,
        names,
        eligible,
    }
}

impl Pipelines {
    pub fn summary(&self) -> PipelineSummary {
        let count = |k: Kind| {
            (0..self.names.len() as u32)
                .filter(|i| kind_of(*i) == k)
                .count()
        };
        PipelineSummary {
            pipelines: self.names.len() as u64,
            eligible: self.eligible.len() as u64,
            failed_in_unselected_stage: count(Kind::FailedBuild) as u64,
            succeeded: count(Kind::Succeeded) as u64,
            policies: self.policies().len() as u64,
        }
    }

    /// One policy per [`PER_POLICY`] pipelines, retrying Deploy only.
    pub fn policies(&self) -> Vec<Policy> {
        self.names
            .chunks(PER_POLICY as usize)
            .enumerate()
            .map(|(i, chunk)| {
                data::policy(
                    &format!("pipelines-{i:03}"),
                    json!({
                        "codePipeline": {"region": REGION, "pipelines": chunk, "stages": [STAGE]},
                        "maxRedrives": data::MAX_REDRIVES,
                        "pollInterval": "10s",
                    }),
                )
            })
            .collect()
    }

    /// The calls any retrier needs: one GetPipelineState per pipeline (nothing cheaper tells a
    /// failed stage) and one RetryStageExecution per eligible stage. The operator reads the
    /// stage again after claiming each attempt (its protocol, `docs/design.md` §7), one more
    /// GetPipelineState per retry: [`Pipelines::protocol_bound`].
    pub fn bound(&self, q: Quota) -> Bound {
        self.bound_with(q, 0)
    }

    /// [`Pipelines::bound`] with the operator's re-read after each claim.
    pub fn protocol_bound(&self, q: Quota) -> Bound {
        self.bound_with(q, self.eligible.len() as u64)
    }

    fn bound_with(&self, q: Quota, rereads: u64) -> Bound {
        let n = self.eligible.len() as u64;
        quota::bound(
            q.preset,
            q.scale,
            &[
                (
                    "codepipeline:GetPipelineState",
                    self.names.len() as u64 + rereads,
                ),
                ("codepipeline:RetryStageExecution", n),
            ],
            n,
        )
    }
}

/// Result of the CodePipeline drain, in the drain table's shape, with the bound of the
/// operator's own protocol beside it.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineResult {
    pub drain: DrainResult,
    pub protocol_bound: Bound,
    pub ratio_to_protocol_bound: Option<f64>,
}

/// The operator's local loop on the pipelines' policies, with an in-memory attempt ledger,
/// until every eligible stage was retried.
pub async fn run(name: &str, q: Quota, p: &Pipelines) -> Result<PipelineResult, String> {
    let handle = emulator::start(drain::emulator_config(REGION, q), p.scenario.clone())
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    let ctx = Arc::new(
        Context::new(drain::settings_for(&handle)).with_ledger(Arc::new(MemoryLedger::new())),
    );
    let n = p.eligible.len() as u64;
    let protocol_bound = p.protocol_bound(q);
    let timeout = Duration::from_secs_f64(3.0 * protocol_bound.time_min_s + 60.0);
    let t0 = handle.now();
    let (totals, timed_out) = drain::operate(
        ctx,
        p.policies(),
        || handle.stats().manual_stage_retries,
        n,
        timeout,
        drain::GRACE,
    )
    .await;
    let mut r = finish(name, q, p, protocol_bound, &handle, t0, timed_out);
    r.drain.polls = Some(totals.polls);
    r.drain.poll_errors = Some(totals.errors + totals.failed_polls);
    handle.shutdown().await;
    Ok(r)
}

fn finish(
    name: &str,
    q: Quota,
    p: &Pipelines,
    protocol_bound: Bound,
    handle: &EmulatorHandle,
    t0: jiff::Timestamp,
    timed_out: bool,
) -> PipelineResult {
    // Every performed retry as (pipeline/stage, manual retries before it, time).
    let keys: Vec<(String, u32, jiff::Timestamp)> = handle
        .codepipeline_ledger()
        .iter()
        .filter(|e| e.outcome.is_retried())
        .map(|e| {
            let run = format!("{}/{}", e.pipeline_name, e.stage_name);
            (run, e.manual_stage_retry_attempt_before, e.at)
        })
        .collect();
    let correctness = check::tally(
        keys.iter().map(|(k, before, _)| (k.as_str(), *before)),
        &p.eligible,
    );
    let firsts = check::first_acts(keys.iter().map(|(k, _, at)| (k.as_str(), *at)), &p.eligible);
    let drain = DrainResult::from_measured(Measured {
        name,
        runner: "operator",
        error_filter: false,
        region: REGION,
        data: DrainData::Pipelines(p.summary()),
        firsts: firsts.into_values().collect(),
        eligible: p.eligible.len() as u64,
        correctness,
        calls: Calls::from_stats(&handle.stats()),
        bound: p.bound(q),
        t0,
        timed_out,
    });
    PipelineResult {
        ratio_to_protocol_bound: (protocol_bound.time_min_s > 0.0)
            .then(|| protocol_bound.time_min_s / drain.wall_s),
        protocol_bound,
        drain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_emulator::QuotaPreset;

    #[test]
    fn data_and_bounds_add_up() {
        let p = pipelines(500);
        let s = p.summary();
        assert_eq!((s.pipelines, s.eligible), (1000, 500));
        assert_eq!((s.failed_in_unselected_stage, s.succeeded), (250, 250));
        assert_eq!(s.policies, 10);
        assert!(
            p.policies()
                .iter()
                .all(|x| x.code_pipeline().is_some_and(|c| c.pipelines.len() <= 100))
        );
        let q = Quota {
            preset: QuotaPreset::UsEast1,
            scale: 1.0,
        };
        // GetPipelineState (1,000 − 100) ÷ 10/s = 90 s; RetryStageExecution (500 − 50) ÷ 5/s = 90 s.
        let b = p.bound(q);
        assert!((b.time_min_s - 90.0).abs() < 1e-9, "{b:?}");
        // With the re-read after each claim: (1,500 − 100) ÷ 10/s = 140 s.
        let pb = p.protocol_bound(q);
        assert!((pb.time_min_s - 140.0).abs() < 1e-9, "{pb:?}");
        assert_eq!(pb.binding_api, "codepipeline:GetPipelineState");
    }
}
