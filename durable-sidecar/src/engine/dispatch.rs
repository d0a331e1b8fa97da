//! Dispatch to worker streams: connected `GetWorkItems` streams, handing durable work to the
//! streams with free capacity that accept it (round robin), completion tokens, and taking work
//! back when a worker abandons it or its stream ends.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use prost::Message;
use tonic::Status;

use super::batch::Batch;
use super::entities::pump_entities;
use super::state::{Dispatched, InFlight, Instance, State};
use super::{Engine, event};
use crate::MAX_MESSAGE_BYTES;
use crate::proto::{
    self, ExecutionCompletedEvent, HistoryEvent, OrchestrationStatus, OrchestratorRequest,
    TaskFailureDetails, WorkItem, history_event::EventType, work_item,
};
use crate::storage::WriteOp;
use crate::time::{from_ms, now_ms};
use crate::work_queue::{WorkKind, WorkStream};

use super::is_terminal;
use super::routing::Outbound;

/// The receive limit gRPC clients keep by default (the official SDKs' workers among them). A
/// work item over it that was on a closing stream is suspected of being refused by the worker.
pub(super) const COMMON_RECEIVE_LIMIT: usize = 4 * 1024 * 1024;

/// How many deliveries of a suspected work item end with the stream closing before it is
/// failed. The worker's reconnect delay spaces them out.
const MAX_FAILED_DELIVERIES: u32 = 3;

/// The longest history an orchestration may have to get its next episode before the step
/// that made it ready is durable (see [`Engine::pump`]), unless the worker holds its replay
/// state (`Instance::held`): replaying a longer history costs more than waiting for the
/// commit, during which more events gather for the episode.
const EARLY_MAX_HISTORY: usize = 1_000;

