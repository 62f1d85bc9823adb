//! Signed completion webhooks (issue 14), against a real HTTP receiver on 127.0.0.1 written
//! here: it records every request and answers as each test tells it (fail some, hang some).

use crate::reliability::{assert_no_panic, daemon, DaemonLog};
use crate::support::*;
use orderctl::domain::signature::verify_legacy as verify;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SECRET: &str = "whsec-Test-4f9c2b7e";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    /// The legacy `Orderctl-Signature`.
    pub signature: String,
    /// Every header, by lower-case name (the Standard Webhooks ones among them).
    pub headers: HashMap<String, String>,
    /// When it arrived.
    pub at: std::time::SystemTime,
    pub content_type: String,
    pub body: String,
    /// The status it was answered with (decided when it arrived).
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// How the receiver answers: given the event id and how many times it has now been seen
/// (1 for the first), the status and how long to wait before answering.
pub type Policy = dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync;

/// A webhook receiver on 127.0.0.1 (a thread per connection; stops with the test process).
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(policy: impl Fn(&str, usize) -> (u16, Duration) + Send + Sync + 'static) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/orders", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Received>>> = Arc::default();
        let policy: Arc<Policy> = Arc::new(policy);
        let r = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, policy) = (r.clone(), policy.clone());
                std::thread::spawn(move || serve(stream, &r, &*policy));
            }
        });
        Receiver { url, requests }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// The events answered with a 2xx, by event id (the last such request of each).
    pub fn delivered(&self) -> HashMap<String, Received> {
        self.requests().into_iter().filter(|r| (200..300).contains(&r.status)).map(|r| (r.event_id.clone(), r)).collect()
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Received>>, policy: &Policy) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    // Keep-alive: answer requests on this connection until the client closes it.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let event_id = headers.get("orderctl-event-id").cloned().unwrap_or_default();
        let at = std::time::SystemTime::now();
        let (status, delay) = {
            let mut all = requests.lock().unwrap();
            let nth = all.iter().filter(|r| r.event_id == event_id).count() + 1;
            let (status, delay) = policy(&event_id, nth);
            all.push(Received {
                event_id,
                signature: headers.get("orderctl-signature").cloned().unwrap_or_default(),
                content_type: headers.get("content-type").cloned().unwrap_or_default(),
                headers: headers.clone(),
                at,
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
            (status, delay)
        };
        std::thread::sleep(delay);
        if write!(out, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}

/// The standard setup with a webhook to `url` (all events unless `events` names some).
pub fn setup_with_webhook(sim: &Sim, url: &str, events: Option<Value>) -> Value {
    let mut s = standard_setup(&sim.base_url);
    // The receivers of these tests listen on 127.0.0.1: allowed explicitly (SSRF rules).
    let mut hook = json!({"url": url, "secret": SECRET, "allow_private_network": true});
    if let Some(e) = events {
        hook["events"] = e;
    }
    s["tenants"][0]["webhooks"] = json!([hook]);
    s
}

/// Roughly half of all event ids (by their first hex digit).
fn unlucky(event_id: &str) -> bool {
    event_id.chars().next().map(|c| "01234567".contains(c)).unwrap_or(false)
}

#[test]
fn fifty_orders_give_one_signed_event_each_even_when_first_attempts_fail() {
    let sim = Sim::start(&["--complete-after", "300ms", "--jitter", "500ms", "--cancel-share", "0.2", "--seed", "14"]);
    // The receiver refuses the first attempt of about half the events.
    let receiver = Receiver::start(|id, nth| if nth == 1 && unlucky(id) { (500, Duration::ZERO) } else { (200, Duration::ZERO) });
    let db = TestDb::new();
    db.apply(&setup_with_webhook(&sim, &receiver.url, None));
    let log = DaemonLog::new();
    let d =
        daemon(&db.url, log.path(), &["--webhook-retry-first", "200ms", "--webhook-retry-max", "1s", "--webhook-timeout", "2s"]);
    insert_orders(&db, "pubg-60", 20);
    insert_orders(&db, "freefire-100", 20);
    insert_orders(&db, "jawaker", 10);
    wait_until("the manual orders wait for an operator", Duration::from_secs(30), || {
        db.query_i64("SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id WHERE p.name = 'jawaker' AND o.next_check_at IS NULL") == 10
    });
    let manual = order_numbers_of_package(&db, "jawaker");
    for (i, n) in manual.iter().enumerate() {
        let n = n.to_string();
        let args: Vec<&str> = if i % 2 == 0 {
            vec!["approve", &n, "--pin", "MANUAL-PIN"]
        } else {
            vec!["reject", &n, "--reason", "no such player"]
        };
        db.cmd().args(args).run().ok();
    }
    crate::reliability::wait_all_final(&db, Duration::from_secs(60));
    wait_until("every finished order's event delivered", Duration::from_secs(60), || receiver.delivered().len() >= 50);
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());

    let finished: HashMap<String, (String, Option<String>)> = db
        .client()
        .query("SELECT id::text, status, pin_code FROM orders WHERE status <> 'pending'", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(finished.len(), 50);
    let rejected = finished.values().filter(|(s, _)| s == "rejected").count();
    assert!(rejected > 5, "cancellations by the provider as well as by the operator: {rejected}");

    // Exactly one distinct event per finished order, of the right type, describing the order as
    // its transition left it.
    let delivered = receiver.delivered();
    assert_eq!(delivered.len(), 50, "one distinct event per finished order");
    let mut orders_seen = HashSet::new();
    for (id, r) in &delivered {
        let body = r.json();
        assert_eq!(body["id"].as_str(), Some(id.as_str()), "Orderctl-Event-Id is the body's id");
        assert_eq!(r.content_type, "application/json");
        let order_id = body["order"]["id"].as_str().unwrap().to_string();
        assert!(orders_seen.insert(order_id.clone()), "order {order_id} got two distinct events");
        let (status, pin) = &finished[&order_id];
        assert_eq!(body["type"], format!("order.{status}"));
        assert_eq!(body["order"]["status"], status.as_str());
        assert_eq!(body["order"]["final"], true);
        if status == "approved" {
            assert_eq!(body["order"]["pin_code"].as_str(), pin.as_deref(), "the PIN is in order.approved");
        } else {
            assert!(body["order"]["refunded"].is_string(), "the refund is in order.rejected: {body}");
            assert_eq!(body["order"]["reason"]["code"], "not_fulfilled", "a neutral reason in order.rejected: {body}");
            assert!(body["order"]["pin_code"].is_null());
        }
        assert_eq!(body["sequence"], 1, "each of these orders has one event");
        assert!(body["created_at"].is_string());
    }
    // Every request (failed first attempts too) is signed with the tenant's secret, and with
    // nothing else.
    let all = receiver.requests();
    for r in &all {
        assert!(verify(SECRET, &r.signature, &r.body), "signature verifies: {}", r.signature);
        assert!(!verify("whsec-wrong", &r.signature, &r.body), "a wrong secret fails verification");
        assert!(!r.body.contains(SECRET) && !r.signature.contains(SECRET));
    }
    let retried: HashSet<&str> = all.iter().filter(|r| r.status == 500).map(|r| r.event_id.as_str()).collect();
    assert!(retried.len() >= 10, "about half the events had their first attempt refused: {}", retried.len());
    assert!(retried.iter().all(|id| delivered.contains_key(*id)), "each refused event was delivered later");

    // The order is the shop's view: these fields and no other.
    let (_, any) = delivered.iter().next().unwrap();
    let body = any.json();
    let mut sent: Vec<&String> = body["order"].as_object().unwrap().keys().collect();
    sent.sort();
    assert_eq!(sent, crate::webhook_delivery::SHOP_VIEW_FIELDS.to_vec(), "{body}");

    // The outbox: one delivery per finished order, all delivered, written with the transitions.
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries"), 50);
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"), 50);
    assert_eq!(db.query_i64("SELECT count(DISTINCT order_id) FROM webhook_deliveries"), 50);
    assert_money_conserved(&db);
}

#[test]
fn a_daemon_killed_mid_delivery_loses_no_event() {
    let sim = Sim::start(&[]);
    // First attempts hang 1.5 s before their answer, so the kill lands while requests are in
    // flight; later ones are answered at once.
    let receiver = Receiver::start(|_, nth| (200, if nth == 1 { Duration::from_millis(1500) } else { Duration::ZERO }));
    let db = TestDb::new();
    db.apply(&setup_with_webhook(&sim, &receiver.url, None));
    insert_orders(&db, "jawaker", 20);
    let numbers: Vec<i64> =
        db.client().query("SELECT number FROM orders ORDER BY number", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    for n in &numbers {
        db.cmd().args(["approve", &n.to_string(), "--pin", "P-1"]).run().ok();
    }
    assert_eq!(
        db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"),
        20,
        "enqueued by the operator's commands"
    );
    let log = DaemonLog::new();
    let args = ["--webhook-timeout", "2s", "--webhook-concurrency", "8"];
    let first = daemon(&db.url, log.path(), &args);
    wait_until("requests in flight", Duration::from_secs(30), || !receiver.requests().is_empty());
    first.kill9();
    let in_flight: HashSet<String> = receiver.requests().into_iter().map(|r| r.event_id).collect();
    assert!(
        db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending' AND attempts = 0")
            >= in_flight.len() as i64,
        "the killed daemon wrote no outcome for what it had in flight"
    );

    let second = daemon(&db.url, log.path(), &args);
    wait_until("every delivery delivered", Duration::from_secs(60), || {
        db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'") == 20
    });
    assert_eq!(second.terminate(), 0);
    assert_no_panic(log.path());
    let seen: HashMap<String, usize> = receiver.requests().into_iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r.event_id).or_default() += 1;
        m
    });
    let expected: HashSet<String> =
        db.client().query("SELECT event_id::text FROM webhook_deliveries", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected, "every event reached the receiver");
    assert!(in_flight.iter().all(|id| seen[id] >= 2), "what was in flight at the kill was sent again (same event id)");
    for r in receiver.requests() {
        assert!(verify(SECRET, &r.signature, &r.body));
    }
}

