//! `X-Forwarded-For` and RFC 7239 `Forwarded` parsing with trusted-proxy resolution:
//! `client_ip`, `parse_forwarded` and `parse_x_forwarded_for_entry`.
//!
//! Properties: no panic; a parsed entry prints and parses back to the same address; an
//! untrusted peer is its own client whatever the headers say; the resolved client is a
//! trusted proxy only when the peer and every hop of the chain are trusted; a resolved
//! client other than the peer is an address that appears in the chain.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use covet_layers::rate_limit::{client_ip, parse_forwarded, parse_x_forwarded_for_entry};
use http::{HeaderMap, HeaderValue, header::FORWARDED};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    peer: Peer,
    trusted: Vec<(Peer, u8)>,
    x_forwarded_for: Vec<Vec<u8>>,
    forwarded: Vec<Vec<u8>>,
}

/// Addresses near the interesting ones, so that trust decisions actually vary.
#[derive(Debug, Arbitrary)]
enum Peer {
    Loopback,
    Ten(u8, u8),
    MappedLoopback,
    V4([u8; 4]),
    V6([u16; 8]),
}

impl Peer {
    fn ip(&self) -> IpAddr {
        match *self {
            Peer::Loopback => Ipv4Addr::LOCALHOST.into(),
            Peer::Ten(a, b) => Ipv4Addr::new(10, 0, a, b).into(),
            Peer::MappedLoopback => Ipv4Addr::LOCALHOST.to_ipv6_mapped().into(),
            Peer::V4(o) => Ipv4Addr::from(o).into(),
            Peer::V6(s) => Ipv6Addr::from(s).into(),
        }
    }
}

fuzz_target!(|input: Input| {
    let peer = input.peer.ip();
    let trusted: Vec<IpNet> = input
        .trusted
        .iter()
        .take(8)
        .filter_map(|(ip, prefix)| {
            let ip = ip.ip();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            IpNet::new(ip, prefix % (max + 1)).ok()
        })
        .collect();
    let mut headers = HeaderMap::new();
    for value in input.x_forwarded_for.iter().take(4) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append("x-forwarded-for", value);
        }
    }
    for value in input.forwarded.iter().take(4) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(FORWARDED, value);
        }
    }

    // The chain as the resolver reads it: `Forwarded` if present, else `X-Forwarded-For`.
    let mut chain: Vec<Option<IpAddr>> = Vec::new();
    let mut readable = true;
    if headers.contains_key(FORWARDED) {
        for value in headers.get_all(FORWARDED) {
            match value.to_str() {
                Ok(text) => {
                    chain.extend(parse_forwarded(text));
                }
                Err(_) => readable = false,
            }
        }
    } else {
        for value in headers.get_all("x-forwarded-for") {
            match value.to_str() {
                Ok(text) => {
                    for entry in text.split(',') {
                        let ip = parse_x_forwarded_for_entry(entry);
                        if let Some(ip) = ip {
                            let again = parse_x_forwarded_for_entry(&ip.to_string());
                            assert_eq!(again, Some(ip), "{entry:?} does not round-trip");
                        }
                        chain.push(ip);
                    }
                }
                Err(_) => readable = false,
            }
        }
    }

    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let resolved = client_ip(peer, &headers, &trusted);
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        assert_eq!(resolved, Some(peer), "an untrusted peer is the client");
        return;
    }
    let Some(client) = resolved else {
        // Unknown client: only when the chain holds an unreadable or non-IP entry.
        assert!(
            !readable || chain.iter().any(Option::is_none),
            "{headers:?}"
        );
        return;
    };
    if is_trusted(&client) {
        assert!(
            readable
                && chain
                    .iter()
                    .all(|hop| hop.is_some_and(|ip| is_trusted(&ip.to_canonical()))),
            "a trusted proxy {client} was resolved while the chain has an untrusted hop: {headers:?}"
        );
    }
    if client != peer {
        assert!(
            chain.iter().flatten().any(|ip| ip.to_canonical() == client),
            "{client} is not in the chain {chain:?}"
        );
    }
});
