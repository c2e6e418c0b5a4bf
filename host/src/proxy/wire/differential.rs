//! Differential test: wicket's framing decision against hyper's HTTP/1
//! server on the same bytes. Requests are generated with every kind of
//! `Content-Length`, `Transfer-Encoding` and chunk line, valid and not,
//! and a second request pipelined after each. hyper is driven over an
//! in-memory stream; the requests it serves (path and body) say where it
//! found the first one's end. Wherever the two disagree, wicket must be
//! the one that refuses: a request wicket accepts is read the same way by
//! hyper, with the same body, and the next request starts at the same byte.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECOND: &[u8] = b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n";

/// What hyper served: each request's path and body (`None`: the body
/// could not be read).
type Served = Vec<(String, Option<Vec<u8>>)>;

async fn hyper_serves(bytes: Vec<u8>) -> Served {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let served = Arc::new(Mutex::new(Served::new()));
    let log = Arc::clone(&served);
    let svc = service_fn(move |req: Request<Incoming>| {
        let log = Arc::clone(&log);
        async move {
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.ok();
            let body = body.map(|b| b.to_bytes().to_vec());
            log.lock().expect("log").push((path, body));
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let conn = tokio::spawn(
        // Half-close: the pipelined requests are served after the end of
        // input (which comes with the same read).
        hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), svc),
    );
    let _ = client.write_all(&bytes).await;
    let _ = client.shutdown().await;
    let mut answers = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answers)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    served.lock().expect("log").clone()
}

/// The data of a chunked body whose lines are bare sizes (what wicket
/// forwards).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line = b.iter().position(|&c| c == b'\r').expect("a size line");
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line]).expect("hex"), 16)
            .expect("a bare size");
        b = &b[line + 2..];
        if size == 0 {
            return data;
        }
        data.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// wicket's decisions on the same bytes: the requests it reads in order
/// (path and the body it sends on, decoded) until one it refuses or that
/// is incomplete.
fn wicket_serves(mut bytes: &[u8]) -> Served {
    let mut served = Served::new();
    while !bytes.is_empty() {
        let mut slots = header_slots();
        let Ok(head) = parse_request(bytes, &mut slots) else {
            break;
        };
        let mut rest = bytes[head.len..].to_vec();
        let mut body = BodyProgress::new(head.body, Trailers::Drop);
        let Ok(n) = body.advance(&mut rest) else {
            break;
        };
        if !body.is_done() {
            break;
        }
        let kept = &rest[..n.kept];
        let data = match head.body {
            Body::Chunked => dechunk(kept),
            _ => kept.to_vec(),
        };
        served.push((head.path.to_owned(), Some(data)));
        bytes = &bytes[head.len + n.taken..];
    }
    served
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::sample::select(vec![
        "POST /first HTTP/1.1\r\n",
        "POST http://x/first HTTP/1.1\r\n",
        "POST /first HTTP/1.0\r\nConnection: keep-alive\r\n",
        "GET /first HTTP/1.1\r\n",
        "POST /first#x HTTP/1.1\r\n",
        "POST /first?q#x HTTP/1.1\r\n",
        "POST /fi<r>st HTTP/1.1\r\n",
        "POST /fi`rst HTTP/1.1\r\n",
        "POST /first?\"q\" HTTP/1.1\r\n",
        "POST /fi{r}st?a|b HTTP/1.1\r\n",
    ]);
    let host = prop::sample::select(vec![
        "Host: x\r\n",
        "Host: x\r\n",
        "",
        "Host: x\r\nHost: y\r\n",
    ]);
    let length = prop::sample::select(vec![
        "Content-Length: 5\r\n",
        "Content-Length: 005\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 0\r\n",
        "Content-Length: 4\r\n",
        "Content-Length: 99999999999999999999\r\n",
        "Content-Length:\r\n",
        "content_length: 5\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length:\t5\t\r\n",
        "Content-Length: 18446744073709551616\r\n",
        "Content-Length: 00000000000000000005\r\n",
    ]);
    let coding = prop::sample::select(vec![
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: Chunked\r\n",
        "Transfer-Encoding:  chunked \r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer_Encoding: chunked\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: identity, chunked\r\n",
        "Transfer-Encoding:\tchunked\t\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: ,\r\n",
    ]);
    let size = prop::sample::select(vec![
        "5",
        "05",
        "5;a",
        "5;a=b",
        "5 ;a",
        "5;a=\"x y\"",
        "5 5",
        "5 ",
        " 5",
        "5;",
        "+5",
        "0x5",
        "5\t;a",
        "5;a=b c",
        "5;a\"",
        "6",
        "4",
        "ffffffffffffffffff",
    ]);
    let end = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n"]);
    let chunk = (size, end.clone(), end).prop_map(|(s, e1, e2)| format!("{s}{e1}hello{e2}"));
    let trailer = prop::sample::select(vec![
        "",
        "",
        "X-T: 1\r\n",
        "X-T: 1\n",
        " X: 1\r\n",
        "X T: 1\r\n",
    ]);
    let chunked = (prop::collection::vec(chunk, 0..3), trailer)
        .prop_map(|(c, t)| format!("{}0\r\n{t}\r\n", c.concat()));
    let framing = prop::collection::vec(prop_oneof![length, coding], 0..3);
    let body = prop_oneof![Just("hello".to_owned()), chunked, Just(String::new())];
    (line, host, framing, body).prop_map(|(l, h, f, b)| {
        let mut v = format!("{l}{h}{}\r\n{b}", f.concat()).into_bytes();
        v.extend_from_slice(SECOND);
        v
    })
}

