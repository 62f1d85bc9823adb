//! Periodic runs deduplicated in the database: before a periodic job runs, its (job, slot) row
//! is inserted; only the process whose insert succeeded runs it. Holds across any number of
//! daemons and cron hosts, and behind connection poolers (no session state).

use crate::db::GenericClient;
use crate::error::Result;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The start of the slot of length `every` that `now` falls in.
pub fn slot_of(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let every_ms = every.as_millis().max(1) as i64;
    let ms = now.timestamp_millis();
    DateTime::from_timestamp_millis(ms - ms.rem_euclid(every_ms)).unwrap_or(now)
}

/// Try to take the run of `job` for `slot`. True: this process runs it.
pub fn try_start(client: &mut impl GenericClient, job: &str, slot: DateTime<Utc>, runner: &str) -> Result<bool> {
    Ok(client.execute(
        "INSERT INTO periodic_runs (job, slot, runner) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&job, &slot, &runner],
    )? == 1)
}

pub fn finish(client: &mut impl GenericClient, job: &str, slot: DateTime<Utc>, summary: &serde_json::Value) -> Result<()> {
    client.execute(
        "UPDATE periodic_runs SET finished_at = now(), summary = $3 WHERE job = $1 AND slot = $2",
        &[&job, &slot, &summary],
    )?;
    // A slot only has to be remembered while a late runner could still try it; a week of
    // history is kept for `stats` and for people, the rest would only grow.
    client.execute("DELETE FROM periodic_runs WHERE job = $1 AND slot < now() - interval '7 days'", &[&job])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_aligned_to_their_length() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:07:31Z").unwrap().with_timezone(&Utc);
        let s = slot_of(t, Duration::from_secs(300));
        assert_eq!(s.to_rfc3339(), "2026-11-22T10:05:00+00:00");
        assert_eq!(slot_of(s, Duration::from_secs(300)), s);
    }
}
