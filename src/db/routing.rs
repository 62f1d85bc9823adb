//! Loading package routing with everything it points at, for `routing check`, `dispatch` and
//! `inspect`.

use crate::db::GenericClient;
use crate::domain::lifecycle::states::{CodeState, PlacementState};
use crate::domain::routing::{Forwarding, RoutedProvider, RoutingView, UpstreamRoute};
use crate::error::{Error, Result};

/// Each package's routing, with what it points at. Every lookup is a subquery by primary key
/// rather than a join: the planner then has two relations to order instead of ten, which took
/// it 2-4 ms per call (more in a new session), for `inspect` and `dispatch` on every order.
fn routing_views_sql() -> String {
    format!(
        "
    SELECT t.name, pk.name, pk.routing_mode, pk.provider_type,
           (SELECT p.name FROM providers p WHERE p.id = pk.primary_provider_id),
           (SELECT p.enabled FROM providers p WHERE p.id = pk.primary_provider_id),
           EXISTS (SELECT 1 FROM package_mappings m WHERE m.package_id = pk.id AND m.provider_id = pk.primary_provider_id),
           (SELECT p.name FROM providers p WHERE p.id = pk.fallback_provider_id),
           (SELECT p.enabled FROM providers p WHERE p.id = pk.fallback_provider_id),
           EXISTS (SELECT 1 FROM package_mappings m WHERE m.package_id = pk.id AND m.provider_id = pk.fallback_provider_id),
           (SELECT g.name FROM code_groups g WHERE g.id = pk.code_group_id),
           (SELECT count(*) FROM code_items ci WHERE ci.code_group_id = pk.code_group_id AND ci.state = {code_available}),
           pk.id,
           (SELECT ut.name FROM tenants ut WHERE ut.id = pk.upstream_tenant_id),
           (SELECT up.name FROM packages up WHERE up.id = pk.upstream_package_id),
           (SELECT ua.name FROM users ua WHERE ua.id = pk.upstream_user_id),
           (SELECT up.enabled FROM packages up WHERE up.id = pk.upstream_package_id)
      FROM packages pk
      JOIN tenants t ON t.id = pk.tenant_id
     WHERE ($1::text IS NULL OR t.name = $1)
       AND ($2::bigint IS NULL OR pk.id = $2)
       AND ($3::bigint[] IS NULL OR pk.id = ANY($3))
       AND (NOT $4 OR pk.retired_at IS NULL)
     ORDER BY t.name, pk.name",
        code_available = CodeState::Available.sql()
    )
}

/// Routing of every package (optionally of one tenant, or one package), with the state of the
/// providers, mappings and code stock it points at. Returns (package id, view).
pub fn routing_views(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    package_id: Option<i64>,
) -> Result<Vec<(i64, RoutingView)>> {
    views(client, tenant, package_id, None, false)
}

/// Routing of every package that can still be ordered (not retired by `apply --prune`), for the
/// checks: a retired package routing to its retired provider is history, not a problem.
pub fn live_routing_views(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<(i64, RoutingView)>> {
    views(client, tenant, None, None, true)
}

/// The routing views of these packages, in one query.
pub fn routing_views_of(client: &mut impl GenericClient, packages: &[i64]) -> Result<Vec<(i64, RoutingView)>> {
    if packages.is_empty() {
        return Ok(vec![]);
    }
    views(client, None, None, Some(packages), false)
}

fn views(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    package_id: Option<i64>,
    packages: Option<&[i64]>,
    live_only: bool,
) -> Result<Vec<(i64, RoutingView)>> {
    let rows = client.query(&routing_views_sql(), &[&tenant, &package_id, &packages, &live_only])?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mode: String = r.get(2);
        let provider_type: String = r.get(3);
        let provider = |name: Option<String>, enabled: Option<bool>, mapped: bool| {
            name.map(|name| RoutedProvider { name, enabled: enabled.unwrap_or(false), has_mapping: mapped })
        };
        let view = RoutingView {
            tenant: r.get(0),
            package: r.get(1),
            // The CHECK constraints keep these to known words; anything else is a damaged row.
            mode: mode.parse().map_err(Error::internal)?,
            provider_type: provider_type.parse().map_err(Error::internal)?,
            primary: provider(r.get(4), r.get(5), r.get(6)),
            fallback: provider(r.get(7), r.get(8), r.get(9)),
            code_group: r.get::<_, Option<String>>(10).map(|g| (g, r.get::<_, i64>(11))),
            upstream: match (r.get::<_, Option<String>>(13), r.get::<_, Option<String>>(14), r.get::<_, Option<String>>(15)) {
                (Some(tenant), Some(package), Some(account)) => Some(UpstreamRoute {
                    tenant,
                    package,
                    account,
                    package_enabled: r.get::<_, Option<bool>>(16).unwrap_or(false),
                }),
                _ => None,
            },
        };
        out.push((r.get(12), view));
    }
    Ok(out)
}

