//! One order through the stages in a row, for the commands that act on one order: `create`
//! (place it now), `dispatch` (an operator sends it), `poll` (ask its provider now). The same
//! stages the lanes run, with the same claims and the same lease guard, so a command and any
//! number of daemons can act on one order at once and it is still placed once.

use super::claim::{claim_for_provider, PlaceJob};
use super::route::{route_rows, Override};
use super::{place, record, Providers, Timing};
use crate::db::claims::{self, DueRow};
use crate::db::permits;
use crate::db::transitions::{self, Write};
use crate::db::Client;
use crate::domain::lifecycle::{self, work_for, OperatorAction, State, Work};
use crate::error::{Error, Result};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Steps at most per command: a route, a placement refused and its fallback's, an answer that
/// makes a reconciliation due at once... then the lanes carry on.
const MAX_STEPS: usize = 8;

#[derive(Debug, Clone)]
pub enum OneMode {
    /// Right after `create`: route and place it (no status checks).
    Create,
    /// An operator's `dispatch`: the lifecycle decides whether it may be sent, then it is
    /// routed (or sent to the provider the operator chose) and placed. `dry_run`: everything
    /// is resolved and the request described, and nothing is kept.
    Operator { chosen: Option<Override>, dry_run: bool },
    /// `poll`: ask the order's provider now, and do what the answer makes due at once.
    Poll,
}

