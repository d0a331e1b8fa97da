#![allow(dead_code)]
use durable::OrchestrationContext;

use std::collections::HashSet;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _ids = [1, 2].into_iter().collect::<HashSet<u32>>();
    let _ = ctx;
    Ok(())
}

fn main() {}
