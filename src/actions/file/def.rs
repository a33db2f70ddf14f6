//! What an action is: its definition, and how it matches devices. Its
//! conditions are in `condition.rs`, its templates in `template.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::condition::Condition;
use super::template::{render_template, TemplateVars};
use crate::actions::analysis::{human, AnalysisSpec};
use crate::protocol::validate::check_topic_name;
use crate::store::devices::Tag;

/// Arguments with these endings are taken as script files that must exist.
pub(super) const SCRIPT_EXTENSIONS: &[&str] = &[".py", ".js", ".mjs", ".cjs", ".sh", ".rb", ".pl"];

/// Environment variables brook sets for an analysis, and the entries it
/// adds to its environment list (TagoIO's action context); an action's
/// `env` may not set them.
pub(super) const RESERVED_ENV: &[&str] = &[
    "T_ANALYSIS_CONTEXT",
    "T_ANALYSIS_DATA",
    "T_ANALYSIS_ENV",
    "T_ANALYSIS_ID",
    "T_ANALYSIS_TOKEN",
    "TAGOIO_API",
    "BROOK_API",
    "_action_id",
    "_action_type",
    "_action_state",
    "_device_id",
];

/// The shortest `every` interval.
pub(crate) const MIN_EVERY: Duration = Duration::from_secs(60);

/// `attempts` when not given: the first try and two retries.
pub(crate) const DEFAULT_ATTEMPTS: u32 = 3;
/// The most `attempts` an action may ask for.
pub(crate) const MAX_ATTEMPTS: u32 = 100;
/// `backoff` when not given.
pub(crate) const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts: the backoff doubles up to this.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// `http_post.timeout` when not given.
pub(crate) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// `email.timeout` when not given.
pub(crate) const DEFAULT_EMAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `timeout` of one attempt.
pub(crate) const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// `max_pending` when not given: deliveries of one action waiting in SQLite.
pub(crate) const DEFAULT_MAX_PENDING: usize = 1000;
/// The largest `max_pending`.
pub(crate) const MAX_MAX_PENDING: usize = 100_000;

/// One `[[action]]`, checked and ready to match.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionDef {
    /// Unique across all files; the key of its record and of its runs.
    pub name: String,
    /// A disabled action is loaded and recorded, but never runs.
    pub enabled: bool,
    /// Whose messages and events it takes; it applies when any selector
    /// matches. Default `["*"]`.
    pub devices: Vec<DeviceSelector>,
    pub trigger: Trigger,
    /// `condition`: the action runs only when each of these is met by an
    /// item of the message (or batch). Empty: always.
    pub conditions: Vec<Condition>,
    /// `unlock` (TagoIO's Trigger Unlock, `variable` triggers only): when
    /// not empty, a run locks the action for its device until a batch of
    /// that device meets every one of these.
    pub unlock: Vec<Condition>,
    /// What it does.
    pub kind: ActionKind,
    /// The file it came from, as found in the directory (`actions/x.toml`).
    pub file: PathBuf,
    /// The line of its `[[action]]` header.
    pub line: usize,
    /// Hex SHA-256 of [`ActionDef::definition`]'s JSON text: changes exactly
    /// when the definition does (not when it only moves in its file).
    pub hash: String,
}

/// One entry of `devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceSelector {
    /// `"*"`: every device.
    Any,
    /// A device name.
    Name(String),
    /// `"tag:KEY=VALUE"`: devices with that tag.
    Tag { key: String, value: String },
}

/// What starts an action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Trigger {
    /// A publish whose topic matches one of these filters (all valid).
    MqttTopic(Vec<String>),
    /// Items of these variables (lower-cased) stored in a device's bucket,
    /// by any path: once per stored batch that holds one.
    Variable(Vec<String>),
    /// A cron schedule. `source` is the expression as written; `schedule` is
    /// parsed from it (5 fields read as seconds = 0, and their day-of-week
    /// numbers translated from crontab's to the `cron` crate's); it is read
    /// in `timezone`, the server's local time when none is given. Boxed: a
    /// schedule is large and the other triggers are small.
    Schedule {
        source: String,
        schedule: Box<cron::Schedule>,
        timezone: Option<chrono_tz::Tz>,
    },
    /// `every = "5m"`: at every multiple of this interval since the Unix
    /// epoch (at least [`MIN_EVERY`]), so a reload or a restart neither
    /// shifts nor repeats a firing.
    Every(Duration),
    /// A device connecting or disconnecting.
    DeviceEvent(DeviceEvent),
}

