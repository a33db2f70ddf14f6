//! Per-device rate limits (`[limits]` in config.toml): how many publishes and
//! connects a device may make per minute, shared by the HTTP device API and
//! the MQTT listener so that a device cannot dodge its limit by switching
//! protocol.
//!
//! Each device and kind has a token bucket that holds up to the per-minute
//! limit and refills at limit/60 per second. A device that was quiet may send
//! its whole minute's worth at once; after that it gets one request per
//! `60 / limit` seconds. Unlike a fixed window, there is no moment (a window
//! boundary) at which twice the limit gets through, and one bucket costs two
//! numbers whatever the limit, where an exact sliding log would keep one
//! timestamp per request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::LimitsConfig;

/// What a device is doing that counts against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// An MQTT PUBLISH, or any request to the HTTP device API.
    Publish,
    /// An MQTT CONNECT.
    Connect,
}

/// Buckets kept before idle ones (full again, so forgetting them changes
/// nothing) are swept out; keeps memory bounded by the devices active in the
/// last minute, not by every device ever seen.
const SWEEP_ABOVE: usize = 4096;

/// One device's allowance for one kind.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests it may still make now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The per-device limiter; one per broker, behind an `Arc`.
pub(crate) struct RateLimits {
    /// Requests per minute per kind; 0 means unlimited.
    publish_per_minute: u32,
    connect_per_minute: u32,
    /// Buckets by device id and kind.
    buckets: Mutex<HashMap<(String, Kind), Bucket>>,
}

impl RateLimits {
    pub(crate) fn new(config: &LimitsConfig) -> RateLimits {
        RateLimits {
            publish_per_minute: config.publish_per_minute,
            connect_per_minute: config.connect_per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one `kind` for `device_id`. `Err` carries how long until the
    /// next one would be allowed (for `Retry-After`); a refused request is
    /// not counted.
    pub(crate) fn check(&self, device_id: &str, kind: Kind) -> Result<(), Duration> {
        self.check_at(device_id, kind, Instant::now())
    }

    fn limit(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Publish => self.publish_per_minute,
            Kind::Connect => self.connect_per_minute,
        }
    }

    fn check_at(&self, device_id: &str, kind: Kind, now: Instant) -> Result<(), Duration> {
        let limit = self.limit(kind);
        if limit == 0 {
            return Ok(());
        }
        let capacity = f64::from(limit);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock();
        if buckets.len() > SWEEP_ABOVE {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        let bucket = buckets
            .entry((device_id.to_string(), kind))
            .or_insert(Bucket {
                tokens: capacity,
                at: now,
            });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(publish: u32, connect: u32) -> RateLimits {
        RateLimits::new(&LimitsConfig {
            publish_per_minute: publish,
            connect_per_minute: connect,
        })
    }

    #[test]
    fn zero_means_unlimited() {
        let l = limits(0, 0);
        for _ in 0..10_000 {
            assert!(l.check("d", Kind::Publish).is_ok());
        }
    }

    #[test]
    fn the_minutes_allowance_then_one_per_interval() {
        let l = limits(3, 0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("d", Kind::Publish, t0).is_ok());
        }
        let wait = l.check_at("d", Kind::Publish, t0).unwrap_err();
        assert!(
            (19.9..=20.0).contains(&wait.as_secs_f64()),
            "3/min refills one every 20 s, got {wait:?}"
        );
        // Refused requests are not counted: the wait does not grow.
        assert_eq!(l.check_at("d", Kind::Publish, t0).unwrap_err(), wait);
        assert!(l
            .check_at("d", Kind::Publish, t0 + Duration::from_secs(20))
            .is_ok());
        assert!(l
            .check_at("d", Kind::Publish, t0 + Duration::from_secs(21))
            .is_err());
    }

    #[test]
    fn devices_and_kinds_are_counted_apart() {
        let l = limits(1, 1);
        let t0 = Instant::now();
        assert!(l.check_at("a", Kind::Publish, t0).is_ok());
        assert!(l.check_at("a", Kind::Publish, t0).is_err());
        assert!(l.check_at("b", Kind::Publish, t0).is_ok());
        assert!(l.check_at("a", Kind::Connect, t0).is_ok());
        assert!(l.check_at("a", Kind::Connect, t0).is_err());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let l = limits(1, 0);
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE {
            let _ = l.check_at(&format!("d{i}"), Kind::Publish, t0);
        }
        let later = t0 + Duration::from_secs(61);
        let _ = l.check_at("fresh", Kind::Publish, later);
        assert_eq!(l.buckets.lock().len(), 1);
    }
}
