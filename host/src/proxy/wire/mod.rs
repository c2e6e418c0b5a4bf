//! The HTTP/1 wire format as the forwarding path needs it: request and
//! response heads parsed in place (with `httparse`, hyper's own parser),
//! message framing, and the heads written out again with the proxy's
//! changes. Pure: no I/O, so every rule here is unit-tested on bytes.
//!
//! One job per file: `framing` (limits, errors, the framing fields),
//! `request` and `response` (each parsed and written), `names` (field
//! names), [`chunked`] and `body` (where a body ends).
//!
//! Why not hyper for this part: hyper turns every message into an
//! `http::Request` with a `HeaderMap` and writes it out again, which is
//! most of a small proxied request's user-space cost. A proxy only needs
//! to find the routing facts, drop the hop-by-hop fields and add its own,
//! and can copy everything else as it came (as nginx and Envoy do).

mod body;
pub mod chunked;
#[cfg(test)]
mod differential;
mod framing;
mod names;
#[cfg(test)]
mod properties;
mod request;
mod response;

pub use body::BodyProgress;
pub use chunked::{ChunkError, ChunkedScanner, Scanned, Trailers};
pub use framing::{Body, HeadError, HeaderSlots, MAX_HEAD, MAX_HEADERS, header_slots};
pub use request::{ForwardedFor, RequestHead, UpstreamHead, parse_request, write_request_head};
pub use response::{ResponseFacts, ResponseHead, parse_response, write_response_head};

/// The configurable framing rules (`[proxy]` in the host config).
#[derive(Debug, Clone)]
pub struct Rules {
    /// What becomes of the trailer fields of chunked bodies, both ways
    /// (`proxy.forward_trailers`).
    pub trailers: Trailers,
    /// The protocols an upgrade request may ask a pod for
    /// (`proxy.upgrade_protocols`); others go on as ordinary requests.
    pub upgrades: std::sync::Arc<[Box<str>]>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            trailers: Trailers::Drop,
            upgrades: std::sync::Arc::new(["websocket".into()]),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Hostile input: whatever bytes arrive, the wire format answers with a
    //! value or an error, never a panic.
    use super::*;

    /// xorshift64*: reproducible bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const SEEDS: [&[u8]; 4] = [
        b"GET /demo/p1/u1/x?y=1 HTTP/1.1\r\nHost: h\r\nCookie: a=1; p1-u1-stoken=t\r\n\
          Connection: keep-alive, X-Hop\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nUpgrade: websocket\r\n\
          Connection: upgrade\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\nhello",
        b"HTTP/1.0 101 Switching\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ];

    /// A seed with bytes flipped, inserted, removed, or cut short.
    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..=rng.below(4) {
            let alphabet = b"\r\n :;,=-0123456789abcdefxzGHTP/\t\x00\xff";
            let i = rng.below(v.len() + 1);
            match rng.below(4) {
                0 if i < v.len() => v[i] = alphabet[rng.below(alphabet.len())],
                1 => v.insert(i, alphabet[rng.below(alphabet.len())]),
                2 if i < v.len() => {
                    v.remove(i);
                }
                _ => v.truncate(i),
            }
        }
        v
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let up = UpstreamHead {
            base_path: "/",
            rest: "x",
            prefix: "/demo/p1/u1",
            client_ip: "127.0.0.1",
            trusted: true,
            scheme: "http",
            default_host: b"10.0.0.1:80",
            ticket: ("p1", "u1"),
        };
        let mut out = Vec::new();
        let (mut requests, mut responses) = (0, 0);
        for round in 0..20_000 {
            let bytes = if round % 4 == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                let seed = SEEDS[rng.below(SEEDS.len())];
                mutate(&mut rng, seed)
            };
            let mut slots = header_slots();
            if let Ok(head) = parse_request(&bytes, &mut slots) {
                requests += 1;
                out.clear();
                write_request_head(&mut out, &head, &up);
                let mut body = BodyProgress::new(head.body, Trailers::Drop);
                let _ = body.advance(&mut bytes[head.len..].to_vec());
            }
            let mut slots = header_slots();
            if let Ok(head) = parse_response(&bytes, &mut slots, round % 2 == 0) {
                responses += 1;
                out.clear();
                write_response_head(&mut out, &bytes[..head.len], &head, round % 3 == 0);
                let mut body = BodyProgress::new(head.body, Trailers::Forward);
                let _ = body.advance(&mut bytes[head.len..].to_vec());
            }
            let mut scanner = ChunkedScanner::new(Trailers::Drop);
            let split = rng.below(bytes.len() + 1);
            let (mut a, mut b) = (bytes[..split].to_vec(), bytes[split..].to_vec());
            if let Ok(n) = scanner.scan(&mut a) {
                assert!(n.kept <= n.taken && n.taken <= split);
                let _ = scanner.scan(&mut b);
            }
        }
        // The mutations stay close enough to HTTP for the writers to run.
        assert!(
            requests > 1000 && responses > 1000,
            "{requests} {responses}"
        );
    }
}
