//! Providers as documented (issue 12), end to end: x-stor batch checks by order_id give every
//! order its verdict, and no provider byte (nor any value the database refuses) can hold up the
//! other orders of a batch.

use crate::orders::{inspect, setup};
use crate::reliability::{daemon_timed, DaemonLog, FAST_POLICY};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const QUICK: &[&str] = &["--request-timeout", "2s", "--lease", "5s"];

/// 300 x-stor orders that finish at the provider 1 s after placement are all approved within
/// 15 s of placement, with fewer check requests than orders (batches by order_id work: the
/// documented check entries name no order_uuid), and with the provider's PINs.
#[test]
fn xstor_orders_are_checked_in_batches_by_order_id_and_all_get_their_verdict() {
    let sim = Sim::start(&["--complete-after", "1s", "--threads", "8"]);
    let db = setup(&sim);
    let log = DaemonLog::new();
    let d = db
        .cmd()
        .args(["daemon", "--idle-poll", "50ms", "--first-check", "1s", "--backoff-base", "1s", "--backoff-max", "2s"])
        .args(QUICK)
        .spawn_logged(log.path());
    insert_orders(&db, "freefire-100", 300);
    wait_until("300 approved", Duration::from_secs(60), || {
        db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'") == 300
    });
    assert_eq!(d.terminate(), 0);
    let slowest = db.query_i64("SELECT (max(extract(epoch FROM completed_at - sent_at)) * 1000)::bigint FROM orders");
    assert!(slowest <= 15_000, "every order approved within 15 s of placement; the slowest took {slowest} ms");
    let stats = sim.stats();
    let checks = stats["status_calls"].as_u64().unwrap();
    assert!(checks < 300, "fewer check requests than orders: {checks}");
    assert_eq!(stats["orders_placed"], 300);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE external_order_id IS NULL"), 0, "each kept its order_id");
}

/// A provider that answers every "waiting" with a NUL byte (and a terminal escape) in its text:
/// the other orders finish as if it were not there, and the stored text is clean.
#[test]
fn a_nul_byte_from_a_provider_poisons_nothing() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    // Through the control API: a NUL byte cannot travel in a command line.
    sim.configure(json!({"waiting_note": "Sıra\u{0}da \u{1b}[31mkırmızı"}));
    let fast = Sim::start(&["--complete-after", "1s"]);
    let db = TestDb::new();
    // Znet on the provider with the poisonous text; x-stor on a healthy one.
    let mut doc = standard_setup(&sim.base_url);
    doc["tenants"][0]["providers"][1]["base_url"] = json!(fast.base_url);
    db.apply(&doc);
    let log = DaemonLog::new();
    let d = daemon_timed(&db.url, log.path(), QUICK, &[]);
    insert_orders(&db, "pubg-60", 3);
    insert_orders(&db, "freefire-100", 10);
    wait_until("the x-stor orders approved", Duration::from_secs(30), || {
        db.query_i64(
            "SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id
                        WHERE p.name = 'freefire-100' AND o.status = 'approved'",
        ) == 10
    });
    wait_until("the Znet orders checked", Duration::from_secs(30), || {
        db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'processing'") == 3
    });
    assert_eq!(d.terminate(), 0);
    let text: String = db
        .client()
        .query_one("SELECT last_message FROM orders WHERE external_status = 'processing' LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert!(!text.contains('\u{0}') && !text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("Sıra") && text.contains("kırmızı"), "the readable part is kept: {text:?}");
    let events = db.query_i64("SELECT count(*) FROM order_events WHERE message LIKE '%' || chr(27) || '%'");
    assert_eq!(events, 0, "no escape sequence in the history");
    assert!(!log.text().contains("round failed") && !log.text().contains("refused"), "{}", log.text());
}

/// A value the database refuses for one order (here a constraint planted by the test against
/// one order's PIN) flags that order with the reason; the other orders of the same batch are
/// written as if nothing happened.
#[test]
fn a_result_the_database_refuses_flags_its_order_and_spares_the_batch() {
    let sim = Sim::start(&["--complete-after", "0s", "--seed", "9"]);
    let db = setup(&sim);
    insert_orders(&db, "pubg-60", 6);
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'sent'"), 6);
    // The PIN the provider will give the first order is refused by the database.
    let (number, reference): (i64, String) = {
        let r = db.client().query_one("SELECT number, provider_referans FROM orders ORDER BY number LIMIT 1", &[]).unwrap();
        (r.get(0), r.get(1))
    };
    let pin = orderctl::simulator::order_fate(9, &reference, 0.0, Duration::ZERO, Duration::ZERO).pin;
    db.client()
        .batch_execute(&format!(
            "ALTER TABLE orders ADD CONSTRAINT test_refuses_one_pin CHECK (pin_code IS DISTINCT FROM '{pin}')"
        ))
        .unwrap();
    db.client().execute("UPDATE orders SET next_check_at = now()", &[]).unwrap();
    let out = db.cmd().args(["--output", "json", "sweep"]).args(FAST_POLICY).run().ok().json();
    assert_eq!(out["approved"], 5, "{out}");
    let refused = inspect(&db, &number.to_string());
    assert_eq!(
        (refused["status"].as_str(), refused["attention"].as_str()),
        (Some("pending"), Some("write_refused")),
        "{refused}"
    );
    assert!(refused["last_message"].as_str().unwrap().contains("test_refuses_one_pin"), "{refused}");
    assert_eq!(refused["diagnosis"]["stuck"], true);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 5);
    assert_money_conserved(&db);
}
