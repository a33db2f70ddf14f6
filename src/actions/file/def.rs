//! What an action is: its definition, and how it matches devices, items and
//! templates.

use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::actions::analysis::AnalysisSpec;
use crate::protocol::validate::check_topic_name;
use crate::store::devices::Tag;

/// Arguments with these endings are taken as script files that must exist.
pub(super) const SCRIPT_EXTENSIONS: &[&str] = &[".py", ".js", ".mjs", ".cjs", ".sh", ".rb", ".pl"];

/// The templates `mqtt_publish` may use in its topic and payload.
pub(super) const TEMPLATES: &[&str] = &["DEVICE.NAME", "DEVICE", "VARIABLE", "VALUE", "TOPIC"];

/// Environment variables brook sets for an analysis; an action's `env`
/// may not set them.
pub(super) const RESERVED_ENV: &[&str] = &[
    "T_ANALYSIS_CONTEXT",
    "T_ANALYSIS_DATA",
    "T_ANALYSIS_ENV",
    "T_ANALYSIS_ID",
    "T_ANALYSIS_TOKEN",
    "TAGOIO_API",
    "BROOK_API",
];

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
    /// When set, the action runs only if an item of the message meets it.
    pub condition: Option<Condition>,
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
    /// A cron schedule. `source` is the expression as written; `schedule` is
    /// parsed from it (5 fields read as seconds = 0, and their day-of-week
    /// numbers translated from crontab's to the `cron` crate's). Boxed: a
    /// schedule is large and the other triggers are small.
    Schedule {
        source: String,
        schedule: Box<cron::Schedule>,
    },
    /// A device connecting or disconnecting.
    DeviceEvent(DeviceEvent),
}

impl Trigger {
    /// The trigger's key in the file: `mqtt_topic`, `schedule`, `device_event`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Trigger::MqttTopic(_) => "mqtt_topic",
            Trigger::Schedule { .. } => "schedule",
            Trigger::DeviceEvent(_) => "device_event",
        }
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

/// `condition = { variable, op, value }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// Compared without regard to ASCII case, since stored variables are
    /// lower-cased.
    pub variable: String,
    pub op: Op,
    pub value: ConditionValue,
}

/// A condition's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Gt,
    Eq,
    Ne,
    Le,
    Ge,
}

impl Op {
    /// As written in the file: `<`, `>`, `=`, `!=`, `<=`, `>=`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            ">" => Op::Gt,
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<=" => Op::Le,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Lt => ordering == Less,
            Op::Gt => ordering == Greater,
            Op::Eq => ordering == Equal,
            Op::Ne => ordering != Equal,
            Op::Le => ordering != Greater,
            Op::Ge => ordering != Less,
        }
    }
}

