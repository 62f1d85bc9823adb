//! Every statement that reads or changes an order. The hot paths are few and short:
//! `claim_due` (one statement), `claim_placements`, `record_*` and the batched write-backs.
//!
//! Two rules hold everywhere:
//! - a finished order (approved / rejected) is never changed again (`status = 'pending'` guards);
//! - every state change bumps `lease`, and every write-back of work that was claimed carries the
//!   lease it claimed with; zero rows updated means somebody else owns the order now.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use postgres::GenericClient;
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
    pub status: String,
    pub external_status: String,
    pub provider_id: Option<i64>,
    pub provider: Option<String>,
    pub external_order_id: Option<String>,
    pub provider_referans: Option<String>,
    pub pin_code: Option<String>,
    pub last_message: Option<String>,
    pub awaiting_reconciliation: bool,
    pub attention: Option<String>,
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
}

pub const ORDER_SELECT: &str = "
    SELECT o.id, o.number, o.tenant_id, t.name, o.user_id, u.name, o.package_id, pk.name,
           o.quantity, o.user_identifier, o.extra_field, o.price, o.status, o.external_status,
           o.provider_id, pr.name, o.external_order_id, o.provider_referans, o.pin_code,
           o.last_message, o.awaiting_reconciliation, o.attention, o.checks, o.no_news,
           o.next_check_at, o.lease, o.created_at, o.dispatched_at, o.sent_at, o.last_sync_at,
           o.completed_at, o.duration_ms
      FROM orders o
      JOIN tenants t ON t.id = o.tenant_id
      JOIN users u ON u.id = o.user_id
      JOIN packages pk ON pk.id = o.package_id
      LEFT JOIN providers pr ON pr.id = o.provider_id";

