//! Loading and validating `config.toml`, the one file that configures brook.
//!
//! Every section and key is optional; what is missing takes the built-in
//! default. A bad file is refused whole, with a [`ConfigError`] that names the
//! file, the line and the key (`config.toml:7: mqtt.max_inflight: ...`), so
//! that the server can stop with a message the user can act on. Relative paths
//! in the file are resolved against the directory that holds it.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

mod bridge;
pub use bridge::{BridgeConfig, Password, Protocol, RemoteAddr, TopicMap};

/// Client ids that start with this belong to bridges (`bridge:NAME`): a
/// bridge's outgoing queue is registered under such an id, and a device may
/// not connect with one (it would take that queue over).
pub const BRIDGE_CLIENT_PREFIX: &str = "bridge:";

/// The environment variable that overrides `[http] admin_token`.
pub const ADMIN_TOKEN_ENV: &str = "BROOK_ADMIN_TOKEN";

/// The file read when no `--config` is given, when it exists.
pub const DEFAULT_FILE: &str = "config.toml";

/// The largest packet MQTT can express (the remaining length's maximum).
pub const MAX_PACKET_SIZE_LIMIT: usize = 268_435_455;

/// The largest number of in-flight messages MQTT packet identifiers allow.
pub const MAX_INFLIGHT_LIMIT: usize = 65_535;

/// The whole configuration, defaults filled in and paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`: where the database lives and how it is written.
    pub server: ServerConfig,
    /// `[mqtt]`: the MQTT listeners and per-session limits.
    pub mqtt: MqttConfig,
    /// `[http]`: the HTTP API listener and the admin token.
    pub http: HttpConfig,
    /// `[actions]`: where the action files are.
    pub actions: ActionsConfig,
    /// `[limits]`: per-device rate limits.
    pub limits: LimitsConfig,
    /// `[log]`: the log filter when `RUST_LOG` is not set.
    pub log: LogConfig,
    /// `[[acl]]`: the access rules, in file order (first match wins).
    pub acl: Vec<AclRule>,
    /// `[[bridge]]`: the remote brokers to forward to and take from.
    pub bridges: Vec<BridgeConfig>,
    /// The file this configuration came from, `None` for built-in defaults;
    /// kept so that messages (and reloads) can name it.
    pub source: Option<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// The directory that holds `brook.db`, created when missing.
    pub data_dir: PathBuf,
    /// SQLite's `synchronous` pragma (WAL mode): `normal` trades the last
    /// transactions on power loss for speed, `full` syncs every commit.
    pub synchronous: Synchronous,
    /// Writes waiting for the database writer at most; when full, whoever
    /// writes waits (publishers are held back), nothing queues unbounded.
    pub max_write_queue: usize,
}

/// SQLite's `synchronous` setting, `[server] synchronous = "normal" | "full"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL`: durable against a crash of brook, not
    /// always against a power loss.
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`: every commit is synced to disk.
    Full,
}

impl Synchronous {
    /// The value for `PRAGMA synchronous = ...`.
    pub fn as_pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// The plain TCP listener.
    pub listen: SocketAddr,
    /// The TLS listener, opened only when both `tls_cert` and `tls_key` are set.
    pub tls_listen: SocketAddr,
    /// PEM certificate chain for the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// Whether clients without a password (token) are let in.
    pub allow_anonymous: bool,
    /// The largest packet accepted, in bytes; larger ones close the connection.
    pub max_packet_size: usize,
    /// Unacknowledged outgoing QoS 1/2 messages per session.
    pub max_inflight: usize,
    /// Messages kept per session while it is offline or behind.
    pub max_queued_messages: usize,
    /// How long a full subscriber may hold its publishers back before it is
    /// disconnected as a slow consumer.
    pub slow_subscriber_timeout: Duration,
    /// How often the `$SYS/broker/...` topics are published.
    pub sys_interval: Duration,
    /// Levels a topic name or filter may have; deeper filters are refused
    /// (SUBACK 0x80), a deeper PUBLISH closes the connection.
    pub max_topic_levels: usize,
    /// Distinct filters one client may hold; past it a SUBSCRIBE filter gets 0x80.
    pub max_subscriptions_per_client: usize,
    /// Retained messages in all; past it a retained publish is delivered but
    /// not retained. `$SYS` topics do not count.
    pub max_retained_messages: usize,
    /// Payload bytes of all retained messages together, likewise.
    pub max_retained_bytes: usize,
    /// Topics with an actor at once (retained, or published to recently);
    /// a publish that would need one more closes its connection.
    pub max_topics: usize,
    /// Client connections at once; past it a new connection is closed at accept.
    pub max_connections: usize,
    /// Persistent sessions (clean session 0) one device may hold (anonymous
    /// clients count as one device); past it CONNECT gets code 2.
    pub max_sessions_per_device: usize,
}

impl MqttConfig {
    /// The certificate and key when TLS is configured (both are set).
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// The HTTP API listener (device API, admin API, metrics).
    pub listen: SocketAddr,
    /// The admin API's bearer token; empty means the admin API is refused.
    /// `BROOK_ADMIN_TOKEN`, when set and non-empty, overrides it.
    pub admin_token: String,
    /// How long a client may take to send a request's head and body; a slower
    /// one gets 408 and is closed.
    pub request_timeout: Duration,
}

/// `[actions]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionsConfig {
    /// The directory whose `*.toml` files are loaded as actions.
    pub dir: PathBuf,
    /// Names of the server's environment variables an analysis may see,
    /// beyond `PATH`, `HOME` and `LANG`.
    pub pass_env: Vec<String>,
    /// Payload parser runs at once, over all devices; 0 = one per core.
    pub max_parser_runs: usize,
    /// Parser runs waiting for a slot; past it a message is refused (not
    /// stored) and the refusal recorded as a run.
    pub max_parser_queue: usize,
}

