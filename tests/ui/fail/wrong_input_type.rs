#![allow(dead_code)]
use durable::OrchestrationContext;

#[durable::activity]
async fn hello(name: String) -> String {
    name
}

#[durable::orchestrator]
async fn flow(ctx: OrchestrationContext) -> durable::Result<String> {
    Ok(ctx.call_activity(hello, 42).await?)
}

async fn start(client: durable::DurableClient) -> Result<String, durable::ClientError> {
    client.schedule_new_orchestration(flow, 42).await
}

fn main() {}
