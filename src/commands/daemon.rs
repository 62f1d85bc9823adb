//! `orderctl daemon`: every lane, continuously, with the batch safety sweep on its schedule.

use crate::cli::DaemonArgs;
use crate::daemon::{self, schedule::SweepSchedule, DaemonSettings};
use crate::db;
use crate::dispatch::Providers;
use crate::error::{Error, Result};
use crate::lane::sweep::SafetySweepSettings;
use crate::lane::webhooks::WebhookSettings;
use crate::settings::Settings;

pub fn run(s: &Settings, a: &DaemonArgs) -> Result<()> {
    limit_malloc_arenas();
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
    let delivery = a.webhooks.settings(&s.http)?;
    // Bound before anything starts: a taken port is a mistake to report now.
    let metrics = a.metrics_listen.as_deref().map(crate::daemon::health::bind).transpose()?;
    let lanes = crate::lane::LaneSettings::new(&work, s, tenant_id, None, idle_poll);
    let webhooks = WebhookSettings {
        database_url: s.database_url.clone(),
        send: delivery.send,
        retry: delivery.retry,
        concurrency: delivery.concurrency,
        tenant: tenant_id,
        idle_poll,
        drain: None,
    };
    let safety_sweep = SafetySweepSettings {
        batch_size: work.batch_size,
        give_up_after: policy.give_up_after,
        tenant: tenant_id,
        holder: lanes.holder.clone(),
    };
    daemon::run(DaemonSettings {
        lanes,
        providers: Providers::new(s.http, policy),
        schedule,
        safety_sweep,
        shutdown_grace: a.shutdown_grace.into(),
        webhooks,
        metrics_served: metrics.is_some(),
        metrics,
        listen_url: listen_url(&s.database_url, a),
    })
}

/// Where the LISTEN wake-ups connect: the direct URL when given; none through a pooler in
/// transaction mode (LISTEN there is silently wrong; lanes poll); else the database URL.
fn listen_url(url: &str, a: &DaemonArgs) -> Option<String> {
    use crate::cli::Pooler;
    use crate::db::pooler::Pooling;
    if let Some(direct) = &a.direct_database_url {
        return Some(direct.clone());
    }
    let pooling = match a.pooler {
        Pooler::None => Pooling::Direct,
        Pooler::Session => Pooling::Session,
        Pooler::Transaction => Pooling::Transaction,
        Pooler::Auto => crate::db::pooler::detect(url).unwrap_or(Pooling::Direct),
    };
    if pooling == Pooling::Transaction {
        log::info!(
            "a pooler in transaction mode is between orderctl and Postgres: no LISTEN wake-ups (give --direct-database-url for them); lanes look for work every {}",
            humantime::format_duration(a.idle_poll.into())
        );
        return None;
    }
    Some(url.to_string())
}

/// glibc gives each thread that allocates its own malloc arena (up to 8 per core); a daemon
/// with a caller thread per permit then holds tens of megabytes of mostly empty arenas. Two
/// arenas are plenty: threads spend their time waiting on providers and the database.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before the lanes' threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
