//! TLS to Postgres with libpq's meaning of each sslmode, on rustls (tokio-postgres-rustls):
//!
//! | sslmode | encrypts | checks the chain | checks the host name |
//! |---|---|---|---|
//! | disable | no | | |
//! | allow, prefer | if the server offers it | no | no |
//! | require | yes | only with sslrootcert (libpq's rule) | no |
//! | verify-ca | yes | yes | no |
//! | verify-full | yes | yes | yes |
//!
//! Every mode goes through one verifier that also notes what the handshake was (protocol,
//! what was verified) for `doctor`; the connection itself does not tell.

use super::conninfo::{RootCert, SslMode, TlsSettings};
use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What a TLS handshake was, as `doctor` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    pub protocol: &'static str,
    /// "chain and host name", "chain", or "nothing".
    pub verified: &'static str,
}

pub type Seen = Arc<Mutex<Option<Encryption>>>;

/// The connector for these settings (None: sslmode=disable), and where its handshake is noted.
pub fn connector(s: &TlsSettings) -> Result<Option<(tokio_postgres_rustls::MakeRustlsConnect, Seen)>> {
    if s.mode == SslMode::Disable {
        return Ok(None);
    }
    // ring, as ureq already uses: no C toolchain (aws-lc) in the build. Its missing
    // post-quantum key exchange is what the deprecation is about.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, host) = match (s.mode, &s.root_cert) {
        (SslMode::VerifyFull, _) => (true, true),
        (SslMode::VerifyCa, _) => (true, false),
        // libpq: require with a root certificate behaves like verify-ca.
        (SslMode::Require, Some(_)) => (true, false),
        _ => (false, false),
    };
    let webpki = match (&s.root_cert, chain) {
        (Some(root), true) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider.clone())
                .build()
                .map_err(|e| Error::invalid(format!("sslrootcert: no usable CA certificate ({e})")))?,
        ),
        _ => None,
    };
    let seen: Seen = Arc::default();
    let verifier = Arc::new(Verifier { webpki, check_host: host, provider: provider.clone(), seen: seen.clone() });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert, "sslcert")?, read_key(key)?)
            .map_err(|e| Error::invalid(format!("sslcert/sslkey: the client certificate and key do not go together ({e})")))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Some((tokio_postgres_rustls::MakeRustlsConnect::new(config), seen)))
}

fn roots(root: &RootCert) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            for c in read_certs(path, "sslrootcert")? {
                store.add(c).map_err(|e| {
                    Error::invalid(format!("sslrootcert: {} holds a certificate rustls refuses ({e})", path.display()))
                })?;
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::invalid("sslrootcert=system: the operating system's trust store has no certificates")
                    .with_hint("install the CA bundle (Debian: ca-certificates), or give sslrootcert the CA file"));
            }
        }
    }
    Ok(store)
}

fn read_certs(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| Error::invalid(format!("{setting}: cannot read {} ({e})", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid(format!("{setting}: {} is not a PEM certificate file ({e})", path.display())))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{setting}: {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// The client key, refused when others may read it (libpq's rule: 0600 or less, or 0640 or
/// less when owned by root).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::invalid(format!("sslkey: cannot read {} ({e})", path.display())))?;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if meta.mode() & 0o777 & !allowed != 0 {
        return Err(Error::invalid(format!(
            "sslkey: {} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let pem = std::fs::read(path).map_err(|e| Error::invalid(format!("sslkey: cannot read {} ({e})", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| Error::invalid(format!("sslkey: {} holds no PEM private key", path.display())))
}

#[derive(Debug)]
struct Verifier {
    /// None: the chain is not checked (prefer, require without a root certificate).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    check_host: bool,
    provider: Arc<CryptoProvider>,
    seen: Seen,
}

impl Verifier {
    fn note(&self, protocol: &'static str) {
        let verified = match (&self.webpki, self.check_host) {
            (Some(_), true) => "chain and host name",
            (Some(_), false) => "chain",
            (None, _) => "nothing",
        };
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Encryption { protocol, verified });
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else { return Ok(ServerCertVerified::assertion()) };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.note("TLSv1.2");
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.note("TLSv1.3");
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A one-line reason naming the setting to fix, for a failed connection that TLS explains.
pub fn explain(e: &postgres::Error, s: &TlsSettings, host: &str) -> Option<Error> {
    let text = crate::error::short_message(e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        // tokio-rustls hands rustls's error over inside an io::Error, whose source() skips it.
        let inner =
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &(dyn std::error::Error + 'static));
        if let Some(tls) = err.downcast_ref::<rustls::Error>().or_else(|| inner?.downcast_ref::<rustls::Error>()) {
            return Some(Error::invalid(match tls {
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => format!(
                    "TLS: the server's certificate is not valid for host '{host}' (sslmode=verify-full checks the name; connect by a name the certificate holds)"
                ),
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => format!(
                    "TLS: the server's certificate is not signed by the CA in sslrootcert ({}); give sslrootcert the CA that signed it",
                    root_name(s)
                ),
                rustls::Error::InvalidCertificate(c) => format!("TLS: the server's certificate was refused ({c:?}); check sslrootcert and the server's certificate"),
                other => format!("TLS handshake failed ({other}); check sslmode, sslcert and sslkey"),
            }));
        }
        source = err.source();
    }
    if text.contains("server does not support TLS") {
        return Some(Error::invalid(format!(
            "TLS: the server does not offer TLS, but sslmode={} requires it; enable ssl on the server, or set sslmode=prefer/disable to allow plain text",
            s.mode.name()
        )));
    }
    let db = e.as_db_error()?;
    if s.mode == SslMode::Disable && db.code().code() == "28000" && db.message().contains("no encryption") {
        return Some(Error::invalid(
            "TLS: the server accepts only encrypted connections, but sslmode=disable; set sslmode=require or stricter",
        ));
    }
    None
}

fn root_name(s: &TlsSettings) -> String {
    match &s.root_cert {
        Some(RootCert::File(p)) => p.display().to_string(),
        Some(RootCert::System) => "system".into(),
        None => "not set".into(),
    }
}
