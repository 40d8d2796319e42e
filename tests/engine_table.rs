//! Table-driven tests of the pure decision engine (design §7: a table of
//! (candidate, policy, now) → decision with a reason code).
//!
//! Every row is one rule or one boundary of a rule. A row starts from a candidate and a policy
//! that would be redriven, changes one thing, and states the exact decision (reason code, `Wait`
//! deadline, `NotRedrivable` text, client token) and whether the target must fetch details.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use redrive_operator::crd::RedrivePolicySpec;
use redrive_operator::engine::token::TOKEN_PREFIX;
use redrive_operator::engine::{
    BudgetState, Candidate, Decision, Details, Plan, Reason, Redrivability, RunStatus,
    TargetLimits, backoff_delay, client_token, needs_details, plan,
};
use redrive_operator::policy::{Policy, PolicyId};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixtures

const DAY: i64 = 86_400;
const REDRIVE_PERIOD_TEXT: &str = "Execution redrivable period exceeded";
const MAX_OPEN_TEXT: &str = "Execution has exceeded the max execution time";
const NOT_BEFORE_TEXT: &str = "Execution was started before the launch of RedriveExecution";
const EXEC: &str = "arn:aws:states:eu-west-1:123456789012:execution:orders:e1";
const STATE_MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";

fn ts(s: &str) -> Timestamp {
    s.parse().expect("valid timestamp")
}

fn now() -> Timestamp {
    ts("2026-03-01T12:00:00Z")
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

/// `now() + n seconds` (negative: in the past).
fn at(n: i64) -> Timestamp {
    now() + secs(n)
}

/// Step Functions' limits, as the Step Functions target passes them.
fn sfn_limits() -> TargetLimits {
    TargetLimits {
        redrive_period: Some((Duration::from_secs(14 * DAY as u64), REDRIVE_PERIOD_TEXT)),
        max_open_time: Some((Duration::from_secs(365 * DAY as u64), MAX_OPEN_TEXT)),
        not_before: Some((ts("2023-11-15T00:00:00Z"), NOT_BEFORE_TEXT)),
    }
}

/// A policy from the spec fields in `extra` (merged over a minimal valid spec; serde defaults
/// apply: statuses [FAILED, TIMED_OUT], maxRedrives 3, pollInterval 1m, no window/backoff/budget).
fn policy(extra: Value) -> Policy {
    let mut spec = json!({
        "stepFunctions": { "region": "eu-west-1", "stateMachines": [STATE_MACHINE] }
    });
    let Value::Object(extra) = extra else {
        panic!("extra must be an object")
    };
    spec.as_object_mut().unwrap().extend(extra);
    let spec: RedrivePolicySpec = serde_json::from_value(spec).expect("spec deserializes");
    Policy::from_spec(
        PolicyId {
            namespace: "payments".into(),
            name: "orders".into(),
        },
        &spec,
    )
    .expect("spec is valid")
}

/// A FAILED execution, started 2h and stopped 1h before `now()`, never redriven, no details.
fn candidate() -> Candidate {
    Candidate {
        id: EXEC.into(),
        workflow: STATE_MACHINE.into(),
        status: RunStatus::Failed,
        started: at(-2 * 3600),
        stopped: Some(at(-3600)),
        attempts: 0,
        last_attempt: None,
        hold: None,
        root: None,
        redriven_by_parent: false,
        details: None,
    }
}

fn details(error: Option<&str>, cause: Option<&str>) -> Option<Details> {
    Some(Details {
        error: error.map(str::to_string),
        cause: cause.map(str::to_string),
        redrivability: Some(Redrivability::Redrivable),
    })
}

fn unlimited() -> BudgetState {
    BudgetState::default()
}

// ---------------------------------------------------------------------------------------------
// The table

#[derive(Clone, Debug)]
enum Expect {
    Redrive,
    Skip(Reason),
    Wait(Reason, Timestamp),
}

struct Row {
    name: &'static str,
    policy: Value,
    edit: fn(&mut Candidate),
    now: Timestamp,
    limits: TargetLimits,
    expect: Expect,
    needs_details: bool,
}

fn row(name: &'static str, policy: Value, edit: fn(&mut Candidate), expect: Expect) -> Row {
    Row {
        name,
        policy,
        edit,
        now: now(),
        limits: sfn_limits(),
        expect,
        needs_details: false,
    }
}

impl Row {
    fn needs_details(mut self) -> Self {
        self.needs_details = true;
        self
    }
    fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }
    fn limits(mut self, limits: TargetLimits) -> Self {
        self.limits = limits;
        self
    }
}

use Expect::{Redrive, Skip, Wait};

fn no_change(_: &mut Candidate) {}

fn not_redrivable(why: &str) -> Expect {
    Skip(Reason::NotRedrivable(why.into()))
}

