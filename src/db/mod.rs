//! Every SQL statement orderctl runs lives under this module, named after what it does. The
//! schema itself is plain SQL in `sql/`.

pub mod claims;
mod client;
pub mod codes;
pub mod conninfo;
pub mod forwarding;
pub mod listings;
pub mod migrate;
pub mod money;
pub mod orders;
pub mod outbox;
pub mod outcomes;
pub mod pace;
pub mod partitions;
pub mod periodic;
pub mod permits;
pub mod pooler;
pub mod provider_health;
pub mod providers;
pub mod routing;
mod row;
pub mod setup;
pub mod stats;
pub mod summaries;
pub mod tls;
pub mod transitions;
pub mod webhooks;

pub use client::{Client, GenericClient, Param, PgType, Transaction, SETTINGS_CHANGED};

use crate::error::{Error, ErrorKind};

use postgres::NoTls;
use std::time::Duration;

/// Open a connection, with TLS as the URL's (or the PG* variables') sslmode says, as libpq
/// would (`conninfo`, `tls`). rust-postgres does not read ~/.pgpass.
pub fn connect(url: &str) -> Result<Client, Error> {
    let info = conninfo::parse(url, &|k| std::env::var(k).ok())?;
    let mut config: postgres::Config = info.rest.parse().map_err(|e| {
        Error::invalid(format!("the database URL is not valid: {e}"))
            .with_hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
    })?;
    config.connect_timeout(Duration::from_secs(5));
    if config.get_application_name().is_none() {
        config.application_name("orderctl");
    }
    config.ssl_mode(match info.tls.mode {
        conninfo::SslMode::Disable => postgres::config::SslMode::Disable,
        conninfo::SslMode::Allow | conninfo::SslMode::Prefer => postgres::config::SslMode::Prefer,
        _ => postgres::config::SslMode::Require,
    });
    let (connected, seen) = match tls::connector(&info.tls)? {
        Some((connector, seen)) => (config.connect(connector), Some(seen)),
        None => (config.connect(NoTls), None),
    };
    let client = connected.map_err(|e| {
        let host = config.get_hosts().first().map(host_name).unwrap_or_default();
        tls::explain(&e, &info.tls, &host).unwrap_or_else(|| {
            Error::new(
                ErrorKind::DatabaseUnavailable,
                format!("cannot connect to the database at {}: {}", mask_url(url), short_pg_error(&e)),
            )
            .with_hint("check that Postgres is running and that --database-url / DATABASE_URL is right")
        })
    })?;
    let encryption = seen.and_then(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone());
    Ok(Client::new(client, encryption))
}

fn host_name(h: &postgres::config::Host) -> String {
    match h {
        postgres::config::Host::Tcp(name) => name.clone(),
        postgres::config::Host::Unix(path) => path.display().to_string(),
    }
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
