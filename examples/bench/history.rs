//! History never touches the hot path (issue 24, item 1), and queue health under a long
//! transaction (item 3).
//!
//! `--history N`: one database seeded with 10,000 finished orders as a year of traffic leaves
//! them (each with a placement, three events and its ledger rows; one in twenty rejected and
//! refunded), every figure of the hot path measured; then history grown to N orders over the
//! same year and every figure measured again, with its ratio to the 10k figure (target 1.2×).
//!
//! `--long-transaction SECS`: end-to-end throughput and claim latency with another connection
//! holding a transaction (and its snapshot) open, against the same without it (target 1.5×).

use crate::support::*;
use crate::{measure_claims, Options};
use orderctl::db::Client;
use orderctl::domain::lifecycle::states::{ExternalStatus, OrderStatus, PlacementState};
use orderctl::kit::database::ScratchDb;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Orders seeded per statement (each with its placement, events and ledger rows).
const SEED_CHUNK: i64 = 100_000;
const BASELINE: i64 = 10_000;

/// The figures of item 1, each a median in milliseconds.
struct Figures(Vec<(&'static str, f64)>);

pub fn history(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, n: i64, results: &mut Results) {
    eprintln!("== history: every hot-path figure at {BASELINE} finished orders and at {n}, measured in turns");
    // Two databases, measured in alternating rounds: a shared machine's slower minute hits
    // both sizes alike, instead of making one of them look slow.
    let (small_url, large_url, n, _dropped_at_the_end) = match std::env::var("BENCH_REUSE_HISTORY") {
        Ok(urls) => reuse_history(&urls, &sim.base),
        Err(_) => {
            let small_db = server.clone_of(template, "history_small");
            let large_db = server.clone_of(template, "history_large");
            let (mut small, mut large) = (connect(&small_db.url), connect(&large_db.url));
            seed_history(&mut small, 0, BASELINE);
            roll_up_everything(&mut small);
            let mut from = 0;
            while from < n {
                let to = (from + SEED_CHUNK).min(n);
                seed_history(&mut large, from, to);
                from = to;
            }
            roll_up_everything(&mut large);
            let size: String =
                large.query_one("SELECT pg_size_pretty(pg_database_size(current_database()))", &[]).unwrap().get(0);
            eprintln!("   database size with {n} finished orders: {size}");
            if std::env::var_os("BENCH_KEEP_HISTORY").is_some() {
                eprintln!("   kept: {} and {}", small_db.url, large_db.url);
                eprintln!("   measure them later with BENCH_REUSE_HISTORY=\"{} {}\"", small_db.url, large_db.url);
                std::mem::forget(small_db);
                std::mem::forget(large_db);
                return;
            }
            (small_db.url.clone(), large_db.url.clone(), n, Some((small_db, large_db)))
        }
    };
    let (mut small, mut large) = (connect(&small_url), connect(&large_url));
    let mut rounds: [Vec<Figures>; 2] = [Vec::new(), Vec::new()];
    for round in 0..o.runs.max(3) {
        let mut turns = [(0, &mut small, &small_url, BASELINE), (1, &mut large, &large_url, n)];
        // Each size goes first every other round: the first of a pair pays for what the other
        // left in the caches.
        if round % 2 == 1 {
            turns.reverse();
        }
        for (i, c, url, size) in turns {
            eprintln!("   round {}, {size} finished orders:", round + 1);
            rounds[i].push(measure(o, c, url, sim, bin));
        }
    }
    drop((small, large));
    let medians = |figures: &[Figures]| -> Vec<(&'static str, f64)> {
        let names: Vec<&'static str> = figures[0].0.iter().map(|(name, _)| *name).collect();
        names.iter().enumerate().map(|(k, name)| (*name, median(&figures.iter().map(|f| f.0[k].1).collect::<Vec<_>>()))).collect()
    };
    for ((name, at_small), (_, at_large)) in medians(&rounds[0]).into_iter().zip(medians(&rounds[1])) {
        results.add(&format!("{name}, {BASELINE} finished orders"), at_small, "ms", None, None, "");
        results.add(
            &format!("{name}, {n} finished orders"),
            at_large,
            "ms",
            None,
            Some((at_large / at_small, &format!("× at {BASELINE} (target <= 1.2)"))),
            if at_large / at_small <= 1.2 { "" } else { "misses 1.2×" },
        );
    }
}

/// `BENCH_REUSE_HISTORY="SMALL_URL LARGE_URL"`: the two databases an earlier
/// `BENCH_KEEP_HISTORY=1` run seeded (seeding ten million orders takes about an hour), brought
/// to this build's schema and, if that applied a migration, rolled up again from their rows, as
/// a fresh seed would be, and pointed at this run's simulator. They are kept afterwards. Returns their URLs and the finished orders of the larger.
fn reuse_history(urls: &str, sim_url: &str) -> (String, String, i64, Option<(ScratchDb, ScratchDb)>) {
    let urls: Vec<&str> = urls.split_whitespace().collect();
    let [small, large] = urls[..] else {
        die("BENCH_REUSE_HISTORY takes two database URLs separated by a space: the 10k one first, then the large one")
    };
    for url in [small, large] {
        let mut c = connect(url);
        let started = Instant::now();
        let applied = orderctl::db::migrate::migrate(&mut c, &orderctl::db::migrate::built_in(), false)
            .unwrap_or_else(|e| die(&e.message))
            .into_iter()
            .filter(|m| m.state == "applied")
            .count();
        eprintln!("   {url}: {applied} migration(s) applied in {:.1} s", started.elapsed().as_secs_f64());
        // A schema change may change what the rollups hold.
        if applied > 0 {
            roll_up_everything(&mut c);
        }
        Server::adopt(&mut c, sim_url);
    }
    let n: i64 = connect(large)
        .query_one(&format!("SELECT count(*) FROM orders WHERE status <> {}", OrderStatus::Pending.sql()), &[])
        .unwrap()
        .get(0);
    (small.to_string(), large.to_string(), n, None)
}

/// Finished orders `from..to` of the year (numbers spread evenly over it, so any prefix is a
/// year of thinner traffic): approved with a PIN, or (one in twenty) rejected and refunded;
/// each with one placement, three events (dispatch, a waiting check, the final check) and its
/// ledger rows, at the times they would have been written.
fn seed_history(c: &mut Client, from: i64, to: i64) {
    let started = Instant::now();
    // Events (and placements, if so) carry their order's creation time where the schema
    // partitions them by it, and a year of months needs its partitions.
    let has_column = |c: &mut Client, table: &str| -> bool {
        c.query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'order_created_at')",
            &[&table],
        )
        .unwrap()
        .get(0)
    };
    let by_order_month = |on: bool| if on { (", order_created_at", ", created_at") } else { ("", "") };
    let (column, value) = by_order_month(has_column(c, "order_events"));
    let (placement_column, placement_value) = by_order_month(has_column(c, "placements"));
    if !column.is_empty() {
        c.batch_execute("SELECT orderctl_ensure_partitions((now() - interval '400 days')::date, now()::date)").unwrap();
    }
    let sql = format!(
        "WITH ctx AS (
             SELECT u.tenant_id, u.id AS user_id, pk.id AS package_id, pk.price, pr.id AS provider_id
               FROM users u JOIN packages pk ON pk.tenant_id = u.tenant_id AND pk.name = 'pubg-60'
               JOIN providers pr ON pr.tenant_id = u.tenant_id AND pr.name = 'znet-main'
              WHERE u.name = 'buyer')
         , shaped AS (
             SELECT g, g % 20 = 0 AS refused,
                    -- golden-ratio spread: any number of orders covers the year evenly
                    now() - interval '1 hour' - interval '364 days' * ((g * 0.6180339887498949) - floor(g * 0.6180339887498949)) AS created,
                    1000 + (g * 7919) % 600000 AS duration_ms
               FROM generate_series($1::bigint + 1, $2::bigint) g)
         , new AS (
             INSERT INTO orders (id, tenant_id, user_id, package_id, user_identifier, price, status, external_status,
                                 provider_id, lane, provider_referans, external_order_id, pin_code, checks, created_at,
                                 dispatched_at, placed_at, sent_at, last_sync_at, completed_at, duration_ms, last_message)
             SELECT gen_random_uuid(), x.tenant_id, x.user_id, x.package_id, 'history-' || s.g, x.price,
                    CASE WHEN s.refused THEN {rejected} ELSE {approved} END,
                    CASE WHEN s.refused THEN {failed} ELSE {done} END,
                    x.provider_id, x.provider_id, 'h' || s.g, 'ext-' || s.g,
                    CASE WHEN s.refused THEN NULL ELSE 'PIN-' || s.g END, 2, s.created,
                    s.created, s.created, s.created + interval '150 ms', s.created + make_interval(secs => s.duration_ms / 1000.0),
                    s.created + make_interval(secs => s.duration_ms / 1000.0), s.duration_ms,
                    CASE WHEN s.refused THEN 'cancelled by the provider' ELSE 'check #2: delivered' END
               FROM ctx x, shaped s
             RETURNING id, tenant_id, user_id, price, provider_id, provider_referans, status, created_at, completed_at)
         , placed AS (
             INSERT INTO placements (order_id, provider_id, referans, outcome, created_at, finished_at{placement_column})
             SELECT id, provider_id, provider_referans, {accepted}, created_at, created_at + interval '150 ms'{placement_value} FROM new)
         , events AS (
             INSERT INTO order_events (order_id, at, kind, status, external_status, message{column})
             SELECT id, created_at + interval '150 ms', 'dispatch', {pending}, {sent}, 'placed with znet-main'{value} FROM new
             UNION ALL
             SELECT id, created_at + (completed_at - created_at) / 2, 'check.waiting', {pending}, {processing}, 'check #1: waiting'{value}
               FROM new
             UNION ALL
             SELECT id, completed_at, CASE WHEN status = {rejected} THEN 'check.cancelled' ELSE 'check.approved' END, status,
                    CASE WHEN status = {rejected} THEN {failed} ELSE {done} END, 'check #2'{value} FROM new)
         , money AS (
             INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount, created_at)
             SELECT tenant_id, user_id, id, 'charge', -price, created_at FROM new
             UNION ALL
             SELECT tenant_id, user_id, id, 'refund', price, completed_at FROM new WHERE status = {rejected})
         SELECT count(*) FROM new",
        approved = OrderStatus::Approved.sql(),
        rejected = OrderStatus::Rejected.sql(),
        pending = OrderStatus::Pending.sql(),
        done = ExternalStatus::Done.sql(),
        failed = ExternalStatus::Failed.sql(),
        sent = ExternalStatus::Sent.sql(),
        processing = ExternalStatus::Processing.sql(),
        accepted = PlacementState::Accepted.sql(),
    );
    let inserted: i64 = c.query_one(&sql, &[&from, &to]).unwrap_or_else(|e| die(&format!("seeding history: {e:?}"))).get(0);
    c.batch_execute("VACUUM ANALYZE orders, placements, order_events, ledger").unwrap();
    eprintln!("   history +{inserted} finished orders ({from}..{to}) in {:.1} s", started.elapsed().as_secs_f64());
}

