//! `orderctl apply` and the read-only listings: a declarative setup that is validated as a
//! whole, written once, idempotent, keeps its secrets, and reaches balances through the ledger.

use crate::support::*;
use serde_json::{json, Value};

const SIM: &str = "http://127.0.0.1:18080";

/// Every table `apply` writes, as sorted JSON lines, to compare before and after.
pub fn dump(db: &TestDb) -> String {
    let mut c = db.client();
    let mut out = String::new();
    for table in
        ["tenants", "users", "providers", "code_groups", "code_items", "products", "packages", "package_mappings", "ledger"]
    {
        let sql = format!("SELECT coalesce(string_agg(to_jsonb(t)::text, E'\\n' ORDER BY to_jsonb(t)::text), '') FROM {table} t");
        let rows: String = c.query_one(sql.as_str(), &[]).unwrap().get(0);
        out.push_str(&format!("== {table}\n{rows}\n"));
    }
    out
}

fn example_path() -> String {
    format!("{}/examples/setup.json", env!("CARGO_MANIFEST_DIR"))
}

fn apply_json(db: &TestDb, doc: &Value) -> Value {
    db.cmd().args(["apply", "-f", "-", "--output", "json"]).stdin(doc.to_string()).run().ok().json()
}

fn rows_written(db: &TestDb) -> i64 {
    db.query_i64(
        "SELECT (SELECT count(*) FROM tenants) + (SELECT count(*) FROM users) + (SELECT count(*) FROM providers)
              + (SELECT count(*) FROM code_groups) + (SELECT count(*) FROM code_items) + (SELECT count(*) FROM products)
              + (SELECT count(*) FROM packages) + (SELECT count(*) FROM package_mappings) + (SELECT count(*) FROM ledger)",
    )
}

#[test]
fn migrate_then_apply_the_example_twice_on_an_empty_database() {
    let db = TestDb::empty();
    for round in 0..2 {
        db.cmd().arg("migrate").run().ok();
        let out = db.cmd().args(["apply", "-f", &example_path()]).run().ok();
        if round == 0 {
            assert!(out.stdout.contains("applied: 12 change(s)"), "{}", out.stdout);
        } else {
            assert!(out.stdout.contains("no changes: the database already matches the file"), "{}", out.stdout);
        }
    }
}

#[test]
fn applying_the_issue_example_twice_changes_nothing() {
    let db = TestDb::new();
    let first = db.cmd().args(["apply", "-f", &example_path(), "--output", "json"]).run().ok().json();
    assert_eq!(first["changes"], 12);
    assert_eq!(first["exchange_rates"]["created"], json!(["USD/TRY"]));
    assert_eq!(first["tenants"]["created"], json!(["alsham"]));
    assert_eq!(first["packages"]["created"], json!(["alsham/pubg-60", "alsham/itunes-10", "alsham/jawaker"]));
    assert_eq!(first["codes_added"], 2);
    assert_eq!(first["warnings"], json!([]));
    let before = dump(&db);
    let ledger_rows = db.query_i64("SELECT count(*) FROM ledger");

    let second = db.cmd().args(["apply", "-f", &example_path(), "--output", "json"]).run().ok().json();
    assert_eq!(second["changes"], 0, "{second:#}");
    for kind in ["tenants", "users", "providers", "code_groups", "products", "packages", "exchange_rates"] {
        assert_eq!(second[kind]["created"], json!([]), "{kind}");
        assert_eq!(second[kind]["updated"], json!([]), "{kind}");
    }
    assert_eq!(second["codes_added"], 0);
    assert_eq!(second["ledger"], json!([]));
    assert_eq!(dump(&db), before);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger"), ledger_rows);
}

