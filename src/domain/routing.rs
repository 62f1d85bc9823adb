//! Package routing: how an order for a package reaches its goods, and every way a routing can
//! be unusable. The same rules serve `apply` (refuse to save), `routing check` (find what is in
//! the database), `dispatch` (stop with a reason) and `inspect` (explain a stuck order).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutingMode {
    Auto,
    Manual,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderType {
    External,
    Codes,
    Manual,
    /// Forwarded to a package of another tenant, as that tenant's order (the "internal" provider).
    Internal,
}

impl RoutingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingMode::Auto => "auto",
            RoutingMode::Manual => "manual",
        }
    }
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::External => "external",
            ProviderType::Codes => "codes",
            ProviderType::Manual => "manual",
            ProviderType::Internal => "internal",
        }
    }
}

impl FromStr for RoutingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(RoutingMode::Auto),
            "manual" => Ok(RoutingMode::Manual),
            _ => Err(format!("routing mode '{s}' is unknown; use auto or manual")),
        }
    }
}

impl FromStr for ProviderType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "external" => Ok(ProviderType::External),
            "codes" => Ok(ProviderType::Codes),
            "manual" => Ok(ProviderType::Manual),
            "internal" => Ok(ProviderType::Internal),
            _ => Err(format!("provider_type '{s}' is unknown; use external, codes, manual or internal")),
        }
    }
}

impl fmt::Display for RoutingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedProvider {
    pub name: String,
    pub enabled: bool,
    /// The package has a mapping for this provider.
    pub has_mapping: bool,
}

/// Where an `internal` routing forwards: a package of another tenant, paid by a user of that
/// tenant (the account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRoute {
    pub tenant: String,
    pub package: String,
    pub account: String,
    /// The upstream package takes orders (it may be disabled by its tenant at any time).
    pub package_enabled: bool,
}

/// A package's routing with what it points at, as loaded from the database or a setup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingView {
    pub tenant: String,
    pub package: String,
    pub mode: RoutingMode,
    pub provider_type: ProviderType,
    pub primary: Option<RoutedProvider>,
    pub fallback: Option<RoutedProvider>,
    /// Name and number of available codes.
    pub code_group: Option<(String, i64)>,
    /// Internal routing: where the orders are forwarded.
    pub upstream: Option<UpstreamRoute>,
}

/// Every way a routing can be unusable or contradictory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingProblem {
    /// The incident in domain.md: auto routing with provider_type manual.
    AutoWithManualProviderType {
        has_primary: bool,
    },
    /// auto + external without a primary provider.
    ExternalWithoutPrimary,
    /// provider_type codes without a code group.
    CodesWithoutCodeGroup,
    PrimaryDisabled {
        provider: String,
    },
    FallbackDisabled {
        provider: String,
    },
    MissingMapping {
        provider: String,
    },
    FallbackEqualsPrimary {
        provider: String,
    },
    EmptyCodeGroup {
        group: String,
    },
    /// provider_type internal without an upstream package and account.
    InternalWithoutUpstream,
    /// The upstream package of an internal routing does not take orders.
    UpstreamPackageDisabled {
        tenant: String,
        package: String,
    },
    /// Following the forwarding comes back to a tenant already passed; `chain` reads like
    /// `alsham/pubg-60 → wholesale/pubg-60-w → alsham/pubg-60`.
    ForwardingCycle {
        chain: String,
    },
}

