//! The ticket WebSocket at `/<app>/ws`, k8sTicket-compatible: `msg#<text>`
//! while waiting, then `tkn#<token>@<pod>@<uid>` and a normal close.
//!
//! Extra message kinds, which k8sTicket's page ignores:
//! - `pos#<n>`: the user's 1-based place in line (sent when it changes);
//! - `eta#<seconds>@<basis>`: the estimated wait (`?` when unknown), basis
//!   `queue` (users ahead must leave) or `starting` (a new pod is starting
//!   for this user);
//! - `rid#<id>`: the resume id, sent to clients that connect with
//!   `/<app>/ws?resume` (or `?resume=<id>` to come back to their old place
//!   after a disconnect, within the app's grace period);
//! - `sta#closed`: the app takes no users (disabled or draining), sent
//!   before the closing `msg#`;
//! - `sta#restart`: this wicket process is shutting down: reconnect (with
//!   the resume id, which keeps the place). Sent before a closing `msg#`
//!   and a close with code 1012 (Service Restart).
//! - `sta#paused` / `sta#open`: new tickets are paused because the shared
//!   ticket store does not answer (the place in line is kept) / go on
//!   again (sent when it changes; `msg#` says it in words meanwhile).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header;
use http::{Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::claims::ClaimKey;
use super::drain::{Drain, Stage, Watch};
use super::fairness::{Quota, Slot};
use super::pages::{ProxyBody, local};
use super::rewind::Rewind;
use crate::app::{App, Join, ORDER_TARGET, Places, WaitStatus};
use crate::state::{Grant, Token};

/// The waiting message k8sTicket repeats.
pub const WAITING_MESSAGE: &str = "Waiting for a free application slot. Please be patient.";

/// The periodic message while the shared ticket store does not answer (no
/// ticket can be issued; the user's place is kept).
pub const STORE_DOWN_MESSAGE: &str = "New sessions are paused for a moment while the service recovers. Your place in line is kept: please keep this page open.";
/// Sent when the client already holds as many places as it may.
pub const REFUSED_MESSAGE: &str =
    "Too many people are waiting from your address. Please try again later.";
/// Sent when the app's line holds `proxy.places_per_app`.
pub const FULL_MESSAGE: &str = "The waiting room is full. Please try again later.";
/// Sent when the app does not accept users.
pub const CLOSED_MESSAGE: &str =
    "This application is not available right now. Please try again later.";
/// Sent when the wicket process shuts down (the user should reconnect).
pub const RESTART_MESSAGE: &str =
    "The waiting room is restarting. Reconnect to keep waiting; your place is kept.";

/// How often a waiting user's place and estimate are looked at (sent only
/// when they changed).
const STATUS_CHECK: Duration = Duration::from_secs(1);
/// Every this many checks the estimate is recomputed even if nothing in
/// the app changed (time passes: starting pods near readiness, sessions age).
const STATUS_REFRESH_CHECKS: u32 = 5;

/// Timing of the ticket WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct WsTiming {
    /// Ping interval (k8sTicket: 5 s); a ping not answered by the next one
    /// drops the client.
    pub ping: Duration,
    /// Interval of the waiting message (k8sTicket: 10 s).
    pub message: Duration,
}

type Ws = WebSocketStream<Rewind>;

/// How a client joins: k8sTicket's way, or resumable (`?resume[=<id>]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joining {
    /// Leaving the socket leaves the queue.
    Plain,
    /// Keep the place after a disconnect; come back with the id if given.
    Resumable(Option<Token>),
}

fn joining(query: Option<&str>) -> Joining {
    let Some(q) = query else {
        return Joining::Plain;
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "resume" {
            return Joining::Resumable(Token::parse(v).ok());
        }
    }
    Joining::Plain
}

