//! Action files: `actions/*.toml`, each with `[[action]]` tables, read into
//! [`ActionDef`]s that the action supervisor matches against publishes,
//! schedules and device events, and checked by `brook actions check`.
//!
//! A file is read as a spanned TOML tree and walked by hand rather than
//! deserialized, so that every problem in every file is reported at once,
//! each as `FILE:LINE: message` with the line of the offending key (or of its
//! `[[action]]` header when a key is missing). Nothing is loaded unless the
//! whole directory is clean: a reload that fails keeps the old set.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::analysis::{AnalysisSpec, DEFAULT_TIMEOUT};
use crate::config::parse_duration;
use crate::protocol::validate::{check_topic_filter, check_topic_name};
use crate::store::devices::Tag;

/// Arguments with these endings are taken as script files that must exist.
const SCRIPT_EXTENSIONS: &[&str] = &[".py", ".js", ".mjs", ".cjs", ".sh", ".rb", ".pl"];

/// The templates `mqtt_publish` may use in its topic and payload.
const TEMPLATES: &[&str] = &["DEVICE.NAME", "DEVICE", "VARIABLE", "VALUE", "TOPIC"];

/// Environment variables brook sets for an analysis; an action's `env`
/// may not set them.
const RESERVED_ENV: &[&str] = &[
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
pub struct ActionDef {
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
pub enum DeviceSelector {
    /// `"*"`: every device.
    Any,
    /// A device name.
    Name(String),
    /// `"tag:KEY=VALUE"`: devices with that tag.
    Tag { key: String, value: String },
}

/// What starts an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
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
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::MqttTopic(_) => "mqtt_topic",
            Trigger::Schedule { .. } => "schedule",
            Trigger::DeviceEvent(_) => "device_event",
        }
    }
}

/// `device_event = "connect" | "disconnect"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceEvent {
    Connect,
    Disconnect,
}

impl DeviceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceEvent::Connect => "connect",
            DeviceEvent::Disconnect => "disconnect",
        }
    }
}

/// `condition = { variable, op, value }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Compared without regard to ASCII case, since stored variables are
    /// lower-cased.
    pub variable: String,
    pub op: Op,
    pub value: ConditionValue,
}

/// A condition's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Gt,
    Eq,
    Ne,
    Le,
    Ge,
}

impl Op {
    /// As written in the file: `<`, `>`, `=`, `!=`, `<=`, `>=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Le => "<=",
            Op::Ge => ">=",
        }
    }

    fn parse(s: &str) -> Option<Op> {
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
pub enum ConditionValue {
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
pub enum ActionKind {
    /// Store the message's items in the publishing device's bucket.
    InsertBucket,
    /// Run a command (see [`super::analysis::run`]).
    Analysis(AnalysisSpec),
    /// Publish a templated message.
    MqttPublish(PublishSpec),
}

impl ActionKind {
    /// The `type` as written: `insert_bucket`, `analysis`, `mqtt_publish`.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::InsertBucket => "insert_bucket",
            ActionKind::Analysis(_) => "analysis",
            ActionKind::MqttPublish(_) => "mqtt_publish",
        }
    }
}

/// `mqtt_publish = { topic, payload, qos, retain }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSpec {
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
pub struct TemplateVars<'a> {
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
    pub fn render(&self, vars: &TemplateVars<'_>) -> Result<(String, String), String> {
        let topic = render_template(&self.topic, vars);
        check_topic_name(&topic).map_err(|why| format!("topic {topic:?} {why}"))?;
        Ok((topic, render_template(&self.payload, vars)))
    }
}

