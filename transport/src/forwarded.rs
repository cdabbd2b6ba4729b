//! Who a request really comes from, behind a reverse proxy (issue #18). A
//! proxy in front of the server connects
//! from its own address and says the client's in a header; only a proxy the
//! operator names may say it (anyone can send the header), and only the
//! header it is configured to set counts (a proxy passes the other one on
//! from the client untouched).

use std::net::IpAddr;

use http::HeaderMap;

/// The header the trusted proxies set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239's `Forwarded: for=client, for=proxy1` (Caddy can, and some
    /// cloud load balancers).
    Forwarded,
}

/// The proxies whose forwarding header is believed: addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Proxies from `list` (`10.0.0.7`, `10.0.0.0/8`, `::1`, `fd00::/8`),
    /// setting `header`.
    ///
    /// # Errors
    /// An entry that is neither an address nor a network, with why.
    pub fn parse(list: &[String], header: ForwardedHeader) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in list {
            let entry = entry.trim();
            let (addr, bits) = match entry.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (entry, None),
            };
            let addr: IpAddr =
                addr.parse().map_err(|_| format!("{entry}: not an IP address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|bits| *bits <= max)
                    .ok_or_else(|| format!("{entry}: a prefix length is 0 to {max}"))?,
            };
            networks.push((addr, bits));
        }
        Ok(Self { networks, header })
    }

    /// Whether no proxy is trusted (headers are never believed).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|&(net, bits)| within(ip, canonical(net), bits))
    }

    /// The client's address for a request from `peer` with `headers`. From
    /// a peer that is not trusted: the peer, whatever the headers say.
    /// From a trusted one: the configured header's addresses are walked
    /// from the last (the one the nearest proxy added) back, past trusted
    /// proxies; the first that is not one is the client. An entry that is
    /// not an address (`unknown`, an obfuscated name, garbage) stops the
    /// walk at the hop after it: what lies further was said by someone not
    /// trusted to say it.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut hops: Vec<Option<IpAddr>> = Vec::new();
        match self.header {
            ForwardedHeader::XForwardedFor => {
                for value in headers.get_all("x-forwarded-for") {
                    let Ok(value) = value.to_str() else {
                        hops.push(None);
                        continue;
                    };
                    hops.extend(value.split(',').map(|hop| address(hop.trim())));
                }
            }
            ForwardedHeader::Forwarded => {
                for value in headers.get_all("forwarded") {
                    let Ok(value) = value.to_str() else {
                        hops.push(None);
                        continue;
                    };
                    for element in value.split(',') {
                        let found = element.split(';').find_map(|pair| {
                            let (name, value) = pair.split_once('=')?;
                            name.trim().eq_ignore_ascii_case("for").then(|| value.trim())
                        });
                        hops.push(found.and_then(|value| address(value.trim_matches('"'))));
                    }
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = canonical(ip);
                    if !self.contains(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// An address as a hop names it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn address(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok.then(|| ip.parse().ok()).flatten();
    }
    let (ip, port) = hop.rsplit_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
}

/// An IPv4 address mapped into IPv6 (`::ffff:1.2.3.4`, as a dual-stack
/// socket reports it) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is in the network `net`/`bits`.
fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            (u128::from(ip.to_bits()), u128::from(net.to_bits()), 32)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => (ip.to_bits(), net.to_bits(), 128),
        _ => return false,
    };
    let bits = u32::from(bits);
    if bits == 0 {
        return true;
    }
    let shift = width - bits.min(width);
    (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str], header: ForwardedHeader) -> TrustedProxies {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        TrustedProxies::parse(&list, header).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn addresses_and_networks_are_parsed_and_matched_and_nonsense_refused() {
        let trusted =
            proxies(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "::1"], Default::default());
        for yes in ["10.1.2.3", "192.168.1.7", "fd12::5", "::1", "::ffff:10.9.9.9"] {
            assert!(trusted.contains(ip(yes)), "{yes}");
        }
        for no in ["11.0.0.1", "192.168.1.8", "fe80::1", "127.0.0.1"] {
            assert!(!trusted.contains(ip(no)), "{no}");
        }
        assert!(proxies(&["0.0.0.0/0"], Default::default()).contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/x", "::/129", ""] {
            let refused = TrustedProxies::parse(&[bad.to_owned()], Default::default());
            assert!(refused.is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_trusted_proxy_is_believed_and_the_client_cannot_add_hops() {
        let trusted = proxies(&["10.0.0.5"], ForwardedHeader::XForwardedFor);
        // Straight from a client: the header is a lie, whatever it says.
        let forged = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(trusted.client(ip("203.0.113.9"), &forged), ip("203.0.113.9"));
        // Through the proxy: the address it added (the last) is the client;
        // what the client wrote before it is not believed.
        let through = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &through), ip("203.0.113.9"));
        // Several proxies, all trusted: walked back to the first that is not.
        let chain = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let hops = headers(&[
            ("x-forwarded-for", "1.1.1.1, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.9"),
        ]);
        assert_eq!(chain.client(ip("10.0.0.5"), &hops), ip("198.51.100.7"));
        // No header, or garbage where the client is: the proxy itself.
        assert_eq!(trusted.client(ip("10.0.0.5"), &HeaderMap::new()), ip("10.0.0.5"));
        let garbage = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip")]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &garbage), ip("10.0.0.5"));
        // Ports and IPv6 as proxies write them.
        let ported = headers(&[("x-forwarded-for", "[2001:db8::1]:4711, 203.0.113.9:51000")]);
        assert_eq!(trusted.client(ip("10.0.0.5"), &ported), ip("203.0.113.9"));
    }

    #[test]
    fn the_other_header_is_not_believed_and_forwarded_is_read_as_rfc_7239_says() {
        let xff = proxies(&["10.0.0.5"], ForwardedHeader::XForwardedFor);
        let both = headers(&[("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "203.0.113.9")]);
        // A proxy setting X-Forwarded-For passes a client's Forwarded on.
        assert_eq!(xff.client(ip("10.0.0.5"), &both), ip("203.0.113.9"));
        let rfc = proxies(&["10.0.0.5"], ForwardedHeader::Forwarded);
        assert_eq!(rfc.client(ip("10.0.0.5"), &both), ip("1.1.1.1"));
        let quoted = headers(&[(
            "forwarded",
            "for=192.0.2.43;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.5",
        )]);
        assert_eq!(rfc.client(ip("10.0.0.5"), &quoted), ip("2001:db8:cafe::17"));
        let hidden = headers(&[("forwarded", "for=192.0.2.43, for=_hidden")]);
        assert_eq!(rfc.client(ip("10.0.0.5"), &hidden), ip("10.0.0.5"));
    }
}
