//! The daemon: when work runs, and who watches over it. The work itself is the lanes'.
//!
//! - One lane per provider (started as providers appear), and the routing lane, each on its
//!   own threads with its own connections (`lane`). A slow provider holds up only its lane.
//! - New orders wake their lane (LISTEN, a hint only: lanes also poll, so a connection pooler
//!   that drops LISTEN costs latency, never an order).
//! - The batch safety sweep fires on `--sweep-schedule` via tokio-cron-scheduler (`schedule`
//!   validates the expression); the cron job only raises a flag and the supervisor runs the
//!   sweep, so it never overlaps itself here, and the database deduplicates it across hosts.
//! - The supervisor pings the systemd watchdog only while every lane makes progress (a lane
//!   stuck past its bound stops the pings, and systemd restarts the daemon).
//! - The webhook lane delivers the shops' webhooks on its own thread and connection, so a slow
//!   endpoint never delays an order (`lane::webhooks`).
//! - With `--metrics-listen`, `/metrics` and `/healthz` are served (`health`); the supervisor
//!   refreshes the gauges that need SQL every few seconds.
//! - SIGTERM/SIGINT: every lane stops claiming at once; calls in flight get `--shutdown-grace`
//!   to come back; what came back is written; exit 0. What did not come back is left to
//!   reconciliation (its order comes due again after its lease).

pub mod health;
mod prober;
pub mod schedule;

use crate::db;
use crate::dispatch::Providers;
use crate::error::{Error, ErrorKind, Result};
use crate::lane::sweep::{self as safety, SafetySweepSettings};
use crate::lane::webhooks::WebhookSettings;
use crate::lane::{self, LaneControl, LaneSettings, Wakers, WorkReport};
use chrono::Utc;
use postgres::fallible_iterator::FallibleIterator;
use schedule::SweepSchedule;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct DaemonSettings {
    pub lanes: LaneSettings,
    pub providers: Providers,
    pub schedule: SweepSchedule,
    pub safety_sweep: SafetySweepSettings,
    pub shutdown_grace: Duration,
    pub webhooks: WebhookSettings,
    /// Whether `/metrics` is served (the gauges are refreshed only then).
    pub metrics_served: bool,
    /// Where `/metrics` and `/healthz` are served, bound at start (None: not served).
    pub metrics: Option<std::net::TcpListener>,
    /// Where LISTEN connects (None: no wake-ups, the lanes poll).
    pub listen_url: Option<String>,
}

/// Look for new providers this often.
const LANE_SCAN: Duration = Duration::from_secs(5);
/// A lane part that has not looped for this long is stuck.
const STALL: Duration = Duration::from_secs(15);
/// How often the gauges that need SQL are refreshed (a few cheap, indexed queries).
const GAUGES: Duration = Duration::from_secs(5);

struct Running {
    control: Arc<LaneControl>,
    thread: JoinHandle<()>,
}

/// Everything the supervisor and the health endpoint share.
pub struct Supervision {
    pub stop: Arc<AtomicBool>,
    pub wakers: Wakers,
    /// When the cron job last fired (ms since epoch), 0 when it has not: the sweep's slot.
    sweep_fired_ms: AtomicI64,
    sweep_requested: AtomicBool,
    /// Why the daemon is not healthy, if it is not (updated by the supervisor).
    pub unhealthy: std::sync::Mutex<Option<String>>,
    /// Why the database did not answer last time (for `/healthz`); None: it did.
    pub database_error: std::sync::Mutex<Option<String>>,
    /// Set by SIGHUP (`systemctl reload`): credential references are to be resolved again.
    reload: Arc<AtomicBool>,
}

impl Supervision {
    fn database(&self, result: std::result::Result<(), String>) {
        *self.database_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err();
    }
}

