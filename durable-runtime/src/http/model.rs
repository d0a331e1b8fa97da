//! JSON shapes of the HTTP API and their conversion from wire messages.

use axum::http::HeaderMap;
use axum::http::header::HOST;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::proto::{self, OrchestrationStatus};

/// Body of `202 Accepted` after a start: the management URIs of the new instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StartResponse {
    pub(crate) id: String,
    pub(crate) status_query_get_uri: String,
    pub(crate) send_event_post_uri: String,
    pub(crate) terminate_post_uri: String,
    pub(crate) suspend_post_uri: String,
    pub(crate) resume_post_uri: String,
    pub(crate) purge_delete_uri: String,
}

impl StartResponse {
    pub(crate) fn new(base: &str, id: &str) -> Self {
        let instance = instance_uri(base, id);
        Self {
            id: id.to_string(),
            status_query_get_uri: instance.clone(),
            send_event_post_uri: format!("{instance}/raiseEvent/{{eventName}}"),
            terminate_post_uri: format!("{instance}/terminate"),
            suspend_post_uri: format!("{instance}/suspend"),
            resume_post_uri: format!("{instance}/resume"),
            purge_delete_uri: instance,
        }
    }
}

/// The status of one instance, as answered by `GET /api/instances/{id}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceStatus {
    pub(crate) instance_id: String,
    pub(crate) name: String,
    pub(crate) runtime_status: &'static str,
    pub(crate) input: Value,
    pub(crate) output: Value,
    pub(crate) custom_status: Value,
    pub(crate) created_at: Option<String>,
    pub(crate) last_updated_at: Option<String>,
    pub(crate) failure_details: Option<FailureDetailsJson>,
}

/// `failureDetails` of a failed instance.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureDetailsJson {
    pub(crate) error_type: String,
    pub(crate) error_message: String,
    pub(crate) stack_trace: Option<String>,
}

impl InstanceStatus {
    pub(crate) fn from_state(state: &proto::OrchestrationState) -> Self {
        Self {
            instance_id: state.instance_id.clone(),
            name: state.name.clone(),
            runtime_status: status_name(state.orchestration_status),
            input: payload(state.input.as_deref()),
            output: payload(state.output.as_deref()),
            custom_status: payload(state.custom_status.as_deref()),
            created_at: rfc3339(state.created_timestamp.as_ref()),
            last_updated_at: rfc3339(state.last_updated_timestamp.as_ref()),
            failure_details: state.failure_details.as_ref().map(|f| FailureDetailsJson {
                error_type: f.error_type.clone(),
                error_message: f.error_message.clone(),
                stack_trace: f.stack_trace.clone(),
            }),
        }
    }
}

/// Body of `GET /api/instances`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceList {
    pub(crate) instances: Vec<InstanceStatus>,
    pub(crate) continuation_token: Option<String>,
}

/// A JSON payload of the wire as a JSON value: absent → `null`; text that is not JSON (some
/// SDKs store raw strings) → a JSON string.
pub(crate) fn payload(raw: Option<&str>) -> Value {
    match raw {
        None => Value::Null,
        Some(text) if text.trim().is_empty() => Value::Null,
        Some(text) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        }
    }
}

/// A wire timestamp as RFC 3339 (UTC, `Z`), `None` when absent or out of range.
pub(crate) fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = timestamp?;
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(t.seconds, nanos)
        .map(|dt| dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Every status name the API answers or accepts, in wire order.
pub(crate) const STATUS_NAMES: [&str; 8] = [
    "Running",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "Canceled",
    "Terminated",
    "Pending",
    "Suspended",
];

/// The API name of a wire status (`8` is Dapr's `STALLED`).
pub(crate) fn status_name(status: i32) -> &'static str {
    match OrchestrationStatus::try_from(status) {
        Ok(OrchestrationStatus::Running) => "Running",
        Ok(OrchestrationStatus::Completed) => "Completed",
        Ok(OrchestrationStatus::ContinuedAsNew) => "ContinuedAsNew",
        Ok(OrchestrationStatus::Failed) => "Failed",
        Ok(OrchestrationStatus::Canceled) => "Canceled",
        Ok(OrchestrationStatus::Terminated) => "Terminated",
        Ok(OrchestrationStatus::Pending) => "Pending",
        Ok(OrchestrationStatus::Suspended) => "Suspended",
        Err(_) if status == 8 => "Stalled",
        Err(_) => "Unknown",
    }
}

