//! The local-mode ledger: an fsynced, append-only JSON-lines log in a state directory.
//!
//! # Format
//!
//! The directory holds two files:
//! - `attempts.v1.jsonl`, the log. One JSON object per line, each a full snapshot:
//!   - `{"op":"put","seq":7,"namespace":"default","name":"ra1-codepipeline-1-…","spec":{…}}`:
//!     the record `name` of `namespace` is now `spec` (exactly the `RedriveAttempt` spec:
//!     `target`, `policy`, `workflow`, `run`, `root`, `attempt`, `phase`, `holder`, `intentAt`,
//!     `deadline`, `settledAt`, `outcome`).
//!   - `{"op":"mark","seq":41}`: written first by compaction: sequence numbers up to 41 were
//!     issued. Sequence numbers are never reused, also after the records that carried them are
//!     pruned, so a stale copy of a pruned-and-re-created record cannot win a compare-and-swap.
//!
//!   `seq` increases by one with every line ever written and is the record's
//!   [`AttemptRecord::version`]. The log is folded at open: the last line of a name wins.
//!   The `v1` in the name versions this format.
//! - `attempts.lock`, empty, never replaced: the file every process locks (`flock`).
//!
//! # Protocol
//!
//! Every claim, settle, take-over and prune takes an **exclusive** lock on `attempts.lock`, reads
//! the lines other processes appended since its last read, decides on that up-to-date state,
//! appends one line, `sync_data`s it, and unlocks. Two processes on one directory therefore
//! behave like two replicas on one API server: the decision and the write are one atomic step,
//! and exactly one of two racing claims appends the `Intent`. The caller gets `Claimed` only
//! after the line is on disk. Reads (`get`, `list`) take a shared lock.
//!
//! **Crash safety.** A crash can only lose or tear the line being written (every earlier line
//! was fsynced before its lock was released). A torn last line (bytes after the last newline)
//! is ignored, and truncated by the next writer; a complete line that does not parse is
//! corruption and fails the open: silently dropping a record could let an attempt be claimed
//! twice. A failed append is truncated away before the error is returned.
//!
//! **Compaction** happens on [`Ledger::prune`]: the surviving records are written to
//! `attempts.v1.jsonl.tmp`, fsynced, renamed over the log and the directory is fsynced; other
//! processes notice the new inode under the lock and fold the new file from scratch.
//!
//! **Read-only mode** ([`FileLedger::open_read_only`], for `plan`) opens files read-only,
//! never creates, truncates or repairs anything, and fails on a missing directory.
//!
//! # Why not an embedded database
//!
//! The ledger holds at most a few thousand small records and is written a few times per
//! redrive. An append-only log needs no new dependency (`std::fs::File::lock` is in std), can be
//! read with `jq` or `tail -f` when something looks wrong, and its crash behaviour is small
//! enough to state and test completely (fsync per line, torn-tail handling, atomic rename for
//! compaction). An embedded database would add a dependency and a file format nobody can
//! inspect, for durability and concurrency that this access pattern does not need.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::table::Table;
use super::{
    AttemptKey, AttemptRecord, ClaimResult, Ledger, LedgerError, NewClaim, Outcome, Phase,
    validate_cutoff,
};
use crate::api::attempt::RedriveAttemptSpec;

/// The log's file name (the `v1` versions the line format).
pub const LOG_FILE: &str = "attempts.v1.jsonl";
/// The lock file's name.
pub const LOCK_FILE: &str = "attempts.lock";
/// Compaction's temporary file.
const TMP_FILE: &str = "attempts.v1.jsonl.tmp";

/// One line of the log.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Put {
        seq: u64,
        namespace: String,
        name: String,
        spec: Box<RedriveAttemptSpec>,
    },
    Mark {
        seq: u64,
    },
}

impl Line {
    fn put(seq: u64, record: &AttemptRecord) -> Self {
        Line::Put {
            seq,
            namespace: record.key.namespace.clone(),
            name: record.name.clone(),
            spec: Box::new(record.spec()),
        }
    }
}

/// See the [module docs](self).
#[derive(Clone)]
pub struct FileLedger {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    read_only: bool,
    state: Mutex<State>,
}

struct State {
    table: Table,
    log: Log,
    /// `attempts.lock`; `None` only read-only before any writer created it.
    lock: Option<Arc<File>>,
}

/// Our handle on the log and how far we have folded it.
struct Log {
    path: PathBuf,
    read_only: bool,
    file: Option<File>,
    /// (device, inode) of `file`, to notice a compaction by another process.
    id: Option<(u64, u64)>,
    /// Bytes folded so far: the end of the last complete line.
    offset: u64,
}

