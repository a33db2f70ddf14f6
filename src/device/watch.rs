//! The Live Inspector's side inside the broker: who is watching a device,
//! and handing them events.
//!
//! Every event is an [`Event`], given to [`Watch::emit`] as a closure that
//! builds it: a device nobody watches costs one atomic load, and no event is
//! built. Each viewer has a bounded queue; a viewer that falls behind loses
//! events and never slows the broker. Nothing is stored.
//!
//! An event is sent as one `data:` line of JSON: `{"type": …, "time": …}`
//! and the event's fields (the web page and scripts read them by name).

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

/// One thing a device (or a bridge's pseudo-device) did, as its viewers see it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    /// A client of the device connected.
    Connect {
        client_id: &'a str,
        /// `…` and the token's last four characters.
        token: String,
        /// The client's address (the one a trusted proxy forwarded, for a
        /// WebSocket behind one).
        peer: String,
        /// `tcp`, `tls`, `ws` or `wss`.
        transport: &'static str,
        /// The proxy the client came through, when its address was forwarded.
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy: Option<String>,
        clean_session: bool,
        keep_alive: u64,
        will_topic: Option<&'a str>,
        resumed: bool,
        /// `3.1`, `3.1.1` or `5`.
        protocol: &'static str,
    },
    /// A bridge's link to its remote came up.
    #[serde(rename = "connect")]
    LinkUp {
        client_id: &'a str,
        peer: &'a str,
        resumed: bool,
        protocol: String,
    },
    /// A connection (or a bridge's link) ended.
    Disconnect { client_id: &'a str, reason: &'a str },
    /// A PUBLISH the device sent (or, over a bridge, one in or out).
    Publish {
        client_id: &'a str,
        /// `in` or `out`, over a bridge only.
        #[serde(skip_serializing_if = "Option::is_none")]
        direction: Option<&'static str>,
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_topic: Option<&'a str>,
        qos: u8,
        retain: bool,
        bytes: usize,
        /// The first [`PREVIEW_BYTES`] as text.
        payload: String,
        /// MQTT 5 properties, as stored (see `store::props::to_json`).
        #[serde(skip_serializing_if = "Option::is_none")]
        properties: Option<serde_json::Value>,
    },
    /// A SUBSCRIBE and what each of its filters was given.
    Subscribe {
        client_id: &'a str,
        filters: Vec<Filter<'a>>,
    },
    Unsubscribe {
        client_id: &'a str,
        filters: &'a [String],
    },
    /// Something the broker refused; see [`Refusal`].
    Refused(Refusal<'a>),
    /// The payload parser's output, or why there was no data.
    Parser {
        /// The MQTT topic, or `source` for other paths.
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<&'a str>,
        /// `POST /data`.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        logs: &'a [String],
    },
    /// An action ran for the device. (Its type is `action_type`: before
    /// events were typed, a `type` field here overwrote the event's own.)
    Action {
        action: &'a str,
        action_type: &'a str,
        outcome: &'a str,
        detail: &'a str,
    },
    /// One attempt of a delivery (`http_post`, `email`) an action queued
    /// for the device's data: `outcome` is `ok`, `retry` (another attempt
    /// comes) or `error` (the last one failed).
    Delivery {
        action: &'a str,
        action_type: &'a str,
        attempt: u32,
        outcome: &'a str,
        detail: &'a str,
    },
    /// An action with an `unlock` was locked or unlocked for the device:
    /// `state` is `locked` or `unlocked`, `by` says what did it (`a run`,
    /// `data`, `the admin API`).
    Lock {
        action: &'a str,
        state: &'a str,
        by: &'a str,
    },
}

/// One filter of a SUBSCRIBE as the inspector shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Filter<'a> {
    /// At most 256 characters of it.
    pub(crate) filter: String,
    pub(crate) qos: u8,
    pub(crate) granted: bool,
    pub(crate) code: u8,
    pub(crate) reason: Option<&'a str>,
}

