//! Webhooks a shop can trust (issue 22): endpoints delivered independently (a hanging one holds
//! back no other tenant), each order's events in sequence, retries to a horizon then the dead
//! letter with replay, pause and resume, Standard Webhooks signatures checked by an independent
//! implementation (also across a secret rotation), a body that is the shop's view only, and
//! endpoint addresses checked (SSRF), all against real receivers on 127.0.0.1.

use crate::reliability::{assert_no_panic, daemon, DaemonLog};
use crate::support::*;
use crate::webhooks::{setup_with_webhook, Received, Receiver, SECRET};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The fields of a body's `order`, sorted: the shop's view and nothing else.
pub const SHOP_VIEW_FIELDS: [&str; 14] = [
    "completed_at",
    "created_at",
    "extra_field",
    "final",
    "id",
    "number",
    "package",
    "pin_code",
    "player",
    "price",
    "quantity",
    "reason",
    "refunded",
    "status",
];

/// The standard setup with a second tenant, `beirut`, whose providers have the same names.
pub fn two_tenants(sim: &Sim) -> Value {
    let mut s = standard_setup(&sim.base_url);
    let mut second = s["tenants"][0].clone();
    second["name"] = json!("beirut");
    second["users"][0]["email"] = json!("halil@beirut.example");
    second["code_groups"][0]["codes"] = json!(["BEIR-0001"]);
    s["tenants"].as_array_mut().unwrap().push(second);
    s
}

