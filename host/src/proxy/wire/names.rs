//! The header fields the proxy looks at, recognised without allocating or
//! hashing: by length first, then a case-insensitive comparison.

/// A header field name the proxy treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    TransferEncoding,
    Upgrade,
    ProxyAuthorization,
    ProxyAuthenticate,
    ContentLength,
    Host,
    Cookie,
    Expect,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    XForwardedPrefix,
    XOriginHost,
    /// RFC 7239's `Forwarded`.
    Forwarded,
    /// `X-Real-IP`: never trusted, never forwarded.
    XRealIp,
    /// A forwarding or framing field spelt with `_` (`X_Forwarded_For`,
    /// `Transfer_Encoding`): some servers (CGI-style header maps) read it
    /// as the real one, so it is never forwarded.
    Alias,
    /// Any other field: passed on as it came.
    Other,
}

impl Name {
    /// Fields that describe one hop and are never forwarded as they are
    /// (RFC 9110 §7.6.1, plus the proxy authentication fields).
    pub(super) fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            Name::Connection
                | Name::KeepAlive
                | Name::ProxyConnection
                | Name::Te
                | Name::Trailer
                | Name::TransferEncoding
                | Name::Upgrade
                | Name::ProxyAuthorization
                | Name::ProxyAuthenticate
        )
    }
}

/// Classifies a header field name.
pub(super) fn classify(name: &str) -> Name {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is("te") => Name::Te,
        4 if is("host") => Name::Host,
        6 if is("cookie") => Name::Cookie,
        6 if is("expect") => Name::Expect,
        7 if is("trailer") => Name::Trailer,
        7 if is("upgrade") => Name::Upgrade,
        10 if is("connection") => Name::Connection,
        10 if is("keep-alive") => Name::KeepAlive,
        13 if is("x-origin-host") => Name::XOriginHost,
        14 if is("content-length") => Name::ContentLength,
        15 if is("x-forwarded-for") => Name::XForwardedFor,
        16 if is("proxy-connection") => Name::ProxyConnection,
        16 if is("x-forwarded-host") => Name::XForwardedHost,
        17 if is("transfer-encoding") => Name::TransferEncoding,
        17 if is("x-forwarded-proto") => Name::XForwardedProto,
        18 if is("x-forwarded-prefix") => Name::XForwardedPrefix,
        18 if is("proxy-authenticate") => Name::ProxyAuthenticate,
        19 if is("proxy-authorization") => Name::ProxyAuthorization,
        9 if is("forwarded") => Name::Forwarded,
        9 if is("x-real-ip") => Name::XRealIp,
        _ if name.contains('_') && is_alias(name) => Name::Alias,
        _ => Name::Other,
    }
}

/// The fields a client could use to claim an address, scheme or host, or
/// to frame a message.
const ALIASED: [&str; 10] = [
    "host",
    "content-length",
    "transfer-encoding",
    "forwarded",
    "x-real-ip",
    "x-origin-host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
];

/// Is `name`, with `_` read as `-`, one of [`ALIASED`]?
fn is_alias(name: &str) -> bool {
    let same = |known: &str| {
        name.len() == known.len()
            && name
                .bytes()
                .zip(known.bytes())
                .all(|(a, k)| a.to_ascii_lowercase() == k || (a == b'_' && k == b'-'))
    };
    ALIASED.iter().any(|known| same(known))
}

/// The comma-separated tokens of a list-valued field, trimmed, empty ones
/// skipped.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Does any of `values` (Connection fields) list `token`?
pub(super) fn lists<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &[u8]) -> bool {
    values
        .into_iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_in_any_case() {
        assert_eq!(classify("Connection"), Name::Connection);
        assert_eq!(classify("TRANSFER-ENCODING"), Name::TransferEncoding);
        assert_eq!(classify("x-Forwarded-For"), Name::XForwardedFor);
        assert_eq!(classify("te"), Name::Te);
        assert_eq!(classify("x-forwarded-fox"), Name::Other);
        assert_eq!(classify("connections"), Name::Other);
        assert!(classify("Keep-Alive").is_hop_by_hop());
        assert!(!classify("Cookie").is_hop_by_hop());
        assert_eq!(classify("FORWARDED"), Name::Forwarded);
        assert_eq!(classify("X-Real-Ip"), Name::XRealIp);
        for alias in [
            "X_Forwarded_For",
            "x_forwarded-proto",
            "X_REAL_IP",
            "x_origin_host",
            "Transfer_Encoding",
            "content_length",
        ] {
            assert_eq!(classify(alias), Name::Alias, "{alias}");
        }
        assert_eq!(classify("X_Custom_Field"), Name::Other);
    }

    #[test]
    fn connection_lists_are_tokenised() {
        let v: Vec<&[u8]> = vec![b"keep-alive, Upgrade", b" ,x-hop "];
        assert!(lists(v.iter().copied(), b"upgrade"));
        assert!(lists(v.iter().copied(), b"X-Hop"));
        assert!(!lists(v.iter().copied(), b"close"));
    }
}
