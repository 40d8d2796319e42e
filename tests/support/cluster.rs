//! A real Kubernetes control plane (etcd + kube-apiserver, no kubelet, no controllers) for
//! integration tests, started from the binaries that `scripts/control-plane.sh install` builds
//! from source and caches (see docs/control-plane.md).
//!
//! ```ignore
//! #[path = "support/cluster.rs"]
//! mod cluster;
//!
//! #[tokio::test]
//! async fn talks_to_a_real_api_server() {
//!     let cluster = cluster::start().await;
//!     let client = cluster.client().await;
//!     let out = cluster.kubectl(["get", "namespaces"]);
//!     assert!(out.status.success());
//! }
//! ```
//!
//! Each `start()` gets its own temporary directory, loopback ports, certificates and etcd data, so
//! tests may start clusters in parallel. Servers are killed when the `Cluster` is dropped, and also
//! (by a watchdog in the script) when the test process dies without running destructors.
//! If the control plane cannot be built or started, `start()` panics with the reason and the
//! tail of the server logs: a test that needs a cluster fails, it is never skipped.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The script that builds the binaries and holds the one definition of the server flags.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/control-plane.sh");

/// How long `start()` / `start_apiserver()` wait for `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The cached binaries, installed once per test process.
struct Installed {
    bin_dir: PathBuf,
    paths: HashMap<String, PathBuf>,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Result<Installed, String>> = OnceLock::new();
    match INSTALLED.get_or_init(install) {
        Ok(installed) => installed,
        Err(reason) => panic!("{reason}"),
    }
}

/// Runs `control-plane.sh install` (a no-op taking milliseconds once the binaries are cached; a
/// cold build takes many minutes). Its progress goes straight to stderr, so a long build is
/// visible; the last lines are repeated in the error.
fn install() -> Result<Installed, String> {
    let mut child = Command::new("bash")
        .arg(SCRIPT)
        .arg("install")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("control plane: cannot run `bash {SCRIPT} install`: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let forward = std::thread::spawn(move || {
        let mut tail = VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            tail.push_back(line);
            if tail.len() > 60 {
                tail.pop_front();
            }
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("control plane: waiting for `{SCRIPT} install` failed: {e}"))?;
    let tail = forward.join().unwrap_or_default();
    if !output.status.success() {
        return Err(format!(
            "control plane: `{SCRIPT} install` failed ({}), so no Kubernetes API server can be \
             started.\n--- last lines of its output ---\n{tail}",
            output.status
        ));
    }
    let bin_dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let paths_out = Command::new("bash")
        .arg(SCRIPT)
        .arg("paths")
        .output()
        .map_err(|e| format!("control plane: cannot run `{SCRIPT} paths`: {e}"))?;
    if !paths_out.status.success() {
        return Err(format!(
            "control plane: `{SCRIPT} paths` failed: {}",
            String::from_utf8_lossy(&paths_out.stderr)
        ));
    }
    let paths: HashMap<String, PathBuf> = String::from_utf8_lossy(&paths_out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(name, path)| (name.to_string(), PathBuf::from(path)))
        .collect();
    for (name, path) in &paths {
        if !path.is_file() {
            return Err(format!(
                "control plane: {name} is missing at {} after install",
                path.display()
            ));
        }
    }
    Ok(Installed { bin_dir, paths })
}

/// Path of a pinned binary: `etcd`, `kube-apiserver`, `kubectl` or `helm` (installs on first use).
pub fn bin(name: &str) -> PathBuf {
    match installed().paths.get(name) {
        Some(path) => path.clone(),
        None => panic!(
            "control plane: no binary named {name:?} (known: {:?})",
            installed().paths.keys().collect::<Vec<_>>()
        ),
    }
}

/// The cache directory holding the pinned binaries.
pub fn bin_dir() -> PathBuf {
    installed().bin_dir.clone()
}

/// A running etcd + kube-apiserver. Dropping it kills both and removes its directory.
pub struct Cluster {
    /// `kubeconfig` for kubectl, helm or `kube::Config` (admin token, CA data embedded).
    pub kubeconfig_path: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server_url: String,
    /// Bearer token of a static admin user in group `system:masters`.
    pub token: String,
    /// The CA that signed the API server's serving certificate (PEM).
    pub ca_cert_path: PathBuf,
    pub apiserver_port: u16,
    pub etcd_port: u16,
    etcd: Mutex<Option<Child>>,
    apiserver: Mutex<Option<Child>>,
    options: Options,
    dir: tempfile::TempDir,
}

