//! AWS client construction: region, credentials, endpoint override, retries, call counting,
//! the service's clock (from each answer's `Date` header, [`crate::clock`]).
//!
//! Retries are split: the SDK retries transport errors and 5xx (standard mode, no client-side
//! rate limiter); throttled answers are never retried by the SDK ([`NoThrottleRetries`]) but by
//! the adapters through the process-wide [`paced::Pacers`], one [`pacer::Pacer`] per (service,
//! region, account, API), capped by the quota share ([`quotas`]).
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

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};

use crate::clock::ServiceClock;
use crate::metrics::Metrics;
use crate::policy::TargetKind;
use crate::targets::error::THROTTLING_CODES;

pub mod paced;
pub mod pacer;
pub mod quotas;

/// Operator-wide AWS settings (flags of `run`, `plan`, ...).
#[derive(Clone, Debug)]
pub struct AwsSettings {
    /// Send every AWS call to this URL instead of the real endpoint (emulators, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// Attempts per call, including the first: the SDK's retries of transport errors and 5xx,
    /// and, separately, the pacer's retries of throttled answers.
    pub max_attempts: u32,
    /// Time limit of one call, all attempts included (and, for paced calls, the waits for a
    /// send slot).
    pub operation_timeout: Duration,
    /// How long a paced read may wait for its first send slot (its time limit then counts from
    /// that send); calls that act never wait beyond `operation_timeout`.
    pub queue_timeout: Duration,
    /// Share (0 < x <= 1) of each API's published quota the operator may use, per account and
    /// region; 1 = no cap.
    pub quota_share: f64,
    /// Factor on the published quotas `quota_share` applies to: 1, but for an emulator whose
    /// buckets are scaled (the benchmark). Not a flag.
    pub quota_scale: f64,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            max_attempts: 5,
            operation_timeout: Duration::from_secs(30),
            queue_timeout: Duration::from_secs(300),
            quota_share: 1.0,
            quota_scale: 1.0,
        }
    }
}

impl AwsSettings {
    /// How far one paced call may go.
    pub fn call_limits(&self) -> paced::CallLimits {
        paced::CallLimits {
            attempts: self.max_attempts.max(1),
            timeout: self.operation_timeout,
            queue: self.queue_timeout,
        }
    }
}

