//! MQTT over WebSocket (`ws_listen`, and `wss_listen` over TLS): the HTTP
//! upgrade, and [`WsIo`], which turns the WebSocket into the byte stream a
//! session reads and writes, so that every session runs the same code
//! whatever its transport.
//!
//! The handshake ([`check`]) answers 404 for a path other than
//! `[mqtt] ws_path`, 400 when the client offers none of the MQTT
//! subprotocols (`mqtt`, `mqttv3.1`, `mqttv5`), 403 for an `Origin` that
//! `ws_allowed_origins` leaves out; it believes `X-Forwarded-For` only from
//! `ws_trusted_proxies`. After it, MQTT bytes travel in binary messages: a
//! packet may span messages and a message may hold several packets (the
//! session's decoder sees one stream). A text message, or a frame or
//! message larger than `max_packet_size`, closes the connection with the
//! close code the RFC gives for it (1003, 1009); pings are answered and a
//! close is returned, by tungstenite.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::MqttConfig;
use crate::session::{Handles, Peer, Session, Slot, Transport};

/// The subprotocols a client may ask for (`Sec-WebSocket-Protocol`), as
/// MQTT.js, Paho and MQTTX send them. `mqttv5` is accepted too: the session
/// answers whatever protocol version the CONNECT inside asks for.
pub(crate) const SUBPROTOCOLS: [&str; 3] = ["mqtt", "mqttv3.1", "mqttv5"];

/// The WebSocket read buffer of a connection: tungstenite's default is
/// 128 KiB, many times what a whole idle TCP connection costs; it grows
/// for a larger message.
const READ_BUFFER: usize = 4096;

/// What a handshake that may go on found out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// The subprotocol chosen, as the client spelt it (echoed back).
    pub(crate) protocol: String,
    /// The client's address, from a trusted proxy's `X-Forwarded-For`.
    pub(crate) forwarded: Option<IpAddr>,
    /// The `Origin` header (browsers send it), for the log.
    pub(crate) origin: Option<String>,
}

/// Why a handshake was refused: the HTTP status and a line for the body.
pub(crate) type Refused = (StatusCode, &'static str);

/// Checks an upgrade request from `socket` against `[mqtt]`.
pub(crate) fn check(
    cfg: &MqttConfig,
    socket: SocketAddr,
    req: &Request,
) -> Result<Accepted, Refused> {
    if req.uri().path() != cfg.ws_path {
        return Err((StatusCode::NOT_FOUND, "no MQTT here: see [mqtt] ws_path"));
    }
    let protocol = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| SUBPROTOCOLS.iter().any(|p| p.eq_ignore_ascii_case(offered)))
        .map(str::to_string)
        .ok_or((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer mqtt, mqttv3.1 or mqttv5",
        ))?;
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(o) = &origin {
        if !cfg.origin_allowed(o) {
            return Err((
                StatusCode::FORBIDDEN,
                "this Origin is not in [mqtt] ws_allowed_origins",
            ));
        }
    }
    let forwarded = if cfg.trusted_proxy(socket.ip()) {
        forwarded_for(cfg, req)
    } else {
        None
    };
    Ok(Accepted {
        protocol,
        forwarded,
        origin,
    })
}

/// The client's address in `X-Forwarded-For` (`client, proxy1, proxy2`,
/// perhaps over several headers): the rightmost entry that is not itself a
/// trusted proxy, since only what trusted proxies appended can be believed.
/// None when the header is missing or an entry is not an address.
fn forwarded_for(cfg: &MqttConfig, req: &Request) -> Option<IpAddr> {
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let mut client = None;
    for entry in entries.iter().rev() {
        let ip = parse_forwarded(entry)?;
        client = Some(ip);
        if !cfg.trusted_proxy(ip) {
            break;
        }
    }
    client
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port
/// (`203.0.113.7`, `203.0.113.7:5000`, `[2001:db8::1]:5000`, `2001:db8::1`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The WebSocket settings of a connection under `[mqtt]`: a small read
/// buffer, and no frame or message larger than a packet may be.
fn ws_config(cfg: &MqttConfig) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // The session's writer gathers a burst into one write and flushes:
        // nothing to gain from a second buffer.
        .write_buffer_size(0)
        .max_message_size(Some(cfg.max_packet_size))
        .max_frame_size(Some(cfg.max_packet_size))
}

