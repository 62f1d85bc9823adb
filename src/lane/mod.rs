//! Lanes: the work of one provider, claimed, called and written back on its own, so a provider
//! that answers slowly (or not at all) never delays another's placements, checks or
//! write-backs. The work that needs no HTTP has lanes of its own: routing (`routing.rs`: new
//! orders, code stock, manual routing, forwarding to another tenant) and the batch safety sweep
//! (`sweep.rs`).
//!
//! Inside a provider lane (`provider.rs`) three parts overlap:
//! - the claimer claims due work as call slots free up (it never waits for a call);
//! - callers make the calls, no more at once than the lane holds permits for
//!   (`permits.rs`: the provider's `max_in_flight`, held in Postgres across every process);
//!   while the provider's placements are careful (`domain::provider_health::pace`: its balance
//!   no longer covers what they could spend), the claimer takes one placement at a time under
//!   the provider's careful permit, which the write of its answer gives back; checks go on;
//! - the writer writes results back in batches (by size, or after a few milliseconds,
//!   whichever comes first), each guarded by its lease (`writer.rs`).
//!
//! Postgres stays the only coordinator: claims with `SKIP LOCKED` and leases, permits in a
//! table. Any number of daemons (and cron sweeps) share the work safely.

mod permits;
pub mod provider;
pub mod routing;
pub mod sweep;
pub mod webhooks;
mod writer;

use crate::dispatch::Timing;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How lanes work, resolved once.
#[derive(Debug, Clone)]
pub struct LaneSettings {
    pub database_url: String,
    pub timing: Timing,
    /// Provider calls in flight at once from this process, per provider lane.
    pub capacity: usize,
    pub tenant: Option<i64>,
    /// A drain (`orderctl sweep`): checks due by this moment, then stop when nothing is left.
    /// None: run until stopped (the daemon).
    pub drain: Option<DateTime<Utc>>,
    /// How long an idle lane waits before looking again when nothing wakes it.
    pub idle_poll: Duration,
    /// Who holds permits: host, process and a random part.
    pub holder: String,
    /// Results written back per transaction, at most.
    pub write_batch: usize,
    /// How long the writer waits for more results before it writes what it has.
    pub write_delay: Duration,
}

impl LaneSettings {
    /// A holder of its own for these lanes' permits and periodic runs.
    pub fn holder() -> String {
        crate::db::permits::new_holder()
    }
}

/// Milliseconds since a process-wide start, for heartbeats (monotonic; never 0, which means
/// "never beat").
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// What a lane reports about itself: heartbeats of its parts and its oldest call in flight,
/// for the supervisor (the systemd watchdog, `/healthz`) and for metrics.
#[derive(Default)]
pub struct Progress {
    claimer: AtomicU64,
    writer: AtomicU64,
    /// Start of each call in flight (ms), by caller slot.
    calls: Mutex<HashMap<usize, u64>>,
    pub claimed: AtomicU64,
    pub calls_made: AtomicU64,
    pub written: AtomicU64,
    pub stale: AtomicU64,
    /// Written results by what they were.
    pub placements: AtomicU64,
    pub checks: AtomicU64,
    pub approved: AtomicU64,
    pub rejected: AtomicU64,
    pub flagged: AtomicU64,
}

/// What lanes did, summed (for `sweep`'s report and the daemon's log).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkReport {
    pub claimed: u64,
    pub provider_calls: u64,
    pub placements: u64,
    pub checks: u64,
    pub approved: u64,
    pub rejected: u64,
    /// Orders flagged for an operator.
    pub flagged: u64,
    /// Results dropped because another worker owned the order by then.
    pub stale_dropped: u64,
}

impl WorkReport {
    pub fn of(p: &Progress) -> WorkReport {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkReport {
            claimed: g(&p.claimed),
            provider_calls: g(&p.calls_made),
            placements: g(&p.placements),
            checks: g(&p.checks),
            approved: g(&p.approved),
            rejected: g(&p.rejected),
            flagged: g(&p.flagged),
            stale_dropped: g(&p.stale),
        }
    }
    pub fn add(&mut self, o: &WorkReport) {
        self.claimed += o.claimed;
        self.provider_calls += o.provider_calls;
        self.placements += o.placements;
        self.checks += o.checks;
        self.approved += o.approved;
        self.rejected += o.rejected;
        self.flagged += o.flagged;
        self.stale_dropped += o.stale_dropped;
    }
    /// The difference since `before` (counters only grow).
    pub fn since(&self, before: &WorkReport) -> WorkReport {
        WorkReport {
            claimed: self.claimed - before.claimed,
            provider_calls: self.provider_calls - before.provider_calls,
            placements: self.placements - before.placements,
            checks: self.checks - before.checks,
            approved: self.approved - before.approved,
            rejected: self.rejected - before.rejected,
            flagged: self.flagged - before.flagged,
            stale_dropped: self.stale_dropped - before.stale_dropped,
        }
    }
}

