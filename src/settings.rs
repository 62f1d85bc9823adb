//! Settings resolved once from the command line; the rest of the program never re-parses or
//! re-checks them.

use crate::cli::{GlobalArgs, OutputFormat, PolicyArgs, WebhookArgs, WorkArgs};
use crate::domain::backoff::BackoffPolicy;
use crate::error::{Error, Result};
pub use crate::provider::HttpSettings;
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
        // A claimed call may wait for one call ahead of it and then take a whole request
        // timeout itself: both must fit in the lease, or another worker could reconcile (and
        // place) the order while the call is still under way.
        if lease < http.request_timeout * 2 {
            return Err(Error::invalid(format!(
                "--lease ({}) must be at least twice --request-timeout ({}): a claimed call may wait for one call ahead of it, \
                 then take its whole timeout, and both must end inside the lease",
                humantime::format_duration(lease),
                humantime::format_duration(http.request_timeout)
            ))
            .with_hint("raise --lease or lower --request-timeout"));
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

/// How webhooks are sent and retried, validated once.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery {
    pub send: crate::webhook::SendSettings,
    pub retry: crate::domain::webhook::RetryPolicy,
    pub concurrency: usize,
}

impl WebhookArgs {
    pub fn settings(&self, http: &HttpSettings) -> Result<WebhookDelivery> {
        let timeout: Duration = self.webhook_timeout.into();
        if timeout.is_zero() {
            return Err(Error::invalid("--webhook-timeout must be greater than 0"));
        }
        if !(1..=256).contains(&self.webhook_concurrency) {
            return Err(Error::invalid(format!(
                "--webhook-concurrency must be between 1 and 256, got {}",
                self.webhook_concurrency
            )));
        }
        let retry = crate::domain::webhook::RetryPolicy {
            first: self.webhook_retry_first.into(),
            max: self.webhook_retry_max.into(),
            horizon: self.webhook_retry_horizon.into(),
        };
        retry.validate().map_err(Error::invalid)?;
        Ok(WebhookDelivery {
            send: crate::webhook::SendSettings { connect_timeout: http.connect_timeout.min(timeout), timeout },
            retry,
            concurrency: self.webhook_concurrency,
        })
    }
}
