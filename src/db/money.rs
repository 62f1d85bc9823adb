//! The statement behind `orderctl stats --money`: orders, revenue, provider cost, margin and
//! refunds over a window, per tenant and provider currency, optionally by package, provider or
//! day. Provider cost is dealer data: only this operator report reads it.

use crate::db::GenericClient;
use crate::domain::lifecycle::states::OrderStatus;
use crate::error::Result;
use rust_decimal::Decimal;
use serde::Serialize;
use std::time::Duration;

/// What the money report is broken down by, beside tenant and currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyBy {
    Total,
    Package,
    Provider,
    Day,
}

impl MoneyBy {
    /// The SQL expression of the breakdown key (`-` where an order has none).
    fn key_sql(self) -> &'static str {
        match self {
            MoneyBy::Total => "'all'",
            MoneyBy::Package => "pk.name",
            MoneyBy::Provider => "coalesce(pr.name, '-')",
            MoneyBy::Day => "to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        }
    }
}

/// One row. `revenue`, `refunds` and `margin` are in the tenant's own money (the package prices);
/// `provider_cost` is in `cost_currency`, the provider's (`-` when its setup names none).
#[derive(Debug, Clone, Serialize)]
pub struct MoneyRow {
    pub tenant: String,
    pub key: String,
    pub cost_currency: String,
    /// Orders created in the window.
    pub orders: i64,
    /// Of those, delivered (approved).
    pub delivered: i64,
    /// Package prices of the delivered orders.
    pub revenue: Decimal,
    /// What the providers said the delivered orders cost.
    pub provider_cost: Decimal,
    /// Delivered orders a provider accepted without a readable cost (their margin is not counted).
    pub cost_unknown: i64,
    /// Price minus provider cost over the delivered orders whose cost is known.
    pub margin: Decimal,
    /// Cost the providers named for orders they later cancelled (whether it came back to the
    /// dealer account, the providers do not document).
    pub cost_of_cancelled: Decimal,
    /// Refunds to buyers (the ledger's refund entries) of orders created in the window.
    pub refunds: Decimal,
}

pub fn money_report(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    since: Duration,
    by: MoneyBy,
) -> Result<Vec<MoneyRow>> {
    let approved = OrderStatus::Approved.sql();
    let rejected = OrderStatus::Rejected.sql();
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, {key} AS key, coalesce(o.provider_cost_currency, '-') AS cost_currency,
                    count(*) AS orders,
                    count(*) FILTER (WHERE o.status = {approved}) AS delivered,
                    coalesce(sum(o.price) FILTER (WHERE o.status = {approved}), 0) AS revenue,
                    coalesce(sum(o.provider_cost) FILTER (WHERE o.status = {approved}), 0) AS provider_cost,
                    count(*) FILTER (WHERE o.status = {approved} AND o.provider_id IS NOT NULL
                                       AND o.sent_at IS NOT NULL AND o.provider_cost IS NULL) AS cost_unknown,
                    coalesce(sum(o.price - o.provider_cost) FILTER (WHERE o.status = {approved}), 0) AS margin,
                    coalesce(sum(o.provider_cost) FILTER (WHERE o.status = {rejected}), 0) AS cost_of_cancelled,
                    coalesce(sum(l.amount), 0) AS refunds
               FROM orders o
               JOIN tenants t ON t.id = o.tenant_id
               JOIN packages pk ON pk.id = o.package_id
               LEFT JOIN providers pr ON pr.id = o.provider_id
               LEFT JOIN ledger l ON l.order_id = o.id AND l.kind = 'refund'
              WHERE ($1::text IS NULL OR t.name = $1)
                AND o.created_at >= now() - make_interval(secs => $2::bigint / 1000.0)
              GROUP BY 1, 2, 3
              ORDER BY 1, 2, 3",
            key = by.key_sql()
        ),
        &[&tenant, &(since.as_millis().min(i64::MAX as u128) as i64)],
    )?;
    Ok(rows
        .iter()
        .map(|r| MoneyRow {
            tenant: r.get("tenant"),
            key: r.get("key"),
            cost_currency: r.get("cost_currency"),
            orders: r.get("orders"),
            delivered: r.get("delivered"),
            revenue: r.get("revenue"),
            provider_cost: r.get("provider_cost"),
            cost_unknown: r.get("cost_unknown"),
            margin: r.get("margin"),
            cost_of_cancelled: r.get("cost_of_cancelled"),
            refunds: r.get("refunds"),
        })
        .collect())
}
