#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _region = std::env::var("REGION");
    let _ = ctx;
    Ok(())
}

fn main() {}
