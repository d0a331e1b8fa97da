//! In-memory "storage": nothing survives a restart.
//!
//! The engine already holds the full working set in memory, so this backend only has to
//! acknowledge batches; it marks each one durable immediately.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::{CommitSignal, LoadedState, Storage, StorageError, WriteOp};

/// [`Storage`] that keeps nothing beyond the engine's own memory.
pub(crate) struct MemoryStorage {
    signal: Arc<CommitSignal>,
}

impl MemoryStorage {
    pub(crate) fn new(signal: Arc<CommitSignal>) -> Self {
        Self { signal }
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> Result<LoadedState, StorageError> {
        Ok(LoadedState::default())
    }

    fn submit(
        &self,
        seq: u64,
        _batch: Vec<WriteOp>,
        done: Option<oneshot::Sender<Result<(), Arc<StorageError>>>>,
    ) {
        self.signal.durable_seq.fetch_max(seq, Ordering::SeqCst);
        if let Some(done) = done {
            let _ = done.send(Ok(()));
        }
    }

    fn close(&self) {}
}
