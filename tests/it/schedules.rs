//! Per-provider check schedules: a provider's own `schedule` in the setup file decides when its
//! orders are checked, while another provider's orders keep the global schedule; `provider list`
//! and `inspect` show the schedule in force and where each value came from.

use crate::orders::{create, inspect};
use crate::support::*;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::Duration;

/// The global schedule every command here is given.
const GLOBAL: &[&str] = &["--first-check", "2s", "--backoff-base", "2s", "--backoff-max", "2s"];

fn setup_with_xstor_schedule(sim: &Sim) -> TestDb {
    let db = TestDb::new();
    let mut doc = standard_setup(&sim.base_url);
    doc["tenants"][0]["providers"][1]["schedule"] =
        json!({"first_check": "200ms", "backoff_base": "300ms", "backoff_max": "600ms", "max_checks": 5});
    db.apply(&doc);
    db
}

/// When the order was accepted (its dispatch event) and when each of its status checks was written.
fn check_times(order: &Value) -> (DateTime<Utc>, Vec<DateTime<Utc>>) {
    let events = order["events"].as_array().unwrap();
    let at = |e: &Value| e["at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let sent = events.iter().find(|e| e["kind"] == "dispatch").map(at).unwrap_or_else(|| panic!("no dispatch: {order:#}"));
    let checks = events.iter().filter(|e| e["kind"].as_str().unwrap().starts_with("check.")).map(at).collect();
    (sent, checks)
}

fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}

#[test]
fn each_provider_is_checked_by_its_own_schedule_while_another_keeps_the_global_one() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup_with_xstor_schedule(&sim);
    let fast = create(&db, "freefire-100", &["--no-dispatch"])["number"].to_string();
    let slow = create(&db, "pubg-60", &["--no-dispatch"])["number"].to_string();
    let log = tempfile::NamedTempFile::new().unwrap();
    let daemon = db.cmd().args(["daemon", "--idle-poll", "20ms"]).args(GLOBAL).spawn_logged(log.path());
    let checks = |n: &str| db.query_i64(&format!("SELECT checks::bigint FROM orders WHERE number = {n}"));
    wait_until("x-stor's five checks and Znet's first", Duration::from_secs(20), || checks(&fast) >= 5 && checks(&slow) >= 1);
    assert_eq!(daemon.terminate(), 0);

    // x-stor's own schedule: 200ms, then 300ms doubling to 600ms, five checks and no more.
    let (sent, times) = check_times(&inspect(&db, &fast));
    assert_eq!(times.len(), 5, "max_checks 5 of x-stor's schedule: {times:?}");
    let gaps: Vec<i64> = std::iter::once(ms(sent, times[0])).chain(times.windows(2).map(|w| ms(w[0], w[1]))).collect();
    for (gap, want) in gaps.iter().zip([200, 300, 600, 600, 600]) {
        assert!(*gap >= want * 9 / 10 - 20 && *gap <= want * 11 / 10 + 400, "x-stor's gaps {gaps:?}");
    }
    let last = inspect(&db, &fast)["events"].as_array().unwrap().last().unwrap()["message"].as_str().unwrap().to_string();
    assert!(last.contains("no checks left"), "{last}");

    // Znet keeps the global schedule: nothing before its first check at 2s.
    let (sent, times) = check_times(&inspect(&db, &slow));
    assert!(!times.is_empty() && ms(sent, times[0]) >= 1800, "Znet's first check {:?} after {sent}", times);
    assert!(times.windows(2).all(|w| ms(w[0], w[1]) >= 1800), "Znet's gaps follow the global 2s: {times:?}");
}

