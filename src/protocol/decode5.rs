//! Decoding of MQTT 5 packets (OASIS MQTT 5.0, 2019): one complete, size-checked frame
//! into a `Packet`, every packet type in both directions (the broker reads clients, tests
//! and tools read the broker).
//!
//! The classes of error follow the spec's definitions (§1.2, §4.13): what cannot be parsed
//! (a length past the end, a Variable Byte Integer too long or not in its shortest form,
//! ill-formed UTF-8 or U+0000 in a string, reserved bits, a property identifier that is
//! unknown or not valid for the packet, §2.2.2.2) is a Malformed Packet; what parses but
//! is not allowed (a duplicate property, a zero Receive Maximum, Topic Alias or
//! Subscription Identifier, a 0/1 byte with another value, a reason code the packet type
//! does not define, a topic name with wildcards...) is a Protocol Error, with the more
//! specific reason code where the spec names one.
//!
//! Properties are read in one flat loop into [`Props`]; nothing recurses, and every
//! allocation is bounded by bytes that have arrived (the frame is whole and size-checked).

use std::sync::Arc;

use bytes::{Buf, Bytes};

use super::decode::Reader;
use super::error::{protocol_with, DecodeError};
use super::packet::{
    reason, Ack, Auth, ConnAck, ConnAckProperties, Connect, ConnectProperties, Disconnect, Packet,
    Publish, PublishProperties, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
    UserProperties, Will,
};
use super::validate::{check_topic_filter, split_shared, utf8_str};

/// The packets (and the will) a property may appear in, as bits (§2.2.2.2, Table 2-4).
mod block {
    pub(super) const CONNECT: u16 = 1 << 0;
    pub(super) const WILL: u16 = 1 << 1;
    pub(super) const CONNACK: u16 = 1 << 2;
    pub(super) const PUBLISH: u16 = 1 << 3;
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    pub(super) const ACK: u16 = 1 << 4;
    pub(super) const SUBSCRIBE: u16 = 1 << 5;
    pub(super) const SUBACK: u16 = 1 << 6;
    pub(super) const UNSUBSCRIBE: u16 = 1 << 7;
    pub(super) const UNSUBACK: u16 = 1 << 8;
    pub(super) const DISCONNECT: u16 = 1 << 9;
    pub(super) const AUTH: u16 = 1 << 10;
    /// Every set of properties (User Property may appear in all of them).
    pub(super) const ALL: u16 = (1 << 11) - 1;
}

/// Property identifiers (§2.2.2.2).
pub(super) mod id {
    pub(in crate::protocol) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(in crate::protocol) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(in crate::protocol) const CONTENT_TYPE: u8 = 0x03;
    pub(in crate::protocol) const RESPONSE_TOPIC: u8 = 0x08;
    pub(in crate::protocol) const CORRELATION_DATA: u8 = 0x09;
    pub(in crate::protocol) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub(in crate::protocol) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub(in crate::protocol) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub(in crate::protocol) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(in crate::protocol) const AUTHENTICATION_METHOD: u8 = 0x15;
    pub(in crate::protocol) const AUTHENTICATION_DATA: u8 = 0x16;
    pub(in crate::protocol) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub(in crate::protocol) const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub(in crate::protocol) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub(in crate::protocol) const RESPONSE_INFORMATION: u8 = 0x1A;
    pub(in crate::protocol) const SERVER_REFERENCE: u8 = 0x1C;
    pub(in crate::protocol) const REASON_STRING: u8 = 0x1F;
    pub(in crate::protocol) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(in crate::protocol) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(in crate::protocol) const TOPIC_ALIAS: u8 = 0x23;
    pub(in crate::protocol) const MAXIMUM_QOS: u8 = 0x24;
    pub(in crate::protocol) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(in crate::protocol) const USER_PROPERTY: u8 = 0x26;
    pub(in crate::protocol) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(in crate::protocol) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub(in crate::protocol) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub(in crate::protocol) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// The data type of a property's value (§1.5, §2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    TwoBytes,
    FourBytes,
    Varint,
    Utf8,
    Binary,
    Pair,
}

