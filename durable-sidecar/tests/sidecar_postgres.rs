//! PostgreSQL storage: replicas sharing one database, clear failures, riding out a restart.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "sidecar_common/mod.rs"]
mod common;

use common::postgres::TempPostgres;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use durable_proto::{self as proto, OrchestrationStatus};
use durable_sidecar::{SidecarBuilder, SidecarError};

/// How many partitions each replica serves (by address), from the database.
async fn served(url: &str) -> BTreeMap<String, i64> {
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

/// Starts `id`, completes its one episode with `output` and checks the result.
async fn completes(c: &mut Client, w: &mut Worker, id: &str, output: &str) {
    start(c, id, "O", None).await;
    let (_, token) = w.next_orchestration().await;
    w.complete(
        id,
        token,
        vec![finish(1, OrchestrationStatus::Completed, output)],
    )
    .await;
    assert_eq!(wait_done(c, id).await.output.as_deref(), Some(output));
}

/// Waits until the replicas at `endpoints` serve the given shares of the partitions.
async fn wait_for_shares(url: &str, endpoints: &[&str], shares: &[i64]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = served(url).await;
        let mut got: Vec<i64> = endpoints
            .iter()
            .map(|e| now.get(*e).copied().unwrap_or(0))
            .collect();
        got.sort_unstable();
        let mut want = shares.to_vec();
        want.sort_unstable();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "shares {now:?}, want {shares:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_on_one_database_share_the_instances_and_answer_for_each_other() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.database("replicas");
    let first = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    wait_for_shares(&url, &[&first.endpoint()], &[8]).await;
    let second = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    let (a, b) = (first.endpoint(), second.endpoint());
    wait_for_shares(&url, &[&a, &b], &[4, 4]).await;

    // Clients of either replica start instances; each runs on a worker of the replica
    // serving its partition, and either replica answers for every instance.
    let mut ca = client(a.clone()).await;
    let mut cb = client(b.clone()).await;
    let mut wa = Worker::connect(a.clone()).await;
    let mut wb = Worker::connect(b.clone()).await;
    let ids: Vec<String> = (0..16).map(|i| format!("shared-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let c = if i % 2 == 0 { &mut ca } else { &mut cb };
        start(c, id, "O", Some("1")).await;
    }
    let mut ran = [0, 0];
    let mut done = 0;
    while done < ids.len() {
        for (n, w) in [&mut wa, &mut wb].into_iter().enumerate() {
            if let Some(item) = w.try_next(Duration::from_millis(50)).await {
                let Some(proto::work_item::Request::OrchestratorRequest(r)) = item.request else {
                    panic!("expected an orchestration");
                };
                w.complete(
                    &r.instance_id,
                    item.completion_token,
                    vec![finish(1, OrchestrationStatus::Completed, "2")],
                )
                .await;
                ran[n] += 1;
                done += 1;
            }
        }
    }
    assert!(
        ran[0] > 0 && ran[1] > 0,
        "both replicas' workers ran some: {ran:?}"
    );
    for id in &ids {
        for c in [&mut ca, &mut cb] {
            let state = wait_done(c, id).await;
            assert_eq!(state.output.as_deref(), Some("2"), "{id}");
        }
    }
    let page = ca
        .query_instances(proto::QueryInstancesRequest {
            query: Some(proto::InstanceQuery {
                instance_id_prefix: Some("shared-".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.orchestration_state.len(), ids.len());

    // A replica that stops hands its partitions to the other at once; nothing is lost.
    drop((wb, cb));
    second.shutdown().await;
    wait_for_shares(&url, &[&a], &[8]).await;
    for id in &ids {
        assert_eq!(get(&mut ca, id).await.unwrap().output.as_deref(), Some("2"));
    }
    start(&mut ca, "after", "O", None).await;
    let (r, token) = wa.next_orchestration().await;
    assert_eq!(r.instance_id, "after");
    wa.complete(
        "after",
        token,
        vec![finish(1, OrchestrationStatus::Completed, "3")],
    )
    .await;
    assert_eq!(
        wait_done(&mut ca, "after").await.output.as_deref(),
        Some("3")
    );
    let purged = ca
        .purge_instances(proto::PurgeInstancesRequest {
            request: Some(
                proto::purge_instances_request::Request::PurgeInstanceFilter(
                    proto::PurgeInstanceFilter::default(),
                ),
            ),
            recursive: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        purged.deleted_instance_count, 17,
        "a filter purges every partition"
    );
    first.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let err = SidecarBuilder::new()
        .postgres("postgres://durable:s3cret@127.0.0.1:1/nowhere")
        .start()
        .await
        .expect_err("nothing listens on port 1");
    let message = err.to_string();
    assert!(
        message.contains(
            "cannot use the PostgreSQL database postgres://durable:***@127.0.0.1:1/nowhere"
        ),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
    let err = SidecarBuilder::new()
        .postgres("not a url at all ===")
        .start()
        .await
        .expect_err("a malformed URL");
    assert!(matches!(err, SidecarError::Postgres { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_rides_out_a_database_restart() {
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.database("restart");
    let sidecar = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    let mut c = client(sidecar.endpoint()).await;
    let mut w = Worker::connect(sidecar.endpoint()).await;
    completes(&mut c, &mut w, "before", "1").await;

    // Every connection drops; the next commit and read reconnect.
    let pg = tokio::task::spawn_blocking(move || {
        pg.restart();
        pg
    })
    .await
    .unwrap();
    completes(&mut c, &mut w, "after", "2").await;
    assert_eq!(
        get(&mut c, "before").await.unwrap().output.as_deref(),
        Some("1"),
        "finished instances are read again after the restart"
    );
    sidecar.shutdown().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_database_going_away_and_coming_back() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let url = pg.database("health");
    let sidecar = SidecarBuilder::new().postgres(&url).start().await.unwrap();
    let endpoint = sidecar.endpoint();
    let mut c = client(endpoint.clone()).await;
    wait_for_health(&endpoint, ServingStatus::Serving, Duration::from_secs(5)).await;
    c.hello(()).await.unwrap();

    let pg = tokio::task::spawn_blocking(move || {
        pg.stop();
        pg
    })
    .await
    .unwrap();
    // Once the heartbeat has not reached the database for the live window, the replica says so.
    wait_for_health(
        &endpoint,
        ServingStatus::NotServing,
        Duration::from_secs(10),
    )
    .await;
    let err = c.hello(()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("PostgreSQL"), "{}", err.message());

    let pg = tokio::task::spawn_blocking(move || {
        pg.start_again();
        pg
    })
    .await
    .unwrap();
    wait_for_health(&endpoint, ServingStatus::Serving, Duration::from_secs(15)).await;
    c.hello(()).await.unwrap();
    let mut w = Worker::connect(endpoint.clone()).await;
    completes(&mut c, &mut w, "after", "2").await;
    sidecar.shutdown().await;
    drop(pg);
}