#[test]
fn apply_reads_standard_input_and_stores_what_the_file_says() {
    let db = TestDb::new();
    db.apply(&standard_setup(SIM));
    assert_eq!(db.query_i64("SELECT count(*) FROM packages"), 4);
    assert_eq!(db.query_i64("SELECT count(*) FROM package_mappings"), 3);
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items WHERE state = 'available'"), 3);
    assert_eq!(db.query_i64("SELECT max_in_flight::bigint FROM providers WHERE name = 'xstor'"), 16);
    let mut c = db.client();
    let r = c
        .query_one(
            "SELECT pk.routing_mode, pk.provider_type, pp.name, fp.name FROM packages pk
               JOIN providers pp ON pp.id = pk.primary_provider_id JOIN providers fp ON fp.id = pk.fallback_provider_id
              WHERE pk.name = 'pubg-60'",
            &[],
        )
        .unwrap();
    let got: (String, String, String, String) = (r.get(0), r.get(1), r.get(2), r.get(3));
    assert_eq!(got, ("auto".into(), "external".into(), "znet-main".into(), "xstor".into()));
}

#[test]
fn every_validation_error_is_reported_with_its_place_and_fix_and_nothing_is_written() {
    let db = TestDb::new();
    let doc = json!({"tenants": [{
        "name": "alsham",
        "users": [
            {"name": "halil", "balance": "abc"},
            {"name": "halil"},
            {"name": " "},
            {"name": "sara", "balance": 12.5, "overdraft_limit": "-3"},
            {"name": "omar", "balance": "-1"}
        ],
        "providers": [
            {"name": "z", "kind": "zent", "base_url": SIM, "credentials": {"kod": "a", "sifre": "b"}},
            {"name": "zz", "kind": "znet", "base_url": "ftp://nowhere", "credentials": {"kod": "a"}, "enabeld": true},
            {"name": "x", "kind": "xstor", "base_url": SIM, "credentials": {"api_token": "t"}, "max_in_flight": 0}
        ],
        "code_groups": [{"name": "g", "codes": ["A", "A", ""]}, {"name": "g"}],
        "packages": [
            {"name": "incident", "product": "P", "price": "1.00", "routing": {"mode": "auto", "provider_type": "manual"}},
            {"name": "no-primary", "product": "P", "price": "1.00", "routing": {"mode": "auto", "provider_type": "external"}},
            {"name": "no-group", "product": "P", "price": "1.00", "routing": {"mode": "auto", "provider_type": "codes"}},
            {"name": "same-fallback", "product": "P", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "x", "fallback": "x"},
             "mappings": {"x": {"product_id": "1"}}},
            {"name": "dangling", "product": "P", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "ghost", "code_group": "nog"},
             "mappings": {"ghost": {"oyun": "1", "kupur": "2"}}},
            {"name": "unmapped", "product": "P", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "x"}},
            {"name": "bad-mapping", "product": "P", "price": "1.00",
             "routing": {"mode": "auto", "provider_type": "external", "primary": "x"}, "mappings": {"x": {"player_param": "id"}}},
            {"name": "cheap", "product": "", "price": "-1", "routing": {"mode": "sometimes", "provider_type": "external", "primay": "x"}},
            {"name": "cheap"}
        ]
    }]});
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(doc.to_string()).run().code(4);
    let expected = [
        "<stdin>: tenant alsham, user halil: balance 'abc' is not a decimal amount; write it like \"100.00\"",
        "tenant alsham, user halil: the name is used twice (users[0] and users[1]); names are unique within a tenant, rename or merge one",
        "tenant alsham, users[2]: name is empty; give every user a name",
        "tenant alsham, user sara: balance is the JSON number 12.5; write amounts as decimal strings like \"12.5\"",
        "tenant alsham, user sara: overdraft_limit '-3.00' is negative; write 0 or a positive amount",
        "tenant alsham, user omar: balance '-1.00' is negative",
        "tenant alsham, provider z: provider kind 'zent' is unknown; use znet or xstor",
        "tenant alsham, providers[1] (zz): unknown field `enabeld` in a provider",
        "tenant alsham, provider zz: base_url 'ftp://nowhere' is not an http(s) URL",
        "tenant alsham, provider zz: credentials.sifre is missing; znet providers need kod and sifre",
        "tenant alsham, provider x: max_in_flight is 0; write a number from 1 to 10000",
        "tenant alsham, code group g: codes[1] repeats codes[0]; remove the duplicate",
        "tenant alsham, code group g: codes[2] is empty",
        "tenant alsham, code group g: the name is used twice (code_groups[0] and code_groups[1])",
        "tenant alsham, package incident: routing mode is auto but provider_type is manual and no primary provider is set; \
         set routing.primary with provider_type external, or use mode manual",
        "tenant alsham, package no-primary: routing mode is auto with provider_type external but no primary provider is set; \
         set routing.primary, or use mode manual",
        "tenant alsham, package no-group: provider_type is codes but no code group is set",
        "tenant alsham, package same-fallback: the fallback provider is the primary provider (x); choose a different routing.fallback or remove it",
        "tenant alsham, package dangling: routing.primary names provider ghost, which tenant alsham does not have (it has x, z, zz); \
         add it to providers or correct the name",
        "tenant alsham, package dangling: routing.code_group names code group nog, which tenant alsham does not have",
        "tenant alsham, package dangling: mappings.ghost is for provider ghost, which tenant alsham does not have",
        "tenant alsham, package unmapped: there is no mapping for provider x, so it cannot be told which product to deliver; add mappings.x",
        "tenant alsham, package bad-mapping: mappings.x.product_id is missing or empty; xstor mappings need product_id",
        "tenant alsham, package cheap: product is empty",
        "tenant alsham, package cheap: price '-1.00' is negative; write 0 or a positive amount",
        "tenant alsham, package cheap: routing mode 'sometimes' is unknown; use auto or manual",
        "tenant alsham, package cheap: unknown field `primay` in routing",
        "tenant alsham, packages[8] (cheap): missing field `price`",
    ];
    for e in expected {
        assert!(out.stderr.contains(e), "missing problem:\n  {e}\nstderr:\n{}", out.stderr);
    }
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert_eq!(rows_written(&db), 0, "a refused file wrote something");

    // The same problems as JSON on stdout, each with its path.
    let out = db.cmd().args(["apply", "-f", "-", "--output", "json"]).stdin(doc.to_string()).run().code(4);
    let problems = out.json();
    let problems = problems.as_array().unwrap();
    assert!(problems.len() >= expected.len(), "{problems:#?}");
    let incident = problems.iter().find(|p| p["message"].as_str().unwrap().contains("package incident")).unwrap();
    assert_eq!(incident["path"], "tenants[0].packages[0].routing");
    let balance = problems.iter().find(|p| p["message"].as_str().unwrap().contains("'abc'")).unwrap();
    assert_eq!(balance["path"], "tenants[0].users[0].balance");
    assert_eq!(rows_written(&db), 0);
}

