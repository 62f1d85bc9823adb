//! Forwarding an order to another tenant: the upstream order is created, charged to the account,
//! in the caller's transaction, the same one that moves the forwarded order to `sent`
//! (`dispatch::route`); and what the one writer needs to finish forwarded orders when their
//! upstream orders finish (`db::transitions`).

use crate::db::claims::DueRow;
use crate::db::routing::Upstream;
use crate::db::GenericClient;
use crate::domain::lifecycle::states::OrderStatus;
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use uuid::Uuid;

/// The upstream order a forwarded order became.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: Uuid,
    pub number: i64,
    /// The upstream tenant's name.
    pub tenant: String,
}

/// Create the upstream order for a locked order of the routing lane: the account is locked and
/// charged the upstream package's price (its balance plus overdraft must cover it), the order is
/// inserted with a link back (`forwarded_from`), and its `created` event written. The insert
/// schedules it in the upstream tenant's own routing (the `orders_schedule_new` trigger). `Ok(Err(why))`:
/// the upstream tenant refuses it, and nothing was written.
pub fn create_upstream(
    tx: &mut impl GenericClient,
    order: &DueRow,
    up: &Upstream,
) -> Result<std::result::Result<Created, String>> {
    let package = tx
        .query_opt(
            "SELECT p.name, p.price, p.enabled, t.name FROM packages p JOIN tenants t ON t.id = p.tenant_id
              WHERE p.id = $1 AND p.tenant_id = $2",
            &[&up.package_id, &up.tenant_id],
        )?
        .ok_or_else(|| Error::internal("the upstream package of a forwarding vanished"))?;
    let (package_name, unit_price, enabled, tenant): (String, Decimal, bool, String) =
        (package.get(0), package.get(1), package.get(2), package.get(3));
    if !enabled {
        return Ok(Err(format!("its package {package_name} is disabled there")));
    }
    let account = tx
        .query_opt(
            "SELECT name, balance, overdraft_limit FROM users WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            &[&up.user_id, &up.tenant_id],
        )?
        .ok_or_else(|| Error::internal("the account of a forwarding vanished"))?;
    let (account_name, balance, overdraft): (String, Decimal, Decimal) = (account.get(0), account.get(1), account.get(2));
    let total = unit_price * Decimal::from(order.quantity);
    if total > balance + overdraft {
        return Ok(Err(format!(
            "account {account_name} has {balance} and an overdraft limit of {overdraft} there, and the order costs {total} \
             ({} × {unit_price})",
            order.quantity
        )));
    }
    tx.execute("UPDATE users SET balance = balance - $2 WHERE id = $1", &[&up.user_id, &total])?;
    // The id is the column's default, a time-ordered id minted by the database (0027).
    let created = tx.query_one(
        "INSERT INTO orders (tenant_id, user_id, package_id, quantity, user_identifier, extra_field, price, forwarded_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, number",
        &[&up.tenant_id, &up.user_id, &up.package_id, &order.quantity, &order.player, &order.extra, &total, &order.id],
    )?;
    let (id, number): (Uuid, i64) = (created.get("id"), created.get("number"));
    let from = tx.query_one("SELECT t.name FROM tenants t WHERE t.id = $1", &[&order.tenant_id])?.get::<_, String>(0);
    tx.execute(
        "INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note) VALUES ($1, $2, $3, 'charge', $4, $5)",
        &[&up.tenant_id, &up.user_id, &id, &(-total), &format!("order {number}, forwarded from {from} order {}", order.number)],
    )?;
    // A new order is open: read in the live partition alone (sql/0031).
    tx.execute(
        &format!(
            "INSERT INTO order_events (order_id, kind, status, external_status, message, order_created_at)
             SELECT id, 'created', status, external_status, $2, created_at FROM orders WHERE {} AND id = $1",
            crate::domain::lifecycle::states::live_sql("")
        ),
        &[
            &id,
            &format!(
                "forwarded from {from}'s order {}; charged {total} ({} × {unit_price}) to {account_name}",
                order.number, order.quantity
            ),
        ],
    )?;
    Ok(Ok(Created { id, number, tenant }))
}

/// An upstream order that reached a final status, as the order forwarded to it learns it.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The forwarded (downstream) order.
    pub downstream: Uuid,
    pub tenant: String,
    pub number: i64,
    pub approved: bool,
    pub pin: Option<String>,
    /// The kind of the upstream order's latest history entry (who finished it).
    pub finished_by: String,
}

/// Of these orders (just written with a final status), the ones something was forwarded to them
/// from, with what the forwarded order needs to finish.
pub fn finished_upstream(tx: &mut impl GenericClient, ids: &[Uuid]) -> Result<Vec<Finished>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    // The write-back passes only orders it saw forwarded here (`Reached::forwarded_here`):
    // the common case costs no statement at all.
    let rows = tx.query(
        &format!(
            "SELECT u.forwarded_from, t.name, u.number, u.status = {approved} AS approved, u.pin_code, u.id, u.created_at
               FROM orders u JOIN tenants t ON t.id = u.tenant_id
              WHERE u.id = ANY($1) AND u.forwarded_from IS NOT NULL AND u.status <> {pending}",
            approved = OrderStatus::Approved.sql(),
            pending = OrderStatus::Pending.sql()
        ),
        &[&ids],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        // Events are partitioned by their order's creation time (sql/0018): naming it plans this
        // over that month's partition only.
        let (id, created_at): (Uuid, chrono::DateTime<chrono::Utc>) = (r.get("id"), r.get("created_at"));
        let finished_by = tx
            .query_opt(
                "SELECT kind FROM order_events WHERE order_id = $1 AND order_created_at = $2 ORDER BY id DESC LIMIT 1",
                &[&id, &created_at],
            )?
            .map(|e| e.get::<_, String>("kind"))
            .unwrap_or_default();
        out.push(Finished {
            downstream: r.get("forwarded_from"),
            tenant: r.get("name"),
            number: r.get("number"),
            approved: r.get("approved"),
            pin: r.get("pin_code"),
            finished_by,
        });
    }
    Ok(out)
}