/// `[limits]`: per device, per minute; 0 means unlimited.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// PUBLISH packets (and `POST /data` requests) a device may send per minute.
    pub publish_per_minute: u32,
    /// Connections a device may open per minute.
    pub connect_per_minute: u32,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogConfig {
    /// A `tracing` filter (`info`, `brook=debug,actix=warn`), used when
    /// `RUST_LOG` is not set.
    pub level: Option<String>,
}

/// One `[[acl]]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AclRule {
    /// Whom the rule applies to.
    pub who: Who,
    /// The topic filter the rule covers; may hold `%d` (device name) and `%c`
    /// (client id), substituted per client before matching.
    pub topic: String,
    /// Whether a match allows or denies.
    pub access: Access,
    /// The operations the rule covers.
    pub actions: Vec<AclAction>,
    /// The line of the rule in the config file, for logs and the Live Inspector.
    pub line: usize,
}

/// The `who` of an ACL rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// `"*"`: every client.
    Any,
    /// `"anonymous"`: clients that connected without a token.
    Anonymous,
    /// `"device:NAME"`: the clients authenticated as that device.
    Device(String),
    /// `"tag:KEY=VALUE"`: the clients whose device has that tag.
    Tag(String, String),
    /// `"bridge:NAME"`: what the `[[bridge]]` of that name publishes locally
    /// (its `in` messages) and subscribes to (its `out` filters).
    Bridge(String),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Any => f.write_str("*"),
            Who::Anonymous => f.write_str("anonymous"),
            Who::Device(name) => write!(f, "device:{name}"),
            Who::Tag(key, value) => write!(f, "tag:{key}={value}"),
            Who::Bridge(name) => write!(f, "bridge:{name}"),
        }
    }
}

/// The `access` of an ACL rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `"allow"`.
    Allow,
    /// `"deny"`.
    Deny,
}

/// One of the `actions` of an ACL rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// `"publish"`.
    Publish,
    /// `"subscribe"`.
    Subscribe,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: {source}", file.display())]
    Read {
        /// The file that was asked for.
        file: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}", InvalidDisplay { file, line: *line, key: key.as_deref(), message })]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// 1-based line of the problem, when known.
        line: Option<usize>,
        /// The dotted key (`mqtt.listen`), when known.
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
}

/// Formats `FILE:LINE: KEY: message`, leaving out what is not known.
struct InvalidDisplay<'a> {
    file: &'a Path,
    line: Option<usize>,
    key: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// The 1-based line of the problem, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => *line,
        }
    }

    /// The dotted key of the problem, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => key.as_deref(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                data_dir: PathBuf::from("data"),
                synchronous: Synchronous::Normal,
                max_write_queue: 65_536,
            },
            mqtt: MqttConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
                tls_listen: SocketAddr::from(([0, 0, 0, 0], 8883)),
                tls_cert: None,
                tls_key: None,
                allow_anonymous: false,
                max_packet_size: 1_048_576,
                max_inflight: 100,
                max_queued_messages: 10_000,
                slow_subscriber_timeout: Duration::from_secs(10),
                sys_interval: Duration::from_secs(10),
                max_topic_levels: 128,
                max_subscriptions_per_client: 10_000,
                max_retained_messages: 100_000,
                max_retained_bytes: 256 * 1024 * 1024,
                max_topics: 200_000,
                max_connections: 100_000,
                max_sessions_per_device: 1_000,
            },
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
                admin_token: String::new(),
                request_timeout: Duration::from_secs(10),
            },
            actions: ActionsConfig {
                dir: PathBuf::from("actions"),
                pass_env: Vec::new(),
                max_parser_runs: 0,
                max_parser_queue: 256,
            },
            limits: LimitsConfig {
                publish_per_minute: 0,
                connect_per_minute: 0,
            },
            log: LogConfig::default(),
            acl: Vec::new(),
            bridges: Vec::new(),
            source: None,
        }
    }
}

