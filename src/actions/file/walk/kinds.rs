//! The type tables of an action (`analysis`, `mqtt_publish`, `http_post`,
//! `email`), read like the rest of its file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use crate::actions::analysis::{AnalysisSpec, DEFAULT_TIMEOUT};
use crate::config::parse_duration;
use crate::protocol::validate::check_topic_name;

use super::super::*;
use super::{Source, Val};

impl Source<'_> {
    /// `type` and its table.
    pub(super) fn kind(
        &mut self,
        table: &DeTable<'_>,
        header: &Range<usize>,
        trigger: Option<&Trigger>,
    ) -> Option<ActionKind> {
        const TYPES: [&str; 5] = [
            "insert_bucket",
            "analysis",
            "mqtt_publish",
            "http_post",
            "email",
        ];
        const TABLES: [&str; 4] = ["analysis", "mqtt_publish", "http_post", "email"];
        let type_value = table.get("type");
        let type_name = match type_value {
            None => {
                self.error(
                    header.clone(),
                    "missing key `type` (insert_bucket, analysis, mqtt_publish, http_post or email)",
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
                            "type: expected insert_bucket, analysis, mqtt_publish, http_post or email, got {s:?}"
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
                if let Some(trigger) = trigger.filter(|t| t.kind() != "mqtt_topic") {
                    self.error(
                        type_span,
                        format!(
                            "type: insert_bucket stores a message's data, so it needs an \
                             mqtt_topic trigger, not {}{}",
                            trigger.kind(),
                            if trigger.kind() == "variable" {
                                " (a variable trigger fires on data already stored)"
                            } else {
                                ""
                            }
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
            "mqtt_publish" => match table.get("mqtt_publish") {
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
            "http_post" => match table.get("http_post") {
                None => {
                    self.error(
                        type_span,
                        "type \"http_post\" needs an `http_post` table, like \
                         http_post = { url = \"https://example.com/readings\" }",
                    );
                    None
                }
                Some(value) => self.http_post(value).map(ActionKind::HttpPost),
            },
            _ => match table.get("email") {
                None => {
                    self.error(
                        type_span,
                        "type \"email\" needs an `email` table, like \
                         email = { to = [\"ops@example.com\"], subject = \"$DEVICE.NAME$: $VARIABLE$ = $VALUE$\" }",
                    );
                    None
                }
                Some(value) => self.email(value).map(ActionKind::Email),
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
                    let plain = render_template(&text, &TemplateVars::placeholder());
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
                    "{key}: unknown template {unknown} (known: {})",
                    known_list()
                ),
            );
        }
    }

    /// `attempts` and `backoff` of a delivery table named `key`.
    fn retry(&mut self, table: &DeTable<'_>, key: &str) -> Option<RetrySpec> {
        let attempts = self.count_in(
            table.get("attempts"),
            &format!("{key}.attempts"),
            i64::from(DEFAULT_ATTEMPTS),
            1..=i64::from(MAX_ATTEMPTS),
        );
        let backoff = self.duration_at_most(
            table.get("backoff"),
            &format!("{key}.backoff"),
            DEFAULT_BACKOFF,
            MAX_BACKOFF,
        );
        Some(RetrySpec {
            attempts: u32::try_from(attempts?).ok()?,
            backoff: backoff?,
        })
    }

    /// `max_pending` of a delivery table named `key`.
    fn max_pending(&mut self, table: &DeTable<'_>, key: &str) -> Option<usize> {
        self.count_in(
            table.get("max_pending"),
            &format!("{key}.max_pending"),
            DEFAULT_MAX_PENDING as i64,
            1..=MAX_MAX_PENDING as i64,
        )
        .map(|n| n as usize)
    }

    /// `http_post = { url, headers, attempts, backoff, timeout, fallback_device, max_pending }`.
    fn http_post(&mut self, value: &Val<'_>) -> Option<HttpPostSpec> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "http_post: expected a table, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(
            table,
            &[
                "url",
                "headers",
                "attempts",
                "backoff",
                "timeout",
                "fallback_device",
                "max_pending",
            ],
            "http_post",
        );
        let errors_before = self.errors.len();
        let mut url = String::new();
        match table.get("url") {
            None => self.error(value.span(), "http_post: missing key `url`"),
            Some(v) => {
                if let Some(text) = self.string(v, "http_post.url") {
                    self.templates(&text, v.span(), "http_post.url");
                    let plain = render_url(&text, &TemplateVars::placeholder());
                    if let Err(why) = check_http_url(&plain) {
                        self.error(v.span(), format!("http_post.url: {text:?} {why}"));
                    }
                    url = text;
                }
            }
        }
        let mut headers = BTreeMap::new();
        if let Some(v) = table.get("headers") {
            match v.get_ref().as_table() {
                None => self.error(
                    v.span(),
                    format!(
                        "http_post.headers: expected a table like {{ Authorization = \"Bearer ...\" }}, got {}",
                        v.get_ref().type_str()
                    ),
                ),
                Some(given) => {
                    for (name, val) in given.iter() {
                        let name_text = name.get_ref().to_string();
                        if let Err(why) = check_header_name(&name_text) {
                            self.error(name.span(), format!("http_post.headers: {name_text:?} {why}"));
                            continue;
                        }
                        let key = format!("http_post.headers.{name_text}");
                        let Some(text) = self.string(val, &key) else {
                            continue;
                        };
                        self.templates(&text, val.span(), &key);
                        let plain = render_line(&text, &TemplateVars::placeholder());
                        if plain.chars().any(char::is_control) {
                            self.error(
                                val.span(),
                                format!("{key}: may not contain control characters (a line break, a tab)"),
                            );
                            continue;
                        }
                        headers.insert(name_text, text);
                    }
                }
            }
        }
        let retry = self.retry(table, "http_post");
        let timeout = self.duration_at_most(
            table.get("timeout"),
            "http_post.timeout",
            DEFAULT_HTTP_TIMEOUT,
            MAX_ATTEMPT_TIMEOUT,
        );
        let fallback_device = match table.get("fallback_device") {
            None => None,
            Some(v) => self.string(v, "http_post.fallback_device").and_then(|name| {
                let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
                if name.is_empty() || name.len() > 100 || !name.chars().all(safe) {
                    self.error(
                        v.span(),
                        format!(
                            "http_post.fallback_device: {name:?} is not a device name (1 to 100 characters of A-Za-z0-9_.-)"
                        ),
                    );
                    None
                } else {
                    Some(name)
                }
            }),
        };
        let max_pending = self.max_pending(table, "http_post");
        if self.errors.len() > errors_before {
            return None;
        }
        Some(HttpPostSpec {
            url,
            headers,
            retry: retry?,
            timeout: timeout?,
            fallback_device,
            max_pending: max_pending?,
        })
    }

    /// `email = { to, subject, body, attempts, backoff, timeout, max_pending }`.
    fn email(&mut self, value: &Val<'_>) -> Option<EmailSpec> {
        let Some(table) = value.get_ref().as_table() else {
            self.error(
                value.span(),
                format!(
                    "email: expected a table, got {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        };
        self.unknown_keys(
            table,
            &[
                "to",
                "subject",
                "body",
                "attempts",
                "backoff",
                "timeout",
                "max_pending",
            ],
            "email",
        );
        let errors_before = self.errors.len();
        let mut to = Vec::new();
        match table.get("to") {
            None => self.error(value.span(), "email: missing key `to`"),
            Some(v) => {
                if let Some(addresses) = self.strings(v, "email.to", "an array of email addresses")
                {
                    for (address, span) in addresses {
                        match address.parse::<lettre::Address>() {
                            Ok(_) if address.contains('$') => self.error(
                                span,
                                format!("email.to: {address:?}: recipients take no templates"),
                            ),
                            Ok(_) => to.push(address),
                            Err(e) => self.error(
                                span,
                                format!("email.to: {address:?} is not an email address: {e}"),
                            ),
                        }
                    }
                }
            }
        }
        let mut subject = String::new();
        match table.get("subject") {
            None => self.error(value.span(), "email: missing key `subject`"),
            Some(v) => {
                if let Some(text) = self.string(v, "email.subject") {
                    self.templates(&text, v.span(), "email.subject");
                    if text.chars().any(char::is_control) {
                        self.error(
                            v.span(),
                            "email.subject: may not contain control characters (a line break)",
                        );
                    }
                    subject = text;
                }
            }
        }
        let body = match table.get("body") {
            None => String::new(),
            Some(v) => match self.string(v, "email.body") {
                Some(text) => {
                    self.templates(&text, v.span(), "email.body");
                    text
                }
                None => String::new(),
            },
        };
        let retry = self.retry(table, "email");
        let timeout = self.duration_at_most(
            table.get("timeout"),
            "email.timeout",
            DEFAULT_EMAIL_TIMEOUT,
            MAX_ATTEMPT_TIMEOUT,
        );
        let max_pending = self.max_pending(table, "email");
        if self.errors.len() > errors_before {
            return None;
        }
        Some(EmailSpec {
            to,
            subject,
            body,
            retry: retry?,
            timeout: timeout?,
            max_pending: max_pending?,
        })
    }
}

/// Whether `url` (templates filled) is an `http://` or `https://` URL with
/// a host; the reason when it is not.
fn check_http_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => return Err(format!("has the scheme {other:?}; use http:// or https://")),
        None => return Err("has no scheme; start it with http:// or https://".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

/// Headers brook sets itself, which an action may not.
const OWN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "tagoio-retries",
];

/// Whether `name` is a header name an action may set.
fn check_header_name(name: &str) -> Result<(), String> {
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err("is not a header name".into());
    }
    if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err("is set by brook itself".into());
    }
    Ok(())
}
