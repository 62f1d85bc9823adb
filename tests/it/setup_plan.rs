//! Issue 25: a setup file that means what it says. Removals are part of the plan (named without
//! `--prune`, retired with it, revived when named again), the plan is shown before anything
//! changes, `export` prints the setup back as a file that applies as no change, and two applies
//! at once end in one file's state, never a mix.

use crate::support::*;
use crate::webhooks::Receiver;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The apply lock's key (`db::setup`), to hold it from a test.
const APPLY_LOCK_KEY: i64 = 0x6f72_6465_7261_7070;
const HOOK_SECRET: &str = "whsec_plan-test-secret";

fn apply(db: &TestDb, doc: &Value, extra: &[&str]) -> Output {
    db.cmd().args(["apply", "-f", "-"]).args(extra).stdin(doc.to_string()).run()
}

fn apply_json(db: &TestDb, doc: &Value, extra: &[&str]) -> Value {
    db.cmd().args(["--output", "json", "apply", "-f", "-"]).args(extra).stdin(doc.to_string()).run().ok().json()
}

fn export(db: &TestDb) -> Value {
    db.cmd().args(["export"]).run().ok().json()
}

/// The standard setup plus what the scenario removes later: provider znet-badpass (with its
/// package pubg-bad) and a webhook.
fn full(sim: &Sim, hook: &str) -> Value {
    let mut s = standard_setup(&sim.base_url);
    let t = &mut s["tenants"][0];
    t["providers"].as_array_mut().unwrap().push(json!({"name": "znet-badpass", "kind": "znet", "base_url": sim.base_url,
        "credentials": {"kod": "bayi2", "sifre": "s3cret-bad"}, "reconcile_for": SIM_RECONCILE_FOR}));
    t["packages"].as_array_mut().unwrap().push(json!({"name": "pubg-bad", "product": "PUBG Mobile", "price": "1.00",
        "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-badpass"},
        "mappings": {"znet-badpass": {"oyun": "7001", "kupur": "60"}}}));
    t["webhooks"] = json!([{"url": hook, "secret": HOOK_SECRET, "allow_private_network": true}]);
    s
}

/// `full` without package jawaker, provider znet-badpass (and pubg-bad, routed to it) and the webhook.
fn reduced(full: &Value) -> Value {
    let mut s = full.clone();
    let t = &mut s["tenants"][0];
    t["packages"].as_array_mut().unwrap().retain(|p| p["name"] != "jawaker" && p["name"] != "pubg-bad");
    t["providers"].as_array_mut().unwrap().retain(|p| p["name"] != "znet-badpass");
    t["webhooks"] = json!([]);
    s
}

fn retired(db: &TestDb, table: &str, key: &str, name: &str) -> bool {
    db.client().query_one(&format!("SELECT retired_at IS NOT NULL FROM {table} WHERE {key} = $1"), &[&name]).unwrap().get(0)
}

fn order_number(o: &Value) -> String {
    o["number"].to_string()
}

