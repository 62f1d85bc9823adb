//! A command run with `--tenant A` never reads, lists, counts or changes tenant B's orders,
//! users or providers, even when given B's order id or number.

use super::*;
use crate::orders::setup;

/// The standard setup as a second tenant, every name and value of its own, so any of them
/// showing up in tenant A's output is a leak.
fn tenant_b(sim: &Sim) -> serde_json::Value {
    let mut text = standard_setup(&sim.base_url).to_string();
    for (a, b) in [
        ("\"alsham\"", "\"beta\""),
        ("\"znet-main\"", "\"znet-beta\""),
        ("\"xstor\"", "\"xstor-beta\""),
        ("\"kind\":\"xstor-beta\"", "\"kind\":\"xstor\""),
        ("\"pubg-60\"", "\"beta-pubg\""),
        ("\"freefire-100\"", "\"beta-freefire\""),
        ("\"itunes-10\"", "\"beta-itunes\""),
        ("\"jawaker\"", "\"beta-jawaker\""),
        ("halil@example.com", "halil@beta.example"),
        ("\"1000.00\"", "\"777.00\""),
        ("-1111", "-B111"),
        ("-2222", "-B222"),
        ("-3333", "-B333"),
    ] {
        text = text.replace(a, b);
    }
    serde_json::from_str(&text).unwrap()
}

/// Everything of tenant B's, as one string: any change shows.
fn tenant_b_rows(db: &TestDb) -> String {
    db.client()
        .query_one(
            "SELECT concat_ws(' | ',
                (SELECT string_agg(o::text, ',' ORDER BY o.id) FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'beta'),
                (SELECT string_agg(e::text, ',' ORDER BY e.id) FROM order_events e JOIN orders o ON o.id = e.order_id JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'beta'),
                (SELECT string_agg(l::text, ',' ORDER BY l.id) FROM ledger l JOIN tenants t ON t.id = l.tenant_id WHERE t.name = 'beta'),
                (SELECT string_agg(u::text, ',' ORDER BY u.id) FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = 'beta'),
                (SELECT string_agg(c::text, ',' ORDER BY c.id) FROM code_items c JOIN code_groups g ON g.id = c.code_group_id JOIN tenants t ON t.id = g.tenant_id WHERE t.name = 'beta'),
                (SELECT count(*) FROM placements p JOIN orders o ON o.id = p.order_id JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'beta'))",
            &[],
        )
        .unwrap()
        .get(0)
}

// B's balance as amounts show it: a bare "777" also occurs in A's ids and timestamps.
const B_WORDS: &[&str] = &["beta", "777.00", "B111", "B222", "B333"];

