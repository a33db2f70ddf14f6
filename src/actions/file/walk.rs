//! Reading one action file: a spanned TOML tree walked by hand, so that
//! every problem is reported with its line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::actions::analysis::{AnalysisSpec, DEFAULT_TIMEOUT};
use crate::config::parse_duration;
use crate::protocol::validate::{check_topic_filter, check_topic_name};

use super::*;

type Val<'i> = Spanned<DeValue<'i>>;

/// One file being read: its text for line numbers, and its problems.
pub(super) struct Source<'a> {
    file: &'a Path,
    text: &'a str,
    /// The directory as given, for messages.
    dir: &'a Path,
    /// Where commands run, for script checks and for the spec.
    working_dir: &'a Path,
    /// Where its lines start.
    lines: crate::config::diag::Lines,
    pub(super) errors: Vec<ActionError>,
}

impl<'a> Source<'a> {
    pub(super) fn new(
        file: &'a Path,
        text: &'a str,
        dir: &'a Path,
        working_dir: &'a Path,
    ) -> Source<'a> {
        Source {
            file,
            text,
            dir,
            working_dir,
            lines: crate::config::diag::Lines::new(text),
            errors: Vec::new(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.lines.line_of(offset)
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
    pub(super) fn actions(&mut self) -> Vec<(ActionDef, usize)> {
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
