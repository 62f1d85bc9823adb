//! The simulator's HTTP/1.1 server: a thread per connection reads requests (keep-alive) and
//! answers each itself while it holds one of the server's worker slots (as many as
//! `--threads`: at most that many requests are answered at once, the rest wait for a slot, as
//! at a provider with that many workers).
//!
//! Answered on the connection's own thread, not handed to a pool: a hand-off to a worker and
//! back is two thread wake-ups per request, and on a machine the simulator shares with
//! orderctl and Postgres (the benchmark's) those wake-ups were about half the simulator's CPU.
//!
//! Why not tiny_http, which this replaced: its connection task pool counts a waiting thread
//! as free until that thread wakes, so two connections accepted close together can both be
//! given to one thread; the second then waits until the first (a keep-alive connection) is
//! closed by its client. Under load one request in a few thousand hung for the client's whole
//! timeout (20 s), which made benchmarks and timing-sensitive tests lie.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Longest request head (request line and headers) and body accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    reply_to: SyncSender<Vec<u8>>,
}

impl Request {
    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn respond(self, status: u16, content_type: &str, body: &[u8]) {
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            reason(status),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        // The connection may be gone already; nothing to tell anyone then.
        let _ = self.reply_to.send(out);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// What answers a request: called on its connection's thread, with a worker slot
/// (`0..workers`) held for it alone.
pub type Handler = dyn Fn(usize, Request) + Send + Sync;

pub struct Server {
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
}

/// The worker slots, handed out in the order requests asked for them (first come, first
/// served, as a queue of requests in front of a provider's workers: with a plain condition
/// variable any waiter could take a slot given back, and under load one request waited a
/// second behind others that arrived after it).
struct Slots {
    state: Mutex<SlotState>,
    given_back: Condvar,
}

struct SlotState {
    free: Vec<usize>,
    /// The ticket the next request to ask gets, and the ticket served next.
    next_ticket: u64,
    serving: u64,
}

impl Slots {
    fn new(workers: usize) -> Slots {
        let state = SlotState { free: (0..workers).rev().collect(), next_ticket: 0, serving: 0 };
        Slots { state: Mutex::new(state), given_back: Condvar::new() }
    }

    /// A free slot, waiting for one in turn; None once the server is stopped.
    fn take(&self, stopped: &AtomicBool) -> Option<usize> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        loop {
            if stopped.load(Ordering::SeqCst) {
                // Not served: the turn passes to the next ticket.
                if s.serving == ticket {
                    s.serving += 1;
                }
                self.given_back.notify_all();
                return None;
            }
            if s.serving == ticket {
                if let Some(slot) = s.free.pop() {
                    s.serving += 1;
                    // The next ticket may find a slot free too.
                    self.given_back.notify_all();
                    return Some(slot);
                }
            }
            s = self.given_back.wait_timeout(s, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn give(&self, slot: usize) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).free.push(slot);
        self.given_back.notify_all();
    }
}

impl Server {
    /// Listen on `listen` and answer with `handler`, at most `workers` requests at once.
    pub fn bind(listen: &str, workers: usize, handler: Arc<Handler>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let slots = Arc::new(Slots::new(workers));
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = stopped.clone();
        std::thread::Builder::new().name("sim-accept".into()).spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (slots, handler, stop) = (slots.clone(), handler.clone(), stop.clone());
                let _ = std::thread::Builder::new()
                    .name("sim-conn".into())
                    .spawn(move || serve_connection(stream, &slots, &*handler, &stop));
            }
        })?;
        Ok(Server { addr, stopped })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and answering; a connection waiting for a slot gives up within 100 ms.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_connection(stream: TcpStream, slots: &Slots, handler: &Handler, stopped: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    // An idle keep-alive connection is checked for shutdown now and then.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    while !stopped.load(Ordering::SeqCst) {
        let (req, rx, keep_alive) = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => {
                let _ = writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
        };
        let Some(slot) = slots.take(stopped) else { return };
        handler(slot, req);
        slots.give(slot);
        // Nothing sent (a handler that dropped the request): the connection is closed.
        let Ok(response) = rx.try_recv() else { return };
        if writer.write_all(&response).is_err() || !keep_alive {
            return;
        }
    }
}

/// Read one request. Ok(None): the client closed the connection between requests.
#[allow(clippy::type_complexity)]
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<(Request, Receiver<Vec<u8>>, bool)>> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    // Once a request has started, a slow client is waited for rather than dropped mid-request.
    let mut parts = line.split_whitespace();
    let (Some(method), Some(url), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("malformed request line"));
    };
    let (method, url, version) = (method.to_string(), url.to_string(), version.to_string());
    let mut headers = Vec::new();
    let mut head = line.len();
    loop {
        let mut h = String::new();
        loop {
            match reader.read_line(&mut h) {
                Ok(0) => return Err(bad("connection closed inside the headers")),
                Ok(_) => break,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e),
            }
        }
        head += h.len();
        if head > MAX_HEAD {
            return Err(bad("request head too long"));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let header =
        |name: &str| headers.iter().find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    if length > MAX_BODY {
        return Err(bad("request body too long"));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" { connection == "keep-alive" } else { connection != "close" };
    let (reply_to, rx) = sync_channel(1);
    Ok(Some((Request { method, url, headers, body, reply_to }, rx, keep_alive)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_for_a_free_worker_slot_and_none_is_given_once_stopped() {
        let slots = Arc::new(Slots::new(2));
        let stopped = Arc::new(AtomicBool::new(false));
        let (a, b) = (slots.take(&stopped).unwrap(), slots.take(&stopped).unwrap());
        assert_ne!(a, b);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let (slots, stopped) = (slots.clone(), stopped.clone());
            std::thread::spawn(move || tx.send(slots.take(&stopped)).unwrap())
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "both slots are busy: the third request waits");
        slots.give(a);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(a), "it gets the slot given back");
        waiting.join().unwrap();
        stopped.store(true, Ordering::SeqCst);
        slots.give(b);
        assert_eq!(slots.take(&stopped), None, "a stopped server answers nothing more");
    }

    #[test]
    fn slots_go_to_requests_in_the_order_they_asked() {
        let slots = Arc::new(Slots::new(1));
        let stopped = Arc::new(AtomicBool::new(false));
        let held = slots.take(&stopped).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut waiting = Vec::new();
        for n in 0..8 {
            let (mine, stopped, tx) = (slots.clone(), stopped.clone(), tx.clone());
            waiting.push(std::thread::spawn(move || {
                let slot = mine.take(&stopped).unwrap();
                tx.send(n).unwrap();
                mine.give(slot);
            }));
            // Each asks once the one before is waiting (its ticket is taken).
            let asked = n + 2;
            while slots.state.lock().unwrap().next_ticket < asked {
                std::thread::yield_now();
            }
        }
        slots.give(held);
        let served: Vec<u64> = (0..8).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(served, (0..8).collect::<Vec<u64>>(), "first come, first served");
        for w in waiting {
            w.join().unwrap();
        }
    }
}
