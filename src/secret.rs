//! Credentials kept out of the setup file and the database: a credential value may be a
//! reference, `{"env": "ZNET_SIFRE"}` (an environment variable) or `{"file": "/run/credentials/
//! orderctl.service/znet"}` (a file: systemd `LoadCredential=`, Docker/Kubernetes secrets; one
//! trailing newline trimmed). The database stores the reference; each process resolves it when
//! it first needs it and keeps the value until [`forget_resolved`] (the daemon's SIGHUP /
//! `systemctl reload`): a rotated file is used from the next reload on, never half-way through.
//! A reference that does not resolve is tried again each time it is needed, so providing the
//! missing variable's file needs no reload. Messages name the variable or file, never a value.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Values resolved by this process, by reference (`env:NAME`, `file:/path`).
static RESOLVED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Drop every value resolved so far: each reference is read again when next needed.
/// Returns how many were held.
pub fn forget_resolved() -> usize {
    RESOLVED.lock().unwrap_or_else(|p| p.into_inner()).take().map(|m| m.len()).unwrap_or(0)
}

/// Where a credential's value comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Reference<'a> {
    Env(&'a str),
    File(&'a str),
}

impl std::fmt::Display for Reference<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Env(v) => write!(f, "environment variable {v}"),
            Reference::File(p) => write!(f, "file {p}"),
        }
    }
}

/// The reference `v` is, if it is one: an object with exactly one of `env`/`file`, a
/// non-empty string.
pub fn reference(v: &Value) -> Option<Reference<'_>> {
    let Value::Object(m) = v else { return None };
    if m.len() != 1 {
        return None;
    }
    match m.iter().next()? {
        (k, Value::String(s)) if k == "env" && !s.is_empty() => Some(Reference::Env(s)),
        (k, Value::String(s)) if k == "file" && !s.is_empty() => Some(Reference::File(s)),
        _ => None,
    }
}

/// The value of one credential: a plain string as it is, a reference as this process first
/// read it (since the last [`forget_resolved`]).
pub fn resolve_value(v: &Value) -> Result<String, String> {
    let Some(r) = reference(v) else { return read(v) };
    let key = match r {
        Reference::Env(var) => format!("env:{var}"),
        Reference::File(path) => format!("file:{path}"),
    };
    if let Some(held) = RESOLVED.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.get(&key)) {
        return Ok(held.clone());
    }
    let value = read(v)?;
    RESOLVED.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).insert(key, value.clone());
    Ok(value)
}

/// A credential's value as it is now: no cache.
fn read(v: &Value) -> Result<String, String> {
    match (v, reference(v)) {
        (Value::String(s), _) => Ok(s.clone()),
        (_, Some(r @ Reference::Env(var))) => match std::env::var(var) {
            Ok(s) if !s.is_empty() => Ok(s),
            Ok(_) => Err(format!("{r} is empty")),
            Err(_) => Err(format!("{r} is not set")),
        },
        (_, Some(r @ Reference::File(path))) => match std::fs::read_to_string(path) {
            Ok(s) => {
                let s = s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_string();
                if s.is_empty() {
                    Err(format!("{r} is empty"))
                } else {
                    Ok(s)
                }
            }
            Err(e) => Err(format!("{r} cannot be read ({})", e.kind())),
        },
        _ => Err("not a string or a reference".into()),
    }
}

/// Every credential resolved: an object of strings, or why one field does not resolve
/// ("credentials.sifre: environment variable ZNET_SIFRE is not set").
pub fn resolve(credentials: &Value) -> Result<Value, String> {
    let Value::Object(m) = credentials else { return Ok(credentials.clone()) };
    let mut out = Map::new();
    for (field, v) in m {
        let s = resolve_value(v).map_err(|why| format!("credentials.{field}: {why}"))?;
        out.insert(field.clone(), Value::String(s));
    }
    Ok(Value::Object(out))
}

/// The fields given as plain values rather than references (a warning from apply and doctor).
pub fn plain_fields(credentials: &Value) -> Vec<String> {
    match credentials {
        Value::Object(m) => m.iter().filter(|(_, v)| v.is_string()).map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_and_failures_name_the_place_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sifre");
        std::fs::write(&file, "from-a-file\n").unwrap();
        std::env::set_var("ORDERCTL_SECRET_TEST_TOKEN", "from-env");
        let creds =
            json!({"kod": "bayi1", "sifre": {"file": file.to_str().unwrap()}, "tok": {"env": "ORDERCTL_SECRET_TEST_TOKEN"}});
        assert_eq!(resolve(&creds).unwrap(), json!({"kod": "bayi1", "sifre": "from-a-file", "tok": "from-env"}));
        assert_eq!(plain_fields(&creds), vec!["kod".to_string()]);
        let e = resolve(&json!({"sifre": {"env": "ORDERCTL_SECRET_TEST_MISSING"}})).unwrap_err();
        assert_eq!(e, "credentials.sifre: environment variable ORDERCTL_SECRET_TEST_MISSING is not set");
        let e = resolve(&json!({"sifre": {"file": "/nonexistent/sifre"}})).unwrap_err();
        assert!(e.contains("file /nonexistent/sifre cannot be read"), "{e}");
        assert_eq!(reference(&json!({"env": "A", "file": "/b"})), None, "one source only");
    }

    #[test]
    fn a_resolved_value_is_kept_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("whsec");
        let r = json!({"file": file.to_str().unwrap()});
        assert!(resolve_value(&r).is_err(), "missing: not held, tried again next time");
        std::fs::write(&file, "first\n").unwrap();
        assert_eq!(resolve_value(&r).unwrap(), "first");
        std::fs::write(&file, "second\n").unwrap();
        assert_eq!(resolve_value(&r).unwrap(), "first", "held until a reload");
        assert!(forget_resolved() >= 1);
        assert_eq!(resolve_value(&r).unwrap(), "second");
    }
}
