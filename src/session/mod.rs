//! One actor per client connection: it reads packets from the socket, answers
//! them, and writes what the client is sent.
//!
//! The read side is a stream of decoded packets behind a [`gate::Gate`]; the
//! write side is a task fed through a bounded channel, so a client that does
//! not read fills that channel, and the session then stops reading it too.
//! Each packet type is handled in its own file: `connect.rs`, `publish.rs`
//! (PUBLISH in, PUBREL), `deliver.rs` (PUBLISH out, PUBACK, PUBREC, PUBCOMP),
//! `subscribe.rs` (SUBSCRIBE, UNSUBSCRIBE).

mod connect;
mod deliver;
pub(crate) mod gate;
mod publish;
mod subscribe;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::codec::{Encoder, FramedRead};

use crate::broker::Broker;
use crate::device::{Close, Detach, Identity};
use crate::metrics::METRICS;
use crate::protocol::{DecodeError, MqttCodec, Packet, Publish, Will};
use crate::router::acl::ClientAcl;
use crate::router::queue::{Delivery, Resume, Subscriber};
use crate::router::topic::Topic;
use crate::router::{Disconnected, Takeover};
use gate::{Gate, Gated};

/// Packets queued to the writer task before the session stops reading and
/// delivering. Bounds what one connection holds beyond the kernel's buffer.
const WRITER_QUEUE: usize = 256;

/// Publishes read from one client and not yet acknowledged by their topics.
/// Past this the session reads no further: a publisher cannot outrun the
/// broker, and memory stays bounded.
const PUBLISH_WINDOW: usize = 256;

/// The read buffer a connection starts with; it grows for larger packets.
/// Small, because most connections are idle devices and this is what each
/// of them costs.
const READ_BUFFER: usize = 4096;

/// How much a connection's writer gathers into one write: enough to batch a
/// burst of small packets into few syscalls.
const WRITE_BUFFER: usize = 16 * 1024;

/// How long a new connection may take to send CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the writer may go on flushing after the session ended, for a
/// last CONNACK or a final burst, before the socket is dropped.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// One open connection's place under `[mqtt] max_connections`, from accept
/// until its session ends; given back when dropped.
pub(crate) struct Slot(());