#[test]
fn malformed_json_is_reported_with_line_and_column() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, "{\"tenants\": [\n  {\"name\": \"alsham\",,}\n]}\n").unwrap();
    let out = db.cmd().args(["apply", "-f"]).arg(&file).run().code(4);
    assert!(out.stderr.contains("broken.json: line 2, column 21: the file is not valid JSON"), "{}", out.stderr);
    let out = db.cmd().args(["apply", "-f", "/nonexistent/setup.json"]).run().code(4);
    assert!(out.stderr.contains("cannot read setup file /nonexistent/setup.json"), "{}", out.stderr);
    let out = db.cmd().args(["apply", "-f", "-"]).stdin("[1, 2]").run().code(4);
    assert!(out.stderr.contains("the file must be an object {\"tenants\": [...]}"), "{}", out.stderr);
    assert_eq!(rows_written(&db), 0);
}

#[test]
fn one_bad_tenant_keeps_the_good_one_from_being_written() {
    let db = TestDb::new();
    let mut doc = standard_setup(SIM);
    doc["tenants"].as_array_mut().unwrap().push(json!({"name": "other", "users": [{"name": "u", "balance": "x"}]}));
    db.cmd().args(["apply", "-f", "-"]).stdin(doc.to_string()).run().code(4);
    assert_eq!(rows_written(&db), 0);
}

