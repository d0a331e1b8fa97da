//! Entities from the client: signal, read, query and clean up.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ClientError, DurableClient, Page, decode, encode, next_token};
use crate::convert::{to_datetime, to_timestamp};
use crate::entity::{EntityId, EntityOp};
use crate::proto;

/// What the sidecar reports about an entity.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntityMetadata {
    /// The entity's id.
    pub id: EntityId,
    /// When its state last changed.
    pub last_modified: DateTime<Utc>,
    /// Operations queued or running.
    pub backlog_queue_size: u32,
    /// The orchestration holding the entity's lock, if any.
    pub locked_by: Option<String>,
    /// The state as JSON (when asked for and the entity has state).
    pub serialized_state: Option<String>,
}

impl EntityMetadata {
    /// The state, deserialized (absent reads as JSON `null`, so use `Option<T>` for entities
    /// that may have none).
    pub fn state<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        decode("entity state", self.serialized_state.as_deref())
    }

    fn from_wire(wire: proto::EntityMetadata) -> Result<Self, ClientError> {
        let id = wire
            .instance_id
            .parse::<EntityId>()
            .map_err(|e| ClientError::Serialization(format!("the sidecar returned an {e}")))?;
        Ok(Self {
            id,
            last_modified: to_datetime(wire.last_modified_time.as_ref()),
            backlog_queue_size: u32::try_from(wire.backlog_queue_size).unwrap_or(0),
            locked_by: wire.locked_by.filter(|s| !s.is_empty()),
            serialized_state: wire.serialized_state,
        })
    }
}

/// An entity's state with its metadata, from [`DurableClient::get_entity`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntityState<T> {
    /// The state.
    pub state: T,
    /// When it last changed.
    pub last_modified: DateTime<Utc>,
    /// Operations queued or running.
    pub backlog_queue_size: u32,
    /// The orchestration holding the entity's lock, if any.
    pub locked_by: Option<String>,
}

/// A filter for [`DurableClient::query_entities`].
///
/// ```
/// use durable::client::EntityQuery;
/// let query = EntityQuery::new().name("counter").include_state(true).page_size(50);
/// # let _ = query;
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct EntityQuery {
    /// Only ids starting with this (e.g. `@counter@` for every counter).
    pub id_prefix: Option<String>,
    /// Only entities modified at or after this time.
    pub modified_from: Option<DateTime<Utc>>,
    /// Only entities modified before this time.
    pub modified_to: Option<DateTime<Utc>>,
    /// Return their states too.
    pub include_state: bool,
    /// Also entities without state that have queued work or a lock.
    pub include_transient: bool,
    /// At most this many per page (the sidecar's default when absent).
    pub page_size: Option<u32>,
    /// Where to continue, from the previous page.
    pub continuation_token: Option<String>,
}

impl EntityQuery {
    /// Every entity with state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entities named `name` (case-insensitive).
    pub fn name(mut self, name: &str) -> Self {
        self.id_prefix = Some(format!("@{}@", name.to_lowercase()));
        self
    }

    /// Only ids starting with `prefix`.
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Only entities last modified in `[from, to)`.
    pub fn modified_between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.modified_from = Some(from);
        self.modified_to = Some(to);
        self
    }

    /// Whether to return states.
    pub fn include_state(mut self, include: bool) -> Self {
        self.include_state = include;
        self
    }

    /// Whether to include entities without state that have queued work or a lock.
    pub fn include_transient(mut self, include: bool) -> Self {
        self.include_transient = include;
        self
    }

    /// Page size.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }

    /// Continues after a previous page.
    pub fn continuation_token(mut self, token: impl Into<String>) -> Self {
        self.continuation_token = Some(token.into());
        self
    }
}

/// What [`DurableClient::clean_entity_storage`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanEntityStorageResult {
    /// Entities with no state, work or lock that were removed.
    pub empty_entities_removed: u32,
    /// Locks held by orchestrations that no longer exist or have finished, released.
    pub orphaned_locks_released: u32,
}

