//! The router: the one actor that owns the subscription index and knows every
//! client session, connected or persistent and away.
//!
//! Sessions ask it for a topic actor's address (`Resolve`) the first time
//! they publish to a topic and then talk to that topic directly; they tell it
//! of CONNECT (session takeover and resumption happen here), SUBSCRIBE,
//! UNSUBSCRIBE and disconnection. It keeps each active topic actor's list of
//! subscribers up to date, so that a publish never consults the index.

pub mod acl;
pub mod topic;
pub mod trie;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use crate::session::subscriber::Subscriber;
use crate::store::{sessions, Store, StoreError};
use topic::{Retire, SetSubscriber, Topic};
use trie::{filter_matches, SubTrie};

/// How long a session may keep using a topic address it resolved without
/// asking again. The router retires a topic only when nobody resolved it for
/// longer than this, so no session can still send to a stopped topic.
pub const TOPIC_LEASE: Duration = Duration::from_secs(30);

/// Client ids that start with this belong to bridges (`bridge:NAME`): a
/// bridge's outgoing queue is registered under such an id, and a device may
/// not connect with one (it would take that queue over).
pub const BRIDGE_CLIENT_PREFIX: &str = "bridge:";

/// The address of the actor for a topic name, created if needed.
#[derive(Message)]
#[rtype(result = "Addr<Topic>")]
pub struct Resolve(pub Arc<str>);

/// Asks an existing connection to hand its session over and close: another
/// connection with the same client id has arrived. Answers once the
/// connection has detached from its session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Takeover;

/// A client completed CONNECT (already authenticated).
#[derive(Message)]
#[rtype(result = "Connected")]
pub struct Connect {
    pub client_id: Arc<str>,
    pub clean_session: bool,
    pub device_id: Option<String>,
    pub conn_id: u64,
    pub session: Recipient<Takeover>,
}

/// The router's answer to CONNECT: the session's delivery queue and whether
/// an earlier session was resumed.
pub struct Connected {
    pub subscriber: Arc<Subscriber>,
    pub session_present: bool,
}

impl<A, M> actix::dev::MessageResponse<A, M> for Connected
where
    A: Actor,
    M: Message<Result = Connected>,
{
    fn handle(self, _ctx: &mut A::Context, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        if let Some(tx) = tx {
            let _ = tx.send(self);
        }
    }
}

/// Granted filters to add for a client; answers when they are in force (and,
/// for a persistent session, committed).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Subscribe {
    pub client_id: Arc<str>,
    pub filters: Vec<(String, u8)>,
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Unsubscribe {
    pub client_id: Arc<str>,
    pub filters: Vec<String>,
}

/// A connection ended. A clean session's subscriptions go with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected {
    pub client_id: Arc<str>,
    pub conn_id: u64,
}

/// A topic has been idle and asks to be retired.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TopicIdle {
    pub name: Arc<str>,
    pub addr: Addr<Topic>,
}

/// Registers a bridge's outgoing queue as a client that never connects:
/// `Subscribe` then adds its filters like any client's. Its queue is
/// written to `bridge_queue`, so nothing of it goes to the sessions tables.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddBridge {
    /// `bridge:NAME` (see [`BRIDGE_CLIENT_PREFIX`]).
    pub client_id: Arc<str>,
    pub subscriber: Arc<Subscriber>,
}

/// How many topic actors and subscriptions there are, for `/metrics`.
#[derive(Message)]
#[rtype(result = "(usize, usize, usize)")]
pub struct Stats;

struct TopicEntry {
    addr: Addr<Topic>,
    /// When a session last got this address; see [`TOPIC_LEASE`].
    resolved_at: Instant,
}

struct ClientEntry {
    subscriber: Arc<Subscriber>,
    /// Its filters and granted QoS, to recompute a topic's grant on change.
    filters: HashMap<String, u8>,
    /// The live connection, if any: its id and how to take it over.
    conn: Option<(u64, Recipient<Takeover>)>,
}

/// What the broker needs to build subscriber queues.
#[derive(Clone)]
pub struct QueueLimits {
    /// In-memory messages per connected subscriber before publishers are held back.
    pub capacity: usize,
    /// Messages kept in SQLite for a persistent session while it is away.
    pub max_queued: usize,
    pub slow_timeout: Duration,
}

pub struct Router {
    trie: SubTrie,
    topics: HashMap<Arc<str>, TopicEntry>,
    clients: HashMap<Arc<str>, ClientEntry>,
    /// The arbiters (one per core) that topic actors are spread over.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    store: Store,
    limits: QueueLimits,
}

impl Router {
    pub fn new(store: Store, arbiters: Vec<ArbiterHandle>, limits: QueueLimits) -> Router {
        Router {
            trie: SubTrie::default(),
            topics: HashMap::new(),
            clients: HashMap::new(),
            arbiters,
            next_arbiter: 0,
            store,
            limits,
        }
    }

