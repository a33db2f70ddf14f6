//! The device API, TagoIO-compatible (the README's "HTTP API"): what a device,
//! or a script holding a device token, calls to send and read its bucket.
//! TagoIO's SDKs (`tagoio-sdk`, `@tago-io/sdk`) work against it unchanged.
//!
//! Every request names its device by token (header `token`, `Device-Token` or
//! `Authorization`, raw or `Bearer`), is checked against the token's
//! permission (`read` tokens read, `write` tokens write, `full` both) and
//! counts as one publish against the device's `[limits]`. Answers are
//! `{"status":true,"result":…}`; refusals `{"status":false,"message":…}` with
//! 400, 401, 404 or 429 (and `Retry-After`).
//!
//! `GET /data` also answers numbers per time bucket for charts
//! (`resolution=` or `interval=`, brook's addition; see [`parse_read`]).
//!
//! Also here: the admin API's read of a device's data
//! (`GET /devices/{name}/data`), which takes the same filters, and the list
//! of a device's variables with their newest values
//! (`GET /devices/{name}/variables`).

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::{admin, ok, ApiError, Shared};
use crate::actions::data::{self, format_time, parse_date, validate, DataError};
use crate::actions::ingest;
use crate::actions::supervisor::StoreItems;
use crate::device::limits::Kind;
use crate::device::{AuthError, Identity};
use crate::store::data::{
    bucket_count, bucket_width, Answer, Bucket, BucketQuery, DataQuery, Edit, Mode, MAX_BUCKETS,
};
use crate::store::devices::{self, Permission};
use crate::store::{data as stored, now_ms};

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/data", web::post().to(post_data))
        .route("/data", web::get().to(get_data))
        .route("/data", web::delete().to(delete_data))
        .route("/data", web::put().to(put_data))
        .route("/info", web::get().to(info))
        .route("/device/params", web::get().to(list_params))
        .route("/device/params/{id}", web::put().to(mark_param_sent))
        .route("/devices/{name}/data", web::get().to(admin_data))
        .route("/devices/{name}/variables", web::get().to(admin_variables));
}

/// Most values in one list filter (`variable`, `groups`, `ids`, `values`):
/// far more than a request needs, far below SQLite's bound-parameter limit.
const MAX_LIST: usize = 1000;
/// Largest `qty` (TagoIO's and TagoCore's bound).
const MAX_QTY: u32 = 10_000;

type Answered = Result<HttpResponse, ApiError>;

impl From<DataError> for ApiError {
    fn from(e: DataError) -> ApiError {
        ApiError::bad(e)
    }
}

// ---------------------------------------------------------------------------
// Who is calling

/// Authenticates the caller, checks the token's permission for the request's
/// method and counts the request against the device's publish limit.
fn device(req: &HttpRequest, broker: &Shared) -> Result<Identity, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, m);
    let token = super::services::request_token(req).ok_or_else(|| {
        unauthorized(
            "Authorization missing: send the device token in a `token`, `Device-Token` or `Authorization` header",
        )
    })?;
    let identity = broker
        .auth
        .authenticate(token.as_bytes())
        .map_err(|e| match e {
            AuthError::Unknown => unauthorized("Invalid token"),
            AuthError::Expired { .. } => unauthorized("Invalid token: it has expired"),
        })?;
    if identity.run && !(*req.method() == Method::POST && req.path() == "/data") {
        return Err(unauthorized(
            "an analysis run token may only POST /data for its device and publish through /analysis/services/mqtt/publish",
        ));
    }
    let reads = *req.method() == Method::GET;
    let allowed = match identity.permission {
        Permission::Full => true,
        Permission::Read => reads,
        Permission::Write => !reads,
    };
    if !allowed {
        let needed = if reads { "read" } else { "write" };
        return Err(unauthorized(&format!(
            "this token has {} permission; {} {} needs a {needed} or full token",
            identity.permission.as_str(),
            req.method(),
            req.path()
        )));
    }
    if let Err(wait) = broker.limits.check(&identity.device_id, Kind::Publish) {
        tracing::info!(device = %identity.device_name, "HTTP request over the publish limit");
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "device {} is over its limit of {} requests per minute",
                identity.device_name, broker.config.limits.publish_per_minute
            ),
            retry_after: Some(wait),
        });
    }
    Ok(identity)
}