/// One row of the property table: name, value type, where it may appear.
struct Spec {
    name: &'static str,
    kind: Kind,
    blocks: u16,
}

/// The property table (§2.2.2.2, Table 2-4); None for an identifier MQTT 5 does not define.
fn spec(property: u32) -> Option<Spec> {
    use block::*;
    use Kind::*;
    let (name, kind, blocks) = match u8::try_from(property).ok()? {
        id::PAYLOAD_FORMAT_INDICATOR => ("payload format indicator", Byte, PUBLISH | WILL),
        id::MESSAGE_EXPIRY_INTERVAL => ("message expiry interval", FourBytes, PUBLISH | WILL),
        id::CONTENT_TYPE => ("content type", Utf8, PUBLISH | WILL),
        id::RESPONSE_TOPIC => ("response topic", Utf8, PUBLISH | WILL),
        id::CORRELATION_DATA => ("correlation data", Binary, PUBLISH | WILL),
        id::SUBSCRIPTION_IDENTIFIER => ("subscription identifier", Varint, PUBLISH | SUBSCRIBE),
        id::SESSION_EXPIRY_INTERVAL => (
            "session expiry interval",
            FourBytes,
            CONNECT | CONNACK | DISCONNECT,
        ),
        id::ASSIGNED_CLIENT_IDENTIFIER => ("assigned client identifier", Utf8, CONNACK),
        id::SERVER_KEEP_ALIVE => ("server keep alive", TwoBytes, CONNACK),
        id::AUTHENTICATION_METHOD => ("authentication method", Utf8, CONNECT | CONNACK | AUTH),
        id::AUTHENTICATION_DATA => ("authentication data", Binary, CONNECT | CONNACK | AUTH),
        id::REQUEST_PROBLEM_INFORMATION => ("request problem information", Byte, CONNECT),
        id::WILL_DELAY_INTERVAL => ("will delay interval", FourBytes, WILL),
        id::REQUEST_RESPONSE_INFORMATION => ("request response information", Byte, CONNECT),
        id::RESPONSE_INFORMATION => ("response information", Utf8, CONNACK),
        id::SERVER_REFERENCE => ("server reference", Utf8, CONNACK | DISCONNECT),
        id::REASON_STRING => (
            "reason string",
            Utf8,
            CONNACK | ACK | SUBACK | UNSUBACK | DISCONNECT | AUTH,
        ),
        id::RECEIVE_MAXIMUM => ("receive maximum", TwoBytes, CONNECT | CONNACK),
        id::TOPIC_ALIAS_MAXIMUM => ("topic alias maximum", TwoBytes, CONNECT | CONNACK),
        id::TOPIC_ALIAS => ("topic alias", TwoBytes, PUBLISH),
        id::MAXIMUM_QOS => ("maximum QoS", Byte, CONNACK),
        id::RETAIN_AVAILABLE => ("retain available", Byte, CONNACK),
        id::USER_PROPERTY => ("user property", Pair, ALL),
        id::MAXIMUM_PACKET_SIZE => ("maximum packet size", FourBytes, CONNECT | CONNACK),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => ("wildcard subscription available", Byte, CONNACK),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
            ("subscription identifiers available", Byte, CONNACK)
        }
        id::SHARED_SUBSCRIPTION_AVAILABLE => ("shared subscription available", Byte, CONNACK),
        _ => return None,
    };
    Some(Spec { name, kind, blocks })
}

