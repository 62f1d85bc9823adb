//! Manual routing as a provider: nothing is sent. The order waits, `pending` / `not_sent`, for
//! an operator to deliver it and then `orderctl approve N --pin PIN` or `orderctl reject N
//! --reason TEXT`. A package in manual mode that names an external provider can also be sent
//! by an operator's `orderctl dispatch N`; automatic dispatch (create, sweep, daemon) never
//! sends it.

use crate::db::orders;
use crate::error::Result;
use postgres::GenericClient;
use uuid::Uuid;

/// Whether an order of this routing waits for an operator rather than being sent.
pub fn waits_for_operator(routing_mode: &str, provider_type: &str, operator_dispatch: bool) -> bool {
    provider_type == "manual" || (routing_mode == "manual" && !operator_dispatch)
}

/// Take the order off the work queue: only an operator moves it on.
pub fn leave_for_operator(client: &mut impl GenericClient, order_id: Uuid) -> Result<bool> {
    orders::record_waiting_for_operator(client, order_id, "manual routing: waiting for an operator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_routing_waits_and_manual_mode_waits_only_for_automatic_dispatch() {
        assert!(waits_for_operator("manual", "manual", true));
        assert!(waits_for_operator("manual", "external", false));
        assert!(!waits_for_operator("manual", "external", true));
        assert!(!waits_for_operator("auto", "external", false));
        assert!(!waits_for_operator("auto", "codes", false));
    }
}
