//! Dispatch: get an order to the right provider exactly once.
//!
//! A pipeline of named steps. Each step is logged (`-v`) and recorded as an event on the order,
//! so `inspect` shows exactly where a dispatch stopped:
//!
//! load_order → check_dispatchable → resolve_routing → resolve_mapping → resolve_provider →
//! write_reference → place → record_outcome → schedule_first_check
//!
//! Exactly-once placement rests on `write_reference`: a state transition only one caller can
//! win (`not_sent → dispatching`), committed together with the reference *before* the HTTP
//! call. Whatever happens after that commit, the order carries its reference: a crash, a
//! timeout or garbage leaves it awaiting reconciliation by a status check with that reference,
//! never placed blindly again.

use crate::db::orders::{self, NewEvent, OrderRow};
use crate::db::permits;
use crate::db::routing::{self as routing_db, PackageRouting};
use crate::domain::backoff::BackoffPolicy;
use crate::domain::routing::{check_routing, RoutingProblem, RoutingView};
use crate::error::{Error, Result};
use crate::provider::cache::ProviderCache;
use crate::provider::codes::{self, CodeHandout};
use crate::provider::manual;
use crate::provider::{self, CheckOutcome, PlacementOutcome, PlacementRequest, Provider, ReferenceStyle};
use postgres::Client;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How a dispatch runs.
#[derive(Debug, Clone)]
pub struct DispatchOptions {
    /// An operator's choice of provider, overriding routing.
    pub provider_override: Option<String>,
    /// Resolve everything and describe the request; change nothing.
    pub dry_run: bool,
    pub policy: BackoffPolicy,
    /// How long a claimed placement keeps others off the order. Must exceed the request
    /// timeout, so a slow call finishes before anyone reconciles it.
    pub placement_lease: Duration,
    /// Started by an operator (`orderctl dispatch`): manual-mode packages are sent too.
    /// Automatic dispatch (create, sweep, daemon) leaves them for an operator.
    pub operator: bool,
}

