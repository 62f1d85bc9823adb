//! The one writer of an order's state: it persists the lifecycle's transitions, many in one
//! statement, each guarded by the lease its work was claimed with (zero rows updated means
//! somebody else owns the order now, and the stale result is dropped), on the database's clock.
//! Its side effects go in the same transaction: the placement row's outcome, money (unique
//! ledger rows: exactly once), the history entry and the shop's notice (`outbox`). And forwarding:
//! an order that reaches a final status finishes the order forwarded to it (and that one the
//! order forwarded to it, up a chain) in the same transaction, by the lifecycle's `upstream_finished`.
//! The claim of a placement (`claim_placements`: the order moves to `dispatching` with its
//! reference committed before any call) is written here too.

use crate::db::GenericClient;
use crate::domain::lifecycle::states::{sql_in, PlacementState, Reconciled};
use crate::domain::lifecycle::{ExternalStatus, Money, Schedule, Set, Transition};
use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// A placement to claim.
#[derive(Debug, Clone)]
pub struct PlacementClaim {
    pub order_id: Uuid,
    /// The order's creation time: the month of `placements` its placements are kept in.
    pub order_created_at: DateTime<Utc>,
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
    // The batch's months: named, so every read of placements here is planned over them alone
    // (sql/0032), normally the current month.
    let (first, last) = time_span(claims.iter().map(|c| c.order_created_at));
    // Each attempt is its own placement row (the next attempt number of its provider and
    // reference), so no attempt's recorded outcome is ever overwritten by a later one.
    //
    // Shaped so that no plan can be quadratic in the batch: the planner estimates the CTEs
    // badly (the rows of `wanted` come out as n * n / rows-of-orders, about one at a year of
    // history), and a join between two CTEs it thinks hold one row each is a nested loop
    // that rescans one for every row of the other (400 x 400 at a 400-order claim: a third
    // of the statement's time). So the earlier attempts are read per claimed row in
    // RETURNING (one index probe each), the placement's insert reads `claimed` alone, the
    // answer tests membership in `recorded` by a hashed subplan, and the update finds its
    // rows by `o.id = w.id` alone (with `o.id = ANY($1)` too, a nested loop probes the whole
    // array for every row).
    let (dispatching, not_sent) = (ExternalStatus::Dispatching.sql(), PlacementState::NotSent.sql());
    let rows = tx.query(
        &format!(
            "WITH wanted AS (
             SELECT o.id, c.provider_id, c.expects_pin,
                    CASE WHEN c.reuse AND o.provider_referans IS NOT NULL THEN o.provider_referans
                         ELSE orderctl_new_reference($4, o.id, c.provider_id, o.created_at) END AS referans,
                    o.created_at
               FROM unnest($1::uuid[], $2::bigint[], $3::bool[], $6::bool[]) AS c(id, provider_id, reuse, expects_pin)
               JOIN orders o ON {live} AND o.id = c.id AND o.id = ANY($1)
         ), taken AS (
             -- A scalar subquery, one primary-key probe per row (an EXISTS becomes a join the
             -- planner may hash against every reference ever recorded).
             SELECT w.id, w.referans FROM wanted w
              WHERE (SELECT r.order_id FROM placement_references r
                      WHERE r.provider_id = w.provider_id AND r.referans = w.referans) <> w.id
         ), claimed AS (
             UPDATE orders o
                SET external_status = {dispatching}, awaiting_reconciliation = false, provider_id = w.provider_id,
                    provider_referans = w.referans, placement_attempts = o.placement_attempts + 1,
                    dispatched_at = coalesce(o.dispatched_at, now()), placed_at = now(), claimed_at = now(),
                    expects_pin = w.expects_pin,
                    next_check_at = now() + make_interval(secs => $5::bigint / 1000.0), lease = o.lease + 1
               FROM wanted w
              WHERE {live} AND o.id = w.id AND w.id NOT IN (SELECT id FROM taken)
          RETURNING o.id, o.lease, o.provider_id, o.provider_referans, o.created_at,
                    (SELECT coalesce(max(p.attempt), 0) FROM placements p
                      WHERE p.provider_id = w.provider_id AND p.referans = w.referans
                        AND p.order_created_at = w.created_at AND p.order_created_at BETWEEN $7 AND $8) AS attempts,
                    (SELECT coalesce(bool_or(p.outcome <> {not_sent}), false) FROM placements p
                      WHERE p.provider_id = w.provider_id AND p.referans = w.referans
                        AND p.order_created_at = w.created_at AND p.order_created_at BETWEEN $7 AND $8) AS reached
         ), recorded AS (
             INSERT INTO placements (order_id, provider_id, referans, attempt, order_created_at)
             SELECT c.id, c.provider_id, c.provider_referans, c.attempts + 1, c.created_at FROM claimed c
             ON CONFLICT (provider_id, referans, attempt, order_created_at) DO NOTHING
             RETURNING order_id
         )
         SELECT c.id, c.lease, c.provider_referans, c.id IN (SELECT order_id FROM recorded), c.reached FROM claimed c
         UNION ALL
         SELECT id, NULL, referans, false, false FROM taken",
            live = crate::domain::lifecycle::states::live_sql("o.")
        ),
        &[&ids, &providers, &reuse, &style, &(lease.as_millis() as i64), &expects_pin, &first, &last],
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

/// One transition to write.
#[derive(Debug, Clone)]
pub struct Write {
    pub order_id: Uuid,
    /// The lease the work was claimed with; None when the caller holds the row's lock.
    pub lease: Option<i64>,
    /// The placement row the transition's placement outcome applies to: (provider, reference).
    pub placement: Option<(i64, String)>,
    pub transition: Transition,
    /// The steps of a dispatch, carried by the history entry.
    pub steps: Vec<StepRecord>,
}

/// One step of a dispatch, as `inspect` shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StepRecord {
    pub at: DateTime<Utc>,
    pub step: String,
    pub message: String,
}

