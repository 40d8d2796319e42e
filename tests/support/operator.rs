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
        Self::spawn_with(name, Some(kubeconfig), dir, args)
    }

    /// `redrive-operator run ARGS` without a cluster (local mode with -f).
    pub fn spawn_local(name: &str, dir: &Path, args: &[&str]) -> Self {
        Self::spawn_with(name, None, dir, args)
    }

    fn spawn_with(name: &str, kubeconfig: Option<&Path>, dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_redrive-operator"));
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        let child = cmd
            .arg("run")
            .args(args)
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

/// The admin server address an operator logged (`"admin_addr":"127.0.0.1:PORT"` in JSON logs).
pub fn admin_addr_in(logs: &str) -> Option<String> {
    let i = logs.find("\"admin_addr\":\"")? + "\"admin_addr\":\"".len();
    let rest = &logs[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// GET `http://ADDR/PATH`: (status code, body). Plain HTTP/1.1 over a TcpStream: the admin
/// server is loopback-only in tests and this avoids another HTTP client dependency.
pub async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Sum of the samples of `name` whose labels contain every `key="value"` in `labels`.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