impl Config {
    /// Loads the configuration.
    ///
    /// `path` given: that file must exist. `None`: `./config.toml` when
    /// present, else the built-in defaults. In every case a non-empty
    /// `BROOK_ADMIN_TOKEN` then overrides `[http] admin_token`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => Some(path.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_FILE);
                default.is_file().then_some(default)
            }
        };
        let mut config = match file {
            Some(file) => {
                let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                Config::from_str(&text, &file)?
            }
            None => Config::default(),
        };
        config.override_admin_token(std::env::var(ADMIN_TOKEN_ENV).ok());
        Ok(config)
    }

    /// Parses and validates `text`, the contents of `file`; `file` names the
    /// file in errors and anchors relative paths. Does not read the
    /// environment (see [`Config::load`]).
    #[allow(clippy::should_implement_trait)] // needs the file name too, so not FromStr
    pub fn from_str(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let parser = Parser { text, file };
        let raw: RawConfig = parser.deserialize()?;
        let base = file.parent().unwrap_or(Path::new(""));
        parser.build(raw, base)
    }

    /// Replaces `[http] admin_token` with `value` when it is set and not empty
    /// (the value of `BROOK_ADMIN_TOKEN`).
    pub fn override_admin_token(&mut self, value: Option<String>) {
        if let Some(token) = value.filter(|token| !token.is_empty()) {
            self.http.admin_token = token;
        }
    }

    /// The HTTP base URL for management commands: `http://HOST:PORT` from
    /// `[http] listen`, with an unspecified address (`0.0.0.0`, `[::]`)
    /// replaced by loopback.
    pub fn admin_url(&self) -> String {
        let addr = self.http.listen;
        match addr {
            SocketAddr::V4(v4) => {
                let ip = if v4.ip().is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST
                } else {
                    *v4.ip()
                };
                format!("http://{ip}:{}", v4.port())
            }
            SocketAddr::V6(v6) => {
                let ip = if v6.ip().is_unspecified() {
                    std::net::Ipv6Addr::LOCALHOST
                } else {
                    *v6.ip()
                };
                format!("http://[{ip}]:{}", v6.port())
            }
        }
    }
}

/// Parses a duration: a whole number and a unit (`ms`, `s`, `m`, `h`, `d`),
/// possibly several in a row (`1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad = || {
        format!("invalid duration {s:?}: expected a number and a unit, like \"500ms\", \"10s\", \"5m\", \"2h\" or \"1d\"")
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| format!("duration {s:?} is too long"))?;
    }
    Ok(total)
}

/// Checks an MQTT topic filter: not empty, `#` only as the last level and
/// alone, `+` only as a whole level. `%d` and `%c` are plain characters here.
pub fn validate_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("empty topic filter".to_string());
    }
    if filter.contains('\0') {
        return Err(format!("topic filter {filter:?} contains a NUL character"));
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "invalid topic filter {filter:?}: `#` must be the last level, alone"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "invalid topic filter {filter:?}: `+` must be a whole level"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The file as written: every key optional, spans kept on what is validated.

/// The top level of `config.toml` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    /// `[server]`.
    server: RawServer,
    /// `[mqtt]`.
    mqtt: RawMqtt,
    /// `[http]`.
    http: RawHttp,
    /// `[actions]`.
    actions: RawActions,
    /// `[limits]`.
    limits: RawLimits,
    /// `[log]`.
    log: RawLog,
    /// `[[acl]]`, spanned for the rule's line.
    acl: Vec<Spanned<RawAcl>>,
    /// `[[bridge]]`, spanned for the table's line.
    bridge: Vec<Spanned<bridge::RawBridge>>,
}

/// `[server]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    /// See [`ServerConfig::data_dir`].
    data_dir: Option<PathBuf>,
    /// See [`ServerConfig::synchronous`]; spanned for its error.
    synchronous: Option<Spanned<String>>,
    /// See [`ServerConfig::max_write_queue`].
    max_write_queue: Option<Spanned<i64>>,
}