/// Verify requests with the Python `standardwebhooks` package: per request, per secret.
fn standard_verify(requests: &[(Vec<String>, &Received)]) -> Vec<Vec<bool>> {
    let doc: Vec<Value> = requests
        .iter()
        .map(|(secrets, r)| {
            let h = |k: &str| r.headers.get(k).cloned().unwrap_or_default();
            json!({"secrets": secrets, "body": r.body, "headers": {
                "webhook-id": h("webhook-id"), "webhook-timestamp": h("webhook-timestamp"), "webhook-signature": h("webhook-signature")}})
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_string(&doc).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/standard_webhooks_check.py");
    let out = std::process::Command::new("python3").arg(script).arg(file.path()).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "standard_webhooks_check.py failed (needs `python3 -m pip install standardwebhooks`, which .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Numbers of the tenant's orders of a package, in order.
fn numbers(db: &TestDb, tenant: &str, package: &str) -> Vec<String> {
    db.client()
        .query(
            "SELECT o.number::text FROM orders o JOIN packages p ON p.id = o.package_id JOIN tenants t ON t.id = o.tenant_id
              WHERE t.name = $1 AND p.name = $2 ORDER BY o.number",
            &[&tenant, &package],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn sweep(db: &TestDb, extra: &[&str]) {
    db.cmd().args(["sweep", "--webhook-retry-first", "50ms", "--webhook-retry-max", "100ms"]).args(extra).run().ok();
}

/// A tenant with one webhook signed by [`FIRST_SECRET`] and `n` manual (jawaker) orders.
struct Rotation {
    _sim: Sim,
    receiver: Receiver,
    db: TestDb,
    setup: Value,
    orders: Vec<String>,
}

const FIRST_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn rotation(n: i64) -> Rotation {
    let sim = Sim::start(&[]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    let mut setup = setup_with_webhook(&sim, &receiver.url, None);
    setup["tenants"][0]["webhooks"][0]["secret"] = json!(FIRST_SECRET);
    db.apply(&setup);
    insert_orders(&db, "jawaker", n);
    let orders = numbers(&db, "alsham", "jawaker");
    Rotation { _sim: sim, receiver, db, setup, orders }
}

#[test]
fn every_body_verifies_with_standardwebhooks_also_across_a_secret_rotation() {
    let Rotation { _sim, receiver, db, mut setup, orders } = rotation(4);
    let first = FIRST_SECRET;
    db.cmd().args(["approve", &orders[0], "--pin", "P-0"]).run().ok();
    sweep(&db, &[]);
    // Rotation: the new secret from standard input; the old one signs too for the overlap.
    let second = "whsec_c2Vjb25kLXNlY3JldC1mb3ItdGhlLXRlc3Qh";
    let out =
        db.cmd().args(["-o", "json", "webhook", "rotate-secret", &receiver.url, "--overlap", "1h"]).stdin(second).run().ok();
    assert!(!out.stdout.contains(second) && !out.stderr.contains(second), "the secret is never printed");
    assert!(out.json()["previous_secret_until"].is_string());
    db.cmd().args(["approve", &orders[1], "--pin", "P-1"]).run().ok();
    sweep(&db, &[]);
    // The window closed: only the new secret signs.
    db.client().execute("UPDATE webhooks SET previous_secret_until = now() - interval '1 second'", &[]).unwrap();
    db.cmd().args(["approve", &orders[2], "--pin", "P-2"]).run().ok();
    sweep(&db, &[]);
    // A legacy secret (not whsec_) still signs both headers; its key is its bytes.
    setup["tenants"][0]["webhooks"][0]["secret"] = json!(SECRET);
    db.apply(&setup);
    db.cmd().args(["approve", &orders[3], "--pin", "P-3"]).run().ok();
    sweep(&db, &[]);

    let got = receiver.requests();
    assert_eq!(got.len(), 4, "one request per event");
    let secrets = vec![first.to_string(), second.to_string(), SECRET.to_string()];
    let checked = standard_verify(&got.iter().map(|r| (secrets.clone(), r)).collect::<Vec<_>>());
    assert_eq!(checked[0], vec![true, false, false], "before the rotation: the first secret");
    assert_eq!(checked[1], vec![true, true, false], "during the rotation: both secrets verify");
    assert_eq!(checked[2], vec![false, true, false], "after the window: the new secret only");
    assert!(checked[3][2], "the apply's new secret verifies");
    assert!(checked[3][1], "the one it replaced signs during its overlap");
    for r in &got {
        assert_eq!(r.headers["webhook-id"], r.event_id, "webhook-id is the event id");
        assert_eq!(r.json()["id"].as_str(), Some(r.event_id.as_str()));
        let ts: i64 = r.headers["webhook-timestamp"].parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 300, "a current timestamp");
        assert!(r.headers["webhook-signature"].split(' ').all(|s| s.starts_with("v1,")));
    }
    assert!(orderctl::domain::signature::verify_legacy(SECRET, &got[3].signature, &got[3].body), "the legacy header too");
    // Bad input loses nothing.
    db.cmd().args(["webhook", "rotate-secret", &receiver.url]).stdin("").run().code(4);
    db.cmd().args(["webhook", "rotate-secret", "https://nowhere.example/h"]).stdin("whsec_eA==").run().code(3);
}

#[test]
fn a_rotated_secret_can_be_a_file_or_variable_reference_and_the_database_holds_only_the_reference() {
    let Rotation { _sim, receiver, db, setup: _, orders } = rotation(1);
    let first = FIRST_SECRET;
    let dir = std::env::temp_dir().join(format!("orderctl-rotate-{}-{}", std::process::id(), orders[0]));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("webhook-secret");
    let _ = std::fs::remove_file(&file);

    // A variable that is not set: refused, nothing changed.
    let out =
        db.cmd().args(["webhook", "rotate-secret", &receiver.url, "--secret-env", "ORDERCTL_TEST_NO_SUCH_VAR"]).run().code(4);
    assert!(out.stderr.contains("ORDERCTL_TEST_NO_SUCH_VAR is not set"), "{}", out.stderr);
    let stored: serde_json::Value = db.client().query_one("SELECT secret FROM webhooks", &[]).unwrap().get(0);
    assert_eq!(stored, json!(first), "a refused rotation changes nothing");

    // A generated secret kept in a file; the database holds the file's path only.
    let out = db
        .cmd()
        .args(["-o", "json", "webhook", "rotate-secret", &receiver.url, "--overlap", "0s", "--as-reference", "--generate-to"])
        .arg(&file)
        .run()
        .ok();
    assert_eq!(out.json()["stored_as"], "reference");
    let secret = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(secret.starts_with("whsec_") && !out.stdout.contains(&secret) && !out.stderr.contains(&secret));
    let stored: serde_json::Value = db.client().query_one("SELECT secret FROM webhooks", &[]).unwrap().get(0);
    assert_eq!(stored, json!({"file": file.display().to_string()}), "the reference, never the value");

    db.cmd().args(["approve", &orders[0], "--pin", "P-0"]).run().ok();
    sweep(&db, &[]);
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    let checked = standard_verify(&[(vec![secret, first.to_string()], &got[0])]);
    assert_eq!(checked[0], vec![true, false], "signed with the file's secret only (no overlap)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_body_carries_the_dealers_cost_balance_reference_or_provider_message() {
    // Every order is cancelled by the provider, so each has a provider message and reference.
    let sim = Sim::start(&["--complete-after", "200ms", "--cancel-share", "0.5", "--seed", "22"]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    db.apply(&setup_with_webhook(&sim, &receiver.url, None));
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 6);
    insert_orders(&db, "freefire-100", 6);
    crate::reliability::wait_all_final(&db, Duration::from_secs(60));
    wait_until("every event delivered", Duration::from_secs(30), || receiver.delivered().len() == 12);
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());
    // Order id -> (provider reference, external order id, provider message, provider name).
    type Dealer = (Option<String>, Option<String>, Option<String>, String);
    let orders: HashMap<String, Dealer> = db
        .client()
        .query("SELECT o.id::text, o.provider_referans, o.external_order_id, o.last_message, p.name FROM orders o JOIN providers p ON p.id = o.provider_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    let balance: String = db.client().query_one("SELECT balance::text FROM users WHERE name = 'halil'", &[]).unwrap().get(0);
    let mut rejected = 0;
    for r in receiver.delivered().values() {
        let body = r.json();
        let order = &body["order"];
        let (reference, external, message, provider) = &orders[order["id"].as_str().unwrap()];
        let mut keys: Vec<&String> = order.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, SHOP_VIEW_FIELDS.to_vec());
        let text = order.to_string();
        let own_id = order["id"].as_str().unwrap();
        for (what, secret) in [("provider reference", reference), ("external order id", external), ("provider message", message)]
        {
            // x-stor's reference is the order's own id, which is the shop's to know.
            if let Some(s) = secret.as_deref().filter(|s| s.len() >= 3 && *s != own_id) {
                assert!(!r.body.contains(s), "the body carries the {what} {s}: {text}");
            }
        }
        assert!(!r.body.contains(provider.as_str()), "the body names the provider: {text}");
        assert!(!r.body.contains(&format!("\"{balance}\"")), "the body carries the buyer's balance: {text}");
        for word in ["cost", "balance", "provider", "referans", "reference", "message", "attention", "hint", "placements"] {
            assert!(!r.body.to_lowercase().contains(&format!("\"{word}")), "the body has a {word} field: {text}");
        }
        if order["status"] == "rejected" {
            rejected += 1;
            assert_eq!(order["reason"]["code"], "not_fulfilled");
            assert!(order["reason"]["text"].as_str().unwrap().contains("refunded"));
            assert_eq!(order["refunded"], order["price"], "the shop's own price is refunded");
        } else {
            assert!(order["reason"].is_null() && order["pin_code"].is_string());
        }
        assert!(["1.10", "2.00"].contains(&order["price"].as_str().unwrap()), "the price the shop charged: {text}");
    }
    assert!(rejected > 0, "some orders were cancelled by the provider");
}

#[test]
fn after_an_outage_each_orders_events_arrive_in_sequence() {
    let sim = Sim::start(&[]);
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let receiver = Receiver::start(move |_, _| (if u.load(Ordering::SeqCst) { 200 } else { 503 }, Duration::ZERO));
    let db = TestDb::new();
    db.apply(&setup_with_webhook(&sim, &receiver.url, None));
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &["--webhook-retry-first", "50ms", "--webhook-retry-max", "200ms"]);
    // Three orders take the stock's codes (approved: one event); five find it empty (flagged:
    // order.needs_action), then an operator approves them (order.approved, sequence 2).
    for _ in 0..8 {
        db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "1"]).run().ok();
    }
    let flagged: Vec<String> = db
        .client()
        .query("SELECT number::text FROM orders WHERE attention IS NOT NULL ORDER BY number", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(flagged.len(), 5);
    for n in &flagged {
        db.cmd().args(["approve", n, "--pin", "LATE-PIN"]).run().ok();
    }
    wait_until("the outage is felt", Duration::from_secs(20), || receiver.requests().len() >= 10);
    up.store(true, Ordering::SeqCst);
    wait_until("every event delivered", Duration::from_secs(30), || receiver.delivered().len() == 13);
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());

    let mut by_order: HashMap<String, Vec<(i64, u16)>> = HashMap::new();
    for r in receiver.requests() {
        let body = r.json();
        by_order
            .entry(body["order"]["id"].as_str().unwrap().to_string())
            .or_default()
            .push((body["sequence"].as_i64().unwrap(), r.status));
    }
    let mut two = 0;
    for (order, requests) in &by_order {
        let delivered: Vec<i64> = requests.iter().filter(|(_, s)| *s == 200).map(|(q, _)| *q).collect();
        let expected: Vec<i64> = (1..=delivered.len() as i64).collect();
        assert_eq!(delivered, expected, "order {order}: delivered in sequence: {requests:?}");
        // Nothing of sequence 2 was even sent before sequence 1 was delivered.
        if let Some(first_ok) = requests.iter().position(|(q, s)| *q == 1 && *s == 200) {
            assert!(requests[..first_ok].iter().all(|(q, _)| *q == 1), "order {order}: {requests:?}");
        }
        if delivered.len() == 2 {
            two += 1;
        }
    }
    assert_eq!(two, 5, "the five flagged orders had two events each");
    let listed = db.cmd().args(["-o", "json", "webhook", "list"]).run().ok().json();
    assert!(listed.as_array().unwrap().iter().any(|d| d["sequence"] == 2));
}

#[test]
fn a_hanging_endpoint_holds_back_no_other_tenants_deliveries_across_two_daemons() {
    let sim = Sim::start(&[]);
    // alsham's endpoint answers each call after 30 s; beirut's at once.
    let hanging = Receiver::start(|_, _| (200, Duration::from_secs(30)));
    let fast = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    let mut setup = two_tenants(&sim);
    for (i, url) in [&hanging.url, &fast.url].into_iter().enumerate() {
        setup["tenants"][i]["webhooks"] = json!([{"url": url, "secret": SECRET, "allow_private_network": true}]);
    }
    db.apply(&setup);
    insert_orders_in(&db, "alsham", "jawaker", 10);
    insert_orders_in(&db, "beirut", "jawaker", 30);
    for n in numbers(&db, "alsham", "jawaker") {
        db.cmd().args(["approve", &n, "--pin", "P"]).run().ok();
    }
    let log = DaemonLog::new();
    let args = ["--webhook-timeout", "30s", "--webhook-concurrency", "4"];
    let daemons = [daemon(&db.url, log.path(), &args), daemon(&db.url, log.path(), &args)];
    wait_until("the hanging endpoint holds requests", Duration::from_secs(20), || hanging.requests().len() >= 2);
    for n in numbers(&db, "beirut", "jawaker") {
        db.cmd().args(["approve", &n, "--pin", "P"]).run().ok();
    }
    wait_until("beirut's events delivered", Duration::from_secs(30), || fast.delivered().len() == 30);
    let mut latencies: Vec<Duration> = fast
        .requests()
        .iter()
        .map(|r| {
            let created = chrono::DateTime::parse_from_rfc3339(r.json()["created_at"].as_str().unwrap()).unwrap();
            let created = SystemTime::UNIX_EPOCH + Duration::from_millis(created.timestamp_millis() as u64);
            r.at.duration_since(created).unwrap_or_default()
        })
        .collect();
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    assert!(p99 <= Duration::from_secs(1), "beirut's p99 from event to delivery is {p99:?} while alsham's endpoint hangs");
    // Both daemons together never had more than two requests at the hanging endpoint, and
    // never one event twice. Each request is held for the whole 30 s and then times out and is
    // retried; on a slow machine the test can outlast that, so only the requests that arrived
    // while the first ones were still held count as in flight together.
    let held = hanging.requests();
    let first = held.iter().map(|r| r.at).min().unwrap();
    let together: Vec<_> =
        held.iter().filter(|r| r.at.duration_since(first).unwrap_or_default() < Duration::from_secs(30)).collect();
    assert_eq!(together.len(), 2, "two requests in flight at the hanging endpoint, across both daemons: {} in all", held.len());
    assert_eq!(together.iter().map(|r| &r.event_id).collect::<HashSet<_>>().len(), 2);
    assert_eq!(fast.requests().len(), 30, "no event sent twice");
    for d in daemons {
        assert_eq!(d.terminate(), 0);
    }
    assert_no_panic(log.path());
}

#[test]
fn dead_letters_replay_pause_resume_and_a_disabled_endpoint() {
    let sim = Sim::start(&[]);
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let receiver = Receiver::start(move |_, _| (if u.load(Ordering::SeqCst) { 200 } else { 500 }, Duration::ZERO));
    let db = TestDb::new();
    let mut setup = setup_with_webhook(&sim, &receiver.url, Some(json!(["order.approved"])));
    setup["tenants"][0]["webhooks"][0]["retry_horizon"] = json!("400ms");
    db.apply(&setup);
    for _ in 0..3 {
        db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "1"]).run().ok();
    }
    // Its own horizon (400 ms, not the process's 3 days) runs out: dead-lettered, and the
    // endpoint, which failed for the whole horizon, disabled (what it has left waits).
    wait_until("dead-lettered and disabled", Duration::from_secs(20), || {
        sweep(&db, &[]);
        db.query_i64("SELECT count(*) FROM webhooks WHERE disabled_at IS NOT NULL") == 1
    });
    let dead = db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'");
    assert!(dead >= 1);
    let failed = db.cmd().args(["-o", "json", "webhook", "list", "--failed"]).run().ok().json();
    assert_eq!(failed.as_array().unwrap().len() as i64, dead);
    let endpoints = db.cmd().args(["-o", "json", "webhook", "endpoints"]).run().ok().json();
    assert_eq!(endpoints[0]["state"], "disabled", "{endpoints}");
    let id = endpoints[0]["id"].as_i64().unwrap().to_string();
    let waiting = 3 - dead;
    sweep(&db, &[]);
    assert_eq!(
        db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"),
        waiting,
        "a disabled endpoint gets nothing"
    );
    let doctor = db.cmd().args(["doctor"]).run().code(8);
    assert!(doctor.stdout.contains(&format!("webhook endpoint {id} of tenant alsham")), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("failed for its whole retry horizon"), "{}", doctor.stdout);

    // Fixed and resumed, then paused: new events wait; a replay of the dead letters is the
    // operator's explicit wish and goes out now.
    up.store(true, Ordering::SeqCst);
    db.cmd().args(["webhook", "resume", &id]).run().ok();
    db.cmd().args(["webhook", "pause", &receiver.url]).run().ok();
    db.cmd().args(CREATE_AS_HALIL).args(["--package", "jawaker", "--player", "1"]).run().ok();
    let n = numbers(&db, "alsham", "jawaker").pop().unwrap();
    db.cmd().args(["approve", &n, "--pin", "P"]).run().ok();
    sweep(&db, &[]);
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"), waiting + 1, "paused: it waits");
    let replayed = db.cmd().args(["-o", "json", "webhook", "replay", "--endpoint", &id, "--since", "1h"]).run().ok().json();
    assert_eq!(replayed["attempts"].as_array().unwrap().len() as i64, dead, "the dead letters only: {replayed}");
    assert!(replayed["attempts"].as_array().unwrap().iter().all(|a| a["delivered"] == true));
    db.cmd().args(["webhook", "resume", &id]).run().ok();
    sweep(&db, &[]);
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"), 4);
    // A delivered event replayed by id is sent again (same event id).
    let one: i64 = db.query_i64("SELECT min(id) FROM webhook_deliveries");
    let again = db.cmd().args(["-o", "json", "webhook", "replay", &one.to_string()]).run().ok().json();
    assert_eq!(again["attempts"][0]["delivered"], true);
    let event: String =
        db.client().query_one("SELECT event_id::text FROM webhook_deliveries WHERE id = $1", &[&one]).unwrap().get(0);
    assert_eq!(receiver.delivered().len(), 4);
    assert_eq!(receiver.requests().iter().filter(|r| r.event_id == event && r.status == 200).count(), 2);
    let doctor = db.cmd().args(["doctor"]).run();
    assert!(doctor.stdout.contains("no failed webhook deliveries"), "{}", doctor.stdout);
    // Bad input: a clear error, nothing changed.
    db.cmd().args(["webhook", "replay", "--endpoint", &id, "--since", "yesterday-ish"]).run().code(4);
    db.cmd().args(["webhook", "pause", "https://nowhere.example/h"]).run().code(3);
    db.cmd().args(["webhook", "replay"]).run().code(2);
}

