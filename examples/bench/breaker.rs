//! Calls spent on a dead provider (every call answers HTTP 500) per minute, with the circuit
//! breaker (the defaults: open after 5 failed calls in a row, one call per second while open,
//! a probe every 30 s) against the same daemon with the breaker out of the way
//! (`breaker.failures` 1000, so it never opens in the window).

use super::support::*;
use super::{with, Options};
use serde_json::json;
use std::time::{Duration, Instant};

const ORDERS: i64 = 50;
const WARM_UP: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(30);

pub fn dead_provider(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    eprintln!("== dead provider: {ORDERS} orders, every call answers 500; calls per minute with and without the breaker");
    let mut with_breaker = Vec::new();
    let mut without = Vec::new();
    for run in 0..o.runs {
        for breaker in [true, false] {
            sim.reset(json!({"error_share": 1.0, "complete_after": "0s"}));
            let db = server.clone_of(template, "breaker");
            let mut c = connect(&db.url);
            if !breaker {
                c.execute("UPDATE providers SET health_settings = '{\"breaker_failures\": 1000}'::jsonb", &[]).unwrap();
            }
            let daemon = Daemon::start(
                bin,
                &db.url,
                &with(
                    &o.daemon_args,
                    &[
                        "--first-check",
                        "0s",
                        "--backoff-base",
                        "500ms",
                        "--backoff-max",
                        "2s",
                        "--request-timeout",
                        "2s",
                        "--lease",
                        "5s",
                    ],
                ),
            );
            daemon.wait_ready(&mut c);
            insert_orders(&mut c, "pubg-60", ORDERS);
            std::thread::sleep(WARM_UP);
            let calls = |s: &Sim| {
                let st = s.stats();
                st["placement_calls"].as_u64().unwrap_or(0) + st["status_calls"].as_u64().unwrap_or(0)
            };
            let (before, started) = (calls(sim), Instant::now());
            std::thread::sleep(WINDOW);
            let per_minute = (calls(sim) - before) as f64 * 60.0 / started.elapsed().as_secs_f64();
            eprintln!("   run {}: {} breaker: {per_minute:.0} calls/min", run + 1, if breaker { "with" } else { "without" });
            if breaker { &mut with_breaker } else { &mut without }.push(per_minute);
            drop(daemon);
            drop(c);
            drop(db);
        }
    }
    sim.reset(json!({"error_share": 0.0}));
    let (w, wo) = (median(&with_breaker), median(&without));
    results.add(
        "calls to a dead provider per minute, breaker",
        w,
        "calls/min",
        None,
        Some((w / wo.max(1.0), "× without breaker")),
        "",
    );
    results.add("calls to a dead provider per minute, no breaker", wo, "calls/min", None, None, "breaker.failures 1000");
}
