//! The built-in provider simulator: Znet (`/servis/*.php`) and x-stor (`/client/api/...`) on
//! one port, exactly as `shared/notes/providers.md` describes them, for tests, the demo,
//! benchmarks and users' own CI.
//!
//! Choices worth knowing:
//! - **Fates are predictable.** Whether an order ends approved or cancelled, its PIN and when it
//!   turns final are derived from (seed, reference) by [`order_fate`]; it is final
//!   `complete_after + jitter * fraction` after placement.
//! - **Catalogue.** Znet games `oyun` 7001, 7002, 7003, each with `kupur` 60, 325, 660; x-stor
//!   products 501, 502, 503 (player parameter `playerId`, qty 1..100). Anything else is a
//!   definite rejection (`3|Kupur Bilgisi Bulunamadı`, x-stor code 109).
//! - **Credentials.** With no accepted logins/tokens configured, any non-empty pair/token is
//!   accepted. Bad Znet credentials get HTTP 200 with an empty body; a bad x-stor token gets
//!   `{"status":"ERROR","code":121,"message":"token error"}` (120 when missing).
//! - **Double placements.** A reference already placed through the same protocol is counted in
//!   `double_placements` and rejected (Znet `3|Referans daha önce kullanılmış`, x-stor code 114
//!   "order_uuid already used"); the original order is unchanged.
//! - **Faults**, drawn per protocol call from the shares (control endpoints and web pages never
//!   fault): HTTP 500 (order NOT recorded), garbage bytes (order recorded: the provider acted
//!   but the reply got mangled), an empty body (NOT recorded), a hang of `hang` before a normal
//!   answer (recorded *before* the hang, like a provider that acted but answered late).
//!   `placement_calls` and `status_calls` count every call that arrives, faulted or not; an
//!   order's own `status_calls` counts the lookups that reached it. A batch check is one status
//!   call.
//! - **Everything else** (`/`, unknown paths) is an HTML web page with status 200, like a dealer
//!   site's front page, so an adapter pointed at the wrong base URL sees HTML.
//! - **Control:** `GET /_sim/stats`, `POST /_sim/config` (a JSON object of fault, latency and
//!   timing settings; durations as "300ms" or milliseconds), `POST /_sim/reset`.
//! - **Speed.** Worker threads take requests from the connections (see `http`); the order map lock is held only
//!   for the map operation, never while sleeping for latency or a hang. Credentials and query
//!   strings are never logged.

mod http;
mod state;
mod xstor;
mod znet;

pub use state::{order_fate, Fate};

use crate::cli::SimulateArgs;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use state::Store;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
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
        }
    }
}

/// The settings that can change at run time, copied out for each request.
#[derive(Debug, Clone, Copy)]
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
}

