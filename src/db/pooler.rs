//! Is a connection pooler between orderctl and Postgres, and in which mode? A heuristic, as
//! every answer to this is:
//! - two connections open at once that reach the same server backend can only be a pooler in
//!   transaction mode (it handed the first one's idle server connection to the second);
//! - the server listening on another port than the one connected to, or on no TCP address
//!   while we came over TCP, means something is between: a pooler in session mode, or a proxy;
//! - else nothing is between.

use super::Client;
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Direct,
    /// Something between, each client keeping its server connection (session mode, or a proxy).
    Session,
    Transaction,
}

impl Pooling {
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Direct => "none",
            Pooling::Session => "session",
            Pooling::Transaction => "transaction",
        }
    }
}

/// Look at the connection `url` gives (two connections for a moment).
pub fn detect(url: &str) -> Result<Pooling> {
    let mut a = super::connect(url)?;
    let (pid, port) = backend(&mut a)?;
    let mut b = super::connect(url)?;
    let (other, _) = backend(&mut b)?;
    let (again, _) = backend(&mut a)?;
    if other == pid || again != pid {
        return Ok(Pooling::Transaction);
    }
    let config: postgres::Config = super::conninfo::parse(url, &|k| std::env::var(k).ok())?
        .rest
        .parse()
        .map_err(|e| crate::error::Error::invalid(format!("the database URL is not valid: {e}")))?;
    let tcp = matches!(config.get_hosts().first(), Some(postgres::config::Host::Tcp(_)));
    let wanted = config.get_ports().first().copied().unwrap_or(5432);
    Ok(match port {
        Some(p) if tcp && p != i32::from(wanted) => Pooling::Session,
        None if tcp => Pooling::Session,
        _ => Pooling::Direct,
    })
}

fn backend(c: &mut Client) -> Result<(i32, Option<i32>)> {
    let r = c.query_one("SELECT pg_backend_pid(), inet_server_port()", &[])?;
    Ok((r.get(0), r.get(1)))
}
