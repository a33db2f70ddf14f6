//! The Live Inspector's side inside the broker: who is watching a device,
//! and handing them events.
//!
//! Every event point first asks [`Watch::active`] (one atomic load), so a
//! device nobody watches costs nothing more: no event is built. Each viewer
//! has a bounded queue; a viewer that falls behind loses events and never
//! slows the broker. Nothing is stored.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Events one viewer may have waiting before it starts losing them.
const VIEWER_QUEUE: usize = 256;

/// How much of a payload an event shows.
pub(crate) const PREVIEW_BYTES: usize = 512;

#[derive(Default, Debug)]
pub(crate) struct Watch {
    viewers: AtomicUsize,
    senders: Mutex<Vec<mpsc::Sender<Bytes>>>,
}

impl Watch {
    /// Whether anyone is watching: check before building an event.
    pub(crate) fn active(&self) -> bool {
        self.viewers.load(Ordering::Relaxed) > 0
    }

    /// A new viewer; events arrive as ready-made SSE frames.
    pub(crate) fn subscribe(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE);
        let mut senders = self.senders.lock();
        senders.push(tx);
        self.viewers.store(senders.len(), Ordering::Relaxed);
        rx
    }

    /// Sends `{"type": kind, "time": …, …fields}` to every viewer.
    pub(crate) fn emit(&self, kind: &str, fields: Value) {
        if !self.active() {
            return;
        }
        let mut event =
            json!({"type": kind, "time": crate::store::item::format_time(crate::store::now_ms())});
        if let (Some(e), Value::Object(f)) = (event.as_object_mut(), fields) {
            e.extend(f);
        }
        let frame = Bytes::from(format!("data: {event}\n\n"));
        let mut senders = self.senders.lock();
        senders.retain(|tx| match tx.try_send(frame.clone()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        self.viewers.store(senders.len(), Ordering::Relaxed);
    }

    /// Drops viewers that went away (called on a keep-alive tick).
    pub(crate) fn prune(&self) {
        let mut senders = self.senders.lock();
        senders.retain(|tx| !tx.is_closed());
        self.viewers.store(senders.len(), Ordering::Relaxed);
    }
}

/// The first bytes of a payload as text, for an event.
pub(crate) fn preview(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(PREVIEW_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if payload.len() > PREVIEW_BYTES {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_viewers_and_a_gone_viewer_is_dropped() {
        let w = Watch::default();
        assert!(!w.active());
        let mut rx = w.subscribe();
        assert!(w.active());
        w.emit("publish", json!({"topic": "a"}));
        let frame = rx.try_recv().expect("an event");
        assert!(frame.starts_with(b"data: {"));
        assert!(String::from_utf8_lossy(&frame).contains("\"topic\":\"a\""));
        drop(rx);
        w.emit("publish", json!({}));
        assert!(!w.active());
    }

    #[test]
    fn a_slow_viewer_loses_events_instead_of_growing() {
        let w = Watch::default();
        let mut slow = w.subscribe();
        for i in 0..(VIEWER_QUEUE * 3) {
            w.emit("n", json!({"i": i}));
        }
        // The slow viewer holds only its queue's worth: the oldest events.
        let mut kept = Vec::new();
        while let Ok(frame) = slow.try_recv() {
            kept.push(String::from_utf8_lossy(&frame).into_owned());
        }
        assert_eq!(kept.len(), VIEWER_QUEUE);
        assert!(kept[0].contains("\"i\":0"), "{}", kept[0]);
        assert!(kept[VIEWER_QUEUE - 1].contains(&format!("\"i\":{}", VIEWER_QUEUE - 1)));
        // It stays a viewer, and what comes once it has caught up reaches it.
        assert!(w.active());
        w.emit("n", json!({"i": "after"}));
        let next = slow.try_recv().expect("an event after catching up");
        assert!(String::from_utf8_lossy(&next).contains("\"after\""));
    }
}
