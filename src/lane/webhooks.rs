//! The webhook lane: due deliveries are claimed (a lease, `SKIP LOCKED`), sent at most
//! `concurrency` at once, and each attempt's outcome written back under its lease. It runs on
//! its own thread with its own connection, so a slow shop endpoint never delays an order.
//!
//! Delivery is at least once: a process killed between a request and its write-back leaves the
//! delivery claimed; it comes due again when its lease runs out and is sent again with the same
//! event id (receivers deduplicate by it).

use super::{Connection, Failures, LaneControl};
use crate::db::webhooks as store;
use crate::db::webhooks::{DeliveryQuery, DueDelivery, Outcome};
use crate::domain::webhook::{Retry, RetryPolicy};
use crate::error::Result;
use crate::webhook::{Attempt, Request, SendSettings, Sender};
use chrono::{DateTime, Utc};
use crate::db::Client;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How webhooks are delivered, resolved once.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub database_url: String,
    pub send: SendSettings,
    pub retry: RetryPolicy,
    /// Requests in flight at once from this process.
    pub concurrency: usize,
    pub tenant: Option<i64>,
    pub idle_poll: Duration,
    /// A drain (`sweep`): deliveries due by this moment, then stop when none is left.
    pub drain: Option<DateTime<Utc>>,
}

impl WebhookSettings {
    /// How long a claim keeps other workers off a delivery: a whole round of requests (each
    /// ends by its timeout) and its write-back, with room to spare.
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

/// Run until stopped (or, draining, until nothing due by the drain moment is left, or
/// `deadline`). Returns what it delivered; an error when a drain gave up on errors in a row
/// (see `Failures`).
pub fn run(settings: WebhookSettings, control: Arc<LaneControl>, deadline: Option<Instant>) -> Result<DeliveryReport> {
    let sender = Sender::new(settings.send);
    let mut report = DeliveryReport::default();
    let mut conn: Option<Client> = None;
    let mut failures = Failures::default();
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
        let q = DeliveryQuery { tenant: settings.tenant, due_by: settings.drain, ids: None };
        match round(c, &sender, &settings, q) {
            Ok(done) => {
                failures.ok();
                if done.is_empty() {
                    if draining {
                        break;
                    }
                    control.wait(settings.idle_poll);
                }
                done.iter().filter(|d| d.written).for_each(|d| report.add(&d.outcome));
            }
            Err(e) => {
                conn = None;
                if !failures.retry("webhook lane", &control, e, draining) {
                    break;
                }
            }
        }
    }
    match control.failure() {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Claim what is due (at most `concurrency`), send it all at once, write the outcomes back.
/// Returns every attempt made (none: nothing was due).
pub fn round(c: &mut Client, sender: &Sender, s: &WebhookSettings, q: DeliveryQuery) -> Result<Vec<Delivered>> {
    let started = Instant::now();
    let claimed = store::claim_due(c, q, s.concurrency.max(1) as i64, s.lease())?;
    crate::metrics::get().observe_claim("webhooks", started.elapsed());
    if claimed.is_empty() {
        return Ok(vec![]);
    }
    let attempts: Vec<(DueDelivery, Attempt)> = std::thread::scope(|scope| {
        let calls: Vec<_> = claimed
            .into_iter()
            .map(|d| {
                scope.spawn(move || {
                    let event_id = d.event_id.to_string();
                    let attempt = sender.send(&Request { url: &d.url, secret: &d.secret, event_id: &event_id, body: &d.body });
                    (d, attempt)
                })
            })
            .collect();
        calls.into_iter().map(|h| h.join().expect("a webhook request thread panicked")).collect()
    });
    let results: Vec<(i64, i64, Outcome)> = attempts.iter().map(|(d, a)| (d.id, d.lease, outcome(&s.retry, d, a))).collect();
    let writing = Instant::now();
    let written = store::record(c, &results)?;
    crate::metrics::get().observe_write("webhooks", writing.elapsed());
    let out: Vec<Delivered> = attempts
        .into_iter()
        .zip(results)
        .map(|((delivery, attempt), (id, _, outcome))| {
            let written = written.contains(&id);
            if written {
                crate::metrics::get().inc_webhook_delivery(outcome.word());
                if let Outcome::Failed { error, .. } = &outcome {
                    log::warn!(
                        "webhook event {} to {}: retries used up, marked failed (last: {error}); `orderctl webhook retry {}` sends it again",
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
fn outcome(policy: &RetryPolicy, d: &DueDelivery, a: &Attempt) -> Outcome {
    if let crate::webhook::Answer::Delivered { status } = a.answer {
        return Outcome::Delivered { status };
    }
    let status = a.answer.status();
    let error = a.answer.error().unwrap_or_default();
    match policy.after_failure(d.attempts + 1, d.series_age + a.took) {
        Retry::In(after) => Outcome::Retry { after, status, error },
        Retry::GiveUp => Outcome::Failed { status, error },
    }
}
