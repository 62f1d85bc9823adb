//! Queue health under a long transaction (issue 24, item 3): another connection holds a
//! REPEATABLE READ transaction with an xid (so vacuum can remove no row version newer than it,
//! and no index entry of one can be marked dead) while orders flow. Every order is still
//! claimed and finished, none twice; and a lane's claim reads a bounded part of the due index,
//! where a claim from the index's start reads the entry of every version written since the
//! snapshot.

use crate::orders::setup;
use crate::support::*;
use orderctl::db::claims::{claim_due_from, ClaimFloor, LaneQuery, FLOOR_GRACE};
use orderctl::db::Client;
use std::time::Duration;

const FAST: &[&str] = &["--first-check", "0s", "--backoff-base", "100ms", "--backoff-max", "300ms"];

/// A connection that holds a snapshot and an xid, having read `orders`, until dropped.
fn hold_a_snapshot(db: &TestDb) -> Client {
    let mut holder = db.client();
    holder.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT txid_current(); SELECT count(*) FROM orders;").unwrap();
    holder
}

/// The held transaction is still open, with its xid and snapshot.
fn assert_still_held(db: &TestDb, holder: &mut Client) {
    let pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let held = db.query_i64(&format!(
        "SELECT count(*) FROM pg_stat_activity
          WHERE pid = {pid} AND state = 'idle in transaction' AND backend_xid IS NOT NULL AND backend_xmin IS NOT NULL"
    ));
    assert_eq!(held, 1, "the long transaction is still open");
}

#[test]
fn orders_flow_to_the_end_while_another_transaction_holds_its_snapshot() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    let mut holder = hold_a_snapshot(&db);
    let daemon = db.cmd().args(["daemon", "--idle-poll", "20ms"]).args(FAST).spawn();
    // Orders arrive while the daemon works, in many small transactions.
    for _ in 0..20 {
        insert_orders(&db, "pubg-60", 25);
        insert_orders(&db, "freefire-100", 5);
    }
    wait_until("every order final under the held snapshot", Duration::from_secs(120), || open_orders(&db) == 0);
    assert_still_held(&db, &mut holder);
    // Later arrivals, after the daemon's floors have moved on, are taken too.
    insert_orders(&db, "pubg-60", 20);
    wait_until("the later orders final", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_still_held(&db, &mut holder);
    assert_eq!(daemon.terminate(), 0);
    holder.batch_execute("COMMIT").unwrap();
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 620);
    let stats = sim.stats();
    assert_eq!(stats["double_placements"], 0);
    assert_eq!(stats["orders_placed"], 620);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
}

/// Due-index entries one placement claim of 100 reads (dead ones included), reading from `from`
/// (None: the index's start): the index's own count of entries it returned to the scan, in the
/// claim's transaction. The plan is checked to read the partial due index.
fn entries_read(c: &mut Client, lane: i64, from: Option<chrono::DateTime<chrono::Utc>>) -> i64 {
    let claim = "SELECT o.id FROM orders o
                  WHERE o.lane = $1 AND o.next_check_at IS NOT NULL AND o.next_check_at <= now()
                    AND o.next_check_at >= coalesce($2::timestamptz, '-infinity') AND o.external_status = 'not_sent'
                  ORDER BY o.next_check_at LIMIT 100 FOR UPDATE SKIP LOCKED";
    let mut tx = c.transaction().unwrap();
    let plan: Vec<String> = tx.query(&format!("EXPLAIN {claim}"), &[&lane, &from]).unwrap().iter().map(|r| r.get(0)).collect();
    assert!(plan.iter().any(|l| l.contains("Index Scan using orders_due_placements")), "{plan:#?}");
    // The counter holds this backend's counts not yet reported, earlier transactions' too: the
    // difference across the claim, in one transaction, is the claim's.
    let counted = "SELECT pg_stat_get_xact_tuples_returned('orders_due_placements'::regclass)";
    let before: i64 = tx.query_one(counted, &[]).unwrap().get(0);
    assert_eq!(tx.query(claim, &[&lane, &from]).unwrap().len(), 100);
    let read = tx.query_one(counted, &[]).unwrap().get::<_, i64>(0) - before;
    tx.rollback().unwrap();
    read
}

/// `rounds` claims of 100 of the lane's 200 due orders, each claimed order made due again at
/// once (`now()`, as the writers schedule), every claim and write its own transaction; the
/// last claim once the database clock is past the others by more than the floor's grace, so
/// the floor is where a lane's would be.
fn churn(db: &TestDb, floor: &mut ClaimFloor, q: LaneQuery, rounds: usize) {
    let mut c = db.client();
    for round in 0..=rounds {
        if round == rounds {
            let last: chrono::DateTime<chrono::Utc> = c.query_one("SELECT now()", &[]).unwrap().get(0);
            let past = last + chrono::Duration::from_std(FLOOR_GRACE * 2).unwrap();
            wait_until("the database clock past the floor's grace", Duration::from_secs(10), || {
                c.query_one("SELECT now() > $1", &[&past]).unwrap().get(0)
            });
        }
        let ids: Vec<uuid::Uuid> =
            claim_due_from(&mut c, floor, q, 100, Duration::from_secs(60)).unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), 100);
        c.execute("UPDATE orders SET next_check_at = now() WHERE id = ANY($1)", &[&ids]).unwrap();
    }
}

