//! Custom business objects across languages: a Python client raises events whose data are a
//! namedtuple and a dataclass (as the seeds' human-interaction example does); the Rust
//! orchestrator receives them as a serde struct. Python sends a namedtuple as a JSON array and
//! a dataclass as a JSON object; serde's derived `Deserialize` accepts both shapes.

mod worker_support;

use futures::future::LocalBoxFuture;

use durable::client::{RuntimeStatus, ScheduleOptions};
use durable::{OrchestrationContext, Orchestrator, Registry};
use worker_support::*;

/// The approval as the Rust side models it. `level` is optional: the namedtuple has no level.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Approval {
    approver: String,
    #[serde(default)]
    level: Option<u32>,
}

/// Waits for `approval_received` and returns what it got.
#[derive(Clone, Copy)]
struct AwaitApproval;

impl Orchestrator for AwaitApproval {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "await_approval";
    fn run(ctx: OrchestrationContext, _: ()) -> LocalBoxFuture<'static, durable::Result<String>> {
        Box::pin(async move {
            let approval: Approval = ctx.wait_for_external_event("approval_received").await?;
            Ok(format!(
                "Approved by '{}' (level {:?})",
                approval.approver, approval.level
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namedtuple_and_dataclass_payloads_become_rust_structs() {
    let Some(sidecar) = PySidecar::start().await else {
        return;
    };
    let mut registry = Registry::new();
    registry.add_orchestrator::<AwaitApproval>().unwrap();
    let worker = start_worker(&sidecar, registry).await;
    let client = sidecar.client().await;

    let mut ids = Vec::new();
    for id in ["approval-namedtuple", "approval-dataclass"] {
        let options = ScheduleOptions::new().instance_id(id);
        client
            .schedule_new_orchestration_with(AwaitApproval, (), options)
            .await
            .unwrap();
        client.wait_for_orchestration_start(id, WAIT).await.unwrap();
        ids.push(id.to_owned());
    }

    let raiser = PyProcess::spawn(
        "raise_custom_payloads.py",
        &[sidecar.endpoint(), ids[0].clone(), ids[1].clone()],
    )
    .await
    .expect("python is there: the sidecar started");

    let expected = [
        "Approved by 'manager@company.com' (level None)",
        "Approved by 'director@company.com' (level Some(2))",
    ];
    for (id, expected) in ids.iter().zip(expected) {
        let state = client
            .wait_for_orchestration_completion(id, WAIT)
            .await
            .unwrap();
        assert_eq!(state.runtime_status, RuntimeStatus::Completed, "{state:?}");
        assert_eq!(state.output::<String>().unwrap(), expected);
    }

    raiser.stop().await;
    worker.shutdown().await;
    sidecar.stop().await;
}
