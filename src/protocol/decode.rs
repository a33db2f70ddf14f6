//! Decoding of one complete, size-checked frame into a `Packet`, with the validity checks
//! of MQTT 3.1.1. CONNECT, PUBLISH and UNSUBSCRIBE are parsed by hand (reasons at each
//! function); the other packet types go through `mqtt-protocol` plus extra checks.
//! MQTT 5 packets, and a CONNECT of level 5, go to [`super::decode5`].

use std::fmt::Display;
use std::io::{Cursor, ErrorKind};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use mqtt::control::VariableHeaderError;
use mqtt::packet::suback::SubackPacketError;
use mqtt::packet::subscribe::SubscribePacketError;
use mqtt::packet::{PacketError, SubscribePacket, VariablePacket, VariablePacketError};
use mqtt::Decodable;

use super::decode5;
use super::error::{malformed, packet_name, protocol, DecodeError};
use super::packet::{
    Ack, ConnAck, Connect, Disconnect, Packet, Publish, SubAck, Subscribe, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};
use super::validate::{check_topic_filter, check_topic_name, utf8_string};

/// Decodes `frame` (fixed header of `header_len` bytes included, first byte `byte`) as a
/// packet of protocol level `version` (a CONNECT as the level it carries).
pub(crate) fn decode_frame(
    byte: u8,
    frame: Bytes,
    header_len: usize,
    version: u8,
) -> Result<Packet, DecodeError> {
    let kind = byte >> 4;
    let body = Reader {
        packet: packet_name(kind),
        buf: frame.slice(header_len..),
    };
    if version == 5 && kind != 1 {
        return decode5::decode(byte, body);
    }
    match kind {
        1 => connect(body),
        3 => publish(byte, body),
        10 => unsubscribe(body),
        _ => with_mqtt_protocol(packet_name(kind), &frame),
    }
}

/// Reads fields from a packet body; every shortfall is a `Malformed` naming the field.
pub(super) struct Reader {
    /// The packet type's name, for error messages.
    pub(super) packet: &'static str,
    /// What is left of the body.
    pub(super) buf: Bytes,
}

impl Reader {
    /// A Malformed Packet error naming this packet.
    pub(super) fn err(&self, why: impl Display) -> DecodeError {
        malformed(self.packet, why)
    }

    /// An MQTT 5 Protocol Error (0x82) naming this packet.
    pub(super) fn protocol(&self, why: impl Display) -> DecodeError {
        protocol(self.packet, why)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u8())
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u16())
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u32())
    }

    /// An MQTT 5 Variable Byte Integer (§1.5.5): at most four bytes, the
    /// last without the continuation bit, in as few bytes as the value needs
    /// ([MQTT-1.5.5-1]: a last byte of 0 after the first is not).
    pub(super) fn varint(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let Some(&b) = self.buf.get(i) else {
                return Err(self.err(format_args!("{what} missing")));
            };
            value |= u32::from(b & 0x7F) << (7 * i);
            if b == 0 && i > 0 {
                return Err(self.err(format_args!(
                    "{what} is a variable byte integer longer than it needs to be"
                )));
            }
            if b & 0x80 == 0 {
                self.buf.advance(i + 1);
                return Ok(value);
            }
        }
        Err(self.err(format_args!(
            "{what} is a variable byte integer longer than 4 bytes"
        )))
    }

    /// A length-prefixed byte string.
    pub(super) fn binary(&mut self, what: &str) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16(what)?);
        if self.buf.len() < len {
            return Err(self.err(format_args!("{what} runs past the end of the packet")));
        }
        Ok(self.buf.split_to(len))
    }

    /// A length-prefixed UTF-8 string without U+0000.
    pub(super) fn string(&mut self, what: &str) -> Result<String, DecodeError> {
        let raw = self.binary(what)?;
        utf8_string(&raw).map_err(|why| self.err(format_args!("{what} {why}")))
    }

    fn nonzero_pkid(&mut self) -> Result<u16, DecodeError> {
        match self.u16("packet identifier")? {
            0 => Err(self.err("packet identifier is 0")),
            pkid => Ok(pkid),
        }
    }

    /// Nothing may be left.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(self.err(format_args!("{n} unexpected trailing bytes"))),
        }
    }
}

