//! Retention (issue 24, item 2): monthly partitions of order_events (orders and placements stay
//! plain tables), created ahead; `archive` writes a month to a file and removes it, balances
//! unchanged, refused while an order of the month is open, resumable; migrating a populated
//! database keeps every row; `doctor` names the oldest open transaction.

use crate::orders::{create, setup};
use crate::support::*;
use orderctl::db::stats;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The first day of the month `k` months from the current one (UTC), as `YYYY-MM-DD`.
fn month(db: &TestDb, k: i32) -> String {
    db.client()
        .query_one(
            "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => $1::int), 'YYYY-MM-DD')",
            &[&k],
        )
        .unwrap()
        .get(0)
}

/// Moves every order (with its events) into the month starting on `first`, as if a past
/// month's traffic had left them there.
fn move_orders_to(db: &TestDb, first: &str) {
    let mut c = db.client();
    c.query("SELECT orderctl_ensure_partitions($1::text::date, $1::text::date)", &[&first]).unwrap();
    c.batch_execute(&format!(
        "UPDATE orders SET created_at = '{first} 12:00:00+00'::timestamptz + make_interval(secs => number % 1000);
         UPDATE order_events e SET order_created_at = o.created_at FROM orders o WHERE o.id = e.order_id;
         UPDATE placements p SET order_created_at = o.created_at FROM orders o WHERE o.id = p.order_id;"
    ))
    .unwrap();
}

fn rows_in(db: &TestDb, table: &str) -> i64 {
    db.query_i64(&format!("SELECT count(*) FROM {table}"))
}

