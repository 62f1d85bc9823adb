//! Loading a provider's configuration (with its secret credentials) for the adapters.

use crate::db::routing::tenant_id;
use crate::db::GenericClient;
use crate::domain::backoff::ScheduleOverride;
use crate::error::{Error, Result};
use crate::provider::HttpSettings;
use crate::provider::{ProviderConfig, ProviderKind};
use postgres::Row;
use std::time::Duration;

const SELECT: &str = "SELECT p.id, p.enabled, p.name, p.kind, p.base_url, p.credentials, t.name,
                             p.schedule_first_check_ms, p.schedule_backoff_base_ms, p.schedule_backoff_max_ms,
                             p.schedule_max_checks, p.schedule_give_up_after_ms, p.rate_limit_calls, p.rate_limit_window_ms
                        FROM providers p JOIN tenants t ON t.id = p.tenant_id";

/// The columns of a provider's own check schedule, in the order [`ScheduleColumns::read`] reads them.
pub const SCHEDULE_COLUMNS: &str =
    "schedule_first_check_ms, schedule_backoff_base_ms, schedule_backoff_max_ms, schedule_max_checks, schedule_give_up_after_ms";

/// A provider's own check schedule as stored: milliseconds, NULL where the global value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleColumns {
    pub first_check_ms: Option<i64>,
    pub backoff_base_ms: Option<i64>,
    pub backoff_max_ms: Option<i64>,
    pub max_checks: Option<i32>,
    pub give_up_after_ms: Option<i64>,
}

impl ScheduleColumns {
    pub fn of(s: &ScheduleOverride) -> ScheduleColumns {
        // Bounded by `apply` (and the columns' CHECKs) to 30 days: milliseconds fit easily.
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(i64::MAX as u128) as i64);
        ScheduleColumns {
            first_check_ms: ms(s.first_check),
            backoff_base_ms: ms(s.backoff_base),
            backoff_max_ms: ms(s.backoff_max),
            max_checks: s.max_checks.map(|n| n.min(i32::MAX as u32) as i32),
            give_up_after_ms: ms(s.give_up_after),
        }
    }

    /// Read the five columns starting at `first` (in [`SCHEDULE_COLUMNS`] order).
    pub fn read(r: &Row, first: usize) -> ScheduleColumns {
        ScheduleColumns {
            first_check_ms: r.get(first),
            backoff_base_ms: r.get(first + 1),
            backoff_max_ms: r.get(first + 2),
            max_checks: r.get(first + 3),
            give_up_after_ms: r.get(first + 4),
        }
    }

    pub fn schedule(&self) -> ScheduleOverride {
        let d = |ms: Option<i64>| ms.map(|ms| Duration::from_millis(ms.max(0) as u64));
        ScheduleOverride {
            first_check: d(self.first_check_ms),
            backoff_base: d(self.backoff_base_ms),
            backoff_max: d(self.backoff_max_ms),
            max_checks: self.max_checks.map(|n| n.max(0) as u32),
            give_up_after: d(self.give_up_after_ms),
        }
    }
}

fn config_from_row(r: &Row, http: HttpSettings) -> Result<ProviderConfig> {
    let kind: String = r.get(3);
    Ok(ProviderConfig {
        name: r.get(2),
        // The CHECK constraint keeps kind to known words; anything else is a damaged row.
        kind: ProviderKind::parse(&kind).map_err(Error::internal)?,
        base_url: r.get(4),
        // Resolved now (a reference to a variable or file of this host); one that does not
        // resolve stays a reference, and building the adapter says why.
        credentials: {
            let stored: serde_json::Value = r.get(5);
            crate::secret::resolve(&stored).unwrap_or(stored)
        },
        http,
        gate: crate::db::pace::gate(r.get(0), rate_limit(r)?),
    })
}

/// A provider row's `rate_limit_calls` / `rate_limit_window_ms`, when it has a limit.
pub(crate) fn rate_limit(r: &Row) -> Result<Option<crate::domain::pace::RateLimit>> {
    let calls: Option<i32> = r.try_get("rate_limit_calls")?;
    let window_ms: Option<i32> = r.try_get("rate_limit_window_ms")?;
    Ok(calls
        .zip(window_ms)
        .map(|(c, w)| crate::domain::pace::RateLimit { calls: c.max(1) as u32, per: Duration::from_millis(w.max(1) as u64) }))
}

