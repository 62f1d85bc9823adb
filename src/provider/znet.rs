//! Znet dealer API adapter (see `shared/notes/providers.md`).
//!
//! Every call is `GET {base}/servis/<name>.php` with `kod` and `sifre` in the query, and every
//! reply is classified by the pure functions at the top of this file. The quirks that matter:
//! an empty body is an authentication/configuration problem (unknown dealer, API off, IP not
//! allowed), an HTML body means the base URL points at a web page, `3|...` on a status check is a
//! failed query (not a cancellation), and anything unrecognised is garbage: ambiguous at
//! placement, no news at a check, never a verdict.

use super::http::{excerpt, looks_like_html, HttpClient, HttpReply, TransportError};
use super::*;

/// What an empty Znet reply means, in words an operator can act on.
pub const EMPTY_REPLY_CAUSES: &str = "Znet answered with an empty reply, which means one of three things: \
(1) the dealer code (kod) or password (sifre) is unknown to the dealer site, \
(2) API access is switched off for this dealer, or \
(3) this machine's IP address is not on the dealer's allow list";

const WRONG_BASE_URL: &str = "Znet answered with an HTML page: the base URL points at a web page, not the dealer API \
(set base_url to the dealer site root, e.g. http://bayi.example.com, with or without /servis)";

/// The shape of a reply body before its fields are read.
enum Body {
    Empty,
    Html,
    Text,
}

fn body_shape(body: &str) -> Body {
    let t = body.trim_start_matches('\u{feff}').trim();
    if t.is_empty() {
        Body::Empty
    } else if looks_like_html(t) {
        Body::Html
    } else {
        Body::Text
    }
}

fn http_problem(status: u16, body: &str) -> String {
    let text = excerpt(body);
    if text.is_empty() {
        format!("Znet answered HTTP {status} with no text")
    } else {
        format!("Znet answered HTTP {status}: {text}")
    }
}

/// The reason a non-2xx, empty or HTML reply carries, or `None` for a 2xx text reply.
fn unusable(status: u16, body: &str) -> Option<String> {
    if !(200..300).contains(&status) {
        return Some(http_problem(status, body));
    }
    match body_shape(body) {
        Body::Empty => Some(EMPTY_REPLY_CAUSES.to_string()),
        Body::Html => Some(WRONG_BASE_URL.to_string()),
        Body::Text => None,
    }
}

fn garbage(what: &str, body: &str) -> String {
    format!("Znet {what} reply not understood: '{}'", excerpt(body))
}

/// The `|` fields of a usable reply, or the reason it is not usable.
fn reply_fields(status: u16, body: &str) -> std::result::Result<(&str, Vec<&str>), String> {
    if let Some(reason) = unusable(status, body) {
        return Err(reason);
    }
    let text = body.trim_start_matches('\u{feff}').trim();
    Ok((text, text.split('|').collect()))
}

/// Classify a `pin_ekle.php` reply. Only `OK|cost|remaining` is an acceptance and only `3|text`
/// a definite rejection; everything else leaves the order's existence unknown.
pub fn classify_placement(status: u16, body: &str) -> PlacementOutcome {
    let (text, fields) = match reply_fields(status, body) {
        Ok(f) => f,
        Err(reason) => return PlacementOutcome::Ambiguous { reason },
    };
    match fields.as_slice() {
        ["OK", cost, remaining, ..] => PlacementOutcome::Accepted {
            external_order_id: None,
            message: format!("accepted: dealer cost {}, remaining balance {}", cost.trim(), remaining.trim()),
            early: None,
        },
        ["3", rest @ ..] => {
            let text = rest.join("|").trim().to_string();
            PlacementOutcome::Rejected {
                message: if text.is_empty() { "Znet rejected the order without a reason".to_string() } else { text },
            }
        }
        _ => PlacementOutcome::Ambiguous { reason: garbage("placement", text) },
    }
}

