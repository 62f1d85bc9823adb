//! The daemon's provider prober: a balance call now and then for every provider whose balance no
//! reply carried lately, whose breaker waits for its half-open probe, or that said it cannot take
//! orders (a periodic probe that makes it available again). Every daemon runs one; the database
//! hands each due provider to one of them (`db::provider_health::claim_probes`, `allowance`).

use crate::db::{self, provider_health as ph};
use crate::dispatch::Providers;
use crate::domain::lifecycle::states::UnavailableCause;
use crate::domain::provider_health::BALANCE_REFRESH;
use crate::error::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a probe's permit lasts if this process dies during the call (longer than any timeout).
const PERMIT_TTL: Duration = Duration::from_secs(120);

/// A daemon that has just started leaves its providers' permits to the work this long before
/// it refreshes stale balances (probes of unavailable providers and breakers start at once).
const REFRESH_AFTER_START: Duration = Duration::from_secs(60);

pub fn start(url: String, providers: Providers, tenant: Option<i64>, stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("prober".into()).spawn(move || {
        let started = std::time::Instant::now();
        let mut client = None;
        while !stop.load(Ordering::SeqCst) {
            if client.is_none() {
                client = db::connect(&url).ok();
            }
            if let Some(c) = client.as_mut() {
                let refresh = (started.elapsed() >= REFRESH_AFTER_START).then_some(BALANCE_REFRESH);
                if let Err(e) = round(c, &providers, tenant, refresh) {
                    log::debug!("prober: {}", e.message);
                    client = None;
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
}

/// One look: the breakers' half-open probes, then stale balances and unavailable providers.
fn round(c: &mut db::Client, providers: &Providers, tenant: Option<i64>, refresh: Option<Duration>) -> Result<()> {
    let ids = db::providers::lane_ids(c, tenant)?;
    for id in &ids {
        if let ph::Allowance::One { probe: true } = ph::allowance(c, *id, true)? {
            probe(c, providers, *id)?;
        }
    }
    for id in ph::claim_probes(c, refresh)?.into_iter().filter(|id| ids.contains(id)) {
        // A provider whose breaker is open is asked only through its half-open probe above.
        if ph::allowance(c, id, true)? == ph::Allowance::Free {
            probe(c, providers, id)?;
        }
    }
    Ok(())
}

/// A balance call: its answer is the known balance (and may end a "no balance"), any usable
/// answer ends maintenance and product causes (the next placement tells), and the breaker counts it.
fn probe(c: &mut db::Client, providers: &Providers, id: i64) -> Result<()> {
    let lp = providers.get(c, id)?;
    let Ok(adapter) = &lp.adapter else { return Ok(()) };
    // A probe is a call like any other: it takes one of the provider's `max_in_flight` permits
    // (none free: the lanes are busy with calls that tell the same, so it is skipped).
    let holder = db::permits::this_process();
    let Some(slot) = db::permits::acquire(c, id, holder, 1, PERMIT_TTL)?.pop() else { return Ok(()) };
    let answer = adapter.balance();
    db::permits::release(c, id, holder, &[slot])?;
    ph::after_probe(c, id, answer.is_ok())?;
    match answer {
        Ok(b) => {
            if let Ok(amount) = b.balance.trim().parse() {
                let (settings, cushion) = ph::settings_and_cushion(c, id)?;
                ph::record_balance(c, id, &lp.name, amount, &settings, cushion)?;
            }
            let causes = [UnavailableCause::Maintenance, UnavailableCause::ProductUnavailable];
            ph::mark_available(c, id, Some(&causes), "a probe (balance call) was answered")?;
        }
        Err(e) => log::info!("provider {}: balance probe failed: {e}", lp.name),
    }
    Ok(())
}