/// By hand: mqtt-protocol holds the password as a String (rejects binary passwords) and
/// its string reader silently accepts a length prefix running past the packet.
fn connect(mut r: Reader) -> Result<Packet, DecodeError> {
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    let expected = match &name[..] {
        b"MQTT" if level == 5 => {
            return decode5::connect(r).map_err(|e| DecodeError::Connect5(Box::new(e)))
        }
        b"MQTT" => 4,
        b"MQIsdp" => 3,
        _ => return Err(r.err("unknown protocol name")),
    };
    if level != expected {
        return Err(DecodeError::UnacceptableProtocol { level });
    }
    let flags = r.u8("connect flags")?;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if flags & 0x01 != 0 {
        return Err(r.err("reserved connect flag is set"));
    }
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(r.err("will QoS or will retain set without the will flag"));
    }
    if will_qos > 2 {
        return Err(r.err("will QoS is 3"));
    }
    if level == 4 && password_flag && !username_flag {
        return Err(r.err("password flag set without the user name flag"));
    }
    let keep_alive = r.u16("keep alive")?;
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let topic = r.string("will topic")?;
        check_topic_name(&topic).map_err(|why| r.err(format_args!("will topic {why}")))?;
        let payload = r.binary("will message")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            ..Will::default()
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary("password")?.to_vec())
    } else {
        None
    };
    r.finish()?;
    // MQTT 3.1 §3.1: a client identifier longer than 23 characters gets CONNACK 2.
    if level == 3 && client_id.len() > 23 {
        let why = format!(
            "MQTT 3.1 client identifier of {} bytes (max 23)",
            client_id.len()
        );
        return Err(DecodeError::IdentifierRejected(why));
    }
    Ok(Packet::Connect(Box::new(Connect {
        level,
        client_id,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        username,
        password,
        will,
        ..Connect::default()
    })))
}

/// By hand: mqtt-protocol reads the wrong DUP bit, accepts packet id 0, U+0000 and a topic
/// running past the packet, and copies the payload (here it is a zero-copy slice).
fn publish(byte: u8, mut r: Reader) -> Result<Packet, DecodeError> {
    let qos = (byte >> 1) & 0b11;
    let raw = r.binary("topic name")?;
    let topic = std::str::from_utf8(&raw).map_err(|_| r.err("topic name is not valid UTF-8"))?;
    check_topic_name(topic).map_err(|why| r.err(format_args!("topic name {why}")))?;
    let pkid = match qos {
        0 => 0,
        _ => r.nonzero_pkid()?,
    };
    Ok(Packet::Publish(Publish {
        topic: Arc::from(topic),
        payload: r.buf,
        qos,
        retain: byte & 0x01 != 0,
        dup: byte & 0x08 != 0,
        pkid,
        ..Publish::default()
    }))
}

