//! PostgreSQL storage: the same tables and guarantees as SQLite on a database server. One
//! writer connection commits batches in order with group commit (`synchronous_commit = on`,
//! PostgreSQL's default, makes each transaction durable in its WAL before the commit returns;
//! [`Synchronous::Normal`] sets it `off` for the writer's session), its statements pipelined (one round trip per commit, not per statement); one
//! reader connection serves on-demand reads. Both run on their own threads (the writer with
//! `tokio-postgres` on a private single-threaded runtime, the reader with the synchronous
//! `postgres` client), so the engine can call storage from any context.
//!
//! A lost connection is not fatal: the writer reconnects with backoff (for up to a minute) and
//! commits the pending batches again; the reader reconnects and reads again.
//!
//! One sidecar writes a database at a time: the writer holds a session advisory lock for its
//! lifetime (released by PostgreSQL when the connection ends, also after `kill -9`), and a
//! second sidecar on the same database fails to start with a message saying so.

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
use crate::proto::HistoryEvent;

/// The advisory lock key of the sidecar writer ("durable1" in ASCII).
const WRITER_LOCK: i64 = 0x6475_7261_626c_6531;

/// PostgreSQL-backed [`Storage`].
pub(crate) struct PostgresStorage {
    reader: Reader,
    writer: Writer,
}

impl PostgresStorage {
    /// Connects, takes the writer lock, creates or migrates the schema and starts the writer
    /// and reader threads. Blocks: call it off the async threads.
    pub(crate) fn open(
        url: &str,
        signal: Arc<CommitSignal>,
        synchronous: Synchronous,
    ) -> Result<Self, StorageError> {
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
        let conn = WriterConnection::open(&writer_config)?;
        let reader = Reader::spawn(reader_config)?;
        let writer = Writer::spawn(
            "durable-postgres-writer",
            PostgresCommitter {
                config: writer_config,
                conn: Some(conn),
            },
            signal,
        )?;
        Ok(Self { reader, writer })
    }
}

/// The writer's connection (the async client, driven by its own single-threaded runtime so
/// statements can be pipelined): it holds the writer lock and the prepared statements.
struct WriterConnection {
    client: tokio_postgres::Client,
    statements: write::Statements,
    runtime: tokio::runtime::Runtime,
}

impl WriterConnection {
    /// Connects, takes the writer lock, creates or migrates the schema, prepares statements.
    /// Blocks: runs on the writer thread (or off the async threads at start).
    fn open(config: &tokio_postgres::Config) -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::Schema(format!("cannot start the PostgreSQL writer: {e}"))
            })?;
        let (client, statements) = runtime.block_on(async {
            let (mut client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the PostgreSQL writer connection ended");
                }
            });
            if !take_writer_lock(&client).await? {
                return Err(StorageError::Locked(
                    "another durable sidecar is writing to this PostgreSQL database; point your workers and clients at that sidecar, or give this one another database".into(),
                ));
            }
            schema::create_or_migrate(&mut client).await?;
            let statements = write::Statements::prepare(&client).await?;
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
        let mut calls = Vec::new();
        for (_, ops, _) in batches {
            for op in ops {
                self.statements.calls(op, &mut calls);
            }
        }
        let client = &mut self.client;
        self.runtime.block_on(async {
            let txn = client.transaction().await?;
            write::run(&txn, &calls).await?;
            txn.commit().await?;
            Ok(())
        })
    }
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

/// Takes the database's writer lock, waiting a little: the server notices a killed sidecar's
/// connection (and frees its lock) within moments, and a supervisor may restart at once.
async fn take_writer_lock(client: &tokio_postgres::Client) -> Result<bool, StorageError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
            .await?
            .get(0);
        if locked || Instant::now() >= deadline {
            return Ok(locked);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long a starting sidecar waits for another one's writer lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

struct PostgresCommitter {
    config: tokio_postgres::Config,
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
                None => WriterConnection::open(&self.config).and_then(|mut conn| {
                    tracing::info!("reconnected to PostgreSQL; retrying the commit");
                    let done = conn.commit(batches);
                    self.conn = Some(conn);
                    done
                }),
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
    fn spawn(config: Config) -> Result<Self, StorageError> {
        let mut client = config.connect(NoTls)?;
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
        self.reader.call(read::load_active)
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
