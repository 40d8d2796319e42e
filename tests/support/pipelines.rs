//! CodePipeline helpers shared by the e2e (cluster) and local-mode tests: scenarios of failing
//! pipelines, and what the emulator's ledger and state say about them.

use std::collections::BTreeMap;
use std::time::Duration;

use redrive_emulator::{
    ActionOutcome, EmulatorHandle, PipelineExecutionSpec, PipelineSpec, RetryOutcome, Scenario,
};

/// `Source → Build → Deploy`, seeded failed a minute ago in Deploy with `outcomes` as Deploy's
/// script (the first outcome is the failed run, each next one a retry).
pub fn failing(name: &str, outcomes: Vec<ActionOutcome>) -> PipelineSpec {
    PipelineSpec::source_build_deploy(name)
        .action_duration(Duration::from_millis(300))
        .script("Deploy", "Deploy", outcomes)
        .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60)))
}

/// `n` failures (`JobFailed`).
pub fn fails(n: usize) -> Vec<ActionOutcome> {
    vec![ActionOutcome::fail("JobFailed"); n]
}

/// `n` failures, then a success: `n - 1` retries fail, retry `n` succeeds.
pub fn fails_then_succeeds(n: usize) -> Vec<ActionOutcome> {
    let mut v = fails(n);
    v.push(ActionOutcome::succeed());
    v
}

/// `count` pipelines named `prefix-00`…, each failing `failures` times before succeeding.
pub fn fleet(prefix: &str, count: usize, failures: usize) -> (Scenario, Vec<String>) {
    let mut scenario = Scenario::new();
    let mut names = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}-{i:02}");
        scenario = scenario.with_pipeline(failing(&name, fails_then_succeeds(failures)));
        names.push(name);
    }
    (scenario, names)
}

/// Retries that reached the model, by (pipeline, stage, execution, attempt observed before).
pub fn retries(h: &EmulatorHandle) -> BTreeMap<(String, String, String, u32), u32> {
    let mut m = BTreeMap::new();
    for e in h.codepipeline_ledger() {
        if e.outcome == RetryOutcome::Retried {
            *m.entry((
                e.pipeline_name,
                e.stage_name,
                e.pipeline_execution_id,
                e.manual_stage_retry_attempt_before,
            ))
            .or_insert(0) += 1;
        }
    }
    m
}

/// Retries performed, in total.
pub fn retried(h: &EmulatorHandle) -> u32 {
    retries(h).values().sum()
}

/// Panics if one attempt was retried twice.
pub fn assert_no_duplicate_retries(h: &EmulatorHandle, context: &str) {
    let dup: Vec<_> = retries(h).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        dup.is_empty(),
        "{context}: RetryStageExecution performed twice for one attempt: {dup:#?}"
    );
}

/// Deploy's manualStageRetryAttempt.
pub fn manual_retries(h: &EmulatorHandle, pipeline: &str) -> u32 {
    h.pipeline_state(pipeline)
        .and_then(|s| s.stage("Deploy").map(|d| d.manual_stage_retry_attempt))
        .unwrap_or(0)
}

/// Deploy's status (`Succeeded`, `Failed`, …; empty if unknown).
pub fn deploy_status(h: &EmulatorHandle, pipeline: &str) -> String {
    h.pipeline_state(pipeline)
        .and_then(|s| {
            s.stage("Deploy")
                .and_then(|d| d.status.map(|st| format!("{st:?}")))
        })
        .unwrap_or_default()
}

/// Every pipeline's Deploy, with its retry count (for failure messages).
pub fn deploy_report(h: &EmulatorHandle, names: &[String]) -> Vec<(String, String, u32)> {
    names
        .iter()
        .map(|n| (n.clone(), deploy_status(h, n), manual_retries(h, n)))
        .collect()
}

/// Poll `check` every 250 ms until it returns `Some`, or `None` after `limit` (the caller asserts
/// with its own diagnostics).
pub async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Wait until every pipeline's Deploy succeeded.
pub async fn all_succeed(h: &EmulatorHandle, names: &[String], limit: Duration) -> bool {
    wait_for(limit, || async {
        names
            .iter()
            .all(|n| deploy_status(h, n) == "Succeeded")
            .then_some(())
    })
    .await
    .is_some()
}
