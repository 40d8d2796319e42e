//! Phase 4: many policies. The emulator runs in a child process (this same binary, hidden
//! `serve-emulator` mode) so that this process's peak RSS and CPU time are the operator's.
//!
//! The same run serves the fleet phase: more policies under a quota share, with a pollInterval
//! shorter than the cycle, to show the share holds per API and the cycle stays fair.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, watch};

use super::check::{self, Correctness};
use super::data;
use super::drain::{Calls, emulator_config};
use super::quota::{self, Bound};
use super::sys;
use super::{Quota, ScaleSize};
use redrive_emulator::{self as emulator, EmulatorHandle, LedgerEntry, QuotaPreset, Stats};
use redrive_operator::local::{self, PollObserver};
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};
use redrive_operator::targets::WorkflowIssue;

/// The region whose published quotas are the emulator preset's (the operator caps a share of
/// the region's buckets, the emulator throttles with the preset's).
pub fn region_for(preset: QuotaPreset) -> &'static str {
    match preset {
        QuotaPreset::OtherRegions => "ca-central-1",
        _ => "us-east-1",
    }
}

/// One run of the phase.
#[derive(Clone, Copy, Debug)]
pub struct ScaleRun {
    pub quota: Quota,
    pub size: ScaleSize,
    /// The operator's `--aws-quota-share` (1: no cap).
    pub share: f64,
    pub poll_interval: Duration,
    pub timeout: Duration,
}

/// Calls of one API in the cycle against what the share allows in that time.
#[derive(Clone, Debug, Serialize)]
pub struct ApiRate {
    pub api: String,
    pub calls: u64,
    pub per_s: f64,
    /// `(calls − share × burst) / cycle`: the rate once the share of the burst is spent, the
    /// one to compare with `cap_per_s`.
    pub per_s_after_burst: f64,
    /// share × refill per second (None: no published bucket).
    pub cap_per_s: Option<f64>,
    /// share × (burst + refill × cycle).
    pub allowed: Option<f64>,
    pub within_cap: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScaleResult {
    pub how: &'static str,
    pub policies: u64,
    pub state_machines: u64,
    pub executions: u64,
    pub eligible: u64,
    pub quota_scale: f64,
    pub quota_share: f64,
    pub poll_interval_s: f64,
    /// `separate process` (RSS and CPU below are the operator's only) or `in-process`.
    pub emulator: &'static str,
    pub rss_before_kib: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    /// Time until every policy had one poll that listed all its state machines and redrove
    /// everything eligible without an error (pollInterval 10 s, all policies start together).
    pub cycle_s: f64,
    pub cpu_s: f64,
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    /// Polls started until then (> policies when throttling made polls incomplete).
    pub polls: u64,
    pub incomplete_polls: u64,
    /// Most polls one policy had until the cycle ended (fairness: with a pollInterval shorter
    /// than the cycle, early policies must not poll again and again while late ones wait).
    pub max_polls_of_one_policy: u64,
    /// Observed call rate of every API vs the share's cap.
    pub rates: Vec<ApiRate>,
    /// Every API within share × (burst + refill × cycle).
    pub within_share: bool,
    pub bound: Bound,
    /// cycle ≤ 1.1 × time_min.
    pub within_bound_plus_10pct: bool,
    /// AWS calls until the end of the cycle.
    pub calls: Calls,
    pub correctness: Correctness,
    pub timed_out: bool,
}

pub const HOW: &str = "1 policy per 5 state machines, local::run (pollInterval 1m, longer than a cycle) in this \
process, emulator in a child process; cycle = until every policy had one complete poll (all \
machines listed, every redrive answered); CPU from getrusage(RUSAGE_SELF), peak RSS = VmHWM";

/// How to start the emulator child: program and leading arguments.
#[derive(Clone, Debug)]
pub struct ChildCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Arguments of the child, after [`ChildCommand::args`].
pub fn child_args(q: Quota, size: ScaleSize) -> Vec<String> {
    vec![
        format!("--quota={}", q.preset),
        format!("--quota-scale={}", q.scale),
        format!("--policies={}", size.policies),
        format!("--per-policy={}", size.machines_per_policy),
        format!("--executions={}", size.executions),
    ]
}

/// The child: serve the scale scenario, print `listening on URL`, stop when stdin closes.
pub async fn serve_child(q: Quota, size: ScaleSize) -> Result<(), String> {
    let region = region_for(q.preset);
    let scenario = data::scale_scenario(
        region,
        size.policies,
        size.machines_per_policy,
        size.executions,
    );
    let handle = emulator::start(emulator_config(region, q), scenario)
        .await
        .map_err(|e| format!("emulator: {e}"))?;
    println!("listening on {}", handle.endpoint);
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    handle.shutdown().await;
    Ok(())
}

struct CycleObserver {
    complete: Mutex<HashSet<String>>,
    /// Polls per policy, until the cycle ended.
    per_policy: Mutex<HashMap<String, u64>>,
    polls: AtomicU64,
    incomplete: AtomicU64,
    want: usize,
    done: Notify,
}

impl PollObserver for CycleObserver {
    fn observe(&self, policy: &Policy, result: &Result<PollReport, PollError>, _: &PolicyState) {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.complete.lock().expect("observer lock").len() < self.want {
            *self
                .per_policy
                .lock()
                .expect("observer lock")
                .entry(policy.id.name.clone())
                .or_default() += 1;
        }
        let complete = match result {
            Ok(r) => {
                !r.issues
                    .iter()
                    .any(|(_, i)| matches!(i, WorkflowIssue::Failed(_)))
                    && r.actions.iter().all(|a| a.result.is_ok())
            }
            Err(_) => false,
        };
        if !complete {
            self.incomplete.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let mut set = self.complete.lock().expect("observer lock");
        set.insert(policy.id.name.clone());
        if set.len() >= self.want {
            self.done.notify_one();
        }
    }
}

enum Emu {
    Child {
        child: tokio::process::Child,
        endpoint: String,
    },
    InProcess(EmulatorHandle),
}

impl Emu {
    fn endpoint(&self) -> String {
        match self {
            Emu::Child { endpoint, .. } => endpoint.clone(),
            Emu::InProcess(h) => h.endpoint.clone(),
        }
    }

