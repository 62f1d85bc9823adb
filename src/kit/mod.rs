//! What the tests, the benchmark and the demo share to run orderctl against real servers: a
//! private PostgreSQL cluster (`cluster`), databases made for one run and dropped after it
//! (`database`), the simulator as a process of its own (`sim`), orders written as a shop's web
//! app writes them (`orders`), and waiting for a condition instead of sleeping (`wait_until`).
//! One copy of each, so a fix reaches all three.

pub mod cluster;
pub mod database;
pub mod orders;
pub mod pgbouncer;
pub mod sim;

use std::time::{Duration, Instant};

/// Check `done` every `every` until it holds (true) or `timeout` has passed (false).
pub fn wait_until(timeout: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
