//! Retiring what a setup file no longer names (`apply --prune`) and reviving what it names
//! again. Nothing is deleted: orders, placements and deliveries keep pointing at a retired row,
//! so history stays readable. A retired provider, package or webhook is disabled too (migration
//! 0010's CHECK), so every reader that skips disabled ones skips it: no new orders for a
//! package, no new placements for a provider (its open orders are still checked: the daemon
//! runs the lane of any provider with orders in flight), no new deliveries for a webhook.

use crate::db::Transaction;
use crate::domain::lifecycle::states::DeliveryState;
use crate::domain::money::CurrencyPair;
use crate::domain::setup::fields::Kind;
use crate::domain::setup::plan::{Action, Plan, Step};
use crate::error::{Error, Result};

/// The table of an object kind that can be retired.
fn table(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::Provider => Some(("providers", "name")),
        Kind::CodeGroup => Some(("code_groups", "name")),
        Kind::Package => Some(("packages", "name")),
        Kind::Webhook => Some(("webhooks", "url")),
        // Exchange rates are of no tenant: `retire_rate`.
        Kind::Tenant | Kind::User | Kind::Product | Kind::ExchangeRate => None,
    }
}

/// Revive the plan's revived objects (before the file's fields are written, which may enable
/// them: a retired row must stay disabled).
pub fn revive(tx: &mut Transaction, plan: &Plan) -> Result<()> {
    for step in plan.steps.iter().filter(|s| s.action == Action::Revive) {
        let Some((table, key)) = table(step.kind) else { continue };
        tx.execute(
            &format!(
                "UPDATE {table} SET retired_at = NULL
                  WHERE tenant_id = (SELECT id FROM tenants WHERE name = $1) AND {key} = $2"
            ),
            &[&step.tenant, &step.name],
        )?;
    }
    Ok(())
}

/// Retire the plan's retirements: packages first (nothing live may route to what follows),
/// then webhooks (cancelling their pending deliveries), providers and code groups. Returns how
/// many pending deliveries were cancelled.
pub fn retire(tx: &mut Transaction, plan: &Plan) -> Result<u64> {
    let mut steps: Vec<&Step> = plan.retirements().collect();
    steps.sort_by_key(|s| s.kind != Kind::Package);
    let mut cancelled = 0;
    for step in steps {
        if step.kind == Kind::ExchangeRate {
            retire_rate(tx, &step.name)?;
            continue;
        }
        let Some((table, key)) = table(step.kind) else { continue };
        let disable = if step.kind == Kind::CodeGroup { "" } else { ", enabled = false" };
        let id: Option<i64> = tx
            .query_opt(
                &format!(
                    "UPDATE {table} SET retired_at = now(){disable}
                      WHERE tenant_id = (SELECT id FROM tenants WHERE name = $1) AND {key} = $2 AND retired_at IS NULL
                  RETURNING id"
                ),
                &[&step.tenant, &step.name],
            )
            .map_err(|e| routed(e.into(), step))?
            .map(|r| r.get(0));
        if let (Kind::Webhook, Some(id)) = (step.kind, id) {
            cancelled += tx.execute(
                &format!(
                    "UPDATE webhook_deliveries
                        SET state = {cancelled}, next_attempt_at = NULL, in_flight_until = NULL,
                            last_error = 'cancelled: the webhook was retired by orderctl apply --prune'
                      WHERE webhook_id = $1 AND state = {to_deliver}",
                    cancelled = DeliveryState::Cancelled.sql(),
                    to_deliver = DeliveryState::Pending.sql()
                ),
                &[&id],
            )?;
        }
    }
    Ok(cancelled)
}

/// A retired rate stays (history), but converts no new order's cost: `orderctl_cost_rate`
/// reads live rates only. Orders already placed keep the rate they snapshotted.
fn retire_rate(tx: &mut Transaction, pair: &str) -> Result<()> {
    let pair = CurrencyPair::parse(pair).map_err(Error::internal)?;
    tx.execute(
        "UPDATE exchange_rates SET retired_at = now() WHERE from_currency = $1 AND to_currency = $2 AND retired_at IS NULL",
        &[&pair.from, &pair.to],
    )?;
    Ok(())
}

/// The database's last line (a live package of a tenant the file does not name still routes to
/// the object), in words.
fn routed(e: Error, step: &Step) -> Error {
    if e.constraint.as_deref() != Some("retired_objects_unrouted") {
        return e;
    }
    Error::refused(format!(
        "tenant {}, {}: a package that stays live still routes or forwards to it; nothing was written",
        step.tenant,
        step.label()
    ))
    .with_hint("`orderctl routing check` shows the package; route it elsewhere first, or keep this object in the file")
}
