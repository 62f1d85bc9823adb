//! `orderctl inspect ORDER`: every field of an order (never a secret), its placements, its full
//! event timeline, and above all a diagnosis: why it is where it is and what to do.

use crate::cli::InspectArgs;
use crate::db::GenericClient;
use crate::db::{
    self,
    orders::{self, OrderRef, OrderRow},
    summaries::{order_document, order_summary},
};
use crate::domain::backoff::{merge, SCHEDULE_MARKS};
use crate::domain::diagnosis::StuckThresholds;
use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use serde_json::Value;

pub fn run(s: &Settings, a: &InspectArgs) -> Result<()> {
    let order_ref = OrderRef::parse(&a.order)?;
    let global = a.policy.policy()?;
    let mut client = db::connect(&s.database_url)?;
    let order = orders::find_order(&mut client, &order_ref, s.tenant.as_deref())?;
    let mut summary = order_document(&mut client, &order, StuckThresholds::default())?;
    // The schedule its provider's orders are checked by (none for an order no provider holds).
    let schedule = match order.provider_id {
        Some(id) => Some(merge(&global, &db::providers::schedule_of(&mut client, id)?)),
        None => None,
    };
    summary["schedule"] = schedule.as_ref().map(|s| s.to_json()).unwrap_or(Value::Null);
    let events = orders::events(&mut client, order.id, order.created_at)?;
    if s.json() {
        // The order document (what webhooks send too) and its history.
        let mut v = summary;
        v["events"] = serde_json::to_value(&events).unwrap_or_default();
        output::print_json(&v);
        return Ok(());
    }
    let placements = orders::placements_of(&mut client, std::slice::from_ref(&order))?.remove(&order.id).unwrap_or_default();
    print_fields(&summary, schedule.as_ref());
    println!("diagnosis: {}", summary["diagnosis"]["sentence"].as_str().unwrap_or(""));
    print_placements(&placements);
    print_events(&events);
    Ok(())
}

/// The order's fields, one per row, with its check schedule and forwarding links.
fn print_fields(summary: &Value, schedule: Option<&crate::domain::backoff::ScheduleInForce>) {
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
        ("attention", "attention"),
        ("checks", "checks"),
        ("no-news answers", "no_news"),
        ("placements here", "placement_attempts"),
        ("next check", "next_check_at"),
        ("created", "created_at"),
        ("dispatched", "dispatched_at"),
        ("sent", "sent_at"),
        ("last sync", "last_sync_at"),
        ("completed", "completed_at"),
        ("duration", "duration"),
        ("refunded", "refunded"),
        ("late PIN", "late_pin"),
        ("request id", "request_id"),
    ];
    let mut t = output::table(&["field", "value"]);
    for (label, key) in fields {
        t.add_row(vec![label.to_string(), plain(&summary[*key])]);
    }
    if let Some(schedule) = schedule {
        t.add_row(vec!["check schedule".to_string(), schedule.summary()]);
    }
    let to = &summary["forwarded_to"];
    if !to.is_null() {
        let state = format!("{} / {}", plain(&to["status"]), plain(&to["external_status"]));
        t.add_row(vec!["forwarded to".to_string(), format!("{} order {} ({state})", plain(&to["tenant"]), to["number"])]);
    }
    let from = &summary["forwarded_from"];
    if !from.is_null() {
        t.add_row(vec!["forwarded from".to_string(), format!("{} order {}", plain(&from["tenant"]), from["number"])]);
    }
    println!("{t}");
    if schedule.is_some() {
        println!("{SCHEDULE_MARKS}");
    }
}

/// Every placement of the order with its outcome (none printed when it has none).
fn print_placements(placements: &[orders::Placement]) {
    if placements.is_empty() {
        return;
    }
    let mut t = output::table(&["placed at", "provider", "reference", "attempt", "outcome", "message"]);
    for p in placements {
        t.add_row(vec![
            p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            p.provider.clone(),
            p.referans.clone(),
            p.attempt.to_string(),
            match &p.reconciled {
                Some(r) => format!("{} (reconciled: {r})", p.outcome),
                None => p.outcome.to_string(),
            },
            p.message.clone().unwrap_or_default(),
        ]);
    }
    println!("\nplacements:\n{t}");
}

/// The order's history, each dispatch's steps indented under the entry that carries them.
fn print_events(events: &[orders::OrderEvent]) {
    let mut t = output::table(&["at", "event", "status", "message"]);
    for e in events {
        t.add_row(vec![
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            e.kind.clone(),
            format!("{} / {}", e.status.as_deref().unwrap_or("-"), e.external_status.as_deref().unwrap_or("-")),
            e.message.clone(),
        ]);
        // A dispatch's steps, one row each under the entry that carries them.
        for step in &e.steps {
            t.add_row(vec![
                format!("  {}", step.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                format!("  {}", step.step),
                String::new(),
                step.message.clone(),
            ]);
        }
    }
    println!("\nevents:\n{t}");
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A short view of one order after a command changed it (create, dispatch, approve, reject,
/// settle, poll); `note` (JSON) says what the command did.
pub fn print_order_brief(s: &Settings, client: &mut impl GenericClient, o: &OrderRow, note: Option<Value>) -> Result<()> {
    let mut summary = order_summary(client, o, StuckThresholds::default())?;
    if let Some(n) = note {
        summary["dispatch"] = n;
    }
    if s.json() {
        output::print_json(&summary);
        return Ok(());
    }
    let mut t = output::table(&["order", "id", "status", "external status", "provider", "PIN"]);
    t.add_row(vec![
        comfy_table::Cell::new(o.number),
        comfy_table::Cell::new(o.id),
        output::status_cell(o.status.as_str()),
        output::status_cell(o.external_status.as_str()),
        comfy_table::Cell::new(o.provider.as_deref().unwrap_or("-")),
        comfy_table::Cell::new(o.pin_code.as_deref().unwrap_or("-")),
    ]);
    println!("{t}");
    println!("{}", summary["diagnosis"]["sentence"].as_str().unwrap_or(""));
    Ok(())
}
