//! Command line: `crd`, `plan`, `run`, `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::Timestamp;
use tokio::sync::watch;

use crate::aws::AwsSettings;
use crate::local::{self, PollObserver};
use crate::output;
use crate::policy::Policy;
use crate::policy_file::load_files;
use crate::reconcile::{Context, PolicyState, PollError, PollReport, PollSettings};
use crate::telemetry::{self, LogFormat};

/// Resumes failed AWS Step Functions executions from the point of failure, as declared by
/// RedrivePolicy resources.
#[derive(Parser, Debug)]
#[command(name = "redrive-operator", version, propagate_version = true)]
#[command(
    after_help = "Start with `redrive-operator demo`: it needs no AWS account and no cluster."
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "REDRIVE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `debug`, `info,aws_smithy_runtime=debug`).
    /// Default: `info` for `run`, `warn` for the other commands.
    #[arg(long, global = true, env = "RUST_LOG")]
    pub log_filter: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the RedrivePolicy CustomResourceDefinition (YAML).
    Crd,
    /// Show what each policy would redrive, and why the rest is skipped. Never redrives.
    Plan(Box<PlanArgs>),
    /// Run the redrive loop: on RedrivePolicy objects in the cluster, or with -f on policy files.
    Run(Box<RunArgs>),
    /// Run a policy against the built-in Step Functions emulator and show what happens.
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
}

/// AWS access settings shared by `plan` and `run`.
#[derive(Args, Debug, Clone)]
pub struct AwsArgs {
    /// Send all AWS calls to this URL (an emulator or a VPC endpoint). Operator-level only:
    /// policies cannot choose an endpoint. Without configured credentials, dummy ones are used.
    #[arg(long, env = "REDRIVE_AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// Attempts per AWS call, including the first: the SDK retries transport errors and 5xx
    /// with backoff; throttled answers are retried by the operator's per-API pacer.
    #[arg(long, env = "REDRIVE_AWS_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub aws_max_attempts: u32,

    /// Time limit of one AWS call, retries included (e.g. 30s).
    #[arg(long, env = "REDRIVE_AWS_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub aws_timeout: Duration,

    /// How long a read (a list, a describe) may wait for its API's send slot when the pace or
    /// the quota share binds, before its own --aws-timeout starts; redrives and stage retries
    /// never wait beyond --aws-timeout.
    #[arg(long, env = "REDRIVE_AWS_QUEUE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub aws_queue_timeout: Duration,

    /// Share of each AWS API's published quota the operator may use per account and region
    /// (0 < x <= 1), e.g. 0.5 leaves half of every bucket's refill and burst to other tools;
    /// 1 = no cap (the pacer follows the bucket, even a raised quota).
    #[arg(long, env = "REDRIVE_AWS_QUOTA_SHARE", default_value_t = 1.0, value_parser = crate::aws::parse_quota_share)]
    pub aws_quota_share: f64,

    /// RedriveExecution and DescribeExecution calls in flight per policy.
    #[arg(long, env = "REDRIVE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// How long selector results (ListStateMachines, ListPipelines, GET /flows, tags) are reused.
    #[arg(long, env = "REDRIVE_DISCOVERY_TTL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub discovery_ttl: Duration,

    #[command(flatten)]
    pub adobe: AdobeArgs,
}

/// Adobe Experience Platform settings (Flow Service policies). Operator-level only: a policy
/// cannot choose where its bearer token is sent.
#[derive(Args, Debug, Clone)]
pub struct AdobeArgs {
    /// Base URL of the Flow Service API.
    #[arg(long, env = "REDRIVE_ADOBE_PLATFORM_URL", default_value = crate::targets::flowservice::DEFAULT_PLATFORM_URL)]
    pub adobe_platform_url: String,

    /// URL of the IMS token endpoint (OAuth server-to-server).
    #[arg(long, env = "REDRIVE_ADOBE_IMS_URL", default_value = crate::targets::flowservice::DEFAULT_IMS_URL)]
    pub adobe_ims_url: String,

    /// Spelling of the re-trigger operation: the tutorial's re-trigger, or the OpenAPI spec's
    /// RE_TRIGGER.
    #[arg(
        long,
        env = "REDRIVE_ADOBE_RETRIGGER_OP",
        value_enum,
        default_value = "re-trigger"
    )]
    pub adobe_retrigger_op: crate::targets::flowservice::platform::ReTriggerOp,

    /// Local mode: directory of credentials Secrets for flowService policies, one subdirectory
    /// per Secret name and one file per key (the layout of a Secret mounted as a volume).
    #[arg(long, env = "REDRIVE_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