/// A checked ticket WebSocket handshake, to be answered by [`serve`].
#[derive(Debug)]
pub struct Opening {
    /// `Sec-WebSocket-Accept` for the client's key.
    accept: String,
    joining: Joining,
    /// The browser's claim binding (and the key its proofs are made with):
    /// a ticket is sent with `clm#<proof>` for `.wicket/claim`.
    bind: Option<(ClaimKey, Token)>,
    /// The client's count of open sockets (given back when the session
    /// ends), and the limits its place in line is made under.
    held: Option<(Slot, Places)>,
}

impl Opening {
    /// The socket counts against `slot`, and its place in line is made
    /// under `places`.
    pub fn held_by(mut self, slot: Slot, places: Places) -> Self {
        self.held = Some((slot, places));
        self
    }
}

/// The one WebSocket version there is (RFC 6455 §4.1).
const VERSION: &str = "13";

/// Checks an upgrade request for the ticket socket (its Connection field
/// listing `upgrade` was checked where the head was parsed, see
/// [`super::wire::RequestHead::upgrade`]) per RFC 6455 §4.2.1: a GET with
/// `Upgrade: websocket`, one `Sec-WebSocket-Key` that is 16 bytes in
/// base64, `Sec-WebSocket-Version: 13` and no body. Anything else is answered
/// (and the connection closed): 405 for another method, 426 naming the
/// version for another version (§4.4), 400 otherwise.
pub fn opening(
    req: &Request<()>,
    bind: Option<(ClaimKey, Token)>,
) -> Result<Opening, BadHandshake> {
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !is_ws {
        return Err(BadHandshake::NotWebSocket);
    }
    if req.method() != http::Method::GET {
        return Err(BadHandshake::NotGet);
    }
    // A body would be read as the first frames (§4.1: the handshake is a
    // GET without one).
    let body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get_all(header::CONTENT_LENGTH).iter().any(|v| v != "0");
    if body {
        return Err(BadHandshake::NotWebSocket);
    }
    let mut keys = h.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) if is_nonce(k.as_bytes()) => k,
        _ => return Err(BadHandshake::NotWebSocket),
    };
    let mut versions = h.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    let version_ok = versions.next().is_some_and(|v| v == VERSION) && versions.next().is_none();
    if !version_ok {
        return Err(BadHandshake::Version);
    }
    Ok(Opening {
        accept: derive_accept_key(key.as_bytes()),
        joining: joining(req.uri().query()),
        bind,
        held: None,
    })
}

/// Why a ticket socket handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHandshake {
    /// No WebSocket handshake (no or a bad key, a body, no
    /// `Upgrade: websocket`): 400.
    NotWebSocket,
    /// Not a GET: 405.
    NotGet,
    /// Another WebSocket version than 13: 426 naming 13.
    Version,
}

impl BadHandshake {
    /// The answer (the connection is closed after it).
    pub fn answer(self) -> Response<ProxyBody> {
        match self {
            BadHandshake::NotWebSocket => not_a_websocket(),
            BadHandshake::NotGet => {
                let mut r = local(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain",
                    "A WebSocket handshake is a GET request.\n",
                );
                r.headers_mut()
                    .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
                r
            }
            BadHandshake::Version => {
                let mut r = local(
                    StatusCode::UPGRADE_REQUIRED,
                    "text/plain",
                    "Unsupported WebSocket version: this server speaks version 13.\n",
                );
                r.headers_mut().insert(
                    header::SEC_WEBSOCKET_VERSION,
                    http::HeaderValue::from_static(VERSION),
                );
                r
            }
        }
    }
}

/// Is `key` a `Sec-WebSocket-Key`: a 16-byte nonce in base64 (24 chars)?
fn is_nonce(key: &[u8]) -> bool {
    use base64::Engine as _;
    let mut nonce = [0u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut nonce)
            .is_ok_and(|n| n == 16)
}