/// Where a dispatch ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DispatchResult {
    /// Accepted by the provider; the first status check is scheduled.
    Sent { provider: String, reference: String },
    /// Finished at once: codes from our stock, or a provider that answered with the PIN.
    Approved { pin: Option<String> },
    /// Cancelled by the provider at once (refunded).
    Rejected { message: String },
    /// Manual routing: nothing to send.
    WaitingForOperator,
    /// The provider refused the placement and no fallback was left.
    PlacementRejected { provider: String, message: String },
    /// Unknown outcome; a status check with the reference decides later.
    AwaitingReconciliation { provider: String, reference: String, message: String },
    /// Stopped before anything was sent; the order needs an operator.
    Stopped { step: String, attention: String, message: String },
    /// Nothing to do: the order is not waiting to be placed (or another process won the claim).
    NotDispatchable { message: String },
    /// `--dry-run`: what would be sent.
    DryRun { provider: String, request: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct DispatchReport {
    pub id: Uuid,
    pub number: i64,
    #[serde(flatten)]
    pub result: DispatchResult,
}

/// Records the pipeline's steps: logs each one and collects it as an event.
struct Steps {
    order_id: Uuid,
    number: i64,
    events: Vec<NewEvent>,
    record: bool,
    /// An operator's dispatch shows its steps with -v; the daemon's only with -vv (it logs one
    /// line per order at info instead).
    level: log::Level,
    /// Where the order stands with its provider as the steps run (events keep it); None once
    /// the outcome is written, when the row itself says.
    external_status: Option<String>,
}

impl Steps {
    fn new(order_id: Uuid, number: i64, opts: &DispatchOptions) -> Steps {
        let level = if opts.operator { log::Level::Info } else { log::Level::Debug };
        Steps { order_id, number, events: vec![], record: !opts.dry_run, level, external_status: Some("not_sent".into()) }
    }

    fn step(&mut self, name: &str, message: impl Into<String>) {
        let message = message.into();
        log::log!(self.level, "order {}: {name}: {message}", self.number);
        if self.record {
            let mut event = NewEvent::new(self.order_id, format!("dispatch.{name}"), message);
            event.external_status = self.external_status.clone();
            self.events.push(event);
        }
    }
    fn take(&mut self) -> Vec<NewEvent> {
        std::mem::take(&mut self.events)
    }
}

/// One provider the order could go to.
#[derive(Debug, Clone)]
struct Candidate {
    provider_id: i64,
    /// Reuse this reference (the provider was shown not to have it) instead of a new one.
    reuse_reference: Option<String>,
    role: &'static str,
}

/// Run the dispatch pipeline for one order.
pub fn dispatch(
    client: &mut Client,
    providers: &ProviderCache,
    order_id: Uuid,
    opts: &DispatchOptions,
) -> Result<DispatchReport> {
    // load_order
    let order = orders::load_order(client, order_id)?;
    let mut steps = Steps::new(order_id, order.number, opts);
    let report = |result| DispatchReport { id: order.id, number: order.number, result };

    // check_dispatchable
    if let Err(why) = check_dispatchable(&order) {
        steps.step("load_order", load_order_message(&order));
        log::info!("order {}: check_dispatchable: {why}", order.number);
        return Ok(report(DispatchResult::NotDispatchable { message: why }));
    }
    record_first_steps(&order, &mut steps);

    // resolve_routing
    let mut lookups = Lookups::default();
    let candidates = match resolve_routing(client, &mut lookups, &order, opts, &mut steps)? {
        Routed::Candidates(c) => c,
        Routed::Done(result) => return Ok(report(result)),
    };

    let result = place_with_candidates(client, providers, &order, candidates, None, None, opts, steps)?;
    log::info!("order {}: dispatch: {}", order.number, result_summary(&result));
    Ok(report(result))
}

fn load_order_message(order: &OrderRow) -> String {
    format!(
        "order {} of tenant {}: {} × {} for player {}",
        order.number, order.tenant, order.quantity, order.package, order.user_identifier
    )
}

/// load_order and check_dispatchable, for an order that can be placed.
fn record_first_steps(order: &OrderRow, steps: &mut Steps) {
    steps.external_status = Some(order.external_status.clone());
    steps.step("load_order", load_order_message(order));
    steps.step("check_dispatchable", format!("status {} / {}: can be placed", order.status, order.external_status));
}

/// A routing problem that stops automatic dispatch before any provider is tried. (A missing
/// mapping or a disabled primary only skips that provider; an empty code group is found when
/// taking codes.)
fn blocks_external(p: &RoutingProblem) -> bool {
    p.blocks_dispatch()
        && !matches!(
            p,
            RoutingProblem::MissingMapping { .. }
                | RoutingProblem::PrimaryDisabled { .. }
                | RoutingProblem::EmptyCodeGroup { .. }
        )
}

/// The providers of external routing in order (primary, then fallback), and the step's message.
fn external_candidates(routing: &PackageRouting, view: &RoutingView) -> (Vec<Candidate>, String) {
    let mut candidates = Vec::new();
    if let Some(p) = routing.primary_provider_id {
        candidates.push(Candidate { provider_id: p, reuse_reference: None, role: "primary" });
    }
    if let Some(f) = routing.fallback_provider_id {
        candidates.push(Candidate { provider_id: f, reuse_reference: None, role: "fallback" });
    }
    let names: Vec<String> = [view.primary.as_ref(), view.fallback.as_ref()].iter().flatten().map(|p| p.name.clone()).collect();
    (candidates, format!("{} → external: {}", routing.mode, names.join(", then ")))
}

/// One line per order for the logs.
pub fn result_summary(r: &DispatchResult) -> String {
    match r {
        DispatchResult::Sent { provider, reference } => format!("sent to {provider} (reference {reference})"),
        DispatchResult::Approved { .. } => "approved at once".into(),
        DispatchResult::Rejected { message } => format!("cancelled at once and refunded: {message}"),
        DispatchResult::WaitingForOperator => "waiting for an operator (manual routing)".into(),
        DispatchResult::PlacementRejected { provider, message } => {
            format!("rejected by {provider}: {message}; waits for an operator")
        }
        DispatchResult::AwaitingReconciliation { provider, message, .. } => {
            format!("outcome unknown at {provider} ({message}); awaiting reconciliation")
        }
        DispatchResult::Stopped { step, message, .. } => format!("stopped at {step}: {message}"),
        DispatchResult::NotDispatchable { message } => format!("not dispatched: {message}"),
        DispatchResult::DryRun { provider, .. } => format!("dry run for {provider}"),
    }
}

enum Routed {
    Candidates(Vec<Candidate>),
    Done(DispatchResult),
}

fn check_dispatchable(order: &OrderRow) -> std::result::Result<(), String> {
    if order.status != "pending" {
        return Err(format!("the order is already {}; a finished order is never dispatched again", order.status));
    }
    match order.external_status.as_str() {
        "not_sent" => Ok(()),
        "failed" if order.attention.as_deref() == Some("placement_rejected") => Ok(()),
        "failed" => Err(format!(
            "the order was given up ({}); the provider may still deliver it. Check with the provider, then \
             `orderctl approve {n} --pin PIN` or `orderctl reject {n} --reason TEXT`",
            order.last_message.as_deref().unwrap_or("no final answer"),
            n = order.number
        )),
        "dispatching" if order.awaiting_reconciliation => Err(format!(
            "the placement with reference {} had an unknown outcome and awaits reconciliation; it is never placed \
             blindly again. Run `orderctl poll {}` to reconcile it now",
            order.provider_referans.as_deref().unwrap_or("?"),
            order.number
        )),
        "dispatching" => Err(format!(
            "the order is being placed right now with reference {} (claimed at {}); if that process died, \
             the monitor reconciles it after its lease, or run `orderctl poll {}`",
            order.provider_referans.as_deref().unwrap_or("?"),
            order.dispatched_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            order.number
        )),
        other => Err(format!(
            "the order is already with provider {} ({other}, reference {}); follow it with `orderctl poll {}`",
            order.provider.as_deref().unwrap_or("?"),
            order.provider_referans.as_deref().unwrap_or("?"),
            order.number
        )),
    }
}

fn resolve_routing(
    client: &mut Client,
    lookups: &mut Lookups,
    order: &OrderRow,
    opts: &DispatchOptions,
    steps: &mut Steps,
) -> Result<Routed> {
    if let Some(name) = &opts.provider_override {
        let (id, _enabled) = routing_db::provider_by_name(client, order.tenant_id, name)?;
        steps.step("resolve_routing", format!("operator override: provider {name}"));
        return Ok(Routed::Candidates(vec![Candidate { provider_id: id, reuse_reference: None, role: "override" }]));
    }
    let (routing, view) = lookups.routing(client, order.package_id, &order.tenant)?;
    let (routing, view) = (&routing, &view);
    let problems = check_routing(view);
    let blocking: Vec<&RoutingProblem> = problems.iter().filter(|p| blocks_external(p)).collect();
    if let Some(problem) = blocking.first() {
        let message = match problem {
            RoutingProblem::AutoWithManualProviderType { .. } | RoutingProblem::ExternalWithoutPrimary => format!(
                "routing for package {} is auto but has no provider ({}): {}",
                order.package,
                problem.problem(),
                problem.fix()
            ),
            _ => format!("routing for package {} cannot be followed: {}; {}", order.package, problem.problem(), problem.fix()),
        };
        return stop(client, order, "resolve_routing", "routing", message, steps, opts);
    }
    let waits_for_operator = manual::waits_for_operator(&routing.mode, &routing.provider_type, opts.operator);
    match routing.provider_type.as_str() {
        _ if waits_for_operator => {
            steps.step("resolve_routing", format!("package {} is routed manually: waiting for an operator", order.package));
            if !opts.dry_run {
                let mut tx = client.transaction()?;
                manual::leave_for_operator(&mut tx, order.id)?;
                orders::record_events(&mut tx, &steps.take())?;
                tx.commit()?;
            }
            Ok(Routed::Done(DispatchResult::WaitingForOperator))
        }
        "codes" => {
            let group = routing.code_group_id.ok_or_else(|| Error::internal("codes routing without code group"))?;
            steps.step("resolve_routing", format!("package {} is delivered from code stock", order.package));
            if opts.dry_run {
                return Ok(Routed::Done(DispatchResult::DryRun {
                    provider: "codes".into(),
                    request: format!(
                        "take {} code(s) from code group {}",
                        order.quantity,
                        view.code_group.as_ref().map(|g| g.0.as_str()).unwrap_or("?")
                    ),
                }));
            }
            {
                let mut tx = client.transaction()?;
                orders::record_events(&mut tx, &steps.take())?;
                tx.commit()?;
            }
            match codes::hand_out(client, order.id, group, order.quantity)? {
                CodeHandout::AlreadyTaken => Ok(Routed::Done(DispatchResult::NotDispatchable {
                    message: "another process dispatched the order first".into(),
                })),
                CodeHandout::Delivered(codes) => {
                    Ok(Routed::Done(DispatchResult::Approved { pin: Some(CodeHandout::pin(&codes)) }))
                }
                CodeHandout::StockEmpty => {
                    let group_name = view.code_group.as_ref().map(|g| g.0.clone()).unwrap_or_default();
                    let message = format!(
                        "code group {group_name} has fewer than {} available code(s); add codes to it, then `orderctl dispatch {}`",
                        order.quantity, order.number
                    );
                    stop(client, order, "take_code", "code_stock_empty", message, steps, opts)
                }
            }
        }
        _ => {
            // external (auto, or manual mode that an operator dispatches by hand)
            let mut candidates = Vec::new();
            // A placement the provider was shown not to have is retried first, with its own reference.
            if let (Some(pid), Some(reference)) = (order.provider_id, order.provider_referans.as_ref()) {
                let absent = orders::placements(client, order.id)?
                    .into_iter()
                    .any(|p| p.provider_id == pid && &p.referans == reference && p.outcome == "absent");
                if absent {
                    candidates.push(Candidate { provider_id: pid, reuse_reference: Some(reference.clone()), role: "retry" });
                }
            }
            let (plain, message) = external_candidates(routing, view);
            if candidates.is_empty() {
                candidates = plain;
            }
            steps.step("resolve_routing", message);
            Ok(Routed::Candidates(candidates))
        }
    }
}

/// Stop the dispatch before anything was sent, recording why.
fn stop(
    client: &mut Client,
    order: &OrderRow,
    step: &str,
    attention: &str,
    message: String,
    steps: &mut Steps,
    opts: &DispatchOptions,
) -> Result<Routed> {
    steps.step(step, format!("stopped: {message}"));
    log::warn!("order {}: dispatch stopped at {step}: {message}", order.number);
    if !opts.dry_run {
        let mut tx = client.transaction()?;
        orders::record_dispatch_stopped(&mut tx, order.id, attention, &message)?;
        orders::record_events(&mut tx, &steps.take())?;
        tx.commit()?;
    }
    Ok(Routed::Done(DispatchResult::Stopped { step: step.into(), attention: attention.into(), message }))
}

/// One placement ready to be made: the order bound to a candidate provider, with the request
/// to send and the steps recorded so far. The monitor makes many at once (one claim
/// transaction, calls in parallel, one record transaction); `orderctl dispatch` makes one.
pub struct Attempt {
    order: OrderRow,
    candidate: Candidate,
    provider_name: String,
    adapter: Arc<dyn Provider>,
    request: PlacementRequest,
    reuse: bool,
    /// The lease the order is already `dispatching` under (fallback, re-placement).
    owned_lease: Option<i64>,
    /// Candidates after this one, for a definite rejection.
    rest: Vec<Candidate>,
    steps: Steps,
}

impl Attempt {
    pub fn provider_id(&self) -> i64 {
        self.candidate.provider_id
    }
    pub fn number(&self) -> i64 {
        self.order.number
    }
    pub fn order_id(&self) -> Uuid {
        self.order.id
    }
}

/// An attempt whose reference is committed: it may now be sent.
pub struct Claimed {
    attempt: Attempt,
    lease: i64,
}

impl Claimed {
    pub fn provider_id(&self) -> i64 {
        self.attempt.candidate.provider_id
    }
    pub fn number(&self) -> i64 {
        self.attempt.order.number
    }
    /// place: the provider call. Holds no database connection; runs on a worker thread.
    pub fn place(&self) -> PlacementOutcome {
        scrub_placement(self.attempt.adapter.place(&self.attempt.request), &self.attempt.adapter.config().secrets())
    }
}

/// Where a recorded placement leaves its order.
pub enum Recorded {
    Done(DispatchResult),
    /// Rejected by this provider; the order is still ours under the lease: try the next candidate.
    NextCandidate {
        provider: String,
        message: String,
    },
}

/// Per-round memory of what the pipeline looks up per (package, provider): the mapping and the
/// provider's name and switch. Keeps a round of many orders for one package to one lookup.
#[derive(Default)]
pub struct Lookups {
    targets: HashMap<(i64, i64), (String, Option<serde_json::Value>, bool)>,
    routing: HashMap<i64, (PackageRouting, RoutingView)>,
}

impl Lookups {
    fn target(
        &mut self,
        client: &mut Client,
        package_id: i64,
        provider_id: i64,
    ) -> Result<(String, Option<serde_json::Value>, bool)> {
        if let Some(t) = self.targets.get(&(package_id, provider_id)) {
            return Ok(t.clone());
        }
        let r = client.query_one(
            "SELECT pr.name, pm.params, pr.enabled
               FROM providers pr LEFT JOIN package_mappings pm ON pm.package_id = $1 AND pm.provider_id = pr.id
              WHERE pr.id = $2",
            &[&package_id, &provider_id],
        )?;
        let t: (String, Option<serde_json::Value>, bool) = (r.get(0), r.get(1), r.get(2));
        self.targets.insert((package_id, provider_id), t.clone());
        Ok(t)
    }

    fn routing(&mut self, client: &mut Client, package_id: i64, tenant: &str) -> Result<(PackageRouting, RoutingView)> {
        if let Some(r) = self.routing.get(&package_id) {
            return Ok(r.clone());
        }
        let routing = routing_db::package_routing(client, package_id)?;
        let views = routing_db::routing_views(client, Some(tenant), Some(package_id))?;
        let view = views.into_iter().next().ok_or_else(|| Error::internal("package vanished during dispatch"))?.1;
        self.routing.insert(package_id, (routing.clone(), view.clone()));
        Ok((routing, view))
    }
}

/// Resolve candidates in order until one can be sent to (resolve_mapping → resolve_provider),
/// building its attempt. A candidate without a mapping, disabled, or unusable is recorded as
/// the first stop and skipped. None: no candidate left.
#[allow(clippy::too_many_arguments)]
fn next_attempt(
    client: &mut Client,
    providers: &ProviderCache,
    lookups: &mut Lookups,
    order: &OrderRow,
    candidates: &mut std::vec::IntoIter<Candidate>,
    owned_lease: Option<i64>,
    later_attempt: bool,
    first_stop: &mut Option<(String, String, String)>,
    mut steps: Steps,
) -> Result<std::result::Result<Attempt, Steps>> {
    for candidate in candidates.by_ref() {
        // resolve_mapping
        let (provider_name, mapping, enabled) = lookups.target(client, order.package_id, candidate.provider_id)?;
        let Some(mapping) = mapping else {
            let message = format!(
                "package {} has no mapping for provider {provider_name}; add mappings.{provider_name} to the package and apply the setup, then `orderctl dispatch {}`",
                order.package, order.number
            );
            steps.step("resolve_mapping", format!("{} {provider_name}: no mapping", candidate.role));
            first_stop.get_or_insert(("resolve_mapping".into(), "no_mapping".into(), message));
            continue;
        };
        steps.step("resolve_mapping", format!("{} {provider_name}: {}", candidate.role, mapping_summary(&mapping)));

        // resolve_provider
        if !enabled {
            let message = format!(
                "provider {provider_name} is disabled; enable it (or route package {} elsewhere), then `orderctl dispatch {}`",
                order.package, order.number
            );
            steps.step("resolve_provider", format!("{provider_name} is disabled"));
            first_stop.get_or_insert(("resolve_provider".into(), "provider_disabled".into(), message));
            continue;
        }
        let adapter = match providers.get(client, candidate.provider_id) {
            Ok(a) => a,
            Err(e) => {
                let message = format!("provider {provider_name} cannot be used: {}", e.message);
                steps.step("resolve_provider", message.clone());
                first_stop.get_or_insert(("resolve_provider".into(), "provider_disabled".into(), message));
                continue;
            }
        };
        steps.step("resolve_provider", format!("{provider_name} ({}) with its stored credentials", adapter.config().kind));

        let reuse = candidate.reuse_reference.is_some();
        let reference =
            candidate.reuse_reference.clone().unwrap_or_else(|| new_reference(order, later_attempt, adapter.reference_style()));
        let request = PlacementRequest {
            reference,
            player: order.user_identifier.clone(),
            extra: order.extra_field.clone(),
            quantity: order.quantity,
            mapping,
        };
        return Ok(Ok(Attempt {
            order: order.clone(),
            candidate,
            provider_name,
            adapter,
            request,
            reuse,
            owned_lease,
            rest: candidates.collect(),
            steps,
        }));
    }
    Ok(Err(steps))
}

/// Try the candidates in order: resolve mapping and provider, write the reference, place,
/// record. A definite rejection moves on to the next candidate (the fallback) with its own
/// reference; anything else ends the dispatch.
///
/// `owned_lease`: the order is already `dispatching` under this lease (the monitor
/// re-placing after reconciliation showed the provider never got it, or a fallback after a
/// rejection). `last_rejection`: the rejection that led here, if any.
#[allow(clippy::too_many_arguments)]
fn place_with_candidates(
    client: &mut Client,
    providers: &ProviderCache,
    order: &OrderRow,
    candidates: Vec<Candidate>,
    mut owned_lease: Option<i64>,
    mut last_rejection: Option<(String, String)>,
    opts: &DispatchOptions,
    mut steps: Steps,
) -> Result<DispatchResult> {
    let mut first_stop: Option<(String, String, String)> = None;
    let mut lookups = Lookups::default();
    let mut candidates = candidates.into_iter();
    loop {
        let later = owned_lease.is_some() || last_rejection.is_some();
        let attempt = match next_attempt(
            client,
            providers,
            &mut lookups,
            order,
            &mut candidates,
            owned_lease,
            later,
            &mut first_stop,
            steps,
        )? {
            Ok(a) => a,
            Err(s) => return finish_without_candidate(client, order, owned_lease, last_rejection, first_stop, s),
        };
        if opts.dry_run {
            return Ok(DispatchResult::DryRun {
                provider: attempt.provider_name.clone(),
                request: attempt.adapter.describe_placement(&attempt.request),
            });
        }

        // The provider's limit on calls in flight holds across every process: take a permit
        // before claiming, so an order that has to wait is not yet bound to this provider.
        let provider_id = attempt.provider_id();
        let Some(slot) = wait_for_permit(client, provider_id, opts)? else {
            let message = format!("provider {} is at its limit of calls in flight; trying again shortly", attempt.provider_name);
            log::info!("order {}: {message}", order.number);
            if owned_lease.is_none() {
                orders::defer(client, order.id, Duration::from_secs(1))?;
            }
            return Ok(DispatchResult::NotDispatchable { message });
        };
        let result = claim_place_record(client, attempt, opts);
        permits::release(client, provider_id, permit_holder(), &[slot])?;
        match result? {
            None => return Ok(DispatchResult::NotDispatchable { message: "another process dispatched the order first".into() }),
            Some((_, _, Recorded::Done(r))) => return Ok(r),
            Some((attempt, lease, Recorded::NextCandidate { provider, message })) => {
                last_rejection = Some((provider, message));
                owned_lease = Some(lease);
                // The attempt took the candidates after it along.
                candidates = attempt.rest.into_iter();
                steps = attempt.steps;
            }
        }
    }
}

/// One process's identity for permits (read once: it is asked for on every placement).
fn permit_holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        format!("{}:{}", std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(), std::process::id())
    })
}