impl AwsArgs {
    pub fn poll_settings(&self) -> PollSettings {
        PollSettings {
            aws: AwsSettings {
                endpoint_url: self.endpoint_url.clone(),
                max_attempts: self.aws_max_attempts,
                operation_timeout: self.aws_timeout,
                queue_timeout: self.aws_queue_timeout,
                quota_share: self.aws_quota_share,
                quota_scale: 1.0,
            },
            concurrency: usize::from(self.concurrency),
            discovery_ttl: self.discovery_ttl,
            adobe: crate::targets::flowservice::AdobeSettings {
                platform_url: self.adobe.adobe_platform_url.clone(),
                ims_url: self.adobe.adobe_ims_url.clone(),
                retrigger_op: self.adobe.adobe_retrigger_op,
            },
            ..PollSettings::default()
        }
    }

    /// Where local mode reads credentials Secrets.
    pub fn local_secrets(&self) -> crate::targets::flowservice::credentials::SecretStore {
        match &self.adobe.secrets_dir {
            Some(dir) => crate::targets::flowservice::credentials::SecretStore::Dir(dir.clone()),
            None => crate::targets::flowservice::credentials::SecretStore::None,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Policy files (YAML or JSON; several documents per file allowed).
    #[arg(
        short = 'f',
        long = "file",
        required = true,
        env = "REDRIVE_POLICY_FILES",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,

    /// Output format.
    #[arg(
        short = 'o',
        long,
        env = "REDRIVE_OUTPUT",
        value_enum,
        default_value = "table"
    )]
    pub output: OutputFormat,

    /// Read the attempt ledger of `run --state-dir` here, to show claimed attempts (never
    /// written).
    #[arg(long, env = "REDRIVE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Policy files (YAML or JSON; several documents per file allowed): local mode. Without
    /// -f the operator watches RedrivePolicy objects in the cluster (in-cluster config or
    /// KUBECONFIG).
    #[arg(
        short = 'f',
        long = "file",
        env = "REDRIVE_POLICY_FILES",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,

    /// Local mode: poll each policy once, print the totals and exit.
    #[arg(long, env = "REDRIVE_ONCE", requires = "files")]
    pub once: bool,

    /// Local mode: directory of the crash-safe attempt ledger, needed by targets without a
    /// client token (codePipeline, flowService). Processes sharing a directory never act on the
    /// same attempt.
    #[arg(long, env = "REDRIVE_STATE_DIR", requires = "files")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub aws: AwsArgs,

    #[command(flatten)]
    pub events: EventArgs,

    #[command(flatten)]
    pub admin: AdminArgs,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Event hints (EventBridge → SQS; docs/events.md). Operator-level only: a policy cannot
/// choose a queue.
#[derive(Args, Debug, Clone)]
pub struct EventArgs {
    /// SQS queue URL an EventBridge rule feeds with Step Functions / CodePipeline status
    /// change events (repeatable). Events are hints: polling (the sweep) stays the safety net.
    #[arg(
        long = "event-queue-url",
        env = "REDRIVE_EVENT_QUEUE_URLS",
        value_delimiter = ','
    )]
    pub queue_urls: Vec<String>,

    /// Region of the queues (default: read from the queue URL, sqs.REGION.amazonaws.com).
    #[arg(long, env = "REDRIVE_EVENT_QUEUE_REGION")]
    pub event_queue_region: Option<String>,

    /// Send SQS calls to this URL (an emulator, or a VPC endpoint); `--endpoint-url` is for
    /// the workflow services.
    #[arg(long, env = "REDRIVE_SQS_ENDPOINT_URL")]
    pub sqs_endpoint_url: Option<String>,

    /// With events on, each policy's full poll (the sweep, which catches lost events) runs
    /// every max(pollInterval, this).
    #[arg(long, env = "REDRIVE_SWEEP_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub sweep_interval: Duration,

    /// How long a received event stays invisible to other consumers while it is decided.
    #[arg(long, env = "REDRIVE_EVENT_VISIBILITY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub event_visibility_timeout: Duration,
}

