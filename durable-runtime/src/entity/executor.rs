//! Running an entity batch: the operations of one work item, in order, each one's changes kept
//! when it succeeds and rolled back when it fails (or panics).

use std::panic::AssertUnwindSafe;

use chrono::Utc;
use futures::FutureExt;

use super::{EntityContext, EntityId, Operation};
use crate::convert::to_timestamp;
use crate::error::FailureDetails;
use crate::panic::panic_details;
use crate::proto::{self, operation_result::ResultType};
use crate::registry::Registry;

/// The error type of an operation sent to an entity this worker does not have (the name the
/// .NET SDK uses).
pub const ENTITY_NOT_FOUND_ERROR_TYPE: &str = "EntityTaskNotFound";

/// The older batch format plus the routing information of the newer one: the V2 request's
/// operations become a V1 batch, and its call/signal routing is echoed back in the result.
pub(crate) fn from_v2(
    request: proto::EntityRequest,
) -> (proto::EntityBatchRequest, Vec<proto::OperationInfo>) {
    use proto::history_event::EventType;
    let mut operations = Vec::with_capacity(request.operation_requests.len());
    let mut infos = Vec::with_capacity(request.operation_requests.len());
    for event in request.operation_requests {
        match event.event_type {
            Some(EventType::EntityOperationSignaled(s)) => {
                infos.push(proto::OperationInfo {
                    request_id: s.request_id.clone(),
                    response_destination: None,
                });
                operations.push(proto::OperationRequest {
                    operation: s.operation,
                    request_id: s.request_id,
                    input: s.input,
                    trace_context: None,
                });
            }
            Some(EventType::EntityOperationCalled(c)) => {
                infos.push(proto::OperationInfo {
                    request_id: c.request_id.clone(),
                    response_destination: Some(proto::OrchestrationInstance {
                        instance_id: c.parent_instance_id.unwrap_or_default(),
                        execution_id: c.parent_execution_id,
                    }),
                });
                operations.push(proto::OperationRequest {
                    operation: c.operation,
                    request_id: c.request_id,
                    input: c.input,
                    trace_context: None,
                });
            }
            _ => tracing::warn!(
                entity = %request.instance_id,
                "ignoring an entity work item entry that is neither a signal nor a call"
            ),
        }
    }
    let batch = proto::EntityBatchRequest {
        instance_id: request.instance_id,
        entity_state: request.entity_state,
        operations,
        properties: Default::default(),
    };
    (batch, infos)
}

