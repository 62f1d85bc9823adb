//! Test harness: a database per test cloned from a migrated template on a real Postgres, the
//! real `orderctl` binary, and the built-in simulator as a real HTTP server on 127.0.0.1.

#![allow(dead_code)]

use orderctl::kit::database::ScratchDb;
use orderctl::kit::sim::SimProcess;
use postgres::{Client, NoTls};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_orderctl");

/// The server tests use: ORDERCTL_TEST_DATABASE_URL or the machine's local Postgres.
pub fn admin_url() -> String {
    std::env::var("ORDERCTL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The same server, another database.
pub fn url_for(db: &str) -> String {
    let mut u = url::Url::parse(&admin_url()).expect("ORDERCTL_TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{db}"));
    u.to_string()
}

pub fn admin() -> Client {
    Client::connect(&admin_url(), NoTls).expect("test Postgres reachable (see .ci/run)")
}

fn schema_fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in orderctl::db::migrate::built_in() {
        h.update(m.checksum.as_bytes());
    }
    h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A migrated template database, made once per schema version and reused across runs.
fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let name = format!("orderctl_tpl_{}", schema_fingerprint());
        let mut admin = admin();
        // Serialise template creation across concurrent test processes.
        admin.execute("SELECT pg_advisory_lock(7300001)", &[]).unwrap();
        let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).unwrap().is_some();
        if !exists {
            let building = format!("{name}_building");
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {building}")).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE {building}")).unwrap();
            {
                let mut c = orderctl::db::connect(&url_for(&building)).unwrap();
                orderctl::db::migrate::migrate(&mut c, &orderctl::db::migrate::built_in(), false).unwrap();
            }
            admin.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).unwrap();
        }
        admin.execute("SELECT pg_advisory_unlock(7300001)", &[]).unwrap();
        name
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test. Dropped when the test passes; kept (and named on
/// stderr) when it fails, so it can be inspected.
pub struct TestDb {
    pub name: String,
    pub url: String,
    scratch: ScratchDb,
}

impl TestDb {
    /// A migrated database.
    pub fn new() -> TestDb {
        Self::create(Some(template()))
    }
    /// An empty database (for migration tests).
    pub fn empty() -> TestDb {
        Self::create(None)
    }
    /// A database on another server (a private cluster), migrated by `orderctl migrate`.
    pub fn migrated_on(admin_url: &str) -> TestDb {
        let db = Self::create_on(admin_url, None);
        db.cmd().args(["migrate"]).run().ok();
        db
    }
    /// A database migrated by the files of sql/ whose names sort before `version` ("0018"): the
    /// schema an older orderctl left, for migration tests.
    pub fn migrated_before(version: &str) -> TestDb {
        Self::migrated_with(|name| name < version)
    }
    /// Migrated with every migration but those whose file names start with one of `versions`
    /// (`orderctl migrate` applies them later, whatever the order).
    pub fn migrated_without(versions: &[&str]) -> TestDb {
        Self::migrated_with(|name| !versions.iter().any(|v| name.starts_with(v)))
    }
    fn migrated_with(keep: impl Fn(&str) -> bool) -> TestDb {
        let db = Self::empty();
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        for f in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()) {
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if keep(&name) {
                std::fs::copy(&f, dir.path().join(&name)).unwrap();
            }
        }
        db.cmd().args(["migrate", "--dir"]).arg(dir.path()).run().ok();
        db
    }
    fn create(template: Option<&str>) -> TestDb {
        Self::create_on(&admin_url(), template)
    }
    fn create_on(admin_url: &str, template: Option<&str>) -> TestDb {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("orderctl_t_{}_{}", std::process::id(), n);
        let scratch = ScratchDb::create(admin_url, &name, template)
            .unwrap_or_else(|e| panic!("cannot create test database: {}", e.message));
        TestDb { url: scratch.url.clone(), name, scratch }
    }
    /// orderctl's own connection (unnamed statements, as through a pooler), named apart from
    /// orderctl's processes in pg_stat_activity.
    pub fn client(&self) -> orderctl::db::Client {
        orderctl::db::connect(&with_application_name(&self.url, "orderctl-test")).unwrap()
    }
    /// Run the real binary against this database.
    pub fn cmd(&self) -> Cmd {
        Cmd::new().env("DATABASE_URL", &self.url)
    }
    /// Apply a setup document.
    pub fn apply(&self, setup: &serde_json::Value) {
        let out = self.cmd().args(["apply", "-f", "-"]).stdin(setup.to_string()).run();
        assert_eq!(out.code, 0, "apply failed: {}", out.stderr);
    }
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }
}