#[test]
fn tenant_option_restricts_apply_to_that_tenant() {
    let db = TestDb::new();
    let out = db.cmd().args(["apply", "-f", &example_path(), "--tenant", "zeta"]).run().code(4);
    assert!(out.stderr.contains("declares tenant alsham, but --tenant zeta restricts apply to tenant zeta"), "{}", out.stderr);
    assert_eq!(rows_written(&db), 0);
    // Exchange rates concern every tenant: not declared under --tenant.
    let out = db.cmd().args(["apply", "-f", &example_path(), "--tenant", "alsham"]).run().code(4);
    assert!(out.stderr.contains("declares exchange_rates"), "{}", out.stderr);
    assert_eq!(rows_written(&db), 0);
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(example_path()).unwrap()).unwrap();
    doc.as_object_mut().unwrap().remove("exchange_rates");
    db.cmd().args(["apply", "-f", "-", "--tenant", "alsham"]).stdin(doc.to_string()).run().ok();
}

#[test]
fn routing_may_point_at_providers_already_in_the_database() {
    let db = TestDb::new();
    db.apply(&standard_setup(SIM));
    let doc = json!({"tenants": [{"name": "alsham", "packages": [
        {"name": "pubg-325", "product": "PUBG Mobile", "price": "5.00",
         "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main"},
         "mappings": {"znet-main": {"oyun": "7001", "kupur": "325"}}},
        {"name": "itunes-25", "product": "iTunes", "price": "25.00",
         "routing": {"mode": "auto", "provider_type": "codes", "code_group": "itunes-10"}}]}]});
    let out = apply_json(&db, &doc);
    assert_eq!(out["packages"]["created"], json!(["alsham/pubg-325", "alsham/itunes-25"]));
    assert_eq!(out["providers"]["unchanged"], json!([]), "providers not in the file are not touched");
}

