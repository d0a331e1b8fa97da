//! W3C trace context as the protocol carries it (`TraceContext.traceParent` /
//! `traceState`), to and from OpenTelemetry's [`SpanContext`].

use std::str::FromStr;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

use crate::proto;

/// The span context a `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`)
/// names, as a remote parent; `None` for an absent, malformed or all-zero value.
pub(crate) fn span_context(trace: &proto::TraceContext) -> Option<SpanContext> {
    let mut parts = trace.trace_parent.split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; later versions may append more. `ff` is invalid.
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = trace
        .trace_state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let context = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
    context.is_valid().then_some(context)
}

/// The protocol form of a span context; `None` when it is invalid (no trace to continue).
pub(crate) fn trace_context(context: &SpanContext) -> Option<proto::TraceContext> {
    if !context.is_valid() {
        return None;
    }
    let state = context.trace_state().header();
    Some(proto::TraceContext {
        trace_parent: format!(
            "00-{:032x}-{:016x}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags()
        ),
        trace_state: (!state.is_empty()).then_some(state),
        // `spanID` is deprecated: the span id is in `traceParent`.
        ..Default::default()
    })
}

/// An OpenTelemetry context whose parent is the remote span `trace` names (an empty context
/// when there is none).
pub(crate) fn parent(trace: Option<&proto::TraceContext>) -> Context {
    match trace.and_then(span_context) {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    }
}

/// The trace context of the span `context` carries (the current one, typically), if any.
pub(crate) fn of_context(context: &Context) -> Option<proto::TraceContext> {
    trace_context(&context.span().span_context().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced(parent: &str, state: Option<&str>) -> proto::TraceContext {
        proto::TraceContext {
            trace_parent: parent.to_owned(),
            trace_state: state.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn traceparents_round_trip() {
        let value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = span_context(&traced(value, Some("vendor=value"))).expect("valid");
        assert!(context.is_remote() && context.is_sampled());
        let back = trace_context(&context).expect("valid");
        assert_eq!(back.trace_parent, value);
        assert_eq!(back.trace_state.as_deref(), Some("vendor=value"));
    }

    #[test]
    fn malformed_and_empty_traceparents_are_no_parent() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(span_context(&traced(bad, None)).is_none(), "{bad:?}");
        }
        assert!(!parent(None).has_active_span());
    }
}