    async fn stats(&self) -> Result<Stats, String> {
        match self {
            Emu::InProcess(h) => Ok(h.stats()),
            Emu::Child { endpoint, .. } => {
                let stats = http_get(endpoint, "/_emulator/stats").await?;
                serde_json::from_slice(&stats).map_err(|e| format!("stats: {e}"))
            }
        }
    }

    async fn ledger(&self) -> Result<Vec<LedgerEntry>, String> {
        match self {
            Emu::InProcess(h) => Ok(h.ledger()),
            Emu::Child { endpoint, .. } => {
                let ledger = http_get(endpoint, "/_emulator/ledger").await?;
                serde_json::from_slice(&ledger).map_err(|e| format!("ledger: {e}"))
            }
        }
    }

    async fn stop(self) {
        match self {
            Emu::InProcess(h) => h.shutdown().await,
            Emu::Child { mut child, .. } => {
                // Closing stdin asks the child to stop; kill it if it does not.
                drop(child.stdin.take());
                if tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.kill().await;
                }
            }
        }
    }
}

async fn start_child(cmd: &ChildCommand, q: Quota, size: ScaleSize) -> Result<Emu, String> {
    let mut child = tokio::process::Command::new(&cmd.program)
        .args(&cmd.args)
        .args(child_args(q, size))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.program.display()))?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .map_err(|_| "emulator child did not start within 120 s".to_string())?
        .map_err(|e| format!("emulator child: {e}"))?
        .ok_or("emulator child exited before listening")?;
    let endpoint = first
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("unexpected first line from the emulator child: {first}"))?
        .to_string();
    Ok(Emu::Child { child, endpoint })
}

