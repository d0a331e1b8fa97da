#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::activity]
async fn hello(_ctx: OrchestrationContext, name: String) -> String {
    name
}

fn main() {}
