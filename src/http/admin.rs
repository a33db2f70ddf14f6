//! The admin API (`Authorization: Bearer ADMIN_TOKEN`): devices and their
//! tokens. A change is committed to SQLite first, then applied to the live
//! broker: a revoked token or deleted device closes its connections at once.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, ApiError, ApiResult, Shared};
use crate::actions::analysis::human;
use crate::actions::data::{format_time, parse_date};
use crate::device::{ConnectedCounts, Deleted, Revoked};
use crate::store::devices::{self, Device, Param, Permission, Tag, Token};
use crate::store::now_ms;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices", web::get().to(list_devices))
        .route("/devices", web::post().to(create_device))
        .route("/devices/{name}", web::get().to(show_device))
        .route("/devices/{name}", web::patch().to(patch_device))
        .route("/devices/{name}", web::delete().to(delete_device))
        .route("/devices/{name}/tokens", web::get().to(list_tokens))
        .route("/devices/{name}/tokens", web::post().to(create_token))
        .route("/tokens/{id}", web::delete().to(revoke_token))
        .route("/actions/reload", web::post().to(reload_actions));
}

/// The admin token, checked before anything else of a request is read: as a
/// handler's first argument it refuses the request (401) before a body
/// extractor after it reads or parses a byte.
pub(super) struct Admin;

impl actix_web::FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let checked = match req.app_data::<Shared>() {
            Some(broker) => admin(req, broker).map(|()| Admin),
            None => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the broker is not attached to this request",
            )),
        };
        std::future::ready(checked)
    }
}

/// The admin token check; `Err` is the answer to send.
pub(super) fn admin(req: &HttpRequest, broker: &Shared) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    admin_token(given, broker)
}

/// Checks a given admin token (however the request carried it).
pub(super) fn admin_token(given: &str, broker: &Shared) -> Result<(), ApiError> {
    let expected = &broker.config.http.admin_token;
    if expected.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the admin API is off: set [http] admin_token in config.toml or BROOK_ADMIN_TOKEN",
        ));
    }
    if devices::same_secret(given, expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer …)",
        ))
    }
}

fn device_json(broker: &Shared, d: &Device, connected: bool) -> Value {
    let last_input = broker.auth.last_input(&d.id).or(d.last_input);
    let retention = d
        .retention_ms
        .map(|ms| human(std::time::Duration::from_millis(ms.max(0) as u64)));
    json!({
        "id": d.id,
        "name": d.name,
        "tags": d.tags,
        "params": d.params,
        "parser": d.parser.is_some(),
        "connected": connected,
        "last_input": last_input.map(format_time),
        "last_output": d.last_output.map(format_time),
        "created_at": format_time(d.created_at),
        "retention": retention,
        "max_rows": d.max_rows,
    })
}

/// The longest payload parser a device may have, as TagoIO's (64 KB).
const MAX_PARSER_BYTES: usize = 64 * 1024;

/// Refuses a parser over [`MAX_PARSER_BYTES`].
fn check_parser(parser: Option<&str>) -> Result<(), ApiError> {
    match parser {
        Some(code) if code.len() > MAX_PARSER_BYTES => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "parser: the code is {} bytes, over the 64 KB limit ({MAX_PARSER_BYTES} bytes, as TagoIO's)",
                code.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// The most rows `max_rows` may keep.
const MAX_ROWS_LIMIT: i64 = 1_000_000_000;

/// `retention` as given: a duration (`"30d"`; `"0s"` keeps data for ever),
/// in ms.
fn parse_retention(text: &str) -> Result<i64, ApiError> {
    crate::config::parse_duration(text)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("retention: {e}")))
}

/// `max_rows` as given: 1 to [`MAX_ROWS_LIMIT`].
fn check_max_rows(n: i64) -> Result<i64, ApiError> {
    if (1..=MAX_ROWS_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("max_rows: must be from 1 to {MAX_ROWS_LIMIT}, got {n}"),
        ))
    }
}

fn token_json(t: &Token) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "permission": t.permission,
        "last4": t.last4,
        "created_at": format_time(t.created_at),
        "expires_at": t.expires_at.map(format_time),
    })
}

async fn connected_counts(broker: &Shared) -> std::collections::HashMap<String, usize> {
    broker
        .devices
        .send(ConnectedCounts)
        .await
        .unwrap_or_default()
}

pub(super) async fn find_device(broker: &Shared, name: String) -> Result<Device, ApiError> {
    let found = broker
        .store
        .read(move |c| devices::device_by_name(c, &name))
        .await?;
    found.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such device"))
}

