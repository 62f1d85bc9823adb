//! `orderctl sweep`: one pass of all periodic work, for system cron and systemd timers: the
//! batch safety sweep (once per slot across all hosts), then every lane until the work due when
//! the pass started is done (new orders placed, checks made, what they made due at once
//! handled), then the webhook deliveries due by then (what that work enqueued included), then a
//! report of stuck orders.

use crate::cli::SweepArgs;
use crate::db;
use crate::dispatch::Providers;
use crate::domain::diagnosis::StuckThresholds;
use crate::error::Result;
use crate::lane::{self, sweep::SafetySweepSettings, WorkReport};
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
    work: WorkReport,
    /// Lanes that failed (the others ran on): "routing" or the provider's name, and why.
    lanes_failed: Vec<FailedLane>,
    safety_sweep: Option<lane::sweep::SafetySweep>,
    safety_sweep_ran_elsewhere: bool,
    webhooks: lane::webhooks::DeliveryReport,
    stuck: Vec<serde_json::Value>,
    elapsed_ms: u128,
}

#[derive(Debug, Serialize)]
struct FailedLane {
    lane: String,
    error: String,
    exit_code: i32,
}

/// The name a failed lane is reported by.
fn lane_name(client: &mut db::Client, lane: i64) -> String {
    if lane == 0 {
        return "routing".to_string();
    }
    match client.query_opt("SELECT name FROM providers WHERE id = $1", &[&lane]) {
        Ok(Some(r)) => r.get(0),
        _ => format!("provider {lane}"),
    }
}

pub fn run(s: &Settings, a: &SweepArgs) -> Result<()> {
    let policy = a.policy.policy()?;
    let work = a.work.settings(&s.http)?;
    let delivery = a.webhooks.settings(&s.http)?;
    let started = Instant::now();
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = match &s.tenant {
        Some(t) => Some(db::routing::tenant_id(&mut client, t)?),
        None => None,
    };
    let holder = lane::LaneSettings::holder();
    let sweep =
        SafetySweepSettings { batch_size: work.batch_size, give_up_after: policy.give_up_after, tenant: tenant_id, holder };
    let slot = db::periodic::slot_of(chrono::Utc::now(), SAFETY_SWEEP_SLOT);
    let safety = lane::sweep::run(&mut client, slot, &sweep)?;
    // Checks due when the pass started (after the safety sweep made its orders due), on the
    // database's clock: an order checked here is rescheduled after that moment, so one pass
    // never loops over its own work; what comes due meanwhile is the next pass's.
    let due_by: chrono::DateTime<chrono::Utc> = client.query_one("SELECT now()", &[])?.get(0);
    let settings = lane::LaneSettings::new(&work, s, tenant_id, Some(due_by), Duration::from_millis(50));
    let providers = Providers::new(s.http, policy);
    let drained = lane::drain(&settings, &providers, started + MAX_SWEEP_TIME)?;
    let total = drained.work;
    let lanes_failed: Vec<FailedLane> = drained
        .failed
        .iter()
        .map(|f| FailedLane {
            lane: lane_name(&mut client, f.lane),
            error: f.error.message.clone(),
            exit_code: f.error.exit_code(),
        })
        .collect();
    // Deliveries due now, including the events the work above just wrote; each at most once in
    // this pass (a failed attempt is due again only later), within the pass's time.
    let webhooks_due_by: chrono::DateTime<chrono::Utc> = client.query_one("SELECT now()", &[])?.get(0);
    let webhooks = lane::webhooks::run(
        lane::webhooks::WebhookSettings {
            database_url: s.database_url.clone(),
            send: delivery.send,
            retry: delivery.retry,
            concurrency: delivery.concurrency,
            tenant: tenant_id,
            idle_poll: Duration::from_millis(50),
            drain: Some(webhooks_due_by),
        },
        lane::LaneControl::new(),
        Some(started + MAX_SWEEP_TIME),
    )?;
    let limits = StuckThresholds { overdue_after: work.stuck_after };
    let stuck = crate::commands::list::stuck_orders(&mut client, s.tenant.as_deref(), limits, 50)?;
    let report = SweepReport {
        work: total,
        lanes_failed,
        safety_sweep_ran_elsewhere: safety.is_none(),
        safety_sweep: safety.map(|(r, _)| r),
        webhooks,
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
            "sweep: {} claimed: {} placements, {} checks ({} provider calls): {} approved, {} rejected, {} flagged for an operator; \
             safety sweep: {}; webhooks: {} delivered, {} to retry, {} failed; {} stuck order(s); {} ms",
            w.claimed,
            w.placements,
            w.checks,
            w.provider_calls,
            w.approved,
            w.rejected,
            w.flagged,
            match &report.safety_sweep {
                Some(r) => format!("{} made due", r.made_due),
                None => "already ran in this slot".into(),
            },
            report.webhooks.delivered,
            report.webhooks.retrying,
            report.webhooks.failed,
            report.stuck.len(),
            report.elapsed_ms
        );
        for f in &report.lanes_failed {
            eprintln!("sweep: lane {} failed: {}", f.lane, f.error);
        }
    }
    // Every lane ran; the first failure decides the exit status.
    match drained.failed.into_iter().next() {
        Some(f) => Err(f.error),
        None => Ok(()),
    }
}
