//! Episodes: what a worker's completion does to an instance. An orchestration episode commits
//! the delivered events and applies the returned actions in order (activities, timers,
//! sub-orchestrations, events, completion, continue-as-new, rewind); an activity result goes to
//! its orchestration's inbox.

use prost::Message;
use tonic::Status;

use super::batch::{Batch, CommitWait};
use super::lifecycle::NewInstance;
use super::routing::Outbound;
use super::state::{Activity, Dispatched, HeldHistory, InFlight, Instance, State, TimerEntry};
use super::{Engine, event, is_terminal, new_id};
use crate::proto::{
    self, HistoryEvent, OrchestrationInstance, OrchestrationStatus, ParentInstanceInfo,
    TaskFailureDetails, history_event::EventType, orchestrator_action::OrchestratorActionType,
};
use crate::storage::{ActivityRecord, LockRequestRecord, Storage, TimerRecord, WriteOp};
use crate::time::{from_ms, given_ms, now_ms, to_ms};
use crate::work_queue::WorkKind;

/// The most an episode's `isPartial` chunks may add up to (4 messages of 16 MiB).
const MAX_PARTIAL_BYTES: usize = 4 * crate::MAX_MESSAGE_BYTES;

impl Engine {
    /// `CompleteActivityTask`: delivers an activity's result to its orchestration.
    pub(crate) fn complete_activity(
        &self,
        resp: proto::ActivityResponse,
    ) -> Result<Option<CommitWait>, Status> {
        let mut st = self.lock();
        let token = resp.completion_token.clone();
        let Some(d) = st.dispatched(&token, WorkKind::Activity)? else {
            return Ok(None);
        };
        let Dispatched::Activity { key, .. } = d else {
            return Err(d.not_a(WorkKind::Activity));
        };
        st.release_token(&token);
        st.metrics.completed(WorkKind::Activity);
        let outcome = match resp.failure_details {
            Some(failure) => Err(failure),
            None => Ok(resp.result),
        };
        let Some(b) = self.finish_activity(&mut st, key, outcome) else {
            // The instance went terminal or was purged meanwhile: nothing to deliver.
            self.pump(&mut st);
            return Ok(None);
        };
        Ok(Some(self.submit(&mut st, b)))
    }

    /// Removes activity `key` (no longer dispatched) and, when its orchestration still waits
    /// for it, delivers its result or failure; `None` when the activity is gone already.
    pub(super) fn finish_activity(
        &self,
        st: &mut State,
        key: u64,
        outcome: Result<Option<String>, TaskFailureDetails>,
    ) -> Option<Batch> {
        let activity = st.activities.remove(&key)?;
        let mut b = self.begin(st);
        b.ops.push(WriteOp::DeleteActivity(key));
        let target = activity.request.orchestration_instance.unwrap_or_default();
        let live = st.instances.get(&target.instance_id).is_some_and(|i| {
            !is_terminal(i.rec.status)
                && target
                    .execution_id
                    .as_ref()
                    .is_none_or(|e| *e == i.rec.execution_id)
        });
        if live {
            let task_scheduled_id = activity.request.task_id;
            let ty = match outcome {
                Err(failure) => EventType::TaskFailed(proto::TaskFailedEvent {
                    task_scheduled_id,
                    failure_details: Some(failure),
                }),
                Ok(result) => EventType::TaskCompleted(proto::TaskCompletedEvent {
                    task_scheduled_id,
                    result,
                }),
            };
            st.push_inbox(&mut b, &target.instance_id, event(-1, ty));
        }
        Some(b)
    }

