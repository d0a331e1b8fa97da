//! In-memory storage: nothing survives a restart.
//!
//! Every batch is durable as soon as it is submitted. The store keeps what the engine reads back
//! on demand (instance records and histories, so finished instances can leave the engine's
//! working set); the rest of a batch (inboxes, activities, timers, entities) only matters for a
//! restart, which this backend does not survive, so it is not kept.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prost::Message;
use tokio::sync::oneshot;

use super::{
    CommitSignal, CompletedQuery, InstanceQuery, InstanceRecord, LoadedState, Storage,
    StorageError, WriteOp,
};
use crate::proto::HistoryEvent;

/// [`Storage`] in this process's memory.
pub(crate) struct MemoryStorage {
    signal: Arc<CommitSignal>,
    store: Mutex<Store>,
}

#[derive(Default)]
struct Store {
    instances: HashMap<String, InstanceRecord>,
    /// (created_ms, id) of every instance, for ordered queries.
    by_created: BTreeSet<(i64, String)>,
    history: HashMap<String, Vec<Vec<u8>>>,
}

impl Store {
    fn apply(&mut self, op: WriteOp) {
        match op {
            WriteOp::PutInstance(rec) => {
                if let Some(old) = self.instances.get(&rec.instance_id) {
                    self.by_created
                        .remove(&(old.created_ms, old.instance_id.clone()));
                }
                self.by_created
                    .insert((rec.created_ms, rec.instance_id.clone()));
                self.instances.insert(rec.instance_id.clone(), *rec);
            }
            WriteOp::DeleteInstance(id) => {
                if let Some(old) = self.instances.remove(&id) {
                    self.by_created.remove(&(old.created_ms, id.clone()));
                }
                self.history.remove(&id);
            }
            WriteOp::AppendHistory {
                instance_id,
                start_index,
                events,
            } => {
                let h = self.history.entry(instance_id).or_default();
                h.truncate(usize::try_from(start_index).unwrap_or(usize::MAX));
                h.extend(events);
            }
            WriteOp::ReplaceHistory {
                instance_id,
                events,
            } => {
                self.history.insert(instance_id, events);
            }
            WriteOp::DeleteAll => *self = Self::default(),
            _ => {}
        }
    }
}

impl MemoryStorage {
    pub(crate) fn new(signal: Arc<CommitSignal>) -> Self {
        Self {
            signal,
            store: Mutex::new(Store::default()),
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("memory storage lock poisoned")
    }
}

impl Storage for MemoryStorage {
    fn load(&self) -> Result<LoadedState, StorageError> {
        Ok(LoadedState::default())
    }

    fn submit(
        &self,
        seq: u64,
        batch: Vec<WriteOp>,
        done: Option<oneshot::Sender<Result<(), Arc<StorageError>>>>,
    ) {
        {
            let mut store = self.store();
            for op in batch {
                store.apply(op);
            }
        }
        self.signal.durable_seq.fetch_max(seq, Ordering::SeqCst);
        if let Some(done) = done {
            let _ = done.send(Ok(()));
        }
    }

    fn close(&self) {}

    fn read_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StorageError> {
        Ok(self.store().instances.get(id).cloned())
    }

    fn read_history(&self, id: &str) -> Result<Vec<HistoryEvent>, StorageError> {
        let store = self.store();
        let Some(events) = store.history.get(id) else {
            return Ok(Vec::new());
        };
        Ok(events
            .iter()
            .map(|b| HistoryEvent::decode(b.as_slice()))
            .collect::<Result<_, _>>()?)
    }

    fn query_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StorageError> {
        let store = self.store();
        let start = match &q.after {
            Some((ms, id)) => std::ops::Bound::Excluded((*ms, id.clone())),
            None => std::ops::Bound::Unbounded,
        };
        Ok(store
            .by_created
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(_, id)| store.instances.get(id))
            .filter(|rec| q.matches(rec))
            .take(q.limit)
            .cloned()
            .collect())
    }

    fn completed_instances(&self, q: &CompletedQuery) -> Result<Vec<(i64, String)>, StorageError> {
        let store = self.store();
        let mut keys: Vec<(i64, String)> = store
            .instances
            .values()
            .filter_map(|r| q.key_of(r))
            .collect();
        keys.sort();
        keys.truncate(q.limit);
        Ok(keys)
    }
}