impl RoutingProblem {
    /// A stable identifier for JSON output and tests.
    pub fn code(&self) -> &'static str {
        match self {
            RoutingProblem::AutoWithManualProviderType { .. } => "auto_with_manual_provider_type",
            RoutingProblem::ExternalWithoutPrimary => "external_without_primary",
            RoutingProblem::CodesWithoutCodeGroup => "codes_without_code_group",
            RoutingProblem::PrimaryDisabled { .. } => "primary_disabled",
            RoutingProblem::FallbackDisabled { .. } => "fallback_disabled",
            RoutingProblem::MissingMapping { .. } => "missing_mapping",
            RoutingProblem::FallbackEqualsPrimary { .. } => "fallback_equals_primary",
            RoutingProblem::EmptyCodeGroup { .. } => "empty_code_group",
            RoutingProblem::InternalWithoutUpstream => "internal_without_upstream",
            RoutingProblem::UpstreamPackageDisabled { .. } => "upstream_package_disabled",
            RoutingProblem::ForwardingCycle { .. } => "forwarding_cycle",
        }
    }

    /// Blocks dispatch of a new order (as opposed to a warning such as a disabled fallback).
    pub fn blocks_dispatch(&self) -> bool {
        !matches!(self, RoutingProblem::FallbackDisabled { .. } | RoutingProblem::FallbackEqualsPrimary { .. })
    }

    /// What is wrong, without the tenant/package prefix.
    pub fn problem(&self) -> String {
        match self {
            RoutingProblem::AutoWithManualProviderType { has_primary: false } => {
                "routing mode is auto but provider_type is manual and no primary provider is set".into()
            }
            RoutingProblem::AutoWithManualProviderType { has_primary: true } => {
                "routing mode is auto but provider_type is manual, so nothing would ever send the order".into()
            }
            RoutingProblem::ExternalWithoutPrimary => {
                "routing mode is auto with provider_type external but no primary provider is set".into()
            }
            RoutingProblem::CodesWithoutCodeGroup => "provider_type is codes but no code group is set".into(),
            RoutingProblem::PrimaryDisabled { provider } => format!("primary provider {provider} is disabled"),
            RoutingProblem::FallbackDisabled { provider } => format!("fallback provider {provider} is disabled"),
            RoutingProblem::MissingMapping { provider } => {
                format!("there is no mapping for provider {provider}, so it cannot be told which product to deliver")
            }
            RoutingProblem::FallbackEqualsPrimary { provider } => {
                format!("the fallback provider is the primary provider ({provider})")
            }
            RoutingProblem::EmptyCodeGroup { group } => format!("code group {group} has no available codes"),
            RoutingProblem::InternalWithoutUpstream => "provider_type is internal but no upstream package is set".into(),
            RoutingProblem::UpstreamPackageDisabled { tenant, package } => {
                format!("the upstream package {package} of tenant {tenant} is disabled, so forwarded orders are refused there")
            }
            RoutingProblem::ForwardingCycle { chain } => {
                format!("forwarding cycle: {chain} comes back to a tenant it already passed")
            }
        }
    }

    /// What to do about it.
    pub fn fix(&self) -> String {
        match self {
            RoutingProblem::AutoWithManualProviderType { .. } => {
                "set routing.primary with provider_type external, or use mode manual".into()
            }
            RoutingProblem::ExternalWithoutPrimary => "set routing.primary, or use mode manual".into(),
            RoutingProblem::CodesWithoutCodeGroup => "set routing.code_group to a code group of this tenant".into(),
            RoutingProblem::PrimaryDisabled { provider } => {
                format!("enable provider {provider}, or route the package to another provider")
            }
            RoutingProblem::FallbackDisabled { provider } => {
                format!("enable provider {provider}, or remove it as routing.fallback")
            }
            RoutingProblem::MissingMapping { provider } => {
                format!("add mappings.{provider} to the package (znet: oyun and kupur; xstor: product_id)")
            }
            RoutingProblem::FallbackEqualsPrimary { .. } => "choose a different routing.fallback or remove it".into(),
            RoutingProblem::EmptyCodeGroup { group } => format!("add codes to code group {group}"),
            RoutingProblem::InternalWithoutUpstream => {
                "set routing.upstream to {\"tenant\", \"package\", \"account\"} of another tenant, or use another provider_type"
                    .into()
            }
            RoutingProblem::UpstreamPackageDisabled { tenant, .. } => {
                format!("ask tenant {tenant} to enable it, or route the package elsewhere")
            }
            RoutingProblem::ForwardingCycle { .. } => {
                "route one package of the chain to a provider, code stock or an operator instead".into()
            }
        }
    }

    /// One sentence: "tenant T, package P: <problem>; <fix>".
    pub fn sentence(&self, tenant: &str, package: &str) -> String {
        format!("tenant {tenant}, package {package}: {}; {}", self.problem(), self.fix())
    }
}

