//! Reads, waits and purge: instance state and history, queries and listings, long polls that
//! answer once a status change is durable, deleting finished instances; entity reads, entity
//! queries and cleaning entity storage.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tonic::Status;

use super::batch::{Batch, CommitWait};
use super::state::{EntityInstance, State};
use super::{Engine, is_terminal, status_name};
use crate::proto::{EntityMetadata, HistoryEvent, OrchestrationState};
use crate::storage::{
    CompletedQuery, InstanceQuery, InstanceRecord, Storage, StorageError, TERMINAL_STATUSES,
    WriteOp,
};
use crate::time::from_ms;

impl Engine {
    /// Waits until `done` holds for the instance (or it disappears). `None` = not found.
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        payloads: bool,
        deadline: Option<tokio::time::Instant>,
        done: fn(i32) -> bool,
    ) -> Result<Option<OrchestrationState>, Status> {
        let mut stop = self.shutdown_signal();
        let mut received = false;
        loop {
            let rx = {
                let mut st = self.lock();
                let durable = self.signal.durable_seq.load(Ordering::SeqCst);
                match st.instances.get(id) {
                    // Not active: finished (then it is in storage) or unknown.
                    None if !st.purging.contains_key(id) => None,
                    Some(inst) if inst.status_seq <= durable && done(inst.rec.status) => {
                        return Ok(Some(to_state(&inst.rec, payloads)));
                    }
                    _ => {
                        self.refuse(&st)?;
                        let (tx, rx) = oneshot::channel();
                        st.waiters.entry(id.to_string()).or_default().push(tx);
                        Some(rx)
                    }
                }
            };
            let Some(rx) = rx else {
                let owned = id.to_owned();
                let rec = self.read(move |s| s.read_instance(&owned)).await?;
                // Another partition may have just created it: apply what it sent, look again.
                if rec.is_none() && !received {
                    received = true;
                    if self.catch_up().await? {
                        continue;
                    }
                }
                return Ok(rec.map(|r| to_state(&r, payloads)));
            };
            // However this wait ends (deadline, the client hanging up), its waiter goes.
            let _forget = ForgetClosedWaiters { engine: self, id };
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woken = rx => {
                    if let Ok(Some(rec)) = woken.as_ref().map(Option::as_deref) {
                        if done(rec.status) {
                            return Ok(Some(to_state(rec, payloads)));
                        }
                    }
                }
                _ = expired => {
                    return Err(Status::deadline_exceeded(format!(
                        "timed out waiting for orchestration instance '{id}'; wait longer or poll with GetInstance"
                    )));
                }
                _ = stop.changed() => {
                    return Err(Status::unavailable("the sidecar is shutting down"));
                }
            }
        }
    }

    /// Drops the waiters of `id` whose wait ended without a wake-up.
    fn forget_closed_waiters(&self, id: &str) {
        let mut st = self.lock();
        if let Some(waiters) = st.waiters.get_mut(id) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                st.waiters.remove(id);
            }
        }
    }

    /// Wakes the waiters of every status change that is now durable.
    pub(super) fn wake_durable(&self, st: &mut State) {
        let durable = self.signal.durable_seq.load(Ordering::SeqCst);
        while st
            .wake_after
            .front()
            .is_some_and(|(seq, _)| *seq <= durable)
        {
            let Some((seq, id)) = st.wake_after.pop_front() else {
                break;
            };
            if st.purging.get(&id).is_some_and(|s| *s <= seq) {
                st.purging.remove(&id);
            }
            if let Some(ws) = st.waiters.remove(&id) {
                let rec = st
                    .instances
                    .get(&id)
                    .filter(|inst| inst.status_seq <= durable)
                    .map(|inst| Arc::new(inst.rec.clone()));
                for w in ws {
                    let _ = w.send(rec.clone());
                }
            }
        }
        st.evict_durable(durable);
    }

    /// An instance's history: from memory while it is active, else from storage. `None` when
    /// there is no such instance.
    pub(crate) async fn history(&self, id: &str) -> Result<Option<Vec<HistoryEvent>>, Status> {
        let found = self.history_now(id).await?;
        // Another partition may have just created it: apply what it sent, look again.
        if found.is_none() && self.catch_up().await? {
            return self.history_now(id).await;
        }
        Ok(found)
    }

    async fn history_now(&self, id: &str) -> Result<Option<Vec<HistoryEvent>>, Status> {
        {
            let st = self.lock();
            if let Some(inst) = st.instances.get(id) {
                return Ok(Some(inst.history.clone()));
            }
            if st.purging.contains_key(id) {
                return Ok(None);
            }
        }
        let id = id.to_owned();
        self.read(move |s| {
            Ok(match s.read_instance(&id)? {
                Some(_) => Some(s.read_history(&id)?),
                None => None,
            })
        })
        .await
    }

    /// Committed instances matching a query, one page in (created time, id) order.
    pub(crate) async fn query(
        &self,
        q: InstanceQuery,
        payloads: bool,
    ) -> Result<Vec<OrchestrationState>, Status> {
        let records = self.read(move |s| s.query_instances(&q)).await?;
        Ok(records.iter().map(|r| to_state(r, payloads)).collect())
    }

    /// Committed finished instances as (completed_ms, id), one page in order.
    pub(crate) async fn completed_ids(
        &self,
        q: CompletedQuery,
    ) -> Result<Vec<(i64, String)>, Status> {
        self.read(move |s| s.completed_instances(&q)).await
    }

    /// Purges the given instances (terminal ones only); returns how many were deleted.
    /// Purges the finished instances among `ids` (and, if `recursive`, their children). With
    /// `refuse_live` (a purge of one named instance), a live instance is refused
    /// (FAILED_PRECONDITION) rather than counted as zero deleted.
    pub(crate) fn purge(
        &self,
        ids: Vec<String>,
        recursive: bool,
        refuse_live: bool,
    ) -> Result<(i32, CommitWait), Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        if let (true, [id]) = (refuse_live, ids.as_slice()) {
            if let Some(status) = st.instances.get(id).map(|i| i.rec.status) {
                if !is_terminal(status) {
                    return Err(Status::failed_precondition(format!(
                        "orchestration instance '{id}' is {}; only finished instances can be purged (terminate it first)",
                        status_name(status)
                    )));
                }
            }
        }
        let mut b = self.begin(&mut st);
        let mut count = 0;
        let mut todo = ids;
        while let Some(id) = todo.pop() {
            let (status, children) = match st.instances.get(&id) {
                Some(inst) => (inst.rec.status, inst.rec.children.clone()),
                None if st.purging.contains_key(&id) => continue,
                None => match self.storage.read_instance(&id).map_err(read_failed)? {
                    Some(rec) => (rec.status, rec.children),
                    None => continue,
                },
            };
            if !is_terminal(status) {
                continue;
            }
            if recursive {
                todo.extend(children);
            }
            st.drop_pending_work(&mut b, &id);
            st.instances.remove(&id);
            st.departures += 1;
            b.ops.push(WriteOp::DeleteInstance(id.clone()));
            st.purging.insert(id.clone(), b.seq);
            st.notify_waiters(&b, &id);
            count += 1;
        }
        Ok((count, self.submit(&mut st, b)))
    }

    /// Deletes the task hub's data: every instance (whatever its status), activity, timer,
    /// entity and lock. Work in flight is forgotten (late completions are ignored); waiters
    /// answer "not found" once the deletion is durable.
    pub(crate) fn delete_task_hub(&self) -> Result<CommitWait, Status> {
        let mut st = self.lock();
        self.refuse(&st)?;
        let mut b = self.begin(&mut st);
        b.ops.push(WriteOp::DeleteAll);
        let tokens: Vec<String> = st.tokens.keys().cloned().collect();
        for token in tokens {
            st.revoke(&token);
        }
        st.instances.clear();
        st.departures += 1;
        st.ready.clear();
        st.evictable.clear();
        st.activities.clear();
        st.activity_queue.clear();
        st.timers.clear();
        st.entities.clear();
        st.entity_ready.clear();
        st.lock_requests.clear();
        st.locks_by_holder.clear();
        let waiting: Vec<String> = st.waiters.keys().cloned().collect();
        for id in waiting {
            st.purging.insert(id.clone(), b.seq);
            st.wake_after.push_back((b.seq, id));
        }
        Ok(self.submit(&mut st, b))
    }

    /// Ids of terminal instances matching a purge filter (created in the given range).
    pub(crate) async fn purge_candidates(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        statuses: &[i32],
    ) -> Result<Vec<String>, Status> {
        let statuses: Vec<i32> = TERMINAL_STATUSES
            .into_iter()
            .filter(|s| statuses.is_empty() || statuses.contains(s))
            .collect();
        let mut q = InstanceQuery {
            statuses,
            created_from: from,
            created_to: to,
            limit: PURGE_PAGE,
            ..Default::default()
        };
        let mut ids = Vec::new();
        loop {
            let page = self
                .read({
                    let q = q.clone();
                    move |s| s.query_instances(&q)
                })
                .await?;
            let full = page.len() == PURGE_PAGE;
            q.after = page.last().map(|r| (r.created_ms, r.instance_id.clone()));
            ids.extend(page.into_iter().map(|r| r.instance_id));
            if !full {
                return Ok(ids);
            }
        }
    }

    /// Runs a storage read off the async threads; a failed read is UNAVAILABLE.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, Status> {
        let storage = Arc::clone(&self.storage);
        tokio::task::spawn_blocking(move || f(storage.as_ref()))
            .await
            .map_err(|e| Status::internal(format!("a storage read panicked: {e}")))?
            .map_err(read_failed)
    }
}

