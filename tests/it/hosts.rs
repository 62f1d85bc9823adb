//! Several hosts (issue 24, Deliver 6).
//!
//! - Daemons on hosts of their own: each in a network namespace the test creates, with its own
//!   address on a veth pair to this machine. Postgres listens on 127.0.0.1 only, so each host
//!   reaches it through a TCP forwarder of the test's on the host end of its veth (the link
//!   the test cuts); the simulator is reached likewise. One daemon loses the database for 60 s
//!   in the middle of work and comes back; the other finishes its orders once their leases
//!   lapse. Nothing is placed twice, no provider answer is lost, and the cut-off daemon's late
//!   write-backs are refused by the lease guard.
//! - A host whose clock is 2 minutes slow (libfaketime) schedules exactly like the others:
//!   leases, backoff and the give-up limit are measured on the database's clock.
//!
//! The namespace test needs root and iproute2 (`.ci/run` installs iproute2 and faketime); where
//! namespaces cannot be made it says SKIPPED and why.

use crate::reliability::{assert_event_logs_consistent, assert_no_panic, wait_all_final, DaemonLog};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run `ip` with these arguments; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("`ip` could not be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A host of the test's own: a network namespace with a veth pair to this machine, an address
/// at each end, and its default route through the host end. Removed when dropped (the veth
/// pair goes with it), also when the test fails.
struct Host {
    ns: String,
    /// This machine's end of the veth (where the host's forwarders listen).
    gateway: Ipv4Addr,
}

impl Host {
    /// Host number `k` (0..60) of this test process.
    fn create(k: u8) -> Result<Host, String> {
        let pid = std::process::id();
        let ns = format!("orderctl-it-{pid}-{k}");
        let (outside, inside) = (format!("oc{}h{k}", pid % 100_000), format!("oc{}n{k}", pid % 100_000));
        // A /30 per host: the subnet is this process's, so parallel runs do not collide.
        let (a, b) = ((pid % 250) as u8, 4 * k);
        let gateway = Ipv4Addr::new(10, 231, a, b + 1);
        let own = Ipv4Addr::new(10, 231, a, b + 2);
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        let host = Host { ns: ns.clone(), gateway };
        ip(&["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
        ip(&["link", "set", &inside, "netns", &ns])?;
        ip(&["addr", "add", &format!("{gateway}/30"), "dev", &outside])?;
        ip(&["link", "set", &outside, "up"])?;
        let in_ns = |args: &[&str]| ip(&[&["netns", "exec", &ns, "ip"], args].concat());
        in_ns(&["addr", "add", &format!("{own}/30"), "dev", &inside])?;
        in_ns(&["link", "set", &inside, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["route", "add", "default", "via", &gateway.to_string()])?;
        Ok(host)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.ns]) {
            eprintln!("namespace {} not removed: {e}", self.ns);
        }
    }
}

/// Why network namespaces cannot be used here, if they cannot.
fn namespaces_unavailable() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    if Command::new("ip").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

/// A TCP forwarder: listens on `listen` and relays each connection to `target`. `cut` drops
/// every relayed connection and refuses new ones (accepted and closed at once) until `restore`.
struct Forwarder {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(listen: Ipv4Addr, target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind((listen, 0)).expect("bind the forwarder on the host's veth address");
        let addr = listener.local_addr().unwrap();
        let (cut, stop, live) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(vec![])));
        let f = Forwarder { addr, cut: cut.clone(), stop: stop.clone(), live: live.clone() };
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inbound) = conn else { continue };
                if cut.load(Ordering::SeqCst) {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(target) else {
                    let _ = inbound.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                {
                    let mut live = live.lock().unwrap();
                    live.retain(|s: &TcpStream| s.peer_addr().is_ok());
                    live.push(inbound.try_clone().unwrap());
                    live.push(outbound.try_clone().unwrap());
                }
                relay(inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
                relay(outbound, inbound);
            }
        });
        f
    }

    /// Drop every connection and refuse new ones.
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Copy `from` → `to` until either side ends, then close both.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// The address (host:port) of a URL, resolved.
fn socket_of(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).unwrap();
    let host = u.host_str().unwrap();
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    SocketAddr::new(host.parse().unwrap(), u.port_or_known_default().unwrap())
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_ip_host(addr.ip()).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string().trim_end_matches('/').to_string()
}

