//! The client's real address behind a proxy.
//!
//! A connection's peer is the client, unless the peer is one of the `--trusted-proxy` addresses
//! or ranges. From a trusted peer only:
//! - the device listener reads a PROXY protocol header (v1 text or v2 binary, told apart from a
//!   WebSocket or TLS start by its first bytes) before anything else on the connection;
//! - both listeners take `Forwarded: for=…` (RFC 7239) or else `X-Forwarded-For`, read from the
//!   right: the first address that is not itself a trusted proxy is the client.
//!
//! From anyone else these are ignored (a client cannot claim another address), and a PROXY
//! header is not looked for (its bytes would fail the handshake like any other garbage).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use axum::http;
use tokio::net::TcpStream;

/// An address or a CIDR range (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for IpRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
            None => bits,
        };
        Ok(IpRange { network, prefix })
    }
}

impl IpRange {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose word on the client's address is taken.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    pub fn new(ranges: Vec<IpRange>) -> Self {
        TrustedProxies(ranges)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(address))
    }

    /// The client's address for a request from `peer` with these headers: `peer` itself unless
    /// it is trusted and the headers name someone else.
    pub fn client_address(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_chain(headers);
        forwarded
            .iter()
            .rev()
            .copied()
            .find(|address| !self.trusts(*address))
            // Every hop was a trusted proxy: the leftmost is the client.
            .or_else(|| forwarded.first().copied())
            .unwrap_or(peer)
    }
}

/// The addresses a request passed through, client first: `Forwarded`'s `for=` values when the
/// header is there, else `X-Forwarded-For`'s. Values that are not addresses (`unknown`,
/// obfuscated names) end the chain's trustworthy part: everything left of them is dropped.
fn forwarded_chain(headers: &http::HeaderMap) -> Vec<IpAddr> {
    let mut chain = Vec::new();
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|value| value.split(',')) {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            });
            push_node(&mut chain, node);
        }
        return chain;
    }
    for value in headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
    {
        for node in value.split(',') {
            push_node(&mut chain, Some(node.trim()));
        }
    }
    chain
}

fn push_node(chain: &mut Vec<IpAddr>, node: Option<&str>) {
    match node.and_then(parse_node) {
        Some(address) => chain.push(canonical(address)),
        // An unknown hop: nothing to its left can be checked.
        None => chain.clear(),
    }
}

/// `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(address) = node.parse::<SocketAddr>() {
        return Some(address.ip());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("the PROXY header did not arrive in time")]
    Timeout,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, with its CRLF.
const V1_MAX: usize = 107;

/// Reads a PROXY protocol header if the connection starts with one; the client's address it
/// names, or `None` (no header, or a `LOCAL`/`UNKNOWN` one: the peer is the client). Only for a
/// trusted peer.
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    limit: Duration,
) -> Result<Option<IpAddr>, ProxyHeaderError> {
    tokio::time::timeout(limit, read_header(stream))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)?
}

async fn read_header(stream: &mut TcpStream) -> Result<Option<IpAddr>, ProxyHeaderError> {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; PEEK_BYTES];
    // Peek until the header's kind, and then its end, can be told.
    let mut seen = 0;
    loop {
        let peeked = stream.peek(&mut buffer).await?;
        if peeked == 0 {
            return Err(ProxyHeaderError::Malformed("the connection closed"));
        }
        if peeked == seen {
            // Nothing new since the last look (the socket stays readable while the bytes are
            // only peeked): wait a little for the rest of a header split over segments.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen = peeked;
        match examine_start(&buffer[..peeked])? {
            Examined::NotProxy => return Ok(None),
            Examined::Incomplete => continue,
            Examined::Header { length, client } => {
                let mut consumed = vec![0u8; length];
                stream.read_exact(&mut consumed).await?;
                return Ok(client);
            }
        }
    }
}

/// The most bytes of a connection's start that are looked at: the longest v2 header this server
/// takes (16 bytes and 216 of addresses, the size of the largest address block, AF_UNIX's).
pub(crate) const PEEK_BYTES: usize = 16 + 216;

/// What the first bytes of a connection tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Examined {
    /// Not a PROXY header: the connection starts with something else (a WebSocket or TLS start).
    NotProxy,
    /// A PROXY header may start so; more bytes are needed.
    Incomplete,
    /// A whole header of `length` bytes, naming this client (`None`: the peer is the client).
    Header {
        length: usize,
        client: Option<IpAddr>,
    },
}

