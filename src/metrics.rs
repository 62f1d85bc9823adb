//! What `orderctl daemon --metrics-listen` serves on `GET /metrics`, in the Prometheus text
//! exposition format (0.0.4, encoded by `prometheus-client`).
//!
//! Counters and histograms are this process's: the lanes count what they do (`inc_*`,
//! `observe_*`) at the moment they do it. Gauges that need SQL (the due backlog, orders needing
//! an operator, webhook deliveries waiting) are set by the daemon's supervisor every few
//! seconds, never per order and never by a scrape, so a scrape costs no query and cannot be
//! slowed by the database. One registry per process (`get()`); nothing here does I/O.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The `Content-Type` of what `encode` returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric family orderctl exports (the names in the exposition; counters end in
/// `_total`, histograms add `_bucket`, `_sum` and `_count`).
pub const NAMES: &[&str] = &[
    "orderctl_orders_finished_total",
    "orderctl_provider_calls_total",
    "orderctl_provider_call_duration_seconds",
    "orderctl_due_orders",
    "orderctl_oldest_due_seconds",
    "orderctl_orders_needing_action",
    "orderctl_webhook_deliveries_total",
    "orderctl_webhook_pending_deliveries",
    "orderctl_webhook_failed_deliveries",
    "orderctl_lane_claim_duration_seconds",
    "orderctl_lane_write_duration_seconds",
    "orderctl_provider_credentials_unresolved",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    tenant: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    provider: String,
    call: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallKind {
    provider: String,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeedingAction {
    tenant: String,
    attention: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Delivery {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lane {
    lane: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Provider calls take milliseconds to the request timeout: 5 ms … about 40 s.
fn call_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// A claim or a write-back is one transaction: 1 ms … about 8 s.
fn round_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    tenant: String,
    provider: String,
}

pub struct Metrics {
    registry: Registry,
    credentials_unresolved: Family<ProviderLabels, Gauge>,
    orders_finished: Family<Finished, Counter>,
    provider_calls: Family<Call, Counter>,
    provider_call_duration: Histograms<CallKind>,
    due_orders: Gauge,
    oldest_due_seconds: Gauge<f64, AtomicU64>,
    orders_needing_action: Family<NeedingAction, Gauge>,
    /// The (tenant, attention) pairs set last, so a pair that is gone goes back to 0.
    needing_action_seen: Mutex<HashSet<NeedingAction>>,
    webhook_deliveries: Family<Delivery, Counter>,
    webhook_pending: Gauge,
    webhook_failed: Gauge,
    lane_claim_duration: Histograms<Lane>,
    lane_write_duration: Histograms<Lane>,
}

/// This process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("orderctl"),
            credentials_unresolved: Family::default(),
            orders_finished: Family::default(),
            provider_calls: Family::default(),
            provider_call_duration: Family::new_with_constructor(call_histogram),
            due_orders: Gauge::default(),
            oldest_due_seconds: Gauge::default(),
            orders_needing_action: Family::default(),
            needing_action_seen: Mutex::new(HashSet::new()),
            webhook_deliveries: Family::default(),
            webhook_pending: Gauge::default(),
            webhook_failed: Gauge::default(),
            lane_claim_duration: Family::new_with_constructor(round_histogram),
            lane_write_duration: Family::new_with_constructor(round_histogram),
        };
        let r = &mut m.registry;
        r.register(
            "provider_credentials_unresolved",
            "1 for a provider whose credential references do not resolve on this host (its orders are flagged), else 0",
            m.credentials_unresolved.clone(),
        );
        r.register("orders_finished", "Orders this process finished, by tenant and final status", m.orders_finished.clone());
        r.register("provider_calls", "Provider calls by provider, call (place, check) and outcome", m.provider_calls.clone());
        r.register(
            "provider_call_duration_seconds",
            "How long provider calls took, by provider and call",
            m.provider_call_duration.clone(),
        );
        r.register("due_orders", "Orders whose next work is due now (the backlog)", m.due_orders.clone());
        r.register(
            "oldest_due_seconds",
            "How late the oldest due work is, in seconds (0 when nothing is due)",
            m.oldest_due_seconds.clone(),
        );
        r.register(
            "orders_needing_action",
            "Orders flagged for an operator, by tenant and attention",
            m.orders_needing_action.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, failed: retries used up)",
            m.webhook_deliveries.clone(),
        );
        r.register("webhook_pending_deliveries", "Webhook deliveries waiting to be delivered", m.webhook_pending.clone());
        r.register("webhook_failed_deliveries", "Webhook deliveries that used up their retries", m.webhook_failed.clone());
        r.register(
            "lane_claim_duration_seconds",
            "How long a lane's claim transaction took, by lane",
            m.lane_claim_duration.clone(),
        );
        r.register(
            "lane_write_duration_seconds",
            "How long a lane's write-back of one batch took, by lane",
            m.lane_write_duration.clone(),
        );
        m
    }

    /// The exposition, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).expect("writing to a String never fails");
        out
    }

    pub fn inc_finished(&self, tenant: &str, status: &str) {
        self.orders_finished.get_or_create(&Finished { tenant: tenant.to_string(), status: status.to_string() }).inc();
    }

    /// A provider call: `call` is `place` or `check`, `outcome` what the answer meant.
    pub fn observe_call(&self, provider: &str, call: &'static str, outcome: &'static str, took: Duration) {
        self.provider_calls.get_or_create(&Call { provider: provider.to_string(), call, outcome }).inc();
        self.provider_call_duration.get_or_create(&CallKind { provider: provider.to_string(), call }).observe(took.as_secs_f64());
    }

    pub fn inc_webhook_delivery(&self, outcome: &'static str) {
        self.webhook_deliveries.get_or_create(&Delivery { outcome }).inc();
    }

    pub fn observe_claim(&self, lane: &str, took: Duration) {
        self.lane_claim_duration.get_or_create(&Lane { lane: lane.to_string() }).observe(took.as_secs_f64());
    }

    pub fn observe_write(&self, lane: &str, took: Duration) {
        self.lane_write_duration.get_or_create(&Lane { lane: lane.to_string() }).observe(took.as_secs_f64());
    }

    pub fn set_backlog(&self, due: i64, oldest_late: Duration) {
        self.due_orders.set(due);
        self.oldest_due_seconds.set(oldest_late.as_secs_f64());
    }

    /// The counts of orders needing an operator, by (tenant, attention); pairs not given are 0.
    pub fn set_needing_action(&self, counts: &[(String, String, i64)]) {
        let mut seen = self.needing_action_seen.lock().unwrap_or_else(|p| p.into_inner());
        let now: HashSet<NeedingAction> =
            counts.iter().map(|(t, a, _)| NeedingAction { tenant: t.clone(), attention: a.clone() }).collect();
        for gone in seen.difference(&now) {
            self.orders_needing_action.get_or_create(gone).set(0);
        }
        for (tenant, attention, n) in counts {
            self.orders_needing_action
                .get_or_create(&NeedingAction { tenant: tenant.clone(), attention: attention.clone() })
                .set(*n);
        }
        seen.extend(now);
    }

    /// (tenant, provider, unresolved) for every provider this daemon serves.
    pub fn set_credentials_unresolved(&self, providers: &[(String, String, bool)]) {
        for (tenant, provider, unresolved) in providers {
            self.credentials_unresolved
                .get_or_create(&ProviderLabels { tenant: tenant.clone(), provider: provider.clone() })
                .set(i64::from(*unresolved));
        }
    }

    pub fn set_webhook_backlog(&self, pending: i64, failed: i64) {
        self.webhook_pending.set(pending);
        self.webhook_failed.set(failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exported_name_appears_in_the_exposition_and_no_other() {
        let m = Metrics::new();
        m.inc_finished("alsham", "approved");
        m.observe_call("znet-main", "check", "waiting", Duration::from_millis(12));
        m.inc_webhook_delivery("delivered");
        m.observe_claim("znet-main", Duration::from_millis(3));
        m.observe_write("znet-main", Duration::from_millis(4));
        m.set_backlog(7, Duration::from_millis(2500));
        m.set_needing_action(&[("alsham".into(), "given_up".into(), 2)]);
        m.set_needing_action(&[("alsham".into(), "routing".into(), 1)]);
        m.set_credentials_unresolved(&[("alsham".into(), "xstor".into(), true)]);
        let text = m.encode();
        let families: HashSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(families, NAMES.iter().copied().collect(), "{text}");
        assert!(text.contains("orderctl_orders_finished_total{tenant=\"alsham\",status=\"approved\"} 1"), "{text}");
        assert!(text.contains("orderctl_oldest_due_seconds 2.5"), "{text}");
        assert!(text.contains("orderctl_orders_needing_action{tenant=\"alsham\",attention=\"given_up\"} 0"), "{text}");
        assert!(text.contains("orderctl_orders_needing_action{tenant=\"alsham\",attention=\"routing\"} 1"), "{text}");
        assert!(
            text.contains("orderctl_provider_call_duration_seconds_count{provider=\"znet-main\",call=\"check\"} 1"),
            "{text}"
        );
    }
}