/// Reads a request body of at most [`data::MAX_BODY`] bytes; a larger one is
/// refused without reading the rest.
async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared {
        data::check_size(size)?;
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            if super::is_body_timeout(&e) {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, e)
            } else {
                ApiError::bad(format!("cannot read the body: {e}"))
            }
        })?;
        body.extend_from_slice(&chunk);
        data::check_size(body.len())?;
    }
    Ok(body)
}

// ---------------------------------------------------------------------------
// POST /data

async fn post_data(req: HttpRequest, broker: Shared, payload: web::Payload) -> Answered {
    let who = device(&req, &broker)?;
    let body = read_body(&req, payload).await?;
    let device = broker
        .auth
        .device(&who.device_id)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token"))?;
    let parsed = ingest::from_body(&broker.parsers, device.clone(), body.into()).await;
    let items = match parsed {
        Ok(p) => p.items,
        Err(rejected) => return Err(ApiError::bad(rejected.reason)),
    };
    let added = items.len();
    if added > 0 {
        // Stored by the action supervisor, which sets off the variable
        // triggers in the same transaction; answered once it committed.
        let (done, stored) = tokio::sync::oneshot::channel();
        broker
            .actions
            .send(StoreItems {
                device: device.clone(),
                items,
                source: "POST /data",
                run_token: who.run.then(|| who.token_id.clone()),
                done,
            })
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))?;
        stored
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store went away"))??;
    }
    device.touch();
    Ok(ok(format!("{added} Data Added")))
}

// ---------------------------------------------------------------------------
// GET and DELETE /data

/// The query string as `(key, value)` pairs; `key[]` and `key[3]` (how
/// JavaScript clients send arrays) count as `key`.
fn query_pairs(query_string: &str) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map_err(|e| ApiError::bad(format!("cannot read the query string: {e}")))?
        .into_inner();
    Ok(pairs
        .into_iter()
        .map(|(k, v)| {
            let key = match k.find('[') {
                Some(at) if k.ends_with(']') => k[..at].to_string(),
                _ => k,
            };
            (key, v)
        })
        .collect())
}

/// Parses the filters and mode of `GET /data` (and `DELETE /data`):
/// `variable`/`variables`, `group(s)`/`serie(s)`, `id(s)`, `value(s)`,
/// `qty`, `skip`, `ordination`, `start_date`, `end_date`, `query`. Unknown
/// parameters are ignored, as TagoIO does; bad values are refused with a
/// message naming the parameter.
fn parse_query(query_string: &str, now: i64) -> Result<DataQuery, ApiError> {
    let mut q = DataQuery::default();
    for (key, value) in query_pairs(query_string)? {
        let list = match key.as_str() {
            "variable" | "variables" => Some(&mut q.filter.variables),
            "group" | "groups" | "serie" | "series" => Some(&mut q.filter.groups),
            "id" | "ids" => Some(&mut q.filter.ids),
            _ => None,
        };
        if let Some(list) = list {
            let value = if key.starts_with("variable") {
                value.to_lowercase()
            } else {
                value
            };
            list.push(value);
            continue;
        }
        match key.as_str() {
            "value" | "values" => {
                // Stored values are JSON text: "21.5" may be the number or the string.
                let as_string = Value::String(value.clone()).to_string();
                q.filter.values.push(value);
                q.filter.values.push(as_string);
            }
            "qty" => q.qty = whole_number("qty", &value, MAX_QTY)?,
            "skip" => q.skip = whole_number("skip", &value, u32::MAX)?,
            "ordination" => {
                q.ascending = match value.to_lowercase().as_str() {
                    "asc" | "ascending" => true,
                    "desc" | "descending" => false,
                    _ => {
                        return Err(ApiError::bad(format!(
                            "ordination: {value:?} is neither ascending nor descending"
                        )))
                    }
                }
            }
            "start_date" => q.filter.start = Some(date("start_date", &value, now)?),
            "end_date" => q.filter.end = Some(date("end_date", &value, now)?),
            "query" => {
                q.mode = Mode::parse(&value).ok_or_else(|| {
                    let names: Vec<&str> = Mode::NAMES.iter().map(|(n, _)| *n).collect();
                    ApiError::bad(format!(
                        "query: {value:?} is not one of {}",
                        names.join(", ")
                    ))
                })?
            }
            _ => {}
        }
    }
    let f = &q.filter;
    for (name, list) in [
        ("variable", &f.variables),
        ("groups", &f.groups),
        ("ids", &f.ids),
        ("values", &f.values),
    ] {
        if list.len() > MAX_LIST {
            return Err(ApiError::bad(format!(
                "{name}: {} values, over the limit of {MAX_LIST}",
                list.len()
            )));
        }
    }
    Ok(q)
}