impl StepRecord {
    pub fn now(step: &str, message: impl Into<String>) -> StepRecord {
        StepRecord { at: Utc::now(), step: step.to_string(), message: message.into() }
    }
}

/// A write that reached its order: (order, its new lease).
pub type Applied = (Uuid, i64);

/// Forwarding chains longer than this are refused as damaged (the database keeps them acyclic,
/// and each step of a chain is an order of another tenant).
const MAX_CHAIN: usize = 64;

/// Write the transitions; those whose lease moved on are dropped. Returns the ones written.
/// An order may appear once per call.
pub fn apply(tx: &mut impl GenericClient, writes: &[Write]) -> Result<Vec<Applied>> {
    apply_at(tx, writes, Reach::Any, 0)
}

/// As [`apply`], for orders the caller claimed or locked as live (due work, an order being
/// routed): the update is planned over the live partition alone. An order that is not live
/// any more has had another write since, so its lease or lock guard would drop it anyway.
pub fn apply_live(tx: &mut impl GenericClient, writes: &[Write]) -> Result<Vec<Applied>> {
    apply_at(tx, writes, Reach::Live, 0)
}

/// Which orders a write-back may reach: any, or only live ones (`orders_live`, sql/0031).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Any,
    Live,
}

fn apply_at(tx: &mut impl GenericClient, writes: &[Write], reach: Reach, depth: usize) -> Result<Vec<Applied>> {
    let reached = apply_pg(tx, writes, reach)?;
    // The shop's notices of what was written, in the same transaction (the webhook outbox).
    crate::db::outbox::enqueue(tx, &reached)?;
    // Counted where every daemon's metrics see it, whoever wrote the transition.
    crate::db::outcomes::count(tx, &reached)?;
    finish_forwarded(tx, &reached, depth)?;
    Ok(reached.iter().map(|r| (r.write.order_id, r.lease)).collect())
}

/// A write that reached its order, with what the rest of the write-back needs to know of the
/// row: returned by the row's update itself, so no later statement of the write-back reads
/// the orders again (each such read was an index probe per order, about a tenth of the
/// write-back's time).
pub(crate) struct Reached<'a> {
    pub write: &'a Write,
    /// The row's new lease.
    pub lease: i64,
    pub tenant_id: i64,
    /// The order is another tenant's order forwarded here (`forwarded_from`): its final status
    /// finishes that one too.
    pub forwarded_here: bool,
    /// The row as written (its history entry records them; a finished order's row has moved
    /// to its month's partition, where reading it again by id alone would probe every month).
    pub status: String,
    pub external_status: String,
    pub created_at: DateTime<Utc>,
}

