//! The benchmark's plumbing: databases, processes, the simulator, statistics and the table.

use orderctl::db::Client;
use orderctl::domain::lifecycle::states::{ExternalStatus, OrderStatus};
use orderctl::kit::database::ScratchDb;
use orderctl::kit::sim::SimProcess;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use uuid::Uuid;

use super::ProviderKind;

/// Processes this harness started and has not stopped yet: `die` stops them (an exit runs no
/// destructors, and a simulator left behind would skew the next run).
static CHILDREN: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn started(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

fn stopped(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| *p != pid);
}

pub fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}");
    for pid in CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        // SAFETY: kill(2) on a child this process started and has not reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
    std::process::exit(2)
}

/// The benchmark's own connections (the shop's inserts, the polls, the samples) are named apart
/// from the daemon's (`orderctl`), so that the CPU counted as the daemon's backends
/// (`BackendCpu`) and the daemon's connection count (`Daemon::wait_ready`) are the daemon's alone.
pub const OWN_APPLICATION_NAME: &str = "orderctl-bench";

pub fn connect(url: &str) -> Client {
    let sep = if url.contains('?') { '&' } else { '?' };
    let named = format!("{url}{sep}application_name={OWN_APPLICATION_NAME}");
    orderctl::db::connect(&named).unwrap_or_else(|e| die(&format!("cannot connect to {url}: {}", e.message)))
}

/// Build the release binary the processes run (a no-op when it is up to date) and return its path.
pub fn build_orderctl() -> String {
    // An orderctl built already (a debug build on a slow machine: rows then say so in
    // BENCHMARKS.md; or `cargo build --release --example bench --bin orderctl`, which builds both
    // with one feature set, where a separate `--bin orderctl` build resolves dependencies anew).
    if let Ok(bin) = std::env::var("BENCH_ORDERCTL").or_else(|_| std::env::var("ORDERCTL_BENCH_BIN")) {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--bin", "orderctl"])
        .status()
        .unwrap_or_else(|e| die(&format!("cannot run cargo: {e}")));
    if !status.success() {
        die("cargo build --release --bin orderctl failed");
    }
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/bench -> target/release/orderctl
    let bin = exe.parent().and_then(|p| p.parent()).map(|p| p.join("orderctl")).unwrap();
    if !bin.exists() {
        die(&format!("{} not found after the build", bin.display()));
    }
    bin.to_string_lossy().into_owned()
}

pub fn run_checked(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| die(&format!("cannot run {cmd:?}: {e}")));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        die(&format!("{cmd:?} failed:\n{text}"));
    }
    text
}

/// The number after `prefix` in a tool's output ("tps = 1234.5 (...)").
pub fn parse_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The machine, as BENCHMARKS.md describes it.
pub fn machine(admin_url: &str) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let mut c = connect(admin_url);
    let setting = |c: &mut Client, name: &str| -> String {
        c.query_one(&format!("SHOW {name}"), &[]).map(|r| r.get(0)).unwrap_or_default()
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory_gb": (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "postgres": setting(&mut c, "server_version"),
        "shared_buffers": setting(&mut c, "shared_buffers"),
        "synchronous_commit": setting(&mut c, "synchronous_commit"),
        "fsync": setting(&mut c, "fsync"),
        "wal_sync_method": setting(&mut c, "wal_sync_method"),
        "commit_delay": setting(&mut c, "commit_delay"),
        // Off on some CI machines (a conf.d file): then nothing vacuums the hot tables during a
        // run, which long runs (`--long-transaction`) feel most.
        "autovacuum": setting(&mut c, "autovacuum"),
    })
}

// ---------------------------------------------------------------------------------------------
// Databases

pub struct Server {
    admin_url: String,
    prefix: String,
    counter: std::cell::Cell<usize>,
}

impl Server {
    pub fn new(admin_url: &str) -> Server {
        Server {
            admin_url: admin_url.to_string(),
            prefix: format!("orderctl_bench_{}", std::process::id()),
            counter: std::cell::Cell::new(0),
        }
    }