pub fn order_from_row(r: &postgres::Row) -> OrderRow {
    OrderRow {
        id: r.get(0),
        number: r.get(1),
        tenant_id: r.get(2),
        tenant: r.get(3),
        user_id: r.get(4),
        user: r.get(5),
        package_id: r.get(6),
        package: r.get(7),
        quantity: r.get(8),
        user_identifier: r.get(9),
        extra_field: r.get(10),
        price: r.get(11),
        status: r.get(12),
        external_status: r.get(13),
        provider_id: r.get(14),
        provider: r.get(15),
        external_order_id: r.get(16),
        provider_referans: r.get(17),
        pin_code: r.get(18),
        last_message: r.get(19),
        awaiting_reconciliation: r.get(20),
        attention: r.get(21),
        checks: r.get(22),
        no_news: r.get(23),
        next_check_at: r.get(24),
        lease: r.get(25),
        created_at: r.get(26),
        dispatched_at: r.get(27),
        sent_at: r.get(28),
        last_sync_at: r.get(29),
        completed_at: r.get(30),
        duration_ms: r.get(31),
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
    let sql = format!(
        "{ORDER_SELECT} WHERE ($1::uuid IS NULL OR o.id = $1) AND ($2::bigint IS NULL OR o.number = $2)
            AND ($3::text IS NULL OR t.name = $3)"
    );
    let row = client.query_opt(&sql, &[&id, &number, &tenant])?;
    row.map(|r| order_from_row(&r)).ok_or_else(|| {
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
    Ok(client.query(&format!("{ORDER_SELECT} WHERE o.id = ANY($1)"), &[&ids])?.iter().map(order_from_row).collect())
}

/// One entry of an order's history.
#[derive(Debug, Clone, Serialize)]
pub struct OrderEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub status: Option<String>,
    pub external_status: Option<String>,
    pub message: String,
}

pub fn events(client: &mut impl GenericClient, order_id: Uuid) -> Result<Vec<OrderEvent>> {
    Ok(client
        .query(
            "SELECT at, kind, status, external_status, message FROM order_events WHERE order_id = $1 ORDER BY id",
            &[&order_id],
        )?
        .iter()
        .map(|r| OrderEvent { at: r.get(0), kind: r.get(1), status: r.get(2), external_status: r.get(3), message: r.get(4) })
        .collect())
}

/// An event to record. Many are written in one statement.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub order_id: Uuid,
    pub kind: String,
    pub message: String,
    /// When it happened (events of a step are written later, with the step's outcome).
    pub at: DateTime<Utc>,
    /// The external status at that moment, when it differs from the row's at write time.
    pub external_status: Option<String>,
}

impl NewEvent {
    pub fn new(order_id: Uuid, kind: impl Into<String>, message: impl Into<String>) -> NewEvent {
        NewEvent { order_id, kind: kind.into(), message: message.into(), at: Utc::now(), external_status: None }
    }
}

/// Record events; each carries the order's status as it is when the statement runs (after the
/// changes made earlier in the same transaction), unless the event says otherwise.
pub fn record_events(client: &mut impl GenericClient, events: &[NewEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.order_id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
    let ext: Vec<Option<&str>> = events.iter().map(|e| e.external_status.as_deref()).collect();
    client.execute(
        "INSERT INTO order_events (order_id, at, kind, status, external_status, message)
         SELECT e.order_id, e.at, e.kind, o.status, coalesce(e.ext, o.external_status), e.message
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
                WITH ORDINALITY AS e(order_id, kind, message, at, ext, n)
           JOIN orders o ON o.id = e.order_id
          ORDER BY e.n",
        &[&ids, &kinds, &messages, &at, &ext],
    )?;
    Ok(())
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
}

#[derive(Debug, Clone, Serialize)]
pub struct CreatedOrder {
    pub id: Uuid,
    pub number: i64,
    pub price: Decimal,
    pub routing_mode: String,
}

/// Price the order, lock the buyer, require price × quantity ≤ balance + overdraft, charge
/// through the ledger, insert the order and its `created` event: one transaction.
pub fn create_order(client: &mut postgres::Client, o: &NewOrder) -> Result<CreatedOrder> {
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
            "SELECT id, price, enabled, routing_mode FROM packages WHERE tenant_id = $1 AND name = $2",
            &[&tenant_id, &o.package],
        )?
        .ok_or_else(|| {
            Error::not_found(format!("package '{}' does not exist in tenant {}", truncate(o.package, 80), o.tenant))
                .with_hint(format!("list packages with `orderctl package list --tenant {}`", o.tenant))
        })?;
    let (package_id, unit_price, enabled, routing_mode): (i64, Decimal, bool, String) =
        (package.get(0), package.get(1), package.get(2), package.get(3));
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
    let id = Uuid::new_v4();
    tx.execute("UPDATE users SET balance = balance - $2 WHERE id = $1", &[&user_id, &total])?;
    let number: i64 = tx
        .query_one(
            "INSERT INTO orders (id, tenant_id, user_id, package_id, quantity, user_identifier, extra_field, price)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING number",
            &[&id, &tenant_id, &user_id, &package_id, &o.quantity, &o.player, &o.extra, &total],
        )?
        .get(0);
    tx.execute(
        "INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note) VALUES ($1, $2, $3, 'charge', $4, $5)",
        &[&tenant_id, &user_id, &id, &(-total), &format!("order {number}")],
    )?;
    record_events(
        &mut tx,
        &[NewEvent::new(id, "created", format!("charged {total} ({} × {unit_price}) to {}", o.quantity, o.user))],
    )?;
    tx.commit()?;
    Ok(CreatedOrder { id, number, price: total, routing_mode })
}

// ---------------------------------------------------------------------------------------------
// Dispatch

/// A placement attempt, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub provider_id: i64,
    pub provider: String,
    pub referans: String,
    pub outcome: String,
    pub message: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub fn placements(client: &mut impl GenericClient, order_id: Uuid) -> Result<Vec<Placement>> {
    Ok(client
        .query(
            "SELECT p.provider_id, pr.name, p.referans, p.outcome, p.message, p.created_at
               FROM placements p JOIN providers pr ON pr.id = p.provider_id
              WHERE p.order_id = $1 ORDER BY p.id",
            &[&order_id],
        )?
        .iter()
        .map(|r| Placement {
            provider_id: r.get(0),
            provider: r.get(1),
            referans: r.get(2),
            outcome: r.get(3),
            message: r.get(4),
            created_at: r.get(5),
        })
        .collect())
}

/// The mapping of a package for a provider, if any.
pub fn mapping(client: &mut impl GenericClient, package_id: i64, provider_id: i64) -> Result<Option<serde_json::Value>> {
    Ok(client
        .query_opt(
            "SELECT params FROM package_mappings WHERE package_id = $1 AND provider_id = $2",
            &[&package_id, &provider_id],
        )?
        .map(|r| r.get(0)))
}

/// A placement to claim: the order, the provider and the reference to send.
#[derive(Debug, Clone)]
pub struct PlacementClaim {
    pub order_id: Uuid,
    pub provider_id: i64,
    pub reference: String,
    /// The reference was shown absent at the provider and is sent again: its placement row exists.
    pub reuse_reference: bool,
    /// The order is already `dispatching` under this lease (a fallback or a re-placement).
    pub expected_lease: Option<i64>,
}

/// The claim that makes a placement at most once: move each order into `dispatching` with the
/// provider and the reference, record its placement row, and (the caller) commit, and only then
/// call the provider. Exactly one caller can win an order: the update only matches an order that
/// is still waiting to be placed (or, with `expected_lease`, one this caller already owns).
/// Many orders are claimed in two statements whatever their number.
///
/// Returns the new lease of every order this caller won; the others were taken by someone else.
pub fn claim_placements(
    client: &mut impl GenericClient,
    claims: &[PlacementClaim],
    placement_lease: Duration,
) -> Result<std::collections::HashMap<Uuid, i64>> {
    if claims.is_empty() {
        return Ok(Default::default());
    }
    let lease_ms = placement_lease.as_millis() as i64;
    let ids: Vec<Uuid> = claims.iter().map(|c| c.order_id).collect();
    let providers: Vec<i64> = claims.iter().map(|c| c.provider_id).collect();
    let references: Vec<&str> = claims.iter().map(|c| c.reference.as_str()).collect();
    let expected: Vec<Option<i64>> = claims.iter().map(|c| c.expected_lease).collect();
    let rows = client.query(
        "UPDATE orders o
            SET external_status = 'dispatching', provider_id = c.provider_id, provider_referans = c.reference,
                dispatched_at = now(), attention = NULL, awaiting_reconciliation = false,
                lease = o.lease + 1,
                next_check_at = now() + make_interval(secs => $5::bigint / 1000.0),
                last_message = NULL
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[]) AS c(id, provider_id, reference, expected_lease)
          WHERE o.id = c.id AND o.status = 'pending'
            AND CASE WHEN c.expected_lease IS NULL
                     THEN o.external_status = 'not_sent'
                          OR (o.external_status = 'failed' AND o.attention = 'placement_rejected')
                     ELSE o.external_status = 'dispatching' AND o.lease = c.expected_lease END
          RETURNING o.id, o.lease",
        &[&ids, &providers, &references, &expected, &lease_ms],
    )?;
    let won: std::collections::HashMap<Uuid, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let (reused, fresh): (Vec<&PlacementClaim>, Vec<&PlacementClaim>) =
        claims.iter().filter(|c| won.contains_key(&c.order_id)).partition(|c| c.reuse_reference);
    if !reused.is_empty() {
        let providers: Vec<i64> = reused.iter().map(|c| c.provider_id).collect();
        let references: Vec<&str> = reused.iter().map(|c| c.reference.as_str()).collect();
        client.execute(
            "UPDATE placements p SET outcome = 'in_flight', finished_at = NULL
               FROM unnest($1::bigint[], $2::text[]) AS c(provider_id, reference)
              WHERE p.provider_id = c.provider_id AND p.referans = c.reference",
            &[&providers, &references],
        )?;
    }
    if !fresh.is_empty() {
        let ids: Vec<Uuid> = fresh.iter().map(|c| c.order_id).collect();
        let providers: Vec<i64> = fresh.iter().map(|c| c.provider_id).collect();
        let references: Vec<&str> = fresh.iter().map(|c| c.reference.as_str()).collect();
        client.execute(
            "INSERT INTO placements (order_id, provider_id, referans)
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[])",
            &[&ids, &providers, &references],
        )?;
    }
    Ok(won)
}