async fn list_devices(_admin: Admin, broker: Shared) -> ApiResult {
    let all = broker.store.read(devices::all_devices).await?;
    let counts = connected_counts(&broker).await;
    Ok(ok(all
        .iter()
        .map(|d| device_json(&broker, d, counts.contains_key(&d.id)))
        .collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    name: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    params: Vec<Param>,
    #[serde(default)]
    parser: Option<String>,
    /// How long its bucket keeps data (`"30d"`); the server's default when
    /// absent.
    #[serde(default)]
    retention: Option<String>,
    /// The most rows its bucket keeps.
    #[serde(default)]
    max_rows: Option<i64>,
}

/// A device name is 1 to 100 of `A-Z a-z 0-9 _ . -`: it is substituted for
/// `%d` in ACL filters and appears in topics and URLs, where `+`, `#`, `/`
/// or spaces would mean something else.
fn check_name(name: &str) -> Result<(), ApiError> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 100 || !name.chars().all(safe) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("name: {name:?} must be 1 to 100 characters of A-Za-z0-9_.-"),
        ));
    }
    Ok(())
}

/// A new token for a device: the row to store and the secret to show once.
fn new_token(
    device_id: &str,
    name: &str,
    permission: Permission,
    expires_at: Option<i64>,
) -> (Token, String) {
    let secret = devices::new_secret();
    let token = Token {
        id: devices::new_id(),
        device_id: device_id.to_string(),
        name: name.to_string(),
        permission,
        hash: devices::hash_secret(secret.as_bytes()),
        last4: secret[secret.len() - 4..].to_string(),
        created_at: now_ms(),
        expires_at,
    };
    (token, secret)
}

async fn create_device(_admin: Admin, broker: Shared, body: web::Json<NewDevice>) -> ApiResult {
    let body = body.into_inner();
    check_name(&body.name)?;
    check_parser(body.parser.as_deref())?;
    let retention_ms = body.retention.as_deref().map(parse_retention).transpose()?;
    let max_rows = body.max_rows.map(check_max_rows).transpose()?;
    let mut params = body.params;
    for p in &mut params {
        if p.id.is_empty() {
            p.id = devices::new_id();
        }
    }
    let device = Device {
        id: devices::new_id(),
        name: body.name,
        tags: body.tags,
        params,
        parser: body.parser,
        created_at: now_ms(),
        last_input: None,
        last_output: None,
        retention_ms,
        max_rows,
    };
    let (token, secret) = new_token(&device.id, "default", Permission::Full, None);
    let (d, t) = (device.clone(), token.clone());
    let stored = broker
        .store
        .write(move |c| {
            if devices::device_by_name(c, &d.name)?.is_some() {
                return Ok(false);
            }
            devices::insert_device(c, &d)?;
            devices::insert_token(c, &t)?;
            Ok(true)
        })
        .await;
    if !stored? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a device named {:?} exists already", device.name),
        ));
    }
    broker.auth.put_device(&device);
    broker.auth.put_token(&token);
    tracing::info!(device = %device.name, "device created");
    Ok(ok(
        json!({"device": device_json(&broker, &device, false), "token": secret, "token_id": token.id}),
    ))
}

