//! Provider health in Postgres, shared by every daemon and command: the dealer balance last
//! seen, an operator's pause or drain, causes the provider gave for refusing orders, the circuit
//! breaker and the pacing of calls while it is open, and the provider's events. What each of
//! these means is decided in `domain::provider_health`; this module only reads and writes it.
//! Dealer data (balance, causes, events) is never selected by a tenant- or shop-facing query.

use crate::db::row::{state, state_opt};
use crate::db::GenericClient;
use crate::dispatch::LaneProvider;
use crate::domain::answers::PlacementOutcome;
use crate::domain::lifecycle::states::{BreakerState, OperatorHold, UnavailableCause};
use crate::domain::provider_health::{
    self as health, Funds, Health, HealthSettings, Pace, Scope, PROBE_INTERVAL, UNAVAILABLE_PROBE,
};
use crate::error::Result;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::time::Duration;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn elapsed(v: Option<i64>) -> Duration {
    Duration::from_millis(v.unwrap_or(0).max(0) as u64)
}

/// A provider's health settings (the setup file's `low_balance`, `hold_for`, `breaker`).
pub fn settings(c: &mut impl GenericClient, provider_id: i64) -> Result<HealthSettings> {
    let row = c.query_opt("SELECT health_settings FROM providers WHERE id = $1", &[&provider_id])?;
    Ok(row.map(|r| HealthSettings::from_json(&r.get("health_settings"))).unwrap_or_default())
}

/// Everything the placement gate needs, in two small reads.
pub fn load(c: &mut impl GenericClient, provider_id: i64, name: &str) -> Result<Health> {
    let mut h = Health { name: name.to_string(), ..Default::default() };
    let row = c.query_opt(
        "SELECT p.health_settings, h.hold, h.hold_reason, h.breaker,
                (extract(epoch FROM now() - h.breaker_since) * 1000)::bigint AS breaker_ms
           FROM providers p LEFT JOIN provider_health h ON h.provider_id = p.id WHERE p.id = $1",
        &[&provider_id],
    )?;
    let Some(r) = row else { return Ok(h) };
    h.settings = HealthSettings::from_json(&r.get("health_settings"));
    if let (Some(hold), Some(reason)) = (state_opt::<OperatorHold>(&r, "hold")?, r.get::<_, Option<String>>("hold_reason")) {
        h.hold = Some((hold, reason));
    }
    if let Some(b) = state_opt::<BreakerState>(&r, "breaker")? {
        h.breaker = Some((b, elapsed(r.get("breaker_ms"))));
    }
    for u in c.query(
        "SELECT package_id, cause, reason, (extract(epoch FROM now() - since) * 1000)::bigint AS since_ms
           FROM provider_unavailable WHERE provider_id = $1",
        &[&provider_id],
    )? {
        h.unavailable.push((u.get("package_id"), state(&u, "cause")?, u.get("reason"), elapsed(u.get("since_ms"))));
    }
    Ok(h)
}

/// Append to the provider's history (and the log).
pub fn event(c: &mut impl GenericClient, provider_id: i64, kind: &str, message: &str) -> Result<()> {
    let r = c.query_one(
        "INSERT INTO provider_events (provider_id, kind, message) VALUES ($1, $2, $3)
         RETURNING (SELECT t.name || '/' || p.name FROM providers p JOIN tenants t ON t.id = p.tenant_id WHERE p.id = $1) AS name",
        &[&provider_id, &kind, &message],
    )?;
    let name: Option<String> = r.get("name");
    log::warn!("provider {}: {message}", name.unwrap_or_else(|| provider_id.to_string()));
    Ok(())
}

