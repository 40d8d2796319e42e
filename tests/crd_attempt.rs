//! The checked-in `RedriveAttempt` CRD (repository and chart copies) matches the Rust types in
//! src/api/attempt.rs, and its CEL rules guard the ledger's invariants (evaluated client-side
//! with kube's CEL support, the same rules the API server runs; tests/ledger_kube.rs runs them
//! on a real API server).
//!
//! Regenerate both files with
//!   REDRIVE_REGENERATE=1 cargo test --test crd_attempt

use redrive_operator::api::attempt::{RedriveAttempt, RedriveAttemptSpec, attempt_crd_yaml};
use serde_json::{Value, json};

const FILES: [&str; 2] = [
    "crds/redriveattempts.redrive.dev.yaml",
    "charts/redrive-operator/crds/redriveattempts.redrive.dev.yaml",
];

#[test]
fn checked_in_attempt_crds_match_the_rust_types() {
    let generated = attempt_crd_yaml();
    let regenerate = std::env::var_os("REDRIVE_REGENERATE").is_some();
    let mut stale = Vec::new();
    for file in FILES {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        if regenerate {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("write {file}: {e}"));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == generated => {}
            Ok(_) => stale.push(format!("{file} is stale")),
            Err(e) => stale.push(format!("{file} cannot be read: {e}")),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nregenerate with\n  REDRIVE_REGENERATE=1 cargo test --test crd_attempt",
        stale.join("\n")
    );
}

#[test]
fn the_crd_has_the_documented_shape() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(RedriveAttempt::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "redriveattempts.redrive.dev");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["rda"]));
    assert_eq!(crd["spec"]["names"]["categories"], json!(["redrive"]));
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(
        version["subresources"].is_null() || version["subresources"]["status"].is_null(),
        "no status subresource: the API server would drop status from the claiming create"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in ["Target", "Policy", "Run", "Attempt", "Phase", "Age"] {
        assert!(columns.contains(&want), "{want} missing from {columns:?}");
    }
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(
        required,
        [
            "attempt", "deadline", "holder", "intentAt", "phase", "policy", "root", "run",
            "target", "workflow"
        ]
    );
    assert_eq!(
        spec["properties"]["phase"]["enum"],
        json!(["Intent", "Acted", "NotActed", "Failed"])
    );
    assert_eq!(spec["properties"]["deadline"]["format"], "date-time");
    assert!(
        version["schema"]["openAPIV3Schema"]["properties"]["status"].is_null(),
        "every field is in spec"
    );
}

fn spec(phase: &str) -> Value {
    json!({
        "target": "codepipeline",
        "policy": "orders",
        "workflow": "orders-pipeline",
        "run": "orders-pipeline/Deploy/3f2c0a9e",
        "root": "orders-pipeline/Deploy/3f2c0a9e",
        "attempt": 1,
        "phase": phase,
        "holder": "redrive-operator-0",
        "intentAt": "2026-07-01T10:00:00Z",
        "deadline": "2026-07-01T10:05:00Z",
    })
}

fn settled(phase: &str) -> Value {
    let mut s = spec(phase);
    s["settledAt"] = json!("2026-07-01T10:01:00Z");
    s["outcome"] = json!({"code": "Succeeded", "newRunId": "abc"});
    s
}

/// Messages of the rules that fail for `new` (an update from `old`, or a create).
fn cel_errors(new: Value, old: Option<Value>) -> Vec<String> {
    match RedriveAttemptSpec::validate_cel(&new, old.as_ref()) {
        Ok(()) => vec![],
        Err(errors) => errors.into_iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn a_claim_and_its_settlement_pass_every_rule() {
    assert_eq!(cel_errors(spec("Intent"), None), Vec::<String>::new());
    for phase in ["Acted", "NotActed", "Failed"] {
        assert_eq!(
            cel_errors(settled(phase), Some(spec("Intent"))),
            Vec::<String>::new(),
            "{phase}"
        );
    }
    // A failed attempt may be taken over (back to Intent, new holder).
    let mut again = spec("Intent");
    again["holder"] = json!("redrive-operator-1");
    assert_eq!(
        cel_errors(again, Some(settled("Failed"))),
        Vec::<String>::new()
    );
}

#[test]
fn acted_and_not_acted_are_final() {
    for phase in ["Acted", "NotActed"] {
        let errs = cel_errors(spec("Intent"), Some(settled(phase)));
        assert!(
            errs.iter().any(|m| m.contains("is final")),
            "{phase}: {errs:?}"
        );
        let mut other = settled(phase);
        other["outcome"]["code"] = json!("Rewritten");
        let errs = cel_errors(other, Some(settled(phase)));
        assert!(
            errs.iter().any(|m| m.contains("is final")),
            "{phase}: {errs:?}"
        );
        // An identical write is allowed (a replace that changes nothing).
        assert_eq!(
            cel_errors(settled(phase), Some(settled(phase))),
            Vec::<String>::new()
        );
    }
}

#[test]
fn identity_fields_are_immutable() {
    for (field, value) in [
        ("target", json!("flowservice")),
        ("policy", json!("other")),
        ("workflow", json!("other")),
        ("run", json!("other/run")),
        ("root", json!("other/run")),
        ("attempt", json!(2)),
    ] {
        let mut changed = spec("Intent");
        changed[field] = value;
        let errs = cel_errors(changed, Some(spec("Intent")));
        assert!(
            errs.iter().any(|m| m == &format!("{field} is immutable")),
            "{field}: {errs:?}"
        );
    }
}

#[test]
fn a_settled_attempt_needs_settled_at() {
    let mut s = settled("Acted");
    s.as_object_mut().unwrap().remove("settledAt");
    let errs = cel_errors(s, None);
    assert!(
        errs.iter().any(|m| m.contains("needs settledAt")),
        "{errs:?}"
    );
}
