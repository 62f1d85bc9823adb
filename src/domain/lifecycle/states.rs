//! The state columns, one Rust type each: an order's `status` (what the buyer sees) and
//! `external_status` (where the order is with its provider), a placement's `outcome` and
//! `reconciled`, a webhook delivery's `state`, a stock code's `state`. `attention` and
//! `settlement` are declared with the lifecycle's vocabulary (`mod.rs`, `operator.rs`) and
//! registered here too. A finished order (approved or rejected) never moves again.
//!
//! Every value a state column may hold is spelled once, here. Rows are read with
//! `db::row::state` / `state_opt` (by column name, an unknown value is an error that names the
//! column), and SQL names a state only through [`StateColumn::sql`] / [`sql_in`], never as a
//! literal (`tests/it/states.rs` greps `src/` and `examples/` for one).
//!
//! ## Adding a state
//! 1. Add the variant to its `state_column!` below (name and database spelling).
//! 2. Add a migration (`sql/00NN_*.sql`) that drops and re-adds the column's CHECK constraint
//!    with the new value (and any partial index or trigger that should see it).
//! 3. `cargo test --test it -- states` compares every registered column with its CHECK
//!    constraint in the migrated database, both ways: a state added in Rust and missed in SQL
//!    (or the other way round) fails there. The compiler then points at every `match` that must
//!    decide what the new state means. A new state column gets its own `state_column!` and a line
//!    in [`state_columns`]; the same test fails on a value-list CHECK no enum mirrors.

/// Declared with the lifecycle's vocabulary; listed here with the other state columns.
pub use super::{Attention, Settlement};

/// A column whose values are one of a fixed set of states.
pub trait StateColumn: Copy + Sized + 'static {
    /// `table.column`, as the schema test names it.
    const COLUMN: &'static str;
    /// What an operator calls it, in errors ("status", "external status").
    const WHAT: &'static str;
    const ALL: &'static [Self];
    /// The spelling stored in the database.
    fn as_str(self) -> &'static str;
    /// The value as an SQL literal (`'pending'`), for SQL fragments and partial-index predicates.
    fn sql(self) -> &'static str;
    /// The state a stored spelling names; the error names the column and the known values.
    fn from_name(s: &str) -> Result<Self, String> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            format!("unknown {} '{}': use one of {}", Self::WHAT, s, names.join(", "))
        })
    }
}

/// `'a', 'b'`: the states as an SQL list, for `IN (...)` and `ARRAY[...]`.
pub fn sql_in<T: StateColumn>(states: &[T]) -> String {
    states.iter().map(|s| s.sql()).collect::<Vec<_>>().join(", ")
}

/// One registered state column: its table, column and the values Rust knows.
#[derive(Debug, Clone, Copy)]
pub struct ColumnStates {
    pub table: &'static str,
    pub column: &'static str,
    pub values: fn() -> Vec<&'static str>,
}

fn names<T: StateColumn>() -> Vec<&'static str> {
    T::ALL.iter().map(|v| v.as_str()).collect()
}

fn column<T: StateColumn>() -> ColumnStates {
    let (table, column) = T::COLUMN.split_once('.').expect("COLUMN is table.column");
    ColumnStates { table, column, values: names::<T> }
}

/// Every state column of the schema; the schema test checks each against its CHECK constraint,
/// and fails on a state CHECK constraint that is not listed here.
pub fn state_columns() -> Vec<ColumnStates> {
    vec![
        column::<OrderStatus>(),
        column::<ExternalStatus>(),
        column::<Attention>(),
        column::<Settlement>(),
        column::<PlacementState>(),
        column::<Reconciled>(),
        column::<DeliveryState>(),
        column::<CodeState>(),
        column::<FinishedOutcome>(),
        column::<OperatorHold>(),
        column::<BreakerState>(),
        column::<UnavailableCause>(),
    ]
}

