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
use crate::domain::lifecycle::states::sql_in;
use crate::domain::lifecycle::{ExternalStatus, Facts};
use crate::error::Result;
use rust_decimal::Decimal;
use std::time::Duration;
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
    /// Due now (`next_check_at` has passed).
    pub due: bool,
    /// Since the first dispatch, on the database's clock (zero when never dispatched).
    pub since_dispatch: Duration,
    /// Since the current placement was claimed (zero when none was).
    pub since_placement: Duration,
    pub facts: Facts,
}

const COLUMNS: &str = "o.id, o.number, o.tenant_id, o.package_id, o.quantity, o.user_identifier, o.extra_field, o.lease,
       o.external_order_id, coalesce(o.next_check_at <= now(), false) AS due,
       (extract(epoch FROM now() - coalesce(o.dispatched_at, now())) * 1000)::bigint AS since_dispatch_ms,
       (extract(epoch FROM now() - coalesce(o.placed_at, o.dispatched_at, now())) * 1000)::bigint AS since_placement_ms,
       o.status, o.external_status, o.attention, o.awaiting_reconciliation, o.operator_forced, o.lane,
       o.provider_id, o.provider_referans, o.next_check_at IS NOT NULL AS scheduled, o.checks, o.no_news,
       o.placement_attempts, o.price, o.late_pin, o.forwarded_to IS NOT NULL AS forwarded, o.pin_code,
       o.operator_reason, o.settlement, o.expects_pin";

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
        due: r.get("due"),
        since_dispatch: ms(r.get("since_dispatch_ms")),
        since_placement: ms(r.get("since_placement_ms")),
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
        let unplaced = sql_in(&ExternalStatus::UNPLACED);
        let kind =
            if placing { format!("o.external_status IN ({unplaced})") } else { format!("o.external_status NOT IN ({unplaced})") };
        let sql = format!(
            "SELECT {COLUMNS} FROM orders o
              WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= coalesce($2::timestamptz, now())
                AND ($3::bigint IS NULL OR o.tenant_id = $3) AND {kind}
              ORDER BY o.next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED"
        );
        for r in tx.query(&sql, &[&q.lane, &due_by, &q.tenant, &limit])? {
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
    let unplaced = sql_in(&ExternalStatus::UNPLACED);
    let sql = format!(
        "WITH due AS (
             SELECT o.id FROM orders o
              WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= coalesce($2::timestamptz, now())
                AND ($3::bigint IS NULL OR o.tenant_id = $3) AND o.external_status NOT IN ({unplaced})
              ORDER BY o.next_check_at LIMIT $4 FOR UPDATE SKIP LOCKED
         )
         UPDATE orders o SET next_check_at = now() + make_interval(secs => $5::bigint / 1000.0), lease = o.lease + 1,
                             claimed_at = now()
           FROM due WHERE o.id = due.id
         RETURNING {COLUMNS}"
    );
    let rows = tx.query(&sql, &[&q.lane, &q.due_by, &q.tenant, &limit, &(lease.as_millis() as i64)])?;
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
          WHERE o.id = ANY($1) AND o.lane = $2 AND o.next_check_at <= now() AND o.external_status <> {not_sent}
         RETURNING {COLUMNS}"
    );
    let rows = tx.query(&sql, &[&ids, &lane, &(lease.as_millis() as i64)])?;
    rows.iter().map(|r| due_row(r).map(|row| DueRow { due: true, ..row })).collect()
}

/// Is any work of the lane due? (Cheap: decides whether a lane asks for permits at all.)
pub fn any_due(client: &mut impl GenericClient, q: LaneQuery) -> Result<bool> {
    // Two probes, one per partial index (a CASE over both kinds would scan the table).
    let unplaced = sql_in(&ExternalStatus::UNPLACED);
    Ok(client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND external_status IN ({unplaced})
                                   AND next_check_at <= now() AND ($3::bigint IS NULL OR tenant_id = $3))
                     OR EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND external_status NOT IN ({unplaced})
                                   AND next_check_at <= coalesce($2::timestamptz, now()) AND ($3::bigint IS NULL OR tenant_id = $3))"
            ),
            &[&q.lane, &q.due_by, &q.tenant],
        )?
        .get(0))
}

/// Lock these orders, whatever their schedule (an operator's command, `poll`, `create`).
/// `wait`: block on an order another transaction holds instead of skipping it.
pub fn lock_ids(tx: &mut impl GenericClient, ids: &[Uuid], wait: bool) -> Result<Vec<DueRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM orders o WHERE o.id = ANY($1) ORDER BY o.id FOR UPDATE{}",
        if wait { "" } else { " SKIP LOCKED" }
    );
    tx.query(&sql, &[&ids])?.iter().map(due_row).collect()
}

/// The work-queue side of a claim: the orders' schedule moves a lease ahead and their lease
/// token is bumped. Returns (order, new lease).
pub fn claim_checks(tx: &mut impl GenericClient, ids: &[Uuid], lease: Duration) -> Result<Vec<(Uuid, i64)>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    Ok(tx
        .query(
            "UPDATE orders SET next_check_at = now() + make_interval(secs => $2::bigint / 1000.0), lease = lease + 1,
                               claimed_at = now()
              WHERE id = ANY($1) RETURNING id, lease",
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
    let not_sent = ExternalStatus::NotSent.sql();
    Ok(client
        .query(
            &format!(
                "SELECT DISTINCT lane FROM orders
                  WHERE lane <> 0 AND next_check_at IS NOT NULL AND ($1::bigint IS NULL OR tenant_id = $1)
                    AND next_check_at <= CASE WHEN external_status = {not_sent} THEN now() ELSE coalesce($2::timestamptz, now()) END
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
    let mut tx = client.transaction()?;
    let mut ids: Vec<Uuid> = lock_due(&mut tx, q, limit, 0)?.into_iter().map(|r| r.id).collect();
    let rest = limit - ids.len() as i64;
    ids.extend(lock_due(&mut tx, q, 0, rest)?.into_iter().map(|r| r.id));
    let claimed = claim_checks(&mut tx, &ids, lease)?;
    tx.commit()?;
    Ok(claimed)
}
