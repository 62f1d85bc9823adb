//! A provider lane's writer: results come in from the callers and go to the database in
//! batches — as soon as `write_batch` have arrived, or `write_delay` after the first, whichever
//! comes first — each result guarded by the lease its work was claimed with. One value the
//! database refuses flags its own order and never blocks the others (`apply_isolated_then`).

use super::{LaneControl, LaneSettings, Outstanding, Wakers};
use crate::db;
use crate::db::transitions::{self, Write};
use crate::db::Client;
use crate::dispatch::claim::CheckJob;
use crate::dispatch::place::{Checked, Placed};
use crate::dispatch::{record, LaneProvider};
use crate::domain::lifecycle::Schedule;
use crate::domain::provider_health::{check_failed, check_made};
use crate::error::{ErrorKind, Result};
use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a caller hands to the writer.
pub enum Done {
    Placed(Arc<LaneProvider>, Box<Placed>),
    Checked(Arc<LaneProvider>, Vec<Checked>),
}

/// Tries of one batch of a drain (`orderctl sweep`) when the connection is lost; after that
/// its results are dropped and the orders come due again after their lease (placements are
/// then reconciled, never resent blindly).
const TRIES: u32 = 4;

/// How long a daemon's writer keeps a batch for a database it cannot reach. Written when the
/// database answers again, each result still guarded by its lease: saved when nobody claimed
/// the order meanwhile (a provider answer is not thrown away for a short outage), refused when
/// another worker took it over after the lease lapsed (that worker reconciles it with the
/// provider). Past this the results are dropped, as a drain's are after `TRIES`.
const HOLD_FOR: Duration = Duration::from_secs(600);

/// The longest pause between two tries of a batch.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Hands checks the writer claimed to the lane's callers (see `Writer::follow_up`).
pub type FollowUp = Box<dyn Fn(Arc<LaneProvider>, Vec<CheckJob>) + Send>;

