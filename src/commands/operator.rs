//! `orderctl approve` and `orderctl reject`: an operator finishes an open order by hand.
//! A finished order never flips: approving a rejected order (or rejecting an approved one) is
//! refused; rejecting a rejected order again changes nothing and refunds nothing.

use crate::cli::{ApproveArgs, RejectArgs};
use crate::commands::create::validate_text;
use crate::commands::inspect;
use crate::db::{
    self,
    orders::{self, NewEvent, OrderRef},
};
use crate::domain::status::{operator_can_finish, OrderStatus};
use crate::error::{Error, Result};
use crate::settings::Settings;

pub fn approve(s: &Settings, a: &ApproveArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    validate_text("--pin", &a.pin, 2000, true)?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", &[&order.id])?;
    let status: String = tx.query_one("SELECT status FROM orders WHERE id = $1", &[&order.id])?.get(0);
    let status: OrderStatus = status.parse().map_err(Error::internal)?;
    operator_can_finish(status).map_err(|why| Error::refused(format!("order {} cannot be approved: {why}", order.number)))?;
    orders::finish_approved(&mut tx, order.id, None, Some(&a.pin), "approved by an operator")?;
    orders::record_events(&mut tx, &[NewEvent::new(order.id, "operator.approved", "approved by an operator with a PIN")])?;
    tx.commit()?;
    log::info!("order {} approved by an operator", order.number);
    let after = orders::load_order(&mut client, order.id)?;
    inspect::print_order_brief(s, &mut client, &after, None)
}

pub fn reject(s: &Settings, a: &RejectArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    validate_text("--reason", &a.reason, 2000, true)?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", &[&order.id])?;
    let status: String = tx.query_one("SELECT status FROM orders WHERE id = $1", &[&order.id])?.get(0);
    match status.as_str() {
        "rejected" => {
            tx.rollback()?;
            log::warn!("order {} is already rejected and refunded; nothing changed, nothing refunded again", order.number);
        }
        "approved" => {
            return Err(Error::refused(format!(
                "order {} cannot be rejected: {}",
                order.number,
                operator_can_finish(OrderStatus::Approved).unwrap_err()
            )))
        }
        _ => {
            let text = format!("rejected by an operator: {}", a.reason);
            let refunded = orders::finish_rejected(&mut tx, order.id, None, &text)?.unwrap_or_default();
            orders::record_events(
                &mut tx,
                &[NewEvent::new(order.id, "operator.rejected", format!("{text}; refunded {refunded}"))],
            )?;
            tx.commit()?;
            log::info!("order {} rejected by an operator; refunded {refunded}", order.number);
        }
    }
    let after = orders::load_order(&mut client, order.id)?;
    inspect::print_order_brief(s, &mut client, &after, None)
}