/// Replaces `$DEVICE.NAME$`, `$DEVICE$`, `$VARIABLE$`, `$VALUE$` and
/// `$TOPIC$` in `template`, in one pass (a replacement is not expanded
/// again). Any other `$` is kept as it is.
pub fn render_template(template: &str, vars: &TemplateVars<'_>) -> String {
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
fn unknown_templates(text: &str) -> Vec<String> {
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
    pub fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        match self {
            DeviceSelector::Any => true,
            DeviceSelector::Name(n) => n == name,
            DeviceSelector::Tag { key, value } => {
                tags.iter().any(|t| &t.key == key && &t.value == value)
            }
        }
    }

    /// As written in the file.
    pub fn to_text(&self) -> String {
        match self {
            DeviceSelector::Any => "*".to_string(),
            DeviceSelector::Name(n) => n.clone(),
            DeviceSelector::Tag { key, value } => format!("tag:{key}={value}"),
        }
    }

    fn parse(s: &str) -> Result<DeviceSelector, String> {
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
    pub fn matches(&self, item: &Value) -> bool {
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
    pub fn matches_any(&self, items: &[Value]) -> bool {
        items.iter().any(|item| self.matches(item))
    }
}

impl ActionDef {
    /// Whether the action takes messages and events of this device.
    pub fn applies_to(&self, device_name: &str, tags: &[Tag]) -> bool {
        self.devices.iter().any(|d| d.matches(device_name, tags))
    }

    /// The definition as JSON, in the file's own terms: what the store keeps
    /// and what [`ActionDef::hash`] is taken over. File and line are not part
    /// of it.
    /// The definition as the `actions` table records it.
    pub fn record(&self) -> crate::store::actions::ActionRecord {
        crate::store::actions::ActionRecord {
            name: self.name.clone(),
            file: self.file.display().to_string(),
            line: self.line as i64,
            hash: self.hash.clone(),
            definition: self.definition(),
            enabled: self.enabled,
        }
    }

    pub fn definition(&self) -> Value {
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
                    "timeout": super::analysis::human(a.timeout),
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
fn hash_of(definition: &Value) -> String {
    hex::encode(Sha256::digest(definition.to_string().as_bytes()))
}

/// One problem in the action files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    /// The file, as found in the directory (or the directory itself).
    pub file: PathBuf,
    /// The line of the offending key or `[[action]]` header; none when the
    /// problem is the file (or directory) as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ActionError {}

/// Reads and checks every `DIR/*.toml` (in name order; names starting with
/// `.` are skipped). Either every action, or every problem (sorted by file
/// and line). A directory that does not exist is a problem; so is a name
/// used twice, across files too.
pub fn load_dir(dir: &Path) -> Result<Vec<ActionDef>, Vec<ActionError>> {
    let dir_error = |message: String| {
        vec![ActionError {
            file: dir.to_path_buf(),
            line: None,
            message,
        }]
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(dir_error(format!("cannot read the actions directory: {e}"))),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Err(dir_error(format!("cannot read the actions directory: {e}"))),
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".toml") && !name.starts_with('.') {
            files.push(dir.join(&*name));
        }
    }
    files.sort();

    // Commands run in the actions directory; an absolute path keeps that true
    // whatever the server's working directory becomes.
    let working_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut errors = Vec::new();
    let mut defs: Vec<ActionDef> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ActionError {
                    file: file.clone(),
                    line: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let mut source = Source::new(file, &text, dir, &working_dir);
        for (def, name_line) in source.actions() {
            match seen.get(&def.name) {
                Some((other_file, other_line)) => source.errors.push(ActionError {
                    file: file.clone(),
                    line: Some(name_line),
                    message: format!(
                        "duplicate action name {:?} (also at {}:{other_line})",
                        def.name,
                        other_file.display()
                    ),
                }),
                None => {
                    seen.insert(def.name.clone(), (file.clone(), name_line));
                    defs.push(def);
                }
            }
        }
        errors.append(&mut source.errors);
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(errors)
    }
}

/// Checks the text of one action file, `file` in `dir` (as [`load_dir`]
/// does for each file, duplicate names within the file included); for the
/// fuzz target and for checking a file before it is written.
pub fn load_text(file: &Path, text: &str, dir: &Path) -> Result<Vec<ActionDef>, Vec<ActionError>> {
    let mut source = Source::new(file, text, dir, dir);
    let mut defs: Vec<ActionDef> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (def, name_line) in source.actions() {
        if let Some(other_line) = seen.get(&def.name) {
            source.errors.push(ActionError {
                file: file.to_path_buf(),
                line: Some(name_line),
                message: format!(
                    "duplicate action name {:?} (also at line {other_line})",
                    def.name
                ),
            });
            continue;
        }
        seen.insert(def.name.clone(), name_line);
        defs.push(def);
    }
    if source.errors.is_empty() {
        Ok(defs)
    } else {
        Err(source.errors)
    }
}

/// `brook actions check DIR`: prints each problem as `FILE:LINE: message` on
/// stdout and returns 1 (with a count on stderr), or prints
/// `N actions OK in DIR` and returns 0.
pub fn check_command(dir: &Path) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    check_with(dir, &mut stdout.lock(), &mut stderr.lock())
}

/// [`check_command`] with its output streams given, for tests.
pub fn check_with(dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match load_dir(dir) {
        Ok(defs) => {
            let noun = if defs.len() == 1 { "action" } else { "actions" };
            let _ = writeln!(out, "{} {noun} OK in {}", defs.len(), dir.display());
            0
        }
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(out, "{e}");
            }
            let noun = if errors.len() == 1 {
                "problem"
            } else {
                "problems"
            };
            let _ = writeln!(err, "brook: {} {noun} in {}", errors.len(), dir.display());
            1
        }
    }
}

