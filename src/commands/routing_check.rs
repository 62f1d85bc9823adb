//! `orderctl routing check`: every routing problem in the database, wherever it came from
//! (apply, raw SQL, older data, constraints dropped by hand). One line per problem with its fix;
//! exit 0 when clean, 8 (needs action) when anything was found, after printing the findings.

use crate::db::routing;
use crate::domain::routing::{check_routing, forwarding_cycles};
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use serde::Serialize;

/// One finding, as `routing check --output json` prints it.
#[derive(Debug, Serialize)]
struct Finding {
    tenant: String,
    package: String,
    /// `RoutingProblem::code`, stable for scripts.
    code: &'static str,
    problem: String,
    fix: String,
}

pub fn run(s: &Settings) -> Result<()> {
    let mut client = super::listings::connect_scoped(s)?;
    let views = routing::live_routing_views(&mut client, s.tenant.as_deref())?;
    let findings: Vec<Finding> = views
        .iter()
        .flat_map(|(_, v)| {
            check_routing(v).into_iter().map(move |p| Finding {
                tenant: v.tenant.clone(),
                package: v.package.clone(),
                code: p.code(),
                problem: p.problem(),
                fix: p.fix(),
            })
        })
        .collect();
    // Forwarding cycles span tenants: judged on the whole database, reported at this scope's packages.
    let mut findings = findings;
    for cycle in forwarding_cycles(&routing::forwarding(&mut client)?) {
        let (tenant, package) = cycle.start().clone();
        if s.tenant.as_deref().is_none_or(|t| t == tenant) {
            let p = cycle.problem;
            findings.push(Finding { tenant, package, code: p.code(), problem: p.problem(), fix: p.fix() });
        }
    }
    // Selling below the provider's cost is the operator's call (a promotion), so a warning only.
    let routing_problems = findings.len();
    let (below, no_rate) = crate::db::money::below_cost(&mut client, s.tenant.as_deref())?;
    for b in below {
        findings.push(Finding {
            problem: b.problem(),
            fix: "raise the package's price in the setup file, or route it to a provider that charges less".into(),
            tenant: b.tenant,
            package: b.package,
            code: "price_below_cost",
        });
    }
    for n in no_rate {
        findings.push(Finding {
            problem: n.problem(),
            fix: n.fix(),
            tenant: n.tenant,
            package: n.package,
            code: "cost_not_converted",
        });
    }
    if s.json() {
        output::print_json(&findings);
    } else if findings.is_empty() {
        println!("routing of {} package(s) checked: no problems", views.len());
    } else {
        let mut t = output::table(&["tenant", "package", "problem", "fix"]);
        for f in &findings {
            t.add_row(vec![f.tenant.clone(), f.package.clone(), f.problem.clone(), f.fix.clone()]);
        }
        println!("{t}");
    }
    if routing_problems == 0 {
        return Ok(());
    }
    findings.truncate(routing_problems);
    let packages: std::collections::BTreeSet<(&str, &str)> =
        findings.iter().map(|f| (f.tenant.as_str(), f.package.as_str())).collect();
    Err(Error::needs_action(format!("{} routing problem(s) in {} of {} package(s)", findings.len(), packages.len(), views.len()))
        .with_hint(
            "fix each as its line says (edit the setup file and `orderctl apply` it), then run `orderctl routing check` again",
        ))
}