fn rows() -> Vec<Row> {
    let backoff = json!({ "backoff": { "initial": "1m", "factor": 2, "max": "1h", "jitter": 0 } });
    let include = json!({ "errors": { "include": ["Lambda.*", "States.Timeout"] } });
    let exclude = json!({ "errors": { "exclude": ["ValidationError"] } });
    let both = json!({ "errors": { "include": ["Lambda.*"], "exclude": ["Lambda.Validation*"] } });
    let cause = json!({ "errors": { "causeRegex": "(?i)throttl|timed out" } });
    let t2023 = ts("2023-11-20T00:00:00Z");
    vec![
        // Baseline.
        row("baseline is redriven", json!({}), no_change, Redrive),
        // suspend / dryRun.
        row(
            "suspend",
            json!({"suspend": true}),
            no_change,
            Skip(Reason::Suspended),
        ),
        row(
            "suspend wins over status",
            json!({"suspend": true}),
            |c| c.status = RunStatus::Running,
            Skip(Reason::Suspended),
        ),
        row(
            "suspend wins over window",
            json!({"suspend": true}),
            |c| c.stopped = Some(at(-30 * DAY)),
            Skip(Reason::Suspended),
        ),
        row(
            "suspend false",
            json!({"suspend": false}),
            no_change,
            Redrive,
        ),
        row(
            "dryRun on an eligible run",
            json!({"dryRun": true}),
            no_change,
            Skip(Reason::DryRun),
        ),
        row(
            "dryRun keeps the real reason of an ineligible run",
            json!({"dryRun": true}),
            |c| c.status = RunStatus::Aborted,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "dryRun keeps TooYoung",
            json!({"dryRun": true, "window": {"minAge": "2h"}}),
            no_change,
            Wait(Reason::TooYoung, at(3600)),
        ),
        row("dryRun false", json!({"dryRun": false}), no_change, Redrive),
        // Statuses: default [FAILED, TIMED_OUT].
        row(
            "default: FAILED",
            json!({}),
            |c| c.status = RunStatus::Failed,
            Redrive,
        ),
        row(
            "default: TIMED_OUT",
            json!({}),
            |c| c.status = RunStatus::TimedOut,
            Redrive,
        ),
        row(
            "default: ABORTED",
            json!({}),
            |c| c.status = RunStatus::Aborted,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "[ABORTED]: ABORTED",
            json!({"statuses": ["ABORTED"]}),
            |c| c.status = RunStatus::Aborted,
            Redrive,
        ),
        row(
            "[ABORTED]: FAILED",
            json!({"statuses": ["ABORTED"]}),
            |c| c.status = RunStatus::Failed,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "[ABORTED]: TIMED_OUT",
            json!({"statuses": ["ABORTED"]}),
            |c| c.status = RunStatus::TimedOut,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "[TIMED_OUT]: TIMED_OUT",
            json!({"statuses": ["TIMED_OUT"]}),
            |c| c.status = RunStatus::TimedOut,
            Redrive,
        ),
        row(
            "[TIMED_OUT]: FAILED",
            json!({"statuses": ["TIMED_OUT"]}),
            no_change,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "all statuses: ABORTED",
            json!({"statuses": ["FAILED", "TIMED_OUT", "ABORTED"]}),
            |c| c.status = RunStatus::Aborted,
            Redrive,
        ),
        // RUNNING / SUCCEEDED / other are never redriven, whatever the policy selects.
        row(
            "RUNNING never",
            json!({"statuses": ["FAILED", "TIMED_OUT", "ABORTED"]}),
            |c| c.status = RunStatus::Running,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "SUCCEEDED never",
            json!({"statuses": ["FAILED", "TIMED_OUT", "ABORTED"]}),
            |c| c.status = RunStatus::Succeeded,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "PENDING_REDRIVE (Other) never",
            json!({"statuses": ["FAILED", "TIMED_OUT", "ABORTED"]}),
            |c| c.status = RunStatus::Other,
            Skip(Reason::StatusNotSelected),
        ),
        // Distributed Map children and the service's own redrivability.
        row(
            "Map Run child",
            json!({}),
            |c| c.redriven_by_parent = true,
            Skip(Reason::RedrivableByMapRun),
        ),
        row(
            "details: REDRIVABLE_BY_MAP_RUN",
            json!({}),
            |c| {
                c.details = Some(Details {
                    error: None,
                    cause: None,
                    redrivability: Some(Redrivability::ByMapRun),
                });
            },
            Skip(Reason::RedrivableByMapRun),
        ),
        row(
            "details: NOT_REDRIVABLE keeps AWS's reason",
            json!({}),
            |c| {
                c.details = Some(Details {
                    error: Some("States.Runtime".into()),
                    cause: None,
                    redrivability: Some(Redrivability::NotRedrivable(
                        "Execution is RUNNING and cannot be redriven".into(),
                    )),
                });
            },
            not_redrivable("Execution is RUNNING and cannot be redriven"),
        ),
        row(
            "details: REDRIVABLE",
            json!({}),
            |c| c.details = details(Some("States.TaskFailed"), None),
            Redrive,
        ),
        row(
            "details: redrivability unknown",
            json!({}),
            |c| {
                c.details = Some(Details {
                    error: None,
                    cause: None,
                    redrivability: None,
                })
            },
            Redrive,
        ),
        // Target limits: not_before (boundary: started exactly at the launch is fine).
        row(
            "started before RedriveExecution launched",
            json!({}),
            |c| {
                c.started = ts("2023-11-14T23:59:59.999Z");
                c.stopped = Some(ts("2023-11-19T23:00:00Z"));
            },
            not_redrivable(NOT_BEFORE_TEXT),
        )
        .at(t2023),
        row(
            "started exactly at the launch",
            json!({}),
            |c| {
                c.started = ts("2023-11-15T00:00:00Z");
                c.stopped = Some(ts("2023-11-19T23:00:00Z"));
            },
            Redrive,
        )
        .at(t2023),
        // 14-day redrive period (boundary: exactly 14 days after the stop is too late).
        row(
            "stopped exactly 14d ago",
            json!({}),
            |c| c.stopped = Some(at(-14 * DAY)),
            not_redrivable(REDRIVE_PERIOD_TEXT),
        ),
        row(
            "stopped 14d - 1s ago",
            json!({}),
            |c| {
                c.started = at(-15 * DAY);
                c.stopped = Some(at(-14 * DAY + 1));
            },
            Redrive,
        ),
        row(
            "stopped 14d - 1ns ago",
            json!({}),
            |c| {
                c.started = at(-15 * DAY);
                c.stopped = Some(at(-14 * DAY) + SignedDuration::from_nanos(1));
            },
            Redrive,
        ),
        row(
            "stopped 20d ago",
            json!({}),
            |c| c.stopped = Some(at(-20 * DAY)),
            not_redrivable(REDRIVE_PERIOD_TEXT),
        ),
        row(
            "no stop date: measured from the start (15d)",
            json!({}),
            |c| {
                c.started = at(-15 * DAY);
                c.stopped = None;
            },
            not_redrivable(REDRIVE_PERIOD_TEXT),
        ),
        row(
            "no stop date: measured from the start (2h)",
            json!({}),
            |c| c.stopped = None,
            Redrive,
        ),
        row(
            "without target limits, 14d is the policy window",
            json!({}),
            |c| c.stopped = Some(at(-14 * DAY)),
            Skip(Reason::OutsideWindow),
        )
        .limits(TargetLimits::NONE),
        // 1-year maximum open time (boundary: exactly 365 days after the start is too late).
        row(
            "started exactly 365d ago",
            json!({}),
            |c| c.started = at(-365 * DAY),
            not_redrivable(MAX_OPEN_TEXT),
        ),
        row(
            "started 365d - 1s ago",
            json!({}),
            |c| c.started = at(-365 * DAY + 1),
            Redrive,
        ),
        // The policy window (maxAge boundary: exactly maxAge after the stop is outside).
        row(
            "maxAge 7d: stopped 7d ago",
            json!({"window": {"maxAge": "7d"}}),
            |c| {
                c.started = at(-8 * DAY);
                c.stopped = Some(at(-7 * DAY));
            },
            Skip(Reason::OutsideWindow),
        ),
        row(
            "maxAge 7d: stopped 7d - 1s ago",
            json!({"window": {"maxAge": "7d"}}),
            |c| {
                c.started = at(-8 * DAY);
                c.stopped = Some(at(-7 * DAY + 1));
            },
            Redrive,
        ),
        row(
            "maxAge 1h: stopped 1h ago",
            json!({"window": {"maxAge": "1h"}}),
            no_change,
            Skip(Reason::OutsideWindow),
        ),
        // minAge: Wait until stop + minAge (boundary: exactly minAge after the stop is eligible).
        row(
            "minAge 2m: stopped 1m ago",
            json!({"window": {"minAge": "2m"}}),
            |c| c.stopped = Some(at(-60)),
            Wait(Reason::TooYoung, at(60)),
        ),
        row(
            "minAge 2m: stopped 2m ago",
            json!({"window": {"minAge": "2m"}}),
            |c| c.stopped = Some(at(-120)),
            Redrive,
        ),
        row(
            "minAge 2m: stopped 2m - 1ns ago",
            json!({"window": {"minAge": "2m"}}),
            |c| c.stopped = Some(at(-120) + SignedDuration::from_nanos(1)),
            Wait(Reason::TooYoung, now() + SignedDuration::from_nanos(1)),
        ),
        row(
            "minAge 2m: stop date after now (clock skew)",
            json!({"window": {"minAge": "2m"}}),
            |c| c.stopped = Some(at(30)),
            Wait(Reason::TooYoung, at(150)),
        ),
        row(
            "a closed window skips before minAge waits",
            json!({"window": {"minAge": "2m"}, "maxRedrives": 1}),
            |c| {
                c.stopped = Some(at(-60));
                c.attempts = 1;
            },
            Skip(Reason::MaxRedrivesReached),
        ),
        // maxRedrives boundary: count = max - 1 is redriven, count = max is exhausted.
        row(
            "maxRedrives 3: count 2",
            json!({"maxRedrives": 3}),
            |c| c.attempts = 2,
            Redrive,
        ),
        row(
            "maxRedrives 3: count 3",
            json!({"maxRedrives": 3}),
            |c| c.attempts = 3,
            Skip(Reason::MaxRedrivesReached),
        ),
        row(
            "maxRedrives 3: count 7",
            json!({"maxRedrives": 3}),
            |c| c.attempts = 7,
            Skip(Reason::MaxRedrivesReached),
        ),
        row(
            "maxRedrives 1: count 0",
            json!({"maxRedrives": 1}),
            no_change,
            Redrive,
        ),
        row(
            "maxRedrives 1: count 1",
            json!({"maxRedrives": 1}),
            |c| c.attempts = 1,
            Skip(Reason::MaxRedrivesReached),
        ),
        row(
            "default maxRedrives is 3",
            json!({}),
            |c| c.attempts = 3,
            Skip(Reason::MaxRedrivesReached),
        ),
        // Backoff without jitter: wait initial * factor^count (capped) after the stop.
        row(
            "backoff: count 0, stopped 30s ago",
            backoff.clone(),
            |c| c.stopped = Some(at(-30)),
            Wait(Reason::BackingOff, at(30)),
        ),
        row(
            "backoff: count 0, stopped 60s ago",
            backoff.clone(),
            |c| c.stopped = Some(at(-60)),
            Redrive,
        ),
        row(
            "backoff: count 0, stopped 60s - 1ns ago",
            backoff.clone(),
            |c| c.stopped = Some(at(-60) + SignedDuration::from_nanos(1)),
            Wait(Reason::BackingOff, now() + SignedDuration::from_nanos(1)),
        ),
        row(
            "backoff: count 2 waits 4m",
            backoff.clone(),
            |c| {
                c.stopped = Some(at(-180));
                c.attempts = 2;
            },
            Wait(Reason::BackingOff, at(60)),
        ),
        row(
            "backoff: count 2, stopped 4m ago",
            backoff.clone(),
            |c| {
                c.stopped = Some(at(-240));
                c.attempts = 2;
            },
            Redrive,
        ),
        row(
            "backoff: capped at max",
            json!({ "maxRedrives": 20, "backoff": { "initial": "1m", "factor": 2, "max": "1h", "jitter": 0 } }),
            |c| {
                c.stopped = Some(at(-59 * 60));
                c.attempts = 10;
            },
            Wait(Reason::BackingOff, at(60)),
        ),
        row(
            "minAge is checked before backoff",
            json!({ "window": {"minAge": "10m"}, "backoff": { "initial": "1m", "jitter": 0 } }),
            |c| c.stopped = Some(at(-300)),
            Wait(Reason::TooYoung, at(300)),
        ),
        row(
            "maxRedrives is checked before backoff",
            json!({ "maxRedrives": 2, "backoff": { "initial": "1h", "max": "1h", "jitter": 0 } }),
            |c| c.attempts = 2,
            Skip(Reason::MaxRedrivesReached),
        ),
        // Error include globs.
        row(
            "include: Lambda.* matches",
            include.clone(),
            |c| c.details = details(Some("Lambda.ServiceException"), None),
            Redrive,
        ),
        row(
            "include: exact States.Timeout",
            include.clone(),
            |c| c.details = details(Some("States.Timeout"), None),
            Redrive,
        ),
        row(
            "include: States.TaskFailed",
            include.clone(),
            |c| c.details = details(Some("States.TaskFailed"), None),
            Skip(Reason::ErrorNotIncluded),
        ),
        row(
            "include: globs are case-sensitive",
            include.clone(),
            |c| c.details = details(Some("lambda.ServiceException"), None),
            Skip(Reason::ErrorNotIncluded),
        ),
        row(
            "include: no error name",
            include.clone(),
            |c| c.details = details(None, None),
            Skip(Reason::ErrorNotIncluded),
        ),
        // Error exclude globs.
        row(
            "exclude: matches",
            exclude.clone(),
            |c| c.details = details(Some("ValidationError"), None),
            Skip(Reason::ErrorExcluded),
        ),
        row(
            "exclude: other error",
            exclude.clone(),
            |c| c.details = details(Some("States.TaskFailed"), None),
            Redrive,
        ),
        row(
            "exclude: no error name",
            exclude.clone(),
            |c| c.details = details(None, None),
            Redrive,
        ),
        row(
            "exclude wins over include",
            both.clone(),
            |c| c.details = details(Some("Lambda.ValidationFailed"), None),
            Skip(Reason::ErrorExcluded),
        ),
        row(
            "include and exclude: included",
            both.clone(),
            |c| c.details = details(Some("Lambda.Unknown"), None),
            Redrive,
        ),
        // causeRegex.
        row(
            "causeRegex matches (case-insensitive)",
            cause.clone(),
            |c| c.details = details(Some("E"), Some("Rate exceeded: THROTTLING")),
            Redrive,
        ),
        row(
            "causeRegex matches (second branch)",
            cause.clone(),
            |c| c.details = details(Some("E"), Some("task timed out after 3s")),
            Redrive,
        ),
        row(
            "causeRegex: no match",
            cause.clone(),
            |c| c.details = details(Some("E"), Some("boom")),
            Skip(Reason::CauseNotMatched),
        ),
        row(
            "causeRegex: no cause",
            cause.clone(),
            |c| c.details = details(Some("E"), None),
            Skip(Reason::CauseNotMatched),
        ),
        row(
            "error include is checked before causeRegex",
            json!({ "errors": { "include": ["Lambda.*"], "causeRegex": "throttl" } }),
            |c| c.details = details(Some("States.Timeout"), Some("boom")),
            Skip(Reason::ErrorNotIncluded),
        ),
        row(
            "service redrivability is checked before error filters",
            exclude.clone(),
            |c| {
                c.details = Some(Details {
                    error: Some("ValidationError".into()),
                    cause: None,
                    redrivability: Some(Redrivability::NotRedrivable("nope".into())),
                });
            },
            not_redrivable("nope"),
        ),
        // Details missing: wait for them, and ask the target to fetch them only when needed.
        row(
            "include: details missing",
            include.clone(),
            no_change,
            Wait(Reason::DetailsUnavailable, at(60)),
        )
        .needs_details(),
        row(
            "exclude: details missing",
            exclude.clone(),
            no_change,
            Wait(Reason::DetailsUnavailable, at(60)),
        )
        .needs_details(),
        row(
            "causeRegex: details missing",
            cause.clone(),
            no_change,
            Wait(Reason::DetailsUnavailable, at(60)),
        )
        .needs_details(),
        row(
            "details missing waits one pollInterval",
            json!({ "errors": { "include": ["Lambda.*"] }, "pollInterval": "5m" }),
            no_change,
            Wait(Reason::DetailsUnavailable, at(300)),
        )
        .needs_details(),
        row(
            "dryRun still needs details to decide",
            json!({ "dryRun": true, "errors": { "include": ["Lambda.*"] } }),
            no_change,
            Wait(Reason::DetailsUnavailable, at(60)),
        )
        .needs_details(),
        row(
            "no error filter: no details needed",
            json!({}),
            no_change,
            Redrive,
        ),
        row(
            "empty errors block: no details needed",
            json!({"errors": {}}),
            no_change,
            Redrive,
        ),
        row(
            "details already there",
            include.clone(),
            |c| c.details = details(Some("Lambda.X"), None),
            Redrive,
        ),
        row(
            "cheaper rule fails: status",
            include.clone(),
            |c| c.status = RunStatus::Aborted,
            Skip(Reason::StatusNotSelected),
        ),
        row(
            "cheaper rule fails: suspend",
            json!({ "suspend": true, "errors": { "include": ["Lambda.*"] } }),
            no_change,
            Skip(Reason::Suspended),
        ),
        row(
            "cheaper rule fails: Map Run child",
            include.clone(),
            |c| c.redriven_by_parent = true,
            Skip(Reason::RedrivableByMapRun),
        ),
        row(
            "cheaper rule fails: 14-day period",
            include.clone(),
            |c| c.stopped = Some(at(-15 * DAY)),
            not_redrivable(REDRIVE_PERIOD_TEXT),
        ),
        row(
            "cheaper rule fails: maxRedrives",
            include.clone(),
            |c| c.attempts = 3,
            Skip(Reason::MaxRedrivesReached),
        ),
        row(
            "cheaper rule fails: minAge",
            json!({ "window": {"minAge": "2h"}, "errors": { "include": ["Lambda.*"] } }),
            no_change,
            Wait(Reason::TooYoung, at(3600)),
        ),
        row(
            "cheaper rule fails: backoff",
            json!({ "backoff": { "initial": "2h", "max": "2h", "jitter": 0 }, "errors": { "include": ["Lambda.*"] } }),
            no_change,
            Wait(Reason::BackingOff, at(3600)),
        ),
    ]
}

