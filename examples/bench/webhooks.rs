//! Webhook delivery throughput with one endpoint hanging vs none, in the same run (issue 22):
//! a fast receiver and a receiver that holds every request 30 s, both on 127.0.0.1 in this
//! process. Deliveries are written straight into the outbox (for orders parked with an
//! operator flag, so the daemon has no order work) and the daemon delivers them.

use super::support::*;
use super::Options;
use orderctl::db::Client;
use orderctl::domain::lifecycle::states::{Attention, DeliveryState};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Deliveries to the fast endpoints per measurement.
const DELIVERIES: i64 = 3000;
/// Fast endpoints (shops) the deliveries are spread over: each takes at most 2 at once.
const ENDPOINTS: usize = 8;
/// Deliveries queued for the hanging endpoint.
const HANGING: i64 = 50;

pub fn throughput(o: &Options, server: &Server, template: &str, bin: &str, results: &mut Results) {
    eprintln!("== webhooks: {DELIVERIES} deliveries to {ENDPOINTS} endpoints, with none hanging vs one more endpoint hanging 30 s per call");
    let fast = receiver(Duration::ZERO);
    let hanging = receiver(Duration::from_secs(30));
    let mut rates: [Vec<f64>; 2] = [vec![], vec![]];
    for _ in 0..o.runs {
        let db = server.clone_of(template, "webhooks");
        let mut c = connect(&db.url);
        let orders = insert_orders(&mut c, "pubg-60", DELIVERIES);
        // Parked: no order work competes with the deliveries.
        c.execute(
            &format!(
                "UPDATE orders SET next_check_at = NULL, attention = {attention_routing}",
                attention_routing = Attention::Routing.sql()
            ),
            &[],
        )
        .unwrap();
        let urls: Vec<String> = (0..ENDPOINTS).map(|i| format!("{fast}/{i}")).chain([hanging.clone()]).collect();
        let ids: Vec<i64> = urls
            .iter()
            .map(|url| {
                c.query_one(
                    "INSERT INTO webhooks (tenant_id, url, secret, events, allow_private_network)
                     SELECT id, $1, 'whsec_YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA==', ARRAY['order.approved'], true FROM tenants
                     RETURNING id",
                    &[url],
                )
                .unwrap()
                .get(0)
            })
            .collect();
        let (fast_ids, hanging_id) = (&ids[..ENDPOINTS], ids[ENDPOINTS]);
        let daemon = Daemon::start(bin, &db.url, &[]);
        daemon.wait_ready(&mut c);
        for (phase, hang) in [false, true].into_iter().enumerate() {
            if hang {
                enqueue(&mut c, &[hanging_id], &orders[..HANGING as usize], 1);
            }
            let started = Instant::now();
            enqueue(&mut c, fast_ids, &orders, phase as i32 + 1);
            let done =
                wait_until(&mut c, Duration::from_secs(120), |c| delivered(c, fast_ids) == DELIVERIES * (phase as i64 + 1));
            if !done {
                die("webhooks: deliveries did not finish within 120 s");
            }
            rates[phase].push(DELIVERIES as f64 / started.elapsed().as_secs_f64());
        }
        drop(daemon);
    }
    let none = median(&rates[0]);
    let one = median(&rates[1]);
    results.add(
        "webhook deliveries, no endpoint hanging",
        none,
        "/s",
        None,
        None,
        "8 fast endpoints on 127.0.0.1, 2 at once each",
    );
    results.add(
        "webhook deliveries, one endpoint hanging 30 s",
        one,
        "/s",
        None,
        Some((one / none, "of none hanging")),
        "same run; the hanging endpoint holds 2 of the 32 senders",
    );
}

/// One delivery per order, to the webhooks in turn, as the outbox writes them.
fn enqueue(c: &mut Client, webhooks: &[i64], orders: &[uuid::Uuid], sequence: i32) {
    c.execute(
        "INSERT INTO webhook_deliveries (event_id, tenant_id, webhook_id, event_type, order_id, body, sequence)
         SELECT gen_random_uuid(), o.tenant_id, ($1::bigint[])[1 + (o.n % cardinality($1))], 'order.approved', o.id,
                json_build_object('id', o.id, 'sequence', $3::int)::text, $3
           FROM (SELECT id, tenant_id, row_number() OVER (ORDER BY id) AS n FROM orders WHERE id = ANY($2)) o",
        &[&webhooks, &orders, &sequence],
    )
    .unwrap();
}

fn delivered(c: &mut Client, webhooks: &[i64]) -> i64 {
    c.query_one(
        &format!(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = ANY($1) AND state = {delivered}",
            delivered = DeliveryState::Delivered.sql()
        ),
        &[&webhooks],
    )
    .unwrap()
    .get(0)
}

/// An HTTP receiver answering 200 after `delay`, a thread per connection (keep-alive).
fn receiver(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, delay));
        }
    });
    url
}

fn serve(stream: TcpStream, delay: Duration) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
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
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        std::thread::sleep(delay);
        if out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
            return;
        }
    }
}
