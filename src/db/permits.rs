//! Per-provider limit on calls in flight, held in Postgres so it holds across every daemon and
//! cron sweep on every host. A permit is a row (provider, slot) with an expiry: a crashed
//! holder's permits lapse by themselves, no cleanup needed.

use crate::db::GenericClient;
use crate::error::Result;
use std::time::Duration;

/// A new permit holder's name: host, process id and a random part (a restarted process with
/// the same pid never mistakes its predecessor's permits for its own).
pub fn new_holder() -> String {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into());
    format!("{host}:{}:{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// This process's name as a permit holder for one-off commands (one per process).
pub fn this_process() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(new_holder)
}

/// Take up to `wanted` free slots of the provider's `max_in_flight`. Returns the slots won
/// (possibly none, when other processes hold them all).
pub fn acquire(client: &mut impl GenericClient, provider_id: i64, holder: &str, wanted: i64, ttl: Duration) -> Result<Vec<i32>> {
    let ms = ttl.as_millis() as i64;
    let rows = client.query(
        "WITH free AS (
             SELECT s AS slot
               FROM providers p, generate_series(0, p.max_in_flight - 1) s
              WHERE p.id = $1
                AND NOT EXISTS (SELECT 1 FROM provider_permits pp
                                 WHERE pp.provider_id = $1 AND pp.slot = s AND pp.expires_at > now())
              LIMIT $3)
         INSERT INTO provider_permits (provider_id, slot, holder, expires_at)
         SELECT $1, slot, $2, now() + make_interval(secs => $4::bigint / 1000.0) FROM free
         ON CONFLICT (provider_id, slot) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
            WHERE provider_permits.expires_at <= now()
         RETURNING slot",
        &[&provider_id, &holder, &wanted, &ms],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub fn release(client: &mut impl GenericClient, provider_id: i64, holder: &str, slots: &[i32]) -> Result<()> {
    if slots.is_empty() {
        return Ok(());
    }
    client.execute(
        "DELETE FROM provider_permits WHERE provider_id = $1 AND holder = $2 AND slot = ANY($3)",
        &[&provider_id, &holder, &slots],
    )?;
    Ok(())
}

/// Push the expiry of the slots this holder still has; returns the ones it still has.
pub fn renew(client: &mut impl GenericClient, provider_id: i64, holder: &str, slots: &[i32], ttl: Duration) -> Result<Vec<i32>> {
    if slots.is_empty() {
        return Ok(vec![]);
    }
    Ok(client
        .query(
            "UPDATE provider_permits SET expires_at = now() + make_interval(secs => $4::bigint / 1000.0)
              WHERE provider_id = $1 AND holder = $2 AND slot = ANY($3) RETURNING slot",
            &[&provider_id, &holder, &slots, &(ttl.as_millis() as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The slot of the provider's one-at-a-time placement permit, apart from its `max_in_flight`
/// slots (0..n-1): held while a careful placement (`domain::provider_health::pace`) is claimed
/// and until its answer is recorded, so the next claim, in any process, sees that answer.
const CAREFUL_SLOT: i32 = -1;

/// Take the provider's careful-placement permit; None while another claim (in any process,
/// this one included) holds it. It lapses by itself at its expiry if its holder dies.
///
/// Returns the name this acquisition holds it under (`holder` and a random part): only that
/// name gives it back, so a release written twice (a write-back tried again after a commit
/// whose answer was lost) can never free a later acquisition of the same process.
pub fn acquire_careful(client: &mut impl GenericClient, provider_id: i64, holder: &str, ttl: Duration) -> Result<Option<String>> {
    let own = format!("{holder}:careful:{}", uuid::Uuid::new_v4().simple());
    Ok(client
        .query_opt(
            "INSERT INTO provider_permits (provider_id, slot, holder, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint / 1000.0))
             ON CONFLICT (provider_id, slot) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE provider_permits.expires_at <= now()
             RETURNING slot",
            &[&provider_id, &CAREFUL_SLOT, &own, &(ttl.as_millis() as i64)],
        )?
        .map(|_| own))
}

/// Give the careful-placement permit back (in the transaction that records the placement's
/// answer, so the next claim sees the answer and the free permit together). `own`: the name
/// `acquire_careful` returned.
pub fn release_careful(client: &mut impl GenericClient, provider_id: i64, own: &str) -> Result<()> {
    release(client, provider_id, own, &[CAREFUL_SLOT])
}
