//! How many write transactions an order costs (issue 24, Deliver 4): every transaction that
//! changes an order's row or records its placement is logged by a trigger with its transaction
//! id, and counted per order against the steps the provider forces (each placement, each check).

use crate::reliability::DaemonLog;
use crate::support::*;
use std::time::Duration;

/// Log the transaction of every write to an order's row or its placements.
fn log_write_transactions(db: &TestDb) {
    db.client()
        .batch_execute(
            "CREATE TABLE test_order_writes (order_id uuid NOT NULL, xid bigint NOT NULL, what text NOT NULL);
             CREATE FUNCTION test_log_order_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO test_order_writes VALUES (NEW.id, txid_current(), 'orders'); RETURN NULL; END $$;
             CREATE FUNCTION test_log_placement_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO test_order_writes VALUES (NEW.order_id, txid_current(), 'placements'); RETURN NULL; END $$;
             CREATE TRIGGER test_log_order_write AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION test_log_order_write();
             -- An update that finishes an order moves its row to the finished orders' partition
             -- (sql/0031): a delete and an insert there, which fire no update trigger.
             CREATE TRIGGER test_log_order_move AFTER INSERT ON orders_done FOR EACH ROW EXECUTE FUNCTION test_log_order_write();
             CREATE TRIGGER test_log_placement_write AFTER INSERT OR UPDATE ON placements
                 FOR EACH ROW EXECUTE FUNCTION test_log_placement_write();",
        )
        .unwrap();
}

/// Orders approved at the first check: one placement and one check each, so two
/// provider-forced steps, and two write transactions: the placement's claim (its reference
/// committed before the call: it must be durable before the HTTP request, or a crash could send
/// it twice or lose the order's only record of it), and one write of both answers — the first
/// check is due at once (`--first-check 0s`), so the caller makes it right after the placement
/// under the same claim, and the writer writes the placement's answer and the check's in one
/// transaction, as one version of its row. Routing adds none. A change that adds a transaction
/// (or a row version) per order fails here.
#[test]
fn an_order_costs_a_bounded_number_of_write_transactions_per_provider_step() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    log_write_transactions(&db);
    let log = DaemonLog::new();
    let d = db.cmd().args(["daemon", "--first-check", "0s", "--idle-poll", "50ms"]).spawn_logged(log.path());
    insert_orders(&db, "pubg-60", 200);
    wait_until("every order final", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_eq!(d.terminate(), 0);
    let checks = db.query_i64("SELECT count(*) FROM order_events WHERE kind LIKE 'check.%'");
    let placements = db.query_i64("SELECT count(*) FROM placements");
    let most = db.query_i64("SELECT max(n) FROM (SELECT count(DISTINCT xid) AS n FROM test_order_writes GROUP BY order_id) x");
    let total = db.query_i64("SELECT count(DISTINCT (order_id, xid)) FROM test_order_writes");
    let steps = placements + checks;
    eprintln!(
        "write transactions: {total} for 200 orders, {placements} placements, {checks} checks; at most {most} for one order"
    );
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 200);
    assert_eq!((placements, checks), (200, 200), "one placement and one check each");
    assert!(total <= steps, "{total} write transactions for {steps} provider steps of 200 orders: more than one a step");
    assert!(most <= 2, "an order took {most} write transactions for one placement and one check");
    // And two versions of its row: the placement's claim, and both answers written as one.
    let versions = db
        .query_i64("SELECT max(n) FROM (SELECT count(*) AS n FROM test_order_writes WHERE what = 'orders' GROUP BY order_id) x");
    assert_eq!(versions, 2, "row versions of an order placed and approved at its first check");
}

