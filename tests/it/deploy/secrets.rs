//! Provider credentials as references to an environment variable or a file: the database (a
//! pg_dump of it) holds no secret value, the daemon places orders with them, and a reference
//! that does not resolve is a clear error naming it.

use super::*;
use crate::reliability::DaemonLog;
use std::time::Duration;

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
    let dump = std::process::Command::new("pg_dump").arg(&db.url).output().expect("pg_dump (postgresql-client)");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(VAR) && dump.contains("znet-sifre"), "the references are stored");
    assert!(!dump.contains(SIFRE) && !dump.contains(TOKEN), "no secret value in a dump of the database");

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
