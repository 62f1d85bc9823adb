//! Whether a provider can take orders now, as a pure decision: an operator's pause or drain,
//! causes the provider gave itself for refusing (no balance, maintenance, a product
//! unavailable), and the circuit breaker that a run of failed calls opens. The database keeps
//! the state shared by every daemon (`db::provider_health`); this module says what it means.

use super::answers::{CheckOutcome, PlacementOutcome};
use super::lifecycle::states::{BreakerState, OperatorHold, UnavailableCause};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;

/// A provider's health settings from the setup file (`low_balance`, `hold_for`, `breaker`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSettings {
    /// Below this dealer balance: `doctor` warns, the gauge's alert fires, one log line.
    pub low_balance: Option<Decimal>,
    /// How long orders wait for an unavailable provider (no fallback) before failing as a rejection.
    #[serde(with = "humantime_serde_secs")]
    pub hold_for: Duration,
    /// Failed calls in a row that open the breaker.
    pub breaker_failures: u32,
    /// How long an open breaker stays open before one probe call decides.
    #[serde(with = "humantime_serde_secs")]
    pub breaker_cool_down: Duration,
    /// How often an unavailable provider is probed (a balance call) whether it is back.
    #[serde(with = "humantime_serde_secs")]
    pub probe_every: Duration,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

pub const DEFAULT_HOLD_FOR: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_BREAKER_FAILURES: u32 = 5;
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);
/// While the breaker is not closed, every daemon together makes at most one call per this.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Without a reply carrying the balance for this long, a daemon asks for it.
pub const BALANCE_REFRESH: Duration = Duration::from_secs(300);
/// How often an unavailable provider is asked (a balance call) whether it is back.
pub const UNAVAILABLE_PROBE: Duration = Duration::from_secs(30);

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            low_balance: None,
            hold_for: DEFAULT_HOLD_FOR,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cool_down: DEFAULT_BREAKER_COOL_DOWN,
            probe_every: UNAVAILABLE_PROBE,
        }
    }
}

impl HealthSettings {
    /// As stored in `providers.health_settings` (only what differs from the defaults).
    pub fn to_json(&self) -> Value {
        let d = HealthSettings::default();
        let mut m = serde_json::Map::new();
        if let Some(l) = self.low_balance {
            m.insert("low_balance".into(), json!(l.to_string()));
        }
        if self.hold_for != d.hold_for {
            m.insert("hold_for_ms".into(), json!(self.hold_for.as_millis() as u64));
        }
        if self.breaker_failures != d.breaker_failures {
            m.insert("breaker_failures".into(), json!(self.breaker_failures));
        }
        if self.breaker_cool_down != d.breaker_cool_down {
            m.insert("breaker_cool_down_ms".into(), json!(self.breaker_cool_down.as_millis() as u64));
        }
        if self.probe_every != d.probe_every {
            m.insert("probe_every_ms".into(), json!(self.probe_every.as_millis() as u64));
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> HealthSettings {
        let d = HealthSettings::default();
        let ms = |k: &str| v.get(k).and_then(Value::as_u64).map(Duration::from_millis);
        HealthSettings {
            low_balance: v.get("low_balance").and_then(Value::as_str).and_then(|s| Decimal::from_str(s).ok()),
            hold_for: ms("hold_for_ms").unwrap_or(d.hold_for),
            breaker_failures: v.get("breaker_failures").and_then(Value::as_u64).map(|n| n as u32).unwrap_or(d.breaker_failures),
            breaker_cool_down: ms("breaker_cool_down_ms").unwrap_or(d.breaker_cool_down),
            probe_every: ms("probe_every_ms").unwrap_or(d.probe_every),
        }
    }

    /// A balance at or below which the provider counts as out of balance (refusing orders).
    pub fn is_low(&self, balance: Decimal) -> bool {
        match self.low_balance {
            Some(l) => balance < l,
            None => false,
        }
    }

    /// A balance good enough to send orders again after a "no balance" refusal.
    pub fn is_enough(&self, balance: Decimal) -> bool {
        balance > Decimal::ZERO && !self.is_low(balance)
    }
}

/// What is known of a provider's money (dealer data), as the careful-placement rule reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Funds {
    /// The dealer balance last reported (a Znet placement reply, a balance call, a profile).
    pub balance: Option<Decimal>,
    /// The highest cost a placement reply of this provider named.
    pub highest_cost: Option<Decimal>,
    /// The provider ran out of balance and is available again; no placement accepted since.
    pub back_from_no_balance: bool,
}

/// How placements to a provider may go out now. Checks are never paced by this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pace {
    /// Up to the provider's `max_in_flight`, as every call.
    Free,
    /// One placement at a time across every daemon and command (why, for the log).
    OneAtATime(String),
}

