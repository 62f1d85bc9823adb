//! Watching orders until they finish: sweep, poll, daemon; leases, batches, backoff, give-up,
//! several workers at once.

use crate::orders::{create, inspect, setup};
use crate::support::*;
use serde_json::Value;
use std::time::Duration;

const FAST: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];

#[test]
fn sweep_from_cron_brings_every_order_to_its_final_state() {
    let sim = Sim::start(&["--complete-after", "200ms", "--cancel-share", "0.25", "--seed", "7"]);
    let db = setup(&sim);
    insert_orders(&db, "pubg-60", 60);
    insert_orders(&db, "freefire-100", 60);
    wait_until("all orders final", Duration::from_secs(60), || {
        db.cmd().args(["sweep"]).args(FAST).run().ok();
        open_orders(&db) == 0
    });
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 120);
    assert_eq!(stats["double_placements"], 0);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'rejected'") > 0, "some cancellations happened");
}

#[test]
fn xstor_orders_are_checked_in_batches() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    insert_orders(&db, "freefire-100", 150);
    // Dispatch all (150 placements), then one pass of checks.
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(sim.stats()["orders_placed"], 150);
    let before = sim.stats()["status_calls"].as_u64().unwrap();
    db.client().execute("UPDATE orders SET next_check_at = now() - interval '1 second'", &[]).unwrap();
    let out = db.cmd().args(["--output", "json", "sweep", "--round-size", "200"]).args(FAST).run().ok().json();
    assert_eq!(out["checks"], 150);
    let calls = sim.stats()["status_calls"].as_u64().unwrap() - before;
    assert!(calls <= 2, "150 x-stor orders need at most 2 batch requests, not {calls}");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'processing'"), 150);
}

#[test]
fn the_backoff_schedule_is_followed_and_recorded_in_events() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "0s"]);
    let n = o["number"].to_string();
    // poll --wait checks by the schedule until the timeout.
    db.cmd()
        .args([
            "poll",
            &n,
            "--wait",
            "--timeout",
            "2500ms",
            "--first-check",
            "0s",
            "--backoff-base",
            "200ms",
            "--backoff-max",
            "800ms",
        ])
        .run()
        .code(9);
    let events = inspect(&db, &n)["events"].as_array().unwrap().clone();
    let checks: Vec<chrono::DateTime<chrono::Utc>> =
        events.iter().filter(|e| e["kind"] == "check.waiting").map(|e| e["at"].as_str().unwrap().parse().unwrap()).collect();
    assert!(checks.len() >= 4, "{events:?}");
    let gaps: Vec<i64> = checks.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect();
    // 200ms, 400ms, 800ms, 800ms ... each within 10% jitter (plus scheduling slack).
    let expected = [200, 400, 800, 800, 800];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(*gap >= want * 9 / 10 - 5 && *gap <= want * 11 / 10 + 250, "gaps {gaps:?}");
    }
}

#[test]
fn an_order_without_a_final_answer_is_given_up_and_flagged_without_refund() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "freefire-100", &["--first-check", "0s"]);
    let n = o["number"].to_string();
    let out =
        db.cmd().args(["--output", "json", "poll", &n, "--wait", "--timeout", "10s", "--give-up-after", "1s"]).args(FAST).run();
    assert_eq!(out.code, 9, "still pending after giving up: {}", out.stderr);
    let i = inspect(&db, &n);
    assert_eq!(i["status"], "pending");
    assert_eq!(i["external_status"], "failed");
    assert_eq!(i["attention"], "given_up");
    assert_eq!(i["last_message"], "no final answer after 1s");
    assert_eq!(i["diagnosis"]["code"], "given_up");
    assert_eq!(i["next_check_at"], Value::Null);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0);
}

#[test]
fn poll_wait_exits_0_when_final_and_prints_the_pin() {
    let sim = Sim::start(&["--complete-after", "300ms"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "0s"]);
    let out = db
        .cmd()
        .args(["--output", "json", "poll", &o["number"].to_string(), "--wait", "--timeout", "20s"])
        .args(FAST)
        .run()
        .ok()
        .json();
    assert_eq!(out["status"], "approved");
    assert_eq!(out["final"], true);
    let truth = sim.stats()["orders"][0]["pin"].as_str().unwrap().to_string();
    assert_eq!(out["pin_code"], truth.as_str());
    assert!(out["duration_ms"].as_i64().unwrap() >= 0);
}

#[test]
fn two_daemons_and_concurrent_sweeps_share_the_work_without_doing_it_twice() {
    let sim = Sim::start(&["--complete-after", "300ms", "--cancel-share", "0.2", "--seed", "3"]);
    let db = setup(&sim);
    let daemon = |db: &TestDb| {
        db.cmd()
            .args(["daemon", "--sweep-schedule", "*/1 * * * * *", "--concurrency", "4", "--idle-poll", "50ms"])
            .args(FAST)
            .spawn()
    };
    let d1 = daemon(&db);
    let d2 = daemon(&db);
    insert_orders(&db, "pubg-60", 100);
    insert_orders(&db, "freefire-100", 100);
    let url = db.url.clone();
    let sweeper = std::thread::spawn(move || {
        for _ in 0..5 {
            Cmd::new().env("DATABASE_URL", &url).args(["sweep"]).args(FAST).run();
        }
    });
    wait_until("all orders final", Duration::from_secs(90), || open_orders(&db) == 0);
    sweeper.join().unwrap();
    assert_eq!(d1.terminate(), 0, "SIGTERM ends a daemon cleanly");
    assert_eq!(d2.terminate(), 0);
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 200);
    assert_eq!(stats["double_placements"], 0);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    // One batch safety sweep per slot, whoever ran it.
    assert_eq!(db.query_i64("SELECT count(*) FROM (SELECT slot FROM periodic_runs GROUP BY job, slot HAVING count(*) > 1) d"), 0);
    assert!(db.query_i64("SELECT count(*) FROM periodic_runs") >= 1, "the cron schedule fired");
}

