//! The MQTT a bridge speaks on its link, as a client: MQTT 3.1.1 and 5, only
//! the packets a client sends (CONNECT, PUBLISH, the acknowledgements,
//! SUBSCRIBE, PINGREQ, DISCONNECT) and receives (CONNACK, PUBLISH, the
//! acknowledgements, SUBACK, UNSUBACK, PINGRESP, DISCONNECT).
//!
//! The remote is not trusted: a frame larger than `max_packet_size` is
//! refused before it is buffered, every length is checked against what is
//! left of the frame, properties are read in one flat loop, and anything a
//! server must not send a client (CONNECT, SUBSCRIBE, AUTH, a topic alias
//! we never allowed) is an error that closes the link. Nothing here panics
//! on input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::config::Protocol;
use crate::protocol::validate::check_topic_name;

/// Why the remote's bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the remote sent a packet of {size} bytes, over the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet from the remote: {0}")]
    Malformed(String),
}

fn malformed(why: impl Into<String>) -> WireError {
    WireError::Malformed(why.into())
}

/// CONNACK, with what an MQTT 5 server tells of its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ConnAck {
    pub session_present: bool,
    /// 0 = accepted; 3.1.1 return codes 1..5, MQTT 5 reason codes 0x80+.
    pub code: u8,
    /// MQTT 5: QoS 1/2 publishes it takes unacknowledged at once.
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    /// MQTT 5: the keep-alive the server wants instead of ours.
    pub server_keep_alive: Option<u16>,
    pub reason: Option<String>,
}

/// A PUBLISH from the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InPublish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// 0 for QoS 0.
    pub pkid: u16,
}

/// What a server sends a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Incoming {
    ConnAck(ConnAck),
    Publish(InPublish),
    /// `code` is the MQTT 5 reason code; 0 on 3.1.1.
    PubAck {
        pkid: u16,
        code: u8,
    },
    PubRec {
        pkid: u16,
        code: u8,
    },
    PubRel {
        pkid: u16,
    },
    PubComp {
        pkid: u16,
        code: u8,
    },
    /// One return (3.1.1) or reason (5) code per filter; 0x80 and up refuse.
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    UnsubAck,
    PingResp,
    /// MQTT 5 only: the server closes the link and says why.
    Disconnect {
        code: u8,
        reason: Option<String>,
    },
}

/// Frames and decodes what the remote sends.
pub(super) struct Codec {
    protocol: Protocol,
    max_packet_size: usize,
}

impl Codec {
    pub(super) fn new(protocol: Protocol, max_packet_size: usize) -> Codec {
        Codec {
            protocol,
            max_packet_size,
        }
    }
}

impl Decoder for Codec {
    type Item = Incoming;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        let Some(&first) = src.first() else {
            return Ok(None);
        };
        let mut remaining = 0usize;
        let mut header_len = None;
        for i in 0..4 {
            let Some(&b) = src.get(1 + i) else {
                return Ok(None);
            };
            remaining |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                header_len = Some(2 + i);
                break;
            }
        }
        let Some(header_len) = header_len else {
            return Err(malformed("remaining length longer than 4 bytes"));
        };
        let size = header_len + remaining;
        if size > self.max_packet_size {
            return Err(WireError::TooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        if src.len() < size {
            src.reserve((size - src.len()).min(64 * 1024));
            return Ok(None);
        }
        let mut frame = src.split_to(size).freeze();
        frame.advance(header_len);
        decode_body(self.protocol, first, frame).map(Some)
    }
}

/// Reads the fields of one packet body; every shortfall is an error.
struct Reader {
    buf: Bytes,
    packet: &'static str,
}

impl Reader {
    fn err(&self, why: impl std::fmt::Display) -> WireError {
        malformed(format!("{}: {why}", self.packet))
    }
    fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        if self.buf.is_empty() {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self, what: &str) -> Result<u16, WireError> {
        if self.buf.len() < 2 {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        if self.buf.len() < 4 {
            return Err(self.err(format_args!("{what} missing")));
        }
        Ok(self.buf.get_u32())
    }
    fn varint(&mut self, what: &str) -> Result<usize, WireError> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8(what)?;
            value |= usize::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.err(format_args!("{what} longer than 4 bytes")))
    }
    fn binary(&mut self, what: &str) -> Result<Bytes, WireError> {
        let len = usize::from(self.u16(what)?);
        if self.buf.len() < len {
            return Err(self.err(format_args!("{what} runs past the end")));
        }
        Ok(self.buf.split_to(len))
    }
    fn string(&mut self, what: &str) -> Result<String, WireError> {
        let raw = self.binary(what)?;
        match std::str::from_utf8(&raw) {
            Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
            _ => Err(self.err(format_args!("{what} is not valid UTF-8 without NUL"))),
        }
    }
    fn pkid(&mut self) -> Result<u16, WireError> {
        match self.u16("packet identifier")? {
            0 => Err(self.err("packet identifier 0")),
            id => Ok(id),
        }
    }
    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
    fn end(&self) -> Result<(), WireError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(self.err(format_args!("{n} trailing bytes"))),
        }
    }
}

