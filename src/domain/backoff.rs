//! The backoff policy: when an order sent to a provider is checked next, and when orderctl
//! stops waiting for it. Pure: everything it needs comes from the order row (checks done, sent
//! time) and the clock value passed in, never from state held in a process.

use serde::Serialize;
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

/// A provider's own check schedule (the `schedule` of a provider in the setup file): every value
/// it sets replaces the global one (flag, environment or built-in default) for that provider's
/// orders; what it leaves out stays global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScheduleOverride {
    pub first_check: Option<Duration>,
    pub backoff_base: Option<Duration>,
    pub backoff_max: Option<Duration>,
    pub max_checks: Option<u32>,
    pub give_up_after: Option<Duration>,
}

/// Bounds of a provider's schedule, as `apply` and the database's CHECK constraints hold them.
pub mod bounds {
    use std::time::Duration;
    /// Longest duration any value may have.
    pub const LONGEST: Duration = Duration::from_secs(30 * 24 * 3600);
    /// Shortest delay between two checks: a provider is never asked more than ten times a second.
    pub const SHORTEST_BACKOFF: Duration = Duration::from_millis(100);
    /// Shortest give-up limit.
    pub const SHORTEST_GIVE_UP: Duration = Duration::from_secs(1);
    pub const MAX_CHECKS: u32 = 1000;
}

impl ScheduleOverride {
    pub fn is_empty(&self) -> bool {
        *self == ScheduleOverride::default()
    }

    /// Every value out of bounds, and every pair that contradicts itself, as (field, what to do).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        use bounds::*;
        let mut out = Vec::new();
        let d = |d: Duration| short_duration(d);
        let durations = [
            ("first_check", self.first_check, Duration::ZERO),
            ("backoff_base", self.backoff_base, SHORTEST_BACKOFF),
            ("backoff_max", self.backoff_max, SHORTEST_BACKOFF),
            ("give_up_after", self.give_up_after, SHORTEST_GIVE_UP),
        ];
        for (field, value, shortest) in durations {
            match value {
                Some(v) if v > LONGEST => {
                    out.push((field, format!("{field} is {}; write at most {}", d(v), d(LONGEST))));
                }
                Some(v) if v < shortest => {
                    out.push((field, format!("{field} is {}; write at least {}", d(v), d(shortest))));
                }
                _ => {}
            }
        }
        if let Some(n) = self.max_checks {
            if !(1..=MAX_CHECKS).contains(&n) {
                out.push(("max_checks", format!("max_checks is {n}; write a number from 1 to {MAX_CHECKS}")));
            }
        }
        if let (Some(base), Some(max)) = (self.backoff_base, self.backoff_max) {
            if max < base {
                out.push((
                    "backoff_max",
                    format!("backoff_max ({}) is shorter than backoff_base ({}); make it at least as long", d(max), d(base)),
                ));
            }
        }
        if let (Some(first), Some(give_up)) = (self.first_check, self.give_up_after) {
            if first > give_up {
                out.push((
                    "first_check",
                    format!("first_check ({}) is longer than give_up_after ({}); make it at most as long", d(first), d(give_up)),
                ));
            }
        }
        out
    }
}

/// Where a value of the schedule in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The built-in default: no flag or environment variable changed it.
    Default,
    /// A flag (`--first-check` ...) or its `ORDERCTL_*` environment variable.
    Setting,
    /// The provider's own `schedule` in the setup file.
    Provider,
    /// A global value that contradicted a value of the provider's (a provider's backoff_base
    /// longer than the global backoff_max, say), moved to the provider's value so the two fit.
    Adjusted,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::Setting => "setting",
            Source::Provider => "provider",
            Source::Adjusted => "adjusted",
        }
    }
}

/// Where each value of a [`ScheduleInForce`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sources {
    pub first_check: Source,
    pub backoff_base: Source,
    pub backoff_max: Source,
    pub max_checks: Source,
    pub give_up_after: Source,
}

/// The check schedule of one provider's orders: the global policy with the provider's own values
/// in place, and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInForce {
    pub policy: BackoffPolicy,
    pub sources: Sources,
}