/// The balance below which the placements in flight could spend more than the account holds:
/// `max_in_flight` placements at the highest cost seen, or `low_balance` when that is higher.
/// None: nothing to judge by (no cost seen and no `low_balance`).
pub fn cushion(s: &HealthSettings, max_in_flight: i32, highest_cost: Option<Decimal>) -> Option<Decimal> {
    let in_flight = highest_cost.map(|c| c * Decimal::from(max_in_flight.max(1)));
    match (s.low_balance, in_flight) {
        (Some(low), Some(spend)) => Some(low.max(spend)),
        (low, spend) => low.or(spend),
    }
}

/// Careful placements. With `max_in_flight` placements in flight at once, every one sent after
/// the account runs dry is refused: a provider that runs out mid-batch would refuse up to
/// `max_in_flight` orders before the first refusal is recorded. So while what is known of the
/// balance no longer covers what the placements in flight could spend ([`cushion`]), or right
/// after the provider came back from "no balance", placements go one at a time: the next one is claimed only once the previous answer
/// (and the balance it carried) is recorded, so the first "no balance" refusal is the only one.
/// The rule is pure and lives here, beside the gate, so the lane (which holds the permits),
/// the one-off commands and the tests read one definition; the database only supplies facts.
/// A balance not known yet paces nothing: a provider that never answers (an outage, a wrong
/// URL) would otherwise get its placements one at a time for as long as it does not, and the
/// prober asks for the balance within a daemon's first minute.
pub fn pace(f: &Funds, s: &HealthSettings, max_in_flight: i32) -> Pace {
    if max_in_flight <= 1 {
        // The provider's permits already allow one call at a time.
        return Pace::Free;
    }
    if f.back_from_no_balance {
        return Pace::OneAtATime("it has just come back from no balance".into());
    }
    match (f.balance, cushion(s, max_in_flight, f.highest_cost)) {
        (Some(balance), Some(cushion)) if balance < cushion => Pace::OneAtATime(format!(
            "its balance {balance} is below {cushion}, what {max_in_flight} placements in flight could spend"
        )),
        _ => Pace::Free,
    }
}

/// A balance a placement reply carried that makes placements careful: callers of one process
/// learn it from their replies before the database has it.
pub fn below_cushion(balance: Decimal, cushion: Option<Decimal>) -> bool {
    cushion.map(|c| balance < c).unwrap_or(false)
}

/// Does a provider cause cover the whole provider, or only the order's product there?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Provider,
    Product,
}

/// Text folded for matching: lower case, Turkish letters and accents to plain ASCII.
fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .map(|c| match c {
            'ı' | 'î' | 'ì' | 'í' => 'i',
            'ş' => 's',
            'ğ' => 'g',
            'ü' | 'û' => 'u',
            'ö' => 'o',
            'ç' => 'c',
            'â' | 'á' | 'à' => 'a',
            '_' | '-' => ' ',
            c => c,
        })
        .collect()
}

