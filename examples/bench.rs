//! The orderctl benchmark: every figure of issue 7, measured against the machine's own floor in
//! the same run. One command:
//!
//!     cargo run --release --example bench [-- --runs 3 --json bench.json]
//!
//! What it does (BENCHMARKS.md has the method and the numbers):
//! - builds `target/release/orderctl` (the daemon, the simulator and `inspect` run as real
//!   processes, as in production);
//! - creates a migrated, set-up template database on the server, and a fresh database cloned
//!   from it for every run; drops them all at the end;
//! - runs the simulator as a subprocess, so its CPU shows up as a separate process competing
//!   with orderctl and Postgres on the same cores, as a provider on this host would;
//! - measures each figure `--runs` times and reports the median, with its ratio to the floor.
//!
//! Everything talks over loopback; every loop is bounded in time or count and stops by itself.

#[path = "bench/breaker.rs"]
mod breaker;
#[path = "bench/history.rs"]
mod history;
#[path = "bench/lanes.rs"]
mod lanes;
#[path = "bench/pace.rs"]
mod pace;
#[path = "bench/support.rs"]
mod support;
#[path = "bench/webhooks.rs"]
mod webhooks;

use orderctl::db::Client;
use orderctl::domain::lifecycle::states::{ExternalStatus, OrderStatus};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

pub struct Options {
    admin_url: String,
    runs: usize,
    orders: i64,
    /// Orders per insert transaction in the end-to-end runs: a shop writes its orders as they
    /// are bought, in many small transactions, while the daemon works.
    arrival_batch: i64,
    latency_samples: usize,
    check_orders: i64,
    check_window: Duration,
    pgbench_secs: u32,
    only: Option<Vec<String>>,
    json: Option<String>,
    /// Extra arguments for every daemon (e.g. "--round-size 100"), to compare settings.
    daemon_args: Vec<String>,
    /// Finished orders of the history scenario (`--history N`; 10M is the full run).
    history: i64,
    /// Seconds a transaction is held open in the long-transaction scenario (0: not run).
    long_transaction: u64,
}

fn options() -> Options {
    let mut o = Options {
        admin_url: std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        runs: 3,
        orders: 5000,
        arrival_batch: 100,
        latency_samples: 200,
        check_orders: 10_000,
        check_window: Duration::from_secs(8),
        pgbench_secs: 10,
        only: None,
        json: None,
        daemon_args: Vec::new(),
        history: 20_000,
        long_transaction: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("{} needs a value", args[i])));
    while i < args.len() {
        match args[i].as_str() {
            "--database-url" => o.admin_url = value(i),
            "--runs" => o.runs = value(i).parse().unwrap_or_else(|_| die("--runs takes a number")),
            "--orders" => o.orders = value(i).parse().unwrap_or_else(|_| die("--orders takes a number")),
            "--arrival-batch" => o.arrival_batch = value(i).parse().unwrap_or_else(|_| die("--arrival-batch takes a number")),
            "--latency-samples" => {
                o.latency_samples = value(i).parse().unwrap_or_else(|_| die("--latency-samples takes a number"))
            }
            "--check-orders" => o.check_orders = value(i).parse().unwrap_or_else(|_| die("--check-orders takes a number")),
            "--check-window" => {
                o.check_window = Duration::from_secs(value(i).parse().unwrap_or_else(|_| die("--check-window takes seconds")))
            }
            "--pgbench-secs" => o.pgbench_secs = value(i).parse().unwrap_or_else(|_| die("--pgbench-secs takes seconds")),
            "--only" => o.only = Some(value(i).split(',').map(str::to_string).collect()),
            "--json" => o.json = Some(value(i)),
            "--daemon-args" => o.daemon_args = value(i).split_whitespace().map(str::to_string).collect(),
            "--history" => {
                o.history = value(i).parse().unwrap_or_else(|_| die("--history takes a number of orders"));
                o.only.get_or_insert_with(Vec::new).push("history".into());
            }
            "--long-transaction" => {
                o.long_transaction = value(i).parse().unwrap_or_else(|_| die("--long-transaction takes seconds"));
                o.only.get_or_insert_with(Vec::new).push("longtx".into());
            }
            "-h" | "--help" => {
                println!(
                    "cargo run --release --example bench -- [--database-url URL] [--runs N] [--orders N] \
                     [--arrival-batch N] [--latency-samples N] [--check-orders N] [--check-window SECS] [--pgbench-secs SECS] \
                     [--only floor,e2e,latency,checks,claim,inspect,isolation,slow,list,webhooks,breaker,rss,ratelimit,history,longtx] [--json PATH] [--daemon-args \"ARGS\"] \
                     [--history N (only the history scenario, N finished orders; default 20000 in a full run)] \
                     [--long-transaction SECS (only the long-transaction scenario)]\n\
                     The URL (or BENCH_DATABASE_URL) names a server where databases may be created and dropped."
                );
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other} (see --help)")),
        }
        i += if args[i].starts_with("--") && !matches!(args[i].as_str(), "-h" | "--help") { 2 } else { 1 };
    }
    if o.runs == 0 {
        die("--runs must be at least 1");
    }
    if o.arrival_batch < 1 {
        die("--arrival-batch must be at least 1");
    }
    o
}

