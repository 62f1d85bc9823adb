//! `orderctl stats --money`: what the orders of a window brought in and cost at the providers,
//! per tenant and provider currency, optionally by package, provider or day. Amounts are exact
//! decimals as stored; orderctl converts no currency, so cost and margin are shown per the
//! provider's currency and a margin is only meaningful where the tenant sells in that currency.

use crate::cli::MoneyBy;
use crate::db::money::{self, MoneyRow};
use crate::domain::backoff::short_duration;
use crate::error::Result;
use crate::output;
use crate::settings::Settings;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
struct MoneyReport<'a> {
    tenant: Option<&'a str>,
    window: String,
    by: &'static str,
    rows: Vec<MoneyRow>,
}

pub fn run(s: &Settings, window: Duration, by: Option<MoneyBy>) -> Result<()> {
    let (by, by_name) = match by {
        None => (money::MoneyBy::Total, "total"),
        Some(MoneyBy::Package) => (money::MoneyBy::Package, "package"),
        Some(MoneyBy::Provider) => (money::MoneyBy::Provider, "provider"),
        Some(MoneyBy::Day) => (money::MoneyBy::Day, "day"),
    };
    let mut client = super::listings::connect_scoped(s)?;
    let rows = money::money_report(&mut client, s.tenant.as_deref(), window, by)?;
    let report = MoneyReport { tenant: s.tenant.as_deref(), window: short_duration(window), by: by_name, rows };
    if s.json() {
        output::print_json(&report);
        return Ok(());
    }
    let mut t = output::table(&[
        "tenant",
        by_name,
        "cost currency",
        "orders",
        "delivered",
        "revenue",
        "provider cost",
        "cost unknown",
        "margin",
        "cost of cancelled",
        "refunds",
    ]);
    for r in &report.rows {
        t.add_row(vec![
            r.tenant.clone(),
            r.key.clone(),
            r.cost_currency.clone(),
            r.orders.to_string(),
            r.delivered.to_string(),
            format!("{:.2}", r.revenue),
            format!("{:.2}", r.provider_cost),
            r.cost_unknown.to_string(),
            r.margin.map(|m| format!("{m:.2}")).unwrap_or_else(|| "-".into()),
            format!("{:.2}", r.cost_of_cancelled),
            format!("{:.2}", r.refunds),
        ]);
    }
    println!("money of the orders created in the last {}:\n{t}", report.window);
    println!(
        "revenue, margin and refunds are in the tenant's money; provider cost in the cost currency (- = the tenant's money: the \
         provider's setup names no currency of its own); no currency is converted, so costs in another currency have no margin"
    );
    Ok(())
}
