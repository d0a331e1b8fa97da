//! Entities: queued operations (signals and calls) per entity, batches handed to workers one
//! at a time per entity, their results (state, answers to callers, signals and orchestrations
//! they start), and locks: granted all-or-nothing to one orchestration's critical section,
//! during which only that orchestration's calls reach the locked entities.

use prost::Message;
use tonic::Status;

use super::batch::{Batch, CommitWait};
use super::dispatch::{any_room, pick_stream, send};
use super::lifecycle::NewInstance;
use super::routing::Outbound;
use super::state::{Dispatched, EntityInFlight, EntityInstance, State, TimerEntry};
use super::{Engine, event, is_terminal};
use crate::proto::{
    self, HistoryEvent, TaskFailureDetails, WorkItem, history_event::EventType,
    operation_action::OperationActionType, operation_result::ResultType, work_item,
};
use crate::storage::{LockRequestRecord, TimerRecord, WriteOp};
use crate::time::{given_ms, now_ms};
use crate::work_queue::WorkKind;

/// At most this many operations go into one entity work item.
const MAX_BATCH_OPERATIONS: usize = 1000;
/// ... and at most about this many bytes of operations (at least one operation is sent).
const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// An entity id in canonical form (`@name@key`, name lower-cased), or why it is not one.
pub(crate) fn canonical_entity_id(id: &str) -> Result<String, String> {
    let problem = |reason: &str| {
        format!(
            "invalid entity id `{id}`: {reason}; an entity id is `@name@key` (e.g. `@counter@c1`)"
        )
    };
    let rest = id
        .strip_prefix('@')
        .ok_or_else(|| problem("it does not start with `@`"))?;
    let (name, key) = rest
        .split_once('@')
        .ok_or_else(|| problem("there is no `@` between name and key"))?;
    if name.is_empty() {
        return Err(problem("the name is empty"));
    }
    if key.is_empty() {
        return Err(problem("the key is empty"));
    }
    Ok(format!("@{}@{key}", name.to_lowercase()))
}

/// The name part of a canonical entity id.
pub(super) fn entity_name(id: &str) -> &str {
    id.get(1..)
        .and_then(|rest| rest.split_once('@'))
        .map_or("", |(name, _)| name)
}

/// Whether an operation may run while the entity is locked by `holder`: only calls from the
/// lock holder may.
fn runs_while_locked(ev: &HistoryEvent, holder: &str) -> bool {
    matches!(&ev.event_type, Some(EventType::EntityOperationCalled(c))
        if c.parent_instance_id.as_deref() == Some(holder))
}

impl Engine {
    /// Queues an operation for an entity now, or at `at_ms` (a durable timer) when later.
    pub(super) fn deliver_entity_op(
        &self,
        st: &mut State,
        b: &mut Batch,
        target: &str,
        ev: HistoryEvent,
        at_ms: Option<i64>,
    ) {
        let target = match canonical_entity_id(target) {
            Ok(id) => id,
            Err(problem) => {
                tracing::warn!("dropping an entity operation: {problem}");
                return;
            }
        };
        if let Some(at) = at_ms.filter(|at| *at > now_ms()) {
            let key = st.new_key();
            let rec = TimerRecord {
                key,
                instance_id: target,
                execution_id: String::new(),
                fire_at_ms: at,
                event: Some(ev),
            };
            b.ops.push(WriteOp::PutTimer(Box::new(rec.clone())));
            st.timers.insert((at, key), TimerEntry::Fire(Box::new(rec)));
            self.timer_wake.notify_one();
            return;
        }
        st.queue_entity_op(b, &target, ev);
    }

