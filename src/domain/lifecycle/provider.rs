//! What a provider's answers do to an order: a placement's outcome, a status check's outcome
//! (an order's own check, a reconciliation, a watch after an operator's decision), a claim that
//! grew too old to send, and a configuration problem found while placing.

use super::{short, Attention, Facts, Money, Notice, PlacementWord, Schedule, Set, State, Transition, MAX_PLACEMENTS};
use crate::domain::answers::{CheckOutcome, PlacementOutcome};
use crate::domain::backoff::{BackoffPolicy, NextStep};
use crate::domain::status::{ExternalStatus, OrderStatus};
use std::time::Duration;

/// The next provider routing offers when the current one cannot take the order (a definite
/// rejection or a configuration problem). The caller leaves out providers that already refused
/// this order, so a chain of fallbacks always ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub provider_id: i64,
    pub name: String,
}

/// What a placement's outcome is judged with.
#[derive(Debug, Clone)]
pub struct PlacementContext<'a> {
    /// The provider's name, for the history.
    pub provider: &'a str,
    pub policy: &'a BackoffPolicy,
    pub fallback: Option<Fallback>,
    /// This reference was sent to this provider before, in an attempt that may have reached it:
    /// a refusal now proves nothing about that one (providers.md, "A re-placement's answer is
    /// never proof of absence").
    pub resent: bool,
    /// The rejection says the provider cannot take any order like this one now (no balance,
    /// maintenance, product unavailable): with no fallback the order waits instead of failing.
    pub provider_cannot_take: bool,
}

/// Why a placement is held back before any call (`domain::provider_health::gate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBack<'a> {
    /// An operator paused the provider: the order waits, with no bound, no fallback, no flag.
    Paused(&'a str),
    /// The provider cannot take it: the fallback, else a wait up to the provider's `hold_for`
    /// (`expired`: the hold is over, the order fails as a rejection with no fallback does).
    Unavailable { reason: &'a str, expired: bool },
}

/// How often a waiting order looks again by itself whether its provider is back (and whether
/// its hold is over). A resume, a balance, a probe or a closing breaker wakes the provider's
/// waiting orders at once (`db::provider_health::wake_waiting`), so this only bounds a lost wake-up.
pub const WAIT_RECHECK: Duration = Duration::from_secs(15);

/// A placement held back before any call (nothing was sent).
pub fn held_back(f: &Facts, why: HeldBack, fallback: Option<&Fallback>) -> Transition {
    match (why, fallback) {
        (HeldBack::Paused(reason), _) => wait_for_provider(Transition::default(), f, reason),
        (HeldBack::Unavailable { reason, .. }, Some(fb)) => to_fallback(Transition::default(), fb)
            .event("dispatch", format!("{reason}; moving to fallback {} (nothing sent)", fb.name)),
        (HeldBack::Unavailable { reason, expired: true }, None) => {
            let text = format!("{reason}; the hold is over and no fallback is left");
            flag(
                Transition { reference: Set::Clear, ..Transition::default() },
                f,
                Attention::PlacementRejected,
                ExternalStatus::Failed,
                &text,
            )
            .event("dispatch", format!("{text}: the order waits for an operator (no refund until `orderctl reject`)"))
        }
        (HeldBack::Unavailable { reason, expired: false }, None) => wait_for_provider(Transition::default(), f, reason),
    }
}

/// A claimed placement not sent because its provider had just refused another order for a
/// reason that describes the provider: as [`held_back`], and the claim spends no placement of the
/// order's budget (`f` is the row as the claim left it).
pub fn held_back_after_claim(f: &Facts, reason: &str, fallback: Option<&Fallback>) -> Transition {
    let mut t = held_back(f, HeldBack::Unavailable { reason, expired: false }, fallback);
    t.placement = Some(PlacementWord::NotSent);
    if t.placement_attempts.is_none() {
        t.placement_attempts = Some(f.placement_attempts.saturating_sub(1));
    }
    t
}

/// A claimed placement not sent because the provider's placements turned careful (one at a
/// time) after it was claimed: due again at once with the same reference (it never left this
/// process), and the claim spends nothing of the order's placement budget (`f` is the row as
/// the claim left it). No event: the order's history shows the placement that follows.
pub fn deferred(f: &Facts, why: &str) -> Transition {
    Transition {
        placement: Some(PlacementWord::NotSent),
        placement_attempts: Some(f.placement_attempts.saturating_sub(1)),
        external: Some(ExternalStatus::NotSent),
        reconciling: Some(false),
        schedule: Schedule::Now,
        message: Some(format!("not sent yet: {why}")),
        ..Transition::default()
    }
}

/// The order waits, unsent, for its provider; it looks again every [`WAIT_RECHECK`]. Its
/// history says so once, when the wait starts.
fn wait_for_provider(base: Transition, f: &Facts, reason: &str) -> Transition {
    let t = Transition {
        external: Some(ExternalStatus::WaitingForProvider),
        reconciling: Some(false),
        reference: Set::Clear,
        schedule: Schedule::In(WAIT_RECHECK),
        message: Some(reason.to_string()),
        ..base
    };
    if f.external == ExternalStatus::WaitingForProvider {
        return t;
    }
    t.event("dispatch", format!("{reason}: the order waits for the provider (nothing refunded, nothing flagged)"))
}

/// What a status check's outcome is judged with. Every duration is measured on the database's
/// clock (at the claim) plus the time the call took, never against a clock of this process.
#[derive(Debug, Clone)]
pub struct CheckContext<'a> {
    pub provider: &'a str,
    pub policy: &'a BackoffPolicy,
    /// Since the order was first dispatched: the give-up deadline runs from it.
    pub since_dispatch: Duration,
    /// Since the current placement was claimed.
    pub since_placement: Duration,
    /// How long after the latest placement of the reference "not found" means it never arrived
    /// (before that a late arrival is still plausible, so it is no news): the provider's
    /// reconcile window, the same for every caller.
    pub absent_after: Duration,
    /// A random number in [0, 1) for the backoff's jitter.
    pub unit: f64,
}

