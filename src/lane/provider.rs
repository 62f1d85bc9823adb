//! One provider's lane: claim → call → write back, overlapping. See the module map in
//! `lane/mod.rs`.

use super::permits::HeldPermits;
use super::writer::{Done, Writer};
use super::{Failures, LaneControl, LaneSettings, Outstanding, Slots, Wakers};
use crate::db::Client;
use crate::db::{self, claims};
use crate::dispatch::claim::{claim_rows, CheckJob, PlaceJob};
use crate::dispatch::{place, LaneProvider, Providers};
use crate::domain::provider_health::Pace;
use crate::error::Result;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Condvar;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Claimed jobs waiting for a caller. Placements go first: a claimed placement must start
/// well inside its lease (one that no longer can is not sent at all), while a late check only
/// costs a little freshness.
#[derive(Default)]
struct JobQueue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    cond: Condvar,
}

impl JobQueue {
    fn push(&self, job: Job) {
        let mut g = self.jobs.lock().unwrap();
        match job {
            Job::Place(..) => g.0.push_front(job),
            Job::Check(..) => g.0.push_back(job),
        }
        self.cond.notify_one();
    }
    /// The next job; None once closed and empty.
    fn pop(&self) -> Option<Job> {
        let mut g = self.jobs.lock().unwrap();
        loop {
            if let Some(j) = g.0.pop_front() {
                return Some(j);
            }
            if g.1 {
                return None;
            }
            g = self.cond.wait(g).unwrap();
        }
    }
    fn close(&self) {
        self.jobs.lock().unwrap().1 = true;
        self.cond.notify_all();
    }
}

/// One unit of calling: a placement, or a batch of checks (one request where the protocol has
/// a batch call).
enum Job {
    Place(Arc<LaneProvider>, Box<PlaceJob>),
    Check(Arc<LaneProvider>, Vec<CheckJob>),
}

/// Run the lane of provider `id` until stopped (or, draining, until its due work is done).
/// Whatever is claimed when it stops is called (for at most `grace`) and written back.
pub fn run(id: i64, providers: Providers, settings: LaneSettings, control: Arc<LaneControl>, wakers: Wakers, grace: Duration) {
    // Claimed jobs whose call has not finished (they bound what the claimer takes on), and
    // claimed jobs whose result is not written yet (a stop or a drain waits for these).
    let queued = Arc::new(Outstanding::default());
    let outstanding = Arc::new(Outstanding::default());
    let call_time = Arc::new(CallTime::new(settings.timing.request_timeout));
    let slots = Arc::new(Slots::default());
    let jobs = Arc::new(JobQueue::default());
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let give_up_at = Arc::new(Mutex::new(None));
    // Checks a write-back claimed go to the callers like the claimer's (and count like them).
    let follow_up: Option<super::writer::FollowUp> = if settings.drain.is_some() {
        None
    } else {
        let (jobs, queued, outstanding) = (jobs.clone(), queued.clone(), outstanding.clone());
        Some(Box::new(move |lp: Arc<LaneProvider>, checks: Vec<CheckJob>| {
            let batch = lp.batch_limit();
            let claimed: Vec<Job> = batches(checks, batch).into_iter().map(|b| Job::Check(lp.clone(), b)).collect();
            outstanding.add(claimed.len());
            queued.add(claimed.len());
            for j in claimed {
                jobs.push(j);
            }
        }))
    };
    let refused_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let unsent_at_stop = Arc::new(AtomicU64::new(0));
    let careful = Arc::new(CarefulPace::default());
    let writer = Writer {
        settings: settings.clone(),
        follow_up,
        lane: id,
        control: control.clone(),
        outstanding: outstanding.clone(),
        wakers,
        give_up_at: give_up_at.clone(),
    };
    let writer = std::thread::Builder::new().name(format!("lane-{id}-writer")).spawn(move || writer.run(done_rx)).ok();
    for slot in 0..settings.capacity {
        let caller = Caller {
            slot,
            jobs: jobs.clone(),
            done: done_tx.clone(),
            slots: slots.clone(),
            control: control.clone(),
            timing: settings.timing,
            queued: queued.clone(),
            call_time: call_time.clone(),
            refused_at: refused_at.clone(),
            unsent_at_stop: unsent_at_stop.clone(),
            careful: careful.clone(),
        };
        let _ = std::thread::Builder::new().name(format!("lane-{id}-call-{slot}")).spawn(move || caller.run());
    }
    drop(done_tx);

    let mut claimer = Claimer {
        id,
        providers,
        settings,
        control: control.clone(),
        outstanding: outstanding.clone(),
        queued,
        slots,
        jobs,
        session: None,
        call_time,
        careful,
        floor: claims::ClaimFloor::default(),
        room: 1,
    };
    claimer.run();

    // Stopped: nothing new is claimed. Calls in flight get the grace to come back; what does
    // not is left to reconciliation (its order comes due again after its lease).
    let deadline = Instant::now() + grace;
    while outstanding.get() > 0 && Instant::now() < deadline {
        control.progress.beat_claimer();
        outstanding.wait_below(1, Duration::from_millis(100));
    }
    if outstanding.get() > 0 {
        log::warn!(
            "lane {id}: {} call(s) still in flight after the grace; their orders are reconciled after their lease",
            outstanding.get()
        );
    }
    let unsent = unsent_at_stop.load(Ordering::Relaxed);
    if unsent > 0 {
        log::info!("lane {id}: {unsent} claimed placement(s) not sent yet handed back (due again at once for any daemon)");
    }
    claimer.finish();
    *give_up_at.lock().unwrap() = Some(Instant::now());
    if let Some(w) = writer {
        let _ = w.join();
    }
}

