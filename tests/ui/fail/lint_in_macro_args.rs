#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    println!("{:?}", std::time::SystemTime::now());
    let _ = ctx;
    Ok(())
}

fn main() {}
