//! Local mode (`run -f --state-dir`), CodePipeline: the file ledger keeps "never act twice" true
//! without a cluster, across kill -9 of the process and with two processes on one state
//! directory. Checked against the emulator's ledger of RetryStageExecution calls.

#[path = "support/operator.rs"]
mod operator;
mod support;

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use redrive_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, FaultConfig};
use support::pipelines::*;

use operator::OperatorProcess;

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
    let (scenario, names) = fleet("local", 8, 3);
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
        assert_no_duplicate_retries(&emu, &format!("after kill {i} (seed {seed})"));
    }
    emu.set_faults(FaultConfig::default());
    let mut last = spawn("survivor", dir.path(), &args);
    let ok = all_succeed(&emu, &names, Duration::from_secs(150)).await;
    assert!(
        ok,
        "lost work after {kills} kills (seed {seed}):\n{}",
        last.logs()
    );
    assert_no_duplicate_retries(&emu, "kill loop");
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
    let (scenario, names) = fleet("local", 10, 2);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = policy_file(dir.path(), &names, 3);
    let args = args(&emu, &file, &state);
    let mut a = spawn("a", dir.path(), &args);
    let mut b = spawn("b", dir.path(), &args);
    let ok = all_succeed(&emu, &names, Duration::from_secs(90)).await;
    assert!(ok, "a:\n{}\nb:\n{}", a.logs(), b.logs());
    assert_no_duplicate_retries(&emu, "two processes");
    assert_eq!(retried(&emu), 10 * 2);
    a.kill9();
    b.kill9();
}

/// Without --state-dir a codePipeline policy does not act (there is nothing to make a retry
/// happen once), and says why.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_state_dir_codepipeline_refuses_to_act() {
    let (scenario, names) = fleet("local", 1, 1);
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

/// `plan --state-dir` reads the ledger (an attempt someone already made shows as
/// AlreadyClaimed, not Redrive) and never writes it.
#[tokio::test(flavor = "multi_thread")]
async fn plan_reads_the_state_dir_and_never_writes_it() {
    use redrive_operator::ledger::{AttemptKey, FileLedger, Ledger, NewClaim, Outcome, Phase};
    let (scenario, names) = fleet("planned", 2, 1);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = policy_file(dir.path(), &names, 3);
    // Attempt 1 of planned-00's failed Deploy was already made (by another process).
    let execution = emu
        .pipeline_state("planned-00")
        .and_then(|s| {
            s.stage("Deploy")
                .and_then(|d| d.pipeline_execution_id.clone())
        })
        .unwrap();
    let run = format!("planned-00/Deploy/{execution}");
    {
        let ledger = FileLedger::open(&state).unwrap();
        let now = jiff::Timestamp::now();
        let claim = NewClaim {
            key: AttemptKey::new("local", "codepipeline", run.clone(), 1),
            policy: "pipelines".into(),
            workflow: "planned-00".into(),
            root: run.clone(),
            holder: "another-process".into(),
            now,
            deadline: now + jiff::SignedDuration::from_secs(60),
        };
        let record = ledger.claim(claim).await.unwrap().into_record();
        let outcome = Outcome {
            code: Some("Redriven".into()),
            message: None,
            new_run_id: None,
            etag: None,
        };
        ledger
            .settle(&record, Phase::Acted, Some(outcome), now)
            .await
            .unwrap();
    }
    let log = state.join("attempts.v1.jsonl");
    let before = std::fs::read(&log).unwrap();
    let out = support::operator(
        &[
            "plan",
            "-f",
            &file,
            "-o",
            "json",
            "--state-dir",
            &state.display().to_string(),
            "--endpoint-url",
            &emu.endpoint,
        ],
        Duration::from_secs(60),
    )
    .await;
    assert!(out.ok(), "{out:?}");
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let runs = plan["policies"][0]["runs"].as_array().unwrap().clone();
    let reason_of = |pipeline: &str| {
        runs.iter()
            .find(|r| r["pipelineName"] == pipeline)
            .map(|r| (r["decision"].clone(), r["reason"].clone()))
    };
    assert_eq!(
        reason_of("planned-00"),
        Some((
            serde_json::json!("Wait"),
            serde_json::json!("AlreadyClaimed")
        )),
        "{runs:#?}"
    );
    assert_eq!(
        reason_of("planned-01"),
        Some((serde_json::json!("Skip"), serde_json::json!("DryRun"))),
        "{runs:#?}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "plan wrote the ledger"
    );
    assert_eq!(retried(&emu), 0, "plan never retries");
}

/// Bad input a file policy can carry: a role that cannot be assumed is one clear error naming
/// the policy, the API and the category (and nothing is sent unsigned); an invalid retryMode is
/// refused naming the field, and the other policy in the file still plans.
#[tokio::test(flavor = "multi_thread")]
async fn unassumable_roles_and_invalid_retry_modes_are_reported_clearly() {
    let (scenario, names) = fleet("badinput", 1, 1);
    let emu = emulator::start(EmulatorConfig::default(), scenario)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(policy_file(dir.path(), &names, 3)).unwrap();
    let with_role = good.replace("name: pipelines", "name: with-role").replace(
        "    pipelines: [",
        "    roleArn: arn:aws:iam::123456789012:role/not-assumable\n    pipelines: [",
    );
    let bad_mode = good.replace("name: pipelines", "name: bad-mode").replace(
        "    pipelines: [",
        "    retryMode: SOME_ACTIONS\n    pipelines: [",
    );
    let file = support::write(
        dir.path(),
        "all.yaml",
        &format!("{with_role}---\n{bad_mode}---\n{good}"),
    );
    let run = support::operator(
        &[
            "plan",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &emu.endpoint,
            "--aws-max-attempts",
            "1",
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let errors = run.error_lines();
    assert!(
        errors.iter().any(|l| l.contains("with-role")
            && l.contains("GetPipelineState")
            && l.contains("credentials")),
        "{errors:#?}"
    );
    // One clean line (issue 13): the service's code and message, no SDK wrapper texts and no
    // Rust debug output.
    let role_line = errors.iter().find(|l| l.contains("with-role")).unwrap();
    for noise in [
        "dispatch failure",
        "other:",
        "Error {",
        "unhandled error",
        "service error",
    ] {
        assert!(!role_line.contains(noise), "{noise:?} in {role_line}");
    }
    assert!(
        role_line.contains("could not get credentials"),
        "{role_line}"
    );
    eprintln!("MESSAGE unassumable role: {role_line}");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("bad-mode") && l.contains("retryMode")),
        "{errors:#?}"
    );
    assert!(
        run.stdout
            .contains("pipelines: 1 failed stages in 1 pipelines"),
        "the valid policy still plans: {run:?}"
    );
    assert_eq!(
        emu.stats().calls("codepipeline:GetPipelineState"),
        1,
        "only the valid policy's call reached the service"
    );
}
