//! # durable
//!
//! Durable Task orchestrations in Rust: write orchestrators and activities as plain async
//! functions; the runtime replays orchestrators deterministically from history, so they
//! survive crashes and restarts. It speaks the Durable Task sidecar protocol (the one of the
//! official Python/.NET/Go/JS SDKs, Dapr Workflow and Durable Task Scheduler) and embeds its
//! own sidecar with durable SQLite storage, so a program needs nothing else to run.
//!
//! ```no_run
//! use std::time::Duration;
//! use durable::prelude::*;
//!
//! #[durable::activity]
//! async fn hello(_ctx: ActivityContext, name: String) -> String {
//!     format!("Hello {name}!")
//! }
//!
//! #[durable::orchestrator]
//! async fn sequence(ctx: OrchestrationContext, _input: ()) -> durable::Result<Vec<String>> {
//!     let tokyo = ctx.call_activity(hello, "Tokyo").await?;
//!     let london = ctx.call_activity(hello, "London").await?;
//!     Ok(vec![tokyo, london])
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The embedded sidecar (state in `.durable/durable.db`), or the one `DURABLE_SIDECAR`
//!     // names; every `#[durable::*]` function is registered.
//!     let runtime = durable::run().await?;
//!     let client = runtime.client();
//!     let id = client.schedule_new_orchestration(sequence, ()).await?;
//!     let state = client
//!         .wait_for_orchestration_completion(&id, Duration::from_secs(30))
//!         .await?;
//!     println!("{:?}", state.output::<Vec<String>>()?);
//!     runtime.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! Where to look: [`OrchestrationContext`] (everything an orchestrator may do),
//! [`orchestrator`](macro@orchestrator) and [`activity`](macro@activity) (the macros and their compile-time checks),
//! [`Runtime::builder`] (configuration), [`DurableClient`] (managing instances),
//! [`sidecar`] (the embedded/standalone sidecar), [`http`] (the HTTP management API),
//! [`testing`] (unit-testing orchestrators against hand-built histories).
#![warn(missing_docs)]

extern crate self as durable;

/// The README's code blocks compile (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub mod activity;
pub mod client;
mod convert;
mod default_logging;
pub mod entity;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
mod input;
mod logging;
pub mod orchestration;
#[cfg(feature = "otel")]
pub mod otel;
mod panic;
pub mod registry;
mod runtime;
mod telemetry;
pub mod testing;
mod versioning;
pub mod worker;

/// The Durable Task wire protocol (the [`durable_proto`] crate): generated message types and
/// the gRPC client and server of `TaskHubSidecarService`.
pub use durable_proto as proto;

/// The sidecar (the [`durable_sidecar`] crate), embedded by [`run`] when no sidecar is
/// configured and runnable on its own as `durable sidecar`. Present with the default feature
/// `embedded`.
#[cfg(feature = "embedded")]
pub use durable_sidecar as sidecar;

pub use activity::{Activity, ActivityContext};
pub use client::{ClientError, DurableClient, OrchestrationState, RuntimeStatus};
pub use entity::{Entity, EntityContext, EntityId, EntityOp, Operation};
pub use error::{Error, FailureDetails, Result, TaskError};
pub use input::IntoInput;
pub use orchestration::{
    ActivityOptions, OrchestrationContext, Orchestrator, RetryContext, RetryPolicy,
    SubOrchestratorOptions, Task, TaskRef, when_all, when_any,
};
pub use registry::{Registry, RegistryError};
pub use runtime::{
    DATABASE_ENV, DEFAULT_DATABASE_PATH, EmbeddedStorage, EmbeddedTransport, POSTGRES_ENV, Runtime,
    RuntimeBuilder, RuntimeError, RuntimeHandle, SIDECAR_ENV, run,
};
pub use versioning::compare_versions;

