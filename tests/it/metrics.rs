//! `daemon --metrics-listen`: `/metrics` parsed by a real Prometheus text parser (Python's
//! `prometheus_client`), counters that add up to what the database says, `/healthz` both ways,
//! and examples (alert rules, dashboard) that reference only metrics orderctl exports.

use crate::reliability::{assert_no_panic, daemon, daemon_timed, wait_all_final, DaemonLog};
use crate::support::insert_orders_in;
use crate::support::*;
use crate::webhooks::http_get;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// A port nobody listens on right now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Run tests/it/prometheus_check.py.
fn python(kind: &str, path: &std::path::Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/prometheus_check.py");
    let out = std::process::Command::new("python3").arg(script).arg(kind).arg(path).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "prometheus_check.py {kind} failed (needs `python3 -m pip install prometheus_client pyyaml`, which .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The exposition parsed: family name → family.
fn scrape(addr: &str) -> (String, serde_json::Map<String, Value>) {
    let (status, text) = http_get(addr, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let parsed = python("metrics", file.path());
    (text, parsed["families"].as_object().unwrap().clone())
}

fn sum_samples(families: &serde_json::Map<String, Value>, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    families
        .get(family)
        .and_then(|f| f["samples"].as_array())
        .map(|samples| {
            samples
                .iter()
                .filter(|s| s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v))
                .map(|s| s[2].as_f64().unwrap())
                .sum()
        })
        .unwrap_or(0.0)
}

#[test]
fn metrics_parse_with_a_real_parser_and_finished_counters_add_up() {
    let sim = Sim::start(&["--complete-after", "300ms", "--jitter", "400ms", "--cancel-share", "0.2", "--seed", "5"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let addr = free_addr();
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &["--metrics-listen", &addr]);
    wait_until("/healthz answers 200", Duration::from_secs(20), || http_get(&addr, "/healthz").map(|(s, _)| s) == Some(200));
    assert_eq!(http_get(&addr, "/healthz").unwrap().1, "ok\n");
    insert_orders(&db, "pubg-60", 20);
    insert_orders(&db, "freefire-100", 20);
    wait_all_final(&db, Duration::from_secs(60));
    let approved = db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'") as f64;
    let rejected = db.query_i64("SELECT count(*) FROM orders WHERE status = 'rejected'") as f64;
    assert!(rejected > 0.0);
    // The counters move right after the write's commit; the gauges every few seconds.
    wait_until("the counters caught up", Duration::from_secs(20), || {
        let (_, f) = scrape(&addr);
        sum_samples(&f, "orderctl_orders_finished", "orderctl_orders_finished_total", &[]) == 40.0
            && sum_samples(&f, "orderctl_due_orders", "orderctl_due_orders", &[]) == 0.0
    });
    let (text, families) = scrape(&addr);
    let finished = |status| {
        sum_samples(
            &families,
            "orderctl_orders_finished",
            "orderctl_orders_finished_total",
            &[("tenant", "alsham"), ("status", status)],
        )
    };
    assert_eq!((finished("approved"), finished("rejected")), (approved, rejected), "finished orders by status:\n{text}");
    assert_eq!(families["orderctl_orders_finished"]["type"], "counter");
    let placements = sum_samples(&families, "orderctl_provider_calls", "orderctl_provider_calls_total", &[("call", "place")]);
    assert_eq!(placements, 40.0, "one placement call per order (the simulator refuses none)");
    assert!(sum_samples(&families, "orderctl_provider_calls", "orderctl_provider_calls_total", &[("call", "check")]) > 0.0);
    assert_eq!(families["orderctl_provider_call_duration_seconds"]["type"], "histogram");
    let timed = sum_samples(
        &families,
        "orderctl_provider_call_duration_seconds",
        "orderctl_provider_call_duration_seconds_count",
        &[("call", "place")],
    );
    assert_eq!(timed, 40.0, "every placement call timed");
    for gauge in [
        "orderctl_due_orders",
        "orderctl_oldest_due_seconds",
        "orderctl_webhook_pending_deliveries",
        "orderctl_stats_rollups_behind_seconds",
    ] {
        assert_eq!(families[gauge]["type"], "gauge", "{gauge}");
    }
    // The daemon's sweeps keep the rollups minutes behind, not the day the database was migrated.
    let behind = sum_samples(&families, "orderctl_stats_rollups_behind_seconds", "orderctl_stats_rollups_behind_seconds", &[]);
    assert!(behind < 3600.0, "rollups {behind} s behind");
    assert!(
        sum_samples(&families, "orderctl_lane_claim_duration_seconds", "orderctl_lane_claim_duration_seconds_count", &[]) > 0.0
    );
    for family in ["orderctl_provider_claim_duration_seconds", "orderctl_provider_write_duration_seconds"] {
        let count = format!("{family}_count");
        assert!(sum_samples(&families, family, &count, &[("tenant", "alsham")]) > 0.0, "{family}:\n{text}");
    }
    let (status, _) = http_get(&addr, "/nothing").unwrap();
    assert_eq!(status, 404);

    // The examples reference only what is exported.
    let exported: HashSet<String> = families
        .iter()
        .flat_map(|(name, f)| {
            let samples = f["samples"].as_array().unwrap().iter().map(|s| s[0].as_str().unwrap().to_string());
            std::iter::once(name.clone()).chain(samples).collect::<Vec<_>>()
        })
        .chain(orderctl::metrics::NAMES.iter().map(|n| n.to_string()))
        .collect();
    // Every family in the exposition is one orderctl documents (a family shows once it has a
    // series: no order needed an operator here, no webhook was sent).
    for family in families.keys() {
        let named = orderctl::metrics::NAMES.iter().any(|n| n.strip_suffix("_total").unwrap_or(n) == family);
        assert!(named, "{family} is exported but not in orderctl::metrics::NAMES");
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut exprs: Vec<String> = Vec::new();
    for (kind, file) in [("rules", "prometheus/orderctl-alerts.yml"), ("dashboard", "grafana/orderctl-dashboard.json")] {
        let found = python(kind, &root.join(file));
        let list: Vec<String> = found["exprs"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect();
        assert!(list.len() >= 5, "{file} has its expressions");
        exprs.extend(list);
    }
    let mut referenced = HashSet::new();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("orderctl_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            referenced.insert(name);
        }
    }
    let histograms = [
        "orderctl_provider_call_duration_seconds",
        "orderctl_provider_claim_duration_seconds",
        "orderctl_provider_write_duration_seconds",
        "orderctl_lane_claim_duration_seconds",
        "orderctl_lane_write_duration_seconds",
    ];
    for name in &referenced {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).filter(|b| histograms.contains(b));
        assert!(exported.contains(name) || base.is_some(), "the examples reference {name}, which orderctl does not export");
    }
    for required in [
        "orderctl_due_orders",
        "orderctl_oldest_due_seconds",
        "orderctl_stats_rollups_behind_seconds",
        "orderctl_provider_calls_total",
        "orderctl_webhook_deliveries_total",
    ] {
        assert!(referenced.contains(required), "the alert rules or the dashboard use {required}");
    }
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());
}

#[test]
fn healthz_is_503_with_a_reason_while_the_database_does_not_answer() {
    let addr = free_addr();
    let log = DaemonLog::new();
    let d = Cmd::new()
        .args(["--database-url", "postgres://postgres@127.0.0.1:1/nothing", "daemon", "--metrics-listen", &addr])
        .spawn_logged(log.path());
    wait_until("/healthz answers", Duration::from_secs(20), || http_get(&addr, "/healthz").is_some());
    let (status, body) = http_get(&addr, "/healthz").unwrap();
    assert_eq!(status, 503);
    assert!(body.starts_with("database unavailable: cannot connect to the database"), "{body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    assert_eq!(http_get(&addr, "/metrics").unwrap().0, 200, "metrics are served all the same");
    assert_eq!(d.terminate(), 0);

    // A daemon whose database disappears under it turns unhealthy too.
    let db = TestDb::new();
    let addr = free_addr();
    let d = Cmd::new().env("DATABASE_URL", &db.url).args(["daemon", "--metrics-listen", &addr]).spawn_logged(log.path());
    wait_until("healthy", Duration::from_secs(20), || http_get(&addr, "/healthz").map(|(s, _)| s) == Some(200));
    let mut admin = admin();
    admin.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name)).unwrap();
    wait_until("unhealthy", Duration::from_secs(30), || http_get(&addr, "/healthz").map(|(s, _)| s) == Some(503));
    assert!(http_get(&addr, "/healthz").unwrap().1.starts_with("database unavailable"));
    assert_eq!(d.terminate(), 0);
    // A taken port stops the daemon at start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Cmd::new()
        .args(["--database-url", "postgres://postgres@127.0.0.1:1/nothing", "daemon", "--metrics-listen"])
        .arg(taken.local_addr().unwrap().to_string())
        .run()
        .code(4);
    assert!(out.stderr.contains("cannot listen on"), "{}", out.stderr);
}

