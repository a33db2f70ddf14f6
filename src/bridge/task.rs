//! One bridge's task: it keeps the link to the remote up (reconnecting with
//! back-off), drains the bridge's subscriber queue, sends what
//! `bridge_queue` holds and settles it on the remote's acknowledgements
//! ([`Outbox`]), and publishes what the remote sends locally, acknowledging
//! each message only once brook has taken it (queued for every subscriber,
//! and committed where that is required, actions included).
//!
//! Everything happens in one loop over one `select!`, in three phases
//! ([`Phase`]): waiting to retry, connecting, and up. The subscriber queue is
//! drained in every phase, so a link that is down never holds local
//! publishers back: their QoS 1/2 messages are in SQLite already.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use tokio::io::ReadHalf;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::FramedRead;

use super::backoff::Backoff;
use super::echo::EchoFilter;
use super::link::{self, Attempt, Io, Link, Secrets};
use super::outbox::{Next, Outbox, Settled, PAGE_BYTES, PAGE_ROWS};
use super::status::Status;
use super::topics::Routes;
use super::wire::{self, Ack, Codec, InPublish, Incoming, WireError};
use crate::actions::supervisor::Triggered;
use crate::broker::Broker;
use crate::config::BridgeConfig;
use crate::device::watch::{preview, Event, Refusal};
use crate::device::DeviceInfo;
use crate::metrics::METRICS;
use crate::router::acl::ClientAcl;
use crate::router::queue::{Delivery, Subscriber};
use crate::router::topic::{self, Topic};
use crate::router::{Resolve, TOPIC_LEASE};
use crate::store::bridge::{self as queue, Page};
use crate::store::StoreError;

/// Incoming messages taken but not yet acknowledged to the remote (and
/// announced as our MQTT 5 Receive Maximum). Past it the socket is not
/// read, which holds the remote back.
pub(super) const IN_WINDOW: usize = 256;

/// Packets waiting for the writer task; publishes are added only below it.
const OUT_QUEUE: usize = 64;

/// Past this many packets waiting for the writer, the socket is not read:
/// what the remote sends makes us answer (PUBREL asks for PUBCOMP), and a
/// remote that sends without reading must not make that queue grow.
const OUT_LIMIT: usize = OUT_QUEUE + IN_WINDOW + 64;

/// QoS 0 messages held while the link is up and busy; past either bound
/// they are dropped and counted (QoS 0 promises nothing more).
const QOS0_MESSAGES: usize = 1000;
const QOS0_BYTES: usize = 4 << 20;

/// How long QoS 1/2 messages (or a SUBSCRIBE) may stay unacknowledged
/// without any acknowledgement arriving before the link is taken for dead.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// How often keep-alive and timeouts are checked.
const TICK: Duration = Duration::from_millis(250);

/// After a failed database read, how long before the next.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// A link that stayed up this long starts the back-off from the beginning
/// when it goes down; one that drops sooner (a remote that accepts and then
/// closes) keeps backing off.
const STABLE: Duration = Duration::from_secs(10);

/// How often a queue just over `max_queued` is trimmed; one further over
/// (by 1% of it, at most 1,000) is trimmed at once. Each trim counts the
/// bridge's rows, so it is not run for every message of a flood.
const TRIM_EVERY: Duration = Duration::from_millis(250);

/// Topic addresses remembered for incoming messages (as a session does).
const TOPIC_CACHE: usize = 4096;

/// The packet id of the SUBSCRIBE sent after CONNACK: nothing else is in
/// flight until its SUBACK (the outbox starts after it).
const SUBSCRIBE_PKID: u16 = 1;

