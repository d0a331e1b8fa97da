//! The Rust path end to end: a program on the embedded sidecar, as `durable::run()` starts it,
//! on SQLite on disk (the default, `synchronous=FULL`) and in memory.
//!
//! `cargo bench -p durable-runtime --bench end_to_end` prints, per storage: 3-activity chains
//! for N = 1,000 and 10,000 (100 in flight) with the process's CPU time per chain; the latency
//! of 100 single chains one after another (median, p95, p99); and fan-out/fan-in of 1,000,
//! 10,000 and 100,000 activities (wall time, and the process's peak RSS during it). A progress line
//! goes to stderr before each scenario. Each storage runs with the worker and client calling
//! the embedded sidecar in-process (the default) and over loopback gRPC. `E2E_CHAINS=1000`,
//! `E2E_FANOUT=1000,10000`, `E2E_SINGLE=1000` (single chains timed) and
//! `E2E_CONFIGS=sqlite:in-process,memory:grpc` choose other sizes and configurations.

#[path = "support/chains.rs"]
mod chains;

#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use chains::{run_chains, sequence};
use durable::prelude::*;
use durable::{DurableClient, EmbeddedTransport, RuntimeBuilder};
use process::{cpu_time, peak_rss_mib, reset_peak_rss};

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

fn sizes(var: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(var)
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

async fn chains(label: &str, client: &DurableClient, n: usize) -> anyhow::Result<()> {
    eprintln!("{label}: chain3 x {n}...");
    let cpu = cpu_time();
    let took = run_chains(client, n, IN_FLIGHT).await?;
    let cpu = cpu_time().saturating_sub(cpu);
    println!(
        "{label:<18} chain3 N={n:<7} {:>7.0} chains/s   {:>5.2} ms CPU per chain",
        n as f64 / took.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / n as f64
    );
    Ok(())
}

async fn latency(label: &str, client: &DurableClient, n: usize) -> anyhow::Result<()> {
    eprintln!("{label}: {n} single chains...");
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let id = client.schedule_new_orchestration(sequence, ()).await?;
        client
            .wait_for_orchestration_completion(&id, Duration::from_secs(60))
            .await?;
        took.push(started.elapsed());
    }
    took.sort_unstable();
    let ms = |q: usize| took[(took.len() * q / 100).min(took.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{label:<18} single chain     median {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms",
        ms(50),
        ms(95),
        ms(99)
    );
    Ok(())
}

async fn fan_outs(label: &str, client: &DurableClient, n: usize) -> anyhow::Result<()> {
    eprintln!("{label}: fan-out of {n} activities...");
    reset_peak_rss();
    let started = Instant::now();
    let id = client.schedule_new_orchestration(fan_out, n as u64).await?;
    let state = client
        .wait_for_orchestration_completion(&id, Duration::from_secs(1800))
        .await?;
    let took = started.elapsed();
    let sum: u64 = state.output()?;
    anyhow::ensure!(sum == (n as u64) * (n as u64 - 1), "wrong sum {sum}");
    println!(
        "{label:<18} fan-out {n:<8} {:>8.3} s   {:>7.1} µs per activity   peak RSS {:>6.0} MiB",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n as f64,
        peak_rss_mib()
    );
    Ok(())
}

async fn run(label: &str, builder: RuntimeBuilder) -> anyhow::Result<()> {
    let runtime = builder
        .ignore_environment()
        .default_logging(false)
        .start()
        .await?;
    let client = runtime.client();
    run_chains(&client, IN_FLIGHT, IN_FLIGHT).await?; // warm-up
    for n in sizes("E2E_CHAINS", &[1_000, 10_000]) {
        chains(label, &client, n).await?;
    }
    for n in sizes("E2E_SINGLE", &[100]) {
        latency(label, &client, n.max(1)).await?;
    }
    for n in sizes("E2E_FANOUT", &[1_000, 10_000, 100_000]) {
        fan_outs(label, &client, n).await?;
    }
    runtime.shutdown().await;
    Ok(())
}

/// The storages and transports a full run measures, each `storage:transport`.
const CONFIGS: &str = "sqlite:in-process,sqlite:grpc,memory:in-process,memory:grpc";

/// Each configuration runs in a process of its own (this binary again, with `--config
/// storage:transport`), so memory one keeps does not count against the other.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(config) = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| args.get(i + 1))
    else {
        let configs = std::env::var("E2E_CONFIGS").unwrap_or_else(|_| CONFIGS.to_owned());
        for config in configs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let status = std::process::Command::new(&args[0])
                .args(["--config", config])
                .status()?;
            anyhow::ensure!(status.success(), "the {config} run failed: {status}");
        }
        return Ok(());
    };
    let config = config.map(String::as_str).unwrap_or_default();
    let (storage, transport) = config.split_once(':').unwrap_or((config, "in-process"));
    let transport = match transport {
        "in-process" => EmbeddedTransport::InProcess,
        "grpc" => EmbeddedTransport::Grpc,
        other => anyhow::bail!("transport {other:?}: use in-process or grpc"),
    };
    let label = format!(
        "{}, {}",
        if storage == "sqlite" {
            "SQLite"
        } else {
            "memory"
        },
        if transport == EmbeddedTransport::Grpc {
            "gRPC"
        } else {
            "in-proc"
        }
    );
    let builder = durable::Runtime::builder().embedded_transport(transport);
    match storage {
        "sqlite" => {
            let dir =
                std::env::temp_dir().join(format!("durable-e2e-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            run(&label, builder.database(dir.join("e2e.db"))).await?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        "memory" => run(&label, builder.in_memory()).await?,
        other => anyhow::bail!("storage {other:?}: use sqlite or memory"),
    }
    Ok(())
}
