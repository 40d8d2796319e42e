//! Emulator configuration: quotas, faults, idempotency choices.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Throttling preset (api-facts §1.9). Buckets are per API and start full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum QuotaPreset {
    /// No throttling at all.
    #[default]
    #[value(name = "none", alias = "unlimited")]
    #[serde(rename = "none", alias = "unlimited")]
    Unlimited,
    /// The us-east-1 / us-west-2 / eu-west-1 column.
    #[value(name = "us-east-1", alias = "us-west-2", alias = "eu-west-1")]
    #[serde(rename = "us-east-1")]
    UsEast1,
    /// The "all other regions" column.
    #[value(name = "other", alias = "other-regions")]
    #[serde(rename = "other", alias = "other-regions")]
    OtherRegions,
}

impl QuotaPreset {
    /// The preset AWS applies in `region` (the three large regions get the bigger column).
    pub fn for_region(region: &str) -> Self {
        match region {
            "us-east-1" | "us-west-2" | "eu-west-1" => QuotaPreset::UsEast1,
            _ => QuotaPreset::OtherRegions,
        }
    }

    /// `(bucket size, refill per second)` for an operation (Step Functions operations by name,
    /// CodePipeline ones by `codepipeline:<Op>`), `None` = not throttled.
    pub fn bucket(self, op: &str) -> Option<(f64, f64)> {
        let big = match self {
            QuotaPreset::Unlimited => return None,
            QuotaPreset::UsEast1 => true,
            QuotaPreset::OtherRegions => false,
        };
        let (b, r) = match (op, big) {
            ("ListExecutions", true) => (200.0, 5.0),
            ("ListExecutions", false) => (100.0, 2.0),
            ("DescribeExecution", true) => (300.0, 15.0),
            ("DescribeExecution", false) => (250.0, 10.0),
            ("GetExecutionHistory", _) => (400.0, 20.0),
            ("RedriveExecution", true) => (1300.0, 300.0),
            ("RedriveExecution", false) => (800.0, 150.0),
            ("ListStateMachines", _) => (100.0, 5.0),
            ("DescribeStateMachine", _) => (200.0, 20.0),
            ("ListTagsForResource", _) => (100.0, 1.0),
            ("DescribeMapRun", _) => (200.0, 1.0),
            ("StartExecution", true) => (1300.0, 300.0),
            ("StartExecution", false) => (800.0, 150.0),
            // CodePipeline publishes no TPS quotas (api-facts §2.6): emulator choices, the same
            // in every region class; override with `EmulatorConfig::bucket_overrides`.
            (
                "codepipeline:GetPipelineState"
                | "codepipeline:GetPipelineExecution"
                | "codepipeline:GetPipeline",
                _,
            ) => (100.0, 10.0),
            (
                "codepipeline:ListPipelineExecutions"
                | "codepipeline:ListPipelines"
                | "codepipeline:ListTagsForResource",
                _,
            ) => (50.0, 5.0),
            (
                "codepipeline:RetryStageExecution"
                | "codepipeline:StartPipelineExecution"
                | "codepipeline:StopPipelineExecution",
                _,
            ) => (50.0, 5.0),
            ("codepipeline:CreatePipeline" | "codepipeline:UpdatePipeline", _) => (20.0, 1.0),
            _ => return None,
        };
        Some((b, r))
    }
}

impl FromStr for QuotaPreset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "unlimited" => Ok(QuotaPreset::Unlimited),
            "us-east-1" | "us-west-2" | "eu-west-1" | "useast1" => Ok(QuotaPreset::UsEast1),
            "other" | "other-regions" | "otherregions" => Ok(QuotaPreset::OtherRegions),
            other => Err(format!(
                "unknown quota preset '{other}' (expected none, us-east-1 or other)"
            )),
        }
    }
}

impl fmt::Display for QuotaPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaPreset::Unlimited => "none",
            QuotaPreset::UsEast1 => "us-east-1",
            QuotaPreset::OtherRegions => "other",
        })
    }
}

