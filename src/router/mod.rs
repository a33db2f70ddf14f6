//! The router: the one actor that owns the subscription index and knows every
//! client session, connected or persistent and away.
//!
//! Sessions ask it for a topic actor's address (`Resolve`) the first time
//! they publish to a topic and then talk to that topic directly (a new topic
//! actor starts on the arbiter of the connection that asked, `home.rs`, so
//! that its publisher's messages reach it without crossing a thread); they tell it
//! of CONNECT (session takeover and resumption happen here), SUBSCRIBE,
//! UNSUBSCRIBE and disconnection. It keeps each active topic actor's list of
//! subscribers up to date, so that a publish never consults the index.
//!
//! Its work is proportional to what matches: a SUBSCRIBE, UNSUBSCRIBE or
//! disconnect finds the topics its filters match in a tree of topic names,
//! and a topic's grant for a client comes from the subscription tree, never
//! from a scan of every topic or every filter. The ACL decides each topic a
//! client is given (cached in the topic's subscriber list, so a publish pays
//! nothing for it). A session belongs to the device that created it. Long
//! operations run a slice at a time (`jobs.rs`), so that one client's
//! thousands of subscriptions never hold up another client's CONNECT.

pub(crate) mod acl;
pub(crate) mod budget;
pub(crate) mod grant;
pub(crate) mod home;
mod jobs;
pub(crate) mod queue;
pub(crate) mod retained;
pub(crate) mod topic;
pub(crate) mod trie;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use crate::metrics::METRICS;
use crate::protocol::PublishProperties;
use crate::store::{sessions, Store, StoreError};
use acl::ClientAcl;
use budget::RetainedBudget;
use grant::{Reach, Sub};
use queue::Subscriber;
use retained::{Retained, RetainedTable};
use topic::{Member, Retire, SetShared, SetSubscriber, Topic};
use trie::{NameTrie, SubTrie};

/// How often the router looks for entries whose connection ended without
/// telling it (a connection that closed while its CONNECT was in flight).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How long a session may keep using a topic address it resolved without
/// asking again. The router retires a topic only when nobody resolved it for
/// longer than this, so no session can still send to a stopped topic. Short,
/// so that a topic's actor goes soon after its traffic (a retained message
/// stays in the table without it); a session publishing to a topic all the
/// time asks the router again once per lease.
pub(crate) const TOPIC_LEASE: Duration = Duration::from_secs(5);

/// Topic actors retired before the allocator is asked to give their memory
/// back to the system, and how long after the first of them it is asked.
const TRIM_AFTER_RETIRED: usize = 1024;
const TRIM_DELAY: Duration = Duration::from_secs(2);

pub(crate) use crate::config::BRIDGE_CLIENT_PREFIX;

/// The address of the actor for a topic name, created if needed; `None`
/// when `max_topics` topics exist already. The second field is the arbiter
/// the asking connection runs on ([`home::current`]): a new topic actor
/// starts there.
#[derive(Message)]
#[rtype(result = "Option<Addr<Topic>>")]
pub(crate) struct Resolve(pub Arc<str>, pub Option<usize>);

/// Asks an existing connection to hand its session over and close: another
/// connection with the same client id has arrived. Answers once the
/// connection has detached from its session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Takeover;

/// A message published from inside the broker or handed on by a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Publication {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 properties, forwarded unchanged.
    pub properties: Option<Arc<PublishProperties>>,
    /// Unix ms when its message expiry interval ends; None = never.
    pub expires_at: Option<i64>,
}

impl Publication {
    /// A message without MQTT 5 properties.
    pub(crate) fn new(topic: Arc<str>, payload: Bytes, qos: u8, retain: bool) -> Publication {
        Publication {
            topic,
            payload,
            qos,
            retain,
            ..Publication::default()
        }
    }
}

/// The prefix of a shared subscription's filter (MQTT 5 §4.8.2).
pub(crate) const SHARE_PREFIX: &str = "$share/";

/// The filter a shared subscription `$share/GROUP/FILTER` matches topics
/// with; None when `filter` is not a well-formed shared subscription (a
/// group name that is empty or holds a wildcard, or no filter after it).
pub(crate) fn shared_filter(filter: &str) -> Option<&str> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, inner) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return None;
    }
    Some(inner)
}

/// A client completed CONNECT (already authenticated).
#[derive(Message)]
#[rtype(result = "ConnectAnswer")]
pub(crate) struct Connect {
    pub client_id: Arc<str>,
    /// Clean session (3.1.1) or clean start (5): begin a new session.
    pub clean_session: bool,
    /// How long the session outlives its connection, in seconds: 0 = not
    /// at all (a clean 3.1.1 session), None = for ever (a 3.1.1 session
    /// with clean session = 0).
    pub expiry: Option<u32>,
    /// The device that logged in; None = anonymous. Sessions belong to it.
    pub device_id: Option<String>,
    /// The client's ACL, which every delivery to it is checked against.
    pub acl: Arc<ClientAcl>,
    pub conn_id: u64,
    pub session: Recipient<Takeover>,
}

