//! x-stor / Barakat client API adapter (see `shared/notes/providers.md`).
//!
//! JSON over GET with an `api-token` header. What the adapter relies on, all from the
//! provider's documentation:
//!
//! - **Placement** `newOrder/{product}/params?qty=..&<player param>=..&order_uuid=<our reference>`
//!   answers `{"status":"OK","data":{"order_id","status","price","pin"?,"replay_api","note"}}`
//!   (already finished, with its PIN, or still waiting) or `{"status":"ERROR","message",...}`.
//!   An ERROR is a definite rejection with or without a numeric code (the documented example has
//!   none); only code 500 ("unknown") leaves the order's existence unknown. Ids, prices and codes
//!   may be strings or numbers.
//! - **Status checks** name orders by the provider's `order_id` from the placement reply:
//!   `check?orders=[67890,67891]` is one request for many orders, and its entries carry
//!   `order_id` and no `order_uuid`. Each entry is matched to the order it names; an entry naming
//!   an order we did not ask for is never taken as ours; an order missing from `data` is "not
//!   found" only when every entry names its order. An order whose placement reply was lost has no
//!   `order_id` yet: it is looked up by our reference with `&uuid=1`, one per request, and the
//!   single entry that comes back (if it names no other `order_uuid`) is ours; its `order_id` is
//!   learned from it.
//! - **Status words** `wait`/`accept`/`reject` and the synonyms seen in the wild.
//!
//! Replies are classified by the pure functions at the top of this file; an unexpected reply is
//! ambiguous at placement and no news at a check, never a verdict. Every text that leaves the
//! adapter has passed [`super::text::clean`].

use super::http::{excerpt, looks_like_html, HttpClient, HttpReply, TransportError};
use super::znet::{json_text, transport_to_provider_error};
use super::*;
use serde_json::Value;
use std::time::Instant;

/// Most orders one `check` request carries. Requests are also split so that the URL stays
/// under `MAX_CHECK_QUERY_BYTES`, which common front servers (8 KiB request lines) accept.
pub const BATCH_LIMIT: usize = 200;
const MAX_CHECK_QUERY_BYTES: usize = 7000;

/// What an x-stor error code means, and for the ones an operator must fix, what to do.
pub fn error_code_meaning(code: i64) -> Option<&'static str> {
    Some(match code {
        120 => "token required: set the provider's api_token",
        121 => "token error: check the provider's api_token",
        122 => "not allowed: this account may not use the API; ask the provider to enable it",
        123 => "IP not allowed: add this machine's IP address to the provider's allow list",
        130 => "maintenance: the provider is down for maintenance, try again later",
        109 => "product not found: check the package mapping's product_id",
        110 => "product unavailable",
        105 | 106 | 112 | 113 => "quantity error",
        114 => "missing or invalid parameter",
        500 => "unknown error",
        _ => return None,
    })
}

/// The meaning of a status word (with the synonyms seen in the wild).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWord {
    Waiting,
    Approved,
    Cancelled,
    Unknown,
}

pub fn status_word(word: &str) -> StatusWord {
    match word.trim().to_ascii_lowercase().as_str() {
        "wait" | "waiting" | "pending" | "processing" | "queued" => StatusWord::Waiting,
        "accept" | "accepted" | "success" | "ok" | "done" | "completed" => StatusWord::Approved,
        "reject" | "rejected" | "failed" | "error" | "cancelled" | "canceled" => StatusWord::Cancelled,
        _ => StatusWord::Unknown,
    }
}

/// A whole number given as a number or as a string of digits.
fn json_code(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The code and text of an ERROR reply, with or without a code:
/// `{"status":"ERROR","message":"Insufficient balance","error":"..."}` (documented) and
/// `{"status":"ERROR","code":121,"message":"token error"}` (other members of the family).
/// The code may also come as `error_code`, or as a number in `error`.
fn describe_error(v: &Value) -> (Option<i64>, String) {
    let code = json_code(v.get("code")).or_else(|| json_code(v.get("error_code"))).or_else(|| json_code(v.get("error")));
    let text_of = |key: &str| json_text(v.get(key)).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let message = text_of("message").or_else(|| text_of("msg"));
    let error = text_of("error").filter(|_| json_code(v.get("error")).is_none());
    // `"error": "insufficient_balance"` next to `"message": "Insufficient balance"` adds nothing.
    let same = |a: &str, b: &str| {
        let norm = |t: &str| t.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>();
        norm(a) == norm(b)
    };
    let said = match (message, error) {
        (Some(m), Some(e)) if !same(&m, &e) => format!("{m} ({e})"),
        (Some(m), _) => m,
        (None, Some(e)) => e,
        (None, None) => String::new(),
    };
    let text = match (code, code.and_then(error_code_meaning)) {
        (Some(c), Some(meaning)) if said.is_empty() => format!("{c} {meaning}"),
        (Some(c), Some(meaning)) => format!("{c} {meaning} (x-stor said: {said})"),
        (Some(c), None) => format!("{c}: {}", if said.is_empty() { "x-stor gave no message" } else { &said }),
        (None, _) => format!("x-stor: {}", if said.is_empty() { "error without a message" } else { &said }),
    };
    (code, text)
}

/// A reply as JSON, or the reason it is not usable.
fn json_reply(status: u16, body: &str) -> std::result::Result<Value, String> {
    let text = body.trim_start_matches('\u{feff}').trim();
    if status >= 500 {
        return Err(format!("x-stor answered HTTP {status}: {}", or_none(&excerpt(text))));
    }
    if text.is_empty() {
        return Err(format!("x-stor answered HTTP {status} with an empty body"));
    }
    if looks_like_html(text) {
        return Err("x-stor answered with an HTML page: the base URL points at a web page, not the API \
                    (set base_url to the API root, e.g. https://api.x-stor.net)"
            .to_string());
    }
    serde_json::from_str::<Value>(text).map_err(|_| format!("x-stor reply not understood (HTTP {status}): '{}'", excerpt(text)))
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "no text"
    } else {
        s
    }
}