/// The row changes and their side effects in SQL (its errors keep the SQLSTATE that tells one
/// order's bad value from a lost connection, see `apply_isolated_then`).
fn apply_pg<'a>(
    tx: &mut impl GenericClient,
    writes: &'a [Write],
    reach: Reach,
) -> std::result::Result<Vec<Reached<'a>>, postgres::Error> {
    if writes.is_empty() {
        return Ok(vec![]);
    }
    link_forwarded(tx, writes)?;
    let reached = update_orders(tx, writes, reach)?;
    let done: Vec<&Write> = reached.iter().map(|r| r.write).collect();
    record_placements(tx, &reached)?;
    move_money(tx, &done)?;
    record_events(tx, &reached)?;
    Ok(reached)
}

/// A forwarded order's link to the order it became (created in this transaction). Written
/// before the row's other changes, under the same lease guard: a `sent` order needs either a
/// provider reference or this link (`orders_held_has_reference`). Rare, so kept out of the
/// batched statement every other write goes through.
fn link_forwarded(tx: &mut impl GenericClient, writes: &[Write]) -> std::result::Result<(), postgres::Error> {
    for w in writes {
        if let Some(to) = w.transition.forwarded_to {
            tx.execute(
                "UPDATE orders SET forwarded_to = $2 WHERE id = $1 AND ($3::bigint IS NULL OR lease = $3)",
                &[&w.order_id, &to, &w.lease],
            )?;
        }
    }
    Ok(())
}

/// The orders forwarded to orders that just reached a final status finish with them: locked,
/// judged by the lifecycle, and written here (recursively, down a chain A → B → C).
fn finish_forwarded(tx: &mut impl GenericClient, done: &[Reached], depth: usize) -> Result<()> {
    use crate::domain::lifecycle::{upstream_finished, UpstreamOrder, UpstreamOutcome};
    let finals: Vec<Uuid> = done
        .iter()
        .filter(|r| r.forwarded_here && r.write.transition.final_status().is_some())
        .map(|r| r.write.order_id)
        .collect();
    let finished = crate::db::forwarding::finished_upstream(tx, &finals)?;
    if finished.is_empty() {
        return Ok(());
    }
    if depth >= MAX_CHAIN {
        return Err(crate::error::Error::internal(format!(
            "a forwarding chain is longer than {MAX_CHAIN} orders; the database should make that impossible"
        )));
    }
    let ids: Vec<Uuid> = finished.iter().map(|f| f.downstream).collect();
    let rows = crate::db::claims::lock_ids(tx, &ids, true)?;
    let mut writes = Vec::new();
    for row in rows {
        let Some(up) = finished.iter().find(|f| f.downstream == row.id) else { continue };
        let outcome = if up.approved {
            UpstreamOutcome::Approved { pin: up.pin.as_deref() }
        } else {
            UpstreamOutcome::Rejected { reason: crate::domain::lifecycle::neutral_reason(&up.finished_by) }
        };
        let upstream = UpstreamOrder { tenant: &up.tenant, number: up.number };
        if let Some(transition) = upstream_finished(&row.facts, upstream, outcome) {
            // The row is locked here: no lease to guard.
            writes.push(Write { order_id: row.id, lease: None, placement: None, transition, steps: vec![] });
        }
    }
    apply_at(tx, &writes, Reach::Any, depth + 1)?;
    Ok(())
}