/// The provider named `name` (in `tenant`, when given): (id, enabled, config). A name used by
/// several tenants needs `--tenant`; an unknown name is not-found with a hint.
pub fn load_provider_config(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    name: &str,
    http: HttpSettings,
) -> Result<(i64, bool, ProviderConfig)> {
    let sql = format!("{SELECT} WHERE p.name = $1 AND ($2::text IS NULL OR t.name = $2) ORDER BY t.name");
    let rows = client.query(sql.as_str(), &[&name, &tenant])?;
    match rows.as_slice() {
        [r] => Ok((r.get(0), r.get(1), config_from_row(r, http)?)),
        [] => {
            if let Some(t) = tenant {
                // Say which of the two is missing.
                tenant_id(client, t)?;
                return Err(Error::not_found(format!("tenant '{t}' has no provider named '{name}'"))
                    .with_hint("list providers with `orderctl provider list --tenant TENANT`"));
            }
            Err(Error::not_found(format!("no provider is named '{name}'"))
                .with_hint("list providers with `orderctl provider list`"))
        }
        many => {
            let tenants: Vec<String> = many.iter().map(|r| r.get::<_, String>(6)).collect();
            Err(Error::usage(format!("provider '{name}' exists in several tenants ({}); say which one", tenants.join(", ")))
                .with_hint(format!("add --tenant {}", tenants[0])))
        }
    }
}

/// The provider with this id (for orders, which store the provider id): (enabled, config, its
/// own check schedule).
pub fn load_provider_config_by_id(
    client: &mut impl GenericClient,
    id: i64,
    http: HttpSettings,
) -> Result<(bool, ProviderConfig, ScheduleOverride, String)> {
    let sql = format!("{SELECT} WHERE p.id = $1");
    let row =
        client.query_opt(sql.as_str(), &[&id])?.ok_or_else(|| Error::not_found(format!("provider id {id} does not exist")))?;
    Ok((row.get(1), config_from_row(&row, http)?, ScheduleColumns::read(&row, 7).schedule(), row.get(6)))
}

/// How long after the latest placement of a reference whose outcome is unknown this provider may
/// still record it (`reconcile_for` in the setup file; 10 minutes by default).
pub fn reconcile_for(client: &mut impl GenericClient, id: i64) -> Result<Duration> {
    let row = client
        .query_opt("SELECT reconcile_for_ms FROM providers WHERE id = $1", &[&id])?
        .ok_or_else(|| Error::not_found(format!("provider id {id} does not exist")))?;
    Ok(Duration::from_millis(row.get::<_, i64>(0).max(0) as u64))
}

/// A provider's own check schedule.
pub fn schedule_of(client: &mut impl GenericClient, id: i64) -> Result<ScheduleOverride> {
    let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM providers WHERE id = $1");
    let row = client.query_opt(&sql, &[&id])?.ok_or_else(|| Error::not_found(format!("provider id {id} does not exist")))?;
    Ok(ScheduleColumns::read(&row, 0).schedule())
}

/// The providers whose lanes a daemon runs (of one tenant, or all): every enabled provider,
/// and any other that still has work scheduled.
///
/// Asked several times a second (the supervisor, the prober), so a disabled provider's work is
/// looked up with one probe of each partial due index (scalar subqueries, which Postgres
/// cannot turn into a hashed scan of all of `orders` the way it did `EXISTS` here). The
/// `EXISTS` form was planned with a sequential scan of `orders` as its hashed alternative: never
/// run while every provider is enabled, but its estimated cost grew with the history until it
/// crossed `jit_above_cost`, and each call then spent 200-450 ms compiling (measured with 400k
/// orders: a third of a core, rising with the table).
pub fn lane_ids(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<i64>> {
    let work_in = |placing: bool| {
        format!(
            "(SELECT true FROM orders o WHERE o.lane = p.id AND o.next_check_at IS NOT NULL AND {} LIMIT 1)",
            crate::db::claims::due_kind("o.", placing)
        )
    };
    let sql = format!(
        "SELECT p.id FROM providers p
          WHERE ($1::bigint IS NULL OR p.tenant_id = $1) AND (p.enabled OR {} OR {})
          ORDER BY p.id",
        work_in(true),
        work_in(false)
    );
    Ok(client.query(&sql, &[&tenant])?.iter().map(|r| r.get(0)).collect())
}

/// (tenant, provider, whether its credentials fail to resolve on this host) for every provider
/// (of `tenant`, when given). Values are resolved and dropped, never returned.
pub fn credential_states(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<(String, String, bool)>> {
    let rows = client.query(
        "SELECT t.name, p.name, p.credentials FROM providers p JOIN tenants t ON t.id = p.tenant_id
          WHERE $1::bigint IS NULL OR p.tenant_id = $1 ORDER BY t.name, p.name",
        &[&tenant],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), crate::secret::resolve(&r.get(2)).is_err())).collect())
}