/// Fault injection. Every rate is a probability in `[0, 1]` drawn from the seeded RNG.
/// Faulted calls never reach the model (except pure latency, which only delays a call).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    /// HTTP 500 `InternalFailure` or 503 `ServiceUnavailable` with a JSON body.
    pub server_error_rate: f64,
    /// An HTML 500 page, or a truncated JSON body with HTTP 200.
    pub malformed_rate: f64,
    /// Close the connection without writing any response.
    pub drop_rate: f64,
    /// Extra latency added to a call (humantime string like `"200ms"` or seconds as a number).
    #[serde(with = "opt_duration")]
    pub latency: Option<Duration>,
    /// Probability that `latency` applies to a call (ignored when `latency` is unset).
    pub latency_rate: f64,
    /// Restrict faults (including latency) to these operations, e.g. `["RedriveExecution"]`; empty = all.
    pub only_apis: Vec<String>,
    /// State machine ARNs whose every call (ListExecutions, DescribeStateMachine, ListTagsForResource,
    /// StartExecution, and Describe/History/Redrive of their executions and Map Run children)
    /// answers `AccessDeniedException`.
    pub access_denied_state_machines: Vec<String>,
    /// CodePipeline pipelines (names or ARNs) whose every call (GetPipeline, GetPipelineState,
    /// ListPipelineExecutions, GetPipelineExecution, Start/StopPipelineExecution,
    /// RetryStageExecution, ListTagsForResource, UpdatePipeline) answers `AccessDeniedException`.
    pub access_denied_pipelines: Vec<String>,
}

impl FaultConfig {
    /// True if faults may apply to `op`.
    pub fn applies_to(&self, op: &str) -> bool {
        self.only_apis.is_empty() || self.only_apis.iter().any(|a| a == op)
    }
    /// True if faults may apply to an operation named `op` and counted under `key`
    /// (`codepipeline:RetryStageExecution`): `onlyApis` may name either.
    pub fn applies_to_api(&self, op: &str, key: &str) -> bool {
        self.only_apis.is_empty() || self.only_apis.iter().any(|a| a == op || a == key)
    }
}

/// A token bucket: `size` tokens, refilled at `refill_per_second` on the emulated clock.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// Bucket size (burst).
    pub size: f64,
    /// Tokens added per second.
    pub refill_per_second: f64,
}

/// How many native automatic retries a stage gets (api-facts §2.5 says one per stage failure;
/// UNCONFIRMED whether a failure after a manual retry is a new "stage failure").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AutoRetryScope {
    /// One automatic retry per stage per pipeline execution (failures after a manual retry
    /// get none).
    #[default]
    OncePerStageExecution,
    /// One automatic retry after every failure that was not itself an automatic retry's
    /// (so each failed manual retry is followed by one automatic retry).
    EveryNonAutomaticFailure,
}

/// What RetryStageExecution does while a native automatic retry is pending (UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PendingAutoRetry {
    /// `ConflictException` ("the pipeline is busy"): the caller should wait for the native retry.
    #[default]
    Conflict,
    /// The manual retry runs and the pending automatic one is dropped.
    ManualReplacesAuto,
}

/// CodePipeline behaviour choices (docs/emulator.md, "CodePipeline").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CodePipelineConfig {
    /// Delay between a stage failure and its native automatic retry (`onFailure: RETRY`),
    /// overridable per pipeline (`autoRetryDelay`). Default 60 s.
    #[serde(with = "humantime_duration")]
    pub auto_retry_delay: Duration,
    /// How many automatic retries a stage gets.
    pub auto_retry_scope: AutoRetryScope,
    /// RetryStageExecution while an automatic retry is pending.
    pub retry_while_auto_retry_pending: PendingAutoRetry,
    /// CreatePipeline starts a first execution (trigger `CreatePipeline`), as AWS does.
    pub start_on_create: bool,
    /// Run time of an action attempt when neither the script, the action nor the pipeline sets
    /// one. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub default_action_duration: Duration,
}

impl Default for CodePipelineConfig {
    fn default() -> Self {
        CodePipelineConfig {
            auto_retry_delay: Duration::from_secs(60),
            auto_retry_scope: AutoRetryScope::default(),
            retry_while_auto_retry_pending: PendingAutoRetry::default(),
            start_on_create: true,
            default_action_duration: Duration::from_secs(30),
        }
    }
}

/// What a successful Flow Service re-trigger answers (api-facts §3.4: the tutorial and the
/// OpenAPI spec disagree; UNCONFIRMED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RetriggerResponse {
    /// `{"id", "etag"}` of the new run, as in the tutorial.
    #[default]
    IdAndEtag,
    /// The new run's full object, as in the OpenAPI spec.
    FullRun,
}

/// Adobe Flow Service and IMS behaviour choices (docs/emulator.md, "Flow Service").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FlowServiceConfig {
    /// Lifetime of IMS access tokens (`expires_in`); default 86399 s as documented.
    #[serde(with = "humantime_duration")]
    pub token_ttl: Duration,
    /// Run time of new runs when neither the outcome nor the flow sets one. Default 30 s.
    #[serde(with = "humantime_duration")]
    pub default_run_time: Duration,
    /// Organization of clients that set none, and of every flow and run.
    pub org_id: String,
    /// Scopes a token must carry for Platform calls (else 403 `403011`).
    pub required_scopes: Vec<String>,
    /// Page size of `GET /runs` and `GET /flows` without `limit`.
    pub default_page_size: u32,
    /// Body of a successful re-trigger.
    pub retrigger_response: RetriggerResponse,
    /// Probability of an injected 429 `429050` on any Platform call (changeable at run time).
    pub throttle_rate: f64,
    /// `Retry-After` of injected (rate-based) 429s; bucket 429s compute it from the refill rate.
    #[serde(with = "humantime_duration")]
    pub retry_after: Duration,
}