/// Turns an `async fn` into an orchestrator: durable code that is replayed from history.
///
/// ```standalone_crate
/// use durable::{ActivityContext, OrchestrationContext};
///
/// #[durable::activity]
/// async fn hello(_ctx: ActivityContext, city: String) -> String {
///     format!("Hello {city}!")
/// }
///
/// /// Greets each city in turn.
/// #[durable::orchestrator]
/// async fn greetings(ctx: OrchestrationContext, cities: Vec<String>) -> durable::Result<Vec<String>> {
///     let mut results = Vec::new();
///     for city in cities {
///         // Type-checked: `hello` takes a `String` and yields a `String`.
///         results.push(ctx.call_activity(hello, city).await?);
///     }
///     Ok(results)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Nothing to register by hand: the registry finds both functions.
/// let registry = durable::Registry::from_inventory()?;
/// assert!(registry.orchestrator_names().any(|name| name == "greetings"));
///
/// // Replay a first episode: the orchestrator schedules `hello("Tokyo")`.
/// let mut history = durable::testing::HistoryBuilder::new("greetings-1");
/// history.orchestrator_started().execution_started("greetings", r#"["Tokyo"]"#);
/// let response = durable::orchestration::execute(&registry, &history.request_all_new());
/// assert_eq!(response.actions.len(), 1);
/// # Ok(())
/// # }
/// ```
///
/// # What it generates
///
/// For `async fn greetings(ctx: OrchestrationContext, input: I) -> durable::Result<O>`:
///
/// - `struct greetings;`, a unit value with the fn's visibility and docs (`Clone`, `Copy`,
///   `Debug`, `Default`, `PartialEq`, `Eq`, `Hash`). Pass it where an orchestrator is expected:
///   `ctx.call_sub_orchestrator(greetings, input)`, `client.schedule_new_orchestration(..)`.
///   Because it is a value, the name can no longer be called as a function, and a `let`
///   binding of the same name in the same module fails with E0308 ("mismatched types": the
///   `let` pattern is read as the unit struct): rename the binding.
/// - `greetings::body(ctx, input)`: the original function, unchanged, as an associated
///   `async fn` with the fn's visibility and attributes, for direct calls in tests.
/// - `impl Orchestrator for greetings` with `Input = I` (or `()` without an input parameter),
///   `Output = O` and `NAME` = the registered name.
/// - An `inventory` submission of an
///   [`OrchestratorRegistration`](registry::OrchestratorRegistration) recording the file and
///   line, which [`Registry::from_inventory`] collects. Two registrations with the same name make
///   it fail with a [`RegistryError`] naming both locations.
///
/// # Signature
///
/// - `async fn`, no `self`, no generics, no `where` clause, not `const`/`unsafe`/`extern`.
/// - First parameter: `ctx: OrchestrationContext`, by value. Then at most one input of an
///   owned type implementing `serde::Deserialize` (group several values in a struct or tuple).
/// - Returns `durable::Result<T>` (or `Result<T>` with `durable::Result` in scope, or
///   `Result<T, durable::Error>`) with `T: Serialize`. The return type is recognized by its last
///   path segment `Result`; an error type other than [`Error`] is converted as for
///   [`activity`](macro@activity).
/// - The future need not be `Send`: orchestrators run on the SDK's own single-threaded executor.
///
/// # Arguments
///
/// - `name = "..."`: the registered name (default: the fn name), e.g. to match an orchestrator
///   of another SDK: `#[durable::orchestrator(name = "ProcessOrder")]`.
///
/// # Compile errors
///
/// Every problem is reported at once, each at the offending tokens, and the function is still
/// emitted so the IDE keeps working. Signature errors: a non-`async` fn; a `self` receiver;
/// generic parameters; a missing, misplaced, borrowed or wrong context (`ActivityContext`);
/// more than one input; a borrowed input (`&str`); `impl Trait` in parameters or return type;
/// a return type that is not a `Result`. Argument errors: an unknown argument (the message lists
/// the accepted ones), a duplicate `name`, a `name` that is not a non-empty string literal.
///
/// # Nondeterminism lint
///
/// An orchestrator is replayed many times and must take the same decisions each time, so the
/// macro rejects the calls that would read the clock, randomness, the environment or the
/// outside world, each with the replay-safe replacement in the message:
///
/// ```text
/// error: `SystemTime::now` is not replay-safe in an orchestrator; use `ctx.current_utc_datetime()`
/// ```
///
/// | Forbidden (matched by trailing path segments) | Replay-safe replacement |
/// |---|---|
/// | `SystemTime::now`, `Instant::now` (std, tokio), chrono `Utc::now`, `Local::now` | `ctx.current_utc_datetime()` |
/// | `rand::thread_rng`, `rand::random`, `rand::random_range`, `rand::random_bool`, `rand::rng`, `rand::rngs::OsRng` | derive values from `ctx.new_guid()`, or draw them in an activity |
/// | `Uuid::new_v4`, `Uuid::now_v7`, `Uuid::now_v1` | `ctx.new_guid()` |
/// | `tokio::spawn`, `tokio::task::{spawn, spawn_local, spawn_blocking}`, `std::thread::{spawn, scope}` | an activity; concurrency with [`when_all`] |
/// | `tokio::time::{sleep, sleep_until}`, `std::thread::sleep` | `ctx.create_timer(duration).await` |
/// | `tokio::time::{interval, interval_at}` | `ctx.create_timer(period)` in a loop |
/// | `tokio::time::{timeout, timeout_at}` | [`when_any`] of the task and `ctx.create_timer(..)` |
/// | `std::env::{var, var_os, vars, vars_os}` | the orchestration input, or an activity |
/// | `std::fs::*`, `tokio::fs::*`, `File::open`, `File::create`, `OpenOptions::new` | an activity |
/// | `TcpStream::connect`, `TcpListener::bind`, `UdpSocket::bind`, `io::stdin`, `process::Command::new`, `reqwest::get` | an activity |
/// | `tokio::select!`, `futures::select!` (random branch choice) | [`when_any`] |
/// | `HashMap::{new, with_capacity, default, from, from_iter}`, `.collect::<HashMap<..>>()`, the same for `HashSet` (random iteration order) | `BTreeMap`, `BTreeSet` |
///
/// Matching is by trailing path segments, so calls written after a `use` are caught:
/// `SystemTime::now()` after `use std::time::SystemTime;`, `thread_rng()` after
/// `use rand::thread_rng;`. A bare name is matched only where every well-known function of that
/// name is nondeterministic (`thread_rng`, `random`, `random_range`, `random_bool`, `sleep`,
/// `sleep_until`, `spawn_local`, `spawn_blocking`, `interval_at`, `timeout_at`); ambiguous
/// short names need one qualifying segment (`thread::spawn`, `time::timeout`, `env::var`,
/// `fs::read`). A path with a prefix of your own (`crate::clock::sleep`) is not matched. The
/// arguments of function-like macros written as comma-separated expressions (`println!`,
/// `format!`, `assert!`, `vec!`) are linted too.
///
/// The lint is best effort: it sees only the tokens of the body. It cannot see a forbidden
/// call inside a helper function defined elsewhere, a trait method, a renamed import
/// (`use std::collections::HashMap as Map;`), a `HashMap` built by `Default::default()`, by
/// inference (`let m: HashMap<_, _> = iter.collect();`) or returned by a function, or code
/// inside macros whose arguments are not plain expressions. The runtime
/// check covers those: a replayed action that differs from history fails the orchestration
/// with a nondeterminism error naming both. When a use is reviewed and safe (a log line that
/// measures elapsed time, say), mark it with [`allow_nondeterminism`](macro@allow_nondeterminism).
pub use durable_macros::orchestrator;

