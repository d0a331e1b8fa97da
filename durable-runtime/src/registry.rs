//! The registry of orchestrators, activities and entities.
//!
//! `#[durable::orchestrator]`, `#[durable::activity]` and `#[durable::entity]` submit an
//! [`OrchestratorRegistration`], [`ActivityRegistration`] or [`EntityRegistration`] with
//! `inventory`; [`Registry::from_inventory`] collects them into sorted maps (never depending on
//! inventory's order) and fails fast on duplicate names. Code that does not use the macros
//! registers by hand with [`Registry::add_orchestrator`], [`Registry::add_activity`],
//! [`Registry::add_entity`] or the closure-based `*_fn` variants.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::{BoxFuture, LocalBoxFuture};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::activity::{Activity, ActivityContext};
use crate::entity::{Entity, EntityContext, Operation};
use crate::error::{Error, FailureDetails, Result};
use crate::orchestration::{OrchestrationContext, Orchestrator};

/// A type-erased orchestrator: JSON input in, JSON output out.
pub type OrchestratorFn = Arc<
    dyn Fn(OrchestrationContext, Option<String>) -> LocalBoxFuture<'static, Result<Option<String>>>
        + Send
        + Sync,
>;

/// A type-erased activity: JSON input in, JSON output out.
pub type ActivityFn = Arc<
    dyn Fn(ActivityContext, Option<String>) -> BoxFuture<'static, Result<Option<String>>>
        + Send
        + Sync,
>;

/// A type-erased entity: runs one operation against the state its context holds; returns the
/// operation's JSON result.
pub type EntityFn = Arc<
    dyn Fn(EntityContext, Operation) -> BoxFuture<'static, Result<Option<String>>> + Send + Sync,
>;

/// The function pointer form of [`EntityFn`], usable in `const` registrations.
pub type EntityFnPtr = fn(EntityContext, Operation) -> BoxFuture<'static, Result<Option<String>>>;

/// The function pointer form of [`OrchestratorFn`], usable in `const` registrations.
pub type OrchestratorFnPtr =
    fn(OrchestrationContext, Option<String>) -> LocalBoxFuture<'static, Result<Option<String>>>;

/// The function pointer form of [`ActivityFn`], usable in `const` registrations.
pub type ActivityFnPtr =
    fn(ActivityContext, Option<String>) -> BoxFuture<'static, Result<Option<String>>>;

/// A compile-time registration record of an orchestrator (what the macro submits).
#[derive(Clone, Copy)]
pub struct OrchestratorRegistration {
    /// The registered name.
    pub name: &'static str,
    /// Runs the orchestrator on JSON input.
    pub run: OrchestratorFnPtr,
    /// Where it was defined (`file:line`), for duplicate-name errors.
    pub location: &'static str,
}

impl OrchestratorRegistration {
    /// The record for an [`Orchestrator`] type.
    pub const fn of<O: Orchestrator>(location: &'static str) -> Self {
        Self {
            name: O::NAME,
            run: run_orchestrator::<O>,
            location,
        }
    }
}

/// A compile-time registration record of an activity (what the macro submits).
#[derive(Clone, Copy)]
pub struct ActivityRegistration {
    /// The registered name.
    pub name: &'static str,
    /// Runs the activity on JSON input.
    pub run: ActivityFnPtr,
    /// Where it was defined (`file:line`), for duplicate-name errors.
    pub location: &'static str,
}

impl ActivityRegistration {
    /// The record for an [`Activity`] type.
    pub const fn of<A: Activity>(location: &'static str) -> Self {
        Self {
            name: A::NAME,
            run: run_activity::<A>,
            location,
        }
    }
}

/// A compile-time registration record of an entity (what the macro submits).
#[derive(Clone, Copy)]
pub struct EntityRegistration {
    /// The registered name (matched case-insensitively).
    pub name: &'static str,
    /// Runs one operation.
    pub run: EntityFnPtr,
    /// Where it was defined (`file:line`), for duplicate-name errors.
    pub location: &'static str,
}

impl EntityRegistration {
    /// The record for an [`Entity`] type.
    pub const fn of<E: Entity>(location: &'static str) -> Self {
        Self {
            name: E::NAME,
            run: E::run,
            location,
        }
    }
}

inventory::collect!(OrchestratorRegistration);
inventory::collect!(ActivityRegistration);
inventory::collect!(EntityRegistration);

/// Decodes a JSON payload (absent = `null`) into `T`, naming `what` in the error.
pub(crate) fn decode_payload<T: DeserializeOwned>(what: &str, payload: Option<&str>) -> Result<T> {
    serde_json::from_str(crate::convert::json_or_null(payload)).map_err(|e| {
        Error::from_details(
            FailureDetails::new(
                "durable::InvalidInput",
                format!(
                    "{what}: the payload {} does not deserialize into `{}`: {e}",
                    payload.map_or_else(|| "(none)".to_owned(), abbreviate),
                    std::any::type_name::<T>()
                ),
            )
            .non_retriable(),
        )
    })
}

/// Encodes a value as JSON text.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::typed(
            "durable::InvalidOutput",
            format!("{what}: the value does not serialize to JSON: {e}"),
        )
    })
}

