//! `daemon --metrics-listen ADDR`: `GET /metrics` (Prometheus text format) and `GET /healthz`
//! (200 `ok` when the database answers and every lane made progress recently; 503 with a
//! one-line reason otherwise), on a plain TCP listener of its own thread.
//!
//! Nothing here touches the database or waits on the work: the supervisor keeps what health
//! and the gauges need up to date, so a scrape is an encode of counters in memory. One
//! connection at a time, each bounded by short timeouts, so a slow client only delays the
//! next scrape.

use super::Supervision;
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Bind the address now, so a taken or wrong address stops the daemon at start.
pub fn bind(addr: &str) -> Result<TcpListener> {
    let parsed: SocketAddr = addr.parse().map_err(|_| {
        Error::invalid(format!("--metrics-listen '{addr}' is not an address"))
            .with_hint("write it as HOST:PORT, e.g. 127.0.0.1:9187")
    })?;
    TcpListener::bind(parsed).map_err(|e| {
        Error::invalid(format!("cannot listen on {parsed} for metrics: {e}"))
            .with_hint("choose a free port (or stop what holds it), or leave --metrics-listen out")
    })
}

/// Serve until the daemon stops.
pub fn serve(listener: TcpListener, sup: Arc<Supervision>) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    log::info!("serving metrics on http://{addr}/metrics and health on http://{addr}/healthz");
    let _ = listener.set_nonblocking(true);
    let _ = std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !sup.stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = answer(stream, &sup) {
                        log::debug!("metrics: a request ended early: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    log::warn!("metrics: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    });
}

fn answer(stream: TcpStream, sup: &Supervision) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are read (and ignored) so the client sees its request consumed.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", crate::metrics::CONTENT_TYPE, crate::metrics::get().encode()),
        ("GET", "/healthz") => match health(sup) {
            None => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
            Some(why) => ("503 Service Unavailable", "text/plain; charset=utf-8", format!("{why}\n")),
        },
        ("GET", _) => ("404 Not Found", "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET\n".to_string()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// Why the daemon is not healthy, in one line; None when it is.
pub fn health(sup: &Supervision) -> Option<String> {
    if let Some(why) = sup.database_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return Some(format!("database unavailable: {why}"));
    }
    sup.unhealthy.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