/// Turns an `async fn` into an activity: a unit of real work scheduled by orchestrators.
///
/// ```
/// use durable::ActivityContext;
///
/// /// Charges a card; the task id makes the charge idempotent.
/// #[durable::activity(name = "ChargeCard")]
/// pub async fn charge(ctx: ActivityContext, cents: u64) -> Result<String, std::io::Error> {
///     Ok(format!("charge-{}-{}-{cents}", ctx.orchestration_id(), ctx.task_id()))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The body stays callable directly, e.g. in unit tests.
/// let ctx = ActivityContext::new("order-42", "exec-1", 3, "ChargeCard");
/// assert_eq!(charge::body(ctx, 500).await.unwrap(), "charge-order-42-3-500");
///
/// // The unit value carries the types and the registered name.
/// use durable::Activity;
/// assert_eq!(<charge as Activity>::NAME, "ChargeCard");
/// # }
/// ```
///
/// # What it generates
///
/// For `async fn charge(ctx: ActivityContext, input: I) -> Result<O, E>`:
///
/// - `struct charge;`, a unit value with the fn's visibility and docs, used as a typed handle:
///   `ctx.call_activity(charge, 500)` checks at compile time that `500` is an `I` (see [`IntoInput`])
///   and makes the task yield `O`. As for orchestrators, `charge(..)` is no longer callable
///   and a `let charge = ..` in the same module is rejected (E0308): rename the binding.
/// - `charge::body(ctx, input)`: the original function, unchanged, as an associated
///   `async fn` (same visibility and attributes), for direct calls in tests.
/// - `impl Activity for charge` with `Input = I` (or `()` without an input parameter),
///   `Output = O` and `NAME` = the registered name.
/// - An `inventory` submission of an [`ActivityRegistration`](registry::ActivityRegistration)
///   recording the file and line, which [`Registry::from_inventory`] collects; duplicate names
///   fail there with a [`RegistryError`] naming both locations.
///
/// # Signature
///
/// - `async fn`, no `self`, no generics, no `where` clause, not `const`/`unsafe`/`extern`.
/// - Zero, one or two parameters: an optional `ctx: ActivityContext` first (by value), then an
///   optional input of an owned type implementing `serde::Deserialize`.
/// - Returns any `T: Serialize` (nothing means `()`), or a `Result<T, E>` (any type whose last
///   path segment is `Result` with a type argument: `std::io::Result<T>`,
///   `durable::Result<T>`, `anyhow::Result<T>`). The error converts into [`Error`]: a
///   `durable::Error` is kept as is; a `std::error::Error` keeps its type name and source
///   chain; any other `Display` type (`String`, `anyhow::Error`) is recorded by its text; a
///   type that is none of these is a compile error at the error type ("`E` cannot be converted
///   into a `durable::Error`").
/// - The future must be `Send`: activities run on the tokio runtime.
///
/// # Arguments
///
/// - `name = "..."`: the registered name (default: the fn name), e.g. to be called by another
///   SDK's orchestrator: `#[durable::activity(name = "SayHello")]`.
///
/// # Compile errors
///
/// As for [`orchestrator`](macro@orchestrator), all at once: a non-`async` fn, `self`, generics,
/// a misplaced, borrowed or wrong context (`OrchestrationContext`), more than one input, a
/// borrowed input, `impl Trait`, unknown or duplicate arguments, a non-string `name`.
/// Activities are not linted for nondeterminism: they are where I/O, clocks and randomness
/// belong.
pub use durable_macros::activity;

