//! What a message or a stored batch sets off, and its one transaction.
//!
//! A publish that matched `mqtt_topic` actions, and every batch of items
//! stored in a bucket by any path (`insert_bucket`, `tago/data/post`,
//! `POST /data`, an analysis writing back, an `http_post` fallback), is
//! decided here before anything is written: which actions run (their
//! conditions, and for `variable` triggers their lock), what their
//! deliveries send (templates filled). Then one transaction writes the
//! items, the run records, the deliveries and the changed locks; the
//! publisher or the HTTP client is answered once it has committed, and only
//! then do analyses and `mqtt_publish` runs start.
//!
//! **The loop guard.** Every batch carries its origin: the chain of actions
//! whose doing it is (an analysis writing through `POST /data` with its run
//! token, an `http_post` storing its items in its fallback device, and the
//! actions that led to those). An action in the chain is not triggered by
//! the batch, so no action re-triggers itself through its own writes,
//! however many actions lie between.

use std::sync::Arc;

use rusqlite::Connection;
use serde_json::{json, Value};

use super::deliver;
use super::file::{
    all_hold, render_line, render_template, render_url, ActionDef, ActionKind, TemplateVars,
    Trigger,
};
use super::locks::LockKey;
use super::run::Run;
use super::supervisor::{count_run, ActionIndex, Engine};
use crate::device::watch::Event;
use crate::device::DeviceInfo;
use crate::store::actions::{self as records, RunOutcome};
use crate::store::deliveries::{self, NewDelivery};
use crate::store::item::DataItem;
use crate::store::{data as bucket, now_ms, Ingest, StoreError};

/// The actions a batch is the doing of (the loop guard); empty for what a
/// device sends.
pub(crate) type Origin = Arc<[Arc<str>]>;

/// `origin` with `action` added.
pub(crate) fn origin_with(origin: &Origin, action: &str) -> Origin {
    origin
        .iter()
        .cloned()
        .chain(std::iter::once(Arc::from(action)))
        .collect()
}

/// Extra work for a batch's transaction (a delivery's last attempt, say).
pub(crate) type Extra = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

/// What a message or stored batch sets off, decided before its commit.
#[derive(Default)]
pub(crate) struct Fired {
    /// Analyses and `mqtt_publish` runs: started once the batch committed.
    runs: Vec<Run>,
    /// `http_post` and `email` deliveries, queued in the batch's transaction.
    deliveries: Vec<NewDelivery>,
    /// Run records written with the batch (those of runs decided not to
    /// run, and errors).
    records: Vec<records::RunRecord>,
    /// `insert_bucket`'s `ok` runs with the items each stored: tallied in
    /// the batch's transaction, one row per action, device and topic for
    /// the whole commit (`store::actions::tally`).
    tallied: Vec<(records::RunRecord, usize)>,
    /// Lock keys whose state changed: written as they are when the
    /// transaction runs.
    locks: Vec<LockKey>,
    /// Inspector events to show once committed: (device, action, type,
    /// outcome, detail).
    events: Vec<Shown>,
}

/// One event for a device's Live Inspector, shown after the commit.
struct Shown {
    device: Arc<DeviceInfo>,
    action: String,
    kind: Kind,
}

enum Kind {
    Action {
        action_type: &'static str,
        outcome: &'static str,
        detail: String,
    },
    Lock {
        state: &'static str,
        by: &'static str,
    },
}

/// How one run was set off.
pub(crate) struct Cause {
    /// The trigger's kind, as the run record names it.
    pub trigger: &'static str,
    /// The topic, the variables, the schedule time, or the event.
    pub detail: String,
    pub device: Option<Arc<DeviceInfo>>,
    pub topic: Option<Arc<str>>,
    /// The triggering items (the analysis scope, the http_post body).
    pub items: Vec<Value>,
    pub origin: Origin,
    /// `locked` or `unlocked`, with this run counted.
    pub state: &'static str,
}