#[test]
fn wicket_refuses_wherever_it_and_hyper_disagree() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (accepted, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&request(), |bytes| {
            let ours = wicket_serves(&bytes);
            if ours.is_empty() {
                refused.set(refused.get() + 1);
                return Ok(());
            }
            accepted.set(accepted.get() + 1);
            let theirs = rt.block_on(hyper_serves(bytes.clone()));
            let text = String::from_utf8_lossy(&bytes).into_owned();
            // Every request wicket reads, hyper reads the same way (the
            // same body, the next one starting at the same byte).
            prop_assert!(
                theirs.len() >= ours.len() && theirs[..ours.len()] == ours[..],
                "wicket {:?}, hyper {:?}: {}",
                ours,
                theirs,
                text
            );
            Ok(())
        })
        .expect("no disagreement where wicket accepts");
    // Both kinds were generated.
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted > 100 && refused > 100,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn the_harness_sees_pipelined_requests() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut two = b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_vec();
    two.extend_from_slice(SECOND);
    let want = vec![
        ("/first".to_owned(), Some(b"hi".to_vec())),
        ("/second".to_owned(), Some(Vec::new())),
    ];
    assert_eq!(rt.block_on(hyper_serves(two.clone())), want);
    assert_eq!(wicket_serves(&two), want);
    let odd = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    // Body bytes without framing are the next request's: both read
    // `helloGET` as an (extension) method.
    assert_eq!(rt.block_on(hyper_serves(odd.clone())), wicket_serves(&odd));
}

/// The second response on the pod connection, after the generated one.
const SECOND_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

/// What wicket sends the user for the pod's `bytes` (the answer to a HEAD
/// when `head`): the head (as it came, or re-written), the body bytes it
/// forwards, and whether the user connection stays open for another
/// response; with the body as wicket reads it (decoded). `None` when
/// wicket refuses the answer or waits for more.
fn wicket_sends(bytes: &[u8], head: bool) -> Option<(Vec<u8>, Vec<u8>, bool)> {
    let mut slots = header_slots();
    let r = parse_response(bytes, &mut slots, head).ok()?;
    if r.is_interim() || r.status == 101 {
        return None;
    }
    let mut rest = bytes[r.len..].to_vec();
    let mut body = BodyProgress::new(r.body, Trailers::Drop);
    let n = body.advance(&mut rest).ok()?;
    let until_close = r.body == Body::UntilClose;
    if !body.is_done() && !until_close {
        return None;
    }
    // As forward.rs does: the head as it came unless the user connection
    // closes after it or it is not fit to pass.
    let mut out = Vec::new();
    if r.verbatim && !until_close {
        out.extend_from_slice(&bytes[..r.len]);
    } else {
        write_response_head(&mut out, &bytes[..r.len], &r, until_close);
    }
    let kept = &rest[..n.kept];
    out.extend_from_slice(kept);
    let data = match r.body {
        Body::Chunked => dechunk(kept),
        _ => kept.to_vec(),
    };
    Some((out, data, !until_close))
}