/// Every property any packet can carry, as read from one property block; the
/// table lets through only those the block may have, so each packet takes its own.
#[derive(Debug, Default)]
struct Props {
    payload_format: Option<u8>,
    message_expiry: Option<u32>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Bytes>,
    subscription_ids: Vec<u32>,
    session_expiry: Option<u32>,
    assigned_client_id: Option<String>,
    server_keep_alive: Option<u16>,
    authentication_method: Option<String>,
    authentication_data: Option<Bytes>,
    request_problem_information: Option<bool>,
    will_delay: Option<u32>,
    request_response_information: Option<bool>,
    response_information: Option<String>,
    server_reference: Option<String>,
    reason_string: Option<String>,
    receive_maximum: Option<u16>,
    topic_alias_maximum: Option<u16>,
    topic_alias: Option<u16>,
    maximum_qos: Option<u8>,
    retain_available: Option<bool>,
    user: UserProperties,
    maximum_packet_size: Option<u32>,
    wildcard_subscription_available: Option<bool>,
    subscription_identifiers_available: Option<bool>,
    shared_subscription_available: Option<bool>,
}

/// The reason codes each packet type may carry (§2.4, Table 2-6, and each packet's
/// section). A byte that is not one of them parses, but is not allowed: a Protocol
/// Error by the definitions of §1.2.
mod codes {
    pub(super) const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    /// PUBACK and PUBREC (§3.4.2.1, §3.5.2.1).
    pub(super) const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    /// PUBREL and PUBCOMP (§3.6.2.1, §3.7.2.1).
    pub(super) const PUBREL: &[u8] = &[0x00, 0x92];
    pub(super) const SUBACK: &[u8] = &[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    pub(super) const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    pub(super) const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    pub(super) const AUTH: &[u8] = &[0x00, 0x18, 0x19];
}

/// Reads a reason code and checks it is one of `allowed`.
fn reason_code(r: &mut Reader, allowed: &[u8]) -> Result<u8, DecodeError> {
    let code = r.u8("reason code")?;
    check_reason(r, allowed, code)?;
    Ok(code)
}

/// A Protocol Error unless `code` is one of `allowed`.
fn check_reason(r: &Reader, allowed: &[u8], code: u8) -> Result<(), DecodeError> {
    if allowed.contains(&code) {
        return Ok(());
    }
    Err(r.protocol(format_args!(
        "reason code {code:#04x} is not one this packet may carry"
    )))
}

/// A byte property that may only be 0 or 1 ("It is a Protocol Error ... to have a value
/// other than 0 or 1", §3.1.2.11.6, §3.1.2.11.7, §3.2.2.3.5, §3.2.2.3.11-13; the payload
/// format indicator of §3.3.2.3.2 and §3.1.3.2.3 has only these two values too).
fn flag(r: &Reader, name: &str, value: u8) -> Result<bool, DecodeError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(r.protocol(format_args!("{name} is {v}, not 0 or 1"))),
    }
}

/// A property that may not be 0 (§3.1.2.11.3, §3.1.2.11.4, §3.2.2.3.3, §3.2.2.3.6).
fn nonzero<T: Default + PartialEq>(r: &Reader, name: &str, value: T) -> Result<T, DecodeError> {
    if value == T::default() {
        return Err(r.protocol(format_args!("{name} is 0")));
    }
    Ok(value)
}

