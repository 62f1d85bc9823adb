//! The monitor: claim due orders, do their work, write the results back.
//!
//! A round is: one claim statement (committed before any provider call), the provider calls
//! (in parallel, batched where the protocol allows, within the per-provider limit held in
//! Postgres), then one transaction that writes every result back, guarded by the lease each
//! order was claimed with. Nothing is held in the process between rounds: a crash at any
//! point leaves orders that simply come due again when their lease runs out.
//!
//! "Due work" is one queue: new auto orders to dispatch (`not_sent`), placements awaiting
//! reconciliation (`dispatching`), and orders with their provider waiting for a status check.

use crate::db::{
    self,
    orders::{self, DueOrder, NewEvent, Reschedule},
    permits,
};
use crate::dispatch::{self, DispatchOptions, DispatchResult};
use crate::domain::backoff::{BackoffPolicy, NextStep};
use crate::error::Result;
use crate::provider::cache::ProviderCache;
use crate::provider::{scrub, CheckKey, CheckOutcome, PlacementOutcome, Provider};
use crate::settings::HttpSettings;
use chrono::Utc;
use postgres::Client;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// The monitor's settings, resolved once.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub policy: BackoffPolicy,
    /// How long a claim keeps others off an order (longer than a provider call can take).
    pub lease: Duration,
    /// Orders claimed per round.
    /// Orders checked by the batch safety sweep.
    pub batch_size: i64,
    /// Due orders claimed per round.
    pub round_size: i64,
    /// Provider calls in flight at once from this process.
    pub concurrency: usize,
    /// Restrict to one tenant.
    pub tenant_id: Option<i64>,
}

/// What a round (or a sweep) did. Serialised for `sweep --output json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundReport {
    pub claimed: usize,
    pub dispatched: usize,
    pub dispatch_stopped: usize,
    pub checks: usize,
    pub provider_calls: usize,
    pub approved: usize,
    pub rejected: usize,
    pub waiting: usize,
    pub no_news: usize,
    pub reconciled: usize,
    pub replaced: usize,
    pub given_up: usize,
    /// Results dropped because another worker owned the order by the time they came back.
    pub stale_dropped: usize,
    /// Orders put back because the provider's limit on calls in flight was reached.
    pub deferred: usize,
}

impl RoundReport {
    pub fn add(&mut self, o: &RoundReport) {
        self.claimed += o.claimed;
        self.dispatched += o.dispatched;
        self.dispatch_stopped += o.dispatch_stopped;
        self.checks += o.checks;
        self.provider_calls += o.provider_calls;
        self.approved += o.approved;
        self.rejected += o.rejected;
        self.waiting += o.waiting;
        self.no_news += o.no_news;
        self.reconciled += o.reconciled;
        self.replaced += o.replaced;
        self.given_up += o.given_up;
        self.stale_dropped += o.stale_dropped;
        self.deferred += o.deferred;
    }
    pub fn is_idle(&self) -> bool {
        self.claimed == 0
    }
}

/// The outcome of checking one claimed order.
struct Checked {
    order: DueOrder,
    outcome: CheckOutcome,
}

/// A placement made in this round, with what the provider answered.
type Placed = (dispatch::Claimed, PlacementOutcome);

enum Job {
    /// The one-order pipeline (routing other than plain external), on a worker connection.
    Dispatch(Uuid),
    /// A placement of the round's batch, already claimed.
    Place(Box<dispatch::Claimed>),
    /// Status checks of one provider call (a batch for x-stor).
    Check { provider: Arc<dyn Provider>, provider_id: Option<i64>, orders: Vec<DueOrder> },
}

impl Job {
    /// The provider whose limit on calls in flight this job counts against, if any. (The
    /// one-order pipeline takes its own permit.)
    fn provider_id(&self) -> Option<i64> {
        match self {
            Job::Dispatch(_) => None,
            Job::Place(c) => Some(c.provider_id()),
            Job::Check { provider_id, .. } => *provider_id,
        }
    }
}

