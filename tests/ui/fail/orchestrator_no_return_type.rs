#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::orchestrator]
async fn flow(_ctx: OrchestrationContext) {}

fn main() {}