/// The MQTT 5 properties a bridge acts on; the others are checked and skipped.
#[derive(Default)]
struct Props {
    receive_maximum: Option<u16>,
    maximum_qos: Option<u8>,
    retain_available: Option<bool>,
    maximum_packet_size: Option<u32>,
    server_keep_alive: Option<u16>,
    reason: Option<String>,
    topic_alias: bool,
}

/// Reads a property list (its length first): one flat loop, bounded by the
/// length, which is bounded by the frame.
fn properties(r: &mut Reader) -> Result<Props, WireError> {
    let len = r.varint("property length")?;
    if len > r.buf.len() {
        return Err(r.err("property length runs past the end"));
    }
    let mut p = Reader {
        buf: r.buf.split_to(len),
        packet: r.packet,
    };
    let mut out = Props::default();
    while !p.buf.is_empty() {
        let id = p.varint("property identifier")?;
        match id {
            0x01 | 0x17 | 0x19 | 0x28 | 0x29 | 0x2A => {
                p.u8("property")?;
            }
            0x24 => out.maximum_qos = Some(p.u8("maximum QoS")?),
            0x25 => out.retain_available = Some(p.u8("retain available")? != 0),
            0x02 | 0x11 | 0x18 => {
                p.u32("property")?;
            }
            0x27 => out.maximum_packet_size = Some(p.u32("maximum packet size")?),
            0x13 => out.server_keep_alive = Some(p.u16("server keep alive")?),
            0x21 => out.receive_maximum = Some(p.u16("receive maximum")?),
            0x22 => {
                p.u16("topic alias maximum")?;
            }
            0x23 => {
                p.u16("topic alias")?;
                out.topic_alias = true;
            }
            0x0B => {
                p.varint("subscription identifier")?;
            }
            0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C => {
                p.string("property")?;
            }
            0x1F => out.reason = Some(p.string("reason string")?),
            0x09 | 0x16 => {
                p.binary("property")?;
            }
            0x26 => {
                p.string("user property name")?;
                p.string("user property value")?;
            }
            other => return Err(p.err(format_args!("unknown property {other:#04x}"))),
        }
    }
    Ok(out)
}

