//! The action supervisor: the actor that decides what a publish, a stored
//! batch, a schedule or a device event turns into, and runs it.
//!
//! Sessions consult the shared [`ActionIndex`] (a topic trie over every
//! action's filters, so the cost per publish does not grow with the number of
//! actions) and send the supervisor only the publishes that match something;
//! `POST /data` sends it every batch it stores ([`StoreItems`]). A publish
//! that stores data or queues a delivery is answered only once those rows
//! (and the run records) are committed, and the session holds the
//! publisher's PUBACK/PUBREC until then; what a batch triggers is decided
//! before that commit and written in it (`fire.rs`). Analyses run as child
//! processes, at most `MAX_CONCURRENT_ANALYSES` at once; a bounded number
//! wait, the rest are recorded as skipped. Deliveries (`http_post`,
//! `email`) wait in SQLite for the delivery worker (`deliver`). Nothing here
//! blocks message flow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{oneshot, Semaphore};

use super::deliver::{self, SmtpSettings};
use super::file::{
    self, all_hold, next_firing, ActionDef, ActionKind, DeviceEvent as EventKind, Trigger,
};
use super::fire::{commit, record, store_batch, Cause, Fired, Origin};
use super::ingest;
use super::locks::{LockKey, Locks};
use super::run::Run;
use crate::device::watch::Event;
use crate::device::{Auth, DeviceInfo, Presence};
use crate::router::trie::SubTrie;
use crate::router::Router;
use crate::store::actions::{self as records, RunOutcome};
use crate::store::item::DataItem;
use crate::store::{now_ms, Store, StoreError};

/// The legacy TagoIO topic whose publishes are stored in the publisher's
/// bucket without any action.
pub(crate) const TAGO_DATA_POST: &str = "tago/data/post";

/// Analyses running at once. Each is a process; on a 2-core machine more
/// would only slow each other and the broker.
const MAX_CONCURRENT_ANALYSES: usize = 4;

/// Analyses waiting for a slot; past this a trigger is recorded as `skipped`.
pub(crate) const MAX_WAITING_ANALYSES: usize = 100;

/// How often old run records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Which actions an MQTT topic triggers, and which a stored variable
/// concerns; swapped whole on reload.
#[derive(Default)]
pub(crate) struct ActionIndex {
    trie: SubTrie,
    /// The enabled `variable`-trigger actions by the variables they trigger
    /// on or unlock with.
    variables: HashMap<String, Vec<Arc<ActionDef>>>,
}

impl ActionIndex {
    pub(crate) fn new(
        filters: impl IntoIterator<Item = (String, Arc<str>)>,
        variable_actions: &[Arc<ActionDef>],
    ) -> ActionIndex {
        let mut trie = SubTrie::default();
        for (filter, action) in filters {
            trie.insert(&filter, &action, 0);
        }
        let mut variables: HashMap<String, Vec<Arc<ActionDef>>> = HashMap::new();
        for def in variable_actions {
            let Trigger::Variable(names) = &def.trigger else {
                continue;
            };
            let unlock = def.unlock.iter().map(|c| c.variable.to_ascii_lowercase());
            for name in names.iter().cloned().chain(unlock) {
                let list = variables.entry(name).or_default();
                if !list.iter().any(|d| d.name == def.name) {
                    list.push(def.clone());
                }
            }
        }
        ActionIndex { trie, variables }
    }

    /// The `variable`-trigger actions any of these variables concerns, each
    /// once.
    pub(crate) fn for_variables<'a>(
        &self,
        variables: impl Iterator<Item = &'a str>,
    ) -> Vec<Arc<ActionDef>> {
        if self.variables.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<Arc<ActionDef>> = Vec::new();
        for v in variables {
            for def in self.variables.get(v).into_iter().flatten() {
                if !found.iter().any(|d| d.name == def.name) {
                    found.push(def.clone());
                }
            }
        }
        found
    }

    /// The names of the actions whose `mqtt_topic` filters match `topic`.
    pub(crate) fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        if self.trie.is_empty() {
            return Vec::new();
        }
        self.trie.matches(topic).into_keys().collect()
    }

    /// Whether a publish on `topic` concerns the supervisor at all.
    pub(crate) fn wants(&self, topic: &str) -> bool {
        topic == TAGO_DATA_POST || (!self.trie.is_empty() && self.trie.any_match(topic))
    }
}

