//! Entities at the protocol level, with a hand-driven worker: queues and batches, partial and
//! failed batches, abandon, locks (only the holder's calls while locked, release when the
//! holder ends), call results, delayed signals, filters, the entity RPCs and restart on SQLite.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "sidecar_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use durable_proto::{
    self as proto, history_event::EventType, operation_result::ResultType,
    orchestrator_action::OrchestratorActionType, send_entity_message_action::EntityMessageType,
    work_item,
};
use durable_sidecar::SidecarBuilder;

async fn signal(c: &mut Client, id: &str, op: &str, input: &str) {
    c.signal_entity(proto::SignalEntityRequest {
        instance_id: id.into(),
        name: op.into(),
        input: Some(input.into()),
        request_id: format!("req-{op}-{input}"),
        ..Default::default()
    })
    .await
    .expect("signal entity");
}

async fn next_entity(w: &mut Worker) -> (proto::EntityRequest, String) {
    let item = w.next().await;
    match item.request {
        Some(work_item::Request::EntityRequestV2(r)) => (r, item.completion_token),
        other => panic!("expected an entity work item, got {other:?}"),
    }
}

fn operations(req: &proto::EntityRequest) -> Vec<String> {
    req.operation_requests
        .iter()
        .map(|e| match &e.event_type {
            Some(EventType::EntityOperationSignaled(s)) => format!("signal {}", s.operation),
            Some(EventType::EntityOperationCalled(c)) => format!(
                "call {} from {}",
                c.operation,
                c.parent_instance_id.as_deref().unwrap_or("?")
            ),
            other => panic!("unexpected operation event {other:?}"),
        })
        .collect()
}

fn success(result: &str) -> proto::OperationResult {
    proto::OperationResult {
        result_type: Some(ResultType::Success(proto::OperationResultSuccess {
            result: Some(result.into()),
            ..Default::default()
        })),
    }
}

async fn complete(
    w: &mut Worker,
    token: String,
    state: Option<&str>,
    results: Vec<proto::OperationResult>,
) {
    w.client
        .complete_entity_task(proto::EntityBatchResult {
            results,
            entity_state: state.map(str::to_owned),
            completion_token: token,
            ..Default::default()
        })
        .await
        .expect("complete entity task");
}

async fn get_entity(c: &mut Client, id: &str) -> Option<proto::EntityMetadata> {
    let r = c
        .get_entity(proto::GetEntityRequest {
            instance_id: id.into(),
            include_state: true,
        })
        .await
        .expect("get entity")
        .into_inner();
    assert_eq!(r.exists, r.entity.is_some());
    r.entity
}

fn entity_action(id: i32, message: EntityMessageType) -> proto::OrchestratorAction {
    proto::OrchestratorAction {
        id,
        orchestrator_action_type: Some(OrchestratorActionType::SendEntityMessage(
            proto::SendEntityMessageAction {
                entity_message_type: Some(message),
            },
        )),
    }
}

fn call(
    id: i32,
    target: &str,
    op: &str,
    request_id: &str,
    parent: &str,
) -> proto::OrchestratorAction {
    entity_action(
        id,
        EntityMessageType::EntityOperationCalled(proto::EntityOperationCalledEvent {
            request_id: request_id.into(),
            operation: op.into(),
            input: Some("null".into()),
            parent_instance_id: Some(parent.into()),
            target_instance_id: Some(target.into()),
            ..Default::default()
        }),
    )
}

fn lock(id: i32, section: &str, set: &[&str], parent: &str) -> proto::OrchestratorAction {
    entity_action(
        id,
        EntityMessageType::EntityLockRequested(proto::EntityLockRequestedEvent {
            critical_section_id: section.into(),
            lock_set: set.iter().map(|s| (*s).to_owned()).collect(),
            position: 0,
            parent_instance_id: Some(parent.into()),
        }),
    )
}

fn unlock(id: i32, section: &str, target: &str, parent: &str) -> proto::OrchestratorAction {
    entity_action(
        id,
        EntityMessageType::EntityUnlockSent(proto::EntityUnlockSentEvent {
            critical_section_id: section.into(),
            parent_instance_id: Some(parent.into()),
            target_instance_id: Some(target.into()),
        }),
    )
}

