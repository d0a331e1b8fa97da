//! Entities from orchestrations under replay: signals, calls, critical sections, failures,
//! misuse, nondeterminism, suspension, and a golden history.

// Helpers outside #[test] fns unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use durable::entity::EntityId;
use durable::orchestration::ENTITY_LOCK_MISUSE_ERROR_TYPE;
use durable::testing::HistoryBuilder;
use durable::{OrchestrationContext, Registry};

fn counter(key: &str) -> EntityId {
    EntityId::new("counter", key).unwrap()
}

fn add_then_get() -> Registry {
    registry(
        "add_then_get",
        |ctx: OrchestrationContext, key: String| async move {
            let id = counter(&key);
            ctx.signal_entity_by_name(&id, "add", 5);
            let value: i64 = ctx.call_entity_by_name(&id, "get", ()).await?;
            Ok(value)
        },
    )
}

#[test]
fn signals_and_calls_are_confirmed_and_answered_by_request_id() {
    let mut sim = Sim::new(add_then_get());
    let r = sim.start("add_then_get", "\"c\"");
    assert_eq!(
        summary(&r),
        [
            (0, "signal", "@counter@c/add".to_owned()),
            (1, "call", "@counter@c/get".to_owned()),
        ]
    );
    let request = entity_request_id(&r, 1);
    let r = sim.episode(vec![entity_completed(&request, "5")]);
    assert_eq!(output(&r), "5");
}

#[test]
fn a_failed_operation_fails_the_task_with_the_entity_failure() {
    let registry = registry("catch", |ctx: OrchestrationContext, _: ()| async move {
        let result: Result<i64, _> = ctx.call_entity_by_name(&counter("c"), "get", ()).await;
        let details = result.unwrap_err().details();
        Ok(format!("{}: {}", details.error_type, details.message))
    });
    let mut sim = Sim::new(registry);
    let r = sim.start("catch", "null");
    let request = entity_request_id(&r, 0);
    let r = sim.episode(vec![entity_failed(&request, "Overflow", "too big")]);
    assert_eq!(output(&r), "\"Overflow: too big\"");
}

fn transfer() -> Registry {
    registry("transfer", |ctx: OrchestrationContext, _: ()| async move {
        let (a, b) = (counter("a"), counter("b"));
        let lock = ctx
            .lock_entities(&[b.clone(), a.clone(), b.clone()])
            .await?;
        assert!(ctx.is_in_critical_section());
        assert_eq!(lock.entities(), [a.clone(), b.clone()]);
        let balance: i64 = ctx.call_entity_by_name(&a, "get", ()).await?;
        ctx.call_entity_by_name::<_, ()>(&b, "add", balance).await?;
        drop(lock);
        assert!(!ctx.is_in_critical_section());
        Ok(balance)
    })
}

#[test]
fn critical_sections_lock_sorted_sets_and_unlock_when_the_lock_drops() {
    let mut sim = Sim::new(transfer());
    let r = sim.start("transfer", "null");
    assert_eq!(
        summary(&r),
        [(0, "lock", "@counter@a,@counter@b".to_owned())]
    );
    let section = entity_request_id(&r, 0);
    let r = sim.episode(vec![lock_granted(&section)]);
    assert_eq!(summary(&r), [(1, "call", "@counter@a/get".to_owned())]);
    let r = sim.episode(vec![entity_completed(&entity_request_id(&r, 1), "7")]);
    assert_eq!(summary(&r), [(2, "call", "@counter@b/add".to_owned())]);
    let r = sim.episode(vec![entity_completed(&entity_request_id(&r, 2), "null")]);
    assert_eq!(
        summary(&r),
        [
            (3, "unlock", "@counter@a".to_owned()),
            (4, "unlock", "@counter@b".to_owned()),
            (5, "complete", "Completed".to_owned()),
        ]
    );
    assert_eq!(entity_request_id(&r, 3), section);
    assert_eq!(output(&r), "7");
}

#[test]
fn entity_results_wait_while_suspended() {
    let mut sim = Sim::new(add_then_get());
    let r = sim.start("add_then_get", "\"c\"");
    let request = entity_request_id(&r, 1);
    let r = sim.episode(vec![suspended(), entity_completed(&request, "5")]);
    assert!(completion(&r).is_none(), "held back by the suspension");
    let r = sim.episode(vec![resumed()]);
    assert_eq!(output(&r), "5");
}

