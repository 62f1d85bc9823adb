//! Sending webhook requests: one signed `POST` per attempt, with connect and total timeouts and
//! no redirects followed. No database here (`lane::webhooks` claims and records); what an
//! answer means is plain: a 2xx within the timeout is delivered, anything else is not.

use crate::domain::text::clean;
use crate::domain::webhook::{signature, Secret, EVENT_ID_HEADER, SIGNATURE_HEADER};
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
    pub secret: &'a Secret,
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

/// The HTTP side of webhooks. Cheap to share between threads (the agent pools connections).
#[derive(Clone)]
pub struct Sender {
    agent: ureq::Agent,
}

/// Bytes of an answer's body read for the error excerpt; the rest is not waited for.
const EXCERPT_BYTES: u64 = 4096;

impl Sender {
    pub fn new(settings: SendSettings) -> Sender {
        let agent = crate::provider::resolve::agent(
            ureq::Agent::config_builder()
                .timeout_connect(Some(settings.connect_timeout))
                .timeout_global(Some(settings.timeout))
                // A non-2xx answer is an answer: its status and excerpt go into `last_error`.
                .http_status_as_error(false)
                // A redirect is not a delivery (and a POST must not turn into a GET elsewhere).
                .max_redirects(0)
                .user_agent(concat!("orderctl/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Sender { agent }
    }

    /// `POST` the body, signed now. Never returns an error: every failure is an answer.
    pub fn send(&self, r: &Request) -> Attempt {
        let started = Instant::now();
        let sig = signature(r.secret.expose(), chrono::Utc::now().timestamp(), r.body);
        let result = self
            .agent
            .post(r.url)
            .header("Content-Type", "application/json")
            .header(EVENT_ID_HEADER, r.event_id)
            .header(SIGNATURE_HEADER, &sig)
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
            K::TimedOut | K::WouldBlock => "no answer before the timeout".to_string(),
            _ => clean(&format!("network error: {io}"), 200),
        },
        other => clean(&format!("HTTP error: {other}"), 200),
    }
}