/// Everything one bridge's task owns.
pub(super) struct Bridge {
    pub config: Arc<BridgeConfig>,
    pub secrets: Secrets,
    pub status: Arc<Status>,
    pub broker: Arc<Broker>,
    /// `bridge:NAME`: its key in the router, the origin of its local
    /// publishes, its ACL identity.
    pub client_id: Arc<str>,
    pub name: Arc<str>,
    pub routes: Routes,
    pub acl: ClientAcl,
    pub subscriber: Arc<Subscriber>,
    /// Which attachment of the subscriber is this task's (for its
    /// slow-consumer verdict).
    pub generation: u64,
    /// The pseudo-device `bridge:NAME`: its Live Inspector, and the device
    /// whose actions incoming messages trigger.
    pub device: Option<Arc<DeviceInfo>>,
    pub outbox: Outbox,
    /// The largest packet taken from the remote.
    pub max_packet_size: usize,
    /// Set on MQTT 3.1.1 links whose `in` filters overlap their `out` topics.
    pub echo: Option<EchoFilter>,
    /// Which of the remotes the next attempt goes to.
    pub next_remote: usize,
    pub backoff: Backoff,
    /// QoS 0 messages waiting for the link.
    pub qos0: VecDeque<Delivery>,
    pub qos0_bytes: usize,
    /// The page read or trim in progress: one at a time, so that a trim
    /// never removes a row that a page read is handing out.
    pub store_op: Option<BoxFuture<'static, StoreDone>>,
    /// No page read or trim before this (after a database error).
    pub store_pause_until: Option<Instant>,
    /// A trim found nothing to drop at this many arrivals: not again
    /// until more arrive.
    pub trim_idle_at: Option<u64>,
    /// When the last trim was started.
    pub last_trim: Option<Instant>,
    /// Since when the link is up.
    pub up_since: Option<Instant>,
    pub arrivals: u64,
    /// Acknowledged rows to delete, in one write per loop.
    pub deletes: Vec<i64>,
    /// QoS 2 `released` marks being committed: (connection epoch, pkid).
    pub releases: FuturesUnordered<BoxFuture<'static, Release>>,
    /// Incoming QoS 2 packet ids received and not yet released by PUBREL;
    /// kept across reconnects of a resumed session.
    pub in_qos2: HashSet<u16>,
    /// Those of `in_qos2` whose PUBREC is still waiting for brook.
    pub in_qos2_pending: HashSet<u16>,
    /// The queue count must be read again (after a slow-consumer reset).
    pub recount: bool,
}

/// A committed (or failed) QoS 2 `released` mark: connection epoch, pkid.
pub(super) type Release = (u64, u16, Result<(), StoreError>);

/// A finished page read or trim.
pub(super) enum StoreDone {
    Page(u64, Result<Page, StoreError>),
    Trim(Result<usize, StoreError>),
    Count(Result<usize, StoreError>),
}

/// The three phases of the link.
enum Phase {
    /// Down; the next attempt is due then.
    Waiting(Instant),
    /// An attempt is under way.
    Connecting(BoxFuture<'static, Result<Link, String>>),
    /// Up.
    Up(Box<Conn>),
}

/// An incoming message on its way into brook, in arrival order.
struct InMsg {
    topic: Arc<str>,
    payload: Bytes,
    /// The QoS it is published at locally.
    qos: u8,
    retain: bool,
    /// The QoS it came with, which decides its acknowledgement.
    ack: u8,
    pkid: u16,
}

/// An incoming message brook has taken (or failed to).
struct InDone {
    pkid: u16,
    qos: u8,
    ok: bool,
}

/// The link while it is up.
struct Conn {
    reader: FramedRead<ReadHalf<Box<dyn Io>>, Codec>,
    writer: mpsc::Sender<Bytes>,
    writer_task: tokio::task::JoinHandle<()>,
    /// Packets for the writer, in order.
    out: VecDeque<Bytes>,
    buf: BytesMut,
    keep_alive: Duration,
    last_sent: Instant,
    last_received: Instant,
    /// When an acknowledgement last came, or nothing was outstanding.
    last_progress: Instant,
    /// The SUBSCRIBE is out and its SUBACK awaited; nothing is sent meanwhile.
    subscribing: bool,
    /// The in-flight window and the highest QoS the remote takes, for the
    /// outbox once the SUBACK is in.
    window: usize,
    max_qos: u8,
    ping_out: bool,
    /// What the remote allows (MQTT 5 CONNACK).
    retain_available: bool,
    max_packet_size: usize,
    /// Incoming messages waiting for a topic address, in order.
    pipeline: VecDeque<InMsg>,
    /// The topic address being resolved for the pipeline's head: `Err`
    /// when the router did not answer, `Ok(None)` when no further topic may
    /// exist (`[mqtt] max_topics`).
    resolving: Option<BoxFuture<'static, Result<Option<Addr<Topic>>, ()>>>,
    topics: HashMap<Arc<str>, (Addr<Topic>, Instant)>,
    /// Acknowledgements to send, in the order the messages came.
    acks: FuturesOrdered<BoxFuture<'static, InDone>>,
}

/// What woke the phase up.
enum Ev {
    Retry,
    Opened(Result<Link, String>),
    Packet(Incoming),
    Closed(String),
    Progress,
    InDone(InDone),
    Resolved(Result<Option<Addr<Topic>>, ()>),
}

/// Awaits the future in `f`, or forever when there is none.
async fn maybe<T>(f: &mut Option<BoxFuture<'static, T>>) -> T {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn event(&mut self) -> Ev {
        let room = self.acks.len() + self.pipeline.len() < IN_WINDOW && self.out.len() < OUT_LIMIT;
        tokio::select! {
            frame = self.reader.next(), if room => match frame {
                Some(Ok(p)) => {
                    self.last_received = Instant::now();
                    Ev::Packet(p)
                }
                Some(Err(WireError::Io(e))) => Ev::Closed(format!("read error: {e}")),
                Some(Err(e)) => Ev::Closed(e.to_string()),
                None => Ev::Closed("the remote closed the connection".into()),
            },
            permit = self.writer.reserve(), if !self.out.is_empty() => match permit {
                Ok(p) => {
                    if let Some(b) = self.out.pop_front() {
                        p.send(b);
                    }
                    self.last_sent = Instant::now();
                    Ev::Progress
                }
                Err(_) => Ev::Closed("the connection was closed while writing".into()),
            },
            done = self.acks.next(), if !self.acks.is_empty() => match done {
                Some(d) => Ev::InDone(d),
                None => Ev::Progress,
            },
            addr = maybe(&mut self.resolving) => Ev::Resolved(addr),
        }
    }
}