/// Is a ticket socket handshake with these `Origin` fields to `host` (its
/// `Host` field) allowed? One field, naming the host's own origin or one
/// of `allowed` (whole origins, e.g. `https://apps.example.org`). Without
/// an Origin field it is: browsers always send one on a WebSocket
/// handshake, so its absence means a non-browser client (a script,
/// k8sTicket's own clients), which no web page can make a visitor's
/// browser be. Several Origin fields are refused (no browser sends them).
pub fn origins_allowed<'v>(
    mut origins: impl Iterator<Item = &'v [u8]>,
    host: &str,
    allowed: &[Box<str>],
) -> bool {
    match (origins.next(), origins.next()) {
        (None, _) => true,
        (Some(o), None) => origin_allowed(Some(o), host, allowed),
        (Some(_), Some(_)) => false,
    }
}

/// Is a ticket socket handshake from `origin` (its `Origin` field) to
/// `host` allowed? See [`origins_allowed`].
pub fn origin_allowed(origin: Option<&[u8]>, host: &str, allowed: &[Box<str>]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = std::str::from_utf8(origin) else {
        return false;
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let bare = |h: &'_ str| -> String {
        h.strip_suffix(default_port)
            .unwrap_or(h)
            .to_ascii_lowercase()
    };
    !host.is_empty() && !authority.contains('/') && bare(authority) == bare(host)
}

/// The name in a `Host` value, without its port (`[::1]:80` gives
/// `[::1]`).
pub fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    }
}

/// The answer to a request for a place in line (ticket socket or poll)
/// under a host name that is none of wicket's own (`proxy.public_hosts`).
pub fn misdirected() -> Response<ProxyBody> {
    local(
        StatusCode::MISDIRECTED_REQUEST,
        "text/plain",
        "This waiting room does not answer under this host name.\n",
    )
}

/// The answer to a handshake from a page of another origin.
pub fn foreign_origin() -> Response<ProxyBody> {
    local(
        StatusCode::FORBIDDEN,
        "text/plain",
        "This page may not open the waiting room of this application (origin not allowed).\n",
    )
}

/// The answer to a plain request for the ticket socket.
pub fn not_a_websocket() -> Response<ProxyBody> {
    local(
        StatusCode::BAD_REQUEST,
        "text/plain",
        "This endpoint speaks WebSocket only.\n",
    )
}

/// Runs the ticket session of `opening` on the user's connection, whose
/// `early` bytes (sent after the handshake request) were already read.
///
/// The user joins before anything is written, and the `101` goes out in
/// the same write as the first messages: a user who gets a ticket at once
/// receives handshake, ticket and close in one packet (one wake-up of
/// their side instead of three).
///
/// When the proxy shuts down (`drain`), the user is told to reconnect
/// (`sta#restart`, close code 1012) and keeps the place as a resumable
/// user who stepped away.
pub async fn serve(
    app: Arc<App>,
    opening: Opening,
    timing: WsTiming,
    client: TcpStream,
    early: Bytes,
    drain: &Drain,
) {
    let mut head = Vec::with_capacity(160);
    head.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-accept: ",
    );
    head.extend_from_slice(opening.accept.as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    let io = Rewind::new(early, client).with_head(head.into());
    // Small buffers: this socket carries a few short texts, and
    // tungstenite zeroes its whole read buffer per connection. The write
    // buffer collects a message and a close until they are flushed together.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 << 10)
        .write_buffer_size(4 << 10)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (slot, places) = opening
        .held
        .map_or((None, Places::default()), |(s, p)| (Some(s), p));
    let joining = Session {
        timing,
        joining: opening.joining,
        bind: opening.bind,
        places,
        quota: slot.as_ref().map(Slot::quota),
    };
    session(app, ws, joining, drain).await;
    drop(slot);
}

/// Runs `io`, sends to the client, within `limit`: false if it failed or
/// the client did not take the bytes in time. A client that stopped
/// reading is as gone as one that answers no ping: without the bound, a
/// send into its full buffers would wait forever, and the session with it
/// (its place in line, a ticket granted to it).
async fn within(limit: Duration, io: impl Future<Output = bool>) -> bool {
    tokio::time::timeout(limit, io).await.unwrap_or(false)
}

