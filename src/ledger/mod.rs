//! The attempt ledger: durable "at most once" for targets without an idempotency token.
//!
//! AWS CodePipeline (`RetryStageExecution`) and Adobe Flow Service (re-running a flow) accept the
//! same request twice and act twice. So before acting on attempt *n* of a failed run, a replica
//! **claims** the key (run, *n*) in a ledger, and only the one claim that *creates* the record may
//! act. Everything else here follows from that rule (docs: multi-target.md §4, design.md §7):
//!
//! 1. [`Ledger::claim`] writes an `Intent` record (holder, deadline). It is decided by the store
//!    itself (Kubernetes `create`, or an append under an exclusive file lock), never by a cache:
//!    a cache may say "already claimed", never "not claimed". [`ClaimResult::Taken`] returns
//!    what the existing record holds.
//! 2. The holder re-reads the run's live state, acts, and [`Ledger::settle`]s the record
//!    (`Acted`, `NotActed` or `Failed`) by compare-and-swap on [`AttemptRecord::version`].
//! 3. An `Intent` whose holder died stays until its deadline. Then it is resolved *from the
//!    service* (did the action happen?), and only "it did not happen" is re-claimed with
//!    [`Ledger::take_over`], again a compare-and-swap, so two replicas resolving the same stale
//!    intent cannot both win. A `Failed` record (the service rejected the call, so nothing
//!    happened) may be taken over at once to retry the same attempt.
//! 4. Records are pruned ([`Ledger::prune`]) after the redrive window plus a margin, never
//!    while an `Intent` is within its deadline.
//!
//! Errors never mean "not claimed": an unreachable store is a retryable [`LedgerError`], and the
//! caller does not act.
//!
//! Backends: [`KubeLedger`] (`RedriveAttempt` objects, in-cluster),
//! [`FileLedger`] (an fsynced append-only log under `--state-dir`, local mode; safe
//! between processes) and [`MemoryLedger`] (`demo`, tests). All three share the pure
//! rules in this module; the two local ones share one implementation of the state machine.

pub mod file;
pub mod kube;
pub mod memory;
mod table;

use std::fmt;

use futures::future::BoxFuture;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

pub use crate::api::attempt::{AttemptOutcome as Outcome, AttemptPhase as Phase};
use crate::api::attempt::{
    MAX_CODE_LEN, MAX_HOLDER_LEN, MAX_MESSAGE_LEN, MAX_POLICY_LEN, MAX_REF_LEN, MAX_RUN_LEN,
    MAX_TARGET_LEN, MAX_WORKFLOW_LEN, RedriveAttemptSpec, hex_prefix,
};
use crate::targets::ErrorCategory;

pub use self::file::FileLedger;
pub use self::kube::KubeLedger;
pub use self::memory::MemoryLedger;

/// Version prefix of [`AttemptKey::object_name`]. Changing the name format is a breaking change
/// (old and new replicas would claim different objects for the same attempt during a rolling
/// upgrade and could both act): it must come with a new prefix and a migration.
pub const OBJECT_NAME_VERSION: &str = "ra1";

/// Longest target prefix in an object name.
const NAME_TARGET_CHARS: usize = 12;
/// Hex characters of the digest in an object name (128 bits).
const NAME_HASH_CHARS: usize = 32;

/// Identifies one attempt: attempt number `attempt` (1-based) of run `run` of service `target`,
/// recorded in `namespace`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// Namespace of the policy (the ledger is namespaced like the policies).
    pub namespace: String,
    /// The target service: `codepipeline`, `flowservice` (`^[a-z][a-z0-9]*$`, at most 63).
    pub target: String,
    /// The service run the attempt acts on, e.g. `pipeline/stage/executionId`.
    pub run: String,
    /// 1-based number of this retry of the run.
    pub attempt: u32,
}

