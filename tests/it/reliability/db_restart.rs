//! Postgres restarted, and orderctl's backends terminated, in the middle of a run: the daemon
//! reconnects by itself; nothing lost, nothing doubled. On a private throwaway cluster, so the
//! machine's shared server is never disturbed.

use super::*;
use std::path::PathBuf;
use std::process::Command;

/// A throwaway Postgres cluster owned by the `postgres` user, on a free port, with its unix
/// socket in its own temporary directory. Stopped and removed on drop, whatever happens.
struct PrivateCluster {
    bin: PathBuf,
    data: PathBuf,
    url: String,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    /// None (with a note on stderr) when the server binaries are not installed.
    fn start() -> Option<PrivateCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("pg_ctl").exists() && b.join("initdb").exists())
            .max_by_key(|b| b.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
        let Some(bin) = bin else {
            eprintln!("SKIPPED: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl); database restart not tested");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let pg = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        assert!(!pg.is_null(), "the postgres user exists where the server is installed");
        let (uid, gid) = unsafe { ((*pg).pw_uid, (*pg).pw_gid) };
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = PrivateCluster { url: format!("postgres://postgres@127.0.0.1:{port}/orderctl"), bin, data, _dir: dir };
        cluster.pg(&[
            "initdb",
            "-D",
            cluster.data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", cluster._dir.path().display());
        cluster.pg_ctl(&["start", "-o", &opts]);
        let mut c = postgres::Client::connect(&cluster.url.replace("/orderctl", "/postgres"), postgres::NoTls).unwrap();
        c.batch_execute("CREATE DATABASE orderctl").unwrap();
        Some(cluster)
    }

    /// Run a server program as the postgres user.
    fn pg(&self, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(args[0]))
            .args(&args[1..])
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, args: &[&str]) {
        let log = self._dir.path().join("server.log");
        let mut all = vec!["pg_ctl", "-D", self.data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "30"];
        all.extend_from_slice(args);
        self.pg(&all);
    }

    /// The orderctl database, migrated by `orderctl migrate` (the shared server's template is
    /// not here). Its name is unique, so `TestDb`'s clean-up on the shared server is a no-op.
    fn migrated_db(&self) -> TestDb {
        Cmd::new().env("DATABASE_URL", &self.url).args(["migrate"]).run().ok();
        TestDb { name: format!("orderctl_private_cluster_{}", std::process::id()), url: self.url.clone() }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Orders under way, then `interrupt` (the database goes away under the daemon), then more
/// orders: the same daemon finishes all of them, each placed once, money conserved.
fn the_daemon_survives(interrupt: impl FnOnce(&PrivateCluster, &TestDb)) {
    let Some(cluster) = PrivateCluster::start() else { return };
    let db = cluster.migrated_db();
    let sim = Sim::start(&["--complete-after", "1500ms", "--jitter", "1s", "--cancel-share", "0.2", "--seed", "5"]);
    db.apply(&standard_setup(&sim.base_url));
    let log = DaemonLog::new();
    let d = daemon(&db.url, log.path(), &[]);
    insert_orders(&db, "pubg-60", 100);
    insert_orders(&db, "freefire-100", 100);
    wait_until("orders under way", Duration::from_secs(30), || sim.stats()["orders_placed"].as_u64().unwrap() >= 20);
    assert!(open_orders(&db) > 0, "the interruption comes mid-run");

    interrupt(&cluster, &db);

    insert_orders(&db, "freefire-100", 50);
    wait_all_final(&db, Duration::from_secs(90));
    let text = log.text();
    assert!(text.contains("reconnected to the database"), "the daemon noticed and reconnected by itself:\n{text}");
    assert_eq!(d.terminate(), 0, "still the same, healthy daemon");
    assert_no_panic(log.path());
    assert_eq!(db.query_i64("SELECT count(*) FROM orders"), 250, "nothing lost");
    assert_placed_once(&sim, 250);
    assert_outcomes_match_the_provider(&db, &sim);
    assert_money_conserved(&db);
    assert_event_logs_consistent(&db);
}

#[test]
fn the_daemon_reconnects_after_postgres_restarts_mid_run() {
    the_daemon_survives(|cluster, _db| cluster.pg_ctl(&["restart", "-m", "fast"]));
}

#[test]
fn the_daemon_reconnects_after_its_backends_are_terminated_mid_run() {
    the_daemon_survives(|_cluster, db| {
        let killed = db.query_i64(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'orderctl') t",
        );
        assert!(killed >= 1, "the daemon's connections were terminated");
    });
}
