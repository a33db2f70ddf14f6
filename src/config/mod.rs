//! Loading and validating `config.toml`, the one file that configures brook.
//!
//! Every section and key is optional; what is missing takes the built-in
//! default. A bad file is refused whole, with a [`ConfigError`] that names the
//! file, the line and the key (`config.toml:7: mqtt.max_inflight: ...`), so
//! that the server can stop with a message the user can act on. Relative paths
//! in the file are resolved against the directory that holds it.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod bridge;
pub(crate) mod diag;
mod net;
mod parse;
mod raw;
#[cfg(test)]
mod tests;

pub use bridge::{BridgeConfig, Password, Protocol, RemoteAddr, TopicMap};
pub use net::IpNet;
use parse::Parser;

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
    /// `[data]`: how long stored data is kept.
    pub data: DataConfig,
    /// `[smtp]`: the mail server `email` actions send through; `None`
    /// without the section.
    pub smtp: Option<SmtpConfig>,
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
    /// The MQTT-over-WebSocket listener (`ws://HOST:PORT/mqtt`); `None`
    /// when `ws_listen = ""`.
    pub ws_listen: Option<SocketAddr>,
    /// The MQTT-over-WebSocket-over-TLS listener, with the TLS listener's
    /// certificate; opened only when TLS is configured; `None` when `""`.
    pub wss_listen: Option<SocketAddr>,
    /// The HTTP path a WebSocket client asks for (`/mqtt`); others get 404.
    pub ws_path: String,
    /// The `Origin`s a WebSocket handshake may carry (`https://host[:port]`,
    /// compared without regard to case); empty = any. A handshake without
    /// an `Origin` (not from a browser) is let in.
    pub ws_allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed for a WebSocket client's
    /// address; empty = none (the socket's peer is the address).
    pub ws_trusted_proxies: Vec<IpNet>,
    /// Whether clients without a password (token) are let in.
    pub allow_anonymous: bool,
    /// The largest packet accepted, in bytes; larger ones close the connection.
    pub max_packet_size: usize,
    /// Unacknowledged outgoing QoS 1/2 messages per session.
    pub max_inflight: usize,
    /// Messages kept per session while it is offline or behind.
    pub max_queued_messages: usize,
    /// Payload bytes a connected subscriber's queue holds in memory before
    /// its publishers are held back.
    pub max_queued_bytes: usize,
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
    /// The longest a session may outlive its connection (MQTT 5's session
    /// expiry interval is capped to it, and a 3.1.1 persistent session
    /// ends after it); None = no cap.
    pub max_session_expiry: Option<Duration>,
    /// The longest message expiry interval a publish may ask for (MQTT 5);
    /// None = no cap.
    pub max_message_expiry: Option<Duration>,
    /// MQTT 5 Receive Maximum: unacknowledged QoS 1/2 publishes a client
    /// may have at the broker; one more is a protocol error (0x93). For
    /// every client, how many are read before the broker stops reading.
    pub receive_maximum: u16,
    /// MQTT 5 Topic Alias Maximum the broker accepts from a client (0 = none).
    pub topic_alias_maximum: u16,
    /// The longest keep alive an MQTT 5 client may have, in seconds; a
    /// longer (or 0) one is answered with this as Server Keep Alive.
    pub max_keep_alive: u16,
}

impl MqttConfig {
    /// The certificate and key when TLS is configured (both are set).
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            _ => None,
        }
    }

    /// Whether `origin` (a handshake's `Origin` header) may open a
    /// WebSocket: any when `ws_allowed_origins` is empty.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.ws_allowed_origins.is_empty()
            || self
                .ws_allowed_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(origin.trim()))
    }

    /// Whether the `X-Forwarded-For` of a connection from `ip` is believed.
    pub fn trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        self.ws_trusted_proxies.iter().any(|net| net.contains(ip))
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

/// `[data]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    /// How long a bucket keeps an item (by its `time`); zero keeps it for
    /// ever. A device's own `retention` wins over it.
    pub retention: Duration,
    /// How often old data is pruned (in small batches, in the background).
    pub prune_interval: Duration,
}

/// `[smtp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// The mail server's host name.
    pub host: String,
    /// Its port: by default 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub port: u16,
    /// The login, when the server wants one.
    pub username: Option<String>,
    /// The environment variable holding the password, read at start.
    pub password_env: Option<String>,
    /// The sender, `brook@example.com` or `Brook <brook@example.com>`.
    pub from: String,
    /// How the connection is encrypted.
    pub tls: SmtpTls,
    /// The line of `[smtp]`, for messages.
    pub line: usize,
}

/// `[smtp] tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `"starttls"`: plain connect, then STARTTLS, required.
    StartTls,
    /// `"tls"`: TLS from the first byte (SMTPS).
    Tls,
    /// `"none"`: no encryption (a relay on the same host or network).
    None,
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
                ws_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8083))),
                wss_listen: Some(SocketAddr::from(([0, 0, 0, 0], 8084))),
                ws_path: "/mqtt".to_string(),
                ws_allowed_origins: Vec::new(),
                ws_trusted_proxies: Vec::new(),
                allow_anonymous: false,
                max_packet_size: 1_048_576,
                max_inflight: 100,
                max_queued_messages: 10_000,
                max_queued_bytes: 1 << 20,
                slow_subscriber_timeout: Duration::from_secs(10),
                sys_interval: Duration::from_secs(10),
                max_topic_levels: 128,
                max_subscriptions_per_client: 10_000,
                max_retained_messages: 100_000,
                max_retained_bytes: 256 * 1024 * 1024,
                max_topics: 200_000,
                max_connections: 100_000,
                max_sessions_per_device: 1_000,
                max_session_expiry: None,
                max_message_expiry: None,
                receive_maximum: 256,
                topic_alias_maximum: 10,
                max_keep_alive: 65_535,
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
            data: DataConfig {
                retention: Duration::ZERO,
                prune_interval: Duration::from_secs(60),
            },
            smtp: None,
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
        let parser = Parser {
            text,
            file,
            lines: diag::Lines::new(text),
        };
        let raw: raw::RawConfig = parser.deserialize()?;
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
