//! One actor per topic name with traffic: it fans each publish out to the
//! clients subscribed, in the order publishes arrive, so order is kept per
//! topic and publisher, and it changes the topic's retained message in the
//! shared [`RetainedTable`] (which holds retained messages whether or not
//! their topic has an actor).
//!
//! The router tells it who subscribes (with the highest QoS each client was
//! granted among its matching filters); sessions send it publishes directly,
//! through an address the router gave them. When a subscriber's queue is full
//! the topic stops taking messages (it `wait`s) until there is room or
//! `slow_subscriber_timeout` has passed since the queue filled; its publishers'
//! acknowledgements wait meanwhile, which holds them back.
//!
//! A retained message on subscribe goes through the subscriber's bounded
//! queue like any other message (waiting for room the same way). Retained
//! messages count against the broker-wide budget (see `retained.rs`).
//!
//! Each client gets one copy of a message however many of its subscriptions
//! match, as its [`Grant`] says (the highest QoS, every subscription
//! identifier; none of its own publishes through No Local subscriptions).
//! Each shared subscription (`$share/GROUP/FILTER`) matching the topic gets
//! one copy too, for one of its members, chosen round robin: the next
//! member with room, else the next one connected, else the next whose
//! session is persistent (its queue in SQLite keeps it).
//!
//! A topic with no traffic for a while asks the router to retire it (its
//! retained message stays in the table); the router agrees only once no
//! session can still hold its address (see `router::TOPIC_LEASE`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::grant::{Grant, Reach};
use super::retained::{Found, RetainedCopy, RetainedTable};
use super::{Router, TopicIdle};
use crate::metrics::METRICS;
use crate::protocol::PublishProperties;
use crate::router::queue::{next_seq, Delivery, Push, Room, Subscriber};
use crate::store::{now_ms, retained, Store, StoreError};

/// How long a topic may see no traffic before it asks to be retired.
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// A publish to this topic. `done` answers once every subscriber has the
/// message queued and everything that must be durable is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish {
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 properties, forwarded unchanged.
    pub properties: Option<Arc<PublishProperties>>,
    /// Unix ms when its message expiry interval ends; None = never.
    pub expires_at: Option<i64>,
    pub done: Option<oneshot::Sender<Published>>,
    /// The client (or bridge) that published it: it gets a copy only
    /// through subscriptions without No Local, and a bridge never gets its
    /// own incoming messages back. None for the broker's own publishes.
    pub origin: Option<Arc<str>>,
}

/// What came of a [`Publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Queued for every subscriber, and committed where it must be.
    Done,
    /// Nobody subscribes to it (MQTT 5's PUBACK 0x10).
    NoSubscribers,
    /// Delivered, but not retained: a retained limit was reached.
    RetainRefused,
    /// A database write failed: the publisher gets no acknowledgement.
    Failed,
}

/// Sets (or with `grant: None` removes) what a client gets of this topic;
/// with `retained_qos` set, the retained message (if any) is sent to it at
/// the lower of that QoS and the message's.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetSubscriber {
    pub client: Arc<str>,
    pub grant: Option<(Grant, Arc<Subscriber>)>,
    pub retained_qos: Option<u8>,
}

/// One member of a shared subscription, as a topic sees it.
#[derive(Clone)]
pub(crate) struct Member {
    pub client: Arc<str>,
    pub reach: Reach,
    pub subscriber: Arc<Subscriber>,
}

/// Sets the members of shared subscription `key` (`$share/GROUP/FILTER`)
/// that may receive this topic; none removes it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetShared {
    pub key: Arc<str>,
    pub members: Vec<Member>,
}

/// A shared subscription's members here, and whose turn is next.
struct Group {
    members: Vec<Member>,
    next: usize,
}

