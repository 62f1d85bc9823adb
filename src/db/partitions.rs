//! Monthly partitions of `orders`, `order_events` and `placements` (sql/0018_monthly_partitions.sql
//! has the design): creating months ahead, listing them, and the database side of `archive`
//! (detach a month's three partitions, read them, drop them).
//!
//! Every step that takes a lock the hot path could queue behind runs with `SET LOCAL
//! lock_timeout` and is retried a bounded number of times, so a claim never waits more than
//! about one lock timeout for it.

use crate::db::{Client, GenericClient};
use crate::domain::lifecycle::states::{sql_in, OrderStatus};
use crate::domain::lifecycle::Attention;
use crate::error::{Error, Result};
use chrono::NaiveDate;
use serde::Serialize;
use std::time::Duration;

/// The partitioned tables, in the order a month is archived and written.
pub const TABLES: [&str; 3] = ["orders", "order_events", "placements"];
/// How long a DDL statement waits for a lock before it gives up and tries again: what a claim
/// queued behind it can wait at most (the bound is 100 ms).
const LOCK_TIMEOUT: &str = "40ms";
/// Attempts of one locking step before it gives up (with the pause between them, about 10 s).
const LOCK_ATTEMPTS: u32 = 50;
/// How long taking every lock of the detach may take together.
const LOCK_STATEMENT_TIMEOUT: &str = "60ms";
const LOCK_PAUSE: Duration = Duration::from_millis(200);

/// `2026-01`.
pub fn month_label(m: NaiveDate) -> String {
    m.format("%Y-%m").to_string()
}

/// `2026-01` → the first day of that month.
pub fn parse_month(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map_err(|_| Error::invalid(format!("'{s}' is not a month")).with_hint("write the month as YYYY-MM, e.g. 2026-01"))
}

/// The partition of `table` for month `m`: `orders_y2026m01`.
pub fn partition_name(table: &str, m: NaiveDate) -> String {
    format!("{table}_y{}", m.format("%Ym%m"))
}

/// Runs `step` in its own transaction with a short lock timeout; a lock not granted in time
/// rolls it back, and it is tried again after a pause, a bounded number of times.
fn with_lock_timeout<T>(
    client: &mut Client,
    what: &str,
    mut step: impl FnMut(&mut crate::db::Transaction<'_>) -> Result<T>,
) -> Result<T> {
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
                    "{what}: the tables were busy for {LOCK_ATTEMPTS} attempts of {LOCK_TIMEOUT} each; nothing was changed"
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

/// Creates every missing monthly partition from the current month (UTC) to `ahead` months
/// after it; returns the names created (none when all exist, the usual case, which takes no
/// lock beyond reading the catalogue).
pub fn ensure_ahead(client: &mut Client, ahead: u32) -> Result<Vec<String>> {
    let missing: bool = client
        .query_one(
            "WITH months AS (
                 SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                        date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int),
                                        interval '1 month')::date AS m)
             SELECT EXISTS (SELECT 1 FROM months, unnest(ARRAY['orders', 'order_events', 'placements']) AS t(parent)
                             WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i
                                                WHERE i.inhparent = t.parent::regclass
                                                  AND i.inhrelid::regclass::text = orderctl_partition_name(t.parent, m)))",
            &[&(ahead as i32)],
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

/// One partition, as `orderctl partitions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub table: String,
    pub month: String,
    pub name: String,
    pub rows: i64,
    /// Orders only: orders of the month that are not finished (archive refuses the month).
    pub open_orders: Option<i64>,
}

/// Every attached monthly partition, oldest first, with exact row counts.
pub fn list(client: &mut Client) -> Result<Vec<Partition>> {
    let parts = client.query(
        "SELECT p.relname AS parent, c.relname AS name, substring(c.relname FROM '_y(\\d{4})m\\d{2}$') || '-'
                || substring(c.relname FROM '_y\\d{4}m(\\d{2})$') AS month
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
          WHERE p.relname IN ('orders', 'order_events', 'placements') AND p.relnamespace = c.relnamespace
            AND p.relnamespace = 'public'::regnamespace
          ORDER BY 3, array_position(ARRAY['orders', 'order_events', 'placements'], p.relname::text)",
        &[],
    )?;
    let mut out = Vec::new();
    for r in &parts {
        let (table, name): (String, String) = (r.get("parent"), r.get("name"));
        let rows: i64 = client.query_one(&format!("SELECT count(*) FROM {}", quote_ident(&name)), &[])?.get(0);
        let open_orders = if table == "orders" {
            Some(
                client
                    .query_one(&format!("SELECT count(*) FROM {} o WHERE {}", quote_ident(&name), open_order_sql()), &[])?
                    .get(0),
            )
        } else {
            None
        };
        out.push(Partition { table, month: r.get::<_, Option<String>>("month").unwrap_or_default(), name, rows, open_orders });
    }
    Ok(out)
}

/// An order an accountant would not call finished: still pending, still watched (an operator's
/// forced decision), or a provider's late delivery not yet settled.
pub fn open_order_sql() -> String {
    format!(
        "(o.status = {pending} OR o.next_check_at IS NOT NULL OR (o.attention IN ({late}) AND o.settlement IS NULL))",
        pending = OrderStatus::Pending.sql(),
        late = sql_in(&[Attention::DeliveredAfterRefund, Attention::DeliveredAfterManualApproval]),
    )
}