/// The router's answer to CONNECT.
pub(crate) enum ConnectAnswer {
    /// The session's delivery queue, and whether an earlier session was resumed.
    Connected {
        subscriber: Arc<Subscriber>,
        session_present: bool,
    },
    /// The client id belongs to a session of another device (`owner`; None =
    /// an anonymous client's): refused, and that session is untouched.
    NotOwner { owner: Option<String> },
    /// A new persistent session, and the device holds `max` already.
    TooManySessions { max: usize },
}

impl<A, M> actix::dev::MessageResponse<A, M> for ConnectAnswer
where
    A: Actor,
    M: Message<Result = ConnectAnswer>,
{
    fn handle(self, _ctx: &mut A::Context, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Granted filters to add for a client; answers, per filter, whether it is
/// in force (false: past `max_subscriptions_per_client`), once it is (and,
/// for a persistent session, committed).
#[derive(Message)]
#[rtype(result = "Result<Vec<bool>, StoreError>")]
pub(crate) struct Subscribe {
    pub client_id: Arc<str>,
    pub filters: Vec<(String, Sub)>,
}

/// Filters to remove for a client; answers, per filter, whether it had
/// that subscription, once the change is in force (and committed).
#[derive(Message)]
#[rtype(result = "Result<Vec<bool>, StoreError>")]
pub(crate) struct Unsubscribe {
    pub client_id: Arc<str>,
    pub filters: Vec<String>,
}

/// A connection ended. A clean session's subscriptions go with it; a
/// persistent one's stay for its expiry interval.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnected {
    pub client_id: Arc<str>,
    pub conn_id: u64,
    /// The session expiry interval as the client left it (MQTT 5's
    /// DISCONNECT may change it); None = as it connected.
    pub expiry: Option<u32>,
    /// A will to publish once `delay` has passed, unless the client comes
    /// back first or its session ends first (then it goes at once).
    pub will: Option<(Publication, Duration)>,
}

/// A device was deleted: its persistent sessions go too.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ForgetDevice {
    pub device_id: String,
}

/// A topic has been idle and asks to be retired.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TopicIdle {
    pub name: Arc<str>,
    pub addr: Addr<Topic>,
}

/// Registers a bridge's outgoing queue as a client that never connects:
/// `Subscribe` then adds its filters like any client's. Its queue is
/// written to `bridge_queue`, so nothing of it goes to the sessions tables.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AddBridge {
    /// `bridge:NAME` (see [`BRIDGE_CLIENT_PREFIX`]).
    pub client_id: Arc<str>,
    pub subscriber: Arc<Subscriber>,
    /// Its `[[acl]]` rules (`who = "bridge:NAME"`), for each delivery.
    pub acl: Arc<ClientAcl>,
}

/// How many topic actors and subscriptions there are, for `/metrics`.
#[derive(Message)]
#[rtype(result = "(usize, usize, usize)")]
pub(crate) struct Stats;

struct TopicEntry {
    addr: Addr<Topic>,
    /// When a session last got this address; see [`TOPIC_LEASE`].
    resolved_at: Instant,
}

struct ClientEntry {
    subscriber: Arc<Subscriber>,
    /// Its filters with their options (what is persisted, and its count
    /// for `max_subscriptions_per_client`).
    filters: HashMap<String, Sub>,
    /// The live connection, if any: its id and how to take it over.
    conn: Option<(u64, Recipient<Takeover>)>,
    /// The device the session belongs to (None = anonymous): only a
    /// connection of that device may resume, take over or clean it.
    owner: Option<String>,
    /// Decides each topic delivered to this client.
    acl: Arc<ClientAcl>,
    /// Its session expiry interval (seconds; None = never).
    expiry: Option<u32>,
    /// Counts its connections' ends and starts, so that a timer set when
    /// it left does nothing once it has come back.
    away: u64,
    /// Its will, waiting for its delay (MQTT 5) while it is away.
    will: Option<Publication>,
    /// A connection whose session a clean start ended while it was still
    /// open: its delayed will goes as soon as it reports its end.
    ended_conn: Option<u64>,
}

impl ClientEntry {
    fn new(subscriber: Arc<Subscriber>, owner: Option<String>, acl: Arc<ClientAcl>) -> ClientEntry {
        ClientEntry {
            subscriber,
            filters: HashMap::new(),
            conn: None,
            owner,
            acl,
            expiry: None,
            away: 0,
            will: None,
            ended_conn: None,
        }
    }
}

/// What the broker needs to build subscriber queues.
#[derive(Clone)]
pub(crate) struct QueueLimits {
    /// In-memory messages per connected subscriber before publishers are held back.
    pub capacity: usize,
    /// In-memory payload bytes per connected subscriber, likewise.
    pub max_bytes: usize,
    /// Messages kept in SQLite for a persistent session while it is away.
    pub max_queued: usize,
    pub slow_timeout: Duration,
}

