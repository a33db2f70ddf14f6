//! What a bridge shows of itself: connected or not, its queue, its counters
//! and its last error. Written by the bridge's task, read by `GET /bridges`,
//! `/metrics` and `brook bridge list`, without asking the task anything.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::actions::data::format_time;
use crate::config::{BridgeConfig, Protocol};
use crate::metrics::{Counter, Gauge};
use crate::store::now_ms;

/// One bridge's state.
pub(crate) struct Status {
    pub name: String,
    /// The first `url`, as configured.
    pub url: String,
    pub protocol: Protocol,
    connected: AtomicBool,
    /// Rows in `bridge_queue` (messages the remote has not acknowledged).
    pub queued: Gauge,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: Gauge,
    /// Messages the remote took (acknowledged, or written at QoS 0).
    pub sent: Counter,
    /// Messages from the remote published locally.
    pub received: Counter,
    /// Messages given up: going out, the queue's oldest past `max_queued`,
    /// QoS 0 while the link is down, what the remote refused or cannot
    /// take, and what no `out` entry maps any more; coming in, what no `in`
    /// entry maps and what the ACL refuses.
    pub dropped: Counter,
    /// Incoming copies of our own messages that were not published again
    /// (MQTT 3.1.1 loop prevention).
    pub echoes: Counter,
    /// What the state was when it last changed.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The address connected to, while connected.
    remote: Option<String>,
    /// Since when connected, or disconnected, unix ms.
    since: Option<i64>,
    last_error: Option<(String, i64)>,
    /// Failed attempts since the link was last up for a while (a link
    /// that drops at once does not start the back-off again).
    failures: u32,
    /// When the next attempt is due, unix ms, while waiting.
    retry_at: Option<i64>,
    /// The back-off delay chosen before that attempt.
    retry_delay: Option<u64>,
}

