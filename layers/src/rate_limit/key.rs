//! Rate-limit keys: who a request is counted against.
//!
//! A [`KeyExtractor`] turns a request head into a [`Key`]. Provided: [`PeerIp`] (the TCP peer),
//! [`ClientIp`] (the client behind trusted proxies), [`HeaderKey`] (an API key header) and
//! [`GlobalKey`] (one bucket for everyone); any `Fn(&Parts) -> Option<Key>` closure also works.

use std::{
    hash::{Hash, Hasher},
    net::IpAddr,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, request::Parts};
use ipnet::IpNet;

use crate::peer::network;
pub use crate::peer::{
    Client, ForwardedHeader, client_ip, parse_forwarded, parse_x_forwarded_for_entry, peer_ip,
    resolve_client,
};

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
    /// An RFC 7239 obfuscated client identifier.
    Obfuscated(Box<str>),
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
            Repr::Obfuscated(t) => hex_into(out, "o:", t.as_bytes()),
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

/// The TCP peer's IP address, from the request extensions, IPv6 peers by their /64.
///
/// Looks for axum's `ConnectInfo<SocketAddr>` (with the `axum` feature; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), then a plain [`SocketAddr`](std::net::SocketAddr)
/// extension (`covet_layers::serve` puts one in; with hyper, insert the address `accept`
/// returned), then a plain [`IpAddr`] extension (see [`peer_ip`]).
///
/// IPv6 peers are keyed by their /64: one customer gets a whole /64, so per-address keys would
/// give one customer unlimited buckets. For another prefix use [`ClientIp`] with
/// [`ipv6_prefix`](ClientIp::ipv6_prefix).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    fn key(&self, parts: &Parts) -> Option<Key> {
        peer_ip(parts).map(|ip| Key::ip(network(ip, DEFAULT_IPV6_PREFIX)))
    }
}

/// The default prefix IPv6 clients are keyed by: /64, one end site.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The client behind trusted reverse proxies (see [`resolve_client`] and the rules in
/// `covet_layers`' peer module docs, repeated here):
///
/// - When the TCP peer ([`PeerIp`]) is one of the trusted proxies, the forwarding chain of
///   **one** header ([`header`](Self::header): `X-Forwarded-For` by default) is read from right
///   to left, and the first entry that is not a trusted proxy is the client. The other header is
///   ignored, so a client cannot choose its key with a `Forwarded` header passed through next to
///   the proxy's `X-Forwarded-For`. The leftmost entries are written by the client itself and
///   never trusted on their own.
/// - When the peer is not trusted, the headers are ignored and the peer is the client.
/// - IPv6 clients are keyed by their network ([`ipv6_prefix`](Self::ipv6_prefix), /64).
/// - A hop a trusted proxy could not name (`unknown`, garbage) is keyed as that proxy; an
///   obfuscated identifier (`for=_token`) as the token. Neither collapses every such request
///   into one bucket.
///
/// A request without a peer address has no key.
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl Default for ClientIp {
    fn default() -> Self {
        Self::new([])
    }
}

impl ClientIp {
    /// Trusts the proxies in these networks (for instance `10.0.0.0/8`, or one load balancer
    /// `192.0.2.10/32`).
    pub fn new(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: trusted.into_iter().collect(),
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// The header the trusted proxies write; the other one is never read.
    ///
    /// Defaults to [`ForwardedHeader::XForwardedFor`].
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// How many leading bits of an IPv6 client address make its key (values above 128 count as
    /// 128).
    ///
    /// Defaults to [`DEFAULT_IPV6_PREFIX`] (64).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = bits.min(128);
        self
    }

    /// The trusted proxy networks.
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
    }
}

impl KeyExtractor for ClientIp {
    fn key(&self, parts: &Parts) -> Option<Key> {
        let peer = peer_ip(parts)?;
        Some(
            match resolve_client(peer, &parts.headers, &self.trusted, self.header) {
                Client::Ip(ip) => Key::ip(network(ip, self.ipv6_prefix)),
                Client::Unknown { proxy } => Key::ip(network(proxy, self.ipv6_prefix)),
                Client::Obfuscated(token) => Key(Repr::Obfuscated(token.into())),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

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
    fn client_ip_keys_ipv6_by_network_and_unknown_hops_by_proxy() {
        let parts = |peer: &str, h: &[(&'static str, &str)]| {
            let mut req = http::Request::new(());
            *req.headers_mut() = headers(h);
            req.extensions_mut()
                .insert(std::net::SocketAddr::new(ip(peer), 4000));
            req.into_parts().0
        };
        let key = ClientIp::new(nets(&["10.0.0.0/8"]));
        let a = key.key(&parts("2001:db8:1:2::1", &[]));
        let b = key.key(&parts("2001:db8:1:2:ffff::9", &[]));
        let c = key.key(&parts("2001:db8:1:3::1", &[]));
        assert_eq!(a, b, "one /64 is one client");
        assert_ne!(a, c);
        let exact = ClientIp::new([]).ipv6_prefix(128);
        assert_ne!(
            exact.key(&parts("2001:db8:1:2::1", &[])),
            exact.key(&parts("2001:db8:1:2::2", &[]))
        );
        // Unknown hops from two proxies are two keys, not one shared bucket.
        let x = key.key(&parts("10.0.0.5", &[("x-forwarded-for", "unknown")]));
        let y = key.key(&parts("10.0.0.6", &[("x-forwarded-for", "unknown")]));
        assert_ne!(x, y);
        assert_eq!(x, Some(Key::ip(ip("10.0.0.5"))));
        // A client's Forwarded header does not move its key.
        let real = key.key(&parts("10.0.0.5", &[("x-forwarded-for", "198.51.100.7")]));
        let spoof = key.key(&parts(
            "10.0.0.5",
            &[
                ("forwarded", "for=192.0.2.66"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
        ));
        assert_eq!(real, spoof);
        assert_eq!(
            PeerIp.key(&parts("2001:db8:1:2::1", &[])),
            PeerIp.key(&parts("2001:db8:1:2::2", &[]))
        );
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