fn balances(db: &TestDb) -> Vec<(String, String)> {
    db.client()
        .query("SELECT name, balance::text FROM users ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Finished orders of a past month through every path (a provider, code stock, an operator's
/// rejection), moved to three months ago; returns that month's label.
fn a_finished_past_month(db: &TestDb) -> String {
    let fast = ["--first-check", "0s"];
    create(db, "pubg-60", &fast);
    create(db, "freefire-100", &fast);
    create(db, "itunes-10", &fast);
    let manual = create(db, "jawaker", &[]);
    db.cmd().args(["reject", &manual["number"].to_string(), "--reason", "buyer asked"]).run().ok();
    wait_until("the provider orders to finish", Duration::from_secs(30), || {
        db.cmd().args(["sweep", "--first-check", "0s"]).run();
        db.query_i64("SELECT count(*) FROM orders WHERE status = 'pending'") == 0
    });
    let first = month(db, -3);
    move_orders_to(db, &first);
    first[..7].to_string()
}

#[test]
fn archive_of_a_month_round_trips_and_leaves_balances_unchanged() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let label = a_finished_past_month(&db);
    let before = month(&db, -2)[..7].to_string();
    let suffix = label.replace('-', "m");
    let expected: BTreeMap<&str, i64> = [
        ("orders", rows_in(&db, "orders")),
        ("order_events", rows_in(&db, &format!("order_events_y{suffix}"))),
        ("placements", rows_in(&db, "placements")),
        ("webhook_deliveries", rows_in(&db, "webhook_deliveries")),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert_eq!(expected["orders"], 4);
    assert_eq!(rows_in(&db, "order_events"), expected["order_events"]);
    assert!(expected["placements"] >= 2 && expected["order_events"] >= 4, "{expected:?}");
    // The stats rollups (sql/0019) count the month's orders, finished then.
    db.client()
        .batch_execute(
            "UPDATE orders SET completed_at = created_at + interval '1 minute';
             UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now() - interval '200 days', 'UTC');
             SELECT orderctl_roll_up(400);",
        )
        .unwrap();
    let rolled_up = "SELECT count(*) FROM order_totals WHERE created_month < now() - interval '2 months'";
    assert!(db.query_i64(rolled_up) > 0);
    // An order of the current month, still open, is not part of it.
    let open_now = create(&db, "jawaker", &[]);
    let balances_before = balances(&db);
    let ledger_before = rows_in(&db, "ledger");

    // A claim-shaped query on another connection all through the archive: none waits long.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let claims = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = orderctl::db::connect(&url).unwrap();
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = Instant::now();
                let mut tx = c.transaction().unwrap();
                // The routing lane's own claim (planned over the live orders alone: sql/0031).
                orderctl::db::claims::lock_due(&mut tx, orderctl::db::claims::LaneQuery::whole(0, None, None), 10, 10).unwrap();
                // A write-back's event insert into the partitioned table (undone: counts stay).
                tx.execute(
                    "INSERT INTO order_events (order_id, kind, order_created_at)
                     SELECT id, 'note', created_at FROM orders WHERE status = 'pending' LIMIT 1",
                    &[],
                )
                .unwrap();
                tx.rollback().unwrap();
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_millis(2));
            }
            worst
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let out = db.cmd().args(["--output", "json", "archive", "--before", &before, "--to"]).arg(&file).run().ok().json();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let worst = claims.join().unwrap();
    assert_eq!(out["months"], serde_json::json!([label]));
    assert_eq!(out["orders"], 4);

    // File rows = removed rows, table by table; every line is a JSON object jq reads.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut in_file: BTreeMap<String, i64> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["month"], label.as_str());
        assert!(v["row"]["id"].is_string() || v["row"]["id"].is_number(), "{line}");
        *in_file.entry(v["table"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let in_file: BTreeMap<&str, i64> = in_file.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(in_file, expected);
    // The month's partitions of events and of finished orders are dropped, its keys removed.
    for table in ["order_events", "orders_done"] {
        assert_eq!(db.query_i64(&format!("SELECT count(*) FROM pg_class WHERE relname = '{table}_y{suffix}'")), 0, "{table}");
    }
    assert_eq!(rows_in(&db, "order_keys"), 1, "only the open order's keys are left");
    assert_eq!(rows_in(&db, "placements"), 0);
    assert_eq!(db.query_i64(rolled_up), 0, "the month's rollup rows go with its orders");
    assert_eq!(rows_in(&db, "orders"), 1, "only the open order of this month is left");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'pending'"), 1);
    // Balances and the ledger are untouched.
    assert_eq!(balances(&db), balances_before);
    assert_eq!(rows_in(&db, "ledger"), ledger_before);
    assert_money_conserved(&db);
    eprintln!("slowest claim during the archive: {worst:?}");
    assert!(worst < Duration::from_millis(100), "a claim waited {worst:?} during the archive");
    // The open order of this month still works.
    db.cmd().args(["approve", &open_now["number"].to_string(), "--pin", "PIN-1"]).run().ok();
    // The file reads back into Postgres as the docs say.
    let mut c = db.client();
    c.batch_execute("CREATE TABLE archive (doc jsonb)").unwrap();
    for line in text.lines() {
        c.execute("INSERT INTO archive VALUES ($1::text::jsonb)", &[&line]).unwrap();
    }
    let back: i64 = c
        .query_one(
            "SELECT count(*) FROM archive, jsonb_populate_record(NULL::orders, doc->'row') o
              WHERE doc->>'table' = 'orders' AND o.id IS NOT NULL AND o.number IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(back, 4);
}

#[test]
fn an_open_order_blocks_the_archive_and_nothing_is_removed() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let open = create(&db, "jawaker", &[]);
    create(&db, "itunes-10", &[]);
    move_orders_to(&db, &month(&db, -1));
    let before = month(&db, 0)[..7].to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let out = db.cmd().args(["archive", "--before", &before, "--to"]).arg(&file).run().code(5);
    assert!(out.stderr.contains(&open["number"].to_string()) && out.stderr.contains("open orders"), "{}", out.stderr);
    assert!(!file.exists());
    assert_eq!(rows_in(&db, "orders"), 2);
    assert!(rows_in(&db, "order_events") >= 2);
    // The current month and later are refused as a usage of the wrong month.
    db.cmd().args(["archive", "--before", &month(&db, 1)[..7], "--to"]).arg(&file).run().code(4);
    // One tenant's operator cannot archive every tenant's orders.
    db.cmd().args(["--tenant", "alsham", "archive", "--before", &before, "--to"]).arg(&file).run().code(2);
    assert_eq!(rows_in(&db, "orders"), 2);
}

#[test]
fn partitions_are_created_ahead_by_the_command_and_by_the_daemon() {
    let db = TestDb::new();
    let names = |k: i32| -> Vec<String> {
        let m = month(&db, k);
        ["order_events", "orders_done", "placements"].iter().map(|t| format!("{t}_y{}m{}", &m[..4], &m[5..7])).collect::<Vec<_>>()
    };
    let drop_ahead = |from: i32, to: i32| {
        for k in from..=to {
            for n in names(k) {
                db.client().batch_execute(&format!("DROP TABLE IF EXISTS {n}")).unwrap();
            }
        }
    };
    drop_ahead(1, 12);
    let out = db.cmd().args(["--output", "json", "partitions", "--ahead", "2"]).run().ok().json();
    let mut created: Vec<String> = out["created"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().into()).collect();
    created.sort();
    let mut wanted: Vec<String> = names(1).into_iter().chain(names(2)).collect();
    wanted.sort();
    assert_eq!(created, wanted);
    let listed: Vec<&str> = out["partitions"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for n in names(0).iter().chain(&wanted) {
        assert!(listed.contains(&n.as_str()), "{n} not listed in {listed:?}");
    }
    let again = db.cmd().args(["--output", "json", "partitions", "--ahead", "2"]).run().ok().json();
    assert_eq!(again["created"], serde_json::json!([]));

    // The daemon keeps one month ahead on its sweep schedule.
    drop_ahead(1, 12);
    let daemon = db.cmd().args(["daemon", "--sweep-schedule", "* * * * * *", "--idle-poll", "50ms"]).spawn();
    let last = names(1);
    wait_until("the daemon to create partitions a month ahead", Duration::from_secs(20), || {
        last.iter().all(|n| db.query_i64(&format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = to_regclass('{n}')")) == 1)
    });
    daemon.terminate();
}

#[test]
fn migrating_a_populated_pre_0018_database_keeps_every_row() {
    // Without 0018 and the migrations built on it (0019's roll-ups, which 0020, 0025 and 0026 restate). The
    // later ones stay: the setup `apply` of this binary reads what they add (0021's tenant
    // currency), and they touch nothing 0018 moves.
    // 0031 splits orders with 0018's partition function, 0032 partitions placements with
    // 0031's keys and 0033 moves 0031's foreign keys, so they wait for 0018 too.
    let db = TestDb::migrated_without(&["0018", "0019", "0020", "0025", "0026", "0031", "0032", "0033"]);
    db.apply(&standard_setup("http://127.0.0.1:9"));
    // Three months of orders, each with events and a placement, as the older schema held them.
    insert_orders(&db, "jawaker", 30);
    db.client()
        .batch_execute(
            "UPDATE orders SET created_at = now() - make_interval(days => (number % 3)::int * 31), request_id = 'r-' || number;
             INSERT INTO order_events (order_id, kind, message) SELECT id, 'created', 'old' FROM orders;
             INSERT INTO order_events (order_id, kind, message) SELECT id, 'note', 'older' FROM orders WHERE number % 2 = 0;
             INSERT INTO placements (order_id, provider_id, referans)
             SELECT o.id, p.id, 'ref-' || o.number FROM orders o, providers p WHERE p.name = 'xstor';",
        )
        .unwrap();
    let digest = |db: &TestDb| -> Vec<(i64, String)> {
        [
            "SELECT count(*), md5(string_agg(o::text, ',' ORDER BY o.number)) FROM orders o",
            "SELECT count(*), md5(string_agg(row(e.id, e.order_id, e.at, e.kind, e.message)::text, ',' ORDER BY e.id)) FROM order_events e",
            "SELECT count(*), md5(string_agg(row(p.id, p.order_id, p.referans, p.attempt, p.outcome)::text, ',' ORDER BY p.id)) FROM placements p",
        ]
        .iter()
        .map(|q| {
            let r = db.client().query_one(q, &[]).unwrap();
            (r.get(0), r.get(1))
        })
        .collect()
    };
    let before = digest(&db);
    assert_eq!(before[0].0, 30);
    db.cmd().args(["migrate"]).run().ok();
    assert_eq!(digest(&db), before);
    assert!(db.query_i64("SELECT count(*) FROM pg_inherits WHERE inhparent = 'order_events'::regclass") >= 4);
    // Events by month; orders split into live and done (0031), the done ones and placements
    // (0032) by month.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM pg_partitioned_table
              WHERE partrelid::regclass::text NOT IN ('order_events', 'orders', 'orders_done', 'placements')"
        ),
        0
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM placement_references"), 30, "every reference keeps its order");
    // Every placement sits in the partition of its order's month.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM placements p JOIN orders o ON o.id = p.order_id
              WHERE p.order_created_at <> o.created_at
                 OR p.tableoid::regclass::text <> 'placements_y' || to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY\"m\"MM')"
        ),
        0
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM order_keys"), 30, "every order keeps its keys");
    // Every event sits in the partition of its order's month.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM order_events e JOIN orders o ON o.id = e.order_id
              WHERE e.order_created_at <> o.created_at
                 OR e.tableoid::regclass::text <> 'order_events_y' || to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY\"m\"MM')"
        ),
        0
    );
    let mut c = db.client();
    let e = c
        .execute(
            "INSERT INTO placements (order_id, provider_id, referans, attempt, order_created_at)
             SELECT o.id, p.provider_id, p.referans, p.attempt, o.created_at FROM placements p JOIN orders o ON o.id <> p.order_id LIMIT 1",
            &[],
        )
        .unwrap_err();
    assert_eq!(e.as_db_error().and_then(|d| d.constraint()), Some("placements_provider_referans_attempt"));
}

