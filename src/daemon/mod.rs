//! The daemon: when work runs. What the work is lives in `monitor` and `dispatch`.
//!
//! - The work loop (a plain thread: the sync Postgres client must never run on a tokio task)
//!   claims due work round after round. When a round finds nothing it sleeps until a new order
//!   wakes it (LISTEN, a hint only) or `--idle-poll` passes (so it never depends on LISTEN,
//!   which connection poolers break).
//! - The batch safety sweep fires on `--sweep-schedule` via tokio-cron-scheduler; the cron job
//!   only raises a flag, the work loop runs the sweep, so a sweep never overlaps another in
//!   this process, and the database deduplicates it across processes.
//! - SIGTERM/SIGINT: stop claiming, finish the round in flight (bounded by the request
//!   timeout), exit 0. Anything claimed and not finished simply comes due again.
//! - Postgres gone: log, back off, reconnect, carry on.
//! - systemd: READY=1 when connected, WATCHDOG=1 while the loop runs, STOPPING=1 on the way out.

pub mod schedule;

use crate::db;
use crate::error::{Error, ErrorKind, Result};
use crate::monitor::{self, Monitor, MonitorSettings, RoundReport};
use crate::settings::HttpSettings;
use chrono::Utc;
use postgres::fallible_iterator::FallibleIterator;
use schedule::SweepSchedule;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub struct DaemonSettings {
    pub database_url: String,
    pub http: HttpSettings,
    pub monitor: MonitorSettings,
    pub schedule: SweepSchedule,
    pub idle_poll: Duration,
    pub shutdown_grace: Duration,
}

/// Wakes the work loop early.
#[derive(Default)]
struct Wake {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    fn notify(&self) {
        *self.flag.lock().unwrap() = true;
        self.cond.notify_all();
    }
    fn wait(&self, timeout: Duration) {
        let guard = self.flag.lock().unwrap();
        let (mut guard, _) = self.cond.wait_timeout_while(guard, timeout, |woken| !*woken).unwrap();
        *guard = false;
    }
}

struct Shared {
    stop: Arc<AtomicBool>,
    wake: Wake,
    sweep_requested: AtomicBool,
    /// When the cron job last fired (ms since epoch): the sweep's slot.
    sweep_fired_ms: AtomicI64,
}

