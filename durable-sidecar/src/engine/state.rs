//! The engine's in-memory state: active instances with their history and inbox, queued
//! activities, armed timers, dispatch tokens and worker streams, plus the bookkeeping every
//! mutation shares (inbox appends, the ready queue, dropping an ending instance's queued work,
//! evicting finished instances once durable and bringing them back for a rewind).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use prost::Message;
use tokio::sync::oneshot;
use tonic::Status;

use super::batch::Batch;
use super::messages;
use super::routing::Outbound;
use super::{is_terminal, new_id};
use crate::metrics::Metrics;
use crate::partitions::Partition;
use crate::proto::{self, HistoryEvent, OrchestratorAction};
use crate::storage::{
    EntityRecord, InstanceRecord, LoadedState, LockRequestRecord, Sequenced, Storage, StorageError,
    TimerRecord, WriteOp,
};
use crate::time::now_ms;
use crate::work_queue::{WorkKind, WorkStream};

/// One orchestration instance: its record, committed history and undelivered events.
pub(super) struct Instance {
    pub(super) rec: InstanceRecord,
    pub(super) history: Vec<HistoryEvent>,
    pub(super) inbox: VecDeque<(u64, HistoryEvent)>,
    pub(super) next_inbox_seq: u64,
    pub(super) in_flight: Option<InFlight>,
    /// Actions of `isPartial` chunks, accumulated until the final chunk.
    pub(super) partial: Vec<OrchestratorAction>,
    /// The encoded size of the chunks in `partial`.
    pub(super) partial_bytes: usize,
    pub(super) queued: bool,
    /// Batch that must be durable before this instance may be dispatched.
    pub(super) ready_seq: u64,
    /// Batch of the last status change: waits and reads answer only once it is durable.
    pub(super) status_seq: u64,
    /// How often its work item, too large for common receive limits, was on a worker stream
    /// that then closed without completing it (see `dispatch::COMMON_RECEIVE_LIMIT`).
    pub(super) failed_deliveries: u32,
    /// The in-process worker that completed the last episode holds the execution's replay
    /// state up to this point of the history: its next episode there carries only the rest.
    /// Taken by the next dispatch; set again only when an episode completes.
    pub(super) held: Option<HeldHistory>,
}

/// How much of an instance's history a worker stream holds (see `Instance::held`).
pub(super) struct HeldHistory {
    pub(super) stream: u64,
    /// The leading history events it applied.
    pub(super) events: usize,
}

impl Instance {
    /// A fresh instance with an empty history, dispatchable once batch `seq` is durable.
    pub(super) fn new(rec: InstanceRecord, queued: bool, seq: u64) -> Self {
        Self {
            rec,
            history: Vec::new(),
            inbox: VecDeque::new(),
            next_inbox_seq: 1,
            in_flight: None,
            partial: Vec::new(),
            partial_bytes: 0,
            queued,
            ready_seq: seq,
            status_seq: seq,
            failed_deliveries: 0,
            held: None,
        }
    }

    /// Whether this execution may hold or wait for entity locks, so its end must release
    /// them (a message to the entity partition): it requested or was granted a lock, or it has
    /// sub-orchestrations (which may request locks on its behalf). Most orchestrations use no
    /// entities and end without that message.
    pub(super) fn may_hold_entity_locks(&self) -> bool {
        use proto::history_event::EventType;
        !self.rec.children.is_empty()
            || self
                .history
                .iter()
                .chain(self.inbox.iter().map(|(_, e)| e))
                .any(|e| {
                    matches!(
                        e.event_type,
                        Some(EventType::EntityLockRequested(_) | EventType::EntityLockGranted(_))
                    )
                })
    }

