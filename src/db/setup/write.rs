//! The writes of an apply: every object of the file, upserted by (tenant, name) after
//! comparing, so a row that already matches is not touched (see the module doc of
//! `db::setup` for the balance rule).

use super::{ApplySummary, BalancePosting, Change, Changes, BALANCE_RULE};
use crate::db::Transaction;
use crate::domain::setup::{
    CodeGroupSetup, PackageSetup, ProviderSetup, Setup, TenantSetup, UpstreamSetup, UserSetup, WebhookSetup,
};
use crate::error::{Error, Result};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

pub(super) fn write(tx: &mut Transaction, setup: &Setup) -> Result<ApplySummary> {
    let mut s = ApplySummary { balance_rule: BALANCE_RULE, ..ApplySummary::default() };
    let mut tenant_ids = BTreeMap::new();
    for t in &setup.tenants {
        let (tenant_id, change) = write_tenant(tx, t)?;
        s.tenants.record(change, t.name.clone());
        let named = |n: &str| format!("{}/{n}", t.name);
        for u in &t.users {
            let change = write_user(tx, &t.name, tenant_id, u, &mut s.ledger)?;
            s.users.record(change, named(&u.name));
        }
        for p in &t.providers {
            let change = write_provider(tx, tenant_id, p)?;
            let change = write_reconcile_for(tx, tenant_id, p, change)?;
            let change = write_currency_and_rate_limit(tx, tenant_id, p, change)?;
            let change = write_health_settings(tx, tenant_id, p, change)?;
            s.providers.record(change, named(&p.name));
        }
        for g in &t.code_groups {
            let (change, added) = write_code_group(tx, tenant_id, g)?;
            s.codes_added += added;
            s.code_groups.record(change, named(&g.name));
        }
        let mut products: Vec<&str> = Vec::new();
        for p in &t.packages {
            if !products.contains(&p.product.as_str()) {
                products.push(&p.product);
            }
        }
        for product in products {
            s.products.record(write_product(tx, tenant_id, product)?, named(product));
        }
        tenant_ids.insert(t.name.as_str(), tenant_id);
    }
    // Packages last, every tenant's rows written: a package may forward to a package of a tenant
    // further down the file.
    let mut ids = BTreeMap::new();
    for (tenant, tenant_id) in &tenant_ids {
        ids.insert(*tenant, TenantIds::load(tx, *tenant_id)?);
    }
    for (t, p) in packages_in_write_order(setup) {
        let tenant_id = tenant_ids[t.name.as_str()];
        s.packages.record(write_package(tx, tenant_id, &ids[t.name.as_str()], p)?, format!("{}/{}", t.name, p.name));
    }
    // Each tenant's webhooks (named by their url within the tenant).
    for t in &setup.tenants {
        let tenant_id = tenant_ids[t.name.as_str()];
        for w in &t.webhooks {
            s.webhooks.record(write_webhook(tx, tenant_id, w)?, format!("{}/{}", t.name, w.url));
        }
    }
    s.exchange_rates = write_exchange_rates(tx, setup)?;
    s.changes = [&s.tenants, &s.users, &s.providers, &s.code_groups, &s.products, &s.packages, &s.webhooks, &s.exchange_rates]
        .iter()
        .map(|c| c.changed())
        .sum();
    Ok(s)
}

fn write_tenant(tx: &mut Transaction, t: &TenantSetup) -> Result<(i64, Change)> {
    if let Some(r) =
        tx.query_opt("SELECT id, currency IS NOT DISTINCT FROM $2 AS same FROM tenants WHERE name = $1", &[&t.name, &t.currency])?
    {
        let id: i64 = r.get("id");
        if r.get("same") {
            return Ok((id, Change::Unchanged));
        }
        tx.execute("UPDATE tenants SET currency = $2 WHERE id = $1", &[&id, &t.currency])?;
        return Ok((id, Change::Updated));
    }
    let id = tx.query_one("INSERT INTO tenants (name, currency) VALUES ($1, $2) RETURNING id", &[&t.name, &t.currency])?.get(0);
    Ok((id, Change::Created))
}