/// True when a failed status query's text says the reference does not exist.
fn says_not_found(text: &str) -> bool {
    let lower = text.to_lowercase();
    lower.contains("bulunamad")
        || lower.contains("bulunmad")
        || lower.contains("not found")
        || lower.contains("no such")
        || lower.split(|c: char| !c.is_alphanumeric()).any(|w| w == "yok")
}

/// Classify a `pin_kontrol.php` reply: `OK|state|pin|text...`, or `3|text` (a failed query).
pub fn classify_check(status: u16, body: &str) -> CheckOutcome {
    let (text, fields) = match reply_fields(status, body) {
        Ok(f) => f,
        Err(reason) => return CheckOutcome::NoNews { reason },
    };
    match fields.as_slice() {
        ["OK", state, pin, rest @ ..] => {
            let message = rest.join("|").trim().to_string();
            let pin = pin.trim();
            match state.trim() {
                "1" => CheckOutcome::Waiting { message: or(message, "waiting") },
                "2" => CheckOutcome::Approved {
                    pin: if pin.is_empty() { None } else { Some(pin.to_string()) },
                    message: or(message, "approved"),
                },
                "3" => CheckOutcome::Cancelled { message: or(message, "cancelled by Znet") },
                _ => CheckOutcome::NoNews { reason: garbage("status", text) },
            }
        }
        ["3", rest @ ..] => {
            let message = rest.join("|").trim().to_string();
            if says_not_found(&message) {
                CheckOutcome::NotFound { message }
            } else {
                CheckOutcome::NoNews { reason: format!("Znet status query failed: {}", or(message, "no reason given")) }
            }
        }
        _ => CheckOutcome::NoNews { reason: garbage("status", text) },
    }
}

fn or(text: String, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}

/// Turn a reply that cannot be used into the operator-facing error.
fn balance_or_catalogue_error(status: u16, body: &str) -> Option<ProviderError> {
    if !(200..300).contains(&status) {
        return Some(if status >= 500 {
            ProviderError::Unreachable(format!("{}; the dealer site has a problem, try again later", http_problem(status, body)))
        } else {
            ProviderError::Refused(http_problem(status, body))
        });
    }
    match body_shape(body) {
        Body::Empty => Some(ProviderError::Auth(EMPTY_REPLY_CAUSES.to_string())),
        Body::Html => Some(ProviderError::WrongBaseUrl(WRONG_BASE_URL.to_string())),
        Body::Text => None,
    }
}

fn is_amount(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.replace(',', ".").parse::<f64>().map(|v| v.is_finite()).unwrap_or(false)
}

/// Parse a `bakiye_kontrol.php` reply: `OK|balance` or `OK|balance|debt`; `<code>|<text>` is a
/// refusal with the dealer's words.
pub fn parse_balance(status: u16, body: &str) -> std::result::Result<Balance, ProviderError> {
    if let Some(e) = balance_or_catalogue_error(status, body) {
        return Err(e);
    }
    let text = body.trim_start_matches('\u{feff}').trim();
    let fields: Vec<&str> = text.split('|').map(str::trim).collect();
    match fields.as_slice() {
        ["OK", balance] if is_amount(balance) => {
            Ok(Balance { balance: balance.to_string(), debt: None, currency: Some("TRY".to_string()), account: None })
        }
        ["OK", balance, debt] if is_amount(balance) => Ok(Balance {
            balance: balance.to_string(),
            debt: if debt.is_empty() { None } else { Some(debt.to_string()) },
            currency: Some("TRY".to_string()),
            account: None,
        }),
        [code, rest @ ..] if !rest.is_empty() && !code.is_empty() && code.chars().all(|c| c.is_ascii_digit()) => {
            Err(ProviderError::Refused(format!("Znet refused the balance call (code {code}): {}", rest.join("|"))))
        }
        _ => Err(ProviderError::Garbage(garbage("balance", text))),
    }
}

