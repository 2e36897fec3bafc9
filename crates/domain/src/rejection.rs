use std::fmt;

/// Why a command was refused. Nothing is recorded for a rejected command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The command targets a stream that does not exist yet (an unknown order).
    NotFound { message: String },
    /// A business rule forbids the command in the current state.
    Rule { rule: Rule, message: String },
}

/// Every business rule that can refuse a command. Its code, a stable
/// machine-readable slug (`order-not-placed`), is the `code` of the 422
/// problem and of a refused reaction, and is listed in the OpenAPI document
/// (`RejectionCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum Rule {
    AlreadyPaid,
    AmountMismatch,
    CurrencyMismatch,
    DuplicateSku,
    InsufficientStock,
    InvalidAmount,
    InvalidStatus,
    NoLines,
    NoSuchLine,
    NotReserved,
    OrderExists,
    OrderNotPlaced,
    TooManyLines,
    UnknownShipment,
}

impl Rule {
    pub fn code(self) -> &'static str {
        self.into()
    }

    /// Every rule's code.
    pub fn codes() -> Vec<&'static str> {
        <Rule as strum::VariantArray>::VARIANTS.iter().map(|rule| rule.code()).collect()
    }
}

impl Rejection {
    pub fn rule(rule: Rule, message: impl Into<String>) -> Self {
        Rejection::Rule { rule, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection::NotFound { message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFound { .. } => "not-found",
            Rejection::Rule { rule, .. } => rule.code(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Rejection::NotFound { message } | Rejection::Rule { message, .. } => message,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kebab_case_slugs() {
        assert_eq!(Rule::OrderNotPlaced.code(), "order-not-placed");
        assert!(Rule::codes().contains(&"duplicate-sku"));
    }
}