/// Set the outcome of a placement row.
pub fn set_placement_outcome(
    client: &mut impl GenericClient,
    provider_id: i64,
    reference: &str,
    outcome: &str,
    message: &str,
) -> Result<()> {
    set_placement_outcomes(client, &[(provider_id, reference.to_string(), outcome, message.to_string())])
}

/// Set the outcomes of many placement rows in one statement: (provider, reference, outcome, message).
pub fn set_placement_outcomes(client: &mut impl GenericClient, items: &[(i64, String, &str, String)]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let providers: Vec<i64> = items.iter().map(|i| i.0).collect();
    let references: Vec<&str> = items.iter().map(|i| i.1.as_str()).collect();
    let outcomes: Vec<&str> = items.iter().map(|i| i.2).collect();
    let messages: Vec<&str> = items.iter().map(|i| i.3.as_str()).collect();
    client.execute(
        "UPDATE placements p SET outcome = u.outcome, message = u.message, finished_at = now()
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(provider_id, reference, outcome, message)
          WHERE p.provider_id = u.provider_id AND p.referans = u.reference",
        &[&providers, &references, &outcomes, &messages],
    )?;
    Ok(())
}

/// An accepted placement to record: (order, lease it was claimed with, provider's order id, message).
pub type Accepted = (Uuid, i64, Option<String>, String);

