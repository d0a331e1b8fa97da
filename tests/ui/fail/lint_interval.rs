#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    let _ = ctx;
    Ok(())
}

fn main() {}
