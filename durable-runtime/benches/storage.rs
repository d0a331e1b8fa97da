//! Three-activity chains through the embedded sidecar on each storage, in one run:
//! in memory, SQLite on disk with `synchronous=FULL` (the default: fsynced before each
//! acknowledgement) and with `NORMAL` (the opt-in), and PostgreSQL (a throwaway local server
//! started by the bench from the Debian `postgresql` package with its durable defaults, `fsync`
//! on; skipped with a note when it is not installed).
//!
//! `cargo bench -p durable-runtime --bench storage` prints chains/s for 2,000 chains with 100 in
//! flight. `STORAGE_BENCH_CHAINS=500` runs fewer.

#[path = "support/chains.rs"]
mod chains;
#[path = "../../durable-sidecar/tests/sidecar_common/postgres.rs"]
mod postgres;

use chains::run_chains;
use durable::RuntimeBuilder;
use durable::sidecar::Synchronous;

const IN_FLIGHT: usize = 100;

async fn run(label: &str, builder: RuntimeBuilder, n: usize) -> anyhow::Result<()> {
    eprintln!("{label}: {n} chains...");
    let runtime = builder
        .ignore_environment()
        .default_logging(false)
        .start()
        .await?;
    // Warm up (connections, statement caches) before timing.
    run_chains(&runtime.client(), IN_FLIGHT, IN_FLIGHT).await?;
    let elapsed = run_chains(&runtime.client(), n, IN_FLIGHT).await?;
    println!(
        "{label:<34} {n:>6} chains in {:>6.2} s = {:>6.0} chains/s",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    runtime.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("STORAGE_BENCH_CHAINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("durable-storage-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    run("in memory", durable::Runtime::builder().in_memory(), n).await?;
    run(
        "SQLite, synchronous=FULL (default)",
        durable::Runtime::builder().database(dir.join("full.db")),
        n,
    )
    .await?;
    run(
        "SQLite, synchronous=NORMAL (opt-in)",
        durable::Runtime::builder()
            .database(dir.join("normal.db"))
            .synchronous(Synchronous::Normal),
        n,
    )
    .await?;
    match tokio::task::spawn_blocking(postgres::TempPostgres::start_durable).await? {
        Some(pg) => {
            let url = pg.database("bench");
            run(
                "PostgreSQL, local server (fsync on)",
                durable::Runtime::builder().postgres(url),
                n,
            )
            .await?;
        }
        None => println!("PostgreSQL: not installed (apt-get install postgresql), not measured"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