/// What placement answers say about their provider (the balance a Znet acceptance carries, the
/// highest cost, the breaker) is written once per written batch, not once per order: every
/// daemon's lanes share one `provider_health` row per provider, and four statements an order on
/// it cut end-to-end throughput to a third (BENCHMARKS.md). Counted with a statement trigger,
/// which fires for every UPDATE statement, whether it changes a row or not.
#[test]
fn provider_health_is_written_per_batch_of_answers_not_per_order() {
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    db.client()
        .batch_execute(
            "CREATE TABLE test_health_statements (at timestamptz NOT NULL DEFAULT clock_timestamp());
             CREATE FUNCTION test_log_health_statement() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN INSERT INTO test_health_statements DEFAULT VALUES; RETURN NULL; END $$;
             CREATE TRIGGER test_log_health_statement AFTER UPDATE ON provider_health
                 FOR EACH STATEMENT EXECUTE FUNCTION test_log_health_statement();",
        )
        .unwrap();
    let d = db.cmd().args(["daemon", "--first-check", "0s", "--idle-poll", "50ms"]).spawn();
    insert_orders(&db, "pubg-60", 300);
    wait_until("every order final", Duration::from_secs(60), || open_orders(&db) == 0);
    assert_eq!(d.terminate(), 0);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders WHERE status = 'approved'"), 300);
    let balance_known = db.query_i64("SELECT count(*) FROM provider_health WHERE balance IS NOT NULL");
    assert!(balance_known > 0, "the acceptances' balance was recorded");
    let statements = db.query_i64("SELECT count(*) FROM test_health_statements");
    eprintln!("provider_health: {statements} UPDATE statements for 300 accepted placements");
    assert!(statements < 150, "{statements} UPDATE statements on provider_health for 300 placements: written per order");
}

/// A placement's answer rewrites its row on its own page (a HOT update: no new entry in any of
/// the table's four indexes, none left dead), because inserts leave each page room for the
/// outcomes that follow (sql/0028). With full pages almost every answer moved its row.
#[test]
fn a_placement_answer_rewrites_its_row_in_place() {
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    insert_orders(&db, "pubg-60", 400);
    // One process: its backend's table counters reach the shared statistics when it exits.
    db.cmd().args(["sweep", "--first-check", "1h"]).run().ok();
    assert_eq!(db.query_i64("SELECT count(*) FROM placements WHERE outcome = 'accepted'"), 400);
    let (updates, in_place) = {
        let r = db
            .client()
            .query_one(
                "SELECT sum(n_tup_upd)::bigint, sum(n_tup_hot_upd)::bigint FROM pg_stat_user_tables
                  WHERE relid IN (SELECT relid FROM pg_partition_tree('placements'))",
                &[],
            )
            .unwrap();
        (r.get::<_, i64>(0), r.get::<_, i64>(1))
    };
    assert!(updates >= 400, "every placement's answer updates its row: {updates}");
    assert!(in_place * 10 >= updates * 9, "{in_place} of {updates} placement updates were in place (HOT)");
}