/// Accepted: the provider owns the order. First check scheduled. Many orders in one statement,
/// each guarded by its lease; returns the new lease of every order recorded (the others were
/// taken over meanwhile).
pub fn record_accepted_many(
    client: &mut impl GenericClient,
    items: &[Accepted],
    first_check: Duration,
) -> Result<std::collections::HashMap<Uuid, i64>> {
    if items.is_empty() {
        return Ok(Default::default());
    }
    let ms = first_check.as_millis() as i64;
    let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
    let leases: Vec<i64> = items.iter().map(|i| i.1).collect();
    let external: Vec<Option<&str>> = items.iter().map(|i| i.2.as_deref()).collect();
    let messages: Vec<&str> = items.iter().map(|i| i.3.as_str()).collect();
    Ok(client
        .query(
            "UPDATE orders o SET external_status = 'sent', sent_at = coalesce(o.sent_at, now()), last_sync_at = now(),
                    external_order_id = coalesce(u.external_order_id, o.external_order_id), last_message = u.message,
                    awaiting_reconciliation = false, lease = o.lease + 1,
                    next_check_at = now() + make_interval(secs => $5::bigint / 1000.0)
               FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS u(id, lease, external_order_id, message)
              WHERE o.id = u.id AND o.lease = u.lease AND o.status = 'pending'
              RETURNING o.id, o.lease",
            &[&ids, &leases, &external, &messages, &ms],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Rejected with nowhere else to go: the order stays pending for an operator; no refund.
pub fn record_rejected(client: &mut impl GenericClient, order_id: Uuid, lease: i64, message: &str) -> Result<bool> {
    Ok(client.execute(
        "UPDATE orders SET external_status = 'failed', attention = 'placement_rejected', last_message = $3,
                next_check_at = NULL, awaiting_reconciliation = false, lease = lease + 1, last_sync_at = now()
          WHERE id = $1 AND lease = $2 AND status = 'pending'",
        &[&order_id, &lease, &message],
    )? == 1)
}

/// Unknown outcome: keep the reference; a status check with it decides later.
pub fn record_ambiguous(
    client: &mut impl GenericClient,
    order_id: Uuid,
    lease: i64,
    message: &str,
    reconcile_after: Duration,
) -> Result<bool> {
    let ms = reconcile_after.as_millis() as i64;
    Ok(client.execute(
        "UPDATE orders SET awaiting_reconciliation = true, last_message = $3, lease = lease + 1,
                next_check_at = now() + make_interval(secs => $4::bigint / 1000.0)
          WHERE id = $1 AND lease = $2 AND status = 'pending'",
        &[&order_id, &lease, &message, &ms],
    )? == 1)
}

/// Dispatch stopped before anything was sent (routing, mapping, provider, code stock): the
/// order needs an operator; `attention` says why.
pub fn record_dispatch_stopped(client: &mut impl GenericClient, order_id: Uuid, attention: &str, message: &str) -> Result<bool> {
    Ok(client.execute(
        "UPDATE orders SET attention = $2, last_message = $3, next_check_at = NULL, lease = lease + 1
          WHERE id = $1 AND status = 'pending' AND external_status IN ('not_sent', 'failed')",
        &[&order_id, &attention, &message],
    )? == 1)
}

/// Manual routing: nothing to send; the order waits for an operator.
pub fn record_waiting_for_operator(client: &mut impl GenericClient, order_id: Uuid, message: &str) -> Result<bool> {
    Ok(client.execute(
        "UPDATE orders SET next_check_at = NULL, last_message = $2, lease = lease + 1
          WHERE id = $1 AND status = 'pending' AND external_status = 'not_sent'",
        &[&order_id, &message],
    )? == 1)
}

/// Hand out `quantity` codes from a group and approve the order, atomically. Two concurrent
/// orders never get the same code (row locks with SKIP LOCKED); an empty group hands out
/// nothing. Returns the codes, or None when there were not enough.
pub fn take_codes(
    client: &mut postgres::Client,
    order_id: Uuid,
    code_group_id: i64,
    quantity: i32,
) -> Result<Option<Vec<String>>> {
    let mut tx = client.transaction()?;
    // Claim the order first (its row lock is held to the end of the transaction): only one
    // dispatcher gets to hand out its codes.
    let claimed = tx.execute(
        "UPDATE orders SET dispatched_at = now(), lease = lease + 1
          WHERE id = $1 AND status = 'pending' AND external_status = 'not_sent'",
        &[&order_id],
    )?;
    if claimed == 0 {
        return Ok(Some(vec![]));
    }
    let codes: Vec<String> = tx
        .query(
            "UPDATE code_items SET state = 'used', order_id = $1, used_at = now()
              WHERE id IN (SELECT id FROM code_items WHERE code_group_id = $2 AND state = 'available'
                            ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
              RETURNING code",
            &[&order_id, &code_group_id, &(quantity as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if codes.len() < quantity as usize {
        tx.rollback()?;
        return Ok(None);
    }
    let pin = crate::provider::codes::CodeHandout::pin(&codes);
    tx.execute(
        "UPDATE orders SET status = 'approved', external_status = 'done', pin_code = $2, completed_at = now(),
                sent_at = now(), last_sync_at = now(),
                duration_ms = (extract(epoch FROM now() - created_at) * 1000)::bigint,
                next_check_at = NULL, attention = NULL, last_message = 'delivered from code stock', lease = lease + 1
          WHERE id = $1",
        &[&order_id, &pin],
    )?;
    record_events(
        &mut tx,
        &[NewEvent::new(order_id, "dispatch.codes", format!("{} code(s) handed out from stock; order approved", codes.len()))],
    )?;
    tx.commit()?;
    Ok(Some(codes))
}

// ---------------------------------------------------------------------------------------------
// Finishing an order

/// Approve an open order with a PIN. `lease`: only if the order still has this lease (a
/// monitor's write-back); None: an operator's decision, whatever the lease.
pub fn finish_approved(
    client: &mut impl GenericClient,
    order_id: Uuid,
    lease: Option<i64>,
    pin: Option<&str>,
    message: &str,
) -> Result<bool> {
    Ok(client.execute(
        "UPDATE orders SET status = 'approved', external_status = 'done', pin_code = coalesce($3, pin_code),
                last_message = $4, completed_at = now(), last_sync_at = now(),
                duration_ms = (extract(epoch FROM now() - coalesce(sent_at, created_at)) * 1000)::bigint,
                next_check_at = NULL, attention = NULL, awaiting_reconciliation = false, lease = lease + 1
          WHERE id = $1 AND status = 'pending' AND ($2::bigint IS NULL OR lease = $2)",
        &[&order_id, &lease, &pin, &message],
    )? == 1)
}

/// Reject an open order and refund what was charged, exactly once: the refund is a ledger row
/// with a unique (order, 'refund') key, and the balance moves only when that row is new.
/// Returns the amount refunded (None when the order was not open or the lease moved on).
pub fn finish_rejected(
    client: &mut impl GenericClient,
    order_id: Uuid,
    lease: Option<i64>,
    message: &str,
) -> Result<Option<Decimal>> {
    let changed = client.execute(
        "UPDATE orders SET status = 'rejected', external_status = 'failed', last_message = $3,
                completed_at = now(), last_sync_at = now(),
                duration_ms = (extract(epoch FROM now() - coalesce(sent_at, created_at)) * 1000)::bigint,
                next_check_at = NULL, attention = NULL, awaiting_reconciliation = false, lease = lease + 1
          WHERE id = $1 AND status = 'pending' AND ($2::bigint IS NULL OR lease = $2)",
        &[&order_id, &lease, &message],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    let refunded = client.query_opt(
        "WITH charge AS (
             SELECT tenant_id, user_id, -amount AS amount FROM ledger WHERE order_id = $1 AND kind = 'charge'
         ), refund AS (
             INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note)
             SELECT tenant_id, user_id, $1, 'refund', amount, 'order rejected' FROM charge
             ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING
             RETURNING user_id, amount
         )
         UPDATE users u SET balance = u.balance + r.amount FROM refund r WHERE u.id = r.user_id
         RETURNING r.amount",
        &[&order_id],
    )?;
    Ok(Some(refunded.map(|r| r.get(0)).unwrap_or(Decimal::ZERO)))
}

// ---------------------------------------------------------------------------------------------
// The monitor's queue

/// A claimed order with what the monitor needs to act on it.
#[derive(Debug, Clone)]
pub struct DueOrder {
    pub id: Uuid,
    pub number: i64,
    pub lease: i64,
    pub external_status: String,
    pub provider_id: Option<i64>,
    pub provider_referans: Option<String>,
    /// The provider's own id for the order (x-stor `order_id`), when its placement reply gave one.
    pub external_order_id: Option<String>,
    pub awaiting_reconciliation: bool,
    pub checks: i32,
    pub sent_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    /// Checks that brought no news; they stretch the backoff but do not use up `--max-checks`.
    pub no_news: i32,
}

/// Claim up to `limit` due orders: one statement, committed before any provider call. Their
/// next check moves forward by `lease` and their lease token is bumped, so a crashed worker's
/// orders simply come due again; no rescuer, no heartbeat. `SKIP LOCKED` lets any number of
/// workers claim at once without waiting on each other.
pub fn claim_due(client: &mut impl GenericClient, limit: i64, lease: Duration, tenant: Option<i64>) -> Result<Vec<DueOrder>> {
    claim_due_by(client, limit, lease, tenant, None)
}

/// The same, for work that was due by `due_by` (a sweep's start): anything this pass handled is
/// rescheduled after it, so one pass never loops over its own work.
pub fn claim_due_by(
    client: &mut impl GenericClient,
    limit: i64,
    lease: Duration,
    tenant: Option<i64>,
    due_by: Option<DateTime<Utc>>,
) -> Result<Vec<DueOrder>> {
    claim(
        client,
        "SELECT id FROM orders
          WHERE next_check_at <= coalesce($4::timestamptz, now()) AND ($3::bigint IS NULL OR tenant_id = $3)
          ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        lease,
        &[&limit, &tenant, &due_by],
    )
}

/// The one claim statement: the selected rows (locked by the selection, `SKIP LOCKED`) get
/// their next check pushed forward by the lease and their lease token bumped. `$2` is the
/// lease in milliseconds; the selection's own parameters are `$1` and `$3`.
fn claim(
    client: &mut impl GenericClient,
    selection: &str,
    lease: Duration,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<DueOrder>> {
    let ms = lease.as_millis() as i64;
    let sql = format!(
        "UPDATE orders o SET next_check_at = now() + make_interval(secs => $2::bigint / 1000.0), lease = o.lease + 1
           FROM ({selection}) c
          WHERE o.id = c.id
          RETURNING o.id, o.number, o.lease, o.external_status, o.provider_id, o.provider_referans,
                    o.awaiting_reconciliation, o.checks, o.sent_at, o.dispatched_at, o.no_news, o.external_order_id"
    );
    let mut all: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![params[0], &ms];
    all.extend_from_slice(&params[1..]);
    Ok(client.query(&sql, &all)?.iter().map(due_from_row).collect())
}

fn due_from_row(r: &postgres::Row) -> DueOrder {
    DueOrder {
        id: r.get(0),
        number: r.get(1),
        lease: r.get(2),
        external_status: r.get(3),
        provider_id: r.get(4),
        provider_referans: r.get(5),
        awaiting_reconciliation: r.get(6),
        checks: r.get(7),
        sent_at: r.get(8),
        dispatched_at: r.get(9),
        no_news: r.get(10),
        external_order_id: r.get(11),
    }
}

/// Claim specific orders (for `poll` and the batch safety sweep), whatever their schedule,
/// as long as they are open with a provider. Same lease rules as `claim_due`.
pub fn claim_orders(client: &mut impl GenericClient, ids: &[Uuid], lease: Duration) -> Result<Vec<DueOrder>> {
    claim(
        client,
        "SELECT id FROM orders WHERE id = ANY($1) AND status = 'pending'
            AND external_status IN ('dispatching', 'sent', 'processing')
          FOR UPDATE SKIP LOCKED",
        lease,
        &[&ids],
    )
}

/// The batch safety sweep's selection: the oldest open orders sent between `max_age` and
/// `min_age` ago, checked even if their own schedule was lost.
pub fn safety_sweep_candidates(
    client: &mut impl GenericClient,
    limit: i64,
    min_age: Duration,
    max_age: Duration,
    tenant: Option<i64>,
) -> Result<Vec<Uuid>> {
    Ok(client
        .query(
            "SELECT id FROM orders
              WHERE status = 'pending' AND external_status IN ('sent', 'processing')
                AND sent_at BETWEEN now() - make_interval(secs => $2::bigint / 1000.0)
                                AND now() - make_interval(secs => $3::bigint / 1000.0)
                AND ($4::bigint IS NULL OR tenant_id = $4)
              ORDER BY sent_at LIMIT $1",
            &[&limit, &(max_age.as_millis() as i64), &(min_age.as_millis() as i64), &tenant],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// A check result to write back for an order that stays open.
#[derive(Debug, Clone)]
pub struct Reschedule {
    pub order_id: Uuid,
    pub lease: i64,
    /// New external status ('processing' once the provider confirmed it works on it).
    pub external_status: String,
    pub next_check_at: Option<DateTime<Utc>>,
    pub message: String,
    /// The answer was no news (counted separately; never a verdict).
    pub no_news: bool,
    /// Counts as one of the order's checks.
    pub counted: bool,
}

/// Write back results of orders that stay open, in one statement, guarded by lease.
/// Returns the ids actually updated (the others were taken over and their results dropped).
pub fn reschedule_many(client: &mut impl GenericClient, items: &[Reschedule]) -> Result<Vec<Uuid>> {
    if items.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.order_id).collect();
    let leases: Vec<i64> = items.iter().map(|i| i.lease).collect();
    let statuses: Vec<&str> = items.iter().map(|i| i.external_status.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.next_check_at).collect();
    let messages: Vec<&str> = items.iter().map(|i| i.message.as_str()).collect();
    let no_news: Vec<bool> = items.iter().map(|i| i.no_news).collect();
    let counted: Vec<bool> = items.iter().map(|i| i.counted).collect();
    let rows = client.query(
        "UPDATE orders o
            SET external_status = u.external_status, next_check_at = u.next_check_at, last_message = u.message,
                checks = o.checks + u.counted::int, no_news = o.no_news + u.no_news::int,
                last_sync_at = now(), lease = o.lease + 1,
                awaiting_reconciliation = o.awaiting_reconciliation AND u.external_status = 'dispatching',
                sent_at = CASE WHEN u.external_status IN ('sent', 'processing') THEN coalesce(o.sent_at, o.dispatched_at, now()) ELSE o.sent_at END
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::bool[], $7::bool[])
                AS u(id, lease, external_status, next_check_at, message, no_news, counted)
          WHERE o.id = u.id AND o.lease = u.lease AND o.status = 'pending'
          RETURNING o.id",
        &[&ids, &leases, &statuses, &next, &messages, &no_news, &counted],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Approve many orders at once (the common, hot outcome), guarded by lease.
pub fn approve_many(client: &mut impl GenericClient, items: &[(Uuid, i64, Option<String>, String)]) -> Result<Vec<Uuid>> {
    if items.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
    let leases: Vec<i64> = items.iter().map(|i| i.1).collect();
    let pins: Vec<Option<&str>> = items.iter().map(|i| i.2.as_deref()).collect();
    let messages: Vec<&str> = items.iter().map(|i| i.3.as_str()).collect();
    let rows = client.query(
        "UPDATE orders o
            SET status = 'approved', external_status = 'done', pin_code = coalesce(u.pin, o.pin_code),
                last_message = u.message, completed_at = now(), last_sync_at = now(),
                sent_at = coalesce(o.sent_at, o.dispatched_at),
                duration_ms = (extract(epoch FROM now() - coalesce(o.sent_at, o.dispatched_at, o.created_at)) * 1000)::bigint,
                checks = o.checks + 1, next_check_at = NULL, attention = NULL,
                awaiting_reconciliation = false, lease = o.lease + 1
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS u(id, lease, pin, message)
          WHERE o.id = u.id AND o.lease = u.lease AND o.status = 'pending'
          RETURNING o.id",
        &[&ids, &leases, &pins, &messages],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Give up on an order: no final answer within the limit. It stays pending (the provider may
/// still deliver), money untouched, flagged for an operator.
pub fn give_up(client: &mut impl GenericClient, order_id: Uuid, lease: i64, message: &str) -> Result<bool> {
    Ok(client.execute(
        "UPDATE orders SET external_status = 'failed', attention = 'given_up', last_message = $3,
                next_check_at = NULL, lease = lease + 1, last_sync_at = now()
          WHERE id = $1 AND lease = $2 AND status = 'pending'",
        &[&order_id, &lease, &message],
    )? == 1)
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

pub fn list_orders(client: &mut impl GenericClient, f: &OrderFilter) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "{ORDER_SELECT}
          WHERE ($1::text IS NULL OR t.name = $1) AND ($2::text IS NULL OR o.status = $2)
            AND ($3::text IS NULL OR o.external_status = $3) AND ($4::text IS NULL OR pr.name = $4)
            AND ($5::text IS NULL OR pk.name = $5) AND ($6::text IS NULL OR u.name = $6)
            AND ($7::timestamptz IS NULL OR o.created_at >= $7) AND ($8::timestamptz IS NULL OR o.created_at < $8)
          ORDER BY o.created_at DESC, o.number DESC LIMIT $9"
    );
    Ok(client
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
        .collect())
}

/// Orders that may not be moving: candidates for a stuck diagnosis (the diagnosis decides).
pub fn stuck_candidates(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    undispatched_after: Duration,
    overdue_after: Duration,
    limit: i64,
) -> Result<Vec<OrderRow>> {
    let sql = format!(
        "{ORDER_SELECT}
          WHERE o.status = 'pending' AND ($1::text IS NULL OR t.name = $1)
            AND (o.attention IS NOT NULL
                 OR o.awaiting_reconciliation
                 OR (o.external_status = 'not_sent' AND o.created_at < now() - make_interval(secs => $2::bigint / 1000.0))
                 OR o.next_check_at < now() - make_interval(secs => $3::bigint / 1000.0)
                 OR (o.next_check_at IS NULL AND o.external_status IN ('dispatching', 'sent', 'processing')))
          ORDER BY o.created_at LIMIT $4"
    );
    Ok(client
        .query(&sql, &[&tenant, &(undispatched_after.as_millis() as i64), &(overdue_after.as_millis() as i64), &limit])?
        .iter()
        .map(order_from_row)
        .collect())
}

/// Put a not-yet-claimed order back in the queue a little later (its provider was busy).
pub fn defer(client: &mut impl GenericClient, order_id: Uuid, after: Duration) -> Result<()> {
    client.execute(
        "UPDATE orders SET next_check_at = now() + make_interval(secs => $2::bigint / 1000.0)
          WHERE id = $1 AND status = 'pending' AND external_status = 'not_sent'",
        &[&order_id, &(after.as_millis() as i64)],
    )?;
    Ok(())
}
