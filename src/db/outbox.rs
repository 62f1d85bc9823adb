//! The webhook outbox: a notice for the shop is written in the same transaction as the
//! transition that causes it, so no transition is committed without its notice and no notice
//! exists without its transition. Delivery is `lane::webhooks`' business.
//!
//! The body is rendered here, at enqueue time, after the transition's UPDATE in the same
//! transaction: the event describes the order exactly as that transition left it (a later
//! transition, or a retry a day later, never changes what an event says), and the bytes that
//! are signed and sent are stored once, so every retry sends the same bytes.

use crate::db::summaries::order_documents;
use crate::db::transitions::Write;
use crate::domain::diagnosis::StuckThresholds;
use crate::domain::webhook::EventType;
use crate::error::Result;
use chrono::{DateTime, Utc};
use crate::db::GenericClient;
use std::collections::HashMap;
use uuid::Uuid;

/// Enqueue the notices of written transitions for the webhooks their tenants declared: one row
/// per (notice, enabled webhook of the order's tenant that takes its event type). An order
/// appears at most once in `done` (one statement carries an order once).
pub fn enqueue(tx: &mut impl GenericClient, done: &[&Write]) -> Result<()> {
    let notices: Vec<(Uuid, EventType)> =
        done.iter().filter_map(|w| w.transition.notice.map(|n| (w.order_id, EventType::of(n)))).collect();
    if notices.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = notices.iter().map(|(id, _)| *id).collect();
    let types: Vec<&str> = notices.iter().map(|(_, t)| t.as_str()).collect();
    // Which notices any webhook takes: the common case (no webhooks) costs this one query.
    let wanted: Vec<Uuid> = tx
        .query(
            "SELECT DISTINCT n.order_id
               FROM unnest($1::uuid[], $2::text[]) AS n(order_id, event_type)
               JOIN orders o ON o.id = n.order_id AND o.id = ANY($1)
               JOIN webhooks w ON w.tenant_id = o.tenant_id AND w.enabled AND n.event_type = ANY(w.events)",
            &[&ids, &types],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let rows = crate::db::orders::load_orders(tx, &wanted)?;
    let documents = order_documents(tx, &rows, StuckThresholds::default())?;
    let kinds: HashMap<Uuid, EventType> = notices.into_iter().collect();
    let mut event_ids = Vec::new();
    let mut order_ids = Vec::new();
    let mut event_types = Vec::new();
    let mut bodies = Vec::new();
    let mut created = Vec::new();
    for (o, document) in rows.iter().zip(documents) {
        let Some(kind) = kinds.get(&o.id) else { continue };
        let id = Uuid::new_v4();
        // The database's clock when the transition was written (the transaction's `now()`).
        bodies.push(body(id, *kind, o.read_at, document));
        event_ids.push(id);
        order_ids.push(o.id);
        event_types.push(kind.as_str());
        created.push(o.read_at);
    }
    tx.execute(
        "INSERT INTO webhook_deliveries (event_id, tenant_id, webhook_id, event_type, order_id, created_at, body, retry_from)
         SELECT e.event_id, o.tenant_id, w.id, e.event_type, e.order_id, e.created_at, e.body, e.created_at
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
                AS e(event_id, order_id, event_type, body, created_at)
           JOIN orders o ON o.id = e.order_id AND o.id = ANY($2)
           JOIN webhooks w ON w.tenant_id = o.tenant_id AND w.enabled AND e.event_type = ANY(w.events)",
        &[&event_ids, &order_ids, &event_types, &bodies, &created],
    )?;
    Ok(())
}

/// The body of an event: `{"id", "type", "created_at", "order"}`.
pub fn body(id: Uuid, kind: EventType, created_at: DateTime<Utc>, order: serde_json::Value) -> String {
    serde_json::json!({
        "id": id,
        "type": kind.as_str(),
        "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "order": order,
    })
    .to_string()
}