/// A condition's `value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConditionValue {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl ConditionValue {
    fn to_json(&self) -> Value {
        match self {
            ConditionValue::Number(n) => json!(n),
            ConditionValue::Text(s) => json!(s),
            ConditionValue::Bool(b) => json!(b),
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
}

impl ActionKind {
    /// The `type` as written: `insert_bucket`, `analysis`, `mqtt_publish`.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ActionKind::InsertBucket => "insert_bucket",
            ActionKind::Analysis(_) => "analysis",
            ActionKind::MqttPublish(_) => "mqtt_publish",
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

/// What the `mqtt_publish` templates stand for in one run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TemplateVars<'a> {
    /// `$DEVICE.NAME$`.
    pub device_name: &'a str,
    /// `$DEVICE$`: the device id.
    pub device_id: &'a str,
    /// `$VARIABLE$`: the (first matching) item's variable.
    pub variable: &'a str,
    /// `$VALUE$`: that item's value as text.
    pub value: &'a str,
    /// `$TOPIC$`: the triggering message's topic.
    pub topic: &'a str,
}

impl PublishSpec {
    /// The topic and payload for one run. Fails when the rendered topic is
    /// not a valid topic name (a device name with `+` in it, say).
    pub(crate) fn render(&self, vars: &TemplateVars<'_>) -> Result<(String, String), String> {
        let topic = render_template(&self.topic, vars);
        check_topic_name(&topic).map_err(|why| format!("topic {topic:?} {why}"))?;
        Ok((topic, render_template(&self.payload, vars)))
    }
}

/// Replaces `$DEVICE.NAME$`, `$DEVICE$`, `$VARIABLE$`, `$VALUE$` and
/// `$TOPIC$` in `template`, in one pass (a replacement is not expanded
/// again). Any other `$` is kept as it is.
pub(crate) fn render_template(template: &str, vars: &TemplateVars<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name = after.find('$').map(|end| &after[..end]);
        let value = match name {
            Some("DEVICE.NAME") => Some(vars.device_name),
            Some("DEVICE") => Some(vars.device_id),
            Some("VARIABLE") => Some(vars.variable),
            Some("VALUE") => Some(vars.value),
            Some("TOPIC") => Some(vars.topic),
            _ => None,
        };
        match (name, value) {
            (Some(name), Some(value)) => {
                out.push_str(value);
                rest = &after[name.len() + 1..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `$NAME$` templates in `text` that are not known ones, for the check.
/// Only upper-case names count, so `$5 and $6` is plain text.
pub(super) fn unknown_templates(text: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        let after = &rest[start + 1..];
        match after.find('$') {
            Some(end) => {
                let name = &after[..end];
                let template_like = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '.' || c == '_')
                    && name.chars().any(|c| c.is_ascii_uppercase());
                if TEMPLATES.contains(&name) {
                    rest = &after[end + 1..];
                    continue;
                }
                if template_like {
                    unknown.push(format!("${name}$"));
                    rest = &after[end + 1..];
                    continue;
                }
                rest = after;
            }
            None => break,
        }
    }
    unknown
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

impl Condition {
    /// Whether one data item meets the condition: its `variable` is the
    /// condition's (ignoring ASCII case) and its `value` compares true.
    /// Numbers compare numerically (a numeric string counts as a number),
    /// strings as strings, booleans with `=` and `!=` only. A value of
    /// another type than the condition's does not match, whatever the op.
    pub(crate) fn matches(&self, item: &Value) -> bool {
        let same_variable = item
            .get("variable")
            .and_then(Value::as_str)
            .is_some_and(|v| v.eq_ignore_ascii_case(&self.variable));
        if !same_variable {
            return false;
        }
        let Some(value) = item.get("value") else {
            return false;
        };
        match &self.value {
            ConditionValue::Number(want) => {
                let have = match value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                match have.and_then(|have| have.partial_cmp(want)) {
                    Some(ordering) => self.op.holds(ordering),
                    None => false,
                }
            }
            ConditionValue::Text(want) => match value {
                Value::String(have) => self.op.holds(have.as_str().cmp(want.as_str())),
                _ => false,
            },
            ConditionValue::Bool(want) => {
                let have = match value {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) if s == "true" => Some(true),
                    Value::String(s) if s == "false" => Some(false),
                    _ => None,
                };
                match (have, self.op) {
                    (Some(have), Op::Eq) => have == *want,
                    (Some(have), Op::Ne) => have != *want,
                    _ => false,
                }
            }
        }
    }

    /// Whether any of the items meets it.
    pub(crate) fn matches_any(&self, items: &[Value]) -> bool {
        items.iter().any(|item| self.matches(item))
    }
}

impl ActionDef {
    /// Whether the action takes messages and events of this device.
    pub(crate) fn applies_to(&self, device_name: &str, tags: &[Tag]) -> bool {
        self.devices.iter().any(|d| d.matches(device_name, tags))
    }

    /// The definition as JSON, in the file's own terms: what the store keeps
    /// and what [`ActionDef::hash`] is taken over. File and line are not part
    /// of it.
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

    pub(crate) fn definition(&self) -> Value {
        let trigger = match &self.trigger {
            Trigger::MqttTopic(filters) => json!({"mqtt_topic": filters}),
            Trigger::Schedule { source, .. } => json!({"schedule": source}),
            Trigger::DeviceEvent(event) => json!({"device_event": event.as_str()}),
        };
        let condition = self.condition.as_ref().map(
            |c| json!({"variable": c.variable, "op": c.op.as_str(), "value": c.value.to_json()}),
        );
        let mut def = json!({
            "name": self.name,
            "enabled": self.enabled,
            "devices": self.devices.iter().map(DeviceSelector::to_text).collect::<Vec<_>>(),
            "trigger": trigger,
            "condition": condition,
            "type": self.kind.type_name(),
        });
        match &self.kind {
            ActionKind::InsertBucket => {}
            ActionKind::Analysis(a) => {
                def["analysis"] = json!({
                    "command": a.command,
                    "timeout": crate::actions::analysis::human(a.timeout),
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
        }
        def
    }
}

/// Hex SHA-256 of the canonical JSON text of a definition.
pub(super) fn hash_of(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
}
