//! The signatures every webhook request carries, both schemes, pure:
//!
//! - Standard Webhooks (the specification several webhook senders share, with verifier
//!   libraries in many languages): `webhook-id`, `webhook-timestamp` (unix seconds) and
//!   `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
//!   A `whsec_<base64>` secret's key is the decoded base64 part, as the specification says; any
//!   other (older) secret's key is its bytes as they are.
//! - The legacy `Orderctl-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>`
//!   over the whole secret string, kept for receivers written before.
//!
//! During a rotation both the new and the previous secret sign: one `v1` entry each, in both
//! headers, so a receiver holding either verifies.

use crate::domain::webhook::Secret;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
/// The legacy headers.
pub const SIGNATURE_HEADER: &str = "Orderctl-Signature";
pub const EVENT_ID_HEADER: &str = "Orderctl-Event-Id";

/// The prefix of secrets in the Standard Webhooks form.
pub const WHSEC: &str = "whsec_";

/// The HMAC key of a secret for Standard Webhooks.
pub fn standard_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(WHSEC).map(|b| B64.decode(b)) {
        Some(Ok(key)) if !key.is_empty() => key,
        _ => secret.as_bytes().to_vec(),
    }
}

/// Whether a secret is in the `whsec_<base64>` form (its key is the decoded part).
pub fn is_standard_secret(secret: &str) -> bool {
    secret.strip_prefix(WHSEC).map(|b| B64.decode(b).map(|k| !k.is_empty()).unwrap_or(false)).unwrap_or(false)
}

/// A new secret in the `whsec_<base64>` form, from 24 random bytes (`webhook rotate-secret --generate`).
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{WHSEC}{}", B64.encode(bytes))
}

/// `webhook-signature`: one `v1,<base64>` entry per secret, space-separated.
pub fn standard_signature(secrets: &[&Secret], id: &str, unix_seconds: i64, body: &str) -> String {
    let content = format!("{id}.{unix_seconds}.{body}");
    secrets
        .iter()
        .map(|s| format!("v1,{}", B64.encode(hmac(&standard_key(s.expose()), content.as_bytes()))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Orderctl-Signature`: `t=<unix seconds>` and one `v1=<hex>` per secret.
pub fn legacy_signature(secrets: &[&Secret], unix_seconds: i64, body: &str) -> String {
    let content = format!("{unix_seconds}.{body}");
    let mut out = format!("t={unix_seconds}");
    for s in secrets {
        out.push_str(&format!(",v1={}", hex::encode(hmac(s.expose().as_bytes(), content.as_bytes()))));
    }
    out
}

fn hmac(key: &[u8], content: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(content);
    m.finalize().into_bytes().to_vec()
}

/// Whether a legacy header was made with `secret` over `body` (any of its `v1` entries, in
/// constant time). What a receiver does; orderctl's tests use it to check what was sent.
pub fn verify_legacy(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1s = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1s.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    v1s.iter().any(|v1| {
        let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
        m.update(format!("{t}.{body}").as_bytes());
        m.verify_slice(v1).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_signature_is_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // The value `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec-test` prints.
        let s = Secret::new("whsec-test".into());
        assert_eq!(
            legacy_signature(&[&s], 1700000000, "{\"a\":1}"),
            "t=1700000000,v1=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"
        );
    }

    #[test]
    fn a_legacy_signature_verifies_with_either_secret_of_a_rotation_only() {
        let body = r#"{"id":"x","type":"order.approved"}"#;
        let (new, old) = (Secret::new("right".into()), Secret::new("before".into()));
        let header = legacy_signature(&[&new, &old], 1_700_000_000, body);
        assert!(verify_legacy("right", &header, body));
        assert!(verify_legacy("before", &header, body));
        assert!(!verify_legacy("wrong", &header, body));
        assert!(!verify_legacy("right", &header, &body.replace("approved", "rejected")));
        assert!(!verify_legacy("right", &header.replace("t=1700000000", "t=1700000001"), body));
        assert!(!verify_legacy("right", "garbage", body));
    }

    #[test]
    fn standard_signatures_use_the_decoded_whsec_key_and_one_entry_per_secret() {
        // The specification's own example (standard-webhooks, spec/standard-webhooks.md).
        let s = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let sig = standard_signature(&[&s], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let legacy = Secret::new("plain-secret".into());
        assert_eq!(standard_key("plain-secret"), b"plain-secret".to_vec());
        assert_eq!(standard_signature(&[&s, &legacy], "a", 1, "b").split(' ').count(), 2);
        assert!(is_standard_secret(&new_secret()) && !is_standard_secret("whsec_") && !is_standard_secret("whsec-x"));
    }
}
