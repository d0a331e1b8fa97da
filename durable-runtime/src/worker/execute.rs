//! Running one work item: an activity (on tokio, panics caught) or an orchestration episode
//! (on its instance's episode thread, through the replay executor).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use opentelemetry::trace::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::episodes::{self, EpisodeThreads};
use crate::activity::ActivityContext;
use crate::error::FailureDetails;
use crate::proto;
use crate::registry::Registry;
use crate::telemetry;

/// The error type recorded when an activity is not registered with this worker (the name the
/// other SDKs use).
pub(crate) const ACTIVITY_NOT_FOUND: &str = "ActivityTaskNotFound";
pub(crate) use crate::panic::{PANIC_ERROR_TYPE, install_panic_hook, panic_details};

/// Some sidecars (the Python in-memory backend) treat a failure with an empty message as
/// success, so a failure always carries some message.
fn ensure_message(mut details: FailureDetails) -> FailureDetails {
    if details.message.is_empty() {
        details.message = format!("{} (no message)", details.error_type);
    }
    details
}

/// Runs the activity a work item asks for and builds its response (without the token).
pub(crate) async fn run_activity(
    registry: &Registry,
    request: proto::ActivityRequest,
    cancellation: CancellationToken,
) -> proto::ActivityResponse {
    let span = telemetry::activity(&request);
    let instance = request.orchestration_instance.unwrap_or_default();
    let name = request.name;
    let what = format!("activity `{name}`");
    let outcome = match registry.activity(&name) {
        None => {
            let known: Vec<&str> = registry.activity_names().collect();
            Err(FailureDetails::new(
                ACTIVITY_NOT_FOUND,
                format!(
                    "activity `{name}` is not registered with this worker (registered: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
            .non_retriable())
        }
        Some(activity) => {
            let ctx = ActivityContext::new(
                instance.instance_id.clone(),
                instance.execution_id.clone().unwrap_or_default(),
                request.task_id,
                name.clone(),
            )
            .with_version(request.version.clone().unwrap_or_default())
            .with_cancellation(cancellation);
            let activity = Arc::clone(activity);
            let input = request.input;
            // Building the future runs user code too (the registered closure).
            match std::panic::catch_unwind(AssertUnwindSafe(|| activity(ctx, input))) {
                Err(payload) => Err(panic_details(&what, payload.as_ref())),
                Ok(future) => match AssertUnwindSafe(future.with_context(span.clone()))
                    .catch_unwind()
                    .instrument(tracing::info_span!(
                        "activity",
                        name = %name,
                        instance_id = %instance.instance_id,
                        task_id = request.task_id,
                    ))
                    .await
                {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(error)) => Err(error.details()),
                    Err(payload) => Err(panic_details(&what, payload.as_ref())),
                },
            }
        }
    };
    telemetry::end(&span, outcome.as_ref().err().map(|d| d.message.as_str()));
    let (result, failure_details) = match outcome {
        Ok(output) => (output, None),
        Err(details) => {
            tracing::warn!(
                instance_id = %instance.instance_id,
                task_id = request.task_id,
                "{what} failed: {details}"
            );
            let details = ensure_message(details);
            (None, Some(proto::TaskFailureDetails::from(&details)))
        }
    };
    proto::ActivityResponse {
        instance_id: instance.instance_id,
        task_id: request.task_id,
        result,
        failure_details,
        completion_token: String::new(),
    }
}

/// Runs one orchestration episode on its instance's episode thread (the executor never
/// awaits; long histories are CPU work that must not stall the tokio workers). `stream`: the
/// work-item stream it came from when the sidecar is in this process (which continues kept
/// replay state; see [`episodes`]). Returns the response and the orchestration's name.
pub(crate) async fn run_orchestration(
    registry: Arc<Registry>,
    request: proto::OrchestratorRequest,
    stream: Option<u64>,
) -> (proto::OrchestratorResponse, String) {
    let instance_id = request.instance_id.clone();
    let episode = move |pinned: bool| {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            let keep = stream.filter(|_| pinned);
            episodes::run_episode(&registry, &request, keep)
        }))
        .map_err(|payload| panic_details("the orchestration executor", payload.as_ref()))
    };
    let joined = match EpisodeThreads::get() {
        Some(threads) => {
            let (done, result) = tokio::sync::oneshot::channel();
            let job = Box::new(move || {
                let _ = done.send(episode(true));
            });
            if threads.run(&instance_id, job) {
                result
                    .await
                    .map_err(|_| "the episode thread stopped".to_owned())
            } else {
                Err("the episode thread stopped".to_owned())
            }
        }
        None => tokio::task::spawn_blocking(move || episode(false))
            .await
            .map_err(|e| e.to_string()),
    };
    let failure = match joined {
        Ok(Ok((mut response, name))) => {
            if response.instance_id.is_empty() {
                response.instance_id = instance_id;
            }
            return (response, name);
        }
        Ok(Err(details)) => details,
        Err(stopped) => FailureDetails::new(
            "durable::WorkerError",
            format!("the orchestration episode did not finish: {stopped}"),
        ),
    };
    tracing::error!(%instance_id, "orchestration episode failed inside the SDK: {failure}");
    (sdk_failure_response(instance_id, &failure), String::new())
}

