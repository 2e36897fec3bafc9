//! The values a command takes from outside, each checked once, here: a
//! value of one of these types is valid, so nothing after the door checks it
//! again. Every door (HTTP bodies and paths, Kafka, Functions and Lambda
//! messages, the console) reads them through the same `TryFrom` — serde
//! calls it (`#[serde(try_from)]`) — and the OpenAPI document shows the same
//! limits (`limits`, and the kinds' constants).
//!
//! Events and states keep plain text and numbers: they are facts, checked
//! when they came in, and their stored shape is a contract of its own
//! (`contract`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{
    id_rule, is_valid_id, MAX_QUANTITY, MAX_REFERENCE, MAX_STOCK_CHANGE, MAX_TEXT, MAX_UNIT_PRICE_MINOR,
};

/// A value that breaks its type's rule; says which field and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// A text value: the type, the field name it is known by, and its rule.
macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const FIELD: &'static str = $field;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;

            fn try_from(text: String) -> Result<Self, InvalidValue> {
                let rule: fn(&str, &str) -> Result<(), String> = $rule;
                rule($field, &text).map_err(InvalidValue)?;
                Ok($name(text))
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidValue;

            fn try_from(text: &str) -> Result<Self, InvalidValue> {
                Self::try_from(text.to_string())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Read as the text it is (stream ids, messages, logs).
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// A number value: the type, its representation, the field name and its rule.
macro_rules! number_value {
    ($(#[$doc:meta])* $name:ident($inner:ident, $inner_name:literal), $field:literal, $rule:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = $inner_name, into = $inner_name)]
        pub struct $name($inner);

        impl $name {
            pub const FIELD: &'static str = $field;

            pub fn get(self) -> $inner {
                self.0
            }
        }

        impl TryFrom<$inner> for $name {
            type Error = InvalidValue;

            fn try_from(number: $inner) -> Result<Self, InvalidValue> {
                let rule: fn(&str, $inner) -> Result<(), String> = $rule;
                rule($field, number).map_err(InvalidValue)?;
                Ok($name(number))
            }
        }

        impl From<$name> for $inner {
            fn from(value: $name) -> $inner {
                value.0
            }
        }
    };
}

fn id(field: &str, text: &str) -> Result<(), String> {
    if is_valid_id(text) {
        Ok(())
    } else {
        Err(id_rule(field))
    }
}

/// A name or number another system gave: 1 to [`MAX_REFERENCE`] characters,
/// not only white space, no control characters.
fn reference(field: &str, text: &str) -> Result<(), String> {
    let length = text.chars().count();
    if length == 0 || length > MAX_REFERENCE || text.trim().is_empty() || text.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be 1 to {MAX_REFERENCE} characters, not only white space, without control characters"
        ));
    }
    Ok(())
}

/// Words for people: at most [`MAX_TEXT`] characters.
fn text(field: &str, text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_TEXT {
        return Err(format!("{field} must be at most {MAX_TEXT} characters"));
    }
    Ok(())
}

fn currency(field: &str, text: &str) -> Result<(), String> {
    if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("{field} must be an ISO 4217 code such as EUR (three capital letters)"));
    }
    Ok(())
}

text_value!(
    /// An order's id: also its stream's, its messages' key and a URL segment.
    OrderId, "orderId", id
);
text_value!(
    /// A stock-keeping unit: also its stream's id.
    Sku, "sku", id
);
text_value!(CustomerId, "customerId", reference);
text_value!(PaymentId, "paymentId", reference);
text_value!(ShipmentId, "shipmentId", reference);
text_value!(Carrier, "carrier", reference);
text_value!(TrackingNumber, "trackingNumber", reference);
text_value!(
    /// Why: of a cancellation, a failed payment, a stock adjustment.
    Reason, "reason", text
);
text_value!(
    /// ISO 4217, such as `EUR`.
    Currency, "currency", currency
);

number_value!(
    /// Units of a SKU on an order line.
    Quantity(u32, "u32"), "quantity", |field, quantity| {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(format!("{field} must be between 1 and {MAX_QUANTITY}"));
        }
        Ok(())
    }
);
number_value!(
    /// The price of one unit in the currency's minor unit (cents).
    UnitPrice(u64, "u64"), "unitPriceMinor", |field, price| {
        if price > MAX_UNIT_PRICE_MINOR {
            return Err(format!("{field} must be at most {MAX_UNIT_PRICE_MINOR}"));
        }
        Ok(())
    }
);
number_value!(
    /// Units of a SKU received into stock.
    StockQuantity(u64, "u64"), "quantity", |field, quantity| {
        if quantity == 0 || quantity > MAX_STOCK_CHANGE {
            return Err(format!("{field} must be between 1 and {MAX_STOCK_CHANGE}"));
        }
        Ok(())
    }
);
number_value!(
    /// A correction of the stock on hand, either way.
    StockDelta(i64, "i64"), "delta", |field, delta| {
        if delta == 0 || delta.unsigned_abs() > MAX_STOCK_CHANGE {
            return Err(format!("{field} must be non-zero and at most {MAX_STOCK_CHANGE} either way"));
        }
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_keeps_its_rule_and_says_which_field_broke_it() {
        assert!(OrderId::try_from("order-1_A.b:c").is_ok());
        assert_eq!(Sku::try_from("a b").unwrap_err().to_string(), id_rule("sku"));
        assert!(CustomerId::try_from("é".repeat(MAX_REFERENCE)).is_ok(), "characters, not bytes");
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(MAX_REFERENCE + 1)] {
            let error = CustomerId::try_from(bad).unwrap_err().to_string();
            assert!(error.starts_with("customerId must be"), "{bad:?}: {error}");
        }
        assert!(Reason::try_from("").is_ok() && Reason::try_from("x".repeat(MAX_TEXT + 1)).is_err());
        assert!(Currency::try_from("EUR").is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::try_from(bad).is_err(), "{bad:?}");
        }
        assert!(Quantity::try_from(0).is_err() && Quantity::try_from(MAX_QUANTITY + 1).is_err());
        assert!(UnitPrice::try_from(0).is_ok() && UnitPrice::try_from(MAX_UNIT_PRICE_MINOR + 1).is_err());
        assert!(StockDelta::try_from(-1).is_ok() && StockDelta::try_from(0).is_err());
    }

    #[test]
    fn serde_reads_through_the_same_rule_and_writes_the_plain_value() {
        let sku: Sku = serde_json::from_str("\"SKU-1\"").unwrap();
        assert_eq!(serde_json::to_string(&sku).unwrap(), "\"SKU-1\"");
        let error = serde_json::from_str::<Sku>("\"a/b\"").unwrap_err().to_string();
        assert!(error.starts_with(&id_rule("sku")), "{error}");
        let error = serde_json::from_str::<Quantity>("0").unwrap_err().to_string();
        assert!(error.starts_with("quantity must be between 1"), "{error}");
    }
}
