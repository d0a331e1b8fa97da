//! PostgreSQL storage: the same tables and guarantees as SQLite on a database server, split
//! into partitions that replicas serve (see `crate::replicas`). A replica writes all the
//! partitions it serves through one writer connection (see [`commits`]) that holds their
//! locks and commits with group commit across them (`synchronous_commit = on`, PostgreSQL's
//! default, makes each transaction durable in its WAL before the commit returns;
//! [`Synchronous::Normal`] sets it `off` for the writer's session), the statements pipelined
//! with `BEGIN` and `COMMIT` (one round trip per commit). Each partition has its own reader
//! connection for on-demand reads, which reconnects when it was lost. Both run on their own
//! threads (the writer with `tokio-postgres` on a private single-threaded runtime, the reader
//! with the synchronous `postgres` client), so the engine can call storage from any context.

mod commits;
mod read;
mod schema;
mod write;

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use super::writer::Done;
use super::{
    CommitSignal, CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, Storage,
    StorageError, WriteOp,
};
use crate::Synchronous;
use crate::partitions::Partition;
use crate::proto::HistoryEvent;
use commits::ReplicaWriter;
use read::ReaderConnection;

pub(crate) use write::MESSAGES_CHANNEL;

/// The advisory lock key of the single writer of schema version 1 ("durable1" in ASCII).
/// Replicas hold it shared, so a sidecar of that version (which takes it exclusively) and
/// replicas never write one database at once.
pub(crate) const LEGACY_WRITER_LOCK: i64 = 0x6475_7261_626c_6531;

/// The first key of the advisory locks of partitions ("dura"); the second is the partition.
const PARTITION_LOCK: i32 = 0x6475_7261;

/// A task hub's PostgreSQL database as one replica uses it: the connection settings and the
/// writer shared by the partitions it serves.
pub(crate) struct PostgresDatabase {
    writer_config: tokio_postgres::Config,
    reader_config: Config,
    writer: Arc<ReplicaWriter>,
}

impl PostgresDatabase {
    /// Connects, creates or migrates the schema and starts the reader. Blocks: call it off
    /// the async threads.
    pub(crate) fn connect(url: &str, synchronous: Synchronous) -> Result<Self, StorageError> {
        let mut writer_config: tokio_postgres::Config = url.parse()?;
        // Every write finds its rows through an index. The writer prepares its statements
        // once, and a plan made while a table was still small (a new database) can be a
        // sequential scan, kept until the table is analyzed, and scanning every dead row the
        // churn leaves behind until it is vacuumed: seven in eight inbox rows in a busy first
        // minute. So the writer's session never plans a sequential scan where an index would do.
        let mut options = writer_config.get_options().unwrap_or_default().to_owned();
        options.push_str(" -c enable_seqscan=off");
        if synchronous == Synchronous::Normal {
            options.push_str(" -c synchronous_commit=off");
        }
        writer_config.options(options.trim_start());
        let mut reader_config: Config = url.parse()?;
        // Reads run under the engine's lock: an unreachable server must fail them, not hang.
        if writer_config.get_connect_timeout().is_none() {
            writer_config.connect_timeout(CONNECT_TIMEOUT);
            reader_config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = reader_config.connect(NoTls)?;
        schema::create_or_migrate(&mut client)?;
        Ok(Self {
            writer: Arc::new(ReplicaWriter::spawn(writer_config.clone())?),
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
        if !self.writer.open(partition, signal)? {
            return Ok(None);
        }
        // Each partition reads on its own connection: reads (an instance's record before a
        // start, a finished one's history) run under its engine's lock.
        let reader = self
            .reader_config
            .connect(NoTls)
            .map_err(StorageError::from)
            .and_then(|client| Reader::spawn(self.reader_config.clone(), client));
        let reader = match reader {
            Ok(reader) => reader,
            Err(e) => {
                // Not served after all: free the partition's lock for another replica.
                self.writer.close(partition.index);
                return Err(e);
            }
        };
        Ok(Some(PostgresStorage {
            reader,
            writer: Arc::clone(&self.writer),
            partition,
        }))
    }
}

/// PostgreSQL-backed [`Storage`] of one partition.
pub(crate) struct PostgresStorage {
    reader: Reader,
    writer: Arc<ReplicaWriter>,
    partition: Partition,
}

/// The writes of a group commit without the instance records a later write in the same group
/// replaces (a record put again, or the instance deleted): the committed result is the same, and
/// an instance stepped several times while one commit ran is written once.
fn superseded_dropped<'a>(ops: &[write::Tagged<'a>]) -> Vec<write::Tagged<'a>> {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(ops.len());
    for t in ops.iter().rev() {
        match t.op {
            WriteOp::PutInstance(rec) if !seen.insert(rec.instance_id.as_str()) => continue,
            WriteOp::DeleteInstance(id) => {
                seen.insert(id.as_str());
            }
            _ => {}
        }
        kept.push(*t);
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
    part: u32,
    wait: Duration,
) -> Result<bool, StorageError> {
    let deadline = Instant::now() + wait;
    let part = i32::try_from(part).unwrap_or(i32::MAX);
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

type Job = Box<dyn FnOnce(&mut ReaderConnection, &Config) + Send>;

/// The reader connection on its own thread; it reconnects when the connection was lost.
struct Reader {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Reader {
    fn spawn(config: Config, client: Client) -> Result<Self, StorageError> {
        let mut client = ReaderConnection::new(client);
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("durable-postgres-reader".into())
            .spawn(move || {
                for job in rx {
                    if client.is_closed() {
                        match config.connect(NoTls) {
                            Ok(fresh) => client = ReaderConnection::new(fresh),
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
        f: impl Fn(&mut ReaderConnection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c, config| {
            let mut result = f(c);
            // A lost connection (server restart): reconnect once and read again.
            if result.as_ref().is_err_and(is_transient) {
                if let Ok(fresh) = config.connect(NoTls) {
                    *c = ReaderConnection::new(fresh);
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
        self.writer.submit(self.partition.index, (seq, batch, done));
    }

    fn close(&self) {
        self.writer.close(self.partition.index);
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