/// Declares a state column's enum: variants with their database spelling, `ALL`, `as_str`,
/// `sql`, `FromStr`, `Display` and `Serialize` (as the spelling).
macro_rules! state_column {
    ($(#[$doc:meta])* $name:ident, $column:literal, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $spelling:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }
            /// The value as an SQL literal (`'pending'`).
            pub const fn sql(self) -> &'static str {
                match self {
                    $($name::$variant => concat!("'", $spelling, "'"),)+
                }
            }
        }
        impl $crate::domain::lifecycle::states::StateColumn for $name {
            const COLUMN: &'static str = $column;
            const WHAT: &'static str = $what;
            const ALL: &'static [$name] = $name::ALL;
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn sql(self) -> &'static str {
                $name::sql(self)
            }
        }
        $crate::domain::lifecycle::states::impl_state_text!($name);
    };
}

/// `FromStr`, `Display` and `Serialize` for a state column's enum.
macro_rules! impl_state_text {
    ($name:ty) => {
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$name as $crate::domain::lifecycle::states::StateColumn>::from_name(s)
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use impl_state_text;
pub(crate) use state_column;

state_column! {
    /// What the buyer sees.
    OrderStatus, "orders.status", "status" {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
    }
}

state_column! {
    /// Where the order is with its provider.
    ExternalStatus, "orders.external_status", "external status" {
        NotSent => "not_sent",
        /// A placement was claimed (its reference committed); its outcome is not recorded yet.
        Dispatching => "dispatching",
        Sent => "sent",
        Processing => "processing",
        Done => "done",
        Failed => "failed",
        /// Not sent: its provider cannot take orders now (paused, drained, out of balance, in
        /// maintenance, product unavailable, breaker open) and routing has no fallback.
        WaitingForProvider => "waiting_for_provider",
    }
}

state_column! {
    /// What one placement attempt came to (`placements.outcome`; the provider's answer itself is
    /// `provider::PlacementOutcome`).
    PlacementState, "placements.outcome", "placement outcome" {
        /// Claimed, its answer not recorded yet.
        InFlight => "in_flight",
        Accepted => "accepted",
        Rejected => "rejected",
        Ambiguous => "ambiguous",
        SentBefore => "sent_before",
        Absent => "absent",
        /// Claimed but never sent (its claim outlived its lease before the call started).
        NotSent => "not_sent",
    }
}

state_column! {
    /// What a later status check found about a placement whose outcome was unknown.
    Reconciled, "placements.reconciled", "reconciliation" {
        Found => "found",
        Absent => "absent",
    }
}

state_column! {
    /// A webhook delivery: still to be sent (or retried), delivered, or given up.
    DeliveryState, "webhook_deliveries.state", "delivery state" {
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
        /// Never to be delivered: its webhook was retired (`apply --prune`).
        Cancelled => "cancelled",
    }
}

state_column! {
    /// A stock code (`codes` routing).
    CodeState, "code_items.state", "code state" {
        Available => "available",
        Reserved => "reserved",
        Used => "used",
    }
}

state_column! {
    /// How finished (or flagged) orders are counted per tenant (`order_outcome_counts`).
    FinishedOutcome, "order_outcome_counts.outcome", "outcome" {
        Approved => "approved",
        Rejected => "rejected",
        NeedsAction => "needs_action",
    }
}

state_column! {
    /// An operator's hold on a provider (`provider pause` / `provider drain`).
    OperatorHold, "provider_health.hold", "provider hold" {
        /// No placements; orders wait with the operator's reason.
        Paused => "paused",
        /// No new placements (fallback, or wait); checks of placed orders continue.
        Draining => "draining",
    }
}

state_column! {
    /// A provider's circuit breaker, shared by every daemon.
    BreakerState, "provider_health.breaker", "breaker state" {
        Closed => "closed",
        /// Too many failed calls in a row: no placements, calls at the probe rate.
        Open => "open",
        /// The cool-down is over: one probe call decides.
        HalfOpen => "half_open",
    }
}

state_column! {
    /// Why a provider (or one of its products) cannot take orders now, as it said itself.
    UnavailableCause, "provider_unavailable.cause", "unavailable cause" {
        NoBalance => "no_balance",
        Maintenance => "maintenance",
        ProductUnavailable => "product_unavailable",
    }
}

impl OrderStatus {
    pub fn is_final(self) -> bool {
        self != OrderStatus::Pending
    }
}

impl ExternalStatus {
    /// With the provider and not finished: the monitor checks these.
    pub fn is_with_provider(self) -> bool {
        matches!(self, ExternalStatus::Sent | ExternalStatus::Processing)
    }

    /// Not sent to any provider yet: what a lane places.
    pub const UNPLACED: [ExternalStatus; 2] = [ExternalStatus::NotSent, ExternalStatus::WaitingForProvider];

    /// The provider holds or may hold the order (the schema requires a reference for these).
    pub const HELD: [ExternalStatus; 3] = [ExternalStatus::Dispatching, ExternalStatus::Sent, ExternalStatus::Processing];
}

/// The orders that still have work, "live": open, or still watched after an operator's forced
/// decision (a final status with a schedule). `orders` is partitioned by exactly this expression
/// (sql/0031): `orders_live` holds these, `orders_done` the finished ones by month. A statement
/// that names it, spelled so (`IS TRUE` is the form PostgreSQL prunes a boolean key by), is
/// planned over the live partition alone, however long the history. `alias` is the orders alias
/// with its dot (`"o."`), or `""`.
pub fn live_sql(alias: &str) -> String {
    format!("({alias}status = {} OR {alias}next_check_at IS NOT NULL) IS TRUE", OrderStatus::Pending.sql())
}

/// An open order (`status = 'pending'`), named with [`live_sql`] so the statement is planned
/// over the live partition alone.
pub fn pending_sql(alias: &str) -> String {
    format!("{} AND {alias}status = {}", live_sql(alias), OrderStatus::Pending.sql())
}

/// How a status reads at a glance (the colour of a table cell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Waiting,
    Neutral,
}

/// The tone of an order's status or external status, given by name (a table's text cell).
pub fn tone(name: &str) -> Tone {
    use ExternalStatus as E;
    match (name.parse::<OrderStatus>(), name.parse::<ExternalStatus>()) {
        (Ok(OrderStatus::Approved), _) | (_, Ok(E::Done)) => Tone::Good,
        (Ok(OrderStatus::Rejected), _) | (_, Ok(E::Failed)) => Tone::Bad,
        (Ok(OrderStatus::Pending), _) | (_, Ok(E::Sent | E::Processing | E::Dispatching | E::WaitingForProvider)) => {
            Tone::Waiting
        }
        _ => Tone::Neutral,
    }
}

/// Why an operator action on an order is refused.
pub fn operator_can_finish(status: OrderStatus) -> Result<(), String> {
    match status {
        OrderStatus::Pending => Ok(()),
        OrderStatus::Approved => Err("the order is already approved; a finished order never changes. \
             If the buyer must be paid back, do it as a separate adjustment"
            .into()),
        OrderStatus::Rejected => Err("the order is already rejected and refunded; a finished order never changes. \
             Create a new order if the buyer still wants the goods"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[test]
    fn statuses_round_trip_through_their_names_and_sql() {
        fn each<T: StateColumn + PartialEq + fmt::Debug>() {
            for s in T::ALL {
                assert_eq!(T::from_name(s.as_str()).unwrap(), *s);
                assert_eq!(s.sql(), format!("'{}'", s.as_str()));
            }
        }
        each::<OrderStatus>();
        each::<ExternalStatus>();
        each::<PlacementState>();
        each::<Reconciled>();
        each::<DeliveryState>();
        each::<CodeState>();
        each::<FinishedOutcome>();
        each::<Attention>();
        each::<Settlement>();
        each::<OperatorHold>();
        each::<BreakerState>();
        each::<UnavailableCause>();
        assert_eq!(sql_in(&ExternalStatus::HELD), "'dispatching', 'sent', 'processing'");
        let err = "sending".parse::<ExternalStatus>().unwrap_err();
        assert!(err.contains("not_sent, dispatching"), "{err}");
    }

    #[test]
    fn only_pending_orders_can_be_finished_by_an_operator() {
        assert!(operator_can_finish(OrderStatus::Pending).is_ok());
        assert!(operator_can_finish(OrderStatus::Approved).is_err());
        assert!(operator_can_finish(OrderStatus::Rejected).is_err());
    }
}