/// The index as sessions see it: read per publish, replaced on reload.
pub(crate) type SharedIndex = Arc<RwLock<Arc<ActionIndex>>>;

/// A device's publish that matches at least one action (or the legacy
/// topic). `done` answers once everything durable is committed: `false`
/// only when the database failed, so the publisher is not acknowledged.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Triggered {
    pub device: Arc<DeviceInfo>,
    pub topic: Arc<str>,
    pub payload: Bytes,
    /// MQTT 5 properties of the publish (their user properties reach the
    /// items as `metadata.user_properties`); None for 3.1.1.
    pub properties: Option<Arc<crate::protocol::PublishProperties>>,
    pub done: Option<oneshot::Sender<bool>>,
}

/// Reload the action files (SIGHUP, `POST /actions/reload`). On failure the
/// old set stays and the answer lists the problems.
#[derive(Message)]
#[rtype(result = "Result<usize, Vec<String>>")]
pub(crate) struct Reload;

/// Store a device's validated items (`POST /data`) and set off what they
/// trigger; `done` answers once they are committed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StoreItems {
    pub device: Arc<DeviceInfo>,
    pub items: Vec<DataItem>,
    /// Where they came from, for the run records: `POST /data`.
    pub source: &'static str,
    /// The analysis run token they came with, if any (the loop guard).
    pub run_token: Option<String>,
    pub done: oneshot::Sender<Result<(), StoreError>>,
}

/// Unlock an action for a device (`POST /actions/{name}/unlock?device=`).
#[derive(Message)]
#[rtype(result = "Result<bool, UnlockError>")]
pub(crate) struct Unlock {
    pub action: String,
    /// The device's name.
    pub device: String,
}

/// Why an unlock was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnlockError {
    NoAction,
    NoDevice,
    /// The action has no `unlock`, so it never locks.
    NeverLocks,
    Store(String),
}

/// What the supervisor needs from the rest of the broker.
pub(crate) struct SupervisorConfig {
    pub store: Store,
    pub index: SharedIndex,
    pub auth: Arc<Auth>,
    pub router: Addr<Router>,
    /// The actions directory; analyses run there.
    pub dir: PathBuf,
    /// brook's HTTP base URL, for analyses (`TAGOIO_API`, `BROOK_API`).
    pub api_base: String,
    /// The server's environment variables analyses may see (`[actions] pass_env`).
    pub pass_env: Vec<String>,
    /// Where payload parsers run (shared with `POST /data`).
    pub parsers: Arc<ingest::ParserPool>,
    /// Run records kept per action, and for how long.
    pub keep_runs: usize,
    pub keep_runs_for: Duration,
    /// `[smtp]`, for email actions; `None` without it.
    pub smtp: Option<Arc<SmtpSettings>>,
}

/// What the supervisor, the runs it starts and the delivery worker share.
pub(crate) struct Engine {
    pub(crate) cfg: SupervisorConfig,
    /// Analyses running at once.
    pub(crate) slots: Semaphore,
    /// Analyses waiting for a slot.
    pub(crate) waiting: AtomicUsize,
    /// Which actions are locked for which devices.
    pub(crate) locks: Locks,
    /// The delivery worker's wake-up and the actions it is busy with.
    pub(crate) deliveries: deliver::Queue,
    /// The action chain (the loop guard) of each analysis run token, while
    /// its run lasts: at most as many as analyses run at once.
    pub(crate) run_origins: Mutex<HashMap<String, Origin>>,
}

pub(crate) struct Supervisor {
    engine: Arc<Engine>,
    /// The loaded actions by name.
    actions: HashMap<Arc<str>, Arc<ActionDef>>,
    /// Timed actions: the definition hash it was scheduled with, and the timer.
    schedules: HashMap<Arc<str>, (String, SpawnHandle)>,
}