#[test]
fn provider_list_and_inspect_show_the_schedule_in_force_and_where_each_value_came_from() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup_with_xstor_schedule(&sim);
    let listed = db.cmd().args(["-o", "json", "provider", "list"]).args(GLOBAL).run().ok().json();
    let by_name = |name: &str| listed.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let xstor = by_name("xstor")["schedule"].clone();
    assert_eq!(xstor["first_check"], json!({"value": "200ms", "ms": 200, "source": "provider"}));
    assert_eq!(xstor["backoff_max"]["source"], "provider");
    assert_eq!(xstor["max_checks"], json!({"value": 5, "source": "provider"}));
    assert_eq!(xstor["give_up_after"], json!({"value": "24h", "ms": 86_400_000, "source": "default"}));
    let znet = by_name("znet-main")["schedule"].clone();
    assert_eq!(znet["first_check"], json!({"value": "2s", "ms": 2000, "source": "setting"}));
    assert_eq!(znet["max_checks"]["source"], "default");

    // The environment sets the global schedule too, like the daemon's unit file does.
    let table = db.cmd().args(["provider", "list"]).env("ORDERCTL_FIRST_CHECK", "45s").run().ok().stdout;
    let line = |name: &str| table.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{table}")).to_string();
    assert!(line("xstor").contains("first 200ms*, then 300ms* doubling to 600ms*, 5* checks, give up after 24h"), "{table}");
    assert!(line("znet-main").contains("first 45s, then 30s doubling to 10m, 20 checks"), "{table}");
    assert!(table.contains("* set by the provider's own schedule"), "{table}");

    // A global give-up limit shorter than the provider's first check is moved to fit it, and says so.
    let adjusted =
        db.cmd().args(["-o", "json", "provider", "list", "--first-check", "0s", "--give-up-after", "100ms"]).run().ok().json();
    let xstor = adjusted.as_array().unwrap().iter().find(|p| p["name"] == "xstor").unwrap();
    assert_eq!(xstor["schedule"]["give_up_after"], json!({"value": "200ms", "ms": 200, "source": "adjusted"}));
    let znet = adjusted.as_array().unwrap().iter().find(|p| p["name"] == "znet-main").unwrap();
    assert_eq!(znet["schedule"]["give_up_after"], json!({"value": "100ms", "ms": 100, "source": "setting"}));

    let o = create(&db, "freefire-100", &[]);
    let shown = db.cmd().args(["-o", "json", "inspect", &o["number"].to_string()]).args(GLOBAL).run().ok().json();
    assert_eq!(shown["schedule"]["first_check"]["source"], "provider");
    assert_eq!(shown["schedule"]["backoff_base"]["value"], "300ms");
    let text = db.cmd().args(["inspect", &o["number"].to_string()]).run().ok().stdout;
    assert!(text.contains("check schedule") && text.contains("first 200ms*"), "{text}");

    // Re-applying the same file changes nothing; a changed schedule is an update.
    let mut doc = standard_setup(&sim.base_url);
    doc["tenants"][0]["providers"][1]["schedule"] =
        json!({"first_check": "200ms", "backoff_base": "300ms", "backoff_max": "600ms", "max_checks": 5});
    let again = db.cmd().args(["-o", "json", "apply", "-f", "-"]).stdin(doc.to_string()).run().ok().json();
    assert_eq!(again["changes"], 0, "{again}");
    doc["tenants"][0]["providers"][1]["schedule"]["max_checks"] = json!(6);
    let changed = db.cmd().args(["-o", "json", "apply", "-f", "-"]).stdin(doc.to_string()).run().ok().json();
    assert_eq!(changed["providers"]["updated"], json!(["alsham/xstor"]), "{changed}");
    assert_eq!(db.query_i64("SELECT schedule_max_checks::bigint FROM providers WHERE name = 'xstor'"), 6);
}

#[test]
fn a_bad_schedule_is_refused_with_its_path_and_the_database_refuses_one_written_around_apply() {
    let sim = Sim::start(&[]);
    let db = TestDb::new();
    let mut doc = standard_setup(&sim.base_url);
    doc["tenants"][0]["providers"][0]["schedule"] = json!({"first_check": "2h", "give_up_after": "1h", "backoff_base": "10ms"});
    let out = db.cmd().args(["-o", "json", "apply", "-f", "-"]).stdin(doc.to_string()).run().code(4);
    let paths: Vec<String> = out.json().as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        paths,
        ["tenants[0].providers[0].schedule.backoff_base", "tenants[0].providers[0].schedule.first_check"],
        "{}",
        out.stdout
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM providers"), 0, "nothing written");
    db.apply(&standard_setup(&sim.base_url));
    for sql in [
        "UPDATE providers SET schedule_first_check_ms = 7200000, schedule_give_up_after_ms = 3600000",
        "UPDATE providers SET schedule_backoff_base_ms = 60000, schedule_backoff_max_ms = 1000",
        "UPDATE providers SET schedule_max_checks = 0",
        "UPDATE providers SET schedule_backoff_base_ms = 10",
    ] {
        let e = db.client().execute(sql, &[]).expect_err(sql);
        assert_eq!(e.code().map(|c| c.code()), Some("23514"), "{sql}: {e}");
    }
}
