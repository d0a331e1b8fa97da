//! Our worker and client against an independent sidecar: the official Python SDK's in-memory
//! backend (`durabletask.testing`), started as a separate process per test.

mod worker_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::{BoxFuture, LocalBoxFuture};

use durable::client::{ClientError, OrchestrationQuery, RuntimeStatus, ScheduleOptions};
use durable::worker::{PANIC_ERROR_TYPE, WorkerOptions};
use durable::{Activity, ActivityContext, OrchestrationContext, Orchestrator, Registry};
use worker_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_sequence_tokyo_seattle_london() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, examples_registry()).await;
    let client = sidecar.client().await;

    let id = client
        .schedule_new_orchestration(Sequence, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.name, "sequence");
    assert_eq!(
        state.output::<Vec<String>>().unwrap(),
        ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    );
    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, examples_registry()).await;
    let client = sidecar.client().await;

    let id = client
        .schedule_new_orchestration(FanOutFanIn, 20u32)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let summary: FanOutSummary = state.output().unwrap();
    assert_eq!(summary.work_items.len(), 20);
    assert_eq!(
        summary.results,
        (0..20).map(|i| i * 10).collect::<Vec<u64>>()
    );
    assert_eq!(summary.total, 1900);
    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_interaction_event_wins_or_timer_wins() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, examples_registry()).await;
    let client = sidecar.client().await;
    let order = |cost: f64, timeout: u64| Order {
        cost,
        product: "laptop".into(),
        approval_timeout_secs: timeout,
    };

    // Small orders need no approval.
    let cheap = client
        .schedule_new_orchestration(PurchaseOrder, order(10.0, 3600))
        .await
        .unwrap();
    // The approval arrives long before the 1-hour timer.
    let approved = client
        .schedule_new_orchestration(PurchaseOrder, order(5000.0, 3600))
        .await
        .unwrap();
    // Nobody approves: the 1-second timer wins.
    let ignored = client
        .schedule_new_orchestration(PurchaseOrder, order(5000.0, 1))
        .await
        .unwrap();

    client
        .wait_for_orchestration_start(&approved, WAIT)
        .await
        .unwrap();
    client
        .raise_orchestration_event(&approved, "approval_received", "Alice")
        .await
        .unwrap();

    let outputs = [
        (cheap, "Auto-approved"),
        (approved, "Approved by Alice; placed laptop"),
        (ignored, "Canceled"),
    ];
    for (id, expected) in outputs {
        let state = client
            .wait_for_orchestration_completion(&id, WAIT)
            .await
            .unwrap();
        assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
        assert_eq!(state.output::<String>().unwrap(), expected);
    }
    worker.shutdown().await;
    sidecar.stop().await;
}

// ---- failures ----

#[derive(Clone, Copy)]
struct ChargeCard;

impl Activity for ChargeCard {
    type Input = u32;
    type Output = ();
    const NAME: &'static str = "charge_card";
    fn run(_ctx: ActivityContext, _amount: u32) -> BoxFuture<'static, durable::Result<()>> {
        Box::pin(async { Err(durable::Error::typed("CardDeclined", "insufficient funds")) })
    }
}

#[derive(Clone, Copy)]
struct Checkout;

impl Orchestrator for Checkout {
    type Input = u32;
    type Output = ();
    const NAME: &'static str = "checkout";
    fn run(ctx: OrchestrationContext, amount: u32) -> LocalBoxFuture<'static, durable::Result<()>> {
        Box::pin(async move {
            ctx.call_activity(ChargeCard, amount).await?;
            Ok(())
        })
    }
}

#[derive(Clone, Copy)]
struct Explode;

impl Activity for Explode {
    type Input = String;
    type Output = String;
    const NAME: &'static str = "explode";
    fn run(_ctx: ActivityContext, what: String) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { panic!("kaboom: {what}") })
    }
}

/// Calls a panicking activity, records how it failed, then carries on.
#[derive(Clone, Copy)]
struct SurvivePanic;

impl Orchestrator for SurvivePanic {
    type Input = ();
    type Output = (String, String, String);
    const NAME: &'static str = "survive_panic";
    fn run(
        ctx: OrchestrationContext,
        _: (),
    ) -> LocalBoxFuture<'static, durable::Result<(String, String, String)>> {
        Box::pin(async move {
            let failure = ctx
                .call_activity(Explode, "boom".to_owned())
                .await
                .expect_err("the activity panics")
                .details();
            let after = ctx.call_activity(Hello, "again").await?;
            Ok((failure.error_type, failure.message, after))
        })
    }
}

