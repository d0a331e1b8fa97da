//! Wall-clock helpers: the sidecar owns orchestration time (protocol.md §3.3).

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_ms(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

pub(crate) fn to_ms(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

/// A client-given timestamp, treating absent and the Unix epoch as "not given" (JS clients send
/// epoch 0 when the user gave no start time, protocol.md §9).
pub(crate) fn given_ms(ts: Option<&Timestamp>) -> Option<i64> {
    ts.filter(|t| t.seconds > 0 || t.nanos > 0).map(to_ms)
}
