//! `redrive-operator demo`: the built-in emulator, a seeded scenario and one policy, live.
//!
//! Runs the same local-mode loop as `run`, against the emulator started in-process on a free
//! loopback port. Nothing leaves the machine; no AWS account or cluster is needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use tokio::sync::watch;

use std::time::Duration;

use crate::engine::{Decision, Reason};
use crate::ledger::MemoryLedger;
use crate::local::{self, PollObserver};
use crate::output::{self, relative, short_name, thousands};
use crate::policy::Policy;
use crate::policy_file::parse_documents;
use crate::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};
use clap::Args;
use redrive_emulator::{self as emulator, EmulatorConfig, QuotaPreset, Scenario};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How long the demo runs.
    #[arg(long, env = "REDRIVE_DEMO_DURATION", default_value = "35s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Print every decision instead of a sample per poll.
    #[arg(long, env = "REDRIVE_DEMO_VERBOSE")]
    pub verbose: bool,
}

/// The policy the demo runs (also in `examples/demo-policy.yaml`).
pub const DEMO_POLICY: &str = include_str!("../examples/demo-policy.yaml");

struct DemoPrinter {
    verbose: bool,
    polls: AtomicU64,
    started: Timestamp,
}

impl DemoPrinter {
    fn sample_limit(&self) -> usize {
        if self.verbose { usize::MAX } else { 6 }
    }
}

impl PollObserver for DemoPrinter {
    fn observe(
        &self,
        policy: &Policy,
        result: &Result<PollReport, PollError>,
        state: &PolicyState,
    ) {
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Timestamp::now();
        let t = now.duration_since(self.started).as_secs();
        println!("\n── poll {n} of {} (t+{t}s) ──", policy.id);
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                println!("  poll failed: {e}");
                return;
            }
        };
        for line in output::issue_lines(report) {
            println!("  {line}");
        }
        println!("  {}", output::plan_summary(report));

        // Redrives performed, a sample.
        let limit = self.sample_limit();
        for a in report.actions.iter().take(limit) {
            let detail = match &a.result {
                Ok(o) => o.code().to_string(),
                Err(e) => format!("failed: {e}"),
            };
            println!(
                "  ↻ redrive  {:<42} attempt {}  {detail}",
                run_label(&a.run),
                a.attempts + 1
            );
        }
        if report.actions.len() > limit {
            println!(
                "  ↻ … and {} more redrives",
                thousands((report.actions.len() - limit) as u64)
            );
        }

        // One example per skip/wait reason, so every rule shows up.
        let mut examples: BTreeMap<&'static str, String> = BTreeMap::new();
        for e in &report.plan.entries {
            let code = e.decision.code();
            if e.decision.is_redrive() || examples.contains_key(code) {
                continue;
            }
            let who = run_label(&e.candidate.id);
            let error = e
                .candidate
                .details
                .as_ref()
                .and_then(|d| d.error.clone())
                .map(|x| format!(" ({x})"))
                .unwrap_or_default();
            let line = match &e.decision {
                Decision::Skip {
                    reason: Reason::DryRun,
                } => format!("  ✓ would    {who:<42} {code}"),
                Decision::Skip { reason } => format!("  · skip     {who:<42} {reason}{error}"),
                Decision::Wait { until, reason } => {
                    format!(
                        "  ⏸ wait     {who:<42} {reason} until {}",
                        relative(*until, now)
                    )
                }
                Decision::Redrive { .. } => continue,
            };
            examples.insert(code, line);
        }
        for line in examples.values() {
            println!("{line}");
        }
        println!("  redriven so far: {}", thousands(state.redriven_total));
    }
}

/// `...:execution:orders-processing:ord-0042` → `orders-processing/ord-0042`;
/// `web-frontend/Deploy/<uuid>` → `web-frontend/Deploy/<first 8 of the uuid>`.
fn run_label(run: &str) -> String {
    match run.split(':').nth(6) {
        Some(sm) => format!("{sm}/{}", short_name(run)),
        None => {
            let mut parts = run.splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(p), Some(s), Some(id)) => {
                    format!("{p}/{s}@{}", id.get(..8).unwrap_or(id))
                }
                _ => run.to_string(),
            }
        }
    }
}