impl DurableClient {
    /// Signals operation `op` of an entity: `client.signal_entity(&id, Counter::add, 5)`.
    /// Returns once the sidecar has stored the signal; the operation runs soon after.
    pub async fn signal_entity<E, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
    ) -> Result<(), ClientError> {
        self.signal(id, op.name(), &input, None).await
    }

    /// Like [`signal_entity`](Self::signal_entity), delivered no earlier than `at`.
    pub async fn signal_entity_at<E, I: Serialize, O>(
        &self,
        id: &EntityId,
        op: EntityOp<E, I, O>,
        input: I,
        at: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        self.signal(id, op.name(), &input, Some(at)).await
    }

    /// Signals an operation by name (entities of other SDKs or crates).
    pub async fn signal_entity_by_name<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
    ) -> Result<(), ClientError> {
        self.signal(id, operation, input, None).await
    }

    /// Signals an operation by name, delivered no earlier than `at`.
    pub async fn signal_entity_by_name_at<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
        at: DateTime<Utc>,
    ) -> Result<(), ClientError> {
        self.signal(id, operation, input, Some(at)).await
    }

    async fn signal<I: Serialize + ?Sized>(
        &self,
        id: &EntityId,
        operation: &str,
        input: &I,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), ClientError> {
        let request = proto::SignalEntityRequest {
            instance_id: id.to_string(),
            name: operation.to_owned(),
            input: Some(encode("entity operation input", input)?),
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            scheduled_time: at.map(to_timestamp),
            parent_trace_context: None,
            request_time: Some(to_timestamp(Utc::now())),
        };
        self.inner.clone().signal_entity(request).await?;
        Ok(())
    }

    /// An entity's state with its metadata; `None` when the entity has no state (never had
    /// any, or deleted it).
    ///
    /// ```no_run
    /// # async fn demo(client: durable::DurableClient) -> Result<(), Box<dyn std::error::Error>> {
    /// let id = durable::EntityId::new("counter", "c1")?;
    /// if let Some(counter) = client.get_entity::<i64>(&id).await? {
    ///     println!("{id} = {} (changed {})", counter.state, counter.last_modified);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get_entity<T: DeserializeOwned>(
        &self,
        id: &EntityId,
    ) -> Result<Option<EntityState<T>>, ClientError> {
        let Some(metadata) = self.get_entity_metadata(id, true).await? else {
            return Ok(None);
        };
        Ok(Some(EntityState {
            state: metadata.state()?,
            last_modified: metadata.last_modified,
            backlog_queue_size: metadata.backlog_queue_size,
            locked_by: metadata.locked_by,
        }))
    }

    /// An entity's metadata (with its JSON state when `include_state`); `None` when the
    /// entity has no state.
    pub async fn get_entity_metadata(
        &self,
        id: &EntityId,
        include_state: bool,
    ) -> Result<Option<EntityMetadata>, ClientError> {
        let request = proto::GetEntityRequest {
            instance_id: id.to_string(),
            include_state,
        };
        let response = self.inner.clone().get_entity(request).await?.into_inner();
        match response.entity.filter(|_| response.exists) {
            Some(wire) => EntityMetadata::from_wire(wire).map(Some),
            None => Ok(None),
        }
    }

    /// One page of entities matching `query`, sorted by id.
    pub async fn query_entities(
        &self,
        query: &EntityQuery,
    ) -> Result<Page<EntityMetadata>, ClientError> {
        let request = proto::QueryEntitiesRequest {
            query: Some(proto::EntityQuery {
                instance_id_starts_with: query.id_prefix.clone(),
                last_modified_from: query.modified_from.map(to_timestamp),
                last_modified_to: query.modified_to.map(to_timestamp),
                include_state: query.include_state,
                include_transient: query.include_transient,
                page_size: query
                    .page_size
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                continuation_token: query.continuation_token.clone(),
            }),
        };
        let response = self
            .inner
            .clone()
            .query_entities(request)
            .await?
            .into_inner();
        Ok(Page {
            items: response
                .entities
                .into_iter()
                .map(EntityMetadata::from_wire)
                .collect::<Result<_, _>>()?,
            continuation_token: next_token(response.continuation_token),
        })
    }

    /// Removes entities with no state, work or lock, and releases locks whose orchestration
    /// no longer exists or has finished; follows continuation tokens to the end.
    pub async fn clean_entity_storage(
        &self,
        remove_empty_entities: bool,
        release_orphaned_locks: bool,
    ) -> Result<CleanEntityStorageResult, ClientError> {
        let mut total = CleanEntityStorageResult::default();
        let mut continuation_token = None;
        loop {
            let request = proto::CleanEntityStorageRequest {
                continuation_token: continuation_token.clone(),
                remove_empty_entities,
                release_orphaned_locks,
            };
            let response = self
                .inner
                .clone()
                .clean_entity_storage(request)
                .await?
                .into_inner();
            total.empty_entities_removed +=
                u32::try_from(response.empty_entities_removed).unwrap_or(0);
            total.orphaned_locks_released +=
                u32::try_from(response.orphaned_locks_released).unwrap_or(0);
            match next_token(response.continuation_token) {
                Some(token) if continuation_token.as_deref() != Some(token.as_str()) => {
                    continuation_token = Some(token);
                }
                _ => return Ok(total),
            }
        }
    }
}
