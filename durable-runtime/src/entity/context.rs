//! [`EntityContext`]: what an entity operation can read and do.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{EntityId, EntityOp};
use crate::convert::to_timestamp;
use crate::error::{Error, FailureDetails, Result};
use crate::orchestration::Orchestrator;
use crate::proto;
use crate::proto::operation_action::OperationActionType;
use crate::registry::{decode_payload, encode_payload};

/// The largest entity state an operation may write (serialized JSON): 8 MiB. A larger state
/// fails the operation (its changes are rolled back); keep big data elsewhere.
pub const MAX_ENTITY_STATE_BYTES: usize = 8 * 1024 * 1024;

/// The error type of an operation whose new state is over [`MAX_ENTITY_STATE_BYTES`].
pub const STATE_TOO_LARGE_ERROR_TYPE: &str = "durable::EntityStateTooLarge";

/// What an entity operation sees: the entity's id, the operation, the state (for entities
/// written as functions; a struct entity's state is the struct itself), and the messages it
/// may send: signals to entities and new orchestrations, sent only if the operation succeeds.
///
/// Cloning is cheap; clones share one entity.
///
/// ```
/// use durable::entity::{EntityContext, EntityId};
///
/// let ctx = EntityContext::new(EntityId::new("counter", "c1").unwrap(), None);
/// assert_eq!(ctx.get_state::<i64>().unwrap(), None);
/// ctx.set_state(&5).unwrap();
/// assert_eq!(ctx.get_state::<i64>().unwrap(), Some(5));
/// ctx.delete_state();
/// assert!(!ctx.has_state());
/// ```
#[derive(Clone)]
pub struct EntityContext {
    shared: Arc<Shared>,
}

struct Shared {
    id: EntityId,
    data: Mutex<Data>,
}

/// The batch's working copy: state as JSON and the actions of the operations so far.
struct Data {
    operation: String,
    state: Option<String>,
    actions: Vec<proto::OperationAction>,
}

/// The committed point to roll an operation back to.
pub(crate) struct Checkpoint {
    state: Option<String>,
    actions: usize,
}

impl std::fmt::Debug for EntityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityContext")
            .field("entity_id", &self.shared.id)
            .field("operation", &self.lock().operation)
            .finish()
    }
}

impl EntityContext {
    /// A context for entity `id` with a JSON state (`None` = the entity has no state yet). The
    /// worker builds these; tests of entity functions can build their own.
    pub fn new(id: EntityId, state: Option<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                id,
                data: Mutex::new(Data {
                    operation: String::new(),
                    state,
                    actions: Vec::new(),
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.shared
            .data
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This entity's id.
    pub fn entity_id(&self) -> &EntityId {
        &self.shared.id
    }

    /// The name of the operation being run.
    pub fn operation(&self) -> String {
        self.lock().operation.clone()
    }

    /// The state, deserialized; `None` when the entity has no state.
    pub fn get_state<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let data = self.lock();
        match data.state.as_deref() {
            None => Ok(None),
            Some(json) => decode_payload(
                &format!("the state of entity `{}`", self.shared.id),
                Some(json),
            )
            .map(Some),
        }
    }

    /// Replaces the state.
    pub fn set_state<T: Serialize + ?Sized>(&self, state: &T) -> Result<()> {
        let json = encode_payload(&format!("the state of entity `{}`", self.shared.id), state)?;
        if json.len() > MAX_ENTITY_STATE_BYTES {
            return Err(Error::from_details(
                FailureDetails::new(
                    STATE_TOO_LARGE_ERROR_TYPE,
                    format!(
                        "the new state of entity `{}` is {} bytes, over the {MAX_ENTITY_STATE_BYTES}-byte limit; keep large data elsewhere and store a reference",
                        self.shared.id,
                        json.len()
                    ),
                )
                .non_retriable(),
            ));
        }
        self.lock().state = Some(json);
        Ok(())
    }

    /// Deletes the state: once the operation succeeds the entity no longer exists (until it is
    /// given state again).
    pub fn delete_state(&self) {
        self.lock().state = None;
    }

    /// Whether the entity has state.
    pub fn has_state(&self) -> bool {
        self.lock().state.is_some()
    }

    /// Signals operation `op` of another (or this) entity, once this operation succeeds.
    pub fn signal_entity<E, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
    ) -> Result<()> {
        self.signal(id, op.name(), &input, None)
    }

    /// Like [`signal_entity`](Self::signal_entity), delivered no earlier than `at`.
    pub fn signal_entity_at<E, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.signal(id, op.name(), &input, Some(at))
    }

