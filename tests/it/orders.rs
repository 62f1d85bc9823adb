//! Create and dispatch: money, exactly-once placement, fallback, reconciliation, codes,
//! operator decisions, and `inspect` explaining every state.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

pub fn setup(sim: &Sim) -> TestDb {
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    db
}

/// `orderctl create` as JSON; extra args (e.g. --no-dispatch) appended.
pub fn create(db: &TestDb, package: &str, extra: &[&str]) -> Value {
    db.cmd()
        .args(["--tenant", "alsham", "--output", "json", "create", "--user", "halil", "--package", package, "--player", "123456"])
        .args(extra)
        .run()
        .ok()
        .json()
}

pub fn inspect(db: &TestDb, order: &str) -> Value {
    db.cmd().args(["--output", "json", "inspect", order]).run().ok().json()
}

fn balance(db: &TestDb) -> String {
    db.client().query_one("SELECT balance::text FROM users WHERE name = 'halil'", &[]).unwrap().get(0)
}

fn placements_at_sim(sim: &Sim) -> (u64, u64, u64) {
    let s = sim.stats();
    (s["orders_placed"].as_u64().unwrap(), s["placement_calls"].as_u64().unwrap(), s["double_placements"].as_u64().unwrap())
}

#[test]
fn create_charges_the_buyer_and_places_the_order_once() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--first-check", "60s"]);
    assert_eq!(o["status"], "pending");
    assert_eq!(o["external_status"], "sent");
    assert_eq!(o["provider"], "znet-main");
    assert_eq!(o["price"], "1.10");
    // Znet takes only numbers: epoch milliseconds and the order number, 18 digits.
    let referans = o["provider_referans"].as_str().unwrap();
    assert!(referans.len() == 18 && referans.bytes().all(|b| b.is_ascii_digit()), "{referans}");
    assert!(o["number"].as_i64().unwrap() >= 1000);
    assert_eq!(o["diagnosis"]["code"], "waiting_for_check");
    assert_eq!(balance(&db), "998.90");
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'charge'"), 1);
    assert_eq!(placements_at_sim(&sim), (1, 1, 0));
    // Every named step is in the order's history.
    // The history: the charge, then one entry for the whole dispatch carrying its steps.
    let events = inspect(&db, o["id"].as_str().unwrap())["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["created", "dispatch"], "at most three rows per order: {events:?}");
    let steps: Vec<&str> = events[1]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, vec!["claim", "place", "record"], "{events:?}");
    let claim = events[1]["steps"][0]["message"].as_str().unwrap();
    assert!(claim.contains(referans) && claim.contains("committed before sending"), "{claim}");
    assert!(events[1]["message"].as_str().unwrap().contains("first status check in 1m"), "{events:?}");
}

#[test]
fn a_failed_create_writes_nothing_and_charges_nothing() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let base = ["--tenant", "alsham", "create", "--player", "1"];
    let out = db.cmd().args(base).args(["--user", "halil", "--package", "nope"]).run().code(3);
    assert!(out.stderr.contains("package 'nope' does not exist in tenant alsham"), "{}", out.stderr);
    db.cmd().args(base).args(["--user", "ghost", "--package", "pubg-60"]).run().code(3);
    let out = db.cmd().args(base).args(["--user", "halil", "--package", "itunes-10", "--quantity", "101"]).run().code(5);
    assert!(out.stderr.contains("insufficient balance"), "{}", out.stderr);
    db.cmd().args(base).args(["--user", "halil", "--package", "pubg-60", "--quantity=-1"]).run().code(4);
    db.client().execute("UPDATE packages SET enabled = false WHERE name = 'jawaker'", &[]).unwrap();
    let out = db.cmd().args(base).args(["--user", "halil", "--package", "jawaker"]).run().code(5);
    assert!(out.stderr.contains("disabled"), "{}", out.stderr);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 0);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'charge'"), 0);
    assert_eq!(balance(&db), "1000.00");
}

