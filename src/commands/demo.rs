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
    setup::{apply_text, ApplyOutcome},
    stats,
};
use crate::dispatch::{Providers, Timing};
use crate::domain::backoff::BackoffPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::lane::{LaneSettings, Pool};
use crate::output;
use crate::settings::{HttpSettings, Settings};
use crate::simulator::{SimSettings, Simulator};
use comfy_table::Cell;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    match apply_text(&mut client, &setup, false)? {
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
            DemoDatabase::Cluster(c) => &c.url,
            DemoDatabase::Fresh(d) => &d.url,
        }
    }
}

/// A database created on the operator's server for the demo, and dropped after it.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
    keep: bool,
}

impl FreshDatabase {
    fn create(admin_url: &str, keep: bool) -> Result<FreshDatabase> {
        let name = format!("orderctl_demo_{}", std::process::id());
        let mut u = url::Url::parse(admin_url).map_err(|e| {
            Error::invalid(format!("the database URL is not a URL ({e}); the demo needs one to create its own database"))
                .with_hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
        })?;
        u.set_path(&format!("/{name}"));
        let mut admin = db::connect(admin_url)?;
        // Two statements: DROP/CREATE DATABASE cannot share an implicit transaction.
        let fresh = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .and_then(|()| admin.batch_execute(&format!("CREATE DATABASE {name}")));
        fresh.map_err(|e| {
            let inner = crate::error::Error::from(e);
            Error::new(inner.kind, format!("cannot create the demo database {name}: {}", inner.message))
                .with_hint("the demo needs a role that may CREATE DATABASE; or run `orderctl demo` without a database URL for a private cluster")
        })?;
        Ok(FreshDatabase { admin_url: admin_url.to_string(), name, url: u.to_string(), keep })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let dropped = db::connect(&self.admin_url)
            .and_then(|mut c| Ok(c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))?));
        match dropped {
            Ok(()) => say(&format!("demo database {} dropped", self.name)),
            Err(e) => eprintln!(
                "demo: could not drop the demo database {} ({}); drop it by hand: DROP DATABASE {};",
                self.name, e.message, self.name
            ),
        }
    }
}

/// A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 on a free port and on
/// a socket in that directory only. Stopped and deleted when dropped, unless kept.
struct PrivateCluster {
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
    url: String,
    running: bool,
    keep: bool,
}

