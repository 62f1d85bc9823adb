//! Read-only listings: `tenant list`, `user list`, `provider list`, `package list`. Every one
//! has `--output json` (an array of objects with stable snake_case fields) and respects the
//! global `--tenant`; `user list` and `package list` need it.

use crate::cli::ProviderListArgs;
use crate::db::provider_health::HealthRow;
use crate::db::Client;
use crate::db::{self, listings, routing};
use crate::domain::backoff::{merge, ScheduleInForce, SCHEDULE_MARKS};
use crate::domain::lifecycle::states::BreakerState;
use crate::domain::routing::{check_routing, RoutingView};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

pub fn tenants(s: &Settings) -> Result<()> {
    let mut client = connect_scoped(s)?;
    let rows = listings::tenants(&mut client, s.tenant.as_deref())?;
    if s.json() {
        output::print_json(&rows);
        return Ok(());
    }
    let mut t = output::table(&["tenant", "users", "providers", "packages", "open orders"]);
    for r in &rows {
        t.add_row(vec![
            r.name.clone(),
            r.users.to_string(),
            r.providers.to_string(),
            r.packages.to_string(),
            r.open_orders.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub fn users(s: &Settings) -> Result<()> {
    let (mut client, _, tenant_id) = connect_to_tenant(s, "user list")?;
    let rows = listings::users(&mut client, tenant_id)?;
    if s.json() {
        output::print_json(&rows);
        return Ok(());
    }
    let mut t = output::table(&["user", "email", "balance", "overdraft", "available"]);
    for r in &rows {
        t.add_row(vec![r.name.clone(), r.email.clone(), money(r.balance), money(r.overdraft_limit), money(r.available)]);
    }
    println!("{t}");
    Ok(())
}

pub fn providers(s: &Settings, a: &ProviderListArgs) -> Result<()> {
    let global = a.policy.policy()?;
    let mut client = connect_scoped(s)?;
    let rows = listings::providers(&mut client, s.tenant.as_deref())?;
    let schedules: Vec<ScheduleInForce> = rows.iter().map(|r| merge(&global, &r.schedule)).collect();
    let health = crate::db::provider_health::list(&mut client, s.tenant.as_deref())?;
    if s.json() {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .zip(&schedules)
            .map(|(r, schedule)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["schedule"] = schedule.to_json();
                v["health"] = serde_json::to_value(health_of(&health, r)).unwrap_or_default();
                v
            })
            .collect();
        output::print_json(&list);
        return Ok(());
    }
    let mut t = output::table(&[
        "tenant",
        "provider",
        "kind",
        "base url",
        "enabled",
        "max in flight",
        "rate limit",
        "currency",
        "credentials",
        "check schedule",
        "balance",
        "health",
    ]);
    for (r, schedule) in rows.iter().zip(&schedules) {
        let h = health_of(&health, r);
        let mut masked: Vec<String> = r.credential_fields.iter().map(|f| format!("{f}=***")).collect();
        masked.push(format!("({})", r.credentials));
        t.add_row(vec![
            r.tenant.clone(),
            r.name.clone(),
            r.kind.clone(),
            r.base_url.clone(),
            if r.retired { "retired".to_string() } else { yes_no(r.enabled) },
            r.max_in_flight.to_string(),
            r.rate_limit.clone().unwrap_or_else(|| "-".into()),
            r.currency.clone().unwrap_or_else(|| "-".into()),
            masked.join(", "),
            schedule.summary(),
            h.map(balance_cell).unwrap_or_default(),
            h.map(health_cell).unwrap_or_default(),
        ]);
    }
    println!("{t}");
    println!("{SCHEDULE_MARKS}");
    Ok(())
}

fn health_of<'a>(health: &'a [HealthRow], r: &crate::db::listings::ProviderRow) -> Option<&'a HealthRow> {
    health.iter().find(|h| h.tenant == r.tenant && h.provider == r.name)
}

/// "980.88 (2m ago)", "low" when below the setup's low_balance.
fn balance_cell(h: &HealthRow) -> String {
    match (h.balance, h.balance_age_s) {
        (Some(b), Some(age)) => format!(
            "{b} ({} ago){}",
            crate::domain::lifecycle::short(std::time::Duration::from_secs(age.max(0) as u64)),
            if h.low { ", LOW" } else { "" }
        ),
        _ => "unknown".into(),
    }
}

/// "ok", or the hold, the breaker and the causes, in one cell.
fn health_cell(h: &HealthRow) -> String {
    let mut parts = Vec::new();
    if let Some(hold) = h.hold {
        parts.push(format!("{hold}: {}", h.hold_reason.as_deref().unwrap_or("")));
    }
    if h.breaker != BreakerState::Closed {
        parts.push(format!("breaker {}", h.breaker));
    } else if h.failures > 0 {
        parts.push(format!("{} failed call(s) in a row", h.failures));
    }
    parts.extend(h.unavailable.iter().cloned());
    if h.waiting_orders > 0 {
        parts.push(format!("{} order(s) waiting", h.waiting_orders));
    }
    if parts.is_empty() {
        "ok".into()
    } else {
        parts.join("; ")
    }
}

/// A package with its routing, as `package list --output json` prints it.
#[derive(Debug, Serialize)]
struct PackageListing {
    name: String,
    product: String,
    price: Decimal,
    enabled: bool,
    /// No longer in the setup file (`apply --prune`): cannot be ordered.
    retired: bool,
    routing_mode: &'static str,
    provider_type: &'static str,
    primary: Option<String>,
    fallback: Option<String>,
    code_group: Option<String>,
    codes_available: Option<i64>,
    /// One line, like `auto → external znet-main (fallback xstor)`.
    routing: String,
    problems: Vec<PackageProblem>,
}

#[derive(Debug, Serialize)]
struct PackageProblem {
    code: &'static str,
    problem: String,
    fix: String,
}

pub fn packages(s: &Settings) -> Result<()> {
    let (mut client, tenant, tenant_id) = connect_to_tenant(s, "package list")?;
    let rows = listings::packages(&mut client, tenant_id)?;
    let mut views: BTreeMap<i64, RoutingView> = routing::routing_views(&mut client, Some(tenant), None)?.into_iter().collect();
    let mut list = Vec::with_capacity(rows.len());
    for r in rows {
        let view = views
            .remove(&r.id)
            .ok_or_else(|| Error::internal(format!("package {} vanished while it was being listed", r.name)))?;
        // A retired package cannot be ordered: its routing is history, not a problem.
        let problems = if r.retired { Vec::new() } else { check_routing(&view) }
            .into_iter()
            .map(|p| PackageProblem { code: p.code(), problem: p.problem(), fix: p.fix() })
            .collect();
        list.push(PackageListing {
            routing: view.summary(),
            routing_mode: view.mode.as_str(),
            provider_type: view.provider_type.as_str(),
            primary: view.primary.map(|p| p.name),
            fallback: view.fallback.map(|p| p.name),
            codes_available: view.code_group.as_ref().map(|(_, n)| *n),
            code_group: view.code_group.map(|(g, _)| g),
            name: r.name,
            product: r.product,
            price: r.price,
            enabled: r.enabled,
            retired: r.retired,
            problems,
        });
    }
    if s.json() {
        output::print_json(&list);
        return Ok(());
    }
    let mut t = output::table(&["package", "product", "price", "enabled", "routing", "problems"]);
    for p in &list {
        let problems: Vec<&str> = p.problems.iter().map(|p| p.problem.as_str()).collect();
        t.add_row(vec![
            p.name.clone(),
            p.product.clone(),
            money(p.price),
            if p.retired { "retired".to_string() } else { yes_no(p.enabled) },
            p.routing.clone(),
            problems.join("; "),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// A connection for a command that takes an optional `--tenant`: a named tenant must exist.
pub(super) fn connect_scoped(s: &Settings) -> Result<Client> {
    let mut client = db::connect(&s.database_url)?;
    if let Some(t) = &s.tenant {
        routing::tenant_id(&mut client, t)?;
    }
    Ok(client)
}

/// A connection for a command that needs `--tenant`, with the tenant's name and id.
fn connect_to_tenant<'a>(s: &'a Settings, command: &str) -> Result<(Client, &'a str, i64)> {
    let tenant = s.tenant.as_deref().ok_or_else(|| {
        Error::usage(format!("`orderctl {command}` needs a tenant"))
            .with_hint("add --tenant NAME (or set ORDERCTL_TENANT); `orderctl tenant list` shows the names")
    })?;
    let mut client = db::connect(&s.database_url)?;
    let tenant_id = routing::tenant_id(&mut client, tenant)?;
    Ok((client, tenant, tenant_id))
}

fn money(d: Decimal) -> String {
    format!("{d:.2}")
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}
