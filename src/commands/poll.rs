//! `orderctl poll ORDER [--wait]`: check one order with its provider now; with `--wait`, keep
//! checking by the backoff policy until it is final or the timeout passes (exit 9).

use crate::cli::PollArgs;
use crate::commands::inspect;
use crate::db::orders::{self, OrderRef};
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::{Monitor, MonitorSettings};
use crate::settings::Settings;
use chrono::Utc;
use std::time::{Duration, Instant};

pub fn run(s: &Settings, a: &PollArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let policy = a.policy.policy()?;
    let timeout: Duration = a.timeout.into();
    let settings = MonitorSettings {
        policy,
        lease: s.http.request_timeout * 3,
        batch_size: 1,
        round_size: 1,
        concurrency: 1,
        tenant_id: None,
    };
    let mut monitor = Monitor::new(&s.database_url, s.http, settings)?;
    let order = orders::find_order(monitor.client(), &order_ref, s.tenant.as_deref())?;
    let started = Instant::now();
    let mut first = true;
    loop {
        let current = orders::load_order(monitor.client(), order.id)?;
        let checkable =
            current.status == "pending" && matches!(current.external_status.as_str(), "dispatching" | "sent" | "processing");
        if checkable {
            let due = current.next_check_at.map(|t| t <= Utc::now()).unwrap_or(true);
            // Without --wait: check now. With --wait: the first check now, then by the schedule.
            if !a.wait || due || first || current.checks == 0 {
                let r = monitor.check_now(&[order.id])?;
                if r.claimed == 0 {
                    log::info!("order {} is being checked by another process right now", current.number);
                }
            }
        }
        first = false;
        let after = orders::load_order(monitor.client(), order.id)?;
        let final_state = after.status != "pending";
        if !a.wait || final_state {
            inspect::print_order_brief(s, monitor.client(), &after, None)?;
            if !a.wait && !checkable && !final_state {
                log::warn!(
                    "order {} is {} / {}: nothing to check with a provider",
                    after.number,
                    after.status,
                    after.external_status
                );
            }
            return Ok(());
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            inspect::print_order_brief(s, monitor.client(), &after, None)?;
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "order {} is still {} / {} after {}",
                    after.number,
                    after.status,
                    after.external_status,
                    humantime::format_duration(timeout)
                ),
            )
            .with_hint(format!("`orderctl inspect {}` says why", after.number)));
        }
        // Sleep until the next scheduled check (or a short while when nothing is scheduled,
        // e.g. an order waiting for dispatch or an operator), never past the timeout.
        let until_next = after.next_check_at.and_then(|t| (t - Utc::now()).to_std().ok()).unwrap_or(Duration::from_millis(200));
        let nap = until_next.clamp(Duration::from_millis(20), Duration::from_secs(5)).min(timeout - elapsed);
        std::thread::sleep(nap);
    }
}
