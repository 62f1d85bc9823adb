//! Issue 23, items 5 and 6: what orders cost at the providers (`stats --money` against the prices
//! the simulator recorded) and request rate limits shared by every process.

use crate::support::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).unwrap()
}

fn setup_with_currencies(sim: &Sim) -> TestDb {
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    // Znet charges in the tenant's own money (no currency of its own); x-stor in another one.
    setup["tenants"][0]["providers"][1]["currency"] = json!("USD");
    setup["tenants"][0]["users"][0]["balance"] = json!("5000.00");
    db.apply(&setup);
    db
}

#[test]
fn stats_money_matches_the_prices_the_simulator_recorded() {
    let sim = Sim::start(&["--complete-after", "0s", "--cancel-share", "0.25"]);
    let db = setup_with_currencies(&sim);
    insert_orders(&db, "pubg-60", 12);
    insert_orders(&db, "freefire-100", 9);
    insert_orders(&db, "itunes-10", 2);
    wait_until("every order final", Duration::from_secs(60), || {
        db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
        open_orders(&db) == 0
    });

    // The simulator's own record: price per reference, and the outcome.
    let stats = sim.stats();
    let mut recorded: BTreeMap<String, (Decimal, bool)> = BTreeMap::new();
    for o in stats["orders"].as_array().unwrap() {
        recorded.insert(o["reference"].as_str().unwrap().to_string(), (dec(&o["price"]), o["outcome"] == "approved"));
    }
    // What orderctl recorded per order: the cost in the provider's currency.
    let mut expected: BTreeMap<(String, String), (Decimal, Decimal, i64)> = BTreeMap::new();
    for r in db
        .client()
        .query(
            "SELECT p.name, o.provider_referans, o.provider_cost::text, coalesce(o.provider_cost_currency, '-'), o.status, o.price::text
               FROM orders o JOIN providers p ON p.id = o.provider_id",
            &[],
        )
        .unwrap()
    {
        let (provider, reference): (String, String) = (r.get(0), r.get(1));
        let (price, approved) = recorded[&reference];
        let cost: Option<String> = r.get(2);
        assert_eq!(cost.as_deref().map(|c| Decimal::from_str(c).unwrap()), Some(price), "order {reference} at {provider}");
        let currency: String = r.get(3);
        assert_eq!(currency, if provider == "znet-main" { "-" } else { "USD" });
        assert_eq!(r.get::<_, String>(4) == "approved", approved, "{reference}");
        if approved {
            let e = expected.entry((provider, currency)).or_default();
            e.0 += price;
            e.1 += Decimal::from_str(&r.get::<_, String>(5)).unwrap() - price;
            e.2 += 1;
        }
    }
    assert!(expected.len() == 2, "both providers delivered: {expected:?}");

    let out = db.cmd().args(["--output", "json", "stats", "--money", "--by", "provider"]).run().ok().json();
    assert_eq!(out["by"], "provider");
    let mut seen = 0;
    for row in out["rows"].as_array().unwrap() {
        // The tenant names no currency: every row is in its unnamed money.
        assert_eq!(row["currency"], "-", "{row}");
        let provider = row["key"].as_str().unwrap().to_string();
        if provider == "-" {
            // Codes: no provider, no cost.
            assert_eq!(dec(&row["provider_cost"]), Decimal::ZERO);
            continue;
        }
        let currency = if provider == "znet-main" { "-" } else { "USD" };
        let (cost, margin, delivered) = expected[&(provider, currency.to_string())];
        assert_eq!(row["delivered"].as_i64().unwrap(), delivered, "{row}");
        if currency == "-" {
            assert_eq!(dec(&row["provider_cost"]), cost, "{row}");
            assert_eq!(dec(&row["margin"]), margin, "{row}");
            assert_eq!(row["unconverted"], json!([]), "{row}");
        } else {
            // No rate converts USD into the tenant's money: shown apart, never added in.
            assert_eq!(dec(&row["provider_cost"]), Decimal::ZERO, "{row}");
            assert_eq!((row["margin"].clone(), row["margin_orders"].as_i64()), (Value::Null, Some(0)), "{row}");
            assert_eq!(row["unconverted"][0]["cost_currency"], "USD", "{row}");
            assert_eq!(dec(&row["unconverted"][0]["provider_cost"]), cost, "{row}");
            assert_eq!(row["unconverted"][0]["delivered"].as_i64().unwrap(), delivered, "{row}");
        }
        assert_eq!(row["cost_unknown"], 0);
        seen += 1;
    }
    assert_eq!(seen, 2, "{out}");
    // Refunds are the ledger's, and the total row agrees with the per-provider rows.
    let total = db.cmd().args(["--output", "json", "stats", "--money"]).run().ok().json();
    let refunds: Decimal = total["rows"].as_array().unwrap().iter().map(|r| dec(&r["refunds"])).sum();
    let ledger = db.query_i64("SELECT (coalesce(sum(amount), 0) * 100)::bigint FROM ledger WHERE kind = 'refund'");
    assert_eq!(refunds * Decimal::from(100), Decimal::from(ledger));
    // The table form names the columns.
    let table = db.cmd().args(["stats", "--money", "--by", "day"]).run().ok();
    assert!(table.stdout.contains("provider cost") && table.stdout.contains("margin"), "{}", table.stdout);
}

