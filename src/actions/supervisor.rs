//! The action supervisor: the actor that decides what a publish, a schedule
//! or a device event turns into, and runs it.
//!
//! Sessions consult the shared [`ActionIndex`] (a topic trie over every
//! action's filters, so the cost per publish does not grow with the number of
//! actions) and send the supervisor only the publishes that match something.
//! A publish that stores data is answered only once its rows (and the run
//! records) are committed, and the session holds the publisher's
//! PUBACK/PUBREC until then. Analyses run as child processes, at most
//! `MAX_CONCURRENT_ANALYSES` at once; a bounded number wait, the rest are
//! recorded as skipped. Nothing here blocks message flow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::RwLock;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Semaphore};

use super::analysis::{self, AnalysisInput, AnalysisSpec};
use super::file::{self, ActionDef, ActionKind, DeviceEvent as EventKind, TemplateVars, Trigger};
use super::ingest;
use crate::device::watch::Event;
use crate::device::{Auth, DeviceInfo, Presence};
use crate::router::trie::SubTrie;
use crate::router::Router;
use crate::store::actions::{self as records, RunOutcome};
use crate::store::{data as bucket, now_ms, Store};

/// The legacy TagoIO topic whose publishes are stored in the publisher's
/// bucket without any action.
pub(crate) const TAGO_DATA_POST: &str = "tago/data/post";

/// Analyses running at once. Each is a process; on a 2-core machine more
/// would only slow each other and the broker.
const MAX_CONCURRENT_ANALYSES: usize = 4;

/// Analyses waiting for a slot; past this a trigger is recorded as `skipped`.
const MAX_WAITING_ANALYSES: usize = 100;

/// Extra life of a run token past the analysis timeout, for the last request.
const RUN_TOKEN_GRACE: Duration = Duration::from_secs(5);

/// How often old run records are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Which actions an MQTT topic triggers; swapped whole on reload.
#[derive(Default)]
pub(crate) struct ActionIndex {
    trie: SubTrie,
}

impl ActionIndex {
    pub(crate) fn new(filters: impl IntoIterator<Item = (String, Arc<str>)>) -> ActionIndex {
        let mut trie = SubTrie::default();
        for (filter, action) in filters {
            trie.insert(&filter, &action, 0);
        }
        ActionIndex { trie }
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
    pub done: Option<oneshot::Sender<bool>>,
}

/// Reload the action files (SIGHUP, `POST /actions/reload`). On failure the
/// old set stays and the answer lists the problems.
#[derive(Message)]
#[rtype(result = "Result<usize, Vec<String>>")]
pub(crate) struct Reload;

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
}