    /// Loads what SQLite holds: persistent sessions with their subscriptions,
    /// and retained messages (each gets its topic actor now).
    pub fn restore(
        &mut self,
        ctx: &mut Context<Self>,
        saved: Vec<sessions::SessionRow>,
        retained: Vec<crate::store::retained::RetainedRow>,
    ) {
        for s in saved {
            let client: Arc<str> = s.client_id.into();
            let sub = self.new_subscriber(client.clone(), true);
            let mut filters = HashMap::new();
            for (f, q) in s.subscriptions {
                self.trie.insert(&f, &client, q);
                filters.insert(f, q);
            }
            self.clients.insert(
                client,
                ClientEntry {
                    subscriber: sub,
                    filters,
                    conn: None,
                },
            );
        }
        for r in retained {
            let name: Arc<str> = r.topic.into();
            self.create_topic(ctx, name, Some((r.payload, r.qos)));
        }
    }

    fn new_subscriber(&self, client: Arc<str>, persistent: bool) -> Arc<Subscriber> {
        Subscriber::new(
            client,
            persistent,
            self.limits.capacity,
            self.limits.max_queued,
            self.store.clone(),
        )
    }

    fn create_topic(
        &mut self,
        ctx: &mut Context<Self>,
        name: Arc<str>,
        retained: Option<(Bytes, u8)>,
    ) -> Addr<Topic> {
        let subscribers = self
            .trie
            .matches(&name)
            .into_iter()
            .filter_map(|(client, qos)| {
                let sub = self.clients.get(&client)?.subscriber.clone();
                Some((client, (qos, sub)))
            })
            .collect();
        let topic = Topic::new(
            name.clone(),
            retained,
            subscribers,
            self.store.clone(),
            ctx.address(),
            self.limits.slow_timeout,
        );
        let addr = if self.arbiters.is_empty() {
            topic.start()
        } else {
            let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
            self.next_arbiter = self.next_arbiter.wrapping_add(1);
            Topic::start_in_arbiter(arbiter, move |_| topic)
        };
        self.topics.insert(
            name,
            TopicEntry {
                addr: addr.clone(),
                resolved_at: Instant::now(),
            },
        );
        addr
    }

    /// The highest QoS `client` was granted among its filters matching `topic`.
    fn grant_for(entry: &ClientEntry, topic: &str) -> Option<u8> {
        entry
            .filters
            .iter()
            .filter(|(f, _)| filter_matches(f, topic))
            .map(|(_, q)| *q)
            .max()
    }

    /// Removes every subscription of a client, and the client.
    fn forget(&mut self, client: &Arc<str>) {
        let Some(entry) = self.clients.remove(client) else {
            return;
        };
        for f in entry.filters.keys() {
            self.trie.remove(f, client);
        }
        if entry.filters.is_empty() {
            return;
        }
        for (name, t) in &self.topics {
            if entry.filters.keys().any(|f| filter_matches(f, name)) {
                t.addr.do_send(SetSubscriber {
                    client: client.clone(),
                    grant: None,
                    retained_qos: None,
                });
            }
        }
    }

