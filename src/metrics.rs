//! Prometheus metrics (prometheus-client, OpenMetrics text).
//!
//! Label cardinality is bounded: policies (namespace, name), targets, AWS API names, result
//! classes, reason codes and error categories. Never execution ARNs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::policy::PolicyId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
}

impl From<&PolicyId> for PolicyLabels {
    fn from(id: &PolicyId) -> Self {
        Self {
            namespace: id.namespace.clone(),
            policy: id.name.clone(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RedriveLabels {
    pub namespace: String,
    pub policy: String,
    pub target: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub namespace: String,
    pub policy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsLabels {
    pub target: String,
    pub api: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub target: String,
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    pub namespace: String,
    pub policy: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// Fixed histogram buckets for a Family.
#[derive(Clone)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// AWS call latency buckets: 5 ms to ~20 s.
const AWS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
];

/// Send-slot wait buckets: 1 ms to 5 min (`--aws-queue-timeout`'s default).
const SEND_WAIT_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// Event lag buckets (event time → decided): 100 ms to ~10 min.
const EVENT_LAG_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    catalog: Vec<MetricInfo>,
    pub redrives: Family<RedriveLabels, Counter>,
    pub decisions: Family<DecisionLabels, Gauge>,
    pub waiting: Family<PolicyLabels, Gauge>,
    pub exhausted: Family<PolicyLabels, Counter>,
    pub polls: Family<PollLabels, Counter>,
    pub last_successful_poll: Family<PolicyLabels, Gauge<f64, AtomicU64>>,
    pub aws_requests: Family<AwsLabels, Counter>,
    pub aws_duration: Family<ApiLabels, Histogram, Buckets>,
    pub aws_send_wait: Family<ApiLabels, Histogram, Buckets>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<CategoryLabels, Counter>,
    pub leader: Gauge,
    pub event_messages: Family<EventLabels, Counter>,
    pub event_lag: Histogram,
    pub event_receive_errors: Counter,
    pub event_last_receive: Gauge<f64, AtomicU64>,
    pub build_info: Family<BuildLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("redrive");
        let mut catalog = Vec::new();
        let m = Self {
            redrives: Family::default(),
            decisions: Family::default(),
            waiting: Family::default(),
            exhausted: Family::default(),
            polls: Family::default(),
            last_successful_poll: Family::default(),
            aws_requests: Family::default(),
            aws_duration: Family::new_with_constructor(Buckets(AWS_BUCKETS)),
            aws_send_wait: Family::new_with_constructor(Buckets(SEND_WAIT_BUCKETS)),
            reconcile_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            reconcile_errors: Family::default(),
            leader: Gauge::default(),
            event_messages: Family::default(),
            event_lag: Histogram::new(EVENT_LAG_BUCKETS.iter().copied()),
            event_receive_errors: Counter::default(),
            event_last_receive: Gauge::default(),
            build_info: Family::default(),
            registry: Registry::default(),
            catalog: Vec::new(),
        };
        reg(
            &mut registry,
            &mut catalog,
            "redrives",
            MetricKind::Counter,
            "Redrive calls (RedriveExecution, RetryStageExecution) by policy, target and outcome (Redriven, AlreadyRedriven, NotRedrivable, NotFound, Superseded, TargetBusy, AlreadyClaimed, InDoubt, Failed)",
            m.redrives.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "decisions",
            MetricKind::Gauge,
            "Decisions of the last poll by reason code",
            m.decisions.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "executions_waiting",
            MetricKind::Gauge,
            "Executions waiting (backoff, minimum age, budget) at the last poll",
            m.waiting.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "executions_exhausted",
            MetricKind::Counter,
            "Executions that reached maxRedrives (counted once per execution and attempt)",
            m.exhausted.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "polls",
            MetricKind::Counter,
            "Polls by policy and result (ok, error)",
            m.polls.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "last_successful_poll_timestamp_seconds",
            MetricKind::Gauge,
            "Unix time of the last successful poll of each policy",
            m.last_successful_poll.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "aws_requests",
            MetricKind::Counter,
            "AWS HTTP attempts (retries included) by target, API and result (ok, throttled, client_error, server_error, no_response)",
            m.aws_requests.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "aws_request_duration_seconds",
            MetricKind::Histogram,
            "Latency of AWS HTTP attempts by target and API",
            m.aws_duration.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "aws_send_wait_seconds",
            MetricKind::Histogram,
            "Time paced AWS calls waited for a send slot of their API's pacer (the API's pace or the quota share binding) by target and API",
            m.aws_send_wait.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "reconcile_duration_seconds",
            MetricKind::Histogram,
            "Duration of one policy reconcile or local poll",
            m.reconcile_duration.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "reconcile_errors",
            MetricKind::Counter,
            "Failed polls and reconciles by error category",
            m.reconcile_errors.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "leader",
            MetricKind::Gauge,
            "1 while this replica holds the leader lease (or runs without leader election)",
            m.leader.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "event_messages",
            MetricKind::Counter,
            "Event messages from the SQS queues by outcome: routed, and why the others went nowhere (not_failure, duplicate, not_covered, backlog_full, retry, and the rejections too_large, not_json, unknown_source, unknown_detail_type, missing_field, bad_identifier)",
            m.event_messages.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "event_lag_seconds",
            MetricKind::Histogram,
            "From an event's time to the decision of its hint by every policy it was routed to",
            m.event_lag.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "event_receive_errors",
            MetricKind::Counter,
            "Failed SQS ReceiveMessage calls (the sweep keeps working meanwhile)",
            m.event_receive_errors.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "event_last_receive_timestamp_seconds",
            MetricKind::Gauge,
            "Unix time of the last successful SQS ReceiveMessage",
            m.event_last_receive.clone(),
        );
        reg(
            &mut registry,
            &mut catalog,
            "build_info",
            MetricKind::Gauge,
            "Build information; the value is always 1",
            m.build_info.clone(),
        );
        // Every outcome starts at 0, so rate() and alerts see the first message (the set is
        // fixed and small).
        for outcome in crate::events::router::OUTCOMES
            .iter()
            .copied()
            .chain(crate::events::message::Rejected::ALL.map(|r| r.as_str()))
        {
            m.record_event_zero(outcome);
        }
        m.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        Self {
            registry,
            catalog,
            ..m
        }
    }

    /// Every exported metric (exposition name, kind, help), including families with no series yet
    /// (the OpenMetrics encoder omits those).
    pub fn catalog(&self) -> &[MetricInfo] {
        &self.catalog
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One event message's outcome (a router outcome or a rejection reason).
    pub fn record_event(&self, outcome: &str) {
        self.event_messages
            .get_or_create(&EventLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    fn record_event_zero(&self, outcome: &str) {
        let _ = self.event_messages.get_or_create(&EventLabels {
            outcome: outcome.into(),
        });
    }

    /// One AWS HTTP attempt.
    pub fn record_aws(&self, target: &str, api: &str, result: &str, elapsed: Option<Duration>) {
        self.aws_requests
            .get_or_create(&AwsLabels {
                target: target.into(),
                api: api.into(),
                result: result.into(),
            })
            .inc();
        if let Some(d) = elapsed {
            self.aws_duration
                .get_or_create(&ApiLabels {
                    target: target.into(),
                    api: api.into(),
                })
                .observe(d.as_secs_f64());
        }
    }

    /// The send-slot wait histogram of one API (shared by its pacer's callers).
    pub fn send_wait(&self, target: &str, api: &str) -> Histogram {
        self.aws_send_wait
            .get_or_create(&ApiLabels {
                target: target.into(),
                api: api.into(),
            })
            .clone()
    }

    /// Redrive calls of a policy by outcome (from a poll or an event hint's decision).
    pub fn record_redrives(&self, policy: &PolicyId, target: &str, outcomes: &[&'static str]) {
        for outcome in outcomes {
            self.redrives
                .get_or_create(&RedriveLabels {
                    namespace: policy.namespace.clone(),
                    policy: policy.name.clone(),
                    target: target.into(),
                    outcome: (*outcome).into(),
                })
                .inc();
        }
    }

    /// A completed poll.
    pub fn record_poll(&self, target: &str, poll: &PollSummary, duration: Duration) {
        let p = PolicyLabels::from(&poll.policy);
        if poll.reached_none {
            let category = poll
                .error_categories
                .first()
                .copied()
                .unwrap_or("unexpected");
            self.record_failed_poll(&poll.policy, category, duration);
        } else {
            self.reconcile_duration.observe(duration.as_secs_f64());
            self.polls
                .get_or_create(&PollLabels {
                    namespace: p.namespace.clone(),
                    policy: p.policy.clone(),
                    result: "ok".into(),
                })
                .inc();
            self.last_successful_poll
                .get_or_create(&p)
                .set(poll.finished.as_millisecond() as f64 / 1000.0);
        }
        self.record_redrives(&poll.policy, target, &poll.outcomes);
        // The decision gauges describe the last poll: reset this policy's codes first.
        for code in all_codes() {
            self.decisions.remove(&DecisionLabels {
                namespace: p.namespace.clone(),
                policy: p.policy.clone(),
                reason: code.into(),
            });
        }
        for (code, n) in &poll.decisions {
            self.decisions
                .get_or_create(&DecisionLabels {
                    namespace: p.namespace.clone(),
                    policy: p.policy.clone(),
                    reason: (*code).into(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.waiting
            .get_or_create(&p)
            .set(i64::try_from(poll.waiting).unwrap_or(i64::MAX));
        if poll.newly_exhausted > 0 {
            self.exhausted
                .get_or_create(&p)
                .inc_by(poll.newly_exhausted);
        }
        for category in &poll.error_categories {
            self.reconcile_errors
                .get_or_create(&CategoryLabels {
                    category: (*category).into(),
                })
                .inc();
        }
    }

    /// A poll that failed as a whole.
    pub fn record_failed_poll(&self, policy: &PolicyId, category: &str, duration: Duration) {
        let p = PolicyLabels::from(policy);
        self.reconcile_duration.observe(duration.as_secs_f64());
        self.polls
            .get_or_create(&PollLabels {
                namespace: p.namespace,
                policy: p.policy,
                result: "error".into(),
            })
            .inc();
        self.reconcile_errors
            .get_or_create(&CategoryLabels {
                category: category.into(),
            })
            .inc();
    }

    /// Forget a deleted policy's series.
    pub fn forget_policy(&self, policy: &PolicyId) {
        let p = PolicyLabels::from(policy);
        self.waiting.remove(&p);
        self.exhausted.remove(&p);
        self.last_successful_poll.remove(&p);
        for code in all_codes() {
            self.decisions.remove(&DecisionLabels {
                namespace: p.namespace.clone(),
                policy: p.policy.clone(),
                reason: code.into(),
            });
        }
        for result in ["ok", "error"] {
            self.polls.remove(&PollLabels {
                namespace: p.namespace.clone(),
                policy: p.policy.clone(),
                result: result.into(),
            });
        }
    }
}

/// What the metrics need from one finished poll (metrics own this type, so they do not depend on
/// the poll loop's report).
#[derive(Clone, Debug, PartialEq)]
pub struct PollSummary {
    pub policy: PolicyId,
    pub finished: jiff::Timestamp,
    /// The outcome code of every redrive attempted.
    pub outcomes: Vec<&'static str>,
    /// Decisions by code.
    pub decisions: std::collections::BTreeMap<&'static str, u64>,
    pub waiting: u64,
    pub newly_exhausted: u64,
    /// The category of every error the poll met.
    pub error_categories: Vec<&'static str>,
    /// The poll reached none of its workflows (see `PollReport::reached_none`): counted as a
    /// failed poll, like the Ready=False it causes, so the poll alerts match the status.
    pub reached_none: bool,
}

/// Every decision code, for resetting gauges: `Redrive` and every reason.
fn all_codes() -> impl Iterator<Item = &'static str> {
    std::iter::once("Redrive").chain(crate::engine::Reason::all_codes())
}

/// Kind of a metric, for the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One exported metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    /// Name as it appears in the exposition (`redrive_` prefix; counters end in `_total`).
    pub name: String,
    pub kind: MetricKind,
    pub help: &'static str,
}

fn reg(
    registry: &mut Registry,
    catalog: &mut Vec<MetricInfo>,
    name: &'static str,
    kind: MetricKind,
    help: &'static str,
    metric: impl prometheus_client::registry::Metric,
) {
    let suffix = if kind == MetricKind::Counter {
        "_total"
    } else {
        ""
    };
    catalog.push(MetricInfo {
        name: format!("redrive_{name}{suffix}"),
        kind,
        help,
    });
    registry.register(name, help, metric);
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_openmetrics_with_build_info() {
        let m = Metrics::new();
        m.record_aws(
            "stepfunctions",
            "ListExecutions",
            "ok",
            Some(Duration::from_millis(12)),
        );
        let text = m.encode();
        assert!(text.contains("redrive_build_info{version=\""), "{text}");
        assert!(text.contains("redrive_aws_requests_total{target=\"stepfunctions\",api=\"ListExecutions\",result=\"ok\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_poll_that_reached_none_of_its_workflows_counts_as_failed() {
        let m = Metrics::new();
        let policy = PolicyId {
            namespace: "ns".into(),
            name: "p".into(),
        };
        let summary = |reached_none| PollSummary {
            policy: policy.clone(),
            finished: jiff::Timestamp::UNIX_EPOCH,
            outcomes: vec![],
            decisions: Default::default(),
            waiting: 0,
            newly_exhausted: 0,
            error_categories: vec!["credentials"],
            reached_none,
        };
        m.record_poll("stepfunctions", &summary(true), Duration::ZERO);
        let text = m.encode();
        assert!(
            text.contains("redrive_polls_total{namespace=\"ns\",policy=\"p\",result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("redrive_last_successful_poll_timestamp_seconds{namespace=\"ns\""),
            "{text}"
        );
        m.record_poll("stepfunctions", &summary(false), Duration::ZERO);
        assert!(m.encode().contains("result=\"ok\"} 1"));
    }
}
