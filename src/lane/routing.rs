//! The routing lane (lane 0): the work that needs no HTTP. New orders whose package routing
//! names no provider lane at insert (manual mode, code stock, forwarding to another tenant, an
//! operator's re-dispatch, routing that cannot be followed) are decided here and handed to a
//! provider's lane, delivered from our own stock, forwarded (the other tenant's order created in
//! the same transaction), left for an operator, or flagged. Forwarding is database work only, so
//! it lives here and never waits behind, or holds up, a provider's calls.

use super::{LaneControl, LaneSettings, Wakers};
use crate::db::{self, claims};
use crate::dispatch::route::route_rows;
use crate::error::{ErrorKind, Result};
use postgres::Client;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Orders routed per transaction, at most.
const BATCH: i64 = 200;

pub fn run(settings: LaneSettings, control: Arc<LaneControl>, wakers: Wakers) {
    let mut conn: Option<Client> = None;
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    while !control.stopping() {
        control.progress.beat_claimer();
        control.progress.beat_writer();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match db::connect(&settings.database_url) {
                Ok(c) => {
                    if std::mem::take(&mut lost) {
                        log::warn!("routing lane: reconnected to the database; carrying on");
                    }
                    backoff = Duration::from_millis(100);
                    conn.insert(c)
                }
                Err(e) => {
                    lost = true;
                    log::warn!("routing lane: database unavailable ({}); retrying", e.message);
                    control.wait(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
        };
        match step(c, &settings, &control, &wakers) {
            Ok(0) if settings.drain.is_some() => break,
            Ok(0) => control.wait(settings.idle_poll),
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::DatabaseUnavailable => {
                log::warn!("routing lane: lost the database ({}); reconnecting", e.message);
                conn = None;
                lost = true;
            }
            Err(e) => {
                log::error!("routing lane: {}", e.message);
                conn = None;
                control.wait(Duration::from_secs(1));
            }
        }
    }
}

/// Route one batch; returns how many orders it took.
fn step(c: &mut Client, settings: &LaneSettings, control: &LaneControl, wakers: &Wakers) -> Result<usize> {
    let q = claims::LaneQuery { lane: 0, tenant: settings.tenant, due_by: None };
    let started = std::time::Instant::now();
    let mut tx = c.transaction()?;
    let rows = claims::lock_due(&mut tx, q, BATCH, BATCH)?;
    if rows.is_empty() {
        tx.commit()?;
        return Ok(0);
    }
    let writes = route_rows(&mut tx, &rows, false, None)?;
    tx.commit()?;
    crate::metrics::get().observe_claim("routing", started.elapsed());
    let finished: Vec<(i64, &'static str)> =
        rows.iter().zip(&writes).filter_map(|(row, w)| Some((row.tenant_id, w.transition.final_status()?.as_str()))).collect();
    super::count_finished(c, &finished);
    control.progress.claimed.fetch_add(rows.len() as u64, Ordering::Relaxed);
    control.progress.written.fetch_add(writes.len() as u64, Ordering::Relaxed);
    for lane in writes.iter().filter_map(|w| w.transition.lane).filter(|l| *l != 0) {
        wakers.wake(lane);
    }
    Ok(rows.len())
}
