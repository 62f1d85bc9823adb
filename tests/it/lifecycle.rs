//! The order lifecycle, scenario by scenario (issue 11): no order loops, hides, or loses a
//! provider's answer. Each test is one of the numbered scenarios that the earlier design got
//! wrong, against the built-in simulator.

use crate::orders::{create, inspect, setup};
use crate::reliability::{daemon_timed, DaemonLog, FAST_POLICY};
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A lease of 5 s and a 1 s request timeout (with `short_reconcile_window`, "not found" means
/// "never arrived" 5 s after a placement was claimed).
const LEASE_5S: &[&str] = &["--request-timeout", "1s", "--lease", "5s"];

fn order(db: &TestDb, number: i64) -> Value {
    inspect(db, &number.to_string())
}

fn only_order_number(db: &TestDb, package: &str) -> i64 {
    db.client()
        .query_one("SELECT o.number FROM orders o JOIN packages p ON p.id = o.package_id WHERE p.name = $1", &[&package])
        .unwrap()
        .get(0)
}

fn stuck_numbers(db: &TestDb, limit: &str) -> Vec<i64> {
    let out = db.cmd().args(["--output", "json", "list", "--stuck", "--limit", limit]).run().ok().json();
    out.as_array().unwrap().iter().map(|o| o["number"].as_i64().unwrap()).collect()
}

/// Every provider's reconcile window 5 s (the default is 10 minutes): "not found" 5 s after a
/// placement means it never arrived.
fn short_reconcile_window(db: &TestDb) {
    db.client().execute("UPDATE providers SET reconcile_for_ms = 5000", &[]).unwrap();
}

/// 60 manual orders created an hour ago, waiting for an operator by design (never stuck).
fn sixty_older_manual_orders(db: &TestDb) {
    insert_orders(db, "jawaker", 60);
    db.client().execute("UPDATE orders SET created_at = now() - interval '1 hour', next_check_at = NULL", &[]).unwrap();
}

/// Scenario 1: the first placement is lost before the provider took it (HTTP 500),
/// reconciliation finds nothing within the provider's window, and the provider refuses the
/// re-placement. That refusal proves nothing about the first placement (issue 20): the order is
/// flagged `may_be_held` within two leases of it, after at most 3 placement calls, never
/// refunded, and `list --stuck --limit 50` names it although 60 older orders wait for an operator.
#[test]
fn scenario_1_a_refused_re_placement_flags_the_order_instead_of_looping() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    short_reconcile_window(&db);
    sixty_older_manual_orders(&db);
    sim.configure(json!({"error_share": 1.0, "reject_replacements": true}));
    let log = DaemonLog::new();
    let d = daemon_timed(&db.url, log.path(), LEASE_5S, &[]);
    insert_orders(&db, "freefire-100", 1);
    let n = only_order_number(&db, "freefire-100");
    wait_until("the first placement lost", Duration::from_secs(20), || sim.stats()["placement_calls"].as_u64().unwrap() >= 1);
    sim.configure(json!({"error_share": 0.0}));
    wait_until("the order flagged", Duration::from_secs(40), || order(&db, n)["attention"] == "may_be_held");
    assert_eq!(d.terminate(), 0);

    let o = order(&db, n);
    assert_eq!((o["status"].as_str(), o["external_status"].as_str()), (Some("pending"), Some("dispatching")), "{o}");
    assert_eq!(o["diagnosis"]["stuck"], true);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "no silent refund");
    let calls = sim.stats()["placement_calls"].as_u64().unwrap();
    assert!((2..=3).contains(&calls), "a lost call and a refused re-placement, at most 3: {calls}");
    // The refusal and the flag are one write, far inside two leases.
    let gap_ms = db.query_i64(
        "SELECT (extract(epoch FROM (SELECT max(at) FROM order_events WHERE kind = 'dispatch')
                              - (SELECT finished_at FROM placements WHERE outcome = 'rejected')) * 1000)::bigint",
    );
    assert!(gap_ms.abs() <= 10_000, "flagged {gap_ms} ms after the refusal");
    assert!(stuck_numbers(&db, "50").contains(&n), "list --stuck --limit 50 names it behind 60 manual orders");
}

