//! Deliveries: `http_post` and `email` runs, made off the message path.
//!
//! A delivery is queued in SQLite (`store::deliveries`) in the transaction
//! of what triggered it, with its request rendered. This worker takes the
//! most overdue one whose action has no attempt under way (one at a time
//! per action, so one slow endpoint holds one of the
//! [`MAX_CONCURRENT_DELIVERIES`] slots, never all of them), makes the
//! attempt on the blocking pool (`http.rs`, `email.rs`), and writes how it
//! went: each attempt is appended to the run record; a failure is retried
//! after the action's `backoff`, doubling up to 60 s, until its `attempts`
//! are spent (an SMTP refusal the server calls permanent is not retried);
//! then the delivery is deleted and, for `http_post` with a
//! `fallback_device`, its items are stored there with the error. Nothing
//! of this holds memory beyond the attempts under way: the queue is the
//! table, read one row at a time.

mod email;
mod http;

pub(crate) use email::SmtpSettings;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{Notify, Semaphore};

use super::file::RetrySpec;
use super::fire::{commit, fallback_items, Fired, Origin};
use super::supervisor::{count_run, Engine};
use crate::device::watch::Event;
use crate::metrics::METRICS;
use crate::store::actions::{self as records, RunOutcome};
use crate::store::deliveries::{self, Delivery};
use crate::store::item::format_time;
use crate::store::now_ms;

/// Attempts under way at once, over all actions.
const MAX_CONCURRENT_DELIVERIES: usize = 8;

/// The longest the worker sleeps without looking at the queue.
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// How much of an error a run record, or a fallback item, keeps.
pub(crate) const MAX_ERROR_CHARS: usize = 500;

/// Why an attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub error: String,
    /// Retrying would not help (an SMTP 5xx, a message that cannot be built).
    pub permanent: bool,
}

/// The worker's state: who to wake, and which actions have an attempt
/// under way (at most [`MAX_CONCURRENT_DELIVERIES`] names).
#[derive(Default)]
pub(crate) struct Queue {
    wake: Notify,
    busy: Mutex<HashSet<String>>,
}

impl Queue {
    /// A delivery was queued, or an attempt ended: look at the queue again.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    fn busy(&self) -> Vec<String> {
        self.busy.lock().iter().cloned().collect()
    }
}

