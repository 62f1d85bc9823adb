//! History never touches the hot path (issue 24): the rollups `stats` reads count exactly what
//! the rows say, and the hot queries read small indexes, never the whole orders table, with a
//! history seeded.

use crate::orders::setup;
use crate::support::*;
use chrono::{DateTime, DurationRound, Utc};
use orderctl::db::{stats, GenericClient};
use serde_json::Value;
use std::time::Duration;

const FAST: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];

fn stats_json(db: &TestDb) -> Value {
    db.cmd().args(["--output", "json", "stats", "--since", "30d"]).run().ok().json()
}

/// Shift every time of the workload `days` into the past, so whole days of it can be rolled up
/// (the copies of an order's creation time with it: its rows move to that month's partitions,
/// made first).
fn age_everything(db: &TestDb, days: i32) {
    db.client()
        .batch_execute(&format!(
            "SELECT orderctl_ensure_partitions((now() - interval '{days} days')::date, now()::date);
             UPDATE orders SET created_at = created_at - interval '{days} days',
                               completed_at = completed_at - interval '{days} days';
             UPDATE placements SET created_at = created_at - interval '{days} days',
                                   order_created_at = order_created_at - interval '{days} days';
             UPDATE order_events SET at = at - interval '{days} days',
                                     order_created_at = order_created_at - interval '{days} days';
             UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now(), 'UTC') - interval '{} days';",
            days + 1
        ))
        .unwrap();
}

