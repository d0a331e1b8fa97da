#![allow(dead_code)]
use durable::OrchestrationContext;

use rand::random;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _dice: u8 = random();
    let _ = ctx;
    Ok(())
}

fn main() {}