/// The file's exchange rates, each upserted (a retired pair named again is revived); the plan
/// retires the pairs it no longer names. Returns the pairs created or changed.
pub(super) fn write_exchange_rates(tx: &mut Transaction, setup: &Setup) -> Result<Changes> {
    let mut out = Changes::default();
    for (pair, rate) in setup.exchange_rates.iter().flatten() {
        let row = tx.query_opt(
            "INSERT INTO exchange_rates AS r (from_currency, to_currency, rate) VALUES ($1, $2, $3)
             ON CONFLICT (from_currency, to_currency) DO UPDATE SET rate = excluded.rate, declared_at = now(), retired_at = NULL
              WHERE r.rate <> excluded.rate OR r.retired_at IS NOT NULL
             RETURNING (xmax = 0) AS created",
            &[&pair.from, &pair.to, rate],
        )?;
        let change = match row {
            None => Change::Unchanged,
            Some(r) if r.get("created") => Change::Created,
            Some(_) => Change::Updated,
        };
        out.record(change, pair.to_string());
    }
    Ok(out)
}

/// A user, with the balance rule of the module doc.
fn write_user(
    tx: &mut Transaction,
    tenant: &str,
    tenant_id: i64,
    u: &UserSetup,
    ledger: &mut Vec<BalancePosting>,
) -> Result<Change> {
    let current = tx.query_opt(
        "SELECT id, email, overdraft_limit, declared_balance, balance FROM users
          WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
        &[&tenant_id, &u.name],
    )?;
    let Some(r) = current else {
        let id: i64 = tx
            .query_one(
                "INSERT INTO users (tenant_id, name, email, balance, overdraft_limit, declared_balance)
                 VALUES ($1, $2, $3, $4, $5, $4) RETURNING id",
                &[&tenant_id, &u.name, &u.email, &u.balance, &u.overdraft_limit],
            )?
            .get(0);
        post_ledger(tx, tenant_id, id, "opening_balance", u.balance, "opening balance declared by the setup file")?;
        ledger.push(BalancePosting {
            tenant: tenant.into(),
            user: u.name.clone(),
            kind: "opening_balance",
            amount: u.balance,
            balance: u.balance,
        });
        return Ok(Change::Created);
    };
    let (id, email, overdraft, declared, balance): (i64, String, Decimal, Decimal, Decimal) =
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    let difference = u.balance - declared;
    if email == u.email && overdraft == u.overdraft_limit && difference.is_zero() {
        return Ok(Change::Unchanged);
    }
    let new_balance = balance + difference;
    if new_balance < -u.overdraft_limit {
        return Err(Error::refused(format!(
            "tenant {tenant}, user {}: declaring balance {:.2} (previously {declared:.2}) would take the balance from \
             {balance:.2} to {new_balance:.2}, below the overdraft limit of {:.2}; nothing was written",
            u.name, u.balance, u.overdraft_limit
        ))
        .with_hint("declare a higher balance or a higher overdraft_limit for this user, then apply again"));
    }
    tx.execute(
        "UPDATE users SET email = $2, overdraft_limit = $3, balance = balance + $4, declared_balance = $5 WHERE id = $1",
        &[&id, &u.email, &u.overdraft_limit, &difference, &u.balance],
    )?;
    if !difference.is_zero() {
        let note = format!("declared balance changed from {declared:.2} to {:.2} by the setup file", u.balance);
        post_ledger(tx, tenant_id, id, "adjustment", difference, &note)?;
        ledger.push(BalancePosting {
            tenant: tenant.into(),
            user: u.name.clone(),
            kind: "adjustment",
            amount: difference,
            balance: new_balance,
        });
    }
    Ok(Change::Updated)
}

fn post_ledger(tx: &mut Transaction, tenant_id: i64, user_id: i64, kind: &str, amount: Decimal, note: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO ledger (tenant_id, user_id, kind, amount, note) VALUES ($1, $2, $3, $4, $5)",
        &[&tenant_id, &user_id, &kind, &amount, &note],
    )?;
    Ok(())
}