/// Plan one candidate and check the decision, the token and `needs_details`.
#[test]
fn decision_table() {
    let rows = rows();
    let mut names = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for row in &rows {
        assert!(names.insert(row.name), "duplicate row name {:?}", row.name);
        let policy = policy(row.policy.clone());
        let mut c = candidate();
        (row.edit)(&mut c);
        let token = client_token(&c.id, c.attempts);
        let plan = plan(
            std::slice::from_ref(&c),
            &policy,
            row.now,
            &row.limits,
            &unlimited(),
        );

        assert_eq!(plan.entries.len(), 1, "{}", row.name);
        let entry = &plan.entries[0];
        assert_eq!(entry.candidate, c, "{}", row.name);
        assert_eq!(
            entry.client_token, token,
            "{}: the entry carries the token of (id, redriveCount)",
            row.name
        );
        let (expected, code) = match &row.expect {
            Redrive => (
                Decision::Redrive {
                    client_token: token.clone(),
                },
                "Redrive",
            ),
            Skip(reason) => (
                Decision::Skip {
                    reason: reason.clone(),
                },
                reason.code(),
            ),
            Wait(reason, until) => {
                assert!(
                    *until > row.now,
                    "{}: a Wait row must wait into the future",
                    row.name
                );
                (
                    Decision::Wait {
                        until: *until,
                        reason: reason.clone(),
                    },
                    reason.code(),
                )
            }
        };
        if entry.decision != expected {
            failures.push(format!(
                "{}: expected {expected:?}, got {:?}",
                row.name, entry.decision
            ));
        }
        assert_eq!(entry.decision.code(), code, "{}", row.name);
        let needs = needs_details(&c, &policy, row.now, &row.limits);
        if needs != row.needs_details {
            failures.push(format!(
                "{}: needs_details expected {}, got {needs}",
                row.name, row.needs_details
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The table covers every stable code the engine can produce for a single candidate.
#[test]
fn table_covers_every_single_candidate_code() {
    let codes: std::collections::BTreeSet<&str> = rows()
        .iter()
        .map(|r| match &r.expect {
            Redrive => "Redrive",
            Skip(reason) | Wait(reason, _) => reason.code(),
        })
        .collect();
    for code in [
        "Redrive",
        "Suspended",
        "DryRun",
        "StatusNotSelected",
        "NotRedrivable",
        "RedrivableByMapRun",
        "OutsideWindow",
        "TooYoung",
        "MaxRedrivesReached",
        "BackingOff",
        "ErrorExcluded",
        "ErrorNotIncluded",
        "CauseNotMatched",
        "DetailsUnavailable",
    ] {
        assert!(codes.contains(code), "no row for {code}");
    }
}

/// The reason codes are a stable API (status, metrics, events, `plan -o json`, alerts).
#[test]
fn reason_codes_are_stable() {
    let cases = [
        (Reason::Suspended, "Suspended"),
        (Reason::DryRun, "DryRun"),
        (Reason::StatusNotSelected, "StatusNotSelected"),
        (Reason::NotRedrivable("why".into()), "NotRedrivable"),
        (Reason::RedrivableByMapRun, "RedrivableByMapRun"),
        (Reason::ExpressNotSupported, "ExpressNotSupported"),
        (Reason::OutsideWindow, "OutsideWindow"),
        (Reason::TooYoung, "TooYoung"),
        (Reason::MaxRedrivesReached, "MaxRedrivesReached"),
        (Reason::BackingOff, "BackingOff"),
        (Reason::ErrorExcluded, "ErrorExcluded"),
        (Reason::ErrorNotIncluded, "ErrorNotIncluded"),
        (Reason::CauseNotMatched, "CauseNotMatched"),
        (Reason::DetailsUnavailable, "DetailsUnavailable"),
        (Reason::BudgetExhausted, "BudgetExhausted"),
    ];
    for (reason, code) in cases {
        assert_eq!(reason.code(), code);
        assert_eq!(
            Decision::Skip {
                reason: reason.clone()
            }
            .code(),
            code
        );
        assert_eq!(
            Decision::Wait {
                until: now(),
                reason
            }
            .code(),
            code
        );
    }
    assert_eq!(
        Decision::Redrive {
            client_token: "t".into()
        }
        .code(),
        "Redrive"
    );
    assert_eq!(
        Reason::NotRedrivable("Execution is RUNNING".into()).to_string(),
        "NotRedrivable(Execution is RUNNING)"
    );
    assert_eq!(
        Reason::NotRedrivable(String::new()).to_string(),
        "NotRedrivable"
    );
    assert_eq!(Reason::TooYoung.to_string(), "TooYoung");
}

// ---------------------------------------------------------------------------------------------
// Backoff with jitter: deterministic per (execution, redriveCount)

#[test]
fn backoff_with_jitter_waits_a_deterministic_time() {
    let policy =
        policy(json!({ "backoff": { "initial": "1m", "factor": 2, "max": "1h", "jitter": 0.2 } }));
    let b = policy.backoff.as_ref().unwrap();
    for count in 0..3u32 {
        let delay = backoff_delay(b, EXEC, count);
        let base = 60.0 * 2f64.powi(count as i32);
        assert!(
            (base * 0.8..=base * 1.2).contains(&delay.as_secs_f64()),
            "count {count}: {delay:?} outside ±20% of {base}s"
        );
        assert_eq!(
            delay,
            backoff_delay(b, EXEC, count),
            "same inputs, same delay"
        );

        let stopped = at(-1);
        let until = stopped + SignedDuration::try_from(delay).unwrap();
        let mut c = candidate();
        c.stopped = Some(stopped);
        c.attempts = count;
        let expected = Decision::Wait {
            until,
            reason: Reason::BackingOff,
        };
        for _ in 0..3 {
            let p = plan(
                std::slice::from_ref(&c),
                &policy,
                now(),
                &sfn_limits(),
                &unlimited(),
            );
            assert_eq!(p.entries[0].decision, expected);
        }
        // At the deadline it is redriven.
        let p = plan(
            std::slice::from_ref(&c),
            &policy,
            until,
            &sfn_limits(),
            &unlimited(),
        );
        assert_eq!(p.entries[0].decision.code(), "Redrive", "count {count}");
        let p = plan(
            std::slice::from_ref(&c),
            &policy,
            until - SignedDuration::from_nanos(1),
            &sfn_limits(),
            &unlimited(),
        );
        assert_eq!(p.entries[0].decision.code(), "BackingOff", "count {count}");
    }
    // Different executions get different jitter (the spread is real).
    let other = backoff_delay(
        b,
        "arn:aws:states:eu-west-1:123456789012:execution:orders:e2",
        0,
    );
    let third = backoff_delay(
        b,
        "arn:aws:states:eu-west-1:123456789012:execution:orders:e3",
        0,
    );
    assert!(backoff_delay(b, EXEC, 0) != other || other != third);
}

// ---------------------------------------------------------------------------------------------
// Several candidates: budgets, ordering, tokens

/// `n` eligible FAILED executions `e0..en`, `e0` stopped longest ago.
fn eligible(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| {
            let mut c = candidate();
            c.id = format!("arn:aws:states:eu-west-1:123456789012:execution:orders:e{i}");
            c.stopped = Some(at(-3600 + i as i64));
            c
        })
        .collect()
}

fn ids(plan: &Plan) -> Vec<&str> {
    plan.entries
        .iter()
        .map(|e| e.candidate.id.rsplit(':').next().unwrap())
        .collect()
}

fn codes(plan: &Plan) -> Vec<&'static str> {
    plan.entries.iter().map(|e| e.decision.code()).collect()
}

/// `order: NewestFirst`: the budget goes to the newest failures; the oldest wait.
#[test]
fn newest_first_gives_the_budget_to_the_newest_failures() {
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 2 }, "order": "NewestFirst" }));
    let budget = BudgetState {
        rate_available: Some(2),
        rate_next_at: Some(at(20)),
        running_redriven: None,
    };
    let p = plan(&eligible(5), &policy, now(), &sfn_limits(), &budget);
    assert_eq!(ids(&p), ["e4", "e3", "e2", "e1", "e0"], "newest stop first");
    assert_eq!(
        codes(&p),
        [
            "Redrive",
            "Redrive",
            "BudgetExhausted",
            "BudgetExhausted",
            "BudgetExhausted"
        ]
    );
    // The default, OldestFirst, serves the same data the other way round.
    let oldest = plan(
        &eligible(5),
        &self::policy(json!({ "budget": { "redrivesPerMinute": 2 } })),
        now(),
        &sfn_limits(),
        &budget,
    );
    assert_eq!(ids(&oldest)[..2], ["e0", "e1"]);
}

