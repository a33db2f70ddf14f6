//! Lock state of the actions with an `unlock` (TagoIO's Trigger Unlock):
//! after such an action runs for a device it is locked for that device,
//! until a batch of that device meets its `unlock` (or the admin API resets
//! it).
//!
//! The state lives in SQLite (`action_locks`) and, for the decision on
//! every stored batch, in this table in memory. A change is made here first,
//! under the table's lock, so that two batches decided at once see each
//! other; the batch's transaction then writes the key's state as it is when
//! the transaction runs (not as it was decided), so SQLite ends where
//! memory does whatever order the writes commit in.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::store::actions::LockRow;

/// Locks held at most: the table grows with actions that have an `unlock`
/// times the devices they apply to, both set by the admin, never by what a
/// device sends; the bound keeps a mistake (an `unlock` action on every
/// device of a large fleet) from growing memory without end. Past it an
/// action runs without locking, and its run record says so.
pub(crate) const MAX_LOCKS: usize = 100_000;

/// An action's name and a device id.
pub(crate) type LockKey = (Arc<str>, String);

/// The lock table; see the module documentation.
#[derive(Default)]
pub(crate) struct Locks {
    /// Locked since (unix ms), by action and device.
    held: Mutex<HashMap<LockKey, i64>>,
}

impl Locks {
    /// A table holding the recorded locks (at most [`MAX_LOCKS`]).
    pub(crate) fn from_rows(rows: Vec<LockRow>) -> Locks {
        let held = rows
            .into_iter()
            .take(MAX_LOCKS)
            .map(|r| ((Arc::from(r.action.as_str()), r.device_id), r.locked_at))
            .collect();
        Locks {
            held: Mutex::new(held),
        }
    }

    /// Whether the action is locked for the device.
    pub(crate) fn is_locked(&self, key: &LockKey) -> bool {
        self.held.lock().contains_key(key)
    }

    /// Since when it is locked, if it is.
    pub(crate) fn locked_at(&self, key: &LockKey) -> Option<i64> {
        self.held.lock().get(key).copied()
    }

    /// Locks it (since `at`); false when the table is full and it stays
    /// unlocked.
    pub(crate) fn lock(&self, key: &LockKey, at: i64) -> bool {
        let mut held = self.held.lock();
        if held.len() >= MAX_LOCKS && !held.contains_key(key) {
            return false;
        }
        held.insert(key.clone(), at);
        true
    }

    /// Unlocks it; whether it was locked.
    pub(crate) fn unlock(&self, key: &LockKey) -> bool {
        self.held.lock().remove(key).is_some()
    }

    /// Forgets the locks of actions for which `keep` says no.
    pub(crate) fn retain_actions(&self, keep: impl Fn(&str) -> bool) {
        self.held.lock().retain(|(action, _), _| keep(action));
    }

    /// How many are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(a: &str, d: &str) -> LockKey {
        (Arc::from(a), d.to_string())
    }

    #[test]
    fn lock_unlock_and_forget() {
        let locks = Locks::from_rows(vec![LockRow {
            action: "a".into(),
            device_id: "d1".into(),
            device_name: "one".into(),
            locked_at: 5,
        }]);
        assert!(locks.is_locked(&key("a", "d1")));
        assert_eq!(locks.locked_at(&key("a", "d1")), Some(5));
        assert!(!locks.is_locked(&key("a", "d2")));
        assert!(locks.lock(&key("b", "d1"), 7));
        assert!(locks.unlock(&key("a", "d1")));
        assert!(!locks.unlock(&key("a", "d1")));
        locks.retain_actions(|a| a != "b");
        assert_eq!(locks.len(), 0);
    }
}