/// Reads per purge-filter page.
const PURGE_PAGE: usize = 1000;

/// The status for a failed storage read.
pub(super) fn read_failed(e: StorageError) -> Status {
    Status::unavailable(format!(
        "reading the sidecar's storage failed ({e}); retry, and check the database file if it persists"
    ))
}

impl State {
    /// Records that the instance's status changed in batch `b`; its waiters wake once `b` is
    /// durable (never earlier: nothing is acknowledged before it is committed).
    pub(super) fn notify_waiters(&mut self, b: &Batch, id: &str) {
        if let Some(inst) = self.instances.get_mut(id) {
            inst.status_seq = inst.status_seq.max(b.seq);
            if is_terminal(inst.rec.status) {
                self.evictable.push_back((b.seq, id.to_string()));
            }
        }
        self.wake_after.push_back((b.seq, id.to_string()));
    }
}

/// Frees an ended wait's waiter, so abandoned waits cost nothing until the instance changes.
struct ForgetClosedWaiters<'a> {
    engine: &'a Engine,
    id: &'a str,
}

impl Drop for ForgetClosedWaiters<'_> {
    fn drop(&mut self) {
        self.engine.forget_closed_waiters(self.id);
    }
}

fn to_state(rec: &InstanceRecord, payloads: bool) -> OrchestrationState {
    OrchestrationState {
        instance_id: rec.instance_id.clone(),
        name: rec.name.clone(),
        version: rec.version.clone(),
        orchestration_status: rec.status,
        scheduled_start_timestamp: rec.scheduled_start_ms.map(from_ms),
        created_timestamp: Some(from_ms(rec.created_ms)),
        last_updated_timestamp: Some(from_ms(rec.updated_ms)),
        input: if payloads { rec.input.clone() } else { None },
        output: if payloads { rec.output.clone() } else { None },
        custom_status: if payloads {
            rec.custom_status.clone()
        } else {
            None
        },
        failure_details: rec.failure_details.clone(),
        execution_id: Some(rec.execution_id.clone()),
        completed_timestamp: rec.completed_ms.map(from_ms),
        parent_instance_id: rec
            .parent
            .as_ref()
            .and_then(|p| p.orchestration_instance.as_ref())
            .map(|i| i.instance_id.clone()),
        tags: rec.tags.clone(),
    }
}