on_every_backend!(signals_batch_in_order_and_partial_results_requeue_the_tail);
async fn signals_batch_in_order_and_partial_results_requeue_the_tail(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    for n in 1..=3 {
        signal(&mut c, "@Counter@k", "add", &n.to_string()).await;
    }
    assert!(
        get_entity(&mut c, "@counter@k").await.is_none(),
        "no state yet"
    );
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let (req, token) = next_entity(&mut w).await;
    assert_eq!(
        req.instance_id, "@counter@k",
        "names are stored lower-cased"
    );
    assert_eq!(operations(&req), ["signal add", "signal add", "signal add"]);
    assert!(req.entity_state.is_none());
    // The worker got through one operation only: the other two come again, in order.
    complete(&mut w, token, Some("1"), vec![success("null")]).await;
    let (req, token) = next_entity(&mut w).await;
    assert_eq!(req.operation_requests.len(), 2);
    assert_eq!(req.entity_state.as_deref(), Some("1"));
    // A whole-batch failure commits nothing and redelivers the batch.
    w.client
        .complete_entity_task(proto::EntityBatchResult {
            failure_details: Some(proto::TaskFailureDetails {
                error_type: "Crash".into(),
                error_message: "worker bug".into(),
                ..Default::default()
            }),
            completion_token: token,
            ..Default::default()
        })
        .await
        .unwrap();
    let (req, token) = next_entity(&mut w).await;
    assert_eq!(req.operation_requests.len(), 2);
    assert_eq!(req.entity_state.as_deref(), Some("1"));
    // Abandoned work comes back too.
    w.client
        .abandon_task_entity_work_item(proto::AbandonEntityTaskRequest {
            completion_token: token,
        })
        .await
        .unwrap();
    let (req, token) = next_entity(&mut w).await;
    assert_eq!(req.operation_requests.len(), 2);
    complete(
        &mut w,
        token,
        Some("6"),
        vec![success("null"), success("null")],
    )
    .await;
    let entity = get_entity(&mut c, "@counter@k").await.expect("has state");
    assert_eq!(entity.serialized_state.as_deref(), Some("6"));
    assert_eq!(entity.backlog_queue_size, 0);
    assert!(entity.locked_by.is_none());
    // A result with no state deletes the entity.
    signal(&mut c, "@counter@k", "delete", "null").await;
    let (_, token) = next_entity(&mut w).await;
    complete(&mut w, token, None, vec![success("null")]).await;
    assert!(get_entity(&mut c, "@counter@k").await.is_none());
    sidecar.shutdown().await;
}

