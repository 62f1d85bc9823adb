//! `orderctl poll ORDER [--wait]`: ask the order's provider now; with `--wait`, keep asking by
//! the backoff policy (on the database's clock) until it is final or the timeout passes (exit 9).

use crate::cli::PollArgs;
use crate::commands::inspect;
use crate::db::{
    self,
    orders::{self, OrderRef, OrderRow},
};
use crate::dispatch::{run_one, OneMode, OneOptions, Providers, Timing};
use crate::domain::lifecycle::State;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::Settings;
use std::time::{Duration, Instant};

/// Whether the order has a provider to ask (or a placement to send again).
fn askable(o: &OrderRow) -> Result<bool> {
    Ok(matches!(
        State::of(&o.facts()?),
        State::Placing | State::Reconciling | State::WithProvider | State::Watched | State::ToPlace { reuse: true }
    ))
}

/// How long until the order's next work is due, on the database's clock (None: nothing scheduled).
fn until_due(o: &OrderRow) -> Option<Duration> {
    o.next_check_at.map(|t| (t - o.read_at).to_std().unwrap_or(Duration::ZERO))
}

pub fn run(s: &Settings, a: &PollArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let policy = a.policy.policy()?;
    let timeout: Duration = a.timeout.into();
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let providers = Providers::new(s.http, policy);
    let opts = OneOptions { mode: OneMode::Poll, timing: Timing::one_order(&s.http) };
    let started = Instant::now();
    let mut first = true;
    loop {
        let current = orders::load_order(&mut client, order.id)?;
        let ask = askable(&current)?;
        // The first ask is now; after that, only when the schedule says so.
        if ask && (first || until_due(&current) == Some(Duration::ZERO)) {
            run_one(&mut client, &providers, order.id, &opts)?;
        }
        first = false;
        let after = orders::load_order(&mut client, order.id)?;
        let final_state = after.status.is_final();
        if !a.wait || final_state {
            if !a.wait && !ask && !final_state {
                if after.forwarded_to.is_some() {
                    log::warn!(
                        "order {} was forwarded to another tenant: nothing to ask a provider here; it finishes when that \
                         order does (`orderctl inspect {}` shows where it is)",
                        after.number,
                        after.number
                    );
                } else {
                    log::warn!(
                        "order {} is {} / {}: nothing to ask a provider",
                        after.number,
                        after.status,
                        after.external_status
                    );
                }
            }
            return inspect::print_order_brief(s, &mut client, &after, None);
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            inspect::print_order_brief(s, &mut client, &after, None)?;
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
        // Sleep until the next scheduled work (a while when nothing is scheduled, e.g. an
        // order waiting for an operator or for the daemon), never past the timeout.
        let nap =
            until_due(&after).unwrap_or(Duration::from_millis(500)).clamp(Duration::from_millis(10), Duration::from_secs(5));
        std::thread::sleep(nap.min(timeout - elapsed));
    }
}
