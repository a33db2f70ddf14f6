//! The action supervisor: the actor that decides what a publish, a schedule
//! or a device event turns into, and runs it.
//!
//! Sessions consult the shared [`ActionIndex`] (a topic trie over every
//! action's filters, so the cost per publish does not grow with the number of
//! actions) and send the supervisor only the publishes that match something.
//! A publish that stores data is answered only once its rows are committed,
//! and the session holds the publisher's PUBACK/PUBREC until then.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::oneshot;

use super::ingest;
use crate::device::DeviceInfo;
use crate::router::trie::SubTrie;
use crate::store::{data as bucket, Store};

/// The legacy TagoIO topic whose publishes are stored in the publisher's
/// bucket without any action.
pub const TAGO_DATA_POST: &str = "tago/data/post";

/// Which actions an MQTT topic triggers; swapped whole on reload.
#[derive(Default)]
pub struct ActionIndex {
    trie: SubTrie,
}

impl ActionIndex {
    pub fn new(filters: impl IntoIterator<Item = (String, Arc<str>)>) -> ActionIndex {
        let mut trie = SubTrie::default();
        for (filter, action) in filters {
            trie.insert(&filter, &action, 0);
        }
        ActionIndex { trie }
    }

    /// The names of the actions whose `mqtt_topic` filters match `topic`.
    pub fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        if self.trie.is_empty() {
            return Vec::new();
        }
        self.trie.matches(topic).into_keys().collect()
    }

    /// Whether a publish on `topic` concerns the supervisor at all.
    pub fn wants(&self, topic: &str) -> bool {
        topic == TAGO_DATA_POST || (!self.trie.is_empty() && !self.trie.matches(topic).is_empty())
    }
}

/// The index as sessions see it: read per publish, replaced on reload.
pub type SharedIndex = Arc<RwLock<Arc<ActionIndex>>>;

/// A device's publish that matches at least one action (or the legacy
/// topic). `done` answers once everything durable is committed: `false`
/// only when the database failed, so the publisher is not acknowledged.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Triggered {
    pub device: Arc<DeviceInfo>,
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub done: Option<oneshot::Sender<bool>>,
}

/// A device connected or disconnected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeviceEvent {
    pub device_id: String,
    pub connected: bool,
}

pub struct Supervisor {
    store: Store,
    index: SharedIndex,
}

impl Supervisor {
    pub fn new(store: Store, index: SharedIndex) -> Supervisor {
        Supervisor { store, index }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
        let _ = &self.index;
    }
}

impl Handler<Triggered> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Triggered, _ctx: &mut Self::Context) {
        let store = self.store.clone();
        actix::spawn(async move {
            let ok = if &*msg.topic == TAGO_DATA_POST {
                store_items(&store, msg.device.clone(), &msg.topic, msg.payload).await
            } else {
                true
            };
            if let Some(done) = msg.done {
                let _ = done.send(ok);
            }
        });
    }
}

/// Parses and stores a publish in the device's bucket; false only when the
/// database failed (invalid data is logged and acknowledged).
async fn store_items(store: &Store, device: Arc<DeviceInfo>, topic: &str, payload: Bytes) -> bool {
    let parsed = match ingest::from_mqtt(device.clone(), topic, payload).await {
        Ok(p) => p,
        Err(rejected) => {
            tracing::info!(device = %device.name, topic, reason = %rejected.reason, "publish not stored");
            return true;
        }
    };
    let items = parsed.items;
    match store.write(move |c| bucket::insert(c, &items)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(device = %device.name, topic, error = %e, "data not stored");
            false
        }
    }
}

impl Handler<DeviceEvent> for Supervisor {
    type Result = ();

    fn handle(&mut self, _msg: DeviceEvent, _ctx: &mut Self::Context) {}
}