#[test]
fn rate_budget_limits_redrives_and_the_rest_wait_for_the_next_token() {
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 2 } }));
    let next = at(20);
    let budget = BudgetState {
        rate_available: Some(2),
        rate_next_at: Some(next),
        running_redriven: None,
    };
    let mut cands = eligible(5);
    cands.reverse();
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(ids(&p), ["e0", "e1", "e2", "e3", "e4"], "oldest stop first");
    assert_eq!(
        codes(&p),
        [
            "Redrive",
            "Redrive",
            "BudgetExhausted",
            "BudgetExhausted",
            "BudgetExhausted"
        ]
    );
    for e in &p.entries[2..] {
        assert_eq!(
            e.decision,
            Decision::Wait {
                until: next,
                reason: Reason::BudgetExhausted
            }
        );
    }
    assert_eq!(p.redrives().count(), 2);
    assert_eq!(
        p.counts().into_iter().collect::<Vec<_>>(),
        [("BudgetExhausted", 3), ("Redrive", 2)]
    );
}

#[test]
fn rate_budget_of_zero_waits_for_the_next_token_or_one_poll() {
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 60 } }));
    let cands = eligible(2);
    let budget = BudgetState {
        rate_available: Some(0),
        rate_next_at: Some(at(1)),
        running_redriven: None,
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert!(p.entries.iter().all(|e| e.decision
        == Decision::Wait {
            until: at(1),
            reason: Reason::BudgetExhausted
        }));

    let budget = BudgetState {
        rate_available: Some(0),
        rate_next_at: None,
        running_redriven: None,
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert!(p.entries.iter().all(|e| e.decision
        == Decision::Wait {
            until: at(60),
            reason: Reason::BudgetExhausted
        }));
}

#[test]
fn a_stale_next_token_time_never_makes_a_wait_in_the_past() {
    // rate_next_at at or before now (a stale budget snapshot): still wait into the future.
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 60 } }));
    for next in [at(-5), now()] {
        let budget = BudgetState {
            rate_available: Some(0),
            rate_next_at: Some(next),
            running_redriven: None,
        };
        let p = plan(&eligible(1), &policy, now(), &sfn_limits(), &budget);
        match &p.entries[0].decision {
            Decision::Wait {
                until,
                reason: Reason::BudgetExhausted,
            } => assert!(*until > now(), "{until}"),
            other => panic!("expected BudgetExhausted, got {other:?}"),
        }
    }
}

