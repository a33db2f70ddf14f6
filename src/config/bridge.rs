//! `[[bridge]]` tables: one per remote broker that brook forwards readings to
//! (`out`) and takes commands from (`in`). Checked like every other key: a
//! bad value stops the server with `FILE:LINE: bridge.KEY: message`.
//!
//! Secrets named by `password_env` and the `ca_file` are read when the server
//! starts (the management commands load this file too, and need neither).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{validate_topic_filter, ConfigError, Parser};

/// Messages a bridge keeps in SQLite for its remote, by default: an hour's
/// outage of a site whose devices publish some 30 readings a second.
pub(super) const DEFAULT_MAX_QUEUED: usize = 100_000;

/// The longest bridge name: it is part of a client id, a device name and a
/// metric label.
const MAX_NAME: usize = 64;

/// One `[[bridge]]` table, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// Unique; the bridge's local client id is `bridge:NAME`, and so is the
    /// name of its pseudo-device (Live Inspector) and its ACL `who`.
    pub name: String,
    /// `url`, then each of `fallback_urls`: tried in turn, one per attempt.
    pub remotes: Vec<RemoteAddr>,
    /// The client id on the remote, whose persistent session keeps what the
    /// remote owes us while the link is down.
    pub client_id: String,
    /// The MQTT username on the remote, if it wants one.
    pub username: Option<String>,
    /// The password, or the environment variable that holds it.
    pub password: Option<Password>,
    /// PEM certificates to trust for `mqtts://`; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// MQTT 3.1.1 or 5 on the link.
    pub protocol: Protocol,
    /// MQTT keep-alive on the link (0 = none).
    pub keep_alive: Duration,
    /// Local topics forwarded to the remote.
    pub out: Vec<TopicMap>,
    /// Remote topics taken in and published locally.
    pub inbound: Vec<TopicMap>,
    /// Rows kept in `bridge_queue` at most; past it the oldest unsent ones
    /// are dropped and counted.
    pub max_queued: usize,
    /// QoS 1/2 messages sent and not yet acknowledged by the remote (a
    /// remote's smaller MQTT 5 Receive Maximum wins).
    pub max_inflight: usize,
    /// The largest packet accepted from the remote; `[mqtt]
    /// max_packet_size` when not set.
    pub max_packet_size: Option<usize>,
    /// The first reconnect delay; it doubles on each failure (with jitter)
    /// up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// The longest pause between reconnection attempts.
    pub reconnect_max: Duration,
    /// The line of the table, for errors found when the server starts.
    pub line: usize,
}

impl BridgeConfig {
    /// The bridge's client id inside brook (and its ACL `who`).
    pub fn local_client_id(&self) -> String {
        format!("{}{}", super::BRIDGE_CLIENT_PREFIX, self.name)
    }
}

/// Where a remote broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAddr {
    /// `mqtts://`: TLS.
    pub tls: bool,
    /// A host name or an IP address (IPv6 without its brackets).
    pub host: String,
    /// The TCP port (1883 or 8883 unless the URL names one).
    pub port: u16,
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Where the remote password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// `password = "..."`.
    Inline(String),
    /// `password_env = "NAME"`: read from the environment at start.
    Env(String),
}

/// The MQTT version spoken on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `"3.1.1"`.
    V311,
    /// `"5"`: no-local subscriptions, reason codes, the remote's limits.
    V5,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V311 => "3.1.1",
            Protocol::V5 => "5",
        })
    }
}

/// One entry of `out` or `in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMap {
    /// The topic filter, without either prefix.
    pub filter: String,
    /// The highest QoS used for it on the way (1 when not set).
    pub qos: u8,
    /// Put before `filter` on the local side.
    pub local_prefix: String,
    /// Put before `filter` on the remote side.
    pub remote_prefix: String,
}

impl TopicMap {
    /// The filter as seen locally.
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.filter)
    }

    /// The filter as seen on the remote.
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.filter)
    }
}

/// One `[[bridge]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBridge {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    fallback_urls: Vec<Spanned<String>>,
    client_id: Spanned<String>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    protocol: Option<Spanned<String>>,
    keep_alive: Option<Spanned<String>>,
    #[serde(default)]
    out: Vec<Spanned<RawTopicMap>>,
    #[serde(default, rename = "in")]
    inbound: Vec<Spanned<RawTopicMap>>,
    max_queued: Option<Spanned<usize>>,
    max_inflight: Option<Spanned<usize>>,
    max_packet_size: Option<Spanned<usize>>,
    reconnect_min: Option<Spanned<String>>,
    reconnect_max: Option<Spanned<String>>,
}

