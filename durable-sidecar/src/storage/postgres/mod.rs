//! PostgreSQL storage: the same tables and guarantees as SQLite on a database server, split
//! into partitions that replicas serve (see `crate::replicas`). Each partition a replica serves
//! has one writer connection that commits its batches in order with group commit
//! (`synchronous_commit = on`, PostgreSQL's default, makes each transaction durable in its WAL
//! before the commit returns; [`Synchronous::Normal`] sets it `off` for the writer's session),
//! its statements pipelined with its `BEGIN` and `COMMIT` (one round trip per commit); its own
//! reader connection serves on-demand reads. Both run on their own threads (the writer
//! with `tokio-postgres` on a private single-threaded runtime, the reader with the synchronous
//! `postgres` client), so the engine can call storage from any context.
//!
//! A partition's writer holds the session advisory lock of that partition for its lifetime
//! (released by PostgreSQL when the connection ends, also after `kill -9`): that lock is what
//! makes one replica at a time write a partition. Every commit goes through the connection
//! holding it, so a replica that lost it cannot write the partition any more.
//!
//! A lost connection is not fatal: the writer reconnects with backoff (for up to a minute),
//! takes its partition's lock again and commits the pending batches again; the reader
//! reconnects and reads again. When another replica took the partition meanwhile, the commit
//! fails and the replica drops the partition (its state is reloaded by the new owner).

mod read;
mod schema;
mod write;

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use super::writer::{Committer, Done, Pending, Writer};
use super::{
    CommitSignal, CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, Storage,
    StorageError, WriteOp,
};
use crate::Synchronous;
use crate::partitions::Partition;
use crate::proto::HistoryEvent;

pub(crate) use write::MESSAGES_CHANNEL;

/// The advisory lock key of the single writer of schema version 1 ("durable1" in ASCII).
/// Replicas hold it shared, so a sidecar of that version (which takes it exclusively) and
/// replicas never write one database at once.
pub(crate) const LEGACY_WRITER_LOCK: i64 = 0x6475_7261_626c_6531;

/// The first key of the advisory locks of partitions ("dura"); the second is the partition.
const PARTITION_LOCK: i32 = 0x6475_7261;

/// A task hub's PostgreSQL database as one replica uses it: the connection settings and the
/// reader shared by the partitions it serves.
pub(crate) struct PostgresDatabase {
    writer_config: tokio_postgres::Config,
    reader_config: Config,
}

impl PostgresDatabase {
    /// Connects, creates or migrates the schema and starts the reader. Blocks: call it off
    /// the async threads.
    pub(crate) fn connect(url: &str, synchronous: Synchronous) -> Result<Self, StorageError> {
        let mut writer_config: tokio_postgres::Config = url.parse()?;
        if synchronous == Synchronous::Normal {
            let options = writer_config.get_options().unwrap_or_default();
            let options = format!("{options} -c synchronous_commit=off");
            writer_config.options(options.trim_start());
        }
        let mut reader_config: Config = url.parse()?;
        // Reads run under the engine's lock: an unreachable server must fail them, not hang.
        if writer_config.get_connect_timeout().is_none() {
            writer_config.connect_timeout(CONNECT_TIMEOUT);
            reader_config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = reader_config.connect(NoTls)?;
        schema::create_or_migrate(&mut client)?;
        Ok(Self {
            writer_config,
            reader_config,
        })
    }

    /// Connection settings for the replica's own connections (heartbeats, notifications).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.writer_config
    }

