//! One run of an `analysis` or `mqtt_publish` action, started once what set
//! it off has committed, and recorded when it ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;

use super::analysis::{self, AnalysisInput, AnalysisSpec};
use super::file::{ActionDef, ActionKind};
use super::fire::{origin_with, record, template_vars, Cause};
use super::supervisor::{count_run, Engine, MAX_WAITING_ANALYSES};
use crate::device::watch::Event;
use crate::store::actions::{self as records, RunOutcome};
use crate::store::now_ms;

/// Extra life of a run token past the analysis timeout, for the last request.
const RUN_TOKEN_GRACE: Duration = Duration::from_secs(5);

/// One run of an analysis or an mqtt_publish action.
pub(crate) struct Run {
    def: Arc<ActionDef>,
    cause: Cause,
}

impl Run {
    pub(crate) fn new(def: Arc<ActionDef>, cause: Cause) -> Run {
        Run { def, cause }
    }

    /// Runs it on the current arbiter and records how it went.
    pub(crate) fn spawn(self, engine: Arc<Engine>) {
        actix::spawn(async move {
            let started = now_ms();
            let mut rec = match &self.def.kind {
                ActionKind::Analysis(spec) => {
                    if engine.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING_ANALYSES {
                        engine.waiting.fetch_sub(1, Ordering::Relaxed);
                        self.record(started, RunOutcome::Skipped, "too many analyses waiting")
                    } else {
                        let permit = engine.slots.acquire().await;
                        engine.waiting.fetch_sub(1, Ordering::Relaxed);
                        let rec = self.analysis(&engine, spec).await;
                        drop(permit);
                        rec
                    }
                }
                ActionKind::MqttPublish(spec) => {
                    let vars = template_vars(&self.def, &self.cause);
                    match spec.render(&vars) {
                        Err(e) => self.record(started, RunOutcome::Error, &e),
                        Ok((topic, payload)) => {
                            let m = crate::router::Publication::new(
                                topic.as_str().into(),
                                Bytes::from(payload),
                                spec.qos,
                                spec.retain,
                            );
                            let sent = crate::router::publish(&engine.cfg.router, m).await;
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
                other => self.record(
                    started,
                    RunOutcome::Error,
                    &format!("{} does not run this way", other.type_name()),
                ),
            };
            rec.ended_at = Some(now_ms());
            if let Some(d) = &self.cause.device {
                d.watch.emit(|| Event::Action {
                    action: &rec.action,
                    action_type: self.def.kind.type_name(),
                    outcome: rec.outcome.as_str(),
                    detail: &rec.detail,
                });
            }
            count_run(rec.outcome);
            engine.cfg.store.write_detached("record run", move |c| {
                records::insert_run(c, &rec).map(|_| ())
            });
        });
    }

    fn record(&self, started: i64, outcome: RunOutcome, detail: &str) -> records::RunRecord {
        let mut rec = record(&self.def, &self.cause, outcome, detail);
        rec.started_at = started;
        rec
    }

    async fn analysis(&self, engine: &Engine, spec: &AnalysisSpec) -> records::RunRecord {
        let started = now_ms();
        let began = Instant::now();
        let cfg = &engine.cfg;
        let device = self.cause.device.as_ref();
        let device_id = device.map(|d| d.id.as_str());
        let (token_id, token) = cfg
            .auth
            .issue_run_token(device_id, spec.timeout + RUN_TOKEN_GRACE);
        // What the analysis writes back with this token is this action's
        // doing (the loop guard).
        engine.run_origins.lock().insert(
            token_id.clone(),
            origin_with(&self.cause.origin, &self.def.name),
        );
        // TagoIO's action context, in the environment list.
        let mut action_env = vec![
            ("_action_id".to_string(), self.def.name.clone()),
            (
                "_action_type".to_string(),
                self.def.trigger.tagoio_type().to_string(),
            ),
            ("_action_state".to_string(), self.cause.state.to_string()),
        ];
        if let Some(d) = device {
            action_env.push(("_device_id".to_string(), d.id.clone()));
        }
        let environment: Vec<serde_json::Value> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(action_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let context = json!({
            "analysis_id": self.def.name,
            "token": token,
            "environment": environment,
            "trigger": self.cause.trigger,
            "trigger_detail": self.cause.detail,
            "topic": self.cause.topic.as_deref(),
            "device": device.map(|d| json!({"id": d.id, "name": d.name, "tags": d.tags})),
        });
        let result = analysis::run(
            spec,
            AnalysisInput {
                context,
                scope: self.cause.items.clone(),
                analysis_id: self.def.name.clone(),
                token,
                api_base: cfg.api_base.clone(),
                pass_env: cfg.pass_env.clone(),
                action_env,
            },
        )
        .await;
        cfg.auth.remove_token(&token_id);
        engine.run_origins.lock().remove(&token_id);
        tracing::info!(action = %self.def.name, outcome = result.outcome.as_str(), took_ms = began.elapsed().as_millis() as u64, "analysis ran");
        let mut rec = self.record(started, result.outcome, &result.detail);
        rec.exit_code = result.exit_code;
        rec.stdout = result.stdout;
        rec.stderr = result.stderr;
        rec
    }
}
