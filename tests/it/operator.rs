//! The operator's view: stats, doctor, the one-command demo, man pages, completions and the
//! examples (systemd units, crontab line, CI script).

use crate::orders::{create, setup};
use crate::support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An auto order that was never dispatched, created `minutes` ago: stuck with a reason.
fn plant_undispatched_order(db: &TestDb, minutes: i64) -> i64 {
    let o = create(db, "pubg-60", &["--no-dispatch"]);
    let number = o["number"].as_i64().unwrap();
    db.client()
        .execute(
            "UPDATE orders SET created_at = now() - make_interval(mins => $2::int), next_check_at = NULL WHERE number = $1",
            &[&number, &(minutes as i32)],
        )
        .unwrap();
    number
}

fn server_autovacuum_on(db: &TestDb) -> bool {
    let v: String = db.client().query_one("SHOW autovacuum", &[]).unwrap().get(0);
    v == "on"
}

/// Doctor's findings that are not ok, except the server-wide autovacuum setting, which a test
/// cannot change (it is reported when the machine's server runs without autovacuum).
fn problems(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["severity"] != "ok" && !(f["check"] == "vacuum" && f["message"].as_str().unwrap().contains("autovacuum is off"))
        })
        .collect()
}

#[test]
fn stats_counts_orders_by_status_and_provider_and_names_the_stuck_ones() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let fast = ["--first-check", "0s"];
    create(&db, "pubg-60", &fast);
    create(&db, "freefire-100", &fast);
    create(&db, "itunes-10", &fast);
    create(&db, "jawaker", &fast);
    // The sent orders finish at the provider at once; one sweep pass records it.
    db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
    let stuck = plant_undispatched_order(&db, 30);

    let s = db.cmd().args(["--output", "json", "stats", "--since", "1h"]).run().ok().json();
    assert_eq!(s["window"], "1h");
    let count = |status: &str, external: &str| {
        s["orders_by_status"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"] == status && c["external_status"] == external)
            .map(|c| c["orders"].as_i64().unwrap())
            .unwrap_or(0)
    };
    assert_eq!(count("approved", "done"), 3, "{s:#}");
    assert_eq!(count("pending", "not_sent"), 2, "the manual order and the planted one: {s:#}");
    let by_provider =
        |name: &str| s["orders_by_provider"].as_array().unwrap().iter().find(|p| p["provider"] == name).cloned().unwrap();
    assert_eq!(by_provider("znet-main")["approved"], 1);
    assert_eq!(by_provider("xstor")["approved"], 1);
    assert_eq!(s["finished"]["approved"], 3);
    assert!(s["finished"]["median_ms"].as_f64().is_some() && s["finished"]["p90_ms"].as_f64().is_some());
    let activity = |name: &str| s["providers"].as_array().unwrap().iter().find(|p| p["provider"] == name).cloned().unwrap();
    assert_eq!(activity("znet-main")["placements"], 1);
    assert_eq!(activity("xstor")["placements"], 1);
    assert_eq!(activity("znet-main")["checks_approved"], 1);
    assert_eq!(s["stuck_count"], 1);
    assert_eq!(s["stuck"][0]["number"], stuck);
    assert_eq!(s["stuck"][0]["diagnosis"]["stuck"], true, "{}", s["stuck"][0]["diagnosis"]);
    assert!(!s["stuck"][0]["diagnosis"]["sentence"].as_str().unwrap().is_empty());
    assert_eq!(s["due"]["due_now"], 0);

    let table = db.cmd().args(["stats"]).run().ok().stdout;
    assert!(table.contains("znet-main") && table.contains("stuck orders (1"), "{table}");
    assert!(table.contains("time to final: median"), "{table}");

    // Scoped to a tenant that does not exist: not found.
    db.cmd().args(["--tenant", "nobody", "stats"]).run().code(3);
}

