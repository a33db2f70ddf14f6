//! Turning the file as written into a [`Config`]: values checked, defaults
//! filled in, each problem as `FILE:LINE: KEY: message`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;
use toml::Spanned;

use super::raw::*;
use super::*;

/// One config text being turned into a [`Config`], for error positions.
pub(super) struct Parser<'a> {
    /// The whole file.
    pub(super) text: &'a str,
    /// Its name, for errors.
    pub(super) file: &'a Path,
    /// Where its lines start, for error positions.
    pub(super) lines: diag::Lines,
}

impl Parser<'_> {
    /// Deserializes the raw structure, turning TOML and serde errors into
    /// `FILE:LINE: KEY: message`.
    pub(super) fn deserialize(&self) -> Result<RawConfig, ConfigError> {
        // Parse once for the key tree (also reports syntax errors), then
        // deserialize for the typed structure.
        let tree = match DeTable::parse(self.text) {
            Ok(tree) => tree,
            Err(err) => {
                let line = err.span().map(|span| self.line_of(span.start));
                let message = format!("TOML syntax error: {}", err.message().trim_end());
                return Err(self.invalid(line, None, message));
            }
        };
        toml::from_str::<RawConfig>(self.text).map_err(|err| {
            let span = err.span();
            let line = span.as_ref().map(|span| self.line_of(span.start));
            let key = span.and_then(|span| diag::key_at(tree.get_ref(), &span));
            self.invalid(line, key, diag::plain_message(err.message()))
        })
    }

    /// Checks the values and fills in defaults.
    pub(super) fn build(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let resolve = |path: PathBuf| {
            if path.is_relative() {
                base.join(path)
            } else {
                path
            }
        };

        let synchronous = match raw.server.synchronous {
            None => defaults.server.synchronous,
            Some(value) => match value.get_ref().to_ascii_lowercase().as_str() {
                "normal" => Synchronous::Normal,
                "full" => Synchronous::Full,
                other => {
                    return Err(self.at(
                        &value,
                        "server.synchronous",
                        format!("expected \"normal\" or \"full\", got {other:?}"),
                    ))
                }
            },
        };
        let server = ServerConfig {
            data_dir: resolve(raw.server.data_dir.unwrap_or(defaults.server.data_dir)),
            synchronous,
            max_write_queue: self.count(
                raw.server.max_write_queue,
                "server.max_write_queue",
                defaults.server.max_write_queue,
                1..=(1 << 24),
            )?,
        };

        let m = raw.mqtt;
        // An empty path counts as not set, so `tls_cert = ""` switches TLS off.
        let tls_cert = m.tls_cert.filter(|p| !p.get_ref().as_os_str().is_empty());
        let tls_key = m.tls_key.filter(|p| !p.get_ref().as_os_str().is_empty());
        match (&tls_cert, &tls_key) {
            (Some(cert), None) => {
                return Err(self.at(
                    cert,
                    "mqtt.tls_cert",
                    "tls_cert is set but tls_key is not; set both or neither".to_string(),
                ))
            }
            (None, Some(key)) => {
                return Err(self.at(
                    key,
                    "mqtt.tls_key",
                    "tls_key is set but tls_cert is not; set both or neither".to_string(),
                ))
            }
            _ => {}
        }
        let max_packet_size = match m.max_packet_size {
            None => defaults.mqtt.max_packet_size,
            Some(value) => {
                let n = *value.get_ref();
                if n == 0 || n > MAX_PACKET_SIZE_LIMIT {
                    return Err(self.at(
                        &value,
                        "mqtt.max_packet_size",
                        format!("must be between 1 and {MAX_PACKET_SIZE_LIMIT}, got {n}"),
                    ));
                }
                n
            }
        };
        let max_inflight = match m.max_inflight {
            None => defaults.mqtt.max_inflight,
            Some(value) => {
                let n = *value.get_ref();
                if n == 0 || n > MAX_INFLIGHT_LIMIT {
                    return Err(self.at(
                        &value,
                        "mqtt.max_inflight",
                        format!("must be between 1 and {MAX_INFLIGHT_LIMIT}, got {n}"),
                    ));
                }
                n
            }
        };
        if let Some(value) = &m.sys_interval {
            if parse_duration(value.get_ref()).is_ok_and(|d| d.is_zero()) {
                return Err(self.at(value, "mqtt.sys_interval", "must be more than 0".into()));
            }
        }
        let sys_interval = self.duration(
            m.sys_interval,
            "mqtt.sys_interval",
            defaults.mqtt.sys_interval,
        )?;
        let ws_path = match m.ws_path {
            None => defaults.mqtt.ws_path.clone(),
            Some(value) => {
                net::check_path(value.get_ref()).map_err(|e| self.at(&value, "mqtt.ws_path", e))?;
                value.into_inner()
            }
        };
        let ws_allowed_origins = match m.ws_allowed_origins {
            None => defaults.mqtt.ws_allowed_origins.clone(),
            Some(list) => list
                .into_iter()
                .map(|o| {
                    net::check_origin(o.get_ref())
                        .map_err(|e| self.at(&o, "mqtt.ws_allowed_origins", e))?;
                    Ok(o.get_ref().trim().to_string())
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let ws_trusted_proxies = match m.ws_trusted_proxies {
            None => defaults.mqtt.ws_trusted_proxies.clone(),
            Some(list) => list
                .into_iter()
                .map(|p| {
                    IpNet::parse(p.get_ref()).map_err(|e| self.at(&p, "mqtt.ws_trusted_proxies", e))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let mqtt = MqttConfig {
            listen: self.addr(m.listen, "mqtt.listen", defaults.mqtt.listen)?,
            tls_listen: self.addr(m.tls_listen, "mqtt.tls_listen", defaults.mqtt.tls_listen)?,
            tls_cert: tls_cert.map(|p| resolve(p.into_inner())),
            tls_key: tls_key.map(|p| resolve(p.into_inner())),
            ws_listen: self.optional_addr(
                m.ws_listen,
                "mqtt.ws_listen",
                defaults.mqtt.ws_listen,
            )?,
            wss_listen: self.optional_addr(
                m.wss_listen,
                "mqtt.wss_listen",
                defaults.mqtt.wss_listen,
            )?,
            ws_path,
            ws_allowed_origins,
            ws_trusted_proxies,
            allow_anonymous: m.allow_anonymous.unwrap_or(defaults.mqtt.allow_anonymous),
            max_packet_size,
            max_inflight,
            max_queued_messages: m
                .max_queued_messages
                .unwrap_or(defaults.mqtt.max_queued_messages),
            max_queued_bytes: self.count(
                m.max_queued_bytes,
                "mqtt.max_queued_bytes",
                defaults.mqtt.max_queued_bytes,
                1..=(1 << 31),
            )?,
            slow_subscriber_timeout: self.duration(
                m.slow_subscriber_timeout,
                "mqtt.slow_subscriber_timeout",
                defaults.mqtt.slow_subscriber_timeout,
            )?,
            sys_interval,
            // 65,535 bytes (the longest MQTT string) hold at most 32,768 levels.
            max_topic_levels: self.count(
                m.max_topic_levels,
                "mqtt.max_topic_levels",
                defaults.mqtt.max_topic_levels,
                1..=32_768,
            )?,
            max_subscriptions_per_client: self.count(
                m.max_subscriptions_per_client,
                "mqtt.max_subscriptions_per_client",
                defaults.mqtt.max_subscriptions_per_client,
                1..=10_000_000,
            )?,
            max_retained_messages: self.count(
                m.max_retained_messages,
                "mqtt.max_retained_messages",
                defaults.mqtt.max_retained_messages,
                0..=100_000_000,
            )?,
            max_retained_bytes: self.count(
                m.max_retained_bytes,
                "mqtt.max_retained_bytes",
                defaults.mqtt.max_retained_bytes,
                0..=(1 << 40),
            )?,
            max_topics: self.count(
                m.max_topics,
                "mqtt.max_topics",
                defaults.mqtt.max_topics,
                1..=100_000_000,
            )?,
            max_connections: self.count(
                m.max_connections,
                "mqtt.max_connections",
                defaults.mqtt.max_connections,
                1..=10_000_000,
            )?,
            max_sessions_per_device: self.count(
                m.max_sessions_per_device,
                "mqtt.max_sessions_per_device",
                defaults.mqtt.max_sessions_per_device,
                1..=10_000_000,
            )?,
            max_session_expiry: self.cap(m.max_session_expiry, "mqtt.max_session_expiry")?,
            max_message_expiry: self.cap(m.max_message_expiry, "mqtt.max_message_expiry")?,
            receive_maximum: self.count(
                m.receive_maximum,
                "mqtt.receive_maximum",
                usize::from(defaults.mqtt.receive_maximum),
                1..=65_535,
            )? as u16,
            topic_alias_maximum: self.count(
                m.topic_alias_maximum,
                "mqtt.topic_alias_maximum",
                usize::from(defaults.mqtt.topic_alias_maximum),
                0..=65_535,
            )? as u16,
            max_keep_alive: self.count(
                m.max_keep_alive,
                "mqtt.max_keep_alive",
                usize::from(defaults.mqtt.max_keep_alive),
                1..=65_535,
            )? as u16,
        };

        if let Some(value) = &raw.http.request_timeout {
            if parse_duration(value.get_ref()).is_ok_and(|d| d.is_zero()) {
                return Err(self.at(value, "http.request_timeout", "must be more than 0".into()));
            }
        }
        let http = HttpConfig {
            listen: self.addr(raw.http.listen, "http.listen", defaults.http.listen)?,
            admin_token: raw.http.admin_token.unwrap_or_default(),
            request_timeout: self.duration(
                raw.http.request_timeout,
                "http.request_timeout",
                defaults.http.request_timeout,
            )?,
        };
        let actions = ActionsConfig {
            dir: resolve(raw.actions.dir.unwrap_or(defaults.actions.dir)),
            pass_env: raw.actions.pass_env.unwrap_or_default(),
            max_parser_runs: self.count(
                raw.actions.max_parser_runs,
                "actions.max_parser_runs",
                defaults.actions.max_parser_runs,
                0..=1024,
            )?,
            max_parser_queue: self.count(
                raw.actions.max_parser_queue,
                "actions.max_parser_queue",
                defaults.actions.max_parser_queue,
                0..=1_000_000,
            )?,
        };
        let data = DataConfig {
            retention: self.duration(
                raw.data.retention,
                "data.retention",
                defaults.data.retention,
            )?,
            prune_interval: {
                if let Some(value) = &raw.data.prune_interval {
                    if parse_duration(value.get_ref()).is_ok_and(|d| d.is_zero()) {
                        return Err(self.at(
                            value,
                            "data.prune_interval",
                            "must be more than 0".into(),
                        ));
                    }
                }
                self.duration(
                    raw.data.prune_interval,
                    "data.prune_interval",
                    defaults.data.prune_interval,
                )?
            },
        };
        let smtp = match raw.smtp {
            None => None,
            Some(smtp) => Some(self.smtp(smtp)?),
        };
        let limits = LimitsConfig {
            publish_per_minute: raw.limits.publish_per_minute.unwrap_or(0),
            connect_per_minute: raw.limits.connect_per_minute.unwrap_or(0),
        };
        let log = LogConfig {
            level: raw.log.level.filter(|level| !level.trim().is_empty()),
        };
        let acl = raw
            .acl
            .into_iter()
            .map(|rule| self.acl_rule(rule))
            .collect::<Result<Vec<_>, _>>()?;
        let bridges = self.bridges(raw.bridge, base)?;

        Ok(Config {
            server,
            mqtt,
            http,
            actions,
            data,
            smtp,
            limits,
            log,
            acl,
            bridges,
            source: Some(self.file.to_path_buf()),
        })
    }

    /// Checks `[smtp]`.
    fn smtp(&self, smtp: Spanned<RawSmtp>) -> Result<SmtpConfig, ConfigError> {
        let line = self.line_of(smtp.span().start);
        let smtp = smtp.into_inner();
        let host = smtp.host.get_ref().trim().to_string();
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(self.at(
                &smtp.host,
                "smtp.host",
                format!(
                    "expected a host name like \"smtp.example.com\", got {:?}",
                    smtp.host.get_ref()
                ),
            ));
        }
        let tls = match &smtp.tls {
            None => SmtpTls::StartTls,
            Some(value) => match value.get_ref().as_str() {
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                "none" => SmtpTls::None,
                other => {
                    return Err(self.at(
                        value,
                        "smtp.tls",
                        format!("expected \"starttls\", \"tls\" or \"none\", got {other:?}"),
                    ))
                }
            },
        };
        let default_port = match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        };
        let port = self.count(smtp.port, "smtp.port", default_port, 1..=65_535)? as u16;
        if let Err(e) = smtp.from.get_ref().parse::<lettre::message::Mailbox>() {
            return Err(self.at(
                &smtp.from,
                "smtp.from",
                format!(
                    "{:?} is not an address like \"brook@example.com\": {e}",
                    smtp.from.get_ref()
                ),
            ));
        }
        let password_env = match smtp.password_env {
            None => None,
            Some(var) if var.get_ref().trim().is_empty() || var.get_ref().contains(['=', '\0']) => {
                return Err(self.at(
                    &var,
                    "smtp.password_env",
                    format!("{:?} is not an environment variable name", var.get_ref()),
                ))
            }
            Some(var) => Some(var.into_inner()),
        };
        Ok(SmtpConfig {
            host,
            port,
            username: smtp.username.filter(|u| !u.is_empty()),
            password_env,
            from: smtp.from.into_inner(),
            tls,
            line,
        })
    }

    /// Checks one `[[acl]]` table.
    fn acl_rule(&self, rule: Spanned<RawAcl>) -> Result<AclRule, ConfigError> {
        let line = self.line_of(rule.span().start);
        let rule = rule.into_inner();

        let who_text = rule.who.get_ref().as_str();
        let who = if who_text == "*" {
            Who::Any
        } else if who_text == "anonymous" {
            Who::Anonymous
        } else if let Some(name) = who_text.strip_prefix("device:").filter(|n| !n.is_empty()) {
            Who::Device(name.to_string())
        } else if let Some(name) = who_text.strip_prefix("bridge:").filter(|n| !n.is_empty()) {
            Who::Bridge(name.to_string())
        } else if let Some((key, value)) = who_text
            .strip_prefix("tag:")
            .and_then(|tag| tag.split_once('='))
            .filter(|(key, _)| !key.is_empty())
        {
            Who::Tag(key.to_string(), value.to_string())
        } else {
            return Err(self.at(
                &rule.who,
                "acl.who",
                format!(
                    "expected \"*\", \"anonymous\", \"device:NAME\", \"tag:KEY=VALUE\" or \"bridge:NAME\", got {who_text:?}"
                ),
            ));
        };

        validate_topic_filter(rule.topic.get_ref())
            .map_err(|message| self.at(&rule.topic, "acl.topic", message))?;

        let access = match rule.access.get_ref().as_str() {
            "allow" => Access::Allow,
            "deny" => Access::Deny,
            other => {
                return Err(self.at(
                    &rule.access,
                    "acl.access",
                    format!("expected \"allow\" or \"deny\", got {other:?}"),
                ))
            }
        };

        let actions = match rule.actions {
            None => vec![AclAction::Publish, AclAction::Subscribe],
            Some(list) => {
                if list.get_ref().is_empty() {
                    return Err(self.at(
                        &list,
                        "acl.actions",
                        "empty; list \"publish\", \"subscribe\" or both".to_string(),
                    ));
                }
                let mut actions = Vec::new();
                for action in list.get_ref() {
                    let action = match action.get_ref().as_str() {
                        "publish" => AclAction::Publish,
                        "subscribe" => AclAction::Subscribe,
                        other => {
                            return Err(self.at(
                                action,
                                "acl.actions",
                                format!("expected \"publish\" or \"subscribe\", got {other:?}"),
                            ))
                        }
                    };
                    if !actions.contains(&action) {
                        actions.push(action);
                    }
                }
                actions
            }
        };

        Ok(AclRule {
            who,
            topic: rule.topic.into_inner(),
            access,
            actions,
            line,
        })
    }

    /// A socket address, or `default` when the key is absent.
    pub(super) fn addr(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: SocketAddr,
    ) -> Result<SocketAddr, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) => value.get_ref().trim().parse().map_err(|_| {
                self.at(
                    &value,
                    key,
                    format!(
                        "invalid address {:?}: expected IP:PORT, like \"0.0.0.0:1883\" or \"[::]:1883\"",
                        value.get_ref()
                    ),
                )
            }),
        }
    }

    /// A socket address, `None` for `""` (off), or `default` when the key
    /// is absent.
    pub(super) fn optional_addr(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Option<SocketAddr>,
    ) -> Result<Option<SocketAddr>, ConfigError> {
        match value {
            Some(v) if v.get_ref().trim().is_empty() => Ok(None),
            // The fallback address is not used: there is a value.
            Some(v) => self
                .addr(Some(v), key, SocketAddr::from(([0, 0, 0, 0], 0)))
                .map(Some),
            None => Ok(default),
        }
    }

    /// A whole number within `range`, or `default` when the key is absent.
    pub(super) fn count(
        &self,
        value: Option<Spanned<i64>>,
        key: &str,
        default: usize,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) => {
                let n = *value.get_ref();
                if !range.contains(&n) {
                    return Err(self.at(
                        &value,
                        key,
                        format!(
                            "must be between {} and {}, got {n}",
                            range.start(),
                            range.end()
                        ),
                    ));
                }
                Ok(n as usize)
            }
        }
    }

    /// A duration, or `default` when the key is absent.
    pub(super) fn duration(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(value) => {
                parse_duration(value.get_ref()).map_err(|message| self.at(&value, key, message))
            }
        }
    }

    /// An optional cap in whole seconds (MQTT's intervals are 32-bit
    /// seconds): absent or `""` = none.
    pub(super) fn cap(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = value.filter(|v| !v.get_ref().trim().is_empty()) else {
            return Ok(None);
        };
        let d = parse_duration(value.get_ref()).map_err(|message| self.at(&value, key, message))?;
        if d.as_secs() == 0 || d.as_secs() > u64::from(u32::MAX) {
            let message = "must be between 1s and 4294967295s (about 136 years)".to_string();
            return Err(self.at(&value, key, message));
        }
        Ok(Some(Duration::from_secs(d.as_secs())))
    }

    /// An error about a spanned value.
    pub(super) fn at<T>(&self, value: &Spanned<T>, key: &str, message: String) -> ConfigError {
        self.invalid(
            Some(self.line_of(value.span().start)),
            Some(key.to_string()),
            message,
        )
    }

    /// An error in this file.
    pub(super) fn invalid(
        &self,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            key,
            message,
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.lines.line_of(offset)
    }
}