/// Parses a `schedule`: 6 or 7 fields (seconds first, the `cron` crate's
/// syntax, where day-of-week 1 is Sunday), an `@daily`-style shorthand, or 5
/// fields as in crontab (minute hour day month weekday, weekday 0 or 7 =
/// Sunday), which are read with seconds = 0 and their weekday translated.
/// A schedule that would never fire is refused.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let full = match fields.len() {
        1 if fields[0].starts_with('@') => fields[0].to_string(),
        5 => {
            let weekday = crontab_weekdays(fields[4])?;
            format!(
                "0 {} {} {} {} {weekday}",
                fields[0], fields[1], fields[2], fields[3]
            )
        }
        6 | 7 => fields.join(" "),
        n => {
            return Err(format!(
                "invalid schedule {expr:?}: expected 5 fields (minute hour day month weekday) \
                 or 6-7 with seconds first, got {n}"
            ))
        }
    };
    let schedule =
        cron::Schedule::from_str(&full).map_err(|e| format!("invalid schedule {expr:?}: {e}"))?;
    if schedule.upcoming(chrono::Utc).next().is_none() {
        return Err(format!("schedule {expr:?} never fires"));
    }
    Ok(schedule)
}

/// Translates crontab's day-of-week field (0-7, 0 and 7 = Sunday, names,
/// lists, ranges, steps) into the `cron` crate's numbering (1-7, 1 = Sunday)
/// as an explicit list.
fn crontab_weekdays(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let bad = |why: String| format!("invalid day of week {field:?}: {why}");
    let day = |s: &str| -> Result<u32, String> {
        const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32);
        }
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n),
            _ => Err(bad(format!(
                "{s:?} is not 0-7 (0 and 7 are Sunday) or a name like MON"
            ))),
        }
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => match step.parse::<u32>() {
                Ok(step) if step > 0 => (range, Some(step)),
                _ => return Err(bad(format!("step {step:?} is not a positive number"))),
            },
            None => (item, None),
        };
        let (first, last) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            (day(a)?, day(b)?)
        } else {
            let a = day(range)?;
            (a, if step.is_some() { 6 } else { a })
        };
        if first > last {
            return Err(bad(format!("range {range:?} goes backwards")));
        }
        let mut d = first;
        while d <= last {
            days[(d % 7) as usize] = true;
            d += step.unwrap_or(1);
        }
    }
    Ok(days
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(d, _)| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(","))
}

// ---------------------------------------------------------------------------
// Walking one file.

type Val<'i> = Spanned<DeValue<'i>>;

/// One file being read: its text for line numbers, and its problems.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
    /// The directory as given, for messages.
    dir: &'a Path,
    /// Where commands run, for script checks and for the spec.
    working_dir: &'a Path,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    errors: Vec<ActionError>,
}

