//! Local mode (`run -f --state-dir`), CodePipeline: the file ledger keeps "never act twice" true
//! without a cluster, across kill -9 of the process and with two processes on one state
//! directory. Checked against the emulator's ledger of RetryStageExecution calls.

#[path = "support/operator.rs"]
mod operator;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use redrive_emulator::{
    self as emulator, ActionOutcome, EmulatorConfig, EmulatorHandle, FaultConfig,
    PipelineExecutionSpec, PipelineSpec, RetryOutcome, Scenario,
};

use operator::OperatorProcess;

fn failing(name: &str, failures: usize) -> PipelineSpec {
    let mut outcomes = vec![ActionOutcome::fail("JobFailed"); failures];
    outcomes.push(ActionOutcome::succeed());
    PipelineSpec::source_build_deploy(name)
        .action_duration(Duration::from_millis(300))
        .script("Deploy", "Deploy", outcomes)
        .execution(PipelineExecutionSpec::failed_ago(Duration::from_secs(60)))
}

fn policy_file(dir: &Path, pipelines: &[String], max_redrives: u32) -> String {
    let list = pipelines
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let yaml = format!(
        "apiVersion: redrive.dev/v1alpha1
kind: RedrivePolicy
metadata:
  name: pipelines
spec:
  codePipeline:
    region: {}
    pipelines: [{list}]
  maxRedrives: {max_redrives}
  backoff: {{initial: 1s, factor: 1, max: 1s, jitter: 0}}
  pollInterval: 10s
",
        support::REGION
    );
    support::write(dir, "pipelines.yaml", &yaml)
        .display()
        .to_string()
}

fn args(emu: &EmulatorHandle, file: &str, state: &Path) -> Vec<String> {
    [
        "-f",
        file,
        "--state-dir",
        &state.display().to_string(),
        "--endpoint-url",
        &emu.endpoint,
        "--admin-addr",
        "off",
        "--aws-timeout",
        "2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(name: &str, dir: &Path, args: &[String]) -> OperatorProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    OperatorProcess::spawn_local(name, dir, &args)
}

fn duplicates(h: &EmulatorHandle) -> Vec<((String, String, String, u32), u32)> {
    let mut m: BTreeMap<(String, String, String, u32), u32> = BTreeMap::new();
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
    m.into_iter().filter(|(_, n)| *n > 1).collect()
}

fn retried(h: &EmulatorHandle) -> usize {
    h.codepipeline_ledger()
        .iter()
        .filter(|e| e.outcome == RetryOutcome::Retried)
        .count()
}

fn all_succeeded(h: &EmulatorHandle, names: &[String]) -> bool {
    names.iter().all(|n| {
        h.pipeline_state(n)
            .and_then(|s| s.stage("Deploy").and_then(|d| d.status))
            .is_some_and(|st| format!("{st:?}") == "Succeeded")
    })
}

async fn wait_all_succeeded(h: &EmulatorHandle, names: &[String], limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if all_succeeded(h, names) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    all_succeeded(h, names)
}

fn scenario(n: usize, failures: usize) -> (Scenario, Vec<String>) {
    let mut s = Scenario::new();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("local-{i:02}");
        s = s.with_pipeline(failing(&name, failures));
        names.push(name);
    }
    (s, names)
}

/// 30 kill -9 at random moments (100 with REDRIVE_LONG=1), some while RetryStageExecution is
/// held in flight: never a second retry of one attempt, and every stage retried in the end.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_loop_with_a_state_dir_never_retries_twice() {
    let kills = if std::env::var_os("REDRIVE_LONG").is_some() {
        100
    } else {
        30
    };
    let seed: u64 = std::env::var("REDRIVE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x10ca1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (scenario, names) = scenario(8, 3);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    emu.set_faults(FaultConfig {
        latency: Some(Duration::from_millis(400)),
        latency_rate: 0.5,
        only_apis: vec![
            "codepipeline:RetryStageExecution".into(),
            "codepipeline:GetPipelineState".into(),
        ],
        ..FaultConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = policy_file(dir.path(), &names, 4);
    let args = args(&emu, &file, &state);
    for i in 0..kills {
        let mut op = spawn(&format!("life-{i}"), dir.path(), &args);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
        op.kill9();
        let dup = duplicates(&emu);
        assert!(dup.is_empty(), "after kill {i} (seed {seed}): {dup:#?}");
    }
    emu.set_faults(FaultConfig::default());
    let mut last = spawn("survivor", dir.path(), &args);
    let ok = wait_all_succeeded(&emu, &names, Duration::from_secs(150)).await;
    assert!(
        ok,
        "lost work after {kills} kills (seed {seed}):\n{}",
        last.logs()
    );
    assert!(duplicates(&emu).is_empty());
    assert_eq!(
        retried(&emu),
        8 * 3,
        "three retries per pipeline, each once"
    );
    // The ledger on disk is what `plan --state-dir` reads.
    assert!(state.join("attempts.v1.jsonl").exists());
    eprintln!(
        "FIGURES kill9_loop_with_a_state_dir_never_retries_twice: kills={kills} seed={seed} retries={} duplicates=0",
        retried(&emu)
    );
    last.kill9();
}

/// Two local processes on one state directory act like two replicas: each attempt is claimed
/// by one of them.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_state_dir_never_both_retry() {
    let (scenario, names) = scenario(10, 2);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = policy_file(dir.path(), &names, 3);
    let args = args(&emu, &file, &state);
    let mut a = spawn("a", dir.path(), &args);
    let mut b = spawn("b", dir.path(), &args);
    let ok = wait_all_succeeded(&emu, &names, Duration::from_secs(90)).await;
    assert!(ok, "a:\n{}\nb:\n{}", a.logs(), b.logs());
    assert!(duplicates(&emu).is_empty(), "{:#?}", duplicates(&emu));
    assert_eq!(retried(&emu), 10 * 2);
    a.kill9();
    b.kill9();
}

/// Without --state-dir a codePipeline policy does not act (there is nothing to make a retry
/// happen once), and says why.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_state_dir_codepipeline_refuses_to_act() {
    let (scenario, names) = scenario(1, 1);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(dir.path(), &names, 3);
    let run = support::operator(
        &[
            "run",
            "--once",
            "-f",
            &file,
            "--endpoint-url",
            &emu.endpoint,
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(retried(&emu), 0);
    assert!(
        run.stderr.contains("--state-dir") || run.stdout.contains("--state-dir"),
        "{run:?}"
    );
}
