//! When each device last sent something (`last_input`), kept current without
//! a database write per message.
//!
//! The exact time lives in memory; SQLite gets a detached write at most once
//! per [`WRITE_EVERY`] per device, so a device posting a hundred times a
//! second costs one row update a second. Readers that want the exact value
//! (`GET /info`) take the newer of the two. What a crash can lose is the last
//! second of a device's `last_input`, never data.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::store::{devices, now_ms, Store};

/// The least time between two `last_input` writes of one device, in ms.
const WRITE_EVERY: i64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Seen {
    /// The latest input, unix ms.
    last: i64,
    /// When `last_input` was last queued for writing, unix ms.
    written: i64,
}

/// `last_input` of every device that sent something since start.
pub struct Activity {
    store: Store,
    seen: Mutex<HashMap<String, Seen>>,
}

impl Activity {
    pub fn new(store: Store) -> Activity {
        Activity {
            store,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an input (a publish, a POST) from `device_id` now.
    pub fn input(&self, device_id: &str) {
        let now = now_ms();
        let due = {
            let mut seen = self.seen.lock();
            let entry = seen.entry(device_id.to_string()).or_insert(Seen {
                last: now,
                written: i64::MIN,
            });
            entry.last = entry.last.max(now);
            let due = now.saturating_sub(entry.written) >= WRITE_EVERY;
            if due {
                entry.written = now;
            }
            due
        };
        if due {
            let id = device_id.to_string();
            self.store
                .write_detached("last input", move |c| devices::set_last_input(c, &id, now));
        }
    }

    /// The latest input seen since start, if any; newer than (or equal to)
    /// what the database holds.
    pub fn last_input(&self, device_id: &str) -> Option<i64> {
        self.seen.lock().get(device_id).map(|s| s.last)
    }

    /// Forgets a deleted device.
    pub fn forget(&self, device_id: &str) {
        self.seen.lock().remove(device_id);
    }
}