struct Claimer {
    id: i64,
    providers: Providers,
    settings: LaneSettings,
    control: Arc<LaneControl>,
    outstanding: Arc<Outstanding>,
    queued: Arc<Outstanding>,
    slots: Arc<Slots>,
    jobs: Arc<JobQueue>,
    session: Option<Session>,
    /// The calls' recent duration (µs, a moving average kept by the callers).
    call_time: Arc<CallTime>,
    careful: Arc<CarefulPace>,
    /// Where this lane's claims start reading the due indexes (why: `claims::ClaimFloor`).
    floor: claims::ClaimFloor,
    /// How many claimed calls may wait for a caller, as the latest claim step judged it.
    room: usize,
}

/// What this lane knows of its provider's placement pace (`domain::provider_health::pace`):
/// the claimer's latest reading from the database, and a reply below the cushion that one of
/// this lane's callers saw before the database has it. Placements claimed while the pace was
/// free are not sent once it is careful (they are claimed again, one at a time).
#[derive(Default)]
struct CarefulPace {
    /// The claimer's latest reading: one placement at a time (and why).
    careful: Mutex<Option<String>>,
    /// The balance below which a reply makes placements careful.
    cushion: Mutex<Option<rust_decimal::Decimal>>,
    /// When a caller last saw a reply whose balance was below the cushion.
    low_seen: Mutex<Option<Instant>>,
}

impl CarefulPace {
    /// Placements go one at a time now, as far as this process knows.
    fn is_careful(&self) -> bool {
        self.careful.lock().unwrap().is_some()
            || self.low_seen.lock().unwrap().map(|t| t.elapsed() < REFUSAL_SETTLES).unwrap_or(false)
    }

    /// The claimer's reading; says so in the log when the pace changes.
    fn read(&self, lane: i64, name: &str, pace: Pace, cushion: Option<rust_decimal::Decimal>) {
        *self.cushion.lock().unwrap() = cushion;
        let now = match pace {
            Pace::Free => None,
            Pace::OneAtATime(why) => Some(why),
        };
        let mut was = self.careful.lock().unwrap();
        match (&*was, &now) {
            (None, Some(why)) => log::info!("lane {lane}: placements to {name} go one at a time across every daemon: {why}"),
            (Some(_), None) => log::info!("lane {lane}: placements to {name} go out freely again"),
            _ => {}
        }
        *was = now;
    }

    /// A placement's answer: a balance below the cushion makes this lane careful at once.
    fn saw(&self, outcome: &crate::provider::PlacementOutcome) {
        let Some(balance) = crate::domain::provider_health::balance_in_reply(outcome) else { return };
        if crate::domain::provider_health::below_cushion(balance, *self.cushion.lock().unwrap()) {
            *self.low_seen.lock().unwrap() = Some(Instant::now());
        }
    }
}

/// The claimer's connection and the permits held through it.
struct Session {
    client: Client,
    permits: HeldPermits,
}

