//! Providers: external dealers reached over HTTP (one module per protocol) behind one small
//! trait. A provider is an unreliable network peer: every reply is classified into the outcomes
//! below by a pure function of the HTTP status and body, and anything unexpected is ambiguous
//! (at placement) or no news (at a check), never a verdict.
//!
//! `codes` (our own PIN stock, `codes.rs`) and `manual` routing (`manual.rs`) talk to no one
//! over the network, but they are provider kinds all the same: the dispatch pipeline hands an
//! order to one of the four.

#[cfg(test)]
mod conformance;
pub mod http;
pub mod kind;
pub(crate) mod resolve;
pub use crate::domain::text;
pub mod xstor;
pub mod znet;

use crate::error::{Error, Result};
use serde::Serialize;

pub use crate::domain::answers::{CheckOutcome, PlacementOutcome};
pub use http::HttpSettings;
pub use kind::ProviderKind;
use std::fmt;

/// Everything needed to talk to one provider. `credentials` is secret: never print it.
#[derive(Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: String,
    pub credentials: serde_json::Value,
    pub http: HttpSettings,
    /// The provider's shared rate limit (`db::pace::gate`), when it has one.
    pub gate: Option<std::sync::Arc<dyn http::CallGate>>,
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

/// How a status check names an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckKey {
    /// Our reference (Znet `referans` / x-stor `order_uuid`), always known.
    pub reference: String,
    /// The provider's own order id from the placement reply (x-stor `order_id`), when known.
    pub external_order_id: Option<String>,
}

impl CheckKey {
    /// A key with our reference only (a placement whose reply was lost, or a provider without
    /// order ids of its own).
    pub fn reference(reference: impl Into<String>) -> CheckKey {
        CheckKey { reference: reference.into(), external_order_id: None }
    }
    /// A key with our reference and the provider's order id.
    pub fn with_order_id(reference: impl Into<String>, external_order_id: impl Into<String>) -> CheckKey {
        CheckKey { reference: reference.into(), external_order_id: Some(external_order_id.into()) }
    }
}

/// What a status check learned: the outcome, and the provider's order id when the reply named it
/// (x-stor reconciliation by order_uuid learns the order_id this way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckAnswer {
    pub outcome: CheckOutcome,
    pub external_order_id: Option<String>,
}

impl CheckAnswer {
    /// An answer that names no provider order id.
    pub fn of(outcome: CheckOutcome) -> CheckAnswer {
        CheckAnswer { outcome, external_order_id: None }
    }
    /// Every provider-derived text through [`text::clean`].
    pub fn cleaned(self) -> CheckAnswer {
        CheckAnswer {
            outcome: self.outcome.cleaned(),
            external_order_id: text::clean_opt(self.external_order_id.as_deref(), text::NAME_MAX),
        }
    }
}

/// The form of the references a provider accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceStyle {
    /// digits only, at most 18 (Znet)
    Numeric,
    /// a UUID (x-stor order_uuid)
    Uuid,
}

/// Most digits a numeric reference has: `epoch_ms * 100000 + n` has 18 until the year 5138,
/// and any 18-digit number fits a signed 64-bit column.
pub const NUMERIC_REFERENCE_MAX_DIGITS: usize = 18;

impl ReferenceStyle {
    /// Whether a provider of this style can be sent `reference`. Numeric: 1 to 18 ASCII digits
    /// without a leading zero (a numeric column would drop it, and the reference would come back
    /// different). Uuid: anything non-empty, since x-stor's `order_uuid` is the caller's string
    /// (its own example is `uuid-123`); we send UUIDs.
    pub fn accepts(self, reference: &str) -> bool {
        match self {
            ReferenceStyle::Numeric => {
                !reference.is_empty()
                    && reference.len() <= NUMERIC_REFERENCE_MAX_DIGITS
                    && reference.bytes().all(|b| b.is_ascii_digit())
                    && (reference == "0" || !reference.starts_with('0'))
            }
            ReferenceStyle::Uuid => !reference.trim().is_empty(),
        }
    }
}