/// Runs the upgrade on an accepted stream (TCP, or TLS for `wss`) and starts
/// the session over it; a refused or failed handshake ends here, logged.
/// `deadline` bounds the handshake (with the TLS one before it, for wss).
pub(crate) async fn serve<S>(
    handles: Arc<Handles>,
    stream: S,
    socket: SocketAddr,
    transport: Transport,
    slot: Slot,
    deadline: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let mut accepted = None;
    let mut refused = None;
    // The signature is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        match check(&handles.mqtt, socket, req) {
            Ok(a) => {
                let value = HeaderValue::from_str(&a.protocol).map_err(|_| {
                    error_response(
                        StatusCode::BAD_REQUEST,
                        "a malformed Sec-WebSocket-Protocol",
                    )
                })?;
                resp.headers_mut()
                    .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
                accepted = Some(a);
                Ok(resp)
            }
            Err((status, why)) => {
                refused = Some((
                    status,
                    req.uri().path().to_string(),
                    req.headers().get(header::ORIGIN).cloned(),
                ));
                Err(error_response(status, why))
            }
        }
    };
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(&handles.mqtt)),
    );
    let ws = match tokio::time::timeout(deadline, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            match refused {
                Some((status, path, origin)) => tracing::info!(
                    peer = %socket,
                    path,
                    origin = origin.as_ref().and_then(|o| o.to_str().ok()),
                    status = status.as_u16(),
                    "WebSocket upgrade refused"
                ),
                None => tracing::info!(peer = %socket, error = %e, "WebSocket handshake failed"),
            }
            return;
        }
        Err(_) => return tracing::info!(peer = %socket, "WebSocket handshake timed out"),
    };
    let Some(accepted) = accepted else {
        // Not reached: a handshake that completed went through the
        // callback, which accepted it.
        return tracing::error!(peer = %socket, "a WebSocket upgrade without its checks");
    };
    let peer = Peer {
        socket,
        forwarded: accepted.forwarded,
        transport,
    };
    match &accepted.origin {
        Some(origin) => {
            tracing::info!(%peer, origin, protocol = accepted.protocol, "WebSocket upgrade")
        }
        None => tracing::debug!(%peer, protocol = accepted.protocol, "WebSocket upgrade"),
    }
    Session::start(handles, WsIo::new(ws), peer, slot);
}

