//! `orderctl stats`: what Flower showed and more, from the database alone: orders by status
//! and by provider, how late the due work is, how long orders take to finish, what each
//! provider did in the window, and the stuck orders with their reasons. `--watch` redraws it
//! every 2 s on a terminal.

use crate::cli::StatsArgs;
use crate::commands::list::stuck_orders;
use crate::db::stats;
use crate::db::Client;
use crate::domain::backoff::short_duration;
use crate::domain::diagnosis::StuckThresholds;
use crate::error::{Error, Result};
use crate::output;
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use comfy_table::Cell;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::Duration;

/// Stuck orders listed (all of them are counted).
const STUCK_SHOWN: usize = 20;
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Everything `stats` prints; `--output json` prints exactly this object.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub generated_at: DateTime<Utc>,
    pub tenant: Option<String>,
    /// The window, e.g. "24h", and where it starts.
    pub window: String,
    pub window_start: DateTime<Utc>,
    pub orders_by_status: Vec<stats::StatusCount>,
    pub orders_by_provider: Vec<stats::ProviderOrders>,
    pub due: stats::Due,
    pub finished: stats::Finished,
    pub providers: Vec<stats::ProviderActivity>,
    /// Number of stuck orders (all of them, counted in SQL).
    pub stuck_count: usize,
    /// The oldest stuck orders (at most 20), each with its diagnosis (as `list --stuck --output json`).
    pub stuck: Vec<Value>,
}

pub fn run(s: &Settings, a: &StatsArgs) -> Result<()> {
    let window: Duration = a.since.into();
    if a.money {
        if a.watch {
            return Err(Error::usage("--watch redraws the operations view; it cannot be combined with --money")
                .with_hint("drop --watch; run `stats --money` again for a fresh report"));
        }
        return super::stats_money::run(s, window, a.by);
    }
    let limits = StuckThresholds { overdue_after: a.stuck_after.into() };
    if a.watch {
        if s.json() {
            return Err(Error::usage("--watch redraws a table; it cannot be combined with --output json")
                .with_hint("drop --watch to get one JSON object, or drop --output json to watch the table"));
        }
        if !std::io::stdout().is_terminal() {
            return Err(Error::usage("--watch needs a terminal on stdout: it redraws the screen in place")
                .with_hint("drop --watch when piping or redirecting; run it again for a fresh snapshot"));
        }
    }
    let mut client = super::listings::connect_scoped(s)?;
    if !a.watch {
        let st = collect(&mut client, s.tenant.as_deref(), window, limits)?;
        if s.json() {
            output::print_json(&st);
        } else {
            print!("{}", render(&st));
        }
        return Ok(());
    }
    // Refresh in place until Ctrl-C (the default SIGINT action ends the process; nothing to undo).
    loop {
        let st = collect(&mut client, s.tenant.as_deref(), window, limits)?;
        let mut out = std::io::stdout().lock();
        // Home, clear screen, then the frame.
        write!(out, "\x1b[H\x1b[2J{}\nrefreshing every {}s; Ctrl-C to stop\n", render(&st), WATCH_EVERY.as_secs())?;
        out.flush()?;
        drop(out);
        std::thread::sleep(WATCH_EVERY);
    }
}

/// Read every number in one pass.
pub fn collect(client: &mut Client, tenant: Option<&str>, window: Duration, limits: StuckThresholds) -> Result<Stats> {
    let now = Utc::now();
    let window_start = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    // One snapshot for every number. Each read is small (rollup rows and an hour or two of live
    // rows), but with millions of orders the planner's estimates for the live ranges make it
    // start parallel workers, whose start-up costs several times the read itself.
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL max_parallel_workers_per_gather = 0")?;
    let client = &mut tx;
    let stuck = stuck_orders(client, tenant, limits, STUCK_SHOWN as i64)?;
    let stuck_count = crate::db::orders::count_stuck(client, tenant, limits.overdue_after)? as usize;
    let stats = Stats {
        generated_at: now,
        tenant: tenant.map(str::to_string),
        window: short_duration(window),
        window_start,
        orders_by_status: stats::orders_by_status(client, tenant)?,
        orders_by_provider: stats::orders_by_provider(client, tenant)?,
        due: stats::due(client, tenant)?,
        finished: stats::finished_since(client, tenant, window_start)?,
        providers: stats::provider_activity(client, tenant, window_start)?,
        stuck_count,
        stuck,
    };
    tx.commit()?;
    Ok(stats)
}