#[test]
fn balances_follow_the_declared_balance_rule() {
    let db = TestDb::new();
    let doc = standard_setup(SIM); // halil declares 1000.00
    let first = apply_json(&db, &doc);
    assert_eq!(
        first["ledger"],
        json!([{"tenant": "alsham", "user": "halil", "kind": "opening_balance", "amount": "1000.00", "balance": "1000.00"}])
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'opening_balance' AND amount = 1000"), 1);

    // Orders spend (simulated by SQL); re-applying the same file must not refill the balance.
    db.client().batch_execute("UPDATE users SET balance = balance - 250 WHERE name = 'halil'").unwrap();
    let again = apply_json(&db, &doc);
    assert_eq!(again["changes"], 0);
    assert_eq!(db.query_i64("SELECT (balance * 100)::bigint FROM users WHERE name = 'halil'"), 75000);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger"), 1);

    // A new declaration posts the difference as an adjustment.
    let mut raised = doc.clone();
    raised["tenants"][0]["users"][0]["balance"] = json!("1200.50");
    let out = apply_json(&db, &raised);
    assert_eq!(out["users"]["updated"], json!(["alsham/halil"]));
    assert_eq!(
        out["ledger"],
        json!([{"tenant": "alsham", "user": "halil", "kind": "adjustment", "amount": "200.50", "balance": "950.50"}])
    );
    assert_eq!(db.query_i64("SELECT (balance * 100)::bigint FROM users WHERE name = 'halil'"), 95050);
    assert_eq!(db.query_i64("SELECT (declared_balance * 100)::bigint FROM users WHERE name = 'halil'"), 120050);
    assert_eq!(db.query_i64("SELECT (amount * 100)::bigint FROM ledger WHERE kind = 'adjustment'"), 20050);
    assert_eq!(apply_json(&db, &raised)["changes"], 0);

    // Lowering below what is left (and the overdraft) is refused, and nothing is written.
    let mut lowered = doc.clone();
    lowered["tenants"][0]["users"][0]["balance"] = json!("100.00");
    let before = dump(&db);
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(lowered.to_string()).run().code(5);
    assert!(out.stderr.contains("tenant alsham, user halil: declaring balance 100.00 (previously 1200.50) would take the balance from 950.50 to -150.00"), "{}", out.stderr);
    assert_eq!(dump(&db), before);

    // The table output states the rule.
    let mut more = doc.clone();
    more["tenants"][0]["users"][0]["balance"] = json!("1300");
    let out = db.cmd().args(["apply", "-f", "-"]).stdin(more.to_string()).run().ok();
    assert!(out.stdout.contains("adjustment") && out.stdout.contains("+99.50"), "{}", out.stdout);
    assert!(out.stdout.contains("re-applying the same declared balance changes nothing"), "{}", out.stdout);
}

#[test]
fn credentials_never_appear_in_any_output() {
    let db = TestDb::new();
    let secrets = ["bayi1-login", "s3cret-znet", "tok-secret-123"];
    let mut doc = standard_setup(SIM);
    doc["tenants"][0]["providers"][0]["credentials"] = json!({"kod": secrets[0], "sifre": secrets[1]});
    let mut outputs = Vec::new();
    for args in [
        vec!["apply", "-f", "-", "-vvv"],
        vec!["apply", "-f", "-", "--output", "json", "-vv"],
        vec!["apply", "-f", "-", "--dry-run", "-v"],
    ] {
        outputs.push(db.cmd().args(args).stdin(doc.to_string()).run().ok());
    }
    for args in [
        vec!["provider", "list", "-vv"],
        vec!["provider", "list", "--output", "json"],
        vec!["provider", "list", "--tenant", "alsham"],
        vec!["routing", "check", "-v"],
        vec!["package", "list", "--tenant", "alsham", "--output", "json"],
        vec!["tenant", "list", "-v"],
    ] {
        outputs.push(db.cmd().args(args).run().ok());
    }
    // Secrets in a wrong shape are refused without being quoted.
    let mut bad = doc.clone();
    bad["tenants"][0]["providers"][0]["credentials"] = json!(secrets[1]);
    bad["tenants"][0]["providers"][1]["credentials"] = json!({"api_token": 424242, "api_tokenn": secrets[2]});
    outputs.push(db.cmd().args(["apply", "-f", "-", "-vv"]).stdin(bad.to_string()).run().code(4));
    outputs.push(db.cmd().args(["apply", "-f", "-", "--output", "json"]).stdin(bad.to_string()).run().code(4));
    for out in &outputs {
        for s in secrets.iter().chain(["424242"].iter()) {
            assert!(!out.stdout.contains(s) && !out.stderr.contains(s), "secret {s} printed:\n{}\n{}", out.stdout, out.stderr);
        }
    }
    let list = db.cmd().args(["provider", "list"]).run().ok();
    assert!(list.stdout.contains("kod=***, sifre=***"), "{}", list.stdout);
    assert!(list.stdout.contains("api_token=***"), "{}", list.stdout);
    assert_eq!(db.query_i64("SELECT count(*) FROM providers WHERE credentials->>'sifre' = 's3cret-znet'"), 1);
}

#[test]
fn dry_run_reports_what_would_change_and_writes_nothing() {
    let db = TestDb::new();
    let out = db.cmd().args(["apply", "-f", &example_path(), "--dry-run", "--output", "json"]).run().ok().json();
    assert_eq!(out["dry_run"], true);
    assert_eq!(out["changes"], 12);
    assert_eq!(rows_written(&db), 0);
    let out = db.cmd().args(["apply", "-f", &example_path(), "--dry-run"]).run().ok();
    assert!(out.stdout.contains("dry run: 12 change(s) would be made; nothing was written"), "{}", out.stdout);
}

#[test]
fn code_stock_only_grows_and_used_codes_keep_their_state() {
    let db = TestDb::new();
    let doc = standard_setup(SIM);
    db.apply(&doc);
    db.client()
        .batch_execute(
            "UPDATE code_items SET state = 'used', order_id = gen_random_uuid(), used_at = now() WHERE code = 'AAAA-1111'",
        )
        .unwrap();
    let mut fewer = doc.clone();
    fewer["tenants"][0]["code_groups"][0]["codes"] = json!(["AAAA-1111", "DDDD-4444"]);
    let out = apply_json(&db, &fewer);
    assert_eq!(out["codes_added"], 1);
    assert_eq!(out["code_groups"]["updated"], json!(["alsham/itunes-10"]));
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items"), 4, "codes missing from the file are kept");
    assert_eq!(db.query_i64("SELECT count(*) FROM code_items WHERE code = 'AAAA-1111' AND state = 'used'"), 1);
}

#[test]
fn a_package_gets_exactly_the_files_mappings_and_updates_are_reported() {
    let db = TestDb::new();
    let doc = standard_setup(SIM);
    db.apply(&doc);
    let mut changed = doc.clone();
    let pubg = &mut changed["tenants"][0]["packages"][0];
    pubg["routing"] = json!({"mode": "auto", "provider_type": "external", "primary": "znet-main"});
    pubg["mappings"] = json!({"znet-main": {"oyun": "7001", "kupur": "60"}});
    pubg["price"] = json!("1.25");
    changed["tenants"][0]["providers"][1]["enabled"] = json!(false);
    changed["tenants"][0]["providers"][1]["max_in_flight"] = json!(4);
    let out = apply_json(&db, &changed);
    assert_eq!(out["packages"]["updated"], json!(["alsham/pubg-60"]));
    assert_eq!(out["providers"]["updated"], json!(["alsham/xstor"]));
    assert_eq!(out["changes"], 2);
    assert_eq!(
        db.query_i64("SELECT count(*) FROM package_mappings pm JOIN packages p ON p.id = pm.package_id WHERE p.name = 'pubg-60'"),
        1
    );
    assert_eq!(
        db.query_i64("SELECT count(*) FROM packages WHERE name = 'pubg-60' AND fallback_provider_id IS NULL AND price = 1.25"),
        1
    );
    // xstor is now disabled and still the primary of freefire-100: saved, with a warning.
    assert_eq!(out["warnings"][0]["code"], "primary_disabled", "{out:#}");
    assert_eq!(out["warnings"][0]["package"], "freefire-100");
    let table = db.cmd().args(["apply", "-f", "-"]).stdin(changed.to_string()).run().ok();
    assert!(
        table.stderr.contains("tenant alsham, package freefire-100: primary provider xstor is disabled; enable provider xstor"),
        "{}",
        table.stderr
    );
}

#[test]
fn an_empty_code_group_is_a_warning_not_an_error() {
    let db = TestDb::new();
    let doc = json!({"tenants": [{"name": "alsham", "code_groups": [{"name": "g"}], "packages": [
        {"name": "gift", "product": "Gift", "price": "5", "routing": {"mode": "auto", "provider_type": "codes", "code_group": "g"}}]}]});
    let out = apply_json(&db, &doc);
    assert_eq!(
        out["warnings"],
        json!([{"tenant": "alsham", "package": "gift", "code": "empty_code_group",
        "message": "tenant alsham, package gift: code group g has no available codes; add codes to code group g"}])
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM packages"), 1);
}

fn two_tenants(db: &TestDb) {
    db.apply(&standard_setup(SIM));
    db.apply(&json!({"tenants": [{"name": "zeta",
        "users": [{"name": "zed", "email": "zed@example.com", "balance": "5.00", "overdraft_limit": "2.50"}],
        "providers": [{"name": "zeta-znet", "kind": "znet", "base_url": SIM, "credentials": {"kod": "k", "sifre": "zeta-pass"}}],
        "packages": [{"name": "zeta-pack", "product": "Z", "price": "3.00", "routing": {"mode": "manual", "provider_type": "manual"}}]}]}));
}

#[test]
fn listings_show_tables_and_json_scoped_to_the_tenant() {
    let db = TestDb::new();
    two_tenants(&db);

    let tenants = db.cmd().args(["tenant", "list", "--output", "json"]).run().ok().json();
    assert_eq!(
        tenants,
        json!([
            {"name": "alsham", "users": 1, "providers": 2, "packages": 4, "open_orders": 0},
            {"name": "zeta", "users": 1, "providers": 1, "packages": 1, "open_orders": 0}
        ])
    );
    let one = db.cmd().args(["tenant", "list", "--tenant", "zeta", "--output", "json"]).run().ok().json();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let table = db.cmd().args(["tenant", "list"]).run().ok().stdout;
    assert!(table.contains("alsham") && table.contains("open orders"), "{table}");

    let users = db.cmd().args(["user", "list", "--tenant", "zeta", "--output", "json"]).run().ok().json();
    assert_eq!(
        users,
        json!([{"name": "zed", "email": "zed@example.com", "balance": "5.00", "overdraft_limit": "2.50", "available": "7.50"}])
    );
    let table = db.cmd().args(["user", "list", "--tenant", "alsham"]).run().ok().stdout;
    assert!(table.contains("halil") && table.contains("1000.00") && !table.contains("zed"), "{table}");

    let providers = db.cmd().args(["provider", "list", "--tenant", "zeta", "--output", "json"]).run().ok().json();
    assert_eq!(
        providers,
        json!([{"tenant": "zeta", "name": "zeta-znet", "kind": "znet", "base_url": SIM,
        "enabled": true, "retired": false, "max_in_flight": 16, "credential_fields": ["kod", "sifre"], "credentials": "plain values",
        "rate_limit": null, "currency": null,
        "schedule": {
            "first_check": {"value": "1m", "ms": 60000, "source": "default"},
            "backoff_base": {"value": "30s", "ms": 30000, "source": "default"},
            "backoff_max": {"value": "10m", "ms": 600000, "source": "default"},
            "max_checks": {"value": 20, "source": "default"},
            "give_up_after": {"value": "24h", "ms": 86400000, "source": "default"}},
        "health": {"balance": null, "balance_at": null, "balance_age_s": null, "low_balance": null, "low": false,
            "hold": null, "hold_reason": null, "breaker": "closed", "failures": 0, "breaker_since": null,
            "unavailable": [], "waiting_orders": 0}}])
    );
    let all = db.cmd().args(["provider", "list", "--output", "json"]).run().ok().json();
    assert_eq!(all.as_array().unwrap().len(), 3);
    let table = db.cmd().args(["provider", "list", "--tenant", "alsham"]).run().ok().stdout;
    assert!(table.contains("znet-main") && !table.contains("zeta"), "{table}");

    let packages = db.cmd().args(["package", "list", "--tenant", "alsham", "--output", "json"]).run().ok().json();
    let names: Vec<&str> = packages.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["freefire-100", "itunes-10", "jawaker", "pubg-60"]);
    let pubg = &packages[3];
    assert_eq!(pubg["routing"], "auto → external znet-main (fallback xstor)");
    assert_eq!(pubg["price"], "1.10");
    assert_eq!(pubg["primary"], "znet-main");
    assert_eq!(pubg["problems"], json!([]));
    assert_eq!(packages[1]["routing"], "auto → codes itunes-10 (3 available)");
    assert_eq!(packages[1]["codes_available"], 3);
    assert_eq!(packages[2]["routing"], "manual");
    let table = db.cmd().args(["package", "list", "--tenant", "alsham"]).run().ok().stdout;
    assert!(table.contains("auto → external znet-main (fallback xstor)") && !table.contains("zeta-pack"), "{table}");

    // A problem shows in the problems column.
    db.client().batch_execute("UPDATE providers SET enabled = false WHERE name = 'xstor'").unwrap();
    let packages = db.cmd().args(["package", "list", "--tenant", "alsham", "--output", "json"]).run().ok().json();
    assert_eq!(packages[0]["problems"][0]["code"], "primary_disabled");
    let table = db.cmd().args(["package", "list", "--tenant", "alsham"]).run().ok().stdout;
    assert!(table.contains("primary provider xstor is disabled"), "{table}");
}

#[test]
fn listings_that_need_a_tenant_say_so_and_unknown_tenants_are_not_found() {
    let db = TestDb::new();
    two_tenants(&db);
    for what in ["user", "package"] {
        let out = db.cmd().args([what, "list"]).run().code(2);
        assert!(out.stderr.contains("needs a tenant") && out.stderr.contains("--tenant"), "{}", out.stderr);
        let out = db.cmd().args([what, "list", "--tenant", "nope"]).run().code(3);
        assert!(out.stderr.contains("tenant 'nope' does not exist"), "{}", out.stderr);
    }
    db.cmd().args(["provider", "list", "--tenant", "nope"]).run().code(3);
    db.cmd().args(["tenant", "list", "--tenant", "nope"]).run().code(3);
    let out = db.cmd().args(["user", "list"]).env("ORDERCTL_TENANT", "zeta").run().ok();
    assert!(out.stdout.contains("zed"), "{}", out.stdout);
}
