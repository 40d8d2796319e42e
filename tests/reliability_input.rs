//! Reliability (issue 7, item 6): hostile and sloppy input.
//!
//! Property tests of the same entry points as the `cargo fuzz` targets in fuzz/ (run by
//! scripts/fuzz.sh; see docs/reliability.md), with generated rather than mutated inputs:
//! - RedrivePolicy documents of right and wrong shapes, through the local-mode validation path
//!   (`policy_file::parse_policy`: the CRD's CEL rules client-side, then `Policy::from_resource`)
//!   and YAML text through `policy_file::parse_documents`: every input is accepted (and then
//!   planned by the engine without trouble) or rejected with a message naming a field; never a
//!   panic, never a hang (each case runs on its own thread with a deadline).
//! - The emulator's request parser (`emulator::handle_request`), extending the fuzz in
//!   tests/emulator_conformance.rs with valid-shaped requests carrying hostile values, tampered
//!   page tokens and idempotency checks, plus raw HTTP (including the STS form parser).
//!
//! `REDRIVE_LONG=1` multiplies the case counts; `PROPTEST_CASES` overrides them.

mod reliability_common;
mod support;

use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use redrive_emulator::{self as emulator, EmulatorConfig, EmulatorState, Scenario};
use redrive_operator::engine::{self, BudgetState, Candidate, Details, Redrivability, RunStatus};
use redrive_operator::policy::Policy;
use redrive_operator::policy_file::{parse_documents, parse_policy};
use redrive_operator::targets::stepfunctions;
use reliability_common::*;
use serde_json::{Value, json};

/// Wall-clock bound of one case (debug build, a loaded 2-core CI machine).
const CASE_DEADLINE: Duration = Duration::from_secs(10);

fn cases(short: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(if long() { short * 20 } else { short })
}

/// Run `f` on its own thread: `Err` if it panics or outlives `CASE_DEADLINE`.
fn bounded<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::Builder::new()
        .name("bounded-case".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a case thread");
    match rx.recv_timeout(CASE_DEADLINE) {
        Ok(v) => Ok(v),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "{what}: no answer within {CASE_DEADLINE:?} (hang?)"
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(format!("{what}: panicked after {:?}", started.elapsed()))
        }
    }
}

// ------------------------------------------------------------------------------------------
// Policy documents

const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:orders";

/// A valid policy using every field, the base of the mutations.
fn base() -> Value {
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": "fuzz", "namespace": "team-a"},
        "spec": {
            "suspend": false,
            "dryRun": false,
            "stepFunctions": {
                "region": "us-east-1",
                "roleArn": "arn:aws:iam::123456789012:role/redriver",
                "stateMachines": [SM],
                "selector": {"nameRegex": "^orders-", "tags": {"team": "payments"}},
                "maxRunTime": "1d",
            },
            "statuses": ["FAILED", "TIMED_OUT"],
            "errors": {"include": ["States.*", "Lambda.*"], "exclude": ["ValidationError"], "causeRegex": "(?i)throttl"},
            "window": {"minAge": "2m", "maxAge": "7d"},
            "maxRedrives": 3,
            "backoff": {"initial": "1m", "factor": 2.0, "max": "1h", "jitter": 0.2},
            "budget": {"redrivesPerMinute": 120, "maxRunningRedriven": 50},
            "pollInterval": "1m",
        },
    })
}