#[test]
fn cost_is_dealer_data_and_never_reaches_tenant_facing_output() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["webhooks"] = json!([{"url": "http://127.0.0.1:9/hook", "secret": "hook-secret",
        "events": ["order.approved"], "allow_private_network": true}]);
    db.apply(&setup);
    insert_orders(&db, "pubg-60", 1);
    wait_until("the order final", Duration::from_secs(30), || {
        db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
        open_orders(&db) == 0
    });
    let cost: String = db.client().query_one("SELECT provider_cost::text FROM orders", &[]).unwrap().get(0);
    let id: String = db.client().query_one("SELECT id::text FROM orders", &[]).unwrap().get(0);
    let list = db.cmd().args(["--tenant", "alsham", "--output", "json", "list"]).run().ok().stdout;
    let inspect = db.cmd().args(["--tenant", "alsham", "--output", "json", "inspect", &id]).run().ok().stdout;
    let bodies: Vec<String> =
        db.client().query("SELECT body FROM webhook_deliveries", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(bodies.len(), 1, "the approval is notified");
    // No cost or balance anywhere a tenant looks: not as a field, not in the provider's message.
    let balance: String =
        db.client().query_one("SELECT balance::text FROM provider_health WHERE balance IS NOT NULL", &[]).unwrap().get(0);
    for shown in [&list, &inspect, &bodies[0]] {
        assert!(!shown.contains("provider_cost"), "dealer cost field shown: {shown}");
        assert!(!shown.contains(&balance), "dealer balance {balance} shown: {shown}");
    }
    assert!(!inspect.contains(&cost), "dealer cost {cost} in inspect: {inspect}");
    assert!(!list.contains(&cost) && !bodies[0].contains(&cost), "dealer cost {cost} in a listing or webhook");
}

/// The most calls in any window of `window_ms` (sliding, at call granularity).
fn most_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// The simulator (with `sim_args`) and the standard setup with Znet limited to `rate` and a
/// buyer who can afford hundreds of orders.
fn paced(sim_args: &[&str], rate: &str) -> (Sim, TestDb) {
    let sim = Sim::start(sim_args);
    let db = TestDb::new();
    let mut setup = standard_setup(&sim.base_url);
    setup["tenants"][0]["providers"][0]["rate_limit"] = json!(rate);
    setup["tenants"][0]["users"][0]["balance"] = json!("5000.00");
    db.apply(&setup);
    (sim, db)
}

