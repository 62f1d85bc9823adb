//! HTTP plumbing shared by every provider adapter: one `ureq` agent per provider with connect
//! and total timeouts, provider error bodies kept (4xx/5xx are replies, not errors), a cap on the
//! size of a reply, and URLs masked before they are shown or logged.
//!
//! Nothing here decides what a reply means; the adapters' pure classifiers do that.

use super::{scrub, ProviderConfig};
use std::io::Read;
use std::time::{Duration, Instant};

/// How provider calls are made: timeouts and the largest reply read.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Largest provider reply read; anything longer is cut and treated as garbage.
    pub max_response_bytes: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Query parameters whose value is a secret whatever it is.
const SECRET_PARAMS: &[&str] = &["sifre", "api_token", "token", "password", "pass"];

/// What came back, whatever the status. The body is decoded lossily: a provider that sends
/// broken UTF-8 is still classified (as garbage), never a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// Why no reply was read. None of these says anything about whether the provider acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The connect or total timeout passed.
    Timeout,
    /// Nothing listens at the address (or a firewall said no).
    Refused,
    /// The connection broke while the request or reply was under way.
    Reset,
    /// The reply was longer than `max_response_bytes`.
    TooLarge(u64),
    /// Anything else (DNS, TLS, protocol), already scrubbed of secrets.
    Other(String),
    /// Nothing was sent: no turn under the provider's rate limit came in time, or the call's
    /// time was used up before it could start. Unlike every other error here, this one is
    /// certain that the provider never saw the request.
    NotSent(String),
}

impl TransportError {
    pub fn describe(&self) -> String {
        match self {
            TransportError::Timeout => "no reply before the timeout".to_string(),
            TransportError::Refused => "connection refused".to_string(),
            TransportError::Reset => "connection reset before the reply was complete".to_string(),
            TransportError::TooLarge(cap) => format!("reply longer than {cap} bytes (cut off, treated as garbage)"),
            TransportError::Other(m) | TransportError::NotSent(m) => m.clone(),
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What a call is for, so that a rate limit can serve placements first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPurpose {
    Placement,
    /// Status checks, balance and catalogue calls.
    Other,
}

/// Something that decides when a call may leave: a provider's shared rate limit
/// (`db::pace`). Blocks until the call may go, or says why it may not.
pub trait CallGate: Send + Sync {
    fn wait_turn(&self, purpose: CallPurpose, give_up_after: Duration) -> Result<(), String>;
    /// The calls per second it lets through, every process together.
    fn calls_per_second(&self) -> f64;
}

/// One provider's HTTP client. Cheap to share between threads (the agent pools connections).
pub struct HttpClient {
    agent: ureq::Agent,
    max_bytes: u64,
    request_timeout: Duration,
    secrets: Vec<String>,
    provider: String,
    /// Every call passes it first (the provider's rate limit), when there is one.
    gate: Option<std::sync::Arc<dyn CallGate>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("provider", &self.provider).field("max_bytes", &self.max_bytes).finish()
    }
}

impl HttpClient {
    pub fn new(config: &ProviderConfig) -> HttpClient {
        let agent = super::resolve::agent(
            ureq::Agent::config_builder()
                .timeout_connect(Some(config.http.connect_timeout))
                .timeout_global(Some(config.http.request_timeout))
                // Provider error bodies carry the reason; a 4xx/5xx must stay a readable reply.
                .http_status_as_error(false)
                // Many calls in flight to one provider reuse connections instead of reconnecting.
                .max_idle_connections(256)
                .max_idle_connections_per_host(256)
                .user_agent(concat!("orderctl/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        HttpClient {
            agent,
            max_bytes: config.http.max_response_bytes,
            request_timeout: config.http.request_timeout,
            secrets: config.secrets(),
            provider: config.name.clone(),
            gate: config.gate.clone(),
        }
    }

    /// The URL as it may be shown: secret parameters and secret values masked.
    pub fn mask(&self, url: &str) -> String {
        mask_url(url, &self.secrets)
    }

    /// Remove every secret from a provider text before it goes into an outcome or a log.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    /// GET `url` with extra headers. Logs the masked URL, status and elapsed time at debug level.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<HttpReply, TransportError> {
        self.get_by(url, headers, None)
    }

    /// GET as [`get`](Self::get), waiting first for the provider's rate limit as `purpose`.
    pub fn get_for(&self, purpose: CallPurpose, url: &str, headers: &[(&str, &str)]) -> Result<HttpReply, TransportError> {
        self.get_for_by(purpose, url, headers, None)
    }

    /// As `get`, ending by `deadline` at the latest (when it is sooner than the request
    /// timeout): one provider call made of several requests (an x-stor batch check) stays
    /// within one request timeout as a whole, which is what the lease was sized for. A
    /// deadline already passed sends nothing and is a timeout.
    pub fn get_by(&self, url: &str, headers: &[(&str, &str)], deadline: Option<Instant>) -> Result<HttpReply, TransportError> {
        self.get_for_by(CallPurpose::Other, url, headers, deadline)
    }

    /// The one GET every other goes through: the rate limit first (waiting at most until the
    /// deadline or a request timeout), then the request.
    fn get_for_by(
        &self,
        purpose: CallPurpose,
        url: &str,
        headers: &[(&str, &str)],
        deadline: Option<Instant>,
    ) -> Result<HttpReply, TransportError> {
        // A deadline already passed takes no place in the rate limit either (checked below).
        if let Some(gate) = self.gate.as_ref().filter(|_| deadline.is_none_or(|d| d > Instant::now())) {
            let wait =
                deadline.map_or(self.request_timeout, |d| d.saturating_duration_since(Instant::now()).min(self.request_timeout));
            gate.wait_turn(purpose, wait).map_err(TransportError::NotSent)?;
        }
        let started = Instant::now();
        let left = deadline.map(|d| d.saturating_duration_since(started));
        if left == Some(Duration::ZERO) {
            log::debug!("{}: GET {} not sent: the call's time was used up", self.provider, self.mask(url));
            return Err(TransportError::NotSent("not sent: the call's time was used up".to_string()));
        }
        let result = self.get_inner(url, headers, left);
        let ms = started.elapsed().as_millis();
        match &result {
            Ok(r) => log::debug!("{}: GET {} -> {} ({} bytes) in {ms} ms", self.provider, self.mask(url), r.status, r.body.len()),
            Err(e) => log::debug!("{}: GET {} failed after {ms} ms: {e}", self.provider, self.mask(url)),
        }
        result.map(|mut r| {
            r.body = self.scrub(&r.body);
            r
        })
    }

    fn get_inner(&self, url: &str, headers: &[(&str, &str)], left: Option<Duration>) -> Result<HttpReply, TransportError> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(left) = left.filter(|l| *l < self.request_timeout) {
            req = req.config().timeout_global(Some(left)).build();
        }
        let resp = req.call().map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let mut bytes = Vec::new();
        // Read one byte past the cap to tell "exactly the cap" from "longer".
        resp.into_body()
            .into_reader()
            .take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| self.transport_error(ureq::Error::from(e)))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(TransportError::TooLarge(self.max_bytes));
        }
        Ok(HttpReply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
    }

    fn transport_error(&self, e: ureq::Error) -> TransportError {
        use std::io::ErrorKind as K;
        match e {
            ureq::Error::Timeout(_) => TransportError::Timeout,
            ureq::Error::Io(io) => match io.kind() {
                K::ConnectionRefused => TransportError::Refused,
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => TransportError::Reset,
                K::TimedOut | K::WouldBlock => TransportError::Timeout,
                _ => TransportError::Other(self.scrub(&format!("network error: {io}"))),
            },
            ureq::Error::HostNotFound => {
                TransportError::Other("the provider's host name does not resolve: check base_url".to_string())
            }
            ureq::Error::ConnectionFailed => TransportError::Refused,
            // The URI text would carry the query string with the credentials: never echo it.
            ureq::Error::BadUri(_) => TransportError::Other("the provider's base_url does not make a valid URL".to_string()),
            other => TransportError::Other(self.scrub(&format!("HTTP error: {other}"))),
        }
    }
}

/// `url` with the value of every secret query parameter (`sifre`, `api_token`, ...) and every
/// query value equal to one of `secrets` replaced by `***`. Anything that is not a URL is
/// scrubbed as plain text.
pub fn mask_url(url: &str, secrets: &[String]) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return scrub(url, secrets);
    };
    // Shown as configured when there is nothing to mask in the URL's structure.
    if parsed.query().is_none() && parsed.password().is_none() {
        return scrub(url, secrets);
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let secret = SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s))
                    || (!v.is_empty() && secrets.iter().any(|s| s == v.as_ref()));
                (k.into_owned(), if secret { "***".to_string() } else { v.into_owned() })
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    // The path or an unknown parameter could still hold a secret verbatim.
    scrub(parsed.as_str(), secrets)
}