    /// `CompleteOrchestratorTask`: commits an episode and applies its actions.
    pub(crate) fn complete_orchestration(
        &self,
        resp: proto::OrchestratorResponse,
    ) -> Result<Option<CommitWait>, Status> {
        let mut st = self.lock();
        let token = resp.completion_token.clone();
        if resp.is_partial && st.revoked.contains_key(&token) {
            // Revoked work: every chunk is ignored; the last one forgets the token.
            return Ok(None);
        }
        let Some(d) = st.dispatched(&token, WorkKind::Orchestration)? else {
            return Ok(None);
        };
        let Dispatched::Orchestration {
            instance_id: id,
            stream,
            ..
        } = d
        else {
            return Err(d.not_a(WorkKind::Orchestration));
        };
        let current = st
            .instances
            .get(&id)
            .and_then(|i| i.in_flight.as_ref())
            .is_some_and(|f| f.token == token);
        if !current {
            // The instance was replaced or purged since dispatch: drop the stale result.
            st.release_token(&token);
            self.pump(&mut st);
            return Ok(None);
        }
        if resp.requires_history && !resp.is_partial && resp.actions.is_empty() {
            // The worker no longer holds the state its episode was to continue: send the
            // episode again, with the whole history.
            st.abandon(&token);
            self.pump(&mut st);
            return Ok(None);
        }
        if resp.is_partial {
            let Some(inst) = st.instances.get_mut(&id) else {
                return Ok(None);
            };
            inst.partial_bytes += resp.encoded_len();
            if inst.partial_bytes <= MAX_PARTIAL_BYTES {
                inst.partial.extend(resp.actions);
                return Ok(None);
            }
            // The chunks would pile up without bound: the instance fails instead.
            let total = inst.partial_bytes;
            inst.in_flight = None;
            st.release_token(&token);
            let message = format!(
                "the orchestration's chunked completion reached {total} bytes, over the {} MiB limit for one episode; schedule less per episode (continue-as-new, sub-orchestrations)",
                MAX_PARTIAL_BYTES >> 20
            );
            let failure = proto::TaskFailureDetails {
                error_type: "OrchestratorResponseTooLarge".into(),
                error_message: message.clone(),
                ..Default::default()
            };
            self.fail_for_size(&mut st, &id, failure);
            self.pump(&mut st);
            return Err(Status::resource_exhausted(message));
        }
        st.release_token(&token);
        let holder = st
            .streams
            .get(&stream)
            .is_some_and(|s| s.in_process)
            .then_some(stream);
        let mut b = self.begin(&mut st);
        let out = self.apply_episode(&mut st, &mut b, &id, resp, holder);
        self.run_outbound(&mut st, &mut b, out);
        st.mark_ready(&b, &id);
        st.notify_waiters(&b, &id);
        Ok(Some(self.submit(&mut st, b)))
    }

    /// Commits an episode's new events and applies its actions in order. `holder`: the
    /// in-process stream that ran it, whose worker keeps the replay state it reached.
    fn apply_episode(
        &self,
        st: &mut State,
        b: &mut Batch,
        id: &str,
        resp: proto::OrchestratorResponse,
        holder: Option<u64>,
    ) -> Vec<Outbound> {
        let next_key = &mut st.next_key;
        let Some(inst) = st.instances.get_mut(id) else {
            return Vec::new();
        };
        let Some(flight) = inst.in_flight.take() else {
            return Vec::new();
        };
        // A worker took its work item: whatever closed streams before, it is deliverable.
        inst.failed_deliveries = 0;
        st.metrics.completed(WorkKind::Orchestration);
        st.metrics.episode(flight.since.elapsed());
        let mut actions = std::mem::take(&mut inst.partial);
        inst.partial_bytes = 0;
        actions.extend(resp.actions);
        let now = now_ms();
        consume_delivered(inst, b, &flight);
        inst.rec.force_dispatch = false;
        inst.rec.custom_status = resp.custom_status;
        if resp.orchestration_trace_context.is_some() {
            inst.rec.orchestration_trace_context = resp.orchestration_trace_context;
        }
        inst.rec.updated_ms = now;
        if inst.rec.status == OrchestrationStatus::Pending as i32 {
            inst.rec.status = OrchestrationStatus::Running as i32;
        }
        let rewind = actions
            .iter()
            .find_map(|a| match &a.orchestrator_action_type {
                Some(OrchestratorActionType::RewindOrchestration(r)) => Some(r.new_history.clone()),
                _ => None,
            });
        if let Some(new_history) = rewind {
            return apply_rewind(st, self.storage.as_ref(), b, id, new_history);
        }

        let old_len = inst.history.len();
        // What the worker saw, if the history did not change while it ran the episode.
        let holder = holder.filter(|_| flight.history_len == old_len);
        inst.history.extend(flight.new_events);
        let applied = inst.history.len();
        let mut ep = Episode {
            exec_id: inst.rec.execution_id.clone(),
            inst,
            b,
            id,
            now,
            next_key,
            out: Vec::new(),
            new_timers: Vec::new(),
            new_activities: Vec::new(),
            finished: false,
            replaced: false,
        };
        for action in actions {
            if let Some(kind) = action.orchestrator_action_type {
                ep.apply(action.id, kind);
            }
        }
        ep.persist_history(old_len);
        // The worker applied the history it was sent and the new events: it holds that
        // much, unless the execution ended or started over.
        if !ep.replaced && !is_terminal(ep.inst.rec.status) {
            ep.inst.held = holder.map(|stream| HeldHistory {
                stream,
                events: applied,
            });
        }
        let Episode {
            out,
            new_timers,
            new_activities,
            ..
        } = ep;
        let seq = b.seq;
        let woke = !new_timers.is_empty();
        for rec in new_timers {
            st.timers
                .insert((rec.fire_at_ms, rec.key), TimerEntry::Fire(Box::new(rec)));
        }
        if woke {
            self.timer_wake.notify_one();
        }
        for (key, request) in new_activities {
            st.activities.insert(
                key,
                Activity {
                    request,
                    dispatched: None,
                    ready_seq: seq,
                    failed_deliveries: 0,
                },
            );
            st.activity_queue.push_back(key);
        }
        if st
            .instances
            .get(id)
            .is_some_and(|i| is_terminal(i.rec.status))
        {
            st.drop_pending_work(b, id);
        }
        out
    }
}

