//! Reading what the database holds for some tenants as setup objects (live and retired), for
//! the plan and for `export`. Secrets are read (the plan compares them) and never leave through
//! here: `domain::setup::fields` masks or replaces them.

use crate::db::providers::{ScheduleColumns, SCHEDULE_COLUMNS};
use crate::db::GenericClient;
use crate::domain::endpoint::Access;
use crate::domain::lifecycle::states::CodeState;
use crate::domain::money::CurrencyPair;
use crate::domain::setup::fields::Kind;
use crate::domain::setup::plan::{Stock, StoredRate, StoredSetup, StoredTenant};
use crate::domain::setup::{
    CodeGroupSetup, PackageSetup, ProviderSetup, TenantSetup, UpstreamSetup, UserSetup, WebhookDelivery, WebhookSetup,
};
use crate::domain::webhook::EventType;
use crate::error::{Error, Result};
use crate::provider::ProviderKind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The stored setup of these tenants (those that exist, in the order given). `codes` names, per
/// (tenant, code group), the codes to look for: the plan needs to know which of a file's codes
/// are stored, and no more of the stock is read.
pub fn load(
    client: &mut impl GenericClient,
    tenants: &[String],
    codes: &BTreeMap<(String, String), Vec<String>>,
) -> Result<StoredSetup> {
    let mut out = StoredSetup::default();
    for name in tenants {
        let Some(r) = client.query_opt("SELECT id, currency FROM tenants WHERE name = $1", &[name])? else { continue };
        let id: i64 = r.get("id");
        let mut t = StoredTenant {
            setup: TenantSetup {
                name: name.clone(),
                currency: r.get("currency"),
                users: users(client, id)?,
                providers: Vec::new(),
                code_groups: Vec::new(),
                packages: Vec::new(),
                webhooks: Vec::new(),
            },
            retired: BTreeSet::new(),
            stock: BTreeMap::new(),
            products: client
                .query("SELECT name FROM products WHERE tenant_id = $1", &[&id])?
                .into_iter()
                .map(|r| r.get(0))
                .collect(),
        };
        providers(client, id, &mut t)?;
        code_groups(client, id, codes, &mut t)?;
        packages(client, id, &mut t)?;
        webhooks(client, id, &mut t)?;
        out.tenants.push(t);
    }
    out.exchange_rates = exchange_rates(client)?;
    Ok(out)
}

/// Every declared exchange rate, live and retired.
fn exchange_rates(client: &mut impl GenericClient) -> Result<BTreeMap<CurrencyPair, StoredRate>> {
    let rows =
        client.query("SELECT from_currency, to_currency, rate, retired_at IS NOT NULL AS retired FROM exchange_rates", &[])?;
    Ok(rows
        .iter()
        .map(|r| {
            let pair = CurrencyPair { from: r.get("from_currency"), to: r.get("to_currency") };
            (pair, StoredRate { rate: r.get("rate"), retired: r.get("retired") })
        })
        .collect())
}

/// Every tenant's name, for `export` without `--tenant`.
pub fn tenant_names(client: &mut impl GenericClient) -> Result<Vec<String>> {
    Ok(client.query("SELECT name FROM tenants ORDER BY name", &[])?.into_iter().map(|r| r.get(0)).collect())
}

fn users(client: &mut impl GenericClient, tenant_id: i64) -> Result<Vec<UserSetup>> {
    // The declared balance is what a file says; the balance itself moves with orders.
    let rows = client.query(
        "SELECT name, email, declared_balance, overdraft_limit FROM users WHERE tenant_id = $1 ORDER BY id",
        &[&tenant_id],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| UserSetup { name: r.get(0), email: r.get(1), balance: r.get(2), overdraft_limit: r.get(3) })
        .collect())
}

fn providers(client: &mut impl GenericClient, tenant_id: i64, t: &mut StoredTenant) -> Result<()> {
    let rows = client.query(
        &format!(
            "SELECT name, kind, base_url, credentials, enabled, max_in_flight, reconcile_for_ms, retired_at IS NOT NULL,
                    {SCHEDULE_COLUMNS}, health_settings, currency, rate_limit_calls, rate_limit_window_ms
               FROM providers WHERE tenant_id = $1 ORDER BY id"
        ),
        &[&tenant_id],
    )?;
    for r in rows {
        let name: String = r.get(0);
        if r.get::<_, bool>(7) {
            t.retired.insert((Kind::Provider, name.clone()));
        }
        t.setup.providers.push(ProviderSetup {
            name,
            // The kind column is CHECKed to known words; anything else is a damaged row.
            kind: ProviderKind::parse(r.get(1)).map_err(Error::internal)?.setup_rules(),
            base_url: r.get(2),
            credentials: r.get(3),
            enabled: r.get(4),
            max_in_flight: r.get(5),
            reconcile_for: Duration::from_millis(r.get::<_, i64>(6).max(0) as u64),
            schedule: ScheduleColumns::read(&r, 8).schedule(),
            health: crate::domain::provider_health::HealthSettings::from_json(&r.get("health_settings")),
            currency: r.try_get("currency")?,
            rate_limit: stored_rate_limit(r.try_get("rate_limit_calls")?, r.try_get("rate_limit_window_ms")?),
        });
    }
    Ok(())
}

fn stored_rate_limit(calls: Option<i32>, window_ms: Option<i32>) -> Option<crate::domain::pace::RateLimit> {
    Some(crate::domain::pace::RateLimit { calls: calls?.max(1) as u32, per: Duration::from_millis(window_ms?.max(1) as u64) })
}

