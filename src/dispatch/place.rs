//! The provider calls. Nothing here touches the database: a placement and a check each take a
//! claimed job, call the provider once and return what it said. A placement whose claim is too
//! old to finish inside its lease is never sent.

use super::claim::{CheckJob, PlaceJob};
use super::Timing;
use crate::db::transitions::StepRecord;
use crate::provider::{scrub, CheckAnswer, CheckKey, CheckOutcome, PlacementOutcome, Provider};
use std::time::{Duration, Instant};

/// What came of a placement job.
#[derive(Debug, Clone)]
pub enum Sent {
    /// The provider answered (or did not, which is an answer too: ambiguous).
    Answered(PlacementOutcome),
    /// Not sent: the claim could no longer cover the call.
    NotSent(String),
    /// Not sent: the provider had just refused another order for a reason that describes the
    /// provider (no balance, maintenance); the fallback, or a wait, without spending the budget.
    HeldBack(String),
    /// Not sent: claimed while placements to the provider went out freely, which have since
    /// turned careful (one at a time), or handed back by a stopping lane; due again at once,
    /// without spending the budget.
    Deferred(String),
    /// Not sent: no turn under the provider's rate limit came before the call's time ran out.
    /// Written as `Deferred`; told apart for the metrics (a steady rate of these means the
    /// limit is too low for the work).
    NoTurn(String),
}

/// A placement with the provider's answer.
#[derive(Debug, Clone)]
pub struct Placed {
    pub job: PlaceJob,
    pub sent: Sent,
    pub took: Duration,
    /// The first status check, made right after the placement when the policy checks at once
    /// (`first_check_at_once`), with how long it took; written with the placement's answer.
    pub first_check: Option<(CheckAnswer, Duration)>,
}

/// A check job with the provider's answer.
#[derive(Debug, Clone)]
pub struct Checked {
    pub job: CheckJob,
    pub answer: CheckAnswer,
    pub took: Duration,
}

/// Send one placement, unless its claim is too old: the call may take a whole request timeout,
/// and it must end before the lease does, or another worker could reconcile (and place) the
/// same reference while this call is still under way.
pub fn placement(mut job: PlaceJob, adapter: &dyn Provider, timing: Timing) -> Placed {
    let age = job.claimed.elapsed();
    if age + timing.request_timeout >= timing.lease {
        let why = format!(
            "its claim was {} old and the call could outlast its lease of {}",
            humantime::format_duration(Duration::from_millis(age.as_millis() as u64)),
            humantime::format_duration(timing.lease)
        );
        job.steps.push(StepRecord::now("place", format!("not sent: {why}")));
        return Placed { job, sent: Sent::NotSent(why), took: Duration::ZERO, first_check: None };
    }
    let started = Instant::now();
    let outcome = scrub_placement(adapter.place(&job.request), &adapter.config().secrets());
    let took = started.elapsed();
    if let PlacementOutcome::NotSent { reason } = outcome {
        // The request never left (no turn under the rate limit in time): nothing to reconcile
        // and nothing spent; due again at once.
        job.steps.push(StepRecord::now("place", format!("not sent: {reason}")));
        return Placed { job, sent: Sent::NoTurn(reason), took, first_check: None };
    }
    job.steps.push(StepRecord::now(
        "place",
        format!("{} answered in {} ms: {}", adapter.config().name, took.as_millis(), summary(&outcome)),
    ));
    Placed { job, sent: Sent::Answered(outcome), took, first_check: None }
}