fn failures_registry() -> Registry {
    let mut registry = examples_registry();
    registry
        .add_activity::<ChargeCard>()
        .and_then(|r| r.add_activity::<Explode>())
        .and_then(|r| r.add_orchestrator::<Checkout>())
        .and_then(|r| r.add_orchestrator::<SurvivePanic>())
        .expect("distinct names");
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_failure_is_visible_in_the_orchestration_state() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, failures_registry()).await;
    let client = sidecar.client().await;

    let id = client
        .schedule_new_orchestration(Checkout, 250u32)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed, "{state:?}");
    let failure = state
        .failure_details
        .expect("a failed orchestration has failure details");
    // The activity's own failure is the cause of the orchestration's failure.
    let cause = failure
        .inner
        .as_deref()
        .expect("the activity failure is the cause");
    assert_eq!(cause.error_type, "CardDeclined");
    assert_eq!(cause.message, "insufficient funds");
    assert!(failure.message.contains("charge_card"), "{failure:?}");
    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_activity_fails_its_task_and_the_worker_lives_on() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, failures_registry()).await;
    let client = sidecar.client().await;

    let id = client
        .schedule_new_orchestration(SurvivePanic, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    let (error_type, message, after) = state.output::<(String, String, String)>().unwrap();
    assert_eq!(error_type, PANIC_ERROR_TYPE);
    assert!(message.contains("kaboom: boom"), "{message}");
    assert_eq!(after, "Hello again!");

    // Still serving new work, on the same connection.
    let id = client
        .schedule_new_orchestration(Sequence, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert_eq!(worker.status().connections, 1);
    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_activity_fails_with_activity_task_not_found() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let mut registry = Registry::new();
    registry
        .add_orchestrator_fn("calls_missing", |ctx, _| {
            Box::pin(async move {
                let err = ctx
                    .call_activity_by_name::<_, String>("no_such_activity", ())
                    .await
                    .expect_err("not registered");
                Ok(Some(
                    serde_json::to_string(&err.details().error_type).expect("a string"),
                ))
            })
        })
        .unwrap();
    let worker = start_worker(&sidecar, registry).await;
    let client = sidecar.client().await;
    let id = client
        .schedule_new_orchestration_by_name("calls_missing", &(), ScheduleOptions::new())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(
        state.output::<String>().unwrap(),
        durable::worker::ACTIVITY_NOT_FOUND_ERROR_TYPE
    );
    worker.shutdown().await;
    sidecar.stop().await;
}

// ---- client operations ----

/// For states no RPC can wait for (suspension): polls `GetInstance` until `status`, at most
/// [`WAIT`].
async fn poll_until_status(client: &durable::DurableClient, id: &str, status: RuntimeStatus) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = client
            .get_orchestration_state(id)
            .await
            .expect("GetInstance works")
            .expect("exists");
        if state.runtime_status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} did not reach {status:?}: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for an event named "go" and returns its payload.
#[derive(Clone, Copy)]
struct WaitForGo;

impl Orchestrator for WaitForGo {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "wait_for_go";
    fn run(ctx: OrchestrationContext, _: ()) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move {
            ctx.set_custom_status(&"waiting");
            let value: String = ctx.wait_for_external_event("go").await?;
            Ok(format!("went {value}"))
        })
    }
}

