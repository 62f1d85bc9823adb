//! The order lifecycle: one pure state machine that everything else calls.
//!
//! An order's [`State`] is derived from its row ([`Facts`]). Every input — a provider's answer
//! to a placement or a status check, a lease that ran out, the give-up deadline, a routing
//! decision, a configuration problem, an operator's command — goes through one function of this
//! module and comes out as a [`Transition`]: the exact change to the row and its side effects
//! (placement outcome, money, history, notice). SQL only persists transitions (`db::transitions`),
//! guarded by the lease the work was claimed with, on the database's clock.
//!
//! Every transition ends in one of three places, which the tests of this module prove:
//! - a final state (approved or rejected);
//! - a flagged state an operator sees (`attention`, shown by `list --stuck` and `doctor`);
//! - a retry with an explicit bound: at most [`MAX_PLACEMENTS`] placements per provider per
//!   order, [`BackoffPolicy::max_checks`] answered checks, and a give-up deadline that runs from
//!   the first dispatch and that nothing resets.
//!
//! Module map: this file holds the vocabulary; `provider.rs` the answers of providers (placements,
//! checks, lease expiry, deadline); `routing.rs` what the routing lane decides; `operator.rs` the
//! operator's commands; `work.rs` what a claimed order needs next; `forwarding.rs` an order
//! forwarded to another tenant (internal routing) and the upstream order finishing it; `combined.rs`
//! two steps written as one row version (a placement's answer and the check made right after it);
//! `states.rs` the state columns' types (one enum per column, the only place a state is spelled;
//! it says how to add a state).

mod combined;
mod forwarding;
mod operator;
mod provider;
mod routing;
pub mod states;
mod work;

pub use combined::placed_then_checked;
pub use forwarding::{forward_refused, forwarded, neutral_reason, upstream_finished, UpstreamOrder, UpstreamOutcome};
pub use operator::{operator, OperatorAction, Refusal, Settlement};
pub use provider::{
    checked, config_stop, deferred, held_back, held_back_after_claim, not_sent, placed, CheckContext, Fallback, HeldBack,
    PlacementContext,
};
pub use routing::{delivered_from_stock, routed_to_provider, waiting_for_operator};
pub use work::{work_for, Work};

use rust_decimal::Decimal;
use states::{state_column, StateColumn};
pub use states::{ExternalStatus, OrderStatus};
use std::time::Duration;

/// Placements sent to one provider for one order, at most. A placement whose outcome stays
/// unknown is reconciled by a status check; only when the provider has no such order is it sent
/// again (same reference), and never more often than this.
pub const MAX_PLACEMENTS: u32 = 3;

state_column! {
    /// Why an order needs an operator. Each has a sentence in `diagnosis` and shows in
    /// `list --stuck` and `doctor`.
    Attention, "orders.attention", "attention" {
        /// Routing has nowhere to send the order (the incident).
        Routing => "routing",
        NoMapping => "no_mapping",
        ProviderDisabled => "provider_disabled",
        CodeStockEmpty => "code_stock_empty",
        /// The provider refused the placement and no fallback is left.
        PlacementRejected => "placement_rejected",
        /// Placements with a provider stayed unconfirmed [`MAX_PLACEMENTS`] times.
        PlacementLimit => "placement_limit",
        /// No final answer before the deadline; the provider may still deliver.
        GivenUp => "given_up",
        /// An operator rejected (and refunded) the order, then the provider delivered it.
        DeliveredAfterRefund => "delivered_after_refund",
        /// An operator approved the order by hand, then the provider delivered it too.
        DeliveredAfterManualApproval => "delivered_after_manual_approval",
        /// The database refused to store a result for this order (see its last message).
        WriteRefused => "write_refused",
        /// The upstream tenant refused a forwarded order (the account's balance, a disabled package).
        ForwardRefused => "forward_refused",
        /// A re-placement (same reference, after a window of "not found") was refused: the refusal
        /// proves nothing, the first placement may still be held. Never sent to a fallback, never
        /// refunded by itself: an operator checks with the provider first.
        MayBeHeld => "may_be_held",
        /// The provider approved an order of a product that delivers PINs, without a PIN.
        PinMissing => "pin_missing",
    }
}

impl Attention {
    pub fn parse(s: &str) -> Option<Attention> {
        Attention::from_name(s).ok()
    }

    /// Dispatch stopped before anything reached a provider (configuration).
    pub fn is_configuration(self) -> bool {
        matches!(self, Attention::Routing | Attention::NoMapping | Attention::ProviderDisabled | Attention::CodeStockEmpty)
    }

    /// A provider's delivery after an operator's decision, waiting to be settled.
    pub fn is_late_delivery(self) -> bool {
        matches!(self, Attention::DeliveredAfterRefund | Attention::DeliveredAfterManualApproval)
    }
}

