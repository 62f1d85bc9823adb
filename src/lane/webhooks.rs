//! The webhook lane: due deliveries are claimed (a lease, `SKIP LOCKED`) as senders free up and
//! handed to a pool of `concurrency` senders; each outcome is written back under its lease as
//! it comes, never waiting for the rest of a batch. The claim lets at most
//! `db::webhooks::PER_ENDPOINT` requests per endpoint be in flight (across every process), so an
//! endpoint that hangs holds two senders and no other endpoint's deliveries; and it takes only
//! the oldest pending event of an order per endpoint, so a shop gets an order's events in the
//! order they happened (`sequence`). It runs on its own thread with its own connection, so a
//! slow shop endpoint never delays an order.
//!
//! Delivery is at least once: a process killed between a request and its write-back leaves the
//! delivery claimed; it comes due again when its lease runs out and is sent again with the same
//! event id (receivers deduplicate by it).

use super::{Connection, Failures, LaneControl};
use crate::db::webhooks as store;
use crate::db::webhooks::{DeliveryQuery, DueDelivery, Outcome};
use crate::db::Client;
use crate::domain::webhook::{Retry, RetryPolicy};
use crate::error::Result;
use crate::webhook::{Attempt, Request, SendSettings, Sender};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How webhooks are delivered, resolved once.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub database_url: String,
    pub send: SendSettings,
    pub retry: RetryPolicy,
    /// Requests in flight at once from this process (each endpoint at most
    /// `db::webhooks::PER_ENDPOINT` of them).
    pub concurrency: usize,
    pub tenant: Option<i64>,
    pub idle_poll: Duration,
    /// A drain (`sweep`): deliveries due by this moment, then stop when none is left.
    pub drain: Option<DateTime<Utc>>,
}

impl WebhookSettings {
    /// How long a claim keeps other workers off a delivery: its request (which ends by its
    /// timeout) and its write-back, with room to spare.
    pub fn lease(&self) -> Duration {
        self.send.timeout * 2 + Duration::from_secs(5)
    }

    /// How long the lane may go without looping before the supervisor calls it stuck.
    pub fn stall_bound(&self) -> Duration {
        self.send.timeout + Duration::from_secs(15)
    }
}

/// What deliveries came to (`sweep`'s report, `webhook retry`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryReport {
    pub delivered: u64,
    /// Not delivered this time; tried again later.
    pub retrying: u64,
    /// Not delivered, retries used up.
    pub failed: u64,
}

impl DeliveryReport {
    fn add(&mut self, o: &Outcome) {
        match o {
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Retry { .. } => self.retrying += 1,
            Outcome::Failed { .. } => self.failed += 1,
        }
    }
}

/// One delivery attempt and what it came to.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub delivery: DueDelivery,
    pub attempt: Attempt,
    pub outcome: Outcome,
    /// False when its lease had moved on (another worker owns it now).
    pub written: bool,
}

