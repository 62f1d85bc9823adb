//! Providers: external dealers reached over HTTP (one module per protocol) behind one small
//! trait. A provider is an unreliable network peer: every reply is classified into the outcomes
//! below by a pure function of the HTTP status and body, and anything unexpected is ambiguous
//! (at placement) or no news (at a check), never a verdict.
//!
//! `codes` (our own PIN stock, `codes.rs`) and `manual` routing (`manual.rs`) talk to no one
//! over the network, but they are provider kinds all the same: the dispatch pipeline hands an
//! order to one of the four.

pub mod cache;
pub mod codes;
pub mod http;
pub mod manual;
pub mod text;
pub mod xstor;
pub mod znet;

use crate::error::{Error, Result};
use crate::settings::HttpSettings;
use serde::Serialize;
use std::fmt;

/// The protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Znet,
    Xstor,
}

impl ProviderKind {
    pub fn parse(s: &str) -> std::result::Result<ProviderKind, String> {
        match s {
            "znet" => Ok(ProviderKind::Znet),
            "xstor" => Ok(ProviderKind::Xstor),
            _ => Err(format!("provider kind '{s}' is unknown; use znet or xstor")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Znet => "znet",
            ProviderKind::Xstor => "xstor",
        }
    }
    /// The credential fields this kind needs, all secret.
    pub fn credential_fields(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Znet => &["kod", "sifre"],
            ProviderKind::Xstor => &["api_token"],
        }
    }
    /// The mapping fields a package needs for this kind.
    pub fn required_mapping_fields(self) -> &'static [&'static str] {
        match self {
            ProviderKind::Znet => &["oyun", "kupur"],
            ProviderKind::Xstor => &["product_id"],
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to talk to one provider. `credentials` is secret: never print it.
#[derive(Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub credentials: serde_json::Value,
    pub http: HttpSettings,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("base_url", &self.base_url)
            .field("credentials", &"***")
            .finish()
    }
}

impl ProviderConfig {
    /// The secret strings in the credentials, for scrubbing any text before it is shown.
    pub fn secrets(&self) -> Vec<String> {
        match &self.credentials {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| k.as_str() != "kod")
                .filter_map(|(_, v)| v.as_str().map(str::to_string))
                .filter(|s| !s.is_empty())
                .collect(),
            _ => vec![],
        }
    }
}

/// One placement, with the reference chosen (and committed) by us before sending.
#[derive(Debug, Clone)]
pub struct PlacementRequest {
    /// Our idempotency key: Znet `referans`, x-stor `order_uuid`.
    pub reference: String,
    /// The player id / account the goods go to.
    pub player: String,
    pub extra: String,
    pub quantity: i32,
    /// The package mapping for this provider (znet: oyun, kupur; xstor: product_id, player_param).
    pub mapping: serde_json::Value,
}

/// What a placement call means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PlacementOutcome {
    /// The provider owns the order now. Some providers already know its state (x-stor may
    /// answer `accept` with a PIN at once); `early` carries that.
    Accepted { external_order_id: Option<String>, message: String, early: Option<CheckOutcome> },
    /// The provider did not take the order and said so.
    Rejected { message: String },
    /// We do not know whether the order exists (timeout, reset, 5xx, empty, HTML, garbage).
    Ambiguous { reason: String },
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
    NoNews {
        reason: String,
    },
}

impl CheckOutcome {
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
        }
    }
    pub fn message(&self) -> &str {
        match self {
            CheckOutcome::Waiting { message }
            | CheckOutcome::Approved { message, .. }
            | CheckOutcome::Cancelled { message }
            | CheckOutcome::NotFound { message } => message,
            CheckOutcome::NoNews { reason } => reason,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    pub balance: String,
    /// Znet sites may report a debt as a third field.
    pub debt: Option<String>,
    pub currency: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogueItem {
    /// The id a package mapping uses (znet: oyun_bilgi_id; xstor: product id).
    pub id: String,
    pub name: String,
    pub price: String,
    /// znet: kupur; xstor: category.
    pub detail: String,
    pub available: bool,
}

/// Why a balance or catalogue call failed. Each says what an operator can do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    WrongBaseUrl(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Garbage(String),
    #[error("{0}")]
    Refused(String),
}

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Error {
        Error::provider(e.to_string())
    }
}

/// The small trait every HTTP provider implements. Methods never panic and never return a
/// verdict that the reply does not support.
pub trait Provider: Send + Sync {
    fn config(&self) -> &ProviderConfig;
    /// Place an order with our reference.
    fn place(&self, req: &PlacementRequest) -> PlacementOutcome;
    /// Check one order by our reference.
    fn check(&self, reference: &str) -> CheckOutcome;
    /// How many orders one `check_many` call can cover (1: no batch call).
    fn batch_limit(&self) -> usize {
        1
    }
    /// Check several orders; the result has one outcome per reference, in order.
    fn check_many(&self, references: &[String]) -> Vec<CheckOutcome> {
        references.iter().map(|r| self.check(r)).collect()
    }
    fn balance(&self) -> std::result::Result<Balance, ProviderError>;
    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError>;
    /// The placement request as it would be sent, secrets masked (for `dispatch --dry-run`).
    fn describe_placement(&self, req: &PlacementRequest) -> String;
}

/// Build the adapter for a provider. Fails with a clear message when credentials are missing.
pub fn build(config: ProviderConfig) -> Result<Box<dyn Provider>> {
    for field in config.kind.credential_fields() {
        let ok = config.credentials.get(*field).and_then(|v| v.as_str()).map(|s| !s.is_empty()).unwrap_or(false);
        if !ok {
            return Err(Error::invalid(format!("provider {} ({}) has no credential '{field}'", config.name, config.kind))
                .with_hint(format!("set providers[].credentials.{field} in the setup file and apply it again")));
        }
    }
    Ok(match config.kind {
        ProviderKind::Znet => Box::new(znet::Znet::new(config)?),
        ProviderKind::Xstor => Box::new(xstor::Xstor::new(config)?),
    })
}

/// Replace every secret in `text` with `***`. Applied to every provider text before it is
/// logged, stored or printed, as a second line of defence behind never formatting secrets.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 2 {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}
