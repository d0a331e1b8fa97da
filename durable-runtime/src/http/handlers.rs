//! Route handlers: each validates the request, calls the sidecar and shapes the answer.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::history::event_json;
use super::model::{
    InstanceList, InstanceStatus, STATUS_NAMES, StartResponse, base_uri, instance_uri, is_terminal,
    parse_status, status_name,
};
use crate::proto;
use crate::proto::OrchestrationStatus;

type ApiResult = Result<Response, ApiError>;

// ---- extractor plumbing: every rejection becomes a JSON error ----

pub(crate) fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|r| ApiError::new(r.status(), r.body_text()))
}

pub(crate) fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Query(value)| value)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, r.body_text()))
}

/// The request body as JSON text: empty (or blank) body → `None`; otherwise it must parse as
/// JSON and is passed on re-serialized.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Option<String>, ApiError> {
    let bytes = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    serde_json::to_string(&value)
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

// ---- sidecar helpers ----

async fn fetch_state(
    state: &AppState,
    id: &str,
    with_payloads: bool,
) -> Result<Option<proto::OrchestrationState>, ApiError> {
    let response = state
        .client
        .clone()
        .get_instance(proto::GetInstanceRequest {
            instance_id: id.to_string(),
            get_inputs_and_outputs: with_payloads,
        })
        .await
        .map_err(|s| ApiError::grpc("GetInstance", &s))?
        .into_inner();
    Ok(response
        .exists
        .then_some(response.orchestration_state)
        .flatten())
}

/// The current state of an instance that must exist (404 otherwise) and must not be finished
/// (410 Gone otherwise: it can no longer react to `action`).
async fn live_instance(
    state: &AppState,
    id: &str,
    action: &str,
) -> Result<proto::OrchestrationState, ApiError> {
    let current = fetch_state(state, id, false)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(id))?;
    if is_terminal(current.orchestration_status) {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!(
                "orchestration instance '{id}' is {}; it can no longer {action}",
                status_name(current.orchestration_status)
            ),
        ));
    }
    Ok(current)
}

fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

// ---- routes ----

#[derive(Debug, Deserialize)]
pub(crate) struct StartQuery {
    #[serde(rename = "instanceId")]
    instance_id: Option<String>,
}

/// `POST /api/orchestrators/{name}`
pub(crate) async fn start(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<StartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = path(name)?;
    let params = query(params)?;
    if let Some(known) = &state.orchestrators {
        if !known.contains(&name) {
            let list = if known.is_empty() {
                "(none)".to_string()
            } else {
                known.join(", ")
            };
            return Err(ApiError::not_found(format!(
                "no orchestrator named '{name}'; known: {list}"
            )));
        }
    }
    let input = json_body(body)?;
    let id = match params.instance_id.filter(|id| !id.is_empty()) {
        Some(id) => {
            // Sidecars differ on duplicate IDs (some replace finished instances); answer 409
            // consistently. The sidecar's own ALREADY_EXISTS still covers the race.
            if fetch_state(&state, &id, false).await?.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("an orchestration instance with id '{id}' already exists"),
                ));
            }
            id
        }
        None => uuid::Uuid::new_v4().simple().to_string(),
    };
    let created = state
        .client
        .clone()
        .start_instance(proto::CreateInstanceRequest {
            instance_id: id.clone(),
            name,
            input,
            ..Default::default()
        })
        .await
        .map_err(|s| ApiError::grpc("StartInstance", &s))?
        .into_inner();
    Ok(started(&headers, id, created.instance_id))
}

/// `202 Accepted` with the management URIs of the instance a start or restart created: the id
/// the sidecar answered, or the one asked for when it answered none.
fn started(headers: &HeaderMap, requested: String, answered: String) -> Response {
    let id = if answered.is_empty() {
        requested
    } else {
        answered
    };
    let body = StartResponse::new(&base_uri(headers), &id);
    let location = body.status_query_get_uri.clone();
    (StatusCode::ACCEPTED, [(LOCATION, location)], Json(body)).into_response()
}

/// `GET /api/instances/{id}`: `202` + `Location` while running, `200` once terminal.
pub(crate) async fn status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let id = path(id)?;
    let current = fetch_state(&state, &id, true)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(&id))?;
    let body = InstanceStatus::from_state(&current);
    if is_terminal(current.orchestration_status) {
        Ok((StatusCode::OK, Json(body)).into_response())
    } else {
        let location = instance_uri(&base_uri(&headers), &id);
        Ok((
            StatusCode::ACCEPTED,
            [(LOCATION, location), (RETRY_AFTER, "1".to_string())],
            Json(body),
        )
            .into_response())
    }
}

/// `POST /api/instances/{id}/raiseEvent/{eventName}`
pub(crate) async fn raise_event(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (id, event_name) = path(ids)?;
    let input = json_body(body)?;
    live_instance(&state, &id, "receive events").await?;
    state
        .client
        .clone()
        .raise_event(proto::RaiseEventRequest {
            instance_id: id,
            name: event_name,
            input,
        })
        .await
        .map_err(|s| ApiError::grpc("RaiseEvent", &s))?;
    Ok(accepted())
}

