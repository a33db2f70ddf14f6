//! The broker-wide bound on retained messages: how many there are and how
//! many payload bytes they hold, shared by every topic actor. A retained
//! publish that would go past either limit is delivered but not retained.
//! The broker's own `$SYS` topics are not counted (there is a fixed number
//! of them).

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::metrics::METRICS;

pub(crate) struct RetainedBudget {
    max_messages: usize,
    max_bytes: usize,
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

impl RetainedBudget {
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> RetainedBudget {
        RetainedBudget {
            max_messages,
            max_bytes,
            messages: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Takes room for a retained payload of `new` bytes that replaces one of
    /// `old` bytes (`None`: the topic had none). False, with nothing taken,
    /// when that would go past a limit.
    pub(crate) fn replace(&self, old: Option<usize>, new: usize) -> bool {
        // One topic actor changes one topic at a time, and a compare-exchange
        // loop keeps concurrent changes of other topics exact.
        if old.is_none() {
            let took = self
                .messages
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max_messages).then_some(n + 1)
                })
                .is_ok();
            if !took {
                return false;
            }
        }
        let old_bytes = old.unwrap_or(0);
        let took = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                let after = b - old_bytes.min(b) + new;
                (new <= old_bytes || after <= self.max_bytes).then_some(after)
            })
            .is_ok();
        if !took && old.is_none() {
            self.messages.fetch_sub(1, Ordering::AcqRel);
        }
        if took {
            self.publish_gauges();
        }
        took
    }

    /// Shows the counts in `/metrics`.
    fn publish_gauges(&self) {
        METRICS
            .retained_messages
            .set(self.messages.load(Ordering::Relaxed) as i64);
        METRICS
            .retained_bytes
            .set(self.bytes.load(Ordering::Relaxed) as i64);
    }

    /// A retained message of `bytes` was cleared.
    pub(crate) fn release(&self, bytes: usize) {
        let _ = self
            .messages
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(bytes))
            });
        self.publish_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bytes_are_both_bounded() {
        let b = RetainedBudget::new(2, 10);
        assert!(b.replace(None, 4));
        assert!(b.replace(None, 4));
        assert!(!b.replace(None, 1), "a third message");
        assert!(!b.replace(Some(4), 7), "4 + 7 bytes");
        assert!(b.replace(Some(4), 6), "4 + 6 bytes");
        assert!(b.replace(Some(6), 1), "shrinking always fits");
        b.release(1);
        assert!(b.replace(None, 6));
        assert!(!b.replace(None, 0));
    }
}