/// One page of entities and where the next starts.
pub(crate) struct EntityPage {
    pub(crate) entities: Vec<EntityMetadata>,
    pub(crate) continuation_token: Option<String>,
}

/// What `QueryEntities` matches.
pub(crate) struct EntityFilter<'a> {
    pub(crate) prefix: Option<&'a str>,
    pub(crate) modified_from: Option<i64>,
    pub(crate) modified_to: Option<i64>,
    pub(crate) include_state: bool,
    pub(crate) include_transient: bool,
    pub(crate) page_size: usize,
    /// The last id of the previous page.
    pub(crate) after: Option<&'a str>,
}

impl Engine {
    /// An entity's metadata once its last change is durable; `None` when it has no state.
    pub(crate) async fn get_entity(
        &self,
        id: &str,
        include_state: bool,
    ) -> Result<Option<EntityMetadata>, Status> {
        let mut stop = self.shutdown_signal();
        loop {
            let rx = {
                let mut st = self.lock();
                let durable = self.signal.durable_seq.load(Ordering::SeqCst);
                match st.entities.get(id) {
                    None => return Ok(None),
                    Some(e) if e.status_seq <= durable => {
                        return Ok(e
                            .rec
                            .state
                            .is_some()
                            .then(|| entity_metadata(e, include_state)));
                    }
                    Some(_) => {}
                }
                self.refuse(&st)?;
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(id.to_string()).or_default().push(tx);
                rx
            };
            tokio::select! {
                _ = rx => {}
                _ = stop.changed() => {
                    return Err(Status::unavailable("the sidecar is shutting down"));
                }
            }
        }
    }

