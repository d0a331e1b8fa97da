//! The sidecar over gRPC on 127.0.0.1:0 with a hand-driven worker.

#[path = "sidecar_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use durable_proto::{
    self as proto, GetInstanceRequest, OrchestrationStatus, history_event::EventType,
};
use durable_sidecar::SidecarBuilder;

on_every_backend!(worker_loop_runs_an_activity_chain);
async fn worker_loop_runs_an_activity_chain(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "chain-1", "Chain", Some("1")).await;
    assert_eq!(id, "chain-1");

    let (req, token) = w.next_orchestration().await;
    assert!(req.past_events.is_empty());
    assert_eq!(
        kinds(&req.new_events),
        ["OrchestratorStarted", "ExecutionStarted"]
    );
    let exec = req.execution_id.clone().expect("execution id");
    assert!(!exec.is_empty());
    w.complete(&id, token, vec![schedule(1, "Double", "1")])
        .await;

    let (act, token) = w.next_activity().await;
    assert_eq!(act.task_id, 1);
    assert_eq!(act.name, "Double");
    assert_eq!(
        act.orchestration_instance
            .as_ref()
            .and_then(|i| i.execution_id.clone()),
        Some(exec)
    );
    w.complete_activity(&act, token, "2").await;

    let (req, token) = w.next_orchestration().await;
    assert_eq!(
        kinds(&req.past_events),
        ["OrchestratorStarted", "ExecutionStarted", "TaskScheduled"]
    );
    assert_eq!(
        kinds(&req.new_events),
        ["OrchestratorStarted", "TaskCompleted"]
    );
    match &req.new_events[1].event_type {
        Some(EventType::TaskCompleted(t)) => {
            assert_eq!(t.task_scheduled_id, 1);
            assert_eq!(t.result.as_deref(), Some("2"));
        }
        other => panic!("unexpected {other:?}"),
    }
    w.complete(
        &id,
        token.clone(),
        vec![finish(2, OrchestrationStatus::Completed, "2")],
    )
    .await;
    // A second completion under the same token is refused and changes nothing.
    let again = w
        .client
        .complete_orchestrator_task(proto::OrchestratorResponse {
            instance_id: id.clone(),
            actions: vec![finish(2, OrchestrationStatus::Failed, "x")],
            completion_token: token,
            ..Default::default()
        })
        .await
        .expect_err("a token is good for one completion");
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");

    let state = wait_done(&mut c, &id).await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    assert_eq!(state.output.as_deref(), Some("2"));
    assert_eq!(state.input.as_deref(), Some("1"));
    sidecar.shutdown().await;
}

on_every_backend!(timers_fire_no_earlier_than_asked);
async fn timers_fire_no_earlier_than_asked(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "timer-1", "T", None).await;
    let (_, token) = w.next_orchestration().await;
    let asked = Instant::now();
    w.complete(
        &id,
        token,
        vec![timer(1, now_ts(Duration::from_millis(300)))],
    )
    .await;
    let (req, token) = w.next_orchestration().await;
    assert!(
        asked.elapsed() >= Duration::from_millis(250),
        "timer fired early"
    );
    let fired = req.new_events.iter().find_map(|e| match &e.event_type {
        Some(EventType::TimerFired(t)) => Some(t.timer_id),
        _ => None,
    });
    assert_eq!(fired, Some(1));
    w.complete(
        &id,
        token,
        vec![finish(2, OrchestrationStatus::Completed, "null")],
    )
    .await;
    assert_eq!(
        wait_done(&mut c, &id).await.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    sidecar.shutdown().await;
}

