//! Activities: the [`Activity`] trait and the [`ActivityContext`] they receive.

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::Result;

/// An activity: a unit of real work (I/O, computation) that an orchestration schedules.
///
/// `#[durable::activity]` implements this trait for a unit value named after the function, so
/// `ctx.call_activity(hello, "Tokyo")` checks the input and output types at compile time.
/// Activities run at least once: make them idempotent where it matters.
pub trait Activity: Copy + Send + Sync + 'static {
    /// The input type (JSON on the wire; a missing input reads as `null`).
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The output type (JSON on the wire).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The registered name that other SDKs and the sidecar see.
    const NAME: &'static str;
    /// Runs the activity body.
    fn run(ctx: ActivityContext, input: Self::Input) -> BoxFuture<'static, Result<Self::Output>>;
}

/// What an activity knows about the task it runs for, and whether it is still wanted.
///
/// ```
/// let ctx = durable::ActivityContext::new("order-42", "exec-1", 3, "charge_card");
/// assert_eq!(ctx.orchestration_id(), "order-42");
/// assert_eq!(ctx.task_id(), 3);
/// assert!(!ctx.is_cancelled());
/// ```
#[derive(Clone, Debug)]
pub struct ActivityContext {
    orchestration_id: String,
    execution_id: String,
    task_id: i32,
    name: String,
    version: String,
    cancellation: CancellationToken,
}

impl ActivityContext {
    /// A context for the activity `name` scheduled as task `task_id` of an orchestration.
    /// The worker builds these; tests of activity bodies can build their own.
    pub fn new(
        orchestration_id: impl Into<String>,
        execution_id: impl Into<String>,
        task_id: i32,
        name: impl Into<String>,
    ) -> Self {
        Self {
            orchestration_id: orchestration_id.into(),
            execution_id: execution_id.into(),
            task_id,
            name: name.into(),
            version: String::new(),
            cancellation: CancellationToken::new(),
        }
    }

    /// This context, for an activity scheduled at `version`.
    pub(crate) fn with_version(mut self, version: String) -> Self {
        self.version = version;
        self
    }

    /// This context, cancelled by `cancellation`.
    pub(crate) fn with_cancellation(mut self, cancellation: CancellationToken) -> Self {
        self.cancellation = cancellation;
        self
    }

    /// The instance id of the orchestration that scheduled this activity.
    pub fn orchestration_id(&self) -> &str {
        &self.orchestration_id
    }

    /// The execution id of that orchestration (changes with continue-as-new).
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// The task's id within the orchestration (unique per scheduling, stable across retries of
    /// delivery): together with [`orchestration_id`](Self::orchestration_id), an idempotency key.
    pub fn task_id(&self) -> i32 {
        self.task_id
    }

    /// The activity's registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version the activity was scheduled at: the orchestration's version unless the call
    /// gave another with [`ActivityOptions::version`](crate::ActivityOptions::version); empty
    /// when neither has one.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the activity is no longer wanted: its orchestration was terminated, finished or
    /// purged (or continued as new) while it ran, or the worker is shutting down. Long
    /// activities should check it (or await [`cancelled`](Self::cancelled)) and stop early.
    ///
    /// Cancellation is cooperative: an activity that ignores it runs to the end. After a
    /// cancellation for shutdown, a successful result is still reported, while a failure is
    /// not: the work item goes back to the sidecar and runs again on another worker, so an
    /// activity that stops half-way must be safe to run again (idempotent).
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// Resolves when the activity is no longer wanted (see [`is_cancelled`](Self::is_cancelled)).
    ///
    /// ```
    /// # async fn demo(ctx: durable::ActivityContext) -> durable::Result<u32> {
    /// use std::time::Duration;
    /// let mut done = 0;
    /// while done < 600 {
    ///     tokio::select! {
    ///         _ = ctx.cancelled() => return Err(durable::Error::typed("Cancelled", "no longer wanted")),
    ///         _ = tokio::time::sleep(Duration::from_secs(1)) => done += 1,
    ///     }
    /// }
    /// Ok(done)
    /// # }
    /// ```
    pub async fn cancelled(&self) {
        self.cancellation.cancelled().await;
    }

    /// Signals cancellation to this context and its clones. The worker does this; tests of
    /// activity bodies can too.
    ///
    /// ```
    /// let ctx = durable::ActivityContext::new("order-42", "exec-1", 3, "charge_card");
    /// let seen_by_the_body = ctx.clone();
    /// ctx.cancel();
    /// assert!(seen_by_the_body.is_cancelled());
    /// ```
    pub fn cancel(&self) {
        self.cancellation.cancel();
    }
}
