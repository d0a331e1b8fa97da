//! Instance lifecycle driven by clients: start (and replace under a reuse policy), raise an
//! event, terminate, suspend and resume, restart and rewind.

use std::collections::HashMap;

use tonic::Status;

use super::batch::{Batch, CommitWait};
use super::queries::read_failed;
use super::routing::Outbound;
use super::state::{Instance, State, TimerEntry};
use super::{Engine, event, finished, is_terminal, new_id, not_found, status_name};
use crate::proto::{
    self, OrchestrationInstance, OrchestrationStatus, ParentInstanceInfo, history_event::EventType,
};
use crate::storage::{InstanceRecord, WriteOp};
use crate::time::{from_ms, now_ms};

/// What a new instance starts with (from a client, a parent orchestration or a restart).
pub(crate) struct NewInstance {
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
    pub(crate) input: Option<String>,
    pub(crate) execution_id: Option<String>,
    pub(crate) scheduled_start_ms: Option<i64>,
    pub(crate) tags: HashMap<String, String>,
    pub(crate) parent: Option<ParentInstanceInfo>,
    pub(crate) parent_trace_context: Option<proto::TraceContext>,
}

impl Engine {
    /// Creates (or replaces) an instance: PENDING, with `ExecutionStarted` in its inbox.
    /// `in_storage` says whether a finished instance with this id is in storage, when the
    /// caller already looked (`None`: look).
    pub(super) fn create_instance(
        &self,
        st: &mut State,
        b: &mut Batch,
        ni: NewInstance,
        in_storage: Option<bool>,
    ) {
        let now = now_ms();
        let execution_id = ni.execution_id.clone().unwrap_or_else(new_id);
        let started = EventType::ExecutionStarted(proto::ExecutionStartedEvent {
            name: ni.name.clone(),
            version: ni.version.clone(),
            input: ni.input.clone(),
            orchestration_instance: Some(OrchestrationInstance {
                instance_id: ni.instance_id.clone(),
                execution_id: Some(execution_id.clone()),
            }),
            parent_instance: ni.parent.clone(),
            scheduled_start_timestamp: ni.scheduled_start_ms.map(from_ms),
            parent_trace_context: ni.parent_trace_context.clone(),
            orchestration_span_id: None,
            tags: ni.tags.clone(),
        });
        let rec = InstanceRecord {
            instance_id: ni.instance_id.clone(),
            name: ni.name,
            version: ni.version,
            input: ni.input,
            output: None,
            custom_status: None,
            failure_details: None,
            status: OrchestrationStatus::Pending as i32,
            execution_id,
            created_ms: now,
            updated_ms: now,
            completed_ms: None,
            scheduled_start_ms: ni.scheduled_start_ms,
            parent: ni.parent,
            tags: ni.tags,
            children: Vec::new(),
            force_dispatch: false,
            orchestration_trace_context: None,
        };
        let mut queued = false;
        if let Some(old) = st.instances.get_mut(&ni.instance_id) {
            // Replacing an instance (reuse policy): its episode in flight, queued activities
            // and timers die with it; a late completion for it is ignored.
            let token = old.in_flight.take().map(|f| f.token);
            queued = old.queued;
            let locks = old.may_hold_entity_locks();
            if let Some(token) = token {
                st.revoke(&token);
            }
            st.drop_pending_work(b, &ni.instance_id);
            if locks {
                st.deliver(b, Outbound::ReleaseLocks(ni.instance_id.clone()));
            }
            b.ops.push(WriteOp::DeleteInstance(ni.instance_id.clone()));
        } else if in_storage.unwrap_or_else(|| st.exists(self.storage.as_ref(), &ni.instance_id)) {
            // Replacing a finished instance that only storage holds: its history goes too.
            b.ops.push(WriteOp::DeleteInstance(ni.instance_id.clone()));
        }
        let inst = Instance::new(rec, queued, b.seq);
        b.put_instance(&inst.rec);
        st.instances.insert(ni.instance_id.clone(), inst);
        st.push_inbox(b, &ni.instance_id, event(-1, started));
        if let Some(start) = ni.scheduled_start_ms.filter(|s| *s > now) {
            let key = st.new_key();
            st.timers
                .insert((start, key), TimerEntry::Start(ni.instance_id.clone()));
            self.timer_wake.notify_one();
        }
        st.notify_waiters(b, &ni.instance_id);
    }