#[test]
fn misuse_inside_critical_sections_is_a_clear_error() {
    let registry = registry(
        "misuse",
        |ctx: OrchestrationContext, how: String| async move {
            let (a, b) = (counter("a"), counter("b"));
            let not_yet = ctx.lock_entities(std::slice::from_ref(&a));
            if how == "before_grant" {
                let early: Result<i64, _> = ctx.call_entity_by_name(&a, "get", ()).await;
                return Ok(early.unwrap_err().details().message);
            }
            let _lock = not_yet.await?;
            let error = match how.as_str() {
                "unlocked" => ctx
                    .call_entity_by_name::<_, i64>(&b, "get", ())
                    .await
                    .map(|_| ())
                    .unwrap_err(),
                "nested" => ctx.lock_entities(&[b]).await.map(|_| ()).unwrap_err(),
                "twice" => {
                    let _first: durable::Task<i64> = ctx.call_entity_by_name(&a, "get", ());
                    ctx.call_entity_by_name::<_, i64>(&a, "get", ())
                        .await
                        .map(|_| ())
                        .unwrap_err()
                }
                "sub" => ctx
                    .call_sub_orchestrator_by_name::<_, ()>("child", (), Default::default())
                    .await
                    .unwrap_err(),
                _ => {
                    ctx.signal_entity_by_name(&a, "add", 1);
                    return Ok(String::new());
                }
            };
            let details = error.details();
            assert_eq!(details.error_type, ENTITY_LOCK_MISUSE_ERROR_TYPE);
            assert!(details.non_retriable);
            Ok(details.message)
        },
    );
    let grant = |how: &str| {
        let mut sim = Sim::new(registry.clone());
        let r = sim.start("misuse", &format!("\"{how}\""));
        if how == "before_grant" {
            return r;
        }
        let section = entity_request_id(&r, 0);
        sim.episode(vec![lock_granted(&section)])
    };
    for (how, expected) in [
        ("before_grant", "are not granted yet"),
        (
            "unlocked",
            "`@counter@b` is not locked by this critical section",
        ),
        ("nested", "critical sections do not nest"),
        ("twice", "still in flight"),
        ("sub", "cannot start inside a critical section"),
    ] {
        let r = grant(how);
        let message = output(&r);
        assert!(message.contains(expected), "{how}: {message}");
    }
    let r = grant("signal");
    let failure = failure(&r);
    assert_eq!(failure.error_type, ENTITY_LOCK_MISUSE_ERROR_TYPE);
    assert!(
        failure.error_message.contains("must not be signalled"),
        "{failure:?}"
    );
}

#[test]
fn a_call_where_history_has_a_signal_is_nondeterminism() {
    let registry = registry("changed", |ctx: OrchestrationContext, _: ()| async move {
        let _: i64 = ctx.call_entity_by_name(&counter("c"), "get", ()).await?;
        Ok(())
    });
    let mut history = HistoryBuilder::new("x");
    history
        .orchestrator_started()
        .execution_started("changed", "null")
        .entity_signaled(0, "@counter@c", "get")
        .orchestrator_started();
    let r = durable::orchestration::execute(&registry, &history.request_replaying_all_but(1));
    let message = nondeterminism(&r);
    assert!(
        message.contains("entity signal \"@counter@c/get\" at id 0"),
        "{message}"
    );
    assert!(message.contains("entity call"), "{message}");
}

/// A transfer between accounts. The request and critical-section ids are what the code
/// derives (deterministic GUIDs of instance id, episode time and a counter), written out: if
/// they ever change, histories recorded by earlier versions would no longer replay.
const GOLDEN_IDS: [&str; 3] = [
    "740ba2ff-9445-5f6e-bcb3-0ff0743c7656",
    "ca42b96f-b3cc-5402-a23e-f4b091b8d196",
    "66e94eb5-0e3d-5c2f-82c6-6d5427ed915a",
];

fn golden_prefix() -> HistoryBuilder {
    let mut h = HistoryBuilder::new("transfer-1");
    h.orchestrator_started()
        .execution_started("transfer", "null");
    h
}

fn golden() -> HistoryBuilder {
    let mut h = golden_prefix();
    h.lock_requested(0, GOLDEN_IDS[0], &["@counter@a", "@counter@b"])
        .orchestrator_started()
        .lock_granted(GOLDEN_IDS[0])
        .entity_called(1, "@counter@a", "get", GOLDEN_IDS[1])
        .orchestrator_started()
        .entity_completed(GOLDEN_IDS[1], "7")
        .entity_called(2, "@counter@b", "add", GOLDEN_IDS[2])
        .orchestrator_started()
        .entity_completed(GOLDEN_IDS[2], "null");
    h
}

#[test]
fn golden_ids_are_what_the_code_derives() {
    let mut h = golden_prefix();
    let first = durable::orchestration::execute(&transfer(), &h.request_all_new());
    let section = entity_request_id(&first, 0);
    h.lock_requested(0, &section, &["@counter@a", "@counter@b"])
        .orchestrator_started()
        .lock_granted(&section);
    let second = durable::orchestration::execute(&transfer(), &h.request_replaying_all_but(2));
    let get = entity_request_id(&second, 1);
    h.entity_called(1, "@counter@a", "get", &get)
        .orchestrator_started()
        .entity_completed(&get, "7");
    let third = durable::orchestration::execute(&transfer(), &h.request_replaying_all_but(2));
    let add = entity_request_id(&third, 2);
    assert_eq!([section.as_str(), get.as_str(), add.as_str()], GOLDEN_IDS);
}

#[test]
fn golden_history_replays_to_the_same_result_at_every_split() {
    let h = golden();
    let total = h.events().len();
    for new in 1..=total {
        let request = h.request_replaying_all_but(new);
        if !matches!(
            request.new_events[0].event_type,
            Some(durable::proto::history_event::EventType::OrchestratorStarted(_))
        ) {
            continue;
        }
        let r = durable::orchestration::execute(&transfer(), &request);
        assert_eq!(
            summary(&r),
            [
                (3, "unlock", "@counter@a".to_owned()),
                (4, "unlock", "@counter@b".to_owned()),
                (5, "complete", "Completed".to_owned()),
            ],
            "new={new}"
        );
        assert_eq!(output(&r), "7");
        assert_eq!(entity_request_id(&r, 3), GOLDEN_IDS[0]);
    }
}
