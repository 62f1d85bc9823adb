//! Monthly partitions of `order_events` (sql/0018_monthly_partitions.sql), of the finished
//! orders, `orders_done` (sql/0031_orders_live_and_done.sql: open and watched orders live in
//! `orders_live`, which the hot path alone reads) and of `placements` (sql/0032), and the database side of `archive`: read the
//! finished orders of earlier months with their events, placements and webhook deliveries;
//! remove their deliveries and keys in small batches; drop the months' partitions.
//!
//! Every step that takes a lock the hot path could queue behind runs with `SET LOCAL
//! lock_timeout` and is retried a bounded number of times, so a claim or a write-back never
//! waits more than about one lock timeout for it.

use crate::db::{Client, GenericClient, Transaction};
use crate::domain::lifecycle::states::{sql_in, DeliveryState, OrderStatus};
use crate::domain::lifecycle::Attention;
use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// The tables partitioned by month, each by its order's creation time.
pub const MONTHLY: [&str; 3] = ["order_events", "orders_done", "placements"];
/// The tables an archive writes, in the order it writes them.
pub const TABLES: [&str; 4] = ["orders", "order_events", "placements", "webhook_deliveries"];
/// How long a statement of the archive waits for a lock before it gives up and tries again:
/// what a claim or write-back queued behind it can wait at most (the bound is 100 ms).
const LOCK_TIMEOUT: &str = "40ms";
/// Attempts of one locking step before it gives up (with the pause between them, about 10 s).
const LOCK_ATTEMPTS: u32 = 50;
/// How long taking the lock of a partition drop may take.
const LOCK_STATEMENT_TIMEOUT: &str = "60ms";
const LOCK_PAUSE: Duration = Duration::from_millis(200);
/// Orders removed per transaction: small, so each transaction is short and holds few row locks.
pub const BATCH: i64 = 500;

/// `2026-01`.
pub fn month_label(m: NaiveDate) -> String {
    m.format("%Y-%m").to_string()
}

/// `2026-01` → the first day of that month.
pub fn parse_month(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| Error::invalid(format!("'{s}' is not a month")).with_hint("write the month as YYYY-MM, e.g. 2026-01"))
}

/// The first instant of month `m` in UTC.
pub fn month_start(m: NaiveDate) -> DateTime<Utc> {
    m.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The partition of `table` for month `m`: `order_events_y2026m01`.
pub fn partition_name(table: &str, m: NaiveDate) -> String {
    format!("{table}_y{}", m.format("%Ym%m"))
}

/// Runs `step` in its own transaction with a short lock timeout; a lock not granted in time
/// rolls it back, and it is tried again after a pause, a bounded number of times.
fn with_lock_timeout<T>(client: &mut Client, what: &str, mut step: impl FnMut(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
    let mut attempt = 1;
    loop {
        let mut tx = client.transaction()?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))?;
        match step(&mut tx).and_then(|v| tx.commit().map(|_| v).map_err(Error::from)) {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < LOCK_ATTEMPTS => {
                log::debug!("{what}: lock not granted within {LOCK_TIMEOUT} (attempt {attempt}); trying again");
                attempt += 1;
                std::thread::sleep(LOCK_PAUSE);
            }
            Err(e) if retryable(&e) => {
                return Err(Error::refused(format!(
                    "{what}: the tables were busy for {LOCK_ATTEMPTS} attempts of {LOCK_TIMEOUT} each"
                ))
                .with_hint("a long transaction may hold them (`orderctl doctor` shows the oldest); run it again"))
            }
            Err(e) => return Err(e),
        }
    }
}

/// A lock not granted within the lock timeout (55P03), or a locking statement cancelled by its
/// statement timeout (57014): the step rolled back and may be tried again.
fn retryable(e: &Error) -> bool {
    matches!(e.sqlstate.as_deref(), Some("55P03") | Some("57014"))
}