/// Three daemons share Znet's "20/s": measured at the simulator, no 10 s window holds more than
/// 200 calls + 2 %, and while orders wait the limit is used to at least 90 %.
#[test]
fn a_rate_limit_holds_at_the_provider_across_three_daemons() {
    let (sim, db) = paced(&["--complete-after", "1s", "--threads", "32"], "20/s");
    insert_orders(&db, "pubg-60", 800);
    let daemons: Vec<Background> = (0..3)
        .map(|_| {
            db.cmd()
                .args([
                    "daemon",
                    "--idle-poll",
                    "50ms",
                    "--first-check",
                    "1s",
                    "--backoff-base",
                    "200ms",
                    "--backoff-max",
                    "500ms",
                ])
                .spawn()
        })
        .collect();
    wait_until("calls for 14 s", Duration::from_secs(60), || {
        let t = sim.call_times_ms();
        t.len() > 1 && t[t.len() - 1] - t[0] >= 14_000
    });
    let open = open_orders(&db);
    // What the provider saw while work waited: once every order is placed the checks come;
    // those are not the budget this test is about.
    let stats = sim.stats();
    let stopping = std::time::Instant::now();
    for d in daemons {
        assert_eq!(d.terminate(), 0);
    }
    eprintln!("daemons stopped in {:?}", stopping.elapsed());
    assert!(open > 0, "work waited throughout");
    let mut times = sim.call_times_ms();
    times.sort_unstable();
    let most = most_in_window(&times, 10_000);
    assert!(most as f64 <= 200.0 * 1.02, "{most} calls in one 10 s window at 20/s");
    // Utilisation: from 2 s after the first call (three daemons starting) for 10 s.
    let from = times[0] + 2_000;
    let used = times.iter().filter(|&&t| t >= from && t < from + 10_000).count();
    assert!(used as f64 >= 200.0 * 0.90, "only {used} calls in 10 s while work waited");
    // Placements went first: orders were waiting to be placed all along.
    let (placed, checks) = (stats["placement_calls"].as_u64().unwrap(), stats["status_calls"].as_u64().unwrap());
    eprintln!("rate limit 20/s, 3 daemons: most in 10 s {most}, used {used}/200, placements {placed}, checks {checks}");
    // Placements went first: orders waited to be placed all along, so checks (first due 1 s after
    // a placement; with 0 s the placing caller makes the first check as part of its step) got
    // next to nothing of the budget.
    assert!(checks * 10 <= placed, "checks took the budget from waiting placements: {placed} placements, {checks} checks");
}

/// A lane paced by its provider's rate limit claims about two seconds of placements ahead, and
/// a stopping daemon hands back what it has not sent: due again at once (no lease to wait out),
/// placed by the next daemon, each order exactly once. Before, 16 permits at 20/s held a quarter
/// of the lease claimed (all 150 orders here) and a stop went on placing them for many seconds.
#[test]
fn a_stopping_daemon_hands_back_the_placements_it_has_not_sent() {
    let (sim, db) = paced(&["--complete-after", "0s", "--threads", "32"], "20/s");
    let orders = 150;
    insert_orders(&db, "pubg-60", orders);
    let placements = || sim.stats()["placement_calls"].as_u64().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let first = db.cmd().args(["-v", "daemon", "--idle-poll", "50ms", "--first-check", "1s"]).spawn_logged(log.path());
    wait_until("the first daemon placing", Duration::from_secs(30), || placements() >= 30);
    let at_stop = placements();
    assert_eq!(first.terminate(), 0);
    let after_stop = placements() - at_stop;
    eprintln!("placements after SIGTERM: {after_stop}");
    // What was in a caller's hands (16 callers, each waiting its turn at most) still goes out.
    assert!(after_stop <= 16 + 10, "{after_stop} placements made after SIGTERM");
    let handed_back = db.query_i64("SELECT count(*) FROM orders WHERE last_message LIKE '%handed back for any daemon%'");
    assert!(handed_back > 0, "placements claimed but not sent were handed back");
    let said = std::fs::read_to_string(log.path()).unwrap();
    assert!(said.contains(&format!("{handed_back} claimed placement(s) not sent yet handed back")), "{said}");
    // Nothing unsent is held by the stopped daemon's leases: every one is due now.
    let held = db.query_i64(
        "SELECT count(*) FROM orders WHERE status = 'pending' AND external_status = 'not_sent' AND next_check_at > now()",
    );
    assert_eq!(held, 0, "unsent orders still leased by the stopped daemon");
    let second = db.cmd().args(["daemon", "--idle-poll", "50ms", "--first-check", "1s"]).spawn();
    wait_until("every order placed", Duration::from_secs(60), || placements() >= orders as u64 && open_orders(&db) == 0);
    assert_eq!(second.terminate(), 0);
    let stats = sim.stats();
    assert_eq!(stats["double_placements"], 0, "{stats}");
    assert_eq!(placements(), orders as u64, "each order placed exactly once");
    assert_money_conserved(&db);
}

