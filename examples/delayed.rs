//! Durable timers: wait between two activities. The wait survives restarts: the timer lives
//! in the sidecar, not in this process.
//!
//! Run it with `cargo run --example delayed`.

use std::time::Duration;

use durable::prelude::*;

/// The first step.
#[durable::activity]
async fn start_activity(_ctx: ActivityContext) -> String {
    println!("started");
    "started".to_owned()
}

/// The step after the delay.
#[durable::activity]
async fn continue_activity(_ctx: ActivityContext) -> String {
    println!("continued");
    "continued".to_owned()
}

/// Start, wait two seconds of durable time, continue.
#[durable::orchestrator]
async fn delayed_workflow(ctx: OrchestrationContext, _input: ()) -> durable::Result<String> {
    ctx.call_activity(start_activity, ()).await?;
    let before = ctx.current_utc_datetime();
    ctx.create_timer(Duration::from_secs(2)).await?;
    let waited = ctx.current_utc_datetime() - before;
    ctx.call_activity(continue_activity, ()).await?;
    Ok(format!(
        "Done after a durable wait of {} ms",
        waited.num_milliseconds()
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client
        .schedule_new_orchestration(delayed_workflow, ())
        .await?;
    println!("Orchestration scheduled with ID: {id}");
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let result: String = state.output()?;
    println!("Orchestration completed! Result: {result}");

    runtime.shutdown().await;
    Ok(())
}
