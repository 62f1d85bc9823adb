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
use crate::domain::routing::{check_routing, RoutingProblem};
use crate::error::{Error, Result};
use crate::provider::cache::ProviderCache;
use crate::provider::{CheckOutcome, PlacementOutcome, PlacementRequest};
use postgres::Client;
use serde::Serialize;
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
pub fn dispatch(client: &mut Client, providers: &ProviderCache, order_id: Uuid, opts: &DispatchOptions) -> Result<DispatchReport> {
    // load_order
    let order = orders::load_order(client, order_id)?;
    let mut steps = Steps::new(order_id, order.number, opts);
    steps.external_status = Some(order.external_status.clone());
    steps.step(
        "load_order",
        format!("order {} of tenant {}: {} × {} for player {}", order.number, order.tenant, order.quantity, order.package, order.user_identifier),
    );
    let report = |result| DispatchReport { id: order.id, number: order.number, result };

    // check_dispatchable
    if let Err(why) = check_dispatchable(&order) {
        log::info!("order {}: check_dispatchable: {why}", order.number);
        return Ok(report(DispatchResult::NotDispatchable { message: why }));
    }
    steps.step("check_dispatchable", format!("status {} / {}: can be placed", order.status, order.external_status));

    // resolve_routing
    let routing = routing_db::package_routing(client, order.package_id)?;
    let candidates = match resolve_routing(client, &order, &routing, opts, &mut steps)? {
        Routed::Candidates(c) => c,
        Routed::Done(result) => return Ok(report(result)),
    };

    let result = place_with_candidates(client, providers, &order, candidates, None, opts, steps)?;
    log::info!("order {}: dispatch: {}", order.number, result_summary(&result));
    Ok(report(result))
}

