//! Sending webhook requests: one signed `POST` per attempt (Standard Webhooks headers and the
//! legacy one), with connect and total timeouts, no redirects followed, the endpoint's address
//! rules checked on every resolved address (`domain::endpoint`), and at most a few KiB of an
//! answer read. No database here (`lane::webhooks` claims and records); what an answer means is
//! plain: a 2xx within the timeout is delivered, anything else is not.

use crate::domain::endpoint::{address_allowed, Access};
use crate::domain::signature::{
    legacy_signature, standard_signature, EVENT_ID_HEADER, SIGNATURE_HEADER, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
use crate::domain::text::clean;
use crate::domain::webhook::Secret;
use std::io::Read;
use std::time::{Duration, Instant};

/// How webhook requests are made.
#[derive(Debug, Clone, Copy)]
pub struct SendSettings {
    pub connect_timeout: Duration,
    /// The whole request: connect, send, and the answer's status and body.
    pub timeout: Duration,
}

/// One request to send.
#[derive(Debug)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The current secret first; during a rotation the previous one too (each signs).
    pub secrets: &'a [Secret],
    pub access: Access,
    pub event_id: &'a str,
    pub body: &'a str,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx status within the timeout.
    Delivered { status: u16 },
    /// Another status: the receiver did not take it.
    Refused { status: u16, excerpt: String },
    /// No answer: refused connection, timeout, DNS, TLS.
    Unreachable { reason: String },
}

impl Answer {
    pub fn delivered(&self) -> bool {
        matches!(self, Answer::Delivered { .. })
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Delivered { status } | Answer::Refused { status, .. } => Some(*status),
            Answer::Unreachable { .. } => None,
        }
    }
    /// One line for `last_error` and reports (None when delivered).
    pub fn error(&self) -> Option<String> {
        match self {
            Answer::Delivered { .. } => None,
            Answer::Refused { status, excerpt } if excerpt.is_empty() => Some(format!("HTTP {status}")),
            Answer::Refused { status, excerpt } => Some(format!("HTTP {status}: {excerpt}")),
            Answer::Unreachable { reason } => Some(reason.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub answer: Answer,
    pub took: Duration,
}

impl Attempt {
    /// An attempt not made: the endpoint's secret does not resolve on this host (`why` names
    /// the variable or file), so nothing can be signed. It fails as an unreachable endpoint
    /// does (retried within the endpoint's horizon, shown by `webhook endpoints` and `webhook
    /// list`), for this endpoint only.
    pub fn unsigned(why: &str) -> Attempt {
        Attempt {
            answer: Answer::Unreachable { reason: format!("not sent: {why} on this host; provide it, or correct the reference") },
            took: Duration::ZERO,
        }
    }
}

/// The HTTP side of webhooks. Cheap to share between threads (the agents pool connections).
#[derive(Clone)]
pub struct Sender {
    /// Public addresses only.
    public: ureq::Agent,
    /// Any address: for endpoints with `allow_private_network`.
    any: ureq::Agent,
}

/// Bytes of an answer's body read for the error excerpt; the rest is not waited for.
const EXCERPT_BYTES: u64 = 4096;

impl Sender {
    pub fn new(settings: SendSettings) -> Sender {
        let config = || {
            ureq::Agent::config_builder()
                .timeout_connect(Some(settings.connect_timeout))
                .timeout_global(Some(settings.timeout))
                // A non-2xx answer is an answer: its status and excerpt go into `last_error`.
                .http_status_as_error(false)
                // A redirect is not a delivery (and a POST must not turn into a GET elsewhere,
                // nor a public endpoint into a private one).
                .max_redirects(0)
                .user_agent(concat!("orderctl/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let public = crate::provider::resolve::agent_checked(config(), |ip| address_allowed(ip, Access::default()));
        Sender { public, any: crate::provider::resolve::agent(config()) }
    }

    /// `POST` the body, signed now. Never returns an error: every failure is an answer.
    pub fn send(&self, r: &Request) -> Attempt {
        let started = Instant::now();
        if let Err(why) =
            url::Url::parse(r.url).map_err(|e| e.to_string()).and_then(|u| crate::domain::endpoint::url_allowed(&u, r.access))
        {
            return Attempt { answer: Answer::Unreachable { reason: why }, took: started.elapsed() };
        }
        let now = chrono::Utc::now().timestamp();
        let secrets: Vec<&Secret> = r.secrets.iter().collect();
        let agent = if r.access.allow_private_network { &self.any } else { &self.public };
        let result = agent
            .post(r.url)
            .header("Content-Type", "application/json")
            .header(WEBHOOK_ID, r.event_id)
            .header(WEBHOOK_TIMESTAMP, now.to_string())
            .header(WEBHOOK_SIGNATURE, standard_signature(&secrets, r.event_id, now, r.body))
            .header(EVENT_ID_HEADER, r.event_id)
            .header(SIGNATURE_HEADER, legacy_signature(&secrets, now, r.body))
            .send(r.body);
        let answer = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    Answer::Delivered { status }
                } else {
                    let mut bytes = Vec::new();
                    let _ = resp.into_body().into_reader().take(EXCERPT_BYTES).read_to_end(&mut bytes);
                    Answer::Refused { status, excerpt: clean(&String::from_utf8_lossy(&bytes), 200) }
                }
            }
            Err(e) => Answer::Unreachable { reason: describe(e) },
        };
        let took = started.elapsed();
        log::debug!("webhook {} to {}: {:?} in {} ms", r.event_id, r.url, answer, took.as_millis());
        Attempt { answer, took }
    }
}

fn describe(e: ureq::Error) -> String {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Timeout(_) => "no answer before the timeout".to_string(),
        ureq::Error::ConnectionFailed => "connection refused".to_string(),
        ureq::Error::HostNotFound => "the webhook's host name does not resolve".to_string(),
        ureq::Error::BadUri(_) => "the webhook's url is not a valid URL".to_string(),
        ureq::Error::Io(io) => match io.kind() {
            K::ConnectionRefused => "connection refused".to_string(),
            // The address rules (the resolver's refusal says which address and why).
            K::PermissionDenied => clean(&io.to_string(), 300),
            K::TimedOut | K::WouldBlock => "no answer before the timeout".to_string(),
            _ => clean(&format!("network error: {io}"), 200),
        },
        other => clean(&format!("HTTP error: {other}"), 200),
    }
}
