//! The simulator's memory: orders by protocol and reference, counters, and each order's fate.

use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which protocol an order was placed through. The same reference placed through both is two
/// orders (a fallback provider may reuse it), never a double placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Znet,
    Xstor,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Znet => "znet",
            Proto::Xstor => "xstor",
        }
    }
}

/// How an order ends, derived from (seed, reference) alone so tests can predict it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fate {
    pub cancelled: bool,
    pub pin: String,
    /// How long after placement the order turns final.
    pub final_after: Duration,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: spreads every input bit over the output.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The fate of the order with this reference: cancelled when its hash falls under
/// `cancel_share`, final `complete_after + jitter * fraction` after placement, and a PIN of the
/// four groups of four hex digits, like `09CF-F4E2-ACA3-B2E8`.
pub fn order_fate(seed: u64, reference: &str, cancel_share: f64, complete_after: Duration, jitter: Duration) -> Fate {
    // FNV-1a over the reference, keyed by the seed; stable across Rust versions (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ mix(seed);
    for b in reference.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let (a, b, c) = (mix(h), mix(h ^ 0x5151), mix(h ^ 0xa3a3));
    let pin = format!("{:04X}-{:04X}-{:04X}-{:04X}", c >> 48, (c >> 32) & 0xffff, (c >> 16) & 0xffff, c & 0xffff);
    Fate { cancelled: unit(a) < cancel_share, pin, final_after: complete_after + jitter.mul_f64(unit(b)) }
}

/// Where an order is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Approved,
    Cancelled,
}

pub struct Order {
    pub reference: String,
    pub order_id: u64,
    pub fate: Fate,
    pub price_cents: i64,
    placed: Instant,
    placed_at_ms: u64,
    pub status_calls: u64,
}

impl Order {
    pub fn state(&self, now: Instant) -> State {
        if now.duration_since(self.placed) < self.fate.final_after {
            State::Waiting
        } else if self.fate.cancelled {
            State::Cancelled
        } else {
            State::Approved
        }
    }
}

#[derive(Default)]
pub struct Counters {
    pub placement_calls: AtomicU64,
    pub status_calls: AtomicU64,
    pub double_placements: AtomicU64,
    pub faults_injected: AtomicU64,
    /// Protocol calls being answered right now, and the most there ever were at once: what a
    /// test reads to prove a limit on calls in flight held across every client.
    pub in_flight: AtomicU64,
    pub peak_in_flight: AtomicU64,
    /// The same for placement calls and status calls apart: a test proves that placements
    /// went one at a time while checks kept their concurrency.
    pub placements_in_flight: AtomicU64,
    pub peak_placements_in_flight: AtomicU64,
    pub checks_in_flight: AtomicU64,
    pub peak_checks_in_flight: AtomicU64,
    /// Placements refused because the account's balance did not cover them.
    pub no_balance_refusals: AtomicU64,
    /// When each protocol call arrived (ms since the epoch): what a test reads to measure a rate
    /// limit at the provider (`GET /_sim/calls`).
    pub call_times_ms: Mutex<Vec<u64>>,
}

