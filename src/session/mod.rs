//! One actor per client connection: it reads packets from the socket, answers
//! them, and writes what the client is sent.
//!
//! A session is a state machine of one [`Phase`]: awaiting CONNECT, connecting
//! (the router hands the session over), loading the stored session (a resumed
//! session's first page of queued messages), open, and draining (the client
//! said DISCONNECT, the socket ended, or the server is shutting down: nothing
//! more is read, what was read is handed on and answered, then it closes).
//! Whether the socket is read is derived from the phase and from its parts:
//!
//! - [`outbound::Outbound`]: the bounded queue to the writer task, and the
//!   control packets that found it full;
//! - [`incoming::Incoming`]: the in-order acknowledgement window of the
//!   publishes the client sent, and its QoS 2 packet ids;
//! - [`inflight::Inflight`]: the messages sent to the client and not yet
//!   acknowledged, with their packet ids.
//!
//! A session runs over any `AsyncRead + AsyncWrite` of MQTT bytes: a TCP
//! socket, a TLS stream, or a WebSocket turned into one by
//! `listener::ws`; [`Peer`] says which, and from where.
//!
//! Each packet type is handled in its own file: `connect.rs`, `publish.rs`
//! (PUBLISH in, PUBREL), `deliver.rs` (PUBLISH out, PUBACK, PUBREC, PUBCOMP),
//! `subscribe.rs` (SUBSCRIBE, UNSUBSCRIBE). A session works with
//! [`Handles`], the parts of the broker it uses.

mod connect;
mod deliver;
pub(crate) mod gate;
mod incoming;
mod inflight;
mod outbound;
mod peer;
mod publish;
mod subscribe;

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Encoder, FramedRead};

use crate::actions::supervisor::{SharedIndex, Supervisor};
use crate::config::{AclRule, MqttConfig};
use crate::device::limits::RateLimits;
use crate::device::{Auth, Close, Detach, Devices, Identity};
use crate::metrics::METRICS;
use crate::protocol::{ConnAck, DecodeError, MqttCodec, Packet, Publish, Will};
use crate::router::acl::ClientAcl;
use crate::router::queue::{Delivery, Resume, Subscriber};
use crate::router::topic::Topic;
use crate::router::{Disconnected, Router, Takeover};
use crate::store::Store;
use gate::{Gate, Gated};
use incoming::Incoming;
use inflight::Inflight;
use outbound::{Outbound, Queued};
pub(crate) use peer::{Peer, Transport};

/// Packets queued to the writer task before the session stops reading and
/// delivering. Bounds what one connection holds beyond the kernel's buffer.
const WRITER_QUEUE: usize = 256;

/// Publishes read from one client and not yet acknowledged by their topics.
/// Past this the session reads no further: a publisher cannot outrun the
/// broker, and memory stays bounded.
const PUBLISH_WINDOW: usize = 256;

/// SUBSCRIBE and UNSUBSCRIBE requests of one client the router has not
/// answered yet; past this the session reads no further.
const SUBSCRIBE_WINDOW: usize = 16;

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

/// What a session works with: the parts of the broker it uses.
pub(crate) struct Handles {
    /// `[mqtt]`: limits, the anonymous switch, the packet size.
    pub(crate) mqtt: MqttConfig,
    /// `[[acl]]`, narrowed to each client at CONNECT.
    pub(crate) acl: Vec<AclRule>,
    pub(crate) store: Store,
    pub(crate) router: Addr<Router>,
    pub(crate) devices: Addr<Devices>,
    pub(crate) auth: Arc<Auth>,
    pub(crate) actions: Addr<Supervisor>,
    /// Which topics trigger actions; read on every publish.
    pub(crate) action_index: SharedIndex,
    /// Per-device publish and connect limits.
    pub(crate) limits: Arc<RateLimits>,
    /// Becomes true when the server shuts down: every session drains.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Numbers connections, so that a late message from an old connection
    /// is told apart from the current one with the same client id.
    conn_ids: AtomicU64,
}

impl Handles {
    #[allow(clippy::too_many_arguments)] // the parts, named once, at start
    pub(crate) fn new(
        mqtt: MqttConfig,
        acl: Vec<AclRule>,
        store: Store,
        router: Addr<Router>,
        devices: Addr<Devices>,
        auth: Arc<Auth>,
        actions: Addr<Supervisor>,
        action_index: SharedIndex,
        limits: Arc<RateLimits>,
        shutdown: watch::Receiver<bool>,
    ) -> Handles {
        Handles {
            mqtt,
            acl,
            store,
            router,
            devices,
            auth,
            actions,
            action_index,
            limits,
            shutdown,
            conn_ids: AtomicU64::new(1),
        }
    }

    fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }
}

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

/// Where a connection is in its life.
enum Phase {
    /// Waiting for CONNECT (at most [`CONNECT_TIMEOUT`]).
    AwaitingConnect,
    /// CONNECT was read and checked; the router is handing the session over.
    /// The client id is kept so that a connection that ends meanwhile still
    /// tells the router.
    Connecting { client_id: Arc<str> },
    /// CONNACK is sent; a resumed session's first page of queued messages
    /// is being read from SQLite. Nothing is read from the client meanwhile.
    Loading(Box<Conn>),
    /// Reading packets and delivering.
    Open(Box<Conn>),
    /// Reading nothing more; closes once what was read has been handed on
    /// and answered. The reason is the close's.
    Draining(Box<Conn>, &'static str),
    /// The session was handed to a newer connection with the same client id
    /// (takeover): closing, with nothing left to hand on.
    Detached(Box<Conn>),
}

impl Phase {
    /// The accepted connection's state, in any phase that has one.
    fn conn(&self) -> Option<&Conn> {
        match self {
            Phase::Loading(c) | Phase::Open(c) | Phase::Draining(c, _) | Phase::Detached(c) => {
                Some(c)
            }
            Phase::AwaitingConnect | Phase::Connecting { .. } => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match self {
            Phase::Loading(c) | Phase::Open(c) | Phase::Draining(c, _) | Phase::Detached(c) => {
                Some(c)
            }
            Phase::AwaitingConnect | Phase::Connecting { .. } => None,
        }
    }

    /// The state of a connection that still reads or hands on publishes
    /// (not one that was taken over).
    fn live_mut(&mut self) -> Option<&mut Conn> {
        match self {
            Phase::Loading(c) | Phase::Open(c) | Phase::Draining(c, _) => Some(c),
            _ => None,
        }
    }
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
    /// A page is being read.
    reading: bool,
}

/// Where the next publish's topic address comes from.
enum Lookup {
    /// Nothing asked.
    Idle,
    /// The router was asked for this topic's address; publishes wait.
    Resolving,
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
    lookup: Lookup,
    /// SUBSCRIBE/UNSUBSCRIBE requests not yet answered: publishes wait, so
    /// that a client's own publish after its SUBSCRIBE sees the subscription.
    subscribing: usize,
    /// The acknowledgement window of what it sent.
    incoming: Incoming,

    // Messages to the client.
    /// A resumed session whose queue is still being read from SQLite.
    resume: Option<Resumed>,
    /// Messages from SQLite (a resumed session), sent before anything newer.
    resend: VecDeque<Delivery>,
    /// Messages taken from the subscriber queue and not yet written.
    batch: VecDeque<Delivery>,
    /// What it was sent and has not acknowledged.
    inflight: Inflight,
    /// A wake-up is asked for when the subscriber queue gets a message.
    waiting_items: bool,
}

impl Conn {
    /// Whether publishes read from the client are still on their way to
    /// their topics (or wait for a subscription to be in force).
    fn handing_on(&self) -> bool {
        !self.pipeline.is_empty()
            || matches!(self.lookup, Lookup::Resolving)
            || self.subscribing > 0
    }
}

pub(crate) struct Session {
    handles: Arc<Handles>,
    /// This connection's place under `max_connections`.
    _slot: Slot,
    conn_id: u64,
    /// Where the connection comes from, and over what.
    peer: Peer,
    phase: Phase,
    out: Outbound,
    /// A wait for room in the writer queue is running.
    waiting_writer: bool,
    writer_task: Option<tokio::task::JoinHandle<()>>,
    gate: Gate,
    codec: MqttCodec,
    /// Where packets are encoded; split off whole, so it holds nothing between.
    buf: BytesMut,
    last_seen: Instant,
    keep_alive: Option<Duration>,
    /// The client said DISCONNECT: no will.
    clean_disconnect: bool,
    close_reason: &'static str,
}

impl Session {
    /// Starts a session on the current arbiter for an accepted connection.
    pub(crate) fn start<IO>(handles: Arc<Handles>, io: IO, peer: Peer, slot: Slot) -> Addr<Session>
    where
        IO: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        Session::create(move |ctx| {
            let (read, write) = tokio::io::split(Counted(io));
            let max = handles.mqtt.max_packet_size;
            let gate = Gate::default();
            ctx.add_stream(Gated {
                inner: FramedRead::with_capacity(read, MqttCodec::new(max), READ_BUFFER),
                gate: gate.clone(),
            });
            let (writer, rx) = mpsc::channel(WRITER_QUEUE);
            let writer_task = actix::spawn(write_loop(write, rx));
            ctx.run_later(CONNECT_TIMEOUT, |act, ctx| {
                if matches!(act.phase, Phase::AwaitingConnect) {
                    act.close(ctx, "no CONNECT in time");
                }
            });
            // A shutdown drains every session.
            let mut shutdown = handles.shutdown.clone();
            ctx.spawn(
                actix::fut::wrap_future::<_, Session>(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .map(|_, act, ctx| act.drain_and_close(ctx, "server shutting down")),
            );
            Session {
                _slot: slot,
                conn_id: handles.next_conn_id(),
                handles,
                peer,
                phase: Phase::AwaitingConnect,
                out: Outbound::new(writer),
                waiting_writer: false,
                writer_task: Some(writer_task),
                gate,
                codec: MqttCodec::new(max),
                buf: BytesMut::new(),
                last_seen: Instant::now(),
                keep_alive: None,
                clean_disconnect: false,
                close_reason: "connection closed",
            }
        })
    }
}

impl Session {
    fn client_id(&self) -> &str {
        match &self.phase {
            Phase::Connecting { client_id } => client_id,
            _ => self.phase.conn().map(|c| &*c.client_id).unwrap_or(""),
        }
    }