/// Starts a fresh control plane and waits until the API server is ready. Panics (never skips)
/// with the reason and the server logs if that is not possible.
pub async fn start() -> Cluster {
    start_with(Options::default()).await
}

/// Opt-in extras for `start_with`. `Options::default()` is exactly `start()`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Record every API request in an audit log (`--audit-policy-file`, `--audit-log-path`):
    /// JSON lines at level `Metadata` (user, verb, objectRef, response code; no bodies), read
    /// with `Cluster::audit_events()`. Kept across `stop_apiserver`/`start_apiserver`.
    pub audit: bool,
}

/// The audit policy of `Options::audit`: every request, metadata only, once it completed
/// (or started streaming, for watches).
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
";

/// `start()`, then the project's two CRDs (RedrivePolicy, RedriveAttempt) installed from
/// `crds/` and Established.
pub async fn start_with_crds() -> Cluster {
    let c = start().await;
    for crd in [
        "redrivepolicies.redrive.dev.yaml",
        "redriveattempts.redrive.dev.yaml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(crd);
        c.kubectl_ok([
            OsStr::new("apply"),
            OsStr::new("--server-side"),
            OsStr::new("-f"),
            path.as_os_str(),
        ]);
    }
    c.kubectl_ok([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/redrivepolicies.redrive.dev",
        "crd/redriveattempts.redrive.dev",
    ]);
    c
}

/// Like `start()`, with the extras `options` asks for.
pub async fn start_with(options: Options) -> Cluster {
    installed();
    let mut last = String::new();
    for attempt in 1..=3 {
        match try_start(&options).await {
            Ok(cluster) => return cluster,
            // Another process may grab a port between our probe and the server's bind.
            Err(err) if err.contains("address already in use") && attempt < 3 => last = err,
            Err(err) => panic!("{err}"),
        }
    }
    panic!("{last}")
}

fn free_ports<const N: usize>() -> [u16; N] {
    // Hold all listeners at once so the ports are distinct.
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().expect("local addr").port();
    }
    ports
}

