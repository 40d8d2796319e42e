//! Reliability (issue 7, item 8): resource limits.
//!
//! - 10,000 poll cycles of the real poll loop (`local::run`, the code `run -f` uses) in this
//!   process against the emulator in a child process, with intervals shortened to milliseconds:
//!   RSS and the per-policy caches must stop growing once the working set is reached.
//! - The benchmark's scale scenario (1,000 policies, 5,000 state machines, 100,000 executions)
//!   with the real binary inside a memory cgroup limited to 128 MiB (as a Pod's
//!   `resources.limits.memory` would): it must survive with no OOM kill, and its peak RSS must stay
//!   under 128 MiB. Without a writable memory cgroup (not root, no cgroupfs) the limit cannot be
//!   enforced and only the peak RSS is checked; the figures line says which.

mod reliability_common;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redrive_operator::local::{self, PollObserver};
use redrive_operator::policy::Policy;
use redrive_operator::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};
use reliability_common::*;
use serde_json::json;

/// The tests here measure this process's memory: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `VmRSS` / `VmHWM` of a process, KiB.
fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A memory cgroup (v2, or v1's memory controller) with a hard limit, removed on drop. Processes
/// started through [`MemoryCgroup::command`] run inside it, as a container runs under its Pod's
/// memory limit: going over it means reclaim, then the kernel's OOM kill.
struct MemoryCgroup {
    dir: std::path::PathBuf,
    v2: bool,
}

impl MemoryCgroup {
    /// Create a child of this process's own cgroup with `limit` bytes (swap included).
    fn create(limit: u64) -> Result<Self, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let name = format!("redrive-limit-{}", std::process::id());
        // v1: a line `N:memory:/path`; v2 (unified): `0::/path`.
        let v1 = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (parent, v2) = match v1 {
            Some(path) => (
                std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                false,
            ),
            None => {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or("no memory controller in /proc/self/cgroup")?;
                (
                    std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')),
                    true,
                )
            }
        };
        let dir = parent.join(&name);
        let write = |file: &str, value: &str| {
            std::fs::write(dir.join(file), value).map_err(|e| format!("{file}: {e}"))
        };
        let made = std::fs::create_dir(&dir)
            .map_err(|e| format!("mkdir {}: {e}", dir.display()))
            .and_then(|()| {
                if v2 {
                    write("memory.max", &limit.to_string())?;
                    write("memory.swap.max", "0")
                } else {
                    write("memory.limit_in_bytes", &limit.to_string())?;
                    // Absent when swap accounting is off; then there is no swap to escape to.
                    let _ = write("memory.memsw.limit_in_bytes", &limit.to_string());
                    Ok(())
                }
            });
        match made {
            Ok(()) => Ok(MemoryCgroup { dir, v2 }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// `program args...` started inside the cgroup (the shell joins it, then execs).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(&self.dir)
            .arg(program);
        c
    }

    /// OOM kills inside the cgroup so far (None if the kernel does not report them).
    fn oom_kills(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill")?.trim().parse().ok())
    }

    /// Peak memory charged to the cgroup (RSS plus page cache), bytes.
    fn peak_bytes(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty by now (the process was killed and reaped); rmdir removes a cgroup.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// An emulator child process (`redrive-emulator --scenario FILE`, or the benchmark's scale
/// emulator), killed on drop.
struct ChildEmulator {
    child: Child,
    endpoint: String,
}

impl ChildEmulator {
    fn start(program: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator child starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self { child, endpoint }
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts polls and remembers the largest per-policy state seen.
#[derive(Default)]
struct Watch {
    polls: AtomicU64,
    redriven: AtomicU64,
    max_recent: AtomicU64,
    /// (polls, RSS KiB, Debug size of one policy's state) samples.
    samples: Mutex<Vec<(u64, u64, usize)>>,
}

impl PollObserver for Watch {
    fn observe(&self, _: &Policy, result: &Result<PollReport, PollError>, state: &PolicyState) {
        let n = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(r) = result {
            self.redriven.fetch_add(
                r.action_counts().get("Redriven").copied().unwrap_or(0),
                Ordering::Relaxed,
            );
        }
        self.max_recent
            .fetch_max(state.recent.len() as u64, Ordering::Relaxed);
        if n.is_multiple_of(250) {
            let size = format!("{state:?}").len();
            self.samples
                .lock()
                .unwrap()
                .push((n, status_kib("self", "VmRSS:"), size));
        }
    }
}

/// The real poll loop (local::run, the SDK, HTTP) against a churning backlog: RSS flat.
#[tokio::test(flavor = "multi_thread")]
async fn the_real_poll_loop_does_not_grow_memory() {
    let _serial = SERIAL.lock().await;
    let target_polls = scale(5_000, 50_000) as u64;
    const MACHINES: u32 = 20;
    // Each machine: transient failures that take three redrives to succeed (then leave the
    // FAILED list), and permanent ones the error filter excludes (described once, cached).
    // New transient failures arrive all the time, so the caches' keys keep changing while the
    // working set stays the same size.
    let dir = tempfile::tempdir().unwrap();
    let machines: Vec<serde_json::Value> = (0..MACHINES)
        .map(|m| {
            json!({
                "name": format!("mem-{m}"),
                "generate": [
                    {"count": 3, "namePrefix": "t-", "outcomes": ["fail(Lambda.ServiceException)", "fail(Lambda.ServiceException)", "fail(Lambda.ServiceException)", "succeed"]},
                    {"count": 2, "namePrefix": "p-", "outcomes": ["fail(ValidationError)"]},
                ],
            })
        })
        .collect();
    let scenario = json!({"defaults": {"redriveRunTime": "0s"}, "stateMachines": machines});
    let file = dir.path().join("scenario.json");
    std::fs::write(&file, scenario.to_string()).unwrap();
    let emu = ChildEmulator::start(
        &support::emulator_bin(),
        &["--scenario", file.to_str().unwrap()],
    );

    let policies: Vec<Policy> = (0..MACHINES)
        .map(|m| {
            let mut policy = redrive_operator::policy_file::parse_policy(json!({
                "apiVersion": "redrive.dev/v1alpha1",
                "kind": "RedrivePolicy",
                "metadata": {"name": format!("mem-{m}")},
                "spec": {
                    "stepFunctions": {"region": support::REGION, "stateMachines": [support::sm_arn(&format!("mem-{m}"))]},
                    "statuses": ["FAILED"],
                    "errors": {"exclude": ["ValidationError"]},
                    "maxRedrives": 5,
                    "budget": {"redrivesPerMinute": 100000},
                },
            }))
            .unwrap();
            // Fast loop: the CRD's 10 s minimum does not apply to this in-process run.
            policy.poll_interval = Duration::from_millis(1);
            policy
        })
        .collect();
    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(emu.endpoint.clone());
    let ctx = Arc::new(Context::new(settings));
    let watch = Arc::new(Watch::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let w = watch.clone();
    let endpoint = emu.endpoint.clone();
    let started = Instant::now();
    let feeder = tokio::spawn(async move {
        // One new failure per machine every 100 polls, whatever the speed of the machine.
        let mut batch = 0u32;
        while w.polls.load(Ordering::Relaxed) < target_polls {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if w.polls.load(Ordering::Relaxed) < u64::from(batch + 1) * 100 {
                continue;
            }
            batch += 1;
            let more: Vec<serde_json::Value> = (0..MACHINES)
                .map(|m| json!({"name": format!("mem-{m}"), "generate": [{"count": 1, "namePrefix": format!("n{batch}-"), "outcomes": ["fail(Lambda.ServiceException)", "fail(Lambda.ServiceException)", "succeed"]}]}))
                .collect();
            let body = json!({"stateMachines": more}).to_string();
            let r = http(&endpoint, "POST", "/_emulator/scenario", &body).await;
            assert_eq!(r.as_ref().map(|r| r.0), Some(200), "{r:?}");
        }
        let _ = stop_tx.send(true);
        batch
    });
    let totals = local::run(ctx.clone(), policies, false, false, watch.clone(), stop_rx).await;
    let batches = feeder.await.unwrap();
    let took = started.elapsed();
    let samples = watch.samples.lock().unwrap().clone();
    assert!(samples.len() >= 3, "{samples:?}");
    // Working set: after the first third. Growth from there to the end must be small.
    let tenth = &samples[samples.len() / 3];
    let last = samples.last().unwrap();
    let growth_kib = last.1 as i64 - tenth.1 as i64;
    let state_sizes: Vec<usize> = samples.iter().map(|s| s.2).collect();
    let max_state = *state_sizes.iter().max().unwrap();
    figures(
        "real_poll_loop_memory",
        &[
            ("polls", totals.polls.to_string()),
            ("seconds", took.as_secs().to_string()),
            ("new_failures_fed", (batches * MACHINES).to_string()),
            (
                "redriven",
                watch.redriven.load(Ordering::Relaxed).to_string(),
            ),
            ("rss_kib_at_33pct", tenth.1.to_string()),
            ("rss_kib_at_end", last.1.to_string()),
            ("rss_growth_kib", growth_kib.to_string()),
            ("policy_state_debug_bytes_max", max_state.to_string()),
            (
                "recent_max",
                watch.max_recent.load(Ordering::Relaxed).to_string(),
            ),
        ],
    );
    eprintln!("samples (polls, rss KiB, state bytes): {samples:?}");
    assert!(totals.polls >= target_polls);
    assert!(
        watch.redriven.load(Ordering::Relaxed) > u64::from(batches),
        "the fed failures were redriven"
    );
    assert!(watch.max_recent.load(Ordering::Relaxed) <= 20);
    // A policy's state (rate bucket, details cache, exhausted set, last 20 redrives) follows
    // its working set (a handful of failures), not the number of polls or of failures seen.
    assert!(
        max_state < 64 * 1024,
        "a policy's state kept growing: {state_sizes:?}"
    );
    assert!(
        growth_kib < 8 * 1024,
        "RSS grew by {growth_kib} KiB between poll {} and poll {}",
        tenth.0,
        last.0
    );
}

/// The benchmark's scale scenario with the real binary in local mode: 1,000 policies of 5 state
/// machines, 100,000 executions (5,000 eligible), every ListExecutions answered after 100 ms so
/// that polls overlap as they do against a loaded endpoint. The process's peak RSS (VmHWM) must
/// stay under 128 MiB through two poll cycles, and its open connections bounded.
#[tokio::test(flavor = "multi_thread")]
async fn scale_scenario_stays_under_128_mib() {
    let _serial = SERIAL.lock().await;
    use redrive_bench::data;
    const REGION: &str = "ca-central-1";
    // The benchmark's scale phase (1,000 policies), in CI as well.
    let (policies, per, executions) = (1000, 5, 100_000);
    let dir = tempfile::tempdir().unwrap();
    let scenario = data::scale_scenario(REGION, policies, per, executions);
    let scenario_file = dir.path().join("scale.json");
    std::fs::write(&scenario_file, serde_json::to_string(&scenario).unwrap()).unwrap();
    let emu = ChildEmulator::start(
        &support::emulator_bin(),
        &[
            "--scenario",
            scenario_file.to_str().unwrap(),
            "--region",
            REGION,
            "--fault-latency",
            "100ms",
            "--fault-only-apis",
            "ListExecutions",
        ],
    );
    let docs: Vec<String> = (0..policies)
        .map(|p| {
            let arns: Vec<String> = (0..per)
                .map(|k| format!("\"{}\"", data::sm_arn(REGION, &data::scale_sm(p, k))))
                .collect();
            format!(
                "apiVersion: redrive.dev/v1alpha1\nkind: RedrivePolicy\nmetadata: {{name: scale-{p:04}}}\nspec:\n  stepFunctions: {{region: {REGION}, maxRunTime: 1d, stateMachines: [{}]}}\n  statuses: [FAILED]\n  maxRedrives: {}\n  pollInterval: 10s\n",
                arns.join(", "),
                data::MAX_REDRIVES
            )
        })
        .collect();
    let file = dir.path().join("policies.yaml");
    std::fs::write(&file, docs.join("---\n")).unwrap();
    let eligible: std::collections::BTreeSet<String> =
        data::scale_eligible(REGION, policies, per, executions)
            .into_iter()
            .collect();

    let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
    const LIMIT: u64 = 128 * 1024 * 1024;
    let cgroup = MemoryCgroup::create(LIMIT);
    if let Err(why) = &cgroup {
        eprintln!(
            "no writable memory cgroup ({why}): the 128 MiB limit is not enforced, only measured"
        );
    }
    let operator = env!("CARGO_BIN_EXE_redrive-operator");
    let mut command = match &cgroup {
        Ok(cg) => cg.command(operator),
        Err(_) => Command::new(operator),
    };
    let mut op = command
        .args([
            "run",
            "-f",
            file.to_str().unwrap(),
            "--endpoint-url",
            &emu.endpoint,
            "--admin-addr",
            "127.0.0.1:0",
            "--log-filter",
            "warn",
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = op.id().to_string();
    let ledger_url = format!("{}/_emulator/ledger", emu.endpoint);
    let redriven = || -> usize {
        // The emulator is another process: read its ledger over HTTP.
        let out = Command::new("curl")
            .args(["-s", &ledger_url])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let ledger: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap_or_default();
        let mut per_attempt: std::collections::BTreeMap<(String, u64), u32> = Default::default();
        for e in &ledger {
            if e["outcome"]["kind"] == "redriven" {
                let arn = e["executionArn"].as_str().unwrap_or("").to_string();
                *per_attempt
                    .entry((arn, e["redriveCountBefore"].as_u64().unwrap_or(0)))
                    .or_insert(0) += 1;
            }
        }
        assert!(
            per_attempt.values().all(|n| *n == 1),
            "duplicate redrives in the scale run"
        );
        per_attempt
            .keys()
            .filter(|(a, _)| eligible.contains(a))
            .count()
    };
    let started = Instant::now();
    let mut max_fds = 0usize;
    let mut cycle_done: Option<Duration> = None;
    let mut samples = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            op.try_wait().unwrap().is_none(),
            "the operator died: {}",
            std::fs::read_to_string(dir.path().join("operator.log")).unwrap_or_default()
        );
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        max_fds = max_fds.max(fds);
        let rss = status_kib(&pid, "VmRSS:");
        samples.push((started.elapsed().as_secs(), rss, fds));
        if cycle_done.is_none() && redriven() == eligible.len() {
            cycle_done = Some(started.elapsed());
        }
        // One more poll cycle after the first complete one (many more with REDRIVE_LONG=1).
        if let Some(t) = cycle_done
            && started.elapsed() > t + Duration::from_secs(scale(12, 300) as u64)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the first cycle did not complete: {} of {} redriven; {samples:?}",
            redriven(),
            eligible.len()
        );
    }
    let peak_kib = status_kib(&pid, "VmHWM:");
    let _ = op.kill();
    let _ = op.wait();
    let oom_kills = cgroup.as_ref().ok().and_then(MemoryCgroup::oom_kills);
    let cgroup_peak = cgroup.as_ref().ok().and_then(MemoryCgroup::peak_bytes);
    figures(
        "scale_memory",
        &[
            ("policies", policies.to_string()),
            ("state_machines", (policies * per).to_string()),
            ("executions", executions.to_string()),
            ("eligible_redriven", eligible.len().to_string()),
            ("first_cycle_s", cycle_done.unwrap().as_secs().to_string()),
            ("peak_rss_mib", format!("{:.1}", peak_kib as f64 / 1024.0)),
            ("max_open_fds", max_fds.to_string()),
            (
                "limit",
                match &cgroup {
                    Ok(_) => "enforced_128MiB_memcg".into(),
                    Err(_) => "measured_only".to_string(),
                },
            ),
            (
                "memcg_peak_mib",
                cgroup_peak.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
            ),
            ("oom_kills", oom_kills.map_or("-".into(), |n| n.to_string())),
            (
                "build",
                if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
                .into(),
            ),
        ],
    );
    eprintln!("samples (s, rss KiB, fds): {samples:?}");
    assert!(
        peak_kib < 128 * 1024,
        "peak RSS {peak_kib} KiB >= 128 MiB; samples {samples:?}"
    );
    assert_eq!(
        oom_kills.unwrap_or(0),
        0,
        "the kernel OOM-killed a process in the 128 MiB cgroup"
    );
}

/// A service with a sliding window of failures: every poll sees `WINDOW` failed runs, each
/// redriven (it fails again, up to its fourth attempt), and every poll a few new ones arrive
/// while the oldest leave. Nothing but the PolicyState caches can grow here.
struct Churn {
    poll: AtomicU64,
}

const WINDOW: u64 = 40;

impl Churn {
    fn candidates(&self, now: jiff::Timestamp) -> Vec<redrive_operator::engine::Candidate> {
        use redrive_operator::engine::{Candidate, RunStatus};
        let p = self.poll.fetch_add(1, Ordering::Relaxed);
        (p * 2..p * 2 + WINDOW)
            .map(|i| Candidate {
                id: format!("arn:aws:states:us-east-1:123456789012:execution:churn:run-{i}"),
                workflow: support::sm_arn("churn"),
                status: RunStatus::Failed,
                started: now - jiff::SignedDuration::from_hours(2),
                stopped: Some(now - jiff::SignedDuration::from_mins(30)),
                // Older runs have been redriven more often; the oldest are exhausted.
                // (AWS counts no further than the operator redrives: maxRedrives is 3.)
                attempts: u32::try_from(((p * 2 + WINDOW - i) / 10).min(3)).unwrap_or(3),
                last_attempt: None,
                hold: None,
                root: None,
                redriven_by_parent: false,
                details: None,
            })
            .collect()
    }
}

impl redrive_operator::targets::Target for Churn {
    fn name(&self) -> &'static str {
        "churn"
    }
    fn limits(&self) -> redrive_operator::engine::TargetLimits {
        redrive_operator::engine::TargetLimits::NONE
    }
    async fn discover(
        &self,
        _: &Policy,
        now: jiff::Timestamp,
    ) -> Result<redrive_operator::targets::Discovery, redrive_operator::targets::TargetError> {
        Ok(redrive_operator::targets::Discovery {
            workflows: vec![support::sm_arn("churn")],
            candidates: self.candidates(now),
            issues: Vec::new(),
        })
    }
    async fn describe(
        &self,
        c: &redrive_operator::engine::Candidate,
    ) -> Result<redrive_operator::engine::Details, redrive_operator::targets::TargetError> {
        let permanent = c.id.ends_with('7');
        Ok(redrive_operator::engine::Details {
            error: Some(
                if permanent {
                    "ValidationError"
                } else {
                    "Lambda.ServiceException"
                }
                .into(),
            ),
            cause: Some("x".repeat(2048)),
            redrivability: Some(redrive_operator::engine::Redrivability::Redrivable),
        })
    }
    async fn running_redriven(
        &self,
        _: &[String],
    ) -> Result<u32, redrive_operator::targets::TargetError> {
        Ok(0)
    }
    async fn redrive(
        &self,
        _: &redrive_operator::policy::Policy,
        _: &redrive_operator::engine::Candidate,
        _: &str,
    ) -> Result<redrive_operator::targets::RedriveOutcome, redrive_operator::targets::TargetError>
    {
        Ok(redrive_operator::targets::RedriveOutcome::Redriven { at: None })
    }
}

/// 10,000 polls (100,000 with REDRIVE_LONG=1) of `reconcile::poll` over a churning window of
/// failures: 20,000 distinct failures pass through, 400,000 describe-cache lookups happen, and
/// the policy's state stays the size of its working set.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_poll_cycles_keep_policy_state_bounded() {
    let _serial = SERIAL.lock().await;
    let polls = scale(10_000, 100_000) as u64;
    let policy = redrive_operator::policy_file::parse_policy(json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": "churn"},
        "spec": {
            "stepFunctions": {"region": support::REGION, "stateMachines": [support::sm_arn("churn")]},
            "errors": {"exclude": ["ValidationError"], "causeRegex": "x"},
            "maxRedrives": 3,
            "budget": {"redrivesPerMinute": 1000000},
        },
    }))
    .unwrap();
    let target = Churn {
        poll: AtomicU64::new(0),
    };
    let state = std::sync::Mutex::new(PolicyState::default());
    let started = Instant::now();
    let mut sizes = Vec::new();
    let mut rss = Vec::new();
    let mut redriven = 0u64;
    let mut exhausted = 0u64;
    for i in 1..=polls {
        let report =
            redrive_operator::reconcile::poll(&target, &policy, &state, 16, jiff::Timestamp::now)
                .await
                .unwrap();
        redriven += report.action_counts().get("Redriven").copied().unwrap_or(0);
        exhausted += report.newly_exhausted.len() as u64;
        if i.is_multiple_of(polls / 20) {
            sizes.push(format!("{:?}", state.lock().unwrap()).len());
            rss.push(status_kib("self", "VmRSS:"));
        }
    }
    let took = started.elapsed();
    let st = state.lock().unwrap();
    figures(
        "poll_cycles_state",
        &[
            ("polls", polls.to_string()),
            ("seconds", format!("{:.1}", took.as_secs_f64())),
            ("distinct_failures", (polls * 2 + WINDOW).to_string()),
            ("redrives", redriven.to_string()),
            ("newly_exhausted_reports", exhausted.to_string()),
            ("state_debug_bytes_first", sizes[0].to_string()),
            (
                "state_debug_bytes_max",
                sizes.iter().max().unwrap().to_string(),
            ),
            ("state_debug_bytes_last", sizes.last().unwrap().to_string()),
            ("rss_kib_first", rss[0].to_string()),
            ("rss_kib_last", rss.last().unwrap().to_string()),
            ("recent", st.recent.len().to_string()),
        ],
    );
    eprintln!("state sizes {sizes:?}\nrss {rss:?}");
    assert_eq!(st.polls, polls);
    assert!(st.recent.len() <= 20);
    assert!(
        *sizes.iter().max().unwrap() <= sizes[0] * 2,
        "the policy state grows with polls: {sizes:?}"
    );
    assert!(
        rss.last().unwrap().saturating_sub(rss[0]) < 4 * 1024,
        "RSS grows with polls: {rss:?}"
    );
    // Every failure that reached maxRedrives was reported once, not once per poll.
    assert!(exhausted <= polls * 2 + WINDOW, "{exhausted}");
    assert!(exhausted >= polls * 2 - WINDOW, "{exhausted}");
}