on_every_backend!(events_suspend_resume_and_terminate);
async fn events_suspend_resume_and_terminate(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "ev-1", "E", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(&id, token, vec![]).await;
    assert_eq!(
        get(&mut c, &id).await.expect("exists").orchestration_status,
        OrchestrationStatus::Running as i32
    );

    c.raise_event(proto::RaiseEventRequest {
        instance_id: id.clone(),
        name: "go".into(),
        input: Some("1".into()),
    })
    .await
    .expect("raise");
    let (req, token) = w.next_orchestration().await;
    assert_eq!(
        kinds(&req.new_events),
        ["OrchestratorStarted", "EventRaised"]
    );
    w.complete(&id, token, vec![]).await;

    // Suspended: events are held until resume.
    c.suspend_instance(proto::SuspendRequest {
        instance_id: id.clone(),
        reason: None,
    })
    .await
    .expect("suspend");
    assert_eq!(
        get(&mut c, &id).await.expect("exists").orchestration_status,
        OrchestrationStatus::Suspended as i32
    );
    c.raise_event(proto::RaiseEventRequest {
        instance_id: id.clone(),
        name: "go".into(),
        input: None,
    })
    .await
    .expect("raise while suspended");
    assert!(
        w.try_next(Duration::from_millis(300)).await.is_none(),
        "dispatched while suspended"
    );
    c.resume_instance(proto::ResumeRequest {
        instance_id: id.clone(),
        reason: None,
    })
    .await
    .expect("resume");
    let (req, token) = w.next_orchestration().await;
    assert_eq!(
        kinds(&req.new_events),
        [
            "OrchestratorStarted",
            "ExecutionSuspended",
            "EventRaised",
            "ExecutionResumed"
        ]
    );
    w.complete(&id, token, vec![]).await;

    c.terminate_instance(proto::TerminateRequest {
        instance_id: id.clone(),
        output: Some("\"bye\"".into()),
        recursive: true,
    })
    .await
    .expect("terminate");
    let (req, token) = w.next_orchestration().await;
    assert_eq!(
        kinds(&req.new_events),
        ["OrchestratorStarted", "ExecutionTerminated"]
    );
    w.complete(
        &id,
        token,
        vec![finish(-1, OrchestrationStatus::Terminated, "\"bye\"")],
    )
    .await;
    let state = wait_done(&mut c, &id).await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Terminated as i32
    );
    assert_eq!(state.output.as_deref(), Some("\"bye\""));

    // Events to terminal instances are refused; unknown instances are NOT_FOUND.
    let late = c
        .raise_event(proto::RaiseEventRequest {
            instance_id: id.clone(),
            name: "late".into(),
            input: None,
        })
        .await;
    refused(late, tonic::Code::FailedPrecondition, "TERMINATED");
    let err = c
        .raise_event(proto::RaiseEventRequest {
            instance_id: "nope".into(),
            name: "x".into(),
            input: None,
        })
        .await
        .expect_err("unknown instance");
    assert_eq!(err.code(), tonic::Code::NotFound);
    sidecar.shutdown().await;
}

on_every_backend!(terminating_a_pending_instance_wins_over_its_first_episode);
async fn terminating_a_pending_instance_wins_over_its_first_episode(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "doomed", "O", None).await;
    let (_, first) = w.next_orchestration().await;
    // Terminate while the worker runs the first episode, then let it complete normally.
    c.terminate_instance(proto::TerminateRequest {
        instance_id: "doomed".into(),
        output: Some("\"stop\"".into()),
        recursive: false,
    })
    .await
    .expect("terminate");
    w.complete(
        "doomed",
        first,
        vec![finish(1, OrchestrationStatus::Completed, "\"ran anyway\"")],
    )
    .await;
    let (req, token) = w.next_orchestration().await;
    assert_eq!(
        kinds(&req.new_events),
        [
            "OrchestratorStarted",
            "ExecutionStarted",
            "ExecutionTerminated"
        ],
        "the instance runs again, with the termination"
    );
    w.complete(
        "doomed",
        token,
        vec![finish(-1, OrchestrationStatus::Terminated, "\"stop\"")],
    )
    .await;
    let state = wait_done(&mut c, "doomed").await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Terminated as i32
    );
    assert_eq!(state.output.as_deref(), Some("\"stop\""));
    sidecar.shutdown().await;
}

on_every_backend!(deleting_the_task_hub_empties_it);
async fn deleting_the_task_hub_empties_it(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "done", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "done",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "1")],
    )
    .await;
    wait_done(&mut c, "done").await;
    start(&mut c, "busy", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete("busy", token, vec![schedule(1, "Work", "1")])
        .await;
    let (activity, activity_token) = w.next_activity().await;
    c.signal_entity(proto::SignalEntityRequest {
        instance_id: "@counter@a".into(),
        name: "add".into(),
        input: Some("1".into()),
        request_id: "r1".into(),
        ..Default::default()
    })
    .await
    .expect("signal");

    c.delete_task_hub(proto::DeleteTaskHubRequest {})
        .await
        .expect("delete the task hub");
    assert!(get(&mut c, "done").await.is_none());
    assert!(get(&mut c, "busy").await.is_none());
    let all = c
        .query_instances(proto::QueryInstancesRequest {
            query: Some(proto::InstanceQuery::default()),
        })
        .await
        .expect("query")
        .into_inner();
    assert!(all.orchestration_state.is_empty(), "{all:?}");
    let entity = c
        .get_entity(proto::GetEntityRequest {
            instance_id: "@counter@a".into(),
            include_state: true,
        })
        .await
        .expect("get entity")
        .into_inner();
    assert!(!entity.exists);
    // Work that was in flight is forgotten; the same ids start afresh.
    w.complete_activity(&activity, activity_token, "2").await;
    start(&mut c, "done", "O", None).await;
    let (req, token) = loop {
        // The entity batch dispatched before the deletion is still in the stream: skip it.
        let item = w.next().await;
        if let Some(proto::work_item::Request::OrchestratorRequest(r)) = item.request {
            break (r, item.completion_token);
        }
    };
    assert_eq!(req.instance_id, "done");
    assert!(req.past_events.is_empty());
    w.complete(
        "done",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "3")],
    )
    .await;
    assert_eq!(wait_done(&mut c, "done").await.output.as_deref(), Some("3"));

    c.create_task_hub(proto::CreateTaskHubRequest {
        recreate_if_exists: true,
    })
    .await
    .expect("recreate the task hub");
    assert!(get(&mut c, "done").await.is_none(), "recreating empties it");
    sidecar.shutdown().await;
}