enum Step {
    /// Claimed as much as there was room for: there may be more.
    More,
    /// Nothing due (or no permit free anywhere).
    Idle,
    /// As much work claimed as the held permits can keep busy.
    Full,
}

impl Claimer {
    fn run(&mut self) {
        let mut failures = Failures::default();
        let draining = self.settings.drain.is_some();
        while !self.control.stopping() {
            if failures.may_beat() {
                self.control.progress.beat_claimer();
            }
            if self.session.is_none() {
                match db::connect(&self.settings.database_url) {
                    Ok(client) => {
                        if failures.after_outage() {
                            log::warn!("lane {}: reconnected to the database; carrying on", self.id);
                        }
                        let permits = HeldPermits::new(self.id, &self.settings.holder, self.settings.timing.lease);
                        self.session = Some(Session { client, permits });
                    }
                    Err(e) => {
                        if !failures.retry(&format!("lane {}", self.id), &self.control, e, draining) {
                            break;
                        }
                        continue;
                    }
                }
            }
            let before = self.outstanding.get();
            match self.step() {
                Ok(step) => {
                    failures.ok();
                    match step {
                        Step::More => {}
                        Step::Idle => {
                            // A drain ends when a look found nothing while nothing was under way.
                            if draining && before == 0 && self.outstanding.get() == 0 {
                                break;
                            }
                            self.control.wait(if before > 0 { Duration::from_millis(20) } else { self.settings.idle_poll });
                        }
                        Step::Full => {
                            let room = self.room;
                            if self.queued.get() >= room {
                                self.queued.wait_below(room, Duration::from_millis(200));
                            } else {
                                self.outstanding.wait_below(4 * self.settings.write_batch.max(room), Duration::from_millis(200));
                            }
                        }
                    }
                }
                Err(e) => {
                    // A new connection (and a new look at the permits) for the next try.
                    self.session = None;
                    if !failures.retry(&format!("lane {}", self.id), &self.control, e, draining) {
                        break;
                    }
                }
            }
        }
    }

