//! Claiming work: the only statements that take orders off the queue for a while.
//!
//! A lane locks its due orders (`FOR UPDATE SKIP LOCKED`, so any number of workers claim at
//! once without waiting on each other), decides what each needs (`domain::lifecycle::work_for`),
//! and in the same transaction claims them: a placement (`transitions::claim_placements`, the one
//! writer of state) writes its reference and moves the order to `dispatching`; a check only pushes the order's schedule a lease ahead. Both bump
//! the lease token, and every write-back carries it: a crashed worker's orders simply come due
//! again, no rescuer, no heartbeat table. The transaction commits before any provider call.

use crate::db::row::{state, state_opt};
use crate::db::GenericClient;
use crate::domain::lifecycle::states::{live_sql, sql_in};
use crate::domain::lifecycle::{ExternalStatus, Facts};
use crate::error::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A locked order with everything its work needs.
#[derive(Debug, Clone)]
pub struct DueRow {
    pub id: Uuid,
    pub number: i64,
    pub tenant_id: i64,
    pub package_id: i64,
    pub quantity: i32,
    pub player: String,
    pub extra: String,
    pub lease: i64,
    pub external_order_id: Option<String>,
    /// When the order was created: the month its placements and history are kept in.
    pub created_at: DateTime<Utc>,
    /// Due now (`next_check_at` has passed).
    pub due: bool,
    /// Since the first dispatch, on the database's clock (zero when never dispatched).
    pub since_dispatch: Duration,
    /// Since the current placement was claimed (zero when none was).
    pub since_placement: Duration,
    /// The schedule the claim found it under (its `next_check_at` when locked, the due index's
    /// key); None where it was not taken from the queue. Moves the lane's [`ClaimFloor`].
    pub found_at: Option<DateTime<Utc>>,
    pub facts: Facts,
}

const COLUMNS: &str = "o.id, o.number, o.tenant_id, o.package_id, o.quantity, o.user_identifier, o.extra_field, o.lease,
       o.external_order_id, o.created_at, coalesce(o.next_check_at <= now(), false) AS due,
       (extract(epoch FROM now() - coalesce(o.dispatched_at, now())) * 1000)::bigint AS since_dispatch_ms,
       (extract(epoch FROM now() - coalesce(o.placed_at, o.dispatched_at, now())) * 1000)::bigint AS since_placement_ms,
       o.status, o.external_status, o.attention, o.awaiting_reconciliation, o.operator_forced, o.lane,
       o.provider_id, o.provider_referans, o.next_check_at IS NOT NULL AS scheduled, o.checks, o.no_news,
       o.placement_attempts, o.price, o.late_pin, o.forwarded_to IS NOT NULL AS forwarded, o.pin_code,
       o.operator_reason, o.settlement, o.expects_pin, {FOUND_AT}";

/// Which of the two partial due indexes of `orders_live` a query reads (sql/0016, sql/0031):
/// the orders whose due work is a placement (`placing`), or a status check. Spelled out in each
/// query, never a parameter, so the planner matches the index's predicate, and with the live
/// partition's key, so it is planned over that partition alone (due work is always live);
/// `alias` is the orders alias with its dot (`"o."`), or `""`. Together with
/// `next_check_at IS NOT NULL`.
pub(crate) fn due_kind(alias: &str, placing: bool) -> String {
    format!("{} AND {}", live_sql(alias), due_index_states(alias, placing))
}

/// The external statuses of one due index's predicate (the index is on `orders_live` alone, so
/// its predicate does not name the partition key).
pub(crate) fn due_index_states(alias: &str, placing: bool) -> String {
    let op = if placing { "IN" } else { "NOT IN" };
    format!("{alias}external_status {op} ({})", sql_in(&ExternalStatus::UNPLACED))
}

