//! The backoff policy: when an order sent to a provider is checked next, and when orderctl
//! stops waiting for it. Pure: everything it needs comes from the order row (checks done, sent
//! time) and the clock value passed in, never from state held in a process.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// From sending to the first check.
    pub first_check: Duration,
    /// After the first check; doubles with each further check.
    pub backoff_base: Duration,
    /// Cap on the delay between two checks.
    pub backoff_max: Duration,
    /// Scheduled checks per order; after that the order waits for the give-up deadline.
    pub max_checks: u32,
    /// From sending to giving up (external_status failed, flagged for an operator, no refund).
    pub give_up_after: Duration,
    /// Spread each delay by up to this fraction either way, so orders sent together do not
    /// hit the provider together forever.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            first_check: Duration::from_secs(60),
            backoff_base: Duration::from_secs(30),
            backoff_max: Duration::from_secs(600),
            max_checks: 20,
            give_up_after: Duration::from_secs(24 * 3600),
            jitter: 0.1,
        }
    }
}

/// What to do with an order that has no final answer yet. Every value is a duration from now,
/// on the database's clock: the policy never reads a clock of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Check again this long from now.
    CheckIn(Duration),
    /// No checks left: wait this long (until the deadline), then give up.
    GiveUpIn(Duration),
    /// The deadline has passed: give up now.
    GiveUpNow,
}