#[test]
fn stats_watch_is_refused_without_a_terminal_or_with_json() {
    let db = TestDb::new();
    let out = db.cmd().args(["stats", "--watch"]).run().code(2);
    assert!(out.stderr.contains("terminal"), "{}", out.stderr);
    let out = db.cmd().args(["--output", "json", "stats", "--watch"]).run().code(2);
    assert!(out.stderr.contains("--output json"), "{}", out.stderr);
}

#[test]
fn doctor_is_quiet_on_a_healthy_database_and_names_every_problem_with_a_fix() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    // Healthy includes selling above the provider's cost: the simulator's Znet lists the mapped
    // denomination at 10.12 (doctor --providers reads the catalogue and would warn).
    db.client().execute("UPDATE packages SET price = 20.00 WHERE name = 'pubg-60'", &[]).unwrap();
    let healthy = db.cmd().args(["--output", "json", "doctor", "--providers"]).run();
    let report = healthy.json();
    assert!(problems(&report).is_empty(), "{report:#}");
    assert_eq!(healthy.code, if server_autovacuum_on(&db) { 0 } else { 8 }, "{report:#}");
    let checks: Vec<&str> = report["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    for c in ["database", "migrations", "routing", "provider", "stuck", "dead-tuples", "vacuum", "old-transaction", "due-index"] {
        assert!(checks.contains(&c), "doctor checks {c}: {checks:?}");
    }

    // A stuck order, a provider that stopped answering, a broken hot index.
    let stuck = plant_undispatched_order(&db, 30);
    drop(sim);
    db.client().batch_execute("DROP INDEX orders_due").unwrap();
    let out = db.cmd().args(["--output", "json", "doctor", "--providers"]).run().code(8);
    let report = out.json();
    let found = problems(&report);
    let by = |check: &str| found.iter().filter(|f| f["check"] == check).collect::<Vec<_>>();
    assert_eq!(by("provider").len(), 2, "{report:#}");
    assert!(by("provider").iter().all(|f| f["severity"] == "fail" && f["fix"].as_str().is_some()));
    assert_eq!(by("stuck").len(), 1, "{report:#}");
    assert!(by("stuck")[0]["message"].as_str().unwrap().contains(&format!("order {stuck}")));
    assert_eq!(by("due-index").len(), 1);
    assert!(by("due-index")[0]["fix"].as_str().unwrap().contains("CREATE INDEX"));
    assert_eq!(report["needs_action"], true);

    // The table form: one line per finding, each problem with its fix.
    let out = db.cmd().args(["doctor"]).run().code(8);
    let stuck_line =
        out.stdout.lines().find(|l| l.starts_with("fail") && l.contains("stuck")).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(stuck_line.contains("fix: "), "{stuck_line}");
    assert!(out.stderr.contains("need action"), "{}", out.stderr);
}

#[test]
fn doctor_reports_a_missing_schema_and_an_unreachable_database() {
    let db = TestDb::empty();
    let out = db.cmd().args(["doctor"]).run().code(8);
    assert!(out.stdout.contains("fail  migrations") && out.stdout.contains("orderctl migrate"), "{}", out.stdout);

    let out = Cmd::new().args(["doctor", "--database-url", "postgres://nobody:secret-pw@127.0.0.1:1/x"]).run().code(6);
    assert!(out.stdout.starts_with("fail  database"), "{}", out.stdout);
    assert!(!out.stdout.contains("secret-pw") && !out.stderr.contains("secret-pw"), "the password is never printed");
}

