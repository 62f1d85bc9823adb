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
