//! The promises, proven under crashes, restarts, outages, bad input and concurrency
//! (issue 8). Each submodule proves one promise; README.md's "Guarantees" maps promise → test.

mod bad_input;
mod concurrency;
mod crash;
mod db_restart;
mod outage;
mod secrets;
mod tenant_scope;

use crate::support::*;
use std::path::Path;
use std::time::Duration;

/// A fast schedule (every command that checks orders takes these).
pub const FAST_POLICY: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];
/// A short provider timeout and a short lease, so work claimed by a killed process comes back
/// quickly (daemon and sweep; the lease must exceed the request timeout).
pub const SHORT_TIMEOUTS: &[&str] = &["--request-timeout", "500ms", "--lease", "2s"];

/// A daemon on `url` with the fast settings and short timeouts, its stderr appended to `log`.
pub fn daemon(url: &str, log: &Path, extra: &[&str]) -> Background {
    daemon_timed(url, log, SHORT_TIMEOUTS, extra)
}

/// A daemon with the fast settings and these `--request-timeout` / `--lease` arguments.
pub fn daemon_timed(url: &str, log: &Path, timeouts: &[&str], extra: &[&str]) -> Background {
    Cmd::new()
        .env("DATABASE_URL", url)
        .args(["daemon", "--idle-poll", "50ms", "--concurrency", "4", "--sweep-schedule", "*/1 * * * * *"])
        .args(FAST_POLICY)
        .args(timeouts)
        .args(extra)
        .spawn_logged(log)
}

/// Nothing in a log says a thread panicked.
#[track_caller]
pub fn assert_no_panic(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!text.contains("panicked"), "a daemon panicked:\n{text}");
}

/// The provider saw each order placed once: `expected` orders, no reference twice.
#[track_caller]
pub fn assert_placed_once(sim: &Sim, expected: u64) {
    let stats = sim.stats();
    assert_eq!(stats["double_placements"], 0, "no order placed twice");
    assert_eq!(stats["orders_placed"], expected, "every order placed exactly once");
}

/// Event kinds that finish an order.
const FINAL_EVENT: &str = "(kind IN ('check.approved', 'check.cancelled', 'operator.approved', 'operator.rejected',
                   'upstream.approved', 'upstream.rejected')
     OR (kind = 'dispatch' AND (message LIKE '%order approved%' OR message LIKE '%order rejected%')))";

/// The event logs tell one consistent story per order: at most one `created` event; a
/// finished order has exactly one event that finished it, matching its status, and no
/// provider work (checks, reconciliation, placement, give-up) is recorded after it; an open
/// order has none.
pub fn assert_event_logs_consistent(db: &TestDb) {
    let q = |sql: &str| db.query_i64(sql);
    assert_eq!(q("SELECT count(*) FROM (SELECT order_id FROM order_events WHERE kind = 'created' GROUP BY order_id HAVING count(*) > 1) d"), 0, "two `created` events");
    let finals = format!(
        "SELECT count(*) FROM orders o WHERE (SELECT count(*) FROM order_events e WHERE e.order_id = o.id AND {FINAL_EVENT}) <> CASE WHEN o.status = 'pending' THEN 0 ELSE 1 END"
    );
    assert_eq!(q(&finals), 0, "each finished order has exactly one finishing event, each open order none");
    let approved_by_approval = format!(
        "SELECT count(*) FROM orders o WHERE o.status = 'approved' AND NOT EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND {FINAL_EVENT}
            AND (e.kind LIKE '%approved' OR e.message LIKE '%order approved%'))"
    );
    assert_eq!(q(&approved_by_approval), 0, "an approved order was finished by an approval");
    let after_final = format!(
        "SELECT count(*) FROM order_events e JOIN (SELECT order_id, min(id) AS fin FROM order_events WHERE {FINAL_EVENT} GROUP BY order_id) f
            ON f.order_id = e.order_id AND e.id > f.fin
          WHERE e.kind LIKE 'check.%' OR e.kind LIKE 'reconcile.%' OR e.kind = 'gave_up' OR e.kind = 'dispatch'"
    );
    assert_eq!(q(&after_final), 0, "no provider work recorded after an order was finished");
}

/// Wait for every order to be final, with what is still open in the message.
#[track_caller]
pub fn wait_all_final(db: &TestDb, timeout: Duration) {
    wait_until(&format!("all orders of {} final", db.name), timeout, || open_orders(db) == 0);
}

/// A daemon's log file: kept readable while the test runs, and its end printed on stderr if
/// the test fails, so a failure in CI can be understood.
pub struct DaemonLog(tempfile::NamedTempFile);

impl DaemonLog {
    pub fn new() -> DaemonLog {
        DaemonLog(tempfile::NamedTempFile::new().unwrap())
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap_or_default()
    }
}

impl Drop for DaemonLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- daemon log, last 200 of {} lines ---\n{}",
                lines.len(),
                lines[lines.len().saturating_sub(200)..].join("\n")
            );
        }
    }
}
