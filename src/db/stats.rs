//! The read-only statements behind `orderctl stats` and `orderctl doctor`: counts, lateness and
//! timings of the whole operation, and the Postgres health numbers that kill job queues.

use crate::db::row::state;
use crate::db::GenericClient;
use crate::domain::lifecycle::states::{sql_in, DeliveryState, ExternalStatus, OrderStatus, PlacementState};
use crate::error::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Orders of one (status, external status) pair.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub external_status: ExternalStatus,
    pub orders: i64,
}

pub fn orders_by_status(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<StatusCount>> {
    let rows = client.query(
        &format!(
            "SELECT o.status, o.external_status, count(*) AS orders
           FROM orders o JOIN tenants t ON t.id = o.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1)
          GROUP BY 1, 2
          ORDER BY array_position(ARRAY[{statuses}], o.status),
                   array_position(ARRAY[{external_statuses}], o.external_status)",
            statuses = sql_in(OrderStatus::ALL),
            external_statuses = sql_in(ExternalStatus::ALL)
        ),
        &[&tenant],
    )?;
    rows.iter()
        .map(|r| {
            Ok(StatusCount {
                status: state(r, "status")?,
                external_status: state(r, "external_status")?,
                orders: r.get("orders"),
            })
        })
        .collect()
}

/// Orders of one provider by status (orders never sent to a provider count under `-`).
#[derive(Debug, Clone, Serialize)]
pub struct ProviderOrders {
    pub tenant: String,
    pub provider: String,
    pub open: i64,
    pub approved: i64,
    pub rejected: i64,
}

pub fn orders_by_provider(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<ProviderOrders>> {
    let rows = client.query(
        &format!(
            "SELECT t.name, coalesce(p.name, '-'),
                count(*) FILTER (WHERE o.status = {pending}),
                count(*) FILTER (WHERE o.status = {approved}),
                count(*) FILTER (WHERE o.status = {rejected})
           FROM orders o JOIN tenants t ON t.id = o.tenant_id
           LEFT JOIN providers p ON p.id = o.provider_id
          WHERE ($1::text IS NULL OR t.name = $1)
          GROUP BY 1, 2
          ORDER BY 1, 2",
            pending = OrderStatus::Pending.sql(),
            approved = OrderStatus::Approved.sql(),
            rejected = OrderStatus::Rejected.sql()
        ),
        &[&tenant],
    )?;
    Ok(rows
        .iter()
        .map(|r| ProviderOrders { tenant: r.get(0), provider: r.get(1), open: r.get(2), approved: r.get(3), rejected: r.get(4) })
        .collect())
}

/// Work that is due now, and how late the oldest of it is (how far behind the system is).
#[derive(Debug, Clone, Serialize)]
pub struct Due {
    pub due_now: i64,
    /// The earliest `next_check_at` that has passed.
    pub oldest_due_at: Option<DateTime<Utc>>,
    /// now − oldest_due_at, in milliseconds.
    pub oldest_late_ms: Option<i64>,
    /// Work scheduled for later.
    pub scheduled_later: i64,
}

pub fn due(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Due> {
    // Uses the partial `orders_due` index: only orders with work scheduled are in it.
    let r = client.query_one(
        "SELECT count(*) FILTER (WHERE o.next_check_at <= now()),
                min(o.next_check_at) FILTER (WHERE o.next_check_at <= now()),
                (extract(epoch FROM now() - min(o.next_check_at) FILTER (WHERE o.next_check_at <= now())) * 1000)::bigint,
                count(*) FILTER (WHERE o.next_check_at > now())
           FROM orders o JOIN tenants t ON t.id = o.tenant_id
          WHERE o.next_check_at IS NOT NULL AND ($1::text IS NULL OR t.name = $1)",
        &[&tenant],
    )?;
    Ok(Due { due_now: r.get(0), oldest_due_at: r.get(1), oldest_late_ms: r.get(2), scheduled_later: r.get(3) })
}

/// Orders that reached a final status in the window, and how long they took from creation.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub approved: i64,
    pub rejected: i64,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
}

pub fn finished_since(client: &mut impl GenericClient, tenant: Option<&str>, since: DateTime<Utc>) -> Result<Finished> {
    let r = client.query_one(
        &format!(
            "SELECT count(*) FILTER (WHERE o.status = {approved}),
                count(*) FILTER (WHERE o.status = {rejected}),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY o.duration_ms),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY o.duration_ms)
           FROM orders o JOIN tenants t ON t.id = o.tenant_id
          WHERE o.status <> {pending} AND o.completed_at >= $2
            AND ($1::text IS NULL OR t.name = $1)",
            approved = OrderStatus::Approved.sql(),
            rejected = OrderStatus::Rejected.sql(),
            pending = OrderStatus::Pending.sql()
        ),
        &[&tenant, &since],
    )?;
    Ok(Finished { approved: r.get(0), rejected: r.get(1), median_ms: r.get(2), p90_ms: r.get(3) })
}

