//! Goods are never cut, dropped or stalled (issue 20, "Why" bullets 2, 3 and 7): a code-stock
//! order of quantity N gets N codes and never halts routing for anyone; one order whose result
//! the database refuses is flagged while its batch goes on; a provider's 20 codes and an object
//! PIN are stored whole; an approval without a PIN for a product that delivers PINs is flagged.

use crate::orders::inspect;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const FAST: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];

/// A second tenant with its own Znet provider and package, beside the standard one.
fn two_tenants(sim: &Sim) -> TestDb {
    let mut s = standard_setup(&sim.base_url);
    s["tenants"].as_array_mut().unwrap().push(json!({
        "name": "beta",
        "users": [{"name": "halil", "balance": "100.00"}],
        "providers": [{"name": "znet-beta", "kind": "znet", "base_url": sim.base_url, "credentials": {"kod": "b", "sifre": "b"}}],
        "packages": [{"name": "pubg-beta", "product": "PUBG Mobile", "price": "1.00",
                      "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-beta"},
                      "mappings": {"znet-beta": {"oyun": "7001", "kupur": "60"}}}]
    }));
    let db = TestDb::new();
    db.apply(&s);
    db
}

fn number_of(db: &TestDb, player: &str) -> String {
    db.query_i64(&format!("SELECT number FROM orders WHERE user_identifier = '{player}'")).to_string()
}

/// The reproduction: a code order of quantity 2 and another tenant's Znet order in the
/// same sweep. Both are handled: the code order gets two distinct codes in one go, the Znet
/// order is placed, and the sweep exits 0. `create --quantity 2` is approved with two codes too.
#[test]
fn a_quantity_2_code_order_gets_2_codes_and_stalls_nobody() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = two_tenants(&sim);
    insert_order_of(&db, "alsham", "itunes-10", 2, "code-buyer");
    insert_order_of(&db, "beta", "pubg-beta", 1, "znet-buyer");
    let report = db.cmd().args(["--output", "json", "sweep"]).args(FAST).run().ok().json();
    assert_eq!(report["lanes_failed"], json!([]), "{report}");
    let codes = inspect(&db, &number_of(&db, "code-buyer"));
    assert_eq!(codes["status"], "approved", "{codes}");
    let pin = codes["pin_code"].as_str().unwrap();
    let mut got: Vec<&str> = pin.split(", ").collect();
    got.dedup();
    assert_eq!(got.len(), 2, "two distinct codes: {pin}");
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items WHERE state = 'used'"), 2);
    let znet = inspect(&db, &number_of(&db, "znet-buyer"));
    assert_ne!(znet["external_status"], "not_sent", "the other tenant's order was placed: {znet}");
    assert_eq!(sim.stats()["orders_placed"], 1);

    let made =
        db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "p2", "--quantity", "1"]).run().ok().json();
    assert_eq!(made["status"], "approved", "{made}");
    let refused = db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "p3", "--quantity", "2"]).run();
    // No code left for two: the order waits, flagged, with what to do; nothing was handed out twice.
    let o = refused.ok().json();
    assert_eq!(o["attention"], "code_stock_empty", "{o}");
    assert_eq!(db.query_i64("SELECT count(DISTINCT order_id) FROM code_items WHERE state = 'used'"), 2);
    assert_money_conserved(&db);
}

/// One order whose result the database refuses (a constraint that fires for it alone) is
/// flagged `write_refused` with the reason, `inspect` and `list --stuck` show it, and the rest
/// of its routing batch is delivered; the sweep exits 0.
#[test]
fn one_order_the_database_refuses_is_flagged_and_its_batch_goes_on() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = two_tenants(&sim);
    db.client()
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.user_identifier = 'poison' AND NEW.status = 'approved' THEN
                     RAISE EXCEPTION 'poisoned order' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER poison BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .unwrap();
    insert_order_of(&db, "alsham", "itunes-10", 1, "first");
    insert_order_of(&db, "alsham", "itunes-10", 1, "poison");
    insert_order_of(&db, "alsham", "itunes-10", 1, "last");
    insert_order_of(&db, "beta", "pubg-beta", 1, "znet-buyer");
    let report = db.cmd().args(["--output", "json", "sweep"]).args(FAST).run().ok().json();
    assert_eq!(report["lanes_failed"], json!([]), "{report}");
    for p in ["first", "last"] {
        assert_eq!(inspect(&db, &number_of(&db, p))["status"], "approved", "{p}");
    }
    let poisoned = inspect(&db, &number_of(&db, "poison"));
    assert_eq!(poisoned["attention"], "write_refused", "{poisoned}");
    assert!(poisoned["last_message"].as_str().unwrap().contains("poisoned order"), "{poisoned}");
    let stuck = db.cmd().args(["--output", "json", "list", "--stuck"]).run().ok().json();
    let line = stuck
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["number"].as_i64().map(|v| v.to_string()) == Some(number_of(&db, "poison")))
        .cloned();
    assert!(line.is_some_and(|o| o["diagnosis"]["sentence"].as_str().unwrap().contains("poisoned order")), "{stuck}");
    assert_ne!(inspect(&db, &number_of(&db, "znet-buyer"))["external_status"], "not_sent");
    // Its code went back: only the two approved orders hold one.
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items WHERE state = 'used'"), 2);
}

