//! Claiming work: the only statements that take orders off the queue for a while.
//!
//! A lane locks its due orders (`FOR UPDATE SKIP LOCKED`, so any number of workers claim at
//! once without waiting on each other), decides what each needs (`domain::lifecycle::work_for`),
//! and in the same transaction claims them: a placement writes its reference and moves the
//! order to `dispatching`; a check only pushes the order's schedule a lease ahead. Both bump
//! the lease token, and every write-back carries it: a crashed worker's orders simply come due
//! again, no rescuer, no heartbeat table. The transaction commits before any provider call.

use crate::db::GenericClient;
use crate::domain::lifecycle::Facts;
use crate::error::{Error, Result};
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
       o.external_order_id, coalesce(o.next_check_at <= now(), false),
       (extract(epoch FROM now() - coalesce(o.dispatched_at, now())) * 1000)::bigint,
       (extract(epoch FROM now() - coalesce(o.placed_at, o.dispatched_at, now())) * 1000)::bigint,
       o.status, o.external_status, o.attention, o.awaiting_reconciliation, o.operator_forced, o.lane,
       o.provider_id, o.provider_referans, o.next_check_at IS NOT NULL, o.checks, o.no_news, o.placement_attempts,
       o.price, o.late_pin, o.forwarded_to IS NOT NULL, o.pin_code, o.operator_reason, o.settlement, o.expects_pin";

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn count(v: i32) -> u32 {
    v.max(0) as u32
}

