//! Forwarding orders to another tenant (internal routing): the upstream order is created and
//! charged to the account in one transaction with the forwarded order's move to `sent`; when it
//! finishes, the forwarded order finishes in the same transaction, with the same PIN or refunded;
//! chains A → B → C; cycles refused by `apply` and by the database; operators on both sides.

use crate::orders::inspect;
use crate::reliability::{assert_event_logs_consistent, assert_placed_once};
use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

const FAST: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];

/// The standard setup (alsham) forwarding to a wholesaler, which forwards one package on to a
/// supplier: alsham → wholesale → supplier.
pub fn forwarding_setup(sim_url: &str) -> Value {
    let mut doc = standard_setup(sim_url);
    let internal = |tenant: &str, package: &str, account: &str| json!({"mode": "auto", "provider_type": "internal", "upstream": {"tenant": tenant, "package": package, "account": account}});
    let packages = doc["tenants"][0]["packages"].as_array_mut().unwrap();
    for (name, routing) in [
        ("pubg-60-fwd", internal("wholesale", "pubg-60-w", "alsham-account")),
        ("pubg-manual-fwd", internal("wholesale", "pubg-manual-w", "alsham-account")),
        ("pubg-off-fwd", internal("wholesale", "pubg-off-w", "alsham-account")),
        ("pubg-poor-fwd", internal("wholesale", "pubg-60-w", "poor-account")),
        ("pubg-chain-fwd", internal("wholesale", "pubg-chain-w", "alsham-account")),
    ] {
        packages.push(json!({"name": name, "product": "PUBG Mobile", "price": "1.10", "routing": routing}));
    }
    let znet = |name: &str, enabled: bool| json!({"name": name, "kind": "znet", "base_url": sim_url, "credentials": {"kod": "bayi-w", "sifre": "s3cret-w"}, "enabled": enabled, "reconcile_for": SIM_RECONCILE_FOR});
    let mapped = |name: &str, price: &str, provider: &str| {
        json!({"name": name, "product": "PUBG Mobile", "price": price,
               "routing": {"mode": "auto", "provider_type": "external", "primary": provider},
               "mappings": {provider: {"oyun": "7001", "kupur": "60"}}})
    };
    doc["tenants"].as_array_mut().unwrap().push(json!({
        "name": "wholesale",
        "users": [
            {"name": "alsham-account", "balance": "100.00", "overdraft_limit": "0"},
            {"name": "poor-account", "balance": "0.50", "overdraft_limit": "0"},
            {"name": "secret-buyer", "balance": "55.55"}
        ],
        "providers": [znet("znet-wholesale", true), znet("znet-off", false)],
        "packages": [
            mapped("pubg-60-w", "0.87", "znet-wholesale"),
            mapped("pubg-off-w", "0.87", "znet-off"),
            {"name": "pubg-manual-w", "product": "PUBG Mobile", "price": "0.80", "routing": {"mode": "manual", "provider_type": "manual"}},
            {"name": "pubg-chain-w", "product": "PUBG Mobile", "price": "0.90",
             "routing": internal("supplier", "pubg-60-s", "wholesale-account")}
        ]
    }));
    doc["tenants"].as_array_mut().unwrap().push(json!({
        "name": "supplier",
        "users": [{"name": "wholesale-account", "balance": "100.00"}],
        "providers": [znet("znet-supplier", true)],
        "packages": [mapped("pubg-60-s", "0.70", "znet-supplier")]
    }));
    doc
}

pub fn setup(sim: &Sim) -> TestDb {
    let db = TestDb::new();
    db.apply(&forwarding_setup(&sim.base_url));
    db
}

/// `create` by alsham's buyer, dispatched at once (forwarded within the command).
fn create(db: &TestDb, package: &str) -> Value {
    db.cmd().args(CREATE_AS_HALIL).args(["--package", package, "--player", "5550001"]).args(FAST).run().ok().json()
}

fn sweep_until_final(db: &TestDb, number: &str) {
    wait_until(&format!("order {number} final"), Duration::from_secs(30), || {
        db.cmd().args(["sweep"]).args(FAST).run().ok();
        inspect(db, number)["final"] == true
    });
}

fn balance(db: &TestDb, tenant: &str, user: &str) -> String {
    db.client()
        .query_one(
            "SELECT u.balance::text FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = $1 AND u.name = $2",
            &[&tenant, &user],
        )
        .unwrap()
        .get(0)
}