    /// Opens the storage of one partition, taking its lock; `Ok(None)` when another replica
    /// holds it. Blocks.
    pub(crate) fn open_partition(
        &self,
        partition: Partition,
        signal: Arc<CommitSignal>,
    ) -> Result<Option<PostgresStorage>, StorageError> {
        let conn = match WriterConnection::open(&self.writer_config, partition, Duration::ZERO) {
            Ok(conn) => conn,
            Err(StorageError::Locked(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let writer = Writer::spawn(
            &format!("durable-postgres-writer-{}", partition.index),
            PostgresCommitter {
                config: self.writer_config.clone(),
                partition,
                conn: Some(conn),
            },
            signal,
        )?;
        // Each partition reads on its own connection: reads (an instance's record before a
        // start, a finished one's history) run under its engine's lock.
        let client = self.reader_config.connect(NoTls)?;
        Ok(Some(PostgresStorage {
            reader: Reader::spawn(self.reader_config.clone(), client)?,
            writer,
            partition,
        }))
    }
}

/// PostgreSQL-backed [`Storage`] of one partition.
pub(crate) struct PostgresStorage {
    reader: Reader,
    writer: Writer,
    partition: Partition,
}

/// The writer's connection (the async client, driven by its own single-threaded runtime so
/// statements can be pipelined): it holds the partition's lock and the prepared statements.
struct WriterConnection {
    client: tokio_postgres::Client,
    statements: write::Statements,
    runtime: tokio::runtime::Runtime,
}

impl WriterConnection {
    /// Connects, takes the partition's lock (waiting up to `lock_wait`), prepares
    /// statements. Blocks: runs on the writer thread (or off the async threads).
    fn open(
        config: &tokio_postgres::Config,
        partition: Partition,
        lock_wait: Duration,
    ) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::Schema(format!("cannot start the PostgreSQL writer: {e}"))
            })?;
        let (client, statements) = runtime.block_on(async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the PostgreSQL writer connection ended");
                }
            });
            if !take_partition_lock(&client, partition, lock_wait).await? {
                return Err(StorageError::Locked(format!(
                    "another replica serves partition {} of this PostgreSQL database",
                    partition.index
                )));
            }
            let statements = write::Statements::prepare(&client, partition).await?;
            Ok::<_, StorageError>((client, statements))
        })?;
        Ok(Self {
            client,
            statements,
            runtime,
        })
    }

    /// Commits every batch in one transaction, its statements pipelined.
    fn commit(&mut self, batches: &[Pending]) -> Result<(), StorageError> {
        let ops: Vec<&WriteOp> = batches.iter().flat_map(|(_, ops, _)| ops).collect();
        let calls = self.statements.transaction(&superseded_dropped(&ops));
        self.runtime.block_on(write::run_transaction(
            &self.client,
            &self.statements,
            &calls,
        ))
    }
}

/// The writes of a group commit without the instance records a later write in the same group
/// replaces (a record put again, or the instance deleted): the committed result is the same, and
/// an instance stepped several times while one commit ran is written once.
fn superseded_dropped<'a>(ops: &[&'a WriteOp]) -> Vec<&'a WriteOp> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut kept: Vec<&WriteOp> = Vec::with_capacity(ops.len());
    for op in ops.iter().rev() {
        match op {
            WriteOp::PutInstance(rec) if !seen.insert(rec.instance_id.as_str()) => continue,
            WriteOp::DeleteInstance(id) => {
                seen.insert(id.as_str());
            }
            _ => {}
        }
        kept.push(op);
    }
    kept.reverse();
    kept
}

