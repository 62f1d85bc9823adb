//! `orderctl daemon`: dispatch, status checks and the batch safety sweep, continuously.

use crate::cli::DaemonArgs;
use crate::daemon::{self, schedule::SweepSchedule, DaemonSettings};
use crate::db;
use crate::error::{Error, Result};
use crate::settings::Settings;

pub fn run(s: &Settings, a: &DaemonArgs) -> Result<()> {
    let policy = a.policy.policy()?;
    let work = a.work.settings(&s.http)?;
    let schedule = SweepSchedule::parse(&a.sweep_schedule)?;
    let idle_poll: std::time::Duration = a.idle_poll.into();
    if idle_poll.is_zero() {
        return Err(Error::invalid("--idle-poll must be greater than 0"));
    }
    // Resolve the tenant once; an unknown tenant is a mistake to report now, not a quiet daemon.
    let tenant_id = match &s.tenant {
        Some(t) => {
            let mut c = db::connect(&s.database_url)?;
            Some(db::routing::tenant_id(&mut c, t)?)
        }
        None => None,
    };
    daemon::run(DaemonSettings {
        database_url: s.database_url.clone(),
        http: s.http,
        monitor: work.monitor(policy, tenant_id),
        schedule,
        idle_poll,
        shutdown_grace: a.shutdown_grace.into(),
    })
}