/// `[mqtt]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawMqtt {
    /// See [`MqttConfig::listen`].
    listen: Option<Spanned<String>>,
    /// See [`MqttConfig::tls_listen`].
    tls_listen: Option<Spanned<String>>,
    /// See [`MqttConfig::tls_cert`]; spanned for the "without tls_key" error.
    tls_cert: Option<Spanned<PathBuf>>,
    /// See [`MqttConfig::tls_key`].
    tls_key: Option<Spanned<PathBuf>>,
    /// See [`MqttConfig::allow_anonymous`].
    allow_anonymous: Option<bool>,
    /// See [`MqttConfig::max_packet_size`].
    max_packet_size: Option<Spanned<usize>>,
    /// See [`MqttConfig::max_inflight`].
    max_inflight: Option<Spanned<usize>>,
    /// See [`MqttConfig::max_queued_messages`].
    max_queued_messages: Option<usize>,
    /// See [`MqttConfig::slow_subscriber_timeout`].
    slow_subscriber_timeout: Option<Spanned<String>>,
    /// See [`MqttConfig::sys_interval`].
    sys_interval: Option<Spanned<String>>,
    /// See [`MqttConfig::max_topic_levels`].
    max_topic_levels: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_subscriptions_per_client`].
    max_subscriptions_per_client: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_retained_messages`].
    max_retained_messages: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_retained_bytes`].
    max_retained_bytes: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_topics`].
    max_topics: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_connections`].
    max_connections: Option<Spanned<i64>>,
    /// See [`MqttConfig::max_sessions_per_device`].
    max_sessions_per_device: Option<Spanned<i64>>,
}

/// `[http]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    /// See [`HttpConfig::listen`].
    listen: Option<Spanned<String>>,
    /// See [`HttpConfig::admin_token`].
    admin_token: Option<String>,
    /// See [`HttpConfig::request_timeout`].
    request_timeout: Option<Spanned<String>>,
}

/// `[actions]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawActions {
    /// See [`ActionsConfig::dir`].
    dir: Option<PathBuf>,
    /// See [`ActionsConfig::pass_env`].
    pass_env: Option<Vec<String>>,
    /// See [`ActionsConfig::max_parser_runs`].
    max_parser_runs: Option<Spanned<i64>>,
    /// See [`ActionsConfig::max_parser_queue`].
    max_parser_queue: Option<Spanned<i64>>,
}

/// `[limits]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    /// See [`LimitsConfig::publish_per_minute`].
    publish_per_minute: Option<u32>,
    /// See [`LimitsConfig::connect_per_minute`].
    connect_per_minute: Option<u32>,
}

/// `[log]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    /// See [`LogConfig::level`].
    level: Option<String>,
}

/// One `[[acl]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcl {
    /// See [`AclRule::who`].
    who: Spanned<String>,
    /// See [`AclRule::topic`].
    topic: Spanned<String>,
    /// See [`AclRule::access`].
    access: Spanned<String>,
    /// See [`AclRule::actions`]; both when left out.
    actions: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One config text being turned into a [`Config`], for error positions.
struct Parser<'a> {
    /// The whole file.
    text: &'a str,
    /// Its name, for errors.
    file: &'a Path,
}

impl Parser<'_> {
    /// Deserializes the raw structure, turning TOML and serde errors into
    /// `FILE:LINE: KEY: message`.
    fn deserialize(&self) -> Result<RawConfig, ConfigError> {
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
            let key = span.and_then(|span| key_at(tree.get_ref(), &span));
            self.invalid(line, key, plain_message(err.message()))
        })
    }

    /// Checks the values and fills in defaults.
    fn build(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
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
        let mqtt = MqttConfig {
            listen: self.addr(m.listen, "mqtt.listen", defaults.mqtt.listen)?,
            tls_listen: self.addr(m.tls_listen, "mqtt.tls_listen", defaults.mqtt.tls_listen)?,
            tls_cert: tls_cert.map(|p| resolve(p.into_inner())),
            tls_key: tls_key.map(|p| resolve(p.into_inner())),
            allow_anonymous: m.allow_anonymous.unwrap_or(defaults.mqtt.allow_anonymous),
            max_packet_size,
            max_inflight,
            max_queued_messages: m
                .max_queued_messages
                .unwrap_or(defaults.mqtt.max_queued_messages),
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
            limits,
            log,
            acl,
            bridges,
            source: Some(self.file.to_path_buf()),
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
    fn addr(
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

    /// A whole number within `range`, or `default` when the key is absent.
    fn count(
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
    fn duration(
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

    /// An error about a spanned value.
    fn at<T>(&self, value: &Spanned<T>, key: &str, message: String) -> ConfigError {
        self.invalid(
            Some(self.line_of(value.span().start)),
            Some(key.to_string()),
            message,
        )
    }

    /// An error in this file.
    fn invalid(&self, line: Option<usize>, key: Option<String>, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            line,
            key,
            message,
        }
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }
}

/// Rewords serde's messages for people who write TOML, not Rust: "unknown
/// field" becomes "unknown key", the raw structs' names become "a table".
fn plain_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let known = rest
            .split_once(", expected ")
            .map(|(_, known)| known.replace("one of ", "").replace('`', ""));
        return match known {
            Some(known) => format!("unknown key (known keys: {known})"),
            None => "unknown key".to_string(),
        };
    }
    let mut out = message.replace("missing field `", "missing key `");
    for raw in [
        "struct RawConfig",
        "struct RawServer",
        "struct RawMqtt",
        "struct RawHttp",
        "struct RawActions",
        "struct RawLimits",
        "struct RawLog",
        "struct RawAcl",
        "struct RawBridge",
        "struct RawTopicMap",
    ] {
        out = out.replace(raw, "a table");
    }
    out
}

/// The dotted key whose name or value covers `span`, the innermost one
/// (`mqtt.listen`, `acl.who`); `None` when the span is outside every key.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut path = Vec::new();
    let mut best: Option<(usize, Vec<String>)> = None;
    search_table(table, span, &mut path, &mut best);
    best.map(|(_, path)| path.join("."))
}