/// What a batch of placement answers (one provider's, in the order they came) says about the
/// provider, written once per batch rather than once per order (four statements an order cost a
/// third of the end-to-end throughput): the breaker counts every call (one read when none
/// failed), the highest accepted cost and the lowest balance replied are recorded, and each
/// refusal that describes the provider marks it (or its product) unavailable.
pub fn after_placements(c: &mut impl GenericClient, lp: &LaneProvider, answers: &[(i64, &PlacementOutcome)]) -> Result<()> {
    if answers.is_empty() {
        return Ok(());
    }
    let failed: Vec<bool> = answers.iter().map(|(_, o)| health::placement_failed(o)).collect();
    after_calls(c, lp.id, &failed)?;
    let accepted: Vec<Option<Decimal>> = answers
        .iter()
        .filter_map(|(_, o)| match o {
            PlacementOutcome::Accepted { cost, .. } => Some(*cost),
            _ => None,
        })
        .collect();
    if !accepted.is_empty() {
        accepted_placements(c, lp.id, accepted.into_iter().flatten().max())?;
    }
    // The lowest balance any reply carried: replies of calls made at once arrive in any order,
    // and the lowest is the one that must make placements careful.
    if let Some(balance) = answers.iter().filter_map(|(_, o)| health::balance_in_reply(o)).min() {
        let (settings, cushion) = settings_and_cushion(c, lp.id)?;
        record_balance(c, lp.id, &lp.name, balance, &settings, cushion)?;
    }
    for (package_id, o) in answers {
        let PlacementOutcome::Rejected { message } = o else { continue };
        let Some((cause, scope)) = health::provider_cause(message) else { continue };
        let package = if scope == Scope::Product { *package_id } else { 0 };
        mark_unavailable(c, lp.id, package, cause, message)?;
    }
    Ok(())
}

/// Accepted placements: the highest cost seen grows (`cost`: the highest of them), and a
/// provider back from "no balance" has shown it takes orders again (its placements may fan out
/// once the balance allows). One statement that changes nothing in the common case.
fn accepted_placements(c: &mut impl GenericClient, provider_id: i64, cost: Option<Decimal>) -> Result<()> {
    c.execute(
        "UPDATE provider_health SET highest_cost = greatest(highest_cost, $2), back_from_no_balance = false
          WHERE provider_id = $1 AND (back_from_no_balance OR ($2::numeric IS NOT NULL AND highest_cost IS DISTINCT FROM greatest(highest_cost, $2)))",
        &[&provider_id, &cost],
    )?;
    Ok(())
}

/// The provider's health settings and the balance below which its placements go one at a time.
pub fn settings_and_cushion(c: &mut impl GenericClient, provider_id: i64) -> Result<(HealthSettings, Option<Decimal>)> {
    let row = c.query_opt(
        "SELECT p.health_settings, p.max_in_flight, h.highest_cost
           FROM providers p LEFT JOIN provider_health h ON h.provider_id = p.id WHERE p.id = $1",
        &[&provider_id],
    )?;
    let Some(r) = row else { return Ok((HealthSettings::default(), None)) };
    let settings = HealthSettings::from_json(&r.get("health_settings"));
    let cushion = health::cushion(&settings, r.get("max_in_flight"), r.get("highest_cost"));
    Ok((settings, cushion))
}

/// How placements to the provider may go out now (`domain::provider_health::pace`), with the
/// balance below which a reply makes them careful. A provider the gate holds back as a whole
/// (paused, draining, breaker not closed, unavailable) is `Free`: its placements are decided
/// without a call, and a one-at-a-time pace would only slow them on their way to the fallback.
pub fn placement_pace(c: &mut impl GenericClient, provider_id: i64) -> Result<(Pace, Option<Decimal>)> {
    let row = c.query_opt(
        &format!(
            "SELECT p.health_settings, p.max_in_flight, h.balance, h.highest_cost, h.back_from_no_balance,
                    (h.hold IS NOT NULL OR h.breaker <> {}
                     OR EXISTS (SELECT 1 FROM provider_unavailable u WHERE u.provider_id = p.id AND u.package_id = 0)) AS held
               FROM providers p JOIN provider_health h ON h.provider_id = p.id WHERE p.id = $1",
            BreakerState::Closed.sql()
        ),
        &[&provider_id],
    )?;
    let Some(r) = row else { return Ok((Pace::Free, None)) };
    let settings = HealthSettings::from_json(&r.get("health_settings"));
    let max_in_flight: i32 = r.get("max_in_flight");
    let funds = Funds {
        balance: r.get("balance"),
        highest_cost: r.get("highest_cost"),
        back_from_no_balance: r.get("back_from_no_balance"),
    };
    let cushion = health::cushion(&settings, max_in_flight, funds.highest_cost);
    if r.get::<_, bool>("held") {
        return Ok((Pace::Free, cushion));
    }
    Ok((health::pace(&funds, &settings, max_in_flight), cushion))
}

