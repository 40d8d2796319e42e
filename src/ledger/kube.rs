//! The in-cluster ledger: one `RedriveAttempt` object per attempt, in the policy's namespace.
//!
//! - **claim** = `create`. The API server (etcd) lets exactly one create of a name succeed;
//!   `409 AlreadyExists` means someone holds it, and the existing object is read and returned
//!   as [`ClaimResult::Taken`].
//! - **settle / take_over** = `replace` with the record's `resourceVersion`: a compare-and-swap.
//!   `409 Conflict` is [`LedgerError::Conflict`] for settle, and a lost race (re-read, returned
//!   as `Taken`) for take-over.
//! - **prune** = `delete` with a `resourceVersion` (and uid) precondition, so a record changed
//!   since it was listed (settled, taken over) is never deleted.
//!
//! There is no informer here on purpose. An informer cache may tell a caller "already claimed"
//! (to skip work early), never "not claimed": only the `create` decides. Every method talks to
//! the API server; an unreachable API server is a retryable error, never a claim.

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Client, ResourceExt};

use super::{
    AttemptKey, AttemptRecord, ClaimResult, Ledger, LedgerError, NewClaim, Outcome, Phase,
    check_same_key, is_prunable, is_reclaimable, prepare_settle, validate_claim, validate_cutoff,
    validate_holder,
};
use crate::api::attempt::{LABEL_ROOT, RedriveAttempt, labels, root_label_value};

/// Field manager of the ledger's writes (shown in `managedFields`).
pub const FIELD_MANAGER: &str = "redrive-operator/ledger";

/// Page size of list calls.
const PAGE: u32 = 500;

/// How often a claim retries when the object it collided with vanished before it could be read
/// (deleted by prune in between).
const CLAIM_RETRIES: usize = 3;

/// See the [module docs](self).
#[derive(Clone)]
pub struct KubeLedger {
    client: Client,
}

impl KubeLedger {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, namespace: &str) -> Api<RedriveAttempt> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn claim_inner(&self, claim: NewClaim) -> Result<ClaimResult, LedgerError> {
        validate_claim(&claim)?;
        let api = self.api(&claim.key.namespace);
        let record = AttemptRecord::from_claim(&claim, "");
        let object = to_object(&record, None);
        let pp = post_params();
        for _ in 0..CLAIM_RETRIES {
            match api.create(&pp, &object).await {
                Ok(created) => return Ok(ClaimResult::Claimed(from_object(created)?)),
                Err(kube::Error::Api(s)) if s.is_already_exists() => {
                    match api.get_opt(&record.name).await {
                        Ok(Some(existing)) => {
                            let existing = from_object(existing)?;
                            check_same_key(&existing, &claim.key)?;
                            return Ok(ClaimResult::Taken(existing));
                        }
                        // Deleted (pruned) between our create and our read: the name is free
                        // again, so the create decides once more.
                        Ok(None) => continue,
                        Err(e) => return Err(from_kube("claim: read the existing attempt", e)),
                    }
                }
                Err(e) => return Err(from_kube("claim", e)),
            }
        }
        Err(LedgerError::Unavailable {
            op: "claim",
            message: format!(
                "attempt {} was created and deleted {CLAIM_RETRIES} times while claiming",
                record.name
            ),
        })
    }

    async fn settle_inner(
        &self,
        record: &AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
    ) -> Result<AttemptRecord, LedgerError> {
        let outcome = prepare_settle(phase, outcome)?;
        if record.phase != Phase::Intent {
            return Err(LedgerError::AlreadySettled {
                name: record.name.clone(),
                phase: record.phase,
            });
        }
        let next = record.settled(phase, outcome, now);
        let api = self.api(&record.key.namespace);
        let object = to_object(&next, Some(&record.version));
        match api.replace(&record.name, &post_params(), &object).await {
            Ok(stored) => from_object(stored),
            Err(kube::Error::Api(s)) if s.is_conflict() => Err(LedgerError::Conflict {
                name: record.name.clone(),
                expected: record.version.clone(),
            }),
            Err(e) => Err(from_kube("settle", e)),
        }
    }

    async fn take_over_inner(
        &self,
        stale: &AttemptRecord,
        holder: &str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> Result<ClaimResult, LedgerError> {
        validate_holder(holder, now, deadline)?;
        if !is_reclaimable(stale, now) {
            // Refused, unless the record changed meanwhile (then report who holds it now).
            let current = self.current(stale).await?;
            if current.version != stale.version {
                return Ok(ClaimResult::Taken(current));
            }
            return Err(LedgerError::NotReclaimable {
                name: stale.name.clone(),
                phase: stale.phase,
                deadline: stale.deadline,
            });
        }
        let next = stale.taken_over(holder, now, deadline);
        let api = self.api(&stale.key.namespace);
        let object = to_object(&next, Some(&stale.version));
        match api.replace(&stale.name, &post_params(), &object).await {
            Ok(stored) => Ok(ClaimResult::Claimed(from_object(stored)?)),
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                Ok(ClaimResult::Taken(self.current(stale).await?))
            }
            Err(e) => Err(from_kube("take over", e)),
        }
    }

    /// The stored version of `record` (by name).
    async fn current(&self, record: &AttemptRecord) -> Result<AttemptRecord, LedgerError> {
        let api = self.api(&record.key.namespace);
        match api.get_opt(&record.name).await {
            Ok(Some(obj)) => {
                let current = from_object(obj)?;
                check_same_key(&current, &record.key)?;
                Ok(current)
            }
            Ok(None) => Err(LedgerError::NotFound {
                what: format!("attempt {}/{}", record.key.namespace, record.name),
            }),
            Err(e) => Err(from_kube("read attempt", e)),
        }
    }

    async fn get_inner(&self, key: &AttemptKey) -> Result<Option<AttemptRecord>, LedgerError> {
        match self.api(&key.namespace).get_opt(&key.object_name()).await {
            Ok(Some(obj)) => {
                let record = from_object(obj)?;
                check_same_key(&record, key)?;
                Ok(Some(record))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(from_kube("get", e)),
        }
    }

    /// Every object of `namespace` (optionally of one root), as (record, uid), paged.
    async fn list_objects(
        &self,
        namespace: &str,
        root: Option<&str>,
    ) -> Result<Vec<(AttemptRecord, Option<String>)>, LedgerError> {
        let api = self.api(namespace);
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(root) = root {
            lp = lp.labels(&format!("{LABEL_ROOT}={}", root_label_value(root)));
        }
        let mut out = Vec::new();
        loop {
            let page = api.list(&lp).await.map_err(|e| from_kube("list", e))?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            for obj in page.items {
                let uid = obj.metadata.uid.clone();
                let record = from_object(obj)?;
                // The label is a hash: compare the root itself.
                if root.is_none_or(|root| record.root == root) {
                    out.push((record, uid));
                }
            }
            match next {
                Some(token) => lp = lp.continue_token(&token),
                None => break,
            }
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    async fn prune_inner(&self, namespace: &str, before: Timestamp) -> Result<usize, LedgerError> {
        validate_cutoff(before)?;
        let api = self.api(namespace);
        let mut deleted = 0;
        for (record, uid) in self.list_objects(namespace, None).await? {
            if !is_prunable(&record, before) {
                continue;
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(record.version.clone()),
                    uid,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&record.name, &dp).await {
                Ok(_) => deleted += 1,
                // Changed since listed (settled, taken over) or already gone: keep / skip.
                Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {}
                Err(e) => return Err(from_kube("prune", e)),
            }
        }
        Ok(deleted)
    }
}

impl Ledger for KubeLedger {
    fn claim(&self, claim: NewClaim) -> BoxFuture<'_, Result<ClaimResult, LedgerError>> {
        self.claim_inner(claim).boxed()
    }

    fn settle<'a>(
        &'a self,
        record: &'a AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<AttemptRecord, LedgerError>> {
        self.settle_inner(record, phase, outcome, now).boxed()
    }

    fn take_over<'a>(
        &'a self,
        stale: &'a AttemptRecord,
        holder: &'a str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> BoxFuture<'a, Result<ClaimResult, LedgerError>> {
        self.take_over_inner(stale, holder, now, deadline).boxed()
    }

    fn get<'a>(
        &'a self,
        key: &'a AttemptKey,
    ) -> BoxFuture<'a, Result<Option<AttemptRecord>, LedgerError>> {
        self.get_inner(key).boxed()
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        root: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<AttemptRecord>, LedgerError>> {
        async move {
            Ok(self
                .list_objects(namespace, root)
                .await?
                .into_iter()
                .map(|(r, _)| r)
                .collect())
        }
        .boxed()
    }

    fn prune<'a>(
        &'a self,
        namespace: &'a str,
        before: Timestamp,
    ) -> BoxFuture<'a, Result<usize, LedgerError>> {
        self.prune_inner(namespace, before).boxed()
    }
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.to_string()),
    }
}

