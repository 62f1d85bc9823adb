//! kill -9 at random moments, many times: no order lost, none placed twice, money conserved.

use super::*;
use crate::orders::setup;
use rand::{Rng, SeedableRng};

/// What the database looked like the moment a daemon was killed.
#[derive(Debug)]
struct KillPoint {
    /// Orders not yet placed or with a placement in flight: dispatch was under way.
    dispatching: i64,
    /// Orders with the provider, being checked: results were being written back.
    checking: i64,
}

#[test]
fn kill_9_at_random_moments_loses_nothing_and_places_nothing_twice() {
    let sim =
        Sim::start(&["--complete-after", "1s", "--jitter", "2s", "--cancel-share", "0.2", "--seed", "11", "--latency", "40ms"]);
    let db = setup(&sim);
    let opening = db.query_i64("SELECT (sum(amount) * 100)::bigint FROM ledger");
    let log = DaemonLog::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0008);
    let mut kills: Vec<KillPoint> = Vec::new();
    let state = |db: &TestDb| {
        let r = db
            .client()
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'pending' AND external_status IN ('not_sent', 'dispatching')),
                        count(*) FILTER (WHERE status = 'pending' AND external_status IN ('sent', 'processing'))
                   FROM orders",
                &[],
            )
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };

    for round in 0..12 {
        let d = daemon(&db.url, log.path(), &["--round-size", "40"]);
        // New orders arrive while daemons come and go: kills land during dispatch too.
        // Every other daemon gets 100 new orders right after it starts, so several kills can
        // land while a batch is being claimed, placed or recorded.
        if round % 2 == 0 && round < 10 {
            insert_orders(&db, "pubg-60", 50);
            insert_orders(&db, "freefire-100", 50);
        }
        let after_ms = rng.random_range(150..900);
        std::thread::sleep(Duration::from_millis(after_ms));
        let (dispatching, checking) = state(&db);
        d.kill9();
        kills.push(KillPoint { dispatching, checking });
    }
    eprintln!("kill points: {kills:#?}");
    assert!(kills.iter().filter(|k| k.dispatching > 0).count() >= 2, "some kills hit dispatch: {kills:?}");
    assert!(kills.iter().filter(|k| k.checking > 0).count() >= 5, "most kills hit status checks and write-back: {kills:?}");

    // A survivor finishes the job; what the killed ones held comes back after its lease.
    let survivor = daemon(&db.url, log.path(), &[]);
    wait_all_final(&db, Duration::from_secs(120));
    assert_eq!(survivor.terminate(), 0);
    assert_no_panic(log.path());

    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 500);
    assert_placed_once(&sim, 500);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    // Sum of balances plus what open orders hold equals the opening total; with every order
    // final, balances plus charges of approved orders do.
    let held = db.query_i64(
        "SELECT (((SELECT sum(balance) FROM users) + (SELECT coalesce(sum(price), 0) FROM orders WHERE status <> 'rejected')) * 100)::bigint",
    );
    assert_eq!(held, opening, "sum of balances + charges of orders not refunded = the opening total");
    let rejected = db.query_i64("SELECT count(*) FROM orders WHERE status = 'rejected'");
    assert!(rejected > 50 && rejected < 160, "about 20% cancelled by the provider: {rejected}");
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), rejected, "one refund per rejected order");
    assert_event_logs_consistent(&db);
    assert_eq!(db.query_i64("SELECT count(*) FROM placements WHERE outcome = 'in_flight'"), 0, "no placement left in flight");
}

/// What must hold of forwarding at any committed moment, whatever was killed when: every
/// forwarded order names an upstream order that names it back; no upstream order is final while
/// the order forwarded to it is open (they finish in one transaction).
#[track_caller]
fn assert_forwarding_consistent(db: &TestDb, when: &str) {
    let q = |sql: &str| db.query_i64(sql);
    assert_eq!(
        q("SELECT count(*) FROM orders d WHERE d.forwarded_to IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM orders u WHERE u.id = d.forwarded_to AND u.forwarded_from = d.id)"),
        0,
        "{when}: every link names both sides"
    );
    assert_eq!(
        q("SELECT count(*) FROM orders u JOIN orders d ON d.id = u.forwarded_from WHERE u.status <> 'pending' AND d.status = 'pending'"),
        0,
        "{when}: an upstream order finished while the order forwarded to it stayed open"
    );
}

/// The daemon's connection is waiting for a lock the test holds: it is inside a transaction,
/// between two of its statements.
fn wait_for_a_blocked_daemon(db: &TestDb, what: &str) {
    wait_until(what, Duration::from_secs(30), || {
        db.query_i64(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'orderctl' AND wait_event_type = 'Lock'",
        ) > 0
    });
}