#[derive(Debug, Deserialize)]
pub(crate) struct TerminateQuery {
    recursive: Option<bool>,
}

/// `POST /api/instances/{id}/terminate` (optional JSON body = recorded output)
pub(crate) async fn terminate(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<TerminateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let id = path(id)?;
    let params = query(params)?;
    let output = json_body(body)?;
    live_instance(&state, &id, "be terminated").await?;
    state
        .client
        .clone()
        .terminate_instance(proto::TerminateRequest {
            instance_id: id,
            output,
            recursive: params.recursive.unwrap_or(true),
        })
        .await
        .map_err(|s| ApiError::grpc("TerminateInstance", &s))?;
    Ok(accepted())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ReasonQuery {
    reason: Option<String>,
}

/// `POST /api/instances/{id}/suspend[?reason=]`
pub(crate) async fn suspend(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ReasonQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let params = query(params)?;
    live_instance(&state, &id, "be suspended").await?;
    state
        .client
        .clone()
        .suspend_instance(proto::SuspendRequest {
            instance_id: id,
            reason: params.reason,
        })
        .await
        .map_err(|s| ApiError::grpc("SuspendInstance", &s))?;
    Ok(accepted())
}

/// `POST /api/instances/{id}/resume[?reason=]`
pub(crate) async fn resume(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ReasonQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let params = query(params)?;
    live_instance(&state, &id, "be resumed").await?;
    state
        .client
        .clone()
        .resume_instance(proto::ResumeRequest {
            instance_id: id,
            reason: params.reason,
        })
        .await
        .map_err(|s| ApiError::grpc("ResumeInstance", &s))?;
    Ok(accepted())
}

/// `POST /api/instances/{id}/rewind[?reason=]`: a `Failed` instance runs its failed tasks
/// again.
pub(crate) async fn rewind(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<ReasonQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let params = query(params)?;
    let current = fetch_state(&state, &id, false)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(&id))?;
    if current.orchestration_status != OrchestrationStatus::Failed as i32 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "orchestration instance '{id}' is {}; only Failed instances can be rewound",
                status_name(current.orchestration_status)
            ),
        ));
    }
    state
        .client
        .clone()
        .rewind_instance(proto::RewindInstanceRequest {
            instance_id: id,
            reason: params.reason,
        })
        .await
        .map_err(|s| ApiError::grpc("RewindInstance", &s))?;
    Ok(accepted())
}

#[derive(Debug, Deserialize)]
pub(crate) struct RestartQuery {
    #[serde(rename = "newInstanceId")]
    new_instance_id: Option<bool>,
}

/// `POST /api/instances/{id}/restart[?newInstanceId=true]`: runs a finished instance again
/// with its original input (under a new id with `newInstanceId=true`, which also works while
/// the original still runs).
pub(crate) async fn restart(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<RestartQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let id = path(id)?;
    let new_instance_id = query(params)?.new_instance_id.unwrap_or(false);
    let current = fetch_state(&state, &id, false)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(&id))?;
    if !new_instance_id && !is_terminal(current.orchestration_status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "orchestration instance '{id}' is {}; only finished instances can be restarted \
                 under the same id (use newInstanceId=true)",
                status_name(current.orchestration_status)
            ),
        ));
    }
    let restarted = state
        .client
        .clone()
        .restart_instance(proto::RestartInstanceRequest {
            instance_id: id.clone(),
            restart_with_new_instance_id: new_instance_id,
        })
        .await
        .map_err(|s| ApiError::grpc("RestartInstance", &s))?
        .into_inner();
    Ok(started(&headers, id, restarted.instance_id))
}