#[test]
fn the_daemon_dispatches_an_order_inserted_by_another_program_promptly() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let daemon = db.cmd().args(["daemon", "--idle-poll", "1s"]).spawn();
    // Wait until the daemon listens (its listener's last statement is the LISTEN itself; a
    // connection alone may not have sent it yet, and an insert before it wakes nobody), then insert.
    wait_until("daemon listening", Duration::from_secs(20), || {
        db.query_i64(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'orderctl' AND datname = current_database() AND query = 'LISTEN orderctl_work'",
        ) >= 1
    });
    insert_orders(&db, "pubg-60", 1);
    let start = std::time::Instant::now();
    wait_until("placed", Duration::from_secs(10), || sim.stats()["orders_placed"] == 1);
    assert!(start.elapsed() < Duration::from_millis(900), "woken by the insert, not the 1s idle poll: {:?}", start.elapsed());
    assert_eq!(daemon.terminate(), 0);
}

#[test]
fn a_bad_sweep_schedule_is_refused_with_what_is_wrong() {
    let db = TestDb::new();
    let out = db.cmd().args(["daemon", "--sweep-schedule", "*/5 * * * *"]).run().code(4);
    assert!(out.stderr.contains("has 5 field(s)") && out.stderr.contains("seconds first"), "{}", out.stderr);
    let out = db.cmd().args(["daemon", "--sweep-schedule", "0 61 * * * *"]).run().code(4);
    assert!(out.stderr.contains("not a valid cron expression"), "{}", out.stderr);
    let out = db.cmd().args(["daemon", "--first-check", "soon"]).run().code(2);
    assert!(out.stderr.contains("--first-check"), "{}", out.stderr);
}

#[test]
fn a_stale_result_never_overwrites_a_finished_order() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "0s"]);
    let id: uuid::Uuid = o["id"].as_str().unwrap().parse().unwrap();
    // A worker claims the order, then an operator finishes it, then the worker writes back.
    let mut c = db.client();
    let lane: i64 = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    let q = orderctl::db::claims::LaneQuery::whole(lane, None, None);
    let claimed = orderctl::db::claims::claim_due(&mut c, q, 10, Duration::from_secs(60)).unwrap();
    assert_eq!(claimed.len(), 1);
    db.cmd().args(["approve", &o["number"].to_string(), "--pin", "BY-HAND", "--force"]).run().ok();
    let late = orderctl::domain::lifecycle::Transition {
        external: Some(orderctl::domain::status::ExternalStatus::Processing),
        message: Some("late".into()),
        ..Default::default()
    };
    let written = orderctl::db::transitions::apply(
        &mut c,
        &[orderctl::db::transitions::Write {
            order_id: id,
            lease: Some(claimed[0].1),
            placement: None,
            transition: late,
            steps: vec![],
        }],
    )
    .unwrap();
    assert!(written.is_empty(), "the stale write-back is dropped");
    let i = inspect(&db, &o["number"].to_string());
    assert_eq!(i["status"], "approved");
    assert_eq!(i["pin_code"], "BY-HAND");
}

#[test]
fn a_providers_limit_on_calls_in_flight_holds_across_daemons() {
    let sim = Sim::start(&["--complete-after", "0s", "--latency", "100ms", "--threads", "16"]);
    let db = TestDb::new();
    let mut doc = standard_setup(&sim.base_url);
    doc["tenants"][0]["providers"][0]["max_in_flight"] = serde_json::json!(2);
    db.apply(&doc);
    let daemon = |db: &TestDb| db.cmd().args(["daemon", "--concurrency", "8", "--idle-poll", "50ms"]).args(FAST).spawn();
    let (d1, d2) = (daemon(&db), daemon(&db));
    insert_orders(&db, "pubg-60", 30);
    wait_until("all orders final", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_eq!(d1.terminate(), 0);
    assert_eq!(d2.terminate(), 0);
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 30);
    // 16 threads of two daemons wanted to call at once; Postgres let two through at a time.
    assert_eq!(stats["peak_in_flight"], 2, "{stats}");
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let daemon = db.cmd().env("NOTIFY_SOCKET", &path).args(["daemon"]).spawn();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert_eq!(daemon.terminate(), 0);
    let n = socket.recv(&mut buf).expect("STOPPING=1 on the way out");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn a_batch_of_new_orders_moves_to_the_fallback_when_the_primary_rejects_them() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    // Znet does not know this game: every placement there is a definite rejection.
    db.client()
        .execute("UPDATE package_mappings SET params = '{\"oyun\": \"9999\", \"kupur\": \"60\"}' WHERE params ? 'oyun'", &[])
        .unwrap();
    insert_orders(&db, "pubg-60", 20);
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM orders o JOIN providers p ON p.id = o.provider_id WHERE p.name = 'xstor' AND external_status = 'sent'"), 20);
    assert_eq!(db.query_i64("SELECT count(*) FROM placements WHERE outcome = 'rejected'"), 20);
    assert_eq!(db.query_i64("SELECT count(*) FROM placements WHERE outcome = 'accepted'"), 20);
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 20);
    assert_eq!(stats["double_placements"], 0);
}
