//! Loading a provider's configuration (with its secret credentials) for the adapters.

use crate::db::routing::tenant_id;
use crate::error::{Error, Result};
use crate::provider::HttpSettings;
use crate::provider::{ProviderConfig, ProviderKind};
use postgres::{GenericClient, Row};

const SELECT: &str = "SELECT p.id, p.enabled, p.name, p.kind, p.base_url, p.credentials, t.name
                        FROM providers p JOIN tenants t ON t.id = p.tenant_id";

fn config_from_row(r: &Row, http: HttpSettings) -> Result<ProviderConfig> {
    let kind: String = r.get(3);
    Ok(ProviderConfig {
        name: r.get(2),
        // The CHECK constraint keeps kind to known words; anything else is a damaged row.
        kind: ProviderKind::parse(&kind).map_err(Error::internal)?,
        base_url: r.get(4),
        credentials: r.get(5),
        http,
    })
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

/// The provider with this id (for orders, which store the provider id): (enabled, config).
pub fn load_provider_config_by_id(
    client: &mut impl GenericClient,
    id: i64,
    http: HttpSettings,
) -> Result<(bool, ProviderConfig)> {
    let sql = format!("{SELECT} WHERE p.id = $1");
    let row =
        client.query_opt(sql.as_str(), &[&id])?.ok_or_else(|| Error::not_found(format!("provider id {id} does not exist")))?;
    Ok((row.get(1), config_from_row(&row, http)?))
}

/// The providers whose lanes a daemon runs (of one tenant, or all): every enabled provider,
/// and any other that still has work scheduled.
pub fn lane_ids(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<i64>> {
    Ok(client
        .query(
            "SELECT p.id FROM providers p
              WHERE ($1::bigint IS NULL OR p.tenant_id = $1)
                AND (p.enabled OR EXISTS (SELECT 1 FROM orders o WHERE o.lane = p.id AND o.next_check_at IS NOT NULL))
              ORDER BY p.id",
            &[&tenant],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