/// A call that waits for its turn under the provider's rate limit longer than a request may
/// take was never sent. A placement is due again at once, not an "unknown outcome" to reconcile
/// (a status check that spends the same budget, then a wait before placing again: 34 of these
/// 50 orders before, and twice the time); a status check starved by waiting placements is due
/// again shortly, not "no news" with a 30 s backoff. A lane also claims no more than the limit
/// lets it send in about two seconds. 50 orders at 5/s, 16 callers, requests of at most 2 s.
#[test]
fn a_placement_that_never_got_its_turn_under_the_rate_limit_is_not_an_unknown_outcome() {
    let (sim, db) = paced(&["--complete-after", "0s", "--threads", "32"], "5/s");
    let orders = 50;
    insert_orders(&db, "pubg-60", orders);
    let daemon = db
        .cmd()
        .args(["daemon", "--idle-poll", "50ms", "--first-check", "0s", "--request-timeout", "2s", "--lease", "10s"])
        .spawn();
    wait_until("every order final", Duration::from_secs(90), || open_orders(&db) == 0);
    assert_eq!(daemon.terminate(), 0);
    let unknown = db.query_i64(
        "SELECT count(DISTINCT order_id) FROM order_events WHERE message LIKE '%unknown outcome%' OR message LIKE '%nothing was sent%'",
    );
    if unknown > 0 {
        let rows = db.client().query(
            "SELECT kind, message FROM order_events WHERE message LIKE '%unknown outcome%' OR message LIKE '%nothing was sent%' LIMIT 5",
            &[],
        );
        for r in rows.unwrap() {
            eprintln!("{}: {}", r.get::<_, String>(0), r.get::<_, String>(1));
        }
    }
    assert_eq!(unknown, 0, "calls that waited for their turn were taken for unknown outcomes or no news");
    let stats = sim.stats();
    assert_eq!(stats["placement_calls"].as_u64().unwrap(), orders as u64, "each order placed once: {stats}");
    assert_eq!(stats["double_placements"], 0);
    assert_money_conserved(&db);
}

