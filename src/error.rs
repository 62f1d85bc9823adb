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

#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// The database's SQLSTATE and constraint, when the database refused something (callers
    /// tell a duplicate key from a lost connection by them).
    pub sqlstate: Option<String>,
    pub constraint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), hint: None, sqlstate: None, constraint: None }
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
    /// The database refused a duplicate of this unique constraint (or index).
    pub fn unique_violation_of(&self, constraint: &str) -> bool {
        self.sqlstate.as_deref() == Some("23505") && self.constraint.as_deref() == Some(constraint)
    }
    /// The database refused a lock or an update because another transaction had just moved the
    /// row to another partition (SQLSTATE 40001: an order finished, sql/0031): nothing is wrong,
    /// and the same work done again finds the row where it is now.
    pub fn moved_concurrently(&self) -> bool {
        self.sqlstate.as_deref() == Some("40001")
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
        let mut out = classify(&e);
        if let Some(db) = e.as_db_error() {
            out.sqlstate = Some(db.code().code().to_string());
            out.constraint = db.constraint().map(str::to_string);
        }
        out
    }
}

fn classify(e: &postgres::Error) -> Error {
    use postgres::error::SqlState;
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let kind = if *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || code.code().starts_with("08")
        {
            ErrorKind::DatabaseUnavailable
        } else if *code == SqlState::UNDEFINED_TABLE
            || *code == SqlState::UNDEFINED_COLUMN
            || *code == SqlState::UNDEFINED_FUNCTION
        {
            return Error::new(ErrorKind::Refused, format!("database error: {}", db.message()))
                .with_hint("the schema is missing or old: run `orderctl migrate`");
        } else {
            ErrorKind::Internal
        };
        let mut msg = format!("database error: {}", db.message());
        if let Some(d) = db.detail() {
            msg.push_str(&format!(" ({d})"));
        }
        return Error::new(kind, msg);
    }
    let lost = e.is_closed() || std::error::Error::source(e).map(|s| s.is::<std::io::Error>()).unwrap_or(false);
    let text = short_message(e);
    if lost {
        return Error::new(ErrorKind::DatabaseUnavailable, format!("lost the database connection: {text}"))
            .with_hint("check that Postgres is running; orderctl changed nothing it did not commit");
    }
    Error::new(ErrorKind::DatabaseUnavailable, format!("database connection error: {text}"))
}

/// A database error in one line: the server's message, or the client's with its cause.
pub fn short_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let s = e.to_string();
            match std::error::Error::source(e) {
                Some(src) if !s.contains(&src.to_string()) => format!("{s}: {src}"),
                _ => s,
            }
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("I/O error: {e}"))
    }
}
