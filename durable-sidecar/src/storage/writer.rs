//! The writer thread every durable backend shares: batches commit in submission order, with
//! group commit (everything queued while one commit ran goes into the next transaction).
//!
//! The engine hands a worker in its own process an orchestration's next episode before the
//! step that made it ready is durable (the episode's own commit comes after that step's, so
//! nothing depends on an undurable step). Such a worker answers in well under the time of one
//! fsync, so before committing, the writer waits a moment (at most [`LINGER`], see [`linger`];
//! the PostgreSQL writer does the same) for the answers due to the episodes dispatched early:
//! the step and the episode it fed then share one commit, and a three-activity chain costs
//! four commits in a row instead of eight.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{CommitSignal, StorageError, WriteOp};

/// Receives a batch's outcome once it is durable (or failed).
pub(crate) type Done = Option<oneshot::Sender<Result<(), Arc<StorageError>>>>;

/// One submitted batch: its sequence number, writes and who waits for it.
pub(crate) type Pending = (u64, Vec<WriteOp>, Done);

/// A backend's side of the writer thread.
pub(crate) trait Committer: Send + 'static {
    /// Commits every batch in one transaction, in order.
    fn commit(&mut self, batches: &[Pending]) -> Result<(), StorageError>;
    /// Runs once when the writer stops cleanly.
    fn close(&mut self) {}
}

enum Command {
    Batch(Pending),
    Close,
}

/// The handle of a running writer thread.
pub(crate) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn spawn(
        name: &str,
        committer: impl Committer,
        signal: Arc<CommitSignal>,
    ) -> Result<Self, StorageError> {
        let (tx, rx) = mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || writer_loop(committer, rx, signal))
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a batch; after [`Writer::close`] it fails with [`StorageError::WriterStopped`].
    pub(crate) fn submit(&self, seq: u64, batch: Vec<WriteOp>, done: Done) {
        let guard = self.tx.lock().expect("storage writer lock poisoned");
        let sent = match guard.as_ref() {
            Some(tx) => tx.send(Command::Batch((seq, batch, done))).map_err(|e| e.0),
            None => Err(Command::Batch((seq, batch, done))),
        };
        if let Err(Command::Batch((_, _, Some(done)))) = sent {
            let _ = done.send(Err(Arc::new(StorageError::WriterStopped)));
        }
    }

    /// Commits what is queued and stops the thread.
    pub(crate) fn close(&self) {
        if let Some(tx) = self.tx.lock().expect("storage writer lock poisoned").take() {
            let _ = tx.send(Command::Close);
        }
        if let Some(handle) = self
            .thread
            .lock()
            .expect("storage writer lock poisoned")
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// How long a commit waits at most for the answers of episodes dispatched early.
pub(crate) const LINGER: Duration = Duration::from_micros(500);

/// How often a waiting writer looks at the answer count (answers are counted just after their
/// batch is queued, so the batch may arrive first).
const LINGER_SLICE: Duration = Duration::from_micros(50);

/// Waits up to [`LINGER`] for the answers due to the episodes dispatched early so far (by the
/// engines of `signals`), when such answers usually come within it (a worker in another
/// process takes longer: then the commit goes at once). `receive(timeout)` takes what arrives
/// meanwhile into the commit; it returns `false` to stop waiting.
pub(crate) fn linger<'a>(
    signals: impl IntoIterator<Item = &'a CommitSignal>,
    mut receive: impl FnMut(Duration) -> bool,
) {
    let due: Vec<(&CommitSignal, u64)> = signals
        .into_iter()
        .filter(|s| Duration::from_micros(s.early_answer_micros.load(Ordering::Relaxed)) <= LINGER)
        .map(|s| (s, s.early_dispatched.load(Ordering::SeqCst)))
        .collect();
    let deadline = Instant::now() + LINGER;
    while due
        .iter()
        .any(|(s, due)| s.early_answered.load(Ordering::SeqCst) < *due)
    {
        let now = Instant::now();
        if now >= deadline || !receive(LINGER_SLICE.min(deadline - now)) {
            break;
        }
    }
}

fn writer_loop(
    mut committer: impl Committer,
    rx: mpsc::Receiver<Command>,
    signal: Arc<CommitSignal>,
) {
    let mut closing = false;
    let mut failed: Option<Arc<StorageError>> = None;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut pending = Vec::new();
        match first {
            Command::Batch(p) => pending.push(p),
            Command::Close => closing = true,
        }
        // Group commit: take everything that queued up meanwhile.
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Batch(p) => pending.push(p),
                Command::Close => closing = true,
            }
        }
        if pending.is_empty() {
            continue;
        }
        if !closing {
            linger([&*signal], |wait| match rx.recv_timeout(wait) {
                Ok(Command::Batch(p)) => {
                    pending.push(p);
                    true
                }
                Ok(Command::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    closing = true;
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => true,
            });
        }
        let max_seq = pending.iter().map(|(s, _, _)| *s).max().unwrap_or(0);
        // After one failed commit nothing more may commit: later batches build on changes
        // that never reached the database.
        let result = match &failed {
            Some(e) => Err(Arc::clone(e)),
            None => {
                let started = std::time::Instant::now();
                let result = committer.commit(&pending).map_err(Arc::new);
                signal.metrics.commit(started.elapsed());
                result
            }
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
        for (_, _, done) in pending {
            if let Some(done) = done {
                let _ = done.send(result.clone());
            }
        }
        signal.committed.notify_one();
    }
    committer.close();
}
