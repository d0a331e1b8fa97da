//! Batched fan-out: process many work items in batches of ten to bound parallelism.
//!
//! Run it with `cargo run --example batched_fanout`.

use std::time::Duration;

use durable::prelude::*;

/// The work items (25 of them).
#[durable::activity]
async fn get_work_items(_ctx: ActivityContext) -> Vec<u64> {
    (1..=25).collect()
}

/// Processes one item.
#[durable::activity]
async fn process_work_item(_ctx: ActivityContext, item: u64) -> u64 {
    item * item
}

/// At most `BATCH` activities run at once.
#[durable::orchestrator]
async fn batched_fanout_workflow(ctx: OrchestrationContext, _input: ()) -> durable::Result<u64> {
    const BATCH: usize = 10;
    let work_items = ctx.call_activity(get_work_items, ()).await?;
    let mut total = 0;
    for (number, batch) in work_items.chunks(BATCH).enumerate() {
        let tasks = batch
            .iter()
            .map(|item| ctx.call_activity(process_work_item, *item));
        let results = durable::when_all(tasks).await?;
        durable::info!(ctx, "batch {} done: {} items", number + 1, results.len());
        if !ctx.is_replaying() {
            println!("batch {} of {} items done", number + 1, results.len());
        }
        total += results.iter().sum::<u64>();
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client
        .schedule_new_orchestration(batched_fanout_workflow, ())
        .await?;
    println!("Orchestration scheduled with ID: {id}");
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let total: u64 = state.output()?;
    println!("Orchestration completed! Result: {{\"total\": {total}}}");

    runtime.shutdown().await;
    Ok(())
}