impl Slot {
    pub(crate) fn take(max: usize) -> Option<Slot> {
        if METRICS.connections_open.get() >= max as i64 {
            return None;
        }
        METRICS.connections_open.inc();
        Some(Slot(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        METRICS.connections_open.dec();
    }
}

/// A publish waiting for its topic to take it, in the order read.
struct PendingAck {
    qos: u8,
    pkid: u16,
    /// Set when the topic answered: whether everything durable was committed.
    done: std::cell::Cell<Option<bool>>,
}

/// Where the reading of a resumed session's queue from SQLite stands.
struct Resumed {
    /// Sent and not acknowledged by the last connection: resent with DUP.
    was_inflight: HashSet<i64>,
    /// The last row id read so far.
    after: i64,
    /// The sequence number when the session came back: rows up to it are
    /// read from SQLite, newer messages come through the memory queue.
    last: i64,
    /// Rows not read yet (for the offline bound if the client leaves again).
    unloaded: usize,
}

/// State that exists once CONNECT has been accepted.
struct Conn {
    client_id: Arc<str>,
    /// The device whose token logged in; None for an anonymous client.
    identity: Option<Identity>,
    subscriber: Arc<Subscriber>,
    /// Which attachment of the subscriber this connection is.
    generation: u64,
    will: Option<Will>,
    /// Shared with the router, which checks each delivery against it.
    acl: Arc<ClientAcl>,
    /// A publish to a `$` topic was logged already (once per connection).
    reserved_logged: bool,

    // Publishes from the client.
    /// Topic actors this client published to, with when their address was
    /// obtained (valid for `router::TOPIC_LEASE`).
    topics: HashMap<Arc<str>, (Addr<Topic>, Instant)>,
    /// Publishes waiting for a topic address or a SUBACK, in order.
    pipeline: VecDeque<Publish>,
    resolving: bool,
    /// SUBSCRIBE/UNSUBSCRIBE requests not yet answered: publishes wait, so
    /// that a client's own publish after its SUBSCRIBE sees the subscription.
    subscribing: usize,
    /// Publishes handed to topics, in order, for in-order PUBACK/PUBREC.
    acks: VecDeque<Rc<PendingAck>>,
    /// QoS 2 packet ids received and not yet released by PUBREL.
    incoming_qos2: HashSet<u16>,

    // Messages to the client.
    /// A page of a resumed session's queue is being read from SQLite.
    loading: bool,
    /// A resumed session whose queue is still being read from SQLite.
    resume: Option<Resumed>,
    /// Messages from SQLite (a resumed session), sent before anything newer.
    resend: VecDeque<Delivery>,
    /// Messages taken from the subscriber queue and not yet written.
    batch: VecDeque<Delivery>,
    /// QoS 1/2 messages sent and awaiting PUBACK/PUBREC, by packet id.
    inflight: HashMap<u16, Delivery>,
    /// QoS 2 packet ids that got PUBREC and await PUBCOMP.
    pubrel_out: HashSet<u16>,
    next_pkid: u16,
    waiting_items: bool,
}

pub(crate) struct Session {
    broker: Arc<Broker>,
    /// This connection's place under `max_connections`.
    _slot: Slot,
    conn_id: u64,
    peer: SocketAddr,
    writer: mpsc::Sender<Bytes>,
    writer_task: Option<tokio::task::JoinHandle<()>>,
    /// Control packets that found the writer queue full, sent first when it drains.
    overflow: VecDeque<Bytes>,
    waiting_writer: bool,
    gate: Gate,
    codec: MqttCodec,
    buf: BytesMut,
    last_seen: Instant,
    keep_alive: Option<Duration>,
    /// Set once CONNECT has been accepted.
    conn: Option<Box<Conn>>,
    /// CONNECT received and being processed.
    connecting: bool,
    /// The client id the router was asked to connect, until it answered: a
    /// session that ends meanwhile still tells the router it is gone.
    pending_client: Option<Arc<str>>,
    /// The client said DISCONNECT: no will.
    clean_disconnect: bool,
    /// The subscriber was already handed on (takeover).
    detached: bool,
    close_reason: &'static str,
    /// The client is done (DISCONNECT or end of stream), but publishes it
    /// sent before are still waiting for their topic: close once handed on.
    close_when_flushed: Option<&'static str>,
}

impl Session {
    /// Starts a session on the current arbiter for an accepted connection.
    pub(crate) fn start<IO>(
        broker: Arc<Broker>,
        io: IO,
        peer: SocketAddr,
        slot: Slot,
    ) -> Addr<Session>
    where
        IO: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        Session::create(move |ctx| {
            let (read, write) = tokio::io::split(Counted(io));
            let max = broker.config.mqtt.max_packet_size;
            let gate = Gate::default();
            ctx.add_stream(Gated {
                inner: FramedRead::with_capacity(read, MqttCodec::new(max), READ_BUFFER),
                gate: gate.clone(),
            });
            let (writer, rx) = mpsc::channel(WRITER_QUEUE);
            let writer_task = actix::spawn(write_loop(write, rx));
            ctx.run_later(CONNECT_TIMEOUT, |act, ctx| {
                if act.conn.is_none() {
                    act.close(ctx, "no CONNECT in time");
                }
            });
            Session {
                _slot: slot,
                conn_id: broker.next_conn_id(),
                broker,
                peer,
                writer,
                writer_task: Some(writer_task),
                overflow: VecDeque::new(),
                waiting_writer: false,
                gate,
                codec: MqttCodec::new(max),
                buf: BytesMut::new(),
                last_seen: Instant::now(),
                keep_alive: None,
                conn: None,
                connecting: false,
                pending_client: None,
                clean_disconnect: false,
                detached: false,
                close_reason: "connection closed",
                close_when_flushed: None,
            }
        })
    }

    fn client_id(&self) -> &str {
        self.conn.as_ref().map(|c| &*c.client_id).unwrap_or("")
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        self.close_reason = reason;
        ctx.stop();
    }

    /// Closes once every publish read so far is handed to its topic, so that
    /// a publish followed at once by DISCONNECT is not lost.
    fn close_after_publishes(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        let waiting = self
            .conn
            .as_ref()
            .is_some_and(|c| !c.pipeline.is_empty() || c.resolving || c.subscribing > 0);
        if waiting {
            self.close_when_flushed = Some(reason);
            self.gate.hold(gate::CLOSING);
        } else {
            self.close(ctx, reason);
        }
    }

    /// Encodes and queues a control packet.
    fn send(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        if let Err(e) = self.codec.encode(packet, &mut self.buf) {
            tracing::error!(client_id = self.client_id(), error = %e, "cannot encode a packet");
            return;
        }
        let bytes = self.buf.split().freeze();
        if !self.overflow.is_empty() {
            self.overflow.push_back(bytes);
            return;
        }
        match self.writer.try_send(bytes) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                self.overflow.push_back(bytes);
                self.wait_for_writer(ctx);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => self.close(ctx, "socket closed"),
        }
    }