/// JSON pointers the mutations aim at ("" is the whole document).
const PATHS: &[&str] = &[
    "",
    "/apiVersion",
    "/kind",
    "/metadata",
    "/metadata/name",
    "/metadata/namespace",
    "/spec",
    "/spec/suspend",
    "/spec/dryRun",
    "/spec/stepFunctions",
    "/spec/stepFunctions/region",
    "/spec/stepFunctions/roleArn",
    "/spec/stepFunctions/stateMachines",
    "/spec/stepFunctions/stateMachines/0",
    "/spec/stepFunctions/selector",
    "/spec/stepFunctions/selector/nameRegex",
    "/spec/stepFunctions/selector/tags",
    "/spec/stepFunctions/selector/tags/team",
    "/spec/stepFunctions/maxRunTime",
    "/spec/statuses",
    "/spec/statuses/0",
    "/spec/errors",
    "/spec/errors/include",
    "/spec/errors/include/0",
    "/spec/errors/exclude",
    "/spec/errors/causeRegex",
    "/spec/window",
    "/spec/window/minAge",
    "/spec/window/maxAge",
    "/spec/maxRedrives",
    "/spec/backoff",
    "/spec/backoff/initial",
    "/spec/backoff/factor",
    "/spec/backoff/max",
    "/spec/backoff/jitter",
    "/spec/budget",
    "/spec/budget/redrivesPerMinute",
    "/spec/budget/maxRunningRedriven",
    "/spec/pollInterval",
    // Sloppy: a typo of a real field, and a field that does not exist.
    "/spec/maxRedrive",
    "/spec/stepFunctions/rolearn",
];

/// Regexes that backtracking engines take exponential time on, and size bombs.
const PATHOLOGICAL_REGEXES: &[&str] = &[
    "(a+)+$",
    "(x*)*y",
    "(a|aa)*b",
    "((a*)*)*c",
    "(.*a){20}",
    "^(([a-z])+.)+[A-Z]([a-z])+$",
    "(\\w+\\s?)+$",
    "a{1000}{1000}",
    "\\p{L}{500}",
    "(?i)[\\p{L}\\p{N}]{200}",
    "(",
    "[z-a]",
    "(?<n>a)(?<n>b)",
    "\\",
    "a**",
    "(?P<x",
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,40}",
        2 => "[0-9]{0,9}[smhd]",
        2 => "[0-9]{0,3}[é１ｍ\u{301}😀ß]",
        1 => Just(String::new()),
        2 => proptest::sample::select(PATHOLOGICAL_REGEXES).prop_map(str::to_string),
        1 => proptest::sample::select(vec!["a", "é", "😀", "\u{0}", "\u{202e}"])
            .prop_map(|s| s.repeat(65_536 / s.len())),
        2 => "arn:aws[a-z-]{0,4}:states:[a-z0-9-]{0,12}:[0-9]{0,13}:stateMachine:\\PC{0,90}",
        1 => "arn:aws:iam::[0-9]{10,13}:role/\\PC{0,40}",
        1 => "[a-z]{1,3}(-[a-z]{1,9}){0,3}-[0-9]{1,3}",
        1 => proptest::sample::select(vec!["FAILED", "TIMED_OUT", "ABORTED", "RUNNING", "failed"])
            .prop_map(str::to_string),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0.0),
            Just(-1.0),
            Just(1e308),
            Just(-0.5),
            Just(2.5),
            any::<f64>()
        ]
        .prop_filter("JSON numbers are finite", |f: &f64| f.is_finite())
        .prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        hostile_string().prop_map(Value::from),
    ]
}

fn hostile_value() -> impl Strategy<Value = Value> {
    let nested = leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        6 => nested,
        // Huge lists of short values.
        1 => (hostile_string().prop_filter("short", |s| s.len() < 200), 100usize..20_000)
            .prop_map(|(s, n)| Value::Array(vec![Value::from(s); n])),
        1 => (0usize..3, 1_000usize..20_000).prop_map(|(k, n)| {
            let v = ["FAILED", "TIMED_OUT", "ABORTED"][k];
            Value::Array(vec![Value::from(v); n])
        }),
        1 => (1usize..5_000).prop_map(|n| Value::Array(
            (0..n).map(|i| Value::from(format!("arn:aws:states:us-east-1:123456789012:stateMachine:m{i}"))).collect()
        )),
        1 => (1usize..3_000).prop_map(|n| Value::Object(
            (0..n).map(|i| (format!("k{i}"), Value::from("v"))).collect()
        )),
    ]
}

