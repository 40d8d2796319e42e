//! Property tests of the pure decision engine against the invariants of design §7.
//!
//! Arbitrary candidate sets (with repeated executions and repeated (execution, redriveCount)
//! pairs), arbitrary valid policies, clocks, target limits and budget states. The eligibility
//! oracle below is written from the spec (design §3/§4), independently of `engine::list_level`:
//! globs and regexes are compiled here from the raw spec strings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use redrive_operator::crd::{FailureStatus, RedriveOrder, RedrivePolicySpec};
use redrive_operator::engine::{
    BudgetState, Candidate, Decision, Details, Plan, Redrivability, RunStatus, TargetLimits,
    backoff_delay, client_token, needs_details, plan, priority_order,
};
use redrive_operator::policy::{
    AWS_REDRIVE_PERIOD, BackoffPolicy, Policy, PolicyId, parse_duration,
};
use serde_json::{Value, json};

const DAY: i64 = 86_400;
const STATE_MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:orders";

fn sfn_limits() -> TargetLimits {
    TargetLimits {
        redrive_period: Some((
            Duration::from_secs(14 * DAY as u64),
            "Execution redrivable period exceeded",
        )),
        max_open_time: Some((
            Duration::from_secs(365 * DAY as u64),
            "Execution has exceeded the max execution time",
        )),
        not_before: Some((
            "2023-11-15T00:00:00Z".parse().unwrap(),
            "Execution was started before the launch of RedriveExecution",
        )),
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(SignedDuration::try_from(d).unwrap())
        .unwrap_or(Timestamp::MAX)
}

// ---------------------------------------------------------------------------------------------
// Generators

/// A valid policy and the raw spec it came from (the oracle reads the raw strings).
#[derive(Clone, Debug)]
struct Case {
    spec: Value,
    policy: Policy,
}

/// The error blocks the generator picks from. `Policy::from_spec` compiles each once (see
/// [`TEMPLATES`]): compiling globs and regexes per generated case would make debug builds slow.
const ERROR_BLOCKS: &[&str] = &[
    r#"{"include": ["Lambda.*", "States.Timeout"]}"#,
    r#"{"exclude": ["ValidationError"]}"#,
    r#"{"include": ["Lambda.*"], "exclude": ["Lambda.Validation*"]}"#,
    r#"{"causeRegex": "(?i)throttl|timed out"}"#,
    r#"{"include": ["States.*"], "causeRegex": "boom"}"#,
    r#"{"include": ["*"], "exclude": ["States.*"]}"#,
    r#"{"include": ["Custom?Error"]}"#,
    r#"{"exclude": ["States.Permissions", "ValidationError"], "causeRegex": "^$"}"#,
    r#"{"include": ["States.Timeout"], "exclude": ["States.*"]}"#,
    r#"{}"#,
    r#"{"causeRegex": "Rate exceeded"}"#,
    r#"{"include": ["Lambda.*", "States.Timeout", "Custom?Error"], "exclude": ["Lambda.ValidationFailed"], "causeRegex": "(?i)throttl|timed out|^$"}"#,
];

fn base_spec() -> Value {
    json!({ "stepFunctions": { "region": "eu-west-1", "stateMachines": [STATE_MACHINE] } })
}

fn from_spec(spec: &Value) -> Result<Policy, String> {
    let typed: RedrivePolicySpec = serde_json::from_value(spec.clone()).expect("spec deserializes");
    Policy::from_spec(
        PolicyId {
            namespace: "ns".into(),
            name: "p".into(),
        },
        &typed,
    )
    .map_err(|e| e.to_string())
}

/// Index 0: no `errors`; index i + 1: `ERROR_BLOCKS[i]`. Built by the real `Policy::from_spec`.
static TEMPLATES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    (0..=ERROR_BLOCKS.len())
        .map(|i| {
            let mut spec = base_spec();
            if let Some(e) = error_block(i) {
                spec["errors"] = e;
            }
            from_spec(&spec).expect("template is valid")
        })
        .collect()
});

fn error_block(index: usize) -> Option<Value> {
    index
        .checked_sub(1)
        .map(|i| serde_json::from_str(ERROR_BLOCKS[i]).unwrap())
}

