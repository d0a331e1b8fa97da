//! Durable storage behind the sidecar engine.
//!
//! The engine keeps the *active* working set in memory (instances that are pending, running or
//! suspended, with their history and inbox; queued activities; timers; entities) and treats
//! storage as a write-ahead copy: every state change is expressed as a batch of [`WriteOp`]s
//! that is committed atomically, in submission order. On start the engine rebuilds its state
//! from [`Storage::load`], which reads only active work. Finished instances live only in
//! storage once their final status is durable; the engine reads them on demand
//! ([`Storage::read_instance`], [`Storage::read_history`], [`Storage::query_instances`],
//! [`Storage::completed_instances`]). Reads see committed batches only.
//!
//! Each batch carries a sequence number. A storage reports the highest committed sequence
//! through the shared `durable_seq` counter, and the engine only dispatches work (and only
//! answers RPCs) once the batch that produced it is durable.

pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod sql;
pub(crate) mod sqlite;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{Notify, oneshot};

use crate::proto::{ParentInstanceInfo, TaskFailureDetails};

/// Errors raised by a storage backend.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("sqlite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt record in the sidecar database: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("postgres error: {}", error_chain(.0))]
    Postgres(#[from] ::postgres::Error),
    /// Another sidecar holds the database.
    #[error("{0}")]
    Locked(String),
    /// A file next to the database could not be created or opened.
    #[error("{0}")]
    File(String),
    #[error("{0}")]
    Schema(String),
    #[error("the storage writer has stopped")]
    WriterStopped,
}

/// An error with its causes (`postgres` errors keep the useful part in their sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Statuses after which an instance runs no more episodes (unless restarted or rewound).
pub(crate) const TERMINAL_STATUSES: [i32; 4] = [
    crate::proto::OrchestrationStatus::Completed as i32,
    crate::proto::OrchestrationStatus::Failed as i32,
    crate::proto::OrchestrationStatus::Canceled as i32,
    crate::proto::OrchestrationStatus::Terminated as i32,
];

/// Which instances [`Storage::query_instances`] returns: ordered by (creation time, id),
/// starting after the key `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceQuery {
    /// Empty = any status.
    pub(crate) statuses: Vec<i32>,
    /// Created at or after (ms since the Unix epoch).
    pub(crate) created_from: Option<i64>,
    /// Created before.
    pub(crate) created_to: Option<i64>,
    pub(crate) prefix: Option<String>,
    /// The (created_ms, id) key of the last instance of the previous page.
    pub(crate) after: Option<(i64, String)>,
    pub(crate) limit: usize,
}

impl InstanceQuery {
    /// Whether a record matches everything but the paging.
    pub(crate) fn matches(&self, rec: &InstanceRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&rec.status))
            && self.created_from.is_none_or(|f| rec.created_ms >= f)
            && self.created_to.is_none_or(|t| rec.created_ms < t)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| rec.instance_id.starts_with(p))
            && self.after.as_ref().is_none_or(|(ms, id)| {
                (rec.created_ms, rec.instance_id.as_str()) > (*ms, id.as_str())
            })
    }
}

/// Which finished instances [`Storage::completed_instances`] returns: (completed_ms, id) keys in
/// order, after `after`, at most `limit`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompletedQuery {
    /// Terminal statuses to include; empty = all terminal ones.
    pub(crate) statuses: Vec<i32>,
    pub(crate) completed_from: Option<i64>,
    pub(crate) completed_to: Option<i64>,
    pub(crate) after: Option<(i64, String)>,
    pub(crate) limit: usize,
}

impl CompletedQuery {
    /// The terminal statuses this query asks for.
    pub(crate) fn terminal_statuses(&self) -> Vec<i32> {
        TERMINAL_STATUSES
            .into_iter()
            .filter(|s| self.statuses.is_empty() || self.statuses.contains(s))
            .collect()
    }

