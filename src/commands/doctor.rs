//! `orderctl doctor`: everything that needs an operator, one line per finding with its fix.
//! Database reachable and migrated, routing, (with `--providers`) every enabled provider
//! answering, stuck orders, and the Postgres health that kills job queues: dead tuples on
//! `orders`, the oldest open transaction, vacuum, the claims' hot `orders_due` indexes, event
//! partitions ahead, the stats rollups keeping up; and webhook deliveries that failed or that
//! nothing delivers.
//!
//! Exit 0 when every finding is ok; 8 (needs action) when any is warn or fail; 6 when the
//! database cannot be reached at all.

use crate::cli::DoctorArgs;
use crate::commands::list::stuck_orders;
use crate::commands::provider_check::explain;
use crate::db::Client;
use crate::db::{self, listings, migrate, routing, stats};
use crate::domain::diagnosis::StuckThresholds;
use crate::domain::routing::check_routing;
use crate::error::{Error, Result};
use crate::output;
use crate::provider::{self, http::mask_url};
use crate::settings::{HttpSettings, Settings};
use chrono::Utc;
use serde::Serialize;
use std::time::Duration;

/// Stuck orders named one per line; the rest are counted in one more line.
const STUCK_LINES: usize = 20;
/// Dead tuples on `orders` become a finding above this count and this share of all tuples.
const DEAD_TUPLES_MIN: i64 = 10_000;
const DEAD_RATIO_MAX: f64 = 0.2;
/// An open transaction older than this holds back vacuum long enough to matter.
const OLD_TRANSACTION_WARN: Duration = Duration::from_secs(5 * 60);
const OLD_TRANSACTION_FAIL: Duration = Duration::from_secs(60 * 60);
/// A pending webhook delivery this late means nothing is delivering.
/// Rollups close a slice an hour after its end at the latest (sql/0026) and every safety sweep
/// rolls up: history finished longer ago than this and still not rolled up means no sweep runs.
const ROLLUP_BEHIND_WARN: Duration = Duration::from_secs(2 * 60 * 60);
const WEBHOOK_OVERDUE: Duration = Duration::from_secs(10 * 60);
/// Dead tuples worth vacuuming but no vacuum for this long.
const VACUUM_STALE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    /// Needs action, not urgent yet.
    Warn,
    /// Broken now: orders are affected.
    Fail,
}

