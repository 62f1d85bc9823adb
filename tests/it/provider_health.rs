//! Providers as machines an operator steers (issue 23, items 1-4): a dealer account that runs
//! dry mid-batch, a provider answering 500 to every call, an operator's pause across daemons.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn daemon(db: &TestDb) -> Background {
    db.cmd()
        .args(["daemon", "--idle-poll", "50ms", "--request-timeout", "2s", "--lease", "5s"])
        .args(["--first-check", "200ms", "--backoff-base", "200ms", "--backoff-max", "500ms"])
        .spawn()
}

fn count(db: &TestDb, sql: &str) -> i64 {
    db.query_i64(sql)
}

/// Znet's balance covers 5 of 20 orders; two daemons. The rest go to x-stor (the fallback):
/// zero refunds, at most one "no balance" refusal per daemon, every order approved.
#[test]
fn balance_running_out_mid_batch_sends_the_rest_to_the_fallback_without_refunds() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    // One placement in flight at a time across every daemon: the count below is exact.
    sim.configure(json!({"znet_balance": "50.60"}));
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][0]["max_in_flight"] = json!(1);
    setup["tenants"][0]["users"][0]["balance"] = json!("1000.00");
    db.apply(&setup);
    let (a, b) = (daemon(&db), daemon(&db));
    insert_orders(&db, "pubg-60", 20);
    wait_until("every order approved", Duration::from_secs(60), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == 20
    });
    assert_eq!(count(&db, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "nothing refunded");
    let refused = count(
        &db,
        "SELECT count(*) FROM placements pl JOIN providers p ON p.id = pl.provider_id WHERE p.name = 'znet-main' AND pl.outcome = 'rejected'",
    );
    assert!((1..=2).contains(&refused), "one refusal per daemon at most, got {refused}");
    let at_znet = placed_with(&db, "znet-main");
    assert_eq!(at_znet, 5, "the balance paid for 5 orders at Znet");
    assert_eq!(count(&db, "SELECT count(*) FROM provider_unavailable WHERE cause = 'no_balance'"), 1);
    assert_money_conserved(&db);
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// Znet with `max_in_flight: 16` (and these fields), two daemons, `n` pubg-60 orders (Znet
/// first, x-stor the fallback), all approved.
fn sixteen_in_flight_at_znet(sim: &Sim, fields: serde_json::Value, n: i64) -> (TestDb, Background, Background) {
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    let znet = &mut setup["tenants"][0]["providers"][0];
    znet["max_in_flight"] = json!(16);
    for (k, v) in fields.as_object().unwrap() {
        znet[k] = v.clone();
    }
    db.apply(&setup);
    // The balance is known before the first placement (a balance not known yet paces nothing).
    db.cmd().args(["provider", "check", "znet-main"]).run().ok();
    let (a, b) = (daemon(&db), daemon(&db));
    insert_orders(&db, "pubg-60", n);
    wait_until("every order approved", Duration::from_secs(90), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == n
    });
    (db, a, b)
}

/// Orders whose placement this provider accepted.
fn placed_with(db: &TestDb, provider: &str) -> i64 {
    let sql = "SELECT count(*) FROM orders o JOIN providers p ON p.id = o.provider_id WHERE p.name = $1";
    db.client().query_one(sql, &[&provider]).unwrap().get(0)
}

fn sim_count(sim: &Sim, key: &str) -> u64 {
    sim.stats()[key].as_u64().unwrap_or_else(|| panic!("simulator stat {key}"))
}