impl Group {
    /// The member this message goes to (see the module's description).
    fn pick(&mut self) -> Option<&Member> {
        let n = self.members.len();
        let order = |next: usize| (0..n).map(move |k| (next + k) % n);
        // Asked member by member: the next one in turn is usually free.
        let room = |i: usize| self.members[i].subscriber.room();
        let chosen = order(self.next)
            .find(|&i| room(i) == Room::Free)
            .or_else(|| order(self.next).find(|&i| room(i) == Room::Full))
            .or_else(|| {
                order(self.next).find(|&i| {
                    let s = &self.members[i].subscriber;
                    s.persistent && !s.is_gone()
                })
            })?;
        self.next = (chosen + 1) % n;
        self.members.get(chosen)
    }
}

/// The router agrees that this topic may stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

pub(crate) struct Topic {
    name: Arc<str>,
    /// Whether retained messages here are stored (all but `$SYS`).
    stored: bool,
    /// Every topic's retained message, this one's among them.
    table: Arc<RetainedTable>,
    /// Who gets a copy, and how.
    subscribers: HashMap<Arc<str>, (Grant, Arc<Subscriber>)>,
    /// The shared subscriptions matching this topic, by key.
    shared: HashMap<Arc<str>, Group>,
    /// When the last publish or subscription change came; for retiring.
    last_activity: Instant,
    store: Store,
    router: Addr<Router>,
    slow_timeout: Duration,
}

impl Topic {
    #[allow(clippy::too_many_arguments)] // its parts, named once, by the router
    pub(crate) fn new(
        name: Arc<str>,
        subscribers: HashMap<Arc<str>, (Grant, Arc<Subscriber>)>,
        shared: Vec<(Arc<str>, Vec<Member>)>,
        store: Store,
        router: Addr<Router>,
        slow_timeout: Duration,
        table: Arc<RetainedTable>,
    ) -> Topic {
        Topic {
            stored: !name.starts_with("$SYS/"),
            table,
            name,
            subscribers,
            shared: shared
                .into_iter()
                .map(|(key, members)| (key, Group { members, next: 0 }))
                .collect(),
            last_activity: Instant::now(),
            store,
            router,
            slow_timeout,
        }
    }
}

/// The copy of a message on `topic` for one subscriber.
fn delivery(
    topic: &Arc<str>,
    m: Body<'_>,
    qos: u8,
    retain: bool,
    reach: &Reach,
    sub: &Subscriber,
) -> Delivery {
    Delivery {
        topic: topic.clone(),
        payload: m.payload.clone(),
        qos,
        retain,
        seq: if sub.persistent && qos > 0 {
            next_seq()
        } else {
            0
        },
        dup: false,
        properties: m.properties.clone(),
        expires_at: m.expires_at,
        sub_ids: reach.ids.clone(),
    }
}

/// The copy of `topic`'s retained message for a new subscriber, at the
/// lower of `want` and the message's QoS; None when it has none (or it
/// expired).
pub(super) fn retained_delivery(
    table: &RetainedTable,
    topic: &Arc<str>,
    want: u8,
    reach: &Reach,
    sub: &Subscriber,
) -> Option<Delivery> {
    let Found::Message(r) = table.get(topic, now_ms()) else {
        return None;
    };
    let RetainedCopy {
        payload,
        qos,
        properties,
        expires_at,
    } = r;
    let m = Body {
        payload: &payload,
        properties: &properties,
        expires_at,
    };
    Some(delivery(topic, m, want.min(qos), true, reach, sub))
}

impl Actor for Topic {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Topics are many; a large mailbox would only hide a missing bound
        // elsewhere (sessions limit how many publishes they have outstanding).
        ctx.run_interval(IDLE_AFTER / 2, |act, ctx| {
            // Sessions that ended are dropped here or at the next publish.
            act.subscribers.retain(|_, (_, s)| !s.is_gone());
            if act.last_activity.elapsed() >= IDLE_AFTER {
                act.router.do_send(TopicIdle {
                    name: act.name.clone(),
                    addr: ctx.address(),
                });
            }
        });
    }
}

/// What every copy of a message shares.
#[derive(Clone, Copy)]
struct Body<'a> {
    payload: &'a Bytes,
    properties: &'a Option<Arc<PublishProperties>>,
    expires_at: Option<i64>,
}

