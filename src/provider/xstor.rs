//! x-stor / Barakat client API adapter (see `shared/notes/providers.md`).
//!
//! JSON over GET with an `api-token` header. Our reference travels as `order_uuid` (the
//! idempotency key) and status checks look orders up by it (`uuid=1`), many per request. Replies
//! are classified by the pure functions at the top of this file; an unexpected reply is
//! ambiguous at placement and no news at a check, never a verdict.

use super::http::{excerpt, looks_like_html, HttpClient, HttpReply, TransportError};
use super::znet::{json_text, transport_to_provider_error};
use super::*;
use serde_json::Value;
use std::collections::HashMap;

/// Most references one `check` request carries. Requests are also split so that the URL stays
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

/// `{"status":"ERROR","code":121,"message":"token error"}` as one readable sentence.
fn describe_error(v: &Value) -> (Option<i64>, String) {
    let code = v.get("code").and_then(|c| c.as_i64().or_else(|| c.as_str().and_then(|s| s.trim().parse().ok())));
    let message = json_text(v.get("message")).or_else(|| json_text(v.get("error"))).unwrap_or_default();
    let text = match (code, code.and_then(error_code_meaning)) {
        (Some(c), Some(meaning)) if message.is_empty() => format!("{c} {meaning}"),
        (Some(c), Some(meaning)) => format!("{c} {meaning} (x-stor said: {message})"),
        (Some(c), None) => format!("error {c}: {}", if message.is_empty() { "no message" } else { &message }),
        (None, _) => format!("error: {}", if message.is_empty() { "no message" } else { &message }),
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
    v.get("status").and_then(|s| s.as_str()).map(|s| s.eq_ignore_ascii_case(word)).unwrap_or(false)
}

/// One order entry of a placement or check reply, as a check outcome.
fn entry_outcome(entry: &Value) -> CheckOutcome {
    let word = json_text(entry.get("status")).unwrap_or_default();
    let note = json_text(entry.get("note")).unwrap_or_default();
    let message = if note.trim().is_empty() { word.clone() } else { note };
    match status_word(&word) {
        StatusWord::Waiting => CheckOutcome::Waiting { message },
        StatusWord::Approved => CheckOutcome::Approved {
            pin: json_text(entry.get("pin")).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
            message,
        },
        StatusWord::Cancelled => CheckOutcome::Cancelled { message },
        StatusWord::Unknown => CheckOutcome::NoNews { reason: format!("x-stor status '{}' is unknown", excerpt(&word)) },
    }
}

/// Classify a `newOrder` reply.
pub fn classify_placement(status: u16, body: &str) -> PlacementOutcome {
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
        let order_id = json_text(data.get("order_id"));
        let price = json_text(data.get("price"));
        let mut message = "accepted".to_string();
        if let Some(id) = &order_id {
            message.push_str(&format!(" as x-stor order {id}"));
        }
        if let Some(p) = price {
            message.push_str(&format!(", price {p}"));
        }
        return PlacementOutcome::Accepted { external_order_id: order_id, message, early };
    }
    if is_status(&v, "ERROR") {
        let (code, text) = describe_error(&v);
        return match code {
            // "Unknown error" says nothing about whether the order was taken.
            Some(500) => PlacementOutcome::Ambiguous { reason: format!("x-stor: {text}") },
            _ => PlacementOutcome::Rejected { message: text },
        };
    }
    PlacementOutcome::Ambiguous { reason: format!("x-stor reply not understood (HTTP {status}): '{}'", excerpt(body)) }
}