/// The policy `Policy::from_spec` makes of `spec` (whose `errors` is `error_block(errors)`), built
/// without recompiling regexes: the template's compiled filters plus the scalar fields, with the
/// checks from_spec makes on them. [`fast_policy_agrees_with_from_spec`] keeps the two equal.
fn fast_policy(spec: &Value, errors: usize) -> Option<Policy> {
    let mut p = TEMPLATES[errors].clone();
    p.suspend = spec["suspend"].as_bool().unwrap();
    p.dry_run = spec["dryRun"].as_bool().unwrap();
    p.statuses = serde_json::from_value::<Vec<FailureStatus>>(spec["statuses"].clone())
        .unwrap()
        .into_iter()
        .map(|s| match s {
            FailureStatus::Failed => RunStatus::Failed,
            FailureStatus::TimedOut => RunStatus::TimedOut,
            FailureStatus::Aborted => RunStatus::Aborted,
        })
        .collect();
    p.min_age = spec["window"]["minAge"]
        .as_str()
        .map_or(Duration::ZERO, dur);
    p.max_age = spec["window"]["maxAge"]
        .as_str()
        .map_or(AWS_REDRIVE_PERIOD, dur);
    if p.max_age > AWS_REDRIVE_PERIOD || p.min_age >= p.max_age {
        return None;
    }
    p.max_redrives = u32::try_from(spec["maxRedrives"].as_u64().unwrap()).unwrap();
    p.backoff = match spec.get("backoff") {
        None => None,
        Some(b) => {
            let initial = dur(b["initial"].as_str().unwrap());
            let max = dur(b["max"].as_str().unwrap());
            if initial > max {
                return None;
            }
            Some(BackoffPolicy {
                initial,
                factor: b["factor"].as_f64().unwrap(),
                max,
                jitter: b["jitter"].as_f64().unwrap(),
            })
        }
    };
    p.redrives_per_minute = spec["budget"]["redrivesPerMinute"]
        .as_u64()
        .map(|n| n as u32);
    p.max_running_redriven = spec["budget"]["maxRunningRedriven"]
        .as_u64()
        .map(|n| n as u32);
    p.poll_interval = dur(spec["pollInterval"].as_str().unwrap());
    p.order = match spec["order"].as_str() {
        Some("NewestFirst") => RedriveOrder::NewestFirst,
        _ => RedriveOrder::OldestFirst,
    };
    Some(p)
}

fn arb_spec() -> impl Strategy<Value = (Value, usize)> {
    let statuses = subsequence(vec!["FAILED", "TIMED_OUT", "ABORTED"], 1..=3).prop_shuffle();
    let window = (
        proptest::option::of(select(vec!["0s", "30s", "2m", "1h", "2d"])),
        proptest::option::of(select(vec!["1h", "1d", "7d", "14d"])),
    );
    let backoff = proptest::option::of((
        select(vec!["0s", "10s", "1m", "5m", "1h"]),
        1.0f64..=10.0,
        select(vec!["1m", "1h", "1d"]),
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..=1.0],
    ));
    let budget = proptest::option::of((
        proptest::option::of(1u32..=100),
        proptest::option::of(1u32..=20),
    ));
    (
        (
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.1),
            statuses,
            prop_oneof![1 => Just(0usize), 1 => 1..=ERROR_BLOCKS.len()],
        ),
        (window, prop_oneof![4 => 1u32..=5, 1 => 1u32..=1000], backoff, budget, select(vec!["10s", "1m", "5m"]), proptest::option::of(select(vec!["OldestFirst", "NewestFirst"]))),
    )
        .prop_map(|((suspend, dry_run, statuses, errors), (window, max_redrives, backoff, budget, poll, order))| {
            let mut spec = json!({
                "suspend": suspend,
                "dryRun": dry_run,
                "stepFunctions": { "region": "eu-west-1", "stateMachines": [STATE_MACHINE] },
                "statuses": statuses,
                "maxRedrives": max_redrives,
                "pollInterval": poll,
            });
            if let Some(e) = error_block(errors) {
                spec["errors"] = e;
            }
            let (min_age, max_age) = window;
            if min_age.is_some() || max_age.is_some() {
                let mut w = json!({});
                if let Some(m) = min_age {
                    w["minAge"] = json!(m);
                }
                if let Some(m) = max_age {
                    w["maxAge"] = json!(m);
                }
                spec["window"] = w;
            }
            if let Some((initial, factor, max, jitter)) = backoff {
                spec["backoff"] = json!({ "initial": initial, "factor": factor, "max": max, "jitter": jitter });
            }
            if let Some((rate, running)) = budget {
                let mut b = json!({});
                if let Some(r) = rate {
                    b["redrivesPerMinute"] = json!(r);
                }
                if let Some(r) = running {
                    b["maxRunningRedriven"] = json!(r);
                }
                spec["budget"] = b;
            }
            if let Some(o) = order {
                spec["order"] = json!(o);
            }
            (spec, errors)
        })
}