impl Fired {
    /// Whether nothing was set off.
    pub(crate) fn is_empty(&self) -> bool {
        self.runs.is_empty()
            && self.deliveries.is_empty()
            && self.records.is_empty()
            && self.tallied.is_empty()
            && self.locks.is_empty()
            && self.events.is_empty()
    }

    /// Adds a run of `def`, by its type: a run to start after the commit,
    /// or a delivery queued in it.
    pub(crate) fn add(&mut self, engine: &Engine, def: &Arc<ActionDef>, cause: Cause) {
        match &def.kind {
            ActionKind::HttpPost(_) | ActionKind::Email(_) => {
                let device = cause.device.clone();
                match delivery(engine, def, &cause) {
                    Ok(d) => {
                        if let Some(device) = device {
                            self.events.push(Shown {
                                device,
                                action: def.name.clone(),
                                kind: Kind::Action {
                                    action_type: def.kind.type_name(),
                                    outcome: "pending",
                                    detail: "queued for delivery".into(),
                                },
                            });
                        }
                        self.deliveries.push(d);
                    }
                    Err(why) => {
                        let rec = record(def, &cause, RunOutcome::Error, &why);
                        self.records.push(rec);
                    }
                }
            }
            _ => self.runs.push(Run::new(def.clone(), cause)),
        }
    }

    /// An `insert_bucket` run, recorded (in aggregate with the other runs
    /// of its commit) with the items it stores.
    pub(crate) fn stored_by(&mut self, def: &ActionDef, cause: &Cause, n: usize) {
        let detail = records::stored_detail(n as u64, 1);
        self.tallied
            .push((record(def, cause, RunOutcome::Ok, &detail), n));
        if let Some(device) = &cause.device {
            self.events.push(Shown {
                device: device.clone(),
                action: def.name.clone(),
                kind: Kind::Action {
                    action_type: "insert_bucket",
                    outcome: "ok",
                    detail,
                },
            });
        }
    }

    /// The variable triggers a batch of `device`'s stored items sets off,
    /// with `origin` its loop guard and `source` where it came from (a
    /// topic, `POST /data`).
    pub(crate) fn stored(
        &mut self,
        engine: &Engine,
        index: &ActionIndex,
        device: &Arc<DeviceInfo>,
        items: &[DataItem],
        origin: &Origin,
        source: &str,
    ) {
        let candidates = index.for_variables(items.iter().map(|i| i.variable.as_str()));
        if candidates.is_empty() {
            return;
        }
        let scope: Vec<Value> = items.iter().map(DataItem::to_json).collect();
        for def in candidates {
            if !def.enabled
                || !def.applies_to(&device.name, &device.tags)
                || origin.iter().any(|a| **a == *def.name)
            {
                continue;
            }
            let Trigger::Variable(variables) = &def.trigger else {
                continue;
            };
            let key: LockKey = (Arc::from(def.name.as_str()), device.id.clone());
            if !def.unlock.is_empty() && engine.locks.is_locked(&key) {
                if !all_hold(&def.unlock, &scope) {
                    continue;
                }
                engine.locks.unlock(&key);
                self.locks.push(key.clone());
                self.events.push(Shown {
                    device: device.clone(),
                    action: def.name.clone(),
                    kind: Kind::Lock {
                        state: "unlocked",
                        by: "data",
                    },
                });
            }
            let triggering: Vec<Value> = scope
                .iter()
                .filter(|item| {
                    item.get("variable")
                        .and_then(Value::as_str)
                        .is_some_and(|v| variables.iter().any(|w| w == v))
                })
                .cloned()
                .collect();
            if triggering.is_empty() || !all_hold(&def.conditions, &scope) {
                continue;
            }
            let mut state = "unlocked";
            let mut detail = format!("{source}: {}", variables_of(&triggering));
            if !def.unlock.is_empty() {
                if engine.locks.lock(&key, now_ms()) {
                    state = "locked";
                    self.locks.push(key.clone());
                    self.events.push(Shown {
                        device: device.clone(),
                        action: def.name.clone(),
                        kind: Kind::Lock {
                            state: "locked",
                            by: "a run",
                        },
                    });
                } else {
                    detail.push_str(" (not locked: the lock table is full)");
                    tracing::warn!(action = %def.name, device = %device.name, "lock table full: the action runs without locking");
                }
            }
            self.add(
                engine,
                &def,
                Cause {
                    trigger: "variable",
                    detail,
                    device: Some(device.clone()),
                    topic: items
                        .iter()
                        .find_map(|i| i.metadata.as_ref()?.get("mqtt_topic")?.as_str())
                        .map(Arc::from),
                    items: triggering,
                    origin: origin.clone(),
                    state,
                },
            );
        }
    }
}