/// A sample's value, or None when the series is not exported.
fn sample(families: &serde_json::Map<String, Value>, family: &str, sample: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.get(family)?["samples"].as_array()?.iter().find_map(|s| {
        let exact = s[0] == sample && labels.iter().all(|(k, v)| s[1][*k] == *v);
        exact.then(|| s[2].as_f64().unwrap())
    })
}

#[test]
fn two_tenants_providers_of_one_name_are_separate_series_present_at_zero_and_cli_outcomes_counted() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    let db = TestDb::new();
    db.apply(&crate::webhook_delivery::two_tenants(&sim));
    let addr = free_addr();
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &["--metrics-listen", &addr]);
    wait_until("/healthz answers 200", Duration::from_secs(20), || http_get(&addr, "/healthz").map(|(s, _)| s) == Some(200));
    // Before any order: every counter of every known tenant and (tenant, provider) is there, at 0.
    wait_until("the tenants are declared", Duration::from_secs(20), || {
        sample(
            &scrape(&addr).1,
            "orderctl_orders_finished",
            "orderctl_orders_finished_total",
            &[("tenant", "beirut"), ("status", "approved")],
        )
        .is_some()
    });
    let (text, f) = scrape(&addr);
    for tenant in ["alsham", "beirut"] {
        for status in orderctl::metrics::FINISHED {
            let v = sample(
                &f,
                "orderctl_orders_finished",
                "orderctl_orders_finished_total",
                &[("tenant", tenant), ("status", status.as_str())],
            );
            assert_eq!(v, Some(0.0), "{tenant} {status}:\n{text}");
        }
        for outcome in orderctl::metrics::DELIVERY_OUTCOMES {
            let v = sample(
                &f,
                "orderctl_webhook_deliveries",
                "orderctl_webhook_deliveries_total",
                &[("tenant", tenant), ("outcome", outcome)],
            );
            assert_eq!(v, Some(0.0), "{tenant} webhook {outcome}");
        }
        for provider in ["znet-main", "xstor"] {
            let calls = orderctl::metrics::PLACE_OUTCOMES
                .iter()
                .map(|o| ("place", *o))
                .chain(orderctl::metrics::CHECK_OUTCOMES.iter().map(|o| ("check", *o)));
            for (call, outcome) in calls {
                let labels = [("tenant", tenant), ("provider", provider), ("call", call), ("outcome", outcome)];
                let v = sample(&f, "orderctl_provider_calls", "orderctl_provider_calls_total", &labels);
                assert_eq!(v, Some(0.0), "{labels:?}:\n{text}");
            }
            for call in ["place", "check"] {
                let labels = [("tenant", tenant), ("provider", provider), ("call", call)];
                let v = sample(&f, "orderctl_provider_calls_not_sent", "orderctl_provider_calls_not_sent_total", &labels);
                assert_eq!(v, Some(0.0), "{labels:?}:\n{text}");
            }
        }
    }
    // Lanes that are not providers are told apart by `lane`; no provider series has it.
    for family in
        ["orderctl_provider_calls", "orderctl_provider_claim_duration_seconds", "orderctl_provider_write_duration_seconds"]
    {
        for s in f[family]["samples"].as_array().unwrap() {
            assert!(s[1].get("lane").is_none() && s[1].get("tenant").is_some() && s[1].get("provider").is_some(), "{s}");
        }
    }
    let lanes: HashSet<&str> = f["orderctl_lane_claim_duration_seconds"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s[1]["lane"].as_str())
        .collect();
    assert_eq!(lanes, HashSet::from(["routing", "webhooks"]));

    // alsham's znet-main works; beirut's znet-main (same name) stays at 0.
    insert_orders_in(&db, "alsham", "pubg-60", 5);
    crate::reliability::wait_all_final(&db, Duration::from_secs(60));
    // An operator approves one of beirut's manual orders from the command line: the daemon
    // counts it from the database within one scrape interval (15 s by Prometheus' default).
    insert_orders_in(&db, "beirut", "jawaker", 1);
    let n = db.query_i64("SELECT max(number) FROM orders").to_string();
    db.cmd().args(["approve", &n, "--pin", "CLI-PIN"]).run().ok();
    let approved = |f: &serde_json::Map<String, Value>, tenant| {
        sample(f, "orderctl_orders_finished", "orderctl_orders_finished_total", &[("tenant", tenant), ("status", "approved")])
    };
    let started = std::time::Instant::now();
    wait_until("the CLI approve is counted", Duration::from_secs(15), || approved(&scrape(&addr).1, "beirut") == Some(1.0));
    eprintln!("a CLI approve reached the daemon's counters in {} ms", started.elapsed().as_millis());
    wait_until("alsham's finished orders counted", Duration::from_secs(15), || approved(&scrape(&addr).1, "alsham") == Some(5.0));
    let (text, f) = scrape(&addr);
    let calls = |tenant| {
        sum_samples(
            &f,
            "orderctl_provider_calls",
            "orderctl_provider_calls_total",
            &[("tenant", tenant), ("provider", "znet-main")],
        )
    };
    assert_eq!(calls("alsham"), calls("alsham").max(5.0), "alsham's calls counted:\n{text}");
    assert!(calls("alsham") >= 5.0, "{text}");
    assert_eq!(calls("beirut"), 0.0, "beirut's provider of the same name made no call:\n{text}");
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());
}

