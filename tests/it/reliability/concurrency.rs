//! Three daemons, a cron `sweep` every second and operators dispatching, polling and
//! rejecting the same orders, all on one database: nothing placed twice, nothing refunded
//! twice, one batch safety sweep per slot.

use super::*;
use crate::orders::setup;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Slots of the batch safety sweeps a log says this process ran.
fn safety_sweep_slots(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("batch safety sweep (slot ").map(|(_, rest)| rest.split(')').next().unwrap().to_string()))
        .collect()
}

/// Timeouts with room for a loaded machine. A placement whose reply misses the request
/// timeout is reconciled by a status check once that timeout has passed; a simulator still
/// holding the request in its queue after that would take it late, and the re-placement with
/// the same reference would reach it twice (the provider refuses it, but it counts as a double
/// placement). Reported separately; this test is about processes sharing work.
const ROOMY_TIMEOUTS: &[&str] = &["--request-timeout", "3s", "--lease", "6s"];

#[test]
fn three_daemons_cron_sweeps_and_operators_at_once_never_double_anything() {
    let sim = Sim::start(&[
        "--complete-after",
        "500ms",
        "--jitter",
        "1s",
        "--cancel-share",
        "0.2",
        "--seed",
        "9",
        "--latency",
        "10ms",
        "--threads",
        "16",
    ]);
    let db = setup(&sim);
    let logs: Vec<DaemonLog> = (0..3).map(|_| DaemonLog::new()).collect();
    let daemons: Vec<Background> =
        logs.iter().map(|l| daemon_timed(&db.url, l.path(), ROOMY_TIMEOUTS, &["-v", "--round-size", "20"])).collect();
    insert_orders(&db, "pubg-60", 150);
    insert_orders(&db, "freefire-100", 150);
    insert_orders(&db, "jawaker", 20);
    let numbers_where = |condition: &str| -> Vec<String> {
        let sql = format!(
            "SELECT number::text FROM orders o JOIN packages p ON p.id = o.package_id WHERE {condition} ORDER BY number LIMIT 40"
        );
        db.client().query(&sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    let numbers = numbers_where("p.name <> 'jawaker'");
    let manual = numbers_where("p.name = 'jawaker'");

    let stop = Arc::new(AtomicBool::new(false));
    let cron = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut outs = Vec::new();
            while !stop.load(Ordering::Relaxed) && outs.len() < 60 {
                let started = std::time::Instant::now();
                outs.push(
                    Cmd::new().env("DATABASE_URL", &url).args(["-v", "sweep"]).args(FAST_POLICY).args(ROOMY_TIMEOUTS).run(),
                );
                std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            }
            outs
        })
    };
    // Operators: two dispatch the same orders in opposite orders, one polls them, two reject
    // the same manual orders.
    let operator = |cmd: &'static [&'static str], targets: Vec<String>| {
        let url = db.url.clone();
        std::thread::spawn(move || {
            targets
                .iter()
                .map(|n| {
                    let out = Cmd::new()
                        .env("DATABASE_URL", &url)
                        .args(cmd)
                        .arg(n)
                        .args(if cmd[0] == "reject" { &["--reason", "out of stock"][..] } else { FAST_POLICY })
                        .args(&ROOMY_TIMEOUTS[..2])
                        .run();
                    (cmd[0], n.clone(), out)
                })
                .collect::<Vec<_>>()
        })
    };
    let reversed: Vec<String> = numbers.iter().rev().cloned().collect();
    let operators = vec![
        operator(&["dispatch"], numbers.clone()),
        operator(&["dispatch"], reversed),
        operator(&["poll"], numbers.clone()),
        operator(&["reject"], manual.clone()),
        operator(&["reject"], manual.clone()),
    ];
    for h in operators {
        for (cmd, n, out) in h.join().unwrap() {
            // Success, or refused by the state another process got to first; never an error.
            assert!(out.code == 0 || (cmd == "dispatch" && out.code == 5), "{cmd} {n}: exit {}\n{}", out.code, out.stderr);
            assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        }
    }
    wait_all_final(&db, Duration::from_secs(90));
    stop.store(true, Ordering::Relaxed);
    let sweeps = cron.join().unwrap();
    assert!(sweeps.len() >= 2, "cron ran sweeps during the run");
    for d in daemons {
        assert_eq!(d.terminate(), 0);
    }

    assert_placed_once(&sim, 300);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
    assert_eq!(db.query_i64("SELECT count(*) FROM orders o JOIN packages p ON p.id = o.package_id WHERE p.name = 'jawaker' AND status = 'rejected'"), 20);
    assert_eq!(
        db.query_i64("SELECT count(*) FROM order_events WHERE kind = 'operator.rejected'"),
        20,
        "each manual order rejected once"
    );

    // One batch safety sweep per slot: every run a process reports is in its own slot, and
    // each matches a row of periodic_runs.
    let mut ran: HashMap<String, usize> = HashMap::new();
    let texts = logs.iter().map(|l| l.text()).chain(sweeps.iter().map(|o| o.stderr.clone()));
    for text in texts {
        assert!(!text.contains("panicked"), "{text}");
        for slot in safety_sweep_slots(&text) {
            *ran.entry(slot).or_default() += 1;
        }
    }
    let twice: Vec<_> = ran.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "safety sweep slots run more than once: {twice:?}");
    assert!(ran.len() >= 2, "the daemons' schedule fired: {ran:?}");
    assert_eq!(db.query_i64("SELECT count(*) FROM periodic_runs WHERE job = 'safety_sweep'"), ran.len() as i64);
    assert_eq!(db.query_i64("SELECT count(*) FROM (SELECT 1 FROM periodic_runs GROUP BY job, slot HAVING count(*) > 1) d"), 0);
}
