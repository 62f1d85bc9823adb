//! `doctor`'s findings about the connection itself: encryption, and a pooler in between.

use super::doctor::{ok, problem, Finding, Severity};
use crate::db::{self, pooler::Pooling};

/// Encrypted or not (protocol, what was verified); a warning for a database off this host
/// reached in plain text or without verification.
pub fn encryption(client: &db::Client, url: &str) -> Finding {
    let remote = !is_loopback(url);
    match client.encryption() {
        Some(e) if e.verified == "chain and host name" => {
            ok("encryption", format!("{} (server certificate verified: {})", e.protocol, e.verified))
        }
        Some(e) if remote => problem(
            Severity::Warn,
            "encryption",
            format!("{}, but the server's identity is not fully checked (verified: {})", e.protocol, e.verified),
            "set sslmode=verify-full and sslrootcert (the server's CA, or 'system') so no one in between can pose as the database",
        ),
        Some(e) => ok("encryption", format!("{} (verified: {}; the database is on this host)", e.protocol, e.verified)),
        None if remote => problem(
            Severity::Warn,
            "encryption",
            "plain text to a database on another host: passwords, PINs and credentials cross the network readable",
            "enable TLS on the server and set sslmode=verify-full with sslrootcert",
        ),
        None => ok("encryption", "plain text (the database is on this host)"),
    }
}

/// What `db::pooler` sees, and what follows for orderctl.
pub fn pooler(url: &str) -> Finding {
    match db::pooler::detect(url) {
        Ok(Pooling::Direct) => ok("pooler", "none detected: orderctl talks to Postgres directly"),
        Ok(Pooling::Session) => ok(
            "pooler",
            "something sits between orderctl and Postgres (a pooler in session mode, or a proxy): everything works as direct",
        ),
        Ok(Pooling::Transaction) => ok(
            "pooler",
            "a pooler in transaction mode: commands and lanes work (unnamed statements, settings per transaction); \
             the daemon's LISTEN wake-ups need --direct-database-url, else lanes find new orders by polling",
        ),
        Err(e) => problem(Severity::Warn, "pooler", format!("could not tell: {}", e.message), "run doctor again"),
    }
}

fn is_loopback(url: &str) -> bool {
    let Ok(info) = db::conninfo::parse(url, &|k| std::env::var(k).ok()) else { return false };
    let Ok(config) = info.rest.parse::<postgres::Config>() else { return false };
    config.get_hosts().iter().all(|h| match h {
        postgres::config::Host::Unix(_) => true,
        postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
        }
    })
}

/// Providers whose credential references do not resolve on this host (their orders cannot be
/// placed from here), and those holding plain values in the database (working, but readable by
/// anyone who can read the table or a dump of it).
pub fn credentials(client: &mut db::Client, tenant: Option<&str>) -> crate::error::Result<Vec<Finding>> {
    let mut out = Vec::new();
    for p in db::listings::providers(client, tenant)? {
        let who = format!("provider {}/{}", p.tenant, p.name);
        if let Some(why) = p.credentials.strip_prefix("unresolved: ") {
            out.push(problem(
                Severity::Fail,
                "credentials",
                format!("{who}: {why} on this host: its orders cannot be placed from here"),
                "provide it where orderctl runs (environment, or the file LoadCredential= or the container makes)",
            ));
        } else if p.credentials == "plain values" {
            out.push(ok(
                "credentials",
                format!("{who}: plain values stored in the database (they work; {{\"env\"}}/{{\"file\"}} references keep them out of it)"),
            ));
        }
    }
    for w in db::webhooks::endpoints(client, tenant)? {
        let who = format!("webhook endpoint {} ({}/{})", w.id, w.tenant, w.url);
        if let Some(why) = w.secret.strip_prefix("unresolved: ") {
            out.push(problem(
                Severity::Fail,
                "credentials",
                format!("{who}: {why} on this host: its deliveries cannot be signed from here"),
                "provide it where orderctl runs (environment, or the file LoadCredential= or the container makes)",
            ));
        } else if w.secret == "plain value" {
            out.push(ok(
                "credentials",
                format!("{who}: signing secret stored in the database as a plain value (it works; an {{\"env\"}}/{{\"file\"}} reference keeps it out)"),
            ));
        }
    }
    if out.is_empty() {
        out.push(ok("credentials", "every provider's credential and webhook secret reference resolves on this host"));
    }
    Ok(out)
}