/// Creates every missing monthly partition of order_events from the current month (UTC) to
/// `ahead` months after it; returns the names created (none when all exist, the usual case,
/// which takes no lock beyond reading the catalogue).
pub fn ensure_ahead(client: &mut Client, ahead: u32) -> Result<Vec<String>> {
    let missing: bool = client
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                               date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int),
                                               interval '1 month') AS m
                 CROSS JOIN unnest($2::text[]) AS parent
                  WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i
                                     WHERE i.inhparent = parent::regclass
                                       AND i.inhrelid::regclass::text = orderctl_partition_name(parent, m::date)))",
            &[&(ahead as i32), &MONTHLY.as_slice()],
        )?
        .get(0);
    if !missing {
        return Ok(vec![]);
    }
    with_lock_timeout(client, "creating partitions ahead", |tx| {
        let rows = tx.query(
            "SELECT p FROM orderctl_ensure_partitions((now() AT TIME ZONE 'UTC')::date,
                                                      ((now() AT TIME ZONE 'UTC') + make_interval(months => $1::int))::date) AS p",
            &[&(ahead as i32)],
        )?;
        Ok(rows.iter().map(|r| r.get::<_, String>("p")).collect())
    })
}

/// One month's partition of order_events or orders_done, as `orderctl partitions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub table: String,
    pub month: String,
    pub name: String,
    /// Rows in the partition (events, or finished orders).
    pub rows: i64,
    /// Orders created in the month (in the plain `orders` table).
    pub orders: i64,
    /// Of those, the ones not finished (archive refuses the month).
    pub open_orders: i64,
}

/// Every attached monthly partition, oldest first (events before orders within a month), with
/// exact row counts.
pub fn list(client: &mut Client) -> Result<Vec<Partition>> {
    let parts = client.query(
        "SELECT p.relname AS parent, c.relname AS name,
                to_date(substring(c.relname FROM '_y(\\d{4}m\\d{2})$'), 'YYYY\"m\"MM') AS month
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
          WHERE p.relname = ANY($1)
          ORDER BY 3, array_position($1, p.relname::text)",
        &[&MONTHLY.as_slice()],
    )?;
    let mut out = Vec::new();
    for r in &parts {
        let (table, name, month): (String, String, NaiveDate) = (r.get("parent"), r.get("name"), r.get("month"));
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {}", quote_ident(&name)), &[])?.get(0);
        let next = month.checked_add_months(chrono::Months::new(1)).unwrap_or(month);
        let counts = client.query_one(
            &format!(
                "SELECT count(*) AS orders, count(*) FILTER (WHERE {}) AS open FROM orders o
                  WHERE o.created_at >= $1 AND o.created_at < $2",
                open_order_sql()
            ),
            &[&month_start(month), &month_start(next)],
        )?;
        out.push(Partition {
            table,
            month: month_label(month),
            name,
            rows,
            orders: counts.get("orders"),
            open_orders: counts.get("open"),
        });
    }
    Ok(out)
}

/// An order an accountant would not call finished: still pending, still watched (an operator's
/// forced decision), a provider's late delivery not yet settled, or a webhook notice still to
/// be delivered (archive removes its deliveries with it). Never NULL, so `NOT` of it is the
/// finished orders.
pub fn open_order_sql() -> String {
    format!(
        "(o.status = {pending} OR o.next_check_at IS NOT NULL OR (o.attention IN ({late}) AND o.settlement IS NULL) IS TRUE
          OR EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.order_id = o.id AND d.state = {delivery_pending}))",
        pending = OrderStatus::Pending.sql(),
        late = sql_in(&[Attention::DeliveredAfterRefund, Attention::DeliveredAfterManualApproval]),
        delivery_pending = DeliveryState::Pending.sql(),
    )
}

