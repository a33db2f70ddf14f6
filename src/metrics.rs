//! Process-wide counters: what `$SYS/broker/...` publishes and `/metrics`
//! shows. Plain atomics, so that counting on the hot path costs one
//! uncontended add.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub(crate) fn max(&self, v: i64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub clients_connected: Gauge,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// QoS 0 messages dropped because a bridge's in-memory queue was full (a
    /// client's full queue holds its publishers back instead).
    pub dropped_qos0_full: Counter,
    /// QoS 1/2 messages dropped from an offline session's queue past `max_queued_messages`.
    pub dropped_queue_overflow: Counter,
    /// QoS 0 messages for a persistent session while it was away (never queued).
    pub dropped_offline_qos0: Counter,
    /// Messages for a clean session whose connection had just ended.
    pub dropped_disconnected: Counter,
    /// Messages a slow consumer held in memory when it was disconnected, and
    /// that its session does not keep (QoS 0, or any QoS of a clean session).
    pub dropped_slow: Counter,
    /// Publishes refused by the ACL (or a read-only token).
    pub dropped_acl: Counter,
    /// Client publishes to `$` topics, which are the broker's.
    pub dropped_reserved: Counter,
    /// MQTT 5: messages whose message expiry interval ended before they could be sent.
    pub dropped_expired: Counter,
    /// MQTT 5: messages larger than the receiving client's Maximum Packet Size.
    pub dropped_too_large: Counter,
    /// Retained messages in force, and their payload bytes (`$SYS` aside).
    pub retained_messages: Gauge,
    pub retained_bytes: Gauge,
    /// Retained publishes delivered but not retained: a retained limit was reached.
    pub retained_refused: Counter,
    /// SUBSCRIBE filters refused, by reason.
    pub subscriptions_refused_acl: Counter,
    pub subscriptions_refused_limit: Counter,
    pub subscriptions_refused_levels: Counter,
    /// Publishes that needed a topic past `max_topics` (their connection was closed).
    pub topics_refused: Counter,
    /// Publishes too deep for `max_topic_levels` (their connection was closed).
    pub topic_levels_refused: Counter,
    /// Messages not parsed because the parser queue was full (recorded as runs).
    pub parser_refused: Counter,
    /// Connections refused at accept: `max_connections` were open.
    pub connections_over_limit: Counter,
    /// Open MQTT connections (CONNECT done or not).
    pub connections_open: Gauge,
    /// Writes waiting for the SQLite writer, and how many had to wait for room.
    pub store_queue: Gauge,
    pub store_queue_full: Counter,
    /// Subscribers disconnected for staying full past `slow_subscriber_timeout`.
    pub slow_consumers: Counter,
    pub store_commits: Counter,
    /// Total time spent in COMMIT, microseconds, and the longest one.
    pub store_commit_micros: Counter,
    pub store_commit_max_micros: Gauge,
    /// Jobs committed (group commit: many per transaction).
    pub store_jobs: Counter,
    pub connections_refused: Counter,
    /// Sessions opened (CONNACK 0), by protocol: MQTT 3.1, 3.1.1 and 5.
    pub connects_v31: Counter,
    pub connects_v311: Counter,
    pub connects_v5: Counter,
    /// PUBLISH packets received from MQTT 5 clients (of `messages_received`).
    pub messages_received_v5: Counter,
    /// Data items written to device buckets (by actions, `tago/data/post`,
    /// `POST /data`), counted inside their transaction.
    pub data_stored: Counter,
    /// Messages waiting in connected subscribers' in-memory queues.
    pub queued_messages: Gauge,
    /// Data items deleted by retention (`[data] retention`, a device's
    /// `retention` and `max_rows`).
    pub data_pruned: Counter,
    /// Delivery attempts (http_post, email), by how they went.
    pub delivery_attempts_ok: Counter,
    pub delivery_attempts_failed: Counter,
    /// Deliveries dropped from a full queue (an action's `max_pending`).
    pub deliveries_dropped: Counter,
    /// Action runs by outcome.
    pub runs_ok: Counter,
    pub runs_error: Counter,
    pub runs_timeout: Counter,
    pub runs_skipped: Counter,
}

