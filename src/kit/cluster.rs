//! A PostgreSQL cluster of its own in a temporary directory (initdb + pg_ctl, as the `postgres`
//! user when run as root), listening on 127.0.0.1 on a free port and on a socket in that
//! directory only. Stopped and deleted when dropped, unless kept.

use crate::error::{Error, ErrorKind, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Default)]
pub struct ClusterOptions {
    /// Leave it running (and its directory) when dropped.
    pub keep: bool,
    /// Server settings (`name=value`), on top of the fast, unsafe ones a throwaway cluster uses.
    pub settings: Vec<String>,
    /// pg_hba.conf instead of trust for everyone.
    pub hba: Option<String>,
    /// Files written into the data directory before the server starts (mode 0600, owned by
    /// the server's user): certificates and keys.
    pub files: Vec<(String, Vec<u8>)>,
}

pub struct PrivateCluster {
    pub dir: PathBuf,
    bindir: PathBuf,
    as_postgres: bool,
    pub port: u16,
    /// postgres://postgres@127.0.0.1:PORT/postgres
    pub url: String,
    running: bool,
    keep: bool,
}

impl PrivateCluster {
    /// initdb and start. `check` is asked between the slow steps (an interrupt ends the start).
    pub fn start(opts: &ClusterOptions, check: &dyn Fn() -> Result<()>) -> Result<PrivateCluster> {
        let bindir = server_bindir()?;
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!("orderctl-pg-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir(&dir).map_err(|e| Error::internal(format!("cannot create {}: {e}", dir.display())))?;
        // From here on, Drop removes the directory (and stops the server once it runs).
        let mut cluster =
            PrivateCluster { dir, bindir, as_postgres, port: 0, url: String::new(), running: false, keep: opts.keep };
        if as_postgres {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            chown_to_postgres(&cluster.dir)?;
        }
        let data = cluster.data_dir();
        cluster.run_tool(
            "initdb",
            &["-D", path_str(&data)?, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
        )?;
        cluster.write_files(opts)?;
        check()?;
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                path_str(&cluster.dir)?
            );
            for s in &opts.settings {
                options.push_str(&format!(" -c {s}"));
            }
            let log = cluster.dir.join("server.log");
            match cluster
                .run_tool("pg_ctl", &["-D", path_str(&data)?, "-l", path_str(&log)?, "-w", "-t", "30", "-o", &options, "start"])
            {
                Ok(()) => {
                    cluster.running = true;
                    cluster.port = port;
                    cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
            check()?;
        }
        Err(last.unwrap_or_else(|| Error::internal("the private cluster did not start")))
    }

    /// The shell command that stops and removes it by hand (for a kept cluster).
    pub fn stop_command(&self) -> String {
        format!(
            "{}{} -D {} stop && rm -rf {}",
            if self.as_postgres { "runuser -u postgres -- " } else { "" },
            self.bindir.join("pg_ctl").display(),
            self.data_dir().display(),
            self.dir.display()
        )
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl ARGS` on this cluster's data directory (restart, stop, ...).
    pub fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let mut all = vec!["-D", path_str(&data)?, "-l", path_str(&log)?, "-w", "-t", "30"];
        all.extend_from_slice(args);
        self.run_tool("pg_ctl", &all)
    }

    fn write_files(&self, opts: &ClusterOptions) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data_dir();
        let mut files = opts.files.clone();
        if let Some(hba) = &opts.hba {
            files.push(("pg_hba.conf".into(), hba.clone().into_bytes()));
        }
        for (name, content) in files {
            let path = data.join(name);
            std::fs::write(&path, content).map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            if self.as_postgres {
                chown_to_postgres(&path)?;
            }
        }
        Ok(())
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
        Err(Error::new(ErrorKind::DatabaseUnavailable, format!("{tool} failed ({}): {text}", out.status)))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.keep && self.running {
            return;
        }
        if self.running {
            if let Err(e) = self.pg_ctl(&["-m", "immediate", "stop"]) {
                eprintln!("could not stop the private cluster in {}: {}", self.dir.display(), e.message);
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {} ({e}); remove it by hand", self.dir.display());
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().ok_or_else(|| Error::internal(format!("the path {} is not UTF-8", p.display())))
}

/// Where initdb and pg_ctl live: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/N/bin, else the PATH.
pub fn server_bindir() -> Result<PathBuf> {
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
    Err(Error::new(
        ErrorKind::DatabaseUnavailable,
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed on this machine",
    )
    .with_hint("install them (Debian/Ubuntu: apt-get install postgresql)"))
}

/// Hand a path to the `postgres` user (we run as root; the server refuses to).
pub fn chown_to_postgres(path: &Path) -> Result<()> {
    let name = std::ffi::CString::new("postgres").expect("no NUL in a literal");
    // SAFETY: getpwnam gets a valid C string; the result is read at once, before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::new(
            ErrorKind::DatabaseUnavailable,
            "running as root, but there is no `postgres` user to own the private cluster",
        )
        .with_hint("create it (useradd --system postgres), or run as an ordinary user"));
    }
    // SAFETY: pw is non-null and points at getpwnam's static record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::internal(format!("cannot hand {} to the postgres user: {e}", path.display())))
}

pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::internal(format!("cannot find a free port: {e}")))?;
    Ok(l.local_addr()?.port())
}