impl EventArgs {
    /// The queues' region: the flag, else the one in the first queue URL.
    pub fn region(&self) -> Option<String> {
        self.event_queue_region.clone().or_else(|| {
            self.queue_urls.iter().find_map(|u| {
                let host = u.split("://").nth(1)?.split('/').next()?;
                let mut parts = host.split('.');
                (parts.next()? == "sqs").then(|| parts.next().map(str::to_string))?
            })
        })
    }

    /// The event source, or `None` without queues.
    pub async fn source(
        &self,
        aws: &AwsSettings,
        concurrency: usize,
    ) -> Result<Option<crate::events::EventSource>, String> {
        if self.queue_urls.is_empty() {
            return Ok(None);
        }
        let region = self.region().ok_or(
            "--event-queue-url: cannot tell the queue's region from its URL; pass --event-queue-region",
        )?;
        let settings = AwsSettings {
            endpoint_url: self.sqs_endpoint_url.clone(),
            ..aws.clone()
        };
        let config = crate::aws::sdk_config(&settings, &region).await;
        Ok(Some(crate::events::EventSource::new(
            aws_sdk_sqs::Client::new(&config),
            self.queue_urls
                .iter()
                .map(|url| crate::events::consumer::QueueSettings {
                    url: url.clone(),
                    visibility_timeout: self.event_visibility_timeout,
                    concurrency,
                })
                .collect(),
            self.sweep_interval,
        )))
    }
}

/// Admin server settings.
#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Address of the admin server (/metrics, /livez, /readyz); `off` disables it. Not started
    /// by `run --once`.
    #[arg(long, env = "REDRIVE_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: String,

    /// /livez fails when a poll or the Kubernetes API heartbeat is late by more than this many
    /// of its intervals.
    #[arg(long, env = "REDRIVE_LIVENESS_STALE_FACTOR", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub liveness_stale_factor: u32,
}

impl AdminArgs {
    /// Start the admin server unless disabled.
    async fn start(
        &self,
        metrics: Arc<crate::metrics::Metrics>,
        health: Arc<crate::admin::Health>,
    ) -> Result<(), String> {
        if self.admin_addr == "off" {
            return Ok(());
        }
        let addr: std::net::SocketAddr = self
            .admin_addr
            .parse()
            .map_err(|e| format!("--admin-addr {:?}: {e}", self.admin_addr))?;
        crate::admin::spawn(addr, metrics, health)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot start the admin server on {addr}: {e}"))
    }
}

/// In-cluster mode settings (ignored with -f).
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Watch only policies matching this label selector (e.g. `shard=a`), to split policies
    /// between operator deployments.
    #[arg(long, env = "REDRIVE_SELECTOR")]
    pub selector: Option<String>,

    /// Elect a leader through a Lease so that only one replica acts.
    #[arg(long, env = "REDRIVE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease.
    #[arg(long, env = "REDRIVE_LEASE_NAME", default_value = "redrive-operator")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease and in events (default: the hostname).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a lease stays valid without renewal; a standby takes over after it.
    #[arg(long, env = "REDRIVE_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// How long before expiry the leader renews.
    #[arg(long, env = "REDRIVE_LEASE_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_grace: Duration,

    /// Restrict the IAM roles a namespace may name: NAMESPACE=ROLE_ARN_GLOB, repeatable
    /// (`*` for every namespace). Without any rule every role may be named.
    #[arg(
        long = "allowed-role",
        env = "REDRIVE_ALLOWED_ROLES",
        value_delimiter = ','
    )]
    pub allowed_roles: Vec<crate::tenancy::RoleRule>,

    /// Refuse policies without stepFunctions.roleArn (they would act with the operator's identity).
    #[arg(long, env = "REDRIVE_REQUIRE_ROLE")]
    pub require_role: bool,

    /// Policies reconciled at once.
    #[arg(long, env = "REDRIVE_RECONCILE_CONCURRENCY", default_value_t = 8)]
    pub reconcile_concurrency: u16,

    /// How often the Kubernetes API is probed for /livez.
    #[arg(long, env = "REDRIVE_KUBE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub kube_heartbeat: Duration,
}

/// Entry point of the `redrive-operator` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = if matches!(cli.command, Command::Run(_)) {
        "info"
    } else {
        "warn"
    };
    telemetry::init(
        cli.log_format,
        cli.log_filter.as_deref().unwrap_or(default_filter),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Crd => {
                print!("{}", crate::crd::crd_yaml());
                ExitCode::SUCCESS
            }
            Command::Plan(args) => plan(*args).await,
            Command::Run(args) => run(*args).await,
            #[cfg(feature = "demo")]
            Command::Demo(args) => crate::demo::run(args).await,
        }
    })
}

