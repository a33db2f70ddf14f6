//! Encoding of outgoing packets. For MQTT 3.1.1, PUBLISH and CONNECT are written by
//! hand and the rest go through mqtt-protocol, writing straight into the output buffer;
//! what only MQTT 5 has (properties, reason codes) is left out. MQTT 5 is
//! [`super::encode5`].

use std::io;

use bytes::{BufMut, BytesMut};
use mqtt::control::ConnectReturnCode;
use mqtt::packet::suback::SubscribeReturnCode;
use mqtt::packet::{
    ConnackPacket, DisconnectPacket, EncodablePacket, PingreqPacket, PingrespPacket, PubackPacket,
    PubcompPacket, PubrecPacket, PubrelPacket, SubackPacket, SubscribePacket, UnsubackPacket,
    UnsubscribePacket,
};
use mqtt::{Encodable, QualityOfService, TopicFilter};

use super::encode5;
use super::error::MAX_REMAINING_LENGTH;
use super::packet::{Connect, Packet, Publish};

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, why)
}

/// Encodes `packet` for protocol level `version` (5: MQTT 5, else 3.1.1); a CONNECT
/// is encoded as the level it carries.
pub(crate) fn encode_packet(packet: &Packet, version: u8, dst: &mut BytesMut) -> io::Result<()> {
    let v5 = match packet {
        Packet::Connect(c) => c.level == 5,
        _ => version == 5,
    };
    if v5 {
        return encode5::encode(packet, dst);
    }
    match packet {
        Packet::Connect(c) => encode_connect(c, dst),
        Packet::ConnAck(a) => write(
            ConnackPacket::new(a.session_present, ConnectReturnCode::from_u8(a.code)),
            dst,
        ),
        Packet::Publish(p) => match publish_remaining_length(p) {
            Some(_) => {
                encode_publish(p, version, dst);
                Ok(())
            }
            None => Err(invalid(format!(
                "PUBLISH: not encodable (qos {}, topic of {} bytes)",
                p.qos,
                p.topic.len()
            ))),
        },
        Packet::PubAck(a) => write(PubackPacket::new(a.pkid), dst),
        Packet::PubRec(a) => write(PubrecPacket::new(a.pkid), dst),
        Packet::PubRel(a) => write(PubrelPacket::new(a.pkid), dst),
        Packet::PubComp(a) => write(PubcompPacket::new(a.pkid), dst),
        Packet::Subscribe(s) => {
            let filters = s
                .filters
                .iter()
                .map(|(f, o)| {
                    Ok((
                        topic_filter("SUBSCRIBE", f)?,
                        qos_level("SUBSCRIBE", o.qos)?,
                    ))
                })
                .collect::<io::Result<Vec<_>>>()?;
            write(SubscribePacket::new(s.pkid, filters), dst)
        }
        Packet::SubAck(a) => {
            let codes = a
                .codes
                .iter()
                .map(|&c| suback_code(c))
                .collect::<io::Result<Vec<_>>>()?;
            write(SubackPacket::new(a.pkid, codes), dst)
        }
        Packet::Unsubscribe(u) => {
            let filters = u
                .filters
                .iter()
                .map(|f| topic_filter("UNSUBSCRIBE", f))
                .collect::<io::Result<Vec<_>>>()?;
            write(UnsubscribePacket::new(u.pkid, filters), dst)
        }
        Packet::UnsubAck(a) => write(UnsubackPacket::new(a.pkid), dst),
        Packet::PingReq => write(PingreqPacket::new(), dst),
        Packet::PingResp => write(PingrespPacket::new(), dst),
        Packet::Disconnect(_) => write(DisconnectPacket::new(), dst),
        Packet::Auth(_) => Err(invalid("AUTH exists in MQTT 5 only".to_owned())),
    }
}

/// Writes an mqtt-protocol packet into `dst` (no intermediate buffer).
fn write<P: EncodablePacket>(packet: P, dst: &mut BytesMut) -> io::Result<()> {
    if packet.encoded_packet_length() as usize > MAX_REMAINING_LENGTH {
        return Err(invalid(
            "packet exceeds the MQTT maximum remaining length".to_owned(),
        ));
    }
    dst.reserve(packet.encoded_length() as usize);
    packet.encode(&mut dst.writer())
}

fn topic_filter(packet: &str, filter: &str) -> io::Result<TopicFilter> {
    TopicFilter::new(filter).map_err(|e| invalid(format!("{packet}: {e}")))
}

fn qos_level(packet: &str, qos: u8) -> io::Result<QualityOfService> {
    match qos {
        0 => Ok(QualityOfService::Level0),
        1 => Ok(QualityOfService::Level1),
        2 => Ok(QualityOfService::Level2),
        _ => Err(invalid(format!("{packet}: QoS {qos}"))),
    }
}