/// Seeded history lies before the rollups' watermark (set when the database was migrated): an
/// import must roll it up from its first day, as here.
fn roll_up_everything(c: &mut Client) {
    let started = Instant::now();
    let rollups = orderctl::db::stats::ROLLUP_TABLES.join(", ");
    c.batch_execute(&format!(
        "TRUNCATE {rollups};
         UPDATE rollup_watermark SET rolled_up_until =
             date_trunc('day', (SELECT min(created_at) FROM orders), 'UTC');"
    ))
    .unwrap();
    let slices = orderctl::db::stats::roll_up(c, 1000).unwrap_or_else(|e| die(&e.message));
    c.batch_execute(&format!("ANALYZE {rollups}")).unwrap();
    eprintln!("   rolled up {slices} five-minute slice(s) in {:.1} s", started.elapsed().as_secs_f64());
}

fn measure(o: &Options, c: &mut Client, url: &str, sim: &Sim, bin: &str) -> Figures {
    let samples = (o.latency_samples / 4).max(20);
    let (latency, _) = crate::measure_dispatch_latency(o, c, url, sim, bin, samples);
    eprintln!("     dispatch latency p50 {latency:.1} ms ({samples} orders, idle daemon)");
    // 1,000 open orders due, claimed 100 at a time (then finished, so they join the history).
    let open = insert_orders(c, "pubg-60", 1000);
    let claim = measure_claims(c, o.runs);
    finish(c, &open);
    let number: i64 = c.query_one("SELECT max(number) FROM orders", &[]).unwrap().get(0);
    let number = number.to_string();
    let processes: [(&str, Vec<&str>); 6] = [
        ("`list --limit 50`", vec!["list", "--limit", "50"]),
        ("`list --stuck`", vec!["list", "--stuck"]),
        ("`inspect N`", vec!["inspect", &number]),
        ("`stats`", vec!["stats"]),
        ("`stats --since 30d`", vec!["stats", "--since", "30d"]),
        ("`doctor`", vec!["doctor"]),
    ];
    let mut figures = vec![("dispatch latency p50, idle daemon", latency), ("claim 100 due orders", claim)];
    for (name, args) in processes {
        let times: Vec<f64> = (0..5 * o.runs).map(|_| time_command(bin, url, &args)).collect();
        eprintln!("     {name}: {:.1} ms", median(&times));
        figures.push((name, median(&times)));
    }
    let gauges: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            orderctl::db::stats::metric_gauges(c, None).unwrap_or_else(|e| die(&e.message));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    eprintln!("     metric gauge refresh: {:.2} ms", median(&gauges));
    figures.push(("daemon metric-gauge refresh (SQL)", median(&gauges)));
    Figures(figures)
}

