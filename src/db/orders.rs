//! Reading orders, and creating them. Claims live in `claims`, and every change of an order's
//! state goes through `transitions` (the lifecycle's one writer).

use crate::db::row::{state, state_opt};
use crate::db::GenericClient;
use crate::domain::diagnosis::StuckReason;
use crate::domain::lifecycle::states::{live_sql, pending_sql, sql_in, PlacementState, Reconciled};
use crate::domain::lifecycle::{Attention, ExternalStatus, OrderStatus, Settlement};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// An order with the names of what it points at.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRow {
    pub id: Uuid,
    pub number: i64,
    pub tenant_id: i64,
    pub tenant: String,
    pub user_id: i64,
    pub user: String,
    pub package_id: i64,
    pub package: String,
    pub quantity: i32,
    pub user_identifier: String,
    pub extra_field: String,
    pub price: Decimal,
    pub status: OrderStatus,
    pub external_status: ExternalStatus,
    pub provider_id: Option<i64>,
    pub provider: Option<String>,
    pub external_order_id: Option<String>,
    pub provider_referans: Option<String>,
    pub pin_code: Option<String>,
    pub last_message: Option<String>,
    pub awaiting_reconciliation: bool,
    pub attention: Option<Attention>,
    pub checks: i32,
    pub no_news: i32,
    pub next_check_at: Option<DateTime<Utc>>,
    pub lease: i64,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub lane: i64,
    pub placement_attempts: i32,
    pub operator_forced: bool,
    pub late_pin: Option<String>,
    pub request_id: Option<String>,
    /// The order this one was forwarded to (internal routing), in another tenant.
    pub forwarded_to: Option<Uuid>,
    /// The order of another tenant this one was forwarded from.
    pub forwarded_from: Option<Uuid>,
    /// The database's clock when the row was read: diagnoses compare times against it.
    pub read_at: DateTime<Utc>,
    /// What the lifecycle compares an operator's repeated command with (not part of the order's documents).
    #[serde(skip)]
    pub operator_reason: Option<String>,
    #[serde(skip)]
    pub settlement: Option<Settlement>,
    #[serde(skip)]
    pub expects_pin: bool,
}

pub const ORDER_SELECT: &str = "
    SELECT o.id, o.number, o.tenant_id, t.name AS tenant, o.user_id, u.name AS user_name, o.package_id,
           pk.name AS package, o.quantity, o.user_identifier, o.extra_field, o.price, o.status, o.external_status,
           o.provider_id, pr.name AS provider, o.external_order_id, o.provider_referans, o.pin_code,
           o.last_message, o.awaiting_reconciliation, o.attention, o.checks, o.no_news,
           o.next_check_at, o.lease, o.created_at, o.dispatched_at, o.sent_at, o.last_sync_at,
           o.completed_at, o.duration_ms, o.lane, o.placement_attempts, o.operator_forced, o.late_pin,
           o.request_id, o.forwarded_to, o.forwarded_from, now() AS read_at, o.operator_reason, o.settlement,
           o.expects_pin
      FROM orders o
      JOIN tenants t ON t.id = o.tenant_id
      JOIN users u ON u.id = o.user_id
      JOIN packages pk ON pk.id = o.package_id
      LEFT JOIN providers pr ON pr.id = o.provider_id";

