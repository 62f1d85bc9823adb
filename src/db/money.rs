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

/// One row, in one tenant currency (`currency`: the tenant's money when the cost was recorded,
/// `-` when the tenant names none). `revenue`, `provider_cost`, `margin`, `cost_of_cancelled`
/// and `refunds` are all in it: each order's cost is converted with the rate it snapshotted
/// when it was placed (1 when the provider charges in the tenant's money). Costs that no
/// declared rate converted are never added in: they are in `unconverted`, in their own money.
#[derive(Debug, Clone, Serialize)]
pub struct MoneyRow {
    pub tenant: String,
    pub key: String,
    pub currency: String,
    /// Orders created in the window.
    pub orders: i64,
    /// Of those, delivered (approved).
    pub delivered: i64,
    /// Package prices of the delivered orders.
    pub revenue: Decimal,
    /// What the providers said the delivered orders cost, converted (those with a rate).
    pub provider_cost: Decimal,
    /// Delivered orders a provider accepted without a readable cost (their margin is not counted).
    pub cost_unknown: i64,
    /// Delivered orders whose cost is known and converted: the orders `margin` is over.
    pub margin_orders: i64,
    /// Price minus converted cost over the `margin_orders`; none when there are none.
    pub margin: Option<Decimal>,
    /// Converted cost the providers named for orders they later cancelled (whether it came back
    /// to the dealer account, the providers do not document).
    pub cost_of_cancelled: Decimal,
    /// Refunds to buyers (the ledger's refund entries) of orders created in the window.
    pub refunds: Decimal,
    /// Costs in another money that no declared rate converted when they were recorded.
    pub unconverted: Vec<Unconverted>,
}

/// Costs of one provider currency left as they are (no rate was declared at placement).
#[derive(Debug, Clone, Serialize)]
pub struct Unconverted {
    pub cost_currency: String,
    /// Delivered orders among them (not in the row's `margin_orders`).
    pub delivered: i64,
    /// Their cost, in `cost_currency`.
    pub provider_cost: Decimal,
    /// Cost named for orders later cancelled, in `cost_currency`.
    pub cost_of_cancelled: Decimal,
}

/// A package whose price is below what its provider charges for it, both in the tenant's money.
#[derive(Debug, Clone, Serialize)]
pub struct BelowCost {
    pub tenant: String,
    pub package: String,
    pub provider: String,
    /// The tenant's currency (none: not named).
    pub currency: Option<String>,
    pub price: Decimal,
    /// The provider's cost in its own money (`cost_currency`; none: the tenant's).
    pub cost: Decimal,
    pub cost_currency: Option<String>,
    /// The current declared rate the cost was converted with (1: the same money).
    pub rate: Decimal,
    /// `cost × rate`: what is compared with the price.
    pub converted_cost: Decimal,
    /// "catalogue" (the provider's price list as last read) or "last order" (the cost its reply named).
    pub source: &'static str,
}

impl BelowCost {
    /// "sells at 1.10 TRY but znet charges 10.12 TRY for it (catalogue)", with the conversion
    /// spelled out when the provider charges in another money.
    pub fn problem(&self) -> String {
        let price = amount(self.price, self.currency.as_deref());
        let mut cost = amount(self.cost, self.cost_currency.as_deref());
        if self.cost_currency.is_some() && self.cost_currency != self.currency {
            let to = self.currency.as_deref().unwrap_or("-");
            let from = self.cost_currency.as_deref().unwrap_or("-");
            cost = format!(
                "{cost} (= {} at the declared rate {from}/{to} {})",
                amount(self.converted_cost, self.currency.as_deref()),
                self.rate.normalize()
            );
        }
        format!("sells at {price} but {} charges {cost} for it ({})", self.provider, self.source)
    }
}

