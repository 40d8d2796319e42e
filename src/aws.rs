//! AWS client construction: region, credentials, endpoint override, retries, call counting,
//! the service's clock (from each answer's `Date` header, [`crate::clock`]).
//!
//! The endpoint override is an operator-level setting only (never from a policy), so a tenant
//! cannot make the operator send signed requests to a host of their choosing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::clock::ServiceClock;
use crate::metrics::Metrics;
use crate::policy::TargetKind;

/// Operator-wide AWS settings (flags of `run`, `plan`, ...).
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Send every AWS call to this URL instead of the real endpoint (emulators, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// Attempts per call, including the first (SDK retry with backoff and adaptive rate limiting).
    pub max_attempts: u32,
    /// Time limit of one call, all attempts included.
    pub operation_timeout: Duration,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            max_attempts: 5,
            operation_timeout: Duration::from_secs(30),
        }
    }
}

/// Outcome class of one HTTP attempt, as counted in [`CallCounter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttemptResult {
    Ok,
    Throttled,
    ClientError,
    ServerError,
    /// No HTTP response (connection refused or reset, timeout).
    NoResponse,
}

impl AttemptResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Ok => "ok",
            AttemptResult::Throttled => "throttled",
            AttemptResult::ClientError => "client_error",
            AttemptResult::ServerError => "server_error",
            AttemptResult::NoResponse => "no_response",
        }
    }
}

/// Counts every HTTP attempt the SDK makes (retries included) by API and result: this is what
/// AWS quotas count.
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    inner: Arc<Mutex<BTreeMap<(String, AttemptResult), u64>>>,
    metrics: Option<Arc<Metrics>>,
}

impl CallCounter {
    /// A counter that also feeds the Prometheus metrics.
    pub fn with_metrics(metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::default(),
            metrics: Some(metrics),
        }
    }

    /// One HTTP attempt of `target`'s (`stepfunctions`, `codepipeline`) API `api`.
    pub fn record(
        &self,
        target: &str,
        api: &str,
        result: AttemptResult,
        elapsed: Option<Duration>,
    ) {
        {
            let mut map = self.inner.lock().expect("call counter lock");
            *map.entry((api.to_string(), result)).or_insert(0) += 1;
        }
        if let Some(m) = &self.metrics {
            m.record_aws(target, api, result.as_str(), elapsed);
        }
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<(String, AttemptResult), u64> {
        self.inner.lock().expect("call counter lock").clone()
    }

    /// Attempts by API, all results together.
    pub fn by_api(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ((api, _), n) in self.snapshot() {
            *out.entry(api).or_insert(0) += n;
        }
        out
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn count(&self, api: &str, result: AttemptResult) -> u64 {
        self.snapshot()
            .get(&(api.to_string(), result))
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
struct CountingInterceptor {
    counter: CallCounter,
    /// The metrics label of the service (`TargetKind::as_str`).
    target: &'static str,
    /// The client's estimate of the service's clock, fed from every answer's `Date` header.
    clock: ServiceClock,
}

/// When the current attempt started (for latency).
#[derive(Clone, Copy, Debug)]
struct AttemptStart(Instant);

impl Storable for AttemptStart {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "redrive-operator-call-counter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStart(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let api = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "Unknown".into());
        let result = match context.response() {
            None => AttemptResult::NoResponse,
            Some(resp) => {
                let status = resp.status().as_u16();
                if status < 300 {
                    AttemptResult::Ok
                } else if status == 429 || body_mentions_throttling(resp.body().bytes()) {
                    AttemptResult::Throttled
                } else if status >= 500 {
                    AttemptResult::ServerError
                } else {
                    AttemptResult::ClientError
                }
            }
        };
        let elapsed = cfg.load::<AttemptStart>().map(|s| s.0.elapsed());
        self.counter.record(self.target, &api, result, elapsed);
        // Any answer, errors included, carries the service's time (as the SDK's own skew
        // correction for signing reads it).
        if let Some(date) = context.response().and_then(|r| r.headers().get("date")) {
            self.clock.observe_date_header(date);
        }
        Ok(())
    }
}

/// AWS JSON error bodies name their type (`"__type": "...#ThrottlingException"`); the SDK has
/// read the body into memory by the time attempts finish.
fn body_mentions_throttling(body: Option<&[u8]>) -> bool {
    const NEEDLES: [&[u8]; 3] = [
        b"ThrottlingException",
        b"TooManyRequestsException",
        b"RequestLimitExceeded",
    ];
    body.is_some_and(|b| NEEDLES.iter().any(|n| b.windows(n.len()).any(|w| w == *n)))
}

/// Whether the process has AWS credentials configured through the environment or files.
fn credentials_configured() -> bool {
    const VARS: [&str; 5] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ];
    VARS.iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        || std::env::var_os("HOME").is_some_and(|h| {
            let home = std::path::PathBuf::from(h);
            home.join(".aws/credentials").exists() || home.join(".aws/config").exists()
        })
}

/// Build the shared SDK config for one region.
///
/// With an endpoint override and no credentials configured, static dummy credentials are used
/// (emulators accept any signature); this also keeps the default chain from probing the EC2
/// instance metadata service.
pub async fn sdk_config(settings: &AwsSettings, region: &str) -> aws_config::SdkConfig {
    let retry = RetryConfig::adaptive()
        .with_max_attempts(settings.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(5));
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(settings.operation_timeout)
        .connect_timeout(Duration::from_secs(5))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
        if !credentials_configured() {
            loader = loader.credentials_provider(Credentials::new(
                "AKIDREDRIVEEMULATOR",
                "redrive-emulator-dummy-secret",
                None,
                None,
                "redrive-operator-endpoint-override",
            ));
        }
    }
    loader.load().await
}

/// A Step Functions client that counts its calls into `counter` and estimates the service's
/// clock into `clock`.
pub fn sfn_client(
    config: &aws_config::SdkConfig,
    counter: &CallCounter,
    clock: &ServiceClock,
) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::config::Builder::from(config)
        .interceptor(CountingInterceptor {
            counter: counter.clone(),
            target: TargetKind::StepFunctions.as_str(),
            clock: clock.clone(),
        })
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

/// A CodePipeline client that counts its calls into `counter` and estimates the service's
/// clock into `clock`.
pub fn codepipeline_client(
    config: &aws_config::SdkConfig,
    counter: &CallCounter,
    clock: &ServiceClock,
) -> aws_sdk_codepipeline::Client {
    let conf = aws_sdk_codepipeline::config::Builder::from(config)
        .interceptor(CountingInterceptor {
            counter: counter.clone(),
            target: TargetKind::CodePipeline.as_str(),
            clock: clock.clone(),
        })
        .build();
    aws_sdk_codepipeline::Client::from_conf(conf)
}