impl OneMode {
    /// How long a command waits for a permit when its provider is at its limit of calls in
    /// flight: an operator waits a while; `create` hardly (the daemon carries on).
    fn permit_wait(&self) -> Duration {
        match self {
            OneMode::Operator { .. } => Duration::from_secs(10),
            OneMode::Poll => Duration::from_secs(2),
            OneMode::Create => Duration::from_millis(500),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OneOptions {
    pub mode: OneMode,
    pub timing: Timing,
}

/// What a command did to the order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OneReport {
    /// One line per step, in order (the history has them too).
    pub steps: Vec<String>,
    /// Provider calls made.
    pub calls: usize,
    /// `--dry-run`: the provider and the request that would be sent.
    pub dry_run: Option<(String, String)>,
}

pub fn run_one(client: &mut Client, providers: &Providers, order_id: Uuid, opts: &OneOptions) -> Result<OneReport> {
    let mut report = OneReport::default();
    let permit_wait = Instant::now() + opts.mode.permit_wait();
    let mut step = 0;
    // The command's own first pass (the operator's decision, poll's ask), once: waiting for a
    // permit starts a pass again but not the command.
    let mut first_pass = true;
    while step < MAX_STEPS {
        let first = std::mem::replace(&mut first_pass, false);
        step += 1;
        let mut tx = client.transaction()?;
        // Claims are short (no transaction is ever held across a provider call): wait for one
        // that holds the order, then see what it did.
        let wait = true;
        let Some(mut row) = claims::lock_ids(&mut tx, &[order_id], wait)?.pop() else {
            return Err(Error::not_found(format!("order {order_id} does not exist")));
        };
        if first {
            if let OneMode::Operator { .. } = opts.mode {
                let t = lifecycle::operator(&row.facts, &OperatorAction::Dispatch).map_err(refusal)?;
                row = write_and_relock(&mut tx, &row, t, None, &mut report)?;
            }
        }
        let poll_now = first && matches!(opts.mode, OneMode::Poll);
        // Only due work, except poll's first ask (never an in-flight placement's).
        let asked_now = poll_now && State::of(&row.facts) != State::Placing;
        if !(row.due || asked_now) {
            break;
        }
        let work = work_for(&row.facts);
        if !allowed(&opts.mode, &work, &row) {
            break;
        }
        match work {
            Work::Route => {
                let (operator, chosen) = match &opts.mode {
                    OneMode::Operator { chosen, .. } => (true, chosen.as_ref()),
                    _ => (false, None),
                };
                for w in route_rows(&mut tx, std::slice::from_ref(&row), operator, chosen)? {
                    note(&mut report, &w);
                }
                row = relock(&mut tx, order_id)?;
                // Routed to a provider: claim the placement in the same transaction, so two
                // operators dispatching at once never both get that far.
                if !matches!(work_for(&row.facts), Work::Place { .. }) {
                    finish(tx, opts)?;
                    continue;
                }
                let claim = claim_placement(tx, providers, row, opts, &mut report)?;
                match place_claimed(client, claim, opts, permit_wait, &mut report)? {
                    Next::Go => {}
                    Next::Waited => step -= 1,
                    Next::Stop => break,
                }
            }
            Work::Place { .. } => {
                let claim = claim_placement(tx, providers, row, opts, &mut report)?;
                match place_claimed(client, claim, opts, permit_wait, &mut report)? {
                    Next::Go => {}
                    Next::Waited => step -= 1,
                    Next::Stop => break,
                }
            }
            Work::Check { .. } => {
                let lp = providers.get(&mut tx, row.facts.provider_id.unwrap_or(row.facts.lane))?;
                let Ok(adapter) = lp.adapter.clone() else {
                    report.steps.push(format!("provider {} cannot be used: nothing was asked", lp.name));
                    break;
                };
                let Some(slot) = permits::acquire(&mut tx, lp.id, permits::this_process(), 1, opts.timing.lease)?.pop() else {
                    tx.commit()?;
                    if wait_for_permit(&lp.name, permit_wait, &mut report) {
                        step -= 1;
                        continue;
                    }
                    break;
                };
                let claimed = claim_for_provider(&mut tx, &lp, vec![row], opts.timing)?;
                tx.commit()?;
                report.calls += usize::from(!claimed.checks.is_empty());
                let answers = place::checks(claimed.checks, adapter.as_ref());
                let writes: Vec<Write> = answers.iter().map(|c| record::checked(&lp, c, rand::random())).collect();
                write(client, &writes, &mut report)?;
                permits::release(client, lp.id, permits::this_process(), &[slot])?;
            }
            Work::Decide(t) => {
                let w = super::claim::write(&row, *t);
                transitions::apply(&mut tx, std::slice::from_ref(&w))?;
                note(&mut report, &w);
                finish(tx, opts)?;
            }
        }
    }
    Ok(report)
}

/// What each mode may do.
fn allowed(mode: &OneMode, work: &Work, row: &DueRow) -> bool {
    match (mode, work) {
        (_, Work::Decide(_)) => true,
        (OneMode::Poll, Work::Route) => false,
        (OneMode::Poll, _) => true,
        // Dispatching never checks, except the reconciliation a "sent before" answer makes due at once.
        (_, Work::Check { .. }) => row.facts.reconciling,
        _ => true,
    }
}

/// What claiming a placement came to.
enum Claim {
    /// Claimed and committed, with a permit of the provider's: send it.
    Job(super::LaneProvider, Box<PlaceJob>, i32),
    /// Nothing to send (a configuration stop, or a dry run).
    Nothing,
    /// The provider is at its limit of calls in flight (this provider's name): nothing claimed.
    NoPermit(String),
}

/// Claim the placement in `tx` and commit it (or, for a dry run, describe it and roll back).
/// A permit of the provider's is taken first: its limit on calls in flight holds for commands
/// too.
fn claim_placement(
    mut tx: crate::db::Transaction<'_>,
    providers: &Providers,
    row: DueRow,
    opts: &OneOptions,
    report: &mut OneReport,
) -> Result<Claim> {
    let lp = providers.get(&mut tx, row.facts.lane)?;
    let dry_run = matches!(opts.mode, OneMode::Operator { dry_run: true, .. });
    let slot =
        if dry_run { Some(-1) } else { permits::acquire(&mut tx, lp.id, permits::this_process(), 1, opts.timing.lease)?.pop() };
    let Some(slot) = slot else {
        finish(tx, opts)?;
        return Ok(Claim::NoPermit(lp.name));
    };
    // Careful placements (`domain::provider_health::pace`) go one at a time across every
    // process: a command takes the provider's careful permit too, or waits for it as for a slot.
    let holder = permits::this_process();
    let careful = !dry_run && careful_now(&mut tx, lp.id)?;
    let careful_permit = if careful { permits::acquire_careful(&mut tx, lp.id, holder, opts.timing.lease)? } else { None };
    if careful && careful_permit.is_none() {
        permits::release(&mut tx, lp.id, holder, &[slot])?;
        finish(tx, opts)?;
        return Ok(Claim::NoPermit(lp.name));
    }
    let claimed = claim_for_provider(&mut tx, &lp, vec![row], opts.timing)?;
    for w in &claimed.decided {
        note(report, w);
    }
    let Some(mut job) = claimed.places.into_iter().next() else {
        if !dry_run {
            permits::release(&mut tx, lp.id, holder, &[slot])?;
        }
        if let Some(own) = &careful_permit {
            permits::release_careful(&mut tx, lp.id, own)?;
        }
        finish(tx, opts)?;
        return Ok(Claim::Nothing);
    };
    // Recording the answer gives it back (`record::placed`).
    job.careful = careful_permit;
    if dry_run {
        let described = match &lp.adapter {
            Ok(a) => a.describe_placement(&job.request),
            Err(why) => format!("nothing would be sent: {why}"),
        };
        report.dry_run = Some((lp.name.clone(), described));
        tx.rollback()?;
        return Ok(Claim::Nothing);
    }
    tx.commit()?;
    Ok(Claim::Job(lp, Box::new(job), slot))
}

/// Do placements to this provider go one at a time now?
fn careful_now(tx: &mut crate::db::Transaction<'_>, provider_id: i64) -> Result<bool> {
    let (pace, _) = crate::db::provider_health::placement_pace(tx, provider_id)?;
    Ok(matches!(pace, crate::domain::provider_health::Pace::OneAtATime(_)))
}

/// What `run_one` does after a placement's claim.
enum Next {
    /// The next pass (the placement was sent and recorded).
    Go,
    /// The same pass again, after a short wait for a permit (the wait has its own deadline).
    Waited,
    Stop,
}

/// Send a claimed placement, or wait for a permit.
fn place_claimed(
    client: &mut Client,
    claim: Claim,
    opts: &OneOptions,
    permit_wait: Instant,
    report: &mut OneReport,
) -> Result<Next> {
    Ok(match claim {
        Claim::Job(lp, job, slot) => {
            send_and_record(client, &lp, *job, slot, opts, report)?;
            Next::Go
        }
        Claim::Nothing => Next::Stop,
        Claim::NoPermit(name) if wait_for_permit(&name, permit_wait, report) => Next::Waited,
        Claim::NoPermit(_) => Next::Stop,
    })
}

/// Wait a little for a permit, until `until`; false when the time is up (the lanes place the
/// order when a permit frees up: it stays due).
fn wait_for_permit(provider: &str, until: Instant, report: &mut OneReport) -> bool {
    if Instant::now() >= until {
        report.steps.push(format!(
            "provider {provider} is at its limit of calls in flight: the order stays due, and the daemon or `orderctl sweep` sends it"
        ));
        return false;
    }
    std::thread::sleep(Duration::from_millis(25));
    true
}

/// The call, then its answer written under the placement's lease, and the permit given back.
fn send_and_record(
    client: &mut Client,
    lp: &super::LaneProvider,
    job: PlaceJob,
    slot: i32,
    opts: &OneOptions,
    report: &mut OneReport,
) -> Result<()> {
    let adapter = lp.adapter.clone().map_err(Error::internal)?;
    report.calls += 1;
    let placed = place::placement(job, adapter.as_ref(), opts.timing);
    let mut tx = client.transaction()?;
    record::provider_facts(&mut tx, lp, [&placed])?;
    let w = record::placed(&mut tx, lp, &placed)?;
    transitions::apply(&mut tx, std::slice::from_ref(&w))?;
    permits::release(&mut tx, lp.id, permits::this_process(), &[slot])?;
    tx.commit()?;
    note(report, &w);
    Ok(())
}

fn write(client: &mut Client, writes: &[Write], report: &mut OneReport) -> Result<()> {
    let mut tx = client.transaction()?;
    transitions::apply(&mut tx, writes)?;
    tx.commit()?;
    for w in writes {
        note(report, w);
    }
    Ok(())
}

fn write_and_relock(
    tx: &mut crate::db::Transaction<'_>,
    row: &DueRow,
    t: lifecycle::Transition,
    lease: Option<i64>,
    report: &mut OneReport,
) -> Result<DueRow> {
    let w = Write { order_id: row.id, lease, placement: None, transition: t, steps: vec![] };
    transitions::apply(tx, std::slice::from_ref(&w))?;
    note(report, &w);
    relock(tx, row.id)
}

fn relock(tx: &mut crate::db::Transaction<'_>, id: Uuid) -> Result<DueRow> {
    claims::lock_ids(tx, &[id], true)?.pop().ok_or_else(|| Error::internal("an order vanished while it was locked"))
}

/// Keep a written step for the command's report, and say it on stderr (`-v`).
fn note(report: &mut OneReport, w: &Write) {
    if let Some(e) = &w.transition.event {
        log::info!("order {}: {}", w.order_id, e.message);
        for s in &w.steps {
            log::debug!("order {}:   {}: {}", w.order_id, s.step, s.message);
        }
        report.steps.push(e.message.clone());
    }
}

fn finish(tx: crate::db::Transaction<'_>, opts: &OneOptions) -> Result<()> {
    match opts.mode {
        OneMode::Operator { dry_run: true, .. } => tx.rollback()?,
        _ => tx.commit()?,
    }
    Ok(())
}

/// An operator's command the lifecycle refuses: exit 5 with what to do instead (exit 8 when the
/// order needs an operator's check first).
pub fn refusal(r: lifecycle::Refusal) -> Error {
    let e = if r.needs_action { Error::needs_action(r.message) } else { Error::refused(r.message) };
    e.with_hint(r.hint)
}