pub(crate) static METRICS: std::sync::LazyLock<Metrics> =
    std::sync::LazyLock::new(Metrics::default);

impl Metrics {
    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped_qos0_full.get()
            + self.dropped_queue_overflow.get()
            + self.dropped_offline_qos0.get()
            + self.dropped_disconnected.get()
            + self.dropped_slow.get()
            + self.dropped_acl.get()
            + self.dropped_reserved.get()
            + self.dropped_expired.get()
            + self.dropped_too_large.get()
    }
}

/// What the router counts, for [`Metrics::render`].
pub(crate) struct RouterStats {
    pub topics: usize,
    pub subscriptions: usize,
    pub sessions: usize,
}

impl Metrics {
    /// Every metric in Prometheus' text format (`GET /metrics`).
    pub(crate) fn render(&self, router: &RouterStats) -> String {
        let m = self;
        let (topics, subscriptions, sessions) =
            (router.topics, router.subscriptions, router.sessions);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP brook_{name} {help}\n# TYPE brook_{name} {kind}\nbrook_{name} {value}"
            );
        };
        metric(
            "clients_connected",
            "gauge",
            "MQTT connections with a session",
            m.clients_connected.get().to_string(),
        );
        metric(
            "sessions",
            "gauge",
            "client sessions known, connected or persistent",
            sessions.to_string(),
        );
        metric(
            "topics_active",
            "gauge",
            "topic actors alive",
            topics.to_string(),
        );
        metric(
            "subscriptions",
            "gauge",
            "subscriptions in the index",
            subscriptions.to_string(),
        );
        metric(
            "messages_received_total",
            "counter",
            "PUBLISH packets received",
            m.messages_received.get().to_string(),
        );
        metric(
            "messages_sent_total",
            "counter",
            "PUBLISH packets sent",
            m.messages_sent.get().to_string(),
        );
        metric(
            "bytes_received_total",
            "counter",
            "bytes read from MQTT sockets",
            m.bytes_received.get().to_string(),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "bytes written to MQTT sockets",
            m.bytes_sent.get().to_string(),
        );
        metric(
            "slow_consumers_total",
            "counter",
            "subscribers disconnected as slow consumers",
            m.slow_consumers.get().to_string(),
        );
        metric(
            "connections_refused_total",
            "counter",
            "CONNECTs refused",
            m.connections_refused.get().to_string(),
        );
        metric(
            "store_commits_total",
            "counter",
            "SQLite transactions committed",
            m.store_commits.get().to_string(),
        );
        metric(
            "store_jobs_total",
            "counter",
            "writes committed (many per transaction)",
            m.store_jobs.get().to_string(),
        );
        metric(
            "store_commit_seconds_total",
            "counter",
            "time spent committing",
            format!("{:.6}", m.store_commit_micros.get() as f64 / 1e6),
        );
        metric(
            "store_commit_seconds_max",
            "gauge",
            "the longest commit since start",
            format!("{:.6}", m.store_commit_max_micros.get() as f64 / 1e6),
        );
        metric(
            "data_items_stored_total",
            "counter",
            "data items written to device buckets",
            m.data_stored.get().to_string(),
        );
        metric(
            "queued_messages",
            "gauge",
            "messages waiting in connected subscribers' queues",
            m.queued_messages.get().to_string(),
        );
        metric(
            "connections_open",
            "gauge",
            "MQTT connections open (CONNECT done or not), under mqtt.max_connections",
            m.connections_open.get().to_string(),
        );
        metric(
            "retained_messages",
            "gauge",
            "retained messages in force ($SYS aside), under mqtt.max_retained_messages",
            m.retained_messages.get().to_string(),
        );
        metric(
            "retained_bytes",
            "gauge",
            "payload bytes of the retained messages, under mqtt.max_retained_bytes",
            m.retained_bytes.get().to_string(),
        );
        metric(
            "retained_refused_total",
            "counter",
            "retained publishes delivered but not retained: a retained limit was reached",
            m.retained_refused.get().to_string(),
        );
        metric(
            "topics_refused_total",
            "counter",
            "publishes that needed a topic past mqtt.max_topics (connection closed)",
            m.topics_refused.get().to_string(),
        );
        metric(
            "topic_levels_refused_total",
            "counter",
            "publishes deeper than mqtt.max_topic_levels (connection closed)",
            m.topic_levels_refused.get().to_string(),
        );
        metric(
            "connections_over_limit_total",
            "counter",
            "connections closed at accept: mqtt.max_connections were open",
            m.connections_over_limit.get().to_string(),
        );
        metric(
            "parser_refused_total",
            "counter",
            "messages not parsed (nor stored): the parser queue was full",
            m.parser_refused.get().to_string(),
        );
        metric(
            "store_queue",
            "gauge",
            "writes waiting for the SQLite writer, under server.max_write_queue",
            m.store_queue.get().to_string(),
        );
        metric(
            "store_queue_full_total",
            "counter",
            "writes that waited for room in the write queue",
            m.store_queue_full.get().to_string(),
        );
        metric(
            "data_pruned_total",
            "counter",
            "data items deleted by retention (data.retention, a device's retention and max_rows)",
            m.data_pruned.get().to_string(),
        );
        metric(
            "deliveries_dropped_total",
            "counter",
            "http_post and email deliveries dropped, oldest first, from an action's full queue (max_pending)",
            m.deliveries_dropped.get().to_string(),
        );
        let mut family = |name: &str, help: &str, label: &str, values: &[(&str, u64)]| {
            let _ = writeln!(
                out,
                "# HELP brook_{name} {help}\n# TYPE brook_{name} counter"
            );
            for (value, n) in values {
                let _ = writeln!(out, "brook_{name}{{{label}=\"{value}\"}} {n}");
            }
        };
        family(
            "connects_total",
            "sessions opened (CONNACK accepted), by protocol version",
            "protocol",
            &[
                ("3.1", m.connects_v31.get()),
                ("3.1.1", m.connects_v311.get()),
                ("5", m.connects_v5.get()),
            ],
        );
        family(
            "messages_received_by_protocol_total",
            "PUBLISH packets received from clients, by protocol version (3.1 counts as 3.1.1)",
            "protocol",
            &[
                (
                    "3.1.1",
                    m.messages_received
                        .get()
                        .saturating_sub(m.messages_received_v5.get()),
                ),
                ("5", m.messages_received_v5.get()),
            ],
        );
        family(
            "messages_dropped_total",
            "messages dropped, by reason",
            "reason",
            &[
                ("queue_full_qos0", m.dropped_qos0_full.get()),
                ("offline_queue_overflow", m.dropped_queue_overflow.get()),
                ("offline_qos0", m.dropped_offline_qos0.get()),
                ("disconnected", m.dropped_disconnected.get()),
                ("slow_consumer", m.dropped_slow.get()),
                ("acl", m.dropped_acl.get()),
                ("reserved_topic", m.dropped_reserved.get()),
                ("expired", m.dropped_expired.get()),
                ("packet_too_large", m.dropped_too_large.get()),
            ],
        );
        family(
            "subscriptions_refused_total",
            "SUBSCRIBE filters refused (0x80), by reason",
            "reason",
            &[
                ("acl", m.subscriptions_refused_acl.get()),
                ("limit", m.subscriptions_refused_limit.get()),
                ("levels", m.subscriptions_refused_levels.get()),
            ],
        );
        family(
            "action_runs_total",
            "action runs, by outcome",
            "outcome",
            &[
                ("ok", m.runs_ok.get()),
                ("error", m.runs_error.get()),
                ("timeout", m.runs_timeout.get()),
                ("skipped", m.runs_skipped.get()),
            ],
        );
        family(
            "delivery_attempts_total",
            "http_post and email delivery attempts, by result",
            "result",
            &[
                ("ok", m.delivery_attempts_ok.get()),
                ("failed", m.delivery_attempts_failed.get()),
            ],
        );
        out
    }
}