fn demo_database_names() -> Vec<String> {
    admin()
        .query("SELECT datname FROM pg_database WHERE datname LIKE 'orderctl_demo_%'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_demo_summary(out: &Output, orders: usize) {
    let s = &out.stdout;
    assert!(s.contains(&format!("orderctl demo: {orders} orders")), "{s}");
    for package in ["pubg-60", "freefire-100", "itunes-10", "jawaker"] {
        assert!(s.contains(package), "summary names {package}:\n{s}");
    }
    for route in ["znet-main", "xstor", "code stock", "manual"] {
        assert!(s.contains(route), "summary names {route}:\n{s}");
    }
    // One order forwarded to the wholesaler, finished on both sides alike.
    let forwarded = s.lines().find(|l| l.contains("became the wholesaler's order")).unwrap_or_else(|| panic!("{s}"));
    assert!(
        forwarded.contains("approved on both sides with the same PIN") || forwarded.contains("rejected on both sides"),
        "{forwarded}"
    );
    assert!(s.contains("forwarded to wholesale"), "{s}");
    assert!(s.contains("routing mode is auto but provider_type is manual"), "apply's refusal:\n{s}");
    assert!(s.contains("routing_auto_cannot_be_manual"), "the database's refusal:\n{s}");
    // Exactly-once placement, as the simulator saw it (stderr holds the dispatch log if not).
    assert!(s.contains("(0 duplicate(s))"), "{s}\nstderr:\n{}", out.stderr);
    assert!(s.contains("orderctl list --stuck") && s.contains("orderctl doctor"), "where to look next:\n{s}");
    // Every order settled: the `all` row adds up to the orders created.
    let all = s.lines().find(|l| l.contains(" all ")).unwrap_or_else(|| panic!("{s}"));
    let numbers: Vec<usize> = all.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    assert_eq!(numbers[0], orders, "{all}");
    assert_eq!(numbers[1] + numbers[2] + numbers[3], orders, "approved + rejected + waiting: {all}");
}

#[test]
fn demo_on_a_given_server_uses_a_database_of_its_own_and_drops_it() {
    let before = demo_database_names();
    let out = Cmd::new().env("DATABASE_URL", admin_url()).args(["demo", "--orders", "18"]).run().ok();
    assert_demo_summary(&out, 18);
    assert!(out.stderr.contains("creating a throwaway database"), "{}", out.stderr);
    assert!(out.stderr.contains("dropped"), "{}", out.stderr);
    assert_eq!(demo_database_names(), before, "the demo database is gone");
}

/// Whether this machine can run a private cluster: the server programs exist and, as root, a
/// `postgres` user can own it.
fn can_run_private_cluster() -> bool {
    let bins = Path::new("/usr/lib/postgresql").exists()
        || std::process::Command::new("pg_config").arg("--bindir").output().map(|o| o.status.success()).unwrap_or(false);
    let root = unsafe { libc::geteuid() } == 0;
    let postgres_user =
        std::fs::read_to_string("/etc/passwd").map(|p| p.lines().any(|l| l.starts_with("postgres:"))).unwrap_or(false);
    bins && (!root || postgres_user)
}

#[test]
fn demo_without_a_database_url_runs_a_private_cluster_and_leaves_nothing_behind() {
    if !can_run_private_cluster() {
        eprintln!("skipped: no PostgreSQL server programs (or no postgres user to own the cluster as root)");
        return;
    }
    let started = std::time::Instant::now();
    let out = Cmd::new().args(["demo", "--orders", "12"]).run().ok();
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the demo took {:?}", started.elapsed());
    assert_demo_summary(&out, 12);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("private PostgreSQL cluster running in"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    let dir = line.split(" running in ").nth(1).unwrap().split(" on port ").next().unwrap();
    assert!(!Path::new(dir).exists(), "{dir} removed");
    // No server process of that cluster is left.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            assert!(!cmdline.contains(dir), "a process of the demo cluster is still running: {cmdline}");
        }
    }
}

#[test]
fn demo_refuses_a_nonsense_order_count() {
    let out = Cmd::new().args(["demo", "--orders", "0"]).run().code(4);
    assert!(out.stderr.contains("--orders"), "{}", out.stderr);
}