/// A daemon on `host`, reaching the database through `db_link`. Short leases so that work a
/// lost daemon holds comes back in seconds; the lease is still 4 request timeouts.
fn daemon_on(host: &Host, db: &TestDb, db_link: &Forwarder, log: &std::path::Path) -> Background {
    Cmd::in_netns(&host.ns)
        .env("DATABASE_URL", via(&db.url, db_link.addr))
        .args(["-v", "daemon", "--idle-poll", "50ms", "--concurrency", "4", "--lease", "4s", "--request-timeout", "1s"])
        .args(["--first-check", "500ms", "--backoff-base", "300ms", "--backoff-max", "1s", "--max-checks", "1000"])
        .spawn_logged(log)
}

/// One daemon is cut off from Postgres for 60 s in the middle of work; the other finishes the
/// orders the lost one held once their leases lapse. No double placement at the provider, every
/// order final with the provider's own answer, money exactly once, and the lost daemon's late
/// write-backs, when it is back, refused (it then works on as usual).
#[test]
fn a_daemon_cut_off_from_the_database_for_a_minute_loses_its_orders_to_another_and_nothing_happens_twice() {
    if let Some(why) = namespaces_unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let (a, b) = match (Host::create(0), Host::create(1)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("SKIPPED: network namespaces cannot be made here: {e}");
            return;
        }
    };
    // Calls take a while, so the cut finds the first daemon with calls in flight and results
    // to write; orders complete at the provider a couple of seconds after placement.
    let sim = Sim::start(&["--complete-after", "2s", "--latency", "150ms", "--seed", "24"]);
    // One address for the provider, reachable from every host (each routes through its own veth).
    let provider_link = Forwarder::start(a.gateway, socket_of(&sim.base_url));
    let db = TestDb::new();
    db.apply(&standard_setup(&format!("http://{}", provider_link.addr)));
    let pg = socket_of(&admin_url());
    let (link_a, link_b) = (Forwarder::start(a.gateway, pg), Forwarder::start(b.gateway, pg));

    let (log_a, log_b) = (DaemonLog::new(), DaemonLog::new());
    let da = daemon_on(&a, &db, &link_a, log_a.path());
    insert_orders(&db, "pubg-60", 40);
    insert_orders(&db, "freefire-100", 20);
    wait_until("the first daemon placing", Duration::from_secs(30), || sim.stats()["orders_placed"].as_u64() >= Some(15));

    link_a.cut();
    let cut_at = Instant::now();
    // Orders the first daemon holds under a lease at the cut (claimed, their schedule a lease ahead).
    let held: Vec<(uuid::Uuid, i64)> = db
        .client()
        .query("SELECT id, lease FROM orders WHERE status = 'pending' AND claimed_at IS NOT NULL AND next_check_at > now()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!held.is_empty(), "the cut came in the middle of work: the first daemon held orders under a lease");
    let db_b = daemon_on(&b, &db, &link_b, log_b.path());
    wait_all_final(&db, Duration::from_secs(50));
    assert!(cut_at.elapsed() < Duration::from_secs(60), "the other daemon finished while the first was still cut off");
    // ... including every order the first one held: claimed again (a newer lease) once theirs lapsed.
    for (id, lease) in &held {
        let now: i64 = db.client().query_one("SELECT lease FROM orders WHERE id = $1", &[id]).unwrap().get(0);
        assert!(now > *lease, "order {id}: taken over by the other daemon (lease {lease} -> {now})");
    }

    // The outage lasts its whole minute; then the first daemon's host gets the database back.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(cut_at.elapsed()));
    link_a.restore();
    wait_until("the first daemon back and its late results refused", Duration::from_secs(30), || {
        log_a.text().contains("late result(s) refused")
    });
    // Back at work: new orders are finished by both hosts.
    insert_orders(&db, "pubg-60", 10);
    wait_all_final(&db, Duration::from_secs(30));
    assert_eq!(da.terminate(), 0);
    assert_eq!(db_b.terminate(), 0);

    let stats = sim.stats();
    assert_eq!(stats["double_placements"], 0, "no order placed twice");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 70);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'pending'"), 0);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
    assert_no_panic(log_a.path());
    assert_no_panic(log_b.path());
}

