//! The read-only statements behind `orderctl stats` and `orderctl doctor`: counts, lateness and
//! timings of the whole operation, and the Postgres health numbers that kill job queues.

use crate::db::claims::due_kind;
use crate::db::row::state;
use crate::db::{GenericClient, Param};
use crate::domain::lifecycle::states::{sql_in, DeliveryState, ExternalStatus, OrderStatus, PlacementState};
use crate::error::Result;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// Orders of one (status, external status) pair.
#[derive(Debug, Clone, Serialize)]
pub struct StatusCount {
    pub status: OrderStatus,
    pub external_status: ExternalStatus,
    pub orders: i64,
}

/// Where the rollups of finished history end (`rollup_watermark`, a five-minute slice's end:
/// sql/0026), and how a window splits around it, coarsest in the middle: whole rolled-up UTC
/// days from the daily rollups, the rolled-up hours around them from the hourly ones, the
/// rolled-up slices around those from `order_slices`, and live from the rows only the window's
/// first partial slice and everything after the watermark. Open orders and orders an operator
/// decided with `--force` are always live.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    /// The window's start.
    since: DateTime<Utc>,
    /// Live from `since` up to here (empty when `since` is past the watermark).
    edge_end: DateTime<Utc>,
    /// Live from here on.
    tail_from: DateTime<Utc>,
    /// Rolled-up days `[day_from, day_to)` (empty when `day_from >= day_to`).
    day_from: NaiveDate,
    day_to: NaiveDate,
    /// Rolled-up hours `[from, to)` before the days, and after them.
    hours_before: (DateTime<Utc>, DateTime<Utc>),
    hours_after: (DateTime<Utc>, DateTime<Utc>),
    /// Rolled-up slices `[from, to)` before the hours, and after them.
    slices_before: (DateTime<Utc>, DateTime<Utc>),
    slices_after: (DateTime<Utc>, DateTime<Utc>),
}

impl Split {
    /// The parameters of a window's reads: `$1` the tenant (or NULL), `$2` since, `$3` the end of
    /// the live edge, `$4` the start of the live tail, `$5`..`$6` the days, `$7`..`$8` and
    /// `$9`..`$10` the hours, `$11`..`$12` and `$13`..`$14` the slices.
    fn params<'a>(&'a self, tenant: &'a Option<&'a str>) -> [&'a dyn Param; 14] {
        let (h, i) = (&self.hours_before, &self.hours_after);
        let (s, t) = (&self.slices_before, &self.slices_after);
        [
            tenant,
            &self.since,
            &self.edge_end,
            &self.tail_from,
            &self.day_from,
            &self.day_to,
            &h.0,
            &h.1,
            &i.0,
            &i.1,
            &s.0,
            &s.1,
            &t.0,
            &t.1,
        ]
    }
}

fn rolled_up_until(client: &mut impl GenericClient) -> Result<DateTime<Utc>> {
    Ok(client.query_one("SELECT rolled_up_until FROM rollup_watermark", &[])?.get("rolled_up_until"))
}

/// The last `step` boundary (whole slices, hours or days since the epoch) at or before `t`.
fn floor_to(t: DateTime<Utc>, step: chrono::Duration) -> DateTime<Utc> {
    let step_s = step.num_seconds();
    DateTime::<Utc>::from_timestamp(t.timestamp().div_euclid(step_s) * step_s, 0).unwrap_or(t)
}

/// The first `step` boundary at or after `t`.
fn ceil_to(t: DateTime<Utc>, step: chrono::Duration) -> DateTime<Utc> {
    let at = floor_to(t, step);
    if at == t {
        t
    } else {
        at + step
    }
}

/// The rollup levels, finest first: slices (sql/0026), hours (0020), days (0019). Each divides
/// the next, and all count from the epoch in UTC.
fn levels() -> [chrono::Duration; 3] {
    [chrono::Duration::minutes(5), chrono::Duration::hours(1), chrono::Duration::days(1)]
}