impl Supervisor {
    /// The supervisor, with the lock state read from the store (at start,
    /// before any message flows).
    pub(crate) fn new(cfg: SupervisorConfig) -> Supervisor {
        let locks = match cfg.store.read_blocking(records::all_locks) {
            Ok(rows) => Locks::from_rows(rows),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the action locks; every action starts unlocked");
                Locks::default()
            }
        };
        Supervisor {
            engine: Arc::new(Engine {
                cfg,
                slots: Semaphore::new(MAX_CONCURRENT_ANALYSES),
                waiting: AtomicUsize::new(0),
                locks,
                deliveries: deliver::Queue::default(),
                run_origins: Mutex::new(HashMap::new()),
            }),
            actions: HashMap::new(),
            schedules: HashMap::new(),
        }
    }

    fn cfg(&self) -> &SupervisorConfig {
        &self.engine.cfg
    }

    fn reload(&mut self, ctx: &mut Context<Self>) -> Result<usize, Vec<String>> {
        let dir = self.cfg().dir.clone();
        let defs = if dir.is_dir() {
            file::load_dir(&dir)
                .map_err(|errors| errors.iter().map(|e| e.to_string()).collect::<Vec<_>>())?
        } else {
            Vec::new()
        };
        let count = defs.len();
        let defs: Vec<Arc<ActionDef>> = defs.into_iter().map(Arc::new).collect();

        let filters = defs
            .iter()
            .filter(|d| d.enabled)
            .flat_map(|d| match &d.trigger {
                Trigger::MqttTopic(filters) => {
                    let name: Arc<str> = d.name.as_str().into();
                    filters
                        .iter()
                        .map(|f| (f.clone(), name.clone()))
                        .collect::<Vec<_>>()
                }
                _ => Vec::new(),
            });
        let variable_actions: Vec<Arc<ActionDef>> = defs
            .iter()
            .filter(|d| d.enabled && matches!(d.trigger, Trigger::Variable(_)))
            .cloned()
            .collect();
        *self.cfg().index.write() = Arc::new(ActionIndex::new(filters, &variable_actions));

        // Locks of actions no longer loaded with an `unlock` go.
        let lockable: Vec<String> = defs
            .iter()
            .filter(|d| !d.unlock.is_empty())
            .map(|d| d.name.clone())
            .collect();
        self.engine
            .locks
            .retain_actions(|a| lockable.iter().any(|l| l == a));

        // Timers whose definition did not change keep going, so a reload
        // neither fires them twice nor skips a firing.
        let mut keep = HashMap::new();
        for d in defs.iter().filter(|d| d.enabled) {
            if d.trigger.is_timed() {
                let name: Arc<str> = d.name.as_str().into();
                match self.schedules.remove(&name) {
                    Some((hash, handle)) if hash == d.hash => {
                        keep.insert(name, (hash, handle));
                    }
                    Some((_, handle)) => {
                        ctx.cancel_future(handle);
                    }
                    None => {}
                }
            }
        }
        for (_, (_, handle)) in self.schedules.drain() {
            ctx.cancel_future(handle);
        }
        self.schedules = keep;
        self.actions = defs
            .iter()
            .map(|d| (Arc::from(d.name.as_str()), d.clone()))
            .collect();
        for d in &defs {
            if d.enabled && d.trigger.is_timed() && !self.schedules.contains_key(d.name.as_str()) {
                self.schedule_next(d.clone(), ctx);
            }
        }
        for d in defs.iter().filter(|d| d.enabled) {
            if matches!(d.kind, ActionKind::Email(_)) && self.cfg().smtp.is_none() {
                tracing::warn!(action = %d.name, "an email action, but config.toml has no [smtp]: its runs will fail");
            }
        }
        let recorded: Vec<records::ActionRecord> = defs.iter().map(|d| d.record()).collect();
        self.cfg().store.write_detached("record actions", move |c| {
            records::sync(c, &recorded, now_ms())?;
            records::drop_locks_except(c, &lockable).map(|_| ())
        });
        tracing::info!(actions = count, dir = %dir.display(), "actions loaded");
        Ok(count)
    }

    fn schedule_next(&mut self, def: Arc<ActionDef>, ctx: &mut Context<Self>) {
        let Some(next) = next_firing(&def.trigger, chrono::Utc::now()) else {
            return;
        };
        let delay = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        let name: Arc<str> = def.name.as_str().into();
        let hash = def.hash.clone();
        let handle = ctx.run_later(delay, move |act, ctx| {
            act.schedules.remove(def.name.as_str());
            let at = next.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            Run::new(
                def.clone(),
                Cause {
                    trigger: def.trigger.kind(),
                    detail: at,
                    device: None,
                    topic: None,
                    items: Vec::new(),
                    origin: Origin::default(),
                    state: "unlocked",
                },
            )
            .spawn(act.engine.clone());
            act.schedule_next(def, ctx);
        });
        self.schedules.insert(name, (hash, handle));
    }

    /// The enabled actions a publish on `topic` by `device` triggers.
    fn triggered_by(&self, topic: &str, device: &DeviceInfo) -> Vec<Arc<ActionDef>> {
        let index = self.cfg().index.read().clone();
        index
            .matching(topic)
            .iter()
            .filter_map(|name| self.actions.get(name))
            .filter(|d| d.enabled && d.applies_to(&device.name, &device.tags))
            .cloned()
            .collect()
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
        if let Err(problems) = self.reload(ctx) {
            for p in &problems {
                tracing::error!("{p}");
            }
            tracing::error!("action files have problems: no actions loaded");
        }
        let (store, keep, age) = (
            self.cfg().store.clone(),
            self.cfg().keep_runs,
            self.cfg().keep_runs_for,
        );
        ctx.run_interval(PRUNE_EVERY, move |_, _| {
            store.write_detached("prune runs", move |c| {
                records::prune(c, keep, Some(age), now_ms()).map(|_| ())
            });
        });
        actix::spawn(deliver::run(self.engine.clone()));
    }
}