/// The order `number` was forwarded to (unscoped: the test sees every tenant).
fn upstream_of(db: &TestDb, number: &str) -> Value {
    let to = db.query_i64(&format!(
        "SELECT u.number FROM orders d JOIN orders u ON u.id = d.forwarded_to AND u.forwarded_from = d.id WHERE d.number = {number}"
    ));
    inspect(db, &to.to_string())
}

/// The two rows were finished by one transaction: Postgres gives every statement of a
/// transaction the same `now()`.
fn finished_together(db: &TestDb, a: &Value, b: &Value) {
    let same = db.query_i64(&format!(
        "SELECT count(DISTINCT completed_at) FROM orders WHERE number IN ({}, {}) AND completed_at IS NOT NULL",
        a["number"], b["number"]
    ));
    assert_eq!(same, 1, "finished in one transaction:\n{a:#}\n{b:#}");
}

#[test]
fn a_forwarded_order_approved_upstream_by_znet_is_approved_downstream_with_the_same_pin() {
    let sim = Sim::start(&["--complete-after", "300ms"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60-fwd");
    let n = o["number"].to_string();
    // Forwarded within `create`: sent, linked, and the account charged at the wholesaler.
    assert_eq!((o["status"].as_str(), o["external_status"].as_str()), (Some("pending"), Some("sent")), "{o:#}");
    assert_eq!(o["forwarded_to"]["tenant"], "wholesale", "{o:#}");
    assert_eq!(o["diagnosis"]["code"], "forwarded", "{o:#}");
    let up = upstream_of(&db, &n);
    assert_eq!(o["forwarded_to"]["number"], up["number"]);
    // Minted by the database as every new order's id is: time-ordered (version 7).
    assert_eq!(uuid::Uuid::parse_str(up["id"].as_str().unwrap()).unwrap().get_version_num(), 7, "{up:#}");
    assert_eq!(up["forwarded_from"], json!({"tenant": "alsham", "number": o["number"]}));
    assert_eq!(
        (up["tenant"].as_str(), up["user"].as_str(), up["price"].as_str()),
        (Some("wholesale"), Some("alsham-account"), Some("0.87"))
    );
    assert_eq!(balance(&db, "wholesale", "alsham-account"), "99.13");
    assert_eq!(balance(&db, "alsham", "halil"), "998.90");

    sweep_until_final(&db, &n);
    let down = inspect(&db, &n);
    let up = upstream_of(&db, &n);
    assert_eq!((down["status"].as_str(), up["status"].as_str()), (Some("approved"), Some("approved")));
    assert!(up["pin_code"].is_string(), "{up:#}");
    assert_eq!(down["pin_code"], up["pin_code"], "the same PIN");
    assert_eq!(down["diagnosis"]["code"], "approved");
    finished_together(&db, &down, &up);
    let kinds: Vec<&str> = down["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "dispatch", "upstream.approved"], "{down:#}");
    assert!(down["placements"].as_array().unwrap().is_empty(), "no provider call for the forwarded order");
    assert_placed_once(&sim, 1);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_eq!(balance(&db, "wholesale", "alsham-account"), "99.13", "the account paid for a delivered order");
}

#[test]
fn a_forwarded_order_cancelled_upstream_is_rejected_on_both_sides_with_both_refunds_exactly_once() {
    let sim = Sim::start(&["--complete-after", "200ms", "--cancel-share", "1"]);
    let db = setup(&sim);
    let n = create(&db, "pubg-60-fwd")["number"].to_string();
    sweep_until_final(&db, &n);
    // More passes, a poll and operator commands change nothing once both are final.
    for _ in 0..3 {
        db.cmd().args(["sweep"]).args(FAST).run().ok();
    }
    db.cmd().args(["poll", &n]).run().ok();
    db.cmd().args(["reject", &n, "--reason", "again"]).run().ok();
    let down = inspect(&db, &n);
    let up = upstream_of(&db, &n);
    assert_eq!((down["status"].as_str(), up["status"].as_str()), (Some("rejected"), Some("rejected")));
    assert_eq!((down["refunded"].as_str(), up["refunded"].as_str()), (Some("1.10"), Some("0.87")));
    assert!(down["last_message"].as_str().unwrap().contains("rejected by wholesale"), "{down:#}");
    finished_together(&db, &down, &up);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 2, "one refund on each side");
    assert_eq!(balance(&db, "alsham", "halil"), "1000.00");
    assert_eq!(balance(&db, "wholesale", "alsham-account"), "100.00");
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}

#[test]
fn two_level_forwarding_a_to_b_to_c_works() {
    let sim = Sim::start(&["--complete-after", "300ms"]);
    let db = setup(&sim);
    let a = create(&db, "pubg-chain-fwd");
    let n = a["number"].to_string();
    // The daemon carries the middle order on (the routing lane forwards it to the supplier).
    let log = tempfile::NamedTempFile::new().unwrap();
    let daemon = db.cmd().args(["daemon", "--idle-poll", "20ms"]).args(FAST).spawn_logged(log.path());
    wait_until("the chain final", Duration::from_secs(30), || inspect(&db, &n)["final"] == true);
    assert_eq!(daemon.terminate(), 0);
    let a = inspect(&db, &n);
    let b = upstream_of(&db, &n);
    let c = upstream_of(&db, &b["number"].to_string());
    let tenants: Vec<&str> = [&a, &b, &c].iter().map(|o| o["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, ["alsham", "wholesale", "supplier"]);
    for o in [&a, &b, &c] {
        assert_eq!(o["status"], "approved", "{o:#}");
        assert_eq!(o["pin_code"], c["pin_code"], "the supplier's PIN all the way down");
    }
    assert_eq!(b["user"], "alsham-account");
    assert_eq!(c["user"], "wholesale-account");
    assert_eq!(c["forwarded_from"]["tenant"], "wholesale");
    finished_together(&db, &a, &c);
    finished_together(&db, &b, &c);
    assert_eq!(balance(&db, "supplier", "wholesale-account"), "99.30");
    assert_eq!(balance(&db, "wholesale", "alsham-account"), "99.10");
    assert_placed_once(&sim, 1);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}

#[test]
fn a_manual_upstream_order_waits_for_its_operator_and_operators_follow_the_lifecycle_on_both_sides() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let n = create(&db, "pubg-manual-fwd")["number"].to_string();
    db.cmd().args(["sweep"]).args(FAST).run().ok();
    let down = inspect(&db, &n);
    let up = upstream_of(&db, &n);
    let un = up["number"].to_string();
    let sentence = down["diagnosis"]["sentence"].as_str().unwrap();
    assert!(sentence.starts_with(&format!("waiting for wholesale's operator, order {un}")), "{sentence}");
    assert_eq!(down["diagnosis"]["stuck"], false, "waiting by design");
    let stuck = db.cmd().args(["-o", "json", "list", "--stuck"]).run().json();
    assert!(stuck.as_array().unwrap().iter().all(|o| o["number"].as_i64() != n.parse().ok()), "{stuck:#}");

    // Downstream: no decision while the upstream order is open, unless forced; never forwarded twice.
    let out = db.cmd().args(["--tenant", "alsham", "approve", &n, "--pin", "X"]).run().code(5);
    assert!(out.stderr.contains("forwarded to another tenant") && out.stderr.contains("--force"), "{}", out.stderr);
    let out = db.cmd().args(["--tenant", "alsham", "dispatch", &n]).run().code(5);
    assert!(out.stderr.contains("already forwarded"), "{}", out.stderr);
    // Upstream: its operator delivers, and both are approved with that PIN in one transaction.
    db.cmd().args(["--tenant", "wholesale", "approve", &un, "--pin", "HAND-7788"]).run().ok();
    let down = inspect(&db, &n);
    let up = inspect(&db, &un);
    assert_eq!((down["pin_code"].as_str(), down["status"].as_str()), (Some("HAND-7788"), Some("approved")));
    finished_together(&db, &down, &up);

    // A forced decision downstream, then the upstream rejects: the decision stands, one refund each.
    let n = create(&db, "pubg-manual-fwd")["number"].to_string();
    db.cmd().args(["sweep"]).args(FAST).run().ok();
    let un = upstream_of(&db, &n)["number"].to_string();
    db.cmd().args(["--tenant", "alsham", "reject", &n, "--reason", "buyer cancelled", "--force"]).run().ok();
    assert_eq!(inspect(&db, &n)["diagnosis"]["code"], "watched_after_decision");
    db.cmd().args(["--tenant", "wholesale", "reject", &un, "--reason", "no stock"]).run().ok();
    let down = inspect(&db, &n);
    assert_eq!((down["status"].as_str(), down["external_status"].as_str()), (Some("rejected"), Some("failed")));
    assert_eq!(down["refunded"], "1.10");
    // The other way round: forced approval here, then the upstream delivers: recorded and flagged.
    let n = create(&db, "pubg-manual-fwd")["number"].to_string();
    db.cmd().args(["sweep"]).args(FAST).run().ok();
    let un = upstream_of(&db, &n)["number"].to_string();
    db.cmd().args(["--tenant", "alsham", "approve", &n, "--pin", "GIVEN-BY-HAND", "--force"]).run().ok();
    db.cmd().args(["--tenant", "wholesale", "approve", &un, "--pin", "LATE-1"]).run().ok();
    let down = inspect(&db, &n);
    assert_eq!(
        (down["attention"].as_str(), down["late_pin"].as_str()),
        (Some("delivered_after_manual_approval"), Some("LATE-1"))
    );
    db.cmd().args(["--tenant", "alsham", "settle", &n, "--write-off"]).run().ok();
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}

#[test]
fn a_stuck_upstream_order_makes_the_forwarded_one_stuck_with_a_reason() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let n = create(&db, "pubg-off-fwd")["number"].to_string();
    db.cmd().args(["sweep"]).args(FAST).run().ok();
    let up = upstream_of(&db, &n);
    assert_eq!(up["attention"], "provider_disabled", "{up:#}");
    let down = inspect(&db, &n);
    assert_eq!((down["diagnosis"]["code"].as_str(), down["diagnosis"]["stuck"].as_bool()), (Some("forwarded_stuck"), Some(true)));
    let sentence = down["diagnosis"]["sentence"].as_str().unwrap();
    assert!(sentence.contains(&format!("forwarded to wholesale as order {}", up["number"])), "{sentence}");
    // The SQL of `list --stuck` says the same, in the forwarding tenant's scope.
    let stuck = db.cmd().args(["--tenant", "alsham", "-o", "json", "list", "--stuck"]).run().json();
    let numbers: Vec<i64> = stuck.as_array().unwrap().iter().map(|o| o["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [n.parse::<i64>().unwrap()], "{stuck:#}");
}

#[test]
fn a_forwarding_the_upstream_refuses_waits_for_an_operator_and_is_sent_once_fixed() {
    let sim = Sim::start(&["--complete-after", "200ms"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-poor-fwd");
    let n = o["number"].to_string();
    assert_eq!(o["attention"], "forward_refused", "{o:#}");
    assert!(o["last_message"].as_str().unwrap().contains("account poor-account has 0.50"), "{o:#}");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE forwarded_from IS NOT NULL"), 0, "nothing created upstream");
    assert_eq!(balance(&db, "wholesale", "poor-account"), "0.50");
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 0, "no silent refund");
    // Topped up: dispatched again, forwarded once.
    let mut doc = forwarding_setup(&sim.base_url);
    doc["tenants"][1]["users"][1]["balance"] = json!("10.00");
    db.apply(&doc);
    db.cmd().args(["dispatch", &n]).args(FAST).run().ok();
    sweep_until_final(&db, &n);
    assert_eq!(inspect(&db, &n)["status"], "approved");
    assert_eq!(balance(&db, "wholesale", "poor-account"), "9.13");
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE forwarded_from IS NOT NULL"), 1);
    assert_money_conserved(&db);
}

#[test]
fn a_forwarding_cycle_is_refused_by_apply_and_by_raw_sql() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    // wholesale's package forwards back to alsham's, which forwards to it.
    let mut doc = forwarding_setup(&sim.base_url);
    doc["tenants"][0]["users"].as_array_mut().unwrap().push(json!({"name": "wholesale-at-alsham", "balance": "5.00"}));
    doc["tenants"][1]["packages"][0]["routing"] = json!({"mode": "auto", "provider_type": "internal",
        "upstream": {"tenant": "alsham", "package": "pubg-60-fwd", "account": "wholesale-at-alsham"}});
    let before = crate::setup::dump(&db);
    let out = db.cmd().args(["-o", "json", "apply", "-f", "-"]).stdin(doc.to_string()).run().code(4);
    let problems = out.json();
    let cycle = problems
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "tenants[1].packages[0].routing.upstream")
        .unwrap_or_else(|| panic!("{problems:#}"));
    assert!(
        cycle["message"]
            .as_str()
            .unwrap()
            .contains("forwarding cycle: wholesale/pubg-60-w → alsham/pubg-60-fwd → wholesale/pubg-60-w"),
        "{cycle:#}"
    );
    assert_eq!(crate::setup::dump(&db), before, "nothing written");

    // Raw SQL: the same cycle, and a deeper one (supplier → alsham closes alsham → wholesale → supplier).
    let mut c = db.client();
    c.batch_execute("INSERT INTO users (tenant_id, name) SELECT id, 'wholesale-at-alsham' FROM tenants WHERE name = 'alsham'")
        .unwrap();
    let back = |from_tenant: &str, from_package: &str| {
        format!(
            "UPDATE packages SET provider_type = 'internal', primary_provider_id = NULL, fallback_provider_id = NULL,
                    upstream_tenant_id = (SELECT id FROM tenants WHERE name = 'alsham'),
                    upstream_package_id = (SELECT p.id FROM packages p JOIN tenants t ON t.id = p.tenant_id
                                            WHERE t.name = 'alsham' AND p.name = 'pubg-chain-fwd'),
                    upstream_user_id = (SELECT u.id FROM users u JOIN tenants t ON t.id = u.tenant_id
                                         WHERE t.name = 'alsham' AND u.name = 'wholesale-at-alsham')
              WHERE name = '{from_package}' AND tenant_id = (SELECT id FROM tenants WHERE name = '{from_tenant}')"
        )
    };
    for (tenant, package, chain) in [
        ("wholesale", "pubg-60-w", "wholesale/pubg-60-w → alsham/pubg-chain-fwd → wholesale/pubg-chain-w"),
        ("supplier", "pubg-60-s", "supplier/pubg-60-s → alsham/pubg-chain-fwd → wholesale/pubg-chain-w → supplier/pubg-60-s"),
    ] {
        let e = c.batch_execute(&back(tenant, package)).expect_err("a cycle written by SQL");
        let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert_eq!(e.code(), Some(&postgres::error::SqlState::CHECK_VIOLATION), "{e}");
        assert!(text.contains("forwarding cycle") && text.contains(chain), "{text}");
    }
    // Forwarding to its own tenant, and a one-sided link between orders.
    let e = c
        .batch_execute(
            "UPDATE packages SET provider_type = 'internal', primary_provider_id = NULL, fallback_provider_id = NULL,
                    upstream_tenant_id = tenant_id, upstream_package_id = id,
                    upstream_user_id = (SELECT id FROM users WHERE name = 'halil')
              WHERE name = 'jawaker'",
        )
        .expect_err("forwarding to itself");
    assert_eq!(e.as_db_error().unwrap().constraint(), Some("routing_internal_is_another_tenant"));
    insert_orders(&db, "jawaker", 2);
    let e = c
        .batch_execute("UPDATE orders SET forwarded_to = (SELECT max(id::text)::uuid FROM orders) WHERE id = (SELECT min(id::text)::uuid FROM orders)")
        .expect_err("a link only one side names");
    let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    assert!(text.contains("does not name it as its origin"), "{e:?}");
    // Nothing of it was stored: the only finding is the disabled provider the setup declares.
    let check = db.cmd().args(["-o", "json", "routing", "check"]).run().code(8).json();
    let codes: Vec<&str> = check.as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["primary_disabled"], "{check:#}");
    // One planted behind the database's back (its trigger dropped) is found by `routing check`.
    c.batch_execute("DROP TRIGGER packages_forwarding_acyclic ON packages").unwrap();
    c.batch_execute(&back("wholesale", "pubg-60-w")).unwrap();
    let check = db.cmd().args(["-o", "json", "--tenant", "wholesale", "routing", "check"]).run().code(8).json();
    let cycle = check.as_array().unwrap().iter().find(|f| f["code"] == "forwarding_cycle").unwrap_or_else(|| panic!("{check:#}"));
    assert_eq!(cycle["package"], "pubg-60-w");
    assert!(cycle["problem"].as_str().unwrap().contains("wholesale/pubg-60-w → alsham/pubg-chain-fwd → wholesale/pubg-chain-w"));
}