/// Classify a batch `check?...&uuid=1` reply: one outcome per reference, in order. A reference
/// missing from `data` is `NotFound`, but only when every entry says which order it is;
/// otherwise it cannot be told apart and is no news.
pub fn classify_check_many(status: u16, body: &str, references: &[String]) -> Vec<CheckOutcome> {
    let all = |o: CheckOutcome| references.iter().map(|_| o.clone()).collect();
    let v = match json_reply(status, body) {
        Ok(v) => v,
        Err(reason) => return all(CheckOutcome::NoNews { reason }),
    };
    if is_status(&v, "ERROR") {
        let (_, text) = describe_error(&v);
        return all(CheckOutcome::NoNews { reason: format!("x-stor status query failed: {text}") });
    }
    let data = match v.get("data").and_then(|d| d.as_array()) {
        Some(d) if is_status(&v, "OK") && (200..300).contains(&status) => d,
        _ => {
            return all(CheckOutcome::NoNews {
                reason: format!("x-stor status reply not understood (HTTP {status}): '{}'", excerpt(body)),
            })
        }
    };
    let mut by_ref: HashMap<&str, &Value> = HashMap::new();
    let mut unidentified = Vec::new();
    for entry in data {
        let id = json_text(entry.get("order_uuid"))
            .or_else(|| json_text(entry.get("order_id")))
            .and_then(|id| references.iter().find(|r| **r == id));
        match id {
            Some(r) => {
                by_ref.insert(r.as_str(), entry);
            }
            None => unidentified.push(entry),
        }
    }
    // One reference, one entry: the entry can only be about that order.
    if references.len() == 1 && by_ref.is_empty() && unidentified.len() == 1 {
        return vec![entry_outcome(unidentified[0])];
    }
    references
        .iter()
        .map(|r| match by_ref.get(r.as_str()) {
            Some(entry) => entry_outcome(entry),
            None if unidentified.is_empty() => {
                CheckOutcome::NotFound { message: "x-stor has no order with this order_uuid".to_string() }
            }
            None => CheckOutcome::NoNews { reason: "x-stor's reply did not say which entry is which order".to_string() },
        })
        .collect()
}

/// Classify a single-reference check reply.
pub fn classify_check(status: u16, body: &str, reference: &str) -> CheckOutcome {
    classify_check_many(status, body, &[reference.to_string()])
        .pop()
        .unwrap_or(CheckOutcome::NoNews { reason: "x-stor status reply not understood".to_string() })
}

/// The operator-facing error of an ERROR reply to a balance or catalogue call.
fn account_error(v: &Value) -> ProviderError {
    let (code, text) = describe_error(v);
    match code {
        Some(120..=123) => ProviderError::Auth(format!("x-stor refused the API token: {text}")),
        Some(130) => ProviderError::Unreachable(format!("x-stor: {text}")),
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
    let v = account_reply(status, body)?;
    // Some sites wrap the profile in {"status":"OK","data":{...}}.
    let p = v.get("data").filter(|d| d.is_object()).unwrap_or(&v);
    let balance = json_text(p.get("balance"))
        .ok_or_else(|| ProviderError::Garbage(format!("x-stor profile has no balance: '{}'", excerpt(body))))?;
    Ok(Balance { balance, debt: None, currency: json_text(p.get("currency")), account: json_text(p.get("email")) })
}

/// Parse a `products` reply: an array of products (or `{"status":"OK","data":[...]}`).
pub fn parse_catalogue(status: u16, body: &str) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
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
                Some(Value::String(s)) => !matches!(s.trim(), "0" | "false" | "no" | ""),
                _ => true,
            },
        })
        .collect())
}

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
        self.http.get(&format!("{}/client/api/{path_and_query}", self.base), &[("api-token", self.token())])
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

    /// One `check` request for a chunk of references.
    fn check_chunk(&self, references: &[String]) -> Vec<CheckOutcome> {
        let list = format!("[{}]", references.join(","));
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("orders", &list);
        q.append_pair("uuid", "1");
        match self.get(&format!("check?{}", q.finish())) {
            Ok(r) => classify_check_many(r.status, &r.body, references),
            Err(e) => {
                let o = CheckOutcome::NoNews { reason: format!("x-stor status check: {e}") };
                references.iter().map(|_| o.clone()).collect()
            }
        }
    }
}

