//! Issue 23 item 6: a tenant's currency, exchange rates declared in setup, and the rate each
//! order snapshots with its provider cost. `stats --money` converts every cost with its own
//! order's rate (decimal-exact against the prices the simulator recorded), a later rate never
//! rewrites a past margin, costs no rate converts stay apart, and the below-cost warnings
//! compare in the tenant's money.

use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).unwrap()
}

/// Tenant alsham sells in TRY; Znet charges in the tenant's money (no currency of its own),
/// x-stor in USD; `rate` is the declared USD/TRY, if any.
fn try_and_usd_setup(sim: &Sim, rate: Option<&str>) -> Value {
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["currency"] = json!("TRY");
    setup["tenants"][0]["providers"][1]["currency"] = json!("USD");
    setup["tenants"][0]["users"][0]["balance"] = json!("5000.00");
    if let Some(rate) = rate {
        setup["exchange_rates"] = json!({ "USD/TRY": rate });
    }
    setup
}

fn finish_all(db: &TestDb) {
    wait_until("every order final", Duration::from_secs(60), || {
        db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
        open_orders(db) == 0
    });
}

/// Per provider, from the simulator's own record of what it charged (joined to orderctl's
/// orders by reference) and the rate each order recorded: (delivered, converted cost, margin,
/// converted cost of cancelled).
fn expected_from_simulator(
    db: &TestDb,
    sim: &Sim,
    rates: &BTreeMap<&str, Decimal>,
) -> BTreeMap<String, (i64, Decimal, Decimal, Decimal)> {
    let mut recorded: BTreeMap<String, (Decimal, bool)> = BTreeMap::new();
    for o in sim.stats()["orders"].as_array().unwrap() {
        recorded.insert(o["reference"].as_str().unwrap().to_string(), (dec(&o["price"]), o["outcome"] == "approved"));
    }
    let mut out: BTreeMap<String, (i64, Decimal, Decimal, Decimal)> = BTreeMap::new();
    let rows = db
        .client()
        .query(
            "SELECT p.name, o.provider_referans, o.price::text, o.cost_rate::text
               FROM orders o JOIN providers p ON p.id = o.provider_id WHERE o.provider_cost IS NOT NULL",
            &[],
        )
        .unwrap();
    for r in rows {
        let (provider, reference, price): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let (charged, approved) = recorded[&reference];
        let rate = rates[provider.as_str()];
        let snapshot: Option<String> = r.get(3);
        assert_eq!(snapshot.map(|s| Decimal::from_str(&s).unwrap()), Some(rate), "order {reference}'s rate snapshot");
        let e = out.entry(provider).or_default();
        if approved {
            e.0 += 1;
            e.1 += charged * rate;
            e.2 += Decimal::from_str(&price).unwrap() - charged * rate;
        } else {
            e.3 += charged * rate;
        }
    }
    out
}

fn money_by_provider(db: &TestDb) -> Value {
    db.cmd().args(["--output", "json", "stats", "--money", "--by", "provider"]).run().ok().json()
}

fn row<'a>(report: &'a Value, provider: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["key"] == provider).unwrap_or_else(|| panic!("{provider}: {report}"))
}

