//! The routing lane (lane 0): the work that needs no HTTP. New orders whose package routing
//! names no provider lane at insert (manual mode, code stock, forwarding to another tenant, an
//! operator's re-dispatch, routing that cannot be followed) are decided here and handed to a
//! provider's lane, delivered from our own stock, forwarded (the other tenant's order created in
//! the same transaction), left for an operator, or flagged. Forwarding is database work only, so
//! it lives here and never waits behind, or holds up, a provider's calls.

use super::{Connection, Failures, LaneControl, LaneSettings, Wakers};
use crate::db::claims;
use crate::db::Client;
use crate::dispatch::route::route_rows;
use crate::error::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Orders routed per transaction, at most.
const BATCH: i64 = 200;

pub fn run(settings: LaneSettings, control: Arc<LaneControl>, wakers: Wakers) {
    let mut conn: Option<Client> = None;
    let mut failures = Failures::default();
    // Where the claims start reading the due indexes (why: `claims::ClaimFloor`).
    let mut floor = claims::ClaimFloor::default();
    let draining = settings.drain.is_some();
    while !control.stopping() {
        if failures.may_beat() {
            control.progress.beat_claimer();
            control.progress.beat_writer();
        }
        let c = match failures.connection(&mut conn, &settings.database_url, "routing lane", &control, draining) {
            Connection::Ready(c) => c,
            Connection::Again => continue,
            Connection::GiveUp => break,
        };
        match step(c, &mut floor, &settings, &control, &wakers) {
            Ok(n) => {
                failures.ok();
                if n == 0 && draining {
                    break;
                }
                if n == 0 {
                    control.wait(settings.idle_poll);
                }
            }
            Err(e) => {
                // A new connection for the next try.
                conn = None;
                if !failures.retry("routing lane", &control, e, draining) {
                    break;
                }
            }
        }
    }
}

/// Route one batch; returns how many orders it took.
fn step(
    c: &mut Client,
    floor: &mut claims::ClaimFloor,
    settings: &LaneSettings,
    control: &LaneControl,
    wakers: &Wakers,
) -> Result<usize> {
    if let Some(at) = control.take_due_from() {
        floor.lower(at);
    }
    let q = floor.bound(claims::LaneQuery::whole(0, settings.tenant, None));
    let started = std::time::Instant::now();
    let mut tx = c.transaction()?;
    let rows = claims::lock_due(&mut tx, q, BATCH, BATCH)?;
    floor.found(claims::db_now(&mut tx)?, true, true, &rows);
    if rows.is_empty() {
        tx.commit()?;
        return Ok(0);
    }
    let writes = route_rows(&mut tx, &rows, false, None)?;
    tx.commit()?;
    crate::metrics::get().observe_claim("routing", started.elapsed());
    control.progress.claimed.fetch_add(rows.len() as u64, Ordering::Relaxed);
    control.progress.written.fetch_add(writes.len() as u64, Ordering::Relaxed);
    for lane in writes.iter().filter_map(|w| w.transition.lane).filter(|l| *l != 0) {
        wakers.wake(lane);
    }
    Ok(rows.len())
}