/// What each provider did in the window: placements (from `placements`) and status checks
/// (from the order events the monitor writes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderActivity {
    pub tenant: String,
    pub provider: String,
    pub placements: i64,
    pub placements_accepted: i64,
    pub placements_rejected: i64,
    /// Timeouts, 5xx, garbage: outcome unknown until reconciled.
    pub placements_ambiguous: i64,
    pub checks: i64,
    pub checks_waiting: i64,
    /// The check failed or made no sense (counted, backed off, order kept open).
    pub checks_no_news: i64,
    pub checks_approved: i64,
    pub checks_cancelled: i64,
    /// Orders given up after the time limit.
    pub given_up: i64,
}

pub fn provider_activity(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    since: DateTime<Utc>,
) -> Result<Vec<ProviderActivity>> {
    let rows = client.query(
        &format!(
            "WITH placed AS (
             SELECT pl.provider_id,
                    count(*) AS placements,
                    count(*) FILTER (WHERE pl.outcome = {placement_accepted}) AS accepted,
                    count(*) FILTER (WHERE pl.outcome = {placement_rejected}) AS rejected,
                    count(*) FILTER (WHERE pl.outcome = {placement_ambiguous}) AS ambiguous
               FROM placements pl
              WHERE pl.created_at >= $2
              GROUP BY 1),
         checked AS (
             SELECT o.provider_id,
                    count(*) FILTER (WHERE e.kind = 'check.waiting') AS waiting,
                    count(*) FILTER (WHERE e.kind = 'check.no_news') AS no_news,
                    count(*) FILTER (WHERE e.kind = 'check.approved') AS approved,
                    count(*) FILTER (WHERE e.kind = 'check.cancelled') AS cancelled,
                    count(*) FILTER (WHERE e.kind = 'gave_up') AS given_up
               FROM order_events e JOIN orders o ON o.id = e.order_id
              WHERE e.at >= $2
                AND e.kind IN ('check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up')
                AND o.provider_id IS NOT NULL
              GROUP BY 1)
         SELECT t.name, p.name,
                coalesce(pl.placements, 0), coalesce(pl.accepted, 0), coalesce(pl.rejected, 0), coalesce(pl.ambiguous, 0),
                coalesce(c.waiting, 0), coalesce(c.no_news, 0), coalesce(c.approved, 0), coalesce(c.cancelled, 0),
                coalesce(c.given_up, 0)
           FROM providers p JOIN tenants t ON t.id = p.tenant_id
           LEFT JOIN placed pl ON pl.provider_id = p.id
           LEFT JOIN checked c ON c.provider_id = p.id
          WHERE ($1::text IS NULL OR t.name = $1)
          ORDER BY 1, 2",
            placement_accepted = PlacementState::Accepted.sql(),
            placement_rejected = PlacementState::Rejected.sql(),
            placement_ambiguous = PlacementState::Ambiguous.sql()
        ),
        &[&tenant, &since],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let (waiting, no_news, approved, cancelled): (i64, i64, i64, i64) = (r.get(6), r.get(7), r.get(8), r.get(9));
            ProviderActivity {
                tenant: r.get(0),
                provider: r.get(1),
                placements: r.get(2),
                placements_accepted: r.get(3),
                placements_rejected: r.get(4),
                placements_ambiguous: r.get(5),
                checks: waiting + no_news + approved + cancelled,
                checks_waiting: waiting,
                checks_no_news: no_news,
                checks_approved: approved,
                checks_cancelled: cancelled,
                given_up: r.get(10),
            }
        })
        .collect())
}

/// Vacuum state of the `orders` table, from `pg_stat_user_tables`.
#[derive(Debug, Clone, Serialize)]
pub struct TableHealth {
    pub live_tuples: i64,
    pub dead_tuples: i64,
    pub last_autovacuum: Option<DateTime<Utc>>,
    pub last_vacuum: Option<DateTime<Utc>>,
    pub last_autoanalyze: Option<DateTime<Utc>>,
    pub last_analyze: Option<DateTime<Utc>>,
    /// The server's `autovacuum` setting is on.
    pub autovacuum_on: bool,
}

