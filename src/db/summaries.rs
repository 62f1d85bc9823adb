//! The order as JSON, with stable field names and its diagnosis: what `inspect`, `list` (and
//! `list --stuck`), `stats` and every command's brief print, and the `order` of every webhook
//! event (rendered inside the transition's transaction, so it is here and not in `commands`).

use crate::db::orders::{self, OrderRow};
use crate::db::routing::routing_views_of;
use crate::db::GenericClient;
use crate::domain::diagnosis::{diagnose, Diagnosis, OrderFacts, StuckThresholds, UpstreamView};
use crate::domain::routing::RoutingView;
use crate::domain::status::OrderStatus;
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::HashMap;

fn rfc(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).unwrap_or(Value::Null)
}

/// The orders as JSON with stable field names, each with its diagnosis: what `inspect`, `list`
/// (and `list --stuck`), `stats` and every command's brief print. A constant number of queries
/// whatever the number of orders: routing and refunds are loaded for all of them at once.
pub fn order_summaries(client: &mut impl GenericClient, rows: &[OrderRow], limits: StuckThresholds) -> Result<Vec<Value>> {
    let mut packages: Vec<i64> = rows.iter().map(|o| o.package_id).collect();
    packages.sort_unstable();
    packages.dedup();
    let routing: HashMap<i64, RoutingView> = routing_views_of(client, &packages)?.into_iter().collect();
    let rejected: Vec<uuid::Uuid> = rows.iter().filter(|o| o.status == OrderStatus::Rejected).map(|o| o.id).collect();
    let refunds = orders::refunds(client, &rejected)?;
    let upstream = upstream_views(client, rows, limits)?;
    let origins = orders::forwarded_from(client, &rows.iter().filter_map(|o| o.forwarded_from).collect::<Vec<_>>())?;
    rows.iter()
        .map(|o| {
            let refunded = refunds.get(&o.id).map(|d| d.to_string());
            let up = o.forwarded_to.and_then(|id| upstream.get(&id));
            let diagnosis = diagnosis_of(o, routing.get(&o.package_id), refunded.clone(), up, limits)?;
            let mut v = summary(o, refunded, diagnosis);
            // The link, and the other order's state: nothing else of the other tenant.
            v["forwarded_to"] = up
                .map(
                    |u| json!({"tenant": u.tenant, "number": u.number, "status": u.status, "external_status": u.external_status}),
                )
                .unwrap_or(Value::Null);
            v["forwarded_from"] = o
                .forwarded_from
                .and_then(|id| origins.get(&id))
                .map(|(tenant, number)| json!({"tenant": tenant, "number": number}))
                .unwrap_or(Value::Null);
            Ok(v)
        })
        .collect()
}

/// The orders these were forwarded to, and theirs up each chain, each as an [`UpstreamView`]
/// (keyed by its id), diagnosed from the far end of its chain back, so an order's view knows
/// whether the order it was forwarded to is moving.
fn upstream_views(
    client: &mut impl GenericClient,
    rows: &[OrderRow],
    limits: StuckThresholds,
) -> Result<HashMap<uuid::Uuid, UpstreamView>> {
    let mut chain: HashMap<uuid::Uuid, OrderRow> = HashMap::new();
    let mut next: Vec<uuid::Uuid> = rows.iter().filter_map(|o| o.forwarded_to).collect();
    // Bounded like the one writer bounds a chain; the database keeps chains acyclic.
    for _ in 0..64 {
        next.retain(|id| !chain.contains_key(id));
        next.sort_unstable();
        next.dedup();
        if next.is_empty() {
            break;
        }
        let loaded = orders::load_orders(client, &next)?;
        next = loaded.iter().filter_map(|o| o.forwarded_to).collect();
        chain.extend(loaded.into_iter().map(|o| (o.id, o)));
    }
    let mut packages: Vec<i64> = chain.values().map(|o| o.package_id).collect();
    packages.sort_unstable();
    packages.dedup();
    let routing: HashMap<i64, RoutingView> = routing_views_of(client, &packages)?.into_iter().collect();
    let mut views: HashMap<uuid::Uuid, UpstreamView> = HashMap::new();
    while views.len() < chain.len() {
        let before = views.len();
        for o in chain.values() {
            let ready = o.forwarded_to.is_none_or(|up| views.contains_key(&up) || !chain.contains_key(&up));
            if views.contains_key(&o.id) || !ready {
                continue;
            }
            let up = o.forwarded_to.and_then(|id| views.get(&id));
            let d = diagnosis_of(o, routing.get(&o.package_id), None, up, limits)?;
            let view = UpstreamView {
                tenant: o.tenant.clone(),
                number: o.number,
                status: o.status,
                external_status: o.external_status,
                code: d.code,
                stuck: d.stuck,
            };
            views.insert(o.id, view);
        }
        if views.len() == before {
            break;
        }
    }
    Ok(views)
}

