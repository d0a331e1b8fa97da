#![allow(dead_code)]
use durable::OrchestrationContext;

use std::time::SystemTime;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _now = SystemTime::now();
    let _ = ctx;
    Ok(())
}

fn main() {}