impl Engine {
    /// Connects a worker stream; returns its id.
    pub(crate) fn add_stream(&self, stream: WorkStream) -> Result<u64, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let id = st.next_stream;
        st.next_stream += 1;
        st.streams.insert(id, stream);
        self.pump(&mut st);
        Ok(id)
    }

    /// A worker stream ended: everything it had in flight goes back to the queues, except work
    /// items too large for common receive limits that were on closing streams
    /// `MAX_FAILED_DELIVERIES` times: a worker refusing them would otherwise get them back
    /// after every reconnect, and everything queued behind them would wait forever.
    pub(crate) fn remove_stream(&self, stream: u64) {
        let mut st = self.lock();
        st.streams.remove(&stream);
        st.revoked.retain(|_, s| *s != stream);
        let lost: Vec<(String, Dispatched)> = st
            .tokens
            .iter()
            .filter(|(_, d)| d.stream() == stream)
            .map(|(t, d)| (t.clone(), d.clone()))
            .collect();
        let mut undeliverable = Vec::new();
        for (token, d) in lost {
            if let Some(bytes) = st.count_failed_delivery(&token, &d) {
                undeliverable.push((d, bytes));
            }
            st.abandon(&token);
        }
        for (d, bytes) in undeliverable {
            self.give_up_delivery(&mut st, &d, bytes);
        }
        self.pump(&mut st);
    }

    /// Fails work that no worker could receive: an orchestration ends FAILED, an activity's
    /// task fails in its orchestration. Both say how large the item was and what to change.
    fn give_up_delivery(&self, st: &mut State, d: &Dispatched, bytes: usize) {
        let what = match d {
            Dispatched::Orchestration { .. } => "orchestration work item (history and new events)",
            Dispatched::Activity { .. } => "activity work item (its input)",
            Dispatched::Entity { .. } => return,
        };
        let failure = TaskFailureDetails {
            error_type: "WorkItemTooLarge".into(),
            error_message: format!(
                "the {what} is {bytes} bytes; workers closed their stream each of the \
                 {MAX_FAILED_DELIVERIES} times it was sent, as gRPC clients do for messages over \
                 their receive limit (4 MiB by default): keep payloads small (store large data \
                 elsewhere and pass a reference), bound history with continue-as-new, or raise \
                 the workers' receive limit"
            ),
            ..Default::default()
        };
        match d {
            Dispatched::Orchestration { instance_id, .. } => {
                self.fail_for_size(st, instance_id, failure);
            }
            Dispatched::Activity { key, .. } => {
                tracing::error!("{}", failure.error_message);
                if let Some(b) = self.finish_activity(st, *key, Err(failure)) {
                    self.submit_quietly(b);
                }
            }
            Dispatched::Entity { .. } => {}
        }
    }

    /// `Abandon*WorkItem`: puts the work named by `token` back in its queue.
    pub(crate) fn abandon(&self, token: &str, kind: WorkKind) -> Result<(), Status> {
        let mut st = self.lock();
        let Some(d) = st.dispatched(token, kind)? else {
            return Ok(());
        };
        if d.kind() != kind {
            return Err(d.not_a(kind));
        }
        st.abandon(token);
        self.pump(&mut st);
        Ok(())
    }

    /// Hands ready work to workers with free capacity once it is durable; to a worker in this
    /// process, orchestration episodes as soon as they are ready (an episode's completion
    /// commits after what made it ready, batches commit in order, and nothing of it goes out
    /// before that: the writer waits briefly for it so both share a commit).
    pub(super) fn pump(&self, st: &mut State) {
        self.count_early_answers(st);
        self.wake_durable(st);
        if st.streams.is_empty() || st.closing || self.signal.failure().is_some() {
            return;
        }
        let durable = self.signal.durable_seq.load(Ordering::SeqCst);
        if any_room(st, WorkKind::Orchestration) {
            self.pump_orchestrations(st, durable);
        }
        if any_room(st, WorkKind::Activity) {
            pump_activities(st, durable);
        }
        if any_room(st, WorkKind::Entity) {
            pump_entities(st, durable);
        }
    }

    /// Passes on to the writer how many early dispatches were answered and how fast. Called
    /// after the answers' batches were submitted, so the writer finds them when it sees the
    /// count.
    pub(super) fn count_early_answers(&self, st: &mut State) {
        let answered = std::mem::take(&mut st.early_answered);
        if answered > 0 {
            let waited = std::mem::take(&mut st.early_waited);
            self.signal.early_answers(answered, waited);
        }
    }

    fn pump_orchestrations(&self, st: &mut State, durable: u64) {
        let now = now_ms();
        let mut keep = VecDeque::new();
        while let Some(id) = st.ready.pop_front() {
            let Some(inst) = st.instances.get_mut(&id) else {
                continue;
            };
            inst.queued = false;
            if !dispatchable(inst, now) {
                continue;
            }
            let early = inst.ready_seq > durable;
            if early && inst.held.is_none() && inst.history.len() > EARLY_MAX_HISTORY {
                // A long history to replay: waiting for the commit costs less.
                inst.queued = true;
                keep.push_back(id);
                continue;
            }
            let (name, version) = (inst.rec.name.clone(), inst.rec.version.clone());
            let picked = pick_stream(st, WorkKind::Orchestration, &name, version.as_deref());
            let Some(stream) =
                picked.filter(|s| !early || st.streams.get(s).is_some_and(|s| s.in_process))
            else {
                if let Some(inst) = st.instances.get_mut(&id) {
                    inst.queued = true;
                }
                keep.push_back(id);
                if !any_room(st, WorkKind::Orchestration) {
                    break;
                }
                continue;
            };
            self.dispatch_orchestration(st, &id, stream, now, early);
        }
        // Put the skipped entries back in front, in order: O(skipped), not O(queue).
        while let Some(id) = keep.pop_back() {
            st.ready.push_front(id);
        }
    }

    /// Sends an instance's next episode on `stream`; `early` when the batch that made it
    /// ready is not durable yet.
    fn dispatch_orchestration(&self, st: &mut State, id: &str, stream: u64, now: i64, early: bool) {
        let token = st.new_token();
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        let mut new_events = Vec::with_capacity(inst.inbox.len() + 1);
        new_events.push(HistoryEvent {
            event_id: -1,
            timestamp: Some(from_ms(now)),
            event_type: Some(EventType::OrchestratorStarted(
                proto::OrchestratorStartedEvent {},
            )),
        });
        new_events.extend(inst.inbox.iter().map(|(_, e)| e.clone()));
        let up_to_seq = inst.inbox.back().map(|(s, _)| *s);
        // The worker that ran the previous episode on this stream holds the history it saw.
        let held = inst
            .held
            .take()
            .filter(|h| h.stream == stream && h.events <= inst.history.len())
            .map(|h| h.events);
        let mut request = OrchestratorRequest {
            instance_id: id.to_string(),
            execution_id: Some(inst.rec.execution_id.clone()),
            past_events: inst.history[held.unwrap_or(0)..].to_vec(),
            new_events: new_events.clone(),
            orchestration_trace_context: inst.rec.orchestration_trace_context.clone(),
            ..Default::default()
        };
        if let Some(events) = held {
            request.set_held_events(events);
        }
        // A work item over the message limit would fail on the worker's side and make it
        // reconnect forever: stream the history to workers that can fetch it, fail otherwise.
        // Workers that stream history get it streamed from the common receive limit on.
        let size = item_len(&request, &token);
        let streaming = st.streams.get(&stream).is_some_and(|s| s.history_streaming);
        if size > MAX_MESSAGE_BYTES || (streaming && size > COMMON_RECEIVE_LIMIT) {
            request.past_events.clear();
            if !streaming || item_len(&request, &token) > MAX_MESSAGE_BYTES {
                self.fail_oversized(st, id, size);
                return;
            }
            request.requires_history_streaming = true;
            // A worker that streams history gets all of it.
            request.properties.remove(proto::HELD_EVENTS_PROPERTY);
        }
        let Some(inst) = st.instances.get_mut(id) else {
            return;
        };
        inst.in_flight = Some(InFlight {
            token: token.clone(),
            up_to_seq,
            new_events,
            history_len: inst.history.len(),
            bytes: item_len(&request, &token),
            since: std::time::Instant::now(),
        });
        inst.partial.clear();
        inst.partial_bytes = 0;
        st.tokens.insert(
            token.clone(),
            Dispatched::Orchestration {
                instance_id: id.to_string(),
                stream,
                early: early.then(std::time::Instant::now),
            },
        );
        if early {
            self.signal.early_dispatched.fetch_add(1, Ordering::SeqCst);
        }
        let item = WorkItem {
            request: Some(work_item::Request::OrchestratorRequest(request)),
            completion_token: token,
        };
        send(st, stream, item, WorkKind::Orchestration);
    }

    /// Fails an instance whose next work item cannot fit in one gRPC message.
    fn fail_oversized(&self, st: &mut State, id: &str, size: usize) {
        let failure = TaskFailureDetails {
            error_type: "HistoryTooLarge".into(),
            error_message: format!(
                "history of {size} bytes exceeds the 16 MiB message limit; use continue-as-new to bound history"
            ),
            ..Default::default()
        };
        self.fail_for_size(st, id, failure);
    }

    /// Fails an instance that grew past a size limit (no episode of it is in flight).
    pub(super) fn fail_for_size(&self, st: &mut State, id: &str, failure: TaskFailureDetails) {
        tracing::error!(instance_id = id, "{}", failure.error_message);
        let mut b = self.begin(st);
        let end = ExecutionCompletedEvent {
            orchestration_status: OrchestrationStatus::Failed as i32,
            result: None,
            failure_details: Some(failure),
        };
        let outbound = st.end_without_episode(&mut b, id, Vec::new(), end);
        self.run_outbound(st, &mut b, outbound);
        // Called from `pump`: submit without pumping again; the commit signal pumps.
        self.submit_quietly(b);
    }
}

