//! The figures of issue 13 that need more than one provider or a slow one: lane isolation, a
//! provider answering in 300 ms, `list` on 10k orders, and the daemon's memory with four
//! providers busy.

use super::support::*;
use super::Options;
use orderctl::db::Client;
use orderctl::domain::lifecycle::states::{Attention, ExternalStatus, OrderStatus};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Point a provider of the template at another simulator (before the daemon starts).
fn move_provider(c: &mut Client, name: &str, base: &str, max_in_flight: i32) {
    c.execute("UPDATE providers SET base_url = $2, max_in_flight = $3 WHERE name = $1", &[&name, &base, &max_in_flight]).unwrap();
}

/// x-stor's dispatch latency (insert commit → placed at its simulator) and check lateness
/// (first check − placement − first-check delay), with Znet either idle or answering every call
/// in 5 s with a backlog that keeps every Znet permit busy.
pub fn isolation(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    let samples = o.latency_samples.min(100);
    eprintln!("== lane isolation: {samples} x-stor orders one by one, Znet idle, then Znet answering in 5 s");
    let slow = Sim::start_with(bin, &["--threads", "64"]);
    let mut figures: HashMap<bool, (Vec<f64>, Vec<f64>)> = HashMap::new();
    for run in 0..o.runs {
        for znet_slow in [false, true] {
            sim.reset(json!({"complete_after": "1500ms"}));
            slow.reset(json!({"complete_after": "0s", "latency": "5s"}));
            let db = server.clone_of(template, "isolation");
            let url = db.url.clone();
            let mut c = connect(&url);
            move_provider(&mut c, "znet-main", &slow.base, 16);
            let daemon = Daemon::start(bin, &url, &["--first-check", "1s", "--backoff-base", "1s", "--backoff-max", "1s"]);
            daemon.wait_ready(&mut c);
            if znet_slow {
                // More Znet work than its 16 permits can finish during the measurement.
                insert_orders(&mut c, "pubg-60", 400);
                std::thread::sleep(Duration::from_millis(500));
            }
            let mut committed: HashMap<String, f64> = HashMap::new();
            for _ in 0..samples {
                let id = insert_orders(&mut c, "freefire-100", 1).pop().unwrap();
                committed.insert(id.to_string(), now_ms());
                std::thread::sleep(Duration::from_millis(30));
            }
            let ok = wait_until(&mut c, Duration::from_secs(60), |c| {
                let open: i64 = c
                    .query_one(
                        &format!(
                            "SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id
                          WHERE p.name = 'freefire-100' AND o.status = {pending}",
                            pending = OrderStatus::Pending.sql()
                        ),
                        &[],
                    )
                    .unwrap()
                    .get(0);
                open == 0
            });
            if !ok {
                die("lane isolation: x-stor orders did not finish within 60 s");
            }
            let placed = placement_latencies(sim, &by_reference(&mut c, &committed));
            let late = check_lateness(&mut c, Duration::from_secs(1));
            drop(daemon);
            let (p99, late99) = (percentile(&placed, 0.99), percentile(&late, 0.99));
            eprintln!(
                "   run {}, Znet {}: x-stor dispatch p50 {:.1} ms p99 {p99:.1} ms; first check late p50 {:.0} ms p99 {late99:.0} ms",
                run + 1,
                if znet_slow { "slow" } else { "idle" },
                percentile(&placed, 0.5),
                percentile(&late, 0.5)
            );
            let f = figures.entry(znet_slow).or_default();
            f.0.push(p99);
            f.1.push(late99);
            drop(c);
            drop(db);
        }
    }
    let (idle_p99, idle_late) = (median(&figures[&false].0), median(&figures[&false].1));
    let (slow_p99, slow_late) = (median(&figures[&true].0), median(&figures[&true].1));
    results.add(
        "lane isolation: x-stor dispatch p99, Znet answering in 5 s",
        slow_p99,
        "ms",
        Some(Target::AtMost(100.0)),
        Some((slow_p99 / idle_p99.max(0.001), "× with Znet idle")),
        &format!("{idle_p99:.1} ms with Znet idle"),
    );
    results.add(
        "lane isolation: x-stor first check lateness p99, Znet answering in 5 s",
        slow_late,
        "ms",
        Some(Target::AtMost(200.0)),
        Some((slow_late / idle_late.max(1.0), "× with Znet idle")),
        &format!("{idle_late:.0} ms with Znet idle; the idle poll is 100 ms"),
    );
}

