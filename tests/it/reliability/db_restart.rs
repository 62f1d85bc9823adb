//! Postgres restarted, and orderctl's backends terminated, in the middle of a run: the daemon
//! reconnects by itself; nothing lost, nothing doubled. On a private throwaway cluster, so the
//! machine's shared server is never disturbed.

use super::*;
use orderctl::kit::cluster::{ClusterOptions, PrivateCluster};

/// Orders under way, then `interrupt` (the database goes away under the daemon), then more
/// orders: the same daemon finishes all of them, each placed once, money conserved.
fn the_daemon_survives(interrupt: impl FnOnce(&PrivateCluster, &TestDb)) {
    let Some(cluster) = private_cluster(ClusterOptions::default()) else { return };
    let db = TestDb::migrated_on(&cluster.url);
    let sim = Sim::start(&["--complete-after", "1500ms", "--jitter", "1s", "--cancel-share", "0.2", "--seed", "5"]);
    db.apply(&standard_setup(&sim.base_url));
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 100);
    insert_orders(&db, "freefire-100", 100);
    wait_until("orders under way", Duration::from_secs(30), || sim.stats()["orders_placed"].as_u64().unwrap() >= 20);
    assert!(open_orders(&db) > 0, "the interruption comes mid-run");

    interrupt(&cluster, &db);

    insert_orders(&db, "freefire-100", 50);
    wait_all_final(&db, Duration::from_secs(90));
    let text = log.text();
    assert!(text.contains("reconnected to the database"), "the daemon noticed and reconnected by itself:\n{text}");
    assert_eq!(d.terminate(), 0, "still the same, healthy daemon");
    assert_no_panic(log.path());
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 250, "nothing lost");
    assert_placed_once(&sim, 250);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}

#[test]
fn the_daemon_reconnects_after_postgres_restarts_mid_run() {
    the_daemon_survives(|cluster, _db| cluster.pg_ctl(&["restart", "-m", "fast"]).unwrap());
}

#[test]
fn the_daemon_reconnects_after_its_backends_are_terminated_mid_run() {
    the_daemon_survives(|_cluster, db| {
        let killed = db.query_i64(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'orderctl') t",
        );
        assert!(killed >= 1, "the daemon's connections were terminated");
    });
}
