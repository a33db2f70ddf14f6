//! A client's delivery queue: what topic actors hand messages to, and what its
//! session actor drains onto the socket.
//!
//! It is shared (`Arc`) between the topic actors that feed it and the session
//! actor that drains it, and it outlives the connection for a persistent
//! session. It is where the flow-control guarantee lives:
//!
//! - while the client is connected, messages wait here in memory, at most
//!   `capacity` of them and `max_bytes` of payload. A message past that, of
//!   any QoS, makes the topic actor wait for room ([`Push::Full`]), which
//!   holds its publishers back. A subscriber that takes nothing for
//!   `slow_subscriber_timeout` while full is marked slow, its session is told
//!   to close, and the topic goes on (its QoS 0 messages are lost and
//!   counted); one that keeps reading is never slow and loses nothing, its
//!   publishers simply go at its pace. (A bridge's queue drops QoS 0 past
//!   its bound instead: a remote that is slow or down must not hold local
//!   publishers back for messages it is not owed.)
//! - for a persistent session every QoS 1/2 message is also written to
//!   SQLite before the publisher is acknowledged, and deleted when the client
//!   acknowledges it, so a `kill -9` loses nothing acknowledged. While the
//!   client is away messages go to SQLite only, at most `max_queued` of them.
//! - a bridge's outgoing queue ([`Subscriber::for_bridge`]) is written to
//!   `bridge_queue` the same way, before publishers are acknowledged; the
//!   bridge reads that table and bounds it itself.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::metrics::METRICS;
use crate::protocol::PublishProperties;
use crate::store::{bridge, sessions, Store, StoreError};

/// One message on its way to one client.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// The QoS it is delivered at: the lower of the publish's and the grant.
    pub qos: u8,
    /// Set when it is a retained message sent because of a new subscription,
    /// and for a bridge's queue when the publish was retained.
    pub retain: bool,
    /// The row id in `session_queue` for a persistent session's QoS 1/2
    /// message, 0 otherwise; the session deletes the row on acknowledgement.
    pub seq: i64,
    /// Set when it may have been sent before (redelivery after a reconnect).
    pub dup: bool,
    /// MQTT 5 properties that travel with the message unchanged.
    pub properties: Option<Arc<PublishProperties>>,
    /// Unix ms when its message expiry interval ends: not sent after that.
    pub expires_at: Option<i64>,
    /// The identifiers of the receiver's subscriptions that matched (MQTT 5).
    pub sub_ids: Option<Arc<[u32]>>,
}

impl Delivery {
    /// Whether its message expiry interval has passed (the clock is read
    /// only for a message that has one).
    pub(crate) fn expired(&self) -> bool {
        self.expires_at
            .is_some_and(|at| at <= crate::store::now_ms())
    }
}

/// Whether a subscriber can take a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// Connected, with room in its queue.
    Free,
    /// Connected, and its queue is full.
    Full,
    /// Not connected (or being closed as slow).
    Away,
}

/// The broker-wide message sequence, above every id in `session_queue`, so
/// that reading a queue by id gives each topic's messages in publish order.
pub(crate) static SEQ: AtomicI64 = AtomicI64::new(0);

pub(crate) fn next_seq() -> i64 {
    SEQ.fetch_add(1, Ordering::Relaxed) + 1
}

/// What [`Subscriber::push`] did with a message.
pub(crate) enum Push {
    /// Queued; for a persistent session, the future resolves when its row is committed.
    Queued(Option<BoxFuture<'static, Result<(), StoreError>>>),
    /// Not delivered (QoS 0 past a full queue, or nobody to deliver to); counted.
    Dropped,
    /// The queue is full and has been since the given instant: wait for room,
    /// then push the message (handed back) again.
    Full(Instant, Delivery),
}

/// Protocol state a persistent session hands from one connection to the next.
#[derive(Default, Debug)]
pub(crate) struct Resume {
    /// Sequence numbers that were sent and not acknowledged: redelivered with DUP.
    pub was_inflight: HashSet<i64>,
    /// Outgoing QoS 2 packet ids that got PUBREC but not yet PUBCOMP: PUBREL is sent again.
    pub pubrel: Vec<u16>,
    /// Incoming QoS 2 packet ids delivered but not yet released by PUBREL.
    pub incoming_qos2: HashSet<u16>,
}

struct Inner {
    /// A connection is attached and draining.
    online: bool,
    /// The current connection was found to be a slow consumer and is closing.
    slow: bool,
    queue: VecDeque<Delivery>,
    /// Payload bytes in `queue`.
    bytes: usize,
    /// Since when a push has found the queue full with the client taking
    /// nothing: cleared whenever the client takes a message. A subscriber
    /// that keeps reading is never slow, however fast its publishers are.
    full_since: Option<Instant>,
    /// Rows in SQLite for this session while it is away, to enforce `max_queued`.
    offline_count: usize,
    resume: Resume,
    /// Counts attachments, so that a late detach from a connection that was
    /// taken over does not undo the new connection's attach.
    generation: u64,
}

pub(crate) struct Subscriber {
    pub client_id: Arc<str>,
    /// clean session = 0: messages go through SQLite and survive restarts.
    pub persistent: bool,
    /// Set for a bridge's outgoing queue: QoS 1/2 messages are written to
    /// `bridge_queue` under this bridge name (instead of `session_queue`)
    /// before their publishers are acknowledged.
    pub bridge: Option<Arc<str>>,
    capacity: usize,
    /// Payload bytes in memory before publishers are held back.
    max_bytes: usize,
    max_queued: usize,
    store: Store,
    inner: Mutex<Inner>,
    /// Wakes the session when a message arrives in an empty queue.
    pub items: Notify,
    /// Wakes topic actors waiting for room.
    pub space: Notify,
    /// Tells the session to close: it was found to be a slow consumer.
    pub kick: Notify,
    /// The session is over (its client left with a clean session, or it
    /// was replaced): topics that still list it drop it when they next
    /// look, instead of being told one by one.
    gone: AtomicBool,
}

impl Subscriber {
    pub(crate) fn new(
        client_id: Arc<str>,
        persistent: bool,
        (capacity, max_bytes): (usize, usize),
        max_queued: usize,
        store: Store,
    ) -> Arc<Subscriber> {
        Arc::new(Subscriber::build(
            client_id,
            persistent,
            None,
            (capacity, max_bytes),
            max_queued,
            store,
        ))
    }