fn update_orders<'a>(
    tx: &mut impl GenericClient,
    writes: &'a [Write],
    reach: Reach,
) -> std::result::Result<Vec<Reached<'a>>, postgres::Error> {
    let ids: Vec<Uuid> = writes.iter().map(|w| w.order_id).collect();
    let leases: Vec<Option<i64>> = writes.iter().map(|w| w.lease).collect();
    let all: Vec<&Transition> = writes.iter().map(|w| &w.transition).collect();
    let status: Vec<Option<&str>> = all.iter().map(|t| t.status.map(|s| s.as_str())).collect();
    let external: Vec<Option<&str>> = all.iter().map(|t| t.external.map(|s| s.as_str())).collect();
    let (att_op, att): (Vec<&str>, Vec<Option<&str>>) = all.iter().map(|t| set_op(&t.attention, |a| a.as_str())).unzip();
    let reconciling: Vec<Option<bool>> = all.iter().map(|t| t.reconciling).collect();
    let (sched_op, sched_ms): (Vec<&str>, Vec<i64>) = all
        .iter()
        .map(|t| match t.schedule {
            Schedule::Keep => ("keep", 0),
            Schedule::Off => ("off", 0),
            Schedule::Now => ("at", 0),
            Schedule::In(d) => ("at", d.as_millis().min(i64::MAX as u128) as i64),
        })
        .unzip();
    let lane: Vec<Option<i64>> = all.iter().map(|t| t.lane).collect();
    let provider: Vec<Option<i64>> = all.iter().map(|t| t.provider_id).collect();
    let (ref_op, reference): (Vec<&str>, Vec<Option<&str>>) = all.iter().map(|t| set_op(&t.reference, String::as_str)).unzip();
    let ext_id: Vec<Option<&str>> = all.iter().map(|t| t.external_order_id.as_deref()).collect();
    let num = |v: Option<u32>| v.map(|n| n.min(i32::MAX as u32) as i32);
    let checks: Vec<Option<i32>> = all.iter().map(|t| num(t.checks)).collect();
    let no_news: Vec<Option<i32>> = all.iter().map(|t| num(t.no_news)).collect();
    let attempts: Vec<Option<i32>> = all.iter().map(|t| num(t.placement_attempts)).collect();
    let message: Vec<Option<&str>> = all.iter().map(|t| t.message.as_deref()).collect();
    let pin: Vec<Option<&str>> = all.iter().map(|t| t.pin.as_deref()).collect();
    let late_pin: Vec<Option<&str>> = all.iter().map(|t| t.late_pin.as_deref()).collect();
    let sent: Vec<bool> = all.iter().map(|t| t.sent).collect();
    let completed: Vec<bool> = all.iter().map(|t| t.completed).collect();
    let forced: Vec<Option<bool>> = all.iter().map(|t| t.operator_forced).collect();
    let reason: Vec<Option<&str>> = all.iter().map(|t| t.operator_reason.as_deref()).collect();
    let settlement: Vec<Option<&str>> = all.iter().map(|t| t.settlement.map(|s| s.as_str())).collect();
    let cost: Vec<Option<rust_decimal::Decimal>> = all.iter().map(|t| t.cost).collect();
    // `o.id = ANY($1)` beside the join (here and in every batch statement): the batch's rows
    // are found through the primary key whatever the statistics say; a young or unanalysed
    // table otherwise gets a full scan and hash per batch.
    // Writes to live orders name the live partition, so the update is planned over it alone.
    let only_live = match reach {
        Reach::Live => format!("{} AND ", crate::domain::lifecycle::states::live_sql("o.")),
        Reach::Any => String::new(),
    };
    let sql = format!(
        "UPDATE orders o SET
            status = coalesce(u.status, o.status),
            external_status = coalesce(u.external, o.external_status),
            attention = CASE u.att_op WHEN 'set' THEN u.att WHEN 'clear' THEN NULL ELSE o.attention END,
            awaiting_reconciliation = coalesce(u.reconciling, o.awaiting_reconciliation),
            next_check_at = CASE u.sched_op WHEN 'off' THEN NULL
                                 WHEN 'at' THEN now() + make_interval(secs => u.sched_ms / 1000.0)
                                 ELSE o.next_check_at END,
            lane = coalesce(u.lane, o.lane),
            provider_id = coalesce(u.provider, o.provider_id),
            provider_referans = CASE u.ref_op WHEN 'set' THEN u.ref WHEN 'clear' THEN NULL ELSE o.provider_referans END,
            external_order_id = CASE WHEN u.ref_op = 'clear' THEN NULL ELSE coalesce(u.ext_id, o.external_order_id) END,
            checks = coalesce(u.checks, o.checks),
            no_news = coalesce(u.no_news, o.no_news),
            placement_attempts = coalesce(u.attempts, o.placement_attempts),
            last_message = coalesce(u.message, o.last_message),
            pin_code = coalesce(u.pin, o.pin_code),
            late_pin = coalesce(u.late_pin, o.late_pin),
            sent_at = CASE WHEN u.sent THEN coalesce(o.sent_at, now()) ELSE o.sent_at END,
            completed_at = CASE WHEN u.completed THEN now() ELSE o.completed_at END,
            duration_ms = CASE WHEN u.completed
                               THEN (extract(epoch FROM now() - coalesce(o.sent_at, o.dispatched_at, o.created_at)) * 1000)::bigint
                               ELSE o.duration_ms END,
            operator_forced = coalesce(u.forced, o.operator_forced),
            operator_reason = coalesce(u.reason, o.operator_reason),
            settlement = coalesce(u.settlement, o.settlement),
            -- The cost is in the currency of the provider that accepted (its setup's `currency`).
            provider_cost = CASE WHEN u.cost IS NULL THEN o.provider_cost ELSE u.cost END,
            provider_cost_currency = CASE WHEN u.cost IS NULL THEN o.provider_cost_currency
                ELSE (SELECT pc.currency FROM providers pc WHERE pc.id = coalesce(u.provider, o.provider_id)) END,
            -- With the cost, the snapshot that converts it into the tenant's money (migration
            -- 0021): a later change of rate or currency never rewrites this order's margin.
            sale_currency = CASE WHEN u.cost IS NULL THEN o.sale_currency
                ELSE (SELECT t.currency FROM tenants t WHERE t.id = o.tenant_id) END,
            cost_rate = CASE WHEN u.cost IS NULL THEN o.cost_rate
                ELSE orderctl_cost_rate(coalesce(u.provider, o.provider_id), o.tenant_id) END,
            claimed_at = NULL,
            last_sync_at = now(),
            lease = o.lease + 1
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::text[],
                       $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::int[],
                       $16::int[], $17::int[], $18::text[], $19::text[], $20::text[], $21::bool[], $22::bool[], $23::bool[],
                       $24::text[], $25::text[], $26::numeric[])
                AS u(id, lease, status, external, att_op, att, reconciling, sched_op, sched_ms, lane, provider, ref_op, ref,
                     ext_id, checks, no_news, attempts, message, pin, late_pin, sent, completed, forced, reason, settlement,
                     cost)
          WHERE {only_live}o.id = u.id AND o.id = ANY($1) AND (u.lease IS NULL OR o.lease = u.lease)
          RETURNING o.id, o.lease, o.tenant_id, o.forwarded_from IS NOT NULL, o.status, o.external_status, o.created_at"
    );
    let rows = tx.query(
        &sql,
        &[
            &ids,
            &leases,
            &status,
            &external,
            &att_op,
            &att,
            &reconciling,
            &sched_op,
            &sched_ms,
            &lane,
            &provider,
            &ref_op,
            &reference,
            &ext_id,
            &checks,
            &no_news,
            &attempts,
            &message,
            &pin,
            &late_pin,
            &sent,
            &completed,
            &forced,
            &reason,
            &settlement,
            &cost,
        ],
    )?;
    // In the order of `writes` (an order appears once per call).
    let rows: std::collections::HashMap<Uuid, &postgres::Row> = rows.iter().map(|r| (r.get(0), r)).collect();
    Ok(writes
        .iter()
        .filter_map(|w| {
            let r = rows.get(&w.order_id)?;
            Some(Reached {
                write: w,
                lease: r.get(1),
                tenant_id: r.get(2),
                forwarded_here: r.get(3),
                status: r.get(4),
                external_status: r.get(5),
                created_at: r.get(6),
            })
        })
        .collect())
}

