//! `orderctl stats --money`: what the orders of a window brought in and cost at the providers,
//! per tenant currency, optionally by package, provider or day. Amounts are exact decimals: each
//! order's cost is converted into the tenant's money with the rate it snapshotted when it was
//! placed (`db::money`), so a rate declared later changes no past margin. Costs that no rate
//! converted are shown apart, in their own money, and never added to the converted ones.

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
        "currency",
        "orders",
        "delivered",
        "revenue",
        "provider cost",
        "cost unknown",
        "margin (orders)",
        "cost of cancelled",
        "refunds",
        "unconverted cost",
    ]);
    for r in &report.rows {
        t.add_row(vec![
            r.tenant.clone(),
            r.key.clone(),
            r.currency.clone(),
            r.orders.to_string(),
            r.delivered.to_string(),
            r.revenue.to_string(),
            r.provider_cost.to_string(),
            r.cost_unknown.to_string(),
            r.margin.map(|m| format!("{m} ({})", r.margin_orders)).unwrap_or_else(|| "-".into()),
            r.cost_of_cancelled.to_string(),
            r.refunds.to_string(),
            unconverted(r),
        ]);
    }
    println!("money of the orders created in the last {}:\n{t}", report.window);
    println!(
        "every amount is in the row's currency (- = the tenant names none): each cost converted with the exchange rate its \
         order recorded when placed; unconverted cost (no rate declared then) is in its own money and in no other column"
    );
    Ok(())
}

/// "3 delivered: 30.00 USD; cancelled 10.00 USD", one part per provider currency, or "-".
fn unconverted(r: &MoneyRow) -> String {
    if r.unconverted.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = r
        .unconverted
        .iter()
        .map(|u| {
            let c = &u.cost_currency;
            format!("{} delivered: {} {c}; cancelled {} {c}", u.delivered, u.provider_cost, u.cost_of_cancelled)
        })
        .collect();
    parts.join(" | ")
}