/// `GET /api/instances/{id}/history`: the events of the current execution, oldest first.
pub(crate) async fn history(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = path(id)?;
    // Sidecars differ for unknown ids (an error or an empty stream); answer 404 either way.
    fetch_state(&state, &id, false)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(&id))?;
    let events = crate::client::stream_history(
        &state.client,
        proto::StreamInstanceHistoryRequest {
            instance_id: id.clone(),
            execution_id: None,
            for_work_item_processing: false,
        },
    )
    .await
    .map_err(|s| ApiError::grpc("StreamInstanceHistory", &s))?;
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok((
        StatusCode::OK,
        Json(json!({ "instanceId": id, "events": events })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PurgeQuery {
    recursive: Option<bool>,
}

/// `DELETE /api/instances/{id}`: purges a finished instance.
pub(crate) async fn purge(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<PurgeQuery>, QueryRejection>,
) -> ApiResult {
    let id = path(id)?;
    let params = query(params)?;
    let current = fetch_state(&state, &id, false)
        .await?
        .ok_or_else(|| ApiError::unknown_instance(&id))?;
    if !is_terminal(current.orchestration_status) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "orchestration instance '{id}' is {}; only Completed, Failed, Terminated or \
                 Canceled instances can be purged (terminate it first)",
                status_name(current.orchestration_status)
            ),
        ));
    }
    let purged = state
        .client
        .clone()
        .purge_instances(proto::PurgeInstancesRequest {
            request: Some(proto::purge_instances_request::Request::InstanceId(
                id.clone(),
            )),
            recursive: params.recursive.unwrap_or(false),
            is_orchestration: true,
        })
        .await
        .map_err(|s| ApiError::grpc("PurgeInstances", &s))?
        .into_inner();
    if purged.deleted_instance_count == 0 {
        return Err(ApiError::not_found(format!(
            "orchestration instance '{id}' was not purged (it no longer exists)"
        )));
    }
    Ok((
        StatusCode::OK,
        Json(json!({ "deletedInstanceCount": purged.deleted_instance_count })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    prefix: Option<String>,
    name: Option<String>,
    #[serde(rename = "createdFrom")]
    created_from: Option<String>,
    #[serde(rename = "createdTo")]
    created_to: Option<String>,
    #[serde(rename = "pageSize")]
    page_size: Option<i32>,
    #[serde(rename = "continuationToken")]
    continuation_token: Option<String>,
    #[serde(rename = "showInput")]
    show_input: Option<bool>,
}

/// How many sidecar pages one filtered-by-name list request reads at most before it answers
/// (possibly with fewer instances than asked, and a continuation token).
const NAME_FILTER_PAGES: usize = 10;

/// An RFC 3339 query parameter as a wire timestamp.
fn timestamp_param(
    name: &str,
    value: Option<String>,
) -> Result<Option<prost_types::Timestamp>, ApiError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let time = chrono::DateTime::parse_from_rfc3339(value.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid {name} '{value}': {e}; expected an RFC 3339 time like 2026-01-02T03:04:05Z"
        ))
    })?;
    Ok(Some(prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }))
}

/// `GET /api/instances?status=Running,Pending&prefix=&name=&createdFrom=&createdTo=&pageSize=&continuationToken=&showInput=`
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let params = query(params)?;
    let mut runtime_status = Vec::new();
    for name in params
        .status
        .iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let status = parse_status(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid status filter '{name}'; expected one of: {}",
                STATUS_NAMES.join(", ")
            ))
        })?;
        runtime_status.push(status as i32);
    }
    let page_size = params.page_size.unwrap_or(0);
    if page_size < 0 {
        return Err(ApiError::bad_request(format!(
            "invalid pageSize {page_size}; expected 0 (the sidecar's default page) or a positive number"
        )));
    }
    let created_from = timestamp_param("createdFrom", params.created_from)?;
    let created_to = timestamp_param("createdTo", params.created_to)?;
    let name = params.name.filter(|n| !n.is_empty());
    let mut token = params.continuation_token.filter(|t| !t.is_empty());
    let page = usize::try_from(page_size).unwrap_or(0);
    let mut instances = Vec::new();
    // The protocol cannot filter by name: read pages and keep the matches, asking each time
    // only for the rows still missing so a page never holds more than `pageSize`.
    for _ in 0..NAME_FILTER_PAGES {
        let missing = page.saturating_sub(instances.len());
        let response = state
            .client
            .clone()
            .query_instances(proto::QueryInstancesRequest {
                query: Some(proto::InstanceQuery {
                    runtime_status: runtime_status.clone(),
                    created_time_from: created_from,
                    created_time_to: created_to,
                    max_instance_count: i32::try_from(missing).unwrap_or(i32::MAX),
                    continuation_token: token.clone(),
                    instance_id_prefix: params.prefix.clone().filter(|p| !p.is_empty()),
                    fetch_inputs_and_outputs: params.show_input.unwrap_or(false),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|s| ApiError::grpc("QueryInstances", &s))?
            .into_inner();
        instances.extend(
            response
                .orchestration_state
                .iter()
                .filter(|s| name.as_ref().is_none_or(|n| s.name.starts_with(n.as_str())))
                .map(InstanceStatus::from_state),
        );
        // Empty and "0" both mean "last page" on the wire (Python SDK convention).
        let next = response
            .continuation_token
            .filter(|t| !t.is_empty() && t != "0");
        let stuck = next.is_some() && next == token;
        token = next;
        if name.is_none() || token.is_none() || page == 0 || instances.len() >= page || stuck {
            break;
        }
    }
    let body = InstanceList {
        instances,
        continuation_token: token,
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `GET /healthz`: `200 {"status": "ok"}` while the sidecar answers, `503 {"error": ...}`
/// naming why otherwise (unreachable, storage failed, a replica cut off from PostgreSQL).
pub(crate) async fn health(State(state): State<AppState>) -> ApiResult {
    match state.client.clone().hello(()).await {
        Ok(_) => Ok(Json(json!({ "status": "ok" })).into_response()),
        Err(status) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::grpc("Hello", &status).message,
        )),
    }
}

/// Unknown paths.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// Known paths with the wrong method.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}