impl Phase {
    async fn event(&mut self) -> Ev {
        match self {
            Phase::Waiting(until) => {
                tokio::time::sleep_until((*until).into()).await;
                Ev::Retry
            }
            Phase::Connecting(f) => Ev::Opened(f.await),
            Phase::Up(c) => c.event().await,
        }
    }
}

impl Bridge {
    /// Runs until `stop` turns true.
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut phase = Phase::Waiting(Instant::now());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.schedule(&mut phase);
            tokio::select! {
                _ = stop.changed() => {
                    if let Phase::Up(c) = phase {
                        self.goodbye(*c).await;
                    }
                    return;
                }
                _ = self.subscriber.items.notified() => self.drain(),
                _ = self.subscriber.kick.notified() => self.unstall(),
                done = maybe(&mut self.store_op) => {
                    self.store_op = None;
                    self.store_done(done);
                }
                r = self.releases.next(), if !self.releases.is_empty() => {
                    if let (Some(r), Phase::Up(c)) = (r, &mut phase) {
                        self.release_done(c, r);
                    }
                }
                _ = tick.tick() => self.on_tick(&mut phase),
                ev = phase.event() => self.on_event(ev, &mut phase),
            }
        }
    }

    // -- local side ---------------------------------------------------------

    /// Takes what topic actors queued for the bridge: QoS 1/2 messages are
    /// in SQLite already and only counted; QoS 0 ones wait in memory while
    /// the link is up.
    fn drain(&mut self) {
        let mut batch = VecDeque::new();
        self.subscriber.pop_into(&mut batch, usize::MAX);
        for d in batch {
            if d.qos > 0 {
                self.arrivals += 1;
                self.status.queued.inc();
                self.outbox.arrived();
            } else if self.status.connected()
                && self.qos0.len() < QOS0_MESSAGES
                && self.qos0_bytes + d.payload.len() <= QOS0_BYTES
            {
                self.qos0_bytes += d.payload.len();
                self.qos0.push_back(d);
            } else {
                self.status.dropped.inc();
            }
        }
    }

    /// The subscriber queue was declared a slow consumer (this task did
    /// not drain it for `slow_subscriber_timeout`): take it back. What it
    /// held in memory is in SQLite; the count is read again.
    fn unstall(&mut self) {
        if !self.subscriber.is_slow(self.generation) {
            return;
        }
        tracing::warn!("the bridge's queue was reset after a stall; reading it again from SQLite");
        self.generation = self.subscriber.attach().0;
        self.outbox.maybe_more();
        self.recount = true;
    }

    /// Starts a page read or a trim when due, moves the outbox's packets to
    /// the writer queue, feeds the incoming pipeline, writes deletes.
    fn schedule(&mut self, phase: &mut Phase) {
        if !self.deletes.is_empty() {
            let ids = std::mem::take(&mut self.deletes);
            self.broker
                .store
                .write_detached("bridge dequeue", move |c| {
                    queue::delete(c, &ids).map(|_| ())
                });
        }
        self.start_store_op();
        if let Phase::Up(c) = phase {
            self.fill(c);
            self.pump_in(c);
        }
    }

    fn start_store_op(&mut self) {
        if self.store_op.is_some() {
            return;
        }
        if self.store_pause_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.store_pause_until = None;
        let name = self.name.clone();
        if self.recount {
            self.recount = false;
            self.store_op = Some(
                self.broker
                    .store
                    .write(move |c| queue::count(c, &name))
                    .map(StoreDone::Count)
                    .boxed(),
            );
            return;
        }
        let max = self.config.max_queued as i64;
        let excess = self.status.queued.get() - max;
        let slack = (max / 100).clamp(1, 1000);
        let due = excess >= slack
            || (excess > 0 && self.last_trim.is_none_or(|t| t.elapsed() >= TRIM_EVERY));
        if due && self.trim_idle_at != Some(self.arrivals) {
            self.last_trim = Some(Instant::now());
            let (keep, after) = (self.config.max_queued, self.outbox.cursor());
            self.store_op = Some(
                self.broker
                    .store
                    .write(move |c| queue::trim(c, &name, keep, after))
                    .map(StoreDone::Trim)
                    .boxed(),
            );
            return;
        }
        if let Some((after, epoch)) = self.outbox.want_page() {
            // Through the writer, so that every row queued before is seen.
            self.store_op = Some(
                self.broker
                    .store
                    .write(move |c| queue::page(c, &name, after, PAGE_ROWS, PAGE_BYTES))
                    .map(move |r| StoreDone::Page(epoch, r))
                    .boxed(),
            );
        }
    }

    fn store_done(&mut self, done: StoreDone) {
        match done {
            StoreDone::Page(epoch, r) => {
                if let Err(e) = &r {
                    tracing::error!(error = %e, "cannot read the bridge's queue");
                    self.store_pause_until = Some(Instant::now() + STORE_RETRY);
                }
                self.outbox.page(epoch, r.map_err(|_| ()));
            }
            StoreDone::Trim(Ok(n)) => {
                if n == 0 {
                    self.trim_idle_at = Some(self.arrivals);
                    return;
                }
                self.status.queued.add(-(n as i64));
                self.status.dropped.add(n as u64);
                let msg = format!(
                    "the queue is over max_queued ({}): the oldest unsent messages are dropped",
                    self.config.max_queued
                );
                if self.status.error(&msg) {
                    tracing::warn!(dropped = n, "{msg}");
                }
                self.refused(Refusal {
                    kind: "queue full",
                    dropped: Some(n as u64),
                    max_queued: Some(self.config.max_queued),
                    ..Refusal::default()
                });
            }
            StoreDone::Trim(Err(e)) => {
                tracing::error!(error = %e, "cannot trim the bridge's queue");
                self.store_pause_until = Some(Instant::now() + STORE_RETRY);
            }
            StoreDone::Count(Ok(n)) => {
                self.status.queued.add(n as i64 - self.status.queued.get());
            }
            StoreDone::Count(Err(e)) => {
                tracing::error!(error = %e, "cannot count the bridge's queue");
                self.recount = true;
                self.store_pause_until = Some(Instant::now() + STORE_RETRY);
            }
        }
    }

    /// Shows an event in the pseudo-device's Live Inspector; `build` gets
    /// the bridge's client id.
    fn emit<'a>(&'a self, build: impl FnOnce(&'a str) -> Event<'a>) {
        if let Some(d) = &self.device {
            d.watch.emit(|| build(&self.client_id));
        }
    }

    /// Shows a refusal in the pseudo-device's Live Inspector.
    fn refused(&self, refusal: Refusal<'_>) {
        self.emit(|client_id| {
            Event::Refused(Refusal {
                client_id: Some(client_id),
                ..refusal
            })
        });
    }

    // -- the link -----------------------------------------------------------

    fn on_event(&mut self, ev: Ev, phase: &mut Phase) {
        match ev {
            Ev::Retry => self.attempt(phase),
            Ev::Opened(Ok(link)) => self.up(link, phase),
            Ev::Opened(Err(e)) => self.down(phase, e),
            Ev::Closed(why) => self.down(phase, why),
            Ev::Progress => {}
            Ev::Packet(p) => {
                if let Phase::Up(c) = phase {
                    if let Err(why) = self.on_packet(c, p) {
                        self.down(phase, why);
                    }
                }
            }
            Ev::InDone(d) => {
                if let Phase::Up(c) = phase {
                    if let Err(why) = self.in_done(c, d) {
                        self.down(phase, why);
                    }
                }
            }
            Ev::Resolved(addr) => {
                if let Phase::Up(c) = phase {
                    c.resolving = None;
                    match (addr, c.pipeline.front()) {
                        (Ok(Some(addr)), Some(m)) => {
                            if c.topics.len() >= TOPIC_CACHE {
                                c.topics.clear();
                            }
                            c.topics.insert(m.topic.clone(), (addr, Instant::now()));
                        }
                        (Ok(None), Some(_)) => self.topic_refused(c),
                        _ => self.down(phase, "the router is not answering".into()),
                    }
                }
            }
        }
    }

    fn attempt(&mut self, phase: &mut Phase) {
        let remote = self.config.remotes[self.next_remote % self.config.remotes.len()].clone();
        tracing::debug!(%remote, "connecting");
        *phase = Phase::Connecting(
            link::open(Attempt {
                config: self.config.clone(),
                secrets: self.secrets.clone(),
                remote,
                max_packet_size: self.max_packet_size,
                receive_maximum: IN_WINDOW as u16,
            })
            .boxed(),
        );
    }

    fn up(&mut self, link: Link, phase: &mut Phase) {
        let a = &link.connack;
        if !a.session_present {
            self.in_qos2.clear();
        }
        self.in_qos2_pending.clear();
        let keep_alive = match a.server_keep_alive {
            Some(k) => Duration::from_secs(u64::from(k)),
            None => self.config.keep_alive,
        };
        let window = self
            .config
            .max_inflight
            .min(usize::from(a.receive_maximum.unwrap_or(u16::MAX)).max(1));
        let now = Instant::now();
        let mut c = Box::new(Conn {
            reader: link.reader,
            writer: link.writer,
            writer_task: link.writer_task,
            out: VecDeque::new(),
            buf: BytesMut::new(),
            keep_alive,
            last_sent: now,
            last_received: now,
            last_progress: now,
            subscribing: false,
            window,
            max_qos: a.maximum_qos.unwrap_or(2),
            ping_out: false,
            retain_available: a.retain_available.unwrap_or(true),
            max_packet_size: a
                .maximum_packet_size
                .map(|m| m as usize)
                .unwrap_or(usize::MAX),
            pipeline: VecDeque::new(),
            resolving: None,
            topics: HashMap::new(),
            acks: FuturesOrdered::new(),
        });
        self.status.up(link.remote.clone());
        self.up_since = Some(Instant::now());
        tracing::info!(remote = %link.remote, session_present = a.session_present, "bridge connected");
        self.emit(|client_id| Event::LinkUp {
            client_id,
            peer: &link.remote,
            resumed: a.session_present,
            protocol: self.config.protocol.to_string(),
        });
        let filters = self.routes.remote_subscriptions();
        if filters.is_empty() {
            self.outbox.connect(c.window, c.max_qos);
        } else {
            wire::subscribe(&mut c.buf, self.config.protocol, SUBSCRIBE_PKID, &filters);
            c.out.push_back(c.buf.split().freeze());
            c.subscribing = true;
        }
        *phase = Phase::Up(c);
    }

    /// The link is down (or an attempt failed): log it if it is news,
    /// forget what was in flight, and wait for the next attempt.
    fn down(&mut self, phase: &mut Phase, why: String) {
        let was_up = matches!(phase, Phase::Up(_));
        if let Phase::Up(c) = std::mem::replace(phase, Phase::Waiting(Instant::now())) {
            drop(c.writer);
            let task = c.writer_task;
            tokio::spawn(async move {
                // The writer ends when its queue is dropped; a socket that
                // does not take the last bytes is cut off after a while.
                tokio::time::sleep(Duration::from_secs(2)).await;
                task.abort();
            });
        }
        // Whether brook took the messages whose PUBREC was pending is not
        // known: let the remote send them again rather than lose them.
        for pkid in self.in_qos2_pending.drain() {
            self.in_qos2.remove(&pkid);
        }
        self.outbox.disconnect();
        self.status.dropped.add(self.qos0.len() as u64);
        self.qos0.clear();
        self.qos0_bytes = 0;
        self.next_remote = self.next_remote.wrapping_add(1);
        if self.up_since.take().is_some_and(|t| t.elapsed() >= STABLE) {
            self.backoff.reset();
        }
        let delay = self.backoff.next(rand::random::<f64>());
        let news = self
            .status
            .down(&why, self.backoff.failures, delay.as_millis() as u64);
        if news {
            if was_up {
                tracing::warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "bridge disconnected");
            } else {
                tracing::warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "bridge cannot connect; retrying with back-off");
            }
        } else {
            tracing::debug!(error = %why, retry_in_ms = delay.as_millis() as u64, attempts = self.backoff.failures, "bridge still cannot connect");
        }
        if was_up {
            self.emit(|client_id| Event::Disconnect {
                client_id,
                reason: &why,
            });
        } else if news {
            self.refused(Refusal {
                kind: "connect",
                reason: Some(why.as_str().into()),
                ..Refusal::default()
            });
        }
        *phase = Phase::Waiting(Instant::now() + delay);
    }

    fn on_tick(&mut self, phase: &mut Phase) {
        let Phase::Up(c) = phase else { return };
        self.outbox.recheck(self.status.queued.get());
        let now = Instant::now();
        if self.outbox.inflight() == 0 && !c.subscribing {
            c.last_progress = now;
        }
        self.status
            .inflight
            .add(self.outbox.inflight() as i64 - self.status.inflight.get());
        let why = if !c.keep_alive.is_zero()
            && now.duration_since(c.last_received) > c.keep_alive + c.keep_alive / 2
        {
            Some(format!(
                "nothing from the remote for 1.5 × keep-alive ({}s)",
                c.keep_alive.as_secs()
            ))
        } else if now.duration_since(c.last_progress) > ACK_TIMEOUT {
            Some(format!(
                "the remote acknowledged nothing for {}s",
                ACK_TIMEOUT.as_secs()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return self.down(phase, why);
        }
        // A ping when we sent nothing for a keep-alive (the remote's rule),
        // and when we heard nothing for one (so that a link we only write
        // to still shows it is alive).
        let idle = now
            .duration_since(c.last_sent)
            .min(now.duration_since(c.last_received));
        if !c.keep_alive.is_zero() && !c.ping_out && idle >= c.keep_alive {
            wire::pingreq(&mut c.buf);
            c.out.push_back(c.buf.split().freeze());
            c.ping_out = true;
        }
    }

    // -- packets from the remote --------------------------------------------

    fn on_packet(&mut self, c: &mut Conn, p: Incoming) -> Result<(), String> {
        match p {
            Incoming::Publish(p) => self.incoming(c, p),
            Incoming::PubAck { pkid, code } => {
                c.last_progress = Instant::now();
                let s = self.outbox.puback(pkid, code);
                self.settle(c, s);
            }
            Incoming::PubRec { pkid, code } => {
                c.last_progress = Instant::now();
                let s = self.outbox.pubrec(pkid, code);
                self.settle(c, s);
            }
            Incoming::PubComp { pkid, .. } => {
                c.last_progress = Instant::now();
                let s = self.outbox.pubcomp(pkid);
                self.settle(c, s);
            }
            Incoming::PubRel { pkid } => {
                self.in_qos2.remove(&pkid);
                wire::ack(&mut c.buf, Ack::PubComp, pkid);
                c.out.push_back(c.buf.split().freeze());
            }
            Incoming::SubAck { pkid, codes } if c.subscribing && pkid == SUBSCRIBE_PKID => {
                c.subscribing = false;
                c.last_progress = Instant::now();
                for ((filter, _), code) in self.routes.remote_subscriptions().iter().zip(&codes) {
                    if *code >= 0x80 {
                        let msg = format!(
                            "the remote refused the subscription to {filter} (code {code:#04x})"
                        );
                        if self.status.error(&msg) {
                            tracing::warn!("{msg}");
                        }
                        self.refused(Refusal {
                            kind: "subscribe",
                            filter: Some(filter),
                            code: Some(*code),
                            ..Refusal::default()
                        });
                    }
                }
                self.outbox.connect(c.window, c.max_qos);
            }
            Incoming::SubAck { .. } | Incoming::UnsubAck => {}
            Incoming::PingResp => c.ping_out = false,
            Incoming::ConnAck(_) => return Err("a second CONNACK".into()),
            Incoming::Disconnect { code, reason } => {
                return Err(match reason {
                    Some(r) => format!("the remote disconnected (reason {code:#04x}: {r})"),
                    None => format!("the remote disconnected (reason {code:#04x})"),
                })
            }
        }
        Ok(())
    }

    /// Acts on what an acknowledgement settled.
    fn settle(&mut self, c: &mut Conn, s: Settled) {
        match s {
            Settled::Nothing => {}
            Settled::Delete { id, refused } => {
                self.deletes.push(id);
                self.status.queued.dec();
                match refused {
                    None => self.status.sent.inc(),
                    Some(code) => {
                        self.status.dropped.inc();
                        let msg = format!(
                            "the remote refused a message (reason {code:#04x}); it was dropped"
                        );
                        if self.status.error(&msg) {
                            tracing::warn!("{msg}");
                        }
                        self.refused(Refusal {
                            kind: "remote",
                            code: Some(code),
                            ..Refusal::default()
                        });
                    }
                }
            }
            Settled::Release { id, pkid } => {
                let epoch = self.outbox.epoch();
                let commit = self.broker.store.write(move |c| queue::release(c, id));
                self.releases
                    .push(commit.map(move |r| (epoch, pkid, r)).boxed());
            }
            Settled::PubRelAgain { pkid } => {
                wire::ack(&mut c.buf, Ack::PubRel, pkid);
                c.out.push_back(c.buf.split().freeze());
            }
        }
    }

    fn release_done(&mut self, c: &mut Conn, (epoch, pkid, r): Release) {
        match r {
            Ok(()) => {
                if self.outbox.released(epoch, pkid) {
                    wire::ack(&mut c.buf, Ack::PubRel, pkid);
                    c.out.push_back(c.buf.split().freeze());
                }
            }
            // Without the mark, PUBREL is not sent: the PUBLISH goes again
            // after a reconnect, which a QoS 2 remote recognises.
            Err(e) => tracing::error!(error = %e, "cannot mark a QoS 2 message released"),
        }
    }

    /// A PUBLISH from the remote: checked, mapped, then queued to be
    /// handed to its topic in order.
    fn incoming(&mut self, c: &mut Conn, p: InPublish) {
        let ack_now = |c: &mut Conn, qos: u8, pkid: u16| {
            if qos > 0 {
                c.acks.push_back(
                    futures::future::ready(InDone {
                        pkid,
                        qos,
                        ok: true,
                    })
                    .boxed(),
                );
            }
        };
        if p.qos == 2 && !self.in_qos2.insert(p.pkid) {
            // Sent again before its PUBREL: acknowledged, not delivered twice.
            if !self.in_qos2_pending.contains(&p.pkid) {
                ack_now(c, 2, p.pkid);
            }
            return;
        }
        if p.qos == 2 {
            self.in_qos2_pending.insert(p.pkid);
        }
        if let Some(echo) = &mut self.echo {
            if echo.is_echo(&p.topic, &p.payload, Instant::now()) {
                self.status.echoes.inc();
                return ack_now(c, p.qos, p.pkid);
            }
        }
        let Some((local, cap)) = self.routes.incoming(&p.topic) else {
            tracing::debug!(topic = %p.topic, "a message no `in` entry maps: dropped");
            self.status.dropped.inc();
            self.refused(Refusal {
                kind: "unmapped",
                remote_topic: Some(&p.topic),
                ..Refusal::default()
            });
            return ack_now(c, p.qos, p.pkid);
        };
        self.emit(|client_id| Event::Publish {
            client_id,
            direction: Some("in"),
            topic: &local,
            remote_topic: Some(&p.topic),
            qos: p.qos,
            retain: p.retain,
            bytes: p.payload.len(),
            payload: preview(&p.payload),
            properties: None,
        });
        if !self.acl.can_publish(&local) {
            METRICS.dropped_acl.inc();
            self.status.dropped.inc();
            tracing::info!(topic = %local, "incoming message denied by the ACL");
            self.refused(Refusal {
                kind: "publish",
                reason: Some("ACL".into()),
                topic: Some(&local),
                ..Refusal::default()
            });
            return ack_now(c, p.qos, p.pkid);
        }
        c.pipeline.push_back(InMsg {
            topic: local.into(),
            payload: p.payload,
            qos: p.qos.min(cap),
            retain: p.retain,
            ack: p.qos,
            pkid: p.pkid,
        });
    }

    /// Hands waiting incoming messages to their topics, in order, as far
    /// as topic addresses are known.
    fn pump_in(&mut self, c: &mut Conn) {
        while let Some(front) = c.pipeline.front() {
            let addr = match c.topics.get(&front.topic) {
                Some((addr, at)) if at.elapsed() < TOPIC_LEASE && addr.connected() => addr.clone(),
                _ => {
                    if c.resolving.is_none() {
                        let ask = self
                            .broker
                            .router
                            .send(Resolve(front.topic.clone(), crate::router::home::current()));
                        c.resolving = Some(async move { ask.await.map_err(|_| ()) }.boxed());
                    }
                    return;
                }
            };
            let Some(m) = c.pipeline.pop_front() else {
                return;
            };
            let (done, taken) = oneshot::channel();
            let stored = self.trigger_actions(&m);
            addr.do_send(topic::Publish {
                payload: m.payload,
                qos: m.qos,
                retain: m.retain,
                properties: None,
                expires_at: None,
                done: Some(done),
                origin: Some(self.client_id.clone()),
            });
            self.status.received.inc();
            // QoS 0 too takes a place in the window until its topic took
            // it: a remote flooding QoS 0 is held back like any other.
            {
                let (ack_qos, pkid) = (m.ack, m.pkid);
                c.acks.push_back(
                    async move {
                        // Delivered but not retained (a retained limit) is
                        // taken all the same, as for a client's publish.
                        let taken = taken.await.is_ok_and(|p| p != topic::Published::Failed);
                        let stored = match stored {
                            Some(s) => s.await.unwrap_or(false),
                            None => true,
                        };
                        InDone {
                            pkid,
                            qos: ack_qos,
                            ok: taken && stored,
                        }
                    }
                    .boxed(),
                );
            }
        }
    }

    /// The incoming message at the head of the pipeline needs a topic past
    /// `[mqtt] max_topics`: it is dropped and counted, and acknowledged so
    /// that the remote does not send it for ever.
    fn topic_refused(&mut self, c: &mut Conn) {
        let Some(m) = c.pipeline.pop_front() else {
            return;
        };
        METRICS.topics_refused.inc();
        self.status.dropped.inc();
        let msg = format!(
            "an incoming message on {} needs a topic past [mqtt] max_topics; dropped",
            m.topic
        );
        if self.status.error(&msg) {
            tracing::warn!("{msg}");
        }
        if m.ack > 0 {
            c.acks.push_back(
                futures::future::ready(InDone {
                    pkid: m.pkid,
                    qos: m.ack,
                    ok: true,
                })
                .boxed(),
            );
        }
    }

    /// Runs the pseudo-device's actions for an incoming message; the answer
    /// comes once what they store is committed.
    fn trigger_actions(&self, m: &InMsg) -> Option<oneshot::Receiver<bool>> {
        let device = self.device.as_ref()?;
        if !self.broker.action_index().wants(&m.topic) {
            return None;
        }
        let device = self.broker.auth.device(&device.id)?;
        device.touch();
        let (done, answer) = oneshot::channel();
        self.broker.actions.do_send(Triggered {
            device,
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            properties: None,
            done: Some(done),
        });
        Some(answer)
    }

    /// Brook took an incoming message (or could not): acknowledge it, or
    /// close the link so that the remote sends it again.
    fn in_done(&mut self, c: &mut Conn, d: InDone) -> Result<(), String> {
        if d.qos == 2 {
            self.in_qos2_pending.remove(&d.pkid);
        }
        if d.qos == 0 {
            if !d.ok {
                tracing::warn!("a QoS 0 message from the remote could not be stored");
            }
            return Ok(());
        }
        if !d.ok {
            self.in_qos2.remove(&d.pkid);
            return Err("a message from the remote could not be stored; it will come again".into());
        }
        let kind = if d.qos == 2 { Ack::PubRec } else { Ack::PubAck };
        wire::ack(&mut c.buf, kind, d.pkid);
        c.out.push_back(c.buf.split().freeze());
        Ok(())
    }

    // -- packets to the remote ----------------------------------------------

    /// Moves what the outbox and the QoS 0 buffer have into the writer queue.
    fn fill(&mut self, c: &mut Conn) {
        if c.subscribing {
            return;
        }
        while c.out.len() < OUT_QUEUE {
            let Some(next) = self.outbox.next() else {
                break;
            };
            match next {
                Next::PubRel { pkid } => {
                    wire::ack(&mut c.buf, Ack::PubRel, pkid);
                    c.out.push_back(c.buf.split().freeze());
                }
                Next::Publish {
                    row,
                    qos,
                    pkid,
                    dup,
                } => {
                    let sent =
                        self.publish(c, &row.topic, &row.payload, qos, row.retain, dup, pkid);
                    if !sent || qos == 0 {
                        // Not sendable, or sent at QoS 0: settled either way.
                        if qos > 0 {
                            self.outbox.abandon(pkid);
                        }
                        self.deletes.push(row.id);
                        self.status.queued.dec();
                        if sent {
                            self.status.sent.inc();
                        } else {
                            self.status.dropped.inc();
                        }
                    }
                }
            }
        }
        while c.out.len() < OUT_QUEUE {
            let Some(d) = self.qos0.pop_front() else {
                break;
            };
            self.qos0_bytes -= d.payload.len();
            if self.publish(c, &d.topic, &d.payload, 0, d.retain, false, 0) {
                self.status.sent.inc();
            } else {
                self.status.dropped.inc();
            }
        }
    }

    /// Encodes one PUBLISH to the remote; false when it cannot go (no
    /// `out` entry maps its topic, or it is larger than the remote takes).
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &mut self,
        c: &mut Conn,
        local: &str,
        payload: &Bytes,
        qos: u8,
        retain: bool,
        dup: bool,
        pkid: u16,
    ) -> bool {
        let protocol = self.config.protocol;
        let Some((remote, cap)) = self.routes.outgoing(local) else {
            tracing::debug!(
                topic = local,
                "no `out` entry maps this topic any more: dropped"
            );
            return false;
        };
        let qos = if qos > 0 { qos.min(cap.max(1)) } else { 0 };
        let size = wire::publish_size(protocol, &remote, payload.len(), qos);
        if size > c.max_packet_size {
            let msg = format!(
                "a message on {local} ({size} bytes) is larger than the remote takes ({} bytes); dropped",
                c.max_packet_size
            );
            if self.status.error(&msg) {
                tracing::warn!("{msg}");
            }
            return false;
        }
        let retain = retain && c.retain_available;
        wire::publish(
            &mut c.buf, protocol, &remote, payload, qos, retain, dup, pkid,
        );
        c.out.push_back(c.buf.split().freeze());
        if let Some(echo) = &mut self.echo {
            echo.sent(&remote, payload, Instant::now());
        }
        self.emit(|client_id| Event::Publish {
            client_id,
            direction: Some("out"),
            topic: local,
            remote_topic: Some(&remote),
            qos,
            retain,
            bytes: payload.len(),
            payload: preview(payload),
            properties: None,
        });
        true
    }

    /// Stopping: a DISCONNECT (the remote keeps the session), then the
    /// socket closes once the writer has written it.
    async fn goodbye(&mut self, c: Conn) {
        let mut buf = BytesMut::new();
        wire::disconnect(&mut buf);
        let _ = c.writer.try_send(buf.freeze());
        drop(c.writer);
        let _ = tokio::time::timeout(Duration::from_secs(2), c.writer_task).await;
        self.status.down("stopped", 0, 0);
    }
}