impl Trigger {
    /// The trigger's key in the file: `mqtt_topic`, `variable`, `schedule`,
    /// `every`, `device_event`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Trigger::MqttTopic(_) => "mqtt_topic",
            Trigger::Variable(_) => "variable",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Every(_) => "every",
            Trigger::DeviceEvent(_) => "device_event",
        }
    }

    /// TagoIO's name for the action's type, as an analysis sees it in
    /// `_action_type`: `condition` (a variable trigger), `mqtt_topic`,
    /// `schedule`, `interval`; brook's own `device_event`.
    pub(crate) fn tagoio_type(&self) -> &'static str {
        match self {
            Trigger::MqttTopic(_) => "mqtt_topic",
            Trigger::Variable(_) => "condition",
            Trigger::Schedule { .. } => "schedule",
            Trigger::Every(_) => "interval",
            Trigger::DeviceEvent(_) => "device_event",
        }
    }

    /// Whether the trigger comes with data items (which conditions test).
    pub(crate) fn has_items(&self) -> bool {
        matches!(self, Trigger::MqttTopic(_) | Trigger::Variable(_))
    }

    /// Whether it fires on a timer.
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Trigger::Schedule { .. } | Trigger::Every(_))
    }
}

/// `device_event = "connect" | "disconnect"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DeviceEvent {
    Connect,
    Disconnect,
}

impl DeviceEvent {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeviceEvent::Connect => "connect",
            DeviceEvent::Disconnect => "disconnect",
        }
    }
}

/// What an action does: its `type` and that type's table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ActionKind {
    /// Store the message's items in the publishing device's bucket.
    InsertBucket,
    /// Run a command (see [`super::analysis::run`]).
    Analysis(AnalysisSpec),
    /// Publish a templated message.
    MqttPublish(PublishSpec),
    /// POST the items to an HTTP endpoint, retried, off the message path.
    HttpPost(HttpPostSpec),
    /// Send an email through `[smtp]`, retried, off the message path.
    Email(EmailSpec),
}

impl ActionKind {
    /// The `type` as written: `insert_bucket`, `analysis`, `mqtt_publish`,
    /// `http_post`, `email`.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ActionKind::InsertBucket => "insert_bucket",
            ActionKind::Analysis(_) => "analysis",
            ActionKind::MqttPublish(_) => "mqtt_publish",
            ActionKind::HttpPost(_) => "http_post",
            ActionKind::Email(_) => "email",
        }
    }
}

/// `mqtt_publish = { topic, payload, qos, retain }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishSpec {
    /// A topic name, possibly with templates (checked valid once they are
    /// replaced by a plain word).
    pub topic: String,
    /// Possibly with templates. Default empty.
    pub payload: String,
    /// 0, 1 or 2. Default 0.
    pub qos: u8,
    /// Default false.
    pub retain: bool,
}

/// How a delivery is retried: `attempts` and `backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetrySpec {
    /// Tries in all, the first included (1 to [`MAX_ATTEMPTS`]).
    pub attempts: u32,
    /// The wait before the first retry; it doubles for each next one, up to
    /// [`MAX_BACKOFF`].
    pub backoff: Duration,
}

impl RetrySpec {
    /// The wait after the `made`-th failed attempt (1-based).
    pub(crate) fn delay_after(&self, made: u32) -> Duration {
        let doublings = made.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(MAX_BACKOFF)
            .max(self.backoff.min(MAX_BACKOFF))
    }
}

/// `http_post = { url, headers, attempts, backoff, timeout, fallback_device, max_pending }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpPostSpec {
    /// `http://` or `https://`, possibly with templates (percent-encoded
    /// when filled).
    pub url: String,
    /// Extra request headers; values may hold templates.
    pub headers: BTreeMap<String, String>,
    pub retry: RetrySpec,
    /// For one attempt, connect to last byte.
    pub timeout: Duration,
    /// The device whose bucket takes the items when every attempt failed.
    pub fallback_device: Option<String>,
    /// Deliveries of this action waiting at most; past it the oldest goes.
    pub max_pending: usize,
}

/// `email = { to, subject, body, attempts, backoff, timeout, max_pending }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmailSpec {
    /// Recipients, each checked as an address.
    pub to: Vec<String>,
    /// Possibly with templates.
    pub subject: String,
    /// Possibly with templates. Plain text.
    pub body: String,
    pub retry: RetrySpec,
    /// For one attempt, connect to the end of the conversation.
    pub timeout: Duration,
    /// As [`HttpPostSpec::max_pending`].
    pub max_pending: usize,
}

impl PublishSpec {
    /// The topic and payload for one run. Fails when the rendered topic is
    /// not a valid topic name (a device name with `+` in it, say).
    pub(crate) fn render(&self, vars: &TemplateVars) -> Result<(String, String), String> {
        let topic = render_template(&self.topic, vars);
        check_topic_name(&topic).map_err(|why| format!("topic {topic:?} {why}"))?;
        Ok((topic, render_template(&self.payload, vars)))
    }
}