fn set_op<T, F: Fn(&T) -> &str>(s: &Set<T>, f: F) -> (&'static str, Option<&str>) {
    match s {
        Set::Keep => ("keep", None),
        Set::To(v) => ("set", Some(f(v))),
        Set::Clear => ("clear", None),
    }
}

fn record_placements(tx: &mut impl GenericClient, done: &[Reached]) -> std::result::Result<(), postgres::Error> {
    let items: Vec<(i64, &str, &str, &str, DateTime<Utc>)> = done
        .iter()
        .filter_map(|r| {
            let w = r.write;
            let word = w.transition.placement?;
            let (provider, reference) = w.placement.as_ref()?;
            Some((*provider, reference.as_str(), word.as_str(), w.transition.placement_message().unwrap_or(""), r.created_at))
        })
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let providers: Vec<i64> = items.iter().map(|i| i.0).collect();
    // The batch's providers once each (one, in a lane's write-back) for the index condition:
    // with one id per row the planner costs the index scan as every provider times every
    // reference (275 x 275 descents for a batch of 275) and reads the whole placements table
    // instead (72 ms at 500k placements; 10 ms this way).
    let mut distinct_providers = providers.clone();
    distinct_providers.sort_unstable();
    distinct_providers.dedup();
    let references: Vec<&str> = items.iter().map(|i| i.1).collect();
    let outcomes: Vec<&str> = items.iter().map(|i| i.2).collect();
    let messages: Vec<&str> = items.iter().map(|i| i.3).collect();
    // Each placement's month (its order's creation time, sql/0032), and the batch's months for
    // the planner: the statement is planned over those partitions alone.
    let months: Vec<DateTime<Utc>> = items.iter().map(|i| i.4).collect();
    let (first, last) = time_span(months.iter().copied());
    // The latest attempt of each (provider, reference). An outcome is recorded once, on an
    // attempt still in flight; what a status check later finds about an attempt whose outcome
    // was unknown goes beside it (`reconciled`), never over it.
    use PlacementState as P;
    let (in_flight, accepted) = (P::InFlight.sql(), P::Accepted.sql());
    let (open_or_decided, reconciling) = (sql_in(&[P::InFlight, P::Accepted, P::Rejected]), sql_in(&[P::Accepted, P::Absent]));
    let (found, not_found) = (Reconciled::Found.sql(), Reconciled::Absent.sql());
    tx.execute(
        &format!(
            "UPDATE placements p SET
                outcome = CASE WHEN p.outcome = {in_flight} THEN u.outcome ELSE p.outcome END,
                message = CASE WHEN p.outcome = {in_flight} THEN u.message ELSE p.message END,
                finished_at = coalesce(p.finished_at, now()),
                reconciled = CASE WHEN p.outcome NOT IN ({open_or_decided}) AND p.reconciled IS NULL
                                   AND u.outcome IN ({reconciling})
                                  THEN CASE u.outcome WHEN {accepted} THEN {found} ELSE {not_found} END
                                  ELSE p.reconciled END,
                reconciled_at = CASE WHEN p.outcome NOT IN ({open_or_decided}) AND p.reconciled IS NULL
                                      AND u.outcome IN ({reconciling})
                                     THEN now() ELSE p.reconciled_at END
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $6::timestamptz[])
                AS u(provider_id, reference, outcome, message, order_created_at)
          WHERE p.provider_id = u.provider_id AND p.referans = u.reference AND p.order_created_at = u.order_created_at
            AND p.provider_id = ANY($5) AND p.referans = ANY($2) AND p.order_created_at BETWEEN $7 AND $8
            AND p.attempt = (SELECT max(q.attempt) FROM placements q
                              WHERE q.provider_id = u.provider_id AND q.referans = u.reference
                                AND q.order_created_at = u.order_created_at AND q.order_created_at BETWEEN $7 AND $8)"
        ),
        &[&providers, &references, &outcomes, &messages, &distinct_providers, &months, &first, &last],
    )?;
    Ok(())
}