#[test]
fn doctor_names_the_oldest_open_transaction() {
    let db = TestDb::new();
    let mut holder = postgres::Client::connect(&with_application_name(&db.url, "long-report"), postgres::NoTls).unwrap();
    holder.batch_execute("BEGIN; SELECT txid_current();").unwrap();
    let out = db.cmd().args(["--output", "json", "doctor"]).run();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let finding = doctor_finding(&report, "old-transaction").unwrap();
    let message = finding["message"].as_str().unwrap();
    assert!(message.contains("long-report") && message.contains("idle in transaction"), "{message}");
    let hot: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "dead-tuples")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    for table in ["orders ", "placements ", "order_events ", "webhook_deliveries ", "provider_permits "] {
        assert!(hot.iter().any(|m| m.starts_with(table)), "{table}: {hot:?}");
    }
    holder.batch_execute("ROLLBACK").unwrap();

    // Partitions ahead: doctor warns when next month has none.
    let partitions = |db: &TestDb| -> Value {
        let report: Value = serde_json::from_str(&db.cmd().args(["--output", "json", "doctor"]).run().stdout).unwrap();
        doctor_finding(&report, "partitions").unwrap()
    };
    assert_eq!(partitions(&db)["severity"], "ok");
    for k in 1..=3 {
        let m = month(&db, k);
        db.client().batch_execute(&format!("DROP TABLE IF EXISTS order_events_y{}m{}", &m[..4], &m[5..7])).unwrap();
    }
    let finding = partitions(&db);
    assert_eq!(finding["severity"], "warn", "{finding}");
}