#[test]
fn removed_objects_are_named_then_retired_with_prune_and_revived_when_named_again() {
    let sim = Sim::start(&["--complete-after", "2s"]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    let full = full(&sim, &receiver.url);
    apply(&db, &full, &[]).ok();
    // An open order at znet-badpass, and a manual order whose approval queues a delivery
    // (no daemon runs, so it stays pending).
    let open = crate::orders::create(&db, "pubg-bad", &["--first-check", "0s"]);
    assert_eq!(open["external_status"], "sent", "{open}");
    let unsent = crate::orders::create(&db, "pubg-bad", &["--no-dispatch"]);
    let approved = crate::orders::create(&db, "jawaker", &[]);
    let later = crate::orders::create(&db, "jawaker", &[]);
    db.cmd().args(["approve", &order_number(&approved), "--pin", "P-1"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"), 1);
    let placements = sim.stats()["placement_calls"].as_u64().unwrap();

    // Without --prune: nothing changes, everything removed is named, and no claim of a match.
    let reduced = reduced(&full);
    let out = apply(&db, &reduced, &[]).ok();
    assert!(!out.stdout.contains("already matches"), "{}", out.stdout);
    for name in ["package jawaker", "package pubg-bad", "provider znet-badpass", &format!("webhook {}", receiver.url)] {
        assert!(out.stdout.contains(name), "{name} is named: {}", out.stdout);
    }
    assert!(out.stdout.contains("4 object(s) not in the file") && out.stdout.contains("run with --prune to retire them"));
    assert!(!retired(&db, "packages", "name", "jawaker") && !retired(&db, "providers", "name", "znet-badpass"));
    crate::orders::create(&db, "jawaker", &[]);

    // The plan, in JSON, before anything is written: four retirements, secrets nowhere.
    let plan = apply_json(&db, &reduced, &["--prune", "--dry-run"]);
    let retire: Vec<String> =
        plan["plan"]["steps"].as_array().unwrap().iter().map(|s| format!("{} {}", s["action"], s["name"])).collect();
    assert_eq!(retire.len(), 4, "{plan:#}");
    assert!(retire.iter().all(|s| s.starts_with("\"retire\"")), "{retire:?}");
    assert!(!retired(&db, "packages", "name", "jawaker"), "a dry run writes nothing");
    assert!(!plan.to_string().contains("s3cret") && !plan.to_string().contains(HOOK_SECRET));

    // With --prune they are retired.
    let done = apply_json(&db, &reduced, &["--prune"]);
    assert_eq!((done["changes"].as_u64(), done["cancelled_deliveries"].as_u64()), (Some(4), Some(1)), "{done:#}");
    let refused =
        db.cmd().args(["--tenant", "alsham", "create", "--user", "halil", "--package", "jawaker", "--player", "1"]).run().code(3);
    assert!(refused.stderr.contains("package 'jawaker' was retired"), "{}", refused.stderr);
    // A retired package routed to its retired provider is history, not a routing problem.
    db.cmd().args(["routing", "check"]).run().ok();
    // The webhook: its pending delivery cancelled, nothing new for a later approval.
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries WHERE state = 'cancelled'"), 1);
    let list = db.cmd().args(["--output", "json", "webhook", "list"]).run().ok().json();
    assert!(list.to_string().contains("\"cancelled\""), "webhook list shows it cancelled: {list}");
    db.cmd().args(["approve", &order_number(&later), "--pin", "P-2"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM webhook_deliveries"), 1, "a retired webhook gets nothing new");
    // The provider's open order is still checked to the end, with no new placement.
    wait_until("the open order at the retired provider finishes", Duration::from_secs(60), || {
        db.cmd().args(["sweep", "--first-check", "0s", "--backoff-base", "200ms", "--backoff-max", "500ms"]).run().ok();
        db.query_i64(&format!("SELECT count(*) FROM orders WHERE number = {} AND status = 'approved'", open["number"])) == 1
    });
    // An order of the retired package that was never sent is not placed with it either.
    let stopped = db.cmd().args(["dispatch", &order_number(&unsent)]).run();
    assert_ne!(stopped.code, 0, "{stopped:?}");
    assert!(format!("{}{}", stopped.stdout, stopped.stderr).contains("retired"), "{stopped:?}");
    assert_eq!(sim.stats()["placement_calls"].as_u64().unwrap(), placements, "no new placement");
    // History keeps naming what was retired.
    let seen = crate::orders::inspect(&db, &order_number(&open)).to_string();
    assert!(seen.contains("pubg-bad") && seen.contains("znet-badpass"), "{seen}");
    assert!(crate::orders::inspect(&db, &order_number(&approved)).to_string().contains("jawaker"));
    // Applying the reduced file again: nothing to do and nothing left out.
    let again = apply(&db, &reduced, &["--prune"]).ok();
    assert!(again.stdout.contains("no changes: the database already matches the file"), "{}", again.stdout);

    // Named again: revived.
    let back = apply_json(&db, &full, &[]);
    let revived: Vec<&str> = back["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "revive")
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(revived.len(), 4, "{back:#}");
    assert!(!retired(&db, "webhooks", "url", &receiver.url) && !retired(&db, "providers", "name", "znet-badpass"));
    crate::orders::create(&db, "jawaker", &[]);
    assert_money_conserved(&db);
}

#[test]
fn a_plan_that_retires_a_provider_a_kept_package_routes_to_is_refused() {
    let sim = Sim::start(&[]);
    let receiver = Receiver::start(|_, _| (200, Duration::ZERO));
    let db = TestDb::new();
    let full = full(&sim, &receiver.url);
    apply(&db, &full, &[]).ok();
    let mut file = full.clone();
    file["tenants"][0]["providers"].as_array_mut().unwrap().retain(|p| p["name"] != "znet-badpass");
    let before = crate::setup::dump(&db);
    let out = apply(&db, &file, &["--prune"]).code(5);
    assert!(
        out.stderr.contains("tenant alsham, package pubg-bad: routing.primary names provider znet-badpass"),
        "{}",
        out.stderr
    );
    assert_eq!(crate::setup::dump(&db), before, "nothing was written");
    // Without --prune the same file is fine: the provider stays, named.
    let out = apply(&db, &file, &[]).ok();
    assert!(out.stdout.contains("1 object(s) not in the file: provider znet-badpass"), "{}", out.stdout);
}

#[test]
fn export_writes_no_secret_and_no_code_and_applies_as_no_change() {
    let sim = Sim::start(&[]);
    let db = TestDb::new();
    let mut s = standard_setup(&sim.base_url);
    s["tenants"][0]["providers"][1]["credentials"] = json!({"api_token": {"env": "ORDERCTL_TEST_XSTOR_TOKEN"}});
    s["tenants"][0]["webhooks"] = json!([{"url": "https://shop.example/hooks", "secret": HOOK_SECRET, "retry_horizon": "6h",
        "events": ["order.approved"]}]);
    db.cmd().env("ORDERCTL_TEST_XSTOR_TOKEN", "tok").args(["apply", "-f", "-"]).stdin(s.to_string()).run().ok();
    crate::orders::create(&db, "itunes-10", &[]);
    let exported = export(&db);
    let text = exported.to_string();
    for secret in ["s3cret-znet", HOOK_SECRET, "AAAA-1111", "BBBB-2222", "CCCC-3333"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let t = &exported["tenants"][0];
    assert_eq!(t["providers"][0]["credentials"]["sifre"], json!({"stored": true}));
    assert_eq!(t["providers"][1]["credentials"]["api_token"], json!({"env": "ORDERCTL_TEST_XSTOR_TOKEN"}));
    assert_eq!(t["code_groups"][0]["stock"], json!({"available": 2, "reserved": 0, "used": 1}), "{t:#}");
    assert_eq!(t["webhooks"][0]["secret"], json!({"stored": true}));
    let again = db
        .cmd()
        .env("ORDERCTL_TEST_XSTOR_TOKEN", "tok")
        .args(["--output", "json", "apply", "-f", "-", "--prune"])
        .stdin(exported.to_string())
        .run()
        .ok()
        .json();
    assert_eq!(again["changes"], 0, "{again:#}");
    assert_eq!(again["plan"]["not_in_file"], json!([]));
    // `{"stored": true}` for an object the database does not have is a problem in the file.
    let mut new = exported.clone();
    new["tenants"][0]["webhooks"][0]["url"] = json!("https://shop.example/other");
    let out = db.cmd().env("ORDERCTL_TEST_XSTOR_TOKEN", "tok").args(["apply", "-f", "-"]).stdin(new.to_string()).run().code(4);
    assert!(out.stderr.contains("secret is {\"stored\": true}, but the webhook is new"), "{}", out.stderr);
    // One tenant, or a clear not-found.
    db.cmd().args(["--tenant", "nobody", "export"]).run().code(3);
}

/// Each element given its identity: `key` set to `prefix` and its position.
fn named(elements: Vec<Value>, key: &str, prefix: &str) -> Vec<Value> {
    let name = |(i, mut e): (usize, Value)| {
        e[key] = json!(format!("{prefix}{i}"));
        e
    };
    elements.into_iter().enumerate().map(name).collect()
}

/// A generated setup: users, providers (plain or referenced credentials, optional schedule and
/// reconcile window), code groups, packages of every routing (mappings with delivers_pin) and
/// webhooks with their delivery fields.
fn generated_setup() -> impl Strategy<Value = Value> {
    let user = (0u32..100_000, 0u32..5_000, any::<bool>()).prop_map(|(b, o, mail)| {
        let mut u = json!({"balance": format!("{}.{:02}", b / 100, b % 100), "email": if mail { "x@example.com" } else { "" }});
        // Left out sometimes: the default (0) must read back as the same amount.
        if o % 2 == 0 {
            u["overdraft_limit"] = json!(format!("{}", o / 100));
        }
        u
    });
    let provider = (any::<bool>(), any::<bool>(), 1i64..64, prop::option::of(1u64..3600), any::<bool>(), any::<bool>()).prop_map(
        |(znet, referenced, max, reconcile, schedule, enabled)| {
            let credentials = match (znet, referenced) {
                (true, false) => json!({"kod": "k1", "sifre": "s3cret-gen"}),
                (true, true) => json!({"kod": "k1", "sifre": {"env": "ORDERCTL_TEST_GEN_SECRET"}}),
                (false, false) => json!({"api_token": "tok-gen-secret"}),
                (false, true) => json!({"api_token": {"env": "ORDERCTL_TEST_GEN_SECRET"}}),
            };
            let mut p = json!({"kind": if znet { "znet" } else { "xstor" }, "base_url": "http://127.0.0.1:18080",
                               "credentials": credentials, "max_in_flight": max, "enabled": enabled});
            if let Some(s) = reconcile {
                p["reconcile_for"] = json!(format!("{s}s"));
            }
            if schedule {
                p["schedule"] = json!({"first_check": "5s", "backoff_max": "2m", "max_checks": 30});
            }
            p
        },
    );
    let webhook =
        (any::<bool>(), any::<bool>(), prop::option::of(1u64..72), 0usize..3).prop_map(|(http, enabled, horizon, events)| {
            let mut w = json!({"secret": "whsec_gen", "allow_private_network": true, "allow_http": http, "enabled": enabled});
            if let Some(h) = horizon {
                w["retry_horizon"] = json!(format!("{h}h"));
            }
            if events > 0 {
                w["events"] = json!(["order.approved", "order.rejected", "order.needs_action"][..events]);
            }
            w
        });
    (
        prop::collection::vec(user, 0..3),
        prop::collection::vec(provider, 1..3),
        prop::collection::vec(webhook, 0..3),
        0usize..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(users, providers, webhooks, packages, pin, forward)| {
            let users = named(users, "name", "u");
            let providers = named(providers, "name", "p");
            let webhooks = named(webhooks, "url", "http://127.0.0.1:9/hook");
            let p0 = &providers[0];
            let mut mapping =
                if p0["kind"] == "znet" { json!({"oyun": "7001", "kupur": "60"}) } else { json!({"product_id": "501"}) };
            if pin {
                mapping["delivers_pin"] = json!(true);
            }
            let all = [
                json!({"name": "ext", "product": "P", "price": "1.10",
                       "routing": {"mode": "auto", "provider_type": "external", "primary": "p0"}, "mappings": {"p0": mapping}}),
                json!({"name": "codes", "product": "C", "price": "10.00", "enabled": false,
                       "routing": {"mode": "manual", "provider_type": "codes", "code_group": "g"}}),
                json!({"name": "manual", "product": "P", "price": "0.00"}),
            ];
            let mut packages = all[..packages.min(3)].to_vec();
            let mut tenants = vec![];
            if forward {
                // Internal routing to a second tenant's package, paid by its user.
                packages.push(json!({"name": "fwd", "product": "F", "price": "1.15",
                    "routing": {"mode": "auto", "provider_type": "internal",
                                "upstream": {"tenant": "upstream", "package": "w", "account": "gen-account"}}}));
                tenants.push(json!({"name": "upstream", "users": [{"name": "gen-account", "balance": "50.00"}],
                                    "packages": [{"name": "w", "product": "W", "price": "1.00"}]}));
            }
            tenants.insert(
                0,
                json!({"name": "gen", "users": users, "providers": providers,
                                     "code_groups": [{"name": "g", "codes": ["G-1", "G-2"]}],
                                     "packages": packages, "webhooks": webhooks}),
            );
            json!({ "tenants": tenants })
        })
}

/// Every row `apply` writes, webhooks included, as sorted JSON lines.
fn setup_rows(db: &TestDb) -> String {
    let mut c = db.client();
    let sql = "SELECT coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text), '') FROM webhooks t";
    let hooks: String = c.query_one(sql, &[]).unwrap().get(0);
    format!("{}== webhooks\n{hooks}\n", crate::setup::dump(db))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn export_then_apply_reports_no_changes_for_generated_setups(setup in generated_setup()) {
        let db = TestDb::new();
        let cmd = || db.cmd().env("ORDERCTL_TEST_GEN_SECRET", "gen");
        cmd().args(["apply", "-f", "-"]).stdin(setup.to_string()).run().ok();
        let exported = export(&db);
        prop_assert!(!exported.to_string().contains("s3cret-gen") && !exported.to_string().contains("whsec_gen"));
        let before = setup_rows(&db);
        let again = cmd().args(["--output", "json", "apply", "-f", "-", "--prune"]).stdin(exported.to_string()).run().ok().json();
        prop_assert_eq!(&again["changes"], &json!(0), "{:#}\nexported: {:#}", again["plan"], exported);
        prop_assert_eq!(&again["plan"]["not_in_file"], &json!([]));
        // Written for real, not a row differs: a field export left out would have been reset.
        prop_assert_eq!(setup_rows(&db), before);
        // And applying the original again is no change either (the export lost nothing it holds).
        let original = cmd().args(["--output", "json", "apply", "-f", "-", "--dry-run"]).stdin(setup.to_string()).run().ok().json();
        prop_assert_eq!(&original["changes"], &json!(0), "{:#}", original["plan"]);
    }
}

/// The prices and live packages of tenant alsham, as export shows them.
fn state(db: &TestDb) -> Vec<(String, String)> {
    let e = export(db);
    let mut out: Vec<(String, String)> = e["tenants"][0]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["price"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

#[test]
fn two_concurrent_applies_end_in_one_of_the_two_states_and_the_second_names_what_the_first_changed() {
    let db = TestDb::new();
    let base = standard_setup("http://127.0.0.1:18080");
    apply(&db, &base, &[]).ok();
    // A: every price up, jawaker removed. B: every price down, itunes-10 removed.
    let variant = |price: &str, drop: &str| {
        let mut s = base.clone();
        let packages = s["tenants"][0]["packages"].as_array_mut().unwrap();
        packages.retain(|p| p["name"] != drop);
        for p in packages {
            p["price"] = json!(price);
        }
        s
    };
    let (a, b) = (variant("5.00", "jawaker"), variant("0.50", "itunes-10"));
    let expected_a = {
        let other = TestDb::new();
        apply(&other, &base, &[]).ok();
        apply(&other, &a, &["--prune"]).ok();
        state(&other)
    };
    let expected_b = {
        let other = TestDb::new();
        apply(&other, &base, &[]).ok();
        apply(&other, &b, &["--prune"]).ok();
        state(&other)
    };
    // Hold the lock so both wait, then let them go.
    let mut holder = db.client();
    holder.execute("SELECT pg_advisory_lock($1)", &[&APPLY_LOCK_KEY]).unwrap();
    let outs: Vec<std::thread::JoinHandle<Value>> = [a, b]
        .into_iter()
        .map(|f| {
            let cmd = db.cmd().args(["--output", "json", "apply", "-f", "-", "--prune"]).stdin(f.to_string());
            std::thread::spawn(move || cmd.run().ok().json())
        })
        .collect();
    wait_until("both applies wait for the lock", Duration::from_secs(30), || {
        db.query_i64("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 2
    });
    holder.execute("SELECT pg_advisory_unlock($1)", &[&APPLY_LOCK_KEY]).unwrap();
    let results: Vec<Value> = outs.into_iter().map(|h| h.join().unwrap()).collect();
    let end = state(&db);
    assert!(end == expected_a || end == expected_b, "a mix: {end:?}\nA: {expected_a:?}\nB: {expected_b:?}");
    let told: Vec<usize> = results.iter().map(|r| r["concurrent_changes"].as_array().unwrap().len()).collect();
    assert!(told.iter().filter(|n| **n > 0).count() == 1, "exactly the second names the first's changes: {results:#?}");

    // A lock held too long: a clear refusal, nothing written.
    holder.execute("SELECT pg_advisory_lock($1)", &[&APPLY_LOCK_KEY]).unwrap();
    let out = apply(&db, &base, &["--lock-wait", "300ms"]).code(5);
    assert!(out.stderr.contains("held the setup lock for longer than --lock-wait 300ms"), "{}", out.stderr);
    assert_eq!(state(&db), end);
}

#[test]
fn the_database_refuses_retired_objects_that_stay_routed_or_enabled_whoever_writes() {
    let db = TestDb::new();
    apply(&db, &standard_setup("http://127.0.0.1:18080"), &[]).ok();
    let mut c = db.client();
    let refused = |c: &mut orderctl::db::Client, sql: &str| -> String {
        let e = orderctl::error::Error::from(c.execute(sql, &[]).expect_err(sql));
        e.constraint.unwrap_or_default()
    };
    // pubg-60 routes to znet-main; itunes-10 draws from its code group.
    assert_eq!(
        refused(&mut c, "UPDATE providers SET retired_at = now(), enabled = false WHERE name = 'znet-main'"),
        "retired_objects_unrouted"
    );
    assert_eq!(refused(&mut c, "UPDATE code_groups SET retired_at = now() WHERE name = 'itunes-10'"), "retired_objects_unrouted");
    assert_eq!(refused(&mut c, "UPDATE packages SET retired_at = now() WHERE name = 'jawaker'"), "packages_retired_disabled");
    // A provider no live package routes to can be retired; then none may be routed to it.
    c.execute("UPDATE packages SET fallback_provider_id = NULL WHERE name = 'pubg-60'", &[]).unwrap();
    c.execute("UPDATE packages SET retired_at = now(), enabled = false WHERE name = 'freefire-100'", &[]).unwrap();
    c.execute("UPDATE providers SET retired_at = now(), enabled = false WHERE name = 'xstor'", &[]).unwrap();
    assert_eq!(
        refused(
            &mut c,
            "UPDATE packages SET fallback_provider_id = (SELECT id FROM providers WHERE name = 'xstor') WHERE name = 'pubg-60'"
        ),
        "packages_route_to_live_objects"
    );
    assert_eq!(refused(&mut c, "UPDATE providers SET enabled = true WHERE name = 'xstor'"), "providers_retired_disabled");
}