fn due_row(r: &postgres::Row) -> Result<DueRow> {
    let internal = crate::error::Error::internal;
    let status: String = r.get(12);
    let external: String = r.get(13);
    let attention: Option<String> = r.get(14);
    Ok(DueRow {
        id: r.get(0),
        number: r.get(1),
        tenant_id: r.get(2),
        package_id: r.get(3),
        quantity: r.get(4),
        player: r.get(5),
        extra: r.get(6),
        lease: r.get(7),
        external_order_id: r.get(8),
        due: r.get(9),
        since_dispatch: ms(r.get(10)),
        since_placement: ms(r.get(11)),
        facts: Facts {
            number: r.get(1),
            status: status.parse().map_err(internal)?,
            external: external.parse().map_err(internal)?,
            attention: match attention {
                Some(a) => Some(
                    crate::domain::lifecycle::Attention::parse(&a)
                        .ok_or_else(|| internal(format!("unknown attention '{a}' on an order")))?,
                ),
                None => None,
            },
            reconciling: r.get(15),
            operator_forced: r.get(16),
            lane: r.get(17),
            provider_id: r.get(18),
            reference: r.get(19),
            scheduled: r.get(20),
            checks: count(r.get(21)),
            no_news: count(r.get(22)),
            placement_attempts: count(r.get(23)),
            price: r.get::<_, Decimal>(24),
            late_pin: r.get(25),
            forwarded: r.get(26),
            pin: r.get(27),
            operator_reason: r.get(28),
            settlement: r.get::<_, Option<String>>(29).as_deref().and_then(crate::domain::lifecycle::Settlement::parse),
            expects_pin: r.get(30),
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
        let kind = if placing { "o.external_status = 'not_sent'" } else { "o.external_status <> 'not_sent'" };
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
    let sql = format!(
        "WITH due AS (
             SELECT o.id FROM orders o
              WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= coalesce($2::timestamptz, now())
                AND ($3::bigint IS NULL OR o.tenant_id = $3) AND o.external_status <> 'not_sent'
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

/// Is any work of the lane due? (Cheap: decides whether a lane asks for permits at all.)
pub fn any_due(client: &mut impl GenericClient, q: LaneQuery) -> Result<bool> {
    // Two probes, one per partial index (a CASE over both kinds would scan the table).
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND external_status = 'not_sent'
                               AND next_check_at <= now() AND ($3::bigint IS NULL OR tenant_id = $3))
                 OR EXISTS (SELECT 1 FROM orders WHERE lane = $1 AND next_check_at IS NOT NULL AND external_status <> 'not_sent'
                               AND next_check_at <= coalesce($2::timestamptz, now()) AND ($3::bigint IS NULL OR tenant_id = $3))",
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

/// A placement to claim.
#[derive(Debug, Clone)]
pub struct PlacementClaim {
    pub order_id: Uuid,
    pub provider_id: i64,
    /// Send the order's reference again (the provider was shown not to have it).
    pub reuse: bool,
    /// The mapping says the product delivers PINs.
    pub expects_pin: bool,
}

/// A placement claimed and committed, to be sent once.
#[derive(Debug, Clone)]
pub struct ClaimedPlacement {
    pub order_id: Uuid,
    pub lease: i64,
    pub reference: String,
    /// An earlier attempt with this reference may have reached the provider: a refusal of this
    /// one proves nothing about that one.
    pub resent: bool,
}

/// What `claim_placements` did with each order.
#[derive(Debug, Default)]
pub struct PlacementsClaimed {
    /// Committed with the caller's transaction, to be sent once.
    pub claimed: Vec<ClaimedPlacement>,
    /// (order, reference): the new reference is already recorded for another order at this
    /// provider (a clock set back under numeric references), so the order was left as it was.
    pub taken: Vec<(Uuid, String)>,
}

/// The claim that makes a placement at most once: the reference is written (a new one in the
/// provider's style, or the order's own when it is sent again), the order moves to
/// `dispatching`, and its placement row is recorded — all committed before any call. The
/// first dispatch's time is kept; the deadline runs from it. A reference that `placements`
/// already holds for another order is never written: the provider knows it as that order.
pub fn claim_placements(
    tx: &mut impl GenericClient,
    claims: &[PlacementClaim],
    style: &str,
    lease: Duration,
) -> Result<PlacementsClaimed> {
    if claims.is_empty() {
        return Ok(PlacementsClaimed::default());
    }
    let ids: Vec<Uuid> = claims.iter().map(|c| c.order_id).collect();
    let providers: Vec<i64> = claims.iter().map(|c| c.provider_id).collect();
    let reuse: Vec<bool> = claims.iter().map(|c| c.reuse).collect();
    let expects_pin: Vec<bool> = claims.iter().map(|c| c.expects_pin).collect();
    // Each attempt is its own placement row (the next attempt number of its provider and
    // reference), so no attempt's recorded outcome is ever overwritten by a later one.
    let rows = tx.query(
        "WITH wanted AS (
             SELECT o.id, c.provider_id, c.expects_pin,
                    CASE WHEN c.reuse AND o.provider_referans IS NOT NULL THEN o.provider_referans
                         ELSE orderctl_new_reference($4, o.id, c.provider_id) END AS referans
               FROM unnest($1::uuid[], $2::bigint[], $3::bool[], $6::bool[]) AS c(id, provider_id, reuse, expects_pin)
               JOIN orders o ON o.id = c.id AND o.id = ANY($1)
         ), taken AS (
             SELECT w.id, w.referans FROM wanted w
              WHERE EXISTS (SELECT 1 FROM placements p
                             WHERE p.provider_id = w.provider_id AND p.referans = w.referans AND p.order_id <> w.id)
         ), earlier AS (
             SELECT w.id, coalesce(max(p.attempt), 0) AS attempts,
                    coalesce(bool_or(p.outcome <> 'not_sent'), false) AS reached
               FROM wanted w LEFT JOIN placements p ON p.provider_id = w.provider_id AND p.referans = w.referans
              GROUP BY w.id
         ), claimed AS (
             UPDATE orders o
                SET external_status = 'dispatching', awaiting_reconciliation = false, provider_id = w.provider_id,
                    provider_referans = w.referans, placement_attempts = o.placement_attempts + 1,
                    dispatched_at = coalesce(o.dispatched_at, now()), placed_at = now(), claimed_at = now(),
                    expects_pin = w.expects_pin,
                    next_check_at = now() + make_interval(secs => $5::bigint / 1000.0), lease = o.lease + 1
               FROM wanted w
              WHERE o.id = w.id AND o.id = ANY($1) AND w.id NOT IN (SELECT id FROM taken)
          RETURNING o.id, o.lease, o.provider_id, o.provider_referans
         ), recorded AS (
             INSERT INTO placements (order_id, provider_id, referans, attempt)
             SELECT c.id, c.provider_id, c.provider_referans, e.attempts + 1 FROM claimed c JOIN earlier e ON e.id = c.id
             ON CONFLICT (provider_id, referans, attempt) DO NOTHING
             RETURNING order_id
         )
         SELECT c.id, c.lease, c.provider_referans, r.order_id IS NOT NULL, e.reached
           FROM claimed c JOIN earlier e ON e.id = c.id LEFT JOIN recorded r ON r.order_id = c.id
         UNION ALL
         SELECT id, NULL, referans, false, false FROM taken",
        &[&ids, &providers, &reuse, &style, &(lease.as_millis() as i64), &expects_pin],
    )?;
    let mut out = PlacementsClaimed::default();
    for r in &rows {
        match (r.get::<_, Option<i64>>(1), r.get::<_, bool>(3)) {
            (Some(lease), true) => {
                out.claimed.push(ClaimedPlacement { order_id: r.get(0), lease, reference: r.get(2), resent: r.get(4) })
            }
            (None, _) => out.taken.push((r.get(0), r.get(2))),
            // Another claim recorded the same reference for its order between this statement's
            // check and its insert: nothing may be sent, so the whole claim rolls back.
            (Some(_), false) => {
                return Err(Error::internal(format!(
                    "the new reference {} was recorded for another order at the same moment; nothing was sent",
                    r.get::<_, String>(2)
                ))
                .with_hint("the claim is rolled back and made again with a new reference"))
            }
        }
    }
    Ok(out)
}

/// Provider lanes with work due: placements due now, checks due by `checks_due_by` (or now).
pub fn lanes_with_work(
    client: &mut impl GenericClient,
    tenant: Option<i64>,
    checks_due_by: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<i64>> {
    Ok(client
        .query(
            "SELECT DISTINCT lane FROM orders
              WHERE lane <> 0 AND next_check_at IS NOT NULL AND ($1::bigint IS NULL OR tenant_id = $1)
                AND next_check_at <= CASE WHEN external_status = 'not_sent' THEN now() ELSE coalesce($2::timestamptz, now()) END
              ORDER BY lane",
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