fn is_status(v: &Value, word: &str) -> bool {
    v.get("status").and_then(|s| s.as_str()).map(|s| s.trim().eq_ignore_ascii_case(word)).unwrap_or(false)
}

/// A PIN field: a string, a number, or a list of them (several codes for a quantity above one).
/// A PIN given as an object, or a list holding objects (a code with its serial), is kept as the
/// provider's JSON text: goods are never turned into "no PIN".
fn pin_text(v: Option<&Value>) -> Option<String> {
    let pin = match v? {
        Value::Object(o) if o.is_empty() => return None,
        v @ Value::Object(_) => v.to_string(),
        Value::Array(items) if items.iter().any(|i| matches!(i, Value::Object(_) | Value::Array(_))) => {
            Value::Array(items.clone()).to_string()
        }
        Value::Array(items) => items
            .iter()
            .filter_map(|i| json_text(Some(i)))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        other => json_text(Some(other))?.trim().to_string(),
    };
    Some(pin).filter(|p| !p.is_empty())
}

/// One order entry of a placement or check reply, as a check outcome.
fn entry_outcome(entry: &Value) -> CheckOutcome {
    let word = json_text(entry.get("status")).unwrap_or_default();
    let note = json_text(entry.get("note")).unwrap_or_default();
    let message = if note.trim().is_empty() { word.clone() } else { note };
    match status_word(&word) {
        StatusWord::Waiting => CheckOutcome::Waiting { message },
        StatusWord::Approved => CheckOutcome::Approved { pin: pin_text(entry.get("pin")), message },
        StatusWord::Cancelled => CheckOutcome::Cancelled { message },
        StatusWord::Unknown => CheckOutcome::no_verdict(format!("x-stor status '{}' is unknown", excerpt(&word))),
    }
}

/// Classify a `newOrder` reply.
pub fn classify_placement(status: u16, body: &str) -> PlacementOutcome {
    classify_placement_raw(status, body).cleaned()
}

fn classify_placement_raw(status: u16, body: &str) -> PlacementOutcome {
    let v = match json_reply(status, body) {
        Ok(v) => v,
        Err(reason) => return PlacementOutcome::Ambiguous { reason },
    };
    if is_status(&v, "OK") && (200..300).contains(&status) {
        let Some(data) = v.get("data").filter(|d| d.is_object()) else {
            return PlacementOutcome::Ambiguous { reason: format!("x-stor said OK without order data: '{}'", excerpt(body)) };
        };
        let early = match entry_outcome(data) {
            CheckOutcome::NoNews { .. } | CheckOutcome::Waiting { .. } => None,
            known => Some(known),
        };
        let order_id = json_text(data.get("order_id")).map(|id| id.trim().to_string()).filter(|id| !id.is_empty());
        let mut message = "accepted".to_string();
        if let Some(id) = &order_id {
            message.push_str(&format!(" as x-stor order {id}"));
        }
        // `price` as a string or a JSON number; a number is read from its text, never a float.
        let cost = json_text(data.get("price")).as_deref().and_then(super::exact_cost);
        return PlacementOutcome::Accepted { external_order_id: order_id, message, early, cost, balance: None };
    }
    if is_status(&v, "ERROR") {
        let (code, text) = describe_error(&v);
        return match code {
            // "Unknown error" says nothing about whether the order was taken.
            Some(500) => PlacementOutcome::Ambiguous { reason: text },
            _ => PlacementOutcome::Rejected { message: text },
        };
    }
    PlacementOutcome::Ambiguous { reason: format!("x-stor reply not understood (HTTP {status}): '{}'", excerpt(body)) }
}

/// The entries of a `check` reply, or the no-news outcome of every order it asked about.
fn check_entries(status: u16, body: &str) -> std::result::Result<Vec<Value>, CheckOutcome> {
    let mut v = json_reply(status, body).map_err(CheckOutcome::failed)?;
    if is_status(&v, "ERROR") {
        let (_, text) = describe_error(&v);
        return Err(CheckOutcome::no_verdict(format!("x-stor status query failed: {text}")));
    }
    if !is_status(&v, "OK") || !(200..300).contains(&status) {
        return Err(CheckOutcome::failed(format!("x-stor status reply not understood (HTTP {status}): '{}'", excerpt(body))));
    }
    match v.get_mut("data").map(Value::take) {
        Some(Value::Array(entries)) => Ok(entries),
        _ => Err(CheckOutcome::failed(format!("x-stor status reply has no list of orders: '{}'", excerpt(body)))),
    }
}

/// Whether two order ids are the same order: equal text, or the same number written
/// differently (`67890` and `"67890"` both come as text here).
fn same_id(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a == b || matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(x), Ok(y)) if x == y)
}