/// Reads a Property Length and the properties it covers (§2.2.2) for the packet (or the
/// will) `within`, one of the bits of `block`; `where_` names it in messages.
fn properties(r: &mut Reader, within: u16, where_: &str) -> Result<Props, DecodeError> {
    let len = r.varint("property length")? as usize;
    if len > r.buf.len() {
        return Err(r.err("property length runs past the end of the packet"));
    }
    let mut p = Reader {
        packet: r.packet,
        buf: r.buf.split_to(len),
    };
    let mut props = Props::default();
    // Bit n: property n was seen (every identifier is below 64).
    let mut seen: u64 = 0;
    while !p.buf.is_empty() {
        let property = p.varint("property identifier")?;
        // §2.2.2.2: an identifier not valid for the packet type is a Malformed Packet.
        let Some(Spec { name, kind, blocks }) = spec(property) else {
            return Err(p.err(format_args!("unknown property identifier {property:#04x}")));
        };
        if blocks & within == 0 {
            return Err(p.err(format_args!(
                "{name} (property {property:#04x}) is not allowed in {where_}"
            )));
        }
        let bit = 1u64 << property;
        let repeatable = property == u32::from(id::USER_PROPERTY)
            || (property == u32::from(id::SUBSCRIPTION_IDENTIFIER) && within == block::PUBLISH);
        if seen & bit != 0 && !repeatable {
            // "It is a Protocol Error to include the ... more than once" (each property's section).
            return Err(p.protocol(format_args!("{name} appears more than once in {where_}")));
        }
        seen |= bit;
        // The identifier is one of the table's (`spec` returned Some), so it fits a byte.
        let property = property as u8;
        match kind {
            Kind::Byte => {
                let v = p.u8(name)?;
                match property {
                    id::PAYLOAD_FORMAT_INDICATOR => {
                        flag(&p, name, v)?;
                        props.payload_format = Some(v);
                    }
                    id::REQUEST_PROBLEM_INFORMATION => {
                        props.request_problem_information = Some(flag(&p, name, v)?)
                    }
                    id::REQUEST_RESPONSE_INFORMATION => {
                        props.request_response_information = Some(flag(&p, name, v)?)
                    }
                    id::MAXIMUM_QOS => {
                        // §3.2.2.3.4: 0 or 1 (2 is what its absence means).
                        flag(&p, name, v)?;
                        props.maximum_qos = Some(v);
                    }
                    id::RETAIN_AVAILABLE => props.retain_available = Some(flag(&p, name, v)?),
                    id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                        props.wildcard_subscription_available = Some(flag(&p, name, v)?)
                    }
                    id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                        props.subscription_identifiers_available = Some(flag(&p, name, v)?)
                    }
                    _ => props.shared_subscription_available = Some(flag(&p, name, v)?),
                }
            }
            Kind::TwoBytes => {
                let v = p.u16(name)?;
                match property {
                    id::SERVER_KEEP_ALIVE => props.server_keep_alive = Some(v),
                    id::RECEIVE_MAXIMUM => props.receive_maximum = Some(nonzero(&p, name, v)?),
                    id::TOPIC_ALIAS_MAXIMUM => props.topic_alias_maximum = Some(v),
                    _ => {
                        // §3.3.4: a Topic Alias of 0 is a Protocol Error, answered with 0x94.
                        if v == 0 {
                            let why = format_args!("topic alias is 0");
                            return Err(protocol_with(reason::TOPIC_ALIAS_INVALID, p.packet, why));
                        }
                        props.topic_alias = Some(v);
                    }
                }
            }
            Kind::FourBytes => {
                let v = p.u32(name)?;
                match property {
                    id::MESSAGE_EXPIRY_INTERVAL => props.message_expiry = Some(v),
                    id::SESSION_EXPIRY_INTERVAL => props.session_expiry = Some(v),
                    id::WILL_DELAY_INTERVAL => props.will_delay = Some(v),
                    _ => props.maximum_packet_size = Some(nonzero(&p, name, v)?),
                }
            }
            Kind::Varint => {
                // The only one is the subscription identifier (§3.3.2.3.8, §3.8.2.1.2).
                let v = p.varint(name)?;
                props.subscription_ids.push(nonzero(&p, name, v)?);
            }
            Kind::Utf8 => {
                let v = p.string(name)?;
                let slot = match property {
                    id::CONTENT_TYPE => &mut props.content_type,
                    id::RESPONSE_TOPIC => {
                        // §3.3.2.3.5: a Topic Name, so non-empty (§4.7.3) and without
                        // wildcards [MQTT-3.3.2-14].
                        if v.is_empty() || v.contains(['+', '#']) {
                            return Err(p.protocol(format_args!(
                                "response topic {v:?} is not a valid topic name"
                            )));
                        }
                        &mut props.response_topic
                    }
                    id::ASSIGNED_CLIENT_IDENTIFIER => &mut props.assigned_client_id,
                    id::AUTHENTICATION_METHOD => &mut props.authentication_method,
                    id::RESPONSE_INFORMATION => &mut props.response_information,
                    id::SERVER_REFERENCE => &mut props.server_reference,
                    _ => &mut props.reason_string,
                };
                *slot = Some(v);
            }
            Kind::Binary => {
                let v = p.binary(name)?;
                match property {
                    id::CORRELATION_DATA => props.correlation_data = Some(v),
                    _ => props.authentication_data = Some(v),
                }
            }
            Kind::Pair => {
                let key = p.string("user property name")?;
                let value = p.string("user property value")?;
                props.user.push((key, value));
            }
        }
    }
    Ok(props)
}

