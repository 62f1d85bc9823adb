//! Provider credentials as references to an environment variable or a file: the database (a
//! pg_dump of it) holds no secret value, the daemon places orders with them, and a reference
//! that does not resolve is a clear error naming it.

use super::*;
use crate::reliability::DaemonLog;
use std::time::Duration;

/// A `pg_dump` of the database holds each of `references` and none of `secrets`.
fn assert_dump_holds(db: &TestDb, references: &[&str], secrets: &[&str]) {
    let dump = std::process::Command::new("pg_dump").arg(&db.url).output().expect("pg_dump (postgresql-client)");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    for r in references {
        assert!(dump.contains(r), "the reference to {r} is stored");
    }
    for s in secrets {
        assert!(!dump.contains(s), "no secret value in a dump of the database");
    }
}

const SIFRE: &str = "sifre-from-a-file-81723";
const TOKEN: &str = "token-from-the-env-55120";
const VAR: &str = "ORDERCTL_TEST_XSTOR_TOKEN";

#[test]
fn credentials_by_reference_stay_out_of_the_database_and_place_orders() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("znet-sifre");
    std::fs::write(&file, format!("{SIFRE}\n")).unwrap();
    // The simulator accepts only the real credentials: an order placed proves they resolved.
    let sim = Sim::start(&["--complete-after", "200ms", "--znet-login", &format!("bayi1:{SIFRE}"), "--xstor-token", TOKEN]);
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][0]["credentials"] =
        serde_json::json!({"kod": "bayi1", "sifre": {"file": file.to_str().unwrap()}});
    setup["tenants"][0]["providers"][1]["credentials"] = serde_json::json!({"api_token": {"env": VAR}});
    let db = TestDb::new();

    // Not resolvable here: refused, named, nothing written.
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(setup.to_string()).run().code(4);
    assert!(out.stderr.contains(&format!("environment variable {VAR} is not set")), "{}", out.stderr);
    assert_eq!(db.query_i64("SELECT count(*) FROM providers"), 0);
    let out = db.cmd().env(VAR, TOKEN).args(["apply", "-f", "-"]).stdin(setup.to_string()).run().ok();
    assert!(out.stderr.contains("provider znet-main: credentials.kod written as plain value"), "{}", out.stderr);
    assert!(!out.stderr.contains("provider xstor:"), "a reference draws no warning: {}", out.stderr);

    // The database holds where the secrets are, never what they are.
    assert_dump_holds(&db, &[VAR, "znet-sifre"], &[SIFRE, TOKEN]);

    // Where the variable is missing, the provider is flagged; the other still resolves.
    let list = db.cmd().args(["provider", "list", "--output", "json"]).run().ok().json();
    let state = |name: &str| list.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["credentials"].clone();
    assert_eq!(state("znet-main"), "plain values", "kod is a plain value; sifre resolves");
    assert_eq!(state("xstor"), format!("unresolved: credentials.api_token: environment variable {VAR} is not set"));
    let doctor = db.cmd().args(["doctor"]).run().code(8);
    assert!(doctor.stdout.contains(&format!("environment variable {VAR} is not set on this host")), "{}", doctor.stdout);

    // The daemon places orders on both providers with the resolved values.
    let log = DaemonLog::new();
    let d = Cmd::new()
        .env("DATABASE_URL", &db.url)
        .env(VAR, TOKEN)
        .args(["daemon", "--idle-poll", "50ms", "--first-check", "0s", "--backoff-base", "100ms"])
        .spawn_logged(log.path());
    insert_orders(&db, "pubg-60", 10);
    insert_orders(&db, "freefire-100", 10);
    wait_until("20 orders final with referenced credentials", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_eq!(d.terminate(), 0);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 20, "{}", log.text());
    let stats = sim.stats();
    assert_eq!(stats["orders_placed"], 20);
    assert!(!log.text().contains(SIFRE) && !log.text().contains(TOKEN));
}

const WHSEC: &str = "whsec-from-a-file-30517";
const HOOK_VAR: &str = "ORDERCTL_TEST_HOOK_SECRET";
const HOOK_SECRET: &str = "whsec-from-the-env-66204";