/// The router's bounds on what clients can make grow.
#[derive(Clone)]
pub(crate) struct RouterLimits {
    pub queue: QueueLimits,
    /// Topic actors at once (`$SYS` topics aside).
    pub max_topics: usize,
    pub max_subscriptions_per_client: usize,
    /// Persistent sessions per owner (a device, or anonymous clients together).
    pub max_sessions_per_device: usize,
    /// The longest a session may outlive its connection (seconds; None =
    /// no cap): `[mqtt] max_session_expiry`.
    pub max_session_expiry: Option<u32>,
    pub retained: Arc<RetainedBudget>,
}

/// A persistent session as it is restored at start: its row, with the ACL
/// its device gets.
pub(crate) struct SavedSession {
    pub row: sessions::SessionRow,
    pub acl: Arc<ClientAcl>,
}

pub(crate) struct Router {
    /// Who subscribes to what: topic name to clients.
    trie: SubTrie<Sub>,
    /// The shared subscriptions: topic name to their keys
    /// (`$share/GROUP/FILTER`), and each key's members.
    shared: SubTrie<()>,
    groups: HashMap<Arc<str>, HashMap<Arc<str>, Sub>>,
    /// The topics with an actor (those with traffic) by name; and as a
    /// tree, those and the topics with a retained message, so that a filter
    /// finds the topics it matches without a scan of all of them.
    topics: HashMap<Arc<str>, TopicEntry>,
    names: NameTrie,
    /// The retained messages, shared with the topic actors (`retained.rs`).
    retained: Arc<RetainedTable>,
    /// How many of `topics` are the broker's own `$SYS` ones (not counted
    /// against `max_topics`).
    sys_topics: usize,
    clients: HashMap<Arc<str>, ClientEntry>,
    /// Persistent sessions per owner, for `max_sessions_per_device`.
    sessions_of: HashMap<Option<String>, usize>,
    /// Long operations waiting to run a slice at a time (see `jobs.rs`),
    /// with how many each client has queued.
    jobs: VecDeque<(Arc<str>, jobs::Job)>,
    queued_for: HashMap<Arc<str>, usize>,
    /// A `Tick` is on its way to run them.
    ticking: bool,
    /// Messages sent to topic actors in the current slice of jobs.
    sent: usize,
    /// This router's own address, to send itself `Tick`s.
    me: Option<Addr<Router>>,
    /// The arbiters (one per core) that topic actors are spread over.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    store: Store,
    limits: RouterLimits,
    /// Topic actors retired since the allocator was last trimmed, and
    /// whether a trim is on its way.
    retired: usize,
    trimming: bool,
}

/// Gives the memory freed by retired topic actors back to the system:
/// glibc keeps freed small allocations in its heaps otherwise, and the RSS
/// of a broker that had 100,000 topics with traffic would never come down.
fn trim_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // On a thread of its own: it walks every heap.
        let _ = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                // SAFETY: malloc_trim only returns free pages of glibc's own
                // heaps to the kernel; it takes the heaps' locks itself.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
    }
}

impl Router {
    pub(crate) fn new(store: Store, arbiters: Vec<ArbiterHandle>, limits: RouterLimits) -> Router {
        Router {
            trie: SubTrie::default(),
            shared: SubTrie::default(),
            groups: HashMap::new(),
            topics: HashMap::new(),
            names: NameTrie::default(),
            retained: Arc::new(RetainedTable::new(limits.retained.clone())),
            sys_topics: 0,
            clients: HashMap::new(),
            sessions_of: HashMap::new(),
            jobs: VecDeque::new(),
            queued_for: HashMap::new(),
            ticking: false,
            sent: 0,
            me: None,
            arbiters,
            next_arbiter: 0,
            store,
            limits,
            retired: 0,
            trimming: false,
        }
    }