    /// Holds or releases reading the socket, from the phase and the parts:
    /// read only while open (or awaiting CONNECT) with room in every window.
    fn update_gate(&self) {
        let mut held = 0;
        match &self.phase {
            Phase::AwaitingConnect | Phase::Open(_) => {}
            Phase::Connecting { .. } | Phase::Loading(_) => held |= gate::CONNECTING,
            Phase::Draining(..) | Phase::Detached(_) => held |= gate::CLOSING,
        }
        if let Some(c) = self.phase.conn() {
            if c.incoming.is_full() || c.subscribing >= SUBSCRIBE_WINDOW {
                held |= gate::WINDOW_FULL;
            }
        }
        if self.waiting_writer {
            held |= gate::WRITER_FULL;
        }
        self.gate.set(held);
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        self.close_reason = reason;
        ctx.stop();
    }

    /// Reads nothing more and closes once every publish read so far is
    /// handed on and answered (so that a publish followed at once by
    /// DISCONNECT, or read just before a shutdown, is not lost).
    fn drain_and_close(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        let phase = std::mem::replace(&mut self.phase, Phase::AwaitingConnect);
        self.phase = match phase {
            Phase::Loading(c) | Phase::Open(c) | Phase::Draining(c, _) => {
                Phase::Draining(c, reason)
            }
            other => {
                self.phase = other;
                return self.close(ctx, reason);
            }
        };
        self.update_gate();
        self.close_if_drained(ctx);
    }

    /// In the draining phase, closes once nothing read is left to answer.
    fn close_if_drained(&mut self, ctx: &mut Context<Self>) {
        if let Phase::Draining(c, reason) = &self.phase {
            if !c.handing_on() && c.incoming.outstanding() == 0 {
                let reason = *reason;
                self.close(ctx, reason);
            }
        }
    }

    /// Encodes and queues a control packet; it is never dropped (it waits
    /// while the writer is full).
    fn send(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        if let Err(e) = self.codec.encode(packet, &mut self.buf) {
            tracing::error!(client_id = self.client_id(), error = %e, "cannot encode a packet");
            return;
        }
        let bytes = self.buf.split().freeze();
        match self.out.control(bytes) {
            Queued::Sent => {}
            Queued::Held => self.wait_for_writer(ctx),
            Queued::Closed => self.close(ctx, "socket closed"),
        }
    }