#[test]
fn needs_action_events_failed_deliveries_retry_and_ping() {
    let sim = Sim::start(&[]);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let f = failing.clone();
    let receiver =
        Receiver::start(move |_, _| (if f.load(std::sync::atomic::Ordering::SeqCst) { 500 } else { 204 }, Duration::ZERO));
    let db = TestDb::new();
    // Only needs_action: approvals of the code-stock orders send nothing.
    db.apply(&setup_with_webhook(&sim, &receiver.url, Some(json!(["order.needs_action"]))));
    for _ in 0..4 {
        db.cmd().args(CREATE_AS_HALIL).args(["--package", "itunes-10", "--player", "1"]).run().ok();
    }
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 3);
    let delivery: (i64, String, String) = {
        let r = db.client().query_one("SELECT id, event_type, body FROM webhook_deliveries", &[]).unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries"), 1, "one event: the order the empty stock flagged");
    assert_eq!(delivery.1, "order.needs_action");
    let body: Value = serde_json::from_str(&delivery.2).unwrap();
    assert_eq!(body["order"]["reason"]["code"], "delayed", "a neutral reason, not the dealer's stock: {body}");
    assert!(body["order"].get("attention").is_none());

    // The endpoint refuses: sweeps try, back off, and give up after the window.
    let quick = ["--webhook-retry-first", "100ms", "--webhook-give-up-after", "300ms"];
    wait_until("the delivery failed", Duration::from_secs(20), || {
        db.cmd().args(["sweep"]).args(quick).run().ok();
        db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'failed'") == 1
    });
    let listed = db.cmd().args(["-o", "json", "webhook", "list", "--failed"]).run().ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["last_error"], "HTTP 500");
    assert_eq!(listed[0]["type"], "order.needs_action");
    let doctor = db.cmd().args(["doctor"]).run().code(8);
    assert!(doctor.stdout.contains("1 webhook delivery(ies) failed"), "{}", doctor.stdout);
    let still = db.cmd().args(["-o", "json", "webhook", "retry", "--failed"]).run().code(8);
    assert_eq!(still.json()["attempts"][0]["status"], 500);

    // Fixed: retry sends it now.
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    let out = db.cmd().args(["-o", "json", "webhook", "retry", &delivery.0.to_string()]).run().ok().json();
    assert_eq!(out["attempts"][0]["delivered"], true, "{out}");
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"), 1);
    let again = db.cmd().args(["webhook", "retry", &delivery.0.to_string()]).run().code(5);
    assert!(again.stderr.contains("already delivered"), "{}", again.stderr);
    db.cmd().args(["webhook", "retry", "999999"]).run().code(3);
    db.cmd().args(["webhook", "retry", "not-an-id"]).run().code(4);
    db.cmd().args(["webhook", "retry"]).run().code(2);
    let doctor = db.cmd().args(["doctor"]).run();
    assert!(doctor.stdout.contains("no failed webhook deliveries"), "{}", doctor.stdout);

    // A ping to every webhook of the tenant, signed like events.
    let before = receiver.requests().len();
    let ping = db.cmd().args(["-o", "json", "webhook", "test", "alsham"]).run().ok().json();
    assert_eq!(ping["attempts"][0]["status"], 204);
    let sent = &receiver.requests()[before];
    assert_eq!(sent.json()["type"], "ping");
    assert!(verify(SECRET, &sent.signature, &sent.body));
    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let refused = db.cmd().args(["webhook", "test", "alsham"]).run().code(8);
    assert!(refused.stdout.contains("HTTP 500"), "{}", refused.stdout);
    db.cmd().args(["webhook", "test", "nobody"]).run().code(3);
    db.cmd().args(["--tenant", "alsham", "webhook", "test", "other"]).run().code(3);
}

