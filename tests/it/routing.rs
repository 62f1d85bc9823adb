//! Contradictory routing cannot be saved (the database refuses it too), and `orderctl routing
//! check` finds every routing problem, including ones planted behind orderctl's back by SQL.

use crate::support::*;
use serde_json::{json, Value};

const SIM: &str = "http://127.0.0.1:18080";

/// Run SQL expected to break a CHECK constraint; return the constraint's name.
fn refused_by(db: &TestDb, sql: &str) -> String {
    let err = db.client().batch_execute(sql).expect_err("the database accepted a contradictory routing");
    let db_err = err.as_db_error().expect("a server error");
    assert_eq!(*db_err.code(), postgres::error::SqlState::CHECK_VIOLATION, "{db_err:?}");
    db_err.constraint().expect("names its constraint").to_string()
}

#[test]
fn the_database_refuses_each_contradiction_written_by_raw_sql() {
    let db = TestDb::new();
    db.apply(&standard_setup(SIM));
    let insert = |routing: &str| {
        format!(
            "INSERT INTO packages (tenant_id, product_id, name, price, routing_mode, provider_type,
                                   primary_provider_id, fallback_provider_id, code_group_id)
             SELECT t.id, (SELECT id FROM products WHERE name = 'PUBG Mobile'), 'raw', 1, {routing}
               FROM tenants t WHERE t.name = 'alsham'"
        )
    };
    let znet = "(SELECT id FROM providers WHERE name = 'znet-main')";
    let cases = [
        ("'auto', 'manual', NULL, NULL, NULL".to_string(), "routing_auto_cannot_be_manual"),
        ("'auto', 'external', NULL, NULL, NULL".to_string(), "routing_auto_external_needs_primary"),
        ("'manual', 'codes', NULL, NULL, NULL".to_string(), "routing_codes_needs_code_group"),
        (format!("'auto', 'external', {znet}, {znet}, NULL"), "routing_fallback_differs_from_primary"),
    ];
    for (routing, constraint) in &cases {
        assert_eq!(refused_by(&db, &insert(routing)), *constraint, "INSERT {routing}");
    }
    let updates = [
        ("routing_mode = 'auto', provider_type = 'manual'", "jawaker", "routing_auto_cannot_be_manual"),
        ("primary_provider_id = NULL, fallback_provider_id = NULL", "pubg-60", "routing_auto_external_needs_primary"),
        ("code_group_id = NULL", "itunes-10", "routing_codes_needs_code_group"),
        ("fallback_provider_id = primary_provider_id", "pubg-60", "routing_fallback_differs_from_primary"),
    ];
    for (set, package, constraint) in updates {
        let sql = format!("UPDATE packages SET {set} WHERE name = '{package}'");
        assert_eq!(refused_by(&db, &sql), constraint, "{sql}");
    }
    db.cmd().args(["routing", "check"]).run().ok();
}

#[test]
fn a_clean_database_passes_the_check() {
    let db = TestDb::new();
    let out = db.cmd().args(["routing", "check"]).run().ok();
    assert!(out.stdout.contains("routing of 0 package(s) checked: no problems"), "{}", out.stdout);
    db.apply(&standard_setup(SIM));
    let out = db.cmd().args(["routing", "check"]).run().ok();
    assert!(out.stdout.contains("routing of 4 package(s) checked: no problems"), "{}", out.stdout);
    assert_eq!(db.cmd().args(["routing", "check", "--output", "json"]).run().ok().json(), json!([]));
}

/// The standard setup plus packages to break one way each.
fn setup_with_victims(db: &TestDb) {
    let mut doc = standard_setup(SIM);
    let packages = doc["tenants"][0]["packages"].as_array_mut().unwrap();
    for name in ["incident", "no-primary", "no-group"] {
        packages.push(json!({"name": name, "product": "Misc", "price": "1.00",
            "routing": {"mode": "manual", "provider_type": "manual"}}));
    }
    packages.push(json!({"name": "same-fallback", "product": "Misc", "price": "1.00",
        "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main"},
        "mappings": {"znet-main": {"oyun": "1", "kupur": "2"}}}));
    packages.push(json!({"name": "fallback-off", "product": "Misc", "price": "1.00",
        "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main", "fallback": "xstor"},
        "mappings": {"znet-main": {"oyun": "1", "kupur": "2"}, "xstor": {"product_id": "9"}}}));
    db.apply(&doc);
}

fn finding<'a>(findings: &'a [Value], package: &str, code: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["package"] == package && f["code"] == code)
        .unwrap_or_else(|| panic!("no {code} finding for {package} in {findings:#?}"))
}

