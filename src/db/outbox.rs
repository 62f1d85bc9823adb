//! The webhook outbox: a notice for the shop is written in the same transaction as the
//! transition that causes it, so no transition is committed without its notice and no notice
//! exists without its transition. Delivery is `lane::webhooks`' business.
//!
//! The body is rendered here, at enqueue time, after the transition's UPDATE in the same
//! transaction: the event describes the order exactly as that transition left it (a later
//! transition, or a retry a day later, never changes what an event says), and the bytes that
//! are signed and sent are stored once, so every retry sends the same bytes.

use crate::db::orders::OrderRow;
use crate::db::transitions::Reached;
use crate::db::GenericClient;
use crate::domain::status::OrderStatus;
use crate::domain::webhook::EventType;
use crate::error::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// Enqueue the notices of written transitions for the webhooks their tenants declared: one row
/// per (notice, enabled webhook of the order's tenant that takes its event type). An order
/// appears at most once in `done` (one statement carries an order once). Each notice gets the
/// order's next sequence number: its transition holds the order's row lock, so two
/// transactions never number one order's events at once.
pub(crate) fn enqueue(tx: &mut impl GenericClient, done: &[Reached]) -> Result<()> {
    let notices: Vec<(Uuid, EventType, i64)> = done
        .iter()
        .filter_map(|r| r.write.transition.notice.map(|n| (r.write.order_id, EventType::of(n), r.tenant_id)))
        .collect();
    if notices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = notices.iter().map(|n| n.0).collect();
    let types: Vec<&str> = notices.iter().map(|n| n.1.as_str()).collect();
    let tenants: Vec<i64> = notices.iter().map(|n| n.2).collect();
    // Which notices any webhook takes, with the order's last sequence number: the common case
    // (no webhooks) costs this one query, over the tenants' webhooks only.
    let wanted: HashMap<Uuid, i32> = tx
        .query(
            "SELECT DISTINCT n.order_id,
                    (SELECT coalesce(max(d.sequence), 0) FROM webhook_deliveries d WHERE d.order_id = n.order_id)
               FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS n(order_id, event_type, tenant_id)
               JOIN webhooks w ON w.tenant_id = n.tenant_id AND w.enabled AND n.event_type = ANY(w.events)",
            &[&ids, &types, &tenants],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let wanted_ids: Vec<Uuid> = wanted.keys().copied().collect();
    // Each order's creation time, as its update returned it: the read of the orders is planned
    // over their months alone (a finished order's row has moved to its month, sql/0031).
    let months: Vec<DateTime<Utc>> =
        done.iter().filter(|r| wanted.contains_key(&r.write.order_id)).map(|r| r.created_at).collect();
    let rows = crate::db::orders::load_orders_of_months(tx, &wanted_ids, &months)?;
    let refunds = crate::db::orders::refunds(tx, &wanted_ids)?;
    let kinds: HashMap<Uuid, EventType> = notices.into_iter().map(|(id, kind, _)| (id, kind)).collect();
    let mut event_ids = Vec::new();
    let mut order_ids = Vec::new();
    let mut event_types = Vec::new();
    let mut bodies = Vec::new();
    let mut created = Vec::new();
    let mut sequences = Vec::new();
    let mut tenants = Vec::new();
    for o in &rows {
        let (Some(kind), Some(last)) = (kinds.get(&o.id), wanted.get(&o.id)) else { continue };
        let id = Uuid::new_v4();
        let sequence = last + 1;
        // The database's clock when the transition was written (the transaction's `now()`).
        let event = Event { id, kind: *kind, created_at: o.read_at, sequence };
        bodies.push(body(&event, shop_view(o, *kind, refunds.get(&o.id).copied())));
        event_ids.push(id);
        order_ids.push(o.id);
        event_types.push(kind.as_str());
        created.push(o.read_at);
        sequences.push(sequence);
        tenants.push(o.tenant_id);
    }
    tx.execute(
        "INSERT INTO webhook_deliveries (event_id, tenant_id, webhook_id, event_type, order_id, created_at, body, retry_from, sequence)
         SELECT e.event_id, e.tenant_id, w.id, e.event_type, e.order_id, e.created_at, e.body, e.created_at, e.sequence
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::bigint[])
                AS e(event_id, order_id, event_type, body, created_at, sequence, tenant_id)
           JOIN webhooks w ON w.tenant_id = e.tenant_id AND w.enabled AND e.event_type = ANY(w.events)",
        &[&event_ids, &order_ids, &event_types, &bodies, &created, &sequences, &tenants],
    )?;
    Ok(())
}

/// What the body says about its event.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub id: Uuid,
    pub kind: EventType,
    pub created_at: DateTime<Utc>,
    /// 1, 2, ... per order: the order its events happened in.
    pub sequence: i32,
}

/// The body of an event: `{"id", "type", "created_at", "sequence", "order"}`.
pub fn body(e: &Event, order: serde_json::Value) -> String {
    serde_json::json!({
        "id": e.id,
        "type": e.kind.as_str(),
        "created_at": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "sequence": e.sequence,
        "order": order,
    })
    .to_string()
}

/// The order as its shop sees it: what it ordered, what it charged, where the order stands. Of
/// the dealer nothing: no provider, cost, balance, provider reference or provider message (they
/// may quote the dealer's account); a reason is a neutral code and a sentence meant for the shop.
pub fn shop_view(o: &OrderRow, kind: EventType, refunded: Option<Decimal>) -> serde_json::Value {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let approved = o.status == OrderStatus::Approved;
    serde_json::json!({
        "id": o.id,
        "number": o.number,
        "package": o.package,
        "quantity": o.quantity,
        "player": o.user_identifier,
        "extra_field": o.extra_field,
        "price": o.price.to_string(),
        "status": o.status,
        "final": o.status.is_final(),
        "pin_code": if approved { o.pin_code.clone() } else { None },
        "refunded": refunded.map(|r| r.to_string()),
        "reason": crate::domain::webhook::Reason::of(kind).map(|r| serde_json::json!({"code": r.code, "text": r.text})),
        "created_at": time(Some(o.created_at)),
        "completed_at": time(o.completed_at),
    })
}
