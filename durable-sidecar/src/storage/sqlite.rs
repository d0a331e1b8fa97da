//! SQLite storage: one file, WAL journal, `synchronous=NORMAL`, one writer thread with group commit.
//! Tables: instances, history, inboxes, activities, timers, entities with their queued
//! operations, and lock requests.
//!
//! With WAL, `synchronous=NORMAL` makes every commit survive a crash of the sidecar process
//! (including `kill -9`): a commit is in the WAL file, in the OS page cache, before it returns.
//! An OS crash or power loss may lose the most recent commits (never corrupt the file); the WAL
//! is fsynced at checkpoints. We chose it over `FULL` because SDK workers complete work items
//! from a small thread pool and wait for each acknowledgement, so a per-commit fsync would cap
//! throughput; the writer thread still does group commit (it drains every batch queued while the
//! previous commit ran and commits them in one transaction).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use prost::Message;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::{
    ActivityRecord, CommitSignal, EntityRecord, InstanceRecord, LoadedState, LockRequestRecord,
    Storage, StorageError, TimerRecord, WriteOp,
};

type Done = Option<oneshot::Sender<Result<(), Arc<StorageError>>>>;

enum Command {
    Batch(u64, Vec<WriteOp>, Done),
    Close,
}

/// SQLite-backed [`Storage`].
pub(crate) struct SqliteStorage {
    path: PathBuf,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (instance_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS activities (key INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS activities_by_instance ON activities (instance_id);
CREATE TABLE IF NOT EXISTS timers (key INTEGER PRIMARY KEY, instance_id TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS timers_by_instance ON timers (instance_id);
CREATE TABLE IF NOT EXISTS entities (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entity_ops (
    entity_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
    PRIMARY KEY (entity_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lock_requests (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID;
";

fn open(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // The same few pages (instance rows, the tail of history/inbox/activities) change in every
    // commit; checkpointing every 8,000 WAL pages instead of SQLite's 1,000 copies each hot page
    // back to the database once per checkpoint instead of eight times, and fsyncs 8x less often.
    // The WAL is truncated back to 64 MiB after a checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 8000)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // 64 MiB page cache (SQLite's default is 2 MiB): keeps the working set out of pread().
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

impl SqliteStorage {
    /// Opens (creating if needed) the database and starts the writer thread.
    pub(crate) fn open(path: PathBuf, signal: Arc<CommitSignal>) -> Result<Self, StorageError> {
        let conn = open(&path)?;
        let (tx, rx) = mpsc::channel::<Command>();
        let writer = std::thread::Builder::new()
            .name("durable-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, signal))
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(Self {
            path,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Command>, signal: Arc<CommitSignal>) {
    let mut closing = false;
    let mut failed: Option<Arc<StorageError>> = None;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut pending = Vec::new();
        match first {
            Command::Batch(seq, ops, done) => pending.push((seq, ops, done)),
            Command::Close => closing = true,
        }
        // Group commit: take everything that queued up meanwhile.
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Batch(seq, ops, done) => pending.push((seq, ops, done)),
                Command::Close => closing = true,
            }
        }
        if pending.is_empty() {
            continue;
        }
        let max_seq = pending.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
        // After one failed commit nothing more may commit: later batches build on changes
        // that never reached the disk.
        let result = match &failed {
            Some(e) => Err(Arc::clone(e)),
            None => commit_all(&mut conn, &pending).map_err(Arc::new),
        };
        match &result {
            Ok(()) => {
                signal.durable_seq.fetch_max(max_seq, Ordering::SeqCst);
            }
            Err(e) if failed.is_none() => {
                tracing::error!(error = %e, "sidecar storage commit failed; the sidecar stops serving");
                signal.fail(e);
                failed = Some(Arc::clone(e));
            }
            Err(_) => {}
        }
        let shared = result;
        for (_, _, done) in pending {
            if let Some(done) = done {
                let _ = done.send(shared.clone());
            }
        }
        signal.committed.notify_one();
    }
    // Fold the WAL back into the main file on a clean close.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

fn commit_all(
    conn: &mut Connection,
    pending: &[(u64, Vec<WriteOp>, Done)],
) -> Result<(), StorageError> {
    let txn = conn.transaction()?;
    for (_, ops, _) in pending {
        for op in ops {
            apply(&txn, op)?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn apply(c: &Connection, op: &WriteOp) -> Result<(), StorageError> {
    match op {
        WriteOp::PutInstance(rec) => {
            c.prepare_cached("INSERT OR REPLACE INTO instances (id, record) VALUES (?1, ?2)")?
                .execute(params![rec.instance_id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteInstance(id) => {
            for sql in [
                "DELETE FROM instances WHERE id = ?1",
                "DELETE FROM history WHERE instance_id = ?1",
                "DELETE FROM inbox WHERE instance_id = ?1",
                "DELETE FROM activities WHERE instance_id = ?1",
                "DELETE FROM timers WHERE instance_id = ?1",
            ] {
                c.prepare_cached(sql)?.execute(params![id])?;
            }
        }
        WriteOp::AppendHistory {
            instance_id,
            start_index,
            events,
        } => {
            let mut stmt = c.prepare_cached(
                "INSERT OR REPLACE INTO history (instance_id, idx, event) VALUES (?1, ?2, ?3)",
            )?;
            for (i, ev) in events.iter().enumerate() {
                let idx = i64::try_from(*start_index + i as u64).unwrap_or(i64::MAX);
                stmt.execute(params![instance_id, idx, ev])?;
            }
        }
        WriteOp::ReplaceHistory {
            instance_id,
            events,
        } => {
            c.prepare_cached("DELETE FROM history WHERE instance_id = ?1")?
                .execute(params![instance_id])?;
            let mut stmt = c.prepare_cached(
                "INSERT INTO history (instance_id, idx, event) VALUES (?1, ?2, ?3)",
            )?;
            for (i, ev) in events.iter().enumerate() {
                stmt.execute(params![instance_id, i as i64, ev])?;
            }
        }
        WriteOp::PutInbox {
            instance_id,
            seq,
            event,
        } => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO inbox (instance_id, seq, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![instance_id, *seq as i64, event])?;
        }
        WriteOp::DeleteInbox { instance_id, up_to } => {
            c.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1 AND seq <= ?2")?
                .execute(params![instance_id, *up_to as i64])?;
        }
        WriteOp::ClearInbox(id) => {
            c.prepare_cached("DELETE FROM inbox WHERE instance_id = ?1")?
                .execute(params![id])?;
        }
        WriteOp::PutActivity(rec) => {
            let instance_id = rec
                .request
                .as_ref()
                .and_then(|r| r.orchestration_instance.as_ref())
                .map(|i| i.instance_id.clone())
                .unwrap_or_default();
            c.prepare_cached(
                "INSERT OR REPLACE INTO activities (key, instance_id, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![rec.key as i64, instance_id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteActivity(key) => {
            c.prepare_cached("DELETE FROM activities WHERE key = ?1")?
                .execute(params![*key as i64])?;
        }
        WriteOp::PutTimer(rec) => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO timers (key, instance_id, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                rec.key as i64,
                rec.instance_id,
                rec.encode_to_vec()
            ])?;
        }
        WriteOp::DeleteTimer(key) => {
            c.prepare_cached("DELETE FROM timers WHERE key = ?1")?
                .execute(params![*key as i64])?;
        }
        WriteOp::PutEntity(_)
        | WriteOp::DeleteEntity(_)
        | WriteOp::PutEntityOp { .. }
        | WriteOp::DeleteEntityOps { .. }
        | WriteOp::PutLockRequest(_)
        | WriteOp::DeleteLockRequest(_) => apply_entity(c, op)?,
    }
    Ok(())
}

fn apply_entity(c: &Connection, op: &WriteOp) -> Result<(), StorageError> {
    match op {
        WriteOp::PutEntity(rec) => {
            c.prepare_cached("INSERT OR REPLACE INTO entities (id, record) VALUES (?1, ?2)")?
                .execute(params![rec.id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteEntity(id) => {
            c.prepare_cached("DELETE FROM entities WHERE id = ?1")?
                .execute(params![id])?;
            c.prepare_cached("DELETE FROM entity_ops WHERE entity_id = ?1")?
                .execute(params![id])?;
        }
        WriteOp::PutEntityOp {
            entity_id,
            seq,
            event,
        } => {
            c.prepare_cached(
                "INSERT OR REPLACE INTO entity_ops (entity_id, seq, event) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![entity_id, *seq as i64, event])?;
        }
        WriteOp::DeleteEntityOps { entity_id, seqs } => {
            let mut stmt =
                c.prepare_cached("DELETE FROM entity_ops WHERE entity_id = ?1 AND seq = ?2")?;
            for seq in seqs {
                stmt.execute(params![entity_id, *seq as i64])?;
            }
        }
        WriteOp::PutLockRequest(rec) => {
            c.prepare_cached("INSERT OR REPLACE INTO lock_requests (id, record) VALUES (?1, ?2)")?
                .execute(params![rec.critical_section_id, rec.encode_to_vec()])?;
        }
        WriteOp::DeleteLockRequest(id) => {
            c.prepare_cached("DELETE FROM lock_requests WHERE id = ?1")?
                .execute(params![id])?;
        }
        // Orchestration writes: `apply` handles them and never sends them here.
        _ => {}
    }
    Ok(())
}

fn load_entities(conn: &Connection, state: &mut LoadedState) -> Result<(), StorageError> {
    let mut stmt = conn.prepare("SELECT record FROM entities")?;
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        state.entities.push(EntityRecord::decode(row?.as_slice())?);
    }
    let mut stmt =
        conn.prepare("SELECT entity_id, seq, event FROM entity_ops ORDER BY entity_id, seq")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    for row in rows {
        let (id, seq, event) = row?;
        state
            .entity_ops
            .entry(id)
            .or_default()
            .push((u64::try_from(seq).unwrap_or(0), event));
    }
    let mut stmt = conn.prepare("SELECT record FROM lock_requests")?;
    for row in stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))? {
        state
            .lock_requests
            .push(LockRequestRecord::decode(row?.as_slice())?);
    }
    state.lock_requests.sort_by_key(|r| r.order);
    Ok(())
}

impl Storage for SqliteStorage {
    fn load(&self) -> Result<LoadedState, StorageError> {
        // A separate read connection: the writer thread owns the other one.
        let conn = open(&self.path)?;
        let mut state = LoadedState::default();
        {
            let mut stmt = conn.prepare("SELECT record FROM instances")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            for row in rows {
                state
                    .instances
                    .push(InstanceRecord::decode(row?.as_slice())?);
            }
        }
        {
            let mut stmt =
                conn.prepare("SELECT instance_id, event FROM history ORDER BY instance_id, idx")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            for row in rows {
                let (id, ev) = row?;
                state.history.entry(id).or_default().push(ev);
            }
        }
        {
            let mut stmt = conn
                .prepare("SELECT instance_id, seq, event FROM inbox ORDER BY instance_id, seq")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            for row in rows {
                let (id, seq, ev) = row?;
                state
                    .inbox
                    .entry(id)
                    .or_default()
                    .push((u64::try_from(seq).unwrap_or(0), ev));
            }
        }
        {
            let mut stmt = conn.prepare("SELECT record FROM activities ORDER BY key")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            for row in rows {
                state
                    .activities
                    .push(ActivityRecord::decode(row?.as_slice())?);
            }
        }
        {
            let mut stmt = conn.prepare("SELECT record FROM timers ORDER BY key")?;
            let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
            for row in rows {
                state.timers.push(TimerRecord::decode(row?.as_slice())?);
            }
        }
        load_entities(&conn, &mut state)?;
        Ok(state)
    }

    fn submit(&self, seq: u64, batch: Vec<WriteOp>, done: Done) {
        let guard = self.tx.lock().expect("sqlite sender lock poisoned");
        let sent = match guard.as_ref() {
            Some(tx) => tx.send(Command::Batch(seq, batch, done)).map_err(|e| e.0),
            None => Err(Command::Batch(seq, batch, done)),
        };
        if let Err(Command::Batch(_, _, Some(done))) = sent {
            let _ = done.send(Err(Arc::new(StorageError::WriterStopped)));
        }
    }

    fn close(&self) {
        if let Some(tx) = self.tx.lock().expect("sqlite sender lock poisoned").take() {
            let _ = tx.send(Command::Close);
        }
        if let Some(handle) = self
            .writer
            .lock()
            .expect("sqlite writer lock poisoned")
            .take()
        {
            let _ = handle.join();
        }
    }
}