/// The leading code of a rejection text (`130 maintenance`, `8: ...`).
fn leading_code(folded: &str) -> Option<u32> {
    let digits: String = folded.trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A placement rejection that says the provider cannot take *any* order like this one now
/// (providers.md, "Rejections that describe the provider, not the order"). Read the least
/// helpfully: any code, any case, with or without Turkish letters.
pub fn provider_cause(message: &str) -> Option<(UnavailableCause, Scope)> {
    let t = fold(message);
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if (t.contains("yetersiz") && t.contains("bakiye"))
        || has(&["insufficient balance", "insufficient funds", "not enough balance", "balance is not enough", "low balance"])
    {
        return Some((UnavailableCause::NoBalance, Scope::Provider));
    }
    let code = leading_code(&t);
    if code == Some(130) || has(&["bakim", "maintenance"]) {
        return Some((UnavailableCause::Maintenance, Scope::Provider));
    }
    if code == Some(110) || has(&["stok yok", "stokta yok", "out of stock", "product unavailable", "product not available"]) {
        return Some((UnavailableCause::ProductUnavailable, Scope::Product));
    }
    None
}

/// A placement refusal that describes the provider (no balance, maintenance, a product out of
/// stock), not the order: the provider cannot take it now (`provider_cause`).
pub fn describes_provider(outcome: &PlacementOutcome) -> bool {
    matches!(outcome, PlacementOutcome::Rejected { message } if provider_cause(message).is_some())
}

/// The dealer balance a placement reply carried (Znet `OK|cost|balance`).
pub fn balance_in_reply(outcome: &PlacementOutcome) -> Option<Decimal> {
    match outcome {
        PlacementOutcome::Accepted { balance, .. } => *balance,
        _ => None,
    }
}

/// A placement reply that counts against the breaker: no usable answer (transport failure,
/// 5xx, empty or HTML body, garbage) or an authentication refusal.
pub fn placement_failed(outcome: &PlacementOutcome) -> bool {
    match outcome {
        PlacementOutcome::Ambiguous { .. } => true,
        PlacementOutcome::Rejected { message } => is_auth_refusal(message),
        _ => false,
    }
}

/// A check call (one request, maybe a batch) that counts against the breaker: no order got a
/// usable answer from it. A definite "query failed" reply is the provider answering (the
/// adapter says so in the outcome, never a text to match). A call that never left (its turn
/// under the rate limit did not come) is not a call: neither failed nor answered.
pub fn check_failed<'a>(outcomes: impl IntoIterator<Item = &'a CheckOutcome>) -> bool {
    let mut any = false;
    for o in outcomes {
        match o {
            CheckOutcome::NotAsked { .. } => {}
            CheckOutcome::NoNews { answered: false, .. } => any = true,
            _ => return false,
        }
    }
    any
}

/// Whether a check call left at all (any of its orders was asked).
pub fn check_made<'a>(outcomes: impl IntoIterator<Item = &'a CheckOutcome>) -> bool {
    outcomes.into_iter().any(|o| !matches!(o, CheckOutcome::NotAsked { .. }))
}

/// x-stor 120-123 (token, IP), Znet's empty reply: the credentials or the allow list.
fn is_auth_refusal(message: &str) -> bool {
    matches!(leading_code(&fold(message)), Some(120..=123))
}

/// The breaker after one call's result: (new state, failures in a row, what changed).
pub fn after_call(state: BreakerState, failures: u32, failed: bool, s: &HealthSettings) -> (BreakerState, u32, Option<String>) {
    use BreakerState as B;
    match (state, failed) {
        (B::Closed, false) => (B::Closed, 0, None),
        (B::Closed, true) if failures + 1 >= s.breaker_failures.max(1) => (
            B::Open,
            failures + 1,
            Some(format!(
                "breaker opened after {} failed calls in a row: no placements, calls at most one per second, a probe in {}",
                failures + 1,
                humantime::format_duration(s.breaker_cool_down)
            )),
        ),
        (B::Closed, true) => (B::Closed, failures + 1, None),
        (B::HalfOpen, false) => (B::Closed, 0, Some("breaker closed: the probe call was answered".into())),
        (B::HalfOpen, true) => (
            B::Open,
            failures + 1,
            Some(format!(
                "breaker re-opened: the probe call failed; next probe in {}",
                humantime::format_duration(s.breaker_cool_down)
            )),
        ),
        (B::Open, false) => (B::Open, failures, None),
        (B::Open, true) => (B::Open, failures + 1, None),
    }
}

/// What is known about a provider's health, read from the database.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub name: String,
    pub settings: HealthSettings,
    pub hold: Option<(OperatorHold, String)>,
    pub breaker: Option<(BreakerState, Duration)>,
    /// (package id or 0 for the whole provider, cause, reason, how long ago it was marked).
    pub unavailable: Vec<(i64, UnavailableCause, String, Duration)>,
}