#[test]
fn ten_concurrent_dispatches_of_one_order_place_it_exactly_once() {
    let sim = Sim::start(&["--complete-after", "1h", "--latency", "50ms"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--no-dispatch"]);
    let number = o["number"].to_string();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let url = db.url.clone();
            let number = number.clone();
            std::thread::spawn(move || Cmd::new().env("DATABASE_URL", &url).args(["dispatch", &number]).run())
        })
        .collect();
    let codes: Vec<i32> = handles.into_iter().map(|h| h.join().unwrap().code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "exactly one dispatch wins: {codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 5), "the others are refused: {codes:?}");
    assert_eq!(placements_at_sim(&sim), (1, 1, 0));
    assert_eq!(db.query_i64("SELECT count(*) FROM placements"), 1);
}

/// An operator's dispatch that waits for a permit (every one held by another process, for a
/// second) decides once and places once: waiting never repeats the decision or its history.
#[test]
fn a_dispatch_waiting_for_a_permit_decides_once_and_places_once() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "freefire-100", &["--no-dispatch"]);
    db.client()
        .execute(
            "INSERT INTO provider_permits (provider_id, slot, holder, expires_at)
             SELECT id, s, 'another-daemon', now() + interval '1 second' FROM providers, generate_series(0, max_in_flight - 1) s
              WHERE name = 'xstor'",
            &[],
        )
        .unwrap();
    let out = db.cmd().args(["--output", "json", "dispatch", &o["number"].to_string(), "--first-check", "1h"]).run().ok().json();
    assert_eq!(out["external_status"], "sent", "{out}");
    assert_eq!(placements_at_sim(&sim), (1, 1, 0));
    let kinds: Vec<String> = db
        .client()
        .query("SELECT kind FROM order_events WHERE order_id = $1::text::uuid ORDER BY id", &[&o["id"].as_str().unwrap()])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The charge, the decision, its routing, the placement: however long it waited.
    assert_eq!(kinds, ["created", "operator.dispatch", "dispatch", "dispatch"], "{kinds:?}");
}

#[test]
fn a_new_reference_already_recorded_for_another_order_is_never_sent() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    // x-stor's first reference for an order is the order's own id. Another order's placement
    // already holds that reference at x-stor (as a clock set back would make a numeric one).
    let taken = create(&db, "freefire-100", &["--first-check", "1h"]);
    let taken_id = taken["id"].as_str().unwrap();
    let poison = |id: &str| {
        db.client().execute("UPDATE placements SET referans = $1 WHERE order_id = $2::text::uuid", &[&id, &taken_id]).unwrap();
    };
    let o = create(&db, "freefire-100", &["--no-dispatch"]);
    let id = o["id"].as_str().unwrap();
    poison(id);
    let out = db.cmd().args(["dispatch", &o["number"].to_string()]).run();
    assert_eq!(out.code, 8, "flagged for an operator: {}", out.stderr);
    assert!(out.stderr.contains("already recorded for another order at xstor; nothing was sent"), "{}", out.stderr);
    // Nothing was sent, the order holds no reference, and the other order's placement is its own.
    assert_eq!(placements_at_sim(&sim).1, 1, "only the first order's placement reached the provider");
    let row =
        db.client().query_one("SELECT external_status, provider_referans FROM orders WHERE id = $1::text::uuid", &[&id]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, Option<String>>(1)), ("not_sent".to_string(), None));
    assert_eq!(db.query_i64(&format!("SELECT count(*) FROM placements WHERE referans = '{id}' AND order_id = '{taken_id}'")), 1);
    let stuck = db.cmd().args(["--output", "json", "list", "--stuck"]).run().ok().json();
    let flagged: Vec<&str> = stuck.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(flagged, vec![id], "list --stuck shows it: {stuck}");

    // In a batch, only that order stops: the others of the lane are placed.
    insert_orders(&db, "freefire-100", 3);
    let batch: Vec<String> = db
        .client()
        .query("SELECT id::text FROM orders WHERE external_status = 'not_sent' AND attention IS NULL ORDER BY number", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    poison(&batch[1]);
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(placements_at_sim(&sim).1, 3, "the two other orders of the batch were placed");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE attention = 'write_refused'"), 2);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'sent'"), 3);
}