pub fn orders_table_health(client: &mut impl GenericClient) -> Result<TableHealth> {
    let r = client.query_one(
        "SELECT coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),
                s.last_autovacuum, s.last_vacuum, s.last_autoanalyze, s.last_analyze,
                current_setting('autovacuum') = 'on'
           FROM (SELECT 1) one
           LEFT JOIN pg_stat_user_tables s ON s.relid = to_regclass('orders')",
        &[],
    )?;
    Ok(TableHealth {
        live_tuples: r.get(0),
        dead_tuples: r.get(1),
        last_autovacuum: r.get(2),
        last_vacuum: r.get(3),
        last_autoanalyze: r.get(4),
        last_analyze: r.get(5),
        autovacuum_on: r.get(6),
    })
}

/// The oldest transaction open in this database (other than ours): it holds back vacuum.
#[derive(Debug, Clone, Serialize)]
pub struct OldestTransaction {
    pub pid: i32,
    pub age_ms: i64,
    pub state: String,
    pub application_name: String,
}

pub fn oldest_transaction(client: &mut impl GenericClient) -> Result<Option<OldestTransaction>> {
    let row = client.query_opt(
        "SELECT pid, (extract(epoch FROM now() - xact_start) * 1000)::bigint,
                coalesce(state, ''), coalesce(application_name, '')
           FROM pg_stat_activity
          WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database()
          ORDER BY xact_start
          LIMIT 1",
        &[],
    )?;
    Ok(row.map(|r| OldestTransaction { pid: r.get(0), age_ms: r.get(1), state: r.get(2), application_name: r.get(3) }))
}

/// The claims' hot partial indexes, and how to build each again (the predicates of
/// `sql/0016_provider_health.sql`; the schema test compares them with the migrated database).
pub fn due_indexes() -> [(&'static str, String); 2] {
    let unplaced = sql_in(&ExternalStatus::UNPLACED);
    let create = |name: &str, op: &str| {
        format!(
            "CREATE INDEX CONCURRENTLY {name} ON orders (lane, next_check_at) WHERE next_check_at IS NOT NULL AND external_status {op} ({unplaced});"
        )
    };
    [("orders_due", create("orders_due", "NOT IN")), ("orders_due_placements", create("orders_due_placements", "IN"))]
}

/// Whether a hot index exists, and is valid. None: it does not exist.
pub fn index_valid(client: &mut impl GenericClient, name: &str) -> Result<Option<bool>> {
    Ok(client
        .query_opt("SELECT i.indisvalid AND i.indisready FROM pg_index i WHERE i.indexrelid = to_regclass($1)", &[&name])?
        .map(|r| r.get(0)))
}

/// Where the orders of a tenant are, as four numbers that add up to all of them.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Settlement {
    pub approved: i64,
    pub rejected: i64,
    /// Pending with nothing scheduled: only an operator moves them.
    pub waiting_for_operator: i64,
    /// Pending with work scheduled (dispatch, status checks).
    pub moving: i64,
}

impl Settlement {
    pub fn total(&self) -> i64 {
        self.approved + self.rejected + self.waiting_for_operator + self.moving
    }
    /// Final or waiting for an operator: the automatic part is over.
    pub fn settled(&self) -> i64 {
        self.approved + self.rejected + self.waiting_for_operator
    }
}

/// A forwarded order moves (or waits for an operator) as the order at the far end of its chain
/// does: nothing is scheduled for it here, its upstream order finishes it.
pub fn settlement(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Settlement> {
    let r = client.query_one(
        &format!(
            "WITH RECURSIVE chain(id, status, at) AS (
             SELECT o.id, o.status, o.id FROM orders o JOIN tenants t ON t.id = o.tenant_id
              WHERE ($1::text IS NULL OR t.name = $1)
             UNION ALL
             SELECT c.id, c.status, u.forwarded_to FROM chain c JOIN orders u ON u.id = c.at WHERE u.forwarded_to IS NOT NULL
         ), ends AS (
             SELECT c.status, e.next_check_at FROM chain c JOIN orders e ON e.id = c.at WHERE e.forwarded_to IS NULL
         )
         SELECT count(*) FILTER (WHERE status = {approved}),
                count(*) FILTER (WHERE status = {rejected}),
                count(*) FILTER (WHERE status = {pending} AND next_check_at IS NULL),
                count(*) FILTER (WHERE status = {pending} AND next_check_at IS NOT NULL)
           FROM ends",
            approved = OrderStatus::Approved.sql(),
            rejected = OrderStatus::Rejected.sql(),
            pending = OrderStatus::Pending.sql()
        ),
        &[&tenant],
    )?;
    Ok(Settlement { approved: r.get(0), rejected: r.get(1), waiting_for_operator: r.get(2), moving: r.get(3) })
}

