//! What `orderctl daemon --metrics-listen` serves on `GET /metrics`, in the Prometheus text
//! exposition format (0.0.4, encoded by `prometheus-client`).
//!
//! Labels: every provider series has `tenant` and `provider` (a provider's name is unique only
//! within its tenant); the lanes that are not providers (routing, webhooks) are told apart by
//! `lane`, never by the provider label. Every series of a known tenant, provider and outcome
//! exists from the first scrape after the daemon connected, at 0 (`declare`), so `increase()`
//! sees the first event and "absent" alerts do not misfire. Series per tenant are bounded:
//! 2 finished + 1 flagged + 11 needing-action + 3 webhook-delivery counters + 3 webhook
//! gauges = 20, plus per provider 6 call counters, 2 counters of calls not sent and 4
//! histograms (2 call kinds, claim, write; 14 buckets each). Nothing is labelled by order,
//! user, package or URL.
//!
//! Counters of calls and deliveries are this process's: the lanes count what they do at the
//! moment they do it. Finished and flagged orders are counted in the database, in the
//! transaction of each transition (`order_outcome_counts`), so an operator's approve from the
//! command line is counted too; every daemon's supervisor reads those totals every few seconds
//! (with the gauges that need SQL), so each daemon exports the same totals: aggregate them
//! with `max`, not `sum`, across daemons. A scrape costs no query. One registry per process
//! (`get()`); nothing here does I/O.