    /// `SignalEntity`: queues a signal from a client.
    pub(crate) fn signal_entity(
        &self,
        id: &str,
        operation: String,
        input: Option<String>,
        request_id: String,
        at_ms: Option<i64>,
    ) -> Result<CommitWait, Status> {
        let id = canonical_entity_id(id).map_err(Status::invalid_argument)?;
        if operation.is_empty() {
            return Err(Status::invalid_argument(
                "name (the operation to signal) must not be empty",
            ));
        }
        let mut st = self.lock();
        self.refuse(&st)?;
        let mut b = self.begin(&mut st);
        let ev = event(
            -1,
            EventType::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                request_id,
                operation,
                scheduled_time: at_ms.map(crate::time::from_ms),
                input,
                target_instance_id: Some(id.clone()),
            }),
        );
        self.deliver_entity_op(&mut st, &mut b, &id, ev, at_ms);
        Ok(self.submit(&mut st, b))
    }

    /// `CompleteEntityTask`: applies a worker's batch result.
    pub(crate) fn complete_entity(
        &self,
        result: proto::EntityBatchResult,
    ) -> Result<Option<CommitWait>, Status> {
        let mut st = self.lock();
        let token = result.completion_token.clone();
        let Some(d) = st.dispatched(&token, WorkKind::Entity)? else {
            return Ok(None);
        };
        let Dispatched::Entity { entity_id, .. } = d else {
            return Err(d.not_a(WorkKind::Entity));
        };
        st.release_token(&token);
        st.metrics.completed(WorkKind::Entity);
        let mut b = self.begin(&mut st);
        if let Some(failure) = &result.failure_details {
            tracing::warn!(
                entity = %entity_id,
                "a worker failed a whole entity batch ({}: {}); it runs again",
                failure.error_type,
                failure.error_message
            );
            st.requeue_entity_batch(&entity_id, &token);
        } else {
            self.apply_entity_result(&mut st, &mut b, &entity_id, &token, result);
        }
        st.grant_locks(&mut b);
        Ok(Some(self.submit(&mut st, b)))
    }

    fn apply_entity_result(
        &self,
        st: &mut State,
        b: &mut Batch,
        id: &str,
        token: &str,
        result: proto::EntityBatchResult,
    ) {
        let Some(entity) = st.entities.get_mut(id) else {
            return;
        };
        let Some(flight) = entity.in_flight.take_if(|f| f.token == token) else {
            return;
        };
        let done = result.results.len().min(flight.ops.len());
        let mut ops = flight.ops;
        // Operations the worker did not get to go back to the queue, in order.
        for (seq, ev) in ops.split_off(done) {
            entity.queue.insert(seq, ev);
        }
        entity.rec.state = result.entity_state;
        entity.rec.last_modified_ms = now_ms();
        b.ops.push(WriteOp::DeleteEntityOps {
            entity_id: id.to_owned(),
            seqs: ops.iter().map(|(seq, _)| *seq).collect(),
        });
        b.ops.push(WriteOp::PutEntity(Box::new(entity.rec.clone())));
        st.note_entity_change(b, id);
        for ((_, op), outcome) in ops.iter().zip(result.results) {
            answer_caller(st, b, op, outcome);
        }
        for action in result.actions {
            self.apply_operation_action(st, b, action);
        }
        st.mark_entity_ready(b, id);
        st.drop_entity_if_empty(b, id);
    }

    /// Starts an orchestration an entity asked for, unless its id is in use or reserved.
    pub(super) fn start_for_entity(&self, st: &mut State, b: &mut Batch, ni: NewInstance) {
        if ni.instance_id.starts_with('@') || st.exists(self.storage.as_ref(), &ni.instance_id) {
            tracing::warn!(
                instance_id = %ni.instance_id,
                "not starting orchestration `{}` for an entity: the instance id is in use or reserved",
                ni.name
            );
            return;
        }
        self.create_instance(st, b, ni, Some(false));
    }

    /// A signal or a new orchestration sent by an entity operation.
    fn apply_operation_action(
        &self,
        st: &mut State,
        b: &mut Batch,
        action: proto::OperationAction,
    ) {
        match action.operation_action_type {
            Some(OperationActionType::SendSignal(signal)) => {
                let at = given_ms(signal.scheduled_time.as_ref());
                let ev = event(
                    -1,
                    EventType::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                        request_id: uuid::Uuid::new_v4().simple().to_string(),
                        operation: signal.name,
                        scheduled_time: signal.scheduled_time,
                        input: signal.input,
                        target_instance_id: Some(signal.instance_id.clone()),
                    }),
                );
                self.deliver_entity_op(st, b, &signal.instance_id, ev, at);
            }
            Some(OperationActionType::StartNewOrchestration(start)) => {
                let instance_id = if start.instance_id.is_empty() {
                    uuid::Uuid::new_v4().simple().to_string()
                } else {
                    start.instance_id
                };
                let ni = NewInstance {
                    instance_id,
                    name: start.name,
                    version: start.version,
                    input: start.input,
                    execution_id: None,
                    scheduled_start_ms: given_ms(start.scheduled_time.as_ref()),
                    tags: Default::default(),
                    parent: None,
                    parent_trace_context: start.parent_trace_context,
                };
                self.run_outbound(st, b, vec![Outbound::StartForEntity(Box::new(ni))]);
            }
            None => {}
        }
    }
}

