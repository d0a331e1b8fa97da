//! The durable side: the embedded sidecar with its defaults (in-process transport, SQLite on
//! disk with `synchronous=FULL`), as `durable::run()` starts it.

use std::time::Duration;

use durable::DurableClient;
use durable::prelude::*;

use crate::scenarios::{self, Peer};

const CITIES: [&str; 3] = ["Tokyo", "Seattle", "London"];

#[durable::activity]
async fn hello(_ctx: ActivityContext, city: String) -> String {
    format!("Hello {city}!")
}

/// Greets three cities, one after another.
#[durable::orchestrator]
async fn sequence(ctx: OrchestrationContext, _: ()) -> durable::Result<Vec<String>> {
    let mut out = Vec::new();
    for city in CITIES {
        out.push(ctx.call_activity(hello, city.to_string()).await?);
    }
    Ok(out)
}

#[durable::activity]
async fn double(_ctx: ActivityContext, n: u64) -> u64 {
    2 * n
}

/// Calls `double` `n` times in parallel and sums the results.
#[durable::orchestrator]
async fn fan_out(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    let tasks: Vec<_> = (0..n).map(|i| ctx.call_activity(double, i)).collect();
    Ok(durable::when_all(tasks).await?.into_iter().sum())
}

#[derive(Clone)]
struct Durable(DurableClient);

impl Peer for Durable {
    async fn chain(&self) -> anyhow::Result<()> {
        let id = self.0.schedule_new_orchestration(sequence, ()).await?;
        let state = self
            .0
            .wait_for_orchestration_completion(&id, Duration::from_secs(120))
            .await?;
        let out: Vec<String> = state.output()?;
        anyhow::ensure!(
            out.iter().eq(CITIES.map(|c| format!("Hello {c}!")).iter()),
            "chain {id}: wrong output {out:?}"
        );
        Ok(())
    }

    async fn fan_out(&self, n: u64) -> anyhow::Result<()> {
        let id = self.0.schedule_new_orchestration(fan_out, n).await?;
        let state = self
            .0
            .wait_for_orchestration_completion(&id, Duration::from_secs(3600))
            .await?;
        let sum: u64 = state.output()?;
        anyhow::ensure!(sum == n * (n - 1), "fan-out {id}: wrong sum {sum}");
        Ok(())
    }
}

pub(crate) async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("peers-bench-durable-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let runtime = durable::Runtime::builder()
        .database(dir.join("durable.db"))
        .ignore_environment()
        .default_logging(false)
        .start()
        .await?;
    scenarios::note(
        "durable: embedded sidecar, default settings (in-process transport, SQLite on disk, WAL, synchronous=FULL)",
    );
    let result = scenarios::run("durable", Durable(runtime.client())).await;
    runtime.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}
