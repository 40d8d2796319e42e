//! `redrive-emulator`: a local AWS Step Functions and CodePipeline endpoint for tests and demos.
//!
//! Prints `listening on http://HOST:PORT` as the first line on stdout, then serves until
//! SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use redrive_emulator::{
    self as emulator, AutoRetryScope, CodePipelineConfig, EmulatorConfig, EventFaults,
    EventsConfig, FaultConfig, FlowServiceConfig, PendingAutoRetry, QuotaPreset, ReplayMode,
    RetriggerResponse, Scenario, TokenScope, parse_duration,
};

/// Local AWS Step Functions (AWS JSON 1.0) and CodePipeline (AWS JSON 1.1) emulator for redrive
/// testing and demos.
///
/// Point any AWS SDK or the AWS CLI at the printed endpoint (any credentials; requests must be
/// SigV4-signed). Admin API: GET /_emulator/{health,ledger,stats,clock,faults},
/// POST /_emulator/clock/advance {"seconds":N}, PUT /_emulator/faults, POST /_emulator/scenario,
/// POST /_emulator/executions/fail {"arn","error","cause"}, GET /_emulator/executions?arn=ARN,
/// GET /_emulator/codepipeline/ledger, GET /_emulator/codepipeline/pipelines/NAME[/executions],
/// POST /_emulator/codepipeline/pipelines/NAME/{executions,update},
/// POST /_emulator/codepipeline/actions/complete {"pipeline","stage","action","outcome"}.
/// Adobe Flow Service / IMS: POST /ims/token/v3, GET /data/foundation/flowservice/{runs,flows}[/ID],
/// POST /data/foundation/flowservice/runs/ID/action?op=re-trigger; admin under
/// /_emulator/flowservice/ (ledger, flows/ID/runs, runs/ID/complete, ims/clients, throttle).
/// EventBridge events (with --eventbridge-endpoint): GET /_emulator/events/stats,
/// GET|PUT /_emulator/events/faults.
#[derive(Debug, Parser)]
#[command(name = "redrive-emulator", version, about, long_about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// Scenario to seed: a YAML or JSON file, `demo` (built-in Step Functions, CodePipeline and
    /// Flow Service demo data) or `empty`.
    #[arg(long, env = "EMULATOR_SCENARIO", default_value = "demo")]
    scenario: String,

    /// Throttling preset: none, us-east-1 (also us-west-2/eu-west-1) or other (all other regions).
    #[arg(long, env = "EMULATOR_QUOTA", default_value = "none")]
    quota: QuotaPreset,

    /// Multiply every throttling bucket size and refill rate by this factor.
    #[arg(long, env = "EMULATOR_QUOTA_SCALE", default_value_t = 1.0)]
    quota_scale: f64,

    /// Region used in ARNs.
    #[arg(long, env = "EMULATOR_REGION", default_value = "us-east-1")]
    region: String,

    /// Account id used in ARNs.
    #[arg(long, env = "EMULATOR_ACCOUNT", default_value = "123456789012")]
    account: String,

    /// Seed of the fault-injection RNG.
    #[arg(long, env = "EMULATOR_SEED", default_value_t = 0)]
    seed: u64,

    /// Probability of an HTTP 500/503 JSON error per call.
    #[arg(long, env = "EMULATOR_FAULT_SERVER_ERROR_RATE", default_value_t = 0.0)]
    fault_server_error_rate: f64,

    /// Probability of a malformed response (HTML 500 page or truncated JSON 200).
    #[arg(long, env = "EMULATOR_FAULT_MALFORMED_RATE", default_value_t = 0.0)]
    fault_malformed_rate: f64,

    /// Probability of closing the connection without a response.
    #[arg(long, env = "EMULATOR_FAULT_DROP_RATE", default_value_t = 0.0)]
    fault_drop_rate: f64,

    /// Extra latency (e.g. 200ms) added with probability --fault-latency-rate.
    #[arg(long, env = "EMULATOR_FAULT_LATENCY", value_parser = parse_duration)]
    fault_latency: Option<Duration>,

    /// Probability that --fault-latency applies to a call.
    #[arg(long, env = "EMULATOR_FAULT_LATENCY_RATE", default_value_t = 1.0)]
    fault_latency_rate: f64,

    /// Restrict faults to these operations (comma-separated, e.g. RedriveExecution,ListExecutions).
    #[arg(long, env = "EMULATOR_FAULT_ONLY_APIS", value_delimiter = ',')]
    fault_only_apis: Vec<String>,

    /// State machine ARNs answering AccessDeniedException for every call (comma-separated).
    #[arg(long, env = "EMULATOR_ACCESS_DENIED", value_delimiter = ',')]
    access_denied: Vec<String>,

    /// What an idempotent RedriveExecution replay returns.
    #[arg(
        long,
        env = "EMULATOR_REPLAY",
        value_enum,
        default_value = "original-redrive-date"
    )]
    replay: ReplayMode,

    /// Client-token scope (per-execution as documented, or strict cross-execution rejection).
    #[arg(
        long,
        env = "EMULATOR_TOKEN_SCOPE",
        value_enum,
        default_value = "per-execution"
    )]
    token_scope: TokenScope,

    /// Open-execution quota (ExecutionLimitExceeded beyond it).
    #[arg(
        long,
        env = "EMULATOR_MAX_OPEN_EXECUTIONS",
        default_value_t = 1_000_000
    )]
    max_open_executions: u64,

    /// Start the emulated clock this far ahead of real time (e.g. 1h).
    #[arg(long, env = "EMULATOR_CLOCK_OFFSET", value_parser = parse_duration)]
    clock_offset: Option<Duration>,

    /// CodePipeline pipelines (names or ARNs) answering AccessDeniedException (comma-separated).
    #[arg(long, env = "EMULATOR_ACCESS_DENIED_PIPELINES", value_delimiter = ',')]
    access_denied_pipelines: Vec<String>,

    /// Delay before a native CodePipeline stage auto-retry (onFailure RETRY) starts.
    #[arg(long, env = "EMULATOR_CODEPIPELINE_AUTO_RETRY_DELAY", value_parser = parse_duration)]
    codepipeline_auto_retry_delay: Option<Duration>,

    /// How many native auto-retries a failed stage gets.
    #[arg(
        long,
        env = "EMULATOR_CODEPIPELINE_AUTO_RETRY_SCOPE",
        value_enum,
        default_value = "once-per-stage-execution"
    )]
    codepipeline_auto_retry_scope: AutoRetryScope,

    /// What RetryStageExecution does while a native auto-retry is pending.
    #[arg(
        long,
        env = "EMULATOR_CODEPIPELINE_RETRY_WHILE_AUTO_PENDING",
        value_enum,
        default_value = "conflict"
    )]
    codepipeline_retry_while_auto_pending: PendingAutoRetry,

    /// Default run time of a CodePipeline action attempt.
    #[arg(long, env = "EMULATOR_CODEPIPELINE_ACTION_DURATION", value_parser = parse_duration)]
    codepipeline_action_duration: Option<Duration>,

    /// Lifetime of IMS access tokens (expires_in), default 86399s.
    #[arg(long, env = "EMULATOR_FLOWSERVICE_TOKEN_TTL", value_parser = parse_duration)]
    flowservice_token_ttl: Option<Duration>,

    /// Run time of new Flow Service runs (re-triggered or scheduled) unless scripted.
    #[arg(long, env = "EMULATOR_FLOWSERVICE_RUN_TIME", value_parser = parse_duration)]
    flowservice_run_time: Option<Duration>,

    /// Body of a successful re-trigger: the tutorial's {id, etag} or the spec's full run.
    #[arg(
        long,
        env = "EMULATOR_FLOWSERVICE_RETRIGGER_RESPONSE",
        value_enum,
        default_value = "id-and-etag"
    )]
    flowservice_retrigger_response: RetriggerResponse,
    /// Publish Step Functions / CodePipeline status-change events with PutEvents to this
    /// EventBridge endpoint (e.g. moto's http://127.0.0.1:PORT); unset = no events.
    #[arg(long, env = "EMULATOR_EVENTBRIDGE_ENDPOINT")]
    eventbridge_endpoint: Option<String>,
    /// Event bus of the published events.
    #[arg(long, env = "EMULATOR_EVENT_BUS_NAME", default_value = "default")]
    event_bus_name: String,
    /// Probability that a status-change event is never published.
    #[arg(long, env = "EMULATOR_EVENT_DROP_RATE", default_value_t = 0.0)]
    event_drop_rate: f64,
    /// Probability that a status-change event is published twice.
    #[arg(long, env = "EMULATOR_EVENT_DUPLICATE_RATE", default_value_t = 0.0)]
    event_duplicate_rate: f64,
    /// Probability that a status-change event is held back and published after the next one.
    #[arg(long, env = "EMULATOR_EVENT_REORDER_RATE", default_value_t = 0.0)]
    event_reorder_rate: f64,
    /// Fixed delay before each event is published (e.g. 500ms).
    #[arg(long, env = "EMULATOR_EVENT_DELAY", value_parser = parse_duration)]
    event_delay: Option<Duration>,
    /// Extra random delay per event, uniform up to this (e.g. 2s).
    #[arg(long, env = "EMULATOR_EVENT_DELAY_JITTER", value_parser = parse_duration)]
    event_delay_jitter: Option<Duration>,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("redrive-emulator: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let scenario = match args.scenario.as_str() {
        "demo" => {
            let mut s = Scenario::demo();
            s.pipelines = Scenario::demo_pipelines().pipelines;
            let flows = Scenario::demo_flows();
            s.flows = flows.flows;
            s.ims_clients = flows.ims_clients;
            s
        }
        "empty" | "none" => Scenario::new(),
        path => Scenario::from_file(PathBuf::from(path))?,
    };
    let config = EmulatorConfig {
        region: args.region,
        account: args.account,
        quota: args.quota,
        quota_scale: args.quota_scale,
        faults: FaultConfig {
            server_error_rate: args.fault_server_error_rate,
            malformed_rate: args.fault_malformed_rate,
            drop_rate: args.fault_drop_rate,
            latency: args.fault_latency,
            latency_rate: args.fault_latency_rate,
            only_apis: args.fault_only_apis,
            access_denied_state_machines: args.access_denied,
            access_denied_pipelines: args.access_denied_pipelines,
        },
        seed: args.seed,
        replay: args.replay,
        token_scope: args.token_scope,
        max_open_executions: args.max_open_executions,
        listen: args.listen,
        clock_offset: args.clock_offset.unwrap_or_default(),
        bucket_overrides: Default::default(),
        codepipeline: {
            let d = CodePipelineConfig::default();
            CodePipelineConfig {
                auto_retry_delay: args
                    .codepipeline_auto_retry_delay
                    .unwrap_or(d.auto_retry_delay),
                auto_retry_scope: args.codepipeline_auto_retry_scope,
                retry_while_auto_retry_pending: args.codepipeline_retry_while_auto_pending,
                default_action_duration: args
                    .codepipeline_action_duration
                    .unwrap_or(d.default_action_duration),
                ..d
            }
        },
        flowservice: {
            let d = FlowServiceConfig::default();
            FlowServiceConfig {
                token_ttl: args.flowservice_token_ttl.unwrap_or(d.token_ttl),
                default_run_time: args.flowservice_run_time.unwrap_or(d.default_run_time),
                retrigger_response: args.flowservice_retrigger_response,
                ..d
            }
        },
        events: EventsConfig {
            eventbridge_endpoint: args.eventbridge_endpoint,
            event_bus_name: args.event_bus_name,
            faults: EventFaults {
                drop_rate: args.event_drop_rate,
                duplicate_rate: args.event_duplicate_rate,
                reorder_rate: args.event_reorder_rate,
                delay: args.event_delay,
                delay_jitter: args.event_delay_jitter,
                ..EventFaults::default()
            },
            ..EventsConfig::default()
        },
    };
    let executions = scenario.execution_count();
    let pipelines = scenario.pipelines.len();
    let flows = scenario.flows.len();
    let handle = emulator::start(config, scenario).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", handle.endpoint)?;
        out.flush()?;
    }
    eprintln!(
        "redrive-emulator: {} executions seeded, {} pipelines, {} flows; admin API at {}/_emulator/health",
        executions, pipelines, flows, handle.endpoint
    );
    shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
