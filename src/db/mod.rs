//! Every SQL statement orderctl runs lives under this module, named after what it does. The
//! schema itself is plain SQL in `sql/`.

pub mod claims;
pub mod codes;
pub mod forwarding;
pub mod listings;
pub mod migrate;
pub mod orders;
pub mod outbox;
pub mod outcomes;
pub mod periodic;
pub mod permits;
pub mod providers;
pub mod routing;
pub mod setup;
pub mod stats;
pub mod summaries;
pub mod transitions;
pub mod webhooks;

use crate::error::{Error, ErrorKind};

use postgres::{Client, NoTls};
use std::time::Duration;

/// Session settings for every orderctl connection. A forgotten open transaction must not hold
/// back vacuum (the bloat that kills job queues), and no statement may hang forever. No JIT:
/// a batch statement on a young table can look costly enough to compile, and compiling takes
/// longer than running it.
const SESSION_SETUP: &str = "SET idle_in_transaction_session_timeout = '60s'; \
     SET statement_timeout = '30s'; SET lock_timeout = '10s'; SET application_name = 'orderctl'; SET jit = off";

/// Open a connection. rust-postgres does not read PG* variables or ~/.pgpass: the URL is all.
pub fn connect(url: &str) -> Result<Client, Error> {
    let mut config: postgres::Config = url.parse().map_err(|e| {
        Error::invalid(format!("the database URL is not valid: {e}"))
            .with_hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
    })?;
    config.connect_timeout(Duration::from_secs(5));
    if config.get_application_name().is_none() {
        config.application_name("orderctl");
    }
    let mut client = config.connect(NoTls).map_err(|e| {
        Error::new(
            ErrorKind::DatabaseUnavailable,
            format!("cannot connect to the database at {}: {}", mask_url(url), short_pg_error(&e)),
        )
        .with_hint("check that Postgres is running and that --database-url / DATABASE_URL is right")
    })?;
    client.batch_execute(SESSION_SETUP)?;
    Ok(client)
}

/// The URL with its password replaced, for messages.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        // Not a URL (key=value form): show only the host part if we can find it.
        Err(_) => {
            let parts: Vec<String> = url
                .split_whitespace()
                .map(|kv| if kv.starts_with("password=") { "password=***".to_string() } else { kv.to_string() })
                .collect();
            parts.join(" ")
        }
    }
}

pub(crate) fn short_pg_error(e: &postgres::Error) -> String {
    crate::error::short_message(e)
}

/// True when the error means the connection is gone and a new one should be opened.
pub fn is_connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let c = db.code().code();
        return c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03";
    }
    std::error::Error::source(e).map(|s| s.is::<std::io::Error>()).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_urls() {
        assert_eq!(mask_url("postgres://u:hunter2@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(mask_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(mask_url("host=db password=hunter2 user=u"), "host=db password=*** user=u");
    }
}
