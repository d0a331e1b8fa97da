//! One writer connection for every partition a replica serves. It holds each partition's
//! session advisory lock (released by PostgreSQL when the connection ends, also after
//! `kill -9`), so every commit of a partition goes through the connection holding its lock,
//! and a replica that lost a lock cannot write that partition any more.
//!
//! Group commit spans the partitions: everything the partitions' engines submitted while one
//! commit ran goes into the next transaction. A replica serving eight partitions so commits
//! about as often as a single SQLite writer, not eight times as often with a handful of steps
//! in each. Each partition keeps its order (its batches are written in submission order) and
//! its own failure: when a transaction fails for a reason other than the connection, each
//! partition's batches are committed again on their own, and only the partition whose writes
//! fail stops.
//!
//! A lost connection is not fatal: the writer reconnects with backoff (for up to a minute),
//! takes its partitions' locks again and commits the pending batches again, except those whose
//! commit did land before the connection went (only the answer was lost): every transaction
//! also records, per partition, which writer made it and its last batch (`commit_marks`), and
//! the writer reads those marks back before it commits again. Committing such a batch a second
//! time would insert its messages to other partitions twice (they may even have been consumed
//! meanwhile, so no key could catch the copy). A partition whose lock another replica took
//! meanwhile, or whose mark another writer made, fails (the replica hands it back; its new
//! owner reloads it from the database).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::super::writer::{Done, Pending, linger};
use super::super::{CommitSignal, StorageError};
use super::write::{self, Statements, Tagged};
use super::{RECONNECT_FOR, RELOCK_WAIT, is_transient, superseded_dropped, take_partition_lock};
use crate::partitions::Partition;

enum Command {
    /// Takes a partition's lock; replies whether it was free.
    Open {
        partition: Partition,
        signal: Arc<CommitSignal>,
        reply: mpsc::SyncSender<Result<bool, StorageError>>,
    },
    Batch {
        part: u32,
        pending: Pending,
    },
    /// Commits what the partition submitted, then frees its lock.
    Close {
        part: u32,
        reply: mpsc::SyncSender<()>,
    },
}

/// Batches of the partitions they belong to, in submission order.
type Group = Vec<(u32, Pending)>;

/// The handle of a replica's writer thread (it stops when the handle is dropped).
pub(super) struct ReplicaWriter {
    tx: Mutex<mpsc::Sender<Command>>,
}

impl ReplicaWriter {
    /// Starts the writer thread; it connects on the first [`ReplicaWriter::open`].
    pub(super) fn spawn(config: tokio_postgres::Config) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::Schema(format!("cannot start the PostgreSQL writer: {e}"))
            })?;
        let (tx, rx) = mpsc::channel();
        let hub = Hub {
            config,
            runtime,
            conn: None,
            parts: BTreeMap::new(),
        };
        std::thread::Builder::new()
            .name("durable-postgres-writer".into())
            .spawn(move || hub.run(&rx))
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(Self { tx: Mutex::new(tx) })
    }

    fn send(&self, command: Command) -> Result<(), Command> {
        self.tx
            .lock()
            .expect("postgres writer lock poisoned")
            .send(command)
            .map_err(|e| e.0)
    }

    /// Takes `partition`'s lock on the writer connection; `Ok(false)` when another replica
    /// holds it. Blocks.
    pub(super) fn open(
        &self,
        partition: Partition,
        signal: Arc<CommitSignal>,
    ) -> Result<bool, StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Command::Open {
            partition,
            signal,
            reply,
        })
        .map_err(|_| StorageError::WriterStopped)?;
        answer.recv().map_err(|_| StorageError::WriterStopped)?
    }

    /// Queues a batch of partition `part`; it fails with [`StorageError::WriterStopped`] once
    /// the partition is closed.
    pub(super) fn submit(&self, part: u32, pending: Pending) {
        if let Err(Command::Batch {
            pending: (_, _, Some(done)),
            ..
        }) = self.send(Command::Batch { part, pending })
        {
            let _ = done.send(Err(Arc::new(StorageError::WriterStopped)));
        }
    }

    /// Commits what partition `part` submitted and frees its lock. Blocks.
    pub(super) fn close(&self, part: u32) {
        let (reply, answer) = mpsc::sync_channel(1);
        if self.send(Command::Close { part, reply }).is_ok() {
            let _ = answer.recv();
        }
    }
}