#[test]
fn fallback_provider_takes_the_order_when_the_primary_rejects_it() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    // Znet does not know this game: a definite rejection.
    db.client()
        .execute("UPDATE package_mappings SET params = '{\"oyun\": \"9999\", \"kupur\": \"60\"}' WHERE params ? 'oyun'", &[])
        .unwrap();
    let o = create(&db, "pubg-60", &[]);
    assert_eq!(o["external_status"], "sent");
    assert_eq!(o["provider"], "xstor");
    let i = inspect(&db, o["id"].as_str().unwrap());
    let references: Vec<&str> = i["placements"].as_array().unwrap().iter().map(|p| p["referans"].as_str().unwrap()).collect();
    assert_eq!(references.len(), 2);
    assert_ne!(references[0], references[1], "the fallback gets a reference of its own");
    let outcomes: Vec<(&str, &str)> = i["placements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["provider"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, vec![("znet-main", "rejected"), ("xstor", "accepted")]);
    assert_eq!(placements_at_sim(&sim).0, 1);
}

#[test]
fn a_rejection_without_fallback_leaves_the_order_for_an_operator_without_refund() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    db.client()
        .execute("UPDATE package_mappings SET params = '{\"product_id\": \"999\"}' WHERE params ? 'product_id'", &[])
        .unwrap();
    let out = db.cmd().args(CREATE_AS_HALIL).args(["--package", "freefire-100", "--player", "7"]).run().ok();
    let o = out.json();
    assert_eq!(o["status"], "pending");
    assert_eq!(o["external_status"], "failed");
    assert_eq!(o["diagnosis"]["code"], "placement_rejected");
    let sentence = o["diagnosis"]["sentence"].as_str().unwrap();
    assert!(sentence.to_lowercase().contains("product not found") && sentence.contains("orderctl reject"), "{sentence}");
    assert_eq!(balance(&db), "998.00", "no silent refund");
    // The operator fixes the mapping and dispatches again: a new reference, placed once.
    db.client()
        .execute("UPDATE package_mappings SET params = '{\"product_id\": \"502\"}' WHERE params ? 'product_id'", &[])
        .unwrap();
    let again =
        db.cmd().args(["--output", "json", "dispatch", o["id"].as_str().unwrap(), "--first-check", "1h"]).run().ok().json();
    assert_eq!(again["external_status"], "sent");
    assert_ne!(again["provider_referans"], o["provider_referans"]);
    assert_eq!(placements_at_sim(&sim).0, 1);
}

#[test]
fn a_dispatch_killed_after_committing_its_reference_is_reconciled_without_a_second_placement() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    // Two orders claimed by a dispatcher that then died: one reached the provider, one did not.
    let reached = create(&db, "pubg-60", &["--no-dispatch"]);
    let lost = create(&db, "pubg-60", &["--no-dispatch"]);
    for o in [&reached, &lost] {
        db.client()
            .execute(
                "UPDATE orders SET external_status = 'dispatching', provider_id = (SELECT id FROM providers WHERE name = 'znet-main'),
                        provider_referans = ((extract(epoch from clock_timestamp()) * 1000)::bigint * 100000 + number % 100000)::text,
                        dispatched_at = now() - interval '10 minutes',
                        next_check_at = now() - interval '1 second'
                  WHERE number = $1",
                &[&o["number"].as_i64().unwrap()],
            )
            .unwrap();
        db.client()
            .execute(
                "INSERT INTO placements (order_id, provider_id, referans, order_created_at)
                 SELECT id, provider_id, provider_referans, created_at FROM orders WHERE number = $1",
                &[&o["number"].as_i64().unwrap()],
            )
            .unwrap();
    }
    let referans = |o: &Value| -> String {
        db.client()
            .query_one("SELECT provider_referans FROM orders WHERE number = $1", &[&o["number"].as_i64().unwrap()])
            .unwrap()
            .get(0)
    };
    // The first one did reach the provider before the crash.
    let url = format!(
        "{}/servis/pin_ekle.php?kod=bayi1&sifre=s3cret-znet&oyun=7001&kupur=60&referans={}&musteri_tel=&oyuncu_bilgi=123456",
        sim.base_url,
        referans(&reached)
    );
    let body = ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(body.starts_with("OK|"), "{body}");

    db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
    let (placed, _, doubles) = placements_at_sim(&sim);
    assert_eq!(doubles, 0, "never placed twice");
    assert_eq!(placed, 2, "the lost one was placed again (with its own reference), the other was found");
    for o in [&reached, &lost] {
        let i = inspect(&db, o["id"].as_str().unwrap());
        assert_eq!(i["provider_referans"], referans(o), "the reference is kept");
        assert!(matches!(i["external_status"].as_str().unwrap(), "sent" | "processing" | "done"), "{i}");
    }
    let lost_events = inspect(&db, lost["id"].as_str().unwrap())["events"].to_string();
    assert!(lost_events.contains("reconcile.absent"), "{lost_events}");
}