/// Valid policies only (minAge < maxAge, initial <= max, ...).
fn arb_case() -> impl Strategy<Value = Case> {
    arb_spec().prop_filter_map("invalid spec", |(spec, errors)| {
        let policy = fast_policy(&spec, errors)?;
        Some(Case { spec, policy })
    })
}

fn arb_now() -> impl Strategy<Value = Timestamp> {
    // 2023-11-01 .. 2030-01-01, with sub-second parts.
    (1_698_796_800i64..1_893_456_000, 0i32..1_000_000_000)
        .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap())
}

fn arb_status() -> impl Strategy<Value = RunStatus> {
    prop_oneof![
        4 => Just(RunStatus::Failed),
        2 => Just(RunStatus::TimedOut),
        2 => Just(RunStatus::Aborted),
        1 => Just(RunStatus::Running),
        1 => Just(RunStatus::Succeeded),
        1 => Just(RunStatus::Other),
    ]
}

fn arb_details() -> impl Strategy<Value = Option<Details>> {
    let error = proptest::option::of(select(vec![
        "Lambda.ServiceException",
        "Lambda.ValidationFailed",
        "States.Timeout",
        "States.TaskFailed",
        "States.Permissions",
        "ValidationError",
        "CustomXError",
        "",
    ]));
    let cause = proptest::option::of(select(vec![
        "Rate exceeded: Throttling",
        "task timed out",
        "boom",
        "",
    ]));
    let redrivability = proptest::option::of(prop_oneof![
        6 => Just(Redrivability::Redrivable),
        1 => Just(Redrivability::NotRedrivable("Execution is RUNNING and cannot be redriven".into())),
        1 => Just(Redrivability::ByMapRun),
    ]);
    proptest::option::of(
        (error, cause, redrivability).prop_map(|(error, cause, redrivability)| Details {
            error: error.map(str::to_string),
            cause: cause.map(str::to_string),
            redrivability,
        }),
    )
}

/// A candidate relative to `now`: started up to ~400 days ago (a little in the future for clock
/// skew), stopped up to 20 days after its start (or no stop date).
#[derive(Clone, Debug)]
struct Raw {
    id: u8,
    status: RunStatus,
    started_ago: i64,
    /// (seconds, nanoseconds) after the start.
    stopped_after: Option<(i64, i64)>,
    redrive_count: u32,
    redriven_by_parent: bool,
    details: Option<Details>,
}

fn arb_raw(ids: u8) -> impl Strategy<Value = Raw> {
    (
        0..ids,
        arb_status(),
        prop_oneof![3 => -60i64..3 * DAY, 2 => -60i64..20 * DAY, 1 => -60i64..400 * DAY],
        proptest::option::weighted(
            0.9,
            (
                prop_oneof![3 => 0i64..3600, 2 => 0i64..2 * DAY, 1 => 0i64..20 * DAY],
                prop_oneof![Just(0i64), 0i64..1_000_000_000],
            ),
        ),
        prop_oneof![4 => 0u32..6, 1 => 0u32..1100],
        proptest::bool::weighted(0.1),
        arb_details(),
    )
        .prop_map(
            |(
                id,
                status,
                started_ago,
                stopped_after,
                redrive_count,
                redriven_by_parent,
                details,
            )| Raw {
                id,
                status,
                started_ago,
                stopped_after,
                redrive_count,
                redriven_by_parent,
                details,
            },
        )
}

