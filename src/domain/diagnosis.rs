//! Why an order is where it is, and what an operator can do, in one sentence. Pure: built from
//! the order's lifecycle state, its package routing and the database's clock. `inspect`,
//! `list --stuck`, `stats` and `doctor` all speak with these words.
//!
//! Whether an order is stuck is decided by one rule, [`StuckReason`]: the SQL that finds stuck
//! orders (`db::orders::stuck_orders`) is built from it, reason by reason, and a test holds the two
//! together.

use crate::domain::lifecycle::{Attention, Facts, State, MAX_PLACEMENTS};
use crate::domain::routing::{check_routing, ProviderType, RoutingMode, RoutingProblem, RoutingView};
use crate::domain::status::{ExternalStatus, OrderStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// The facts a diagnosis needs beyond the lifecycle's.
#[derive(Debug, Clone)]
pub struct OrderFacts<'a> {
    pub facts: &'a Facts,
    pub package: &'a str,
    pub provider: Option<&'a str>,
    pub last_message: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub routing: Option<&'a RoutingView>,
    pub pin_delivered: bool,
    pub refunded: Option<String>,
    /// A forwarded order: the order it was forwarded to, as far as this tenant may see it.
    pub upstream: Option<&'a UpstreamView>,
}

/// The order a forwarded order became, as the forwarding tenant sees it: the link and the
/// order's state, nothing else of the other tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamView {
    pub tenant: String,
    pub number: i64,
    pub status: OrderStatus,
    pub external_status: ExternalStatus,
    /// Its own diagnosis code (`waiting_for_operator`, `given_up`, `forwarded`, ...).
    pub code: &'static str,
    /// It is not moving and needs its tenant's operator (and so does the order forwarded to it).
    pub stuck: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    /// Stable identifier, e.g. `waiting_for_check`, `routing_auto_without_provider`.
    pub code: &'static str,
    /// One sentence for an operator: where the order is, why, and what to do.
    pub sentence: String,
    /// The order is not moving and needs someone.
    pub stuck: bool,
}

/// How late work may be before the order counts as stuck.
#[derive(Debug, Clone, Copy)]
pub struct StuckThresholds {
    pub overdue_after: Duration,
}