/// `--aws-quota-share`: a number in (0, 1].
pub fn parse_quota_share(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(x)
    } else {
        Err(format!("{s} is not in (0, 1]: a share of each API's quota"))
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
                } else if is_throttling(resp) {
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

/// The error code of an AWS JSON (1.0 / 1.1) error answer: the `X-Amzn-Errortype` header, else
/// the body's `__type` (or `code`), sanitised as smithy's aws-json protocol says (drop what
/// follows `:`, keep what follows `#`). The SDK has read the body into memory by then.
pub fn error_code(resp: &HttpResponse) -> Option<String> {
    let raw = resp
        .headers()
        .get("x-amzn-errortype")
        .map(str::to_string)
        .or_else(|| {
            let body: serde_json::Value = serde_json::from_slice(resp.body().bytes()?).ok()?;
            body.get("__type")
                .or_else(|| body.get("code"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })?;
    let before_colon = raw.split(':').next().unwrap_or_default();
    let code = before_colon.rsplit('#').next().unwrap_or_default().trim();
    (!code.is_empty()).then(|| code.to_string())
}

/// Whether an answer is a throttle: HTTP 429 or one of [`THROTTLING_CODES`].
pub fn is_throttling(resp: &HttpResponse) -> bool {
    resp.status().as_u16() == 429
        || error_code(resp).is_some_and(|c| THROTTLING_CODES.contains(&c.as_str()))
}

/// Forbids the SDK to retry throttled answers, whatever its other classifiers say: the pacer
/// retries them ([`paced`]), and SDK retries would bypass it. Transport errors and 5xx stay the
/// SDK's.
#[derive(Debug, Default)]
pub struct NoThrottleRetries;

impl ClassifyRetry for NoThrottleRetries {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response() {
            Some(resp) if is_throttling(resp) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "redrive-operator-no-throttle-retries"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the SDK's own classifiers (RetryForbidden wins anyway; this keeps it explicit).
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
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
    // Standard, not adaptive: the adaptive mode's client-side limiter cut the rate on every
    // throttled answer, and echoes compounded the cuts; the pacer replaces it.
    let retry = RetryConfig::standard()
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
        .retry_classifier(NoThrottleRetries)
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
        .retry_classifier(NoThrottleRetries)
        .interceptor(CountingInterceptor {
            counter: counter.clone(),
            target: TargetKind::CodePipeline.as_str(),
            clock: clock.clone(),
        })
        .build();
    aws_sdk_codepipeline::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{ErrorCategory, TargetError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use redrive_emulator::{self as emulator, BucketSpec, EmulatorConfig, FaultConfig, Scenario};

    fn answer(status: u16, header: Option<&str>, body: &str) -> HttpResponse {
        let mut r = HttpResponse::new(
            StatusCode::try_from(status).unwrap(),
            SdkBody::from(body.to_string()),
        );
        if let Some(h) = header {
            r.headers_mut().insert("x-amzn-errortype", h.to_string());
        }
        r
    }

    #[test]
    fn throttles_are_read_from_the_error_type() {
        let sfn = answer(
            400,
            None,
            r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert_eq!(error_code(&sfn).as_deref(), Some("ThrottlingException"));
        assert!(is_throttling(&sfn));
        let header = answer(
            400,
            Some("ThrottlingException:http://internal.amazon.com/"),
            "",
        );
        assert!(is_throttling(&header));
        let cp = answer(
            400,
            None,
            r#"{"__type":"ThrottlingException","message":"x"}"#,
        );
        assert!(is_throttling(&cp));
        assert!(is_throttling(&answer(429, None, "<html>slow down</html>")));
        // A message that mentions throttling is not a throttle.
        let not = answer(
            400,
            None,
            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"ThrottlingException is not a name"}"#,
        );
        assert_eq!(error_code(&not).as_deref(), Some("ValidationException"));
        assert!(!is_throttling(&not));
        assert!(!is_throttling(&answer(500, None, "<html>oops</html>")));
    }

    #[test]
    fn a_quota_share_is_a_fraction_of_one() {
        assert_eq!(parse_quota_share("0.5"), Ok(0.5));
        assert_eq!(parse_quota_share("1"), Ok(1.0));
        for bad in ["0", "-0.5", "1.01", "NaN", "inf", "half"] {
            assert!(parse_quota_share(bad).is_err(), "{bad}");
        }
    }

    /// The SDK sends a throttled call once (the pacer retries it), and still retries 5xx.
    #[tokio::test]
    async fn the_sdk_retries_server_errors_but_never_throttles() {
        let config = EmulatorConfig {
            bucket_overrides: BTreeMap::from([(
                "ListStateMachines".to_string(),
                BucketSpec {
                    size: 1.0,
                    refill_per_second: 0.001,
                },
            )]),
            ..EmulatorConfig::default()
        };
        let h = emulator::start(config, Scenario::new()).await.unwrap();
        let settings = AwsSettings {
            endpoint_url: Some(h.endpoint.clone()),
            max_attempts: 3,
            ..AwsSettings::default()
        };
        let counter = CallCounter::default();
        let sdk = sdk_config(&settings, "us-east-1").await;
        let client = sfn_client(&sdk, &counter, &ServiceClock::new("test"));
        client.list_state_machines().send().await.unwrap();
        let err = client.list_state_machines().send().await.unwrap_err();
        assert_eq!(
            TargetError::from_sdk("ListStateMachines", &err).category,
            ErrorCategory::Throttled
        );
        assert_eq!(h.stats().calls("ListStateMachines"), 2, "no SDK retry");
        assert_eq!(
            counter.count("ListStateMachines", AttemptResult::Throttled),
            1
        );

        h.set_faults(FaultConfig {
            server_error_rate: 1.0,
            only_apis: vec!["DescribeExecution".into()],
            ..FaultConfig::default()
        });
        let err = client
            .describe_execution()
            .execution_arn("arn:aws:states:us-east-1:123456789012:execution:sm:x")
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            TargetError::from_sdk("DescribeExecution", &err).category,
            ErrorCategory::Transient
        );
        assert_eq!(h.stats().calls("DescribeExecution"), 3, "5xx retried");
        h.shutdown().await;
    }
}