    /// The writer queue is full: read nothing more until it has room.
    fn wait_for_writer(&mut self, ctx: &mut Context<Self>) {
        if self.waiting_writer {
            return;
        }
        self.waiting_writer = true;
        self.update_gate();
        ctx.spawn(self.out.room().into_actor(self).map(|open, act, ctx| {
            act.waiting_writer = false;
            if !open {
                return act.close(ctx, "socket closed");
            }
            match act.out.flush() {
                Queued::Sent => {
                    act.update_gate();
                    act.drain(ctx);
                }
                Queued::Held => act.wait_for_writer(ctx),
                Queued::Closed => act.close(ctx, "socket closed"),
            }
        }));
    }

    fn on_packet(&mut self, packet: Packet, ctx: &mut Context<Self>) {
        match &self.phase {
            Phase::AwaitingConnect => {
                return match packet {
                    Packet::Connect(c) => self.on_connect(*c, ctx),
                    _ => {
                        tracing::info!(peer = %self.peer, "first packet was not CONNECT: closing");
                        self.close(ctx, "protocol error")
                    }
                };
            }
            Phase::Open(_) | Phase::Loading(_) => {}
            // The gate holds reading in every other phase: nothing more is
            // taken from a connection that is draining or was taken over.
            _ => return,
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p, ctx),
            Packet::PubAck(a) => self.on_puback(a.pkid, ctx),
            Packet::PubRec(a) => self.on_pubrec(a.pkid, ctx),
            Packet::PubRel(a) => self.on_pubrel(a.pkid, ctx),
            Packet::PubComp(a) => self.on_pubcomp(a.pkid, ctx),
            Packet::Subscribe(s) => {
                let filters = s.filters.into_iter().map(|(f, o)| (f, o.qos)).collect();
                self.on_subscribe(s.pkid, filters, ctx)
            }
            Packet::Unsubscribe(u) => self.on_unsubscribe(u.pkid, u.filters, ctx),
            Packet::PingReq => self.send(Packet::PingResp, ctx),
            Packet::Disconnect(_) => {
                self.clean_disconnect = true;
                self.drain_and_close(ctx, "client disconnected");
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
        let phase = std::mem::replace(&mut self.phase, Phase::AwaitingConnect);
        let c = match phase {
            Phase::Loading(c) | Phase::Open(c) | Phase::Draining(c, _) => c,
            other => {
                self.phase = other;
                return;
            }
        };
        let mut c = c;
        let (sent, released) = c.inflight.unacknowledged();
        let was_inflight: HashSet<i64> = sent.filter(|d| d.seq > 0).map(|d| d.seq).collect();
        let pubrel: Vec<u16> = released.collect();
        let unacked = was_inflight.len()
            + c.resend.iter().filter(|d| d.seq > 0).count()
            + c.batch.iter().filter(|d| d.seq > 0).count()
            + c.resume.as_ref().map_or(0, |r| r.unloaded);
        let resume = Resume {
            was_inflight,
            pubrel,
            incoming_qos2: c.incoming.take_qos2(),
        };
        c.subscriber.detach(c.generation, resume, unacked);
        self.phase = Phase::Detached(c);
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
        if let Phase::Connecting { client_id } = &self.phase {
            // Ended while the router was handing the session over.
            self.handles.router.do_send(Disconnected {
                client_id: client_id.clone(),
                conn_id: self.conn_id,
            });
            return;
        }
        if self.phase.conn().is_none() {
            return;
        }
        self.detach();
        METRICS.clients_connected.dec();
        let Phase::Detached(c) = std::mem::replace(&mut self.phase, Phase::AwaitingConnect) else {
            return;
        };
        tracing::info!(client_id = %c.client_id, device = c.identity.as_ref().map(|i| i.device_name.as_str()), reason = self.close_reason, "disconnected");
        if let Some(id) = &c.identity {
            id.watch.emit(|| crate::device::watch::Event::Disconnect {
                client_id: &c.client_id,
                reason: self.close_reason,
            });
        }
        self.handles.router.do_send(Disconnected {
            client_id: c.client_id.clone(),
            conn_id: self.conn_id,
        });
        if let Some(id) = &c.identity {
            self.handles.devices.do_send(Detach {
                device_id: id.device_id.clone(),
                conn_id: self.conn_id,
            });
        }
        if let (false, Some(will)) = (self.clean_disconnect, c.will) {
            let router = self.handles.router.clone();
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
                if matches!(self.phase, Phase::AwaitingConnect) {
                    if let Some(code) = e.connack_code() {
                        self.send(
                            Packet::ConnAck(ConnAck {
                                code,
                                ..ConnAck::default()
                            }),
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
        self.drain_and_close(ctx, "connection closed by client");
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