/// The object for `record`: labels recomputed from the record, no ownerReferences (records
/// outlive their policy), `resourceVersion` set for a compare-and-swap replace.
pub fn to_object(record: &AttemptRecord, resource_version: Option<&str>) -> RedriveAttempt {
    RedriveAttempt {
        metadata: ObjectMeta {
            name: Some(record.name.clone()),
            namespace: Some(record.key.namespace.clone()),
            labels: Some(labels(&record.key.target, &record.policy, &record.root)),
            resource_version: resource_version.map(str::to_string),
            ..ObjectMeta::default()
        },
        spec: record.spec(),
    }
}

/// The record of a stored object.
pub fn from_object(object: RedriveAttempt) -> Result<AttemptRecord, LedgerError> {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    let version = object
        .metadata
        .resource_version
        .clone()
        .ok_or_else(|| LedgerError::Corrupt {
            message: format!("attempt {namespace}/{name} has no resourceVersion"),
        })?;
    Ok(AttemptRecord::from_spec(
        namespace,
        name,
        object.spec,
        version,
    ))
}

/// Classifies a client error. Connection failures, timeouts and server errors are
/// `Unavailable` (retryable): an outage never reads as "not claimed".
pub fn from_kube(op: &'static str, err: kube::Error) -> LedgerError {
    match err {
        kube::Error::Api(s) => {
            let message = format!("{} ({}, HTTP {})", s.message, s.reason, s.code);
            if s.is_not_found() {
                LedgerError::NotFound {
                    what: format!("{op}: {message}"),
                }
            } else if s.is_forbidden() || s.code == 401 {
                LedgerError::Forbidden { op, message }
            } else if s.code == 429 {
                LedgerError::Throttled { op, message }
            } else if s.is_invalid() || s.code == 400 {
                LedgerError::Invalid {
                    message: format!("{op}: {message}"),
                }
            } else {
                // 5xx, 504 timeouts, a 409 outside a compare-and-swap (those are matched where
                // they happen), anything unexpected from the server: retry later.
                LedgerError::Unavailable { op, message }
            }
        }
        kube::Error::SerdeError(e) => LedgerError::Corrupt {
            message: format!("{op}: unreadable RedriveAttempt: {e}"),
        },
        // Connection refused, TLS, timeouts, auth token refresh, dropped streams.
        other => LedgerError::Unavailable {
            op,
            message: other.to_string(),
        },
    }
}
