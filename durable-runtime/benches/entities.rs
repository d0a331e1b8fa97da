//! Entity throughput through the embedded sidecar (SQLite on disk, the default storage).
//!
//! `cargo bench -p durable-runtime --bench entities` prints, per scenario, operations per
//! second from the first signal until the entity state shows every operation done:
//!
//! - 10,000 signals to one entity, sent by the client (64 in flight);
//! - 10,000 signals to one entity, sent by one orchestration (one episode);
//! - 10,000 signals spread over 1,000 entities, sent by the client;
//! - 1,000 `call_entity` round trips, one after another, from one orchestration.
//!
//! `ENTITY_BENCH_SCALE=0.1` runs a tenth of every scenario (a quick check).

use std::time::{Duration, Instant};

use durable::client::EntityQuery;
use durable::prelude::*;
use durable::{DurableClient, RuntimeHandle};
use serde::{Deserialize, Serialize};

/// The entity every scenario uses.
#[derive(Default, Serialize, Deserialize)]
pub struct Tally {
    count: u64,
}

#[durable::entity]
impl Tally {
    /// Counts one operation.
    pub fn add(&mut self, n: u64) {
        self.count += n;
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.count
    }
}

/// Sends `n` signals to one entity from inside one orchestration episode.
#[durable::orchestrator]
async fn signal_many(ctx: OrchestrationContext, (key, n): (String, u64)) -> durable::Result<()> {
    let id = Tally::id(key)?;
    for _ in 0..n {
        ctx.signal_entity(&id, Tally::add, 1);
    }
    Ok(())
}

/// `n` calls one after another.
#[durable::orchestrator]
async fn call_many(ctx: OrchestrationContext, (key, n): (String, u64)) -> durable::Result<u64> {
    let id = Tally::id(key)?;
    let mut last = 0;
    for _ in 0..n {
        ctx.call_entity(&id, Tally::add, 1).await?;
        last = ctx.call_entity(&id, Tally::get, ()).await?;
    }
    Ok(last)
}

const WAIT: Duration = Duration::from_secs(600);

async fn wait_count(client: &DurableClient, key: &str, target: u64) -> anyhow::Result<()> {
    let id = Tally::id(key)?;
    let deadline = Instant::now() + WAIT;
    loop {
        let count = client
            .get_entity::<Tally>(&id)
            .await?
            .map_or(0, |t| t.state.count);
        if count >= target {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {count} of {target} operations ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn client_signals(client: &DurableClient, keys: &[String], n: u64) -> anyhow::Result<()> {
    const IN_FLIGHT: u64 = 64;
    let mut tasks = Vec::new();
    for lane in 0..IN_FLIGHT {
        let client = client.clone();
        let keys = keys.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut i = lane;
            while i < n {
                let id = Tally::id(keys[(i as usize) % keys.len()].clone())?;
                client.signal_entity(&id, Tally::add, 1).await?;
                i += IN_FLIGHT;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn report(label: &str, operations: u64, elapsed: Duration) {
    println!(
        "{label:<58} {operations:>7} ops in {:>7.3} s = {:>9.0} ops/s",
        elapsed.as_secs_f64(),
        operations as f64 / elapsed.as_secs_f64()
    );
}

async fn one_entity_from_client(client: &DurableClient, run: &str, n: u64) -> anyhow::Result<()> {
    let key = format!("{run}-client");
    let started = Instant::now();
    client_signals(client, std::slice::from_ref(&key), n).await?;
    wait_count(client, &key, n).await?;
    report(
        "signals to one entity, from the client",
        n,
        started.elapsed(),
    );
    Ok(())
}

async fn one_entity_from_orchestration(
    client: &DurableClient,
    run: &str,
    n: u64,
) -> anyhow::Result<()> {
    let key = format!("{run}-orchestration");
    let started = Instant::now();
    client
        .schedule_new_orchestration(signal_many, (key.clone(), n))
        .await?;
    wait_count(client, &key, n).await?;
    report(
        "signals to one entity, from one orchestration",
        n,
        started.elapsed(),
    );
    Ok(())
}

async fn many_entities(
    client: &DurableClient,
    run: &str,
    n: u64,
    entities: u64,
) -> anyhow::Result<()> {
    let keys: Vec<String> = (0..entities).map(|i| format!("{run}-many-{i}")).collect();
    let started = Instant::now();
    client_signals(client, &keys, n).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut done = 0;
        let mut query = EntityQuery::new()
            .id_prefix(format!("@tally@{run}-many-"))
            .include_state(true)
            .page_size(1000);
        loop {
            let page = client.query_entities(&query).await?;
            done += page
                .items
                .iter()
                .map(|e| e.state::<Tally>().map_or(0, |t| t.count))
                .sum::<u64>();
            match page.continuation_token {
                Some(token) => query = query.continuation_token(token),
                None => break,
            }
        }
        if done >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} operations ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report(
        &format!("signals spread over {entities} entities, from the client"),
        n,
        started.elapsed(),
    );
    Ok(())
}

async fn round_trips(client: &DurableClient, run: &str, n: u64) -> anyhow::Result<()> {
    let key = format!("{run}-calls");
    let started = Instant::now();
    let id = client
        .schedule_new_orchestration(call_many, (key, n / 2))
        .await?;
    let state = client.wait_for_orchestration_completion(&id, WAIT).await?;
    anyhow::ensure!(state.output::<u64>()? == n / 2, "{state:?}");
    report(
        "call_entity round trips, one after another",
        n,
        started.elapsed(),
    );
    Ok(())
}

async fn start(dir: &std::path::Path) -> anyhow::Result<RuntimeHandle> {
    Ok(durable::Runtime::builder()
        .ignore_environment()
        .default_logging(false)
        .database(dir.join("bench.db"))
        .start()
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let scale: f64 = std::env::var("ENTITY_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let scaled = |n: u64| ((n as f64 * scale) as u64).max(10);
    let dir = std::env::temp_dir().join(format!("durable-entity-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = start(&dir).await?;
    let client = runtime.client();
    println!(
        "entity bench: embedded sidecar, SQLite on disk ({})",
        dir.display()
    );
    let run = format!("r{}", std::process::id());
    one_entity_from_client(&client, &run, scaled(10_000)).await?;
    one_entity_from_orchestration(&client, &run, scaled(10_000)).await?;
    many_entities(&client, &run, scaled(10_000), scaled(1_000)).await?;
    round_trips(&client, &run, scaled(1_000)).await?;
    runtime.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