/// A provider's currency and rate limit, written beside its other fields like its reconcile window.
fn write_currency_and_rate_limit(tx: &mut Transaction, tenant_id: i64, p: &ProviderSetup, change: Change) -> Result<Change> {
    let calls = p.rate_limit.map(|r| r.calls as i32);
    let window_ms = p.rate_limit.map(|r| r.per.as_millis() as i32);
    let n = tx.execute(
        "UPDATE providers SET currency = $3, rate_limit_calls = $4, rate_limit_window_ms = $5
          WHERE tenant_id = $1 AND name = $2
            AND (currency, rate_limit_calls, rate_limit_window_ms) IS DISTINCT FROM ($3, $4, $5)",
        &[&tenant_id, &p.name, &p.currency, &calls, &window_ms],
    )?;
    Ok(match change {
        Change::Unchanged if n > 0 => Change::Updated,
        other => other,
    })
}

/// A provider's reconcile window, written beside its other fields: an unchanged provider whose
/// window changed is updated.
fn write_reconcile_for(tx: &mut Transaction, tenant_id: i64, p: &ProviderSetup, change: Change) -> Result<Change> {
    let ms = p.reconcile_for.as_millis().min(i64::MAX as u128) as i64;
    let n = tx.execute(
        "UPDATE providers SET reconcile_for_ms = $3 WHERE tenant_id = $1 AND name = $2 AND reconcile_for_ms <> $3",
        &[&tenant_id, &p.name, &ms],
    )?;
    Ok(match change {
        Change::Unchanged if n > 0 => Change::Updated,
        other => other,
    })
}

/// A provider's health settings (`low_balance`, `hold_for`, `breaker`, `probe_every`).
fn write_health_settings(tx: &mut Transaction, tenant_id: i64, p: &ProviderSetup, change: Change) -> Result<Change> {
    let n = tx.execute(
        "UPDATE providers SET health_settings = $3 WHERE tenant_id = $1 AND name = $2 AND health_settings <> $3",
        &[&tenant_id, &p.name, &p.health.to_json()],
    )?;
    Ok(match change {
        Change::Unchanged if n > 0 => Change::Updated,
        other => other,
    })
}

fn write_provider(tx: &mut Transaction, tenant_id: i64, p: &ProviderSetup) -> Result<Change> {
    let current = tx.query_opt(
        &format!(
            "SELECT id, kind, base_url, credentials, enabled, max_in_flight, {} FROM providers
              WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            crate::db::providers::SCHEDULE_COLUMNS
        ),
        &[&tenant_id, &p.name],
    )?;
    let kind = p.kind.as_str();
    let s = crate::db::providers::ScheduleColumns::of(&p.schedule);
    if let Some(r) = &current {
        let same = r.get::<_, String>(1) == kind
            && r.get::<_, String>(2) == p.base_url
            && r.get::<_, Value>(3) == p.credentials
            && r.get::<_, bool>(4) == p.enabled
            && r.get::<_, i32>(5) == p.max_in_flight
            && crate::db::providers::ScheduleColumns::read(r, 6) == s;
        if same {
            return Ok(Change::Unchanged);
        }
    }
    // One statement creates or updates (the row, if any, is locked above).
    tx.execute(
        "INSERT INTO providers (tenant_id, name, kind, base_url, credentials, enabled, max_in_flight,
                                schedule_first_check_ms, schedule_backoff_base_ms, schedule_backoff_max_ms,
                                schedule_max_checks, schedule_give_up_after_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (tenant_id, name) DO UPDATE
            SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url, credentials = EXCLUDED.credentials,
                enabled = EXCLUDED.enabled, max_in_flight = EXCLUDED.max_in_flight,
                schedule_first_check_ms = EXCLUDED.schedule_first_check_ms,
                schedule_backoff_base_ms = EXCLUDED.schedule_backoff_base_ms,
                schedule_backoff_max_ms = EXCLUDED.schedule_backoff_max_ms,
                schedule_max_checks = EXCLUDED.schedule_max_checks,
                schedule_give_up_after_ms = EXCLUDED.schedule_give_up_after_ms",
        &[
            &tenant_id,
            &p.name,
            &kind,
            &p.base_url,
            &p.credentials,
            &p.enabled,
            &p.max_in_flight,
            &s.first_check_ms,
            &s.backoff_base_ms,
            &s.backoff_max_ms,
            &s.max_checks,
            &s.give_up_after_ms,
        ],
    )?;
    Ok(if current.is_some() { Change::Updated } else { Change::Created })
}