/// What the lifecycle reads from an order's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub number: i64,
    pub status: OrderStatus,
    pub external: ExternalStatus,
    pub attention: Option<Attention>,
    /// A placement's outcome is unknown; a status check with its reference decides.
    pub reconciling: bool,
    pub operator_forced: bool,
    /// The lane that does the order's next work: a provider id, or 0 (routing lane).
    pub lane: i64,
    pub provider_id: Option<i64>,
    pub reference: Option<String>,
    /// Work is scheduled (`next_check_at` is set).
    pub scheduled: bool,
    pub checks: u32,
    pub no_news: u32,
    pub placement_attempts: u32,
    pub price: Decimal,
    /// A PIN the provider delivered after an operator's decision.
    pub late_pin: Option<String>,
    /// The order was forwarded to another tenant (`forwarded_to` is set): that order holds it.
    pub forwarded: bool,
    /// The PIN the order was approved with.
    pub pin: Option<String>,
    /// The reason an operator gave when rejecting it.
    pub operator_reason: Option<String>,
    /// How a late delivery was settled.
    pub settlement: Option<Settlement>,
    /// The product delivers PINs: an approval without one is flagged.
    pub expects_pin: bool,
}

/// Where an order is, as the lifecycle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the routing lane to decide where it goes.
    New,
    /// Waiting to be placed with its lane's provider; `reuse` when its reference is known to be
    /// absent at the provider and is sent again.
    ToPlace {
        reuse: bool,
    },
    /// Not sent: its provider cannot take orders now (an operator's pause, a drain, no balance,
    /// maintenance, a product unavailable, an open breaker) and no fallback can; placed when the
    /// provider is back, within the provider's `hold_for` (never bounded for a pause).
    WaitingForProvider,
    /// A placement was claimed (its reference committed) and its outcome not yet recorded.
    Placing,
    /// A placement's outcome is unknown; a status check with the reference decides.
    Reconciling,
    /// The provider holds the order and is asked for its status by the backoff policy.
    WithProvider,
    /// Forwarded to another tenant: the upstream order holds it, and finishes it (no checks here).
    Forwarded,
    /// Manual routing: an operator delivers it.
    WaitingForOperator,
    /// Flagged: nothing moves until an operator acts.
    NeedsOperator(Attention),
    Approved,
    Rejected,
    /// An operator decided (`--force`) while the provider held the order: still watched, and a
    /// late answer is recorded.
    Watched,
    /// A row no transition produces (edited by hand): shown as such, never acted on.
    Inconsistent,
}

impl State {
    pub fn of(f: &Facts) -> State {
        use ExternalStatus as E;
        let held = matches!(f.external, E::Dispatching | E::Sent | E::Processing);
        match f.status {
            OrderStatus::Approved | OrderStatus::Rejected if f.operator_forced && held => return State::Watched,
            OrderStatus::Approved | OrderStatus::Rejected => {
                return match f.attention {
                    // A provider's late answer (or none) after an operator's forced decision.
                    Some(a) => State::NeedsOperator(a),
                    None if f.status == OrderStatus::Approved => State::Approved,
                    None => State::Rejected,
                };
            }
            OrderStatus::Pending => {}
        }
        // Before attention: once forwarded, only the upstream order (or a forced decision) ends it.
        if f.forwarded && held {
            return State::Forwarded;
        }
        if let Some(a) = f.attention {
            return State::NeedsOperator(a);
        }
        match f.external {
            E::NotSent if f.lane != 0 => State::ToPlace { reuse: f.reference.is_some() },
            E::NotSent if f.scheduled => State::New,
            E::NotSent => State::WaitingForOperator,
            E::WaitingForProvider => State::WaitingForProvider,
            E::Dispatching if f.reconciling => State::Reconciling,
            E::Dispatching => State::Placing,
            E::Sent | E::Processing => State::WithProvider,
            E::Done | E::Failed => State::Inconsistent,
        }
    }

    /// The provider (or, forwarded, the upstream order) holds or may hold the order: a placement
    /// was sent and not refused, or the order was forwarded.
    pub fn provider_holds(self) -> bool {
        matches!(self, State::Placing | State::Reconciling | State::WithProvider | State::Watched | State::Forwarded)
    }

    pub fn is_final(self) -> bool {
        matches!(self, State::Approved | State::Rejected)
    }
}

/// A change of one column: keep it, set it, or clear it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Set<T> {
    #[default]
    Keep,
    To(T),
    Clear,
}

/// When the order's next work is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Unchanged (the claim's lease stays in force).
    #[default]
    Keep,
    /// Nothing scheduled: final, or waiting for an operator.
    Off,
    /// Due now, on the database's clock.
    Now,
    /// Due this long from now, on the database's clock.
    In(Duration),
}

impl Schedule {
    /// Whether the order may be due within the transaction that writes this: due now, due in
    /// less than the millisecond the database schedules by, or kept as it was. An order taken
    /// off the schedule or scheduled later cannot be (the due test is `next_check_at <= now()`,
    /// one `now()` per transaction), so the writer does not look for its follow-up.
    pub fn may_be_due_at_once(self) -> bool {
        match self {
            Schedule::Keep | Schedule::Now => true,
            Schedule::Off => false,
            Schedule::In(d) => d.as_millis() == 0,
        }
    }
}

