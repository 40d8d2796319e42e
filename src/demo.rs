//! `redrive-operator demo`: the built-in emulator, a seeded scenario and one policy per service
//! (Step Functions, CodePipeline, Adobe Flow Service), live.
//!
//! Runs the same local-mode loop as `run`, against the emulator started in-process on a free
//! loopback port. Nothing leaves the machine; no AWS account, Adobe organization or cluster is
//! needed.

use std::collections::{BTreeMap, HashMap};
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
use crate::policy::{Policy, TargetKind};
use crate::policy_file::parse_documents;
use crate::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};
use crate::targets::RedriveOutcome;
use crate::targets::flowservice::AdobeSettings;
use crate::targets::flowservice::credentials::{
    KEY_CLIENT_ID, KEY_CLIENT_SECRET, KEY_ORG_ID, SecretStore,
};
use clap::Args;
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorState, FlowRunStatus, QuotaPreset, ReTriggerOutcome,
    Scenario,
};

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
    /// Flow Service dataflow id → name (the operator only sees ids in its candidates).
    flow_names: HashMap<String, String>,
    /// The emulator's state, to name the run a re-trigger created.
    emulator: Arc<EmulatorState>,
}

impl DemoPrinter {
    fn sample_limit(&self) -> usize {
        if self.verbose { usize::MAX } else { 6 }
    }

    /// A short label for a run: Step Functions and CodePipeline ids carry their workflow; a
    /// Flow Service run id is a bare UUID, so its dataflow (`workflow`, an id) is named.
    fn label(&self, target: TargetKind, workflow: Option<&str>, run: &str) -> String {
        match target {
            TargetKind::FlowService => {
                let flow = workflow.map_or("?".to_string(), |w| self.flow_name(w));
                format!("{flow}/run@{}", short_id(run))
            }
            _ => run_label(run),
        }
    }

    fn flow_name(&self, id: &str) -> String {
        self.flow_names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("dataflow@{}", short_id(id)))
    }

    /// Flow Service runs created by re-triggers that are still running, from the emulator's
    /// view: the operator lists only completed runs, so these show up at a later poll.
    fn running_retriggers(&self, flows: &[String]) -> Vec<String> {
        self.emulator
            .flowservice_ledger()
            .into_iter()
            .filter(|e| e.outcome == ReTriggerOutcome::ReTriggered)
            .filter(|e| e.flow_id.as_ref().is_some_and(|f| flows.contains(f)))
            .filter_map(|e| {
                let new_run = e.new_run_id?;
                let run = self.emulator.flow_run(&new_run)?;
                (run.status == FlowRunStatus::InProgress).then(|| {
                    let who = format!("{}/run@{}", run.flow_name, short_id(&new_run));
                    format!(
                        "  ⋯ running  {who:<42} re-run of run@{}, in progress (checked again at the next poll)",
                        short_id(&e.run_id)
                    )
                })
            })
            .collect()
    }

    /// `Redriven` for Flow Service: the run the re-trigger created (from the emulator's ledger).
    fn retrigger_detail(&self, run: &str) -> Option<String> {
        let new_run = self
            .emulator
            .flowservice_ledger()
            .into_iter()
            .rev()
            .find(|e| e.run_id == run && e.outcome == ReTriggerOutcome::ReTriggered)?
            .new_run_id?;
        Some(format!("ReTriggered → new run @{}", short_id(&new_run)))
    }
}