/// Run until stopped (or, draining, until nothing due by the drain moment is left and nothing is
/// in flight, or `deadline`). Returns what it delivered; an error when a drain gave up on errors
/// in a row (see `Failures`).
pub fn run(settings: WebhookSettings, control: Arc<LaneControl>, deadline: Option<Instant>) -> Result<DeliveryReport> {
    let senders = Senders::start(Sender::new(settings.send), settings.concurrency.max(1));
    let mut report = DeliveryReport::default();
    let mut conn: Option<Client> = None;
    let mut failures = Failures::default();
    let mut done: Vec<(DueDelivery, Attempt)> = Vec::new();
    let draining = settings.drain.is_some();
    while !control.stopping() && deadline.map(|d| Instant::now() < d).unwrap_or(true) {
        if failures.may_beat() {
            control.progress.beat_claimer();
            control.progress.beat_writer();
        }
        let c = match failures.connection(&mut conn, &settings.database_url, "webhook lane", &control, draining) {
            Connection::Ready(c) => c,
            Connection::Again => continue,
            Connection::GiveUp => break,
        };
        done.extend(senders.finished());
        match step(c, &senders, &settings, &mut done, &mut report) {
            Ok(claimed) => {
                failures.ok();
                if claimed == 0 && done.is_empty() {
                    if draining && senders.in_flight() == 0 {
                        break;
                    }
                    // Wait for a sender to finish, or for new events.
                    match senders.in_flight() {
                        0 => control.wait(settings.idle_poll),
                        _ => done.extend(senders.wait_finished(settings.idle_poll)),
                    }
                }
            }
            Err(e) => {
                conn = None;
                if !failures.retry("webhook lane", &control, e, draining) {
                    break;
                }
            }
        }
    }
    // What is in flight gets a moment to come back and be written; what does not (a hanging
    // endpoint) comes due again after its lease, sent again with the same event id.
    let until = Instant::now() + settings.send.timeout.min(STOP_WAIT);
    while senders.in_flight() > 0 && Instant::now() < until {
        done.extend(senders.wait_finished(Duration::from_millis(100)));
    }
    if let (false, Some(c)) = (done.is_empty(), conn.as_mut()) {
        if let Err(e) = write_back(c, &settings.retry, &mut done, &mut report) {
            log::debug!("webhook lane: outcomes at stop not written ({}); they come due again", e.message);
        }
    }
    match control.failure() {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// How long a stopping lane waits for requests in flight.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Write back what finished, then claim as many due deliveries as there are idle senders and
/// hand them out. Returns how many were claimed.
fn step(
    c: &mut Client,
    senders: &Senders,
    s: &WebhookSettings,
    done: &mut Vec<(DueDelivery, Attempt)>,
    report: &mut DeliveryReport,
) -> Result<usize> {
    write_back(c, &s.retry, done, report)?;
    let idle = senders.idle();
    if idle == 0 {
        return Ok(0);
    }
    let started = Instant::now();
    let q = DeliveryQuery { tenant: s.tenant, due_by: s.drain, ids: None };
    let claimed = store::claim_due(c, q, idle as i64, s.lease())?;
    crate::metrics::get().observe_claim("webhooks", started.elapsed());
    let n = claimed.len();
    for d in claimed {
        senders.send(d);
    }
    Ok(n)
}

/// Write the outcomes of finished attempts (emptying `done`).
fn write_back(
    c: &mut Client,
    policy: &RetryPolicy,
    done: &mut Vec<(DueDelivery, Attempt)>,
    report: &mut DeliveryReport,
) -> Result<()> {
    if done.is_empty() {
        return Ok(());
    }
    let finished = std::mem::take(done);
    for d in record(c, policy, finished)? {
        if d.written {
            report.add(&d.outcome);
        }
    }
    Ok(())
}

/// Senders: `n` threads that each send one delivery at a time, taking the next from a queue
/// (the lane hands out no more than are idle).
struct Senders {
    jobs: mpsc::Sender<DueDelivery>,
    results: mpsc::Receiver<(DueDelivery, Attempt)>,
    size: usize,
    in_flight: std::cell::Cell<usize>,
}

impl Senders {
    fn start(sender: Sender, n: usize) -> Senders {
        let (jobs, job_rx) = mpsc::channel::<DueDelivery>();
        let (result_tx, results) = mpsc::channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..n {
            let (job_rx, result_tx, sender) = (job_rx.clone(), result_tx.clone(), sender.clone());
            let spawned = std::thread::Builder::new().name(format!("webhook-sender-{i}")).spawn(move || loop {
                // The lock is held only while waiting for a job, never during a request.
                let next = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(d) = next else { return };
                let attempt = send(&sender, &d);
                if result_tx.send((d, attempt)).is_err() {
                    return;
                }
            });
            if let Err(e) = spawned {
                log::warn!("webhook lane: sender thread {i} not started: {e}");
            }
        }
        Senders { jobs, results, size: n, in_flight: std::cell::Cell::new(0) }
    }

    fn send(&self, d: DueDelivery) {
        if self.jobs.send(d).is_ok() {
            self.in_flight.set(self.in_flight.get() + 1);
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    fn idle(&self) -> usize {
        self.size.saturating_sub(self.in_flight())
    }

    /// What finished since the last look, without waiting.
    fn finished(&self) -> Vec<(DueDelivery, Attempt)> {
        let out: Vec<_> = self.results.try_iter().collect();
        self.in_flight.set(self.in_flight.get().saturating_sub(out.len()));
        out
    }

    /// Wait up to `timeout` for one attempt to finish; then everything that has.
    fn wait_finished(&self, timeout: Duration) -> Vec<(DueDelivery, Attempt)> {
        let mut out: Vec<_> = self.results.recv_timeout(timeout).into_iter().collect();
        out.extend(self.results.try_iter());
        self.in_flight.set(self.in_flight.get().saturating_sub(out.len()));
        out
    }
}

fn send(sender: &Sender, d: &DueDelivery) -> Attempt {
    if let Some(why) = &d.unresolved {
        log::warn!(
            "webhook endpoint {} ({}): {why} on this host; its deliveries wait and retry, others go on",
            d.webhook_id,
            d.url
        );
        return Attempt::unsigned(why);
    }
    let event_id = d.event_id.to_string();
    sender.send(&Request { url: &d.url, secrets: &d.secrets, access: d.access, event_id: &event_id, body: &d.body })
}

/// Claim what is due (at most `concurrency`, and named by `q`), send it all at once, write the
/// outcomes back: what `webhook retry` and `replay` do now, in the foreground. Returns every
/// attempt made (none: nothing was due).
pub fn round(c: &mut Client, sender: &Sender, s: &WebhookSettings, q: DeliveryQuery) -> Result<Vec<Delivered>> {
    let claimed = store::claim_due(c, q, s.concurrency.max(1) as i64, s.lease())?;
    if claimed.is_empty() {
        return Ok(vec![]);
    }
    let attempts: Vec<(DueDelivery, Attempt)> = std::thread::scope(|scope| {
        let calls: Vec<_> = claimed
            .into_iter()
            .map(|d| {
                scope.spawn(move || {
                    let a = send(sender, &d);
                    (d, a)
                })
            })
            .collect();
        calls.into_iter().map(|h| h.join().expect("a webhook request thread panicked")).collect()
    });
    record(c, &s.retry, attempts)
}

/// Write attempts' outcomes under their leases; count and log what was written.
fn record(c: &mut Client, policy: &RetryPolicy, attempts: Vec<(DueDelivery, Attempt)>) -> Result<Vec<Delivered>> {
    let results: Vec<(i64, i64, Outcome)> =
        attempts.iter().map(|(d, a)| (d.id, d.lease, outcome(policy, d, a, rand::random()))).collect();
    let writing = Instant::now();
    let recorded = store::record(c, &results)?;
    let m = crate::metrics::get();
    m.observe_write("webhooks", writing.elapsed());
    for (id, url) in &recorded.disabled {
        log::warn!("webhook endpoint {id} ({url}) failed for its whole retry horizon and is disabled; `orderctl webhook resume {id}` enables it again");
    }
    let out: Vec<Delivered> = attempts
        .into_iter()
        .zip(results)
        .map(|((delivery, attempt), (id, _, outcome))| {
            let written = recorded.ids.contains(&id);
            if written {
                m.inc_webhook_delivery(&delivery.tenant, outcome.word());
                if let Outcome::Failed { error, .. } = &outcome {
                    log::warn!(
                        "webhook event {} to {}: retry horizon reached, dead-lettered (last: {error}); `orderctl webhook replay {}` sends it again",
                        delivery.event_id,
                        delivery.url,
                        delivery.id
                    );
                }
            }
            Delivered { delivery, attempt, outcome, written }
        })
        .collect();
    Ok(out)
}

/// What an attempt means for its delivery: delivered, tried again later, or failed.
fn outcome(policy: &RetryPolicy, d: &DueDelivery, a: &Attempt, jitter: f64) -> Outcome {
    if let crate::webhook::Answer::Delivered { status } = a.answer {
        return Outcome::Delivered { status };
    }
    let status = a.answer.status();
    let error = a.answer.error().unwrap_or_default();
    match policy.with_horizon(d.horizon).after_failure(d.attempts + 1, d.series_age + a.took, jitter) {
        Retry::In(after) => Outcome::Retry { after, status, error },
        Retry::GiveUp => Outcome::Failed { status, error },
    }
}