/// Splits `[since, watermark)` into the fewest rolled-up rows: walking up from `since`, each
/// level covers the stretch up to the next level's first boundary, as long as that boundary
/// is rolled up at the next level (at or before the watermark's floor there); the highest level
/// reached covers the middle, and below it each finer level covers the stretch from the next
/// coarser level's floor of the watermark to its own.
fn split(watermark: DateTime<Utc>, since: DateTime<Utc>) -> Split {
    let levels = levels();
    let empty = (watermark, watermark);
    let (mut before, mut after) = ([empty; 3], [empty; 2]);
    let edge_end = ceil_to(since, levels[0]).min(watermark);
    if since < watermark {
        let mut front = edge_end;
        let mut top = levels.len() - 1;
        for i in 0..top {
            let next = ceil_to(front, levels[i + 1]);
            if next > floor_to(watermark, levels[i + 1]) {
                top = i;
                break;
            }
            before[i] = (front, next);
            front = next;
        }
        before[top] = (front, floor_to(watermark, levels[top]));
        for (j, range) in after.iter_mut().enumerate().take(top) {
            *range = (floor_to(watermark, levels[j + 1]), floor_to(watermark, levels[j]));
        }
    }
    let (days, day_to) = (before[2].0.date_naive(), before[2].1.date_naive());
    Split {
        since,
        edge_end,
        tail_from: watermark.max(since),
        day_from: days,
        day_to,
        hours_before: before[1],
        hours_after: after[1],
        slices_before: before[0],
        slices_after: after[0],
    }
}

/// Finished orders counted live (the rollups count the rest): those finished at or after the
/// watermark ($W), those with no completion time, and every one an operator forced.
const LIVE_FINISHED: &str = "SELECT o.tenant_id, o.provider_id, o.status, o.external_status FROM orders o
          WHERE o.status <> {pending} AND NOT o.operator_forced AND (o.completed_at >= $W OR o.completed_at IS NULL)
         UNION ALL
         SELECT o.tenant_id, o.provider_id, o.status, o.external_status FROM orders o
          WHERE o.operator_forced AND o.status <> {pending}
         UNION ALL
         SELECT o.tenant_id, o.provider_id, o.status, o.external_status FROM orders o WHERE {open}";

/// Every order as (tenant_id, provider_id or 0, status, external_status, orders): open orders
/// and the live part from the rows, finished history from `order_totals`. `$1`: tenant name or
/// NULL; `$2`: the watermark.
fn all_orders_sql() -> String {
    let live = LIVE_FINISHED
        .replace("{open}", &crate::domain::lifecycle::states::pending_sql("o."))
        .replace("{pending}", OrderStatus::Pending.sql())
        .replace("$W", "$2");
    format!(
        "SELECT c.tenant_id, c.provider_id, c.status, c.external_status, c.orders
           FROM (SELECT tenant_id, coalesce(provider_id, 0) AS provider_id, status, external_status, count(*) AS orders
                   FROM ({live}) l GROUP BY 1, 2, 3, 4
                 UNION ALL
                 SELECT tenant_id, provider_id, status, external_status, sum(orders) FROM order_totals GROUP BY 1, 2, 3, 4) c
           JOIN tenants t ON t.id = c.tenant_id
          WHERE ($1::text IS NULL OR t.name = $1)"
    )
}