/// The delivery worker; runs until the process ends.
pub(crate) async fn run(engine: Arc<Engine>) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT_DELIVERIES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let busy = engine.deliveries.busy();
        let next = engine
            .cfg
            .store
            .read(move |c| deliveries::next_due(c, now_ms(), &busy))
            .await;
        match next {
            Ok(Some(d)) => {
                engine.deliveries.busy.lock().insert(d.action.clone());
                let engine = engine.clone();
                actix::spawn(async move {
                    let action = d.action.clone();
                    attempt(&engine, d).await;
                    engine.deliveries.busy.lock().remove(&action);
                    drop(slot);
                    engine.deliveries.wake();
                });
            }
            Ok(None) => {
                drop(slot);
                let busy = engine.deliveries.busy();
                let due = engine
                    .cfg
                    .store
                    .read(move |c| deliveries::next_due_at(c, &busy))
                    .await
                    .ok()
                    .flatten();
                let wait = match due {
                    Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64).min(IDLE_LOOK),
                    None => IDLE_LOOK,
                };
                tokio::select! {
                    _ = engine.deliveries.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                drop(slot);
                tracing::warn!(error = %e, "deliveries: cannot read the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What a delivery's request says about how to try it.
struct Plan {
    retry: RetrySpec,
    timeout: Duration,
}

fn plan_of(request: &Value) -> Plan {
    let ms = |key: &str, default: u64| request.get(key).and_then(Value::as_u64).unwrap_or(default);
    Plan {
        retry: RetrySpec {
            attempts: ms("attempts", 1).clamp(1, u64::from(super::file::MAX_ATTEMPTS)) as u32,
            backoff: Duration::from_millis(ms("backoff_ms", 1000)),
        },
        timeout: Duration::from_millis(ms("timeout_ms", 10_000)),
    }
}

/// Makes one attempt of `d` and writes how it went.
async fn attempt(engine: &Arc<Engine>, d: Delivery) {
    let n = d.attempts + 1;
    let plan = plan_of(&d.request);
    let at = now_ms();
    let began = Instant::now();
    let request = d.request.clone();
    let smtp = engine.cfg.smtp.clone();
    let kind = d.kind.clone();
    let result = tokio::task::spawn_blocking(move || send(&kind, &request, n, plan.timeout, smtp))
        .await
        .unwrap_or_else(|e| {
            Err(Failure {
                status: None,
                error: format!("the attempt crashed: {e}"),
                permanent: false,
            })
        });
    let took = began.elapsed().as_millis() as u64;
    let (ok, status, said) = match &result {
        Ok(said) => (true, None, said.clone()),
        Err(f) => (
            false,
            f.status,
            f.error.chars().take(MAX_ERROR_CHARS).collect(),
        ),
    };
    if ok {
        METRICS.delivery_attempts_ok.inc();
    } else {
        METRICS.delivery_attempts_failed.inc();
    }
    let record = json!({
        "attempt": n,
        "at": format_time(at),
        "duration_ms": took,
        "ok": ok,
        "status": status,
        "detail": said,
    });
    let permanent = matches!(&result, Err(f) if f.permanent);
    let last = ok || permanent || n >= plan.retry.attempts;
    let device = d
        .device_id
        .as_deref()
        .and_then(|id| engine.cfg.auth.device(id));
    let action_type = if d.kind == "email" {
        "email"
    } else {
        "http_post"
    };

    if !last {
        let wait = plan.retry.delay_after(n);
        let next_at = now_ms() + wait.as_millis() as i64;
        let detail = format!(
            "attempt {n} of {} failed: {said}; next in {}",
            plan.retry.attempts,
            crate::actions::analysis::human(wait)
        );
        let (id, run_id, shown) = (d.id, d.run_id, detail.clone());
        let written = engine
            .cfg
            .store
            .write(move |c| {
                // Dropped from a full queue meanwhile: no retry, and the run
                // stays as the drop ended it, with this attempt added.
                if !deliveries::exists(c, id)? {
                    return records::append_attempt(c, run_id, &record);
                }
                records::record_attempt(c, run_id, &record, RunOutcome::Pending, None, &detail)?;
                deliveries::reschedule(c, id, n, next_at)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(action = %d.action, error = %e, "deliveries: attempt not recorded; it will be made again");
        }
        if let Some(device) = &device {
            device.watch.emit(|| Event::Delivery {
                action: &d.action,
                action_type,
                attempt: n,
                outcome: "retry",
                detail: &shown,
            });
        }
        return;
    }

    let (outcome, mut detail) = if ok {
        (RunOutcome::Ok, format!("delivered on attempt {n}: {said}"))
    } else {
        (
            RunOutcome::Error,
            format!(
                "failed after {n} attempt{}: {said}",
                if n == 1 { "" } else { "s" }
            ),
        )
    };
    // The fallback: the items, with why, in the fallback device's bucket,
    // in the same transaction as the delivery's end.
    let mut fallback = None;
    if !ok && d.kind == "http_post" {
        if let Some(name) = d.request.get("fallback_device").and_then(Value::as_str) {
            match engine.cfg.auth.device_by_name(name) {
                None => detail.push_str(&format!(
                    "; fallback device {name} does not exist, the items are dropped"
                )),
                Some(target) => {
                    let items = d
                        .request
                        .get("body")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let url = d.request.get("url").and_then(Value::as_str).unwrap_or("");
                    match fallback_items(&items, &target, &said, url, n) {
                        Ok(items) => {
                            detail.push_str(&format!(
                                "; {} items stored in fallback device {name}",
                                items.len()
                            ));
                            fallback = Some((target, items));
                        }
                        Err(why) => detail.push_str(&format!(
                            "; the items could not go to fallback device {name}: {why}"
                        )),
                    }
                }
            }
        }
    }
    let (id, run_id, shown) = (d.id, d.run_id, detail.clone());
    let end = now_ms();
    let extra: super::fire::Extra = Box::new(move |c| {
        records::record_attempt(c, run_id, &record, outcome, Some(end), &detail)?;
        deliveries::remove(c, id)
    });
    let written = match fallback {
        None => commit(engine, Vec::new(), Fired::default(), Some(extra)).await,
        Some((target, items)) => {
            let origin: Origin = d
                .request
                .get("origin")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(Arc::from).collect())
                .unwrap_or_else(|| Arc::from(vec![Arc::from(d.action.as_str())]));
            let index = engine.cfg.index.read().clone();
            let mut fired = Fired::default();
            let source = format!("fallback of {}", d.action);
            fired.stored(engine, &index, &target, &items, &origin, &source);
            commit(engine, items, fired, Some(extra)).await
        }
    };
    match written {
        Ok(()) => count_run(outcome),
        Err(e) => {
            tracing::warn!(action = %d.action, error = %e, "deliveries: last attempt not recorded; it will be made again")
        }
    }
    if let Some(device) = &device {
        device.watch.emit(|| Event::Delivery {
            action: &d.action,
            action_type,
            attempt: n,
            outcome: outcome.as_str(),
            detail: &shown,
        });
    }
}

/// The attempt itself, on the blocking pool.
fn send(
    kind: &str,
    request: &Value,
    attempt: u32,
    timeout: Duration,
    smtp: Option<Arc<SmtpSettings>>,
) -> Result<String, Failure> {
    let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or("");
    match kind {
        "http_post" => {
            let headers: BTreeMap<String, String> = request
                .get("headers")
                .and_then(Value::as_object)
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let body = request
                .get("body")
                .cloned()
                .unwrap_or(Value::Array(Vec::new()))
                .to_string();
            http::post(text("url"), &headers, body.as_bytes(), attempt - 1, timeout)
        }
        "email" => {
            let Some(smtp) = smtp else {
                return Err(Failure {
                    status: None,
                    error: "config.toml has no [smtp]: email actions cannot send".into(),
                    permanent: true,
                });
            };
            let to: Vec<String> = request
                .get("to")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            email::send(&smtp, &to, text("subject"), text("body"), timeout)
        }
        other => Err(Failure {
            status: None,
            error: format!("unknown delivery kind {other:?}"),
            permanent: true,
        }),
    }
}
