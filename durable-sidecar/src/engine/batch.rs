//! Storage batches: every mutation of the state collects its writes in one [`Batch`], which is
//! submitted while the state lock is still held, so batches commit in mutation order.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::Engine;
use super::state::State;
use crate::storage::{StorageError, WriteOp};

/// Resolves once a submitted batch is durable (or failed to commit).
pub(crate) type CommitWait = oneshot::Receiver<Result<(), Arc<StorageError>>>;

/// A batch under construction plus the sequence number it will commit under.
pub(super) struct Batch {
    pub(super) seq: u64,
    pub(super) ops: Vec<WriteOp>,
}

impl Batch {
    /// Records the instance's current metadata.
    pub(super) fn put_instance(&mut self, rec: &crate::storage::InstanceRecord) {
        self.ops.push(WriteOp::PutInstance(Box::new(rec.clone())));
    }
}

impl Engine {
    /// Starts a batch with the next sequence number.
    pub(super) fn begin(&self, st: &mut State) -> Batch {
        let seq = st.next_seq;
        st.next_seq += 1;
        Batch {
            seq,
            ops: Vec::new(),
        }
    }

    /// Submits the batch (while the state lock is still held, to keep commit order) and returns
    /// a future-like receiver for its durability.
    pub(super) fn submit(&self, st: &mut State, batch: Batch) -> CommitWait {
        let (tx, rx) = oneshot::channel();
        self.storage.submit(batch.seq, batch.ops, Some(tx));
        self.pump(st);
        rx
    }

    /// Submits a batch nobody waits for, without dispatching (for callers inside `pump`; the
    /// commit signal dispatches once it is durable).
    pub(super) fn submit_quietly(&self, batch: Batch) {
        self.storage.submit(batch.seq, batch.ops, None);
    }
}