impl Props {
    /// The properties a PUBLISH (or will) carries with the message; None when there are none.
    fn publish(&mut self) -> Option<Arc<PublishProperties>> {
        let p = PublishProperties {
            payload_format: self.payload_format,
            message_expiry: self.message_expiry,
            content_type: self.content_type.take(),
            response_topic: self.response_topic.take(),
            correlation_data: self.correlation_data.take(),
            user: std::mem::take(&mut self.user),
        };
        (!p.is_empty()).then(|| Arc::new(p))
    }
}

/// Decodes one MQTT 5 packet other than CONNECT (whose level is read first, in
/// `decode::connect`) from its body; `byte` is the first header byte, already checked.
pub(super) fn decode(byte: u8, r: Reader) -> Result<Packet, DecodeError> {
    match byte >> 4 {
        2 => connack(r),
        3 => publish(byte, r),
        4 => ack(r, codes::PUBACK).map(Packet::PubAck),
        5 => ack(r, codes::PUBACK).map(Packet::PubRec),
        6 => ack(r, codes::PUBREL).map(Packet::PubRel),
        7 => ack(r, codes::PUBREL).map(Packet::PubComp),
        8 => subscribe(r),
        9 => suback(r),
        10 => unsubscribe(r),
        11 => unsuback(r),
        12 => r.finish().map(|()| Packet::PingReq),
        13 => r.finish().map(|()| Packet::PingResp),
        14 => disconnect(r),
        15 => auth(r),
        _ => Err(r.err("internal error: a CONNECT or reserved type reached the MQTT 5 decoder")),
    }
}

/// The rest of an MQTT 5 CONNECT, after the protocol name "MQTT" and level 5 (§3.1).
pub(super) fn connect(mut r: Reader) -> Result<Packet, DecodeError> {
    let flags = r.u8("connect flags")?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    // §3.1.2.3: the reserved flag set is a Malformed Packet; so is will QoS 3 (§3.1.2.6).
    // Will QoS or retain without the will flag ([MQTT-3.1.2-11], [MQTT-3.1.2-13]) make
    // the flags byte unreadable too, and are answered the same way.
    if flags & 0x01 != 0 {
        return Err(r.err("reserved connect flag is set"));
    }
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(r.err("will QoS or will retain set without the will flag"));
    }
    if will_qos > 2 {
        return Err(r.err("will QoS is 3"));
    }
    let keep_alive = r.u16("keep alive")?;
    let mut props = properties(&mut r, block::CONNECT, "CONNECT")?;
    if props.authentication_data.is_some() && props.authentication_method.is_none() {
        // §3.1.2.11.10
        return Err(r.protocol("authentication data without an authentication method"));
    }
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let mut wp = properties(&mut r, block::WILL, "the will properties")?;
        let topic = r.string("will topic")?;
        topic_name(&r, "will topic", &topic)?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            delay: wp.will_delay.unwrap_or(0),
            properties: wp.publish(),
        })
    } else {
        None
    };
    // MQTT 5 allows a password without a user name (§3.1.2.9).
    let username = if flags & 0x80 != 0 {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(r.binary("password")?.to_vec())
    } else {
        None
    };
    r.finish()?;
    Ok(Packet::Connect(Box::new(Connect {
        level: 5,
        client_id,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        username,
        password,
        will,
        properties: ConnectProperties {
            session_expiry: props.session_expiry,
            receive_maximum: props.receive_maximum,
            maximum_packet_size: props.maximum_packet_size,
            topic_alias_maximum: props.topic_alias_maximum,
            request_response_information: props.request_response_information,
            request_problem_information: props.request_problem_information,
            user: std::mem::take(&mut props.user),
            authentication_method: props.authentication_method,
            authentication_data: props.authentication_data,
        },
    })))
}