async fn send_text(ws: &mut Ws, text: String, limit: Duration) -> bool {
    within(limit, async { ws.send(Message::text(text)).await.is_ok() }).await
}

/// Sends a normal close, with whatever messages were fed before it.
async fn close_sent(ws: &mut Ws) -> bool {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    ws.send(Message::Close(Some(frame))).await.is_ok()
}

/// Lets the client answer the close so it sees a clean close, briefly.
async fn linger(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while ws.next().await.is_some() {}
    })
    .await;
}

async fn closed(mut ws: Ws, limit: Duration) {
    let sent = within(limit, async {
        ws.feed(Message::text("sta#closed")).await.is_ok()
            && ws
                .feed(Message::text(format!("msg#{CLOSED_MESSAGE}")))
                .await
                .is_ok()
            && close_sent(&mut ws).await
    })
    .await;
    if sent {
        linger(ws).await;
    }
}

/// The process shuts down: tells the user to reconnect and closes with
/// 1012 (Service Restart), which also tells a WebSocket library to.
async fn restart(mut ws: Ws, drain: &Drain, limit: Duration) {
    drain.told();
    let sent = within(limit, async {
        ws.feed(Message::text("sta#restart")).await.is_ok()
            && ws
                .feed(Message::text(format!("msg#{RESTART_MESSAGE}")))
                .await
                .is_ok()
            && ws
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Restart,
                    reason: "".into(),
                })))
                .await
                .is_ok()
    })
    .await;
    if sent {
        linger(ws).await;
    }
}

/// The client holds as many places as it may: says so and closes.
async fn refused(ws: Ws, limit: Duration) {
    turned_away(ws, REFUSED_MESSAGE, limit).await;
}

/// Says why no place was made (`msg#<why>`) and closes.
async fn turned_away(mut ws: Ws, why: &str, limit: Duration) {
    let sent = within(limit, async {
        ws.feed(Message::text(format!("msg#{why}"))).await.is_ok() && close_sent(&mut ws).await
    })
    .await;
    if sent {
        linger(ws).await;
    }
}

/// Sends the ticket (after its claim proof, for a browser with a claim
/// binding); if the user is gone, frees it at once.
async fn deliver(
    app: &App,
    mut ws: Ws,
    grant: Grant,
    bind: Option<(ClaimKey, Token)>,
    limit: Duration,
) {
    let msg = format!("tkn#{}@{}@{}", grant.token, grant.pod, grant.uid);
    let sent = within(limit, async {
        let proof = match bind {
            Some((key, bind)) => {
                let clm = format!("clm#{}", key.proof(&grant.token, &bind));
                ws.feed(Message::text(clm)).await.is_ok()
            }
            None => true,
        };
        // Queued, not sent: it leaves with the close (and, for a user
        // served at once, with the handshake), in one write.
        proof && ws.feed(Message::text(msg)).await.is_ok() && close_sent(&mut ws).await
    })
    .await;
    if sent {
        tracing::debug!(
            target: ORDER_TARGET,
            app = app.name(), pod = %grant.pod, uid = %grant.uid,
            thread = std::thread::current().name(),
            "ticket sent"
        );
        linger(ws).await;
    } else {
        app.release(&grant);
    }
}

/// `eta#<seconds or ?>@<basis>`.
pub fn eta_message(status: &WaitStatus) -> String {
    let basis = status.estimate.basis.as_str();
    match status.estimate.wait {
        Some(w) => format!("eta#{}@{basis}", w.as_secs()),
        None => format!("eta#?@{basis}"),
    }
}

/// How a session goes, besides its socket.
struct Session {
    timing: WsTiming,
    joining: Joining,
    bind: Option<(ClaimKey, Token)>,
    places: Places,
    /// The client's count of live tickets.
    quota: Option<Quota>,
}

