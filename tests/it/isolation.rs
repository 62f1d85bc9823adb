//! Tenant-private text stays with its tenant (issue 20, "Why" bullet 6): in a chain
//! alpha → beta → gamma, gamma's operator rejects with a private note; alpha's `inspect` and
//! alpha's webhook body show the upstream order's number, state and a neutral reason code only.

use crate::forwarding::forwarding_setup;
use crate::orders::inspect;
use crate::support::*;
use serde_json::json;

const NOTE: &str = "our supplier SupplierCo is out of stock, cost 0.40";

/// The note's cost as a number of its own anywhere (`0.40`, `"0.40"`, `:0.40`), not as the
/// digits inside a timestamp's fraction (`20:51:10.400623Z`, which made the plain search flaky).
fn names_the_cost(text: &str) -> bool {
    let digit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
    text.match_indices("0.40").any(|(at, _)| !digit(text[..at].chars().next_back()) && !digit(text[at + 4..].chars().next()))
}

#[test]
fn a_three_tenant_chain_leaks_no_note_downstream() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let mut doc = forwarding_setup(&sim.base_url);
    // The last tenant of the chain processes by hand; the first one has a webhook.
    doc["tenants"][2]["packages"][0]["routing"] = json!({"mode": "manual", "provider_type": "manual"});
    doc["tenants"][2]["packages"][0].as_object_mut().unwrap().remove("mappings");
    doc["tenants"][0]["webhooks"] = json!([{"url": "http://127.0.0.1:9/hook", "secret": "hook-secret", "events": ["order.rejected"], "allow_private_network": true}]);
    let db = TestDb::new();
    db.apply(&doc);
    let a = db.cmd().args(CREATE_AS_HALIL).args(["--package", "pubg-chain-fwd", "--player", "5550001"]).run().ok().json();
    let n = a["number"].to_string();
    // The middle tenant's order is forwarded on by the routing lane.
    db.cmd().args(["sweep"]).run().ok();
    let last =
        db.query_i64("SELECT o.number FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'supplier'").to_string();
    db.cmd().args(["--tenant", "supplier", "reject", &last, "--reason", NOTE]).run().ok();
    let alpha = db.cmd().args(["--tenant", "alsham", "--output", "json", "inspect", &n]).run().ok();
    let doc = alpha.json();
    assert_eq!(doc["status"], "rejected", "{doc}");
    let shown = alpha.stdout.clone() + &db.cmd().args(["--tenant", "alsham", "inspect", &n]).run().ok().stdout;
    for private in ["SupplierCo", "cost 0.40", "rejected by an operator", "znet-supplier"] {
        assert!(!shown.contains(private), "alpha sees {private:?}:\n{shown}");
    }
    assert!(!names_the_cost(&shown), "alpha sees the cost 0.40:\n{shown}");
    assert!(doc["last_message"].as_str().unwrap().contains("rejected_upstream"), "a neutral reason code: {doc}");
    let middle = inspect(
        &db,
        &db.query_i64("SELECT o.number FROM orders o JOIN tenants t ON t.id = o.tenant_id WHERE t.name = 'wholesale'")
            .to_string(),
    );
    assert!(!middle.to_string().contains("SupplierCo"), "{middle}");
    assert!(middle["last_message"].as_str().unwrap().contains("rejected_by_operator"), "{middle}");
    let bodies: Vec<String> =
        db.client().query("SELECT body FROM webhook_deliveries", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(bodies.len(), 1, "alpha's rejection notice");
    for private in ["SupplierCo", "cost 0.40", "rejected by an operator"] {
        assert!(!bodies[0].contains(private), "the webhook body shows {private:?}: {}", bodies[0]);
    }
    assert!(!names_the_cost(&bodies[0]), "the webhook body shows the cost 0.40: {}", bodies[0]);
    assert_money_conserved(&db);
}

#[test]
fn the_cost_search_finds_the_number_and_not_a_timestamp() {
    assert!(names_the_cost("{\"provider_cost\":\"0.40\"}") && names_the_cost("cost: 0.40 TRY") && names_the_cost("x=0.40"));
    assert!(!names_the_cost("2026-12-07T20:51:10.400623Z") && !names_the_cost("10.40") && !names_the_cost("0.405"));
}