fn build(raw: &Raw, now: Timestamp) -> Candidate {
    let started = now - SignedDuration::from_secs(raw.started_ago);
    Candidate {
        id: format!(
            "arn:aws:states:eu-west-1:123456789012:execution:orders:e{}",
            raw.id
        ),
        workflow: STATE_MACHINE.into(),
        status: raw.status,
        started,
        stopped: raw
            .stopped_after
            .map(|(s, ns)| started + SignedDuration::from_secs(s) + SignedDuration::from_nanos(ns)),
        attempts: raw.redrive_count,
        last_attempt: None,
        hold: None,
        root: None,
        redriven_by_parent: raw.redriven_by_parent,
        details: raw.details.clone(),
    }
}

fn arb_budget() -> impl Strategy<Value = (Option<u32>, Option<i64>, Option<u32>)> {
    (
        proptest::option::of(0u32..8),
        proptest::option::of(-120i64..120),
        proptest::option::of(0u32..25),
    )
}

fn budget_state(b: &(Option<u32>, Option<i64>, Option<u32>), now: Timestamp) -> BudgetState {
    BudgetState {
        rate_available: b.0,
        rate_next_at: b.1.map(|s| now + SignedDuration::from_secs(s)),
        running_redriven: b.2,
    }
}

/// Everything one `plan` call takes.
#[derive(Clone, Debug)]
struct World {
    case: Case,
    now: Timestamp,
    candidates: Vec<Candidate>,
    limits: TargetLimits,
    budget: BudgetState,
}

impl World {
    fn plan(&self) -> Plan {
        plan(
            &self.candidates,
            &self.case.policy,
            self.now,
            &self.limits,
            &self.budget,
        )
    }
}

fn arb_world_with(ids: u8, len: usize) -> impl Strategy<Value = World> {
    (
        arb_case(),
        arb_now(),
        proptest::collection::vec(arb_raw(ids), 0..len),
        proptest::bool::weighted(0.8),
        arb_budget(),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_map(|(case, now, raws, sfn, budget, dups)| {
            let mut candidates: Vec<Candidate> = raws.iter().map(|r| build(r, now)).collect();
            // Exact repeats, as paging overlap produces them.
            if !candidates.is_empty() {
                for d in dups {
                    let c = candidates[d.index(candidates.len())].clone();
                    candidates.insert(d.index(candidates.len() + 1), c);
                }
            }
            World {
                case,
                now,
                candidates,
                limits: if sfn {
                    sfn_limits()
                } else {
                    TargetLimits::NONE
                },
                budget: budget_state(&budget, now),
            }
        })
}

fn arb_world() -> impl Strategy<Value = World> {
    arb_world_with(12, 30)
}

// ---------------------------------------------------------------------------------------------
// The oracle, from the spec

fn status_name(s: RunStatus) -> Option<&'static str> {
    match s {
        RunStatus::Failed => Some("FAILED"),
        RunStatus::TimedOut => Some("TIMED_OUT"),
        RunStatus::Aborted => Some("ABORTED"),
        _ => None,
    }
}

static GLOBS: LazyLock<Mutex<HashMap<String, globset::GlobMatcher>>> =
    LazyLock::new(Default::default);
static REGEXES: LazyLock<Mutex<HashMap<String, regex::Regex>>> = LazyLock::new(Default::default);

/// Whether any of the glob patterns matches (`None`: no patterns), each compiled on its own.
fn glob_any(patterns: &Value, text: &str) -> Option<bool> {
    let list = patterns.as_array().filter(|l| !l.is_empty())?;
    let mut cache = GLOBS.lock().unwrap();
    Some(list.iter().any(|p| {
        let p = p.as_str().unwrap();
        cache
            .entry(p.to_string())
            .or_insert_with(|| globset::Glob::new(p).unwrap().compile_matcher())
            .is_match(text)
    }))
}

fn regex_match(pattern: &str, text: &str) -> bool {
    let mut cache = REGEXES.lock().unwrap();
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).unwrap())
        .is_match(text)
}

