//! TagoIO's services that analyses call: `POST /analysis/services/mqtt/publish`,
//! what `Services({token}).MQTT.publish(...)` in TagoIO's SDKs sends. An
//! analysis run's token works here, and so does the admin token.
//!
//! The two SDKs send different bodies for the same call, and both are taken:
//! `tagoio-sdk` (Python) sends `{topic, message, bucket, options: {qos,
//! retain}}`; `@tago-io/sdk` 12 (JavaScript) sends `{topic, message, device,
//! qos, retain}`, the options spread into the body.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use serde::Deserialize;

use super::{ok, ApiError, ApiResult, Shared};
use crate::protocol::validate::check_topic_name;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/analysis/services/mqtt/publish",
        web::post().to(mqtt_publish),
    );
}

/// The token a request carries: `token` (TagoIO's SDKs), `Device-Token`, or
/// `Authorization` (raw or `Bearer`).
pub fn request_token(req: &HttpRequest) -> Option<&str> {
    let h = req.headers();
    ["token", "device-token", "authorization"]
        .iter()
        .find_map(|name| h.get(*name).and_then(|v| v.to_str().ok()))
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct PublishOptions {
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

#[derive(Deserialize)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    message: serde_json::Value,
    /// The device id the Python SDK sends (`device` in the JavaScript SDK);
    /// accepted and not needed: the topic says where.
    #[serde(default)]
    #[allow(dead_code)]
    bucket: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    device: Option<String>,
    /// Where the Python SDK puts `qos` and `retain`.
    #[serde(default)]
    options: Option<PublishOptions>,
    /// Where the JavaScript SDK puts them (its `options` spread into the
    /// body); `options` wins when both are given.
    #[serde(default)]
    qos: Option<u8>,
    #[serde(default)]
    retain: Option<bool>,
}

async fn mqtt_publish(
    req: HttpRequest,
    broker: Shared,
    body: web::Json<PublishRequest>,
) -> ApiResult {
    let token = request_token(&req).unwrap_or("");
    let admin = &broker.config.http.admin_token;
    let allowed = broker.auth.is_run_token(token.as_bytes())
        || (!admin.is_empty() && token == admin.as_str());
    if !allowed {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Authorization denied: an analysis run token or the admin token is needed",
        ));
    }
    let body = body.into_inner();
    check_topic_name(&body.topic)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("topic: {e}")))?;
    let (qos, retain) = match body.options {
        Some(o) => (o.qos, o.retain),
        None => (body.qos.unwrap_or(0), body.retain.unwrap_or(false)),
    };
    if qos > 2 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "options.qos: must be 0, 1 or 2",
        ));
    }
    let payload = match body.message {
        serde_json::Value::String(s) => Bytes::from(s),
        serde_json::Value::Null => Bytes::new(),
        other => Bytes::from(other.to_string()),
    };
    if !crate::router::publish(&broker.router, body.topic.into(), payload, qos, retain).await {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the message could not be published",
        ));
    }
    Ok(ok("Message sent"))
}