/// Split references into request-sized chunks: at most `BATCH_LIMIT` each and a URL-encoded
/// list no longer than `MAX_CHECK_QUERY_BYTES`.
pub fn check_chunks(references: &[String]) -> Vec<&[String]> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, r) in references.iter().enumerate() {
        // Each reference costs its encoded length plus an encoded comma (3 bytes).
        let cost = url::form_urlencoded::byte_serialize(r.as_bytes()).map(str::len).sum::<usize>() + 3;
        if i > start && (i - start >= BATCH_LIMIT || bytes + cost > MAX_CHECK_QUERY_BYTES) {
            chunks.push(&references[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += cost;
    }
    if start < references.len() {
        chunks.push(&references[start..]);
    }
    chunks
}

impl Provider for Xstor {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn place(&self, req: &PlacementRequest) -> PlacementOutcome {
        let path = match Self::placement_path(req) {
            Ok(p) => p,
            Err(message) => return PlacementOutcome::Rejected { message },
        };
        match self.get(&path) {
            Ok(r) => classify_placement(r.status, &r.body),
            Err(e) => PlacementOutcome::Ambiguous { reason: format!("x-stor placement: {e}") },
        }
    }

    fn check(&self, reference: &str) -> CheckOutcome {
        self.check_chunk(&[reference.to_string()])
            .pop()
            .unwrap_or(CheckOutcome::NoNews { reason: "x-stor status reply not understood".to_string() })
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    fn check_many(&self, references: &[String]) -> Vec<CheckOutcome> {
        check_chunks(references).into_iter().flat_map(|chunk| self.check_chunk(chunk)).collect()
    }

    fn balance(&self) -> std::result::Result<Balance, ProviderError> {
        let r = self.get("profile").map_err(transport_to_provider_error)?;
        parse_balance(r.status, &r.body)
    }

    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
        let r = self.get("products").map_err(transport_to_provider_error)?;
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

    fn refs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn placement_ok_waiting_is_accepted_without_early_state() {
        let o = classify_placement(
            200,
            r#"{"status":"OK","data":{"order_id":77,"status":"wait","price":"1.10","replay_api":[],"note":""}}"#,
        );
        match o {
            PlacementOutcome::Accepted { external_order_id, early, message } => {
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
    }

    #[test]
    fn placement_errors() {
        let o = classify_placement(200, r#"{"status":"ERROR","code":109,"message":"product not found"}"#);
        assert!(
            matches!(&o, PlacementOutcome::Rejected { message } if message.contains("109") && message.contains("product not found"))
        );
        let o = classify_placement(401, r#"{"status":"ERROR","code":121,"message":"token error"}"#);
        assert!(
            matches!(&o, PlacementOutcome::Rejected { message } if message.contains("121 token error: check the provider's api_token")),
            "{o:?}"
        );
        for code in [120, 122, 123, 130, 110, 105, 106, 112, 113, 114] {
            let o = classify_placement(200, &format!(r#"{{"status":"ERROR","code":{code},"message":"m"}}"#));
            assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains(&code.to_string())), "{code}: {o:?}");
        }
        let o = classify_placement(200, r#"{"status":"ERROR","code":"500","message":"unknown"}"#);
        assert!(matches!(o, PlacementOutcome::Ambiguous { .. }), "{o:?}");
        let o = classify_placement(200, r#"{"status":"ERROR","message":"no balance"}"#);
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("no balance")));
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
        for w in ["wait", "pending", "Processing", "queued"] {
            assert_eq!(status_word(w), StatusWord::Waiting, "{w}");
        }
        for w in ["accept", "success", "OK", "done", "completed"] {
            assert_eq!(status_word(w), StatusWord::Approved, "{w}");
        }
        for w in ["reject", "failed", "rejected", "error", "cancelled", "canceled"] {
            assert_eq!(status_word(w), StatusWord::Cancelled, "{w}");
        }
        assert_eq!(status_word("refunding"), StatusWord::Unknown);
    }

    #[test]
    fn batch_check_maps_each_reference_and_missing_ones_are_not_found() {
        let body = r#"{"status":"OK","data":[
            {"order_id":"1","order_uuid":"a","status":"accept","pin":"P-1","note":""},
            {"order_id":"2","order_uuid":"b","status":"wait"},
            {"order_id":"3","order_uuid":"c","status":"reject","note":"out of stock"},
            {"order_id":"4","order_uuid":"d","status":"teleported"}]}"#;
        let out = classify_check_many(200, body, &refs(&["c", "a", "x", "b", "d"]));
        assert_eq!(out[0], CheckOutcome::Cancelled { message: "out of stock".into() });
        assert_eq!(out[1], CheckOutcome::Approved { pin: Some("P-1".into()), message: "accept".into() });
        assert!(matches!(out[2], CheckOutcome::NotFound { .. }));
        assert_eq!(out[3], CheckOutcome::Waiting { message: "wait".into() });
        assert!(matches!(out[4], CheckOutcome::NoNews { .. }));
        // Approved without a pin (a top-up) is still approved.
        let out = classify_check(200, r#"{"status":"OK","data":[{"order_uuid":"a","status":"success"}]}"#, "a");
        assert_eq!(out, CheckOutcome::Approved { pin: None, message: "success".into() });
    }

    #[test]
    fn batch_check_with_unidentified_entries_is_not_a_verdict() {
        let body = r#"{"status":"OK","data":[{"status":"accept","pin":"P"}]}"#;
        assert!(matches!(classify_check(200, body, "a"), CheckOutcome::Approved { .. }));
        let out = classify_check_many(200, body, &refs(&["a", "b"]));
        assert!(out.iter().all(|o| matches!(o, CheckOutcome::NoNews { .. })), "{out:?}");
        let out = classify_check_many(200, r#"{"status":"OK","data":[]}"#, &refs(&["a", "b"]));
        assert!(out.iter().all(|o| matches!(o, CheckOutcome::NotFound { .. })));
    }

    #[test]
    fn check_failures_are_no_news_for_every_reference() {
        for (s, b) in [
            (200, ""),
            (200, "<html>"),
            (500, "x"),
            (200, "{]"),
            (200, r#"{"status":"ERROR","code":121,"message":"token error"}"#),
            (200, r#"{"status":"OK","data":{}}"#),
            (403, r#"{"status":"OK","data":[]}"#),
        ] {
            let out = classify_check_many(s, b, &refs(&["a", "b"]));
            assert_eq!(out.len(), 2);
            assert!(out.iter().all(|o| matches!(o, CheckOutcome::NoNews { .. })), "{s} {b:?}: {out:?}");
        }
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
            parse_balance(403, r#"{"status":"ERROR","code":123,"message":"ip"}"#),
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
        let many: Vec<String> = (0..450).map(|i| format!("{:08}-0000-4000-8000-000000000000", i)).collect();
        let chunks = check_chunks(&many);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 450);
        assert!(chunks.iter().all(|c| c.len() <= BATCH_LIMIT && c.len() * 39 <= MAX_CHECK_QUERY_BYTES));
        assert_eq!(check_chunks(&many[..150]).len(), 1, "150 uuids fit one request");
        assert!(check_chunks(&[]).is_empty());
    }

    fn config() -> ProviderConfig {
        ProviderConfig {
            name: "xstor-test".into(),
            kind: ProviderKind::Xstor,
            base_url: "http://127.0.0.1:9/client/api/".into(),
            credentials: serde_json::json!({"api_token": "tok-very-secret"}),
            http: HttpSettings::default(),
        }
    }

    #[test]
    fn placement_url_and_masking() {
        let x = Xstor::new(config()).unwrap();
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
            let out = classify_check_many(status, &body, &refs(&["a", "b"]));
            prop_assert_eq!(out.len(), 2);
            let _ = parse_balance(status, &body);
            let _ = parse_catalogue(status, &body);
        }

        #[test]
        fn json_shaped_replies_never_panic(status_word in "[a-zA-Z]{0,8}", code in any::<i64>(), pin in "[ -~]{0,10}") {
            let body = serde_json::json!({"status": "OK", "data": [{"order_uuid": "a", "status": status_word, "pin": pin}]}).to_string();
            prop_assert_eq!(classify_check_many(200, &body, &refs(&["a"])).len(), 1);
            let err = serde_json::json!({"status": "ERROR", "code": code, "message": pin}).to_string();
            let _ = classify_placement(200, &err);
            let _ = parse_balance(200, &err);
        }
    }
}
