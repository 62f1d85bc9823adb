//! A provider's rate limit (`rate_limit` in its setup, e.g. "20/s"), held in Postgres so that it
//! counts every HTTP call to the provider from every daemon, sweep and command on every host.
//!
//! Design: time is cut into slots of equal length, numbered by the database clock (one clock for
//! every process, so no host's skew matters). Each slot grants at most `per_slot` calls; a call
//! takes a grant by one atomic upsert of the provider's single row in `provider_call_pace`, and
//! a process that finds the slot spent sleeps until the next slot starts. The slot is as short
//! as a whole grant allows (one call per slot at rates up to 50/s, never shorter than 20 ms), so
//! any window of the limit's length holds at most one slot's grants more than the limit: at
//! 20/s, 201 calls in any 10 s instead of 200 (0.5 %), and the budget of a slot nobody used is
//! simply lost (no bursts after a quiet spell). A token bucket would allow bursts of its depth;
//! permits (`permits.rs`) limit calls in flight, not calls per second — both are kept.
//!
//! Placements first: a placement that finds the slot spent marks the row so that for the next
//! two slots checks take no grant; placements then get every grant while any of them waits.
//!
//! The grant is taken just before the call leaves; the provider sees it a database round trip
//! later, which shifts calls by a few milliseconds and does not add any.

use crate::db::{Client, GenericClient};
use crate::domain::pace::RateLimit;
use crate::error::Result;
use crate::provider::http::{CallGate, CallPurpose};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Shortest slot: below this the round trip to Postgres would be a large part of a slot.
const MIN_SLOT_MS: i64 = 20;

/// The slot length and the grants per slot for a limit.
pub fn slots(limit: RateLimit) -> (i64, i32) {
    let window_ms = limit.per.as_millis().max(1) as f64;
    let calls = limit.calls.max(1) as f64;
    // One call per slot when that keeps the slot at least MIN_SLOT_MS; more per slot otherwise.
    let per_slot = (MIN_SLOT_MS as f64 * calls / window_ms).ceil().max(1.0);
    let slot_ms = (window_ms * per_slot / calls).ceil() as i64;
    (slot_ms.max(1), per_slot as i32)
}

/// Either a grant, or how long until the next slot starts.
pub enum Turn {
    Granted,
    WaitMs(i64),
}

/// Take one call from the provider's current slot.
pub fn take(client: &mut impl GenericClient, provider_id: i64, limit: RateLimit, purpose: CallPurpose) -> Result<Turn> {
    let (slot_ms, per_slot) = slots(limit);
    let placement = purpose == CallPurpose::Placement;
    let row = client.query_one(
        "WITH now AS (SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
              granted AS (
                INSERT INTO provider_call_pace AS p (provider_id, slot, calls)
                SELECT $1::bigint, now.ms / $2::bigint, 1 FROM now
                ON CONFLICT (provider_id) DO UPDATE
                   SET calls = CASE WHEN p.slot = excluded.slot THEN p.calls + 1 ELSE 1 END,
                       slot = excluded.slot
                 WHERE (p.slot < excluded.slot OR (p.slot = excluded.slot AND p.calls < $3::int))
                   AND ($4::bool OR p.placements_waiting_until_ms <= (SELECT ms FROM now))
                RETURNING 1)
         SELECT (SELECT count(*) FROM granted) AS granted, ms, ms / $2 AS slot FROM now",
        &[&provider_id, &slot_ms, &per_slot, &placement],
    )?;
    if row.get::<_, i64>("granted") > 0 {
        return Ok(Turn::Granted);
    }
    let (ms, slot): (i64, i64) = (row.get("ms"), row.get("slot"));
    if placement {
        client.execute(
            "UPDATE provider_call_pace SET placements_waiting_until_ms = greatest(placements_waiting_until_ms, $2)
              WHERE provider_id = $1",
            &[&provider_id, &((slot + 2) * slot_ms)],
        )?;
    }
    Ok(Turn::WaitMs(((slot + 1) * slot_ms - ms).clamp(1, slot_ms)))
}

/// A provider with a rate limit and the calls due now in its lane, waiting for a caller and a
/// turn: what `doctor` weighs against the limit.
pub struct Backlog {
    pub tenant: String,
    pub provider: String,
    pub limit: RateLimit,
    /// Orders not sent yet.
    pub placements_due: i64,
    /// Orders sent whose status check (or reconciliation) is due. Under a saturated limit they
    /// get only the turns placements leave, and each is due again a second later, so no
    /// overdue rule sees them: only this count does.
    pub checks_due: i64,
}

