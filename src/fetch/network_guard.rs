//! The network guard for article pages: which addresses belong to this machine or a private
//! network, and a DNS resolver that drops them. A feed's publisher chooses the links it
//! carries; a link must not make feedhound send requests into the network it runs in, whether
//! the URL names such an address ([`is_local`]) or a host name that resolves to one
//! ([`PublicOnly`]).
//!
//! The resolver lets the host names of the proxies set in the environment resolve anywhere: the
//! user chose them, and a proxy on the local network is the usual case; a page may not be on
//! one (the fetcher refuses it). Behind a proxy that resolves names itself (an HTTP proxy,
//! `socks5h://`), only what the URL says is checked.

use std::env;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Whether `url` is on this machine or a private network by what it says: `localhost`, or an
/// address [`is_local_ip`] refuses.
pub fn is_local(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            let name = comparable_host(name);
            name == "localhost" || name.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => is_local_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_local_ip(IpAddr::V6(ip)),
        None => false,
    }
}

/// Whether `ip` is anything but a public unicast address: loopback, private, shared
/// (carrier-grade NAT), link-local, unspecified, benchmarking, reserved, broadcast or multicast,
/// and IPv6 addresses that carry such an IPv4 address (compatible, mapped, NAT64, 6to4).
fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_local_v4(ip),
        IpAddr::V6(ip) => is_local_v6(ip),
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    let [first, second, third, _] = ip.octets();
    let shared = first == 100 && (second & 0xc0) == 64;
    let protocol_assignments = first == 192 && second == 0 && third == 0;
    let benchmarking = first == 198 && (second & 0xfe) == 18;
    let reserved = first >= 240;
    first == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || shared
        || protocol_assignments
        || benchmarking
        || reserved
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return is_local_v4(mapped);
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry the IPv4 address
    // in their last 32 bits; ::1 and :: land on 0.0.0.1 and 0.0.0.0, refused as well.
    let compatible = segments[..6] == [0, 0, 0, 0, 0, 0];
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 {
        return is_local_v4(embedded_v4(segments[6], segments[7]));
    }
    let local_use_nat64 = segments[..3] == [0x64, 0xff9b, 1];
    if local_use_nat64 {
        return true;
    }
    if segments[0] == 0x2002 {
        return is_local_v4(embedded_v4(segments[1], segments[2]));
    }
    let first = segments[0];
    ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed in places)
}

/// A host name that resolved to addresses on this machine or a private network only.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to an address on this machine or a private network")]
pub(super) struct ResolvesToLocal(String);

/// Resolves through `lookup` and keeps only public addresses, failing with [`ResolvesToLocal`]
/// when none is left.
pub(super) struct PublicOnly {
    lookup: Arc<dyn Resolve>,
    proxy_hosts: Arc<[String]>,
}

impl PublicOnly {
    pub(super) fn new(lookup: Arc<dyn Resolve>, proxy_hosts: Arc<[String]>) -> PublicOnly {
        PublicOnly {
            lookup,
            proxy_hosts,
        }
    }
}

/// A host name as the guard compares it: lower case, without a trailing dot.
pub(super) fn comparable_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = comparable_host(name.as_str());
        let is_proxy = self.proxy_hosts.contains(&host);
        let lookup = self.lookup.resolve(name);
        Box::pin(async move {
            let addrs = lookup.await?;
            if is_proxy {
                return Ok(addrs);
            }
            let public: Vec<SocketAddr> = addrs.filter(|addr| !is_local_ip(addr.ip())).collect();
            if public.is_empty() {
                return Err(ResolvesToLocal(host).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The system's resolver (`getaddrinfo` on a blocking thread), as reqwest's default is.
pub(super) struct SystemLookup;

impl Resolve for SystemLookup {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            Ok(Box::new(addrs) as Addrs)
        })
    }
}

/// Host names of the proxies reqwest may read from the environment (both cases of each
/// variable: a name too many only refuses more pages).
pub(super) fn proxy_hosts_from_env() -> Vec<String> {
    const VARIABLES: [&str; 6] = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    VARIABLES
        .iter()
        .filter_map(|variable| env::var(variable).ok())
        .filter_map(|value| proxy_host(&value))
        .collect()
}

fn proxy_host(value: &str) -> Option<String> {
    let value = value.trim();
    let url = match Url::parse(value) {
        Ok(url) if url.has_host() => url,
        // reqwest takes `host:port` without a scheme as an HTTP proxy.
        _ => Url::parse(&format!("http://{value}")).ok()?,
    };
    Some(comparable_host(url.host_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_addresses_are_told_by_what_the_url_says() {
        let local = [
            "http://localhost/",
            "http://app.localhost./",
            "http://127.0.0.2:8080/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://192.0.0.170/",
            "http://198.18.0.1/",
            "http://198.19.255.1/",
            "http://224.0.0.251/",
            "http://240.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b:1::808:808]/",
            "http://[::127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://０x7f.0.0.1/",
            "http://[2002:a9fe:a9fe::1]/",
        ];
        for url in local {
            assert!(is_local(&Url::parse(url).unwrap()), "{url}");
        }
        let elsewhere = [
            "https://news.example/story",
            "http://8.8.8.8/",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://198.20.0.1/",
            "http://223.255.255.1/",
            "http://[2001:db8::1]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
            "http://localhost.example/",
        ];
        for url in elsewhere {
            assert!(!is_local(&Url::parse(url).unwrap()), "{url}");
        }
    }

    #[tokio::test]
    async fn the_guard_keeps_a_names_public_addresses_and_lets_a_proxy_resolve_to_any() {
        struct Both;
        impl Resolve for Both {
            fn resolve(&self, _: Name) -> Resolving {
                let both = [[10, 0, 0, 7], [93, 184, 216, 34]].map(|ip| SocketAddr::from((ip, 0)));
                Box::pin(async move { Ok(Box::new(both.into_iter()) as Addrs) })
            }
        }
        let guard = PublicOnly::new(Arc::new(Both), vec!["squid.lan".to_owned()].into());
        let resolve = |name: &str| guard.resolve(name.parse().unwrap());
        let public: Vec<SocketAddr> = resolve("news.example").await.unwrap().collect();
        assert_eq!(public, [SocketAddr::from(([93, 184, 216, 34], 0))]);
        let proxy: Vec<SocketAddr> = resolve("Squid.lan.").await.unwrap().collect();
        assert_eq!(
            proxy.len(),
            2,
            "a proxy the user set may be on the private network"
        );
    }

    #[test]
    fn a_proxy_is_named_with_or_without_its_scheme() {
        assert_eq!(
            proxy_host("socks5h://Proxy.Corp:1080").as_deref(),
            Some("proxy.corp")
        );
        assert_eq!(
            proxy_host("http://user:secret@squid.lan:3128/").as_deref(),
            Some("squid.lan")
        );
        assert_eq!(proxy_host("squid.lan:3128").as_deref(), Some("squid.lan"));
        assert_eq!(proxy_host(""), None);
    }
}
