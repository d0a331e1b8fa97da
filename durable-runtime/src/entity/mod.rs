//! Durable entities: small, addressable pieces of state whose operations run one at a time.
//!
//! An entity is identified by an [`EntityId`] (`@name@key`). Its operations are defined with
//! `#[durable::entity]`, either on a struct's `impl` block (the struct is the state; each
//! `pub fn` taking `&self` or `&mut self` is an operation with a typed handle such as
//! `Counter::add`) or on a function that receives every [`Operation`] and reads and writes the
//! state through its [`EntityContext`]. Orchestrations signal, call and lock entities
//! ([`OrchestrationContext::signal_entity`](crate::OrchestrationContext::signal_entity),
//! [`call_entity`](crate::OrchestrationContext::call_entity),
//! [`lock_entities`](crate::OrchestrationContext::lock_entities)); clients signal and read
//! them ([`DurableClient::signal_entity`](crate::DurableClient::signal_entity),
//! [`get_entity`](crate::DurableClient::get_entity)).
//!
//! ```
//! use durable::entity::EntityId;
//!
//! let id = EntityId::new("Counter", "c1").unwrap();
//! assert_eq!(id.to_string(), "@counter@c1"); // names are case-insensitive: stored lower-cased
//! assert_eq!("@counter@c1".parse::<EntityId>().unwrap(), id);
//! assert!("counter".parse::<EntityId>().is_err());
//! ```

mod context;
pub(crate) mod executor;

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

pub use context::{EntityContext, MAX_ENTITY_STATE_BYTES, STATE_TOO_LARGE_ERROR_TYPE};
pub use executor::ENTITY_NOT_FOUND_ERROR_TYPE;

use crate::error::{Error, FailureDetails, Result};
use crate::registry::decode_payload;

/// The error type of an operation an entity does not have.
pub const UNKNOWN_OPERATION_ERROR_TYPE: &str = "durable::UnknownEntityOperation";

/// A durable entity: its registered name and how it runs one operation.
///
/// `#[durable::entity]` implements this trait; a hand-written implementation can be
/// registered with [`Registry::add_entity`](crate::Registry::add_entity).
pub trait Entity: Send + Sync + 'static {
    /// The registered name (lower-case), the `name` part of the entity's ids.
    const NAME: &'static str;

    /// Runs one operation against the state held by `ctx`; returns the operation's result as
    /// JSON (`None` = no result).
    fn run(ctx: EntityContext, operation: Operation) -> BoxFuture<'static, Result<Option<String>>>;

    /// The id of this entity with the given key.
    ///
    /// ```
    /// # use durable::entity::{Entity, EntityContext, Operation};
    /// # struct Counter;
    /// # impl Entity for Counter {
    /// #     const NAME: &'static str = "counter";
    /// #     fn run(_: EntityContext, _: Operation) -> futures::future::BoxFuture<'static, durable::Result<Option<String>>> { Box::pin(async { Ok(None) }) }
    /// # }
    /// assert_eq!(Counter::id("c1").unwrap().to_string(), "@counter@c1");
    /// ```
    fn id(key: impl Into<String>) -> std::result::Result<EntityId, InvalidEntityId>
    where
        Self: Sized,
    {
        EntityId::new(Self::NAME, key)
    }
}

/// Why a string is not an entity id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid entity id `{id}`: {reason}; an entity id is `@name@key` (e.g. `@counter@c1`), name and key non-empty and without `@`"
)]
pub struct InvalidEntityId {
    id: String,
    reason: &'static str,
}

/// The id of one entity: its (lower-cased) name and its key, written `@name@key`.
///
/// Ids serialize as that string, so they can be passed in inputs and outputs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId {
    /// `@name@key`, kept whole: it is what the wire carries and what ids sort by.
    text: String,
    /// Where the key starts in `text`.
    key_start: usize,
}

