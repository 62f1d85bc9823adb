//! A real pgbouncer in front of a server, on a free port, for tests and the benchmark: trust
//! auth with an auth_file, run as the `postgres` user when we are root (it refuses root).

use super::cluster::{chown_to_postgres, free_port};
use crate::error::{Error, Result};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Pgbouncer {
    child: Child,
    dir: tempfile_dir::Dir,
    pub port: u16,
}

mod tempfile_dir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Pgbouncer {
    /// Pool every database of `server_host:server_port` in `mode` ("transaction" or "session").
    pub fn start(server_host: &str, server_port: u16, mode: &str) -> Result<Pgbouncer> {
        let program = which("pgbouncer")
            .ok_or_else(|| Error::internal("pgbouncer is not installed").with_hint("apt-get install pgbouncer (.ci/run does)"))?;
        let dir = std::env::temp_dir().join(format!("orderctl-pgbouncer-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir(&dir)?;
        let dir = tempfile_dir::Dir(dir);
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let port = free_port()?;
        let d = dir.0.display();
        std::fs::write(dir.0.join("userlist.txt"), "\"postgres\" \"\"\n")?;
        let ini = format!(
            "[databases]\n* = host={server_host} port={server_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {d}/userlist.txt\npool_mode = {mode}\nmax_client_conn = 1000\n\
             default_pool_size = 40\nignore_startup_parameters = extra_float_digits,options\nlogfile = {d}/pgbouncer.log\n\
             pidfile = {d}/pgbouncer.pid\nadmin_users = postgres\n"
        );
        std::fs::write(dir.0.join("pgbouncer.ini"), ini)?;
        let mut cmd = if as_postgres {
            for f in ["", "userlist.txt", "pgbouncer.ini"] {
                chown_to_postgres(&dir.0.join(f))?;
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let child = cmd
            .arg(dir.0.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::internal(format!("cannot start pgbouncer: {e}")))?;
        let bouncer = Pgbouncer { child, dir, port };
        let up = super::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            return Err(Error::internal(format!("pgbouncer did not listen on {port}: {}", bouncer.log())));
        }
        Ok(bouncer)
    }

    /// `url` with pgbouncer's address instead of the server's.
    pub fn url_for(&self, url: &str) -> String {
        let mut u = url::Url::parse(url).expect("a URL");
        let _ = u.set_host(Some("127.0.0.1"));
        let _ = u.set_port(Some(self.port));
        u.to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to pgbouncer; kill the child we started, by its pid.
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
