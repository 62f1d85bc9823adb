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

/// One row. `revenue` and `refunds` are in the tenant's own money (the package prices);
/// `provider_cost` is in `cost_currency`: `-` when the provider's setup names no currency, which
/// means it charges in the tenant's money; a named currency is another money, and orderctl
/// converts none, so such rows have no margin.
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
    /// Price minus provider cost over the delivered orders whose cost is known, when the cost is
    /// in the tenant's money (`cost_currency` `-`).
    pub margin: Option<Decimal>,
    /// Cost the providers named for orders they later cancelled (whether it came back to the
    /// dealer account, the providers do not document).
    pub cost_of_cancelled: Decimal,
    /// Refunds to buyers (the ledger's refund entries) of orders created in the window.
    pub refunds: Decimal,
}

/// A package whose price is below what its provider charges for it.
#[derive(Debug, Clone, Serialize)]
pub struct BelowCost {
    pub tenant: String,
    pub package: String,
    pub provider: String,
    pub price: Decimal,
    pub cost: Decimal,
    /// "catalogue" (the provider's price list as last read) or "last order" (the cost its reply named).
    pub source: &'static str,
}

/// Packages priced below their provider's cost, by the catalogue as last read and by the latest
/// recorded order cost. Only providers that charge in the tenant's money (no `currency`) are
/// compared: orderctl converts no currency.
pub fn below_cost(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<BelowCost>> {
    let rows = client.query(
        "SELECT t.name AS tenant, pk.name AS package, pr.name AS provider, pr.kind, pk.price, m.params,
                (SELECT o.provider_cost FROM orders o
                  WHERE o.package_id = pk.id AND o.provider_id = pr.id AND o.provider_cost IS NOT NULL
                    AND o.provider_cost_currency IS NULL
                  ORDER BY o.sent_at DESC NULLS LAST LIMIT 1) AS last_cost,
                coalesce((SELECT jsonb_object_agg(c.item_key, c.price::text) FROM provider_catalogue_prices c
                           WHERE c.provider_id = pr.id), '{}'::jsonb) AS catalogue
           FROM package_mappings m
           JOIN packages pk ON pk.id = m.package_id
           JOIN providers pr ON pr.id = m.provider_id
           JOIN tenants t ON t.id = pk.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1) AND pr.currency IS NULL
            AND pk.retired_at IS NULL AND pr.retired_at IS NULL
          ORDER BY 1, 2, 3",
        &[&tenant],
    )?;
    let mut out = Vec::new();
    for r in rows {
        let kind = crate::provider::ProviderKind::parse(r.get("kind")).map_err(crate::error::Error::internal)?;
        let price: Decimal = r.get("price");
        let params: serde_json::Value = r.get("params");
        let catalogue: serde_json::Value = r.get("catalogue");
        let listed = (kind.spec().mapping_key)(&params)
            .and_then(|k| catalogue.get(&k).and_then(|v| v.as_str()).and_then(|p| p.parse::<Decimal>().ok()));
        let last: Option<Decimal> = r.get("last_cost");
        for (cost, source) in [(listed, "catalogue"), (last, "last order")] {
            if let Some(cost) = cost.filter(|c| price < *c) {
                out.push(BelowCost {
                    tenant: r.get("tenant"),
                    package: r.get("package"),
                    provider: r.get("provider"),
                    price,
                    cost,
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Keep a provider's catalogue prices (those that read as exact amounts) for [`below_cost`].
pub fn record_catalogue(
    client: &mut impl GenericClient,
    provider_id: i64,
    kind: crate::provider::ProviderKind,
    items: &[crate::provider::CatalogueItem],
) -> Result<()> {
    let (keys, prices): (Vec<String>, Vec<Decimal>) = items
        .iter()
        .filter_map(|i| Some(((kind.spec().item_key)(i), crate::domain::money::parse_amount(&i.price, "price").ok()?)))
        .filter(|(_, p)| *p >= Decimal::ZERO)
        .unzip();
    client.execute(
        "INSERT INTO provider_catalogue_prices (provider_id, item_key, price)
         SELECT $1, k, p FROM unnest($2::text[], $3::numeric[]) AS u(k, p)
         ON CONFLICT (provider_id, item_key) DO UPDATE SET price = excluded.price, seen_at = now()",
        &[&provider_id, &keys, &prices],
    )?;
    Ok(())
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
                    CASE WHEN coalesce(o.provider_cost_currency, '-') = '-'
                         THEN coalesce(sum(o.price - o.provider_cost) FILTER (WHERE o.status = {approved}), 0) END AS margin,
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
