//! Function chaining: an orchestrator calls the `hello` activity three times in sequence.
//!
//! Run it with `cargo run --example activity_sequence`. With no sidecar configured,
//! `durable::run()` starts the embedded sidecar (SQLite in `.durable/durable.db`).

use std::time::Duration;

use durable::prelude::*;

/// Greets one city.
#[durable::activity]
async fn hello(_ctx: ActivityContext, name: String) -> String {
    format!("Hello {name}!")
}

/// Chains three calls: each starts only after the previous one finished.
#[durable::orchestrator]
async fn sequence(ctx: OrchestrationContext, _input: ()) -> durable::Result<Vec<String>> {
    let tokyo = ctx.call_activity(hello, "Tokyo").await?;
    let seattle = ctx.call_activity(hello, "Seattle").await?;
    let london = ctx.call_activity(hello, "London").await?;
    Ok(vec![tokyo, seattle, london])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client.schedule_new_orchestration(sequence, ()).await?;
    println!("Orchestration scheduled with ID: {id}");

    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let greetings: Vec<String> = state.output()?;
    println!(
        "Orchestration completed! Result: [{}]",
        greetings
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    runtime.shutdown().await;
    Ok(())
}