    fn build(
        client_id: Arc<str>,
        persistent: bool,
        bridge: Option<Arc<str>>,
        (capacity, max_bytes): (usize, usize),
        max_queued: usize,
        store: Store,
    ) -> Subscriber {
        Subscriber {
            client_id,
            persistent,
            bridge,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            max_queued,
            store,
            inner: Mutex::new(Inner {
                online: false,
                slow: false,
                queue: VecDeque::new(),
                bytes: 0,
                full_since: None,
                offline_count: 0,
                resume: Resume::default(),
                generation: 0,
            }),
            items: Notify::new(),
            space: Notify::new(),
            kick: Notify::new(),
            gone: AtomicBool::new(false),
        }
    }

    /// The queue of bridge `name` (registered with the router under
    /// `client_id`; the bridge attaches it and keeps it attached): its QoS
    /// 1/2 messages are written to `bridge_queue`, never trimmed here (the
    /// bridge bounds its table).
    pub(crate) fn for_bridge(
        client_id: Arc<str>,
        name: Arc<str>,
        capacity: usize,
        store: Store,
    ) -> Arc<Subscriber> {
        Arc::new(Subscriber::build(
            client_id,
            false,
            Some(name),
            (capacity, usize::MAX),
            usize::MAX,
            store,
        ))
    }

    /// Whether the in-memory queue is at its bound (a single message always
    /// fits in an empty one, however large).
    fn full(&self, g: &Inner) -> bool {
        g.queue.len() >= self.capacity || (g.bytes >= self.max_bytes && !g.queue.is_empty())
    }

    /// Whether a message at `qos` is written to SQLite before its
    /// publisher is acknowledged.
    fn durable(&self, qos: u8) -> bool {
        qos > 0 && (self.persistent || self.bridge.is_some())
    }

    /// Marks the session over; see [`Subscriber::is_gone`].
    pub(crate) fn end(&self) {
        self.gone.store(true, Ordering::Release);
        self.space.notify_waiters();
    }

    /// Whether the session is over: nothing is delivered to it any more.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Hands a message to this client, within the queue's bound.
    pub(crate) fn push(&self, d: Delivery) -> Push {
        if self.is_gone() {
            return Push::Dropped;
        }
        let persist = self.durable(d.qos);
        let mut g = self.inner.lock();
        if g.online && !g.slow {
            if self.full(&g) {
                if d.qos == 0 && self.bridge.is_some() {
                    METRICS.dropped_qos0_full.inc();
                    return Push::Dropped;
                }
                let since = *g.full_since.get_or_insert_with(Instant::now);
                return Push::Full(since, d);
            }
            let commit = persist.then(|| self.enqueue_row(&d));
            let was_empty = g.queue.is_empty();
            g.bytes += d.payload.len();
            g.queue.push_back(d);
            METRICS.queued_messages.inc();
            drop(g);
            if was_empty {
                self.items.notify_one();
            }
            return Push::Queued(commit);
        }
        if !persist {
            if g.slow {
                METRICS.dropped_slow.inc();
            } else if self.persistent {
                METRICS.dropped_offline_qos0.inc();
            } else {
                METRICS.dropped_disconnected.inc();
            }
            return Push::Dropped;
        }
        g.offline_count += 1;
        let commit = self.enqueue_row(&d);
        if g.offline_count > self.max_queued {
            let over = (g.offline_count - self.max_queued) as u64;
            g.offline_count = self.max_queued;
            METRICS.dropped_queue_overflow.add(over);
            let client = self.client_id.clone();
            let keep = self.max_queued;
            self.store.write_detached("trim session queue", move |c| {
                sessions::trim(c, &client, keep).map(|_| ())
            });
        }
        Push::Queued(Some(commit))
    }