#[test]
fn stats_money_converts_each_cost_with_the_rate_its_order_recorded_and_a_new_rate_rewrites_no_past_margin() {
    let sim = Sim::start(&["--complete-after", "0s", "--cancel-share", "0.25"]);
    let db = TestDb::new();
    db.apply(&try_and_usd_setup(&sim, Some("34.1234")));
    insert_orders(&db, "pubg-60", 10);
    insert_orders(&db, "freefire-100", 8);
    finish_all(&db);

    let rates = BTreeMap::from([("znet-main", Decimal::ONE), ("xstor", Decimal::from_str("34.1234").unwrap())]);
    let expected = expected_from_simulator(&db, &sim, &rates);
    assert_eq!(expected.len(), 2, "both providers placed orders: {expected:?}");
    let report = money_by_provider(&db);
    for (provider, (delivered, cost, margin, cancelled)) in &expected {
        let r = row(&report, provider);
        assert_eq!(r["currency"], "TRY", "{r}");
        assert_eq!(r["delivered"].as_i64().unwrap(), *delivered, "{r}");
        assert_eq!(dec(&r["provider_cost"]), *cost, "converted cost of {provider}, decimal-exact: {r}");
        assert_eq!(r["margin_orders"].as_i64().unwrap(), *delivered, "{r}");
        assert_eq!(dec(&r["margin"]), *margin, "margin of {provider}: {r}");
        assert_eq!(dec(&r["cost_of_cancelled"]), *cancelled, "{r}");
        assert_eq!(r["unconverted"], json!([]), "{r}");
    }
    assert!(dec(&row(&report, "xstor")["provider_cost"]) > Decimal::from(30), "x-stor's USD costs were converted: {report}");

    // The rate changes: the orders already placed keep theirs.
    db.apply(&try_and_usd_setup(&sim, Some("40.00")));
    assert_eq!(money_by_provider(&db)["rows"], report["rows"], "a new rate rewrote past margins");

    // An order placed now records the new rate.
    let before = dec(&row(&report, "xstor")["provider_cost"]) + dec(&row(&report, "xstor")["cost_of_cancelled"]);
    insert_orders(&db, "freefire-100", 1);
    finish_all(&db);
    let rate: String = db
        .client()
        .query_one("SELECT cost_rate::text FROM orders WHERE package_id = (SELECT id FROM packages WHERE name = 'freefire-100') ORDER BY created_at DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(Decimal::from_str(&rate).unwrap(), Decimal::from(40));
    let after = money_by_provider(&db);
    let now = dec(&row(&after, "xstor")["provider_cost"]) + dec(&row(&after, "xstor")["cost_of_cancelled"]);
    assert_eq!(now - before, Decimal::from_str("0.95").unwrap() * Decimal::from(40), "the new order at 40: {after}");
    // The table names the currency and the unconverted column.
    let table = db.cmd().args(["stats", "--money"]).run().ok().stdout;
    assert!(table.contains("TRY") && table.contains("unconverted cost"), "{table}");
}

#[test]
fn costs_no_declared_rate_converts_are_reported_unconverted_never_added_in() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    db.apply(&try_and_usd_setup(&sim, None));
    insert_orders(&db, "pubg-60", 4);
    insert_orders(&db, "freefire-100", 5);
    finish_all(&db);
    let unconverted: Option<String> = db
        .client()
        .query_one(
            "SELECT max(cost_rate)::text FROM orders o JOIN providers p ON p.id = o.provider_id WHERE p.name = 'xstor'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unconverted, None, "no USD/TRY rate: x-stor's orders recorded none");

    let report = money_by_provider(&db);
    let x = row(&report, "xstor");
    assert_eq!((x["currency"].as_str(), x["delivered"].as_i64()), (Some("TRY"), Some(5)), "{x}");
    assert_eq!(
        (dec(&x["provider_cost"]), x["margin_orders"].as_i64(), &x["margin"]),
        (Decimal::ZERO, Some(0), &Value::Null),
        "{x}"
    );
    let u = &x["unconverted"][0];
    assert_eq!((u["cost_currency"].as_str(), u["delivered"].as_i64()), (Some("USD"), Some(5)), "{x}");
    assert_eq!(dec(&u["provider_cost"]), Decimal::from_str("0.95").unwrap() * Decimal::from(5), "in USD, as charged: {x}");
    // Znet charges in the tenant's money: converted at 1, margin counted.
    let z = row(&report, "znet-main");
    assert_eq!((z["margin_orders"].as_i64(), z["unconverted"].clone()), (Some(4), json!([])), "{z}");
    let table = db.cmd().args(["stats", "--money", "--by", "provider"]).run().ok().stdout;
    assert!(table.contains("5 delivered: 4.75 USD"), "{table}");
}

fn findings(db: &TestDb, code: &str) -> Vec<Value> {
    let all = db.cmd().args(["--output", "json", "routing", "check"]).run().ok().json();
    all.as_array().unwrap().iter().filter(|f| f["code"] == code && f["package"] == "freefire-100").cloned().collect()
}

/// x-stor lists "502" at 0.95 USD and freefire-100 sells at 2.00 TRY: below cost at any rate
/// above 2.1052..., and never compared as if 0.95 were TRY.
#[test]
fn below_cost_warnings_compare_in_the_tenant_currency_or_say_no_rate_is_declared() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    db.apply(&try_and_usd_setup(&sim, None));
    db.cmd().args(["provider", "check", "xstor"]).run().ok();
    assert!(findings(&db, "price_below_cost").is_empty());
    let none = findings(&db, "cost_not_converted");
    assert_eq!(none.len(), 1, "{none:?}");
    assert!(none[0]["problem"].as_str().unwrap().contains("no exchange rate USD/TRY is declared"), "{none:?}");
    assert!(none[0]["fix"].as_str().unwrap().contains("\"USD/TRY\""), "{none:?}");
    // A recorded order cost as well: still one finding for the mapping, naming both costs.
    insert_orders(&db, "freefire-100", 1);
    db.client()
        .batch_execute(
            "UPDATE orders SET provider_id = (SELECT id FROM providers WHERE name = 'xstor'), provider_cost = 0.97,
                    provider_cost_currency = 'USD', sent_at = now()",
        )
        .unwrap();
    let none = findings(&db, "cost_not_converted");
    assert_eq!(none.len(), 1, "one finding per mapping, not one per cost: {none:?}");
    let problem = none[0]["problem"].as_str().unwrap();
    assert!(problem.contains("0.95 USD (catalogue), 0.97 USD (last order)"), "{problem}");
    db.client().batch_execute("UPDATE orders SET provider_cost = NULL, provider_cost_currency = NULL").unwrap();

    // 0.95 × 2.1 = 1.995 < 2.00: not below cost; 0.95 × 2.2 = 2.09: below.
    db.apply(&try_and_usd_setup(&sim, Some("2.1")));
    assert!(findings(&db, "price_below_cost").is_empty() && findings(&db, "cost_not_converted").is_empty());
    db.apply(&try_and_usd_setup(&sim, Some("2.2")));
    let below = findings(&db, "price_below_cost");
    assert_eq!(below.len(), 1, "{below:?}");
    let problem = below[0]["problem"].as_str().unwrap();
    assert!(
        problem.contains("sells at 2.00 TRY") && problem.contains("0.95 USD (= 2.09 TRY at the declared rate USD/TRY 2.2)"),
        "{problem}"
    );
    // `doctor` says the same, from the catalogue it reads itself.
    let doctor = db.cmd().args(["--output", "json", "doctor", "--providers"]).run();
    assert!(doctor.stdout.contains("0.95 USD (= 2.09 TRY at the declared rate USD/TRY 2.2)"), "{}", doctor.stdout);
}

