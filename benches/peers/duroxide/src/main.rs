//! The duroxide side of the peers bench: `../src/main.rs` builds and runs this binary and reads
//! the figures it prints. The same scenarios (`../src/scenarios.rs`) on duroxide's own SQLite
//! provider, on disk in a temp dir, with the tuning below.

#[path = "../../src/scenarios.rs"]
mod scenarios;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use duroxide::providers::sqlite::SqliteProvider;
use duroxide::runtime::registry::ActivityRegistry;
use duroxide::runtime::{ObservabilityConfig, Runtime, RuntimeOptions};
use duroxide::{ActivityContext, Client, OrchestrationContext, OrchestrationRegistry};

use scenarios::Peer;

const CITIES: [&str; 3] = ["Tokyo", "Seattle", "London"];

#[derive(Clone)]
struct Duroxide {
    client: Client,
    next_id: Arc<AtomicU64>,
}

impl Duroxide {
    fn instance_id(&self, kind: &str) -> String {
        format!("{kind}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    async fn wait<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        match self
            .client
            .wait_for_orchestration_typed::<T>(id, timeout)
            .await?
        {
            Ok(out) => Ok(out),
            Err(failure) => anyhow::bail!("{id} failed: {failure}"),
        }
    }
}

impl Peer for Duroxide {
    async fn chain(&self) -> anyhow::Result<()> {
        let id = self.instance_id("chain");
        self.client.start_orchestration(&id, "Sequence", "").await?;
        let out: Vec<String> = self.wait(&id, Duration::from_secs(120)).await?;
        anyhow::ensure!(
            out.iter().eq(CITIES.map(|c| format!("Hello {c}!")).iter()),
            "chain {id}: wrong output {out:?}"
        );
        Ok(())
    }

    async fn fan_out(&self, n: u64) -> anyhow::Result<()> {
        let id = self.instance_id("fan-out");
        self.client
            .start_orchestration_typed(&id, "FanOut", n)
            .await?;
        let sum: u64 = self.wait(&id, Duration::from_secs(3600)).await?;
        anyhow::ensure!(sum == n * (n - 1), "fan-out {id}: wrong sum {sum}");
        Ok(())
    }
}

/// `var` from the environment, else `default` (for trying other tunings without a rebuild).
fn tuning(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let activities = ActivityRegistry::builder()
        .register("Hello", |_ctx: ActivityContext, city: String| async move {
            Ok(format!("Hello {city}!"))
        })
        .register_typed("Double", |_ctx: ActivityContext, n: u64| async move {
            Ok(2 * n)
        })
        .build();
    let orchestrations = OrchestrationRegistry::builder()
        .register_typed(
            "Sequence",
            |ctx: OrchestrationContext, _: String| async move {
                let mut out = Vec::new();
                for city in CITIES {
                    out.push(ctx.schedule_activity("Hello", city).await?);
                }
                Ok(out)
            },
        )
        .register_typed("FanOut", |ctx: OrchestrationContext, n: u64| async move {
            let tasks: Vec<_> = (0..n)
                .map(|i| ctx.schedule_activity_typed::<u64, u64>("Double", &i))
                .collect();
            ctx.join(tasks)
                .await
                .into_iter()
                .sum::<Result<u64, String>>()
        })
        .build();

    // The best of the tunings tried on this machine (2 cores), from the README, the
    // `RuntimeOptions` docs and the provider guide (10 ms poll for local SQLite):
    // - The SQLite provider has no long polling (it ignores `dispatcher_long_poll_timeout`), so an
    //   idle dispatcher sleeps `dispatcher_min_poll_interval` between polls. At 1 ms single
    //   chains take 18-40 ms (80 ms at 10 ms, and the default is 100 ms) at the same
    //   throughput; at 0 the dispatchers spin and throughput drops by more than half.
    // - 4 orchestration and 4 worker dispatchers (default 2 each): 2/2 to 16/16 all gave 55-90
    //   chains/s, within the noise, 4/4 among the best; from 16 on, chains now and then fail
    //   with "database is locked" (the provider's pool has 5 connections and SQLite one writer).
    // - The client's own `wait_for_orchestration` (polls back off from 5 to 100 ms): polling
    //   every 2-5 ms ourselves halved the throughput with 100 chains in flight.
    // - Logging at `warn` (the runner sets `RUST_LOG=error`), no metrics recorder installed.
    let orchestration_concurrency = tuning("DUROXIDE_ORCH_CONCURRENCY", 4) as usize;
    let worker_concurrency = tuning("DUROXIDE_WORKER_CONCURRENCY", 4) as usize;
    let poll = Duration::from_millis(tuning("DUROXIDE_POLL_MS", 1));
    let options = RuntimeOptions {
        orchestration_concurrency,
        worker_concurrency,
        dispatcher_min_poll_interval: poll,
        observability: ObservabilityConfig {
            log_level: "warn".into(),
            ..Default::default()
        },
        ..Default::default()
    };

    let dir = std::env::temp_dir().join(format!("peers-bench-duroxide-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite:{}?mode=rwc", dir.join("duroxide.db").display());
    let store = Arc::new(SqliteProvider::new(&url, None).await?);
    let synchronous = synchronous_level(&store).await?;
    scenarios::note(&format!(
        "duroxide {}: SqliteProvider on disk (WAL, synchronous={synchronous}, as the provider sets it), \
         orchestration_concurrency={orchestration_concurrency}, worker_concurrency={worker_concurrency}, \
         dispatcher_min_poll_interval={poll:?}",
        duroxide::current_build_version()
    ));
    let runtime =
        Runtime::start_with_options(store.clone(), activities, orchestrations, options).await;
    let peer = Duroxide {
        client: Client::new(store),
        next_id: Arc::default(),
    };
    let result = scenarios::run("duroxide", peer).await;
    runtime.shutdown(Some(5_000)).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The `synchronous` level the provider set on its connections.
async fn synchronous_level(store: &SqliteProvider) -> anyhow::Result<&'static str> {
    let (level,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(store.get_pool())
        .await?;
    Ok(["OFF", "NORMAL", "FULL", "EXTRA"]
        .get(level as usize)
        .copied()
        .unwrap_or("?"))
}
