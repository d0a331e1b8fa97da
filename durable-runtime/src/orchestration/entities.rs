//! Entities from orchestrations: signals, calls and critical sections (`lock_entities`), all
//! replay-safe. Each is an action confirmed by history like the others; results and lock
//! grants are matched by their request and critical-section ids.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::{ActionKind, OrchestrationContext, PendingAction, failed_slot, to_json};
use super::task::Task;
use crate::convert::to_timestamp;
use crate::entity::{Entity, EntityId, EntityOp};
use crate::error::{FailureDetails, TaskError};
use crate::proto::{self, send_entity_message_action::EntityMessageType};

/// The error type of entity calls and locks used against the rules of critical sections.
pub const ENTITY_LOCK_MISUSE_ERROR_TYPE: &str = "durable::EntityLockMisuse";

/// A critical section this orchestration holds or is acquiring.
pub(crate) struct CriticalSection {
    id: String,
    /// Every locked entity, sorted.
    locks: Vec<EntityId>,
    /// Locked entities with no call in flight: the ones that may be called now.
    available: Vec<EntityId>,
    granted: bool,
}

/// The kind of an entity message, for comparison with history.
pub(crate) fn message_kind(message: &proto::SendEntityMessageAction) -> ActionKind {
    match message.entity_message_type {
        Some(EntityMessageType::EntityOperationCalled(_)) => ActionKind::EntityCall,
        Some(EntityMessageType::EntityLockRequested(_)) => ActionKind::EntityLock,
        Some(EntityMessageType::EntityUnlockSent(_)) => ActionKind::EntityUnlock,
        Some(EntityMessageType::EntityOperationSignaled(_)) | None => ActionKind::EntitySignal,
    }
}

/// What an entity message targets (`@name@key/operation`, the lock set, or the unlocked
/// entity), for comparison with history.
pub(crate) fn message_name(message: &proto::SendEntityMessageAction) -> String {
    match &message.entity_message_type {
        Some(EntityMessageType::EntityOperationSignaled(s)) => {
            operation_target(s.target_instance_id.as_deref(), &s.operation)
        }
        Some(EntityMessageType::EntityOperationCalled(c)) => {
            operation_target(c.target_instance_id.as_deref(), &c.operation)
        }
        Some(EntityMessageType::EntityLockRequested(l)) => l.lock_set.join(","),
        Some(EntityMessageType::EntityUnlockSent(u)) => {
            u.target_instance_id.clone().unwrap_or_default()
        }
        None => String::new(),
    }
}

/// `@name@key/operation`, the name under which a signal or call is matched with history.
pub(crate) fn operation_target(target: Option<&str>, operation: &str) -> String {
    format!("{}/{operation}", target.unwrap_or_default())
}

fn misuse(name: &str, message: String) -> TaskError {
    TaskError::Failed {
        name: name.to_owned(),
        details: FailureDetails::new(ENTITY_LOCK_MISUSE_ERROR_TYPE, message).non_retriable(),
    }
}

/// Sub-orchestrations may not start inside a critical section (the child could wait for the
/// locked entities: a deadlock).
pub(crate) fn check_sub_orchestration(
    ctx: &OrchestrationContext,
    name: &str,
) -> Result<(), TaskError> {
    if ctx.state.borrow().critical_section.is_some() {
        return Err(misuse(
            name,
            format!(
                "sub-orchestration `{name}` cannot start inside a critical section; release the \
                 entity lock first"
            ),
        ));
    }
    Ok(())
}