/// An x-stor-shaped endpoint on 127.0.0.1 that answers every call with `reply` (the documented
/// `newOrder` shape): the provider's exact words, whatever they are.
struct Canned {
    url: String,
    reply: Arc<Mutex<String>>,
}

impl Canned {
    fn start() -> Canned {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let reply = Arc::new(Mutex::new(String::new()));
        let r = reply.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = r.lock().unwrap().clone();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Canned { url, reply }
    }
    fn answer(&self, pin: Option<Value>) {
        let mut data = json!({"order_id": "9001", "status": "accept", "price": "1.00", "note": "done"});
        if let Some(p) = pin {
            data["pin"] = p;
        }
        *self.reply.lock().unwrap() = json!({"status": "OK", "data": data}).to_string();
    }
}

fn canned_setup(url: &str) -> TestDb {
    let db = TestDb::new();
    db.apply(&json!({"tenants": [{
        "name": "alsham",
        "users": [{"name": "halil", "balance": "1000.00"}],
        "providers": [{"name": "xstor", "kind": "xstor", "base_url": url, "credentials": {"api_token": "t"}}],
        "packages": [
            {"name": "cards", "product": "Cards", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "xstor"},
             "mappings": {"xstor": {"product_id": "501", "player_param": "playerId"}}},
            {"name": "pins", "product": "Pins", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "xstor"},
             "mappings": {"xstor": {"product_id": "502", "player_param": "playerId", "delivers_pin": true}}}
        ]
    }]}));
    db
}

fn create_canned(db: &TestDb, package: &str, quantity: &str) -> Value {
    db.cmd().args(CREATE_AS_HALIL).args(["--package", package, "--player", "42", "--quantity", quantity]).run().ok().json()
}

/// 20 codes of 40 characters (800 in all, far beyond any message cap) are stored whole.
#[test]
fn twenty_codes_from_x_stor_are_stored_whole() {
    let x = Canned::start();
    let db = canned_setup(&x.url);
    let codes: Vec<String> = (1..=20).map(|i| format!("PIN{i:03}-{}", "ABCDEFGHIJ".repeat(3) + "XYZ")).collect();
    x.answer(Some(json!(codes)));
    let o = create_canned(&db, "cards", "20");
    assert_eq!(o["status"], "approved", "{o}");
    let stored = db.client().query_one("SELECT pin_code FROM orders", &[]).unwrap().get::<_, String>(0);
    assert_eq!(stored, codes.join(", "), "every code whole");
    assert!(!stored.contains("[cut]"));
}

/// A PIN given as an object, or a list of objects, is kept as the provider's JSON text.
#[test]
fn an_object_pin_is_kept_as_the_providers_json() {
    let x = Canned::start();
    let db = canned_setup(&x.url);
    x.answer(Some(json!({"code": "CODE-1", "serial": "SER-1"})));
    create_canned(&db, "cards", "1");
    x.answer(Some(json!([{"code": "CODE-2", "serial": "SER-2"}, {"code": "CODE-3", "serial": "SER-3"}])));
    create_canned(&db, "cards", "2");
    let pins: Vec<Option<String>> =
        db.client().query("SELECT pin_code FROM orders ORDER BY number", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let first: Value = serde_json::from_str(pins[0].as_deref().unwrap()).unwrap();
    assert_eq!(first, json!({"code": "CODE-1", "serial": "SER-1"}));
    let second: Value = serde_json::from_str(pins[1].as_deref().unwrap()).unwrap();
    assert_eq!(second, json!([{"code": "CODE-2", "serial": "SER-2"}, {"code": "CODE-3", "serial": "SER-3"}]));
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 2);
}

/// A product that delivers PINs (mapping `delivers_pin: true`) approved without one is flagged
/// `pin_missing`, not approved; the operator's approve with the PIN finishes it.
#[test]
fn an_approval_without_the_pin_a_product_delivers_is_flagged() {
    let x = Canned::start();
    let db = canned_setup(&x.url);
    x.answer(None);
    let o = create_canned(&db, "pins", "1");
    assert_eq!((o["status"].as_str(), o["attention"].as_str()), (Some("pending"), Some("pin_missing")), "{o}");
    let n = o["number"].to_string();
    let stuck = db.cmd().args(["--output", "json", "list", "--stuck"]).run().ok().json();
    assert_eq!(stuck[0]["diagnosis"]["code"], "pin_missing", "{stuck}");
    db.cmd().args(["approve", &n, "--pin", "FROM-THE-PROVIDER"]).run().ok();
    assert_eq!(inspect(&db, &n)["pin_code"], "FROM-THE-PROVIDER");
    // A product without the flag is approved as before.
    let plain = create_canned(&db, "cards", "1");
    assert_eq!(plain["status"], "approved", "{plain}");
}
