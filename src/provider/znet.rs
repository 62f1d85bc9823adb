//! Znet dealer API adapter (see `shared/notes/providers.md`).
//!
//! Every call is `GET {base}/servis/<name>.php` with `kod` and `sifre` in the query, and every
//! reply is classified by the pure functions at the top of this file. What the adapter relies on,
//! all from the vendor's document and the integration notes:
//!
//! - **References are numbers.** `referans` (and `tahsilat_api_islem_id` at a status check) is
//!   the dealer's numeric unique id; letters or dashes are never sent (a placement with such a
//!   reference is refused before any call). orderctl's Znet references are
//!   `epoch_ms * 100000 + (sequence % 100000)`: 18 digits, no leading zero, unique as long as
//!   one millisecond sees fewer than 100000 references (see [`super::new_reference`]).
//! - **Placement.** `OK|<cost>|<remaining>` (two amounts) is an acceptance. Every other
//!   `<digits>|<text>` is an error with that code (`{error_code}|{error_message}`): `4|…` and
//!   `OK|8|… Daha Önce Gönderildi` say the reference was placed before
//!   ([`PlacementOutcome::SentBefore`]); any other code is a definite rejection, its message
//!   `<code>: <text>`. Anything else (an empty body = unknown dealer, API off or IP not allowed;
//!   an HTML page = wrong base URL; other text) leaves the order's existence unknown.
//! - **Status.** `OK|<state>|<pin>|<text…>`: 1 waiting, 2 approved, 3 cancelled; an empty PIN
//!   field is a space or ` - `. A `<code>|<text>` reply is a failed query: "not found" only when
//!   the text says the order or reference is not found (`3|Sipariş bulunamadı`), never for a
//!   dealer or login problem (`3|Bayi bulunamadı`); otherwise no news.
//! - **Balance** `OK|<balance>` or `OK|<balance>|<debt>`; `<code>|<text>` or `ERROR|<text>` is a
//!   refusal. **Catalogue** is JSON `{"success": true, "result": [...]}` with string values.
//!
//! Every text that leaves the adapter has passed [`super::text::clean`].

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

/// True for a Znet error code: one or more ASCII digits.
fn is_code(field: &str) -> bool {
    let f = field.trim();
    !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit())
}

/// Lower case with the Turkish letters folded to ASCII, so `Önce`, `ÖNCE` and `Once` compare
/// alike (Turkish sites are not consistent about diacritics or case).
fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ı' | 'İ' | 'I' => 'i',
            'ö' | 'Ö' => 'o',
            'ü' | 'Ü' => 'u',
            'ş' | 'Ş' => 's',
            'ç' | 'Ç' => 'c',
            'ğ' | 'Ğ' => 'g',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// True when a text says "this was sent before" (`Bu İşlem Daha Önce Gönderildi`,
/// `Daha Önce Gönderilmiş`).
fn says_sent_before(text: &str) -> bool {
    fold(text).contains("daha once gonderil")
}

/// `<code>: <text>`, or a sentence when the provider gave no text.
fn coded(code: &str, text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        format!("{}: Znet gave no reason", code.trim())
    } else {
        format!("{}: {text}", code.trim())
    }
}

/// Classify a `pin_ekle.php` reply (see the module doc).
pub fn classify_placement(status: u16, body: &str) -> PlacementOutcome {
    classify_placement_raw(status, body).cleaned()
}

fn classify_placement_raw(status: u16, body: &str) -> PlacementOutcome {
    let (text, fields) = match reply_fields(status, body) {
        Ok(f) => f,
        Err(reason) => return PlacementOutcome::Ambiguous { reason },
    };
    match fields.as_slice() {
        ["OK", cost, remaining, rest @ ..] if is_amount(cost) && is_amount(remaining) => {
            // Cost and balance are dealer data: fields of their own, never in the message (it
            // reaches the order's history, which a tenant reads).
            let mut message = "accepted".to_string();
            let extra = rest.join("|");
            if !extra.trim().is_empty() {
                message.push_str(&format!(" ({})", extra.trim()));
            }
            let balance = rust_decimal::Decimal::from_str_exact(remaining.trim()).ok();
            PlacementOutcome::Accepted { external_order_id: None, message, early: None, cost: super::exact_cost(cost), balance }
        }
        // `OK|8|Bu İşlem Daha Önce Gönderildi`: "OK" here only means the call went through.
        ["OK", code, rest @ ..] if is_code(code) && says_sent_before(&rest.join("|")) => {
            PlacementOutcome::SentBefore { message: coded(code, &rest.join("|")) }
        }
        [code, rest @ ..] if code.trim() == "4" && !rest.is_empty() => {
            PlacementOutcome::SentBefore { message: coded(code, &rest.join("|")) }
        }
        [code, rest @ ..] if is_code(code) && !rest.is_empty() => {
            PlacementOutcome::Rejected { message: coded(code, &rest.join("|")) }
        }
        _ => PlacementOutcome::Ambiguous { reason: garbage("placement", text) },
    }
}