#[test]
fn man_pages_in_the_repository_are_current() {
    let dir = std::env::temp_dir().join(format!("orderctl-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Cmd::new().args(["man", "--dir"]).arg(&dir).run().ok();
    let read = |d: &Path| -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap()))
            .collect();
        files.sort();
        files
    };
    let fresh = read(&dir);
    let committed = read(&repo().join("man"));
    let _ = std::fs::remove_dir_all(&dir);
    let names = |f: &[(String, String)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&committed), names(&fresh), "man/ is stale: run `cargo run -- man --dir man`");
    for ((name, old), (_, new)) in committed.iter().zip(&fresh) {
        assert!(old == new, "man/{name} is stale: run `cargo run -- man --dir man`");
    }
    for page in ["orderctl.1", "orderctl-dispatch.1", "orderctl-provider-check.1", "orderctl-routing-check.1"] {
        assert!(names(&fresh).contains(&page.to_string()), "{page} generated");
    }
    let dispatch = &fresh.iter().find(|(n, _)| n == "orderctl-dispatch.1").unwrap().1;
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", "DATABASE_URL", "ORDERCTL_FIRST_CHECK", "needs\\-action"] {
        assert!(dispatch.contains(section), "orderctl-dispatch.1 has {section}");
    }
}

#[test]
fn man_renders_the_dispatch_page() {
    if std::process::Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: man is not installed");
        return;
    }
    let out = std::process::Command::new("man")
        .args(["-l", repo().join("man/orderctl-dispatch.1").to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("EXIT STATUS") && text.contains("ENVIRONMENT") && text.contains("orderctl-dispatch"), "{text}");
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Cmd::new().args(["completions", shell]).run().ok();
        assert!(
            out.stdout.contains("orderctl") && out.stdout.contains("dispatch") && out.stdout.contains("database-url"),
            "{shell}"
        );
    }
    Cmd::new().args(["completions", "tcsh"]).run().code(2);
}

