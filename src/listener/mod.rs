//! Accepting MQTT connections, over TCP and (when a certificate is set) TLS.
//!
//! Accepting happens on the main arbiter; each connection is handed to one
//! of the per-core arbiters in turn (as a std socket, re-registered with that
//! arbiter's reactor), where its TLS handshake and its session actor run. So
//! every core carries traffic and a slow handshake holds up nobody else.

pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::metrics::METRICS;
use crate::session::{Handles, Session, Slot};

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running accept loops; dropping this does not stop them, `stop` does.
pub(crate) struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where each listener is bound ("mqtt" or "mqtts", address).
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
    let tcp = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for MQTT on {}: {e}", cfg.listen))?;
    bound.push(("mqtt", tcp.local_addr()?));
    tasks.push(actix::spawn(accept_loop(
        tcp,
        None,
        handles.clone(),
        arbiters.clone(),
    )));

    if let Some((cert, key)) = cfg.tls() {
        let acceptor = tls::acceptor(cert, key)?;
        let tls = TcpListener::bind(cfg.tls_listen).await.map_err(|e| {
            anyhow::anyhow!("cannot listen for MQTT over TLS on {}: {e}", cfg.tls_listen)
        })?;
        bound.push(("mqtts", tls.local_addr()?));
        tasks.push(actix::spawn(accept_loop(
            tls,
            Some(acceptor),
            handles.clone(),
            arbiters,
        )));
    }
    Ok(Listeners { tasks, bound })
}

async fn accept_loop(
    listener: TcpListener,
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
            match tls {
                None => {
                    Session::start(handles, stream, peer, slot);
                }
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            Session::start(handles, stream, peer, slot);
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