    /// Appends an event to the inbox and records it in batch `b`.
    pub(super) fn append_inbox(&mut self, b: &mut Batch, ev: HistoryEvent) {
        let seq = self.next_inbox_seq;
        self.next_inbox_seq += 1;
        b.ops.push(WriteOp::PutInbox {
            instance_id: self.rec.instance_id.clone(),
            seq,
            event: ev.encode_to_vec(),
        });
        self.inbox.push_back((seq, ev));
    }
}

/// The episode a worker is running for an instance.
pub(super) struct InFlight {
    pub(super) token: String,
    /// Inbox entries up to this sequence number were delivered with the episode.
    pub(super) up_to_seq: Option<u64>,
    pub(super) new_events: Vec<HistoryEvent>,
    /// The history's length when the episode was sent.
    pub(super) history_len: usize,
    /// The encoded size of the work item.
    pub(super) bytes: usize,
    /// When it was dispatched (for the episode latency metric).
    pub(super) since: std::time::Instant,
}

/// A queued or running activity.
pub(super) struct Activity {
    pub(super) request: proto::ActivityRequest,
    pub(super) dispatched: Option<String>,
    pub(super) ready_seq: u64,
    /// As `Instance::failed_deliveries`.
    pub(super) failed_deliveries: u32,
}

/// One entity: its record and the operations waiting for it.
pub(super) struct EntityInstance {
    pub(super) rec: EntityRecord,
    /// Queued operations (`entityOperationSignaled` / `Called` events) by arrival sequence.
    pub(super) queue: BTreeMap<u64, HistoryEvent>,
    pub(super) next_seq: u64,
    /// The batch a worker is running.
    pub(super) in_flight: Option<EntityInFlight>,
    /// Whether it is in the entity ready queue.
    pub(super) queued: bool,
    /// Batch that must be durable before its queued operations may be dispatched.
    pub(super) ready_seq: u64,
    /// Batch of the last change of state or lock: reads answer once it is durable.
    pub(super) status_seq: u64,
}

impl EntityInstance {
    pub(super) fn new(id: &str, now: i64) -> Self {
        Self {
            rec: EntityRecord {
                id: id.to_owned(),
                state: None,
                last_modified_ms: now,
                locked_by: None,
                lock_holder: None,
                execution_id: new_id(),
            },
            queue: BTreeMap::new(),
            next_seq: 1,
            in_flight: None,
            queued: false,
            ready_seq: 0,
            status_seq: 0,
        }
    }

    /// Operations queued or running.
    pub(super) fn backlog(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |f| f.ops.len())
    }

    /// Nothing to keep: no state, no work, no lock.
    pub(super) fn is_empty(&self) -> bool {
        self.rec.state.is_none()
            && self.rec.locked_by.is_none()
            && self.queue.is_empty()
            && self.in_flight.is_none()
    }
}

/// The operations of an entity batch handed to a worker, with their queue sequence numbers.
pub(super) struct EntityInFlight {
    pub(super) token: String,
    pub(super) ops: Vec<(u64, HistoryEvent)>,
}

/// What happens when a timer is due.
pub(super) enum TimerEntry {
    /// A durable timer fires: its event goes to the instance's inbox.
    Fire(Box<TimerRecord>),
    /// A scheduled start time was reached: the instance becomes dispatchable.
    Start(String),
}

/// What a completion token was handed out for.
#[derive(Clone)]
pub(super) enum Dispatched {
    Orchestration {
        instance_id: String,
        stream: u64,
        /// When, if it was dispatched before the batch that made it ready was durable.
        early: Option<std::time::Instant>,
    },
    Activity {
        key: u64,
        stream: u64,
    },
    Entity {
        entity_id: String,
        stream: u64,
    },
}

impl Dispatched {
    pub(super) fn kind(&self) -> WorkKind {
        match self {
            Self::Orchestration { .. } => WorkKind::Orchestration,
            Self::Activity { .. } => WorkKind::Activity,
            Self::Entity { .. } => WorkKind::Entity,
        }
    }