/// A batch that cannot lock its orders (an operator's transaction holds one) stops the archive
/// with how far it got; the file is complete; a re-run with a new file finishes the removal.
#[test]
fn an_archive_stopped_by_a_held_order_says_how_far_it_got_and_a_re_run_resumes() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let label = a_finished_past_month(&db);
    let before = month(&db, -2)[..7].to_string();
    let balances_before = balances(&db);
    let mut holder = db.client();
    let mut held = holder.transaction().unwrap();
    held.query("SELECT id FROM orders ORDER BY number LIMIT 1 FOR UPDATE", &[]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let out = db.cmd().args(["archive", "--before", &before, "--to"]).arg(&first).run().code(5);
    assert!(out.stderr.contains("removing 0 of the 4 orders"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&first).unwrap().lines().filter(|l| l.contains("\"table\":\"orders\"")).count(), 4);
    assert_eq!(rows_in(&db, "orders"), 4, "the stopped batch removed nothing");
    assert!(rows_in(&db, "order_events") >= 4, "the month's events stay until every order is gone");
    held.rollback().unwrap();

    let second = dir.path().join("second.jsonl");
    let out = db.cmd().args(["--output", "json", "archive", "--before", &before, "--to"]).arg(&second).run().ok().json();
    assert_eq!(out["months"], serde_json::json!([label]));
    assert_eq!(out["removed_orders"], 4);
    assert_eq!(rows_in(&db, "orders"), 0);
    assert_eq!(rows_in(&db, "order_events"), 0);
    assert_eq!(balances(&db), balances_before);
    assert_money_conserved(&db);
}

