//! Rate-limit keys: who a request is counted against.
//!
//! A [`KeyExtractor`] turns a request head into a [`Key`]. Provided: [`PeerIp`] (the TCP peer),
//! [`ClientIp`] (the client behind trusted proxies), [`HeaderKey`] (an API key header) and
//! [`GlobalKey`] (one bucket for everyone); any `Fn(&Parts) -> Option<Key>` closure also works.

use std::{
    hash::{Hash, Hasher},
    net::{IpAddr, SocketAddr},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, request::Parts};
use ipnet::IpNet;

/// Who a request is counted against. Cheap to clone; never allocates for IPs or header values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(Repr);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Repr {
    Global,
    Missing,
    Ip(IpAddr),
    Header(HeaderValue),
    Bytes(Bytes),
}

impl Key {
    /// One key shared by every request.
    pub const fn global() -> Self {
        Key(Repr::Global)
    }

    /// An IP address. IPv4-mapped IPv6 addresses count as their IPv4 address.
    pub fn ip(ip: IpAddr) -> Self {
        Key(Repr::Ip(ip.to_canonical()))
    }

    /// A header value, such as an API key. Cloning a header value does not copy it.
    pub fn header(value: HeaderValue) -> Self {
        Key(Repr::Header(value))
    }

    /// Any bytes: a user id, a tenant name.
    pub fn bytes(value: impl Into<Bytes>) -> Self {
        Key(Repr::Bytes(value.into()))
    }

    /// The shared key of requests without one ([`MissingKey::Shared`](super::MissingKey)).
    pub(crate) const fn missing() -> Self {
        Key(Repr::Missing)
    }

    /// Feeds the key into `state`, tagged by kind so an IP and a string never collide.
    pub(crate) fn hash_into<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }

    /// The key as text for a Redis key name: IPs as written, other values hex-encoded so no
    /// client-chosen byte ends up in a key name.
    #[cfg(feature = "rate-limit-redis")]
    pub(crate) fn write_redis(&self, out: &mut String) {
        use std::fmt::Write;
        match &self.0 {
            Repr::Global => out.push('*'),
            Repr::Missing => out.push_str("none"),
            Repr::Ip(ip) => {
                let _ = write!(out, "ip:{ip}");
            }
            Repr::Header(v) => hex_into(out, "v:", v.as_bytes()),
            Repr::Bytes(b) => hex_into(out, "v:", b),
        }
    }
}

#[cfg(feature = "rate-limit-redis")]
fn hex_into(out: &mut String, tag: &str, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str(tag);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Self {
        Key::ip(ip)
    }
}

/// Finds the [`Key`] of a request from its head. `None` means no key could be found; what
/// happens then is set by [`MissingKey`](super::MissingKey).
///
/// Implemented for every `Fn(&Parts) -> Option<Key>` closure.
pub trait KeyExtractor {
    /// The key of this request, if one can be found.
    fn key(&self, parts: &Parts) -> Option<Key>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&Parts) -> Option<Key>,
{
    fn key(&self, parts: &Parts) -> Option<Key> {
        self(parts)
    }
}

/// One bucket for all requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    fn key(&self, _parts: &Parts) -> Option<Key> {
        Some(Key::global())
    }
}

/// The value of a request header, such as `x-api-key`. Requests without it have no key.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys requests by the value of `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl KeyExtractor for HeaderKey {
    fn key(&self, parts: &Parts) -> Option<Key> {
        let mut values = parts.headers.get_all(&self.name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) if !value.is_empty() => Some(Key::header(value.clone())),
            _ => None,
        }
    }
}

/// The TCP peer's IP address, from the request extensions.
///
/// Looks for axum's `ConnectInfo<SocketAddr>` (with the `axum` feature; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), then a plain [`SocketAddr`]
/// extension (hyper: insert the address `accept` returned into each request, see the
/// [module docs](super)), then a plain [`IpAddr`] extension.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    fn key(&self, parts: &Parts) -> Option<Key> {
        peer_ip(parts).map(Key::ip)
    }
}

/// The peer IP of a request, as [`PeerIp`] finds it.
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    if let Some(addr) = parts.extensions.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    parts.extensions.get::<IpAddr>().copied()
}

/// The client's IP address behind trusted reverse proxies.
///
/// When the TCP peer ([`PeerIp`]) is one of the trusted proxies, the forwarding chain is read
/// from right to left — RFC 7239 `Forwarded` if present, else `X-Forwarded-For` — and the
/// first address that is **not** a trusted proxy is the client. The leftmost entries are
/// written by the client itself and never trusted on their own. When the peer is not trusted,
/// the headers are ignored and the peer is the client. See [`client_ip`].
///
/// A request without a peer address, or whose chain from a trusted peer is malformed, has no
/// key.
#[derive(Clone, Debug, Default)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
}

