//! Replicas as an operator runs them: three `durable sidecar --postgres` processes on one
//! database, a Rust worker on each, 1,000 orchestrations of every kind (chains, fan-outs,
//! timers, events raised through another replica, sub-orchestrations in other partitions)
//! started through all three, one replica killed with `kill -9` mid-run, and a fourth joining
//! later and taking a share of the work.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "../../durable-sidecar/tests/sidecar_common/postgres.rs"]
mod postgres;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use durable::client::{DurableClient, RuntimeStatus, ScheduleOptions};
use durable::prelude::*;

const INSTANCES: usize = 1000;
const WAIT: Duration = Duration::from_secs(180);

#[durable::activity]
async fn double(n: u64) -> u64 {
    n * 2
}

#[durable::orchestrator]
async fn chain(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    let mut v = n;
    for _ in 0..3 {
        v = ctx.call_activity(double, v).await?;
    }
    Ok(v)
}

#[durable::orchestrator]
async fn fan_out(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    let tasks = (0..10).map(|i| ctx.call_activity(double, n + i));
    Ok(durable::when_all(tasks).await?.into_iter().sum())
}

#[durable::orchestrator]
async fn nap(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    ctx.create_timer(Duration::from_millis(300)).await?;
    Ok(ctx.call_activity(double, n).await?)
}

#[durable::orchestrator]
async fn waits(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    let given: u64 = ctx.wait_for_external_event("go").await?;
    Ok(n + given)
}

#[durable::orchestrator]
async fn parent(ctx: OrchestrationContext, n: u64) -> durable::Result<u64> {
    Ok(ctx.call_sub_orchestrator(chain, n).await? + 1)
}

/// What orchestration `i` is and what it must return.
fn expected(i: usize) -> u64 {
    let n = i as u64;
    match i % 5 {
        0 => n * 8,
        1 => (0..10).map(|k| (n + k) * 2).sum(),
        2 => n * 2,
        3 => n + 7,
        _ => n * 8 + 1,
    }
}

struct Replica {
    child: Child,
    endpoint: String,
    /// Kept open: the sidecar may print more.
    _stdout: BufReader<ChildStdout>,
}

impl Replica {
    fn start(url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
            .args(["sidecar", "--port", "0", "--postgres", url])
            .env_remove("DURABLE_TOKEN")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self {
            child,
            endpoint: format!("http://{addr}"),
            _stdout: stdout,
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many partitions each replica serves (by address), from the database.
async fn shares(url: &str) -> BTreeMap<String, i64> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
        c.query(
            "SELECT address, count(*) FROM partitions GROUP BY address",
            &[],
        )
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
    })
    .await
    .unwrap()
}

/// Waits until each of `replicas` serves at least `least` partitions and they serve all 8.
async fn wait_for_balance(url: &str, replicas: &[&Replica], least: i64) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = shares(url).await;
        let mine: Vec<i64> = replicas
            .iter()
            .map(|r| now.get(&r.endpoint).copied().unwrap_or(0))
            .collect();
        if mine.iter().all(|n| *n >= least) && mine.iter().sum::<i64>() == 8 {
            return now;
        }
        assert!(Instant::now() < deadline, "partitions served: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn worker(endpoint: &str) -> durable::RuntimeHandle {
    durable::Runtime::builder()
        .ignore_environment()
        .sidecar(endpoint.to_owned())
        .start()
        .await
        .unwrap()
}

