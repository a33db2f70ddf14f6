//! The admin API's view of actions (`Authorization: Bearer ADMIN_TOKEN`): the
//! loaded actions with their last run and the devices each is locked for,
//! each action's run records (newest first, paged by run id), and the reset
//! of a lock (`POST /actions/{name}/unlock?device=NAME`). (`POST
//! /actions/reload` belongs with the action supervisor.)

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Shared};
use crate::actions::data::format_time;
use crate::actions::supervisor::{Unlock, UnlockError};
use crate::store::actions::{self, ActionRow, LockRow, RunRecord};

/// Runs per page when `limit` is not given.
const DEFAULT_RUNS_PAGE: usize = 20;

/// The largest page of runs: each run carries up to 16 KiB of output.
const MAX_RUNS_PAGE: usize = 500;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/actions", web::get().to(list_actions))
        .route("/actions/{name}/runs", web::get().to(list_runs))
        .route("/actions/{name}/unlock", web::post().to(unlock));
}

/// A run record as the API shows it.
pub(super) fn run_json(r: &RunRecord) -> Value {
    json!({
        "id": r.id,
        "action": r.action,
        "trigger": {"kind": r.trigger_kind, "detail": r.trigger_detail},
        "device_id": r.device_id,
        "started_at": format_time(r.started_at),
        "ended_at": r.ended_at.map(format_time),
        "duration_ms": r.ended_at.map(|end| end - r.started_at),
        "outcome": r.outcome,
        "detail": r.detail,
        "exit_code": r.exit_code,
        "stdout": r.stdout,
        "stderr": r.stderr,
        "attempts": r.attempts,
        "count": r.count,
    })
}

fn action_json(a: &ActionRow, locks: &[&LockRow]) -> Value {
    let locks: Vec<Value> = locks
        .iter()
        .map(|l| {
            json!({
                "device": l.device_name,
                "device_id": l.device_id,
                "locked_at": format_time(l.locked_at),
            })
        })
        .collect();
    json!({
        "name": a.name,
        "enabled": a.enabled,
        "type": a.definition.get("type"),
        "trigger": a.definition.get("trigger"),
        "file": a.file,
        "line": a.line,
        "hash": a.hash,
        "loaded_at": format_time(a.loaded_at),
        "definition": a.definition,
        "last_run": a.last_run.as_ref().map(run_json),
        "locks": locks,
    })
}

async fn list_actions(_admin: super::admin::Admin, broker: Shared) -> ApiResult {
    let (rows, locks) = broker
        .store
        .read(|c| Ok((actions::list_actions(c)?, actions::all_locks(c)?)))
        .await?;
    Ok(ok(rows
        .iter()
        .map(|a| {
            let mine: Vec<&LockRow> = locks.iter().filter(|l| l.action == a.name).collect();
            action_json(a, &mine)
        })
        .collect::<Vec<_>>()))
}

/// `?device=NAME`.
#[derive(Deserialize)]
struct UnlockQuery {
    device: Option<String>,
}

/// `POST /actions/{name}/unlock?device=NAME`: the action runs again for
/// the device on its next matching batch.
async fn unlock(
    _admin: super::admin::Admin,
    req: HttpRequest,
    broker: Shared,
    name: web::Path<String>,
) -> ApiResult {
    let query = web::Query::<UnlockQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let Some(device) = query.into_inner().device.filter(|d| !d.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "device: name the device to unlock the action for (?device=NAME)",
        ));
    };
    let action = name.into_inner();
    let answer = broker
        .actions
        .send(Unlock {
            action: action.clone(),
            device: device.clone(),
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
    match answer {
        Ok(true) => Ok(ok(format!("{action} unlocked for {device}"))),
        Ok(false) => Ok(ok(format!("{action} was not locked for {device}"))),
        Err(UnlockError::NoAction) => Err(ApiError::new(StatusCode::NOT_FOUND, "no such action")),
        Err(UnlockError::NoDevice) => Err(ApiError::new(StatusCode::NOT_FOUND, "no such device")),
        Err(UnlockError::NeverLocks) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{action} has no unlock, so it never locks"),
        )),
        Err(UnlockError::Store(e)) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

/// `?limit=&before=` as written; parsed by hand for TagoIO-shaped errors.
#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<String>,
    before: Option<String>,
}

async fn list_runs(
    _admin: super::admin::Admin,
    req: HttpRequest,
    broker: Shared,
    name: web::Path<String>,
) -> ApiResult {
    let query = web::Query::<RunsQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_RUNS_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_RUNS_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a number from 1 to {MAX_RUNS_PAGE}, got {text:?}"),
                ))
            }
        },
    };
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "before must be a run id (the last id of the previous page), got {text:?}"
                    ),
                ))
            }
        },
    };
    let name = name.into_inner();
    let (known, runs) = broker
        .store
        .read(move |c| {
            let runs = actions::runs_of(c, &name, limit, before)?;
            let known = !runs.is_empty() || actions::known(c, &name)?;
            Ok((known, runs))
        })
        .await?;
    if !known {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such action"));
    }
    Ok(ok(runs.iter().map(run_json).collect::<Vec<_>>()))
}
