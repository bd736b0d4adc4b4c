//! Who a request comes from, as far as the server can vouch for it.
//!
//! The TCP peer is the client, unless the peer is a reverse proxy the
//! operator listed as trusted. Then the proxy's `Forwarded` (RFC 7239) or,
//! without it, `X-Forwarded-For` header is read from the right: each
//! trusted hop is skipped, and the first address that is not trusted is
//! the client. A header from a peer that is not trusted is ignored, since
//! anyone can send one; a hop that does not parse ends the walk at the
//! last proxy that was trusted. What comes out keys rate limits and
//! anonymous callers' idempotency scopes, so a client cannot choose it.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The most hops read from a forwarding header: a longer chain is a forgery
/// or a loop, and reading it is work a client could make us do.
const HOPS_MAX: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// No proxy is trusted: the peer is always the client.
    pub fn none() -> Self {
        TrustedProxies::default()
    }

    /// From a comma-separated list of addresses and networks
    /// (`10.0.0.5, 192.168.0.0/16, ::1`); an empty list trusts none.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let network = match item.parse::<IpNet>() {
                Ok(network) => network,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(address) => IpNet::from(address),
                    Err(_) => {
                        return Err(format!(
                            "trusted proxy `{item}`: an IP address or a network such as 10.0.0.0/8"
                        ))
                    }
                },
            };
            networks.push(network);
        }
        Ok(TrustedProxies { networks })
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.networks
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client behind `peer`, reading forwarding headers only from
    /// trusted proxies.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev().take(HOPS_MAX) {
            match hop {
                Some(address) if self.trusts(*address) => client = *address,
                Some(address) => return *address,
                None => return client,
            }
        }
        client
    }
}

/// IPv4 addresses mapped into IPv6 compare as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops a forwarding header lists, nearest last; `None` for a hop that
/// is not an address (`unknown`, an obfuscated name, garbage).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|value| value.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| node_address(value))
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|value| value.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>().ok().map(canonical))
        .collect()
}

/// An RFC 7239 node: `192.0.2.60`, `"192.0.2.60:8080"`, `"[2001:db8::1]:4711"`.
fn node_address(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    let host = if let Some(rest) = value.strip_prefix('[') {
        rest.split_once(']')?.0
    } else {
        match value.rsplit_once(':') {
            // One colon: an IPv4 address with a port.
            Some((host, _)) if !host.contains(':') => host,
            _ => value,
        }
    };
    host.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    /// (peer, headers, the client it names).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn the_client_is_read_only_through_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let cases: &[Case] = &[
            (
                "198.51.100.7",
                &[("x-forwarded-for", "203.0.113.9")],
                "198.51.100.7",
            ),
            ("10.0.0.5", &[], "10.0.0.5"),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "203.0.113.9")],
                "203.0.113.9",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")],
                "203.0.113.9",
            ),
            (
                "10.0.0.5",
                &[("x-forwarded-for", "203.0.113.9, garbage")],
                "10.0.0.5",
            ),
            (
                "10.0.0.5",
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "2.2.2.2"),
                ],
                "2.2.2.2",
            ),
            (
                "10.0.0.5",
                &[(
                    "forwarded",
                    "for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\"",
                )],
                "2001:db8:cafe::17",
            ),
            (
                "10.0.0.5",
                &[
                    ("forwarded", "for=\"192.0.2.60:8080\";proto=https"),
                    ("x-forwarded-for", "9.9.9.9"),
                ],
                "192.0.2.60",
            ),
            ("10.0.0.5", &[("forwarded", "for=unknown")], "10.0.0.5"),
            (
                "::ffff:127.0.0.1",
                &[("x-forwarded-for", "203.0.113.9")],
                "203.0.113.9",
            ),
        ];
        for (peer, pairs, expected) in cases {
            assert_eq!(
                proxies.client(ip(peer), &headers(pairs)),
                ip(expected),
                "{peer} {pairs:?}"
            );
        }
        assert_eq!(
            TrustedProxies::none()
                .client(ip("127.0.0.1"), &headers(&[("x-forwarded-for", "1.2.3.4")])),
            ip("127.0.0.1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert_eq!(TrustedProxies::parse(" ").unwrap(), TrustedProxies::none());
    }
}
