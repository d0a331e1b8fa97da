//! External events: several named events, events that arrive before they are awaited, one
//! event waited with a timeout, and `send_event` from one orchestration to another.
//!
//! Run it with `cargo run --example external_events`.

use std::time::Duration;

use durable::prelude::*;

/// Slow preparation, so that the client's events arrive before they are awaited.
#[durable::activity]
async fn prepare(_ctx: ActivityContext) {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Waits for `first` and `second` (raised early by the client), `third` with a timeout
/// (never raised), and `ping` (sent by another orchestration).
#[durable::orchestrator]
async fn collector(ctx: OrchestrationContext, _input: ()) -> durable::Result<Vec<String>> {
    ctx.call_activity(prepare, ()).await?;
    let mut log = Vec::new();

    let first: String = ctx.wait_for_external_event("first").await?;
    log.push(format!("first: {first}"));
    let second: String = ctx.wait_for_external_event("Second").await?; // names ignore case
    log.push(format!("second: {second}"));

    let third: Task<String> = ctx.wait_for_external_event("third");
    let timeout = ctx.create_timer(Duration::from_secs(1));
    match durable::when_any([third.handle(), timeout.handle()]).await {
        0 => log.push(format!("third: {}", third.await?)),
        _ => log.push("third: timed out".to_owned()),
    }

    let ping: String = ctx.wait_for_external_event("ping").await?;
    log.push(format!("ping: {ping}"));
    Ok(log)
}

/// Sends `ping` to the collector instance.
#[durable::orchestrator]
async fn pinger(ctx: OrchestrationContext, target: String) -> durable::Result<()> {
    ctx.send_event(
        &target,
        "ping",
        &format!("hello from {}", ctx.instance_id()),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();

    let id = client.schedule_new_orchestration(collector, ()).await?;
    println!("Orchestration scheduled with ID: {id}");
    client
        .raise_orchestration_event(&id, "first", &"one")
        .await?;
    client
        .raise_orchestration_event(&id, "second", &"two")
        .await?;
    println!("raised `first` and `second` before the orchestrator waits for them");

    client
        .schedule_new_orchestration(pinger, id.clone())
        .await?;

    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let log: Vec<String> = state.output()?;
    for line in &log {
        println!("{line}");
    }
    println!("Orchestration completed! Result: {log:?}");

    runtime.shutdown().await;
    Ok(())
}