/// Why the spec forbids redriving `c` at `now`, ignoring budgets and dryRun; `None`: allowed.
fn forbidden(c: &Candidate, w: &World) -> Option<&'static str> {
    let spec = &w.case.spec;
    let p = &w.case.policy;
    let now = w.now;
    if spec["suspend"] == json!(true) {
        return Some("suspend");
    }
    let selected = status_name(c.status)
        .is_some_and(|s| spec["statuses"].as_array().unwrap().contains(&json!(s)));
    if !selected {
        return Some("status");
    }
    if c.redriven_by_parent {
        return Some("map run child");
    }
    if let Some((t, _)) = w.limits.not_before
        && c.started < t
    {
        return Some("not before");
    }
    if let Some((d, _)) = w.limits.max_open_time
        && add(c.started, d) <= now
    {
        return Some("max open time");
    }
    let stopped = c.stopped.unwrap_or(c.started);
    if let Some((d, _)) = w.limits.redrive_period
        && add(stopped, d) <= now
    {
        return Some("redrive period");
    }
    if let Some(d) = &c.details {
        match d.redrivability {
            Some(Redrivability::NotRedrivable(_)) => return Some("not redrivable"),
            Some(Redrivability::ByMapRun) => return Some("by map run"),
            _ => {}
        }
    }
    let max_age = spec["window"]["maxAge"]
        .as_str()
        .map_or(Duration::from_secs(14 * DAY as u64), dur);
    if add(stopped, max_age) <= now {
        return Some("outside window");
    }
    if u64::from(c.attempts) >= spec["maxRedrives"].as_u64().unwrap() {
        return Some("max redrives");
    }
    let min_age = spec["window"]["minAge"]
        .as_str()
        .map_or(Duration::ZERO, dur);
    if add(stopped, min_age) > now {
        return Some("too young");
    }
    if let Some(b) = &p.backoff
        && add(stopped, backoff_delay(b, &c.id, c.attempts)) > now
    {
        return Some("backing off");
    }
    let errors = &spec["errors"];
    let has_filter = !errors.is_null()
        && (errors["include"].as_array().is_some_and(|l| !l.is_empty())
            || errors["exclude"].as_array().is_some_and(|l| !l.is_empty())
            || errors.get("causeRegex").is_some());
    if has_filter {
        let Some(d) = &c.details else {
            return Some("details unavailable");
        };
        let error = d.error.as_deref().unwrap_or("");
        if glob_any(&errors["exclude"], error) == Some(true) {
            return Some("error excluded");
        }
        if glob_any(&errors["include"], error) == Some(false) {
            return Some("error not included");
        }
        if let Some(re) = errors["causeRegex"].as_str()
            && !regex_match(re, d.cause.as_deref().unwrap_or(""))
        {
            return Some("cause not matched");
        }
    }
    None
}

fn dur(s: &str) -> Duration {
    parse_duration("x", s).unwrap()
}

type Key = (String, u32);

fn key(c: &Candidate) -> Key {
    (c.id.clone(), c.attempts)
}

