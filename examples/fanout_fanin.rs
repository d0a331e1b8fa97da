//! Fan-out/fan-in: process a dynamic number of work items in parallel, then sum the results.
//!
//! Run it with `cargo run --example fanout_fanin`.

use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// Returns the work to do; its size is only known at run time.
#[durable::activity]
async fn get_work_items(_ctx: ActivityContext) -> Vec<String> {
    let count = 5 + std::process::id() % 6;
    (0..count).map(|i| format!("work item {i}")).collect()
}

/// Processes one work item (here: pretends to work, then returns a number).
#[durable::activity]
async fn process_work_item(_ctx: ActivityContext, item: String) -> u64 {
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("processed {item}");
    item.len() as u64
}

/// What the orchestration returns.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    work_items: Vec<String>,
    results: Vec<u64>,
    total: u64,
}

/// Fans out one activity per work item and fans in all the results.
#[durable::orchestrator]
async fn fanout_fanin(ctx: OrchestrationContext, _input: ()) -> durable::Result<Summary> {
    let work_items = ctx.call_activity(get_work_items, ()).await?;
    let tasks = work_items
        .iter()
        .map(|item| ctx.call_activity(process_work_item, item.clone()));
    let results = durable::when_all(tasks).await?;
    let total = results.iter().sum();
    Ok(Summary {
        work_items,
        results,
        total,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client.schedule_new_orchestration(fanout_fanin, ()).await?;
    println!("Orchestration scheduled with ID: {id}");
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let summary: Summary = state.output()?;
    println!("Orchestration completed! Result: {summary:?}");

    runtime.shutdown().await;
    Ok(())
}
