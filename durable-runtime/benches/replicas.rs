//! Replicas on PostgreSQL against SQLite, in one run: the Rust worker on the embedded path
//! (`Runtime::builder().database(..)` / `.postgres(url)`: the worker and client call their
//! sidecar in-process), three-activity chains and one fan-out of 10,000 activities, on
//! SQLite (`synchronous=FULL`), on PostgreSQL with one runtime, and with two and three
//! runtimes on one database (each one's embedded sidecar a replica of the task hub, each with
//! its own worker; chains are started through all of them). PostgreSQL is a throwaway local
//! server started by the bench from the Debian `postgresql` package (fsync on).
//!
//! `cargo bench -p durable-runtime --bench replicas` prints one line per configuration and
//! the PostgreSQL/SQLite ratios. `REPLICAS_BENCH_CHAINS=2000` and `REPLICAS_BENCH_FANOUT=1000`
//! choose other sizes, `REPLICAS_BENCH_SYNCHRONOUS=normal` measures both storages without
//! waiting for the disk flush. All replicas share this process (and the machine's cores), so more
//! replicas do not add cores here: the figures show what replicas cost, not how they scale.

#[path = "support/chains.rs"]
mod chains;
#[path = "../../durable-sidecar/tests/sidecar_common/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use chains::run_chains;
use durable::prelude::*;
use durable::sidecar::Synchronous;
use durable::{DurableClient, RuntimeBuilder, RuntimeHandle};

const IN_FLIGHT: usize = 100;

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

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `n` chains spread over the clients (each keeps its share of `IN_FLIGHT` going).
async fn chains_on(clients: &[DurableClient], n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let share = n.div_ceil(clients.len());
    let lanes = IN_FLIGHT.div_ceil(clients.len());
    let runs = clients
        .iter()
        .map(|c| run_chains(c, share, lanes))
        .collect::<Vec<_>>();
    for result in futures::future::join_all(runs).await {
        result?;
    }
    Ok(started.elapsed())
}

async fn fan_out_once(client: &DurableClient, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let id = client.schedule_new_orchestration(fan_out, n as u64).await?;
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(1800))
        .await?;
    let sum: u64 = state.output()?;
    anyhow::ensure!(sum == (n as u64) * (n as u64 - 1), "wrong sum {sum}");
    Ok(started.elapsed())
}

/// One configuration's figures: chains/s and the fan-out's wall time.
struct Figures {
    chains_per_s: f64,
    fan_out: Duration,
}

async fn measure(
    label: &str,
    builders: Vec<RuntimeBuilder>,
    n: usize,
    fan: usize,
) -> anyhow::Result<Figures> {
    eprintln!("{label}: starting {} runtime(s)...", builders.len());
    let mut runtimes: Vec<RuntimeHandle> = Vec::new();
    for builder in builders {
        runtimes.push(
            builder
                .ignore_environment()
                .default_logging(false)
                .start()
                .await?,
        );
    }
    // Let later replicas take their share of the partitions before measuring.
    if runtimes.len() > 1 {
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    let clients: Vec<DurableClient> = runtimes.iter().map(|r| r.client()).collect();
    chains_on(&clients, IN_FLIGHT).await?; // warm-up
    eprintln!("{label}: {n} chains...");
    let took = chains_on(&clients, n).await?;
    eprintln!("{label}: fan-out of {fan} activities...");
    let fan_took = fan_out_once(&clients[0], fan).await?;
    let figures = Figures {
        chains_per_s: n as f64 / took.as_secs_f64(),
        fan_out: fan_took,
    };
    println!(
        "{label:<32} {:>8.0} chains/s   fan-out {fan}: {:>7.2} s",
        figures.chains_per_s,
        figures.fan_out.as_secs_f64()
    );
    for runtime in runtimes {
        runtime.shutdown().await;
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = size("REPLICAS_BENCH_CHAINS", 1000);
    let synchronous: Synchronous = std::env::var("REPLICAS_BENCH_SYNCHRONOUS")
        .unwrap_or_else(|_| "full".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let fan = size("REPLICAS_BENCH_FANOUT", 10_000);
    let dir = std::env::temp_dir().join(format!("durable-replicas-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "Rust worker on the embedded path; {n} three-activity chains ({IN_FLIGHT} in flight), one fan-out of {fan}"
    );
    let sqlite = measure(
        "SQLite",
        vec![
            durable::Runtime::builder()
                .database(dir.join("bench.db"))
                .synchronous(synchronous),
        ],
        n,
        fan,
    )
    .await?;
    let Some(pg) = tokio::task::spawn_blocking(postgres::TempPostgres::start_durable).await? else {
        println!("PostgreSQL: not installed (apt-get install postgresql), not measured");
        return Ok(());
    };
    let mut rows = Vec::new();
    for replicas in 1..=3 {
        let url = pg.database(&format!("replicas{replicas}"));
        let builders = (0..replicas)
            .map(|_| {
                durable::Runtime::builder()
                    .postgres(&url)
                    .synchronous(synchronous)
            })
            .collect();
        let label = format!("PostgreSQL, {replicas} replica(s)");
        rows.push((replicas, measure(&label, builders, n, fan).await?));
    }
    println!();
    for (replicas, f) in &rows {
        println!(
            "PostgreSQL with {replicas} replica(s) vs SQLite: chains/s {:.2}x, fan-out time {:.2}x (target: chains/s >= 0.33x per replica)",
            f.chains_per_s / sqlite.chains_per_s,
            f.fan_out.as_secs_f64() / sqlite.fan_out.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