impl AttemptKey {
    pub fn new(
        namespace: impl Into<String>,
        target: impl Into<String>,
        run: impl Into<String>,
        attempt: u32,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            target: target.into(),
            run: run.into(),
            attempt,
        }
    }

    /// The record's name, deterministic from (target, run, attempt):
    ///
    /// `ra1-<target>-<attempt>-<hex>`, where `<target>` is the target's first 12 characters of
    /// `[a-z0-9]` (`x` if none), `<attempt>` the decimal attempt number and `<hex>` the first 32
    /// hex characters (128 bits) of SHA-256(`target` `"\n"` `run` `"\n"` `attempt` in decimal).
    /// For example `ra1-codepipeline-2-5d41402abc4b2a76b9719d911017c592`.
    ///
    /// At most 3 + 1 + 12 + 1 + 10 + 1 + 32 = 60 characters of `[a-z0-9-]`, starting with a
    /// letter and ending with a hex digit: a valid DNS-1123 label (and subdomain), whatever the
    /// run id contains. The namespace is not hashed: records are namespaced. The prefix and
    /// attempt make `kubectl get rda` readable; the hash covers the full target, so two targets
    /// sharing a 12-character prefix still get different names. Versioned by
    /// [`OBJECT_NAME_VERSION`].
    pub fn object_name(&self) -> String {
        let mut prefix: String = self
            .target
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .take(NAME_TARGET_CHARS)
            .collect();
        if prefix.is_empty() {
            prefix.push('x');
        }
        let digest = Sha256::new()
            .chain_update(self.target.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.run.as_bytes())
            .chain_update(b"\n")
            .chain_update(self.attempt.to_string().as_bytes())
            .finalize();
        format!(
            "{OBJECT_NAME_VERSION}-{prefix}-{}-{}",
            self.attempt,
            hex_prefix(digest.as_slice(), NAME_HASH_CHARS)
        )
    }
}

impl fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} ({} {} attempt {})",
            self.namespace,
            self.object_name(),
            self.target,
            self.run,
            self.attempt
        )
    }
}

/// A claim to write: "I (`holder`) intend to act on `key`, until `deadline`".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewClaim {
    pub key: AttemptKey,
    /// Name of the policy that claims it.
    pub policy: String,
    /// The workflow (pipeline name, flow id).
    pub workflow: String,
    /// The lineage's original failed run (equals `key.run` except for Flow Service re-runs).
    pub root: String,
    /// The replica's identity (pod name, or host/pid in local mode).
    pub holder: String,
    pub now: Timestamp,
    /// Intent time + call timeout × attempts + clock skew: after it, the intent may be resolved
    /// from the service and taken over.
    pub deadline: Timestamp,
}

/// A record as stored, with the version to compare-and-swap on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub key: AttemptKey,
    /// Name of the record (the object name it was stored under).
    pub name: String,
    pub policy: String,
    pub workflow: String,
    pub root: String,
    pub phase: Phase,
    pub holder: String,
    /// When the current holder claimed it (a take-over moves it).
    pub intent_at: Timestamp,
    pub deadline: Timestamp,
    pub settled_at: Option<Timestamp>,
    pub outcome: Option<Outcome>,
    /// Opaque version for compare-and-swap: the `resourceVersion` in Kubernetes, the log's
    /// sequence number in a [`FileLedger`], a counter in a [`MemoryLedger`]. Only compare it
    /// for equality.
    pub version: String,
}

impl AttemptRecord {
    /// The `RedriveAttempt` spec of this record.
    pub fn spec(&self) -> RedriveAttemptSpec {
        RedriveAttemptSpec {
            target: self.key.target.clone(),
            policy: self.policy.clone(),
            workflow: self.workflow.clone(),
            run: self.key.run.clone(),
            root: self.root.clone(),
            attempt: self.key.attempt,
            phase: self.phase,
            holder: self.holder.clone(),
            intent_at: self.intent_at,
            deadline: self.deadline,
            settled_at: self.settled_at,
            outcome: self.outcome.clone(),
        }
    }