/// How long an unknown placement waits before its first reconciliation check.
fn reconcile_after(policy: &BackoffPolicy) -> Duration {
    policy.first_check.min(Duration::from_secs(60))
}

/// The provider answered a placement.
pub fn placed(f: &Facts, outcome: &PlacementOutcome, ctx: &PlacementContext) -> Transition {
    pin_or_flag(f, placed_as_said(f, outcome, ctx), ctx.provider)
}

fn placed_as_said(f: &Facts, outcome: &PlacementOutcome, ctx: &PlacementContext) -> Transition {
    let reference = f.reference.as_deref().unwrap_or("?");
    match outcome {
        PlacementOutcome::Accepted { external_order_id, message, early, cost, .. } => {
            let accepted = Transition {
                placement: Some(PlacementWord::Accepted),
                cost: *cost,
                external_order_id: external_order_id.clone(),
                reconciling: Some(false),
                sent: true,
                ..Transition::default()
            };
            let what = format!("accepted by {}{}", ctx.provider, if message.is_empty() { String::new() } else { format!(" ({message})") });
            match early {
                Some(CheckOutcome::Approved { pin, message }) => approve(accepted, f, pin.clone(), message)
                    .event("dispatch", format!("{what}; delivered at once: order approved")),
                Some(CheckOutcome::Cancelled { message }) => {
                    reject(accepted, f, message).event("dispatch", format!("{what}; cancelled at once: order rejected, refunded {}", f.price))
                }
                _ => Transition {
                    external: Some(ExternalStatus::Sent),
                    // A new placement starts its own schedule (a re-placement does not inherit the checks of the one before).
                    checks: Some(0),
                    no_news: Some(0),
                    schedule: Schedule::In(ctx.policy.first_check),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                    ..accepted
                }
                .event("dispatch", format!("{what}; first status check in {}", short(ctx.policy.first_check))),
            }
        }
        PlacementOutcome::Rejected { message } => refused(f, message, ctx),
        // The request never left: nothing to reconcile, nothing spent (`dispatch::place`
        // records it so before it gets here).
        PlacementOutcome::NotSent { reason } => deferred(f, reason),
        PlacementOutcome::Ambiguous { reason } => Transition {
            reconciling: Some(true),
            placement: Some(PlacementWord::Ambiguous),
            schedule: Schedule::In(reconcile_after(ctx.policy)),
            message: Some(reason.clone()),
            ..Transition::default()
        }
        .event(
            "dispatch",
            format!(
                "outcome unknown at {} ({reason}): a status check with reference {reference} decides in {}; never placed blindly again",
                ctx.provider,
                short(reconcile_after(ctx.policy))
            ),
        ),
        PlacementOutcome::SentBefore { message } => Transition {
            reconciling: Some(true),
            placement: Some(PlacementWord::SentBefore),
            schedule: Schedule::Now,
            message: Some(message.clone()),
            ..Transition::default()
        }
        .event(
            "dispatch",
            format!("{} says reference {reference} was sent before ({message}): reconciling by a status check now", ctx.provider),
        ),
    }
}