    /// Loads what SQLite holds: persistent sessions with their subscriptions,
    /// and retained messages (into the table; no topic actor). Subscriptions
    /// that break a limit, and retained messages past the budget, are left
    /// out with a log line.
    pub(crate) fn restore(
        &mut self,
        ctx: &mut Context<Self>,
        saved: Vec<SavedSession>,
        retained: Vec<crate::store::retained::RetainedRow>,
        max_topic_levels: usize,
    ) {
        let now = crate::store::now_ms();
        for SavedSession { row, acl } in saved {
            let client: Arc<str> = row.client_id.into();
            let expiry = self.cap_expiry(row.expiry);
            // Away since it left, or since now if the broker stopped while it
            // was connected.
            let away_ms = row.disconnected_at.map_or(0, |at| (now - at).max(0));
            if expiry.is_some_and(|e| away_ms >= i64::from(e) * 1000) {
                tracing::info!(client_id = %client, "stored session expired while the broker was down");
                let c = client.clone();
                self.store
                    .write_detached("delete an expired session", move |conn| {
                        sessions::delete_session(conn, &c)
                    });
                continue;
            }
            let sub = self.new_subscriber(client.clone(), true);
            let mut entry = ClientEntry::new(sub, row.device_id, acl);
            for (f, options, id) in row.subscriptions {
                let matching = shared_filter(&f).unwrap_or(&f);
                let why = if crate::protocol::validate::check_topic_filter(matching).is_err()
                    || (f.starts_with(SHARE_PREFIX) && shared_filter(&f).is_none())
                {
                    Some("not a valid filter")
                } else if matching.split('/').count() > max_topic_levels {
                    Some("deeper than mqtt.max_topic_levels")
                } else if entry.filters.len() >= self.limits.max_subscriptions_per_client {
                    Some("past mqtt.max_subscriptions_per_client")
                } else {
                    None
                };
                if let Some(why) = why {
                    tracing::warn!(client_id = %client, filter_bytes = f.len(), levels = f.split('/').count(), why, "stored subscription dropped");
                    let c = client.clone();
                    self.store
                        .write_detached("drop a stored subscription", move |conn| {
                            sessions::remove_subscription(conn, &c, &f)
                        });
                    continue;
                }
                let s = Sub::from_stored(options, id);
                self.index(&client, &f, s);
                entry.filters.insert(f, s);
            }
            entry.expiry = expiry;
            *self.sessions_of.entry(entry.owner.clone()).or_default() += 1;
            self.clients.insert(client.clone(), entry);
            if let Some(e) = expiry {
                let left = Duration::from_millis((i64::from(e) * 1000 - away_ms).max(0) as u64);
                self.end_after(ctx, &client, left);
            }
        }
        let mut skipped = 0usize;
        for r in retained {
            let name: Arc<str> = r.topic.into();
            let kept = Retained::new(&r.payload, r.qos, r.properties, r.expires_at);
            if !self.retained.load(name.clone(), kept) {
                skipped += 1;
                continue;
            }
            self.names.insert(&name);
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "retained messages past mqtt.max_retained_messages or max_retained_bytes were not loaded (they stay in the database)"
            );
        }
    }

    /// A session expiry interval within `[mqtt] max_session_expiry`.
    fn cap_expiry(&self, expiry: Option<u32>) -> Option<u32> {
        match (expiry, self.limits.max_session_expiry) {
            (Some(e), Some(max)) => Some(e.min(max)),
            (None, max) => max,
            (e, None) => e,
        }
    }

    /// Puts a client's subscription into the index: a shared one into its
    /// group (and the group's key into the shared index), any other into
    /// the subscription tree.
    fn index(&mut self, client: &Arc<str>, filter: &str, sub: Sub) {
        match shared_filter(filter) {
            Some(inner) => {
                let key = match self.groups.get_key_value(filter) {
                    Some((k, _)) => k.clone(),
                    None => {
                        let key: Arc<str> = filter.into();
                        self.shared.insert(inner, &key, ());
                        self.groups.insert(key.clone(), HashMap::new());
                        key
                    }
                };
                if let Some(g) = self.groups.get_mut(&key) {
                    g.insert(client.clone(), sub);
                }
            }
            None => self.trie.insert(filter, client, sub),
        }
    }

    /// Takes a client's subscription out of the index; true when it was there.
    fn unindex(&mut self, client: &Arc<str>, filter: &str) -> bool {
        let Some(inner) = shared_filter(filter) else {
            return self.trie.remove(filter, client);
        };
        let Some(g) = self.groups.get_mut(filter) else {
            return false;
        };
        let had = g.remove(client).is_some();
        if g.is_empty() {
            self.groups.remove(filter);
            self.shared.remove(inner, filter);
        }
        had
    }

    /// The members of shared subscription `key` that may receive `topic`.
    fn members_for(&self, key: &str, topic: &str) -> Vec<Member> {
        let Some(g) = self.groups.get(key) else {
            return Vec::new();
        };
        let mut members: Vec<Member> = g
            .iter()
            .filter_map(|(client, s)| {
                let e = self.clients.get(client)?;
                e.acl.can_receive(topic).then(|| Member {
                    client: client.clone(),
                    reach: Reach {
                        qos: s.options.qos,
                        retain_as_published: s.options.retain_as_published,
                        ids: s.id.map(|i| Arc::from([i])),
                    },
                    subscriber: e.subscriber.clone(),
                })
            })
            .collect();
        // A stable order, so that round robin goes round.
        members.sort_by(|a, b| a.client.cmp(&b.client));
        members
    }

    fn new_subscriber(&self, client: Arc<str>, persistent: bool) -> Arc<Subscriber> {
        Subscriber::new(
            client,
            persistent,
            (self.limits.queue.capacity, self.limits.queue.max_bytes),
            self.limits.queue.max_queued,
            self.store.clone(),
        )
    }

    /// Starts the actor for topic `name` (which has none).
    fn create_topic(
        &mut self,
        router: Addr<Router>,
        name: Arc<str>,
        home: Option<usize>,
    ) -> Addr<Topic> {
        // One allocation of the name, shared with the table and the tree.
        let name = self.retained.key(&name).unwrap_or(name);
        let subscribers = grant::matches(&self.trie, &name)
            .into_iter()
            .filter_map(|(client, grant)| {
                let entry = self.clients.get(&client)?;
                entry
                    .acl
                    .can_receive(&name)
                    .then(|| (client, (grant, entry.subscriber.clone())))
            })
            .collect();
        let mut keys: Vec<Arc<str>> = Vec::new();
        self.shared
            .each_match(&name, |key, ()| keys.push(key.clone()));
        let shared = keys
            .into_iter()
            .map(|key| {
                let members = self.members_for(&key, &name);
                (key, members)
            })
            .filter(|(_, members)| !members.is_empty())
            .collect();
        let topic = Topic::new(
            name.clone(),
            subscribers,
            shared,
            self.store.clone(),
            router,
            self.limits.queue.slow_timeout,
            self.retained.clone(),
        );
        let addr = if self.arbiters.is_empty() {
            topic.start()
        } else {
            // Beside the publisher that asked for it: its publishes then
            // reach the topic without crossing a thread. Measured with
            // `brook-bench latency --qos 0` (p50 about 20 µs lower than
            // beside the subscriber). Otherwise spread round robin.
            let at = match home {
                Some(home) if home < self.arbiters.len() => home,
                _ => {
                    let at = self.next_arbiter % self.arbiters.len();
                    self.next_arbiter = self.next_arbiter.wrapping_add(1);
                    at
                }
            };
            Topic::start_in_arbiter(&self.arbiters[at], move |_| topic)
        };
        self.names.insert(&name);
        if name.starts_with("$SYS/") && !self.topics.contains_key(&name) {
            self.sys_topics += 1;
        }
        self.topics.insert(
            name,
            TopicEntry {
                addr: addr.clone(),
                resolved_at: Instant::now(),
            },
        );
        addr
    }

    /// Topics other than the broker's own `$SYS` ones, for `max_topics`.
    fn client_topics(&self) -> usize {
        self.topics.len() - self.sys_topics
    }

    /// Tells each topic in `names` what `client` now gets there: its highest
    /// grant among its filters matching the topic, if the ACL lets the topic
    /// through; `retained` holds the QoS to send a topic's retained message at.
    fn update_topics<'a>(
        &mut self,
        client: &Arc<str>,
        names: impl Iterator<Item = (&'a Arc<str>, Option<u8>)>,
    ) {
        let Some(entry) = self.clients.get(client) else {
            return;
        };
        let subscriber = entry.subscriber.clone();
        let acl = entry.acl.clone();
        for (name, retained_qos) in names {
            let actor = self.topics.get(name).map(|t| t.addr.clone());
            if actor.is_none() && retained_qos.is_none() {
                // No actor to tell, no retained message to send: a topic
                // actor started later finds the client in the index.
                continue;
            }
            let grant = if acl.can_receive(name) {
                grant::grant_of(&self.trie, name, client)
            } else {
                None
            };
            let addr = match actor {
                Some(addr) => addr,
                None => {
                    let (Some(want), Some(g)) = (retained_qos, grant.as_ref()) else {
                        continue;
                    };
                    // Nothing publishes to a topic without an actor: its
                    // retained message is queued from here, in order.
                    let Some(d) =
                        topic::retained_delivery(&self.retained, name, want, &g.all, &subscriber)
                    else {
                        self.forget_name_unless_retained(name);
                        continue;
                    };
                    match subscriber.push(d) {
                        queue::Push::Queued(c) => {
                            topic::answer(None, topic::Published::Done, c.into_iter().collect());
                            continue;
                        }
                        queue::Push::Dropped => continue,
                        queue::Push::Full(..) => {
                            // The queue is full: an actor for the topic waits
                            // for room (taking the topic's publishes after
                            // it), as it would for any message.
                            let Some(me) = self.me.clone() else { continue };
                            self.create_topic(me, name.clone(), None)
                        }
                    }
                }
            };
            self.sent += 1;
            addr.do_send(SetSubscriber {
                client: client.clone(),
                retained_qos: grant.as_ref().and(retained_qos),
                grant: grant.map(|g| (g, subscriber.clone())),
            });
        }
    }

    /// Takes `name` out of the tree of names when it has neither an actor
    /// nor a retained message (one that expired, say).
    fn forget_name_unless_retained(&mut self, name: &str) {
        if !self.topics.contains_key(name) && !self.retained.contains(name) {
            self.names.remove(name);
        }
    }

    /// Tells each topic in `names` who the members of shared subscription
    /// `key` are there now.
    fn update_group<'a>(&mut self, key: &Arc<str>, names: impl Iterator<Item = &'a Arc<str>>) {
        for name in names {
            let Some(t) = self.topics.get(name) else {
                continue;
            };
            let addr = t.addr.clone();
            let members = self.members_for(key, name);
            self.sent += 1;
            addr.do_send(SetShared {
                key: key.clone(),
                members,
            });
        }
    }

    /// Removes every subscription of a client, and the client.
    fn forget(&mut self, client: &Arc<str>) {
        let Some(entry) = self.clients.remove(client) else {
            return;
        };
        if entry.subscriber.persistent {
            if let Some(n) = self.sessions_of.get_mut(&entry.owner) {
                *n -= 1;
                if *n == 0 {
                    self.sessions_of.remove(&entry.owner);
                }
            }
        }
        // Topics that list it drop it when they next look: leaving costs
        // no message to each topic it subscribed to.
        entry.subscriber.end();
        if !entry.filters.is_empty() {
            let filters = entry.filters.into_keys().collect();
            self.forget_filters(client.clone(), filters);
        }
    }

    fn connect_now(&mut self, msg: Connect, ctx: &mut Context<Self>) -> ConnectAnswer {
        let client = msg.client_id.clone();
        // What this client id asked for before is in force before it connects again.
        self.settle(&client);
        if let Some(e) = self.clients.get(&client) {
            // Checked again: the session may have changed hands meanwhile.
            if e.owner != msg.device_id {
                return ConnectAnswer::NotOwner {
                    owner: e.owner.clone(),
                };
            }
        }
        let expiry = self.cap_expiry(msg.expiry);
        let persistent = expiry != Some(0);
        let resumable = self
            .clients
            .get(&client)
            .is_some_and(|e| e.subscriber.persistent && !msg.clean_session);
        if !resumable {
            let was_persistent = self
                .clients
                .get(&client)
                .is_some_and(|e| e.subscriber.persistent);
            let held = self.sessions_of.get(&msg.device_id).copied().unwrap_or(0);
            let max = self.limits.max_sessions_per_device;
            if persistent && !was_persistent && held >= max {
                tracing::warn!(client_id = %client, device = msg.device_id.as_deref(), max, "mqtt.max_sessions_per_device reached");
                return ConnectAnswer::TooManySessions { max };
            }
            // A clean start: a will still waiting goes now (MQTT 5 §3.1.3.2.2),
            // and so does the will of a connection still open, taken over
            // here, once it has reported its end.
            self.send_will(ctx, &client);
            let open = self
                .clients
                .get(&client)
                .and_then(|e| e.conn.as_ref().map(|(id, _)| *id));
            self.forget(&client);
            if was_persistent {
                let c = client.clone();
                self.store.write_detached("delete session", move |conn| {
                    sessions::delete_session(conn, &c)
                });
            }
            let sub = self.new_subscriber(client.clone(), persistent);
            if persistent {
                *self.sessions_of.entry(msg.device_id.clone()).or_default() += 1;
            }
            let mut entry = ClientEntry::new(sub, msg.device_id.clone(), msg.acl.clone());
            entry.ended_conn = open.filter(|id| *id != msg.conn_id);
            self.clients.insert(client.clone(), entry);
        }
        // `clients` holds the entry: it was either resumable or inserted above.
        let Some(entry) = self.clients.get_mut(&client) else {
            unreachable!("client entry inserted above")
        };
        // Back in time: its session does not end, its will is not sent.
        entry.away += 1;
        entry.will = None;
        entry.expiry = expiry;
        if entry.subscriber.persistent {
            let c = client.clone();
            let device = msg.device_id.clone();
            let at = crate::store::now_ms();
            self.store.write_detached("save session", move |conn| {
                sessions::upsert_session(conn, &c, device.as_deref(), expiry, at)
            });
        }
        let alive = msg.session.connected();
        entry.conn = Some((msg.conn_id, msg.session));
        let subscriber = entry.subscriber.clone();
        // The same device may have other tags now: what it is given follows.
        if entry.acl != msg.acl {
            entry.acl = msg.acl;
            let mut touched: Vec<(Arc<str>, jobs::Touch)> = Vec::new();
            for f in entry.filters.keys() {
                match shared_filter(f) {
                    Some(inner) => {
                        if let Some((key, _)) = self.groups.get_key_value(f.as_str()) {
                            self.names.for_each_match(inner, |n| {
                                touched.push((n.clone(), jobs::Touch::Group(key.clone())));
                            });
                        }
                    }
                    None => self.names.for_each_match(f, |n| {
                        touched.push((n.clone(), jobs::Touch::Client(None)));
                    }),
                }
            }
            touched.sort_by(|a, b| a.0.cmp(&b.0));
            touched.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            self.announce(client.clone(), touched);
        }
        if !alive {
            // The connection ended while its CONNECT was on its way here.
            self.disconnected(ctx, &client, msg.conn_id, None, None);
        }
        ConnectAnswer::Connected {
            subscriber,
            session_present: resumable,
        }
    }

    /// A connection ended: its entry forgets it, and a session that ends
    /// with it goes; a persistent one stays for its expiry interval.
    fn disconnected(
        &mut self,
        ctx: &mut Context<Self>,
        client: &Arc<str>,
        conn_id: u64,
        expiry: Option<u32>,
        will: Option<(Publication, Duration)>,
    ) {
        let capped = expiry.and_then(|e| self.cap_expiry(Some(e)));
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if entry.conn.as_ref().map(|(id, _)| *id) != Some(conn_id) {
            // A newer connection has taken over. If it started clean, the
            // session this connection had has ended: its will goes now.
            if entry.ended_conn == Some(conn_id) {
                entry.ended_conn = None;
                if let Some((will, _)) = will {
                    publish_later(ctx, will);
                }
            }
            return;
        }
        entry.conn = None;
        entry.away += 1;
        if expiry.is_some() {
            entry.expiry = capped;
        }
        let ends_now = !entry.subscriber.persistent || entry.expiry == Some(0);
        let delay = match will {
            Some((will, delay)) => {
                entry.will = Some(will);
                delay
            }
            None => Duration::ZERO,
        };
        if ends_now {
            self.end_session(ctx, client);
            return;
        }
        let expiry = entry.expiry;
        let away = entry.away;
        let c = client.clone();
        let at = crate::store::now_ms();
        self.store.write_detached("session left", move |conn| {
            sessions::set_disconnected(conn, &c, expiry, Some(at))
        });
        if let Some(e) = expiry {
            self.end_after(ctx, client, Duration::from_secs(u64::from(e)));
        }
        if self.clients.get(client).is_some_and(|e| e.will.is_some()) {
            let c = client.clone();
            ctx.run_later(delay, move |act, ctx| {
                if act.clients.get(&c).is_some_and(|e| e.away == away) {
                    act.send_will(ctx, &c);
                }
            });
        }
    }

    /// Ends `client`'s session after `after`, unless it connects again first.
    fn end_after(&mut self, ctx: &mut Context<Self>, client: &Arc<str>, after: Duration) {
        let Some(away) = self.clients.get(client).map(|e| e.away) else {
            return;
        };
        let c = client.clone();
        ctx.run_later(after, move |act, ctx| {
            if act
                .clients
                .get(&c)
                .is_some_and(|e| e.away == away && e.conn.is_none())
            {
                tracing::info!(client_id = %c, "session expired");
                act.end_session(ctx, &c);
            }
        });
    }

    /// A session ends: its will (if still waiting) goes, then the session
    /// with its subscriptions and stored queue.
    fn end_session(&mut self, ctx: &mut Context<Self>, client: &Arc<str>) {
        self.send_will(ctx, client);
        let persistent = self
            .clients
            .get(client)
            .is_some_and(|e| e.subscriber.persistent);
        self.forget(client);
        if persistent {
            let c = client.clone();
            self.store.write_detached("delete session", move |conn| {
                sessions::delete_session(conn, &c)
            });
        }
    }

    /// Publishes `client`'s waiting will, if it has one.
    fn send_will(&mut self, ctx: &mut Context<Self>, client: &Arc<str>) {
        if let Some(will) = self.clients.get_mut(client).and_then(|e| e.will.take()) {
            publish_later(ctx, will);
        }
    }
}

