//! MQTT 3.1.1 (and 3.1) and MQTT 5 wire protocol for brook: the packet types the broker
//! works with, a `tokio_util` codec that frames and strictly validates incoming packets,
//! and the encoders for outgoing ones (`encode_publish` is the fan-out hot path: no
//! intermediate buffer). The codec reads 3.1.1 until a CONNECT of level 5 switches it to
//! MQTT 5 (see [`codec`]).
//!
//! For 3.1.1, `mqtt-protocol` 0.12 is used where it is correct; the parts it gets wrong
//! (framing, CONNECT, PUBLISH, UNSUBSCRIBE, several validity checks) are written by hand
//! here. MQTT 5 is written by hand throughout (`decode5`, `encode5`).
//! Server-to-client packet types (CONNACK, SUBACK, UNSUBACK, PINGRESP) decode like any
//! other packet; the session is expected to reject them when a client sends them, and
//! likewise what a client may not send in a packet it may (subscription identifiers in
//! a PUBLISH, a topic alias over its maximum, AUTH without enhanced authentication).

pub(crate) mod codec;
mod decode;
mod decode5;
mod encode;
mod encode5;
mod error;
mod packet;
pub(crate) mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v5;

pub(crate) use codec::MqttCodec;
pub(crate) use encode::{encode_publish, publish_size};
pub(crate) use error::DecodeError;
pub(crate) use packet::{
    reason, Ack, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, Packet,
    Publish, PublishProperties, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Will,
};