/// What the metrics read from the database, in a few indexed queries (the supervisor refreshes
/// them every few seconds, never per order): the known tenants and providers, the due backlog,
/// orders needing an operator, order outcome totals and webhook backlogs.
pub fn metric_gauges(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<crate::metrics::FromDatabase> {
    // One part per partial due index (placements, checks): each reads only the orders with work
    // scheduled; a bare `next_check_at <= now()` matches neither and scans the table.
    let due = client.query_one(
        &format!(
            "SELECT coalesce(sum(n), 0)::bigint, coalesce((extract(epoch FROM now() - min(oldest)) * 1000)::bigint, 0)
           FROM (SELECT count(*) AS n, min(next_check_at) AS oldest FROM orders
                  WHERE next_check_at IS NOT NULL AND external_status = {not_sent} AND next_check_at <= now()
                    AND ($1::bigint IS NULL OR tenant_id = $1)
                 UNION ALL
                 SELECT count(*), min(next_check_at) FROM orders
                  WHERE next_check_at IS NOT NULL AND external_status <> {not_sent} AND next_check_at <= now()
                    AND ($1::bigint IS NULL OR tenant_id = $1)) parts",
            not_sent = ExternalStatus::NotSent.sql()
        ),
        &[&tenant],
    )?;
    let tenants = client
        .query("SELECT name FROM tenants WHERE ($1::bigint IS NULL OR id = $1) ORDER BY name", &[&tenant])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let providers = client
        .query(
            "SELECT t.name, p.name FROM providers p JOIN tenants t ON t.id = p.tenant_id
              WHERE ($1::bigint IS NULL OR p.tenant_id = $1) ORDER BY 1, 2",
            &[&tenant],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let needing_action = client
        .query(
            "SELECT t.name, o.attention, count(*) FROM orders o JOIN tenants t ON t.id = o.tenant_id
              WHERE o.attention IS NOT NULL AND ($1::bigint IS NULL OR o.tenant_id = $1)
              GROUP BY 1, 2 ORDER BY 1, 2",
            &[&tenant],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let webhooks = client
        .query(
            &format!(
                "SELECT t.name,
                    (SELECT count(*) FROM webhook_deliveries d WHERE d.tenant_id = t.id AND d.state = {to_deliver}),
                    (SELECT count(*) FROM webhook_deliveries d WHERE d.tenant_id = t.id AND d.state = {undeliverable}),
                    (SELECT count(*) FROM webhooks w WHERE w.tenant_id = t.id AND w.enabled AND w.disabled_at IS NOT NULL)
               FROM tenants t WHERE ($1::bigint IS NULL OR t.id = $1) ORDER BY 1",
                to_deliver = DeliveryState::Pending.sql(),
                undeliverable = DeliveryState::Failed.sql()
            ),
            &[&tenant],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(crate::metrics::FromDatabase {
        tenants,
        providers,
        due: due.get(0),
        oldest_late: std::time::Duration::from_millis(due.get::<_, i64>(1).max(0) as u64),
        needing_action,
        outcomes: crate::db::outcomes::totals(client, tenant)?,
        webhooks,
        rate_limits: client
            .query(
                "SELECT t.name, p.name, p.rate_limit_calls * 1000.0 / p.rate_limit_window_ms FROM providers p
                   JOIN tenants t ON t.id = p.tenant_id
                  WHERE p.rate_limit_calls IS NOT NULL AND ($1::bigint IS NULL OR p.tenant_id = $1) ORDER BY 1, 2",
                &[&tenant],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, rust_decimal::Decimal>(2).try_into().unwrap_or(0.0)))
            .collect(),
        health: health_gauges(client, tenant)?,
    })
}

/// Every provider's health gauges (dealer data, for the operator's `/metrics` only).
fn health_gauges(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<Vec<crate::metrics::ProviderHealthGauges>> {
    use crate::domain::lifecycle::states::{BreakerState, OperatorHold};
    use rust_decimal::prelude::ToPrimitive;
    let name = match tenant {
        Some(id) => client.query_opt("SELECT name FROM tenants WHERE id = $1", &[&id])?.map(|r| r.get::<_, String>("name")),
        None => None,
    };
    if tenant.is_some() && name.is_none() {
        return Ok(vec![]);
    }
    Ok(crate::db::provider_health::list(client, name.as_deref())?
        .into_iter()
        .map(|h| crate::metrics::ProviderHealthGauges {
            tenant: h.tenant,
            provider: h.provider,
            balance: h.balance.and_then(|b| b.to_f64()),
            low: h.low,
            breaker: match h.breaker {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            },
            hold: match h.hold {
                None => 0,
                Some(OperatorHold::Paused) => 1,
                Some(OperatorHold::Draining) => 2,
            },
            unavailable: h.unavailable.len() as i64,
        })
        .collect())
}