/// A failure of the SDK itself (not of user code): one completion action with id -1, as the
/// Python and Go SDKs send.
fn sdk_failure_response(
    instance_id: String,
    details: &FailureDetails,
) -> proto::OrchestratorResponse {
    let details = ensure_message(details.clone());
    let action = proto::OrchestratorAction {
        id: -1,
        orchestrator_action_type: Some(
            proto::orchestrator_action::OrchestratorActionType::CompleteOrchestration(
                proto::CompleteOrchestrationAction {
                    orchestration_status: proto::OrchestrationStatus::Failed as i32,
                    failure_details: Some(proto::TaskFailureDetails::from(&details)),
                    ..Default::default()
                },
            ),
        ),
    };
    proto::OrchestratorResponse {
        instance_id,
        actions: vec![action],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, input: &str) -> proto::ActivityRequest {
        proto::ActivityRequest {
            name: name.to_owned(),
            input: Some(input.to_owned()),
            orchestration_instance: Some(proto::OrchestrationInstance {
                instance_id: "i".into(),
                execution_id: None,
            }),
            task_id: 7,
            ..Default::default()
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .add_activity_fn("echo", |ctx, input| {
                Box::pin(async move {
                    assert_eq!(ctx.task_id(), 7);
                    Ok(input)
                })
            })
            .and_then(|r| r.add_activity_fn("boom", |_, _| Box::pin(async { panic!("kaboom") })))
            .and_then(|r| {
                r.add_activity_fn("fail", |_, _| {
                    Box::pin(async { Err(crate::Error::typed("Declined", "no funds")) })
                })
            })
            .expect("distinct names");
        registry
    }

    #[tokio::test]
    async fn results_failures_panics_and_unknown_names() {
        install_panic_hook();
        let registry = registry();
        let ok = run_activity(
            &registry,
            request("echo", "\"x\""),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(ok.result.as_deref(), Some("\"x\""));
        assert_eq!((ok.instance_id.as_str(), ok.task_id), ("i", 7));

        let failed =
            run_activity(&registry, request("fail", "null"), CancellationToken::new()).await;
        let details = failed.failure_details.expect("a failure");
        assert_eq!(details.error_type, "Declined");

        let panicked =
            run_activity(&registry, request("boom", "null"), CancellationToken::new()).await;
        let details = panicked.failure_details.expect("a failure");
        assert_eq!(details.error_type, PANIC_ERROR_TYPE);
        assert!(details.error_message.contains("kaboom"));
        assert!(
            details
                .stack_trace
                .as_deref()
                .is_some_and(|t| t.contains("execute.rs")),
            "{:?}",
            details.stack_trace
        );

        let missing =
            run_activity(&registry, request("nope", "null"), CancellationToken::new()).await;
        let details = missing.failure_details.expect("a failure");
        assert_eq!(details.error_type, ACTIVITY_NOT_FOUND);
        assert!(details.error_message.contains("boom, echo, fail"));
    }
}