    fn step(&mut self) -> Result<Step> {
        let depth = self.depth();
        let s = self.session.as_mut().expect("connected above");
        let lp = Arc::new(self.providers.get(&mut s.client, self.id)?);
        s.permits.keep(&mut s.client)?;
        let capacity = self.settings.capacity;
        let q = claims::LaneQuery::whole(self.id, self.settings.tenant, self.settings.drain);
        // Work committed below the floor, as its wake-up said (before the probe below).
        if let Some(at) = self.control.take_due_from() {
            self.floor.lower(at);
        }
        if s.permits.held() == 0 {
            // No permit: only ask for them when there is work.
            if !claims::any_due(&mut s.client, &mut self.floor, q)? || s.permits.grow(&mut s.client, capacity)? == 0 {
                return Ok(Step::Idle);
            }
        } else if self.slots.in_use() >= s.permits.held() && s.permits.held() < capacity {
            // Every slot busy: ask for more, up to this lane's capacity.
            s.permits.grow(&mut s.client, capacity)?;
        }
        self.slots.set_limit(s.permits.held());
        // A rate limit bounds what is worth holding: the calls it allows in CLAIMED_AHEAD (more
        // would wait for their turn, claimed and unavailable to every other process).
        let room = (s.permits.held() * depth).min(lp.calls_allowed_in(CLAIMED_AHEAD).unwrap_or(usize::MAX));
        self.room = room.max(1);
        let queued = self.queued.get();
        // Results the writer has not written yet hold memory and leases: never more than a few
        // of its batches (the writer sets the pace when the database is the slower side).
        if queued >= room || self.outstanding.get() >= 4 * self.settings.write_batch.max(room) {
            return Ok(Step::Full);
        }
        let free = room - queued;
        let batch = lp.batch_limit();
        // An open breaker: at most one call per interval to this provider from every daemon
        // together (placements are held back by the claim's gate, without a call).
        let allowed_checks = match db::provider_health::allowance(&mut s.client, self.id, false)? {
            db::provider_health::Allowance::Free => usize::MAX,
            db::provider_health::Allowance::One { .. } => 1,
            db::provider_health::Allowance::None => 0,
        };
        // Careful placements: one at a time across every process, under the provider's careful
        // permit, taken in the claim's transaction only when a placement is due. Checks keep
        // their concurrency.
        let (pace, cushion) = db::provider_health::placement_pace(&mut s.client, self.id)?;
        self.careful.read(self.id, &lp.name, pace, cushion);
        let careful = self.careful.is_careful();
        let claiming = Instant::now();
        let q = self.floor.bound(q);
        let mut tx = s.client.transaction()?;
        let mut rows = claims::lock_due(&mut tx, q, if careful { 1 } else { free as i64 }, 0)?;
        let careful_permit = if careful && !rows.is_empty() {
            db::permits::acquire_careful(&mut tx, self.id, &self.settings.holder, self.settings.timing.lease)?
        } else {
            None
        };
        // Another careful placement is under way (here or elsewhere): the row stays due, and
        // the placements' floor stays where it is (moved past the row, the next claim would not
        // see it until the next whole-index read: a second per careful placement).
        let placement_waits = careful && careful_permit.is_none() && !rows.is_empty();
        if placement_waits {
            rows.clear();
        }
        let checks = ((free - rows.len().min(free)) * batch).min(allowed_checks);
        let checked = claims::lock_and_claim_checks(&mut tx, q, checks as i64, self.settings.timing.lease)?;
        self.floor.found(claims::db_now(&mut tx)?, free > 0 && !placement_waits, checks > 0, rows.iter().chain(&checked));
        if rows.is_empty() && checked.is_empty() {
            tx.commit()?;
            s.permits.release_if_idle(&mut s.client, self.outstanding.get())?;
            self.slots.set_limit(s.permits.held());
            return Ok(Step::Idle);
        }
        let n = rows.len() + checked.len();
        let mut claimed = claim_rows(&mut tx, &lp, rows, checked, self.settings.timing)?;
        if let Some(own) = careful_permit {
            match claimed.places.first_mut() {
                // Recording its answer gives the permit back (`dispatch::record::placed`).
                Some(p) => p.careful = Some(own),
                // Decided without a call (a fallback, a wait): nothing to wait for.
                None => db::permits::release_careful(&mut tx, self.id, &own)?,
            }
        }
        tx.commit()?;
        crate::metrics::get().observe_provider_claim(&lp.tenant, &lp.name, claiming.elapsed());
        log::debug!("lane {}: claimed {n} order(s) in {} ms", self.id, claiming.elapsed().as_millis());
        self.control.progress.claimed.fetch_add(n as u64, Ordering::Relaxed);
        let mut jobs: Vec<Job> = claimed.places.into_iter().map(|p| Job::Place(lp.clone(), Box::new(p))).collect();
        jobs.extend(batches(claimed.checks, batch).into_iter().map(|b| Job::Check(lp.clone(), b)));
        self.outstanding.add(jobs.len());
        self.queued.add(jobs.len());
        for j in jobs {
            self.jobs.push(j);
        }
        Ok(if n >= free { Step::More } else { Step::Idle })
    }

    /// How many calls per permit may wait claimed: enough that callers never wait for the
    /// claimer (a fast provider answers a queue of them in milliseconds), and few enough that a
    /// claimed call starts well inside its lease and within [`CLAIMED_AHEAD`] (a slow provider
    /// gets two per permit: one in flight, one next). From the calls' recent duration, which
    /// includes the wait for the provider's rate limit: a lane paced at 20/s claims about two
    /// seconds of placements, not a quarter of its lease (300 at 16 permits, 15 s of sending).
    fn depth(&self) -> usize {
        let call = self.call_time.micros().max(1) as u128;
        let budget = (self.settings.timing.lease / 4).min(CLAIMED_AHEAD).as_micros();
        (budget / call).clamp(2, 64) as usize
    }

    /// Give the permits back and let the callers go.
    fn finish(&mut self) {
        if let Some(s) = self.session.as_mut() {
            if let Err(e) = s.permits.release(&mut s.client) {
                log::debug!("lane {}: permits not released ({}); they lapse by themselves", self.id, e.message);
            }
        }
        self.jobs.close();
    }
}

/// How long a lane's calls take (µs), for how much work it claims ahead: a whole request
/// timeout until the first call comes back (cautious: a provider may be slow), then the mean of
/// the calls so far, and from the eighth on a moving average (1/8 per call). Starting the
/// average at the timeout instead took about fifty calls to reach a fast provider's
/// milliseconds, claiming two calls per permit at a time meanwhile: a tenth of a second of
/// small claims after every start.
struct CallTime {
    micros: AtomicU64,
    seen: AtomicU64,
}

