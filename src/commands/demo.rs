//! `orderctl demo`: the whole job end to end, on built-in defaults, in one command.
//!
//! 1. A database of its own: without `--database-url` / `DATABASE_URL`, a private throwaway
//!    PostgreSQL cluster (initdb + pg_ctl in a temporary directory, as the `postgres` user when
//!    run as root); with one, a fresh database `orderctl_demo_<pid>` on that server, so an
//!    operator's database is never touched.
//! 2. Migrate, start the built-in simulator on a free port, apply `examples/demo-setup.json`.
//! 3. Show the incident's contradictory routing being refused, by `apply` and by the database.
//! 4. Create orders across Znet, x-stor, code stock and manual routing, and one forwarded to
//!    another tenant (a wholesaler with its own provider and check schedule); run the monitor
//!    until every order is final or waiting for an operator (progress on stderr).
//! 5. Print a summary and where to look next; remove everything it started (also on Ctrl-C or
//!    an error), unless `--keep`.

use crate::cli::DemoArgs;
use crate::db::{
    self, migrate, orders,
    setup::{apply_text, ApplyOptions, ApplyOutcome},
    stats,
};
use crate::dispatch::{Providers, Timing};
use crate::domain::backoff::BackoffPolicy;
use crate::domain::status::OrderStatus;
use crate::error::{Error, ErrorKind, Result};
use crate::kit::{cluster, database::ScratchDb};
use crate::lane::{LaneSettings, Pool};
use crate::output;
use crate::settings::{HttpSettings, Settings};
use crate::simulator::{SimSettings, Simulator};
use comfy_table::Cell;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sample setup; `SIMULATOR_URL` is replaced by the simulator's address and the code
/// stock is sized to the number of orders.
const DEMO_SETUP: &str = include_str!("../../examples/demo-setup.json");
const TENANT: &str = "demo-shop";
/// The incident from the domain notes: auto routing with nowhere to send an order.
const INCIDENT_SETUP: &str = r#"{"tenants": [{"name": "demo-shop", "packages": [
  {"name": "pubg-325", "product": "PUBG Mobile", "price": "5.00", "routing": {"mode": "auto", "provider_type": "manual"}}]}]}"#;
/// Packages the orders go to, in turn: two thirds external, then code stock, then manual.
const ROTATION: &[&str] = &["pubg-60", "freefire-100", "pubg-60", "freefire-100", "itunes-10", "jawaker"];
/// The package the last order goes to: forwarded to the wholesaler (internal routing).
const FORWARDED: &str = "pubg-60-via-wholesale";
const MAX_ORDERS: usize = 1000;
/// The demo gives up waiting for the simulator after this long (it normally needs seconds).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);

pub fn run(s: &Settings, a: &DemoArgs) -> Result<()> {
    if a.orders == 0 || a.orders > MAX_ORDERS {
        return Err(Error::invalid(format!("--orders {} is out of range", a.orders)).with_hint(format!("give 1 to {MAX_ORDERS}")));
    }
    let interrupt = Interrupt::install()?;
    let result = demo(s, a, &interrupt);
    // Every guard inside `demo` has been dropped here: the cluster or database is gone.
    if interrupt.is_set() {
        eprintln!("demo: interrupted; everything it started has been stopped and removed");
        std::process::exit(130);
    }
    result
}