    /// The key of a record if it matches everything but the limit.
    pub(crate) fn key_of(&self, rec: &InstanceRecord) -> Option<(i64, String)> {
        let completed = rec.completed_ms?;
        let matches = self.terminal_statuses().contains(&rec.status)
            && self.completed_from.is_none_or(|f| completed >= f)
            && self.completed_to.is_none_or(|t| completed < t)
            && self
                .after
                .as_ref()
                .is_none_or(|(ms, id)| (completed, rec.instance_id.as_str()) > (*ms, id.as_str()));
        matches.then(|| (completed, rec.instance_id.clone()))
    }
}

/// The persisted metadata of one orchestration instance (everything but its history and inbox).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InstanceRecord {
    #[prost(string, tag = "1")]
    pub(crate) instance_id: String,
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(string, optional, tag = "3")]
    pub(crate) version: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub(crate) input: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub(crate) output: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub(crate) custom_status: Option<String>,
    #[prost(message, optional, tag = "7")]
    pub(crate) failure_details: Option<TaskFailureDetails>,
    #[prost(int32, tag = "8")]
    pub(crate) status: i32,
    #[prost(string, tag = "9")]
    pub(crate) execution_id: String,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "10")]
    pub(crate) created_ms: i64,
    #[prost(int64, tag = "11")]
    pub(crate) updated_ms: i64,
    #[prost(int64, optional, tag = "12")]
    pub(crate) completed_ms: Option<i64>,
    #[prost(int64, optional, tag = "13")]
    pub(crate) scheduled_start_ms: Option<i64>,
    #[prost(message, optional, tag = "14")]
    pub(crate) parent: Option<ParentInstanceInfo>,
    #[prost(map = "string, string", tag = "15")]
    pub(crate) tags: HashMap<String, String>,
    /// Sub-orchestrations started by this instance (all generations), for recursive
    /// terminate and purge.
    #[prost(string, repeated, tag = "16")]
    pub(crate) children: Vec<String>,
    /// Dispatch even with an empty inbox (after a rewind the worker must replay the new history).
    #[prost(bool, tag = "17")]
    pub(crate) force_dispatch: bool,
    /// The orchestration span a worker asked to keep across dispatches (span id and start
    /// time), sent back with every work item of this execution, as the official backends do.
    #[prost(message, optional, tag = "18")]
    pub(crate) orchestration_trace_context: Option<crate::proto::OrchestrationTraceContext>,
}

/// The persisted metadata of one entity (everything but its queued operations).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EntityRecord {
    /// `@name@key`.
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    /// The JSON state; absent = the entity has no state (it does not exist for readers).
    #[prost(string, optional, tag = "2")]
    pub(crate) state: Option<String>,
    #[prost(int64, tag = "3")]
    pub(crate) last_modified_ms: i64,
    /// The critical section holding the entity's lock.
    #[prost(string, optional, tag = "4")]
    pub(crate) locked_by: Option<String>,
    /// The orchestration instance of that critical section.
    #[prost(string, optional, tag = "5")]
    pub(crate) lock_holder: Option<String>,
    /// Sent as the entity work item's execution id.
    #[prost(string, tag = "6")]
    pub(crate) execution_id: String,
}

/// A lock request waiting until every entity of its set is free.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LockRequestRecord {
    #[prost(string, tag = "1")]
    pub(crate) critical_section_id: String,
    /// The requesting orchestration instance.
    #[prost(string, tag = "2")]
    pub(crate) holder: String,
    /// The entities to lock, sorted.
    #[prost(string, repeated, tag = "3")]
    pub(crate) lock_set: Vec<String>,
    /// Arrival order among lock requests (requests are granted first come, first served).
    #[prost(uint64, tag = "4")]
    pub(crate) order: u64,
}

/// One pending activity work item (un-acknowledged until its completion commits).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ActivityRecord {
    #[prost(uint64, tag = "1")]
    pub(crate) key: u64,
    #[prost(message, optional, tag = "2")]
    pub(crate) request: Option<crate::proto::ActivityRequest>,
}