/// Defines a durable entity: state addressed by an [`EntityId`] (`@name@key`) whose
/// operations run one at a time, in order.
///
/// **On a struct's `impl` block** the struct is the state (a serde type with `Default`, used
/// when the entity has no state yet). Each `pub fn` taking `&self` or `&mut self` is an
/// operation named after the method (lower-cased; `#[operation(name = "...")]` overrides);
/// `&mut self` operations write the state back when they succeed.
///
/// ```standalone_crate
/// use durable::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// pub struct Counter {
///     value: i64,
/// }
///
/// #[durable::entity]
/// impl Counter {
///     pub fn add(&mut self, amount: i64) {
///         self.value += amount;
///     }
///
///     pub fn get(&self) -> i64 {
///         self.value
///     }
///
///     /// Operations may take the context (after `self`) and return a `Result`.
///     pub fn reset(&mut self, ctx: &EntityContext) -> durable::Result<()> {
///         let log = EntityId::new("log", ctx.entity_id().key())?;
///         ctx.signal_entity_by_name(&log, "note", &format!("reset at {}", self.value))?;
///         self.value = 0;
///         Ok(())
///     }
/// }
///
/// #[durable::orchestrator]
/// async fn count(ctx: OrchestrationContext, key: String) -> durable::Result<i64> {
///     let id = Counter::id(key)?;
///     ctx.signal_entity(&id, Counter::add, 5); // typed: `add` takes an i64
///     Ok(ctx.call_entity(&id, Counter::get, ()).await?) // a Task<i64>
/// }
///
/// // The methods stay callable in tests (the generated `CounterOperations` trait in scope).
/// let mut c = Counter::default();
/// c.add(2);
/// assert_eq!(c.get(), 2);
/// ```
///
/// **On a function** `fn name(ctx: EntityContext, op: Operation) -> R` (or `async fn`), the
/// function runs every operation and keeps the state through the context:
///
/// ```standalone_crate
/// use durable::prelude::*;
///
/// #[durable::entity(name = "Counter")]
/// async fn counter(ctx: EntityContext, op: Operation) -> durable::Result<Option<i64>> {
///     let value: i64 = ctx.get_state()?.unwrap_or(0);
///     if op.is("add") {
///         ctx.set_state(&(value + op.input::<i64>()?))?;
///     } else if op.is("get") {
///         return Ok(Some(value));
///     } else if op.is("delete") {
///         ctx.delete_state();
///     } else {
///         return Err(op.unknown("counter"));
///     }
///     Ok(None)
/// }
/// ```
///
/// # What it generates
///
/// For a struct `Counter`: the trait `CounterOperations` (public) holding the operation
/// methods, implemented for `Counter`, so `counter.add(5)` works where the trait is in scope;
/// an associated constant per operation, `Counter::add: EntityOp<Counter, I, O>`, the typed
/// handle for `signal_entity`/`call_entity` (the input and result types are checked at compile
/// time); `impl Entity for Counter` (with an implicit `delete` operation that deletes the
/// state, unless one is defined); and the `inventory` registration. For a function `counter`:
/// a unit struct `counter` implementing [`Entity`] with `counter::body` the original function,
/// and the registration.
///
/// Names are case-insensitive (stored lower-cased, as in the other SDKs); `name = "..."` sets
/// the registered name, e.g. to match an entity of another language. Two entities with one name
/// fail at startup naming both. An operation that returns an error or panics fails alone: its
/// changes to the state and the messages it sent are rolled back, and the batch goes on.
///
/// # Compile errors
///
/// A trait impl or a generic `impl`; an operation taking `self` by value, more than one input,
/// a borrowed input or `impl Trait`; the context after the input; two operations with one name;
/// no operations at all; a function entity whose parameters are not `(EntityContext,
/// Operation)`; unknown or duplicate arguments. A state type without `Default`, `Serialize` or
/// `Deserialize` is reported at the `impl`'s type.
pub use durable_macros::entity;