/// A non-empty topic name must not contain wildcards ([MQTT-3.3.2-2], §4.7.1). The spec
/// names no error class; the name parses as a string, so by the definitions of §1.2 it
/// is a Protocol Error, and §4.13.2 says to use the more specific reason code where one
/// exists: 0x90, Topic Name invalid. (U+0000 was already refused as malformed, §1.5.4.)
fn topic_name(r: &Reader, what: &str, topic: &str) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(r.protocol(format_args!("{what} is empty")));
    }
    if topic.contains(['+', '#']) {
        let why = format_args!("{what} {topic:?} contains a wildcard");
        return Err(protocol_with(reason::TOPIC_NAME_INVALID, r.packet, why));
    }
    Ok(())
}

/// §3.2.
fn connack(mut r: Reader) -> Result<Packet, DecodeError> {
    let flags = r.u8("connect acknowledge flags")?;
    if flags & 0xFE != 0 {
        // [MQTT-3.2.2-1]
        return Err(r.err("reserved connect acknowledge flags are set"));
    }
    let code = reason_code(&mut r, codes::CONNACK)?;
    if flags & 0x01 != 0 && code != 0 {
        // [MQTT-3.2.2-6]: session present only with reason code 0.
        return Err(r.protocol("session present with a failure reason code"));
    }
    let mut p = properties(&mut r, block::CONNACK, "CONNACK")?;
    r.finish()?;
    Ok(Packet::ConnAck(ConnAck {
        session_present: flags & 0x01 != 0,
        code,
        properties: ConnAckProperties {
            session_expiry: p.session_expiry,
            receive_maximum: p.receive_maximum,
            maximum_qos: p.maximum_qos,
            retain_available: p.retain_available,
            maximum_packet_size: p.maximum_packet_size,
            assigned_client_id: p.assigned_client_id,
            topic_alias_maximum: p.topic_alias_maximum,
            reason_string: p.reason_string,
            user: std::mem::take(&mut p.user),
            wildcard_subscription_available: p.wildcard_subscription_available,
            subscription_identifiers_available: p.subscription_identifiers_available,
            shared_subscription_available: p.shared_subscription_available,
            server_keep_alive: p.server_keep_alive,
            response_information: p.response_information,
            server_reference: p.server_reference,
            authentication_method: p.authentication_method,
            authentication_data: p.authentication_data,
        },
    }))
}

