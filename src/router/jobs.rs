//! The router's long operations, done a slice at a time.
//!
//! A SUBSCRIBE of many filters, an UNSUBSCRIBE, a client with thousands of
//! subscriptions leaving, a subscription matching 100,000 retained topics:
//! each is work proportional to what it matches, but done in one go it would
//! hold the router (and every other client's CONNECT) for tens of
//! milliseconds. So each is a [`Job`] in one FIFO queue, run in steps of
//! [`STEP`] items, with the router's mailbox served between slices of
//! [`SLICE`]; a slice also sends at most [`SENDS_PER_SLICE`] messages to
//! topic actors, which share their threads with the sessions. One queue
//! keeps each client's operations in the order they came; a synchronous
//! change to a client with queued work (a CONNECT with its client id) first
//! runs the queue dry. A client that leaves sends no message to its topics
//! at all: its subscriber is ended, and each topic drops it when it next
//! looks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::grant::Sub;
use super::{shared_filter, Router};
use crate::metrics::METRICS;
use crate::store::{sessions, StoreError};

/// Items (filters or topics) one step of a job handles.
const STEP: usize = 64;

/// How long the router runs jobs before it serves its mailbox again.
const SLICE: Duration = Duration::from_micros(500);

/// Messages to topic actors one slice may send. The topics run on the same
/// threads as the sessions: a burst of thousands would queue every
/// session's next step (a CONNACK, say) behind them.
const SENDS_PER_SLICE: usize = 256;

/// The pause after a slice that reached [`SENDS_PER_SLICE`], for the
/// topics to take what was sent.
const SLICE_GAP: Duration = Duration::from_millis(1);

/// One step of a long operation; true when it is finished.
pub(super) type Job = Box<dyn FnMut(&mut Router) -> bool>;

/// Runs the next slice of queued jobs.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Tick;

/// A commit to wait for before answering the client.
type Commit = futures::future::BoxFuture<'static, Result<(), StoreError>>;

/// What a SUBSCRIBE is answered: per filter whether it is in force, and the
/// commit of a persistent session's subscriptions.
pub(super) type Subscribed = oneshot::Sender<(Vec<bool>, Option<Commit>)>;

/// What an UNSUBSCRIBE is answered: per filter whether the client had it,
/// and the commit of a persistent session's change.
pub(super) type Unsubscribed = oneshot::Sender<(Vec<bool>, Option<Commit>)>;

/// What a topic is told about a client after a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Touch {
    /// What the client now gets there; with the QoS to send the retained
    /// message at, if it is to be sent.
    Client(Option<u8>),
    /// Who the members of this shared subscription are there now.
    Group(Arc<str>),
}

impl Router {
    /// Queues `job` on behalf of `client`.
    pub(super) fn enqueue(&mut self, client: Arc<str>, job: Job) {
        *self.queued_for.entry(client.clone()).or_default() += 1;
        self.jobs.push_back((client, job));
        if !self.ticking {
            if let Some(me) = &self.me {
                self.ticking = true;
                me.do_send(Tick);
            }
        }
    }

    /// Runs one step of the first job; false when there is none.
    fn step(&mut self) -> bool {
        let Some((client, mut job)) = self.jobs.pop_front() else {
            return false;
        };
        if job(self) {
            if let Some(n) = self.queued_for.get_mut(&client) {
                *n -= 1;
                if *n == 0 {
                    self.queued_for.remove(&client);
                }
            }
        } else {
            self.jobs.push_front((client, job));
        }
        true
    }

    /// Before `client` is changed synchronously: its queued work is done first.
    pub(super) fn settle(&mut self, client: &str) {
        if self.queued_for.contains_key(client) {
            while self.step() {}
        }
    }

    /// Tells the next [`STEP`] topics of `names` what `client` now gets
    /// there; true when all are told.
    fn announce_step(
        &mut self,
        client: &Arc<str>,
        names: &mut std::vec::IntoIter<(Arc<str>, Touch)>,
    ) -> bool {
        let step: Vec<_> = names.by_ref().take(STEP).collect();
        for (name, touch) in &step {
            match touch {
                Touch::Client(q) => self.update_topics(client, std::iter::once((name, *q))),
                Touch::Group(key) => self.update_group(key, std::iter::once(name)),
            }
        }
        step.len() < STEP
    }