type Commit = BoxFuture<'static, Result<(), StoreError>>;

/// Waits for every commit; true when all succeeded.
async fn all_committed(commits: Vec<Commit>) -> bool {
    let mut ok = true;
    for c in commits {
        if let Err(e) = c.await {
            tracing::error!(error = %e, "message not stored");
            ok = false;
        }
    }
    ok
}

pub(super) fn answer(
    done: Option<oneshot::Sender<Published>>,
    outcome: Published,
    commits: Vec<Commit>,
) {
    let Some(done) = done else {
        if !commits.is_empty() {
            actix::spawn(all_committed(commits));
        }
        return;
    };
    if commits.is_empty() {
        let _ = done.send(outcome);
    } else {
        actix::spawn(async move {
            let ok = all_committed(commits).await;
            let _ = done.send(if ok { outcome } else { Published::Failed });
        });
    }
}

/// Pushes each waiting message once its subscriber has room (or has been
/// declared slow after `timeout`), collecting the commits.
async fn push_when_room(
    waiting: Vec<(Arc<Subscriber>, Delivery)>,
    mut commits: Vec<Commit>,
    timeout: Duration,
) -> Vec<Commit> {
    for (sub, mut d) in waiting {
        loop {
            // Created before the push, so a wake-up between the two is not
            // missed (notify_waiters reaches it).
            let room = sub.space.notified();
            match sub.push(d) {
                Push::Queued(c) => {
                    commits.extend(c);
                    break;
                }
                Push::Dropped => break,
                Push::Full(since, back) => {
                    d = back;
                    let deadline = tokio::time::Instant::from_std(since + timeout);
                    if tokio::time::timeout_at(deadline, room).await.is_err() {
                        sub.mark_slow_if_stalled(timeout);
                    }
                }
            }
        }
    }
    commits
}

impl Topic {
    /// Applies a retained publish; false when the budget refused it (the
    /// message is still delivered).
    fn retain(&mut self, msg: &Publish, commits: &mut Vec<Commit>) -> bool {
        let payload = &msg.payload;
        let (props, expires_at) = (msg.properties.clone(), msg.expires_at);
        if !self
            .table
            .set(&self.name, payload, msg.qos, props, expires_at)
        {
            METRICS.retained_refused.inc();
            tracing::info!(topic = %self.name, bytes = payload.len(), "retained limit reached: not retained");
            return false;
        }
        if self.stored {
            let row = retained::RetainedRow {
                topic: self.name.to_string(),
                payload: payload.clone(),
                qos: msg.qos,
                properties: msg.properties.clone(),
                expires_at: msg.expires_at,
            };
            let at = now_ms();
            commits.push(Box::pin(
                self.store.write(move |c| retained::set(c, &row, at)),
            ));
        }
        true
    }
}

impl Handler<Publish> for Topic {
    type Result = ();

