//! Provider lanes (issue 13): a slow provider never holds up another's placements; the systemd
//! watchdog is told all is well while every lane makes progress, however slow a provider is;
//! SIGTERM ends the daemon within its grace.

use crate::reliability::{assert_no_panic, DaemonLog};
use crate::support::*;
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The standard setup with Znet on `slow` and x-stor on `fast`.
fn two_providers(db: &TestDb, slow: &Sim, fast: &Sim) {
    let mut doc = standard_setup(&slow.base_url);
    doc["tenants"][0]["providers"][1]["base_url"] = json!(fast.base_url);
    db.apply(&doc);
}

/// Znet answers every call in 5 s; x-stor at once. New x-stor orders are placed within a second
/// of their insert all the same, and their checks bring them to the end.
#[test]
fn a_slow_provider_never_delays_another_providers_placements() {
    let slow = Sim::start(&["--complete-after", "0s", "--latency", "5s", "--threads", "32"]);
    let fast = Sim::start(&["--complete-after", "500ms"]);
    let db = TestDb::new();
    two_providers(&db, &slow, &fast);
    let log = DaemonLog::new();
    let d = db
        .cmd()
        .args(["daemon", "--idle-poll", "50ms", "--request-timeout", "8s", "--lease", "20s"])
        .args(["--first-check", "0s", "--backoff-base", "200ms", "--backoff-max", "500ms"])
        .spawn_logged(log.path());
    wait_until("daemon connected", Duration::from_secs(20), || {
        db.query_i64("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orderctl' AND datname = current_database()")
            >= 3
    });
    // Znet's lane is busy with slow calls.
    insert_orders(&db, "pubg-60", 20);
    wait_until("Znet calls in flight", Duration::from_secs(10), || slow.stats()["placement_calls"].as_u64().unwrap() >= 10);
    let mut latencies = Vec::new();
    for _ in 0..10 {
        // Counted before the insert: a placement may land before the insert call returns.
        let before = fast.stats()["orders_placed"].as_u64().unwrap();
        let inserted = now_ms();
        insert_orders(&db, "freefire-100", 1);
        wait_until("x-stor placement", Duration::from_secs(10), || fast.stats()["orders_placed"].as_u64().unwrap() > before);
        let placed =
            fast.stats()["orders"].as_array().unwrap().iter().map(|o| o["placed_at_ms"].as_f64().unwrap()).fold(0.0, f64::max);
        latencies.push(placed - inserted);
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(latencies[9] < 1000.0, "x-stor placements waited on Znet's slow calls: {latencies:?} ms");
    wait_until("x-stor orders approved", Duration::from_secs(20), || {
        db.query_i64("SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id WHERE p.name = 'freefire-100' AND status = 'approved'")
            == 10
    });
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());
}

/// systemd's side of `NOTIFY_SOCKET`: what the daemon tells it, and when.
struct Notifications {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Notifications {
    /// A socket that waits at most `patience` for each notification.
    fn new(patience: Duration) -> Notifications {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(patience)).unwrap();
        Notifications { socket, _dir: dir, path }
    }