impl Severity {
    fn word(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warn => "warn",
            Severity::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Which check: database, migrations, routing, provider, stuck, webhooks, dead-tuples,
    /// vacuum, old-transaction, due-index, partitions, rollups.
    pub check: &'static str,
    pub message: String,
    pub fix: Option<String>,
}

pub(super) fn ok(check: &'static str, message: impl Into<String>) -> Finding {
    Finding { severity: Severity::Ok, check, message: message.into(), fix: None }
}

pub(super) fn problem(severity: Severity, check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { severity, check, message: message.into(), fix: Some(fix.into()) }
}

pub fn run(s: &Settings, a: &DoctorArgs) -> Result<()> {
    let mut findings = Vec::new();
    let shown = db::mask_url(&s.database_url);
    let mut client = match db::connect(&s.database_url) {
        Ok(c) => c,
        Err(e) => {
            findings.push(problem(
                Severity::Fail,
                "database",
                e.message.clone(),
                e.hint.clone().unwrap_or_else(|| "check --database-url / DATABASE_URL and that Postgres is running".into()),
            ));
            report(s, &findings);
            return Err(e);
        }
    };
    if let Some(t) = &s.tenant {
        routing::tenant_id(&mut client, t)?;
    }
    let version: String = client.query_one("SHOW server_version", &[])?.get(0);
    findings.push(ok("database", format!("reachable at {shown} (PostgreSQL {version})")));
    findings.push(super::doctor_connection::encryption(&client, &s.database_url));
    findings.push(super::doctor_connection::pooler(&s.database_url));

    let pending = migrate::pending(&mut client)?;
    let schema_present: bool = client.query_one("SELECT to_regclass('orders') IS NOT NULL", &[])?.get(0);
    if pending.is_empty() {
        findings.push(ok("migrations", format!("schema current ({} migration(s) applied)", migrate::built_in().len())));
    } else {
        findings.push(problem(
            Severity::Fail,
            "migrations",
            format!("{} migration(s) not applied: {}", pending.len(), pending.join(", ")),
            "run `orderctl migrate` (as the database owner; no superuser needed)",
        ));
    }
    if schema_present {
        findings.extend(routing_findings(&mut client, s.tenant.as_deref())?);
        findings.extend(super::doctor_connection::credentials(&mut client, s.tenant.as_deref())?);
        if a.providers {
            findings.extend(provider_findings(&mut client, s.tenant.as_deref(), s.http)?);
        }
        findings.extend(price_findings(&mut client, s.tenant.as_deref())?);
        let limits = StuckThresholds { overdue_after: a.stuck_after.into() };
        findings.extend(provider_health_findings(&mut client, s.tenant.as_deref())?);
        findings.extend(stuck_findings(&mut client, s.tenant.as_deref(), limits)?);
        findings.extend(rate_limit_findings(&mut client, s.tenant.as_deref(), limits)?);
        findings.extend(webhook_findings(&mut client, s.tenant.as_deref())?);
        findings.extend(health_findings(&mut client)?);
        findings.push(rollup_finding(&mut client, s.tenant.as_deref())?);
        findings.push(order_ids_finding(&mut client, s.tenant.as_deref())?);
    }
    report(s, &findings);
    let needing = findings.iter().filter(|f| f.severity != Severity::Ok).count();
    if needing == 0 {
        return Ok(());
    }
    Err(Error::needs_action(format!("doctor found {needing} thing(s) that need action"))
        .with_hint("fix each as its line says, then run `orderctl doctor` again"))
}

fn report(s: &Settings, findings: &[Finding]) {
    let count = |sev: Severity| findings.iter().filter(|f| f.severity == sev).count();
    if s.json() {
        output::print_json(&serde_json::json!({
            "ok": count(Severity::Ok),
            "warn": count(Severity::Warn),
            "fail": count(Severity::Fail),
            "needs_action": findings.iter().any(|f| f.severity != Severity::Ok),
            "findings": findings,
        }));
        return;
    }
    let colour = output::colour_enabled();
    for f in findings {
        let word = format!("{:<4}", f.severity.word());
        let word = match (colour, f.severity) {
            (false, _) => word,
            (true, Severity::Ok) => format!("\x1b[32m{word}\x1b[0m"),
            (true, Severity::Warn) => format!("\x1b[33m{word}\x1b[0m"),
            (true, Severity::Fail) => format!("\x1b[31m{word}\x1b[0m"),
        };
        match &f.fix {
            Some(fix) => println!("{word}  {:<15} {} — fix: {fix}", f.check, f.message),
            None => println!("{word}  {:<15} {}", f.check, f.message),
        }
    }
}

/// Providers that cannot take orders now or will not for long: a pause or drain, an open
/// breaker (with its latest change), causes the provider gave, a balance below `low_balance`.
fn provider_health_findings(client: &mut Client, tenant: Option<&str>) -> Result<Vec<Finding>> {
    use crate::domain::lifecycle::states::BreakerState;
    let rows = db::provider_health::list(client, tenant)?;
    let mut out = Vec::new();
    for h in &rows {
        let who = format!("tenant {}, provider {}", h.tenant, h.provider);
        if let Some(hold) = h.hold {
            let why = h.hold_reason.as_deref().unwrap_or("");
            let msg = format!("{who}: {hold} by an operator ({why}); {} order(s) waiting", h.waiting_orders);
            out.push(problem(
                Severity::Warn,
                "provider health",
                msg,
                format!("`orderctl provider resume {}` when it is back", h.provider),
            ));
        }
        if h.breaker != BreakerState::Closed {
            let last = db::provider_health::events(client, h.provider_id, 1)?
                .pop()
                .map(|(at, _, m)| format!("; {} at {at}", m))
                .unwrap_or_default();
            let msg = format!("{who}: breaker {} after {} failed call(s) in a row{last}", h.breaker, h.failures);
            out.push(problem(Severity::Warn, "provider health", msg, "check the provider's site and base_url; a probe closes the breaker when it answers (or `orderctl provider resume`)"));
        }
        for u in &h.unavailable {
            let msg = format!("{who}: cannot take orders ({u}); {} order(s) waiting", h.waiting_orders);
            out.push(problem(
                Severity::Warn,
                "provider health",
                msg,
                "top up the dealer account or wait for its maintenance; a probe or `orderctl provider resume` makes it available",
            ));
        }
        if h.low {
            let msg = format!(
                "{who}: dealer balance {} is below low_balance {}",
                h.balance.unwrap_or_default(),
                h.low_balance.unwrap_or_default()
            );
            out.push(problem(Severity::Warn, "provider balance", msg, "top up the dealer account before orders are refused"));
        }
    }
    if out.is_empty() {
        out.push(ok("provider health", format!("{} provider(s): none paused, breakers closed, no balance low", rows.len())));
    }
    Ok(out)
}

fn routing_findings(client: &mut Client, tenant: Option<&str>) -> Result<Vec<Finding>> {
    let views = routing::live_routing_views(client, tenant)?;
    let mut out = Vec::new();
    for (_, v) in &views {
        for p in check_routing(v) {
            let severity = if p.blocks_dispatch() { Severity::Fail } else { Severity::Warn };
            out.push(problem(
                severity,
                "routing",
                format!("tenant {}, package {}: {}", v.tenant, v.package, p.problem()),
                p.fix(),
            ));
        }
    }
    if out.is_empty() {
        out.push(ok("routing", format!("routing of {} package(s) checked: no problems", views.len())));
    }
    Ok(out)
}

/// Packages that sell below their provider's cost (after `--providers` read the catalogues).
fn price_findings(client: &mut Client, tenant: Option<&str>) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let (below, no_rate) = db::money::below_cost(client, tenant)?;
    for b in below {
        out.push(problem(
            Severity::Warn,
            "price",
            format!("tenant {}, package {}: {}", b.tenant, b.package, b.problem()),
            "raise the package's price in the setup file, or route it to a provider that charges less",
        ));
    }
    for n in no_rate {
        out.push(problem(
            Severity::Warn,
            "price",
            format!("tenant {}, package {}: {}", n.tenant, n.package, n.problem()),
            n.fix(),
        ));
    }
    Ok(out)
}