impl State {
    /// Ends a live instance in the sidecar, without a worker episode: appends `events` and
    /// the completion to its history, drops its inbox and queued work, and returns what must
    /// follow (its parent's notice, its entity locks released). Any episode in flight is
    /// revoked. For instances no worker can take.
    pub(super) fn end_without_episode(
        &mut self,
        b: &mut Batch,
        id: &str,
        mut events: Vec<HistoryEvent>,
        end: ExecutionCompletedEvent,
    ) -> Vec<Outbound> {
        let in_flight = self
            .instances
            .get(id)
            .and_then(|i| i.in_flight.as_ref())
            .map(|f| f.token.clone());
        if let Some(token) = in_flight {
            self.revoke(&token);
        }
        let Some(inst) = self.instances.get_mut(id) else {
            return Vec::new();
        };
        let locks = inst.may_hold_entity_locks();
        let now = now_ms();
        inst.in_flight = None;
        inst.rec.status = end.orchestration_status;
        inst.rec.failure_details.clone_from(&end.failure_details);
        inst.rec.output.clone_from(&end.result);
        inst.rec.completed_ms = Some(now);
        inst.rec.updated_ms = now;
        inst.rec.force_dispatch = false;
        if inst.history.is_empty() {
            // It never ran: its start event is still in the inbox, and stays in the history.
            let started = inst
                .inbox
                .iter()
                .map(|(_, e)| e)
                .find(|e| matches!(e.event_type, Some(EventType::ExecutionStarted(_))));
            events.splice(0..0, started.cloned());
        }
        events.push(event(-1, EventType::ExecutionCompleted(end)));
        b.ops.push(WriteOp::AppendHistory {
            instance_id: id.to_string(),
            start_index: inst.history.len() as u64,
            events: events.iter().map(Message::encode_to_vec).collect(),
        });
        inst.history.extend(events);
        inst.inbox.clear();
        b.ops.push(WriteOp::ClearInbox(id.to_string()));
        b.put_instance(&inst.rec);
        self.drop_pending_work(b, id);
        self.notify_waiters(b, id);
        let mut outbound = vec![Outbound::NotifyParent(id.to_string())];
        if locks {
            outbound.push(Outbound::ReleaseLocks(id.to_string()));
        }
        outbound
    }