/// Removes the inbox entries the episode was given (they are now history).
fn consume_delivered(inst: &mut Instance, b: &mut Batch, flight: &InFlight) {
    if let Some(up_to) = flight.up_to_seq {
        while inst.inbox.front().is_some_and(|(s, _)| *s <= up_to) {
            inst.inbox.pop_front();
        }
        b.ops.push(WriteOp::DeleteInbox {
            instance_id: inst.rec.instance_id.clone(),
            up_to,
        });
    }
}

/// The worker rewrote the history (rewind): replace it, replay from scratch, rewind the failed
/// sub-orchestrations it had created, and start again the ones it still waits for that were
/// purged meanwhile (from their `SubOrchestrationInstanceCreated` events).
fn apply_rewind(
    st: &mut State,
    storage: &dyn Storage,
    b: &mut Batch,
    id: &str,
    new_history: Vec<HistoryEvent>,
) -> Vec<Outbound> {
    let Some(inst) = st.instances.get_mut(id) else {
        return Vec::new();
    };
    inst.history = new_history;
    if let Some(exec) = inst.history.iter().find_map(|e| match &e.event_type {
        Some(EventType::ExecutionStarted(s)) => s
            .orchestration_instance
            .as_ref()
            .and_then(|i| i.execution_id.clone()),
        _ => None,
    }) {
        inst.rec.execution_id = exec;
    }
    inst.rec.status = OrchestrationStatus::Running as i32;
    inst.rec.output = None;
    inst.rec.failure_details = None;
    inst.rec.completed_ms = None;
    inst.rec.force_dispatch = true;
    let created: Vec<(i32, proto::SubOrchestrationInstanceCreatedEvent)> = inst
        .history
        .iter()
        .filter_map(|e| match &e.event_type {
            Some(EventType::SubOrchestrationInstanceCreated(c)) => Some((e.event_id, c.clone())),
            _ => None,
        })
        .collect();
    let answered: Vec<i32> = inst
        .history
        .iter()
        .filter_map(|e| match &e.event_type {
            Some(EventType::SubOrchestrationInstanceCompleted(c)) => Some(c.task_scheduled_id),
            Some(EventType::SubOrchestrationInstanceFailed(f)) => Some(f.task_scheduled_id),
            _ => None,
        })
        .collect();
    let parent = ParentInstanceInfo {
        task_scheduled_id: -1,
        name: Some(inst.rec.name.clone()),
        version: inst.rec.version.clone(),
        orchestration_instance: Some(OrchestrationInstance {
            instance_id: id.to_string(),
            execution_id: Some(inst.rec.execution_id.clone()),
        }),
    };
    let reason = inst.history.iter().rev().find_map(|e| match &e.event_type {
        Some(EventType::ExecutionRewound(r)) => Some(r.reason.clone()),
        _ => None,
    });
    let events: Vec<Vec<u8>> = inst.history.iter().map(|e| e.encode_to_vec()).collect();
    b.ops.push(WriteOp::ReplaceHistory {
        instance_id: id.to_string(),
        events,
    });
    b.put_instance(&inst.rec);
    let mut out = Vec::new();
    for (task_id, created) in created {
        let child = created.instance_id.clone();
        // A failed child has usually left memory: bring it back to rewind it.
        let active = st.instances.contains_key(&child);
        let found = match st.hydrate(storage, b, &child) {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(instance_id = %child, error = %e, "cannot read a sub-orchestration to rewind it");
                continue;
            }
        };
        if !found {
            if !answered.contains(&task_id) {
                out.push(Outbound::CreateChild(
                    Box::new(NewInstance {
                        instance_id: child,
                        name: created.name,
                        version: created.version,
                        input: created.input,
                        execution_id: None,
                        scheduled_start_ms: None,
                        tags: created.tags,
                        parent: Some(ParentInstanceInfo {
                            task_scheduled_id: task_id,
                            ..parent.clone()
                        }),
                        parent_trace_context: created.parent_trace_context,
                    }),
                    id.to_string(),
                ));
            }
            continue;
        }
        let failed = st
            .instances
            .get(&child)
            .is_some_and(|c| c.rec.status == OrchestrationStatus::Failed as i32);
        if failed {
            st.prepare_rewind(b, &child, reason.clone().flatten());
        } else if !active {
            st.instances.remove(&child);
            st.departures += 1;
        }
    }
    out
}

