//! Reconnect delays: exponential from `reconnect_min`, doubled on each
//! failed attempt up to `reconnect_max`, with jitter (each delay drawn from
//! its upper half) so that many sites cut off at once do not all come back
//! in the same instant.

use std::time::Duration;

/// The delays between attempts of one bridge.
pub(super) struct Backoff {
    min: Duration,
    max: Duration,
    /// The ceiling of the next delay.
    ceiling: Duration,
    /// Failed attempts in a row, for the status.
    pub failures: u32,
}

impl Backoff {
    pub(super) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            ceiling: min,
            failures: 0,
        }
    }

    /// The delay before the next attempt, after a failure; `unit` in
    /// `[0, 1)` picks the point in the jitter range.
    pub(super) fn next(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// A connection came up: start again from `min`.
    pub(super) fn reset(&mut self) {
        self.ceiling = self.min;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let lows: Vec<u64> = (0..6).map(|_| b.next(0.0).as_millis() as u64).collect();
        assert_eq!(lows, [500, 1000, 2000, 4000, 5000, 5000]);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let highs: Vec<u64> = (0..6)
            .map(|_| b.next(0.999_999).as_millis() as u64)
            .collect();
        assert_eq!(highs, [999, 1999, 3999, 7999, 9999, 9999]);
        assert_eq!(b.failures, 6);
        b.reset();
        assert_eq!(b.failures, 0);
        assert!(b.next(0.5) < Duration::from_secs(1));
    }
}