/// Publishes `will` once the router has finished what it is doing.
fn publish_later(ctx: &mut Context<Router>, will: Publication) {
    let router = ctx.address();
    actix::spawn(async move {
        publish(&router, will).await;
    });
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
        self.me = Some(ctx.address());
        if !self.jobs.is_empty() {
            self.ticking = true;
            ctx.notify(jobs::Tick);
        }
        ctx.run_interval(SWEEP_EVERY, |act, ctx| {
            let gone: Vec<(Arc<str>, u64)> = act
                .clients
                .iter()
                .filter_map(|(c, e)| {
                    let (id, session) = e.conn.as_ref()?;
                    (!session.connected()).then(|| (c.clone(), *id))
                })
                .collect();
            for (client, conn_id) in gone {
                tracing::debug!(client_id = %client, "connection ended unannounced");
                act.disconnected(ctx, &client, conn_id, None, None);
            }
        });
    }
}

impl Handler<Resolve> for Router {
    type Result = MessageResult<Resolve>;

    fn handle(&mut self, msg: Resolve, ctx: &mut Self::Context) -> Self::Result {
        if let Some(t) = self.topics.get_mut(&msg.0) {
            if t.addr.connected() {
                t.resolved_at = Instant::now();
                return MessageResult(Some(t.addr.clone()));
            }
        }
        let sys = msg.0.starts_with("$SYS/");
        // A retained topic gets its actor whatever the count: retained
        // messages have their own bound.
        if !sys && self.client_topics() >= self.limits.max_topics && !self.retained.contains(&msg.0)
        {
            METRICS.topics_refused.inc();
            return MessageResult(None);
        }
        MessageResult(Some(self.create_topic(ctx.address(), msg.0, msg.1)))
    }
}