/// The writer connection with its prepared statements.
struct Connection {
    client: tokio_postgres::Client,
    statements: Statements,
}

/// A partition the writer holds the lock of.
struct Held {
    signal: Arc<CommitSignal>,
    /// Who this writer is in the partition's commit marks (new each time it takes the lock).
    writer: i64,
    /// Set once one of its commits failed: nothing more of it may commit (later batches
    /// build on changes that never reached the database).
    failed: Option<Arc<StorageError>>,
}

/// The writer thread's state.
struct Hub {
    config: tokio_postgres::Config,
    /// Drives the async client (pipelined statements) on this thread.
    runtime: tokio::runtime::Runtime,
    /// `None` until the first open and while reconnecting.
    conn: Option<Connection>,
    parts: BTreeMap<u32, Held>,
}

impl Hub {
    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        while let Ok(first) = rx.recv() {
            let mut group: Group = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next {
                match command {
                    Command::Batch { part, pending } => group.push((part, pending)),
                    // Opening and closing are rare: commit what came before them first.
                    other => {
                        self.commit(std::mem::take(&mut group));
                        self.control(other);
                    }
                }
                // Group commit: take everything that queued up meanwhile.
                next = rx.try_recv().ok();
            }
            // And the answers of episodes dispatched early, if they come quickly.
            let mut interrupted = None;
            if !group.is_empty() {
                linger(self.parts.values().map(|h| &*h.signal), |wait| {
                    match rx.recv_timeout(wait) {
                        Ok(Command::Batch { part, pending }) => {
                            group.push((part, pending));
                            true
                        }
                        Ok(other) => {
                            interrupted = Some(other);
                            false
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => false,
                        Err(mpsc::RecvTimeoutError::Timeout) => true,
                    }
                });
            }
            self.commit(group);
            if let Some(other) = interrupted {
                self.control(other);
            }
        }
    }

    fn control(&mut self, command: Command) {
        match command {
            Command::Open {
                partition,
                signal,
                reply,
            } => {
                let _ = reply.send(self.open(partition, signal));
            }
            Command::Close { part, reply } => {
                self.close(part);
                let _ = reply.send(());
            }
            Command::Batch { .. } => {}
        }
    }

    fn open(
        &mut self,
        partition: Partition,
        signal: Arc<CommitSignal>,
    ) -> Result<bool, StorageError> {
        if self.parts.contains_key(&partition.index) {
            return Ok(false);
        }
        if self.conn.is_none() {
            self.reconnect()?;
        }
        let Some(conn) = &self.conn else {
            return Err(StorageError::WriterStopped);
        };
        let writer = new_writer_id();
        let (locked, marked) = self.runtime.block_on(async {
            match take_partition_lock(&conn.client, partition.index, Duration::ZERO).await {
                Ok(true) => {
                    let marked = conn
                        .statements
                        .mark_open(&conn.client, partition.index, writer)
                        .await;
                    (Ok(true), marked)
                }
                other => (other, Ok(())),
            }
        });
        match (locked, marked) {
            (Ok(true), Ok(())) => {}
            (Ok(false), _) => return Ok(false),
            (Ok(true), Err(e)) if !is_transient(&e) => {
                self.unlock(partition.index);
                return Err(e);
            }
            (Err(e), _) | (_, Err(e)) => {
                if is_transient(&e) {
                    self.conn = None;
                }
                return Err(e);
            }
        }
        self.parts.insert(
            partition.index,
            Held {
                signal,
                writer,
                failed: None,
            },
        );
        Ok(true)
    }

    fn close(&mut self, part: u32) {
        if self.parts.remove(&part).is_some() {
            self.unlock(part);
        }
    }

