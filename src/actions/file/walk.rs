//! Reading one action file: a spanned TOML tree walked by hand, so that
//! every problem is reported with its line.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::config::parse_duration;
use crate::protocol::validate::check_topic_filter;

use super::schedule::parse_timezone;
use super::*;

mod kinds;

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
                "unlock",
                "type",
                "analysis",
                "mqtt_publish",
                "http_post",
                "email",
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
                    "missing key `trigger` (one of mqtt_topic, variable, schedule, every, device_event)",
                );
                None
            }
            Some(value) => self.trigger(value),
        };

        let conditions = match table.get("condition") {
            None => Some(Vec::new()),
            Some(value) => {
                let conditions = self.conditions(value, "condition");
                if trigger.as_ref().is_some_and(|t| !t.has_items()) {
                    self.error(
                        value.span(),
                        "condition: only an mqtt_topic or a variable trigger has data to test; \
                         drop the condition or trigger on a topic or a variable",
                    );
                }
                conditions
            }
        };

        let unlock = match table.get("unlock") {
            None => Some(Vec::new()),
            Some(value) => {
                let unlock = self.conditions(value, "unlock");
                if let Some(trigger) = trigger.as_ref().filter(|t| t.kind() != "variable") {
                    self.error(
                        value.span(),
                        format!(
                            "unlock: only a variable trigger can be unlocked by data (as TagoIO's \
                             Trigger Unlock), not {}",
                            trigger.kind()
                        ),
                    );
                }
                unlock
            }
        };

        let kind = self.kind(table, &header, trigger.as_ref());

        if self.errors.len() > errors_before {
            return None;
        }
        let (
            Some(name),
            Some(enabled),
            Some(devices),
            Some(trigger),
            Some(conditions),
            Some(unlock),
            Some(kind),
        ) = (name, enabled, devices, trigger, conditions, unlock, kind)
        else {
            // Every `None` above has reported a problem; this is not reached.
            return None;
        };
        let mut def = ActionDef {
            name,
            enabled,
            devices,
            trigger,
            conditions,
            unlock,
            kind,
            file: self.file.to_path_buf(),
            line,
            hash: String::new(),
        };
        def.hash = hash_of(&def.hashed_definition());
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

    /// `trigger = { mqtt_topic | variable | schedule | every | device_event }`,
    /// exactly one (a schedule may add `timezone`).
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
        const KINDS: [&str; 5] = [
            "mqtt_topic",
            "variable",
            "schedule",
            "every",
            "device_event",
        ];
        self.unknown_keys(
            table,
            &[
                "mqtt_topic",
                "variable",
                "schedule",
                "every",
                "device_event",
                "timezone",
            ],
            "trigger",
        );
        let given: Vec<(&str, &Val<'_>)> = KINDS
            .iter()
            .filter_map(|k| table.get(*k).map(|v| (*k, v)))
            .collect();
        let (kind, inner) = match given.as_slice() {
            [] => {
                // Unknown keys alone were already reported.
                if table.is_empty() || table.len() == usize::from(table.contains_key("timezone")) {
                    self.error(
                        value.span(),
                        "trigger: needs one of mqtt_topic, variable, schedule, every, device_event",
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
        let timezone = match table.get("timezone") {
            None => None,
            Some(tz) if kind != "schedule" => {
                self.error(
                    tz.span(),
                    format!("timezone: applies to a cron schedule only, not to {kind}"),
                );
                return None;
            }
            Some(tz) => {
                let name = self.string(tz, "timezone")?;
                match parse_timezone(&name) {
                    Ok(tz) => Some(tz),
                    Err(message) => {
                        self.error(tz.span(), format!("timezone: {message}"));
                        return None;
                    }
                }
            }
        };
        match kind {
            "mqtt_topic" => {
                let filters = self.strings(inner, "mqtt_topic", "an array of topic filters")?;
                let mut out = Vec::new();
                let mut ok = true;
                for (text, span) in filters {
                    match check_topic_filter(&text) {
                        Ok(()) => out.push(text),
                        Err(why) => {
                            self.error(
                                span,
                                format!("mqtt_topic: invalid topic filter {text:?}: {why}"),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(Trigger::MqttTopic(out))
            }
            "variable" => {
                let names = self.strings(inner, "variable", "an array of variable names")?;
                let mut out: Vec<String> = Vec::new();
                let mut ok = true;
                for (text, span) in names {
                    match crate::actions::data::check_variable_name(&text) {
                        Ok(name) => {
                            if !out.contains(&name) {
                                out.push(name);
                            }
                        }
                        Err(why) => {
                            self.error(span, format!("variable: {text:?} {why}"));
                            ok = false;
                        }
                    }
                }
                ok.then_some(Trigger::Variable(out))
            }
            "schedule" => {
                let source = self.string(inner, "schedule")?;
                match parse_schedule(&source) {
                    Ok(schedule) => Some(Trigger::Schedule {
                        source,
                        schedule: Box::new(schedule),
                        timezone,
                    }),
                    Err(message) => {
                        self.error(inner.span(), format!("schedule: {message}"));
                        None
                    }
                }
            }
            "every" => {
                let text = self.string(inner, "every")?;
                match parse_duration(&text) {
                    Ok(d) if d >= MIN_EVERY => Some(Trigger::Every(d)),
                    Ok(_) => {
                        self.error(
                            inner.span(),
                            format!("every: {text:?} is shorter than the shortest interval, 1m"),
                        );
                        None
                    }
                    Err(message) => {
                        self.error(inner.span(), format!("every: {message}"));
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

    /// A string or a non-empty array of strings, with their spans; `None`
    /// when it is not (reported as `key: expected WHAT`).
    fn strings(
        &mut self,
        value: &Val<'_>,
        key: &str,
        what: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let items: Vec<&Val<'_>> = match value.get_ref() {
            DeValue::String(_) => vec![value],
            DeValue::Array(array) => array.iter().collect(),
            other => {
                self.error(
                    value.span(),
                    format!("{key}: expected {what}, got {}", other.type_str()),
                );
                return None;
            }
        };
        if items.is_empty() {
            self.error(value.span(), format!("{key}: is empty"));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.string(item, key) {
                Some(text) => out.push((text, item.span())),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `condition` or `unlock` (named by `key`): one table, or an array of
    /// tables that must all hold.
    fn conditions(&mut self, value: &Val<'_>, key: &str) -> Option<Vec<Condition>> {
        let tables: Vec<&Val<'_>> = match value.get_ref() {
            DeValue::Table(_) => vec![value],
            DeValue::Array(array) if array.is_empty() => {
                self.error(value.span(), format!("{key}: is empty"));
                return None;
            }
            DeValue::Array(array) => array.iter().collect(),
            other => {
                self.error(
                    value.span(),
                    format!(
                        "{key}: expected a table like {{ variable = \"temperature\", op = \">\", value = 30 }} \
                         or an array of them, got {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for table in tables {
            match self.condition(table, key) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One `{ variable, op, value, field }`.
    fn condition(&mut self, value: &Val<'_>, key: &str) -> Option<Condition> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "{key}: expected a table like {{ variable = \"temperature\", op = \">\", value = 30 }}, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(table, &["variable", "op", "value", "field"], key);
        let errors_before = self.errors.len();
        let variable = match table.get("variable") {
            None => {
                self.error(value.span(), format!("{key}: missing key `variable`"));
                None
            }
            Some(v) => self.string(v, &format!("{key}.variable")).and_then(|s| {
                if s.trim().is_empty() {
                    self.error(v.span(), format!("{key}.variable: is empty"));
                    None
                } else {
                    Some(s)
                }
            }),
        };
        let field = match table.get("field") {
            None => None,
            Some(v) => {
                let text = self.string(v, &format!("{key}.field"))?;
                match Field::parse(&text) {
                    Some(field) => Some(field),
                    None => {
                        self.error(
                            v.span(),
                            format!(
                                "{key}.field: expected \"number\", \"string\" or \"boolean\", got {text:?}"
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        /// What `op` asks for.
        enum OpKind {
            Any,
            Between,
            Compare(Op),
        }
        let op = match table.get("op") {
            None => {
                self.error(value.span(), format!("{key}: missing key `op`"));
                None
            }
            Some(v) => self.string(v, &format!("{key}.op")).and_then(|s| {
                let op = match s.as_str() {
                    "any" => Some(OpKind::Any),
                    "between" => Some(OpKind::Between),
                    other => Op::parse(other).map(OpKind::Compare),
                };
                if op.is_none() {
                    self.error(
                        v.span(),
                        format!(
                            "{key}.op: expected one of <, >, =, !=, <=, >=, between, any, got {s:?}"
                        ),
                    );
                }
                op.map(|op| (op, v.span()))
            }),
        };
        let test = match op {
            None => {
                if !table.contains_key("value") && table.contains_key("op") {
                    // Reported above; a missing value is not news.
                } else if !table.contains_key("value") {
                    self.error(value.span(), format!("{key}: missing key `value`"));
                }
                None
            }
            Some((OpKind::Any, span)) => {
                if let Some(v) = table.get("value") {
                    self.error(v.span(), format!("{key}.value: op \"any\" takes no value"));
                }
                if let Some(f) = table.get("field") {
                    self.error(
                        f.span(),
                        format!("{key}.field: op \"any\" compares nothing"),
                    );
                }
                let _ = span;
                Some(Test::Any)
            }
            Some((OpKind::Between, span)) => match table.get("value") {
                None => {
                    self.error(
                        value.span(),
                        format!("{key}: missing key `value` (between takes [low, high])"),
                    );
                    None
                }
                Some(v) => match v.get_ref().as_array() {
                    Some(pair) if pair.len() == 2 => {
                        let mut ends = pair.iter();
                        let low = ends
                            .next()
                            .and_then(|low| self.condition_value(low, key, field));
                        let high = ends
                            .next()
                            .and_then(|high| self.condition_value(high, key, field));
                        match (low, high) {
                            (Some(ConditionValue::Bool(_)), _)
                            | (_, Some(ConditionValue::Bool(_))) => {
                                self.error(
                                    span,
                                    format!(
                                        "{key}.op: between does not apply to booleans; use = or !="
                                    ),
                                );
                                None
                            }
                            (Some(low), Some(high)) => {
                                let backwards = match (&low, &high) {
                                    (ConditionValue::Number(a), ConditionValue::Number(b)) => a > b,
                                    (ConditionValue::Text(a), ConditionValue::Text(b)) => a > b,
                                    _ => {
                                        self.error(
                                            v.span(),
                                            format!("{key}.value: the ends of a between are of two types; give two numbers or two strings"),
                                        );
                                        return None;
                                    }
                                };
                                if backwards {
                                    self.error(
                                        v.span(),
                                        format!("{key}.value: [low, high] with low above high never holds"),
                                    );
                                    None
                                } else {
                                    Some(Test::Between(low, high))
                                }
                            }
                            _ => None,
                        }
                    }
                    _ => {
                        self.error(
                            v.span(),
                            format!(
                                "{key}.value: between takes [low, high], like [20, 30], got {}",
                                v.get_ref().type_str()
                            ),
                        );
                        None
                    }
                },
            },
            Some((OpKind::Compare(op), span)) => match table.get("value") {
                None => {
                    self.error(value.span(), format!("{key}: missing key `value`"));
                    None
                }
                Some(v) => match self.condition_value(v, key, field) {
                    Some(ConditionValue::Bool(_)) if !matches!(op, Op::Eq | Op::Ne) => {
                        self.error(
                            span,
                            format!(
                                "{key}.op: {} does not apply to a boolean; use = or !=",
                                op.as_str()
                            ),
                        );
                        None
                    }
                    Some(want) => Some(Test::Compare(op, want)),
                    None => None,
                },
            },
        };
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Condition {
            variable: variable?,
            test: test?,
            field,
        })
    }

    /// A condition's value (or one end of a `between`), read as `field`
    /// says when it is given: `field = "string"` takes a number as it is
    /// written (`0x1` stays `"0x1"`), `field = "number"` a numeric string
    /// as its number, `field = "boolean"` `"true"` or `"false"`.
    fn condition_value(
        &mut self,
        v: &Val<'_>,
        key: &str,
        field: Option<Field>,
    ) -> Option<ConditionValue> {
        let as_written = self.text.get(v.span()).unwrap_or("").trim().to_string();
        let plain = match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => ConditionValue::Number(n as f64),
                Err(_) => {
                    self.error(v.span(), format!("{key}.value: integer out of range"));
                    return None;
                }
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(n) if n.is_finite() => ConditionValue::Number(n),
                _ => {
                    self.error(v.span(), format!("{key}.value: not a finite number"));
                    return None;
                }
            },
            DeValue::String(s) => ConditionValue::Text(s.to_string()),
            DeValue::Boolean(b) => ConditionValue::Bool(*b),
            other => {
                self.error(
                    v.span(),
                    format!(
                        "{key}.value: expected a number, string or boolean, got {}",
                        other.type_str()
                    ),
                );
                return None;
            }
        };
        let wrong = |this: &mut Self, what: String| {
            this.error(v.span(), format!("{key}.value: {what}"));
            None
        };
        match (field, plain) {
            (None, plain) => Some(plain),
            (Some(Field::Number), ConditionValue::Number(n)) => Some(ConditionValue::Number(n)),
            (Some(Field::Number), ConditionValue::Text(s)) => {
                match s.trim().parse::<f64>().ok().filter(|n| n.is_finite()) {
                    Some(n) => Some(ConditionValue::Number(n)),
                    None => wrong(self, format!("{s:?} is not a number (field = \"number\")")),
                }
            }
            (Some(Field::Number), ConditionValue::Bool(_)) => wrong(
                self,
                "a boolean is not a number (field = \"number\")".into(),
            ),
            (Some(Field::String), ConditionValue::Text(s)) => Some(ConditionValue::Text(s)),
            (Some(Field::String), _) => Some(ConditionValue::Text(as_written)),
            (Some(Field::Boolean), ConditionValue::Bool(b)) => Some(ConditionValue::Bool(b)),
            (Some(Field::Boolean), ConditionValue::Text(s)) if s == "true" || s == "false" => {
                Some(ConditionValue::Bool(s == "true"))
            }
            (Some(Field::Boolean), other) => wrong(
                self,
                format!(
                    "{} is not true or false (field = \"boolean\")",
                    other.to_json()
                ),
            ),
        }
    }

    /// A duration no longer than `max` and more than 0, or `default` when
    /// absent; `None` (reported) when it is not one.
    fn duration_at_most(
        &mut self,
        value: Option<&Val<'_>>,
        key: &str,
        default: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let Some(v) = value else {
            return Some(default);
        };
        let text = self.string(v, key)?;
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.error(v.span(), format!("{key}: must be more than 0"));
                None
            }
            Ok(d) if d > max => {
                self.error(
                    v.span(),
                    format!(
                        "{key}: {text:?} is longer than {}",
                        crate::actions::analysis::human(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                self.error(v.span(), format!("{key}: {message}"));
                None
            }
        }
    }

    /// A whole number in `range`, or `default` when absent.
    fn count_in(
        &mut self,
        value: Option<&Val<'_>>,
        key: &str,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let Some(v) = value else {
            return Some(default);
        };
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                let shown = self.text.get(v.span()).unwrap_or("").trim().to_string();
                self.error(
                    v.span(),
                    format!(
                        "{key}: expected a whole number from {} to {}, got {shown}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }
}