/// A definite rejection: the provider did not take the order. The fallback gets it (one
/// recorded decision), or an operator does. A re-placement's rejection is not: the earlier
/// placement of the same reference may still be held, so the order waits for an operator who
/// checks with the provider (no fallback, no refund).
fn refused(f: &Facts, message: &str, ctx: &PlacementContext) -> Transition {
    let rejected = Transition { placement: Some(PlacementWord::Rejected), ..Transition::default() };
    let text = format!("placement rejected by {}: {message}", ctx.provider);
    if ctx.resent {
        let reference = f.reference.as_deref().unwrap_or("?");
        let held = format!("may be held by {} under reference {reference}: check before rejecting", ctx.provider);
        return flag(rejected, f, Attention::MayBeHeld, ExternalStatus::Dispatching, &held).event(
            "dispatch",
            format!(
                "the re-placement of reference {reference} was refused by {} ({message}); that proves nothing about the \
                 first placement, which {held} (no fallback, no refund: ask the provider, then `orderctl approve {n} --pin PIN` \
                 or `orderctl reject {n} --reason TEXT`)",
                ctx.provider,
                n = f.number
            ),
        );
    }
    match &ctx.fallback {
        Some(fb) => to_fallback(rejected, fb).event("dispatch", format!("{text}; moving to fallback {}", fb.name)),
        None if ctx.provider_cannot_take => wait_for_provider(rejected, f, &text),
        None => flag(rejected, f, Attention::PlacementRejected, ExternalStatus::Failed, &text).event(
            "dispatch",
            format!("{text}; no fallback left: the order waits for an operator (no refund until `orderctl reject`)"),
        ),
    }
}

/// Move the order to another provider: a fresh reference and placement budget there, due now.
fn to_fallback(base: Transition, fb: &Fallback) -> Transition {
    Transition {
        external: Some(ExternalStatus::NotSent),
        reconciling: Some(false),
        lane: Some(fb.provider_id),
        provider_id: Some(fb.provider_id),
        reference: Set::Clear,
        placement_attempts: Some(0),
        schedule: Schedule::Now,
        ..base
    }
}

/// Flag the order for an operator: nothing moves until one acts.
fn flag(base: Transition, _f: &Facts, attention: Attention, external: ExternalStatus, message: &str) -> Transition {
    Transition {
        external: Some(external),
        attention: Set::To(attention),
        reconciling: Some(false),
        schedule: Schedule::Off,
        message: Some(message.to_string()),
        notice: Some(Notice::NeedsAction),
        ..base
    }
}