/// An order from a row of [`ORDER_SELECT`], by column name.
pub fn order_from_row(r: &postgres::Row) -> Result<OrderRow> {
    Ok(OrderRow {
        id: r.get("id"),
        number: r.get("number"),
        tenant_id: r.get("tenant_id"),
        tenant: r.get("tenant"),
        user_id: r.get("user_id"),
        user: r.get("user_name"),
        package_id: r.get("package_id"),
        package: r.get("package"),
        quantity: r.get("quantity"),
        user_identifier: r.get("user_identifier"),
        extra_field: r.get("extra_field"),
        price: r.get("price"),
        status: state(r, "status")?,
        external_status: state(r, "external_status")?,
        provider_id: r.get("provider_id"),
        provider: r.get("provider"),
        external_order_id: r.get("external_order_id"),
        provider_referans: r.get("provider_referans"),
        pin_code: r.get("pin_code"),
        last_message: r.get("last_message"),
        awaiting_reconciliation: r.get("awaiting_reconciliation"),
        attention: state_opt(r, "attention")?,
        checks: r.get("checks"),
        no_news: r.get("no_news"),
        next_check_at: r.get("next_check_at"),
        lease: r.get("lease"),
        created_at: r.get("created_at"),
        dispatched_at: r.get("dispatched_at"),
        sent_at: r.get("sent_at"),
        last_sync_at: r.get("last_sync_at"),
        completed_at: r.get("completed_at"),
        duration_ms: r.get("duration_ms"),
        lane: r.get("lane"),
        placement_attempts: r.get("placement_attempts"),
        operator_forced: r.get("operator_forced"),
        late_pin: r.get("late_pin"),
        request_id: r.get("request_id"),
        forwarded_to: r.get("forwarded_to"),
        forwarded_from: r.get("forwarded_from"),
        read_at: r.get("read_at"),
        operator_reason: r.get("operator_reason"),
        settlement: state_opt(r, "settlement")?,
        expects_pin: r.get("expects_pin"),
    })
}

impl OrderRow {
    /// What the lifecycle reads from this row.
    pub fn facts(&self) -> Result<crate::domain::lifecycle::Facts> {
        Ok(crate::domain::lifecycle::Facts {
            number: self.number,
            status: self.status,
            external: self.external_status,
            attention: self.attention,
            reconciling: self.awaiting_reconciliation,
            operator_forced: self.operator_forced,
            lane: self.lane,
            provider_id: self.provider_id,
            reference: self.provider_referans.clone(),
            scheduled: self.next_check_at.is_some(),
            checks: self.checks.max(0) as u32,
            no_news: self.no_news.max(0) as u32,
            placement_attempts: self.placement_attempts.max(0) as u32,
            price: self.price,
            late_pin: self.late_pin.clone(),
            forwarded: self.forwarded_to.is_some(),
            pin: self.pin_code.clone(),
            operator_reason: self.operator_reason.clone(),
            settlement: self.settlement,
            expects_pin: self.expects_pin,
        })
    }
}

/// How an operator names an order: its uuid or its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    Id(Uuid),
    Number(i64),
}