on_every_backend!(continue_as_new_starts_a_fresh_generation);
async fn continue_as_new_starts_a_fresh_generation(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "can-1", "C", Some("0")).await;
    let (req, token) = w.next_orchestration().await;
    let first_exec = req.execution_id.clone();
    w.complete(
        &id,
        token,
        vec![finish(1, OrchestrationStatus::ContinuedAsNew, "1")],
    )
    .await;
    let (req, token) = w.next_orchestration().await;
    assert!(
        req.past_events.is_empty(),
        "continue-as-new resets the history"
    );
    assert_eq!(
        kinds(&req.new_events),
        ["OrchestratorStarted", "ExecutionStarted"]
    );
    match &req.new_events[1].event_type {
        Some(EventType::ExecutionStarted(s)) => assert_eq!(s.input.as_deref(), Some("1")),
        other => panic!("unexpected {other:?}"),
    }
    assert_ne!(req.execution_id, first_exec);
    let state = get(&mut c, &id).await.expect("exists");
    assert_eq!(state.execution_id, req.execution_id);
    w.complete(
        &id,
        token,
        vec![finish(1, OrchestrationStatus::Completed, "\"done\"")],
    )
    .await;
    assert_eq!(
        wait_done(&mut c, &id).await.output.as_deref(),
        Some("\"done\"")
    );
    sidecar.shutdown().await;
}