/// The schedule in force for a provider's orders: every value the provider sets wins; the others
/// are the global ones. A global value that contradicts one of the provider's is moved to fit it
/// (source [`Source::Adjusted`]), so the result is always a valid policy: the provider's explicit
/// word is never overruled by a default it did not see.
pub fn merge(global: &BackoffPolicy, provider: &ScheduleOverride) -> ScheduleInForce {
    let defaults = BackoffPolicy::default();
    fn pick<T: PartialEq + Copy>(own: Option<T>, global: T, default: T) -> (T, Source) {
        match own {
            Some(v) => (v, Source::Provider),
            None if global == default => (global, Source::Default),
            None => (global, Source::Setting),
        }
    }
    let mut first = pick(provider.first_check, global.first_check, defaults.first_check);
    let mut base = pick(provider.backoff_base, global.backoff_base, defaults.backoff_base);
    let mut max = pick(provider.backoff_max, global.backoff_max, defaults.backoff_max);
    let checks = pick(provider.max_checks, global.max_checks, defaults.max_checks);
    let mut give_up = pick(provider.give_up_after, global.give_up_after, defaults.give_up_after);
    if max.0 < base.0 {
        // The side that is not the provider's moves; if both are (a row written around `apply`'s
        // checks), the cap rises to the base.
        if max.1 == Source::Provider && base.1 != Source::Provider {
            base = (max.0, Source::Adjusted);
        } else {
            max = (base.0, Source::Adjusted);
        }
    }
    if first.0 > give_up.0 {
        if give_up.1 == Source::Provider && first.1 != Source::Provider {
            first = (give_up.0, Source::Adjusted);
        } else {
            give_up = (first.0, Source::Adjusted);
        }
    }
    if give_up.0.is_zero() {
        give_up = (bounds::SHORTEST_GIVE_UP.max(first.0), Source::Adjusted);
    }
    let checks = if checks.0 == 0 { (1, Source::Adjusted) } else { checks };
    ScheduleInForce {
        policy: BackoffPolicy {
            first_check: first.0,
            backoff_base: base.0,
            backoff_max: max.0,
            max_checks: checks.0,
            give_up_after: give_up.0,
            jitter: global.jitter,
        },
        sources: Sources {
            first_check: first.1,
            backoff_base: base.1,
            backoff_max: max.1,
            max_checks: checks.1,
            give_up_after: give_up.1,
        },
    }
}

impl ScheduleInForce {
    /// One line for tables: `first 5s*, then 5s* doubling to 2m*, 30 checks, give up after 6h`,
    /// where `*` marks a value of the provider's own schedule and `~` a global one adjusted to fit
    /// it ([`SCHEDULE_MARKS`] says so under the table).
    pub fn summary(&self) -> String {
        let p = &self.policy;
        let s = &self.sources;
        let mark = |source: Source| match source {
            Source::Provider => "*",
            Source::Adjusted => "~",
            Source::Default | Source::Setting => "",
        };
        format!(
            "first {}{}, then {}{} doubling to {}{}, {}{} checks, give up after {}{}",
            short_duration(p.first_check),
            mark(s.first_check),
            short_duration(p.backoff_base),
            mark(s.backoff_base),
            short_duration(p.backoff_max),
            mark(s.backoff_max),
            p.max_checks,
            mark(s.max_checks),
            short_duration(p.give_up_after),
            mark(s.give_up_after)
        )
    }

    /// The schedule as JSON: each value with where it came from.
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.policy;
        let s = &self.sources;
        let d = |d: Duration, source: Source| serde_json::json!({"value": short_duration(d), "ms": d.as_millis() as u64, "source": source});
        serde_json::json!({
            "first_check": d(p.first_check, s.first_check),
            "backoff_base": d(p.backoff_base, s.backoff_base),
            "backoff_max": d(p.backoff_max, s.backoff_max),
            "max_checks": {"value": p.max_checks, "source": s.max_checks},
            "give_up_after": d(p.give_up_after, s.give_up_after),
        })
    }
}