fn demo(s: &Settings, a: &DemoArgs, interrupt: &Interrupt) -> Result<()> {
    let started = Instant::now();
    let database = if s.database_url_given {
        say(&format!("creating a throwaway database on {}", db::mask_url(&s.database_url)));
        DemoDatabase::Fresh(FreshDatabase::create(&s.database_url, a.keep)?)
    } else {
        say("no --database-url / DATABASE_URL given: starting a private throwaway PostgreSQL cluster");
        DemoDatabase::Cluster(PrivateCluster::start(a.keep, interrupt)?)
    };
    interrupt.check()?;
    let url = database.url().to_string();
    let mut client = db::connect(&url)?;
    migrate::migrate(&mut client, &migrate::built_in(), false)?;
    say("schema migrated");

    let sim = Simulator::start(
        SimSettings {
            complete_after: Duration::from_millis(1000),
            jitter: Duration::from_millis(1000),
            cancel_share: 0.15,
            ..SimSettings::default()
        },
        "127.0.0.1:0",
    )?;
    say(&format!("provider simulator (Znet and x-stor) listening on {}", sim.base_url()));

    let setup = demo_setup(&sim.base_url(), a.orders)?;
    match apply_text(&mut client, &setup, ApplyOptions::WRITE)? {
        ApplyOutcome::Applied(summary) => say(&format!("sample setup applied ({} rows created)", summary.changes)),
        ApplyOutcome::Invalid(problems) => {
            let list: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            return Err(Error::internal(format!("the built-in demo setup was refused: {}", list.join("; "))));
        }
    }
    let refusals = show_refused_routing(&mut client)?;
    interrupt.check()?;

    let players = create_orders(&mut client, a.orders)?;
    say(&format!("{} orders created and charged; the monitor takes over", players));
    let settled = run_monitor(&url, a.orders as u64, interrupt)?;

    let all = orders::list_orders(
        &mut client,
        &orders::OrderFilter { tenant: Some(TENANT.into()), limit: MAX_ORDERS as i64 + 10, ..Default::default() },
    )?;
    let forwarded = match all.iter().find(|o| o.forwarded_to.is_some()) {
        Some(o) => Some((o.clone(), orders::load_order(&mut client, o.forwarded_to.expect("found by it"))?)),
        None => None,
    };
    let sim_stats = sim.stats();
    print_summary(&all, &settled, &refusals, &sim_stats, started.elapsed());
    if let Some((down, up)) = &forwarded {
        print_forwarded(down, up);
    }
    print_next_steps(&database, a.keep, &all);
    drop(client);
    drop(sim);
    Ok(())
}

/// The sample setup pointed at the simulator, with enough code stock for the orders.
fn demo_setup(simulator_url: &str, orders: usize) -> Result<String> {
    let mut doc: serde_json::Value = serde_json::from_str(&DEMO_SETUP.replace("SIMULATOR_URL", simulator_url))
        .map_err(|e| Error::internal(format!("the built-in demo setup is not JSON: {e}")))?;
    let code_orders = orders.div_ceil(ROTATION.len());
    let codes: Vec<String> = (1..=code_orders.max(10)).map(|i| format!("ITN-{i:04}-DEMO")).collect();
    doc["tenants"][0]["code_groups"][0]["codes"] = serde_json::json!(codes);
    Ok(doc.to_string())
}