/// Scenario 2: the primary's refusal and the move to the fallback are one write. A fallback
/// that cannot start now (its provider at its limit of calls in flight) is scheduled in its
/// lane, never left pointing at the refused reference, and goes out once it can.
#[test]
fn scenario_2_a_refusal_and_the_move_to_the_fallback_are_one_write() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    // Znet does not know this game (a definite refusal); every x-stor permit is held elsewhere.
    db.client()
        .execute("UPDATE package_mappings SET params = '{\"oyun\": \"9999\", \"kupur\": \"60\"}' WHERE params ? 'oyun'", &[])
        .unwrap();
    db.client()
        .execute(
            "INSERT INTO provider_permits (provider_id, slot, holder, expires_at)
             SELECT id, s, 'another-daemon', now() + interval '1 hour' FROM providers, generate_series(0, max_in_flight - 1) s
              WHERE name = 'xstor'",
            &[],
        )
        .unwrap();
    let o = create(&db, "pubg-60", &[]);
    assert_eq!(o["provider"], "xstor", "{o}");
    assert_eq!(o["external_status"], "not_sent");
    assert_eq!(o["attention"], Value::Null);
    assert_eq!(o["provider_referans"], Value::Null, "never left pointing at the refused reference");
    assert_eq!(o["diagnosis"]["code"], "waiting_for_dispatch", "{}", o["diagnosis"]);
    let placements = inspect(&db, &o["number"].to_string())["placements"].clone();
    assert_eq!(placements.as_array().unwrap().len(), 1);
    assert_eq!(placements[0]["outcome"], "rejected");

    db.client().execute("DELETE FROM provider_permits WHERE holder = 'another-daemon'", &[]).unwrap();
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    let after = inspect(&db, &o["number"].to_string());
    assert_eq!((after["provider"].as_str(), after["external_status"].as_str()), (Some("xstor"), Some("sent")), "{after}");
    assert_eq!(sim.stats()["orders_placed"], 1);
}

/// Scenario 3: a re-placement that stops on configuration (the provider was disabled after the
/// first placement was lost) is recorded: the order is flagged, not claimed again every lease.
#[test]
fn scenario_3_a_re_placement_stopped_by_configuration_is_flagged() {
    let sim = Sim::start(&["--complete-after", "1h", "--error-share", "1"]);
    let db = setup(&sim);
    short_reconcile_window(&db);
    let o = create(&db, "freefire-100", &[&["--request-timeout", "1s"][..], FAST_POLICY].concat());
    assert_eq!(o["awaiting_reconciliation"], true, "{o}");
    sim.configure(json!({"error_share": 0.0}));
    db.client().execute("UPDATE providers SET enabled = false WHERE name = 'xstor'", &[]).unwrap();
    let log = DaemonLog::new();
    let d = daemon_timed(&db.url, log.path(), LEASE_5S, &[]);
    let n = o["number"].as_i64().unwrap();
    wait_until("the order flagged", Duration::from_secs(30), || order(&db, n)["attention"] == "provider_disabled");
    let leases = db.query_i64("SELECT lease FROM orders");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(db.query_i64("SELECT lease FROM orders"), leases, "nothing claims a flagged order again");
    assert_eq!(d.terminate(), 0);
    let i = order(&db, n);
    assert_eq!(i["diagnosis"]["code"], "provider_disabled");
    assert!(i["diagnosis"]["sentence"].as_str().unwrap().contains("disabled"), "{}", i["diagnosis"]);
    assert_eq!(sim.stats()["placement_calls"], 1, "only the lost call went out");
}