on_every_backend!(bad_entity_ids_and_operations_are_invalid_arguments);
async fn bad_entity_ids_and_operations_are_invalid_arguments(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    for id in ["counter", "@counter", "@@k", "@counter@"] {
        let err = c
            .signal_entity(proto::SignalEntityRequest {
                instance_id: id.into(),
                name: "add".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{id}");
        assert!(err.message().contains("@name@key"), "{}", err.message());
    }
    let err = c
        .signal_entity(proto::SignalEntityRequest {
            instance_id: "@counter@k".into(),
            name: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = c
        .start_instance(proto::CreateInstanceRequest {
            instance_id: "@counter@k".into(),
            name: "O".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("reserved for entity ids"));
    sidecar.shutdown().await;
}

on_every_backend!(locked_entities_run_only_the_holders_calls_and_unlock_when_it_ends);
async fn locked_entities_run_only_the_holders_calls_and_unlock_when_it_ends(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "holder", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "holder",
        token,
        vec![lock(0, "cs-1", &["@a@1", "@b@1"], "holder")],
    )
    .await;
    let (req, token) = w.next_orchestration().await;
    match &req.new_events[1].event_type {
        Some(EventType::EntityLockGranted(g)) => assert_eq!(g.critical_section_id, "cs-1"),
        other => panic!("expected the grant, got {other:?}"),
    }
    assert_eq!(
        get_entity_transient(&mut c, "@a@1")
            .await
            .locked_by
            .as_deref(),
        Some("holder")
    );
    // Someone else's signal waits; the holder's call goes through.
    signal(&mut c, "@a@1", "add", "100").await;
    w.complete(
        "holder",
        token,
        vec![call(1, "@a@1", "get", "r1", "holder")],
    )
    .await;
    let (batch, entity_token) = next_entity(&mut w).await;
    assert_eq!(operations(&batch), ["call get from holder"]);
    complete(&mut w, entity_token, Some("5"), vec![success("5")]).await;
    let (req, token) = w.next_orchestration().await;
    match &req.new_events[1].event_type {
        Some(EventType::EntityOperationCompleted(done)) => {
            assert_eq!(done.request_id, "r1");
            assert_eq!(done.output.as_deref(), Some("5"));
        }
        other => panic!("expected the call result, got {other:?}"),
    }
    assert!(
        w.try_next(Duration::from_millis(300)).await.is_none(),
        "the signal waits for the lock"
    );
    // A second critical section over a locked entity waits.
    start(&mut c, "other", "O", None).await;
    let (_, other_token) = w.next_orchestration().await;
    w.complete(
        "other",
        other_token,
        vec![lock(0, "cs-2", &["@b@1"], "other")],
    )
    .await;
    assert!(
        w.try_next(Duration::from_millis(300)).await.is_none(),
        "cs-2 waits for @b@1"
    );
    // The holder releases @a@1 and completes: the signal runs, and cs-2 gets @b@1.
    w.complete(
        "holder",
        token,
        vec![
            unlock(2, "cs-1", "@a@1", "holder"),
            finish(3, proto::OrchestrationStatus::Completed, "null"),
        ],
    )
    .await;
    let mut saw_signal = false;
    let mut saw_grant = None;
    while !(saw_signal && saw_grant.is_some()) {
        let item = w.next().await;
        match item.request {
            Some(work_item::Request::EntityRequestV2(r)) => {
                assert_eq!(operations(&r), ["signal add"]);
                complete(
                    &mut w,
                    item.completion_token,
                    Some("105"),
                    vec![success("null")],
                )
                .await;
                saw_signal = true;
            }
            Some(work_item::Request::OrchestratorRequest(r)) => {
                assert_eq!(r.instance_id, "other");
                assert!(matches!(
                    r.new_events[1].event_type,
                    Some(EventType::EntityLockGranted(_))
                ));
                saw_grant = Some(item.completion_token);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        get_entity_transient(&mut c, "@a@1")
            .await
            .locked_by
            .is_none()
    );
    assert_eq!(
        get_entity_transient(&mut c, "@b@1")
            .await
            .locked_by
            .as_deref(),
        Some("other")
    );
    // Terminating the new holder releases its lock too.
    let grant_token = saw_grant.expect("granted");
    w.complete("other", grant_token, Vec::new()).await;
    c.terminate_instance(proto::TerminateRequest {
        instance_id: "other".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "other",
        token,
        vec![finish(1, proto::OrchestrationStatus::Terminated, "null")],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while query_all(&mut c)
        .await
        .iter()
        .any(|e| e.locked_by.is_some())
    {
        assert!(Instant::now() < deadline, "the lock was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sidecar.shutdown().await;
}

async fn get_entity_transient(c: &mut Client, id: &str) -> proto::EntityMetadata {
    query_all(c)
        .await
        .into_iter()
        .find(|e| e.instance_id == id)
        .unwrap_or_else(|| panic!("no entity {id}"))
}

async fn query_all(c: &mut Client) -> Vec<proto::EntityMetadata> {
    c.query_entities(proto::QueryEntitiesRequest {
        query: Some(proto::EntityQuery {
            include_transient: true,
            include_state: true,
            ..Default::default()
        }),
    })
    .await
    .expect("query entities")
    .into_inner()
    .entities
}

on_every_backend!(delayed_signals_wait_and_filters_route_entity_work);
async fn delayed_signals_wait_and_filters_route_entity_work(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let only_counters = proto::GetWorkItemsRequest {
        work_item_filters: Some(proto::WorkItemFilters {
            entities: vec![proto::EntityFilter {
                name: "counter".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut counters = Worker::connect_with(sidecar.endpoint(), only_counters).await;
    let asked = Instant::now();
    c.signal_entity(proto::SignalEntityRequest {
        instance_id: "@counter@later".into(),
        name: "add".into(),
        scheduled_time: Some(now_ts(Duration::from_millis(400))),
        ..Default::default()
    })
    .await
    .unwrap();
    signal(&mut c, "@notes@n", "add", "\"x\"").await;
    let (req, token) = next_entity(&mut counters).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(390),
        "delivered no earlier than asked"
    );
    assert_eq!(req.instance_id, "@counter@later");
    complete(&mut counters, token, Some("1"), vec![success("null")]).await;
    assert!(
        counters
            .try_next(Duration::from_millis(300))
            .await
            .is_none(),
        "notes are not this worker's entities"
    );
    let mut any = Worker::connect(sidecar.endpoint()).await;
    let (req, _) = next_entity(&mut any).await;
    assert_eq!(req.instance_id, "@notes@n");
    sidecar.shutdown().await;
}

on_every_backend!(queries_page_by_id_and_clean_releases_orphaned_locks);
async fn queries_page_by_id_and_clean_releases_orphaned_locks(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    for key in ["3", "1", "2"] {
        signal(&mut c, &format!("@counter@{key}"), "set", "1").await;
        let (_, token) = next_entity(&mut w).await;
        complete(&mut w, token, Some(key), vec![success("null")]).await;
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .query_entities(proto::QueryEntitiesRequest {
                query: Some(proto::EntityQuery {
                    instance_id_starts_with: Some("@Counter@".into()),
                    page_size: Some(2),
                    continuation_token: token.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.entities.into_iter().map(|e| e.instance_id));
        token = page.continuation_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["@counter@1", "@counter@2", "@counter@3"]);

    // A holder that is purged leaves an orphaned lock; cleaning releases it.
    start(&mut c, "gone", "O", None).await;
    let (_, t) = w.next_orchestration().await;
    w.complete("gone", t, vec![lock(0, "cs", &["@counter@1"], "gone")])
        .await;
    let (_, t) = w.next_orchestration().await;
    // Finish without unlocking: the sidecar releases on completion anyway.
    w.complete(
        "gone",
        t,
        vec![finish(1, proto::OrchestrationStatus::Completed, "null")],
    )
    .await;
    // On PostgreSQL the release reaches the entity's partition as a message, moments later.
    let released = Instant::now();
    while get_entity(&mut c, "@counter@1")
        .await
        .unwrap()
        .locked_by
        .is_some()
    {
        assert!(
            released.elapsed() < Duration::from_secs(5),
            "completion releases the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clean = c
        .clean_entity_storage(proto::CleanEntityStorageRequest {
            remove_empty_entities: true,
            release_orphaned_locks: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        clean.orphaned_locks_released, 0,
        "completion already released the lock"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn entity_state_queues_and_locks_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!(
        "durable-entities-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("entities.db");
    {
        let sidecar = SidecarBuilder::new().sqlite(&db).start().await.unwrap();
        let mut c = client(sidecar.endpoint()).await;
        let mut w = Worker::connect(sidecar.endpoint()).await;
        signal(&mut c, "@counter@k", "add", "1").await;
        let (_, token) = next_entity(&mut w).await;
        complete(&mut w, token, Some("1"), vec![success("null")]).await;
        start(&mut c, "holder", "O", None).await;
        let (_, t) = w.next_orchestration().await;
        w.complete("holder", t, vec![lock(0, "cs", &["@counter@k"], "holder")])
            .await;
        // Queued but not run before the stop: must be delivered after the restart.
        signal(&mut c, "@counter@k", "add", "2").await;
        signal(&mut c, "@counter@other", "add", "3").await;
        drop(w);
        sidecar.shutdown().await;
    }
    let sidecar = SidecarBuilder::new().sqlite(&db).start().await.unwrap();
    let mut c = client(sidecar.endpoint()).await;
    let entity = get_entity(&mut c, "@counter@k")
        .await
        .expect("state survived");
    assert_eq!(entity.serialized_state.as_deref(), Some("1"));
    assert_eq!(
        entity.locked_by.as_deref(),
        Some("holder"),
        "the lock survived"
    );
    assert_eq!(entity.backlog_queue_size, 1, "the signal is still queued");
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let mut got = Vec::new();
    // The holder's episode (with the grant) and the unlocked entity's signal.
    for _ in 0..2 {
        let item = w.next().await;
        match item.request {
            Some(work_item::Request::EntityRequestV2(r)) => got.push(r.instance_id),
            Some(work_item::Request::OrchestratorRequest(r)) => got.push(r.instance_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, ["@counter@other", "holder"]);
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