/// Count a dispatch's result in a round's report.
fn tally_dispatch(t: &mut RoundReport, result: &DispatchResult) {
    match result {
        DispatchResult::Stopped { .. } => t.dispatch_stopped += 1,
        // Nothing was sent: another process had it, or it waits for an operator.
        DispatchResult::NotDispatchable { .. } | DispatchResult::WaitingForOperator | DispatchResult::DryRun { .. } => {}
        // On this one-order path an at-once approval is nearly always code stock, which calls
        // no provider (batched placements are counted where they are made).
        DispatchResult::Approved { .. } => {
            t.dispatched += 1;
            t.approved += 1;
        }
        _ => {
            t.dispatched += 1;
            t.provider_calls += 1;
        }
    }
}

pub struct Monitor {
    url: String,
    main: Client,
    /// Connections for dispatch jobs, one per worker thread, opened on first need.
    workers: Vec<Client>,
    providers: ProviderCache,
    pub settings: MonitorSettings,
    holder: String,
    request_timeout: Duration,
}

impl Monitor {
    pub fn new(url: &str, http: HttpSettings, settings: MonitorSettings) -> Result<Monitor> {
        Ok(Monitor {
            url: url.to_string(),
            main: db::connect(url)?,
            workers: Vec::new(),
            providers: ProviderCache::new(http),
            settings,
            holder: format!("{}:{}:{}", hostname(), std::process::id(), Uuid::new_v4().simple()),
            request_timeout: http.request_timeout,
        })
    }

    /// How long after a placement was claimed a "not found" answer means it never arrived.
    fn absent_after(&self) -> Duration {
        self.settings.lease.max(self.request_timeout * 2)
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.main
    }

    pub fn providers(&self) -> &ProviderCache {
        &self.providers
    }

    fn dispatch_options(&self) -> DispatchOptions {
        DispatchOptions {
            provider_override: None,
            dry_run: false,
            policy: self.settings.policy.clone(),
            placement_lease: self.settings.lease,
            operator: false,
        }
    }

    /// One round over due work.
    pub fn round(&mut self) -> Result<RoundReport> {
        let due = orders::claim_due(&mut self.main, self.settings.round_size, self.settings.lease, self.settings.tenant_id)?;
        self.process(due)
    }

    /// One round over work that was due by `due_by` (a sweep's start).
    pub fn round_due_by(&mut self, due_by: chrono::DateTime<Utc>) -> Result<RoundReport> {
        let due = orders::claim_due_by(
            &mut self.main,
            self.settings.round_size,
            self.settings.lease,
            self.settings.tenant_id,
            Some(due_by),
        )?;
        self.process(due)
    }

    /// Check these orders now, whatever their schedule (poll, batch safety sweep).
    pub fn check_now(&mut self, ids: &[Uuid]) -> Result<RoundReport> {
        let claimed = orders::claim_orders(&mut self.main, ids, self.settings.lease)?;
        self.process(claimed)
    }

    fn process(&mut self, due: Vec<DueOrder>) -> Result<RoundReport> {
        let mut report = RoundReport { claimed: due.len(), ..Default::default() };
        if due.is_empty() {
            return Ok(report);
        }
        let started = std::time::Instant::now();
        let now = Utc::now();
        let policy = self.settings.policy.clone();
        let opts = self.dispatch_options();
        let mut jobs: VecDeque<Job> = VecDeque::new();
        let mut give_ups: Vec<DueOrder> = Vec::new();
        let mut by_provider: BTreeMap<i64, Vec<DueOrder>> = BTreeMap::new();
        let mut new_orders: Vec<Uuid> = Vec::new();
        for o in due {
            match (o.external_status.as_str(), o.provider_id, o.provider_referans.is_some()) {
                ("not_sent", _, _) => new_orders.push(o.id),
                (_, Some(pid), true) => {
                    // Out of checks and past the deadline: give up without asking again.
                    let since = o.sent_at.or(o.dispatched_at).unwrap_or(now);
                    if now >= policy.deadline(since) && o.checks as u32 >= policy.max_checks {
                        give_ups.push(o);
                    } else {
                        by_provider.entry(pid).or_default().push(o);
                    }
                }
                _ => {
                    // Nothing the monitor can do (e.g. a row edited by hand); take it off the queue.
                    log::warn!("order {}: due but {} without provider reference; unscheduled", o.number, o.external_status);
                    self.main
                        .execute("UPDATE orders SET next_check_at = NULL WHERE id = $1 AND lease = $2", &[&o.id, &o.lease])?;
                }
            }
        }

        // New orders with plain routing are placed as one batch; the rest take the one-order
        // pipeline on a worker connection.
        let (attempts, others) = if new_orders.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            dispatch::prepare_batch(&mut self.main, &self.providers, &new_orders, &opts)?
        };
        jobs.extend(others.into_iter().map(Job::Dispatch));
        let mut attempts_by_provider: BTreeMap<i64, Vec<dispatch::Attempt>> = BTreeMap::new();
        for a in attempts {
            attempts_by_provider.entry(a.provider_id()).or_default().push(a);
        }