    fn enqueue_row(&self, d: &Delivery) -> BoxFuture<'static, Result<(), StoreError>> {
        if let Some(name) = self.bridge.clone() {
            let (topic, payload, qos, retain) =
                (d.topic.clone(), d.payload.clone(), d.qos, d.retain);
            let at = crate::store::now_ms();
            return self
                .store
                .write(move |c| bridge::enqueue(c, &name, &topic, &payload, qos, retain, at))
                .boxed();
        }
        let client = self.client_id.clone();
        let row = sessions::QueuedRow {
            id: d.seq,
            topic: d.topic.to_string(),
            payload: d.payload.clone(),
            qos: d.qos,
            retain: d.retain,
            properties: d.properties.clone(),
            expires_at: d.expires_at,
            sub_ids: d.sub_ids.clone(),
        };
        self.store
            .write(move |c| sessions::enqueue(c, &client, &row))
            .boxed()
    }

    /// Whether it can take a message now (for a shared subscription's choice
    /// of member).
    pub(crate) fn room(&self) -> Room {
        if self.is_gone() {
            return Room::Away;
        }
        let g = self.inner.lock();
        if !g.online || g.slow {
            Room::Away
        } else if self.full(&g) {
            Room::Full
        } else {
            Room::Free
        }
    }

    /// Takes up to `max` messages for the session to send.
    pub(crate) fn pop_into(&self, out: &mut VecDeque<Delivery>, max: usize) {
        let mut g = self.inner.lock();
        let n = max.min(g.queue.len());
        let start = out.len();
        out.extend(g.queue.drain(..n));
        let taken: usize = out.iter().skip(start).map(|d| d.payload.len()).sum();
        g.bytes = g.bytes.saturating_sub(taken);
        METRICS.queued_messages.add(-(n as i64));
        if n > 0 && g.full_since.is_some() {
            g.full_since = None;
            drop(g);
            self.space.notify_waiters();
        }
    }

    /// Whether the connection of this generation was found to be slow.
    pub(crate) fn is_slow(&self, generation: u64) -> bool {
        let g = self.inner.lock();
        g.generation == generation && g.slow
    }

    /// The sequence numbers now queued in memory, to skip when the same
    /// messages are loaded from SQLite on a reconnect.
    pub(crate) fn queued_seqs(&self) -> HashSet<i64> {
        self.inner
            .lock()
            .queue
            .iter()
            .filter(|d| d.seq > 0)
            .map(|d| d.seq)
            .collect()
    }

    /// A connection takes this subscriber over; returns its generation and
    /// what the previous connection left unfinished.
    pub(crate) fn attach(&self) -> (u64, Resume) {
        let mut g = self.inner.lock();
        g.generation += 1;
        g.online = true;
        g.slow = false;
        METRICS.queued_messages.add(-(g.queue.len() as i64));
        g.queue.clear();
        g.bytes = 0;
        g.full_since = None;
        g.offline_count = 0;
        (g.generation, std::mem::take(&mut g.resume))
    }

    /// The connection is gone. `unacked` is how many of this session's rows
    /// remain in SQLite (for the `max_queued` bound while away).
    pub(crate) fn detach(&self, generation: u64, resume: Resume, unacked: usize) {
        let mut g = self.inner.lock();
        if g.generation != generation {
            return;
        }
        g.online = false;
        METRICS.queued_messages.add(-(g.queue.len() as i64));
        g.queue.clear();
        g.bytes = 0;
        g.full_since = None;
        g.offline_count = unacked;
        g.resume = resume;
        drop(g);
        self.space.notify_waiters();
    }

    /// Marks the current connection a slow consumer and tells its session to
    /// close, if it has taken nothing for `timeout` while full. Messages that
    /// were waiting in memory stay in SQLite for a persistent session.
    pub(crate) fn mark_slow_if_stalled(&self, timeout: std::time::Duration) {
        let mut g = self.inner.lock();
        if g.slow || !g.online {
            return;
        }
        if g.full_since.is_none_or(|since| since.elapsed() < timeout) {
            return; // it took something meanwhile
        }
        g.slow = true;
        let dropped = g.queue.iter().filter(|d| !self.durable(d.qos)).count();
        METRICS.queued_messages.add(-(g.queue.len() as i64));
        g.queue.clear();
        g.bytes = 0;
        g.full_since = None;
        drop(g);
        METRICS.slow_consumers.inc();
        METRICS.dropped_slow.add(dropped as u64);
        tracing::warn!(client_id = %self.client_id, "slow consumer: disconnecting");
        self.space.notify_waiters();
        self.kick.notify_one();
    }
}