    /// The writer queue is full: read nothing more until it has room.
    fn wait_for_writer(&mut self, ctx: &mut Context<Self>) {
        if self.waiting_writer {
            return;
        }
        self.waiting_writer = true;
        self.gate.hold(gate::WRITER_FULL);
        let writer = self.writer.clone();
        ctx.spawn(
            async move { writer.reserve().await.is_ok() }
                .into_actor(self)
                .map(|open, act, ctx| {
                    act.waiting_writer = false;
                    if !open {
                        act.close(ctx, "socket closed");
                        return;
                    }
                    while let Some(bytes) = act.overflow.pop_front() {
                        match act.writer.try_send(bytes) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(bytes)) => {
                                act.overflow.push_front(bytes);
                                act.wait_for_writer(ctx);
                                return;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                act.close(ctx, "socket closed");
                                return;
                            }
                        }
                    }
                    act.gate.release(gate::WRITER_FULL);
                    act.drain(ctx);
                }),
        );
    }

    fn on_packet(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        if self.conn.is_none() {
            match packet {
                Packet::Connect(c) if !self.connecting => self.on_connect(c, ctx),
                _ => {
                    tracing::info!(peer = %self.peer, "first packet was not CONNECT: closing");
                    self.close(ctx, "protocol error");
                }
            }
            return;
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p, ctx),
            Packet::PubAck(id) => self.on_puback(id, ctx),
            Packet::PubRec(id) => self.on_pubrec(id, ctx),
            Packet::PubRel(id) => self.on_pubrel(id, ctx),
            Packet::PubComp(id) => self.on_pubcomp(id, ctx),
            Packet::Subscribe { pkid, filters } => self.on_subscribe(pkid, filters, ctx),
            Packet::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters, ctx),
            Packet::PingReq => self.send(Packet::PingResp, ctx),
            Packet::Disconnect => {
                self.clean_disconnect = true;
                self.close_after_publishes(ctx, "client disconnected");
            }
            Packet::Connect(_) => {
                tracing::info!(client_id = self.client_id(), "second CONNECT: closing");
                self.close(ctx, "protocol error");
            }
            other => {
                tracing::info!(client_id = self.client_id(), packet = ?other, "a server-only packet from a client: closing");
                self.close(ctx, "protocol error");
            }
        }
    }

    /// Hands the subscriber back (for the next connection of a persistent
    /// session) with what this connection left unfinished.
    fn detach(&mut self) {
        if self.detached {
            return;
        }
        self.detached = true;
        let Some(c) = self.conn.as_mut() else { return };
        let was_inflight: HashSet<i64> = c
            .inflight
            .values()
            .filter(|d| d.seq > 0)
            .map(|d| d.seq)
            .collect();
        let unacked = was_inflight.len()
            + c.resend.iter().filter(|d| d.seq > 0).count()
            + c.batch.iter().filter(|d| d.seq > 0).count()
            + c.resume.as_ref().map_or(0, |r| r.unloaded);
        let resume = Resume {
            was_inflight,
            pubrel: c.pubrel_out.iter().copied().collect(),
            incoming_qos2: std::mem::take(&mut c.incoming_qos2),
        };
        c.subscriber.detach(c.generation, resume, unacked);
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if let Some(task) = self.writer_task.take() {
            actix::spawn(async move {
                tokio::time::sleep(WRITER_GRACE).await;
                task.abort();
            });
        }
        if self.conn.is_none() {
            if let Some(client_id) = self.pending_client.take() {
                self.broker.router.do_send(Disconnected {
                    client_id,
                    conn_id: self.conn_id,
                });
            }
            return;
        }
        self.detach();
        METRICS.clients_connected.dec();
        let Some(c) = self.conn.take() else { return };
        tracing::info!(client_id = %c.client_id, device = c.identity.as_ref().map(|i| i.device_name.as_str()), reason = self.close_reason, "disconnected");
        if let Some(id) = &c.identity {
            id.watch.emit(|| crate::device::watch::Event::Disconnect {
                client_id: &c.client_id,
                reason: self.close_reason,
            });
        }
        self.broker.router.do_send(Disconnected {
            client_id: c.client_id.clone(),
            conn_id: self.conn_id,
        });
        if let Some(id) = &c.identity {
            self.broker.devices.do_send(Detach {
                device_id: id.device_id.clone(),
                conn_id: self.conn_id,
            });
        }
        if let (false, Some(will)) = (self.clean_disconnect, c.will) {
            let router = self.broker.router.clone();
            actix::spawn(async move {
                crate::router::publish(
                    &router,
                    will.topic.into(),
                    will.payload,
                    will.qos,
                    will.retain,
                )
                .await;
            });
        }
    }
}