/// One `out` or `in` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopicMap {
    filter: Spanned<String>,
    qos: Option<Spanned<u8>>,
    local_prefix: Option<Spanned<String>>,
    remote_prefix: Option<Spanned<String>>,
}

impl Parser<'_> {
    /// Checks every `[[bridge]]` table, and that names are unique.
    pub(super) fn bridges(
        &self,
        raw: Vec<Spanned<RawBridge>>,
        base: &Path,
    ) -> Result<Vec<BridgeConfig>, ConfigError> {
        let mut out: Vec<BridgeConfig> = Vec::new();
        for table in raw {
            let name_span = table.get_ref().name.clone();
            let bridge = self.bridge(table, base)?;
            if out.iter().any(|b| b.name == bridge.name) {
                return Err(self.at(
                    &name_span,
                    "bridge.name",
                    format!("a bridge named {:?} is defined twice", bridge.name),
                ));
            }
            if let Some(other) = out
                .iter()
                .find(|b| b.client_id == bridge.client_id && b.remotes[0] == bridge.remotes[0])
            {
                return Err(self.invalid(
                    Some(bridge.line),
                    Some("bridge.client_id".into()),
                    format!(
                        "bridges {:?} and {:?} use client id {:?} on the same remote: each would close the other's session",
                        other.name, bridge.name, bridge.client_id
                    ),
                ));
            }
            out.push(bridge);
        }
        Ok(out)
    }

    fn bridge(&self, table: Spanned<RawBridge>, base: &Path) -> Result<BridgeConfig, ConfigError> {
        let line = self.line_of(table.span().start);
        let b = table.into_inner();

        let name = b.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(self.at(
                &b.name,
                "bridge.name",
                format!("{name:?}: use 1 to {MAX_NAME} letters, digits, '-' or '_'"),
            ));
        }

        let mut remotes =
            vec![parse_url(b.url.get_ref())
                .map_err(|message| self.at(&b.url, "bridge.url", message))?];
        for url in &b.fallback_urls {
            remotes.push(
                parse_url(url.get_ref())
                    .map_err(|message| self.at(url, "bridge.fallback_urls", message))?,
            );
        }

        let client_id = b.client_id.get_ref().clone();
        if client_id.is_empty()
            || client_id.len() > usize::from(u16::MAX)
            || client_id.contains('\0')
        {
            return Err(self.at(
                &b.client_id,
                "bridge.client_id",
                "must be 1 to 65535 bytes without NUL".into(),
            ));
        }

        let password = match (b.password, b.password_env) {
            (Some(_), Some(env)) => {
                return Err(self.at(
                    &env,
                    "bridge.password_env",
                    "set password or password_env, not both".into(),
                ))
            }
            (Some(p), None) => Some(Password::Inline(p.into_inner())),
            (None, Some(env)) => {
                if env.get_ref().trim().is_empty() {
                    return Err(self.at(
                        &env,
                        "bridge.password_env",
                        "names no environment variable".into(),
                    ));
                }
                Some(Password::Env(env.into_inner()))
            }
            (None, None) => None,
        };

        let ca_file = match b.ca_file {
            None => None,
            Some(path) if path.get_ref().as_os_str().is_empty() => None,
            Some(path) => {
                if !remotes.iter().any(|r| r.tls) {
                    return Err(self.at(
                        &path,
                        "bridge.ca_file",
                        "set, but the url is not mqtts://".into(),
                    ));
                }
                let p = path.into_inner();
                Some(if p.is_relative() { base.join(p) } else { p })
            }
        };

        let protocol = match &b.protocol {
            None => Protocol::V311,
            Some(v) => match v.get_ref().as_str() {
                "3.1.1" | "4" => Protocol::V311,
                "5" | "5.0" => Protocol::V5,
                other => {
                    return Err(self.at(
                        v,
                        "bridge.protocol",
                        format!("expected \"3.1.1\" or \"5\", got {other:?}"),
                    ))
                }
            },
        };

        let keep_alive = self.duration(
            b.keep_alive.clone(),
            "bridge.keep_alive",
            Duration::from_secs(60),
        )?;
        if let Some(v) = &b.keep_alive {
            if keep_alive.as_secs() > u64::from(u16::MAX) || keep_alive.subsec_nanos() != 0 {
                return Err(self.at(
                    v,
                    "bridge.keep_alive",
                    "must be whole seconds, at most 65535s".into(),
                ));
            }
        }

        let out = b
            .out
            .into_iter()
            .map(|m| self.topic_map(m, "bridge.out"))
            .collect::<Result<Vec<_>, _>>()?;
        let inbound = b
            .inbound
            .into_iter()
            .map(|m| self.topic_map(m, "bridge.in"))
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() && inbound.is_empty() {
            return Err(self.invalid(
                Some(line),
                Some("bridge".into()),
                format!("bridge {name:?} has neither `out` nor `in` entries: it would do nothing"),
            ));
        }

        let max_queued = self.bounded(
            b.max_queued,
            "bridge.max_queued",
            DEFAULT_MAX_QUEUED,
            1,
            usize::MAX,
        )?;
        let max_inflight = self.bounded(
            b.max_inflight,
            "bridge.max_inflight",
            100,
            1,
            super::MAX_INFLIGHT_LIMIT,
        )?;
        let max_packet_size = match b.max_packet_size {
            None => None,
            Some(v) => Some(self.bounded(
                Some(v),
                "bridge.max_packet_size",
                0,
                64,
                super::MAX_PACKET_SIZE_LIMIT,
            )?),
        };

        let reconnect_min = self.duration(
            b.reconnect_min.clone(),
            "bridge.reconnect_min",
            Duration::from_secs(1),
        )?;
        let reconnect_max = self.duration(
            b.reconnect_max.clone(),
            "bridge.reconnect_max",
            Duration::from_secs(60),
        )?;
        if reconnect_min < Duration::from_millis(10) {
            let at = b
                .reconnect_min
                .as_ref()
                .map(|v| self.line_of(v.span().start));
            return Err(self.invalid(
                at.or(Some(line)),
                Some("bridge.reconnect_min".into()),
                "must be at least 10ms".into(),
            ));
        }
        if reconnect_max < reconnect_min {
            let at = b
                .reconnect_max
                .as_ref()
                .map(|v| self.line_of(v.span().start));
            return Err(self.invalid(
                at.or(Some(line)),
                Some("bridge.reconnect_max".into()),
                "must not be shorter than reconnect_min".into(),
            ));
        }

        Ok(BridgeConfig {
            name,
            remotes,
            client_id,
            username: b.username,
            password,
            ca_file,
            protocol,
            keep_alive,
            out,
            inbound,
            max_queued,
            max_inflight,
            max_packet_size,
            reconnect_min,
            reconnect_max,
            line,
        })
    }

    fn topic_map(&self, m: Spanned<RawTopicMap>, key: &str) -> Result<TopicMap, ConfigError> {
        let m = m.into_inner();
        validate_topic_filter(m.filter.get_ref())
            .map_err(|message| self.at(&m.filter, &format!("{key}.filter"), message))?;
        if m.filter.get_ref().starts_with('$') {
            return Err(self.at(
                &m.filter,
                &format!("{key}.filter"),
                "topics starting with '$' are the broker's own and are not bridged".into(),
            ));
        }
        let qos = match &m.qos {
            None => 1,
            Some(q) if *q.get_ref() <= 2 => *q.get_ref(),
            Some(q) => {
                return Err(self.at(
                    q,
                    &format!("{key}.qos"),
                    format!("must be 0, 1 or 2, got {}", q.get_ref()),
                ))
            }
        };
        let prefix = |p: Option<Spanned<String>>, which: &str| -> Result<String, ConfigError> {
            let Some(p) = p else {
                return Ok(String::new());
            };
            if p.get_ref().contains(['+', '#', '\0']) || p.get_ref().starts_with('$') {
                return Err(self.at(
                    &p,
                    &format!("{key}.{which}"),
                    "a prefix holds no wildcard or NUL and does not start with '$'".into(),
                ));
            }
            Ok(p.into_inner())
        };
        Ok(TopicMap {
            filter: m.filter.into_inner(),
            qos,
            local_prefix: prefix(m.local_prefix, "local_prefix")?,
            remote_prefix: prefix(m.remote_prefix, "remote_prefix")?,
        })
    }

    /// A whole number within `min..=max`, or `default` when absent.
    fn bounded(
        &self,
        value: Option<Spanned<usize>>,
        key: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(self.at(
                &v,
                key,
                format!("must be between {min} and {max}, got {}", v.get_ref()),
            )),
        }
    }
}

