//! Entity routes: signal an entity, read one, list them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::handlers::{json_body, path, query};
use super::model::{payload, rfc3339};
use crate::entity::EntityId;
use crate::proto;

type ApiResult = Result<Response, ApiError>;

/// An entity as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EntityJson {
    entity_id: String,
    name: String,
    key: String,
    state: Value,
    last_modified: Option<String>,
    backlog_queue_size: i32,
    locked_by: Option<String>,
}

impl EntityJson {
    fn from_wire(entity: &proto::EntityMetadata) -> Self {
        let (name, key) = entity
            .instance_id
            .parse::<EntityId>()
            .map(|id| (id.name().to_owned(), id.key().to_owned()))
            .unwrap_or_default();
        Self {
            entity_id: entity.instance_id.clone(),
            name,
            key,
            state: payload(entity.serialized_state.as_deref()),
            last_modified: rfc3339(entity.last_modified_time.as_ref()),
            backlog_queue_size: entity.backlog_queue_size,
            locked_by: entity.locked_by.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EntityList {
    entities: Vec<EntityJson>,
    continuation_token: Option<String>,
}

fn entity_id(name: &str, key: &str) -> Result<EntityId, ApiError> {
    EntityId::new(name, key).map_err(|e| ApiError::bad_request(e.to_string()))
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignalQuery {
    op: Option<String>,
}

/// `POST /api/entities/{name}/{key}?op=OPERATION` with the JSON input as body: `202`.
pub(crate) async fn signal(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<SignalQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (name, key) = path(ids)?;
    let id = entity_id(&name, &key)?;
    let operation = query(params)?
        .op
        .filter(|op| !op.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("name the operation to signal: `?op=OPERATION` (e.g. `?op=add`)")
        })?;
    let input = json_body(body)?;
    state
        .client
        .clone()
        .signal_entity(proto::SignalEntityRequest {
            instance_id: id.to_string(),
            name: operation,
            input,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            ..Default::default()
        })
        .await
        .map_err(|s| ApiError::grpc("SignalEntity", &s))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /api/entities/{name}/{key}`: `200` with the state, `404` when it has none.
pub(crate) async fn get(
    State(state): State<AppState>,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (name, key) = path(ids)?;
    let id = entity_id(&name, &key)?;
    let response = state
        .client
        .clone()
        .get_entity(proto::GetEntityRequest {
            instance_id: id.to_string(),
            include_state: true,
        })
        .await
        .map_err(|s| ApiError::grpc("GetEntity", &s))?
        .into_inner();
    match response.entity.filter(|_| response.exists) {
        Some(entity) => Ok((StatusCode::OK, Json(EntityJson::from_wire(&entity))).into_response()),
        None => Err(ApiError::not_found(format!("entity '{id}' has no state"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    name: Option<String>,
    prefix: Option<String>,
    include_state: Option<bool>,
    include_transient: Option<bool>,
    page_size: Option<i32>,
    continuation_token: Option<String>,
}

/// `GET /api/entities?name=&prefix=&includeState=&includeTransient=&pageSize=&continuationToken=`
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let params = query(params)?;
    let prefix = match (params.name.filter(|n| !n.is_empty()), params.prefix) {
        (Some(name), _) => Some(format!("@{}@", name.to_lowercase())),
        (None, prefix) => prefix.filter(|p| !p.is_empty()),
    };
    if params.page_size.is_some_and(|n| n < 1) {
        return Err(ApiError::bad_request("pageSize must be a positive number"));
    }
    let response = state
        .client
        .clone()
        .query_entities(proto::QueryEntitiesRequest {
            query: Some(proto::EntityQuery {
                instance_id_starts_with: prefix,
                include_state: params.include_state.unwrap_or(true),
                include_transient: params.include_transient.unwrap_or(false),
                page_size: params.page_size,
                continuation_token: params.continuation_token.filter(|t| !t.is_empty()),
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| ApiError::grpc("QueryEntities", &s))?
        .into_inner();
    let body = EntityList {
        entities: response
            .entities
            .iter()
            .map(EntityJson::from_wire)
            .collect(),
        continuation_token: response.continuation_token.filter(|t| !t.is_empty()),
    };
    Ok((StatusCode::OK, Json(body)).into_response())
}