/// Classify a `check?orders=[...]` reply (looked up by `order_id`): one answer per asked id,
/// in order. An entry counts only for the id it names; an asked id missing from `data` is
/// "not found" only when every entry names an `order_id` (else it could be one of the unnamed).
pub fn classify_check_by_order_id(status: u16, body: &str, order_ids: &[String]) -> Vec<CheckAnswer> {
    classify_check_by_order_id_raw(status, body, order_ids).into_iter().map(CheckAnswer::cleaned).collect()
}

fn classify_check_by_order_id_raw(status: u16, body: &str, order_ids: &[String]) -> Vec<CheckAnswer> {
    let entries = match check_entries(status, body) {
        Ok(e) => e,
        Err(no_news) => return order_ids.iter().map(|_| CheckAnswer::of(no_news.clone())).collect(),
    };
    let named: Vec<(Option<String>, &Value)> = entries
        .iter()
        .map(|e| (json_text(e.get("order_id")).map(|id| id.trim().to_string()).filter(|id| !id.is_empty()), e))
        .collect();
    let unnamed = named.iter().filter(|(id, _)| id.is_none()).count();
    order_ids
        .iter()
        .map(|asked| {
            let matches: Vec<&Value> = named
                .iter()
                .filter(|(id, _)| id.as_deref().map(|id| same_id(id, asked)).unwrap_or(false))
                .map(|(_, e)| *e)
                .collect();
            match matches.as_slice() {
                [entry] => CheckAnswer { outcome: entry_outcome(entry), external_order_id: Some(asked.trim().to_string()) },
                [first, rest @ ..] => {
                    let outcome = entry_outcome(first);
                    if rest.iter().all(|e| entry_outcome(e) == outcome) {
                        CheckAnswer { outcome, external_order_id: Some(asked.trim().to_string()) }
                    } else {
                        CheckAnswer::of(CheckOutcome::failed(format!(
                            "x-stor listed order {asked} more than once, with different states"
                        )))
                    }
                }
                [] if unnamed == 0 => {
                    CheckAnswer::of(CheckOutcome::NotFound { message: format!("x-stor has no order with order_id {asked}") })
                }
                [] => CheckAnswer::of(CheckOutcome::failed(format!(
                    "x-stor's reply has {unnamed} entr(ies) without an order_id: cannot tell whether one is order {asked}"
                ))),
            }
        })
        .collect()
}

/// Classify a `check?orders=[<reference>]&uuid=1` reply, asked about one reference: the
/// documentation does not promise that entries name the `order_uuid`, so the reply's entry is
/// ours only when it is the only one and names no other `order_uuid`. Its `order_id` is learned.
pub fn classify_check_by_uuid(status: u16, body: &str, reference: &str) -> CheckAnswer {
    classify_check_by_uuid_raw(status, body, reference).cleaned()
}

fn classify_check_by_uuid_raw(status: u16, body: &str, reference: &str) -> CheckAnswer {
    let entries = match check_entries(status, body) {
        Ok(e) => e,
        Err(no_news) => return CheckAnswer::of(no_news),
    };
    match entries.as_slice() {
        [] => CheckAnswer::of(CheckOutcome::NotFound { message: "x-stor has no order with this order_uuid".to_string() }),
        [entry] => {
            let names_other = json_text(entry.get("order_uuid")).map(|u| u.trim() != reference.trim()).unwrap_or(false);
            if names_other {
                return CheckAnswer::of(CheckOutcome::failed("x-stor answered about another order_uuid than the one asked for"));
            }
            let order_id = json_text(entry.get("order_id")).map(|id| id.trim().to_string()).filter(|id| !id.is_empty());
            CheckAnswer { outcome: entry_outcome(entry), external_order_id: order_id }
        }
        many => CheckAnswer::of(CheckOutcome::failed(format!(
            "x-stor answered {} entries for one order_uuid: cannot tell which is ours",
            many.len()
        ))),
    }
}

/// The operator-facing error of an ERROR reply to a balance or catalogue call. Without a code,
/// the words say what to look at.
fn account_error(v: &Value) -> ProviderError {
    let (code, text) = describe_error(v);
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
    match code {
        Some(120..=123) => ProviderError::Auth(format!("x-stor refused the API token: {text}")),
        Some(130) => ProviderError::Unreachable(format!("x-stor: {text}")),
        None if lower.contains("token") => {
            ProviderError::Auth(format!("x-stor refused the API token: {text}; check the provider's api_token"))
        }
        None if words.contains(&"ip") => {
            ProviderError::Auth(format!("x-stor refused this machine: {text}; add its IP address to the provider's allow list"))
        }
        None if lower.contains("maintenance") => ProviderError::Unreachable(format!("{text}; try again later")),
        _ => ProviderError::Refused(format!("x-stor refused the call: {text}")),
    }
}

fn account_reply(status: u16, body: &str) -> std::result::Result<Value, ProviderError> {
    let v = json_reply(status, body).map_err(|reason| {
        if reason.contains("HTML page") {
            ProviderError::WrongBaseUrl(reason)
        } else if status >= 500 {
            ProviderError::Unreachable(format!("{reason}; try again later"))
        } else {
            ProviderError::Garbage(reason)
        }
    })?;
    if is_status(&v, "ERROR") {
        return Err(account_error(&v));
    }
    if !(200..300).contains(&status) {
        return Err(ProviderError::Refused(format!("x-stor answered HTTP {status}: {}", excerpt(body))));
    }
    Ok(v)
}

/// Parse a `profile` reply: `{"balance": "...", "email": "..."}`.
pub fn parse_balance(status: u16, body: &str) -> std::result::Result<Balance, ProviderError> {
    cleaned_balance(parse_balance_raw(status, body))
}