/// Under `--first-check 0s` a lane's caller checks an accepted order right away, under the
/// placement's claim, and the writer writes the placement's answer and the check's as one
/// transition (`lifecycle::placed_then_checked`). Two orders placed and checked alike, one
/// written the way two steps were written before (the placement's answer, the row read again,
/// the check's answer), one written as one: the same row, history, placement outcome, money
/// and notices, with one row version of the order where there were two. Once with the
/// provider delivering at once (approved at the check), once still working (next check set).
#[test]
fn a_placement_and_its_first_check_written_as_one_leave_what_two_writes_leave() {
    use crate::orders::{create, setup};
    use orderctl::db::{claims, transitions};
    use orderctl::dispatch::claim::{claim_for_provider, CheckJob};
    use orderctl::dispatch::place::{self, Checked};
    use orderctl::dispatch::{record, Providers, Timing};
    use orderctl::domain::backoff::BackoffPolicy;
    let sim = Sim::start(&["--complete-after", "0s"]);
    let db = setup(&sim);
    log_write_transactions(&db);
    let timing = Timing { lease: Duration::from_secs(60), request_timeout: Duration::from_secs(5) };
    let policy = BackoffPolicy { first_check: Duration::ZERO, ..BackoffPolicy::default() };
    let providers = Providers::new(Default::default(), policy);
    for (complete_after, status) in [("0s", "approved"), ("1h", "pending")] {
        sim.configure(serde_json::json!({ "complete_after": complete_after }));
        let id = |o: serde_json::Value| -> uuid::Uuid { o["id"].as_str().unwrap().parse().unwrap() };
        let (two, one) = (id(create(&db, "pubg-60", &["--no-dispatch"])), id(create(&db, "pubg-60", &["--no-dispatch"])));
        let mut c = db.client();
        let mut tx = c.transaction().unwrap();
        let rows = claims::lock_ids(&mut tx, &[two, one], true).unwrap();
        let lp = providers.get(&mut tx, rows[0].facts.lane).unwrap();
        let jobs = claim_for_provider(&mut tx, &lp, rows, timing).unwrap().places;
        tx.commit().unwrap();
        let adapter = lp.adapter.as_ref().unwrap().as_ref();
        let mut placed: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let mut p = place::placement(job, adapter, timing);
                place::first_check_at_once(&mut p, adapter, Duration::ZERO, timing);
                assert!(p.first_check.is_some(), "checked at once: {:?}", p.sent);
                p
            })
            .collect();
        placed.sort_by_key(|p| p.job.row.id != two);
        db.client().batch_execute("TRUNCATE test_order_writes").unwrap();
        // As two steps: the placement's answer, the row read again, the check's answer.
        let (answer, took) = placed[0].first_check.take().unwrap();
        let mut tx = c.transaction().unwrap();
        let w = record::placed(&mut tx, &lp, &placed[0]).unwrap();
        assert_eq!(transitions::apply(&mut tx, &[w]).unwrap().len(), 1);
        let row = claims::lock_ids(&mut tx, &[two], true).unwrap().pop().unwrap();
        let key = orderctl::provider::CheckKey {
            reference: row.facts.reference.clone().unwrap(),
            external_order_id: row.external_order_id.clone(),
        };
        let job = CheckJob { lease: row.lease, row, key, claimed: std::time::Instant::now() };
        let w = record::checked(&lp, &Checked { job, answer, took }, 0.5);
        assert_eq!(transitions::apply(&mut tx, &[w]).unwrap().len(), 1);
        tx.commit().unwrap();
        // As one.
        let mut tx = c.transaction().unwrap();
        let w = record::placed(&mut tx, &lp, &placed[1]).unwrap();
        assert!(w.transition.first.is_some(), "the placement's answer and the check merged");
        assert_eq!(transitions::apply(&mut tx, &[w]).unwrap().len(), 1);
        tx.commit().unwrap();

        let mut written = |id: uuid::Uuid| -> String {
            c.query_one(
                "SELECT concat_ws(' | ', o.status, o.external_status, o.attention, o.awaiting_reconciliation, o.lane,
                        o.next_check_at IS NULL, o.external_order_id IS NOT NULL, o.checks, o.no_news, o.placement_attempts,
                        o.pin_code IS NOT NULL, o.sent_at IS NOT NULL, o.completed_at IS NOT NULL, o.provider_cost,
                        o.cost_rate, o.claimed_at IS NULL,
                        (SELECT string_agg(e.kind || ' ' || e.status || ' ' || e.external_status || ' ' || (e.steps IS NOT NULL)
                                           || coalesce(' [' || (SELECT string_agg(s->>'step' || CASE WHEN s->>'step' = 'record'
                                                                                     THEN ': ' || (s->>'message') ELSE '' END, ', ')
                                                                 FROM jsonb_array_elements(e.steps) s) || ']', ''), ', '
                                           ORDER BY e.id) FROM order_events e WHERE e.order_id = o.id),
                        (SELECT string_agg(p.outcome || ' ' || (p.message <> '') || ' ' || (p.finished_at IS NOT NULL), ', ')
                           FROM placements p WHERE p.order_id = o.id),
                        (SELECT string_agg(l.kind || ' ' || l.amount, ', ' ORDER BY l.id) FROM ledger l WHERE l.order_id = o.id),
                        (SELECT string_agg(d.event_type, ', ') FROM webhook_deliveries d WHERE d.order_id = o.id))
                   FROM orders o WHERE o.id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
        };
        let (as_two, as_one) = (written(two), written(one));
        eprintln!("{complete_after}: {as_one}");
        assert!(as_one.starts_with(status), "{as_one}");
        // The dispatch's steps close with the placement's answer, not the check's.
        assert!(as_one.contains("dispatch pending sent true [claim, place, record: accepted by znet-main"), "{as_one}");
        assert!(
            as_one.contains("first status check in 0s], check."),
            "both entries, the first as its step left the order: {as_one}"
        );
        assert_eq!(as_one, as_two, "written as one, the order holds what two writes left");
        let mut versions = |id: uuid::Uuid| -> i64 {
            c.query_one("SELECT count(*) FROM test_order_writes WHERE order_id = $1 AND what = 'orders'", &[&id]).unwrap().get(0)
        };
        assert_eq!((versions(two), versions(one)), (2, 1), "row versions of the order written in two steps, and in one");
    }
}