/// Insert commit → placed at the simulator, ms, sorted.
fn placement_latencies(sim: &Sim, committed: &HashMap<String, f64>) -> Vec<f64> {
    let stats = sim.stats();
    let mut lat: Vec<f64> = stats["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| Some(x["placed_at_ms"].as_f64()? - committed.get(x["reference"].as_str()?)?))
        .collect();
    if lat.len() != committed.len() {
        die(&format!("{} of {} placements found at the simulator", lat.len(), committed.len()));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    lat
}

/// How late each x-stor order's first check came after its schedule, ms, sorted: the first
/// check event's time − the dispatch event's time − the first-check delay (both on the
/// database's clock).
fn check_lateness(c: &mut Client, first_check: Duration) -> Vec<f64> {
    let mut late: Vec<f64> = c
        .query(
            "SELECT (extract(epoch FROM min(e.at) FILTER (WHERE e.kind LIKE 'check.%')
                                   - min(e.at) FILTER (WHERE e.kind = 'dispatch')) * 1000)::float8
               FROM order_events e JOIN orders o ON o.id = e.order_id JOIN packages p ON p.id = o.package_id
              WHERE p.name = 'freefire-100'
              GROUP BY e.order_id",
            &[],
        )
        .unwrap()
        .iter()
        .filter_map(|r| r.get::<_, Option<f64>>(0))
        .map(|ms| (ms - first_check.as_secs_f64() * 1000.0).max(0.0))
        .collect();
    late.sort_by(|a, b| a.partial_cmp(b).unwrap());
    late
}

/// A provider answering every call in 300 ms with `max_in_flight` 16: orders/s against the
/// most its permits allow, 16 / (calls per order × 0.3 s).
pub fn slow_provider_throughput(o: &Options, server: &Server, template: &str, bin: &str, results: &mut Results) {
    const M: i32 = 16;
    const N: i64 = 240;
    eprintln!("== provider answering in 300 ms, max_in_flight {M}: {N} orders");
    let slow = Sim::start_with(bin, &["--threads", "64"]);
    let mut ratios = Vec::new();
    let mut rates = Vec::new();
    for run in 0..o.runs {
        slow.reset(json!({"complete_after": "0s", "latency": "300ms"}));
        let db = server.clone_of(template, "slow300");
        let url = db.url.clone();
        let mut c = connect(&url);
        move_provider(&mut c, "znet-main", &slow.base, M);
        let daemon = Daemon::start(bin, &url, &["--first-check", "0s"]);
        daemon.wait_ready(&mut c);
        let started = Instant::now();
        insert_orders(&mut c, "pubg-60", N);
        if !wait_until(&mut c, Duration::from_secs(120), |c| !work_left(c)) || final_count(&mut c) < N {
            die("300 ms provider: orders did not all finish within 120 s");
        }
        let secs = started.elapsed().as_secs_f64();
        drop(daemon);
        let stats = slow.stats();
        let calls = (stats["placement_calls"].as_u64().unwrap_or(0) + stats["status_calls"].as_u64().unwrap_or(0)) as f64;
        let per_order = calls / N as f64;
        let bound = M as f64 / (per_order * 0.3);
        let rate = N as f64 / secs;
        eprintln!("   run {}: {rate:.1} orders/s, {per_order:.2} calls per order, bound {bound:.1} orders/s", run + 1);
        rates.push(rate);
        ratios.push(rate / bound);
        drop(c);
        drop(db);
    }
    let ratio = median(&ratios);
    results.add(
        "provider answering in 300 ms, max_in_flight 16",
        median(&rates),
        "orders/s",
        None,
        Some((ratio, "of 16 / (calls per order × 0.3 s)")),
        "",
    );
    results.add("  … as a share of what its permits allow", ratio, "×", Some(Target::AtLeast(0.9)), None, "");
}

