//! Emulator configuration: quotas, faults, idempotency choices.

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

    /// `(bucket size, refill per second)` for an operation, `None` = not throttled.
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
}

impl FaultConfig {
    /// True if faults may apply to `op`.
    pub fn applies_to(&self, op: &str) -> bool {
        self.only_apis.is_empty() || self.only_apis.iter().any(|a| a == op)
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
