//! Who sent a request: the TCP peer, and the client behind trusted reverse proxies.
//!
//! Shared by the rate limiter (its [`ClientIp`](crate::rate_limit::ClientIp) key) and the trace
//! layer (the `client.address` attribute), so both name the same client.
//!
//! # Which header, whose entries
//!
//! A proxy records the address it received a request from by appending to a forwarding header.
//! Everything to the left of the entries written by proxies you trust was written by the client
//! and proves nothing. So the chain is read **from the right**, skipping trusted proxies, and
//! the first entry that is not a trusted proxy is the client ("rightmost untrusted").
//!
//! Only **one** header is read: the one your proxies write ([`ForwardedHeader`];
//! `X-Forwarded-For` by default, which NGINX, ingress-nginx and AWS load balancers write). The
//! other is ignored entirely, so a client cannot pick its identity by sending a `Forwarded`
//! header that a proxy passed through next to its own `X-Forwarded-For`.
//!
//! A hop that a trusted proxy could not name (`for=unknown`, an unparsable entry) makes that
//! proxy the client ([`Client::Unknown`]): requests it cannot attribute are counted against it,
//! not pooled with every other such request. An RFC 7239 obfuscated identifier (`for=_x9f2`)
//! is a stable per-client token and stays one ([`Client::Obfuscated`]).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{Extensions, HeaderMap, request::Parts};
use ipnet::IpNet;

/// The forwarding header trusted proxies write, and the only one read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (NGINX, ingress-nginx, AWS ALB/ELB, most CDNs).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (Envoy and others when configured for it).
    Forwarded,
}

/// The client of a request, as far as the forwarding chain tells.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Client {
    /// The client's address.
    Ip(IpAddr),
    /// An RFC 7239 obfuscated identifier (`_token`) written by a trusted proxy for the client.
    Obfuscated(String),
    /// The trusted proxy at `proxy` could not name its client (`unknown`, or garbage).
    Unknown {
        /// The proxy that wrote the entry.
        proxy: IpAddr,
    },
}

/// The TCP peer's IP address, from the request extensions: axum's `ConnectInfo<SocketAddr>`
/// (with the `axum` feature), then a plain [`SocketAddr`] (what `covet_layers::serve` inserts
/// without axum), then a plain [`IpAddr`].
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    peer_ip_of(&parts.extensions)
}

pub(crate) fn peer_ip_of(extensions: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    extensions.get::<IpAddr>().copied()
}

/// The address of an IPv6 client's network: its first `prefix` bits (a /64 is one end site,
/// which any one customer gets whole). IPv4 (and IPv4-mapped) addresses are kept whole.
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))] // the rate limiter's API
pub(crate) fn network(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if ipv6_prefix < 128 => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
        ip => ip,
    }
}

/// One `for` value of the chain.
enum Hop<'a> {
    Ip(IpAddr),
    Obfuscated(&'a str),
    Unknown,
}

fn hop_of(value: &str) -> Hop<'_> {
    match parse_x_forwarded_for_entry(value) {
        Some(ip) => Hop::Ip(ip),
        None => {
            let value = value.trim();
            let valid_token = value.len() > 1
                && value.len() <= 64
                && value.starts_with('_')
                && value[1..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if valid_token {
                Hop::Obfuscated(value)
            } else {
                Hop::Unknown
            }
        }
    }
}

/// The client of a request from `peer` with `headers`, trusting the proxies in `trusted` and
/// reading only `header`:
///
/// - `peer` not trusted: `peer`;
/// - otherwise the rightmost entry of the chain that is not a trusted proxy;
/// - every hop trusted: the leftmost one; no chain at all: `peer`;
/// - a hop a trusted proxy could not name: that proxy ([`Client::Unknown`]); an obfuscated one:
///   the token ([`Client::Obfuscated`]);
/// - a header value that is not text: [`Client::Unknown`] for `peer`.
///
/// A pure function of its inputs (the hardening work fuzzes it).
pub fn resolve_client(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> Client {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Client::Ip(peer);
    }
    // The proxy that wrote the entry being read: the peer for the rightmost one.
    let mut writer = peer;
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    for value in headers.get_all(name).iter().rev() {
        let Ok(value) = value.to_str() else {
            return Client::Unknown { proxy: writer };
        };
        let mut visit = |hop: Hop<'_>| -> Option<Client> {
            match hop {
                Hop::Ip(ip) => {
                    let ip = ip.to_canonical();
                    if is_trusted(&ip) {
                        writer = ip;
                        None
                    } else {
                        Some(Client::Ip(ip))
                    }
                }
                Hop::Obfuscated(token) => Some(Client::Obfuscated(token.to_owned())),
                Hop::Unknown => Some(Client::Unknown { proxy: writer }),
            }
        };
        match header {
            ForwardedHeader::XForwardedFor => {
                for entry in value.rsplit(',') {
                    if let Some(client) = visit(hop_of(entry)) {
                        return client;
                    }
                }
            }
            ForwardedHeader::Forwarded => {
                let elements: Vec<&str> = split_outside_quotes(value, b',').collect();
                for element in elements.into_iter().rev() {
                    let hop = match for_value(element) {
                        Some(value) => hop_of(value),
                        None => Hop::Unknown,
                    };
                    if let Some(client) = visit(hop) {
                        return client;
                    }
                }
            }
        }
    }
    Client::Ip(writer)
}