/// Calls' results for the breaker (check calls, each maybe a batch of orders, judged by
/// `domain::provider_health::check_failed`; placement calls), in the order they came. When none
/// failed, one read: a run of successes changes the breaker no more than one does.
pub fn after_calls(c: &mut impl GenericClient, provider_id: i64, failed: &[bool]) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    if !failed.contains(&true) {
        return observe(c, provider_id, false);
    }
    // The order of successes and failures decides the breaker: one call at a time.
    for f in failed {
        observe(c, provider_id, *f)?;
    }
    Ok(())
}

/// A probe's (balance call's) result for the breaker.
pub fn after_probe(c: &mut impl GenericClient, provider_id: i64, answered: bool) -> Result<()> {
    observe(c, provider_id, !answered)
}

/// One call's result for the breaker. The common case (an answer while the breaker is closed
/// and no run of failures is under way) only reads.
fn observe(c: &mut impl GenericClient, provider_id: i64, failed: bool) -> Result<()> {
    if !failed {
        let quiet = c
            .query_opt(
                &format!(
                    "SELECT 1 FROM provider_health WHERE provider_id = $1 AND breaker = {} AND failures = 0",
                    BreakerState::Closed.sql()
                ),
                &[&provider_id],
            )?
            .is_some();
        if quiet {
            return Ok(());
        }
    }
    let settings = settings(c, provider_id)?;
    observe_call(c, provider_id, failed, &settings)
}

/// The breaker after one call, decided by `domain::provider_health::after_call` under the row's lock.
pub fn observe_call(c: &mut impl GenericClient, provider_id: i64, failed: bool, settings: &HealthSettings) -> Result<()> {
    let mut tx = c.transaction()?;
    let Some(r) =
        tx.query_opt("SELECT breaker, failures FROM provider_health WHERE provider_id = $1 FOR UPDATE", &[&provider_id])?
    else {
        return Ok(());
    };
    let (before, failures): (BreakerState, i32) = (state(&r, "breaker")?, r.get("failures"));
    let (after, n, said) = health::after_call(before, failures.max(0) as u32, failed, settings);
    if after != before || n as i32 != failures {
        let closed = BreakerState::Closed;
        // `breaker_since` moves only when the breaker leaves or reaches closed (`hold_for` runs
        // from it); every opening (a first one, or a failed probe) starts a new cool-down.
        let moved = (before == closed) != (after == closed);
        let opened = after == BreakerState::Open && before != BreakerState::Open;
        tx.execute(
            "UPDATE provider_health SET breaker = $2, failures = $3,
                    breaker_since = CASE WHEN $4 THEN now() ELSE breaker_since END,
                    probe_after = CASE WHEN $7 THEN now() + make_interval(secs => $8::bigint / 1000.0) ELSE probe_after END,
                    next_call_at = CASE WHEN $2 = $5 THEN NULL ELSE now() + make_interval(secs => $6::bigint / 1000.0) END
              WHERE provider_id = $1",
            &[
                &provider_id,
                &after.as_str(),
                &(n as i32),
                &moved,
                &closed.as_str(),
                &ms(PROBE_INTERVAL),
                &opened,
                &ms(settings.breaker_cool_down),
            ],
        )?;
    }
    if let Some(message) = said {
        crate::metrics::get().breaker_changed();
        event(&mut tx, provider_id, &format!("breaker.{after}"), &message)?;
        if after == BreakerState::Closed {
            wake_waiting(&mut tx, provider_id)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// How many calls this caller may make to the provider now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// The breaker is closed: no limit of its own.
    Free,
    /// The breaker is open: this caller won the one call per [`PROBE_INTERVAL`] (across all
    /// daemons); `probe`: it is the half-open probe that decides.
    One { probe: bool },
    /// Another caller made the call of this interval.
    None,
}

/// Take the provider's call of this interval when its breaker is not closed. `probe_only`:
/// only once the cool-down is over (the periodic prober has nothing else to ask).
pub fn allowance(c: &mut impl GenericClient, provider_id: i64, probe_only: bool) -> Result<Allowance> {
    let closed = BreakerState::Closed.sql();
    let (open, half) = (BreakerState::Open.sql(), BreakerState::HalfOpen.sql());
    let r = c.query_opt(
        &format!("SELECT breaker = {closed} AS closed FROM provider_health WHERE provider_id = $1"),
        &[&provider_id],
    )?;
    if r.map(|r| r.get::<_, bool>("closed")).unwrap_or(true) {
        return Ok(Allowance::Free);
    }
    let cooled = "coalesce(probe_after, now()) <= now()";
    let won = c.query_opt(
        &format!(
            "UPDATE provider_health SET next_call_at = now() + make_interval(secs => $2::bigint / 1000.0),
                    breaker = CASE WHEN breaker = {open} AND {cooled} THEN {half} ELSE breaker END
              WHERE provider_id = $1 AND breaker <> {closed} AND (next_call_at IS NULL OR next_call_at <= now())
                AND (NOT $3 OR breaker = {half} OR {cooled})
             RETURNING breaker"
        ),
        &[&provider_id, &ms(PROBE_INTERVAL), &probe_only],
    )?;
    Ok(match won {
        Some(r) => Allowance::One { probe: state::<BreakerState>(&r, "breaker")? == BreakerState::HalfOpen },
        None => Allowance::None,
    })
}

/// The provider (package 0) or one of its products cannot take orders: placements stop (the
/// fallback, or a wait) until a balance, a probe or an operator says it is back.
pub fn mark_unavailable(
    c: &mut impl GenericClient,
    provider_id: i64,
    package_id: i64,
    cause: UnavailableCause,
    reason: &str,
) -> Result<()> {
    let n = c.execute(
        "INSERT INTO provider_unavailable (provider_id, package_id, cause, reason, balance_then)
         SELECT $1, $2, $3, $4, coalesce((SELECT balance FROM provider_health WHERE provider_id = $1), 0)
         ON CONFLICT (provider_id, package_id) DO NOTHING",
        &[&provider_id, &package_id, &cause.as_str(), &reason],
    )?;
    if n > 0 {
        let what = if package_id == 0 { "provider".to_string() } else { format!("product of package {package_id}") };
        event(
            c,
            provider_id,
            "unavailable",
            &format!("{what} unavailable ({cause}): {reason}; new orders go to the fallback or wait"),
        )?;
        // Ask again soon whether it is back.
        c.execute(
            "UPDATE provider_health SET next_probe_at = now() + make_interval(secs => coalesce(
                    (SELECT (health_settings->>'probe_every_ms')::bigint FROM providers WHERE id = $1), $2::bigint) / 1000.0)
              WHERE provider_id = $1",
            &[&provider_id, &ms(UNAVAILABLE_PROBE)],
        )?;
    }
    Ok(())
}