impl DeviceSelector {
    /// Whether a device with this name and these tags is selected.
    pub(crate) fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        match self {
            DeviceSelector::Any => true,
            DeviceSelector::Name(n) => n == name,
            DeviceSelector::Tag { key, value } => {
                tags.iter().any(|t| &t.key == key && &t.value == value)
            }
        }
    }

    /// As written in the file.
    pub(crate) fn to_text(&self) -> String {
        match self {
            DeviceSelector::Any => "*".to_string(),
            DeviceSelector::Name(n) => n.clone(),
            DeviceSelector::Tag { key, value } => format!("tag:{key}={value}"),
        }
    }

    pub(super) fn parse(s: &str) -> Result<DeviceSelector, String> {
        if s == "*" {
            return Ok(DeviceSelector::Any);
        }
        if let Some(tag) = s.strip_prefix("tag:") {
            return match tag.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => Ok(DeviceSelector::Tag {
                    key: key.trim().to_string(),
                    value: value.to_string(),
                }),
                _ => Err(format!(
                    "invalid device selector {s:?}: expected \"tag:KEY=VALUE\""
                )),
            };
        }
        if s.trim().is_empty() {
            return Err("a device name is empty; use \"*\" for every device".to_string());
        }
        Ok(DeviceSelector::Name(s.to_string()))
    }
}

impl ActionDef {
    /// Whether the action takes messages and events of this device.
    pub(crate) fn applies_to(&self, device_name: &str, tags: &[Tag]) -> bool {
        self.devices.iter().any(|d| d.matches(device_name, tags))
    }

    /// The definition as the `actions` table records it.
    pub(crate) fn record(&self) -> crate::store::actions::ActionRecord {
        crate::store::actions::ActionRecord {
            name: self.name.clone(),
            file: self.file.display().to_string(),
            line: self.line as i64,
            hash: self.hash.clone(),
            definition: self.definition(),
            enabled: self.enabled,
        }
    }

    /// The definition as JSON, in the file's own terms: what the store keeps
    /// and `GET /actions` shows. File and line are not part of it.
    pub(crate) fn definition(&self) -> Value {
        self.definition_with(false)
    }

    /// What [`ActionDef::hash`] is taken over: the definition with the
    /// `http_post` header values, which [`ActionDef::definition`] hides
    /// (they often hold a credential, and the definition is shown by
    /// `GET /actions`).
    pub(super) fn hashed_definition(&self) -> Value {
        self.definition_with(true)
    }

    fn definition_with(&self, header_values: bool) -> Value {
        let trigger = match &self.trigger {
            Trigger::MqttTopic(filters) => json!({"mqtt_topic": filters}),
            Trigger::Variable(variables) => json!({"variable": variables}),
            Trigger::Schedule {
                source, timezone, ..
            } => match timezone {
                None => json!({"schedule": source}),
                Some(tz) => json!({"schedule": source, "timezone": tz.name()}),
            },
            Trigger::Every(every) => json!({"every": human(*every)}),
            Trigger::DeviceEvent(event) => json!({"device_event": event.as_str()}),
        };
        let conditions = |list: &[Condition]| match list {
            [] => Value::Null,
            [one] => one.to_json(),
            many => Value::Array(many.iter().map(Condition::to_json).collect()),
        };
        let mut def = json!({
            "name": self.name,
            "enabled": self.enabled,
            "devices": self.devices.iter().map(DeviceSelector::to_text).collect::<Vec<_>>(),
            "trigger": trigger,
            "condition": conditions(&self.conditions),
            "type": self.kind.type_name(),
        });
        // Only when given, so that the hash of an action without it is what
        // it was before `unlock` existed.
        if !self.unlock.is_empty() {
            def["unlock"] = conditions(&self.unlock);
        }
        let retry = |r: &RetrySpec| (r.attempts, human(r.backoff));
        match &self.kind {
            ActionKind::InsertBucket => {}
            ActionKind::Analysis(a) => {
                def["analysis"] = json!({
                    "command": a.command,
                    "timeout": human(a.timeout),
                    "env": a.env,
                });
            }
            ActionKind::MqttPublish(p) => {
                def["mqtt_publish"] = json!({
                    "topic": p.topic,
                    "payload": p.payload,
                    "qos": p.qos,
                    "retain": p.retain,
                });
            }
            ActionKind::HttpPost(h) => {
                let (attempts, backoff) = retry(&h.retry);
                def["http_post"] = json!({
                    "url": h.url,
                    "headers": if header_values {
                        json!(h.headers)
                    } else {
                        json!(h.headers.keys().map(|k| (k.clone(), "(hidden)")).collect::<BTreeMap<_, _>>())
                    },
                    "attempts": attempts,
                    "backoff": backoff,
                    "timeout": human(h.timeout),
                    "fallback_device": h.fallback_device,
                    "max_pending": h.max_pending,
                });
            }
            ActionKind::Email(e) => {
                let (attempts, backoff) = retry(&e.retry);
                def["email"] = json!({
                    "to": e.to,
                    "subject": e.subject,
                    "body": e.body,
                    "attempts": attempts,
                    "backoff": backoff,
                    "timeout": human(e.timeout),
                    "max_pending": e.max_pending,
                });
            }
        }
        def
    }
}

/// Hex SHA-256 of the canonical JSON text of a definition.
pub(super) fn hash_of(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
}