/// The first and last of a batch's order creation times: what its statements name so that
/// each is planned over the months of `placements` between them (sql/0032), normally one.
/// A range, not the list: the planner prunes partitions with a list of a few hundred
/// timestamps by testing every element (2-3 ms of planning for a claim of 400; a range: two
/// bounds). `times` is never empty where this is called.
fn time_span(times: impl Iterator<Item = DateTime<Utc>>) -> (DateTime<Utc>, DateTime<Utc>) {
    times.fold((DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC), |(lo, hi), t| (lo.min(t), hi.max(t)))
}

/// Money, exactly once: every movement is a ledger row whose unique (order, kind) key makes a
/// repeat a no-op, and a balance moves only together with a row that is new.
fn move_money(tx: &mut impl GenericClient, done: &[&Write]) -> std::result::Result<(), postgres::Error> {
    let of = |m: Money| -> Vec<Uuid> { done.iter().filter(|w| w.transition.money == m).map(|w| w.order_id).collect() };
    let refunds = of(Money::Refund);
    if !refunds.is_empty() {
        tx.execute(
            "WITH charge AS (
                 SELECT order_id, tenant_id, user_id, -amount AS amount FROM ledger WHERE order_id = ANY($1) AND kind = 'charge'
             ), refund AS (
                 INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note)
                 SELECT tenant_id, user_id, order_id, 'refund', amount, 'order rejected' FROM charge
                 ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING
                 RETURNING user_id, amount
             )
             UPDATE users u SET balance = u.balance + r.amount
               FROM (SELECT user_id, sum(amount) AS amount FROM refund GROUP BY user_id) r
              WHERE u.id = r.user_id",
            &[&refunds],
        )?;
    }
    // A recharge can take the balance below the overdraft: the users CHECK then refuses it,
    // and the operator's command says so.
    for id in of(Money::Recharge) {
        tx.execute(
            "WITH charge AS (
                 SELECT tenant_id, user_id, amount FROM ledger WHERE order_id = $1 AND kind = 'charge'
             ), recharge AS (
                 INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note)
                 SELECT tenant_id, user_id, $1, 'recharge', amount, 'delivered after a refund: charged again' FROM charge
                 ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING
                 RETURNING user_id, amount
             )
             UPDATE users u SET balance = u.balance + r.amount FROM recharge r WHERE u.id = r.user_id",
            &[&id],
        )?;
    }
    for id in of(Money::WriteOff) {
        tx.execute(
            "INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, note)
             SELECT tenant_id, user_id, $1, 'write_off', 0,
                    'provider delivered after the operator''s decision; its cost (' || (-amount)::text || ') written off'
               FROM ledger WHERE order_id = $1 AND kind = 'charge'
             ON CONFLICT (order_id, kind) WHERE order_id IS NOT NULL DO NOTHING",
            &[&id],
        )?;
    }
    Ok(())
}