#[test]
fn an_ambiguous_placement_is_reconciled_both_ways() {
    // Hang: the provider took the order but the answer never came in time.
    let sim = Sim::start(&["--complete-after", "0s", "--hang-share", "1", "--hang", "2s"]);
    let db = setup(&sim);
    let out = db
        .cmd()
        .args(["--request-timeout", "300ms"])
        .args(CREATE_AS_HALIL)
        .args(["--package", "freefire-100", "--player", "9"])
        .run()
        .ok();
    let o = out.json();
    assert_eq!(o["external_status"], "dispatching");
    assert_eq!(o["awaiting_reconciliation"], true);
    assert_eq!(o["diagnosis"]["code"], "awaiting_reconciliation");
    // A second dispatch never places it blindly.
    let again = db.cmd().args(["dispatch", &o["number"].to_string()]).run().code(5);
    assert!(again.stderr.contains("awaits reconciliation"), "{}", again.stderr);
    sim.configure(json!({"hang_share": 0.0}));
    let polled = db.cmd().args(["--output", "json", "poll", &o["number"].to_string()]).run().ok().json();
    assert_eq!(polled["status"], "approved", "found at the provider and finished: {polled}");
    assert_eq!(placements_at_sim(&sim), (1, 1, 0));

    // 500: the provider never took it. Reconciliation finds nothing and places it again, same reference.
    sim.configure(json!({"error_share": 1.0}));
    // x-stor's reconcile window: 2 s (the default is 10 minutes).
    db.client().execute("UPDATE providers SET reconcile_for_ms = 2000 WHERE name = 'xstor'", &[]).unwrap();
    let o2 = create(&db, "freefire-100", &[]);
    assert_eq!(o2["awaiting_reconciliation"], true);
    sim.configure(json!({"error_share": 0.0}));
    // "Not found" counts only once the provider's reconcile window has passed since the
    // placement; until then it is no news, and poll --wait keeps asking.
    db.cmd()
        .args(["--request-timeout", "300ms", "poll", &o2["number"].to_string(), "--wait", "--timeout", "20s"])
        .args(["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "200ms"])
        .run()
        .ok();
    let i = inspect(&db, o2["id"].as_str().unwrap());
    assert_eq!(i["status"], "approved", "{i}");
    assert_eq!(i["provider_referans"], o2["id"]);
    let (placed, calls, doubles) = placements_at_sim(&sim);
    assert_eq!((placed, doubles), (2, 0));
    assert_eq!(calls, 3, "one lost call, one re-placement, plus the first order");
}

#[test]
fn codes_are_handed_out_under_concurrency_without_ever_giving_one_twice() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                Cmd::new()
                    .env("DATABASE_URL", &url)
                    .args(CREATE_AS_HALIL)
                    .args(["--package", "itunes-10", "--player", &format!("p{i}")])
                    .run()
            })
        })
        .collect();
    let outs: Vec<Output> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut pins: Vec<String> = Vec::new();
    let mut empty = 0;
    for out in &outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        let o = out.json();
        match o["status"].as_str().unwrap() {
            "approved" => pins.push(o["pin_code"].as_str().unwrap().to_string()),
            "pending" => {
                assert_eq!(o["diagnosis"]["code"], "code_stock_empty");
                empty += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    pins.sort();
    assert_eq!(pins, vec!["AAAA-1111", "BBBB-2222", "CCCC-3333"]);
    assert_eq!(empty, 3);
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items WHERE state = 'used'"), 3);
}

#[test]
fn reject_refunds_exactly_once_and_finished_orders_never_flip() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let o = create(&db, "jawaker", &[]);
    assert_eq!(o["diagnosis"]["code"], "waiting_for_operator");
    assert_eq!(balance(&db), "998.00");
    let n = o["number"].to_string();
    db.cmd().args(["reject", &n, "--reason", "player id does not exist"]).run().ok();
    // The same command again is already done; another reason is a conflict that says what stands.
    db.cmd().args(["reject", &n, "--reason", "player id does not exist"]).run().ok();
    let other = db.cmd().args(["reject", &n, "--reason", "again"]).run().code(5);
    assert!(other.stderr.contains("player id does not exist"), "{}", other.stderr);
    assert_eq!(balance(&db), "1000.00");
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 1);
    let out = db.cmd().args(["approve", &n, "--pin", "X"]).run().code(5);
    assert!(out.stderr.contains("stands rejected"), "{}", out.stderr);
    let i = inspect(&db, &n);
    assert_eq!(i["status"], "rejected");
    assert_eq!(i["refunded"], "2.00");
    assert_eq!(i["diagnosis"]["code"], "rejected_refunded");

    let o = create(&db, "jawaker", &[]);
    let n = o["number"].to_string();
    let a = db.cmd().args(["--output", "json", "approve", &n, "--pin", "PIN-42"]).run().ok().json();
    assert_eq!(a["status"], "approved");
    assert_eq!(a["pin_code"], "PIN-42");
    db.cmd().args(["reject", &n, "--reason", "oops"]).run().code(5);
    assert_eq!(balance(&db), "998.00");
}