/// The variables of some items, each once, in order: `temperature, humidity`.
fn variables_of(items: &[Value]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if let Some(v) = item.get("variable").and_then(Value::as_str) {
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
    }
    seen.join(", ")
}

/// A run record for `def` ending now.
pub(crate) fn record(
    def: &ActionDef,
    cause: &Cause,
    outcome: RunOutcome,
    detail: &str,
) -> records::RunRecord {
    let now = now_ms();
    records::RunRecord {
        id: 0,
        action: def.name.clone(),
        trigger_kind: cause.trigger.to_string(),
        trigger_detail: cause.detail.clone(),
        device_id: cause.device.as_ref().map(|d| d.id.clone()),
        started_at: now,
        ended_at: (outcome != RunOutcome::Pending).then_some(now),
        outcome,
        detail: detail.to_string(),
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        attempts: Vec::new(),
        count: 1,
    }
}

/// What the templates stand for in a run: the device, the topic, the
/// state, and the first item that meets the action's first condition (or
/// the first item).
pub(crate) fn template_vars(def: &ActionDef, cause: &Cause) -> TemplateVars {
    let item = def
        .conditions
        .first()
        .and_then(|c| cause.items.iter().find(|i| c.matches(i)))
        .or(cause.items.first());
    TemplateVars {
        device_name: cause
            .device
            .as_ref()
            .map(|d| d.name.clone())
            .unwrap_or_default(),
        device_id: cause
            .device
            .as_ref()
            .map(|d| d.id.clone())
            .unwrap_or_default(),
        topic: cause.topic.as_deref().unwrap_or("").to_string(),
        action_state: cause.state.to_string(),
        ..TemplateVars::default()
    }
    .with_item(item)
}

/// The delivery a run of an `http_post` or `email` action queues: its
/// request rendered now.
fn delivery(engine: &Engine, def: &ActionDef, cause: &Cause) -> Result<NewDelivery, String> {
    let vars = template_vars(def, cause);
    let now = now_ms();
    let (kind, request, max_pending) = match &def.kind {
        ActionKind::HttpPost(spec) => {
            let headers: serde_json::Map<String, Value> = spec
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(render_line(v, &vars))))
                .collect();
            (
                "http_post",
                json!({
                    "url": render_url(&spec.url, &vars),
                    "headers": headers,
                    "body": cause.items,
                    "attempts": spec.retry.attempts,
                    "backoff_ms": spec.retry.backoff.as_millis() as u64,
                    "timeout_ms": spec.timeout.as_millis() as u64,
                    "fallback_device": spec.fallback_device,
                    "origin": origin_with(&cause.origin, &def.name).iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                }),
                spec.max_pending,
            )
        }
        ActionKind::Email(spec) => {
            if engine.cfg.smtp.is_none() {
                return Err("not sent: config.toml has no [smtp] for email actions".into());
            }
            (
                "email",
                json!({
                    "to": spec.to,
                    "subject": render_line(&spec.subject, &vars),
                    "body": render_template(&spec.body, &vars),
                    "attempts": spec.retry.attempts,
                    "backoff_ms": spec.retry.backoff.as_millis() as u64,
                    "timeout_ms": spec.timeout.as_millis() as u64,
                }),
                spec.max_pending,
            )
        }
        _ => return Err(format!("{} is not a delivery", def.kind.type_name())),
    };
    Ok(NewDelivery {
        run: record(def, cause, RunOutcome::Pending, "queued for delivery"),
        kind,
        request,
        max_pending,
        due: now,
    })
}