pub fn orders_by_status(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<StatusCount>> {
    let watermark = rolled_up_until(client)?;
    let rows = client.query(
        &format!(
            "SELECT a.status, a.external_status, sum(a.orders)::bigint AS orders
           FROM ({all}) a
          GROUP BY 1, 2
          ORDER BY array_position(ARRAY[{statuses}], a.status),
                   array_position(ARRAY[{external_statuses}], a.external_status)",
            all = all_orders_sql(),
            statuses = sql_in(OrderStatus::ALL),
            external_statuses = sql_in(ExternalStatus::ALL)
        ),
        &[&tenant, &watermark],
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
    let watermark = rolled_up_until(client)?;
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, coalesce(p.name, '-') AS provider,
                coalesce(sum(a.orders) FILTER (WHERE a.status = {pending}), 0)::bigint AS open,
                coalesce(sum(a.orders) FILTER (WHERE a.status = {approved}), 0)::bigint AS approved,
                coalesce(sum(a.orders) FILTER (WHERE a.status = {rejected}), 0)::bigint AS rejected
           FROM ({all}) a JOIN tenants t ON t.id = a.tenant_id
           LEFT JOIN providers p ON p.id = a.provider_id
          GROUP BY 1, 2
          ORDER BY 1, 2",
            all = all_orders_sql(),
            pending = OrderStatus::Pending.sql(),
            approved = OrderStatus::Approved.sql(),
            rejected = OrderStatus::Rejected.sql()
        ),
        &[&tenant, &watermark],
    )?;
    Ok(rows
        .iter()
        .map(|r| ProviderOrders {
            tenant: r.get("tenant"),
            provider: r.get("provider"),
            open: r.get("open"),
            approved: r.get("approved"),
            rejected: r.get("rejected"),
        })
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

/// One arm per partial due index (placements, checks): each reads only the orders with work
/// scheduled; a bare `next_check_at IS NOT NULL` matches neither and scans the table.
fn scheduled_orders_sql(columns: &str, tenant_filter: &str) -> String {
    format!(
        "SELECT {columns} FROM orders o
          WHERE o.next_check_at IS NOT NULL AND {placements} AND {tenant_filter}
         UNION ALL
         SELECT {columns} FROM orders o
          WHERE o.next_check_at IS NOT NULL AND {checks} AND {tenant_filter}",
        placements = due_kind("o.", true),
        checks = due_kind("o.", false)
    )
}

pub fn due(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Due> {
    let scheduled =
        scheduled_orders_sql("o.next_check_at", "($1::text IS NULL OR o.tenant_id = (SELECT id FROM tenants WHERE name = $1))");
    let r = client.query_one(
        &format!(
            "SELECT count(*) FILTER (WHERE s.next_check_at <= now()) AS due_now,
                min(s.next_check_at) FILTER (WHERE s.next_check_at <= now()) AS oldest_due_at,
                (extract(epoch FROM now() - min(s.next_check_at) FILTER (WHERE s.next_check_at <= now())) * 1000)::bigint
                    AS oldest_late_ms,
                count(*) FILTER (WHERE s.next_check_at > now()) AS scheduled_later
           FROM ({scheduled}) s"
        ),
        &[&tenant],
    )?;
    Ok(Due {
        due_now: r.get("due_now"),
        oldest_due_at: r.get("oldest_due_at"),
        oldest_late_ms: r.get("oldest_late_ms"),
        scheduled_later: r.get("scheduled_later"),
    })
}

/// Orders that reached a final status in the window, and how long they took from creation.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub approved: i64,
    pub rejected: i64,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
}

/// Orders finished in the window that are read live: `$2`..`$3` (the window's first partial
/// slice), from `$4` on (after the watermark), and every forced one from `$2` on.
fn live_finished_in_window() -> String {
    let pending = OrderStatus::Pending.sql();
    format!(
        "SELECT o.tenant_id, o.status, o.duration_ms FROM orders o
          WHERE o.status <> {pending} AND NOT o.operator_forced AND o.completed_at >= $2 AND o.completed_at < $3
         UNION ALL
         SELECT o.tenant_id, o.status, o.duration_ms FROM orders o
          WHERE o.status <> {pending} AND NOT o.operator_forced AND o.completed_at >= $4
         UNION ALL
         SELECT o.tenant_id, o.status, o.duration_ms FROM orders o
          WHERE o.operator_forced AND o.status <> {pending} AND o.completed_at >= $2"
    )
}

pub fn finished_since(client: &mut impl GenericClient, tenant: Option<&str>, since: DateTime<Utc>) -> Result<Finished> {
    let s = split(rolled_up_until(client)?, since);
    let scope = "($1::text IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = $1))";
    // Live rows come by duration bucket; rolled-up rows (sql/0025) as one histogram each, an
    // array of orders by bucket starting at bucket `first_bucket`.
    let rows = client.query(
        &format!(
            "SELECT false AS rolled, status, orderctl_duration_bucket(duration_ms) AS bucket, count(*) AS orders,
                    NULL::bigint[] AS durations, NULL::integer AS first_bucket
               FROM ({live}) l WHERE {scope} GROUP BY 2, 3
             UNION ALL
             SELECT true, status, NULL, orders, durations, array_lower(durations, 1) FROM order_days
              WHERE day >= $5 AND day < $6 AND {scope}
             UNION ALL
             SELECT true, status, NULL, orders, durations, array_lower(durations, 1) FROM order_hours
              WHERE ((hour >= $7 AND hour < $8) OR (hour >= $9 AND hour < $10)) AND {scope}
             UNION ALL
             SELECT true, status, NULL, orders, durations, array_lower(durations, 1) FROM order_slices
              WHERE ((slice >= $11 AND slice < $12) OR (slice >= $13 AND slice < $14)) AND {scope}",
            live = live_finished_in_window()
        ),
        &s.params(&tenant),
    )?;
    let mut histogram = Histogram::default();
    let (mut approved, mut rejected, mut rolled) = (0, 0, false);
    for r in &rows {
        let (status, n): (OrderStatus, i64) = (state(r, "status")?, r.get("orders"));
        match status {
            OrderStatus::Approved => approved += n,
            OrderStatus::Rejected => rejected += n,
            OrderStatus::Pending => {}
        }
        if r.get::<_, bool>("rolled") {
            let durations: Vec<Option<i64>> = r.get("durations");
            if let Some(first) = r.get::<_, Option<i32>>("first_bucket") {
                rolled = true;
                histogram.add_run(first, &durations);
            }
        } else {
            histogram.add(r.get("bucket"), n);
        }
    }
    let (median_ms, p90_ms) = if rolled {
        (histogram.percentile(0.5), histogram.percentile(0.9))
    } else {
        // Nothing rolled up in the window: exact, from the rows.
        let r = client.query_one(
            &format!(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS median_ms,
                        percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms) AS p90_ms
                   FROM ({live}) l WHERE {scope}",
                live = live_finished_in_window()
            ),
            &[&tenant, &since, &s.edge_end, &s.tail_from],
        )?;
        (r.get("median_ms"), r.get("p90_ms"))
    };
    Ok(Finished { approved, rejected, median_ms, p90_ms })
}

/// Orders by duration bucket (`orderctl_duration_bucket`: buckets 5 % wide), summed from live
/// rows and rolled-up histograms. A map, so a window's size is the buckets in use (a few
/// hundred at most), not the rows it was summed from.
#[derive(Debug, Default)]
struct Histogram(std::collections::BTreeMap<i32, i64>);

impl Histogram {
    /// `n` orders in `bucket`; a negative bucket (no duration recorded) counts in no percentile.
    fn add(&mut self, bucket: i32, n: i64) {
        if bucket >= 0 && n > 0 {
            *self.0.entry(bucket).or_default() += n;
        }
    }

    /// A rolled-up histogram: `counts[i]` orders in bucket `first + i`.
    fn add_run(&mut self, first: i32, counts: &[Option<i64>]) {
        for (bucket, n) in (first..).zip(counts) {
            self.add(bucket, n.unwrap_or(0));
        }
    }

    /// The middle of the bucket holding the value at percentile_cont's position: within 2.5 %
    /// of the exact value.
    fn percentile(&self, p: f64) -> Option<f64> {
        let total: i64 = self.0.values().sum();
        if total == 0 {
            return None;
        }
        let position = (p * (total - 1) as f64).floor() as i64;
        let mut seen = 0;
        for (bucket, n) in &self.0 {
            seen += n;
            if seen > position {
                return Some(1.05f64.powf(*bucket as f64 + 0.5));
            }
        }
        None
    }
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

/// The order events a provider's activity counts (the same list as the rollup's).
const ACTIVITY_EVENTS: &str = "'check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up'";

/// Placements and counted events in the window, as (provider_id, what, n): whole rolled-up days
/// from `provider_activity_days` (`$5`..`$6`), rolled-up hours around them from
/// `provider_activity_hours` (`$7`..`$8`, `$9`..`$10`), rolled-up slices around those from
/// `provider_activity_slices` (`$11`..`$12`, `$13`..`$14`), the rest live (`$2`..`$3` and from
/// `$4` on).
fn activity_sql() -> String {
    let live = |from_to: &str| {
        format!(
            "SELECT pl.provider_id, 'placement.' || pl.outcome AS what, count(*) AS n FROM placements pl
              WHERE {from_to} GROUP BY 1, 2
             UNION ALL
             SELECT provider_id, kind, count(*) FROM (
                 -- One index probe per event: a join may hash the whole orders table.
                 -- (Its creation time too: each probe is pruned to the order's month.)
                 SELECT (SELECT o.provider_id FROM orders o WHERE o.id = e.order_id AND o.created_at = e.order_created_at)
                        AS provider_id, e.kind
                   FROM order_events e WHERE {events} AND e.kind IN ({ACTIVITY_EVENTS})) ev
              WHERE provider_id IS NOT NULL GROUP BY 1, 2",
            from_to = from_to.replace("{at}", "pl.created_at"),
            events = from_to.replace("{at}", "e.at")
        )
    };
    format!(
        "SELECT provider_id, what, sum(n)::bigint AS n FROM provider_activity_days WHERE day >= $5 AND day < $6 GROUP BY 1, 2
         UNION ALL
         SELECT provider_id, what, sum(n)::bigint FROM (
             SELECT provider_id, what, n FROM provider_activity_hours WHERE hour >= $7 AND hour < $8
             UNION ALL
             SELECT provider_id, what, n FROM provider_activity_hours WHERE hour >= $9 AND hour < $10
             UNION ALL
             SELECT provider_id, what, n FROM provider_activity_slices WHERE slice >= $11 AND slice < $12
             UNION ALL
             SELECT provider_id, what, n FROM provider_activity_slices WHERE slice >= $13 AND slice < $14) h
          GROUP BY 1, 2
         UNION ALL {edge}
         UNION ALL {tail}",
        edge = live("{at} >= $2 AND {at} < $3"),
        tail = live("{at} >= $4")
    )
}

pub fn provider_activity(
    client: &mut impl GenericClient,
    tenant: Option<&str>,
    since: DateTime<Utc>,
) -> Result<Vec<ProviderActivity>> {
    let s = split(rolled_up_until(client)?, since);
    let placement = |outcome: PlacementState| format!("'placement.' || {}", outcome.sql());
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, p.name AS provider,
                coalesce(sum(a.n) FILTER (WHERE a.what LIKE 'placement.%'), 0)::bigint AS placements,
                coalesce(sum(a.n) FILTER (WHERE a.what = {accepted}), 0)::bigint AS accepted,
                coalesce(sum(a.n) FILTER (WHERE a.what = {rejected}), 0)::bigint AS rejected,
                coalesce(sum(a.n) FILTER (WHERE a.what = {ambiguous}), 0)::bigint AS ambiguous,
                coalesce(sum(a.n) FILTER (WHERE a.what = 'check.waiting'), 0)::bigint AS waiting,
                coalesce(sum(a.n) FILTER (WHERE a.what = 'check.no_news'), 0)::bigint AS no_news,
                coalesce(sum(a.n) FILTER (WHERE a.what = 'check.approved'), 0)::bigint AS approved,
                coalesce(sum(a.n) FILTER (WHERE a.what = 'check.cancelled'), 0)::bigint AS cancelled,
                coalesce(sum(a.n) FILTER (WHERE a.what = 'gave_up'), 0)::bigint AS given_up
           FROM providers p JOIN tenants t ON t.id = p.tenant_id
           LEFT JOIN ({activity}) a ON a.provider_id = p.id
          WHERE ($1::text IS NULL OR t.name = $1)
          GROUP BY 1, 2
          ORDER BY 1, 2",
            activity = activity_sql(),
            accepted = placement(PlacementState::Accepted),
            rejected = placement(PlacementState::Rejected),
            ambiguous = placement(PlacementState::Ambiguous)
        ),
        &s.params(&tenant),
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let (waiting, no_news, approved, cancelled): (i64, i64, i64, i64) =
                (r.get("waiting"), r.get("no_news"), r.get("approved"), r.get("cancelled"));
            ProviderActivity {
                tenant: r.get("tenant"),
                provider: r.get("provider"),
                placements: r.get("placements"),
                placements_accepted: r.get("accepted"),
                placements_rejected: r.get("rejected"),
                placements_ambiguous: r.get("ambiguous"),
                checks: waiting + no_news + approved + cancelled,
                checks_waiting: waiting,
                checks_no_news: no_news,
                checks_approved: approved,
                checks_cancelled: cancelled,
                given_up: r.get("given_up"),
            }
        })
        .collect())
}