/// `Facts::after` (what the lifecycle says a transition leaves, which `placed_then_checked`
/// judges an order's first check from) is what `db::transitions` writes: random transitions
/// applied to a real order, each in a transaction rolled back, the row read back as the
/// lifecycle reads it. A transition the schema refuses (a CHECK: an approval that is not `done`,
/// a final order still scheduled) proves nothing and is skipped; enough must get through.
#[test]
fn a_transition_leaves_the_row_the_lifecycle_expects() {
    use orderctl::db::transitions::{apply, Write};
    use orderctl::domain::lifecycle::{Attention, ExternalStatus, OrderStatus, Schedule, Set, Settlement, Transition};
    use proptest::prelude::*;
    let sim = Sim::start(&["--complete-after", "1h"]);
    let db = TestDb::new();
    db.apply(&standard_setup(&sim.base_url));
    let mut c = db.client();
    let id = orderctl::kit::orders::insert_orders(&mut c, "alsham", "halil", "pubg-60", 1).unwrap()[0];
    let providers: Vec<i64> = c.query("SELECT id FROM providers", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let text = || prop::option::of("[A-Z0-9]{1,8}");
    let set_text = prop_oneof![Just(Set::Keep), Just(Set::Clear), "[0-9]{6,12}".prop_map(Set::To)];
    let attention =
        prop_oneof![Just(Set::Keep), Just(Set::Clear), prop::sample::select(Attention::ALL.to_vec()).prop_map(Set::To)];
    let schedule = prop_oneof![
        Just(Schedule::Keep),
        Just(Schedule::Off),
        Just(Schedule::Now),
        (1u64..100_000).prop_map(|ms| Schedule::In(Duration::from_millis(ms)))
    ];
    let lane = prop::option::of(prop::sample::select([vec![0], providers.clone()].concat()));
    let transition = (
        (
            prop::option::of(prop::sample::select(OrderStatus::ALL.to_vec())),
            prop::option::of(prop::sample::select(ExternalStatus::ALL.to_vec())),
            attention,
            prop::option::of(any::<bool>()),
            schedule,
            lane,
            prop::option::of(prop::sample::select(providers.clone())),
        ),
        (
            set_text,
            prop::option::of(0u32..30),
            prop::option::of(0u32..30),
            prop::option::of(0u32..4),
            (text(), text()),
            (prop::option::of(any::<bool>()), text(), prop::option::of(prop::sample::select(Settlement::ALL.to_vec()))),
        ),
    )
        .prop_map(
            |(
                (status, external, attention, reconciling, schedule, lane, provider_id),
                (reference, checks, no_news, placement_attempts, (pin, late_pin), (operator_forced, operator_reason, settlement)),
            )| Transition {
                status,
                external,
                attention,
                reconciling,
                schedule,
                lane,
                provider_id,
                reference,
                checks,
                no_news,
                placement_attempts,
                pin,
                late_pin,
                operator_forced,
                operator_reason,
                settlement,
                ..Transition::default()
            },
        );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 400, ..ProptestConfig::default() });
    let (written, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let c = std::cell::RefCell::new(c);
    runner
        .run(&transition, |t| {
            let mut c = c.borrow_mut();
            let mut tx = c.transaction().unwrap();
            let before = orderctl::db::claims::lock_ids(&mut tx, &[id], true).unwrap().pop().unwrap().facts;
            let w = Write { order_id: id, lease: None, placement: None, transition: t.clone(), steps: vec![] };
            match apply(&mut tx, &[w]) {
                Ok(applied) => {
                    prop_assert_eq!(applied.len(), 1);
                    written.set(written.get() + 1);
                }
                Err(e) if orderctl::db::transitions::refused_by_data(&e) => {
                    refused.set(refused.get() + 1);
                    return Ok(());
                }
                Err(e) => panic!("{}", e.message),
            }
            let after = orderctl::db::claims::lock_ids(&mut tx, &[id], true).unwrap().pop().unwrap().facts;
            prop_assert_eq!(after, before.after(&t), "{:?}", t);
            Ok(())
        })
        .unwrap();
    let (written, refused) = (written.get(), refused.get());
    eprintln!("{written} transitions written and compared, {refused} refused by the schema");
    assert!(written >= 100, "only {written} of 400 random transitions got past the schema's checks");
}