    /// A database the benchmark created; dropped (with any sessions still on it) when it goes
    /// out of scope, a panicking run included.
    fn create(&self, what: &str, template: Option<&str>) -> ScratchDb {
        let n = self.counter.get();
        self.counter.set(n + 1);
        let name = format!("{}_{what}_{n}", self.prefix);
        ScratchDb::create(&self.admin_url, &name, template).unwrap_or_else(|e| die(&e.message))
    }

    pub fn create_empty(&self, what: &str) -> ScratchDb {
        self.create(what, None)
    }

    /// A migrated database with the benchmark's setup applied, cloned for every run.
    pub fn template(&self, sim_url: &str) -> ScratchDb {
        let db = self.create_empty("template");
        let mut c = connect(&db.url);
        orderctl::db::migrate::migrate(&mut c, &orderctl::db::migrate::built_in(), false)
            .unwrap_or_else(|e| die(&format!("migrate: {}", e.message)));
        match orderctl::db::setup::apply_text(&mut c, &setup(sim_url).to_string(), orderctl::db::setup::ApplyOptions::WRITE) {
            Ok(orderctl::db::setup::ApplyOutcome::Applied(_)) => {}
            Ok(orderctl::db::setup::ApplyOutcome::Invalid(p)) => die(&format!("setup refused: {p:?}")),
            Err(e) => die(&format!("apply: {}", e.message)),
        }
        db
    }

    /// A database kept from an earlier run (`BENCH_REUSE_HISTORY`): the benchmark's setup
    /// applied again with this run's simulator, and the providers' breakers and holds as a new
    /// setup leaves them (the earlier run's simulator is gone, and a call to it opened them).
    pub fn adopt(c: &mut Client, sim_url: &str) {
        match orderctl::db::setup::apply_text(c, &setup(sim_url).to_string(), orderctl::db::setup::ApplyOptions::WRITE) {
            Ok(orderctl::db::setup::ApplyOutcome::Applied(_)) => {}
            Ok(orderctl::db::setup::ApplyOutcome::Invalid(p)) => die(&format!("setup refused: {p:?}")),
            Err(e) => die(&format!("apply: {}", e.message)),
        }
        c.batch_execute(
            "UPDATE provider_health SET breaker = 'closed', failures = 0, breaker_since = NULL, probe_after = NULL,
                    breaker_reason = NULL, next_call_at = NULL, next_probe_at = NULL, hold = NULL, hold_reason = NULL,
                    hold_at = NULL",
        )
        .unwrap_or_else(|e| die(&format!("resetting provider health: {e}")));
    }

    pub fn clone_of(&self, template: &str, what: &str) -> ScratchDb {
        self.create(what, Some(template))
    }
}

/// The dealer balance the simulator starts each scenario with (see `Sim::reset`).
const UNSPENDABLE_BALANCE: &str = "1000000000.00";

/// Two providers on the simulator; a Znet package (x-stor fallback) and an x-stor package.
/// Balances large enough for every order any scenario inserts.
fn setup(sim_url: &str) -> Value {
    json!({
      "tenants": [{
        "name": "bench",
        "users": [{"name": "buyer", "email": "buyer@example.com", "balance": "100000000.00", "overdraft_limit": "0"}],
        "providers": [
          {"name": "znet-main", "kind": "znet", "base_url": sim_url, "credentials": {"kod": "bayi1", "sifre": "s3cret"}},
          {"name": "xstor", "kind": "xstor", "base_url": sim_url, "credentials": {"api_token": "tok-bench"}}
        ],
        "packages": [
          {"name": "pubg-60", "product": "PUBG Mobile", "price": "1.10",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main", "fallback": "xstor"},
           "mappings": {"znet-main": {"oyun": "7001", "kupur": "60"}, "xstor": {"product_id": "501", "player_param": "playerId"}}},
          {"name": "freefire-100", "product": "Free Fire", "price": "2.00",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "xstor"},
           "mappings": {"xstor": {"product_id": "502", "player_param": "playerId"}}}
        ]
      }]
    })
}