/// One armed durable timer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimerRecord {
    #[prost(uint64, tag = "1")]
    pub(crate) key: u64,
    #[prost(string, tag = "2")]
    pub(crate) instance_id: String,
    #[prost(string, tag = "3")]
    pub(crate) execution_id: String,
    #[prost(int64, tag = "4")]
    pub(crate) fire_at_ms: i64,
    #[prost(message, optional, tag = "5")]
    pub(crate) event: Option<crate::proto::HistoryEvent>,
}

/// A single change; a batch of them commits atomically.
#[derive(Debug, Clone)]
pub(crate) enum WriteOp {
    PutInstance(Box<InstanceRecord>),
    /// Removes the instance with its history, inbox, activities and timers.
    DeleteInstance(String),
    AppendHistory {
        instance_id: String,
        start_index: u64,
        events: Vec<Vec<u8>>,
    },
    ReplaceHistory {
        instance_id: String,
        events: Vec<Vec<u8>>,
    },
    PutInbox {
        instance_id: String,
        seq: u64,
        event: Vec<u8>,
    },
    /// Deletes inbox entries with `seq <= up_to`.
    DeleteInbox {
        instance_id: String,
        up_to: u64,
    },
    ClearInbox(String),
    PutActivity(Box<ActivityRecord>),
    DeleteActivity(u64),
    PutTimer(Box<TimerRecord>),
    DeleteTimer(u64),
    PutEntity(Box<EntityRecord>),
    /// Removes the entity with its queued operations.
    DeleteEntity(String),
    /// Queues an operation (an `entityOperationSignaled`/`Called` event) for an entity.
    PutEntityOp {
        entity_id: String,
        seq: u64,
        event: Vec<u8>,
    },
    /// Removes processed operations.
    DeleteEntityOps {
        entity_id: String,
        seqs: Vec<u64>,
    },
    PutLockRequest(Box<LockRequestRecord>),
    DeleteLockRequest(String),
    /// Deletes everything: every instance, activity, timer, entity and lock request (of the
    /// writer's partition, when storage is partitioned).
    DeleteAll,
    /// A delivery for an instance or entity of another partition (see `engine::messages`).
    PutMessage {
        part: u32,
        payload: Vec<u8>,
    },
    /// Messages this partition applied.
    DeleteMessages(Vec<i64>),
}

/// The tables [`WriteOp::DeleteAll`] empties in SQLite.
pub(crate) const ALL_TABLES: [&str; 8] = [
    "instances",
    "history",
    "inbox",
    "activities",
    "timers",
    "entities",
    "entity_ops",
    "lock_requests",
];

/// Encoded events by owner (an instance's inbox, an entity's queue): owner id → (seq, event).
pub(crate) type Sequenced = HashMap<String, Vec<(u64, Vec<u8>)>>;

/// The active work a storage holds, read once at start: instances that are not finished (with
/// their history and inbox), activities, timers, entities and lock requests.
#[derive(Debug, Default)]
pub(crate) struct LoadedState {
    pub(crate) instances: Vec<InstanceRecord>,
    /// instance id → history events (encoded), in order.
    pub(crate) history: HashMap<String, Vec<Vec<u8>>>,
    /// instance id → (seq, encoded event), in seq order.
    pub(crate) inbox: Sequenced,
    pub(crate) activities: Vec<ActivityRecord>,
    pub(crate) timers: Vec<TimerRecord>,
    pub(crate) entities: Vec<EntityRecord>,
    /// entity id → (seq, encoded event), in seq order.
    pub(crate) entity_ops: Sequenced,
    pub(crate) lock_requests: Vec<LockRequestRecord>,
}