#[test]
fn rollups_count_what_a_direct_count_says_after_a_mixed_workload() {
    // Cancels (refunds), rejections (fallback, retries), 500s (reconciled), and operators.
    let sim = Sim::start(&[
        "--complete-after",
        "100ms",
        "--cancel-share",
        "0.25",
        "--reject-share",
        "0.15",
        "--error-share",
        "0.1",
        "--seed",
        "11",
    ]);
    let db = setup(&sim);
    insert_orders(&db, "pubg-60", 40);
    insert_orders(&db, "freefire-100", 30);
    insert_orders(&db, "jawaker", 4);
    insert_orders(&db, "itunes-10", 2);
    wait_until("automatic orders settled", Duration::from_secs(90), || {
        // A rejection that says "insufficient balance" makes its provider wait (issue 23); the
        // operator says the account was topped up, so the workload runs to its end.
        if db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'waiting_for_provider'") > 0 {
            for provider in ["znet-main", "xstor"] {
                db.cmd().args(["provider", "resume", provider]).run();
            }
        }
        db.cmd().args(["sweep"]).args(FAST).run();
        db.query_i64(
            "SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id
              WHERE o.status = 'pending' AND p.name <> 'jawaker' AND o.attention IS NULL",
        ) == 0
    });
    let manual = order_numbers_of_package(&db, "jawaker");
    db.cmd().args(["approve", &manual[0].to_string(), "--pin", "OP-1"]).run().ok();
    db.cmd().args(["reject", &manual[1].to_string(), "--reason", "buyer asked"]).run().ok();
    assert!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'rejected'") > 0, "some orders were refunded");
    assert!(db.query_i64("SELECT count(*) FROM placements WHERE outcome <> 'accepted'") > 0, "some placements were retried");

    age_everything(&db, 3);
    let live = stats_json(&db);
    let slices = stats::roll_up(&mut db.client(), 1000).unwrap();
    assert!(slices >= 72 * 12, "the aged days were rolled up ({slices} five-minute slices)");
    let finished = db.query_i64("SELECT count(*) FROM orders WHERE status <> 'pending' AND NOT operator_forced");
    assert_eq!(
        db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_totals"),
        finished,
        "every finished order rolled up once"
    );
    assert_eq!(db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_days"), finished);
    assert_eq!(db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_hours"), finished);
    assert_eq!(db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_slices"), finished);
    let rolled = stats_json(&db);

    // The counts read through the rollups are the counts of the rows.
    for key in ["orders_by_status", "orders_by_provider", "providers"] {
        assert_eq!(rolled[key], live[key], "{key} unchanged by the rollup");
    }
    for (status, json) in [("approved", "approved"), ("rejected", "rejected")] {
        let direct = db.query_i64(&format!("SELECT count(*) FROM orders WHERE status = '{status}'"));
        assert_eq!(rolled["finished"][json].as_i64().unwrap(), direct, "{status} in the window");
        assert_eq!(live["finished"][json], rolled["finished"][json]);
    }
    let direct: Vec<(String, String, i64)> = db
        .client()
        .query("SELECT status, external_status, count(*) FROM orders GROUP BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (status, external, n) in direct {
        let shown = rolled["orders_by_status"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status.as_str() && c["external_status"] == external.as_str())
            .map(|c| c["orders"].as_i64().unwrap());
        assert_eq!(shown, Some(n), "{status}/{external}");
    }
    let direct_checks = db.query_i64("SELECT count(*) FROM order_events WHERE kind LIKE 'check.%' AND kind <> 'check.ignored'");
    let shown_checks: i64 = rolled["providers"].as_array().unwrap().iter().map(|p| p["checks"].as_i64().unwrap()).sum();
    assert!(shown_checks > 0 && shown_checks <= direct_checks, "checks {shown_checks} of {direct_checks} events");
    // Percentiles from the histogram: the middle of the ranked value's 5 % bucket (percentile_cont
    // interpolates between neighbours, which may lie further apart than a bucket).
    for (p, key) in [(0.5, "median_ms"), (0.9, "p90_ms")] {
        let approx = rolled["finished"][key].as_f64().unwrap();
        let ranked = ranked_duration(&mut db.client(), Utc::now() - chrono::Duration::days(30), p).unwrap();
        assert!((approx - ranked).abs() <= ranked * 0.025 + 1.0, "{key}: {approx} vs ranked {ranked}");
    }
    // A second roll-up counts nothing again (it may roll up a slice that closed meanwhile,
    // which holds none of the aged orders); orders finished after the watermark are counted live.
    stats::roll_up(&mut db.client(), 1000).unwrap();
    for rollup in ["order_totals", "order_days", "order_hours", "order_slices"] {
        assert_eq!(db.query_i64(&format!("SELECT coalesce(sum(orders), 0)::bigint FROM {rollup}")), finished, "{rollup}");
    }
    insert_orders(&db, "itunes-10", 1);
    db.cmd().args(["sweep"]).args(FAST).run();
    let after = stats_json(&db);
    let total = |v: &Value| v["orders_by_status"].as_array().unwrap().iter().map(|c| c["orders"].as_i64().unwrap()).sum::<i64>();
    assert_eq!(total(&after), db.query_i64("SELECT count(*) FROM orders"));
}

/// Scans of the placements of months before the current one (the history) so far in this
/// transaction.
fn scans_of_placements_history(tx: &mut impl GenericClient) -> i64 {
    tx.query_one(
        "SELECT coalesce(sum(s.seq_scan + coalesce(s.idx_scan, 0)), 0)::bigint FROM pg_stat_xact_user_tables s
          WHERE s.relid IN (SELECT relid FROM pg_partition_tree('placements') WHERE isleaf)
            AND s.relname < orderctl_partition_name('placements', (now() AT TIME ZONE 'UTC')::date)",
        &[],
    )
    .unwrap()
    .get(0)
}

/// Reads of the finished orders' partitions (`orders_done` and its months, the history) so far
/// in this transaction: sequential scans of a month that holds at least 1,000 orders (the
/// planner rightly reads a month of a few hundred, or an empty one, whole), and scans of any
/// kind of any of them.
fn scans_of_history(tx: &mut impl GenericClient) -> (i64, i64) {
    let r = tx
        .query_one(
            "SELECT coalesce(sum(s.seq_scan) FILTER (WHERE c.reltuples >= 1000), 0)::bigint,
                    coalesce(sum(s.seq_scan + coalesce(s.idx_scan, 0)), 0)::bigint
               FROM pg_stat_xact_user_tables s JOIN pg_class c ON c.oid = s.relid
              WHERE s.relid IN (SELECT relid FROM pg_partition_tree('orders_done'))",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

fn seq_scans_of_history(tx: &mut impl GenericClient) -> i64 {
    scans_of_history(tx).0
}

/// Every statement a lane runs on orders (claims, probes, lane lookups, the write-back of what
/// it claimed, the follow-up claim) is planned over `orders_live` alone (sql/0031): it reads no
/// partition of the finished orders, not even an index of one, however many months there are;
/// and the placement claim and the write-back of its answer read no month of placements but
/// their orders' (sql/0032).
#[test]
fn the_hot_path_reads_the_live_partition_alone() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    seed_history(&db);
    insert_orders(&db, "pubg-60", 20);
    let months = db.query_i64("SELECT count(*) FROM pg_partition_tree('orders_done') WHERE isleaf");
    assert!(months >= 13, "a year of history in its months: {months}");
    let lane = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    let q = orderctl::db::claims::LaneQuery::whole(lane, None, None);
    let lease = Duration::from_secs(30);
    let mut c = db.client();
    type Step = Box<dyn Fn(&mut orderctl::db::Transaction)>;
    let steps: Vec<(&str, Step)> = vec![
        ("the probe", Box::new(move |tx| assert!(orderctl::db::claims::any_due(tx, &mut Default::default(), q).unwrap()))),
        (
            "the lanes with work",
            Box::new(|tx| assert!(!orderctl::db::claims::lanes_with_work(tx, None, None).unwrap().is_empty())),
        ),
        ("the lanes a daemon runs", Box::new(|tx| assert!(!orderctl::db::providers::lane_ids(tx, None).unwrap().is_empty()))),
        ("the claim", Box::new(move |tx| assert_eq!(orderctl::db::claims::lock_due(tx, q, 100, 100).unwrap().len(), 20))),
        (
            "the claim of checks",
            Box::new(move |tx| {
                orderctl::db::claims::lock_and_claim_checks(tx, q, 100, lease).unwrap();
            }),
        ),
        (
            "a claim and a write-back that finishes the orders",
            Box::new(move |tx| {
                let rows = orderctl::db::claims::lock_due(tx, q, 100, 0).unwrap();
                let ids: Vec<_> = rows.iter().map(|r| r.id).collect();
                let claimed = orderctl::db::claims::claim_checks(tx, &ids, lease).unwrap();
                assert_eq!(claimed.len(), 20);
                let writes: Vec<_> = claimed
                    .iter()
                    .map(|(id, lease)| orderctl::db::transitions::Write {
                        order_id: *id,
                        lease: Some(*lease),
                        placement: None,
                        transition: orderctl::domain::lifecycle::Transition {
                            status: Some(orderctl::domain::lifecycle::OrderStatus::Rejected),
                            external: Some(orderctl::domain::lifecycle::ExternalStatus::Failed),
                            schedule: orderctl::domain::lifecycle::Schedule::Off,
                            ..Default::default()
                        },
                        steps: vec![],
                    })
                    .collect();
                assert_eq!(orderctl::db::transitions::apply_live(tx, &writes).unwrap().len(), 20);
                assert_eq!(orderctl::db::claims::claim_checks_due_now(tx, &ids, lane, lease).unwrap().len(), 0);
            }),
        ),
    ];
    let placed: Step = Box::new(move |tx| {
        use orderctl::db::transitions::{claim_placements, PlacementClaim};
        let rows = orderctl::db::claims::lock_due(tx, q, 100, 0).unwrap();
        let claims: Vec<PlacementClaim> = rows
            .iter()
            .map(|r| PlacementClaim {
                order_id: r.id,
                order_created_at: r.created_at,
                provider_id: lane,
                reuse: false,
                expects_pin: false,
            })
            .collect();
        let claimed = claim_placements(tx, &claims, "numeric", lease).unwrap().claimed;
        assert_eq!(claimed.len(), 20);
        let writes: Vec<_> = claimed
            .iter()
            .map(|c| orderctl::db::transitions::Write {
                order_id: c.order_id,
                lease: Some(c.lease),
                placement: Some((lane, c.reference.clone())),
                transition: orderctl::domain::lifecycle::Transition {
                    external: Some(orderctl::domain::lifecycle::ExternalStatus::Sent),
                    placement: Some(orderctl::domain::lifecycle::PlacementWord::Accepted),
                    schedule: orderctl::domain::lifecycle::Schedule::In(Duration::from_secs(60)),
                    ..Default::default()
                },
                steps: vec![],
            })
            .collect();
        assert_eq!(orderctl::db::transitions::apply_live(tx, &writes).unwrap().len(), 20);
        assert_eq!(
            tx.query_one(
                "SELECT count(*) FROM placements WHERE outcome = 'accepted' AND order_created_at > now() - interval '1 day'",
                &[]
            )
            .unwrap()
            .get::<_, i64>(0),
            20
        );
    });
    for (what, step) in steps.into_iter().chain([("a placement claim and the write-back of its answer", placed)]) {
        let mut tx = c.transaction().unwrap();
        step(&mut tx);
        assert_eq!(scans_of_history(&mut tx).1, 0, "{what} read the finished orders' partitions");
        assert_eq!(scans_of_placements_history(&mut tx), 0, "{what} read placements of earlier months");
        tx.rollback().unwrap();
    }
    // The checks see a read of the history when there is one (by id, as an operator's inspect).
    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT count(*) FROM orders WHERE id = gen_random_uuid()", &[]).unwrap();
    assert!(scans_of_history(&mut tx).1 >= months);
    tx.query_one("SELECT count(*) FROM placements WHERE order_id = gen_random_uuid()", &[]).unwrap();
    assert!(scans_of_placements_history(&mut tx) >= months - 2);
}

/// 20,000 finished orders of the past year, as history leaves them. (Events and placements
/// carry their order's creation time where the schema partitions them by it.)
fn seed_history(db: &TestDb) {
    // Events are partitioned by their order's month (sql/0018): they carry the order's
    // created_at, and a year of months needs its partitions.
    db.client().batch_execute("SELECT orderctl_ensure_partitions((now() - interval '400 days')::date, now()::date)").unwrap();
    let (column, value) = (", order_created_at", ", created_at");
    db.client()
        .batch_execute(&format!(
            "INSERT INTO orders (id, tenant_id, user_id, package_id, user_identifier, price, status, external_status,
                                 provider_id, lane, provider_referans, created_at, sent_at, completed_at, duration_ms, provider_cost)
             SELECT gen_random_uuid(), u.tenant_id, u.id, p.id, 'history-' || g, p.price,
                    CASE WHEN g % 20 = 0 THEN 'rejected' ELSE 'approved' END,
                    CASE WHEN g % 20 = 0 THEN 'failed' ELSE 'done' END,
                    p.primary_provider_id, p.primary_provider_id, 'h' || g,
                    now() - interval '2 days' - interval '1 hour' * (g % 8000), now() - interval '2 days' - interval '1 hour' * (g % 8000),
                    now() - interval '2 days' - interval '1 hour' * (g % 8000) + interval '5 seconds', 5000, p.price * 0.9
               FROM users u JOIN packages p ON p.tenant_id = u.tenant_id AND p.name = 'pubg-60', generate_series(1, 20000) g;
             INSERT INTO placements (order_id, provider_id, referans, outcome, created_at, order_created_at)
             SELECT id, provider_id, provider_referans, 'accepted', created_at, created_at FROM orders WHERE provider_referans LIKE 'h%';
             INSERT INTO order_events (order_id, at, kind, message{column})
             SELECT id, completed_at, 'check.approved', 'check #1'{value} FROM orders WHERE provider_referans LIKE 'h%';
             UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now() - interval '400 days', 'UTC');
             ANALYZE orders; ANALYZE placements; ANALYZE order_events;",
        ))
        .unwrap();
    assert!(stats::roll_up(&mut db.client(), 1000).unwrap() > 300 * 12);
    db.client().batch_execute(&format!("ANALYZE {}", stats::ROLLUP_TABLES.join(", "))).unwrap();
}

#[test]
fn hot_queries_never_scan_the_orders_history() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    seed_history(&db);
    insert_orders(&db, "pubg-60", 30);
    insert_orders(&db, "jawaker", 3);
    db.client().batch_execute("ANALYZE orders").unwrap();
    let mut c = db.client();
    let lane = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    // A rate limit, so that doctor's backlog count reads this lane's due placements.
    db.client()
        .batch_execute("UPDATE providers SET rate_limit_calls = 20, rate_limit_window_ms = 1000 WHERE name = 'znet-main'")
        .unwrap();
    let q = orderctl::db::claims::LaneQuery::whole(lane, None, None);
    let five_min = Duration::from_secs(300);
    let since = Utc::now() - chrono::Duration::days(30);
    type Read = Box<dyn Fn(&mut orderctl::db::Transaction)>;
    let reads: Vec<(&str, Read)> = vec![
        ("the claim", Box::new(move |tx| assert_eq!(orderctl::db::claims::lock_due(tx, q, 100, 100).unwrap().len(), 30))),
        (
            "list --stuck",
            Box::new(move |tx| {
                orderctl::db::orders::stuck_orders(tx, None, five_min, 100).unwrap();
            }),
        ),
        (
            "the stuck count",
            Box::new(move |tx| {
                orderctl::db::orders::count_stuck(tx, None, five_min).unwrap();
            }),
        ),
        (
            "stats by status",
            Box::new(|tx| {
                stats::orders_by_status(tx, None).unwrap();
            }),
        ),
        (
            "stats by provider",
            Box::new(|tx| {
                stats::orders_by_provider(tx, None).unwrap();
            }),
        ),
        (
            "stats due",
            Box::new(|tx| {
                stats::due(tx, None).unwrap();
            }),
        ),
        (
            "stats finished",
            Box::new(move |tx| {
                stats::finished_since(tx, None, since).unwrap();
            }),
        ),
        (
            "stats providers",
            Box::new(move |tx| {
                stats::provider_activity(tx, None, since).unwrap();
            }),
        ),
        (
            "metric gauges",
            Box::new(|tx| {
                stats::metric_gauges(tx, None).unwrap();
            }),
        ),
        (
            "webhook counts",
            Box::new(move |tx| {
                orderctl::db::webhooks::counts(tx, None, five_min).unwrap();
            }),
        ),
        (
            "doctor's below-cost check",
            Box::new(|tx| {
                orderctl::db::money::below_cost(tx, None).unwrap();
            }),
        ),
        (
            "doctor's order-id check",
            Box::new(|tx| {
                orderctl::db::stats::recent_order_ids(tx, Some("alsham")).unwrap();
            }),
        ),
        (
            "doctor's rate-limit backlog",
            Box::new(|tx| {
                orderctl::db::pace::backlogs(tx, None).unwrap();
            }),
        ),
        (
            // Several times a second in every daemon; a disabled provider's work is looked up.
            "the lanes a daemon runs",
            Box::new(|tx| {
                tx.batch_execute("UPDATE providers SET enabled = false").unwrap();
                orderctl::db::providers::lane_ids(tx, None).unwrap();
            }),
        ),
    ];
    for (what, read) in reads {
        let mut tx = c.transaction().unwrap();
        read(&mut tx);
        assert_eq!(seq_scans_of_history(&mut tx), 0, "{what} read the finished orders sequentially, history and all");
        tx.rollback().unwrap();
    }
    // The check itself sees a scan when there is one.
    let mut tx = c.transaction().unwrap();
    tx.query_one("SELECT count(*) FROM orders WHERE user_identifier LIKE 'history-1%'", &[]).unwrap();
    assert!(seq_scans_of_history(&mut tx) > 0);
}