/// Take one permit for the provider, waiting a little when all are held.
fn wait_for_permit(client: &mut Client, provider_id: i64, opts: &DispatchOptions) -> Result<Option<i32>> {
    let deadline = std::time::Instant::now() + if opts.operator { Duration::from_secs(10) } else { Duration::from_millis(500) };
    loop {
        if let Some(slot) = permits::acquire(client, provider_id, permit_holder(), 1, opts.placement_lease)?.first() {
            return Ok(Some(*slot));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// write_reference → place → record_outcome for one attempt. None: another process won the
/// claim and nothing was sent.
fn claim_place_record(client: &mut Client, attempt: Attempt, opts: &DispatchOptions) -> Result<Option<(Attempt, i64, Recorded)>> {
    let Some(claimed) = claim_attempts(client, vec![attempt], opts)?.pop() else {
        return Ok(None);
    };
    let outcome = claimed.place();
    let mut tx = client.transaction()?;
    let recorded = record_placed(&mut tx, vec![(claimed, outcome)], opts)?;
    tx.commit()?;
    Ok(recorded.into_iter().next().map(|(c, r)| (c.attempt, c.lease, r)))
}

/// write_reference for many attempts: the claims, their placement rows and their steps, in one
/// transaction committed before any call. Attempts another process won are dropped (logged).
pub fn claim_attempts(client: &mut Client, attempts: Vec<Attempt>, opts: &DispatchOptions) -> Result<Vec<Claimed>> {
    if attempts.is_empty() {
        return Ok(vec![]);
    }
    let claims: Vec<orders::PlacementClaim> = attempts
        .iter()
        .map(|a| orders::PlacementClaim {
            order_id: a.order.id,
            provider_id: a.candidate.provider_id,
            reference: a.request.reference.clone(),
            reuse_reference: a.reuse,
            expected_lease: a.owned_lease,
        })
        .collect();
    let mut tx = client.transaction()?;
    let won = orders::claim_placements(&mut tx, &claims, opts.placement_lease)?;
    let mut events = Vec::new();
    let mut claimed = Vec::with_capacity(won.len());
    for mut a in attempts {
        let Some(&lease) = won.get(&a.order.id) else {
            log::info!("order {}: another process claimed the order first; nothing sent", a.order.number);
            continue;
        };
        a.steps.external_status = Some("dispatching".into());
        a.steps.step(
            "write_reference",
            format!(
                "reference {} for {} committed before sending{}",
                a.request.reference,
                a.provider_name,
                if a.reuse { " (reused: the provider never got it)" } else { "" }
            ),
        );
        events.extend(a.steps.take());
        claimed.push(Claimed { attempt: a, lease });
    }
    orders::record_events(&mut tx, &events)?;
    tx.commit()?;
    Ok(claimed)
}

/// record_outcome (+ schedule_first_check) for many placements, inside the caller's
/// transaction: the placement rows and the accepted orders in one statement each, the rare
/// outcomes (at-once verdicts, unknown outcomes) per order, every step as an event.
pub fn record_placed(
    tx: &mut postgres::Transaction<'_>,
    placed: Vec<(Claimed, PlacementOutcome)>,
    opts: &DispatchOptions,
) -> Result<Vec<(Claimed, Recorded)>> {
    // A rejection of a reused reference may mean "already placed": only a check knows.
    let placed: Vec<(Claimed, PlacementOutcome)> = placed
        .into_iter()
        .map(|(c, o)| match o {
            PlacementOutcome::Rejected { message } if c.attempt.reuse => (
                c,
                PlacementOutcome::Ambiguous { reason: format!("re-placement rejected ({message}); the first attempt may exist") },
            ),
            // "Placed before": only a status check with the reference tells how it stands.
            PlacementOutcome::SentBefore { message } => (
                c,
                PlacementOutcome::Ambiguous { reason: format!("the provider says this reference was sent before ({message})") },
            ),
            o => (c, o),
        })
        .collect();
    let rows: Vec<(i64, String, &str, String)> = placed
        .iter()
        .map(|(c, o)| {
            let (outcome, message) = match o {
                PlacementOutcome::Accepted { message, .. } => ("accepted", message),
                PlacementOutcome::Rejected { message } => ("rejected", message),
                PlacementOutcome::Ambiguous { reason } | PlacementOutcome::SentBefore { message: reason } => {
                    ("ambiguous", reason)
                }
            };
            (c.attempt.candidate.provider_id, c.attempt.request.reference.clone(), outcome, message.clone())
        })
        .collect();
    orders::set_placement_outcomes(tx, &rows)?;
    let accepted: Vec<orders::Accepted> = placed
        .iter()
        .filter_map(|(c, o)| match o {
            PlacementOutcome::Accepted { external_order_id, message, .. } => {
                Some((c.attempt.order.id, c.lease, external_order_id.clone(), message.clone()))
            }
            _ => None,
        })
        .collect();
    let recorded = orders::record_accepted_many(tx, &accepted, opts.policy.first_check)?;

    let mut events = Vec::new();
    let mut out = Vec::with_capacity(placed.len());
    for (mut c, outcome) in placed {
        let provider_name = c.attempt.provider_name.clone();
        let reference = c.attempt.request.reference.clone();
        let order_id = c.attempt.order.id;
        let number = c.attempt.order.number;
        let steps = &mut c.attempt.steps;
        steps.step("place", format!("{provider_name} answered: {}", placement_summary(&outcome)));
        // From here on the events take the status the row has once the outcome is written.
        steps.external_status = None;
        let result = match outcome {
            PlacementOutcome::Accepted { early, .. } => {
                let Some(&new_lease) = recorded.get(&order_id) else {
                    log::warn!("order {number}: accepted by {provider_name}, but another process took the order over meanwhile; its result stands");
                    steps.take();
                    out.push((c, Recorded::Done(DispatchResult::Sent { provider: provider_name, reference })));
                    continue;
                };
                steps.step("record_outcome", format!("accepted by {provider_name}: status sent"));
                match early {
                    Some(CheckOutcome::Approved { pin, message }) => {
                        orders::finish_approved(tx, order_id, Some(new_lease), pin.as_deref(), &message)?;
                        steps.step("record_outcome", "the provider delivered at once: order approved");
                        Recorded::Done(DispatchResult::Approved { pin })
                    }
                    Some(CheckOutcome::Cancelled { message }) => {
                        let refund = orders::finish_rejected(tx, order_id, Some(new_lease), &message)?;
                        steps.step(
                            "record_outcome",
                            format!("the provider cancelled at once: order rejected, refunded {}", refund.unwrap_or_default()),
                        );
                        Recorded::Done(DispatchResult::Rejected { message })
                    }
                    _ => {
                        steps.step(
                            "schedule_first_check",
                            format!("first status check in {}", humantime::format_duration(opts.policy.first_check)),
                        );
                        Recorded::Done(DispatchResult::Sent { provider: provider_name, reference })
                    }
                }
            }
            PlacementOutcome::Rejected { message } => {
                steps.step("record_outcome", format!("rejected by {provider_name}: {message}"));
                Recorded::NextCandidate { provider: provider_name, message }
            }
            PlacementOutcome::Ambiguous { reason: message } | PlacementOutcome::SentBefore { message } => {
                let reconcile_after = opts.policy.first_check.min(Duration::from_secs(60));
                orders::record_ambiguous(tx, order_id, c.lease, &message, reconcile_after)?;
                steps.step(
                    "record_outcome",
                    format!("outcome unknown ({message}): awaiting reconciliation by a status check with reference {reference}"),
                );
                Recorded::Done(DispatchResult::AwaitingReconciliation { provider: provider_name, reference, message })
            }
        };
        events.extend(steps.take());
        out.push((c, result));
    }
    orders::record_events(tx, &events)?;
    Ok(out)
}

/// After a batch: a rejected placement goes on to the order's next candidate (its fallback)
/// under the lease it holds, through the one-order pipeline.
pub fn continue_after_rejection(
    client: &mut Client,
    providers: &ProviderCache,
    claimed: Claimed,
    provider: String,
    message: String,
    opts: &DispatchOptions,
) -> Result<DispatchResult> {
    let Claimed { attempt, lease } = claimed;
    let result = place_with_candidates(
        client,
        providers,
        &attempt.order,
        attempt.rest,
        Some(lease),
        Some((provider, message)),
        opts,
        attempt.steps,
    )?;
    log::info!("order {}: dispatch: {}", attempt.order.number, result_summary(&result));
    Ok(result)
}

/// The monitor's batch: the new orders of a round whose routing is plain (automatic, to an
/// external provider, first attempt) become attempts, resolved with one query for the orders
/// and one lookup per package and provider. Anything else (manual or code routing, operator
/// stops, retries of absent placements) is returned to go through the one-order pipeline,
/// which records exactly why. Orders that cannot be dispatched at all are left alone, as the
/// one-order pipeline leaves them.
pub fn prepare_batch(
    client: &mut Client,
    providers: &ProviderCache,
    ids: &[Uuid],
    opts: &DispatchOptions,
) -> Result<(Vec<Attempt>, Vec<Uuid>)> {
    let mut lookups = Lookups::default();
    let mut attempts = Vec::new();
    let mut others = Vec::new();
    for order in orders::load_orders(client, ids)? {
        if let Err(why) = check_dispatchable(&order) {
            log::info!("order {}: check_dispatchable: {why}", order.number);
            continue;
        }
        let (routing, view) = lookups.routing(client, order.package_id, &order.tenant)?;
        let plain = opts.provider_override.is_none()
            && !opts.operator
            && routing.mode == "auto"
            && routing.provider_type == "external"
            && order.provider_referans.is_none()
            && check_routing(&view).iter().all(|p| !blocks_external(p));
        if !plain {
            others.push(order.id);
            continue;
        }
        let mut steps = Steps::new(order.id, order.number, opts);
        record_first_steps(&order, &mut steps);
        let (candidates, message) = external_candidates(&routing, &view);
        steps.step("resolve_routing", message);
        let mut first_stop = None;
        match next_attempt(
            client,
            providers,
            &mut lookups,
            &order,
            &mut candidates.into_iter(),
            None,
            false,
            &mut first_stop,
            steps,
        )? {
            Ok(a) if first_stop.is_none() => attempts.push(a),
            // The primary cannot take it: the one-order pipeline records the stop or the fallback.
            _ => others.push(order.id),
        }
    }
    Ok((attempts, others))
}

/// No candidate took the order: the last rejection, or the first configuration stop, is what
/// the operator gets to see.
fn finish_without_candidate(
    client: &mut Client,
    order: &OrderRow,
    owned_lease: Option<i64>,
    last_rejection: Option<(String, String)>,
    first_stop: Option<(String, String, String)>,
    mut steps: Steps,
) -> Result<DispatchResult> {
    let mut tx = client.transaction()?;
    let result = if let Some((provider, message)) = last_rejection {
        let lease = owned_lease.ok_or_else(|| Error::internal("rejection without a claim"))?;
        let text = format!("placement rejected by {provider}: {message}");
        orders::record_rejected(&mut tx, order.id, lease, &text)?;
        steps.step(
            "record_outcome",
            format!("{text}; no fallback left: the order waits for an operator (no refund until `orderctl reject`)"),
        );
        DispatchResult::PlacementRejected { provider, message }
    } else if let Some((step, attention, message)) = first_stop {
        orders::record_dispatch_stopped(&mut tx, order.id, &attention, &message)?;
        log::warn!("order {}: dispatch stopped at {step}: {message}", order.number);
        DispatchResult::Stopped { step, attention, message }
    } else {
        let message = format!("package {} has no provider to send to", order.package);
        orders::record_dispatch_stopped(&mut tx, order.id, "routing", &message)?;
        DispatchResult::Stopped { step: "resolve_routing".into(), attention: "routing".into(), message }
    };
    orders::record_events(&mut tx, &steps.take())?;
    tx.commit()?;
    Ok(result)
}

/// Re-place an order whose ambiguous placement the provider turned out not to have, with the
/// same reference, under the lease the monitor holds.
pub fn replace_absent(
    client: &mut Client,
    providers: &ProviderCache,
    order_id: Uuid,
    lease: i64,
    opts: &DispatchOptions,
) -> Result<DispatchResult> {
    let order = orders::load_order(client, order_id)?;
    let (Some(pid), Some(reference)) = (order.provider_id, order.provider_referans.clone()) else {
        return Err(Error::internal("re-placement of an order without a reference"));
    };
    let steps = Steps::new(order_id, order.number, opts);
    let candidate = Candidate { provider_id: pid, reuse_reference: Some(reference), role: "retry" };
    place_with_candidates(client, providers, &order, vec![candidate], Some(lease), None, opts, steps)
}

/// For a provider that takes UUIDs, the first reference of an order is its own uuid, so
/// provider support can find it by our id; later attempts (fallback, operator re-dispatch) get a
/// fresh one each. A provider that takes only numbers (Znet) gets
/// `epoch_ms * 100000 + (order number % 100000)`, the milliseconds strictly increasing within
/// this process, so no two attempts here share one and orders differ by number across processes.
fn new_reference(order: &OrderRow, later_attempt: bool, style: ReferenceStyle) -> String {
    match style {
        ReferenceStyle::Uuid if later_attempt || order.provider_referans.is_some() => Uuid::new_v4().to_string(),
        ReferenceStyle::Uuid => order.id.to_string(),
        ReferenceStyle::Numeric => provider::new_reference(style, unique_millis(), order.number.unsigned_abs()),
    }
}

/// Milliseconds since the epoch, never the same twice in this process.
fn unique_millis() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn mapping_summary(mapping: &serde_json::Value) -> String {
    match mapping {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn placement_summary(o: &PlacementOutcome) -> String {
    match o {
        PlacementOutcome::Accepted { external_order_id, message, .. } => format!(
            "accepted{}{}",
            external_order_id.as_ref().map(|id| format!(" as {id}")).unwrap_or_default(),
            if message.is_empty() { String::new() } else { format!(" ({message})") }
        ),
        PlacementOutcome::Rejected { message } => format!("rejected: {message}"),
        PlacementOutcome::SentBefore { message } => format!("sent before: {message}"),
        PlacementOutcome::Ambiguous { reason } => format!("unknown outcome: {reason}"),
    }
}

fn scrub_placement(o: PlacementOutcome, secrets: &[String]) -> PlacementOutcome {
    use crate::provider::scrub;
    match o {
        PlacementOutcome::Accepted { external_order_id, message, early } => {
            PlacementOutcome::Accepted { external_order_id, message: scrub(&message, secrets), early }
        }
        PlacementOutcome::Rejected { message } => PlacementOutcome::Rejected { message: scrub(&message, secrets) },
        PlacementOutcome::SentBefore { message } => PlacementOutcome::SentBefore { message: scrub(&message, secrets) },
        PlacementOutcome::Ambiguous { reason } => PlacementOutcome::Ambiguous { reason: scrub(&reason, secrets) },
    }
}