/// The client IP of a request from `peer` whose trusted proxies write `X-Forwarded-For`: the
/// [`Client::Ip`] of [`resolve_client`], `None` when the chain names no address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    match resolve_client(peer, headers, trusted, ForwardedHeader::XForwardedFor) {
        Client::Ip(ip) => Some(ip),
        _ => None,
    }
}

/// Parses one `X-Forwarded-For` entry: an IP address, optionally with a port
/// (`192.0.2.1:8080`, `[2001:db8::1]:443`) or in brackets. Anything else is `None`.
pub fn parse_x_forwarded_for_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry
        .strip_prefix('[')
        .and_then(|e| e.strip_suffix(']'))
        .and_then(|e| e.parse::<IpAddr>().ok())
}

/// The unquoted `for=` value of one `Forwarded` element, if it has one.
fn for_value(element: &str) -> Option<&str> {
    split_outside_quotes(element, b';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

/// Parses one RFC 7239 `Forwarded` header value into the `for=` address of each element, in
/// order. An element whose `for` is missing, `unknown`, obfuscated (`_hidden`) or not an IP
/// address yields `None`.
///
/// ```
/// use covet_layers::rate_limit::parse_forwarded;
/// use std::net::IpAddr;
///
/// let hops: Vec<Option<IpAddr>> =
///     parse_forwarded(r#"for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711", for=unknown"#)
///         .collect();
/// assert_eq!(hops, [Some("192.0.2.60".parse().unwrap()), Some("2001:db8:cafe::17".parse().unwrap()), None]);
/// ```
pub fn parse_forwarded(value: &str) -> impl Iterator<Item = Option<IpAddr>> + '_ {
    split_outside_quotes(value, b',')
        .map(|element| for_value(element).and_then(parse_x_forwarded_for_entry))
}

/// Splits `s` on `sep` outside double-quoted strings (RFC 7230 quoted-string, with `\` escapes).
fn split_outside_quotes(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let bytes = s.as_bytes();
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in bytes.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn xff(peer: &str, h: &HeaderMap, trusted: &[IpNet]) -> Client {
        resolve_client(ip(peer), h, trusted, ForwardedHeader::XForwardedFor)
    }

    #[test]
    fn spoofed_chain_from_an_untrusted_peer_is_ignored() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 5.6.7.8")]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn rightmost_untrusted_entry_wins_not_the_leftmost() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.10/32"]);
        // The client prepended a fake 1.1.1.1; the edge proxy appended the real 198.51.100.7;
        // the inner proxy 10.0.0.5 appended the edge's address.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 192.0.2.10")]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted),
            Some(ip("198.51.100.7"))
        );
        // Split over two header lines, with ports.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "x-forwarded-for",
                "198.51.100.7:5555, [::ffff:192.0.2.10]:80",
            ),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost_and_no_chain_gives_the_peer() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted),
            Some(ip("10.1.1.1"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn a_hop_a_trusted_proxy_cannot_name_is_counted_against_that_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip")]);
        assert_eq!(
            xff("10.0.0.5", &h, &trusted),
            Client::Unknown {
                proxy: ip("10.0.0.5")
            }
        );
        let h = headers(&[("x-forwarded-for", "unknown, 10.0.0.9")]);
        assert_eq!(
            xff("10.0.0.5", &h, &trusted),
            Client::Unknown {
                proxy: ip("10.0.0.9")
            }
        );
        // Garbage to the left of the client does not matter.
        let h = headers(&[("x-forwarded-for", "<script>, 198.51.100.7")]);
        assert_eq!(
            xff("10.0.0.5", &h, &trusted),
            Client::Ip(ip("198.51.100.7"))
        );
    }

    #[test]
    fn a_client_sent_forwarded_header_never_mixes_with_the_proxys_x_forwarded_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        // NGINX appended the real client to X-Forwarded-For and passed the client's own
        // Forwarded through.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            xff("10.0.0.5", &h, &trusted),
            Client::Ip(ip("198.51.100.7"))
        );
        // Behind a proxy that writes Forwarded, X-Forwarded-For is the client's and ignored.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                r#"for=1.1.1.1, for="[2001:db8::7]:443";proto=https"#,
            ),
            ("forwarded", "for=10.9.9.9;by=10.0.0.5"),
        ]);
        assert_eq!(
            resolve_client(ip("10.0.0.5"), &h, &trusted, ForwardedHeader::Forwarded),
            Client::Ip(ip("2001:db8::7"))
        );
    }

    #[test]
    fn forwarded_unknown_and_obfuscated_identifiers_stay_apart() {
        let trusted = nets(&["10.0.0.0/8"]);
        let resolve = |value: &str| {
            resolve_client(
                ip("10.0.0.5"),
                &headers(&[("forwarded", value)]),
                &trusted,
                ForwardedHeader::Forwarded,
            )
        };
        assert_eq!(
            resolve("for=unknown"),
            Client::Unknown {
                proxy: ip("10.0.0.5")
            }
        );
        assert_eq!(
            resolve(r#"for="_hidden-1""#),
            Client::Obfuscated("_hidden-1".into())
        );
        assert_ne!(resolve("for=_a"), resolve("for=_b"));
        let hops: Vec<_> =
            parse_forwarded(r#"by=x;for="_hidden", proto=http, for="a,b""#).collect();
        assert_eq!(hops, [None, None, None]);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_network() {
        assert_eq!(
            network(ip("2001:db8:1:2:aaaa::1"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(network(ip("2001:db8:1:2:aaaa::1"), 56), ip("2001:db8:1::"));
        assert_eq!(network(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(network(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(network(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(network(ip("192.0.2.7"), 64), ip("192.0.2.7"));
    }
}