    /// The work item a completion or abandon call for `kind` names; `None` when it was
    /// revoked (the call is then accepted and ignored). Refused, saying why, when the token is
    /// empty or names nothing in flight (completed already, or taken back when the worker's
    /// stream closed: the work runs again elsewhere). The caller checks the kind.
    pub(super) fn dispatched(
        &mut self,
        token: &str,
        kind: WorkKind,
    ) -> Result<Option<Dispatched>, Status> {
        if token.is_empty() {
            return Err(Status::invalid_argument(format!(
                "completionToken is empty: echo the completionToken of the {} work item",
                kind.name()
            )));
        }
        if self.revoked.remove(token).is_some() {
            return Ok(None);
        }
        let Some(d) = self.tokens.get(token) else {
            return Err(Status::not_found(format!(
                "no {} work item is in flight under this completionToken: it was completed or abandoned already, or taken back when its worker's stream closed (it runs again on a connected worker)",
                kind.name()
            )));
        };
        Ok(Some(d.clone()))
    }

    /// Takes back work whose result no longer matters (its instance was replaced, terminated
    /// before it ran, or the task hub deleted) and frees its slot: a late completion under
    /// `token` is accepted and ignored, not refused.
    pub(super) fn revoke(&mut self, token: &str) {
        if let Some(d) = self.release_token(token) {
            self.revoked.insert(token.to_owned(), d.stream());
        }
    }

    /// Removes a dispatch token and frees its slot on the stream it was sent on. Every token
    /// leaves `tokens` through here, so a stream's in-flight counts never leak.
    pub(super) fn release_token(&mut self, token: &str) -> Option<Dispatched> {
        let d = self.tokens.remove(token)?;
        let (stream, kind) = match &d {
            Dispatched::Orchestration { stream, early, .. } => {
                if let Some(at) = early {
                    self.early_answered += 1;
                    self.early_waited += at.elapsed();
                }
                (stream, WorkKind::Orchestration)
            }
            Dispatched::Activity { stream, .. } => (stream, WorkKind::Activity),
            Dispatched::Entity { stream, .. } => (stream, WorkKind::Entity),
        };
        if let Some(s) = self.streams.get_mut(stream) {
            s.free_slot(kind);
        }
        Some(d)
    }

    /// Counts a delivery of the work under `token` that ended with its stream closing, when
    /// the item is over `COMMON_RECEIVE_LIMIT` (smaller items are not suspected: streams
    /// close for many reasons). Returns the item's size once it reached
    /// `MAX_FAILED_DELIVERIES`.
    fn count_failed_delivery(&mut self, token: &str, d: &Dispatched) -> Option<usize> {
        let (failed, bytes) = match d {
            Dispatched::Orchestration { instance_id, .. } => {
                let inst = self.instances.get_mut(instance_id)?;
                let bytes = inst.in_flight.as_ref().filter(|f| f.token == token)?.bytes;
                (&mut inst.failed_deliveries, bytes)
            }
            Dispatched::Activity { key, .. } => {
                let a = self.activities.get_mut(key)?;
                let bytes = a.request.encoded_len() + token.len();
                (&mut a.failed_deliveries, bytes)
            }
            Dispatched::Entity { .. } => return None,
        };
        if bytes <= COMMON_RECEIVE_LIMIT {
            return None;
        }
        *failed += 1;
        tracing::warn!(
            "a work item of {bytes} bytes was on a worker stream that closed without completing it ({} of {MAX_FAILED_DELIVERIES}); workers often refuse messages over 4 MiB",
            *failed
        );
        (*failed >= MAX_FAILED_DELIVERIES).then_some(bytes)
    }