/// `"name"`, for a partition name built by orderctl.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The months before `before` whose partitions are attached, or were detached by an archive
/// that did not finish (their tables still exist); oldest first.
pub fn months_before(client: &mut Client, before: NaiveDate) -> Result<Vec<NaiveDate>> {
    let rows = client.query(
        "SELECT DISTINCT to_date(substring(relname FROM '_y(\\d{4}m\\d{2})$'), 'YYYY\"m\"MM') AS m
           FROM pg_class
          WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace
            AND relname ~ '^(orders|order_events|placements)_y\\d{4}m\\d{2}$'
          ORDER BY 1",
        &[],
    )?;
    Ok(rows.iter().map(|r| r.get::<_, NaiveDate>("m")).filter(|m| *m < before).collect())
}

/// Up to ten numbers of open orders among the months before `before`: any, and archive refuses.
pub fn open_orders_before(client: &mut Client, months: &[NaiveDate]) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for m in months {
        let table = partition_name("orders", *m);
        let rows = client.query(
            &format!("SELECT o.number FROM {} o WHERE {} ORDER BY o.number LIMIT 10", quote_ident(&table), open_order_sql()),
            &[],
        )?;
        out.extend(rows.iter().map(|r| (r.get::<_, i64>("number"), month_label(*m))));
    }
    out.truncate(10);
    Ok(out)
}

/// Whether `table`'s partition for `m` is attached to its parent.
fn attached(tx: &mut impl GenericClient, table: &str, m: NaiveDate) -> Result<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = $1::text::regclass AND inhrelid = to_regclass($2))",
            &[&table, &partition_name(table, m)],
        )?
        .get(0))
}

/// Detaches the three partitions of every month in `months` from their tables, all at once:
/// each lock is waited for at most LOCK_TIMEOUT, and the whole step is tried again if one is
/// not granted. A detach changes only the catalogue, so the locks are held for milliseconds.
pub fn detach(client: &mut Client, months: &[NaiveDate]) -> Result<()> {
    with_lock_timeout(client, "detaching the archived months", |tx| {
        // The hot path locks orders first, then its events and placements: the same order here.
        // The statement takes one lock per partition, each bounded by the lock timeout; its own
        // timeout bounds them together, which is what a claim queued behind it waits at most.
        tx.batch_execute(&format!("SET LOCAL statement_timeout = '{LOCK_STATEMENT_TIMEOUT}'"))?;
        tx.batch_execute("LOCK TABLE orders, order_events, placements IN ACCESS EXCLUSIVE MODE")?;
        tx.batch_execute("SET LOCAL statement_timeout TO DEFAULT")?;
        for m in months {
            for table in TABLES {
                if attached(tx, table, *m)? {
                    tx.batch_execute(&format!(
                        "ALTER TABLE {table} DETACH PARTITION {}",
                        quote_ident(&partition_name(table, *m))
                    ))?;
                }
            }
        }
        Ok(())
    })
}

/// Attaches a detached month again (an archive that could not write its file): ATTACH takes
/// only SHARE UPDATE EXCLUSIVE on the parents, so the hot path does not wait for it.
pub fn reattach(client: &mut Client, months: &[NaiveDate]) -> Result<()> {
    with_lock_timeout(client, "attaching the months again", |tx| {
        for m in months {
            let next = m.checked_add_months(chrono::Months::new(1)).unwrap_or(*m);
            for table in TABLES {
                if !attached(tx, table, *m)? {
                    tx.batch_execute(&format!(
                        "ALTER TABLE {table} ATTACH PARTITION {} FOR VALUES FROM ('{m} 00:00:00+00') TO ('{next} 00:00:00+00')",
                        quote_ident(&partition_name(table, *m))
                    ))?;
                }
            }
        }
        Ok(())
    })
}

/// Reads every row of a detached partition as JSON text, `batch` rows at a time, oldest first.
pub fn read_rows(client: &mut Client, table: &str, m: NaiveDate, mut each: impl FnMut(String) -> Result<()>) -> Result<u64> {
    let key = if table == "orders" { "number" } else { "id" };
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "DECLARE archive_rows NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS j FROM {} t ORDER BY t.{key}",
        quote_ident(&partition_name(table, m))
    ))?;
    let mut n = 0;
    loop {
        let rows = tx.query("FETCH 5000 FROM archive_rows", &[])?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            each(r.get("j"))?;
            n += 1;
        }
    }
    tx.commit()?;
    Ok(n)
}

/// Drops the detached tables of `months`, and the request ids of their orders (a create with
/// one of those keys is not a retry any more). Detached tables are locked by nobody else.
pub fn drop_detached(client: &mut Client, months: &[NaiveDate]) -> Result<()> {
    with_lock_timeout(client, "dropping the archived months", |tx| {
        for m in months {
            let orders = quote_ident(&partition_name("orders", *m));
            tx.execute(
                &format!("DELETE FROM order_request_ids r USING {orders} o WHERE r.order_id = o.id AND o.request_id IS NOT NULL"),
                &[],
            )?;
            for table in TABLES {
                tx.batch_execute(&format!("DROP TABLE {}", quote_ident(&partition_name(table, *m))))?;
            }
        }
        Ok(())
    })
}
