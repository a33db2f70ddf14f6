//! `config.toml` as written: every key optional, spans kept on what is
//! validated, unknown keys refused.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::*;

/// The top level of `config.toml` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    /// `[server]`.
    pub(super) server: RawServer,
    /// `[mqtt]`.
    pub(super) mqtt: RawMqtt,
    /// `[http]`.
    pub(super) http: RawHttp,
    /// `[actions]`.
    pub(super) actions: RawActions,
    /// `[data]`.
    pub(super) data: RawData,
    /// `[smtp]`, spanned for its line.
    pub(super) smtp: Option<Spanned<RawSmtp>>,
    /// `[limits]`.
    pub(super) limits: RawLimits,
    /// `[log]`.
    pub(super) log: RawLog,
    /// `[[acl]]`, spanned for the rule's line.
    pub(super) acl: Vec<Spanned<RawAcl>>,
    /// `[[bridge]]`, spanned for the table's line.
    pub(super) bridge: Vec<Spanned<bridge::RawBridge>>,
}

/// `[server]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    /// See [`ServerConfig::data_dir`].
    pub(super) data_dir: Option<PathBuf>,
    /// See [`ServerConfig::synchronous`]; spanned for its error.
    pub(super) synchronous: Option<Spanned<String>>,
    /// See [`ServerConfig::max_write_queue`].
    pub(super) max_write_queue: Option<Spanned<i64>>,
}

/// `[mqtt]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMqtt {
    /// See [`MqttConfig::listen`].
    pub(super) listen: Option<Spanned<String>>,
    /// See [`MqttConfig::tls_listen`].
    pub(super) tls_listen: Option<Spanned<String>>,
    /// See [`MqttConfig::tls_cert`]; spanned for the "without tls_key" error.
    pub(super) tls_cert: Option<Spanned<PathBuf>>,
    /// See [`MqttConfig::tls_key`].
    pub(super) tls_key: Option<Spanned<PathBuf>>,
    /// See [`MqttConfig::ws_listen`]; `""` switches it off.
    pub(super) ws_listen: Option<Spanned<String>>,
    /// See [`MqttConfig::wss_listen`]; `""` switches it off.
    pub(super) wss_listen: Option<Spanned<String>>,
    /// See [`MqttConfig::ws_path`].
    pub(super) ws_path: Option<Spanned<String>>,
    /// See [`MqttConfig::ws_allowed_origins`].
    pub(super) ws_allowed_origins: Option<Vec<Spanned<String>>>,
    /// See [`MqttConfig::ws_trusted_proxies`].
    pub(super) ws_trusted_proxies: Option<Vec<Spanned<String>>>,
    /// See [`MqttConfig::allow_anonymous`].
    pub(super) allow_anonymous: Option<bool>,
    /// See [`MqttConfig::max_packet_size`].
    pub(super) max_packet_size: Option<Spanned<usize>>,
    /// See [`MqttConfig::max_inflight`].
    pub(super) max_inflight: Option<Spanned<usize>>,
    /// See [`MqttConfig::max_queued_messages`].
    pub(super) max_queued_messages: Option<usize>,
    /// See [`MqttConfig::max_queued_bytes`].
    pub(super) max_queued_bytes: Option<Spanned<i64>>,
    /// See [`MqttConfig::slow_subscriber_timeout`].
    pub(super) slow_subscriber_timeout: Option<Spanned<String>>,
    /// See [`MqttConfig::sys_interval`].
    pub(super) sys_interval: Option<Spanned<String>>,
    /// See [`MqttConfig::max_topic_levels`].
    pub(super) max_topic_levels: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_subscriptions_per_client`].
    pub(super) max_subscriptions_per_client: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_retained_messages`].
    pub(super) max_retained_messages: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_retained_bytes`].
    pub(super) max_retained_bytes: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_topics`].
    pub(super) max_topics: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_connections`].
    pub(super) max_connections: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_sessions_per_device`].
    pub(super) max_sessions_per_device: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_session_expiry`].
    pub(super) max_session_expiry: Option<Spanned<String>>,
    /// See [`MqttConfig::max_message_expiry`].
    pub(super) max_message_expiry: Option<Spanned<String>>,
    /// See [`MqttConfig::receive_maximum`].
    pub(super) receive_maximum: Option<Spanned<i64>>,
    /// See [`MqttConfig::topic_alias_maximum`].
    pub(super) topic_alias_maximum: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_keep_alive`].
    pub(super) max_keep_alive: Option<Spanned<i64>>,
}

/// `[http]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    /// See [`HttpConfig::listen`].
    pub(super) listen: Option<Spanned<String>>,
    /// See [`HttpConfig::admin_token`].
    pub(super) admin_token: Option<String>,
    /// See [`HttpConfig::request_timeout`].
    pub(super) request_timeout: Option<Spanned<String>>,
}

/// `[actions]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawActions {
    /// See [`ActionsConfig::dir`].
    pub(super) dir: Option<PathBuf>,
    /// See [`ActionsConfig::pass_env`].
    pub(super) pass_env: Option<Vec<String>>,
    /// See [`ActionsConfig::max_parser_runs`].
    pub(super) max_parser_runs: Option<Spanned<i64>>,
    /// See [`ActionsConfig::max_parser_queue`].
    pub(super) max_parser_queue: Option<Spanned<i64>>,
}

/// `[data]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawData {
    /// See [`DataConfig::retention`].
    pub(super) retention: Option<Spanned<String>>,
    /// See [`DataConfig::prune_interval`].
    pub(super) prune_interval: Option<Spanned<String>>,
}

/// `[smtp]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    /// See [`SmtpConfig::host`].
    pub(super) host: Spanned<String>,
    /// See [`SmtpConfig::port`].
    pub(super) port: Option<Spanned<i64>>,
    /// See [`SmtpConfig::username`].
    pub(super) username: Option<String>,
    /// See [`SmtpConfig::password_env`].
    pub(super) password_env: Option<Spanned<String>>,
    /// See [`SmtpConfig::from`].
    pub(super) from: Spanned<String>,
    /// See [`SmtpConfig::tls`].
    pub(super) tls: Option<Spanned<String>>,
}

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    /// See [`LimitsConfig::publish_per_minute`].
    pub(super) publish_per_minute: Option<u32>,
    /// See [`LimitsConfig::connect_per_minute`].
    pub(super) connect_per_minute: Option<u32>,
}

/// `[log]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    /// See [`LogConfig::level`].
    pub(super) level: Option<String>,
}

/// One `[[acl]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcl {
    /// See [`AclRule::who`].
    pub(super) who: Spanned<String>,
    /// See [`AclRule::topic`].
    pub(super) topic: Spanned<String>,
    /// See [`AclRule::access`].
    pub(super) access: Spanned<String>,
    /// See [`AclRule::actions`]; both when left out.
    pub(super) actions: Option<Spanned<Vec<Spanned<String>>>>,
}
