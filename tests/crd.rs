//! The checked-in CRD matches the Rust types, and its CEL rules behave as documented
//! (evaluated client-side with kube's CEL support, the same rules the API server runs).

use redrive_operator::crd::{RedrivePolicy, crd_yaml};
use serde_json::{Value, json};

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/redrivepolicies.redrive.dev.yaml"
    );
    let on_disk =
        std::fs::read_to_string(path).expect("crds/redrivepolicies.redrive.dev.yaml exists");
    assert!(
        on_disk == crd_yaml(),
        "crds/redrivepolicies.redrive.dev.yaml is stale: regenerate it with\n  cargo run -- crd > crds/redrivepolicies.redrive.dev.yaml"
    );
}

fn base() -> Value {
    json!({
        "apiVersion": "redrive.dev/v1alpha1",
        "kind": "RedrivePolicy",
        "metadata": {"name": "orders", "namespace": "payments"},
        "spec": {
            "stepFunctions": {
                "region": "eu-west-1",
                "stateMachines": ["arn:aws:states:eu-west-1:123456789012:stateMachine:orders"]
            },
            "window": {"minAge": "2m", "maxAge": "7d"},
            "backoff": {"initial": "1m", "factor": 2.0, "max": "1h", "jitter": 0.2}
        }
    })
}

fn with(patch: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    patch(&mut v);
    v
}

/// Messages of the CEL rules that fail for `doc`.
fn cel_errors(doc: Value) -> Vec<String> {
    let obj: RedrivePolicy = serde_json::from_value(doc).expect("document deserializes");
    match obj.validate_cel() {
        Ok(()) => vec![],
        Err(errors) => errors.into_iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn a_complete_policy_passes_every_rule() {
    assert_eq!(cel_errors(base()), Vec::<String>::new());
    let selector_only = with(|v| {
        v["spec"]["stepFunctions"] =
            json!({"region": "eu-west-1", "selector": {"nameRegex": "^orders-"}});
    });
    assert_eq!(cel_errors(selector_only), Vec::<String>::new());
}

#[test]
fn needs_state_machines_or_selector() {
    let doc = with(|v| {
        v["spec"]["stepFunctions"] = json!({"region": "eu-west-1"});
    });
    let errs = cel_errors(doc);
    assert!(
        errs.iter().any(|m| m
            .contains("set at least one of stepFunctions.stateMachines or stepFunctions.selector")),
        "{errs:?}"
    );
    let empty_selector = with(|v| {
        v["spec"]["stepFunctions"] = json!({"region": "eu-west-1", "selector": {}});
    });
    let errs = cel_errors(empty_selector);
    assert!(
        errs.iter()
            .any(|m| m.contains("selector needs nameRegex or tags")),
        "{errs:?}"
    );
}

#[test]
fn max_age_is_capped_at_14_days_in_any_unit() {
    for ok in ["14d", "336h", "20160m", "1209600s", "1m"] {
        let doc = with(|v| v["spec"]["window"] = json!({"maxAge": ok}));
        assert_eq!(cel_errors(doc), Vec::<String>::new(), "{ok}");
    }
    for bad in ["15d", "337h", "1209601s"] {
        let doc = with(|v| v["spec"]["window"] = json!({"maxAge": bad}));
        let errs = cel_errors(doc);
        assert!(
            errs.iter()
                .any(|m| m.contains("window.maxAge must be at most 14d")),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn min_age_must_be_below_max_age() {
    let doc = with(|v| v["spec"]["window"] = json!({"minAge": "2d", "maxAge": "1d"}));
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("window.minAge must be shorter than window.maxAge")),
        "{errs:?}"
    );
}

#[test]
fn poll_interval_has_a_floor() {
    let doc = with(|v| v["spec"]["pollInterval"] = json!("5s"));
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("pollInterval must be at least 10s")),
        "{errs:?}"
    );
    let doc = with(|v| v["spec"]["pollInterval"] = json!("10s"));
    assert_eq!(cel_errors(doc), Vec::<String>::new());
}

#[test]
fn backoff_initial_must_not_exceed_max() {
    let doc = with(|v| v["spec"]["backoff"] = json!({"initial": "2h", "max": "1h"}));
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("backoff.initial must not exceed backoff.max")),
        "{errs:?}"
    );
}

#[test]
fn state_machine_arns_must_be_in_the_region() {
    let doc = with(|v| {
        v["spec"]["stepFunctions"]["stateMachines"] =
            json!(["arn:aws:states:us-east-1:123456789012:stateMachine:orders"]);
    });
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("must be in stepFunctions.region")),
        "{errs:?}"
    );
}

#[test]
fn statuses_must_not_repeat() {
    let doc = with(|v| v["spec"]["statuses"] = json!(["FAILED", "FAILED"]));
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("statuses must not repeat a value")),
        "{errs:?}"
    );
}

#[test]
fn max_run_time_is_capped_at_a_year() {
    let doc = with(|v| v["spec"]["stepFunctions"]["maxRunTime"] = json!("366d"));
    let errs = cel_errors(doc);
    assert!(
        errs.iter()
            .any(|m| m.contains("maxRunTime must be at most 365d")),
        "{errs:?}"
    );
}