/// Applying one episode's actions to its instance.
struct Episode<'a> {
    inst: &'a mut Instance,
    b: &'a mut Batch,
    id: &'a str,
    exec_id: String,
    now: i64,
    next_key: &'a mut u64,
    out: Vec<Outbound>,
    new_timers: Vec<TimerRecord>,
    new_activities: Vec<(u64, proto::ActivityRequest)>,
    /// A completion action was applied: later scheduling actions are ignored.
    finished: bool,
    /// Continue-as-new reset the history.
    replaced: bool,
}

impl Episode<'_> {
    fn apply(&mut self, aid: i32, kind: OrchestratorActionType) {
        match kind {
            OrchestratorActionType::ScheduleTask(a) if !self.finished => self.schedule_task(aid, a),
            OrchestratorActionType::CreateTimer(a) if !self.finished => self.create_timer(aid, a),
            OrchestratorActionType::CreateSubOrchestration(a) if !self.finished => {
                self.create_sub_orchestration(aid, a);
            }
            OrchestratorActionType::SendEvent(a) => self.send_event(aid, a),
            OrchestratorActionType::TerminateOrchestration(a) => {
                self.out.push(Outbound::Terminate {
                    target: a.instance_id,
                    output: a.reason,
                    recurse: a.recurse,
                });
            }
            OrchestratorActionType::CompleteOrchestration(a) if !self.finished => {
                if a.orchestration_status == OrchestrationStatus::ContinuedAsNew as i32 {
                    self.continue_as_new(a);
                } else {
                    self.complete(aid, a);
                }
            }
            OrchestratorActionType::SendEntityMessage(m) => self.entity_message(aid, m),
            _ => {}
        }
    }

    fn new_key(&mut self) -> u64 {
        let key = *self.next_key;
        *self.next_key += 1;
        key
    }

    fn schedule_task(&mut self, aid: i32, a: proto::ScheduleTaskAction) {
        self.inst.history.push(event(
            aid,
            EventType::TaskScheduled(proto::TaskScheduledEvent {
                name: a.name.clone(),
                version: a.version.clone(),
                input: a.input.clone(),
                parent_trace_context: a.parent_trace_context.clone(),
                tags: a.tags.clone(),
            }),
        ));
        let key = self.new_key();
        let request = proto::ActivityRequest {
            name: a.name,
            version: a.version,
            input: a.input,
            orchestration_instance: Some(OrchestrationInstance {
                instance_id: self.id.to_string(),
                execution_id: Some(self.exec_id.clone()),
            }),
            task_id: aid,
            parent_trace_context: a.parent_trace_context,
            tags: a.tags,
        };
        self.b
            .ops
            .push(WriteOp::PutActivity(Box::new(ActivityRecord {
                key,
                request: Some(request.clone()),
            })));
        self.new_activities.push((key, request));
    }

    fn create_timer(&mut self, aid: i32, a: proto::CreateTimerAction) {
        let fire_at = a.fire_at.unwrap_or_else(|| from_ms(self.now));
        self.inst.history.push(event(
            aid,
            EventType::TimerCreated(proto::TimerCreatedEvent {
                fire_at: Some(fire_at),
            }),
        ));
        let key = self.new_key();
        let rec = TimerRecord {
            key,
            instance_id: self.id.to_string(),
            execution_id: self.exec_id.clone(),
            fire_at_ms: to_ms(&fire_at),
            event: Some(HistoryEvent {
                event_id: -1,
                timestamp: None,
                event_type: Some(EventType::TimerFired(proto::TimerFiredEvent {
                    fire_at: Some(fire_at),
                    timer_id: aid,
                })),
            }),
        };
        self.b.ops.push(WriteOp::PutTimer(Box::new(rec.clone())));
        self.new_timers.push(rec);
    }

    fn create_sub_orchestration(&mut self, aid: i32, a: proto::CreateSubOrchestrationAction) {
        let id = self.id;
        let child_id = if a.instance_id.is_empty() {
            format!("{id}:{aid:04x}")
        } else {
            a.instance_id.clone()
        };
        self.inst.history.push(event(
            aid,
            EventType::SubOrchestrationInstanceCreated(
                proto::SubOrchestrationInstanceCreatedEvent {
                    instance_id: child_id.clone(),
                    name: a.name.clone(),
                    version: a.version.clone(),
                    input: a.input.clone(),
                    parent_trace_context: a.parent_trace_context.clone(),
                    tags: a.tags.clone(),
                },
            ),
        ));
        let parent = ParentInstanceInfo {
            task_scheduled_id: aid,
            name: Some(self.inst.rec.name.clone()),
            version: self.inst.rec.version.clone(),
            orchestration_instance: Some(OrchestrationInstance {
                instance_id: id.to_string(),
                execution_id: Some(self.exec_id.clone()),
            }),
        };
        self.out.push(Outbound::CreateChild(
            Box::new(NewInstance {
                instance_id: child_id,
                name: a.name,
                version: a.version,
                input: a.input,
                execution_id: None,
                scheduled_start_ms: None,
                tags: a.tags,
                parent: Some(parent),
                parent_trace_context: a.parent_trace_context,
            }),
            id.to_string(),
        ));
    }

    fn send_event(&mut self, aid: i32, a: proto::SendEventAction) {
        let target = a.instance.map(|i| i.instance_id).unwrap_or_default();
        if !self.finished {
            self.inst.history.push(event(
                aid,
                EventType::EventSent(proto::EventSentEvent {
                    instance_id: target.clone(),
                    name: a.name.clone(),
                    input: a.data.clone(),
                }),
            ));
        }
        let ev = event(
            -1,
            EventType::EventRaised(proto::EventRaisedEvent {
                name: a.name,
                input: a.data,
            }),
        );
        if target == self.id {
            self.inst.append_inbox(self.b, ev);
        } else {
            self.out.push(Outbound::Event(target, Box::new(ev)));
        }
    }

    /// A signal, call, lock request or unlock: confirmed in history (unless the
    /// orchestration already completed in this episode) and routed to the entities.
    fn entity_message(&mut self, aid: i32, message: proto::SendEntityMessageAction) {
        use proto::send_entity_message_action::EntityMessageType as M;
        let Some(message) = message.entity_message_type else {
            return;
        };
        let (confirmation, outbound) = match message {
            M::EntityOperationSignaled(s) => {
                let at_ms = given_ms(s.scheduled_time.as_ref());
                let target = s.target_instance_id.clone().unwrap_or_default();
                let op = event(-1, EventType::EntityOperationSignaled(s.clone()));
                (
                    EventType::EntityOperationSignaled(s),
                    Outbound::EntityOp {
                        target,
                        event: Box::new(op),
                        at_ms,
                    },
                )
            }
            M::EntityOperationCalled(mut c) => {
                c.parent_instance_id
                    .get_or_insert_with(|| self.id.to_string());
                if c.parent_execution_id.as_deref().is_none_or(str::is_empty) {
                    c.parent_execution_id = Some(self.exec_id.clone());
                }
                let target = c.target_instance_id.clone().unwrap_or_default();
                let op = event(-1, EventType::EntityOperationCalled(c.clone()));
                (
                    EventType::EntityOperationCalled(c),
                    Outbound::EntityOp {
                        target,
                        event: Box::new(op),
                        at_ms: None,
                    },
                )
            }
            M::EntityLockRequested(l) => {
                let holder = l
                    .parent_instance_id
                    .clone()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| self.id.to_string());
                let request = LockRequestRecord {
                    critical_section_id: l.critical_section_id.clone(),
                    holder,
                    lock_set: l.lock_set.clone(),
                    order: 0,
                };
                (
                    EventType::EntityLockRequested(l),
                    Outbound::LockRequest(Box::new(request)),
                )
            }
            M::EntityUnlockSent(u) => {
                let unlock = Outbound::Unlock {
                    target: u.target_instance_id.clone().unwrap_or_default(),
                    section: u.critical_section_id.clone(),
                };
                (EventType::EntityUnlockSent(u), unlock)
            }
        };
        if !self.finished {
            self.inst.history.push(event(aid, confirmation));
        }
        self.out.push(outbound);
    }

    /// New generation: fresh history, carry-over and waiting events first.
    fn continue_as_new(&mut self, a: proto::CompleteOrchestrationAction) {
        let locks = self.inst.may_hold_entity_locks();
        // The new generation continues the trace the instance was started in, in a span of
        // its own.
        let parent_trace_context = self.inst.history.iter().find_map(|e| match &e.event_type {
            Some(EventType::ExecutionStarted(s)) => s.parent_trace_context.clone(),
            _ => None,
        });
        let rec = &mut self.inst.rec;
        rec.orchestration_trace_context = None;
        let new_exec = new_id();
        if a.new_version.is_some() {
            rec.version = a.new_version.clone();
        }
        rec.input = a.result.clone();
        rec.execution_id = new_exec.clone();
        rec.output = None;
        rec.failure_details = None;
        for (k, v) in a.tags {
            rec.tags.insert(k, v);
        }
        let started = event(
            -1,
            EventType::ExecutionStarted(proto::ExecutionStartedEvent {
                name: rec.name.clone(),
                version: rec.version.clone(),
                input: a.result,
                orchestration_instance: Some(OrchestrationInstance {
                    instance_id: self.id.to_string(),
                    execution_id: Some(new_exec),
                }),
                parent_instance: rec.parent.clone(),
                scheduled_start_timestamp: None,
                parent_trace_context,
                orchestration_span_id: None,
                tags: rec.tags.clone(),
            }),
        );
        let mut events = vec![started];
        events.extend(a.carryover_events);
        events.extend(self.inst.inbox.drain(..).map(|(_, e)| e));
        self.b.ops.push(WriteOp::ClearInbox(self.id.to_string()));
        for ev in events {
            self.inst.append_inbox(self.b, ev);
        }
        self.inst.history.clear();
        self.replaced = true;
        // Locks belong to the generation that took them.
        if locks {
            self.out.push(Outbound::ReleaseLocks(self.id.to_string()));
        }
        // Events sent to itself after this action go to the new generation.
        self.finished = false;
    }

    fn complete(&mut self, aid: i32, a: proto::CompleteOrchestrationAction) {
        self.finished = true;
        let locks = self.inst.may_hold_entity_locks();
        self.inst.history.push(event(
            aid,
            EventType::ExecutionCompleted(proto::ExecutionCompletedEvent {
                orchestration_status: a.orchestration_status,
                result: a.result.clone(),
                failure_details: a.failure_details.clone(),
            }),
        ));
        let rec = &mut self.inst.rec;
        rec.status = if is_terminal(a.orchestration_status) {
            a.orchestration_status
        } else {
            OrchestrationStatus::Completed as i32
        };
        rec.output = a.result;
        rec.failure_details = a.failure_details;
        rec.completed_ms = Some(self.now);
        if !self.inst.inbox.is_empty() {
            self.inst.inbox.clear();
            self.b.ops.push(WriteOp::ClearInbox(self.id.to_string()));
        }
        self.out.push(Outbound::NotifyParent(self.id.to_string()));
        if locks {
            self.out.push(Outbound::ReleaseLocks(self.id.to_string()));
        }
    }

    /// Writes the history changes of the episode and the instance record.
    fn persist_history(&mut self, old_len: usize) {
        let id = self.id.to_string();
        if self.replaced {
            let events = self
                .inst
                .history
                .iter()
                .map(|e| e.encode_to_vec())
                .collect();
            self.b.ops.push(WriteOp::ReplaceHistory {
                instance_id: id,
                events,
            });
        } else {
            let events = self.inst.history[old_len..]
                .iter()
                .map(|e| e.encode_to_vec())
                .collect();
            self.b.ops.push(WriteOp::AppendHistory {
                instance_id: id,
                start_index: old_len as u64,
                events,
            });
        }
        self.b.put_instance(&self.inst.rec);
    }
}