/// Load policies; print one line per invalid one. Returns the valid ones and whether any failed.
fn load(files: &[PathBuf]) -> (Vec<Policy>, bool) {
    let (policies, errors) = load_files(files);
    for e in &errors {
        eprintln!("error: {e}");
    }
    (policies, !errors.is_empty())
}

/// Collects plan reports for printing after every policy has been polled.
#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<(Policy, Result<PollReport, PollError>)>>);

impl PollObserver for Collect {
    fn observe(&self, policy: &Policy, result: &Result<PollReport, PollError>, _: &PolicyState) {
        self.0
            .lock()
            .expect("collector lock")
            .push((policy.clone(), result.clone()));
    }
}

async fn plan(args: PlanArgs) -> ExitCode {
    let (policies, mut failed) = load(&args.files);
    let mut ctx = Context::new(args.aws.poll_settings()).with_secrets(args.aws.local_secrets());
    if let Some(dir) = &args.state_dir {
        match crate::ledger::file::FileLedger::open_read_only(dir) {
            Ok(l) => ctx = ctx.with_ledger(Arc::new(l)),
            Err(e) => {
                eprintln!("error: --state-dir {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let ctx = Arc::new(ctx);
    let collect = Arc::new(Collect::default());
    let (_stop_tx, stop_rx) = watch::channel(false);
    local::run(ctx, policies, true, true, collect.clone(), stop_rx).await;
    let mut reports = std::mem::take(&mut *collect.0.lock().expect("collector lock"));
    reports.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let now = Timestamp::now();
    let mut json_out = Vec::new();
    for (policy, result) in &reports {
        match result {
            Ok(report) => {
                for line in output::issue_lines(report) {
                    eprintln!("{line}");
                }
                failed |= !report.errors().is_empty();
                match args.output {
                    OutputFormat::Table => {
                        println!("{}", output::plan_table(report, now));
                        println!("{}\n", output::plan_summary(report));
                    }
                    OutputFormat::Json => json_out.push(output::plan_json(report)),
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("error: policy {}: {e}", policy.id);
            }
        }
    }
    if args.output == OutputFormat::Json {
        let doc = serde_json::json!({"policies": json_out});
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a line per poll (stdout) and the problems it met (stderr).
struct RunPrinter;

impl PollObserver for RunPrinter {
    fn observe(
        &self,
        policy: &Policy,
        result: &Result<PollReport, PollError>,
        state: &PolicyState,
    ) {
        match result {
            Ok(report) => {
                for line in output::issue_lines(report) {
                    eprintln!("{line}");
                }
                let acted: Vec<String> = report
                    .action_counts()
                    .iter()
                    .map(|(k, v)| format!("{} {k}", output::thousands(*v)))
                    .collect();
                println!(
                    "{}; acted: {}; redriven so far: {}",
                    output::plan_summary(report),
                    if acted.is_empty() {
                        "nothing".to_string()
                    } else {
                        acted.join(", ")
                    },
                    output::thousands(state.redriven_total)
                );
            }
            Err(e) => eprintln!("error: policy {}: {e}", policy.id),
        }
    }
}

async fn run(args: RunArgs) -> ExitCode {
    if args.files.is_empty() {
        return run_in_cluster(args).await;
    }
    let (policies, invalid) = load(&args.files);
    if policies.is_empty() {
        eprintln!("error: no valid policy to run");
        return ExitCode::FAILURE;
    }
    let (metrics, health) = observability(&args.admin);
    // A one-shot `--once` run serves no probes: it binds no port.
    if !args.once
        && let Err(e) = args.admin.start(metrics.clone(), health.clone()).await
    {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    health.set_ready(true);
    // Local mode always acts: it is its own leader.
    metrics.leader.set(1);
    let mut ctx = Context::with_observability(args.aws.poll_settings(), metrics, health)
        .with_secrets(args.aws.local_secrets());
    if let Some(dir) = &args.state_dir {
        match crate::ledger::file::FileLedger::open(dir) {
            Ok(l) => ctx = ctx.with_ledger(Arc::new(l)),
            Err(e) => {
                eprintln!("error: --state-dir {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let ctx = Arc::new(ctx);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let events = if args.once {
        None
    } else {
        match event_source(&args).await {
            Ok(e) => e,
            Err(code) => return code,
        }
    };
    let totals = local::run_with_events(
        ctx.clone(),
        policies,
        args.once,
        false,
        Arc::new(RunPrinter),
        stop_rx,
        events,
    )
    .await;
    println!("{}", output::calls_line(totals.redriven, &ctx.calls));
    if invalid || totals.failed_polls > 0 || totals.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The event source the flags configure (None without queues); an error is printed.
async fn event_source(args: &RunArgs) -> Result<Option<crate::events::EventSource>, ExitCode> {
    args.events
        .source(
            &args.aws.poll_settings().aws,
            usize::from(args.aws.concurrency),
        )
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        })
}

/// Exit code of a replica that lost the lease while leading.
pub const EXIT_LEADERSHIP_LOST: u8 = 3;

async fn run_in_cluster(args: RunArgs) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot connect to Kubernetes (in-cluster config or KUBECONFIG): {e}");
            return ExitCode::FAILURE;
        }
    };
    let c = &args.cluster;
    let (metrics, health) = observability(&args.admin);
    if let Err(e) = args.admin.start(metrics.clone(), health.clone()).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    spawn_kube_heartbeat(
        client.clone(),
        c.namespace.clone(),
        c.kube_heartbeat,
        health.clone(),
    );
    let identity = c.identity.clone().unwrap_or_else(default_identity);
    let mut poll_settings = args.aws.poll_settings();
    poll_settings.holder = format!("{identity}/{}", std::process::id());
    let polls = Arc::new(
        Context::with_observability(poll_settings, metrics.clone(), health)
            .with_ledger(Arc::new(crate::ledger::kube::KubeLedger::new(
                client.clone(),
            )))
            .with_secrets(crate::targets::flowservice::credentials::SecretStore::Kube(
                client.clone(),
            )),
    );
    let events = match event_source(&args).await {
        Ok(e) => e,
        Err(code) => return code,
    };
    let settings = crate::controller::ControllerSettings {
        namespace: c.namespace.clone(),
        label_selector: c.selector.clone(),
        roles: crate::tenancy::RoleAllowlist {
            rules: c.allowed_roles.clone(),
            require_role: c.require_role,
        },
        instance: identity.clone(),
        concurrency: c.reconcile_concurrency.max(1),
        max_error_backoff: Duration::from_secs(300),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let result = if c.leader_election {
        let lease = crate::leader::LeaseSettings {
            name: c.lease_name.clone(),
            namespace: c.lease_namespace.clone().unwrap_or_else(pod_namespace),
            identity,
            duration: c.lease_duration,
            grace: c.lease_grace,
        };
        let work_client = client.clone();
        let gauge = metrics.clone();
        crate::leader::run_as_leader(
            client,
            lease,
            stop_rx,
            move |leader| {
                gauge.leader.set(i64::from(leader));
            },
            move |graceful| crate::controller::run(work_client, settings, polls, events, graceful),
        )
        .await
        .map(|outcome| outcome == crate::leader::LeaderOutcome::LeadershipLost)
    } else {
        let mut stop = stop_rx.clone();
        metrics.leader.set(1);
        crate::controller::run(client, settings, polls, events, async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map(|()| false)
    };
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(EXIT_LEADERSHIP_LOST),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn observability(admin: &AdminArgs) -> (Arc<crate::metrics::Metrics>, Arc<crate::admin::Health>) {
    (
        Arc::new(crate::metrics::Metrics::new()),
        Arc::new(crate::admin::Health::new(admin.liveness_stale_factor)),
    )
}

/// Probe the Kubernetes API (a one-item list of policies) every `interval`: /livez fails when it
/// stops answering, /readyz turns true after the first answer (the initial list).
fn spawn_kube_heartbeat(
    client: kube::Client,
    namespace: Option<String>,
    interval: Duration,
    health: Arc<crate::admin::Health>,
) {
    use kube::api::{Api, ListParams};
    let api: Api<kube::api::PartialObjectMeta<crate::crd::RedrivePolicy>> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(interval, api.list_metadata(&ListParams::default().limit(1)))
                .await
            {
                Ok(Ok(_)) => {
                    health.kube_ok(interval);
                    health.set_ready(true);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "Kubernetes API heartbeat failed"),
                Err(_) => tracing::warn!("Kubernetes API heartbeat timed out"),
            }
        }
    });
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "redrive-operator".into());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The pod's namespace from the service account mount, else `default`.
fn pod_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|n| n.trim().to_string())
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into())
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