/// `doctor` weighs the calls due in a rate-limited provider's lane against its limit: at 1/h,
/// the orders a daemon routed there and left (one placed, the rest handed back at its stop)
/// take longer than `--stuck-after`, and doctor says so, names the limit and the fix; status
/// checks due count too, alone as well; another tenant's doctor does not see them; at 1000/s
/// the same backlog keeps up.
#[test]
fn doctor_warns_when_a_rate_limit_cannot_keep_up_with_the_placements_due() {
    let (sim, db) = paced(&["--complete-after", "0s"], "1/h");
    insert_orders(&db, "pubg-60", 8);
    let daemon = db.cmd().args(["daemon", "--idle-poll", "50ms", "--request-timeout", "2s", "--lease", "10s"]).spawn();
    wait_until("one placement made", Duration::from_secs(30), || sim.stats()["placement_calls"].as_u64().unwrap() >= 1);
    wait_until("every order routed to the provider", Duration::from_secs(30), || {
        db.query_i64("SELECT count(*) FROM orders WHERE lane = 0") == 0
    });
    let stopping = std::time::Instant::now();
    assert_eq!(daemon.terminate(), 0);
    // A caller waiting for its turn wakes by its request's time (2 s), not at the next slot
    // (here an hour away: the stop took the whole 25 s grace before).
    assert!(stopping.elapsed() < Duration::from_secs(15), "the stop took {:?}", stopping.elapsed());
    let finding = |db: &TestDb, tenant: Option<&str>| -> Option<Value> {
        let mut cmd = db.cmd().args(["--output", "json"]);
        if let Some(t) = tenant {
            cmd = cmd.args(["--tenant", t]);
        }
        let out = cmd.args(["doctor", "--stuck-after", "2m"]).run();
        let report: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|_| panic!("{}", out.stderr));
        doctor_finding(&report, "rate limit")
    };
    // The order placed has its first status check due too (it would get a turn only after
    // every placement).
    db.client()
        .batch_execute(
            "UPDATE orders SET next_check_at = now() - interval '1 s' WHERE status = 'pending' AND external_status <> 'not_sent'",
        )
        .unwrap();
    let due = db.query_i64("SELECT count(*) FROM orders WHERE external_status = 'not_sent' AND next_check_at <= now()");
    assert!(due >= 6, "{due} placements due");
    let f = finding(&db, None).expect("a rate limit finding");
    assert_eq!(f["severity"], "warn", "{f}");
    let message = f["message"].as_str().unwrap();
    assert!(message.contains(&format!("{due} placement(s) due and 1 status check(s) due")) && message.contains("1/h"), "{f}");
    assert!(f["fix"].as_str().unwrap().contains("rate_limit"), "{f}");
    // Status checks alone: under a saturated limit each is due again a second later, so no
    // overdue rule sees them; doctor counts them.
    db.client()
        .batch_execute("UPDATE orders SET next_check_at = now() + interval '1 day' WHERE external_status = 'not_sent'")
        .unwrap();
    let f = finding(&db, None).expect("a rate limit finding");
    assert_eq!(f["severity"], "warn", "{f}");
    assert!(f["message"].as_str().unwrap().contains("0 placement(s) due and 1 status check(s) due"), "{f}");
    db.client().batch_execute("INSERT INTO tenants (name) VALUES ('wholesale')").unwrap();
    assert_eq!(finding(&db, Some("wholesale")), None, "another tenant's doctor sees none of it");
    db.client().batch_execute("UPDATE providers SET rate_limit_calls = 1000, rate_limit_window_ms = 1000").unwrap();
    let f = finding(&db, None).expect("a rate limit line");
    assert_eq!(f["severity"], "ok", "{f}");
}

/// The simulator's Znet sells "7001/60" at 10.12 and the package sells at 1.10: `routing check`
/// and `doctor` warn, from the catalogue as `provider check` read it and from the cost of the
/// last order; neither makes `routing check` fail (selling at a loss may be deliberate).
#[test]
fn a_package_priced_below_its_provider_cost_is_warned_about() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup_with_currencies(&sim);
    let providers = db.cmd().args(["--output", "json", "provider", "list"]).run().ok().json();
    assert_eq!((providers[0]["name"].as_str(), providers[1]["name"].as_str()), (Some("xstor"), Some("znet-main")));
    assert_eq!((providers[0]["currency"].as_str(), providers[1]["currency"].as_str()), (Some("USD"), None), "{providers}");
    let clean = db.cmd().args(["--output", "json", "routing", "check"]).run().ok().json();
    assert!(!clean.to_string().contains("price_below_cost"), "nothing known yet: {clean}");
    db.cmd().args(["provider", "check", "znet-main"]).run().ok();
    let found = db.cmd().args(["--output", "json", "routing", "check"]).run().ok().json();
    let below: Vec<&Value> = found.as_array().unwrap().iter().filter(|f| f["code"] == "price_below_cost").collect();
    assert_eq!(below.len(), 1, "{found}");
    assert_eq!(below[0]["package"], "pubg-60");
    assert!(
        below[0]["problem"].as_str().unwrap().contains("10.12") && below[0]["problem"].as_str().unwrap().contains("catalogue")
    );
    // x-stor charges in USD: not compared (freefire-100 sells at 2.00 and costs 0.95 anyway).
    insert_orders(&db, "pubg-60", 1);
    wait_until("the order final", Duration::from_secs(30), || {
        db.cmd().args(["sweep", "--first-check", "0s"]).run().ok();
        open_orders(&db) == 0
    });
    // `doctor --providers` reads the catalogues itself.
    db.client().execute("DELETE FROM provider_catalogue_prices", &[]).unwrap();
    let doctor = db.cmd().args(["--output", "json", "doctor", "--providers"]).run();
    assert!(doctor.stdout.contains("last order") && doctor.stdout.contains("sells at 1.10"), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("10.12 for it (catalogue)"), "{}", doctor.stdout);
}