/// A JSON value that may be a string or a number, as text.
pub(crate) fn json_text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parse a `pin_listesi.php` reply: `{"success":true,"result":[...],"error":null}`.
pub fn parse_catalogue(status: u16, body: &str) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
    if let Some(e) = balance_or_catalogue_error(status, body) {
        return Err(e);
    }
    let text = body.trim_start_matches('\u{feff}').trim();
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| ProviderError::Garbage(garbage("catalogue", text)))?;
    if v.get("success").and_then(|s| s.as_bool()) != Some(true) {
        let reason = json_text(v.get("error")).unwrap_or_else(|| excerpt(text));
        return Err(ProviderError::Refused(format!("Znet refused the catalogue call: {reason}")));
    }
    let Some(items) = v.get("result").and_then(|r| r.as_array()) else {
        return Err(ProviderError::Garbage(garbage("catalogue", text)));
    };
    Ok(items
        .iter()
        .map(|i| {
            let game = json_text(i.get("oyun_adi")).unwrap_or_default();
            let name = json_text(i.get("adi")).unwrap_or_default();
            CatalogueItem {
                id: json_text(i.get("oyun_bilgi_id")).unwrap_or_default(),
                name: match (game.is_empty(), name.is_empty()) {
                    (false, false) if !name.contains(&game) => format!("{game}: {name}"),
                    (_, false) => name,
                    _ => game,
                },
                price: json_text(i.get("fiyat")).unwrap_or_default(),
                detail: json_text(i.get("kupur")).map(|k| format!("kupur {k}")).unwrap_or_default(),
                available: true,
            }
        })
        .collect())
}

/// The Znet adapter.
pub struct Znet {
    config: ProviderConfig,
    http: HttpClient,
    /// `{base}/servis`, without a trailing slash.
    servis: String,
}

impl std::fmt::Debug for Znet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Znet").field("config", &self.config).finish()
    }
}

/// The `/servis` URL for a base given with or without `/servis` and trailing slashes.
pub fn servis_url(base: &str) -> String {
    let trimmed = base.trim().trim_end_matches('/');
    if trimmed.ends_with("/servis") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/servis")
    }
}

impl Znet {
    pub fn new(config: ProviderConfig) -> Result<Znet> {
        url::Url::parse(config.base_url.trim()).map_err(|e| {
            Error::invalid(format!("provider {} has a base URL that is not a URL ({e})", config.name))
                .with_hint("set base_url to the dealer site root, e.g. http://bayi.example.com")
        })?;
        Ok(Znet { http: HttpClient::new(&config), servis: servis_url(&config.base_url), config })
    }

    fn credential(&self, field: &str) -> &str {
        self.config.credentials.get(field).and_then(|v| v.as_str()).unwrap_or("")
    }

    fn url(&self, call: &str, params: &[(&str, &str)]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("kod", self.credential("kod"));
        q.append_pair("sifre", self.credential("sifre"));
        for (k, v) in params {
            q.append_pair(k, v);
        }
        format!("{}/{call}.php?{}", self.servis, q.finish())
    }

    /// The full `pin_ekle` URL, or the reason this placement cannot be sent at all.
    fn placement_url(&self, req: &PlacementRequest) -> std::result::Result<String, String> {
        let (oyun, kupur) = Self::placement_params(req)?;
        let params = [
            ("oyun", oyun.as_str()),
            ("kupur", kupur.as_str()),
            ("referans", req.reference.as_str()),
            // Not ours to give; every known integration sends it empty.
            ("musteri_tel", ""),
            ("oyuncu_bilgi", req.player.as_str()),
        ];
        Ok(self.url("pin_ekle", &params))
    }

    fn call(&self, call: &str, params: &[(&str, &str)]) -> std::result::Result<HttpReply, TransportError> {
        self.http.get(&self.url(call, params), &[])
    }

    /// The placement parameters, or the reason this placement cannot be sent at all.
    fn placement_params(req: &PlacementRequest) -> std::result::Result<(String, String), String> {
        if req.quantity != 1 {
            return Err(format!(
                "Znet cannot place a quantity of {} (its API has no quantity parameter); only quantity 1 can go to a Znet provider",
                req.quantity
            ));
        }
        let oyun = json_text(req.mapping.get("oyun")).filter(|s| !s.trim().is_empty());
        let kupur = json_text(req.mapping.get("kupur")).filter(|s| !s.trim().is_empty());
        match (oyun, kupur) {
            (Some(o), Some(k)) => Ok((o, k)),
            _ => {
                Err("the package mapping for this Znet provider needs \"oyun\" and \"kupur\"; fix the mapping in the setup file"
                    .to_string())
            }
        }
    }
}