#[test]
fn apply_refuses_bad_webhooks_and_reapplies_idempotently() {
    let sim = Sim::start(&[]);
    let db = TestDb::new();
    let good = setup_with_webhook(&sim, "https://shop.example/hooks", Some(json!(["order.approved"])));
    let out = db.cmd().args(["-o", "json", "apply", "--dry-run", "-f", "-"]).stdin(good.to_string()).run().ok().json();
    assert_eq!(out["webhooks"]["created"], json!(["alsham/https://shop.example/hooks"]));
    assert_eq!(db.query_i64("SELECT count(*) FROM webhooks"), 0, "a dry run writes nothing");
    db.apply(&good);
    let again = db.cmd().args(["-o", "json", "apply", "-f", "-"]).stdin(good.to_string()).run().ok().json();
    assert_eq!(again["changes"], 0, "re-applying changes nothing");
    let mut bad = good.clone();
    bad["tenants"][0]["webhooks"] = json!([{"url": "shop.example", "secret": "whsec-SECRET-9", "events": ["order.shipped"]}]);
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(bad.to_string()).run().code(4);
    assert!(out.stderr.contains("webhooks[0]: url 'shop.example' is not an http(s) URL"), "{}", out.stderr);
    assert!(out.stderr.contains("order.shipped"), "{}", out.stderr);
    assert!(!out.stderr.contains("whsec-SECRET-9"));
    assert_eq!(db.query_i64("SELECT count(*) FROM webhooks"), 1);
}

/// GET a path with a plain TCP request: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
