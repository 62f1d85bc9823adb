//! An operator's commands: approve, reject, dispatch, settle. Each is allowed in some states and
//! refused in the others with what to do instead.
//!
//! The rule that matters most: while a provider holds an order (a placement was sent and not
//! refused), approving or rejecting it could pay twice or refund what the provider then
//! delivers, so it is refused unless forced; a forced decision keeps the order watched and
//! records whatever the provider answers later.

use super::states::{state_column, StateColumn};
use super::{Attention, Facts, Money, Notice, Schedule, Set, State, Transition};
use crate::domain::status::{ExternalStatus, OrderStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAction<'a> {
    Approve {
        pin: &'a str,
        force: bool,
    },
    Reject {
        reason: &'a str,
        force: bool,
    },
    /// Send the order (again) through routing, or to the provider the operator names.
    Dispatch,
    Settle(Settlement),
}

state_column! {
    /// How a provider's delivery after an operator's decision is settled.
    Settlement, "orders.settlement", "settlement" {
        /// The buyer keeps the delivery and pays for it again (only after a refund).
        Recharge => "recharge",
        /// The business absorbs the provider's cost; recorded in the ledger with amount 0.
        WriteOff => "write_off",
    }
}

impl Settlement {
    pub fn parse(s: &str) -> Option<Settlement> {
        <Settlement as StateColumn>::from_name(s).ok()
    }
    fn flag(self) -> &'static str {
        match self {
            Settlement::Recharge => "--recharge",
            Settlement::WriteOff => "--write-off",
        }
    }
}

/// Why an operator's command is refused, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
    /// The command asks for what is already so (rejecting a rejected order): nothing changes,
    /// and that is not an error.
    pub already_done: bool,
    /// Refused because the order needs an operator's check first (exit 8, not 5).
    pub needs_action: bool,
}

fn refuse(message: impl Into<String>, hint: impl Into<String>) -> Refusal {
    Refusal { message: message.into(), hint: hint.into(), already_done: false, needs_action: false }
}

fn already(message: String) -> Refusal {
    Refusal { message, hint: String::new(), already_done: true, needs_action: false }
}

pub fn operator(f: &Facts, action: &OperatorAction) -> Result<Transition, Refusal> {
    let state = State::of(f);
    if let Some(r) = decided_before(f, action) {
        return Err(r);
    }
    match action {
        OperatorAction::Approve { pin, force } => decide(f, state, *force, true).map(|base| approve(f, base, pin)),
        OperatorAction::Reject { reason, force } => decide(f, state, *force, false).map(|base| reject(f, base, reason)),
        OperatorAction::Dispatch => dispatch(f, state),
        OperatorAction::Settle(s) => settle(f, state, *s),
    }
}

/// An approve or reject of an order that is already approved or rejected: the same decision
/// with the same arguments (a script's retry, with or without --force) is "already done"; any
/// other is a conflict that says what stands. A finished order never changes.
fn decided_before(f: &Facts, action: &OperatorAction) -> Option<Refusal> {
    let n = f.number;
    let stands = match (f.status, &f.pin, &f.operator_reason) {
        (OrderStatus::Approved, Some(_), _) => format!("order {n} stands approved with another PIN"),
        (OrderStatus::Approved, None, _) => format!("order {n} stands approved without a PIN"),
        (OrderStatus::Rejected, _, Some(r)) => format!("order {n} stands rejected by an operator (reason: {r}) and refunded"),
        (OrderStatus::Rejected, _, None) => format!("order {n} stands rejected and refunded"),
        (OrderStatus::Pending, _, _) => return None,
    };
    let hint = format!("a finished order never changes; `orderctl inspect {n}` shows it");
    match action {
        OperatorAction::Approve { pin, .. } if f.status == OrderStatus::Approved => Some(if f.pin.as_deref() == Some(*pin) {
            already(format!("order {n} is already approved with this PIN; nothing changed"))
        } else {
            refuse(format!("{stands}; this PIN was not stored"), hint)
        }),
        OperatorAction::Reject { reason, .. } if f.status == OrderStatus::Rejected => Some(match f.operator_reason.as_deref() {
            Some(r) if r != *reason => refuse(format!("{stands}; this reason was not stored"), hint),
            _ => already(format!("order {n} is already rejected; nothing changed")),
        }),
        OperatorAction::Approve { .. } | OperatorAction::Reject { .. } => Some(refuse(
            format!("{stands}; it cannot be {}", if f.status == OrderStatus::Approved { "rejected" } else { "approved" }),
            match f.status {
                OrderStatus::Approved => "if the buyer must be paid back, do it as a separate adjustment".to_string(),
                _ => "create a new order if the buyer still wants the goods".to_string(),
            },
        )),
        _ => None,
    }
}