    /// Frees a partition's lock.
    fn unlock(&mut self, part: u32) {
        let Some(conn) = &self.conn else { return };
        let index = i32::try_from(part).unwrap_or(i32::MAX);
        let unlocked = self.runtime.block_on(conn.client.execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&super::PARTITION_LOCK, &index],
        ));
        // A lost connection freed the lock already.
        if unlocked.is_err() {
            self.conn = None;
        }
    }

    /// Connects, prepares the statements and takes the locks of the partitions held again;
    /// a partition whose lock another replica took meanwhile fails.
    fn reconnect(&mut self) -> Result<(), StorageError> {
        self.conn = None;
        let conn = self.runtime.block_on(async {
            let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the PostgreSQL writer connection ended");
                }
            });
            let statements = Statements::prepare(&client).await?;
            Ok::<_, StorageError>(Connection { client, statements })
        })?;
        for (part, held) in &mut self.parts {
            if held.failed.is_some() {
                continue;
            }
            let locked =
                self.runtime
                    .block_on(take_partition_lock(&conn.client, *part, RELOCK_WAIT))?;
            if !locked {
                let e = StorageError::Locked(format!(
                    "another replica took partition {part} while this replica was disconnected from PostgreSQL"
                ));
                fail(*part, held, Arc::new(e));
            }
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Commits a group of batches in one transaction (see the module docs for failures).
    fn commit(&mut self, group: Group) {
        self.commit_after(group, false);
    }

    /// Commits a group of batches; `uncertain` when an earlier attempt may have landed.
    fn commit_after(&mut self, group: Group, uncertain: bool) {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        let mut group = group;
        let mut uncertain = uncertain;
        loop {
            let result;
            (result, group) = self.attempt(group, &mut uncertain);
            match result {
                Ok(()) if group.is_empty() => return,
                Ok(()) => {
                    if let Some((part, _)) = group.first() {
                        if let Some(held) = self.parts.get(part) {
                            held.signal.metrics.commit(started.elapsed());
                        }
                    }
                    return self.settle(group, &Ok(()));
                }
                Err(e) if is_transient(&e) && started.elapsed() < RECONNECT_FOR => {
                    tracing::warn!(error = %e, "lost the PostgreSQL connection; reconnecting");
                    self.conn = None;
                    uncertain = true;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) if !is_transient(&e) && spans_partitions(&group) => {
                    // Find whose writes fail: each partition on its own.
                    let mut by_part: BTreeMap<u32, Group> = BTreeMap::new();
                    for (part, pending) in group {
                        by_part.entry(part).or_default().push((part, pending));
                    }
                    for one in by_part.into_values() {
                        self.commit_after(one, uncertain);
                    }
                    return;
                }
                Err(e) => return self.settle(group, &Err(Arc::new(e))),
            }
        }
    }

    /// One try at a group: connects if needed, answers the batches that need no commit
    /// (their partition failed, or their commit landed though its answer was lost), then
    /// commits the others. Returns the outcome with the batches it concerns.
    fn attempt(&mut self, group: Group, uncertain: &mut bool) -> (Result<(), StorageError>, Group) {
        if self.conn.is_none() {
            if let Err(e) = self.reconnect() {
                return (Err(e), group);
            }
            tracing::info!("reconnected to PostgreSQL; retrying the commit");
        }
        let mut group = self.refuse_failed(group);
        if *uncertain {
            group = match self.settle_landed(group) {
                Ok(rest) => rest,
                Err((e, group)) => return (Err(e), group),
            };
            *uncertain = false;
        }
        if group.is_empty() {
            return (Ok(()), group);
        }
        let result = self.transaction(&group);
        (result, group)
    }

    /// Runs the group's writes as one transaction on the connection.
    fn transaction(&self, group: &[(u32, Pending)]) -> Result<(), StorageError> {
        let Some(conn) = &self.conn else {
            return Err(StorageError::WriterStopped);
        };
        let ops: Vec<Tagged<'_>> = group
            .iter()
            .flat_map(|(part, (_, ops, _))| ops.iter().map(|op| Tagged { part: *part, op }))
            .collect();
        let mut calls = conn.statements.transaction(&superseded_dropped(&ops));
        calls.push(conn.statements.marks(&self.marks(group)));
        self.runtime.block_on(write::run_transaction(
            &conn.client,
            &conn.statements,
            &calls,
        ))
    }

    /// The commit marks of a group: per partition, this writer and its last batch.
    fn marks(&self, group: &[(u32, Pending)]) -> Vec<(u32, i64, u64)> {
        last_batches(group)
            .into_iter()
            .map(|(part, seq)| {
                let writer = self.parts.get(&part).map_or(0, |held| held.writer);
                (part, writer, seq)
            })
            .collect()
    }

    /// After a commit whose answer was lost: answers the batches whose commit landed (the
    /// partition's mark is this writer's, at or past them), fails the partitions another
    /// writer marked, and returns the batches still to commit.
    fn settle_landed(&mut self, group: Group) -> Result<Group, (StorageError, Group)> {
        let Some(conn) = &self.conn else {
            return Err((StorageError::WriterStopped, group));
        };
        let parts: Vec<u32> = self.marks(&group).iter().map(|m| m.0).collect();
        let found = match self
            .runtime
            .block_on(conn.statements.read_marks(&conn.client, &parts))
        {
            Ok(found) => found,
            Err(e) => return Err((e, group)),
        };
        let mut landed = Vec::new();
        let mut rest = Vec::new();
        for (part, pending) in group {
            let writer = self.parts.get(&part).map(|held| held.writer);
            match found.get(&part) {
                Some(&(by, seq)) if Some(by) == writer => {
                    if seq >= pending.0 {
                        landed.push((part, pending));
                    } else {
                        rest.push((part, pending));
                    }
                }
                _ => {
                    let e = Arc::new(StorageError::Locked(format!(
                        "another replica wrote partition {part} while this replica was disconnected from PostgreSQL"
                    )));
                    if let Some(held) = self.parts.get_mut(&part) {
                        fail(part, held, Arc::clone(&e));
                    }
                    answer(pending.2, Err(e));
                }
            }
        }
        if !landed.is_empty() {
            tracing::info!(
                batches = landed.len(),
                "a commit whose answer was lost had landed; not committing it again"
            );
            self.settle(landed, &Ok(()));
        }
        Ok(rest)
    }

    /// Answers the batches of partitions that failed or are not held (closed) with their
    /// error; returns the others.
    fn refuse_failed(&self, group: Group) -> Group {
        let mut kept = Vec::with_capacity(group.len());
        for (part, pending) in group {
            let error = match self.parts.get(&part) {
                Some(Held { failed: None, .. }) => {
                    kept.push((part, pending));
                    continue;
                }
                Some(Held {
                    failed: Some(e), ..
                }) => Arc::clone(e),
                None => Arc::new(StorageError::WriterStopped),
            };
            answer(pending.2, Err(error));
        }
        kept
    }

    /// Reports a commit's outcome to each partition in it and to whoever waits for a batch.
    fn settle(&mut self, group: Group, result: &Result<(), Arc<StorageError>>) {
        let durable = last_batches(&group);
        for (_, (_, _, done)) in group {
            answer(done, result.clone());
        }
        for (part, seq) in durable {
            let Some(held) = self.parts.get_mut(&part) else {
                continue;
            };
            match result {
                Ok(()) => {
                    held.signal.durable_seq.fetch_max(seq, Ordering::SeqCst);
                }
                Err(e) => fail(part, held, Arc::clone(e)),
            }
            held.signal.committed.notify_one();
        }
    }
}