/// What a `GET /data` asks for: items (TagoIO's queries), or numbers per
/// time bucket for a chart (`resolution` or `interval`, brook's addition).
#[derive(Debug, Clone, PartialEq)]
enum Read {
    Items(DataQuery),
    Buckets(BucketQuery),
}

/// How a chart's buckets are asked for.
enum Bucketing {
    /// `resolution=N`: about N buckets of a round width.
    Resolution(i64),
    /// `interval=…`: buckets of this width, ms.
    Interval(i64),
}

/// Most buckets in one answer, over all its variables: the same bound as
/// `qty`.
const MAX_BUCKET_ROWS: i64 = MAX_QTY as i64;

/// Parses a `GET /data` query string: [`parse_query`]'s parameters, plus
/// `resolution=N` (about N buckets of a round width, 1 to 1000) or
/// `interval=DURATION` (buckets of that width, `15s`, `5m`, `1h`), which
/// turn the answer into buckets. Buckets need `variable` and `start_date`
/// (`end_date` defaults to now) and take no `qty`, `skip`, `ordination` or
/// `query`: the bucket count bounds the answer.
fn parse_read(query_string: &str, now: i64) -> Result<Read, ApiError> {
    let q = parse_query(query_string, now)?;
    let mut resolution = None;
    let mut interval = None;
    let mut listing = Vec::new();
    for (key, value) in query_pairs(query_string)? {
        match key.as_str() {
            "resolution" => {
                let n = value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_BUCKETS).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "resolution: {value:?} is not a whole number from 1 to {MAX_BUCKETS}"
                        ))
                    })?;
                resolution = Some(n);
            }
            "interval" => {
                let width = crate::config::parse_duration(&value)
                    .ok()
                    .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
                    .filter(|ms| *ms >= 1000)
                    .ok_or_else(|| {
                        ApiError::bad(format!(
                            "interval: {value:?} is not a duration of at least 1s (15s, 5m, 1h, 1d)"
                        ))
                    })?;
                interval = Some(width);
            }
            "qty" | "skip" | "ordination" | "query" => listing.push(key),
            _ => {}
        }
    }
    let bucketing = match (resolution, interval) {
        (None, None) => return Ok(Read::Items(q)),
        (Some(n), None) => Bucketing::Resolution(n),
        (None, Some(width)) => Bucketing::Interval(width),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "interval: give resolution or interval, not both",
            ))
        }
    };
    if let Some(key) = listing.first() {
        return Err(ApiError::bad(format!(
            "{key}: does not apply to resolution or interval (the buckets bound the answer)"
        )));
    }
    let mut filter = q.filter;
    if filter.variables.is_empty() {
        return Err(ApiError::bad(
            "variable: name at least one variable with resolution or interval",
        ));
    }
    let start = filter.start.ok_or_else(|| {
        ApiError::bad(
            "start_date: required with resolution or interval (for example start_date=24 hours)",
        )
    })?;
    let end = *filter.end.get_or_insert(now);
    if end < start {
        return Err(ApiError::bad("end_date: is before start_date"));
    }
    let (width_ms, per_variable) = match bucketing {
        Bucketing::Resolution(n) => (bucket_width(end - start, n), n),
        Bucketing::Interval(width) => {
            let n = bucket_count(start, end, width);
            if n > MAX_BUCKETS + 1 {
                return Err(ApiError::bad(format!(
                    "interval: {n} buckets over this range, over the limit of {MAX_BUCKETS}; \
                     give a longer interval or a shorter range"
                )));
            }
            (width, n)
        }
    };
    let rows = per_variable.saturating_mul(filter.variables.len() as i64);
    if rows > MAX_BUCKET_ROWS {
        return Err(ApiError::bad(format!(
            "variable: {} variables × {per_variable} buckets is over the limit of \
             {MAX_BUCKET_ROWS} buckets per request",
            filter.variables.len()
        )));
    }
    Ok(Read::Buckets(BucketQuery { filter, width_ms }))
}