/// Shared signals between a storage writer and the engine.
#[derive(Debug, Default)]
pub(crate) struct CommitSignal {
    /// Highest batch sequence number known to be committed.
    pub(crate) durable_seq: AtomicU64,
    /// Woken after every commit so the engine can dispatch newly durable work.
    pub(crate) committed: Notify,
    /// Set once a commit failed: memory no longer matches disk, so the engine stops serving.
    failure: OnceLock<String>,
    /// Woken when `failure` is set.
    failed: Notify,
    /// What the sidecar counts (commit latency is measured by the writer).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Orchestration episodes dispatched before the batch that made them ready was durable
    /// (counted by the engine)...
    pub(crate) early_dispatched: AtomicU64,
    /// ...and how many of those the workers have answered (counted once the answer's batch
    /// is submitted). The writer waits briefly for answers due, so that a step and the
    /// episode it feeds commit together (see `writer`)...
    pub(crate) early_answered: AtomicU64,
    /// ...when they usually come quickly enough: the moving average of the time such an
    /// answer took, in microseconds.
    pub(crate) early_answer_micros: AtomicU64,
}

impl CommitSignal {
    /// A signal whose writer counts into `metrics` (shared by the partitions of a replica).
    pub(crate) fn with_metrics(metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self {
            metrics,
            ..Self::default()
        }
    }

    /// Counts `answered` early dispatches whose answers took `waited` in all.
    pub(crate) fn early_answers(&self, answered: u64, waited: std::time::Duration) {
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX) / answered;
        let average = self.early_answer_micros.load(Ordering::Relaxed);
        self.early_answer_micros
            .store(average - average / 8 + micros / 8, Ordering::Relaxed);
        self.early_answered.fetch_add(answered, Ordering::SeqCst);
    }

    /// Records the first storage failure (later ones are ignored) and wakes the engine.
    pub(crate) fn fail(&self, error: &StorageError) {
        let _ = self.failure.set(error.to_string());
        self.committed.notify_one();
        self.failed.notify_waiters();
    }

    /// Waits for a storage failure; returns its message.
    pub(crate) async fn wait_for_failure(&self) -> String {
        loop {
            // Created before the check, so a failure between the two still wakes it.
            let failed = self.failed.notified();
            if let Some(failure) = self.failure() {
                return failure.to_owned();
            }
            failed.await;
        }
    }

    /// The storage error that stopped the engine, if any.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// The UNAVAILABLE status every RPC gets once storage failed.
    pub(crate) fn failure_status(&self) -> Option<tonic::Status> {
        self.failure().map(|e| {
            tonic::Status::unavailable(format!(
                "the sidecar stopped serving after a storage commit failed ({e}); in-memory state no longer matches the database, restart the sidecar to recover from the last committed state"
            ))
        })
    }
}

/// At most this many messages between partitions are read at once.
pub(crate) const MESSAGES_PER_READ: usize = 1000;

/// A place to keep instances durably.
pub(crate) trait Storage: Send + Sync + 'static {
    /// Reads the active work (finished instances stay in storage).
    fn load(&self) -> Result<LoadedState, StorageError>;
    /// One instance's committed record.
    fn read_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StorageError>;
    /// One instance's committed history, in order (empty when it has none).
    fn read_history(&self, id: &str) -> Result<Vec<crate::proto::HistoryEvent>, StorageError>;
    /// Committed instances matching a query, ordered by (created_ms, id).
    fn query_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StorageError>;
    /// Committed finished instances matching a query, as (completed_ms, id) in order.
    fn completed_instances(&self, q: &CompletedQuery) -> Result<Vec<(i64, String)>, StorageError>;
    /// Queues a batch for commit. Batches commit in submission order; `done` (if any) receives
    /// the outcome once the batch is durable.
    fn submit(
        &self,
        seq: u64,
        batch: Vec<WriteOp>,
        done: Option<oneshot::Sender<Result<(), Arc<StorageError>>>>,
    );
    /// Flushes every submitted batch and stops the writer.
    fn close(&self);
    /// Whether a read costs a round trip to a server (PostgreSQL): then the engine reads what
    /// it can before taking its lock rather than under it.
    fn reads_are_remote(&self) -> bool {
        false
    }
    /// The oldest messages from other partitions for partition `part`, as (id, payload), at
    /// most [`MESSAGES_PER_READ`]. Only partitioned storage (PostgreSQL) has any.
    fn read_messages(&self, _part: u32) -> Result<Vec<(i64, Vec<u8>)>, StorageError> {
        Ok(Vec::new())
    }
}