/// A new writer id for a partition's commit marks.
fn new_writer_id() -> i64 {
    let [a, b, c, d, e, f, g, h, ..] = *uuid::Uuid::new_v4().as_bytes();
    i64::from_le_bytes([a, b, c, d, e, f, g, h])
}

/// Each partition's last batch in a group.
fn last_batches(group: &[(u32, Pending)]) -> BTreeMap<u32, u64> {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for (part, (seq, _, _)) in group {
        let max = last.entry(*part).or_default();
        *max = (*max).max(*seq);
    }
    last
}

/// Whether a group holds batches of more than one partition.
fn spans_partitions(group: &[(u32, Pending)]) -> bool {
    group.windows(2).any(|w| w[0].0 != w[1].0)
}

fn answer(done: Done, result: Result<(), Arc<StorageError>>) {
    if let Some(done) = done {
        let _ = done.send(result);
    }
}

/// Marks a partition failed (once) and stops its engine.
fn fail(part: u32, held: &mut Held, error: Arc<StorageError>) {
    if held.failed.is_some() {
        return;
    }
    tracing::error!(partition = part, error = %error, "a partition's storage commit failed; it stops serving");
    held.signal.fail(&error);
    held.failed = Some(error);
}

/// The test helper's throwaway PostgreSQL server.
#[cfg(test)]
#[path = "../../../tests/sidecar_common/postgres.rs"]
mod temp_postgres;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::sync::oneshot;

    use super::temp_postgres::TempPostgres;
    use super::*;
    use crate::storage::WriteOp;

    type Answer = oneshot::Receiver<Result<(), Arc<StorageError>>>;

    /// A writer holding partition 0 of a new database, and a client to look at it.
    fn writer(pg: &TempPostgres, name: &str) -> (Hub, postgres::Client, Arc<CommitSignal>) {
        let url = pg.database(name);
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        super::super::schema::create_or_migrate(&mut client).unwrap();
        let mut hub = Hub {
            config: url.parse().unwrap(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            conn: None,
            parts: BTreeMap::new(),
        };
        let signal = Arc::new(CommitSignal::default());
        let partition = Partition { index: 0, count: 8 };
        assert!(hub.open(partition, Arc::clone(&signal)).unwrap());
        (hub, client, signal)
    }

    /// Batch `seq` of partition 0: one message to partition 5.
    fn batch(seq: u64) -> ((u32, Pending), Answer) {
        let (done, answer) = oneshot::channel();
        let op = WriteOp::PutMessage {
            part: 5,
            payload: vec![u8::try_from(seq).unwrap()],
        };
        ((0, (seq, vec![op], Some(done))), answer)
    }

    fn messages(client: &mut postgres::Client) -> Vec<Vec<u8>> {
        client
            .query(
                "SELECT payload FROM messages WHERE part = 5 ORDER BY id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    #[test]
    fn a_commit_whose_answer_was_lost_is_not_committed_again() {
        let Some(pg) = TempPostgres::start() else {
            return;
        };
        let (mut hub, mut client, _signal) = writer(&pg, "lost_answer");
        // Batch 1 lands, then the connection goes before its answer is read.
        let (first, _lost) = batch(1);
        hub.transaction(&[first]).unwrap();
        hub.conn = None;

        let (again, answer_again) = batch(1);
        let (next, answer_next) = batch(2);
        hub.commit_after(vec![again, next], true);

        assert!(answer_again.blocking_recv().unwrap().is_ok());
        assert!(answer_next.blocking_recv().unwrap().is_ok());
        assert_eq!(messages(&mut client), [vec![1], vec![2]]);
    }

    #[test]
    fn a_partition_another_writer_wrote_meanwhile_fails() {
        let Some(pg) = TempPostgres::start() else {
            return;
        };
        let (mut hub, mut client, signal) = writer(&pg, "other_writer");
        hub.conn = None;
        client
            .execute("UPDATE commit_marks SET writer = writer + 1, seq = 7", &[])
            .unwrap();

        let (pending, answer) = batch(1);
        hub.commit_after(vec![pending], true);

        let error = answer.blocking_recv().unwrap().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("another replica wrote partition 0")
        );
        assert!(signal.failure().is_some());
        assert!(messages(&mut client).is_empty());
    }
}