/// Insert orders by SQL as the shop's web app would: the order rows and their ledger charges in
/// one statement. Returns the new ids.
pub fn insert_orders(c: &mut Client, package: &str, n: i64) -> Vec<Uuid> {
    orderctl::kit::orders::insert_orders(c, "bench", "buyer", package, n).unwrap_or_else(|e| die(&e.message))
}

/// Times keyed by order id, re-keyed by the reference each order was placed with (a Znet
/// reference is a number of its own, not the order's id).
pub fn by_reference(c: &mut Client, by_id: &std::collections::HashMap<String, f64>) -> std::collections::HashMap<String, f64> {
    let ids: Vec<Uuid> = by_id.keys().filter_map(|k| k.parse().ok()).collect();
    c.query("SELECT id::text, provider_referans FROM orders WHERE id = ANY($1) AND provider_referans IS NOT NULL", &[&ids])
        .unwrap()
        .iter()
        .filter_map(|r| Some((r.get::<_, String>(1), *by_id.get(&r.get::<_, String>(0))?)))
        .collect()
}

pub fn final_count(c: &mut Client) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM orders WHERE status <> {pending}", pending = OrderStatus::Pending.sql()), &[])
        .unwrap()
        .get(0)
}

/// Orders with work scheduled are live (sql/0031): naming the live partition's key, a probe
/// is planned over it alone, not over every month of finished orders (which took a share of the
/// CPU the benchmark measures).
fn live() -> String {
    orderctl::domain::lifecycle::states::live_sql("")
}

/// True while any order has work scheduled. Two probes in the order of the partial due
/// indexes, cheap enough to poll every few milliseconds without taking CPU from what is
/// measured (a bare `EXISTS (... next_check_at IS NOT NULL)` matches neither index, and the
/// planner likes a table scan for an EXISTS it expects to find quickly).
pub fn work_left(c: &mut Client) -> bool {
    c.query_one(
        &format!(
            "SELECT (SELECT 1 FROM orders WHERE {live} AND next_check_at IS NOT NULL AND external_status = {not_sent}
                  ORDER BY lane, next_check_at LIMIT 1) IS NOT NULL
             OR (SELECT 1 FROM orders WHERE {live} AND next_check_at IS NOT NULL AND external_status <> {not_sent}
                  ORDER BY lane, next_check_at LIMIT 1) IS NOT NULL",
            not_sent = ExternalStatus::NotSent.sql(),
            live = live()
        ),
        &[],
    )
    .unwrap()
    .get(0)
}

/// True while any of `remaining` has work scheduled. Under a transaction held open by another
/// connection `work_left` is not cheap: each of its probes walks every due-index entry written
/// since that snapshot, which vacuum cannot remove, and polled every 10 ms it takes a growing
/// share of the CPU it is meant to leave to the daemon. This reads the orders by primary key
/// from the front of `remaining` (oldest first), 64 at a time, and stops at the first chunk that
/// still holds an open one; finished orders are dropped (a final order never opens again).
/// Reading all of a round's 2,000 ids every 10 ms cost the server 6 ms a probe, a fifth of a
/// core (measured with `pg_stat_statements`).
pub fn work_left_of(c: &mut Client, remaining: &mut Vec<Uuid>) -> bool {
    const CHUNK: usize = 64;
    while !remaining.is_empty() {
        let chunk = &remaining[..CHUNK.min(remaining.len())];
        let open: std::collections::HashSet<Uuid> = c
            .query(&format!("SELECT id FROM orders WHERE {} AND id = ANY($1) AND next_check_at IS NOT NULL", live()), &[&chunk])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let n = chunk.len();
        if open.is_empty() {
            remaining.drain(..n);
            continue;
        }
        let still: Vec<Uuid> = remaining.drain(..n).filter(|id| open.contains(id)).collect();
        remaining.splice(0..0, still);
        return true;
    }
    false
}