/// Holds `attempts.lock` until dropped.
struct FileLock(Option<Arc<File>>);

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

impl std::fmt::Debug for FileLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLedger")
            .field("dir", &self.inner.dir)
            .field("read_only", &self.inner.read_only)
            .finish()
    }
}

impl FileLedger {
    /// Opens (creating the directory and files if needed) the ledger in `dir` for reading and
    /// writing, folds the log and repairs a torn last line. Blocking (file lock, fsync): call it
    /// at start-up, or from `spawn_blocking`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let dir = dir.as_ref().to_path_buf();
        let existed = dir.is_dir();
        std::fs::create_dir_all(&dir).map_err(|e| LedgerError::io("open", &dir, &e))?;
        if !existed && let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let lock_path = dir.join(LOCK_FILE);
        let log_path = dir.join(LOG_FILE);
        let lock_created = !lock_path.exists();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| LedgerError::io("open", &lock_path, &e))?;
        let ledger = Self::new(dir.clone(), false, Some(Arc::new(lock)));
        {
            let mut st = ledger.inner.lock_state();
            let _guard = st.lock(true)?;
            // Create the log under the lock, so a concurrent opener cannot see it half-made.
            let log_created = !log_path.exists();
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(&log_path)
                .map_err(|e| LedgerError::io("open", &log_path, &e))?;
            if lock_created || log_created {
                sync_dir(&dir)?;
            }
            st.refresh(true)?;
        }
        Ok(ledger)
    }

    /// Opens the ledger in `dir` for reading only (`plan`): nothing is ever created, written,
    /// truncated or repaired. Fails if `dir` does not exist; an existing directory without a
    /// log reads as empty.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let dir = dir.as_ref().to_path_buf();
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(LedgerError::Invalid {
                    message: format!("state directory {} is not a directory", dir.display()),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::NotFound {
                    what: format!(
                        "state directory {} (the read-only attempt ledger never creates it)",
                        dir.display()
                    ),
                });
            }
            Err(e) => return Err(LedgerError::io("open read-only", &dir, &e)),
        }
        let ledger = Self::new(dir, true, None);
        {
            let mut st = ledger.inner.lock_state();
            let _guard = st.lock(false)?;
            st.refresh(false)?;
        }
        Ok(ledger)
    }

    fn new(dir: PathBuf, read_only: bool, lock: Option<Arc<File>>) -> Self {
        let log = Log {
            path: dir.join(LOG_FILE),
            read_only,
            file: None,
            id: None,
            offset: 0,
        };
        Self {
            inner: Arc::new(Inner {
                dir,
                read_only,
                state: Mutex::new(State {
                    table: Table::default(),
                    log,
                    lock,
                }),
            }),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.inner.dir.join(LOG_FILE)
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Runs `f` under the exclusive lock on an up-to-date state (writes).
    fn write_op<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, LedgerError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, LedgerError>> {
        if self.inner.read_only {
            return futures::future::ready(Err(LedgerError::ReadOnly { op })).boxed();
        }
        self.blocking(op, move |inner| {
            let mut st = inner.lock_state();
            let _guard = st.lock(true)?;
            st.refresh(true)?;
            f(&mut st)
        })
    }

    /// Runs `f` under the shared lock on an up-to-date state (reads).
    fn read_op<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut State) -> Result<T, LedgerError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, LedgerError>> {
        self.blocking(op, move |inner| {
            let mut st = inner.lock_state();
            let _guard = st.lock(false)?;
            st.refresh(false)?;
            f(&mut st)
        })
    }

    /// File locks and fsync block: inside a Tokio runtime run them on the blocking pool, so a
    /// lock held by another process never stalls the runtime's workers; elsewhere (plain
    /// threads, `futures::executor::block_on`) run inline.
    fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Inner) -> Result<T, LedgerError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, LedgerError>> {
        let inner = self.inner.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => async move {
                handle
                    .spawn_blocking(move || f(&inner))
                    .await
                    .map_err(|e| LedgerError::Unavailable {
                        op,
                        message: format!("ledger task failed: {e}"),
                    })?
            }
            .boxed(),
            Err(_) => futures::future::ready(f(&inner)).boxed(),
        }
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every mutation of State is a fold step or a single insert after a durable append, and
        // `refresh` re-reads from disk: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Takes the process-level file lock (exclusive for writers). Read-only ledgers lock only
    /// if a writer has created the lock file.
    fn lock(&mut self, exclusive: bool) -> Result<FileLock, LedgerError> {
        let lock_path = self.log.path.with_file_name(LOCK_FILE);
        if self.lock.is_none() {
            match File::open(&lock_path) {
                Ok(f) => self.lock = Some(Arc::new(f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileLock(None)),
                Err(e) => return Err(LedgerError::io("lock", &lock_path, &e)),
            }
        }
        let file = self.lock.clone().expect("set above");
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| LedgerError::io("lock", &lock_path, &e))?;
        Ok(FileLock(Some(file)))
    }

    /// Folds the lines appended since the last call (or the whole file, if it was replaced by
    /// a compaction). With `repair`, truncates a torn last line (callers hold the exclusive
    /// lock).
    fn refresh(&mut self, repair: bool) -> Result<(), LedgerError> {
        let path = self.log.path.clone();
        let io = |e: std::io::Error| LedgerError::io("read log", &path, &e);
        match std::fs::metadata(&path) {
            Ok(m) => {
                if self.log.id != Some((m.dev(), m.ino())) {
                    let file = if self.log.read_only {
                        File::open(&path)
                    } else {
                        OpenOptions::new().read(true).append(true).open(&path)
                    }
                    .map_err(io)?;
                    let m = file.metadata().map_err(io)?;
                    self.log.id = Some((m.dev(), m.ino()));
                    self.log.file = Some(file);
                    self.log.offset = 0;
                    self.table = Table::default();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.log.id.is_none() => {
                // Read-only, and no writer ever created the log: empty.
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::Corrupt {
                    message: format!("{} disappeared while open", path.display()),
                });
            }
            Err(e) => return Err(io(e)),
        }
        let file = self.log.file.as_mut().expect("opened above");
        let len = file.metadata().map_err(io)?.len();
        if len < self.log.offset {
            return Err(LedgerError::Corrupt {
                message: format!(
                    "{} shrank below {} bytes already read",
                    path.display(),
                    self.log.offset
                ),
            });
        }
        if len == self.log.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.log.offset)).map_err(io)?;
        let mut bytes = Vec::with_capacity((len - self.log.offset) as usize);
        Read::by_ref(file)
            .take(len - self.log.offset)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let mut consumed = 0usize;
        while let Some(nl) = bytes[consumed..].iter().position(|b| *b == b'\n') {
            let line = &bytes[consumed..consumed + nl];
            let at = self.log.offset + consumed as u64;
            consumed += nl + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(line) {
                Ok(Line::Put {
                    seq,
                    namespace,
                    name,
                    spec,
                }) => self
                    .table
                    .apply(AttemptRecord::from_spec(namespace, name, *spec, ""), seq),
                Ok(Line::Mark { seq }) => self.table.observe_seq(seq),
                Err(e) => {
                    return Err(LedgerError::Corrupt {
                        message: format!("{} line at byte {at}: {e}", path.display()),
                    });
                }
            }
        }
        self.log.offset += consumed as u64;
        let torn = bytes.len() - consumed;
        if torn > 0 && repair {
            tracing::warn!(
                log = %path.display(),
                bytes = torn,
                "attempt ledger: truncating a torn last line (a write interrupted by a crash)"
            );
            file.set_len(self.log.offset).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// Compaction: rewrite the log without `gone`, atomically.
    fn compact(&mut self, gone: &[AttemptRecord]) -> Result<(), LedgerError> {
        let path = self.log.path.clone();
        let tmp = path.with_file_name(TMP_FILE);
        let dir = path
            .parent()
            .expect("log path has a directory")
            .to_path_buf();
        let io = |p: &Path, e: std::io::Error| LedgerError::io("compact", p, &e);
        let dropped: std::collections::BTreeSet<(&str, &str)> = gone
            .iter()
            .map(|r| (r.key.namespace.as_str(), r.name.as_str()))
            .collect();
        let mut text = Vec::new();
        let mark = Line::Mark {
            seq: self.table.last_seq,
        };
        serde_json::to_writer(&mut text, &mark).map_err(corrupt)?;
        text.push(b'\n');
        for (seq, record) in self.table.by_seq() {
            if dropped.contains(&(record.key.namespace.as_str(), record.name.as_str())) {
                continue;
            }
            serde_json::to_writer(&mut text, &Line::put(seq, record)).map_err(corrupt)?;
            text.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        file.write_all(&text).map_err(|e| io(&tmp, e))?;
        file.sync_all().map_err(|e| io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        // From here the new file is the log; `refresh` notices the new inode if anything below
        // fails, and folds it from scratch.
        sync_dir(&dir)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let m = file.metadata().map_err(|e| io(&path, e))?;
        self.log.id = Some((m.dev(), m.ino()));
        self.log.offset = m.len();
        self.log.file = Some(file);
        self.table.remove(gone);
        Ok(())
    }
}

impl Log {
    /// Appends one line and fsyncs it; on failure, truncates it away again.
    fn append(&mut self, line: &Line) -> Result<(), LedgerError> {
        let mut bytes = serde_json::to_vec(line).map_err(corrupt)?;
        bytes.push(b'\n');
        let Some(file) = self.file.as_mut() else {
            return Err(LedgerError::ReadOnly { op: "append" });
        };
        match file.write_all(&bytes).and_then(|()| file.sync_data()) {
            Ok(()) => {
                self.offset += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Do not leave a partial line for the next append to glue onto.
                let _ = file.set_len(self.offset);
                let _ = file.sync_data();
                Err(LedgerError::io("append", &self.path, &e))
            }
        }
    }
}

fn corrupt(e: serde_json::Error) -> LedgerError {
    LedgerError::Corrupt {
        message: format!("cannot serialize a log line: {e}"),
    }
}

fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LedgerError::io("sync directory", dir, &e))
}