/// Walks `table` for [`key_at`], keeping in `best` the narrowest match.
fn search_table(
    table: &DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        for candidate in [key.span(), value.span()] {
            let covers = candidate.start <= span.start
                && (span.end <= candidate.end || span.start < candidate.end);
            let width = candidate.end.saturating_sub(candidate.start);
            if covers && best.as_ref().is_none_or(|(w, _)| width <= *w) {
                *best = Some((width, path.clone()));
            }
        }
        search_value(value.get_ref(), span, path, best);
        path.pop();
    }
}

/// Walks into tables and arrays of tables for [`search_table`].
fn search_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    match value {
        DeValue::Table(table) => search_table(table, span, path, best),
        DeValue::Array(array) => {
            for item in array.iter() {
                search_value(item.get_ref(), span, path, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as `config.toml` and returns the error's text.
    fn error(text: &str) -> String {
        match Config::from_str(text, Path::new("config.toml")) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    /// Parses `text` as `config.toml`, which must be valid.
    fn parse(text: &str) -> Config {
        match Config::from_str(text, Path::new("config.toml")) {
            Ok(config) => config,
            Err(err) => panic!("unexpected error: {err}"),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("");
        let defaults = Config::default();
        assert_eq!(config.server, defaults.server);
        assert_eq!(config.mqtt, defaults.mqtt);
        assert_eq!(config.http, defaults.http);
        assert_eq!(config.actions, defaults.actions);
        assert_eq!(config.limits, defaults.limits);
        assert_eq!(config.log, defaults.log);
        assert!(config.acl.is_empty());
        assert_eq!(config.source, Some(PathBuf::from("config.toml")));
        assert_eq!(config.mqtt.listen.to_string(), "0.0.0.0:1883");
        assert_eq!(config.mqtt.tls_listen.to_string(), "0.0.0.0:8883");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.mqtt.max_packet_size, 1_048_576);
        assert_eq!(config.mqtt.max_inflight, 100);
        assert_eq!(config.mqtt.max_queued_messages, 10_000);
        assert_eq!(config.mqtt.slow_subscriber_timeout, Duration::from_secs(10));
        assert_eq!(config.mqtt.sys_interval, Duration::from_secs(10));
        assert_eq!(config.server.synchronous, Synchronous::Normal);
        assert!(!config.mqtt.allow_anonymous);
        assert!(config.mqtt.tls().is_none());
    }

    #[test]
    fn full_file_is_read() {
        let config = parse(
            r#"
[server]
data_dir = "/var/lib/brook"
synchronous = "full"

[mqtt]
listen = "127.0.0.1:1884"
tls_listen = "[::]:8884"
tls_cert = "certs/server.pem"
tls_key = "/etc/brook/server.key"
allow_anonymous = true
max_packet_size = 2048
max_inflight = 65535
max_queued_messages = 5
slow_subscriber_timeout = "500ms"
sys_interval = "1m"

[http]
listen = "0.0.0.0:9000"
admin_token = "secret"

[actions]
dir = "my-actions"

[limits]
publish_per_minute = 60
connect_per_minute = 6

[log]
level = "brook=debug"

[[acl]]
who = "*"
topic = "test/nosubscribe"
access = "deny"
actions = ["subscribe"]

[[acl]]
who = "tag:site=north"
topic = "sites/north/%d/#"
access = "allow"
"#,
        );
        assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/brook"));
        assert_eq!(config.server.synchronous, Synchronous::Full);
        assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1884");
        assert_eq!(config.mqtt.tls_listen.to_string(), "[::]:8884");
        assert_eq!(
            config.mqtt.tls(),
            Some((
                Path::new("certs/server.pem"),
                Path::new("/etc/brook/server.key")
            ))
        );
        assert!(config.mqtt.allow_anonymous);
        assert_eq!(config.mqtt.max_packet_size, 2048);
        assert_eq!(config.mqtt.max_inflight, 65535);
        assert_eq!(config.mqtt.max_queued_messages, 5);
        assert_eq!(
            config.mqtt.slow_subscriber_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(config.mqtt.sys_interval, Duration::from_secs(60));
        assert_eq!(config.http.admin_token, "secret");
        assert_eq!(config.admin_url(), "http://127.0.0.1:9000");
        assert_eq!(config.actions.dir, PathBuf::from("my-actions"));
        assert_eq!(config.limits.publish_per_minute, 60);
        assert_eq!(config.limits.connect_per_minute, 6);
        assert_eq!(config.log.level.as_deref(), Some("brook=debug"));
        assert_eq!(
            config.acl,
            vec![
                AclRule {
                    who: Who::Any,
                    topic: "test/nosubscribe".into(),
                    access: Access::Deny,
                    actions: vec![AclAction::Subscribe],
                    line: 32,
                },
                AclRule {
                    who: Who::Tag("site".into(), "north".into()),
                    topic: "sites/north/%d/#".into(),
                    access: Access::Allow,
                    actions: vec![AclAction::Publish, AclAction::Subscribe],
                    line: 38,
                },
            ]
        );
    }

    #[test]
    fn acl_who_forms() {
        let config = parse(
            r##"
acl = [
  { who = "anonymous", topic = "+/x", access = "deny", actions = ["publish"] },
  { who = "device:my sensor", topic = "a/%c", access = "allow", actions = ["publish", "subscribe"] },
  { who = "tag:k=", topic = "#", access = "allow" },
]
"##,
        );
        let who: Vec<_> = config.acl.iter().map(|rule| rule.who.clone()).collect();
        assert_eq!(
            who,
            vec![
                Who::Anonymous,
                Who::Device("my sensor".into()),
                Who::Tag("k".into(), String::new())
            ]
        );
        assert_eq!(config.acl[0].line, 3);
        assert_eq!(config.acl[2].line, 5);
        assert_eq!(config.acl[1].who.to_string(), "device:my sensor");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let config = Config::from_str(
            "[server]\ndata_dir = \"db\"\n[mqtt]\ntls_cert = \"c.pem\"\ntls_key = \"/abs/k.pem\"\n",
            Path::new("/etc/brook/config.toml"),
        )
        .expect("valid config");
        assert_eq!(config.server.data_dir, PathBuf::from("/etc/brook/db"));
        assert_eq!(config.actions.dir, PathBuf::from("/etc/brook/actions"));
        assert_eq!(
            config.mqtt.tls_cert,
            Some(PathBuf::from("/etc/brook/c.pem"))
        );
        assert_eq!(config.mqtt.tls_key, Some(PathBuf::from("/abs/k.pem")));

        // A bare file name: relative to the current directory.
        let config = parse("");
        assert_eq!(config.server.data_dir, PathBuf::from("data"));
        assert_eq!(config.actions.dir, PathBuf::from("actions"));
    }

    #[test]
    fn empty_tls_paths_mean_no_tls() {
        let config = parse("[mqtt]\ntls_cert = \"\"\ntls_key = \"\"\n");
        assert!(config.mqtt.tls().is_none());
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = "# brook\n\n[server]\ndata_dir = \"d\"\n\n[mqtt]\nmax_inflight = \"x\"\n";
        assert_eq!(
            error(text),
            "config.toml:7: mqtt.max_inflight: invalid type: string \"x\", expected usize"
        );
    }

    #[test]
    fn negative_number_names_line_and_key() {
        let err = error("[limits]\n\npublish_per_minute = -1\n");
        assert!(
            err.starts_with("config.toml:3: limits.publish_per_minute: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = error("[mqtt]\n\nlistn = \"0.0.0.0:1883\"\n");
        assert!(
            err.starts_with(
                "config.toml:3: mqtt.listn: unknown key (known keys: listen, tls_listen,"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_section_names_line_and_key() {
        let err = error("[server]\n[mqttt]\nlisten = \"x\"\n");
        assert!(
            err.starts_with("config.toml:2: mqttt: unknown key"),
            "{err}"
        );
    }

    #[test]
    fn unknown_acl_key_names_line_and_key() {
        let err = error(
            "[[acl]]\nwho = \"*\"\ntopic = \"a\"\naccess = \"deny\"\n\n[[acl]]\nwho = \"*\"\ntopic = \"a\"\naccess = \"deny\"\nactoins = [\"publish\"]\n",
        );
        assert!(
            err.starts_with("config.toml:10: acl.actoins: unknown key"),
            "{err}"
        );
    }

    #[test]
    fn missing_acl_key_names_the_table() {
        let err = error("[mqtt]\n\n[[acl]]\nwho = \"*\"\naccess = \"deny\"\n");
        assert!(err.ends_with("missing key `topic`"), "{err}");
        assert!(err.starts_with("config.toml:3: acl: "), "{err}");
    }

    #[test]
    fn section_of_wrong_type() {
        assert_eq!(
            error("\nmqtt = 3\n"),
            "config.toml:2: mqtt: invalid type: integer `3`, expected a table"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = error("[mqtt]\nlisten = \"0.0.0.0:1883\"\nmax_inflight = = 3\n");
        assert!(
            err.starts_with("config.toml:3: TOML syntax error: "),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn unterminated_string_names_the_line() {
        let err = error("[http]\n\nadmin_token = \"abc\n");
        assert!(err.starts_with("config.toml:3: "), "{err}");
    }

    #[test]
    fn bad_address_names_line_and_key() {
        assert_eq!(
            error("[mqtt]\nlisten = \"0.0.0.0:1883\"\n\n[http]\n\nlisten = \"localhost\"\n"),
            "config.toml:6: http.listen: invalid address \"localhost\": expected IP:PORT, like \"0.0.0.0:1883\" or \"[::]:1883\""
        );
        let err = error("[mqtt]\ntls_listen = \"1.2.3.4:99999\"\n");
        assert!(
            err.starts_with("config.toml:2: mqtt.tls_listen: invalid address"),
            "{err}"
        );
        let err = error("[mqtt]\n\nlisten = \"nope\"\n");
        assert!(
            err.starts_with("config.toml:3: mqtt.listen: invalid address"),
            "{err}"
        );
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let err = error("[mqtt]\nslow_subscriber_timeout = \"10 seconds\"\n");
        assert!(
            err.starts_with(
                "config.toml:2: mqtt.slow_subscriber_timeout: invalid duration \"10 seconds\""
            ),
            "{err}"
        );
        let err = error("[mqtt]\n\n\nsys_interval = \"ten\"\n");
        assert!(
            err.starts_with("config.toml:4: mqtt.sys_interval: invalid duration"),
            "{err}"
        );
        let err = error("[mqtt]\nsys_interval = 10\n");
        assert!(
            err.starts_with("config.toml:2: mqtt.sys_interval: invalid type"),
            "{err}"
        );
        let err = error("[mqtt]\nsys_interval = \"0s\"\n");
        assert_eq!(err, "config.toml:2: mqtt.sys_interval: must be more than 0");
    }

    #[test]
    fn tls_cert_without_key() {
        assert_eq!(
            error("[mqtt]\nlisten = \"0.0.0.0:1883\"\ntls_cert = \"c.pem\"\n"),
            "config.toml:3: mqtt.tls_cert: tls_cert is set but tls_key is not; set both or neither"
        );
    }

    #[test]
    fn tls_key_without_cert() {
        assert_eq!(
            error("[mqtt]\n\n\ntls_key = \"k.pem\"\n"),
            "config.toml:4: mqtt.tls_key: tls_key is set but tls_cert is not; set both or neither"
        );
    }

    #[test]
    fn bad_synchronous() {
        assert_eq!(
            error("[server]\nsynchronous = \"off\"\n"),
            "config.toml:2: server.synchronous: expected \"normal\" or \"full\", got \"off\""
        );
    }

    #[test]
    fn max_packet_size_bounds() {
        assert_eq!(
            error("[mqtt]\nmax_packet_size = 0\n"),
            "config.toml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 0"
        );
        assert_eq!(
            error("[mqtt]\n\nmax_packet_size = 268435456\n"),
            "config.toml:3: mqtt.max_packet_size: must be between 1 and 268435455, got 268435456"
        );
        assert_eq!(
            parse("[mqtt]\nmax_packet_size = 268435455\n")
                .mqtt
                .max_packet_size,
            268_435_455
        );
    }

    #[test]
    fn max_inflight_bounds() {
        assert_eq!(
            error("[mqtt]\nmax_inflight = 0\n"),
            "config.toml:2: mqtt.max_inflight: must be between 1 and 65535, got 0"
        );
        assert_eq!(
            error("[mqtt]\nlisten = \"0.0.0.0:1\"\nmax_inflight = 65536\n"),
            "config.toml:3: mqtt.max_inflight: must be between 1 and 65535, got 65536"
        );
    }

    /// An `[[acl]]` file with the rule's fields on lines 3 to 6 of the second rule.
    fn acl_file(who: &str, topic: &str, access: &str, actions: &str) -> String {
        format!(
            "[[acl]]\nwho = \"*\"\ntopic = \"ok\"\naccess = \"allow\"\n\n[[acl]]\nwho = {who}\ntopic = {topic}\naccess = {access}\nactions = {actions}\n"
        )
    }

    #[test]
    fn bad_acl_who() {
        for bad in ["\"everyone\"", "\"device:\"", "\"tag:k\"", "\"tag:=v\""] {
            let err = error(&acl_file(bad, "\"a/b\"", "\"deny\"", "[\"publish\"]"));
            assert!(
                err.starts_with("config.toml:7: acl.who: expected \"*\", \"anonymous\""),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn bad_acl_access() {
        assert_eq!(
            error(&acl_file("\"*\"", "\"a/b\"", "\"allw\"", "[\"publish\"]")),
            "config.toml:9: acl.access: expected \"allow\" or \"deny\", got \"allw\""
        );
    }

    #[test]
    fn bad_acl_actions() {
        assert_eq!(
            error(&acl_file(
                "\"*\"",
                "\"a/b\"",
                "\"deny\"",
                "[\"publish\", \"read\"]"
            )),
            "config.toml:10: acl.actions: expected \"publish\" or \"subscribe\", got \"read\""
        );
        let err = error(&acl_file("\"*\"", "\"a/b\"", "\"deny\"", "[]"));
        assert!(
            err.starts_with("config.toml:10: acl.actions: empty"),
            "{err}"
        );
        let err = error(&acl_file("\"*\"", "\"a/b\"", "\"deny\"", "\"publish\""));
        assert!(
            err.starts_with("config.toml:10: acl.actions: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn bad_acl_topic() {
        for bad in ["a/#/b", "a/b#", "a+/b", "a/+b", "#/a", ""] {
            let err = error(&acl_file(
                "\"*\"",
                &format!("\"{bad}\""),
                "\"deny\"",
                "[\"publish\"]",
            ));
            assert!(
                err.starts_with("config.toml:8: acl.topic: "),
                "{bad}: {err}"
            );
        }
        for good in ["#", "+", "a/+/b/#", "+/+", "devices/%d/%c/#", "/a/"] {
            parse(&acl_file(
                "\"*\"",
                &format!("\"{good}\""),
                "\"deny\"",
                "[\"publish\"]",
            ));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "1.5s",
            "-1s",
            "10 seconds",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_url_replaces_unspecified_addresses() {
        let mut config = Config::default();
        assert_eq!(config.admin_url(), "http://127.0.0.1:8080");
        config.http.listen = "0.0.0.0:8081".parse().expect("literal address");
        assert_eq!(config.admin_url(), "http://127.0.0.1:8081");
        config.http.listen = "[::]:8082".parse().expect("literal address");
        assert_eq!(config.admin_url(), "http://[::1]:8082");
        config.http.listen = "[fe80::1]:80".parse().expect("literal address");
        assert_eq!(config.admin_url(), "http://[fe80::1]:80");
        config.http.listen = "10.0.0.5:80".parse().expect("literal address");
        assert_eq!(config.admin_url(), "http://10.0.0.5:80");
    }

    #[test]
    fn admin_token_override() {
        let mut config = parse("[http]\nadmin_token = \"from-file\"\n");
        config.override_admin_token(None);
        assert_eq!(config.http.admin_token, "from-file");
        config.override_admin_token(Some(String::new()));
        assert_eq!(config.http.admin_token, "from-file");
        config.override_admin_token(Some("from-env".into()));
        assert_eq!(config.http.admin_token, "from-env");
    }

    #[test]
    fn load_reads_the_named_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("brook.toml");
        std::fs::write(&file, "[mqtt]\nlisten = \"127.0.0.1:1999\"\n").expect("write");
        let config = Config::load(Some(&file)).expect("valid config");
        assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1999");
        assert_eq!(config.source.as_deref(), Some(file.as_path()));
        assert_eq!(config.server.data_dir, dir.path().join("data"));
    }

    #[test]
    fn load_of_a_missing_file_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("nope.toml");
        let err = Config::load(Some(&file)).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().starts_with(&file.display().to_string()));
    }

    #[test]
    fn load_reports_the_path_it_was_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[mqtt]\nmax_inflight = 0\n").expect("write");
        let err = Config::load(Some(&file)).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: mqtt.max_inflight: must be between 1 and 65535, got 0",
                file.display()
            )
        );
        assert_eq!(err.line(), Some(2));
        assert_eq!(err.key(), Some("mqtt.max_inflight"));
    }

    #[test]
    fn limits_out_of_range_name_file_line_and_key() {
        assert_eq!(
            error("[mqtt]\nmax_topic_levels = 0\n"),
            "config.toml:2: mqtt.max_topic_levels: must be between 1 and 32768, got 0"
        );
        assert_eq!(
            error("[server]\nmax_write_queue = -1\n"),
            "config.toml:2: server.max_write_queue: must be between 1 and 16777216, got -1"
        );
        assert_eq!(
            error("[http]\nrequest_timeout = \"0s\"\n"),
            "config.toml:2: http.request_timeout: must be more than 0"
        );
        let c =
            parse("[actions]\npass_env = [\"TZ\"]\nmax_parser_runs = 3\n[mqtt]\nmax_topics = 7\n");
        assert_eq!(c.actions.pass_env, vec!["TZ".to_string()]);
        assert_eq!((c.actions.max_parser_runs, c.mqtt.max_topics), (3, 7));
    }

    #[test]
    fn repository_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let text = std::fs::read_to_string(&path).expect("the repository's config.toml");
        let config = Config::from_str(&text, Path::new("config.toml")).expect("valid example");
        let defaults = Config::default();
        assert_eq!(config.server, defaults.server);
        assert_eq!(config.mqtt, defaults.mqtt);
        assert_eq!(config.http, defaults.http);
        assert_eq!(config.actions, defaults.actions);
        assert_eq!(config.limits, defaults.limits);
    }
}
