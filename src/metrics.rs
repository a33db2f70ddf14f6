//! Process-wide counters: what `$SYS/broker/...` publishes and `/metrics`
//! shows. Plain atomics, so that counting on the hot path costs one
//! uncontended add.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn max(&self, v: i64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub clients_connected: Gauge,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub bytes_received: Counter,
    pub bytes_sent: Counter,
    /// QoS 0 messages dropped because a connected subscriber's queue was full.
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
    /// Data items written to device buckets (by actions, `tago/data/post`,
    /// `POST /data`), counted inside their transaction.
    pub data_stored: Counter,
    /// Messages waiting in connected subscribers' in-memory queues.
    pub queued_messages: Gauge,
    /// Action runs by outcome.
    pub runs_ok: Counter,
    pub runs_error: Counter,
    pub runs_timeout: Counter,
    pub runs_skipped: Counter,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::default);

impl Metrics {
    pub fn dropped_total(&self) -> u64 {
        self.dropped_qos0_full.get()
            + self.dropped_queue_overflow.get()
            + self.dropped_offline_qos0.get()
            + self.dropped_disconnected.get()
            + self.dropped_slow.get()
            + self.dropped_acl.get()
            + self.dropped_reserved.get()
    }
}