async fn try_start(options: &Options) -> Result<Cluster, String> {
    let dir = tempfile::Builder::new()
        .prefix("redrive-control-plane-")
        .tempdir()
        .map_err(|e| format!("control plane: cannot create a temp dir: {e}"))?;
    let [etcd_port, peer_port, apiserver_port] = free_ports::<3>();
    let init = Command::new("bash")
        .arg(SCRIPT)
        .arg("init")
        .arg(dir.path())
        .args([etcd_port, peer_port, apiserver_port].map(|p| p.to_string()))
        .output()
        .map_err(|e| format!("control plane: cannot run `{SCRIPT} init`: {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "control plane: `{SCRIPT} init` failed (certificates, keys, token, kubeconfig):\n{}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let token = std::fs::read_to_string(dir.path().join("token"))
        .map_err(|e| format!("control plane: no token written by init: {e}"))?
        .trim()
        .to_string();
    let etcd = spawn_server(dir.path(), "etcd")?;
    let cluster = Cluster {
        kubeconfig_path: dir.path().join("kubeconfig"),
        server_url: format!("https://127.0.0.1:{apiserver_port}"),
        token,
        ca_cert_path: dir.path().join("pki/ca.crt"),
        apiserver_port,
        etcd_port,
        etcd: Mutex::new(Some(etcd)),
        apiserver: Mutex::new(None),
        options: options.clone(),
        dir,
    };
    if options.audit {
        prepare_audit(cluster.dir())?;
    }
    let apiserver = cluster.spawn_apiserver()?;
    *cluster.apiserver.lock().unwrap() = Some(apiserver);
    cluster.wait_ready().await?;
    // The bootstrap controller creates `default` shortly after /readyz first passes.
    cluster
        .wait_until("namespace `default` exists", || {
            cluster
                .kubectl(["get", "namespace", "default"])
                .status
                .success()
        })
        .await?;
    Ok(cluster)
}

/// Starts `control-plane.sh run-etcd|run-apiserver DIR`, which execs the server (so the child *is*
/// the server), logging to `DIR/<what>.log` (appended across restarts).
fn spawn_server(dir: &Path, what: &str) -> Result<Child, String> {
    spawn_server_env(dir, what, &[])
}

/// `spawn_server` with extra environment variables for the script.
fn spawn_server_env(dir: &Path, what: &str, env: &[(&str, &OsStr)]) -> Result<Child, String> {
    let log_path = dir.join(format!("{what}.log"));
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("control plane: cannot open {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("control plane: cannot clone a log handle: {e}"))?;
    Command::new("bash")
        .arg(SCRIPT)
        .arg(format!("run-{what}"))
        .arg(dir)
        .env("REDRIVE_CP_WATCH_PID", std::process::id().to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("control plane: cannot start {what}: {e}"))
}

/// Directory (under the cluster dir) standing in for the binary cache when auditing.
const AUDIT_CACHE: &str = "audit-cache";

/// Sets up `Options::audit`: the policy file, and a stand-in cache directory whose
/// `bin/kube-apiserver-<version>` is a two-line wrapper that execs the real cached binary with
/// the audit flags appended. `run-apiserver` resolves the binary through `REDRIVE_CACHE`, so
/// pointing that variable at this directory adds the flags while every other flag still comes
/// from the one definition in scripts/control-plane.sh. (`exec` keeps the PID, so the script's
/// watchdog and `stop_apiserver` work unchanged.)
fn prepare_audit(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let real = bin("kube-apiserver");
    let file_name = real
        .file_name()
        .ok_or_else(|| format!("control plane: odd binary path {}", real.display()))?;
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY)
        .map_err(|e| format!("control plane: cannot write {}: {e}", policy.display()))?;
    let bin_dir = dir.join(AUDIT_CACHE).join("bin");
    std::fs::create_dir_all(&bin_dir)
        .map_err(|e| format!("control plane: cannot create {}: {e}", bin_dir.display()))?;
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let wrapper = bin_dir.join(file_name);
    let script = format!(
        "#!/bin/sh\nexec {} \"$@\" --audit-policy-file={} --audit-log-path={} --audit-log-format=json --audit-log-mode=blocking\n",
        quote(&real),
        quote(&policy),
        quote(&dir.join("audit.log")),
    );
    std::fs::write(&wrapper, script)
        .map_err(|e| format!("control plane: cannot write {}: {e}", wrapper.display()))?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("control plane: cannot chmod {}: {e}", wrapper.display()))
}

fn kill_and_wait(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Last `n` lines of a file (or a note that it cannot be read).
fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

impl Cluster {
    /// The cluster's directory: `kubeconfig`, `pki/`, `etcd/` data, `etcd.log`, `apiserver.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `control-plane.sh run-apiserver DIR`, with the audit flags when `Options::audit` is on.
    fn spawn_apiserver(&self) -> Result<Child, String> {
        if self.options.audit {
            let cache = self.dir().join(AUDIT_CACHE);
            spawn_server_env(
                self.dir(),
                "apiserver",
                &[("REDRIVE_CACHE", cache.as_os_str())],
            )
        } else {
            spawn_server(self.dir(), "apiserver")
        }
    }

    /// The audit log (`Options::audit`): one JSON event per line.
    pub fn audit_log_path(&self) -> PathBuf {
        self.dir().join("audit.log")
    }

    /// Every complete event of the audit log so far (empty without `Options::audit`). See
    /// https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/ for the fields:
    /// `user.username`, `verb`, `objectRef.{apiGroup,resource,subresource,namespace,name}`,
    /// `requestURI`, `responseStatus.code`, `stage`, `auditID`.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    pub fn apiserver_log(&self) -> PathBuf {
        self.dir().join("apiserver.log")
    }

    pub fn etcd_log(&self) -> PathBuf {
        self.dir().join("etcd.log")
    }

    /// The last lines of both server logs, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "--- {} (last 40 lines) ---\n{}\n--- {} (last 20 lines) ---\n{}",
            self.apiserver_log().display(),
            tail(&self.apiserver_log(), 40),
            self.etcd_log().display(),
            tail(&self.etcd_log(), 20),
        )
    }

    /// A `kube::Config` from the cluster's kubeconfig (CA verified, bearer token).
    pub async fn kube_config(&self) -> kube::Config {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig_path)
            .unwrap_or_else(|e| panic!("control plane: cannot read the kubeconfig: {e}"));
        kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("control plane: invalid kubeconfig: {e}"))
    }

    /// A client authenticated as the admin (group `system:masters`).
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.kube_config().await)
            .unwrap_or_else(|e| panic!("control plane: cannot build a kube::Client: {e}"))
    }

    /// Runs the pinned kubectl against this cluster (blocking).
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_with_stdin(args, "")
    }

    /// Runs kubectl with `stdin` as its input, e.g. `apply -f -`.
    pub fn kubectl_with_stdin<I, S>(&self, args: I, stdin: &str) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin("kubectl"));
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig_path.display()))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig_path);
        run_with_stdin(cmd, stdin, "kubectl")
    }

    /// Like `kubectl`, but panics with stderr (and the server log tail) unless it succeeds;
    /// returns stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.kubectl(&args);
        if !out.status.success() {
            panic!(
                "kubectl {args:?} failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply --server-side --validate=strict` of one JSON document; panics with
    /// kubectl's stderr unless it succeeds.
    pub fn apply_json(&self, doc: &serde_json::Value) {
        let out = self.kubectl_with_stdin(
            ["apply", "--server-side", "--validate=strict", "-f", "-"],
            &doc.to_string(),
        );
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs the pinned helm against this cluster, with its cache/config/data under the
    /// cluster's directory (blocking).
    pub fn helm<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let home = self.dir().join("helm");
        let mut cmd = Command::new(bin("helm"));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig_path)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        run_with_stdin(cmd, "", "helm")
    }

    /// Kills the API server (SIGKILL: like a crash). etcd and its data stay; requests fail
    /// with connection refused until `start_apiserver`.
    pub fn stop_apiserver(&self) {
        kill_and_wait(&mut self.apiserver.lock().unwrap());
    }

    /// (Re)starts the API server on the same port and waits until it is ready again. Panics
    /// with the log tail if it does not come up.
    pub async fn start_apiserver(&self) {
        {
            let mut slot = self.apiserver.lock().unwrap();
            if slot.is_some() {
                return;
            }
            match self.spawn_apiserver() {
                Ok(child) => *slot = Some(child),
                Err(err) => panic!("{err}"),
            }
        }
        if let Err(err) = self.wait_ready().await {
            panic!("{err}");
        }
    }

    /// Whether the API server process is running (not whether it is ready).
    pub fn apiserver_running(&self) -> bool {
        running(&self.apiserver)
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let kubectl = bin("kubectl");
        let kubeconfig = format!("--kubeconfig={}", self.kubeconfig_path.display());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for (what, child) in [("etcd", &self.etcd), ("kube-apiserver", &self.apiserver)] {
                if !running(child) {
                    return Err(format!(
                        "control plane: {what} exited during start-up\n{}",
                        self.log_tail()
                    ));
                }
            }
            let probe = tokio::process::Command::new(&kubectl)
                .arg(&kubeconfig)
                .args(["get", "--raw=/readyz", "--request-timeout=5s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status();
            if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(10), probe).await
                && status.success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "control plane: kube-apiserver at {} was not ready within {READY_TIMEOUT:?}\n{}",
                    self.server_url,
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn wait_until(&self, what: &str, mut ok: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ok() {
            if Instant::now() > deadline {
                return Err(format!(
                    "control plane: timed out waiting until {what}\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}

fn running(slot: &Mutex<Option<Child>>) -> bool {
    match slot.lock().unwrap().as_mut() {
        Some(child) => matches!(child.try_wait(), Ok(None)),
        None => false,
    }
}

fn run_with_stdin(mut cmd: Command, stdin: &str, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let text = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {what} failed: {e}"));
    let _ = writer.join();
    out
}

impl Drop for Cluster {
    fn drop(&mut self) {
        kill_and_wait(&mut self.apiserver.lock().unwrap_or_else(|e| e.into_inner()));
        kill_and_wait(&mut self.etcd.lock().unwrap_or_else(|e| e.into_inner()));
        if std::thread::panicking() {
            // Shown with the failing test's output.
            eprintln!(
                "control plane at {} (dir {}):\n{}",
                self.server_url,
                self.dir().display(),
                self.log_tail()
            );
        }
        if std::env::var_os("REDRIVE_KEEP_CLUSTER_DIR").is_some() {
            let path = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("placeholder temp dir"),
            )
            .keep();
            eprintln!("control plane dir kept: {}", path.display());
        }
    }
}