#[test]
fn routing_check_finds_every_problem_planted_by_sql() {
    let db = TestDb::new();
    setup_with_victims(&db);
    db.client()
        .batch_execute(
            "-- pubg-60 loses its znet mapping
             DELETE FROM package_mappings WHERE package_id = (SELECT id FROM packages WHERE name = 'pubg-60')
                AND provider_id = (SELECT id FROM providers WHERE name = 'znet-main');
             -- itunes-10's stock runs out
             UPDATE code_items SET state = 'used', order_id = gen_random_uuid(), used_at = now();
             -- the contradictions, once their constraints are gone
             ALTER TABLE packages DROP CONSTRAINT routing_fallback_differs_from_primary;
             UPDATE packages SET fallback_provider_id = primary_provider_id WHERE name = 'same-fallback';
             ALTER TABLE packages DROP CONSTRAINT routing_auto_cannot_be_manual;
             UPDATE packages SET routing_mode = 'auto', provider_type = 'manual' WHERE name = 'incident';
             ALTER TABLE packages DROP CONSTRAINT routing_auto_external_needs_primary;
             UPDATE packages SET routing_mode = 'auto', provider_type = 'external' WHERE name = 'no-primary';
             ALTER TABLE packages DROP CONSTRAINT routing_codes_needs_code_group;
             UPDATE packages SET routing_mode = 'auto', provider_type = 'codes' WHERE name = 'no-group';",
        )
        .unwrap();
    // A disabled provider: xstor is freefire-100's primary and fallback-off's fallback.
    db.client().batch_execute("UPDATE providers SET enabled = false WHERE name = 'xstor'").unwrap();

    let out = db.cmd().args(["routing", "check", "--output", "json"]).run().code(8);
    assert!(out.stderr.contains("routing problem(s)"), "{}", out.stderr);
    let findings = out.json();
    let findings = findings.as_array().unwrap();
    let incident = finding(findings, "incident", "auto_with_manual_provider_type");
    assert_eq!(incident["tenant"], "alsham");
    assert_eq!(incident["problem"], "routing mode is auto but provider_type is manual and no primary provider is set");
    assert_eq!(incident["fix"], "set routing.primary with provider_type external, or use mode manual");
    finding(findings, "no-primary", "external_without_primary");
    finding(findings, "no-group", "codes_without_code_group");
    let same = finding(findings, "same-fallback", "fallback_equals_primary");
    assert_eq!(same["problem"], "the fallback provider is the primary provider (znet-main)");
    assert_eq!(
        finding(findings, "freefire-100", "primary_disabled")["fix"],
        "enable provider xstor, or route the package to another provider"
    );
    finding(findings, "fallback-off", "fallback_disabled");
    let unmapped = finding(findings, "pubg-60", "missing_mapping");
    assert_eq!(unmapped["problem"], "there is no mapping for provider znet-main, so it cannot be told which product to deliver");
    assert_eq!(finding(findings, "itunes-10", "empty_code_group")["fix"], "add codes to code group itunes-10");
    // pubg-60 also has the disabled xstor as its fallback.
    finding(findings, "pubg-60", "fallback_disabled");
    assert_eq!(findings.len(), 9, "{findings:#?}");

    // The table: one line per problem with its fix, findings on stdout before the exit 8.
    let out = db.cmd().args(["routing", "check"]).run().code(8);
    for text in [
        "routing mode is auto but provider_type is manual and no primary provider is set",
        "set routing.primary with provider_type external, or use mode manual",
        "code group itunes-10 has no available codes",
        "primary provider xstor is disabled",
    ] {
        assert!(out.stdout.contains(text), "{text} not in\n{}", out.stdout);
    }
    assert!(out.stderr.contains("error: 9 routing problem(s) in 8 of 9 package(s)"), "{}", out.stderr);
    assert!(out.stderr.contains("hint: fix each as its line says"), "{}", out.stderr);

    // The listing names the same problems.
    let packages = db.cmd().args(["package", "list", "--tenant", "alsham", "--output", "json"]).run().ok().json();
    let incident = packages.as_array().unwrap().iter().find(|p| p["name"] == "incident").unwrap();
    assert_eq!(incident["problems"][0]["code"], "auto_with_manual_provider_type");
    assert_eq!(incident["routing"], "auto → manual");
}

#[test]
fn routing_check_respects_the_tenant() {
    let db = TestDb::new();
    db.apply(&standard_setup(SIM));
    db.apply(&json!({"tenants": [{"name": "zeta", "code_groups": [{"name": "empty"}], "packages": [
        {"name": "zeta-gift", "product": "Gift", "price": "1", "routing": {"mode": "auto", "provider_type": "codes", "code_group": "empty"}}]}]}));
    let all = db.cmd().args(["routing", "check", "--output", "json"]).run().code(8).json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(all[0]["tenant"], "zeta");
    let alsham = db.cmd().args(["routing", "check", "--tenant", "alsham", "--output", "json"]).run().ok().json();
    assert_eq!(alsham, json!([]));
    let out = db.cmd().args(["routing", "check", "--tenant", "nope"]).run().code(3);
    assert!(out.stderr.contains("tenant 'nope' does not exist"), "{}", out.stderr);
}

#[test]
fn apply_and_routing_check_word_a_contradiction_identically() {
    let db = TestDb::new();
    let doc = json!({"tenants": [{"name": "alsham", "packages": [
        {"name": "pubg-60", "product": "PUBG", "price": "1", "routing": {"mode": "auto", "provider_type": "manual"}}]}]});
    let refused = db.cmd().args(["apply", "-f", "-", "--output", "json"]).stdin(doc.to_string()).run().code(4).json();
    let sentence = refused[0]["message"].as_str().unwrap().to_string();

    let mut planted = doc.clone();
    planted["tenants"][0]["packages"][0]["routing"] = json!({"mode": "manual", "provider_type": "manual"});
    db.apply(&planted);
    db.client()
        .batch_execute(
            "ALTER TABLE packages DROP CONSTRAINT routing_auto_cannot_be_manual;
             UPDATE packages SET routing_mode = 'auto'",
        )
        .unwrap();
    let found = db.cmd().args(["routing", "check", "--output", "json"]).run().code(8).json();
    assert_eq!(
        sentence,
        format!(
            "tenant alsham, package pubg-60: {}; {}",
            found[0]["problem"].as_str().unwrap(),
            found[0]["fix"].as_str().unwrap()
        )
    );
    assert_eq!(
        sentence,
        "tenant alsham, package pubg-60: routing mode is auto but provider_type is manual and no primary provider is set; \
         set routing.primary with provider_type external, or use mode manual"
    );
}
