//! Two steps written as one row version. When the policy checks at once (`--first-check 0s`),
//! a lane's caller asks for the order's status right after the provider accepted it, under the
//! placement's claim. Writing the placement's answer and then the check's would rewrite the
//! order's row twice in one transaction (two row versions, each with its index entries, for one
//! order's one step): instead the check is judged here from the facts the placement's answer
//! leaves, and the two transitions become one, carrying both history entries.

use super::provider::{checked, placed, CheckContext, PlacementContext};
use super::{Facts, FirstStep, Money, Schedule, Set, State, Transition};
use crate::domain::answers::{CheckOutcome, PlacementOutcome};

/// A placement's answer and the status check made right after it under the same claim, as one
/// transition. The check is judged from the facts the placement's answer leaves, exactly as if
/// that answer had been written first. When the answer leaves no check due at once with the
/// provider (anything but a plain acceptance), the placement's answer alone: the check's answer
/// is not used, and the order's next check is made as scheduled (a status check may repeat).
pub fn placed_then_checked(
    f: &Facts,
    outcome: &PlacementOutcome,
    pctx: &PlacementContext,
    answer: &CheckOutcome,
    learned_id: Option<&str>,
    cctx: &CheckContext,
) -> Transition {
    let first = placed(f, outcome, pctx);
    let after = f.after(&first);
    if !mergeable_first(&first) || State::of(&after) != State::WithProvider {
        return first;
    }
    let second = checked(&after, answer, learned_id, cctx);
    first.then(second, &after)
}

/// A first step whose effects the merge keeps whole: its check due at once, and nothing of it
/// that a second step could overwrite or double (a notice, money, a final status, a forwarding,
/// a cleared reference, an event it lacks).
fn mergeable_first(t: &Transition) -> bool {
    matches!(t.schedule, Schedule::Now | Schedule::In(std::time::Duration::ZERO))
        && t.notice.is_none()
        && t.money == Money::None
        && t.final_status().is_none()
        && t.forwarded_to.is_none()
        && t.reference != Set::Clear
        && t.event.is_some()
        && t.first.is_none()
}

impl Facts {
    /// The facts a transition leaves: what `db::transitions` writes, for the columns the
    /// lifecycle reads.
    pub fn after(&self, t: &Transition) -> Facts {
        let set = |s: &Set<String>, old: &Option<String>| match s {
            Set::Keep => old.clone(),
            Set::To(v) => Some(v.clone()),
            Set::Clear => None,
        };
        Facts {
            number: self.number,
            status: t.status.unwrap_or(self.status),
            external: t.external.unwrap_or(self.external),
            attention: match t.attention {
                Set::Keep => self.attention,
                Set::To(a) => Some(a),
                Set::Clear => None,
            },
            reconciling: t.reconciling.unwrap_or(self.reconciling),
            operator_forced: t.operator_forced.unwrap_or(self.operator_forced),
            lane: t.lane.unwrap_or(self.lane),
            provider_id: t.provider_id.or(self.provider_id),
            reference: set(&t.reference, &self.reference),
            scheduled: match t.schedule {
                Schedule::Keep => self.scheduled,
                Schedule::Off => false,
                Schedule::Now | Schedule::In(_) => true,
            },
            checks: t.checks.unwrap_or(self.checks),
            no_news: t.no_news.unwrap_or(self.no_news),
            placement_attempts: t.placement_attempts.unwrap_or(self.placement_attempts),
            price: self.price,
            late_pin: t.late_pin.clone().or_else(|| self.late_pin.clone()),
            forwarded: self.forwarded || t.forwarded_to.is_some(),
            pin: t.pin.clone().or_else(|| self.pin.clone()),
            operator_reason: t.operator_reason.clone().or_else(|| self.operator_reason.clone()),
            settlement: t.settlement.or(self.settlement),
            expects_pin: self.expects_pin,
        }
    }
}

impl Transition {
    /// This transition and then `next` (judged from `between`, the facts this one leaves), as
    /// one: every column `next` sets wins, every other keeps what this one set, so the row
    /// written once equals the row written twice. The placement's outcome is this one's (the
    /// writer records an outcome only on a placement still in flight, so a second word would
    /// be dropped anyway); this one's history entry is kept as `first`.
    fn then(self, next: Transition, between: &Facts) -> Transition {
        let first = self.event.clone().map(|event| {
            Box::new(FirstStep {
                event,
                status: between.status,
                external: between.external,
                placement_message: self.placement_message().map(str::to_string),
            })
        });
        Transition {
            status: next.status.or(self.status),
            external: next.external.or(self.external),
            attention: later(next.attention, self.attention, Set::Keep),
            reconciling: next.reconciling.or(self.reconciling),
            schedule: later(next.schedule, self.schedule, Schedule::Keep),
            lane: next.lane.or(self.lane),
            provider_id: next.provider_id.or(self.provider_id),
            reference: later(next.reference, self.reference, Set::Keep),
            external_order_id: next.external_order_id.or(self.external_order_id),
            checks: next.checks.or(self.checks),
            no_news: next.no_news.or(self.no_news),
            placement_attempts: next.placement_attempts.or(self.placement_attempts),
            message: next.message.or(self.message),
            pin: next.pin.or(self.pin),
            late_pin: next.late_pin.or(self.late_pin),
            sent: self.sent || next.sent,
            completed: self.completed || next.completed,
            operator_forced: next.operator_forced.or(self.operator_forced),
            operator_reason: next.operator_reason.or(self.operator_reason),
            settlement: next.settlement.or(self.settlement),
            cost: next.cost.or(self.cost),
            forwarded_to: next.forwarded_to.or(self.forwarded_to),
            placement: self.placement.or(next.placement),
            money: later(next.money, self.money, Money::None),
            event: next.event,
            notice: next.notice.or(self.notice),
            first,
        }
    }
}

/// The second step's change of a column, or the first's where the second leaves it as it is.
fn later<T: PartialEq>(next: T, first: T, unchanged: T) -> T {
    if next == unchanged {
        first
    } else {
        next
    }
}