/// A webhook, by (tenant, url). One that is no longer declared is retired by `--prune` (see
/// `retire`); `"enabled": false` pauses it instead (its pending deliveries wait). A changed secret keeps its predecessor signing too for [`SECRET_OVERLAP`] (rotation).
fn write_webhook(tx: &mut Transaction, tenant_id: i64, w: &WebhookSetup) -> Result<Change> {
    // `{"stored": true}` was replaced by the stored secret before planning.
    let secret = w.secret.as_ref().ok_or_else(|| Error::internal(format!("webhook {}: no secret to write", w.url)))?;
    let events: Vec<&str> = w.events.iter().map(|e| e.as_str()).collect();
    let current = tx.query_opt(
        "SELECT id, secret, events, enabled FROM webhooks WHERE tenant_id = $1 AND url = $2 FOR UPDATE",
        &[&tenant_id, &w.url],
    )?;
    let Some(r) = current else {
        let id: i64 = tx
            .query_one(
                "INSERT INTO webhooks (tenant_id, url, secret, events, enabled) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&tenant_id, &w.url, &secret, &events, &w.enabled],
            )?
            .get(0);
        write_webhook_delivery(tx, id, w)?;
        return Ok(Change::Created);
    };
    let id: i64 = r.get(0);
    let same =
        r.get::<_, serde_json::Value>(1) == *secret && r.get::<_, Vec<String>>(2) == events && r.get::<_, bool>(3) == w.enabled;
    let delivery_changed = write_webhook_delivery(tx, id, w)?;
    if same {
        return Ok(if delivery_changed { Change::Updated } else { Change::Unchanged });
    }
    tx.execute(
        "UPDATE webhooks SET events = $3, enabled = $4,
                previous_secret = CASE WHEN secret <> $2 THEN secret ELSE previous_secret END,
                previous_secret_until = CASE WHEN secret <> $2 THEN now() + make_interval(secs => $5::bigint) ELSE previous_secret_until END,
                secret = $2
          WHERE id = $1",
        &[&id, &secret, &events, &w.enabled, &(SECRET_OVERLAP.as_secs() as i64)],
    )?;
    Ok(Change::Updated)
}

/// How long a replaced secret keeps signing next to the new one.
pub const SECRET_OVERLAP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The delivery fields of a webhook (issue 22); whether they changed.
fn write_webhook_delivery(tx: &mut Transaction, id: i64, w: &WebhookSetup) -> Result<bool> {
    let d = &w.delivery;
    let horizon = d.retry_horizon.map(|h| h.as_millis() as i64);
    let n = tx.execute(
        "UPDATE webhooks SET allow_private_network = $2, allow_http = $3, retry_horizon_ms = $4
          WHERE id = $1 AND (allow_private_network, allow_http, retry_horizon_ms) IS DISTINCT FROM ($2, $3, $4)",
        &[&id, &d.access.allow_private_network, &d.access.allow_http, &horizon],
    )?;
    Ok(n > 0)
}

/// A code group and the codes it lacks. Existing codes keep their state, whatever it is.
fn write_code_group(tx: &mut Transaction, tenant_id: i64, g: &CodeGroupSetup) -> Result<(Change, u64)> {
    let (id, created): (i64, bool) =
        match tx.query_opt("SELECT id FROM code_groups WHERE tenant_id = $1 AND name = $2", &[&tenant_id, &g.name])? {
            Some(r) => (r.get(0), false),
            None => (
                tx.query_one("INSERT INTO code_groups (tenant_id, name) VALUES ($1, $2) RETURNING id", &[&tenant_id, &g.name])?
                    .get(0),
                true,
            ),
        };
    let added = tx.execute(
        "INSERT INTO code_items (code_group_id, code) SELECT $1, c FROM unnest($2::text[]) AS c
             ON CONFLICT (code_group_id, code) DO NOTHING",
        &[&id, &g.codes],
    )?;
    let change = match (created, added) {
        (true, _) => Change::Created,
        (false, 0) => Change::Unchanged,
        (false, _) => Change::Updated,
    };
    Ok((change, added))
}