/// Sum of a rollup's counts.
fn rolled_up(db: &TestDb, table: &str, column: &str) -> i64 {
    db.query_i64(&format!("SELECT coalesce(sum({column}), 0)::bigint FROM {table}"))
}

#[test]
fn a_roll_up_racing_the_archive_of_a_month_leaves_counts_equal_to_the_rows_kept() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let archived = a_finished_past_month(&db);
    let before = month(&db, -2);
    let kept = month(&db, -1);
    // Half the orders move on to the month that stays; every placement and event happened
    // at its order's creation, so all of it lies in closed hours and days.
    db.client().query("SELECT orderctl_ensure_partitions($1::text::date, $1::text::date)", &[&kept]).unwrap();
    db.client()
        .batch_execute(&format!(
            "UPDATE orders SET created_at = created_at + (DATE '{kept}' - DATE '{archived}-01') * interval '1 day' WHERE number % 2 = 0;
             UPDATE orders SET completed_at = created_at + interval '1 minute';
             UPDATE order_events e SET order_created_at = o.created_at, at = o.created_at + interval '30 seconds'
               FROM orders o WHERE o.id = e.order_id;
             UPDATE placements p SET created_at = o.created_at, order_created_at = o.created_at FROM orders o WHERE o.id = p.order_id;
             TRUNCATE {rollups};
             UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now() - interval '200 days', 'UTC');",
            rollups = stats::ROLLUP_TABLES.join(", ")
        ))
        .unwrap();
    let rows_kept = db.query_i64(&format!("SELECT count(*) FROM orders WHERE created_at >= '{before}'"));
    assert!(rows_kept > 0 && rows_kept < rows_in(&db, "orders"), "orders in both months");

    // The roll-up has counted the archived month and holds the watermark when the archive
    // removes the month's orders; the archive then waits for it before removing the month's
    // rollup rows.
    let mut roll_up = db.client();
    let mut tx = roll_up.transaction().unwrap();
    let slices: i32 = tx.query_one("SELECT orderctl_roll_up(400)", &[]).unwrap().get(0);
    assert!(slices > 12 * 24 * 90, "{slices}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.jsonl");
    let archive = {
        let cmd = db.cmd().args(["--output", "json", "archive", "--before", &before[..7], "--to"]).arg(&file);
        std::thread::spawn(move || cmd.run())
    };
    let waiting = format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> {}",
        tx.query_one("SELECT pg_backend_pid()", &[]).unwrap().get::<_, i32>(0)
    );
    wait_until("the archive to wait for the roll-up", Duration::from_secs(10), || {
        db.query_i64(&format!("SELECT count(*) FROM order_keys WHERE created_at < '{before}'")) == 0 && db.query_i64(&waiting) > 0
    });
    tx.commit().unwrap();
    let out = archive.join().unwrap().ok().json();
    assert_eq!(out["months"], serde_json::json!([archived]));

    let month_rows = stats::ROLLUP_TABLES
        .iter()
        .map(|t| db.query_i64(&format!("SELECT count(*) FROM {t} WHERE created_month < '{before}'")))
        .sum::<i64>();
    assert_eq!(month_rows, 0, "the archived month's rollup rows, daily, hourly and by slice, went with it");
    let finished = "SELECT count(*) FROM orders WHERE status <> 'pending' AND NOT operator_forced";
    assert_eq!(db.query_i64(finished), rows_kept);
    for (table, column) in
        [("order_totals", "orders"), ("order_days", "orders"), ("order_hours", "orders"), ("order_slices", "orders")]
    {
        assert_eq!(rolled_up(&db, table, column), rows_kept, "{table} counts the rows kept");
    }
    let activity = db.query_i64(
        "SELECT (SELECT count(*) FROM placements)
              + (SELECT count(*) FROM order_events e JOIN orders o ON o.id = e.order_id
                  WHERE o.provider_id IS NOT NULL
                    AND e.kind IN ('check.waiting', 'check.no_news', 'check.approved', 'check.cancelled', 'gave_up'))",
    );
    assert_eq!(rolled_up(&db, "provider_activity_slices", "n"), activity);
    assert_eq!(rolled_up(&db, "provider_activity_hours", "n"), activity);
    assert_eq!(rolled_up(&db, "provider_activity_days", "n"), activity);
    let shown = db.cmd().args(["--output", "json", "stats", "--since", "200d"]).run().ok().json();
    let total: i64 = shown["orders_by_status"].as_array().unwrap().iter().map(|c| c["orders"].as_i64().unwrap()).sum();
    assert_eq!(total, rows_in(&db, "orders"), "stats counts the orders kept");
}