#[test]
fn the_incident_order_explains_itself_instead_of_staying_silently_pending() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    // Older data, written before the constraint existed.
    let mut c = db.client();
    c.batch_execute(
        "ALTER TABLE packages DROP CONSTRAINT routing_auto_cannot_be_manual;
         UPDATE packages SET routing_mode = 'auto', provider_type = 'manual', primary_provider_id = NULL, fallback_provider_id = NULL
          WHERE name = 'pubg-60';",
    )
    .unwrap();
    let o = create(&db, "pubg-60", &[]);
    assert_eq!(o["external_status"], "not_sent");
    assert_eq!(o["diagnosis"]["code"], "routing_auto_without_provider");
    assert!(o["diagnosis"]["stuck"].as_bool().unwrap());
    let sentence = o["diagnosis"]["sentence"].as_str().unwrap();
    assert!(sentence.contains("routing for package pubg-60 is auto but has no provider"), "{sentence}");
    assert!(sentence.contains("set routing.primary"), "{sentence}");
    let stuck = db.cmd().args(["--output", "json", "list", "--stuck"]).run().ok().json();
    assert_eq!(stuck[0]["number"], o["number"]);
}

#[test]
fn inspect_diagnoses_every_configuration_stop() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let mut c = db.client();

    c.execute("DELETE FROM package_mappings WHERE params ? 'product_id'", &[]).unwrap();
    let o = create(&db, "freefire-100", &[]);
    assert_eq!(o["diagnosis"]["code"], "no_mapping");
    assert!(o["diagnosis"]["sentence"].as_str().unwrap().contains("no mapping for provider xstor"));

    c.execute("UPDATE providers SET enabled = false WHERE name = 'znet-main'", &[]).unwrap();
    c.execute("UPDATE packages SET fallback_provider_id = NULL WHERE name = 'pubg-60'", &[]).unwrap();
    let o = create(&db, "pubg-60", &[]);
    assert_eq!(o["diagnosis"]["code"], "provider_disabled");
    assert!(o["diagnosis"]["sentence"].as_str().unwrap().contains("provider znet-main is disabled"));

    c.execute("UPDATE code_items SET state = 'used', order_id = gen_random_uuid()", &[]).unwrap();
    let o = create(&db, "itunes-10", &[]);
    assert_eq!(o["diagnosis"]["code"], "code_stock_empty");

    // Fixed: enabling the provider lets an operator send the order.
    c.execute("UPDATE providers SET enabled = true WHERE name = 'znet-main'", &[]).unwrap();
    let pubg = db.cmd().args(["--output", "json", "list", "--package", "pubg-60"]).run().ok().json();
    let n = pubg[0]["number"].to_string();
    let sent = db.cmd().args(["--output", "json", "dispatch", &n]).run().ok().json();
    assert_eq!(sent["external_status"], "sent");
    assert_eq!(sent["diagnosis"]["code"], "waiting_for_check");
}