impl OrchestrationContext {
    /// Signals operation `op` of an entity (fire and forget): `ctx.signal_entity(&id,
    /// Counter::add, 5)`. The input type is checked against the operation at compile time.
    ///
    /// Signalling an entity this orchestration has locked fails the orchestration
    /// (`durable::EntityLockMisuse`): call it instead. So does an input that does not
    /// serialize, or an id of another entity type than the operation's.
    pub fn signal_entity<E: Entity, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
    ) {
        if let Err(message) = same_entity::<E>(id, op.name()) {
            return self.fail_with(message);
        }
        self.signal(id, op.name(), &input, None);
    }

    /// Like [`signal_entity`](Self::signal_entity), delivered no earlier than `at`.
    pub fn signal_entity_at<E: Entity, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
        at: DateTime<Utc>,
    ) {
        if let Err(message) = same_entity::<E>(id, op.name()) {
            return self.fail_with(message);
        }
        self.signal(id, op.name(), &input, Some(at));
    }

    /// Signals an operation by name (entities of other SDKs or crates).
    pub fn signal_entity_by_name<I: Serialize>(&self, id: &EntityId, operation: &str, input: I) {
        self.signal(id, operation, &input, None);
    }

    /// Signals an operation by name, delivered no earlier than `at`.
    pub fn signal_entity_by_name_at<I: Serialize>(
        &self,
        id: &EntityId,
        operation: &str,
        input: I,
        at: DateTime<Utc>,
    ) {
        self.signal(id, operation, &input, Some(at));
    }

    /// Calls operation `op` of an entity and waits for its result: `ctx.call_entity(&id,
    /// Counter::get, ())` is a `Task<i64>` when `get` returns `i64`. A failed operation fails
    /// the task with the entity's failure details.
    ///
    /// Inside a critical section only locked entities may be called, one call at a time per
    /// entity; anything else fails the task with `durable::EntityLockMisuse`.
    pub fn call_entity<E: Entity, I: Serialize, O: DeserializeOwned>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
    ) -> Task<O> {
        if let Err(message) = same_entity::<E>(id, op.name()) {
            return Task::from_slot(failed_slot(op.name(), misuse(op.name(), message)));
        }
        self.call_entity_by_name(id, op.name(), input)
    }

    /// Calls an operation by name (entities of other SDKs or crates) and waits for its result.
    pub fn call_entity_by_name<I: Serialize, O: DeserializeOwned>(
        &self,
        id: &EntityId,
        operation: &str,
        input: I,
    ) -> Task<O> {
        let target = operation_target(Some(id.as_str()), operation);
        let input = match to_json(&input) {
            Ok(json) => json,
            Err(e) => {
                let details = FailureDetails::new(
                    "durable::InvalidInput",
                    format!("the input of `{target}` does not serialize to JSON: {e}"),
                )
                .non_retriable();
                return Task::from_slot(failed_slot(
                    &target,
                    TaskError::Failed {
                        name: target.clone(),
                        details,
                    },
                ));
            }
        };
        if let Err(message) = self.take_available(id) {
            return Task::from_slot(failed_slot(&target, misuse(&target, message)));
        }
        let request_id = self.new_guid().to_string();
        let (instance_id, execution_id) = {
            let state = self.state.borrow();
            (state.instance_id.clone(), state.execution_id.clone())
        };
        let message = EntityMessageType::EntityOperationCalled(proto::EntityOperationCalledEvent {
            request_id: request_id.clone(),
            operation: operation.to_owned(),
            scheduled_time: None,
            input: Some(input),
            parent_instance_id: Some(instance_id),
            parent_execution_id: (!execution_id.is_empty()).then_some(execution_id),
            target_instance_id: Some(id.to_string()),
        });
        let mut state = self.state.borrow_mut();
        let (action_id, slot) = state.schedule(&target, entity_action(message), true);
        state
            .entity_calls
            .insert(request_id, (action_id, id.clone()));
        Task::from_slot(slot)
    }

    /// Enters a critical section over `entities`: once the returned task resolves, every one
    /// of them is locked by this orchestration, and only this orchestration's calls reach them
    /// until the [`EntityLock`] is dropped (or released) or the orchestration ends (also when
    /// it fails). Locks are taken all at once, in sorted order, so critical sections never
    /// deadlock.
    ///
    /// ```no_run
    /// # use durable::prelude::*;
    /// # use durable::entity::EntityId;
    /// # async fn transfer(ctx: OrchestrationContext, from: EntityId, to: EntityId) -> durable::Result<()> {
    /// let lock = ctx.lock_entities(&[from.clone(), to.clone()]).await?;
    /// let balance: i64 = ctx.call_entity_by_name(&from, "get", ()).await?;
    /// if balance >= 50 {
    ///     ctx.call_entity_by_name::<_, ()>(&from, "add", -50).await?;
    ///     ctx.call_entity_by_name::<_, ()>(&to, "add", 50).await?;
    /// }
    /// drop(lock);
    /// # Ok(()) }
    /// ```
    ///
    /// Locking again inside a critical section, or an empty set, fails the task with
    /// `durable::EntityLockMisuse`.
    pub fn lock_entities(&self, entities: &[EntityId]) -> LockTask {
        let mut locks = entities.to_vec();
        locks.sort();
        locks.dedup();
        let name = format!("lock {}", join(&locks));
        let refused = |message: String| LockTask {
            task: Task::from_slot(failed_slot(&name, misuse(&name, message))),
            ctx: self.clone(),
            critical_section: String::new(),
        };
        if locks.is_empty() {
            return refused("lock_entities needs at least one entity".to_owned());
        }
        if let Some(section) = &self.state.borrow().critical_section {
            return refused(format!(
                "already inside a critical section over {}; critical sections do not nest: \
                 lock every entity you need in one lock_entities call",
                join(&section.locks)
            ));
        }
        let critical_section = self.new_guid().to_string();
        let instance_id = self.instance_id();
        let message = EntityMessageType::EntityLockRequested(proto::EntityLockRequestedEvent {
            critical_section_id: critical_section.clone(),
            lock_set: locks.iter().map(EntityId::to_string).collect(),
            position: 0,
            parent_instance_id: Some(instance_id),
        });
        let mut state = self.state.borrow_mut();
        let (action_id, slot) = state.schedule(&name, entity_action(message), true);
        state
            .lock_requests
            .insert(critical_section.clone(), action_id);
        state.critical_section = Some(CriticalSection {
            id: critical_section.clone(),
            available: Vec::new(),
            locks,
            granted: false,
        });
        drop(state);
        LockTask {
            task: Task::from_slot(slot),
            ctx: self.clone(),
            critical_section,
        }
    }

    /// Whether this orchestration is inside a critical section (holding or acquiring locks).
    pub fn is_in_critical_section(&self) -> bool {
        self.state.borrow().critical_section.is_some()
    }

    fn signal<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
        at: Option<DateTime<Utc>>,
    ) {
        let target = operation_target(Some(id.as_str()), operation);
        let input = match to_json(input) {
            Ok(json) => json,
            Err(e) => {
                return self.fail_with(format!(
                    "the input of signal `{target}` does not serialize to JSON: {e}"
                ));
            }
        };
        let locked = self
            .state
            .borrow()
            .critical_section
            .as_ref()
            .is_some_and(|s| s.locks.contains(id));
        if locked {
            let mut state = self.state.borrow_mut();
            if state.fatal.is_none() {
                state.fatal = Some(
                    FailureDetails::new(
                        ENTITY_LOCK_MISUSE_ERROR_TYPE,
                        format!(
                            "entity `{id}` is locked by this orchestration's critical section and \
                             must not be signalled from it; call it instead, or signal it after \
                             releasing the lock"
                        ),
                    )
                    .non_retriable(),
                );
            }
            return;
        }
        let message =
            EntityMessageType::EntityOperationSignaled(proto::EntityOperationSignaledEvent {
                request_id: self.new_guid().to_string(),
                operation: operation.to_owned(),
                scheduled_time: at.map(to_timestamp),
                input: Some(input),
                target_instance_id: Some(id.to_string()),
            });
        self.state
            .borrow_mut()
            .schedule(&target, entity_action(message), false);
    }

    /// Inside a critical section, reserves `id` for one call (it must be locked and have no
    /// call in flight).
    fn take_available(&self, id: &EntityId) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        let Some(section) = state.critical_section.as_mut() else {
            return Ok(());
        };
        if !section.granted {
            return Err(format!(
                "the locks of this critical section ({}) are not granted yet; await \
                 ctx.lock_entities(..) before calling an entity",
                join(&section.locks)
            ));
        }
        if let Some(position) = section.available.iter().position(|e| e == id) {
            section.available.remove(position);
            return Ok(());
        }
        if section.locks.contains(id) {
            return Err(format!(
                "a call to `{id}` from this critical section is still in flight; await it \
                 before calling the entity again"
            ));
        }
        Err(format!(
            "`{id}` is not locked by this critical section (locked: {}); lock it too, or call \
             it outside the critical section",
            join(&section.locks)
        ))
    }
}