/// The provider is back (for these causes; None: every cause).
pub fn mark_available(
    c: &mut impl GenericClient,
    provider_id: i64,
    causes: Option<&[UnavailableCause]>,
    why: &str,
) -> Result<u64> {
    let names: Vec<&str> = causes.unwrap_or(UnavailableCause::ALL).iter().map(|c| c.as_str()).collect();
    let cleared = c.query(
        "DELETE FROM provider_unavailable WHERE provider_id = $1 AND cause = ANY($2) RETURNING cause",
        &[&provider_id, &names],
    )?;
    let n = cleared.len() as u64;
    let no_balance = UnavailableCause::NoBalance.as_str();
    if cleared.iter().any(|r| r.get::<_, &str>("cause") == no_balance) {
        // Its first placements go one at a time again (`domain::provider_health::pace`).
        c.execute("UPDATE provider_health SET back_from_no_balance = true WHERE provider_id = $1", &[&provider_id])?;
    }
    if n > 0 {
        event(c, provider_id, "available", &format!("available again: {why}"))?;
        wake_waiting(c, provider_id)?;
    }
    Ok(n)
}

/// Orders waiting for this provider look again now (it may be back): one statement, instead of
/// every waiting order polling often. Only their schedule changes; the claim's gate decides.
pub fn wake_waiting(c: &mut impl GenericClient, provider_id: i64) -> Result<u64> {
    let waiting = crate::domain::status::ExternalStatus::WaitingForProvider.sql();
    let pending = crate::domain::lifecycle::states::pending_sql("");
    Ok(c.execute(
        &format!(
            "UPDATE orders SET next_check_at = now()
              WHERE lane = $1 AND {pending} AND external_status = {waiting} AND next_check_at > now()"
        ),
        &[&provider_id],
    )?)
}