/// Allows one reviewed nondeterministic statement or expression in an orchestrator body.
///
/// Put it on a `let` statement, an expression statement, a block, a match arm or a nested
/// item inside an [`orchestrator`](macro@orchestrator) body; the lint skips that subtree and
/// the macro removes the attribute. Written `#[durable::allow_nondeterminism]` or, after
/// `use durable::allow_nondeterminism;`, `#[allow_nondeterminism]`.
///
/// ```
/// use durable::OrchestrationContext;
///
/// #[durable::orchestrator]
/// async fn timed(ctx: OrchestrationContext) -> durable::Result<()> {
///     // Reviewed: only used for a log line, never for a decision.
///     #[durable::allow_nondeterminism]
///     let started = std::time::Instant::now();
///     ctx.create_timer(std::time::Duration::from_secs(1)).await?;
///     if !ctx.is_replaying() {
///         println!("waited {:?} of wall time", started.elapsed());
///     }
///     Ok(())
/// }
/// # fn main() {}
/// ```
///
/// Anywhere else (on an item outside an orchestrator body) it is a compile error, since it
/// would silently do nothing. It does not turn off the runtime nondeterminism check: the
/// allowed code must still schedule the same actions on every replay.
pub use durable_macros::allow_nondeterminism;

/// The names most programs need: `use durable::prelude::*;`.
pub mod prelude {
    pub use crate::client::{OrchestrationQuery, PurgeFilter, ScheduleOptions};
    pub use crate::{
        Activity, ActivityContext, ActivityOptions, Entity, EntityContext, EntityId, Operation,
        OrchestrationContext, Orchestrator, RetryPolicy, SubOrchestratorOptions, Task, when_all,
        when_any,
    };
}