/// All problems of one routing, most serious first. Empty when the routing is usable.
pub fn check_routing(r: &RoutingView) -> Vec<RoutingProblem> {
    let mut problems = Vec::new();
    match (r.mode, r.provider_type) {
        (RoutingMode::Auto, ProviderType::Manual) => {
            problems.push(RoutingProblem::AutoWithManualProviderType { has_primary: r.primary.is_some() });
        }
        (RoutingMode::Auto, ProviderType::External) if r.primary.is_none() => {
            problems.push(RoutingProblem::ExternalWithoutPrimary);
        }
        _ => {}
    }
    if r.provider_type == ProviderType::External {
        if let Some(p) = &r.primary {
            if !p.enabled {
                problems.push(RoutingProblem::PrimaryDisabled { provider: p.name.clone() });
            }
            if !p.has_mapping {
                problems.push(RoutingProblem::MissingMapping { provider: p.name.clone() });
            }
        }
        if let Some(f) = &r.fallback {
            if r.primary.as_ref().map(|p| p.name == f.name).unwrap_or(false) {
                problems.push(RoutingProblem::FallbackEqualsPrimary { provider: f.name.clone() });
            } else {
                if !f.enabled {
                    problems.push(RoutingProblem::FallbackDisabled { provider: f.name.clone() });
                }
                if !f.has_mapping {
                    problems.push(RoutingProblem::MissingMapping { provider: f.name.clone() });
                }
            }
        }
    }
    if r.provider_type == ProviderType::Codes {
        match &r.code_group {
            None => problems.push(RoutingProblem::CodesWithoutCodeGroup),
            Some((group, available)) if *available <= 0 => problems.push(RoutingProblem::EmptyCodeGroup { group: group.clone() }),
            Some(_) => {}
        }
    }
    if r.provider_type == ProviderType::Internal {
        match &r.upstream {
            None => problems.push(RoutingProblem::InternalWithoutUpstream),
            Some(u) if !u.package_enabled => {
                problems.push(RoutingProblem::UpstreamPackageDisabled { tenant: u.tenant.clone(), package: u.package.clone() })
            }
            Some(_) => {}
        }
    }
    problems
}

/// The forwarding of packages: (tenant, package) → (upstream tenant, upstream package).
pub type Forwarding = BTreeMap<(String, String), (String, String)>;

/// A forwarding chain that comes back to a tenant it already passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The packages of the chain, (tenant, package), from where it starts to where it comes back.
    pub chain: Vec<(String, String)>,
    pub problem: RoutingProblem,
}

impl Cycle {
    /// Where the chain starts: the package whose orders would come back.
    pub fn start(&self) -> &(String, String) {
        &self.chain[0]
    }
}

/// Every chain of forwarding, followed package after package from each package that forwards,
/// that comes back to a tenant it already passed (A → B → A at any depth). The database refuses
/// the same (`packages_forwarding_acyclic` in sql/0004); `apply` says it first, with the file's
/// paths.
pub fn forwarding_cycles(forwarding: &Forwarding) -> Vec<Cycle> {
    let mut out = Vec::new();
    for start in forwarding.keys() {
        let mut passed: BTreeSet<&str> = BTreeSet::from([start.0.as_str()]);
        let mut chain = vec![start.clone()];
        let mut at = start;
        // Each step passes a new tenant, so a chain ends within as many steps as there are packages.
        for _ in 0..=forwarding.len() {
            let Some(next) = forwarding.get(at) else { break };
            chain.push(next.clone());
            if !passed.insert(next.0.as_str()) {
                let text: Vec<String> = chain.iter().map(|(t, p)| format!("{t}/{p}")).collect();
                out.push(Cycle { chain, problem: RoutingProblem::ForwardingCycle { chain: text.join(" → ") } });
                break;
            }
            at = next;
        }
    }
    out
}

