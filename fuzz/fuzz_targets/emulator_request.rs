//! Fuzz the emulator's AWS JSON 1.0 request parser and dispatcher, in process (no HTTP):
//! `emulator::handle_request(state, X-Amz-Target, body)`.
//!
//! An input is up to `MAX_REQUESTS` requests separated by the byte 0x1E (ASCII record separator,
//! which valid JSON never contains unescaped), run in order against a fresh, small emulator, so a
//! crash reproduces from its artifact alone and sequences (start, redrive, redrive again, page
//! with a returned token...) are reachable. The first byte of a request picks the target:
//! - `A`.. : `AWSStepFunctions.<OPERATIONS[i]>` (A = CreateStateMachine ... J = RedriveExecution);
//! - `a`.. : one of `ODD_TARGETS` (wrong case, no prefix, whitespace, another service);
//! - any other byte: the target is the text up to the first newline, the body follows it.
//!
//! `@@` in a body is replaced by the `nextToken` of the previous answer, so the fuzzer can feed
//! real page tokens back.
//!
//! Properties: no panic, no hang; the status is 200 or 4xx/5xx; a 200 body is a JSON object; an
//! error body is a JSON object with a non-empty string `__type` and a string `message`; every
//! request is counted once in the emulator's statistics; every RedriveExecution that reached the
//! model is in the ledger, and the ledger's performed redrives match the model's count.

#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redrive_emulator::{
    self as emulator, EmulatorConfig, EmulatorState, ExecutionSpec, MapRunSpec, Outcome, Scenario,
    StateMachineSpec,
};
use serde_json::Value;

const MAX_REQUESTS: usize = 8;
const SEPARATOR: u8 = 0x1E;

/// Targets that are not (exactly) an implemented operation.
const ODD_TARGETS: &[&str] = &[
    "",
    "AWSStepFunctions.",
    "AWSStepFunctions.redriveexecution",
    "  AWSStepFunctions.ListExecutions \t",
    "AWSStepFunctions.StopExecution",
    "AWSStepFunctions.AssumeRole",
    "AWSSecurityTokenServiceV20110615.AssumeRole",
    "ListExecutions",
    "AWSStepFunctions.DescribeExecution\u{0}",
    "AWSStepFunctions.DescribeExecutioné",
];

fn scenario() -> Scenario {
    let mins = |m: u64| Duration::from_secs(m * 60);
    let days = |d: u64| Duration::from_secs(d * 86_400);
    let orders = StateMachineSpec::standard("orders")
        .tag("team", "payments")
        .tag("env", "prod")
        .execution(
            ExecutionSpec::failed("f1", "Lambda.ServiceException")
                .outcomes([Outcome::fail("Lambda.ServiceException"), Outcome::succeed()])
                .started_ago(mins(90))
                .stopped_ago(mins(60)),
        )
        .execution(
            ExecutionSpec::new("t1")
                .outcomes([Outcome::timed_out(), Outcome::running()])
                .started_ago(mins(80))
                .stopped_ago(mins(50)),
        )
        .execution(
            ExecutionSpec::new("a1")
                .outcomes([Outcome::aborted(), Outcome::succeed()])
                .started_ago(mins(70))
                .stopped_ago(mins(40)),
        )
        .execution(
            ExecutionSpec::failed("x3", "States.TaskFailed")
                .redriven(3)
                .started_ago(mins(300))
                .stopped_ago(mins(30)),
        )
        .execution(
            ExecutionSpec::succeeded("s1")
                .started_ago(mins(20))
                .stopped_ago(mins(19)),
        )
        .execution(ExecutionSpec::running("r1").started_ago(mins(5)))
        .execution(
            ExecutionSpec::failed("old", "Lambda.ServiceException")
                .started_ago(days(16))
                .stopped_ago(days(15)),
        )
        .execution(
            ExecutionSpec::failed("h1", "States.Runtime")
                .history_events(60)
                .input("{\"id\":1}")
                .started_ago(mins(200))
                .stopped_ago(mins(100)),
        )
        .generate(
            emulator::GenerateSpec::new(
                12,
                "batch-",
                [
                    Outcome::fail("Lambda.TooManyRequestsException"),
                    Outcome::succeed(),
                ],
            )
            .started_ago(Duration::from_secs(30 * 3600))
            .every(mins(7)),
        );
    let mut map_run = MapRunSpec::new("Proc", "p1");
    map_run.id = Some("00000000-0000-4000-8000-000000000001".to_string());
    for i in 0..3 {
        map_run = map_run.child(
            ExecutionSpec::new(&format!("c{i}"))
                .outcomes([Outcome::fail("States.TaskFailed"), Outcome::succeed()])
                .started_ago(mins(50 - i))
                .stopped_ago(mins(45)),
        );
    }
    let etl = StateMachineSpec::standard("etl")
        .execution(
            ExecutionSpec::new("p1")
                .outcomes([
                    Outcome::fail("States.ExceedToleratedFailureThreshold"),
                    Outcome::succeed(),
                ])
                .started_ago(mins(60))
                .stopped_ago(mins(44)),
        )
        .map_run(map_run);
    let gone = StateMachineSpec::standard("gone")
        .deleting()
        .execution(ExecutionSpec::failed("g1", "States.TaskFailed").stopped_ago(mins(10)));
    let clicks = StateMachineSpec::express("clicks").tag("team", "analytics");
    Scenario::new()
        .redrive_run_time(Duration::from_secs(2))
        .with(orders)
        .with(etl)
        .with(gone)
        .with(clicks)
}

