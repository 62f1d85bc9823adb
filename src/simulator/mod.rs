//! The built-in provider simulator: Znet (`/servis/*.php`) and x-stor (`/client/api/...`) on
//! one port, for tests, the demo, benchmarks and users' own CI.
//!
//! **It follows `shared/notes/providers.md` strictly**, never the adapters: every reply has
//! exactly the documented shape (fields, types, status words, error forms) and no field the
//! documents do not show; where the documents are silent it takes the least helpful reading, so
//! an adapter that works here relies only on what the documents promise. The exact replies are
//! listed in `orderctl simulate --help` ([`crate::cli::SIMULATE_HELP`]); the choices:
//!
//! - **Znet.** `referans` is a number (the dealer's numeric id column): anything but digits, or
//!   more than 18 of them, is refused with `3|Referans Bilgisi Geçersiz`, and leading zeros are
//!   dropped as the column would. A referans placed before gets `4|Daha Önce Gönderilmiş (<its
//!   id>)` (counted in `double_placements`). Waiting `OK|1| - |İşlem bekleniyor`, approved
//!   `OK|2|<PIN>|Onaylandı`, cancelled `OK|3| - |İşlem iptal edildi`, unknown `3|Sipariş
//!   bulunamadı`. Catalogue values are all strings and the optional fields are left out. Bad
//!   credentials: HTTP 200 with an empty body.
//! - **x-stor.** No `order_uuid` in any reply. `check` looks the listed values up as `order_id`s,
//!   or with `uuid=1` as `order_uuid`s; its `orders` must be a JSON array. Ids and prices are
//!   strings. Errors are HTTP 200 `{"status":"ERROR","message":...,"error":...}` without a
//!   numeric code, as in the documented example. Each order answers with one of two documented
//!   words per state (`wait`/`pending`, `accept`/`success`, `reject`/`cancelled`), picked by its
//!   reference. Check entries carry `price` and `pin` only when approved, as in the documented
//!   example. A repeated `order_uuid` is refused ("Duplicate order_uuid", counted in
//!   `double_placements`).
//! - **Fates are predictable.** Whether an order ends approved or cancelled, its PIN and when it
//!   turns final are derived from (seed, reference) by [`order_fate`]; it is final
//!   `complete_after + jitter * fraction` after placement.
//! - **Catalogue.** Znet games `oyun` 7001, 7002, 7003, each with `kupur` 60, 325, 660; x-stor
//!   products 501, 502, 503 (player parameter `playerId`, qty 1..100).
//! - **Credentials.** With no accepted logins/tokens configured, any non-empty pair/token is
//!   accepted.
//!
//! Beyond the documents (all documented in `--help` too):
//! - **Faults**, drawn per protocol call from the shares (control endpoints and web pages never
//!   fault): HTTP 500 "before taking the order" (nothing recorded), an empty body (nothing
//!   recorded), garbage bytes (order recorded: the provider acted but the reply got mangled), a
//!   hang of `hang` before a normal answer (recorded *before* the hang, like a provider that acted
//!   but answered late). `placement_calls` and `status_calls` count every call that arrives,
//!   faulted or not; an order's own `status_calls` counts the lookups that reached it. A batch
//!   check is one status call.
//! - **`reject_share`**: that share of placements gets a definite documented rejection (Znet
//!   `3|Yetersiz Bakiye`, x-stor ERROR "Insufficient balance"); nothing recorded.
//! - **`reject_replacements`**: every placement call that records nothing (a 500, an empty reply,
//!   any refusal) leaves its reference "seen"; with this on, a later placement of a seen reference
//!   is refused definitely (Znet `8|Bağlantı hatası veya yetersiz bakiye`, x-stor ERROR
//!   "Duplicate order_uuid"): a provider that will not take a re-placement.
//! - **`slow_record_share`** / **`slow_record`**: that share of placements is recorded only after
//!   `slow_record` (the call is answered then too); meanwhile a status check does not find the
//!   reference, and its reference counts as seen without an order (for `reject_replacements`): a
//!   dealer site that hangs, then commits.
//! - **`waiting_note`**: the text of every waiting reply (Znet message field, x-stor `note`), e.g.
//!   with a NUL byte or ANSI escapes to test what an adapter lets through.
//! - **Everything else** (`/`, unknown paths) is an HTML web page with status 200, like a dealer
//!   site's front page, so an adapter pointed at the wrong base URL sees HTML.
//! - **Control:** `GET /_sim/stats`, `GET /_sim/calls` (when each protocol call arrived), `GET`/`POST /_sim/config` (a JSON object of the settings
//!   above; durations as "300ms" or milliseconds), `POST /_sim/reset`.
//! - **Speed.** Each connection's thread answers its requests, at most `--threads` at once (see
//!   `http`); the order map lock is held only for the map operation, never while sleeping for
//!   latency or a hang.
//!   Credentials and query strings are never logged.

