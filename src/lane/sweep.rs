//! The batch safety sweep: every few minutes, the oldest open orders with their provider (sent
//! between `give_up_after` and a minute ago) are made due now, so nothing is forgotten even if
//! its own schedule was lost. It calls no provider itself: the providers' lanes check the
//! orders, by the lifecycle's rules (a check beyond an order's budget does not count past it).
//! Each slot runs once across every daemon and cron host (deduplicated in the database).

use crate::db::GenericClient;
use crate::db::{self, periodic};
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// What a safety sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SafetySweep {
    pub slot: String,
    /// Orders made due now.
    pub made_due: usize,
}

#[derive(Debug, Clone)]
pub struct SafetySweepSettings {
    pub batch_size: i64,
    pub give_up_after: Duration,
    pub tenant: Option<i64>,
    pub holder: String,
}

/// Days of finished history (in closed hours) one sweep rolls up at most (a catch-up over years
/// is spread over several sweeps).
const ROLL_UP_DAYS_PER_SWEEP: i32 = 31;

/// Orders younger than this are left to their own schedule.
const MIN_AGE: Duration = Duration::from_secs(60);

/// Run the sweep of `slot` unless another process already did. Returns None when it ran elsewhere;
/// else what it did and the lanes that got work.
pub fn run(c: &mut impl GenericClient, slot: DateTime<Utc>, s: &SafetySweepSettings) -> Result<Option<(SafetySweep, Vec<i64>)>> {
    // A tenant-scoped sweep is its own job: it must neither stand in for nor block the others.
    let job = match s.tenant {
        Some(t) => format!("safety_sweep:tenant:{t}"),
        None => "safety_sweep".to_string(),
    };
    if !periodic::try_start(c, &job, slot, &s.holder)? {
        return Ok(None);
    }
    let lanes: Vec<i64> = db::orders::make_due_for_safety_sweep(c, s.batch_size, MIN_AGE, s.give_up_after, s.tenant)?;
    let report = SafetySweep { slot: slot.to_rfc3339(), made_due: lanes.len() };
    periodic::finish(c, &job, slot, &serde_json::to_value(&report).unwrap_or_default())?;
    // Closed five-minute slices (and the hours and days they complete) of finished history go
    // into the rollups `stats` reads (migrations 0019, 0020, 0026); a failure here costs `stats`
    // speed, never correctness (the live part starts at the watermark). A slice or two is the
    // steady state of every sweep, not news.
    match db::stats::roll_up(c, ROLL_UP_DAYS_PER_SWEEP) {
        Ok(0) => {}
        Ok(slices) if slices <= 12 => log::debug!("rolled up {slices} closed five-minute slice(s) of finished history"),
        Ok(slices) => log::info!("rolled up {slices} closed five-minute slice(s) of finished history for stats"),
        Err(e) => log::warn!("finished history not rolled up: {}", e.message),
    }
    log::info!("batch safety sweep (slot {slot}): {} open order(s) made due", report.made_due);
    let mut distinct = lanes;
    distinct.sort_unstable();
    distinct.dedup();
    Ok(Some((report, distinct)))
}