impl Handler<Connect> for Router {
    type Result = ResponseActFuture<Self, ConnectAnswer>;

    fn handle(&mut self, msg: Connect, _ctx: &mut Self::Context) -> Self::Result {
        let existing = self.clients.get(&msg.client_id);
        if let Some(e) = existing.filter(|e| e.owner != msg.device_id) {
            let owner = e.owner.clone();
            return Box::pin(fut::ready(ConnectAnswer::NotOwner { owner }));
        }
        let old = existing.and_then(|e| e.conn.clone());
        Box::pin(
            async move {
                if let Some((_, old)) = old {
                    // The old connection detaches before the new one attaches,
                    // so its unacknowledged messages are known to be resent.
                    let _ = tokio::time::timeout(Duration::from_secs(2), old.send(Takeover)).await;
                }
            }
            .into_actor(self)
            .map(move |_, act, ctx| act.connect_now(msg, ctx)),
        )
    }
}

impl Handler<Subscribe> for Router {
    type Result = ResponseFuture<Result<Vec<bool>, StoreError>>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let n = msg.filters.len();
        self.subscribe_job(msg.client_id, msg.filters, tx);
        Box::pin(async move {
            let Ok((in_force, commit)) = rx.await else {
                return Ok(vec![false; n]);
            };
            if let Some(commit) = commit {
                commit.await?;
            }
            Ok(in_force)
        })
    }
}