fn finish(c: &mut Client, ids: &[uuid::Uuid]) {
    c.execute(
        &format!(
            "UPDATE orders SET status = {approved}, external_status = {done}, next_check_at = NULL,
                    completed_at = now(), duration_ms = 1000 WHERE id = ANY($1)",
            approved = OrderStatus::Approved.sql(),
            done = ExternalStatus::Done.sql()
        ),
        &[&ids],
    )
    .unwrap();
}

/// Wall time of one orderctl process; exit 8 (needs action: `doctor`, `list --stuck` with
/// findings) counts as a run, anything else stops the benchmark.
fn time_command(bin: &str, url: &str, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin).args(args).env("DATABASE_URL", url).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !matches!(out.code(), Some(0) | Some(8)) {
        die(&format!("orderctl {args:?} failed ({out})"));
    }
    ms
}

/// Throughput and claim latency with a transaction held open by another connection for
/// `secs`, against the same work without it, in the same database kind (fresh clones).
/// Buyers the long-transaction scenario spreads its orders over.
const BUYERS: usize = 200;

pub fn long_transaction(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, secs: u64, results: &mut Results) {
    eprintln!("== long transaction: {secs} s held open while orders flow, against no such transaction");
    let mut figures = Vec::new();
    for held in [false, true] {
        let db = server.clone_of(template, "longtx");
        let url = db.url.clone();
        let mut c = connect(&url);
        let mut holder = connect(&url);
        if !held && c.query_one("SHOW autovacuum", &[]).map(|r| r.get::<_, String>(0) != "on").unwrap_or(false) {
            eprintln!("   warning: autovacuum is off on this server: nothing vacuums the hot tables in either phase");
        }
        if held {
            // A snapshot and an xid: vacuum can remove nothing newer than this transaction.
            holder
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT count(*) FROM tenants;")
                .unwrap();
        }
        // Orders come from many buyers, as in a shop: each batch charges one of them. With one
        // buyer for everything, its row gets a version per batch that the held snapshot keeps,
        // and every order's and ledger row's foreign-key check walks all of them (measured:
        // the inserts went from 12 to 119 ms per 100 orders over the ten minutes); that is the
        // harness's hot row, not the queue's.
        c.batch_execute(&format!(
            "INSERT INTO users (tenant_id, name, balance)
             SELECT t.id, 'buyer-' || g, 100000000 FROM tenants t, generate_series(1, {BUYERS}) g WHERE t.name = 'bench'"
        ))
        .unwrap();
        sim.reset(json!({"complete_after": "0s"}));
        let daemon = Daemon::start(bin, &url, &["--first-check", "0s"]);
        daemon.wait_ready(&mut c);
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut rates = Vec::new();
        let mut batches = 0usize;
        while Instant::now() < stop {
            let started = Instant::now();
            let (mut left, mut round) = (o.orders, Vec::new());
            while left > 0 {
                let buyer = format!("buyer-{}", batches % BUYERS + 1);
                let n = o.arrival_batch.min(left);
                round.extend(
                    orderctl::kit::orders::insert_orders(&mut c, "bench", &buyer, "pubg-60", n)
                        .unwrap_or_else(|e| die(&e.message)),
                );
                left -= n;
                batches += 1;
            }
            // The round's own orders, not `work_left`: its due-index probes walk every entry
            // the held snapshot keeps, 100 times a second, and would slow what is measured.
            if !wait_until(&mut c, Duration::from_secs(300), |c| !work_left_of(c, &mut round)) {
                die("long transaction: orders did not finish within 300 s");
            }
            rates.push(o.orders as f64 / started.elapsed().as_secs_f64());
        }
        // How throughput moved as the tables grew (each round adds `--orders` to them).
        let tenth = (rates.len() / 10).max(1);
        let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len().max(1) as f64;
        eprintln!(
            "   first tenth of the rounds {:.0} orders/s, last tenth {:.0} orders/s",
            mean(&rates[..tenth.min(rates.len())]),
            mean(&rates[rates.len().saturating_sub(tenth)..])
        );
        drop(daemon);
        // What one probe of the due indexes from their start costs now (every 10 ms, as the
        // end-to-end rounds of this file polled before `work_left_of`).
        let probe = median(
            &(0..20)
                .map(|_| {
                    let t = Instant::now();
                    work_left(&mut c);
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect::<Vec<_>>(),
        );
        eprintln!("   one `work_left` probe of both due indexes: {probe:.2} ms");
        let dead: i64 = c
            .query_one("SELECT coalesce(n_dead_tup, 0) FROM pg_stat_user_tables WHERE relid = 'orders'::regclass", &[])
            .unwrap()
            .get(0);
        let (whole, floored) = claims_whole_and_floored(&mut c, o.runs);
        if held {
            holder.batch_execute("COMMIT").unwrap();
        }
        let rate = median(&rates);
        eprintln!(
            "   {}: {rate:.0} orders/s over {} rounds, claim {floored:.2} ms (whole index: {whole:.2} ms), {dead} dead tuples in orders",
            if held { "held" } else { "baseline" },
            rates.len()
        );
        figures.push((rate, floored, whole, dead));
        drop(c);
        drop(holder);
        drop(db);
    }
    let ((base_rate, base_claim, base_whole, base_dead), (rate, claim, whole, dead)) = (figures[0], figures[1]);
    results.add("end-to-end throughput, no long transaction", base_rate, "orders/s", None, None, "");
    results.add(
        &format!("end-to-end throughput, a transaction held open {secs} s"),
        rate,
        "orders/s",
        Some(Target::AtLeast(base_rate / 1.5)),
        Some((base_rate / rate, "× slower than without")),
        &format!("dead tuples in orders {dead} vs {base_dead}"),
    );
    results.add("claim 100 due (a lane's claim, from its floor), no long transaction", base_claim, "ms", None, None, "");
    results.add(
        &format!("claim 100 due (a lane's claim, from its floor), a transaction held open {secs} s"),
        claim,
        "ms",
        Some(Target::AtMost(base_claim * 1.5)),
        Some((claim / base_claim, "× without")),
        "",
    );
    results.add("claim 100 due reading the whole index, no long transaction", base_whole, "ms", None, None, "");
    results.add(
        &format!("claim 100 due reading the whole index, a transaction held open {secs} s"),
        whole,
        "ms",
        None,
        Some((whole / base_whole, "× without")),
        "what every claim cost before the floor",
    );
}

/// The claim of 100 due orders timed two ways on the same table: as a lane claims (from its
/// floor, with a whole-index claim now and then as the lane makes them) and reading the whole
/// index every time; each followed by EXPLAIN (ANALYZE, BUFFERS) of the placement claim from the
/// floor and from the index's start. Each run claims 10,000 fresh orders (inserted 100 per
/// transaction, as shops write them) 100 at a time, then finishes them: claiming the same
/// orders again and again would time their primary-key lookups instead (under an old snapshot
/// each update of a row leaves one more version that every later lookup of it walks).
fn claims_whole_and_floored(c: &mut Client, runs: usize) -> (f64, f64) {
    use orderctl::db::claims::{claim_due, claim_due_from, ClaimFloor, LaneQuery};
    let lane: i64 = c.query_one("SELECT id FROM providers WHERE name = 'znet-main'", &[]).unwrap().get(0);
    let q = LaneQuery::whole(lane, None, None);
    let lease = Duration::from_secs(60);
    let mut floor = ClaimFloor::default();
    let floored = fresh_claim_runs(c, runs, |c, explain| {
        if explain {
            let from = floor.from().placements;
            eprintln!("   halfway, from the floor ({from:?}):\n{}", explain_placement_claim(c, lane, from));
            return 0;
        }
        claim_due_from(c, &mut floor, q, 100, lease).unwrap().len()
    });
    let whole = fresh_claim_runs(c, runs, |c, explain| {
        if explain {
            eprintln!("   halfway, from the index's start:\n{}", explain_placement_claim(c, lane, None));
            return 0;
        }
        claim_due(c, q, 100, lease).unwrap().len()
    });
    (whole, floored)
}

/// Median over runs of the median time of 100 claims of 100 fresh due orders. `claim(c, true)`
/// explains the claim instead (once, untimed, halfway through the last run).
fn fresh_claim_runs(c: &mut Client, runs: usize, mut claim: impl FnMut(&mut Client, bool) -> usize) -> f64 {
    let mut medians = Vec::new();
    for run in 0..runs {
        let ids: Vec<uuid::Uuid> = (0..100).flat_map(|_| insert_orders(c, "pubg-60", 100)).collect();
        c.batch_execute("VACUUM orders").unwrap();
        let mut times = Vec::new();
        for k in 0..100 {
            if run + 1 == runs && k == 50 {
                claim(c, true);
            }
            let t = Instant::now();
            assert_eq!(claim(c, false), 100, "100 due orders claimed");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        finish(c, &ids);
        let worst = times.iter().cloned().fold(0.0, f64::max);
        eprintln!("   run {}: claim median {:.3} ms (slowest {worst:.1} ms)", run + 1, median(&times));
        medians.push(median(&times));
    }
    median(&medians)
}

fn explain_placement_claim(c: &mut Client, lane: i64, from: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let mut tx = c.transaction().unwrap();
    let rows = tx
        .query(
            &format!(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
                 SELECT o.id FROM orders o
                  WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= now()
                    AND o.next_check_at >= coalesce($2::timestamptz, '-infinity') AND o.external_status = {not_sent}
                  ORDER BY o.next_check_at LIMIT 100 FOR UPDATE SKIP LOCKED",
                not_sent = ExternalStatus::NotSent.sql()
            ),
            &[&lane, &from],
        )
        .unwrap();
    tx.rollback().unwrap();
    rows.iter().map(|r| format!("     {}", r.get::<_, String>(0))).collect::<Vec<_>>().join("\n")
}
