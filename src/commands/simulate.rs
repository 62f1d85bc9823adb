//! `orderctl simulate`: the built-in provider simulator as a process. The first stdout line is
//! `listening on IP:PORT` (scripts and the test harness read it); it then serves until SIGTERM
//! or SIGINT.

use crate::cli::SimulateArgs;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::simulator::{SimSettings, Simulator};
use std::io::Write;

pub fn run(_s: &Settings, a: &SimulateArgs) -> Result<()> {
    // Register the signals before announcing the address, so a caller that reads the line and
    // at once sends SIGTERM still gets a clean stop.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .map_err(|e| Error::internal(format!("cannot install signal handlers: {e}")))?;
    let sim = Simulator::start(SimSettings::from(a), &a.listen)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", sim.addr())?;
    out.flush()?;
    drop(out);
    log::info!("simulator serving Znet under {0}/servis/ and x-stor under {0}/client/api/", sim.base_url());
    if let Some(sig) = signals.forever().next() {
        log::info!("simulator stopping on signal {sig}");
    }
    drop(sim);
    Ok(())
}
