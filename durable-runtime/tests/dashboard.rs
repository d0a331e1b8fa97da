//! The web dashboard in a real headless Chromium: the page loads from the runtime's HTTP port,
//! lists a completed (with its sub-orchestration), a failed and a running instance, shows a completed instance's history
//! as a timeline and an event list, pages, filters, purges the failed instance, raises an
//! event to, suspends, resumes and terminates the running one with real clicks and typing, and
//! asks for the API token when one is required.
//! Screenshots go to `target/dashboard-artifacts/`.
//!
//! Skipped without Chromium (`apt-get install chromium`) unless `DURABLE_REQUIRE_CHROMIUM` is
//! set, as `.ci/run` does.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod browser;

use std::time::Duration;

use browser::Browser;
use durable::RuntimeStatus;
use durable::prelude::*;

#[durable::activity]
async fn reserve_stock(item: String) -> String {
    tokio::time::sleep(Duration::from_millis(120)).await;
    format!("reserved {item}")
}

#[durable::activity]
async fn charge_card(amount: u32) -> String {
    tokio::time::sleep(Duration::from_millis(250)).await;
    format!("charged {amount}")
}

#[durable::activity]
async fn pack_parcel(item: String) -> String {
    tokio::time::sleep(Duration::from_millis(180)).await;
    format!("packed {item}")
}

#[durable::activity]
async fn check_fraud(amount: u32) -> durable::Result<bool> {
    Err(durable::Error::msg(format!(
        "fraud service rejected an order of {amount}"
    )))
}

#[durable::activity]
async fn notify_manager(order: String) -> String {
    format!("manager notified about {order}")
}

/// A child: packs and ships.
#[durable::orchestrator]
async fn ship_order(ctx: OrchestrationContext, item: String) -> durable::Result<String> {
    let packed = ctx.call_activity(pack_parcel, item).await?;
    Ok(format!("{packed}, shipped"))
}

/// Reserve two items in parallel, charge, wait a little, ship in a sub-orchestration.
#[durable::orchestrator]
async fn process_order(ctx: OrchestrationContext, amount: u32) -> durable::Result<String> {
    let reserved = durable::when_all([
        ctx.call_activity(reserve_stock, "book".to_owned()),
        ctx.call_activity(reserve_stock, "lamp".to_owned()),
    ])
    .await?;
    ctx.set_custom_status(&"charging");
    let charged = ctx.call_activity(charge_card, amount).await?;
    ctx.create_timer(Duration::from_millis(300)).await?;
    let shipped = ctx
        .call_sub_orchestrator(ship_order, "book and lamp".to_owned())
        .await?;
    ctx.set_custom_status(&"done");
    Ok(format!("{}; {charged}; {shipped}", reserved.join(", ")))
}

/// Fails in its first activity.
#[durable::orchestrator]
async fn risky_order(ctx: OrchestrationContext, amount: u32) -> durable::Result<bool> {
    Ok(ctx.call_activity(check_fraud, amount).await?)
}