/// §3.3. A PUBLISH that names its topic by alias only decodes with an empty topic and
/// `topic_alias: Some(n)`: the alias mappings are the connection's, and the session
/// resolves them (and checks the alias against its Topic Alias Maximum, §3.3.2.3.4). A
/// client may not send subscription identifiers ([MQTT-3.3.4-6]); they are decoded (a
/// server sends several) and the session refuses them from a client.
fn publish(byte: u8, mut r: Reader) -> Result<Packet, DecodeError> {
    let qos = (byte >> 1) & 0b11;
    // Checked in place and copied once, into the Arc the message keeps.
    let len = usize::from(r.u16("topic name")?);
    if r.buf.len() < len {
        return Err(r.err("topic name runs past the end of the packet"));
    }
    let topic: Arc<str> = match utf8_str(&r.buf[..len]) {
        Ok(t) => Arc::from(t),
        Err(why) => return Err(r.err(format_args!("topic name {why}"))),
    };
    r.buf.advance(len);
    let pkid = match qos {
        0 => 0,
        // [MQTT-2.2.1-3]: a packet that parses but breaks a rule is a Protocol Error (§1.2).
        _ => match r.u16("packet identifier")? {
            0 => return Err(r.protocol("packet identifier is 0")),
            pkid => pkid,
        },
    };
    let (topic_alias, subscription_ids, properties) = if r.buf.first() == Some(&0) {
        // The common case: a property length of 0, nothing to walk.
        r.buf.advance(1);
        (None, Vec::new(), None)
    } else {
        let mut p = properties(&mut r, block::PUBLISH, "PUBLISH")?;
        let ids = std::mem::take(&mut p.subscription_ids);
        (p.topic_alias, ids, p.publish())
    };
    if topic.is_empty() {
        if topic_alias.is_none() {
            // §3.3.2.1
            return Err(r.protocol("topic name is empty and there is no topic alias"));
        }
    } else {
        topic_name(&r, "topic name", &topic)?;
    }
    Ok(Packet::Publish(Publish {
        topic,
        payload: std::mem::take(&mut r.buf),
        qos,
        retain: byte & 0x01 != 0,
        dup: byte & 0x08 != 0,
        pkid,
        topic_alias,
        subscription_ids,
        properties,
        ..Publish::default()
    }))
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-3.7): remaining length 2 means reason 0 and
/// no properties, 3 a reason without properties.
fn ack(mut r: Reader, allowed: &[u8]) -> Result<Ack, DecodeError> {
    let pkid = r.u16("packet identifier")?;
    let mut ack = Ack::ok(pkid);
    if r.buf.is_empty() {
        return Ok(ack);
    }
    ack.reason = reason_code(&mut r, allowed)?;
    if !r.buf.is_empty() {
        let name = r.packet;
        let p = properties(&mut r, block::ACK, name)?;
        ack.reason_string = p.reason_string;
        ack.user = p.user;
    }
    r.finish()?;
    Ok(ack)
}

/// A non-zero packet identifier ([MQTT-2.2.1-3]); 0 is a Protocol Error (§1.2).
fn nonzero_pkid(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16("packet identifier")? {
        0 => Err(r.protocol("packet identifier is 0")),
        pkid => Ok(pkid),
    }
}

/// A topic filter's syntax (§4.7.1) and, for a shared subscription, its share name
/// (§4.8.2). The filter parses as a string, so a bad one is a Protocol Error (§1.2) with
/// the specific code 0x8F, Topic Filter invalid (§4.13.2).
fn topic_filter(r: &Reader, filter: &str) -> Result<(), DecodeError> {
    let bad = |why: &str| {
        let why = format_args!("topic filter {filter:?} {why}");
        protocol_with(reason::TOPIC_FILTER_INVALID, r.packet, why)
    };
    // U+0000 was refused as malformed with the string (§1.5.4).
    check_topic_filter(filter).map_err(bad)?;
    split_shared(filter).map_err(bad)?;
    Ok(())
}

/// §3.8.
fn subscribe(mut r: Reader) -> Result<Packet, DecodeError> {
    let pkid = nonzero_pkid(&mut r)?;
    let p = properties(&mut r, block::SUBSCRIBE, "SUBSCRIBE")?;
    let mut filters = Vec::new();
    while !r.buf.is_empty() {
        let filter = r.string("topic filter")?;
        let options = r.u8("subscription options")?;
        // §3.8.3.1
        if options & 0xC0 != 0 {
            return Err(r.err("reserved bits of the subscription options are set"));
        }
        let qos = options & 0b11;
        if qos == 3 {
            return Err(r.protocol("maximum QoS 3 in the subscription options"));
        }
        let retain_handling = (options >> 4) & 0b11;
        if retain_handling == 3 {
            return Err(r.protocol("retain handling 3 in the subscription options"));
        }
        // The filter's syntax is the session's to judge: a SUBSCRIBE
        // answers each filter on its own (SUBACK 0x8F, §3.9.3), so one bad
        // filter does not close the connection.
        let no_local = options & 0x04 != 0;
        if no_local && filter.starts_with("$share/") {
            // [MQTT-3.8.3-4]
            return Err(r.protocol(format_args!(
                "no local set on the shared subscription {filter:?}"
            )));
        }
        filters.push((
            filter,
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published: options & 0x08 != 0,
                retain_handling,
            },
        ));
    }
    if filters.is_empty() {
        // §3.8.3
        return Err(r.protocol("no topic filters"));
    }
    Ok(Packet::Subscribe(Subscribe {
        pkid,
        filters,
        id: p.subscription_ids.first().copied(),
        user: p.user,
    }))
}