/// `"name"`, for a partition name built by orderctl.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Up to ten (number, month) of open orders created before `before`: any, and archive refuses.
pub fn open_orders_before(client: &mut impl GenericClient, before: NaiveDate) -> Result<Vec<(i64, String)>> {
    let rows = client.query(
        &format!(
            "SELECT o.number, to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM orders o
              WHERE o.created_at < $1 AND {} ORDER BY o.number LIMIT 10",
            open_order_sql()
        ),
        &[&month_start(before)],
    )?;
    Ok(rows.iter().map(|r| (r.get("number"), r.get("month"))).collect())
}

/// The first order (number, month) created before `before` whose keys are still there (the
/// archive removes those of every finished order it wrote): none may be left when the months'
/// partitions are dropped.
pub fn first_order_before(client: &mut impl GenericClient, before: NaiveDate) -> Result<Option<(i64, String)>> {
    let row = client.query_opt(
        "SELECT number, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM order_keys
          WHERE created_at < $1 ORDER BY created_at LIMIT 1",
        &[&month_start(before)],
    )?;
    Ok(row.map(|r| (r.get("number"), r.get("month"))))
}

/// The months before `before` that still hold orders or event partitions, oldest first.
pub fn months_before(client: &mut impl GenericClient, before: NaiveDate) -> Result<Vec<NaiveDate>> {
    let rows = client.query(
        "SELECT DISTINCT m FROM (
             SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS m FROM orders WHERE created_at < $1
             UNION
             SELECT to_date(substring(c.relname FROM '_y(\\d{4}m\\d{2})$'), 'YYYY\"m\"MM')
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
              WHERE p.relname = ANY($3)
         ) months WHERE m < $2 ORDER BY m",
        &[&month_start(before), &before, &MONTHLY.as_slice()],
    )?;
    Ok(rows.iter().map(|r| r.get::<_, NaiveDate>("m")).collect())
}

/// Reads every row of `table` that belongs to orders created before `before`, as JSON text with
/// the order's month, in one snapshot (`tx`), 5000 rows at a time; returns how many.
pub fn read_rows(
    tx: &mut Transaction<'_>,
    table: &str,
    before: NaiveDate,
    mut each: impl FnMut(&str, String) -> Result<()>,
) -> Result<u64> {
    // Events carry their order's creation time (and are pruned to the archived months by it);
    // the other tables join their order.
    let query = match table {
        "orders" => {
            "SELECT o.created_at AS order_created_at, row_to_json(o)::text AS j FROM orders o
                      WHERE o.created_at < $1 ORDER BY o.number"
        }
        "order_events" => {
            "SELECT e.order_created_at, row_to_json(e)::text AS j FROM order_events e
                            WHERE e.order_created_at < $1 ORDER BY e.id"
        }
        "placements" => {
            "SELECT p.order_created_at, row_to_json(p)::text AS j FROM placements p
                           WHERE p.order_created_at < $1 ORDER BY p.id"
        }
        _ => {
            "SELECT o.created_at AS order_created_at, row_to_json(d)::text AS j
                FROM webhook_deliveries d JOIN orders o ON o.id = d.order_id WHERE o.created_at < $1 ORDER BY d.id"
        }
    };
    let cursor = format!("archive_{table}");
    let portal_sql = format!(
        "DECLARE {cursor} NO SCROLL CURSOR FOR {}",
        query.replace("$1", &format!("'{}'::timestamptz", month_start(before).to_rfc3339()))
    );
    tx.batch_execute(&portal_sql)?;
    let mut n = 0;
    loop {
        let rows = tx.query(&format!("FETCH 5000 FROM {cursor}"), &[])?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let at: DateTime<Utc> = r.get("order_created_at");
            each(&at.format("%Y-%m").to_string(), r.get("j"))?;
            n += 1;
        }
    }
    tx.batch_execute(&format!("CLOSE {cursor}"))?;
    Ok(n)
}

