//! Retries: an activity that fails twice then succeeds under a retry policy, and one that
//! exhausts its retries and is handled by the orchestrator.
//!
//! Run it with `cargo run --example retries`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use durable::TaskError;
use durable::prelude::*;

/// Attempts of the flaky activity so far.
static FLAKY_ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails on its first two attempts.
#[durable::activity]
async fn flaky(_ctx: ActivityContext) -> Result<String, String> {
    let attempt = FLAKY_ATTEMPTS.fetch_add(1, Ordering::SeqCst) + 1;
    println!("flaky: attempt {attempt}");
    if attempt < 3 {
        return Err(format!("transient failure on attempt {attempt}"));
    }
    Ok(format!("succeeded on attempt {attempt}"))
}

/// Always fails.
#[durable::activity]
async fn broken(_ctx: ActivityContext) -> Result<String, String> {
    println!("broken: failing again");
    Err("the service is down".to_owned())
}

/// Retries `flaky` until it works; retries `broken` twice, then compensates.
#[durable::orchestrator]
async fn retry_workflow(ctx: OrchestrationContext, _input: ()) -> durable::Result<Vec<String>> {
    let policy = RetryPolicy::new(5, Duration::from_millis(500)).backoff_coefficient(2.0);
    let flaky_result = ctx.call_activity_with_retry(flaky, (), policy).await?;

    let policy = RetryPolicy::new(2, Duration::from_millis(500));
    let broken_result = match ctx.call_activity_with_retry(broken, (), policy).await {
        Ok(value) => value,
        Err(TaskError::RetriesExhausted {
            attempts, details, ..
        }) => {
            format!("handled after {attempts} attempts: {}", details.message)
        }
        Err(other) => return Err(other.into()),
    };
    Ok(vec![flaky_result, broken_result])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client
        .schedule_new_orchestration(retry_workflow, ())
        .await?;
    println!("Orchestration scheduled with ID: {id}");
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let results: Vec<String> = state.output()?;
    println!("Orchestration completed! Result: {results:?}");

    runtime.shutdown().await;
    Ok(())
}