#[test]
fn concurrency_cap_counts_running_redriven_executions() {
    let policy = policy(json!({ "budget": { "maxRunningRedriven": 3 } }));
    let cands = eligible(5);
    let budget = BudgetState {
        rate_available: None,
        rate_next_at: None,
        running_redriven: Some(1),
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(
        codes(&p),
        [
            "Redrive",
            "Redrive",
            "BudgetExhausted",
            "BudgetExhausted",
            "BudgetExhausted"
        ]
    );
    assert_eq!(ids(&p)[..2], ["e0", "e1"]);
    for e in &p.entries[2..] {
        assert_eq!(
            e.decision,
            Decision::Wait {
                until: at(60),
                reason: Reason::BudgetExhausted
            }
        );
    }

    // At the cap: nothing is redriven.
    let budget = BudgetState {
        running_redriven: Some(3),
        ..budget
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(p.redrives().count(), 0);
    assert_eq!(
        p.counts().into_iter().collect::<Vec<_>>(),
        [("BudgetExhausted", 5)]
    );

    // Unknown running count: counted as 0, so the cap alone limits this poll.
    let budget = BudgetState {
        running_redriven: None,
        ..budget
    };
    assert_eq!(
        plan(&cands, &policy, now(), &sfn_limits(), &budget)
            .redrives()
            .count(),
        3
    );

    // No cap in the policy: the running count does not matter.
    let uncapped = self::policy(json!({}));
    let budget = BudgetState {
        running_redriven: Some(1000),
        ..budget
    };
    assert_eq!(
        plan(&cands, &uncapped, now(), &sfn_limits(), &budget)
            .redrives()
            .count(),
        5
    );
}

#[test]
fn rate_and_concurrency_together_take_the_smaller() {
    let policy =
        policy(json!({ "budget": { "redrivesPerMinute": 100, "maxRunningRedriven": 10 } }));
    let cands = eligible(6);
    let budget = BudgetState {
        rate_available: Some(4),
        rate_next_at: Some(at(1)),
        running_redriven: Some(8),
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(
        codes(&p),
        [
            "Redrive",
            "Redrive",
            "BudgetExhausted",
            "BudgetExhausted",
            "BudgetExhausted",
            "BudgetExhausted"
        ]
    );

    let budget = BudgetState {
        rate_available: Some(1),
        rate_next_at: Some(at(1)),
        running_redriven: Some(0),
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(p.redrives().count(), 1);
    assert_eq!(
        p.entries[1].decision,
        Decision::Wait {
            until: at(1),
            reason: Reason::BudgetExhausted
        }
    );
}

#[test]
fn dry_run_and_suspend_ignore_budgets() {
    let budget = BudgetState {
        rate_available: Some(0),
        rate_next_at: Some(at(1)),
        running_redriven: Some(100),
    };
    let p = plan(
        &eligible(3),
        &policy(json!({"dryRun": true, "budget": {"maxRunningRedriven": 1}})),
        now(),
        &sfn_limits(),
        &budget,
    );
    assert_eq!(codes(&p), ["DryRun", "DryRun", "DryRun"]);
    assert_eq!(
        ids(&p),
        ["e0", "e1", "e2"],
        "dry runs show the redrive order"
    );
    let p = plan(
        &eligible(3),
        &policy(json!({"suspend": true})),
        now(),
        &sfn_limits(),
        &budget,
    );
    assert_eq!(codes(&p), ["Suspended", "Suspended", "Suspended"]);
}

#[test]
fn eligible_runs_come_first_oldest_stop_first_then_the_rest_in_input_order() {
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 10 } }));
    let mut cands = Vec::new();
    let mk = |name: &str, stopped: Option<i64>, started: i64, status: RunStatus| {
        let mut c = candidate();
        c.id = format!("arn:aws:states:eu-west-1:123456789012:execution:orders:{name}");
        c.status = status;
        c.started = at(started);
        c.stopped = stopped.map(at);
        c
    };
    cands.push(mk("skipA", Some(-9000), -9100, RunStatus::Aborted));
    cands.push(mk("new", Some(-60), -100, RunStatus::Failed));
    cands.push(mk("skipB", Some(-50), -100, RunStatus::Running));
    cands.push(mk("old", Some(-7200), -7300, RunStatus::TimedOut));
    cands.push(mk("nostop", None, -5000, RunStatus::Failed)); // ordered by its start
    cands.push(mk("tieB", Some(-3000), -3100, RunStatus::Failed));
    cands.push(mk("tieA", Some(-3000), -3100, RunStatus::Failed)); // same stop: by id
    let budget = BudgetState {
        rate_available: Some(3),
        rate_next_at: Some(at(6)),
        running_redriven: None,
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(
        ids(&p),
        ["old", "nostop", "tieA", "tieB", "new", "skipA", "skipB"]
    );
    assert_eq!(
        codes(&p),
        [
            "Redrive",
            "Redrive",
            "Redrive",
            "BudgetExhausted",
            "BudgetExhausted",
            "StatusNotSelected",
            "StatusNotSelected"
        ]
    );
}

#[test]
fn tokens_are_client_token_of_id_and_redrive_count() {
    let mut cands = eligible(4);
    cands[1].attempts = 1;
    cands[2].attempts = 2;
    cands[3].attempts = 3; // exhausted: still carries its token
    let p = plan(
        &cands,
        &policy(json!({})),
        now(),
        &sfn_limits(),
        &unlimited(),
    );
    assert_eq!(p.entries.len(), 4);
    for e in &p.entries {
        let expected = client_token(&e.candidate.id, e.candidate.attempts);
        assert_eq!(e.client_token, expected);
        if let Decision::Redrive { client_token } = &e.decision {
            assert_eq!(client_token, &expected);
        }
    }
    assert_eq!(p.redrives().count(), 3);
    // Same execution, moved redriveCount: a new token.
    assert_ne!(p.entries[0].client_token, client_token(&cands[0].id, 1));
}

#[test]
fn one_execution_listed_twice_is_planned_once() {
    // Paging newest-first while new failures arrive can list the same execution on two pages.
    let policy = policy(json!({ "budget": { "redrivesPerMinute": 10 } }));
    let mut cands = eligible(2);
    cands.insert(1, cands[0].clone());
    let budget = BudgetState {
        rate_available: Some(2),
        rate_next_at: Some(at(6)),
        running_redriven: None,
    };
    let p = plan(&cands, &policy, now(), &sfn_limits(), &budget);
    assert_eq!(ids(&p), ["e0", "e1"]);
    assert_eq!(
        codes(&p),
        ["Redrive", "Redrive"],
        "a duplicate must not use up the budget"
    );

    // The same execution seen with another redriveCount is another (id, count) pair.
    let mut moved = cands[0].clone();
    moved.attempts = 1;
    let p = plan(
        &[cands[0].clone(), moved],
        &self::policy(json!({})),
        now(),
        &sfn_limits(),
        &unlimited(),
    );
    assert_eq!(p.entries.len(), 2);
}

#[test]
fn empty_candidates_make_an_empty_plan() {
    let p = plan(&[], &policy(json!({})), now(), &sfn_limits(), &unlimited());
    assert_eq!(p, Plan::default());
    assert!(p.counts().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The client token scheme is pinned: changing it breaks dedup across an upgrade.

#[test]
fn client_token_known_vectors() {
    // Computed once with the documented scheme (independently checked with
    // `printf 'ARN\nCOUNT' | sha256sum | cut -c1-48`) and hard-coded on purpose.
    assert_eq!(
        client_token(
            "arn:aws:states:us-east-1:123456789012:execution:orders:abc",
            2
        ),
        "rd1-2-e9bf0ee7712f27bdba203fb19b2aafd3abd7189dc134c60e"
    );
    assert_eq!(
        client_token(EXEC, 0),
        "rd1-0-02bf9b3340e24863aa8d0e7015382ce8f810870936a5b353"
    );
    assert_eq!(
        client_token("x", u32::MAX),
        "rd1-4294967295-97ad89134f36b158eedd6877385e224a91e98fb3e8c260b0"
    );
    assert_eq!(TOKEN_PREFIX, "rd1");
}

#[test]
fn client_token_fits_the_api_pattern() {
    let long_arn = format!(
        "arn:aws:states:eu-west-1:123456789012:execution:{}:{}",
        "m".repeat(80),
        "e".repeat(80)
    );
    for (id, count) in [
        (EXEC, 0),
        (EXEC, 999),
        ("", 0),
        ("x", u32::MAX),
        (long_arn.as_str(), u32::MAX),
        ("ünïcødé\n\t", 7),
    ] {
        let t = client_token(id, count);
        assert!((1..=64).contains(&t.len()), "{t}: {} chars", t.len());
        assert!(t.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{t}");
        assert!(t.starts_with(&format!("rd1-{count}-")), "{t}");
    }
    assert_eq!(
        client_token("x", u32::MAX).len(),
        63,
        "the documented worst case"
    );
}