    /// A record from a stored spec.
    pub fn from_spec(
        namespace: impl Into<String>,
        name: impl Into<String>,
        spec: RedriveAttemptSpec,
        version: impl Into<String>,
    ) -> Self {
        Self {
            key: AttemptKey {
                namespace: namespace.into(),
                target: spec.target,
                run: spec.run,
                attempt: spec.attempt,
            },
            name: name.into(),
            policy: spec.policy,
            workflow: spec.workflow,
            root: spec.root,
            phase: spec.phase,
            holder: spec.holder,
            intent_at: spec.intent_at,
            deadline: spec.deadline,
            settled_at: spec.settled_at,
            outcome: spec.outcome,
            version: version.into(),
        }
    }

    /// The `Intent` record a claim creates (version to be assigned by the store).
    pub fn from_claim(claim: &NewClaim, version: impl Into<String>) -> Self {
        Self {
            name: claim.key.object_name(),
            key: claim.key.clone(),
            policy: claim.policy.clone(),
            workflow: claim.workflow.clone(),
            root: claim.root.clone(),
            phase: Phase::Intent,
            holder: claim.holder.clone(),
            intent_at: claim.now,
            deadline: claim.deadline,
            settled_at: None,
            outcome: None,
            version: version.into(),
        }
    }

    /// This record settled as `phase` (content only; the store assigns the version).
    pub fn settled(&self, phase: Phase, outcome: Option<Outcome>, now: Timestamp) -> Self {
        Self {
            phase,
            outcome,
            settled_at: Some(now),
            ..self.clone()
        }
    }

    /// This record taken over by `holder` (content only; the store assigns the version).
    pub fn taken_over(&self, holder: &str, now: Timestamp, deadline: Timestamp) -> Self {
        Self {
            phase: Phase::Intent,
            holder: holder.to_string(),
            intent_at: now,
            deadline,
            settled_at: None,
            outcome: None,
            ..self.clone()
        }
    }
}

/// Result of [`Ledger::claim`] and [`Ledger::take_over`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimResult {
    /// This call created (or took over) the claim: the caller, and only the caller, may act.
    Claimed(AttemptRecord),
    /// Someone else's write came first; this is what the record holds now. Do not act.
    ///
    /// A `Taken` record whose `holder` is the caller's own identity can be an earlier claim of
    /// the caller whose answer was lost (a timeout after the store committed). Treat it as in
    /// doubt (resolve from the service once past the deadline), never as permission to act.
    Taken(AttemptRecord),
}

impl ClaimResult {
    pub fn is_claimed(&self) -> bool {
        matches!(self, ClaimResult::Claimed(_))
    }

    pub fn record(&self) -> &AttemptRecord {
        match self {
            ClaimResult::Claimed(r) | ClaimResult::Taken(r) => r,
        }
    }

    pub fn into_record(self) -> AttemptRecord {
        match self {
            ClaimResult::Claimed(r) | ClaimResult::Taken(r) => r,
        }
    }
}