/// Notifies a manager, then waits for a decision.
#[durable::orchestrator]
async fn approval(ctx: OrchestrationContext, order: String) -> durable::Result<String> {
    ctx.call_activity(notify_manager, order).await?;
    ctx.set_custom_status(&"waiting for approval");
    let decision: String = ctx.wait_for_external_event("approval").await?;
    Ok(decision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_shows_and_terminates_instances_in_chromium() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let runtime = durable::Runtime::builder()
        .ignore_environment()
        .in_memory()
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let wait = Duration::from_secs(30);

    let completed = client
        .schedule_new_orchestration_with(
            process_order,
            42,
            ScheduleOptions::new().instance_id("order-1001"),
        )
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&completed, wait)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");

    let failed = client
        .schedule_new_orchestration_with(
            risky_order,
            9000,
            ScheduleOptions::new().instance_id("order-1002"),
        )
        .await
        .unwrap();
    let state = client
        .wait_for_orchestration_completion(&failed, wait)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Failed, "{state:?}");

    let running = client
        .schedule_new_orchestration_with(
            approval,
            "order-1003",
            ScheduleOptions::new().instance_id("approval-1003"),
        )
        .await
        .unwrap();
    // Running and waiting for its event once the custom status says so.
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let state = client
            .wait_for_orchestration_start(&running, wait)
            .await
            .unwrap();
        if state.custom_status::<String>().ok().as_deref() == Some("waiting for approval") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{state:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = format!("http://{}", runtime.http_addr().unwrap());
    let artifacts = browser::artifacts_dir();
    let mut page = Browser::launch(&chromium, 1280, 900).await.unwrap();

    // The list: all four instances (the sub-orchestration is one too) with their statuses.
    page.navigate(&format!("{base}/")).await.unwrap();
    page.wait_for(
        "four instance rows",
        "document.querySelectorAll('#instances tr[data-instance-id]').length === 4",
    )
    .await
    .unwrap();
    let rows = page
        .eval(
            "[...document.querySelectorAll('#instances tr[data-instance-id]')]
               .map(r => [r.dataset.instanceId, r.querySelector('.badge').textContent, r.cells[1].textContent])",
        )
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = serde_json::from_value(rows).unwrap();
    for (id, status, name) in [
        ("order-1001", "Completed", "process_order"),
        ("order-1002", "Failed", "risky_order"),
        ("approval-1003", "Running", "approval"),
    ] {
        assert!(
            rows.contains(&(id.into(), status.into(), name.into())),
            "{id} {status} {name} not in {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|(id, status, name)| id.starts_with("order-1001:")
                && status == "Completed"
                && name == "ship_order"),
        "the sub-orchestration is listed: {rows:?}"
    );
    assert_eq!(
        page.eval("location.pathname").await.unwrap(),
        "/dashboard/",
        "/ redirects to the dashboard"
    );
    page.screenshot(&artifacts.join("instances.png"))
        .await
        .unwrap();

    // A status filter narrows the list (a click on the "Running" chip).
    page.click(".chip-running span").await.unwrap();
    page.wait_for(
        "only the running instance",
        "(() => { const ids = [...document.querySelectorAll('#instances tr[data-instance-id]')]
                 .map(r => r.dataset.instanceId); return ids.length === 1 && ids[0] === 'approval-1003'; })()",
    )
    .await
    .unwrap();
    assert!(
        page.eval("location.hash")
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .contains("status=Running"),
        "the filter is kept in the URL"
    );
    page.click(".chip-running span").await.unwrap();
    page.wait_for(
        "all rows again",
        "document.querySelectorAll('#instances tr[data-instance-id]').length === 4",
    )
    .await
    .unwrap();

    // Pages of two: Next and Previous follow the continuation tokens.
    page.navigate(&format!("{base}/dashboard/#/?pageSize=2"))
        .await
        .unwrap();
    let ids = "[...document.querySelectorAll('#instances tr[data-instance-id]')].map(r => r.dataset.instanceId)";
    let first: Vec<String> = serde_json::from_value(
        page.wait_for(
            "a page of two",
            &format!("(() => {{ const ids = {ids}; return ids.length === 2 && ids; }})()"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    page.click("#page-next").await.unwrap();
    let second: Vec<String> = serde_json::from_value(
        page.wait_for(
            "the second page",
            &format!(
                "(() => {{ const ids = {ids}; return ids.length === 2 && !ids.includes({:?}) && ids; }})()",
                first[0]
            ),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let mut all: Vec<&String> = first.iter().chain(&second).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "{first:?} then {second:?}");
    page.click("#page-prev").await.unwrap();
    page.wait_for(
        "the first page again",
        &format!(
            "JSON.stringify({ids}) === {:?}",
            serde_json::to_string(&first).unwrap()
        ),
    )
    .await
    .unwrap();
    page.click("a.brand").await.unwrap();
    page.wait_for(
        "all rows on one page",
        "document.querySelectorAll('#instances tr[data-instance-id]').length === 4",
    )
    .await
    .unwrap();

    // The completed instance: output, a timeline with every task, the raw history.
    page.click("tr[data-instance-id='order-1001'] a")
        .await
        .unwrap();
    page.wait_for(
        "the timeline of order-1001",
        "document.querySelectorAll('#timeline .tl-bar.kind-activity').length === 3",
    )
    .await
    .unwrap();
    let timeline = page
        .eval(
            "({
                kinds: [...document.querySelectorAll('#timeline .tl-row[data-kind]')].map(r => r.dataset.kind + ':' + r.dataset.state),
                labels: [...document.querySelectorAll('#timeline .tl-row[data-kind] .tl-label')].map(l => l.textContent),
                events: [...document.querySelectorAll('#history tr[data-event-type]')].map(r => r.dataset.eventType),
                output: document.querySelector('.payloads').textContent,
                status: document.querySelector('.title-status').textContent,
                restart: !document.querySelector('[data-action=restart]').disabled,
                terminate: !document.querySelector('[data-action=terminate]').disabled,
            })",
        )
        .await
        .unwrap();
    let kinds: Vec<String> = serde_json::from_value(timeline["kinds"].clone()).unwrap();
    assert_eq!(
        kinds,
        [
            "activity:completed",
            "activity:completed",
            "activity:completed",
            "timer:completed",
            "sub:completed"
        ],
        "{timeline:#}"
    );
    let labels = timeline["labels"].to_string();
    for name in ["reserve_stock", "charge_card", "timer", "ship_order"] {
        assert!(labels.contains(name), "{name} not in {labels}");
    }
    let events: Vec<String> = serde_json::from_value(timeline["events"].clone()).unwrap();
    for event in [
        "ExecutionStarted",
        "TaskScheduled",
        "TaskCompleted",
        "TimerCreated",
        "TimerFired",
        "SubOrchestrationInstanceCreated",
        "SubOrchestrationInstanceCompleted",
        "ExecutionCompleted",
    ] {
        assert!(
            events.iter().any(|e| e == event),
            "{event} not in {events:?}"
        );
    }
    assert!(
        !events.iter().any(|e| e == "OrchestratorStarted"),
        "replay markers are hidden by default: {events:?}"
    );
    let output = timeline["output"].as_str().unwrap();
    assert!(
        output.contains("reserved book, reserved lamp; charged 42"),
        "{output}"
    );
    assert_eq!(timeline["status"], "Completed");
    assert_eq!(timeline["restart"], true);
    assert_eq!(
        timeline["terminate"], false,
        "a completed instance cannot be terminated"
    );
    page.screenshot(&artifacts.join("instance-completed.png"))
        .await
        .unwrap();
    page.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    )
    .await
    .unwrap();
    page.screenshot(&artifacts.join("instance-completed-dark.png"))
        .await
        .unwrap();
    page.call(
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "features": [{ "name": "prefers-color-scheme", "value": "light" }] }),
    )
    .await
    .unwrap();

    // The failed instance shows its failure.
    page.navigate(&format!("{base}/dashboard/#/instances/order-1002"))
        .await
        .unwrap();
    let failure = page
        .wait_for(
            "the failure of order-1002",
            "document.querySelector('.failure:not([hidden])')?.textContent",
        )
        .await
        .unwrap();
    assert!(
        failure
            .as_str()
            .unwrap()
            .contains("fraud service rejected an order of 9000"),
        "{failure}"
    );
    assert_eq!(
        page.eval("document.querySelector('[data-action=rewind]').disabled")
            .await
            .unwrap(),
        false,
        "a failed instance can be rewound"
    );

    // Purge it: confirm, and the list no longer has it.
    page.click("[data-action=purge]").await.unwrap();
    page.wait_for("the purge dialog", "document.getElementById('dialog').open")
        .await
        .unwrap();
    page.click("#dialog-confirm").await.unwrap();
    page.wait_for(
        "the list without order-1002",
        "location.hash === '#/' && document.querySelectorAll('#instances tr[data-instance-id]').length === 3",
    )
    .await
    .unwrap();
    assert!(
        client
            .get_orchestration_state(&failed)
            .await
            .unwrap()
            .is_none(),
        "order-1002 is purged"
    );

    // Suspend, resume and terminate the running instance: open it, click, confirm.
    page.click("tr[data-instance-id='approval-1003'] a")
        .await
        .unwrap();
    page.wait_for(
        "approval-1003 running with a terminate button",
        "document.querySelector('.title-status')?.textContent === 'Running'
           && !document.querySelector('[data-action=terminate]').disabled
           && document.querySelectorAll('#timeline .tl-bar.kind-activity').length === 1",
    )
    .await
    .unwrap();

    // Raise an event through the dialog: a name and JSON data, typed.
    page.click("[data-action=raise]").await.unwrap();
    page.wait_for(
        "the raise-event dialog",
        "document.getElementById('dialog').open && document.activeElement?.id === 'field-name'",
    )
    .await
    .unwrap();
    page.type_text("comment").await.unwrap();
    page.click("#field-data").await.unwrap();
    page.type_text(r#"{"by": "the dashboard test"}"#)
        .await
        .unwrap();
    page.click("#dialog-confirm").await.unwrap();
    page.wait_for(
        "the raised event in the history and on the timeline",
        "[...document.querySelectorAll('#history tr[data-event-type]')].some(r => r.dataset.eventType === 'EventRaised')
           && document.querySelector('#timeline .tl-marker[data-label=comment]') !== null",
    )
    .await
    .unwrap();
    let history = client.get_history(&running).await.unwrap();
    assert!(
        history.iter().any(|e| matches!(
            &e.event_type,
            Some(durable::proto::history_event::EventType::EventRaised(raised))
                if raised.name == "comment"
                    && raised.input.as_deref() == Some(r#"{"by":"the dashboard test"}"#)
        )),
        "{history:?}"
    );
    page.screenshot(&artifacts.join("instance-running.png"))
        .await
        .unwrap();
    page.click("[data-action=suspend]").await.unwrap();
    page.wait_for(
        "the suspend dialog",
        "document.getElementById('dialog').open",
    )
    .await
    .unwrap();
    page.type_text("a coffee break").await.unwrap();
    page.click("#dialog-confirm").await.unwrap();
    page.wait_for(
        "approval-1003 suspended",
        "document.querySelector('.title-status')?.textContent === 'Suspended'
           && !document.querySelector('[data-action=resume]').disabled",
    )
    .await
    .unwrap();
    let state = client
        .get_orchestration_state(&running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Suspended, "{state:?}");
    page.click("[data-action=resume]").await.unwrap();
    page.wait_for(
        "approval-1003 running again",
        "document.querySelector('.title-status')?.textContent === 'Running'
           && [...document.querySelectorAll('#history tr[data-event-type]')]
                .some(r => r.dataset.eventType === 'ExecutionResumed')",
    )
    .await
    .unwrap();

    page.click("[data-action=terminate]").await.unwrap();
    page.wait_for(
        "the terminate dialog",
        "document.getElementById('dialog').open && document.activeElement?.id === 'field-reason'",
    )
    .await
    .unwrap();
    page.type_text("stopped from the dashboard test")
        .await
        .unwrap();
    page.click("#dialog-confirm").await.unwrap();

    let state = client
        .wait_for_orchestration_completion(&running, wait)
        .await
        .unwrap();
    assert_eq!(state.runtime_status, RuntimeStatus::Terminated, "{state:?}");
    assert_eq!(
        state.output::<String>().unwrap(),
        "stopped from the dashboard test",
        "the reason is recorded as the output"
    );
    page.wait_for(
        "the page to show Terminated",
        "document.querySelector('.title-status')?.textContent === 'Terminated'
           && [...document.querySelectorAll('#history tr[data-event-type]')]
                .some(r => r.dataset.eventType === 'ExecutionTerminated')",
    )
    .await
    .unwrap();
    page.screenshot(&artifacts.join("instance-terminated.png"))
        .await
        .unwrap();

    // The list shows the new status too.
    page.click("a.back").await.unwrap();
    page.wait_for(
        "approval-1003 terminated in the list",
        "document.querySelector(\"tr[data-instance-id='approval-1003']\")?.dataset.status === 'Terminated'",
    )
    .await
    .unwrap();
    page.screenshot(&artifacts.join("dashboard.png"))
        .await
        .unwrap();

    // Behind a token, the page loads, asks for the token and then lists the instances.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let guarded = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(durable::http::serve_with_options(
        listener,
        client.clone(),
        durable::http::HttpOptions::new().bearer_token("s3cret"),
        async move {
            let _ = stopped.await;
        },
    ));
    page.navigate(&format!("{guarded}/dashboard/"))
        .await
        .unwrap();
    page.wait_for(
        "the token dialog",
        "document.getElementById('dialog').open && document.activeElement?.id === 'field-token'",
    )
    .await
    .unwrap();
    page.type_text("s3cret").await.unwrap();
    page.click("#dialog-confirm").await.unwrap();
    page.wait_for(
        "the instances behind the token",
        "document.querySelectorAll('#instances tr[data-instance-id]').length === 3",
    )
    .await
    .unwrap();
    assert_eq!(
        page.eval("sessionStorage.getItem('durable.dashboard.token')")
            .await
            .unwrap(),
        "s3cret"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // Instance data is shown as text: markup in an id and an input stays inert.
    let hostile = r#"<img src=x onerror="window.pwned=1">"#;
    let id = client
        .schedule_new_orchestration_with(
            approval,
            hostile,
            ScheduleOptions::new().instance_id(hostile),
        )
        .await
        .unwrap();
    client
        .wait_for_orchestration_start(&id, wait)
        .await
        .unwrap();
    let hostile_json = serde_json::to_string(hostile).unwrap();
    page.navigate(&format!("{base}/dashboard/")).await.unwrap();
    page.wait_for(
        "the hostile instance listed as text",
        &format!(
            "[...document.querySelectorAll('#instances tr[data-instance-id]')]
               .some(r => r.dataset.instanceId === {hostile_json} && r.cells[0].textContent === {hostile_json})"
        ),
    )
    .await
    .unwrap();
    page.click("#instances tr:last-child a").await.unwrap();
    page.wait_for(
        "the hostile instance's history",
        &format!(
            "document.querySelector('.instance-title')?.textContent === {hostile_json}
               && document.querySelector('.payloads').textContent.includes('<img src=x onerror=')
               && document.querySelectorAll('#history tr[data-event-type]').length > 0"
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        page.eval("[window.pwned === undefined, document.querySelectorAll('img[src=x]').length]")
            .await
            .unwrap(),
        serde_json::json!([true, 0]),
        "markup from instance data was not rendered"
    );
    client.terminate_orchestration(&id, true).await.unwrap();

    eprintln!("dashboard screenshots in {}", artifacts.display());

    page.close().await;
    runtime.shutdown().await;
}