/// Whether an error is the connection's (server restarting, network), not the data's: the
/// work can be retried on a new connection.
fn is_transient(e: &StorageError) -> bool {
    let StorageError::Postgres(e) = e else {
        return false;
    };
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // connection_exception (08...) and admin/crash shutdown, cannot_connect_now (57P0x).
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57P0"),
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// How long a connection attempt may take unless the URL says otherwise (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the writer keeps reconnecting before it gives up (and the sidecar stops serving).
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// Takes a partition's lock, waiting up to `wait`: after a lost connection the server may
/// take a moment to notice and free the old session's lock.
async fn take_partition_lock(
    client: &tokio_postgres::Client,
    partition: Partition,
    wait: Duration,
) -> Result<bool, StorageError> {
    let deadline = Instant::now() + wait;
    let part = i32::try_from(partition.index).unwrap_or(i32::MAX);
    loop {
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&PARTITION_LOCK, &part],
            )
            .await?
            .get(0);
        if locked || Instant::now() >= deadline {
            return Ok(locked);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a writer that lost its connection waits for its partition's lock.
const RELOCK_WAIT: Duration = Duration::from_secs(3);

struct PostgresCommitter {
    config: tokio_postgres::Config,
    partition: Partition,
    /// `None` while reconnecting.
    conn: Option<WriterConnection>,
}

impl Committer for PostgresCommitter {
    /// Commits; when the connection is lost (the server restarted, the network dropped) it
    /// reconnects with backoff and commits the same batches again. Re-applying is safe: every
    /// write is an upsert or a delete, so a batch whose first commit did land changes nothing
    /// the second time. Clients wait meanwhile; after [`RECONNECT_FOR`] the error stands.
    fn commit(&mut self, batches: &[Pending]) -> Result<(), StorageError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let result = match self.conn.as_mut() {
                Some(conn) => conn.commit(batches),
                None => WriterConnection::open(&self.config, self.partition, RELOCK_WAIT).and_then(
                    |mut conn| {
                        tracing::info!("reconnected to PostgreSQL; retrying the commit");
                        let done = conn.commit(batches);
                        self.conn = Some(conn);
                        done
                    },
                ),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) && started.elapsed() < RECONNECT_FOR => {
                    tracing::warn!(error = %e, "lost the PostgreSQL connection; reconnecting");
                    self.conn = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

type Job = Box<dyn FnOnce(&mut Client, &Config) + Send>;

/// The reader connection on its own thread; it reconnects when the connection was lost.
struct Reader {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Reader {
    fn spawn(config: Config, mut client: Client) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("durable-postgres-reader".into())
            .spawn(move || {
                for job in rx {
                    if client.is_closed() {
                        match config.connect(NoTls) {
                            Ok(fresh) => client = fresh,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot reconnect the PostgreSQL reader");
                            }
                        }
                    }
                    job(&mut client, &config);
                }
            })
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `f` on the reader connection and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c, config| {
            let mut result = f(c);
            // A lost connection (server restart): reconnect once and read again.
            if result.as_ref().is_err_and(is_transient) {
                if let Ok(fresh) = config.connect(NoTls) {
                    *c = fresh;
                    result = f(c);
                }
            }
            let _ = tx.send(result);
        });
        self.jobs
            .lock()
            .expect("postgres reader lock poisoned")
            .send(job)
            .map_err(|_| StorageError::WriterStopped)?;
        rx.recv().map_err(|_| StorageError::WriterStopped)?
    }
}

impl Storage for PostgresStorage {
    fn load(&self) -> Result<LoadedState, StorageError> {
        let part = self.partition.index;
        self.reader.call(move |c| read::load_active(c, part))
    }

    fn reads_are_remote(&self) -> bool {
        true
    }

    fn read_messages(&self, part: u32) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        self.reader.call(move |c| read::messages(c, part))
    }

    fn submit(&self, seq: u64, batch: Vec<WriteOp>, done: Done) {
        self.writer.submit(seq, batch, done);
    }

    fn close(&self) {
        self.writer.close();
    }

    fn read_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StorageError> {
        let id = id.to_owned();
        self.reader.call(move |c| read::instance(c, &id))
    }

    fn read_history(&self, id: &str) -> Result<Vec<HistoryEvent>, StorageError> {
        let id = id.to_owned();
        self.reader.call(move |c| read::history(c, &id))
    }

    fn query_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StorageError> {
        let q = q.clone();
        self.reader.call(move |c| read::query(c, &q))
    }

    fn completed_instances(&self, q: &CompletedQuery) -> Result<Vec<(i64, String)>, StorageError> {
        let q = q.clone();
        self.reader.call(move |c| read::completed(c, &q))
    }
}