/// `key=value` lines of an ini-style unit file, by section.
fn unit(path: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("{path}: not key=value: {line}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

fn has(unit: &[(String, String, String)], section: &str, key: &str, value: &str) -> bool {
    unit.iter().any(|(s, k, v)| s == section && k == key && v.contains(value))
}

#[test]
fn systemd_units_and_crontab_line_have_what_they_promise() {
    let daemon = unit("examples/orderctl-daemon.service");
    for (key, value) in [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("EnvironmentFile", "/etc/orderctl/orderctl.env"),
        ("WatchdogSec", "s"),
        ("ExecStart", "orderctl daemon"),
    ] {
        assert!(has(&daemon, "Service", key, value), "daemon unit: {key}={value}");
    }
    assert!(has(&daemon, "Install", "WantedBy", "multi-user.target"));
    // The unit's bounds match the daemon's: the watchdog outlasts the longest call plus the
    // supervisor's margin (a lane is stuck only past request timeout + 5 s), and systemd waits
    // longer than the shutdown grace before it kills.
    let seconds = |v: &str| humantime::parse_duration(v.trim_matches('"')).unwrap().as_secs();
    let setting = |unit: &[(String, String, String)], key: &str| {
        unit.iter().find(|(_, k, _)| k == key).map(|(_, _, v)| seconds(v)).unwrap()
    };
    let env_text = std::fs::read_to_string(repo().join("examples/orderctl.env")).unwrap();
    let env = |var: &str| {
        env_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=")))
            .map(seconds)
            .unwrap_or_else(|| panic!("{var} in orderctl.env"))
    };
    assert!(setting(&daemon, "WatchdogSec") > env("ORDERCTL_REQUEST_TIMEOUT") + 5, "WatchdogSec must outlast a call");
    assert!(setting(&daemon, "TimeoutStopSec") >= env("ORDERCTL_SHUTDOWN_GRACE") + 10, "TimeoutStopSec must outlast the grace");

    let sweep = unit("examples/orderctl-sweep.service");
    assert!(has(&sweep, "Service", "Type", "oneshot") && has(&sweep, "Service", "ExecStart", "orderctl sweep"));
    assert!(has(&sweep, "Service", "EnvironmentFile", "/etc/orderctl/orderctl.env"));
    let timer = unit("examples/orderctl-sweep.timer");
    assert!(has(&timer, "Timer", "OnCalendar", "*") && has(&timer, "Timer", "Unit", "orderctl-sweep.service"));
    assert!(has(&timer, "Install", "WantedBy", "timers.target"));

    // The env file: every variable is one orderctl reads, and it sources cleanly in sh (cron).
    let env = std::fs::read_to_string(repo().join("examples/orderctl.env")).unwrap();
    let mut help = Cmd::new().args(["daemon", "--help"]).run().ok().stdout;
    help.push_str(&Cmd::new().args(["--help"]).run().ok().stdout);
    for line in env.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let var = line.split('=').next().unwrap();
        assert!(help.contains(var), "examples/orderctl.env sets {var}, which orderctl does not read");
    }
    let sourced = std::process::Command::new("sh")
        .args(["-c", "set -a; . \"$1\"; printf %s \"$ORDERCTL_SWEEP_SCHEDULE\"", "sh"])
        .arg(repo().join("examples/orderctl.env"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), "0 */5 * * * *");

    let cron = std::fs::read_to_string(repo().join("examples/orderctl.cron")).unwrap();
    let line = cron.lines().find(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
    assert_eq!(line.split_whitespace().take(5).collect::<Vec<_>>(), ["*", "*", "*", "*", "*"]);
    assert!(line.contains("flock -n") && line.contains("orderctl sweep"), "{line}");
}

/// Run examples/ci-order.sh with bash, against this database, with a quick check schedule.
fn ci_script(db: &TestDb, args: &[&str]) -> Output {
    let out = std::process::Command::new("bash")
        .arg(repo().join("examples/ci-order.sh"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ORDERCTL_OUTPUT")
        .env("NO_COLOR", "1")
        .env("DATABASE_URL", &db.url)
        .env("ORDERCTL", BIN)
        .env("ORDERCTL_TENANT", "alsham")
        .env("ORDERCTL_FIRST_CHECK", "0s")
        .env("ORDERCTL_BACKOFF_BASE", "100ms")
        .env("ORDERCTL_BACKOFF_MAX", "300ms")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run bash");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn ci_script_creates_an_order_waits_for_it_and_branches_on_the_outcome() {
    let sim = Sim::start(&["--complete-after", "300ms"]);
    let db = setup(&sim);
    let out = ci_script(&db, &["halil", "pubg-60", "4242", "30s"]).code(0);
    assert!(out.stdout.contains("approved") && out.stdout.contains("pin: "), "{}\n{}", out.stdout, out.stderr);
    let pin = out.stdout.lines().find_map(|l| l.strip_prefix("pin: ")).unwrap();
    assert_eq!(db.query_i64(&format!("SELECT count(*) FROM orders WHERE pin_code = '{pin}' AND status = 'approved'")), 1);

    // Manual routing never turns final by itself: the wait times out (exit 9).
    let out = ci_script(&db, &["halil", "jawaker", "4242", "1s"]).code(9);
    assert!(out.stderr.contains("not final after 1s"), "{}", out.stderr);

    // orderctl's own failures pass through: an unknown package is not found (3).
    let out = ci_script(&db, &["halil", "no-such-package", "4242"]).code(3);
    assert!(out.stderr.contains("create failed"), "{}", out.stderr);
}

#[test]
fn ci_script_reports_a_cancelled_order_as_rejected_and_refunded() {
    let sim = Sim::start(&["--complete-after", "200ms", "--cancel-share", "1"]);
    let db = setup(&sim);
    let out = ci_script(&db, &["halil", "freefire-100", "777", "30s"]).code(10);
    assert!(out.stdout.contains("rejected") && out.stdout.contains("refunded 2.00"), "{}\n{}", out.stdout, out.stderr);
}