/// Every enabled provider's balance call, all at once (a slow provider costs one timeout, not
/// one per provider).
fn provider_findings(client: &mut Client, tenant: Option<&str>, http: HttpSettings) -> Result<Vec<Finding>> {
    let mut configs = Vec::new();
    for p in listings::providers(client, tenant)?.into_iter().filter(|p| p.enabled) {
        let (id, _, config) = db::providers::load_provider_config(client, Some(&p.tenant), &p.name, http)?;
        configs.push((p.tenant, id, config));
    }
    if configs.is_empty() {
        return Ok(vec![ok("provider", "no enabled providers to call")]);
    }
    let findings = std::thread::scope(|scope| {
        let calls: Vec<_> = configs
            .iter()
            .map(|(tenant, id, config)| {
                scope.spawn(move || {
                    let shown_url = mask_url(&config.base_url, &config.secrets());
                    let who = format!("tenant {tenant}, provider {} ({})", config.name, config.kind);
                    let adapter = provider::build(config.clone());
                    let outcome = adapter
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|adapter| adapter.balance().map_err(|e| explain(config, &shown_url, "balance", e)));
                    // The catalogue too, kept for the price checks (below, and `routing check`).
                    let catalogue = match (&adapter, &outcome) {
                        (Ok(a), Ok(_)) => a.catalogue().ok().map(|items| (*id, config.kind, items)),
                        _ => None,
                    };
                    let finding = match outcome {
                        Ok(b) => ok(
                            "provider",
                            format!(
                                "{who} answers: balance {}{}",
                                b.balance,
                                b.currency.map(|c| format!(" {c}")).unwrap_or_default()
                            ),
                        ),
                        Err(e) => problem(
                            Severity::Fail,
                            "provider",
                            e.message,
                            e.hint.unwrap_or_else(|| format!("run `orderctl provider check {}` for details", config.name)),
                        ),
                    };
                    (finding, catalogue)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().expect("a provider balance call panicked")).collect::<Vec<_>>()
    });
    let mut out = Vec::new();
    for (finding, catalogue) in findings {
        if let Some((id, kind, items)) = catalogue {
            db::money::record_catalogue(client, id, kind, &items)?;
        }
        out.push(finding);
    }
    Ok(out)
}

fn stuck_findings(client: &mut Client, tenant: Option<&str>, limits: StuckThresholds) -> Result<Vec<Finding>> {
    let stuck = stuck_orders(client, tenant, limits, STUCK_LINES as i64)?;
    let count = crate::db::orders::count_stuck(client, tenant, limits.overdue_after)? as usize;
    if stuck.is_empty() {
        return Ok(vec![ok("stuck", "no stuck orders")]);
    }
    let mut out: Vec<Finding> = stuck
        .iter()
        .take(STUCK_LINES)
        .map(|o| {
            problem(
                Severity::Fail,
                "stuck",
                format!(
                    "order {} ({}, {}): {}",
                    o["number"],
                    o["tenant"].as_str().unwrap_or("-"),
                    o["package"].as_str().unwrap_or("-"),
                    o["diagnosis"]["sentence"].as_str().unwrap_or("")
                ),
                format!("act as the sentence says; `orderctl inspect {}` shows its history", o["number"]),
            )
        })
        .collect();
    if count > STUCK_LINES {
        out.push(problem(
            Severity::Fail,
            "stuck",
            format!("{} more stuck order(s) not listed here", count - STUCK_LINES),
            "`orderctl list --stuck` lists them all with their reasons",
        ));
    }
    Ok(out)
}

/// Providers whose rate limit cannot make the calls due now (placements first, then status
/// checks) before they count as stuck: the limit is too low for what arrives (or a backlog is
/// draining). A status check counts as one call (an x-stor batch may answer several: the
/// least helpful reading).
fn rate_limit_findings(client: &mut Client, tenant: Option<&str>, limits: StuckThresholds) -> Result<Vec<Finding>> {
    let backlogs = db::pace::backlogs(client, tenant)?;
    let mut out = Vec::new();
    for b in &backlogs {
        let takes = b.limit.time_for((b.placements_due.max(0) + b.checks_due.max(0)) as u64);
        if takes <= limits.overdue_after {
            continue;
        }
        out.push(problem(
            Severity::Warn,
            "rate limit",
            format!(
                "tenant {}, provider {}: {} placement(s) due and {} status check(s) due; at its rate_limit {} (placements \
                 first) the last waits about {}, longer than --stuck-after {}",
                b.tenant,
                b.provider,
                b.placements_due,
                b.checks_due,
                b.limit,
                humantime::format_duration(Duration::from_secs(takes.as_secs().max(1))),
                humantime::format_duration(limits.overdue_after)
            ),
            "raise rate_limit in the setup file if the provider allows more and `orderctl apply` it, or route some \
             packages to another provider",
        ));
    }
    if out.is_empty() && !backlogs.is_empty() {
        out.push(ok("rate limit", format!("{} provider(s) with a rate limit keep up with the calls due", backlogs.len())));
    }
    Ok(out)
}

/// Failed webhook deliveries (a shop was not told), and pending ones long overdue (nothing is
/// delivering them).
fn webhook_findings(client: &mut Client, tenant: Option<&str>) -> Result<Vec<Finding>> {
    let present: bool = client.query_one("SELECT to_regclass('webhook_deliveries') IS NOT NULL", &[])?.get(0);
    if !present {
        return Ok(vec![]);
    }
    let c = db::webhooks::counts(client, tenant, WEBHOOK_OVERDUE)?;
    let mut out = Vec::new();
    if c.failed > 0 {
        out.push(problem(
            Severity::Fail,
            "webhooks",
            format!("{} webhook delivery(ies) failed: their retry horizon passed (dead-lettered) and the shop was not told", c.failed),
            "`orderctl webhook list --failed` shows why; fix the endpoint (`orderctl webhook test TENANT`), then `orderctl webhook retry --failed` or `orderctl webhook replay --endpoint E --since T`",
        ));
    }
    if c.overdue > 0 {
        out.push(problem(
            Severity::Warn,
            "webhooks",
            format!(
                "{} webhook delivery(ies) are more than {} overdue: nothing is delivering them",
                c.overdue,
                humantime::format_duration(WEBHOOK_OVERDUE)
            ),
            "run `orderctl daemon` (or `orderctl sweep` from cron)",
        ));
    }
    if out.is_empty() {
        out.push(ok("webhooks", format!("no failed webhook deliveries; {} pending", c.pending)));
    }
    for e in db::webhooks::endpoints(client, tenant)?.into_iter().filter(|e| e.state == "disabled" || e.state == "paused") {
        let (severity, why) = match e.state.as_str() {
            "disabled" => (Severity::Fail, e.disabled_reason.clone().unwrap_or_else(|| "disabled".into())),
            _ => (Severity::Warn, "paused by an operator".to_string()),
        };
        out.push(problem(
            severity,
            "webhooks",
            format!(
                "webhook endpoint {} of tenant {} ({}) is {}: {why}; {} delivery(ies) wait",
                e.id, e.tenant, e.url, e.state, e.pending
            ),
            format!("fix the endpoint (`orderctl webhook test {}`), then `orderctl webhook resume {}`", e.tenant, e.id),
        ));
    }
    Ok(out)
}

fn health_findings(client: &mut Client) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for table in stats::HOT_TABLES {
        out.push(dead_tuples_finding(client, table)?);
    }
    let t = stats::orders_table_health(client)?;

    let when = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "never".into())
    };
    let vacuumed = when(t.last_autovacuum.max(t.last_vacuum));
    let analyzed = when(t.last_autoanalyze.max(t.last_analyze));
    let last_vacuum = t.last_autovacuum.max(t.last_vacuum);
    let stale = last_vacuum.map(|v| (Utc::now() - v).to_std().map(|d| d > VACUUM_STALE).unwrap_or(false)).unwrap_or(true);
    if !t.autovacuum_on {
        out.push(problem(
            Severity::Warn,
            "vacuum",
            format!("autovacuum is off on this server (orders last vacuumed {vacuumed}, analyzed {analyzed})"),
            "set `autovacuum = on` in postgresql.conf and reload; a job queue without it bloats",
        ));
    } else if stale && t.dead_tuples >= DEAD_TUPLES_MIN / 10 {
        out.push(problem(
            Severity::Warn,
            "vacuum",
            format!("orders has {} dead row versions and was last vacuumed {vacuumed}", t.dead_tuples),
            "check that autovacuum workers are not blocked (see old-transaction) or run `VACUUM (ANALYZE) orders;`",
        ));
    } else {
        out.push(ok("vacuum", format!("autovacuum on; orders last vacuumed {vacuumed}, analyzed {analyzed}")));
    }

    out.push(partitions_ahead_finding(client)?);
    match stats::oldest_transaction(client)? {
        Some(x) if Duration::from_millis(x.age_ms.max(0) as u64) > OLD_TRANSACTION_WARN => {
            let age = humantime::format_duration(Duration::from_secs((x.age_ms / 1000).max(0) as u64));
            let severity =
                if Duration::from_millis(x.age_ms as u64) > OLD_TRANSACTION_FAIL { Severity::Fail } else { Severity::Warn };
            let app = if x.application_name.is_empty() { String::new() } else { format!(" by {}", x.application_name) };
            out.push(problem(
                severity,
                "old-transaction",
                format!("a transaction has been open for {age} (pid {}{app}, {}): vacuum cannot remove rows it might still see", x.pid, x.state),
                format!(
                    "find out what it is (SELECT query FROM pg_stat_activity WHERE pid = {0}); if it is stuck, end it with SELECT pg_terminate_backend({0}); \
                     set idle_in_transaction_session_timeout for the application that opened it",
                    x.pid
                ),
            ));
        }
        Some(x) => out.push(ok(
            "old-transaction",
            format!(
                "oldest open transaction: {} old (pid {}, application '{}', {})",
                humantime::format_duration(Duration::from_secs((x.age_ms / 1000).max(0) as u64)),
                x.pid,
                x.application_name,
                x.state
            ),
        )),
        None => out.push(ok("old-transaction", "no other open transaction in this database")),
    }

    for (name, create) in stats::due_indexes() {
        match stats::index_valid(client, name)? {
            Some(true) => out.push(ok("due-index", format!("the {name} partial index (a claim's hot index) is valid"))),
            Some(false) => out.push(problem(
                Severity::Fail,
                "due-index",
                format!("the {name} index is invalid (an interrupted CREATE INDEX CONCURRENTLY?): claims scan the whole table"),
                format!("run `REINDEX INDEX CONCURRENTLY {name};`"),
            )),
            None => out.push(problem(
                Severity::Fail,
                "due-index",
                format!("the {name} index is missing: claims scan the whole orders table"),
                format!("run `{create}`"),
            )),
        }
    }
    Ok(out)
}