/// Sends the result of a call (not of a signal) to the calling orchestration, if it still
/// waits for it (same execution, not finished).
fn answer_caller(
    st: &mut State,
    b: &mut Batch,
    op: &HistoryEvent,
    outcome: proto::OperationResult,
) {
    let Some(EventType::EntityOperationCalled(call)) = &op.event_type else {
        return;
    };
    let Some(caller) = call.parent_instance_id.as_deref() else {
        return;
    };
    let request_id = call.request_id.clone();
    let ty = match outcome.result_type {
        Some(ResultType::Success(s)) => {
            EventType::EntityOperationCompleted(proto::EntityOperationCompletedEvent {
                request_id,
                output: s.result,
            })
        }
        Some(ResultType::Failure(f)) => {
            EventType::EntityOperationFailed(proto::EntityOperationFailedEvent {
                request_id,
                failure_details: f.failure_details,
            })
        }
        None => EventType::EntityOperationFailed(proto::EntityOperationFailedEvent {
            request_id,
            failure_details: Some(TaskFailureDetails {
                error_type: "durable::MissingResult".into(),
                error_message:
                    "the worker reported neither a result nor a failure for this operation".into(),
                ..Default::default()
            }),
        }),
    };
    st.deliver(
        b,
        Outbound::CallResult {
            target: caller.to_owned(),
            execution_id: call.parent_execution_id.clone(),
            event: Box::new(event(-1, ty)),
        },
    );
}

impl State {
    /// The entity, created (and persisted) if it is new.
    fn entity_or_new(&mut self, b: &mut Batch, id: &str) -> &mut EntityInstance {
        if !self.entities.contains_key(id) {
            let entity = EntityInstance::new(id, now_ms());
            b.ops.push(WriteOp::PutEntity(Box::new(entity.rec.clone())));
            self.entities.insert(id.to_owned(), entity);
        }
        self.entities
            .get_mut(id)
            .expect("the entity was just inserted")
    }

    /// Appends an operation to an entity's queue (`id` canonical).
    pub(super) fn queue_entity_op(&mut self, b: &mut Batch, id: &str, ev: HistoryEvent) {
        let entity = self.entity_or_new(b, id);
        let seq = entity.next_seq;
        entity.next_seq += 1;
        b.ops.push(WriteOp::PutEntityOp {
            entity_id: id.to_owned(),
            seq,
            event: ev.encode_to_vec(),
        });
        entity.queue.insert(seq, ev);
        self.mark_entity_ready(b, id);
    }

    /// Queues the entity for dispatch once batch `b` is durable.
    pub(super) fn mark_entity_ready(&mut self, b: &Batch, id: &str) {
        if let Some(entity) = self.entities.get_mut(id) {
            entity.ready_seq = entity.ready_seq.max(b.seq);
            if !entity.queued && !entity.queue.is_empty() {
                entity.queued = true;
                self.entity_ready.push_back(id.to_owned());
            }
        }
    }

    /// Records a change readers must see only once durable.
    pub(super) fn note_entity_change(&mut self, b: &Batch, id: &str) {
        if let Some(entity) = self.entities.get_mut(id) {
            entity.status_seq = entity.status_seq.max(b.seq);
        }
        self.wake_after.push_back((b.seq, id.to_owned()));
    }

    /// Forgets an entity with no state, work or lock left.
    pub(super) fn drop_entity_if_empty(&mut self, b: &mut Batch, id: &str) {
        if self.entities.get(id).is_some_and(EntityInstance::is_empty) {
            self.entities.remove(id);
            b.ops.push(WriteOp::DeleteEntity(id.to_owned()));
        }
    }

