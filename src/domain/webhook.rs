//! Webhooks, the pure part: the event types a shop can subscribe to and the retry schedule of a
//! delivery (signatures: `signature`; which endpoints may be called: `endpoint`). No I/O here:
//! `db::outbox` writes events, `webhook` sends them, `lane::webhooks` delivers what is due.
//!
//! There are three events: `order.approved`, `order.rejected` and `order.needs_action`. An
//! order accepted by its provider (`sent`) is no event of its own: a shop hears of an order when
//! it is final or needs an operator.

use crate::domain::lifecycle::Notice;
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

/// Why an event happened, as a shop is told it: a neutral code and a sentence, never what a
/// provider said (which may quote the dealer's cost, balance or account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub code: &'static str,
    pub text: &'static str,
}

impl Reason {
    pub fn of(kind: EventType) -> Option<Reason> {
        match kind {
            EventType::Approved => None,
            EventType::Rejected => {
                Some(Reason { code: "not_fulfilled", text: "The order could not be fulfilled; its price was refunded." })
            }
            EventType::NeedsAction => Some(Reason {
                code: "delayed",
                text: "The order is delayed and is being looked at by the seller; it is not final yet.",
            }),
        }
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

/// When a delivery that did not get a 2xx is tried again: `first` after the first attempt,
/// doubling up to `max`, each delay shortened by up to half at random (jitter, so endpoints that
/// failed together are not retried in lockstep), until the horizon from the start of its retry
/// series; after that it is dead-lettered (`failed`: `webhook list --failed`, `webhook replay`).
/// The horizon is the endpoint's own or, by default, `horizon` (3 days, like the services shops
/// already integrate with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub max: Duration,
    pub horizon: Duration,
}

/// The default retry horizon.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(3 * 24 * 3600);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { first: Duration::from_secs(10), max: Duration::from_secs(3600), horizon: DEFAULT_HORIZON }
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
        if self.horizon.is_zero() {
            return Err("--webhook-retry-horizon must be greater than 0".into());
        }
        Ok(())
    }

    /// This policy with an endpoint's own horizon, when it has one.
    pub fn with_horizon(self, horizon: Option<Duration>) -> RetryPolicy {
        RetryPolicy { horizon: horizon.unwrap_or(self.horizon), ..self }
    }

    /// After failed attempt number `attempts` (1 for the first) of a series that started
    /// `elapsed` ago; `jitter` in [0, 1] takes that share of half the delay off. A retry that
    /// would fall after the horizon is not made.
    pub fn after_failure(&self, attempts: u32, elapsed: Duration, jitter: f64) -> Retry {
        let doublings = attempts.saturating_sub(1).min(30);
        let full = self.first.saturating_mul(1u32 << doublings).min(self.max);
        let delay = full.saturating_sub(full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0));
        if elapsed.saturating_add(delay) > self.horizon {
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
    fn event_names_round_trip() {
        for e in EventType::ALL {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(EventType::of(e.notice()), e);
        }
        assert_eq!(EventType::parse("order.created"), None);
        assert_eq!(EventType::names(), "order.approved, order.rejected, order.needs_action");
    }

    #[test]
    fn the_default_schedule_is_10s_doubling_to_1h_for_3_days_with_up_to_half_off() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(p.after_failure(1, s(0), 0.0), Retry::In(s(10)));
        assert_eq!(p.after_failure(1, s(0), 1.0), Retry::In(s(5)));
        assert_eq!(p.after_failure(2, s(10), 0.0), Retry::In(s(20)));
        assert_eq!(p.after_failure(3, s(30), 0.5), Retry::In(s(30)));
        assert_eq!(p.after_failure(10, s(5000), 0.0), Retry::In(s(3600)));
        assert_eq!(p.after_failure(80, s(70 * 3600), 0.0), Retry::In(s(3600)));
        assert_eq!(p.after_failure(81, s(71 * 3600 + 1), 0.0), Retry::GiveUp);
        assert_eq!(p.with_horizon(Some(s(60))).after_failure(3, s(30), 0.0), Retry::GiveUp);
        assert_eq!(p.with_horizon(None), p);
    }

    proptest! {
        #[test]
        fn delays_stay_within_first_and_max_and_nothing_is_retried_past_the_give_up(
            first_ms in 1u64..100_000, factor in 1u64..100, attempts in 1u32..1000, elapsed_s in 0u64..400_000,
            jitter in 0.0f64..=1.0
        ) {
            let p = RetryPolicy {
                first: Duration::from_millis(first_ms),
                max: Duration::from_millis(first_ms * factor),
                horizon: DEFAULT_HORIZON,
            };
            let elapsed = Duration::from_secs(elapsed_s);
            match p.after_failure(attempts, elapsed, jitter) {
                Retry::In(d) => {
                    prop_assert!(d >= p.first / 2 && d <= p.max);
                    prop_assert!(elapsed + d <= p.horizon);
                }
                Retry::GiveUp => {
                    let full = p.first.saturating_mul(1 << (attempts - 1).min(30)).min(p.max);
                    prop_assert!(elapsed + full > p.horizon, "given up only when even the whole delay falls past the horizon");
                }
            }
        }
    }
}