/// Writes `items` of `device` (if any), `extra`, and what `fired` must
/// write, in one transaction; once it has committed, starts what `fired`
/// starts. Nothing is started when it fails.
pub(crate) async fn commit(
    engine: &Arc<Engine>,
    items: Vec<DataItem>,
    fired: Fired,
    extra: Option<Extra>,
) -> Result<(), StoreError> {
    let Fired {
        runs,
        deliveries: queued,
        records: recorded,
        tallied,
        locks,
        events,
    } = fired;
    let outcomes: Vec<RunOutcome> = recorded
        .iter()
        .map(|r| r.outcome)
        .chain(tallied.iter().map(|(r, _)| r.outcome))
        .collect();
    let has_deliveries = !queued.is_empty();
    if extra.is_none() && queued.is_empty() && locks.is_empty() {
        // Rows and run records only (an insert_bucket publish, say): written
        // with the other batches waiting, in one SAVEPOINT.
        if !items.is_empty() || !recorded.is_empty() || !tallied.is_empty() {
            engine
                .cfg
                .store
                .ingest(Ingest {
                    items,
                    runs: recorded,
                    tallied,
                })
                .await?;
        }
    } else {
        let shared = engine.clone();
        engine
            .cfg
            .store
            .write(move |c| {
                if !items.is_empty() {
                    bucket::insert(c, &items)?;
                }
                if let Some(extra) = extra {
                    extra(c)?;
                }
                for r in &recorded {
                    records::insert_run(c, r)?;
                }
                for d in &queued {
                    deliveries::enqueue(c, d)?;
                }
                for key in &locks {
                    records::set_lock(c, &key.0, &key.1, shared.locks.locked_at(key))?;
                }
                // Last: nothing after it can fail and roll this job back.
                for (r, n) in tallied {
                    records::tally(r, n);
                }
                Ok(())
            })
            .await?;
    }
    outcomes.into_iter().for_each(count_run);
    if has_deliveries {
        engine.deliveries.wake();
    }
    for shown in events {
        match &shown.kind {
            Kind::Action {
                action_type,
                outcome,
                detail,
            } => shown.device.watch.emit(|| Event::Action {
                action: &shown.action,
                action_type,
                outcome,
                detail,
            }),
            Kind::Lock { state, by } => shown.device.watch.emit(|| Event::Lock {
                action: &shown.action,
                state,
                by,
            }),
        }
    }
    for run in runs {
        run.spawn(engine.clone());
    }
    Ok(())
}

/// Stores a batch of `device`'s items (parsed and validated) and sets off
/// what it triggers; `Ok` once committed.
pub(crate) async fn store_batch(
    engine: &Arc<Engine>,
    device: Arc<DeviceInfo>,
    items: Vec<DataItem>,
    origin: Origin,
    source: &str,
) -> Result<(), StoreError> {
    let index = engine.cfg.index.read().clone();
    let mut fired = Fired::default();
    fired.stored(engine, &index, &device, &items, &origin, source);
    commit(engine, items, fired, None).await
}

/// The `http_post` fallback: the items of a delivery that failed every
/// attempt, for the fallback device, with `metadata._http_error`,
/// `_http_url` and `_http_attempts` added; validated as any data is.
pub(crate) fn fallback_items(
    items: &[Value],
    fallback: &DeviceInfo,
    error: &str,
    url: &str,
    attempts: u32,
) -> Result<Vec<DataItem>, String> {
    let error: String = error.chars().take(deliver::MAX_ERROR_CHARS).collect();
    let items: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            if let Some(obj) = item.as_object_mut() {
                let meta = obj
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if !meta.is_object() {
                    *meta = Value::Object(serde_json::Map::new());
                }
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("_http_error".into(), Value::String(error.clone()));
                    meta.insert("_http_url".into(), Value::String(url.to_string()));
                    meta.insert("_http_attempts".into(), json!(attempts));
                }
            }
            item
        })
        .collect();
    crate::actions::data::validate(items, &fallback.id, now_ms()).map_err(|e| e.to_string())
}