        // Provider calls, within each provider's limit across all processes: one permit
        // request per provider per round covers its placements and its checks, and no more
        // calls run against it at once than permits were granted.
        let mut held: Vec<(i64, Vec<i32>)> = Vec::new();
        let mut limits: HashMap<i64, usize> = HashMap::new();
        let mut deferred: Vec<DueOrder> = Vec::new();
        let mut to_claim: Vec<dispatch::Attempt> = Vec::new();
        let mut check_calls: Vec<(i64, Arc<dyn Provider>, Vec<DueOrder>)> = Vec::new();
        let pids: std::collections::BTreeSet<i64> = by_provider.keys().chain(attempts_by_provider.keys()).copied().collect();
        for pid in pids {
            let list = by_provider.remove(&pid).unwrap_or_default();
            let placements = attempts_by_provider.remove(&pid).unwrap_or_default();
            let provider = if list.is_empty() {
                None
            } else {
                match self.providers.get(&mut self.main, pid) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        // Its row is broken (e.g. credentials missing): every check is no news, so its
                        // orders back off instead of being judged, and the warning says why.
                        log::warn!("provider {pid} cannot be used: {}", e.message);
                        jobs.push_back(Job::Check { provider: Arc::new(Unusable), provider_id: None, orders: list.clone() });
                        None
                    }
                }
            };
            let calls: Vec<Vec<DueOrder>> = match &provider {
                Some(p) => list.chunks(p.batch_limit().max(1)).map(|c| c.to_vec()).collect(),
                None => Vec::new(),
            };
            let wanted = (calls.len() + placements.len()).min(self.settings.concurrency) as i64;
            if wanted == 0 {
                continue;
            }
            let slots = permits::acquire(&mut self.main, pid, &self.holder, wanted, self.settings.lease)?;
            if slots.is_empty() {
                deferred.extend(calls.into_iter().flatten());
                for a in placements {
                    log::info!("order {}: provider {pid} is at its limit of calls in flight; trying again shortly", a.number());
                    orders::defer(&mut self.main, a.order_id(), Duration::from_secs(1))?;
                    report.deferred += 1;
                }
                continue;
            }
            limits.insert(pid, slots.len());
            held.push((pid, slots));
            to_claim.extend(placements);
            if let Some(p) = provider {
                check_calls.extend(calls.into_iter().map(|c| (pid, p.clone(), c)));
            }
        }

        // write_reference for the whole batch, committed before any call.
        let claimed = match dispatch::claim_attempts(&mut self.main, to_claim, &opts) {
            Ok(c) => c,
            Err(e) => {
                self.release(&held);
                return Err(e);
            }
        };
        jobs.extend(claimed.into_iter().map(|c| Job::Place(Box::new(c))));
        jobs.extend(check_calls.into_iter().map(|(pid, provider, orders)| Job::Check {
            provider,
            provider_id: Some(pid),
            orders,
        }));

        let prepared = started.elapsed();
        // Calls start until the cutoff; the last ones may take a whole request timeout more, and
        // the round must still write back before its claims' leases end.
        let budget = self.settings.lease.saturating_sub(self.request_timeout).mul_f64(0.8);
        let results = self.run_jobs(jobs, &limits, started + budget, &mut report);
        let called = started.elapsed();
        let (checked, placed, postponed) = match results {
            Ok(r) => r,
            Err(e) => {
                self.release(&held);
                return Err(e);
            }
        };
        if !postponed.is_empty() {
            log::info!(
                "{} check(s) postponed to a later round: the provider is slow and the round near its lease",
                postponed.len()
            );
        }
        deferred.extend(postponed);
        report.deferred += deferred.len();
        let (replace, rejected) = match self.write_back(checked, placed, give_ups, deferred, &held, &mut report) {
            Ok(r) => r,
            Err(e) => {
                self.release(&held);
                return Err(e);
            }
        };

        log::debug!(
            "round of {}: prepared and claimed in {} ms, calls in {} ms, written back in {} ms",
            report.claimed,
            prepared.as_millis(),
            (called - prepared).as_millis(),
            (started.elapsed() - called).as_millis()
        );
        // A definite rejection goes on to the order's fallback, one order at a time (rare).
        for (claimed, provider, message) in rejected {
            let result = dispatch::continue_after_rejection(&mut self.main, &self.providers, claimed, provider, message, &opts)?;
            tally_dispatch(&mut report, &result);
        }
        // Reconciliation showed the provider never got these: place them again, same reference.
        for o in replace {
            match dispatch::replace_absent(&mut self.main, &self.providers, o.id, o.lease, &opts)? {
                DispatchResult::NotDispatchable { .. } => {}
                _ => report.replaced += 1,
            }
        }
        Ok(report)
    }

    /// Give permits back when a round fails part-way (they would lapse by themselves after the
    /// lease; this keeps the provider usable meanwhile). Best effort: the connection may be gone.
    fn release(&mut self, held: &[(i64, Vec<i32>)]) {
        for (pid, slots) in held {
            if let Err(e) = permits::release(&mut self.main, *pid, &self.holder, slots) {
                log::debug!("permits of provider {pid} not released ({}); they lapse with the lease", e.message);
                return;
            }
        }
    }

    /// Run dispatch, placement and check jobs on up to `concurrency` threads, with no more
    /// calls in flight against a provider than `limits` allows.
    #[allow(clippy::type_complexity)]
    fn run_jobs(
        &mut self,
        jobs: VecDeque<Job>,
        limits: &HashMap<i64, usize>,
        cutoff: std::time::Instant,
        report: &mut RoundReport,
    ) -> Result<(Vec<Checked>, Vec<Placed>, Vec<DueOrder>)> {
        let threads = self.settings.concurrency.min(jobs.len()).max(1);
        let needs_db = jobs.iter().filter(|j| matches!(j, Job::Dispatch(_))).count().min(threads);
        while self.workers.len() < needs_db {
            self.workers.push(db::connect(&self.url)?);
        }
        let queue = Mutex::new((jobs, HashMap::<i64, usize>::new()));
        let freed = Condvar::new();
        let results: Mutex<Vec<Checked>> = Mutex::new(Vec::new());
        let placed: Mutex<Vec<Placed>> = Mutex::new(Vec::new());
        let postponed: Mutex<Vec<DueOrder>> = Mutex::new(Vec::new());
        let tally: Mutex<RoundReport> = Mutex::new(RoundReport::default());
        let first_error: Mutex<Option<crate::error::Error>> = Mutex::new(None);
        let opts = self.dispatch_options();
        let providers = &self.providers;
        let mut conns: Vec<Option<&mut Client>> = self.workers.iter_mut().map(Some).collect();
        conns.resize_with(threads, || None);
        std::thread::scope(|scope| {
            for conn in conns.into_iter() {
                let (queue, freed, results, placed, postponed, tally, first_error, opts) =
                    (&queue, &freed, &results, &placed, &postponed, &tally, &first_error, &opts);
                scope.spawn(move || {
                    let mut conn = conn;
                    loop {
                        // Threads without a connection leave dispatch jobs to those with one; a
                        // provider at its limit of calls in flight waits for one to finish.
                        let job = {
                            let mut guard = queue.lock().unwrap();
                            loop {
                                let (q, in_flight) = &mut *guard;
                                if q.is_empty() {
                                    break None;
                                }
                                let pos = q.iter().position(|j| match j.provider_id() {
                                    Some(pid) => {
                                        in_flight.get(&pid).copied().unwrap_or(0)
                                            < limits.get(&pid).copied().unwrap_or(usize::MAX)
                                    }
                                    None => conn.is_some() || !matches!(j, Job::Dispatch(_)),
                                });
                                match pos {
                                    Some(i) => {
                                        let job = q.remove(i).expect("position is in range");
                                        if let Some(pid) = job.provider_id() {
                                            *in_flight.entry(pid).or_default() += 1;
                                        }
                                        break Some(job);
                                    }
                                    // Only dispatch jobs left and no connection here: done.
                                    None if q.iter().all(|j| matches!(j, Job::Dispatch(_))) => break None,
                                    None => guard = freed.wait(guard).unwrap(),
                                }
                            }
                        };
                        let Some(job) = job else { break };
                        let pid = job.provider_id();
                        match job {
                            Job::Dispatch(id) => {
                                let c = conn.as_deref_mut().expect("dispatch jobs go to threads with a connection");
                                match dispatch::dispatch(c, providers, id, opts) {
                                    Ok(r) => tally_dispatch(&mut tally.lock().unwrap(), &r.result),
                                    Err(e) => {
                                        log::error!("order {id}: dispatch failed: {}", e.message);
                                        first_error.lock().unwrap().get_or_insert(e);
                                    }
                                }
                            }
                            Job::Place(claimed) => {
                                let outcome = claimed.place();
                                tally.lock().unwrap().provider_calls += 1;
                                placed.lock().unwrap().push((*claimed, outcome));
                            }
                            // A slow provider must not stretch the round past the leases it
                            // holds (the write-back would be dropped as stale and the orders
                            // checked again elsewhere): checks not started by the cutoff wait
                            // for a later round. Claimed placements always go out.
                            Job::Check { orders, .. } if std::time::Instant::now() >= cutoff => {
                                postponed.lock().unwrap().extend(orders);
                            }
                            Job::Check { provider, orders, .. } => {
                                let keys: Vec<CheckKey> = orders
                                    .iter()
                                    .map(|o| CheckKey {
                                        reference: o.provider_referans.clone().unwrap_or_default(),
                                        external_order_id: o.external_order_id.clone(),
                                    })
                                    .collect();
                                let answers =
                                    if keys.len() == 1 { vec![provider.check(&keys[0])] } else { provider.check_many(&keys) };
                                let outcomes = answers.into_iter().map(|a| a.outcome);
                                let secrets = provider.config().secrets();
                                let mut r = results.lock().unwrap();
                                tally.lock().unwrap().provider_calls += 1;
                                for (order, outcome) in orders.into_iter().zip(outcomes) {
                                    r.push(Checked { order, outcome: scrub_check(outcome, &secrets) });
                                }
                            }
                        }
                        if let Some(pid) = pid {
                            let mut guard = queue.lock().unwrap();
                            if let Some(n) = guard.1.get_mut(&pid) {
                                *n -= 1;
                            }
                            freed.notify_all();
                        }
                    }
                });
            }
        });
        report.add(&tally.into_inner().unwrap());
        // A lost database connection in a worker is reported; other jobs' results still count.
        if let Some(e) = first_error.into_inner().unwrap() {
            if e.kind == crate::error::ErrorKind::DatabaseUnavailable {
                self.workers.clear();
                return Err(e);
            }
        }
        Ok((results.into_inner().unwrap(), placed.into_inner().unwrap(), postponed.into_inner().unwrap()))
    }

    /// Write every result back in one transaction, guarded by lease. Returns the orders whose
    /// reconciliation showed the provider never got them (to be placed again).
    #[allow(clippy::type_complexity)]
    fn write_back(
        &mut self,
        results: Vec<Checked>,
        placed: Vec<Placed>,
        give_ups: Vec<DueOrder>,
        deferred: Vec<DueOrder>,
        held: &[(i64, Vec<i32>)],
        report: &mut RoundReport,
    ) -> Result<(Vec<DueOrder>, Vec<(dispatch::Claimed, String, String)>)> {
        let opts = self.dispatch_options();
        let policy = self.settings.policy.clone();
        let now = Utc::now();
        let mut approvals: Vec<(Uuid, i64, Option<String>, String)> = Vec::new();
        let mut approval_events: Vec<NewEvent> = Vec::new();
        let mut approval_numbers: Vec<(Uuid, i64)> = Vec::new();
        let mut reschedules: Vec<Reschedule> = Vec::new();
        let mut reschedule_events: Vec<NewEvent> = Vec::new();
        let mut replace: Vec<DueOrder> = Vec::new();
        let absent_after = chrono::Duration::from_std(self.absent_after()).unwrap_or_default();
        let mut tx = self.main.transaction()?;
        let mut other_events: Vec<NewEvent> = Vec::new();

        for o in deferred {
            reschedules.push(Reschedule {
                order_id: o.id,
                lease: o.lease,
                external_status: o.external_status.clone(),
                next_check_at: Some(now + chrono::Duration::seconds(1)),
                message:
                    "not checked this round (the provider is at its limit of calls in flight, or slow); checking again shortly"
                        .into(),
                no_news: false,
                counted: false,
            });
            reschedule_events.push(NewEvent::new(
                o.id,
                "check.deferred",
                "not checked this round: provider at its limit of calls in flight, or slow",
            ));
        }

        for o in give_ups {
            let message = policy.give_up_message();
            if orders::give_up(&mut tx, o.id, o.lease, &message)? {
                report.given_up += 1;
                other_events.push(NewEvent::new(
                    o.id,
                    "gave_up",
                    format!("{message}; the provider may still deliver: an operator decides (no refund)"),
                ));
                log::warn!("order {}: {message}; flagged for an operator", o.number);
            } else {
                report.stale_dropped += 1;
            }
        }

        for Checked { order: o, outcome } in results {
            report.checks += 1;
            // The attempt number, answered or not (for the history).
            let n = o.checks + o.no_news + 1;
            let reconciling = o.external_status == "dispatching";
            match outcome {
                CheckOutcome::Approved { pin, message } => {
                    let text = if message.is_empty() { "approved by the provider".to_string() } else { message };
                    approval_events.push(NewEvent::new(
                        o.id,
                        "check.approved",
                        format!("check #{n}: approved{} ({text})", if pin.is_some() { ", PIN received" } else { "" }),
                    ));
                    if reconciling {
                        found_by_reconciliation(&mut tx, &o, "found by reconciliation")?;
                    }
                    approvals.push((o.id, o.lease, pin, text));
                    approval_numbers.push((o.id, o.number));
                }
                CheckOutcome::Cancelled { message } => {
                    if reconciling {
                        found_by_reconciliation(&mut tx, &o, "found by reconciliation (cancelled)")?;
                    }
                    let text = if message.is_empty() {
                        "cancelled by the provider".to_string()
                    } else {
                        format!("cancelled by the provider: {message}")
                    };
                    match orders::finish_rejected(&mut tx, o.id, Some(o.lease), &text)? {
                        Some(amount) => {
                            report.rejected += 1;
                            other_events.push(NewEvent::new(
                                o.id,
                                "check.cancelled",
                                format!("check #{n}: {text}; refunded {amount}"),
                            ));
                            log::info!("order {}: {text}; refunded {amount}", o.number);
                        }
                        None => report.stale_dropped += 1,
                    }
                }
                // "Not found" means the placement never arrived only once a late arrival is no
                // longer plausible: our call timed out long ago, and a provider that queued it
                // has had a whole lease to process it. Before that it is no news, and placing
                // again could reach the provider twice.
                CheckOutcome::NotFound { message }
                    if reconciling && o.dispatched_at.map(|t| now - t >= absent_after).unwrap_or(true) =>
                {
                    // The provider has no order with this reference: the placement never arrived.
                    orders::set_placement_outcome(
                        &mut tx,
                        o.provider_id.unwrap_or_default(),
                        o.provider_referans.as_deref().unwrap_or(""),
                        "absent",
                        &message,
                    )?;
                    other_events.push(NewEvent::new(
                        o.id,
                        "reconcile.absent",
                        format!(
                            "the provider has no order with reference {} ({message}): placing it again with the same reference",
                            o.provider_referans.as_deref().unwrap_or("?")
                        ),
                    ));
                    report.reconciled += 1;
                    replace.push(o);
                }
                other => {
                    let (no_news, word) = match &other {
                        CheckOutcome::Waiting { .. } => (false, "waiting"),
                        CheckOutcome::NotFound { .. } => (true, "not found (no news)"),
                        _ => (true, "no news"),
                    };
                    let message = other.message().to_string();
                    if no_news {
                        report.no_news += 1;
                        log::info!("order {}: check #{n}: no news ({message}); backing off", o.number);
                    } else {
                        log::debug!("order {}: check #{n}: waiting", o.number);
                        report.waiting += 1;
                        if reconciling {
                            report.reconciled += 1;
                            found_by_reconciliation(&mut tx, &o, "found by reconciliation")?;
                        }
                    }
                    // Reconciling an order and no news: it stays dispatching, awaiting reconciliation.
                    let new_status = match (o.external_status.as_str(), no_news) {
                        ("dispatching", true) => "dispatching",
                        (_, false) => "processing",
                        (s, true) => s,
                    };
                    let since = o.sent_at.or(o.dispatched_at).unwrap_or(now);
                    let answered = (o.checks + i32::from(!no_news)).max(0) as u32;
                    let silent = (o.no_news + i32::from(no_news)).max(0) as u32;
                    let step = policy.next_step_with_no_news(since, answered, silent, now, rand::random::<f64>());
                    match step {
                        NextStep::GiveUpNow => {
                            let text = policy.give_up_message();
                            if orders::give_up(&mut tx, o.id, o.lease, &text)? {
                                report.given_up += 1;
                                other_events.push(NewEvent::new(o.id, "gave_up", format!("check #{n}: {word}; {text}; the provider may still deliver: an operator decides (no refund)")));
                            } else {
                                report.stale_dropped += 1;
                            }
                        }
                        NextStep::CheckAt(at) | NextStep::GiveUpAt(at) => {
                            let what = if matches!(step, NextStep::GiveUpAt(_)) {
                                "no checks left; giving up at"
                            } else {
                                "next check at"
                            };
                            reschedule_events.push(NewEvent::new(
                                o.id,
                                if no_news { "check.no_news" } else { "check.waiting" },
                                format!(
                                    "check #{n}: {word}{}; {what} {}",
                                    if message.is_empty() { String::new() } else { format!(" ({message})") },
                                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                                ),
                            ));
                            reschedules.push(Reschedule {
                                order_id: o.id,
                                lease: o.lease,
                                external_status: new_status.to_string(),
                                next_check_at: Some(at),
                                message: if message.is_empty() { word.to_string() } else { message },
                                no_news,
                                counted: !no_news,
                            });
                        }
                    }
                }
            }
        }

        let numbers: std::collections::HashMap<Uuid, i64> = approval_numbers.into_iter().collect();
        let approved = orders::approve_many(&mut tx, &approvals)?;
        for id in &approved {
            log::info!("order {}: approved by the provider", numbers.get(id).copied().unwrap_or_default());
        }
        report.approved += approved.len();
        report.stale_dropped += approvals.len() - approved.len();
        let rescheduled = orders::reschedule_many(&mut tx, &reschedules)?;
        report.stale_dropped += reschedules.len() - rescheduled.len();
        let keep = |events: Vec<NewEvent>, ok: &[Uuid]| -> Vec<NewEvent> {
            let ok: std::collections::HashSet<&Uuid> = ok.iter().collect();
            events.into_iter().filter(|e| ok.contains(&e.order_id)).collect()
        };
        let mut events = keep(approval_events, &approved);
        events.extend(keep(reschedule_events, &rescheduled));
        events.extend(other_events);
        orders::record_events(&mut tx, &events)?;

        // The round's placements: their outcomes and steps, in the same transaction.
        let mut rejected = Vec::new();
        for (claimed, recorded) in dispatch::record_placed(&mut tx, placed, &opts)? {
            match recorded {
                dispatch::Recorded::Done(result) => {
                    log::info!("order {}: dispatch: {}", claimed.number(), dispatch::result_summary(&result));
                    let mut t = RoundReport::default();
                    tally_dispatch(&mut t, &result);
                    // The call itself was counted when it was made.
                    t.provider_calls = 0;
                    report.add(&t);
                }
                dispatch::Recorded::NextCandidate { provider, message } => rejected.push((claimed, provider, message)),
            }
        }
        // The permits go back with the results: one commit for both.
        for (pid, slots) in held {
            permits::release(&mut tx, *pid, &self.holder, slots)?;
        }
        tx.commit()?;
        Ok((replace, rejected))
    }
}