/// A failed ledger operation. None of these means "not claimed": the caller must not act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Compare-and-swap lost: the record changed since it was read. Re-read and decide again.
    #[error("attempt {name} changed since it was read (expected version {expected})")]
    Conflict { name: String, expected: String },
    /// The record (or its store: namespace, CRD, state directory) does not exist.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// The store cannot be reached or answered with a server error (API server down, timeout,
    /// 5xx, I/O error). Retry later.
    #[error("{op}: attempt ledger unavailable: {message}")]
    Unavailable { op: &'static str, message: String },
    /// The store rate-limited the call (HTTP 429).
    #[error("{op}: attempt ledger throttled: {message}")]
    Throttled { op: &'static str, message: String },
    /// Not allowed (RBAC, file permissions).
    #[error("{op}: access to the attempt ledger denied: {message}")]
    Forbidden { op: &'static str, message: String },
    /// The request is invalid (bad input, or rejected by the store's validation).
    #[error("invalid attempt ledger request: {message}")]
    Invalid { message: String },
    /// `take_over` of a record that is neither an expired `Intent` nor `Failed`.
    #[error("attempt {name} cannot be taken over: it is {phase} until {deadline}")]
    NotReclaimable {
        name: String,
        phase: Phase,
        deadline: Timestamp,
    },
    /// `settle` of a record that is not an `Intent`.
    #[error("attempt {name} cannot be settled: it is already {phase}")]
    AlreadySettled { name: String, phase: Phase },
    /// Two different keys mapped to one record name (a 128-bit hash collision, or a foreign
    /// object with our name). Never act on it.
    #[error("attempt {name} belongs to another key ({existing})")]
    Collision { name: String, existing: String },
    /// A stored record cannot be read.
    #[error("attempt ledger corrupt: {message}")]
    Corrupt { message: String },
    /// A write on a ledger opened read-only (`plan`).
    #[error("attempt ledger opened read-only: {op} refused")]
    ReadOnly { op: &'static str },
}

impl LedgerError {
    /// The category for metrics labels, events and retries.
    ///
    /// A store outage is `Transient` (retryable), never a "not claimed"; a lost
    /// compare-and-swap is `Transient` too (re-read, decide again).
    pub fn category(&self) -> ErrorCategory {
        match self {
            LedgerError::Conflict { .. } | LedgerError::Unavailable { .. } => {
                ErrorCategory::Transient
            }
            LedgerError::NotFound { .. } => ErrorCategory::NotFound,
            LedgerError::Throttled { .. } => ErrorCategory::Throttled,
            LedgerError::Forbidden { .. } => ErrorCategory::AccessDenied,
            LedgerError::Invalid { .. }
            | LedgerError::NotReclaimable { .. }
            | LedgerError::AlreadySettled { .. }
            | LedgerError::ReadOnly { .. } => ErrorCategory::Invalid,
            LedgerError::Collision { .. } | LedgerError::Corrupt { .. } => {
                ErrorCategory::Unexpected
            }
        }
    }

    /// A finer, stable code for logs and events (`conflict`, `unavailable`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Conflict { .. } => "conflict",
            LedgerError::NotFound { .. } => "not_found",
            LedgerError::Unavailable { .. } => "unavailable",
            LedgerError::Throttled { .. } => "throttled",
            LedgerError::Forbidden { .. } => "forbidden",
            LedgerError::Invalid { .. } => "invalid",
            LedgerError::NotReclaimable { .. } => "not_reclaimable",
            LedgerError::AlreadySettled { .. } => "already_settled",
            LedgerError::Collision { .. } => "collision",
            LedgerError::Corrupt { .. } => "corrupt",
            LedgerError::ReadOnly { .. } => "read_only",
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.category().is_retryable()
    }

    /// An I/O error, classified by kind.
    pub(crate) fn io(op: &'static str, path: &std::path::Path, err: &std::io::Error) -> Self {
        let message = format!("{}: {err}", path.display());
        match err.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                LedgerError::Forbidden { op, message }
            }
            std::io::ErrorKind::NotFound => LedgerError::NotFound { what: message },
            _ => LedgerError::Unavailable { op, message },
        }
    }
}

/// The ledger: a store where creating a record is the claim.
///
/// Object-safe (use it as `Arc<dyn Ledger>`). Every method decides against the store itself,
/// never against a cache.
pub trait Ledger: Send + Sync {
    /// Create the `Intent` record of `claim.key`. `Claimed` if this call created it; `Taken`
    /// with the existing record otherwise.
    fn claim(&self, claim: NewClaim) -> BoxFuture<'_, Result<ClaimResult, LedgerError>>;

    /// Record the outcome of an `Intent`: compare-and-swap on `record.version`. Returns the
    /// stored record (with its new version). `Conflict` if the record changed since it was read
    /// (taken over, settled by someone else); `AlreadySettled` if it is not an `Intent`.
    fn settle<'a>(
        &'a self,
        record: &'a AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<AttemptRecord, LedgerError>>;

