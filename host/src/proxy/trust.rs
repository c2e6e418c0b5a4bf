//! Whom wicket believes about where a request came from. A peer inside
//! one of the configured networks (`proxy.trusted_proxies`) is another
//! proxy in front of wicket: its `X-Forwarded-For` names the client and its
//! `X-Forwarded-Proto` the scheme. Anyone else's forwarding fields are
//! spoofable and ignored: the client is the peer, the scheme is wicket's
//! own (plain `http`: wicket terminates no TLS).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// The networks whose peers are trusted proxies (none by default).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// The scheme a user came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS, terminated by a trusted proxy in front of wicket.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses; the
    /// error names the entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{e:?} is not a CIDR or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(nets.into()))
    }

    /// Is `peer` a trusted proxy? (An IPv4 peer seen as an IPv4-mapped
    /// IPv6 address counts as itself.)
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        !self.0.is_empty() && self.0.iter().any(|n| n.contains(&peer))
    }

    /// No network is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's address: the peer itself, unless the peer is a trusted
/// proxy; then the `X-Forwarded-For` chain (`forwarded_for`, its field
/// values in order) is walked from the right past trusted proxies to the
/// first address that is not one. An entry that is no address ends the
/// walk at the last proxy that was trusted; a chain of trusted proxies
/// only gives its first address.
pub fn client_ip<'a, I>(trusted: &TrustedProxies, peer: IpAddr, forwarded_for: I) -> IpAddr
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    let peer = peer.to_canonical();
    if !trusted.trusts(peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for
        .into_iter()
        .rev()
        .flat_map(|v| v.rsplit(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
    {
        let Some(ip) = std::str::from_utf8(entry)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.trusts(client) {
            break;
        }
    }
    client
}

/// The scheme the user came in on: `https` only when a trusted proxy
/// (`peer_trusted`) says so in `X-Forwarded-Proto` (its last value,
/// `forwarded_proto`); a client's own claim is never believed.
pub fn scheme(peer_trusted: bool, forwarded_proto: Option<&[u8]>) -> Scheme {
    match forwarded_proto {
        Some(p) if peer_trusted && p.trim_ascii().eq_ignore_ascii_case(b"https") => Scheme::Https,
        _ => Scheme::Http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn parses_networks_and_addresses() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7", "fd00::/8"]).expect("valid");
        assert!(t.trusts(ip("10.1.2.3")) && t.trusts(ip("192.0.2.7")));
        assert!(t.trusts(ip("fd12::1")) && t.trusts(ip("::ffff:10.0.0.1")));
        assert!(!t.trusts(ip("192.0.2.8")) && !t.trusts(ip("11.0.0.1")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
        assert!(!TrustedProxies::default().trusts(ip("127.0.0.1")));
    }

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let none = TrustedProxies::default();
        let chain: [&[u8]; 1] = [b"203.0.113.1"];
        assert_eq!(
            client_ip(&none, ip("198.51.100.2"), chain),
            ip("198.51.100.2")
        );
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).expect("valid");
        assert_eq!(client_ip(&t, ip("10.0.0.1"), chain), ip("203.0.113.1"));
        // Spoofed entries left of the first untrusted address are ignored.
        let chain: [&[u8]; 2] = [b"1.1.1.1, 203.0.113.1", b"10.0.0.9"];
        assert_eq!(client_ip(&t, ip("10.0.0.1"), chain), ip("203.0.113.1"));
        let garbage: [&[u8]; 1] = [b"1.1.1.1, nonsense, 10.0.0.5"];
        assert_eq!(client_ip(&t, ip("10.0.0.1"), garbage), ip("10.0.0.5"));
        let all_trusted: [&[u8]; 1] = [b"10.0.0.3, 10.0.0.4"];
        assert_eq!(client_ip(&t, ip("10.0.0.1"), all_trusted), ip("10.0.0.3"));
        assert_eq!(client_ip(&t, ip("10.0.0.1"), []), ip("10.0.0.1"));
    }

    #[test]
    fn only_a_trusted_proxy_says_https() {
        assert_eq!(scheme(false, Some(b"https")), Scheme::Http);
        assert_eq!(scheme(true, Some(b"HTTPS")), Scheme::Https);
        assert_eq!(scheme(true, Some(b"http")), Scheme::Http);
        assert_eq!(scheme(true, None), Scheme::Http);
    }
}