impl CallTime {
    fn new(until_the_first: Duration) -> CallTime {
        CallTime { micros: AtomicU64::new(until_the_first.as_micros() as u64), seen: AtomicU64::new(0) }
    }
    fn micros(&self) -> u64 {
        self.micros.load(Ordering::Relaxed)
    }
    /// A call that took `took` µs (callers race here; an estimate needs no more).
    fn observe(&self, took: u64) {
        let weight = (self.seen.fetch_add(1, Ordering::Relaxed) + 1).min(8);
        let avg = self.micros();
        self.micros.store(avg - avg / weight + took / weight, Ordering::Relaxed);
    }
}

/// `items` in batches of at most `size`, each its own right-sized Vec (splitting one Vec kept
/// its whole capacity in every batch: memory and copying that grew with the square of a claim).
fn batches<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut items = items.into_iter().peekable();
    let mut out = Vec::new();
    while items.peek().is_some() {
        out.push(items.by_ref().take(size.max(1)).collect());
    }
    out
}

/// A caller: takes a job, waits for a permit slot, makes the call, hands the answer to the writer.
struct Caller {
    slot: usize,
    jobs: Arc<JobQueue>,
    done: Sender<Done>,
    slots: Arc<Slots>,
    control: Arc<LaneControl>,
    timing: crate::dispatch::Timing,
    queued: Arc<Outstanding>,
    call_time: Arc<CallTime>,
    /// When a placement of this lane was refused for a reason that describes the provider (no
    /// balance, maintenance): placements claimed before the refusal reached the database are
    /// not sent (at most one such refusal per daemon).
    refused_at: Arc<Mutex<Option<Instant>>>,
    careful: Arc<CarefulPace>,
    /// Placements handed back unsent because the lane was stopping (logged at the end).
    unsent_at_stop: Arc<AtomicU64>,
}

/// At most about this much work per permit is claimed ahead of the calls: what a lane holds
/// claimed is unavailable to every other process, and a stop hands back what it has not sent.
const CLAIMED_AHEAD: Duration = Duration::from_secs(2);

/// How long after such a refusal claimed placements are held back here; by then the writer
/// has recorded the cause and every claim's gate sees it.
const REFUSAL_SETTLES: Duration = Duration::from_secs(2);

impl Caller {
    /// A placement claimed before (or just after) the provider said it cannot take orders.
    fn refused_before(&self, job: &Job) -> Option<Job> {
        let Job::Place(lp, p) = job else { return None };
        let at = (*self.refused_at.lock().unwrap())?;
        (p.claimed <= at + REFUSAL_SETTLES).then(|| Job::Place(lp.clone(), p.clone()))
    }

    /// A placement claimed while placements went out freely, now that they go one at a time:
    /// not sent; claimed again under the careful permit.
    fn deferred(&self, job: &Job) -> Option<Done> {
        let Job::Place(lp, p) = job else { return None };
        if p.careful.is_some() || !self.careful.is_careful() {
            return None;
        }
        Some(not_sent_yet(lp, p, format!("placements to {} go one at a time now (its balance is low)", lp.name)))
    }

    /// A placement not sent yet when the lane stops: handed back, due again at once for any
    /// process, rather than sent during the shutdown grace. The order is then not held by a
    /// process that is going away (until its lease lapses, if the grace runs out), and a stop
    /// is not drawn out by the provider's rate limit. No call was made, so nothing is spent.
    fn handed_back(&self, job: &Job) -> Option<Done> {
        let Job::Place(lp, p) = job else { return None };
        if !self.control.stopping() {
            return None;
        }
        Some(not_sent_yet(lp, p, "the daemon was stopping before it sent it (handed back for any daemon)".into()))
    }

