//! Restart on the same database (a SQLite file, a PostgreSQL database): unfinished instances
//! continue.

#[path = "sidecar_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use durable_proto::{OrchestrationStatus, history_event::EventType};
use durable_sidecar::SidecarBuilder;

#[tokio::test]
async fn instances_continue_after_restart_on_sqlite() {
    let dir = std::env::temp_dir().join(format!(
        "durable-sidecar-test-{}-{}",
        std::process::id(),
        now_ts(Duration::ZERO).nanos
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("restart.db");
    continue_after_restart(|| SidecarBuilder::new().sqlite(&db)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn instances_continue_after_restart_on_postgres() {
    let Some(pg) = common::postgres::TempPostgres::start() else {
        return;
    };
    let url = pg.database("restart");
    continue_after_restart(|| SidecarBuilder::new().postgres(&url)).await;
}

async fn continue_after_restart(storage: impl Fn() -> SidecarBuilder) {
    let sidecar = storage().start().await.expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "act", "A", Some("1")).await;
    let (_, token) = w.next_orchestration().await;
    w.complete("act", token, vec![schedule(1, "Work", "1")])
        .await;
    let (act, _token_never_completed) = w.next_activity().await;
    assert_eq!(act.task_id, 1);
    start(&mut c, "tmr", "T", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        "tmr",
        token,
        vec![timer(1, now_ts(Duration::from_millis(600)))],
    )
    .await;
    start(&mut c, "fresh", "F", None).await; // never dispatched before the restart
    drop(w);
    sidecar.shutdown().await;

    let sidecar = storage().start().await.expect("restart sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    let mut done = 0;
    while done < 3 {
        let item = w.next().await;
        match item.request {
            Some(durable_proto::work_item::Request::ActivityRequest(a)) => {
                assert_eq!(
                    a.name, "Work",
                    "the un-acknowledged activity is redelivered"
                );
                w.complete_activity(&a, item.completion_token, "2").await;
            }
            Some(durable_proto::work_item::Request::OrchestratorRequest(r)) => {
                let id = r.instance_id.clone();
                match id.as_str() {
                    "act" => assert!(
                        r.new_events
                            .iter()
                            .any(|e| matches!(e.event_type, Some(EventType::TaskCompleted(_))))
                    ),
                    "tmr" => assert!(
                        r.new_events
                            .iter()
                            .any(|e| matches!(e.event_type, Some(EventType::TimerFired(_))))
                    ),
                    "fresh" => assert!(
                        r.new_events
                            .iter()
                            .any(|e| matches!(e.event_type, Some(EventType::ExecutionStarted(_))))
                    ),
                    other => panic!("unexpected instance {other}"),
                }
                w.complete(
                    &id,
                    item.completion_token,
                    vec![finish(9, OrchestrationStatus::Completed, "\"ok\"")],
                )
                .await;
                done += 1;
            }
            other => panic!("unexpected work item {other:?}"),
        }
    }
    for id in ["act", "tmr", "fresh"] {
        let state = wait_done(&mut c, id).await;
        assert_eq!(
            state.orchestration_status,
            OrchestrationStatus::Completed as i32,
            "{id}"
        );
        assert_eq!(state.output.as_deref(), Some("\"ok\""));
    }
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_failed_commit_stops_the_sidecar_instead_of_counting_as_durable() {
    let dir = std::env::temp_dir().join(format!(
        "durable-sidecar-fail-{}-{}",
        std::process::id(),
        now_ts(Duration::ZERO).nanos
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("fail.db");
    let sidecar = SidecarBuilder::new()
        .sqlite(&db)
        .start()
        .await
        .expect("start sidecar");
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    start(&mut c, "ok", "O", None).await;
    let (_, token) = w.next_orchestration().await;
    // Make every later write of an instance row fail.
    let conn = rusqlite::Connection::open(&db).expect("open db");
    conn.execute_batch(
        "CREATE TRIGGER fail_writes BEFORE INSERT ON instances BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .expect("add trigger");
    drop(conn);
    let err = c
        .start_instance(durable_proto::CreateInstanceRequest {
            instance_id: "boom".into(),
            name: "B".into(),
            ..Default::default()
        })
        .await
        .expect_err("the commit failed");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // The failed batch is never dispatched, and every later RPC is refused naming the error.
    let item = tokio::time::timeout(Duration::from_secs(2), w.stream.message()).await;
    match item {
        Ok(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable),
        Ok(Ok(None)) => {}
        Ok(Ok(Some(item))) => panic!("nothing may be dispatched after a failed commit: {item:?}"),
        Err(_) => panic!("the work-item stream should end after a failed commit"),
    }
    let err = c
        .get_instance(durable_proto::GetInstanceRequest {
            instance_id: "ok".into(),
            get_inputs_and_outputs: false,
        })
        .await
        .expect_err("refused after a failed commit");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("storage commit failed") && err.message().contains("injected"),
        "{}",
        err.message()
    );
    let err = w
        .client
        .complete_orchestrator_task(durable_proto::OrchestratorResponse {
            instance_id: "ok".into(),
            actions: vec![finish(1, OrchestrationStatus::Completed, "\"x\"")],
            completion_token: token,
            ..Default::default()
        })
        .await
        .expect_err("refused after a failed commit");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_second_sidecar_on_the_same_sqlite_file_is_refused_until_the_first_stops() {
    let dir = std::env::temp_dir().join(format!(
        "durable-sidecar-lock-{}-{}",
        std::process::id(),
        now_ts(Duration::ZERO).nanos
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let db = dir.join("one.db");
    let first = SidecarBuilder::new()
        .sqlite(&db)
        .start()
        .await
        .expect("start sidecar");
    let err = SidecarBuilder::new()
        .sqlite(&db)
        .start()
        .await
        .expect_err("a second sidecar on one file");
    let message = err.to_string();
    let holder = format!(
        "in use by another durable sidecar (pid {}, listening on {})",
        std::process::id(),
        first.endpoint()
    );
    assert!(message.contains(&holder), "{message}");
    assert!(
        message.contains(&format!("DURABLE_SIDECAR={}", first.endpoint())),
        "{message}"
    );
    #[cfg(unix)]
    for file in ["one.db", "one.db-wal", "one.db-lock"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(file))
            .expect("the file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by its owner only");
    }
    first.shutdown().await;
    let second = SidecarBuilder::new()
        .sqlite(&db)
        .start()
        .await
        .expect("the lock is released when the first sidecar stops");
    second.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