/// Runs every operation of the batch and builds the result (without the completion token).
pub(crate) async fn run_batch(
    registry: &Registry,
    request: proto::EntityBatchRequest,
) -> proto::EntityBatchResult {
    let id = match request.instance_id.parse::<EntityId>() {
        Ok(id) => id,
        Err(e) => {
            let failure =
                FailureDetails::new("durable::InvalidEntityId", e.to_string()).non_retriable();
            return all_failed(&request, &failure);
        }
    };
    let Some(entity) = registry.entity(id.name()).cloned() else {
        let known: Vec<&str> = registry.entity_names().collect();
        let failure = FailureDetails::new(
            ENTITY_NOT_FOUND_ERROR_TYPE,
            format!(
                "entity `{}` is not registered with this worker (registered: {})",
                id.name(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        )
        .non_retriable();
        return all_failed(&request, &failure);
    };
    let ctx = EntityContext::new(id.clone(), request.entity_state.clone());
    let mut results = Vec::with_capacity(request.operations.len());
    for op in request.operations {
        let started = to_timestamp(Utc::now());
        let checkpoint = ctx.begin(&op.operation);
        let what = format!("operation `{}` of entity `{id}`", op.operation);
        let operation = Operation::new(op.operation, op.input);
        let outcome =
            match std::panic::catch_unwind(AssertUnwindSafe(|| entity(ctx.clone(), operation))) {
                Err(payload) => Err(panic_details(&what, payload.as_ref())),
                Ok(future) => match AssertUnwindSafe(future).catch_unwind().await {
                    Ok(Ok(output)) => Ok(output),
                    Ok(Err(error)) => Err(error.details()),
                    Err(payload) => Err(panic_details(&what, payload.as_ref())),
                },
            };
        let ended = Some(to_timestamp(Utc::now()));
        let result = match outcome {
            Ok(output) => ResultType::Success(proto::OperationResultSuccess {
                result: output,
                start_time_utc: Some(started),
                end_time_utc: ended,
            }),
            Err(details) => {
                ctx.rollback(checkpoint);
                tracing::warn!(entity = %id, "{what} failed: {details}");
                ResultType::Failure(proto::OperationResultFailure {
                    failure_details: Some((&with_message(details)).into()),
                    start_time_utc: Some(started),
                    end_time_utc: ended,
                })
            }
        };
        results.push(proto::OperationResult {
            result_type: Some(result),
        });
    }
    let (entity_state, actions) = ctx.finish();
    proto::EntityBatchResult {
        results,
        actions,
        entity_state,
        ..Default::default()
    }
}

/// Some sidecars treat a failure with an empty message as success.
fn with_message(mut details: FailureDetails) -> FailureDetails {
    if details.message.is_empty() {
        details.message = format!("{} (no message)", details.error_type);
    }
    details
}

/// Every operation fails with `failure`; the state is left as it was.
fn all_failed(
    request: &proto::EntityBatchRequest,
    failure: &FailureDetails,
) -> proto::EntityBatchResult {
    tracing::warn!(entity = %request.instance_id, "entity batch not run: {failure}");
    let now = Some(to_timestamp(Utc::now()));
    let results = request
        .operations
        .iter()
        .map(|_| proto::OperationResult {
            result_type: Some(ResultType::Failure(proto::OperationResultFailure {
                failure_details: Some(failure.into()),
                start_time_utc: now,
                end_time_utc: now,
            })),
        })
        .collect();
    proto::EntityBatchResult {
        results,
        entity_state: request.entity_state.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry
            .add_entity_fn("counter", |ctx, op| {
                Box::pin(async move {
                    let value: i64 = ctx.get_state()?.unwrap_or(0);
                    if op.is("add") {
                        ctx.set_state(&(value + op.input::<i64>()?))?;
                        let other = EntityId::new("log", "all")?;
                        ctx.signal_entity_by_name(&other, "note", &value)?;
                        Ok(None)
                    } else if op.is("get") {
                        Ok(Some(value.to_string()))
                    } else if op.is("fail") {
                        ctx.set_state(&-1)?;
                        ctx.signal_entity_by_name(&EntityId::new("log", "all")?, "never", &())?;
                        Err(Error::typed("Refused", "no"))
                    } else if op.is("panic") {
                        ctx.set_state(&-2)?;
                        panic!("boom")
                    } else {
                        Err(op.unknown("counter"))
                    }
                })
            })
            .expect("one entity");
        registry
    }

    fn op(name: &str, input: Option<&str>) -> proto::OperationRequest {
        proto::OperationRequest {
            operation: name.into(),
            request_id: format!("r-{name}"),
            input: input.map(str::to_owned),
            trace_context: None,
        }
    }

    fn failure_type(result: &proto::OperationResult) -> Option<&str> {
        match &result.result_type {
            Some(ResultType::Failure(f)) => {
                f.failure_details.as_ref().map(|d| d.error_type.as_str())
            }
            _ => None,
        }
    }

    #[tokio::test]
    async fn each_operation_keeps_or_rolls_back_its_own_changes() {
        crate::panic::install_panic_hook();
        let request = proto::EntityBatchRequest {
            instance_id: "@counter@c".into(),
            entity_state: Some("10".into()),
            operations: vec![
                op("add", Some("5")),
                op("fail", None),
                op("panic", None),
                op("Add", Some("1")),
                op("nope", None),
                op("get", None),
            ],
            properties: Default::default(),
        };
        let result = run_batch(&registry(), request).await;
        assert_eq!(result.results.len(), 6, "one result per operation");
        assert_eq!(result.entity_state.as_deref(), Some("16"));
        assert_eq!(failure_type(&result.results[1]), Some("Refused"));
        assert_eq!(
            failure_type(&result.results[2]),
            Some(crate::panic::PANIC_ERROR_TYPE)
        );
        assert_eq!(
            failure_type(&result.results[4]),
            Some(super::super::UNKNOWN_OPERATION_ERROR_TYPE)
        );
        match &result.results[5].result_type {
            Some(ResultType::Success(s)) => assert_eq!(s.result.as_deref(), Some("16")),
            other => panic!("{other:?}"),
        }
        // Only the successful adds signalled; the failed operation's signal was rolled back.
        assert_eq!(result.actions.len(), 2);
        assert_eq!(result.actions[1].id, 1);
    }

    #[tokio::test]
    async fn unknown_entities_fail_every_operation_and_keep_the_state() {
        let request = proto::EntityBatchRequest {
            instance_id: "@missing@k".into(),
            entity_state: Some("1".into()),
            operations: vec![op("a", None), op("b", None)],
            properties: Default::default(),
        };
        let result = run_batch(&registry(), request).await;
        assert_eq!(result.entity_state.as_deref(), Some("1"));
        assert!(
            result
                .results
                .iter()
                .all(|r| failure_type(r) == Some(ENTITY_NOT_FOUND_ERROR_TYPE))
        );
    }

    #[test]
    fn v2_requests_become_batches_with_routing() {
        use proto::history_event::EventType;
        let called = proto::HistoryEvent {
            event_id: -1,
            timestamp: None,
            event_type: Some(EventType::EntityOperationCalled(
                proto::EntityOperationCalledEvent {
                    request_id: "r1".into(),
                    operation: "get".into(),
                    parent_instance_id: Some("orch".into()),
                    ..Default::default()
                },
            )),
        };
        let signaled = proto::HistoryEvent {
            event_id: -1,
            timestamp: None,
            event_type: Some(EventType::EntityOperationSignaled(
                proto::EntityOperationSignaledEvent {
                    request_id: "r2".into(),
                    operation: "add".into(),
                    input: Some("1".into()),
                    ..Default::default()
                },
            )),
        };
        let (batch, infos) = from_v2(proto::EntityRequest {
            instance_id: "@counter@c".into(),
            execution_id: String::new(),
            entity_state: None,
            operation_requests: vec![called, signaled],
        });
        assert_eq!(batch.operations.len(), 2);
        assert_eq!(
            infos[0].response_destination.as_ref().unwrap().instance_id,
            "orch"
        );
        assert!(infos[1].response_destination.is_none());
        assert_eq!(batch.operations[1].input.as_deref(), Some("1"));
    }
}
