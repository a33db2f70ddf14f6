//! TagoIO's services that analyses call: `POST /analysis/services/mqtt/publish`,
//! what `Services({token}).MQTT.publish(...)` in TagoIO's SDKs sends. An
//! analysis run's token works here, and so does the admin token. A run token
//! publishes as the run's device, under that device's ACL (a run without a
//! device, a schedule's, under the rules for anonymous clients); the topic
//! is checked like a PUBLISH's, and `$` topics are the broker's alone.
//!
//! The two SDKs send different bodies for the same call, and both are taken:
//! `tagoio-sdk` (Python) sends `{topic, message, bucket, options: {qos,
//! retain}}`; `@tago-io/sdk` 12 (JavaScript) sends `{topic, message, device,
//! qos, retain}`, the options spread into the body.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use serde::Deserialize;

use super::{ok, ApiError, ApiResult, Shared};
use crate::protocol::validate::check_topic_name;
use crate::protocol::PublishProperties;
use crate::router::acl::ClientAcl;
use crate::router::Publication;
use crate::store::devices::same_secret;

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/analysis/services/mqtt/publish",
        web::post().to(mqtt_publish),
    );
}

/// The token a request carries: `token` (TagoIO's SDKs), `Device-Token`, or
/// `Authorization` (raw or `Bearer`).
pub(crate) fn request_token(req: &HttpRequest) -> Option<&str> {
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
    #[serde(flatten)]
    mqtt5: Mqtt5Options,
}

/// What an MQTT 5 subscriber gets with the message, beyond 3.1.1 (a 3.1.1
/// subscriber gets none of it; the message expiry holds for everyone).
#[derive(Deserialize, Default)]
struct Mqtt5Options {
    /// `{"name": "value"}`; an array of values repeats the name, in order.
    #[serde(default)]
    user_properties: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    content_type: Option<String>,
    /// Seconds, capped by `[mqtt] max_message_expiry`.
    #[serde(default)]
    message_expiry: Option<u32>,
}

impl Mqtt5Options {
    /// `self`, with what it leaves out taken from `other`.
    fn or(self, other: Mqtt5Options) -> Mqtt5Options {
        Mqtt5Options {
            user_properties: self.user_properties.or(other.user_properties),
            content_type: self.content_type.or(other.content_type),
            message_expiry: self.message_expiry.or(other.message_expiry),
        }
    }

    /// The properties and the expiry instant (unix ms) of the message.
    fn properties(
        self,
        max_expiry: Option<std::time::Duration>,
    ) -> Result<(Option<Arc<PublishProperties>>, Option<i64>), ApiError> {
        let mut user = Vec::new();
        for (name, value) in self.user_properties.unwrap_or_default() {
            let bad = || {
                ApiError::bad(format!(
                    "user_properties.{name}: must be a string or an array of strings"
                ))
            };
            match value {
                serde_json::Value::String(v) => user.push((name, v)),
                serde_json::Value::Array(values) => {
                    for v in values {
                        let serde_json::Value::String(v) = v else {
                            return Err(bad());
                        };
                        user.push((name.clone(), v));
                    }
                }
                _ => return Err(bad()),
            }
        }
        let props = PublishProperties {
            content_type: self.content_type,
            user,
            ..PublishProperties::default()
        };
        let expires_at = match self.message_expiry {
            None | Some(0) => None,
            Some(e) => {
                let e = max_expiry.map_or(u64::from(e), |max| u64::from(e).min(max.as_secs()));
                Some(crate::store::now_ms() + (e as i64) * 1000)
            }
        };
        Ok(((!props.is_empty()).then(|| Arc::new(props)), expires_at))
    }
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
    #[serde(flatten)]
    mqtt5: Mqtt5Options,
}

/// Who calls the publish service, checked before its body is read.
enum Publisher {
    Admin,
    /// An analysis run's token: its id, and the device of the run, if any.
    Run {
        token_id: String,
        device_id: Option<String>,
    },
}

impl actix_web::FromRequest for Publisher {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Publisher, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = request_token(req).unwrap_or("");
        let who = req.app_data::<Shared>().and_then(|broker| {
            let admin = &broker.config.http.admin_token;
            if !admin.is_empty() && same_secret(token, admin) {
                return Some(Publisher::Admin);
            }
            broker
                .auth
                .run_token(token.as_bytes())
                .map(|(token_id, device_id)| Publisher::Run {
                    token_id,
                    device_id,
                })
        });
        std::future::ready(who.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Authorization denied: an analysis run token or the admin token is needed",
            )
        }))
    }
}

/// Checks a topic as a PUBLISH's would be.
fn check_topic(topic: &str, max_levels: usize) -> Result<(), ApiError> {
    let bad = |why: String| ApiError::new(StatusCode::BAD_REQUEST, format!("topic: {why}"));
    check_topic_name(topic).map_err(|e| bad(e.to_string()))?;
    if topic.len() > usize::from(u16::MAX) {
        return Err(bad(format!(
            "{} bytes; MQTT topics are at most 65535",
            topic.len()
        )));
    }
    let levels = topic.split('/').count();
    if levels > max_levels {
        return Err(bad(format!(
            "{levels} levels; mqtt.max_topic_levels is {max_levels}"
        )));
    }
    if topic.starts_with('$') {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "topic: topics starting with $ are the broker's",
        ));
    }
    Ok(())
}

async fn mqtt_publish(
    caller: Publisher,
    broker: Shared,
    body: web::Json<PublishRequest>,
) -> ApiResult {
    let body = body.into_inner();
    check_topic(&body.topic, broker.config.mqtt.max_topic_levels)?;
    if let Publisher::Run {
        token_id,
        device_id,
    } = &caller
    {
        let device = device_id.as_ref().and_then(|id| broker.auth.device(id));
        let acl = ClientAcl::for_client(
            &broker.config.acl,
            device.as_ref().map(|d| (d.name.as_str(), &d.tags[..])),
            token_id,
        );
        if !acl.can_publish(&body.topic) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "topic: the ACL denies {} publishing to {:?}",
                    device
                        .as_ref()
                        .map_or("this analysis".to_string(), |d| format!(
                            "device {}",
                            d.name
                        )),
                    body.topic
                ),
            ));
        }
    }
    let (qos, retain, mqtt5) = match body.options {
        Some(o) => (o.qos, o.retain, o.mqtt5.or(body.mqtt5)),
        None => (
            body.qos.unwrap_or(0),
            body.retain.unwrap_or(false),
            body.mqtt5,
        ),
    };
    let (properties, expires_at) = mqtt5.properties(broker.config.mqtt.max_message_expiry)?;
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
    if !crate::router::publish(
        &broker.router,
        Publication {
            properties,
            expires_at,
            ..Publication::new(body.topic.into(), payload, qos, retain)
        },
    )
    .await
    {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the message could not be published",
        ));
    }
    Ok(ok("Message sent"))
}