fn abbreviate(text: &str) -> String {
    const LIMIT: usize = 120;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn run_orchestrator<O: Orchestrator>(
    ctx: OrchestrationContext,
    input: Option<String>,
) -> LocalBoxFuture<'static, Result<Option<String>>> {
    Box::pin(async move {
        let what = format!("orchestrator `{}`", O::NAME);
        let input: O::Input = decode_payload(&what, input.as_deref())?;
        let output = O::run(ctx, input).await?;
        encode_payload(&what, &output).map(Some)
    })
}

fn run_activity<A: Activity>(
    ctx: ActivityContext,
    input: Option<String>,
) -> BoxFuture<'static, Result<Option<String>>> {
    Box::pin(async move {
        let what = format!("activity `{}`", A::NAME);
        let input: A::Input = decode_payload(&what, input.as_deref())?;
        let output = A::run(ctx, input).await?;
        encode_payload(&what, &output).map(Some)
    })
}

/// Two registrations used the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} `{name}` is registered twice: at {first} and at {second}; give one of them another \
     name with `#[durable::{kind}(name = \"...\")]`"
)]
pub struct RegistryError {
    /// `orchestrator`, `activity` or `entity`.
    pub kind: &'static str,
    /// The duplicated name.
    pub name: String,
    /// Where the first registration came from.
    pub first: String,
    /// Where the second registration came from.
    pub second: String,
}

#[derive(Clone)]
struct Entry<F> {
    run: F,
    location: String,
}

/// Orchestrators and activities by name.
///
/// ```
/// use durable::Registry;
/// let mut registry = Registry::new();
/// registry
///     .add_activity_fn("hello", |_ctx, input| {
///         Box::pin(async move { Ok(Some(format!("\"Hello {}!\"", input.unwrap_or_default()))) })
///     })
///     .unwrap();
/// assert_eq!(registry.activity_names().collect::<Vec<_>>(), ["hello"]);
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    orchestrators: BTreeMap<String, Entry<OrchestratorFn>>,
    activities: BTreeMap<String, Entry<ActivityFn>>,
    /// By lower-cased name: entity names are case-insensitive.
    entities: BTreeMap<String, Entry<EntityFn>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field(
                "orchestrators",
                &self.orchestrators.keys().collect::<Vec<_>>(),
            )
            .field("activities", &self.activities.keys().collect::<Vec<_>>())
            .field("entities", &self.entities.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every orchestrator and activity defined with the macros in this program.
    pub fn from_inventory() -> std::result::Result<Self, RegistryError> {
        let mut registry = Self::new();
        let mut orchestrators: Vec<_> = inventory::iter::<OrchestratorRegistration>().collect();
        orchestrators.sort_by_key(|r| (r.name, r.location));
        for r in orchestrators {
            registry.insert_orchestrator(r.name, Arc::new(r.run), r.location)?;
        }
        let mut activities: Vec<_> = inventory::iter::<ActivityRegistration>().collect();
        activities.sort_by_key(|r| (r.name, r.location));
        for r in activities {
            registry.insert_activity(r.name, Arc::new(r.run), r.location)?;
        }
        let mut entities: Vec<_> = inventory::iter::<EntityRegistration>().collect();
        entities.sort_by_key(|r| (r.name, r.location));
        for r in entities {
            registry.insert_entity(r.name, Arc::new(r.run), r.location)?;
        }
        Ok(registry)
    }

    /// Registers an orchestrator type (what the macro generates, or a hand-written impl).
    pub fn add_orchestrator<O: Orchestrator>(
        &mut self,
    ) -> std::result::Result<&mut Self, RegistryError> {
        let r = OrchestratorRegistration::of::<O>(std::any::type_name::<O>());
        self.insert_orchestrator(r.name, Arc::new(r.run), r.location)
    }

    /// Registers an activity type.
    pub fn add_activity<A: Activity>(&mut self) -> std::result::Result<&mut Self, RegistryError> {
        let r = ActivityRegistration::of::<A>(std::any::type_name::<A>());
        self.insert_activity(r.name, Arc::new(r.run), r.location)
    }

    /// Registers an entity type.
    pub fn add_entity<E: Entity>(&mut self) -> std::result::Result<&mut Self, RegistryError> {
        let r = EntityRegistration::of::<E>(std::any::type_name::<E>());
        self.insert_entity(r.name, Arc::new(r.run), r.location)
    }

    /// Registers an entity from a closure that runs one operation.
    pub fn add_entity_fn<F>(
        &mut self,
        name: impl Into<String>,
        run: F,
    ) -> std::result::Result<&mut Self, RegistryError>
    where
        F: Fn(EntityContext, Operation) -> BoxFuture<'static, Result<Option<String>>>
            + Send
            + Sync
            + 'static,
    {
        let name = name.into();
        self.insert_entity(&name, Arc::new(run), "add_entity_fn")
    }

    /// Registers an orchestrator from a closure over JSON payloads.
    pub fn add_orchestrator_fn<F>(
        &mut self,
        name: impl Into<String>,
        run: F,
    ) -> std::result::Result<&mut Self, RegistryError>
    where
        F: Fn(
                OrchestrationContext,
                Option<String>,
            ) -> LocalBoxFuture<'static, Result<Option<String>>>
            + Send
            + Sync
            + 'static,
    {
        let name = name.into();
        self.insert_orchestrator(&name, Arc::new(run), "add_orchestrator_fn")
    }

    /// Registers an activity from a closure over JSON payloads.
    pub fn add_activity_fn<F>(
        &mut self,
        name: impl Into<String>,
        run: F,
    ) -> std::result::Result<&mut Self, RegistryError>
    where
        F: Fn(ActivityContext, Option<String>) -> BoxFuture<'static, Result<Option<String>>>
            + Send
            + Sync
            + 'static,
    {
        let name = name.into();
        self.insert_activity(&name, Arc::new(run), "add_activity_fn")
    }

    /// The orchestrator registered under `name`.
    pub fn orchestrator(&self, name: &str) -> Option<&OrchestratorFn> {
        self.orchestrators.get(name).map(|e| &e.run)
    }

    /// The activity registered under `name`.
    pub fn activity(&self, name: &str) -> Option<&ActivityFn> {
        self.activities.get(name).map(|e| &e.run)
    }

    /// The entity registered under `name` (case-insensitive).
    pub fn entity(&self, name: &str) -> Option<&EntityFn> {
        self.entities.get(&name.to_lowercase()).map(|e| &e.run)
    }

    /// Registered entity names (lower-case), sorted.
    pub fn entity_names(&self) -> impl Iterator<Item = &str> {
        self.entities.keys().map(String::as_str)
    }

    /// Registered orchestrator names, sorted.
    pub fn orchestrator_names(&self) -> impl Iterator<Item = &str> {
        self.orchestrators.keys().map(String::as_str)
    }

    /// Registered activity names, sorted.
    pub fn activity_names(&self) -> impl Iterator<Item = &str> {
        self.activities.keys().map(String::as_str)
    }

    fn insert_orchestrator(
        &mut self,
        name: &str,
        run: OrchestratorFn,
        location: &str,
    ) -> std::result::Result<&mut Self, RegistryError> {
        insert(&mut self.orchestrators, "orchestrator", name, run, location)?;
        Ok(self)
    }

    fn insert_entity(
        &mut self,
        name: &str,
        run: EntityFn,
        location: &str,
    ) -> std::result::Result<&mut Self, RegistryError> {
        insert(
            &mut self.entities,
            "entity",
            &name.to_lowercase(),
            run,
            location,
        )?;
        Ok(self)
    }

    fn insert_activity(
        &mut self,
        name: &str,
        run: ActivityFn,
        location: &str,
    ) -> std::result::Result<&mut Self, RegistryError> {
        insert(&mut self.activities, "activity", name, run, location)?;
        Ok(self)
    }
}