    /// A batch was abandoned, failed, or its stream went away: its operations go back to
    /// the front of the queue (they keep their sequence numbers, so their order).
    pub(super) fn requeue_entity_batch(&mut self, id: &str, token: &str) {
        let Some(entity) = self.entities.get_mut(id) else {
            return;
        };
        let Some(flight) = entity.in_flight.take_if(|f| f.token == token) else {
            return;
        };
        entity.queue.extend(flight.ops);
        if !entity.queued {
            entity.queued = true;
            self.entity_ready.push_front(id.to_owned());
        }
    }

    /// Records a lock request and grants what can be granted.
    pub(super) fn request_lock(&mut self, b: &mut Batch, mut rec: LockRequestRecord) {
        rec.lock_set = rec
            .lock_set
            .iter()
            .filter_map(|id| canonical_entity_id(id).ok())
            .collect();
        rec.lock_set.sort();
        rec.lock_set.dedup();
        rec.order = self.next_lock_order;
        self.next_lock_order += 1;
        b.ops.push(WriteOp::PutLockRequest(Box::new(rec.clone())));
        self.lock_requests.push(rec);
        self.grant_locks(b);
    }

    /// Grants, first come first served, every waiting request whose entities are all free
    /// (unlocked and not running a batch): all of a set at once, so sections never deadlock.
    pub(super) fn grant_locks(&mut self, b: &mut Batch) {
        let mut index = 0;
        while index < self.lock_requests.len() {
            let request = &self.lock_requests[index];
            // A holder in another partition counts as live: when it ends, its release arrives.
            let holder_live = !self.is_local(&request.holder)
                || self
                    .instances
                    .get(&request.holder)
                    .is_some_and(|i| !is_terminal(i.rec.status));
            let free = request.lock_set.iter().all(|id| {
                self.entities
                    .get(id)
                    .is_none_or(|e| e.rec.locked_by.is_none() && e.in_flight.is_none())
            });
            if holder_live && !free {
                index += 1;
                continue;
            }
            let request = self.lock_requests.remove(index);
            b.ops.push(WriteOp::DeleteLockRequest(
                request.critical_section_id.clone(),
            ));
            if holder_live {
                self.lock(b, request);
            }
        }
    }

    fn lock(&mut self, b: &mut Batch, request: LockRequestRecord) {
        for id in &request.lock_set {
            let entity = self.entity_or_new(b, id);
            entity.rec.locked_by = Some(request.critical_section_id.clone());
            entity.rec.lock_holder = Some(request.holder.clone());
            b.ops.push(WriteOp::PutEntity(Box::new(entity.rec.clone())));
            self.note_entity_change(b, id);
        }
        self.locks_by_holder
            .entry(request.holder.clone())
            .or_default()
            .extend(request.lock_set.iter().cloned());
        let granted = event(
            -1,
            EventType::EntityLockGranted(proto::EntityLockGrantedEvent {
                critical_section_id: request.critical_section_id,
            }),
        );
        self.deliver(b, Outbound::Event(request.holder, Box::new(granted)));
    }

    /// Releases an entity's lock if critical section `section` holds it.
    pub(super) fn unlock_entity(&mut self, b: &mut Batch, id: &str, section: &str) {
        let Ok(id) = canonical_entity_id(id) else {
            return;
        };
        let Some(entity) = self.entities.get_mut(&id) else {
            return;
        };
        if entity.rec.locked_by.as_deref() != Some(section) {
            return;
        }
        self.clear_lock(b, &id);
        self.grant_locks(b);
    }

    fn clear_lock(&mut self, b: &mut Batch, id: &str) {
        let Some(entity) = self.entities.get_mut(id) else {
            return;
        };
        entity.rec.locked_by = None;
        if let Some(holder) = entity.rec.lock_holder.take() {
            if let Some(held) = self.locks_by_holder.get_mut(&holder) {
                held.remove(id);
                if held.is_empty() {
                    self.locks_by_holder.remove(&holder);
                }
            }
        }
        b.ops.push(WriteOp::PutEntity(Box::new(entity.rec.clone())));
        self.note_entity_change(b, id);
        self.mark_entity_ready(b, id);
        self.drop_entity_if_empty(b, id);
    }