    /// The worker stream the work was sent on.
    pub(super) fn stream(&self) -> u64 {
        match self {
            Self::Orchestration { stream, .. }
            | Self::Activity { stream, .. }
            | Self::Entity { stream, .. } => *stream,
        }
    }

    /// The refusal of a completion or abandon call for `kind` that names other work.
    pub(super) fn not_a(&self, kind: WorkKind) -> Status {
        Status::invalid_argument(format!(
            "this completionToken names an {} work item, not an {} one",
            self.kind().name(),
            kind.name()
        ))
    }
}

/// Everything the engine holds, behind its one mutex.
pub(super) struct State {
    pub(super) instances: HashMap<String, Instance>,
    pub(super) ready: VecDeque<String>,
    pub(super) activities: HashMap<u64, Activity>,
    pub(super) activity_queue: VecDeque<u64>,
    pub(super) timers: BTreeMap<(i64, u64), TimerEntry>,
    pub(super) tokens: HashMap<String, Dispatched>,
    /// Tokens of work taken back because its result no longer matters (see
    /// `State::revoke`) → the stream it was sent on; forgotten when that stream closes.
    pub(super) revoked: HashMap<String, u64>,
    /// Ordered by id so round-robin needs no allocation or sort.
    pub(super) streams: BTreeMap<u64, WorkStream>,
    /// Waiting calls by instance or entity id; each is woken with the instance's record when
    /// its status is durable then (so a waiter needs no read after the instance left memory).
    pub(super) waiters: HashMap<String, Vec<oneshot::Sender<Option<Arc<InstanceRecord>>>>>,
    /// (batch seq, instance id): waiters to wake once that batch is durable, in seq order.
    pub(super) wake_after: VecDeque<(u64, String)>,
    /// Instances purged by a batch that may not be durable yet: id → batch seq.
    pub(super) purging: HashMap<String, u64>,
    /// (batch seq, instance id): instances that became final in that batch; once it is durable
    /// they leave memory and are read from storage on demand.
    pub(super) evictable: VecDeque<(u64, String)>,
    pub(super) entities: HashMap<String, EntityInstance>,
    /// Entities with queued operations to dispatch.
    pub(super) entity_ready: VecDeque<String>,
    /// Lock requests not granted yet, first come first served.
    pub(super) lock_requests: Vec<LockRequestRecord>,
    pub(super) next_lock_order: u64,
    /// Orchestration instance → the entities it holds locked.
    pub(super) locks_by_holder: HashMap<String, BTreeSet<String>>,
    pub(super) next_seq: u64,
    pub(super) next_key: u64,
    pub(super) next_stream: u64,
    next_token: u64,
    token_prefix: String,
    /// Round-robin cursor: the stream id to try first.
    pub(super) rr: u64,
    pub(super) closing: bool,
    /// Shared with the storage writer (see `CommitSignal::metrics`).
    pub(super) metrics: Arc<Metrics>,
    /// Early orchestration dispatches answered since the last `pump`, and how long their
    /// answers took in all (`pump` passes them on to the `CommitSignal`).
    pub(super) early_answered: u64,
    pub(super) early_waited: std::time::Duration,
    /// The partition this engine serves (`None`: it serves every instance).
    pub(super) partition: Option<Partition>,
    /// Messages from other partitions applied by a batch whose deletion of them may not be
    /// durable yet: message id → batch seq (see `Engine::apply_messages`).
    pub(super) applied_messages: HashMap<i64, u64>,
    /// Counts instances leaving memory and purges: a status read from storage without the
    /// lock still holds under it when this has not changed (see `Engine::stored_status`).
    pub(super) departures: u64,
}

