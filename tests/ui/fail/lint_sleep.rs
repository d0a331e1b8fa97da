#![allow(dead_code)]
use durable::OrchestrationContext;

use std::time::Duration;
use tokio::time::sleep;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    sleep(Duration::from_secs(1)).await;
    let _ = ctx;
    Ok(())
}

fn main() {}
