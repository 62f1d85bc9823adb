//! Settings resolved once from the command line; the rest of the program never re-parses or
//! re-checks them.

use crate::cli::{GlobalArgs, OutputFormat, PolicyArgs, WorkArgs};
use crate::domain::backoff::BackoffPolicy;
use crate::error::{Error, Result};
use std::time::Duration;

/// Default database when neither --database-url nor DATABASE_URL is given: the machine's own
/// server, the way the README's first commands expect it.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// True when --database-url or DATABASE_URL was given (false: `database_url` is the default).
    pub database_url_given: bool,
    pub output: OutputFormat,
    pub tenant: Option<String>,
    pub http: HttpSettings,
}

#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Largest provider reply read; anything longer is cut and treated as garbage.
    pub max_response_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Settings {
    pub fn from_args(g: &GlobalArgs) -> Result<Settings> {
        let connect_timeout: Duration = g.connect_timeout.into();
        let request_timeout: Duration = g.request_timeout.into();
        if request_timeout.is_zero() || connect_timeout.is_zero() {
            return Err(Error::invalid("--connect-timeout and --request-timeout must be greater than 0"));
        }
        Ok(Settings {
            database_url: g.database_url.clone().unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()),
            database_url_given: g.database_url.is_some(),
            output: g.output,
            tenant: g.tenant.clone(),
            http: HttpSettings { connect_timeout, request_timeout, ..HttpSettings::default() },
        })
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

impl PolicyArgs {
    pub fn policy(&self) -> Result<BackoffPolicy> {
        let p = BackoffPolicy {
            first_check: self.first_check.into(),
            backoff_base: self.backoff_base.into(),
            backoff_max: self.backoff_max.into(),
            max_checks: self.max_checks,
            give_up_after: self.give_up_after.into(),
            jitter: 0.1,
        };
        p.validate().map_err(Error::invalid)?;
        Ok(p)
    }
}

/// Settings of the work shared by `sweep` and `daemon`.
#[derive(Debug, Clone)]
pub struct WorkSettings {
    pub batch_size: i64,
    pub round_size: i64,
    pub lease: Duration,
    pub stuck_after: Duration,
    pub concurrency: usize,
}

impl WorkSettings {
    /// The lanes' settings for this process.
    pub fn lanes(
        &self,
        s: &Settings,
        tenant: Option<i64>,
        drain: Option<chrono::DateTime<chrono::Utc>>,
        idle_poll: Duration,
    ) -> crate::lane::LaneSettings {
        crate::lane::LaneSettings {
            database_url: s.database_url.clone(),
            timing: crate::dispatch::Timing { lease: self.lease, request_timeout: s.http.request_timeout },
            capacity: self.concurrency,
            tenant,
            drain,
            idle_poll,
            holder: crate::lane::LaneSettings::holder(),
            write_batch: self.round_size as usize,
            write_delay: Duration::from_millis(5),
        }
    }
}

impl Settings {
    /// The timing of one-order commands (`create`, `dispatch`, `poll`): a lease of three
    /// request timeouts, so a slow call finishes long before anyone reconciles it.
    pub fn one_order_timing(&self) -> crate::dispatch::Timing {
        crate::dispatch::Timing { lease: self.http.request_timeout * 3, request_timeout: self.http.request_timeout }
    }
}

impl WorkArgs {
    pub fn settings(&self, http: &HttpSettings) -> Result<WorkSettings> {
        let concurrency = self.concurrency;
        if self.batch_size < 1 || self.batch_size > 10_000 {
            return Err(Error::invalid(format!("--batch-size must be between 1 and 10000, got {}", self.batch_size)));
        }
        if self.round_size < 1 || self.round_size > 10_000 {
            return Err(Error::invalid(format!("--round-size must be between 1 and 10000, got {}", self.round_size)));
        }
        if !(1..=1024).contains(&concurrency) {
            return Err(Error::invalid(format!("--concurrency must be between 1 and 1024, got {concurrency}")));
        }
        let lease: Duration = self.lease.into();
        if lease <= http.request_timeout {
            return Err(Error::invalid(format!(
                "--lease ({}) must be longer than --request-timeout ({}), or a slow call could be checked twice at once",
                humantime::format_duration(lease),
                humantime::format_duration(http.request_timeout)
            )));
        }
        Ok(WorkSettings {
            batch_size: self.batch_size,
            round_size: self.round_size,
            lease,
            stuck_after: self.stuck_after.into(),
            concurrency,
        })
    }
}
