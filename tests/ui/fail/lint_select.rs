#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    tokio::select! {
        _ = async {} => {}
    }
    let _ = ctx;
    Ok(())
}

fn main() {}