/// One line per order for the logs.
fn result_summary(r: &DispatchResult) -> String {
    match r {
        DispatchResult::Sent { provider, reference } => format!("sent to {provider} (reference {reference})"),
        DispatchResult::Approved { .. } => "approved at once".into(),
        DispatchResult::Rejected { message } => format!("cancelled at once and refunded: {message}"),
        DispatchResult::WaitingForOperator => "waiting for an operator (manual routing)".into(),
        DispatchResult::PlacementRejected { provider, message } => format!("rejected by {provider}: {message}; waits for an operator"),
        DispatchResult::AwaitingReconciliation { provider, message, .. } => format!("outcome unknown at {provider} ({message}); awaiting reconciliation"),
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
    order: &OrderRow,
    routing: &PackageRouting,
    opts: &DispatchOptions,
    steps: &mut Steps,
) -> Result<Routed> {
    if let Some(name) = &opts.provider_override {
        let (id, _enabled) = routing_db::provider_by_name(client, order.tenant_id, name)?;
        steps.step("resolve_routing", format!("operator override: provider {name}"));
        return Ok(Routed::Candidates(vec![Candidate { provider_id: id, reuse_reference: None, role: "override" }]));
    }
    let views = routing_db::routing_views(client, Some(&order.tenant), Some(order.package_id))?;
    let view = &views.first().ok_or_else(|| Error::internal("package vanished during dispatch"))?.1;
    let problems = check_routing(view);
    let blocking: Vec<&RoutingProblem> = problems
        .iter()
        .filter(|p| p.blocks_dispatch() && !matches!(p, RoutingProblem::MissingMapping { .. } | RoutingProblem::PrimaryDisabled { .. } | RoutingProblem::EmptyCodeGroup { .. }))
        .collect();
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
    let waits_for_operator = routing.provider_type == "manual" || (routing.mode == "manual" && !opts.operator);
    match routing.provider_type.as_str() {
        _ if waits_for_operator => {
            steps.step("resolve_routing", format!("package {} is routed manually: waiting for an operator", order.package));
            if !opts.dry_run {
                let mut tx = client.transaction()?;
                orders::record_waiting_for_operator(&mut tx, order.id, "manual routing: waiting for an operator")?;
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
                    request: format!("take {} code(s) from code group {}", order.quantity, view.code_group.as_ref().map(|g| g.0.as_str()).unwrap_or("?")),
                }));
            }
            {
                let mut tx = client.transaction()?;
                orders::record_events(&mut tx, &steps.take())?;
                tx.commit()?;
            }
            match orders::take_codes(client, order.id, group, order.quantity)? {
                Some(codes) if codes.is_empty() => Ok(Routed::Done(DispatchResult::NotDispatchable {
                    message: "another process dispatched the order first".into(),
                })),
                Some(codes) => Ok(Routed::Done(DispatchResult::Approved { pin: Some(codes.join(", ")) })),
                None => {
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
            if candidates.is_empty() {
                if let Some(p) = routing.primary_provider_id {
                    candidates.push(Candidate { provider_id: p, reuse_reference: None, role: "primary" });
                }
                if let Some(f) = routing.fallback_provider_id {
                    candidates.push(Candidate { provider_id: f, reuse_reference: None, role: "fallback" });
                }
            }
            let names: Vec<String> = [view.primary.as_ref(), view.fallback.as_ref()]
                .iter()
                .flatten()
                .map(|p| p.name.clone())
                .collect();
            steps.step("resolve_routing", format!("{} → external: {}", routing.mode, names.join(", then ")));
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

/// Try the candidates in order: resolve mapping and provider, write the reference, place,
/// record. A definite rejection moves on to the next candidate (the fallback) with its own
/// reference; anything else ends the dispatch.
///
/// `owned_lease`: the order is already `dispatching` under this lease (the monitor
/// re-placing after reconciliation showed the provider never got it).
fn place_with_candidates(
    client: &mut Client,
    providers: &ProviderCache,
    order: &OrderRow,
    candidates: Vec<Candidate>,
    mut owned_lease: Option<i64>,
    opts: &DispatchOptions,
    mut steps: Steps,
) -> Result<DispatchResult> {
    let mut first_stop: Option<(String, String, String)> = None;
    let mut last_rejection: Option<(String, String)> = None;
    for candidate in candidates {
        // resolve_mapping
        let provider_name = provider_name(client, candidate.provider_id)?;
        let Some(mapping) = orders::mapping(client, order.package_id, candidate.provider_id)? else {
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
        let enabled: bool = provider_enabled(client, candidate.provider_id)?;
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
        let reference = candidate.reuse_reference.clone().unwrap_or_else(|| new_reference(order, owned_lease.is_some() || last_rejection.is_some()));
        let request = PlacementRequest {
            reference: reference.clone(),
            player: order.user_identifier.clone(),
            extra: order.extra_field.clone(),
            quantity: order.quantity,
            mapping,
        };
        if opts.dry_run {
            return Ok(DispatchResult::DryRun { provider: provider_name, request: adapter.describe_placement(&request) });
        }

        // The provider's limit on calls in flight holds across every process: take a permit
        // before claiming, so an order that has to wait is not yet bound to this provider.
        let Some(slot) = wait_for_permit(client, candidate.provider_id, opts)? else {
            let message = format!("provider {provider_name} is at its limit of calls in flight; trying again shortly");
            log::info!("order {}: {message}", order.number);
            if owned_lease.is_none() {
                orders::defer(client, order.id, Duration::from_secs(1))?;
            }
            return Ok(DispatchResult::NotDispatchable { message });
        };
        let result = claim_place_record(client, order, &candidate, &provider_name, &adapter, request, reuse, &mut owned_lease, opts, &mut steps);
        permits::release(client, candidate.provider_id, &permit_holder(), &[slot])?;
        match result? {
            Some(ControlFlow::Done(r)) => return Ok(r),
            Some(ControlFlow::NextCandidate(provider, message)) => {
                last_rejection = Some((provider, message));
                continue;
            }
            None => return Ok(DispatchResult::NotDispatchable { message: "another process dispatched the order first".into() }),
        }
    }
    finish_without_candidate(client, order, owned_lease, last_rejection, first_stop, steps)
}

enum ControlFlow {
    Done(DispatchResult),
    /// Rejected by this provider: try the next one.
    NextCandidate(String, String),
}

/// One process's identity for permits.
fn permit_holder() -> String {
    format!("{}:{}", std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(), std::process::id())
}

/// Take one permit for the provider, waiting a little when all are held.
fn wait_for_permit(client: &mut Client, provider_id: i64, opts: &DispatchOptions) -> Result<Option<i32>> {
    let deadline = std::time::Instant::now() + if opts.operator { Duration::from_secs(10) } else { Duration::from_millis(500) };
    loop {
        if let Some(slot) = permits::acquire(client, provider_id, &permit_holder(), 1, opts.placement_lease)?.first() {
            return Ok(Some(*slot));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// write_reference → place → record_outcome (→ schedule_first_check). None: another process
/// won the claim and nothing was sent.
#[allow(clippy::too_many_arguments)]
fn claim_place_record(
    client: &mut Client,
    order: &OrderRow,
    candidate: &Candidate,
    provider_name: &str,
    adapter: &std::sync::Arc<dyn crate::provider::Provider>,
    request: PlacementRequest,
    reuse: bool,
    owned_lease: &mut Option<i64>,
    opts: &DispatchOptions,
    steps: &mut Steps,
) -> Result<Option<ControlFlow>> {
    let reference = request.reference.clone();
    // write_reference: the claim, committed before the call.
    let lease = {
        let mut tx = client.transaction()?;
        let won = orders::claim_for_placement(&mut tx, order.id, candidate.provider_id, &reference, reuse, *owned_lease, opts.placement_lease)?;
        let Some(lease) = won else {
            tx.rollback()?;
            log::info!("order {}: another process claimed the order first; nothing sent", order.number);
            return Ok(None);
        };
        steps.external_status = Some("dispatching".into());
        steps.step(
            "write_reference",
            format!("reference {reference} for {provider_name} committed before sending{}", if reuse { " (reused: the provider never got it)" } else { "" }),
        );
        orders::record_events(&mut tx, &steps.take())?;
        tx.commit()?;
        lease
    };

    // place
    let outcome = scrub_placement(adapter.place(&request), &adapter.config().secrets());
    steps.step("place", format!("{provider_name} answered: {}", placement_summary(&outcome)));
    steps.external_status = None;

    // record_outcome (+ schedule_first_check)
    let mut tx = client.transaction()?;
    let result = match outcome {
        PlacementOutcome::Accepted { external_order_id, message, early } => {
            orders::set_placement_outcome(&mut tx, candidate.provider_id, &reference, "accepted", &message)?;
            let Some(new_lease) = orders::record_accepted(&mut tx, order.id, lease, external_order_id.as_deref(), &message, opts.policy.first_check)? else {
                tx.commit()?;
                log::warn!("order {}: accepted by {provider_name}, but another process took the order over meanwhile; its result stands", order.number);
                return Ok(Some(ControlFlow::Done(DispatchResult::Sent { provider: provider_name.into(), reference })));
            };
            steps.step("record_outcome", format!("accepted by {provider_name}: status sent"));
            match early {
                Some(CheckOutcome::Approved { pin, message }) => {
                    orders::finish_approved(&mut tx, order.id, Some(new_lease), pin.as_deref(), &message)?;
                    steps.step("record_outcome", "the provider delivered at once: order approved");
                    DispatchResult::Approved { pin }
                }
                Some(CheckOutcome::Cancelled { message }) => {
                    let refund = orders::finish_rejected(&mut tx, order.id, Some(new_lease), &message)?;
                    steps.step("record_outcome", format!("the provider cancelled at once: order rejected, refunded {}", refund.unwrap_or_default()));
                    DispatchResult::Rejected { message }
                }
                _ => {
                    steps.step("schedule_first_check", format!("first status check in {}", humantime::format_duration(opts.policy.first_check)));
                    DispatchResult::Sent { provider: provider_name.into(), reference: reference.clone() }
                }
            }
        }
        PlacementOutcome::Rejected { message } if !reuse => {
            orders::set_placement_outcome(&mut tx, candidate.provider_id, &reference, "rejected", &message)?;
            steps.step("record_outcome", format!("rejected by {provider_name}: {message}"));
            orders::record_events(&mut tx, &steps.take())?;
            tx.commit()?;
            // Still ours: the next candidate is claimed under this lease.
            *owned_lease = Some(lease);
            return Ok(Some(ControlFlow::NextCandidate(provider_name.into(), message)));
        }
        PlacementOutcome::Rejected { message } | PlacementOutcome::Ambiguous { reason: message } => {
            // A rejection of a reused reference may mean "already placed": only a check knows.
            let message = if reuse { format!("re-placement rejected ({message}); the first attempt may exist") } else { message };
            orders::set_placement_outcome(&mut tx, candidate.provider_id, &reference, "ambiguous", &message)?;
            let reconcile_after = opts.policy.first_check.min(Duration::from_secs(60));
            orders::record_ambiguous(&mut tx, order.id, lease, &message, reconcile_after)?;
            steps.step("record_outcome", format!("outcome unknown ({message}): awaiting reconciliation by a status check with reference {reference}"));
            DispatchResult::AwaitingReconciliation { provider: provider_name.into(), reference, message }
        }
    };
    orders::record_events(&mut tx, &steps.take())?;
    tx.commit()?;
    Ok(Some(ControlFlow::Done(result)))
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
        steps.step("record_outcome", format!("{text}; no fallback left: the order waits for an operator (no refund until `orderctl reject`)"));
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
    place_with_candidates(client, providers, &order, vec![candidate], Some(lease), opts, steps)
}

/// The first reference of an order is its own uuid, so provider support can find it by our
/// id; later attempts (fallback, operator re-dispatch) get a fresh one each.
fn new_reference(order: &OrderRow, later_attempt: bool) -> String {
    if later_attempt || order.provider_referans.is_some() {
        Uuid::new_v4().to_string()
    } else {
        order.id.to_string()
    }
}

fn provider_name(client: &mut Client, id: i64) -> Result<String> {
    Ok(client.query_one("SELECT name FROM providers WHERE id = $1", &[&id])?.get(0))
}

fn provider_enabled(client: &mut Client, id: i64) -> Result<bool> {
    Ok(client.query_one("SELECT enabled FROM providers WHERE id = $1", &[&id])?.get(0))
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
        PlacementOutcome::Ambiguous { reason } => PlacementOutcome::Ambiguous { reason: scrub(&reason, secrets) },
    }
}
