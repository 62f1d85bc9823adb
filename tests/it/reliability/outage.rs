//! A provider that answers 500, hangs past the timeout, answers empty, garbage or HTML: orders
//! wait and back off, none is failed or cancelled for lack of news, no panic; once the
//! provider recovers everything completes.

use super::*;
use crate::orders::setup;
use serde_json::json;
use std::time::Instant;

/// The standard setup plus a provider whose base URL points at a web page (the simulator
/// serves HTML for unknown paths), and a package routed to it.
fn with_wrong_base_url(sim: &Sim, base_url: &str) -> serde_json::Value {
    let mut s = standard_setup(&sim.base_url);
    let t = &mut s["tenants"][0];
    t["providers"].as_array_mut().unwrap().push(json!(
        {"name": "znet-site", "kind": "znet", "base_url": base_url, "credentials": {"kod": "bayi1", "sifre": "s3cret-znet"},
         "reconcile_for": SIM_RECONCILE_FOR}
    ));
    t["packages"].as_array_mut().unwrap().push(json!(
        {"name": "pubg-325", "product": "PUBG Mobile", "price": "5.00",
         "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-site"},
         "mappings": {"znet-site": {"oyun": "7001", "kupur": "325"}}}
    ));
    s
}

fn sum_no_news(db: &TestDb) -> i64 {
    db.query_i64("SELECT coalesce(sum(no_news), 0)::bigint FROM orders")
}

#[test]
fn an_outage_of_errors_hangs_empty_garbage_and_html_fails_no_order_and_everything_completes_after() {
    let sim = Sim::start(&["--complete-after", "3s", "--cancel-share", "0.2", "--seed", "21", "--hang", "2s"]);
    let db = setup(&sim);
    db.apply(&with_wrong_base_url(&sim, &format!("{}/bayi/anasayfa", sim.base_url)));
    let out = db.cmd().args(["--tenant", "alsham", "provider", "check", "znet-site"]).run().code(7);
    assert!(out.stderr.contains("HTML"), "a wrong base URL is named as such: {}", out.stderr);

    let log = DaemonLog::new();
    // Enough checks for the whole outage: no-news answers count as checks, and running out of
    // checks (then waiting for the give-up limit) is not what is tested here.
    let enough_checks = ["-v", "--max-checks", "1000", "--round-size", "25"];
    let d = daemon(&db.url, log.path(), &enough_checks);
    insert_orders(&db, "pubg-60", 40);
    insert_orders(&db, "freefire-100", 40);
    insert_orders(&db, "pubg-325", 10);
    wait_until("healthy orders placed", Duration::from_secs(30), || sim.stats()["orders_placed"] == 80);

    // The outage: each kind of bad answer for a stretch (at least a second, until the orders
    // have seen it); new orders keep arriving.
    let outage_started = Instant::now();
    let stretches = [
        ("HTTP 500", json!({"error_share": 1.0})),
        ("hang past the timeout", json!({"error_share": 0.0, "hang_share": 1.0})),
        ("empty body", json!({"hang_share": 0.0, "empty_share": 1.0})),
        ("garbage bytes", json!({"empty_share": 0.0, "garbage_share": 1.0})),
    ];
    let mut no_news = sum_no_news(&db);
    for (i, (what, settings)) in stretches.into_iter().enumerate() {
        sim.configure(settings);
        insert_orders(&db, if i % 2 == 0 { "pubg-60" } else { "freefire-100" }, 5);
        // A round writes its results back when its slowest call is over: with every call
        // hanging until the timeout, that takes a while.
        let stretch = Instant::now();
        wait_until(&format!("{what}: no news counted"), Duration::from_secs(30), || {
            sum_no_news(&db) > no_news + 20 && stretch.elapsed() > Duration::from_millis(1000)
        });
        no_news = sum_no_news(&db);
    }
    let outage = outage_started.elapsed();
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status <> 'pending'"), 0, "no order finished on a bad answer");
    assert_eq!(
        db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'failed' OR attention IS NOT NULL"),
        0,
        "none failed or flagged"
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "nothing refunded");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE next_check_at IS NULL"), 0, "every order still scheduled");
    // Backing off, not hammering: no order was asked more often than the base delay allows.
    let most = db.query_i64("SELECT max(no_news)::bigint FROM orders");
    let bound = (outage.as_millis() / 100) as i64 + 2;
    assert!(
        most >= 2 && most <= bound,
        "an order saw {most} no-news answers in {outage:?} (at most {bound} with a 100ms base delay)"
    );
    let html = db.query_i64(
        "SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id
          WHERE p.name = 'pubg-325' AND o.external_status = 'dispatching' AND o.awaiting_reconciliation AND o.last_message LIKE '%HTML%'",
    );
    assert_eq!(html, 10, "orders sent to a web page wait for reconciliation, saying why");

    // Recovery: the provider answers again, the operator fixes the base URL and restarts.
    sim.configure(json!({"garbage_share": 0.0, "complete_after": "300ms"}));
    wait_until("every order at the healthy provider final", Duration::from_secs(60), || {
        db.query_i64("SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id WHERE o.status = 'pending' AND p.name <> 'pubg-325'") == 0
    });
    db.apply(&with_wrong_base_url(&sim, &sim.base_url));
    assert_eq!(d.terminate(), 0, "the daemon lived through the outage and stops cleanly");
    let d = daemon(&db.url, log.path(), &enough_checks);
    wait_all_final(&db, Duration::from_secs(60));
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());

    assert_placed_once(&sim, 110);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}
