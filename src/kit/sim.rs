//! The built-in simulator as a process of its own on a free port (`orderctl simulate`), so its
//! CPU and its sockets are another process's, as a provider's would be.

use crate::error::{Error, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SimProcess {
    pub base_url: String,
    child: Child,
    agent: ureq::Agent,
}

impl SimProcess {
    /// Start `bin simulate` on 127.0.0.1 with these extra arguments; its stderr goes to ours
    /// when `show_stderr`.
    pub fn start(bin: &Path, extra: &[&str], show_stderr: bool) -> Result<SimProcess> {
        let mut child = Command::new(bin)
            .args(["simulate", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if show_stderr { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .map_err(|e| Error::internal(format!("cannot start the simulator {}: {e}", bin.display())))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::internal(format!("the simulator said {line:?} instead of its address")));
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(SimProcess { base_url: format!("http://{addr}"), child, agent })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it placed and decided (`/_sim/stats`).
    pub fn stats(&self) -> Value {
        self.agent
            .get(&format!("{}/_sim/stats", self.base_url))
            .call()
            .and_then(|mut r| r.body_mut().read_json())
            .expect("the simulator answers /_sim/stats")
    }

    /// When each protocol call arrived, in ms since the epoch (`/_sim/calls`).
    pub fn call_times_ms(&self) -> Vec<u64> {
        let v: Value = self
            .agent
            .get(&format!("{}/_sim/calls", self.base_url))
            .call()
            .and_then(|mut r| r.body_mut().read_json())
            .expect("the simulator answers /_sim/calls");
        v["call_times_ms"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
    }

    /// Change settings at run time (a JSON object of simulator settings).
    pub fn configure(&self, settings: &Value) {
        self.agent.post(&format!("{}/_sim/config", self.base_url)).send_json(settings).expect("the simulator takes /_sim/config");
    }

    /// Forget every order and apply `settings`.
    pub fn reset(&self, settings: &Value) {
        self.agent.post(&format!("{}/_sim/reset", self.base_url)).send_empty().expect("the simulator takes /_sim/reset");
        self.configure(settings);
    }

    /// SIGTERM, then SIGKILL if it has not gone within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let gone = super::wait_until(grace, Duration::from_millis(20), || matches!(self.child.try_wait(), Ok(Some(_))));
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
