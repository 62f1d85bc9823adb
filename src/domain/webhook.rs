//! Webhooks, the pure part: the event types a shop can subscribe to, the signature every
//! request carries, and the retry schedule of a delivery. No I/O here: `db::outbox` writes
//! events, `webhook` sends them, `lane::webhooks` delivers what is due.

use crate::domain::lifecycle::Notice;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// What a webhook is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The order was approved (the PIN is in the order).
    Approved,
    /// The order was rejected (the reason and the refund are in the order).
    Rejected,
    /// The order got an `attention` flag an operator must act on.
    NeedsAction,
}

impl EventType {
    pub const ALL: [EventType; 3] = [EventType::Approved, EventType::Rejected, EventType::NeedsAction];

    pub fn as_str(self) -> &'static str {
        self.notice().event_type()
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn of(notice: Notice) -> EventType {
        match notice {
            Notice::Approved => EventType::Approved,
            Notice::Rejected => EventType::Rejected,
            Notice::NeedsAction => EventType::NeedsAction,
        }
    }

    fn notice(self) -> Notice {
        match self {
            EventType::Approved => Notice::Approved,
            EventType::Rejected => Notice::Rejected,
            EventType::NeedsAction => Notice::NeedsAction,
        }
    }

    /// Every event name, for messages: "order.approved, order.rejected, order.needs_action".
    pub fn names() -> String {
        EventType::ALL.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of `webhook test`'s request: it checks an endpoint and its secret, and is never
/// stored or retried.
pub const PING: &str = "ping";

/// A webhook's secret: shown nowhere (its Debug is `***`), read only to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The request headers.
pub const SIGNATURE_HEADER: &str = "Orderctl-Signature";
pub const EVENT_ID_HEADER: &str = "Orderctl-Event-Id";

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`: the timestamp is signed
/// with the body, so a receiver can refuse an old request replayed later.
pub fn signature(secret: &str, unix_seconds: i64, body: &str) -> String {
    format!("t={unix_seconds},v1={}", hex::encode(mac(secret, unix_seconds, body)))
}

fn mac(secret: &str, unix_seconds: i64, body: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    m.update(unix_seconds.to_string().as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Whether a signature header was made with `secret` over `body` (in constant time). What a
/// receiver does; orderctl's tests use it to check what was sent.
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    m.verify_slice(&v1).is_ok()
}

/// When a delivery that did not get a 2xx is tried again: `first` after the first attempt,
/// doubling up to `max`, for `give_up_after` from the start of its retry series; after that it
/// is failed (and `doctor` reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What happens after an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    In(Duration),
    GiveUp,
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.first.is_zero() {
            return Err("--webhook-retry-first must be greater than 0".into());
        }
        if self.max < self.first {
            return Err(format!(
                "--webhook-retry-max ({}) must not be shorter than --webhook-retry-first ({})",
                humantime::format_duration(self.max),
                humantime::format_duration(self.first)
            ));
        }
        Ok(())
    }

    /// After failed attempt number `attempts` (1 for the first) of a series that started
    /// `elapsed` ago. A retry that would fall after the give-up moment is not made.
    pub fn after_failure(&self, attempts: u32, elapsed: Duration) -> Retry {
        let doublings = attempts.saturating_sub(1).min(30);
        let delay = self.first.saturating_mul(1u32 << doublings).min(self.max);
        if elapsed.saturating_add(delay) > self.give_up_after {
            Retry::GiveUp
        } else {
            Retry::In(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // The value `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec-test` prints.
        assert_eq!(
            signature("whsec-test", 1700000000, "{\"a\":1}"),
            "t=1700000000,v1=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"
        );
    }

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let body = r#"{"id":"x","type":"order.approved"}"#;
        let header = signature("right", 1_700_000_000, body);
        assert!(verify("right", &header, body));
        assert!(!verify("wrong", &header, body));
        assert!(!verify("right", &header, &body.replace("approved", "rejected")));
        assert!(!verify("right", &header.replace("t=1700000000", "t=1700000001"), body));
        assert!(!verify("right", "garbage", body));
    }

    #[test]
    fn event_names_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(EventType::of(e.notice()), e);
        }
        assert_eq!(EventType::parse("order.created"), None);
        assert_eq!(EventType::names(), "order.approved, order.rejected, order.needs_action");
    }

    #[test]
    fn the_default_schedule_is_10s_doubling_to_1h_for_24h() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(p.after_failure(1, s(0)), Retry::In(s(10)));
        assert_eq!(p.after_failure(2, s(10)), Retry::In(s(20)));
        assert_eq!(p.after_failure(3, s(30)), Retry::In(s(40)));
        assert_eq!(p.after_failure(10, s(5000)), Retry::In(s(3600)));
        assert_eq!(p.after_failure(40, s(20 * 3600)), Retry::In(s(3600)));
        assert_eq!(p.after_failure(41, s(23 * 3600 + 1)), Retry::GiveUp);
    }

    proptest! {
        #[test]
        fn delays_stay_within_first_and_max_and_nothing_is_retried_past_the_give_up(
            first_ms in 1u64..100_000, factor in 1u64..100, attempts in 1u32..1000, elapsed_s in 0u64..200_000
        ) {
            let p = RetryPolicy {
                first: Duration::from_millis(first_ms),
                max: Duration::from_millis(first_ms * factor),
                give_up_after: Duration::from_secs(24 * 3600),
            };
            let elapsed = Duration::from_secs(elapsed_s);
            match p.after_failure(attempts, elapsed) {
                Retry::In(d) => {
                    prop_assert!(d >= p.first && d <= p.max);
                    prop_assert!(elapsed + d <= p.give_up_after);
                }
                Retry::GiveUp => {
                    let delay = p.first.saturating_mul(1 << (attempts - 1).min(30)).min(p.max);
                    prop_assert!(elapsed + delay > p.give_up_after);
                }
            }
        }
    }
}