/// Removes the webhook deliveries and keys (`order_keys`) of up to BATCH finished orders
/// created before `before`, in one short transaction; returns how many orders (0: none left).
/// The orders' own rows and their placements go with their months' partitions of
/// `orders_done` and `placements` ([`drop_months`]). Each order's row is locked while its keys
/// go, so an operator's command on it waits (bounded by the lock timeout) instead of changing
/// it unseen; a finished order is never claimed.
pub fn remove_batch(client: &mut Client, before: NaiveDate) -> Result<u64> {
    with_lock_timeout(client, "removing archived orders", |tx| {
        let ids: Vec<Uuid> = tx
            .query(
                &format!(
                    "SELECT o.id FROM order_keys k JOIN orders o ON o.id = k.id AND o.created_at = k.created_at
                      WHERE k.created_at < $1 AND NOT {} ORDER BY k.created_at, k.id LIMIT $2 FOR UPDATE OF o",
                    open_order_sql()
                ),
                &[&month_start(before), &BATCH],
            )?
            .iter()
            .map(|r| r.get("id"))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        tx.execute("DELETE FROM webhook_deliveries WHERE order_id = ANY($1)", &[&ids])?;
        Ok(tx.execute("DELETE FROM order_keys WHERE id = ANY($1)", &[&ids])?)
    })
}

/// Drops the partitions of `months`, of events, finished orders and placements, once no order of those
/// months has keys left (all archived) and none is live. Dropping a partition locks its parent
/// for a moment (ACCESS EXCLUSIVE, catalogue only): the lock is waited for at most
/// LOCK_STATEMENT_TIMEOUT, which is what an event insert or a finishing write-back queued behind
/// it waits at most, and tried again if not granted. The hot path's claims are planned over
/// `orders_live` alone and never wait for it.
///
/// The same transaction removes the months' rows of the stats rollups, daily, hourly and by
/// five-minute slice (sql/0019, sql/0020, sql/0026), so counts stay equal to the rows kept; it first takes the rollup
/// watermark's row lock, which a running `orderctl_roll_up()` holds, so no rollup counts these
/// months again after.
pub fn drop_months(client: &mut Client, before: NaiveDate, months: &[NaiveDate]) -> Result<Vec<String>> {
    with_lock_timeout(client, "dropping the archived months' partitions", |tx| {
        tx.batch_execute("SELECT 1 FROM rollup_watermark FOR UPDATE")?;
        for rollup in crate::db::stats::ROLLUP_TABLES {
            tx.execute(&format!("DELETE FROM {rollup} WHERE created_month < $1"), &[&before])?;
        }
        tx.batch_execute(&format!("SET LOCAL statement_timeout = '{LOCK_STATEMENT_TIMEOUT}'"))?;
        tx.batch_execute("LOCK TABLE order_events, orders_done, placements IN ACCESS EXCLUSIVE MODE")?;
        tx.batch_execute("SET LOCAL statement_timeout TO DEFAULT")?;
        // Under the lock nothing can enter the months' partitions: what is left there now is
        // exactly what gets dropped, so every order of those months must be archived.
        let left = tx.query_opt(
            &format!(
                "SELECT number FROM order_keys WHERE created_at < $1
                 UNION ALL (SELECT o.number FROM orders o WHERE {} AND o.created_at < $1 LIMIT 1)
                 LIMIT 1",
                crate::domain::lifecycle::states::live_sql("o.")
            ),
            &[&month_start(before)],
        )?;
        if let Some(r) = left {
            return Err(Error::refused(format!(
                "order {} of the archived months is still in the database (reopened during the archive); nothing was dropped",
                r.get::<_, i64>(0)
            ))
            .with_hint("the file holds every row; run the archive again (with a new file) once that order is finished"));
        }
        let mut dropped = Vec::new();
        for m in months {
            for table in MONTHLY {
                let name = partition_name(table, *m);
                let exists: bool = tx.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])?.get(0);
                if exists {
                    tx.batch_execute(&format!("DROP TABLE {}", quote_ident(&name)))?;
                    dropped.push(name);
                }
            }
        }
        Ok(dropped)
    })
}