/// Every provider with a rate limit (of one tenant, or all), with its placements and checks due
/// now (each read through its own partial due index).
pub fn backlogs(client: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<Backlog>> {
    use crate::domain::lifecycle::states::ExternalStatus;
    let rows = client.query(
        &format!(
            "SELECT t.name AS tenant, p.name AS provider, p.rate_limit_calls, p.rate_limit_window_ms,
                    (SELECT count(*) FROM orders o
                      WHERE o.lane = p.id AND o.next_check_at IS NOT NULL AND o.next_check_at <= now()
                        AND o.external_status = {not_sent} AND {pending}) AS due,
                    (SELECT count(*) FROM orders o
                      WHERE o.lane = p.id AND o.next_check_at IS NOT NULL AND o.next_check_at <= now()
                        AND {checks}) AS checks_due
               FROM providers p JOIN tenants t ON t.id = p.tenant_id
              WHERE p.rate_limit_calls IS NOT NULL AND p.retired_at IS NULL AND ($1::text IS NULL OR t.name = $1)
              ORDER BY t.name, p.name",
            not_sent = ExternalStatus::NotSent.sql(),
            pending = crate::domain::lifecycle::states::pending_sql("o."),
            checks = crate::db::claims::due_kind("o.", false)
        ),
        &[&tenant],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        // Every row has one (the WHERE clause).
        let Some(limit) = crate::db::providers::rate_limit(r)? else { continue };
        out.push(Backlog {
            tenant: r.get("tenant"),
            provider: r.get("provider"),
            limit,
            placements_due: r.get("due"),
            checks_due: r.get("checks_due"),
        });
    }
    Ok(out)
}

/// The database every rate-limit gate of this process uses, set once at start-up by the command
/// that runs (`commands::run`). Without it (library use, unit tests) providers are not paced.
static DATABASE_URL: OnceLock<String> = OnceLock::new();

pub fn use_database(url: &str) {
    let _ = DATABASE_URL.set(url.to_string());
}

/// The gate of one provider with a rate limit, or none.
pub fn gate(provider_id: i64, limit: Option<RateLimit>) -> Option<std::sync::Arc<dyn CallGate>> {
    let url = DATABASE_URL.get()?.clone();
    Some(std::sync::Arc::new(SharedRateLimit { provider_id, limit: limit?, url, client: Mutex::new(None) }))
}

/// A provider's rate limit shared through Postgres, with its own connection (opened on first
/// use, reopened after an error).
struct SharedRateLimit {
    provider_id: i64,
    limit: RateLimit,
    url: String,
    client: Mutex<Option<Client>>,
}

impl SharedRateLimit {
    fn try_take(&self, purpose: CallPurpose) -> Result<Turn> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(crate::db::connect(&self.url)?);
        }
        let client = slot.as_mut().expect("opened above");
        let turn = take(client, self.provider_id, self.limit, purpose);
        if turn.is_err() {
            *slot = None;
        }
        turn
    }
}

impl CallGate for SharedRateLimit {
    fn calls_per_second(&self) -> f64 {
        self.limit.per_second()
    }

    fn wait_turn(&self, purpose: CallPurpose, give_up_after: Duration) -> std::result::Result<(), String> {
        let started = Instant::now();
        loop {
            match self.try_take(purpose) {
                Ok(Turn::Granted) => return Ok(()),
                // Never past the give-up: at "1/min" the next slot may be a minute away, and a
                // caller (or a stopping daemon) must not sleep through its request's time.
                Ok(Turn::WaitMs(ms)) => {
                    std::thread::sleep(Duration::from_millis(ms as u64).min(give_up_after.saturating_sub(started.elapsed())))
                }
                Err(e) => {
                    // The limit cannot be read: better one call unpaced than a stalled provider.
                    log::warn!("rate limit of provider {}: {}; calling without it", self.provider_id, e.message);
                    return Ok(());
                }
            }
            if started.elapsed() >= give_up_after {
                return Err(format!(
                    "no call within the provider's rate limit ({}) in {} s; nothing was sent",
                    self.limit,
                    give_up_after.as_secs()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_never_grant_more_than_one_slot_over_the_limit() {
        let l = |s: &str| RateLimit::parse(s).unwrap();
        assert_eq!(slots(l("20/s")), (50, 1));
        assert_eq!(slots(l("600/min")), (100, 1));
        assert_eq!(slots(l("100/s")), (20, 2));
        assert_eq!(slots(l("1000/s")), (20, 20));
        for s in ["20/s", "600/min", "7/s", "5000/h", "1000/s", "3/min"] {
            let limit = l(s);
            let (slot_ms, per_slot) = slots(limit);
            let window = limit.per.as_millis() as i64;
            // The most grants in any window of the limit's length.
            let most = (window / slot_ms + 1) * per_slot as i64;
            assert!(most as f64 <= limit.calls as f64 * 1.02 + per_slot as f64, "{s}: {most}");
            // And the least a busy window gets: at least 98 % of the limit.
            let least = (window / slot_ms) * per_slot as i64;
            assert!(least as f64 >= limit.calls as f64 * 0.98 - per_slot as f64, "{s}: {least}");
        }
    }
}
