//! Where shops deploy orderctl (issue 21): TLS to Postgres, a pooler in between. Real servers
//! only: a TLS-only private cluster with certificates made here, and a real pgbouncer.

mod pooler;
mod secrets;
mod tls;

use crate::support::*;
use orderctl::kit::pgbouncer::Pgbouncer;

/// A pgbouncer in front of the test server, or None (with a note) where none is installed;
/// .ci/run installs it, so CI always runs these tests.
pub fn pgbouncer(mode: &str) -> Option<Pgbouncer> {
    let u = url::Url::parse(&admin_url()).unwrap();
    match Pgbouncer::start(u.host_str().unwrap(), u.port().unwrap_or(5432), mode) {
        Ok(b) => Some(b),
        Err(e) if e.message.contains("not installed") => {
            eprintln!("SKIPPED: {}", e.message);
            None
        }
        Err(e) => panic!("pgbouncer did not start: {}", e.message),
    }
}