/// A package whose provider charges in another money than the tenant's with no declared rate
/// between them: its price cannot be held against the cost, and the operator is told so.
#[derive(Debug, Clone, Serialize)]
pub struct NoRate {
    pub tenant: String,
    pub package: String,
    pub provider: String,
    pub currency: Option<String>,
    /// Every cost known for the mapping, with where it comes from ("catalogue", "last order"):
    /// one finding per mapping, not one per cost.
    pub costs: Vec<(Decimal, &'static str)>,
    pub cost_currency: String,
}

impl NoRate {
    pub fn problem(&self) -> String {
        let why = match &self.currency {
            Some(to) => format!("no exchange rate {}/{to} is declared", self.cost_currency),
            None => "the tenant names no currency".to_string(),
        };
        let costs: Vec<String> =
            self.costs.iter().map(|(c, source)| format!("{} ({source})", amount(*c, Some(&self.cost_currency)))).collect();
        format!("price not compared with {}'s cost {}: {why}", self.provider, costs.join(", "))
    }
    pub fn fix(&self) -> String {
        // With no tenant currency yet, the example names where the operator's own code goes.
        let to = self.currency.as_deref().unwrap_or("<tenant currency>");
        format!(
            "{}declare the rate in the setup file's exchange_rates, like {{\"{}/{to}\": \"...\"}}, and apply it",
            if self.currency.is_none() { "give the tenant its `currency`, then " } else { "" },
            self.cost_currency
        )
    }
}

/// "1.10" in money that is not named, "1.10 TRY" otherwise.
fn amount(a: Decimal, currency: Option<&str>) -> String {
    match currency {
        Some(c) => format!("{a} {c}"),
        None => a.to_string(),
    }
}

/// Packages priced below their provider's cost, by the catalogue as last read and by the latest
/// recorded order cost, both converted into the tenant's money with the current declared rate;
/// and the packages whose cost no declared rate converts (`NoRate`), never compared as if it did.
pub fn below_cost(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<(Vec<BelowCost>, Vec<NoRate>)> {
    let rows = client.query(
        "SELECT t.name AS tenant, t.currency, pk.name AS package, pr.name AS provider, pr.kind, pr.currency AS cost_currency,
                pk.price, m.params, orderctl_cost_rate(pr.id, t.id) AS rate,
                -- The latest recorded cost, one probe of `orders_last_cost` (sql/0024); a cost in
                -- another money than the provider's present one is not compared.
                (SELECT CASE WHEN o.provider_cost_currency IS NOT DISTINCT FROM pr.currency THEN o.provider_cost END
                   FROM orders o
                  WHERE o.package_id = pk.id AND o.provider_id = pr.id AND o.provider_cost IS NOT NULL
                  ORDER BY o.sent_at DESC NULLS LAST LIMIT 1) AS last_cost,
                coalesce((SELECT jsonb_object_agg(c.item_key, c.price::text) FROM provider_catalogue_prices c
                           WHERE c.provider_id = pr.id), '{}'::jsonb) AS catalogue
           FROM package_mappings m
           JOIN packages pk ON pk.id = m.package_id
           JOIN providers pr ON pr.id = m.provider_id
           JOIN tenants t ON t.id = pk.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1)
            AND pk.retired_at IS NULL AND pr.retired_at IS NULL
          ORDER BY 1, 3, 4",
        &[&tenant],
    )?;
    let (mut below, mut no_rate) = (Vec::new(), Vec::new());
    for r in rows {
        let kind = crate::provider::ProviderKind::parse(r.get("kind")).map_err(crate::error::Error::internal)?;
        let price: Decimal = r.get("price");
        let params: serde_json::Value = r.get("params");
        let catalogue: serde_json::Value = r.get("catalogue");
        let listed = (kind.spec().mapping_key)(&params)
            .and_then(|k| catalogue.get(&k).and_then(|v| v.as_str()).and_then(|p| p.parse::<Decimal>().ok()));
        let last: Option<Decimal> = r.get("last_cost");
        let rate: Option<Decimal> = r.get("rate");
        let cost_currency: Option<String> = r.get("cost_currency");
        let costs: Vec<(Decimal, &'static str)> =
            [(listed, "catalogue"), (last, "last order")].into_iter().filter_map(|(c, source)| Some((c?, source))).collect();
        let Some(rate) = rate else {
            if !costs.is_empty() {
                no_rate.push(NoRate {
                    tenant: r.get("tenant"),
                    package: r.get("package"),
                    provider: r.get("provider"),
                    currency: r.get("currency"),
                    costs,
                    cost_currency: cost_currency.clone().unwrap_or_default(),
                });
            }
            continue;
        };
        for (cost, source) in costs {
            let converted_cost = (cost * rate).normalize();
            if price < converted_cost {
                below.push(BelowCost {
                    tenant: r.get("tenant"),
                    package: r.get("package"),
                    provider: r.get("provider"),
                    currency: r.get("currency"),
                    price,
                    cost,
                    cost_currency: cost_currency.clone(),
                    rate: rate.normalize(),
                    converted_cost,
                    source,
                });
            }
        }
    }
    Ok((below, no_rate))
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

/// The money report: one row per tenant, breakdown key and tenant currency, each with the
/// costs no rate converted beside it. Two statements over the same window: the converted sums
/// and the unconverted ones.
pub fn money_report(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    since: Duration,
    by: MoneyBy,
) -> Result<Vec<MoneyRow>> {
    let approved = OrderStatus::Approved.sql();
    let rejected = OrderStatus::Rejected.sql();
    let since_ms = since.as_millis().min(i64::MAX as u128) as i64;
    // Orders without a cost snapshot (codes, not yet placed) are in the tenant's money of now.
    let from = "FROM orders o
               JOIN tenants t ON t.id = o.tenant_id
               JOIN packages pk ON pk.id = o.package_id
               LEFT JOIN providers pr ON pr.id = o.provider_id
              WHERE ($1::text IS NULL OR t.name = $1)
                AND o.created_at >= now() - make_interval(secs => $2::bigint / 1000.0)";
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, {key} AS key, coalesce(o.sale_currency, t.currency, '-') AS currency,
                    count(*) AS orders,
                    count(*) FILTER (WHERE o.status = {approved}) AS delivered,
                    coalesce(sum(o.price) FILTER (WHERE o.status = {approved}), 0) AS revenue,
                    coalesce(sum(o.provider_cost * o.cost_rate) FILTER (WHERE o.status = {approved}), 0) AS provider_cost,
                    count(*) FILTER (WHERE o.status = {approved} AND o.provider_id IS NOT NULL
                                       AND o.sent_at IS NOT NULL AND o.provider_cost IS NULL) AS cost_unknown,
                    count(*) FILTER (WHERE o.status = {approved} AND o.provider_cost IS NOT NULL AND o.cost_rate IS NOT NULL)
                        AS margin_orders,
                    sum(o.price - o.provider_cost * o.cost_rate) FILTER (WHERE o.status = {approved}) AS margin,
                    coalesce(sum(o.provider_cost * o.cost_rate) FILTER (WHERE o.status = {rejected}), 0) AS cost_of_cancelled,
                    coalesce(sum((SELECT sum(l.amount) FROM ledger l WHERE l.order_id = o.id AND l.kind = 'refund')), 0) AS refunds
               {from}
              GROUP BY 1, 2, 3
              ORDER BY 1, 2, 3",
            key = by.key_sql()
        ),
        &[&tenant, &since_ms],
    )?;
    let mut out: Vec<MoneyRow> = rows
        .iter()
        .map(|r| MoneyRow {
            tenant: r.get("tenant"),
            key: r.get("key"),
            currency: r.get("currency"),
            orders: r.get("orders"),
            delivered: r.get("delivered"),
            revenue: r.get("revenue"),
            provider_cost: r.get::<_, Decimal>("provider_cost").normalize(),
            cost_unknown: r.get("cost_unknown"),
            margin_orders: r.get("margin_orders"),
            margin: r.get::<_, Option<Decimal>>("margin").map(|m| m.normalize()),
            cost_of_cancelled: r.get::<_, Decimal>("cost_of_cancelled").normalize(),
            refunds: r.get("refunds"),
            unconverted: Vec::new(),
        })
        .collect();
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, {key} AS key, coalesce(o.sale_currency, t.currency, '-') AS currency,
                    coalesce(o.provider_cost_currency, '-') AS cost_currency,
                    count(*) FILTER (WHERE o.status = {approved}) AS delivered,
                    coalesce(sum(o.provider_cost) FILTER (WHERE o.status = {approved}), 0) AS provider_cost,
                    coalesce(sum(o.provider_cost) FILTER (WHERE o.status = {rejected}), 0) AS cost_of_cancelled
               {from} AND o.provider_cost IS NOT NULL AND o.cost_rate IS NULL
              GROUP BY 1, 2, 3, 4
              ORDER BY 1, 2, 3, 4",
            key = by.key_sql()
        ),
        &[&tenant, &since_ms],
    )?;
    for r in rows {
        let (tenant, key, currency): (String, String, String) = (r.get("tenant"), r.get("key"), r.get("currency"));
        // Every order of the second statement is counted by the first: its row exists.
        if let Some(row) = out.iter_mut().find(|m| m.tenant == tenant && m.key == key && m.currency == currency) {
            row.unconverted.push(Unconverted {
                cost_currency: r.get("cost_currency"),
                delivered: r.get("delivered"),
                provider_cost: r.get("provider_cost"),
                cost_of_cancelled: r.get("cost_of_cancelled"),
            });
        }
    }
    Ok(out)
}
