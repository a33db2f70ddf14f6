//! Loop prevention on MQTT 3.1.1, where a subscription cannot say "not my
//! own messages": when a bridge's `in` filters overlap its `out` topics on
//! the remote, the remote sends back what the bridge published there. The
//! bridge remembers what it sent (a keyed hash of topic and payload, for a
//! short while, a bounded number) and drops one incoming copy per send.
//! MQTT 5 links subscribe with No Local instead and need none of this.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

/// Sends remembered at most: past it the oldest are forgotten.
const CAPACITY: usize = 10_000;

/// How long an echo may take to come back.
const REMEMBER_FOR: Duration = Duration::from_secs(60);

/// What was sent recently, by hash.
pub(super) struct EchoFilter {
    /// Keyed with a random key, so a remote cannot aim collisions.
    hasher: RandomState,
    /// Per hash: sends not yet echoed, and sends echoed whose entry in
    /// `order` is still there (echoes consume the oldest send first, and
    /// `order` forgets the oldest first, so the two stay in step).
    counts: HashMap<u64, (u32, u32)>,
    /// Every remembered send, oldest first.
    order: VecDeque<(u64, Instant)>,
}

impl Default for EchoFilter {
    fn default() -> Self {
        EchoFilter {
            hasher: RandomState::new(),
            counts: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl EchoFilter {
    fn key(&self, topic: &str, payload: &[u8]) -> u64 {
        self.hasher.hash_one((topic, payload))
    }

    /// Notes a message published on the remote.
    pub(super) fn sent(&mut self, topic: &str, payload: &[u8], now: Instant) {
        self.expire(now);
        if self.order.len() >= CAPACITY {
            self.forget_oldest();
        }
        let k = self.key(topic, payload);
        self.counts.entry(k).or_insert((0, 0)).0 += 1;
        self.order.push_back((k, now));
    }

    /// Whether an incoming message is the echo of one we sent (and
    /// consumes that send).
    pub(super) fn is_echo(&mut self, topic: &str, payload: &[u8], now: Instant) -> bool {
        self.expire(now);
        let k = self.key(topic, payload);
        match self.counts.get_mut(&k) {
            Some((live, echoed)) if *live > 0 => {
                *live -= 1;
                *echoed += 1;
                true
            }
            _ => false,
        }
    }

    fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > REMEMBER_FOR)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((k, _)) = self.order.pop_front() else {
            return;
        };
        if let Some((live, echoed)) = self.counts.get_mut(&k) {
            if *echoed > 0 {
                *echoed -= 1;
            } else {
                *live = live.saturating_sub(1);
            }
            if *live == 0 && *echoed == 0 {
                self.counts.remove(&k);
            }
        }
    }

    /// How many sends are remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.values().map(|(live, _)| *live as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_echo_per_send() {
        let mut f = EchoFilter::default();
        let now = Instant::now();
        f.sent("a/b", b"1", now);
        f.sent("a/b", b"1", now);
        assert!(!f.is_echo("a/b", b"2", now));
        assert!(f.is_echo("a/b", b"1", now));
        assert!(f.is_echo("a/b", b"1", now));
        assert!(
            !f.is_echo("a/b", b"1", now),
            "a third copy is a real message"
        );
    }

    #[test]
    fn sends_are_forgotten_after_a_while_and_past_the_capacity() {
        let mut f = EchoFilter::default();
        let start = Instant::now();
        f.sent("t", b"x", start);
        assert!(!f.is_echo("t", b"x", start + REMEMBER_FOR + Duration::from_secs(1)));
        for i in 0..(CAPACITY + 10) {
            f.sent("t", i.to_string().as_bytes(), start);
        }
        assert_eq!(f.len(), CAPACITY);
        assert!(!f.is_echo("t", b"0", start), "the oldest were forgotten");
        assert!(f.is_echo("t", (CAPACITY + 9).to_string().as_bytes(), start));
    }

    #[test]
    fn an_echo_consumed_early_leaves_the_order_consistent() {
        let mut f = EchoFilter::default();
        let now = Instant::now();
        f.sent("t", b"x", now);
        assert!(f.is_echo("t", b"x", now));
        let second = now + Duration::from_secs(30);
        f.sent("t", b"x", second);
        // Forgetting the first send must not take the second one's count.
        f.expire(now + REMEMBER_FOR + Duration::from_millis(1));
        assert_eq!(f.len(), 1);
        assert!(f.is_echo("t", b"x", second));
    }
}
