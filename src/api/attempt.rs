//! The `RedriveAttempt` custom resource (`redrive.dev/v1alpha1`): one object per (run, attempt),
//! the durable record behind "never act twice" for targets that have no idempotency token
//! (AWS CodePipeline, Adobe Flow Service). Step Functions keeps its service-side client token and
//! writes none of these.
//!
//! **Creating the object is the claim.** The API server lets exactly one `create` of a name
//! succeed; every other replica gets `409 AlreadyExists` and reads who holds it. The object name
//! is the attempt key ([`crate::ledger::AttemptKey::object_name`]). Settling (Acted / NotActed /
//! Failed) and taking over an expired intent are `replace` calls with a `resourceVersion`
//! precondition, i.e. compare-and-swap. [`crate::ledger::kube::KubeLedger`] implements that;
//! nothing else should write these objects.
//!
//! Design choices, following the `coordination.k8s.io` Lease precedent:
//! - **No status subresource; everything lives in `spec`.** A claim must be complete in the one
//!   `create` that decides it. With a status subresource the API server *drops* `status` from a
//!   create (and `spec` from a status update), so a claim would need a second write and a crash
//!   in between would leave an object that says "claimed" without saying by whom or until when.
//!   Leases keep `holderIdentity`/`renewTime` in `spec` for the same reason.
//! - **No ownerReferences.** Records are keyed by run, not by policy, and must outlive the policy
//!   that wrote them: when GitOps deletes and re-creates a policy (or two policies overlap), the
//!   records still dedupe, and old failures are not redriven again. They are pruned by age.
//! - **Labels for cheap listing**, set on create: [`LABEL_TARGET`], [`LABEL_POLICY`] and
//!   [`LABEL_ROOT`] (a hash: label values are at most 63 characters).
//! - **Server-side guards** (CEL): the identity fields are immutable, a settled record carries
//!   `settledAt`, and `Acted` / `NotActed` are final (only `Intent` and `Failed` may change).
//!   The ledger enforces the same rules client-side; the schema makes a buggy or stale writer
//!   fail loudly instead of rewriting history.
//! - String fields are bounded so the CEL rules fit the API server's cost budget and one object
//!   stays small.
//!
//! These Rust types are the source of truth: [`attempt_crd_yaml`] generates
//! `crds/redriveattempts.redrive.dev.yaml` (checked by `tests/crd_attempt.rs`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label: the target service (`codepipeline`, `flowservice`).
pub const LABEL_TARGET: &str = "redrive.dev/target";
/// Label: the policy that claimed the attempt (see [`policy_label_value`]).
pub const LABEL_POLICY: &str = "redrive.dev/policy";
/// Label: hash of the root run (see [`root_label_value`]), to list one lineage.
pub const LABEL_ROOT: &str = "redrive.dev/root";
/// Label: `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "redrive-operator";

/// Longest `target` (a label value and part of the object name).
pub const MAX_TARGET_LEN: usize = 63;
/// Longest `policy` (a Kubernetes object name).
pub const MAX_POLICY_LEN: usize = 253;
/// Longest `workflow`.
pub const MAX_WORKFLOW_LEN: usize = 1024;
/// Longest `run` / `root`.
pub const MAX_RUN_LEN: usize = 4096;
/// Longest `holder`.
pub const MAX_HOLDER_LEN: usize = 253;
/// Longest `outcome.code`.
pub const MAX_CODE_LEN: usize = 256;
/// Longest `outcome.message` (the ledger clips longer messages).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Longest `outcome.newRunId` / `outcome.etag`.
pub const MAX_REF_LEN: usize = 1024;