/// Scenario 4: a placement whose claim grew too old to finish inside its lease is never sent
/// (a call may take a whole request timeout, and another worker may reconcile the order once
/// the lease ends). It is recorded as not sent and placed again with the same reference.
#[test]
fn scenario_4_a_placement_older_than_its_lease_is_never_sent() {
    use orderctl::db::{claims, transitions};
    use orderctl::dispatch::{claim::claim_for_provider, place, record, Providers, Timing};
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "freefire-100", &["--no-dispatch"]);
    let id: uuid::Uuid = o["id"].as_str().unwrap().parse().unwrap();
    let timing = Timing { lease: Duration::from_millis(600), request_timeout: Duration::from_millis(300) };
    let providers = Providers::new(Default::default(), Default::default());
    let mut c = db.client();
    let mut tx = c.transaction().unwrap();
    let row = claims::lock_ids(&mut tx, &[id], true).unwrap().pop().unwrap();
    let lp = providers.get(&mut tx, row.facts.lane).unwrap();
    let job = claim_for_provider(&mut tx, &lp, vec![row], timing).unwrap().places.pop().unwrap();
    tx.commit().unwrap();
    let reference = job.reference().to_string();
    // The claim ages past the point where a call could still end inside its lease.
    std::thread::sleep(Duration::from_millis(350));
    let placed = place::placement(job, lp.adapter.as_ref().unwrap().as_ref(), timing);
    assert!(matches!(placed.sent, place::Sent::NotSent(_)), "{:?}", placed.sent);
    assert_eq!(sim.stats()["placement_calls"], 0, "nothing went out");
    let mut tx = c.transaction().unwrap();
    let w = record::placed(&mut tx, &lp, &placed).unwrap();
    assert_eq!(transitions::apply(&mut tx, &[w]).unwrap().len(), 1, "its lease still held: the write counts");
    tx.commit().unwrap();
    let i = inspect(&db, &o["number"].to_string());
    assert_eq!(
        (i["external_status"].as_str(), i["provider_referans"].as_str()),
        (Some("not_sent"), Some(reference.as_str())),
        "{i}"
    );
    assert_eq!(i["placements"][0]["outcome"], "not_sent");
    assert!(i["events"].to_string().contains("not sent"), "{}", i["events"]);
    // Placed again, with the same reference, exactly once.
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    let stats = sim.stats();
    assert_eq!((stats["orders_placed"].as_u64(), stats["double_placements"].as_u64()), (Some(1), Some(0)));
    assert_eq!(stats["orders"][0]["reference"], reference.as_str());
}

/// Scenario 5: rejecting (or approving) an order its provider holds is refused without
/// --force; forced, it is refunded and still watched, the provider's late delivery is stored
/// and flagged, and an operator settles it, in the ledger and the history.
#[test]
fn scenario_5_a_forced_reject_keeps_watching_and_a_late_delivery_is_settled() {
    let sim = Sim::start(&["--complete-after", "3s"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "0s"]);
    let n = o["number"].to_string();
    let out = db.cmd().args(["reject", &n, "--reason", "buyer asked"]).run().code(5);
    assert!(out.stderr.contains("its provider holds it") && out.stderr.contains("--force"), "{}", out.stderr);
    let out = db.cmd().args(["approve", &n, "--pin", "BY-HAND"]).run().code(5);
    assert!(out.stderr.contains("--force"), "{}", out.stderr);

    db.cmd().args(["reject", &n, "--reason", "buyer asked", "--force"]).run().ok();
    let i = inspect(&db, &n);
    assert_eq!((i["status"].as_str(), i["external_status"].as_str()), (Some("rejected"), Some("sent")), "{i}");
    assert_eq!(i["refunded"], "1.10");
    assert_eq!(i["diagnosis"]["code"], "watched_after_decision");

    // The provider delivers after all.
    wait_until("delivered at the provider", Duration::from_secs(10), || sim.stats()["orders"][0]["final"] == true);
    db.cmd().args(["poll", &n]).args(FAST_POLICY).run().ok();
    let i = inspect(&db, &n);
    let truth = sim.stats()["orders"][0]["pin"].as_str().unwrap().to_string();
    assert_eq!(i["late_pin"], truth.as_str(), "the late PIN is stored: {i}");
    assert_eq!(i["attention"], "delivered_after_refund");
    assert!(stuck_numbers(&db, "10").contains(&i["number"].as_i64().unwrap()));
    let doctor = db.cmd().args(["--output", "json", "doctor"]).run().code(8).json();
    assert!(doctor.to_string().contains("delivered (reference"), "doctor names it: {doctor}");

    // Settled: the buyer keeps it and pays again, once.
    db.cmd().args(["settle", &n, "--recharge"]).run().ok();
    let i = inspect(&db, &n);
    assert_eq!((i["status"].as_str(), i["pin_code"].as_str()), (Some("approved"), Some(truth.as_str())), "{i}");
    assert_eq!(i["attention"], Value::Null);
    // The same settlement again (a script's retry): already done, nothing moves.
    let again = db.cmd().args(["settle", &n, "--recharge"]).run().ok();
    assert!(again.stderr.contains("already settled"), "{}", again.stderr);
    let ledger = |kind: &str| db.query_i64(&format!("SELECT count(*) FROM ledger WHERE kind = '{kind}'"));
    assert_eq!((ledger("charge"), ledger("refund"), ledger("recharge")), (1, 1, 1));
    let balance: String = db.client().query_one("SELECT balance::text FROM users WHERE name = 'halil'", &[]).unwrap().get(0);
    assert_eq!(balance, "998.90", "charged, refunded, charged again");
    assert!(i["events"].to_string().contains("operator.settled"));
    assert_money_conserved(&db);
}