/// True when a failed status query's text says the *order* (reference, record, transaction)
/// does not exist. A text about the dealer, the login or the API (`Bayi bulunamadı`: dealer not
/// found) is not about the order and never counts, nor does a bare "not found" that names no
/// subject.
fn says_order_not_found(text: &str) -> bool {
    let folded = fold(text);
    let words: Vec<&str> = folded.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let any = |prefixes: &[&str]| words.iter().any(|w| prefixes.iter().any(|p| w.starts_with(p)));
    const NOT_ORDER: &[&str] = &[
        "bayi",
        "dealer",
        "kullanici",
        "user",
        "sifre",
        "parola",
        "password",
        "yetki",
        "auth",
        "login",
        "giris",
        "hesap",
        "account",
        "credential",
        "token",
        "api",
        "servis",
        "service",
        "oyun",
        "kupur",
        "urun",
        "product",
    ];
    if any(NOT_ORDER) || words.iter().any(|w| matches!(*w, "ip" | "kod")) {
        return false;
    }
    const ORDER: &[&str] = &["siparis", "islem", "referans", "kayit", "order", "reference", "record", "transaction", "tahsilat"];
    let missing = any(&["bulunamad", "bulunmad", "bulunmuyor", "yok"])
        || folded.contains("not found")
        || folded.contains("no such")
        || folded.contains("does not exist")
        || folded.contains("mevcut degil");
    missing && any(ORDER)
}

/// Classify a `pin_kontrol.php` reply: `OK|state|pin|text...`, or `<code>|text` (a failed query).
pub fn classify_check(status: u16, body: &str) -> CheckOutcome {
    classify_check_raw(status, body).cleaned()
}