/// A duration in milliseconds the way an operator reads it: 850ms, 2.4s, 3m 12s.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{}ms", ms.round() as i64)
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000.0).round() as u64)).to_string()
    }
}

/// The tables, as one string (so `--watch` can draw a whole frame at once).
pub fn render(st: &Stats) -> String {
    let mut o = String::new();
    let scope = st.tenant.as_deref().map(|t| format!("tenant {t}")).unwrap_or_else(|| "all tenants".into());
    let _ =
        writeln!(o, "orderctl stats: {scope}, window {} (since {})", st.window, st.window_start.format("%Y-%m-%d %H:%M:%S UTC"));

    let total: i64 = st.orders_by_status.iter().map(|c| c.orders).sum();
    let mut t = output::table(&["status", "external status", "orders"]);
    for c in &st.orders_by_status {
        t.add_row(vec![
            output::status_cell(c.status.as_str()),
            output::status_cell(c.external_status.as_str()),
            Cell::new(c.orders),
        ]);
    }
    let _ = writeln!(o, "\norders ({total} in all):\n{t}");

    if !st.orders_by_provider.is_empty() {
        let mut t = output::table(&["tenant", "provider", "open", "approved", "rejected"]);
        for p in &st.orders_by_provider {
            t.add_row(vec![
                p.tenant.clone(),
                p.provider.clone(),
                p.open.to_string(),
                p.approved.to_string(),
                p.rejected.to_string(),
            ]);
        }
        let _ = writeln!(o, "\norders by provider (- = never sent to a provider: codes, manual, not dispatched yet):\n{t}");
    }

    let lateness = match st.due.oldest_late_ms {
        Some(ms) => format!("the oldest has been due for {}", millis(ms.max(0) as f64)),
        None => "nothing is overdue".into(),
    };
    let _ = writeln!(o, "\ndue now: {} ({lateness}); scheduled later: {}", st.due.due_now, st.due.scheduled_later);

    let f = &st.finished;
    let timing = match (f.median_ms, f.p90_ms) {
        (Some(m), Some(p)) => format!("; time to final: median {}, p90 {}", millis(m), millis(p)),
        _ => String::new(),
    };
    let _ = writeln!(o, "finished in the window: {} approved, {} rejected{timing}", f.approved, f.rejected);

    if !st.providers.is_empty() {
        let mut t = output::table(&[
            "tenant",
            "provider",
            "placements",
            "accepted",
            "rejected",
            "ambiguous",
            "checks",
            "waiting",
            "no news",
            "approved",
            "cancelled",
            "given up",
        ]);
        for p in &st.providers {
            let counts = [
                p.placements,
                p.placements_accepted,
                p.placements_rejected,
                p.placements_ambiguous,
                p.checks,
                p.checks_waiting,
                p.checks_no_news,
                p.checks_approved,
                p.checks_cancelled,
                p.given_up,
            ];
            let mut row = vec![p.tenant.clone(), p.provider.clone()];
            row.extend(counts.iter().map(i64::to_string));
            t.add_row(row);
        }
        let _ = writeln!(o, "\nproviders in the window:\n{t}");
    }

    if st.stuck_count == 0 {
        let _ = writeln!(o, "\nstuck orders: none");
    } else {
        let mut t = output::table(&["order", "tenant", "package", "status", "why"]);
        for r in st.stuck.iter().take(STUCK_SHOWN) {
            t.add_row(vec![
                Cell::new(r["number"].to_string()),
                Cell::new(r["tenant"].as_str().unwrap_or("-")),
                Cell::new(r["package"].as_str().unwrap_or("-")),
                Cell::new(format!("{} / {}", r["status"].as_str().unwrap_or("-"), r["external_status"].as_str().unwrap_or("-"))),
                Cell::new(r["diagnosis"]["sentence"].as_str().unwrap_or("")),
            ]);
        }
        let more = if st.stuck_count > STUCK_SHOWN {
            format!(", the oldest {STUCK_SHOWN} shown; see `orderctl list --stuck`")
        } else {
            String::new()
        };
        let _ = writeln!(o, "\nstuck orders ({}{more}):\n{t}", st.stuck_count);
    }
    o
}