/// A name this machine resolves to a loopback address (its /etc/hosts), if there is one.
fn loopback_name() -> Option<String> {
    use std::net::ToSocketAddrs;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default().trim().to_string();
    let candidates = ["vm".to_string(), "runsc".to_string(), host, "localhost.localdomain".to_string()];
    let found = candidates.into_iter().filter(|n| !n.is_empty() && n != "localhost").find(|n| {
        let addrs: Vec<_> = (n.as_str(), 80).to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
        !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
    });
    found
}

#[test]
fn webhook_urls_at_private_addresses_are_refused_unless_allowed() {
    let sim = Sim::start(&[]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    // As written: refused at apply.
    for url in ["https://127.0.0.1/h", "https://169.254.169.254/latest/meta-data", "https://10.0.0.1/h", "http://shop.example/h"]
    {
        let mut setup = standard_setup(&sim.base_url);
        setup["tenants"][0]["webhooks"] = json!([{"url": url, "secret": SECRET}]);
        let out = db.cmd().args(["apply", "--dry-run", "-f", "-"]).stdin(setup.to_string()).run().code(4);
        assert!(out.stderr.contains("refused"), "{url}: {}", out.stderr);
        if !url.starts_with("http://shop") {
            setup["tenants"][0]["webhooks"][0]["allow_private_network"] = json!(true);
            db.cmd().args(["apply", "--dry-run", "-f", "-"]).stdin(setup.to_string()).run().ok();
        }
    }
    // A host name that resolves to a loopback address: refused at send time, before any
    // connection; allowed with allow_private_network.
    let Some(name) = loopback_name() else {
        eprintln!("no host name resolves to a loopback address here; the resolution check is covered by unit tests only");
        return;
    };
    let url = receiver.url.replace("127.0.0.1", &name);
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["webhooks"] = json!([{"url": url, "secret": SECRET, "allow_http": true}]);
    db.apply(&setup);
    db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "1"]).run().ok();
    sweep(&db, &[]);
    let listed = db.cmd().args(["-o", "json", "webhook", "list"]).run().ok().json();
    let error = listed[0]["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("is loopback; refused"), "{listed}");
    assert!(receiver.requests().is_empty(), "nothing reached the address");
    // Addresses written into the database behind apply's back are refused at send time too,
    // before any connection is made.
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    for bad in ["https://169.254.169.254/latest/meta-data", "https://10.0.0.1/h"] {
        db.client().execute("UPDATE webhooks SET url = $1", &[&bad]).unwrap();
        let out = db.cmd().args(["-o", "json", "webhook", "retry", &id]).run().code(8).json();
        assert!(out["attempts"][0]["error"].as_str().unwrap().contains("refused"), "{out}");
    }
    db.client().execute("UPDATE webhooks SET url = $1", &[&url]).unwrap();
    setup["tenants"][0]["webhooks"][0]["allow_private_network"] = json!(true);
    db.apply(&setup);
    let out = db.cmd().args(["-o", "json", "webhook", "retry", &id]).run().ok().json();
    assert_eq!(out["attempts"][0]["delivered"], true, "{out}");
    assert_eq!(receiver.requests().len(), 1);
}