/// Progress lines on stderr (the summary is data, on stdout).
fn say(line: &str) {
    eprintln!("demo: {line}");
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C: turn SIGINT/SIGTERM into a flag the demo checks, so its guards clean up.

struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, flag.clone())
                .map_err(|e| Error::internal(format!("cannot install a signal handler: {e}")))?;
        }
        Ok(Interrupt(flag))
    }
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn check(&self) -> Result<()> {
        if self.is_set() {
            return Err(Error::new(ErrorKind::Refused, "interrupted"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The demo's database: removed when dropped, unless kept.

enum DemoDatabase {
    Cluster(PrivateCluster),
    Fresh(FreshDatabase),
}

impl DemoDatabase {
    fn url(&self) -> &str {
        match self {
            DemoDatabase::Cluster(c) => &c.0.as_ref().expect("running until dropped").url,
            DemoDatabase::Fresh(d) => &d.url,
        }
    }
}

/// A database created on the operator's server for the demo, and dropped after it.
struct FreshDatabase {
    db: ScratchDb,
    url: String,
    keep: bool,
}

impl FreshDatabase {
    fn create(admin_url: &str, keep: bool) -> Result<FreshDatabase> {
        let name = format!("orderctl_demo_{}", std::process::id());
        let mut db = ScratchDb::create(admin_url, &name, None).map_err(|e| {
            Error::new(e.kind, e.message).with_hint(
                "the demo needs a role that may CREATE DATABASE; or run `orderctl demo` without a database URL for a private cluster",
            )
        })?;
        // Dropped by our own Drop, which says so.
        db.keep = true;
        Ok(FreshDatabase { url: db.url.clone(), db, keep })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        match self.db.drop_now() {
            Ok(()) => say(&format!("demo database {} dropped", self.db.name)),
            Err(e) => eprintln!(
                "demo: could not drop the demo database {} ({}); drop it by hand: DROP DATABASE {};",
                self.db.name, e.message, self.db.name
            ),
        }
    }
}

/// The kit's private cluster, saying when it is gone.
struct PrivateCluster(Option<cluster::PrivateCluster>);

impl PrivateCluster {
    fn start(keep: bool, interrupt: &Interrupt) -> Result<PrivateCluster> {
        let c = cluster::PrivateCluster::start(&cluster::ClusterOptions { keep, ..Default::default() }, &|| interrupt.check())
            .map_err(|e| {
                let hint = e.hint.clone().unwrap_or_default();
                Error::new(e.kind, e.message).with_hint(format!(
                    "{hint}{}or point the demo at a running server: orderctl demo --database-url postgres://USER@HOST:PORT/DB",
                    if hint.is_empty() { "" } else { "; " }
                ))
            })?;
        say(&format!("private PostgreSQL cluster running in {} on port {}", c.dir.display(), c.port));
        Ok(PrivateCluster(Some(c)))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            let dir = c.dir.clone();
            drop(c);
            if !dir.exists() {
                say("private cluster stopped and removed");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The demo itself.

/// Refusals shown to the operator: by `apply`, and by the database for raw SQL.
struct Refusals {
    by_apply: Vec<String>,
    by_database: String,
}

fn show_refused_routing(client: &mut crate::db::Client) -> Result<Refusals> {
    let by_apply = match apply_text(client, INCIDENT_SETUP, ApplyOptions::WRITE)? {
        ApplyOutcome::Invalid(problems) => problems.into_iter().map(|p| p.message).collect(),
        ApplyOutcome::Applied(_) => {
            return Err(Error::internal("the contradictory routing of the incident was accepted by apply"))
        }
    };
    // The same contradiction written by other software, straight into the table.
    let mut tx = client.transaction()?;
    let by_database = match tx.execute(
        "UPDATE packages SET routing_mode = 'auto', provider_type = 'manual', primary_provider_id = NULL WHERE name = 'jawaker'",
        &[],
    ) {
        Err(e) => e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string()),
        Ok(_) => return Err(Error::internal("the database accepted the contradictory routing of the incident")),
    };
    drop(tx);
    say("the incident's contradictory routing (auto, provider type manual, no provider) was refused");
    Ok(Refusals { by_apply, by_database })
}

/// Charge and insert the orders (the monitor dispatches them, as it would orders written by a
/// shop's web app); the last of two or more is forwarded to the wholesaler. Returns how many
/// were created.
fn create_orders(client: &mut crate::db::Client, n: usize) -> Result<usize> {
    for i in 0..n {
        let package = if i + 1 == n && n > 1 { FORWARDED } else { ROTATION[i % ROTATION.len()] };
        let user = if i % 2 == 0 { "halil" } else { "ayse" };
        let player = format!("{}", 5_100_000 + i * 37);
        orders::create_order(
            client,
            &orders::NewOrder { tenant: TENANT, user, package, player: &player, extra: "", quantity: 1, request_id: None },
        )?;
    }
    Ok(n)
}

/// Run the lanes until every order is final or waiting for an operator.
fn run_monitor(url: &str, total: u64, interrupt: &Interrupt) -> Result<stats::Settlement> {
    let http = HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..HttpSettings::default()
    };
    let policy = BackoffPolicy {
        first_check: Duration::ZERO,
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_secs(1),
        max_checks: 100,
        give_up_after: Duration::from_secs(60),
        jitter: 0.1,
    };
    let settings = LaneSettings {
        database_url: url.to_string(),
        timing: Timing { lease: Duration::from_secs(15), request_timeout: http.request_timeout },
        capacity: 8,
        tenant: None,
        drain: None,
        idle_poll: Duration::from_millis(50),
        holder: LaneSettings::holder(),
        write_batch: 100,
        write_delay: Duration::from_millis(5),
    };
    let mut client = db::connect(url)?;
    let ids = db::providers::lane_ids(&mut client, None)?;
    let pool = Pool::start(&settings, &Providers::new(http, policy), &ids, Duration::from_secs(5));
    let progress = Progress::new(total);
    let started = Instant::now();
    let result = loop {
        if let Err(e) = interrupt.check() {
            break Err(e);
        }
        let now = match stats::settlement(&mut client, Some(TENANT)) {
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        progress.update(&now);
        if now.moving == 0 {
            progress.finish(&now);
            break Ok(now);
        }
        if started.elapsed() > SETTLE_TIMEOUT {
            progress.finish(&now);
            break Err(Error::new(
                ErrorKind::TimedOut,
                format!("{} order(s) were still moving after {}s", now.moving, SETTLE_TIMEOUT.as_secs()),
            )
            .with_hint("this machine may be overloaded; run `orderctl demo --keep` and `orderctl list --stuck` to see why"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    pool.stop();
    result
}

/// A progress bar on a terminal, plain lines (at most one per second) otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<Option<Instant>>,
    total: u64,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template("demo: {bar:30} {pos}/{len} settled  {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar, last_line: std::cell::Cell::new(None), total }
    }
    fn text(s: &stats::Settlement) -> String {
        format!(
            "{} approved, {} rejected, {} waiting for an operator, {} moving",
            s.approved, s.rejected, s.waiting_for_operator, s.moving
        )
    }
    fn update(&self, s: &stats::Settlement) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(s.settled() as u64);
                bar.set_message(Self::text(s));
            }
            None => {
                let due = self.last_line.get().map(|t| t.elapsed() >= Duration::from_secs(1)).unwrap_or(true);
                if due {
                    say(&format!("{}/{} settled: {}", s.settled(), self.total, Self::text(s)));
                    self.last_line.set(Some(Instant::now()));
                }
            }
        }
    }
    fn finish(&self, s: &stats::Settlement) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(Self::text(s)),
            None => say(&format!("{}/{} settled: {}", s.settled(), self.total, Self::text(s))),
        }
    }
}

/// What happened to the orders of one package through one route.
#[derive(Default)]
struct Outcome {
    orders: usize,
    approved: usize,
    rejected: usize,
    waiting: usize,
}

fn route_of(o: &orders::OrderRow) -> String {
    if o.forwarded_to.is_some() {
        return "forwarded to wholesale".into();
    }
    match (&o.provider, o.package.as_str()) {
        (Some(p), _) => p.clone(),
        (None, "itunes-10") => "code stock".into(),
        (None, "jawaker") => "manual".into(),
        (None, _) => "-".into(),
    }
}

fn print_summary(
    all: &[orders::OrderRow],
    settled: &stats::Settlement,
    refusals: &Refusals,
    sim: &serde_json::Value,
    took: Duration,
) {
    println!("orderctl demo: {} orders in {:.1}s\n", all.len(), took.as_secs_f64());
    println!("The incident's routing (auto, provider type manual, no provider) was refused:");
    for m in &refusals.by_apply {
        println!("  by apply:        {m}");
    }
    println!("  by the database: {}\n", refusals.by_database);

    let mut by_route: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    for o in all {
        let e = by_route.entry((o.package.clone(), route_of(o))).or_default();
        e.orders += 1;
        match o.status.as_str() {
            "approved" => e.approved += 1,
            "rejected" => e.rejected += 1,
            _ => e.waiting += 1,
        }
    }
    let mut t = output::table(&["package", "provider", "orders", "approved", "rejected + refunded", "waiting for an operator"]);
    for ((package, route), e) in &by_route {
        t.add_row(vec![
            Cell::new(package),
            Cell::new(route),
            Cell::new(e.orders),
            Cell::new(e.approved),
            Cell::new(e.rejected),
            Cell::new(e.waiting),
        ]);
    }
    t.add_row(vec![
        Cell::new("all"),
        Cell::new(""),
        Cell::new(all.len()),
        Cell::new(settled.approved),
        Cell::new(settled.rejected),
        Cell::new(settled.waiting_for_operator),
    ]);
    println!("{t}");
    let placed = sim["orders_placed"].as_u64().unwrap_or(0);
    let doubles = sim["double_placements"].as_u64().unwrap_or(0);
    // A forwarded order reaches the simulator as the wholesaler's order.
    let sent = all.iter().filter(|o| o.provider.is_some() || o.forwarded_to.is_some()).count();
    println!(
        "The simulator received {placed} placement(s) for {sent} order(s) sent to a provider, directly or through the wholesaler ({doubles} duplicate(s)) and answered {} status call(s).\n",
        sim["status_calls"].as_u64().unwrap_or(0)
    );

    // A few orders to look at: one per route, approved first, then a rejection and a manual one.
    let mut samples: Vec<&orders::OrderRow> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for o in all.iter().filter(|o| o.status == OrderStatus::Approved) {
        if seen.insert(route_of(o)) {
            samples.push(o);
        }
    }
    samples.extend(all.iter().find(|o| o.status == OrderStatus::Rejected));
    samples.extend(all.iter().find(|o| o.status == OrderStatus::Pending));
    let mut t = output::table(&["order", "package", "provider", "status", "PIN / last message"]);
    for o in &samples {
        let detail = match (&o.pin_code, &o.last_message) {
            (Some(pin), _) => pin.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "-".into(),
        };
        t.add_row(vec![
            Cell::new(o.number),
            Cell::new(&o.package),
            Cell::new(route_of(o)),
            output::status_cell(o.status.as_str()),
            Cell::new(detail),
        ]);
    }
    println!("Sample orders:\n{t}");
}

/// The forwarded order and the wholesaler's order it became, side by side.
fn print_forwarded(down: &orders::OrderRow, up: &orders::OrderRow) {
    println!("\nOne order was forwarded to another tenant (internal routing, no provider call of its own):");
    let mut t = output::table(&["tenant", "order", "package", "paid by", "price", "provider", "status", "PIN"]);
    for o in [down, up] {
        t.add_row(vec![
            Cell::new(&o.tenant),
            Cell::new(o.number),
            Cell::new(&o.package),
            Cell::new(&o.user),
            Cell::new(o.price),
            Cell::new(o.provider.as_deref().unwrap_or("-")),
            output::status_cell(o.status.as_str()),
            Cell::new(o.pin_code.as_deref().unwrap_or("-")),
        ]);
    }
    println!("{t}");
    let outcome = match (down.status, up.status) {
        (OrderStatus::Approved, OrderStatus::Approved) if down.pin_code == up.pin_code => {
            "approved on both sides with the same PIN, in one transaction"
        }
        (OrderStatus::Rejected, OrderStatus::Rejected) => {
            "rejected on both sides: the buyer and the shop's account at the wholesaler were each refunded once"
        }
        _ => "still open: it finishes when the wholesaler's order does",
    };
    println!("Order {} became the wholesaler's order {}: {outcome}.", down.number, up.number);
}

fn print_next_steps(database: &DemoDatabase, keep: bool, all: &[orders::OrderRow]) {
    let example = all.iter().find(|o| o.status == OrderStatus::Pending).or(all.first()).map(|o| o.number).unwrap_or(1000);
    let forwarded = all.iter().find(|o| o.forwarded_to.is_some()).map(|o| o.number);
    println!("\nWhere to look next:");
    if keep {
        // Masked: a password in the operator's URL is never printed.
        println!("  export DATABASE_URL={}", db::mask_url(database.url()));
    }
    for (cmd, what) in [
        ("orderctl list --stuck".to_string(), "orders that are not moving, each with the reason"),
        (format!("orderctl inspect {example}"), "one order: its fields, placements, history and diagnosis"),
        ("orderctl stats".to_string(), "counts, lateness and timings of the whole operation"),
        ("orderctl doctor".to_string(), "everything that needs an operator, with the fix"),
        ("orderctl provider list".to_string(), "providers with the check schedule in force for each, and where it came from"),
    ] {
        println!("  {cmd:<24}  {what}");
    }
    if let Some(n) = forwarded {
        println!("  {:<24}  the forwarded order: its link, and the wholesaler's order's state", format!("orderctl inspect {n}"));
    }
    if keep {
        match database {
            DemoDatabase::Cluster(c) => println!(
                "\nThe private cluster keeps running (--keep). Stop and remove it with:\n  {}",
                c.0.as_ref().expect("running until dropped").stop_command()
            ),
            DemoDatabase::Fresh(d) => {
                println!("\nThe demo database {} is kept (--keep). Drop it with: DROP DATABASE {};", d.db.name, d.db.name)
            }
        }
    } else {
        println!(
            "\nThe demo's database is removed when it ends; run `orderctl demo --keep` to keep it and try these commands on it."
        );
    }
}