#[track_caller]
fn shows_nothing_of_b(what: &str, out: &Output) {
    for w in B_WORDS {
        assert!(
            !out.stdout.contains(w) && !out.stderr.contains(w),
            "{what} shows tenant B ({w}):\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn tenant_a_never_reads_lists_counts_or_changes_tenant_b() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    db.apply(&tenant_b(&sim));
    let b_order = db
        .cmd()
        .args([
            "--tenant",
            "beta",
            "-o",
            "json",
            "create",
            "--user",
            "halil",
            "--package",
            "beta-jawaker",
            "--player",
            "b-player",
        ])
        .run()
        .ok()
        .json();
    // B has due work too: new orders to dispatch, and an order sent long ago (safety sweep).
    insert_orders_in(&db, "beta", "beta-pubg", 5);
    insert_orders_in(&db, "alsham", "pubg-60", 3);
    let a_order = crate::orders::create(&db, "jawaker", &[]);
    // B's routing has the incident's problem; A's has none.
    db.client()
        .batch_execute(
            "ALTER TABLE packages DROP CONSTRAINT routing_auto_cannot_be_manual;
             UPDATE packages SET routing_mode = 'auto', provider_type = 'manual', primary_provider_id = NULL, fallback_provider_id = NULL
              WHERE name = 'beta-freefire';",
        )
        .unwrap();
    let before = tenant_b_rows(&db);
    let a = |args: &[&str]| db.cmd().args(["--tenant", "alsham"]).args(args).run();

    // B's order by id and by number: not found, exactly like a missing order.
    for key in [b_order["id"].as_str().unwrap().to_string(), b_order["number"].to_string()] {
        for cmd in [
            vec!["inspect", &key],
            vec!["-o", "json", "inspect", &key],
            vec!["dispatch", &key],
            vec!["dispatch", &key, "--dry-run"],
            vec!["dispatch", &key, "--provider", "znet-main"],
            vec!["approve", &key, "--pin", "STOLEN"],
            vec!["reject", &key, "--reason", "not yours"],
            vec!["poll", &key],
            vec!["poll", &key, "--wait", "--timeout", "1s"],
        ] {
            let out = a(&cmd).code(3);
            assert!(out.stderr.contains("does not exist in tenant alsham"), "{cmd:?}: {}", out.stderr);
            shows_nothing_of_b(&format!("{cmd:?}"), &out);
        }
    }
    // Listings and checks show and count only A's rows.
    for cmd in [
        &["list"][..],
        &["-o", "json", "list"],
        &["list", "--stuck", "--stuck-after", "0s"],
        &["-o", "json", "list", "--stuck", "--stuck-after", "0s"],
        &["list", "--package", "beta-pubg"],
        &["tenant", "list"],
        &["-o", "json", "tenant", "list"],
        &["user", "list"],
        &["-o", "json", "user", "list"],
        &["provider", "list"],
        &["-o", "json", "provider", "list"],
        &["package", "list"],
        &["-o", "json", "package", "list"],
        &["routing", "check"],
        &["-o", "json", "routing", "check"],
    ] {
        let out = a(cmd);
        assert!(out.code == 0 || (cmd.contains(&"--stuck") && out.code == 8), "{cmd:?}: exit {}\n{}", out.code, out.stderr);
        shows_nothing_of_b(&format!("{cmd:?}"), &out);
    }
    let listed = a(&["-o", "json", "list"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 4, "A's orders only: {listed}");
    let tenants = a(&["-o", "json", "tenant", "list"]).ok().json();
    assert_eq!(tenants[0]["open_orders"], 4, "counts only A's: {tenants}");
    // Unscoped, the same checks do see B: the scope is what hides it.
    let all = db.cmd().args(["routing", "check"]).run().code(8);
    assert!(all.stdout.contains("beta-freefire") || all.stderr.contains("beta-freefire"), "{}{}", all.stdout, all.stderr);
    assert!(db.cmd().args(["-o", "json", "list"]).run().ok().stdout.contains("beta"));

    // A sweep for A dispatches A's due orders and leaves B's alone.
    let out = a(&["-o", "json", "sweep", "--first-check", "1h"]).ok();
    shows_nothing_of_b("sweep", &out);
    // A's three new orders and A's manual order (looked at, left for an operator); none of B's five.
    assert_eq!(out.json()["claimed"], 4, "{}", out.stdout);
    assert_eq!(sim.stats()["orders_placed"], 3, "only A's orders reached the provider");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'beta' AND external_status = 'not_sent' AND lease = 0"), 6);
    assert_eq!(tenant_b_rows(&db), before, "tenant B's rows are exactly as they were");
    assert_eq!(a_order["status"], "pending");
}

/// The batch safety sweep of `sweep --tenant A` must check only A's open orders.
#[test]
fn the_safety_sweep_of_a_tenant_scoped_sweep_leaves_other_tenants_alone() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    db.apply(&tenant_b(&sim));
    insert_orders_in(&db, "beta", "beta-freefire", 1);
    db.cmd().args(["--tenant", "beta", "sweep", "--first-check", "1h"]).run().ok();
    // B's order was sent two minutes ago and its own schedule was lost: a safety sweep candidate.
    db.client()
        .execute("UPDATE orders SET sent_at = now() - interval '2 minutes', next_check_at = now() + interval '1 hour'", &[])
        .unwrap();
    // A fresh slot, so the sweep for A runs its safety sweep here.
    db.client().execute("DELETE FROM periodic_runs", &[]).unwrap();
    let before = tenant_b_rows(&db);
    let calls = sim.stats()["status_calls"].as_u64().unwrap();
    let out = db.cmd().args(["--tenant", "alsham", "-o", "json", "sweep"]).run().ok();
    assert_eq!(sim.stats()["status_calls"].as_u64().unwrap(), calls, "B's order was not checked: {}", out.stdout);
    assert_eq!(tenant_b_rows(&db), before);
}

/// Every string anywhere in a JSON document.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// A tenant that forwards an order sees the link and the upstream order's state, and nothing
/// else of the upstream tenant: not its other orders, users, providers or prices.
#[test]
fn a_forwarding_tenant_sees_the_link_and_the_upstream_orders_state_and_nothing_else_of_that_tenant() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = crate::forwarding::setup(&sim);
    // The wholesaler's own business: another buyer's order.
    let theirs = db
        .cmd()
        .args(["--tenant", "wholesale", "-o", "json", "create", "--user", "secret-buyer", "--package", "pubg-manual-w"])
        .args(["--player", "W-PLAYER-999"])
        .run()
        .ok()
        .json();
    let ours = db.cmd().args(CREATE_AS_HALIL).args(["--package", "pubg-60-fwd", "--player", "5550001"]).run().ok().json();
    let n = ours["number"].to_string();
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    let upstream =
        db.query_i64(&format!("SELECT u.number FROM orders u JOIN orders d ON d.forwarded_to = u.id WHERE d.number = {n}"));
    let a = |args: &[&str]| db.cmd().args(["--tenant", "alsham"]).args(args).run();

    // The link and the state of the order it became.
    let shown = a(&["-o", "json", "inspect", &n]).ok().json();
    assert_eq!(
        shown["forwarded_to"],
        serde_json::json!({"tenant": "wholesale", "number": upstream, "status": "pending", "external_status": "sent"})
    );
    assert_eq!(shown["diagnosis"]["code"], "forwarded");
    let text = a(&["inspect", &n]).ok().stdout;
    assert!(text.contains(&format!("wholesale order {upstream} (pending / sent)")), "{text}");

    // Nothing else of the wholesaler, in any listing or in the forwarded order's own details.
    let hidden_words = ["secret-buyer", "W-PLAYER-999", "55.55", "znet-wholesale", "znet-off", "poor-account"];
    let hidden_values = ["0.87", "0.80", "0.90", "99.13", "100.00"];
    for cmd in [
        &["-o", "json", "inspect", &n][..],
        &["inspect", &n],
        &["-o", "json", "list"],
        &["list"],
        &["-o", "json", "list", "--stuck", "--stuck-after", "0s"],
        &["-o", "json", "tenant", "list"],
        &["-o", "json", "user", "list"],
        &["-o", "json", "provider", "list"],
        &["-o", "json", "stats"],
    ] {
        let out = a(cmd);
        assert!(out.code == 0 || out.code == 8, "{cmd:?}: exit {}\n{}", out.code, out.stderr);
        for w in hidden_words {
            assert!(!out.stdout.contains(w) && !out.stderr.contains(w), "{cmd:?} shows the wholesaler's {w}:\n{}", out.stdout);
        }
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&out.stdout) {
            let mut all = vec![];
            strings(&json, &mut all);
            for v in hidden_values {
                assert!(!all.iter().any(|s| s == v), "{cmd:?} shows the wholesaler's value {v}:\n{}", out.stdout);
            }
            if cmd.contains(&"inspect") {
                assert!(!all.iter().any(|s| s.contains("alsham-account")), "the paying account is the wholesaler's user");
            }
        }
    }
    let listed = a(&["-o", "json", "list"]).ok().json();
    assert!(listed.as_array().unwrap().iter().all(|o| o["tenant"] == "alsham"), "{listed:#}");
    // The upstream order and the wholesaler's other order, by number: as if they did not exist.
    for key in [upstream.to_string(), theirs["number"].to_string()] {
        for cmd in [
            vec!["inspect", &key],
            vec!["approve", &key, "--pin", "X"],
            vec!["reject", &key, "--reason", "x"],
            vec!["poll", &key],
        ] {
            let out = a(&cmd).code(3);
            assert!(out.stderr.contains("does not exist in tenant alsham"), "{cmd:?}: {}", out.stderr);
        }
    }
    // The wholesaler's operator sees where its order came from, and its own details.
    let theirs_view = db.cmd().args(["--tenant", "wholesale", "-o", "json", "inspect", &upstream.to_string()]).run().ok().json();
    assert_eq!(theirs_view["forwarded_from"], serde_json::json!({"tenant": "alsham", "number": ours["number"]}));
    assert_eq!((theirs_view["user"].as_str(), theirs_view["price"].as_str()), (Some("alsham-account"), Some("0.87")));
}