impl Handler<Reload> for Supervisor {
    type Result = Result<usize, Vec<String>>;

    fn handle(&mut self, _: Reload, ctx: &mut Self::Context) -> Self::Result {
        let result = self.reload(ctx);
        if let Err(problems) = &result {
            tracing::error!(
                problems = problems.len(),
                "reload failed; the previous actions stay"
            );
            for p in problems {
                tracing::error!("{p}");
            }
        }
        result
    }
}

impl Handler<Triggered> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Triggered, _ctx: &mut Self::Context) {
        let defs = self.triggered_by(&msg.topic, &msg.device);
        let legacy = &*msg.topic == TAGO_DATA_POST;
        if defs.is_empty() && !legacy {
            if let Some(done) = msg.done {
                let _ = done.send(true);
            }
            return;
        }
        let engine = self.engine.clone();
        actix::spawn(async move {
            let ok = on_publish(
                &engine,
                defs,
                legacy,
                msg.device,
                msg.topic,
                msg.payload,
                msg.properties,
            )
            .await;
            if let Some(done) = msg.done {
                let _ = done.send(ok);
            }
        });
    }
}

impl Handler<StoreItems> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: StoreItems, _ctx: &mut Self::Context) {
        let origin = msg
            .run_token
            .and_then(|t| self.engine.run_origins.lock().get(&t).cloned())
            .unwrap_or_default();
        let engine = self.engine.clone();
        actix::spawn(async move {
            let stored = store_batch(&engine, msg.device, msg.items, origin, msg.source).await;
            let _ = msg.done.send(stored);
        });
    }
}

impl Handler<Unlock> for Supervisor {
    type Result = ResponseFuture<Result<bool, UnlockError>>;

    fn handle(&mut self, msg: Unlock, _ctx: &mut Self::Context) -> Self::Result {
        let engine = self.engine.clone();
        let def = self.actions.get(msg.action.as_str()).cloned();
        Box::pin(async move {
            let def = def.ok_or(UnlockError::NoAction)?;
            let device = engine
                .cfg
                .auth
                .device_by_name(&msg.device)
                .ok_or(UnlockError::NoDevice)?;
            if def.unlock.is_empty() {
                return Err(UnlockError::NeverLocks);
            }
            let key: LockKey = (Arc::from(def.name.as_str()), device.id.clone());
            let was = engine.locks.unlock(&key);
            let shared = engine.clone();
            engine
                .cfg
                .store
                .write(move |c| records::set_lock(c, &key.0, &key.1, shared.locks.locked_at(&key)))
                .await
                .map_err(|e| UnlockError::Store(e.to_string()))?;
            if was {
                device.watch.emit(|| Event::Lock {
                    action: &def.name,
                    state: "unlocked",
                    by: "the admin API",
                });
            }
            Ok(was)
        })
    }
}

