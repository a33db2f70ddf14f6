//! Accepting MQTT connections: over TCP, over WebSocket (`ws.rs`), and,
//! when a certificate is set, over TLS and WebSocket over TLS.
//!
//! Accepting happens on the main arbiter; each connection is handed to one
//! of the per-core arbiters in turn (as a std socket, re-registered with that
//! arbiter's reactor), where its TLS and WebSocket handshakes and its
//! session actor run. So every core carries traffic and a slow handshake
//! holds up nobody else.

pub(crate) mod tls;
pub(crate) mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::metrics::METRICS;
use crate::session::{Handles, Peer, Session, Slot, Transport};

/// How long a client may take to finish its TLS and WebSocket handshakes
/// (both, for wss): as long as it may take to send CONNECT after them.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running accept loops; dropping this does not stop them, `stop` does.
pub(crate) struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where each listener is bound ("mqtt", "mqtts", "ws" or "wss", address).
    pub bound: Vec<(&'static str, SocketAddr)>,
}

impl Listeners {
    /// Stops accepting; connections already made go on until shutdown.
    pub(crate) fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Binds the configured listeners and starts accepting.
pub(crate) async fn start(
    handles: Arc<Handles>,
    arbiters: Vec<ArbiterHandle>,
) -> anyhow::Result<Listeners> {
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    let cfg = &handles.mqtt;
    let acceptor = match cfg.tls() {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let mut wanted = vec![(Transport::Tcp, cfg.listen)];
    if acceptor.is_some() {
        wanted.push((Transport::Tls, cfg.tls_listen));
    }
    wanted.extend(cfg.ws_listen.map(|a| (Transport::Ws, a)));
    if acceptor.is_some() {
        wanted.extend(cfg.wss_listen.map(|a| (Transport::Wss, a)));
    }
    for (transport, addr) in wanted {
        let (name, what) = match transport {
            Transport::Tcp => ("mqtt", "MQTT"),
            Transport::Tls => ("mqtts", "MQTT over TLS"),
            Transport::Ws => ("ws", "MQTT over WebSocket"),
            Transport::Wss => ("wss", "MQTT over WebSocket over TLS"),
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for {what} on {addr}: {e}"))?;
        bound.push((name, listener.local_addr()?));
        let tls = match transport {
            Transport::Tls | Transport::Wss => acceptor.clone(),
            Transport::Tcp | Transport::Ws => None,
        };
        tasks.push(actix::spawn(accept_loop(
            listener,
            transport,
            tls,
            handles.clone(),
            arbiters.clone(),
        )));
    }
    Ok(Listeners { tasks, bound })
}

/// Accepts on one listener; `tls` is the acceptor for `Tls` and `Wss`.
async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
    handles: Arc<Handles>,
    arbiters: Vec<ArbiterHandle>,
) {
    let mut next = 0usize;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather
                // than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = Slot::take(handles.mqtt.max_connections) else {
            // Dropped at once: the peer sees the connection close.
            METRICS.connections_over_limit.inc();
            tracing::debug!(%peer, "max_connections reached: connection refused");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand a connection over");
                continue;
            }
        };
        let handles = handles.clone();
        let tls = tls.clone();
        let run = async move {
            let stream = match TcpStream::from_std(std_stream) {
                Ok(s) => s,
                Err(e) => return tracing::warn!(error = %e, "cannot register a connection"),
            };
            match (transport, tls) {
                (Transport::Tcp, _) => {
                    Session::start(handles, stream, Peer::direct(peer, transport), slot);
                }
                (Transport::Ws, _) => {
                    ws::serve(handles, stream, peer, transport, slot, HANDSHAKE_TIMEOUT).await;
                }
                // Not reached: `start` gives these listeners the acceptor.
                (Transport::Tls | Transport::Wss, None) => {
                    tracing::error!(%peer, "a TLS listener without a certificate")
                }
                (Transport::Tls | Transport::Wss, Some(acceptor)) => {
                    let started = tokio::time::Instant::now();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) if transport == Transport::Wss => {
                            // What is left of the one deadline for both.
                            let left = HANDSHAKE_TIMEOUT.saturating_sub(started.elapsed());
                            ws::serve(handles, stream, peer, transport, slot, left).await;
                        }
                        Ok(Ok(stream)) => {
                            Session::start(handles, stream, Peer::direct(peer, transport), slot);
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        };
        if arbiters.is_empty() {
            actix::spawn(run);
        } else {
            arbiters[next % arbiters.len()].spawn(run);
            next = next.wrapping_add(1);
        }
    }
}