impl StreamHandler<Result<Packet, DecodeError>> for Session {
    fn handle(&mut self, item: Result<Packet, DecodeError>, ctx: &mut Self::Context) {
        match item {
            Ok(packet) => {
                self.last_seen = Instant::now();
                self.on_packet(packet, ctx);
            }
            Err(DecodeError::Io(e)) => {
                tracing::debug!(client_id = self.client_id(), error = %e, "read failed");
                self.close(ctx, "read error");
            }
            Err(e) => {
                if self.conn.is_none() {
                    if let Some(code) = e.connack_code() {
                        self.send(
                            Packet::ConnAck {
                                session_present: false,
                                code,
                            },
                            ctx,
                        );
                    }
                }
                tracing::info!(client_id = self.client_id(), peer = %self.peer, error = %e, "bad packet: closing the connection");
                self.close(ctx, "bad packet");
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.close_after_publishes(ctx, "connection closed by client");
    }
}

impl Handler<Takeover> for Session {
    type Result = ();

    fn handle(&mut self, _: Takeover, ctx: &mut Self::Context) {
        self.detach();
        self.close(ctx, "session taken over by a new connection");
    }
}

impl Handler<Close> for Session {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        tracing::info!(client_id = self.client_id(), reason = msg.0, "closing");
        self.close(ctx, msg.0);
    }
}

/// Writes what the session queues: whatever is waiting is gathered into one
/// buffer and written with one call. The buffer exists only while there is
/// something to write, so an idle connection holds none.
async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(first) = rx.recv().await {
        if rx.is_empty() {
            // One packet alone (the common case of an idle device's ping):
            // no copy.
            if io.write_all(&first).await.is_err() {
                return;
            }
        } else {
            buf.extend_from_slice(&first);
            while buf.len() < WRITE_BUFFER {
                match rx.try_recv() {
                    Ok(more) => buf.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if io.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
            if rx.is_empty() {
                buf = Vec::new();
            }
        }
        if io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.shutdown().await;
}

/// A socket that counts its bytes into `$SYS/broker/bytes/...`.
struct Counted<IO>(IO);

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.0).poll_read(cx, buf);
        METRICS
            .bytes_received
            .add((buf.filled().len() - before) as u64);
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.0).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            METRICS.bytes_sent.add(*n as u64);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