impl Progress {
    pub fn beat_claimer(&self) {
        self.claimer.store(now_ms(), Ordering::Relaxed);
    }
    pub fn beat_writer(&self) {
        self.writer.store(now_ms(), Ordering::Relaxed);
    }
    fn call_started(&self, slot: usize) {
        self.calls.lock().unwrap().insert(slot, now_ms());
    }
    fn call_ended(&self, slot: usize) {
        self.calls.lock().unwrap().remove(&slot);
    }

    /// Why the lane is not making progress, if it is not: a part that has not looped for
    /// `stall`, or a call in flight longer than `call_bound` (the request timeout ends every
    /// call well before that).
    pub fn stalled(&self, stall: Duration, call_bound: Duration) -> Option<String> {
        let now = now_ms();
        let age = |t: u64| Duration::from_millis(now.saturating_sub(t));
        for (part, beat) in [("claimer", &self.claimer), ("writer", &self.writer)] {
            let t = beat.load(Ordering::Relaxed);
            if t != 0 && age(t) > stall {
                return Some(format!(
                    "its {part} has not moved for {}",
                    humantime::format_duration(Duration::from_secs(age(t).as_secs()))
                ));
            }
        }
        let oldest = self.calls.lock().unwrap().values().min().copied();
        match oldest {
            Some(t) if age(t) > call_bound => Some(format!(
                "a provider call has been in flight for {}",
                humantime::format_duration(Duration::from_secs(age(t).as_secs()))
            )),
            _ => None,
        }
    }
}

/// Stop and wake-up signals of one lane.
#[derive(Default)]
pub struct LaneControl {
    stop: AtomicBool,
    woken: Mutex<bool>,
    cond: Condvar,
    /// Why the lane gave up (a sweep's lane after `SWEEP_TRIES` errors in a row).
    failure: Mutex<Option<crate::error::Error>>,
    /// The oldest schedule of work a wake-up announced since the last claim: a transaction that
    /// ran longer than the claim floor's grace (a shop's insert, a long write-back) may have
    /// written it below the floor (`claims::ClaimFloor::lower`).
    due_from: Mutex<Option<DateTime<Utc>>>,
    pub progress: Progress,
}

impl LaneControl {
    pub fn new() -> Arc<LaneControl> {
        Arc::new(LaneControl::default())
    }
    /// Stop claiming; what is in flight finishes and is written back.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Give up: the lane stops, and `failure` says why.
    fn fail(&self, e: crate::error::Error) {
        *self.failure.lock().unwrap() = Some(e);
        self.stop();
    }
    fn failure(&self) -> Option<crate::error::Error> {
        self.failure.lock().unwrap().clone()
    }
    /// Work scheduled as early as `at` was committed: look now, and from there.
    pub fn wake_from(&self, at: DateTime<Utc>) {
        let mut from = self.due_from.lock().unwrap();
        *from = Some(from.map_or(at, |f| f.min(at)));
        drop(from);
        self.wake();
    }
    /// What `wake_from` announced since the last call.
    fn take_due_from(&self) -> Option<DateTime<Utc>> {
        self.due_from.lock().unwrap().take()
    }
    /// There may be new work: look now instead of after the idle poll.
    pub fn wake(&self) {
        *self.woken.lock().unwrap() = true;
        self.cond.notify_all();
    }
    /// Wait until woken or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let guard = self.woken.lock().unwrap();
        let (mut guard, _) = self.cond.wait_timeout_while(guard, timeout, |woken| !*woken).unwrap();
        *guard = false;
    }
}

/// Claims in a row refused because an order moved under them that a lane retries at once.
const MOVED_QUIETLY: u32 = 3;

/// Tries in a row after which a sweep's lane gives up.
const SWEEP_TRIES: u32 = 3;