fn suback_code(code: u8) -> io::Result<SubscribeReturnCode> {
    match code {
        0x80 => Ok(SubscribeReturnCode::Failure),
        qos => qos_level("SUBACK", qos).map(SubscribeReturnCode::from),
    }
}

use encode5::varint_len;

fn put_varint(dst: &mut BytesMut, mut len: usize) {
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            dst.put_u8(byte);
            return;
        }
        dst.put_u8(byte | 0x80);
    }
}

/// The remaining length of `p`, or None if it cannot be encoded (QoS > 2, topic over
/// 65535 bytes, or packet over the MQTT maximum).
fn publish_remaining_length(p: &Publish) -> Option<usize> {
    if p.qos > 2 || p.topic.len() > usize::from(u16::MAX) {
        return None;
    }
    let pkid_len = if p.qos > 0 { 2 } else { 0 };
    let len = 2 + p.topic.len() + pkid_len + p.payload.len();
    (len <= MAX_REMAINING_LENGTH).then_some(len)
}

/// Encodes one PUBLISH for protocol level `version` straight into `dst`, without
/// copying the payload into an intermediate buffer (the broker fans one message out to
/// many subscribers, each with its own subscription identifiers, topic alias and
/// remaining expiry: this is the hot path). MQTT 3.1.1 leaves the MQTT 5 fields out. A
/// PUBLISH that cannot be encoded (QoS > 2, a topic or property over 65535 bytes, packet
/// over 256 MiB) writes nothing; decoded packets never hit this, and `Encoder` reports
/// it as an error. [`publish_size`] says beforehand what this writes.
pub(crate) fn encode_publish(p: &Publish, version: u8, dst: &mut BytesMut) {
    if version == 5 {
        let written = encode5::encode_publish(p, dst);
        debug_assert!(written, "unencodable MQTT 5 PUBLISH (qos {})", p.qos);
        return;
    }
    let Some(len) = publish_remaining_length(p) else {
        debug_assert!(
            false,
            "unencodable PUBLISH (qos {}, topic of {} bytes)",
            p.qos,
            p.topic.len()
        );
        return;
    };
    dst.reserve(1 + varint_len(len) + len);
    dst.put_u8(0x30 | u8::from(p.dup) << 3 | p.qos << 1 | u8::from(p.retain));
    put_varint(dst, len);
    dst.put_u16(p.topic.len() as u16);
    dst.put_slice(p.topic.as_bytes());
    if p.qos > 0 {
        dst.put_u16(p.pkid);
    }
    dst.put_slice(&p.payload);
}

/// The bytes [`encode_publish`] writes for `p` at protocol level `version`, fixed header
/// included (to compare with a client's Maximum Packet Size, MQTT 5 §3.1.2.11.4), or
/// None if it cannot be encoded.
pub(crate) fn publish_size(p: &Publish, version: u8) -> Option<usize> {
    if version == 5 {
        return encode5::publish_size(p);
    }
    publish_remaining_length(p).map(|len| 1 + varint_len(len) + len)
}

/// By hand: mqtt-protocol cannot carry a binary password.
fn encode_connect(c: &Connect, dst: &mut BytesMut) -> io::Result<()> {
    let name: &[u8] = if c.level == 3 { b"MQIsdp" } else { b"MQTT" };
    let mut fields: Vec<&[u8]> = vec![c.client_id.as_bytes()];
    let mut flags = u8::from(c.clean_session) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | (will.qos & 0b11) << 3 | u8::from(will.retain) << 5;
        fields.push(will.topic.as_bytes());
        fields.push(&will.payload);
    }
    if let Some(username) = &c.username {
        flags |= 0x80;
        fields.push(username.as_bytes());
    }
    if let Some(password) = &c.password {
        flags |= 0x40;
        fields.push(password);
    }
    if fields.iter().any(|f| f.len() > usize::from(u16::MAX)) {
        return Err(invalid(
            "CONNECT: a field is longer than 65535 bytes".to_owned(),
        ));
    }
    let len = 2 + name.len() + 4 + fields.iter().map(|f| 2 + f.len()).sum::<usize>();
    dst.reserve(1 + varint_len(len) + len);
    dst.put_u8(0x10);
    put_varint(dst, len);
    dst.put_u16(name.len() as u16);
    dst.put_slice(name);
    dst.put_u8(c.level);
    dst.put_u8(flags);
    dst.put_u16(c.keep_alive);
    for field in fields {
        dst.put_u16(field.len() as u16);
        dst.put_slice(field);
    }
    Ok(())
}