    /// Puts the work of a token back at the front of its queue.
    pub(super) fn abandon(&mut self, token: &str) -> bool {
        let Some(d) = self.release_token(token) else {
            return false;
        };
        self.metrics.abandoned(d.kind());
        match d {
            Dispatched::Orchestration { instance_id, .. } => {
                if let Some(inst) = self.instances.get_mut(&instance_id) {
                    if inst.in_flight.as_ref().is_some_and(|f| f.token == token) {
                        inst.in_flight = None;
                        inst.partial.clear();
                        inst.partial_bytes = 0;
                        if !inst.queued {
                            inst.queued = true;
                            self.ready.push_front(instance_id);
                        }
                    }
                }
            }
            Dispatched::Activity { key, .. } => {
                if let Some(a) = self.activities.get_mut(&key) {
                    a.dispatched = None;
                    self.activity_queue.push_front(key);
                }
            }
            Dispatched::Entity { entity_id, .. } => self.requeue_entity_batch(&entity_id, token),
        }
        true
    }
}

fn pump_activities(st: &mut State, durable: u64) {
    let mut keep = VecDeque::new();
    while let Some(key) = st.activity_queue.pop_front() {
        let Some(a) = st.activities.get(&key) else {
            continue;
        };
        if a.dispatched.is_some() {
            continue;
        }
        if a.ready_seq > durable {
            keep.push_back(key);
            continue;
        }
        let (name, version) = (a.request.name.clone(), a.request.version.clone());
        let Some(stream) = pick_stream(st, WorkKind::Activity, &name, version.as_deref()) else {
            keep.push_back(key);
            if !any_room(st, WorkKind::Activity) {
                break;
            }
            continue;
        };
        let token = st.new_token();
        let Some(a) = st.activities.get_mut(&key) else {
            continue;
        };
        a.dispatched = Some(token.clone());
        let item = WorkItem {
            request: Some(work_item::Request::ActivityRequest(a.request.clone())),
            completion_token: token.clone(),
        };
        st.tokens
            .insert(token, Dispatched::Activity { key, stream });
        send(st, stream, item, WorkKind::Activity);
    }
    while let Some(key) = keep.pop_back() {
        st.activity_queue.push_front(key);
    }
}

/// Whether an instance has work a worker should run now.
fn dispatchable(inst: &Instance, now: i64) -> bool {
    if inst.in_flight.is_some() || is_terminal(inst.rec.status) {
        return false;
    }
    if inst.inbox.is_empty() && !inst.rec.force_dispatch {
        return false;
    }
    // The inbox is scanned only for instances that wait (a large fan-in's inbox holds
    // thousands of results, and this runs on every pump).
    let has = |f: fn(&EventType) -> bool| {
        inst.inbox
            .iter()
            .any(|(_, e)| e.event_type.as_ref().is_some_and(f))
    };
    let terminating = || has(|e| matches!(e, EventType::ExecutionTerminated(_)));
    if inst.rec.status == OrchestrationStatus::Suspended as i32 {
        return terminating() || has(|e| matches!(e, EventType::ExecutionResumed(_)));
    }
    if inst.rec.scheduled_start_ms.is_some_and(|s| s > now) && inst.history.is_empty() {
        return terminating();
    }
    true
}

/// Encoded size of the work item that would carry `request` (an upper bound: field keys and
/// length prefixes are counted at their largest).
fn item_len(request: &OrchestratorRequest, token: &str) -> usize {
    request.encoded_len() + token.len() + 2 * (1 + 10)
}

/// Whether any stream can take one more item of `kind`.
pub(super) fn any_room(st: &State, kind: WorkKind) -> bool {
    st.streams.values().any(|s| s.has_room(kind))
}

/// The next stream (round robin) with room for `kind` that accepts `name`.
pub(super) fn pick_stream(
    st: &mut State,
    kind: WorkKind,
    name: &str,
    version: Option<&str>,
) -> Option<u64> {
    let start = st.rr;
    let found = st
        .streams
        .range(start..)
        .chain(st.streams.range(..start))
        .find(|(_, s)| s.has_room(kind) && s.accepts(kind, name, version))
        .map(|(id, _)| *id);
    if let Some(id) = found {
        st.rr = id.wrapping_add(1);
    }
    found
}

/// Sends a work item on a stream, counting it in flight there.
pub(super) fn send(st: &mut State, stream: u64, item: WorkItem, kind: WorkKind) {
    if let Some(s) = st.streams.get_mut(&stream) {
        s.take_slot(kind);
        s.last_send.store(now_ms(), Ordering::Relaxed);
        st.metrics.dispatched(kind);
        // A failed send means the stream is going away; its drop guard requeues the work.
        let _ = s.tx.send(Ok(item));
    }
}
