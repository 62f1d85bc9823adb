//! What a provider's answers mean to an order, in the lifecycle's words: the outcome of a
//! placement and of a status check. The adapters in
//! `provider` produce these from HTTP replies; `lifecycle` decides what they do.

use crate::domain::text;
use rust_decimal::Decimal;
use serde::Serialize;

/// What a placement call means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PlacementOutcome {
    /// The provider owns the order now. Some providers already know its state (x-stor may
    /// answer `accept` with a PIN at once); `early` carries that.
    /// `cost` is what the provider says it charged us for this order, in its own currency,
    /// when its reply says so in a form we can read exactly; `balance` is the dealer balance the
    /// reply carried (Znet `OK|cost|balance`). Both are dealer data: never in `message`, which
    /// reaches the order's history, never shown to tenants.
    Accepted {
        external_order_id: Option<String>,
        message: String,
        early: Option<CheckOutcome>,
        cost: Option<Decimal>,
        balance: Option<Decimal>,
    },
    /// The provider did not take the order and said so. The message starts with the provider's
    /// error code when it gave one (`8: Bağlantı hatası veya yetersiz bakiye`).
    Rejected { message: String },
    /// The provider says this reference was placed before (Znet `4|Daha Önce Gönderilmiş (…)`,
    /// `OK|8|Bu İşlem Daha Önce Gönderildi`). Neither an acceptance nor a rejection: whether
    /// the earlier placement exists, and how it stands, only a status check can tell.
    SentBefore { message: String },
    /// We do not know whether the order exists (timeout, reset, 5xx, empty, HTML, garbage).
    Ambiguous { reason: String },
    /// The request never left: no turn under the provider's rate limit came within a
    /// request's time. Nothing to reconcile; the placement is simply due again.
    NotSent { reason: String },
}

impl PlacementOutcome {
    /// Every provider-derived text through [`text::clean`].
    pub fn cleaned(self) -> PlacementOutcome {
        use text::{clean, clean_opt, MESSAGE_MAX, NAME_MAX};
        match self {
            PlacementOutcome::Accepted { external_order_id, message, early, cost, balance } => PlacementOutcome::Accepted {
                cost,
                balance,
                external_order_id: clean_opt(external_order_id.as_deref(), NAME_MAX),
                message: clean(&message, MESSAGE_MAX),
                early: early.map(CheckOutcome::cleaned),
            },
            PlacementOutcome::Rejected { message } => PlacementOutcome::Rejected { message: clean(&message, MESSAGE_MAX) },
            PlacementOutcome::SentBefore { message } => PlacementOutcome::SentBefore { message: clean(&message, MESSAGE_MAX) },
            PlacementOutcome::Ambiguous { reason } => PlacementOutcome::Ambiguous { reason: clean(&reason, MESSAGE_MAX) },
            PlacementOutcome::NotSent { reason } => PlacementOutcome::NotSent { reason: clean(&reason, MESSAGE_MAX) },
        }
    }
}

/// What a status check means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckOutcome {
    Waiting {
        message: String,
    },
    Approved {
        pin: Option<String>,
        message: String,
    },
    Cancelled {
        message: String,
    },
    /// The provider says it has no order with this reference. For an order it accepted this is
    /// only no news; for an ambiguous placement, reconciliation reads it as "never arrived".
    NotFound {
        message: String,
    },
    /// The query failed or the reply made no sense: count it, back off, keep the order open.
    /// `answered`: the provider gave a well-formed reply that only holds no verdict on this
    /// order (a failed query, a status word not understood), which is not a failed call for its
    /// circuit breaker; false for a call that failed (transport, HTTP status, garbage).
    NoNews {
        reason: String,
        answered: bool,
    },
    /// The call never left (no turn under the provider's rate limit came within a request's
    /// time): neither an answer nor a failed call. Nothing is counted; the check is due again.
    NotAsked {
        reason: String,
    },
}

impl CheckOutcome {
    /// No news because the call failed: no usable reply.
    pub fn failed(reason: impl Into<String>) -> CheckOutcome {
        CheckOutcome::NoNews { reason: reason.into(), answered: false }
    }
    /// No news in a reply the provider gave: it answered, without a verdict on this order.
    pub fn no_verdict(reason: impl Into<String>) -> CheckOutcome {
        CheckOutcome::NoNews { reason: reason.into(), answered: true }
    }
    pub fn is_final(&self) -> bool {
        matches!(self, CheckOutcome::Approved { .. } | CheckOutcome::Cancelled { .. })
    }
    pub fn label(&self) -> &'static str {
        match self {
            CheckOutcome::Waiting { .. } => "waiting",
            CheckOutcome::Approved { .. } => "approved",
            CheckOutcome::Cancelled { .. } => "cancelled",
            CheckOutcome::NotFound { .. } => "not_found",
            CheckOutcome::NoNews { .. } => "no_news",
            CheckOutcome::NotAsked { .. } => "not_asked",
        }
    }
    pub fn message(&self) -> &str {
        match self {
            CheckOutcome::Waiting { message }
            | CheckOutcome::Approved { message, .. }
            | CheckOutcome::Cancelled { message }
            | CheckOutcome::NotFound { message } => message,
            CheckOutcome::NoNews { reason, .. } | CheckOutcome::NotAsked { reason } => reason,
        }
    }
    /// Every provider-derived text through [`text::clean`]; a PIN that cleans to nothing is none.
    pub fn cleaned(self) -> CheckOutcome {
        use text::{clean, clean_opt, MESSAGE_MAX, PIN_MAX};
        match self {
            CheckOutcome::Waiting { message } => CheckOutcome::Waiting { message: clean(&message, MESSAGE_MAX) },
            CheckOutcome::Approved { pin, message } => {
                CheckOutcome::Approved { pin: clean_opt(pin.as_deref(), PIN_MAX), message: clean(&message, MESSAGE_MAX) }
            }
            CheckOutcome::Cancelled { message } => CheckOutcome::Cancelled { message: clean(&message, MESSAGE_MAX) },
            CheckOutcome::NotFound { message } => CheckOutcome::NotFound { message: clean(&message, MESSAGE_MAX) },
            CheckOutcome::NoNews { reason, answered } => CheckOutcome::NoNews { reason: clean(&reason, MESSAGE_MAX), answered },
            CheckOutcome::NotAsked { reason } => CheckOutcome::NotAsked { reason: clean(&reason, MESSAGE_MAX) },
        }
    }
}