    fn run(self) {
        while let Some(job) = self.jobs.pop() {
            // Handed back without waiting for a slot: calls in flight may hold them all.
            if let Some(done) = self.handed_back(&job) {
                self.unsent_at_stop.fetch_add(1, Ordering::Relaxed);
                self.queued.done(1);
                if self.done.send(done).is_err() {
                    return;
                }
                continue;
            }
            while !self.slots.take(Duration::from_millis(500)) {}
            self.control.progress.call_started(self.slot);
            let started = Instant::now();
            let mut result = match self.refused_before(&job) {
                Some(Job::Place(lp, p)) => Done::Placed(
                    lp.clone(),
                    Box::new(place::Placed {
                        job: *p,
                        sent: place::Sent::HeldBack(format!(
                            "not sent: {} has just refused another order for a reason that describes the provider",
                            lp.name
                        )),
                        took: Duration::ZERO,
                        first_check: None,
                    }),
                ),
                _ => match self.deferred(&job) {
                    Some(done) => done,
                    None => call(job, self.timing),
                },
            };
            if let Done::Placed(_, p) = &result {
                if let place::Sent::Answered(outcome) = &p.sent {
                    self.careful.saw(outcome);
                }
                if let place::Sent::Answered(crate::provider::PlacementOutcome::Rejected { message }) = &p.sent {
                    if crate::domain::provider_health::provider_cause(message).is_some() {
                        *self.refused_at.lock().unwrap() = Some(Instant::now());
                    }
                }
            }
            if let Done::Placed(lp, placed) = &mut result {
                if let Ok(a) = &lp.adapter {
                    // A call of its own for the health check: each request stays within its timeout.
                    self.control.progress.call_started(self.slot);
                    place::first_check_at_once(placed, a.as_ref(), lp.policy.first_check, self.timing);
                }
            }
            observe(&result);
            let took = started.elapsed().as_micros() as u64;
            self.call_time.observe(took);
            self.control.progress.calls_made.fetch_add(1, Ordering::Relaxed);
            self.control.progress.call_ended(self.slot);
            self.slots.give();
            self.queued.done(1);
            if self.done.send(result).is_err() {
                return;
            }
        }
    }
}

/// A claimed placement not sent, due again at once without spending its budget.
fn not_sent_yet(lp: &Arc<LaneProvider>, p: &PlaceJob, why: String) -> Done {
    let placed = place::Placed { job: p.clone(), sent: place::Sent::Deferred(why), took: Duration::ZERO, first_check: None };
    Done::Placed(lp.clone(), Box::new(placed))
}

/// One job's call(s), and what came of them.
fn call(job: Job, timing: crate::dispatch::Timing) -> Done {
    match job {
        Job::Place(lp, p) => match &lp.adapter {
            Ok(a) => Done::Placed(lp.clone(), Box::new(place::placement(*p, a.as_ref(), timing))),
            // Claims never place with an unusable adapter; a provider changed since the claim.
            Err(why) => Done::Placed(
                lp.clone(),
                Box::new(place::Placed {
                    job: *p,
                    sent: place::Sent::NotSent(format!("provider unusable: {why}")),
                    took: Duration::ZERO,
                    first_check: None,
                }),
            ),
        },
        Job::Check(lp, c) => match &lp.adapter {
            Ok(a) => Done::Checked(lp.clone(), place::checks(c, a.as_ref())),
            Err(why) => {
                let answer = crate::provider::CheckAnswer {
                    outcome: crate::provider::CheckOutcome::failed(format!("provider unusable: {why}")),
                    external_order_id: None,
                };
                let checked = c.into_iter().map(|job| place::Checked { job, answer: answer.clone(), took: Duration::ZERO });
                Done::Checked(lp.clone(), checked.collect())
            }
        },
    }
}