/// Reconciliation found the order at its provider: the placement did arrive after all.
fn found_by_reconciliation(tx: &mut postgres::Transaction<'_>, o: &DueOrder, note: &str) -> Result<()> {
    orders::set_placement_outcome(
        tx,
        o.provider_id.unwrap_or_default(),
        o.provider_referans.as_deref().unwrap_or(""),
        "accepted",
        note,
    )
}

/// Stands in for a provider whose adapter cannot be built (bad credentials in its row): every
/// check is no news, so orders back off instead of being judged.
struct Unusable;

static UNUSABLE_CONFIG: std::sync::OnceLock<crate::provider::ProviderConfig> = std::sync::OnceLock::new();

impl Provider for Unusable {
    fn config(&self) -> &crate::provider::ProviderConfig {
        UNUSABLE_CONFIG.get_or_init(|| crate::provider::ProviderConfig {
            name: "unusable".into(),
            kind: crate::provider::ProviderKind::Znet,
            base_url: String::new(),
            credentials: serde_json::json!({}),
            http: HttpSettings::default(),
        })
    }
    fn place(&self, _req: &crate::provider::PlacementRequest) -> crate::provider::PlacementOutcome {
        crate::provider::PlacementOutcome::Rejected { message: "provider configuration is unusable".into() }
    }
    fn reference_style(&self) -> crate::provider::ReferenceStyle {
        crate::provider::ReferenceStyle::Uuid
    }
    fn check(&self, _key: &CheckKey) -> crate::provider::CheckAnswer {
        crate::provider::CheckAnswer::of(CheckOutcome::NoNews {
            reason: "provider configuration is unusable; fix its row (see `orderctl provider check`)".into(),
        })
    }
    fn balance(&self) -> std::result::Result<crate::provider::Balance, crate::provider::ProviderError> {
        Err(crate::provider::ProviderError::Refused("unusable".into()))
    }
    fn catalogue(&self) -> std::result::Result<Vec<crate::provider::CatalogueItem>, crate::provider::ProviderError> {
        Err(crate::provider::ProviderError::Refused("unusable".into()))
    }
    fn describe_placement(&self, _req: &crate::provider::PlacementRequest) -> String {
        String::new()
    }
}