async fn session(app: Arc<App>, mut ws: Ws, how: Session, drain: &Drain) {
    let Session {
        timing,
        joining,
        bind,
        places,
        quota,
    } = how;
    // A handshake that came in on a connection of a process already
    // shutting down: straight to another one (a resume id held stays valid).
    if drain.draining() {
        return restart(ws, drain, timing.ping).await;
    }
    // Every send to the client is bounded by a ping interval.
    let limit = timing.ping;
    let mut stage: Watch = drain.watch();
    let (resume, resumable) = match joining {
        Joining::Plain => (None, false),
        Joining::Resumable(rid) => (rid, true),
    };
    let mut changes = app.subscribe();
    // A client holding as many tickets as it may takes no new place nor
    // ticket; coming back to its old place (a valid resume id) is fine.
    let over = quota.as_ref().is_some_and(|q| !q.allows());
    if over && resume.is_none() {
        return refused(ws, limit).await;
    }
    let took = |grant: &Grant| {
        if let (Some(q), Some(t)) = (&quota, app.ticket(&grant.pod, &grant.uid)) {
            q.took(t);
        }
    };
    let (mut waiting, rid) = match app.join_as(places, resume.as_ref(), resumable).await {
        Join::Granted(grant) if over => {
            // The resume id was no place of its: a new ticket after all.
            app.release(&grant);
            return refused(ws, limit).await;
        }
        Join::Granted(grant) => {
            took(&grant);
            return deliver(&app, ws, grant, bind, limit).await;
        }
        Join::Queued {
            waiting,
            resumed: false,
            ..
        } if over => {
            drop(waiting);
            return refused(ws, limit).await;
        }
        Join::Closed => return closed(ws, limit).await,
        Join::Refused => return refused(ws, limit).await,
        Join::Full => return turned_away(ws, FULL_MESSAGE, limit).await,
        Join::Queued { waiting, rid, .. } => {
            let client = places.owner.map(|o| o.client);
            tracing::debug!(
                target: ORDER_TARGET,
                app = app.name(), waiter = waiting.waiter(), client = ?client,
                "in line"
            );
            (waiting, rid)
        }
    };
    let opened = match rid {
        Some(rid) => send_text(&mut ws, format!("rid#{rid}"), limit).await,
        // The handshake goes out now, before the first message.
        None => within(limit, async { ws.flush().await.is_ok() }).await,
    };
    if !opened {
        return;
    }
    let mut message = tokio::time::interval(timing.message);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + timing.ping, timing.ping);
    // Nothing heard since the last ping (a pong at least, which browsers
    // send by themselves) when the next is due: the client is gone (a
    // half-open connection) and loses its place like one that closed.
    let mut unanswered = false;
    let mut check = tokio::time::interval(STATUS_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut last_pos, mut last_eta) = (String::new(), String::new());
    let (mut dirty, mut checks) = (true, 0u32);
    // Is the user told that new tickets are paused (see `sta#paused`)?
    let mut paused = false;
    let mut ending = Ending::Gone;
    loop {
        tokio::select! {
            grant = waiting.granted() => {
                drop(changes);
                match grant {
                    Ok(grant) => {
                        // The user holds the ticket now, not a place in line.
                        drop(waiting);
                        took(&grant);
                        deliver(&app, ws, grant, bind, limit).await;
                    }
                    Err(_) => closed(ws, limit).await,
                }
                return;
            }
            _ = message.tick() => {
                let up = app.store_up();
                if up == paused {
                    paused = !up;
                    let sta = if paused { "sta#paused" } else { "sta#open" };
                    if !send_text(&mut ws, sta.into(), limit).await {
                        break;
                    }
                }
                let text = if up { WAITING_MESSAGE } else { STORE_DOWN_MESSAGE };
                if !send_text(&mut ws, format!("msg#{text}"), limit).await {
                    break;
                }
                dirty = true;
                checks = STATUS_REFRESH_CHECKS;
            }
            _ = check.tick() => {
                // Changes are looked at here, not awaited: each grant
                // changes the app, and waking every waiting session on
                // every grant queues them all on the edge thread beside
                // the one the grant is for, whose ticket then waits its
                // turn among them (tickets written out of grant order).
                match changes.has_changed() {
                    Ok(true) => {
                        changes.borrow_and_update();
                        dirty = true;
                    }
                    Ok(false) => {}
                    Err(_) => break,
                }
                checks += 1;
                if dirty || checks >= STATUS_REFRESH_CHECKS {
                    dirty = false;
                    checks = 0;
                    if let Some(status) = waiting.status() {
                        let (pos, eta) = (format!("pos#{}", status.position), eta_message(&status));
                        if pos != last_pos && !send_text(&mut ws, pos.clone(), limit).await {
                            break;
                        }
                        if eta != last_eta && !send_text(&mut ws, eta.clone(), limit).await {
                            break;
                        }
                        (last_pos, last_eta) = (pos, eta);
                    }
                }
            }
            _ = ping.tick() => {
                if unanswered {
                    tracing::debug!(app = app.name(), "no pong: the waiting user is gone");
                    break;
                }
                let ping = async { ws.send(Message::Ping(Default::default())).await.is_ok() };
                if !within(limit, ping).await {
                    break;
                }
                unanswered = true;
            }
            incoming = ws.next() => match incoming {
                // tungstenite queued the answering close (RFC 6455 §5.5.1).
                Some(Ok(Message::Close(_))) => {
                    ending = Ending::Answer;
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    ending = failure(&e).map_or(Ending::Gone, Ending::Fail);
                    break;
                }
                Some(Ok(_)) => unanswered = false,
            },
            () = stage.reached(Stage::Draining) => {
                drop(changes);
                // A resumable user steps away (the place is kept for the
                // grace period); a plain one leaves, as on any close.
                drop(waiting);
                return restart(ws, drain, limit).await;
            }
        }
    }
    // Dropping `waiting` leaves the queue (or steps away, if resumable) and
    // gives back a grant that raced the departure.
    drop(waiting);
    end(ws, ending).await;
}

