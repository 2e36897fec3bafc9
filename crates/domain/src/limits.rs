//! How long the text the pipeline takes from outside may be. Every field
//! that reaches an event, a downstream message or a log is bounded, so that
//! no message can make a document or a message too large to store or
//! publish. The doors (HTTP, Kafka, Functions, Lambda) check them; the
//! OpenAPI document shows them.

/// Order ids and SKUs: they become stream ids, document ids, message keys
/// and URL segments.
pub const MAX_ID: usize = 64;
/// Customer ids, payment and shipment ids, carriers, tracking numbers.
pub const MAX_REFERENCE: usize = 128;
/// Free text: the reason of a cancellation, a failed payment, an adjustment.
pub const MAX_TEXT: usize = 1000;
/// A CloudEvent's `id`.
pub const MAX_EVENT_ID: usize = 256;
/// A CloudEvent's `source` (a URI reference).
pub const MAX_SOURCE: usize = 512;
/// A correlation id: `X-Correlation-Id`, the `correlationid` extension.
pub const MAX_CORRELATION_ID: usize = 128;
/// A `traceparent` (version 00 is 55 characters; later ones may be longer).
pub const MAX_TRACEPARENT: usize = 256;

/// `Err` naming the field when `text` has more than `max` characters.
pub fn check_length(field: &str, text: &str, max: usize) -> Result<(), String> {
    if text.chars().count() > max {
        return Err(format!("{field} must be at most {max} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_characters_not_bytes() {
        assert!(check_length("reason", &"é".repeat(10), 10).is_ok());
        assert_eq!(check_length("reason", &"x".repeat(11), 10).unwrap_err(), "reason must be at most 10 characters");
    }
}