fn write_product(tx: &mut Transaction, tenant_id: i64, name: &str) -> Result<Change> {
    let inserted = tx.execute(
        "INSERT INTO products (tenant_id, name) VALUES ($1, $2) ON CONFLICT (tenant_id, name) DO NOTHING",
        &[&tenant_id, &name],
    )?;
    Ok(if inserted == 1 { Change::Created } else { Change::Unchanged })
}

/// The file's packages in an order where each one's upstream package (if the file has it) is
/// written before it, so every package forwards to a row that exists. The forwarding of the
/// file has no cycle (validated), so every package finds its place.
fn packages_in_write_order(setup: &Setup) -> Vec<(&TenantSetup, &PackageSetup)> {
    let all: Vec<(&TenantSetup, &PackageSetup)> =
        setup.tenants.iter().flat_map(|t| t.packages.iter().map(move |p| (t, p))).collect();
    let mut written: std::collections::BTreeSet<(&str, &str)> = Default::default();
    let mut out = Vec::with_capacity(all.len());
    while out.len() < all.len() {
        let before = out.len();
        for &(t, p) in &all {
            if written.contains(&(t.name.as_str(), p.name.as_str())) {
                continue;
            }
            let ready = match &p.upstream {
                None => true,
                Some(u) => {
                    written.contains(&(u.tenant.as_str(), u.package.as_str()))
                        || !all.iter().any(|(ut, up)| ut.name == u.tenant && up.name == u.package)
                }
            };
            if ready {
                written.insert((t.name.as_str(), p.name.as_str()));
                out.push((t, p));
            }
        }
        if out.len() == before {
            // Unreachable after validation; write the rest as they come and let the database judge.
            out.extend(all.iter().filter(|(t, p)| !written.contains(&(t.name.as_str(), p.name.as_str()))).copied());
            break;
        }
    }
    out
}

/// Ids by name of what packages point at, once the tenant's other rows are written.
struct TenantIds {
    products: BTreeMap<String, i64>,
    providers: BTreeMap<String, i64>,
    code_groups: BTreeMap<String, i64>,
}

