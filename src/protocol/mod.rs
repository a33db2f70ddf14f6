//! MQTT 3.1.1 (and 3.1) wire protocol for brook: the packet types the broker works with,
//! a `tokio_util` codec that frames and strictly validates incoming packets, and the
//! encoders for outgoing ones (`encode_publish` is the fan-out hot path: no intermediate buffer).
//!
//! `mqtt-protocol` 0.12 is used where it is correct; the parts it gets wrong (framing,
//! CONNECT, PUBLISH, UNSUBSCRIBE, several validity checks) are written by hand here.
//! Server-to-client packet types (CONNACK, SUBACK, UNSUBACK, PINGRESP) decode like any
//! other packet; the session is expected to reject them when a client sends them.

pub(crate) mod codec;
mod decode;
mod encode;
mod error;
mod packet;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

pub(crate) use codec::MqttCodec;
pub(crate) use encode::encode_publish;
pub(crate) use error::DecodeError;
#[allow(unused_imports)] // the MQTT 5 types are used once the MQTT 5 codec lands
pub(crate) use packet::{
    reason, Ack, Auth, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, Packet,
    Publish, PublishProperties, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
    UserProperties, Will,
};