    /// Signals an operation by name (entities written elsewhere).
    pub fn signal_entity_by_name<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
    ) -> Result<()> {
        self.signal(id, operation, input, None)
    }

    /// Signals an operation by name, delivered no earlier than `at`.
    pub fn signal_entity_by_name_at<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.signal(id, operation, input, Some(at))
    }

    fn signal<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
        at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let input = encode_payload(&format!("the input of `{operation}` for `{id}`"), input)?;
        self.push(OperationActionType::SendSignal(proto::SendSignalAction {
            instance_id: id.to_string(),
            name: operation.to_owned(),
            input: Some(input),
            scheduled_time: at.map(to_timestamp),
            request_time: Some(to_timestamp(Utc::now())),
            parent_trace_context: None,
        }));
        Ok(())
    }

    /// Starts orchestration `O` once this operation succeeds; returns its (new) instance id.
    pub fn start_orchestration<O: Orchestrator>(
        &self,
        _orchestrator: O,
        input: O::Input,
    ) -> Result<String> {
        self.start_orchestration_by_name(O::NAME, &input, None)
    }

    /// Starts an orchestration by name, under `instance_id` or a fresh one; returns the id.
    pub fn start_orchestration_by_name<I: Serialize + ?Sized>(
        &self,
        name: &str,
        input: &I,
        instance_id: Option<&str>,
    ) -> Result<String> {
        let input = encode_payload(&format!("the input of orchestration `{name}`"), input)?;
        let instance_id =
            instance_id.map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
        self.push(OperationActionType::StartNewOrchestration(
            proto::StartNewOrchestrationAction {
                instance_id: instance_id.clone(),
                name: name.to_owned(),
                version: None,
                input: Some(input),
                scheduled_time: None,
                request_time: Some(to_timestamp(Utc::now())),
                parent_trace_context: None,
            },
        ));
        Ok(instance_id)
    }

    fn push(&self, action: OperationActionType) {
        let mut data = self.lock();
        let id = i32::try_from(data.actions.len()).unwrap_or(i32::MAX);
        data.actions.push(proto::OperationAction {
            id,
            operation_action_type: Some(action),
        });
    }

    /// The state as the struct `S` (its `Default` when the entity has none): what a struct
    /// entity's generated code runs its method on. Not public API.
    #[doc(hidden)]
    pub fn __load<S: DeserializeOwned + Default>(&self) -> Result<S> {
        Ok(self.get_state::<S>()?.unwrap_or_default())
    }

    // ---- used by the batch executor -------------------------------------------------------

    /// Starts operation `name`, returning the point to roll back to if it fails.
    pub(crate) fn begin(&self, name: &str) -> Checkpoint {
        let mut data = self.lock();
        data.operation = name.to_owned();
        Checkpoint {
            state: data.state.clone(),
            actions: data.actions.len(),
        }
    }

    /// Undoes what the failed operation changed.
    pub(crate) fn rollback(&self, checkpoint: Checkpoint) {
        let mut data = self.lock();
        data.state = checkpoint.state;
        data.actions.truncate(checkpoint.actions);
    }

    /// The final state and the actions of the successful operations.
    pub(crate) fn finish(&self) -> (Option<String>, Vec<proto::OperationAction>) {
        let mut data = self.lock();
        (data.state.clone(), std::mem::take(&mut data.actions))
    }
}