/// [`COLUMNS`] read as the queue found them (`found_at` is the due index key the claim read).
fn columns(found_at: &str) -> String {
    COLUMNS.replace("{FOUND_AT}", &format!("{found_at} AS found_at"))
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn count(v: i32) -> u32 {
    v.max(0) as u32
}

/// A row of [`COLUMNS`], by column name.
fn due_row(r: &postgres::Row) -> Result<DueRow> {
    Ok(DueRow {
        id: r.get("id"),
        number: r.get("number"),
        tenant_id: r.get("tenant_id"),
        package_id: r.get("package_id"),
        quantity: r.get("quantity"),
        player: r.get("user_identifier"),
        extra: r.get("extra_field"),
        lease: r.get("lease"),
        external_order_id: r.get("external_order_id"),
        created_at: r.get("created_at"),
        due: r.get("due"),
        since_dispatch: ms(r.get("since_dispatch_ms")),
        since_placement: ms(r.get("since_placement_ms")),
        found_at: r.get("found_at"),
        facts: Facts {
            number: r.get("number"),
            status: state(r, "status")?,
            external: state(r, "external_status")?,
            attention: state_opt(r, "attention")?,
            reconciling: r.get("awaiting_reconciliation"),
            operator_forced: r.get("operator_forced"),
            lane: r.get("lane"),
            provider_id: r.get("provider_id"),
            reference: r.get("provider_referans"),
            scheduled: r.get("scheduled"),
            checks: count(r.get("checks")),
            no_news: count(r.get("no_news")),
            placement_attempts: count(r.get("placement_attempts")),
            price: r.get::<_, Decimal>("price"),
            late_pin: r.get("late_pin"),
            forwarded: r.get("forwarded"),
            pin: r.get("pin_code"),
            operator_reason: r.get("operator_reason"),
            settlement: state_opt(r, "settlement")?,
            expects_pin: r.get("expects_pin"),
        },
    })
}

/// Where a lane looks for work.
#[derive(Debug, Clone, Copy)]
pub struct LaneQuery {
    pub lane: i64,
    pub tenant: Option<i64>,
    /// Only work due by this moment (a sweep's start); None: due now.
    pub due_by: Option<chrono::DateTime<chrono::Utc>>,
    /// Where in the due indexes to start reading (a lane's [`ClaimFloor`]); the default reads
    /// each index from its start.
    pub from: DueFrom,
}

impl LaneQuery {
    /// The whole of a lane's due work, each index read from its start.
    pub fn whole(lane: i64, tenant: Option<i64>, due_by: Option<DateTime<Utc>>) -> LaneQuery {
        LaneQuery { lane, tenant, due_by, from: DueFrom::default() }
    }
}

/// Lower bounds on `next_check_at` for the two due indexes (None: from the index's start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueFrom {
    pub placements: Option<DateTime<Utc>>,
    pub checks: Option<DateTime<Utc>>,
}

impl DueFrom {
    fn of(&self, placing: bool) -> Option<DateTime<Utc>> {
        if placing {
            self.placements
        } else {
            self.checks
        }
    }
}

/// How far behind the claim's own clock a lane's floor stays: a writer whose transaction began
/// up to this long before a claim (its `now()` is the schedule it writes) and commits after it
/// is still found by the next claim. Longer writers wait for the next whole-index claim.
pub const FLOOR_GRACE: Duration = Duration::from_millis(100);
/// A whole-index claim at least this often...
const WHOLE_EVERY_MIN: Duration = Duration::from_secs(1);
/// ...at most this far apart (the longest a due order below the floor can wait)...
const WHOLE_EVERY_MAX: Duration = Duration::from_secs(60);
/// ...and otherwise this many times its own last cost apart (at most 1/20 of a lane's time).
const WHOLE_COST_FACTOR: u32 = 20;

/// Where a lane's claims start reading the due indexes, and when they read them whole.
///
/// Why: every change of an order's schedule leaves its old entry in the due index, at the old
/// `next_check_at`, until vacuum removes the dead row version. Normally the first claim that
/// meets such an entry finds the version dead to everyone and marks the entry killed, and the
/// next claims skip it without touching the table. While any transaction anywhere holds an old
/// snapshot (a stuck report, an idle app session in a transaction), no version newer than it is
/// dead to everyone: vacuum removes nothing, no entry is killed, and a claim that reads
/// `next_check_at <= now() ORDER BY next_check_at` from the index's start visits the heap for
/// every version written since that snapshot before it reaches a live due order (measured:
/// 5 ms → 55–96 ms per claim after one minute; it grows for as long as the snapshot is held).
/// Those stale entries all lie at schedules already past, in front of the live ones.
///
/// So a lane remembers where its due work starts: the oldest schedule its last claim found
/// (every entry before it was dead, or locked by another claimer), less [`FLOOR_GRACE`] behind
/// the claim's own database clock for writers still committing; the next claim reads from
/// there, past the stale entries. An order can come due below the floor only through a
/// transaction that began before the floor and committed after the claim (a slow writer, a
/// claimer that rolled back, an operator's edit): a whole-index claim, as often as
/// `max(1 s, 20 × its own cost)` and at most 60 s apart, finds it. That is the bounded
/// exception to "oldest due first": such an order waits at most 60 s (normally at most 1 s: a
/// whole claim costs milliseconds), never forever. A fresh lane (every `sweep`, every daemon
/// start) begins with a whole-index claim. Locks, leases and lease tokens are untouched: the
/// floor only says where to start reading.
///
/// Considered and not taken: a narrow queue table has the same dead entries in its own index
/// under an old snapshot; rotating such tables and truncating the empty one (PgQ, PgQue) needs
/// an ACCESS EXCLUSIVE lock that waits behind any transaction that ever read the table (and
/// every claim queues behind that wait), and would move every schedule write out of `orders`.
#[derive(Debug, Default)]
pub struct ClaimFloor {
    from: DueFrom,
    last_whole: Option<Instant>,
    whole_cost: Duration,
    /// The claim under way reads the whole index (started at this instant).
    whole_started: Option<Instant>,
}