/// The legend of [`ScheduleInForce::summary`]'s marks.
pub const SCHEDULE_MARKS: &str = "schedule: * set by the provider's own schedule (setup file), ~ a global value adjusted to fit \
     it; the others come from flags, ORDERCTL_* environment variables or the built-in defaults";

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

    #[test]
    fn a_provider_schedule_replaces_only_what_it_sets() {
        let global = BackoffPolicy { max_checks: 25, ..Default::default() };
        let own = ScheduleOverride {
            first_check: Some(Duration::from_secs(5)),
            backoff_base: Some(Duration::from_secs(5)),
            backoff_max: Some(Duration::from_secs(120)),
            max_checks: None,
            give_up_after: Some(Duration::from_secs(6 * 3600)),
        };
        let s = merge(&global, &own);
        assert_eq!(s.policy.first_check, Duration::from_secs(5));
        assert_eq!(s.policy.max_checks, 25);
        assert_eq!(
            (s.sources.first_check, s.sources.max_checks, s.sources.backoff_max),
            (Source::Provider, Source::Setting, Source::Provider)
        );
        assert_eq!(s.summary(), "first 5s*, then 5s* doubling to 2m*, 25 checks, give up after 6h*");
        let plain = merge(&BackoffPolicy::default(), &ScheduleOverride::default());
        assert_eq!(plain.summary(), "first 1m, then 30s doubling to 10m, 20 checks, give up after 24h");
        assert_eq!(plain.sources.first_check, Source::Default);
    }

    #[test]
    fn a_global_value_that_contradicts_the_provider_is_moved_to_fit_it() {
        // The provider's base is longer than the global cap: the cap rises to it.
        let own = ScheduleOverride { backoff_base: Some(Duration::from_secs(900)), ..Default::default() };
        let s = merge(&BackoffPolicy::default(), &own);
        assert_eq!((s.policy.backoff_max, s.sources.backoff_max), (Duration::from_secs(900), Source::Adjusted));
        // The provider gives up sooner than the global first check: the first check comes at its give-up.
        let own = ScheduleOverride { give_up_after: Some(Duration::from_secs(30)), ..Default::default() };
        let s = merge(&BackoffPolicy::default(), &own);
        assert_eq!((s.policy.first_check, s.sources.first_check), (Duration::from_secs(30), Source::Adjusted));
        assert!(s.policy.validate().is_ok());
        assert!(s.summary().contains("first 30s~"), "{}", s.summary());
    }

    #[test]
    fn provider_schedules_out_of_bounds_are_named_by_field() {
        let own = ScheduleOverride {
            first_check: Some(Duration::from_secs(7200)),
            backoff_base: Some(Duration::from_millis(10)),
            backoff_max: Some(Duration::from_secs(40 * 24 * 3600)),
            max_checks: Some(0),
            give_up_after: Some(Duration::from_secs(3600)),
        };
        let fields: Vec<&str> = own.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["backoff_base", "backoff_max", "max_checks", "first_check"]);
        let own = ScheduleOverride {
            backoff_base: Some(Duration::from_secs(60)),
            backoff_max: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        assert_eq!(own.problems()[0].0, "backoff_max");
        assert!(ScheduleOverride::default().problems().is_empty());
    }

    fn duration_between(lo: Duration, hi: Duration) -> impl Strategy<Value = Duration> {
        (lo.as_millis() as u64..=hi.as_millis() as u64).prop_map(Duration::from_millis)
    }

    /// A global policy as `PolicyArgs::policy` accepts it.
    fn global_policy() -> impl Strategy<Value = BackoffPolicy> {
        (
            prop_oneof![Just(Duration::from_secs(60)), duration_between(Duration::ZERO, Duration::from_secs(7200))],
            prop_oneof![Just(Duration::from_secs(30)), duration_between(Duration::ZERO, Duration::from_secs(3600))],
            duration_between(Duration::ZERO, Duration::from_secs(7200)),
            prop_oneof![Just(20u32), 1u32..200],
            prop_oneof![Just(Duration::from_secs(24 * 3600)), duration_between(Duration::from_secs(1), bounds::LONGEST)],
        )
            .prop_filter_map("a valid global policy", |(first, base, extra, checks, give_up)| {
                let p = BackoffPolicy {
                    first_check: first,
                    backoff_base: base,
                    backoff_max: base + extra,
                    max_checks: checks,
                    give_up_after: give_up,
                    jitter: 0.1,
                };
                p.validate().is_ok().then_some(p)
            })
    }

    /// A provider schedule as `apply` accepts it (any subset of values, each within bounds).
    fn provider_schedule() -> impl Strategy<Value = ScheduleOverride> {
        let backoff = || duration_between(bounds::SHORTEST_BACKOFF, Duration::from_secs(7200));
        (
            prop::option::of(duration_between(Duration::ZERO, Duration::from_secs(7200))),
            prop::option::of(backoff()),
            prop::option::of(backoff()),
            prop::option::of(1u32..=bounds::MAX_CHECKS),
            prop::option::of(duration_between(bounds::SHORTEST_GIVE_UP, bounds::LONGEST)),
        )
            .prop_map(|(first_check, backoff_base, backoff_max, max_checks, give_up_after)| ScheduleOverride {
                first_check,
                backoff_base,
                backoff_max,
                max_checks,
                give_up_after,
            })
            .prop_filter("apply refuses contradictions within one schedule", |o| o.problems().is_empty())
    }

    proptest! {
        #[test]
        fn the_merge_is_always_a_valid_policy_that_keeps_every_provider_value(
            global in global_policy(),
            own in provider_schedule(),
        ) {
            let s = merge(&global, &own);
            prop_assert!(s.policy.validate().is_ok(), "{:?}", s);
            prop_assert_eq!(s.policy.jitter, global.jitter);
            // Every value the provider sets is in force, marked as the provider's.
            let kept = [
                (own.first_check, s.policy.first_check, s.sources.first_check),
                (own.backoff_base, s.policy.backoff_base, s.sources.backoff_base),
                (own.backoff_max, s.policy.backoff_max, s.sources.backoff_max),
                (own.give_up_after, s.policy.give_up_after, s.sources.give_up_after),
            ];
            for (set, value, source) in kept {
                if let Some(v) = set {
                    prop_assert_eq!((value, source), (v, Source::Provider));
                }
            }
            if let Some(n) = own.max_checks {
                prop_assert_eq!((s.policy.max_checks, s.sources.max_checks), (n, Source::Provider));
            }
        }

        #[test]
        fn a_value_the_provider_leaves_out_is_the_global_one_or_moved_only_to_fit_the_provider(
            global in global_policy(),
            own in provider_schedule(),
        ) {
            let s = merge(&global, &own);
            let defaults = BackoffPolicy::default();
            let unset = [
                (own.first_check.is_none(), s.policy.first_check, global.first_check, defaults.first_check, s.sources.first_check),
                (own.backoff_base.is_none(), s.policy.backoff_base, global.backoff_base, defaults.backoff_base, s.sources.backoff_base),
                (own.backoff_max.is_none(), s.policy.backoff_max, global.backoff_max, defaults.backoff_max, s.sources.backoff_max),
                (own.give_up_after.is_none(), s.policy.give_up_after, global.give_up_after, defaults.give_up_after, s.sources.give_up_after),
            ];
            for (is_unset, value, global_value, default, source) in unset {
                if !is_unset {
                    continue;
                }
                match source {
                    Source::Default => prop_assert!(value == global_value && value == default),
                    Source::Setting => prop_assert!(value == global_value && value != default),
                    Source::Adjusted => prop_assert!(value != global_value),
                    Source::Provider => prop_assert!(false, "an unset value marked as the provider's"),
                }
            }
            // An adjusted value takes exactly the provider's value it had to fit.
            if s.sources.backoff_max == Source::Adjusted {
                prop_assert_eq!(Some(s.policy.backoff_max), own.backoff_base);
            }
            if s.sources.backoff_base == Source::Adjusted {
                prop_assert_eq!(Some(s.policy.backoff_base), own.backoff_max);
            }
            if s.sources.give_up_after == Source::Adjusted {
                prop_assert_eq!(Some(s.policy.give_up_after), own.first_check);
            }
            if s.sources.first_check == Source::Adjusted {
                prop_assert_eq!(Some(s.policy.first_check), own.give_up_after);
            }
            if s.sources.max_checks != Source::Provider {
                prop_assert_eq!(s.policy.max_checks, global.max_checks);
            }
        }

        #[test]
        fn without_a_provider_schedule_the_global_policy_is_in_force_unchanged(global in global_policy()) {
            let s = merge(&global, &ScheduleOverride::default());
            prop_assert_eq!(&s.policy, &global);
            let all = [s.sources.first_check, s.sources.backoff_base, s.sources.backoff_max, s.sources.max_checks, s.sources.give_up_after];
            prop_assert!(all.iter().all(|s| matches!(s, Source::Default | Source::Setting)));
        }
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