impl Status {
    pub(crate) fn new(b: &BridgeConfig) -> Status {
        Status {
            name: b.name.clone(),
            url: b.remotes[0].to_string(),
            protocol: b.protocol,
            connected: AtomicBool::new(false),
            queued: Gauge::default(),
            inflight: Gauge::default(),
            sent: Counter::default(),
            received: Counter::default(),
            dropped: Counter::default(),
            echoes: Counter::default(),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The link is up on `remote`.
    pub(crate) fn up(&self, remote: String) {
        self.connected.store(true, Ordering::Relaxed);
        let mut g = self.inner.lock();
        g.remote = Some(remote);
        g.since = Some(now_ms());
        g.failures = 0;
        g.retry_at = None;
        g.retry_delay = None;
    }

    /// The link went down (or an attempt failed) because of `error`, and
    /// the next attempt is in `retry_in_ms`. Returns whether this is news
    /// worth a log line: the link was up, or the error is not the one
    /// logged last (whichever of the remote's addresses it names). A bridge
    /// retrying against the same wall logs once.
    pub(crate) fn down(&self, error: &str, failures: u32, retry_in_ms: u64) -> bool {
        let was_up = self.connected.swap(false, Ordering::Relaxed);
        self.inflight.add(-self.inflight.get());
        let mut g = self.inner.lock();
        let same = g
            .last_error
            .as_ref()
            .is_some_and(|(e, _)| without_address(e) == without_address(error));
        if was_up || g.since.is_none() {
            g.since = Some(now_ms());
        }
        g.remote = None;
        g.last_error = Some((error.to_string(), now_ms()));
        g.failures = failures;
        g.retry_at = Some(now_ms() + retry_in_ms as i64);
        g.retry_delay = Some(retry_in_ms);
        was_up || !same
    }

    /// Something went wrong that does not take the link down (a refused
    /// subscription or message). Returns whether it differs from the last.
    pub(crate) fn error(&self, error: &str) -> bool {
        let mut g = self.inner.lock();
        let same = g.last_error.as_ref().is_some_and(|(e, _)| e == error);
        g.last_error = Some((error.to_string(), now_ms()));
        !same
    }

    /// The state as `GET /bridges` shows it.
    pub(crate) fn json(&self) -> Value {
        let g = self.inner.lock();
        let now = now_ms();
        json!({
            "name": self.name,
            "url": self.url,
            "protocol": self.protocol.to_string(),
            "connected": self.connected(),
            "remote": g.remote,
            "since": g.since.map(format_time),
            "queued": self.queued.get().max(0),
            "inflight": self.inflight.get().max(0),
            "sent": self.sent.get(),
            "received": self.received.get(),
            "dropped": self.dropped.get(),
            "loops_stopped": self.echoes.get(),
            "last_error": g.last_error.as_ref().map(|(e, _)| e.clone()),
            "last_error_at": g.last_error.as_ref().map(|(_, at)| format_time(*at)),
            "failed_attempts": g.failures,
            "retry_in_ms": if self.connected() { None } else { g.retry_at.map(|at| (at - now).max(0)) },
            "retry_delay_ms": if self.connected() { None } else { g.retry_delay },
        })
    }
}

/// An attempt's error without the address it begins with
/// (`mqtt://host:port: ...`), to tell one failure from another.
fn without_address(error: &str) -> &str {
    if error.starts_with("mqtt") {
        error.split_once(": ").map_or(error, |(_, rest)| rest)
    } else {
        error
    }
}

/// A metric: name, type, help, and its value for one bridge.
type Series = (&'static str, &'static str, &'static str, fn(&Status) -> i64);

/// Appends the bridges' Prometheus lines to `out` (`/metrics`).
pub(crate) fn write_metrics(bridges: &[std::sync::Arc<Status>], out: &mut String) {
    if bridges.is_empty() {
        return;
    }
    let series: [Series; 6] = [
        (
            "bridge_connected",
            "gauge",
            "1 while the bridge's link is up",
            |s| i64::from(s.connected()),
        ),
        (
            "bridge_queued_messages",
            "gauge",
            "messages waiting in SQLite for the remote's acknowledgement",
            |s| s.queued.get().max(0),
        ),
        (
            "bridge_sent_total",
            "counter",
            "messages the remote took",
            |s| s.sent.get() as i64,
        ),
        (
            "bridge_received_total",
            "counter",
            "messages from the remote published locally",
            |s| s.received.get() as i64,
        ),
        (
            "bridge_dropped_total",
            "counter",
            "messages a bridge gave up (queue full, refused, QoS 0 while down)",
            |s| s.dropped.get() as i64,
        ),
        (
            "bridge_loops_stopped_total",
            "counter",
            "copies of our own messages not taken back in",
            |s| s.echoes.get() as i64,
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(
            out,
            "# HELP brook_{name} {help}\n# TYPE brook_{name} {kind}"
        );
        for s in bridges {
            // Names are letters, digits, '-' and '_' (config.rs): no escaping.
            let _ = writeln!(out, "brook_{name}{{bridge=\"{}\"}} {}", s.name, value(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, Protocol};

    fn status() -> Status {
        let config = Config::from_str(
            "[[bridge]]\nname = \"b\"\nurl = \"mqtt://h\"\nclient_id = \"c\"\nout = [{ filter = \"a\" }]\n",
            std::path::Path::new("config.toml"),
        )
        .expect("valid");
        Status::new(&config.bridges[0])
    }

    #[test]
    fn the_same_failure_is_news_once_whichever_address_it_names() {
        let s = status();
        assert_eq!(s.protocol, Protocol::V311);
        assert!(s.down("mqtt://a:1: Connection refused (os error 111)", 1, 100));
        assert!(!s.down("mqtt://b:2: Connection refused (os error 111)", 2, 200));
        assert!(!s.down("mqtt://[::1]:3: Connection refused (os error 111)", 3, 400));
        assert!(s.down("mqtt://a:1: not authorized (CONNACK 0x05)", 4, 800));
        s.up("mqtt://a:1".into());
        assert!(s.connected());
        assert!(
            s.down("the remote closed the connection", 0, 100),
            "going down is news"
        );
        let j = s.json();
        assert_eq!(j["connected"], false);
        assert_eq!(j["retry_delay_ms"], 100);
        assert_eq!(j["last_error"], "the remote closed the connection");
    }

    #[test]
    fn metrics_lines_carry_the_bridge_label() {
        let s = Arc::new(status());
        s.queued.add(3);
        let mut out = String::new();
        write_metrics(&[s], &mut out);
        assert!(
            out.contains("brook_bridge_queued_messages{bridge=\"b\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE brook_bridge_sent_total counter"),
            "{out}"
        );
    }
}
