//! One actor per active topic name: it holds the topic's retained message and
//! fans each publish out to the clients subscribed, in the order publishes
//! arrive, so order is kept per topic and publisher.
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
//! messages count against the broker-wide [`RetainedBudget`].
//!
//! A topic with no retained message and no traffic for a while asks the router
//! to retire it; the router agrees only once no session can still hold its
//! address (see `router::TOPIC_LEASE`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::budget::RetainedBudget;
use super::{Router, TopicIdle};
use crate::metrics::METRICS;
use crate::router::queue::{next_seq, Delivery, Push, Subscriber};
use crate::store::{retained, Store, StoreError};

/// How long a topic without a retained message may see no traffic before it
/// asks to be retired.
const IDLE_AFTER: Duration = Duration::from_secs(120);

/// A publish to this topic. `done` answers once every subscriber has the
/// message queued and everything that must be durable is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish {
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub done: Option<oneshot::Sender<Published>>,
    /// The subscriber (by client id) that published it, which gets no copy:
    /// a bridge's incoming message must not go back out over that bridge.
    /// None for every client session (they receive their own publishes).
    pub origin: Option<Arc<str>>,
}

/// What came of a [`Publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Published {
    /// Queued for every subscriber, and committed where it must be.
    Done,
    /// Delivered, but not retained: a retained limit was reached.
    RetainRefused,
    /// A database write failed: the publisher gets no acknowledgement.
    Failed,
}

/// Sets (or with `grant: None` removes) a client's subscription QoS for this
/// topic; with `retained_qos` set, the retained message (if any) is sent to it
/// at the lower of that QoS and the message's.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetSubscriber {
    pub client: Arc<str>,
    pub grant: Option<(u8, Arc<Subscriber>)>,
    pub retained_qos: Option<u8>,
}

/// The router agrees that this topic may stop.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

pub(crate) struct Topic {
    name: Arc<str>,
    /// The retained message and its QoS; none when cleared.
    retained: Option<(Bytes, u8)>,
    /// Whether retained messages here count against the budget (all but `$SYS`).
    counted: bool,
    budget: Arc<RetainedBudget>,
    /// Who gets a copy, at which granted QoS.
    subscribers: HashMap<Arc<str>, (u8, Arc<Subscriber>)>,
    /// When the last publish or subscription change came; for retiring.
    last_activity: Instant,
    store: Store,
    router: Addr<Router>,
    slow_timeout: Duration,
}

impl Topic {
    /// `retained` must already be counted in `budget` (the router loads
    /// retained messages within the budget).
    pub(crate) fn new(
        name: Arc<str>,
        retained: Option<(Bytes, u8)>,
        subscribers: HashMap<Arc<str>, (u8, Arc<Subscriber>)>,
        store: Store,
        router: Addr<Router>,
        slow_timeout: Duration,
        budget: Arc<RetainedBudget>,
    ) -> Topic {
        Topic {
            counted: !name.starts_with("$SYS/"),
            budget,
            name,
            retained,
            subscribers,
            last_activity: Instant::now(),
            store,
            router,
            slow_timeout,
        }
    }

    fn delivery(&self, payload: &Bytes, qos: u8, retain: bool, sub: &Subscriber) -> Delivery {
        Delivery {
            topic: self.name.clone(),
            payload: payload.clone(),
            qos,
            retain,
            seq: if sub.persistent && qos > 0 {
                next_seq()
            } else {
                0
            },
            dup: false,
        }
    }
}

impl Actor for Topic {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Topics are many; a large mailbox would only hide a missing bound
        // elsewhere (sessions limit how many publishes they have outstanding).
        ctx.run_interval(IDLE_AFTER / 2, |act, ctx| {
            // Sessions that ended are dropped here or at the next publish.
            act.subscribers.retain(|_, (_, s)| !s.is_gone());
            if act.retained.is_none() && act.last_activity.elapsed() >= IDLE_AFTER {
                act.router.do_send(TopicIdle {
                    name: act.name.clone(),
                    addr: ctx.address(),
                });
            }
        });
    }
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

fn answer(done: Option<oneshot::Sender<Published>>, outcome: Published, commits: Vec<Commit>) {
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
    fn retain(&mut self, payload: &Bytes, qos: u8, commits: &mut Vec<Commit>) -> bool {
        let old = self.retained.as_ref().map(|(p, _)| p.len());
        if payload.is_empty() {
            if let (Some(bytes), true) = (old, self.counted) {
                self.budget.release(bytes);
            }
            self.retained = None;
        } else {
            if self.counted && !self.budget.replace(old, payload.len()) {
                METRICS.retained_refused.inc();
                tracing::info!(topic = %self.name, bytes = payload.len(), "retained limit reached: not retained");
                return false;
            }
            self.retained = Some((payload.clone(), qos));
        }
        if self.counted {
            let name = self.name.clone();
            let payload = payload.clone();
            let at = crate::store::now_ms();
            commits.push(Box::pin(
                self.store
                    .write(move |c| retained::set(c, &name, &payload, qos, at)),
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
        if msg.retain && !self.retain(&msg.payload, msg.qos, &mut commits) {
            outcome = Published::RetainRefused;
        }
        let mut waiting: Vec<(Arc<Subscriber>, Delivery)> = Vec::new();
        let mut ended = false;
        for (client, (grant, sub)) in &self.subscribers {
            if sub.is_gone() {
                ended = true;
                continue;
            }
            if msg.origin.as_ref() == Some(client) {
                continue;
            }
            // A bridge forwards the retain flag as published (so a
            // remote's retained message follows the local one); clients get
            // it only for retained messages sent on subscribe.
            let retain = msg.retain && sub.bridge.is_some();
            let d = self.delivery(&msg.payload, msg.qos.min(*grant), retain, sub);
            match sub.push(d) {
                Push::Queued(Some(c)) => commits.push(c),
                Push::Queued(None) | Push::Dropped => {}
                Push::Full(_, d) => waiting.push((sub.clone(), d)),
            }
        }
        if ended {
            self.subscribers.retain(|_, (_, s)| !s.is_gone());
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
                let retained = match (msg.retained_qos, &self.retained) {
                    (Some(want), Some((payload, rqos))) => {
                        Some(self.delivery(payload, want.min(*rqos), true, &sub))
                    }
                    _ => None,
                };
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

impl Handler<Retire> for Topic {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