    pub(crate) fn start_instance(
        &self,
        ni: NewInstance,
        replaceable: &[i32],
        stored: Option<StoredStatus>,
    ) -> Result<(String, CommitWait), Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let id = ni.instance_id.as_str();
        let existing = match (st.instances.get(id), stored) {
            (Some(inst), _) => Some(inst.rec.status),
            (None, Some(stored)) if stored.departures == st.departures => stored.status,
            _ => self.status_of(&st, id)?,
        };
        if let Some(status) = existing {
            if !replaceable.contains(&status) {
                return Err(Status::already_exists(format!(
                    "an orchestration instance with id '{}' already exists (status {}); use a different id, purge it first, or pass an orchestrationIdReusePolicy",
                    ni.instance_id,
                    status_name(status)
                )));
            }
        }
        let mut b = self.begin(&mut st);
        let id = ni.instance_id.clone();
        self.create_instance(&mut st, &mut b, ni, Some(existing.is_some()));
        Ok((id, self.submit(&mut st, b)))
    }

    pub(crate) fn raise_event(
        &self,
        id: &str,
        name: String,
        input: Option<String>,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let status = self.status_of(&st, id)?.ok_or_else(|| not_found(id))?;
        if is_terminal(status) {
            return Err(finished(id, status, "takes no more events"));
        }
        let mut b = self.begin(&mut st);
        let ev = event(
            -1,
            EventType::EventRaised(proto::EventRaisedEvent { name, input }),
        );
        st.push_inbox(&mut b, id, ev);
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn terminate(
        &self,
        id: &str,
        output: Option<String>,
        recurse: bool,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let status = self.status_of(&st, id)?.ok_or_else(|| not_found(id))?;
        if is_terminal(status) {
            return Err(finished(id, status, "cannot be terminated"));
        }
        let mut b = self.begin(&mut st);
        self.run_outbound(
            &mut st,
            &mut b,
            vec![Outbound::Terminate {
                target: id.to_string(),
                output,
                recurse,
            }],
        );
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn suspend_resume(
        &self,
        id: &str,
        reason: Option<String>,
        suspend: bool,
    ) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let status = self.status_of(&st, id)?.ok_or_else(|| not_found(id))?;
        if is_terminal(status) {
            let what = if suspend {
                "can no longer be suspended"
            } else {
                "can no longer be resumed"
            };
            return Err(finished(id, status, what));
        }
        let mut b = self.begin(&mut st);
        let Some(inst) = st.instances.get_mut(id) else {
            return Err(not_found(id));
        };
        let suspended = status == OrchestrationStatus::Suspended as i32;
        if suspend == suspended {
            return Ok(self.submit(&mut st, b));
        }
        let ev = if suspend {
            inst.rec.status = OrchestrationStatus::Suspended as i32;
            EventType::ExecutionSuspended(proto::ExecutionSuspendedEvent { input: reason })
        } else {
            inst.rec.status = if inst.history.is_empty() {
                OrchestrationStatus::Pending as i32
            } else {
                OrchestrationStatus::Running as i32
            };
            EventType::ExecutionResumed(proto::ExecutionResumedEvent { input: reason })
        };
        b.put_instance(&inst.rec);
        st.push_inbox(&mut b, id, event(-1, ev));
        st.notify_waiters(&b, id);
        Ok(self.submit(&mut st, b))
    }

    pub(crate) fn restart(
        &self,
        id: &str,
        new_instance_id: bool,
    ) -> Result<(String, CommitWait), Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let rec = self.record_of(&st, id)?.ok_or_else(|| not_found(id))?;
        // Under the same id the old instance is replaced, so it must be finished; under a new
        // id it keeps running beside its copy (as in the official backends).
        if !new_instance_id && !is_terminal(rec.status) {
            return Err(Status::failed_precondition(format!(
                "orchestration instance '{id}' is {}; only completed, failed or terminated instances can be restarted under the same id (restart it with a new instance id, or terminate it first)",
                status_name(rec.status)
            )));
        }
        let ni = NewInstance {
            instance_id: if new_instance_id {
                st.new_local_id()
            } else {
                id.to_string()
            },
            name: rec.name.clone(),
            version: rec.version.clone(),
            input: rec.input.clone(),
            execution_id: None,
            scheduled_start_ms: None,
            tags: rec.tags.clone(),
            parent: None,
            parent_trace_context: None,
        };
        let mut b = self.begin(&mut st);
        let new = ni.instance_id.clone();
        // A new id is fresh; the same id is the record just read.
        self.create_instance(&mut st, &mut b, ni, Some(!new_instance_id));
        Ok((new, self.submit(&mut st, b)))
    }

    pub(crate) fn rewind(&self, id: &str, reason: Option<String>) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let status = self.status_of(&st, id)?.ok_or_else(|| not_found(id))?;
        if status != OrchestrationStatus::Failed as i32 {
            return Err(Status::failed_precondition(format!(
                "orchestration instance '{id}' is {}; only failed instances can be rewound",
                status_name(status)
            )));
        }
        let mut b = self.begin(&mut st);
        // A failed instance has usually left memory: bring it back to run again.
        if !st
            .hydrate(self.storage.as_ref(), &mut b, id)
            .map_err(read_failed)?
        {
            return Err(not_found(id));
        }
        st.prepare_rewind(&mut b, id, reason);
        Ok(self.submit(&mut st, b))
    }
}