impl ClientIp {
    /// Trusts the proxies in these networks (for instance `10.0.0.0/8`, or one load balancer
    /// `192.0.2.10/32`).
    pub fn new(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
        }
    }

    /// The trusted proxy networks.
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }
}

impl KeyExtractor for ClientIp {
    fn key(&self, parts: &Parts) -> Option<Key> {
        let peer = peer_ip(parts)?;
        client_ip(peer, &parts.headers, &self.trusted).map(Key::ip)
    }
}

/// The client IP of a request from `peer` with `headers`, trusting the proxies in `trusted`.
///
/// - `peer` not trusted: `peer`.
/// - otherwise the rightmost address of the chain (RFC 7239 `Forwarded` `for=` values if the
///   request has a `Forwarded` header, else `X-Forwarded-For`) that is not trusted;
/// - every hop trusted: the leftmost one;
/// - no chain at all: `peer`;
/// - an entry that is not an IP address (`unknown`, an obfuscated `_name`, garbage) met
///   before an untrusted address: `None`, since the client cannot be known.
///
/// A pure function of its inputs (the hardening work fuzzes it).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut last = peer;
    let mut walk = |entry: Option<IpAddr>| -> Option<Option<IpAddr>> {
        // Some(result) stops the walk.
        match entry {
            None => Some(None),
            Some(ip) => {
                let ip = ip.to_canonical();
                if is_trusted(&ip) {
                    last = ip;
                    None
                } else {
                    Some(Some(ip))
                }
            }
        }
    };
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        for value in forwarded.iter().rev() {
            let Ok(value) = value.to_str() else {
                return None;
            };
            let entries: Vec<Option<IpAddr>> = parse_forwarded(value).collect();
            for entry in entries.into_iter().rev() {
                if let Some(result) = walk(entry) {
                    return result;
                }
            }
        }
    } else {
        for value in headers.get_all("x-forwarded-for").iter().rev() {
            let Ok(value) = value.to_str() else {
                return None;
            };
            for entry in value.rsplit(',') {
                if let Some(result) = walk(parse_x_forwarded_for_entry(entry)) {
                    return result;
                }
            }
        }
    }
    Some(last)
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
    split_outside_quotes(value, b',').map(|element| {
        split_outside_quotes(element, b';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("for") {
                return None;
            }
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some(parse_x_forwarded_for_entry(value))
        })?
    })
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
    fn garbage_before_an_untrusted_hop_gives_no_key() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip")]);
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), None);
        // Garbage to the left of the client does not matter.
        let h = headers(&[("x-forwarded-for", "<script>, 198.51.100.7")]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn forwarded_header_is_preferred_and_parsed() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            (
                "forwarded",
                r#"for=1.1.1.1, for="[2001:db8::7]:443";proto=https"#,
            ),
            ("forwarded", "for=10.9.9.9;by=10.0.0.5"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted),
            Some(ip("2001:db8::7"))
        );
        let hops: Vec<_> =
            parse_forwarded(r#"by=x;for="_hidden", proto=http, for="a,b""#).collect();
        assert_eq!(hops, [None, None, None]);
    }

    #[test]
    fn header_key_requires_exactly_one_non_empty_value() {
        let key = HeaderKey::new(HeaderName::from_static("x-api-key"));
        let parts = |h: &[(&'static str, &str)]| {
            let mut req = http::Request::new(());
            *req.headers_mut() = headers(h);
            req.into_parts().0
        };
        assert_eq!(
            key.key(&parts(&[("x-api-key", "abc")])),
            Some(Key::header(HeaderValue::from_static("abc")))
        );
        assert_eq!(key.key(&parts(&[])), None);
        assert_eq!(key.key(&parts(&[("x-api-key", "")])), None);
        assert_eq!(
            key.key(&parts(&[("x-api-key", "a"), ("x-api-key", "b")])),
            None
        );
    }

    #[test]
    fn redis_names_never_carry_raw_client_bytes() {
        let mut s = String::new();
        Key::header(HeaderValue::from_static("a:b c")).write_redis(&mut s);
        assert_eq!(s, "v:613a622063");
        s.clear();
        Key::ip(ip("::ffff:1.2.3.4")).write_redis(&mut s);
        assert_eq!(s, "ip:1.2.3.4");
    }
}