/// What was refused and why: `kind` says what (`auth`, `limit`, `will`,
/// `session`, `publish`, `retain`, `subscribe`, `connect`, ...), `reason`
/// says why; the other fields are there when they apply.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Refusal<'a> {
    pub(crate) kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) peer: Option<String>,
    /// The other device, when one tried to use this one's client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) by_device: Option<&'a str>,
    /// Levels of a topic that was too deep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) levels: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after_s: Option<u64>,
    /// How many filters, for a SUBSCRIBE past its limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filters: Option<usize>,
    /// One filter, for a bridge's subscription the remote refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filter: Option<&'a str>,
    /// The remote's reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) remote_topic: Option<&'a str>,
    /// Messages dropped from a bridge's full queue, and its bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dropped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_queued: Option<usize>,
}

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

    /// Sends the event `build` makes to every viewer (built only when
    /// someone watches), with the time it happened.
    pub(crate) fn emit<'a>(&self, build: impl FnOnce() -> Event<'a>) {
        if !self.active() {
            return;
        }
        let Ok(mut event) = serde_json::to_value(build()) else {
            return;
        };
        if let Some(e) = event.as_object_mut() {
            let time = crate::store::item::format_time(crate::store::now_ms());
            e.insert("time".into(), serde_json::Value::String(time));
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
        w.emit(|| Event::Disconnect {
            client_id: "a",
            reason: "gone",
        });
        let frame = rx.try_recv().expect("an event");
        assert!(frame.starts_with(b"data: {"));
        let text = String::from_utf8_lossy(&frame);
        for part in [
            "\"type\":\"disconnect\"",
            "\"client_id\":\"a\"",
            "\"reason\":\"gone\"",
            "\"time\":",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        drop(rx);
        w.emit(|| Event::Disconnect {
            client_id: "a",
            reason: "gone",
        });
        assert!(!w.active());
    }

    #[test]
    fn a_slow_viewer_loses_events_instead_of_growing() {
        let w = Watch::default();
        let mut slow = w.subscribe();
        for i in 0..(VIEWER_QUEUE * 3) {
            let n = i.to_string();
            w.emit(|| Event::Disconnect {
                client_id: &n,
                reason: "n",
            });
        }
        // The slow viewer holds only its queue's worth: the oldest events.
        let mut kept = Vec::new();
        while let Ok(frame) = slow.try_recv() {
            kept.push(String::from_utf8_lossy(&frame).into_owned());
        }
        assert_eq!(kept.len(), VIEWER_QUEUE);
        assert!(kept[0].contains("\"client_id\":\"0\""), "{}", kept[0]);
        assert!(kept[VIEWER_QUEUE - 1].contains(&format!("\"client_id\":\"{}\"", VIEWER_QUEUE - 1)));
        // It stays a viewer, and what comes once it has caught up reaches it.
        assert!(w.active());
        w.emit(|| Event::Disconnect {
            client_id: "after",
            reason: "n",
        });
        let next = slow.try_recv().expect("an event after catching up");
        assert!(String::from_utf8_lossy(&next).contains("\"after\""));
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn events_keep_the_json_shape_the_page_reads() {
        let v = serde_json::to_value(Event::Refused(Refusal {
            kind: "publish",
            reason: Some("ACL".into()),
            client_id: Some("c"),
            topic: Some("t"),
            ..Refusal::default()
        }))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "refused", "kind": "publish", "reason": "ACL", "client_id": "c", "topic": "t"})
        );
        let v = serde_json::to_value(Event::Action {
            action: "a",
            action_type: "insert_bucket",
            outcome: "ok",
            detail: "1 items stored",
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "action", "action": "a", "action_type": "insert_bucket", "outcome": "ok", "detail": "1 items stored"})
        );
        let v = serde_json::to_value(Event::Delivery {
            action: "forward",
            action_type: "http_post",
            attempt: 2,
            outcome: "retry",
            detail: "HTTP 500",
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "delivery", "action": "forward", "action_type": "http_post", "attempt": 2, "outcome": "retry", "detail": "HTTP 500"})
        );
        let v = serde_json::to_value(Event::Lock {
            action: "too-hot",
            state: "locked",
            by: "a run",
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "lock", "action": "too-hot", "state": "locked", "by": "a run"})
        );
        let v = serde_json::to_value(Event::Connect {
            client_id: "c",
            token: "…abcd".into(),
            peer: "127.0.0.1:5".into(),
            transport: "ws",
            proxy: None,
            clean_session: true,
            keep_alive: 60,
            will_topic: None,
            resumed: false,
            protocol: "5",
        })
        .unwrap();
        assert_eq!(
            v["will_topic"],
            serde_json::Value::Null,
            "present, as null: {v}"
        );
        assert_eq!(v["protocol"], "5");
        assert_eq!(v["transport"], "ws");
        assert!(v.get("proxy").is_none(), "left out when direct: {v}");
    }
}
