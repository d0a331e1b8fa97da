//! SQLite storage: one file, WAL journal, one writer thread with group commit, one reader
//! connection for on-demand reads. Tables: instances (with status and time columns for
//! queries), history, inboxes, activities, timers, entities with their queued operations, and
//! lock requests.
//!
//! By default (`synchronous=FULL`) every commit is fsynced to the WAL before it returns, so an
//! acknowledged step survives a machine crash or power cut, not only a crash of the process.
//! Group commit keeps this cheap: the writer thread drains every batch queued while the
//! previous commit ran and commits them in one transaction, one fsync for all of them.
//! [`Synchronous::Normal`] (`synchronous=NORMAL`) skips the per-commit fsync: a commit is in
//! the WAL in the OS page cache, which survives `kill -9` but not a machine crash.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod lock;
mod read;
mod schema;
mod write;

use rusqlite::Connection;

use super::writer::{Committer, Done, Pending, Writer};
use super::{
    CommitSignal, CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, Storage,
    StorageError, WriteOp,
};
use crate::Synchronous;
use crate::proto::HistoryEvent;

/// SQLite-backed [`Storage`].
pub(crate) struct SqliteStorage {
    /// Reads on demand (finished instances, queries) while the writer thread commits: WAL lets
    /// them run side by side, and a read sees every committed batch.
    reader: Mutex<Connection>,
    writer: Writer,
    /// Held until [`Storage::close`] (or the process ends).
    lock: Mutex<Option<lock::DbLock>>,
}

/// The statuses of active instances as an SQL list (RUNNING, CONTINUED_AS_NEW, PENDING,
/// SUSPENDED): an `IN` list, so start-up reads them through the status index instead of
/// scanning every finished instance.
const ACTIVE_SQL: &str = "(0, 2, 6, 7)";

/// Creates a missing database file readable by its owner only (0600); SQLite gives its `-wal`
/// and `-shm` files the same permissions.
fn create_private(path: &Path) -> Result<(), StorageError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|e| {
        StorageError::File(format!(
            "cannot create the database file {}: {e}",
            path.display()
        ))
    })
}

fn open(path: &Path, synchronous: Synchronous) -> Result<Connection, StorageError> {
    create_private(path)?;
    let mut conn = Connection::open(path)?;
    check_writable(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let mode = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", mode)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // The same few pages (instance rows, the tail of history/inbox/activities) change in every
    // commit; checkpointing every 8,000 WAL pages instead of SQLite's 1,000 copies each hot page
    // back to the database once per checkpoint instead of eight times, and fsyncs 8x less often.
    // The WAL is truncated back to 64 MiB after a checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // A 16 MiB page cache (SQLite's default is 2 MiB) holds the hot pages every commit touches
    // (active instance rows, the tails of history/inbox/activities); it does not grow with the
    // number of finished instances in the file.
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    schema::create_or_migrate(&mut conn)?;
    Ok(conn)
}

/// Fails at start, not at the first commit, when the database cannot be written: a read-only
/// file (SQLite then silently opens it read-only), directory or file system.
fn check_writable(conn: &Connection, path: &Path) -> Result<(), StorageError> {
    let refused = |why: String| {
        StorageError::File(format!(
            "cannot write the database file {}: {why}; make the file, its directory and the file system writable by this user, or choose another file",
            path.display()
        ))
    };
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(refused("it opened read-only".into()));
    }
    conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")
        .map_err(|e| refused(e.to_string()))
}

