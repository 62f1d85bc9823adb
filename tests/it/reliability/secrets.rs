//! Secrets never leak: the whole command surface, with -vv and with RUST_LOG=trace, including
//! failures, never prints a provider password, an API token or the database password (raw or
//! URL-encoded), nor a webhook secret, and none is written into an order's history, a webhook
//! delivery or a request a shop receives.

use super::*;
use serde_json::json;

const ZNET_PASSWORD: &str = "Zn3tPassw0rd!x";
const XSTOR_TOKEN: &str = "xst0r-T0ken-9q";
const BAD_ZNET_PASSWORD: &str = "Zn3tWr0ngPass!y";
const BAD_XSTOR_TOKEN: &str = "xst0r-Wr0ng-7z";
const DB_PASSWORD: &str = "S3cretDbPass";
const WEBHOOK_SECRET: &str = "whsec-N0tPr1nted-5k";
/// The provider password of the tenant orders are forwarded to.
const WHOLESALE_PASSWORD: &str = "Wh0lesa1ePass!w";

fn setup_with_secrets(sim: &Sim, receiver_url: &str) -> serde_json::Value {
    let mut s = standard_setup(&sim.base_url);
    let t = &mut s["tenants"][0];
    t["providers"] = json!([
        {"name": "znet-main", "kind": "znet", "base_url": sim.base_url, "credentials": {"kod": "bayi1", "sifre": ZNET_PASSWORD}},
        {"name": "xstor", "kind": "xstor", "base_url": sim.base_url, "credentials": {"api_token": XSTOR_TOKEN}},
        {"name": "znet-bad", "kind": "znet", "base_url": sim.base_url, "credentials": {"kod": "bayi1", "sifre": BAD_ZNET_PASSWORD}},
        {"name": "xstor-bad", "kind": "xstor", "base_url": sim.base_url, "credentials": {"api_token": BAD_XSTOR_TOKEN}}
    ]);
    t["packages"][3]["mappings"] = json!({"znet-bad": {"oyun": "7001", "kupur": "60"}, "xstor-bad": {"product_id": "501"}});
    t["webhooks"] = json!([{"url": receiver_url, "secret": WEBHOOK_SECRET, "allow_private_network": true}]);
    t["packages"].as_array_mut().unwrap().push(json!({"name": "pubg-60-fwd", "product": "PUBG Mobile", "price": "1.10",
        "routing": {"mode": "auto", "provider_type": "internal",
                    "upstream": {"tenant": "wholesale", "package": "pubg-60-w", "account": "alsham-account"}}}));
    s["tenants"].as_array_mut().unwrap().push(json!({
        "name": "wholesale",
        "users": [{"name": "alsham-account", "balance": "100.00"}],
        "providers": [{"name": "znet-wholesale", "kind": "znet", "base_url": sim.base_url,
                       "credentials": {"kod": "wholesale", "sifre": WHOLESALE_PASSWORD},
                       "schedule": {"first_check": "100ms", "backoff_base": "100ms", "backoff_max": "200ms"}}],
        "packages": [{"name": "pubg-60-w", "product": "PUBG Mobile", "price": "0.90",
                      "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-wholesale"},
                      "mappings": {"znet-wholesale": {"oyun": "7001", "kupur": "60"}}}]
    }));
    s
}

/// Every form a secret could take in output.
fn forms(secret: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut v = vec![secret.to_string(), encoded.clone(), encoded.replace("%21", "!")];
    v.dedup();
    v
}

/// -vv, or RUST_LOG alone (-v overrides RUST_LOG): then every crate logs, HTTP and Postgres too.
fn loud(cmd: Cmd, rust_log: Option<&str>) -> Cmd {
    match rust_log {
        Some(l) => cmd.env("RUST_LOG", l),
        None => cmd.arg("-vv"),
    }
}