/// Dead row versions of one hot table (all its partitions), a warning above both thresholds.
fn dead_tuples_finding(client: &mut Client, table: &str) -> Result<Finding> {
    let t = stats::table_health(client, table)?;
    let total = t.live_tuples + t.dead_tuples;
    let ratio = if total > 0 { t.dead_tuples as f64 / total as f64 } else { 0.0 };
    let tuples = format!("{table} has {} dead of {} row versions ({:.0}%)", t.dead_tuples, total, ratio * 100.0);
    if t.dead_tuples >= DEAD_TUPLES_MIN && ratio >= DEAD_RATIO_MAX {
        return Ok(problem(
            Severity::Warn,
            "dead-tuples",
            format!("{tuples}: every claim wades through them"),
            format!(
                "run `VACUUM (ANALYZE) {table};`, end any long transaction (see old-transaction), and make autovacuum more eager \
                 on it (ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0.05))"
            ),
        ));
    }
    Ok(ok("dead-tuples", tuples))
}

/// Whether the safety sweeps keep the stats rollups current: behind them `stats` reads every
/// finished order row by row (exact, but slower the further behind). With `--tenant`, only that
/// tenant's orders count as waiting.
fn rollup_finding(client: &mut Client, tenant: Option<&str>) -> Result<Finding> {
    let lag = stats::rollup_lag(client, ROLLUP_BEHIND_WARN, tenant)?;
    let behind = humantime::format_duration(Duration::from_secs((lag.behind_ms / 1000).max(0) as u64));
    let until = lag.rolled_up_until.format("%Y-%m-%d %H:%M UTC");
    if lag.history_waiting {
        return Ok(problem(
            Severity::Warn,
            "rollups",
            format!(
                "the stats rollups end at {until}, {behind} ago, and orders finished since wait to be counted:                  `stats` reads them row by row (exact, slower the further behind)"
            ),
            "schedule `orderctl sweep` (a cron job or systemd timer every few minutes) or run `orderctl daemon`;              each safety sweep rolls up at most 31 days",
        ));
    }
    Ok(ok("rollups", format!("the stats rollups end at {until} ({behind} ago)")))
}

