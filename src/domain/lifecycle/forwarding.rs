//! An order forwarded to another tenant (internal routing). The routing lane creates the
//! upstream order (charged to the account, in the upstream tenant) in the same transaction as
//! [`forwarded`] moves this one to `sent`: no provider call, no reference to reconcile, so it
//! happens exactly once by construction. When the upstream order reaches a final status, the
//! one writer (`db::transitions`) writes [`upstream_finished`] for this order in the same
//! transaction: approved with the same PIN, or rejected and refunded.

use super::{Attention, Facts, Money, Notice, Schedule, Set, State, Transition};
use crate::domain::status::{ExternalStatus, OrderStatus};

/// The order a forwarded order became, as its own tenant numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamOrder<'a> {
    pub tenant: &'a str,
    pub number: i64,
}

/// How the upstream order finished. A rejection carries only a neutral reason code
/// ([`neutral_reason`]): the upstream tenant's operator notes, provider names and provider
/// messages are that tenant's, never the forwarding tenant's (nor its webhooks').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome<'a> {
    Approved { pin: Option<&'a str> },
    Rejected { reason: &'static str },
}

/// The neutral reason code of an upstream order's rejection, from the kind of the history entry
/// that rejected it: who decided, never what they wrote.
pub fn neutral_reason(event_kind: &str) -> &'static str {
    match event_kind {
        k if k.starts_with("operator.") => "rejected_by_operator",
        k if k.starts_with("upstream.") => "rejected_upstream",
        "check.cancelled" | "dispatch" => "cancelled_by_provider",
        _ => "rejected",
    }
}

/// The order was forwarded: upstream order `to` exists now, paid by the account there.
pub fn forwarded(_f: &Facts, to: uuid::Uuid, up: UpstreamOrder) -> Transition {
    Transition {
        external: Some(ExternalStatus::Sent),
        attention: Set::Clear,
        reconciling: Some(false),
        lane: Some(0),
        schedule: Schedule::Off,
        sent: true,
        forwarded_to: Some(to),
        message: Some(format!("forwarded to {} as order {}", up.tenant, up.number)),
        ..Transition::default()
    }
    .event(
        "dispatch",
        format!(
            "forwarded to {} as order {} (no provider call; {}'s own routing takes it from there): this order finishes when that one does",
            up.tenant, up.number, up.tenant
        ),
    )
}

/// The upstream tenant refused the forwarded order (the account's balance and overdraft do not
/// cover it, its package is disabled): nothing was created there, nothing is refunded here; an
/// operator fixes the cause and dispatches again, or rejects.
pub fn forward_refused(f: &Facts, tenant: &str, why: &str) -> Transition {
    let n = f.number;
    Transition {
        attention: Set::To(Attention::ForwardRefused),
        reconciling: Some(false),
        lane: Some(0),
        schedule: Schedule::Off,
        message: Some(format!("not forwarded: {tenant} refused it: {why}")),
        notice: Some(Notice::NeedsAction),
        ..Transition::default()
    }
    .event(
        "dispatch",
        format!(
            "not forwarded: {tenant} refused it ({why}); the order waits for an operator: fix the cause, then `orderctl dispatch {n}`, or `orderctl reject {n} --reason TEXT` (no refund until then)"
        ),
    )
}

/// The upstream order reached a final status (by its provider, its code stock, its operator or
/// its own upstream). None when this order has nothing to record (a row edited by hand).
pub fn upstream_finished(f: &Facts, up: UpstreamOrder, outcome: UpstreamOutcome) -> Option<Transition> {
    let (tenant, number) = (up.tenant, up.number);
    match (State::of(f), outcome) {
        (State::Forwarded, UpstreamOutcome::Approved { pin }) => Some(
            Transition {
                status: Some(OrderStatus::Approved),
                external: Some(ExternalStatus::Done),
                attention: Set::Clear,
                schedule: Schedule::Off,
                pin: pin.map(str::to_string),
                message: Some(format!("delivered by {tenant} (order {number})")),
                completed: true,
                notice: Some(Notice::Approved),
                ..Transition::default()
            }
            .event(
                "upstream.approved",
                format!(
                    "{tenant} approved order {number}{}: this order is approved with the same PIN",
                    if pin.is_some() { ", PIN received" } else { "" }
                ),
            ),
        ),
        (State::Forwarded, UpstreamOutcome::Rejected { reason }) => Some(
            Transition {
                status: Some(OrderStatus::Rejected),
                external: Some(ExternalStatus::Failed),
                attention: Set::Clear,
                schedule: Schedule::Off,
                message: Some(format!("rejected by {tenant} (order {number}): {reason}")),
                completed: true,
                money: Money::Refund,
                notice: Some(Notice::Rejected),
                ..Transition::default()
            }
            .event(
                "upstream.rejected",
                format!("{tenant} rejected order {number} ({reason}): this order is rejected, refunded {}", f.price),
            ),
        ),
        // An operator decided this order (--force) while the upstream order was open.
        (State::Watched, UpstreamOutcome::Approved { pin }) if f.forwarded => Some(late_delivery(f, up, pin)),
        (State::Watched, UpstreamOutcome::Rejected { reason }) if f.forwarded => {
            Some(Transition { external: Some(ExternalStatus::Failed), schedule: Schedule::Off, ..Transition::default() }.event(
                "watch.ended",
                format!("{tenant} rejected order {number} ({reason}); the operator's decision stands, nothing to settle"),
            ))
        }
        // Rejected and refunded here (or approved by hand, forced), then delivered upstream after
        // all: its operator settled a late delivery there by charging the account again.
        (State::Rejected, UpstreamOutcome::Approved { pin }) if f.forwarded => Some(late_delivery(f, up, pin)),
        (State::Approved, UpstreamOutcome::Approved { pin }) if f.forwarded && f.operator_forced => {
            Some(late_delivery(f, up, pin))
        }
        _ => None,
    }
}

/// The upstream order delivered after this order was decided: the PIN is kept as the late PIN
/// and the order flagged to be settled, like a provider's late delivery.
fn late_delivery(f: &Facts, up: UpstreamOrder, pin: Option<&str>) -> Transition {
    let n = f.number;
    let (attention, settle) = if f.status == OrderStatus::Rejected {
        (Attention::DeliveredAfterRefund, format!("`orderctl settle {n} --recharge` or `--write-off`"))
    } else {
        (Attention::DeliveredAfterManualApproval, format!("`orderctl settle {n} --write-off`"))
    };
    Transition {
        // A forced decision's order is still `sent`: the upstream's delivery is recorded as done.
        external: (f.status == OrderStatus::Approved || f.operator_forced).then_some(ExternalStatus::Done),
        attention: Set::To(attention),
        schedule: Schedule::Off,
        late_pin: pin.map(str::to_string),
        message: Some(format!("{} delivered order {} after this order was decided", up.tenant, up.number)),
        notice: Some(Notice::NeedsAction),
        ..Transition::default()
    }
    .event(
        "upstream.late_delivery",
        format!(
            "{} delivered order {} after this order was {} by an operator{}; settle it with {settle}",
            up.tenant,
            up.number,
            f.status,
            if pin.is_some() { " (PIN stored as the late PIN)" } else { "" }
        ),
    )
}