/// A provider call in the metrics: its outcome and how long it took. A placement that was not
/// sent made no call; one that got no turn under the rate limit is counted apart.
fn observe(done: &Done) {
    use crate::provider::{CheckOutcome, PlacementOutcome};
    let m = crate::metrics::get();
    match done {
        Done::Placed(lp, p) => {
            let outcome = match &p.sent {
                place::Sent::Answered(outcome) => outcome,
                place::Sent::NoTurn(_) => return m.count_not_sent(&lp.tenant, &lp.name, "place"),
                _ => return,
            };
            let word = match outcome {
                PlacementOutcome::Accepted { .. } => "accepted",
                PlacementOutcome::Rejected { .. } => "rejected",
                PlacementOutcome::SentBefore { .. } => "sent_before",
                PlacementOutcome::Ambiguous { .. } => "ambiguous",
                // `place::placement` turns this into `Sent::NoTurn`.
                PlacementOutcome::NotSent { .. } => return,
            };
            m.observe_call(&lp.tenant, &lp.name, "place", word, p.took);
            match p.first_check.as_ref() {
                Some((answer, _)) if matches!(answer.outcome, CheckOutcome::NotAsked { .. }) => {
                    m.count_not_sent(&lp.tenant, &lp.name, "check")
                }
                Some((answer, took)) => m.observe_call(&lp.tenant, &lp.name, "check", check_word([&answer.outcome]), *took),
                None => {}
            }
        }
        // One request checks the whole batch: it failed when no order got an answer from it.
        Done::Checked(lp, checks) => {
            let Some(first) = checks.first() else { return };
            if !crate::domain::provider_health::check_made(checks.iter().map(|c| &c.answer.outcome)) {
                return m.count_not_sent(&lp.tenant, &lp.name, "check");
            }
            m.observe_call(&lp.tenant, &lp.name, "check", check_word(checks.iter().map(|c| &c.answer.outcome)), first.took);
        }
    }
}

/// How a check call that was made is counted: answered when any order got news from it.
fn check_word<'a>(outcomes: impl IntoIterator<Item = &'a crate::provider::CheckOutcome>) -> &'static str {
    if outcomes.into_iter().any(|o| !matches!(o, crate::provider::CheckOutcome::NoNews { .. })) {
        "answered"
    } else {
        "no_news"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_batches_hold_only_their_own_items() {
        let b = batches((0..2000).collect::<Vec<u32>>(), 1);
        assert_eq!(b.len(), 2000);
        assert!(b.iter().all(|v| v.len() == 1 && v.capacity() <= 4), "a batch of one must not keep the claim's capacity");
        let b = batches((0..650).collect::<Vec<u32>>(), 300);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![300, 300, 50]);
        assert_eq!(b.concat(), (0..650).collect::<Vec<_>>(), "every item once, in order");
        assert!(batches(Vec::<u32>::new(), 10).is_empty());
        assert_eq!(batches(vec![1, 2], 0).len(), 2, "a zero batch size means one per batch");
    }

    #[test]
    fn call_time_is_cautious_until_the_first_call_then_follows_the_calls() {
        let t = CallTime::new(Duration::from_secs(20));
        assert_eq!(t.micros(), 20_000_000, "nothing known: a whole request timeout");
        t.observe(1_000);
        assert_eq!(t.micros(), 1_000, "the first call replaces the guess");
        t.observe(3_000);
        assert_eq!(t.micros(), 2_000, "then the mean of the calls so far");
        for _ in 0..100 {
            t.observe(100_000);
        }
        assert!((99_000..=100_000).contains(&t.micros()), "a provider that slows down is followed: {}", t.micros());
        // From the eighth call on, one slow call moves the estimate by an eighth.
        let before = t.micros();
        t.observe(900_000);
        assert_eq!(t.micros(), before - before / 8 + 112_500);
    }

    #[test]
    fn placements_go_before_checks_and_a_closed_queue_ends_its_callers() {
        let lp = Arc::new(LaneProvider {
            id: 1,
            tenant: "t".into(),
            name: "p".into(),
            kind: crate::provider::ProviderKind::of(&crate::provider::znet::KIND),
            enabled: true,
            adapter: Err("not needed".into()),
            policy: Default::default(),
            reconcile_for: Duration::from_secs(600),
        });
        let q = JobQueue::default();
        q.push(Job::Check(lp.clone(), vec![]));
        q.push(Job::Check(lp.clone(), vec![]));
        let row = crate::db::claims::tests::due_row(crate::domain::lifecycle::tests::facts(), None);
        let place = PlaceJob {
            row,
            lease: 1,
            request: crate::provider::PlacementRequest {
                reference: "1".into(),
                player: String::new(),
                extra: String::new(),
                quantity: 1,
                mapping: serde_json::json!({}),
            },
            claimed: std::time::Instant::now(),
            steps: vec![],
            resent: false,
            careful: None,
        };
        q.push(Job::Place(lp, Box::new(place)));
        assert!(matches!(q.pop(), Some(Job::Place(..))), "the placement first");
        assert!(matches!(q.pop(), Some(Job::Check(..))));
        q.close();
        assert!(matches!(q.pop(), Some(Job::Check(..))), "what was queued is still handed out");
        assert!(q.pop().is_none());
    }
}