fn record_events(tx: &mut impl GenericClient, done: &[Reached]) -> std::result::Result<(), postgres::Error> {
    // (order as written, entry, the state it records: the row's as written, or a merged
    // transition's first step's; whether it is the placement's entry, which carries the
    // dispatch's steps: a merged transition's first).
    type Entry<'a> = (&'a Reached<'a>, &'a crate::domain::lifecycle::Step, (&'a str, &'a str), bool);
    let mut events: Vec<Entry> = Vec::new();
    for r in done {
        let first = &r.write.transition.first;
        if let Some(first) = first {
            events.push((r, &first.event, (first.status.as_str(), first.external.as_str()), true));
        }
        if let Some(e) = &r.write.transition.event {
            events.push((r, e, (r.status.as_str(), r.external_status.as_str()), first.is_none()));
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|(r, ..)| r.write.order_id).collect();
    let kinds: Vec<&str> = events.iter().map(|(_, e, ..)| e.kind).collect();
    let messages: Vec<&str> = events.iter().map(|(_, e, ..)| e.message.as_str()).collect();
    let status: Vec<&str> = events.iter().map(|(_, _, s, _)| s.0).collect();
    let external: Vec<&str> = events.iter().map(|(_, _, s, _)| s.1).collect();
    let created: Vec<DateTime<Utc>> = events.iter().map(|(r, ..)| r.created_at).collect();
    let steps: Vec<Option<serde_json::Value>> = events
        .iter()
        .map(|(r, _, _, placement_entry)| {
            let steps = &r.write.steps;
            (*placement_entry && !steps.is_empty()).then(|| serde_json::to_value(steps).unwrap_or_default())
        })
        .collect();
    tx.execute(
        "INSERT INTO order_events (order_id, kind, status, external_status, message, steps, order_created_at)
         SELECT e.order_id, e.kind, e.status, e.external, e.message, e.steps, e.order_created_at
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::timestamptz[])
                WITH ORDINALITY AS e(order_id, kind, message, steps, status, external, order_created_at, n)
          ORDER BY e.n",
        &[&ids, &kinds, &messages, &steps, &status, &external, &created],
    )?;
    Ok(())
}