/// Whether an approve or reject may go ahead, and whether the order stays watched.
fn decide(f: &Facts, state: State, force: bool, approving: bool) -> Result<Transition, Refusal> {
    let n = f.number;
    let verb = if approving { "approved" } else { "rejected" };
    if f.status.is_final() && f.attention.is_some() {
        return Err(refuse(
            format!(
                "order {n} was already decided by an operator ({}) and is flagged {}",
                f.status,
                f.attention.map(|a| a.as_str()).unwrap_or("")
            ),
            format!("`orderctl inspect {n}` says what the provider answered since; `orderctl settle {n}` closes it"),
        ));
    }
    match state {
        State::Approved if !approving => Err(refuse(
            format!("order {n} cannot be rejected: it is already approved; a finished order never changes"),
            "if the buyer must be paid back, do it as a separate adjustment",
        )),
        State::Rejected if approving => Err(refuse(
            format!("order {n} cannot be approved: it is already rejected and refunded; a finished order never changes"),
            "create a new order if the buyer still wants the goods",
        )),
        State::Approved | State::Rejected => Err(Refusal {
            message: format!("order {n} is already {verb}; nothing changed"),
            hint: String::new(),
            already_done: true,
            needs_action: false,
        }),
        State::Watched | State::NeedsOperator(Attention::DeliveredAfterRefund | Attention::DeliveredAfterManualApproval) => Err(refuse(
            format!("order {n} was already decided by an operator ({})", f.status),
            format!("`orderctl inspect {n}` shows what the provider answered since; settle a late delivery with `orderctl settle {n}`"),
        )),
        State::Forwarded if !force => Err(refuse(
            format!(
                "order {n} cannot be {verb} now: it was forwarded to another tenant, whose order is still open and may still {}",
                if approving { "deliver it, so the buyer could get it twice" } else { "deliver it after the buyer was refunded" }
            ),
            format!(
                "it finishes by itself when that order does (`orderctl inspect {n}` shows where it is); or add --force: decided \
                 here now, and a later delivery by the other tenant is recorded and flagged for `orderctl settle {n}`"
            ),
        )),
        held if held.provider_holds() && !force => Err(refuse(
            format!(
                "order {n} cannot be {verb} now: its provider holds it (reference {}, {}), and may still {}",
                f.reference.as_deref().unwrap_or("?"),
                f.external,
                if approving { "deliver it, so the buyer could get it twice" } else { "deliver it after the buyer was refunded" }
            ),
            format!(
                "wait for the provider's answer (`orderctl poll {n}`), or add --force: the order keeps being watched and a late \
                 delivery is recorded and flagged for settling"
            ),
        )),
        held if held.provider_holds() => Ok(Transition { operator_forced: Some(true), ..Transition::default() }),
        State::Inconsistent => Err(refuse(
            format!("order {n} is in a state orderctl does not expect ({} / {})", f.status, f.external),
            format!("`orderctl inspect {n}` shows its history; fix the row by hand"),
        )),
        _ => Ok(Transition { schedule: Schedule::Off, reconciling: Some(false), ..Transition::default() }),
    }
}

