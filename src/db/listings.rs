//! Read-only listings an operator needs while setting up: tenants, users, providers, packages.
//! No statement here ever selects a credential value: providers come with their credential
//! field names only.

use crate::db::GenericClient;
use crate::error::Result;
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct TenantRow {
    pub name: String,
    pub users: i64,
    pub providers: i64,
    pub packages: i64,
    /// Orders still pending (not approved or rejected).
    pub open_orders: i64,
}

/// Every tenant (or only `tenant`) with counts of what it holds.
pub fn tenants(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<TenantRow>> {
    let rows = client.query(
        &format!(
            "SELECT t.name,
                (SELECT count(*) FROM users u WHERE u.tenant_id = t.id),
                (SELECT count(*) FROM providers p WHERE p.tenant_id = t.id),
                (SELECT count(*) FROM packages pk WHERE pk.tenant_id = t.id),
                (SELECT count(*) FROM orders o WHERE o.tenant_id = t.id AND {pending})
           FROM tenants t
          WHERE ($1::text IS NULL OR t.name = $1)
          ORDER BY t.name",
            pending = crate::domain::lifecycle::states::pending_sql("o.")
        ),
        &[&tenant],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| TenantRow { name: r.get(0), users: r.get(1), providers: r.get(2), packages: r.get(3), open_orders: r.get(4) })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRow {
    pub name: String,
    pub email: String,
    pub balance: Decimal,
    pub overdraft_limit: Decimal,
    /// What the user can spend: balance + overdraft_limit.
    pub available: Decimal,
}

pub fn users(client: &mut impl GenericClient, tenant_id: i64) -> Result<Vec<UserRow>> {
    let rows = client.query(
        "SELECT name, email, balance, overdraft_limit, balance + overdraft_limit
           FROM users WHERE tenant_id = $1 ORDER BY name",
        &[&tenant_id],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| UserRow { name: r.get(0), email: r.get(1), balance: r.get(2), overdraft_limit: r.get(3), available: r.get(4) })
        .collect())
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderRow {
    pub tenant: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub enabled: bool,
    /// No longer in the setup file (`apply --prune`): disabled, kept for history.
    pub retired: bool,
    pub max_in_flight: i32,
    /// Names of the credential fields that are set. Never their values.
    pub credential_fields: Vec<String>,
    /// Whether they resolve here: "references", "plain values", or "unresolved: <which
    /// variable or file, and why>" (never a value).
    pub credentials: String,
    /// The provider's own check schedule (what it leaves out is global).
    #[serde(skip)]
    pub schedule: crate::domain::backoff::ScheduleOverride,
    /// Calls allowed from every process together ("20/s"), when limited.
    pub rate_limit: Option<String>,
    /// The currency it charges in, when not the tenant's own money.
    pub currency: Option<String>,
}

/// Providers of every tenant (or only `tenant`).
pub fn providers(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<ProviderRow>> {
    let rows = client.query(
        "SELECT t.name, p.name, p.kind, p.base_url, p.enabled, p.max_in_flight,
                ARRAY(SELECT k FROM jsonb_object_keys(
                          CASE WHEN jsonb_typeof(p.credentials) = 'object' THEN p.credentials ELSE '{}'::jsonb END
                      ) AS k ORDER BY k),
                p.schedule_first_check_ms, p.schedule_backoff_base_ms, p.schedule_backoff_max_ms,
                p.schedule_max_checks, p.schedule_give_up_after_ms, p.credentials, p.retired_at IS NOT NULL,
                p.rate_limit_calls, p.rate_limit_window_ms, p.currency
           FROM providers p JOIN tenants t ON t.id = p.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1)
          ORDER BY t.name, p.name",
        &[&tenant],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| ProviderRow {
            tenant: r.get(0),
            name: r.get(1),
            kind: r.get(2),
            base_url: r.get(3),
            enabled: r.get(4),
            retired: r.get(13),
            max_in_flight: r.get(5),
            credential_fields: r.get(6),
            credentials: credentials_state(&r.get(12)),
            schedule: crate::db::providers::ScheduleColumns::read(&r, 7).schedule(),
            rate_limit: r.get::<_, Option<i32>>("rate_limit_calls").zip(r.get::<_, Option<i32>>("rate_limit_window_ms")).map(
                |(calls, ms)| {
                    crate::domain::pace::RateLimit {
                        calls: calls.max(1) as u32,
                        per: std::time::Duration::from_millis(ms.max(1) as u64),
                    }
                    .to_string()
                },
            ),
            currency: r.get("currency"),
        })
        .collect())
}

/// See `ProviderRow::credentials`.
pub fn credentials_state(stored: &serde_json::Value) -> String {
    match crate::secret::resolve(stored) {
        Err(why) => format!("unresolved: {why}"),
        Ok(_) if !crate::secret::plain_fields(stored).is_empty() => "plain values".into(),
        Ok(_) => "references".into(),
    }
}

#[derive(Debug, Clone)]
pub struct PackageRow {
    pub id: i64,
    pub name: String,
    pub product: String,
    pub price: Decimal,
    pub enabled: bool,
    /// No longer in the setup file (`apply --prune`): cannot be ordered, kept for history.
    pub retired: bool,
}

/// Packages of a tenant; their routing comes from `db::routing::routing_views` by id.
pub fn packages(client: &mut impl GenericClient, tenant_id: i64) -> Result<Vec<PackageRow>> {
    let rows = client.query(
        "SELECT pk.id, pk.name, pr.name, pk.price, pk.enabled, pk.retired_at IS NOT NULL
           FROM packages pk JOIN products pr ON pr.id = pk.product_id
          WHERE pk.tenant_id = $1 ORDER BY pk.name",
        &[&tenant_id],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| PackageRow {
            id: r.get(0),
            name: r.get(1),
            product: r.get(2),
            price: r.get(3),
            enabled: r.get(4),
            retired: r.get(5),
        })
        .collect())
}

/// The names of these tenants, by id.
pub fn tenant_names(client: &mut impl GenericClient, ids: &[i64]) -> Result<std::collections::HashMap<i64, String>> {
    Ok(client.query("SELECT id, name FROM tenants WHERE id = ANY($1)", &[&ids])?.iter().map(|r| (r.get(0), r.get(1))).collect())
}