impl TenantIds {
    fn load(tx: &mut Transaction, tenant_id: i64) -> Result<TenantIds> {
        let mut by_name = |sql: &str| -> Result<BTreeMap<String, i64>> {
            Ok(tx.query(sql, &[&tenant_id])?.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        };
        Ok(TenantIds {
            products: by_name("SELECT name, id FROM products WHERE tenant_id = $1")?,
            providers: by_name("SELECT name, id FROM providers WHERE tenant_id = $1")?,
            code_groups: by_name("SELECT name, id FROM code_groups WHERE tenant_id = $1")?,
        })
    }

    /// Validation checked every reference; a miss here means the database changed under us.
    fn id(map: &BTreeMap<String, i64>, what: &str, name: &str) -> Result<i64> {
        map.get(name).copied().ok_or_else(|| Error::internal(format!("{what} {name} vanished while applying the setup file")))
    }

    fn optional(map: &BTreeMap<String, i64>, what: &str, name: &Option<String>) -> Result<Option<i64>> {
        name.as_deref().map(|n| Self::id(map, what, n)).transpose()
    }
}

/// The ids of a package's upstream: (tenant, package, account).
fn upstream_ids(tx: &mut Transaction, u: &UpstreamSetup) -> Result<(i64, i64, i64)> {
    let row = tx.query_opt(
        "SELECT t.id, p.id, u.id FROM tenants t
           JOIN packages p ON p.tenant_id = t.id AND p.name = $2
           JOIN users u ON u.tenant_id = t.id AND u.name = $3
          WHERE t.name = $1",
        &[&u.tenant, &u.package, &u.account],
    )?;
    row.map(|r| (r.get(0), r.get(1), r.get(2))).ok_or_else(|| {
        Error::internal(format!(
            "the upstream {}/{} (account {}) vanished while applying the setup file",
            u.tenant, u.package, u.account
        ))
    })
}

fn write_package(tx: &mut Transaction, tenant_id: i64, ids: &TenantIds, p: &PackageSetup) -> Result<Change> {
    let product_id = TenantIds::id(&ids.products, "product", &p.product)?;
    let upstream = p.upstream.as_ref().map(|u| upstream_ids(tx, u)).transpose()?;
    let (up_tenant, up_package, up_user) = (upstream.map(|u| u.0), upstream.map(|u| u.1), upstream.map(|u| u.2));
    let primary = TenantIds::optional(&ids.providers, "provider", &p.primary)?;
    let fallback = TenantIds::optional(&ids.providers, "provider", &p.fallback)?;
    let code_group = TenantIds::optional(&ids.code_groups, "code group", &p.code_group)?;
    let mut mappings = BTreeMap::new();
    for (provider, params) in &p.mappings {
        mappings.insert(TenantIds::id(&ids.providers, "provider", provider)?, params.clone());
    }
    let (mode, provider_type) = (p.mode.as_str(), p.provider_type.as_str());

    let current = tx.query_opt(
        "SELECT id, product_id, price, enabled, routing_mode, provider_type,
                primary_provider_id, fallback_provider_id, code_group_id,
                upstream_tenant_id, upstream_package_id, upstream_user_id
           FROM packages WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
        &[&tenant_id, &p.name],
    )?;
    let unchanged = current.as_ref().filter(|r| {
        r.get::<_, i64>(1) == product_id
            && r.get::<_, Decimal>(2) == p.price
            && r.get::<_, bool>(3) == p.enabled
            && r.get::<_, String>(4) == mode
            && r.get::<_, String>(5) == provider_type
            && r.get::<_, Option<i64>>(6) == primary
            && r.get::<_, Option<i64>>(7) == fallback
            && r.get::<_, Option<i64>>(8) == code_group
            && r.get::<_, Option<i64>>(9) == up_tenant
            && r.get::<_, Option<i64>>(10) == up_package
            && r.get::<_, Option<i64>>(11) == up_user
    });
    let (id, mut change) = match unchanged {
        Some(r) => (r.get::<_, i64>(0), Change::Unchanged),
        // One statement creates or updates (the row, if any, is locked above).
        None => {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO packages (tenant_id, product_id, name, price, enabled, routing_mode, provider_type,
                                           primary_provider_id, fallback_provider_id, code_group_id,
                                           upstream_tenant_id, upstream_package_id, upstream_user_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (tenant_id, name) DO UPDATE
                        SET product_id = EXCLUDED.product_id, price = EXCLUDED.price, enabled = EXCLUDED.enabled,
                            routing_mode = EXCLUDED.routing_mode, provider_type = EXCLUDED.provider_type,
                            primary_provider_id = EXCLUDED.primary_provider_id,
                            fallback_provider_id = EXCLUDED.fallback_provider_id, code_group_id = EXCLUDED.code_group_id,
                            upstream_tenant_id = EXCLUDED.upstream_tenant_id,
                            upstream_package_id = EXCLUDED.upstream_package_id, upstream_user_id = EXCLUDED.upstream_user_id
                     RETURNING id",
                    &[
                        &tenant_id,
                        &product_id,
                        &p.name,
                        &p.price,
                        &p.enabled,
                        &mode,
                        &provider_type,
                        &primary,
                        &fallback,
                        &code_group,
                        &up_tenant,
                        &up_package,
                        &up_user,
                    ],
                )?
                .get(0);
            (id, if current.is_some() { Change::Updated } else { Change::Created })
        }
    };

    let stored: BTreeMap<i64, Value> = tx
        .query("SELECT provider_id, params FROM package_mappings WHERE package_id = $1", &[&id])?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if stored != mappings {
        tx.execute("DELETE FROM package_mappings WHERE package_id = $1", &[&id])?;
        for (provider_id, params) in &mappings {
            tx.execute(
                "INSERT INTO package_mappings (package_id, provider_id, params) VALUES ($1, $2, $3)",
                &[&id, provider_id, params],
            )?;
        }
        if change == Change::Unchanged {
            change = Change::Updated;
        }
    }
    Ok(change)
}