/// Roll up at most `max_days` days' worth of closed five-minute slices of finished history, and
/// the hours and days they complete (`orderctl_roll_up`, see migrations 0019, 0020 and 0026):
/// run by every safety sweep. Returns the slices rolled up (0 when another process holds the
/// job or no slice has closed since).
pub fn roll_up(client: &mut impl GenericClient, max_days: i32) -> Result<i32> {
    Ok(client.query_one("SELECT orderctl_roll_up($1) AS slices", &[&max_days])?.get("slices"))
}

/// How far the stats rollups trail the clock, and whether finished history waits behind them.
#[derive(Debug, Clone, Serialize)]
pub struct RollupLag {
    pub rolled_up_until: DateTime<Utc>,
    pub behind_ms: i64,
    /// Orders finished more than `older_than` ago that no roll-up has counted yet.
    pub history_waiting: bool,
}

/// The watermark and its distance from the clock (`SELECT ... FOR UPDATE` is not needed: a
/// reading a roll-up later moves is fine), and whether orders (of `tenant`, if given) finished
/// more than `older_than` ago wait behind it. One probe of `orders_completed`.
pub fn rollup_lag(client: &mut impl GenericClient, older_than: std::time::Duration, tenant: Option<&str>) -> Result<RollupLag> {
    let older_than = format!("{} seconds", older_than.as_secs());
    let r = client.query_one(
        &format!(
            "SELECT w.rolled_up_until, (extract(epoch FROM now() - w.rolled_up_until) * 1000)::bigint AS behind_ms,
                    EXISTS (SELECT 1 FROM orders o
                             WHERE o.status <> {pending} AND NOT o.operator_forced
                               AND o.completed_at >= w.rolled_up_until AND o.completed_at < now() - $1::text::interval
                               AND ($2::text IS NULL OR o.tenant_id = (SELECT id FROM tenants WHERE name = $2)))
                        AS history_waiting
               FROM rollup_watermark w",
            pending = OrderStatus::Pending.sql()
        ),
        &[&older_than, &tenant],
    )?;
    Ok(RollupLag {
        rolled_up_until: r.get("rolled_up_until"),
        behind_ms: r.get("behind_ms"),
        history_waiting: r.get("history_waiting"),
    })
}