/// An instance's status as storage held it, read without the engine's lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoredStatus {
    /// `State::departures` before the read.
    departures: u64,
    status: Option<i32>,
}

impl Engine {
    /// When storage is remote, reads an instance's stored status without holding the lock,
    /// for [`Engine::start_instance`]: a start then waits for no round trip under the lock.
    /// It holds under the lock while the instance is not in memory and nothing left memory
    /// or was purged meanwhile (otherwise the start reads again). `None` for local storage.
    pub(crate) async fn stored_status(&self, id: &str) -> Result<Option<StoredStatus>, Status> {
        if !self.storage.reads_are_remote() {
            return Ok(None);
        }
        let departures = {
            let st = self.lock();
            if st.instances.contains_key(id) || st.purging.contains_key(id) {
                return Ok(None);
            }
            st.departures
        };
        let id = id.to_owned();
        let status = self
            .read(move |s| s.read_instance(&id))
            .await?
            .map(|r| r.status);
        Ok(Some(StoredStatus { departures, status }))
    }

    /// An instance's status, from memory or (once finished) storage; `None` = no such instance.
    fn status_of(&self, st: &State, id: &str) -> Result<Option<i32>, Status> {
        if let Some(inst) = st.instances.get(id) {
            return Ok(Some(inst.rec.status));
        }
        Ok(self.record_of(st, id)?.map(|r| r.status))
    }

    /// A copy of an instance's record, from memory or (once finished) storage.
    pub(super) fn record_of(&self, st: &State, id: &str) -> Result<Option<InstanceRecord>, Status> {
        if let Some(inst) = st.instances.get(id) {
            return Ok(Some(inst.rec.clone()));
        }
        if st.purging.contains_key(id) {
            return Ok(None);
        }
        self.storage.read_instance(id).map_err(read_failed)
    }
}

impl State {
    /// Puts a failed instance back to RUNNING with `ExecutionRewound` in its inbox; the worker
    /// answers with the rewritten history (applied in the episode module).
    pub(super) fn prepare_rewind(&mut self, b: &mut Batch, id: &str, reason: Option<String>) {
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        inst.rec.status = OrchestrationStatus::Running as i32;
        inst.rec.output = None;
        inst.rec.failure_details = None;
        inst.rec.completed_ms = None;
        inst.rec.updated_ms = now_ms();
        b.put_instance(&inst.rec);
        let ev = event(
            -1,
            EventType::ExecutionRewound(proto::ExecutionRewoundEvent {
                reason,
                ..Default::default()
            }),
        );
        self.push_inbox(b, id, ev);
        self.notify_waiters(b, id);
    }
}