pub(crate) struct Supervisor {
    cfg: Arc<SupervisorConfig>,
    /// The loaded actions by name.
    actions: HashMap<Arc<str>, Arc<ActionDef>>,
    /// Scheduled actions: the definition hash it was scheduled with, and the timer.
    schedules: HashMap<Arc<str>, (String, SpawnHandle)>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Supervisor {
    pub(crate) fn new(cfg: SupervisorConfig) -> Supervisor {
        Supervisor {
            cfg: Arc::new(cfg),
            actions: HashMap::new(),
            schedules: HashMap::new(),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_ANALYSES)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn reload(&mut self, ctx: &mut Context<Self>) -> Result<usize, Vec<String>> {
        let defs = if self.cfg.dir.is_dir() {
            file::load_dir(&self.cfg.dir)
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
        *self.cfg.index.write() = Arc::new(ActionIndex::new(filters));

        // Schedules whose definition did not change keep their timer, so a
        // reload neither fires them twice nor skips a firing.
        let mut keep = HashMap::new();
        for d in defs.iter().filter(|d| d.enabled) {
            if let Trigger::Schedule { .. } = d.trigger {
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
            if d.enabled
                && matches!(d.trigger, Trigger::Schedule { .. })
                && !self.schedules.contains_key(d.name.as_str())
            {
                self.schedule_next(d.clone(), ctx);
            }
        }
        let recorded: Vec<records::ActionRecord> = defs.iter().map(|d| d.record()).collect();
        self.cfg.store.write_detached("record actions", move |c| {
            records::sync(c, &recorded, now_ms()).map(|_| ())
        });
        tracing::info!(actions = count, dir = %self.cfg.dir.display(), "actions loaded");
        Ok(count)
    }

    fn schedule_next(&mut self, def: Arc<ActionDef>, ctx: &mut Context<Self>) {
        let Trigger::Schedule { schedule, .. } = &def.trigger else {
            return;
        };
        let Some(next) = schedule.upcoming(chrono::Local).next() else {
            return;
        };
        let delay = (next - chrono::Local::now()).to_std().unwrap_or_default();
        let name: Arc<str> = def.name.as_str().into();
        let hash = def.hash.clone();
        let handle = ctx.run_later(delay, move |act, ctx| {
            act.schedules.remove(def.name.as_str());
            let at = next.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let run = Run {
                def: def.clone(),
                trigger: "schedule",
                detail: at,
                device: None,
                topic: None,
                items: Vec::new(),
            };
            run.spawn(act.cfg.clone(), act.slots.clone(), act.waiting.clone());
            act.schedule_next(def, ctx);
        });
        self.schedules.insert(name, (hash, handle));
    }

    /// The enabled actions a publish on `topic` by `device` triggers.
    fn triggered_by(&self, topic: &str, device: &DeviceInfo) -> Vec<Arc<ActionDef>> {
        let index = self.cfg.index.read().clone();
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
            self.cfg.store.clone(),
            self.cfg.keep_runs,
            self.cfg.keep_runs_for,
        );
        ctx.run_interval(PRUNE_EVERY, move |_, _| {
            store.write_detached("prune runs", move |c| {
                records::prune(c, keep, Some(age), now_ms()).map(|_| ())
            });
        });
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
        let (cfg, slots, waiting) = (self.cfg.clone(), self.slots.clone(), self.waiting.clone());
        actix::spawn(async move {
            let ok = on_publish(
                cfg,
                slots,
                waiting,
                defs,
                legacy,
                msg.device,
                msg.topic,
                msg.payload,
            )
            .await;
            if let Some(done) = msg.done {
                let _ = done.send(ok);
            }
        });
    }
}

impl Handler<Presence> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Presence, _ctx: &mut Self::Context) {
        let Some(device) = self.cfg.auth.device(&msg.device_id) else {
            return;
        };
        let kind = if msg.connected {
            EventKind::Connect
        } else {
            EventKind::Disconnect
        };
        for def in self.actions.values() {
            if def.enabled
                && def.trigger == Trigger::DeviceEvent(kind)
                && def.applies_to(&device.name, &device.tags)
            {
                let run = Run {
                    def: def.clone(),
                    trigger: "device_event",
                    detail: kind.as_str().to_string(),
                    device: Some(device.clone()),
                    topic: None,
                    items: Vec::new(),
                };
                run.spawn(self.cfg.clone(), self.slots.clone(), self.waiting.clone());
            }
        }
    }
}

/// Everything a publish that matched actions turns into; false only when
/// the database failed.
#[allow(clippy::too_many_arguments)]
async fn on_publish(
    cfg: Arc<SupervisorConfig>,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    defs: Vec<Arc<ActionDef>>,
    legacy: bool,
    device: Arc<DeviceInfo>,
    topic: Arc<str>,
    payload: Bytes,
) -> bool {
    let started = now_ms();
    let parsed = ingest::from_mqtt(&cfg.parsers, device.clone(), &topic, payload).await;
    let parsed = match parsed {
        Ok(p) => p,
        Err(rejected) => {
            tracing::info!(device = %device.name, topic = %topic, reason = %rejected.reason, "publish gave no data");
            let runs: Vec<records::Run> = defs
                .iter()
                .map(|d| {
                    record(
                        d,
                        "mqtt_topic",
                        &topic,
                        Some(&device),
                        started,
                        RunOutcome::Error,
                        &rejected.reason,
                    )
                })
                .collect();
            runs.iter().for_each(|r| count_run(r.outcome));
            if !runs.is_empty() {
                cfg.store.write_detached("record runs", move |c| {
                    runs.iter()
                        .try_for_each(|r| records::insert_run(c, r).map(|_| ()))
                });
            }
            return true;
        }
    };
    let scope: Vec<Value> = parsed.items.iter().map(|i| i.to_json()).collect();
    let mut store_items = legacy;
    let mut stored_by: Vec<Arc<ActionDef>> = Vec::new();
    for def in defs {
        if def
            .condition
            .as_ref()
            .is_some_and(|c| !c.matches_any(&scope))
        {
            continue;
        }
        match &def.kind {
            ActionKind::InsertBucket => {
                store_items = true;
                stored_by.push(def);
            }
            _ => Run {
                def,
                trigger: "mqtt_topic",
                detail: topic.to_string(),
                device: Some(device.clone()),
                topic: Some(topic.clone()),
                items: scope.clone(),
            }
            .spawn(cfg.clone(), slots.clone(), waiting.clone()),
        }
    }
    if !store_items {
        return true;
    }
    let n = parsed.items.len();
    let runs: Vec<records::Run> = stored_by
        .iter()
        .map(|d| {
            record(
                d,
                "mqtt_topic",
                &topic,
                Some(&device),
                started,
                RunOutcome::Ok,
                &format!("{n} items stored"),
            )
        })
        .collect();
    let items = parsed.items;
    let outcomes: Vec<RunOutcome> = runs.iter().map(|r| r.outcome).collect();
    let result = cfg
        .store
        .write(move |c| {
            bucket::insert(c, &items)?;
            runs.iter()
                .try_for_each(|r| records::insert_run(c, r).map(|_| ()))
        })
        .await;
    match result {
        Ok(()) => {
            outcomes.into_iter().for_each(count_run);
            for d in &stored_by {
                let detail = format!("{n} items stored");
                device.watch.emit(|| Event::Action {
                    action: &d.name,
                    action_type: "insert_bucket",
                    outcome: "ok",
                    detail: &detail,
                });
            }
            true
        }
        Err(e) => {
            tracing::error!(device = %device.name, topic = %topic, error = %e, "data not stored");
            false
        }
    }
}

fn count_run(outcome: RunOutcome) {
    let m = &crate::metrics::METRICS;
    match outcome {
        RunOutcome::Ok => m.runs_ok.inc(),
        RunOutcome::Error => m.runs_error.inc(),
        RunOutcome::Timeout => m.runs_timeout.inc(),
        RunOutcome::Skipped => m.runs_skipped.inc(),
        RunOutcome::Pending => {}
    }
}

fn record(
    def: &ActionDef,
    trigger: &str,
    detail: &str,
    device: Option<&DeviceInfo>,
    started_at: i64,
    outcome: RunOutcome,
    text: &str,
) -> records::Run {
    records::Run {
        id: 0,
        action: def.name.clone(),
        trigger_kind: trigger.to_string(),
        trigger_detail: detail.to_string(),
        device_id: device.map(|d| d.id.clone()),
        started_at,
        ended_at: Some(now_ms()),
        outcome,
        detail: text.to_string(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        attempts: Vec::new(),
    }
}

/// One run of an analysis or an mqtt_publish action.
struct Run {
    def: Arc<ActionDef>,
    trigger: &'static str,
    /// The topic, the schedule time or the event.
    detail: String,
    device: Option<Arc<DeviceInfo>>,
    topic: Option<Arc<str>>,
    /// The message's data items (the analysis scope).
    items: Vec<Value>,
}

impl Run {
    fn spawn(self, cfg: Arc<SupervisorConfig>, slots: Arc<Semaphore>, waiting: Arc<AtomicUsize>) {
        actix::spawn(async move {
            let started = now_ms();
            let mut rec = match &self.def.kind {
                ActionKind::Analysis(spec) => {
                    if waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING_ANALYSES {
                        waiting.fetch_sub(1, Ordering::Relaxed);
                        self.record(started, RunOutcome::Skipped, "too many analyses waiting")
                    } else {
                        let permit = slots.acquire_owned().await;
                        waiting.fetch_sub(1, Ordering::Relaxed);
                        let rec = self.analysis(&cfg, spec).await;
                        drop(permit);
                        rec
                    }
                }
                ActionKind::MqttPublish(spec) => {
                    let first = self.items.first();
                    let value = first.and_then(|i| i.get("value")).map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let vars = TemplateVars {
                        device_name: self.device.as_ref().map(|d| d.name.as_str()).unwrap_or(""),
                        device_id: self.device.as_ref().map(|d| d.id.as_str()).unwrap_or(""),
                        variable: first
                            .and_then(|i| i.get("variable"))
                            .and_then(Value::as_str)
                            .unwrap_or(""),
                        value: value.as_deref().unwrap_or(""),
                        topic: self.topic.as_deref().unwrap_or(""),
                    };
                    match spec.render(&vars) {
                        Err(e) => self.record(started, RunOutcome::Error, &e),
                        Ok((topic, payload)) => {
                            let m = crate::router::Publication::new(
                                topic.as_str().into(),
                                Bytes::from(payload),
                                spec.qos,
                                spec.retain,
                            );
                            let sent = crate::router::publish(&cfg.router, m).await;
                            if sent {
                                self.record(
                                    started,
                                    RunOutcome::Ok,
                                    &format!("published to {topic}"),
                                )
                            } else {
                                self.record(
                                    started,
                                    RunOutcome::Error,
                                    &format!("could not publish to {topic}"),
                                )
                            }
                        }
                    }
                }
                ActionKind::InsertBucket => self.record(
                    started,
                    RunOutcome::Error,
                    "insert_bucket needs an MQTT publish to store",
                ),
            };
            rec.ended_at = Some(now_ms());
            if let Some(d) = &self.device {
                d.watch.emit(|| Event::Action {
                    action: &rec.action,
                    action_type: self.def.kind.type_name(),
                    outcome: rec.outcome.as_str(),
                    detail: &rec.detail,
                });
            }
            count_run(rec.outcome);
            cfg.store.write_detached("record run", move |c| {
                records::insert_run(c, &rec).map(|_| ())
            });
        });
    }

    fn record(&self, started: i64, outcome: RunOutcome, detail: &str) -> records::Run {
        record(
            &self.def,
            self.trigger,
            &self.detail,
            self.device.as_deref(),
            started,
            outcome,
            detail,
        )
    }

    async fn analysis(&self, cfg: &SupervisorConfig, spec: &AnalysisSpec) -> records::Run {
        let started = now_ms();
        let began = Instant::now();
        let device_id = self.device.as_ref().map(|d| d.id.as_str());
        let (token_id, token) = cfg
            .auth
            .issue_run_token(device_id, spec.timeout + RUN_TOKEN_GRACE);
        let environment: Vec<Value> = spec
            .env
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let context = json!({
            "analysis_id": self.def.name,
            "token": token,
            "environment": environment,
            "trigger": self.trigger,
            "trigger_detail": self.detail,
            "topic": self.topic.as_deref(),
            "device": self.device.as_ref().map(|d| json!({"id": d.id, "name": d.name, "tags": d.tags})),
        });
        let result = analysis::run(
            spec,
            AnalysisInput {
                context,
                scope: self.items.clone(),
                analysis_id: self.def.name.clone(),
                token,
                api_base: cfg.api_base.clone(),
                pass_env: cfg.pass_env.clone(),
            },
        )
        .await;
        cfg.auth.remove_token(&token_id);
        tracing::info!(action = %self.def.name, outcome = result.outcome.as_str(), took_ms = began.elapsed().as_millis() as u64, "analysis ran");
        let mut rec = self.record(started, result.outcome, &result.detail);
        rec.exit_code = result.exit_code;
        rec.stdout = result.stdout;
        rec.stderr = result.stderr;
        rec
    }
}