/// New orders should get the ids the database mints (sql/0027): a writer that gives its own
/// random ids puts each order anywhere in every index keyed by order, and nothing else says so.
fn order_ids_finding(client: &mut Client, tenant: Option<&str>) -> Result<Finding> {
    let ids = stats::recent_order_ids(client, tenant)?;
    if ids.not_time_ordered > 0 {
        return Ok(problem(
            Severity::Warn,
            "order-ids",
            format!(
                "{} of the latest {} orders were written with ids that are not time-ordered (not UUID version 7): \
                 whoever inserts them gives its own random ids, and each lands anywhere in every index keyed by order",
                ids.not_time_ordered, ids.checked
            ),
            "leave `id` out of the web app's INSERT INTO orders (the column's default mints it; read it back with \
             RETURNING id), or mint UUID version 7 ids there",
        ));
    }
    if ids.checked == 0 {
        return Ok(ok("order-ids", "no order written since the database mints time-ordered ids (migration 0027)"));
    }
    Ok(ok("order-ids", format!("the latest {} orders have time-ordered ids (UUID version 7)", ids.checked)))
}

/// Events and placements need a partition for the month their order is created in (sql/0018,
/// sql/0032), and a finished order its month of `orders_done` (sql/0031): fewer than one month
/// ahead of all three means next month's first order would be refused, or its placement or its
/// write-back when it finishes, if nothing creates them in time.
fn partitions_ahead_finding(client: &mut Client) -> Result<Finding> {
    let ahead: i64 = client
        .query_one(
            "SELECT count(*) FROM generate_series(1, 3) AS k,
                    LATERAL (SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => k))::date AS m) n
              WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[]) AS parent
                                 WHERE to_regclass(orderctl_partition_name(parent, n.m)) IS NULL)",
            &[&crate::db::partitions::MONTHLY.as_slice()],
        )?
        .get(0);
    if ahead == 0 {
        return Ok(problem(
            Severity::Warn,
            "partitions",
            "next month lacks a partition of order_events, orders_done or placements: orders created then would be refused, \
             or their placements or results",
            "run `orderctl partitions --ahead 1` (the daemon does it on its sweep schedule)",
        ));
    }
    let months: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhparent IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)",
            &[&crate::db::partitions::MONTHLY.as_slice()],
        )?
        .get(0);
    Ok(ok(
        "partitions",
        format!("{months} monthly partition(s) of order_events, orders_done and placements; {ahead} month(s) ahead"),
    ))
}