fn redrive_set(p: &Plan) -> BTreeSet<(String, u32, String)> {
    p.entries
        .iter()
        .filter_map(|e| match &e.decision {
            Decision::Redrive { client_token } => Some((
                e.candidate.id.clone(),
                e.candidate.attempts,
                client_token.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn is_printable_token(t: &str) -> bool {
    (1..=64).contains(&t.len()) && t.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    /// §7.1: at most one Redrive per (execution, observed redriveCount); the token is a function of
    /// that pair and of nothing else, and distinct pairs get distinct tokens.
    #[test]
    fn one_redrive_per_execution_and_count(w in arb_world()) {
        let p = w.plan();
        let mut redriven: BTreeMap<Key, usize> = BTreeMap::new();
        let mut token_of: BTreeMap<String, Key> = BTreeMap::new();
        for e in &p.entries {
            let k = key(&e.candidate);
            prop_assert_eq!(&e.client_token, &client_token(&k.0, k.1));
            if let Some(other) = token_of.insert(e.client_token.clone(), k.clone()) {
                prop_assert_eq!(&other, &k, "two pairs share a token");
            }
            if let Decision::Redrive { client_token } = &e.decision {
                prop_assert_eq!(client_token, &e.client_token);
                *redriven.entry(k).or_default() += 1;
            }
        }
        for (k, n) in redriven {
            prop_assert_eq!(n, 1, "{:?} redriven {} times", k, n);
        }
    }

    /// §7.1: same inputs, same plan.
    #[test]
    fn plans_are_deterministic(w in arb_world()) {
        let a = w.plan();
        let b = w.clone().plan();
        prop_assert_eq!(a, b);
    }

    /// §7.1: the order in which a target lists candidates does not change what is redriven, when
    /// no budget cap applies. (Repeats of one (execution, redriveCount) are made identical: they
    /// are one observation; when they disagree, the first listing wins, see
    /// `one_entry_per_candidate`.)
    #[test]
    fn redrives_do_not_depend_on_listing_order(w in arb_world(), seed in any::<u64>()) {
        let mut w = w;
        let mut first: BTreeMap<Key, Candidate> = BTreeMap::new();
        for c in &mut w.candidates {
            *c = first.entry(key(c)).or_insert_with(|| c.clone()).clone();
        }
        w.budget = BudgetState { rate_available: None, ..w.budget };
        w.case.policy.max_running_redriven = None;
        let a = w.plan();
        let mut shuffled = w.clone();
        shuffle(&mut shuffled.candidates, seed);
        let b = shuffled.plan();
        prop_assert_eq!(redrive_set(&a), redrive_set(&b));
        prop_assert_eq!(a.counts(), b.counts());
    }

    /// With distinct executions, the redrive order (and so which runs a budget admits) does not
    /// depend on the listing order either.
    #[test]
    fn budgeted_redrives_do_not_depend_on_listing_order(w in arb_world(), seed in any::<u64>()) {
        let mut w = w;
        let mut seen = BTreeSet::new();
        w.candidates.retain(|c| seen.insert(c.id.clone()));
        let a = w.plan();
        let mut shuffled = w.clone();
        shuffle(&mut shuffled.candidates, seed);
        let b = shuffled.plan();
        let order = |p: &Plan| p.redrives().map(|e| e.candidate.id.clone()).collect::<Vec<_>>();
        prop_assert_eq!(order(&a), order(&b));
        prop_assert_eq!(a.counts(), b.counts());
    }

    /// The pipelined poll decides `priority_order`'s candidates in waves, carrying the budget
    /// from wave to wave (reconcile.rs): whatever the wave size, the same runs are redriven in
    /// the same order, and every other decision is the same, as one `plan` over all of them.
    #[test]
    fn waves_with_a_carried_budget_decide_as_one_plan(w in arb_world(), wave in 1usize..6) {
        let whole = w.plan();
        let ordered = priority_order(w.candidates.clone(), w.case.policy.order);
        let mut budget = w.budget.clone();
        let mut entries = Vec::new();
        for chunk in ordered.chunks(wave) {
            let part = plan(chunk, &w.case.policy, w.now, &w.limits, &budget);
            let n = part.redrives().count() as u32;
            budget.spend(n, w.case.policy.max_running_redriven.is_some());
            entries.extend(part.entries);
        }
        entries.sort_by_key(|e| !e.decision.is_redrive());
        let waved = Plan { entries };
        let order = |p: &Plan| p.redrives().map(|e| key(&e.candidate)).collect::<Vec<_>>();
        prop_assert_eq!(order(&whole), order(&waved));
        let decisions = |p: &Plan| {
            let mut d: Vec<(Key, String)> =
                p.entries.iter().map(|e| (key(&e.candidate), format!("{:?}", e.decision))).collect();
            d.sort();
            d
        };
        prop_assert_eq!(decisions(&whole), decisions(&waved));
    }

    /// §7.2: never a Redrive that the policy, the target's limits or the budget exclude.
    #[test]
    fn never_redrive_what_is_excluded(w in arb_world()) {
        let p = w.plan();
        let pol = &w.case.policy;
        let redrives: Vec<_> = p.redrives().collect();
        for e in &redrives {
            prop_assert!(!pol.suspend && !pol.dry_run);
            if let Some(why) = forbidden(&e.candidate, &w) {
                prop_assert!(false, "redrove {:?} although {}", e.candidate, why);
            }
        }
        let n = u32::try_from(redrives.len()).unwrap();
        if let Some(rate) = w.budget.rate_available {
            prop_assert!(n <= rate, "{} redrives with a rate budget of {}", n, rate);
        }
        if let Some(cap) = pol.max_running_redriven {
            let running = w.budget.running_redriven.unwrap_or(0);
            if running >= cap {
                prop_assert_eq!(n, 0, "{} running with a cap of {}", running, cap);
            } else {
                prop_assert!(running + n <= cap, "{} running + {} redrives > cap {}", running, n, cap);
            }
        }
    }

    /// The converse of §7.2 for a single candidate and no budget: what the spec allows is redriven
    /// (or shown as DryRun), and nothing else.
    #[test]
    fn redrive_exactly_what_the_spec_allows(w in arb_world_with(12, 2)) {
        let mut w = w;
        w.candidates.truncate(1);
        w.budget = BudgetState::default();
        w.case.policy.max_running_redriven = None;
        for c in w.candidates.clone() {
            let p = w.plan();
            let d = &p.entries[0].decision;
            match forbidden(&c, &w) {
                None if w.case.policy.dry_run => prop_assert_eq!(d.code(), "DryRun"),
                None => prop_assert!(d.is_redrive(), "{:?}: {:?}", c, d),
                Some(why) => prop_assert!(!d.is_redrive() && d.code() != "DryRun", "{}: {:?}", why, d),
            }
        }
    }

    /// Every candidate gets exactly one entry: one per distinct (execution, redriveCount), the
    /// first listing of it, and nothing invented.
    #[test]
    fn one_entry_per_candidate(w in arb_world()) {
        let p = w.plan();
        let mut first: BTreeMap<Key, &Candidate> = BTreeMap::new();
        for c in &w.candidates {
            first.entry(key(c)).or_insert(c);
        }
        prop_assert_eq!(p.entries.len(), first.len());
        let mut seen = BTreeSet::new();
        for e in &p.entries {
            let k = key(&e.candidate);
            prop_assert!(seen.insert(k.clone()), "{:?} has two entries", k);
            prop_assert_eq!(&e.candidate, first[&k]);
        }
    }

    /// Without repeats, the entries are a permutation of the candidates.
    #[test]
    fn distinct_candidates_all_appear(w in arb_world()) {
        let mut w = w;
        let mut seen = BTreeSet::new();
        w.candidates.retain(|c| seen.insert(key(c)));
        let p = w.plan();
        prop_assert_eq!(p.entries.len(), w.candidates.len());
        let mut a: Vec<String> = p.entries.iter().map(|e| format!("{:?}", e.candidate)).collect();
        let mut b: Vec<String> = w.candidates.iter().map(|c| format!("{c:?}")).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }

    /// Waits are always into the future (a controller requeues at the earliest `until`).
    #[test]
    fn waits_end_in_the_future(w in arb_world()) {
        for e in &w.plan().entries {
            if let Decision::Wait { until, reason } = &e.decision {
                prop_assert!(*until > w.now, "{:?} until {} at {}", reason, until, w.now);
            }
        }
    }

    /// Redrives come first, oldest stop first (`order: NewestFirst`: newest first).
    #[test]
    fn redrives_are_ordered_by_stop_in_the_policys_order(w in arb_world()) {
        let p = w.plan();
        let first_other = p.entries.iter().position(|e| !e.decision.is_redrive()).unwrap_or(p.entries.len());
        prop_assert!(p.entries[first_other..].iter().all(|e| !e.decision.is_redrive()));
        let stops: Vec<_> = p.redrives().map(|e| e.candidate.stopped.unwrap_or(e.candidate.started)).collect();
        let newest_first = w.case.spec["order"] == "NewestFirst";
        prop_assert_eq!(w.case.policy.order == RedriveOrder::NewestFirst, newest_first);
        if newest_first {
            prop_assert!(stops.windows(2).all(|s| s[0] >= s[1]), "{:?}", stops);
        } else {
            prop_assert!(stops.windows(2).all(|s| s[0] <= s[1]), "{:?}", stops);
        }
    }

    /// `needs_details` is true exactly for candidates that would otherwise wait for details.
    #[test]
    fn needs_details_matches_details_unavailable(w in arb_world()) {
        let p = w.plan();
        for e in &p.entries {
            let needs = needs_details(&e.candidate, &w.case.policy, w.now, &w.limits);
            prop_assert_eq!(needs, e.decision.code() == "DetailsUnavailable", "{:?}", e.decision);
            if needs {
                prop_assert!(w.case.policy.needs_error_details() && e.candidate.details.is_none());
            }
        }
    }

    /// Tokens fit the API: at most 64 printable ASCII characters, whatever the id.
    #[test]
    fn tokens_fit_the_api(id in ".{0,300}", count in any::<u32>()) {
        let t = client_token(&id, count);
        prop_assert!(is_printable_token(&t), "{}", t);
        prop_assert_eq!(&t, &client_token(&id, count));
        let prefix = format!("rd1-{count}-");
        prop_assert!(t.starts_with(&prefix));
        prop_assert_ne!(&t, &client_token(&id, count.wrapping_add(1)));
    }

    /// Backoff with jitter j stays within [base(1-j), base(1+j)], base = min(initial * factor^k,
    /// max), is deterministic, and without jitter never shrinks as k grows.
    #[test]
    fn backoff_is_bounded_and_deterministic(
        initial in prop_oneof![Just(0u64), 1u64..3600],
        extra in 0u64..(7 * DAY as u64),
        factor in prop_oneof![Just(1.0f64), Just(10.0), 1.0f64..=10.0],
        jitter in prop_oneof![Just(0.0f64), Just(1.0), 0.0f64..=1.0],
        id in "[a-z0-9:]{1,40}",
        k in prop_oneof![0u32..20, 0u32..1000, Just(u32::MAX)],
    ) {
        let b = BackoffPolicy {
            initial: Duration::from_secs(initial),
            factor,
            max: Duration::from_secs(initial + extra),
            jitter,
        };
        let grown = initial as f64 * factor.powi(i32::try_from(k).unwrap_or(i32::MAX));
        let base = if initial == 0 { 0.0 } else { grown.min((initial + extra) as f64) };
        let d = backoff_delay(&b, &id, k);
        let secs = d.as_secs_f64();
        let eps = 1e-6 + base * 1e-12;
        prop_assert!(secs >= base * (1.0 - jitter) - eps && secs <= base * (1.0 + jitter) + eps,
            "delay {} outside [{}, {}]", secs, base * (1.0 - jitter), base * (1.0 + jitter));
        prop_assert_eq!(d, backoff_delay(&b.clone(), &id.clone(), k));
        let flat = BackoffPolicy { jitter: 0.0, ..b };
        if k < u32::MAX {
            prop_assert!(backoff_delay(&flat, &id, k) <= backoff_delay(&flat, &id, k + 1));
        }
    }
}

/// A deterministic Fisher-Yates shuffle (seeded by proptest).
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = ((seed >> 33) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// The generators reach every decision code, so the properties are not vacuous.
#[test]
fn generators_reach_every_code() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = arb_world();
    let mut codes = BTreeSet::new();
    for _ in 0..400 {
        let w = strategy.new_tree(&mut runner).unwrap().current();
        codes.extend(w.plan().entries.iter().map(|e| e.decision.code()));
    }
    let all: BTreeSet<&str> = [
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
        "BudgetExhausted",
    ]
    .into_iter()
    .collect();
    let missing: Vec<_> = all.difference(&codes).collect();
    assert!(missing.is_empty(), "never produced: {missing:?}");
}

/// What the engine reads from a policy, comparable (compiled filters by their behaviour on
/// sample error names and causes).
fn summary(p: &Policy) -> String {
    let samples = [
        "",
        "Lambda.ServiceException",
        "Lambda.ValidationFailed",
        "States.Timeout",
        "States.Permissions",
        "ValidationError",
        "CustomXError",
        "Rate exceeded: Throttling",
        "boom",
    ];
    let errors = p.errors.as_ref().map(|e| {
        samples
            .iter()
            .map(|s| {
                (
                    e.include.as_ref().map(|g| g.is_match(s)),
                    e.exclude.as_ref().map(|g| g.is_match(s)),
                    e.cause_regex.as_ref().map(|r| r.is_match(s)),
                )
            })
            .collect::<Vec<_>>()
    });
    format!(
        "{} {} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {} {:?}",
        p.suspend,
        p.dry_run,
        p.statuses,
        errors,
        p.min_age,
        p.max_age,
        p.max_redrives,
        p.backoff,
        p.redrives_per_minute,
        p.max_running_redriven,
        p.poll_interval,
        p.needs_error_details(),
        p.order,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The generators' fast policy builder makes exactly what `Policy::from_spec` makes (and
    /// rejects what it rejects), so the properties above are about real policies.
    #[test]
    fn fast_policy_agrees_with_from_spec((spec, errors) in arb_spec()) {
        let fast = fast_policy(&spec, errors);
        match from_spec(&spec) {
            Ok(real) => prop_assert_eq!(summary(&real), summary(&fast.expect("fast builder rejected a valid spec"))),
            Err(e) => prop_assert!(fast.is_none(), "fast builder accepted an invalid spec: {}", e),
        }
    }
}
