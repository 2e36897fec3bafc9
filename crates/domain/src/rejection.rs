use std::fmt;

/// Why a command was refused. Nothing is recorded for a rejected command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The command targets a stream that does not exist yet (an unknown order).
    NotFound { message: String },
    /// A business rule forbids the command in the current state.
    /// `code` is a stable, machine-readable slug (`order-not-placed`).
    Rule { code: &'static str, message: String },
}

impl Rejection {
    pub fn rule(code: &'static str, message: impl Into<String>) -> Self {
        Rejection::Rule { code, message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection::NotFound { message: message.into() }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotFound { .. } => "not-found",
            Rejection::Rule { code, .. } => code,
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