/// A bucket as the API shows it: `time` is where it begins.
fn bucket_json(b: &Bucket) -> Value {
    json!({
        "variable": b.variable,
        "time": format_time(b.start),
        "value": number_json(b.avg),
        "min": number_json(b.min),
        "max": number_json(b.max),
        "count": b.count,
    })
}

/// Answers a [`Read`] on a device's bucket.
async fn read_data(broker: &Shared, device_id: String, read: Read) -> Answered {
    let result = match read {
        Read::Items(q) => {
            let answer = broker
                .store
                .read(move |c| stored::query(c, &device_id, &q))
                .await?;
            answer_json(answer)
        }
        Read::Buckets(q) => {
            let buckets = broker
                .store
                .read(move |c| stored::buckets(c, &device_id, &q))
                .await?;
            Value::Array(buckets.iter().map(bucket_json).collect())
        }
    };
    Ok(ok(result))
}

fn whole_number(name: &str, value: &str, max: u32) -> Result<u32, ApiError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            ApiError::bad(format!(
                "{name}: {value:?} is not a whole number from 0 to {max}"
            ))
        })
}

fn date(name: &str, value: &str, now: i64) -> Result<i64, ApiError> {
    parse_date(value, now).ok_or_else(|| {
        ApiError::bad(format!(
            "{name}: cannot read {value:?} as a date (ISO 8601, YYYY-MM-DD HH:mm:ss, or relative such as \"1 day\")"
        ))
    })
}

/// A number as JSON: whole numbers without a fraction (a count is `3`, not `3.0`).
fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

fn answer_json(answer: Answer) -> Value {
    match answer {
        Answer::Items(items) => Value::Array(items.iter().map(|i| i.to_json()).collect()),
        Answer::Number(n) => number_json(n),
    }
}

async fn get_data(req: HttpRequest, broker: Shared) -> Answered {
    let who = device(&req, &broker)?;
    let now = now_ms();
    let read = parse_read(req.query_string(), now)?;
    let retention = broker
        .auth
        .device(&who.device_id)
        .and_then(|d| d.retention_ms);
    let read = unexpired(read, &broker, retention, now);
    read_data(&broker, who.device_id, read).await
}

/// The read with its start moved past what the device's retention (or
/// `[data] retention`) has expired: an item the pruner has not reached yet
/// is never answered.
fn unexpired(mut read: Read, broker: &Shared, retention_ms: Option<i64>, now: i64) -> Read {
    let default_ms = broker
        .config
        .data
        .retention
        .as_millis()
        .min(i64::MAX as u128) as i64;
    let Some(cutoff) = crate::store::retention::cutoff(retention_ms, default_ms, now) else {
        return read;
    };
    let filter = match &mut read {
        Read::Items(q) => &mut q.filter,
        Read::Buckets(b) => &mut b.filter,
    };
    filter.start = Some(filter.start.map_or(cutoff, |s| s.max(cutoff)));
    read
}

async fn delete_data(req: HttpRequest, broker: Shared) -> Answered {
    let who = device(&req, &broker)?;
    let Read::Items(q) = parse_read(req.query_string(), now_ms())? else {
        return Err(ApiError::bad(
            "resolution: buckets select no items to delete; leave out resolution and interval",
        ));
    };
    if q.mode.is_number() {
        return Err(ApiError::bad(
            "query: count, avg and sum select no items to delete; use a query that lists items",
        ));
    }
    let removed = broker
        .store
        .write(move |c| stored::delete(c, &who.device_id, &q))
        .await?;
    Ok(ok(format!("{removed} Data Removed")))
}

// ---------------------------------------------------------------------------
// PUT /data