pub fn with_application_name(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).expect("a URL");
    u.query_pairs_mut().append_pair("application_name", name);
    u.to_string()
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.scratch.keep = true;
            eprintln!("test database kept for inspection: {}", self.url);
        }
    }
}

/// The outcome of running the binary.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
    #[track_caller]
    pub fn ok(self) -> Output {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn code(self, code: i32) -> Output {
        assert_eq!(self.code, code, "expected exit {code}\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// A small builder around the real executable.
pub struct Cmd {
    cmd: Command,
    stdin: Option<String>,
}

impl Cmd {
    pub fn new() -> Cmd {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("ORDERCTL_TENANT")
            .env_remove("ORDERCTL_OUTPUT")
            .env("NO_COLOR", "1");
        Cmd { cmd, stdin: None }
    }
    /// The real executable run inside network namespace `ns` (`ip netns exec`, which execs
    /// it: the child's pid is orderctl's).
    pub fn in_netns(ns: &str) -> Cmd {
        let mut cmd = Cmd::new();
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", ns, BIN]);
        wrapped.env_remove("DATABASE_URL").env_remove("RUST_LOG").env_remove("ORDERCTL_TENANT").env_remove("ORDERCTL_OUTPUT");
        wrapped.env("NO_COLOR", "1");
        cmd.cmd = wrapped;
        cmd
    }
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.cmd.arg(a);
        self
    }
    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Cmd {
        self.cmd.env(k, v);
        self
    }
    pub fn stdin(mut self, input: impl Into<String>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }
    pub fn run(mut self) -> Output {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = self.cmd.spawn().expect("run orderctl");
        if let Some(input) = self.stdin.take() {
            let mut si = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = si.write_all(input.as_bytes());
            });
        }
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Start in the background with stderr appended to `log` (read it afterwards: nothing
    /// blocks on a full pipe, and every byte is kept).
    pub fn spawn_logged(mut self, log: &std::path::Path) -> Background {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open daemon log");
        self.cmd.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null());
        let child = self.cmd.spawn().expect("spawn orderctl");
        Background { child: Some(child) }
    }
    /// Start in the background (a daemon); the child is killed when the handle drops. Its
    /// stderr is dropped (`spawn_logged` keeps it): a pipe nobody reads would stop a daemon
    /// that has logged 64 KB, in the middle of the test.
    pub fn spawn(mut self) -> Background {
        self.cmd.stdout(Stdio::null()).stderr(Stdio::null()).stdin(Stdio::null());
        let child = self.cmd.spawn().expect("spawn orderctl");
        Background { child: Some(child) }
    }
}

pub struct Background {
    pub child: Option<Child>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
    /// kill -9.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The built-in simulator as a separate process on a free port.
pub struct Sim {
    pub base_url: String,
    process: SimProcess,
}

impl Sim {
    pub fn start(extra: &[&str]) -> Sim {
        let process = SimProcess::start(std::path::Path::new(BIN), extra, false).expect("start simulator");
        Sim { base_url: process.base_url.clone(), process }
    }
    pub fn stats(&self) -> serde_json::Value {
        self.process.stats()
    }
    /// When each protocol call arrived at the simulator (ms since the epoch).
    pub fn call_times_ms(&self) -> Vec<u64> {
        self.process.call_times_ms()
    }
    /// Change fault settings at run time (JSON object of simulator settings).
    pub fn configure(&self, settings: serde_json::Value) {
        self.process.configure(&settings);
    }
}

/// A private cluster on this machine (the kit's), or None with a note on stderr when the
/// server programs are not installed (.ci/run installs them, so CI always runs these tests).
pub fn private_cluster(opts: orderctl::kit::cluster::ClusterOptions) -> Option<orderctl::kit::cluster::PrivateCluster> {
    match orderctl::kit::cluster::PrivateCluster::start(&opts, &|| Ok(())) {
        Ok(c) => Some(c),
        Err(e) if orderctl::kit::cluster::server_bindir().is_err() => {
            eprintln!("SKIPPED: {}", e.message);
            None
        }
        Err(e) => panic!("the private cluster did not start: {}{}", e.message, e.hint.unwrap_or_default()),
    }
}

/// Wait for a condition instead of sleeping a fixed time.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    if !orderctl::kit::wait_until(timeout, Duration::from_millis(20), f) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}

/// The reconcile window of providers on the simulator, which records a placement before it
/// answers (unless told to record late): "not found" 2 s after a placement means it never
/// arrived. Real dealer sites get the default (10 minutes) or more.
pub const SIM_RECONCILE_FOR: &str = "2s";

/// The standard setup for tests: one tenant, a buyer, both provider kinds on the simulator,
/// code stock and a manual package.
pub fn standard_setup(sim_url: &str) -> serde_json::Value {
    serde_json::json!({
      "tenants": [{
        "name": "alsham",
        "users": [{"name": "halil", "email": "halil@example.com", "balance": "1000.00", "overdraft_limit": "0"}],
        "providers": [
          {"name": "znet-main", "kind": "znet", "base_url": sim_url, "credentials": {"kod": "bayi1", "sifre": "s3cret-znet"},
           "reconcile_for": SIM_RECONCILE_FOR},
          {"name": "xstor", "kind": "xstor", "base_url": sim_url, "credentials": {"api_token": "tok-secret-123"}, "enabled": true,
           "reconcile_for": SIM_RECONCILE_FOR}
        ],
        "code_groups": [{"name": "itunes-10", "codes": ["AAAA-1111", "BBBB-2222", "CCCC-3333"]}],
        "packages": [
          {"name": "pubg-60", "product": "PUBG Mobile", "price": "1.10",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "znet-main", "fallback": "xstor"},
           "mappings": {"znet-main": {"oyun": "7001", "kupur": "60"}, "xstor": {"product_id": "501", "player_param": "playerId"}}},
          {"name": "freefire-100", "product": "Free Fire", "price": "2.00",
           "routing": {"mode": "auto", "provider_type": "external", "primary": "xstor"},
           "mappings": {"xstor": {"product_id": "502", "player_param": "playerId"}}},
          {"name": "itunes-10", "product": "iTunes", "price": "10.00",
           "routing": {"mode": "auto", "provider_type": "codes", "code_group": "itunes-10"}},
          {"name": "jawaker", "product": "Jawaker", "price": "2.00", "routing": {"mode": "manual", "provider_type": "manual"}}
        ]
      }]
    })
}

/// Insert `n` orders by SQL for user halil of `tenant`, as the shop's web app would (charged
/// through the ledger; no `created` event, the web app writes none).
pub fn insert_orders_in(db: &TestDb, tenant: &str, package: &str, n: i64) {
    orderctl::kit::orders::insert_orders(&mut db.client(), tenant, "halil", package, n).unwrap();
}

/// Insert one order of `quantity` for user halil of `tenant` by SQL (the shop's web app),
/// charged its price × quantity through the ledger.
pub fn insert_order_of(db: &TestDb, tenant: &str, package: &str, quantity: i32, player: &str) {
    db.client()
        .execute(
            "WITH b AS (SELECT u.id, u.tenant_id FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = $1 AND u.name = 'halil'),
                  o AS (INSERT INTO orders (id, tenant_id, user_id, package_id, quantity, user_identifier, price)
                        SELECT gen_random_uuid(), b.tenant_id, b.id, p.id, $3::int, $4, p.price * $3::int
                          FROM b JOIN packages p ON p.tenant_id = b.tenant_id AND p.name = $2
                        RETURNING id, tenant_id, user_id, price),
                  c AS (INSERT INTO ledger (tenant_id, user_id, order_id, kind, amount)
                        SELECT tenant_id, user_id, id, 'charge', -price FROM o RETURNING user_id, amount)
             UPDATE users u SET balance = u.balance + c.amount FROM c WHERE u.id = c.user_id",
            &[&tenant, &package, &quantity, &player],
        )
        .unwrap();
}

/// `insert_orders_in` for the standard setup's tenant.
pub fn insert_orders(db: &TestDb, package: &str, n: i64) {
    insert_orders_in(db, "alsham", package, n)
}

/// The numbers of a package's orders, oldest first.
pub fn order_numbers_of_package(db: &TestDb, package: &str) -> Vec<i64> {
    db.client()
        .query("SELECT o.number FROM orders o JOIN packages p ON p.id = o.package_id WHERE p.name = $1 ORDER BY 1", &[&package])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub fn open_orders(db: &TestDb) -> i64 {
    db.query_i64("SELECT count(*) FROM orders WHERE status = 'pending'")
}

/// Money conserved, for every user of every tenant: the balance equals the sum of its ledger
/// (opening balance + adjustments + charges + refunds); every order is charged its price exactly once;
/// every rejected order is refunded exactly once, and nothing else.
pub fn assert_money_conserved(db: &TestDb) {
    let off: Vec<String> = db
        .client()
        .query(
            "SELECT u.name || ': balance ' || u.balance || ' but ledger sums to ' || coalesce(sum(l.amount), 0)
               FROM users u LEFT JOIN ledger l ON l.user_id = u.id
              GROUP BY u.id HAVING u.balance <> coalesce(sum(l.amount), 0)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(off.is_empty(), "every balance equals the sum of its ledger: {off:?}");
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM orders o
              WHERE (SELECT count(*) FROM ledger l WHERE l.order_id = o.id AND kind = 'charge' AND l.amount = -o.price) <> 1"
        ),
        0,
        "every order charged exactly once, its price"
    );
    let refunds_per_rejected = db.query_i64(
        "SELECT count(*) FROM orders o WHERE status = 'rejected'
            AND (SELECT count(*) FROM ledger l WHERE l.order_id = o.id AND kind = 'refund' AND l.amount = o.price) <> 1",
    );
    assert_eq!(refunds_per_rejected, 0, "every rejected order refunded exactly once");
    // A refund without a rejection only where an operator settled a late delivery by charging
    // the buyer again (recharge), once.
    assert_eq!(
        db.query_i64(
            "SELECT count(*) FROM ledger l JOIN orders o ON o.id = l.order_id WHERE l.kind = 'refund' AND o.status <> 'rejected'
                AND NOT EXISTS (SELECT 1 FROM ledger r WHERE r.order_id = o.id AND r.kind = 'recharge' AND r.amount = -o.price)"
        ),
        0
    );
}

/// Every order's PIN and outcome match what the provider decided.
pub fn assert_outcomes_match_the_provider(db: &TestDb, sim: &Sim) {
    let stats = sim.stats();
    let by_ref: std::collections::HashMap<String, &serde_json::Value> =
        stats["orders"].as_array().unwrap().iter().map(|o| (o["reference"].as_str().unwrap().to_string(), o)).collect();
    for r in db
        .client()
        .query("SELECT provider_referans, status, pin_code FROM orders WHERE provider_referans IS NOT NULL", &[])
        .unwrap()
    {
        let (reference, status, pin): (String, String, Option<String>) = (r.get(0), r.get(1), r.get(2));
        let truth = by_ref.get(&reference).unwrap_or_else(|| panic!("order {reference} unknown to the provider"));
        match truth["outcome"].as_str().unwrap() {
            "approved" => {
                assert_eq!(status, "approved", "{reference}");
                assert_eq!(pin.as_deref(), truth["pin"].as_str(), "{reference}");
            }
            _ => assert_eq!(status, "rejected", "{reference}"),
        }
    }
}

/// `orderctl create` as the standard setup's buyer, with JSON output; add `--package` etc.
pub const CREATE_AS_HALIL: [&str; 7] = ["--tenant", "alsham", "--output", "json", "create", "--user", "halil"];

/// The finding of `doctor --output json` for one check, if the report has it.
pub fn doctor_finding(report: &serde_json::Value, check: &str) -> Option<serde_json::Value> {
    report["findings"].as_array()?.iter().find(|f| f["check"] == check).cloned()
}
