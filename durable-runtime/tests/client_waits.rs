//! A client's wait rides out a restart of the sidecar under it: the worker reconnects, the
//! instance finishes on the restarted sidecar, and the wait returns its result.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use durable::client::RuntimeStatus;
use durable::prelude::*;
use durable::sidecar::SidecarBuilder;

#[durable::orchestrator]
async fn nap(ctx: OrchestrationContext, _: ()) -> durable::Result<String> {
    ctx.create_timer(Duration::from_secs(2)).await?;
    Ok("rested".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_rides_out_a_sidecar_restart() {
    let dir = std::env::temp_dir().join(format!("durable-client-waits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("waits.db");
    let sidecar = SidecarBuilder::new().sqlite(&db).start().await.unwrap();
    let addr = sidecar.local_addr();
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .sidecar(sidecar.endpoint())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let id = client.schedule_new_orchestration(nap, ()).await.unwrap();
    client
        .wait_for_orchestration_start(&id, Duration::from_secs(10))
        .await
        .unwrap();
    let waiting = {
        let client = client.clone();
        let id = id.clone();
        tokio::spawn(async move {
            client
                .wait_for_orchestration_completion(&id, Duration::from_secs(60))
                .await
        })
    };
    // The sidecar goes away under the wait and comes back on the same port and file.
    sidecar.shutdown().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sidecar = SidecarBuilder::new()
        .sqlite(&db)
        .port(addr.port())
        .start()
        .await
        .unwrap();
    let state = waiting.await.unwrap().unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed);
    assert_eq!(state.output::<String>().unwrap(), "rested");
    runtime.shutdown().await;
    sidecar.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