impl<'a> Source<'a> {
    fn new(file: &'a Path, text: &'a str, dir: &'a Path, working_dir: &'a Path) -> Source<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            file,
            text,
            dir,
            working_dir,
            line_starts,
            errors: Vec::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(ActionError {
            file: self.file.to_path_buf(),
            line: Some(self.line_of(span.start)),
            message: message.into(),
        });
    }

    /// The file's valid actions, each with the line of its `name` (for the
    /// duplicate check); problems go to `self.errors`.
    fn actions(&mut self) -> Vec<(ActionDef, usize)> {
        let (root, syntax) = DeTable::parse_recoverable(self.text);
        if !syntax.is_empty() {
            for e in syntax {
                let span = e.span().unwrap_or(0..0);
                self.error(
                    span,
                    format!("TOML syntax error: {}", e.message().trim_end()),
                );
            }
            return Vec::new();
        }
        let mut defs = Vec::new();
        for (key, value) in root.get_ref().iter() {
            if key.get_ref() != "action" {
                self.error(
                    key.span(),
                    format!(
                        "unknown key `{}` (a file holds only [[action]] tables)",
                        key.get_ref()
                    ),
                );
                continue;
            }
            let Some(array) = value.get_ref().as_array() else {
                self.error(
                    key.span(),
                    "`action` must be an array of tables: write [[action]]",
                );
                continue;
            };
            for item in array.iter() {
                match item.get_ref().as_table() {
                    Some(table) => {
                        if let Some(def) = self.action(table, item.span()) {
                            defs.push(def);
                        }
                    }
                    None => self.error(item.span(), "an action must be a table"),
                }
            }
        }
        defs
    }

    /// Reports keys of `table` not in `known`.
    fn unknown_keys(&mut self, table: &DeTable<'_>, known: &[&str], what: &str) {
        for key in table.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                self.error(
                    key.span(),
                    format!(
                        "unknown key `{}` in {what} (known keys: {})",
                        key.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// A string value, or a problem naming `key`.
    fn string(&mut self, value: &Val<'_>, key: &str) -> Option<String> {
        match value.get_ref().as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: expected a string, got {}",
                        value.get_ref().type_str()
                    ),
                );
                None
            }
        }
    }

    /// One `[[action]]` table; `None` when it has a problem (reported).
    fn action(&mut self, table: &DeTable<'_>, header: Range<usize>) -> Option<(ActionDef, usize)> {
        let errors_before = self.errors.len();
        let line = self.line_of(header.start);
        self.unknown_keys(
            table,
            &[
                "name",
                "enabled",
                "devices",
                "trigger",
                "condition",
                "type",
                "analysis",
                "mqtt_publish",
            ],
            "[[action]]",
        );

        let mut name_line = line;
        let name = match table.get("name") {
            None => {
                self.error(header.clone(), "missing key `name`");
                None
            }
            Some(value) => {
                name_line = self.line_of(value.span().start);
                self.string(value, "name").and_then(|name| {
                    let problem = if name.trim().is_empty() {
                        Some("name: is empty")
                    } else if name.contains('/') {
                        Some("name: may not contain `/` (it is part of the admin API's URLs)")
                    } else if name.chars().any(char::is_control) {
                        Some("name: may not contain control characters")
                    } else {
                        None
                    };
                    match problem {
                        Some(message) => {
                            self.error(value.span(), message);
                            None
                        }
                        None => Some(name),
                    }
                })
            }
        };

        let enabled = match table.get("enabled") {
            None => Some(true),
            Some(value) => match value.get_ref().as_bool() {
                Some(b) => Some(b),
                None => {
                    self.error(
                        value.span(),
                        format!(
                            "enabled: expected true or false, got {}",
                            value.get_ref().type_str()
                        ),
                    );
                    None
                }
            },
        };

        let devices = match table.get("devices") {
            None => Some(vec![DeviceSelector::Any]),
            Some(value) => self.devices(value),
        };

        let trigger = match table.get("trigger") {
            None => {
                self.error(
                    header.clone(),
                    "missing key `trigger` (one of mqtt_topic, schedule, device_event)",
                );
                None
            }
            Some(value) => self.trigger(value),
        };

        let condition = match table.get("condition") {
            None => Some(None),
            Some(value) => {
                let condition = self.condition(value);
                if let Some(Trigger::Schedule { .. } | Trigger::DeviceEvent(_)) = &trigger {
                    self.error(
                        value.span(),
                        "condition: only an mqtt_topic trigger has data to test; \
                         drop the condition or trigger on a topic",
                    );
                }
                condition.map(Some)
            }
        };

        let kind = self.kind(table, &header, trigger.as_ref());

        if self.errors.len() > errors_before {
            return None;
        }
        let (Some(name), Some(enabled), Some(devices), Some(trigger), Some(condition), Some(kind)) =
            (name, enabled, devices, trigger, condition, kind)
        else {
            // Every `None` above has reported a problem; this is not reached.
            return None;
        };
        let mut def = ActionDef {
            name,
            enabled,
            devices,
            trigger,
            condition,
            kind,
            file: self.file.to_path_buf(),
            line,
            hash: String::new(),
        };
        def.hash = hash_of(&def.definition());
        Some((def, name_line))
    }

    /// `devices`: an array of selectors (a single string is accepted too).
    fn devices(&mut self, value: &Val<'_>) -> Option<Vec<DeviceSelector>> {
        let items: Vec<&Val<'_>> = match value.get_ref() {
            DeValue::String(_) => vec![value],
            DeValue::Array(array) => array.iter().collect(),
            other => {
                self.error(
                    value.span(),
                    format!(
                        "devices: expected an array of strings (\"*\", names, \"tag:KEY=VALUE\"), got {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.error(
                value.span(),
                "devices: is empty, so the action would never run; use [\"*\"] for every device",
            );
            return None;
        }
        let mut selectors = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(text) = self.string(item, "devices") else {
                ok = false;
                continue;
            };
            match DeviceSelector::parse(&text) {
                Ok(selector) => selectors.push(selector),
                Err(message) => {
                    self.error(item.span(), format!("devices: {message}"));
                    ok = false;
                }
            }
        }
        ok.then_some(selectors)
    }

    /// `trigger = { mqtt_topic | schedule | device_event }`, exactly one.
    fn trigger(&mut self, value: &Val<'_>) -> Option<Trigger> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "trigger: expected a table like {{ mqtt_topic = [\"sensors/#\"] }}, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        const KINDS: [&str; 3] = ["mqtt_topic", "schedule", "device_event"];
        self.unknown_keys(table, &KINDS, "trigger");
        let given: Vec<(&str, &Val<'_>)> = KINDS
            .iter()
            .filter_map(|k| table.get(*k).map(|v| (*k, v)))
            .collect();
        let (kind, inner) = match given.as_slice() {
            [] => {
                // Unknown keys alone were already reported.
                if table.is_empty() {
                    self.error(
                        value.span(),
                        "trigger: needs one of mqtt_topic, schedule, device_event",
                    );
                }
                return None;
            }
            [one] => *one,
            [(first, _), (second, v), ..] => {
                self.error(
                    v.span(),
                    format!("trigger: has both {first} and {second}; give exactly one"),
                );
                return None;
            }
        };
        match kind {
            "mqtt_topic" => {
                let filters: Vec<&Val<'_>> = match inner.get_ref() {
                    DeValue::String(_) => vec![inner],
                    DeValue::Array(array) => array.iter().collect(),
                    other => {
                        self.error(
                            inner.span(),
                            format!(
                                "mqtt_topic: expected an array of topic filters, got {}",
                                other.type_str()
                            ),
                        );
                        return None;
                    }
                };
                if filters.is_empty() {
                    self.error(inner.span(), "mqtt_topic: is empty");
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for filter in filters {
                    let Some(text) = self.string(filter, "mqtt_topic") else {
                        ok = false;
                        continue;
                    };
                    match check_topic_filter(&text) {
                        Ok(()) => out.push(text),
                        Err(why) => {
                            self.error(
                                filter.span(),
                                format!("mqtt_topic: invalid topic filter {text:?}: {why}"),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(Trigger::MqttTopic(out))
            }
            "schedule" => {
                let source = self.string(inner, "schedule")?;
                match parse_schedule(&source) {
                    Ok(schedule) => Some(Trigger::Schedule {
                        source,
                        schedule: Box::new(schedule),
                    }),
                    Err(message) => {
                        self.error(inner.span(), format!("schedule: {message}"));
                        None
                    }
                }
            }
            _ => {
                let event = self.string(inner, "device_event")?;
                match event.as_str() {
                    "connect" => Some(Trigger::DeviceEvent(DeviceEvent::Connect)),
                    "disconnect" => Some(Trigger::DeviceEvent(DeviceEvent::Disconnect)),
                    other => {
                        self.error(
                            inner.span(),
                            format!(
                                "device_event: expected \"connect\" or \"disconnect\", got {other:?}"
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// `condition = { variable, op, value }`.
    fn condition(&mut self, value: &Val<'_>) -> Option<Condition> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "condition: expected a table like {{ variable = \"temperature\", op = \">\", value = 30 }}, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(table, &["variable", "op", "value"], "condition");
        let errors_before = self.errors.len();
        let variable = match table.get("variable") {
            None => {
                self.error(value.span(), "condition: missing key `variable`");
                None
            }
            Some(v) => self.string(v, "condition.variable").and_then(|s| {
                if s.trim().is_empty() {
                    self.error(v.span(), "condition.variable: is empty");
                    None
                } else {
                    Some(s)
                }
            }),
        };
        let op = match table.get("op") {
            None => {
                self.error(value.span(), "condition: missing key `op`");
                None
            }
            Some(v) => self
                .string(v, "condition.op")
                .and_then(|s| match Op::parse(&s) {
                    Some(op) => Some((op, v.span())),
                    None => {
                        self.error(
                            v.span(),
                            format!("condition.op: expected one of <, >, =, !=, <=, >=, got {s:?}"),
                        );
                        None
                    }
                }),
        };
        let expected = match table.get("value") {
            None => {
                self.error(value.span(), "condition: missing key `value`");
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                    Ok(n) => Some(ConditionValue::Number(n as f64)),
                    Err(_) => {
                        self.error(v.span(), "condition.value: integer out of range");
                        None
                    }
                },
                DeValue::Float(f) => match f.as_str().parse::<f64>() {
                    Ok(n) if n.is_finite() => Some(ConditionValue::Number(n)),
                    _ => {
                        self.error(v.span(), "condition.value: not a finite number");
                        None
                    }
                },
                DeValue::String(s) => Some(ConditionValue::Text(s.to_string())),
                DeValue::Boolean(b) => Some(ConditionValue::Bool(*b)),
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "condition.value: expected a number, string or boolean, got {}",
                            other.type_str()
                        ),
                    );
                    None
                }
            },
        };
        if let (Some((op, span)), Some(ConditionValue::Bool(_))) = (&op, &expected) {
            if !matches!(op, Op::Eq | Op::Ne) {
                self.error(
                    span.clone(),
                    format!(
                        "condition.op: {} does not apply to a boolean; use = or !=",
                        op.as_str()
                    ),
                );
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Condition {
            variable: variable?,
            op: op?.0,
            value: expected?,
        })
    }

    /// `type` and its table.
    fn kind(
        &mut self,
        table: &DeTable<'_>,
        header: &Range<usize>,
        trigger: Option<&Trigger>,
    ) -> Option<ActionKind> {
        const TYPES: [&str; 3] = ["insert_bucket", "analysis", "mqtt_publish"];
        const TABLES: [&str; 2] = ["analysis", "mqtt_publish"];
        let type_value = table.get("type");
        let type_name = match type_value {
            None => {
                self.error(
                    header.clone(),
                    "missing key `type` (insert_bucket, analysis or mqtt_publish)",
                );
                None
            }
            Some(v) => self.string(v, "type").and_then(|s| {
                if TYPES.contains(&s.as_str()) {
                    Some(s)
                } else {
                    self.error(
                        v.span(),
                        format!(
                            "type: expected insert_bucket, analysis or mqtt_publish, got {s:?}"
                        ),
                    );
                    None
                }
            }),
        };
        // A type table that does not go with the type.
        for other in TABLES {
            if let Some((key, _)) = table.get_key_value(other) {
                let fits = type_name.as_deref() == Some(other);
                if !fits && type_name.is_some() {
                    self.error(
                        key.span(),
                        format!(
                            "`{other}` table given, but type is {:?}",
                            type_name.as_deref().unwrap_or("")
                        ),
                    );
                }
            }
        }
        let type_name = type_name?;
        let type_span = type_value.map(|v| v.span()).unwrap_or(header.clone());
        match type_name.as_str() {
            "insert_bucket" => {
                if let Some(trigger @ (Trigger::Schedule { .. } | Trigger::DeviceEvent(_))) =
                    trigger
                {
                    self.error(
                        type_span,
                        format!(
                            "type: insert_bucket stores a message's data, so it needs an \
                             mqtt_topic trigger, not {}",
                            trigger.kind()
                        ),
                    );
                    return None;
                }
                Some(ActionKind::InsertBucket)
            }
            "analysis" => match table.get("analysis") {
                None => {
                    self.error(
                        type_span,
                        "type \"analysis\" needs an `analysis` table, like \
                         analysis = { command = [\"python3\", \"analysis/x.py\"] }",
                    );
                    None
                }
                Some(value) => self.analysis(value).map(ActionKind::Analysis),
            },
            _ => match table.get("mqtt_publish") {
                None => {
                    self.error(
                        type_span,
                        "type \"mqtt_publish\" needs an `mqtt_publish` table, like \
                         mqtt_publish = { topic = \"devices/$DEVICE.NAME$/config\" }",
                    );
                    None
                }
                Some(value) => self.publish(value).map(ActionKind::MqttPublish),
            },
        }
    }

    /// `analysis = { command, timeout, env }`.
    fn analysis(&mut self, value: &Val<'_>) -> Option<AnalysisSpec> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "analysis: expected a table, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(table, &["command", "timeout", "env"], "analysis");
        let errors_before = self.errors.len();

        let mut command = Vec::new();
        match table.get("command") {
            None => self.error(value.span(), "analysis: missing key `command`"),
            Some(v) => match v.get_ref().as_array() {
                None => self.error(
                    v.span(),
                    format!(
                        "analysis.command: expected an array like [\"python3\", \"analysis/x.py\"], got {}",
                        v.get_ref().type_str()
                    ),
                ),
                Some(array) if array.is_empty() => {
                    self.error(v.span(), "analysis.command: is empty")
                }
                Some(array) => {
                    for (i, item) in array.iter().enumerate() {
                        let Some(arg) = self.string(item, "analysis.command") else {
                            continue;
                        };
                        if i == 0 && arg.trim().is_empty() {
                            self.error(item.span(), "analysis.command: the program is empty");
                            continue;
                        }
                        self.check_script(&arg, i == 0, item.span());
                        command.push(arg);
                    }
                }
            },
        }

        let timeout = match table.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(v) => match self
                .string(v, "analysis.timeout")
                .map(|s| parse_duration(&s))
            {
                Some(Ok(d)) if !d.is_zero() => d,
                Some(Ok(_)) => {
                    self.error(v.span(), "analysis.timeout: must be more than 0");
                    Duration::ZERO
                }
                Some(Err(message)) => {
                    self.error(v.span(), format!("analysis.timeout: {message}"));
                    Duration::ZERO
                }
                None => Duration::ZERO,
            },
        };

        let mut env = BTreeMap::new();
        if let Some(v) = table.get("env") {
            match v.get_ref().as_table() {
                None => self.error(
                    v.span(),
                    format!(
                        "analysis.env: expected a table like {{ LIMIT = \"30\" }}, got {}",
                        v.get_ref().type_str()
                    ),
                ),
                Some(vars) => {
                    for (key, val) in vars.iter() {
                        let key_text = key.get_ref().to_string();
                        if key_text.is_empty() || key_text.contains(['=', '\0']) {
                            self.error(
                                key.span(),
                                format!("analysis.env: {key_text:?} is not a variable name"),
                            );
                            continue;
                        }
                        if RESERVED_ENV.contains(&key_text.as_str()) {
                            self.error(
                                key.span(),
                                format!("analysis.env: {key_text} is set by brook itself"),
                            );
                            continue;
                        }
                        let text = match val.get_ref() {
                            DeValue::String(s) => s.to_string(),
                            DeValue::Integer(i) => i.to_string(),
                            DeValue::Float(f) => f.as_str().to_string(),
                            DeValue::Boolean(b) => b.to_string(),
                            other => {
                                self.error(
                                    val.span(),
                                    format!(
                                        "analysis.env.{key_text}: expected a string, got {}",
                                        other.type_str()
                                    ),
                                );
                                continue;
                            }
                        };
                        env.insert(key_text, text);
                    }
                }
            }
        }

        (self.errors.len() == errors_before).then(|| AnalysisSpec {
            command,
            timeout,
            env,
            working_dir: self.working_dir.to_path_buf(),
        })
    }

    /// A command's program (with a `/`: must exist and be executable) or
    /// argument (a script by its extension: must exist), relative to the
    /// actions directory.
    fn check_script(&mut self, arg: &str, program: bool, span: Range<usize>) {
        let is_script = SCRIPT_EXTENSIONS.iter().any(|ext| arg.ends_with(ext));
        if !(program && arg.contains('/')) && (program || !is_script) {
            return;
        }
        let path = Path::new(arg);
        let full = self.working_dir.join(path);
        let shown = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        };
        match std::fs::metadata(&full) {
            Err(_) => self.error(
                span,
                format!(
                    "analysis.command: script {arg} not found (commands run in the actions directory: {} does not exist)",
                    shown.display()
                ),
            ),
            Ok(meta) if !meta.is_file() => self.error(
                span,
                format!("analysis.command: {} is not a file", shown.display()),
            ),
            Ok(meta) if program && meta.permissions().mode() & 0o111 == 0 => self.error(
                span,
                format!(
                    "analysis.command: {} is not executable (chmod +x it, or run it through its interpreter)",
                    shown.display()
                ),
            ),
            Ok(_) => {}
        }
    }

    /// `mqtt_publish = { topic, payload, qos, retain }`.
    fn publish(&mut self, value: &Val<'_>) -> Option<PublishSpec> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "mqtt_publish: expected a table, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(
            table,
            &["topic", "payload", "qos", "retain"],
            "mqtt_publish",
        );
        let errors_before = self.errors.len();
        let mut topic = String::new();
        match table.get("topic") {
            None => self.error(value.span(), "mqtt_publish: missing key `topic`"),
            Some(v) => {
                if let Some(text) = self.string(v, "mqtt_publish.topic") {
                    self.templates(&text, v.span(), "mqtt_publish.topic");
                    let plain = render_template(
                        &text,
                        &TemplateVars {
                            device_name: "x",
                            device_id: "x",
                            variable: "x",
                            value: "x",
                            topic: "x",
                        },
                    );
                    if let Err(why) = check_topic_name(&plain) {
                        self.error(
                            v.span(),
                            format!("mqtt_publish.topic: invalid topic name {text:?}: {why}"),
                        );
                    }
                    topic = text;
                }
            }
        }
        let payload = match table.get("payload") {
            None => String::new(),
            Some(v) => match self.string(v, "mqtt_publish.payload") {
                Some(text) => {
                    self.templates(&text, v.span(), "mqtt_publish.payload");
                    text
                }
                None => String::new(),
            },
        };
        let qos = match table.get("qos") {
            None => 0,
            Some(v) => match v.get_ref() {
                DeValue::Integer(i) if matches!(i.as_str(), "0" | "1" | "2") && i.radix() == 10 => {
                    i.as_str().parse().unwrap_or(0)
                }
                other => {
                    let shown = match other {
                        DeValue::Integer(i) => i.to_string(),
                        other => other.type_str().to_string(),
                    };
                    self.error(
                        v.span(),
                        format!("mqtt_publish.qos: expected 0, 1 or 2, got {shown}"),
                    );
                    0
                }
            },
        };
        let retain = match table.get("retain") {
            None => false,
            Some(v) => v.get_ref().as_bool().unwrap_or_else(|| {
                self.error(
                    v.span(),
                    format!(
                        "mqtt_publish.retain: expected true or false, got {}",
                        v.get_ref().type_str()
                    ),
                );
                false
            }),
        };
        (self.errors.len() == errors_before).then_some(PublishSpec {
            topic,
            payload,
            qos,
            retain,
        })
    }

    /// Reports `$NAME$` templates that are not known.
    fn templates(&mut self, text: &str, span: Range<usize>, key: &str) {
        for unknown in unknown_templates(text) {
            self.error(
                span.clone(),
                format!(
                    "{key}: unknown template {unknown} (known: $DEVICE.NAME$, $DEVICE$, $VARIABLE$, $VALUE$, $TOPIC$)"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
