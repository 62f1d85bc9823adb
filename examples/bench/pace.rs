//! Rate-limit accuracy and utilisation (issue 23): three daemons share Znet's `rate_limit`,
//! 1,000 orders wait to be placed, and the simulator records when each call arrives. Accuracy
//! is the most calls in any 10 s window over the limit's 10 s budget; utilisation is the calls in
//! the 10 s that start 2 s after the first call (the daemons starting), over the same budget.
//! The baseline in the same run: the same three daemons with no limit.

use super::support::*;
use super::Options;
use serde_json::json;
use std::time::{Duration, Instant};

const LIMIT_PER_SECOND: i32 = 20;
const ORDERS: i64 = 1_000;

/// The most calls in any window of `window_ms`.
fn most_in_window(times: &[u64], window_ms: u64) -> usize {
    let (mut most, mut start) = (0, 0);
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// (most in any 10 s, calls in the 10 s from 2 s after the first call, calls per second over
/// the whole run) for one run.
fn one_run(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, limited: bool) -> (f64, f64, f64) {
    sim.reset(json!({"complete_after": "1s"}));
    let db = server.clone_of(template, "pace");
    let mut c = connect(&db.url);
    if limited {
        c.execute(
            "UPDATE providers SET rate_limit_calls = $1, rate_limit_window_ms = 1000 WHERE name = 'znet-main'",
            &[&LIMIT_PER_SECOND],
        )
        .unwrap();
    }
    insert_orders(&mut c, "pubg-60", ORDERS);
    let args: Vec<&str> = o.daemon_args.iter().map(String::as_str).collect();
    let daemons: Vec<Daemon> = (0..3).map(|_| Daemon::start(bin, &db.url, &args)).collect();
    let started = Instant::now();
    let mut times = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        times = sim.call_times_ms();
        // Unlimited, all of it is done in a second or two.
        if times.len() > 1 && (times[times.len() - 1] - times[0] >= 13_000 || !work_left(&mut c)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(daemons);
    times.sort_unstable();
    if times.len() < 2 {
        die("rate limit: no calls reached the simulator");
    }
    let from = times[0] + 2_000;
    let used = times.iter().filter(|&&t| t >= from && t < from + 10_000).count();
    let span_s = ((times[times.len() - 1] - times[0]) as f64 / 1000.0).max(0.001);
    (most_in_window(&times, 10_000) as f64, used as f64, times.len() as f64 / span_s)
}

pub fn accuracy(o: &Options, server: &Server, template: &str, sim: &Sim, bin: &str, results: &mut Results) {
    let budget = 10.0 * LIMIT_PER_SECOND as f64;
    let (mut most, mut used, mut free) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..o.runs {
        let (m, u, _) = one_run(o, server, template, sim, bin, true);
        let (_, _, unlimited) = one_run(o, server, template, sim, bin, false);
        eprintln!("   run {}: limited most {m} / used {u} per 10 s; unlimited {unlimited:.0} calls/s", run + 1);
        most.push(m);
        used.push(u);
        free.push(unlimited / LIMIT_PER_SECOND as f64);
    }
    let note = format!("{LIMIT_PER_SECOND}/s, 3 daemons, {ORDERS} orders waiting; counted at the simulator");
    results.add(
        "rate limit accuracy: most calls in any 10 s / limit",
        median(&most) / budget,
        "× limit",
        Some(Target::AtMost(1.02)),
        Some((median(&most), "calls")),
        &note,
    );
    results.add(
        "rate limit utilisation: calls in 10 s while work waits / limit",
        median(&used) / budget,
        "× limit",
        Some(Target::AtLeast(0.90)),
        Some((median(&free), "× limit: calls per second with no limit (baseline)")),
        &note,
    );
}
