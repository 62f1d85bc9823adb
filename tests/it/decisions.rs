//! Operator commands are idempotent and honest (issue 20, "Why" bullets 4 and 5): the same
//! command with the same arguments is "already done" (exit 0), with other arguments on a
//! decided order a conflict (exit 5) that says what stands; the same with --force.

use crate::orders::{create, inspect, setup};
use crate::support::*;
use std::time::Duration;

fn approve(db: &TestDb, n: &str, pin: &str) -> Output {
    db.cmd().args(["approve", n, "--pin", pin]).run()
}

fn reject(db: &TestDb, n: &str, reason: &str, force: bool) -> Output {
    let mut c = db.cmd().args(["reject", n, "--reason", reason]);
    if force {
        c = c.arg("--force");
    }
    c.run()
}

/// `approve N --pin B` on an order approved with PIN A: exit 5 naming what stands, and PIN A
/// stays. The same approve again: exit 0, nothing changed. Ten approves in parallel with ten
/// PINs: exactly one succeeds, the rest are refused.
#[test]
fn approve_with_another_pin_is_a_conflict_and_the_same_pin_is_already_done() {
    let sim = Sim::start(&[]);
    let db = setup(&sim);
    let n = create(&db, "jawaker", &[])["number"].to_string();
    approve(&db, &n, "PIN-A").ok();
    let again = approve(&db, &n, "PIN-A").ok();
    assert!(again.stderr.contains("already approved"), "{}", again.stderr);
    let other = approve(&db, &n, "PIN-B").code(5);
    assert!(other.stderr.contains("stands approved"), "{}", other.stderr);
    assert_eq!(inspect(&db, &n)["pin_code"], "PIN-A");
    let rejected = reject(&db, &n, "changed my mind", false).code(5);
    assert!(rejected.stderr.contains("stands approved"), "{}", rejected.stderr);

    let m = create(&db, "jawaker", &[])["number"].to_string();
    let codes: Vec<i32> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..10)
            .map(|i| {
                let (db, m) = (&db, &m);
                s.spawn(move || approve(db, m, &format!("PIN-{i}")).code)
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "one PIN wins: {codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 5).count(), 9, "the others are told: {codes:?}");
    assert_money_conserved(&db);
}

/// `reject N --force` while the provider holds the order, then the same command again (a script
/// retrying after a timeout): exit 0 both times, refunded once. Another reason: exit 5.
#[test]
fn a_repeated_forced_reject_is_already_done() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let o = create(&db, "pubg-60", &[]);
    let n = o["number"].to_string();
    wait_until("the provider holds it", Duration::from_secs(10), || inspect(&db, &n)["external_status"] == "sent");
    reject(&db, &n, "buyer asked", false).code(5);
    reject(&db, &n, "buyer asked", true).ok();
    let again = reject(&db, &n, "buyer asked", true).ok();
    assert!(again.stderr.contains("already rejected"), "{}", again.stderr);
    reject(&db, &n, "buyer asked", false).ok();
    let other = reject(&db, &n, "another reason", true).code(5);
    assert!(other.stderr.contains("buyer asked"), "says what stands: {}", other.stderr);
    approve(&db, &n, "PIN").code(5);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind = 'refund'"), 1);
    assert_money_conserved(&db);
}

/// A settlement made once: the same again is already done, the other one a conflict.
#[test]
fn a_settlement_is_made_once() {
    let sim = Sim::start(&["--complete-after", "3s"]);
    let db = setup(&sim);
    let n = create(&db, "pubg-60", &[])["number"].to_string();
    reject(&db, &n, "buyer asked", true).ok();
    // The provider delivers after all: recorded as a late delivery.
    wait_until("the late delivery recorded", Duration::from_secs(20), || {
        db.cmd().args(["poll", &n]).run();
        inspect(&db, &n)["attention"] == "delivered_after_refund"
    });
    db.cmd().args(["settle", &n, "--write-off"]).run().ok();
    db.cmd().args(["settle", &n, "--write-off"]).run().ok();
    let other = db.cmd().args(["settle", &n, "--recharge"]).run().code(5);
    assert!(other.stderr.contains("--write-off"), "{}", other.stderr);
    assert_eq!(db.query_i64("SELECT count(*) FROM ledger WHERE kind IN ('write_off', 'recharge')"), 1);
}