fn approve(base: Transition, f: &Facts, pin: Option<String>, message: &str) -> Transition {
    Transition {
        status: Some(OrderStatus::Approved),
        external: Some(ExternalStatus::Done),
        attention: Set::Clear,
        reconciling: Some(false),
        schedule: Schedule::Off,
        pin,
        message: Some(if message.is_empty() { "approved by the provider".to_string() } else { message.to_string() }),
        completed: true,
        notice: Some(Notice::Approved),
        checks: base.checks.or(Some(f.checks)),
        ..base
    }
}

fn reject(base: Transition, _f: &Facts, message: &str) -> Transition {
    Transition {
        status: Some(OrderStatus::Rejected),
        external: Some(ExternalStatus::Failed),
        attention: Set::Clear,
        reconciling: Some(false),
        schedule: Schedule::Off,
        message: Some(if message.is_empty() {
            "cancelled by the provider".to_string()
        } else {
            format!("cancelled by the provider: {message}")
        }),
        completed: true,
        money: Money::Refund,
        notice: Some(Notice::Rejected),
        ..base
    }
}

/// A claimed placement was not sent: its claim grew older than its lease before the call could
/// start (another worker may own the order by now, which the lease guard on this write
/// settles). The reference never left this process, so the order is placed again with it.
pub fn not_sent(f: &Facts, why: &str, provider: &str) -> Transition {
    let base = Transition { placement: Some(PlacementWord::NotSent), ..Transition::default() };
    if f.placement_attempts >= MAX_PLACEMENTS {
        let text =
            format!("{MAX_PLACEMENTS} placements with {provider} claimed without a confirmed outcome; last one not sent: {why}");
        return flag(base, f, Attention::PlacementLimit, ExternalStatus::NotSent, &text)
            .event("dispatch", format!("{text}; the order waits for an operator"));
    }
    Transition {
        external: Some(ExternalStatus::NotSent),
        reconciling: Some(false),
        schedule: Schedule::Now,
        message: Some(format!("not sent: {why}")),
        ..base
    }
    .event("dispatch", format!("placement with {provider} not sent ({why}); placing it again with the same reference"))
}

/// Dispatch could not use this provider (no mapping, disabled, unusable credentials): the
/// fallback gets the order, or an operator does.
pub fn config_stop(f: &Facts, attention: Attention, message: &str, fallback: Option<&Fallback>) -> Transition {
    match fallback {
        Some(fb) => {
            to_fallback(Transition::default(), fb).event("dispatch", format!("{message}; moving to fallback {}", fb.name))
        }
        None => flag(Transition::default(), f, attention, ExternalStatus::NotSent, &format!("not sent: {message}"))
            .event("dispatch", format!("stopped: {message}")),
    }
}

/// An approval without a PIN for a product that delivers PINs is not an approval: the order is
/// flagged for an operator, who asks the provider for the PIN.
fn pin_or_flag(f: &Facts, t: Transition, provider: &str) -> Transition {
    if !(f.expects_pin && t.status == Some(OrderStatus::Approved) && t.pin.is_none()) {
        return t;
    }
    let text = format!("{provider} approved the order without a PIN, but this product delivers PINs");
    let what = t.event.as_ref().map(|e| e.message.clone()).unwrap_or_default();
    let base = Transition { status: None, completed: false, pin: None, ..t };
    flag(base, f, Attention::PinMissing, ExternalStatus::Done, &text).event(
        "check.pin_missing",
        format!(
            "{what}; {text}: not approved, the order waits for an operator (ask {provider} for the PIN, then `orderctl approve {} --pin PIN`)",
            f.number
        ),
    )
}

