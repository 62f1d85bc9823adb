//! The database URL, read as libpq reads it: `sslmode`, `sslrootcert`, `sslcert`, `sslkey` in
//! the URL (or `key=value` string), else from `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
//! `PGSSLKEY`; sslmode `prefer` when neither says. rust-postgres's own parser knows none of the
//! three file settings, so they are taken out here and the rest is handed to it.
//! Settings libpq has and orderctl does not are refused by name rather than ignored.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// libpq's sslmode values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    /// Treated as `prefer` (libpq tries plain text first; the outcome is the same wherever the
    /// server accepts both).
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::invalid(format!("sslmode '{other}' is not a valid sslmode"))
                    .with_hint("use disable, allow, prefer, require, verify-ca or verify-full (libpq's values)"))
            }
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the certificates that may sign the server's come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store.
    System,
}

#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub mode: SslMode,
    pub root_cert: Option<RootCert>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub struct ConnInfo {
    /// What rust-postgres parses: the URL without the settings read here.
    pub rest: String,
    pub tls: TlsSettings,
}

const OURS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey"];
/// libpq settings orderctl does not implement: refused, so none is silently ignored.
const UNSUPPORTED: &[&str] = &[
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "sslcompression",
    "requiressl",
    "service",
    "servicefile",
    "requirepeer",
    "gssencmode",
    "gsslib",
    "krbsrvname",
    "gssdelegation",
    "passfile",
];

/// Read `url` (a `postgres://` URL or a `key=value` string) with `env` for the PG* variables.
pub fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<ConnInfo> {
    let (rest, found) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        take_from_url(url)?
    } else {
        take_from_keywords(url)
    };
    let get = |key: &str, var: &str| -> Option<String> {
        found.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).or_else(|| env(var).filter(|v| !v.is_empty()))
    };
    if let Some((key, _)) = found.iter().find(|(k, _)| UNSUPPORTED.contains(&k.as_str())) {
        return Err(Error::invalid(format!("the database URL sets '{key}', which orderctl does not support"))
            .with_hint("remove it; orderctl supports sslmode, sslrootcert (a file or 'system'), sslcert and sslkey"));
    }
    let root_cert =
        get("sslrootcert", "PGSSLROOTCERT").map(|v| if v == "system" { RootCert::System } else { RootCert::File(v.into()) });
    // libpq: the system's roots make verify-full the default.
    let default = if root_cert == Some(RootCert::System) { SslMode::VerifyFull } else { SslMode::Prefer };
    let mode = get("sslmode", "PGSSLMODE").map(|m| SslMode::parse(&m)).transpose()?.unwrap_or(default);
    let cert = get("sslcert", "PGSSLCERT").map(PathBuf::from);
    let key = get("sslkey", "PGSSLKEY").map(PathBuf::from);
    if root_cert == Some(RootCert::System) && !matches!(mode, SslMode::VerifyFull) {
        // libpq refuses this too: the system's roots vouch for any name they signed.
        return Err(Error::invalid(format!("sslrootcert=system needs sslmode=verify-full (sslmode is {})", mode.name()))
            .with_hint("set sslmode=verify-full, or give sslrootcert the CA file of your server"));
    }
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
        return Err(Error::invalid(format!(
            "sslmode={} needs sslrootcert (the CA that signed the server's certificate)",
            mode.name()
        ))
        .with_hint(
            "set sslrootcert=/path/to/ca.pem (or PGSSLROOTCERT), or sslrootcert=system for the operating system's roots",
        ));
    }
    if cert.is_some() != key.is_some() {
        return Err(Error::invalid("sslcert and sslkey go together: one is set without the other")
            .with_hint("give both the client certificate (sslcert) and its key (sslkey)"));
    }
    Ok(ConnInfo { rest, tls: TlsSettings { mode, root_cert, cert, key } })
}

type Found = Vec<(String, String)>;

fn take_from_url(url: &str) -> Result<(String, Found)> {
    let mut u = url::Url::parse(url).map_err(|e| {
        Error::invalid(format!("the database URL is not valid: {e}"))
            .with_hint("write it as postgres://USER[:PASSWORD]@HOST:PORT/DATABASE")
    })?;
    let pairs: Vec<(String, String)> = u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let (found, kept): (Found, Found) =
        pairs.into_iter().partition(|(k, _)| OURS.contains(&k.as_str()) || UNSUPPORTED.contains(&k.as_str()));
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((u.to_string(), found))
}

/// `host=db sslmode=require ...` (values without spaces or quotes).
fn take_from_keywords(s: &str) -> (String, Found) {
    let mut kept = Vec::new();
    let mut found = Vec::new();
    for part in s.split_whitespace() {
        match part.split_once('=') {
            Some((k, v)) if OURS.contains(&k) || UNSUPPORTED.contains(&k) => found.push((k.to_string(), v.to_string())),
            _ => kept.push(part),
        }
    }
    (kept.join(" "), found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_file_settings_are_taken_out_of_the_url_and_the_rest_is_kept() {
        let c = parse("postgres://u@db:5432/x?sslmode=verify-full&sslrootcert=/ca.pem&application_name=a", &none).unwrap();
        assert_eq!(c.rest, "postgres://u@db:5432/x?application_name=a");
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(RootCert::File("/ca.pem".into())));
        let c = parse("host=db user=u sslmode=require", &none).unwrap();
        assert_eq!(c.rest, "host=db user=u");
        assert_eq!(c.tls.mode, SslMode::Require);
    }

    #[test]
    fn prefer_by_default_and_the_environment_fills_what_the_url_does_not_say() {
        assert_eq!(parse("postgres://u@db/x", &none).unwrap().tls.mode, SslMode::Prefer);
        let env = |k: &str| match k {
            "PGSSLMODE" => Some("verify-ca".to_string()),
            "PGSSLROOTCERT" => Some("/env-ca.pem".to_string()),
            _ => None,
        };
        let c = parse("postgres://u@db/x", &env).unwrap();
        assert_eq!((c.tls.mode, c.tls.root_cert), (SslMode::VerifyCa, Some(RootCert::File("/env-ca.pem".into()))));
        let c = parse("postgres://u@db/x?sslmode=disable", &env).unwrap();
        assert_eq!(c.tls.mode, SslMode::Disable, "the URL wins over the environment");
    }

    #[test]
    fn bad_or_unsupported_settings_are_refused_by_name() {
        let e = parse("postgres://u@db/x?sslmode=verify", &none).err().unwrap();
        assert!(e.message.contains("sslmode 'verify'"), "{}", e.message);
        let e = parse("postgres://u@db/x?sslpassword=p", &none).err().unwrap();
        assert!(e.message.contains("'sslpassword'") && !e.message.contains("=p"), "{}", e.message);
        let e = parse("postgres://u@db/x?sslmode=verify-full", &none).err().unwrap();
        assert!(e.message.contains("sslrootcert"), "{}", e.message);
        let e = parse("postgres://u@db/x?sslmode=require&sslrootcert=system", &none).err().unwrap();
        assert!(e.message.contains("verify-full"), "{}", e.message);
        let e = parse("postgres://u@db/x?sslcert=/c.pem", &none).err().unwrap();
        assert!(e.message.contains("sslkey"), "{}", e.message);
    }
}