/// Reads `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (1883 and 8883 by
/// default; an IPv6 address in brackets).
pub(super) fn parse_url(text: &str) -> Result<RemoteAddr, String> {
    let bad =
        |why: &str| format!("{text:?}: {why}; expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]");
    let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtts://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("mqtt://") {
        (false, rest)
    } else {
        return Err(bad("unknown scheme"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(bad("only a host and a port may follow the scheme"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
    };
    Ok(RemoteAddr {
        tls,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(text: &str) -> Result<Vec<BridgeConfig>, String> {
        Config::from_str(text, Path::new("/etc/brook/config.toml"))
            .map(|c| c.bridges)
            .map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
[[bridge]]
name = "cloud"
url = "mqtt://broker.example.com"
client_id = "site-a"
out = [{ filter = "sensors/#" }]
"#;

    #[test]
    fn a_minimal_bridge_takes_the_defaults() {
        let b = &parse(MINIMAL).expect("valid")[0];
        assert_eq!(b.name, "cloud");
        assert_eq!(b.remotes[0].to_string(), "mqtt://broker.example.com:1883");
        assert_eq!(b.protocol, Protocol::V311);
        assert_eq!(b.keep_alive, Duration::from_secs(60));
        assert_eq!(b.max_queued, DEFAULT_MAX_QUEUED);
        assert_eq!(b.max_inflight, 100);
        assert_eq!(b.out[0].qos, 1);
        assert_eq!(b.out[0].local_filter(), "sensors/#");
        assert!(b.inbound.is_empty());
        assert_eq!(b.line, 2);
        assert_eq!(b.local_client_id(), "bridge:cloud");
    }

    #[test]
    fn the_issue_example_is_read() {
        let b = &parse(
            r#"
[[bridge]]
name = "cloud"
url = "mqtts://broker.example.com:8883"
fallback_urls = ["mqtts://[::1]:9883"]
client_id = "brook-site-a"
username = "site-a"
password_env = "BRIDGE_CLOUD_PASSWORD"
ca_file = "certs/cloud-ca.pem"
protocol = "5"
keep_alive = "30s"
out = [{ filter = "sensors/#", qos = 1, remote_prefix = "site-a/" }]
in  = [{ filter = "cmd/#",     qos = 2, remote_prefix = "site-a/", local_prefix = "remote/" }]
"#,
        )
        .expect("valid")[0];
        assert_eq!(b.remotes.len(), 2);
        assert_eq!(b.remotes[1].host, "::1");
        assert_eq!(b.remotes[1].to_string(), "mqtts://[::1]:9883");
        assert_eq!(
            b.password,
            Some(Password::Env("BRIDGE_CLOUD_PASSWORD".into()))
        );
        assert_eq!(
            b.ca_file,
            Some(PathBuf::from("/etc/brook/certs/cloud-ca.pem"))
        );
        assert_eq!(b.protocol, Protocol::V5);
        assert_eq!(b.out[0].remote_filter(), "site-a/sensors/#");
        assert_eq!(b.inbound[0].remote_filter(), "site-a/cmd/#");
        assert_eq!(b.inbound[0].local_filter(), "remote/cmd/#");
        assert_eq!(b.inbound[0].qos, 2);
    }

    fn bad(extra: &str) -> String {
        parse(&format!("{MINIMAL}{extra}")).expect_err("must be refused")
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases = [
            (
                "protocol = \"6\"\n",
                "config.toml:7: bridge.protocol: expected \"3.1.1\" or \"5\"",
            ),
            (
                "keep_alive = \"1d\"\n",
                "config.toml:7: bridge.keep_alive: must be whole seconds",
            ),
            (
                "max_inflight = 0\n",
                "config.toml:7: bridge.max_inflight: must be between 1 and 65535",
            ),
            (
                "colour = \"blue\"\n",
                "config.toml:7: bridge.colour: unknown key",
            ),
            (
                "password = \"a\"\npassword_env = \"B\"\n",
                "config.toml:8: bridge.password_env: set password or password_env",
            ),
            (
                "ca_file = \"ca.pem\"\n",
                "config.toml:7: bridge.ca_file: set, but the url is not mqtts://",
            ),
            (
                "reconnect_min = \"5s\"\nreconnect_max = \"1s\"\n",
                "config.toml:8: bridge.reconnect_max",
            ),
            (
                "in = [{ filter = \"a/#/b\" }]\n",
                "config.toml:7: bridge.in.filter: invalid topic filter",
            ),
            (
                "in = [{ filter = \"a\", qos = 3 }]\n",
                "config.toml:7: bridge.in.qos: must be 0, 1 or 2",
            ),
            (
                "in = [{ filter = \"a\", remote_prefix = \"x/+/\" }]\n",
                "config.toml:7: bridge.in.remote_prefix",
            ),
            (
                "in = [{ filter = \"a\", topic = \"b\" }]\n",
                "config.toml:7: bridge.in.topic: unknown key",
            ),
        ];
        for (extra, want) in cases {
            let err = bad(extra);
            assert!(
                err.starts_with(&want.replace("config.toml", "/etc/brook/config.toml")),
                "{extra:?}: got {err}"
            );
        }
    }

    #[test]
    fn names_urls_and_duplicates() {
        let err = parse(&MINIMAL.replace("\"cloud\"", "\"my cloud\"")).expect_err("bad name");
        assert!(err.contains(":3: bridge.name: \"my cloud\""), "{err}");
        let err = parse(&MINIMAL.replace("mqtt://broker", "http://broker")).expect_err("bad url");
        assert!(err.contains(":4: bridge.url: \"http://"), "{err}");
        let err = parse(&format!("{MINIMAL}{}", MINIMAL.replace("site-a", "site-b")))
            .expect_err("duplicate");
        assert!(
            err.contains(":9: bridge.name: a bridge named \"cloud\" is defined twice"),
            "{err}"
        );
        let err = parse(&format!(
            "{MINIMAL}{}",
            MINIMAL.replace("\"cloud\"", "\"other\"")
        ))
        .expect_err("same client id");
        assert!(err.contains("bridge.client_id"), "{err}");
        let err = parse(&MINIMAL.replace("out = [{ filter = \"sensors/#\" }]", ""))
            .expect_err("no entries");
        assert!(
            err.contains(":2: bridge: bridge \"cloud\" has neither"),
            "{err}"
        );
        let err = parse(&MINIMAL.replace("sensors/#", "$SYS/#")).expect_err("$ topic");
        assert!(err.contains("bridge.out.filter"), "{err}");
        let err = parse(&MINIMAL.replace("client_id = \"site-a\"\n", "")).expect_err("missing");
        assert!(err.contains("missing key `client_id`"), "{err}");
    }

    #[test]
    fn the_commented_example_in_config_toml_is_valid_once_uncommented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let text = std::fs::read_to_string(path).expect("the repository's config.toml");
        let example: String = text
            .lines()
            .skip_while(|l| *l != "# [[bridge]]")
            .take_while(|l| l.starts_with("# "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect();
        assert!(example.contains("out = ["), "found the example: {example}");
        let b = &parse(&example).expect("the example is valid")[0];
        assert_eq!(b.name, "cloud");
        assert_eq!(
            b.password,
            Some(Password::Env("BRIDGE_CLOUD_PASSWORD".into()))
        );
        assert_eq!(b.out[0].remote_filter(), "site-a/sensors/#");
    }

    #[test]
    fn urls() {
        let a = parse_url("mqtts://h").expect("url");
        assert_eq!((a.tls, a.host.as_str(), a.port), (true, "h", 8883));
        let a = parse_url("mqtt://10.0.0.1:1884/").expect("url");
        assert_eq!((a.tls, a.host.as_str(), a.port), (false, "10.0.0.1", 1884));
        let a = parse_url("mqtt://[fe80::1]").expect("url");
        assert_eq!((a.host.as_str(), a.port), ("fe80::1", 1883));
        for bad in [
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u@h",
            "mqtt://h/path",
            "tcp://h",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
