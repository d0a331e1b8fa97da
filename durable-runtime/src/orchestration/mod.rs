//! Orchestrations: the [`Orchestrator`] trait, the [`OrchestrationContext`], durable tasks and
//! the replay executor.

mod context;
mod entities;
mod executor;
mod retry;
mod task;

use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use context::{ActivityOptions, OrchestrationContext, SubOrchestratorOptions};
pub use entities::{ENTITY_LOCK_MISUSE_ERROR_TYPE, EntityLock, LockTask};
pub use executor::{NONDETERMINISM_ERROR_TYPE, execute, execute_orchestrator};
pub(crate) use executor::{Resumable, execute_resumable, history_required};
pub use retry::{RetryContext, RetryPolicy};
pub use task::{Task, TaskRef, WhenAll, WhenAny, when_all, when_any};

use crate::Result;

/// An orchestrator: durable, replayed code that coordinates activities, timers, events and
/// other orchestrations.
///
/// `#[durable::orchestrator]` implements this trait for a unit value named after the function,
/// so `ctx.call_sub_orchestrator(child, x)` and `client.schedule_new_orchestration(seq, x)`
/// check input and output types at compile time. Its future runs on the SDK's own executor,
/// never on tokio, so it need not be `Send`.
pub trait Orchestrator: Copy + Send + Sync + 'static {
    /// The input type (JSON on the wire; a missing input reads as `null`).
    type Input: Serialize + DeserializeOwned + 'static;
    /// The output type (JSON on the wire).
    type Output: Serialize + DeserializeOwned + 'static;
    /// The registered name that clients and other SDKs use.
    const NAME: &'static str;
    /// Runs the orchestrator body.
    fn run(
        ctx: OrchestrationContext,
        input: Self::Input,
    ) -> LocalBoxFuture<'static, Result<Self::Output>>;
}