impl Handler<Presence> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Presence, _ctx: &mut Self::Context) {
        let Some(device) = self.cfg().auth.device(&msg.device_id) else {
            return;
        };
        let kind = if msg.connected {
            EventKind::Connect
        } else {
            EventKind::Disconnect
        };
        let mut fired = Fired::default();
        for def in self.actions.values() {
            if def.enabled
                && def.trigger == Trigger::DeviceEvent(kind)
                && def.applies_to(&device.name, &device.tags)
            {
                fired.add(
                    &self.engine,
                    def,
                    Cause {
                        trigger: "device_event",
                        detail: kind.as_str().to_string(),
                        device: Some(device.clone()),
                        topic: None,
                        items: Vec::new(),
                        origin: Origin::default(),
                        state: "unlocked",
                    },
                );
            }
        }
        if fired.is_empty() {
            return;
        }
        let engine = self.engine.clone();
        actix::spawn(async move {
            if let Err(e) = commit(&engine, Vec::new(), fired, None).await {
                tracing::error!(device = %device.name, error = %e, "device event: runs not recorded");
            }
        });
    }
}

/// Everything a publish that matched actions turns into; false only when
/// the database failed.
async fn on_publish(
    engine: &Arc<Engine>,
    defs: Vec<Arc<ActionDef>>,
    legacy: bool,
    device: Arc<DeviceInfo>,
    topic: Arc<str>,
    payload: Bytes,
    properties: Option<Arc<crate::protocol::PublishProperties>>,
) -> bool {
    let user = properties.as_deref().map_or(&[][..], |p| &p.user[..]);
    let parsed =
        ingest::from_mqtt(&engine.cfg.parsers, device.clone(), &topic, payload, user).await;
    let cause = |items: Vec<Value>| Cause {
        trigger: "mqtt_topic",
        detail: topic.to_string(),
        device: Some(device.clone()),
        topic: Some(topic.clone()),
        items,
        origin: Origin::default(),
        state: "unlocked",
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(rejected) => {
            tracing::info!(device = %device.name, topic = %topic, reason = %rejected.reason, "publish gave no data");
            let runs: Vec<records::RunRecord> = defs
                .iter()
                .map(|d| record(d, &cause(Vec::new()), RunOutcome::Error, &rejected.reason))
                .collect();
            runs.iter().for_each(|r| count_run(r.outcome));
            if !runs.is_empty() {
                engine.cfg.store.write_detached("record runs", move |c| {
                    runs.iter()
                        .try_for_each(|r| records::insert_run(c, r).map(|_| ()))
                });
            }
            return true;
        }
    };
    // The items as JSON, for conditions and for what other types get; an
    // insert_bucket action without conditions needs none of it.
    let needs_scope = defs
        .iter()
        .any(|d| !d.conditions.is_empty() || !matches!(d.kind, ActionKind::InsertBucket));
    let scope: Vec<Value> = if needs_scope {
        parsed.items.iter().map(|i| i.to_json()).collect()
    } else {
        Vec::new()
    };
    let mut store_items = legacy;
    let mut fired = Fired::default();
    let n = parsed.items.len();
    for def in defs {
        if !all_hold(&def.conditions, &scope) {
            continue;
        }
        match &def.kind {
            ActionKind::InsertBucket => {
                store_items = true;
                fired.stored_by(&def, &cause(Vec::new()), n);
            }
            _ => fired.add(engine, &def, cause(scope.clone())),
        }
    }
    let items = if store_items && n > 0 {
        let index = engine.cfg.index.read().clone();
        fired.stored(
            engine,
            &index,
            &device,
            &parsed.items,
            &Origin::default(),
            &topic,
        );
        parsed.items
    } else {
        Vec::new()
    };
    match commit(engine, items, fired, None).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(device = %device.name, topic = %topic, error = %e, "data not stored");
            false
        }
    }
}

pub(crate) fn count_run(outcome: RunOutcome) {
    let m = &crate::metrics::METRICS;
    match outcome {
        RunOutcome::Ok => m.runs_ok.inc(),
        RunOutcome::Error => m.runs_error.inc(),
        RunOutcome::Timeout => m.runs_timeout.inc(),
        RunOutcome::Skipped => m.runs_skipped.inc(),
        RunOutcome::Pending => {}
    }
}