/// Finished orders every 7 minutes over the past three days (the newest just now, so it is
/// after any watermark a roll-up sets at once; the others at seconds that vary), each with a placement at its creation, a waiting check halfway and its
/// final check; one in five rejected. Returns how many.
fn finish_orders_over_three_days(db: &TestDb) -> i64 {
    db.client().batch_execute("SELECT orderctl_ensure_partitions((now() - interval '40 days')::date, now()::date)").unwrap();
    // Placements carry their order's creation time from sql/0032 on (a test of an older layout
    // runs this before it).
    let by_month = db
        .query_i64("SELECT count(*) FROM pg_attribute WHERE attrelid = 'placements'::regclass AND attname = 'order_created_at'")
        == 1;
    let (column, value) = if by_month { (", order_created_at", ", created_at") } else { ("", "") };
    db.client()
        .batch_execute(&format!(
            "WITH ctx AS (
                 SELECT u.tenant_id, u.id AS user_id, p.id AS package_id, p.price, p.primary_provider_id AS provider_id
                   FROM users u JOIN packages p ON p.tenant_id = u.tenant_id AND p.name = 'pubg-60' ORDER BY u.id LIMIT 1)
             , shaped AS (
                 SELECT g, g % 5 = 0 AS refused, 1000 + (g * 7919) % 600000 AS duration_ms,
                        now() - make_interval(mins => g * 7, secs => (g * 13) % 60) AS completed
                   FROM generate_series(0, 640) g)
             , new AS (
                 INSERT INTO orders (id, tenant_id, user_id, package_id, user_identifier, price, status, external_status,
                                     provider_id, lane, provider_referans, created_at, sent_at, completed_at, duration_ms)
                 SELECT gen_random_uuid(), x.tenant_id, x.user_id, x.package_id, 'split-' || s.g, x.price,
                        CASE WHEN s.refused THEN 'rejected' ELSE 'approved' END,
                        CASE WHEN s.refused THEN 'failed' ELSE 'done' END,
                        x.provider_id, x.provider_id, 's' || s.g,
                        s.completed - make_interval(secs => s.duration_ms / 1000.0),
                        s.completed - make_interval(secs => s.duration_ms / 1000.0), s.completed, s.duration_ms
                   FROM ctx x, shaped s
                 RETURNING id, provider_id, provider_referans, status, created_at, completed_at)
             , placed AS (
                 INSERT INTO placements (order_id, provider_id, referans, outcome, created_at{column})
                 SELECT id, provider_id, provider_referans, 'accepted', created_at{value} FROM new)
             INSERT INTO order_events (order_id, at, kind, message, order_created_at)
             SELECT id, created_at + (completed_at - created_at) / 2, 'check.waiting', 'check #1', created_at FROM new
             UNION ALL
             SELECT id, completed_at, CASE WHEN status = 'rejected' THEN 'check.cancelled' ELSE 'check.approved' END,
                    'check #2', created_at FROM new;",
        ))
        .unwrap();
    641
}

