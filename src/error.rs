//! The one error type at the edge. Core modules return it (or typed errors converted into it);
//! `run` turns it into a message on stderr and an exit code. Every message says what went wrong,
//! and `hint` says what to do next.

use crate::exit_codes;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Internal,
    Usage,
    NotFound,
    InvalidInput,
    Refused,
    DatabaseUnavailable,
    ProviderUnavailable,
    NeedsAction,
    TimedOut,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => exit_codes::INTERNAL,
            ErrorKind::Usage => exit_codes::USAGE,
            ErrorKind::NotFound => exit_codes::NOT_FOUND,
            ErrorKind::InvalidInput => exit_codes::INVALID_INPUT,
            ErrorKind::Refused => exit_codes::REFUSED,
            ErrorKind::DatabaseUnavailable => exit_codes::DATABASE_UNAVAILABLE,
            ErrorKind::ProviderUnavailable => exit_codes::PROVIDER_UNAVAILABLE,
            ErrorKind::NeedsAction => exit_codes::NEEDS_ACTION,
            ErrorKind::TimedOut => exit_codes::TIMED_OUT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Internal => "internal",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not-found",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Refused => "refused",
            ErrorKind::DatabaseUnavailable => "database-unavailable",
            ErrorKind::ProviderUnavailable => "provider-unavailable",
            ErrorKind::NeedsAction => "needs-action",
            ErrorKind::TimedOut => "timed-out",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None }
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Refused, message)
    }
    pub fn provider(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ProviderUnavailable, message)
    }
    pub fn needs_action(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NeedsAction, message)
    }
    pub fn exit_code(&self) -> i32 {
        self.kind.exit_code()
    }
    /// JSON form for `--output json` consumers reading stderr.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": self.kind.name(),
            "exit_code": self.exit_code(),
            "message": self.message,
            "hint": self.hint,
        })
    }
}

/// Database errors: a lost or refused connection is "unavailable" (retry later, check the
/// server); anything else is reported with the server's own words.
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        crate::db::classify_error(&e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("I/O error: {e}"))
    }
}
