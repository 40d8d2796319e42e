//! Shared helpers for tests that drive the `redrive-operator` binary against the emulator.
#![allow(dead_code)]

pub mod events;
pub mod flows;
pub mod pipelines;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use redrive_emulator::{EmulatorHandle, LedgerEntry};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

pub fn sm_arn(name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

pub fn exec_arn(sm: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT}:execution:{sm}:{name}")
}

/// Output of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// stderr lines starting with `error:`.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

/// Run `redrive-operator ARGS`, failing the test after `limit`.
pub async fn operator(args: &[&str], limit: Duration) -> Run {
    operator_with(args, &[], "warn", limit).await
}

/// Run `redrive-operator ARGS` with extra environment and a log filter (no AWS credentials
/// from the developer's environment leak in).
pub async fn operator_with(
    args: &[&str],
    env: &[(&str, &str)],
    log_filter: &str,
    limit: Duration,
) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_redrive-operator"));
    cmd.args(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env("RUST_LOG", log_filter)
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("redrive-operator binary starts");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("redrive-operator {args:?} did not finish within {limit:?}"))
        .expect("waiting for redrive-operator");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "the operator panicked:\n{}",
        run.stderr
    );
    run
}

/// Write `text` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write policy file");
    p
}

/// A policy document for the given state machines with extra spec YAML (indented two spaces).
pub fn policy_yaml(name: &str, state_machines: &[&str], extra_spec: &str) -> String {
    let arns: Vec<String> = state_machines
        .iter()
        .map(|s| format!("      - {}", sm_arn(s)))
        .collect();
    format!(
        "apiVersion: redrive.dev/v1alpha1\nkind: RedrivePolicy\nmetadata:\n  name: {name}\nspec:\n  stepFunctions:\n    region: {REGION}\n    stateMachines:\n{}\n{extra_spec}",
        arns.join("\n")
    )
}

/// Performed redrives per (execution, redriveCount before) in the emulator's ledger.
pub fn redrives_per_attempt(ledger: &[LedgerEntry]) -> BTreeMap<(String, u32), u32> {
    let mut m = BTreeMap::new();
    for e in ledger.iter().filter(|e| e.outcome.is_redriven()) {
        *m.entry((e.execution_arn.clone(), e.redrive_count_before))
            .or_insert(0) += 1;
    }
    m
}

/// Invariant 1: never more than one redrive per (execution, attempt).
pub fn assert_no_duplicates(handle: &EmulatorHandle) {
    let dups: Vec<_> = redrives_per_attempt(&handle.ledger())
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(dups.is_empty(), "duplicate redrives: {dups:?}");
}

/// Executions redriven at least once, according to the emulator.
pub fn redriven_executions(handle: &EmulatorHandle) -> std::collections::BTreeSet<String> {
    handle
        .ledger()
        .into_iter()
        .filter(|e| e.outcome.is_redriven())
        .map(|e| e.execution_arn)
        .collect()
}

/// The `redrive-emulator` binary (a workspace crate of its own, so Cargo sets no
/// `CARGO_BIN_EXE_` for it here): built once per test binary, next to this test's executable.
pub fn emulator_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "redrive-emulator",
                "--bin",
                "redrive-emulator",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo to build redrive-emulator");
        assert!(status.success(), "cargo build -p redrive-emulator failed");
        // tests run from <target>/<profile>/deps/; binaries live in <target>/<profile>/.
        let exe = std::env::current_exe().expect("test executable path");
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .join("redrive-emulator");
        assert!(
            bin.exists(),
            "no redrive-emulator binary at {}",
            bin.display()
        );
        bin
    })
    .clone()
}