/// Webhook signing secrets are credentials too: references are stored, never their values; a
/// daemon signs with the resolved value; an endpoint whose secret does not resolve on the
/// daemon's host is flagged and not sent to, while the tenant's other endpoint is delivered.
#[test]
fn webhook_secrets_by_reference_stay_out_of_the_database_and_one_unresolved_endpoint_stalls_no_other() {
    use crate::webhooks::{setup_with_webhook, Receiver};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop-whsec");
    std::fs::write(&file, format!("{WHSEC}\n")).unwrap();
    let sim = Sim::start(&["--complete-after", "200ms"]);
    let (signed, unsigned) = (Receiver::start(|_, _| (200, Duration::ZERO)), Receiver::start(|_, _| (200, Duration::ZERO)));
    let mut setup = setup_with_webhook(&sim, &signed.url, None);
    setup["tenants"][0]["webhooks"][0]["secret"] = serde_json::json!({"file": file.to_str().unwrap()});
    setup["tenants"][0]["webhooks"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"url": unsigned.url, "secret": {"env": HOOK_VAR}, "allow_private_network": true}));
    let db = TestDb::new();

    // Not resolvable here: refused, named, nothing written.
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(setup.to_string()).run().code(4);
    assert!(out.stderr.contains(&format!("secret: environment variable {HOOK_VAR} is not set")), "{}", out.stderr);
    assert_eq!(db.query_i64("SELECT count(*) FROM webhooks"), 0);
    let out = db.cmd().env(HOOK_VAR, HOOK_SECRET).args(["apply", "-f", "-"]).stdin(setup.to_string()).run().ok();
    assert!(!out.stderr.contains("secret written as a plain value"), "references draw no warning: {}", out.stderr);

    // The database holds where the secrets are, never what they are.
    assert_dump_holds(&db, &[HOOK_VAR, "shop-whsec"], &[WHSEC, HOOK_SECRET]);

    // Where the variable is missing: that endpoint is flagged, by name of the variable.
    let list = db.cmd().args(["webhook", "endpoints", "--output", "json"]).run().ok().json();
    let state = |url: &str| list.as_array().unwrap().iter().find(|e| e["url"] == url).unwrap()["secret"].clone();
    assert_eq!(state(&signed.url), "reference");
    assert_eq!(state(&unsigned.url), format!("unresolved: secret: environment variable {HOOK_VAR} is not set"));
    let doctor = db.cmd().args(["doctor"]).run();
    assert!(doctor.stdout.contains(&format!("environment variable {HOOK_VAR} is not set on this host")), "{}", doctor.stdout);

    // A daemon without the variable: the file-referenced endpoint gets every event, signed with
    // the file's value; the other gets nothing, and its deliveries say why.
    let log = DaemonLog::new();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let d = crate::reliability::daemon(&db.url, log.path(), &["--metrics-listen", &addr]);
    insert_orders(&db, "freefire-100", 5);
    wait_until("5 orders final", Duration::from_secs(60), || open_orders(&db) == 0);
    wait_until("5 events delivered to the endpoint whose secret resolves", Duration::from_secs(30), || {
        signed.delivered().len() == 5
    });
    let why = format!("not sent: secret: environment variable {HOOK_VAR} is not set on this host");
    wait_until("the other endpoint's deliveries say why they wait", Duration::from_secs(30), || {
        db.query_i64(&format!(
            "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
              WHERE w.url = '{}' AND d.state = 'pending' AND d.attempts > 0 AND d.last_error LIKE '{why}%'",
            unsigned.url
        )) == 5
    });
    // And the metrics say how many endpoints of the tenant cannot be signed for here.
    let unresolved_gauge = "orderctl_webhook_secrets_unresolved{tenant=\"alsham\"} 1\n";
    wait_until("the metrics flag the endpoint", Duration::from_secs(20), || {
        crate::webhooks::http_get(&addr, "/metrics").is_some_and(|(_, body)| body.contains(unresolved_gauge))
    });
    assert_eq!(d.terminate(), 0);
    assert!(unsigned.requests().is_empty(), "nothing unsigned is ever sent");
    for r in signed.delivered().values() {
        assert!(orderctl::domain::signature::verify_legacy(WHSEC, &r.signature, &r.body), "signed with the file's value");
    }
    let text = log.text();
    assert!(
        text.contains(&format!("secret: environment variable {HOOK_VAR} is not set on this host")),
        "the daemon's log names the variable:\n{text}"
    );
    assert!(!text.contains(WHSEC) && !text.contains(HOOK_SECRET));
}

/// SIGHUP (`systemctl reload`) resolves references again: a rotated credential file is used from
/// the next placement on, and not before (seen at the simulator, which accepts only the new token).
#[test]
fn sighup_resolves_credential_references_again() {
    const OLD: &str = "token-before-rotation-1181";
    const NEW: &str = "token-after-rotation-9930";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("xstor-token");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let sim = Sim::start(&["--complete-after", "100ms", "--xstor-token", NEW]);
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][1]["credentials"] = serde_json::json!({"api_token": {"file": file.to_str().unwrap()}});
    let db = TestDb::new();
    db.apply(&setup);
    let log = DaemonLog::new();
    // -v: a reload is logged at info level.
    let d = crate::reliability::daemon(&db.url, log.path(), &["-v"]);
    let refused = || db.query_i64("SELECT count(*) FROM orders WHERE attention = 'placement_rejected'");
    let approved = || db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'");

    // Started with the old token: refused by the provider (the order waits for an operator).
    insert_orders(&db, "freefire-100", 1);
    wait_until("the first order refused", Duration::from_secs(30), || refused() == 1);
    // The file changes; without a reload the daemon keeps what it resolved, even after its
    // providers are read again (every 5 s).
    std::fs::write(&file, format!("{NEW}\n")).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    insert_orders(&db, "freefire-100", 1);
    wait_until("the second order refused", Duration::from_secs(30), || refused() == 2);
    // SIGHUP: resolved again, logged without a value; the next placement uses the new token.
    // SAFETY: kill(2) on the pid of the daemon this test started.
    unsafe {
        libc::kill(d.pid() as i32, libc::SIGHUP);
    }
    wait_until("the reload logged", Duration::from_secs(10), || log.text().contains("reload (SIGHUP)"));
    insert_orders(&db, "freefire-100", 1);
    wait_until("the third order approved, placed with the rotated token", Duration::from_secs(30), || approved() == 1);
    assert_eq!(refused(), 2);
    assert_eq!(sim.stats()["orders_placed"], 1);
    assert_eq!(d.terminate(), 0, "SIGHUP does not end the daemon");
    let text = log.text();
    assert!(text.contains("references of 2 provider(s)"), "{text}");
    assert!(!text.contains(OLD) && !text.contains(NEW), "no value in the log");
}
