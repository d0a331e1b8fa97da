use durable::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[durable::entity]
impl Counter {
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }
}

#[durable::orchestrator]
async fn count(ctx: OrchestrationContext) -> durable::Result<()> {
    let id = Counter::id("c")?;
    ctx.call_entity(&id, Counter::add, "five").await?;
    Ok(())
}

fn main() {}
