//! Memory and restart time with many finished instances in the database.
//!
//! `cargo bench -p durable-runtime --bench finished_instances` fills a fresh SQLite file with
//! 10,000 / 100,000 / 1,000,000 completed three-activity chains (written through the sidecar's
//! own write path: record plus the 12-event history a real chain leaves), then, in a fresh
//! process, starts the embedded runtime on it and prints:
//!
//! - the time from `start()` to the first chain's completion (restart to first dispatch, plus
//!   one chain);
//! - the process RSS after running 2,000 more chains live on top;
//! - the cost of one page of 100 from `QueryInstances` (created-time order, paging through
//!   the file with continuation tokens) and `ListInstanceIds` (completion-time order), the
//!   median of 20 pages each: keyset paging over indexes keeps a page O(page), whatever the
//!   number of instances.
//!
//! Memory holds only active work, so both stay flat as finished instances accumulate (targets:
//! RSS within 1.5x of the 10,000 case; first chain under 2 s with 1,000,000 in the file).
//! `FINISHED_BENCH_SIZES=10000,100000` picks other sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/chains.rs"]
mod chains;

use chains::{run_chains, sequence};
use durable::client::{InstanceIdFilter, OrchestrationQuery};

/// Chains run live on top of the seeded ones.
const LIVE_CHAINS: usize = 2000;
const IN_FLIGHT: usize = 100;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Child process: seed the file.
fn seed(db: &Path, n: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    durable::sidecar::seed_finished_chains(db, "seeded", n, |done| {
        if done % 100_000 == 0 || done == n {
            eprintln!(
                "  seeded {done:>9} of {n} finished chains ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    })?;
    Ok(())
}

/// Child process: start on the seeded file, run chains, report.
async fn measure(db: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .default_logging(false)
        .database(db)
        .start()
        .await?;
    let client = runtime.client();
    let id = client.schedule_new_orchestration(sequence, ()).await?;
    client
        .wait_for_orchestration_completion(&id, Duration::from_secs(60))
        .await?;
    let first = started.elapsed();
    let live = run_chains(&client, LIVE_CHAINS, IN_FLIGHT).await?;
    let (rss, hwm) = memory_kib();
    let (query_us, list_us) = page_costs(&client).await?;
    println!(
        "RESULT {} {} {rss} {hwm} {query_us} {list_us}",
        first.as_millis(),
        live.as_millis()
    );
    runtime.shutdown().await;
    Ok(())
}

/// Median microseconds per page of 100: `QueryInstances`, then `ListInstanceIds`.
async fn page_costs(client: &durable::DurableClient) -> anyhow::Result<(u64, u64)> {
    let query = median_page_us(|token| async move {
        let mut query = OrchestrationQuery::new().page_size(100);
        if let Some(token) = token {
            query = query.continuation_token(token);
        }
        Ok(client
            .query_orchestrations(&query)
            .await?
            .continuation_token)
    })
    .await?;
    let list = median_page_us(|token| async move {
        let mut filter = InstanceIdFilter::new().page_size(100);
        if let Some(token) = token {
            filter = filter.continuation_token(token);
        }
        Ok(client.list_instance_ids(&filter).await?.continuation_token)
    })
    .await?;
    Ok((query, list))
}

/// Fetches up to 20 pages in a row (`page` takes a continuation token and returns the next
/// one) and returns the median microseconds per page.
async fn median_page_us<F, Fut>(mut page: F) -> anyhow::Result<u64>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<String>>>,
{
    let mut costs = Vec::new();
    let mut token = None;
    for _ in 0..20 {
        let started = Instant::now();
        token = page(token).await?;
        costs.push(started.elapsed().as_micros() as u64);
        if token.is_none() {
            break;
        }
    }
    costs.sort_unstable();
    Ok(costs[costs.len() / 2])
}

fn run_child(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(std::env::current_exe()?)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "child {args:?} failed: {}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--seed") => return seed(Path::new(&args[2]), args[3].parse()?),
        Some("--measure") => {
            return tokio::runtime::Runtime::new()?.block_on(measure(Path::new(&args[2])));
        }
        _ => {}
    }
    let sizes: Vec<usize> = std::env::var("FINISHED_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    println!(
        "{:>12} {:>16} {:>18} {:>12} {:>12} {:>10} {:>13} {:>13}",
        "finished",
        "start→1st chain",
        "2,000 live chains",
        "RSS MiB",
        "peak MiB",
        "RSS ratio",
        "query page",
        "list page"
    );
    let mut base_rss = None;
    for n in sizes {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("durable-finished-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let db = dir.join("bench.db");
        let db_str = db.to_string_lossy().into_owned();
        eprintln!("{n} finished chains: seeding {db_str}");
        run_child(&["--seed", &db_str, &n.to_string()])?;
        eprintln!("{n} finished chains: starting on the file and running {LIVE_CHAINS} chains");
        let out = run_child(&["--measure", &db_str])?;
        let fields: Vec<u64> = out
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .ok_or_else(|| anyhow::anyhow!("no result from the measuring process: {out}"))?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let [first_ms, live_ms, rss, hwm, query_us, list_us] = fields[..] else {
            anyhow::bail!("malformed result: {out}");
        };
        let base = *base_rss.get_or_insert(rss);
        println!(
            "{n:>12} {:>14} ms {:>13.0}/s {:>12.1} {:>12.1} {:>9.2}x {:>10.2} ms {:>10.2} ms",
            first_ms,
            LIVE_CHAINS as f64 / (live_ms as f64 / 1000.0),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss as f64 / base as f64,
            query_us as f64 / 1000.0,
            list_us as f64 / 1000.0
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