/// Items the macros' generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use futures::future::{BoxFuture, LocalBoxFuture};
    pub use inventory;
    pub use serde;
    pub use tracing;

    pub use crate::registry::{ActivityRegistration, EntityRegistration, OrchestratorRegistration};

    /// An entity operation's result as JSON; `()` and `None` (JSON `null`) are no result.
    pub fn entity_result<T: serde::Serialize + ?Sized>(value: &T) -> crate::Result<Option<String>> {
        let json = crate::registry::encode_payload("the result of an entity operation", value)?;
        Ok((json != "null").then_some(json))
    }

    // How the macros turn the error of a `Result<T, E>` body into a `durable::Error`, without
    // knowing `E`: autoref specialization. `(&&&ErrorProbe::new(&e)).__durable_error_kind()`
    // finds the most specific impl: `durable::Error` as is, then std errors (type name and
    // source chain kept), then anything `Display` (its text).

    /// Carries the error type for method resolution; never holds a value.
    pub struct ErrorProbe<E>(std::marker::PhantomData<E>);

    impl<E> ErrorProbe<E> {
        /// A probe for the type of `error`.
        pub fn new(_error: &E) -> Self {
            Self(std::marker::PhantomData)
        }
    }

    /// Chosen for `durable::Error` (highest priority).
    pub trait DurableErrorKind {
        /// The conversion to use.
        fn __durable_error_kind(&self) -> DurableErrorTag {
            DurableErrorTag
        }
    }
    impl DurableErrorKind for &&ErrorProbe<crate::Error> {}

    /// Chosen for `std::error::Error` types.
    pub trait StdErrorKind {
        /// The conversion to use.
        fn __durable_error_kind(&self) -> StdErrorTag {
            StdErrorTag
        }
    }
    impl<E: std::error::Error + Send + Sync + 'static> StdErrorKind for &ErrorProbe<E> {}

    /// The fallback (lowest priority): `Display` types. Unbounded, so that an error type that
    /// is not even `Display` fails on [`IntoDurableError`] with a message of ours.
    pub trait DisplayErrorKind {
        /// The conversion to use.
        fn __durable_error_kind(&self) -> DisplayErrorTag {
            DisplayErrorTag
        }
    }
    impl<E> DisplayErrorKind for ErrorProbe<E> {}

    /// Error types recorded by their text.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be converted into a `durable::Error`",
        label = "this error type implements neither `std::error::Error` nor `Display`",
        note = "return `durable::Result<T>`, or implement `std::error::Error` or `Display` for `{Self}`"
    )]
    pub trait IntoDurableError {
        /// The conversion.
        fn into_durable_error(self) -> crate::Error;
    }
    impl<E: std::fmt::Display> IntoDurableError for E {
        fn into_durable_error(self) -> crate::Error {
            crate::Error::from_display(self)
        }
    }

    /// Keeps a `durable::Error` as it is.
    pub struct DurableErrorTag;
    impl DurableErrorTag {
        /// The conversion.
        pub fn into_error(self, error: crate::Error) -> crate::Error {
            error
        }
    }

    /// Converts a std error with `From`.
    pub struct StdErrorTag;
    impl StdErrorTag {
        /// The conversion.
        pub fn into_error<E: std::error::Error + Send + Sync + 'static>(
            self,
            error: E,
        ) -> crate::Error {
            crate::Error::from(error)
        }
    }

    /// Converts a `Display` value with [`Error::from_display`](crate::Error::from_display).
    pub struct DisplayErrorTag;
    impl DisplayErrorTag {
        /// The conversion.
        pub fn into_error<E: IntoDurableError>(self, error: E) -> crate::Error {
            error.into_durable_error()
        }
    }
}