impl Counters {
    pub fn record_call(&self) {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.call_times_ms.lock().unwrap_or_else(|p| p.into_inner()).push(ms);
    }
    pub fn calls(&self) -> Value {
        json!({"call_times_ms": *self.call_times_ms.lock().unwrap_or_else(|p| p.into_inner())})
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Starting balance of each simulated account, in cents.
const OPENING_BALANCE_CENTS: i64 = 10_000_000;

#[derive(Default)]
struct Orders {
    znet: HashMap<String, Order>,
    xstor: HashMap<String, Order>,
    /// x-stor order id -> reference, for checks without `uuid=1`.
    xstor_ids: HashMap<u64, String>,
    /// References of placement calls that recorded nothing (a 500, an empty reply, a refusal).
    znet_seen: HashSet<String>,
    xstor_seen: HashSet<String>,
    next_id: u64,
}

impl Orders {
    fn map(&mut self, proto: Proto) -> &mut HashMap<String, Order> {
        match proto {
            Proto::Znet => &mut self.znet,
            Proto::Xstor => &mut self.xstor,
        }
    }
    fn seen(&mut self, proto: Proto) -> &mut HashSet<String> {
        match proto {
            Proto::Znet => &mut self.znet_seen,
            Proto::Xstor => &mut self.xstor_seen,
        }
    }
}

pub struct Store {
    orders: Mutex<Orders>,
    pub counters: Counters,
    balances: [AtomicI64; 2],
}

/// A placement that reused a recorded reference: the original order's id.
pub struct Double(pub u64);

/// What a status lookup found.
pub struct Found {
    pub reference: String,
    pub order_id: u64,
    pub state: State,
    pub pin: String,
    pub price_cents: i64,
}

impl Store {
    pub fn new() -> Store {
        Store {
            orders: Mutex::new(Orders::default()),
            counters: Counters::default(),
            balances: [AtomicI64::new(OPENING_BALANCE_CENTS), AtomicI64::new(OPENING_BALANCE_CENTS)],
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Orders> {
        // A panicking worker must not take the simulator down with it.
        self.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn placement_call(&self) {
        bump(&self.counters.placement_calls);
    }
    pub fn status_call(&self) {
        bump(&self.counters.status_calls);
    }
    pub fn no_balance_refusal(&self) {
        bump(&self.counters.no_balance_refusals);
    }
    pub fn fault(&self) {
        bump(&self.counters.faults_injected);
    }

    /// Set one account's balance (None: both).
    pub fn set_balance(&self, proto: Option<Proto>, cents: i64) {
        for (i, b) in self.balances.iter().enumerate() {
            if proto.map(|p| p as usize == i).unwrap_or(true) {
                b.store(cents, Ordering::Relaxed);
            }
        }
    }

    pub fn balance_cents(&self, proto: Proto) -> i64 {
        self.balances[proto as usize].load(Ordering::Relaxed)
    }

    /// Record a new order; a reference seen before through the same protocol is a double
    /// placement and leaves the original untouched. Returns the order id and its state now.
    pub fn place(&self, proto: Proto, reference: &str, fate: Fate, price_cents: i64) -> Result<(u64, State), Double> {
        let placed = Instant::now();
        let placed_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut orders = self.lock();
        if let Some(existing) = orders.map(proto).get(reference) {
            let id = existing.order_id;
            drop(orders);
            bump(&self.counters.double_placements);
            return Err(Double(id));
        }
        orders.next_id += 1;
        let order_id = orders.next_id;
        let order =
            Order { reference: reference.to_string(), order_id, fate, price_cents, placed, placed_at_ms, status_calls: 0 };
        let state = order.state(placed);
        orders.map(proto).insert(reference.to_string(), order);
        if proto == Proto::Xstor {
            orders.xstor_ids.insert(order_id, reference.to_string());
        }
        drop(orders);
        self.balances[proto as usize].fetch_sub(price_cents, Ordering::Relaxed);
        Ok((order_id, state))
    }

    /// The id of the order recorded with this reference, counting a double placement when there
    /// is one (the caller refuses the placement).
    pub fn double_placement(&self, proto: Proto, reference: &str) -> Option<u64> {
        let id = self.lock().map(proto).get(reference).map(|o| o.order_id)?;
        bump(&self.counters.double_placements);
        Some(id)
    }

    /// Remember that a placement call with this reference recorded nothing.
    pub fn seen_unrecorded(&self, proto: Proto, reference: &str) {
        let mut orders = self.lock();
        if !orders.map(proto).contains_key(reference) {
            orders.seen(proto).insert(reference.to_string());
        }
    }

    /// A slowly recorded placement is about to be recorded: its reference is no longer "seen
    /// without an order".
    pub fn forget_seen(&self, proto: Proto, reference: &str) {
        self.lock().seen(proto).remove(reference);
    }

    /// Whether an earlier placement call with this reference recorded nothing.
    pub fn was_seen_unrecorded(&self, proto: Proto, reference: &str) -> bool {
        self.lock().seen(proto).contains(reference)
    }

    /// Look up orders by reference (or, for x-stor without `uuid=1`, by order id), counting
    /// one status call on each order found.
    pub fn lookup(&self, proto: Proto, keys: &[&str], by_order_id: bool) -> Vec<Option<Found>> {
        let now = Instant::now();
        let mut orders = self.lock();
        keys.iter()
            .map(|k| {
                let reference = if by_order_id {
                    k.parse::<u64>().ok().and_then(|id| orders.xstor_ids.get(&id).cloned())?
                } else {
                    k.to_string()
                };
                let o = orders.map(proto).get_mut(&reference)?;
                o.status_calls += 1;
                Some(Found {
                    reference,
                    order_id: o.order_id,
                    state: o.state(now),
                    pin: o.fate.pin.clone(),
                    price_cents: o.price_cents,
                })
            })
            .collect()
    }

    pub fn reset(&self) {
        *self.lock() = Orders::default();
        self.counters.call_times_ms.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for c in [
            &self.counters.placement_calls,
            &self.counters.status_calls,
            &self.counters.double_placements,
            &self.counters.faults_injected,
            &self.counters.peak_in_flight,
            &self.counters.peak_placements_in_flight,
            &self.counters.peak_checks_in_flight,
            &self.counters.no_balance_refusals,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for b in &self.balances {
            b.store(OPENING_BALANCE_CENTS, Ordering::Relaxed);
        }
    }

    /// The `/_sim/stats` document.
    pub fn stats(&self) -> Value {
        let orders = self.lock();
        let mut all: Vec<(Proto, &Order)> =
            orders.znet.values().map(|o| (Proto::Znet, o)).chain(orders.xstor.values().map(|o| (Proto::Xstor, o))).collect();
        all.sort_by_key(|(_, o)| o.order_id);
        let now = Instant::now();
        let mut by_order = serde_json::Map::new();
        for (_, o) in &all {
            let n = by_order.get(&o.reference).and_then(|v| v.as_u64()).unwrap_or(0);
            by_order.insert(o.reference.clone(), json!(n + o.status_calls));
        }
        let list: Vec<Value> = all
            .iter()
            .map(|(p, o)| {
                json!({
                    "reference": o.reference,
                    "provider": p.as_str(),
                    "order_id": o.order_id,
                    "outcome": if o.fate.cancelled { "cancelled" } else { "approved" },
                    "final": o.state(now) != State::Waiting,
                    "pin": o.fate.pin,
                    "status_calls": o.status_calls,
                    "placed_at_ms": o.placed_at_ms,
                    "price": money(o.price_cents),
                })
            })
            .collect();
        let c = &self.counters;
        json!({
            "orders_placed": all.len(),
            "placement_calls": c.placement_calls.load(Ordering::Relaxed),
            "peak_in_flight": c.peak_in_flight.load(Ordering::Relaxed),
            "peak_placements_in_flight": c.peak_placements_in_flight.load(Ordering::Relaxed),
            "peak_checks_in_flight": c.peak_checks_in_flight.load(Ordering::Relaxed),
            "no_balance_refusals": c.no_balance_refusals.load(Ordering::Relaxed),
            "double_placements": c.double_placements.load(Ordering::Relaxed),
            "status_calls": c.status_calls.load(Ordering::Relaxed),
            "status_checks_by_order": by_order,
            "faults_injected": c.faults_injected.load(Ordering::Relaxed),
            "orders": list,
        })
    }
}

/// Cents as a decimal string.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fates_are_deterministic_and_follow_the_share() {
        let d = Duration::from_secs(1);
        let a = order_fate(7, "ref-1", 0.5, d, d);
        assert_eq!(a, order_fate(7, "ref-1", 0.5, d, d));
        assert_ne!(a.pin, order_fate(8, "ref-1", 0.5, d, d).pin);
        assert!(a.final_after >= d && a.final_after < 2 * d);
        let cancelled = (0..1000).filter(|i| order_fate(1, &format!("r{i}"), 0.3, d, d).cancelled).count();
        assert!((200..400).contains(&cancelled), "{cancelled}");
        assert!((0..100).all(|i| !order_fate(1, &format!("r{i}"), 0.0, d, d).cancelled));
        assert!((0..100).all(|i| order_fate(1, &format!("r{i}"), 1.0, d, d).cancelled));
    }

    #[test]
    fn double_placement_keeps_the_original() {
        let s = Store::new();
        let f = order_fate(1, "r", 0.0, Duration::ZERO, Duration::ZERO);
        let (id, _) = s.place(Proto::Znet, "r", f.clone(), 100).ok().unwrap();
        assert!(matches!(s.place(Proto::Znet, "r", f.clone(), 100), Err(Double(d)) if d == id));
        assert!(s.place(Proto::Xstor, "r", f, 100).is_ok(), "another protocol, another order");
        let st = s.stats();
        assert_eq!(st["double_placements"], 1);
        assert_eq!(st["orders_placed"], 2);
        assert_eq!(money(-1234), "-12.34");
    }

    #[test]
    fn references_seen_without_an_order_are_remembered_per_protocol_until_reset() {
        let s = Store::new();
        s.seen_unrecorded(Proto::Znet, "17");
        assert!(s.was_seen_unrecorded(Proto::Znet, "17"));
        assert!(!s.was_seen_unrecorded(Proto::Xstor, "17"));
        let f = order_fate(1, "18", 0.0, Duration::ZERO, Duration::ZERO);
        s.place(Proto::Znet, "18", f, 100).ok().unwrap();
        s.seen_unrecorded(Proto::Znet, "18");
        assert!(!s.was_seen_unrecorded(Proto::Znet, "18"), "a recorded order is not 'seen without an order'");
        s.reset();
        assert!(!s.was_seen_unrecorded(Proto::Znet, "17"));
    }
}