async fn schedule(client: &DurableClient, i: usize) {
    let id = format!("job-{i}");
    let options = ScheduleOptions::new().instance_id(&id);
    let n = i as u64;
    let started = match i % 5 {
        0 => {
            client
                .schedule_new_orchestration_with(chain, n, options)
                .await
        }
        1 => {
            client
                .schedule_new_orchestration_with(fan_out, n, options)
                .await
        }
        2 => {
            client
                .schedule_new_orchestration_with(nap, n, options)
                .await
        }
        3 => {
            client
                .schedule_new_orchestration_with(waits, n, options)
                .await
        }
        _ => {
            client
                .schedule_new_orchestration_with(parent, n, options)
                .await
        }
    };
    assert_eq!(started.unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_finish_every_orchestration_when_one_is_killed() {
    let Some(pg) = postgres::TempPostgres::start() else {
        return;
    };
    let url = pg.database("replicas");
    let a = Replica::start(&url);
    let b = Replica::start(&url);
    let mut c = Replica::start(&url);
    let balanced = wait_for_balance(&url, &[&a, &b, &c], 2).await;
    eprintln!("three replicas serve {balanced:?}");
    let workers = [
        worker(&a.endpoint).await,
        worker(&b.endpoint).await,
        worker(&c.endpoint).await,
    ];
    let clients = [
        DurableClient::connect(a.endpoint.clone()).await.unwrap(),
        DurableClient::connect(b.endpoint.clone()).await.unwrap(),
        DurableClient::connect(c.endpoint.clone()).await.unwrap(),
    ];

    // Started through all three replicas, 50 at a time.
    for batch in (0..INSTANCES).collect::<Vec<_>>().chunks(50) {
        futures::future::join_all(batch.iter().map(|i| schedule(&clients[i % 3], *i))).await;
    }
    eprintln!("started {INSTANCES} orchestrations");
    // Events for the waiting ones, raised through a replica other than the one that started
    // them (the first half before the kill, the rest after).
    let waiting: Vec<usize> = (0..INSTANCES).filter(|i| i % 5 == 3).collect();
    let (before, after) = waiting.split_at(waiting.len() / 2);
    for i in before {
        clients[(i + 1) % 3]
            .raise_orchestration_event(&format!("job-{i}"), "go", &7u64)
            .await
            .unwrap();
    }

    c.kill();
    let killed = Instant::now();
    eprintln!("killed the third replica");
    let survivors = [&clients[0], &clients[1]];
    for i in after {
        survivors[i % 2]
            .raise_orchestration_event(&format!("job-{i}"), "go", &7u64)
            .await
            .unwrap();
    }
    let balanced = wait_for_balance(&url, &[&a, &b], 4).await;
    eprintln!(
        "the survivors serve {balanced:?} {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    let mut done = 0;
    for i in 0..INSTANCES {
        let id = format!("job-{i}");
        let state = survivors[i % 2]
            .wait_for_orchestration_completion(&id, WAIT)
            .await
            .unwrap();
        assert_eq!(
            state.runtime_status,
            RuntimeStatus::Completed,
            "{id}: {state:?}"
        );
        assert_eq!(state.output::<u64>().unwrap(), expected(i), "{id}");
        done += 1;
        if done % 200 == 0 {
            eprintln!("{done} of {INSTANCES} completed with the right output");
        }
    }
    // No history event was written twice: every task was scheduled and completed once.
    for i in (0..INSTANCES).step_by(7) {
        let id = format!("job-{i}");
        let history = survivors[i % 2].get_history(&id).await.unwrap();
        let mut scheduled: Vec<i32> = history
            .iter()
            .filter_map(|e| match &e.event_type {
                Some(durable::proto::history_event::EventType::TaskScheduled(_)) => {
                    Some(e.event_id)
                }
                _ => None,
            })
            .collect();
        let count = scheduled.len();
        scheduled.dedup();
        assert_eq!(scheduled.len(), count, "{id}: a task scheduled twice");
        let completed = history
            .iter()
            .filter(|e| {
                matches!(
                    e.event_type,
                    Some(durable::proto::history_event::EventType::TaskCompleted(_))
                )
            })
            .count();
        assert_eq!(completed, count, "{id}: every task completed once");
    }

    // A replica joining later takes its share, and its worker runs work.
    let d = Replica::start(&url);
    let joined = wait_for_balance(&url, &[&a, &b, &d], 2).await;
    eprintln!("after a fourth replica joined: {joined:?}");
    let late = worker(&d.endpoint).await;
    let client_d = DurableClient::connect(d.endpoint.clone()).await.unwrap();
    for i in INSTANCES..INSTANCES + 50 {
        let id = format!("late-{i}");
        let options = ScheduleOptions::new().instance_id(&id);
        client_d
            .schedule_new_orchestration_with(chain, i as u64, options)
            .await
            .unwrap();
        let state = clients[0]
            .wait_for_orchestration_completion(&id, WAIT)
            .await
            .unwrap();
        assert_eq!(state.output::<u64>().unwrap(), i as u64 * 8);
    }
    late.shutdown().await;
    for w in workers {
        w.shutdown().await;
    }
}