impl Dynamic {
    fn validate(&self) -> std::result::Result<(), String> {
        let shares = [
            ("cancel_share", self.cancel_share),
            ("error_share", self.error_share),
            ("garbage_share", self.garbage_share),
            ("empty_share", self.empty_share),
            ("hang_share", self.hang_share),
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

    fn to_json(self) -> Value {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        json!({
            "complete_after": d(self.complete_after), "jitter": d(self.jitter), "cancel_share": self.cancel_share,
            "error_share": self.error_share, "garbage_share": self.garbage_share, "empty_share": self.empty_share,
            "hang_share": self.hang_share, "hang": d(self.hang), "latency": d(self.latency),
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
                "latency" => self.latency = duration()?,
                "cancel_share" => self.cancel_share = share()?,
                "error_share" => self.error_share = share()?,
                "garbage_share" => self.garbage_share = share()?,
                "empty_share" => self.empty_share = share()?,
                "hang_share" => self.hang_share = share()?,
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
        *self.dynamic.read().unwrap_or_else(|p| p.into_inner())
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

fn answer(shared: &Shared, d: &Dynamic, call: &Call, pairs: &[(String, String)], token: Option<&str>) -> Reply {
    if call.is_znet() && !znet::authorised(shared, pairs) {
        // The real dealer software's answer to unknown dealer / API off / IP not allowed.
        return Reply::text(200, String::new());
    }
    if !call.is_znet() {
        if let Some(r) = xstor::auth_error(shared, token) {
            return r;
        }
    }
    match call {
        Call::ZnetBalance => znet::balance(shared),
        Call::ZnetCatalogue => znet::catalogue(),
        Call::ZnetPlace => znet::place(shared, d, pairs),
        Call::ZnetCheck => znet::check(shared, pairs),
        Call::XstorProfile => xstor::profile(shared),
        Call::XstorProducts => xstor::products(),
        Call::XstorPlace(product) => xstor::new_order(shared, d, product, pairs),
        Call::XstorCheck => xstor::check(shared, pairs),
    }
}

fn protocol(shared: &Shared, rng: &mut Rng, call: Call, query: &str, token: Option<&str>) -> Reply {
    let d = shared.dynamic();
    shared.stopper.sleep(d.latency);
    match call {
        Call::ZnetPlace | Call::XstorPlace(_) => shared.store.placement_call(),
        Call::ZnetCheck | Call::XstorCheck => shared.store.status_call(),
        _ => {}
    }
    let fault = draw_fault(rng, &d);
    if fault != Fault::None {
        shared.store.fault();
    }
    match fault {
        Fault::Error => return Reply::text(500, "Internal Server Error".to_string()),
        Fault::Empty => return Reply::text(200, String::new()),
        _ => {}
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let reply = answer(shared, &d, &call, &pairs, token);
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
    *guard = guard.apply(v)?;
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
        let now = counters.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        counters.peak_in_flight.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        let reply = protocol(shared, rng, call, query, token.as_deref());
        counters.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        reply
    } else {
        Reply::html(200)
    };
    req.respond(reply.status, reply.content_type, &reply.body);
}

/// A running simulator. Stops (and waits for its workers) when dropped.
pub struct Simulator {
    addr: SocketAddr,
    server: Arc<http::Server>,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
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
        let server = http::Server::bind(listen).map_err(|e| {
            Error::invalid(format!("the simulator cannot listen on {listen}: {e}"))
                .with_hint("pick another address, or port 0 for a free one (e.g. --listen 127.0.0.1:0)")
        })?;
        let addr = server.addr();
        let server = Arc::new(server);
        let shared = Arc::new(Shared {
            dynamic: RwLock::new(dynamic),
            znet_logins,
            xstor_tokens: settings.xstor_tokens.clone(),
            seed: settings.seed,
            store: Store::new(),
            stopper: Stopper { stopped: Mutex::new(false), cv: Condvar::new() },
        });
        let workers = (0..settings.threads)
            .map(|i| {
                let (server, shared) = (server.clone(), shared.clone());
                let mut rng = Rng(settings.seed ^ (i as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
                std::thread::Builder::new()
                    .name(format!("sim-{i}"))
                    .spawn(move || {
                        while let Some(req) = server.recv() {
                            handle(&shared, &mut rng, req);
                        }
                    })
                    .map_err(|e| Error::internal(format!("cannot start a simulator thread: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Simulator { addr, server, shared, workers })
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
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_documents_are_validated() {
        let d = SimSettings::default().dynamic();
        let n = d.apply(&json!({"error_share": 0.5, "hang": "2s", "latency": 10})).unwrap();
        assert_eq!((n.error_share, n.hang, n.latency), (0.5, Duration::from_secs(2), Duration::from_millis(10)));
        assert!(d.apply(&json!({"error_share": 1.5})).is_err());
        assert!(d.apply(&json!({"error_share": 0.6, "empty_share": 0.6})).is_err());
        assert!(d.apply(&json!({"nonsense": 1})).is_err());
        assert!(d.apply(&json!({"hang": "soon"})).is_err());
        assert!(d.apply(&json!([1])).is_err());
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