    /// Writes a change of `client`'s persistent session (none for a clean
    /// session): the commit to wait for before answering the client.
    fn commit_session(
        &self,
        client: &Arc<str>,
        change: impl FnOnce(&rusqlite::Connection, &str) -> rusqlite::Result<()> + Send + 'static,
    ) -> Option<Commit> {
        let persistent = self
            .clients
            .get(client)
            .is_some_and(|e| e.subscriber.persistent);
        persistent.then(|| {
            let who = client.clone();
            Box::pin(self.store.write(move |c| change(c, &who))) as Commit
        })
    }

    /// Tells each topic in `names` what `client` now gets there (after a
    /// change of its ACL), a step at a time.
    pub(super) fn announce(&mut self, client: Arc<str>, names: Vec<(Arc<str>, Touch)>) {
        let mut names = names.into_iter();
        let who = client.clone();
        self.enqueue(
            who,
            Box::new(move |r: &mut Router| r.announce_step(&client, &mut names)),
        );
    }

    /// A client that is gone: its filters leave the index a step at a time.
    /// (Its entry is already out of `clients`, so topics created meanwhile
    /// do not list it, and its subscriber is ended, so the topics that list
    /// it drop it on their own.)
    pub(super) fn forget_filters(&mut self, client: Arc<str>, filters: Vec<String>) {
        let mut filters = filters.into_iter();
        let who = client.clone();
        self.enqueue(
            who,
            Box::new(move |r: &mut Router| {
                for f in filters.by_ref().take(STEP * 4) {
                    r.unindex(&client, &f);
                }
                filters.len() == 0
            }),
        );
    }

    /// A SUBSCRIBE: its filters go into force a step at a time, then the
    /// topics they match are told, then `reply` gets the answer (with the
    /// commit to wait for, for a persistent session).
    pub(super) fn subscribe_job(
        &mut self,
        client: Arc<str>,
        filters: Vec<(String, Sub)>,
        reply: Subscribed,
    ) {
        let total = filters.len();
        let mut filters = filters.into_iter();
        let mut in_force: Vec<bool> = Vec::with_capacity(total);
        let mut added: Vec<(String, Sub)> = Vec::new();
        // What each matching topic is told: the retained message is sent
        // once, at the highest QoS among the request's filters that match
        // it and ask for it (retain handling 0, or 1 for a new subscription;
        // never for a shared subscription).
        let mut touched: HashMap<Arc<str>, Option<u8>> = HashMap::new();
        let mut groups: HashSet<(Arc<str>, Arc<str>)> = HashSet::new();
        let mut announcing: Option<std::vec::IntoIter<(Arc<str>, Touch)>> = None;
        let mut reply = Some(reply);
        let who = client.clone();
        self.enqueue(
            who,
            Box::new(move |r: &mut Router| {
                if !r.clients.contains_key(&client) {
                    // Gone meanwhile: nothing is in force.
                    if let Some(reply) = reply.take() {
                        let _ = reply.send((vec![false; total], None));
                    }
                    return true;
                }
                if announcing.is_none() {
                    let max = r.limits.max_subscriptions_per_client;
                    for (f, sub) in filters.by_ref().take(STEP) {
                        let Some(entry) = r.clients.get_mut(&client) else {
                            break;
                        };
                        let existed = entry.filters.contains_key(&f);
                        if !existed && entry.filters.len() >= max {
                            METRICS.subscriptions_refused_limit.inc();
                            in_force.push(false);
                            continue;
                        }
                        in_force.push(true);
                        entry.filters.insert(f.clone(), sub);
                        r.index(&client, &f, sub);
                        match shared_filter(&f) {
                            Some(inner) => {
                                if let Some((key, _)) = r.groups.get_key_value(f.as_str()) {
                                    let key = key.clone();
                                    r.names.for_each_match(inner, |name| {
                                        groups.insert((name.clone(), key.clone()));
                                    });
                                }
                            }
                            None => {
                                let rh = sub.options.retain_handling;
                                let send = rh == 0 || (rh == 1 && !existed);
                                let q = sub.options.qos;
                                r.names.for_each_match(&f, |name| {
                                    let e = touched.entry(name.clone()).or_insert(None);
                                    if send {
                                        *e = Some(e.map_or(q, |had| had.max(q)));
                                    }
                                });
                            }
                        }
                        added.push((f, sub));
                    }
                    if filters.len() > 0 {
                        return false;
                    }
                    let names: Vec<_> = touched
                        .drain()
                        .map(|(n, q)| (n, Touch::Client(q)))
                        .chain(groups.drain().map(|(n, k)| (n, Touch::Group(k))))
                        .collect();
                    announcing = Some(names.into_iter());
                    return false;
                }
                if let Some(names) = announcing.as_mut() {
                    if !r.announce_step(&client, names) {
                        return false;
                    }
                }
                let added = std::mem::take(&mut added);
                let commit = (!added.is_empty())
                    .then(|| {
                        r.commit_session(&client, move |c, who| {
                            added.iter().try_for_each(|(f, s)| {
                                sessions::add_subscription(c, who, f, s.options_byte(), s.id)
                            })
                        })
                    })
                    .flatten();
                if let Some(reply) = reply.take() {
                    let _ = reply.send((std::mem::take(&mut in_force), commit));
                }
                true
            }),
        );
    }