    fn handle(&mut self, msg: Publish, ctx: &mut Self::Context) {
        self.last_activity = Instant::now();
        let mut commits: Vec<Commit> = Vec::new();
        let mut outcome = Published::Done;
        if msg.retain && !self.retain(&msg, &mut commits) {
            outcome = Published::RetainRefused;
        }
        if msg.expires_at.is_some_and(|at| at <= now_ms()) {
            // Expired on its way here: retained (so that it is cleared as
            // usual) but sent to nobody.
            answer(msg.done, outcome, commits);
            return;
        }
        let m = Body {
            payload: &msg.payload,
            properties: &msg.properties,
            expires_at: msg.expires_at,
        };
        let mut waiting: Vec<(Arc<Subscriber>, Delivery)> = Vec::new();
        let mut ended = false;
        let mut matched = false;
        let mut push =
            |sub: &Arc<Subscriber>, d: Delivery, commits: &mut Vec<Commit>| match sub.push(d) {
                Push::Queued(Some(c)) => commits.push(c),
                Push::Queued(None) | Push::Dropped => {}
                Push::Full(_, d) => waiting.push((sub.clone(), d)),
            };
        for (client, (grant, sub)) in &self.subscribers {
            if sub.is_gone() {
                ended = true;
                continue;
            }
            // A subscription matches even where No Local keeps the
            // publisher's own message from it: 0x10 is for no subscriber.
            matched = true;
            let own = msg.origin.as_ref() == Some(client);
            if own && sub.bridge.is_some() {
                continue;
            }
            let Some(reach) = grant.reach(own) else {
                continue;
            };
            // A bridge forwards the retain flag as published (so a remote's
            // retained message follows the local one), and so does a
            // subscription with Retain As Published; other clients get it
            // only for retained messages sent on subscribe.
            let retain = msg.retain && (sub.bridge.is_some() || reach.retain_as_published);
            let d = delivery(&self.name, m, msg.qos.min(reach.qos), retain, reach, sub);
            push(sub, d, &mut commits);
        }
        if ended {
            self.subscribers.retain(|_, (_, s)| !s.is_gone());
        }
        let mut shared = std::mem::take(&mut self.shared);
        for group in shared.values_mut() {
            group.members.retain(|m| !m.subscriber.is_gone());
            let Some(member) = group.pick() else {
                METRICS.dropped_disconnected.inc();
                continue;
            };
            let reach = &member.reach;
            let retain = msg.retain && reach.retain_as_published;
            let d = delivery(
                &self.name,
                m,
                msg.qos.min(reach.qos),
                retain,
                reach,
                &member.subscriber,
            );
            matched = true;
            push(&member.subscriber, d, &mut commits);
        }
        shared.retain(|_, g| !g.members.is_empty());
        self.shared = shared;
        if !matched && outcome == Published::Done {
            outcome = Published::NoSubscribers;
        }
        if waiting.is_empty() {
            answer(msg.done, outcome, commits);
            return;
        }
        // Some subscriber is full: take no further message for this topic
        // until each has room or has been declared slow.
        let timeout = self.slow_timeout;
        let done = msg.done;
        ctx.wait(
            async move {
                let commits = push_when_room(waiting, commits, timeout).await;
                answer(done, outcome, commits);
            }
            .into_actor(self),
        );
    }
}

impl Handler<SetSubscriber> for Topic {
    type Result = ();

    fn handle(&mut self, msg: SetSubscriber, ctx: &mut Self::Context) {
        self.last_activity = Instant::now();
        match msg.grant {
            Some((grant, sub)) => {
                let retained = msg.retained_qos.and_then(|want| {
                    retained_delivery(&self.table, &self.name, want, &grant.all, &sub)
                });
                self.subscribers.insert(msg.client, (grant, sub.clone()));
                let Some(d) = retained else { return };
                match sub.push(d) {
                    Push::Queued(c) => answer(None, Published::Done, c.into_iter().collect()),
                    Push::Dropped => {}
                    Push::Full(_, d) => {
                        // Through the same bound as every message: this topic
                        // takes nothing more until the subscriber has room.
                        let timeout = self.slow_timeout;
                        ctx.wait(
                            async move {
                                let commits =
                                    push_when_room(vec![(sub, d)], Vec::new(), timeout).await;
                                answer(None, Published::Done, commits);
                            }
                            .into_actor(self),
                        );
                    }
                }
            }
            None => {
                self.subscribers.remove(&msg.client);
            }
        }
    }
}

impl Handler<SetShared> for Topic {
    type Result = ();

    fn handle(&mut self, msg: SetShared, _ctx: &mut Self::Context) {
        self.last_activity = Instant::now();
        if msg.members.is_empty() {
            self.shared.remove(&msg.key);
            return;
        }
        match self.shared.get_mut(&msg.key) {
            Some(g) => {
                g.members = msg.members;
                g.next %= g.members.len();
            }
            None => {
                let group = Group {
                    members: msg.members,
                    next: 0,
                };
                self.shared.insert(msg.key, group);
            }
        }
    }
}

impl Handler<Retire> for Topic {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