    fn connect_now(&mut self, msg: Connect) -> Connected {
        let client = msg.client_id.clone();
        let resumable = self
            .clients
            .get(&client)
            .is_some_and(|e| e.subscriber.persistent && !msg.clean_session);
        if !resumable {
            let was_persistent = self
                .clients
                .get(&client)
                .is_some_and(|e| e.subscriber.persistent);
            self.forget(&client);
            if was_persistent {
                let c = client.clone();
                self.store.write_detached("delete session", move |conn| {
                    sessions::delete_session(conn, &c)
                });
            }
            let sub = self.new_subscriber(client.clone(), !msg.clean_session);
            self.clients.insert(
                client.clone(),
                ClientEntry {
                    subscriber: sub,
                    filters: HashMap::new(),
                    conn: None,
                },
            );
            if !msg.clean_session {
                let c = client.clone();
                let device = msg.device_id.clone();
                let at = crate::store::now_ms();
                self.store.write_detached("save session", move |conn| {
                    sessions::upsert_session(conn, &c, device.as_deref(), at)
                });
            }
        }
        // `clients` holds the entry: it was either resumable or inserted above.
        let Some(entry) = self.clients.get_mut(&client) else {
            unreachable!("client entry inserted above")
        };
        entry.conn = Some((msg.conn_id, msg.session));
        Connected {
            subscriber: entry.subscriber.clone(),
            session_present: resumable,
        }
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl Handler<Resolve> for Router {
    type Result = MessageResult<Resolve>;

    fn handle(&mut self, msg: Resolve, ctx: &mut Self::Context) -> Self::Result {
        if let Some(t) = self.topics.get_mut(&msg.0) {
            if t.addr.connected() {
                t.resolved_at = Instant::now();
                return MessageResult(t.addr.clone());
            }
        }
        MessageResult(self.create_topic(ctx, msg.0, None))
    }
}

impl Handler<Connect> for Router {
    type Result = ResponseActFuture<Self, Connected>;

    fn handle(&mut self, msg: Connect, _ctx: &mut Self::Context) -> Self::Result {
        let old = self
            .clients
            .get(&msg.client_id)
            .and_then(|e| e.conn.clone());
        Box::pin(
            async move {
                if let Some((_, old)) = old {
                    // The old connection detaches before the new one attaches,
                    // so its unacknowledged messages are known to be resent.
                    let _ = tokio::time::timeout(Duration::from_secs(2), old.send(Takeover)).await;
                }
            }
            .into_actor(self)
            .map(move |_, act, _ctx| act.connect_now(msg)),
        )
    }
}

impl Handler<Subscribe> for Router {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let Some(entry) = self.clients.get_mut(&msg.client_id) else {
            return Box::pin(async { Ok(()) });
        };
        for (f, q) in &msg.filters {
            self.trie.insert(f, &msg.client_id, *q);
            entry.filters.insert(f.clone(), *q);
        }
        for (name, t) in &self.topics {
            // The retained message is sent once per matching filter in the
            // request, at that filter's QoS (the highest if several match).
            let Some(want) = msg
                .filters
                .iter()
                .filter(|(f, _)| filter_matches(f, name))
                .map(|(_, q)| *q)
                .max()
            else {
                continue;
            };
            let grant = Self::grant_for(entry, name).unwrap_or(want);
            t.addr.do_send(SetSubscriber {
                client: msg.client_id.clone(),
                grant: Some((grant, entry.subscriber.clone())),
                retained_qos: Some(want),
            });
        }
        if !entry.subscriber.persistent {
            return Box::pin(async { Ok(()) });
        }
        let client = msg.client_id.clone();
        let filters = msg.filters;
        Box::pin(self.store.write(move |c| {
            for (f, q) in &filters {
                sessions::add_subscription(c, &client, f, *q)?;
            }
            Ok(())
        }))
    }
}

impl Handler<Unsubscribe> for Router {
    type Result = ResponseFuture<Result<(), StoreError>>;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) -> Self::Result {
        let Some(entry) = self.clients.get_mut(&msg.client_id) else {
            return Box::pin(async { Ok(()) });
        };
        for f in &msg.filters {
            self.trie.remove(f, &msg.client_id);
            entry.filters.remove(f);
        }
        for (name, t) in &self.topics {
            if msg.filters.iter().any(|f| filter_matches(f, name)) {
                let grant = Self::grant_for(entry, name).map(|q| (q, entry.subscriber.clone()));
                t.addr.do_send(SetSubscriber {
                    client: msg.client_id.clone(),
                    grant,
                    retained_qos: None,
                });
            }
        }
        if !entry.subscriber.persistent {
            return Box::pin(async { Ok(()) });
        }
        let client = msg.client_id.clone();
        let filters = msg.filters;
        Box::pin(self.store.write(move |c| {
            for f in &filters {
                sessions::remove_subscription(c, &client, f)?;
            }
            Ok(())
        }))
    }
}

impl Handler<Disconnected> for Router {
    type Result = ();

    fn handle(&mut self, msg: Disconnected, _ctx: &mut Self::Context) {
        let Some(entry) = self.clients.get_mut(&msg.client_id) else {
            return;
        };
        if entry.conn.as_ref().map(|(id, _)| *id) != Some(msg.conn_id) {
            return; // a newer connection has taken over
        }
        entry.conn = None;
        if !entry.subscriber.persistent {
            self.forget(&msg.client_id);
        }
    }
}

impl Handler<TopicIdle> for Router {
    type Result = ();

    fn handle(&mut self, msg: TopicIdle, _ctx: &mut Self::Context) {
        let Some(t) = self.topics.get(&msg.name) else {
            return;
        };
        if t.addr != msg.addr || t.resolved_at.elapsed() < TOPIC_LEASE * 2 {
            return;
        }
        self.topics.remove(&msg.name);
        msg.addr.do_send(Retire);
    }
}

impl Handler<AddBridge> for Router {
    type Result = ();

    fn handle(&mut self, msg: AddBridge, _ctx: &mut Self::Context) {
        self.forget(&msg.client_id);
        self.clients.insert(
            msg.client_id,
            ClientEntry {
                subscriber: msg.subscriber,
                filters: HashMap::new(),
                conn: None,
            },
        );
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
pub async fn publish(
    router: &Addr<Router>,
    topic: Arc<str>,
    payload: Bytes,
    qos: u8,
    retain: bool,
) -> bool {
    let Ok(addr) = router.send(Resolve(topic)).await else {
        return false;
    };
    let (done, answer) = tokio::sync::oneshot::channel();
    addr.do_send(topic::Publish {
        payload,
        qos,
        retain,
        done: Some(done),
        origin: None,
    });
    answer.await.unwrap_or(false)
}