/// A balance the provider reported (a placement reply, a balance call, a profile).
pub fn record_balance(
    c: &mut impl GenericClient,
    provider_id: i64,
    name: &str,
    balance: Decimal,
    s: &HealthSettings,
    cushion: Option<Decimal>,
) -> Result<()> {
    let low = s.is_low(balance);
    // Every Znet acceptance carries the balance: one write a second per provider is enough
    // (the row is shared by every daemon), unless the balance is low, below the cushion that
    // makes placements careful (the next claim must see it), or the provider waits for one.
    let urgent = low || health::below_cushion(balance, cushion);
    let r = c.query_opt(
        &format!(
            "UPDATE provider_health h SET balance = $2, balance_at = now(), low_balance_told = $3
               FROM provider_health old WHERE h.provider_id = $1 AND old.provider_id = h.provider_id
                AND (old.balance_at IS NULL OR old.balance_at < now() - interval '1 second' OR $4 OR old.low_balance_told
                     OR EXISTS (SELECT 1 FROM provider_unavailable u WHERE u.provider_id = $1 AND u.cause = {}))
             RETURNING old.low_balance_told AS told",
            UnavailableCause::NoBalance.sql()
        ),
        &[&provider_id, &balance, &low, &urgent],
    )?;
    let Some(r) = r else { return Ok(()) };
    let told: bool = r.get("told");
    if low && !told {
        // Once per dip below the threshold.
        log::warn!(
            "provider {name}: dealer balance {balance} is below its low_balance {}; top up the dealer account",
            s.low_balance.unwrap_or_default()
        );
    }
    // Out of balance: only a balance higher than the one it ran out with (0 when none was
    // known) and above low_balance makes it available.
    let no_balance = UnavailableCause::NoBalance.sql();
    let topped_up = s.is_enough(balance)
        && c.query_opt(
            &format!(
                "SELECT 1 FROM provider_unavailable
                  WHERE provider_id = $1 AND cause = {no_balance} AND coalesce(balance_then, 0) < $2"
            ),
            &[&provider_id, &balance],
        )?
        .is_some();
    if topped_up {
        mark_available(c, provider_id, Some(&[UnavailableCause::NoBalance]), &format!("the dealer balance is {balance}"))?;
    }
    Ok(())
}

/// An operator's hold (pause, drain) or its end (None). Returns whether anything changed.
pub fn set_hold(c: &mut impl GenericClient, provider_id: i64, hold: Option<(OperatorHold, &str)>) -> Result<bool> {
    let (h, reason) = match hold {
        Some((h, r)) => (Some(h.as_str()), Some(r)),
        None => (None, None),
    };
    let n = c.execute(
        "UPDATE provider_health SET hold = $2, hold_reason = $3, hold_at = now()
          WHERE provider_id = $1 AND (hold IS DISTINCT FROM $2 OR hold_reason IS DISTINCT FROM $3)",
        &[&provider_id, &h, &reason],
    )?;
    Ok(n > 0)
}

/// `provider resume`: the hold ends, every cause is cleared and the breaker closes.
pub fn resume(c: &mut impl GenericClient, provider_id: i64) -> Result<()> {
    let mut tx = c.transaction()?;
    set_hold(&mut tx, provider_id, None)?;
    mark_available(&mut tx, provider_id, None, "resumed by an operator")?;
    let n = tx.execute(
        &format!(
            "UPDATE provider_health SET breaker = {}, failures = 0, breaker_since = now(), next_call_at = NULL
              WHERE provider_id = $1 AND breaker <> {}",
            BreakerState::Closed.sql(),
            BreakerState::Closed.sql()
        ),
        &[&provider_id],
    )?;
    if n > 0 {
        event(&mut tx, provider_id, "breaker.closed", "breaker closed by an operator (provider resume)")?;
    }
    event(&mut tx, provider_id, "resumed", "resumed by an operator: placements go out again")?;
    wake_waiting(&mut tx, provider_id)?;
    tx.commit()?;
    Ok(())
}

/// Providers whose balance is stale or that wait for a probe, claimed for this caller (every
/// daemon asks; one gets each), with when to ask next.
/// `refresh`: None while stale balances are not refreshed (a daemon's first minute, left to
/// the work), else how old a balance may grow.
pub fn claim_probes(c: &mut impl GenericClient, refresh: Option<Duration>) -> Result<Vec<i64>> {
    let closed = BreakerState::Closed.sql();
    Ok(c
        .query(
            &format!(
                "UPDATE provider_health h
                    SET next_probe_at = now() + make_interval(secs => coalesce((p.health_settings->>'probe_every_ms')::bigint, $2::bigint) / 1000.0)
                   FROM providers p
                  WHERE p.id = h.provider_id AND p.enabled
                    AND (h.next_probe_at IS NULL OR h.next_probe_at <= now())
                    AND (($1::bigint IS NOT NULL AND (h.balance_at IS NULL
                                                       OR h.balance_at < now() - make_interval(secs => $1::bigint / 1000.0)))
                         OR h.breaker <> {closed}
                         OR EXISTS (SELECT 1 FROM provider_unavailable u WHERE u.provider_id = h.provider_id))
                 RETURNING h.provider_id"
            ),
            &[&refresh.map(ms), &ms(UNAVAILABLE_PROBE)],
        )?
        .iter()
        .map(|r| r.get("provider_id"))
        .collect())
}

