//! PostgreSQL storage: the same tables and guarantees as SQLite on a database server. One
//! writer connection commits batches in order with group commit (PostgreSQL's default
//! `synchronous_commit = on` makes each transaction durable in its WAL before the commit
//! returns); one reader connection serves on-demand reads. Both run on their own threads with
//! the synchronous `postgres` client, so the engine can call storage from any context.
//!
//! One sidecar writes a database at a time: the writer holds a session advisory lock for its
//! lifetime (released by PostgreSQL when the connection ends, also after `kill -9`), and a
//! second sidecar on the same database fails to start with a message saying so.

mod read;
mod schema;
mod write;

use std::sync::{Arc, Mutex, mpsc};

use postgres::{Client, Config, NoTls};

use super::writer::{Committer, Done, Pending, Writer};
use super::{
    CommitSignal, CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, Storage,
    StorageError, WriteOp,
};
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
    pub(crate) fn open(url: &str, signal: Arc<CommitSignal>) -> Result<Self, StorageError> {
        let config: Config = url.parse()?;
        let mut client = config.connect(NoTls)?;
        if !take_writer_lock(&mut client)? {
            return Err(StorageError::Locked(
                "another durable sidecar is writing to this PostgreSQL database; point your workers and clients at that sidecar, or give this one another database".into(),
            ));
        }
        schema::create_or_migrate(&mut client)?;
        let statements = write::Statements::prepare(&mut client)?;
        let reader = Reader::spawn(config)?;
        let writer = Writer::spawn(
            "durable-postgres-writer",
            PostgresCommitter { client, statements },
            signal,
        )?;
        Ok(Self { reader, writer })
    }
}

/// Takes the database's writer lock, waiting a little: the server notices a killed sidecar's
/// connection (and frees its lock) within moments, and a supervisor may restart at once.
fn take_writer_lock(client: &mut Client) -> Result<bool, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])?
            .get(0);
        if locked || std::time::Instant::now() >= deadline {
            return Ok(locked);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// How long a starting sidecar waits for another one's writer lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

struct PostgresCommitter {
    client: Client,
    statements: write::Statements,
}

impl Committer for PostgresCommitter {
    fn commit(&mut self, batches: &[Pending]) -> Result<(), StorageError> {
        let mut txn = self.client.transaction()?;
        for (_, ops, _) in batches {
            for op in ops {
                self.statements.apply(&mut txn, op)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut Client) + Send>;

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
                    job(&mut client);
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
        f: impl FnOnce(&mut Client) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
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
