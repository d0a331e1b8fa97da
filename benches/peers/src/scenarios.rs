//! The scenarios both sides of the peers bench run, written once over a [`Peer`] so each
//! system is measured the same way, and the lines a side reports to the driver on stdout.
//!
//! The durable side compiles this file as a module; the duroxide side (a crate of its own,
//! see `../Cargo.toml`) includes it with `#[path]`.

#[path = "../../../durable-runtime/benches/support/process.rs"]
mod process;

use std::future::Future;
use std::time::{Duration, Instant};

use process::{cpu_time, peak_rss_mib, reset_peak_rss};

/// Chains kept in flight at once.
pub(crate) const IN_FLIGHT: usize = 100;

/// One system under test.
pub(crate) trait Peer: Clone + Send + Sync + 'static {
    /// Runs one chain3 (three activities in sequence) to completion and checks its output.
    fn chain(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Runs a fan-out/fan-in of `n` activities to completion and checks the sum.
    fn fan_out(&self, n: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The sizes a run uses, from the environment.
struct Sizes {
    chains: usize,
    latency: usize,
    fan_outs: Vec<usize>,
    budget: Duration,
}

impl Sizes {
    fn from_env() -> Self {
        let list = |var: &str, default: &[usize]| {
            std::env::var(var)
                .ok()
                .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
                .filter(|v: &Vec<usize>| !v.is_empty())
                .unwrap_or_else(|| default.to_vec())
        };
        let one = |var: &str, default: usize| list(var, &[default])[0];
        Self {
            chains: one("PEERS_CHAINS", 1_000).max(IN_FLIGHT),
            latency: one("PEERS_LATENCY", 100).max(1),
            fan_outs: list("PEERS_FANOUT", &[1_000, 10_000]),
            budget: Duration::from_secs(one("PEERS_BUDGET_SECS", 60) as u64),
        }
    }
}

/// Runs every scenario on `peer`, reporting figures on stdout and progress on stderr.
pub(crate) async fn run(label: &str, peer: impl Peer) -> anyhow::Result<()> {
    let sizes = Sizes::from_env();
    let budget = sizes.budget.as_secs();

    eprintln!("{label}: warm-up, {IN_FLIGHT} chains...");
    let warm_up = chains(&peer, IN_FLIGHT).await?;
    // A slow system runs fewer chains, as many as its warm-up rate fits in the budget.
    let fits = (IN_FLIGHT as f64 * sizes.budget.as_secs_f64() / warm_up.as_secs_f64()) as usize;
    let n = sizes
        .chains
        .min(fits / IN_FLIGHT * IN_FLIGHT)
        .max(IN_FLIGHT);
    if n < sizes.chains {
        note(&format!(
            "{label}: chain3 N={n}, not {}: at its warm-up rate ({:.0} chains/s) {} would take over the {budget} s budget",
            sizes.chains,
            IN_FLIGHT as f64 / warm_up.as_secs_f64(),
            sizes.chains
        ));
    }
    eprintln!("{label}: chain3 x {n} ({IN_FLIGHT} in flight)...");
    let cpu = cpu_time();
    let took = chains(&peer, n).await?;
    let cpu = cpu_time().saturating_sub(cpu);
    let detail = format!("N={n}");
    figure(
        "chain3 throughput",
        n as f64 / took.as_secs_f64(),
        "chains/s",
        &detail,
    );
    figure(
        "chain3 CPU per chain",
        cpu.as_secs_f64() * 1e3 / n as f64,
        "ms",
        &detail,
    );

    let m = sizes.latency;
    eprintln!("{label}: {m} single chains, one after another...");
    let mut took = Vec::with_capacity(m);
    for _ in 0..m {
        let started = Instant::now();
        peer.chain().await?;
        took.push(started.elapsed());
    }
    took.sort_unstable();
    for (name, q) in [("median", 50), ("p95", 95), ("p99", 99)] {
        let ms = took[(m * q / 100).min(m - 1)].as_secs_f64() * 1e3;
        figure(
            &format!("single chain {name}"),
            ms,
            "ms",
            &format!("of {m}"),
        );
    }

    let mut last: Option<(usize, Duration)> = None;
    for n in sizes.fan_outs {
        let rows = [
            format!("fan-out {n} wall time"),
            format!("fan-out {n} peak RSS"),
        ];
        // Linear extrapolation is the optimistic guess: fan-in work grows with history.
        if let Some((done, took)) = last.filter(|(done, took)| {
            took.as_secs_f64() * n as f64 / *done as f64 > sizes.budget.as_secs_f64()
        }) {
            let reason = format!(
                "fan-out {done} took {:.1} s, so {n} would take at least {:.0} s, over the {budget} s budget",
                took.as_secs_f64(),
                took.as_secs_f64() * n as f64 / done as f64
            );
            rows.iter().for_each(|row| skipped(row, &reason));
            continue;
        }
        eprintln!("{label}: fan-out of {n} activities...");
        reset_peak_rss();
        let started = Instant::now();
        if tokio::time::timeout(sizes.budget, peer.fan_out(n as u64))
            .await
            .is_err()
        {
            let reason = format!("fan-out {n} did not finish within the {budget} s budget");
            rows.iter().for_each(|row| skipped(row, &reason));
            break; // it is still running, and would disturb any later figure
        }
        let took = started.elapsed();
        figure(&rows[0], took.as_secs_f64(), "s", "");
        figure(&rows[1], peak_rss_mib(), "MiB", "");
        last = Some((n, took));
    }
    Ok(())
}

/// Runs `n` chains, `IN_FLIGHT` at a time; returns the wall time.
async fn chains(peer: &impl Peer, n: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let lanes: Vec<_> = (0..IN_FLIGHT.min(n))
        .map(|lane| {
            let peer = peer.clone();
            tokio::spawn(async move {
                for _ in (lane..n).step_by(IN_FLIGHT) {
                    peer.chain().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for lane in lanes {
        lane.await??;
    }
    Ok(started.elapsed())
}

/// Reports a figure: `figure <TAB> scenario <TAB> value <TAB> unit <TAB> detail`.
fn figure(scenario: &str, value: f64, unit: &str, detail: &str) {
    println!("figure\t{scenario}\t{value}\t{unit}\t{detail}");
}

/// Reports a scenario not run: `skipped <TAB> scenario <TAB> reason`.
fn skipped(scenario: &str, reason: &str) {
    println!("skipped\t{scenario}\t{reason}");
}

/// Reports something the table's reader should know: `note <TAB> text`.
pub(crate) fn note(text: &str) {
    println!("note\t{text}");
}
