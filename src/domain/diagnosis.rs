//! Why an order is where it is, and what an operator can do, in one sentence. Pure: built from
//! the order's fields, its package routing and the clock. `inspect`, `list --stuck`, `stats`
//! and `doctor` all speak with these words.

use crate::domain::routing::{check_routing, ProviderType, RoutingMode, RoutingProblem, RoutingView};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;

/// The facts a diagnosis needs.
#[derive(Debug, Clone)]
pub struct OrderFacts<'a> {
    pub number: i64,
    pub package: &'a str,
    pub status: &'a str,
    pub external_status: &'a str,
    pub attention: Option<&'a str>,
    pub awaiting_reconciliation: bool,
    pub provider: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub last_message: Option<&'a str>,
    pub checks: i32,
    pub created_at: DateTime<Utc>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub routing: Option<&'a RoutingView>,
    pub pin_delivered: bool,
    pub refunded: Option<String>,
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

/// How late an expected event may be before the order counts as stuck.
#[derive(Debug, Clone, Copy)]
pub struct StuckThresholds {
    /// An auto order still not sent after this long.
    pub undispatched_after: Duration,
    /// A status check this late.
    pub overdue_after: Duration,
}

impl Default for StuckThresholds {
    fn default() -> Self {
        StuckThresholds { undispatched_after: Duration::from_secs(300), overdue_after: Duration::from_secs(300) }
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn d(code: &'static str, sentence: String, stuck: bool) -> Diagnosis {
    Diagnosis { code, sentence, stuck }
}

fn late(now: DateTime<Utc>, since: DateTime<Utc>, limit: Duration) -> bool {
    (now - since).to_std().map(|e| e > limit).unwrap_or(false)
}

fn ago(now: DateTime<Utc>, since: DateTime<Utc>) -> String {
    let secs = (now - since).num_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

pub fn diagnose(f: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> Diagnosis {
    let n = f.number;
    match f.status {
        "approved" => {
            return d(
                "approved",
                format!(
                    "approved{}{}: nothing to do",
                    f.completed_at.map(|t| format!(" at {}", ts(t))).unwrap_or_default(),
                    if f.pin_delivered { " with its PIN" } else { "" }
                ),
                false,
            )
        }
        "rejected" => {
            return d(
                "rejected_refunded",
                format!(
                    "rejected{} and refunded {}{}: nothing to do",
                    f.completed_at.map(|t| format!(" at {}", ts(t))).unwrap_or_default(),
                    f.refunded.as_deref().unwrap_or("0.00"),
                    f.last_message.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
                false,
            )
        }
        _ => {}
    }
    let provider = f.provider.unwrap_or("?");
    let reference = f.reference.unwrap_or("?");
    match (f.external_status, f.attention) {
        (_, Some("given_up")) => d(
            "given_up",
            format!(
                "given up: {} from {provider} (reference {reference}); the provider may still deliver, so no refund was made: \
                 ask {provider}, then `orderctl approve {n} --pin PIN` or `orderctl reject {n} --reason TEXT`",
                f.last_message.unwrap_or("no final answer in time")
            ),
            true,
        ),
        (_, Some("placement_rejected")) => d(
            "placement_rejected",
            format!(
                "{}; no fallback left, the order waits for an operator: fix the cause and `orderctl dispatch {n} --provider NAME`, \
                 or `orderctl reject {n} --reason TEXT` to refund",
                f.last_message.unwrap_or("placement rejected by the provider")
            ),
            true,
        ),
        (_, Some("routing")) | (_, Some("no_mapping")) | (_, Some("provider_disabled")) | (_, Some("code_stock_empty")) => {
            let code = match f.attention {
                Some("no_mapping") => "no_mapping",
                Some("provider_disabled") => "provider_disabled",
                Some("code_stock_empty") => "code_stock_empty",
                _ => routing_code(f.routing),
            };
            d(code, format!("not sent: {}", f.last_message.unwrap_or("dispatch stopped on a configuration problem")), true)
        }
        ("not_sent", None) => not_sent(f, now, limits),
        ("dispatching", None) if f.awaiting_reconciliation => d(
            "awaiting_reconciliation",
            format!(
                "placement with {provider} had an unknown outcome ({}); a status check with reference {reference} {} decides whether \
                 it exists; it is never placed blindly again (`orderctl poll {n}` checks now)",
                f.last_message.unwrap_or("no clear answer"),
                match f.next_check_at {
                    Some(t) if t > now => format!("at {}", ts(t)),
                    _ => "is due now".into(),
                }
            ),
            f.next_check_at.map(|t| late(now, t, limits.overdue_after)).unwrap_or(true),
        ),
        ("dispatching", None) => match f.next_check_at {
            Some(t) if t > now => d(
                "dispatching",
                format!(
                    "being placed with {provider} (reference {reference}, claimed {} ago); if that process died, the order is \
                     reconciled by a status check at {}",
                    f.dispatched_at.map(|s| ago(now, s)).unwrap_or_default(),
                    ts(t)
                ),
                false,
            ),
            _ => d(
                "dispatch_interrupted",
                format!(
                    "a dispatch to {provider} (reference {reference}) did not finish; it is due for reconciliation by a status check \
                     with that reference: is `orderctl daemon` or `orderctl sweep` running? (`orderctl poll {n}` checks now)"
                ),
                true,
            ),
        },
        ("sent" | "processing", None) => match f.next_check_at {
            Some(t) if t > now => d(
                "waiting_for_check",
                format!(
                    "with {provider} (reference {reference}), {}; {} check(s) so far, next status check at {}",
                    if f.external_status == "sent" { "sent" } else { "in progress" },
                    f.checks,
                    ts(t)
                ),
                false,
            ),
            Some(t) if late(now, t, limits.overdue_after) => d(
                "check_overdue",
                format!(
                    "with {provider} (reference {reference}); its status check is overdue since {} ({} late): is `orderctl daemon` \
                     or `orderctl sweep` running? (`orderctl poll {n}` checks now)",
                    ts(t),
                    ago(now, t)
                ),
                true,
            ),
            Some(_) => d(
                "check_due",
                format!("with {provider} (reference {reference}); its status check is due now ({} so far)", f.checks),
                false,
            ),
            None => d(
                "unscheduled",
                format!(
                    "with {provider} (reference {reference}) but no status check is scheduled; `orderctl poll {n}` checks it now \
                     and the batch safety sweep will pick it up"
                ),
                true,
            ),
        },
        (other, _) => d(
            "unknown_state",
            format!("in state {} / {other}, which orderctl does not expect; inspect its events", f.status),
            true,
        ),
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

fn not_sent(f: &OrderFacts, now: DateTime<Utc>, limits: StuckThresholds) -> Diagnosis {
    let n = f.number;
    let Some(r) = f.routing else {
        return d("not_sent", format!("not sent yet (created {} ago)", ago(now, f.created_at)), false);
    };
    // The incident: routing that has nowhere to send the order, found before anyone waits.
    if let Some(p) = check_routing(r).into_iter().find(|p| {
        matches!(
            p,
            RoutingProblem::AutoWithManualProviderType { .. }
                | RoutingProblem::ExternalWithoutPrimary
                | RoutingProblem::CodesWithoutCodeGroup
        )
    }) {
        return d(
            "routing_auto_without_provider",
            format!(
                "not sent: routing for package {} is auto but has no provider ({}): {}; then `orderctl dispatch {n}`",
                f.package,
                p.problem(),
                p.fix()
            ),
            true,
        );
    }
    // Manual routing: an operator delivers it (manual-mode packages with a provider may also be
    // sent by hand, which schedules them).
    if r.provider_type == ProviderType::Manual || (r.mode == RoutingMode::Manual && f.next_check_at.is_none()) {
        return d(
            "waiting_for_operator",
            format!(
                "waiting for an operator: package {} is routed manually; deliver it, then `orderctl approve {n} --pin PIN`, \
                 or `orderctl reject {n} --reason TEXT`{}",
                f.package,
                if r.provider_type == ProviderType::External {
                    format!(", or send it with `orderctl dispatch {n}`")
                } else {
                    String::new()
                }
            ),
            false,
        );
    }
    if late(now, f.created_at, limits.undispatched_after) {
        return d(
            "undispatched",
            format!(
                "not dispatched {} after it was created although routing is auto: is `orderctl daemon` or `orderctl sweep` running? \
                 (`orderctl dispatch {n}` sends it now)",
                ago(now, f.created_at)
            ),
            true,
        );
    }
    d("waiting_for_dispatch", format!("waiting to be dispatched (created {} ago)", ago(now, f.created_at)), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing::RoutedProvider;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn facts<'a>(routing: Option<&'a RoutingView>) -> OrderFacts<'a> {
        OrderFacts {
            number: 1042,
            package: "pubg-60",
            status: "pending",
            external_status: "not_sent",
            attention: None,
            awaiting_reconciliation: false,
            provider: None,
            reference: None,
            last_message: None,
            checks: 0,
            created_at: now() - chrono::Duration::hours(2),
            dispatched_at: None,
            completed_at: None,
            next_check_at: None,
            routing,
            pin_delivered: false,
            refunded: None,
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
        }
    }

    #[test]
    fn the_incident_order_explains_itself() {
        let r = routing(RoutingMode::Auto, ProviderType::Manual, false);
        let dg = diagnose(&facts(Some(&r)), now(), StuckThresholds::default());
        assert_eq!(dg.code, "routing_auto_without_provider");
        assert!(dg.stuck);
        assert!(dg.sentence.contains("routing for package pubg-60 is auto but has no provider"), "{}", dg.sentence);
        assert!(dg.sentence.contains("or use mode manual"), "{}", dg.sentence);
    }

    #[test]
    fn manual_routing_waits_for_an_operator_and_is_not_stuck() {
        let r = routing(RoutingMode::Manual, ProviderType::Manual, false);
        let dg = diagnose(&facts(Some(&r)), now(), StuckThresholds::default());
        assert_eq!(dg.code, "waiting_for_operator");
        assert!(!dg.stuck);
        assert!(dg.sentence.contains("orderctl approve 1042 --pin PIN"));
    }

    #[test]
    fn an_old_undispatched_auto_order_is_stuck() {
        let r = routing(RoutingMode::Auto, ProviderType::External, true);
        let mut f = facts(Some(&r));
        f.next_check_at = Some(now() - chrono::Duration::hours(2));
        let dg = diagnose(&f, now(), StuckThresholds::default());
        assert_eq!(dg.code, "undispatched");
        assert!(dg.stuck);
        f.created_at = now() - chrono::Duration::seconds(5);
        assert_eq!(diagnose(&f, now(), StuckThresholds::default()).code, "waiting_for_dispatch");
    }

    #[test]
    fn checks_are_waiting_then_overdue() {
        let r = routing(RoutingMode::Auto, ProviderType::External, true);
        let mut f = facts(Some(&r));
        f.external_status = "sent";
        f.provider = Some("znet-main");
        f.reference = Some("ref-1");
        f.next_check_at = Some(now() + chrono::Duration::seconds(30));
        let dg = diagnose(&f, now(), StuckThresholds::default());
        assert_eq!(dg.code, "waiting_for_check");
        assert!(dg.sentence.contains("next status check at 2026-11-22T12:00:30Z"), "{}", dg.sentence);
        f.next_check_at = Some(now() - chrono::Duration::hours(1));
        assert_eq!(diagnose(&f, now(), StuckThresholds::default()).code, "check_overdue");
    }

    #[test]
    fn given_up_and_rejected_placements_name_the_operator_commands() {
        let mut f = facts(None);
        f.external_status = "failed";
        f.attention = Some("given_up");
        f.last_message = Some("no final answer after 24h");
        let dg = diagnose(&f, now(), StuckThresholds::default());
        assert_eq!(dg.code, "given_up");
        assert!(dg.sentence.contains("no final answer after 24h") && dg.sentence.contains("no refund"));
        f.attention = Some("placement_rejected");
        f.last_message = Some("placement rejected by znet-main: Kupur Bilgisi Bulunamadı");
        let dg = diagnose(&f, now(), StuckThresholds::default());
        assert_eq!(dg.code, "placement_rejected");
        assert!(dg.sentence.contains("Kupur Bilgisi Bulunamadı"));
    }
}