/// Problems the database itself refuses (CHECK constraints). `apply` must never try to write
/// these; `routing check` still looks for them in case constraints were dropped by hand.
pub fn is_contradiction(p: &RoutingProblem) -> bool {
    matches!(
        p,
        RoutingProblem::AutoWithManualProviderType { .. }
            | RoutingProblem::ExternalWithoutPrimary
            | RoutingProblem::CodesWithoutCodeGroup
            | RoutingProblem::FallbackEqualsPrimary { .. }
            | RoutingProblem::InternalWithoutUpstream
            | RoutingProblem::ForwardingCycle { .. }
    )
}

/// Where an order of a package goes next, decided by its routing alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteDecision {
    /// To the primary provider's lane (its lane finds a missing mapping or a disabled provider
    /// and hands the order to the fallback, or to an operator).
    External { primary: String },
    /// Codes from our own stock.
    Codes { group: String },
    /// An operator delivers it.
    Manual,
    /// Forwarded to another tenant (its package, paid by its account: see the routing's upstream).
    Forward { tenant: String },
    /// Routing cannot be followed: the order needs an operator.
    Stop(RoutingProblem),
}

/// Route an order. `operator`: an operator dispatches it by hand, so a manual-mode package
/// that names a provider is sent there (automatic dispatch leaves it for an operator).
pub fn route(r: &RoutingView, operator: bool) -> RouteDecision {
    let stopping = check_routing(r).into_iter().find(|p| {
        matches!(
            p,
            RoutingProblem::AutoWithManualProviderType { .. }
                | RoutingProblem::ExternalWithoutPrimary
                | RoutingProblem::CodesWithoutCodeGroup
                | RoutingProblem::InternalWithoutUpstream
        )
    });
    if let Some(p) = stopping {
        return RouteDecision::Stop(p);
    }
    match r.provider_type {
        ProviderType::Manual => RouteDecision::Manual,
        _ if r.mode == RoutingMode::Manual && !operator => RouteDecision::Manual,
        ProviderType::Codes => match &r.code_group {
            Some((group, _)) => RouteDecision::Codes { group: group.clone() },
            None => RouteDecision::Stop(RoutingProblem::CodesWithoutCodeGroup),
        },
        ProviderType::Internal => match &r.upstream {
            Some(u) => RouteDecision::Forward { tenant: u.tenant.clone() },
            None => RouteDecision::Stop(RoutingProblem::InternalWithoutUpstream),
        },
        ProviderType::External => match &r.primary {
            Some(p) => RouteDecision::External { primary: p.name.clone() },
            // Manual mode with provider_type external and no primary: only an operator sends it.
            None => RouteDecision::Stop(RoutingProblem::ExternalWithoutPrimary),
        },
    }
}

