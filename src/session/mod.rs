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

mod client;
mod connect;
mod deliver;
pub(crate) mod gate;
mod incoming;
mod inflight;
mod outbound;
mod peer;
mod publish;
mod reader;
mod subscribe;

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio_util::codec::Encoder;

use crate::actions::supervisor::{SharedIndex, Supervisor};
use crate::config::{AclRule, MqttConfig};
use crate::device::limits::RateLimits;
use crate::device::{Auth, Close, Detach, Devices, Identity};
use crate::metrics::METRICS;
use crate::protocol::{reason, ConnAck, DecodeError, Disconnect, MqttCodec, Packet, Publish, Will};
use crate::router::acl::ClientAcl;
use crate::router::queue::{Delivery, Resume, Subscriber};
use crate::router::topic::Topic;
use crate::router::{Disconnected, Publication, Router, Takeover};
use crate::store::Store;
use gate::{Gate, Gated};
use incoming::Incoming;
use inflight::Inflight;
use outbound::{Outbound, Queued};
pub(crate) use peer::{Peer, Transport};
use reader::PacketReader;

/// Packets queued to the writer task before the session stops reading and
/// delivering. Bounds what one connection holds beyond the kernel's buffer.
const WRITER_QUEUE: usize = 256;

/// Publishes read from one client and not yet acknowledged by their topics,
/// beyond `[mqtt] receive_maximum`: past both the session reads no further,
/// so a publisher cannot outrun the broker and memory stays bounded. The
/// slack lets QoS 0 publishes in flight share the window, and lets an MQTT
/// 5 client that exceeds the Receive Maximum be seen doing so (0x93).
const PUBLISH_SLACK: usize = 64;