/// One attempt to act on one failed run, claimed by one replica.
// The repeated `type_` keys belong to different printcolumns, not one attribute twice.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "redrive.dev",
    version = "v1alpha1",
    kind = "RedriveAttempt",
    plural = "redriveattempts",
    singular = "redriveattempt",
    shortname = "rda",
    category = "redrive",
    namespaced,
    derive = "PartialEq",
    cel,
    doc = "RedriveAttempt is redrive-operator's durable claim on one attempt to redrive one failed run (AWS CodePipeline, Adobe Flow Service). Creating it is the claim; it is written only by the operator and pruned after the redrive window.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target"),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy"),
    printcolumn(name = "Run", type_ = "string", json_path = ".spec.run"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".spec.attempt"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".spec.phase"),
    // The lineage at a glance for services that start a new run per attempt (Flow Service).
    printcolumn(
        name = "New run",
        type_ = "string",
        json_path = ".spec.outcome.newRunId"
    ),
    printcolumn(
        name = "Holder",
        type_ = "string",
        json_path = ".spec.holder",
        priority = 1
    ),
    printcolumn(
        name = "Deadline",
        type_ = "date",
        json_path = ".spec.deadline",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("self.phase == 'Intent' || has(self.settledAt)").message("a settled attempt needs settledAt"),
    validation = Rule::new("oldSelf.phase == 'Intent' || oldSelf.phase == 'Failed' || self == oldSelf").message("an Acted or NotActed attempt is final")
)]
#[serde(rename_all = "camelCase")]
pub struct RedriveAttemptSpec {
    /// Target service: codepipeline, flowservice.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]*$"), length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("target is immutable"))]
    pub target: String,

    /// Name of the RedrivePolicy that claimed this attempt. Informational: records have no
    /// ownerReference and outlive the policy.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("policy is immutable"))]
    pub policy: String,

    /// The workflow (pipeline name, flow id).
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("workflow is immutable"))]
    pub workflow: String,

    /// The service run this attempt acts on, e.g. pipeline/stage/executionId.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("run is immutable"))]
    pub run: String,

    /// The original failed run of the lineage; equals run except for Flow Service re-runs.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("root is immutable"))]
    pub root: String,

    /// 1-based number of this retry of the run.
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("attempt is immutable"))]
    pub attempt: u32,

    /// Intent (claimed, outcome not known yet), Acted, NotActed or Failed.
    pub phase: AttemptPhase,

    /// Identity of the replica that holds (or held) the claim.
    #[schemars(length(min = 1, max = 253))]
    pub holder: String,

    /// When the holder claimed the attempt (RFC 3339).
    #[schemars(schema_with = "date_time")]
    pub intent_at: Timestamp,

    /// Until when the holder may act; an Intent past it may be resolved and taken over (RFC 3339).
    #[schemars(schema_with = "date_time")]
    pub deadline: Timestamp,

    /// When the outcome was recorded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time")]
    pub settled_at: Option<Timestamp>,

    /// What the service answered, when settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
}

/// Where an attempt stands.
#[derive(
    schemars::JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum AttemptPhase {
    /// Claimed; the holder may be acting right now. Nobody else may act until it settles or
    /// its deadline passes and the service shows the action did not happen.
    Intent,
    /// The holder acted and the service accepted it. Final.
    Acted,
    /// The holder decided not to act (superseded, already retried, excluded). Final.
    NotActed,
    /// The service answered the action with an error, so it did not happen. May be taken over
    /// to retry the same attempt. (An ambiguous outcome, such as a timeout, stays Intent.)
    Failed,
}

impl AttemptPhase {
    pub const ALL: [AttemptPhase; 4] = [Self::Intent, Self::Acted, Self::NotActed, Self::Failed];

    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "Intent",
            Self::Acted => "Acted",
            Self::NotActed => "NotActed",
            Self::Failed => "Failed",
        }
    }

    /// Acted, NotActed or Failed.
    pub fn is_settled(self) -> bool {
        self != Self::Intent
    }
}

impl std::fmt::Display for AttemptPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the service answered.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOutcome {
    /// The service's result or error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub code: Option<String>,
    /// Human-readable detail (clipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// The run the action started, when the service starts a new one (Flow Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub new_run_id: Option<String>,
    /// The service's entity tag of the run after the action, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub etag: Option<String>,
}