#[test]
fn dry_run_shows_the_request_with_secrets_masked_and_changes_nothing() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--no-dispatch"]);
    let out = db.cmd().args(["-vv", "dispatch", &o["number"].to_string(), "--dry-run"]).run().ok();
    assert!(out.stdout.contains("pin_ekle.php"), "{}", out.stdout);
    assert!(out.stdout.contains("oyun=7001"), "{}", out.stdout);
    assert!(!out.stdout.contains("s3cret-znet") && !out.stderr.contains("s3cret-znet"), "{}{}", out.stdout, out.stderr);
    assert_eq!(placements_at_sim(&sim).1, 0);
    let i = inspect(&db, o["id"].as_str().unwrap());
    assert_eq!(i["external_status"], "not_sent");
    assert_eq!(i["events"].as_array().unwrap().len(), 1, "only the created event");
}

#[test]
fn order_ids_are_checked_and_tenant_scope_hides_other_tenants_orders() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let o = create(&db, "jawaker", &[]);
    let out = db.cmd().args(["inspect", "not-an-id"]).run().code(4);
    assert!(out.stderr.contains("neither an order uuid nor an order number"), "{}", out.stderr);
    db.cmd().args(["inspect", "999999"]).run().code(3);
    db.cmd().args(["inspect", "00000000-0000-0000-0000-000000000000"]).run().code(3);
    let mut other = standard_setup(&sim.base_url);
    other["tenants"][0]["name"] = json!("other");
    db.apply(&other);
    let out = db.cmd().args(["--tenant", "other", "inspect", &o["number"].to_string()]).run().code(3);
    assert!(out.stderr.contains("does not exist in tenant other"), "{}", out.stderr);
    db.cmd().args(["--tenant", "other", "reject", o["id"].as_str().unwrap(), "--reason", "x"]).run().code(3);
    assert_eq!(inspect(&db, &o["number"].to_string())["status"], "pending");
    let _ = Duration::ZERO;
}

#[test]
fn an_operator_can_send_an_order_to_another_provider_than_routing_names() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--no-dispatch"]);
    let out = db.cmd().args(["-v", "--output", "json", "dispatch", &o["number"].to_string(), "--provider", "xstor"]).run().ok();
    let sent = out.json();
    assert_eq!(sent["provider"], "xstor");
    assert_eq!(sent["external_status"], "sent");
    assert!(
        out.stderr.contains("operator's choice of provider: to be placed with xstor"),
        "steps are logged with -v: {}",
        out.stderr
    );
    let stats = sim.stats();
    assert_eq!(stats["orders"][0]["provider"], "xstor");
    let out = db.cmd().args(["dispatch", &o["number"].to_string(), "--provider", "nope"]).run().code(5);
    assert!(out.stderr.contains("already with its provider"), "{}", out.stderr);
}

