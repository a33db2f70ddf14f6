//! The decoded form of every MQTT 3.1.1 control packet, as exchanged between the codec
//! and the broker.

use std::sync::Arc;

use bytes::Bytes;

/// One MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    Connect(Connect),
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    /// `(filter, requested qos 0..=2)`
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    /// Return codes: 0, 1, 2 or 0x80 (failure).
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connect {
    /// 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1 ("MQTT").
    pub level: u8,
    /// May be empty: the session decides whether to assign one or refuse.
    pub client_id: String,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    /// Binary-safe: MQTT passwords are arbitrary bytes.
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
}

/// The last-will message carried in a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

/// A PUBLISH packet. Cheap to clone (topic and payload are reference-counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 for QoS 0.
    pub pkid: u16,
}

#[cfg(test)]
impl Publish {
    /// A PUBLISH with `dup = false` and `pkid = 0` (set `pkid` before sending QoS > 0).
    pub(crate) fn new(
        topic: impl Into<Arc<str>>,
        payload: impl Into<Bytes>,
        qos: u8,
        retain: bool,
    ) -> Self {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            dup: false,
            pkid: 0,
        }
    }
}
