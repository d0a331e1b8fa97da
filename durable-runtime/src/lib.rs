//! # durable
//!
//! Durable Task orchestrations in Rust: write orchestrators and activities as plain async
//! functions; the runtime replays orchestrators deterministically from history, so they
//! survive crashes and restarts.
#![warn(missing_docs)]

extern crate self as durable;

pub mod activity;
pub mod client;
mod convert;
pub mod error;
pub mod http;
mod logging;
pub mod orchestration;
pub mod proto;
pub mod registry;
mod runtime;
pub mod sidecar;
pub mod testing;
mod versioning;
pub mod worker;

pub use activity::{Activity, ActivityContext};
pub use client::{ClientError, DurableClient, OrchestrationState, RuntimeStatus};
pub use error::{Error, FailureDetails, Result, TaskError};
pub use orchestration::{
    OrchestrationContext, Orchestrator, RetryPolicy, SubOrchestratorOptions, Task, TaskRef,
    when_all, when_any,
};
pub use registry::{Registry, RegistryError};
pub use runtime::{
    DATABASE_ENV, DEFAULT_DATABASE_PATH, EmbeddedStorage, Runtime, RuntimeBuilder, RuntimeError,
    RuntimeHandle, SIDECAR_ENV, run,
};
pub use versioning::compare_versions;

/// The names most programs need: `use durable::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Activity, ActivityContext, OrchestrationContext, Orchestrator, RetryPolicy, Task, when_all,
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

    pub use crate::registry::{ActivityRegistration, OrchestratorRegistration};
}