/// One provider's health as `provider list`, `doctor` and the metrics show it (dealer-only).
#[derive(Debug, Clone, Serialize)]
pub struct HealthRow {
    #[serde(skip)]
    pub provider_id: i64,
    #[serde(skip)]
    pub tenant: String,
    #[serde(skip)]
    pub provider: String,
    pub balance: Option<Decimal>,
    pub balance_at: Option<DateTime<Utc>>,
    pub balance_age_s: Option<i64>,
    pub low_balance: Option<Decimal>,
    pub low: bool,
    pub hold: Option<OperatorHold>,
    pub hold_reason: Option<String>,
    pub breaker: BreakerState,
    pub failures: i32,
    pub breaker_since: Option<DateTime<Utc>>,
    /// Causes the provider gave for refusing orders: "cause (package N): reason".
    pub unavailable: Vec<String>,
    pub waiting_orders: i64,
}

pub fn list(c: &mut impl GenericClient, tenant: Option<&str>) -> Result<Vec<HealthRow>> {
    let waiting = crate::domain::status::ExternalStatus::WaitingForProvider.sql();
    let pending = crate::domain::lifecycle::states::pending_sql("o.");
    let closed = BreakerState::Closed.sql();
    let rows = c.query(
        &format!(
            "SELECT p.id, t.name AS tenant, p.name AS provider, p.health_settings, h.balance, h.balance_at,
                    (extract(epoch FROM now() - h.balance_at))::bigint AS age_s, h.hold, h.hold_reason,
                    coalesce(h.breaker, {closed}) AS breaker, coalesce(h.failures, 0) AS failures, h.breaker_since,
                    (SELECT coalesce(array_agg(u.cause || CASE WHEN u.package_id = 0 THEN '' ELSE ' (package ' || u.package_id || ')' END
                                               || ': ' || u.reason ORDER BY u.package_id), '{{}}')
                       FROM provider_unavailable u WHERE u.provider_id = p.id) AS unavailable,
                    (SELECT count(*) FROM orders o WHERE o.lane = p.id AND {pending} AND o.external_status = {waiting}) AS waiting
               FROM providers p JOIN tenants t ON t.id = p.tenant_id LEFT JOIN provider_health h ON h.provider_id = p.id
              WHERE ($1::text IS NULL OR t.name = $1) AND p.retired_at IS NULL
              ORDER BY t.name, p.name"
        ),
        &[&tenant],
    )?;
    rows.iter()
        .map(|r| {
            let settings = HealthSettings::from_json(&r.get("health_settings"));
            let balance: Option<Decimal> = r.get("balance");
            Ok(HealthRow {
                provider_id: r.get("id"),
                tenant: r.get("tenant"),
                provider: r.get("provider"),
                balance,
                balance_at: r.get("balance_at"),
                balance_age_s: r.get("age_s"),
                low_balance: settings.low_balance,
                low: balance.map(|b| settings.is_low(b)).unwrap_or(false),
                hold: state_opt(r, "hold")?,
                hold_reason: r.get("hold_reason"),
                breaker: state(r, "breaker")?,
                failures: r.get("failures"),
                breaker_since: r.get("breaker_since"),
                unavailable: r.get("unavailable"),
                waiting_orders: r.get("waiting"),
            })
        })
        .collect()
}

/// The provider's latest events, newest first.
pub fn events(c: &mut impl GenericClient, provider_id: i64, limit: i64) -> Result<Vec<(DateTime<Utc>, String, String)>> {
    Ok(c.query(
        "SELECT at, kind, message FROM provider_events WHERE provider_id = $1 ORDER BY id DESC LIMIT $2",
        &[&provider_id, &limit],
    )?
    .iter()
    .map(|r| (r.get("at"), r.get("kind"), r.get("message")))
    .collect())
}