fn client_registry() -> Registry {
    let mut registry = examples_registry();
    registry
        .add_orchestrator::<WaitForGo>()
        .expect("distinct names");
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_suspend_resume_and_events() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, client_registry()).await;
    let client = sidecar.client().await;

    // Terminate.
    let doomed = client
        .schedule_new_orchestration(WaitForGo, ())
        .await
        .unwrap();
    let started = client
        .wait_for_orchestration_start(&doomed, WAIT)
        .await
        .unwrap();
    assert_eq!(started.runtime_status, RuntimeStatus::Running);
    client
        .terminate_orchestration_with_output(&doomed, "stopped by test", false)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&doomed, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Terminated);
    assert_eq!(state.output::<String>().unwrap(), "stopped by test");

    // Suspend: an event raised meanwhile does not run the orchestration until resumed.
    let paused = client
        .schedule_new_orchestration_with(
            WaitForGo,
            (),
            ScheduleOptions::new().instance_id("paused-1"),
        )
        .await
        .unwrap();
    assert_eq!(paused, "paused-1");
    client
        .wait_for_orchestration_start(&paused, WAIT)
        .await
        .unwrap();
    client
        .suspend_orchestration(&paused, Some("maintenance"))
        .await
        .unwrap();
    // The sidecar applies the suspension in the next episode; no RPC waits for it, so poll.
    poll_until_status(&client, &paused, RuntimeStatus::Suspended).await;
    client
        .raise_orchestration_event(&paused, "go", "later")
        .await
        .unwrap();
    let early = client
        .wait_for_orchestration_completion(&paused, Duration::from_secs(2))
        .await;
    assert!(matches!(early, Err(ClientError::Timeout(_))), "{early:?}");
    client.resume_orchestration(&paused, None).await.unwrap();
    let state = client
        .wait_for_orchestration_completion(&paused, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert_eq!(state.output::<String>().unwrap(), "went later");
    assert_eq!(state.custom_status::<String>().unwrap(), "waiting");

    // Typed errors.
    let again = client
        .schedule_new_orchestration_with(
            WaitForGo,
            (),
            ScheduleOptions::new().instance_id("paused-1"),
        )
        .await;
    assert!(
        matches!(again, Err(ClientError::AlreadyExists(_))),
        "{again:?}"
    );
    let missing = client
        .raise_orchestration_event("no-such-instance", "go", "x")
        .await;
    assert!(
        matches!(missing, Err(ClientError::NotFound(_))),
        "{missing:?}"
    );
    assert!(
        client
            .get_orchestration_state("no-such-instance")
            .await
            .unwrap()
            .is_none()
    );

    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_history_restart_and_purge() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let worker = start_worker(&sidecar, client_registry()).await;
    let client = sidecar.client().await;

    let mut ids = Vec::new();
    for i in 0..5 {
        let options = ScheduleOptions::new()
            .instance_id(format!("batch-{i}"))
            .tag("batch", "yes");
        ids.push(
            client
                .schedule_new_orchestration_with(Sequence, (), options)
                .await
                .unwrap(),
        );
    }
    let other = client
        .schedule_new_orchestration(WaitForGo, ())
        .await
        .unwrap();
    for id in &ids {
        client
            .wait_for_orchestration_completion(id, WAIT)
            .await
            .unwrap();
    }
    client
        .wait_for_orchestration_start(&other, WAIT)
        .await
        .unwrap();

    // Paging by prefix, two at a time.
    let mut query = OrchestrationQuery::new()
        .instance_id_prefix("batch-")
        .page_size(2);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.query_orchestrations(&query).await.unwrap();
        assert!(page.items.len() <= 2);
        pages += 1;
        seen.extend(page.items.into_iter().map(|s| s.instance_id));
        match page.continuation_token {
            Some(token) => query = query.continuation_token(token),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ids);
    assert!(
        pages >= 3,
        "5 items in pages of 2 take at least 3 pages, got {pages}"
    );

    // By status, all pages at once, with payloads.
    let running = client
        .query_all_orchestrations(
            &OrchestrationQuery::new()
                .status(RuntimeStatus::Running)
                .fetch_inputs_and_outputs(true),
        )
        .await
        .unwrap();
    assert_eq!(
        running
            .iter()
            .map(|s| s.instance_id.as_str())
            .collect::<Vec<_>>(),
        [other.as_str()]
    );
    // (The Python in-memory backend does not report tags, so they are not asserted here.)
    let state = client
        .get_orchestration_state(&ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.name, "sequence");
    assert!(state.created_at <= state.last_updated_at);

    // History of a finished instance.
    let history = client.get_history(&ids[0]).await.unwrap();
    let scheduled = history
        .iter()
        .filter(|e| {
            matches!(
                e.event_type,
                Some(durable::proto::history_event::EventType::TaskScheduled(_))
            )
        })
        .count();
    assert_eq!(scheduled, 3, "three activities in the sequence");

    // Restart under a new id.
    let restarted = client.restart_orchestration(&ids[0], true).await.unwrap();
    assert_ne!(restarted, ids[0]);
    let state = client
        .wait_for_orchestration_completion(&restarted, WAIT)
        .await
        .unwrap();
    assert_eq!(state.output::<Vec<String>>().unwrap().len(), 3);

    // Purge one, then the rest of the completed ones by filter.
    let purged = client.purge_orchestration(&ids[0], false).await.unwrap();
    assert_eq!(purged.deleted_instance_count, 1);
    assert!(
        client
            .get_orchestration_state(&ids[0])
            .await
            .unwrap()
            .is_none()
    );
    let purged = client
        .purge_orchestrations(
            &durable::client::PurgeFilter::new().status(RuntimeStatus::Completed),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        purged.deleted_instance_count, 5,
        "four of the batch and the restarted one"
    );
    assert!(
        client
            .get_orchestration_state(&other)
            .await
            .unwrap()
            .is_some(),
        "running ones stay"
    );

    worker.shutdown().await;
    sidecar.stop().await;
}