/// A connection for reads only.
fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl SqliteStorage {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub(crate) fn open(
        path: PathBuf,
        signal: Arc<CommitSignal>,
        synchronous: Synchronous,
    ) -> Result<Self, StorageError> {
        let lock = lock::DbLock::acquire(&path)?;
        let conn = open(&path, synchronous)?;
        let reader = open_reader(&path)?;
        let writer = Writer::spawn("durable-sqlite-writer", SqliteCommitter(conn), signal)?;
        Ok(Self {
            reader: Mutex::new(reader),
            writer,
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Names this sidecar's address in the lock file, for the error a second one reports.
    pub(crate) fn advertise(&self, endpoint: &str) {
        if let Some(lock) = self.lock.lock().expect("sqlite lock poisoned").as_mut() {
            lock.advertise(endpoint);
        }
    }
}

/// The writer thread's connection.
struct SqliteCommitter(Connection);

impl Committer for SqliteCommitter {
    fn commit(&mut self, batches: &[Pending]) -> Result<(), StorageError> {
        let txn = self.0.transaction()?;
        for (_, ops, _) in batches {
            for op in ops {
                write::apply(&txn, op)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn close(&mut self) {
        // Fold the WAL back into the main file on a clean close.
        let _ = self.0.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    }
}

impl SqliteStorage {
    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().expect("sqlite reader lock poisoned")
    }
}

impl Storage for SqliteStorage {
    fn load(&self) -> Result<LoadedState, StorageError> {
        read::load_active(&self.reader())
    }

    fn read_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StorageError> {
        read::instance(&self.reader(), id)
    }

    fn read_history(&self, id: &str) -> Result<Vec<HistoryEvent>, StorageError> {
        read::history(&self.reader(), id)
    }

    fn query_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StorageError> {
        read::query(&self.reader(), q)
    }

    fn completed_instances(&self, q: &CompletedQuery) -> Result<Vec<(i64, String)>, StorageError> {
        read::completed(&self.reader(), q)
    }

    fn submit(&self, seq: u64, batch: Vec<WriteOp>, done: Done) {
        self.writer.submit(seq, batch, done);
    }

    fn close(&self) {
        self.writer.close();
        self.lock.lock().expect("sqlite lock poisoned").take();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use rusqlite::params;

    use super::*;
    use crate::proto::OrchestrationStatus;

    fn record(id: &str, status: OrchestrationStatus, created_ms: i64) -> InstanceRecord {
        InstanceRecord {
            instance_id: id.into(),
            name: "O".into(),
            status: status as i32,
            created_ms,
            completed_ms: (status != OrchestrationStatus::Running).then_some(created_ms + 1),
            ..Default::default()
        }
    }

    #[test]
    fn a_version_0_file_is_migrated_and_only_active_instances_load() {
        let dir = std::env::temp_dir().join(format!(
            "durable-sqlite-migrate-{}-{}",
            std::process::id(),
            crate::time::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v0.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE instances (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;",
            )
            .unwrap();
            for rec in [
                record("old-done", OrchestrationStatus::Completed, 10),
                record("old-running", OrchestrationStatus::Running, 20),
            ] {
                conn.execute(
                    "INSERT INTO instances (id, record) VALUES (?1, ?2)",
                    params![rec.instance_id, rec.encode_to_vec()],
                )
                .unwrap();
            }
        }
        let storage =
            SqliteStorage::open(path, Arc::new(CommitSignal::default()), Synchronous::Full)
                .unwrap();
        let loaded = storage.load().unwrap();
        let ids: Vec<&str> = loaded
            .instances
            .iter()
            .map(|r| r.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["old-running"], "finished instances stay on disk");
        let done = storage.read_instance("old-done").unwrap().unwrap();
        assert_eq!(done.status, OrchestrationStatus::Completed as i32);
        let completed = storage
            .query_instances(&InstanceQuery {
                statuses: vec![OrchestrationStatus::Completed as i32],
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(completed.len(), 1);
        let keys = storage
            .completed_instances(&CompletedQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(keys, [(11, "old-done".to_string())]);
        let by_prefix = storage
            .query_instances(&InstanceQuery {
                prefix: Some("old-r".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_prefix.len(), 1);
        assert_eq!(by_prefix[0].instance_id, "old-running");
        storage.close();
    }
}