/// A short, single-line excerpt of a provider body for messages.
pub fn excerpt(body: &str) -> String {
    const MAX: usize = 200;
    let flat: String = body.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= MAX {
        flat
    } else {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// True when a body is an HTML page (a web site, a login page, a PHP warning), not an API reply.
pub fn looks_like_html(body: &str) -> bool {
    let t = body.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        return true;
    }
    let head: String = t.chars().take(2048).collect::<String>().to_ascii_lowercase();
    head.contains("<html") || head.contains("<!doctype html") || head.contains("<body")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_and_values_are_masked() {
        let secrets = vec!["p@ss word".to_string(), "tok-123".to_string()];
        let m = mask_url("http://h/servis/pin_ekle.php?kod=bayi1&sifre=p%40ss+word&referans=r1", &secrets);
        assert!(m.contains("kod=bayi1"), "{m}");
        assert!(m.contains("sifre=***") || m.contains("sifre=%2A%2A%2A"), "{m}");
        assert!(!m.contains("p%40ss") && !m.contains("p@ss"), "{m}");
        let m = mask_url("http://h/x?other=tok-123", &secrets);
        assert!(!m.contains("tok-123"), "{m}");
        assert_eq!(mask_url("not a url tok-123", &secrets), "not a url ***");
    }

    #[test]
    fn html_is_recognised() {
        assert!(looks_like_html("<!DOCTYPE html><html>"));
        assert!(looks_like_html("  \n<br />\n<b>Warning</b>"));
        assert!(looks_like_html("\u{feff}<html>"));
        assert!(!looks_like_html("OK|1|2"));
        assert!(!looks_like_html("{\"a\":1}"));
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("  a\nb  "), "a b");
        assert!(excerpt(&"x".repeat(500)).chars().count() <= 201);
    }
}
