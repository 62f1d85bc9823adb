//! The permits a provider lane holds: slots of the provider's `max_in_flight`, rows in Postgres
//! so the limit holds across every process. A lane holds slots while it has work (renewing
//! their expiry), grows up to its capacity when its calls are all busy, and gives them back
//! when it goes idle, so another daemon can use them. A crashed holder's slots lapse by
//! themselves at their expiry.

use crate::db::permits;
use crate::db::Client;
use crate::error::Result;
use std::time::{Duration, Instant};

/// Give slots back after this long without work.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
/// Ask for more slots at most this often.
const GROW_EVERY: Duration = Duration::from_millis(250);

pub struct HeldPermits {
    provider: i64,
    holder: String,
    ttl: Duration,
    slots: Vec<i32>,
    renewed: Instant,
    asked: Option<Instant>,
    busy: Instant,
}

impl HeldPermits {
    pub fn new(provider: i64, holder: &str, ttl: Duration) -> HeldPermits {
        HeldPermits {
            provider,
            holder: holder.to_string(),
            ttl,
            slots: vec![],
            renewed: Instant::now(),
            asked: None,
            busy: Instant::now(),
        }
    }

    pub fn held(&self) -> usize {
        self.slots.len()
    }

    /// Try to hold `wanted` slots (asking at most every few hundred ms). Returns how many are held.
    pub fn grow(&mut self, c: &mut Client, wanted: usize) -> Result<usize> {
        self.busy = Instant::now();
        if self.slots.len() >= wanted || self.asked.map(|t| t.elapsed() < GROW_EVERY).unwrap_or(false) {
            return Ok(self.slots.len());
        }
        self.asked = Some(Instant::now());
        let more = permits::acquire(c, self.provider, &self.holder, (wanted - self.slots.len()) as i64, self.ttl)?;
        if !more.is_empty() {
            // A fresh expiry for all of them at once.
            self.slots.extend(more);
            self.renew(c)?;
        }
        Ok(self.slots.len())
    }

    /// Keep the slots from lapsing while they are used; slots lost meanwhile (this process was
    /// stalled past their expiry and another took them) are dropped.
    pub fn keep(&mut self, c: &mut Client) -> Result<()> {
        if !self.slots.is_empty() && self.renewed.elapsed() >= self.ttl / 3 {
            self.renew(c)?;
        }
        Ok(())
    }

    fn renew(&mut self, c: &mut Client) -> Result<()> {
        self.slots = permits::renew(c, self.provider, &self.holder, &self.slots, self.ttl)?;
        self.renewed = Instant::now();
        Ok(())
    }

    /// Idle for a while with nothing in flight: give the slots back.
    pub fn release_if_idle(&mut self, c: &mut Client, in_flight: usize) -> Result<()> {
        if in_flight == 0 && !self.slots.is_empty() && self.busy.elapsed() >= IDLE_RELEASE {
            self.release(c)?;
        }
        Ok(())
    }

    pub fn release(&mut self, c: &mut Client) -> Result<()> {
        permits::release(c, self.provider, &self.holder, &self.slots)?;
        self.slots.clear();
        Ok(())
    }
}
