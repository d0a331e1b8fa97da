#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(_ctx: &OrchestrationContext) -> durable::Result<()> {
    Ok(())
}

fn main() {}
