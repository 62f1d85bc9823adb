//! What the routing lane decides for an order that has no provider lane yet: a provider's lane,
//! an operator (manual routing), or our own code stock. Configuration problems found here are
//! `config_stop` (in `provider.rs`), like the ones found while placing.

use super::{Facts, Notice, Schedule, Set, Transition};
use crate::domain::status::{ExternalStatus, OrderStatus};

/// Routing names a provider: the order goes to that provider's lane, due now, with a fresh
/// placement budget there.
pub fn routed_to_provider(_f: &Facts, provider_id: i64, provider: &str, why: &str) -> Transition {
    Transition {
        external: Some(ExternalStatus::NotSent),
        attention: Set::Clear,
        reconciling: Some(false),
        lane: Some(provider_id),
        provider_id: Some(provider_id),
        // A fresh reference: an order routed here is one no provider holds (an operator cannot
        // dispatch an order whose placement's outcome is unknown).
        reference: Set::Clear,
        placement_attempts: Some(0),
        schedule: Schedule::Now,
        ..Transition::default()
    }
    .event("dispatch", format!("{why}: to be placed with {provider}"))
}

/// Manual routing: nothing to send; the order waits for an operator.
pub fn waiting_for_operator(_f: &Facts, package: &str) -> Transition {
    Transition {
        lane: Some(0),
        schedule: Schedule::Off,
        message: Some("manual routing: waiting for an operator".to_string()),
        ..Transition::default()
    }
    .event("dispatch", format!("package {package} is routed manually: waiting for an operator"))
}

/// Codes from our own stock were handed out (in the same transaction): the order is delivered.
pub fn delivered_from_stock(_f: &Facts, pin: String, codes: usize, group: &str) -> Transition {
    Transition {
        status: Some(OrderStatus::Approved),
        external: Some(ExternalStatus::Done),
        attention: Set::Clear,
        lane: Some(0),
        schedule: Schedule::Off,
        pin: Some(pin),
        message: Some("delivered from code stock".to_string()),
        sent: true,
        completed: true,
        notice: Some(Notice::Approved),
        ..Transition::default()
    }
    .event("dispatch", format!("{codes} code(s) handed out from code group {group}; order approved"))
}
