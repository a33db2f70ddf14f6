//! Opening a bridge's link: TCP, TLS for `mqtts://` (the `ca_file`'s
//! certificates, or the system's roots), CONNECT for a persistent session,
//! and the remote's CONNACK; then a writer task that owns the socket's
//! write half, so that a remote that stops reading never blocks the bridge.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;

use super::wire::{self, Codec, ConnAck, ConnectOptions, Incoming};
use crate::config::{BridgeConfig, Password, RemoteAddr};

/// How long one attempt may take, from the TCP connect to the CONNACK.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Packets queued to the writer task.
const WRITER_QUEUE: usize = 64;

/// How much the writer gathers into one write.
const WRITE_BUFFER: usize = 16 * 1024;

/// What a bridge needs at every attempt that the config file only names:
/// the password from the environment, the TLS setup from `ca_file`.
#[derive(Clone)]
pub(crate) struct Secrets {
    pub password: Option<Arc<[u8]>>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Secrets {
    /// Reads them for `b` (of config file `file`); the error is
    /// `FILE:LINE: bridge.KEY: message`, so the server can stop with it.
    pub(crate) fn load(b: &BridgeConfig, file: &Path) -> Result<Secrets, String> {
        let at = |key: &str, message: String| {
            format!("{}:{}: bridge.{key}: {message}", file.display(), b.line)
        };
        let password = match &b.password {
            None => None,
            Some(Password::Inline(p)) => Some(Arc::from(p.as_bytes())),
            Some(Password::Env(var)) => match std::env::var(var) {
                Ok(p) => Some(Arc::from(p.as_bytes())),
                Err(_) => {
                    return Err(at(
                        "password_env",
                        format!(
                            "bridge {:?}: the environment variable {var} is not set",
                            b.name
                        ),
                    ))
                }
            },
        };
        if password.is_some() && b.username.is_none() && b.protocol == crate::config::Protocol::V311
        {
            return Err(at(
                "username",
                "MQTT 3.1.1 sends a password only with a username; set username".into(),
            ));
        }
        let tls = if b.remotes.iter().any(|r| r.tls) {
            let roots = match &b.ca_file {
                Some(ca) => {
                    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                        .map_err(|e| at("ca_file", format!("{}: {e}", ca.display())))?
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            at(
                                "ca_file",
                                format!("{}: not PEM certificates: {e}", ca.display()),
                            )
                        })?;
                    let mut roots = rustls::RootCertStore::empty();
                    for c in certs {
                        roots
                            .add(c)
                            .map_err(|e| at("ca_file", format!("{}: {e}", ca.display())))?;
                    }
                    if roots.is_empty() {
                        return Err(at(
                            "ca_file",
                            format!("{}: no certificate in the file", ca.display()),
                        ));
                    }
                    roots
                }
                None => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(c);
                    }
                    if roots.is_empty() {
                        return Err(at(
                            "url",
                            "mqtts:// without ca_file, and no system root certificates were found; set ca_file".into(),
                        ));
                    }
                    roots
                }
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| at("url", format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Secrets { password, tls })
    }
}

/// A byte stream to the remote, plain or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open link: CONNACK received with code 0.
pub(super) struct Link {
    pub reader: FramedRead<ReadHalf<Box<dyn Io>>, Codec>,
    /// Packets for the writer task; dropping it ends the task, which then
    /// closes the socket.
    pub writer: mpsc::Sender<Bytes>,
    pub writer_task: tokio::task::JoinHandle<()>,
    pub connack: ConnAck,
    /// The address connected to, for the status and the log.
    pub remote: String,
}

/// What one attempt needs, owned (the attempt runs as its own future).
pub(super) struct Attempt {
    pub config: Arc<BridgeConfig>,
    pub secrets: Secrets,
    pub remote: RemoteAddr,
    /// The largest packet we accept.
    pub max_packet_size: usize,
    /// How many QoS 1/2 publishes the remote may send before we acknowledge.
    pub receive_maximum: u16,
}

/// Connects, sends CONNECT and waits for CONNACK; the error says what failed.
pub(super) async fn open(a: Attempt) -> Result<Link, String> {
    match tokio::time::timeout(OPEN_TIMEOUT, open_inner(&a)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{}: no CONNACK within {}s",
            a.remote,
            OPEN_TIMEOUT.as_secs()
        )),
    }
}

async fn open_inner(a: &Attempt) -> Result<Link, String> {
    let remote = a.remote.to_string();
    let tcp = TcpStream::connect((a.remote.host.as_str(), a.remote.port))
        .await
        .map_err(|e| format!("{remote}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = match (&a.secrets.tls, a.remote.tls) {
        (Some(tls), true) => {
            let name = ServerName::try_from(a.remote.host.clone())
                .map_err(|e| format!("{remote}: not a TLS server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("{remote}: TLS: {e}"))?;
            Box::new(tls)
        }
        (None, true) => return Err(format!("{remote}: TLS is not set up")),
        (_, false) => Box::new(tcp),
    };
    let (read, mut write) = tokio::io::split(stream);
    let c = &a.config;
    let mut buf = BytesMut::new();
    wire::connect(
        &mut buf,
        c.protocol,
        &ConnectOptions {
            client_id: &c.client_id,
            keep_alive: c.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
            username: c.username.as_deref(),
            password: a.secrets.password.as_deref(),
            receive_maximum: a.receive_maximum,
            maximum_packet_size: a.max_packet_size.min(u32::MAX as usize) as u32,
        },
    )
    .map_err(|e| format!("{remote}: CONNECT: {e}"))?;
    write
        .write_all(&buf)
        .await
        .map_err(|e| format!("{remote}: {e}"))?;
    write.flush().await.map_err(|e| format!("{remote}: {e}"))?;
    let mut reader = FramedRead::new(read, Codec::new(c.protocol, a.max_packet_size));
    let connack = match reader.next().await {
        Some(Ok(Incoming::ConnAck(ack))) => ack,
        Some(Ok(other)) => return Err(format!("{remote}: expected CONNACK, got {other:?}")),
        Some(Err(e)) => return Err(format!("{remote}: {e}")),
        None => return Err(format!("{remote}: closed the connection before CONNACK")),
    };
    if connack.code != 0 {
        let mut why = format!("{remote}: {}", wire::connack_text(c.protocol, connack.code));
        if let Some(reason) = &connack.reason {
            why.push_str(&format!(": {reason}"));
        }
        return Err(why);
    }
    let (writer, rx) = mpsc::channel(WRITER_QUEUE);
    let writer_task = tokio::spawn(write_loop(write, rx));
    Ok(Link {
        reader,
        writer,
        writer_task,
        connack,
        remote,
    })
}

/// Writes what the bridge queues, gathering a burst into one write; ends
/// (and shuts the socket down) when the bridge drops its sender.
async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < WRITE_BUFFER {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if io.write_all(&buf).await.is_err() || io.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = io.shutdown().await;
}