    /// Re-claim `stale` for `holder` until `deadline`, when it is an `Intent` past its deadline
    /// (the caller has established from the service that the action did not happen) or
    /// `Failed`. Compare-and-swap on `stale.version`: losing the race returns `Taken` with the
    /// winner's record. `NotReclaimable` if the record, unchanged, is not reclaimable at `now`.
    fn take_over<'a>(
        &'a self,
        stale: &'a AttemptRecord,
        holder: &'a str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> BoxFuture<'a, Result<ClaimResult, LedgerError>>;

    /// The record of `key`, if any.
    fn get<'a>(
        &'a self,
        key: &'a AttemptKey,
    ) -> BoxFuture<'a, Result<Option<AttemptRecord>, LedgerError>>;

    /// The records of `namespace`, optionally only those of one root lineage, sorted by name.
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        root: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<AttemptRecord>, LedgerError>>;

    /// Delete the records of `namespace` that [`is_prunable`] before `before` (a cutoff in the
    /// past: now − redrive window − margin; a cutoff in the future is `Invalid`). Returns how
    /// many were deleted. Never deletes an `Intent` within its deadline, nor a record changed
    /// since it was examined.
    fn prune<'a>(
        &'a self,
        namespace: &'a str,
        before: Timestamp,
    ) -> BoxFuture<'a, Result<usize, LedgerError>>;
}

/// Whether `record` is an `Intent` whose deadline has passed at `now` (strictly after the
/// deadline; the holder may act until the deadline itself).
pub fn is_expired(record: &AttemptRecord, now: Timestamp) -> bool {
    record.phase == Phase::Intent && now > record.deadline
}

/// Whether [`Ledger::take_over`] may re-claim `record` at `now`: an expired `Intent`, or
/// `Failed` (the service rejected the call, so nothing happened). `Acted` and `NotActed` are
/// final.
pub fn is_reclaimable(record: &AttemptRecord, now: Timestamp) -> bool {
    match record.phase {
        Phase::Intent => is_expired(record, now),
        Phase::Failed => true,
        Phase::Acted | Phase::NotActed => false,
    }
}

/// Whether [`Ledger::prune`] with cutoff `before` deletes `record`: a settled record settled
/// before the cutoff, or an `Intent` whose deadline is before the cutoff (an intent that old is
/// outside the redrive window: nobody will look at its run again).
pub fn is_prunable(record: &AttemptRecord, before: Timestamp) -> bool {
    match record.phase {
        Phase::Intent => record.deadline < before,
        Phase::Acted | Phase::NotActed | Phase::Failed => {
            record.settled_at.unwrap_or(record.intent_at) < before
        }
    }
}

/// Checks a claim before it is written (the same limits as the CRD schema, so every backend
/// accepts and refuses the same claims).
pub fn validate_claim(claim: &NewClaim) -> Result<(), LedgerError> {
    validate_target(&claim.key.target)?;
    if claim.key.namespace.is_empty() {
        return invalid("namespace is empty");
    }
    if claim.key.attempt == 0 {
        return invalid("attempt numbers start at 1");
    }
    bounded("run", &claim.key.run, 1, MAX_RUN_LEN)?;
    bounded("root", &claim.root, 1, MAX_RUN_LEN)?;
    bounded("policy", &claim.policy, 1, MAX_POLICY_LEN)?;
    bounded("workflow", &claim.workflow, 0, MAX_WORKFLOW_LEN)?;
    validate_holder(&claim.holder, claim.now, claim.deadline)
}

fn validate_target(target: &str) -> Result<(), LedgerError> {
    let ok = target.len() <= MAX_TARGET_LEN
        && target.starts_with(|c: char| c.is_ascii_lowercase())
        && target
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "target {target:?} must match ^[a-z][a-z0-9]*$ (at most {MAX_TARGET_LEN})"
        ))
    }
}