/// Empty every rollup and move the watermark back to the midnight `days` days ago: the next
/// roll-up counts everything since from the rows.
/// (Only the rollups the database's schema has: the conversion tests start from older ones.)
fn forget_rollups(c: &mut orderctl::db::Client, days: i32) {
    let rollups: Vec<&str> = stats::ROLLUP_TABLES
        .into_iter()
        .filter(|t| c.query_one("SELECT to_regclass($1) IS NOT NULL", &[t]).unwrap().get::<_, bool>(0))
        .collect();
    c.batch_execute(&format!(
        "TRUNCATE {};
         UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now() - interval '{days} days', 'UTC');",
        rollups.join(", ")
    ))
    .unwrap();
}

/// What `stats` shows of a window, from the library reads: (approved, rejected, median, p90,
/// placements, waiting checks, approving checks, cancelling checks).
type Window = (i64, i64, Option<f64>, Option<f64>, i64, i64, i64, i64);

fn window_through_stats(c: &mut orderctl::db::Client, since: DateTime<Utc>) -> Window {
    let f = stats::finished_since(c, None, since).unwrap();
    let a = stats::provider_activity(c, None, since).unwrap();
    let sum = |k: fn(&stats::ProviderActivity) -> i64| a.iter().map(k).sum::<i64>();
    (
        f.approved,
        f.rejected,
        f.median_ms,
        f.p90_ms,
        sum(|p| p.placements),
        sum(|p| p.checks_waiting),
        sum(|p| p.checks_approved),
        sum(|p| p.checks_cancelled),
    )
}