impl Provider for Znet {
    fn config(&self) -> &ProviderConfig {
        &self.config
    }

    fn place(&self, req: &PlacementRequest) -> PlacementOutcome {
        let url = match self.placement_url(req) {
            Ok(u) => u,
            Err(message) => return PlacementOutcome::Rejected { message },
        };
        // Bodies come back scrubbed of secrets from the HTTP client.
        match self.http.get(&url, &[]) {
            Ok(r) => classify_placement(r.status, &r.body),
            Err(e) => PlacementOutcome::Ambiguous { reason: format!("Znet placement: {e}") },
        }
    }

    fn check(&self, reference: &str) -> CheckOutcome {
        match self.call("pin_kontrol", &[("tahsilat_api_islem_id", reference)]) {
            Ok(r) => classify_check(r.status, &r.body),
            Err(e) => CheckOutcome::NoNews { reason: format!("Znet status check: {e}") },
        }
    }

    fn balance(&self) -> std::result::Result<Balance, ProviderError> {
        let r = self.call("bakiye_kontrol", &[]).map_err(transport_to_provider_error)?;
        parse_balance(r.status, &r.body)
    }

    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
        let r = self.call("pin_listesi", &[]).map_err(transport_to_provider_error)?;
        parse_catalogue(r.status, &r.body)
    }

    fn describe_placement(&self, req: &PlacementRequest) -> String {
        match self.placement_url(req) {
            Ok(url) => format!("GET {}", self.http.mask(&url)),
            Err(message) => format!("nothing would be sent: {message}"),
        }
    }
}