impl ClaimFloor {
    /// Where the next bounded claim starts reading.
    pub fn from(&self) -> DueFrom {
        self.from
    }

    /// Work scheduled as early as `at` was committed after the floor may have moved past it (a
    /// transaction longer than FLOOR_GRACE: a shop's, announced by its wake-up (sql/0034), or a
    /// long write-back's): the next claims read both due indexes from there.
    pub fn lower(&mut self, at: DateTime<Utc>) {
        for from in [&mut self.from.placements, &mut self.from.checks].into_iter().flatten() {
            *from = (*from).min(at);
        }
    }

    /// `q` bounded by the floor, or whole when a whole-index claim is due.
    pub fn bound(&mut self, q: LaneQuery) -> LaneQuery {
        let gap = (self.whole_cost * WHOLE_COST_FACTOR).clamp(WHOLE_EVERY_MIN, WHOLE_EVERY_MAX);
        let now = Instant::now();
        if self.last_whole.map(|at| now.duration_since(at) >= gap).unwrap_or(true) {
            self.whole_started = Some(now);
            return LaneQuery { from: DueFrom::default(), ..q };
        }
        self.whole_started = None;
        LaneQuery { from: self.from, ..q }
    }

    /// After a look at the queue whose database clock read `now`: the floor of each kind that
    /// was asked for (`placements`, `checks`) moves to the oldest schedule found in `rows`,
    /// FLOOR_GRACE behind `now` at most (nothing found: FLOOR_GRACE behind `now`).
    pub fn found<'a>(&mut self, now: DateTime<Utc>, placements: bool, checks: bool, rows: impl IntoIterator<Item = &'a DueRow>) {
        let grace = chrono::Duration::from_std(FLOOR_GRACE).expect("a small duration");
        let (mut oldest_place, mut oldest_check) = (now - grace, now - grace);
        for r in rows {
            let Some(at) = r.found_at else { continue };
            let slot = if ExternalStatus::UNPLACED.contains(&r.facts.external) { &mut oldest_place } else { &mut oldest_check };
            *slot = (*slot).min(at);
        }
        if placements {
            self.from.placements = Some(oldest_place);
        }
        if checks {
            self.from.checks = Some(oldest_check);
        }
        if let Some(started) = self.whole_started.take() {
            self.last_whole = Some(started);
            self.whole_cost = started.elapsed();
        }
    }
}

/// The database's clock as a transaction sees it (`now()`: its start, the time its claims
/// compare schedules with).
pub fn db_now(tx: &mut impl GenericClient) -> Result<DateTime<Utc>> {
    Ok(tx.query_one("SELECT now()", &[])?.get(0))
}

/// Lock up to `places` due orders waiting to be placed and up to `checks` other due orders of
/// a lane, oldest due first. Locked rows stay the caller's until its transaction ends.
pub fn lock_due(tx: &mut impl GenericClient, q: LaneQuery, places: i64, checks: i64) -> Result<Vec<DueRow>> {
    let mut out = Vec::new();
    for (limit, placing) in [(places, true), (checks, false)] {
        if limit <= 0 {
            continue;
        }
        // A drain takes placements due now (a placement is never a loop) and checks due by its start.
        let due_by = if placing { None } else { q.due_by };
        // The kind is spelled out (not a parameter) so each query walks its own partial index.
        let kind = due_kind("o.", placing);
        let columns = columns("o.next_check_at");
        let sql = format!(
            "SELECT {columns} FROM orders o
              WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= coalesce($2::timestamptz, now())
                AND o.next_check_at >= coalesce($5::timestamptz, '-infinity')
                AND ($3::bigint IS NULL OR o.tenant_id = $3) AND {kind}
              ORDER BY o.next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED"
        );
        for r in tx.query(&sql, &[&q.lane, &due_by, &q.tenant, &limit, &q.from.of(placing)])? {
            out.push(due_row(&r)?);
        }
    }
    Ok(out)
}