/// What happens to the buyer's money, exactly once (unique ledger rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Money {
    #[default]
    None,
    /// Give back what was charged (order rejected).
    Refund,
    /// Charge the buyer again for a delivery that came after a refund.
    Recharge,
    /// Record that the business absorbs a provider's late delivery.
    WriteOff,
}

/// The outcome recorded on the placement row of the order's current (provider, reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementWord {
    Accepted,
    Rejected,
    Ambiguous,
    SentBefore,
    Absent,
    NotSent,
}

impl PlacementWord {
    /// The outcome column's value this word records.
    pub fn outcome(self) -> states::PlacementState {
        use states::PlacementState as P;
        match self {
            PlacementWord::Accepted => P::Accepted,
            PlacementWord::Rejected => P::Rejected,
            PlacementWord::Ambiguous => P::Ambiguous,
            PlacementWord::SentBefore => P::SentBefore,
            PlacementWord::Absent => P::Absent,
            PlacementWord::NotSent => P::NotSent,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.outcome().as_str()
    }
}

/// What a shop is told about (webhooks): an order finished or needs an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Approved,
    Rejected,
    NeedsAction,
}

impl Notice {
    pub fn event_type(self) -> &'static str {
        match self {
            Notice::Approved => "order.approved",
            Notice::Rejected => "order.rejected",
            Notice::NeedsAction => "order.needs_action",
        }
    }
}

/// One step of a transition, as the order's history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: &'static str,
    pub message: String,
}

/// The exact change a transition makes to an order's row, and its side effects. Fields left at
/// their default keep what the row holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transition {
    pub status: Option<OrderStatus>,
    pub external: Option<ExternalStatus>,
    pub attention: Set<Attention>,
    pub reconciling: Option<bool>,
    pub schedule: Schedule,
    pub lane: Option<i64>,
    pub provider_id: Option<i64>,
    pub reference: Set<String>,
    pub external_order_id: Option<String>,
    pub checks: Option<u32>,
    pub no_news: Option<u32>,
    pub placement_attempts: Option<u32>,
    pub message: Option<String>,
    pub pin: Option<String>,
    pub late_pin: Option<String>,
    /// The provider accepted the order: `sent_at` is set if it was not.
    pub sent: bool,
    /// The order reached a final status: `completed_at` and its duration are set.
    pub completed: bool,
    pub operator_forced: Option<bool>,
    /// An operator's reject reason, kept so that repeating the command can be told from another one.
    pub operator_reason: Option<String>,
    pub settlement: Option<Settlement>,
    /// The provider's cost of an accepted placement, in the provider's currency (dealer data).
    pub cost: Option<rust_decimal::Decimal>,
    /// The order was forwarded to this (upstream) order, created in the same transaction.
    pub forwarded_to: Option<uuid::Uuid>,
    /// The outcome of the placement row of the order's current provider and reference (as they
    /// are before this transition).
    pub placement: Option<PlacementWord>,
    pub money: Money,
    /// The history entry this transition writes.
    pub event: Option<Step>,
    pub notice: Option<Notice>,
    /// Two steps written as one row version (`placed_then_checked`): the first one's history
    /// entry and placement message, which the second step's columns would otherwise hide.
    pub first: Option<Box<FirstStep>>,
}

/// The first of two steps written as one (a placement's answer, when the check made right after
/// it under the same claim is written with it): what of it outlives the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstStep {
    /// Its history entry, with the order's state as the step left it.
    pub event: Step,
    pub status: OrderStatus,
    pub external: ExternalStatus,
    /// What the placement row records as its message.
    pub placement_message: Option<String>,
}

impl Transition {
    fn event(mut self, kind: &'static str, message: impl Into<String>) -> Transition {
        self.event = Some(Step { kind, message: message.into() });
        self
    }

    /// The status it leaves the order in, given the state it starts from.
    pub fn final_status(&self) -> Option<OrderStatus> {
        self.status.filter(|s| s.is_final())
    }

    /// The history entry of its first step: its only one, or a merged transition's first (the
    /// placement's answer, whose dispatch steps it closes).
    pub fn first_event(&self) -> Option<&Step> {
        self.first.as_ref().map(|f| &f.event).or(self.event.as_ref())
    }

    /// The message the placement row of the order's current (provider, reference) records with
    /// `placement`: the transition's message, or its history entry's (a merged transition's
    /// first step's, where the placement's answer was).
    pub fn placement_message(&self) -> Option<&str> {
        match &self.first {
            Some(first) => first.placement_message.as_deref(),
            None => self.message.as_deref().or(self.event.as_ref().map(|e| e.message.as_str())),
        }
    }
}

/// A short duration as operators write it: "30s", "2m", "1h", "1.5s".
pub fn short(d: Duration) -> String {
    crate::domain::backoff::short_duration(d)
}

#[cfg(test)]
pub(crate) mod tests;
