//! The HTTP/1 wire format as the forwarding path needs it: request and
//! response heads parsed in place (with `httparse`, hyper's own parser),
//! message framing, and the heads written out again with the proxy's
//! changes. Pure: no I/O, so every rule here is unit-tested on bytes.
//!
//! Why not hyper for this part: hyper turns every message into an
//! `http::Request` with a `HeaderMap` and writes it out again, which is
//! most of a small proxied request's user-space cost. A proxy only needs
//! to find the routing facts, drop the hop-by-hop fields and add its own,
//! and can copy everything else as it came (as nginx and Envoy do).

mod body;
pub mod chunked;
mod head;
mod names;

pub use body::BodyProgress;
pub use chunked::{ChunkError, ChunkedScanner};
pub use head::{
    Body, ForwardedFor, HeadError, HeaderSlots, MAX_HEAD, MAX_HEADERS, RequestHead, ResponseFacts,
    ResponseHead, UpstreamHead, header_slots, parse_request, parse_response, write_request_head,
    write_response_head,
};