/// Set (or, with `None`, remove) the value at a JSON pointer, creating parent objects.
fn set_at(doc: &mut Value, pointer: &str, value: Option<Value>) {
    if pointer.is_empty() {
        *doc = value.unwrap_or(Value::Null);
        return;
    }
    let parts: Vec<&str> = pointer[1..].split('/').collect();
    let mut cur = doc;
    for p in &parts[..parts.len() - 1] {
        if let Value::Array(a) = cur {
            let i: usize = p.parse().unwrap_or(0);
            if a.len() <= i {
                a.resize(i + 1, Value::Null);
            }
            cur = &mut a[i];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert(json!({}));
    }
    let last = parts[parts.len() - 1];
    match cur {
        Value::Array(a) => {
            let i: usize = last.parse().unwrap_or(0);
            match value {
                Some(v) if i < a.len() => a[i] = v,
                Some(v) => a.push(v),
                None if i < a.len() => {
                    a.remove(i);
                }
                None => {}
            }
        }
        _ => {
            if !cur.is_object() {
                *cur = json!({});
            }
            let m = cur.as_object_mut().unwrap();
            match value {
                Some(v) => {
                    m.insert(last.to_string(), v);
                }
                None => {
                    m.remove(last);
                }
            }
        }
    }
}

fn mutated_document() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            0..PATHS.len(),
            proptest::option::weighted(0.85, hostile_value()),
        ),
        1..5,
    )
    .prop_map(|muts| {
        let mut doc = base();
        for (i, v) in muts {
            set_at(&mut doc, PATHS[i], v);
        }
        doc
    })
}

/// The first segments a rejection may start with: it names a field of the document.
const FIELD_HEADS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// A rejection message names a field: it starts with a field path (`spec.window.maxAge: ...`),
/// or is about the document as a whole (not a mapping, a required top-level field missing).
fn names_a_field(message: &str) -> bool {
    let head = message.split([':', '.', '[']).next().unwrap_or("");
    FIELD_HEADS.contains(&head)
        || message == "a RedrivePolicy document must be a mapping"
        || message.ends_with(": field not declared in schema")
        || (message.starts_with(".: ") && FIELD_HEADS.iter().any(|f| message.contains(f)))
}

/// Candidates the engine decides on for an accepted policy, with hostile details.
fn candidates(now: Timestamp) -> Vec<Candidate> {
    let long_cause = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!".repeat(1024);
    let mk = |i: u32, status: RunStatus, count: u32, error: &str, cause: &str| Candidate {
        id: format!("arn:aws:states:us-east-1:123456789012:execution:orders:e{i}"),
        workflow: SM.to_string(),
        status,
        started: now - jiff::SignedDuration::from_hours(3),
        stopped: Some(now - jiff::SignedDuration::from_mins(i64::from(i) * 7 + 1)),
        attempts: count,
        last_attempt: None,
        hold: None,
        root: None,
        redriven_by_parent: false,
        details: Some(Details {
            error: Some(error.to_string()),
            cause: Some(cause.to_string()),
            redrivability: Some(Redrivability::Redrivable),
        }),
    };
    vec![
        mk(
            0,
            RunStatus::Failed,
            0,
            "Lambda.ServiceException",
            &long_cause,
        ),
        mk(
            1,
            RunStatus::TimedOut,
            2,
            "States.Timeout",
            "xxxxxxxxxxxxxxxxxxxxxxxy",
        ),
        mk(2, RunStatus::Aborted, 999, "ValidationError", "é😀"),
        mk(3, RunStatus::Failed, u32::MAX, "", ""),
    ]
}

/// Accepted policies must be usable: plan them on hostile candidates.
fn exercise(policy: &Policy) -> usize {
    let now = Timestamp::now();
    let budget = BudgetState {
        rate_available: policy.redrives_per_minute,
        rate_next_at: Some(now),
        running_redriven: Some(0),
    };
    let plan = engine::plan(
        &candidates(now),
        policy,
        now,
        &stepfunctions::LIMITS,
        &budget,
    );
    if let Some(sel) = policy.step_functions().and_then(|s| s.selector.as_ref()) {
        let _ = sel.matches_name(&"a".repeat(80));
    }
    plan.entries.len()
}