fn approve(f: &Facts, base: Transition, pin: &str) -> Transition {
    let forced = base.operator_forced == Some(true);
    Transition {
        status: Some(OrderStatus::Approved),
        external: if forced { None } else { Some(ExternalStatus::Done) },
        attention: Set::Clear,
        pin: Some(pin.to_string()),
        operator_reason: None,
        message: Some("approved by an operator".to_string()),
        completed: true,
        notice: Some(Notice::Approved),
        ..base
    }
    .event(
        "operator.approved",
        if forced {
            format!(
                "approved by an operator with a PIN while {} still held it (--force): still watched, a late delivery is flagged",
                provider_words(f)
            )
        } else {
            "approved by an operator with a PIN".to_string()
        },
    )
}

fn reject(f: &Facts, base: Transition, reason: &str) -> Transition {
    let forced = base.operator_forced == Some(true);
    Transition {
        status: Some(OrderStatus::Rejected),
        external: if forced { None } else { Some(ExternalStatus::Failed) },
        attention: Set::Clear,
        message: Some(format!("rejected by an operator: {reason}")),
        operator_reason: Some(reason.to_string()),
        completed: true,
        money: Money::Refund,
        notice: Some(Notice::Rejected),
        ..base
    }
    .event(
        "operator.rejected",
        format!(
            "rejected by an operator: {reason}; refunded {}{}",
            f.price,
            if forced {
                format!(" while {} still held it (--force): still watched, a late delivery is flagged", provider_words(f))
            } else {
                String::new()
            }
        ),
    )
}

fn provider_words(f: &Facts) -> String {
    format!("the provider (reference {})", f.reference.as_deref().unwrap_or("?"))
}

/// Dispatch again: allowed when no provider holds the order and nothing else decides it. The
/// order goes back to routing with its attention cleared and a fresh placement budget.
fn dispatch(f: &Facts, state: State) -> Result<Transition, Refusal> {
    let n = f.number;
    if state == State::NeedsOperator(Attention::MayBeHeld) {
        return Err(Refusal {
            needs_action: true,
            ..refuse(
                format!(
                    "order {n} may be held by its provider under reference {}: a re-placement was refused, which proves \
                     nothing about the first placement; it is never sent anywhere else while the provider may hold it",
                    f.reference.as_deref().unwrap_or("?")
                ),
                format!(
                    "ask the provider about that reference, then `orderctl approve {n} --pin PIN` (it delivered) or \
                     `orderctl reject {n} --reason TEXT` (it has no such order)"
                ),
            )
        });
    }
    if f.forwarded {
        return Err(refuse(
            format!(
                "order {n} was already forwarded to another tenant; an order is forwarded once, and finishes with that order"
            ),
            format!("`orderctl inspect {n}` shows the order it was forwarded to and where that one is"),
        ));
    }
    let allowed = match state {
        // An order due to be placed again with its reference keeps it: a fresh one (or another
        // provider) now would make a later refusal look definite while the first may be held.
        // Waiting for its provider: nothing was sent (its reference was dropped), so an operator may send it anywhere.
        State::New | State::ToPlace { reuse: false } | State::WaitingForOperator | State::WaitingForProvider => true,
        State::NeedsOperator(a) => {
            a.is_configuration()
                || matches!(
                    a,
                    Attention::PlacementRejected
                        | Attention::PlacementLimit
                        | Attention::WriteRefused
                        | Attention::ForwardRefused
                )
        }
        _ => false,
    };
    if allowed {
        return Ok(Transition {
            external: Some(ExternalStatus::NotSent),
            attention: Set::Clear,
            reconciling: Some(false),
            lane: Some(0),
            placement_attempts: Some(0),
            schedule: Schedule::Now,
            ..Transition::default()
        }
        .event("operator.dispatch", "dispatch requested by an operator"));
    }
    Err(match state {
        State::Approved | State::Rejected => refuse(
            format!("order {n} is already {}; a finished order is never dispatched again", f.status),
            "create a new order if the buyer still wants the goods",
        ),
        State::ToPlace { reuse: true } => refuse(
            format!(
                "order {n} is already due to be placed again with its reference {} at its provider; it keeps that reference",
                f.reference.as_deref().unwrap_or("?")
            ),
            format!("the daemon or `orderctl sweep` sends it; `orderctl inspect {n}` shows its history"),
        ),
        State::Reconciling => refuse(
            format!(
                "the placement of order {n} with reference {} had an unknown outcome and awaits reconciliation; it is never placed blindly again",
                f.reference.as_deref().unwrap_or("?")
            ),
            format!("`orderctl poll {n}` reconciles it now"),
        ),
        State::Placing => refuse(
            format!("order {n} is being placed right now with reference {}", f.reference.as_deref().unwrap_or("?")),
            format!("if that process died, the order is reconciled after its lease; `orderctl poll {n}` checks now"),
        ),
        State::WithProvider => refuse(
            format!("order {n} is already with its provider ({}, reference {})", f.external, f.reference.as_deref().unwrap_or("?")),
            format!("follow it with `orderctl poll {n}`"),
        ),
        State::NeedsOperator(Attention::GivenUp) => refuse(
            format!("order {n} was given up without a final answer; the provider may still deliver it"),
            format!("ask the provider, then `orderctl approve {n} --pin PIN` or `orderctl reject {n} --reason TEXT`"),
        ),
        _ => refuse(
            format!("order {n} cannot be dispatched ({} / {})", f.status, f.external),
            format!("`orderctl inspect {n}` says why and what to do"),
        ),
    })
}