fn decode_body(protocol: Protocol, first: u8, body: Bytes) -> Result<Incoming, WireError> {
    let v5 = protocol == Protocol::V5;
    let (kind, flags) = (first >> 4, first & 0x0F);
    let name = match kind {
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        9 => "SUBACK",
        11 => "UNSUBACK",
        13 => "PINGRESP",
        14 if v5 => "DISCONNECT",
        _ => {
            return Err(malformed(format!(
                "packet type {kind}, which a server does not send a client"
            )))
        }
    };
    let expected_flags = if kind == 6 { 0b0010 } else { 0 };
    if kind != 3 && flags != expected_flags {
        return Err(malformed(format!(
            "{name}: fixed header flags {flags:#06b}"
        )));
    }
    let mut r = Reader {
        buf: body,
        packet: name,
    };
    let packet = match kind {
        2 => {
            let ack_flags = r.u8("acknowledge flags")?;
            if ack_flags & 0xFE != 0 {
                return Err(r.err("reserved acknowledge flags set"));
            }
            let code = r.u8("return code")?;
            let props = if v5 && !r.buf.is_empty() {
                properties(&mut r)?
            } else {
                Props::default()
            };
            Incoming::ConnAck(ConnAck {
                session_present: ack_flags & 1 == 1,
                code,
                receive_maximum: props.receive_maximum,
                maximum_qos: props.maximum_qos,
                retain_available: props.retain_available,
                maximum_packet_size: props.maximum_packet_size,
                server_keep_alive: props.server_keep_alive,
                reason: props.reason,
            })
        }
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(r.err("QoS 3"));
            }
            let dup = flags & 0b1000 != 0;
            if qos == 0 && dup {
                return Err(r.err("DUP set at QoS 0"));
            }
            let topic = r.string("topic name")?;
            let pkid = if qos > 0 { r.pkid()? } else { 0 };
            if v5 {
                let props = properties(&mut r)?;
                if props.topic_alias {
                    return Err(r.err("a topic alias, which this client allows none of"));
                }
            }
            check_topic_name(&topic).map_err(|why| r.err(format_args!("topic name {why}")))?;
            Incoming::Publish(InPublish {
                topic,
                payload: r.rest(),
                qos,
                retain: flags & 1 == 1,
                dup,
                pkid,
            })
        }
        4 | 5 | 7 => {
            let pkid = r.pkid()?;
            let code = if v5 && !r.buf.is_empty() {
                let code = r.u8("reason code")?;
                if !r.buf.is_empty() {
                    properties(&mut r)?;
                }
                code
            } else {
                0
            };
            match kind {
                4 => Incoming::PubAck { pkid, code },
                5 => Incoming::PubRec { pkid, code },
                _ => Incoming::PubComp { pkid, code },
            }
        }
        6 => {
            let pkid = r.pkid()?;
            if v5 && !r.buf.is_empty() {
                r.u8("reason code")?;
                if !r.buf.is_empty() {
                    properties(&mut r)?;
                }
            }
            Incoming::PubRel { pkid }
        }
        9 => {
            let pkid = r.pkid()?;
            if v5 {
                properties(&mut r)?;
            }
            let codes = r.rest().to_vec();
            if codes.is_empty() {
                return Err(r.err("no return codes"));
            }
            Incoming::SubAck { pkid, codes }
        }
        11 => {
            r.pkid()?;
            r.rest();
            Incoming::UnsubAck
        }
        13 => Incoming::PingResp,
        _ => {
            let (code, reason) = if r.buf.is_empty() {
                (0, None)
            } else {
                let code = r.u8("reason code")?;
                let reason = if r.buf.is_empty() {
                    None
                } else {
                    properties(&mut r)?.reason
                };
                (code, reason)
            };
            Incoming::Disconnect { code, reason }
        }
    };
    r.end()?;
    Ok(packet)
}

// ---------------------------------------------------------------------------
// Encoding what the bridge sends.

/// What CONNECT carries.
pub(super) struct ConnectOptions<'a> {
    pub client_id: &'a str,
    pub keep_alive: u16,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// MQTT 5: how many QoS 1/2 publishes the remote may have
    /// unacknowledged with us (3.1.1 has no such field).
    pub receive_maximum: u16,
    /// MQTT 5: the largest packet we accept.
    pub maximum_packet_size: u32,
}

fn put_varint(dst: &mut BytesMut, mut n: usize) {
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            dst.put_u8(byte);
            return;
        }
        dst.put_u8(byte | 0x80);
    }
}

fn put_bytes(dst: &mut BytesMut, b: &[u8]) {
    dst.put_u16(b.len() as u16);
    dst.put_slice(b);
}

/// Writes a fixed header and `body`.
fn frame(dst: &mut BytesMut, first: u8, body: &[u8]) {
    dst.reserve(5 + body.len());
    dst.put_u8(first);
    put_varint(dst, body.len());
    dst.put_slice(body);
}

