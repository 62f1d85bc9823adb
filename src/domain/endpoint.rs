//! Which webhook endpoints orderctl sends to (SSRF rules), pure. A URL that a tenant can set is
//! a way into the sender's network: loopback, link-local (169.254.0.0/16 and with it the cloud
//! metadata address), private and unspecified addresses are refused unless the endpoint says
//! `allow_private_network` (which also allows plain http there); a public host needs https
//! unless the endpoint says `allow_http`. `apply` checks the URL as written; the sender checks
//! every address a name resolves to, at each request (DNS rebinding).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an endpoint allows beyond public https.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub allow_private_network: bool,
    pub allow_http: bool,
}

/// Why an address is not public (None: it is).
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => non_public_v4(v4),
            None => non_public_v6(v6),
        },
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1])) {
        Some("private")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("broadcast or multicast")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local (cloud metadata)")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private")
    } else if ip.is_multicast() {
        Some("broadcast or multicast")
    } else {
        None
    }
}

/// Whether a request may go to this resolved address.
pub fn address_allowed(ip: IpAddr, access: Access) -> Result<(), String> {
    match non_public(ip) {
        Some(kind) if !access.allow_private_network => Err(format!(
            "the webhook's address {ip} is {kind}; refused (set \"allow_private_network\": true on the webhook to allow it)"
        )),
        _ => Ok(()),
    }
}

/// The URL as written: scheme, and a host that is an address (or `localhost`) checked as one.
pub fn url_allowed(url: &url::Url, access: Access) -> Result<(), String> {
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") => {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        _ => None,
    };
    if let Some(ip) = host {
        address_allowed(ip, access)?;
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if access.allow_http || access.allow_private_network => Ok(()),
        "http" => Err("plain http is refused; use https, or set \"allow_http\": true on the webhook".into()),
        other => Err(format!("scheme {other} is not http(s)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, access: Access) -> Result<(), String> {
        url_allowed(&url::Url::parse(url).unwrap(), access)
    }

    #[test]
    fn private_link_local_loopback_and_unspecified_are_refused_unless_allowed() {
        let strict = Access::default();
        let private = Access { allow_private_network: true, allow_http: false };
        for url in [
            "https://127.0.0.1/h",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/h",
            "https://172.16.5.4/h",
            "https://192.168.1.1/h",
            "https://0.0.0.0/h",
            "https://[::1]/h",
            "https://[fd00::1]/h",
            "https://[fe80::1]/h",
            "https://[::ffff:10.0.0.1]/h",
            "https://localhost:8443/h",
        ] {
            assert!(check(url, strict).is_err(), "{url} refused");
            assert!(check(url, private).is_ok(), "{url} allowed with allow_private_network");
            assert!(check(&url.replace("https", "http"), private).is_ok(), "allow_private_network allows http too");
        }
        assert!(check("https://shop.example/h", strict).is_ok());
        assert!(check("https://93.184.216.34/h", strict).is_ok());
        let err = check("http://shop.example/h", strict).unwrap_err();
        assert!(err.contains("allow_http"), "{err}");
        assert!(check("http://shop.example/h", Access { allow_private_network: false, allow_http: true }).is_ok());
        assert!(check("http://10.0.0.1/h", Access { allow_private_network: false, allow_http: true }).is_err());
        assert!(address_allowed("169.254.169.254".parse().unwrap(), strict).unwrap_err().contains("link-local"));
    }
}