/// Errors in a row in one lane, and what they mean. A daemon retries as long as it runs (an
/// outage ends), waiting longer each time; an error other than a lost database also stops the
/// lane's heartbeat, so `/healthz` and the systemd watchdog report the lane instead of it
/// failing quietly forever. A sweep gives up after `SWEEP_TRIES` in a row: `orderctl sweep`
/// ends with the error, it never hangs.
#[derive(Default)]
struct Failures {
    in_a_row: u32,
    /// The last error was not a lost database.
    broken: bool,
}

impl Failures {
    fn ok(&mut self) {
        *self = Failures::default();
    }
    /// Count `e`: how long to wait before the next try, or None to give up (a sweep).
    fn failed(&mut self, e: &crate::error::Error, draining: bool) -> Option<Duration> {
        self.in_a_row += 1;
        self.broken = e.kind != crate::error::ErrorKind::DatabaseUnavailable;
        if draining && self.in_a_row >= SWEEP_TRIES {
            return None;
        }
        Some((Duration::from_millis(100) * 2u32.pow(self.in_a_row.min(6))).min(Duration::from_secs(5)))
    }
    /// Whether the lane may tell the supervisor it is well.
    fn may_beat(&self) -> bool {
        !self.broken
    }
    /// The database was lost and the lane is trying again.
    fn after_outage(&self) -> bool {
        self.in_a_row > 0 && !self.broken
    }

    /// The lane's connection: the one it has, or a new one (a failure to connect counts like
    /// any other error, and a reconnection after an outage is logged).
    fn connection<'a>(
        &mut self,
        conn: &'a mut Option<crate::db::Client>,
        url: &str,
        who: &str,
        control: &LaneControl,
        draining: bool,
    ) -> Connection<'a> {
        if conn.is_none() {
            match crate::db::connect(url) {
                Ok(c) => {
                    if self.after_outage() {
                        log::warn!("{who}: reconnected to the database; carrying on");
                    }
                    *conn = Some(c);
                }
                Err(e) => {
                    return if self.retry(who, control, e, draining) { Connection::Again } else { Connection::GiveUp };
                }
            }
        }
        Connection::Ready(conn.as_mut().expect("connected above"))
    }

    /// Log `e` for the lane `who` and wait before the next try; false: give up (a sweep, after
    /// its tries), with the error on the lane's control for `drain` to report.
    fn retry(&mut self, who: &str, control: &LaneControl, e: crate::error::Error, draining: bool) -> bool {
        // An order finished between a claim's snapshot and its lock (the row moved to its
        // month's partition): the next claim does not see it. Quiet for a few in a row, then an
        // error like any other.
        if e.moved_concurrently() && self.in_a_row < MOVED_QUIETLY {
            self.in_a_row += 1;
            log::debug!("{who}: {}; claiming again", e.message);
            return true;
        }
        let hint = e.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default();
        match self.failed(&e, draining) {
            Some(wait) => {
                let retry = format!("retrying in {}", humantime::format_duration(wait));
                if e.kind == crate::error::ErrorKind::DatabaseUnavailable {
                    log::warn!("{who}: database unavailable ({}); {retry}", e.message);
                } else {
                    log::error!("{who}: {}{hint}; {retry}", e.message);
                }
                control.wait(wait);
                true
            }
            None => {
                log::error!("{who}: {}{hint}; giving up after {} tries in a row", e.message, self.in_a_row);
                control.fail(e);
                false
            }
        }
    }
}

/// What `Failures::connection` found.
enum Connection<'a> {
    Ready(&'a mut crate::db::Client),
    /// Not connected; the wait before the next try is over.
    Again,
    /// Not connected, and a sweep's tries are used up (the control says why).
    GiveUp,
}

/// Wakes lanes by lane id (a transition that makes another lane's work due now, a LISTEN
/// notification). Lanes of other processes find the work by polling.
#[derive(Clone, Default)]
pub struct Wakers(Arc<Mutex<HashMap<i64, Arc<LaneControl>>>>);

