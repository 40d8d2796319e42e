//! The state machine shared by the local backends ([`super::MemoryLedger`],
//! [`super::FileLedger`]): a map of records with a monotonic sequence number as version.
//!
//! Every write goes through a `persist` callback *before* the table changes, so a backend that
//! fails to persist (the file ledger's append + fsync) leaves the table as it was and returns
//! the error: the caller never sees `Claimed` for a claim that is not durable.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{
    AttemptKey, AttemptRecord, ClaimResult, LedgerError, NewClaim, Outcome, Phase, check_same_key,
    is_prunable, is_reclaimable, prepare_settle, validate_claim, validate_holder,
};

#[derive(Debug, Default)]
pub(crate) struct Table {
    /// By (namespace, name).
    records: BTreeMap<(String, String), AttemptRecord>,
    /// The highest sequence number ever issued (never reused, also across pruning).
    pub(crate) last_seq: u64,
}

impl Table {
    /// Store `record` as written with sequence number `seq` (used when folding a log).
    pub(crate) fn apply(&mut self, mut record: AttemptRecord, seq: u64) {
        record.version = seq.to_string();
        self.last_seq = self.last_seq.max(seq);
        self.records
            .insert((record.key.namespace.clone(), record.name.clone()), record);
    }

    /// Note that `seq` was issued (a log's high-water mark).
    pub(crate) fn observe_seq(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Records in sequence order (for compaction).
    pub(crate) fn by_seq(&self) -> Vec<(u64, &AttemptRecord)> {
        let mut v: Vec<(u64, &AttemptRecord)> = self
            .records
            .values()
            .map(|r| (r.version.parse().unwrap_or(0), r))
            .collect();
        v.sort_by_key(|(seq, _)| *seq);
        v
    }

    fn lookup(&self, namespace: &str, name: &str) -> Option<&AttemptRecord> {
        self.records.get(&(namespace.to_string(), name.to_string()))
    }

    pub(crate) fn get(&self, key: &AttemptKey) -> Result<Option<AttemptRecord>, LedgerError> {
        match self.lookup(&key.namespace, &key.object_name()) {
            Some(r) => {
                check_same_key(r, key)?;
                Ok(Some(r.clone()))
            }
            None => Ok(None),
        }
    }

    pub(crate) fn list(&self, namespace: &str, root: Option<&str>) -> Vec<AttemptRecord> {
        self.records
            .range((namespace.to_string(), String::new())..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, r)| r)
            .filter(|r| root.is_none_or(|root| r.root == root))
            .cloned()
            .collect()
    }

    /// Write `record` with the next sequence number, after `persist` succeeded.
    fn write(
        &mut self,
        record: AttemptRecord,
        persist: impl FnOnce(u64, &AttemptRecord) -> Result<(), LedgerError>,
    ) -> Result<AttemptRecord, LedgerError> {
        let seq = self.last_seq + 1;
        let mut record = record;
        record.version = seq.to_string();
        persist(seq, &record)?;
        self.apply(record.clone(), seq);
        Ok(record)
    }

    pub(crate) fn claim(
        &mut self,
        claim: &NewClaim,
        persist: impl FnOnce(u64, &AttemptRecord) -> Result<(), LedgerError>,
    ) -> Result<ClaimResult, LedgerError> {
        validate_claim(claim)?;
        if let Some(existing) = self.get(&claim.key)? {
            return Ok(ClaimResult::Taken(existing));
        }
        let record = self.write(AttemptRecord::from_claim(claim, ""), persist)?;
        Ok(ClaimResult::Claimed(record))
    }

    pub(crate) fn settle(
        &mut self,
        record: &AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
        persist: impl FnOnce(u64, &AttemptRecord) -> Result<(), LedgerError>,
    ) -> Result<AttemptRecord, LedgerError> {
        let outcome = prepare_settle(phase, outcome)?;
        let current = self.current(record)?;
        if current.version != record.version {
            return Err(LedgerError::Conflict {
                name: record.name.clone(),
                expected: record.version.clone(),
            });
        }
        if current.phase != Phase::Intent {
            return Err(LedgerError::AlreadySettled {
                name: record.name.clone(),
                phase: current.phase,
            });
        }
        let next = current.settled(phase, outcome, now);
        self.write(next, persist)
    }

    pub(crate) fn take_over(
        &mut self,
        stale: &AttemptRecord,
        holder: &str,
        now: Timestamp,
        deadline: Timestamp,
        persist: impl FnOnce(u64, &AttemptRecord) -> Result<(), LedgerError>,
    ) -> Result<ClaimResult, LedgerError> {
        validate_holder(holder, now, deadline)?;
        let current = self.current(stale)?;
        if current.version != stale.version {
            return Ok(ClaimResult::Taken(current));
        }
        if !is_reclaimable(&current, now) {
            return Err(LedgerError::NotReclaimable {
                name: current.name.clone(),
                phase: current.phase,
                deadline: current.deadline,
            });
        }
        let next = current.taken_over(holder, now, deadline);
        Ok(ClaimResult::Claimed(self.write(next, persist)?))
    }

    /// The records `prune` would delete.
    pub(crate) fn prunable(&self, namespace: &str, before: Timestamp) -> Vec<AttemptRecord> {
        self.list(namespace, None)
            .into_iter()
            .filter(|r| is_prunable(r, before))
            .collect()
    }

    pub(crate) fn remove(&mut self, records: &[AttemptRecord]) {
        for r in records {
            self.records
                .remove(&(r.key.namespace.clone(), r.name.clone()));
        }
    }

    fn current(&self, record: &AttemptRecord) -> Result<AttemptRecord, LedgerError> {
        let found = self
            .lookup(&record.key.namespace, &record.name)
            .ok_or_else(|| LedgerError::NotFound {
                what: format!("attempt {}/{}", record.key.namespace, record.name),
            })?;
        check_same_key(found, &record.key)?;
        Ok(found.clone())
    }
}