/// Scenario 5, the write-off: a forced approval by hand, then the provider delivers too.
#[test]
fn scenario_5_a_delivery_after_a_manual_approval_is_written_off() {
    let sim = Sim::start(&["--complete-after", "3s"]);
    let db = setup(&sim);
    let o = create(&db, "freefire-100", &["--first-check", "0s"]);
    let n = o["number"].to_string();
    db.cmd().args(["approve", &n, "--pin", "BY-HAND", "--force"]).run().ok();
    wait_until("delivered at the provider", Duration::from_secs(10), || sim.stats()["orders"][0]["final"] == true);
    db.cmd().args(["poll", &n]).args(FAST_POLICY).run().ok();
    let i = inspect(&db, &n);
    assert_eq!(i["attention"], "delivered_after_manual_approval", "{i}");
    assert_eq!(i["pin_code"], "BY-HAND");
    db.cmd().args(["settle", &n, "--recharge"]).run().code(5);
    db.cmd().args(["settle", &n, "--write-off"]).run().ok();
    let i = inspect(&db, &n);
    assert_eq!((i["status"].as_str(), i["attention"].clone()), (Some("approved"), Value::Null));
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'write_off' AND amount = 0"), 1);
}

/// Scenario 6: re-dispatching an order whose provider refused it for lack of balance (it waits
/// for the provider, issue 23) to a provider that is disabled stops on configuration; the order
/// stays dispatchable, and its diagnosis says what to do.
#[test]
fn scenario_6_a_stopped_re_dispatch_is_no_dead_end() {
    let sim = Sim::start(&["--complete-after", "1h", "--reject-share", "1"]);
    let db = setup(&sim);
    let o = create(&db, "freefire-100", &[]);
    assert_eq!(o["external_status"], "waiting_for_provider", "{o}");
    let n = o["number"].to_string();
    sim.configure(json!({"reject_share": 0.0}));
    db.cmd().args(["provider", "resume", "xstor"]).run().ok();
    db.client().execute("UPDATE providers SET enabled = false WHERE name = 'znet-main'", &[]).unwrap();
    let out = db.cmd().args(["--output", "json", "dispatch", &n, "--provider", "znet-main"]).run().code(8);
    assert_eq!(out.json()["attention"], "provider_disabled");
    let diagnosis = inspect(&db, &n)["diagnosis"].clone();
    assert!(diagnosis["sentence"].as_str().unwrap().contains("orderctl dispatch"), "{diagnosis}");
    // What the diagnosis says works.
    let out = db.cmd().args(["--output", "json", "dispatch", &n]).run().ok().json();
    assert_eq!((out["provider"].as_str(), out["external_status"].as_str()), (Some("xstor"), Some("sent")), "{out}");
}

