//! The retained messages, one compact entry per topic, apart from the topic
//! actors: a retained topic that nobody publishes to has no actor, only its
//! entry here and its name in the router's tree of names.
//!
//! The table is shared by the router and the topic actors. A topic's actor,
//! while it exists, is the only one that changes the topic's entry (on a
//! retained publish) and sends it to new subscribers, in the order of its
//! mailbox, so a retained message and the live publishes after it keep
//! their order. While a topic has no actor, nothing can publish to it (a
//! publish first asks the router for an actor), so the router reads the
//! entry and queues it for a new subscriber itself.
//!
//! An entry holds the payload in an allocation of its own (never a slice
//! of a connection's read buffer, which it would keep alive), its QoS, and
//! what MQTT 5 adds (properties, message expiry) behind one pointer that is
//! empty for a 3.1.1 message. Entries count against the broker-wide
//! [`RetainedBudget`], except the broker's own `$SYS` topics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::budget::RetainedBudget;
use crate::protocol::PublishProperties;

/// What MQTT 5 adds to a retained message.
#[derive(Debug)]
struct Extra {
    properties: Option<Arc<PublishProperties>>,
    /// Unix ms when it expires (it is then no longer sent); None = never.
    expires_at: Option<i64>,
}

/// A retained message as the table holds it.
#[derive(Debug)]
pub(crate) struct Retained {
    payload: Box<[u8]>,
    extra: Option<Box<Extra>>,
    qos: u8,
}

impl Retained {
    pub(crate) fn new(
        payload: &[u8],
        qos: u8,
        properties: Option<Arc<PublishProperties>>,
        expires_at: Option<i64>,
    ) -> Retained {
        let extra = (properties.is_some() || expires_at.is_some()).then(|| {
            Box::new(Extra {
                properties,
                expires_at,
            })
        });
        Retained {
            payload: payload.into(),
            extra,
            qos,
        }
    }

    fn expires_at(&self) -> Option<i64> {
        self.extra.as_ref().and_then(|e| e.expires_at)
    }
}

/// A copy of a retained message, to be sent.
pub(crate) struct RetainedCopy {
    pub payload: Bytes,
    pub qos: u8,
    pub properties: Option<Arc<PublishProperties>>,
    pub expires_at: Option<i64>,
}

/// What a look-up of a topic's retained message found.
pub(crate) enum Found {
    Nothing,
    /// It expired: it was taken out of the table (and its room released).
    Expired,
    Message(RetainedCopy),
}

pub(crate) struct RetainedTable {
    entries: Mutex<HashMap<Arc<str>, Retained>>,
    budget: Arc<RetainedBudget>,
}

/// Whether a topic's retained messages count against the budget.
fn counted(name: &str) -> bool {
    !name.starts_with("$SYS/")
}

impl RetainedTable {
    pub(crate) fn new(budget: Arc<RetainedBudget>) -> RetainedTable {
        RetainedTable {
            entries: Mutex::new(HashMap::new()),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Retained>> {
        // A panic while the lock was held left the map itself whole (every
        // change is one insert or remove): carry on with it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets (non-empty payload) or clears (empty payload) `name`'s retained
    /// message; false, with nothing changed, when the budget refused it.
    pub(crate) fn set(
        &self,
        name: &Arc<str>,
        payload: &[u8],
        qos: u8,
        properties: Option<Arc<PublishProperties>>,
        expires_at: Option<i64>,
    ) -> bool {
        let counted = counted(name);
        let mut entries = self.lock();
        let old = entries.get(&**name).map(|r| r.payload.len());
        if payload.is_empty() {
            if entries.remove(&**name).is_some() && counted {
                self.budget.release(old.unwrap_or(0));
            }
            return true;
        }
        if counted && !self.budget.replace(old, payload.len()) {
            return false;
        }
        let r = Retained::new(payload, qos, properties, expires_at);
        match entries.get_mut(&**name) {
            Some(slot) => *slot = r,
            None => {
                entries.insert(name.clone(), r);
            }
        }
        true
    }

    /// Takes in a message loaded at start; false when it does not fit the
    /// budget.
    pub(crate) fn load(&self, name: Arc<str>, r: Retained) -> bool {
        if counted(&name) && !self.budget.replace(None, r.payload.len()) {
            return false;
        }
        let mut entries = self.lock();
        if let Some(old) = entries.insert(name.clone(), r) {
            if counted(&name) {
                self.budget.release(old.payload.len());
            }
        }
        true
    }

    /// A copy of `name`'s retained message, unless it has expired by `now`
    /// (unix ms); an expired one leaves the table.
    pub(crate) fn get(&self, name: &str, now: i64) -> Found {
        let mut entries = self.lock();
        let Some(r) = entries.get(name) else {
            return Found::Nothing;
        };
        if r.expires_at().is_some_and(|at| at <= now) {
            let bytes = r.payload.len();
            entries.remove(name);
            if counted(name) {
                self.budget.release(bytes);
            }
            return Found::Expired;
        }
        Found::Message(RetainedCopy {
            payload: Bytes::copy_from_slice(&r.payload),
            qos: r.qos,
            properties: r.extra.as_ref().and_then(|e| e.properties.clone()),
            expires_at: r.expires_at(),
        })
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// The key `name` is held under, to share its allocation.
    pub(crate) fn key(&self, name: &str) -> Option<Arc<str>> {
        self.lock().get_key_value(name).map(|(k, _)| k.clone())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> RetainedTable {
        RetainedTable::new(Arc::new(RetainedBudget::new(max, 1 << 20)))
    }

    fn payload(t: &RetainedTable, name: &str) -> Option<Vec<u8>> {
        match t.get(name, 0) {
            Found::Message(m) => Some(m.payload.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn set_replace_clear_within_the_budget() {
        let t = table(1);
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        assert!(t.set(&a, b"one", 1, None, None));
        assert!(!t.set(&b, b"two", 1, None, None), "past max messages");
        assert!(t.set(&a, b"three", 0, None, None), "a replacement fits");
        assert_eq!(payload(&t, "a").as_deref(), Some(&b"three"[..]));
        assert!(t.set(&a, b"", 0, None, None));
        assert_eq!(t.len(), 0);
        assert!(t.set(&b, b"two", 1, None, None), "the room came back");
        let sys: Arc<str> = "$SYS/x".into();
        assert!(t.set(&sys, b"uncounted", 0, None, None));
    }

    #[test]
    fn an_expired_message_is_not_found_and_leaves() {
        let t = table(10);
        let a: Arc<str> = "a".into();
        assert!(t.set(&a, b"x", 1, None, Some(100)));
        assert!(matches!(t.get("a", 50), Found::Message(m) if m.expires_at == Some(100)));
        assert!(matches!(t.get("a", 100), Found::Expired));
        assert!(matches!(t.get("a", 100), Found::Nothing));
        assert_eq!(t.len(), 0);
    }
}