/// The same window counted directly from the rows.
fn window_from_rows(c: &mut orderctl::db::Client, since: DateTime<Utc>) -> Window {
    let r = c
        .query_one(
            "SELECT (SELECT count(*) FROM orders WHERE status = 'approved' AND completed_at >= $1),
                    (SELECT count(*) FROM orders WHERE status = 'rejected' AND completed_at >= $1),
                    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) FROM orders
                      WHERE status <> 'pending' AND completed_at >= $1),
                    (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms) FROM orders
                      WHERE status <> 'pending' AND completed_at >= $1),
                    (SELECT count(*) FROM placements WHERE created_at >= $1),
                    (SELECT count(*) FROM order_events WHERE kind = 'check.waiting' AND at >= $1),
                    (SELECT count(*) FROM order_events WHERE kind = 'check.approved' AND at >= $1),
                    (SELECT count(*) FROM order_events WHERE kind = 'check.cancelled' AND at >= $1)",
            &[&since],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7))
}

/// The time to final at position floor(p × (n − 1)) of the window's sorted times: the value
/// whose histogram bucket `stats` answers with once hours or days are rolled up.
fn ranked_duration(c: &mut orderctl::db::Client, since: DateTime<Utc>, p: f64) -> Option<f64> {
    let d: Vec<i64> = c
        .query("SELECT duration_ms FROM orders WHERE status <> 'pending' AND completed_at >= $1 ORDER BY 1", &[&since])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (!d.is_empty()).then(|| d[(p * (d.len() - 1) as f64).floor() as usize] as f64)
}

#[track_caller]
fn assert_same_counts(shown: Window, exact: Window, what: &str) {
    let counts = |w: Window| (w.0, w.1, w.4, w.5, w.6, w.7);
    assert_eq!(counts(shown), counts(exact), "{what}: counts (approved, rejected, placements, checks)");
}

/// Percentiles read from the 5 % histogram: the middle of the bucket of the ranked value,
/// within 2.5 % of it.
#[track_caller]
fn assert_bucketed_percentiles(c: &mut orderctl::db::Client, since: DateTime<Utc>, shown: Window, what: &str) {
    for (p, approx) in [(0.5, shown.2), (0.9, shown.3)] {
        match (approx, ranked_duration(c, since, p)) {
            (Some(a), Some(e)) => assert!((a - e).abs() <= e * 0.025 + 1.0, "{what}: p{p} {a} vs ranked {e}"),
            (a, e) => assert_eq!(a.is_some(), e.is_some(), "{what}: p{p}"),
        }
    }
}