#[test]
fn a_lane_claim_reads_a_bounded_part_of_the_due_index_under_an_old_snapshot() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    insert_orders(&db, "pubg-60", 200);
    let lane = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    let q = LaneQuery::whole(lane, None, None);
    let mut holder = hold_a_snapshot(&db);
    let mut floor = ClaimFloor::default();
    let mut c = db.client();
    churn(&db, &mut floor, q, 10);
    let (whole_few, floored_few) = (entries_read(&mut c, lane, None), entries_read(&mut c, lane, floor.from().placements));
    churn(&db, &mut floor, q, 60);
    let (whole_many, floored_many) = (entries_read(&mut c, lane, None), entries_read(&mut c, lane, floor.from().placements));
    assert_still_held(&db, &mut holder);
    eprintln!(
        "index entries one claim reads: from the start {whole_few} → {whole_many}; from the floor {floored_few} → {floored_many}"
    );
    // The problem is there: from the index's start, a claim reads every version since the snapshot.
    assert!(whole_many > 3 * whole_few, "from the start: {whole_few} then {whole_many} entries");
    assert!(whole_many > 60 * 100, "every claimed version's entry is read: {whole_many}");
    // The lane's claim reads what the last few claims left, however long the snapshot is held.
    assert!(floored_many <= 2 * floored_few.max(200), "from the floor: {floored_few} then {floored_many} entries");
    assert!(floored_many * 10 < whole_many, "from the floor {floored_many} against from the start {whole_many}");
    holder.batch_execute("COMMIT").unwrap();
}

#[test]
fn a_shop_transaction_longer_than_the_floors_grace_says_where_its_orders_are() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = setup(&sim);
    let lane = db.query_i64("SELECT id FROM providers WHERE name = 'znet-main'");
    let q = LaneQuery::whole(lane, None, None);
    let mut listener = db.client();
    listener.batch_execute("LISTEN orderctl_work").unwrap();
    // The shop's transaction schedules its order at its start, and takes its time to commit...
    let mut shop = db.client();
    shop.batch_execute("BEGIN").unwrap();
    let began: chrono::DateTime<chrono::Utc> = shop.query_one("SELECT now()", &[]).unwrap().get(0);
    orderctl::kit::orders::insert_orders(&mut shop, "alsham", "halil", "pubg-60", 1).unwrap();
    let mut c = db.client();
    let past = began + chrono::Duration::from_std(FLOOR_GRACE * 2).unwrap();
    wait_until("the database clock past the floor's grace", Duration::from_secs(10), || {
        c.query_one("SELECT now() > $1", &[&past]).unwrap().get(0)
    });
    // ...while a lane claims (nothing visible yet) and moves its floor past that start.
    let mut floor = ClaimFloor::default();
    assert!(claim_due_from(&mut c, &mut floor, q, 100, Duration::from_secs(60)).unwrap().is_empty());
    assert!(floor.from().placements.unwrap() > began, "the floor is past the shop's schedule");
    shop.batch_execute("COMMIT").unwrap();
    let due_from = |c: &mut Client, floor: &ClaimFloor| {
        let mut tx = c.transaction().unwrap();
        let n = orderctl::db::claims::lock_due(&mut tx, LaneQuery { from: floor.from(), ..q }, 100, 0).unwrap().len();
        tx.rollback().unwrap();
        n
    };
    assert_eq!(due_from(&mut c, &floor), 0, "a claim from the floor cannot see the order");
    // The wake-up names the lane and the oldest schedule of what was committed.
    let payload = {
        let mut notes = listener.notifications();
        let mut it = notes.timeout_iter(Duration::from_secs(10));
        postgres::fallible_iterator::FallibleIterator::next(&mut it)
            .unwrap()
            .expect("a wake-up after the commit")
            .payload()
            .to_string()
    };
    let parts: Vec<&str> = payload.split(',').collect();
    assert_eq!(parts[0], lane.to_string(), "{payload}");
    let micros: i64 = parts.iter().find_map(|p| p.strip_prefix("from:")).expect(&payload).parse().unwrap();
    assert_eq!(micros, began.timestamp_micros(), "{payload}");
    floor.lower(chrono::DateTime::from_timestamp_micros(micros).unwrap());
    assert_eq!(due_from(&mut c, &floor), 1, "the claim after the wake-up reads from the order's schedule");
}
