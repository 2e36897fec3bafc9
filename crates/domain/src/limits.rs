//! How long the text the pipeline takes from outside may be. Every field
//! that reaches an event, a downstream message or a log is bounded, so that
//! no message can make a document or a message too large to store or
//! publish. The doors (HTTP, Kafka, Functions, Lambda) check them; the
//! OpenAPI document shows them.

/// Order ids and SKUs: they become stream ids, document ids, message keys
/// and URL segments.
pub const MAX_ID: usize = 64;
/// The characters of an id besides ASCII letters and digits.
const ID_PUNCTUATION: &str = "_.:-";
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
/// Units of a SKU on one order line.
pub const MAX_QUANTITY: u32 = 1_000_000;
/// The price of one unit, in the currency's minor unit.
pub const MAX_UNIT_PRICE_MINOR: u64 = 10_000_000_000;
/// Units received or corrected in one stock change.
pub const MAX_STOCK_CHANGE: u64 = 1_000_000_000;

/// Order ids and SKUs: 1 to [`MAX_ID`] ASCII letters, digits and `_.:-`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || ID_PUNCTUATION.as_bytes().contains(&b))
}

/// [`is_valid_id`] as a regular expression, for the OpenAPI document.
pub fn id_pattern() -> String {
    // `-` last in the class: a literal without escaping.
    format!("^[A-Za-z0-9{ID_PUNCTUATION}]{{1,{MAX_ID}}}$")
}

/// [`is_valid_id`] in words, for error messages.
pub fn id_rule(what: &str) -> String {
    format!("{what} must be 1 to {MAX_ID} letters, digits or {ID_PUNCTUATION}")
}

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
    fn ids() {
        assert!(is_valid_id("order-1_A.b:c"));
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        assert_eq!(id_pattern(), r"^[A-Za-z0-9_.:-]{1,64}$");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(check_length("reason", &"é".repeat(10), 10).is_ok());
        assert_eq!(check_length("reason", &"x".repeat(11), 10).unwrap_err(), "reason must be at most 10 characters");
    }
}