mod http;
mod state;
mod xstor;
mod znet;

pub use state::{order_fate, Fate};

use crate::cli::SimulateArgs;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use state::{Proto, Store};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

/// Everything the simulator can be told.
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub complete_after: Duration,
    pub jitter: Duration,
    pub cancel_share: f64,
    pub error_share: f64,
    pub garbage_share: f64,
    pub empty_share: f64,
    pub hang_share: f64,
    pub hang: Duration,
    pub latency: Duration,
    /// Share of placements refused with a definite documented rejection (nothing recorded).
    pub reject_share: f64,
    /// Refuse a placement whose reference was seen before in a call that recorded nothing.
    pub reject_replacements: bool,
    /// Share of placements the provider records only after `slow_record` (and answers then).
    pub slow_record_share: f64,
    pub slow_record: Duration,
    /// The text of every waiting status reply; `None`: the documented defaults.
    pub waiting_note: Option<String>,
    /// Accepted Znet logins as `KOD:SIFRE`; empty accepts any non-empty pair.
    pub znet_logins: Vec<String>,
    /// Accepted x-stor tokens; empty accepts any non-empty token.
    pub xstor_tokens: Vec<String>,
    pub seed: u64,
    pub threads: usize,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            complete_after: Duration::from_secs(2),
            jitter: Duration::ZERO,
            cancel_share: 0.0,
            error_share: 0.0,
            garbage_share: 0.0,
            empty_share: 0.0,
            hang_share: 0.0,
            hang: Duration::from_secs(30),
            latency: Duration::ZERO,
            reject_share: 0.0,
            reject_replacements: false,
            slow_record_share: 0.0,
            slow_record: Duration::from_secs(8),
            waiting_note: None,
            znet_logins: vec![],
            xstor_tokens: vec![],
            seed: 1,
            threads: 4,
        }
    }
}

impl From<&SimulateArgs> for SimSettings {
    fn from(a: &SimulateArgs) -> Self {
        SimSettings {
            complete_after: a.complete_after.into(),
            jitter: a.jitter.into(),
            cancel_share: a.cancel_share,
            error_share: a.error_share,
            garbage_share: a.garbage_share,
            empty_share: a.empty_share,
            hang_share: a.hang_share,
            hang: a.hang.into(),
            latency: a.latency.into(),
            reject_share: a.reject_share,
            reject_replacements: a.reject_replacements,
            slow_record_share: a.slow_record_share,
            slow_record: a.slow_record.into(),
            waiting_note: a.waiting_note.clone(),
            znet_logins: a.znet_logins.clone(),
            xstor_tokens: a.xstor_tokens.clone(),
            seed: a.seed,
            threads: a.threads,
        }
    }
}

impl SimSettings {
    fn dynamic(&self) -> Dynamic {
        Dynamic {
            complete_after: self.complete_after,
            jitter: self.jitter,
            cancel_share: self.cancel_share,
            error_share: self.error_share,
            garbage_share: self.garbage_share,
            empty_share: self.empty_share,
            hang_share: self.hang_share,
            hang: self.hang,
            latency: self.latency,
            reject_share: self.reject_share,
            reject_replacements: self.reject_replacements,
            slow_record_share: self.slow_record_share,
            slow_record: self.slow_record,
            waiting_note: self.waiting_note.clone(),
            maintenance: false,
        }
    }
}

