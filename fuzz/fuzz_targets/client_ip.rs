//! `X-Forwarded-For` and RFC 7239 `Forwarded` parsing with trusted-proxy resolution:
//! `resolve_client`, `client_ip`, `parse_forwarded` and `parse_x_forwarded_for_entry`.
//!
//! Properties: no panic; a parsed entry prints and parses back to the same address; only the
//! chosen forwarding header is read (the other one, as a client could send it, changes
//! nothing); an untrusted peer is its own client whatever the headers say; an address is a
//! trusted proxy's only when the peer and every hop of the chain are trusted; any other client
//! address, or obfuscated token, appears in the chain; an unknown client is named after a
//! trusted proxy, and only when the chain holds an entry that is neither an address nor a
//! token.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use covet_layers::rate_limit::{
    Client, ForwardedHeader, client_ip, parse_forwarded, parse_x_forwarded_for_entry,
    resolve_client,
};
use http::{HeaderMap, HeaderValue, header::FORWARDED};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    peer: Peer,
    trusted: Vec<(Peer, u8)>,
    read_forwarded: bool,
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

/// One hop of the chain as the model reads it.
#[derive(Debug, PartialEq)]
enum Hop {
    Ip(IpAddr),
    /// Not an address: an obfuscated token, `unknown`, or garbage.
    Other,
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
    let (header, name) = if input.read_forwarded {
        (ForwardedHeader::Forwarded, FORWARDED.as_str())
    } else {
        (ForwardedHeader::XForwardedFor, "x-forwarded-for")
    };

    // The chain of the chosen header, leftmost first.
    let mut chain: Vec<Hop> = Vec::new();
    let mut raw = String::new();
    let mut readable = true;
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else {
            readable = false;
            continue;
        };
        raw.push_str(text);
        raw.push('\n');
        if input.read_forwarded {
            chain.extend(parse_forwarded(text).map(|hop| hop.map_or(Hop::Other, Hop::Ip)));
        } else {
            for entry in text.split(',') {
                let ip = parse_x_forwarded_for_entry(entry);
                if let Some(ip) = ip {
                    let again = parse_x_forwarded_for_entry(&ip.to_string());
                    assert_eq!(again, Some(ip), "{entry:?} does not round-trip");
                }
                chain.push(ip.map_or(Hop::Other, Hop::Ip));
            }
        }
    }

    let resolved = resolve_client(peer, &headers, &trusted, header);

    // Only the chosen header is read: without the other one the answer is the same.
    let mut alone = headers.clone();
    alone.remove(if input.read_forwarded {
        "x-forwarded-for"
    } else {
        FORWARDED.as_str()
    });
    assert_eq!(
        resolve_client(peer, &alone, &trusted, header),
        resolved,
        "{headers:?}"
    );
    if !input.read_forwarded {
        let expected = match &resolved {
            Client::Ip(ip) => Some(*ip),
            _ => None,
        };
        assert_eq!(client_ip(peer, &headers, &trusted), expected);
    }

    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) {
        assert_eq!(
            resolved,
            Client::Ip(peer),
            "an untrusted peer is the client"
        );
        return;
    }
    let in_chain = |ip: IpAddr| {
        chain
            .iter()
            .any(|hop| matches!(hop, Hop::Ip(hop) if hop.to_canonical() == ip))
    };
    let every_hop_trusted = readable
        && chain
            .iter()
            .all(|hop| matches!(hop, Hop::Ip(ip) if is_trusted(&ip.to_canonical())));
    match &resolved {
        Client::Ip(client) => {
            if is_trusted(client) {
                assert!(
                    every_hop_trusted,
                    "a trusted proxy {client} was resolved while the chain has an untrusted hop: {chain:?}"
                );
            }
            if *client != peer {
                assert!(in_chain(*client), "{client} is not in the chain {chain:?}");
            }
        }
        Client::Obfuscated(token) => {
            assert!(token.starts_with('_'), "{token:?}");
            assert!(
                chain.contains(&Hop::Other) && raw.contains(token.as_str()),
                "{token:?} is not in the chain {raw:?}"
            );
        }
        Client::Unknown { proxy } => {
            assert!(
                is_trusted(proxy),
                "unknown client named after untrusted {proxy}"
            );
            assert!(
                *proxy == peer || in_chain(*proxy),
                "{proxy} is not the peer or a hop"
            );
            assert!(
                !readable || chain.contains(&Hop::Other),
                "unknown client from a chain of addresses: {chain:?}"
            );
        }
        other => panic!("a kind of client this target does not know: {other:?}"),
    }
});