#[test]
fn an_operator_choice_of_a_retired_provider_is_refused_and_nothing_is_sent() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &["--no-dispatch"]);
    let n = o["number"].to_string();
    // A spare provider, named once and then dropped from the file with --prune.
    let mut with_spare = standard_setup(&sim.base_url);
    let spare = json!({"name": "spare", "kind": "xstor", "base_url": sim.base_url, "credentials": {"api_token": "t"}});
    with_spare["tenants"][0]["providers"].as_array_mut().unwrap().push(spare);
    db.apply(&with_spare);
    db.cmd().args(["apply", "-f", "-", "--prune"]).stdin(standard_setup(&sim.base_url).to_string()).run().ok();
    let out = db.cmd().args(["dispatch", &n, "--provider", "spare"]).run().code(5);
    assert!(out.stderr.contains("provider spare was retired"), "{}", out.stderr);
    assert_eq!(inspect(&db, &n)["status"], "pending", "the order stays where it was");
    assert_eq!(sim.stats()["orders"].as_array().map_or(0, |a| a.len()), 0, "nothing reached a provider");
}

fn order_ids_finding(db: &TestDb, tenant: Option<&str>) -> Value {
    let mut cmd = db.cmd();
    if let Some(t) = tenant {
        cmd = cmd.args(["--tenant", t]);
    }
    let report: Value = serde_json::from_str(&cmd.args(["--output", "json", "doctor"]).run().stdout).unwrap();
    doctor_finding(&report, "order-ids").unwrap()
}

/// The milliseconds since the epoch that a version 7 id starts with (RFC 9562).
fn id_millis(id: &uuid::Uuid) -> i64 {
    let b = id.as_bytes();
    i64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

#[test]
fn new_orders_get_time_ordered_ids_and_a_writer_may_still_give_its_own() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let clock = || db.query_i64("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
    let before = clock();
    let o = create(&db, "pubg-60", &["--no-dispatch"]);
    // A web app that leaves the id to the column's default, and one that gives its own random id.
    insert_orders(&db, "pubg-60", 50);
    assert_eq!(order_ids_finding(&db, None)["severity"], "ok");
    insert_order_of(&db, "alsham", "pubg-60", 1, "legacy");
    let after = clock();
    let rows = db
        .client()
        .query("SELECT id, user_identifier FROM orders ORDER BY number", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, uuid::Uuid>(0), r.get::<_, String>(1)))
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 52);
    assert_eq!(rows[0].0.to_string(), o["id"].as_str().unwrap());
    let (minted, given) = rows.split_at(51);
    let mut last = before;
    for (id, player) in minted {
        assert_eq!(id.get_version_num(), 7, "{id} of {player}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        // The database's clock at the insert, never going back in the order the rows came.
        let millis = id_millis(id);
        assert!(millis >= last && millis <= after, "{id} says {millis}, not within {last}..={after}");
        last = millis;
    }
    let distinct: std::collections::HashSet<_> = minted.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), minted.len(), "ids minted in one statement are all different");
    assert_eq!(given[0].1, "legacy");
    assert_eq!(given[0].0.get_version_num(), 4, "a writer's own id is kept as given");
    // doctor names the writer that gives its own ids, to its tenant only.
    let finding = order_ids_finding(&db, None);
    assert_eq!(finding["severity"], "warn", "{finding}");
    assert!(finding["message"].as_str().unwrap().starts_with("1 of the latest 52 orders"), "{finding}");
    assert!(finding["fix"].as_str().unwrap().contains("leave `id` out"), "{finding}");
    let mut other = standard_setup(&sim.base_url);
    other["tenants"][0]["name"] = json!("other");
    db.apply(&other);
    assert_eq!(order_ids_finding(&db, Some("other"))["severity"], "ok");
    // Both kinds go through the lifecycle alike.
    db.cmd().args(["sweep"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'not_sent'"), 0);
}
