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
    /// QoS 0 messages dropped because a subscriber's queue was full.
    pub dropped_qos0_full: Counter,
    /// QoS 1/2 messages dropped from an offline session's queue past `max_queued_messages`.
    pub dropped_queue_overflow: Counter,
    /// Messages refused by the ACL.
    pub dropped_acl: Counter,
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
        self.dropped_qos0_full.get() + self.dropped_queue_overflow.get() + self.dropped_acl.get()
    }
}
