//! Fuzz the RedrivePolicy reader of local mode: YAML or JSON text through
//! `policy_file::parse_documents` (the CRD's CEL rules client-side, then `Policy::from_resource`,
//! the same checks a policy from the cluster goes through).
//!
//! Properties, beyond "no panic, no hang" (libFuzzer's `-timeout` catches a hang):
//! - every rejection has a non-empty, single-line message of bounded length that starts with the
//!   field it is about (or says the text is not YAML/JSON);
//! - an accepted policy is usable: the engine plans it on a few candidates;
//! - an accepted policy stays accepted when its document is written back as JSON (local mode
//!   reads either), with the same identity and settings.

#![no_main]

use std::path::Path;

use jiff::Timestamp;
use libfuzzer_sys::{Corpus, fuzz_target};
use redrive_operator::engine::{self, BudgetState, Candidate, Details, Redrivability, RunStatus};
use redrive_operator::policy::{Policy, TargetSpec};
use redrive_operator::policy_file::{LoadError, parse_documents};
use redrive_operator::targets::stepfunctions;

/// Longest rejection message in characters: `policy_file` cuts messages at 512 characters and
/// marks the cut with an ellipsis.
const MAX_MESSAGE_CHARS: usize = 512 + 1;

/// The first segments a rejection may start with: it names a field of the document.
const FIELD_HEADS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

fn names_a_field(message: &str) -> bool {
    let head = message.split([':', '.', '[']).next().unwrap_or("");
    FIELD_HEADS.contains(&head)
        || message.starts_with("not valid YAML or JSON")
        || message == "a RedrivePolicy document must be a mapping"
        || message.ends_with(": field not declared in schema")
        || (message.starts_with(".: ") && FIELD_HEADS.iter().any(|f| message.contains(f)))
}

fn check_rejection(e: &LoadError) {
    let m = &e.message;
    assert!(!m.trim().is_empty(), "empty rejection message: {e:?}");
    assert!(!m.contains('\n'), "multi-line rejection message {m:?}");
    let n = m.chars().count();
    assert!(
        n <= MAX_MESSAGE_CHARS,
        "rejection message of {n} characters (max {MAX_MESSAGE_CHARS}): {:?}…",
        m.chars().take(200).collect::<String>()
    );
    assert!(names_a_field(m), "rejection does not name a field: {m:?}");
}

/// Accepted policies must be usable: plan them on a few candidates.
fn exercise(policy: &Policy) {
    let now = Timestamp::now();
    let sm = policy
        .step_functions()
        .and_then(|t| t.state_machines.first())
        .cloned()
        .unwrap_or_else(|| "arn:aws:states:us-east-1:123456789012:stateMachine:orders".into());
    let mk = |i: i64, status, count, error: &str| Candidate {
        id: format!("{sm}-e{i}"),
        workflow: sm.clone(),
        status,
        started: now - jiff::SignedDuration::from_hours(3),
        stopped: Some(now - jiff::SignedDuration::from_mins(i * 97 + 1)),
        attempts: count,
        last_attempt: None,
        hold: None,
        root: None,
        redriven_by_parent: false,
        details: Some(Details {
            error: Some(error.to_string()),
            cause: Some("Rate exceeded (throttled)".repeat(i as usize + 1)),
            redrivability: Some(Redrivability::Redrivable),
        }),
    };
    let candidates = [
        mk(0, RunStatus::Failed, 0, "Lambda.ServiceException"),
        mk(1, RunStatus::TimedOut, 2, "States.Timeout"),
        mk(2, RunStatus::Aborted, 999, ""),
        mk(30, RunStatus::Failed, u32::MAX, "ValidationError"),
    ];
    let budget = BudgetState {
        rate_available: policy.redrives_per_minute,
        rate_next_at: Some(now),
        running_redriven: Some(0),
    };
    let plan = engine::plan(&candidates, policy, now, &stepfunctions::LIMITS, &budget);
    assert_eq!(
        plan.entries.len(),
        candidates.len(),
        "one decision per candidate"
    );
    let selector = match &policy.target {
        TargetSpec::StepFunctions(t) => t.selector.as_ref(),
        TargetSpec::CodePipeline(t) => t.selector.as_ref(),
        TargetSpec::FlowService(t) => {
            if let Some(re) = &t.selector {
                let _ = re.is_match("orders-processing");
            }
            None
        }
    };
    if let Some(sel) = selector {
        let _ = sel.matches_name("orders-processing");
    }
}

fn verbose() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some())
}

/// What must survive a round trip through JSON.
fn summary(p: &Policy) -> String {
    let target = match &p.target {
        TargetSpec::StepFunctions(t) => format!(
            "sfn {:?} {:?} {:?}",
            t.state_machines,
            t.max_run_time,
            t.selector
                .as_ref()
                .map(|s| (s.name_regex.as_ref().map(|r| r.as_str()), &s.tags))
        ),
        TargetSpec::CodePipeline(t) => format!(
            "cp {:?} {:?} {:?} {:?}",
            t.pipelines,
            t.stage_patterns,
            t.retry_mode,
            t.selector
                .as_ref()
                .map(|s| (s.name_regex.as_ref().map(|r| r.as_str()), &s.tags))
        ),
        TargetSpec::FlowService(t) => format!(
            "fs {} {} {:?} {:?} {}",
            t.sandbox,
            t.credentials_secret,
            t.flows,
            t.selector.as_ref().map(|r| r.as_str()),
            t.include_empty_success
        ),
    };
    let cause_regex = p
        .errors
        .as_ref()
        .and_then(|e| e.cause_regex.as_ref().map(|r| r.as_str()));
    format!(
        "{} {:?} {:?} {:?} {target} {cause_regex:?} {:?} {:?} {:?} {} {:?} {:?} {:?} {:?} {}",
        p.id,
        p.generation,
        p.region(),
        p.role_arn(),
        p.statuses,
        p.min_age,
        p.max_age,
        p.max_redrives,
        p.backoff,
        p.redrives_per_minute,
        p.max_running_redriven,
        p.poll_interval,
        p.suspend as u8 * 2 + p.dry_run as u8,
    )
}

fuzz_target!(|data: &[u8]| -> Corpus {
    // Local mode reads files with `read_to_string`: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let path = Path::new("fuzz.yaml");
    let results = parse_documents(path, text);
    if verbose() {
        for r in &results {
            match r {
                Ok(p) => eprintln!("accepted: {}", summary(p)),
                Err(e) => eprintln!("rejected: {e}"),
            }
        }
    }
    let mut accepted = Vec::new();
    for r in &results {
        match r {
            Ok(p) => {
                exercise(p);
                accepted.push(summary(p));
            }
            Err(e) => check_rejection(e),
        }
    }
    if accepted.is_empty() {
        return Corpus::Keep;
    }
    // Round trip: write every non-null document back as JSON and read it again.
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).expect("parse_documents parsed it already");
    let mut again = Vec::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        let json = serde_json::to_string(doc).expect("a parsed document serializes");
        for p in parse_documents(Path::new("fuzz.json"), &json)
            .into_iter()
            .flatten()
        {
            again.push(summary(&p));
        }
    }
    assert_eq!(
        accepted, again,
        "the accepted policies differ once written as JSON"
    );
    Corpus::Keep
});