fn parse_balance_raw(status: u16, body: &str) -> std::result::Result<Balance, ProviderError> {
    let v = account_reply(status, body)?;
    // Some sites wrap the profile in {"status":"OK","data":{...}}.
    let p = v.get("data").filter(|d| d.is_object()).unwrap_or(&v);
    let balance = json_text(p.get("balance"))
        .ok_or_else(|| ProviderError::Garbage(format!("x-stor profile has no balance: '{}'", excerpt(body))))?;
    Ok(Balance { balance, debt: None, currency: json_text(p.get("currency")), account: json_text(p.get("email")) })
}

/// Parse a `products` reply: an array of products (or `{"status":"OK","data":[...]}`).
pub fn parse_catalogue(status: u16, body: &str) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
    cleaned_catalogue(parse_catalogue_raw(status, body))
}

fn parse_catalogue_raw(status: u16, body: &str) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
    let v = account_reply(status, body)?;
    let items = v
        .as_array()
        .or_else(|| v.get("data").and_then(|d| d.as_array()))
        .ok_or_else(|| ProviderError::Garbage(format!("x-stor product list not understood: '{}'", excerpt(body))))?;
    Ok(items
        .iter()
        .map(|p| CatalogueItem {
            id: json_text(p.get("id")).unwrap_or_default(),
            name: json_text(p.get("name")).unwrap_or_default(),
            price: json_text(p.get("price")).unwrap_or_default(),
            detail: json_text(p.get("category_name")).unwrap_or_default(),
            available: match p.get("available") {
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) => n.as_i64() != Some(0),
                Some(Value::String(s)) => !matches!(s.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | ""),
                _ => true,
            },
        })
        .collect())
}

/// The x-stor kind, as `provider::kind` lists it.
pub const KIND: super::kind::KindSpec = super::kind::KindSpec {
    name: "xstor",
    credential_fields: &["api_token"],
    required_mapping_fields: &["product_id"],
    reference_style: ReferenceStyle::Uuid,
    auth_hint: "check credentials.api_token in the setup file; for 123 ask the provider to allow this machine's IP address",
    base_url_hint: "set base_url to the API root (e.g. https://api.x-stor.net)",
    mapping_key: |m| json_text(m.get("product_id")).map(|id| id.trim().to_string()),
    item_key: |i| i.id.trim().to_string(),
    build: |config| Ok(Box::new(Xstor::new(config)?)),
};

/// The x-stor adapter.
pub struct Xstor {
    config: ProviderConfig,
    http: HttpClient,
    /// The API root without a trailing slash (and without `/client/api`).
    base: String,
}

impl std::fmt::Debug for Xstor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xstor").field("config", &self.config).finish()
    }
}

/// The API root for a base given with or without `/client/api` and trailing slashes.
pub fn api_root(base: &str) -> String {
    let t = base.trim().trim_end_matches('/');
    t.strip_suffix("/client/api").unwrap_or(t).to_string()
}

/// One element of the `orders=[...]` JSON array: a number when the id is one (as the
/// documentation writes `[67890,67891]`), else a JSON string.
fn order_list_element(id: &str) -> String {
    let id = id.trim();
    let numeric =
        !id.is_empty() && id.len() <= 18 && id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0'));
    if numeric {
        id.to_string()
    } else {
        Value::String(id.to_string()).to_string()
    }
}

/// The `check` query for these ids (or, with `by_uuid`, our references).
pub fn check_query(ids: &[String], by_uuid: bool) -> String {
    let list = format!("[{}]", ids.iter().map(|id| order_list_element(id)).collect::<Vec<_>>().join(","));
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("orders", &list);
    if by_uuid {
        q.append_pair("uuid", "1");
    }
    format!("check?{}", q.finish())
}

impl Xstor {
    pub fn new(config: ProviderConfig) -> Result<Xstor> {
        url::Url::parse(config.base_url.trim()).map_err(|e| {
            Error::invalid(format!("provider {} has a base URL that is not a URL ({e})", config.name))
                .with_hint("set base_url to the API root, e.g. https://api.x-stor.net")
        })?;
        Ok(Xstor { http: HttpClient::new(&config), base: api_root(&config.base_url), config })
    }

    fn token(&self) -> &str {
        self.config.credentials.get("api_token").and_then(|v| v.as_str()).unwrap_or("")
    }

    fn get(&self, path_and_query: &str) -> std::result::Result<HttpReply, TransportError> {
        self.get_by(path_and_query, None)
    }

    fn get_by(&self, path_and_query: &str, deadline: Option<Instant>) -> std::result::Result<HttpReply, TransportError> {
        self.http.get_by(&format!("{}/client/api/{path_and_query}", self.base), &[("api-token", self.token())], deadline)
    }

    fn get_for(&self, purpose: super::http::CallPurpose, path_and_query: &str) -> std::result::Result<HttpReply, TransportError> {
        self.http.get_for(purpose, &format!("{}/client/api/{path_and_query}", self.base), &[("api-token", self.token())])
    }