/// May a placement with this provider go out now?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// An operator paused the provider: the order waits (no fallback, no bound, no flag).
    Paused(String),
    /// The provider cannot take it: the fallback takes it, or it waits; `expired` once the
    /// provider has been unavailable longer than its `hold_for`.
    Blocked {
        reason: String,
        expired: bool,
    },
}

pub fn gate(h: &Health, package_id: i64) -> Gate {
    let name = &h.name;
    let hold_for = humantime::format_duration(h.settings.hold_for);
    match &h.hold {
        Some((OperatorHold::Paused, why)) => return Gate::Paused(format!("provider {name} is paused by an operator: {why}")),
        Some((OperatorHold::Draining, why)) => {
            return Gate::Blocked { reason: format!("provider {name} is draining (no new placements): {why}"), expired: false }
        }
        None => {}
    }
    if let Some((b @ (BreakerState::Open | BreakerState::HalfOpen), since)) = h.breaker {
        return Gate::Blocked {
            reason: format!("provider {name}'s breaker is {b}: its calls keep failing (waits up to {hold_for})"),
            expired: since > h.settings.hold_for,
        };
    }
    let found = h.unavailable.iter().find(|(p, ..)| *p == 0 || *p == package_id);
    match found {
        Some((_, cause, why, since)) => Gate::Blocked {
            reason: format!("provider {name} cannot take orders ({cause}): {why} (waits up to {hold_for})"),
            expired: *since > h.settings.hold_for,
        },
        None => Gate::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_that_describe_the_provider_are_told_from_the_others() {
        let c = |m: &str| provider_cause(m).map(|x| x.0);
        assert_eq!(c("3: Yetersiz Bakiye"), Some(UnavailableCause::NoBalance));
        assert_eq!(c("8: Bağlantı hatası veya yetersiz bakiye"), Some(UnavailableCause::NoBalance));
        assert_eq!(c("1: YETERSİZ BAKİYE"), Some(UnavailableCause::NoBalance));
        assert_eq!(c("x-stor: Insufficient balance"), Some(UnavailableCause::NoBalance));
        assert_eq!(c("x-stor: insufficient_balance"), Some(UnavailableCause::NoBalance));
        assert_eq!(c("130 maintenance (x-stor said: down)"), Some(UnavailableCause::Maintenance));
        assert_eq!(c("5: Sistem bakımda"), Some(UnavailableCause::Maintenance));
        assert_eq!(c("110 product unavailable"), Some(UnavailableCause::ProductUnavailable));
        assert_eq!(provider_cause("3: Stok yok").map(|x| x.1), Some(Scope::Product));
        assert_eq!(c("3: Kupur Bilgisi Bulunamadı"), None);
        assert_eq!(c("109 product not found"), None);
        assert_eq!(c("114: missing parameter"), None);
    }

    #[test]
    fn the_balance_comes_from_an_accepted_znet_reply() {
        // As Znet's adapter reads "OK|10.12|980.88" (its conformance tests hold it to that).
        let znet = PlacementOutcome::Accepted {
            external_order_id: None,
            message: "accepted".into(),
            early: None,
            cost: Some(Decimal::new(1012, 2)),
            balance: Some(Decimal::new(98088, 2)),
        };
        assert_eq!(balance_in_reply(&znet), Some(Decimal::new(98088, 2)));
        let xstor = PlacementOutcome::Accepted {
            external_order_id: Some("1".into()),
            message: "accepted as x-stor order 1".into(),
            early: None,
            cost: Some(Decimal::new(2, 0)),
            balance: None,
        };
        assert_eq!(balance_in_reply(&xstor), None);
        assert_eq!(balance_in_reply(&PlacementOutcome::Rejected { message: "remaining balance 1".into() }), None);
    }

    #[test]
    fn placements_go_one_at_a_time_when_the_balance_no_longer_covers_those_in_flight() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        let s = HealthSettings::default();
        let known =
            |balance: &str| Funds { balance: Some(d(balance)), highest_cost: Some(d("10.12")), back_from_no_balance: false };
        assert_eq!(cushion(&s, 16, Some(d("10.12"))), Some(d("161.92")), "16 placements in flight at the highest cost");
        assert_eq!(pace(&known("161.92"), &s, 16), Pace::Free, "exactly covered");
        assert!(matches!(pace(&known("161.91"), &s, 16), Pace::OneAtATime(why) if why.contains("below 161.92")));
        assert_eq!(pace(&known("0"), &s, 1), Pace::Free, "one in flight is one at a time already");
        let low = HealthSettings { low_balance: Some(d("500")), ..Default::default() };
        assert_eq!(cushion(&low, 16, Some(d("10.12"))), Some(d("500")), "low_balance when it is higher");
        assert!(matches!(pace(&known("400"), &low, 16), Pace::OneAtATime(_)));
        let back = Funds { back_from_no_balance: true, ..known("10000") };
        assert!(
            matches!(pace(&back, &s, 16), Pace::OneAtATime(why) if why.contains("come back")),
            "first placement after a top-up alone"
        );
        assert_eq!(pace(&Funds::default(), &s, 16), Pace::Free, "nothing known: nothing to judge by");
        let priced = Funds { highest_cost: Some(d("45.50")), ..Default::default() };
        assert_eq!(
            pace(&priced, &s, 16),
            Pace::Free,
            "a price but no balance (x-stor between profile reads): nothing to judge by"
        );
        assert!(below_cushion(d("100"), Some(d("161.92"))));
        assert!(!below_cushion(d("100"), None));
    }

    #[test]
    fn the_breaker_opens_after_a_run_and_one_probe_decides() {
        let s = HealthSettings { breaker_failures: 3, ..Default::default() };
        let (b, n, _) = after_call(BreakerState::Closed, 1, true, &s);
        assert_eq!((b, n), (BreakerState::Closed, 2));
        let (b, n, said) = after_call(BreakerState::Closed, 2, true, &s);
        assert_eq!((b, n), (BreakerState::Open, 3));
        assert!(said.unwrap().contains("opened"));
        assert_eq!(after_call(BreakerState::Closed, 2, false, &s).1, 0, "a usable answer ends the run");
        assert_eq!(after_call(BreakerState::HalfOpen, 3, false, &s).0, BreakerState::Closed);
        assert_eq!(after_call(BreakerState::HalfOpen, 3, true, &s).0, BreakerState::Open);
        assert_eq!(after_call(BreakerState::Open, 3, false, &s).0, BreakerState::Open, "only the probe closes it");
    }

    #[test]
    fn a_pause_waits_and_an_unavailable_provider_is_bounded() {
        let mut h = Health { name: "z".into(), ..Default::default() };
        assert_eq!(gate(&h, 7), Gate::Open);
        h.unavailable.push((7, UnavailableCause::ProductUnavailable, "110".into(), Duration::from_secs(5)));
        assert_eq!(gate(&h, 8), Gate::Open, "another product is still placed");
        assert!(matches!(gate(&h, 7), Gate::Blocked { expired: false, .. }));
        h.unavailable[0].3 = Duration::from_secs(3600);
        assert!(matches!(gate(&h, 7), Gate::Blocked { expired: true, .. }));
        h.hold = Some((OperatorHold::Paused, "dealer down".into()));
        assert!(matches!(gate(&h, 7), Gate::Paused(r) if r.contains("dealer down")));
    }

    #[test]
    fn failed_calls_are_the_machine_kind() {
        assert!(placement_failed(&PlacementOutcome::Ambiguous { reason: "x-stor answered HTTP 500".into() }));
        assert!(placement_failed(&PlacementOutcome::Rejected { message: "121 token error".into() }));
        assert!(!placement_failed(&PlacementOutcome::Rejected { message: "3: Yetersiz bakiye".into() }));
        let no_news = CheckOutcome::failed("Znet status check: connection refused");
        let answered = CheckOutcome::Waiting { message: String::new() };
        assert!(check_failed([&no_news]));
        assert!(!check_failed([&no_news, &answered]));
        // A call that never left is no call: neither failed nor answered.
        let not_asked = CheckOutcome::NotAsked { reason: "no turn under the rate limit".into() };
        assert!(!check_made([&not_asked]) && check_made([&not_asked, &no_news]));
        assert!(!check_failed([&not_asked]) && check_failed([&not_asked, &no_news]));
        assert!(!placement_failed(&PlacementOutcome::NotSent { reason: "no turn".into() }));
    }
}