/// Scenario 7: stuck orders are found before any limit: 60 older manual orders waiting for an
/// operator never make a report say "0 stuck".
#[test]
fn scenario_7_stuck_orders_are_never_hidden_by_a_limit() {
    let sim = Sim::start(&["--complete-after", "1h", "--reject-share", "1"]);
    let db = setup(&sim);
    sixty_older_manual_orders(&db);
    let refused = create(&db, "freefire-100", &[])["number"].as_i64().unwrap();
    assert_eq!(stuck_numbers(&db, "50"), vec![refused]);
    assert_eq!(stuck_numbers(&db, "1"), vec![refused]);
    let stats = db.cmd().args(["--output", "json", "stats"]).run().ok().json();
    assert_eq!(stats["stuck_count"], 1);
    let doctor = db.cmd().args(["--output", "json", "doctor"]).run().code(8).json();
    let stuck: Vec<&Value> = doctor["findings"].as_array().unwrap().iter().filter(|f| f["check"] == "stuck").collect();
    assert!(stuck[0]["message"].as_str().unwrap().contains(&format!("order {refused}")), "{doctor}");
    let sweep = db.cmd().args(["--output", "json", "sweep"]).run().ok().json();
    assert_eq!(sweep["stuck"].as_array().unwrap().len(), 1);
}

/// Scenario 8: `create` always reports an order whose charge committed (exit 0, with what
/// happened to its dispatch), and a retry with the same request id charges nothing.
#[test]
fn scenario_8_create_reports_a_charged_order_and_a_retry_charges_nothing() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    // The immediate dispatch fails after the charge committed (the database refuses its claim).
    db.client()
        .batch_execute(
            "CREATE FUNCTION refuse_claims() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'placements are refused for this test'; END $$;
             CREATE TRIGGER refuse_claims BEFORE INSERT ON placements FOR EACH ROW EXECUTE FUNCTION refuse_claims();",
        )
        .unwrap();
    let o = create(&db, "pubg-60", &["--request-id", "cart-42"]);
    assert_eq!((o["status"].as_str(), o["external_status"].as_str()), (Some("pending"), Some("not_sent")), "{o}");
    assert_eq!(o["dispatch"]["deferred"], true, "{o}");
    assert!(o["dispatch"]["message"].as_str().unwrap().contains("sweep"), "{o}");
    // The script retries: the same order, nothing charged again.
    let again = create(&db, "pubg-60", &["--request-id", "cart-42"]);
    assert_eq!(again["id"], o["id"]);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'charge'"), 1);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 1);
    // The same key for another order is a mistake, said so.
    let out = db
        .cmd()
        .args(CREATE_AS_HALIL)
        .args(["--package", "freefire-100", "--player", "1", "--request-id", "cart-42"])
        .run()
        .code(5);
    assert!(out.stderr.contains("already used"), "{}", out.stderr);
    // Once the database takes claims again, the order goes out.
    db.client().batch_execute("DROP TRIGGER refuse_claims ON placements").unwrap();
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(order(&db, o["number"].as_i64().unwrap())["external_status"], "sent");
}

/// Scenario 9: `poll --wait` follows the schedule even while every answer is no news; a check
/// the safety sweep adds never counts past the budget; a re-placement starts its schedule again.
#[test]
fn scenario_9_the_schedule_is_the_lifecycles_alone() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "0s"]);
    let n = o["number"].to_string();
    sim.configure(json!({"garbage_share": 1.0}));
    let before = sim.stats()["status_calls"].as_u64().unwrap();
    // No news at every check; the next one is 30 s away: within 7 s, one check only (the
    // earlier design asked every 5 s while no answer had been counted).
    db.cmd().args(["poll", &n, "--wait", "--timeout", "7s", "--first-check", "0s", "--backoff-base", "30s"]).run().code(9);
    assert_eq!(sim.stats()["status_calls"].as_u64().unwrap() - before, 1);
    sim.configure(json!({"garbage_share": 0.0}));

    // Out of checks: a safety sweep's extra check does not count past the budget.
    db.client().execute("UPDATE orders SET checks = 3, sent_at = now() - interval '2 minutes'", &[]).unwrap();
    db.cmd().args(["sweep", "--max-checks", "3"]).run().ok();
    let i = inspect(&db, &n);
    assert_eq!(i["checks"], 3, "{i}");
    assert!(i["events"].to_string().contains("no checks left"), "{}", i["events"]);
}