impl PrivateCluster {
    fn start(keep: bool, interrupt: &Interrupt) -> Result<PrivateCluster> {
        let bindir = server_bindir()?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!("orderctl-demo-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir(&dir).map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        // From here on, Drop removes the directory (and stops the server once it runs).
        let mut cluster = PrivateCluster { dir, bindir, as_postgres, url: String::new(), running: false, keep };
        if as_postgres {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            chown_to_postgres(&cluster.dir)?;
        }
        let data = cluster.dir.join("data");
        cluster.run_tool(
            "initdb",
            &["-D", path_str(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
        )?;
        interrupt.check()?;
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                path_str(&cluster.dir)?
            );
            let log = cluster.dir.join("server.log");
            match cluster
                .run_tool("pg_ctl", &["-D", path_str(&data)?, "-l", path_str(&log)?, "-w", "-t", "30", "-o", &options, "start"])
            {
                Ok(()) => {
                    cluster.running = true;
                    cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                    say(&format!("private PostgreSQL cluster running in {} on port {port}", cluster.dir.display()));
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
            interrupt.check()?;
        }
        Err(last.unwrap_or_else(|| Error::internal("the private cluster did not start")))
    }

    /// Run a server binary (as the postgres user when we are root); its output is kept and shown
    /// only when it fails.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bindir.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        // The server gets its own session from pg_ctl; keep our terminal out of the tools.
        let out = cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).output().map_err(|e| {
            Error::internal(format!("cannot run {}: {e}", program.display())).with_hint(if self.as_postgres {
                "running as root needs `runuser` (util-linux) and a postgres user"
            } else {
                "check the PostgreSQL installation"
            })
        })?;
        if out.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Ok(log) = std::fs::read_to_string(self.dir.join("server.log")) {
            if tool == "pg_ctl" {
                text.push_str(&format!(
                    "\nserver log:\n{}",
                    log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        Err(Error::new(ErrorKind::DatabaseUnavailable, format!("{tool} failed ({}): {text}", out.status))
            .with_hint("or point the demo at a running server: orderctl demo --database-url postgres://USER@HOST:PORT/DB"))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.keep && self.running {
            return;
        }
        if self.running {
            let data = self.dir.join("data");
            if let Err(e) = self.run_tool("pg_ctl", &["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"]) {
                eprintln!("demo: could not stop the private cluster: {}", e.message);
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => say("private cluster stopped and removed"),
            Err(e) => eprintln!("demo: could not remove {} ({e}); remove it by hand", self.dir.display()),
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| Error::internal(format!("the path {} is not UTF-8", p.display())))
}

/// Where initdb and pg_ctl live: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/N/bin, else the PATH.
fn server_bindir() -> Result<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has_tools(d))) {
        return Ok(dir);
    }
    Err(Error::new(ErrorKind::DatabaseUnavailable, "PostgreSQL's server programs (initdb, pg_ctl) are not installed on this machine")
        .with_hint("install them (Debian/Ubuntu: apt-get install postgresql), or give the demo a server: orderctl demo --database-url postgres://USER@HOST:PORT/DB"))
}

fn chown_to_postgres(dir: &Path) -> Result<()> {
    let name = std::ffi::CString::new("postgres").expect("no NUL in a literal");
    // SAFETY: getpwnam gets a valid C string; the result is read at once, before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::new(
            ErrorKind::DatabaseUnavailable,
            "running as root, but there is no `postgres` user to own the private cluster",
        )
        .with_hint(
            "create it (useradd --system postgres), run the demo as an ordinary user, or give it a server with --database-url",
        ));
    }
    // SAFETY: pw is non-null and points at getpwnam's static record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| Error::internal(format!("cannot hand {} to the postgres user: {e}", dir.display())))
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::internal(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()?.port())
}

// ---------------------------------------------------------------------------------------------
// The demo itself.

/// Refusals shown to the operator: by `apply`, and by the database for raw SQL.
struct Refusals {
    by_apply: Vec<String>,
    by_database: String,
}

fn show_refused_routing(client: &mut postgres::Client) -> Result<Refusals> {
    let by_apply = match apply_text(client, INCIDENT_SETUP, false)? {
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
fn create_orders(client: &mut postgres::Client, n: usize) -> Result<usize> {
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
    for o in all.iter().filter(|o| o.status == "approved") {
        if seen.insert(route_of(o)) {
            samples.push(o);
        }
    }
    samples.extend(all.iter().find(|o| o.status == "rejected"));
    samples.extend(all.iter().find(|o| o.status == "pending"));
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
            output::status_cell(&o.status),
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
            output::status_cell(&o.status),
            Cell::new(o.pin_code.as_deref().unwrap_or("-")),
        ]);
    }
    println!("{t}");
    let outcome = match (down.status.as_str(), up.status.as_str()) {
        ("approved", "approved") if down.pin_code == up.pin_code => {
            "approved on both sides with the same PIN, in one transaction"
        }
        ("rejected", "rejected") => {
            "rejected on both sides: the buyer and the shop's account at the wholesaler were each refunded once"
        }
        _ => "still open: it finishes when the wholesaler's order does",
    };
    println!("Order {} became the wholesaler's order {}: {outcome}.", down.number, up.number);
}

fn print_next_steps(database: &DemoDatabase, keep: bool, all: &[orders::OrderRow]) {
    let example = all.iter().find(|o| o.status == "pending").or(all.first()).map(|o| o.number).unwrap_or(1000);
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
                "\nThe private cluster keeps running (--keep). Stop and remove it with:\n  {}{} -D {} stop && rm -rf {}",
                if c.as_postgres { "runuser -u postgres -- " } else { "" },
                c.bindir.join("pg_ctl").display(),
                c.dir.join("data").display(),
                c.dir.display()
            ),
            DemoDatabase::Fresh(d) => {
                println!("\nThe demo database {} is kept (--keep). Drop it with: DROP DATABASE {};", d.name, d.name)
            }
        }
    } else {
        println!(
            "\nThe demo's database is removed when it ends; run `orderctl demo --keep` to keep it and try these commands on it."
        );
    }
}
