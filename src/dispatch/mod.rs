//! Getting an order to its provider exactly once, and hearing back: the stages every caller
//! composes (a lane in the daemon or a sweep, or one order from the command line).
//!
//! - `route`: where a new order goes (a provider's lane, code stock, an operator).
//! - `claim`: turning locked due orders into work: a placement writes its reference and
//!   commits it before any call (exactly once rests on this), a check only takes a lease.
//! - `place`: the provider calls themselves (placements, status checks batched where the
//!   protocol allows); no database connection is held across them.
//! - `record`: a provider's answer turned into the lifecycle's transition, ready to write.
//! - `one`: the stages in a row for one order (`create`, `dispatch`, `poll`).
//!
//! What each answer means lives in `domain::lifecycle`; SQL lives in `db`.

pub mod claim;
pub mod isolate;
mod one;
pub mod place;
mod providers;
pub mod record;
pub mod route;

pub use one::{refusal, run_one, OneMode, OneOptions, OneReport};
pub use providers::Providers;

use crate::domain::backoff::BackoffPolicy;
use crate::provider::{Provider, ProviderKind, ReferenceStyle};
use std::sync::Arc;
use std::time::Duration;

/// The provider a lane (or a one-order dispatch) works for.
#[derive(Clone)]
pub struct LaneProvider {
    pub id: i64,
    /// Its tenant's name (a provider's name is unique only within its tenant).
    pub tenant: String,
    pub name: String,
    pub kind: ProviderKind,
    pub enabled: bool,
    /// The adapter, or why it cannot be built (e.g. credentials missing in its row).
    pub adapter: Result<Arc<dyn Provider>, String>,
    /// The check schedule of this provider's orders: the global policy with the provider's own
    /// schedule merged over it (`domain::backoff::merge`).
    pub policy: BackoffPolicy,
    /// How long after the latest placement of a reference whose outcome is unknown this
    /// provider may still record it (its row's `reconcile_for_ms`): "not found" before then is
    /// no news. The same for every caller (daemon, `poll`, `dispatch`, `sweep`).
    pub reconcile_for: Duration,
}

impl LaneProvider {
    /// How new references for this provider are made (`db::transitions::claim_placements`).
    pub fn reference_style(&self) -> &'static str {
        match self.adapter.as_ref().map(|a| a.reference_style()) {
            Ok(ReferenceStyle::Numeric) => "numeric",
            Ok(ReferenceStyle::Uuid) => "uuid",
            // Nothing is placed with an unusable adapter; the kind decides for form's sake.
            Err(_) => match self.kind.reference_style() {
                ReferenceStyle::Numeric => "numeric",
                ReferenceStyle::Uuid => "uuid",
            },
        }
    }

    /// Whether a reference can be sent to this provider (Znet takes numbers only).
    pub fn accepts_reference(&self, reference: &str) -> bool {
        match &self.adapter {
            Ok(a) => a.reference_style().accepts(reference),
            Err(_) => true,
        }
    }

    pub fn batch_limit(&self) -> usize {
        self.adapter.as_ref().map(|a| a.batch_limit().max(1)).unwrap_or(1)
    }

    /// How many calls its rate limit lets every process together make in `ahead` (at least
    /// one); None without a rate limit.
    pub fn calls_allowed_in(&self, ahead: std::time::Duration) -> Option<usize> {
        let gate = self.adapter.as_ref().ok()?.config().gate.as_ref()?;
        Some((gate.calls_per_second() * ahead.as_secs_f64()).ceil().max(1.0) as usize)
    }
}

/// Timing of claimed work, resolved once from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a claim keeps other workers off an order.
    pub lease: Duration,
    /// The provider call timeout: a placement is only sent while its whole timeout still fits
    /// in its lease.
    pub request_timeout: Duration,
}

impl Timing {
    /// The timing of one-order commands (`create`, `dispatch`, `poll`): a lease of three
    /// request timeouts, so a slow call finishes long before anyone reconciles it.
    pub fn one_order(http: &crate::provider::HttpSettings) -> Timing {
        Timing { lease: http.request_timeout * 3, request_timeout: http.request_timeout }
    }
}
