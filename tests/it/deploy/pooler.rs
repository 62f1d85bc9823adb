//! Through pgbouncer in transaction mode (Debian's 1.18: no prepared-statement support) and in
//! session mode: every command and two daemons work, webhooks are delivered, with no database
//! error, and nothing is left behind.

use super::*;
use crate::reliability::{assert_no_panic, assert_placed_once, daemon, DaemonLog};
use crate::webhooks::{setup_with_webhook, Receiver};
use std::time::Duration;

#[test]
fn commands_and_two_daemons_work_through_pgbouncer_in_transaction_mode_and_leave_nothing_behind() {
    through_pgbouncer("transaction");
}

#[test]
fn commands_and_two_daemons_work_through_pgbouncer_in_session_mode_and_leave_nothing_behind() {
    through_pgbouncer("session");
}

fn through_pgbouncer(mode: &str) {
    let Some(bouncer) = pgbouncer(mode) else { return };
    let db = TestDb::empty();
    let pooled = bouncer.url_for(&db.url);
    let via_pool = || Cmd::new().env("DATABASE_URL", &pooled);
    via_pool().args(["migrate"]).run().ok();
    let sim = Sim::start(&["--complete-after", "300ms", "--jitter", "300ms", "--cancel-share", "0.2", "--seed", "21"]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let setup = setup_with_webhook(&sim, &receiver.url, None);
    let out = via_pool().args(["apply", "-f", "-"]).stdin(setup.to_string()).run().ok();
    assert!(out.stderr.is_empty() || !out.stderr.contains("error"), "{}", out.stderr);
    let doctor = via_pool().args(["doctor"]).run();
    let said = format!("{mode} mode");
    assert!(doctor.stdout.contains(&said), "doctor detects the pooler and its mode:\n{}", doctor.stdout);

    // The operator's commands, one by one.
    let create = |package: &str, extra: &[&str]| {
        via_pool().args(CREATE_AS_HALIL).args(["--package", package, "--player", "5550001"]).args(extra).run().ok().json()
    };
    let manual = create("jawaker", &[]);
    via_pool().args(["approve", &manual["number"].to_string(), "--pin", "BY-HAND"]).run().ok();
    let refused = create("jawaker", &[]);
    via_pool().args(["reject", &refused["number"].to_string(), "--reason", "buyer asked"]).run().ok();
    let later = create("pubg-60", &["--no-dispatch"]);
    via_pool().args(["dispatch", &later["number"].to_string()]).run().ok();

    // Two daemons, 500 orders, a provider that fails now and then.
    sim.configure(serde_json::json!({"error_rate": 0.1}));
    let (log_a, log_b) = (DaemonLog::new(), DaemonLog::new());
    let a = daemon(&pooled, log_a.path(), &[]);
    let b = daemon(&pooled, log_b.path(), &[]);
    let mut c = orderctl::db::connect(&pooled).unwrap();
    orderctl::kit::orders::insert_orders(&mut c, "alsham", "halil", "pubg-60", 250).unwrap();
    orderctl::kit::orders::insert_orders(&mut c, "alsham", "halil", "freefire-100", 250).unwrap();
    wait_until("all 500 orders final through the pool", Duration::from_secs(150), || open_orders(&db) == 0);
    // Every event of every final order delivered by the daemons' webhook lanes, through the pool.
    let events = || db.query_i64("SELECT count(*) FROM webhook_deliveries");
    let delivered = || db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'");
    wait_until("every webhook event delivered through the pool", Duration::from_secs(60), || {
        events() >= 502 && delivered() == events()
    });
    assert_eq!(receiver.delivered().len() as i64, events(), "each event reached the shop's endpoint");
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
    for log in [&log_a, &log_b] {
        let text = log.text();
        assert_no_panic(log.path());
        for bad in ["prepared statement", "db error", "database unavailable", "supervisor:"] {
            assert!(!text.contains(bad), "no database error through the pool ({bad}):\n{text}");
        }
    }
    assert_placed_once(&sim, 501);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);

    // Fresh clients of the pool see the server's defaults and no prepared statement.
    let mut direct = orderctl::db::connect(&db.url).unwrap();
    for _ in 0..6 {
        let mut fresh = orderctl::db::connect(&pooled).unwrap();
        for name in orderctl::db::SETTINGS_CHANGED {
            let sql = format!("SELECT current_setting('{name}')");
            let pooled_value: String = fresh.query_one(&sql, &[]).unwrap().get(0);
            let default: String = direct.query_one(&sql, &[]).unwrap().get(0);
            assert_eq!(pooled_value, default, "{name} on a fresh pool connection is the server's default");
        }
        let left = fresh.query_one("SELECT count(*) FROM pg_prepared_statements", &[]).unwrap().get::<_, i64>(0);
        assert_eq!(left, 0, "no prepared statement left on a server connection of the pool");
    }
}