/// The database refused to store a result for one order (a value it cannot take, a constraint):
/// the order is flagged with the reason instead, so the rest of its batch goes through.
pub fn refused_write(order_id: Uuid, lease: Option<i64>, why: &str) -> Write {
    use crate::domain::lifecycle::{Attention, Notice, Step};
    let why = crate::domain::text::clean(why, crate::domain::text::MESSAGE_MAX);
    Write {
        order_id,
        lease,
        placement: None,
        transition: Transition {
            attention: Set::To(Attention::WriteRefused),
            schedule: Schedule::Off,
            message: Some(format!("the database refused a result for this order: {why}")),
            notice: Some(Notice::NeedsAction),
            event: Some(Step {
                kind: "write_refused",
                message: format!(
                    "the database refused to store a result ({why}); the order waits for an operator (`orderctl inspect` then dispatch, approve or reject)"
                ),
            }),
            ..Transition::default()
        },
        steps: vec![],
    }
}

/// True for errors that one order's values cause (and that repeating will not cure): data
/// exceptions (class 22: a value Postgres cannot store) and integrity violations (class 23).
pub fn refused_by_data(e: &crate::error::Error) -> bool {
    e.sqlstate.as_deref().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

/// What `apply_isolated_then` wrote: the writes that reached their order, and the orders whose
/// write the database refused (flagged instead).
#[derive(Debug, Default)]
pub struct Written {
    pub applied: Vec<Applied>,
    pub refused: Vec<Uuid>,
}

/// Apply a lane's batch (results of work it claimed, so of live orders: [`apply_live`]) in its
/// own transaction, and then `then` in the same transaction with the writes that reached their
/// order (a lane claims the follow-up work of what it wrote there: one transaction where a
/// write and a claim would be two). When the database refuses the batch because of one order's
/// values, the batch is written again one order at a time, each behind a savepoint, and every
/// order whose write is refused is flagged with the reason: one bad value never blocks the
/// others.
pub fn apply_isolated_then<T>(
    client: &mut crate::db::Client,
    writes: &[Write],
    mut then: impl FnMut(&mut crate::db::Transaction<'_>, &[Applied]) -> Result<T>,
) -> Result<(Written, T)> {
    let first = {
        let mut tx = client.transaction()?;
        match apply_live(&mut tx, writes) {
            Ok(applied) => {
                let followed = then(&mut tx, &applied)?;
                tx.commit()?;
                return Ok((Written { applied, refused: vec![] }, followed));
            }
            Err(e) if refused_by_data(&e) => e,
            Err(e) => return Err(e),
        }
    };
    log::warn!("a batch of {} result(s) was refused ({}); writing them one by one", writes.len(), first.message);
    let mut tx = client.transaction()?;
    let mut out = Written::default();
    for w in writes {
        let mut sp = tx.savepoint("one_write")?;
        match apply_live(&mut sp, std::slice::from_ref(w)) {
            Ok(a) => {
                sp.commit()?;
                out.applied.extend(a);
            }
            Err(e) if refused_by_data(&e) => {
                sp.rollback()?;
                let why = e.message.clone();
                log::error!("order {}: the database refused its result ({why}); flagged for an operator", w.order_id);
                if !apply_live(&mut tx, &[refused_write(w.order_id, w.lease, &why)])?.is_empty() {
                    out.refused.push(w.order_id);
                }
            }
            Err(e) => return Err(e),
        }
    }
    let followed = then(&mut tx, &out.applied)?;
    tx.commit()?;
    Ok((out, followed))
}