/// The same with `max_in_flight: 16` (the default) and two daemons, placements slow enough
/// that many are in flight at once: Znet's balance covers 40 of 60 orders. Placements fan out
/// while the balance covers what 16 in flight could spend, then go one at a time across both
/// daemons (careful placements), so the dry account refuses one placement, not one per
/// placement in flight. Refusals are counted at the simulator, not in our own tables.
#[test]
fn balance_running_out_with_sixteen_in_flight_refuses_one_placement_at_most_per_daemon() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    sim.configure(json!({"znet_balance": "404.80", "latency": "50ms"}));
    let (db, a, b) = sixteen_in_flight_at_znet(&sim, json!({}), 60);
    let refused = sim_count(&sim, "no_balance_refusals");
    eprintln!(
        "no-balance refusals at the simulator: {refused}; peak placements in flight: {}",
        sim_count(&sim, "peak_placements_in_flight")
    );
    assert!(refused <= 2, "one refusal per daemon at most, the simulator refused {refused}");
    assert!(sim_count(&sim, "peak_placements_in_flight") > 2, "placements fanned out while the balance covered them");
    assert_eq!(count(&db, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "nothing refunded");
    let at_znet = placed_with(&db, "znet-main");
    assert_eq!(at_znet, 40, "the balance paid for 40 orders at Znet; the rest went to the fallback");
    assert_eq!(count(&db, "SELECT count(*) FROM orders WHERE attention IS NOT NULL"), 0, "nothing flagged");
    assert_money_conserved(&db);
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// Careful placements pace placements only: a Znet provider whose balance is always below its
/// `low_balance` places one order at a time across two daemons (measured at the simulator),
/// while the status checks of the orders already placed keep going several at once.
#[test]
fn careful_placements_go_one_at_a_time_while_checks_keep_their_concurrency() {
    // Orders complete 10 s after placement: careful placements go one at a time (a few a
    // second here, permit handoffs included), so most orders wait at once, each checked every
    // 0.5 s for 0.1 s, and their checks overlap by several (with 2 s only two or three waited
    // at once and the peak was 2 under load).
    let sim = Sim::start(&["--complete-after", "10s"]);
    sim.configure(json!({"latency": "100ms"}));
    let (db, a, b) = sixteen_in_flight_at_znet(&sim, json!({"low_balance": "1000000.00"}), 24);
    let (places, checks) = (sim_count(&sim, "peak_placements_in_flight"), sim_count(&sim, "peak_checks_in_flight"));
    eprintln!("peak in flight at the simulator: placements {places}, checks {checks}");
    assert_eq!(places, 1, "careful placements go one at a time across both daemons");
    assert!(checks >= 3, "checks keep their concurrency while placements are careful: peak {checks}");
    assert_eq!(placed_with(&db, "znet-main"), 24, "careful is not unavailable: every order placed with Znet");
    // One after another, each as soon as the last one's answer is written: a claim that found
    // the careful permit taken moved its lane's floor past the waiting order, which then waited
    // for the lane's next whole read of its queue (one a second): the 24 took 23 s. Now about
    // 0.15 s each (a 0.1 s call, its write-back, the next claim); half a second each is the bound.
    let span: f64 = db
        .client()
        .query_one("SELECT extract(epoch FROM max(placed_at) - min(placed_at))::float8 FROM orders", &[])
        .unwrap()
        .get(0);
    eprintln!("24 careful placements in {span:.1} s");
    assert!(span < 12.0, "careful placements waited for whole reads of the queue: 24 took {span:.1} s");
    assert_eq!((a.terminate(), b.terminate()), (0, 0));
}

/// x-stor (no fallback for freefire-100) runs dry: its orders wait, flagged for nobody and
/// refunded to nobody, shown by `list --stuck` with the reason; when the balance is back (a
/// balance call sees it) they are placed and approved.
#[test]
fn with_no_fallback_orders_wait_and_proceed_when_the_balance_returns() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    sim.configure(json!({"xstor_balance": "0.50"}));
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][1]["probe_every"] = json!("500ms");
    db.apply(&setup);
    let d = daemon(&db);
    insert_orders(&db, "freefire-100", 4);
    wait_until("orders waiting for the provider", Duration::from_secs(20), || {
        count(&db, "SELECT count(*) FROM orders WHERE external_status = 'waiting_for_provider'") == 4
    });
    let stuck = db.cmd().args(["list", "--stuck", "--output", "json"]).run();
    assert!(stuck.stdout.contains("Insufficient balance"), "{}", stuck.stdout);
    assert_eq!(count(&db, "SELECT count(*) FROM orders WHERE attention IS NOT NULL"), 0, "nothing flagged");
    sim.configure(json!({"xstor_balance": "500.00"}));
    wait_until("orders approved after the balance came back", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == 4
    });
    assert_eq!(count(&db, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0);
    let list = db.cmd().args(["provider", "list", "--output", "json"]).run().ok().json();
    let x = list.as_array().unwrap().iter().find(|p| p["name"] == "xstor").unwrap().clone();
    assert!(x["health"]["balance"].is_string() || x["health"]["balance"].is_number(), "{x}");
    assert_eq!(d.terminate(), 0);
}