/// Turns one `PUT /data` item into an [`Edit`]: `id` is required, the other
/// fields are checked by the rules of `POST /data`; `variable` cannot change
/// (TagoIO ignores it too).
fn edit_of(index: usize, item: Value, device_id: &str, now: i64) -> Result<Edit, DataError> {
    let invalid = |field: &str, message: &str| DataError::Invalid {
        index,
        field: field.into(),
        message: message.into(),
    };
    let Value::Object(mut obj) = item else {
        return Err(invalid("item", "must be a JSON object"));
    };
    let id = match obj.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        None | Some(Value::Null) => return Err(invalid("id", "is required")),
        Some(_) => return Err(invalid("id", "must be a string")),
    };
    let given = |k: &str| obj.contains_key(k);
    let null = |k: &str| obj.get(k).is_some_and(Value::is_null);
    let mut probe: Map<String, Value> = obj.clone();
    probe.insert("variable".into(), Value::String("edit".into()));
    let checked = validate(vec![Value::Object(probe)], device_id, now)
        .map_err(|e| match e {
            DataError::Invalid { field, message, .. } => DataError::Invalid {
                index,
                field,
                message,
            },
            other => other,
        })?
        .pop()
        .ok_or_else(|| invalid("item", "could not be read"))?;
    let group_given = given("group") || given("serie");
    let group_cleared = (null("group") || !given("group")) && (null("serie") || !given("serie"));
    Ok(Edit {
        id,
        value: given("value").then(|| checked.value.clone()),
        unit: given("unit").then(|| checked.unit.clone()),
        time: (given("time") && !null("time")).then_some(checked.time),
        group: group_given.then(|| {
            if group_cleared {
                None
            } else {
                checked.group.clone()
            }
        }),
        location: given("location").then(|| checked.location.clone()),
        metadata: given("metadata").then(|| checked.metadata.clone()),
    })
}

async fn put_data(req: HttpRequest, broker: Shared, payload: web::Payload) -> Answered {
    let who = device(&req, &broker)?;
    let body = read_body(&req, payload).await?;
    let items = data::parse_items(&body)?;
    if items.is_empty() {
        return Ok(ok("0 item(s) updated"));
    }
    let now = now_ms();
    let edits = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| edit_of(i, item, &who.device_id, now))
        .collect::<Result<Vec<_>, _>>()?;
    let found = broker
        .store
        .write(move |c| stored::update(c, &who.device_id, &edits))
        .await?;
    if found == 0 {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no data item with the given id in this device's bucket",
        ));
    }
    Ok(ok(format!("{found} item(s) updated")))
}

// ---------------------------------------------------------------------------
// GET /info, device params

async fn info(req: HttpRequest, broker: Shared) -> Answered {
    let who = device(&req, &broker)?;
    let id = who.device_id.clone();
    let d = broker
        .store
        .read(move |c| devices::device_by_id(c, &id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token"))?;
    let last_input = match (d.last_input, broker.auth.last_input(&d.id)) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let created_at = format_time(d.created_at);
    Ok(ok(json!({
        "id": d.id,
        "name": d.name,
        "tags": d.tags,
        "active": true,
        "visible": true,
        "type": "mutable",
        "bucket": {"id": d.id, "name": d.name},
        "profile": Value::Null,
        "connector": Value::Null,
        "network": Value::Null,
        "description": Value::Null,
        "payload_parser": d.parser.is_some(),
        "last_input": last_input.map(format_time),
        "last_output": d.last_output.map(format_time),
        "created_at": created_at,
        "updated_at": created_at,
        "inspected_at": Value::Null,
        "last_retention": Value::Null,
    })))
}

async fn list_params(req: HttpRequest, broker: Shared) -> Answered {
    let who = device(&req, &broker)?;
    let mut only: Option<bool> = None;
    for (key, value) in query_pairs(req.query_string())? {
        if key == "sent_status" {
            only = Some(match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::bad(format!(
                        "sent_status: {value:?} is neither true nor false"
                    )))
                }
            });
        }
    }
    let id = who.device_id.clone();
    let d = broker
        .store
        .read(move |c| devices::device_by_id(c, &id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid token"))?;
    let params: Vec<_> = d
        .params
        .iter()
        .filter(|p| only.is_none_or(|sent| p.sent == sent))
        .collect();
    Ok(ok(params))
}

async fn mark_param_sent(req: HttpRequest, broker: Shared, param: web::Path<String>) -> Answered {
    let who = device(&req, &broker)?;
    let param_id = param.into_inner();
    let (device_id, wanted) = (who.device_id.clone(), param_id.clone());
    let found = broker
        .store
        .write(move |c| {
            let Some(mut d) = devices::device_by_id(c, &device_id)? else {
                return Ok(false);
            };
            let Some(p) = d.params.iter_mut().find(|p| p.id == wanted) else {
                return Ok(false);
            };
            if !p.sent {
                p.sent = true;
                devices::update_device(c, &d)?;
            }
            Ok(true)
        })
        .await?;
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no parameter with id {param_id:?} on this device"),
        ));
    }
    Ok(ok("Parameter marked as sent"))
}

