//! Replay throughput: how fast the executor replays long histories.
//!
//! `cargo bench -p durable-runtime --bench replay` prints history events per second and time
//! per event for a fan-out of N completed activities (N = 1k, 10k, 100k: the time per event
//! must stay flat, i.e. replay is linear) and a 10k-step chain.

use std::hint::black_box;
use std::time::{Duration, Instant};

use durable::proto::{self, OrchestratorRequest};
use durable::testing::HistoryBuilder;
use durable::{OrchestrationContext, Registry, Task};

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .add_orchestrator_fn("fan_out", |ctx: OrchestrationContext, input| {
            Box::pin(async move {
                let n: u64 = input.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let tasks: Vec<Task<u64>> = (0..n)
                    .map(|i| ctx.call_activity_by_name("work", i))
                    .collect();
                let results = durable::when_all(tasks).await?;
                Ok(Some(results.iter().sum::<u64>().to_string()))
            })
        })
        .expect("one registration");
    registry
        .add_orchestrator_fn("chain", |ctx: OrchestrationContext, input| {
            Box::pin(async move {
                let n: u64 = input.as_deref().unwrap_or("0").parse().unwrap_or(0);
                let mut total = 0u64;
                for i in 0..n {
                    total += ctx.call_activity_by_name::<_, u64>("work", i).await?;
                }
                Ok(Some(total.to_string()))
            })
        })
        .expect("one registration");
    registry
}

/// N activities scheduled in one episode, all completed (in reverse order) in the next.
fn fan_out_history(n: i32) -> OrchestratorRequest {
    let mut history = HistoryBuilder::new("bench");
    history
        .orchestrator_started()
        .execution_started("fan_out", &n.to_string());
    for i in 0..n {
        history.task_scheduled(i, "work");
    }
    history.orchestrator_started();
    for i in (0..n).rev() {
        history.task_completed(i, "1");
    }
    history.request_replaying_all_but(1)
}

/// N activities one after another, one episode each.
fn chain_history(n: i32) -> OrchestratorRequest {
    let mut history = HistoryBuilder::new("bench");
    history
        .orchestrator_started()
        .execution_started("chain", &n.to_string());
    for i in 0..n {
        history.task_scheduled(i, "work");
        history.orchestrator_started();
        history.task_completed(i, "1");
    }
    history.request_replaying_all_but(2)
}

fn measure(label: &str, registry: &Registry, request: &OrchestratorRequest, expected: u64) {
    let events = request.past_events.len() + request.new_events.len();
    // Check the result once, then time several runs and keep the best and the median.
    let response = durable::orchestration::execute(registry, request);
    let done = response.actions.iter().any(|a| {
        matches!(
            &a.orchestrator_action_type,
            Some(proto::orchestrator_action::OrchestratorActionType::CompleteOrchestration(c))
                if c.result.as_deref() == Some(expected.to_string().as_str())
        )
    });
    assert!(
        done,
        "{label}: unexpected response {:?}",
        response.actions.first()
    );
    let min_runs = std::env::var("REPLAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if events > 100_000 { 5 } else { 15 });
    // Wall time suffers from other processes on a loaded machine; the time this thread spent
    // on a CPU (from the scheduler) does not. The scheduler's count advances in ticks, so the
    // CPU time is the mean over a batch of runs long enough (>= 0.5 s) to make ticks negligible.
    let mut wall: Vec<Duration> = Vec::new();
    let cpu_start = thread_cpu_time();
    let batch = Instant::now();
    while wall.len() < min_runs || batch.elapsed() < Duration::from_millis(500) {
        let start = Instant::now();
        black_box(durable::orchestration::execute(
            registry,
            black_box(request),
        ));
        wall.push(start.elapsed());
    }
    let cpu_mean = thread_cpu_time().saturating_sub(cpu_start) / wall.len() as u32;
    wall.sort();
    let median = wall[wall.len() / 2];
    let per_event = |d: Duration| d.as_secs_f64() * 1e9 / events as f64;
    println!(
        "{label:<16} {events:>7} events  wall median {:>8.3} ms best {:>8.3} ms {:>6.1} ns/ev {:>6.2} M ev/s  | cpu mean of {:>3} {:>8.3} ms {:>6.1} ns/ev {:>6.2} M ev/s",
        median.as_secs_f64() * 1e3,
        wall[0].as_secs_f64() * 1e3,
        per_event(median),
        1e3 / per_event(median),
        wall.len(),
        cpu_mean.as_secs_f64() * 1e3,
        per_event(cpu_mean),
        1e3 / per_event(cpu_mean),
    );
}

/// Time this thread has run on a CPU (Linux `schedstat`); zero where unavailable.
fn thread_cpu_time() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn main() {
    // `cargo test --benches` runs this with `--bench`-less args; keep that fast.
    let quick = std::env::args().any(|a| a == "--test");
    // Other arguments filter the cases by label (`-- 100000` runs only the 100k fan-out).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
    let registry = registry();
    let sizes: &[i32] = if quick {
        &[100]
    } else {
        &[1_000, 10_000, 100_000]
    };
    for &n in sizes {
        let label = format!("fan-out {n}");
        if selected(&label) {
            measure(&label, &registry, &fan_out_history(n), n as u64);
        }
    }
    let chain = if quick { 100 } else { 10_000 };
    let label = format!("chain {chain}");
    if selected(&label) {
        measure(&label, &registry, &chain_history(chain), chain as u64);
    }
}