#[test]
fn stats_read_through_days_hours_and_live_rows_equal_the_rows_for_any_window() {
    let db = TestDb::new();
    db.apply(&standard_setup("http://127.0.0.1:9"));
    let finished = finish_orders_over_three_days(&db);
    let mut c = db.client();
    forget_rollups(&mut c, 5);
    let now = Utc::now();
    let hour = |t: DateTime<Utc>| t.duration_trunc(chrono::Duration::hours(1)).unwrap();
    // Windows starting inside hours (a first partial hour), on hours, on midnights, before all.
    let mut windows: Vec<DateTime<Utc>> = (0..110).map(|k| now - chrono::Duration::seconds(k * 41 * 60 + 17)).collect();
    windows.extend((0..80).map(|k| hour(now) - chrono::Duration::hours(k)));
    windows.push(now - chrono::Duration::days(30));
    // Without rollups everything is read from the rows: exact, percentiles too.
    let without: Vec<Window> = windows.iter().map(|s| window_through_stats(&mut c, *s)).collect();
    for (since, shown) in windows.iter().zip(&without) {
        let exact = window_from_rows(&mut c, *since);
        assert_same_counts(*shown, exact, &format!("live, since {since}"));
        assert_eq!((shown.2, shown.3), (exact.2, exact.3), "live, since {since}: exact percentiles");
    }
    let totals_live = stats::orders_by_status(&mut c, None).unwrap();

    let slices = stats::roll_up(&mut c, 1000).unwrap();
    // From the midnight five days back (whatever the time of day) to a few minutes ago.
    assert!(slices >= 5 * 24 * 12 - 2, "five days of slices rolled up ({slices})");
    let watermark: DateTime<Utc> = c.query_one("SELECT rolled_up_until FROM rollup_watermark", &[]).unwrap().get(0);
    // No other transaction is open in this database: the slices closed a minute after their end.
    let settled = Utc::now() - chrono::Duration::minutes(1);
    // (A slice is 5 minutes; one more for the time between the roll-up and this line.)
    assert!(
        watermark > settled - chrono::Duration::minutes(6) && watermark <= settled,
        "up to the last slice that ended a minute ago: {watermark}"
    );
    // Every level holds part of the history: whole days, the hours of the watermark's day, the
    // slices of its hour, and live orders after it.
    let in_days = db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_days");
    let (midnight, last_hour) = (watermark.duration_trunc(chrono::Duration::days(1)).unwrap(), hour(watermark));
    let hours_today = db.query_i64(&format!(
        "SELECT coalesce(sum(orders), 0)::bigint FROM order_hours WHERE hour >= '{}'",
        midnight.to_rfc3339()
    ));
    let slices_of_the_hour = db.query_i64(&format!(
        "SELECT coalesce(sum(orders), 0)::bigint FROM order_slices WHERE slice >= '{}'",
        last_hour.to_rfc3339()
    ));
    let live = db.query_i64(&format!("SELECT count(*) FROM orders WHERE completed_at >= '{}'", watermark.to_rfc3339()));
    assert!(in_days > 0 && live > 0, "days {in_days}, live {live}");
    let in_hours = db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_hours");
    assert_eq!(in_hours + slices_of_the_hour + live, finished, "hours, then the slices of the watermark's hour");
    assert_eq!(db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_slices") + live, finished);
    assert_eq!(db.query_i64("SELECT coalesce(sum(orders), 0)::bigint FROM order_totals") + live, finished);
    // Orders finish every 7 minutes: a day holds some from its first hour on, an hour from its
    // eighth minute on.
    assert!(hours_today > 0 || watermark < midnight + chrono::Duration::hours(1), "hours of the watermark's day rolled up");
    assert!(slices_of_the_hour > 0 || watermark < last_hour + chrono::Duration::minutes(10), "slices of the watermark's hour");

    let mut rolled_windows = 0;
    for (since, shown_live) in windows.iter().zip(&without) {
        let shown = window_through_stats(&mut c, *since);
        let exact = window_from_rows(&mut c, *since);
        let what = format!("rolled up to {watermark}, since {since}");
        assert_same_counts(shown, exact, &what);
        assert_same_counts(shown, *shown_live, &what);
        // A window starting within the slice before the watermark holds no whole rolled-up slice.
        if *since > watermark - chrono::Duration::minutes(5) {
            assert_eq!((shown.2, shown.3), (exact.2, exact.3), "{what}: nothing rolled up, exact percentiles");
        } else {
            assert_bucketed_percentiles(&mut c, *since, shown, &what);
            rolled_windows += 1;
        }
    }
    assert!(rolled_windows > 150, "most windows start before the watermark ({rolled_windows})");
    let key = |s: &stats::StatusCount| (s.status.as_str(), s.external_status.as_str(), s.orders);
    let totals: Vec<_> = stats::orders_by_status(&mut c, None).unwrap().iter().map(key).collect();
    let totals_live: Vec<_> = totals_live.iter().map(key).collect();
    assert_eq!(totals, totals_live, "all-time counts through order_totals");
}

#[test]
fn every_safety_sweep_rolls_up_closed_hours_the_command_and_the_daemon() {
    let db = TestDb::new();
    db.apply(&standard_setup("http://127.0.0.1:9"));
    let finished = finish_orders_over_three_days(&db);
    // Four days back: the orders span three days and two hours, and a midnight three days back
    // is less than that just after midnight.
    let back_four_days = format!(
        "TRUNCATE {};
         UPDATE rollup_watermark SET rolled_up_until = date_trunc('day', now() - interval '4 days', 'UTC');",
        stats::ROLLUP_TABLES.join(", ")
    );
    // Slices close a minute after their end unless a transaction that began before it is still
    // open: neither the command's nor the daemon's own transactions hold them back.
    let caught_up = "SELECT count(*) FROM rollup_watermark WHERE rolled_up_until >= now() - interval '10 minutes'";
    let rolled = "SELECT coalesce(sum(orders), 0)::bigint FROM order_slices";
    let live = "SELECT count(*) FROM orders WHERE completed_at >= (SELECT rolled_up_until FROM rollup_watermark)";
    db.client().batch_execute(&back_four_days).unwrap();
    assert_eq!(db.query_i64(caught_up), 0);

    db.cmd().args(["sweep"]).run().ok();
    assert_eq!(db.query_i64(caught_up), 1, "orderctl sweep moved the watermark to the closed slices");
    assert!(db.query_i64(rolled) > 0);
    assert_eq!(db.query_i64(rolled) + db.query_i64(live), finished);

    db.client().batch_execute(&back_four_days).unwrap();
    let daemon = db.cmd().args(["daemon", "--sweep-schedule", "* * * * * *", "--idle-poll", "50ms"]).spawn();
    wait_until("the daemon's safety sweep to roll up", Duration::from_secs(30), || db.query_i64(caught_up) == 1);
    daemon.terminate();
    assert_eq!(db.query_i64(rolled) + db.query_i64(live), finished);
}

#[test]
fn rollups_of_the_older_layout_convert_to_one_histogram_per_status_and_stats_read_the_same() {
    // Rolled up by 0020's job (a row per duration bucket), then migrated to 0025 (and 0026, which
    // fills the five-minute slices of what is rolled up from the rows).
    // (0032 restates 0026's slice roll-up, so it waits for 0026.)
    let db = TestDb::migrated_without(&["0025", "0026", "0032"]);
    db.apply(&standard_setup("http://127.0.0.1:9"));
    let finished = finish_orders_over_three_days(&db);
    let mut c = db.client();
    forget_rollups(&mut c, 5);
    let hours: i32 = c.query_one("SELECT orderctl_roll_up(1000)", &[]).unwrap().get(0);
    // From the midnight five days back to the last hour that closed an hour ago.
    assert!(hours >= 5 * 24 - 2, "{hours}");
    let per_bucket = db.query_i64("SELECT count(*) FROM order_hours");
    let (day_rows, hour_statuses) = (
        db.query_i64("SELECT count(*) FROM (SELECT DISTINCT day, created_month, tenant_id, status FROM order_days) d"),
        db.query_i64("SELECT count(*) FROM (SELECT DISTINCT hour, created_month, tenant_id, status FROM order_hours) h"),
    );
    assert!(per_bucket > hour_statuses, "the old layout keeps a row per bucket ({per_bucket} rows)");
    let old_watermark: DateTime<Utc> = c.query_one("SELECT rolled_up_until FROM rollup_watermark", &[]).unwrap().get(0);
    drop(c);

    db.cmd().args(["migrate"]).run().ok();
    let mut c = db.client();
    assert_eq!(db.query_i64("SELECT count(*) FROM order_hours"), hour_statuses, "one hourly row per status");
    assert_eq!(db.query_i64("SELECT count(*) FROM order_days"), day_rows, "one daily row per status");
    let live = db.query_i64("SELECT count(*) FROM orders WHERE completed_at >= (SELECT rolled_up_until FROM rollup_watermark)");
    assert_eq!(db.query_i64("SELECT sum(orders)::bigint FROM order_hours") + live, finished);
    assert_eq!(db.query_i64("SELECT sum(orders)::bigint FROM order_slices") + live, finished, "0026 filled the slices");
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM order_hours h
              WHERE h.durations IS DISTINCT FROM (SELECT orderctl_histogram_sum(s.durations) FROM order_slices s
                      WHERE date_trunc('hour', s.slice, 'UTC') = h.hour AND s.status = h.status AND s.created_month = h.created_month)"
        ),
        0,
        "every converted hour is the sum of its slices"
    );
    // Every order of a row is in its histogram (each of these has a duration).
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM order_hours h
              WHERE h.orders <> (SELECT sum(n) FROM unnest(h.durations) n)
                 OR array_lower(h.durations, 1) <> (SELECT min(orderctl_duration_bucket(o.duration_ms)) FROM orders o
                      WHERE date_trunc('hour', o.completed_at, 'UTC') = h.hour AND o.status = h.status
                        AND (date_trunc('month', o.created_at, 'UTC') AT TIME ZONE 'UTC')::date = h.created_month)"
        ),
        0
    );
    // Windows over converted days and hours read what the rows say.
    let windows = [Utc::now() - chrono::Duration::hours(50), Utc::now() - chrono::Duration::days(30)];
    let converted: Vec<Window> = windows.iter().map(|s| window_through_stats(&mut c, *s)).collect();
    for (since, shown) in windows.iter().zip(&converted) {
        assert_same_counts(*shown, window_from_rows(&mut c, *since), &format!("converted, since {since}"));
        assert_bucketed_percentiles(&mut c, *since, *shown, &format!("converted, since {since}"));
    }

    // The new job goes on from the same watermark, writing histograms; days are the sums of their hours.
    forget_rollups(&mut c, 5);
    stats::roll_up(&mut c, 1000).unwrap();
    let hours_before = format!("SELECT count(*) FROM order_hours WHERE hour < '{}'", old_watermark.to_rfc3339());
    assert_eq!(db.query_i64(&hours_before), hour_statuses, "the same hours up to where the old job had rolled up");
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM order_days d
              WHERE d.durations IS DISTINCT FROM (SELECT orderctl_histogram_sum(h.durations) FROM order_hours h
                      WHERE (h.hour AT TIME ZONE 'UTC')::date = d.day AND h.status = d.status AND h.created_month = d.created_month)"
        ),
        0
    );
    let rolled_again: Vec<Window> = windows.iter().map(|s| window_through_stats(&mut c, *s)).collect();
    assert_eq!(rolled_again, converted, "rolled up anew, the windows read the same as converted");
}