fn classify_check_raw(status: u16, body: &str) -> CheckOutcome {
    let (text, fields) = match reply_fields(status, body) {
        Ok(f) => f,
        Err(reason) => return CheckOutcome::failed(reason),
    };
    match fields.as_slice() {
        ["OK", state, pin, rest @ ..] => {
            let message = rest.join("|").trim().to_string();
            // The empty PIN field is a space or ` - `.
            let pin = pin.trim();
            let pin = if pin.is_empty() || pin == "-" { None } else { Some(pin.to_string()) };
            match state.trim() {
                "1" => CheckOutcome::Waiting { message: or(message, "waiting") },
                "2" => CheckOutcome::Approved { pin, message: or(message, "approved") },
                "3" => CheckOutcome::Cancelled { message: or(message, "cancelled by Znet") },
                _ => CheckOutcome::failed(garbage("status", text)),
            }
        }
        [code, rest @ ..] if is_code(code) && !rest.is_empty() => {
            let message = coded(code, &rest.join("|"));
            if says_order_not_found(&rest.join("|")) {
                CheckOutcome::NotFound { message }
            } else {
                CheckOutcome::no_verdict(format!("Znet status query failed: {message}"))
            }
        }
        _ => CheckOutcome::failed(garbage("status", text)),
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

/// Parse a `bakiye_kontrol.php` reply: `OK|balance` or `OK|balance|debt`; `<code>|<text>` or
/// `ERROR|<text>` is a refusal with the dealer's words.
pub fn parse_balance(status: u16, body: &str) -> std::result::Result<Balance, ProviderError> {
    cleaned_balance(parse_balance_raw(status, body))
}

fn parse_balance_raw(status: u16, body: &str) -> std::result::Result<Balance, ProviderError> {
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
        [code, rest @ ..] if !rest.is_empty() && is_code(code) => {
            Err(ProviderError::Refused(format!("Znet refused the balance call (code {code}): {}", rest.join("|"))))
        }
        ["ERROR", rest @ ..] if !rest.is_empty() => Err(ProviderError::Refused(format!(
            "Znet refused the balance call: {} (check the dealer code and password)",
            rest.join("|")
        ))),
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
    cleaned_catalogue(parse_catalogue_raw(status, body))
}

fn parse_catalogue_raw(status: u16, body: &str) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
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

/// The Znet kind, as `provider::kind` lists it.
pub const KIND: super::kind::KindSpec = super::kind::KindSpec {
    name: "znet",
    credential_fields: &["kod", "sifre"],
    required_mapping_fields: &["oyun", "kupur"],
    reference_style: ReferenceStyle::Numeric,
    auth_hint: "check kod and sifre in the setup file, ask the dealer to switch API access on for this dealer, \
                and ask them to allow this machine's public IP address",
    base_url_hint: "set base_url to the dealer site root (e.g. http://bayi.example.com); /servis is optional",
    // A catalogue entry is a game (`oyun_bilgi_id`, the mapping's `oyun`) in one denomination (`kupur`).
    mapping_key: |m| Some(format!("{}/{}", json_text(m.get("oyun"))?.trim(), json_text(m.get("kupur"))?.trim())),
    // The catalogue's `detail` is "kupur <kupur>" (`parse_catalogue`).
    item_key: |i| format!("{}/{}", i.id.trim(), i.detail.trim().trim_start_matches("kupur").trim()),
    build: |config| Ok(Box::new(Znet::new(config)?)),
};

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
        if !ReferenceStyle::Numeric.accepts(&req.reference) {
            return Err(format!(
                "Znet takes only numeric references (up to {NUMERIC_REFERENCE_MAX_DIGITS} digits, no leading zero) and '{}' is not one; \
                 nothing was sent",
                super::text::clean(&req.reference, 80)
            ));
        }
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

    fn reference_style(&self) -> ReferenceStyle {
        ReferenceStyle::Numeric
    }

    fn place(&self, req: &PlacementRequest) -> PlacementOutcome {
        let url = match self.placement_url(req) {
            Ok(u) => u,
            Err(message) => return PlacementOutcome::Rejected { message }.cleaned(),
        };
        // Bodies come back scrubbed of secrets from the HTTP client.
        match self.http.get_for(super::http::CallPurpose::Placement, &url, &[]) {
            Ok(r) => classify_placement(r.status, &r.body),
            Err(e) => super::placement_without_reply("Znet placement", e),
        }
    }

    fn check(&self, key: &CheckKey) -> CheckAnswer {
        // Znet knows orders only by our reference; it has no order id of its own to learn.
        let outcome = match self.call("pin_kontrol", &[("tahsilat_api_islem_id", key.reference.as_str())]) {
            Ok(r) => classify_check(r.status, &r.body),
            Err(e) => super::check_without_reply("Znet status check", &e),
        };
        CheckAnswer::of(outcome)
    }

    fn balance(&self) -> std::result::Result<Balance, ProviderError> {
        let r = self.call("bakiye_kontrol", &[]).map_err(|e| transport_to_provider_error(e).cleaned())?;
        parse_balance(r.status, &r.body)
    }

    fn catalogue(&self) -> std::result::Result<Vec<CatalogueItem>, ProviderError> {
        let r = self.call("pin_listesi", &[]).map_err(|e| transport_to_provider_error(e).cleaned())?;
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
    fn placement_ok_with_two_amounts_is_accepted() {
        let o = classify_placement(200, "OK|10.12|980.88");
        assert!(accepted(&o), "{o:?}");
        if let PlacementOutcome::Accepted { message, early, external_order_id, cost, balance } = o {
            assert_eq!(cost, Some(rust_decimal::Decimal::new(1012, 2)));
            assert_eq!(balance, Some(rust_decimal::Decimal::new(98088, 2)));
            assert!(!message.contains("10.12") && !message.contains("980.88"), "dealer data stays out of the message: {message}");
            assert_eq!(early, None);
            assert_eq!(external_order_id, None);
        }
        assert!(accepted(&classify_placement(200, "\u{feff}OK|10.12|980.88\r\n")));
        assert!(accepted(&classify_placement(200, "OK|10,12|980,88")));
    }

    #[test]
    fn every_coded_placement_reply_is_a_rejection_with_its_code_except_sent_before() {
        assert_eq!(
            classify_placement(200, "3|Kupur Bilgisi Bulunamadı"),
            PlacementOutcome::Rejected { message: "3: Kupur Bilgisi Bulunamadı".into() }
        );
        assert_eq!(classify_placement(200, "3|a|b"), PlacementOutcome::Rejected { message: "3: a|b".into() });
        assert_eq!(classify_placement(200, "3|"), PlacementOutcome::Rejected { message: "3: Znet gave no reason".into() });
        assert_eq!(
            classify_placement(200, "1|Yetersiz bakiye"),
            PlacementOutcome::Rejected { message: "1: Yetersiz bakiye".into() }
        );
        assert_eq!(classify_placement(200, "12|x"), PlacementOutcome::Rejected { message: "12: x".into() });
        assert_eq!(
            classify_placement(200, "4|Daha Önce Gönderilmiş (166189)"),
            PlacementOutcome::SentBefore { message: "4: Daha Önce Gönderilmiş (166189)".into() }
        );
        assert!(matches!(classify_placement(200, "4|anything"), PlacementOutcome::SentBefore { .. }));
        assert_eq!(
            classify_placement(200, "OK|8|Bu İşlem Daha Önce Gönderildi"),
            PlacementOutcome::SentBefore { message: "8: Bu İşlem Daha Önce Gönderildi".into() }
        );
        // Case and diacritics vary between sites.
        assert!(matches!(classify_placement(200, "OK|8|BU ISLEM DAHA ONCE GONDERILDI"), PlacementOutcome::SentBefore { .. }));
        // `OK|8|<other text>` is neither an acceptance (no amounts) nor a documented error.
        assert!(ambiguous(&classify_placement(200, "OK|8|Bilinmeyen durum")));
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
        for g in [
            "OK",
            "OK|10.12",
            "ok|1|2",
            "OK|a|b",
            "4",
            "3",
            "ERROR|Invalid credentials",
            "garbage",
            "\u{fffd}\u{fffd}",
            "{\"a\":1}",
            "|||",
            "1234567890|x",
        ] {
            assert!(ambiguous(&classify_placement(200, g)), "{g:?}");
        }
    }

    #[test]
    fn check_states() {
        assert_eq!(classify_check(200, "OK|1| |Beklemede"), CheckOutcome::Waiting { message: "Beklemede".into() });
        assert_eq!(
            classify_check(200, "OK|1| - |İşlem bekleniyor"),
            CheckOutcome::Waiting { message: "İşlem bekleniyor".into() }
        );
        assert_eq!(
            classify_check(200, "OK|2|ABCD-1234|Onaylandı"),
            CheckOutcome::Approved { pin: Some("ABCD-1234".into()), message: "Onaylandı".into() }
        );
        assert_eq!(
            classify_check(200, "OK|2|P|Onay|lı"),
            CheckOutcome::Approved { pin: Some("P".into()), message: "Onay|lı".into() }
        );
        assert_eq!(classify_check(200, "OK|2| |Onaylandı"), CheckOutcome::Approved { pin: None, message: "Onaylandı".into() });
        assert_eq!(classify_check(200, "OK|2| - |Yüklendi"), CheckOutcome::Approved { pin: None, message: "Yüklendi".into() });
        assert_eq!(classify_check(200, "OK|3| |İptal edildi"), CheckOutcome::Cancelled { message: "İptal edildi".into() });
        assert_eq!(
            classify_check(200, "OK|3| - |İşlem iptal edildi"),
            CheckOutcome::Cancelled { message: "İşlem iptal edildi".into() }
        );
        assert_eq!(classify_check(200, "OK|1| "), CheckOutcome::Waiting { message: "waiting".into() });
    }

    #[test]
    fn a_failed_query_is_not_found_only_when_it_says_the_order_is_not_found() {
        for t in [
            "3|Sipariş bulunamadı",
            "3|SİPARİŞ BULUNAMADI",
            "3|Siparis bulunamadi",
            "3|order not found",
            "3|Kayıt yok",
            "3|İşlem bulunamadı",
            "3|Referans bulunamadı",
        ] {
            assert!(matches!(classify_check(200, t), CheckOutcome::NotFound { .. }), "{t}");
        }
        for t in [
            "3|Bayi bulunamadı",
            "3|BAYİ BULUNAMADI",
            "3|Kullanıcı bulunamadı",
            "3|Bayi kaydı bulunamadı",
            "3|Dealer not found",
            "3|API kullanıcısı bulunamadı",
            "3|IP adresi bulunamadı",
            "3|Bulunamadı",
            "3|Sistem meşgul",
            "3|",
            "8|Bağlantı hatası veya yetersiz bakiye",
        ] {
            assert!(matches!(classify_check(200, t), CheckOutcome::NoNews { .. }), "{t}");
        }
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
            (200, "ERROR|Invalid credentials"),
            (200, "\u{fffd}garbage"),
        ] {
            assert!(matches!(classify_check(s, b), CheckOutcome::NoNews { .. }), "{s} {b:?}");
        }
    }

    #[test]
    fn provider_text_comes_out_clean() {
        assert_eq!(
            classify_check(200, "OK|1| - |Sıra\u{0}da \u{1b}[31mbekliyor"),
            CheckOutcome::Waiting { message: "Sıra da [31mbekliyor".into() }
        );
        assert_eq!(
            classify_check(200, "OK|2|AB\u{0}12|ok"),
            CheckOutcome::Approved { pin: Some("AB 12".into()), message: "ok".into() }
        );
        match classify_placement(200, &format!("3|{}", "ç".repeat(5000))) {
            PlacementOutcome::Rejected { message } => {
                assert_eq!(message.chars().count(), super::super::text::MESSAGE_MAX);
                assert!(message.ends_with(super::super::text::CUT_MARKER));
            }
            other => panic!("{other:?}"),
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
        assert!(matches!(
            parse_balance(200, "ERROR|Invalid credentials"),
            Err(ProviderError::Refused(m)) if m.contains("Invalid credentials")
        ));
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
            kind: ProviderKind::of(&super::znet::KIND),
            // Nothing listens on port 9: a placement that got as far as the network would be
            // ambiguous, not rejected.
            base_url: "http://127.0.0.1:9".into(),
            credentials: serde_json::json!({"kod": kod, "sifre": sifre}),
            http: HttpSettings::default(),
            gate: None,
        }
    }

    fn request(reference: &str, quantity: i32, mapping: serde_json::Value) -> PlacementRequest {
        PlacementRequest { reference: reference.into(), player: "p1".into(), extra: String::new(), quantity, mapping }
    }

    #[test]
    fn quantity_other_than_one_is_rejected_before_any_call() {
        let z = Znet::new(config("bayi1", "sifre-xyz")).unwrap();
        let o = z.place(&request("123456", 2, serde_json::json!({"oyun": "7001", "kupur": "60"})));
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("quantity")), "{o:?}");
        let o = z.place(&request("123456", 1, serde_json::json!({"oyun": 7001})));
        assert!(matches!(&o, PlacementOutcome::Rejected { message } if message.contains("kupur")), "{o:?}");
    }

    #[test]
    fn a_reference_that_is_not_a_number_is_never_sent() {
        let z = Znet::new(config("bayi1", "sifre-xyz")).unwrap();
        assert_eq!(z.reference_style(), ReferenceStyle::Numeric);
        let mapping = serde_json::json!({"oyun": "7001", "kupur": "60"});
        for bad in ["d3f0c9a2-7b1e-4c1e-9f0a-1b2c3d4e5f60", "ref-1", "0123", "1234567890123456789", ""] {
            let o = z.place(&request(bad, 1, mapping.clone()));
            assert!(
                matches!(&o, PlacementOutcome::Rejected { message } if message.contains("numeric references")),
                "{bad}: {o:?}"
            );
            assert!(z.describe_placement(&request(bad, 1, mapping.clone())).starts_with("nothing would be sent"));
        }
    }

    #[test]
    fn password_is_masked_in_descriptions_and_debug() {
        let z = Znet::new(config("bayi1", "sifre-xyz")).unwrap();
        let d = z.describe_placement(&request("176722560012300042", 1, serde_json::json!({"oyun": 7001, "kupur": "60"})));
        assert!(d.contains("pin_ekle.php") && d.contains("oyun=7001") && d.contains("referans=176722560012300042"), "{d}");
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

        #[test]
        fn no_control_character_leaves_the_adapter(bytes in proptest::collection::vec(any::<u8>(), 0..128), prefix in "(OK\\|[123]\\|[A-Z0-9 -]{0,5}\\||[0-9]\\||OK\\|)") {
            let body = format!("{prefix}{}", String::from_utf8_lossy(&bytes));
            let texts = |o: &CheckOutcome| match o {
                CheckOutcome::Approved { pin, message } => vec![pin.clone().unwrap_or_default(), message.clone()],
                other => vec![other.message().to_string()],
            };
            for t in texts(&classify_check(200, &body)) {
                prop_assert!(!t.chars().any(char::is_control), "{:?}", t);
            }
            let placed = match classify_placement(200, &body) {
                PlacementOutcome::Accepted { message, .. }
                | PlacementOutcome::Rejected { message }
                | PlacementOutcome::SentBefore { message }
                | PlacementOutcome::Ambiguous { reason: message }
                | PlacementOutcome::NotSent { reason: message } => message,
            };
            prop_assert!(!placed.chars().any(char::is_control), "{:?}", placed);
        }
    }
}