/// A call that got no turn under its provider's rate limit before its request's time ran out
/// is counted in `orderctl_provider_calls_not_sent_total`, never as a call: at "1/h" Znet sees
/// one placement, the other orders' placements give up waiting (1 s) and are counted apart,
/// and `orderctl_provider_calls_total` still equals what the provider saw.
#[test]
fn calls_that_got_no_turn_under_the_rate_limit_are_counted_apart_from_calls() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][0]["rate_limit"] = serde_json::json!("1/h");
    db.apply(&setup);
    let addr = free_addr();
    let log = DaemonLog::new();
    let d = daemon_timed(&db.url, log.path(), &["--request-timeout", "1s", "--lease", "4s"], &["--metrics-listen", &addr]);
    insert_orders(&db, "pubg-60", 4);
    let znet = |call| [("tenant", "alsham"), ("provider", "znet-main"), ("call", call)];
    let not_sent = |f: &serde_json::Map<String, Value>| {
        sum_samples(f, "orderctl_provider_calls_not_sent", "orderctl_provider_calls_not_sent_total", &znet("place"))
    };
    wait_until("placements given up are counted", Duration::from_secs(30), || not_sent(&scrape(&addr).1) >= 3.0);
    let (text, f) = scrape(&addr);
    let placed = sum_samples(&f, "orderctl_provider_calls", "orderctl_provider_calls_total", &znet("place"));
    let seen = sim.stats()["placement_calls"].as_f64().unwrap();
    assert_eq!((placed, seen), (1.0, 1.0), "one placement made, counted once:\n{text}");
    assert_eq!(d.terminate(), 0);
    assert_no_panic(log.path());
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prometheus");
    let promtool = |args: &[&str]| std::process::Command::new("promtool").args(args).current_dir(&dir).output();
    let Ok(check) = promtool(&["check", "rules", "orderctl-alerts.yml"]) else {
        eprintln!("promtool is not installed (Debian's prometheus package has it; .ci/run installs it): rules not checked");
        return;
    };
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = promtool(&["test", "rules", "orderctl-alerts.test.yml"]).unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    assert!(test.status.success() && out.contains("SUCCESS"), "promtool test rules:\n{out}");
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(dir.join("orderctl-alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("orderctl-alerts.test.yml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no promtool unit test");
    }
}