impl Default for StuckThresholds {
    fn default() -> Self {
        StuckThresholds { overdue_after: Duration::from_secs(300) }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn ago(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

fn late(now: DateTime<Utc>, since: DateTime<Utc>, limit: Duration) -> bool {
    (now - since).to_std().map(|e| e > limit).unwrap_or(false)
}

/// Routing that cannot be followed at all (the incident), as `stuck_orders` finds it.
fn contradictory(r: Option<&RoutingView>) -> Option<RoutingProblem> {
    check_routing(r?).into_iter().find(|p| {
        matches!(
            p,
            RoutingProblem::AutoWithManualProviderType { .. }
                | RoutingProblem::ExternalWithoutPrimary
                | RoutingProblem::CodesWithoutCodeGroup
        ) && r.map(|r| r.mode == RoutingMode::Auto).unwrap_or(false)
    })
}

/// Why an order counts as stuck: the one stuck rule. `is_stuck` is "any reason holds";
/// `db::orders::stuck_orders` finds the same orders in SQL, one fragment per reason built by an
/// exhaustive `match` over this enum (a reason added here does not compile without its SQL), and
/// `tests/it/states.rs` holds the two together on a database with an order of each reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckReason {
    /// Flagged for an operator (`attention` is set).
    Flagged,
    /// Open and held by a provider with nothing scheduled (not forwarded: the upstream moves it).
    HeldUnscheduled,
    /// Its work is overdue by more than the threshold.
    Overdue,
    /// Not sent, and its routing cannot be followed at all (the incident).
    RoutingContradicts,
    /// Not sent, routing says automatic (or a lane was chosen), and nothing is scheduled: lost.
    Lost,
    /// Open and forwarded to an order that is stuck (up a chain).
    UpstreamStuck,
    /// Not sent: its provider cannot take orders now (paused, draining, out of balance, in
    /// maintenance, breaker open) and no fallback can; the reason is its last message.
    WaitingForProvider,
}

impl StuckReason {
    pub const ALL: [StuckReason; 7] = [
        StuckReason::Flagged,
        StuckReason::HeldUnscheduled,
        StuckReason::Overdue,
        StuckReason::RoutingContradicts,
        StuckReason::Lost,
        StuckReason::UpstreamStuck,
        StuckReason::WaitingForProvider,
    ];

    pub fn holds(self, o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> bool {
        let f = o.facts;
        let pending = f.status == OrderStatus::Pending;
        let waiting_to_send = pending && f.external == ExternalStatus::NotSent && f.attention.is_none();
        match self {
            StuckReason::Flagged => f.attention.is_some(),
            StuckReason::HeldUnscheduled => {
                pending && o.next_check_at.is_none() && ExternalStatus::HELD.contains(&f.external) && !f.forwarded
            }
            StuckReason::Overdue => o.next_check_at.map(|t| late(now, t, limits.overdue_after)).unwrap_or(false),
            StuckReason::RoutingContradicts => waiting_to_send && contradictory(o.routing).is_some(),
            StuckReason::Lost => waiting_to_send && o.next_check_at.is_none() && lost(f, o.routing),
            // A forwarded order moves when the order it was forwarded to moves.
            StuckReason::UpstreamStuck => f.forwarded && pending && o.upstream.is_some_and(|u| u.stuck),
            StuckReason::WaitingForProvider => pending && f.external == ExternalStatus::WaitingForProvider,
        }
    }
}

/// The stuck rule: any [`StuckReason`] holds.
pub fn is_stuck(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> bool {
    StuckReason::ALL.iter().any(|r| r.holds(o, now, limits))
}

/// An order waiting to be sent that routing says goes automatically, with nothing scheduled:
/// no lane will ever pick it up.
fn lost(f: &Facts, routing: Option<&RoutingView>) -> bool {
    f.lane != 0 || routing.map(|r| r.mode == RoutingMode::Auto).unwrap_or(false)
}

pub fn diagnose(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> Diagnosis {
    let stuck = is_stuck(o, now, limits);
    let (code, sentence) = explain(o, now, limits);
    Diagnosis { code, sentence, stuck }
}

fn explain(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> (&'static str, String) {
    let f = o.facts;
    let (provider, reference, n) = names(o);
    let at = |t: Option<DateTime<Utc>>| t.map(|t| format!(" at {}", ts(t))).unwrap_or_default();
    match State::of(f) {
        State::Approved => (
            "approved",
            format!("approved{}{}: nothing to do", at(o.completed_at), if o.pin_delivered { " with its PIN" } else { "" }),
        ),
        State::Rejected => (
            "rejected_refunded",
            format!(
                "rejected{} and refunded {}{}: nothing to do",
                at(o.completed_at),
                o.refunded.as_deref().unwrap_or("0.00"),
                o.last_message.map(|m| format!(" ({m})")).unwrap_or_default()
            ),
        ),
        State::Forwarded => forwarded(o),
        State::Watched if f.forwarded => (
            "watched_after_decision",
            format!(
                "{} by an operator while the order it was forwarded to{} was still open; if that order is delivered, the \
                 delivery is recorded and flagged for `orderctl settle {n}`",
                f.status,
                o.upstream.map(|u| format!(" ({}'s order {})", u.tenant, u.number)).unwrap_or_default()
            ),
        ),
        State::Watched => (
            "watched_after_decision",
            format!(
                "{} by an operator while {provider} still held it (reference {reference}); still watched: if {provider} delivers, \
                 the delivery is recorded and flagged for `orderctl settle {n}`",
                f.status
            ),
        ),
        State::NeedsOperator(a) => attention(o, a),
        State::New => not_sent(o, now, limits),
        State::WaitingForProvider => (
            "waiting_for_provider",
            format!(
                "not sent: {}; it is placed when {provider} is back (`orderctl provider list` shows why; \
                 `orderctl provider resume {provider}` ends a pause)",
                o.last_message.unwrap_or("its provider cannot take orders now")
            ),
        ),
        State::ToPlace { .. } | State::WaitingForOperator if o.next_check_at.is_none() && lost(f, o.routing) => (
            "undispatched",
            format!(
                "not sent {} after it was created, and nothing is scheduled to send it (its schedule was lost): \
                 `orderctl dispatch {n}` sends it now",
                ago(now, o.created_at)
            ),
        ),
        State::ToPlace { reuse } => to_place(o, now, limits, reuse),
        State::Reconciling => reconciling(o, now),
        State::Placing => placing(o, now),
        State::WithProvider => with_provider(o, now, limits),
        State::WaitingForOperator => waiting_for_operator(o),
        State::Inconsistent => (
            "unknown_state",
            format!("in state {} / {}, which orderctl does not expect; inspect its events", f.status, f.external),
        ),
    }
}

/// The provider, the reference and the number every sentence below names.
fn names<'a>(o: &OrderFacts<'a>) -> (&'a str, &'a str, i64) {
    (o.provider.unwrap_or("?"), o.facts.reference.as_deref().unwrap_or("?"), o.facts.number)
}

fn to_place(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds, reuse: bool) -> (&'static str, String) {
    let (provider, reference, n) = names(o);
    match o.next_check_at {
        Some(t) if late(now, t, limits.overdue_after) => (
            "undispatched",
            format!(
                "waiting {} to be placed with {provider} although its lane should have taken it: is `orderctl daemon` or \
                 `orderctl sweep` running? (`orderctl dispatch {n}` sends it now)",
                ago(now, t)
            ),
        ),
        _ => (
            "waiting_for_dispatch",
            format!(
                "waiting to be placed with {provider}{} (created {} ago)",
                if reuse {
                    format!(
                        " again with reference {reference}, which it never received (placement {} of {MAX_PLACEMENTS})",
                        o.facts.placement_attempts + 1
                    )
                } else {
                    String::new()
                },
                ago(now, o.created_at)
            ),
        ),
    }
}

fn reconciling(o: &OrderFacts, now: DateTime<Utc>) -> (&'static str, String) {
    let (provider, reference, n) = names(o);
    (
        "awaiting_reconciliation",
        format!(
            "placement with {provider} had an unknown outcome ({}); a status check with reference {reference} {} decides whether \
             it exists; it is never placed blindly again (`orderctl poll {n}` checks now)",
            o.last_message.unwrap_or("no clear answer"),
            match o.next_check_at {
                Some(t) if t > now => format!("at {}", ts(t)),
                _ => "is due now".into(),
            }
        ),
    )
}

fn placing(o: &OrderFacts, now: DateTime<Utc>) -> (&'static str, String) {
    let (provider, reference, n) = names(o);
    match o.next_check_at {
        Some(t) if t > now => (
            "dispatching",
            format!(
                "being placed with {provider} (reference {reference}, placement {} of {MAX_PLACEMENTS}); if that process died, the \
                 order is reconciled by a status check at {}",
                o.facts.placement_attempts,
                ts(t)
            ),
        ),
        _ => (
            "dispatch_interrupted",
            format!(
                "a placement with {provider} (reference {reference}) did not finish; it is due for reconciliation by a status check \
                 with that reference: is `orderctl daemon` or `orderctl sweep` running? (`orderctl poll {n}` checks now)"
            ),
        ),
    }
}

fn with_provider(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> (&'static str, String) {
    let (provider, reference, n) = names(o);
    let f = o.facts;
    match o.next_check_at {
        Some(t) if t > now => (
            "waiting_for_check",
            format!(
                "with {provider} (reference {reference}), {}; {} check(s) so far, next status check at {}",
                if f.external == ExternalStatus::Sent { "sent" } else { "in progress" },
                f.checks,
                ts(t)
            ),
        ),
        Some(t) if late(now, t, limits.overdue_after) => (
            "check_overdue",
            format!(
                "with {provider} (reference {reference}); its status check is overdue since {} ({} late): is `orderctl daemon` \
                 or `orderctl sweep` running? (`orderctl poll {n}` checks now)",
                ts(t),
                ago(now, t)
            ),
        ),
        Some(_) => {
            ("check_due", format!("with {provider} (reference {reference}); its status check is due now ({} so far)", f.checks))
        }
        None => (
            "unscheduled",
            format!(
                "with {provider} (reference {reference}) but no status check is scheduled; `orderctl poll {n}` checks it now and \
                 the batch safety sweep will pick it up"
            ),
        ),
    }
}

fn attention(o: &OrderFacts, a: Attention) -> (&'static str, String) {
    let (provider, reference, n) = names(o);
    let message = |default: &str| o.last_message.unwrap_or(default).to_string();
    match a {
        Attention::GivenUp => (
            "given_up",
            format!(
                "given up: {} from {provider} (reference {reference}); the provider may still deliver, so no refund was made: ask \
                 {provider}, then `orderctl approve {n} --pin PIN` or `orderctl reject {n} --reason TEXT`",
                message("no final answer in time")
            ),
        ),
        Attention::PlacementRejected => (
            "placement_rejected",
            format!(
                "{}; no fallback left, the order waits for an operator: fix the cause and `orderctl dispatch {n}` (or \
                 `--provider NAME`), or `orderctl reject {n} --reason TEXT` to refund",
                message("placement rejected by the provider")
            ),
        ),
        Attention::PlacementLimit => (
            "placement_limit",
            format!(
                "{}: the placement budget with {provider} ({MAX_PLACEMENTS}) is used up without a confirmed order; ask {provider} \
                 about reference {reference}, then `orderctl dispatch {n}` (or `--provider NAME`) or `orderctl reject {n} --reason TEXT`",
                message("placements never confirmed")
            ),
        ),
        Attention::DeliveredAfterRefund => (
            "delivered_after_refund",
            format!(
                "{provider} delivered (reference {reference}) after an operator rejected and refunded the order; the late PIN is \
                 stored: `orderctl settle {n} --recharge` (the buyer gets it and pays again) or `orderctl settle {n} --write-off`"
            ),
        ),
        Attention::DeliveredAfterManualApproval => (
            "delivered_after_manual_approval",
            format!(
                "{provider} delivered (reference {reference}) after an operator approved the order by hand; the provider's PIN is \
                 stored as the late PIN: `orderctl settle {n} --write-off` records its cost"
            ),
        ),
        Attention::ForwardRefused => (
            "forward_refused",
            format!(
                "{}; nothing was created there and nothing refunded here: fix the cause (the account's balance or overdraft \
                 there, the package there), then `orderctl dispatch {n}`, or `orderctl reject {n} --reason TEXT` to refund",
                message("the other tenant refused the forwarded order")
            ),
        ),
        Attention::MayBeHeld => (
            "may_be_held",
            format!(
                "may be held by {provider} under reference {reference}: check before rejecting. A re-placement was refused, which \
                 proves nothing about the first placement; ask {provider} about the reference, then `orderctl approve {n} --pin PIN` \
                 (it delivered) or `orderctl reject {n} --reason TEXT` (it has no such order); never sent elsewhere meanwhile"
            ),
        ),
        Attention::PinMissing => (
            "pin_missing",
            format!(
                "{provider} approved the order (reference {reference}) without a PIN, but this product delivers PINs: not approved \
                 yet; ask {provider} for the PIN, then `orderctl approve {n} --pin PIN`"
            ),
        ),
        Attention::WriteRefused => (
            "write_refused",
            format!(
                "{}; inspect its history, then `orderctl dispatch {n}`, `orderctl approve {n} --pin PIN` or `orderctl reject {n} --reason TEXT`",
                message("the database refused a result for this order")
            ),
        ),
        Attention::Routing | Attention::NoMapping | Attention::ProviderDisabled | Attention::CodeStockEmpty => {
            let code = match a {
                Attention::NoMapping => "no_mapping",
                Attention::ProviderDisabled => "provider_disabled",
                Attention::CodeStockEmpty => "code_stock_empty",
                _ => routing_code(o.routing),
            };
            let text = message("dispatch stopped on a configuration problem");
            let text = text.strip_prefix("not sent: ").unwrap_or(&text);
            (code, format!("not sent: {text}"))
        }
    }
}

fn routing_code(r: Option<&RoutingView>) -> &'static str {
    match r.map(check_routing).and_then(|p| p.into_iter().next()) {
        Some(RoutingProblem::AutoWithManualProviderType { .. }) | Some(RoutingProblem::ExternalWithoutPrimary) => {
            "routing_auto_without_provider"
        }
        Some(RoutingProblem::EmptyCodeGroup { .. }) => "code_stock_empty",
        Some(RoutingProblem::PrimaryDisabled { .. }) => "provider_disabled",
        Some(RoutingProblem::MissingMapping { .. }) => "no_mapping",
        _ => "routing_problem",
    }
}

/// A forwarded order: where the order it was forwarded to is, in words this tenant may read.
fn forwarded(o: &OrderFacts) -> (&'static str, String) {
    let n = o.facts.number;
    let Some(u) = o.upstream else {
        return ("forwarded", "forwarded to another tenant; this order finishes when that order does".to_string());
    };
    let (t, un) = (&u.tenant, u.number);
    match u.code {
        "waiting_for_operator" => (
            "forwarded_waiting_for_operator",
            format!(
                "waiting for {t}'s operator, order {un}: it was forwarded there and is delivered by hand; this order finishes \
                 when that one does"
            ),
        ),
        "forwarded_waiting_for_operator" => (
            "forwarded_waiting_for_operator",
            format!(
                "forwarded to {t} as order {un}, which waits for an operator further up the chain; this order finishes when \
                 that one does"
            ),
        ),
        _ if u.stuck => (
            "forwarded_stuck",
            format!(
                "forwarded to {t} as order {un}, which is not moving ({}): {t}'s operator must act; ask them, or decide here \
                 with `orderctl approve {n} --pin PIN --force` or `orderctl reject {n} --reason TEXT --force`",
                u.code
            ),
        ),
        _ => (
            "forwarded",
            format!(
                "forwarded to {t} as order {un} ({} / {} there); this order finishes when that one does",
                u.status, u.external_status
            ),
        ),
    }
}

fn waiting_for_operator(o: &OrderFacts) -> (&'static str, String) {
    let n = o.facts.number;
    let sendable = o.routing.map(|r| r.provider_type == ProviderType::External).unwrap_or(false);
    (
        "waiting_for_operator",
        format!(
            "waiting for an operator: package {} is routed manually; deliver it, then `orderctl approve {n} --pin PIN`, or \
             `orderctl reject {n} --reason TEXT`{}",
            o.package,
            if sendable { format!(", or send it with `orderctl dispatch {n}`") } else { String::new() }
        ),
    )
}

fn not_sent(o: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> (&'static str, String) {
    let n = o.facts.number;
    // The incident: routing that has nowhere to send the order, found before anyone waits.
    if let Some(p) = contradictory(o.routing) {
        return (
            "routing_auto_without_provider",
            format!(
                "not sent: routing for package {} is auto but has no provider ({}): {}; then `orderctl dispatch {n}`",
                o.package,
                p.problem(),
                p.fix()
            ),
        );
    }
    if let Some(r) = o.routing {
        if r.provider_type == ProviderType::Manual || r.mode == RoutingMode::Manual {
            return waiting_for_operator(o);
        }
    }
    match o.next_check_at {
        Some(t) if late(now, t, limits.overdue_after) => (
            "undispatched",
            format!(
                "not dispatched {} after it was created although routing is auto: is `orderctl daemon` or `orderctl sweep` running? \
                 (`orderctl dispatch {n}` sends it now)",
                ago(now, o.created_at)
            ),
        ),
        _ => ("waiting_for_dispatch", format!("waiting to be dispatched (created {} ago)", ago(now, o.created_at))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lifecycle::tests::facts;
    use crate::domain::routing::RoutedProvider;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn order<'a>(f: &'a Facts, routing: Option<&'a RoutingView>) -> OrderFacts<'a> {
        OrderFacts {
            facts: f,
            package: "pubg-60",
            provider: Some("znet-main"),
            last_message: None,
            created_at: now() - chrono::Duration::hours(2),
            dispatched_at: None,
            completed_at: None,
            next_check_at: None,
            routing,
            pin_delivered: false,
            refunded: None,
            upstream: None,
        }
    }

    fn routing(mode: RoutingMode, pt: ProviderType, primary: bool) -> RoutingView {
        RoutingView {
            tenant: "alsham".into(),
            package: "pubg-60".into(),
            mode,
            provider_type: pt,
            primary: primary.then(|| RoutedProvider { name: "znet-main".into(), enabled: true, has_mapping: true }),
            fallback: None,
            code_group: None,
            upstream: None,
        }
    }

    #[test]
    fn the_incident_order_explains_itself() {
        let r = routing(RoutingMode::Auto, ProviderType::Manual, false);
        let f = facts();
        let dg = diagnose(&order(&f, Some(&r)), now(), StuckThresholds::default());
        assert_eq!(dg.code, "routing_auto_without_provider");
        assert!(dg.stuck);
        assert!(dg.sentence.contains("routing for package pubg-60 is auto but has no provider"), "{}", dg.sentence);
        assert!(dg.sentence.contains("or use mode manual"), "{}", dg.sentence);
    }

    #[test]
    fn manual_routing_waits_for_an_operator_and_is_not_stuck() {
        let r = routing(RoutingMode::Manual, ProviderType::Manual, false);
        let f = Facts { scheduled: false, ..facts() };
        let dg = diagnose(&order(&f, Some(&r)), now(), StuckThresholds::default());
        assert_eq!(dg.code, "waiting_for_operator");
        assert!(!dg.stuck);
        assert!(dg.sentence.contains("orderctl approve 1042 --pin PIN"));
    }

    #[test]
    fn work_waiting_too_long_is_stuck() {
        let r = routing(RoutingMode::Auto, ProviderType::External, true);
        let f = Facts { lane: 7, provider_id: Some(7), ..facts() };
        let mut o = order(&f, Some(&r));
        o.next_check_at = Some(now() - chrono::Duration::hours(2));
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!(dg.code, "undispatched");
        assert!(dg.stuck);
        o.next_check_at = Some(now() - chrono::Duration::seconds(5));
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!((dg.code, dg.stuck), ("waiting_for_dispatch", false));
    }

    #[test]
    fn checks_are_waiting_then_overdue() {
        let f =
            Facts { external: ExternalStatus::Sent, lane: 7, provider_id: Some(7), reference: Some("ref-1".into()), ..facts() };
        let mut o = order(&f, None);
        o.next_check_at = Some(now() + chrono::Duration::seconds(30));
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!(dg.code, "waiting_for_check");
        assert!(dg.sentence.contains("next status check at 2026-11-22T12:00:30Z"), "{}", dg.sentence);
        o.next_check_at = Some(now() - chrono::Duration::hours(1));
        assert_eq!(diagnose(&o, now(), StuckThresholds::default()).code, "check_overdue");
    }

    #[test]
    fn a_forwarded_order_says_where_its_upstream_order_is_and_is_stuck_only_when_that_one_is() {
        let f = Facts { external: ExternalStatus::Sent, forwarded: true, scheduled: false, ..facts() };
        let up = |code: &'static str, stuck: bool| UpstreamView {
            tenant: "wholesale".into(),
            number: 2041,
            status: OrderStatus::Pending,
            external_status: ExternalStatus::NotSent,
            code,
            stuck,
        };
        let manual = up("waiting_for_operator", false);
        let mut o = order(&f, None);
        o.upstream = Some(&manual);
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!((dg.code, dg.stuck), ("forwarded_waiting_for_operator", false));
        assert!(dg.sentence.starts_with("waiting for wholesale's operator, order 2041"), "{}", dg.sentence);
        let given_up = up("given_up", true);
        o.upstream = Some(&given_up);
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!((dg.code, dg.stuck), ("forwarded_stuck", true));
        assert!(dg.sentence.contains("--force"), "{}", dg.sentence);
        let moving = up("waiting_for_check", false);
        o.upstream = Some(&moving);
        let dg = diagnose(&o, now(), StuckThresholds::default());
        assert_eq!((dg.code, dg.stuck), ("forwarded", false), "nothing scheduled here is not stuck: {}", dg.sentence);
    }

    #[test]
    fn every_attention_is_stuck_and_names_what_to_do() {
        for &a in Attention::ALL {
            let f = Facts { attention: Some(a), external: ExternalStatus::Failed, reference: Some("r".into()), ..facts() };
            let dg = diagnose(&order(&f, None), now(), StuckThresholds::default());
            assert!(dg.stuck, "{a}");
            assert!(dg.sentence.contains("orderctl") || dg.sentence.starts_with("not sent"), "{a}: {}", dg.sentence);
        }
    }
}
