//! SIP over WebSocket (RFC 7118): one connection task per browser.
//!
//! The opening handshake must ask for the `sip` subprotocol (§4); the answer names it. After
//! that every WebSocket message (text or binary) is one whole SIP message, handed to the SIP
//! task like a framed TCP message; what the SIP task sends goes out as one text message each
//! (binary when it is not UTF-8). Pings are answered by the WebSocket layer; a message larger
//! than [`TransportConfig::max_message_size`] closes the connection. A connection that carries
//! no registrar binding and sends nothing for the idle timeout is closed, as on TCP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sip::{ConnId, Transport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

use super::{handshake_failed, Closed, ConnNote, TcpEvent, TransportConfig};

/// How long a new connection may take to finish its opening handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the client asked for the `sip` subprotocol (`Sec-WebSocket-Protocol` is a
/// comma-separated list, possibly in several header lines).
fn asks_for_sip(req: &Request) -> bool {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"))
}

/// Accept a browser's connection and carry its SIP messages until it closes. `transport`
/// is [`Transport::Ws`] or [`Transport::Wss`] (the stream is then already TLS).
pub(crate) async fn serve<S>(
    id: ConnId,
    stream: S,
    remote: SocketAddr,
    transport: Transport,
    keep: bool,
    cfg: TransportConfig,
    events: mpsc::Sender<TcpEvent>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws_cfg = WebSocketConfig::default();
    ws_cfg.max_message_size = Some(cfg.max_message_size);
    ws_cfg.max_frame_size = Some(cfg.max_message_size);
    // The WebSocket layer's callback type fixes this signature (its error is a response).
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        if !asks_for_sip(req) {
            let mut e = ErrorResponse::new(Some(
                "this is a SIP WebSocket server (RFC 7118): ask for the \"sip\" subprotocol"
                    .to_owned(),
            ));
            *e.status_mut() = StatusCode::BAD_REQUEST;
            return Err(e);
        }
        resp.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
        Ok(resp)
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_cfg));
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        failed => {
            let reason = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "no opening handshake in time".to_owned(),
            };
            let note = ConnNote::WsHandshake;
            return handshake_failed(&events, id, remote, note, &reason).await;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    let bound = Arc::new(AtomicBool::new(false));
    if events
        .send(TcpEvent::Opened(
            id,
            remote,
            transport,
            out_tx.clone(),
            bound.clone(),
        ))
        .await
        .is_err()
    {
        return;
    }
    // Pongs to the browser's pings are queued by the reader and flushed with the next
    // write; the writer also flushes them when nothing else is going out.
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            let msg = match std::str::from_utf8(&b) {
                Ok(s) => Message::text(s),
                Err(_) => Message::binary(b),
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut why = Closed::Ended;
    loop {
        let next = match tokio::time::timeout(cfg.tcp_idle_timeout, source.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                debug!(remote = %remote, error = %e, "WebSocket connection ended");
                if matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)) {
                    why = Closed::Unframeable("message too large");
                }
                break;
            }
            Ok(None) => break,
            Err(_) if keep || bound.load(Ordering::Relaxed) => continue,
            Err(_) => {
                why = Closed::Idle;
                break;
            }
        };
        let data: Bytes = match next {
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            Message::Binary(b) => b,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        // A keep-alive of bare line ends (as on TCP) is answered in kind.
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            let _ = out_tx.try_send(Bytes::from_static(b"\r\n"));
            continue;
        }
        if events
            .send(TcpEvent::Message(id, remote, data))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(out_tx);
    let _ = events.send(TcpEvent::Closed(id, why)).await;
    let _ = writer.await;
}
