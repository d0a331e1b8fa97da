#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _id = uuid::Uuid::new_v4();
    let _ = ctx;
    Ok(())
}

fn main() {}
