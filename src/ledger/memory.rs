//! An in-process ledger for `demo` and unit tests: the same state machine as
//! [`super::FileLedger`] (shared code), without persistence. Safe between tasks and threads of
//! one process; forgets everything when dropped, so never use it where a restart must not
//! repeat an action.

use std::sync::Mutex;

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;

use super::table::Table;
use super::{
    AttemptKey, AttemptRecord, ClaimResult, Ledger, LedgerError, NewClaim, Outcome, Phase,
    validate_cutoff,
};

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    table: Mutex<Table>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records, in every namespace.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave a half-applied write (the table changes
        // in one insert), so a poisoned lock is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn no_persist(_: u64, _: &AttemptRecord) -> Result<(), LedgerError> {
    Ok(())
}

impl Ledger for MemoryLedger {
    fn claim(&self, claim: NewClaim) -> BoxFuture<'_, Result<ClaimResult, LedgerError>> {
        let r = self.table().claim(&claim, no_persist);
        futures::future::ready(r).boxed()
    }

    fn settle<'a>(
        &'a self,
        record: &'a AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<AttemptRecord, LedgerError>> {
        let r = self.table().settle(record, phase, outcome, now, no_persist);
        futures::future::ready(r).boxed()
    }

    fn take_over<'a>(
        &'a self,
        stale: &'a AttemptRecord,
        holder: &'a str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> BoxFuture<'a, Result<ClaimResult, LedgerError>> {
        let r = self
            .table()
            .take_over(stale, holder, now, deadline, no_persist);
        futures::future::ready(r).boxed()
    }

    fn get<'a>(
        &'a self,
        key: &'a AttemptKey,
    ) -> BoxFuture<'a, Result<Option<AttemptRecord>, LedgerError>> {
        futures::future::ready(self.table().get(key)).boxed()
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        root: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<AttemptRecord>, LedgerError>> {
        futures::future::ready(Ok(self.table().list(namespace, root))).boxed()
    }

    fn prune<'a>(
        &'a self,
        namespace: &'a str,
        before: Timestamp,
    ) -> BoxFuture<'a, Result<usize, LedgerError>> {
        let r = validate_cutoff(before).map(|()| {
            let mut table = self.table();
            let gone = table.prunable(namespace, before);
            table.remove(&gone);
            gone.len()
        });
        futures::future::ready(r).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use jiff::SignedDuration;

    fn now() -> Timestamp {
        Timestamp::now()
    }

    fn claim(run: &str, holder: &str, deadline: Timestamp) -> NewClaim {
        NewClaim {
            key: AttemptKey::new("ns", "codepipeline", run, 1),
            policy: "p".into(),
            workflow: "w".into(),
            root: "root".into(),
            holder: holder.into(),
            now: now() - SignedDuration::from_secs(120),
            deadline,
        }
    }

    #[test]
    fn claim_settle_take_over_prune() {
        let l = MemoryLedger::new();
        let soon = now() + SignedDuration::from_secs(60);
        let first = block_on(l.claim(claim("r1", "a", soon))).unwrap();
        assert!(first.is_claimed());
        let again = block_on(l.claim(claim("r1", "b", soon))).unwrap();
        assert_eq!(again, ClaimResult::Taken(first.record().clone()));

        // Settle with the right version; a second settle (stale version) conflicts.
        let rec = first.into_record();
        let settled = block_on(l.settle(&rec, Phase::Acted, None, now())).unwrap();
        assert_ne!(settled.version, rec.version);
        let err = block_on(l.settle(&rec, Phase::Failed, None, now())).unwrap_err();
        assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
        // Settled Acted is final.
        let err = block_on(l.settle(&settled, Phase::Failed, None, now())).unwrap_err();
        assert!(matches!(err, LedgerError::AlreadySettled { .. }), "{err}");
        let err = block_on(l.take_over(&settled, "b", now(), soon)).unwrap_err();
        assert!(matches!(err, LedgerError::NotReclaimable { .. }), "{err}");

        // An expired intent: one take-over wins, the stale copy loses.
        let past = now() - SignedDuration::from_secs(60);
        let stale = block_on(l.claim(claim("r2", "a", past)))
            .unwrap()
            .into_record();
        let won = block_on(l.take_over(&stale, "b", now(), soon)).unwrap();
        assert!(won.is_claimed());
        assert_eq!(won.record().holder, "b");
        let lost = block_on(l.take_over(&stale, "c", now(), soon)).unwrap();
        assert_eq!(lost, ClaimResult::Taken(won.record().clone()));

        // Prune: the settled record (settled before the cutoff) goes, the live intent stays.
        let n = block_on(l.prune("ns", now())).unwrap();
        assert_eq!(n, 1);
        let left = block_on(l.list("ns", None)).unwrap();
        assert_eq!(left, vec![won.into_record()]);
        assert!(block_on(l.prune("ns", now() + SignedDuration::from_secs(3600))).is_err());
    }

    #[test]
    fn versions_are_never_reused_after_prune() {
        let l = MemoryLedger::new();
        let past = now() - SignedDuration::from_secs(60);
        let r = block_on(l.claim(claim("r", "a", past)))
            .unwrap()
            .into_record();
        assert_eq!(block_on(l.prune("ns", now())).unwrap(), 1);
        let again = block_on(l.claim(claim("r", "a", past)))
            .unwrap()
            .into_record();
        assert_ne!(r.version, again.version, "no ABA on a re-created key");
        let err = block_on(l.settle(&r, Phase::Acted, None, now())).unwrap_err();
        assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    }
}