fn main() {
    let o = options();
    let wants = |name: &str| o.only.as_ref().map(|l| l.iter().any(|x| x == name)).unwrap_or(true);
    let bin = build_orderctl();
    let machine = machine(&o.admin_url);
    eprintln!("machine: {}", machine);
    let mut results = Results::default();

    let server = Server::new(&o.admin_url);
    let sim = Sim::start(&bin);
    let template = server.template(&sim.base);

    if wants("floor") {
        floor(&o, &server, &sim, &mut results);
    }
    if wants("e2e") || wants("inspect") {
        end_to_end(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("deploy") {
        deployment(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("latency") {
        dispatch_latency(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("checks") {
        for kind in [ProviderKind::Znet, ProviderKind::Xstor] {
            status_checks(&o, &server, &template.name, &sim, &bin, kind, &mut results);
        }
    }
    if wants("claim") {
        claim_cost(&o, &server, &template.name, &mut results);
    }
    if wants("isolation") {
        lanes::isolation(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("slow") {
        lanes::slow_provider_throughput(&o, &server, &template.name, &bin, &mut results);
    }
    if wants("list") {
        lanes::listing(&o, &server, &template.name, &bin, &mut results);
    }
    if wants("webhooks") {
        webhooks::throughput(&o, &server, &template.name, &bin, &mut results);
    }
    if wants("ratelimit") {
        pace::accuracy(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("breaker") {
        breaker::dead_provider(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("rss") {
        lanes::four_providers(&o, &server, &template.name, &sim, &bin, &mut results);
    }
    if wants("history") {
        history::history(&o, &server, &template.name, &sim, &bin, o.history, &mut results);
    }
    if wants("longtx") && o.long_transaction > 0 {
        history::long_transaction(&o, &server, &template.name, &sim, &bin, o.long_transaction, &mut results);
    }
    drop(sim);
    drop(template);

    results.print();
    if let Some(path) = &o.json {
        let doc = json!({"machine": machine, "runs": o.runs, "results": results.to_json()});
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap())
            .unwrap_or_else(|e| die(&format!("cannot write {path}: {e}")));
        eprintln!("wrote {path}");
    }
}

// ---------------------------------------------------------------------------------------------
// The floor: what Postgres and the simulator can do on this machine, measured in the same run.

fn floor(o: &Options, server: &Server, sim: &Sim, results: &mut Results) {
    eprintln!("== floor");
    let db = server.create_empty("floor");
    let url = db.url.clone();
    // pgbench: single-row UPDATE transactions, autocommit, 2 clients on 2 threads.
    run_checked(std::process::Command::new("pgbench").args(["-i", "-q", "-s", "1", &url]));
    let script = std::env::temp_dir().join(format!("orderctl-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "\\set aid random(1, 100000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n",
    )
    .unwrap();
    let mut tps = Vec::new();
    let mut lat = Vec::new();
    for run in 0..o.runs {
        let out = run_checked(std::process::Command::new("pgbench").args([
            "-n",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &o.pgbench_secs.to_string(),
            "-f",
            script.to_str().unwrap(),
            &url,
        ]));
        let t = parse_after(&out, "tps = ").unwrap_or_else(|| die(&format!("pgbench printed no tps:\n{out}")));
        let l = parse_after(&out, "latency average = ").unwrap_or(f64::NAN);
        eprintln!("   run {}: pgbench {t:.0} tps, latency {l:.2} ms", run + 1);
        tps.push(t);
        lat.push(l);
    }
    let _ = std::fs::remove_file(&script);
    results.floor_tps = median(&tps);
    results.floor_commit_ms = median(&lat);
    results.add("floor: pgbench single-row UPDATE (2 clients)", results.floor_tps, "tx/s", None, None, "");
    results.add("floor: commit latency (pgbench average)", results.floor_commit_ms, "ms", None, None, "");

    // Batched UPDATE ... FROM unnest of 100 rows, 2 connections in parallel, autocommit.
    let mut c = connect(&url);
    c.batch_execute(
        "CREATE TABLE floor_rows (id int PRIMARY KEY, v bigint NOT NULL, t timestamptz);
         INSERT INTO floor_rows SELECT g, 0, now() FROM generate_series(1, 100000) g;",
    )
    .unwrap();
    c.batch_execute("VACUUM ANALYZE floor_rows").unwrap();
    let mut rates = Vec::new();
    for run in 0..o.runs {
        let rows = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|part: i32| {
                    let url = url.clone();
                    s.spawn(move || {
                        let mut c = connect(&url);
                        let stop = Instant::now() + Duration::from_secs(5);
                        let mut rows = 0u64;
                        let mut n: i32 = 0;
                        while Instant::now() < stop {
                            // Disjoint, sorted ids per connection: no lock waits between the two.
                            let ids: Vec<i32> = (0..100).map(|k| part * 50_000 + ((n * 100 + k) % 50_000) + 1).collect();
                            let vals: Vec<i64> = ids.iter().map(|i| *i as i64 + n as i64).collect();
                            rows += c
                                .execute(
                                    "UPDATE floor_rows f SET v = u.v, t = now() FROM unnest($1::int[], $2::bigint[]) AS u(id, v) WHERE f.id = u.id",
                                    &[&ids, &vals],
                                )
                                .unwrap();
                            n += 1;
                        }
                        rows
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        let rate = rows as f64 / 5.0;
        eprintln!("   run {}: unnest 100-row UPDATE {rate:.0} rows/s", run + 1);
        rates.push(rate);
    }
    results.floor_unnest = median(&rates);
    results.add("floor: UPDATE ... FROM unnest, 100 rows (2 conns)", results.floor_unnest, "rows/s", None, None, "");
    drop(c);
    drop(db);

    // The simulator's own speed: Znet status lookups from a tight client loop (4 threads,
    // keep-alive), the most a checker could get out of it here.
    let mut reqs = Vec::new();
    for run in 0..o.runs {
        let r = sim.request_rate(Duration::from_secs(3), 4);
        eprintln!("   run {}: simulator {r:.0} requests/s", run + 1);
        reqs.push(r);
    }
    results.floor_sim = median(&reqs);
    results.add("floor: simulator Znet lookups (4 client threads)", results.floor_sim, "req/s", None, None, "");
}

// ---------------------------------------------------------------------------------------------
// End-to-end: N orders inserted by SQL, dispatched and checked to final by one daemon.

fn end_to_end(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    // Orders arrive as a shop writes them, in transactions of `--arrival-batch`, back to back
    // from one client while the daemon works; then all in one statement (nothing can start
    // before it commits), and smaller write-back batches.
    let all = o.orders;
    let arrival = format!("arriving {} per transaction", o.arrival_batch);
    for (variant, extra, batch) in [
        (format!("default settings, {arrival}"), &[][..], o.arrival_batch),
        ("default settings, all inserted in one statement".to_string(), &[][..], all),
        (format!("--round-size 100, {arrival}"), &["--round-size", "100"][..], o.arrival_batch),
    ] {
        eprintln!("== end-to-end: {} orders, {variant}", o.orders);
        let mut rates = Vec::new();
        let mut rss = Vec::new();
        let mut cpu = Vec::new();
        let mut inspect_ms = Vec::new();
        let mut version_ms = Vec::new();
        let footprint = extra.is_empty() && batch < all;
        for run in 0..o.runs {
            sim.reset(json!({"complete_after": "0s"}));
            let db = server.clone_of(template, "e2e");
            let url = db.url.clone();
            let mut c = connect(&url);
            let mut args = vec!["--first-check", "0s"];
            args.extend_from_slice(extra);
            let daemon = Daemon::start(bin, &url, &with(&o.daemon_args, &args));
            daemon.wait_ready(&mut c);
            let started = Instant::now();
            let (mut left, mut ids) = (o.orders, Vec::new());
            while left > 0 {
                ids.extend(insert_orders(&mut c, "pubg-60", batch.min(left)));
                left -= batch.min(left);
            }
            let inserted = started.elapsed();
            // The daemon's backends are read every tenth poll (about 100 ms apart): reading /proc costs the
            // benchmark's own process, not the daemon or Postgres. The poll reads this run's orders by
            // primary key (`work_left_of`): probing the due indexes from their start every 10 ms walked
            // every dead entry the run had left there (autovacuum off, or behind the run) and took a
            // fifth of a core from what is measured.
            let (mut backends, mut polls) = (BackendCpu::default(), 0u32);
            let done = wait_until(&mut c, Duration::from_secs(300), |c| {
                polls += 1;
                if polls % 10 == 0 {
                    backends.sample(c);
                }
                !work_left_of(c, &mut ids)
            }) && final_count(&mut c) >= o.orders;
            let elapsed = started.elapsed();
            backends.sample(&mut c);
            let (daemon_cpu, backend_cpu) = (daemon.cpu_ms(), backends.total_ms());
            let peak_kb = daemon.peak_rss_kb();
            drop(daemon);
            if !done {
                die(&format!("end-to-end: only {} of {} orders final after 300 s", final_count(&mut c), o.orders));
            }
            verify_all_approved(&mut c, sim, o.orders);
            let rate = o.orders as f64 / elapsed.as_secs_f64();
            eprintln!(
                "   run {}: {:.2} s (the inserts {:.2} s), {rate:.0} orders/s, daemon peak RSS {:.1} MB",
                run + 1,
                elapsed.as_secs_f64(),
                inserted.as_secs_f64(),
                peak_kb as f64 / 1024.0
            );
            let per_order = (daemon_cpu + backend_cpu) / o.orders as f64;
            eprintln!(
                "   CPU: daemon {:.0} ms + its Postgres backends {:.0} ms = {per_order:.3} ms per order",
                daemon_cpu, backend_cpu
            );
            rates.push(rate);
            rss.push(peak_kb as f64 / 1024.0);
            cpu.push(per_order);

            if footprint {
                // inspect as a process on an order with a full history, 20 times.
                let number: i64 = c.query_one("SELECT number FROM orders ORDER BY number LIMIT 1", &[]).unwrap().get(0);
                for _ in 0..20 {
                    inspect_ms.push(time_process(bin, &url, &["inspect", &number.to_string()]));
                    version_ms.push(time_process(bin, &url, &["--version"]));
                }
            }
            drop(c);
            drop(db);
        }
        let e2e = median(&rates);
        results.add(
            &format!("end-to-end throughput, {variant}"),
            e2e,
            "orders/s",
            Some(Target::AtLeast(1.5 * results.floor_tps)),
            Some((e2e / results.floor_tps, "of pgbench tx/s")),
            "",
        );
        results.add(
            &format!("CPU per order (daemon + its Postgres backends, /proc), {variant}"),
            median(&cpu),
            "ms",
            None,
            Some((median(&cpu) * e2e / 1000.0, "cores busy")),
            "",
        );
        results.add(&format!("daemon peak RSS (VmHWM), {variant}"), median(&rss), "MB", Some(Target::AtMost(50.0)), None, "");
        if footprint {
            let ins = median(&inspect_ms);
            let ver = median(&version_ms);
            results.add(
                "`orderctl inspect N` wall time (process)",
                ins,
                "ms",
                Some(Target::AtMost(20.0)),
                Some((ins / ver, "× `orderctl --version`")),
                "",
            );
            results.add("floor: `orderctl --version` wall time", ver, "ms", None, None, "");
        }
    }
}

/// End to end as deployed (issue 21): the daemon through pgbouncer in transaction mode (with
/// the direct URL for LISTEN that the README recommends, and without it), and over TLS with
/// verify-full, each next to direct plain text in the same runs (interleaved, so a slower
/// minute of the machine hits all of them). Orders arrive directly, as a web app's.
/// TLS uses the server's certificate for `localhost` and BENCH_TLS_ROOTCERT (default: Debian's
/// snakeoil certificate, which signs itself).
fn deployment(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    let admin = url::Url::parse(&o.admin_url).unwrap_or_else(|e| die(&format!("not a URL: {e}")));
    let bouncer = orderctl::kit::pgbouncer::Pgbouncer::start(
        admin.host_str().unwrap_or("127.0.0.1"),
        admin.port().unwrap_or(5432),
        "transaction",
    )
    .unwrap_or_else(|e| die(&format!("pgbouncer: {}", e.message)));
    let root = std::env::var("BENCH_TLS_ROOTCERT").unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".into());
    let plain = |u: &str| format!("{u}?sslmode=disable");
    // Each route: the daemon's database URL and its --direct-database-url (LISTEN), if any.
    type Route<'a> = Box<dyn Fn(&str) -> (String, Option<String>) + 'a>;
    let routes: [(&str, Route); 4] = [
        ("direct, plain text", Box::new(|u: &str| (plain(u), None))),
        // As the README recommends: statements through the pool, LISTEN wake-ups direct.
        (
            "through pgbouncer (transaction mode), LISTEN via --direct-database-url",
            Box::new(|u: &str| (plain(&bouncer.url_for(u)), Some(plain(u)))),
        ),
        // Without a direct URL: no wake-ups, idle lanes poll (--idle-poll, 100 ms).
        (
            "through pgbouncer (transaction mode), no direct URL (lanes poll)",
            Box::new(|u: &str| (plain(&bouncer.url_for(u)), None)),
        ),
        (
            "over TLS, sslmode=verify-full",
            Box::new(|u: &str| {
                let mut v = url::Url::parse(u).unwrap();
                let _ = v.set_host(Some("localhost"));
                (format!("{v}?sslmode=verify-full&sslrootcert={root}"), None)
            }),
        ),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    for run in 0..o.runs {
        for (i, (name, route)) in routes.iter().enumerate() {
            sim.reset(json!({"complete_after": "0s"}));
            let db = server.clone_of(template, "deploy");
            let mut c = connect(&format!("{}?sslmode=disable", db.url));
            let (url, direct) = route(&db.url);
            let mut args = vec!["--first-check", "0s"];
            if let Some(d) = &direct {
                args.extend(["--direct-database-url", d.as_str()]);
            }
            let daemon = Daemon::start(bin, &url, &with(&o.daemon_args, &args));
            daemon.wait_ready(&mut c);
            let started = Instant::now();
            let (mut left, mut ids) = (o.orders, Vec::new());
            while left > 0 {
                ids.extend(insert_orders(&mut c, "pubg-60", o.arrival_batch.min(left)));
                left -= o.arrival_batch.min(left);
            }
            let done =
                wait_until(&mut c, Duration::from_secs(300), |c| !work_left_of(c, &mut ids)) && final_count(&mut c) >= o.orders;
            drop(daemon);
            if !done {
                die(&format!("deploy ({name}): only {} of {} orders final after 300 s", final_count(&mut c), o.orders));
            }
            verify_all_approved(&mut c, sim, o.orders);
            let rate = o.orders as f64 / started.elapsed().as_secs_f64();
            eprintln!("   run {} {name}: {rate:.0} orders/s", run + 1);
            rates[i].push(rate);
        }
    }
    let direct = median(&rates[0]);
    results.add("end-to-end throughput, direct, plain text (same runs)", direct, "orders/s", None, None, "");
    for (i, (name, _)) in routes.iter().enumerate().skip(1) {
        let r = median(&rates[i]);
        results.add(
            &format!("end-to-end throughput, {name}"),
            r / direct,
            "× direct",
            Some(Target::AtLeast(0.8)),
            Some((r, "orders/s")),
            "",
        );
    }
}

/// The scenario's daemon arguments followed by the user's.
fn with<'a>(extra: &'a [String], base: &[&'a str]) -> Vec<&'a str> {
    base.iter().copied().chain(extra.iter().map(String::as_str)).collect()
}

fn verify_all_approved(c: &mut Client, sim: &Sim, n: i64) {
    let approved: i64 = c
        .query_one(&format!("SELECT count(*) FROM orders WHERE status = {approved}", approved = OrderStatus::Approved.sql()), &[])
        .unwrap()
        .get(0);
    let stats = sim.stats();
    let doubles = stats["double_placements"].as_u64().unwrap_or(u64::MAX);
    if approved != n || doubles != 0 {
        die(&format!("correctness: {approved} of {n} approved, {doubles} double placements"));
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch latency: single orders inserted by SQL into an idle daemon's database.

fn dispatch_latency(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    eprintln!("== dispatch latency: {} single inserts", o.latency_samples);
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..o.runs {
        let db = server.clone_of(template, "latency");
        let url = db.url.clone();
        let mut c = connect(&url);
        let (p50, p99) = measure_dispatch_latency(o, &mut c, &url, sim, bin, o.latency_samples);
        eprintln!("   run {}: p50 {p50:.1} ms, p99 {p99:.1} ms", run + 1);
        p50s.push(p50);
        p99s.push(p99);
        drop(c);
        drop(db);
    }
    let (p50, p99) = (median(&p50s), median(&p99s));
    let floor = results.floor_commit_ms;
    results.add(
        "dispatch latency p50 (insert commit → placed)",
        p50,
        "ms",
        Some(Target::AtMost(50.0)),
        Some((p50 / floor, "× commit latency")),
        "",
    );
    results.add("dispatch latency p99", p99, "ms", Some(Target::AtMost(500.0)), Some((p99 / floor, "× commit latency")), "");
}

/// (p50, p99) of insert commit → placed at the simulator, over `samples` single orders inserted
/// 20 ms apart into an idle daemon's database (whatever history it holds).
pub fn measure_dispatch_latency(o: &Options, c: &mut Client, url: &str, sim: &Sim, bin: &str, samples: usize) -> (f64, f64) {
    sim.reset(json!({"complete_after": "0s"}));
    let daemon = Daemon::start(bin, url, &with(&o.daemon_args, &["--first-check", "0s"]));
    daemon.wait_ready(c);
    let before = final_count(c);
    let mut committed: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for _ in 0..samples {
        let id = insert_orders(c, "pubg-60", 1).pop().unwrap();
        // The commit is acknowledged when execute returns: the row is visible from here on.
        committed.insert(id.to_string(), now_ms());
        std::thread::sleep(Duration::from_millis(20));
    }
    if !wait_until(c, Duration::from_secs(60), |c| !work_left(c)) || final_count(c) < before + samples as i64 {
        die("latency: orders did not all finish within 60 s");
    }
    drop(daemon);
    let committed = by_reference(c, &committed);
    let stats = sim.stats();
    let mut lat: Vec<f64> = stats["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| {
            let at = committed.get(x["reference"].as_str()?)?;
            Some(x["placed_at_ms"].as_f64()? - at)
        })
        .collect();
    if lat.len() != samples {
        die(&format!("latency: {} of {} placements found at the simulator", lat.len(), samples));
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&lat, 0.50), percentile(&lat, 0.99))
}

// ---------------------------------------------------------------------------------------------
// Status checks: open orders always due, checked over and over by one daemon.

#[derive(Clone, Copy, PartialEq)]
pub enum ProviderKind {
    Znet,
    Xstor,
}

fn status_checks(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, kind: ProviderKind, results: &mut Results) {
    let name = if kind == ProviderKind::Znet { "Znet" } else { "x-stor" };
    eprintln!("== status checks, {name}: {} open orders always due", o.check_orders);
    let mut rates = Vec::new();
    let mut call_rates = Vec::new();
    for run in 0..o.runs {
        // Never final during the run: every check is "waiting" and schedules the next one now.
        sim.reset(json!({"complete_after": "1h"}));
        let db = server.clone_of(template, "checks");
        let url = db.url.clone();
        let mut c = connect(&url);
        let (package, provider) = if kind == ProviderKind::Znet { ("pubg-60", "znet-main") } else { ("freefire-100", "xstor") };
        // The orders exist at the provider (placed by the harness, not timed) and are open with
        // their reference, due now.
        let ids = insert_orders(&mut c, package, o.check_orders);
        // Each provider's own reference style: Znet takes only numbers (the order number here),
        // x-stor the order's uuid.
        let references: Vec<String> = if kind == ProviderKind::Znet {
            let numbers = c.query("SELECT number FROM orders WHERE id = ANY($1) ORDER BY number", &[&ids]).unwrap();
            numbers.iter().map(|r| r.get::<_, i64>(0).to_string()).collect()
        } else {
            ids.iter().map(|id| id.to_string()).collect()
        };
        sim.place_all(kind, &references);
        let reference = if kind == ProviderKind::Znet { "o.number::text" } else { "o.id::text" };
        let sent = ExternalStatus::Sent.sql();
        c.execute(
            &format!(
                "UPDATE orders o SET external_status = {sent}, provider_id = p.id, provider_referans = {reference},
                    dispatched_at = now(), sent_at = now(), next_check_at = now()
               FROM providers p WHERE p.name = $1"
            ),
            &[&provider],
        )
        .unwrap();
        c.batch_execute("VACUUM ANALYZE orders").unwrap();
        let daemon = Daemon::start(
            bin,
            &url,
            &with(
                &o.daemon_args,
                &["--first-check", "0s", "--backoff-base", "0s", "--backoff-max", "0s", "--max-checks", "1000000"],
            ),
        );
        daemon.wait_ready(&mut c);
        std::thread::sleep(Duration::from_secs(2));
        let (e0, s0, t0) = (check_events(&mut c), sim.status_calls(), Instant::now());
        std::thread::sleep(o.check_window);
        let (e1, s1, t1) = (check_events(&mut c), sim.status_calls(), Instant::now());
        drop(daemon);
        let secs = (t1 - t0).as_secs_f64();
        let rate = (e1 - e0) as f64 / secs;
        let calls = (s1 - s0) as f64 / secs;
        eprintln!("   run {}: {rate:.0} checks/s written back, {calls:.0} provider requests/s", run + 1);
        rates.push(rate);
        call_rates.push(calls);
        drop(c);
        drop(db);
    }
    let rate = median(&rates);
    let (target, ratio) = if kind == ProviderKind::Znet {
        (Target::AtLeast(0.35 * results.floor_sim), (rate / results.floor_sim, "of simulator req/s"))
    } else {
        (Target::AtLeast(results.checks_znet.max(5000.0)), (rate / results.floor_unnest, "of unnest rows/s"))
    };
    if kind == ProviderKind::Znet {
        results.checks_znet = rate;
    }
    let note = format!("{:.0} provider requests/s", median(&call_rates));
    results.add(&format!("status checks, {name}"), rate, "checks/s", Some(target), Some(ratio), &note);
}

fn check_events(c: &mut Client) -> i64 {
    c.query_one("SELECT count(*) FROM order_events WHERE kind LIKE 'check.%'", &[]).unwrap().get(0)
}

// ---------------------------------------------------------------------------------------------
// Claim cost against history.

fn claim_cost(o: &Options, server: &Server, template: &str, results: &mut Results) {
    eprintln!("== claim cost: 100 due orders among 10k, then 1M finished orders");
    let db = server.clone_of(template, "claim");
    let url = db.url.clone();
    let mut c = connect(&url);
    // 1,000 open orders, all due; claims are put back after each measurement.
    insert_orders(&mut c, "pubg-60", 1000);
    add_history(&mut c, 10_000);
    let small = measure_claims(&mut c, o.runs);
    let plan = explain_claim(&mut c);
    add_history(&mut c, 990_000);
    let large = measure_claims(&mut c, o.runs);
    let plan_large = explain_claim(&mut c);
    eprintln!("   plan with 1M history:\n{plan_large}");
    if !plan_large.contains("orders_due") {
        eprintln!("   WARNING: the claim does not use the orders_due index:\n{plan}");
    }
    drop(c);
    drop(db);
    results.add("claim 100 due, 10k finished orders", small, "ms", None, None, "");
    results.add(
        "claim 100 due, 1M finished orders",
        large,
        "ms",
        Some(Target::AtMost(5.0)),
        Some((large / (100.0 / results.floor_unnest * 1000.0), "× one 100-row unnest UPDATE")),
        "",
    );
    results.add("claim cost ratio 1M / 10k", large / small, "×", Some(Target::AtMost(1.5)), None, "");
}

fn add_history(c: &mut Client, n: i64) {
    let started = Instant::now();
    c.execute(
        &format!(
            "INSERT INTO orders (id, tenant_id, user_id, package_id, user_identifier, price, status, external_status,
                             checks, created_at, sent_at, completed_at, next_check_at)
         SELECT gen_random_uuid(), u.tenant_id, u.id, p.id, 'history-' || g, p.price, {approved}, {done},
                1, now() - interval '30 days', now() - interval '30 days', now() - interval '30 days', NULL
           FROM users u JOIN packages p ON p.tenant_id = u.tenant_id AND p.name = 'pubg-60', generate_series(1, $1::bigint) g",
            approved = OrderStatus::Approved.sql(),
            done = ExternalStatus::Done.sql()
        ),
        &[&n],
    )
    .unwrap();
    c.batch_execute("VACUUM ANALYZE orders").unwrap();
    let total: i64 = c.query_one("SELECT count(*) FROM orders", &[]).unwrap().get(0);
    eprintln!("   history +{n} in {:.1} s ({total} orders in the table)", started.elapsed().as_secs_f64());
}

/// Median time of `claim_due(100)` over 200 claims per run, median over runs. Each claim
/// commits (as the daemon's does); the claimed orders are then made due again.
pub fn measure_claims(c: &mut Client, runs: usize) -> f64 {
    let lease = Duration::from_secs(60);
    let lane: i64 = c.query_one("SELECT id FROM providers WHERE name = 'znet-main'", &[]).unwrap().get(0);
    let q = orderctl::db::claims::LaneQuery::whole(lane, None, None);
    let mut medians = Vec::new();
    for run in 0..runs {
        c.batch_execute("VACUUM orders").unwrap();
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let due = orderctl::db::claims::claim_due(c, q, 100, lease).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(due.len(), 100, "100 due orders claimed");
            let ids: Vec<uuid::Uuid> = due.iter().map(|d| d.0).collect();
            c.execute("UPDATE orders SET next_check_at = now() - interval '1 hour' WHERE id = ANY($1)", &[&ids]).unwrap();
        }
        let m = median(&times);
        eprintln!("   run {}: claim median {m:.3} ms", run + 1);
        medians.push(m);
    }
    median(&medians)
}

fn explain_claim(c: &mut Client) -> String {
    let mut tx = c.transaction().unwrap();
    let rows = tx
        .query(
            &format!(
                "EXPLAIN (ANALYZE, COSTS OFF)
             UPDATE orders o SET next_check_at = now() + interval '60 seconds', lease = o.lease + 1
               FROM (SELECT id FROM orders WHERE lane = (SELECT id FROM providers WHERE name = 'znet-main')
                        AND next_check_at IS NOT NULL AND next_check_at <= now() AND external_status = {not_sent}
                        AND (NULL::bigint IS NULL OR tenant_id = NULL)
                      ORDER BY next_check_at LIMIT 100 FOR UPDATE SKIP LOCKED) due
              WHERE o.id = due.id",
                not_sent = ExternalStatus::NotSent.sql()
            ),
            &[],
        )
        .unwrap();
    tx.rollback().unwrap();
    rows.iter().map(|r| format!("     {}", r.get::<_, String>(0))).collect::<Vec<_>>().join("\n")
}
