//! The `redrive-operator` binary as a background process (in-cluster mode) for end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running operator. Killed (SIGKILL) on drop.
pub struct OperatorProcess {
    child: Option<std::process::Child>,
    pub log: PathBuf,
    pub name: String,
}

impl OperatorProcess {
    /// `redrive-operator run ARGS` with `KUBECONFIG`, logging (JSON) to `dir/NAME.log`.
    pub fn spawn(name: &str, kubeconfig: &Path, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_redrive-operator"))
            .arg("run")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube_lease_manager=debug")
            .env("REDRIVE_LOG_FORMAT", "json")
            .env("POD_NAME", name)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_PROFILE")
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("redrive-operator starts");
        Self {
            child: Some(child),
            log,
            name: name.to_string(),
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, like a crash or an OOM kill.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait up to `limit` for the exit code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        // SAFETY-free: `kill` from coreutils sends SIGTERM.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait for the process to exit by itself; its exit code.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `check` every 250 ms until it returns `Some`, or panic after `limit` with `what` and
/// the context `on_timeout` gives.
pub async fn wait_until<T, F, Fut>(
    limit: Duration,
    what: &str,
    on_timeout: impl Fn() -> String,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                on_timeout()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