use crate::domain::lifecycle::states::{FinishedOutcome, OrderStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The `Content-Type` of what `encode` returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric family orderctl exports (the names in the exposition; counters end in
/// `_total`, histograms add `_bucket`, `_sum` and `_count`).
pub const NAMES: &[&str] = &[
    "orderctl_orders_finished_total",
    "orderctl_orders_flagged_total",
    "orderctl_provider_calls_total",
    "orderctl_provider_calls_not_sent_total",
    "orderctl_provider_call_duration_seconds",
    "orderctl_provider_claim_duration_seconds",
    "orderctl_provider_write_duration_seconds",
    "orderctl_due_orders",
    "orderctl_oldest_due_seconds",
    "orderctl_stats_rollups_behind_seconds",
    "orderctl_orders_needing_action",
    "orderctl_webhook_deliveries_total",
    "orderctl_webhook_pending_deliveries",
    "orderctl_webhook_failed_deliveries",
    "orderctl_webhook_disabled_endpoints",
    "orderctl_lane_claim_duration_seconds",
    "orderctl_lane_write_duration_seconds",
    "orderctl_provider_credentials_unresolved",
    "orderctl_webhook_secrets_unresolved",
    "orderctl_provider_rate_limit_calls_per_second",
    "orderctl_provider_balance",
    "orderctl_provider_balance_low",
    "orderctl_provider_breaker_state",
    "orderctl_provider_breaker_changes_total",
    "orderctl_provider_paused",
    "orderctl_provider_unavailable",
];

/// What a provider call's outcome can be, by call.
pub const PLACE_OUTCOMES: [&str; 4] = ["accepted", "rejected", "sent_before", "ambiguous"];
pub const CHECK_OUTCOMES: [&str; 2] = ["answered", "no_news"];
/// Final statuses counted in `orders_finished_total`.
pub const FINISHED: [OrderStatus; 2] = [OrderStatus::Approved, OrderStatus::Rejected];
/// Webhook attempt outcomes: delivered, retry (tried again later), failed (dead-lettered).
pub const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    tenant: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantOnly {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    tenant: String,
    provider: String,
    call: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallKind {
    tenant: String,
    provider: String,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    tenant: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeedingAction {
    tenant: String,
    attention: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Delivery {
    tenant: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Lane {
    lane: &'static str,
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

/// What the database says, for the metrics (`db::stats::metric_gauges`).
#[derive(Debug, Clone, Default)]
pub struct FromDatabase {
    pub tenants: Vec<String>,
    /// (tenant, provider) of every provider.
    pub providers: Vec<(String, String)>,
    pub due: i64,
    pub oldest_late: Duration,
    /// How far the stats rollups trail the clock (`rollup_watermark`): more than about an hour
    /// and a sweep interval means no safety sweep runs.
    pub rollups_behind: Duration,
    /// (tenant, attention, orders).
    pub needing_action: Vec<(String, String, i64)>,
    /// (tenant, outcome: approved, rejected or needs_action, total ever).
    pub outcomes: Vec<(String, String, i64)>,
    /// (tenant, pending, failed, disabled endpoints).
    pub webhooks: Vec<(String, i64, i64, i64)>,
    /// (tenant, provider, calls per second) of every provider with a rate limit.
    pub rate_limits: Vec<(String, String, f64)>,
    /// Dealer-side health of every provider (the balance is the dealer's: this endpoint is the
    /// operator's, never a tenant's or a shop's).
    pub health: Vec<ProviderHealthGauges>,
}

/// One provider's health gauges.
#[derive(Debug, Clone, Default)]
pub struct ProviderHealthGauges {
    pub tenant: String,
    pub provider: String,
    pub balance: Option<f64>,
    pub low: bool,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker: i64,
    /// 1 paused, 2 draining.
    pub hold: i64,
    pub unavailable: i64,
}

pub struct Metrics {
    registry: Registry,
    rate_limit: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    credentials_unresolved: Family<ProviderLabels, Gauge>,
    orders_finished: Family<Finished, Counter>,
    orders_flagged: Family<TenantOnly, Counter>,
    /// The database totals the finished and flagged counters were last brought to.
    outcome_totals: Mutex<HashMap<(String, String), i64>>,
    provider_calls: Family<Call, Counter>,
    provider_calls_not_sent: Family<CallKind, Counter>,
    provider_call_duration: Histograms<CallKind>,
    provider_claim_duration: Histograms<ProviderLabels>,
    provider_write_duration: Histograms<ProviderLabels>,
    due_orders: Gauge,
    oldest_due_seconds: Gauge<f64, AtomicU64>,
    stats_rollups_behind_seconds: Gauge<f64, AtomicU64>,
    orders_needing_action: Family<NeedingAction, Gauge>,
    /// The (tenant, attention) pairs set last, so a pair that is gone goes back to 0.
    needing_action_seen: Mutex<HashSet<NeedingAction>>,
    webhook_deliveries: Family<Delivery, Counter>,
    webhook_pending: Family<TenantOnly, Gauge>,
    webhook_failed: Family<TenantOnly, Gauge>,
    webhook_disabled: Family<TenantOnly, Gauge>,
    webhook_secrets_unresolved: Family<TenantOnly, Gauge>,
    lane_claim_duration: Histograms<Lane>,
    lane_write_duration: Histograms<Lane>,
    provider_balance: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
    provider_balance_low: Family<ProviderLabels, Gauge>,
    provider_breaker_state: Family<ProviderLabels, Gauge>,
    provider_breaker_changes: Counter,
    provider_paused: Family<ProviderLabels, Gauge>,
    provider_unavailable: Family<ProviderLabels, Gauge>,
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
            rate_limit: Family::default(),
            credentials_unresolved: Family::default(),
            orders_finished: Family::default(),
            orders_flagged: Family::default(),
            outcome_totals: Mutex::default(),
            provider_calls: Family::default(),
            provider_calls_not_sent: Family::default(),
            provider_call_duration: Family::new_with_constructor(call_histogram),
            provider_claim_duration: Family::new_with_constructor(round_histogram),
            provider_write_duration: Family::new_with_constructor(round_histogram),
            due_orders: Gauge::default(),
            oldest_due_seconds: Gauge::default(),
            stats_rollups_behind_seconds: Gauge::default(),
            orders_needing_action: Family::default(),
            needing_action_seen: Mutex::new(HashSet::new()),
            webhook_deliveries: Family::default(),
            webhook_pending: Family::default(),
            webhook_failed: Family::default(),
            webhook_disabled: Family::default(),
            webhook_secrets_unresolved: Family::default(),
            lane_claim_duration: Family::new_with_constructor(round_histogram),
            lane_write_duration: Family::new_with_constructor(round_histogram),
            provider_balance: Family::default(),
            provider_balance_low: Family::default(),
            provider_breaker_state: Family::default(),
            provider_breaker_changes: Counter::default(),
            provider_paused: Family::default(),
            provider_unavailable: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "provider_rate_limit_calls_per_second",
            "A provider's rate limit (setup rate_limit) in calls per second, shared by every process: compare with the sum over daemons of rate(orderctl_provider_calls_total)",
            m.rate_limit.clone(),
        );
        r.register(
            "provider_balance",
            "The dealer balance a provider last reported, by tenant and provider (dealer data: operators only)",
            m.provider_balance.clone(),
        );
        r.register(
            "provider_balance_low",
            "1 when a provider's last reported balance is below its setup low_balance, else 0",
            m.provider_balance_low.clone(),
        );
        r.register(
            "provider_breaker_state",
            "A provider's circuit breaker, shared by every daemon: 0 closed, 1 open, 2 half-open",
            m.provider_breaker_state.clone(),
        );
        r.register(
            "provider_breaker_changes",
            "Breaker openings and closings this process decided",
            m.provider_breaker_changes.clone(),
        );
        r.register(
            "provider_paused",
            "An operator's hold on a provider: 0 none, 1 paused, 2 draining",
            m.provider_paused.clone(),
        );
        r.register(
            "provider_unavailable",
            "Causes a provider gave for refusing orders now (no balance, maintenance, products unavailable)",
            m.provider_unavailable.clone(),
        );
        r.register(
            "provider_credentials_unresolved",
            "1 for a provider whose credential references do not resolve on this host (its orders are flagged), else 0",
            m.credentials_unresolved.clone(),
        );
        r.register(
            "orders_finished",
            "Orders finished, by tenant and final status, counted in the database by whoever finished them (every daemon exports the same totals)",
            m.orders_finished.clone(),
        );
        r.register(
            "orders_flagged",
            "Orders flagged for an operator, by tenant, counted in the database (every daemon exports the same totals)",
            m.orders_flagged.clone(),
        );
        r.register(
            "provider_calls",
            "Provider calls by tenant, provider, call (place, check) and outcome",
            m.provider_calls.clone(),
        );
        r.register(
            "provider_calls_not_sent",
            "Provider calls that were due but never sent, by tenant, provider and call: no turn under the provider's rate limit came before the request's time ran out (not in orderctl_provider_calls_total; a steady rate means the limit is too low for the work)",
            m.provider_calls_not_sent.clone(),
        );
        r.register(
            "provider_call_duration_seconds",
            "How long provider calls took, by tenant, provider and call",
            m.provider_call_duration.clone(),
        );
        r.register(
            "provider_claim_duration_seconds",
            "How long a provider lane's claim transaction took, by tenant and provider",
            m.provider_claim_duration.clone(),
        );
        r.register(
            "provider_write_duration_seconds",
            "How long a provider lane's write-back of one batch took, by tenant and provider",
            m.provider_write_duration.clone(),
        );
        r.register("due_orders", "Orders whose next work is due now (the backlog)", m.due_orders.clone());
        r.register(
            "oldest_due_seconds",
            "How late the oldest due work is, in seconds (0 when nothing is due)",
            m.oldest_due_seconds.clone(),
        );
        r.register(
            "stats_rollups_behind_seconds",
            "How far the stats rollups of finished history trail the clock, in seconds (a few minutes while safety sweeps run)",
            m.stats_rollups_behind_seconds.clone(),
        );
        r.register(
            "orders_needing_action",
            "Orders flagged for an operator now, by tenant and attention",
            m.orders_needing_action.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts by tenant and outcome (delivered, retry, failed: dead-lettered)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "webhook_pending_deliveries",
            "Webhook deliveries waiting to be delivered, by tenant",
            m.webhook_pending.clone(),
        );
        r.register(
            "webhook_failed_deliveries",
            "Webhook deliveries dead-lettered (retry horizon reached), by tenant",
            m.webhook_failed.clone(),
        );
        r.register(
            "webhook_disabled_endpoints",
            "Webhook endpoints disabled after failing for their whole retry horizon, by tenant",
            m.webhook_disabled.clone(),
        );
        r.register(
            "webhook_secrets_unresolved",
            "Enabled webhook endpoints whose signing secret reference does not resolve on this host (nothing is sent to them), by tenant",
            m.webhook_secrets_unresolved.clone(),
        );
        r.register(
            "lane_claim_duration_seconds",
            "How long a claim transaction of a lane that is not a provider's took, by lane (routing, webhooks)",
            m.lane_claim_duration.clone(),
        );
        r.register(
            "lane_write_duration_seconds",
            "How long a write-back of a lane that is not a provider's took, by lane (routing, webhooks)",
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

    /// A provider call: `call` is `place` or `check`, `outcome` what the answer meant.
    pub fn observe_call(&self, tenant: &str, provider: &str, call: &'static str, outcome: &'static str, took: Duration) {
        let (tenant, provider) = (tenant.to_string(), provider.to_string());
        self.provider_calls.get_or_create(&Call { tenant: tenant.clone(), provider: provider.clone(), call, outcome }).inc();
        self.provider_call_duration.get_or_create(&CallKind { tenant, provider, call }).observe(took.as_secs_f64());
    }

    /// A call given up before it was sent: no turn under the provider's rate limit in time.
    pub fn count_not_sent(&self, tenant: &str, provider: &str, call: &'static str) {
        let labels = CallKind { tenant: tenant.to_string(), provider: provider.to_string(), call };
        self.provider_calls_not_sent.get_or_create(&labels).inc();
    }

    /// A breaker opened or closed (decided by this process).
    pub fn breaker_changed(&self) {
        self.provider_breaker_changes.inc();
    }

    pub fn observe_provider_claim(&self, tenant: &str, provider: &str, took: Duration) {
        let labels = ProviderLabels { tenant: tenant.to_string(), provider: provider.to_string() };
        self.provider_claim_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn observe_provider_write(&self, tenant: &str, provider: &str, took: Duration) {
        let labels = ProviderLabels { tenant: tenant.to_string(), provider: provider.to_string() };
        self.provider_write_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn inc_webhook_delivery(&self, tenant: &str, outcome: &'static str) {
        self.webhook_deliveries.get_or_create(&Delivery { tenant: tenant.to_string(), outcome }).inc();
    }

    /// A claim of the routing or the webhook lane.
    pub fn observe_claim(&self, lane: &'static str, took: Duration) {
        self.lane_claim_duration.get_or_create(&Lane { lane }).observe(took.as_secs_f64());
    }

    /// A write-back of the routing or the webhook lane.
    pub fn observe_write(&self, lane: &'static str, took: Duration) {
        self.lane_write_duration.get_or_create(&Lane { lane }).observe(took.as_secs_f64());
    }

    /// Every series of these tenants and providers, at 0 where it has no value yet.
    fn declare(&self, tenants: &[String], providers: &[(String, String)]) {
        for t in tenants {
            let tenant = || t.clone();
            for status in FINISHED {
                let _ = self.orders_finished.get_or_create(&Finished { tenant: tenant(), status: status.as_str().to_string() });
            }
            let _ = self.orders_flagged.get_or_create(&TenantOnly { tenant: tenant() });
            for outcome in DELIVERY_OUTCOMES {
                let _ = self.webhook_deliveries.get_or_create(&Delivery { tenant: tenant(), outcome });
            }
            for a in crate::domain::lifecycle::Attention::ALL {
                let _ = self
                    .orders_needing_action
                    .get_or_create(&NeedingAction { tenant: tenant(), attention: a.as_str().to_string() });
            }
            for g in [&self.webhook_pending, &self.webhook_failed, &self.webhook_disabled, &self.webhook_secrets_unresolved] {
                let _ = g.get_or_create(&TenantOnly { tenant: tenant() });
            }
        }
        for (t, p) in providers {
            let calls = PLACE_OUTCOMES.iter().map(|o| ("place", *o)).chain(CHECK_OUTCOMES.iter().map(|o| ("check", *o)));
            for (call, outcome) in calls {
                let _ = self.provider_calls.get_or_create(&Call { tenant: t.clone(), provider: p.clone(), call, outcome });
            }
            for call in ["place", "check"] {
                let kind = CallKind { tenant: t.clone(), provider: p.clone(), call };
                let _ = self.provider_call_duration.get_or_create(&kind);
                let _ = self.provider_calls_not_sent.get_or_create(&kind);
            }
            let labels = ProviderLabels { tenant: t.clone(), provider: p.clone() };
            let _ = self.provider_claim_duration.get_or_create(&labels);
            let _ = self.provider_write_duration.get_or_create(&labels);
        }
        for lane in ["routing", "webhooks"] {
            let _ = self.lane_claim_duration.get_or_create(&Lane { lane });
            let _ = self.lane_write_duration.get_or_create(&Lane { lane });
        }
    }

    /// Everything read from the database: the known tenants and providers (declared at 0),
    /// the totals of finished and flagged orders, and the gauges.
    pub fn set_from_database(&self, db: &FromDatabase) {
        self.declare(&db.tenants, &db.providers);
        self.due_orders.set(db.due);
        self.oldest_due_seconds.set(db.oldest_late.as_secs_f64());
        self.stats_rollups_behind_seconds.set(db.rollups_behind.as_secs_f64());
        self.set_needing_action(&db.needing_action);
        for (tenant, provider, per_second) in &db.rate_limits {
            self.rate_limit
                .get_or_create(&ProviderLabels { tenant: tenant.clone(), provider: provider.clone() })
                .set(*per_second);
        }
        let mut totals = self.outcome_totals.lock().unwrap_or_else(|p| p.into_inner());
        for (tenant, outcome, n) in &db.outcomes {
            let before = totals.entry((tenant.clone(), outcome.clone())).or_insert(0);
            // Totals only grow; a smaller one (a restored database) is not taken back.
            let more = (*n - *before).max(0) as u64;
            *before = (*before).max(*n);
            let counter = match outcome.as_str() {
                flagged if flagged == FinishedOutcome::NeedsAction.as_str() => {
                    self.orders_flagged.get_or_create(&TenantOnly { tenant: tenant.clone() })
                }
                status => self.orders_finished.get_or_create(&Finished { tenant: tenant.clone(), status: status.to_string() }),
            };
            counter.inc_by(more);
        }
        for h in &db.health {
            let labels = ProviderLabels { tenant: h.tenant.clone(), provider: h.provider.clone() };
            if let Some(b) = h.balance {
                self.provider_balance.get_or_create(&labels).set(b);
            }
            self.provider_balance_low.get_or_create(&labels).set(i64::from(h.low));
            self.provider_breaker_state.get_or_create(&labels).set(h.breaker);
            self.provider_paused.get_or_create(&labels).set(h.hold);
            self.provider_unavailable.get_or_create(&labels).set(h.unavailable);
        }
        for (tenant, pending, failed, disabled) in &db.webhooks {
            let t = TenantOnly { tenant: tenant.clone() };
            self.webhook_pending.get_or_create(&t).set(*pending);
            self.webhook_failed.get_or_create(&t).set(*failed);
            self.webhook_disabled.get_or_create(&t).set(*disabled);
        }
    }

    /// The counts of orders needing an operator, by (tenant, attention); pairs not given are 0.
    fn set_needing_action(&self, counts: &[(String, String, i64)]) {
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

    /// (tenant, endpoints whose secret does not resolve here) for every tenant that has any;
    /// the other tenants this daemon serves go back to 0.
    pub fn set_webhook_secrets_unresolved(&self, tenants: &[String], unresolved: &HashMap<String, i64>) {
        for t in tenants {
            let n = unresolved.get(t).copied().unwrap_or(0);
            self.webhook_secrets_unresolved.get_or_create(&TenantOnly { tenant: t.clone() }).set(n);
        }
    }

    /// (tenant, provider, unresolved) for every provider this daemon serves.
    pub fn set_credentials_unresolved(&self, providers: &[(String, String, bool)]) {
        for (tenant, provider, unresolved) in providers {
            self.credentials_unresolved
                .get_or_create(&ProviderLabels { tenant: tenant.clone(), provider: provider.clone() })
                .set(i64::from(*unresolved));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exported_name_appears_in_the_exposition_and_no_other() {
        let m = Metrics::new();
        let db = FromDatabase {
            tenants: vec!["alsham".into(), "beirut".into()],
            providers: vec![("alsham".into(), "znet-main".into()), ("beirut".into(), "znet-main".into())],
            due: 7,
            oldest_late: Duration::from_millis(2500),
            rollups_behind: Duration::from_secs(240),
            needing_action: vec![("alsham".into(), "given_up".into(), 2)],
            outcomes: vec![("alsham".into(), "approved".into(), 3), ("alsham".into(), "needs_action".into(), 1)],
            webhooks: vec![("alsham".into(), 4, 1, 0)],
            rate_limits: vec![("alsham".into(), "znet-main".into(), 20.0)],
            health: vec![ProviderHealthGauges {
                tenant: "alsham".into(),
                provider: "znet-main".into(),
                balance: Some(980.88),
                low: true,
                breaker: 1,
                hold: 1,
                unavailable: 1,
            }],
        };
        m.set_from_database(&db);
        m.breaker_changed();
        m.set_credentials_unresolved(&[("alsham".into(), "xstor".into(), true)]);
        let text = m.encode();
        let families: HashSet<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(families, NAMES.iter().copied().collect(), "{text}");
        // Declared at 0 before any event, for each tenant and each (tenant, provider).
        assert!(text.contains("orderctl_orders_finished_total{tenant=\"beirut\",status=\"rejected\"} 0"), "{text}");
        assert!(text.contains("orderctl_webhook_deliveries_total{tenant=\"beirut\",outcome=\"failed\"} 0"), "{text}");
        assert!(
            text.contains(
                "orderctl_provider_calls_total{tenant=\"beirut\",provider=\"znet-main\",call=\"place\",outcome=\"ambiguous\"} 0"
            ),
            "{text}"
        );
        assert!(text.contains("orderctl_lane_claim_duration_seconds_count{lane=\"webhooks\"} 0"), "{text}");
        assert!(text.contains("orderctl_provider_balance{tenant=\"alsham\",provider=\"znet-main\"} 980.88"), "{text}");
        assert!(text.contains("orderctl_provider_breaker_state{tenant=\"alsham\",provider=\"znet-main\"} 1"), "{text}");
        // Totals from the database move the counters by the difference.
        assert!(text.contains("orderctl_orders_finished_total{tenant=\"alsham\",status=\"approved\"} 3"), "{text}");
        let mut later = db.clone();
        later.outcomes[0].2 = 5;
        later.needing_action = vec![("alsham".into(), "routing".into(), 1)];
        m.set_from_database(&later);
        m.observe_call("alsham", "znet-main", "check", "no_news", Duration::from_millis(12));
        let text = m.encode();
        assert!(text.contains("orderctl_orders_finished_total{tenant=\"alsham\",status=\"approved\"} 5"), "{text}");
        assert!(text.contains("orderctl_orders_flagged_total{tenant=\"alsham\"} 1"), "{text}");
        assert!(text.contains("orderctl_oldest_due_seconds 2.5"), "{text}");
        assert!(text.contains("orderctl_stats_rollups_behind_seconds 240"), "{text}");
        assert!(text.contains("orderctl_orders_needing_action{tenant=\"alsham\",attention=\"given_up\"} 0"), "{text}");
        assert!(text.contains("orderctl_orders_needing_action{tenant=\"alsham\",attention=\"routing\"} 1"), "{text}");
        assert!(
            text.contains(
                "orderctl_provider_call_duration_seconds_count{tenant=\"alsham\",provider=\"znet-main\",call=\"check\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "orderctl_provider_calls_total{tenant=\"beirut\",provider=\"znet-main\",call=\"check\",outcome=\"no_news\"} 0"
            ),
            "the other tenant's provider of the same name is its own series: {text}"
        );
    }
}