fn fresh_state() -> Arc<EmulatorState> {
    EmulatorState::new(&EmulatorConfig::default(), &scenario()).expect("the fuzz scenario seeds")
}

fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some())
}

/// Target and body of one request.
fn split_request(seg: &[u8]) -> (String, &[u8]) {
    let Some((&first, rest)) = seg.split_first() else {
        return (String::new(), seg);
    };
    let ops = emulator::OPERATIONS;
    match first {
        b'A'..=b'Z' if usize::from(first - b'A') < ops.len() => (
            format!("AWSStepFunctions.{}", ops[usize::from(first - b'A')]),
            rest,
        ),
        b'a'..=b'z' if usize::from(first - b'a') < ODD_TARGETS.len() => {
            (ODD_TARGETS[usize::from(first - b'a')].to_string(), rest)
        }
        _ => {
            let (line, body) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            (String::from_utf8_lossy(line).into_owned(), body)
        }
    }
}

fn replace_token(body: &[u8], token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + token.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(b"@@") {
            out.extend_from_slice(token.as_bytes());
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let state = fresh_state();
    let redrives_before = state.stats().redrives;
    let mut calls = 0u64;
    let mut redrive_calls = 0usize;
    let mut redrive_oks = 0usize;
    let mut token = String::new();
    for seg in data.split(|&b| b == SEPARATOR).take(MAX_REQUESTS) {
        let (target, body) = split_request(seg);
        let body = replace_token(body, &token);
        let (status, out) = emulator::handle_request(&state, &target, &body);
        calls += 1;
        if verbose() {
            eprintln!(
                "{target:?} {} -> {status} {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&out)
            );
        }
        assert!(
            status == 200 || (400..600).contains(&status),
            "status {status} for {target:?}"
        );
        let v: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "status {status}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&out)
            )
        });
        assert!(v.is_object(), "status {status}: body is not an object: {v}");
        if status == 200 {
            assert!(v.get("__type").is_none(), "a 200 carries an error: {v}");
            token = v
                .get("nextToken")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
        } else {
            let ty = v.get("__type").and_then(Value::as_str).unwrap_or_default();
            assert!(!ty.is_empty(), "status {status}: no __type: {v}");
            assert!(
                v.get("message").is_some_and(Value::is_string),
                "status {status}: no message: {v}"
            );
        }
        if emulator::operation_of(&target) == Some("RedriveExecution") {
            redrive_calls += 1;
            if status == 200 {
                redrive_oks += 1;
                assert!(
                    v.get("redriveDate").is_some_and(Value::is_number),
                    "RedriveExecution 200 without redriveDate: {v}"
                );
            }
        }
    }
    let stats = state.stats();
    assert_eq!(stats.total_calls, calls, "every request is counted once");
    let ledger = state.ledger();
    assert_eq!(
        ledger.len(),
        redrive_calls,
        "every RedriveExecution is in the ledger"
    );
    let answered_ok = ledger
        .iter()
        .filter(|e| {
            matches!(
                e.outcome,
                emulator::LedgerOutcome::Redriven { .. } | emulator::LedgerOutcome::Replayed { .. }
            )
        })
        .count();
    assert_eq!(
        answered_ok, redrive_oks,
        "ledger outcomes match the answers"
    );
    let performed = ledger.iter().filter(|e| e.outcome.is_redriven()).count() as u64;
    assert_eq!(
        stats.redrives - redrives_before,
        performed,
        "the ledger's redrives match the model's"
    );
});