fn check_document(doc: Value) -> Result<(), TestCaseError> {
    let shown = {
        let s = doc.to_string();
        if s.len() > 600 {
            format!("{}… ({} bytes)", &s[..s.floor_char_boundary(600)], s.len())
        } else {
            s
        }
    };
    let outcome = bounded("parse_policy", move || match parse_policy(doc) {
        Ok(p) => Ok(exercise(&p)),
        Err((_, message)) => Err(message),
    })
    .map_err(|e| TestCaseError::fail(format!("{e}\ninput: {shown}")))?;
    match outcome {
        Ok(_) => {}
        Err(message) => {
            prop_assert!(
                names_a_field(&message),
                "rejection does not name a field: {message:?}\ninput: {shown}"
            );
            // A 64 KiB value is not echoed back whole (one error line, one condition).
            prop_assert!(
                message.len() <= 4096,
                "rejection message of {} bytes",
                message.len()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(300),
        max_shrink_iters: 200,
        .. ProptestConfig::default()
    })]

    /// Mutations of a valid policy: every field set to hostile values, removed, or added.
    #[test]
    fn policy_documents_are_accepted_or_rejected_by_field(doc in mutated_document()) {
        check_document(doc)?;
    }

    /// Whole documents of any shape.
    #[test]
    fn any_json_value_is_a_clean_rejection(doc in hostile_value()) {
        check_document(doc)?;
    }

    /// YAML text: a valid policy with one scalar replaced by hostile text, or arbitrary text.
    #[test]
    fn yaml_text_never_panics(
        scalar in hostile_string().prop_filter("bounded", |s| s.len() < 70_000),
        which in 0usize..6,
        noise in "\\PC{0,200}",
        raw in proptest::bool::ANY,
    ) {
        let text = if raw {
            noise
        } else {
            let quoted = serde_json::to_string(&scalar).unwrap();
            let fields = ["name", "region", "pollInterval", "causeRegex", "minAge", "maxRedrives"];
            let mut doc = format!(
                "apiVersion: redrive.dev/v1alpha1\nkind: RedrivePolicy\nmetadata:\n  name: {}\nspec:\n  stepFunctions:\n    region: {}\n    stateMachines: [{SM}]\n  errors:\n    causeRegex: {}\n  window:\n    minAge: {}\n  maxRedrives: {}\n  pollInterval: {}\n",
                if which == 0 { &quoted } else { "y" },
                if which == 1 { &quoted } else { "us-east-1" },
                if which == 3 { &quoted } else { "x" },
                if which == 4 { &quoted } else { "1m" },
                if which == 5 { &quoted } else { "3" },
                if which == 2 { &quoted } else { "1m" },
            );
            doc.push_str(&format!("---\n# {}\n", fields[which]));
            doc
        };
        let shown: String = text.chars().take(300).collect();
        let results = bounded("parse_documents", move || {
            parse_documents(std::path::Path::new("fuzz.yaml"), &text)
                .into_iter()
                .map(|r| r.map(|p| exercise(&p)).map_err(|e| e.message))
                .collect::<Vec<_>>()
        })
        .map_err(|e| TestCaseError::fail(format!("{e}\ninput: {shown:?}")))?;
        for r in results {
            if let Err(m) = r {
                prop_assert!(
                    m.starts_with("not valid YAML or JSON") || names_a_field(&m),
                    "rejection does not name a field: {m:?}\ninput: {shown:?}"
                );
            }
        }
    }
}

