//! Replay-safe logging: the `durable::info!` family logs only when the orchestrator is not
//! replaying, so each line appears once per orchestration however often it replays.

/// Logs at INFO level unless the orchestration is replaying.
///
/// ```no_run
/// # async fn body(ctx: durable::OrchestrationContext) {
/// durable::info!(ctx, "order {} approved", 42);
/// # }
/// ```
#[macro_export]
macro_rules! info {
    ($ctx:expr, $($arg:tt)+) => {
        if !$ctx.is_replaying() {
            $crate::__private::tracing::info!(instance_id = %$ctx.instance_id(), $($arg)+);
        }
    };
}

/// Logs at WARN level unless the orchestration is replaying.
#[macro_export]
macro_rules! warn {
    ($ctx:expr, $($arg:tt)+) => {
        if !$ctx.is_replaying() {
            $crate::__private::tracing::warn!(instance_id = %$ctx.instance_id(), $($arg)+);
        }
    };
}

/// Logs at ERROR level unless the orchestration is replaying.
#[macro_export]
macro_rules! error {
    ($ctx:expr, $($arg:tt)+) => {
        if !$ctx.is_replaying() {
            $crate::__private::tracing::error!(instance_id = %$ctx.instance_id(), $($arg)+);
        }
    };
}

/// Logs at DEBUG level unless the orchestration is replaying.
#[macro_export]
macro_rules! debug {
    ($ctx:expr, $($arg:tt)+) => {
        if !$ctx.is_replaying() {
            $crate::__private::tracing::debug!(instance_id = %$ctx.instance_id(), $($arg)+);
        }
    };
}