fn code_groups(
    client: &mut impl GenericClient,
    tenant_id: i64,
    codes: &BTreeMap<(String, String), Vec<String>>,
    t: &mut StoredTenant,
) -> Result<()> {
    let rows = client.query(
        &format!(
            "SELECT g.id, g.name, g.retired_at IS NOT NULL,
                    count(c.id) FILTER (WHERE c.state = {available}),
                    count(c.id) FILTER (WHERE c.state = {reserved}),
                    count(c.id) FILTER (WHERE c.state = {used})
               FROM code_groups g LEFT JOIN code_items c ON c.code_group_id = g.id
              WHERE g.tenant_id = $1 GROUP BY g.id ORDER BY g.id",
            available = CodeState::Available.sql(),
            reserved = CodeState::Reserved.sql(),
            used = CodeState::Used.sql()
        ),
        &[&tenant_id],
    )?;
    for r in rows {
        let (id, name): (i64, String) = (r.get(0), r.get(1));
        if r.get::<_, bool>(2) {
            t.retired.insert((Kind::CodeGroup, name.clone()));
        }
        t.stock.insert(name.clone(), Stock { available: r.get(3), reserved: r.get(4), used: r.get(5) });
        let wanted = codes.get(&(t.setup.name.clone(), name.clone())).cloned().unwrap_or_default();
        let found: Vec<String> = if wanted.is_empty() {
            Vec::new()
        } else {
            client
                .query("SELECT code FROM code_items WHERE code_group_id = $1 AND code = ANY($2)", &[&id, &wanted])?
                .into_iter()
                .map(|r| r.get(0))
                .collect()
        };
        t.setup.code_groups.push(CodeGroupSetup { name, codes: found });
    }
    Ok(())
}

fn packages(client: &mut impl GenericClient, tenant_id: i64, t: &mut StoredTenant) -> Result<()> {
    let rows = client.query(
        "SELECT pk.id, pk.name, pr.name, pk.price, pk.enabled, pk.routing_mode, pk.provider_type,
                pp.name, fp.name, cg.name, ut.name, up.name, ua.name, pk.retired_at IS NOT NULL
           FROM packages pk
           JOIN products pr ON pr.id = pk.product_id
           LEFT JOIN providers pp ON pp.id = pk.primary_provider_id
           LEFT JOIN providers fp ON fp.id = pk.fallback_provider_id
           LEFT JOIN code_groups cg ON cg.id = pk.code_group_id
           LEFT JOIN tenants ut ON ut.id = pk.upstream_tenant_id
           LEFT JOIN packages up ON up.id = pk.upstream_package_id
           LEFT JOIN users ua ON ua.id = pk.upstream_user_id
          WHERE pk.tenant_id = $1 ORDER BY pk.id",
        &[&tenant_id],
    )?;
    // Every mapping of the tenant's packages in one query: package id → provider → params.
    let mut all_mappings: BTreeMap<i64, BTreeMap<String, Value>> = BTreeMap::new();
    for r in client.query(
        "SELECT m.package_id, p.name, m.params FROM package_mappings m JOIN providers p ON p.id = m.provider_id
          WHERE p.tenant_id = $1",
        &[&tenant_id],
    )? {
        all_mappings.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
    }
    for r in rows {
        let id: i64 = r.get(0);
        let name: String = r.get(1);
        if r.get::<_, bool>(13) {
            t.retired.insert((Kind::Package, name.clone()));
        }
        let mappings = all_mappings.remove(&id).unwrap_or_default();
        let upstream = match (r.get::<_, Option<String>>(10), r.get::<_, Option<String>>(11), r.get::<_, Option<String>>(12)) {
            (Some(tenant), Some(package), Some(account)) => Some(UpstreamSetup { tenant, package, account }),
            _ => None,
        };
        t.setup.packages.push(PackageSetup {
            name,
            product: r.get(2),
            price: r.get(3),
            enabled: r.get(4),
            // The CHECK constraints keep these to known words; anything else is a damaged row.
            mode: r.get::<_, String>(5).parse().map_err(Error::internal)?,
            provider_type: r.get::<_, String>(6).parse().map_err(Error::internal)?,
            primary: r.get(7),
            fallback: r.get(8),
            code_group: r.get(9),
            upstream,
            mappings,
        });
    }
    Ok(())
}

fn webhooks(client: &mut impl GenericClient, tenant_id: i64, t: &mut StoredTenant) -> Result<()> {
    let rows = client.query(
        "SELECT url, secret, events, enabled, allow_private_network, allow_http, retry_horizon_ms, retired_at IS NOT NULL
           FROM webhooks WHERE tenant_id = $1 ORDER BY id",
        &[&tenant_id],
    )?;
    for r in rows {
        let url: String = r.get(0);
        if r.get::<_, bool>(7) {
            t.retired.insert((Kind::Webhook, url.clone()));
        }
        let events = r
            .get::<_, Vec<String>>(2)
            .iter()
            .map(|e| EventType::parse(e).ok_or_else(|| Error::internal(format!("webhook {url}: unknown event {e}"))))
            .collect::<Result<Vec<_>>>()?;
        t.setup.webhooks.push(WebhookSetup {
            url,
            secret: Some(r.get::<_, serde_json::Value>(1)),
            events,
            enabled: r.get(3),
            delivery: WebhookDelivery {
                access: Access { allow_private_network: r.get(4), allow_http: r.get(5) },
                retry_horizon: r.get::<_, Option<i64>>(6).map(|ms| Duration::from_millis(ms.max(0) as u64)),
            },
        });
    }
    Ok(())
}