/// Lock and claim, in one statement, up to `limit` due orders of a lane that a provider
/// already has (checks, not placements), oldest due first: each order's schedule moves a lease
/// ahead and its lease token is bumped, and the rows come back as they are now (their `lease`
/// is the claim's). One row version and one round trip per order instead of a lock and then an
/// update; the caller still decides what each needs (`claim_for_provider` writes any decision
/// under the new lease, and does not claim these again).
pub fn lock_and_claim_checks(tx: &mut impl GenericClient, q: LaneQuery, limit: i64, lease: Duration) -> Result<Vec<DueRow>> {
    if limit <= 0 {
        return Ok(vec![]);
    }
    let checks = due_kind("o.", false);
    let columns = columns("due.next_check_at");
    let live = live_sql("o.");
    let sql = format!(
        "WITH due AS (
             SELECT o.id, o.next_check_at FROM orders o
              WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= coalesce($2::timestamptz, now())
                AND o.next_check_at >= coalesce($6::timestamptz, '-infinity')
                AND ($3::bigint IS NULL OR o.tenant_id = $3) AND {checks}
              ORDER BY o.next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED
         )
         UPDATE orders o SET next_check_at = now() + make_interval(secs => $5::bigint / 1000.0), lease = o.lease + 1,
                             claimed_at = now()
           FROM due WHERE {live} AND o.id = due.id
         RETURNING {columns}"
    );
    let rows = tx.query(&sql, &[&q.lane, &q.due_by, &q.tenant, &limit, &(lease.as_millis() as i64), &q.from.checks])?;
    // Every row returned was due when it was locked (the claim has just moved its schedule on).
    rows.iter().map(|r| due_row(r).map(|row| DueRow { due: true, ..row })).collect()
}

/// Claim, in the transaction that has just written their results, the checks of these orders
/// that those results made due at once (a placement accepted with `--first-check 0s`, a
/// re-check without delay), as `lock_and_claim_checks` does for due orders: the rows come back
/// as they are now, under the new lease. The caller holds their row locks already (it wrote
/// them), so nothing waits and nothing is skipped. An order that moved to another lane (a
/// fallback), went back to placing, or is scheduled later is left to the queue.
pub fn claim_checks_due_now(tx: &mut impl GenericClient, ids: &[Uuid], lane: i64, lease: Duration) -> Result<Vec<DueRow>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let not_sent = ExternalStatus::NotSent.sql();
    let sql = format!(
        "UPDATE orders o SET next_check_at = now() + make_interval(secs => $3::bigint / 1000.0), lease = o.lease + 1,
                             claimed_at = now()
          WHERE {live} AND o.id = ANY($1) AND o.lane = $2 AND o.next_check_at <= now() AND o.external_status <> {not_sent}
         RETURNING {columns}",
        columns = columns("NULL::timestamptz"),
        live = live_sql("o.")
    );
    let rows = tx.query(&sql, &[&ids, &lane, &(lease.as_millis() as i64)])?;
    rows.iter().map(|r| due_row(r).map(|row| DueRow { due: true, ..row })).collect()
}

/// Is any work of the lane due, from its floor? (Cheap: decides whether a lane asks for
/// permits at all.) Nothing due moves the floor up to the probe's clock.
pub fn any_due(client: &mut impl GenericClient, floor: &mut ClaimFloor, q: LaneQuery) -> Result<bool> {
    let q = floor.bound(q);
    // Two probes, one per partial index (a CASE over both kinds would scan the table).
    let (placements, checks) = (due_kind("", true), due_kind("", false));
    let row = client.query_one(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND {placements}
                                   AND next_check_at <= now() AND next_check_at >= coalesce($4::timestamptz, '-infinity')
                                   AND ($3::bigint IS NULL OR tenant_id = $3))
                     OR EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND {checks}
                                   AND next_check_at <= coalesce($2::timestamptz, now())
                                   AND next_check_at >= coalesce($5::timestamptz, '-infinity')
                                   AND ($3::bigint IS NULL OR tenant_id = $3)),
                    now()"
        ),
        &[&q.lane, &q.due_by, &q.tenant, &q.from.placements, &q.from.checks],
    )?;
    let any: bool = row.get(0);
    if !any {
        floor.found(row.get(1), true, true, []);
    }
    // Something due: the claim that follows reads as this probe did (a whole-index probe
    // leaves the whole-index claim due).
    Ok(any)
}