/// libfaketime's preload library, where Debian's faketime package puts it.
fn libfaketime() -> Option<String> {
    let candidates =
        std::fs::read_dir("/usr/lib").ok()?.filter_map(|e| e.ok()).map(|e| e.path().join("faketime/libfaketime.so.1"));
    candidates
        .chain([std::path::PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
}

/// A daemon whose host clock is 2 minutes slow (libfaketime, `FAKETIME=-120s`) schedules
/// exactly as the policy says on the database's clock: the first check `--first-check` after
/// the placement, the next ones `--backoff-base` apart, the give-up `--give-up-after` after the
/// first dispatch, and claims that hold for `--lease` from the database's now.
#[test]
fn a_daemon_whose_clock_is_two_minutes_slow_schedules_on_the_database_clock() {
    let Some(lib) = libfaketime() else {
        eprintln!("SKIPPED: libfaketime is not installed (Debian's faketime package; .ci/run installs it)");
        return;
    };
    let sim = Sim::start(&["--complete-after", "1h", "--latency", "300ms"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let log = DaemonLog::new();
    let d = Cmd::new()
        .env("DATABASE_URL", &db.url)
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "-120s")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .args(["daemon", "--idle-poll", "50ms", "--lease", "3s", "--request-timeout", "1s"])
        .args([
            "--first-check",
            "1s",
            "--backoff-base",
            "1s",
            "--backoff-max",
            "1s",
            "--max-checks",
            "100",
            "--give-up-after",
            "6s",
        ])
        .spawn_logged(log.path());
    insert_orders(&db, "pubg-60", 4);
    // While the orders are checked, every claim holds for the lease from the database's now.
    let mut claims_seen = 0;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(3) {
        for r in db
            .client()
            .query(
                // The clock as this statement runs (after its snapshot, so after any claim it
                // sees committed; `now()` is the statement's start, which a loaded machine may
                // put before a claim that still committed ahead of the snapshot).
                "SELECT extract(epoch FROM next_check_at - claimed_at)::float8, extract(epoch FROM clock_timestamp() - claimed_at)::float8
                   FROM orders WHERE claimed_at IS NOT NULL AND next_check_at > now()
                    AND next_check_at - claimed_at BETWEEN interval '2.9 s' AND interval '3.1 s'",
                &[],
            )
            .unwrap()
        {
            let (lease, age): (f64, f64) = (r.get(0), r.get(1));
            assert!((lease - 3.0).abs() < 0.01, "a claim holds for the lease: {lease}");
            assert!((-0.01..5.0).contains(&age), "a claim is taken at the database's now, not {age} s away from it");
            claims_seen += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(claims_seen > 0, "claims were seen in flight");
    wait_until("every order given up", Duration::from_secs(30), || {
        db.query_i64("SELECT count(*) FROM orders WHERE attention = 'given_up'") == 4
    });
    assert_eq!(d.terminate(), 0);

    // The host clock really was off: the dispatch steps it recorded (on its own clock, for the
    // history) are two minutes behind the database's time of the same event.
    let skew = db.client().query_one(
        "SELECT avg(extract(epoch FROM e.at - (e.steps->0->>'at')::timestamptz))::float8 FROM order_events e WHERE e.kind = 'dispatch' AND e.steps IS NOT NULL",
        &[],
    ).unwrap().get::<_, Option<f64>>(0).expect("dispatch events with steps");
    assert!((110.0..130.0).contains(&skew), "the daemon's clock was 2 minutes slow (seen {skew} s)");

    for r in db
        .client()
        .query(
            "SELECT o.number, o.dispatched_at,
                    array_agg(e.at ORDER BY e.id) FILTER (WHERE e.kind LIKE 'check.%') AS checks,
                    min(e.at) FILTER (WHERE e.kind = 'dispatch') AS placed,
                    min(e.at) FILTER (WHERE e.kind = 'gave_up') AS gave_up
               FROM orders o JOIN order_events e ON e.order_id = o.id GROUP BY o.id, o.number, o.dispatched_at",
            &[],
        )
        .unwrap()
    {
        let number: i64 = r.get(0);
        let secs =
            |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| (b - a).num_milliseconds() as f64 / 1000.0;
        let dispatched: chrono::DateTime<chrono::Utc> = r.get(1);
        let checks: Vec<chrono::DateTime<chrono::Utc>> = r.get::<_, Option<Vec<_>>>(2).unwrap_or_default();
        let placed: chrono::DateTime<chrono::Utc> = r.get(3);
        let gave_up: chrono::DateTime<chrono::Utc> = r.get(4);
        assert!(checks.len() >= 2, "order {number}: checked on schedule ({} checks)", checks.len());
        // First check: `--first-check` after the placement's answer was written (plus a call).
        let first = secs(placed, checks[0]);
        assert!((0.9..2.0).contains(&first), "order {number}: first check {first} s after placement, not 1 s");
        // Backoff: `--backoff-base` (jittered by at most a tenth) plus a call between checks.
        for w in checks.windows(2) {
            let gap = secs(w[0], w[1]);
            assert!((0.85..2.0).contains(&gap), "order {number}: {gap} s between checks, not 1 s");
        }
        // Give-up: `--give-up-after` after the first dispatch, on the database's clock.
        let after = secs(dispatched, gave_up);
        assert!((6.0..8.0).contains(&after), "order {number}: given up {after} s after dispatch, not 6 s");
    }
    assert_no_panic(log.path());
}