/// Looks at what a connection starts with (at most [`PEEK_BYTES`] of it, as they have arrived):
/// whether it is a PROXY header, a whole one, and whom it names.
pub(crate) fn examine_start(start: &[u8]) -> Result<Examined, ProxyHeaderError> {
    let could_be_v1 = b"PROXY ".starts_with(&start[..start.len().min(6)]);
    let could_be_v2 = V2_SIGNATURE.starts_with(&start[..start.len().min(12)]);
    if start.is_empty() {
        return Ok(Examined::Incomplete);
    }
    if !could_be_v1 && !could_be_v2 {
        return Ok(Examined::NotProxy);
    }
    if could_be_v1 && start.len() >= 6 {
        // The CRLF must end the header within its 107 bytes: one found later is no end of a
        // header (as a longer read would never have seen it), whatever came before it.
        let within = &start[..start.len().min(V1_MAX)];
        if let Some(end) = within.windows(2).position(|pair| pair == b"\r\n") {
            let client = parse_v1(&start[..end])?;
            return Ok(Examined::Header {
                length: end + 2,
                client,
            });
        }
        if start.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed(
                "a v1 header longer than 107 bytes",
            ));
        }
        return Ok(Examined::Incomplete);
    }
    if could_be_v2 && start.len() >= 16 {
        let length = usize::from(u16::from_be_bytes([start[14], start[15]]));
        if 16 + length > PEEK_BYTES {
            return Err(ProxyHeaderError::Malformed(
                "a v2 header longer than 232 bytes",
            ));
        }
        if start.len() >= 16 + length {
            let client = parse_v2(&start[..16 + length])?;
            return Ok(Examined::Header {
                length: 16 + length,
                client,
            });
        }
    }
    Ok(Examined::Incomplete)
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443` (without the CRLF).
fn parse_v1(line: &[u8]) -> Result<Option<IpAddr>, ProxyHeaderError> {
    let line = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed("not ASCII"))?;
    let mut words = line.split(' ');
    if words.next() != Some("PROXY") {
        return Err(ProxyHeaderError::Malformed("no PROXY word"));
    }
    match words.next() {
        Some("UNKNOWN") => Ok(None),
        Some(family @ ("TCP4" | "TCP6")) => {
            let source = words
                .next()
                .ok_or(ProxyHeaderError::Malformed("no source address"))?;
            let address: IpAddr = if family == "TCP4" {
                IpAddr::V4(
                    source
                        .parse::<Ipv4Addr>()
                        .map_err(|_| ProxyHeaderError::Malformed("a bad IPv4 source"))?,
                )
            } else {
                IpAddr::V6(
                    source
                        .parse::<Ipv6Addr>()
                        .map_err(|_| ProxyHeaderError::Malformed("a bad IPv6 source"))?,
                )
            };
            Ok(Some(address))
        }
        _ => Err(ProxyHeaderError::Malformed("an unknown protocol family")),
    }
}

/// A whole v2 header: signature, version and command, family, length, addresses.
fn parse_v2(header: &[u8]) -> Result<Option<IpAddr>, ProxyHeaderError> {
    let version_command = header[12];
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("not version 2"));
    }
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL: the proxy's own connection (a health check).
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed("an unknown command")),
    }
    let addresses = &header[16..];
    match header[13] >> 4 {
        1 if addresses.len() >= 12 => {
            let source: [u8; 4] = addresses[..4].try_into().unwrap_or_default();
            Ok(Some(IpAddr::V4(Ipv4Addr::from(source))))
        }
        2 if addresses.len() >= 36 => {
            let source: [u8; 16] = addresses[..16].try_into().unwrap_or_default();
            Ok(Some(IpAddr::V6(Ipv6Addr::from(source))))
        }
        // AF_UNSPEC or AF_UNIX: no address to take.
        0 | 3 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed(
            "addresses shorter than their family",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        TrustedProxies::new(ranges.iter().map(|range| range.parse().unwrap()).collect())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let range: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(range.contains(ip("10.200.1.2")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(range.contains(ip("::ffff:10.0.0.1")), "mapped IPv4 is IPv4");
        let v6: IpRange = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let one: IpRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpRange>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let trusted = proxies(&["10.0.0.1"]);
        let claimed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            trusted.client_address(ip("198.51.100.4"), &claimed),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        // A client that sent its own X-Forwarded-For cannot choose its address.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(trusted.client_address(peer, &spoofed), ip("203.0.113.9"));
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3",
        )]);
        assert_eq!(trusted.client_address(peer, &forwarded), ip("2001:db8::7"));
        // Forwarded wins over X-Forwarded-For; nothing at all leaves the peer.
        let both = headers(&[
            ("forwarded", "for=192.0.2.1"),
            ("x-forwarded-for", "192.0.2.2"),
        ]);
        assert_eq!(trusted.client_address(peer, &both), ip("192.0.2.1"));
        assert_eq!(trusted.client_address(peer, &headers(&[])), peer);
        // An unknown hop: nothing left of it is believed.
        let unknown = headers(&[("forwarded", "for=1.2.3.4, for=unknown")]);
        assert_eq!(trusted.client_address(peer, &unknown), peer);
    }

    #[test]
    fn v1_and_v2_headers_parse() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443").unwrap(),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443").unwrap(),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN").unwrap(), None);
        assert!(parse_v1(b"PROXY TCP4 nonsense").is_err());
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 1, 187,
        ]);
        assert_eq!(parse_v2(&v2).unwrap(), Some(ip("192.0.2.1")));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse_v2(&local).unwrap(), None);
    }
}
