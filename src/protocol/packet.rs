//! The decoded form of every MQTT control packet (3.1, 3.1.1 and 5), as
//! exchanged between the codec and the broker.
//!
//! One set of types serves every version: what only MQTT 5 has (properties,
//! reason codes on acknowledgements, subscription options) takes its "none"
//! or default value for 3.1/3.1.1, and the 3.1.1 encoder leaves it out.
//! Properties a PUBLISH carries through the broker unchanged are behind an
//! `Arc`, so a message fanned out to many subscribers shares them.

use std::sync::Arc;

use bytes::Bytes;

/// User properties, name and value, in the order they came (MQTT 5 §3.1.2.11.8).
pub(crate) type UserProperties = Vec<(String, String)>;

/// MQTT 5 reason codes (§2.4), the whole table of the spec (some are codes
/// brook never sends); 3.1.1 return codes are the small numbers of CONNACK
/// and SUBACK.
#[allow(dead_code)]
pub(crate) mod reason {
    pub(crate) const SUCCESS: u8 = 0x00;
    pub(crate) const GRANTED_QOS_1: u8 = 0x01;
    pub(crate) const GRANTED_QOS_2: u8 = 0x02;
    pub(crate) const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub(crate) const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub(crate) const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub(crate) const CONTINUE_AUTHENTICATION: u8 = 0x18;
    pub(crate) const UNSPECIFIED_ERROR: u8 = 0x80;
    pub(crate) const MALFORMED_PACKET: u8 = 0x81;
    pub(crate) const PROTOCOL_ERROR: u8 = 0x82;
    pub(crate) const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    pub(crate) const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub(crate) const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    pub(crate) const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub(crate) const NOT_AUTHORIZED: u8 = 0x87;
    pub(crate) const SERVER_UNAVAILABLE: u8 = 0x88;
    pub(crate) const SERVER_BUSY: u8 = 0x89;
    pub(crate) const BANNED: u8 = 0x8A;
    pub(crate) const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub(crate) const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub(crate) const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub(crate) const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub(crate) const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub(crate) const TOPIC_NAME_INVALID: u8 = 0x90;
    pub(crate) const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    pub(crate) const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    pub(crate) const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub(crate) const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub(crate) const PACKET_TOO_LARGE: u8 = 0x95;
    pub(crate) const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub(crate) const QUOTA_EXCEEDED: u8 = 0x97;
    pub(crate) const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub(crate) const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub(crate) const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub(crate) const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub(crate) const USE_ANOTHER_SERVER: u8 = 0x9C;
    pub(crate) const SERVER_MOVED: u8 = 0x9D;
    pub(crate) const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub(crate) const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    pub(crate) const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
    pub(crate) const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
    pub(crate) const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}

/// One MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

/// A CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Connect {
    /// 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1 ("MQTT"), 5 = MQTT 5 ("MQTT").
    pub(crate) level: u8,
    /// May be empty: the session decides whether to assign one or refuse.
    pub(crate) client_id: String,
    /// Clean session (3.1.1) or clean start (5).
    pub(crate) clean_session: bool,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
    /// Binary-safe: MQTT passwords are arbitrary bytes.
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) will: Option<Will>,
    /// MQTT 5's CONNECT properties (all none for 3.1.1).
    pub(crate) properties: ConnectProperties,
}

/// MQTT 5 CONNECT properties (§3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConnectProperties {
    /// Seconds; none = 0 (the session ends with the connection).
    pub(crate) session_expiry: Option<u32>,
    pub(crate) receive_maximum: Option<u16>,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) topic_alias_maximum: Option<u16>,
    pub(crate) request_response_information: Option<bool>,
    pub(crate) request_problem_information: Option<bool>,
    pub(crate) user: UserProperties,
    pub(crate) authentication_method: Option<String>,
    pub(crate) authentication_data: Option<Bytes>,
}

/// The last-will message carried in a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Will {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    /// MQTT 5 will delay interval, seconds (0 for 3.1.1).
    pub(crate) delay: u32,
    /// MQTT 5 will properties, forwarded like a publish's.
    pub(crate) properties: Option<Arc<PublishProperties>>,
}

/// A CONNACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConnAck {
    pub(crate) session_present: bool,
    /// The 3.1.1 return code (0-5) or the MQTT 5 reason code.
    pub(crate) code: u8,
    pub(crate) properties: ConnAckProperties,
}

/// MQTT 5 CONNACK properties (§3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ConnAckProperties {
    pub(crate) session_expiry: Option<u32>,
    pub(crate) receive_maximum: Option<u16>,
    pub(crate) maximum_qos: Option<u8>,
    pub(crate) retain_available: Option<bool>,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) assigned_client_id: Option<String>,
    pub(crate) topic_alias_maximum: Option<u16>,
    pub(crate) reason_string: Option<String>,
    pub(crate) user: UserProperties,
    pub(crate) wildcard_subscription_available: Option<bool>,
    pub(crate) subscription_identifiers_available: Option<bool>,
    pub(crate) shared_subscription_available: Option<bool>,
    pub(crate) server_keep_alive: Option<u16>,
    pub(crate) response_information: Option<String>,
    pub(crate) server_reference: Option<String>,
    pub(crate) authentication_method: Option<String>,
    pub(crate) authentication_data: Option<Bytes>,
}

