//! The guard on every outbound URL a user chose (webhook URLs now, provider base URLs later):
//! OWASP API7 / SSRF. Addresses are checked **after** DNS resolution, by the resolver the HTTP
//! client connects with, so a name that resolves to a private address — even one that changes
//! between checks (DNS rebinding) — is refused at connect time. IP literals in URLs are checked
//! before sending, since they are never resolved. Redirects are never followed and no proxy from
//! the environment is used (see [`client`]).
//!
//! The operator setting `allow_private_targets` turns the address check off (local development,
//! tests against loopback receivers); it is off by default.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an outbound target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForbiddenTarget {
    /// The host as written in the URL.
    pub host: String,
    /// The address it is, or resolves to.
    pub address: IpAddr,
    /// Which kind of range the address is in, e.g. "loopback".
    pub range: &'static str,
}

impl fmt::Display for ForbiddenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host == self.address.to_string() {
            write!(f, "refused to connect to {} ({} address)", self.address, self.range)?;
        } else {
            write!(
                f,
                "refused to connect to {}: it resolves to {} ({} address)",
                self.host, self.address, self.range
            )?;
        }
        f.write_str("; private and internal targets are blocked unless the operator allows them (LEADTIME_ALLOW_PRIVATE_TARGETS)")
    }
}

impl StdError for ForbiddenTarget {}

/// The kind of non-public range `ip` is in, if any.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private (RFC 1918)",
        _ if ip.is_link_local() => "link-local / cloud metadata",
        _ if ip.is_unspecified() || a == 0 => "\"this network\" (0.0.0.0/8)",
        _ if ip.is_broadcast() => "broadcast",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        _ if (224..=239).contains(&a) => "multicast",
        _ if a >= 240 => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4).map(|_| "IPv4-embedded IPv6 for a blocked IPv4");
    }
    let segments = ip.segments();
    Some(match segments[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        s if s & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        s if s & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        s if s & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        s if s & 0xff00 == 0xff00 => "multicast",
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2001 if segments[1] == 0 => "Teredo (2001::/32)",
        0x0064 if segments[1] == 0xff9b && segments[2] == 1 => "local-use NAT64 (64:ff9b:1::/48)",
        0x0100 if segments[1..4] == [0, 0, 0] => "discard-only (100::/64)",
        _ => return None,
    })
}

/// The IPv4 address carried inside an IPv6 one: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// Which outbound targets are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboundPolicy {
    /// Allow loopback, private and other internal targets (operator setting; off by default).
    pub allow_private_targets: bool,
}

impl OutboundPolicy {
    /// Refuses `ip` (reached through `host`) unless the policy allows it.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), ForbiddenTarget> {
        match forbidden_range(ip) {
            Some(range) if !self.allow_private_targets => Err(ForbiddenTarget {
                host: host.to_owned(),
                address: ip,
                range,
            }),
            _ => Ok(()),
        }
    }

    /// Checks a URL whose host is an IP literal (those are never resolved, so the resolver cannot
    /// check them). Hostnames pass here and are checked at connect time.
    pub fn check_url(&self, url: &url::Url) -> Result<(), ForbiddenTarget> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(&ip.to_string(), IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(&ip.to_string(), IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }
}

/// A DNS resolver that drops forbidden addresses and fails when none is left, so the connection
/// can only go to an address that was checked.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: OutboundPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(forbidden) => {
                        refusal.get_or_insert(forbidden);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(forbidden)) => Err(Box::new(forbidden) as Box<dyn StdError + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// An HTTP client for user-chosen URLs: the guarded resolver, no redirects, no proxy from the
/// environment, and the given timeouts.
pub fn client(policy: OutboundPolicy, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .build()
}

/// The refusal inside a client error, if the error is one.
pub fn forbidden_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a ForbiddenTarget> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(forbidden) = e.downcast_ref::<ForbiddenTarget>() {
            return Some(forbidden);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        forbidden_range(text.parse().unwrap()).is_some()
    }

    #[test]
    fn internal_ranges_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a00:1",
            "100::1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(!refused(ip), "{ip} must pass");
        }
    }

    #[test]
    fn the_operator_can_allow_private_targets() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(OutboundPolicy::default().check("localhost", loopback).is_err());
        assert!(
            OutboundPolicy {
                allow_private_targets: true
            }
            .check("localhost", loopback)
            .is_ok()
        );
        let message = OutboundPolicy::default()
            .check("evil.example", loopback)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("evil.example: it resolves to 127.0.0.1 (loopback address)"),
            "{message}"
        );
    }

    #[test]
    fn ip_literals_in_urls_are_checked_before_sending() {
        let policy = OutboundPolicy::default();
        assert!(
            policy
                .check_url(&url::Url::parse("http://169.254.169.254/latest/meta-data").unwrap())
                .is_err()
        );
        assert!(
            policy
                .check_url(&url::Url::parse("http://[::ffff:127.0.0.1]:8080/x").unwrap())
                .is_err()
        );
        assert!(
            policy
                .check_url(&url::Url::parse("https://agents.example.com/x").unwrap())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_at_resolution() {
        let resolver = GuardedResolver {
            policy: OutboundPolicy::default(),
        };
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error,
        };
        let forbidden = forbidden_in(error.as_ref()).expect("a ForbiddenTarget");
        assert!(forbidden.address.is_loopback());
        let allowed = GuardedResolver {
            policy: OutboundPolicy {
                allow_private_targets: true,
            },
        };
        assert!(allowed.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