/// The provider answered a status check (`learned_id`: its own order id, when the answer named it).
pub fn checked(f: &Facts, answer: &CheckOutcome, learned_id: Option<&str>, ctx: &CheckContext) -> Transition {
    // A check never asked changes nothing, until the order's time is up: then it counts as an
    // unanswered check, so the give-up and its flag come as they do for any (the bound).
    let unanswered;
    let answer = match answer {
        CheckOutcome::NotAsked { reason } if ctx.since_dispatch >= ctx.policy.give_up_after => {
            unanswered = CheckOutcome::failed(reason.clone());
            &unanswered
        }
        other => other,
    };
    let mut t = match State::of(f) {
        State::Placing | State::Reconciling => reconciled(f, answer, ctx),
        State::WithProvider => status(f, answer, ctx),
        State::Watched => watched(f, answer, ctx),
        other => Transition { schedule: Schedule::Off, ..Transition::default() }
            .event("check.ignored", format!("a status answer arrived for an order that is {other:?}; nothing changed")),
    };
    if t.external_order_id.is_none() {
        t.external_order_id = learned_id.map(str::to_string);
    }
    pin_or_flag(f, t, ctx.provider)
}

/// The attempt number, answered or not, for the history.
fn attempt(f: &Facts) -> u32 {
    f.checks + f.no_news + 1
}

fn with_message(word: &str, message: &str) -> String {
    if message.is_empty() {
        word.to_string()
    } else {
        format!("{word} ({message})")
    }
}

/// How soon a check that was never asked (no turn under the rate limit) is due again.
const NOT_ASKED_AGAIN: Duration = Duration::from_secs(1);

/// A check whose call never left: nothing happened, nothing is counted (no check, no
/// "no news", no event in the history); due again shortly.
fn not_asked() -> Transition {
    Transition { schedule: Schedule::In(NOT_ASKED_AGAIN), ..Transition::default() }
}

/// An order the provider holds.
fn status(f: &Facts, answer: &CheckOutcome, ctx: &CheckContext) -> Transition {
    let n = attempt(f);
    let answered = (f.checks + 1).min(ctx.policy.max_checks.max(f.checks));
    match answer {
        CheckOutcome::NotAsked { .. } => not_asked(),
        CheckOutcome::Approved { pin, message } => {
            approve(Transition { checks: Some(answered), ..Transition::default() }, f, pin.clone(), message)
                .event("check.approved", format!("check #{n}: approved{}", if pin.is_some() { ", PIN received" } else { "" }))
        }
        CheckOutcome::Cancelled { message } => reject(Transition { checks: Some(answered), ..Transition::default() }, f, message)
            .event(
                "check.cancelled",
                format!("check #{n}: {}; refunded {}", with_message("cancelled by the provider", message), f.price),
            ),
        CheckOutcome::Waiting { message } => {
            let base = Transition { external: Some(ExternalStatus::Processing), checks: Some(answered), ..Transition::default() };
            next(base, f, answered, f.no_news, ctx, &format!("check #{n}: {}", with_message("waiting", message)), message)
        }
        CheckOutcome::NotFound { message } | CheckOutcome::NoNews { reason: message, .. } => {
            let word = if matches!(answer, CheckOutcome::NotFound { .. }) { "not found (no news)" } else { "no news" };
            let base = Transition { no_news: Some(f.no_news + 1), ..Transition::default() };
            next(base, f, f.checks, f.no_news + 1, ctx, &format!("check #{n}: {}", with_message(word, message)), message)
        }
    }
}

/// Schedule the next check by the backoff policy, or give up at the deadline.
fn next(base: Transition, f: &Facts, answered: u32, no_news: u32, ctx: &CheckContext, what: &str, message: &str) -> Transition {
    let kind = if no_news > f.no_news { "check.no_news" } else { "check.waiting" };
    let message = Some(if message.is_empty() { what.to_string() } else { message.to_string() });
    match ctx.policy.next_step(ctx.since_dispatch, answered, no_news, ctx.unit) {
        NextStep::CheckIn(d) => {
            Transition { schedule: Schedule::In(d), message, ..base }.event(kind, format!("{what}; next check in {}", short(d)))
        }
        NextStep::GiveUpIn(d) => Transition { schedule: Schedule::In(d), message, ..base }
            .event(kind, format!("{what}; no checks left, giving up in {} unless an answer comes", short(d))),
        NextStep::GiveUpNow => give_up(base, f, ctx, what),
    }
}