/// The shapes named in the issue, each explicitly (the proptests reach them only by chance).
#[test]
fn named_hostile_inputs_are_rejected_by_field_or_accepted_quickly() {
    let mut cases: Vec<(String, Value)> = Vec::new();
    for re in PATHOLOGICAL_REGEXES {
        let mut d = base();
        d["spec"]["errors"]["causeRegex"] = json!(re);
        cases.push((format!("causeRegex {re}"), d.clone()));
        d["spec"]["stepFunctions"]["selector"]["nameRegex"] = json!(re);
        cases.push((format!("nameRegex {re}"), d));
    }
    for (field, value) in [
        ("/spec/statuses", json!(vec!["FAILED"; 110_000])),
        (
            "/spec/stepFunctions/stateMachines",
            json!(vec![SM; 100_000]),
        ),
        ("/spec/errors/include", json!(vec!["States.*"; 100_000])),
        ("/spec/stepFunctions/selector/tags", {
            let m: serde_json::Map<String, Value> =
                (0..50_000).map(|i| (format!("k{i}"), json!("v"))).collect();
            Value::Object(m)
        }),
        ("/metadata/name", json!("é".repeat(32_768))),
        ("/spec/errors/causeRegex", json!("a".repeat(65_536))),
        ("/spec/stepFunctions/region", json!("😀".repeat(16_384))),
        ("/spec/pollInterval", json!("5é")),
        ("/spec/window/minAge", json!("5é")),
        // minAge alone: no CEL rule looks at it, so only the operator's parser does.
        ("/spec/window", json!({"minAge": "5é"})),
        ("/spec/window", json!({"minAge": "😀"})),
        ("/spec/window/maxAge", json!("1２d")),
        ("/spec/backoff/initial", json!("1\u{301}")),
        ("/spec/stepFunctions/maxRunTime", json!("9999999d")),
        ("/spec/maxRedrives", json!(u64::MAX)),
        ("/spec/maxRedrives", json!("a".repeat(65_536))),
        ("/spec/suspend", json!("é".repeat(32_768))),
        ("/spec/backoff/factor", json!(1e308)),
        (
            "/spec/stepFunctions/rolearn",
            json!("arn:aws:iam::1:role/x"),
        ),
        ("/spec/maxRedrive", json!(3)),
    ] {
        let mut d = base();
        set_at(&mut d, field, Some(value));
        cases.push((field.to_string(), d));
    }
    let mut slowest = (Duration::ZERO, String::new());
    for (what, doc) in cases {
        let t = Instant::now();
        check_document(doc).unwrap_or_else(|e| panic!("{what}: {e}"));
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), what);
        }
    }
    // Rust's regex engine is linear-time: matching the pathological patterns against 32 KiB
    // causes takes milliseconds (measured inside `exercise`).
    figures(
        "hostile_policy_named_cases",
        &[
            ("slowest_case", slowest.1.replace(' ', "_")),
            ("slowest_ms", slowest.0.as_millis().to_string()),
        ],
    );
}

/// A typo in a field name is an error in local mode, as it is for the API server
/// (`kubectl apply --validate=strict`): silently ignoring `rolearn` would make the policy act
/// with the operator's own identity.
#[test]
fn unknown_fields_are_rejected_like_the_api_server_does() {
    for (pointer, field) in [
        ("/spec/stepFunctions/rolearn", "spec.stepFunctions.rolearn"),
        ("/spec/maxRedrive", "spec.maxRedrive"),
        ("/spec/window/minage", "spec.window.minage"),
        ("/specs", "specs"),
    ] {
        let mut d = base();
        set_at(&mut d, pointer, Some(json!("1m")));
        let err = parse_policy(d)
            .err()
            .unwrap_or_else(|| panic!("{pointer} accepted"));
        assert!(
            err.1.starts_with(field) && err.1.contains("field not declared in schema"),
            "{pointer}: {err:?}"
        );
    }
    // Free-form maps keep their keys; status and metadata are not the spec.
    let mut d = base();
    d["spec"]["stepFunctions"]["selector"]["tags"] = json!({"anything": "goes", "x-y/z": "1"});
    d["status"] = json!({"counts": {"redriven": 3}});
    d["metadata"]["labels"] = json!({"a": "b"});
    parse_policy(d).unwrap();
}

// ------------------------------------------------------------------------------------------
// The emulator's request parser

fn emulator_state() -> &'static Arc<EmulatorState> {
    static S: OnceLock<Arc<EmulatorState>> = OnceLock::new();
    S.get_or_init(|| EmulatorState::new(&EmulatorConfig::default(), &Scenario::demo()).unwrap())
}