/// A transport failure on a balance or catalogue call, with what to look at.
pub(crate) fn transport_to_provider_error(e: TransportError) -> ProviderError {
    match e {
        TransportError::TooLarge(_) => ProviderError::Garbage(e.describe()),
        TransportError::Refused => ProviderError::Unreachable(
            "connection refused: nothing answers at the base URL (check base_url and that the provider is up)".to_string(),
        ),
        other => ProviderError::Unreachable(format!("{other}; check the network and base_url, or try again later")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn accepted(o: &PlacementOutcome) -> bool {
        matches!(o, PlacementOutcome::Accepted { .. })
    }
    fn ambiguous(o: &PlacementOutcome) -> bool {
        matches!(o, PlacementOutcome::Ambiguous { .. })
    }

    #[test]
    fn placement_ok_is_accepted() {
        let o = classify_placement(200, "OK|10.12|980.88");
        assert!(accepted(&o), "{o:?}");
        if let PlacementOutcome::Accepted { message, early, external_order_id } = o {
            assert!(message.contains("10.12") && message.contains("980.88"));
            assert_eq!(early, None);
            assert_eq!(external_order_id, None);
        }
        assert!(accepted(&classify_placement(200, "\u{feff}OK|10.12|980.88\r\n")));
    }

    #[test]
    fn placement_3_is_a_definite_rejection_with_turkish_text() {
        assert_eq!(
            classify_placement(200, "3|Kupur Bilgisi Bulunamadı"),
            PlacementOutcome::Rejected { message: "Kupur Bilgisi Bulunamadı".into() }
        );
        assert_eq!(classify_placement(200, "3|a|b"), PlacementOutcome::Rejected { message: "a|b".into() });
        assert!(matches!(classify_placement(200, "3|"), PlacementOutcome::Rejected { .. }));
    }

    #[test]
    fn placement_empty_html_5xx_4xx_and_garbage_are_ambiguous() {
        let empty = classify_placement(200, "");
        assert!(ambiguous(&empty));
        if let PlacementOutcome::Ambiguous { reason } = empty {
            assert!(reason.contains("allow list") && reason.contains("switched off"), "{reason}");
        }
        let html = classify_placement(200, "<html><body>Bayi</body></html>");
        assert!(matches!(&html, PlacementOutcome::Ambiguous { reason } if reason.contains("base URL")), "{html:?}");
        assert!(ambiguous(&classify_placement(500, "OK|1|2")));
        let four = classify_placement(403, "IP engellendi");
        assert!(
            matches!(&four, PlacementOutcome::Ambiguous { reason } if reason.contains("IP engellendi") && reason.contains("403"))
        );
        for g in ["OK", "OK|10.12", "ok|1|2", "1|Yetersiz bakiye", "garbage", "\u{fffd}\u{fffd}", "{\"a\":1}", "|||"] {
            assert!(ambiguous(&classify_placement(200, g)), "{g:?}");
        }
    }

    #[test]
    fn check_states() {
        assert_eq!(classify_check(200, "OK|1| |Beklemede"), CheckOutcome::Waiting { message: "Beklemede".into() });
        assert_eq!(
            classify_check(200, "OK|2|ABCD-1234|Onaylandı"),
            CheckOutcome::Approved { pin: Some("ABCD-1234".into()), message: "Onaylandı".into() }
        );
        assert_eq!(
            classify_check(200, "OK|2|P|Onay|lı"),
            CheckOutcome::Approved { pin: Some("P".into()), message: "Onay|lı".into() }
        );
        assert_eq!(classify_check(200, "OK|2| |Onaylandı"), CheckOutcome::Approved { pin: None, message: "Onaylandı".into() });
        assert_eq!(classify_check(200, "OK|3| |İptal edildi"), CheckOutcome::Cancelled { message: "İptal edildi".into() });
        assert_eq!(classify_check(200, "OK|1| "), CheckOutcome::Waiting { message: "waiting".into() });
    }

    #[test]
    fn check_3_is_a_failed_query_unless_it_says_not_found() {
        assert!(matches!(classify_check(200, "3|Sipariş bulunamadı"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|SİPARİŞ BULUNAMADI"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|order not found"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|Kayıt yok"), CheckOutcome::NotFound { .. }));
        assert!(matches!(classify_check(200, "3|Sistem meşgul"), CheckOutcome::NoNews { .. }));
        assert!(matches!(classify_check(200, "3|"), CheckOutcome::NoNews { .. }));
    }

    #[test]
    fn check_garbage_empty_html_and_http_errors_are_no_news() {
        for (s, b) in [
            (200, ""),
            (200, "<!DOCTYPE html><p>"),
            (500, "OK|2|PIN|x"),
            (404, "Not Found"),
            (200, "OK|9| |x"),
            (200, "OK|2"),
            (200, "OK"),
            (200, "2|x"),
            (200, "\u{fffd}garbage"),
        ] {
            assert!(matches!(classify_check(s, b), CheckOutcome::NoNews { .. }), "{s} {b:?}");
        }
    }

    #[test]
    fn balance_shapes() {
        let b = parse_balance(200, "OK|12755.23").unwrap();
        assert_eq!((b.balance.as_str(), b.debt.as_deref()), ("12755.23", None));
        let b = parse_balance(200, "OK|12755.23|150.00").unwrap();
        assert_eq!(b.debt.as_deref(), Some("150.00"));
        assert!(matches!(parse_balance(200, ""), Err(ProviderError::Auth(m)) if m.contains("allow list")));
        assert!(matches!(parse_balance(200, "<html>"), Err(ProviderError::WrongBaseUrl(_))));
        assert!(matches!(parse_balance(200, "2|Bayi pasif"), Err(ProviderError::Refused(m)) if m.contains("Bayi pasif")));
        assert!(matches!(parse_balance(502, "Bad gateway"), Err(ProviderError::Unreachable(m)) if m.contains("Bad gateway")));
        assert!(matches!(parse_balance(403, "Yasak"), Err(ProviderError::Refused(m)) if m.contains("Yasak")));
        for g in ["OK|abc", "OK", "hello", "OK|1|2|3"] {
            assert!(matches!(parse_balance(200, g), Err(ProviderError::Garbage(_))), "{g}");
        }
    }

    #[test]
    fn catalogue_shapes() {
        let body = r#"{"success":true,"result":[{"id":1,"adi":"60 UC","aciklama":"","oyun_id":"3","oyun_adi":"PUBG Mobile","fiyat":"10.12","kupur":60,"oyun_bilgi_id":7001}],"error":null}"#;
        let items = parse_catalogue(200, body).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].id, "7001");
        assert_eq!(items[0].price, "10.12");
        assert_eq!(items[0].name, "PUBG Mobile: 60 UC");
        assert!(items[0].detail.contains("60"));
        assert!(matches!(
            parse_catalogue(200, r#"{"success":false,"result":null,"error":"Yetkisiz erişim"}"#),
            Err(ProviderError::Refused(m)) if m.contains("Yetkisiz")
        ));
        assert!(matches!(parse_catalogue(200, ""), Err(ProviderError::Auth(_))));
        assert!(matches!(parse_catalogue(200, "<html>"), Err(ProviderError::WrongBaseUrl(_))));
        assert!(matches!(parse_catalogue(200, "{\"success\":true}"), Err(ProviderError::Garbage(_))));
        assert!(matches!(parse_catalogue(200, "[1,2"), Err(ProviderError::Garbage(_))));
    }

    #[test]
    fn base_url_with_or_without_servis() {
        for b in ["http://h", "http://h/", "http://h/servis", "http://h/servis/", " http://h/servis// "] {
            assert_eq!(servis_url(b), "http://h/servis", "{b}");
        }
        assert_eq!(servis_url("http://h/bayi/"), "http://h/bayi/servis");
    }

    fn config(kod: &str, sifre: &str) -> ProviderConfig {
        ProviderConfig {
            name: "znet-test".into(),
            kind: ProviderKind::Znet,
            // Nothing listens on port 9: a placement that got as far as the network would be
            // ambiguous, not rejected.
            base_url: "http://127.0.0.1:9".into(),
            credentials: serde_json::json!({"kod": kod, "sifre": sifre}),
            http: HttpSettings::default(),
        }
    }

    fn request(quantity: i32, mapping: serde_json::Value) -> PlacementRequest {
        PlacementRequest { reference: "ref-1".into(), player: "p1".into(), extra: String::new(), quantity, mapping }
    }

    #[test]
    fn quantity_other_than_one_is_rejected_before_any_call() {
        let z = Znet::new(config("bayi1", "sifre-xyz")).unwrap();
        let o = z.place(&request(2, serde_json::json!({"oyun": "7001", "kupur": "60"})));
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("quantity")), "{o:?}");
        let o = z.place(&request(1, serde_json::json!({"oyun": 7001})));
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("kupur")), "{o:?}");
    }

    #[test]
    fn password_is_masked_in_descriptions_and_debug() {
        let z = Znet::new(config("bayi1", "sifre-xyz")).unwrap();
        let d = z.describe_placement(&request(1, serde_json::json!({"oyun": 7001, "kupur": "60"})));
        assert!(d.contains("pin_ekle.php") && d.contains("oyun=7001") && d.contains("referans=ref-1"), "{d}");
        assert!(!d.contains("sifre-xyz"), "{d}");
        assert!(!format!("{z:?}").contains("sifre-xyz"));
    }

    proptest! {
        #[test]
        fn no_byte_sequence_panics_a_parser(bytes in proptest::collection::vec(any::<u8>(), 0..256), status in 0u16..1000) {
            let body = String::from_utf8_lossy(&bytes);
            let _ = classify_placement(status, &body);
            let _ = classify_check(status, &body);
            let _ = parse_balance(status, &body);
            let _ = parse_catalogue(status, &body);
        }

        #[test]
        fn pipe_shaped_text_never_panics(fields in proptest::collection::vec("[A-Za-z0-9 ıİşŞ|.]{0,12}", 0..6), status in 0u16..1000) {
            let body = fields.join("|");
            let _ = classify_placement(status, &body);
            let _ = classify_check(status, &body);
            let _ = parse_balance(status, &body);
        }
    }
}