pub fn run(mut settings: DaemonSettings) -> Result<()> {
    let sup = Arc::new(Supervision {
        stop: Arc::new(AtomicBool::new(false)),
        wakers: Wakers::default(),
        sweep_fired_ms: AtomicI64::new(0),
        sweep_requested: AtomicBool::new(false),
        unhealthy: std::sync::Mutex::new(None),
        database_error: std::sync::Mutex::new(Some("not connected yet".into())),
        reload: Arc::new(AtomicBool::new(false)),
    });
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, sup.stop.clone())
            .map_err(|e| Error::internal(format!("cannot install signal handler: {e}")))?;
    }
    // SIGHUP (systemctl reload): credential references (provider credentials, webhook
    // secrets) are resolved again; between reloads each keeps the value first read.
    signal_hook::flag::register(signal_hook::consts::SIGHUP, sup.reload.clone())
        .map_err(|e| Error::internal(format!("cannot install signal handler: {e}")))?;
    // Served from the start: while the database is awaited, /healthz says so.
    if let Some(listener) = settings.metrics.take() {
        health::serve(listener, sup.clone());
    }
    // A URL that cannot work will not start working: say so and stop (exit 4). An unreachable
    // database is waited for.
    let mut client = connect_or_wait(&settings.lanes.database_url, &sup)?;
    let Some(c) = client.as_mut() else { return Ok(()) };
    sup.database(Ok(()));
    log::info!("connected; working (lanes of up to {} calls in flight each)", settings.lanes.capacity);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("orderctl-cron")
        .build()
        .map_err(|e| Error::internal(format!("cannot start the scheduler runtime: {e}")))?;
    let mut scheduler = runtime.block_on(start_scheduler(&settings.schedule.expression, sup.clone()))?;
    log::info!(
        "batch safety sweep scheduled by '{}' (UTC); next at {}",
        settings.schedule.expression,
        settings.schedule.next_after(Utc::now()).map(|t| t.to_rfc3339()).unwrap_or_default()
    );
    if let Some(url) = &settings.listen_url {
        start_listener(url, sup.clone());
    }

    prober::start(settings.lanes.database_url.clone(), settings.providers.clone(), settings.lanes.tenant, sup.stop.clone());
    let mut lanes: HashMap<i64, Running> = HashMap::new();
    lanes.insert(0, start_routing_lane(&settings, &sup));
    let webhooks = start_webhook_lane(&settings);
    supervise(&settings, &sup, c, &mut lanes, &webhooks);

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    log::info!(
        "stopping: no new claims; calls in flight get up to {} to come back, placements not sent yet are handed back",
        humantime::format_duration(settings.shutdown_grace)
    );
    for r in lanes.values().chain([&webhooks]) {
        r.control.stop();
    }
    for (_, r) in lanes {
        let _ = r.thread.join();
    }
    let _ = webhooks.thread.join();
    runtime.block_on(async {
        let _ = scheduler.shutdown().await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    log::info!("stopped");
    Ok(())
}

/// Connect, waiting while the database is unreachable (and stopping on a signal). None: stopped.
fn connect_or_wait(url: &str, sup: &Supervision) -> Result<Option<crate::db::Client>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match db::connect(url) {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.kind == ErrorKind::InvalidInput => return Err(e),
            Err(e) => {
                sup.database(Err(e.message.clone()));
                log::warn!("database unavailable: {} (retrying in {})", e.message, humantime::format_duration(backoff));
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if sup.stop.load(Ordering::SeqCst) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn start_routing_lane(settings: &DaemonSettings, sup: &Supervision) -> Running {
    let control = LaneControl::new();
    sup.wakers.register(0, control.clone());
    let (s, c, w) = (settings.lanes.clone(), control.clone(), sup.wakers.clone());
    let thread = std::thread::Builder::new()
        .name("lane-routing".into())
        .spawn(move || lane::routing::run(s, c, w))
        .expect("start a thread");
    Running { control, thread }
}

fn start_webhook_lane(settings: &DaemonSettings) -> Running {
    let control = LaneControl::new();
    let (s, c) = (settings.webhooks.clone(), control.clone());
    let thread = std::thread::Builder::new()
        .name("lane-webhooks".into())
        .spawn(move || {
            // A daemon's lane never gives up (it retries as long as the daemon runs).
            let _ = lane::webhooks::run(s, c, None);
        })
        .expect("start a thread");
    Running { control, thread }
}

fn start_provider_lane(id: i64, settings: &DaemonSettings, sup: &Supervision) -> Running {
    let control = LaneControl::new();
    sup.wakers.register(id, control.clone());
    let (p, s, c, w, grace) =
        (settings.providers.clone(), settings.lanes.clone(), control.clone(), sup.wakers.clone(), settings.shutdown_grace);
    let thread = std::thread::Builder::new()
        .name(format!("lane-{id}"))
        .spawn(move || lane::provider::run(id, p, s, c, w, grace))
        .expect("start a thread");
    log::info!("lane of provider {id} started");
    Running { control, thread }
}

/// The supervisor: lanes for new providers, the safety sweep when cron says, the watchdog
/// while every lane makes progress, a summary now and then. Returns on a signal.
fn supervise(
    settings: &DaemonSettings,
    sup: &Arc<Supervision>,
    client: &mut crate::db::Client,
    lanes: &mut HashMap<i64, Running>,
    webhooks: &Running,
) {
    let watchdog = sd_notify::watchdog_enabled();
    let call_bound = settings.lanes.timing.request_timeout + Duration::from_secs(5);
    if let Some(w) = watchdog {
        if w <= call_bound + Duration::from_secs(5) {
            log::warn!(
                "WatchdogSec ({}) is not comfortably longer than --request-timeout + 5s ({}): a slow call could look like a stuck lane",
                humantime::format_duration(w),
                humantime::format_duration(call_bound)
            );
        }
    }
    let mut last_ping = Instant::now();
    let mut last_scan: Option<Instant> = None;
    let mut last_summary = Instant::now();
    let mut last_gauges: Option<Instant> = None;
    let mut reported = WorkReport::default();
    while !sup.stop.load(Ordering::SeqCst) {
        if last_scan.map(|t| t.elapsed() >= LANE_SCAN).unwrap_or(true) {
            last_scan = Some(Instant::now());
            let conn_ok: std::result::Result<(), String> = match db::providers::lane_ids(client, settings.lanes.tenant) {
                Ok(ids) => {
                    for id in ids {
                        lanes.entry(id).or_insert_with(|| start_provider_lane(id, settings, sup));
                    }
                    Ok(())
                }
                Err(e) => {
                    log::warn!("supervisor: {}", e.message);
                    if let Ok(c) = db::connect(&settings.lanes.database_url) {
                        *client = c;
                    }
                    Err(e.message)
                }
            };
            sup.database(conn_ok);
        }
        if settings.metrics_served && last_gauges.map(|t| t.elapsed() >= GAUGES).unwrap_or(true) {
            last_gauges = Some(Instant::now());
            refresh_gauges(client, settings.lanes.tenant);
        }
        if sup.reload.swap(false, Ordering::SeqCst) {
            reload_credentials(settings, client);
        }
        if sup.sweep_requested.swap(false, Ordering::SeqCst) {
            run_safety_sweep(settings, sup, client);
        }
        let trouble = lanes
            .iter()
            .find_map(|(id, r)| r.control.progress.stalled(STALL, call_bound).map(|why| format!("lane {id}: {why}")))
            .or_else(|| {
                let bound = settings.webhooks.stall_bound();
                webhooks.control.progress.stalled(bound, bound).map(|why| format!("webhook lane: {why}"))
            });
        if let Some(why) = &trouble {
            if sup.unhealthy.lock().unwrap().is_none() {
                log::error!("{why}; the systemd watchdog is no longer told all is well");
            }
        }
        *sup.unhealthy.lock().unwrap() = trouble.clone();
        if let Some(interval) = watchdog {
            if trouble.is_none() && last_ping.elapsed() >= interval / 2 {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                last_ping = Instant::now();
            }
        }
        if last_summary.elapsed() >= Duration::from_secs(60) {
            let mut now = WorkReport::default();
            for r in lanes.values() {
                now.add(&WorkReport::of(&r.control.progress));
            }
            let d = now.since(&reported);
            if d.claimed > 0 {
                log::info!(
                    "last minute: {} placements, {} checks, {} approved, {} rejected, {} flagged for an operator, {} stale results dropped",
                    d.placements, d.checks, d.approved, d.rejected, d.flagged, d.stale_dropped
                );
            }
            reported = now;
            last_summary = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the metrics read from the database: known tenants and providers (their series at 0),
/// order outcome totals, the due backlog, orders needing an operator, webhook backlogs. A failure leaves the last values (the health check reports the database).
fn refresh_gauges(client: &mut crate::db::Client, tenant: Option<i64>) {
    let m = crate::metrics::get();
    let tenants = match db::stats::metric_gauges(client, tenant) {
        Ok(g) => {
            m.set_from_database(&g);
            g.tenants
        }
        Err(e) => {
            log::debug!("metrics gauges not refreshed: {}", e.message);
            return;
        }
    };
    match db::providers::credential_states(client, tenant) {
        Ok(states) => m.set_credentials_unresolved(&states),
        Err(e) => log::debug!("credential gauges not refreshed: {}", e.message),
    }
    match db::webhooks::secret_states(client, tenant) {
        Ok(states) => {
            let mut unresolved: HashMap<String, i64> = HashMap::new();
            for s in states.into_iter().filter(|s| s.unresolved.is_some()) {
                *unresolved.entry(s.tenant).or_default() += 1;
            }
            m.set_webhook_secrets_unresolved(&tenants, &unresolved);
        }
        Err(e) => log::debug!("webhook secret gauges not refreshed: {}", e.message),
    }
}

/// SIGHUP: forget every resolved credential, resolve the references again now, and say what
/// came of it, by provider and endpoint (never a value). Lanes rebuild their provider adapters
/// at their next use; the webhook lane signs its next requests with the new secrets.
fn reload_credentials(settings: &DaemonSettings, client: &mut crate::db::Client) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
    let held = crate::secret::forget_resolved();
    settings.providers.forget();
    let tenant = settings.lanes.tenant;
    let mut unresolved = Vec::new();
    let providers = match db::providers::credential_states(client, tenant) {
        Ok(states) => {
            unresolved.extend(states.iter().filter(|s| s.2).map(|(t, p, _)| format!("provider {t}/{p}")));
            crate::metrics::get().set_credentials_unresolved(&states);
            states.len()
        }
        Err(e) => {
            log::warn!("reload: provider credentials not checked now ({}); each lane resolves them at its next use", e.message);
            0
        }
    };
    let endpoints = match db::webhooks::secret_states(client, tenant) {
        Ok(states) => {
            unresolved.extend(
                states
                    .iter()
                    .filter_map(|s| s.unresolved.as_ref().map(|w| format!("webhook endpoint {} ({}): {w}", s.id, s.url))),
            );
            states.len()
        }
        Err(e) => {
            log::warn!("reload: webhook secrets not checked now ({}); they are resolved at the next delivery", e.message);
            0
        }
    };
    log::info!(
        "reload (SIGHUP): {held} resolved credential value(s) dropped; references of {providers} provider(s) and {endpoints} webhook endpoint(s) resolved again"
    );
    if !unresolved.is_empty() {
        log::warn!("reload: not resolvable on this host: {}", unresolved.join("; "));
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// Months ahead of the current one that the daemon keeps partitions for (sql/0018): one, since
/// every partition adds to the planning of each statement that cannot prune.
const PARTITIONS_AHEAD: u32 = 1;

fn run_safety_sweep(settings: &DaemonSettings, sup: &Supervision, client: &mut crate::db::Client) {
    // On the sweep's schedule too: months ahead get their partitions long before an order needs
    // one (a check of the catalogue when they exist, the usual case).
    match db::partitions::ensure_ahead(client, PARTITIONS_AHEAD) {
        Ok(created) if !created.is_empty() => log::info!("created partitions {}", created.join(", ")),
        Ok(_) => {}
        Err(e) => log::warn!("creating partitions ahead failed: {} (the next sweep tries again)", e.message),
    }
    // All daemons with the same schedule fire at the same second: that second is the slot.
    let fired = sup.sweep_fired_ms.load(Ordering::SeqCst);
    let slot = chrono::DateTime::from_timestamp_millis(fired - fired.rem_euclid(1000)).unwrap_or_else(Utc::now);
    match safety::run(client, slot, &settings.safety_sweep) {
        Ok(Some((_, lanes))) => {
            for l in lanes {
                sup.wakers.wake(l);
            }
        }
        Ok(None) => log::debug!("batch safety sweep for {slot} ran in another process"),
        Err(e) => {
            log::warn!("batch safety sweep for {slot} failed: {} (the next slot runs it)", e.message);
            if e.kind == ErrorKind::DatabaseUnavailable {
                if let Ok(c) = db::connect(&settings.lanes.database_url) {
                    *client = c;
                }
            }
        }
    }
}

async fn start_scheduler(expression: &str, sup: Arc<Supervision>) -> Result<tokio_cron_scheduler::JobScheduler> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let fail = |e: tokio_cron_scheduler::JobSchedulerError| Error::internal(format!("scheduler: {e}"));
    let scheduler = JobScheduler::new().await.map_err(fail)?;
    let job = Job::new(expression, move |_id, _lock| {
        sup.sweep_fired_ms.store(Utc::now().timestamp_millis(), Ordering::SeqCst);
        sup.sweep_requested.store(true, Ordering::SeqCst);
    })
    .map_err(|e| Error::invalid(format!("--sweep-schedule '{expression}' was refused by the scheduler: {e}")))?;
    scheduler.add(job).await.map_err(fail)?;
    scheduler.start().await.map_err(fail)?;
    Ok(scheduler)
}

/// What a new-order notification says: the lanes with new work, and the oldest schedule among
/// the new orders (`3,7,from:1765150089300000`, microseconds since the epoch; sql/0034). Parts
/// it does not know are skipped, as older daemons skip `from:`.
fn wake_payload(payload: &str) -> (Vec<i64>, Option<chrono::DateTime<Utc>>) {
    let mut lanes = Vec::new();
    let mut from = None;
    for part in payload.split(',').map(str::trim) {
        if let Some(us) = part.strip_prefix("from:") {
            from = us.parse::<i64>().ok().and_then(chrono::DateTime::from_timestamp_micros);
        } else if let Ok(lane) = part.parse::<i64>() {
            lanes.push(lane);
        }
    }
    (lanes, from)
}

/// LISTEN for new orders on a connection of its own and wake their lanes; reconnects when it
/// drops. The payload names the lanes (`3,7`) and how old the new orders' schedule is.
fn start_listener(url: &str, sup: Arc<Supervision>) {
    let url = url.to_string();
    let _ = std::thread::Builder::new().name("listen".into()).spawn(move || {
        let mut backoff = Duration::from_millis(200);
        while !sup.stop.load(Ordering::Relaxed) {
            let result = db::connect(&url).and_then(|mut c| {
                c.batch_execute("LISTEN orderctl_work")?;
                backoff = Duration::from_millis(200);
                while !sup.stop.load(Ordering::Relaxed) {
                    let mut n = c.notifications();
                    let mut it = n.timeout_iter(Duration::from_millis(500));
                    match it.next() {
                        Ok(Some(note)) => {
                            let (lanes, from) = wake_payload(note.payload());
                            for lane in lanes {
                                match from {
                                    Some(at) => sup.wakers.wake_from(lane, at),
                                    None => sup.wakers.wake(lane),
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => return Err(Error::from(e)),
                    }
                }
                Ok(())
            });
            match result {
                Ok(()) => break,
                Err(e) => {
                    log::debug!("listener: {} (retrying; polling covers the gap)", e.message);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::wake_payload;

    #[test]
    fn a_wake_up_names_lanes_and_the_oldest_schedule_and_skips_what_it_does_not_know() {
        let (lanes, from) = wake_payload("3,7,from:1765150089300123");
        assert_eq!(lanes, vec![3, 7]);
        assert_eq!(from.map(|t| t.timestamp_micros()), Some(1_765_150_089_300_123));
        // As written before sql/0034, and with parts a later schema may add.
        assert_eq!(wake_payload("0"), (vec![0], None));
        assert_eq!(wake_payload("2,why:x,from:nonsense"), (vec![2], None));
    }
}