/// Every call answers 500: the breaker opens, calls drop to at most about one a second
/// (measured at the simulator), no order's placement budget is spent meanwhile; the provider
/// recovers, the probe closes the breaker and the orders finish.
#[test]
fn a_provider_answering_500_opens_its_breaker_and_closes_when_it_recovers() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][1]["breaker"] = json!({"failures": 3, "cool_down": "2s"});
    db.apply(&setup);
    sim.configure(json!({"error_share": 1.0}));
    let (a, b) = (daemon(&db), daemon(&db));
    insert_orders(&db, "freefire-100", 6);
    wait_until("breaker open", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM provider_health WHERE breaker <> 'closed'") == 1
    });
    let calls = |s: &Sim| s.stats()["placement_calls"].as_u64().unwrap() + s.stats()["status_calls"].as_u64().unwrap();
    // Let queued calls drain, then measure.
    std::thread::sleep(Duration::from_secs(3));
    let (before, start) = (calls(&sim), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let rate = (calls(&sim) - before) as f64 / start.elapsed().as_secs_f64();
    eprintln!("calls while the breaker was open: {rate:.2}/s");
    assert!(rate <= 1.5, "calls while open: {rate:.2}/s");
    let spent = count(&db, "SELECT coalesce(max(placement_attempts), 0)::bigint FROM orders");
    assert_eq!(count(&db, "SELECT count(*) FROM orders WHERE attention IS NOT NULL"), 0, "no order flagged");
    sim.configure(json!({"error_share": 0.0}));
    wait_until("breaker closed", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM provider_health WHERE breaker = 'closed'")
            == count(&db, "SELECT count(*) FROM providers")
    });
    wait_until("orders approved", Duration::from_secs(60), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == 6
    });
    assert!(spent <= 3, "placement budget kept: {spent}");
    assert!(count(&db, "SELECT count(*) FROM provider_events WHERE kind = 'breaker.open'") >= 1);
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// `provider pause` stops placements from two daemons within 2 s; the orders wait with the
/// reason (nothing flagged or refunded); `provider resume` restarts them.
#[test]
fn pause_stops_placements_from_two_daemons_within_two_seconds_and_resume_restarts_them() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let (a, b) = (daemon(&db), daemon(&db));
    insert_orders(&db, "freefire-100", 2);
    wait_until("first orders approved", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == 2
    });
    db.cmd().args(["provider", "pause", "xstor", "--reason", "dealer down for an hour"]).run().ok();
    let paused_at = Instant::now();
    let doctor = db.cmd().arg("doctor").run().code(8);
    assert!(doctor.stdout.contains("paused by an operator (dealer down for an hour)"), "{}", doctor.stdout);
    let list = db.cmd().args(["provider", "list"]).run().ok();
    assert!(list.stdout.contains("paused: dealer down for an hour"), "{}", list.stdout);
    std::thread::sleep(Duration::from_secs(2));
    let placed = sim.stats()["placement_calls"].as_u64().unwrap();
    insert_orders(&db, "freefire-100", 5);
    wait_until("orders waiting for the provider", Duration::from_secs(10), || {
        count(&db, "SELECT count(*) FROM orders WHERE external_status = 'waiting_for_provider'") == 5
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sim.stats()["placement_calls"].as_u64().unwrap(),
        placed,
        "no placement after the pause ({:?} ago)",
        paused_at.elapsed()
    );
    let number = count(&db, "SELECT max(number) FROM orders");
    let inspect = db.cmd().args(["inspect", &number.to_string()]).run().ok();
    assert!(inspect.stdout.contains("dealer down for an hour"));
    assert_eq!(count(&db, "SELECT count(*) FROM orders WHERE attention IS NOT NULL"), 0);
    db.cmd().args(["provider", "resume", "xstor"]).run().ok();
    let resumed = Instant::now();
    wait_until("placements restarted", Duration::from_secs(10), || sim.stats()["placement_calls"].as_u64().unwrap() > placed);
    assert!(resumed.elapsed() < Duration::from_secs(3), "resume took {:?}", resumed.elapsed());
    wait_until("all approved", Duration::from_secs(30), || {
        count(&db, "SELECT count(*) FROM orders WHERE status = 'approved'") == 7
    });
    assert_eq!(count(&db, "SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0);
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// The setup's health fields: bad values are refused with their path, good ones are stored,
/// shown by `apply --dry-run` as unchanged on a second apply.
#[test]
fn health_settings_are_validated_and_applied_once() {
    let db = TestDb::new();
    let mut doc = standard_setup("http://127.0.0.1:9");
    let p = &mut doc["tenants"][0]["providers"][0];
    p["low_balance"] = json!(500);
    p["hold_for"] = json!("soon");
    p["breaker"] = json!({"failures": 0, "cooldown": "1s"});
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(doc.to_string()).run().code(4);
    for e in ["low_balance", "hold_for 'soon'", "breaker.failures is 0", "breaker has no field 'cooldown'"] {
        assert!(out.stderr.contains(e), "missing {e}:\n{}", out.stderr);
    }
    let p = &mut doc["tenants"][0]["providers"][0];
    p["low_balance"] = json!("500.00");
    p["hold_for"] = json!("10m");
    p["breaker"] = json!({"failures": 3, "cool_down": "5s"});
    db.cmd().args(["apply", "-f", "-"]).stdin(doc.to_string()).run().ok();
    let stored = db.client().query_one("SELECT health_settings::text FROM providers WHERE name = 'znet-main'", &[]).unwrap();
    let stored: String = stored.get(0);
    assert!(stored.contains("\"breaker_failures\": 3") && stored.contains("\"low_balance\": \"500.00\""), "{stored}");
    let again = db.cmd().args(["apply", "-f", "-", "--dry-run"]).stdin(doc.to_string()).run().ok();
    assert!(!again.stdout.contains("change provider"), "{}", again.stdout);
}

/// A write-back tried again after a commit whose answer was lost releases the careful permit a
/// second time: that must not free a later acquisition by the same process (which would let
/// two careful placements go at once).
#[test]
fn a_careful_permit_released_twice_never_frees_the_next_acquisition() {
    use orderctl::db::permits;
    let db = TestDb::new();
    db.apply(&standard_setup("http://127.0.0.1:9"));
    let provider = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    let mut c = db.client();
    let (holder, ttl) = ("host:1:daemon", Duration::from_secs(60));
    let first = permits::acquire_careful(&mut c, provider, holder, ttl).unwrap().expect("the permit is free");
    assert_eq!(permits::acquire_careful(&mut c, provider, holder, ttl).unwrap(), None, "one at a time, this process too");
    permits::release_careful(&mut c, provider, &first).unwrap();
    let second = permits::acquire_careful(&mut c, provider, holder, ttl).unwrap().expect("free again after its release");
    assert_ne!(first, second);
    // The first placement's write-back, written again.
    permits::release_careful(&mut c, provider, &first).unwrap();
    assert_eq!(permits::acquire_careful(&mut c, provider, holder, ttl).unwrap(), None, "still held by the second acquisition");
    permits::release_careful(&mut c, provider, &second).unwrap();
    assert!(permits::acquire_careful(&mut c, provider, holder, ttl).unwrap().is_some());
}