impl Ledger for FileLedger {
    fn claim(&self, claim: NewClaim) -> BoxFuture<'_, Result<ClaimResult, LedgerError>> {
        self.write_op("claim", move |st| {
            st.table
                .claim(&claim, |seq, rec| st.log.append(&Line::put(seq, rec)))
        })
    }

    fn settle<'a>(
        &'a self,
        record: &'a AttemptRecord,
        phase: Phase,
        outcome: Option<Outcome>,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<AttemptRecord, LedgerError>> {
        let record = record.clone();
        self.write_op("settle", move |st| {
            st.table.settle(&record, phase, outcome, now, |seq, rec| {
                st.log.append(&Line::put(seq, rec))
            })
        })
    }

    fn take_over<'a>(
        &'a self,
        stale: &'a AttemptRecord,
        holder: &'a str,
        now: Timestamp,
        deadline: Timestamp,
    ) -> BoxFuture<'a, Result<ClaimResult, LedgerError>> {
        let stale = stale.clone();
        let holder = holder.to_string();
        self.write_op("take over", move |st| {
            st.table
                .take_over(&stale, &holder, now, deadline, |seq, rec| {
                    st.log.append(&Line::put(seq, rec))
                })
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a AttemptKey,
    ) -> BoxFuture<'a, Result<Option<AttemptRecord>, LedgerError>> {
        let key = key.clone();
        self.read_op("get", move |st| st.table.get(&key))
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        root: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<AttemptRecord>, LedgerError>> {
        let namespace = namespace.to_string();
        let root = root.map(str::to_string);
        self.read_op("list", move |st| {
            Ok(st.table.list(&namespace, root.as_deref()))
        })
    }

    fn prune<'a>(
        &'a self,
        namespace: &'a str,
        before: Timestamp,
    ) -> BoxFuture<'a, Result<usize, LedgerError>> {
        if let Err(e) = validate_cutoff(before) {
            return futures::future::ready(Err(e)).boxed();
        }
        let namespace = namespace.to_string();
        self.write_op("prune", move |st| {
            let gone = st.table.prunable(&namespace, before);
            if gone.is_empty() {
                return Ok(0);
            }
            st.compact(&gone)?;
            Ok(gone.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use jiff::SignedDuration;

    fn claim(run: &str, deadline: Timestamp) -> NewClaim {
        NewClaim {
            key: AttemptKey::new("default", "flowservice", run, 1),
            policy: "p".into(),
            workflow: "flow-1".into(),
            root: run.into(),
            holder: "local-1".into(),
            now: Timestamp::now() - SignedDuration::from_secs(60),
            deadline,
        }
    }

    #[test]
    fn lines_have_the_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let l = FileLedger::open(dir.path()).unwrap();
        let soon = Timestamp::now() + SignedDuration::from_secs(60);
        let rec = block_on(l.claim(claim("run-1", soon)))
            .unwrap()
            .into_record();
        assert_eq!(rec.version, "1");
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["op"], "put");
        assert_eq!(line["seq"], 1);
        assert_eq!(line["namespace"], "default");
        assert_eq!(line["name"], rec.name.as_str());
        assert_eq!(line["spec"]["phase"], "Intent");
        assert_eq!(line["spec"]["run"], "run-1");
        assert!(line["spec"]["intentAt"].is_string());
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_complete_unparsable_line_is_corruption_not_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = FileLedger::open(dir.path()).unwrap();
            let soon = Timestamp::now() + SignedDuration::from_secs(60);
            block_on(l.claim(claim("run-1", soon))).unwrap();
        }
        let log = dir.path().join(LOG_FILE);
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.insert_str(0, "{\"op\":\"put\",\"seq\":\n");
        std::fs::write(&log, text).unwrap();
        let err = FileLedger::open(dir.path()).unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
        let err = FileLedger::open_read_only(dir.path()).unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    }
}
