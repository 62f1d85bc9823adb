//! Name resolution for the HTTP agents (providers and webhooks).
//!
//! ureq's default resolver starts a thread for every request that has a timeout, even for an
//! IP address and even when a pooled connection is then reused; at thousands of calls a
//! second that thread per call was a large share of the daemon's CPU. Here an IP address is
//! used as it is, and a name is looked up once and reused for a short while (a provider's DNS
//! change is seen within `NAME_TTL`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// How long a looked-up name is reused.
const NAME_TTL: Duration = Duration::from_secs(30);

/// An agent with `config` and this module's resolver.
pub(crate) fn agent(config: Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::new(), QuickResolver::default())
}

/// An agent with `config` whose resolver lets only addresses that `allowed` accepts through:
/// every address of every lookup is checked, so a name that resolves (or rebinds) to a refused
/// address is never connected to. Its error is an I/O error of kind `PermissionDenied`.
pub(crate) fn agent_checked(config: Config, allowed: fn(IpAddr) -> Result<(), String>) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::new(), CheckedResolver { inner: QuickResolver::default(), allowed })
}

#[derive(Debug)]
struct CheckedResolver {
    inner: QuickResolver,
    allowed: fn(IpAddr) -> Result<(), String>,
}

impl Resolver for CheckedResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.inner.resolve(uri, config, timeout)?;
        for a in addrs.iter() {
            (self.allowed)(a.ip())
                .map_err(|why| ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, why)))?;
        }
        Ok(addrs)
    }
}

#[derive(Debug, Default)]
struct QuickResolver {
    /// "host:port" → when it was looked up, and the addresses.
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
    lookup: DefaultResolver,
}

impl Resolver for QuickResolver {
    fn resolve(&self, uri: &Uri, config: &Config, timeout: NextTimeout) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(host), Some(port)) = (uri.host(), port(uri)) else {
            // Not a URL this module understands: the default resolver says what is wrong.
            return self.lookup.resolve(uri, config, timeout);
        };
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            let mut addrs = self.empty();
            addrs.push(SocketAddr::new(ip, port));
            return Ok(addrs);
        }
        let key = format!("{host}:{port}");
        if let Some((at, addrs)) = self.names.lock().unwrap().get(&key) {
            if at.elapsed() < NAME_TTL {
                return Ok(addrs.clone());
            }
        }
        // A failed lookup is not remembered: the next call asks again.
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        self.names.lock().unwrap().insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

fn port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &QuickResolver, url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let config = Config::default();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(1),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout).map(|a| a.to_vec()).unwrap_or_default()
    }

    #[test]
    fn addresses_are_used_as_they_are_and_names_are_looked_up_once() {
        let r = QuickResolver::default();
        assert_eq!(resolve(&r, "http://127.0.0.1:8080/x"), vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(resolve(&r, "http://[::1]/x"), vec!["[::1]:80".parse().unwrap()]);
        assert_eq!(resolve(&r, "https://10.1.2.3/x"), vec!["10.1.2.3:443".parse().unwrap()]);
        assert!(r.names.lock().unwrap().is_empty(), "addresses need no lookup");
        let local = resolve(&r, "http://localhost:9/x");
        assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        assert_eq!(r.names.lock().unwrap().len(), 1, "the name is remembered");
        assert_eq!(resolve(&r, "http://localhost:9/y"), local);
    }
}
