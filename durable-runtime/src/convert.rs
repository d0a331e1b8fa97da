//! Conversions between wire types (`crate::proto`) and domain types.

use chrono::{DateTime, TimeZone, Utc};

use crate::error::FailureDetails;
use crate::proto;

/// A payload as JSON text: absent and empty both mean `null` (the Python SDK sends an empty
/// string for an entity operation that returned `None`).
pub(crate) fn json_or_null(payload: Option<&str>) -> &str {
    payload.filter(|p| !p.is_empty()).unwrap_or("null")
}

/// A wire timestamp as UTC time (absent or invalid = the Unix epoch).
pub(crate) fn to_datetime(timestamp: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    timestamp
        .and_then(|t| {
            Utc.timestamp_opt(t.seconds, u32::try_from(t.nanos.max(0)).unwrap_or(0))
                .single()
        })
        .unwrap_or_default()
}

/// UTC time as a wire timestamp.
pub(crate) fn to_timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl From<&proto::TaskFailureDetails> for FailureDetails {
    fn from(wire: &proto::TaskFailureDetails) -> Self {
        Self {
            error_type: wire.error_type.clone(),
            message: wire.error_message.clone(),
            stack_trace: wire.stack_trace.clone(),
            inner: wire
                .inner_failure
                .as_deref()
                .map(|inner| Box::new(FailureDetails::from(inner))),
            non_retriable: wire.is_non_retriable,
        }
    }
}

impl From<&FailureDetails> for proto::TaskFailureDetails {
    fn from(details: &FailureDetails) -> Self {
        Self {
            error_type: details.error_type.clone(),
            error_message: details.message.clone(),
            stack_trace: details.stack_trace.clone(),
            inner_failure: details
                .inner
                .as_deref()
                .map(|inner| Box::new(proto::TaskFailureDetails::from(inner))),
            is_non_retriable: details.non_retriable,
            properties: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(to_datetime(Some(&to_timestamp(time))), time);
        assert_eq!(to_datetime(None), DateTime::<Utc>::UNIX_EPOCH);
    }
}