/// The first 8 characters of a UUID-like id.
fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
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
        for mut line in output::issue_lines(report) {
            if report.target == TargetKind::FlowService {
                for (id, name) in &self.flow_names {
                    line = line.replace(id.as_str(), name);
                }
            }
            println!("  {line}");
        }
        println!("  {}", output::plan_summary(report));
        // Candidate id → its workflow (Flow Service actions name only the run).
        let workflow_of: HashMap<&str, &str> = report
            .plan
            .entries
            .iter()
            .map(|e| (e.candidate.id.as_str(), e.candidate.workflow.as_str()))
            .collect();

        // Redrives performed, a sample.
        let limit = self.sample_limit();
        for a in report.actions.iter().take(limit) {
            let detail = match &a.result {
                Ok(RedriveOutcome::Redriven { .. }) if report.target == TargetKind::FlowService => {
                    self.retrigger_detail(&a.run)
                        .unwrap_or_else(|| "ReTriggered".to_string())
                }
                Ok(
                    o @ (RedriveOutcome::Busy(why)
                    | RedriveOutcome::NotRedrivable(why)
                    | RedriveOutcome::Superseded(why)
                    | RedriveOutcome::AlreadyClaimed(why)
                    | RedriveOutcome::AlreadyRedriven(why)
                    | RedriveOutcome::InDoubt(why)),
                ) if report.target == TargetKind::FlowService => format!("{}: {why}", o.code()),
                Ok(o) => o.code().to_string(),
                Err(e) => format!("failed: {e}"),
            };
            let who = self.label(
                report.target,
                workflow_of.get(a.run.as_str()).copied(),
                &a.run,
            );
            println!(
                "  ↻ redrive  {who:<42} attempt {}  {detail}",
                a.attempts + 1
            );
        }
        if report.actions.len() > limit {
            println!(
                "  ↻ … and {} more redrives",
                thousands((report.actions.len() - limit) as u64)
            );
        }

        // One example per skip/wait reason, so every rule shows up (Flow Service: one per
        // dataflow and reason, there are only a few).
        let mut examples: BTreeMap<(&'static str, &str), String> = BTreeMap::new();
        for e in &report.plan.entries {
            let code = e.decision.code();
            let per = match report.target {
                TargetKind::FlowService => e.candidate.workflow.as_str(),
                _ => "",
            };
            if e.decision.is_redrive() || examples.contains_key(&(code, per)) {
                continue;
            }
            let who = self.label(report.target, Some(&e.candidate.workflow), &e.candidate.id);
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
            examples.insert((code, per), line);
        }
        for line in examples.values() {
            println!("{line}");
        }
        if report.target == TargetKind::FlowService {
            for line in self.running_retriggers(&report.workflows) {
                println!("{line}");
            }
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
    // The Flow Service dataflows and the IMS client (as the emulator binary's `--scenario demo`).
    let flows = Scenario::demo_flows();
    scenario.flows = flows.flows;
    scenario.ims_clients = flows.ims_clients;
    let Some(ims_client) = scenario.ims_clients.first().cloned() else {
        eprintln!("error: the emulator's Flow Service demo scenario has no IMS client");
        return ExitCode::FAILURE;
    };
    let org_id = ims_client
        .org_id
        .clone()
        .unwrap_or_else(|| config.flowservice.org_id.clone());
    let flow_names: Vec<String> = scenario.flows.iter().map(|f| f.name.clone()).collect();
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
    // The credentials Secret of every Flow Service policy, in memory, where the adapter looks
    // it up: (the policy's namespace — empty in local mode —, credentialsSecretRef.name).
    let secrets = SecretStore::memory();
    for p in &policies {
        if let Some(fs) = p.flow_service() {
            secrets.put(
                &p.id.namespace,
                &fs.credentials_secret,
                BTreeMap::from([
                    (KEY_CLIENT_ID.to_string(), ims_client.client_id.clone()),
                    (
                        KEY_CLIENT_SECRET.to_string(),
                        ims_client.client_secret.clone(),
                    ),
                    (KEY_ORG_ID.to_string(), org_id.clone()),
                ]),
            );
        }
    }
    let flow_names: HashMap<String, String> = flow_names
        .into_iter()
        .filter_map(|name| handle.flow_id(&name).map(|id| (id, name)))
        .collect();
    let stats = handle.stats();
    println!("redrive-operator demo");
    println!(
        "Emulator on {} (us-east-1 API quotas): {} Step Functions executions, {} CodePipeline pipelines and {} Flow Service dataflows ({} runs) seeded.",
        handle.endpoint,
        thousands(stats.executions),
        thousands(stats.pipelines),
        thousands(stats.flows),
        thousands(stats.flow_runs)
    );
    println!("Policies (examples/demo-policy.yaml):\n");
    for line in DEMO_POLICY
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        println!("    {line}");
    }
    println!(
        "\nRunning for {}s; each poll lists failed runs, decides, and redrives (re-triggers).",
        args.duration.as_secs()
    );

    let mut settings = PollSettings::default();
    settings.aws.endpoint_url = Some(handle.endpoint.clone());
    // Adobe's endpoints are operator settings (never policy fields): the emulator's Platform
    // and IMS paths.
    settings.adobe = AdobeSettings {
        platform_url: handle.flowservice_url(),
        ims_url: handle.ims_token_url(),
        ..AdobeSettings::default()
    };
    // CodePipeline and Flow Service have no client token: the attempt ledger (in memory for the
    // demo; a state directory or RedriveAttempt objects otherwise) makes each retry happen once.
    let ctx = Arc::new(
        Context::new(settings)
            .with_ledger(Arc::new(MemoryLedger::new()))
            .with_secrets(secrets),
    );
    // Local mode acts without a lease: it is its own leader.
    ctx.metrics.leader.set(1);
    let printer = Arc::new(DemoPrinter {
        verbose: args.verbose,
        polls: AtomicU64::new(0),
        started: Timestamp::now(),
        flow_names: flow_names.clone(),
        emulator: handle.state().clone(),
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
    // Flow Service: every re-trigger creates a new run, so one run re-triggered twice is a
    // duplicate (each attempt acts on the run the previous attempt created).
    let fs_ledger = handle.flowservice_ledger();
    let mut fs_outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_run: BTreeMap<&str, u32> = BTreeMap::new();
    for e in &fs_ledger {
        let kind = serde_json::to_value(&e.outcome)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        *fs_outcomes.entry(kind).or_insert(0) += 1;
        if e.outcome == ReTriggerOutcome::ReTriggered {
            *per_run.entry(e.run_id.as_str()).or_insert(0) += 1;
        }
    }
    let duplicates = per_attempt.values().filter(|n| **n > 1).count()
        + per_stage_attempt.values().filter(|n| **n > 1).count()
        + per_run.values().filter(|n| **n > 1).count();
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
    println!(
        "{} Flow Service re-triggers (POST /runs/{{id}}/action?op=re-trigger) of {} runs performed by the emulator ({} calls in its ledger{})",
        thousands(per_run.values().map(|n| u64::from(*n)).sum()),
        thousands(per_run.len() as u64),
        thousands(fs_ledger.len() as u64),
        if fs_outcomes.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                fs_outcomes
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for e in fs_ledger
        .iter()
        .filter(|e| e.outcome == ReTriggerOutcome::ReTriggered)
    {
        let flow = e.flow_id.as_deref().map_or("?".into(), |f| {
            flow_names
                .get(f)
                .cloned()
                .unwrap_or_else(|| format!("dataflow@{}", short_id(f)))
        });
        let Some(new_run) = e.new_run_id.as_deref() else {
            continue;
        };
        let now = match handle.flow_run(new_run) {
            Some(r) => match r.status {
                FlowRunStatus::Success => {
                    format!("success, {} records", thousands(r.output_records))
                }
                FlowRunStatus::Failed => format!(
                    "failed{}",
                    r.errors
                        .first()
                        .map(|x| format!(" ({})", x.code))
                        .unwrap_or_default()
                ),
                FlowRunStatus::InProgress => "still in progress".to_string(),
            },
            None => "unknown".to_string(),
        };
        println!(
            "  {flow}/run@{} → new run @{}: {now}",
            short_id(&e.run_id),
            short_id(new_run)
        );
    }
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
    println!("ledger check: at most one redrive per (run, attempt), all three services: ok");
    if totals.failed_polls > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