/// SUBSCRIBE and UNSUBSCRIBE requests of one client the router has not
/// answered yet; past this the session reads no further.
const SUBSCRIBE_WINDOW: usize = 16;

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
    /// Boxed: most devices have none, and it is read once, at the end.
    will: Option<Box<Will>>,
    /// The session expiry interval in force (seconds; None = for ever).
    expiry: Option<u32>,
    /// What the protocol version and the client's CONNECT make of it.
    client: client::Client,
    /// Shared with the router, which checks each delivery against it.
    acl: Arc<ClientAcl>,
    /// A publish to a `$` topic was logged already (once per connection).
    reserved_logged: bool,

    // Publishes from the client.
    /// Topic actors this client published to, with when their address was
    /// obtained (valid for `router::TOPIC_LEASE`).
    topics: HashMap<Arc<str>, (Addr<Topic>, Instant)>,
    /// Publishes waiting for a topic address or a SUBACK, in order, with
    /// when their message expiry ends (unix ms).
    pipeline: VecDeque<(Publish, Option<i64>)>,
    lookup: Lookup,
    /// SUBSCRIBE/UNSUBSCRIBE requests not yet answered: publishes wait, so
    /// that a client's own publish after its SUBSCRIBE sees the subscription.
    subscribing: usize,
    /// The acknowledgement window of what it sent.
    incoming: Incoming,

    // Messages to the client.
    /// A resumed session whose queue is still being read from SQLite.
    /// Boxed: only a resumed session has one, while its queue is read.
    resume: Option<Box<Resumed>>,
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
    gate: Gate,
    /// The protocol level of the CONNECT (0 before it): how packets are
    /// encoded and how a refusal or a close is told.
    level: u8,
    codec: MqttCodec,
    /// Where packets are encoded; split off whole, so it holds nothing between.
    buf: BytesMut,
    /// When a packet was last read, as of the last keep-alive check.
    last_seen: Instant,
    /// A packet was read since the last keep-alive check (cheaper per
    /// packet than reading the clock: that was 1.5 % of a QoS 1 fan-in).
    seen: bool,
    keep_alive: Option<Duration>,
    /// The client said DISCONNECT (other than 0x04, "with will"): no will.
    clean_disconnect: bool,
    /// The client's DISCONNECT set a new session expiry interval.
    expiry_changed: bool,
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
                inner: PacketReader::new(read, MqttCodec::new(max)),
                gate: gate.clone(),
            });
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
                out: Outbound::new(write, WRITER_QUEUE),
                waiting_writer: false,
                gate,
                level: 0,
                codec: MqttCodec::new(max),
                buf: BytesMut::new(),
                last_seen: Instant::now(),
                seen: false,
                keep_alive: None,
                clean_disconnect: false,
                expiry_changed: false,
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

    /// Closes the connection; an MQTT 5 client is first sent a DISCONNECT
    /// with the reason code for `reason` (see [`server_disconnect`]).
    fn close(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        match server_disconnect(reason) {
            Some(code) => self.close_with(ctx, code, reason),
            None => {
                self.close_reason = reason;
                ctx.stop();
            }
        }
    }

    /// Closes the connection, telling an MQTT 5 client why with `code`.
    fn close_with(&mut self, ctx: &mut Context<Self>, code: u8, reason: &'static str) {
        if self.level >= 5 && self.close_reason != CLOSING && !ctx.state().stopping() {
            self.close_reason = CLOSING;
            let d = Disconnect {
                reason: code,
                reason_string: Some(reason.to_string()),
                ..Disconnect::default()
            };
            self.send(Packet::Disconnect(d), ctx);
        }
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
            Packet::Subscribe(s) => self.on_subscribe(s, ctx),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u.pkid, u.filters, ctx),
            Packet::PingReq => self.send(Packet::PingResp, ctx),
            Packet::Disconnect(d) => self.on_disconnect(d, ctx),
            Packet::Auth(_) => {
                // Only an enhanced authentication asked for in CONNECT
                // allows AUTH (§4.12), and such a CONNECT is refused.
                tracing::info!(
                    client_id = self.client_id(),
                    "AUTH without an authentication method: closing"
                );
                self.close(ctx, "protocol error");
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

    /// The client's DISCONNECT: with reason 0x04 its will is still sent;
    /// an MQTT 5 client may give a new session expiry interval, but not
    /// one from 0 (§3.14.2.2.2).
    fn on_disconnect(&mut self, d: Disconnect, ctx: &mut Context<Self>) {
        if let (Some(c), Some(e)) = (self.phase.conn_mut(), d.session_expiry) {
            if c.expiry == Some(0) && e != 0 {
                tracing::info!(client_id = %c.client_id, "DISCONNECT sets a session expiry on a session that had none: protocol error");
                return self.close(ctx, "protocol error");
            }
            c.expiry = (e != u32::MAX).then_some(e);
            self.expiry_changed = true;
        }
        self.clean_disconnect = d.reason != reason::DISCONNECT_WITH_WILL;
        self.drain_and_close(ctx, "client disconnected");
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
        self.out.end(WRITER_GRACE);
        if let Phase::Connecting { client_id } = &self.phase {
            // Ended while the router was handing the session over.
            self.handles.router.do_send(Disconnected {
                client_id: client_id.clone(),
                conn_id: self.conn_id,
                expiry: None,
                will: None,
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
        // The will goes now, or (MQTT 5's will delay, for a session that
        // outlives the connection) from the router once the delay is over,
        // unless the client is back by then.
        let will = match c.will {
            Some(w) if !self.clean_disconnect => Some(w),
            _ => None,
        };
        let mut delayed = None;
        if let Some(will) = will {
            let delay = Duration::from_secs(u64::from(will.delay));
            let m = will_message(*will, delay);
            if delay.is_zero() || c.expiry == Some(0) {
                let router = self.handles.router.clone();
                actix::spawn(async move {
                    crate::router::publish(&router, m).await;
                });
            } else {
                delayed = Some((m, delay));
            }
        }
        self.handles.router.do_send(Disconnected {
            client_id: c.client_id.clone(),
            conn_id: self.conn_id,
            expiry: if self.expiry_changed {
                Some(c.expiry.unwrap_or(u32::MAX))
            } else {
                None
            },
            will: delayed,
        });
        if let Some(id) = &c.identity {
            self.handles.devices.do_send(Detach {
                device_id: id.device_id.clone(),
                conn_id: self.conn_id,
            });
        }
    }
}

impl StreamHandler<Result<Packet, DecodeError>> for Session {
    fn handle(&mut self, item: Result<Packet, DecodeError>, ctx: &mut Self::Context) {
        match item {
            Ok(packet) => {
                self.seen = true;
                self.on_packet(packet, ctx);
            }
            Err(DecodeError::Io(e)) => {
                tracing::debug!(client_id = self.client_id(), error = %e, "read failed");
                self.close(ctx, "read error");
            }
            Err(e) => {
                if matches!(self.phase, Phase::AwaitingConnect) {
                    tracing::info!(peer = %self.peer, error = %e, "bad CONNECT: closing the connection");
                    // An MQTT 5 CONNECT is answered in MQTT 5 (§4.13.2); no
                    // DISCONNECT may come before a CONNACK, so none follows.
                    let code = match e.connack_v5() {
                        Some(code) => {
                            self.codec.set_version(5);
                            Some(code)
                        }
                        None => e.connack_code(),
                    };
                    if let Some(code) = code {
                        self.send(
                            Packet::ConnAck(ConnAck {
                                code,
                                ..ConnAck::default()
                            }),
                            ctx,
                        );
                    }
                    return self.close(ctx, "bad packet");
                }
                tracing::info!(client_id = self.client_id(), peer = %self.peer, error = %e, "bad packet: closing the connection");
                self.level = self.codec.version();
                let code = e.reason_code();
                self.close_with(ctx, code, "bad packet");
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

/// What `close_reason` holds while the DISCONNECT before a close is sent.
const CLOSING: &str = "closing";

/// The MQTT 5 reason code of the DISCONNECT the broker sends before it
/// closes a connection for `reason` (§3.14.2.1); None: it closes without
/// one (the socket is gone, or the client said DISCONNECT).
fn server_disconnect(reason: &str) -> Option<u8> {
    Some(match reason {
        "keep-alive expired" => reason::KEEP_ALIVE_TIMEOUT,
        "session taken over by a new connection" => reason::SESSION_TAKEN_OVER,
        "token expired" | "token revoked" | "device deleted" => reason::ADMINISTRATIVE_ACTION,
        "server shutting down" => reason::SERVER_SHUTTING_DOWN,
        "slow consumer" | "too many topics" => reason::QUOTA_EXCEEDED,
        "publish limit reached" => reason::MESSAGE_RATE_TOO_HIGH,
        "topic too deep" => reason::TOPIC_NAME_INVALID,
        "protocol error" => reason::PROTOCOL_ERROR,
        "receive maximum exceeded" => reason::RECEIVE_MAXIMUM_EXCEEDED,
        "topic alias invalid" => reason::TOPIC_ALIAS_INVALID,
        "payload format invalid" => reason::PAYLOAD_FORMAT_INVALID,
        "a message could not be stored" | "store error" => reason::IMPLEMENTATION_SPECIFIC_ERROR,
        "router unavailable" => reason::SERVER_UNAVAILABLE,
        _ => return None,
    })
}

/// The message a will becomes; its expiry counts from when it is sent,
/// after `delay`.
fn will_message(will: Will, delay: Duration) -> Publication {
    let expires_at = will
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry)
        .map(|e| crate::store::now_ms() + delay.as_millis() as i64 + i64::from(e) * 1000);
    let properties = will.properties.map(|p| {
        let mut p = (*p).clone();
        p.message_expiry = None;
        Arc::new(p)
    });
    Publication {
        topic: will.topic.into(),
        payload: will.payload,
        qos: will.qos,
        retain: will.retain,
        properties: properties.filter(|p| !p.is_empty()),
        expires_at,
    }
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