/// A hyper client reading `sent` as the answer to its first request (a
/// HEAD when `head`), then, if `more`, `SECOND_RESPONSE` as the answer to
/// a second: the two bodies it read (`None`: it failed).
async fn hyper_reads(sent: Vec<u8>, head: bool, more: bool) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let pod = tokio::spawn(async move {
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        // Each answer once its request has come (an answer before it is
        // an error to a client).
        for (i, answer) in [&sent[..], SECOND_RESPONSE].into_iter().enumerate() {
            let want = i + 1;
            while req.windows(4).filter(|w| w == b"\r\n\r\n").count() < want {
                match tokio::time::timeout(Duration::from_millis(500), server.read(&mut buf)).await
                {
                    Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            if server.write_all(answer).await.is_err() || !more {
                return;
            }
        }
    });
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(client)).await
    else {
        return (None, None);
    };
    let conn = tokio::spawn(conn);
    let request = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let read = async |resp: Result<Response<Incoming>, hyper::Error>| {
        let body = resp.ok()?.into_body();
        tokio::time::timeout(Duration::from_secs(2), body.collect())
            .await
            .ok()?
            .ok()
            .map(|b| b.to_bytes().to_vec())
    };
    let first = read(
        sender
            .send_request(request(if head { "HEAD" } else { "GET" }, "/first"))
            .await,
    )
    .await;
    let second = if more && first.is_some() && sender.ready().await.is_ok() {
        read(sender.send_request(request("GET", "/second")).await).await
    } else {
        None
    };
    conn.abort();
    let _ = pod.await;
    (first, second)
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::sample::select(vec![
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.1 200 OK\r\n",
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n",
        "HTTP/1.1 204 No Content\r\n",
        "HTTP/1.1 304 Not Modified\r\n",
        "HTTP/1.1 099 Low\r\n",
        "HTTP/1.1 600 High\r\n",
    ]);
    let field = prop::sample::select(vec![
        "Content-Length: 5\r\n",
        "Content-Length: 005\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 4\r\n",
        "Content-Length: 0\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: Chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: ,\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: CHUNKED \r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length:\t5 \r\n",
        "Content-Length: 99999999999999999999\r\n",
        "Content-Length:\r\n",
        "Connection: close\r\n",
        "X-Hop: 1\r\nConnection: X-Hop\r\n",
    ]);
    let body = prop::sample::select(vec![
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "05\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0\r\n\r\n",
        "5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
        "",
    ]);
    (line, prop::collection::vec(field, 0..3), body)
        .prop_map(|(l, f, b)| format!("{l}{}\r\n{b}", f.concat()).into_bytes())
}

#[test]
fn what_wicket_sends_a_user_hyper_reads_as_wicket_did() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (accepted, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&(response(), any::<bool>()), |(bytes, head)| {
            let Some((sent, data, more)) = wicket_sends(&bytes, head) else {
                refused.set(refused.get() + 1);
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            let (first, second) = rt.block_on(hyper_reads(sent.clone(), head, more));
            let text = String::from_utf8_lossy(&sent).into_owned();
            prop_assert_eq!(first, Some(data), "{}", text);
            if more {
                prop_assert_eq!(second, Some(b"second".to_vec()), "{}", text);
            }
            Ok(())
        })
        .expect("a user reads what wicket sends as wicket read it");
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted > 100 && refused > 50,
        "{accepted} accepted, {refused} refused"
    );
}