on_every_backend!(start_get_wait_duplicate_scheduled_purge_and_query);
async fn start_get_wait_duplicate_scheduled_purge_and_query(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;

    assert!(get(&mut c, "missing").await.is_none());
    let generated = start(&mut c, "", "G", None).await;
    assert!(!generated.is_empty(), "an empty id gets a generated one");
    let state = get(&mut c, &generated).await.expect("exists");
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Pending as i32
    );

    let err = c
        .start_instance(proto::CreateInstanceRequest {
            instance_id: generated.clone(),
            name: "G".into(),
            ..Default::default()
        })
        .await
        .expect_err("duplicate id");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    // Waiting honours the client's deadline.
    let mut req = tonic::Request::new(GetInstanceRequest {
        instance_id: generated.clone(),
        get_inputs_and_outputs: false,
    });
    req.set_timeout(Duration::from_millis(300));
    let err = c
        .wait_for_instance_completion(req)
        .await
        .expect_err("times out");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);

    // Scheduled start: never dispatched before the asked time.
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let (req, token) = w.next_orchestration().await; // the generated instance, due now
    w.complete(
        &req.instance_id,
        token,
        vec![finish(1, OrchestrationStatus::Completed, "1")],
    )
    .await;
    let asked = Instant::now();
    c.start_instance(proto::CreateInstanceRequest {
        instance_id: "later".into(),
        name: "L".into(),
        scheduled_start_timestamp: Some(now_ts(Duration::from_millis(500))),
        ..Default::default()
    })
    .await
    .expect("scheduled start");
    let (req, token) = w.next_orchestration().await;
    assert_eq!(req.instance_id, "later");
    assert!(
        asked.elapsed() >= Duration::from_millis(450),
        "dispatched before its scheduled start"
    );
    w.complete(
        "later",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "2")],
    )
    .await;

    // Query paging.
    for i in 0..5 {
        let id = format!("q-{i}");
        start(&mut c, &id, "Q", None).await;
        let (_, token) = w.next_orchestration().await;
        w.complete(
            &id,
            token,
            vec![finish(1, OrchestrationStatus::Completed, "0")],
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let resp = c
            .query_instances(proto::QueryInstancesRequest {
                query: Some(proto::InstanceQuery {
                    max_instance_count: 2,
                    instance_id_prefix: Some("q-".into()),
                    continuation_token: token.clone(),
                    ..Default::default()
                }),
            })
            .await
            .expect("query")
            .into_inner();
        pages += 1;
        seen.extend(resp.orchestration_state.into_iter().map(|s| s.instance_id));
        token = resp.continuation_token;
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(pages, 3);
    assert_eq!(seen, ["q-0", "q-1", "q-2", "q-3", "q-4"]);

    // Purge: single and by filter; only terminal instances.
    let r = c
        .purge_instances(proto::PurgeInstancesRequest {
            request: Some(proto::purge_instances_request::Request::InstanceId(
                "q-0".into(),
            )),
            ..Default::default()
        })
        .await
        .expect("purge")
        .into_inner();
    assert_eq!(r.deleted_instance_count, 1);
    assert!(get(&mut c, "q-0").await.is_none());
    start(&mut c, "running", "R", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete("running", token, vec![]).await;
    let r = c
        .purge_instances(proto::PurgeInstancesRequest {
            request: Some(
                proto::purge_instances_request::Request::PurgeInstanceFilter(
                    proto::PurgeInstanceFilter::default(),
                ),
            ),
            ..Default::default()
        })
        .await
        .expect("purge by filter")
        .into_inner();
    assert_eq!(r.deleted_instance_count, 6, "4 q-* + generated + later");
    assert!(
        get(&mut c, "running").await.is_some(),
        "running instances are never purged"
    );
    sidecar.shutdown().await;
}

on_every_backend!(replacing_a_running_instance_frees_the_workers_slot);
async fn replacing_a_running_instance_frees_the_workers_slot(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect_with(
        sidecar.endpoint(),
        proto::GetWorkItemsRequest {
            max_concurrent_orchestration_work_items: 1,
            ..Default::default()
        },
    )
    .await;
    start(&mut c, "re", "R", Some("1")).await;
    let (_, stale) = w.next_orchestration().await;
    c.start_instance(proto::CreateInstanceRequest {
        instance_id: "re".into(),
        name: "R".into(),
        input: Some("2".into()),
        orchestration_id_reuse_policy: Some(proto::OrchestrationIdReusePolicy {
            replaceable_status: vec![
                OrchestrationStatus::Running as i32,
                OrchestrationStatus::Pending as i32,
            ],
        }),
        ..Default::default()
    })
    .await
    .expect("replace the running instance");
    // The stale episode's result is ignored, and the slot it held is free again.
    w.complete("re", stale, vec![]).await;
    let (req, token) = w.next_orchestration().await;
    assert_eq!(req.instance_id, "re");
    let started = req.new_events.iter().find_map(|e| match &e.event_type {
        Some(EventType::ExecutionStarted(s)) => s.input.clone(),
        _ => None,
    });
    assert_eq!(started.as_deref(), Some("2"), "the replacement runs");
    w.complete(
        "re",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "\"ok\"")],
    )
    .await;
    assert_eq!(
        wait_done(&mut c, "re").await.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    // The slot is free: another instance is dispatched to the same capacity-1 worker.
    start(&mut c, "next", "R", None).await;
    let (req, _) = w.next_orchestration().await;
    assert_eq!(req.instance_id, "next");
    sidecar.shutdown().await;
}

on_every_backend!(terminated_and_purged_instances_get_no_queued_activities);
async fn terminated_and_purged_instances_get_no_queued_activities(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    // This worker runs orchestrations only, so scheduled activities stay queued.
    let orchestrations_only = proto::GetWorkItemsRequest {
        work_item_filters: Some(proto::WorkItemFilters {
            orchestrations: vec![proto::OrchestrationFilter {
                name: "Pay".into(),
                versions: vec![],
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut w = Worker::connect_with(sidecar.endpoint(), orchestrations_only).await;
    for id in ["pay-t", "pay-p"] {
        start(&mut c, id, "Pay", None).await;
        let (_, token) = w.next_orchestration().await;
        w.complete(id, token, vec![schedule(1, "ChargeCard", "1")])
            .await;
    }
    c.terminate_instance(proto::TerminateRequest {
        instance_id: "pay-t".into(),
        output: Some("\"cancelled\"".into()),
        recursive: false,
    })
    .await
    .expect("terminate");
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "pay-t",
        token,
        vec![finish(-1, OrchestrationStatus::Terminated, "\"cancelled\"")],
    )
    .await;
    // pay-p fails on its own; then it is purged.
    c.raise_event(proto::RaiseEventRequest {
        instance_id: "pay-p".into(),
        name: "x".into(),
        input: None,
    })
    .await
    .expect("raise");
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "pay-p",
        token,
        vec![finish(2, OrchestrationStatus::Failed, "null")],
    )
    .await;
    c.purge_instances(proto::PurgeInstancesRequest {
        request: Some(proto::purge_instances_request::Request::InstanceId(
            "pay-p".into(),
        )),
        recursive: false,
        ..Default::default()
    })
    .await
    .expect("purge");
    let mut any = Worker::connect(sidecar.endpoint()).await;
    let item = any.try_next(Duration::from_millis(500)).await;
    assert!(
        item.is_none(),
        "no activity of a terminated or purged instance may run: {item:?}"
    );
    sidecar.shutdown().await;
}

/// Starts an instance with a 9 MiB input, runs one episode, then raises an 8 MiB event: the
/// next work item (9 MiB history + 8 MiB new events) exceeds the 16 MiB message limit.
async fn grow_past_the_message_limit(c: &mut Client, w: &mut Worker, id: &str) {
    let big = format!("\"{}\"", "x".repeat(9 << 20));
    c.start_instance(proto::CreateInstanceRequest {
        instance_id: id.into(),
        name: "Big".into(),
        input: Some(big),
        ..Default::default()
    })
    .await
    .expect("start");
    let (_, token) = w.next_orchestration().await;
    w.complete(id, token, vec![]).await;
    c.raise_event(proto::RaiseEventRequest {
        instance_id: id.into(),
        name: "more".into(),
        input: Some(format!("\"{}\"", "y".repeat(8 << 20))),
    })
    .await
    .expect("raise");
}

on_every_backend!(oversized_history_fails_the_instance_for_workers_without_streaming);
async fn oversized_history_fails_the_instance_for_workers_without_streaming(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    grow_past_the_message_limit(&mut c, &mut w, "big-1").await;
    let state = wait_done(&mut c, "big-1").await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Failed as i32
    );
    let message = state
        .failure_details
        .expect("failure details")
        .error_message;
    assert!(
        message.contains("exceeds the 16 MiB message limit") && message.contains("continue-as-new"),
        "{message}"
    );
    assert!(w.try_next(Duration::from_millis(300)).await.is_none());
    sidecar.shutdown().await;
}

on_every_backend!(oversized_history_is_streamed_to_workers_that_can_fetch_it);
async fn oversized_history_is_streamed_to_workers_that_can_fetch_it(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect_with(
        sidecar.endpoint(),
        proto::GetWorkItemsRequest {
            capabilities: vec![proto::WorkerCapability::HistoryStreaming as i32],
            ..Default::default()
        },
    )
    .await;
    grow_past_the_message_limit(&mut c, &mut w, "big-2").await;
    let (req, _) = w.next_orchestration().await;
    assert!(req.requires_history_streaming);
    assert!(req.past_events.is_empty());
    let mut chunks = c
        .stream_instance_history(proto::StreamInstanceHistoryRequest {
            instance_id: "big-2".into(),
            ..Default::default()
        })
        .await
        .expect("stream history")
        .into_inner();
    let mut events = 0;
    while let Some(chunk) = chunks.message().await.expect("chunk") {
        events += chunk.events.len();
    }
    assert!(events >= 2, "the streamed history holds the first episode");
    sidecar.shutdown().await;
}

/// A worker that takes the next orchestration work item and closes its stream without
/// completing it, as gRPC clients do with a message over their receive limit.
async fn refuse_next(endpoint: &str) -> usize {
    let mut w = Worker::connect(endpoint.to_owned()).await;
    let (request, _) = w.next_orchestration().await;
    let bytes = prost::Message::encoded_len(&request);
    drop(w);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bytes
}

on_every_backend!(items_workers_refuse_are_failed_and_terminate_at_once);
async fn items_workers_refuse_are_failed_and_terminate_at_once(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let endpoint = sidecar.endpoint();
    let mut c = client(endpoint.clone()).await;
    let five_mib = format!("\"{}\"", "x".repeat(5 << 20));

    // Refused three times: the instance fails, naming the size.
    start(&mut c, "refused", "Big", Some(&five_mib)).await;
    for _ in 0..3 {
        assert!(refuse_next(&endpoint).await > 4 << 20);
    }
    let state = wait_done(&mut c, "refused").await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Failed as i32
    );
    let failure = state.failure_details.expect("failure details");
    assert_eq!(failure.error_type, "WorkItemTooLarge");
    assert!(
        failure.error_message.contains("4 MiB"),
        "{}",
        failure.error_message
    );

    // Refused once, then terminated: the termination applies at once, without a worker.
    start(&mut c, "stuck", "Big", Some(&five_mib)).await;
    refuse_next(&endpoint).await;
    c.terminate_instance(proto::TerminateRequest {
        instance_id: "stuck".into(),
        output: Some("\"given up\"".into()),
        recursive: false,
    })
    .await
    .expect("terminate");
    let state = wait_done(&mut c, "stuck").await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Terminated as i32
    );
    assert_eq!(state.output.as_deref(), Some("\"given up\""));
    let history = history(&mut c, "stuck").await;
    assert_eq!(
        kinds(&history),
        [
            "ExecutionStarted",
            "ExecutionTerminated",
            "ExecutionCompleted"
        ]
    );

    // An activity whose input workers refuse: its task fails in the orchestration.
    start(&mut c, "big-input", "Caller", None).await;
    let mut w = Worker::connect(endpoint.clone()).await;
    let (_, token) = w.next_orchestration().await;
    w.complete("big-input", token, vec![schedule(0, "Shrink", &five_mib)])
        .await;
    // The first refusal: the activity goes to the only connected worker.
    let (request, _) = w.next_activity().await;
    assert_eq!(request.name, "Shrink");
    drop(w);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        let mut refusing = Worker::connect(endpoint.clone()).await;
        let (request, _) = refusing.next_activity().await;
        assert_eq!(request.name, "Shrink");
        drop(refusing);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut w = Worker::connect(endpoint.clone()).await;
    let (request, _) = w.next_orchestration().await;
    let failed = request.new_events.iter().find_map(|e| match &e.event_type {
        Some(EventType::TaskFailed(f)) => f.failure_details.clone(),
        _ => None,
    });
    assert_eq!(failed.expect("TaskFailed").error_type, "WorkItemTooLarge");
    drop(w);

    // Small items are never suspected, however often their stream closes.
    start(&mut c, "small", "Small", None).await;
    for _ in 0..4 {
        refuse_next(&endpoint).await;
    }
    let mut w = Worker::connect(endpoint.clone()).await;
    let (request, token) = w.next_orchestration().await;
    assert_eq!(request.instance_id, "small");
    w.complete(
        "small",
        token,
        vec![finish(0, OrchestrationStatus::Completed, "1")],
    )
    .await;
    let state = wait_done(&mut c, "small").await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Completed as i32
    );
    assert!(w.try_next(Duration::from_millis(300)).await.is_none());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn endpoint_is_loopback_when_listening_on_every_interface() {
    let sidecar = SidecarBuilder::new()
        .host("0.0.0.0")
        .start()
        .await
        .expect("start sidecar");
    assert!(sidecar.local_addr().ip().is_unspecified());
    let endpoint = sidecar.endpoint();
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "a connectable endpoint, not {endpoint}"
    );
    let mut c = client(endpoint).await;
    assert!(get(&mut c, "nobody").await.is_none());
    sidecar.shutdown().await;
}