pub struct Writer {
    pub settings: LaneSettings,
    /// Where checks claimed in a write-back go (None: a drain, whose pass never loops over its
    /// own work). A result that makes its order's next check due at once (a placement accepted
    /// under `--first-check 0s`) is written in the same transaction as that check's claim: one
    /// write transaction instead of two for the step.
    pub follow_up: Option<FollowUp>,
    pub lane: i64,
    pub control: Arc<LaneControl>,
    pub outstanding: Arc<Outstanding>,
    pub wakers: Wakers,
    /// After this moment (a shutdown's grace), the writer stops waiting for late results.
    pub give_up_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Writer {
    pub fn run(self, rx: Receiver<Done>) {
        let mut conn: Option<Client> = None;
        loop {
            self.control.progress.beat_writer();
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(d) => d,
                Err(RecvTimeoutError::Timeout) => {
                    if self.give_up_at.lock().unwrap().map(|t| Instant::now() >= t).unwrap_or(false) {
                        break;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            let deadline = Instant::now() + self.settings.write_delay;
            while batch.iter().map(size).sum::<usize>() < self.settings.write_batch {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            let jobs = batch.len();
            if let Err(e) = self.write(&mut conn, batch) {
                log::error!(
                    "lane {}: {} result(s) not written ({}); their orders come due again after their lease",
                    self.lane,
                    jobs,
                    e.message
                );
            }
            self.outstanding.done(jobs);
        }
    }

    fn write(&self, conn: &mut Option<Client>, batch: Vec<Done>) -> Result<()> {
        let mut last = None;
        let first_failure = Instant::now();
        for attempt in 0.. {
            if attempt > 0 {
                if !self.may_try_again(attempt, first_failure) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200u64 << attempt.min(4)).min(MAX_PAUSE));
            }
            let c = match conn {
                Some(c) => c,
                None => match db::connect(&self.settings.database_url) {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
            };
            match self.write_once(c, &batch) {
                Ok(()) => {
                    if attempt > 0 {
                        log::warn!("lane {}: database reachable again; results held through the outage written", self.lane);
                    }
                    return Ok(());
                }
                Err(e) if e.kind == ErrorKind::DatabaseUnavailable => {
                    *conn = None;
                    last = Some(e);
                }
                // An operator finished one of the batch's orders as it was written (its row moved
                // to the month's partition): written again, that order's write finds its lease
                // moved on and is dropped, the others go through.
                Err(e) if e.moved_concurrently() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| crate::error::Error::internal("no attempt made")))
    }

    /// Another try of a batch the database did not take: a drain gives up after `TRIES`, a
    /// daemon holds it for `HOLD_FOR` (and past a stop's grace, not at all).
    fn may_try_again(&self, attempt: u32, first_failure: Instant) -> bool {
        if self.settings.drain.is_some() {
            return attempt < TRIES;
        }
        if self.give_up_at.lock().unwrap().map(|t| Instant::now() >= t).unwrap_or(false) {
            return false;
        }
        self.control.progress.beat_writer();
        first_failure.elapsed() < HOLD_FOR
    }

    fn write_once(&self, c: &mut Client, batch: &[Done]) -> Result<()> {
        let started = Instant::now();
        let mut writes = Vec::new();
        let lp = match batch.first() {
            Some(Done::Placed(lp, _) | Done::Checked(lp, _)) => lp.clone(),
            None => return Ok(()),
        };
        self.write_provider_facts(c, &lp, batch)?;
        for d in batch {
            match d {
                Done::Placed(lp, p) => writes.push(record::placed(c, lp, p)?),
                Done::Checked(lp, cs) => writes.extend(cs.iter().map(|x| record::checked(lp, x, rand::random()))),
            }
        }
        let mut written = 0;
        for wave in waves(writes) {
            let (w, (follow, scheduled_at)) = transitions::apply_isolated_then(c, &wave, |tx, applied| {
                let follow = self.claim_follow_up(tx, &lp, &wave, applied)?;
                // Work this transaction made due at once and did not claim itself is scheduled at
                // its start, which a write-back of hundreds of results can put below the claim
                // floor of the lane that takes it (`claims::ClaimFloor`): that lane reads from there.
                let claimed: HashSet<uuid::Uuid> = follow.iter().map(|j| j.row.id).collect();
                let at = if due_now(&wave, applied).any(|w| !claimed.contains(&w.order_id)) {
                    Some(db::claims::db_now(tx)?)
                } else {
                    None
                };
                Ok((follow, at))
            })?;
            if let (Some(hand), false) = (&self.follow_up, follow.is_empty()) {
                hand(lp.clone(), follow);
            }
            written += w.applied.len();
            self.count(&wave, &w.applied, &w.refused);
            self.wake_due(&wave, &w.applied, scheduled_at);
        }
        if batch.iter().any(|d| matches!(d, Done::Placed(_, p) if p.job.careful.is_some())) {
            // A careful placement's answer is recorded and its permit free: the next one may go.
            self.control.wake();
        }
        crate::metrics::get().observe_provider_write(&lp.tenant, &lp.name, started.elapsed());
        log::debug!("lane {}: wrote {written} result(s) in {} ms", self.lane, started.elapsed().as_millis());
        Ok(())
    }

    /// What the batch's answers say about its provider (a lane's batch is one provider's),
    /// written once for the batch and before its transitions: placements' facts (balance,
    /// highest cost, a refusal's cause) and every call's result for the breaker.
    fn write_provider_facts(&self, c: &mut Client, lp: &LaneProvider, batch: &[Done]) -> Result<()> {
        let placed = batch.iter().filter_map(|d| match d {
            Done::Placed(_, p) => Some(p.as_ref()),
            Done::Checked(..) => None,
        });
        record::provider_facts(c, lp, placed)?;
        let check_calls: Vec<bool> = batch
            .iter()
            .filter_map(|d| match d {
                Done::Checked(_, cs) if check_made(cs.iter().map(|x| &x.answer.outcome)) => {
                    Some(check_failed(cs.iter().map(|x| &x.answer.outcome)))
                }
                Done::Checked(..) | Done::Placed(..) => None,
            })
            .collect();
        db::provider_health::after_calls(c, lp.id, &check_calls)
    }

    /// In the write-back's transaction: claim the checks its results made due at once, as the
    /// claimer would (a decision that needs no call is written here too). None while stopping.
    /// Only written orders whose new schedule may be due at once are looked for: asking for the
    /// others read every finished order again (about 2 % of an order's database time).
    fn claim_follow_up(
        &self,
        tx: &mut crate::db::Transaction<'_>,
        lp: &LaneProvider,
        wave: &[Write],
        applied: &[transitions::Applied],
    ) -> Result<Vec<CheckJob>> {
        if self.follow_up.is_none() || self.control.stopping() {
            return Ok(vec![]);
        }
        let written: HashSet<uuid::Uuid> = applied.iter().map(|(id, _)| *id).collect();
        let ids: Vec<uuid::Uuid> = wave
            .iter()
            .filter(|w| written.contains(&w.order_id) && w.transition.schedule.may_be_due_at_once())
            .map(|w| w.order_id)
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let rows = crate::db::claims::claim_checks_due_now(tx, &ids, self.lane, self.settings.timing.lease)?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let claimed = crate::dispatch::claim::claim_rows(tx, lp, vec![], rows, self.settings.timing)?;
        Ok(claimed.checks)
    }

    fn count(&self, wave: &[Write], applied: &[transitions::Applied], refused: &[uuid::Uuid]) {
        use crate::domain::lifecycle::Set;
        use crate::domain::status::OrderStatus;
        use std::sync::atomic::Ordering::Relaxed;
        let p = &self.control.progress;
        let ok: HashSet<_> = applied.iter().map(|(id, _)| *id).collect();
        p.written.fetch_add(applied.len() as u64, Relaxed);
        let stale = wave.len() - applied.len() - refused.len();
        p.stale.fetch_add(stale as u64, Relaxed);
        if stale > 0 {
            log::warn!(
                "lane {}: {stale} late result(s) refused: their lease lapsed and another worker has claimed the order since (it reconciles them)",
                self.lane
            );
        }
        p.flagged.fetch_add(refused.len() as u64, Relaxed);
        for w in wave.iter().filter(|w| ok.contains(&w.order_id)) {
            let t = &w.transition;
            if w.steps.is_empty() { &p.checks } else { &p.placements }.fetch_add(1, Relaxed);
            if t.first.is_some() {
                // A placement's answer and its first check, written as one.
                p.checks.fetch_add(1, Relaxed);
            }
            match t.status {
                Some(OrderStatus::Approved) => p.approved.fetch_add(1, Relaxed),
                Some(OrderStatus::Rejected) => p.rejected.fetch_add(1, Relaxed),
                _ => 0,
            };
            if matches!(t.attention, Set::To(_)) {
                p.flagged.fetch_add(1, Relaxed);
            }
        }
    }

    /// Work made due now goes to its lane at once: this lane's claimer, or another lane's
    /// (a fallback).
    /// `at`: the write transaction's clock, the schedule of that work (None: all of it was
    /// claimed by the write-back itself).
    fn wake_due(&self, wave: &[Write], applied: &[transitions::Applied], at: Option<chrono::DateTime<chrono::Utc>>) {
        let lanes: HashSet<i64> = due_now(wave, applied).map(|w| w.transition.lane.unwrap_or(self.lane)).collect();
        for lane in lanes {
            match (lane == self.lane, at) {
                (true, Some(at)) => self.control.wake_from(at),
                (true, None) => self.control.wake(),
                (false, Some(at)) => self.wakers.wake_from(lane, at),
                (false, None) => self.wakers.wake(lane),
            }
        }
    }
}

/// The written results of `wave` that made their order due at once.
fn due_now<'a>(wave: &'a [Write], applied: &[transitions::Applied]) -> impl Iterator<Item = &'a Write> {
    let ok: HashSet<uuid::Uuid> = applied.iter().map(|(id, _)| *id).collect();
    wave.iter().filter(move |w| ok.contains(&w.order_id) && w.transition.schedule == Schedule::Now)
}

fn size(d: &Done) -> usize {
    match d {
        Done::Placed(..) => 1,
        Done::Checked(_, c) => c.len(),
    }
}

/// Split writes so no order appears twice in one statement (the later result goes after).
pub fn waves(writes: Vec<Write>) -> Vec<Vec<Write>> {
    let mut waves: Vec<(HashSet<uuid::Uuid>, Vec<Write>)> = Vec::new();
    for w in writes {
        match waves.iter_mut().find(|(ids, _)| !ids.contains(&w.order_id)) {
            Some((ids, list)) => {
                ids.insert(w.order_id);
                list.push(w);
            }
            None => waves.push((HashSet::from([w.order_id]), vec![w])),
        }
    }
    waves.into_iter().map(|(_, w)| w).collect()
}
