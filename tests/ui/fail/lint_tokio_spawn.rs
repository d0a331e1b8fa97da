#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    tokio::spawn(async {});
    let _ = ctx;
    Ok(())
}

fn main() {}