/// The entity of a typed operation must be the entity the id names.
fn same_entity<E: Entity>(id: &EntityId, operation: &str) -> Result<(), String> {
    if id.name() == E::NAME {
        Ok(())
    } else {
        Err(format!(
            "operation `{operation}` belongs to entity `{}`, but the id `{id}` names entity `{}`",
            E::NAME,
            id.name()
        ))
    }
}

fn join(ids: &[EntityId]) -> String {
    ids.iter()
        .map(EntityId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn entity_action(message: EntityMessageType) -> PendingAction {
    PendingAction::Entity(Box::new(proto::SendEntityMessageAction {
        entity_message_type: Some(message),
    }))
}

/// Replay of entity results: called by the executor for the events that answer entity
/// actions. Returns the action id whose task the event completes.
pub(crate) fn answered_call(ctx: &OrchestrationContext, request_id: &str) -> Option<i32> {
    let mut state = ctx.state.borrow_mut();
    let (action_id, target) = state.entity_calls.remove(request_id)?;
    if let Some(section) = state.critical_section.as_mut() {
        if section.granted
            && section.locks.contains(&target)
            && !section.available.contains(&target)
        {
            section.available.push(target);
        }
    }
    Some(action_id)
}

/// The lock of critical section `id` was granted: returns the lock request's action id.
pub(crate) fn granted_lock(ctx: &OrchestrationContext, id: &str) -> Option<i32> {
    let mut state = ctx.state.borrow_mut();
    let action_id = state.lock_requests.remove(id)?;
    if let Some(section) = state.critical_section.as_mut().filter(|s| s.id == id) {
        section.granted = true;
        section.available = section.locks.clone();
    }
    Some(action_id)
}

/// The task of [`OrchestrationContext::lock_entities`]: resolves to the [`EntityLock`] once
/// every entity is locked.
#[must_use = "a lock request does nothing useful unless awaited"]
pub struct LockTask {
    task: Task<()>,
    ctx: OrchestrationContext,
    critical_section: String,
}

impl std::fmt::Debug for LockTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockTask")
            .field("critical_section", &self.critical_section)
            .field("granted", &self.task.is_completed())
            .finish()
    }
}