impl RoutingView {
    /// One line for listings: `auto → external znet-main (fallback xstor)`,
    /// `auto → codes itunes-10 (2 available)`, `manual`.
    pub fn summary(&self) -> String {
        let target = match self.provider_type {
            ProviderType::External => {
                let primary = self.primary.as_ref().map(|p| p.name.as_str()).unwrap_or("(no primary)");
                match &self.fallback {
                    Some(f) => format!("external {primary} (fallback {})", f.name),
                    None => format!("external {primary}"),
                }
            }
            ProviderType::Codes => match &self.code_group {
                Some((group, available)) => format!("codes {group} ({available} available)"),
                None => "codes (no code group)".into(),
            },
            ProviderType::Manual if self.mode == RoutingMode::Manual => return "manual".into(),
            ProviderType::Manual => "manual".into(),
            ProviderType::Internal => match &self.upstream {
                Some(u) => format!("internal {}/{} (paid by {})", u.tenant, u.package, u.account),
                None => "internal (no upstream)".into(),
            },
        };
        format!("{} → {target}", self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str) -> RoutedProvider {
        RoutedProvider { name: name.into(), enabled: true, has_mapping: true }
    }

    fn view(mode: RoutingMode, pt: ProviderType) -> RoutingView {
        RoutingView {
            tenant: "alsham".into(),
            package: "pubg-60".into(),
            mode,
            provider_type: pt,
            primary: None,
            fallback: None,
            code_group: None,
            upstream: None,
        }
    }

    #[test]
    fn the_incident_routing_is_found_and_explained() {
        let r = view(RoutingMode::Auto, ProviderType::Manual);
        let problems = check_routing(&r);
        assert_eq!(problems, vec![RoutingProblem::AutoWithManualProviderType { has_primary: false }]);
        assert_eq!(
            problems[0].sentence("alsham", "pubg-60"),
            "tenant alsham, package pubg-60: routing mode is auto but provider_type is manual and no primary \
             provider is set; set routing.primary with provider_type external, or use mode manual"
        );
    }

    #[test]
    fn a_good_external_routing_has_no_problems() {
        let mut r = view(RoutingMode::Auto, ProviderType::External);
        r.primary = Some(provider("znet-main"));
        r.fallback = Some(provider("xstor"));
        assert!(check_routing(&r).is_empty());
    }

    #[test]
    fn every_external_problem_is_found() {
        let mut r = view(RoutingMode::Auto, ProviderType::External);
        assert_eq!(check_routing(&r), vec![RoutingProblem::ExternalWithoutPrimary]);
        r.primary = Some(RoutedProvider { name: "z".into(), enabled: false, has_mapping: false });
        r.fallback = Some(RoutedProvider { name: "x".into(), enabled: false, has_mapping: true });
        let codes: Vec<&str> = check_routing(&r).iter().map(|p| p.code()).collect();
        assert_eq!(codes, vec!["primary_disabled", "missing_mapping", "fallback_disabled"]);
        r.fallback = Some(RoutedProvider { name: "z".into(), enabled: false, has_mapping: false });
        assert!(check_routing(&r).contains(&RoutingProblem::FallbackEqualsPrimary { provider: "z".into() }));
    }

    #[test]
    fn codes_need_a_group_with_stock() {
        let mut r = view(RoutingMode::Auto, ProviderType::Codes);
        assert_eq!(check_routing(&r), vec![RoutingProblem::CodesWithoutCodeGroup]);
        r.code_group = Some(("itunes-10".into(), 0));
        assert_eq!(check_routing(&r), vec![RoutingProblem::EmptyCodeGroup { group: "itunes-10".into() }]);
        r.code_group = Some(("itunes-10".into(), 2));
        assert!(check_routing(&r).is_empty());
    }

    #[test]
    fn summaries_read_like_the_routing() {
        let mut r = view(RoutingMode::Auto, ProviderType::External);
        r.primary = Some(provider("znet-main"));
        r.fallback = Some(provider("xstor"));
        assert_eq!(r.summary(), "auto → external znet-main (fallback xstor)");
        let mut c = view(RoutingMode::Auto, ProviderType::Codes);
        c.code_group = Some(("itunes-10".into(), 2));
        assert_eq!(c.summary(), "auto → codes itunes-10 (2 available)");
        assert_eq!(view(RoutingMode::Manual, ProviderType::Manual).summary(), "manual");
        assert_eq!(view(RoutingMode::Auto, ProviderType::Manual).summary(), "auto → manual");
    }

    #[test]
    fn orders_are_routed_by_mode_and_provider_type() {
        let mut r = view(RoutingMode::Auto, ProviderType::External);
        r.primary = Some(provider("znet-main"));
        assert_eq!(route(&r, false), RouteDecision::External { primary: "znet-main".into() });
        r.mode = RoutingMode::Manual;
        assert_eq!(route(&r, false), RouteDecision::Manual);
        assert_eq!(route(&r, true), RouteDecision::External { primary: "znet-main".into() });
        let incident = view(RoutingMode::Auto, ProviderType::Manual);
        assert!(matches!(route(&incident, false), RouteDecision::Stop(RoutingProblem::AutoWithManualProviderType { .. })));
        let mut c = view(RoutingMode::Auto, ProviderType::Codes);
        c.code_group = Some(("itunes-10".into(), 0));
        assert_eq!(route(&c, false), RouteDecision::Codes { group: "itunes-10".into() });
    }

    fn upstream(enabled: bool) -> UpstreamRoute {
        UpstreamRoute {
            tenant: "wholesale".into(),
            package: "pubg-60-w".into(),
            account: "alsham-account".into(),
            package_enabled: enabled,
        }
    }

    #[test]
    fn internal_routing_forwards_to_its_upstream() {
        let mut r = view(RoutingMode::Auto, ProviderType::Internal);
        assert_eq!(check_routing(&r), vec![RoutingProblem::InternalWithoutUpstream]);
        assert!(matches!(route(&r, false), RouteDecision::Stop(RoutingProblem::InternalWithoutUpstream)));
        r.upstream = Some(upstream(true));
        assert!(check_routing(&r).is_empty());
        assert_eq!(route(&r, false), RouteDecision::Forward { tenant: "wholesale".into() });
        assert_eq!(r.summary(), "auto → internal wholesale/pubg-60-w (paid by alsham-account)");
        r.mode = RoutingMode::Manual;
        assert_eq!(route(&r, false), RouteDecision::Manual);
        assert_eq!(route(&r, true), RouteDecision::Forward { tenant: "wholesale".into() });
        r.upstream = Some(upstream(false));
        assert_eq!(check_routing(&r)[0].code(), "upstream_package_disabled");
    }

    fn edge(from: (&str, &str), to: (&str, &str)) -> ((String, String), (String, String)) {
        ((from.0.into(), from.1.into()), (to.0.into(), to.1.into()))
    }

    #[test]
    fn a_chain_that_comes_back_to_a_tenant_is_a_cycle_at_any_depth() {
        let chain: Forwarding = [edge(("a", "p"), ("b", "q")), edge(("b", "q"), ("c", "r"))].into_iter().collect();
        assert!(forwarding_cycles(&chain).is_empty(), "A → B → C is fine");
        // Two shops forwarding different packages to each other: no order ever comes back.
        let crossed: Forwarding = [edge(("a", "p"), ("b", "q")), edge(("b", "r"), ("a", "s"))].into_iter().collect();
        assert!(forwarding_cycles(&crossed).is_empty());
        let mut cycle = chain.clone();
        cycle.insert(("c".into(), "r".into()), ("a".into(), "x".into()));
        let found = forwarding_cycles(&cycle);
        assert_eq!(found.len(), 1, "only a/p's orders come back (b/q's go on to a, which they never passed): {found:?}");
        assert_eq!(found[0].start(), &("a".to_string(), "p".to_string()));
        assert!(found[0].chain.contains(&("c".to_string(), "r".to_string())));
        assert_eq!(
            found[0].problem.sentence("a", "p"),
            "tenant a, package p: forwarding cycle: a/p → b/q → c/r → a/x comes back to a tenant it already passed; \
             route one package of the chain to a provider, code stock or an operator instead"
        );
        let two: Forwarding = [edge(("a", "p"), ("b", "q")), edge(("b", "q"), ("a", "p"))].into_iter().collect();
        assert_eq!(forwarding_cycles(&two).len(), 2);
    }

    #[test]
    fn manual_routing_is_fine() {
        assert!(check_routing(&view(RoutingMode::Manual, ProviderType::Manual)).is_empty());
    }
}