/// No final answer before the deadline. An order the provider may still deliver is never
/// refunded silently: it waits for an operator. A watched order (an operator already decided)
/// simply stops being watched.
fn give_up(base: Transition, f: &Facts, ctx: &CheckContext, what: &str) -> Transition {
    let text = ctx.policy.give_up_message();
    if State::of(f) == State::Watched {
        // The provider may still have delivered what the operator refunded (or delivered by
        // hand): an operator asks it, and settles.
        return flag(base, f, Attention::GivenUp, ExternalStatus::Failed, &format!("watched after the operator's decision: {text}"))
            .event(
                "gave_up",
                format!(
                    "{what}; {text} while watched after the operator's decision: ask the provider, then `orderctl settle {} --write-off` closes it",
                    f.number
                ),
            );
    }
    flag(base, f, Attention::GivenUp, ExternalStatus::Failed, &text)
        .event("gave_up", format!("{what}; {text}; the provider may still deliver: an operator decides (no refund)"))
}

/// A placement whose outcome is unknown (or whose claim ran out without a recorded outcome):
/// the status check with its reference decides whether it exists.
fn reconciled(f: &Facts, answer: &CheckOutcome, ctx: &CheckContext) -> Transition {
    let n = attempt(f);
    let reference = f.reference.as_deref().unwrap_or("?");
    let found =
        Transition { placement: Some(PlacementWord::Accepted), reconciling: Some(false), sent: true, ..Transition::default() };
    match answer {
        CheckOutcome::NotAsked { .. } => not_asked(),
        CheckOutcome::Approved { .. } | CheckOutcome::Cancelled { .. } => {
            let mut t = status(f, answer, ctx);
            t.placement = found.placement;
            t.sent = true;
            t.reconciling = Some(false);
            t.event = t.event.map(|mut e| {
                e.message = format!("reconciliation found reference {reference} at {}; {}", ctx.provider, e.message);
                e
            });
            t
        }
        CheckOutcome::Waiting { message } => {
            let answered = f.checks + 1;
            let base = Transition { external: Some(ExternalStatus::Processing), checks: Some(answered), ..found };
            let what = format!(
                "check #{n}: reconciliation found reference {reference} at {}: {}",
                ctx.provider,
                with_message("waiting", message)
            );
            next(base, f, answered, f.no_news, ctx, &what, message)
        }
        CheckOutcome::NotFound { message } if ctx.since_placement >= ctx.absent_after => absent(f, message, ctx),
        CheckOutcome::NotFound { message } | CheckOutcome::NoNews { reason: message, .. } => {
            let word = if matches!(answer, CheckOutcome::NotFound { .. }) {
                "not found yet (the placement may still arrive: no news)"
            } else {
                "no news"
            };
            let base = Transition { no_news: Some(f.no_news + 1), ..Transition::default() };
            next(
                base,
                f,
                f.checks,
                f.no_news + 1,
                ctx,
                &format!("check #{n}: reconciling reference {reference}: {}", with_message(word, message)),
                message,
            )
        }
    }
}

/// The provider has no order with the reference, long after any late arrival: the placement
/// never arrived. It is sent again with the same reference, within the placement budget.
fn absent(f: &Facts, message: &str, ctx: &CheckContext) -> Transition {
    let reference = f.reference.as_deref().unwrap_or("?");
    let base = Transition { placement: Some(PlacementWord::Absent), ..Transition::default() };
    let found = format!("{} has no order with reference {reference} ({message})", ctx.provider);
    if State::of(f) == State::Watched {
        return Transition { external: Some(ExternalStatus::Failed), schedule: Schedule::Off, reconciling: Some(false), ..base }
            .event("watch.ended", format!("{found}: the provider never received it; nothing to settle"));
    }
    if f.placement_attempts >= MAX_PLACEMENTS {
        let text = format!("{found}; {} placements with {} never confirmed", f.placement_attempts, ctx.provider);
        return flag(base, f, Attention::PlacementLimit, ExternalStatus::Failed, &text)
            .event("reconcile.absent", format!("{text}: the placement budget is used up, the order waits for an operator"));
    }
    Transition {
        external: Some(ExternalStatus::NotSent),
        reconciling: Some(false),
        schedule: Schedule::Now,
        message: Some(found.clone()),
        ..base
    }
    .event(
        "reconcile.absent",
        format!("{found}: placing it again with the same reference (placement {} of {MAX_PLACEMENTS})", f.placement_attempts + 1),
    )
}

