//! Never two providers for one order while the first may hold it (issue 20, "Why" bullet 1):
//! a dealer site that records a placement late, with a fallback provider ready, against the
//! daemon alone and the daemon with `poll` beside it. The reconcile window is the provider's
//! (`reconcile_for`), the same for every path; a refused re-placement proves nothing and flags
//! the order `may_be_held` instead of moving it.

use crate::orders::inspect;
use crate::reliability::{daemon, DaemonLog};
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The standard setup, with Znet's reconcile window set (None: the default, 10 minutes).
fn setup_with_window(sim: &Sim, reconcile_for: Option<&str>) -> TestDb {
    let mut s = standard_setup(&sim.base_url);
    let znet = s["tenants"][0]["providers"][0].as_object_mut().unwrap();
    match reconcile_for {
        Some(w) => znet.insert("reconcile_for".into(), json!(w)),
        None => znet.remove("reconcile_for"),
    };
    let db = TestDb::new();
    db.apply(&s);
    db
}

fn only_order(db: &TestDb) -> i64 {
    db.query_i64("SELECT number FROM orders")
}

/// How many placements each protocol of the simulator recorded: (znet, xstor).
fn recorded_by(sim: &Sim) -> (usize, usize) {
    let st = sim.stats();
    let orders = st["orders"].as_array().unwrap();
    let n = |p: &str| orders.iter().filter(|o| o["provider"] == p).count();
    (n("znet"), n("xstor"))
}

fn providers_placed_at(db: &TestDb) -> i64 {
    db.query_i64("SELECT count(DISTINCT provider_id) FROM placements")
}

/// Znet holds the placement call 3 s and only then records the order; the daemon's request
/// timeout is 500 ms and its lease 2 s, so it reconciles long before Znet records. "Not found"
/// inside Znet's window is no news: nothing is placed again, the fallback never hears of the
/// order, and the order ends approved by Znet.
#[test]
fn a_late_recording_provider_is_never_joined_by_the_fallback_daemon_alone() {
    let sim =
        Sim::start(&["--complete-after", "500ms", "--slow-record-share", "1", "--slow-record", "3s", "--reject-replacements"]);
    let db = setup_with_window(&sim, None);
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 1);
    let n = only_order(&db);
    wait_until("the order approved", Duration::from_secs(40), || inspect(&db, &n.to_string())["status"] == "approved");
    assert_eq!(d.terminate(), 0);
    assert_eq!(recorded_by(&sim), (1, 0), "Znet holds it, x-stor never got it");
    assert_eq!(sim.stats()["placement_calls"], 1, "placed once");
    assert_eq!(providers_placed_at(&db), 1);
    // The unknown outcome stays recorded; what the check found is kept beside it.
    let (outcome, reconciled): (String, Option<String>) = {
        let r = db.client().query_one("SELECT outcome, reconciled FROM placements", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((outcome.as_str(), reconciled.as_deref()), ("ambiguous", Some("found")));
    assert_money_conserved(&db);
}

/// The second path: an operator polls the order with a short request timeout while the
/// daemon reconciles it. `poll` judges by the same window as the daemon (not by three of its own
/// request timeouts): it never places again, and the fallback never gets the order.
#[test]
fn a_late_recording_provider_is_never_joined_by_the_fallback_with_poll_beside_the_daemon() {
    let sim =
        Sim::start(&["--complete-after", "500ms", "--slow-record-share", "1", "--slow-record", "4s", "--reject-replacements"]);
    let db = setup_with_window(&sim, None);
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 1);
    let n = only_order(&db).to_string();
    wait_until("the first placement call", Duration::from_secs(20), || sim.stats()["placement_calls"].as_u64() >= Some(1));
    wait_until("the order approved", Duration::from_secs(40), || {
        // Exit codes vary with what each poll found (unknown outcome, waiting, approved).
        db.cmd().args(["poll", &n, "--request-timeout", "300ms", "--first-check", "0s"]).run();
        inspect(&db, &n)["status"] == "approved"
    });
    assert_eq!(d.terminate(), 0);
    assert_eq!(recorded_by(&sim), (1, 0), "Znet holds it, x-stor never got it");
    assert_eq!(sim.stats()["placement_calls"], 1, "placed once");
    assert_eq!(providers_placed_at(&db), 1);
    assert_money_conserved(&db);
}