/// One order's summary (see `order_summaries`).
pub fn order_summary(client: &mut impl GenericClient, o: &OrderRow, limits: StuckThresholds) -> Result<Value> {
    Ok(order_summaries(client, std::slice::from_ref(o), limits)?.pop().unwrap_or(Value::Null))
}

fn diagnosis_of(
    o: &OrderRow,
    routing: Option<&RoutingView>,
    refunded: Option<String>,
    upstream: Option<&UpstreamView>,
    limits: StuckThresholds,
) -> Result<Diagnosis> {
    let facts = o.facts()?;
    let of = OrderFacts {
        facts: &facts,
        package: &o.package,
        provider: o.provider.as_deref(),
        last_message: o.last_message.as_deref(),
        created_at: o.created_at,
        dispatched_at: o.dispatched_at,
        completed_at: o.completed_at,
        next_check_at: o.next_check_at,
        routing,
        pin_delivered: o.pin_code.is_some(),
        refunded,
        upstream,
    };
    // The database's clock when the row was read: the same clock the stuck query uses.
    Ok(diagnose(&of, o.read_at, limits))
}

fn summary(o: &OrderRow, refunded: Option<String>, diagnosis: Diagnosis) -> Value {
    json!({
        "id": o.id,
        "number": o.number,
        "tenant": o.tenant,
        "user": o.user,
        "package": o.package,
        "quantity": o.quantity,
        "user_identifier": o.user_identifier,
        "extra_field": o.extra_field,
        "price": o.price.to_string(),
        "status": o.status,
        "external_status": o.external_status,
        "provider": o.provider,
        "provider_referans": o.provider_referans,
        "external_order_id": o.external_order_id,
        "pin_code": o.pin_code,
        "last_message": o.last_message,
        "attention": o.attention,
        "awaiting_reconciliation": o.awaiting_reconciliation,
        "checks": o.checks,
        "no_news": o.no_news,
        "next_check_at": rfc(o.next_check_at),
        "created_at": rfc(Some(o.created_at)),
        "dispatched_at": rfc(o.dispatched_at),
        "sent_at": rfc(o.sent_at),
        "last_sync_at": rfc(o.last_sync_at),
        "completed_at": rfc(o.completed_at),
        "duration_ms": o.duration_ms,
        "duration": o.duration_ms.map(|ms| humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()),
        "refunded": refunded,
        "placement_attempts": o.placement_attempts,
        "operator_forced": o.operator_forced,
        "late_pin": o.late_pin,
        "request_id": o.request_id,
        "final": o.status.is_final(),
        "diagnosis": diagnosis,
    })
}

/// The orders' summaries with their placements: `inspect --output json` without the events
/// and the provider's check schedule (settings, not the order's state),
/// and the `order` of a webhook event. A constant number of queries, like `order_summaries`.
pub fn order_documents(client: &mut impl GenericClient, rows: &[OrderRow], limits: StuckThresholds) -> Result<Vec<Value>> {
    let mut placements = orders::placements_of(client, rows)?;
    let mut docs = order_summaries(client, rows, limits)?;
    for (doc, o) in docs.iter_mut().zip(rows) {
        doc["placements"] = serde_json::to_value(placements.remove(&o.id).unwrap_or_default()).unwrap_or_default();
    }
    Ok(docs)
}

/// One order's document (see `order_documents`).
pub fn order_document(client: &mut impl GenericClient, o: &OrderRow, limits: StuckThresholds) -> Result<Value> {
    Ok(order_documents(client, std::slice::from_ref(o), limits)?.pop().unwrap_or(Value::Null))
}