/// Lock these orders, whatever their schedule (an operator's command, `poll`, `create`).
/// `wait`: block on an order another transaction holds instead of skipping it.
///
/// The order waited for may finish meanwhile, which moves its row to its month's partition
/// (sql/0031), and the lock is then refused with SQLSTATE 40001: the lock is taken behind a
/// savepoint and taken again (a new statement sees the row where it is now), a few times.
pub fn lock_ids(tx: &mut impl GenericClient, ids: &[Uuid], wait: bool) -> Result<Vec<DueRow>> {
    let sql = format!(
        "SELECT {} FROM orders o WHERE o.id = ANY($1) ORDER BY o.id FOR UPDATE{}",
        columns("NULL::timestamptz"),
        if wait { "" } else { " SKIP LOCKED" }
    );
    let mut attempt = 1;
    loop {
        let mut sp = tx.transaction()?;
        match sp.query(&sql, &[&ids]).map_err(crate::error::Error::from) {
            Ok(rows) => {
                sp.commit()?;
                return rows.iter().map(due_row).collect();
            }
            Err(e) if e.moved_concurrently() && attempt < LOCK_MOVED_ATTEMPTS => {
                sp.rollback()?;
                attempt += 1;
            }
            Err(e) if e.moved_concurrently() => {
                return Err(e.with_hint("other commands kept finishing these orders at the same moment; run the command again"))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Attempts of [`lock_ids`] at a row that moved while it waited (each move is another
/// transaction finishing the order, so a second attempt normally finds it still).
const LOCK_MOVED_ATTEMPTS: u32 = 5;

/// The work-queue side of a claim: the orders' schedule moves a lease ahead and their lease
/// token is bumped. Returns (order, new lease).
pub fn claim_checks(tx: &mut impl GenericClient, ids: &[Uuid], lease: Duration) -> Result<Vec<(Uuid, i64)>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(tx
        .query(
            &format!(
                "UPDATE orders SET next_check_at = now() + make_interval(secs => $2::bigint / 1000.0), lease = lease + 1,
                                   claimed_at = now()
                  WHERE {} AND id = ANY($1) RETURNING id, lease",
                live_sql("")
            ),
            &[&ids, &(lease.as_millis() as i64)],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Provider lanes with work due: placements due now, checks due by `checks_due_by` (or now).
pub fn lanes_with_work(
    client: &mut impl GenericClient,
    tenant: Option<i64>,
    checks_due_by: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<i64>> {
    let (placements, checks) = (due_kind("", true), due_kind("", false));
    Ok(client
        .query(
            &format!(
                // One arm per partial due index: a CASE over both kinds matches neither and
                // scans the whole table, history included.
                "SELECT lane FROM orders
                  WHERE lane <> 0 AND next_check_at IS NOT NULL AND {placements}
                    AND next_check_at <= now() AND ($1::bigint IS NULL OR tenant_id = $1)
                 UNION
                 SELECT lane FROM orders
                  WHERE lane <> 0 AND next_check_at IS NOT NULL AND {checks}
                    AND next_check_at <= coalesce($2::timestamptz, now()) AND ($1::bigint IS NULL OR tenant_id = $1)
                 ORDER BY lane"
            ),
            &[&tenant, &checks_due_by],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Claim up to `limit` due orders of a lane for a lease, whatever their work, in one
/// transaction: (order, new lease). The lanes claim with `lock_due` and the dispatch stages;
/// this is the bare queue mechanics on the same locks (placements first, then checks), which
/// benchmarks and tests measure and prove.
pub fn claim_due(client: &mut crate::db::Client, q: LaneQuery, limit: i64, lease: Duration) -> Result<Vec<(Uuid, i64)>> {
    claim_due_from(client, &mut ClaimFloor::default(), q, limit, lease)
}

/// As [`claim_due`], reading from `floor` and moving it on, as a lane does.
pub fn claim_due_from(
    client: &mut crate::db::Client,
    floor: &mut ClaimFloor,
    q: LaneQuery,
    limit: i64,
    lease: Duration,
) -> Result<Vec<(Uuid, i64)>> {
    let q = floor.bound(q);
    let mut tx = client.transaction()?;
    let mut rows = lock_due(&mut tx, q, limit, 0)?;
    let rest = limit - rows.len() as i64;
    rows.extend(lock_due(&mut tx, q, 0, rest)?);
    let now = db_now(&mut tx)?;
    floor.found(now, true, rest > 0, &rows);
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let claimed = claim_checks(&mut tx, &ids, lease)?;
    tx.commit()?;
    Ok(claimed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A locked row of order 1 with these facts, for tests that need one.
    pub(crate) fn due_row(facts: Facts, found_at: Option<DateTime<Utc>>) -> DueRow {
        DueRow {
            id: Uuid::nil(),
            number: 1,
            tenant_id: 1,
            package_id: 1,
            quantity: 1,
            player: String::new(),
            extra: String::new(),
            lease: 1,
            external_order_id: None,
            created_at: Utc::now(),
            due: true,
            since_dispatch: Duration::ZERO,
            since_placement: Duration::ZERO,
            found_at,
            facts,
        }
    }

    fn row(external: ExternalStatus, found_at: DateTime<Utc>) -> DueRow {
        let mut facts = crate::domain::lifecycle::tests::facts();
        facts.external = external;
        due_row(facts, Some(found_at))
    }

    #[test]
    fn a_floor_starts_whole_then_follows_the_oldest_found_never_nearer_than_the_grace() {
        let q = LaneQuery::whole(7, None, None);
        let mut floor = ClaimFloor::default();
        assert_eq!(floor.bound(q).from, DueFrom::default(), "a fresh lane reads the whole index");
        let now = Utc::now();
        let grace = chrono::Duration::from_std(FLOOR_GRACE).unwrap();
        let old = now - chrono::Duration::seconds(30);
        let recent = now - chrono::Duration::milliseconds(10);
        let rows = [row(ExternalStatus::NotSent, old), row(ExternalStatus::Sent, recent), row(ExternalStatus::Sent, now)];
        floor.found(now, true, true, &rows);
        // The oldest found of each kind; a recent one only as near as the grace.
        assert_eq!(floor.bound(q).from, DueFrom { placements: Some(old), checks: Some(now - grace) });
        // A kind not asked for keeps its floor; nothing found moves the other to the grace.
        let later = now + chrono::Duration::seconds(5);
        floor.found(later, false, true, []);
        assert_eq!(floor.bound(q).from, DueFrom { placements: Some(old), checks: Some(later - grace) });
    }

    #[test]
    fn a_whole_index_claim_comes_back_after_its_gap_so_nothing_below_a_floor_waits_forever() {
        let q = LaneQuery::whole(7, None, None);
        let mut floor = ClaimFloor::default();
        floor.bound(q);
        floor.found(Utc::now(), true, true, []);
        assert_ne!(floor.bound(q).from, DueFrom::default());
        // Cheap whole claims: the next one a second later.
        floor.last_whole = Some(Instant::now() - WHOLE_EVERY_MIN);
        assert_eq!(floor.bound(q).from, DueFrom::default());
        // An expensive one (an old snapshot's dead entries) spaces them out, at most a minute.
        floor.found(Utc::now(), true, true, []);
        floor.whole_cost = Duration::from_secs(10);
        floor.last_whole = Some(Instant::now() - Duration::from_secs(59));
        assert_ne!(floor.bound(q).from, DueFrom::default());
        floor.last_whole = Some(Instant::now() - WHOLE_EVERY_MAX);
        assert_eq!(floor.bound(q).from, DueFrom::default());
    }

    #[test]
    fn a_wake_up_for_work_below_the_floor_lowers_it_and_never_raises_it() {
        let q = LaneQuery::whole(7, None, None);
        let mut floor = ClaimFloor::default();
        // A whole claim is no floor to lower.
        floor.lower(Utc::now());
        assert_eq!(floor.from(), DueFrom::default());
        floor.bound(q);
        let now = Utc::now();
        let old = now - chrono::Duration::seconds(30);
        floor.found(now, true, true, [&row(ExternalStatus::NotSent, old)]);
        let grace = chrono::Duration::from_std(FLOOR_GRACE).unwrap();
        // A transaction that began a second ago committed work scheduled then.
        let slow = now - chrono::Duration::seconds(1);
        floor.lower(slow);
        assert_eq!(floor.bound(q).from, DueFrom { placements: Some(old), checks: Some(slow) });
        // A later announcement never raises either.
        floor.lower(now - grace);
        assert_eq!(floor.from(), DueFrom { placements: Some(old), checks: Some(slow) });
    }
}