/// Forwarding under kill -9, at each of its steps: a daemon killed inside the transaction that
/// forwards (the account locked by the test), at random moments while orders are forwarded,
/// placed upstream and checked, and inside the transaction that finishes an upstream order and
/// the orders forwarded to it (those locked by the test). Every forwarded order ends with
/// exactly one upstream order, linked both ways; every upstream order was placed once; each
/// chain (alsham → wholesale, and on to the supplier) ends with one outcome and one PIN on every
/// side; money balances in every tenant.
#[test]
fn kill_9_at_every_step_of_forwarding_loses_nothing_and_doubles_nothing() {
    let sim =
        Sim::start(&["--complete-after", "1s", "--jitter", "2s", "--cancel-share", "0.2", "--seed", "23", "--latency", "40ms"]);
    let db = crate::forwarding::setup(&sim);
    let opening = db.query_i64("SELECT (sum(amount) * 100)::bigint FROM ledger");
    let log = DaemonLog::new();
    let q = |sql: &str| db.query_i64(sql);

    // 1. Killed inside the forwarding transaction: it waits for the account, which the test holds.
    let mut holder = db.client();
    let mut hold = holder.transaction().unwrap();
    hold.execute("SELECT 1 FROM users WHERE name = 'alsham-account' FOR UPDATE", &[]).unwrap();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders_in(&db, "alsham", "pubg-60-fwd", 15);
    insert_orders_in(&db, "alsham", "pubg-chain-fwd", 10);
    wait_for_a_blocked_daemon(&db, "the routing lane inside its forwarding transaction");
    d.kill9();
    hold.rollback().unwrap();
    assert_eq!(q("SELECT count(*) FROM orders WHERE forwarded_from IS NOT NULL"), 0, "nothing created upstream");
    assert_eq!(q("SELECT count(*) FROM orders WHERE forwarded_to IS NOT NULL OR external_status <> 'not_sent'"), 0);
    assert_eq!(q("SELECT count(*) FROM ledger WHERE kind = 'charge' AND order_id NOT IN (SELECT id FROM orders)"), 0);
    assert_forwarding_consistent(&db, "after a kill inside forwarding");

    // 2. Killed at random moments while new orders keep arriving.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_f0d0);
    for round in 0..9 {
        let d = daemon(&db.url, log.path(), &["--round-size", "20"]);
        if round % 3 == 0 {
            insert_orders_in(&db, "alsham", "pubg-60-fwd", 15);
            insert_orders_in(&db, "alsham", "pubg-chain-fwd", 10);
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..900)));
        d.kill9();
        assert_forwarding_consistent(&db, &format!("after kill {round}"));
    }

    // Under load the random kills can all land before a routing lane forwarded anything; step
    // 3 needs forwarded orders still open, so one daemon forwards some first.
    let forwarded_open = "SELECT count(*) FROM orders d JOIN tenants t ON t.id = d.tenant_id
                           WHERE t.name = 'alsham' AND d.status = 'pending' AND d.forwarded_to IS NOT NULL";
    if q(forwarded_open) == 0 {
        let d = daemon(&db.url, log.path(), &[]);
        crate::support::wait_until("an order forwarded and still open", Duration::from_secs(60), || q(forwarded_open) > 0);
        d.kill9();
        assert_forwarding_consistent(&db, "after the forwarding daemon's kill");
    }

    // 3. Killed inside the transaction that finishes an upstream order: it waits for the order
    // forwarded to it, which the test holds.
    let open_down =
        q("SELECT count(*) FROM orders d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'alsham' AND d.status = 'pending'");
    assert!(open_down > 0, "orders left to finish");
    let mut hold = holder.transaction().unwrap();
    hold.execute(
        "SELECT 1 FROM orders d JOIN tenants t ON t.id = d.tenant_id WHERE t.name = 'alsham' AND d.status = 'pending' FOR UPDATE OF d",
        &[],
    )
    .unwrap();
    let d = daemon(&db.url, log.path(), &[]);
    wait_for_a_blocked_daemon(&db, "a writer inside the transaction that finishes an upstream order");
    d.kill9();
    hold.rollback().unwrap();
    assert_forwarding_consistent(&db, "after a kill inside finishing");

    let survivor = daemon(&db.url, log.path(), &[]);
    wait_all_final(&db, Duration::from_secs(120));
    assert_eq!(survivor.terminate(), 0);
    assert_no_panic(log.path());

    assert_forwarding_consistent(&db, "at the end");
    assert_eq!(q("SELECT count(*) FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'alsham'"), 100);
    assert_eq!(q("SELECT count(*) FROM orders"), 240, "100 forwarded, 100 at the wholesaler, 40 at the supplier");
    assert_eq!(
        q("SELECT count(*) FROM orders d JOIN packages p ON p.id = d.package_id WHERE p.provider_type = 'internal' AND d.forwarded_to IS NULL"),
        0,
        "every order of an internal package was forwarded"
    );
    assert_eq!(
        q("SELECT count(*) FROM orders d JOIN orders u ON u.id = d.forwarded_to
            WHERE d.status <> u.status OR d.pin_code IS DISTINCT FROM u.pin_code OR d.completed_at <> u.completed_at"),
        0,
        "each side of every link ends alike, with one PIN, in one transaction"
    );
    assert_placed_once(&sim, 100);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    let held = q(
        "SELECT (((SELECT sum(balance) FROM users) + (SELECT coalesce(sum(price), 0) FROM orders WHERE status <> 'rejected')) * 100)::bigint",
    );
    assert_eq!(held, opening, "sum of balances + charges of orders not refunded = the opening total, across every tenant");
    let rejected = q("SELECT count(*) FROM orders WHERE status = 'rejected'");
    assert_eq!(q("SELECT count(*) FROM ledger WHERE kind = 'refund'"), rejected, "one refund per rejected order, on every side");
    assert!(rejected > 0, "some cancellations reached the forwarded orders");
    assert_event_logs_consistent(&db);
    assert_eq!(q("SELECT count(*) FROM placements WHERE outcome = 'in_flight'"), 0);
}
