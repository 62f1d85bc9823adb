//! The command line itself, and the claim and shutdown promises at their smallest.

use crate::orders::{create, setup};
use crate::support::*;
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn help_never_shows_the_database_url_and_usage_errors_exit_2() {
    for args in [vec!["--help"], vec!["daemon", "--help"], vec!["create", "--help"]] {
        let out = Cmd::new().env("DATABASE_URL", "postgres://u:Hunter2DbPass@db/x").args(&args).run().ok();
        assert!(!out.stdout.contains("Hunter2DbPass") && !out.stderr.contains("Hunter2DbPass"), "{}", out.stdout);
        assert!(out.stdout.contains("DATABASE_URL"), "the variable is named, not its value");
    }
    let out = Cmd::new().args(["frobnicate"]).run().code(2);
    assert!(out.stderr.contains("unrecognized subcommand"), "{}", out.stderr);
    let out = Cmd::new().args(["create", "--user"]).run().code(2);
    assert!(out.stderr.contains("--user"), "{}", out.stderr);
    let out = Cmd::new()
        .args(["--tenant", "alsham", "create", "--user", "u", "--package", "p", "--player", "1", "--first-check", "soon"])
        .run()
        .code(2);
    assert!(out.stderr.contains("--first-check"), "{}", out.stderr);
    let out = Cmd::new()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        .args(["create", "--user", "u", "--package", "p", "--player", "1"])
        .run()
        .code(2);
    assert!(out.stderr.contains("needs a tenant"), "{}", out.stderr);
}

#[test]
fn a_daemon_with_a_database_url_that_cannot_work_stops_at_once() {
    let out = Cmd::new().env("DATABASE_URL", "definitely not a url").args(["daemon"]).run().code(4);
    assert!(out.stderr.contains("the database URL is not valid"), "{}", out.stderr);
}

#[test]
fn json_errors_are_machine_readable() {
    let db = TestDb::new();
    let out = db.cmd().args(["--output", "json", "inspect", "424242"]).run().code(3);
    let err: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(err["error"], "not-found");
    assert_eq!(err["exit_code"], 3);
    assert!(err["hint"].as_str().unwrap().contains("orderctl list"));
}

/// Manual orders wait in the routing lane (0).
fn routing_lane() -> orderctl::db::claims::LaneQuery {
    orderctl::db::claims::LaneQuery::whole(0, None, None)
}

#[test]
fn concurrent_claims_never_hand_one_order_to_two_workers() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    for _ in 0..40 {
        create(&db, "jawaker", &["--no-dispatch"]);
    }
    // Make all 40 due at once, as if they were waiting for dispatch.
    db.client().execute("UPDATE orders SET next_check_at = now() - interval '1 second'", &[]).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut c = orderctl::db::connect(&url).unwrap();
                let mut mine = Vec::new();
                for _ in 0..5 {
                    mine.extend(
                        orderctl::db::claims::claim_due(&mut c, routing_lane(), 3, Duration::from_secs(60))
                            .unwrap()
                            .into_iter()
                            .map(|(id, _)| id),
                    );
                }
                mine
            })
        })
        .collect();
    let all: Vec<uuid::Uuid> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), unique.len(), "an order was claimed twice within its lease");
    assert_eq!(unique.len(), 40, "every due order was claimed once");
    assert_eq!(
        orderctl::db::claims::claim_due(&mut db.client(), routing_lane(), 100, Duration::from_secs(60)).unwrap().len(),
        0,
        "nothing comes due again before its lease ends"
    );
}

#[test]
fn sigterm_during_work_exits_0_and_leaves_nothing_half_done() {
    let sim = Sim::start(&["--complete-after", "0s", "--latency", "300ms"]);
    let db = setup(&sim);
    let fast =
        ["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "200ms", "--lease", "4s", "--request-timeout", "2s"];
    let daemon = db.cmd().args(["daemon", "--concurrency", "8", "--idle-poll", "50ms"]).args(fast).spawn();
    for _ in 0..16 {
        create(&db, "pubg-60", &["--no-dispatch"]);
    }
    // Stop it while placements are in flight.
    wait_until("placements in flight", Duration::from_secs(20), || sim.stats()["placement_calls"].as_u64().unwrap() > 0);
    let started = std::time::Instant::now();
    assert_eq!(daemon.terminate(), 0);
    assert!(started.elapsed() < Duration::from_secs(5), "stopped within its bound: {:?}", started.elapsed());
    // Whatever it left is picked up by the next worker: everything completes, nothing twice.
    wait_until("all final", Duration::from_secs(60), || {
        db.cmd().args(["sweep"]).args(fast).run().ok();
        db.query_i64("SELECT count(*) FROM orders WHERE status = 'pending'") == 0
    });
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 16);
    assert_eq!(stats["double_placements"], 0);
}