/// CONNECT for a persistent session (clean session / clean start = 0; on
/// MQTT 5 a session that never expires). Fails when a field is too long.
pub(super) fn connect(
    dst: &mut BytesMut,
    protocol: Protocol,
    o: &ConnectOptions<'_>,
) -> Result<(), String> {
    let fields = [
        Some(o.client_id.as_bytes()),
        o.username.map(str::as_bytes),
        o.password,
    ];
    if fields
        .iter()
        .flatten()
        .any(|f| f.len() > usize::from(u16::MAX))
    {
        return Err("client id, username or password longer than 65535 bytes".into());
    }
    let mut body = BytesMut::with_capacity(64);
    put_bytes(&mut body, b"MQTT");
    body.put_u8(if protocol == Protocol::V5 { 5 } else { 4 });
    let mut flags = 0u8; // clean session / clean start = 0
    if o.username.is_some() {
        flags |= 0x80;
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    body.put_u8(flags);
    body.put_u16(o.keep_alive);
    if protocol == Protocol::V5 {
        let mut props = BytesMut::new();
        props.put_u8(0x11); // session expiry interval: never
        props.put_u32(u32::MAX);
        props.put_u8(0x21);
        props.put_u16(o.receive_maximum.max(1));
        props.put_u8(0x27);
        props.put_u32(o.maximum_packet_size);
        put_varint(&mut body, props.len());
        body.put_slice(&props);
    }
    put_bytes(&mut body, o.client_id.as_bytes());
    if let Some(u) = o.username {
        put_bytes(&mut body, u.as_bytes());
    }
    if let Some(p) = o.password {
        if protocol == Protocol::V311 && o.username.is_none() {
            // 3.1.1 allows a password only with a user name.
            return Err("a password needs a username on MQTT 3.1.1".into());
        }
        put_bytes(&mut body, p);
    }
    frame(dst, 0x10, &body);
    Ok(())
}

/// The size of a PUBLISH as [`publish`] writes it.
pub(super) fn publish_size(protocol: Protocol, topic: &str, payload_len: usize, qos: u8) -> usize {
    let body = 2
        + topic.len()
        + if qos > 0 { 2 } else { 0 }
        + usize::from(protocol == Protocol::V5)
        + payload_len;
    let varint = match body {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + body
}

/// A PUBLISH (no properties on MQTT 5). The caller has checked the topic
/// length (at most 65535 bytes) and the size.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish(
    dst: &mut BytesMut,
    protocol: Protocol,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pkid: u16,
) {
    let first = 0x30 | u8::from(dup && qos > 0) << 3 | (qos & 0b11) << 1 | u8::from(retain);
    let len = 2
        + topic.len()
        + if qos > 0 { 2 } else { 0 }
        + usize::from(protocol == Protocol::V5)
        + payload.len();
    dst.reserve(5 + len);
    dst.put_u8(first);
    put_varint(dst, len);
    put_bytes(dst, topic.as_bytes());
    if qos > 0 {
        dst.put_u16(pkid);
    }
    if protocol == Protocol::V5 {
        dst.put_u8(0);
    }
    dst.put_slice(payload);
}

/// The acknowledgements a client sends.
#[allow(clippy::enum_variant_names)] // the packets' own names
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ack {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

/// An acknowledgement with success (both versions accept the 2-byte form).
pub(super) fn ack(dst: &mut BytesMut, kind: Ack, pkid: u16) {
    let first = match kind {
        Ack::PubAck => 0x40,
        Ack::PubRec => 0x50,
        Ack::PubRel => 0x62,
        Ack::PubComp => 0x70,
    };
    frame(dst, first, &pkid.to_be_bytes());
}

/// SUBSCRIBE for `filters`; on MQTT 5 with No Local (the remote does not
/// send back what this client published) and Retain As Published.
pub(super) fn subscribe(
    dst: &mut BytesMut,
    protocol: Protocol,
    pkid: u16,
    filters: &[(String, u8)],
) {
    let mut body = BytesMut::new();
    body.put_u16(pkid);
    if protocol == Protocol::V5 {
        body.put_u8(0); // no properties
    }
    for (filter, qos) in filters {
        put_bytes(&mut body, filter.as_bytes());
        let mut options = qos & 0b11;
        if protocol == Protocol::V5 {
            options |= 0b0000_1100; // No Local, Retain As Published
        }
        body.put_u8(options);
    }
    frame(dst, 0x82, &body);
}

pub(super) fn pingreq(dst: &mut BytesMut) {
    frame(dst, 0xC0, &[]);
}

/// DISCONNECT: normal disconnection (the session stays on the remote).
pub(super) fn disconnect(dst: &mut BytesMut) {
    frame(dst, 0xE0, &[]);
}

/// A CONNACK refusal in words.
pub(super) fn connack_text(protocol: Protocol, code: u8) -> String {
    let text = match (protocol, code) {
        (Protocol::V311, 1) => "unacceptable protocol version",
        (Protocol::V311, 2) => "client identifier rejected",
        (Protocol::V311, 3) => "server unavailable",
        (Protocol::V311, 4) => "bad user name or password",
        (Protocol::V311, 5) => "not authorized",
        (Protocol::V5, 0x84) => "unsupported protocol version",
        (Protocol::V5, 0x85) => "client identifier not valid",
        (Protocol::V5, 0x86) => "bad user name or password",
        (Protocol::V5, 0x87) => "not authorized",
        (Protocol::V5, 0x88) => "server unavailable",
        (Protocol::V5, 0x89) => "server busy",
        (Protocol::V5, 0x8A) => "banned",
        (Protocol::V5, 0x8C) => "bad authentication method",
        (Protocol::V5, 0x95) => "packet too large",
        (Protocol::V5, 0x97) => "quota exceeded",
        (Protocol::V5, 0x9C) => "use another server",
        (Protocol::V5, 0x9D) => "server moved",
        _ => "refused",
    };
    format!("{text} (CONNACK {code:#04x})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{self, Disconnect, MqttCodec, Packet, Subscribe, SubscriptionOptions};

    fn qos(qos: u8) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    fn decode(protocol: Protocol, bytes: &[u8]) -> Result<Option<Incoming>, WireError> {
        Codec::new(protocol, 1 << 20).decode(&mut BytesMut::from(bytes))
    }

    fn one(protocol: Protocol, bytes: &[u8]) -> Incoming {
        decode(protocol, bytes).expect("valid").expect("whole")
    }

    #[test]
    fn connect_publish_and_subscribe_311_are_read_by_brooks_own_server_codec() {
        let mut buf = BytesMut::new();
        connect(
            &mut buf,
            Protocol::V311,
            &ConnectOptions {
                client_id: "site-a",
                keep_alive: 30,
                username: Some("u"),
                password: Some(b"p\xff"),
                receive_maximum: 10,
                maximum_packet_size: 1000,
            },
        )
        .expect("encodable");
        publish(&mut buf, Protocol::V311, "a/b", b"hello", 1, true, true, 7);
        subscribe(
            &mut buf,
            Protocol::V311,
            3,
            &[("x/#".into(), 2), ("y".into(), 0)],
        );
        ack(&mut buf, Ack::PubRel, 9);
        pingreq(&mut buf);
        disconnect(&mut buf);
        let mut server = MqttCodec::new(1 << 20);
        let mut got = Vec::new();
        while let Some(p) = server.decode(&mut buf).expect("server decodes") {
            got.push(p);
        }
        let Packet::Connect(c) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (c.level, c.client_id.as_str(), c.clean_session, c.keep_alive),
            (4, "site-a", false, 30)
        );
        assert_eq!(c.password.as_deref(), Some(&b"p\xff"[..]));
        let Packet::Publish(p) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (&*p.topic, &p.payload[..], p.qos, p.retain, p.dup, p.pkid),
            ("a/b", &b"hello"[..], 1, true, true, 7)
        );
        assert_eq!(
            got[2],
            Packet::Subscribe(Subscribe {
                pkid: 3,
                filters: vec![("x/#".into(), qos(2)), ("y".into(), qos(0))],
                ..Subscribe::default()
            })
        );
        assert_eq!(got[3], Packet::PubRel(protocol::Ack::ok(9)));
        assert_eq!(got[4], Packet::PingReq);
        assert_eq!(got[5], Packet::Disconnect(Disconnect::default()));
    }

    #[test]
    fn publish_size_is_what_publish_writes() {
        for protocol in [Protocol::V311, Protocol::V5] {
            for (len, qos) in [(0, 0), (100, 1), (200, 2), (20_000, 1), (3_000_000, 2)] {
                let payload = vec![7u8; len];
                let mut buf = BytesMut::new();
                publish(&mut buf, protocol, "t/x", &payload, qos, false, false, 1);
                assert_eq!(buf.len(), publish_size(protocol, "t/x", len, qos));
            }
        }
    }

    #[test]
    fn v5_connack_with_limits() {
        // flags, code, properties: receive maximum 20, maximum QoS 1,
        // retain available 0, maximum packet size 4096, reason "hi".
        let body = [
            0x01, 0x00, 17, 0x21, 0, 20, 0x24, 1, 0x25, 0, 0x27, 0, 0, 0x10, 0, 0x1F, 0, 2, b'h',
        ];
        let mut bytes = vec![0x20, body.len() as u8 + 1];
        bytes.extend_from_slice(&body);
        bytes.push(b'i');
        let Incoming::ConnAck(a) = one(Protocol::V5, &bytes) else {
            panic!()
        };
        assert!(a.session_present);
        assert_eq!(a.receive_maximum, Some(20));
        assert_eq!(a.maximum_qos, Some(1));
        assert_eq!(a.retain_available, Some(false));
        assert_eq!(a.maximum_packet_size, Some(4096));
        assert_eq!(a.reason.as_deref(), Some("hi"));
    }

    #[test]
    fn publishes_and_acks_both_versions() {
        let p = one(
            Protocol::V311,
            &[0x33, 8, 0, 3, b'a', b'/', b'b', 0, 5, b'x'],
        );
        assert_eq!(
            p,
            Incoming::Publish(InPublish {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"x"),
                qos: 1,
                retain: true,
                dup: false,
                pkid: 5
            })
        );
        // MQTT 5: a user property and a payload format indicator, then the payload.
        let p = one(
            Protocol::V5,
            &[
                0x34, 16, 0, 1, b't', 0, 9, 9, 0x01, 1, 0x26, 0, 1, b'k', 0, 1, b'v', b'z',
            ],
        );
        let Incoming::Publish(p) = p else { panic!() };
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.pkid),
            ("t", &b"z"[..], 2, 9)
        );
        assert_eq!(
            one(Protocol::V5, &[0x40, 3, 0, 1, 0x87]),
            Incoming::PubAck {
                pkid: 1,
                code: 0x87
            }
        );
        assert_eq!(
            one(Protocol::V311, &[0x50, 2, 0, 2]),
            Incoming::PubRec { pkid: 2, code: 0 }
        );
        assert_eq!(
            one(Protocol::V311, &[0x62, 2, 0, 2]),
            Incoming::PubRel { pkid: 2 }
        );
        assert_eq!(
            one(Protocol::V5, &[0x70, 4, 0, 3, 0x92, 0]),
            Incoming::PubComp {
                pkid: 3,
                code: 0x92
            }
        );
        assert_eq!(
            one(Protocol::V5, &[0x90, 5, 0, 1, 0, 1, 0x80]),
            Incoming::SubAck {
                pkid: 1,
                codes: vec![1, 0x80]
            }
        );
        assert_eq!(
            one(Protocol::V311, &[0x90, 3, 0, 1, 2]),
            Incoming::SubAck {
                pkid: 1,
                codes: vec![2]
            }
        );
        assert_eq!(one(Protocol::V311, &[0xD0, 0]), Incoming::PingResp);
        assert_eq!(
            one(Protocol::V5, &[0xE0, 6, 0x8E, 4, 0x1F, 0, 1, b'x']),
            Incoming::Disconnect {
                code: 0x8E,
                reason: Some("x".into())
            }
        );
    }

    #[test]
    fn what_a_server_must_not_send_is_refused() {
        let bad: &[(Protocol, &[u8])] = &[
            (Protocol::V311, &[0x10, 0]),                            // CONNECT
            (Protocol::V311, &[0x82, 0]),                            // SUBSCRIBE
            (Protocol::V311, &[0xE0, 0]),                            // DISCONNECT on 3.1.1
            (Protocol::V5, &[0xF0, 0]),                              // AUTH
            (Protocol::V311, &[0x36, 5, 0, 1, b't', 0, 1]),          // QoS 3
            (Protocol::V311, &[0x38, 3, 0, 1, b't']),                // DUP at QoS 0
            (Protocol::V311, &[0x32, 5, 0, 1, b'+', 0, 1]),          // wildcard topic
            (Protocol::V311, &[0x32, 5, 0, 1, b't', 0, 0]),          // packet id 0
            (Protocol::V311, &[0x32, 5, 0, 9, b't', 0, 1]),          // string past the end
            (Protocol::V5, &[0x30, 7, 0, 1, b't', 3, 0x23, 0, 1]),   // topic alias
            (Protocol::V5, &[0x30, 5, 0, 1, b't', 1, 0x7F]),         // unknown property
            (Protocol::V5, &[0x30, 5, 0, 1, b't', 9, 0x01]),         // property length past the end
            (Protocol::V311, &[0x60, 2, 0, 1]),                      // PUBREL with flags 0
            (Protocol::V311, &[0x40, 3, 0, 1, 0]),                   // trailing byte on 3.1.1
            (Protocol::V311, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), // 5-byte length
        ];
        for (protocol, bytes) in bad {
            assert!(
                decode(*protocol, bytes).is_err(),
                "{bytes:02x?} must be refused"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_buffered() {
        let mut codec = Codec::new(Protocol::V311, 100);
        let mut buf = BytesMut::from(&[0x30u8, 0x80, 0x80, 0x80, 0x01][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn partial_frames_wait_and_random_bytes_never_panic() {
        let mut codec = Codec::new(Protocol::V311, 1 << 20);
        let mut buf = BytesMut::from(&[0x32u8, 8, 0, 3, b'a'][..]);
        assert!(codec.decode(&mut buf).expect("no error yet").is_none());
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            let n = (seed % 24) as usize;
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            for protocol in [Protocol::V311, Protocol::V5] {
                let mut codec = Codec::new(protocol, 64);
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = codec.decode(&mut buf) {}
            }
        }
    }
}