// ---- rewind ----

static FLAKY_FAILED_ONCE: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy)]
struct FlakyOnce;

impl Activity for FlakyOnce {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "flaky_once";
    fn run(_ctx: ActivityContext, _: ()) -> BoxFuture<'static, durable::Result<String>> {
        Box::pin(async {
            if !FLAKY_FAILED_ONCE.swap(true, Ordering::SeqCst) {
                return Err(durable::Error::msg("first attempt fails"));
            }
            Ok("second attempt works".to_owned())
        })
    }
}

#[derive(Clone, Copy)]
struct CallsFlaky;

impl Orchestrator for CallsFlaky {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "calls_flaky";
    fn run(ctx: OrchestrationContext, _: ()) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move { Ok(ctx.call_activity(FlakyOnce, ()).await?) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_reruns_a_failed_instance() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let mut registry = Registry::new();
    registry
        .add_activity::<FlakyOnce>()
        .and_then(|r| r.add_orchestrator::<CallsFlaky>())
        .unwrap();
    let worker = start_worker(&sidecar, registry).await;
    let client = sidecar.client().await;

    let id = client
        .schedule_new_orchestration(CallsFlaky, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed);
    client
        .rewind_orchestration(&id, Some("try again"))
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    assert_eq!(state.output::<String>().unwrap(), "second attempt works");
    worker.shutdown().await;
    sidecar.stop().await;
}

// ---- resilience ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_after_the_sidecar_restarts() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let port = sidecar.port;
    let options = WorkerOptions::new()
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let worker = start_worker_with(&sidecar, examples_registry(), options).await;
    let client = sidecar.client().await;
    let id = client
        .schedule_new_orchestration(Sequence, ())
        .await
        .unwrap();
    client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();

    sidecar.stop().await;
    let sidecar = PySidecar::start_on(port)
        .await
        .expect("python is still there");
    assert!(
        worker.wait_connected(2, WAIT).await,
        "the worker reconnected: {:?}",
        worker.status()
    );

    // The old client reconnects too (tonic channels reconnect on demand).
    let id = loop {
        match client.schedule_new_orchestration(Sequence, ()).await {
            Ok(id) => break id,
            Err(e) if e.is_retryable() => continue,
            Err(e) => panic!("{e}"),
        }
    };
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.output::<Vec<String>>().unwrap().len(), 3);
    worker.shutdown().await;
    sidecar.stop().await;
}

static SLOW_STARTED: AtomicUsize = AtomicUsize::new(0);
static SLOW_STARTED_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[derive(Clone, Copy)]
struct Slow;

impl Activity for Slow {
    type Input = u64;
    type Output = u64;
    const NAME: &'static str = "slow";
    fn run(_ctx: ActivityContext, millis: u64) -> BoxFuture<'static, durable::Result<u64>> {
        Box::pin(async move {
            SLOW_STARTED.fetch_add(1, Ordering::SeqCst);
            SLOW_STARTED_NOTIFY.notify_waiters();
            tokio::time::sleep(Duration::from_millis(millis)).await;
            Ok(millis)
        })
    }
}

#[derive(Clone, Copy)]
struct CallsSlow;

