//! `orderctl approve`, `reject` and `settle`: an operator decides an order by hand. The
//! lifecycle says whether the decision may be made now (a finished order never flips; an order
//! a provider holds needs `--force` and stays watched); the decision is written by the same
//! writer as every other transition, under the order's row lock.

use crate::cli::{ApproveArgs, RejectArgs, SettleArgs};
use crate::commands::create::validate_text;
use crate::commands::inspect;
use crate::db::{
    self, claims,
    orders::{self, OrderRef},
    transitions,
};
use crate::dispatch::claim::write;
use crate::domain::lifecycle::{self, OperatorAction, Settlement};
use crate::error::{Error, Result};
use crate::settings::Settings;

pub fn approve(s: &Settings, a: &ApproveArgs) -> Result<()> {
    validate_text("--pin", &a.pin, 2000, true)?;
    decide(s, &a.order, OperatorAction::Approve { pin: &a.pin, force: a.force })
}

pub fn reject(s: &Settings, a: &RejectArgs) -> Result<()> {
    validate_text("--reason", &a.reason, 2000, true)?;
    decide(s, &a.order, OperatorAction::Reject { reason: &a.reason, force: a.force })
}

pub fn settle(s: &Settings, a: &SettleArgs) -> Result<()> {
    let how = if a.recharge { Settlement::Recharge } else { Settlement::WriteOff };
    decide(s, &a.order, OperatorAction::Settle(how))
}

fn decide(s: &Settings, order: &str, action: OperatorAction) -> Result<()> {
    let order_ref = OrderRef::parse(order)?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let mut tx = client.transaction()?;
    let row = claims::lock_ids(&mut tx, &[order.id], true)?
        .pop()
        .ok_or_else(|| Error::internal("an order vanished while it was locked"))?;
    match lifecycle::operator(&row.facts, &action) {
        Ok(t) => {
            let w = write(&row, t);
            transitions::apply(&mut tx, std::slice::from_ref(&w)).map_err(|e| settle_error(e, order.number))?;
            tx.commit()?;
            if let Some(e) = &w.transition.event {
                log::info!("order {}: {}", order.number, e.message);
            }
        }
        Err(r) if r.already_done => {
            tx.rollback()?;
            log::warn!("{}", r.message);
        }
        Err(r) => return Err(crate::dispatch::refusal(r)),
    }
    let after = orders::load_order(&mut client, order.id)?;
    inspect::print_order_brief(s, &mut client, &after, None)
}

/// A recharge the buyer's balance cannot cover is refused by the database (the users CHECK).
fn settle_error(e: Error, number: i64) -> Error {
    if e.sqlstate.as_deref() == Some("23514") {
        return Error::refused(format!(
            "order {number}: the buyer's balance and overdraft do not cover charging the order again"
        ))
        .with_hint(format!("top the balance up (setup file) and settle again, or `orderctl settle {number} --write-off`"));
    }
    e
}