/// `GET path` with HTTP/1.1 (Connection: close); the body, de-chunked if needed.
pub async fn http_get(endpoint: &str, path: &str) -> Result<Vec<u8>, String> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(host)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| format!("GET {path}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP header"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    if !head.starts_with("http/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    let body = &buf[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_hex = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_hex.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let start = eol + 2;
        let chunk = rest.get(start..start + size).ok_or("short chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(start + size + 2..).ok_or("short chunk")?;
    }
}

pub async fn run(run: ScaleRun, child: Option<&ChildCommand>) -> Result<ScaleResult, String> {
    let ScaleRun { quota: q, size, .. } = run;
    let region = region_for(q.preset);
    let emu = match child {
        Some(cmd) => start_child(cmd, q, size).await?,
        None => Emu::InProcess(
            emulator::start(
                emulator_config(region, q),
                data::scale_scenario(
                    region,
                    size.policies,
                    size.machines_per_policy,
                    size.executions,
                ),
            )
            .await
            .map_err(|e| format!("emulator: {e}"))?,
        ),
    };
    // What an earlier run in this process freed is not this run's memory.
    sys::release_freed_memory();
    sys::reset_peak_rss();
    let rss_before = sys::rss_kib();
    let mut policies = data::scale_policies(region, size.policies, size.machines_per_policy);
    for p in &mut policies {
        p.poll_interval = run.poll_interval;
    }
    let eligible = data::scale_eligible(
        region,
        size.policies,
        size.machines_per_policy,
        size.executions,
    );
    let machines = u64::from(size.policies * size.machines_per_policy);
    let bound = quota::bound_shared(
        q.preset,
        q.scale,
        run.share,
        &[
            ("ListExecutions", machines),
            ("RedriveExecution", eligible.len() as u64),
        ],
        eligible.len() as u64,
    );
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(emu.endpoint());
    settings.aws.quota_share = run.share;
    settings.aws.quota_scale = q.scale;
    let ctx = Arc::new(Context::new(settings));
    let observer = Arc::new(CycleObserver {
        complete: Mutex::new(HashSet::new()),
        per_policy: Mutex::new(HashMap::new()),
        polls: AtomicU64::new(0),
        incomplete: AtomicU64::new(0),
        want: policies.len(),
        done: Notify::new(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let cpu0 = sys::cpu_time();
    let started = Instant::now();
    let poll_loop = local::run(ctx, policies, false, false, observer.clone(), stop_rx);
    let watch = async {
        let timed_out = tokio::time::timeout(run.timeout, observer.done.notified())
            .await
            .is_err();
        let measured = (
            started.elapsed().as_secs_f64(),
            sys::cpu_time().since(&cpu0),
            sys::peak_rss_kib(),
        );
        // The calls of the cycle: polls go on until the loop has seen `stop`.
        let at_cycle_end = emu.stats().await;
        let _ = stop_tx.send(true);
        (timed_out, measured, at_cycle_end)
    };
    // Polls queued behind the share after the cycle are not measured: stop waiting for them.
    let (_, (timed_out, (cycle_s, cpu, peak), at_cycle_end)) =
        super::drain::drive(poll_loop, watch, Duration::from_secs(2)).await;
    let ledger = emu.ledger().await?;
    let stats = at_cycle_end?;
    let in_process = matches!(emu, Emu::InProcess(_));
    emu.stop().await;
    let correctness = check::check(&ledger, &eligible);
    let calls = Calls::from_stats(&stats);
    let rates = rates(q, run.share, &calls, cycle_s);
    let max_polls_of_one_policy = observer
        .per_policy
        .lock()
        .expect("observer lock")
        .values()
        .copied()
        .max()
        .unwrap_or(0);
    Ok(ScaleResult {
        how: HOW,
        policies: u64::from(size.policies),
        state_machines: machines,
        executions: u64::from(size.executions),
        eligible: eligible.len() as u64,
        quota_scale: q.scale,
        quota_share: run.share,
        poll_interval_s: run.poll_interval.as_secs_f64(),
        emulator: if in_process {
            "in-process"
        } else {
            "separate process"
        },
        rss_before_kib: rss_before,
        peak_rss_kib: peak,
        cycle_s,
        cpu_s: cpu.total().as_secs_f64(),
        cpu_user_s: cpu.user.as_secs_f64(),
        cpu_system_s: cpu.system.as_secs_f64(),
        polls: observer.polls.load(Ordering::SeqCst),
        incomplete_polls: observer.incomplete.load(Ordering::SeqCst),
        max_polls_of_one_policy,
        within_share: rates.iter().all(|r| r.within_cap),
        rates,
        within_bound_plus_10pct: !timed_out && cycle_s <= 1.1 * bound.time_min_s.max(0.0) + 1e-9,
        bound,
        calls,
        correctness,
        timed_out,
    })
}

/// Each API's calls over `cycle_s` against `share` of its (scaled) bucket.
fn rates(q: Quota, share: f64, calls: &Calls, cycle_s: f64) -> Vec<ApiRate> {
    calls
        .by_api
        .iter()
        .map(|(api, &n)| {
            let bucket = quota::bucket(q.preset, q.scale, api);
            let allowed = bucket.map(|(b, r)| share * (b + r * cycle_s));
            ApiRate {
                api: api.clone(),
                calls: n,
                per_s: n as f64 / cycle_s.max(1e-9),
                per_s_after_burst: (n as f64 - bucket.map_or(0.0, |(b, _)| share * b)).max(0.0)
                    / cycle_s.max(1e-9),
                cap_per_s: bucket.map(|(_, r)| share * r),
                // One call of rounding: the cap's burst is rounded up to a whole call.
                within_cap: allowed.is_none_or(|a| n as f64 <= a + 1.0),
                allowed,
            }
        })
        .collect()
}
