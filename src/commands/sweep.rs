//! `orderctl sweep`: one pass of all periodic work, for system cron and systemd timers.
//! Dispatch new auto orders, check every order that is due (this gives up expired ones),
//! run the batch safety sweep once per slot across all hosts, report stuck orders.

use crate::cli::SweepArgs;
use crate::db;
use crate::domain::diagnosis::StuckThresholds;
use crate::error::Result;
use crate::monitor::{self, Monitor, RoundReport};
use crate::output;
use crate::settings::Settings;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The safety sweep runs once per slot of this length, whoever runs first (the domain's
/// "every 5 minutes").
const SAFETY_SWEEP_SLOT: Duration = Duration::from_secs(300);
/// A sweep never runs longer than this; what is left comes due for the next one.
const MAX_SWEEP_TIME: Duration = Duration::from_secs(240);

#[derive(Debug, Serialize)]
struct SweepReport {
    #[serde(flatten)]
    work: RoundReport,
    rounds: usize,
    safety_sweep: Option<RoundReport>,
    safety_sweep_ran_elsewhere: bool,
    stuck: Vec<serde_json::Value>,
    elapsed_ms: u128,
}

pub fn run(s: &Settings, a: &SweepArgs) -> Result<()> {
    let policy = a.policy.policy()?;
    let work = a.work.settings(&s.http)?;
    let started = Instant::now();
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = match &s.tenant {
        Some(t) => Some(db::routing::tenant_id(&mut client, t)?),
        None => None,
    };
    drop(client);
    let settings = work.monitor(policy, tenant_id);
    let mut monitor = Monitor::new(&s.database_url, s.http, settings)?;

    // Work that was due when the sweep started, round after round. An order handled here is
    // rescheduled after that moment (with --first-check 0s, for right now), so one pass never
    // loops over its own work; what comes due meanwhile is the next pass's. The database's
    // clock decides, so a skewed host clock cannot stretch or cut the pass.
    let due_by: chrono::DateTime<chrono::Utc> = monitor.client().query_one("SELECT now()", &[])?.get(0);
    let mut total = RoundReport::default();
    let mut rounds = 0;
    while started.elapsed() < MAX_SWEEP_TIME {
        let r = monitor.round_due_by(due_by)?;
        if r.is_idle() {
            break;
        }
        rounds += 1;
        total.add(&r);
    }

    let safety = monitor::safety_sweep(&mut monitor, SAFETY_SWEEP_SLOT)?;
    let limits = StuckThresholds { undispatched_after: work.stuck_after, overdue_after: work.stuck_after };
    let stuck = crate::commands::list::stuck_orders(monitor.client(), s.tenant.as_deref(), limits, 50)?;
    let report = SweepReport {
        work: total,
        rounds,
        safety_sweep_ran_elsewhere: safety.is_none(),
        safety_sweep: safety,
        stuck,
        elapsed_ms: started.elapsed().as_millis(),
    };
    for o in &report.stuck {
        log::warn!("stuck: order {}: {}", o["number"], o["diagnosis"]["sentence"].as_str().unwrap_or(""));
    }
    if s.json() {
        output::print_json(&report);
    } else {
        let w = &report.work;
        eprintln!(
            "sweep: {} claimed in {} round(s): {} dispatched, {} checks ({} provider calls): {} approved, {} rejected, {} waiting, \
             {} no news, {} reconciled, {} given up; safety sweep: {}; {} stuck order(s); {} ms",
            w.claimed, report.rounds, w.dispatched, w.checks, w.provider_calls, w.approved, w.rejected, w.waiting, w.no_news,
            w.reconciled, w.given_up,
            match &report.safety_sweep {
                Some(r) => format!("{} checked", r.checks),
                None => "already ran in this slot".into(),
            },
            report.stuck.len(),
            report.elapsed_ms
        );
    }
    Ok(())
}
