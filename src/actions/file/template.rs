//! Message variables (TagoIO's name for them): the `$NAME$` templates that
//! `mqtt_publish`, `http_post` and `email` fill from the run that sends them.

use serde_json::Value;

/// The templates an action may use.
pub(crate) const TEMPLATES: &[&str] = &[
    "DEVICE.NAME",
    "DEVICE",
    "VARIABLE",
    "VALUE",
    "UNIT",
    "TIME",
    "LOCATION",
    "GROUP",
    "TOPIC",
    "ACTION.STATE",
];

/// The templates as a message lists them.
pub(crate) fn known_list() -> String {
    TEMPLATES
        .iter()
        .map(|t| format!("${t}$"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the templates stand for in one run; empty when the run has no such
/// thing (a schedule has no device, a device event no item).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TemplateVars {
    /// `$DEVICE.NAME$`.
    pub device_name: String,
    /// `$DEVICE$`: the device id.
    pub device_id: String,
    /// `$VARIABLE$`: the (first matching) item's variable.
    pub variable: String,
    /// `$VALUE$`: that item's value as text.
    pub value: String,
    /// `$UNIT$`: its unit.
    pub unit: String,
    /// `$TIME$`: its time, ISO 8601 UTC.
    pub time: String,
    /// `$LOCATION$`: its location as `lat,lng`.
    pub location: String,
    /// `$GROUP$`: its group.
    pub group: String,
    /// `$TOPIC$`: the triggering message's topic.
    pub topic: String,
    /// `$ACTION.STATE$`: `locked` or `unlocked`, once this run is decided.
    pub action_state: String,
}

impl TemplateVars {
    /// Fills the item fields from a data item in its JSON (wire) form.
    pub(crate) fn with_item(mut self, item: Option<&Value>) -> TemplateVars {
        let Some(item) = item else {
            return self;
        };
        let text = |key: &str| match item.get(key) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        self.variable = text("variable");
        self.value = text("value");
        self.unit = text("unit");
        self.time = text("time");
        self.group = text("group");
        self.location = item
            .get("location")
            .and_then(|l| l.get("coordinates"))
            .and_then(Value::as_array)
            .filter(|c| c.len() == 2)
            .map(|c| format!("{},{}", c[1], c[0]))
            .unwrap_or_default();
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "DEVICE.NAME" => &self.device_name,
            "DEVICE" => &self.device_id,
            "VARIABLE" => &self.variable,
            "VALUE" => &self.value,
            "UNIT" => &self.unit,
            "TIME" => &self.time,
            "LOCATION" => &self.location,
            "GROUP" => &self.group,
            "TOPIC" => &self.topic,
            "ACTION.STATE" => &self.action_state,
            _ => return None,
        })
    }

    /// A value with every template replaced by a plain word, for checking
    /// that a template's text is well formed once filled.
    pub(crate) fn placeholder() -> TemplateVars {
        let x = || "x".to_string();
        TemplateVars {
            device_name: x(),
            device_id: x(),
            variable: x(),
            value: x(),
            unit: x(),
            time: x(),
            location: x(),
            group: x(),
            topic: x(),
            action_state: x(),
        }
    }
}

/// Replaces the known `$NAME$` templates in `template`, in one pass (a
/// replacement is not expanded again). Any other `$` is kept as it is.
pub(crate) fn render_template(template: &str, vars: &TemplateVars) -> String {
    render_with(template, vars, |s, out| out.push_str(s))
}

/// [`render_template`] for a URL: what a template puts in is
/// percent-encoded (all but `A-Z a-z 0-9 - . _ ~`), so that a device's value
/// cannot add a path segment, a query or another host.
pub(crate) fn render_url(template: &str, vars: &TemplateVars) -> String {
    render_with(template, vars, |s, out| {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    })
}

/// [`render_template`] for one line (a header value, a subject): control
/// characters a template puts in become spaces, so that a value cannot
/// start another header.
pub(crate) fn render_line(template: &str, vars: &TemplateVars) -> String {
    render_with(template, vars, |s, out| {
        out.extend(s.chars().map(|c| if c.is_control() { ' ' } else { c }))
    })
}

fn render_with(template: &str, vars: &TemplateVars, put: impl Fn(&str, &mut String)) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let name = after.find('$').map(|end| &after[..end]);
        match name.and_then(|name| vars.get(name).map(|value| (name, value))) {
            Some((name, value)) => {
                put(value, &mut out);
                rest = &after[name.len() + 1..];
            }
            None => {
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
pub(crate) fn unknown_templates(text: &str) -> Vec<String> {
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