    /// The `newOrder` path and query, or why this placement cannot be sent at all.
    fn placement_path(req: &PlacementRequest) -> std::result::Result<String, String> {
        if req.quantity < 1 {
            return Err(format!("quantity must be at least 1, got {}", req.quantity));
        }
        let product = json_text(req.mapping.get("product_id")).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let Some(product) = product else {
            return Err("the package mapping for this x-stor provider needs \"product_id\"; fix the mapping in the setup file"
                .to_string());
        };
        let player_param =
            json_text(req.mapping.get("player_param")).filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "playerId".to_string());
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("qty", &req.quantity.to_string());
        q.append_pair(&player_param, &req.player);
        q.append_pair("order_uuid", &req.reference);
        let product: String = url::form_urlencoded::byte_serialize(product.as_bytes()).collect();
        Ok(format!("newOrder/{product}/params?{}", q.finish()))
    }

    /// One `check` request for a chunk of the provider's order ids.
    fn check_by_order_id(&self, ids: &[String], deadline: Instant) -> Vec<CheckAnswer> {
        match self.get_by(&check_query(ids, false), Some(deadline)) {
            Ok(r) => classify_check_by_order_id(r.status, &r.body, ids),
            Err(e) => {
                let o = super::check_without_reply("x-stor status check", &e);
                ids.iter().map(|_| CheckAnswer::of(o.clone())).collect()
            }
        }
    }

    /// One `check ... &uuid=1` request for one of our references.
    fn check_by_uuid(&self, reference: &str, deadline: Instant) -> CheckAnswer {
        match self.get_by(&check_query(&[reference.to_string()], true), Some(deadline)) {
            Ok(r) => classify_check_by_uuid(r.status, &r.body, reference),
            Err(e) => CheckAnswer::of(super::check_without_reply("x-stor status check", &e)),
        }
    }
}