#[tokio::test]
async fn over_long_ids_and_names_are_invalid_arguments() {
    let sidecar = SidecarBuilder::new().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let long = "x".repeat(15 * 1024 * 1024);
    for (id, name) in [(long.as_str(), "O"), ("ok", long.as_str())] {
        let err = c
            .start_instance(proto::CreateInstanceRequest {
                instance_id: id.into(),
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect_err("too long");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("longer than the 1024 bytes allowed"));
        assert!(err.message().len() < 300, "the value is not echoed whole");
    }
    let err = c
        .raise_event(proto::RaiseEventRequest {
            instance_id: "y".repeat(2000),
            name: "e".into(),
            input: None,
        })
        .await
        .expect_err("too long");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    sidecar.shutdown().await;
}

on_every_backend!(completions_must_carry_the_token_of_their_work_item);
async fn completions_must_carry_the_token_of_their_work_item(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "forged", "Chain", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(&id, token, vec![schedule(1, "Seven", "null")])
        .await;
    let (act, token) = w.next_activity().await;

    // Correlating by instance id and task id alone is not enough.
    let forged = |completion_token: &str| proto::ActivityResponse {
        instance_id: id.clone(),
        task_id: act.task_id,
        result: Some("1005".into()),
        failure_details: None,
        completion_token: completion_token.into(),
    };
    let empty = w.client.complete_activity_task(forged("")).await;
    let status = empty.expect_err("an empty token is refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("completionToken"), "{status:?}");
    let foreign = w.client.complete_activity_task(forged("made-up")).await;
    let status = foreign.expect_err("an unknown token is refused");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    let abandon = w
        .client
        .abandon_task_activity_work_item(proto::AbandonActivityTaskRequest {
            completion_token: "made-up".into(),
        })
        .await;
    assert_eq!(abandon.expect_err("unknown").code(), tonic::Code::NotFound);
    // The activity's token does not complete an orchestration.
    let wrong_kind = w
        .client
        .complete_orchestrator_task(proto::OrchestratorResponse {
            instance_id: id.clone(),
            completion_token: token.clone(),
            ..Default::default()
        })
        .await;
    let status = wrong_kind.expect_err("an activity token is not an orchestration token");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    w.complete_activity(&act, token, "7").await;
    let (req, token) = w.next_orchestration().await;
    match &req.new_events[1].event_type {
        Some(EventType::TaskCompleted(t)) => assert_eq!(t.result.as_deref(), Some("7")),
        other => panic!("unexpected {other:?}"),
    }
    w.complete(
        &id,
        token,
        vec![finish(2, OrchestrationStatus::Completed, "7")],
    )
    .await;
    assert_eq!(wait_done(&mut c, &id).await.output.as_deref(), Some("7"));
}

fn sub_orchestration(id: i32, instance_id: &str) -> proto::OrchestratorAction {
    proto::OrchestratorAction {
        id,
        orchestrator_action_type: Some(
            proto::orchestrator_action::OrchestratorActionType::CreateSubOrchestration(
                proto::CreateSubOrchestrationAction {
                    instance_id: instance_id.into(),
                    name: "Child".into(),
                    ..Default::default()
                },
            ),
        ),
    }
}

on_every_backend!(sub_orchestrations_never_replace_an_unrelated_instance);
async fn sub_orchestrations_never_replace_an_unrelated_instance(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    // An unrelated instance finishes with output 42.
    let other = start(&mut c, "bystander", "Chain", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        &other,
        token,
        vec![finish(0, OrchestrationStatus::Completed, "42")],
    )
    .await;
    wait_done(&mut c, &other).await;

    // A parent schedules a child under the bystander's id: the parent's task fails.
    let parent = start(&mut c, "parent", "Parent", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(&parent, token, vec![sub_orchestration(0, &other)])
        .await;
    let (req, token) = w.next_orchestration().await;
    match &req.new_events[1].event_type {
        Some(EventType::SubOrchestrationInstanceFailed(f)) => {
            let failure = f.failure_details.as_ref().expect("failure details");
            assert_eq!(failure.error_type, "OrchestrationAlreadyExistsError");
            assert!(failure.error_message.contains("bystander"), "{failure:?}");
        }
        other => panic!("expected the child to fail, got {other:?}"),
    }
    let state = get(&mut c, &other).await.expect("bystander still exists");
    assert_eq!(state.output.as_deref(), Some("42"));
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Completed as i32
    );

    // Its own finished child's id may be used again (as after continue-as-new).
    w.complete(&parent, token, vec![sub_orchestration(1, "parent:child")])
        .await;
    let (_, child_token) = w.next_orchestration().await;
    w.complete(
        "parent:child",
        child_token,
        vec![finish(0, OrchestrationStatus::Completed, "1")],
    )
    .await;
    let (_, token) = w.next_orchestration().await;
    w.complete(&parent, token, vec![sub_orchestration(2, "parent:child")])
        .await;
    let (child, child_token) = w.next_orchestration().await;
    assert_eq!(child.instance_id, "parent:child");
    w.complete(
        "parent:child",
        child_token,
        vec![finish(0, OrchestrationStatus::Completed, "2")],
    )
    .await;
    let (req, _) = w.next_orchestration().await;
    assert!(
        matches!(
            req.new_events[1].event_type,
            Some(EventType::SubOrchestrationInstanceCompleted(_))
        ),
        "{:?}",
        req.new_events
    );
}

on_every_backend!(wrong_state_calls_say_why);
async fn wrong_state_calls_say_why(backend: Backend) {
    let sidecar = backend.builder().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let running = start(&mut c, "still-running", "Chain", None).await;
    let done = start(&mut c, "done", "Chain", None).await;
    for _ in 0..2 {
        let (req, token) = w.next_orchestration().await;
        let actions = if req.instance_id == done {
            vec![finish(0, OrchestrationStatus::Completed, "1")]
        } else {
            vec![timer(0, now_ts(Duration::from_secs(3600)))]
        };
        w.complete(&req.instance_id, token, actions).await;
    }
    wait_done(&mut c, &done).await;

    let raise = |id: &str| proto::RaiseEventRequest {
        instance_id: id.into(),
        name: "go".into(),
        input: None,
    };
    let terminate = |id: &str| proto::TerminateRequest {
        instance_id: id.into(),
        ..Default::default()
    };
    let purge = |id: &str| proto::PurgeInstancesRequest {
        request: Some(proto::purge_instances_request::Request::InstanceId(
            id.into(),
        )),
        ..Default::default()
    };
    refused(
        c.raise_event(raise(&done)).await,
        tonic::Code::FailedPrecondition,
        "COMPLETED",
    );
    refused(
        c.terminate_instance(terminate(&done)).await,
        tonic::Code::FailedPrecondition,
        "COMPLETED",
    );
    refused(
        c.purge_instances(purge(&running)).await,
        tonic::Code::FailedPrecondition,
        "RUNNING",
    );
    refused(
        c.raise_event(raise("nobody")).await,
        tonic::Code::NotFound,
        "nobody",
    );
    refused(
        c.terminate_instance(terminate("nobody")).await,
        tonic::Code::NotFound,
        "nobody",
    );
    let unknown = c.purge_instances(purge("nobody")).await.expect("purge");
    assert_eq!(unknown.into_inner().deleted_instance_count, 0);
    // The running instance still takes events and termination.
    c.raise_event(raise(&running)).await.expect("raise");
    c.terminate_instance(terminate(&running))
        .await
        .expect("terminate");
}

fn refused<T>(r: Result<tonic::Response<T>, tonic::Status>, code: tonic::Code, says: &str) {
    let Err(status) = r else {
        panic!("expected {code:?} saying {says:?}, got OK");
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(says), "{status:?}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_others_keep_working() {
    let sidecar = SidecarBuilder::new()
        .max_connections(2)
        .start()
        .await
        .expect("start sidecar");
    let mut first = client(sidecar.endpoint()).await;
    let mut second = client(sidecar.endpoint()).await;
    first.hello(()).await.expect("first connection");
    second.hello(()).await.expect("second connection");
    let third = proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient::connect(
        sidecar.endpoint(),
    )
    .await;
    let refused = match third {
        Err(_) => true,
        Ok(mut c) => c.hello(()).await.is_err(),
    };
    assert!(refused, "a third connection is over the cap");
    // The connected clients are still served.
    first
        .hello(())
        .await
        .expect("first connection still served");
    // A slot frees when a connection closes.
    drop(second);
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(mut c) =
            proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient::connect(
                sidecar.endpoint(),
            )
            .await
        else {
            continue;
        };
        if c.hello(()).await.is_ok() {
            again = Some(c);
            break;
        }
    }
    assert!(
        again.is_some(),
        "a new connection is accepted once one closed"
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn chunked_completions_are_capped() {
    let sidecar = SidecarBuilder::new().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let id = start(&mut c, "chunky", "Chain", None).await;
    let (_, token) = w.next_orchestration().await;
    let big = format!("\"{}\"", "x".repeat(15 << 20));
    let mut refused = None;
    for chunk in 0..6 {
        let sent = w
            .client
            .complete_orchestrator_task(proto::OrchestratorResponse {
                instance_id: id.clone(),
                actions: vec![schedule(chunk, "Big", &big)],
                completion_token: token.clone(),
                is_partial: true,
                chunk_index: Some(chunk),
                ..Default::default()
            })
            .await;
        if let Err(status) = sent {
            refused = Some((chunk, status));
            break;
        }
    }
    let (chunk, status) = refused.expect("90 MiB of chunks is over the cap");
    assert_eq!(chunk, 4, "the fifth 15 MiB chunk passes 64 MiB");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let state = wait_done(&mut c, &id).await;
    assert_eq!(
        state.orchestration_status,
        OrchestrationStatus::Failed as i32
    );
    let failure = state.failure_details.expect("failure details");
    assert_eq!(failure.error_type, "OrchestratorResponseTooLarge");
    sidecar.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_but_work_item_streams_stay_open() {
    use tokio::io::AsyncReadExt;

    let sidecar = SidecarBuilder::new()
        .idle_timeout(Duration::from_millis(300))
        .start()
        .await
        .expect("start sidecar");
    // A connection that never makes a call is closed by the sidecar.
    let mut idle = tokio::net::TcpStream::connect(sidecar.local_addr())
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection is closed");
    // A worker's stream keeps its connection, however long it waits for work.
    let mut w = Worker::connect(sidecar.endpoint()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = client(sidecar.endpoint()).await;
    let id = start(&mut c, "after-a-quiet-second", "Chain", None).await;
    let (req, _) = w.next_orchestration().await;
    assert_eq!(req.instance_id, id);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_token_guards_every_call() {
    let sidecar = SidecarBuilder::new()
        .bearer_token("s3cret")
        .start()
        .await
        .expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let anonymous = c.hello(()).await;
    refused(anonymous, tonic::Code::Unauthenticated, "Bearer");
    let mut wrong = tonic::Request::new(());
    wrong
        .metadata_mut()
        .insert("authorization", "Bearer guess".parse().expect("ascii"));
    refused(c.hello(wrong).await, tonic::Code::Unauthenticated, "Bearer");
    let mut right = tonic::Request::new(());
    right
        .metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().expect("ascii"));
    c.hello(right).await.expect("the token holder is served");
    sidecar.shutdown().await;
}
