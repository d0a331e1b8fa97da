//! Durable entities: a counter written twice, as a struct (its state) with typed operations
//! and as a function that handles every operation, used from an orchestration and from the
//! client.
//!
//! Run it with `cargo run --example entity_counter`.

use std::time::Duration;

use durable::prelude::*;
use serde::{Deserialize, Serialize};

/// Struct style: the struct is the state, each `pub fn` with `&self`/`&mut self` an operation.
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    value: i64,
}

#[durable::entity]
impl Counter {
    /// Adds `amount`.
    pub fn add(&mut self, amount: i64) {
        self.value += amount;
    }

    /// Subtracts `amount`.
    pub fn subtract(&mut self, amount: i64) {
        self.value -= amount;
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.value
    }

    /// Back to zero.
    pub fn reset(&mut self) {
        self.value = 0;
    }
}

/// Function style: one function receives every operation and keeps the state in the context.
#[durable::entity]
fn tally(ctx: EntityContext, op: Operation) -> durable::Result<Option<i64>> {
    let state: i64 = ctx.get_state()?.unwrap_or(0);
    if op.is("add") {
        ctx.set_state(&(state + op.input::<i64>()?))?;
    } else if op.is("subtract") {
        ctx.set_state(&(state - op.input::<i64>()?))?;
    } else if op.is("get") {
        return Ok(Some(state));
    } else if op.is("reset") {
        ctx.set_state(&0)?;
    } else {
        return Err(op.unknown("tally"));
    }
    Ok(None)
}

/// Signals both counters (fire and forget), then calls them and waits for their values.
#[durable::orchestrator]
async fn count(ctx: OrchestrationContext, key: String) -> durable::Result<String> {
    let counter = Counter::id(key.clone())?;
    let tally_id = tally::id(key)?; // function entities have ids too
    ctx.signal_entity(&counter, Counter::add, 5); // typed: `add` takes an i64
    ctx.signal_entity_by_name(&tally_id, "add", 5);
    ctx.signal_entity(&counter, Counter::subtract, 2);
    let struct_value = ctx.call_entity(&counter, Counter::get, ()).await?; // a Task<i64>
    let fn_value: Option<i64> = ctx.call_entity_by_name(&tally_id, "get", ()).await?;
    Ok(format!(
        "Counter value: {struct_value}, tally value: {}",
        fn_value.unwrap_or_default()
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runtime = durable::run().await?;
    let client = runtime.client();
    let key = format!("my-counter-{}", std::process::id());

    let id = client
        .schedule_new_orchestration(count, key.clone())
        .await?;
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(30))
        .await?;
    let result: String = state.output()?;
    println!("Orchestration completed! Result: {result}");

    // From the client: signal, then read the state once the operation has run.
    let counter = Counter::id(key)?;
    client.signal_entity(&counter, Counter::add, 10).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let current = client.get_entity::<Counter>(&counter).await?;
        if let Some(current) = current.filter(|c| c.state.value == 13) {
            println!(
                "Entity {counter} from the client: value {} (last modified {})",
                current.state.value, current.last_modified
            );
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the signal never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    runtime.shutdown().await;
    Ok(())
}