impl Wakers {
    pub fn register(&self, lane: i64, control: Arc<LaneControl>) {
        self.0.lock().unwrap().insert(lane, control);
    }
    pub fn wake(&self, lane: i64) {
        if let Some(c) = self.0.lock().unwrap().get(&lane) {
            c.wake();
        }
    }
    /// Wake `lane` for work scheduled as early as `at` (`LaneControl::wake_from`).
    pub fn wake_from(&self, lane: i64, at: DateTime<Utc>) {
        if let Some(c) = self.0.lock().unwrap().get(&lane) {
            c.wake_from(at);
        }
    }
    pub fn all(&self) -> Vec<(i64, Arc<LaneControl>)> {
        self.0.lock().unwrap().iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// A counting semaphore whose size can change (the permits a lane holds).
#[derive(Default)]
struct Slots {
    state: Mutex<(usize, usize)>,
    cond: Condvar,
}

impl Slots {
    fn set_limit(&self, limit: usize) {
        self.state.lock().unwrap().0 = limit;
        self.cond.notify_all();
    }
    fn in_use(&self) -> usize {
        self.state.lock().unwrap().1
    }
    /// Take a slot, waiting at most `timeout`.
    fn take(&self, timeout: Duration) -> bool {
        let guard = self.state.lock().unwrap();
        let (mut guard, r) = self.cond.wait_timeout_while(guard, timeout, |(limit, used)| *used >= *limit).unwrap();
        if r.timed_out() && guard.1 >= guard.0 {
            return false;
        }
        guard.1 += 1;
        true
    }
    fn give(&self) {
        let mut guard = self.state.lock().unwrap();
        guard.1 = guard.1.saturating_sub(1);
        self.cond.notify_all();
    }
}

/// Claimed work not yet written back, with a wake-up when it goes down.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    lock: Mutex<()>,
    cond: Condvar,
}

impl Outstanding {
    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }
    fn done(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::SeqCst);
        let _g = self.lock.lock().unwrap();
        self.cond.notify_all();
    }
    fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    /// Wait until it is below `n` or `timeout` passes.
    fn wait_below(&self, n: usize, timeout: Duration) {
        let g = self.lock.lock().unwrap();
        let _ = self.cond.wait_timeout_while(g, timeout, |_| self.get() >= n).unwrap();
    }
}

/// A lane a drain could not finish: the error that stopped it.
#[derive(Debug, Clone)]
pub struct LaneFailure {
    /// "routing", or the provider's lane id.
    pub lane: i64,
    pub error: crate::error::Error,
}

/// What a drain did: the work of every lane, and the lanes that failed (the others ran on).
#[derive(Debug, Default)]
pub struct Drained {
    pub work: WorkReport,
    pub failed: Vec<LaneFailure>,
}