#[test]
fn exchange_rates_apply_like_the_rest_of_the_setup() {
    let sim = Sim::start(&[]);
    let db = TestDb::new();
    let setup = try_and_usd_setup(&sim, Some("34.10"));
    db.apply(&setup);
    let dry = |doc: &Value, extra: &[&str]| {
        db.cmd().args(["--output", "json", "apply", "--dry-run", "-f", "-"]).args(extra).stdin(doc.to_string()).run().ok().json()
    };
    assert_eq!(dry(&setup, &[])["changes"], 0, "the same rates plan nothing");
    let mut same = setup.clone();
    same["exchange_rates"]["USD/TRY"] = json!("34.100");
    assert_eq!(dry(&same, &[])["changes"], 0, "34.100 is 34.10");
    let mut changed = setup.clone();
    changed["exchange_rates"]["USD/TRY"] = json!("35");
    let plan = dry(&changed, &[]);
    assert_eq!(plan["changes"], 1, "{plan}");
    assert_eq!(plan["plan"]["steps"][0]["name"], "USD/TRY");
    // A file without exchange_rates says nothing about them; one with {} names none.
    let mut silent = setup.clone();
    silent.as_object_mut().unwrap().remove("exchange_rates");
    assert_eq!(dry(&silent, &["--prune"])["changes"], 0);
    let mut empty = setup.clone();
    empty["exchange_rates"] = json!({});
    let plan = dry(&empty, &[]);
    assert_eq!((plan["changes"].as_i64(), plan["plan"]["not_in_file"][0]["name"].as_str()), (Some(0), Some("USD/TRY")), "{plan}");
    db.cmd().args(["apply", "--prune", "-f", "-"]).stdin(empty.to_string()).run().ok();
    let live = db.query_i64("SELECT count(*) FROM exchange_rates WHERE retired_at IS NULL");
    assert_eq!(live, 0, "--prune retired the rate");
    // Named again: revived.
    let plan = dry(&setup, &[]);
    assert_eq!(plan["plan"]["steps"][0]["action"], "revive", "{plan}");
    db.apply(&setup);
    // Export writes the tenant's currency and the rates, and applies back as no change.
    let exported = db.cmd().args(["export"]).run().ok().json();
    assert_eq!(
        (exported["tenants"][0]["currency"].as_str(), exported["exchange_rates"]["USD/TRY"].as_str()),
        (Some("TRY"), Some("34.1"))
    );
    // (Exported secrets are {"stored": true}: dry-run against the same database.)
    assert_eq!(dry(&exported, &[])["changes"], 0, "{exported}");

    // Bad rates are refused with where and why; a tenant-scoped apply may not declare rates.
    let mut bad = setup.clone();
    bad["exchange_rates"] = json!({"USD/TRY": 34.1, "usd/EUR": "1", "EUR/TRY": "-2"});
    bad["tenants"][0]["currency"] = json!("lira");
    let out = db.cmd().args(["--output", "json", "apply", "-f", "-"]).stdin(bad.to_string()).run();
    assert_ne!(out.code, 0);
    let problems = out.json();
    let paths: Vec<&str> = problems.as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    for p in ["exchange_rates.USD/TRY", "exchange_rates.usd/EUR", "exchange_rates.EUR/TRY", "tenants[0].currency"] {
        assert!(paths.contains(&p), "{p} not reported: {problems}");
    }
    let out = db.cmd().args(["--tenant", "alsham", "apply", "-f", "-"]).stdin(setup.to_string()).run();
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("exchange_rates"), "{}", out.stderr);
}
