//! Telling a running activity that it is no longer wanted.
//!
//! The protocol has no message for "stop this activity", so the worker asks: while an activity
//! runs, every poll interval it reads its orchestration's state (`GetInstance`, without
//! payloads), and cancels the activity's [`CancellationToken`] once the orchestration is gone,
//! finished, or on another execution (continue-as-new, restart). Activities that finish within
//! one interval never cause a call.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::SidecarClient;
use crate::proto;
use crate::proto::OrchestrationStatus;

/// Why an activity's orchestration no longer wants its result; `None` while it still does.
fn unwanted(response: &proto::GetInstanceResponse, execution_id: &str) -> Option<String> {
    let state = match (&response.orchestration_state, response.exists) {
        (Some(state), true) => state,
        _ => return Some("the orchestration no longer exists (purged)".into()),
    };
    let status = state.orchestration_status();
    if matches!(
        status,
        OrchestrationStatus::Completed
            | OrchestrationStatus::Failed
            | OrchestrationStatus::Terminated
            | OrchestrationStatus::Canceled
    ) {
        return Some(format!(
            "the orchestration is {}",
            status
                .as_str_name()
                .trim_start_matches("ORCHESTRATION_STATUS_")
        ));
    }
    let current = state.execution_id.as_deref().unwrap_or_default();
    (!execution_id.is_empty() && !current.is_empty() && current != execution_id).then(|| {
        format!("the orchestration moved on to execution `{current}` (continue-as-new or restart)")
    })
}

/// Polls the orchestration of an activity every `interval` and cancels `token` once the
/// activity is no longer wanted; resolves only then. Errors (a sidecar restarting) are retried
/// at the next interval.
pub(crate) async fn watch_orchestration(
    mut client: SidecarClient,
    instance: proto::OrchestrationInstance,
    activity: String,
    interval: Duration,
    token: CancellationToken,
) {
    let execution_id = instance.execution_id.unwrap_or_default();
    loop {
        tokio::time::sleep(interval).await;
        let request = proto::GetInstanceRequest {
            instance_id: instance.instance_id.clone(),
            get_inputs_and_outputs: false,
        };
        let Ok(response) = client.get_instance(request).await else {
            continue;
        };
        if let Some(reason) = unwanted(&response.into_inner(), &execution_id) {
            tracing::info!(
                instance_id = %instance.instance_id,
                "cancelling activity `{activity}`: {reason}"
            );
            token.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: OrchestrationStatus, execution: &str) -> proto::GetInstanceResponse {
        let mut state = proto::OrchestrationState {
            execution_id: Some(execution.to_owned()),
            ..Default::default()
        };
        state.set_orchestration_status(status);
        proto::GetInstanceResponse {
            exists: true,
            orchestration_state: Some(state),
        }
    }

    #[test]
    fn running_and_suspended_orchestrations_still_want_their_activities() {
        for status in [
            OrchestrationStatus::Running,
            OrchestrationStatus::Pending,
            OrchestrationStatus::Suspended,
        ] {
            assert_eq!(unwanted(&response(status, "e1"), "e1"), None);
        }
        // A sidecar that reports no execution id does not cancel anything by it.
        assert_eq!(
            unwanted(&response(OrchestrationStatus::Running, ""), "e1"),
            None
        );
    }

    #[test]
    fn finished_purged_and_moved_on_orchestrations_cancel() {
        let terminated = unwanted(&response(OrchestrationStatus::Terminated, "e1"), "e1");
        assert_eq!(
            terminated.as_deref(),
            Some("the orchestration is TERMINATED")
        );
        let moved = unwanted(&response(OrchestrationStatus::Running, "e2"), "e1").unwrap();
        assert!(moved.contains("`e2`"), "{moved}");
        let purged = proto::GetInstanceResponse::default();
        assert!(unwanted(&purged, "e1").unwrap().contains("purged"));
    }
}