/// Checks a holder and its deadline (claims and take-overs).
pub(crate) fn validate_holder(
    holder: &str,
    now: Timestamp,
    deadline: Timestamp,
) -> Result<(), LedgerError> {
    bounded("holder", holder, 1, MAX_HOLDER_LEN)?;
    if deadline <= now {
        return invalid(format!("deadline {deadline} is not after now ({now})"));
    }
    Ok(())
}

/// Checks a settle request and clips the outcome's message to [`MAX_MESSAGE_LEN`] characters.
pub(crate) fn prepare_settle(
    phase: Phase,
    outcome: Option<Outcome>,
) -> Result<Option<Outcome>, LedgerError> {
    if phase == Phase::Intent {
        return invalid("settle needs Acted, NotActed or Failed, not Intent");
    }
    let Some(mut o) = outcome else {
        return Ok(None);
    };
    if let Some(m) = &mut o.message
        && m.chars().count() > MAX_MESSAGE_LEN
    {
        *m = m.chars().take(MAX_MESSAGE_LEN - 1).collect::<String>() + "…";
    }
    for (field, value, max) in [
        ("outcome.code", &o.code, MAX_CODE_LEN),
        ("outcome.newRunId", &o.new_run_id, MAX_REF_LEN),
        ("outcome.etag", &o.etag, MAX_REF_LEN),
    ] {
        if let Some(v) = value {
            bounded(field, v, 0, max)?;
        }
    }
    Ok(Some(o))
}

/// Checks a prune cutoff: it must not be in the future (see [`Ledger::prune`]).
pub(crate) fn validate_cutoff(before: Timestamp) -> Result<(), LedgerError> {
    if before > Timestamp::now() {
        return invalid(format!(
            "prune cutoff {before} is in the future: it would delete live intents"
        ));
    }
    Ok(())
}

/// A record found under `key`'s name must be `key`'s (see [`LedgerError::Collision`]).
pub(crate) fn check_same_key(found: &AttemptRecord, key: &AttemptKey) -> Result<(), LedgerError> {
    if found.key.target == key.target
        && found.key.run == key.run
        && found.key.attempt == key.attempt
    {
        Ok(())
    } else {
        Err(LedgerError::Collision {
            name: key.object_name(),
            existing: format!(
                "{} {} attempt {}",
                found.key.target, found.key.run, found.key.attempt
            ),
        })
    }
}

/// Length in characters (the API server counts characters, not bytes).
fn bounded(field: &str, value: &str, min: usize, max: usize) -> Result<(), LedgerError> {
    let n = value.chars().count();
    if n < min || n > max {
        return invalid(format!(
            "{field} must have {min} to {max} characters, has {n}"
        ));
    }
    Ok(())
}