/// Split ids into request-sized chunks: at most `BATCH_LIMIT` each and a URL-encoded list no
/// longer than `MAX_CHECK_QUERY_BYTES`.
pub fn check_chunks(ids: &[String]) -> Vec<&[String]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, id) in ids.iter().enumerate() {
        // Each element costs its encoded length plus an encoded comma (3 bytes).
        let element = order_list_element(id);
        let cost = url::form_urlencoded::byte_serialize(element.as_bytes()).map(str::len).sum::<usize>() + 3;
        if i > start && (i - start >= BATCH_LIMIT || bytes + cost > MAX_CHECK_QUERY_BYTES) {
            chunks.push(&ids[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += cost;
    }
    if start < ids.len() {
        chunks.push(&ids[start..]);
    }
    chunks
}

impl Provider for Xstor {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn reference_style(&self) -> ReferenceStyle {
        ReferenceStyle::Uuid
    }

    fn place(&self, req: &PlacementRequest) -> PlacementOutcome {
        let path = match Self::placement_path(req) {
            Ok(p) => p,
            Err(message) => return PlacementOutcome::Rejected { message }.cleaned(),
        };
        match self.get_for(super::http::CallPurpose::Placement, &path) {
            Ok(r) => classify_placement(r.status, &r.body),
            Err(e) => super::placement_without_reply("x-stor placement", e),
        }
    }

    fn check(&self, key: &CheckKey) -> CheckAnswer {
        self.check_many(std::slice::from_ref(key))
            .pop()
            .unwrap_or_else(|| CheckAnswer::of(CheckOutcome::failed("x-stor status reply not understood")))
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    /// Orders with a known `order_id` in batches by order id; the others one by one by our
    /// reference (`uuid=1`). The requests together take at most one request timeout: the lane
    /// sized the claim's lease for one call, and each request with a whole timeout of its own
    /// let a batch run for several (a batch seen "in flight 8s" under `--request-timeout 3s`,
    /// its answers then refused by the lapsed lease). What is not asked in time is no news: it
    /// comes due again.
    fn check_many(&self, keys: &[CheckKey]) -> Vec<CheckAnswer> {
        let deadline = Instant::now() + self.config.http.request_timeout;
        let mut answers: Vec<Option<CheckAnswer>> = vec![None; keys.len()];
        // (position, order id) of the keys that have one.
        let with_id: Vec<(usize, String)> = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| {
                k.external_order_id.as_deref().map(str::trim).filter(|id| !id.is_empty()).map(|id| (i, id.to_string()))
            })
            .collect();
        let ids: Vec<String> = with_id.iter().map(|(_, id)| id.clone()).collect();
        let mut done = 0;
        for chunk in check_chunks(&ids) {
            for (j, answer) in self.check_by_order_id(chunk, deadline).into_iter().enumerate() {
                answers[with_id[done + j].0] = Some(answer);
            }
            done += chunk.len();
        }
        for (i, key) in keys.iter().enumerate() {
            if answers[i].is_none() {
                answers[i] = Some(self.check_by_uuid(&key.reference, deadline));
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| CheckAnswer::of(CheckOutcome::failed("x-stor was not asked")))).collect()
    }

    fn balance(&self) -> std::result::Result<Balance, ProviderError> {
        let r = self.get("profile").map_err(|e| transport_to_provider_error(e).cleaned())?;
        parse_balance(r.status, &r.body)
    }

    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
        let r = self.get("products").map_err(|e| transport_to_provider_error(e).cleaned())?;
        parse_catalogue(r.status, &r.body)
    }

    fn describe_placement(&self, req: &PlacementRequest) -> String {
        match Self::placement_path(req) {
            Ok(path) => format!("GET {} with header api-token: ***", self.http.mask(&format!("{}/client/api/{path}", self.base))),
            Err(message) => format!("nothing would be sent: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    fn outcomes(answers: Vec<CheckAnswer>) -> Vec<CheckOutcome> {
        answers.into_iter().map(|a| a.outcome).collect()
    }

    #[test]
    fn placement_ok_waiting_is_accepted_without_early_state() {
        let o = classify_placement(
            200,
            r#"{"status":"OK","data":{"order_id":77,"status":"wait","price":"1.10","replay_api":[],"note":""}}"#,
        );
        match o {
            PlacementOutcome::Accepted { external_order_id, early, message, cost, .. } => {
                assert_eq!(cost, Some(rust_decimal::Decimal::new(110, 2)));
                assert_eq!(external_order_id.as_deref(), Some("77"));
                assert_eq!(early, None);
                assert!(message.contains("77"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn placement_ok_accept_with_pin_is_early_approved() {
        let o =
            classify_placement(200, r#"{"status":"OK","data":{"order_id":"5","status":"accept","pin":"XYZ-1","note":"done"}}"#);
        assert!(matches!(
            o,
            PlacementOutcome::Accepted { early: Some(CheckOutcome::Approved { pin: Some(ref p), .. }), .. } if p == "XYZ-1"
        ));
        let o = classify_placement(200, r#"{"status":"OK","data":{"order_id":"5","status":"reject"}}"#);
        assert!(matches!(o, PlacementOutcome::Accepted { early: Some(CheckOutcome::Cancelled { .. }), .. }));
        // Several codes for a quantity above one.
        let o = classify_placement(200, r#"{"status":"ok","data":{"order_id":"6","status":"success","pin":["A-1"," B-2"]}}"#);
        assert!(matches!(
            o,
            PlacementOutcome::Accepted { early: Some(CheckOutcome::Approved { pin: Some(ref p), .. }), .. } if p == "A-1, B-2"
        ));
    }

    #[test]
    fn placement_errors_with_and_without_a_code() {
        let o = classify_placement(200, r#"{"status":"ERROR","code":109,"message":"product not found"}"#);
        assert!(
            matches!(&o, PlacementOutcome::Rejected { message } if message.contains("109") && message.contains("product not found"))
        );
        let o = classify_placement(401, r#"{"status":"ERROR","code":121,"message":"token error"}"#);
        assert!(
            matches!(&o, PlacementOutcome::Rejected { message } if message.contains("121 token error: check the provider's api_token")),
            "{o:?}"
        );
        let o = classify_placement(200, r#"{"status":"ERROR","code":"500","message":"unknown"}"#);
        assert!(matches!(o, PlacementOutcome::Ambiguous { .. }), "{o:?}");
        let o = classify_placement(200, r#"{"status":"ERROR","message":"no balance"}"#);
        assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: no balance".into() });
        let o = classify_placement(200, r#"{"status":"ERROR","message":"Insufficient balance","error":"insufficient_balance"}"#);
        assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: Insufficient balance".into() });
        let o = classify_placement(200, r#"{"status":"ERROR","error":"Wallet locked"}"#);
        assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: Wallet locked".into() });
        let o = classify_placement(200, r#"{"status":"ERROR","error":114,"message":"bad uid"}"#);
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.starts_with("114 missing or invalid parameter")));
        let o = classify_placement(200, r#"{"status":"ERROR","error_code":"999"}"#);
        assert_eq!(o, PlacementOutcome::Rejected { message: "999: x-stor gave no message".into() });
        let o = classify_placement(200, r#"{"status":"ERROR"}"#);
        assert_eq!(o, PlacementOutcome::Rejected { message: "x-stor: error without a message".into() });
    }

    #[test]
    fn placement_garbage_is_ambiguous() {
        for (s, b) in [
            (200, ""),
            (200, "<html></html>"),
            (500, r#"{"status":"ERROR","code":109}"#),
            (502, "bad gateway"),
            (200, "{"),
            (200, "[]"),
            (200, r#"{"status":"OK"}"#),
            (200, r#"{"status":"MAYBE"}"#),
            (404, r#"{"status":"OK","data":{"order_id":1,"status":"wait"}}"#),
            (200, "\u{fffd}\u{fffd}"),
        ] {
            assert!(matches!(classify_placement(s, b), PlacementOutcome::Ambiguous { .. }), "{s} {b:?}");
        }
    }

    #[test]
    fn status_words_and_synonyms() {
        for w in ["wait", "pending", "Processing", "queued", " waiting "] {
            assert_eq!(status_word(w), StatusWord::Waiting, "{w}");
        }
        for w in ["accept", "success", "OK", "done", "completed", "Accepted"] {
            assert_eq!(status_word(w), StatusWord::Approved, "{w}");
        }
        for w in ["reject", "failed", "rejected", "error", "cancelled", "canceled", "REJECT"] {
            assert_eq!(status_word(w), StatusWord::Cancelled, "{w}");
        }
        assert_eq!(status_word("refunding"), StatusWord::Unknown);
        assert_eq!(status_word(""), StatusWord::Unknown);
    }

    #[test]
    fn batch_check_by_order_id_maps_each_entry_to_the_id_it_names() {
        let body = r#"{"status":"OK","data":[
            {"order_id":"1","status":"accept","pin":"P-1","note":""},
            {"order_id":2,"status":"wait"},
            {"order_id":"3","status":"reject","note":"out of stock"},
            {"order_id":"4","status":"teleported"}]}"#;
        let answers = classify_check_by_order_id(200, body, &ids(&["3", "1", "9", "2", "4"]));
        assert_eq!(answers[0].outcome, CheckOutcome::Cancelled { message: "out of stock".into() });
        assert_eq!(answers[0].external_order_id.as_deref(), Some("3"));
        assert_eq!(answers[1].outcome, CheckOutcome::Approved { pin: Some("P-1".into()), message: "accept".into() });
        assert!(matches!(answers[2].outcome, CheckOutcome::NotFound { .. }), "every entry names its order: 9 is missing");
        assert_eq!(answers[2].external_order_id, None);
        assert_eq!(answers[3].outcome, CheckOutcome::Waiting { message: "wait".into() });
        assert!(matches!(answers[4].outcome, CheckOutcome::NoNews { .. }));
    }

    #[test]
    fn an_entry_naming_another_order_is_never_taken_as_ours() {
        let body = r#"{"status":"OK","data":[{"order_id":"555","status":"accept","pin":"NOT-YOURS"}]}"#;
        let out = outcomes(classify_check_by_order_id(200, body, &ids(&["67890"])));
        assert!(matches!(out[0], CheckOutcome::NotFound { .. }), "{out:?}");
        // An entry without an order_id could be anyone's: no verdict, not even "not found".
        let body = r#"{"status":"OK","data":[{"status":"accept","pin":"P"}]}"#;
        let out = outcomes(classify_check_by_order_id(200, body, &ids(&["67890", "67891"])));
        assert!(out.iter().all(|o| matches!(o, CheckOutcome::NoNews { .. })), "{out:?}");
        let out = outcomes(classify_check_by_order_id(200, body, &ids(&["67890"])));
        assert!(matches!(out[0], CheckOutcome::NoNews { .. }), "{out:?}");
        // The same order twice with different states: no verdict.
        let body = r#"{"status":"OK","data":[{"order_id":"1","status":"accept"},{"order_id":"1","status":"reject"}]}"#;
        assert!(matches!(outcomes(classify_check_by_order_id(200, body, &ids(&["1"])))[0], CheckOutcome::NoNews { .. }));
        let out = outcomes(classify_check_by_order_id(200, r#"{"status":"OK","data":[]}"#, &ids(&["a", "b"])));
        assert!(out.iter().all(|o| matches!(o, CheckOutcome::NotFound { .. })));
    }

    #[test]
    fn reconciliation_by_uuid_takes_the_single_entry_and_learns_its_order_id() {
        let r = "d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60";
        let a = classify_check_by_uuid(
            200,
            r#"{"status":"OK","data":[{"order_id":"67890","status":"pending","note":"Processing..."}]}"#,
            r,
        );
        assert_eq!(a.outcome, CheckOutcome::Waiting { message: "Processing...".into() });
        assert_eq!(a.external_order_id.as_deref(), Some("67890"));
        // An entry naming our own uuid is ours too; one naming another is not.
        let a = classify_check_by_uuid(
            200,
            &format!(r#"{{"status":"OK","data":[{{"order_id":7,"order_uuid":"{r}","status":"success","pin":"P"}}]}}"#),
            r,
        );
        assert_eq!((a.outcome.label(), a.external_order_id.as_deref()), ("approved", Some("7")));
        let a =
            classify_check_by_uuid(200, r#"{"status":"OK","data":[{"order_id":7,"order_uuid":"other","status":"success"}]}"#, r);
        assert!(matches!(a.outcome, CheckOutcome::NoNews { .. }));
        assert_eq!(a.external_order_id, None);
        let a = classify_check_by_uuid(200, r#"{"status":"OK","data":[]}"#, r);
        assert!(matches!(a.outcome, CheckOutcome::NotFound { .. }));
        let two = r#"{"status":"OK","data":[{"order_id":"1","status":"wait"},{"order_id":"2","status":"wait"}]}"#;
        assert!(matches!(classify_check_by_uuid(200, two, r).outcome, CheckOutcome::NoNews { .. }));
    }

    #[test]
    fn check_failures_are_no_news_for_every_order() {
        for (s, b) in [
            (200, ""),
            (200, "<html>"),
            (500, "x"),
            (200, "{]"),
            (200, r#"{"status":"ERROR","code":121,"message":"token error"}"#),
            (200, r#"{"status":"ERROR","message":"Invalid orders parameter","error":"invalid_orders_parameter"}"#),
            (200, r#"{"status":"OK","data":{}}"#),
            (200, r#"{"status":"OK"}"#),
            (403, r#"{"status":"OK","data":[]}"#),
        ] {
            let out = outcomes(classify_check_by_order_id(s, b, &ids(&["1", "2"])));
            assert_eq!(out.len(), 2);
            assert!(out.iter().all(|o| matches!(o, CheckOutcome::NoNews { .. })), "{s} {b:?}: {out:?}");
            assert!(matches!(classify_check_by_uuid(s, b, "u").outcome, CheckOutcome::NoNews { .. }), "{s} {b:?}");
        }
    }

    #[test]
    fn check_queries_are_json_arrays() {
        assert_eq!(check_query(&ids(&["67890", "67891"]), false), "check?orders=%5B67890%2C67891%5D");
        assert_eq!(check_query(&ids(&["uuid-123"]), true), "check?orders=%5B%22uuid-123%22%5D&uuid=1");
        assert_eq!(check_query(&ids(&["0012", "A1"]), false), "check?orders=%5B%220012%22%2C%22A1%22%5D");
    }

    #[test]
    fn balance_and_catalogue() {
        let b = parse_balance(200, r#"{"balance":"5000.00","email":"a@b.c"}"#).unwrap();
        assert_eq!((b.balance.as_str(), b.account.as_deref()), ("5000.00", Some("a@b.c")));
        assert_eq!(parse_balance(200, r#"{"balance":12.5}"#).unwrap().balance, "12.5");
        assert!(matches!(
            parse_balance(200, r#"{"status":"ERROR","code":121,"message":"token error"}"#),
            Err(ProviderError::Auth(m)) if m.contains("api_token")
        ));
        assert!(matches!(
            parse_balance(200, r#"{"status":"ERROR","message":"Invalid api-token","error":"invalid_api_token"}"#),
            Err(ProviderError::Auth(m)) if m.contains("api_token")
        ));
        assert!(matches!(
            parse_balance(403, r#"{"status":"ERROR","code":123,"message":"ip"}"#),
            Err(ProviderError::Auth(m)) if m.contains("allow list")
        ));
        assert!(matches!(
            parse_balance(200, r#"{"status":"ERROR","message":"Your IP is not allowed"}"#),
            Err(ProviderError::Auth(m)) if m.contains("allow list")
        ));
        assert!(matches!(parse_balance(200, "<html>"), Err(ProviderError::WrongBaseUrl(_))));
        assert!(matches!(parse_balance(503, ""), Err(ProviderError::Unreachable(_))));
        assert!(matches!(parse_balance(200, "{}"), Err(ProviderError::Garbage(_))));
        let items = parse_catalogue(
            200,
            r#"[{"id":501,"name":"PUBG 60","price":"0.99","category_name":"PUBG","available":true,"params":["playerId"]},
                {"id":"502","name":"FF","price":1,"category_name":"FF","available":0}]"#,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!((items[0].id.as_str(), items[0].available), ("501", true));
        assert_eq!((items[1].price.as_str(), items[1].available), ("1", false));
        assert!(matches!(parse_catalogue(200, r#"{"x":1}"#), Err(ProviderError::Garbage(_))));
    }

    #[test]
    fn chunks_respect_count_and_url_length() {
        let many: Vec<String> = (0..450).map(|i| format!("{}", 1_000_000 + i)).collect();
        let chunks = check_chunks(&many);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 450);
        assert!(chunks.iter().all(|c| c.len() <= BATCH_LIMIT));
        assert_eq!(check_chunks(&many[..150]).len(), 1, "150 order ids fit one request");
        let long: Vec<String> = (0..300).map(|i| format!("{:08}-0000-4000-8000-000000000000", i)).collect();
        for c in check_chunks(&long) {
            assert!(check_query(c, false).len() <= MAX_CHECK_QUERY_BYTES + 20);
        }
        assert!(check_chunks(&[]).is_empty());
    }

    fn config() -> ProviderConfig {
        ProviderConfig {
            name: "xstor-test".into(),
            kind: ProviderKind::of(&super::xstor::KIND),
            base_url: "http://127.0.0.1:9/client/api/".into(),
            credentials: serde_json::json!({"api_token": "tok-very-secret"}),
            http: HttpSettings::default(),
            gate: None,
        }
    }

    #[test]
    fn placement_url_and_masking() {
        let x = Xstor::new(config()).unwrap();
        assert_eq!(x.reference_style(), ReferenceStyle::Uuid);
        let req = PlacementRequest {
            reference: "r-1".into(),
            player: "P 1".into(),
            extra: String::new(),
            quantity: 2,
            mapping: serde_json::json!({"product_id": 501, "player_param": "userId"}),
        };
        let d = x.describe_placement(&req);
        assert!(d.contains("http://127.0.0.1:9/client/api/newOrder/501/params?qty=2&userId=P+1&order_uuid=r-1"), "{d}");
        assert!(!d.contains("tok-very-secret") && !format!("{x:?}").contains("tok-very-secret"));
        let o = x.place(&PlacementRequest { mapping: serde_json::json!({}), ..req.clone() });
        assert!(matches!(o, PlacementOutcome::Rejected { message } if message.contains("product_id")));
        let o = x.place(&PlacementRequest { quantity: 0, ..req });
        assert!(matches!(o, PlacementOutcome::Rejected { .. }));
    }

    proptest! {
        #[test]
        fn no_byte_sequence_panics_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..256), status in 0u16..1000) {
            let body = String::from_utf8_lossy(&bytes);
            let _ = classify_placement(status, &body);
            let out = classify_check_by_order_id(status, &body, &ids(&["1", "2"]));
            prop_assert_eq!(out.len(), 2);
            let _ = classify_check_by_uuid(status, &body, "u");
            let _ = parse_balance(status, &body);
            let _ = parse_catalogue(status, &body);
        }

        #[test]
        fn json_shaped_replies_never_panic_and_come_out_clean(status_word in "[a-zA-Z]{0,8}", code in any::<i64>(), text in any::<String>()) {
            let body = serde_json::json!({"status": "OK", "data": [{"order_id": "1", "status": status_word, "pin": text, "note": text}]}).to_string();
            let out = classify_check_by_order_id(200, &body, &ids(&["1"]));
            prop_assert_eq!(out.len(), 1);
            if let CheckOutcome::Approved { pin, message } = &out[0].outcome {
                prop_assert!(!pin.clone().unwrap_or_default().chars().any(char::is_control));
                prop_assert!(!message.chars().any(char::is_control));
            }
            let err = serde_json::json!({"status": "ERROR", "code": code, "message": text}).to_string();
            if let PlacementOutcome::Rejected { message } | PlacementOutcome::Ambiguous { reason: message } = classify_placement(200, &err) {
                prop_assert!(!message.chars().any(char::is_control));
                prop_assert!(message.chars().count() <= super::super::text::MESSAGE_MAX);
            }
            let _ = parse_balance(200, &err);
        }
    }
}