pub async fn run(args: DemoArgs) -> ExitCode {
    let config = EmulatorConfig {
        quota: QuotaPreset::UsEast1,
        ..EmulatorConfig::default()
    };
    let mut scenario = Scenario::demo();
    scenario.pipelines = Scenario::demo_pipelines().pipelines;
    let handle = match emulator::start(config, scenario).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let policies: Vec<Policy> =
        match parse_documents(Path::new("examples/demo-policy.yaml"), DEMO_POLICY)
            .into_iter()
            .collect::<Result<_, _>>()
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: the embedded demo policy is invalid: {e}");
                return ExitCode::FAILURE;
            }
        };
    let stats = handle.stats();
    println!("redrive-operator demo");
    println!(
        "Emulator on {} (us-east-1 API quotas): {} Step Functions executions and {} CodePipeline pipelines seeded.",
        handle.endpoint,
        thousands(stats.executions),
        thousands(stats.pipelines)
    );
    println!("Policies (examples/demo-policy.yaml):\n");
    for line in DEMO_POLICY
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        println!("    {line}");
    }
    println!(
        "\nRunning for {}s; each poll lists failed executions, decides, and redrives.",
        args.duration.as_secs()
    );

    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    // CodePipeline has no client token: the attempt ledger (in memory for the demo; a state
    // directory or RedriveAttempt objects otherwise) makes each retry happen once.
    let ctx = Arc::new(Context::new(settings).with_ledger(Arc::new(MemoryLedger::new())));
    // Local mode acts without a lease: it is its own leader.
    ctx.metrics.leader.set(1);
    let printer = Arc::new(DemoPrinter {
        verbose: args.verbose,
        polls: AtomicU64::new(0),
        started: Timestamp::now(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let duration = args.duration;
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = crate::cli::shutdown_signal() => {}
        }
        let _ = stop_tx.send(true);
    });
    let totals = local::run(ctx.clone(), policies, false, false, printer, stop_rx).await;

    // The tally, from the emulator's own ledger: what AWS would have recorded.
    let ledger = handle.ledger();
    let mut per_attempt: BTreeMap<(String, u32), u32> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for entry in &ledger {
        let kind = serde_json::to_value(&entry.outcome)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        *outcomes.entry(kind).or_insert(0) += 1;
        if entry.outcome.is_redriven() {
            *per_attempt
                .entry((entry.execution_arn.clone(), entry.redrive_count_before))
                .or_insert(0) += 1;
        }
    }
    let mut per_stage_attempt: BTreeMap<(String, String, String, u32), u32> = BTreeMap::new();
    for e in handle.codepipeline_ledger() {
        if e.outcome == redrive_emulator::RetryOutcome::Retried {
            *per_stage_attempt
                .entry((
                    e.pipeline_name,
                    e.stage_name,
                    e.pipeline_execution_id,
                    e.manual_stage_retry_attempt_before,
                ))
                .or_insert(0) += 1;
        }
    }
    let duplicates = per_attempt.values().filter(|n| **n > 1).count()
        + per_stage_attempt.values().filter(|n| **n > 1).count();
    let executions: std::collections::BTreeSet<&String> =
        per_attempt.keys().map(|(arn, _)| arn).collect();
    println!("\n── tally ──");
    println!(
        "{} polls; {} redrives of {} executions performed by the emulator ({} calls in its ledger: {})",
        totals.polls,
        thousands(per_attempt.values().map(|n| u64::from(*n)).sum()),
        thousands(executions.len() as u64),
        thousands(ledger.len() as u64),
        outcomes
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{} CodePipeline stage retries (RetryStageExecution) performed by the emulator",
        thousands(per_stage_attempt.values().map(|n| u64::from(*n)).sum())
    );
    println!("{}", output::calls_line(totals.redriven, &ctx.calls));
    println!("\n── metrics (what `run` serves on /metrics; histograms omitted) ──");
    for line in ctx.metrics.encode().lines() {
        let histogram =
            line.contains("_bucket") || line.contains("_sum") || line.contains("_count");
        if !line.starts_with('#') && !histogram {
            println!("{line}");
        }
    }
    handle.shutdown().await;
    if duplicates > 0 {
        println!("FAILED: {duplicates} (run, attempt) pairs were redriven more than once");
        return ExitCode::FAILURE;
    }
    println!("ledger check: at most one redrive per (run, attempt), both services: ok");
    if totals.failed_polls > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