/// How a session's socket ends after the client left the loop.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Nothing to say (the client is gone, or wicket gave up on it).
    Gone,
    /// The client closed: send the close tungstenite queued in answer.
    Answer,
    /// The client broke the protocol: close with this code (RFC 6455
    /// §7.1.7 and §7.4.1).
    Fail(CloseCode),
}

/// The close code for a client's frame that failed the connection: 1002
/// for a protocol error (an unmasked frame, reserved bits or opcodes, a
/// fragmented or oversized control frame), 1007 for text that is not
/// UTF-8, 1009 for a frame or message over the size limit. None when the
/// connection itself is gone.
fn failure(e: &WsError) -> Option<CloseCode> {
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(CloseCode::Protocol),
        WsError::Utf8(_) => Some(CloseCode::Invalid),
        WsError::Capacity(_) => Some(CloseCode::Size),
        _ => None,
    }
}

/// Ends the socket as `ending` says, within a short bound (a client that
/// does not read gets no more time).
async fn end(mut ws: Ws, ending: Ending) {
    let said = async {
        match ending {
            Ending::Gone => {}
            Ending::Answer => {
                let _ = ws.flush().await;
            }
            Ending::Fail(code) => {
                let frame = CloseFrame {
                    code,
                    reason: "".into(),
                };
                let _ = ws.send(Message::Close(Some(frame))).await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), said).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll};
    use tokio::io::AsyncReadExt;

    /// Counts the polls of the future it wraps.
    struct Polls<F> {
        inner: Pin<Box<F>>,
        polls: Arc<AtomicUsize>,
    }

    impl<F: Future> Future for Polls<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.inner.as_mut().poll(cx)
        }
    }

    /// Reads from `s` until what was read contains `what`.
    async fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, what: &str) {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(seen).contains(what) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("in time")
                .expect("read");
            assert!(n > 0, "closed before {what:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Tickets freed together are written by each edge thread in the order
    /// they were granted only if a waiting session wakes for its own grant
    /// and not for every change of the app (each grant is one): woken by
    /// every change, all waiting sessions queue up on the thread, in no
    /// set order, before the grants reach them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_session_is_not_woken_by_changes_of_the_app() {
        let app = crate::app::tests::app(1);
        let held = match app.request_ticket().await {
            crate::app::TicketRequest::Granted(g) => g,
            r => panic!("the free slot: {r:?}"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let req = Request::get("/t/ws")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .body(())
            .expect("request");
        let open = opening(&req, None).expect("a handshake");
        let timing = WsTiming {
            ping: Duration::from_secs(60),
            message: Duration::from_secs(60),
        };
        let polls = Arc::new(AtomicUsize::new(0));
        let session = {
            let app = Arc::clone(&app);
            Polls {
                inner: Box::pin(async move {
                    let drain = Drain::default();
                    serve(app, open, timing, server, Bytes::new(), &drain).await;
                }),
                polls: Arc::clone(&polls),
            }
        };
        let task = tokio::spawn(session);
        let mut seen = Vec::new();
        // In line: its place is the first status it sends.
        read_until(&mut client, &mut seen, "pos#1").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = polls.load(Ordering::SeqCst);
        // Five users join behind it: five changes of the app.
        let mut behind = Vec::new();
        for _ in 0..5 {
            behind.push(app.request_ticket().await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            polls.load(Ordering::SeqCst),
            before,
            "the waiting session was woken by changes that are not its grant"
        );
        // Its own grant still reaches it at once.
        app.release(&held);
        let served = tokio::spawn(Arc::clone(&app).run());
        read_until(&mut client, &mut seen, "tkn#").await;
        served.abort();
        task.abort();
    }

    #[test]
    fn origins() {
        let none: &[Box<str>] = &[];
        let ok = |o: &str, h: &str| origin_allowed(Some(o.as_bytes()), h, none);
        assert!(origin_allowed(None, "h", none), "non-browser clients");
        assert!(ok("http://wicket.test:9001", "wicket.test:9001"));
        assert!(ok("https://Wicket.Test", "wicket.test:443"));
        assert!(ok("http://wicket.test", "wicket.test"));
        assert!(!ok("http://evil.test", "wicket.test"));
        assert!(!ok("http://wicket.test:9002", "wicket.test:9001"));
        assert!(!ok("null", "wicket.test"));
        assert!(!ok("http://wicket.test", ""));
        assert!(!ok("ftp://wicket.test", "wicket.test"));
        let list: &[Box<str>] = &["https://apps.example.org".into()];
        assert!(origin_allowed(
            Some(b"https://apps.example.org"),
            "wicket.test",
            list
        ));
        assert!(!origin_allowed(
            Some(b"https://x.example.org"),
            "wicket.test",
            list
        ));
    }

    #[test]
    fn host_names_without_ports() {
        assert_eq!(host_name("wicket.test:9001"), "wicket.test");
        assert_eq!(host_name("wicket.test"), "wicket.test");
        assert_eq!(host_name("[::1]:80"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("a:b"), "a:b");
    }

    #[test]
    fn keys_are_16_byte_nonces() {
        assert!(is_nonce(b"dGhlIHNhbXBsZSBub25jZQ=="), "RFC 6455's example");
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25jZQ"), "unpadded");
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25jZQ==x"));
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25jZSE="), "17 bytes");
        assert!(!is_nonce(b"dGhlIHNhbXBsZSBub25j!Q=="));
        assert!(!is_nonce(b""));
    }

    #[test]
    fn resume_query() {
        let t = Token::generate();
        assert_eq!(joining(None), Joining::Plain);
        assert_eq!(joining(Some("x=1")), Joining::Plain);
        assert_eq!(joining(Some("resume")), Joining::Resumable(None));
        assert_eq!(joining(Some("resume=")), Joining::Resumable(None));
        assert_eq!(joining(Some("resume=garbage")), Joining::Resumable(None));
        assert_eq!(
            joining(Some(&format!("a=b&resume={t}"))),
            Joining::Resumable(Some(t))
        );
    }
}