    /// Entities matching a query, sorted by id, one page.
    pub(crate) fn query_entities(&self, filter: &EntityFilter<'_>) -> EntityPage {
        let st = self.lock();
        let mut matching: Vec<&EntityInstance> = st
            .entities
            .values()
            .filter(|e| filter.after.is_none_or(|after| e.rec.id.as_str() > after))
            .filter(|e| filter.prefix.is_none_or(|p| e.rec.id.starts_with(p)))
            .filter(|e| {
                filter
                    .modified_from
                    .is_none_or(|f| e.rec.last_modified_ms >= f)
            })
            .filter(|e| {
                filter
                    .modified_to
                    .is_none_or(|t| e.rec.last_modified_ms < t)
            })
            .filter(|e| filter.include_transient || e.rec.state.is_some())
            .collect();
        matching.sort_by(|a, b| a.rec.id.cmp(&b.rec.id));
        let more = matching.len() > filter.page_size;
        matching.truncate(filter.page_size);
        EntityPage {
            continuation_token: more
                .then(|| matching.last().map(|e| e.rec.id.clone()))
                .flatten(),
            entities: matching
                .into_iter()
                .map(|e| entity_metadata(e, filter.include_state))
                .collect(),
        }
    }

    /// Releases locks whose holder is gone or finished, then removes entities with no state,
    /// work or lock. Returns (entities removed, locks released).
    pub(crate) fn clean_entity_storage(
        &self,
        remove_empty: bool,
        release_orphaned_locks: bool,
    ) -> ((i32, i32), CommitWait) {
        let mut st = self.lock();
        let mut b = self.begin(&mut st);
        let mut released = 0;
        if release_orphaned_locks {
            let orphaned: Vec<String> = st
                .locks_by_holder
                .keys()
                .filter(|holder| {
                    st.instances
                        .get(*holder)
                        .is_none_or(|i| is_terminal(i.rec.status))
                })
                .cloned()
                .collect();
            for holder in orphaned {
                released += st.locks_by_holder.get(&holder).map_or(0, |s| s.len());
                st.release_locks_of(&mut b, &holder);
            }
        }
        let mut removed = 0;
        if remove_empty {
            let empty: Vec<String> = st
                .entities
                .values()
                .filter(|e| e.is_empty())
                .map(|e| e.rec.id.clone())
                .collect();
            for id in empty {
                st.drop_entity_if_empty(&mut b, &id);
                removed += 1;
            }
        }
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        ((count(removed), count(released)), self.submit(&mut st, b))
    }
}

fn entity_metadata(e: &EntityInstance, include_state: bool) -> EntityMetadata {
    EntityMetadata {
        instance_id: e.rec.id.clone(),
        last_modified_time: Some(from_ms(e.rec.last_modified_ms)),
        backlog_queue_size: i32::try_from(e.backlog()).unwrap_or(i32::MAX),
        locked_by: e.rec.lock_holder.clone(),
        serialized_state: if include_state {
            e.rec.state.clone()
        } else {
            None
        },
    }
}