fn settle(f: &Facts, state: State, how: Settlement) -> Result<Transition, Refusal> {
    let n = f.number;
    match f.settlement {
        Some(done) if done == how => return Err(already(format!("order {n} is already settled that way; nothing changed"))),
        Some(done) => {
            return Err(refuse(
                format!("order {n} was already settled with {}; that stands", done.flag()),
                format!("a settlement is made once; `orderctl inspect {n}` shows it"),
            ))
        }
        None => {}
    }
    let attention = match state {
        State::NeedsOperator(a) if a.is_late_delivery() => a,
        // A forced decision whose watch ran out: the operator asked the provider and closes it.
        State::NeedsOperator(Attention::GivenUp) if f.status.is_final() => Attention::GivenUp,
        _ => {
            return Err(refuse(
                format!("order {n} has no late delivery to settle"),
                "settle is for orders an operator decided whose provider delivered later (or never answered): `orderctl list --stuck`",
            ))
        }
    };
    match (attention, how) {
        (Attention::DeliveredAfterRefund, Settlement::Recharge) => Ok(Transition {
            status: Some(OrderStatus::Approved),
            // A forwarded order rejected before its upstream delivered is still `failed` here.
            external: Some(ExternalStatus::Done),
            attention: Set::Clear,
            pin: f.late_pin.clone(),
            money: Money::Recharge,
            settlement: Some(Settlement::Recharge),
            message: Some("delivered after a refund; the buyer was charged again".to_string()),
            notice: Some(Notice::Approved),
            ..Transition::default()
        }
        .event(
            "operator.settled",
            format!("the provider's late delivery is kept: the buyer was charged {} again and gets the PIN", f.price),
        )),
        (Attention::GivenUp, Settlement::Recharge) => Err(refuse(
            format!("order {n}'s provider never answered after the operator's decision: there is no delivery to charge for"),
            format!("`orderctl settle {n} --write-off` closes it"),
        )),
        (Attention::DeliveredAfterManualApproval, Settlement::Recharge) => Err(refuse(
            format!("order {n} was approved by an operator and never refunded: there is nothing to charge again"),
            format!("`orderctl settle {n} --write-off` records that the provider's second delivery is written off"),
        )),
        (_, Settlement::WriteOff) => Ok(Transition {
            attention: Set::Clear,
            money: Money::WriteOff,
            settlement: Some(Settlement::WriteOff),
            message: Some("the provider's late delivery was written off".to_string()),
            ..Transition::default()
        }
        .event(
            "operator.settled",
            format!("the provider's late delivery (cost {}) is written off; the order stays {}", f.price, f.status),
        )),
        (other, _) => {
            Err(refuse(format!("order {n} ({other}) has no late delivery to settle"), format!("`orderctl inspect {n}`")))
        }
    }
}