/// The reason codes of a SUBACK or UNSUBACK: one or more (§2.4).
fn reason_codes(r: &mut Reader, allowed: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if r.buf.is_empty() {
        return Err(r.protocol("no reason codes"));
    }
    for &code in r.buf.iter() {
        check_reason(r, allowed, code)?;
    }
    Ok(std::mem::take(&mut r.buf).to_vec())
}

/// §3.9.
fn suback(mut r: Reader) -> Result<Packet, DecodeError> {
    let pkid = r.u16("packet identifier")?;
    let p = properties(&mut r, block::SUBACK, "SUBACK")?;
    Ok(Packet::SubAck(SubAck {
        pkid,
        codes: reason_codes(&mut r, codes::SUBACK)?,
        reason_string: p.reason_string,
        user: p.user,
    }))
}

/// §3.10.
fn unsubscribe(mut r: Reader) -> Result<Packet, DecodeError> {
    let pkid = nonzero_pkid(&mut r)?;
    let p = properties(&mut r, block::UNSUBSCRIBE, "UNSUBSCRIBE")?;
    let mut filters = Vec::new();
    while !r.buf.is_empty() {
        let filter = r.string("topic filter")?;
        topic_filter(&r, &filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        // §3.10.3
        return Err(r.protocol("no topic filters"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe {
        pkid,
        filters,
        user: p.user,
    }))
}

/// §3.11.
fn unsuback(mut r: Reader) -> Result<Packet, DecodeError> {
    let pkid = r.u16("packet identifier")?;
    let p = properties(&mut r, block::UNSUBACK, "UNSUBACK")?;
    Ok(Packet::UnsubAck(UnsubAck {
        pkid,
        codes: reason_codes(&mut r, codes::UNSUBACK)?,
        reason_string: p.reason_string,
        user: p.user,
    }))
}

/// §3.14: remaining length 0 is a normal disconnection; 1 a reason without properties.
fn disconnect(mut r: Reader) -> Result<Packet, DecodeError> {
    let mut d = Disconnect::default();
    if r.buf.is_empty() {
        return Ok(Packet::Disconnect(d));
    }
    d.reason = reason_code(&mut r, codes::DISCONNECT)?;
    if !r.buf.is_empty() {
        let p = properties(&mut r, block::DISCONNECT, "DISCONNECT")?;
        d.session_expiry = p.session_expiry;
        d.reason_string = p.reason_string;
        d.server_reference = p.server_reference;
        d.user = p.user;
    }
    r.finish()?;
    Ok(Packet::Disconnect(d))
}

/// §3.15: remaining length 0 is success without properties; otherwise the reason code
/// and the properties follow, and the authentication method is required (§3.15.2.2.2).
/// (Unlike DISCONNECT's, AUTH's property length has no default: length 1 is malformed.)
fn auth(mut r: Reader) -> Result<Packet, DecodeError> {
    if r.buf.is_empty() {
        return Ok(Packet::Auth(Auth::default()));
    }
    let reason = reason_code(&mut r, codes::AUTH)?;
    let p = properties(&mut r, block::AUTH, "AUTH")?;
    r.finish()?;
    if p.authentication_method.is_none() {
        return Err(r.protocol("no authentication method"));
    }
    Ok(Packet::Auth(Auth {
        reason,
        authentication_method: p.authentication_method,
        authentication_data: p.authentication_data,
        reason_string: p.reason_string,
        user: p.user,
    }))
}
