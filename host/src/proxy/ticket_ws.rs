//! The ticket WebSocket at `/<app>/ws`, k8sTicket-compatible: `msg#<text>`
//! while waiting, then `tkn#<token>@<pod>@<uid>` and a normal close.
//! Extra message kinds (`pos#<n>`) are ignored by k8sTicket's page.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::forward::{ProxyBody, is_upgrade, local};
use crate::app::{App, TicketRequest};
use crate::state::Grant;

/// The waiting message k8sTicket repeats.
pub const WAITING_MESSAGE: &str = "Waiting for a free application slot. Please be patient.";
/// Sent when the app does not accept users.
pub const CLOSED_MESSAGE: &str = "This application is not available right now. Please try again later.";

/// Timing of the ticket WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct WsTiming {
    /// Ping interval (k8sTicket: 5 s).
    pub ping: Duration,
    /// Interval of the waiting message (k8sTicket: 10 s).
    pub message: Duration,
}

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Accepts the WebSocket handshake and runs the ticket session in a task.
pub fn accept(app: Arc<App>, mut req: Request<Incoming>, timing: WsTiming) -> Response<ProxyBody> {
    let is_ws = is_upgrade(&req)
        && req.headers().get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).filter(|_| is_ws) else {
        return local(StatusCode::BAD_REQUEST, "text/plain", "This endpoint speaks WebSocket only.\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default().max_message_size(Some(64 << 10)).max_frame_size(Some(64 << 10));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                session(app, ws, timing).await;
            }
            Err(e) => tracing::debug!("ticket websocket upgrade failed: {e}"),
        }
    });
    let mut r = local(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    let h = r.headers_mut();
    h.remove(header::CONTENT_TYPE);
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

async fn send_text(ws: &mut Ws, text: String) -> bool {
    ws.send(Message::text(text)).await.is_ok()
}

async fn close(mut ws: Ws) {
    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = ws.send(Message::Close(Some(frame))).await;
    // Let the client answer the close so it sees a clean close, briefly.
    let _ = tokio::time::timeout(Duration::from_secs(1), async { while ws.next().await.is_some() {} }).await;
}

/// Sends the ticket; if the user is gone, frees it at once.
async fn deliver(app: &App, mut ws: Ws, grant: Grant) {
    let msg = format!("tkn#{}@{}@{}", grant.token, grant.pod, grant.uid);
    if send_text(&mut ws, msg).await {
        close(ws).await;
    } else {
        app.release(&grant);
    }
}

async fn session(app: Arc<App>, mut ws: Ws, timing: WsTiming) {
    let (waiter, mut grant_rx) = match app.request_ticket() {
        TicketRequest::Granted(grant) => return deliver(&app, ws, grant).await,
        TicketRequest::Closed => {
            let _ = send_text(&mut ws, format!("msg#{CLOSED_MESSAGE}")).await;
            return close(ws).await;
        }
        TicketRequest::Queued { waiter, rx } => (waiter, rx),
    };
    let mut message = tokio::time::interval(timing.message);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + timing.ping, timing.ping);
    loop {
        tokio::select! {
            grant = &mut grant_rx => {
                match grant {
                    Ok(grant) => deliver(&app, ws, grant).await,
                    Err(_) => {
                        let _ = send_text(&mut ws, format!("msg#{CLOSED_MESSAGE}")).await;
                        close(ws).await;
                    }
                }
                return;
            }
            _ = message.tick() => {
                let pos = app.position(waiter).map_or(0, |p| p + 1);
                if !send_text(&mut ws, format!("msg#{WAITING_MESSAGE}")).await
                    || !send_text(&mut ws, format!("pos#{pos}")).await
                {
                    break;
                }
            }
            _ = ping.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    app.leave_queue(waiter);
    // A grant may have raced the departure: give it back.
    if let Ok(grant) = grant_rx.try_recv() {
        app.release(&grant);
    }
}