fn scrub_check(o: CheckOutcome, secrets: &[String]) -> CheckOutcome {
    match o {
        CheckOutcome::Waiting { message } => CheckOutcome::Waiting { message: scrub(&message, secrets) },
        CheckOutcome::Approved { pin, message } => CheckOutcome::Approved { pin, message: scrub(&message, secrets) },
        CheckOutcome::Cancelled { message } => CheckOutcome::Cancelled { message: scrub(&message, secrets) },
        CheckOutcome::NotFound { message } => CheckOutcome::NotFound { message: scrub(&message, secrets) },
        CheckOutcome::NoNews { reason } => CheckOutcome::NoNews { reason: scrub(&reason, secrets) },
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into())
}

/// The batch safety sweep: up to `batch_size` of the oldest open orders sent between
/// `give_up_after` and one minute ago are checked even if their own schedule was lost. Runs
/// once per slot across all processes (deduplicated in the database). None: another process
/// already ran this slot.
pub fn safety_sweep(monitor: &mut Monitor, slot_length: Duration) -> Result<Option<RoundReport>> {
    safety_sweep_at(monitor, db::periodic::slot_of(Utc::now(), slot_length))
}

/// The batch safety sweep for a given slot (the daemon uses the time its cron job fired).
pub fn safety_sweep_at(monitor: &mut Monitor, slot: chrono::DateTime<Utc>) -> Result<Option<RoundReport>> {
    let holder = monitor.holder.clone();
    // A tenant-scoped sweep is its own job: it must neither stand in for nor block the others.
    let job = match monitor.settings.tenant_id {
        Some(t) => format!("safety_sweep:tenant:{t}"),
        None => "safety_sweep".to_string(),
    };
    if !db::periodic::try_start(&mut monitor.main, &job, slot, &holder)? {
        log::debug!("batch safety sweep for slot {slot} already ran elsewhere");
        return Ok(None);
    }
    let ids = orders::safety_sweep_candidates(
        &mut monitor.main,
        monitor.settings.batch_size,
        Duration::from_secs(60),
        monitor.settings.policy.give_up_after,
        monitor.settings.tenant_id,
    )?;
    let report = monitor.check_now(&ids)?;
    log::info!("batch safety sweep (slot {slot}): {} candidate(s), {} checked", ids.len(), report.checks);
    let summary = serde_json::to_value(&report).unwrap_or_default();
    db::periodic::finish(&mut monitor.main, &job, slot, &summary)?;
    Ok(Some(report))
}