/// An order an operator decided (`--force`) while the provider held it: its late answer is
/// recorded, and a delivery flags the order to be settled.
fn watched(f: &Facts, answer: &CheckOutcome, ctx: &CheckContext) -> Transition {
    let n = attempt(f);
    match answer {
        CheckOutcome::NotAsked { .. } => not_asked(),
        CheckOutcome::Approved { pin, message } => {
            let attention = if f.status == OrderStatus::Rejected {
                Attention::DeliveredAfterRefund
            } else {
                Attention::DeliveredAfterManualApproval
            };
            let settle = if attention == Attention::DeliveredAfterRefund {
                format!("`orderctl settle {} --recharge` or `--write-off`", f.number)
            } else {
                format!("`orderctl settle {} --write-off`", f.number)
            };
            Transition {
                external: Some(ExternalStatus::Done),
                attention: Set::To(attention),
                reconciling: Some(false),
                schedule: Schedule::Off,
                late_pin: pin.clone(),
                placement: (f.external == ExternalStatus::Dispatching).then_some(PlacementWord::Accepted),
                message: Some(format!(
                    "the provider delivered after the operator's decision{}",
                    if message.is_empty() { String::new() } else { format!(" ({message})") }
                )),
                notice: Some(Notice::NeedsAction),
                ..Transition::default()
            }
            .event(
                "check.late_delivery",
                format!(
                    "check #{n}: {} delivered after the operator's decision{}; settle it with {settle}",
                    ctx.provider,
                    if pin.is_some() { " (PIN stored)" } else { "" }
                ),
            )
        }
        CheckOutcome::Cancelled { message } => Transition {
            external: Some(ExternalStatus::Failed),
            reconciling: Some(false),
            schedule: Schedule::Off,
            placement: (f.external == ExternalStatus::Dispatching).then_some(PlacementWord::Accepted),
            ..Transition::default()
        }
        .event(
            "watch.ended",
            format!(
                "check #{n}: {}; the operator's decision stands, nothing to settle",
                with_message("cancelled by the provider", message)
            ),
        ),
        CheckOutcome::NotFound { message }
            if f.external == ExternalStatus::Dispatching && ctx.since_placement >= ctx.absent_after =>
        {
            absent(f, message, ctx)
        }
        CheckOutcome::Waiting { message } => {
            // A placement the operator's decision overtook is found at the provider.
            let found = f.external == ExternalStatus::Dispatching;
            let base = Transition {
                checks: Some(f.checks + 1),
                external: found.then_some(ExternalStatus::Processing),
                placement: found.then_some(PlacementWord::Accepted),
                sent: found,
                reconciling: Some(false),
                ..Transition::default()
            };
            next(
                base,
                f,
                f.checks + 1,
                f.no_news,
                ctx,
                &format!("check #{n} (watched after the operator's decision): {}", with_message("waiting", message)),
                message,
            )
        }
        CheckOutcome::NotFound { message } | CheckOutcome::NoNews { reason: message, .. } => {
            let base = Transition { no_news: Some(f.no_news + 1), ..Transition::default() };
            next(
                base,
                f,
                f.checks,
                f.no_news + 1,
                ctx,
                &format!("check #{n} (watched after the operator's decision): {}", with_message("no news", message)),
                message,
            )
        }
    }
}
