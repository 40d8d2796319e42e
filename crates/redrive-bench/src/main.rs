//! `redrive-bench`: benchmark of the operator against the Step Functions emulator under AWS's
//! API quotas (docs/benchmark.md). Prints tables on stdout, writes `redrive-bench.json` and
//! `backlog.png` to `--out`, and exits 1 when a correctness check failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use redrive_bench::{self as bench, BenchConfig, Phase, Quota, ScaleSize, scale::ChildCommand};
use redrive_emulator::{QuotaPreset, parse_duration};

/// Benchmark: backlog drain vs the quota bound and a naive script, a CodePipeline drain, idle
/// cost, 1,000-policy
/// scale, a 5,000-policy fleet under a quota share, failure-to-redrive latency; every phase
/// checked for duplicate or missed redrives.
#[derive(Debug, Parser)]
#[command(name = "redrive-bench", version, about, long_about)]
struct Args {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Small sizes for every phase (≤ 60 s in a debug build); used by tests/bench_smoke.rs.
    #[arg(long)]
    quick: bool,

    /// Throttling preset of the emulator: us-east-1 (also us-west-2, eu-west-1) or other.
    #[arg(long, default_value = "us-east-1")]
    quota: QuotaPreset,

    /// Multiplies bucket sizes and refill rates of the drain, baseline and latency phases
    /// [default: 1, --quick: 0.1].
    #[arg(long)]
    quota_scale: Option<f64>,

    /// Quota scale of the scale phase [default: 15, --quick: 1].
    #[arg(long)]
    scale_quota_scale: Option<f64>,

    /// Eligible executions of the drain without error filter [default: 10000].
    #[arg(long)]
    drain_executions: Option<u32>,

    /// Eligible executions of the drain with error filter and of the baseline [default: 1000].
    #[arg(long)]
    filter_executions: Option<u32>,

    /// Eligible executions of the first-redrive run (error filter, stopped at the first
    /// redrive) [default: 10000].
    #[arg(long)]
    first_executions: Option<u32>,

    /// State machines of the drain data sets [default: 10].
    #[arg(long)]
    state_machines: Option<u32>,

    /// Policies of the scale phase (5 state machines each) [default: 1000].
    #[arg(long)]
    scale_policies: Option<u32>,

    /// Executions of the scale phase [default: 100000].
    #[arg(long)]
    scale_executions: Option<u32>,

    /// Policies of the fleet phase (1 state machine each) [default: 5000].
    #[arg(long)]
    fleet_policies: Option<u32>,

    /// The operator's --aws-quota-share in the fleet phase [default: 0.5].
    #[arg(long)]
    fleet_share: Option<f64>,

    /// Quota scale of the fleet phase [default: 20, --quick: 2].
    #[arg(long)]
    fleet_quota_scale: Option<f64>,

    /// Eligible failed stages of the CodePipeline drain (as many ineligible pipelines again)
    /// [default: 500, --quick: 40].
    #[arg(long)]
    pipelines: Option<u32>,

    /// Factor on the emulator's CodePipeline buckets in the pipeline phase [default: 1].
    #[arg(long)]
    pipeline_quota_scale: Option<f64>,

    /// Failures per second of the latency phase [default: 5].
    #[arg(long)]
    latency_rate: Option<f64>,

    /// How long failures keep arriving in the latency phase [default: 40s].
    #[arg(long, value_parser = parse_duration)]
    latency_duration: Option<Duration>,

    /// Phases to run (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Vec<Phase>,

    /// Directory for redrive-bench.json and backlog.png.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,

    /// Run the scale phase's emulator in this process (its RSS then includes the emulator).
    #[arg(long)]
    in_process_emulator: bool,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// Internal: serve the scale phase's emulator (started by the benchmark itself).
    #[command(hide = true)]
    ServeEmulator {
        #[arg(long)]
        quota: QuotaPreset,
        #[arg(long)]
        quota_scale: f64,
        #[arg(long)]
        policies: u32,
        #[arg(long)]
        per_policy: u32,
        #[arg(long)]
        executions: u32,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .init();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redrive-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Internal::ServeEmulator {
        quota,
        quota_scale,
        policies,
        per_policy,
        executions,
    }) = args.internal
    {
        let q = Quota {
            preset: quota,
            scale: quota_scale,
        };
        let size = ScaleSize {
            policies,
            machines_per_policy: per_policy,
            executions,
        };
        return match runtime.block_on(bench::scale::serve_child(q, size)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("redrive-bench serve-emulator: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = config_from(args);
    let report = runtime.block_on(bench::run(config));
    print!("{}", bench::render(&report));
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn config_from(a: Args) -> BenchConfig {
    let mut c = if a.quick {
        BenchConfig::quick()
    } else {
        BenchConfig::standard()
    };
    c.quota.preset = a.quota;
    if let Some(s) = a.quota_scale {
        c.quota.scale = s;
    }
    if let Some(s) = a.scale_quota_scale {
        c.scale_quota_scale = s;
    }
    if let Some(n) = a.drain_executions {
        c.drain_executions = n;
    }
    if let Some(n) = a.filter_executions {
        c.filter_executions = n;
    }
    if let Some(n) = a.first_executions {
        c.first_executions = n;
    }
    if let Some(n) = a.state_machines {
        c.state_machines = n;
    }
    if let Some(n) = a.scale_policies {
        c.scale.policies = n;
    }
    if let Some(n) = a.scale_executions {
        c.scale.executions = n;
    }
    if let Some(n) = a.fleet_policies {
        c.fleet.policies = n;
        c.fleet.executions = n * 10;
    }
    if let Some(s) = a.fleet_share {
        c.fleet_share = s;
    }
    if let Some(s) = a.fleet_quota_scale {
        c.fleet_quota_scale = s;
    }
    if let Some(n) = a.pipelines {
        c.pipeline_stages = n;
    }
    if let Some(s) = a.pipeline_quota_scale {
        c.pipeline_quota_scale = s;
    }
    if let Some(r) = a.latency_rate {
        c.latency_rate = r;
    }
    if let Some(d) = a.latency_duration {
        c.latency_injection = d;
    }
    if !a.phases.is_empty() {
        c.phases = a.phases.into_iter().collect();
    }
    c.out = a.out;
    if !a.in_process_emulator {
        c.emulator_child = std::env::current_exe().ok().map(|program| ChildCommand {
            program,
            args: vec!["serve-emulator".into()],
        });
    }
    c
}
