//! Sub-orchestrations: a parent runs one child orchestration per item, in parallel, and
//! collects their results.
//!
//! Run it with `cargo run --example sub_orchestrations`.

use std::time::Duration;

use durable::prelude::*;

/// First step of a child: normalise the item.
#[durable::activity]
async fn activity_a(_ctx: ActivityContext, data: String) -> String {
    data.to_uppercase()
}

/// Second step of a child: decorate the item.
#[durable::activity]
async fn activity_b(_ctx: ActivityContext, data: String) -> String {
    format!("<{data}>")
}

/// A child orchestration: two activities in sequence.
#[durable::orchestrator]
async fn child_orchestration(ctx: OrchestrationContext, data: String) -> durable::Result<String> {
    let first = ctx.call_activity(activity_a, data).await?;
    let second = ctx.call_activity(activity_b, first).await?;
    Ok(second)
}

/// The parent: one child per item, all in parallel.
#[durable::orchestrator]
async fn parent_orchestration(
    ctx: OrchestrationContext,
    items: Vec<String>,
) -> durable::Result<Vec<String>> {
    let children = items
        .into_iter()
        .map(|item| ctx.call_sub_orchestrator(child_orchestration, item));
    Ok(durable::when_all(children).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let items = vec!["alpha".to_owned(), "beta".to_owned(), "gamma".to_owned()];
    let id = client
        .schedule_new_orchestration(parent_orchestration, items)
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