/// The rollup tables: all of them are keyed by created month, so archiving a month removes its
/// rows from each (`db::partitions`), and a rebuild empties them all.
pub const ROLLUP_TABLES: [&str; 7] = [
    "order_totals",
    "order_days",
    "provider_activity_days",
    "order_hours",
    "provider_activity_hours",
    "order_slices",
    "provider_activity_slices",
];

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
    table_health(client, "orders")
}

/// The hot tables: every claim or write-back updates or inserts into them, so their dead row
/// versions are what a queue wades through.
pub const HOT_TABLES: [&str; 5] = ["orders", "placements", "order_events", "webhook_deliveries", "provider_permits"];

/// Vacuum state of one table, summed over its partitions when it is partitioned (sql/0018):
/// the most recent vacuum and analyze of any of them.
pub fn table_health(client: &mut impl GenericClient, table: &str) -> Result<TableHealth> {
    let r = client.query_one(
        "SELECT coalesce(sum(s.n_live_tup), 0)::bigint, coalesce(sum(s.n_dead_tup), 0)::bigint,
                max(s.last_autovacuum), max(s.last_vacuum), max(s.last_autoanalyze), max(s.last_analyze),
                current_setting('autovacuum') = 'on'
           FROM (SELECT 1) one
           LEFT JOIN pg_partition_tree(to_regclass($1)) t ON true
           LEFT JOIN pg_stat_user_tables s ON s.relid = t.relid",
        &[&table],
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

/// Of the latest orders (a bounded sample), those written since the database mints ids
/// (migration 0027): how many, and how many of them a writer gave an id that is not time-ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentOrderIds {
    pub checked: i64,
    pub not_time_ordered: i64,
}

/// How many of the latest orders to look at: one backward walk of the order number's index,
/// whatever the history (a tenant's doctor counts its own among them).
const RECENT_ORDER_IDS_SAMPLE: i64 = 1000;

/// The migration from which the database mints order ids (`0027_time_ordered_order_ids.sql`):
/// orders written before it are not judged.
const MINTING_SINCE_MIGRATION: i32 = 27;

pub fn recent_order_ids(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<RecentOrderIds> {
    // Version 7 is the 13th hex digit of the id, the 15th character of its text form.
    let r = client.query_one(
        "SELECT count(*), count(*) FILTER (WHERE substr(r.id::text, 15, 1) <> '7')
           FROM (SELECT id, tenant_id, created_at FROM orders ORDER BY number DESC LIMIT $1) r
          WHERE r.created_at >= (SELECT applied_at FROM orderctl_migrations WHERE version = $3)
            AND ($2::text IS NULL OR r.tenant_id = (SELECT id FROM tenants WHERE name = $2))",
        &[&RECENT_ORDER_IDS_SAMPLE, &tenant, &MINTING_SINCE_MIGRATION],
    )?;
    Ok(RecentOrderIds { checked: r.get(0), not_time_ordered: r.get(1) })
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

/// The claims' hot partial indexes on `orders_live` (sql/0031), and how to build each again (the predicates of
/// `sql/0016_provider_health.sql`; the schema test compares them with the migrated database).
pub fn due_indexes() -> [(&'static str, String); 2] {
    let create = |name: &str, placing: bool| {
        format!(
            "CREATE INDEX CONCURRENTLY {name} ON orders_live (lane, next_check_at) WHERE next_check_at IS NOT NULL AND {};",
            crate::db::claims::due_index_states("", placing)
        )
    };
    [("orders_due", create("orders_due", false)), ("orders_due_placements", create("orders_due_placements", true))]
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
/// orders needing an operator, order outcome totals, webhook backlogs and the rollups' lag.
pub fn metric_gauges(client: &mut impl GenericClient, tenant: Option<i64>) -> Result<crate::metrics::FromDatabase> {
    // One part per partial due index (placements, checks): each reads only the orders with work
    // scheduled; a bare `next_check_at <= now()` matches neither and scans the table.
    let due = client.query_one(
        &format!(
            "SELECT coalesce(sum(n), 0)::bigint, coalesce((extract(epoch FROM now() - min(oldest)) * 1000)::bigint, 0)
           FROM (SELECT count(*) AS n, min(next_check_at) AS oldest FROM orders
                  WHERE next_check_at IS NOT NULL AND {placements} AND next_check_at <= now()
                    AND ($1::bigint IS NULL OR tenant_id = $1)
                 UNION ALL
                 SELECT count(*), min(next_check_at) FROM orders
                  WHERE next_check_at IS NOT NULL AND {checks} AND next_check_at <= now()
                    AND ($1::bigint IS NULL OR tenant_id = $1)) parts",
            placements = due_kind("", true),
            checks = due_kind("", false)
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
    let rollups_behind_ms: i64 = client
        .query_one("SELECT (extract(epoch FROM now() - rolled_up_until) * 1000)::bigint FROM rollup_watermark", &[])?
        .get(0);
    Ok(crate::metrics::FromDatabase {
        tenants,
        providers,
        due: due.get(0),
        oldest_late: std::time::Duration::from_millis(due.get::<_, i64>(1).max(0) as u64),
        rollups_behind: std::time::Duration::from_millis(rollups_behind_ms.max(0) as u64),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn a_window_reads_whole_days_then_hours_then_slices_around_them_then_live_rows() {
        let s = split(at("2026-12-06T05:35:00Z"), at("2026-11-06T05:47:12Z"));
        assert_eq!(s.edge_end, at("2026-11-06T05:50:00Z"), "only the first partial slice is live at the start");
        assert_eq!(s.slices_before, (at("2026-11-06T05:50:00Z"), at("2026-11-06T06:00:00Z")));
        assert_eq!(s.hours_before, (at("2026-11-06T06:00:00Z"), at("2026-11-07T00:00:00Z")));
        assert_eq!((s.day_from, s.day_to), (day("2026-11-07"), day("2026-12-06")));
        assert_eq!(s.hours_after, (at("2026-12-06T00:00:00Z"), at("2026-12-06T05:00:00Z")));
        assert_eq!(s.slices_after, (at("2026-12-06T05:00:00Z"), at("2026-12-06T05:35:00Z")));
        assert_eq!(s.tail_from, at("2026-12-06T05:35:00Z"));
    }

    #[test]
    fn a_window_within_a_day_of_the_watermark_reads_hours_and_slices_only() {
        let s = split(at("2026-12-06T05:35:00Z"), at("2026-12-05T05:30:00Z"));
        assert_eq!(s.edge_end, at("2026-12-05T05:30:00Z"), "starting on a slice: nothing live before it");
        assert_eq!(s.slices_before, (at("2026-12-05T05:30:00Z"), at("2026-12-05T06:00:00Z")));
        assert!(s.day_from >= s.day_to, "no whole day");
        assert_eq!(s.hours_before, (at("2026-12-05T06:00:00Z"), at("2026-12-06T00:00:00Z")));
        assert_eq!(s.hours_after, (at("2026-12-06T00:00:00Z"), at("2026-12-06T05:00:00Z")));
        assert_eq!(s.slices_after, (at("2026-12-06T05:00:00Z"), at("2026-12-06T05:35:00Z")));
        // Within the watermark's hour: slices only.
        let s = split(at("2026-12-06T05:35:00Z"), at("2026-12-06T05:02:00Z"));
        assert_eq!(s.edge_end, at("2026-12-06T05:05:00Z"));
        assert_eq!(s.slices_before, (at("2026-12-06T05:05:00Z"), at("2026-12-06T05:35:00Z")));
        assert!(s.hours_before.0 >= s.hours_before.1 && s.hours_after.0 >= s.hours_after.1);
        assert!(s.slices_after.0 >= s.slices_after.1);
    }

    #[test]
    fn a_window_after_the_watermark_is_all_live() {
        let s = split(at("2026-12-06T05:35:00Z"), at("2026-12-06T05:37:00Z"));
        assert!(s.edge_end <= at("2026-12-06T05:37:00Z"), "no edge");
        assert_eq!(s.tail_from, at("2026-12-06T05:37:00Z"));
        assert!(s.day_from >= s.day_to);
        assert!(s.hours_before.0 >= s.hours_before.1 && s.hours_after.0 >= s.hours_after.1);
        assert!(s.slices_before.0 >= s.slices_before.1 && s.slices_after.0 >= s.slices_after.1);
    }

    /// Every window over a few days around a watermark, at every slice and a few odd starts: the
    /// live edge, the rolled-up ranges and the live tail tile `[since, now)` exactly once, and
    /// each rolled-up range is aligned to its level.
    #[test]
    fn the_pieces_of_any_window_tile_it_without_gaps_or_overlaps() {
        let [slice, hour, day] = levels();
        for watermark in [at("2026-12-06T05:35:00Z"), at("2026-12-06T00:00:00Z"), at("2026-12-06T05:00:00Z")] {
            let mut since = watermark - chrono::Duration::days(3);
            while since < watermark + chrono::Duration::hours(1) {
                for odd in [0, 1, 299] {
                    let since = since + chrono::Duration::seconds(odd);
                    let s = split(watermark, since);
                    let days = (midnight(s.day_from), midnight(s.day_to));
                    let mut pieces: Vec<(DateTime<Utc>, DateTime<Utc>, chrono::Duration)> = vec![
                        (s.since, s.edge_end, chrono::Duration::seconds(1)),
                        (s.slices_before.0, s.slices_before.1, slice),
                        (s.hours_before.0, s.hours_before.1, hour),
                        (days.0, days.1, day),
                        (s.hours_after.0, s.hours_after.1, hour),
                        (s.slices_after.0, s.slices_after.1, slice),
                    ];
                    pieces.retain(|(from, to, _)| from < to);
                    let mut at_ = since;
                    for (from, to, step) in &pieces {
                        assert_eq!(*from, at_, "{since} with watermark {watermark}: {pieces:?}");
                        assert_eq!((floor_to(*from, *step), floor_to(*to, *step)), (*from, *to), "aligned: {pieces:?}");
                        at_ = *to;
                    }
                    assert_eq!(at_.max(since), s.tail_from, "{since} with watermark {watermark}: {pieces:?}");
                }
                since += slice;
            }
        }
    }

    fn midnight(d: NaiveDate) -> DateTime<Utc> {
        d.and_time(chrono::NaiveTime::MIN).and_utc()
    }
}