#[test]
fn no_command_prints_a_secret_even_verbose_and_failing() {
    let sim = Sim::start(&[
        "--complete-after",
        "300ms",
        "--znet-login",
        &format!("bayi1:{ZNET_PASSWORD}"),
        "--xstor-token",
        XSTOR_TOKEN,
        "--znet-login",
        &format!("wholesale:{WHOLESALE_PASSWORD}"),
    ]);
    let db = TestDb::new();
    // Trust authentication ignores the password, so every command runs with one in its URL.
    let mut url = url::Url::parse(&db.url).unwrap();
    url.set_password(Some(DB_PASSWORD)).unwrap();
    let url = url.to_string();
    // A receiver that refuses every other request: deliveries are retried and their errors stored.
    let receiver = crate::webhooks::Receiver::start(|_, nth| (if nth % 2 == 1 { 500 } else { 200 }, Duration::ZERO));
    let setup = setup_with_secrets(&sim, &receiver.url).to_string();
    let daemon_log = DaemonLog::new();
    let mut transcript: Vec<(String, String)> = Vec::new();

    for (round, rust_log) in [(0, None), (1, Some("trace,orderctl=trace"))] {
        let run = |transcript: &mut Vec<(String, String)>, args: &[&str], stdin: Option<&str>| -> Output {
            let mut cmd = loud(Cmd::new().env("DATABASE_URL", &url), rust_log).args(args);
            if let Some(s) = stdin {
                cmd = cmd.stdin(s);
            }
            let out = cmd.run();
            transcript.push((format!("{rust_log:?} {args:?} (exit {})", out.code), format!("{}\n{}", out.stdout, out.stderr)));
            out
        };
        let t = &mut transcript;
        run(t, &["migrate"], None);
        run(t, &["migrate", "--dry-run"], None);
        run(t, &["apply", "--dry-run", "-f", "-"], Some(&setup));
        run(t, &["apply", "-f", "-"], Some(&setup));
        // The plan (secret changes masked), export (secrets as {"stored": true}) and its re-apply.
        run(t, &["-o", "json", "apply", "--dry-run", "--prune", "-f", "-"], Some(&setup.replace(ZNET_PASSWORD, "changed-pw")));
        let exported = run(t, &["export"], None);
        assert_eq!(exported.code, 0, "{}", exported.stderr);
        assert_eq!(run(t, &["apply", "--prune", "-f", "-"], Some(&exported.stdout)).code, 0, "{:?}", t.last());
        for list in [&["tenant", "list"][..], &["user", "list"], &["provider", "list"], &["package", "list"]] {
            run(t, &[&["--tenant", "alsham"], list].concat(), None);
            run(t, &[&["--tenant", "alsham", "-o", "json"], list].concat(), None);
        }
        assert_eq!(run(t, &["--tenant", "alsham", "provider", "check", "znet-main"], None).code, 0, "{:?}", t.last());
        assert_eq!(run(t, &["--tenant", "alsham", "provider", "check", "xstor"], None).code, 0, "{:?}", t.last());
        assert_eq!(run(t, &["--tenant", "alsham", "provider", "check", "znet-bad"], None).code, 7, "{:?}", t.last());
        assert_eq!(run(t, &["--tenant", "alsham", "provider", "check", "xstor-bad"], None).code, 7, "{:?}", t.last());
        run(t, &["routing", "check"], None);
        let create = |t: &mut Vec<(String, String)>, package: &str, extra: &[&str]| -> String {
            let out = run(
                t,
                &[
                    &["--tenant", "alsham", "-o", "json", "create", "--user", "halil", "--package", package, "--player", "42"],
                    extra,
                ]
                .concat(),
                None,
            );
            assert_eq!(out.code, 0, "{}", out.stderr);
            out.json()["number"].to_string()
        };
        let znet = create(t, "pubg-60", &["--first-check", "0s"]);
        let xstor = create(t, "freefire-100", &["--first-check", "0s"]);
        let later = create(t, "pubg-60", &["--no-dispatch"]);
        run(t, &["dispatch", &later, "--dry-run"], None);
        run(t, &["-o", "json", "dispatch", &later, "--dry-run"], None);
        run(t, &["dispatch", &later, "--first-check", "0s"], None);
        let manual = create(t, "jawaker", &[]);
        run(t, &["--request-timeout", "500ms", "dispatch", &manual, "--provider", "znet-bad"], None);
        let manual2 = create(t, "jawaker", &[]);
        run(t, &["dispatch", &manual2, "--provider", "xstor-bad"], None);
        for n in [&znet, &xstor] {
            run(t, &["poll", n], None);
            let out = run(
                t,
                &[
                    "poll",
                    n,
                    "--wait",
                    "--timeout",
                    "10s",
                    "--first-check",
                    "0s",
                    "--backoff-base",
                    "100ms",
                    "--backoff-max",
                    "200ms",
                ],
                None,
            );
            assert_eq!(out.code, 0, "poll --wait checks at once, then by its own schedule: {}", out.stderr);
            run(t, &["inspect", n], None);
            run(t, &["-o", "json", "inspect", n], None);
        }
        run(t, &["--request-timeout", "500ms", "poll", &manual], None);
        run(t, &["list"], None);
        run(t, &["-o", "json", "list"], None);
        run(t, &["list", "--stuck"], None);
        run(t, &["sweep", "--first-check", "0s"], None);
        run(t, &["-o", "json", "sweep"], None);
        let by_hand = create(t, "jawaker", &[]);
        run(t, &["approve", &by_hand, "--pin", "PIN-1"], None);
        let refused = create(t, "jawaker", &[]);
        run(t, &["reject", &refused, "--reason", "no such player"], None);
        run(t, &["stats"], None);
        run(t, &["doctor", "--providers"], None);
        for args in [
            &["webhook", "list"][..],
            &["webhook", "list", "--failed"],
            &["webhook", "retry", "--failed"],
            &["webhook", "test", "alsham"],
        ] {
            run(t, args, None);
            run(t, &[&["-o", "json"], args].concat(), None);
        }
        run(t, &["webhook", "retry", "1"], None);
        run(t, &["webhook", "test", "alsham", "--webhook-timeout", "1ms"], None);
        // Failures that name the database: wrong port, in URL and key=value form, flag and env.
        run(t, &["--database-url", &format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:1/x"), "list"], None);
        run(t, &["--database-url", &format!("host=127.0.0.1 port=1 user=postgres password={DB_PASSWORD}"), "list"], None);
        run(
            t,
            &["--database-url", &format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:5432/no_such_db_{round}"), "inspect", "1"],
            None,
        );
        run(t, &["--database-url", &format!("postgres://postgres:{DB_PASSWORD}@[::1"), "list"], None);

        // A daemon without its database retries until stopped, saying so.
        let d = loud(Cmd::new(), rust_log)
            .args(["--database-url", &format!("postgres://postgres:{DB_PASSWORD}@127.0.0.1:1/x"), "daemon"])
            .spawn_logged(daemon_log.path());
        wait_until("the daemon reported the database unavailable", Duration::from_secs(20), || {
            daemon_log.text().matches("database unavailable").count() > round
        });
        assert_eq!(d.terminate(), 0);

        // The daemon, briefly, with everything it logs.
        let d = loud(Cmd::new().env("DATABASE_URL", &url), rust_log)
            .args(["daemon", "--idle-poll", "50ms"])
            .args(FAST_POLICY)
            .args(SHORT_TIMEOUTS)
            .spawn_logged(daemon_log.path());
        create(t, "pubg-60", &["--no-dispatch"]);
        create(t, "freefire-100", &["--no-dispatch"]);
        // Forwarded to the wholesaler, whose own provider (and credentials) deliver it.
        let forwarded = create(t, "pubg-60-fwd", &[]);
        wait_until("the daemon finished its orders", Duration::from_secs(30), || {
            db.query_i64("SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id WHERE status = 'pending' AND p.name <> 'jawaker'") == 0
        });
        assert_eq!(d.terminate(), 0);
        let upstream = db.query_i64(&format!(
            "SELECT u.number FROM orders u JOIN orders d ON d.forwarded_to = u.id WHERE d.number = {forwarded}"
        ));
        run(t, &["-o", "json", "inspect", &forwarded], None);
        run(t, &["--tenant", "wholesale", "inspect", &upstream.to_string()], None);
        run(t, &["--tenant", "wholesale", "-o", "json", "provider", "list"], None);
    }
    transcript.push(("daemon".into(), daemon_log.text()));
    // The history operators read is output too.
    let history: Vec<String> = db
        .client()
        .query(
            "SELECT message FROM order_events UNION ALL SELECT coalesce(last_message, '') FROM orders
             UNION ALL SELECT coalesce(message, '') FROM placements UNION ALL SELECT coalesce(summary::text, '') FROM periodic_runs",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    transcript.push(("database history".into(), history.join("\n")));

    let total: usize = transcript.iter().map(|(_, text)| text.len()).sum();
    assert!(total > 50_000, "verbose output was captured ({total} bytes)");
    assert!(transcript.iter().any(|(_, text)| text.contains("DEBUG")), "-vv logged at debug level");
    assert!(
        transcript.iter().any(|(what, text)| what.starts_with("Some(\"trace") && text.contains("DEBUG")),
        "RUST_LOG=trace logged (orderctl's own debug lines)"
    );
    assert!(db.query_i64("SELECT count(*) FROM webhook_deliveries") > 0, "webhooks were enqueued");
    assert!(!receiver.requests().is_empty(), "and sent");
    // What the shop receives carries a signature, never the secret.
    for r in receiver.requests() {
        transcript.push(("webhook request".into(), format!("{}\n{}", r.signature, r.body)));
    }
    let stored: Vec<String> = db
        .client()
        .query("SELECT body || coalesce(last_error, '') FROM webhook_deliveries", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    transcript.push(("webhook deliveries".into(), stored.join("\n")));
    for secret in
        [ZNET_PASSWORD, XSTOR_TOKEN, BAD_ZNET_PASSWORD, BAD_XSTOR_TOKEN, DB_PASSWORD, WEBHOOK_SECRET, WHOLESALE_PASSWORD]
    {
        for form in forms(secret) {
            for (what, text) in &transcript {
                assert!(!text.contains(&form), "{what} leaked {form:?}:\n{text}");
            }
        }
    }
}