/// A PUBLISH packet. Cheap to clone (topic, payload and properties are
/// reference-counted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Publish {
    /// Empty when an MQTT 5 PUBLISH names its topic by alias only (the
    /// session resolves it before the packet goes further).
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) dup: bool,
    /// 0 for QoS 0.
    pub(crate) pkid: u16,
    /// MQTT 5: the topic alias the packet carries (incoming), or the one to
    /// send (outgoing).
    pub(crate) topic_alias: Option<u16>,
    /// MQTT 5: the subscription identifiers of the receiver's matching
    /// subscriptions (outgoing only; a client may not send them).
    pub(crate) subscription_ids: Vec<u32>,
    /// MQTT 5: the properties that travel with the message unchanged (None when
    /// there are none; the decoder never gives an empty one).
    pub(crate) properties: Option<Arc<PublishProperties>>,
    /// MQTT 5, outgoing: the Message Expiry Interval to send instead of
    /// `properties.message_expiry`, i.e. what is left of it ([MQTT-3.3.2-6]); set per
    /// delivery without touching the shared properties. The decoder leaves it None.
    pub(crate) message_expiry_left: Option<u32>,
}

/// MQTT 5 PUBLISH (and will) properties the broker forwards unchanged
/// (§3.3.2.3); the message expiry is forwarded as the time that is left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PublishProperties {
    /// 0 or 1 (the decoder refuses other values); 1 = the payload is UTF-8, which
    /// the codec does not check (the receiver may, answering 0x99, §3.3.2.3.2).
    pub(crate) payload_format: Option<u8>,
    /// Seconds.
    pub(crate) message_expiry: Option<u32>,
    pub(crate) content_type: Option<String>,
    pub(crate) response_topic: Option<String>,
    pub(crate) correlation_data: Option<Bytes>,
    pub(crate) user: UserProperties,
}

impl PublishProperties {
    /// Whether there is nothing to send (the common case of a 3.1.1 message).
    pub(crate) fn is_empty(&self) -> bool {
        self == &PublishProperties::default()
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ack {
    pub(crate) pkid: u16,
    /// MQTT 5 reason code (0 = success; 3.1.1 has none).
    pub(crate) reason: u8,
    pub(crate) reason_string: Option<String>,
    pub(crate) user: UserProperties,
}

impl Ack {
    /// A successful acknowledgement of `pkid`.
    pub(crate) fn ok(pkid: u16) -> Ack {
        Ack {
            pkid,
            ..Ack::default()
        }
    }

    /// An acknowledgement with a reason code (MQTT 5).
    pub(crate) fn with_reason(pkid: u16, reason: u8) -> Ack {
        Ack {
            pkid,
            reason,
            ..Ack::default()
        }
    }
}

/// The options of one SUBSCRIBE filter (§3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SubscriptionOptions {
    /// The maximum QoS, 0-2.
    pub(crate) qos: u8,
    /// MQTT 5: don't send the client its own publishes.
    pub(crate) no_local: bool,
    /// MQTT 5: keep the retain flag as published.
    pub(crate) retain_as_published: bool,
    /// MQTT 5: 0 = send retained messages at subscribe, 1 = only when the
    /// subscription is new, 2 = never.
    pub(crate) retain_handling: u8,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subscribe {
    pub(crate) pkid: u16,
    pub(crate) filters: Vec<(String, SubscriptionOptions)>,
    /// MQTT 5: the subscription identifier (1 to 268,435,455).
    pub(crate) id: Option<u32>,
    pub(crate) user: UserProperties,
}

/// A SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SubAck {
    pub(crate) pkid: u16,
    /// Per filter: the granted QoS (0-2) or a failure (0x80, or an MQTT 5
    /// reason code).
    pub(crate) codes: Vec<u8>,
    pub(crate) reason_string: Option<String>,
    pub(crate) user: UserProperties,
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Unsubscribe {
    pub(crate) pkid: u16,
    pub(crate) filters: Vec<String>,
    pub(crate) user: UserProperties,
}

/// An UNSUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UnsubAck {
    pub(crate) pkid: u16,
    /// MQTT 5: per filter, 0 or a reason code (empty for 3.1.1).
    pub(crate) codes: Vec<u8>,
    pub(crate) reason_string: Option<String>,
    pub(crate) user: UserProperties,
}

/// A DISCONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Disconnect {
    /// MQTT 5 reason code (0 = normal disconnection).
    pub(crate) reason: u8,
    /// MQTT 5: a new session expiry interval (from the client).
    pub(crate) session_expiry: Option<u32>,
    pub(crate) reason_string: Option<String>,
    pub(crate) server_reference: Option<String>,
    pub(crate) user: UserProperties,
}

/// An AUTH packet (MQTT 5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Auth {
    pub(crate) reason: u8,
    pub(crate) authentication_method: Option<String>,
    pub(crate) authentication_data: Option<Bytes>,
    pub(crate) reason_string: Option<String>,
    pub(crate) user: UserProperties,
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
            ..Publish::default()
        }
    }
}