/// `orderctl list --limit 1000` on 10,000 orders, as a process.
pub fn listing(o: &Options, server: &Server, template: &str, bin: &str, results: &mut Results) {
    eprintln!("== list --limit 1000 on 10,000 orders");
    let db = server.clone_of(template, "list");
    let url = db.url.clone();
    let mut c = connect(&url);
    insert_orders(&mut c, "pubg-60", 10_000);
    // A realistic mix: most finished, some sent, some flagged.
    c.batch_execute(&format!(
        "UPDATE orders SET status = {approved}, external_status = {done}, next_check_at = NULL, pin_code = 'PIN-' || number,
                completed_at = now() WHERE number % 10 < 7;
         UPDATE orders SET external_status = {sent}, provider_id = lane, provider_referans = number::text, sent_at = now(),
                dispatched_at = now() WHERE number % 10 = 7;
         UPDATE orders SET attention = {attention_given_up}, next_check_at = NULL WHERE number % 10 = 8;",
        approved = OrderStatus::Approved.sql(),
        done = ExternalStatus::Done.sql(),
        sent = ExternalStatus::Sent.sql(),
        attention_given_up = Attention::GivenUp.sql()
    ))
    .unwrap();
    c.batch_execute("VACUUM ANALYZE orders").unwrap();
    let mut table = Vec::new();
    let mut json_ms = Vec::new();
    let mut version = Vec::new();
    for _ in 0..(10 * o.runs) {
        table.push(time_process(bin, &url, &["list", "--limit", "1000"]));
        json_ms.push(time_process(bin, &url, &["--output", "json", "list", "--limit", "1000"]));
        version.push(time_process(bin, &url, &["--version"]));
    }
    drop(c);
    drop(db);
    let (t, j, v) = (median(&table), median(&json_ms), median(&version));
    results.add(
        "`list --limit 1000`, 10k orders (process)",
        t,
        "ms",
        Some(Target::AtMost(50.0)),
        Some((t / v, "× `--version`")),
        "",
    );
    results.add(
        "`--output json list --limit 1000`, 10k orders",
        j,
        "ms",
        Some(Target::AtMost(50.0)),
        Some((j / v, "× `--version`")),
        "",
    );
}

/// The daemon's peak memory with four providers busy at once (two Znet, two x-stor).
pub fn four_providers(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    let per = (o.orders / 4).max(100);
    eprintln!("== four providers busy: {per} orders each");
    let mut rss = Vec::new();
    let mut rates = Vec::new();
    for run in 0..o.runs {
        sim.reset(json!({"complete_after": "0s"}));
        let db = server.clone_of(template, "four");
        let url = db.url.clone();
        let mut c = connect(&url);
        add_two_providers(&mut c, &sim.base);
        let daemon = Daemon::start(bin, &url, &["--first-check", "0s"]);
        daemon.wait_ready(&mut c);
        let started = Instant::now();
        for package in ["pubg-60", "freefire-100", "pubg-60-b", "freefire-100-b"] {
            insert_orders(&mut c, package, per);
        }
        if !wait_until(&mut c, Duration::from_secs(300), |c| !work_left(c)) || final_count(&mut c) < 4 * per {
            die("four providers: orders did not all finish within 300 s");
        }
        let rate = (4 * per) as f64 / started.elapsed().as_secs_f64();
        let peak = daemon.peak_rss_kb() as f64 / 1024.0;
        drop(daemon);
        let busy: i64 = c
            .query_one(
                &format!(
                    "SELECT count(DISTINCT provider_id) FROM orders WHERE status = {approved}",
                    approved = OrderStatus::Approved.sql()
                ),
                &[],
            )
            .unwrap()
            .get(0);
        if busy != 4 {
            die(&format!("four providers: only {busy} providers finished orders"));
        }
        eprintln!("   run {}: {rate:.0} orders/s, daemon peak RSS {peak:.1} MB", run + 1);
        rss.push(peak);
        rates.push(rate);
        drop(c);
        drop(db);
    }
    results.add(
        "daemon peak RSS (VmHWM), 4 providers busy",
        median(&rss),
        "MB",
        Some(Target::AtMost(50.0)),
        None,
        &format!("{:.0} orders/s over the four", median(&rates)),
    );
}

/// A second Znet and a second x-stor provider, each the primary of a package of its own.
fn add_two_providers(c: &mut Client, sim_url: &str) {
    let doc = json!({"tenants": [{
        "name": "bench",
        "providers": [
          {"name": "znet-b", "kind": "znet", "base_url": sim_url, "credentials": {"kod": "bayi2", "sifre": "s3cret"}},
          {"name": "xstor-b", "kind": "xstor", "base_url": sim_url, "credentials": {"api_token": "tok-bench-b"}}
        ],
        "packages": [
          {"name": "pubg-60-b", "product": "PUBG Mobile", "price": "1.10",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-b"},
           "mappings": {"znet-b": {"oyun": "7001", "kupur": "60"}}},
          {"name": "freefire-100-b", "product": "Free Fire", "price": "2.00",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "xstor-b"},
           "mappings": {"xstor-b": {"product_id": "502", "player_param": "playerId"}}}
        ]
    }]});
    match orderctl::db::setup::apply_text(c, &doc.to_string(), orderctl::db::setup::ApplyOptions::WRITE) {
        Ok(orderctl::db::setup::ApplyOutcome::Applied(_)) => {}
        Ok(orderctl::db::setup::ApplyOutcome::Invalid(p)) => die(&format!("setup refused: {p:?}")),
        Err(e) => die(&format!("apply: {}", e.message)),
    }
}