/// Parses a status name (case-insensitive).
pub(crate) fn parse_status(name: &str) -> Option<OrchestrationStatus> {
    let status = match name.to_ascii_lowercase().as_str() {
        "running" => OrchestrationStatus::Running,
        "completed" => OrchestrationStatus::Completed,
        "continuedasnew" => OrchestrationStatus::ContinuedAsNew,
        "failed" => OrchestrationStatus::Failed,
        "canceled" | "cancelled" => OrchestrationStatus::Canceled,
        "terminated" => OrchestrationStatus::Terminated,
        "pending" => OrchestrationStatus::Pending,
        "suspended" => OrchestrationStatus::Suspended,
        _ => return None,
    };
    Some(status)
}

/// Whether the instance reached a final state (polling answers `200` from then on).
pub(crate) fn is_terminal(status: i32) -> bool {
    matches!(
        OrchestrationStatus::try_from(status),
        Ok(OrchestrationStatus::Completed
            | OrchestrationStatus::Failed
            | OrchestrationStatus::Terminated
            | OrchestrationStatus::Canceled)
    )
}

/// `scheme://host` of the request (from `Host`, honouring `X-Forwarded-Proto`/`-Host`);
/// empty when the request has no host, which makes the URIs relative.
pub(crate) fn base_uri(headers: &HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = header("x-forwarded-host").or_else(|| header(HOST.as_str()));
    match host {
        Some(host) => {
            let scheme = header("x-forwarded-proto").unwrap_or("http");
            format!("{scheme}://{host}")
        }
        None => String::new(),
    }
}

/// The status URI of an instance.
pub(crate) fn instance_uri(base: &str, id: &str) -> String {
    format!("{base}/api/instances/{}", encode_segment(id))
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_json_values() {
        assert_eq!(payload(None), Value::Null);
        assert_eq!(payload(Some("")), Value::Null);
        assert_eq!(payload(Some("\"hi\"")), Value::String("hi".into()));
        assert_eq!(payload(Some("{\"a\":1}")), serde_json::json!({"a": 1}));
        assert_eq!(payload(Some("not json")), Value::String("not json".into()));
    }

    #[test]
    fn statuses_round_trip() {
        for (wire, name) in STATUS_NAMES.iter().enumerate() {
            let wire = i32::try_from(wire).expect("small index");
            assert_eq!(status_name(wire), *name);
            assert_eq!(parse_status(name).map(|s| s as i32), Some(wire));
        }
        assert_eq!(status_name(8), "Stalled");
        assert_eq!(parse_status("RUNNING"), Some(OrchestrationStatus::Running));
        assert_eq!(parse_status("nope"), None);
        assert!(is_terminal(OrchestrationStatus::Completed as i32));
        assert!(!is_terminal(OrchestrationStatus::Suspended as i32));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let ts = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 500_000_000,
        };
        assert_eq!(
            rfc3339(Some(&ts)).as_deref(),
            Some("2023-11-14T22:13:20.500Z")
        );
        assert_eq!(rfc3339(None), None);
    }

    #[test]
    fn uris_use_the_host_header_and_encode_ids() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "example.com:8080".parse().expect("valid header"));
        let base = base_uri(&headers);
        assert_eq!(base, "http://example.com:8080");
        let start = StartResponse::new(&base, "a b/c");
        assert_eq!(
            start.status_query_get_uri,
            "http://example.com:8080/api/instances/a%20b%2Fc"
        );
        assert_eq!(
            start.send_event_post_uri,
            "http://example.com:8080/api/instances/a%20b%2Fc/raiseEvent/{eventName}"
        );
        assert_eq!(base_uri(&HeaderMap::new()), "");

        headers.insert(
            "x-forwarded-host",
            "api.example.com".parse().expect("valid"),
        );
        headers.insert("x-forwarded-proto", "https, http".parse().expect("valid"));
        assert_eq!(base_uri(&headers), "https://api.example.com");
    }
}