fn date_time(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// Value of [`LABEL_ROOT`]: the first 32 hex characters (128 bits) of SHA-256 of the root run.
/// A label selector on it narrows a list to one lineage; callers still compare `spec.root`,
/// so a collision could only widen a list, never hide a record.
pub fn root_label_value(root: &str) -> String {
    hex_prefix(Sha256::digest(root.as_bytes()).as_slice(), 32)
}

/// Value of [`LABEL_POLICY`]: the policy name when it is a valid label value (at most 63
/// characters, which covers almost every name), otherwise its first 30 characters, `-` and 16
/// hex characters of SHA-256 of the full name.
pub fn policy_label_value(policy: &str) -> String {
    if is_label_value(policy) {
        return policy.to_string();
    }
    let head: String = policy
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(30)
        .collect();
    let head = head.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let hash = hex_prefix(Sha256::digest(policy.as_bytes()).as_slice(), 16);
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Whether `v` is a valid label value: empty, or at most 63 characters of `[A-Za-z0-9_.-]`
/// beginning and ending with an alphanumeric character.
pub fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    v.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The labels a claim carries.
pub fn labels(target: &str, policy: &str, root: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_TARGET.to_string(), target.to_string()),
        (LABEL_POLICY.to_string(), policy_label_value(policy)),
        (LABEL_ROOT.to_string(), root_label_value(root)),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

pub(crate) fn hex_prefix(bytes: &[u8], chars: usize) -> String {
    let mut s = String::with_capacity(chars + 1);
    for b in bytes {
        if s.len() >= chars {
            break;
        }
        s.push_str(&format!("{b:02x}"));
    }
    s.truncate(chars);
    s
}

/// The CRD as YAML, the content of `crds/redriveattempts.redrive.dev.yaml`.
pub fn attempt_crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RedriveAttempt::crd();
    let body = serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML");
    format!(
        "# Generated from src/api/attempt.rs. Do not edit by hand; regenerate with\n# REDRIVE_REGENERATE=1 cargo test --test crd_attempt\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_valid_and_stable() {
        assert_eq!(policy_label_value("orders"), "orders");
        let long = "a".repeat(200) + ".example";
        let v = policy_label_value(&long);
        assert!(is_label_value(&v) && !v.is_empty(), "{v}");
        assert_eq!(v, policy_label_value(&long));
        assert_ne!(v, policy_label_value(&("b".to_string() + &long)));
        for weird in ["", "-x-", "ünïcode/ü", &"é".repeat(100)] {
            assert!(is_label_value(&policy_label_value(weird)), "{weird:?}");
        }
        let r = root_label_value("pipeline/stage/1234");
        assert_eq!(r.len(), 32);
        assert!(is_label_value(&r));
        assert_ne!(r, root_label_value("pipeline/stage/1235"));
    }

    #[test]
    fn label_value_check() {
        assert!(is_label_value("a"));
        assert!(is_label_value("a.b-c_d"));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value("a-"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(is_label_value(&"a".repeat(63)));
    }

    #[test]
    fn schema_bounds_match_the_constants() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(RedriveAttempt::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let props = &spec["properties"];
        for (field, max) in [
            ("target", MAX_TARGET_LEN),
            ("policy", MAX_POLICY_LEN),
            ("workflow", MAX_WORKFLOW_LEN),
            ("run", MAX_RUN_LEN),
            ("root", MAX_RUN_LEN),
            ("holder", MAX_HOLDER_LEN),
        ] {
            assert_eq!(props[field]["maxLength"], max, "{field}");
        }
        let outcome = &props["outcome"]["properties"];
        assert_eq!(outcome["code"]["maxLength"], MAX_CODE_LEN);
        assert_eq!(outcome["message"]["maxLength"], MAX_MESSAGE_LEN);
        assert_eq!(outcome["newRunId"]["maxLength"], MAX_REF_LEN);
        assert_eq!(outcome["etag"]["maxLength"], MAX_REF_LEN);
        assert!(
            crd["spec"]["versions"][0]["subresources"].is_null(),
            "no status subresource: a create must carry the whole claim"
        );
    }
}