impl Default for FlowServiceConfig {
    fn default() -> Self {
        FlowServiceConfig {
            token_ttl: Duration::from_secs(86_399),
            default_run_time: Duration::from_secs(30),
            org_id: "EMU0000000000000000000001@AdobeOrg".to_string(),
            required_scopes: vec![
                "openid".to_string(),
                "AdobeID".to_string(),
                "additional_info.projectedProductContext".to_string(),
            ],
            default_page_size: 100,
            retrigger_response: RetriggerResponse::default(),
            throttle_rate: 0.0,
            retry_after: Duration::from_secs(2),
        }
    }
}

/// What a replayed `RedriveExecution` (same client token within the window) returns.
/// UNCONFIRMED in AWS docs; default is the original redrive's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayMode {
    /// `redriveDate` of the redrive that first used the token.
    #[default]
    OriginalRedriveDate,
    /// The execution's current (latest) `redriveDate`.
    LatestRedriveDate,
}

/// How client tokens are scoped. UNCONFIRMED in AWS docs; default per execution (as documented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TokenScope {
    /// A token used on execution A has no effect on execution B.
    #[default]
    PerExecution,
    /// Reusing a live token on a different execution answers `ValidationException`
    /// (emulator-specific strict mode, useful to catch token derivation bugs).
    RejectCrossExecution,
}

/// Emulator configuration. `Default` = us-east-1, account 123456789012, no throttling, no faults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Region embedded in ARNs.
    pub region: String,
    /// Account embedded in ARNs.
    pub account: String,
    /// Throttling preset.
    pub quota: QuotaPreset,
    /// Multiplies every bucket size and refill rate (bucket size rounds, minimum 1).
    pub quota_scale: f64,
    /// Fault injection (changeable at run time).
    pub faults: FaultConfig,
    /// Seed of the fault RNG and of the page-token key.
    pub seed: u64,
    /// Replay payload of an idempotent RedriveExecution.
    pub replay: ReplayMode,
    /// Client-token scope.
    pub token_scope: TokenScope,
    /// Open (RUNNING) execution cap, `ExecutionLimitExceeded` beyond it.
    pub max_open_executions: u64,
    /// Address used by [`crate::start`]; default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Initial offset of the emulated clock from real time.
    pub clock_offset: Duration,
    /// Token buckets by API key (`ListExecutions`, `codepipeline:RetryStageExecution`, ...)
    /// replacing the preset's, applied as given (not scaled) even when `quota` is `none`.
    pub bucket_overrides: BTreeMap<String, BucketSpec>,
    /// CodePipeline behaviour choices.
    pub codepipeline: CodePipelineConfig,
    /// Adobe Flow Service / IMS behaviour choices.
    pub flowservice: FlowServiceConfig,
    /// EventBridge events on status changes (off unless an endpoint is set).
    pub events: crate::events::EventsConfig,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            region: "us-east-1".to_string(),
            account: "123456789012".to_string(),
            quota: QuotaPreset::Unlimited,
            quota_scale: 1.0,
            faults: FaultConfig::default(),
            seed: 0,
            replay: ReplayMode::default(),
            token_scope: TokenScope::default(),
            max_open_executions: 1_000_000,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            clock_offset: Duration::ZERO,
            bucket_overrides: BTreeMap::new(),
            codepipeline: CodePipelineConfig::default(),
            flowservice: FlowServiceConfig::default(),
            events: crate::events::EventsConfig::default(),
        }
    }
}

/// Parse a duration: humantime (`"15d"`, `"2h 30m"`, `"250ms"`) or plain seconds (`"1.5"`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("invalid duration '{s}': {e}"));
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration '{s}': {e}"))
}

/// Serde for `Option<Duration>` as humantime string or seconds number.
pub(crate) mod opt_duration {
    use super::parse_duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Str(String),
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let r: Option<Repr> = Option::deserialize(d)?;
        match r {
            None => Ok(None),
            Some(Repr::Num(n)) => Duration::try_from_secs_f64(n)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(Repr::Str(s)) => parse_duration(&s)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Serde for `Duration` as humantime string (or seconds number on input).
pub(crate) mod humantime_duration {
    use serde::{Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        super::opt_duration::serialize(&Some(*d), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::opt_duration::deserialize(d)?
            .ok_or_else(|| serde::de::Error::custom("expected a duration"))
    }
}