impl Handler<Unsubscribe> for Router {
    type Result = ResponseFuture<Result<Vec<bool>, StoreError>>;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let n = msg.filters.len();
        self.unsubscribe_job(msg.client_id, msg.filters, tx);
        Box::pin(async move {
            let Ok((had, commit)) = rx.await else {
                return Ok(vec![false; n]);
            };
            if let Some(commit) = commit {
                commit.await?;
            }
            Ok(had)
        })
    }
}

impl Handler<Disconnected> for Router {
    type Result = ();

    fn handle(&mut self, msg: Disconnected, ctx: &mut Self::Context) {
        self.disconnected(ctx, &msg.client_id, msg.conn_id, msg.expiry, msg.will);
    }
}

impl Handler<ForgetDevice> for Router {
    type Result = ();

    fn handle(&mut self, msg: ForgetDevice, _ctx: &mut Self::Context) {
        let owned: Vec<Arc<str>> = self
            .clients
            .iter()
            .filter(|(_, e)| e.owner.as_deref() == Some(msg.device_id.as_str()))
            .map(|(c, _)| c.clone())
            .collect();
        for client in owned {
            let persistent = self
                .clients
                .get(&client)
                .is_some_and(|e| e.subscriber.persistent);
            self.forget(&client);
            if persistent {
                self.store.write_detached("delete session", move |conn| {
                    sessions::delete_session(conn, &client)
                });
            }
        }
    }
}