/// Poll every 10 ms until `done` or the timeout.
pub fn wait_until(c: &mut Client, timeout: Duration, mut done: impl FnMut(&mut Client) -> bool) -> bool {
    orderctl::kit::wait_until(timeout, Duration::from_millis(10), || done(c))
}

// ---------------------------------------------------------------------------------------------
// Processes

fn terminate(child: &mut Child) {
    stopped(child.id());
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `orderctl daemon` as a process against one database.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    pub fn start(bin: &str, url: &str, extra: &[&str]) -> Daemon {
        let child = Command::new(bin)
            .arg("daemon")
            .args(extra)
            .env("DATABASE_URL", url)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(&format!("cannot start the daemon: {e}")));
        started(child.id());
        Daemon { child }
    }

    /// Wait until the daemon's connections are open (it shows up in pg_stat_activity).
    pub fn wait_ready(&self, c: &mut Client) {
        let ok = wait_until(c, Duration::from_secs(10), |c| {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orderctl'",
                    &[],
                )
                .unwrap()
                .get(0);
            n >= 1
        });
        if !ok {
            die("the daemon did not connect within 10 s");
        }
    }

    /// CPU time (user + system) the daemon process has used so far, in ms.
    pub fn cpu_ms(&self) -> f64 {
        cpu_ms(self.child.id())
    }

    /// The peak resident set size so far (VmHWM), in kB.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// CPU time (user + system) a process has used, from /proc/PID/stat, in ms; 0 once it is gone.
pub fn cpu_ms(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: u64 = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<u64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 * 1000.0 / per_second
}

/// The CPU time of the daemon's Postgres backends (`application_name = 'orderctl'` in this
/// database), sampled: each backend's latest reading is kept, so one that exits between two
/// samples still counts up to the last one.
#[derive(Default)]
pub struct BackendCpu {
    latest: std::collections::HashMap<i32, f64>,
}

impl BackendCpu {
    pub fn sample(&mut self, c: &mut Client) {
        let pids: Vec<i32> = c
            .query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'orderctl'", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for pid in pids {
            let ms = cpu_ms(pid as u32);
            if ms > 0.0 {
                self.latest.insert(pid, ms);
            }
        }
    }

    pub fn total_ms(&self) -> f64 {
        self.latest.values().sum()
    }
}

/// Wall time of one short command run as a process, in ms.
pub fn time_process(bin: &str, url: &str, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin).args(args).env("DATABASE_URL", url).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if !out.success() {
        die(&format!("orderctl {args:?} failed"));
    }
    ms
}

// ---------------------------------------------------------------------------------------------
// The simulator, as a subprocess

pub struct Sim {
    process: SimProcess,
    pub base: String,
    agent: ureq::Agent,
}

impl Sim {
    pub fn start(bin: &str) -> Sim {
        Sim::start_with(bin, &["--threads", "8"])
    }

    /// A simulator with these extra arguments (`--threads 64` for one that answers slowly).
    pub fn start_with(bin: &str, extra: &[&str]) -> Sim {
        let args: Vec<&str> = ["--complete-after", "0s"].into_iter().chain(extra.iter().copied()).collect();
        let process = SimProcess::start(std::path::Path::new(bin), &args, true)
            .unwrap_or_else(|e| die(&format!("cannot start the simulator: {}", e.message)));
        started(process.pid());
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let sim = Sim { base: process.base_url.clone(), process, agent };
        sim.reset(json!({}));
        sim
    }

    /// Forget all orders and apply a configuration. Both dealer accounts get a balance no
    /// scenario spends, unless the configuration sets one: the simulator's opening balance
    /// lasts some tens of thousands of orders, and a long run that drained it would measure
    /// the fallback and then orders waiting for a provider (issue 23), not the engine.
    pub fn reset(&self, config: Value) {
        let mut config = config;
        if let Some(settings) = config.as_object_mut() {
            settings.entry("balance").or_insert(json!(UNSPENDABLE_BALANCE));
        }
        self.process.reset(&config);
    }

    pub fn stats(&self) -> Value {
        self.process.stats()
    }