/// By hand: mqtt-protocol silently accepts a last filter whose length runs past the packet.
fn unsubscribe(mut r: Reader) -> Result<Packet, DecodeError> {
    let pkid = r.nonzero_pkid()?;
    let mut filters = Vec::new();
    while !r.buf.is_empty() {
        let filter = r.string("topic filter")?;
        check_topic_filter(&filter).map_err(|why| r.err(format_args!("topic filter {why}")))?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(r.err("no topic filters"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe {
        pkid,
        filters,
        ..Unsubscribe::default()
    }))
}

/// The remaining packet types: mqtt-protocol decodes them correctly when given exactly
/// one frame; we check that it consumed all of it.
fn with_mqtt_protocol(name: &'static str, frame: &[u8]) -> Result<Packet, DecodeError> {
    let mut cursor = Cursor::new(frame);
    let decoded = VariablePacket::decode(&mut cursor).map_err(|e| malformed(name, describe(&e)))?;
    let consumed = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    if consumed != frame.len() {
        let trailing = frame.len().saturating_sub(consumed);
        return Err(malformed(
            name,
            format_args!("{trailing} unexpected trailing bytes"),
        ));
    }
    Ok(match decoded {
        VariablePacket::ConnackPacket(p) => Packet::ConnAck(ConnAck {
            session_present: p.connack_flags().session_present,
            code: p.connect_return_code().to_u8(),
            ..ConnAck::default()
        }),
        VariablePacket::PubackPacket(p) => Packet::PubAck(Ack::ok(p.packet_identifier())),
        VariablePacket::PubrecPacket(p) => Packet::PubRec(Ack::ok(p.packet_identifier())),
        VariablePacket::PubrelPacket(p) => Packet::PubRel(Ack::ok(p.packet_identifier())),
        VariablePacket::PubcompPacket(p) => Packet::PubComp(Ack::ok(p.packet_identifier())),
        VariablePacket::SubscribePacket(p) => subscribe(&p)?,
        VariablePacket::SubackPacket(p) => Packet::SubAck(SubAck {
            pkid: p.packet_identifier(),
            codes: p.subscribes().iter().map(|&code| code as u8).collect(),
            ..SubAck::default()
        }),
        VariablePacket::UnsubackPacket(p) => Packet::UnsubAck(UnsubAck {
            pkid: p.packet_identifier(),
            ..UnsubAck::default()
        }),
        VariablePacket::PingreqPacket(_) => Packet::PingReq,
        VariablePacket::PingrespPacket(_) => Packet::PingResp,
        VariablePacket::DisconnectPacket(_) => Packet::Disconnect(Disconnect::default()),
        VariablePacket::ConnectPacket(_)
        | VariablePacket::PublishPacket(_)
        | VariablePacket::UnsubscribePacket(_) => {
            return Err(malformed(
                name,
                "internal error: decoded by the wrong parser",
            ))
        }
    })
}

/// mqtt-protocol checks filter syntax and QoS 0..=2; it lets through an empty filter
/// list, packet id 0 and U+0000, checked here.
fn subscribe(p: &SubscribePacket) -> Result<Packet, DecodeError> {
    let pkid = p.packet_identifier();
    if pkid == 0 {
        return Err(malformed("SUBSCRIBE", "packet identifier is 0"));
    }
    if p.subscribes().is_empty() {
        return Err(malformed("SUBSCRIBE", "no topic filters"));
    }
    let mut filters = Vec::with_capacity(p.subscribes().len());
    for (filter, qos) in p.subscribes() {
        let filter: &str = filter;
        check_topic_filter(filter)
            .map_err(|why| malformed("SUBSCRIBE", format_args!("topic filter {why}")))?;
        let options = SubscriptionOptions {
            qos: *qos as u8,
            ..SubscriptionOptions::default()
        };
        filters.push((filter.to_owned(), options));
    }
    Ok(Packet::Subscribe(Subscribe {
        pkid,
        filters,
        ..Subscribe::default()
    }))
}

/// A readable reason for an mqtt-protocol error (its I/O errors mean truncation or bad UTF-8).
fn describe(e: &VariablePacketError) -> String {
    use PacketError as P;
    use VariableHeaderError as V;
    use VariablePacketError as E;
    let io = match e {
        E::IoError(io)
        | E::SubscribePacketError(
            P::IoError(io)
            | P::VariableHeaderError(V::IoError(io))
            | P::PayloadError(SubscribePacketError::IoError(io)),
        )
        | E::SubackPacketError(
            P::IoError(io)
            | P::VariableHeaderError(V::IoError(io))
            | P::PayloadError(SubackPacketError::IoError(io)),
        ) => io,
        _ => return e.to_string(),
    };
    match io.kind() {
        ErrorKind::UnexpectedEof => "a field runs past the end of the packet".to_owned(),
        ErrorKind::InvalidData => "a string is not valid UTF-8".to_owned(),
        _ => e.to_string(),
    }
}
