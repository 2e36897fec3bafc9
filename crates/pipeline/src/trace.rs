//! W3C trace context: one order's journey is one trace. A command's
//! correlation id is the trace id of the request or message that caused it
//! (`traceparent`), carried through every event and reaction, and handed on
//! to the downstream CloudEvents as their `traceparent` extension.

use uuid::Uuid;

/// The trace id of a valid `traceparent` (`00-<trace id>-<parent id>-<flags>`);
/// `None` for anything else, which per the spec starts a new trace.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = hex(version, 2)
        && version != "ff"
        && is_trace_id(trace)
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then(|| trace.to_string())
}

/// Whether `id` (a correlation id, say) is a W3C trace id: 32 lower-case
/// hex digits, not all zero.
pub fn is_trace_id(id: &str) -> bool {
    hex(id, 32) && id.bytes().any(|b| b != b'0')
}

fn hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A fresh trace id, for a request that came without one.
pub fn new_trace_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// The `traceparent` of something done within trace `correlation_id`, with
/// a span id derived from `span` (an event id): `None` when the correlation
/// id is not a trace id (a caller's own `X-Correlation-Id`).
pub fn traceparent(correlation_id: &str, span: &Uuid) -> Option<String> {
    let span_id = &span.simple().to_string()[..16];
    let candidate = format!("00-{correlation_id}-{span_id}-01");
    trace_id(&candidate).map(|_| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valid_trace_parents_only() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(), Some(trace));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(trace_id(bad), None, "{bad}");
        }
        let span = Uuid::new_v4();
        let parent = traceparent(trace, &span).expect("a trace id");
        assert_eq!(trace_id(&parent).as_deref(), Some(trace));
        assert_eq!(traceparent("my-correlation", &span), None);
    }
}