/// A lane's placement under a policy whose first check is due at once (`--first-check 0s`):
/// the check is made right away by the same caller, under the same claim, and both answers are
/// written as one transition (`lifecycle::placed_then_checked`): the check needs no claim of its
/// own, and the order's row is written once for both. Only for an accepted placement with nothing decided yet, and only while
/// the claim still covers another whole request (the write is guarded by the claim's lease: a
/// late one is refused and the order reconciled, as for any late answer).
pub fn first_check_at_once(placed: &mut Placed, adapter: &dyn Provider, first_check: Duration, timing: Timing) {
    let Sent::Answered(PlacementOutcome::Accepted { external_order_id, early: None, .. }) = &placed.sent else { return };
    if !first_check.is_zero() || placed.job.claimed.elapsed() + timing.request_timeout >= timing.lease {
        return;
    }
    let key = CheckKey { reference: placed.job.reference().to_string(), external_order_id: external_order_id.clone() };
    let started = Instant::now();
    let answer = adapter.check(&key);
    let answer = CheckAnswer { outcome: scrub_check(answer.outcome, &adapter.config().secrets()), ..answer };
    placed.first_check = Some((answer, started.elapsed()));
}

/// Check several orders of one provider in as few calls as its protocol allows.
pub fn checks(jobs: Vec<CheckJob>, adapter: &dyn Provider) -> Vec<Checked> {
    if jobs.is_empty() {
        return vec![];
    }
    let started = Instant::now();
    let keys: Vec<_> = jobs.iter().map(|j| j.key.clone()).collect();
    let answers = if keys.len() == 1 { vec![adapter.check(&keys[0])] } else { adapter.check_many(&keys) };
    let took = started.elapsed();
    let secrets = adapter.config().secrets();
    let answers: Vec<CheckAnswer> =
        answers.into_iter().map(|a| CheckAnswer { outcome: scrub_check(a.outcome, &secrets), ..a }).collect();
    jobs.into_iter().zip(answers).map(|(job, answer)| Checked { job, answer, took }).collect()
}

/// One line for the history.
pub fn summary(o: &PlacementOutcome) -> String {
    match o {
        PlacementOutcome::Accepted { external_order_id, message, .. } => format!(
            "accepted{}{}",
            external_order_id.as_ref().map(|id| format!(" as {id}")).unwrap_or_default(),
            if message.is_empty() { String::new() } else { format!(" ({message})") }
        ),
        PlacementOutcome::Rejected { message } => format!("rejected: {message}"),
        PlacementOutcome::Ambiguous { reason } => format!("unknown outcome: {reason}"),
        PlacementOutcome::SentBefore { message } => format!("sent before: {message}"),
        PlacementOutcome::NotSent { reason } => format!("not sent: {reason}"),
    }
}

/// A second line of defence behind never formatting secrets: whatever a provider echoed back of
/// our credentials is masked before it is stored or logged.
fn scrub_placement(o: PlacementOutcome, secrets: &[String]) -> PlacementOutcome {
    match o {
        PlacementOutcome::Accepted { external_order_id, message, early, cost, balance } => PlacementOutcome::Accepted {
            cost,
            balance,
            external_order_id,
            message: scrub(&message, secrets),
            early: early.map(|e| scrub_check(e, secrets)),
        },
        PlacementOutcome::Rejected { message } => PlacementOutcome::Rejected { message: scrub(&message, secrets) },
        PlacementOutcome::Ambiguous { reason } => PlacementOutcome::Ambiguous { reason: scrub(&reason, secrets) },
        PlacementOutcome::SentBefore { message } => PlacementOutcome::SentBefore { message: scrub(&message, secrets) },
        PlacementOutcome::NotSent { reason } => PlacementOutcome::NotSent { reason: scrub(&reason, secrets) },
    }
}

fn scrub_check(o: CheckOutcome, secrets: &[String]) -> CheckOutcome {
    match o {
        CheckOutcome::Waiting { message } => CheckOutcome::Waiting { message: scrub(&message, secrets) },
        CheckOutcome::Approved { pin, message } => CheckOutcome::Approved { pin, message: scrub(&message, secrets) },
        CheckOutcome::Cancelled { message } => CheckOutcome::Cancelled { message: scrub(&message, secrets) },
        CheckOutcome::NotFound { message } => CheckOutcome::NotFound { message: scrub(&message, secrets) },
        CheckOutcome::NoNews { reason, answered } => CheckOutcome::NoNews { reason: scrub(&reason, secrets), answered },
        CheckOutcome::NotAsked { reason } => CheckOutcome::NotAsked { reason: scrub(&reason, secrets) },
    }
}