    /// An UNSUBSCRIBE: its filters leave the index a step at a time, then
    /// the topics they matched are told, then `reply` gets the commit to
    /// wait for (a persistent session's).
    pub(super) fn unsubscribe_job(
        &mut self,
        client: Arc<str>,
        filters: Vec<String>,
        reply: Unsubscribed,
    ) {
        let total = filters.len();
        let mut all = Some(filters.clone());
        let mut filters = filters.into_iter();
        let mut had: Vec<bool> = Vec::with_capacity(total);
        let mut affected: HashSet<(Arc<str>, Touch)> = HashSet::new();
        let mut announcing: Option<std::vec::IntoIter<(Arc<str>, Touch)>> = None;
        let mut reply = Some(reply);
        let who = client.clone();
        self.enqueue(
            who,
            Box::new(move |r: &mut Router| {
                if !r.clients.contains_key(&client) {
                    if let Some(reply) = reply.take() {
                        let _ = reply.send((vec![false; total], None));
                    }
                    return true;
                }
                if announcing.is_none() {
                    for f in filters.by_ref().take(STEP) {
                        let removed = r
                            .clients
                            .get_mut(&client)
                            .is_some_and(|e| e.filters.remove(&f).is_some());
                        had.push(removed);
                        if !removed {
                            continue;
                        }
                        // The key outlives the group it names, for the topics to be told.
                        let key: Arc<str> = match r.groups.get_key_value(f.as_str()) {
                            Some((k, _)) => k.clone(),
                            None => f.as_str().into(),
                        };
                        r.unindex(&client, &f);
                        match shared_filter(&f) {
                            Some(inner) => r.names.for_each_match(inner, |name| {
                                affected.insert((name.clone(), Touch::Group(key.clone())));
                            }),
                            None => r.names.for_each_match(&f, |name| {
                                affected.insert((name.clone(), Touch::Client(None)));
                            }),
                        }
                    }
                    if filters.len() > 0 {
                        return false;
                    }
                    let names: Vec<_> = affected.drain().collect();
                    announcing = Some(names.into_iter());
                    return false;
                }
                if let Some(names) = announcing.as_mut() {
                    if !r.announce_step(&client, names) {
                        return false;
                    }
                }
                let all = all.take().unwrap_or_default();
                let commit = r.commit_session(&client, move |c, who| {
                    all.iter()
                        .try_for_each(|f| sessions::remove_subscription(c, who, f))
                });
                if let Some(reply) = reply.take() {
                    let _ = reply.send((std::mem::take(&mut had), commit));
                }
                true
            }),
        );
    }
}

impl Handler<Tick> for Router {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        let began = Instant::now();
        self.sent = 0;
        while began.elapsed() < SLICE && self.sent < SENDS_PER_SLICE && self.step() {}
        if self.jobs.is_empty() {
            self.ticking = false;
        } else if self.sent >= SENDS_PER_SLICE {
            ctx.run_later(SLICE_GAP, |_, ctx| ctx.notify(Tick));
        } else {
            ctx.notify(Tick);
        }
    }
}