async fn show_device(_admin: Admin, broker: Shared, name: web::Path<String>) -> ApiResult {
    let device = find_device(&broker, name.into_inner()).await?;
    let id = device.id.clone();
    let tokens = broker
        .store
        .read(move |c| devices::tokens_of(c, &id))
        .await?;
    let counts = connected_counts(&broker).await;
    let mut v = device_json(&broker, &device, counts.contains_key(&device.id));
    v["tokens"] = tokens.iter().map(token_json).collect();
    v["parser_source"] = json!(device.parser);
    Ok(ok(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevicePatch {
    name: Option<String>,
    tags: Option<Vec<Tag>>,
    params: Option<Vec<Param>>,
    /// `null` removes the parser; absent leaves it.
    #[serde(default, deserialize_with = "some_or_null")]
    parser: Option<Option<String>>,
    /// `null` goes back to the server's `[data] retention`; absent leaves it.
    #[serde(default, deserialize_with = "some_or_null")]
    retention: Option<Option<String>>,
    /// `null` removes the cap; absent leaves it.
    #[serde(default, deserialize_with = "some_or_null")]
    max_rows: Option<Option<i64>>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn patch_device(
    _admin: Admin,
    broker: Shared,
    name: web::Path<String>,
    body: web::Json<DevicePatch>,
) -> ApiResult {
    let mut device = find_device(&broker, name.into_inner()).await?;
    let patch = body.into_inner();
    if let Some(name) = patch.name {
        check_name(&name)?;
        device.name = name;
    }
    if let Some(tags) = patch.tags {
        device.tags = tags;
    }
    if let Some(mut params) = patch.params {
        for p in &mut params {
            if p.id.is_empty() {
                p.id = devices::new_id();
            }
        }
        device.params = params;
    }
    if let Some(parser) = patch.parser {
        check_parser(parser.as_deref())?;
        device.parser = parser;
    }
    if let Some(retention) = patch.retention {
        device.retention_ms = retention.as_deref().map(parse_retention).transpose()?;
    }
    if let Some(max_rows) = patch.max_rows {
        device.max_rows = max_rows.map(check_max_rows).transpose()?;
    }
    let d = device.clone();
    broker
        .store
        .write(move |c| devices::update_device(c, &d))
        .await?;
    broker.auth.put_device(&device);
    let counts = connected_counts(&broker).await;
    Ok(ok(device_json(
        &broker,
        &device,
        counts.contains_key(&device.id),
    )))
}

async fn delete_device(_admin: Admin, broker: Shared, name: web::Path<String>) -> ApiResult {
    let device = find_device(&broker, name.into_inner()).await?;
    let id = device.id.clone();
    broker
        .store
        .write(move |c| devices::delete_device(c, &id))
        .await?;
    broker.auth.remove_device(&device.id);
    broker.devices.do_send(Deleted {
        device_id: device.id.clone(),
    });
    broker.router.do_send(crate::router::ForgetDevice {
        device_id: device.id.clone(),
    });
    tracing::info!(device = %device.name, "device deleted");
    Ok(ok(format!("device {} deleted", device.name)))
}

async fn list_tokens(_admin: Admin, broker: Shared, name: web::Path<String>) -> ApiResult {
    let device = find_device(&broker, name.into_inner()).await?;
    let tokens = broker
        .store
        .read(move |c| devices::tokens_of(c, &device.id))
        .await?;
    Ok(ok(tokens.iter().map(token_json).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    permission: Option<Permission>,
    /// A duration from now ("30d", "12h") or a date ("2027-01-01").
    #[serde(default)]
    expires: Option<String>,
}

fn parse_expiry(s: &str) -> Option<i64> {
    if let Ok(d) = crate::config::parse_duration(s) {
        return Some(now_ms() + d.as_millis() as i64);
    }
    // Only absolute dates: "1 day" would otherwise mean a day ago.
    s.starts_with(|c: char| c.is_ascii_digit())
        .then(|| parse_date(s, now_ms()))
        .flatten()
}

async fn create_token(
    _admin: Admin,
    broker: Shared,
    name: web::Path<String>,
    body: web::Json<NewToken>,
) -> ApiResult {
    let device = find_device(&broker, name.into_inner()).await?;
    let body = body.into_inner();
    let expires_at = match body.expires.as_deref() {
        None | Some("") | Some("never") => None,
        Some(s) => match parse_expiry(s) {
            Some(at) => Some(at),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("expires: {s:?} is neither a duration (30d) nor a date (2027-01-01)"),
                ))
            }
        },
    };
    let token_name = body.name.unwrap_or_else(|| "token".into());
    let (token, secret) = new_token(
        &device.id,
        &token_name,
        body.permission.unwrap_or(Permission::Full),
        expires_at,
    );
    let t = token.clone();
    broker
        .store
        .write(move |c| devices::insert_token(c, &t))
        .await?;
    broker.auth.put_token(&token);
    let mut v = token_json(&token);
    v["token"] = json!(secret);
    Ok(ok(v))
}

async fn revoke_token(_admin: Admin, broker: Shared, id: web::Path<String>) -> ApiResult {
    let id = id.into_inner();
    let lookup = id.clone();
    let token = broker
        .store
        .write(move |c| {
            let t = devices::token_by_id(c, &lookup)?;
            if t.is_some() {
                devices::delete_token(c, &lookup)?;
            }
            Ok(t)
        })
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such token"))?;
    broker.auth.remove_token(&token.id);
    broker.devices.do_send(Revoked {
        device_id: token.device_id.clone(),
        token_id: token.id.clone(),
    });
    tracing::info!(token_id = %token.id, "token revoked");
    Ok(ok(format!("token {id} revoked")))
}

/// Reloads the action files; a reload that fails keeps the old set and says
/// why: in `message`, and as a list of `FILE:LINE: message` in `problems`.
async fn reload_actions(_admin: Admin, broker: Shared) -> ApiResult {
    match broker
        .actions
        .send(crate::actions::supervisor::Reload)
        .await
    {
        Ok(Ok(n)) => Ok(ok(format!("{n} actions loaded"))),
        Ok(Err(problems)) => Ok(actix_web::HttpResponse::BadRequest().json(json!({
            "status": false,
            "message": format!("the previous actions stay: {}", problems.join("; ")),
            "problems": problems,
        }))),
        Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}