/// ARNs that exist in the demo scenario (so requests get past the existence checks).
fn demo_arns() -> &'static Vec<String> {
    static A: OnceLock<Vec<String>> = OnceLock::new();
    A.get_or_init(|| {
        let st = emulator_state();
        let mut out = Vec::new();
        for sm in [
            "orders-processing",
            "invoice-sync",
            "nightly-etl",
            "email-notifications",
        ] {
            out.push(st.state_machine_arn(sm));
            out.extend(
                st.executions_of(sm)
                    .into_iter()
                    .take(12)
                    .map(|e| e.execution_arn),
            );
        }
        out
    })
}

fn request_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (0usize..64).prop_map(|i| {
            let a = demo_arns();
            Value::from(a[i % a.len()].clone())
        }),
        2 => leaf(),
        1 => Just(json!(-1)), 1 => Just(json!(1001)), 1 => Just(json!("10")),
        1 => Just(json!(1e308)), 1 => Just(json!(i64::MIN)),
        1 => "[!-~]{60,70}".prop_map(Value::from),
        1 => (1usize..300).prop_map(|d| {
            // Deep nesting: serde_json's recursion limit must answer, not the stack.
            let mut v = json!(1);
            for _ in 0..d {
                v = json!([v]);
            }
            v
        }),
    ]
}

const REQUEST_FIELDS: &[&str] = &[
    "executionArn",
    "stateMachineArn",
    "mapRunArn",
    "clientToken",
    "nextToken",
    "maxResults",
    "statusFilter",
    "redriveFilter",
    "reverseOrder",
    "includedData",
    "resourceArn",
    "name",
    "input",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(500), .. ProptestConfig::default() })]

    /// Valid-shaped requests (real ARNs) with hostile members: always a 200 or a 400 with a
    /// typed JSON error, never a panic.
    #[test]
    fn emulator_requests_with_real_arns_are_answered(
        op in 0usize..16,
        fields in proptest::collection::vec((0..REQUEST_FIELDS.len(), request_value()), 0..6),
    ) {
        let target = match emulator::OPERATIONS.get(op) {
            Some(o) => format!("AWSStepFunctions.{o}"),
            None => format!("AWSStepFunctions.{}", ["", "redriveexecution", "RedriveExecution "][op % 3]),
        };
        let mut m = serde_json::Map::new();
        for (k, v) in fields {
            m.insert(REQUEST_FIELDS[k].to_string(), v);
        }
        let body = serde_json::to_vec(&Value::Object(m)).unwrap();
        let (status, out) = emulator::handle_request(emulator_state(), &target, &body);
        prop_assert!(status == 200 || status == 400, "{status}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        if status == 400 {
            prop_assert!(v["__type"].is_string(), "{v}");
        }
    }

    /// A tampered page token is refused as InvalidToken (or a validation error), never trusted.
    #[test]
    fn tampered_page_tokens_are_refused(flip in 0usize..400, byte in any::<u8>(), cut in proptest::bool::ANY) {
        let st = emulator_state();
        let sm = st.state_machine_arn("email-notifications");
        let first = json!({"stateMachineArn": sm, "maxResults": 3}).to_string();
        let (s, out) = emulator::handle_request(st, "AWSStepFunctions.ListExecutions", first.as_bytes());
        prop_assert_eq!(s, 200);
        let token = serde_json::from_slice::<Value>(&out).unwrap()["nextToken"].as_str().unwrap().to_string();
        let mut bytes = token.into_bytes();
        if cut {
            bytes.truncate(flip % bytes.len());
        } else {
            let i = flip % bytes.len();
            if bytes[i] == byte { return Ok(()); }
            bytes[i] = byte;
        }
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        let req = json!({"stateMachineArn": sm, "maxResults": 3, "nextToken": tampered}).to_string();
        let (s, out) = emulator::handle_request(st, "AWSStepFunctions.ListExecutions", req.as_bytes());
        let v: Value = serde_json::from_slice(&out).unwrap();
        prop_assert_eq!(s, 400, "a tampered token was accepted: {}", v);
        let kind = v["__type"].as_str().unwrap_or_default();
        prop_assert!(kind.ends_with("InvalidToken") || kind.ends_with("ValidationException"), "{}", kind);
    }

    /// Whatever the token, repeating a RedriveExecution never redrives twice: the second call
    /// is a replay, or refused (RUNNING), or the same error as the first.
    #[test]
    fn a_repeated_redrive_never_redrives_twice(token in "[!-~]{1,64}", which in 0usize..64) {
        let st = EmulatorState::new(&EmulatorConfig::default(), &Scenario::demo()).unwrap();
        let arns: Vec<String> = demo_arns().iter().filter(|a| a.contains(":execution:")).cloned().collect();
        let arn = arns[which % arns.len()].clone();
        let body = json!({"executionArn": arn, "clientToken": token}).to_string();
        let (s1, _) = emulator::handle_request(&st, "AWSStepFunctions.RedriveExecution", body.as_bytes());
        let (s2, _) = emulator::handle_request(&st, "AWSStepFunctions.RedriveExecution", body.as_bytes());
        let redriven = st.ledger().iter().filter(|e| e.outcome.is_redriven()).count();
        prop_assert!(redriven <= 1, "{redriven} redrives from one token");
        if s1 == 200 {
            prop_assert_eq!(s2, 200, "a replay answers like the original");
        }
    }
}