impl EntityId {
    /// The entity `name` (matched case-insensitively: stored lower-cased) with `key`.
    pub fn new(
        name: impl Into<String>,
        key: impl Into<String>,
    ) -> std::result::Result<Self, InvalidEntityId> {
        let (name, key) = (name.into(), key.into());
        let invalid = |reason| InvalidEntityId {
            id: format!("@{name}@{key}"),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("the name is empty"));
        }
        if name.contains('@') {
            return Err(invalid("the name contains `@`"));
        }
        if key.is_empty() {
            return Err(invalid("the key is empty"));
        }
        if key.contains('@') {
            return Err(invalid("the key contains `@`"));
        }
        let name = name.to_lowercase();
        Ok(Self {
            key_start: name.len() + 2,
            text: format!("@{name}@{key}"),
        })
    }

    /// The id of entity type `E` with `key`.
    pub fn of<E: Entity>(key: impl Into<String>) -> std::result::Result<Self, InvalidEntityId> {
        Self::new(E::NAME, key)
    }

    /// The entity's name (lower-case).
    pub fn name(&self) -> &str {
        &self.text[1..self.key_start - 1]
    }

    /// The entity's key.
    pub fn key(&self) -> &str {
        &self.text[self.key_start..]
    }

    /// `@name@key`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for EntityId {
    type Err = InvalidEntityId;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let invalid = |reason| InvalidEntityId {
            id: text.to_owned(),
            reason,
        };
        let rest = text
            .strip_prefix('@')
            .ok_or_else(|| invalid("it does not start with `@`"))?;
        let (name, key) = rest
            .split_once('@')
            .ok_or_else(|| invalid("there is no `@` between name and key"))?;
        Self::new(name, key).map_err(|e| invalid(e.reason))
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({})", self.text)
    }
}

impl serde::Serialize for EntityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for EntityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A typed handle to one operation of entity `E`, taking `I` and returning `O`.
///
/// `#[durable::entity]` on an `impl` block generates one per operation, named after the method
/// (`Counter::add`), so `ctx.call_entity(&id, Counter::add, 5)` checks the input and result
/// types at compile time. Operations of entities written elsewhere are called by name
/// instead (`call_entity_by_name`).
pub struct EntityOp<E, I, O> {
    name: &'static str,
    _types: PhantomData<fn(E, I) -> O>,
}

impl<E, I, O> EntityOp<E, I, O> {
    /// The handle of operation `name` (what the macro generates).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// The operation's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<E, I, O> Clone for EntityOp<E, I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, I, O> Copy for EntityOp<E, I, O> {}

impl<E, I, O> fmt::Debug for EntityOp<E, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityOp({})", self.name)
    }
}

/// One operation an entity is asked to run: its name and JSON input.
///
/// ```
/// use durable::entity::Operation;
///
/// let op = Operation::new("Add", Some("5".into()));
/// assert!(op.is("add")); // operation names match case-insensitively
/// assert_eq!(op.input::<i64>().unwrap(), 5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    name: String,
    input: Option<String>,
}

impl Operation {
    /// An operation with a JSON input (`None` = no input); the worker builds these, tests of
    /// entity functions can too.
    pub fn new(name: impl Into<String>, input: Option<String>) -> Self {
        Self {
            name: name.into(),
            input,
        }
    }

    /// The operation's name, as the caller wrote it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is operation `name` (case-insensitive, as in the other SDKs).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The input, deserialized (a missing input reads as `null`).
    pub fn input<T: DeserializeOwned>(&self) -> Result<T> {
        decode_payload(
            &format!("the input of entity operation `{}`", self.name),
            self.input.as_deref(),
        )
    }

    /// The input as JSON text, if any.
    pub fn raw_input(&self) -> Option<&str> {
        self.input.as_deref()
    }

    /// The error to return for an operation the entity does not have.
    pub fn unknown(&self, entity: &str) -> Error {
        Error::from_details(
            FailureDetails::new(
                UNKNOWN_OPERATION_ERROR_TYPE,
                format!(
                    "entity `{entity}` has no operation `{}`; check the operation name",
                    self.name
                ),
            )
            .non_retriable(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate_and_round_trip() {
        let id = EntityId::new("Account", "alice").unwrap();
        assert_eq!(id.name(), "account");
        assert_eq!(id.key(), "alice");
        assert_eq!(id.as_str(), "@account@alice");
        for bad in ["counter", "@counter", "@@k", "@counter@", "counter@k", ""] {
            let err = bad.parse::<EntityId>().unwrap_err();
            assert!(err.to_string().contains("@name@key"), "{err}");
        }
        let err = EntityId::new("a", "b@c").unwrap_err();
        assert!(err.to_string().contains("the key contains `@`"), "{err}");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"@account@alice\"");
        assert_eq!(serde_json::from_str::<EntityId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<EntityId>("\"nope\"").is_err());
    }

    #[test]
    fn ids_sort_like_their_text() {
        let mut ids = [
            EntityId::new("b", "1").unwrap(),
            EntityId::new("a", "2").unwrap(),
            EntityId::new("a", "10").unwrap(),
        ];
        ids.sort();
        let texts: Vec<&str> = ids.iter().map(EntityId::as_str).collect();
        assert_eq!(texts, ["@a@10", "@a@2", "@b@1"]);
    }
}
