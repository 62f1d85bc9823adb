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

/// Every Rust source file under `src/<under>` as (path relative to `src/`, text): what the
/// unit tests that guard the source's shape (layers, provider kinds) read.
#[cfg(test)]
pub(crate) fn source_files(under: &str) -> Vec<(String, String)> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.join(under)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    out
}