/// `orderctl_rollup_horizon(at, settle, lag)` (sql/0026) with `at` half an hour and three and a
/// half hours after the current slice `t0`, so a transaction begun now is "older" than the
/// slices it must hold back.
fn horizons(c: &mut orderctl::db::Client) -> (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) {
    let r = c
        .query_one(
            "WITH t AS (SELECT orderctl_slice(now()) AS t0)
             SELECT t0, orderctl_rollup_horizon(t0 + interval '30 minutes', interval '1 minute', interval '1 hour'),
                    orderctl_rollup_horizon(t0 + interval '210 minutes', interval '1 minute', interval '1 hour')
               FROM t",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

#[test]
fn slices_close_a_minute_after_their_end_unless_an_older_transaction_is_open_and_an_hour_after_at_the_latest() {
    let db = TestDb::new();
    let mut c = db.client();
    let minutes = |m: i64| chrono::Duration::minutes(m);
    // Nothing else open (an idle session holds nothing back): a minute after the end.
    let mut idle = db.client();
    idle.batch_execute("SELECT 1").unwrap();
    let (t0, soon, later) = horizons(&mut c);
    assert_eq!((soon, later), (t0 + minutes(25), t0 + minutes(205)), "settled a minute after their end");

    // Another session's transaction began in slice t0: nothing after t0 closes while it is open,
    // but at most an hour is held back.
    let mut report = db.client();
    let mut tx = report.transaction().unwrap();
    let began: DateTime<Utc> = tx.query_one("SELECT orderctl_slice(now())", &[]).unwrap().get(0);
    let (t0, soon, later) = horizons(&mut c);
    assert_eq!(soon, began, "held at the slice the open transaction began in");
    assert!(began <= t0 && soon < t0 + minutes(25));
    assert_eq!(later, t0 + minutes(150), "never more than an hour behind");
    tx.rollback().unwrap();
    let (t0, soon, _) = horizons(&mut c);
    assert_eq!(soon, t0 + minutes(25), "the transaction ended: settled again");

    // A session this role may not see (another role's, without pg_read_all_stats) counts as a
    // transaction open since forever.
    let (hidden, reader) = ("orderctl_test_hidden", "orderctl_test_reader");
    for role in [hidden, reader] {
        c.batch_execute(&format!("DO $$ BEGIN CREATE ROLE {role} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;"))
            .unwrap();
    }
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_username(hidden).unwrap();
    let mut other = orderctl::db::connect(url.as_str()).unwrap();
    other.batch_execute("SELECT 1").unwrap();
    c.batch_execute(&format!("SET ROLE {reader}")).unwrap();
    let (t0, soon, later) = horizons(&mut c);
    assert_eq!((soon, later), (t0 - minutes(30), t0 + minutes(150)), "an unseen session: an hour after their end");
    c.batch_execute("RESET ROLE").unwrap();
    let (t0, soon, _) = horizons(&mut c);
    assert_eq!(soon, t0 + minutes(25), "seen idle by a role that may see it");
    drop(other);
}

#[test]
fn doctor_warns_when_no_sweep_rolls_finished_history_up() {
    let db = TestDb::new();
    db.apply(&standard_setup("http://127.0.0.1:9"));
    finish_orders_over_three_days(&db);
    let rollups = |db: &TestDb| -> Value {
        let report: Value = serde_json::from_str(&db.cmd().args(["--output", "json", "doctor"]).run().stdout).unwrap();
        doctor_finding(&report, "rollups").unwrap()
    };
    // Three days of finished orders no roll-up has counted: no sweep runs.
    forget_rollups(&mut db.client(), 3);
    let finding = rollups(&db);
    assert_eq!(finding["severity"], "warn", "{finding}");
    assert!(finding["message"].as_str().unwrap().contains("row by row"), "{finding}");
    assert!(finding["fix"].as_str().unwrap().contains("orderctl sweep"), "{finding}");
    // Another tenant's doctor does not count this tenant's orders as its own waiting history.
    db.client().batch_execute("INSERT INTO tenants (name) VALUES ('wholesale')").unwrap();
    let report: Value =
        serde_json::from_str(&db.cmd().args(["--output", "json", "--tenant", "wholesale", "doctor"]).run().stdout).unwrap();
    let theirs = doctor_finding(&report, "rollups").unwrap();
    assert_eq!(theirs["severity"], "ok", "{theirs}");
    // One sweep catches up: a few minutes behind at most.
    db.cmd().args(["sweep"]).run().ok();
    let finding = rollups(&db);
    assert_eq!(finding["severity"], "ok", "{finding}");
}

fn seq_scans_of_placements(tx: &mut impl GenericClient) -> i64 {
    tx.query_one("SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = 'placements'::regclass", &[])
        .unwrap()
        .get(0)
}

/// A write-back of a busy lane's batch of placement answers finds their placement rows by index,
/// not by reading every placement of the history: with one provider id per answer in the index
/// condition the planner costed the index scan as providers x references (50 x 50 descents
/// here, against 20,000 placements of history) and scanned the whole table instead (72 ms for
/// a batch of 275 at 500k placements). A batch is small next to the history it must not read.
#[test]
fn a_write_back_of_many_placement_answers_never_scans_the_placements_history() {
    use orderctl::db::transitions::{apply, Write};
    use orderctl::domain::lifecycle::{PlacementWord, Transition};
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    seed_history(&db);
    let orders = orderctl::kit::orders::insert_orders(&mut db.client(), "alsham", "halil", "pubg-60", 50).unwrap();
    let znet = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    // Each order's placement in flight, as a claim leaves it.
    let mut c = db.client();
    c.execute(
        "INSERT INTO placements (order_id, provider_id, referans, order_created_at)
         SELECT id, $2, id::text, created_at FROM orders WHERE id = ANY($1)",
        &[&orders, &znet],
    )
    .unwrap();
    c.batch_execute("ANALYZE placements").unwrap();
    let writes: Vec<Write> = orders
        .iter()
        .map(|id| Write {
            order_id: *id,
            lease: None,
            placement: Some((znet, id.to_string())),
            transition: Transition { placement: Some(PlacementWord::Accepted), ..Transition::default() },
            steps: vec![],
        })
        .collect();
    let mut tx = c.transaction().unwrap();
    apply(&mut tx, &writes).unwrap();
    assert_eq!(seq_scans_of_placements(&mut tx), 0, "the write-back read the placements table sequentially, history and all");
    tx.commit().unwrap();
    let accepted: i64 = c
        .query_one("SELECT count(*) FROM placements WHERE outcome = 'accepted' AND order_id = ANY($1)", &[&orders])
        .unwrap()
        .get(0);
    assert_eq!(accepted, 50, "every answer of the batch recorded");
}

/// The placement claim is one statement of CTEs whose row counts the planner cannot know: it
/// estimates `wanted` at n * n / rows-of-orders, a few rows at any history, and a join between
/// two CTEs it thinks tiny became a nested loop that rescanned one for every row of the other
/// (400 x 400 at a 400-order claim; BENCHMARKS "A placement claim that cannot plan
/// quadratically"). The statement exactly as a lane sends it (its text caught as it ran),
/// planned and run on a batch of 300 against 20,000 finished orders: no plan node handles or
/// discards more than a few rows per order of the batch.
#[test]
fn a_placement_claim_stays_linear_in_its_batch_at_a_long_history() {
    use orderctl::db::claims;
    use orderctl::dispatch::{claim::claim_for_provider, Providers, Timing};
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    seed_history(&db);
    let mut c = db.client();
    c.batch_execute(
        "CREATE TABLE test_claim_sql (sql text);
         CREATE FUNCTION test_catch_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO test_claim_sql SELECT current_query(); RETURN NULL; END $$;
         CREATE TRIGGER test_catch_claim AFTER INSERT ON placements FOR EACH STATEMENT EXECUTE FUNCTION test_catch_claim();",
    )
    .unwrap();
    let one = orderctl::kit::orders::insert_orders(&mut c, "alsham", "halil", "pubg-60", 1).unwrap();
    let timing = Timing { lease: Duration::from_secs(60), request_timeout: Duration::from_secs(5) };
    let providers = Providers::new(Default::default(), Default::default());
    let mut tx = c.transaction().unwrap();
    let rows = claims::lock_ids(&mut tx, &one, true).unwrap();
    let lp = providers.get(&mut tx, rows[0].facts.lane).unwrap();
    assert_eq!(claim_for_provider(&mut tx, &lp, rows, timing).unwrap().places.len(), 1);
    tx.commit().unwrap();
    let sql: String = c.query_one("SELECT sql FROM test_claim_sql LIMIT 1", &[]).unwrap().get(0);
    assert!(sql.contains("INSERT INTO placements"), "the claim's statement: {sql}");

    const N: usize = 300;
    let ids = orderctl::kit::orders::insert_orders(&mut c, "alsham", "halil", "pubg-60", N as i64).unwrap();
    let (providers, no): (Vec<i64>, Vec<bool>) = (vec![lp.id; N], vec![false; N]);
    let months: Vec<DateTime<Utc>> =
        ids.iter().map(|id| c.query_one("SELECT created_at FROM orders WHERE id = $1", &[id]).unwrap().get(0)).collect();
    let mut tx = c.transaction().unwrap();
    let plan: Value = tx
        .query_one(
            &format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"),
            &[
                &ids,
                &providers,
                &no,
                &lp.reference_style(),
                &60_000i64,
                &no,
                months.iter().min().unwrap(),
                months.iter().max().unwrap(),
            ],
        )
        .unwrap()
        .get(0);
    drop(tx);
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    let claimed = nodes.iter().find(|n| n["Node Type"] == "ModifyTable" && n["Operation"] == "Update").unwrap();
    assert_eq!(claimed["Actual Rows"], N, "every order of the batch claimed");
    for n in &nodes {
        let handled = n["Actual Rows"].as_f64().unwrap() * n["Actual Loops"].as_f64().unwrap();
        let discarded = n["Rows Removed by Join Filter"].as_f64().unwrap_or(0.0);
        assert!(
            handled <= 3.0 * N as f64 && discarded <= N as f64,
            "a plan node quadratic in the batch of {N}: {} handled {handled} rows, discarded {discarded}\n{plan:#}",
            n["Node Type"]
        );
    }
}

fn plan_nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}