/// A new reference of the given style from the time and a counter.
///
/// Numeric: `millis_since_epoch * 100000 + counter % 100000` (18 digits today), the format the
/// core generates in SQL from a sequence; unique as long as two references made in the same
/// millisecond have different counters modulo 100000. Uuid: a version-7 UUID holding the
/// millisecond and the counter, unique under the same condition.
pub fn new_reference(style: ReferenceStyle, millis_since_epoch: u64, counter: u64) -> String {
    match style {
        ReferenceStyle::Numeric => millis_since_epoch.saturating_mul(100_000).saturating_add(counter % 100_000).to_string(),
        ReferenceStyle::Uuid => {
            let mut bytes = [0u8; 10];
            bytes[2..].copy_from_slice(&counter.to_be_bytes());
            uuid::Builder::from_unix_timestamp_millis(millis_since_epoch, &bytes).into_uuid().to_string()
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

impl Balance {
    /// Every provider-derived text through [`text::clean`].
    pub fn cleaned(self) -> Balance {
        use text::{clean, clean_opt, NAME_MAX};
        Balance {
            balance: clean(&self.balance, NAME_MAX),
            debt: clean_opt(self.debt.as_deref(), NAME_MAX),
            currency: clean_opt(self.currency.as_deref(), NAME_MAX),
            account: clean_opt(self.account.as_deref(), NAME_MAX),
        }
    }
}

impl CatalogueItem {
    /// Every provider-derived text through [`text::clean`].
    pub fn cleaned(self) -> CatalogueItem {
        use text::{clean, NAME_MAX};
        CatalogueItem {
            id: clean(&self.id, NAME_MAX),
            name: clean(&self.name, NAME_MAX),
            price: clean(&self.price, NAME_MAX),
            detail: clean(&self.detail, NAME_MAX),
            available: self.available,
        }
    }
}

impl ProviderError {
    /// The error's text through [`text::clean`].
    pub fn cleaned(self) -> ProviderError {
        use text::{clean, MESSAGE_MAX};
        match self {
            ProviderError::Auth(m) => ProviderError::Auth(clean(&m, MESSAGE_MAX)),
            ProviderError::WrongBaseUrl(m) => ProviderError::WrongBaseUrl(clean(&m, MESSAGE_MAX)),
            ProviderError::Unreachable(m) => ProviderError::Unreachable(clean(&m, MESSAGE_MAX)),
            ProviderError::Garbage(m) => ProviderError::Garbage(clean(&m, MESSAGE_MAX)),
            ProviderError::Refused(m) => ProviderError::Refused(clean(&m, MESSAGE_MAX)),
        }
    }
}

/// A balance or catalogue result with every provider-derived text cleaned.
pub(crate) fn cleaned_balance(r: std::result::Result<Balance, ProviderError>) -> std::result::Result<Balance, ProviderError> {
    r.map(Balance::cleaned).map_err(ProviderError::cleaned)
}

pub(crate) fn cleaned_catalogue(
    r: std::result::Result<Vec<CatalogueItem>, ProviderError>,
) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
    r.map(|items| items.into_iter().map(CatalogueItem::cleaned).collect()).map_err(ProviderError::cleaned)
}

impl From<ProviderError> for Error {
    fn from(e: ProviderError) -> Error {
        Error::provider(e.to_string())
    }
}

/// The small trait every HTTP provider implements. Methods never panic and never return a
/// verdict that the reply does not support. Every provider-derived text they return has passed
/// [`text::clean`].
pub trait Provider: Send + Sync {
    fn config(&self) -> &ProviderConfig;
    /// The form of reference this provider accepts (see [`new_reference`]).
    fn reference_style(&self) -> ReferenceStyle;
    /// Place an order with our reference.
    fn place(&self, req: &PlacementRequest) -> PlacementOutcome;
    /// Check one order.
    fn check(&self, key: &CheckKey) -> CheckAnswer;
    /// How many orders one `check_many` call can cover (1: no batch call).
    fn batch_limit(&self) -> usize {
        1
    }
    /// One answer per key, in order.
    fn check_many(&self, keys: &[CheckKey]) -> Vec<CheckAnswer> {
        keys.iter().map(|k| self.check(k)).collect()
    }
    fn balance(&self) -> std::result::Result<Balance, ProviderError>;
    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError>;
    /// The placement request as it would be sent, secrets masked (for `dispatch --dry-run`).
    fn describe_placement(&self, req: &PlacementRequest) -> String;
}

/// Build the adapter for a provider. Fails with a clear message when credentials are missing.
pub fn build(config: ProviderConfig) -> Result<Box<dyn Provider>> {
    let credentials = crate::secret::resolve(&config.credentials).map_err(|why| {
        Error::invalid(format!("provider {} ({}): {why} on this host", config.name, config.kind)).with_hint(
            "provide it where orderctl runs (the environment, or the file systemd's LoadCredential= or the container makes)",
        )
    })?;
    let config = ProviderConfig { credentials, ..config };
    for field in config.kind.credential_fields() {
        let ok = config.credentials.get(*field).and_then(|v| v.as_str()).map(|s| !s.is_empty()).unwrap_or(false);
        if !ok {
            return Err(Error::invalid(format!("provider {} ({}) has no credential '{field}'", config.name, config.kind))
                .with_hint(format!("set providers[].credentials.{field} in the setup file and apply it again")));
        }
    }
    (config.kind.spec().build)(config)
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

/// A placement call that got no reply: unknown outcome, unless the request never left (no
/// turn under the rate limit in time), which is certain and costs nothing to say.
pub(crate) fn placement_without_reply(what: &str, e: http::TransportError) -> PlacementOutcome {
    match e {
        http::TransportError::NotSent(reason) => PlacementOutcome::NotSent { reason },
        e => PlacementOutcome::Ambiguous { reason: format!("{what}: {e}") },
    }
    .cleaned()
}

/// A status check call that got no reply: a failed call, unless the request never left.
pub(crate) fn check_without_reply(what: &str, e: &http::TransportError) -> CheckOutcome {
    match e {
        http::TransportError::NotSent(reason) => CheckOutcome::NotAsked { reason: reason.clone() },
        e => CheckOutcome::failed(format!("{what}: {e}")),
    }
    .cleaned()
}

/// The dealer cost of a placement as an exact amount, or none when the field is not a plain
/// decimal with at most two places: the documents show only `10.12`, so a comma (decimal mark or
/// thousands separator?) or more places is not guessed at.
pub(crate) fn exact_cost(field: &str) -> Option<rust_decimal::Decimal> {
    let t = field.trim();
    if t.starts_with('-') || t.starts_with('+') {
        return None;
    }
    crate::domain::money::parse_amount(t, "cost").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the adapters make of a reply decides whether the breaker counts it: a provider
    /// that answered (even "query failed") is up; a garbage body counts as a failed call.
    #[test]
    fn adapter_answers_feed_the_breaker_as_the_machine_kind() {
        use crate::domain::provider_health::check_failed;
        assert!(!check_failed([&znet::classify_check(200, "3|Sistem hatası")]), "a failed query is an answer");
        assert!(!check_failed([&xstor::classify_check_by_uuid(200, r#"{"status":"OK","data":[{"status":"??"}]}"#, "r").outcome]));
        let garbage = znet::classify_check(200, "status is unknown");
        assert!(check_failed([&garbage]), "a garbage reply counts, whatever words it holds: {garbage:?}");
    }

    #[test]
    fn numeric_references_are_epoch_millis_and_a_counter_in_18_digits() {
        let r = new_reference(ReferenceStyle::Numeric, 1_767_225_600_123, 1_234_567);
        assert_eq!(r, "176722560012334567");
        assert_eq!(r.len(), 18);
        assert!(ReferenceStyle::Numeric.accepts(&r));
        assert_ne!(r, new_reference(ReferenceStyle::Numeric, 1_767_225_600_123, 1_234_568));
        assert_ne!(r, new_reference(ReferenceStyle::Numeric, 1_767_225_600_124, 1_234_567));
    }

    #[test]
    fn uuid_references_are_uuids_unique_per_millisecond_and_counter() {
        let a = new_reference(ReferenceStyle::Uuid, 1_767_225_600_123, 7);
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
        assert_ne!(a, new_reference(ReferenceStyle::Uuid, 1_767_225_600_123, 8));
        assert!(ReferenceStyle::Uuid.accepts(&a));
    }

    #[test]
    fn numeric_style_accepts_only_plain_numbers() {
        for ok in ["0", "7", "123456", "1699999999123", "999999999999999999"] {
            assert!(ReferenceStyle::Numeric.accepts(ok), "{ok}");
        }
        for bad in ["", "1234567890123456789", "0123", "12a", "-1", "1.5", " 12", "d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60", "١٢٣"]
        {
            assert!(!ReferenceStyle::Numeric.accepts(bad), "{bad}");
        }
    }

    #[test]
    fn cleaning_an_outcome_cleans_every_text_and_drops_an_empty_pin() {
        let o = CheckOutcome::Approved { pin: Some(" \u{0} ".into()), message: "ok\u{1b}[2J".into() }.cleaned();
        assert_eq!(o, CheckOutcome::Approved { pin: None, message: "ok [2J".into() });
        let p = PlacementOutcome::Accepted {
            cost: None,
            balance: None,
            external_order_id: Some("67\u{0}890".into()),
            message: "a\nb".into(),
            early: Some(CheckOutcome::Waiting { message: "x".repeat(900) }),
        }
        .cleaned();
        match p {
            PlacementOutcome::Accepted {
                external_order_id, message, early: Some(CheckOutcome::Waiting { message: w }), ..
            } => {
                assert_eq!(external_order_id.as_deref(), Some("67 890"));
                assert_eq!(message, "a b");
                assert_eq!(w.chars().count(), text::MESSAGE_MAX);
            }
            other => panic!("{other:?}"),
        }
    }
}