/// The id of a tenant by name, or a not-found error that says how to list them.
pub fn tenant_id(client: &mut impl GenericClient, name: &str) -> Result<i64> {
    client.query_opt("SELECT id FROM tenants WHERE name = $1", &[&name])?.map(|r| r.get(0)).ok_or_else(|| {
        Error::not_found(format!("tenant '{name}' does not exist")).with_hint("list tenants with `orderctl tenant list`")
    })
}

/// The routing columns of one package, with ids, for the dispatch pipeline.
#[derive(Debug, Clone)]
pub struct PackageRouting {
    pub mode: String,
    pub provider_type: String,
    pub primary_provider_id: Option<i64>,
    pub fallback_provider_id: Option<i64>,
    pub code_group_id: Option<i64>,
    /// Internal routing: the upstream tenant, its package and the account that pays.
    pub upstream: Option<Upstream>,
}

/// Where an internal routing forwards, by id.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub tenant_id: i64,
    pub package_id: i64,
    pub user_id: i64,
}

pub fn package_routing(client: &mut impl GenericClient, package_id: i64) -> Result<PackageRouting> {
    let r = client.query_one(
        "SELECT routing_mode, provider_type, primary_provider_id, fallback_provider_id, code_group_id,
                upstream_tenant_id, upstream_package_id, upstream_user_id
           FROM packages WHERE id = $1",
        &[&package_id],
    )?;
    Ok(PackageRouting {
        mode: r.get(0),
        provider_type: r.get(1),
        primary_provider_id: r.get(2),
        fallback_provider_id: r.get(3),
        code_group_id: r.get(4),
        upstream: match (r.get(5), r.get(6), r.get(7)) {
            (Some(tenant_id), Some(package_id), Some(user_id)) => Some(Upstream { tenant_id, package_id, user_id }),
            _ => None,
        },
    })
}

/// The forwarding of every package of the database that forwards.
pub fn forwarding(client: &mut impl GenericClient) -> Result<Forwarding> {
    Ok(client
        .query(
            "SELECT t.name, pk.name, ut.name, up.name
               FROM packages pk JOIN tenants t ON t.id = pk.tenant_id
               JOIN packages up ON up.id = pk.upstream_package_id JOIN tenants ut ON ut.id = up.tenant_id
              WHERE pk.provider_type = 'internal'",
            &[],
        )?
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect())
}

/// A provider of a tenant by name: (id, enabled).
/// A provider of a tenant by name: its id, whether it is enabled and whether it was retired.
pub fn provider_by_name(client: &mut impl GenericClient, tenant_id: i64, name: &str) -> Result<(i64, bool, bool)> {
    client
        .query_opt(
            "SELECT id, enabled, retired_at IS NOT NULL AS retired FROM providers WHERE tenant_id = $1 AND name = $2",
            &[&tenant_id, &name],
        )?
        .map(|r| (r.get("id"), r.get("enabled"), r.get("retired")))
        .ok_or_else(|| {
            Error::not_found(format!("provider '{name}' does not exist in this order's tenant"))
                .with_hint("list providers with `orderctl provider list`")
        })
}

/// The fallback for an order that provider `current` cannot take: its package's fallback
/// provider, unless that is `current` itself or has already refused this order. So a chain of
/// fallbacks always ends.
pub fn fallback_for(
    client: &mut impl GenericClient,
    order: &crate::db::claims::DueRow,
    current: i64,
) -> Result<Option<crate::domain::lifecycle::Fallback>> {
    Ok(client
        .query_opt(
            &format!(
                "SELECT pr.id, pr.name FROM packages pk JOIN providers pr ON pr.id = pk.fallback_provider_id
              WHERE pk.id = $1 AND pk.provider_type = 'external' AND pr.id <> $3
                AND NOT EXISTS (SELECT 1 FROM placements p
                                 WHERE p.order_id = $2 AND p.order_created_at = $4 AND p.provider_id = pr.id
                                   AND p.outcome = {placement_rejected})",
                placement_rejected = PlacementState::Rejected.sql()
            ),
            &[&order.package_id, &order.id, &current, &order.created_at],
        )?
        .map(|r| crate::domain::lifecycle::Fallback { provider_id: r.get(0), name: r.get(1) }))
}