impl Handler<TopicIdle> for Router {
    type Result = ();

    fn handle(&mut self, msg: TopicIdle, ctx: &mut Self::Context) {
        let Some(t) = self.topics.get(&msg.name) else {
            return;
        };
        if t.addr != msg.addr || t.resolved_at.elapsed() < TOPIC_LEASE * 2 {
            return;
        }
        self.topics.remove(&msg.name);
        // Its retained message (if any) stays, in the table and the tree.
        self.forget_name_unless_retained(&msg.name);
        if msg.name.starts_with("$SYS/") {
            self.sys_topics -= 1;
        }
        msg.addr.do_send(Retire);
        self.retired += 1;
        if self.retired >= TRIM_AFTER_RETIRED && !self.trimming {
            self.trimming = true;
            ctx.run_later(TRIM_DELAY, |act, _| {
                act.trimming = false;
                act.retired = 0;
                trim_allocator();
            });
        }
    }
}

impl Handler<AddBridge> for Router {
    type Result = ();

    fn handle(&mut self, msg: AddBridge, _ctx: &mut Self::Context) {
        self.forget(&msg.client_id);
        // No device owns it; no connection can claim it either
        // (session::connect refuses `bridge:` client ids).
        let entry = ClientEntry::new(msg.subscriber, None, msg.acl);
        self.clients.insert(msg.client_id, entry);
    }
}

impl Handler<Stats> for Router {
    type Result = MessageResult<Stats>;

    fn handle(&mut self, _: Stats, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult((self.topics.len(), self.trie.len(), self.clients.len()))
    }
}

/// Publishes a message from inside the broker (a will, `$SYS`, an action);
/// resolves to whether it was queued and stored as required.
pub(crate) async fn publish(router: &Addr<Router>, m: Publication) -> bool {
    let Ok(Some(addr)) = router.send(Resolve(m.topic, home::current())).await else {
        return false;
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    addr.do_send(topic::Publish {
        payload: m.payload,
        qos: m.qos,
        retain: m.retain,
        properties: m.properties,
        expires_at: m.expires_at,
        done: Some(done),
        origin: None,
    });
    answer
        .await
        .is_ok_and(|outcome| outcome != topic::Published::Failed)
}
