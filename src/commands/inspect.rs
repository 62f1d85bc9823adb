//! `orderctl inspect ORDER`: every field of an order (never a secret), its placements, its full
//! event timeline, and above all a diagnosis: why it is where it is and what to do.

use crate::cli::InspectArgs;
use crate::db::{
    self,
    orders::{self, OrderRef, OrderRow},
};
use crate::dispatch::DispatchResult;
use crate::domain::diagnosis::{diagnose, Diagnosis, OrderFacts, StuckThresholds};
use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::{json, Value};

pub fn run(s: &Settings, a: &InspectArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let summary = order_summary(&mut client, &order, Utc::now(), StuckThresholds::default())?;
    let events = orders::events(&mut client, order.id)?;
    let placements = orders::placements(&mut client, order.id)?;
    if s.json() {
        let mut v = summary;
        v["placements"] = serde_json::to_value(&placements).unwrap_or_default();
        v["events"] = serde_json::to_value(&events).unwrap_or_default();
        output::print_json(&v);
        return Ok(());
    }
    let fields: &[(&str, &str)] = &[
        ("order", "number"),
        ("id", "id"),
        ("tenant", "tenant"),
        ("user", "user"),
        ("package", "package"),
        ("quantity", "quantity"),
        ("player", "user_identifier"),
        ("extra", "extra_field"),
        ("price", "price"),
        ("status", "status"),
        ("external status", "external_status"),
        ("provider", "provider"),
        ("reference", "provider_referans"),
        ("external order id", "external_order_id"),
        ("PIN", "pin_code"),
        ("last message", "last_message"),
        ("checks", "checks"),
        ("no-news answers", "no_news"),
        ("next check", "next_check_at"),
        ("created", "created_at"),
        ("dispatched", "dispatched_at"),
        ("sent", "sent_at"),
        ("last sync", "last_sync_at"),
        ("completed", "completed_at"),
        ("duration", "duration"),
        ("refunded", "refunded"),
    ];
    let mut t = output::table(&["field", "value"]);
    for (label, key) in fields {
        t.add_row(vec![label.to_string(), plain(&summary[*key])]);
    }
    println!("{t}");
    println!("diagnosis: {}", summary["diagnosis"]["sentence"].as_str().unwrap_or(""));
    if !placements.is_empty() {
        let mut t = output::table(&["placed at", "provider", "reference", "outcome", "message"]);
        for p in &placements {
            t.add_row(vec![
                p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                p.provider.clone(),
                p.referans.clone(),
                p.outcome.clone(),
                p.message.clone().unwrap_or_default(),
            ]);
        }
        println!("\nplacements:\n{t}");
    }
    let mut t = output::table(&["at", "event", "status", "message"]);
    for e in &events {
        t.add_row(vec![
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.kind.clone(),
            format!("{} / {}", e.status.as_deref().unwrap_or("-"), e.external_status.as_deref().unwrap_or("-")),
            e.message.clone(),
        ]);
    }
    println!("\nevents:\n{t}");
    Ok(())
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rfc(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).unwrap_or(Value::Null)
}

/// The diagnosis of an order, loading its routing.
pub fn diagnosis_of(
    client: &mut impl GenericClient,
    o: &OrderRow,
    now: DateTime<Utc>,
    limits: StuckThresholds,
) -> Result<Diagnosis> {
    let routing = db::routing::routing_views(client, Some(&o.tenant), Some(o.package_id))?;
    let refunded = if o.status == "rejected" { orders::refunded(client, o.id)?.map(|d| d.to_string()) } else { None };
    let facts = OrderFacts {
        number: o.number,
        package: &o.package,
        status: &o.status,
        external_status: &o.external_status,
        attention: o.attention.as_deref(),
        awaiting_reconciliation: o.awaiting_reconciliation,
        provider: o.provider.as_deref(),
        reference: o.provider_referans.as_deref(),
        last_message: o.last_message.as_deref(),
        checks: o.checks,
        created_at: o.created_at,
        dispatched_at: o.dispatched_at,
        completed_at: o.completed_at,
        next_check_at: o.next_check_at,
        routing: routing.first().map(|(_, v)| v),
        pin_delivered: o.pin_code.is_some(),
        refunded,
    };
    Ok(diagnose(&facts, now, limits))
}

/// The order as JSON with stable field names: what `inspect --output json` and `list
/// --output json` print (inspect adds placements and events).
pub fn order_summary(
    client: &mut impl GenericClient,
    o: &OrderRow,
    now: DateTime<Utc>,
    limits: StuckThresholds,
) -> Result<Value> {
    let diagnosis = diagnosis_of(client, o, now, limits)?;
    let refunded = if o.status == "rejected" { orders::refunded(client, o.id)? } else { None };
    Ok(json!({
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
        "refunded": refunded.map(|d| d.to_string()),
        "final": o.status != "pending",
        "diagnosis": diagnosis,
    }))
}

/// A short view of one order after a command changed it (create, dispatch, approve, reject, poll).
pub fn print_order_brief(
    s: &Settings,
    client: &mut impl GenericClient,
    o: &OrderRow,
    dispatch: Option<&DispatchResult>,
) -> Result<()> {
    let mut summary = order_summary(client, o, Utc::now(), StuckThresholds::default())?;
    if let Some(d) = dispatch {
        summary["dispatch"] = serde_json::to_value(d).unwrap_or_default();
    }
    if s.json() {
        output::print_json(&summary);
        return Ok(());
    }
    let mut t = output::table(&["order", "id", "status", "external status", "provider", "PIN"]);
    t.add_row(vec![
        comfy_table::Cell::new(o.number),
        comfy_table::Cell::new(o.id),
        output::status_cell(&o.status),
        output::status_cell(&o.external_status),
        comfy_table::Cell::new(o.provider.as_deref().unwrap_or("-")),
        comfy_table::Cell::new(o.pin_code.as_deref().unwrap_or("-")),
    ]);
    println!("{t}");
    println!("{}", summary["diagnosis"]["sentence"].as_str().unwrap_or(""));
    Ok(())
}