impl BackoffPolicy {
    pub fn validate(&self) -> Result<(), String> {
        if self.backoff_max < self.backoff_base {
            return Err(format!(
                "--backoff-max ({}) must not be shorter than --backoff-base ({})",
                humantime::format_duration(self.backoff_max),
                humantime::format_duration(self.backoff_base)
            ));
        }
        if self.max_checks == 0 {
            return Err("--max-checks must be at least 1".into());
        }
        if self.give_up_after.is_zero() {
            return Err("--give-up-after must be greater than 0".into());
        }
        if self.first_check > self.give_up_after {
            return Err(format!(
                "--first-check ({}) must not be longer than --give-up-after ({})",
                humantime::format_duration(self.first_check),
                humantime::format_duration(self.give_up_after)
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err("jitter must be between 0 and 0.5".into());
        }
        Ok(())
    }

    /// The nominal (jitter-free) delay before the next check, given the checks already done.
    /// 0 checks done: `first_check`; then base, 2×base, 4×base ... capped at `backoff_max`.
    pub fn nominal_delay(&self, checks_done: u32) -> Duration {
        if checks_done == 0 {
            return self.first_check;
        }
        let doublings = (checks_done - 1).min(40);
        let factor = 1u128 << doublings;
        let nanos = self.backoff_base.as_nanos().saturating_mul(factor);
        let capped = nanos.min(self.backoff_max.as_nanos());
        Duration::from_nanos(capped.min(u64::MAX as u128) as u64)
    }

    /// The delay with jitter applied; `unit` is a random number in [0, 1).
    pub fn jittered_delay(&self, checks_done: u32, unit: f64) -> Duration {
        let d = self.nominal_delay(checks_done);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        d.mul_f64(factor.max(0.0))
    }

    /// Decide the next step of an order first dispatched `elapsed` ago, after `answered` checks
    /// that the provider answered and `no_news` attempts that brought nothing (a failed query,
    /// garbage, an outage). No-news attempts stretch the delay like any check, but only answers
    /// count against `max_checks`, so an outage does not use up an order's checks.
    pub fn next_step(&self, elapsed: Duration, answered: u32, no_news: u32, unit: f64) -> NextStep {
        let Some(left) = self.give_up_after.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            return NextStep::GiveUpNow;
        };
        if answered >= self.max_checks {
            return NextStep::GiveUpIn(left);
        }
        let delay = self.jittered_delay(answered.saturating_add(no_news), unit);
        if delay >= left {
            NextStep::GiveUpIn(left)
        } else {
            NextStep::CheckIn(delay)
        }
    }

    /// The message recorded when an order is given up, e.g. "no final answer after 24h".
    pub fn give_up_message(&self) -> String {
        format!("no final answer after {}", short_duration(self.give_up_after))
    }
}

/// "24h", "90m", "45s", "31.4s", "250ms": how operators write durations (humantime would say
/// "1day", or "31s 435ms 464us").
pub fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        _ if ms < 1000 => format!("{ms}ms"),
        _ if ms % 1000 != 0 && ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => {
            let s = d.as_secs();
            if s % 3600 == 0 {
                format!("{}h", s / 3600)
            } else if s % 60 == 0 {
                format!("{}m", s / 60)
            } else if s >= 3600 {
                format!("{}h{}m", s / 3600, (s % 3600) / 60)
            } else if s >= 60 {
                format!("{}m{}s", s / 60, s % 60)
            } else {
                format!("{s}s")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn default_schedule_is_60s_then_30s_doubling_capped_at_10m() {
        let p = BackoffPolicy::default();
        let secs: Vec<u64> = (0..8).map(|n| p.nominal_delay(n).as_secs()).collect();
        assert_eq!(secs, vec![60, 30, 60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn durations_read_the_way_operators_write_them() {
        let f = |ms: u64| short_duration(Duration::from_millis(ms));
        assert_eq!(
            [f(0), f(250), f(31_435), f(45_000), f(90_000), f(150_000), f(86_400_000)],
            ["0s", "250ms", "31.4s", "45s", "1m30s", "2m30s", "24h"]
        );
        assert_eq!(f(5_400_000), "90m");
    }

    #[test]
    fn give_up_message_reads_like_the_domain_says() {
        assert_eq!(BackoffPolicy::default().give_up_message(), "no final answer after 24h");
        let p = BackoffPolicy { give_up_after: Duration::from_secs(3600 * 23), ..Default::default() };
        assert_eq!(p.give_up_message(), "no final answer after 23h");
    }

    #[test]
    fn after_max_checks_the_order_waits_for_its_deadline() {
        let p = BackoffPolicy { max_checks: 3, ..Default::default() };
        let elapsed = 10 * MIN;
        assert_eq!(p.next_step(elapsed, 3, 0, 0.5), NextStep::GiveUpIn(p.give_up_after - elapsed));
        assert_eq!(p.next_step(p.give_up_after, 0, 0, 0.5), NextStep::GiveUpNow);
        assert_eq!(p.next_step(p.give_up_after * 2, 0, 0, 0.5), NextStep::GiveUpNow);
    }

    #[test]
    fn no_news_stretches_the_delay_but_keeps_the_check_budget() {
        let p = BackoffPolicy { max_checks: 3, jitter: 0.0, ..Default::default() };
        assert_eq!(p.next_step(10 * MIN, 3, 0, 0.5), NextStep::GiveUpIn(p.give_up_after - 10 * MIN));
        // 1 answer and 10 no-news attempts: still checking, at the capped delay.
        assert_eq!(p.next_step(10 * MIN, 1, 10, 0.5), NextStep::CheckIn(Duration::from_secs(600)));
    }

    #[test]
    fn bad_policies_are_refused_with_the_flag_names() {
        let p = BackoffPolicy { backoff_max: Duration::from_secs(1), ..Default::default() };
        assert!(p.validate().unwrap_err().contains("--backoff-max"));
        let p = BackoffPolicy { max_checks: 0, ..Default::default() };
        assert!(p.validate().unwrap_err().contains("--max-checks"));
        let p = BackoffPolicy {
            first_check: Duration::from_secs(7200),
            give_up_after: Duration::from_secs(3600),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("--first-check"));
    }

    proptest! {
        #[test]
        fn delays_grow_and_never_exceed_the_cap(base in 1u64..100_000, max_mult in 1u64..1000, n in 0u32..200) {
            let p = BackoffPolicy {
                backoff_base: Duration::from_millis(base),
                backoff_max: Duration::from_millis(base * max_mult),
                ..Default::default()
            };
            if n >= 1 {
                prop_assert!(p.nominal_delay(n + 1) >= p.nominal_delay(n));
                prop_assert!(p.nominal_delay(n) <= p.backoff_max);
                prop_assert!(p.nominal_delay(n) >= p.backoff_base);
            }
        }

        #[test]
        fn jitter_stays_within_its_band(n in 0u32..50, unit in 0.0f64..1.0) {
            let p = BackoffPolicy::default();
            let nominal = p.nominal_delay(n).as_secs_f64();
            let j = p.jittered_delay(n, unit).as_secs_f64();
            prop_assert!(j >= nominal * 0.9 - 1e-6 && j <= nominal * 1.1 + 1e-6);
        }

        #[test]
        fn next_check_never_passes_the_deadline(checks in 0u32..30, no_news in 0u32..30, elapsed_s in 0u64..200_000, unit in 0.0f64..1.0) {
            let p = BackoffPolicy::default();
            let elapsed = Duration::from_secs(elapsed_s);
            match p.next_step(elapsed, checks, no_news, unit) {
                NextStep::CheckIn(d) => {
                    prop_assert!(elapsed + d < p.give_up_after);
                    prop_assert!(checks < p.max_checks);
                }
                NextStep::GiveUpIn(d) => prop_assert_eq!(elapsed + d, p.give_up_after),
                NextStep::GiveUpNow => prop_assert!(elapsed >= p.give_up_after),
            }
        }

        #[test]
        fn a_full_schedule_uses_at_most_max_checks_and_ends_at_the_deadline(max_checks in 1u32..40, first in 0u64..120) {
            let p = BackoffPolicy { max_checks, first_check: Duration::from_secs(first), ..Default::default() };
            let mut elapsed = Duration::ZERO;
            let mut checks = 0;
            loop {
                match p.next_step(elapsed, checks, 0, 0.5) {
                    NextStep::CheckIn(d) => { elapsed += d; checks += 1; }
                    NextStep::GiveUpIn(d) => { elapsed += d; }
                    NextStep::GiveUpNow => break,
                }
                prop_assert!(checks <= max_checks);
            }
            prop_assert_eq!(elapsed, p.give_up_after);
        }
    }
}
