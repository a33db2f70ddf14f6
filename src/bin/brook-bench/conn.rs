//! A connection to the broker: plain TCP, or MQTT over WebSocket (`--ws`)
//! with the WebSocket turned into the same byte stream, so that every
//! scenario runs unchanged over either.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, Sink, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// An open connection.
pub(crate) enum Conn {
    Tcp(TcpStream),
    Ws(Box<WsConn>),
}

impl Conn {
    /// Upgrades a TCP connection to `ws://host:port{path}` with the
    /// subprotocol `mqtt`.
    pub(crate) async fn websocket(
        tcp: TcpStream,
        host: &str,
        port: u16,
        path: &str,
    ) -> anyhow::Result<Conn> {
        let mut req = format!("ws://{host}:{port}{path}").into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        // Small buffers, as the broker's: the bench holds thousands of idle
        // connections too.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(config)).await?;
        Ok(Conn::Ws(Box::new(WsConn {
            ws,
            pending: Bytes::new(),
            flushing: false,
        })))
    }

    /// Reads what is there without waiting; `WouldBlock` when nothing is.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_read_buf(buf),
            Conn::Ws(_) => self
                .read_buf(buf)
                .now_or_never()
                .unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into())),
        }
    }

    /// Whether the connection is still open: nothing to read and no end.
    pub(crate) fn is_open(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self {
            Conn::Tcp(s) => {
                matches!(s.try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Conn::Ws(_) => self.read(&mut b).now_or_never().is_none(),
        }
    }

    /// Writes `data` if it can go at once (a last DISCONNECT).
    pub(crate) fn try_write(&mut self, data: &[u8]) {
        match self {
            Conn::Tcp(s) => {
                let _ = s.try_write(data);
            }
            Conn::Ws(_) => {
                let _ = self.write_all(data).now_or_never();
            }
        }
    }
}

/// A client WebSocket as a byte stream: each write one binary message,
/// reads the binary messages' payloads in order.
pub(crate) struct WsConn {
    ws: WebSocketStream<TcpStream>,
    /// What is left of the message being read.
    pending: Bytes,
    /// The message of the current write is queued; waiting for it to go out.
    flushing: bool,
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let w = match self.get_mut() {
            Conn::Tcp(s) => return Pin::new(s).poll_read(cx, buf),
            Conn::Ws(w) => w,
        };
        loop {
            if !w.pending.is_empty() {
                let n = w.pending.len().min(buf.remaining());
                buf.put_slice(&w.pending[..n]);
                w.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut w.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => w.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::other("a text message from the broker")))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed)) => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let w = match self.get_mut() {
            Conn::Tcp(s) => return Pin::new(s).poll_write(cx, data),
            Conn::Ws(w) => w,
        };
        let mut ws = Pin::new(&mut w.ws);
        if !w.flushing {
            ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
            ws.as_mut()
                .start_send(Message::Binary(Bytes::copy_from_slice(data)))
                .map_err(io_error)?;
            w.flushing = true;
        }
        // Out before the write counts as done: the scenarios never flush,
        // and a message left in tungstenite's buffer would wait forever.
        // (A caller polls again with the same data while this is pending.)
        ready!(ws.as_mut().poll_flush(cx)).map_err(io_error)?;
        w.flushing = false;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Ws(w) => Pin::new(&mut w.ws).poll_flush(cx).map_err(io_error),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Ws(w) => Pin::new(&mut w.ws).poll_close(cx).map_err(io_error),
        }
    }
}
