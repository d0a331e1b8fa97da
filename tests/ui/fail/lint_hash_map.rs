#![allow(dead_code)]
use durable::OrchestrationContext;

use std::collections::HashMap;

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<()> {
    let _seen: HashMap<String, u32> = HashMap::new();
    let _ = ctx;
    Ok(())
}

fn main() {}