pub fn run(settings: DaemonSettings) -> Result<()> {
    let shared = Arc::new(Shared {
        stop: Arc::new(AtomicBool::new(false)),
        wake: Wake::default(),
        sweep_requested: AtomicBool::new(false),
        sweep_fired_ms: AtomicI64::new(0),
    });
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, shared.stop.clone())
            .map_err(|e| Error::internal(format!("cannot install signal handler: {e}")))?;
    }
    // Wake the loop when a signal arrives, so shutdown does not wait for an idle timeout.
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("signal-watch".into())
            .spawn(move || {
                while !shared.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                shared.wake.notify();
            })
            .map_err(|e| Error::internal(format!("cannot start thread: {e}")))?;
    }

    // The scheduler runs on a small tokio runtime of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("orderctl-cron")
        .build()
        .map_err(|e| Error::internal(format!("cannot start the scheduler runtime: {e}")))?;
    let mut scheduler = runtime.block_on(start_scheduler(&settings.schedule.expression, shared.clone()))?;
    log::info!(
        "batch safety sweep scheduled by '{}' (UTC); next at {}",
        settings.schedule.expression,
        settings.schedule.next_after(Utc::now()).map(|t| t.to_rfc3339()).unwrap_or_default()
    );

    if settings.shutdown_grace < settings.http.request_timeout {
        log::warn!(
            "--shutdown-grace ({}) is shorter than --request-timeout ({}): a provider call in flight at shutdown may outlive it \
             (it is still safe: its order comes due again and is reconciled)",
            humantime::format_duration(settings.shutdown_grace),
            humantime::format_duration(settings.http.request_timeout)
        );
    }
    start_listener(&settings.database_url, shared.clone());
    let result = work_loop(&settings, &shared);

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // shutdown() does not wait for running jobs; ours only raise a flag, so nothing is lost.
    runtime.block_on(async {
        let _ = scheduler.shutdown().await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn start_scheduler(expression: &str, shared: Arc<Shared>) -> Result<tokio_cron_scheduler::JobScheduler> {
    use tokio_cron_scheduler::{Job, JobScheduler};
    let fail = |e: tokio_cron_scheduler::JobSchedulerError| Error::internal(format!("scheduler: {e}"));
    let scheduler = JobScheduler::new().await.map_err(fail)?;
    let job = Job::new(expression, move |_id, _lock| {
        shared.sweep_fired_ms.store(Utc::now().timestamp_millis(), Ordering::SeqCst);
        shared.sweep_requested.store(true, Ordering::SeqCst);
        shared.wake.notify();
    })
    .map_err(|e| Error::invalid(format!("--sweep-schedule '{expression}' was refused by the scheduler: {e}")))?;
    scheduler.add(job).await.map_err(fail)?;
    scheduler.start().await.map_err(fail)?;
    Ok(scheduler)
}

/// LISTEN for new orders on a connection of its own; reconnects when it drops.
fn start_listener(url: &str, shared: Arc<Shared>) {
    let url = url.to_string();
    let _ = std::thread::Builder::new().name("listen".into()).spawn(move || {
        let mut backoff = Duration::from_millis(200);
        while !shared.stop.load(Ordering::Relaxed) {
            match db::connect(&url).and_then(|mut c| {
                c.batch_execute("LISTEN orderctl_work")?;
                backoff = Duration::from_millis(200);
                while !shared.stop.load(Ordering::Relaxed) {
                    let mut n = c.notifications();
                    let mut it = n.timeout_iter(Duration::from_millis(500));
                    match it.next() {
                        Ok(Some(_)) => shared.wake.notify(),
                        Ok(None) => {}
                        Err(e) => return Err(Error::from(e)),
                    }
                }
                Ok(())
            }) {
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

fn work_loop(settings: &DaemonSettings, shared: &Shared) -> Result<()> {
    let watchdog = sd_notify::watchdog_enabled();
    let mut last_watchdog = Instant::now();
    let mut monitor: Option<Monitor> = None;
    let mut reconnect_backoff = Duration::from_millis(100);
    let mut announced_ready = false;
    let mut last_cache_clear = Instant::now();
    let mut totals = RoundReport::default();
    let mut last_summary = Instant::now();

    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(interval) = watchdog {
            if last_watchdog.elapsed() >= interval / 2 {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                last_watchdog = Instant::now();
            }
        }
        let m = match monitor.as_mut() {
            Some(m) => m,
            None => match Monitor::new(&settings.database_url, settings.http, settings.monitor.clone()) {
                Ok(m) => {
                    if announced_ready {
                        log::warn!("reconnected to the database; carrying on");
                    } else {
                        log::info!(
                            "connected; working (concurrency {}, round size {})",
                            settings.monitor.concurrency,
                            settings.monitor.round_size
                        );
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                        announced_ready = true;
                    }
                    reconnect_backoff = Duration::from_millis(100);
                    monitor.insert(m)
                }
                // A URL that cannot work will not start working: say so and stop.
                Err(e) if e.kind == ErrorKind::InvalidInput => return Err(e),
                Err(e) => {
                    log::warn!(
                        "database unavailable: {} (retrying in {})",
                        e.message,
                        humantime::format_duration(reconnect_backoff)
                    );
                    shared.wake.wait(reconnect_backoff);
                    reconnect_backoff = (reconnect_backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            },
        };
        // Pick up changed provider settings now and then.
        if last_cache_clear.elapsed() > Duration::from_secs(60) {
            m.providers().clear();
            last_cache_clear = Instant::now();
        }

        let result = if shared.sweep_requested.swap(false, Ordering::SeqCst) {
            run_safety_sweep(m, shared).map(|_| RoundReport { claimed: 1, ..Default::default() })
        } else {
            m.round()
        };
        match result {
            Ok(r) if r.is_idle() => shared.wake.wait(settings.idle_poll),
            Ok(r) => {
                log::debug!("round: {r:?}");
                totals.add(&r);
            }
            Err(e) if e.kind == ErrorKind::DatabaseUnavailable => {
                log::warn!("lost the database: {}; reconnecting", e.message);
                monitor = None;
            }
            Err(e) => {
                log::error!("round failed: {}{}", e.message, e.hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default());
                // A connection that errored may be in a bad state; start fresh after a pause.
                monitor = None;
                shared.wake.wait(Duration::from_secs(1));
            }
        }
        if last_summary.elapsed() > Duration::from_secs(60) && !totals.is_idle() {
            log::info!(
                "last minute: {} dispatched, {} checks, {} approved, {} rejected, {} no news, {} given up",
                totals.dispatched,
                totals.checks,
                totals.approved,
                totals.rejected,
                totals.no_news,
                totals.given_up
            );
            totals = RoundReport::default();
            last_summary = Instant::now();
        }
    }
    log::info!("stopping: no new claims; orders claimed and not finished come due again after their lease");
    Ok(())
}

fn run_safety_sweep(m: &mut Monitor, shared: &Shared) -> Result<()> {
    // All daemons with the same schedule fire at the same second: that second is the slot.
    let fired = shared.sweep_fired_ms.load(Ordering::SeqCst);
    let slot = chrono::DateTime::from_timestamp_millis(fired - fired.rem_euclid(1000)).unwrap_or_else(Utc::now);
    match monitor::safety_sweep_at(m, slot)? {
        Some(r) => log::info!("batch safety sweep: {} order(s) checked", r.checks),
        None => log::debug!("batch safety sweep for {slot} ran in another process"),
    }
    Ok(())
}