impl Orchestrator for CallsSlow {
    type Input = u64;
    type Output = u64;
    const NAME: &'static str = "calls_slow";
    fn run(
        ctx: OrchestrationContext,
        millis: u64,
    ) -> LocalBoxFuture<'static, durable::Result<u64>> {
        Box::pin(async move { Ok(ctx.call_activity(Slow, millis).await?) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_running_work_within_the_grace_period() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let registry = || {
        let mut registry = Registry::new();
        registry
            .add_activity::<Slow>()
            .and_then(|r| r.add_orchestrator::<CallsSlow>())
            .unwrap();
        registry
    };
    let options = WorkerOptions::new().shutdown_grace(Duration::from_secs(20));
    let worker = start_worker_with(&sidecar, registry(), options).await;
    let client = sidecar.client().await;

    let started = SLOW_STARTED_NOTIFY.notified();
    let id = client
        .schedule_new_orchestration(CallsSlow, 1500u64)
        .await
        .unwrap();
    tokio::time::timeout(WAIT, started)
        .await
        .expect("the activity started");
    // The activity is running: shutdown waits for it and delivers its result.
    let began = std::time::Instant::now();
    worker.shutdown().await;
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "shutdown waited for the activity"
    );

    // A new worker runs the episode that consumes the delivered result.
    let worker = start_worker(&sidecar, registry()).await;
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.output::<u64>().unwrap(), 1500);
    worker.shutdown().await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_builder_serves_an_external_sidecar() {
    let Some(mut sidecar) = PySidecar::start().await else {
        return;
    };
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .sidecar(sidecar.endpoint())
        .task_hub("default")
        .header("x-test", "yes")
        .max_concurrent_activities(4)
        .registry(examples_registry())
        .start()
        .await
        .unwrap();
    assert!(runtime.wait_until_connected(WAIT).await);
    // The metadata headers reach the sidecar.
    assert_eq!(
        sidecar.expect_line("HELLO").await,
        "HELLO taskhub=default x-test=yes"
    );
    assert_eq!(runtime.endpoint(), sidecar.endpoint());
    let client = runtime.client();
    let id = client
        .schedule_new_orchestration(FanOutFanIn, 8u32)
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.output::<FanOutSummary>().unwrap().total, 280);
    runtime.shutdown().await;
    sidecar.stop().await;
}

static HANG_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

#[derive(Clone, Copy)]
struct Hang;

impl Activity for Hang {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "hang";
    fn run(_ctx: ActivityContext, _: ()) -> BoxFuture<'static, durable::Result<()>> {
        Box::pin(async {
            HANG_STARTED.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        })
    }
}

#[derive(Clone, Copy)]
struct CallsHang;

impl Orchestrator for CallsHang {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "calls_hang";
    fn run(ctx: OrchestrationContext, _: ()) -> LocalBoxFuture<'static, durable::Result<()>> {
        Box::pin(async move { Ok(ctx.call_activity(Hang, ()).await?) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_work_that_outlives_the_grace_period() {
    let Some(mut sidecar) = PySidecar::start().await else {
        return;
    };
    let mut registry = Registry::new();
    registry
        .add_activity::<Hang>()
        .and_then(|r| r.add_orchestrator::<CallsHang>())
        .unwrap();
    let grace = Duration::from_millis(300);
    let worker = start_worker_with(
        &sidecar,
        registry,
        WorkerOptions::new().shutdown_grace(grace),
    )
    .await;
    let client = sidecar.client().await;
    let started = HANG_STARTED.notified();
    client
        .schedule_new_orchestration(CallsHang, ())
        .await
        .unwrap();
    tokio::time::timeout(WAIT, started)
        .await
        .expect("the activity started");

    let began = std::time::Instant::now();
    worker.shutdown().await;
    let took = began.elapsed();
    assert!(
        took >= grace,
        "shutdown waited for the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(10), "then gave up: {took:?}");
    let line = sidecar.expect_line("ABANDON_ACTIVITY").await;
    assert!(
        line.len() > "ABANDON_ACTIVITY ".len(),
        "the completion token is echoed: {line}"
    );
    sidecar.stop().await;
}

/// A work-item stream that stays silent past the watchdog is treated as dead and reopened (the
/// Python backend sends no health pings), and work still flows afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_reopened_by_the_watchdog() {
    let Some(mut sidecar) = PySidecar::start().await else {
        return;
    };
    let options = WorkerOptions::new()
        .silent_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(100));
    let worker = start_worker_with(&sidecar, examples_registry(), options).await;
    assert!(
        worker.wait_connected(3, WAIT).await,
        "the watchdog did not reopen the silent stream"
    );
    for _ in 0..3 {
        sidecar.expect_line("HELLO").await;
    }
    let client = sidecar.client().await;
    let id = client
        .schedule_new_orchestration(Sequence, ())
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&id, WAIT)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
    worker.shutdown().await;
    sidecar.stop().await;
}