/// Raw HTTP at the emulator's port, including the STS form parser: arbitrary methods, paths,
/// headers and bodies always get an HTTP answer, and the server keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn raw_http_and_sts_forms_never_break_the_server() {
    use rand::{Rng, RngCore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = emulator::start(EmulatorConfig::default(), Scenario::demo())
        .await
        .unwrap();
    let (mut rng, seed) = rng(0xf022);
    let n = scale(300, 5000);
    let forms = [
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::123456789012:role/x&RoleSessionName=s",
        "Action=AssumeRole&RoleArn=&RoleSessionName=&ExternalId=%ZZ&DurationSeconds=99999999999999999999",
        "Action=GetCallerIdentity",
        "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fx&RoleSessionName=a%00b&ExternalId=%F0%9F%98%80",
        "Action=Nope&&&&===&=&",
        "",
    ];
    let mut answered = 0u32;
    for i in 0..n {
        let sts = rng.random_bool(0.5);
        let mut body: Vec<u8> = if sts {
            forms[i % forms.len()].as_bytes().to_vec()
        } else {
            let mut b = vec![0u8; rng.random_range(0..512)];
            rng.fill_bytes(&mut b);
            b
        };
        if rng.random_bool(0.3) {
            let mut extra = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut extra);
            body.extend(extra);
        }
        let content_type = if sts {
            "application/x-www-form-urlencoded"
        } else {
            "application/x-amz-json-1.0"
        };
        let target = if sts {
            String::new()
        } else {
            format!(
                "X-Amz-Target: AWSStepFunctions.{}\r\n",
                emulator::OPERATIONS[i % emulator::OPERATIONS.len()]
            )
        };
        let auth = if rng.random_bool(0.8) {
            "Authorization: AWS4-HMAC-SHA256 Credential=ASIAFUZZ/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=00\r\nX-Amz-Security-Token: bogus\r\n"
        } else {
            ""
        };
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{target}{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("the emulator answers within 5 s")
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]).into_owned();
        assert!(head.starts_with("HTTP/1.1 "), "case {i}: {head:?}");
        let code: u16 = head[9..12].parse().unwrap();
        assert!(
            [200, 400, 403, 404, 405, 413, 415].contains(&code),
            "case {i} (seed {seed}): HTTP {code}"
        );
        answered += 1;
    }
    // Still healthy.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "the emulator still serves"
    );
    figures(
        "raw_http_fuzz",
        &[
            ("seed", seed.to_string()),
            ("requests", answered.to_string()),
        ],
    );
}