impl OrderRef {
    pub fn parse(s: &str) -> Result<OrderRef> {
        let t = s.trim();
        let t = t.strip_prefix('#').unwrap_or(t);
        if let Ok(n) = t.parse::<i64>() {
            if n > 0 {
                return Ok(OrderRef::Number(n));
            }
        }
        if let Ok(id) = Uuid::parse_str(t) {
            return Ok(OrderRef::Id(id));
        }
        Err(Error::invalid(format!("'{}' is neither an order uuid nor an order number", truncate(s, 80)))
            .with_hint("give the order's uuid (e.g. 0b7f5c1e-...) or its number (e.g. 1042); `orderctl list` shows both"))
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// Load an order by uuid or number, within a tenant when one is given. An order of another
/// tenant is reported exactly like a missing one, so a tenant's scope reveals nothing.
pub fn find_order(client: &mut impl GenericClient, order: &OrderRef, tenant: Option<&str>) -> Result<OrderRow> {
    let (id, number): (Option<Uuid>, Option<i64>) = match order {
        OrderRef::Id(id) => (Some(*id), None),
        OrderRef::Number(n) => (None, Some(*n)),
    };
    // The order's keys first (`order_keys`, one small unpartitioned table): with its id and
    // creation time named, the order's own read is planned over the live partition and one
    // month of the finished orders, not over every month (sql/0031).
    let key = client.query_opt(
        "SELECT id, created_at FROM order_keys WHERE ($1::uuid IS NULL OR id = $1) AND ($2::bigint IS NULL OR number = $2)",
        &[&id, &number],
    )?;
    let row = match key {
        Some(k) => {
            let (id, created_at): (Uuid, DateTime<Utc>) = (k.get(0), k.get(1));
            let sql = format!("{ORDER_SELECT} WHERE o.id = $1 AND o.created_at = $2 AND ($3::text IS NULL OR t.name = $3)");
            client.query_opt(&sql, &[&id, &created_at, &tenant])?
        }
        None => None,
    };
    row.map(|r| order_from_row(&r)).transpose()?.ok_or_else(|| {
        let what = match order {
            OrderRef::Id(id) => format!("order {id}"),
            OrderRef::Number(n) => format!("order number {n}"),
        };
        let scope = tenant.map(|t| format!(" in tenant {t}")).unwrap_or_default();
        Error::not_found(format!("{what} does not exist{scope}")).with_hint("list orders with `orderctl list`")
    })
}

pub fn load_order(client: &mut impl GenericClient, id: Uuid) -> Result<OrderRow> {
    find_order(client, &OrderRef::Id(id), None)
}

/// Load many orders by id in one query (missing ones are simply absent).
pub fn load_orders(client: &mut impl GenericClient, ids: &[Uuid]) -> Result<Vec<OrderRow>> {
    client.query(&format!("{ORDER_SELECT} WHERE o.id = ANY($1)"), &[&ids])?.iter().map(order_from_row).collect::<Result<_>>()
}

/// As [`load_orders`], for orders whose creation times the caller knows (`months`, any order):
/// planned over the live partition and those months of the finished orders alone (sql/0031).
pub fn load_orders_of_months(client: &mut impl GenericClient, ids: &[Uuid], months: &[DateTime<Utc>]) -> Result<Vec<OrderRow>> {
    client
        .query(&format!("{ORDER_SELECT} WHERE o.id = ANY($1) AND o.created_at = ANY($2)"), &[&ids, &months])?
        .iter()
        .map(order_from_row)
        .collect::<Result<_>>()
}

/// One entry of an order's history.
#[derive(Debug, Clone, Serialize)]
pub struct OrderEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub status: Option<String>,
    pub external_status: Option<String>,
    pub message: String,
    /// The steps of a dispatch, when the entry carries them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<crate::db::transitions::StepRecord>,
}

/// An order's history. `created_at` is the order's: events are partitioned by it (sql/0018), so
/// the statement is planned over that one month's partition.
pub fn events(client: &mut impl GenericClient, order_id: Uuid, created_at: DateTime<Utc>) -> Result<Vec<OrderEvent>> {
    Ok(client
        .query(
            "SELECT at, kind, status, external_status, message, steps FROM order_events
              WHERE order_id = $1 AND order_created_at = $2 ORDER BY id",
            &[&order_id, &created_at],
        )?
        .iter()
        .map(|r| OrderEvent {
            at: r.get(0),
            kind: r.get(1),
            status: r.get(2),
            external_status: r.get(3),
            message: r.get(4),
            steps: r.get::<_, Option<serde_json::Value>>(5).and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Create

#[derive(Debug)]
pub struct NewOrder<'a> {
    pub tenant: &'a str,
    pub user: &'a str,
    pub package: &'a str,
    pub player: &'a str,
    pub extra: &'a str,
    pub quantity: i32,
    /// The caller's key for this create (`--request-id`): repeating it returns the same order.
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreatedOrder {
    pub id: Uuid,
    pub number: i64,
    pub price: Decimal,
    pub routing_mode: String,
    /// The request id named an order created before: nothing was charged now.
    pub existed: bool,
}

/// Price the order, lock the buyer, require price × quantity ≤ balance + overdraft, charge
/// through the ledger, insert the order and its `created` event: one transaction. With a
/// request id, a create repeated with the same key (and the same order) returns the order
/// created the first time and charges nothing, even when two arrive at once.
pub fn create_order(client: &mut crate::db::Client, o: &NewOrder) -> Result<CreatedOrder> {
    if let Some(existing) = existing_request(client, o)? {
        return Ok(existing);
    }
    match insert_order(client, o) {
        Err(e) if o.request_id.is_some() && e.unique_violation_of("orders_request_id") => {
            existing_request(client, o)?.ok_or_else(|| Error::internal("a concurrent create with the same request id vanished"))
        }
        other => other,
    }
}

/// The order an earlier create with this request id made, if any. The same key for a
/// different order is refused: it is a mistake the caller must see.
fn existing_request(client: &mut crate::db::Client, o: &NewOrder) -> Result<Option<CreatedOrder>> {
    let Some(key) = o.request_id else { return Ok(None) };
    let row = client.query_opt(
        "SELECT o.id, o.number, o.price, pk.routing_mode, u.name, pk.name, o.user_identifier, o.extra_field, o.quantity
           FROM orders o JOIN tenants t ON t.id = o.tenant_id JOIN users u ON u.id = o.user_id JOIN packages pk ON pk.id = o.package_id
          WHERE t.name = $1 AND o.request_id = $2",
        &[&o.tenant, &key],
    )?;
    let Some(r) = row else { return Ok(None) };
    let same = r.get::<_, String>(4) == o.user
        && r.get::<_, String>(5) == o.package
        && r.get::<_, String>(6) == o.player
        && r.get::<_, String>(7) == o.extra
        && r.get::<_, i32>(8) == o.quantity;
    let number: i64 = r.get(1);
    if !same {
        return Err(Error::refused(format!(
            "request id '{}' was already used for order {number}, with other details (user, package, player, extra or quantity)",
            truncate(key, 80)
        ))
        .with_hint(format!("use a new request id for a new order; `orderctl inspect {number}` shows the first one")));
    }
    Ok(Some(CreatedOrder { id: r.get(0), number, price: r.get(2), routing_mode: r.get(3), existed: true }))
}

fn insert_order(client: &mut crate::db::Client, o: &NewOrder) -> Result<CreatedOrder> {
    let mut tx = client.transaction()?;
    let tenant_id = crate::db::routing::tenant_id(&mut tx, o.tenant)?;
    let user = tx
        .query_opt(
            "SELECT id, balance, overdraft_limit FROM users WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            &[&tenant_id, &o.user],
        )?
        .ok_or_else(|| {
            Error::not_found(format!("user '{}' does not exist in tenant {}", truncate(o.user, 80), o.tenant))
                .with_hint(format!("list users with `orderctl user list --tenant {}`", o.tenant))
        })?;
    let (user_id, balance, overdraft): (i64, Decimal, Decimal) = (user.get(0), user.get(1), user.get(2));
    let package = tx
        .query_opt(
            "SELECT id, price, enabled, routing_mode, retired_at FROM packages WHERE tenant_id = $1 AND name = $2",
            &[&tenant_id, &o.package],
        )?
        .ok_or_else(|| {
            Error::not_found(format!("package '{}' does not exist in tenant {}", truncate(o.package, 80), o.tenant))
                .with_hint(format!("list packages with `orderctl package list --tenant {}`", o.tenant))
        })?;
    let (package_id, unit_price, enabled, routing_mode): (i64, Decimal, bool, String) =
        (package.get(0), package.get(1), package.get(2), package.get(3));
    if let Some(when) = package.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4) {
        // Retired by `apply --prune`: gone for buyers, kept for history.
        return Err(Error::not_found(format!(
            "package '{}' was retired from tenant {} at {} (removed from the setup file); nothing was charged",
            truncate(o.package, 80),
            o.tenant,
            when.format("%Y-%m-%d %H:%M:%SZ")
        ))
        .with_hint("order another package, or add it back to the setup file and apply it to revive it"));
    }
    if !enabled {
        return Err(Error::refused(format!("package {} is disabled in tenant {}", o.package, o.tenant))
            .with_hint("enable it in the setup file and apply it, or order another package"));
    }
    let total = unit_price * Decimal::from(o.quantity);
    if total > balance + overdraft {
        return Err(Error::refused(format!(
            "insufficient balance: {} × {} costs {total}, but user {} has {balance} and an overdraft limit of {overdraft}",
            o.quantity, unit_price, o.user
        ))
        .with_hint("top the balance up (adjust it in the setup file and apply it) or order less"));
    }
    tx.execute("UPDATE users SET balance = balance - $2 WHERE id = $1", &[&user_id, &total])?;
    // The id is the column's default, a time-ordered id minted by the database (0027).
    let created = tx.query_one(
        "INSERT INTO orders (tenant_id, user_id, package_id, quantity, user_identifier, extra_field, price, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, number",
        &[&tenant_id, &user_id, &package_id, &o.quantity, &o.player, &o.extra, &total, &o.request_id],
    )?;
    let (id, number): (Uuid, i64) = (created.get("id"), created.get("number"));
    tx.execute(
        "INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note) VALUES ($1, $2, $3, 'charge', $4, $5)",
        &[&tenant_id, &user_id, &id, &(-total), &format!("order {number}")],
    )?;
    // A new order is open: read in the live partition alone (sql/0031).
    tx.execute(
        &format!(
            "INSERT INTO order_events (order_id, kind, status, external_status, message, order_created_at)
             SELECT id, 'created', status, external_status, $2, created_at FROM orders WHERE {} AND id = $1",
            crate::domain::lifecycle::states::live_sql("")
        ),
        &[&id, &format!("charged {total} ({} × {unit_price}) to {}", o.quantity, o.user)],
    )?;
    tx.commit()?;
    Ok(CreatedOrder { id, number, price: total, routing_mode, existed: false })
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/// A placement attempt, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub provider_id: i64,
    pub provider: String,
    pub referans: String,
    /// The attempt with this reference (a re-placement is the next one; each keeps its outcome).
    pub attempt: i32,
    pub outcome: PlacementState,
    /// What a later status check found about an attempt whose outcome was unknown.
    pub reconciled: Option<Reconciled>,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The placements of these orders, each order's in the order they were made, in one query
/// (over the orders' months of `placements` alone, sql/0032).
pub fn placements_of(
    client: &mut impl GenericClient,
    orders: &[OrderRow],
) -> Result<std::collections::HashMap<Uuid, Vec<Placement>>> {
    let mut out: std::collections::HashMap<Uuid, Vec<Placement>> = Default::default();
    if orders.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    let months: Vec<DateTime<Utc>> = orders.iter().map(|o| o.created_at).collect();
    for r in client.query(
        "SELECT p.order_id, p.provider_id, pr.name AS provider, p.referans, p.outcome, p.message, p.created_at, p.attempt,
                p.reconciled
           FROM placements p JOIN providers pr ON pr.id = p.provider_id
          WHERE p.order_id = ANY($1) AND p.order_created_at = ANY($2) ORDER BY p.id",
        &[&ids, &months],
    )? {
        out.entry(r.get("order_id")).or_default().push(Placement {
            provider_id: r.get("provider_id"),
            provider: r.get("provider"),
            referans: r.get("referans"),
            attempt: r.get("attempt"),
            outcome: state(&r, "outcome")?,
            reconciled: state_opt(&r, "reconciled")?,
            message: r.get("message"),
            created_at: r.get("created_at"),
        });
    }
    Ok(out)
}

/// The tenant and number of each of these orders (the orders others were forwarded from).
pub fn forwarded_from(client: &mut impl GenericClient, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, (String, i64)>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(client
        .query("SELECT o.id, t.name, o.number FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE o.id = ANY($1)", &[&ids])?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// What was refunded for each of these orders (those refunded), in one query.
pub fn refunds(client: &mut impl GenericClient, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Decimal>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    Ok(client
        .query("SELECT order_id, amount FROM ledger WHERE order_id = ANY($1) AND kind = 'refund'", &[&ids])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// What was refunded for an order, if anything.
pub fn refunded(client: &mut impl GenericClient, order_id: Uuid) -> Result<Option<Decimal>> {
    Ok(client.query_opt("SELECT amount FROM ledger WHERE order_id = $1 AND kind = 'refund'", &[&order_id])?.map(|r| r.get(0)))
}

/// Filters for `orderctl list`. Every field narrows the result; None means any.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub tenant: Option<String>,
    pub status: Option<String>,
    pub external_status: Option<String>,
    pub provider: Option<String>,
    pub package: Option<String>,
    pub user: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The orders matching `f`, newest first: by number (one global sequence, taken at insert), so
/// the unique index on it stops the scan at the limit; sorting the whole table by `created_at`
/// cost 40 ms at 20k orders.
pub fn list_orders(client: &mut impl GenericClient, f: &OrderFilter) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "{ORDER_SELECT}
          WHERE ($1::text IS NULL OR t.name = $1) AND ($2::text IS NULL OR o.status = $2)
            AND ($3::text IS NULL OR o.external_status = $3) AND ($4::text IS NULL OR pr.name = $4)
            AND ($5::text IS NULL OR pk.name = $5) AND ($6::text IS NULL OR u.name = $6)
            AND ($7::timestamptz IS NULL OR o.created_at >= $7) AND ($8::timestamptz IS NULL OR o.created_at < $8)
          ORDER BY o.number DESC LIMIT $9"
    );
    client
        .query(
            &sql,
            &[
                &f.tenant,
                &f.status,
                &f.external_status,
                &f.provider,
                &f.package,
                &f.user,
                &f.created_after,
                &f.created_before,
                &f.limit,
            ],
        )?
        .iter()
        .map(order_from_row)
        .collect()
}

/// The ids of the orders that are not moving (`$2`: how late work may be, in ms), by the one
/// stuck rule (`diagnosis::StuckReason`), one fragment per reason. Evaluated here, before any
/// limit, so orders that wait for an operator by design (manual routing) never hide stuck ones.
/// Callers read the orders by `o.id = ANY(ARRAY(...))` of it: one index probe per partition
/// for the few stuck ids (as `IN`, the planner may hash every month's rows against them).
fn stuck_ids() -> String {
    let own: Vec<String> = StuckReason::ALL.iter().filter_map(|r| stuck_sql(*r)).collect();
    let pending = pending_sql("d.");
    format!(
        "WITH RECURSIVE own AS (
             {}
         ), chain AS (
             SELECT id FROM own
             UNION SELECT d.id FROM orders d JOIN chain c ON d.forwarded_to = c.id WHERE {pending}
         )
         SELECT id FROM chain",
        own.join("\n             UNION ")
    )
}

/// The orders a reason holds for, as a `SELECT id`; None for the one reason the recursive
/// chain of [`stuck_ids`] decides (forwarded to a stuck order).
fn stuck_sql(reason: StuckReason) -> Option<String> {
    let (pending, not_sent) = (pending_sql(""), ExternalStatus::NotSent.sql());
    let held = sql_in(&ExternalStatus::HELD);
    let waiting_to_send = format!("{} AND x.external_status = {not_sent} AND x.attention IS NULL", pending_sql("x."));
    Some(match reason {
        StuckReason::Flagged => "SELECT id FROM orders WHERE attention IS NOT NULL".to_string(),
        StuckReason::HeldUnscheduled => format!(
            "SELECT id FROM orders WHERE {pending} AND next_check_at IS NULL AND forwarded_to IS NULL
                                      AND external_status IN ({held})"
        ),
        // One arm per partial due index: a bare `next_check_at < X` matches neither and reads
        // the whole table, history included.
        StuckReason::Overdue => format!(
            "SELECT id FROM orders WHERE next_check_at IS NOT NULL AND {placements}
                                      AND next_check_at < now() - make_interval(secs => $2::bigint / 1000.0)
             UNION SELECT id FROM orders WHERE next_check_at IS NOT NULL AND {checks}
                                      AND next_check_at < now() - make_interval(secs => $2::bigint / 1000.0)",
            placements = crate::db::claims::due_kind("", true),
            checks = crate::db::claims::due_kind("", false)
        ),
        StuckReason::RoutingContradicts => format!(
            "SELECT x.id FROM orders x JOIN packages p ON p.id = x.package_id
              WHERE {waiting_to_send} AND p.routing_mode = 'auto'
                AND (p.provider_type = 'manual' OR (p.provider_type = 'external' AND p.primary_provider_id IS NULL)
                     OR (p.provider_type = 'codes' AND p.code_group_id IS NULL))"
        ),
        StuckReason::Lost => format!(
            "SELECT x.id FROM orders x JOIN packages p ON p.id = x.package_id
              WHERE {waiting_to_send} AND x.next_check_at IS NULL AND (x.lane <> 0 OR p.routing_mode = 'auto')"
        ),
        StuckReason::UpstreamStuck => return None,
        StuckReason::WaitingForProvider => {
            let waiting = ExternalStatus::WaitingForProvider.sql();
            format!("SELECT id FROM orders WHERE {pending} AND external_status = {waiting}")
        }
    })
}

/// The stuck orders, oldest first, at most `limit`.
pub fn stuck_orders(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    overdue_after: Duration,
    limit: i64,
) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "{ORDER_SELECT} WHERE o.id = ANY(ARRAY({})) AND ($1::text IS NULL OR t.name = $1) ORDER BY o.created_at, o.number LIMIT $3",
        stuck_ids()
    );
    client.query(&sql, &[&tenant, &(overdue_after.as_millis() as i64), &limit])?.iter().map(order_from_row).collect()
}

/// How many orders are stuck, for reports that name only some.
pub fn count_stuck(client: &mut impl GenericClient, tenant: Option<&str>, overdue_after: Duration) -> Result<i64> {
    let sql = format!(
        "SELECT count(*) FROM orders o JOIN tenants t ON t.id = o.tenant_id
          WHERE o.id = ANY(ARRAY({})) AND ($1::text IS NULL OR t.name = $1)",
        stuck_ids()
    );
    Ok(client.query_one(&sql, &[&tenant, &(overdue_after.as_millis() as i64)])?.get(0))
}

/// The batch safety sweep's work: the oldest open orders sent between `max_age` and `min_age`
/// ago are made due now (unless due sooner), even if their own schedule was lost. Returns the
/// lane of each. Forwarded orders have no provider to ask: the sweep takes their upstream orders.
/// An order whose check is in flight is not touched (its claim's lease decides when it is due).
pub fn make_due_for_safety_sweep(
    client: &mut impl GenericClient,
    limit: i64,
    min_age: Duration,
    max_age: Duration,
    tenant: Option<i64>,
) -> Result<Vec<i64>> {
    Ok(client
        .query(
            &format!(
                "UPDATE orders o SET next_check_at = now(), lane = coalesce(o.provider_id, o.lane)
               FROM (SELECT id FROM orders
                      WHERE {pending} AND external_status IN ({with_provider}) AND forwarded_to IS NULL
                        AND sent_at BETWEEN now() - make_interval(secs => $2::bigint / 1000.0)
                                        AND now() - make_interval(secs => $3::bigint / 1000.0)
                        AND ($4::bigint IS NULL OR tenant_id = $4)
                      ORDER BY sent_at LIMIT $1 FOR UPDATE SKIP LOCKED) c
              WHERE {live} AND o.id = c.id AND (o.next_check_at IS NULL OR o.next_check_at > now())
                -- A check in flight (claimed, its lease not run out) is left alone: making it due
                -- again would have it checked twice at once.
                AND NOT (o.claimed_at IS NOT NULL AND o.next_check_at > now())
              RETURNING o.lane",
                pending = pending_sql(""),
                live = live_sql("o."),
                with_provider = sql_in(&[ExternalStatus::Sent, ExternalStatus::Processing])
            ),
            &[&limit, &(max_age.as_millis() as i64), &(min_age.as_millis() as i64), &tenant],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