    /// When each protocol call arrived (ms since the epoch).
    pub fn call_times_ms(&self) -> Vec<u64> {
        self.process.call_times_ms()
    }

    pub fn status_calls(&self) -> u64 {
        self.stats()["status_calls"].as_u64().unwrap_or(0)
    }

    /// Place these references at the simulator (setup for the status-check scenario, untimed).
    pub fn place_all(&self, kind: ProviderKind, references: &[String]) {
        std::thread::scope(|s| {
            for chunk in references.chunks(references.len().div_ceil(4).max(1)) {
                s.spawn(move || {
                    for id in chunk {
                        let req = match kind {
                            ProviderKind::Znet => self.agent.get(&format!(
                                "{}/servis/pin_ekle.php?kod=bayi1&sifre=s3cret&oyun=7001&kupur=60&referans={id}",
                                self.base
                            )),
                            ProviderKind::Xstor => self
                                .agent
                                .get(&format!("{}/client/api/newOrder/502/params?qty=1&playerId=p&order_uuid={id}", self.base))
                                .header("api-token", "tok-bench"),
                        };
                        let body = req.call().unwrap().body_mut().read_to_string().unwrap();
                        if !(body.starts_with("OK") || body.contains("\"OK\"") || body.contains("\"status\"")) {
                            die(&format!("placing at the simulator failed: {body}"));
                        }
                    }
                });
            }
        });
    }

    /// Znet status lookups per second from `threads` tight client loops.
    pub fn request_rate(&self, window: Duration, threads: usize) -> f64 {
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(move || {
                        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
                        let url =
                            format!("{}/servis/pin_kontrol.php?kod=bayi1&sifre=s3cret&tahsilat_api_islem_id=none", self.base);
                        let stop = Instant::now() + window;
                        let mut n = 0u64;
                        while Instant::now() < stop {
                            agent.get(&url).call().unwrap().body_mut().read_to_string().unwrap();
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        total as f64 / window.as_secs_f64()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        stopped(self.process.pid());
        self.process.stop(Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Clone, Copy)]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::AtMost(t) => v <= t,
        }
    }
    fn show(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {}", fmt(t)),
            Target::AtMost(t) => format!("<= {}", fmt(t)),
        }
    }
}

pub struct Row {
    name: String,
    value: f64,
    unit: String,
    target: Option<Target>,
    ratio: Option<(f64, String)>,
    note: String,
}

#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub floor_tps: f64,
    pub floor_commit_ms: f64,
    pub floor_unnest: f64,
    pub floor_sim: f64,
    pub checks_znet: f64,
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Results {
    pub fn add(&mut self, name: &str, value: f64, unit: &str, target: Option<Target>, ratio: Option<(f64, &str)>, note: &str) {
        self.rows.push(Row {
            name: name.into(),
            value,
            unit: unit.into(),
            target,
            ratio: ratio.map(|(r, s)| (r, s.to_string())),
            note: note.into(),
        });
    }

    pub fn print(&self) {
        println!("| figure | median | target | met | ratio to the floor | note |");
        println!("|---|---|---|---|---|---|");
        for r in &self.rows {
            let target = r.target.map(|t| t.show()).unwrap_or_default();
            let met = match r.target {
                Some(t) if t.met(r.value) => "yes",
                Some(_) => "**no**",
                None => "",
            };
            let ratio = r.ratio.as_ref().map(|(v, s)| format!("{} {s}", fmt(*v))).unwrap_or_default();
            println!("| {} | {} {} | {target} | {met} | {ratio} | {} |", r.name, fmt(r.value), r.unit, r.note);
        }
    }

    pub fn to_json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    json!({
                        "figure": r.name, "median": r.value, "unit": r.unit,
                        "target": r.target.map(|t| t.show()), "met": r.target.map(|t| t.met(r.value)),
                        "ratio": r.ratio.as_ref().map(|(v, s)| json!({"value": v, "of": s})), "note": r.note,
                    })
                })
                .collect(),
        )
    }
}