    /// The orchestration ended (or started a new generation): every lock it holds is
    /// released and its waiting lock requests are dropped.
    pub(super) fn release_locks_of(&mut self, b: &mut Batch, holder: &str) {
        let held: Vec<String> = self
            .locks_by_holder
            .remove(holder)
            .map(|set| set.into_iter().collect())
            .unwrap_or_default();
        for id in &held {
            if let Some(entity) = self.entities.get_mut(id) {
                entity.rec.lock_holder = None;
            }
            self.clear_lock(b, id);
        }
        let before = self.lock_requests.len();
        self.lock_requests.retain(|r| {
            let mine = r.holder == holder;
            if mine {
                b.ops
                    .push(WriteOp::DeleteLockRequest(r.critical_section_id.clone()));
            }
            !mine
        });
        if !held.is_empty() || before != self.lock_requests.len() {
            self.grant_locks(b);
        }
    }
}

/// Hands entity batches to workers: one batch in flight per entity; while an entity is
/// locked, only the lock holder's calls are taken from its queue.
pub(super) fn pump_entities(st: &mut State, durable: u64) {
    let mut keep = std::collections::VecDeque::new();
    while let Some(id) = st.entity_ready.pop_front() {
        let Some(entity) = st.entities.get_mut(&id) else {
            continue;
        };
        entity.queued = false;
        if entity.in_flight.is_some() || entity.queue.is_empty() {
            continue;
        }
        if entity.ready_seq > durable {
            entity.queued = true;
            keep.push_back(id);
            continue;
        }
        let holder = entity.rec.lock_holder.clone();
        let runnable = entity
            .queue
            .values()
            .any(|ev| holder.as_deref().is_none_or(|h| runs_while_locked(ev, h)));
        if !runnable {
            // Waiting for the lock holder; an unlock or a call from the holder requeues it.
            continue;
        }
        let Some(stream) = pick_stream(st, WorkKind::Entity, entity_name(&id), None) else {
            if let Some(entity) = st.entities.get_mut(&id) {
                entity.queued = true;
            }
            keep.push_back(id);
            if !any_room(st, WorkKind::Entity) {
                break;
            }
            continue;
        };
        dispatch_entity(st, &id, stream, holder.as_deref());
    }
    while let Some(id) = keep.pop_back() {
        st.entity_ready.push_front(id);
    }
}

fn dispatch_entity(st: &mut State, id: &str, stream: u64, holder: Option<&str>) {
    let token = st.new_token();
    let Some(entity) = st.entities.get_mut(id) else {
        return;
    };
    let mut taken = Vec::new();
    let mut bytes = 0;
    for (seq, ev) in &entity.queue {
        if holder.is_some_and(|h| !runs_while_locked(ev, h)) {
            continue;
        }
        let size = ev.encoded_len();
        if !taken.is_empty()
            && (taken.len() >= MAX_BATCH_OPERATIONS || bytes + size > MAX_BATCH_BYTES)
        {
            break;
        }
        bytes += size;
        taken.push(*seq);
    }
    let ops: Vec<(u64, HistoryEvent)> = taken
        .into_iter()
        .filter_map(|seq| entity.queue.remove(&seq).map(|ev| (seq, ev)))
        .collect();
    let request = proto::EntityRequest {
        instance_id: id.to_owned(),
        execution_id: entity.rec.execution_id.clone(),
        entity_state: entity.rec.state.clone(),
        operation_requests: ops.iter().map(|(_, ev)| ev.clone()).collect(),
    };
    entity.in_flight = Some(EntityInFlight {
        token: token.clone(),
        ops,
    });
    st.tokens.insert(
        token.clone(),
        Dispatched::Entity {
            entity_id: id.to_owned(),
            stream,
        },
    );
    let item = WorkItem {
        request: Some(work_item::Request::EntityRequestV2(request)),
        completion_token: token,
    };
    send(st, stream, item, WorkKind::Entity);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_are_canonical() {
        assert_eq!(canonical_entity_id("@Counter@A").unwrap(), "@counter@A");
        assert_eq!(canonical_entity_id("@c@k@x").unwrap(), "@c@k@x");
        for bad in ["counter", "@counter", "@@k", "@c@"] {
            let err = canonical_entity_id(bad).unwrap_err();
            assert!(err.contains("@name@key"), "{err}");
        }
        assert_eq!(entity_name("@counter@k"), "counter");
    }
}