fn error_response(status: StatusCode, why: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(format!("{why}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A WebSocket as a stream of MQTT bytes: reads hand on the payloads of
/// binary messages in order, whatever their boundaries; each write is sent
/// as one binary message.
pub(crate) struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the binary message being read.
    pending: Bytes,
    /// The peer closed (or the connection failed): reads see the end.
    ended: bool,
    /// A close frame was queued (ours, or tungstenite's reply to the
    /// peer's): no other may follow.
    closing: bool,
}

impl<S> WsIo<S> {
    pub(crate) fn new(ws: WebSocketStream<S>) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
            ended: false,
            closing: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Queues a close frame and pushes it out as far as the socket takes it
    /// now; a close that cannot be sent at once goes with the writer's
    /// shutdown, or not at all (the connection is ending either way).
    fn close_with(&mut self, cx: &mut Context<'_>, code: CloseCode, reason: &'static str) {
        if self.closing {
            return;
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let mut ws = Pin::new(&mut self.ws);
        if let Poll::Ready(Ok(())) = ws.as_mut().poll_ready(cx) {
            if ws.as_mut().start_send(Message::Close(Some(frame))).is_ok() {
                let _ = ws.as_mut().poll_flush(cx);
                self.closing = true;
            }
        }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Answered by tungstenite (a pong goes out with the next
                // read or write); nothing for the session.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    self.close_with(cx, CloseCode::Unsupported, "MQTT is sent in binary frames");
                    self.ended = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame: MQTT over WebSocket is sent in binary frames",
                    )));
                }
                // tungstenite has queued the close reply; the writer's
                // shutdown sends it.
                Some(Ok(Message::Close(_))) | None => {
                    self.ended = true;
                    self.closing = true;
                }
                Some(Err(WsError::Capacity(e))) => {
                    self.close_with(cx, CloseCode::Size, "larger than max_packet_size");
                    self.ended = true;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    self.ended = true;
                    self.closing = true;
                }
                Some(Err(e)) => {
                    self.ended = true;
                    return Poll::Ready(Err(io_error(e)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
        ws.as_mut()
            .start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io_error)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    /// Sends a close frame, 1000 (normal), unless one was sent already or
    /// this is the reply to the client's, and flushes.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            let mut ws = Pin::new(&mut self.ws);
            ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
            ws.as_mut()
                .start_send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                })))
                .map_err(io_error)?;
            self.closing = true;
        }
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = Request::builder().uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("a request")
    }

    fn mqtt(extra: impl FnOnce(&mut MqttConfig)) -> MqttConfig {
        let mut cfg = Config::default().mqtt;
        extra(&mut cfg);
        cfg
    }

    fn socket(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().expect("an address"), 40000)
    }

    #[test]
    fn the_path_and_a_subprotocol_are_required() {
        let cfg = mqtt(|_| {});
        let peer = socket("127.0.0.1");
        let no = |path, h: &[(&str, &str)]| check(&cfg, peer, &request(path, h)).map_err(|e| e.0);
        assert_eq!(
            no("/", &[("sec-websocket-protocol", "mqtt")]),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            no("/mqtt/x", &[("sec-websocket-protocol", "mqtt")]),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(no("/mqtt", &[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            no("/mqtt", &[("sec-websocket-protocol", "chat, wamp")]),
            Err(StatusCode::BAD_REQUEST)
        );
        let ok = check(
            &cfg,
            peer,
            &request(
                "/mqtt?x=1",
                &[("sec-websocket-protocol", "wamp, mqttv3.1, mqtt")],
            ),
        )
        .expect("accepted");
        assert_eq!(ok.protocol, "mqttv3.1", "the client's first MQTT choice");
        let ok = check(
            &cfg,
            peer,
            &request("/mqtt", &[("sec-websocket-protocol", "mqttv5")]),
        )
        .expect("accepted");
        assert_eq!(ok.protocol, "mqttv5");
        assert_eq!((ok.forwarded, ok.origin), (None, None));
    }

    #[test]
    fn origins_are_let_in_as_configured() {
        let any = mqtt(|_| {});
        let only = mqtt(|c| c.ws_allowed_origins = vec!["https://dash.example".into()]);
        let peer = socket("127.0.0.1");
        let from = |origin| {
            request(
                "/mqtt",
                &[("sec-websocket-protocol", "mqtt"), ("origin", origin)],
            )
        };
        assert_eq!(
            check(&any, peer, &from("https://x.example"))
                .expect("any")
                .origin
                .as_deref(),
            Some("https://x.example")
        );
        assert!(check(&only, peer, &from("https://DASH.example")).is_ok());
        assert_eq!(
            check(&only, peer, &from("https://x.example")).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        // Not a browser: no Origin, let in.
        assert!(check(
            &only,
            peer,
            &request("/mqtt", &[("sec-websocket-protocol", "mqtt")])
        )
        .is_ok());
    }

    #[test]
    fn x_forwarded_for_only_from_a_trusted_proxy() {
        let cfg = mqtt(|c| {
            c.ws_trusted_proxies = vec![
                crate::config::IpNet::parse("127.0.0.1").expect("a range"),
                crate::config::IpNet::parse("10.0.0.0/8").expect("a range"),
            ]
        });
        let req = |xff: &str| {
            request(
                "/mqtt",
                &[("sec-websocket-protocol", "mqtt"), ("x-forwarded-for", xff)],
            )
        };
        let fwd = |peer: &str, xff: &str| {
            check(&cfg, socket(peer), &req(xff))
                .expect("accepted")
                .forwarded
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("an address"));
        assert_eq!(fwd("127.0.0.1", "203.0.113.7"), ip("203.0.113.7"));
        assert_eq!(fwd("192.0.2.1", "203.0.113.7"), None, "not a trusted proxy");
        // The rightmost address no trusted proxy is at: what was prepended
        // before the first trusted proxy could be forged.
        assert_eq!(
            fwd("127.0.0.1", "1.2.3.4, 203.0.113.7, 10.1.1.1"),
            ip("203.0.113.7")
        );
        assert_eq!(fwd("127.0.0.1", "10.2.2.2, 10.1.1.1"), ip("10.2.2.2"));
        assert_eq!(fwd("127.0.0.1", "[2001:db8::1]:5000"), ip("2001:db8::1"));
        assert_eq!(fwd("127.0.0.1", "203.0.113.7:5000"), ip("203.0.113.7"));
        assert_eq!(fwd("127.0.0.1", "unknown"), None);
        assert_eq!(fwd("::ffff:127.0.0.1", "203.0.113.7"), ip("203.0.113.7"));
    }
}
