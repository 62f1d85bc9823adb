//! Route: the routing lane's work (no HTTP). A new order goes to its provider's lane, gets codes
//! from our stock, is forwarded to another tenant (internal routing), or waits for an operator;
//! routing that cannot be followed flags it.

use crate::db::claims::DueRow;
use crate::db::routing::{self as routing_db, PackageRouting};
use crate::db::transitions::Write;
use crate::db::GenericClient;
use crate::domain::lifecycle::{self, work_for, Attention, Work};
use crate::domain::routing::{route, RouteDecision, RoutingProblem, RoutingView};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// An operator's choice of provider, overriding routing.
#[derive(Debug, Clone)]
pub struct Override {
    pub provider_id: i64,
    pub name: String,
}

/// Routing of packages, loaded once per batch.
#[derive(Default)]
pub struct Routings(HashMap<i64, (PackageRouting, RoutingView, String)>);

impl Routings {
    fn get(&mut self, tx: &mut impl GenericClient, package_id: i64) -> Result<&(PackageRouting, RoutingView, String)> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.0.entry(package_id) {
            let routing = routing_db::package_routing(tx, package_id)?;
            let (_, view) = routing_db::routing_views(tx, None, Some(package_id))?
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal(format!("package {package_id} vanished while routing an order")))?;
            let name = view.package.clone();
            e.insert((routing, view, name));
        }
        Ok(&self.0[&package_id])
    }
}

/// Decide, for locked rows of the routing lane, and write it (in the caller's transaction).
/// `operator`: an operator dispatches by hand (manual-mode packages are sent too), possibly to
/// a provider of their choosing. An order whose routing fails (a constraint, text the database
/// refuses, routing that cannot be followed) is flagged with the reason; the others are routed.
pub fn route_rows(tx: &mut impl GenericClient, rows: &[DueRow], operator: bool, chosen: Option<&Override>) -> Result<Vec<Write>> {
    super::isolate::per_order(tx, rows.to_vec(), "routing", |sp, rows| route_batch(sp, &rows, operator, chosen))
}

fn route_batch(tx: &mut impl GenericClient, rows: &[DueRow], operator: bool, chosen: Option<&Override>) -> Result<Vec<Write>> {
    let mut routings = Routings::default();
    let mut writes = Vec::new();
    for row in rows {
        let t = match work_for(&row.facts) {
            Work::Route => decide(tx, &mut routings, row, operator, chosen)?,
            Work::Decide(t) => *t,
            // Provider work that ended up in the routing lane (a row edited by hand): it belongs
            // in its provider's lane.
            Work::Place { .. } | Work::Check { .. } => match row.facts.provider_id {
                Some(p) => lifecycle::Transition { lane: Some(p), schedule: lifecycle::Schedule::Now, ..Default::default() },
                None => lifecycle::Transition { schedule: lifecycle::Schedule::Off, ..Default::default() },
            },
        };
        writes.push(super::claim::write(row, t));
    }
    crate::db::transitions::apply_live(tx, &writes)?;
    Ok(writes)
}

fn decide(
    tx: &mut impl GenericClient,
    routings: &mut Routings,
    row: &DueRow,
    operator: bool,
    chosen: Option<&Override>,
) -> Result<lifecycle::Transition> {
    let f = &row.facts;
    if let Some(o) = chosen {
        return Ok(lifecycle::routed_to_provider(f, o.provider_id, &o.name, "operator's choice of provider"));
    }
    let (routing, view, package) = routings.get(tx, row.package_id)?.clone();
    Ok(match route(&view, operator) {
        RouteDecision::External { primary } => {
            let id = routing.primary_provider_id.ok_or_else(|| Error::internal("external routing without a primary id"))?;
            lifecycle::routed_to_provider(f, id, &primary, &format!("{} → external", view.mode))
        }
        RouteDecision::Manual => lifecycle::waiting_for_operator(f, &package),
        RouteDecision::Forward { tenant } => {
            let up = routing.upstream.ok_or_else(|| Error::internal("internal routing without its upstream ids"))?;
            // The upstream order and this order's move to `sent` commit together, or not at all.
            match crate::db::forwarding::create_upstream(tx, row, &up)? {
                Ok(created) => lifecycle::forwarded(
                    f,
                    created.id,
                    lifecycle::UpstreamOrder { tenant: &created.tenant, number: created.number },
                ),
                Err(why) => lifecycle::forward_refused(f, &tenant, &why),
            }
        }
        RouteDecision::Codes { group } => {
            let group_id = routing.code_group_id.ok_or_else(|| Error::internal("codes routing without a code group id"))?;
            match crate::db::codes::take(tx, row.id, group_id, row.quantity)? {
                Some(codes) => lifecycle::delivered_from_stock(f, crate::db::codes::pin(&codes), codes.len(), &group),
                None => lifecycle::config_stop(
                    f,
                    Attention::CodeStockEmpty,
                    &format!(
                        "code group {group} has fewer than {} available code(s); add codes to it, then `orderctl dispatch {}`",
                        row.quantity, f.number
                    ),
                    None,
                ),
            }
        }
        RouteDecision::Stop(problem) => {
            let attention = match problem {
                RoutingProblem::EmptyCodeGroup { .. } => Attention::CodeStockEmpty,
                RoutingProblem::PrimaryDisabled { .. } => Attention::ProviderDisabled,
                RoutingProblem::MissingMapping { .. } => Attention::NoMapping,
                _ => Attention::Routing,
            };
            let message = match problem {
                RoutingProblem::AutoWithManualProviderType { .. } | RoutingProblem::ExternalWithoutPrimary => format!(
                    "routing for package {package} is auto but has no provider ({}): {}",
                    problem.problem(),
                    problem.fix()
                ),
                _ => format!("routing for package {package} cannot be followed: {}; {}", problem.problem(), problem.fix()),
            };
            lifecycle::config_stop(f, attention, &message, None)
        }
    })
}