fn insert<F>(
    map: &mut BTreeMap<String, Entry<F>>,
    kind: &'static str,
    name: &str,
    run: F,
    location: &str,
) -> std::result::Result<(), RegistryError> {
    if let Some(existing) = map.get(name) {
        return Err(RegistryError {
            kind,
            name: name.to_owned(),
            first: existing.location.clone(),
            second: location.to_owned(),
        });
    }
    map.insert(
        name.to_owned(),
        Entry {
            run,
            location: location.to_owned(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: ActivityContext, _: Option<String>) -> BoxFuture<'static, Result<Option<String>>> {
        Box::pin(async { Ok(None) })
    }

    #[test]
    fn duplicate_names_are_rejected_naming_both() {
        let mut registry = Registry::new();
        registry
            .insert_activity("a", Arc::new(noop), "x.rs:1")
            .unwrap();
        let err = registry
            .insert_activity("a", Arc::new(noop), "y.rs:2")
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("x.rs:1") && text.contains("y.rs:2"), "{text}");
    }

    #[test]
    fn entity_names_are_case_insensitive_and_unique() {
        let mut registry = Registry::new();
        let op = |_: EntityContext, _: Operation| -> BoxFuture<'static, Result<Option<String>>> {
            Box::pin(async { Ok(None) })
        };
        registry
            .insert_entity("Counter", Arc::new(op), "a.rs:1")
            .unwrap();
        assert!(registry.entity("COUNTER").is_some());
        assert_eq!(registry.entity_names().collect::<Vec<_>>(), ["counter"]);
        let err = registry
            .insert_entity("counter", Arc::new(op), "b.rs:2")
            .err()
            .unwrap();
        assert_eq!(err.kind, "entity");
        let text = err.to_string();
        assert!(text.contains("a.rs:1") && text.contains("b.rs:2"), "{text}");
        assert!(text.contains("#[durable::entity(name"), "{text}");
    }

    #[test]
    fn missing_input_reads_as_null() {
        let unit: () = decode_payload("t", None).unwrap();
        assert_eq!(unit, ());
        let err = decode_payload::<String>("activity `hello`", None).unwrap_err();
        assert!(err.details().message.contains("activity `hello`"));
    }
}