impl State {
    /// Rebuilds the state from what storage holds: every stored instance is queued once (an
    /// episode that was in flight at the crash runs again), every stored activity is queued
    /// and every timer re-armed.
    pub(super) fn restore(loaded: LoadedState) -> Result<Self, StorageError> {
        let mut st = Self {
            instances: HashMap::new(),
            ready: VecDeque::new(),
            activities: HashMap::new(),
            activity_queue: VecDeque::new(),
            timers: BTreeMap::new(),
            tokens: HashMap::new(),
            revoked: HashMap::new(),
            streams: BTreeMap::new(),
            waiters: HashMap::new(),
            wake_after: VecDeque::new(),
            purging: HashMap::new(),
            evictable: VecDeque::new(),
            entities: HashMap::new(),
            entity_ready: VecDeque::new(),
            lock_requests: Vec::new(),
            next_lock_order: 1,
            locks_by_holder: HashMap::new(),
            next_seq: 1,
            next_key: 1,
            next_stream: 1,
            next_token: 1,
            token_prefix: new_id()[..8].to_string(),
            rr: 0,
            closing: false,
            departures: 0,
            metrics: Arc::default(),
            early_answered: 0,
            early_waited: std::time::Duration::ZERO,
            partition: None,
            applied_messages: HashMap::new(),
        };
        let mut history = loaded.history;
        let mut inbox = loaded.inbox;
        let now = now_ms();
        for rec in loaded.instances {
            let id = rec.instance_id.clone();
            let hist = history
                .remove(&id)
                .unwrap_or_default()
                .iter()
                .map(|b| HistoryEvent::decode(b.as_slice()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut ib = VecDeque::new();
            let mut next_inbox_seq = 1;
            for (seq, b) in inbox.remove(&id).unwrap_or_default() {
                ib.push_back((seq, HistoryEvent::decode(b.as_slice())?));
                next_inbox_seq = next_inbox_seq.max(seq + 1);
            }
            if let Some(start) = rec.scheduled_start_ms.filter(|s| *s > now) {
                if !is_terminal(rec.status) {
                    let key = st.new_key();
                    st.timers
                        .insert((start, key), TimerEntry::Start(id.clone()));
                }
            }
            let mut inst = Instance::new(rec, true, 0);
            inst.history = hist;
            inst.inbox = ib;
            inst.next_inbox_seq = next_inbox_seq;
            st.instances.insert(id.clone(), inst);
            st.ready.push_back(id);
        }
        for a in loaded.activities {
            st.next_key = st.next_key.max(a.key + 1);
            if let Some(request) = a.request {
                st.activities.insert(
                    a.key,
                    Activity {
                        request,
                        dispatched: None,
                        ready_seq: 0,
                        failed_deliveries: 0,
                    },
                );
                st.activity_queue.push_back(a.key);
            }
        }
        for t in loaded.timers {
            st.next_key = st.next_key.max(t.key + 1);
            st.timers
                .insert((t.fire_at_ms, t.key), TimerEntry::Fire(Box::new(t)));
        }
        st.restore_entities(loaded.entities, loaded.entity_ops, loaded.lock_requests)?;
        Ok(st)
    }

    fn restore_entities(
        &mut self,
        records: Vec<EntityRecord>,
        mut ops: Sequenced,
        lock_requests: Vec<LockRequestRecord>,
    ) -> Result<(), StorageError> {
        let now = now_ms();
        for rec in records {
            let mut entity = EntityInstance::new(&rec.id, now);
            for (seq, bytes) in ops.remove(&rec.id).unwrap_or_default() {
                entity
                    .queue
                    .insert(seq, HistoryEvent::decode(bytes.as_slice())?);
                entity.next_seq = entity.next_seq.max(seq + 1);
            }
            if let Some(holder) = &rec.lock_holder {
                self.locks_by_holder
                    .entry(holder.clone())
                    .or_default()
                    .insert(rec.id.clone());
            }
            entity.queued = !entity.queue.is_empty();
            if entity.queued {
                self.entity_ready.push_back(rec.id.clone());
            }
            entity.rec = rec;
            self.entities.insert(entity.rec.id.clone(), entity);
        }
        self.next_lock_order = lock_requests.iter().map(|r| r.order + 1).max().unwrap_or(1);
        self.lock_requests = lock_requests;
        Ok(())
    }

    /// Brings a finished instance back from storage into memory (to rewind it); `false` when
    /// there is no such instance.
    /// Events left in its stored inbox are dropped (in batch `b`): they arrived after it ended.
    pub(super) fn hydrate(
        &mut self,
        storage: &dyn Storage,
        b: &mut Batch,
        id: &str,
    ) -> Result<bool, StorageError> {
        if self.instances.contains_key(id) {
            return Ok(true);
        }
        if self.purging.contains_key(id) {
            return Ok(false);
        }
        let Some(rec) = storage.read_instance(id)? else {
            return Ok(false);
        };
        let history = storage.read_history(id)?;
        let mut inst = Instance::new(rec, false, 0);
        inst.history = history;
        self.instances.insert(id.to_owned(), inst);
        b.ops.push(WriteOp::ClearInbox(id.to_owned()));
        Ok(true)
    }

    /// Whether an instance with this id exists, in memory or (finished) in storage.
    pub(super) fn exists(&self, storage: &dyn Storage, id: &str) -> bool {
        self.instances.contains_key(id)
            || (!self.purging.contains_key(id)
                // A failed read counts as "exists": never replace what might be there.
                && storage.read_instance(id).map_or(true, |r| r.is_some()))
    }

    /// Drops finished instances whose final status is durable from memory (they stay in
    /// storage). One with an episode still in flight is kept until it settles.
    pub(super) fn evict_durable(&mut self, durable: u64) {
        let mut busy = Vec::new();
        while self
            .evictable
            .front()
            .is_some_and(|(seq, _)| *seq <= durable)
        {
            let Some((seq, id)) = self.evictable.pop_front() else {
                break;
            };
            let Some(inst) = self.instances.get(&id) else {
                continue;
            };
            if !is_terminal(inst.rec.status) || inst.status_seq > durable {
                continue;
            }
            if inst.in_flight.is_some() || !inst.partial.is_empty() {
                busy.push((seq, id));
                continue;
            }
            self.instances.remove(&id);
            self.departures += 1;
        }
        for entry in busy.into_iter().rev() {
            self.evictable.push_front(entry);
        }
    }

    /// A fresh key for an activity or timer (unique across restarts: keys are stored).
    pub(super) fn new_key(&mut self) -> u64 {
        let key = self.next_key;
        self.next_key += 1;
        key
    }

    /// What every completion token of this engine starts with.
    pub(super) fn token_prefix(&self) -> &str {
        &self.token_prefix
    }

    /// A fresh completion token, unique to this sidecar process.
    pub(super) fn new_token(&mut self) -> String {
        let n = self.next_token;
        self.next_token += 1;
        format!("{}-{n}", self.token_prefix)
    }

    /// A fresh instance id this engine serves (a partition's engine draws until one hashes to
    /// its partition, about as many draws as there are partitions).
    pub(super) fn new_local_id(&self) -> String {
        loop {
            let id = new_id();
            if self.is_local(&id) {
                return id;
            }
        }
    }

    /// Whether this engine serves the instance or entity `id`.
    pub(super) fn is_local(&self, id: &str) -> bool {
        self.partition.is_none_or(|p| p.holds(id))
    }

    /// Writes a delivery whose target another partition serves into batch `b` as a message
    /// for that partition (`None`), or gives it back to be applied here.
    pub(super) fn route_away(&mut self, b: &mut Batch, o: Outbound) -> Option<Outbound> {
        let Some(p) = self.partition else {
            return Some(o);
        };
        let Some(target) = messages::target_partition(&o, p.count).filter(|t| *t != p.index) else {
            return Some(o);
        };
        if let Some(payload) = messages::encode(o) {
            b.ops.push(WriteOp::PutMessage {
                part: target,
                payload,
            });
        }
        None
    }

    /// Delivers an event for an orchestration (or releases a holder's entity locks) here or,
    /// when another partition serves the target, through a message.
    pub(super) fn deliver(&mut self, b: &mut Batch, o: Outbound) {
        match self.route_away(b, o) {
            Some(Outbound::Event(target, ev)) => self.deliver_event(b, &target, None, *ev),
            Some(Outbound::CallResult {
                target,
                execution_id,
                event,
            }) => self.deliver_event(b, &target, execution_id.as_deref(), *event),
            Some(Outbound::ReleaseLocks(holder)) => self.release_locks_of(b, &holder),
            // Callers pass only the kinds above; the engine's `run_outbound` applies the rest.
            Some(_) | None => {}
        }
    }

    /// Puts an event in a live instance's inbox (of execution `execution_id`, when given);
    /// dropped when the instance is gone, finished or in another execution.
    pub(super) fn deliver_event(
        &mut self,
        b: &mut Batch,
        target: &str,
        execution_id: Option<&str>,
        ev: HistoryEvent,
    ) {
        let live = self.instances.get(target).is_some_and(|i| {
            !is_terminal(i.rec.status)
                && execution_id.is_none_or(|e| e.is_empty() || e == i.rec.execution_id)
        });
        if live {
            self.push_inbox(b, target, ev);
        }
    }

    /// Appends an event to an instance's inbox and queues the instance for dispatch.
    pub(super) fn push_inbox(&mut self, b: &mut Batch, id: &str, ev: HistoryEvent) {
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.append_inbox(b, ev);
        inst.rec.updated_ms = now_ms();
        self.mark_ready(b, id);
    }

    /// Queues an instance for dispatch once batch `b` is durable.
    pub(super) fn mark_ready(&mut self, b: &Batch, id: &str) {
        if let Some(inst) = self.instances.get_mut(id) {
            inst.ready_seq = inst.ready_seq.max(b.seq);
            if !inst.queued {
                inst.queued = true;
                self.ready.push_back(id.to_string());
            }
        }
    }

    /// Drops an instance's activities and timers (it is ending, replaced or purged), so no
    /// queued activity runs for it any more. Results of activities already running are ignored.
    pub(super) fn drop_pending_work(&mut self, b: &mut Batch, id: &str) {
        let keys: Vec<u64> = self
            .activities
            .iter()
            .filter(|(_, a)| {
                a.request
                    .orchestration_instance
                    .as_ref()
                    .is_some_and(|i| i.instance_id == id)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.activities.remove(&key);
            b.ops.push(WriteOp::DeleteActivity(key));
        }
        self.timers.retain(|_, t| match t {
            TimerEntry::Fire(rec) if rec.instance_id == id => {
                b.ops.push(WriteOp::DeleteTimer(rec.key));
                false
            }
            TimerEntry::Start(i) => i != id,
            TimerEntry::Fire(_) => true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::history_event::EventType;

    fn instance() -> Instance {
        Instance::new(InstanceRecord::default(), false, 0)
    }

    fn granted() -> HistoryEvent {
        HistoryEvent {
            event_type: Some(EventType::EntityLockGranted(
                proto::EntityLockGrantedEvent {
                    critical_section_id: "section".into(),
                },
            )),
            ..Default::default()
        }
    }

    #[test]
    fn only_executions_that_touched_entity_locks_release_them() {
        assert!(!instance().may_hold_entity_locks());

        let mut in_history = instance();
        in_history.history.push(granted());
        assert!(in_history.may_hold_entity_locks());

        // A grant that arrived but was not replayed yet counts too.
        let mut in_inbox = instance();
        in_inbox.inbox.push_back((1, granted()));
        assert!(in_inbox.may_hold_entity_locks());

        // A sub-orchestration may request locks on its parent's behalf.
        let mut parent = instance();
        parent.rec.children.push("child".into());
        assert!(parent.may_hold_entity_locks());
    }
}