// ---------------------------------------------------------------------------
// Admin: GET /devices/{name}/data

async fn admin_data(
    _admin: admin::Admin,
    req: HttpRequest,
    broker: Shared,
    name: web::Path<String>,
) -> Answered {
    let d = admin::find_device(&broker, name.into_inner()).await?;
    let now = now_ms();
    let read = parse_read(req.query_string(), now)?;
    let read = unexpired(read, &broker, d.retention_ms, now);
    read_data(&broker, d.id, read).await
}

/// Most variables `GET /devices/{name}/variables` lists.
const MAX_VARIABLES: usize = 200;

/// `GET /devices/{name}/variables`: the variables of the device's bucket by
/// name (at most [`MAX_VARIABLES`]), each as its newest item with a value.
async fn admin_variables(
    _admin: admin::Admin,
    broker: Shared,
    name: web::Path<String>,
) -> Answered {
    let d = admin::find_device(&broker, name.into_inner()).await?;
    let items = broker
        .store
        .read(move |c| stored::variables(c, &d.id, MAX_VARIABLES))
        .await?;
    Ok(ok(items.iter().map(|i| i.to_json()).collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::data::Filter;

    const NOW: i64 = 1_795_000_000_000;

    fn parsed(qs: &str) -> DataQuery {
        parse_query(qs, NOW).unwrap_or_else(|e| panic!("{qs}: {e}"))
    }

    fn refused(qs: &str) -> String {
        match parse_query(qs, NOW) {
            Ok(q) => panic!("{qs} was accepted: {q:?}"),
            Err(e) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                e.message
            }
        }
    }

    #[test]
    fn defaults_are_tagoios() {
        assert_eq!(parsed(""), DataQuery::default());
        let q = DataQuery::default();
        assert_eq!(
            (q.qty, q.skip, q.ascending, q.mode),
            (15, 0, false, Mode::List)
        );
    }

    #[test]
    fn variables_in_every_array_form() {
        let q = parsed("variable=Temp&variable[]=hum&variables[0]=x&variables=y");
        assert_eq!(q.filter.variables, ["temp", "hum", "x", "y"]);
        let q = parsed("groups=g1&group=g2&serie=g3");
        assert_eq!(q.filter.groups, ["g1", "g2", "g3"]);
    }

    #[test]
    fn paging_order_and_mode() {
        let q = parsed("qty=3&skip=2&ordination=ascending&query=last_value");
        assert_eq!((q.qty, q.skip, q.ascending), (3, 2, true));
        assert_eq!(q.mode, Mode::LastValue);
        assert!(parsed("ordination=DESC").filter == Filter::default());
        for mode in ["count", "avg", "sum"] {
            assert!(parsed(&format!("query={mode}")).mode.is_number());
        }
    }

    #[test]
    fn dates_absolute_and_relative() {
        let q = parsed("start_date=2026-11-24%2010:00:00&end_date=1%20day");
        assert_eq!(q.filter.start, parse_date("2026-11-24T10:00:00Z", 0));
        assert_eq!(q.filter.end, Some(NOW - 86_400_000));
        let q = parsed("start_date=2026-11-24T10:00:00.000Z");
        assert!(q.filter.start.is_some());
    }

    #[test]
    fn values_match_numbers_and_strings() {
        let q = parsed("value=21.5");
        assert_eq!(q.filter.values, ["21.5", "\"21.5\""]);
    }

    #[test]
    fn bad_parameters_are_named() {
        assert!(refused("qty=-1").starts_with("qty: "));
        assert!(refused("qty=10001").starts_with("qty: "));
        assert!(refused("skip=x").starts_with("skip: "));
        assert!(refused("ordination=sideways").starts_with("ordination: "));
        assert!(refused("start_date=someday").starts_with("start_date: "));
        assert!(refused("end_date=2026-13-01").starts_with("end_date: "));
        let m = refused("query=median");
        assert!(m.starts_with("query: ") && m.contains("last_value"), "{m}");
        // Unknown parameters are ignored, as TagoIO does.
        assert_eq!(parsed("details=true&timezone=UTC"), DataQuery::default());
    }

    #[test]
    fn numbers_print_whole_when_whole() {
        assert_eq!(number_json(3.0), json!(3));
        assert_eq!(number_json(2.5), json!(2.5));
    }

    #[test]
    fn edits_take_given_fields_and_name_the_item() {
        let e = edit_of(0, json!({"id": "a", "value": 5, "unit": null}), "d", NOW).unwrap();
        assert_eq!(e.value, Some(Some(json!(5))));
        assert_eq!(e.unit, Some(None));
        assert_eq!(
            (e.time, e.group.clone(), e.location.clone()),
            (None, None, None)
        );
        let e = edit_of(
            0,
            json!({"id": "a", "time": "2026-01-01", "group": "g", "location": {"lat": 1, "lng": 2}}),
            "d",
            NOW,
        )
        .unwrap();
        assert_eq!(e.time, parse_date("2026-01-01", 0));
        assert_eq!(e.group, Some(Some("g".into())));
        assert_eq!(
            e.location,
            Some(Some(json!({"type": "Point", "coordinates": [2, 1]})))
        );
        let err = edit_of(3, json!({"value": 1}), "d", NOW).unwrap_err();
        assert_eq!(err.to_string(), "item 3: id: is required");
        let err = edit_of(2, json!({"id": "a", "unit": 5}), "d", NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 2: unit: must be a string, not a number"
        );
    }

    fn read_refused(qs: &str) -> String {
        match parse_read(qs, NOW) {
            Ok(r) => panic!("{qs} was accepted: {r:?}"),
            Err(e) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                e.message
            }
        }
    }

    #[test]
    fn resolution_and_interval_ask_for_buckets() {
        let Ok(Read::Buckets(b)) =
            parse_read("variable=T&start_date=24%20hours&resolution=300", NOW)
        else {
            panic!("buckets expected");
        };
        assert_eq!(b.width_ms, 300_000, "24 h in about 300 buckets: 5 minutes");
        assert_eq!(b.filter.variables, ["t"]);
        assert_eq!(b.filter.start, Some(NOW - 86_400_000));
        assert_eq!(b.filter.end, Some(NOW), "end_date defaults to now");
        let Ok(Read::Buckets(b)) = parse_read(
            "variable=t&variable=h&start_date=1%20hour&end_date=2%20minutes&interval=15s",
            NOW,
        ) else {
            panic!("buckets expected");
        };
        assert_eq!(b.width_ms, 15_000);
        assert_eq!(b.filter.end, Some(NOW - 120_000));
        assert!(matches!(
            parse_read("variable=t&qty=3", NOW),
            Ok(Read::Items(_))
        ));
    }

    #[test]
    fn bad_bucket_parameters_are_named() {
        let base = "variable=t&start_date=1%20day";
        for (qs, field) in [
            (format!("{base}&resolution=0"), "resolution: "),
            (format!("{base}&resolution=1001"), "resolution: "),
            (format!("{base}&resolution=many"), "resolution: "),
            (format!("{base}&interval=500ms"), "interval: "),
            (format!("{base}&interval=soon"), "interval: "),
            (format!("{base}&interval=1m"), "interval: "),
            (format!("{base}&interval=5m&resolution=10"), "interval: "),
            (format!("{base}&resolution=10&qty=5"), "qty: "),
            (format!("{base}&resolution=10&query=avg"), "query: "),
            (
                format!("{base}&resolution=10&ordination=asc"),
                "ordination: ",
            ),
            ("start_date=1%20day&resolution=10".to_string(), "variable: "),
            ("variable=t&resolution=10".to_string(), "start_date: "),
            (
                format!("{base}&end_date=2%20days&resolution=10"),
                "end_date: ",
            ),
        ] {
            let m = read_refused(&qs);
            assert!(m.starts_with(field), "{qs}: {m}");
        }
        let many: String = (0..11).map(|i| format!("variable=v{i}&")).collect();
        let m = read_refused(&format!("{many}start_date=1%20day&resolution=1000"));
        assert!(m.starts_with("variable: 11 variables"), "{m}");
    }
}