impl LockTask {
    /// A type-erased handle, to race the lock against a timer with [`crate::when_any`].
    pub fn handle(&self) -> super::TaskRef {
        self.task.handle()
    }
}

impl Future for LockTask {
    type Output = Result<EntityLock, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(EntityLock {
                ctx: self.ctx.clone(),
                critical_section: Rc::from(self.critical_section.as_str()),
            })),
        }
    }
}

/// A held critical section. Dropping it (or [`release`](Self::release)) unlocks every entity
/// of the section; so does the end of the orchestration.
pub struct EntityLock {
    ctx: OrchestrationContext,
    critical_section: Rc<str>,
}

impl std::fmt::Debug for EntityLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityLock")
            .field("critical_section", &self.critical_section)
            .finish()
    }
}

impl EntityLock {
    /// The locked entities, sorted.
    pub fn entities(&self) -> Vec<EntityId> {
        self.ctx
            .state
            .borrow()
            .critical_section
            .as_ref()
            .filter(|s| *s.id == *self.critical_section)
            .map(|s| s.locks.clone())
            .unwrap_or_default()
    }

    /// Leaves the critical section now (the same as dropping the lock).
    pub fn release(self) {}
}

impl Drop for EntityLock {
    fn drop(&mut self) {
        // Dropped while the executor holds the state (the orchestrator future going away at
        // the end of an episode): the response is already built, nothing to record.
        let Ok(mut state) = self.ctx.state.try_borrow_mut() else {
            return;
        };
        if state
            .critical_section
            .as_ref()
            .is_none_or(|s| *s.id != *self.critical_section)
        {
            return;
        }
        let Some(section) = state.critical_section.take() else {
            return;
        };
        let instance_id = state.instance_id.clone();
        for entity in &section.locks {
            let message = EntityMessageType::EntityUnlockSent(proto::EntityUnlockSentEvent {
                critical_section_id: section.id.clone(),
                parent_instance_id: Some(instance_id.clone()),
                target_instance_id: Some(entity.to_string()),
            });
            state.schedule(entity.as_str(), entity_action(message), false);
        }
    }
}