fn invalid<T>(message: impl Into<String>) -> Result<T, LedgerError> {
    Err(LedgerError::Invalid {
        message: message.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn claim(run: &str, attempt: u32) -> NewClaim {
        NewClaim {
            key: AttemptKey::new("payments", "codepipeline", run, attempt),
            policy: "orders".into(),
            workflow: "orders-pipeline".into(),
            root: run.into(),
            holder: "replica-a".into(),
            now: t(0),
            deadline: t(60),
        }
    }

    fn record(phase: Phase) -> AttemptRecord {
        let mut r = AttemptRecord::from_claim(&claim("p/s/e", 1), "1");
        r.phase = phase;
        if phase.is_settled() {
            r.settled_at = Some(t(10));
        }
        r
    }

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn object_name_has_the_documented_shape_and_is_stable() {
        let key = AttemptKey::new("payments", "codepipeline", "orders/Deploy/abc-123", 2);
        let name = key.object_name();
        assert_eq!(name, key.object_name());
        assert!(name.starts_with("ra1-codepipeline-2-"), "{name}");
        assert_eq!(name.len(), "ra1-codepipeline-2-".len() + 32);
        // Pinned: changing the format is a breaking change (see OBJECT_NAME_VERSION).
        let digest = Sha256::digest(b"codepipeline\norders/Deploy/abc-123\n2");
        assert_eq!(name, format!("ra1-codepipeline-2-{}", &hex(&digest)[..32]));
        // The namespace is not part of the name; every other field is.
        let other_ns = AttemptKey::new("other", "codepipeline", "orders/Deploy/abc-123", 2);
        assert_eq!(name, other_ns.object_name());
        for other in [
            AttemptKey::new("payments", "flowservice", "orders/Deploy/abc-123", 2),
            AttemptKey::new("payments", "codepipeline", "orders/Deploy/abc-124", 2),
            AttemptKey::new("payments", "codepipeline", "orders/Deploy/abc-123", 3),
        ] {
            assert_ne!(name, other.object_name());
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn object_names_are_dns_labels_for_hostile_input() {
        let kib = "x".repeat(1024);
        let runs = [
            "",
            "a",
            "UPPER/Case/Run",
            "pipeline/stage/3f2c0a9e-1d2b-4c5d-8e9f-000000000000",
            "ünïcødé/ステージ/🚀",
            "../../etc/passwd",
            "a b\tc\nd",
            kib.as_str(),
            "-leading-dash-",
            "with.dots.and_underscores",
        ];
        for target in [
            "codepipeline",
            "flowservice",
            "averyveryverylongtarget",
            "x1",
        ] {
            for run in runs {
                for attempt in [1, 7, u32::MAX] {
                    let name = AttemptKey::new("ns", target, run, attempt).object_name();
                    assert!(is_dns_label(&name), "{target} {run:?} {attempt}: {name}");
                }
            }
        }
        // Even a target that fails validation yields a valid name.
        let name = AttemptKey::new("ns", "Ünï/--", "r", 1).object_name();
        assert!(is_dns_label(&name), "{name}");
    }

    proptest::proptest! {
        #[test]
        fn object_names_are_always_dns_labels(
            target in "\\PC{0,80}",
            run in "\\PC{0,600}",
            attempt in proptest::num::u32::ANY,
        ) {
            let name = AttemptKey::new("ns", target.clone(), run.clone(), attempt).object_name();
            proptest::prop_assert!(is_dns_label(&name), "{:?} {:?} {}: {}", target, run, attempt, name);
            let other = AttemptKey::new("ns", target, format!("{run}x"), attempt).object_name();
            proptest::prop_assert_ne!(name, other);
        }
    }

    #[test]
    fn expiry_is_strictly_after_the_deadline_and_only_for_intents() {
        let r = record(Phase::Intent);
        assert!(!is_expired(&r, t(0)));
        assert!(
            !is_expired(&r, t(60)),
            "the holder may act until the deadline"
        );
        assert!(is_expired(&r, t(61)));
        for phase in [Phase::Acted, Phase::NotActed, Phase::Failed] {
            assert!(!is_expired(&record(phase), t(1_000)), "{phase}");
        }
    }

    #[test]
    fn only_expired_intents_and_failures_are_reclaimable() {
        assert!(!is_reclaimable(&record(Phase::Intent), t(30)));
        assert!(is_reclaimable(&record(Phase::Intent), t(61)));
        assert!(is_reclaimable(&record(Phase::Failed), t(0)));
        assert!(!is_reclaimable(&record(Phase::Acted), t(1_000_000)));
        assert!(!is_reclaimable(&record(Phase::NotActed), t(1_000_000)));
    }

    #[test]
    fn prunable_by_settle_time_or_deadline() {
        let intent = record(Phase::Intent);
        assert!(!is_prunable(&intent, t(60)));
        assert!(is_prunable(&intent, t(61)));
        let acted = record(Phase::Acted); // settled at t(10)
        assert!(!is_prunable(&acted, t(10)));
        assert!(is_prunable(&acted, t(11)));
        let mut unsettled_time = record(Phase::Failed);
        unsettled_time.settled_at = None;
        assert!(is_prunable(&unsettled_time, t(1)), "falls back to intentAt");
    }

    #[test]
    fn claims_are_validated_like_the_schema() {
        assert_eq!(validate_claim(&claim("p/s/e", 1)), Ok(()));
        let bad = |f: fn(&mut NewClaim)| {
            let mut c = claim("p/s/e", 1);
            f(&mut c);
            validate_claim(&c).unwrap_err()
        };
        let cases: [fn(&mut NewClaim); 9] = [
            |c| c.key.attempt = 0,
            |c| c.key.target = "CodePipeline".into(),
            |c| c.key.target = String::new(),
            |c| c.key.run = String::new(),
            |c| c.key.run = "r".repeat(MAX_RUN_LEN + 1),
            |c| c.holder = String::new(),
            |c| c.deadline = c.now,
            |c| c.key.namespace = String::new(),
            |c| c.policy = String::new(),
        ];
        for case in cases {
            let err = bad(case);
            assert_eq!(err.category(), ErrorCategory::Invalid, "{err}");
        }
        // Limits count characters, like the API server.
        let mut c = claim(&"é".repeat(MAX_RUN_LEN), 1);
        c.root = c.key.run.clone();
        assert_eq!(validate_claim(&c), Ok(()));
    }

    #[test]
    fn settle_rejects_intent_and_clips_messages() {
        assert!(prepare_settle(Phase::Intent, None).is_err());
        let long = Outcome {
            message: Some("m".repeat(MAX_MESSAGE_LEN + 100)),
            ..Outcome::default()
        };
        let clipped = prepare_settle(Phase::Failed, Some(long)).unwrap().unwrap();
        assert_eq!(
            clipped.message.unwrap().chars().count(),
            MAX_MESSAGE_LEN,
            "clipped to the schema's maxLength"
        );
        let bad = Outcome {
            etag: Some("e".repeat(MAX_REF_LEN + 1)),
            ..Outcome::default()
        };
        assert!(prepare_settle(Phase::Acted, Some(bad)).is_err());
    }

    #[test]
    fn outages_are_retryable_and_never_look_like_not_claimed() {
        let outage = LedgerError::Unavailable {
            op: "claim",
            message: "connection refused".into(),
        };
        assert!(outage.is_retryable());
        assert_eq!(outage.category(), ErrorCategory::Transient);
        let conflict = LedgerError::Conflict {
            name: "x".into(),
            expected: "1".into(),
        };
        assert!(conflict.is_retryable());
        let io = LedgerError::io(
            "claim",
            std::path::Path::new("/x"),
            &std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert_eq!(io.category(), ErrorCategory::AccessDenied);
        let io = LedgerError::io(
            "claim",
            std::path::Path::new("/x"),
            &std::io::Error::other("disk on fire"),
        );
        assert!(io.is_retryable());
        assert_eq!(
            LedgerError::Collision {
                name: "a".into(),
                existing: "b".into()
            }
            .category(),
            ErrorCategory::Unexpected
        );
        assert_eq!(
            LedgerError::ReadOnly { op: "claim" }.code(),
            "read_only",
            "stable codes"
        );
    }

    #[test]
    fn record_transitions_keep_identity() {
        let r = record(Phase::Intent);
        let s = r.settled(Phase::Acted, None, t(5));
        assert_eq!((s.phase, s.settled_at), (Phase::Acted, Some(t(5))));
        assert_eq!((&s.key, &s.name, &s.holder), (&r.key, &r.name, &r.holder));
        let o = s.taken_over("replica-b", t(100), t(100) + SignedDuration::from_secs(60));
        assert_eq!(o.phase, Phase::Intent);
        assert_eq!(o.holder, "replica-b");
        assert_eq!(o.settled_at, None);
        assert_eq!(o.intent_at, t(100));
        let spec = o.spec();
        assert_eq!(
            AttemptRecord::from_spec("payments", o.name.clone(), spec, "1"),
            o
        );
    }

    #[test]
    fn the_trait_is_object_safe() {
        let l: std::sync::Arc<dyn Ledger> = std::sync::Arc::new(MemoryLedger::new());
        let _ = l;
    }
}