/// Run every lane until the work due is done (`orderctl sweep`): the routing lane first, then
/// every provider's lane at once (a slow provider delays only its own orders), and again while
/// one lane's results made work due in another (a fallback), until `deadline`. A lane that
/// fails is reported and not run again in this drain; every other lane still runs.
pub fn drain(
    settings: &LaneSettings,
    providers: &crate::dispatch::Providers,
    deadline: Instant,
) -> crate::error::Result<Drained> {
    let mut out = Drained::default();
    let mut client = crate::db::connect(&settings.database_url)?;
    let failed = |out: &Drained, lane: i64| out.failed.iter().any(|f| f.lane == lane);
    while Instant::now() < deadline {
        let wakers = Wakers::default();
        if !failed(&out, 0) {
            let routing = LaneControl::new();
            routing::run(settings.clone(), routing.clone(), wakers.clone());
            out.work.add(&WorkReport::of(&routing.progress));
            if let Some(error) = routing.failure() {
                log::error!("routing lane failed: {}; the provider lanes run on", error.message);
                out.failed.push(LaneFailure { lane: 0, error });
            }
        }
        let lanes: Vec<i64> = crate::db::claims::lanes_with_work(&mut client, settings.tenant, settings.drain)?
            .into_iter()
            .filter(|l| !failed(&out, *l))
            .collect();
        if lanes.is_empty() {
            break;
        }
        let grace = settings.timing.request_timeout * 2;
        let controls: Vec<_> = lanes
            .iter()
            .map(|&id| {
                let control = LaneControl::new();
                wakers.register(id, control.clone());
                (id, control)
            })
            .collect();
        std::thread::scope(|scope| {
            let lanes: Vec<_> = controls
                .iter()
                .map(|(id, control)| {
                    let (providers, settings, wakers, control) =
                        (providers.clone(), settings.clone(), wakers.clone(), control.clone());
                    let id = *id;
                    scope.spawn(move || provider::run(id, providers, settings, control, wakers, grace))
                })
                .collect();
            // The sweep's time is up: lanes stop claiming, finish what they hold, and return.
            while !lanes.iter().all(|l| l.is_finished()) {
                if Instant::now() >= deadline {
                    controls.iter().for_each(|(_, c)| c.stop());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        for (id, c) in &controls {
            out.work.add(&WorkReport::of(&c.progress));
            if let Some(error) = c.failure() {
                log::error!("provider lane {id} failed: {}; the other lanes ran on", error.message);
                out.failed.push(LaneFailure { lane: *id, error });
            }
        }
    }
    Ok(out)
}

/// Lanes running in the background of one process (the demo): the routing lane and one lane
/// per provider given, until `stop`.
pub struct Pool {
    wakers: Wakers,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn start(settings: &LaneSettings, providers: &crate::dispatch::Providers, provider_ids: &[i64], grace: Duration) -> Pool {
        let wakers = Wakers::default();
        let mut threads = Vec::new();
        let routing_control = LaneControl::new();
        wakers.register(0, routing_control.clone());
        let (s, w) = (settings.clone(), wakers.clone());
        threads.push(std::thread::spawn(move || routing::run(s, routing_control, w)));
        for &id in provider_ids {
            let control = LaneControl::new();
            wakers.register(id, control.clone());
            let (p, s, w) = (providers.clone(), settings.clone(), wakers.clone());
            threads.push(std::thread::spawn(move || provider::run(id, p, s, control, w, grace)));
        }
        Pool { wakers, threads }
    }

    /// Stop claiming, let what is in flight finish, and wait for every lane.
    pub fn stop(self) {
        for (_, c) in self.wakers.all() {
            c.stop();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

impl LaneSettings {
    /// The lanes' settings of this process.
    pub fn new(
        work: &crate::settings::WorkSettings,
        s: &crate::settings::Settings,
        tenant: Option<i64>,
        drain: Option<DateTime<Utc>>,
        idle_poll: Duration,
    ) -> LaneSettings {
        LaneSettings {
            database_url: s.database_url.clone(),
            timing: Timing { lease: work.lease, request_timeout: s.http.request_timeout },
            capacity: work.concurrency,
            tenant,
            drain,
            idle_poll,
            holder: LaneSettings::holder(),
            write_batch: work.round_size as usize,
            write_delay: Duration::from_millis(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_lane_retries_for_ever_a_sweep_lane_gives_up_and_only_outages_keep_the_heartbeat() {
        use crate::error::{Error, ErrorKind};
        let outage = Error::new(ErrorKind::DatabaseUnavailable, "lost");
        let broken = Error::new(ErrorKind::Refused, "column does not exist");
        let mut f = Failures::default();
        let waits: Vec<_> = (0..50).map(|_| f.failed(&outage, false)).collect();
        assert!(waits.iter().all(Option::is_some), "a daemon never gives up");
        assert_eq!(waits.last().unwrap().unwrap(), Duration::from_secs(5), "waits are capped");
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "and grow");
        assert!(f.may_beat() && f.after_outage(), "an outage keeps the heartbeat");
        f.failed(&broken, false);
        assert!(!f.may_beat(), "an error that is not an outage stops it: /healthz and the watchdog see it");
        f.ok();
        assert!(f.may_beat() && !f.after_outage());
        let mut s = Failures::default();
        assert!(s.failed(&broken, true).is_some() && s.failed(&broken, true).is_some());
        assert!(s.failed(&broken, true).is_none(), "a sweep gives up at its third error in a row");
    }

    #[test]
    fn a_lane_part_that_stops_looping_or_a_call_that_never_ends_is_stalled() {
        let p = Progress::default();
        assert_eq!(p.stalled(Duration::ZERO, Duration::ZERO), None, "a part that never beat yet is not stalled");
        p.beat_claimer();
        p.beat_writer();
        assert_eq!(p.stalled(Duration::from_secs(60), Duration::from_secs(60)), None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(p.stalled(Duration::from_millis(1), Duration::from_secs(60)).unwrap().contains("claimer"));
        p.call_started(3);
        std::thread::sleep(Duration::from_millis(5));
        assert!(p.stalled(Duration::from_secs(60), Duration::from_millis(1)).unwrap().contains("provider call"));
        p.call_ended(3);
        assert_eq!(p.stalled(Duration::from_secs(60), Duration::from_millis(1)), None);
    }

    #[test]
    fn calls_never_outnumber_the_permits_held() {
        let s = Slots::default();
        s.set_limit(1);
        assert!(s.take(Duration::ZERO));
        assert!(!s.take(Duration::from_millis(1)), "one slot only");
        s.give();
        assert!(s.take(Duration::ZERO));
    }
}