    fn next(&self) -> (Instant, String) {
        let mut buf = [0u8; 512];
        let n = self.socket.recv(&mut buf).expect("a notification in time");
        (Instant::now(), String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// Waits for READY=1; its time.
    fn ready(&self) -> Instant {
        let (at, first) = self.next();
        assert!(first.contains("READY=1"), "{first}");
        at
    }

    /// The watchdog pings from `since` until `window` has passed, each less than `watchdog`
    /// after the one before.
    fn pings(&self, since: Instant, window: Duration, watchdog: Duration) -> usize {
        let mut last = since;
        let mut pings = 0;
        while since.elapsed() < window {
            let (at, message) = self.next();
            if message.contains("WATCHDOG=1") {
                assert!(at - last < watchdog, "the watchdog went {:?} without a word", at - last);
                last = at;
                pings += 1;
            }
        }
        pings
    }
}

/// The watchdog, a tenth of the real time: systemd's WatchdogSec 3 s, a request timeout of 2 s,
/// and a provider that answers every call in 2.5 s (the shipped unit: 30 s, 20 s and a provider
/// answering in 25 s). Calls time out one after another, and the watchdog is told all is well
/// throughout, never 3 s apart. SIGTERM then ends it within its grace, calls still in flight.
#[test]
fn the_watchdog_is_fed_while_a_provider_is_slow_and_sigterm_ends_within_the_grace() {
    let sim = Sim::start(&["--complete-after", "0s", "--latency", "2500ms", "--threads", "32"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let notifications = Notifications::new(Duration::from_secs(20));
    let log = DaemonLog::new();
    let d = db
        .cmd()
        .env("NOTIFY_SOCKET", &notifications.path)
        .env("WATCHDOG_USEC", "3000000")
        .args(["daemon", "--idle-poll", "50ms", "--request-timeout", "2s", "--lease", "5s", "--shutdown-grace", "1s"])
        .args(["--first-check", "0s", "--backoff-base", "200ms", "--backoff-max", "500ms"])
        .spawn_logged(log.path());
    let ready_at = notifications.ready();
    insert_orders(&db, "pubg-60", 30);
    insert_orders(&db, "freefire-100", 30);
    let pings = notifications.pings(ready_at, Duration::from_secs(9), Duration::from_secs(3));
    assert!(pings >= 4, "{pings} pings in 9 s");
    assert!(sim.stats()["placement_calls"].as_u64().unwrap() > 0);
    let stopping = Instant::now();
    assert_eq!(d.terminate(), 0);
    assert!(stopping.elapsed() < Duration::from_secs(4), "SIGTERM took {:?} with a grace of 1 s", stopping.elapsed());
    assert_no_panic(log.path());
    // What did not come back is reconciled by the next daemon: nothing placed twice.
    let log2 = DaemonLog::new();
    sim.configure(json!({"latency": 0}));
    let d2 = db
        .cmd()
        .args(["daemon", "--idle-poll", "50ms", "--request-timeout", "2s", "--lease", "5s"])
        .args(["--first-check", "0s", "--backoff-base", "200ms", "--backoff-max", "500ms"])
        .spawn_logged(log2.path());
    wait_until("all orders final", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_eq!(d2.terminate(), 0);
    assert_eq!(sim.stats()["double_placements"], 0);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
}

/// A setting of a shipped example file (`Key=value` or `KEY=value` lines), as a duration.
fn shipped(file: &str, key: &str) -> Duration {
    let path = format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{path} sets no {key}"));
    humantime::parse_duration(value.trim()).unwrap_or_else(|e| panic!("{path}: {key}={value}: {e}"))
}

/// The same in real time, with the shipped unit's and environment file's own values
/// (WatchdogSec, TimeoutStopSec, ORDERCTL_REQUEST_TIMEOUT, ORDERCTL_SHUTDOWN_GRACE) and a provider
/// answering every call in 25 s: its calls time out and start again, the watchdog hears from the
/// daemon throughout, and SIGTERM with calls in flight ends it, exit 0, well before systemd
/// would kill it.
#[test]
fn the_shipped_unit_survives_a_provider_answering_in_25_s() {
    let watchdog = shipped("orderctl-daemon.service", "WatchdogSec");
    let stop_timeout = shipped("orderctl-daemon.service", "TimeoutStopSec");
    let request_timeout = shipped("orderctl.env", "ORDERCTL_REQUEST_TIMEOUT");
    let grace = shipped("orderctl.env", "ORDERCTL_SHUTDOWN_GRACE");
    assert!(request_timeout + Duration::from_secs(5) < watchdog, "a slow call alone would starve the watchdog");
    assert!(grace + Duration::from_secs(5) < stop_timeout, "systemd would kill the daemon within its grace");
    let sim = Sim::start(&["--complete-after", "0s", "--latency", "25s", "--threads", "32"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let notifications = Notifications::new(watchdog);
    let log = DaemonLog::new();
    let d = db
        .cmd()
        .env("NOTIFY_SOCKET", &notifications.path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .env("ORDERCTL_REQUEST_TIMEOUT", humantime::format_duration(request_timeout).to_string())
        .env("ORDERCTL_SHUTDOWN_GRACE", humantime::format_duration(grace).to_string())
        .args(["daemon", "--idle-poll", "200ms", "--first-check", "0s"])
        .spawn_logged(log.path());
    let ready_at = notifications.ready();
    insert_orders(&db, "pubg-60", 20);
    // Past the first calls' timeout, into the next calls.
    let watch = request_timeout + Duration::from_secs(5);
    let pings = notifications.pings(ready_at, watch, watchdog);
    assert!(pings >= 2, "{pings} pings in {watch:?}");
    // The lane lived through it: the first calls (one per permit) timed out and were written
    // back as placements whose outcome is unknown, to be asked about by reference, never
    // placed blindly again; the lane went on with the next.
    let unknown = db.query_i64("SELECT count(*) FROM orders WHERE awaiting_reconciliation");
    assert!(unknown >= 16, "{unknown} timed-out placements written back");
    let stopping = Instant::now();
    assert_eq!(d.terminate(), 0);
    let took = stopping.elapsed();
    assert!(took < grace + Duration::from_secs(2) && took < stop_timeout, "SIGTERM took {took:?} with a grace of {grace:?}");
    assert_no_panic(log.path());
    assert_eq!(sim.stats()["double_placements"], 0);
}

/// A sweep whose work fails the same way every time (here the schema is broken under it) gives
/// up after its tries and says why, with the error's exit code; it never hangs.
#[test]
fn a_sweep_whose_work_keeps_failing_ends_with_the_error() {
    let sim = Sim::start(&[]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    insert_orders(&db, "jawaker", 1); // manual: the routing lane's work
    db.client().batch_execute("ALTER TABLE packages RENAME COLUMN provider_type TO provider_type_gone").unwrap();
    let started = Instant::now();
    let out = db.cmd().args(["sweep"]).run();
    assert_eq!(out.code, 5, "the schema error's exit code (refused)\nstderr:\n{}", out.stderr);
    assert!(out.stderr.contains("giving up after 3 tries in a row"), "the bound is said:\n{}", out.stderr);
    assert!(out.stderr.contains("provider_type"), "and what failed:\n{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "bounded: {:?}", started.elapsed());
}