/// A web app that holds its buyer's row while it charges (Django's `select_for_update`) does
/// not hold up the write-back that finishes that buyer's orders: the move of a finished order
/// to its month locks none of the rows it names (sql/0033).
#[test]
fn a_buyer_row_held_by_the_shop_does_not_hold_up_finishing_its_orders() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let order = create(&db, "pubg-60", &["--first-check", "0s"]);
    assert_eq!(order["external_status"], "sent", "{order}");
    let mut shop = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    shop.batch_execute("BEGIN; SELECT balance FROM users WHERE name = 'halil' FOR UPDATE;").unwrap();
    let report = db.cmd().args(["--output", "json", "sweep", "--first-check", "0s"]).run().ok().json();
    assert_eq!(report["approved"], 1, "{report}");
    let number = order["number"].to_string();
    assert_eq!(crate::orders::inspect(&db, &number)["status"], "approved");
    // Still held all along: nothing could have waited for it to go.
    assert_eq!(
        shop.query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND pid = pg_backend_pid()", &[])
            .unwrap()
            .get::<_, i64>(0),
        1
    );
    shop.batch_execute("ROLLBACK").unwrap();
}

/// What the foreign keys of `orders` guarded for finished orders still holds without them
/// (sql/0033): a user, package or provider that a finished order names cannot be deleted, and
/// a finished order cannot be inserted or edited to name one that does not exist.
#[test]
fn finished_orders_keep_the_rows_they_name() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let order = create(&db, "pubg-60", &["--first-check", "0s"]);
    db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
    let number: i64 = order["number"].as_i64().unwrap();
    assert_eq!(db.query_i64(&format!("SELECT count(*) FROM orders_done WHERE number = {number}")), 1);
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let refused = |c: &mut postgres::Client, sql: &str, constraint: &str| {
        let e = c.batch_execute(&format!("BEGIN; {sql}")).expect_err(sql);
        c.batch_execute("ROLLBACK").unwrap();
        let d = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert_eq!(e.code(), Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION), "{sql}: {e}");
        assert_eq!(d.constraint(), Some(constraint), "{sql}: {e}");
    };
    let of_order = |column: &str| format!("(SELECT {column} FROM orders WHERE number = {number})");
    // The ledger's own key would refuse the user first: its rows go in the same transaction.
    refused(
        &mut c,
        &format!("DELETE FROM ledger WHERE user_id = {u}; DELETE FROM users WHERE id = {u}", u = of_order("user_id")),
        "orders_tenant_id_user_id_fkey",
    );
    refused(&mut c, &format!("DELETE FROM packages WHERE id = {}", of_order("package_id")), "orders_tenant_id_package_id_fkey");
    refused(
        &mut c,
        &format!("DELETE FROM providers WHERE id = {}", of_order("provider_id")),
        "orders_tenant_id_provider_id_fkey",
    );
    refused(&mut c, &format!("UPDATE users SET id = -id WHERE id = {}", of_order("user_id")), "orders_tenant_id_user_id_fkey");
    refused(&mut c, &format!("UPDATE orders SET provider_id = -1 WHERE number = {number}"), "orders_tenant_id_provider_id_fkey");
    refused(
        &mut c,
        "INSERT INTO orders (tenant_id, user_id, package_id, user_identifier, price, status, external_status)
         SELECT tenant_id, -5, package_id, 'imported', price, status, external_status FROM orders LIMIT 1",
        "orders_tenant_id_user_id_fkey",
    );
    // A user no order names goes; the finished order is untouched.
    c.batch_execute(
        "INSERT INTO users (tenant_id, name) SELECT tenant_id, 'leaves-soon' FROM users LIMIT 1;
         DELETE FROM users WHERE name = 'leaves-soon';",
    )
    .unwrap();
    assert_eq!(db.query_i64(&format!("SELECT count(*) FROM orders_done WHERE number = {number} AND status = 'approved'")), 1);
}