/// Znet's window is short (2 s) and Znet records only after 8 s: after the window the order is
/// placed again with the same reference, and Znet refuses it (the reference is in use). That
/// refusal is ambiguous: the order is flagged `may_be_held`, never sent to x-stor, never
/// refunded; `list --stuck` says so and `dispatch` exits 8. Both attempts keep their outcome.
#[test]
fn a_refused_re_placement_flags_may_be_held_and_goes_nowhere_else() {
    let sim = Sim::start(&["--complete-after", "1h", "--slow-record-share", "1", "--slow-record", "8s", "--reject-replacements"]);
    let db = setup_with_window(&sim, Some("2s"));
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 1);
    let n = only_order(&db).to_string();
    wait_until("the order flagged", Duration::from_secs(30), || inspect(&db, &n)["attention"] == "may_be_held");
    assert_eq!(d.terminate(), 0);
    let o: Value = inspect(&db, &n);
    assert_eq!((o["status"].as_str(), o["external_status"].as_str()), (Some("pending"), Some("dispatching")), "{o}");
    let reference = o["provider_referans"].as_str().unwrap().to_string();
    assert_eq!(providers_placed_at(&db), 1, "never placed at the fallback");
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "never refunded by itself");
    let attempts: Vec<(i32, String, Option<String>)> = db
        .client()
        .query("SELECT attempt, outcome, reconciled FROM placements ORDER BY attempt", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        attempts,
        vec![(1, "ambiguous".to_string(), Some("absent".to_string())), (2, "rejected".to_string(), None)],
        "each attempt keeps its own outcome"
    );
    let stuck = db.cmd().args(["--output", "json", "list", "--stuck"]).run().ok().json();
    let sentence = stuck[0]["diagnosis"]["sentence"].as_str().unwrap_or_default().to_string();
    assert!(
        sentence.contains(&format!("may be held by znet-main under reference {reference}: check before rejecting")),
        "{stuck}"
    );
    let out = db.cmd().args(["dispatch", &n]).run().code(8);
    assert!(out.stderr.contains("may be held"), "{}", out.stderr);
    assert_eq!(recorded_by(&sim).1, 0, "x-stor never got it");
}

/// The safety sweep never re-opens an order whose check is in flight ("Why" bullet 8): a
/// claimed check (its lease an hour ahead) of an order sent 10 minutes ago stays claimed through
/// a sweep, and the provider is not asked about it; the same order unclaimed is checked.
#[test]
fn the_safety_sweep_leaves_a_check_in_flight_alone() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup_with_window(&sim, None);
    let n = crate::orders::create(&db, "freefire-100", &["--first-check", "1h"])["number"].to_string();
    assert_eq!(inspect(&db, &n)["external_status"], "sent");
    // Another worker's check of it is in flight: claimed now, its lease an hour ahead.
    db.client()
        .execute(
            "UPDATE orders SET sent_at = now() - interval '10 minutes', claimed_at = now(),
                               next_check_at = now() + interval '1 hour', lease = lease + 1",
            &[],
        )
        .unwrap();
    let before = sim.stats()["status_calls"].as_u64().unwrap();
    let report = db.cmd().args(["--output", "json", "sweep"]).run().ok().json();
    assert_eq!(report["safety_sweep"]["made_due"], 0, "{report}");
    assert_eq!(sim.stats()["status_calls"].as_u64().unwrap(), before, "not checked a second time");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE next_check_at > now() + interval '50 minutes'"), 1);
    // Without a claim in force (its own schedule simply far away), the safety sweep takes it.
    db.client().execute("UPDATE orders SET claimed_at = NULL", &[]).unwrap();
    db.client().execute("DELETE FROM periodic_runs", &[]).unwrap();
    let report = db.cmd().args(["--output", "json", "sweep"]).run().ok().json();
    assert_eq!(report["safety_sweep"]["made_due"], 1, "{report}");
    assert!(sim.stats()["status_calls"].as_u64().unwrap() > before);
}
