//! One provider's lane: claim → call → write back, overlapping. See the module map in
//! `lane/mod.rs`.

use super::permits::HeldPermits;
use super::writer::{Done, Writer};
use super::{LaneControl, LaneSettings, Outstanding, Slots, Wakers};
use crate::db::{self, claims};
use crate::dispatch::claim::{claim_for_provider, CheckJob, PlaceJob};
use crate::dispatch::{place, LaneProvider, Providers};
use crate::error::{ErrorKind, Result};
use postgres::Client;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One unit of calling: a placement, or a batch of checks (one request where the protocol has
/// a batch call).
enum Job {
    Place(Arc<LaneProvider>, Box<PlaceJob>),
    Check(Arc<LaneProvider>, Vec<CheckJob>),
}

/// Run the lane of provider `id` until stopped (or, draining, until its due work is done).
/// Whatever is claimed when it stops is called (for at most `grace`) and written back.
pub fn run(id: i64, providers: Providers, settings: LaneSettings, control: Arc<LaneControl>, wakers: Wakers, grace: Duration) {
    let outstanding = Arc::new(Outstanding::default());
    let slots = Arc::new(Slots::default());
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let give_up_at = Arc::new(Mutex::new(None));
    let writer = Writer {
        settings: settings.clone(),
        lane: id,
        control: control.clone(),
        outstanding: outstanding.clone(),
        wakers,
        give_up_at: give_up_at.clone(),
    };
    let writer = std::thread::Builder::new().name(format!("lane-{id}-writer")).spawn(move || writer.run(done_rx)).ok();
    let job_rx = Arc::new(Mutex::new(job_rx));
    for slot in 0..settings.capacity {
        let (rx, tx, slots, control, timing) = (job_rx.clone(), done_tx.clone(), slots.clone(), control.clone(), settings.timing);
        let _ = std::thread::Builder::new()
            .name(format!("lane-{id}-call-{slot}"))
            .spawn(move || call_loop(slot, rx, tx, slots, control, timing));
    }
    drop(done_tx);

    let mut claimer = Claimer {
        id,
        providers,
        settings,
        control: control.clone(),
        outstanding: outstanding.clone(),
        slots,
        jobs: Some(job_tx),
        session: None,
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
    slots: Arc<Slots>,
    jobs: Option<Sender<Job>>,
    session: Option<Session>,
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
        let mut backoff = Duration::from_millis(100);
        let mut lost = false;
        while !self.control.stopping() {
            self.control.progress.beat_claimer();
            if self.session.is_none() {
                match db::connect(&self.settings.database_url) {
                    Ok(client) => {
                        if std::mem::take(&mut lost) {
                            log::warn!("lane {}: reconnected to the database; carrying on", self.id);
                        }
                        backoff = Duration::from_millis(100);
                        let permits = HeldPermits::new(self.id, &self.settings.holder, self.settings.timing.lease);
                        self.session = Some(Session { client, permits });
                    }
                    Err(e) => {
                        lost = true;
                        log::warn!(
                            "lane {}: database unavailable ({}); retrying in {}",
                            self.id,
                            e.message,
                            humantime::format_duration(backoff)
                        );
                        self.control.wait(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let before = self.outstanding.get();
            match self.step() {
                Ok(Step::More) => {}
                Ok(Step::Idle) => {
                    // A drain ends when a look found nothing while nothing was under way.
                    if self.settings.drain.is_some() && before == 0 && self.outstanding.get() == 0 {
                        break;
                    }
                    self.control.wait(if before > 0 { Duration::from_millis(20) } else { self.settings.idle_poll });
                }
                Ok(Step::Full) => {
                    let held = self.slots.limit().max(1);
                    self.outstanding.wait_below(2 * held, Duration::from_millis(200));
                }
                Err(e) if e.kind == ErrorKind::DatabaseUnavailable => {
                    log::warn!("lane {}: lost the database ({}); reconnecting", self.id, e.message);
                    self.session = None;
                    lost = true;
                }
                Err(e) => {
                    log::error!("lane {}: {}{}", self.id, e.message, e.hint.map(|h| format!(" ({h})")).unwrap_or_default());
                    self.session = None;
                    self.control.wait(Duration::from_secs(1));
                }
            }
        }
    }

    fn step(&mut self) -> Result<Step> {
        let s = self.session.as_mut().expect("connected above");
        let lp = Arc::new(self.providers.get(&mut s.client, self.id)?);
        s.permits.keep(&mut s.client)?;
        let capacity = self.settings.capacity;
        let q = claims::LaneQuery { lane: self.id, tenant: self.settings.tenant, due_by: self.settings.drain };
        if s.permits.held() == 0 {
            // No permit: only ask for them when there is work.
            if !claims::any_due(&mut s.client, q)? || s.permits.grow(&mut s.client, capacity)? == 0 {
                return Ok(Step::Idle);
            }
        } else if self.slots.in_use() >= s.permits.held() && s.permits.held() < capacity {
            // Every slot busy: ask for more, up to this lane's capacity.
            s.permits.grow(&mut s.client, capacity)?;
        }
        self.slots.set_limit(s.permits.held());
        // Twice the calls the permits allow may wait claimed, so callers never wait for the claimer.
        let room = 2 * s.permits.held();
        let queued = self.outstanding.get();
        if queued >= room {
            return Ok(Step::Full);
        }
        let free = room - queued;
        let batch = lp.batch_limit();
        let claiming = Instant::now();
        let mut tx = s.client.transaction()?;
        let rows = claims::lock_due(&mut tx, q, free as i64, (free * batch) as i64)?;
        if rows.is_empty() {
            tx.commit()?;
            s.permits.release_if_idle(&mut s.client, queued)?;
            self.slots.set_limit(s.permits.held());
            return Ok(Step::Idle);
        }
        let n = rows.len();
        let claimed = claim_for_provider(&mut tx, &lp, rows, self.settings.timing)?;
        tx.commit()?;
        crate::metrics::get().observe_claim(&lp.name, claiming.elapsed());
        self.control.progress.claimed.fetch_add(n as u64, Ordering::Relaxed);
        let mut jobs: Vec<Job> = claimed.places.into_iter().map(|p| Job::Place(lp.clone(), Box::new(p))).collect();
        let mut checks = claimed.checks;
        while !checks.is_empty() {
            let rest = checks.split_off(checks.len().min(batch));
            jobs.push(Job::Check(lp.clone(), checks));
            checks = rest;
        }
        self.outstanding.add(jobs.len());
        let tx = self.jobs.as_ref().expect("the claimer sends until it finishes");
        for j in jobs {
            if tx.send(j).is_err() {
                self.outstanding.done(1);
            }
        }
        Ok(if n >= free { Step::More } else { Step::Idle })
    }

    /// Give the permits back and let the callers go.
    fn finish(&mut self) {
        if let Some(s) = self.session.as_mut() {
            if let Err(e) = s.permits.release(&mut s.client) {
                log::debug!("lane {}: permits not released ({}); they lapse by themselves", self.id, e.message);
            }
        }
        self.jobs = None;
    }
}

/// A caller: takes a job, waits for a permit slot, makes the call, hands the answer to the writer.
fn call_loop(
    slot: usize,
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: Sender<Done>,
    slots: Arc<Slots>,
    control: Arc<LaneControl>,
    timing: crate::dispatch::Timing,
) {
    loop {
        let job = match jobs.lock().unwrap().recv_timeout(Duration::from_millis(500)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while !slots.take(Duration::from_millis(500)) {}
        control.progress.call_started(slot);
        let result = match job {
            Job::Place(lp, p) => match &lp.adapter {
                Ok(a) => Done::Placed(lp.clone(), Box::new(place::placement(*p, a.as_ref(), timing))),
                // Claims never place with an unusable adapter; a provider changed since the claim.
                Err(why) => Done::Placed(
                    lp.clone(),
                    Box::new(place::Placed {
                        job: *p,
                        sent: place::Sent::NotSent(format!("provider unusable: {why}")),
                        took: Duration::ZERO,
                    }),
                ),
            },
            Job::Check(lp, c) => match &lp.adapter {
                Ok(a) => Done::Checked(lp.clone(), place::checks(c, a.as_ref())),
                Err(why) => {
                    let answer = crate::provider::CheckAnswer {
                        outcome: crate::provider::CheckOutcome::NoNews { reason: format!("provider unusable: {why}") },
                        external_order_id: None,
                    };
                    Done::Checked(
                        lp.clone(),
                        c.into_iter().map(|job| place::Checked { job, answer: answer.clone(), took: Duration::ZERO }).collect(),
                    )
                }
            },
        };
        observe(&result);
        control.progress.calls_made.fetch_add(1, Ordering::Relaxed);
        control.progress.call_ended(slot);
        slots.give();
        if done.send(result).is_err() {
            return;
        }
    }
}

/// A provider call in the metrics: its outcome and how long it took. A placement that was not
/// sent made no call.
fn observe(done: &Done) {
    use crate::provider::{CheckOutcome, PlacementOutcome};
    let m = crate::metrics::get();
    match done {
        Done::Placed(lp, p) => {
            let place::Sent::Answered(outcome) = &p.sent else { return };
            let word = match outcome {
                PlacementOutcome::Accepted { .. } => "accepted",
                PlacementOutcome::Rejected { .. } => "rejected",
                PlacementOutcome::SentBefore { .. } => "sent_before",
                PlacementOutcome::Ambiguous { .. } => "ambiguous",
            };
            m.observe_call(&lp.name, "place", word, p.took);
        }
        // One request checks the whole batch: it failed when no order got an answer from it.
        Done::Checked(lp, checks) => {
            let Some(first) = checks.first() else { return };
            let answered = checks.iter().any(|c| !matches!(c.answer.outcome, CheckOutcome::NoNews { .. }));
            m.observe_call(&lp.name, "check", if answered { "answered" } else { "no_news" }, first.took);
        }
    }
}