/// The settings that can change at run time, copied out for each request.
#[derive(Debug, Clone)]
pub(crate) struct Dynamic {
    complete_after: Duration,
    jitter: Duration,
    cancel_share: f64,
    error_share: f64,
    garbage_share: f64,
    empty_share: f64,
    hang_share: f64,
    hang: Duration,
    latency: Duration,
    reject_share: f64,
    reject_replacements: bool,
    slow_record_share: f64,
    slow_record: Duration,
    waiting_note: Option<String>,
    /// Every placement is refused for maintenance (Znet `3|Sistem bakımda`, x-stor ERROR 130).
    maintenance: bool,
}

impl Dynamic {
    fn validate(&self) -> std::result::Result<(), String> {
        let shares = [
            ("cancel_share", self.cancel_share),
            ("error_share", self.error_share),
            ("garbage_share", self.garbage_share),
            ("empty_share", self.empty_share),
            ("hang_share", self.hang_share),
            ("reject_share", self.reject_share),
            ("slow_record_share", self.slow_record_share),
        ];
        for (name, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        let faults = self.error_share + self.garbage_share + self.empty_share + self.hang_share;
        if faults > 1.0 + 1e-9 {
            return Err(format!("error, garbage, empty and hang shares add up to {faults}; together they must be at most 1"));
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        json!({
            "complete_after": d(self.complete_after), "jitter": d(self.jitter), "cancel_share": self.cancel_share,
            "error_share": self.error_share, "garbage_share": self.garbage_share, "empty_share": self.empty_share,
            "hang_share": self.hang_share, "hang": d(self.hang), "latency": d(self.latency),
            "reject_share": self.reject_share, "reject_replacements": self.reject_replacements,
            "slow_record_share": self.slow_record_share, "slow_record": d(self.slow_record),
            "waiting_note": self.waiting_note, "maintenance": self.maintenance,
        })
    }

    /// Apply a `/_sim/config` document; unknown keys and bad values are errors, nothing applied.
    fn apply(mut self, v: &Value) -> std::result::Result<Dynamic, String> {
        let obj = v.as_object().ok_or("the configuration must be a JSON object")?;
        for (k, val) in obj {
            let share = || val.as_f64().ok_or(format!("{k} must be a number between 0 and 1"));
            let duration = || -> std::result::Result<Duration, String> {
                match val {
                    Value::Number(n) => n.as_u64().map(Duration::from_millis).ok_or(format!("{k} must be whole milliseconds")),
                    Value::String(s) => s
                        .parse::<humantime::Duration>()
                        .map(Into::into)
                        .map_err(|e| format!("{k}: '{s}' is not a duration ({e})")),
                    _ => Err(format!("{k} must be a duration such as \"300ms\" or a number of milliseconds")),
                }
            };
            match k.as_str() {
                "complete_after" => self.complete_after = duration()?,
                "jitter" => self.jitter = duration()?,
                "hang" => self.hang = duration()?,
                "slow_record" => self.slow_record = duration()?,
                "slow_record_share" => self.slow_record_share = share()?,
                "latency" => self.latency = duration()?,
                "cancel_share" => self.cancel_share = share()?,
                "error_share" => self.error_share = share()?,
                "garbage_share" => self.garbage_share = share()?,
                "empty_share" => self.empty_share = share()?,
                "hang_share" => self.hang_share = share()?,
                "reject_share" => self.reject_share = share()?,
                "reject_replacements" => self.reject_replacements = val.as_bool().ok_or(format!("{k} must be true or false"))?,
                "maintenance" => self.maintenance = val.as_bool().ok_or(format!("{k} must be true or false"))?,
                // Handled by `configure` (the accounts' balance is state, not a setting).
                "balance" | "znet_balance" | "xstor_balance" => {}
                "waiting_note" => {
                    self.waiting_note = match val {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        _ => return Err(format!("{k} must be a string (or null for the documented defaults)")),
                    }
                }
                other => return Err(format!("unknown setting '{other}'")),
            }
        }
        self.validate()?;
        Ok(self)
    }
}

/// A sleep that ends early when the simulator stops, so a hanging call never delays shutdown.
struct Stopper {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stopper {
    fn sleep(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.cv.wait_timeout_while(guard, d, |stopped| !*stopped);
    }
    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }
}

pub(crate) struct Shared {
    dynamic: RwLock<Dynamic>,
    znet_logins: Vec<(String, String)>,
    xstor_tokens: Vec<String>,
    seed: u64,
    store: Store,
    stopper: Stopper,
}

impl Shared {
    fn dynamic(&self) -> Dynamic {
        self.dynamic.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One reply before it is written out.
pub(crate) struct Reply {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
}

impl Reply {
    fn text(status: u16, body: String) -> Reply {
        Reply { status, body: body.into_bytes(), content_type: "text/plain; charset=utf-8" }
    }
    fn json(status: u16, v: &Value) -> Reply {
        Reply { status, body: serde_json::to_vec(v).unwrap_or_default(), content_type: "application/json" }
    }
    fn html(status: u16) -> Reply {
        Reply { status, body: HOME_PAGE.as_bytes().to_vec(), content_type: "text/html; charset=utf-8" }
    }
}

const HOME_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Bayi Paneli</title></head>\
<body><h1>orderctl provider simulator</h1><p>This is a web page, not an API. Znet lives under /servis/, \
x-stor under /client/api/.</p></body></html>\n";

/// The value of a query parameter.
pub(crate) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A small fast generator for fault draws and garbage (splitmix64), one per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Bytes that can never read as a valid reply: the first is not ASCII, so it is neither
    /// `OK`, a digit, `{`, nor `<`.
    fn garbage(&mut self) -> Vec<u8> {
        let len = 8 + (self.next() % 64) as usize;
        let mut out: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        out[0] |= 0x80;
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Error,
    Garbage,
    Empty,
    Hang,
}

fn draw_fault(rng: &mut Rng, d: &Dynamic) -> Fault {
    if d.error_share + d.garbage_share + d.empty_share + d.hang_share <= 0.0 {
        return Fault::None;
    }
    let u = rng.unit();
    let mut edge = d.error_share;
    if u < edge {
        return Fault::Error;
    }
    edge += d.garbage_share;
    if u < edge {
        return Fault::Garbage;
    }
    edge += d.empty_share;
    if u < edge {
        return Fault::Empty;
    }
    edge += d.hang_share;
    if u < edge {
        return Fault::Hang;
    }
    Fault::None
}

/// The protocol calls the simulator answers.
enum Call<'a> {
    ZnetBalance,
    ZnetCatalogue,
    ZnetPlace,
    ZnetCheck,
    XstorProfile,
    XstorProducts,
    XstorPlace(&'a str),
    XstorCheck,
}

impl Call<'_> {
    fn route(path: &str) -> Option<Call<'_>> {
        if let Some(name) = path.strip_prefix("/servis/") {
            return match name {
                "bakiye_kontrol.php" => Some(Call::ZnetBalance),
                "pin_listesi.php" => Some(Call::ZnetCatalogue),
                "pin_ekle.php" => Some(Call::ZnetPlace),
                "pin_kontrol.php" => Some(Call::ZnetCheck),
                _ => None,
            };
        }
        let rest = path.strip_prefix("/client/api/")?;
        match rest {
            "profile" => Some(Call::XstorProfile),
            "products" => Some(Call::XstorProducts),
            "check" => Some(Call::XstorCheck),
            _ => rest.strip_prefix("newOrder/")?.strip_suffix("/params").map(Call::XstorPlace),
        }
    }
    fn is_znet(&self) -> bool {
        matches!(self, Call::ZnetBalance | Call::ZnetCatalogue | Call::ZnetPlace | Call::ZnetCheck)
    }
}

/// What a placement call may be answered with, drawn before the answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Draw {
    /// Refuse this placement (`reject_share`).
    pub reject: bool,
}

/// The answer to a protocol call, and whether it recorded an order.
fn answer(
    shared: &Shared,
    d: &Dynamic,
    draw: Draw,
    call: &Call,
    pairs: &[(String, String)],
    token: Option<&str>,
) -> (Reply, bool) {
    if call.is_znet() && !znet::authorised(shared, pairs) {
        // The real dealer software's answer to unknown dealer / API off / IP not allowed.
        return (Reply::text(200, String::new()), false);
    }
    if !call.is_znet() {
        if let Some(r) = xstor::auth_error(shared, token) {
            return (r, false);
        }
    }
    let answered = |r: Reply| (r, false);
    match call {
        Call::ZnetBalance => answered(znet::balance(shared)),
        Call::ZnetCatalogue => answered(znet::catalogue()),
        Call::ZnetPlace => znet::place(shared, d, draw, pairs),
        Call::ZnetCheck => answered(znet::check(shared, d, pairs)),
        Call::XstorProfile => answered(xstor::profile(shared)),
        Call::XstorProducts => answered(xstor::products()),
        Call::XstorPlace(product) => xstor::new_order(shared, d, draw, product, pairs),
        Call::XstorCheck => answered(xstor::check(shared, d, pairs)),
    }
}

/// The reference a placement call carries, as the protocol's store knows it.
fn placement_reference(call: &Call, pairs: &[(String, String)]) -> Option<(Proto, String)> {
    match call {
        Call::ZnetPlace => param(pairs, "referans").and_then(znet::canonical_referans).map(|r| (Proto::Znet, r)),
        Call::XstorPlace(_) => {
            param(pairs, "order_uuid").map(str::trim).filter(|r| !r.is_empty()).map(|r| (Proto::Xstor, r.to_string()))
        }
        _ => None,
    }
}

fn protocol(shared: &Shared, rng: &mut Rng, call: Call, query: &str, token: Option<&str>) -> Reply {
    let d = shared.dynamic();
    shared.stopper.sleep(d.latency);
    let placement = matches!(call, Call::ZnetPlace | Call::XstorPlace(_));
    match call {
        Call::ZnetPlace | Call::XstorPlace(_) => shared.store.placement_call(),
        Call::ZnetCheck | Call::XstorCheck => shared.store.status_call(),
        _ => {}
    }
    let fault = draw_fault(rng, &d);
    if fault != Fault::None {
        shared.store.fault();
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    // A placement that records nothing leaves its reference "seen" (for `reject_replacements`).
    let seen = |recorded: bool| {
        if placement && !recorded {
            if let Some((proto, reference)) = placement_reference(&call, &pairs) {
                shared.store.seen_unrecorded(proto, &reference);
            }
        }
    };
    match fault {
        // "Before taking the order": nothing recorded.
        Fault::Error => {
            seen(false);
            return Reply::text(500, "Internal Server Error".to_string());
        }
        Fault::Empty => {
            seen(false);
            return Reply::text(200, String::new());
        }
        _ => {}
    }
    let draw = Draw { reject: placement && d.reject_share > 0.0 && rng.unit() < d.reject_share };
    // A dealer site that holds the call and records the order late: until then the reference
    // is seen without an order (a re-placement meanwhile meets `reject_replacements`).
    // A re-placement of a reference seen without an order is answered at once (its refusal,
    // under `reject_replacements`): the dealer checks the reference before anything slow.
    let refused_at_once = d.reject_replacements
        && placement_reference(&call, &pairs).is_some_and(|(proto, r)| shared.store.was_seen_unrecorded(proto, &r));
    if placement && !refused_at_once && d.slow_record_share > 0.0 && rng.unit() < d.slow_record_share {
        seen(false);
        shared.stopper.sleep(d.slow_record);
        if let Some((proto, reference)) = placement_reference(&call, &pairs) {
            shared.store.forget_seen(proto, &reference);
        }
    }
    let (reply, recorded) = answer(shared, &d, draw, &call, &pairs, token);
    seen(recorded);
    match fault {
        Fault::Garbage => Reply { status: 200, body: rng.garbage(), content_type: "text/plain" },
        Fault::Hang => {
            shared.stopper.sleep(d.hang);
            reply
        }
        _ => reply,
    }
}

fn control(shared: &Shared, req: &http::Request, path: &str) -> Reply {
    let post = req.method == "POST";
    match (path, post) {
        ("/_sim/stats", false) => Reply::json(200, &shared.store.stats()),
        ("/_sim/calls", false) => Reply::json(200, &shared.store.counters.calls()),
        ("/_sim/reset", true) => {
            shared.store.reset();
            Reply::json(200, &json!({"reset": true}))
        }
        ("/_sim/config", true) => {
            let Ok(body) = std::str::from_utf8(&req.body) else {
                return Reply::json(400, &json!({"error": "the body is not UTF-8 text"}));
            };
            let parsed = serde_json::from_str::<Value>(body).map_err(|e| format!("the body is not JSON: {e}"));
            match parsed.and_then(|v| configure(shared, &v)) {
                Ok(now) => Reply::json(200, &now),
                Err(e) => Reply::json(400, &json!({"error": e})),
            }
        }
        ("/_sim/config", false) => Reply::json(200, &shared.dynamic().to_json()),
        _ => Reply::json(404, &json!({"error": "unknown control endpoint; use /_sim/stats, /_sim/config, /_sim/reset"})),
    }
}

fn configure(shared: &Shared, v: &Value) -> std::result::Result<Value, String> {
    let mut guard = shared.dynamic.write().unwrap_or_else(|p| p.into_inner());
    let next = guard.clone().apply(v)?;
    // `balance`: both accounts' balance, as an amount ("12.50"); a placement costing more is refused.
    for (key, which) in [("balance", None), ("znet_balance", Some(Proto::Znet)), ("xstor_balance", Some(Proto::Xstor))] {
        let Some(b) = v.get(key) else { continue };
        let text = b.as_str().map(str::to_string).unwrap_or_else(|| b.to_string());
        let cents = text
            .trim()
            .parse::<rust_decimal::Decimal>()
            .ok()
            .and_then(|d| rust_decimal::prelude::ToPrimitive::to_i64(&(d * rust_decimal::Decimal::from(100)).round()))
            .ok_or(format!("{key} '{text}' is not an amount"))?;
        shared.store.set_balance(which, cents);
    }
    *guard = next;
    Ok(guard.to_json())
}

fn handle(shared: &Shared, rng: &mut Rng, req: http::Request) {
    let url = req.url.clone();
    let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    // The path only: queries carry Znet passwords.
    log::debug!("simulator: {} {path}", req.method);
    let reply = if path.starts_with("/_sim/") {
        control(shared, &req, path)
    } else if let Some(call) = Call::route(path) {
        let token = req.header("api-token").map(str::to_string);
        let counters = &shared.store.counters;
        counters.record_call();
        let of_kind = match call {
            Call::ZnetPlace | Call::XstorPlace(_) => Some((&counters.placements_in_flight, &counters.peak_placements_in_flight)),
            Call::ZnetCheck | Call::XstorCheck => Some((&counters.checks_in_flight, &counters.peak_checks_in_flight)),
            _ => None,
        };
        let gauges: Vec<_> = std::iter::once((&counters.in_flight, &counters.peak_in_flight)).chain(of_kind).collect();
        for (n, peak) in &gauges {
            let now = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        }
        let reply = protocol(shared, rng, call, query, token.as_deref());
        for (n, _) in &gauges {
            n.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        reply
    } else {
        Reply::html(200)
    };
    req.respond(reply.status, reply.content_type, &reply.body);
}

/// A running simulator. Stops when dropped: no new connection is accepted, every sleep for
/// latency or a hang ends (its request is answered at once), and a request still waiting for a
/// worker slot is not answered.
pub struct Simulator {
    addr: SocketAddr,
    server: http::Server,
    shared: Arc<Shared>,
}

impl Simulator {
    /// Listen on `listen` (port 0 picks a free port) and serve with `settings.threads` workers.
    pub fn start(settings: SimSettings, listen: &str) -> Result<Simulator> {
        let dynamic = settings.dynamic();
        dynamic.validate().map_err(Error::invalid)?;
        if settings.threads == 0 || settings.threads > 1024 {
            return Err(Error::invalid(format!("--threads must be between 1 and 1024, got {}", settings.threads)));
        }
        let mut znet_logins = Vec::new();
        for login in &settings.znet_logins {
            match login.split_once(':') {
                Some((k, s)) if !k.is_empty() && !s.is_empty() => znet_logins.push((k.to_string(), s.to_string())),
                // Never echo the value: it holds a password.
                _ => {
                    return Err(Error::invalid("a --znet-login is not of the form KOD:SIFRE")
                        .with_hint("write each accepted dealer login as --znet-login KOD:SIFRE"))
                }
            }
        }
        if settings.xstor_tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::invalid("an --xstor-token is empty"));
        }
        let shared = Arc::new(Shared {
            dynamic: RwLock::new(dynamic),
            znet_logins,
            xstor_tokens: settings.xstor_tokens.clone(),
            seed: settings.seed,
            store: Store::new(),
            stopper: Stopper { stopped: Mutex::new(false), cv: Condvar::new() },
        });
        // One random stream per worker slot (a slot serves one request at a time).
        let rngs: Vec<Mutex<Rng>> = (0..settings.threads)
            .map(|i| Mutex::new(Rng(settings.seed ^ (i as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03))))
            .collect();
        let handler: Arc<http::Handler> = {
            let shared = shared.clone();
            Arc::new(move |slot: usize, req: http::Request| {
                let mut rng = rngs[slot].lock().unwrap_or_else(|p| p.into_inner());
                handle(&shared, &mut rng, req);
            })
        };
        let server = http::Server::bind(listen, settings.threads, handler).map_err(|e| {
            Error::invalid(format!("the simulator cannot listen on {listen}: {e}"))
                .with_hint("pick another address, or port 0 for a free one (e.g. --listen 127.0.0.1:0)")
        })?;
        let addr = server.addr();
        Ok(Simulator { addr, server, shared })
    }

    /// The address actually listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, usable as the base URL of both provider kinds (an unspecified listen
    /// address is reached through loopback).
    pub fn base_url(&self) -> String {
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{a}")
    }

    /// The same document as `GET /_sim/stats`.
    pub fn stats(&self) -> Value {
        self.shared.store.stats()
    }

    /// Change settings at run time, as `POST /_sim/config` does. Returns the settings now.
    pub fn configure(&self, settings: &Value) -> std::result::Result<Value, String> {
        configure(&self.shared, settings)
    }

    /// Forget every order and counter.
    pub fn reset(&self) {
        self.shared.store.reset();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shared.stopper.stop();
        self.server.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_documents_are_validated() {
        let d = SimSettings::default().dynamic();
        let n = d.clone().apply(&json!({"error_share": 0.5, "hang": "2s", "latency": 10})).unwrap();
        assert_eq!((n.error_share, n.hang, n.latency), (0.5, Duration::from_secs(2), Duration::from_millis(10)));
        let n =
            d.clone().apply(&json!({"reject_share": 0.25, "reject_replacements": true, "waiting_note": "Sıra\u{0}da"})).unwrap();
        assert_eq!((n.reject_share, n.reject_replacements, n.waiting_note.as_deref()), (0.25, true, Some("Sıra\u{0}da")));
        assert_eq!(n.to_json()["waiting_note"], "Sıra\u{0}da");
        assert_eq!(n.clone().apply(&json!({"waiting_note": null})).unwrap().waiting_note, None);
        assert!(d.clone().apply(&json!({"reject_share": 2})).is_err());
        assert!(d.clone().apply(&json!({"reject_replacements": "yes"})).is_err());
        assert!(d.clone().apply(&json!({"waiting_note": 5})).is_err());
        assert!(d.clone().apply(&json!({"error_share": 1.5})).is_err());
        assert!(d.clone().apply(&json!({"error_share": 0.6, "empty_share": 0.6})).is_err());
        assert!(d.clone().apply(&json!({"nonsense": 1})).is_err());
        assert!(d.clone().apply(&json!({"hang": "soon"})).is_err());
        assert!(d.clone().apply(&json!([1])).is_err());
    }

    #[test]
    fn faults_follow_the_shares() {
        let mut rng = Rng(3);
        let mut d =
            SimSettings { error_share: 0.25, garbage_share: 0.25, empty_share: 0.25, hang_share: 0.25, ..SimSettings::default() }
                .dynamic();
        let draws: Vec<Fault> = (0..4000).map(|_| draw_fault(&mut rng, &d)).collect();
        for f in [Fault::Error, Fault::Garbage, Fault::Empty, Fault::Hang] {
            let n = draws.iter().filter(|x| **x == f).count();
            assert!((800..1200).contains(&n), "{f:?}: {n}");
        }
        d.error_share = 0.0;
        d.garbage_share = 0.0;
        d.empty_share = 0.0;
        d.hang_share = 0.0;
        assert!((0..100).all(|_| draw_fault(&mut rng, &d) == Fault::None));
        let g = rng.garbage();
        assert!(g.len() >= 8 && g[0] >= 0x80);
    }

    #[test]
    fn routes() {
        assert!(matches!(Call::route("/servis/pin_ekle.php"), Some(Call::ZnetPlace)));
        assert!(matches!(Call::route("/client/api/newOrder/501/params"), Some(Call::XstorPlace("501"))));
        assert!(Call::route("/servis/other.php").is_none());
        assert!(Call::route("/").is_none());
    }
}
