//! Encoding of MQTT 5 packets, every type in both directions (the broker sends CONNACK,
//! PUBLISH, the acknowledgements, SUBACK, UNSUBACK, PINGRESP, DISCONNECT, AUTH; a client,
//! like the tests', sends the others).
//!
//! One function per packet writes its body into a [`Sink`]; it runs twice: into a
//! [`Size`] that counts the bytes (and notices a field too long for its length prefix),
//! then, with the remaining length known, straight into the output buffer. Nothing is
//! written to an intermediate buffer, and `publish_size` is exact by construction.
//!
//! Properties are written in ascending order of identifier and left out when absent;
//! a packet with no properties gets a property length of 0, and the acknowledgements,
//! DISCONNECT and AUTH use their short forms when the reason is 0 and there are none.

use std::io;

use bytes::{BufMut, BytesMut};

use super::decode5::id;
use super::error::MAX_REMAINING_LENGTH;
use super::packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, Packet, Publish, PublishProperties, SubAck, Subscribe,
    UnsubAck, Unsubscribe, UserProperties, Will,
};

/// Where a packet body goes: the output buffer, or a counter.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    /// A field does not fit its length prefix or a value its type: not encodable.
    fn unencodable(&mut self) {}
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Counts what a body would take.
#[derive(Default)]
struct Size {
    len: usize,
    bad: bool,
}

impl Sink for Size {
    fn put(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
    }

    fn unencodable(&mut self) {
        self.bad = true;
    }
}

fn byte(o: &mut dyn Sink, v: u8) {
    o.put(&[v]);
}

fn two(o: &mut dyn Sink, v: u16) {
    o.put(&v.to_be_bytes());
}

fn four(o: &mut dyn Sink, v: u32) {
    o.put(&v.to_be_bytes());
}

/// A Variable Byte Integer (§1.5.5); a value over 268,435,455 is unencodable.
fn varint(o: &mut dyn Sink, mut v: usize) {
    if v > MAX_REMAINING_LENGTH {
        o.unencodable();
        v = MAX_REMAINING_LENGTH;
    }
    let mut buf = [0u8; 4];
    let mut n = 0;
    loop {
        // `v` fits 28 bits, so at most 4 bytes are written.
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = b;
            n += 1;
            break;
        }
        buf[n] = b | 0x80;
        n += 1;
    }
    o.put(&buf[..n]);
}

/// Bytes a Variable Byte Integer takes.
pub(super) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Binary Data or a UTF-8 string: a two-byte length, then the bytes (§1.5.4, §1.5.6).
fn binary(o: &mut dyn Sink, b: &[u8]) {
    let Ok(len) = u16::try_from(b.len()) else {
        o.unencodable();
        return;
    };
    two(o, len);
    o.put(b);
}

fn string(o: &mut dyn Sink, s: &str) {
    binary(o, s.as_bytes());
}

/// A property block: its length, then what `write` writes.
fn properties(o: &mut dyn Sink, write: &dyn Fn(&mut dyn Sink)) {
    let mut size = Size::default();
    write(&mut size);
    if size.bad {
        o.unencodable();
    }
    varint(o, size.len);
    write(o);
}

fn p_byte(o: &mut dyn Sink, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        byte(o, id);
        byte(o, v);
    }
}

fn p_bool(o: &mut dyn Sink, id: u8, v: Option<bool>) {
    p_byte(o, id, v.map(u8::from));
}

fn p_two(o: &mut dyn Sink, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        byte(o, id);
        two(o, v);
    }
}

fn p_four(o: &mut dyn Sink, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        byte(o, id);
        four(o, v);
    }
}

fn p_string(o: &mut dyn Sink, id: u8, v: Option<&str>) {
    if let Some(v) = v {
        byte(o, id);
        string(o, v);
    }
}

fn p_binary(o: &mut dyn Sink, id: u8, v: Option<&[u8]>) {
    if let Some(v) = v {
        byte(o, id);
        binary(o, v);
    }
}

fn p_user(o: &mut dyn Sink, user: &UserProperties) {
    for (k, v) in user {
        byte(o, id::USER_PROPERTY);
        string(o, k);
        string(o, v);
    }
}

/// A Subscription Identifier: 1 to 268,435,455 (§3.3.2.3.8, §3.8.2.1.2).
fn p_subscription_id(o: &mut dyn Sink, v: u32) {
    if v == 0 {
        o.unencodable();
    }
    byte(o, id::SUBSCRIPTION_IDENTIFIER);
    varint(o, v as usize);
}

/// The reason string and user properties of an acknowledgement, DISCONNECT or AUTH.
fn p_reason_and_user(o: &mut dyn Sink, reason_string: Option<&str>, user: &UserProperties) {
    p_string(o, id::REASON_STRING, reason_string);
    p_user(o, user);
}

/// The fixed-header byte of `packet` (§2.1.2, §2.1.3).
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            0x30 | u8::from(p.dup) << 3 | (p.qos & 0b11) << 1 | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Writes the body (variable header and payload) of `packet`.
fn body(packet: &Packet, o: &mut dyn Sink) {
    match packet {
        Packet::Connect(c) => connect(c, o),
        Packet::ConnAck(a) => connack(a, o),
        Packet::Publish(p) => publish(p, o),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => ack(a, o),
        Packet::Subscribe(s) => subscribe(s, o),
        Packet::SubAck(a) => suback(a, o),
        Packet::Unsubscribe(u) => unsubscribe(u, o),
        Packet::UnsubAck(a) => unsuback(a, o),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => disconnect(d, o),
        Packet::Auth(a) => auth(a, o),
    }
}

/// The remaining length of `packet`, or None if it cannot be encoded (a field longer
/// than its length prefix allows, a value out of its range, QoS 3, or more than the
/// MQTT maximum remaining length).
fn remaining_length(packet: &Packet) -> Option<usize> {
    if let Packet::Publish(p) = packet {
        return publish_remaining_length(p);
    }
    let mut size = Size::default();
    body(packet, &mut size);
    (!size.bad && size.len <= MAX_REMAINING_LENGTH).then_some(size.len)
}

/// Whether `p` carries no property at all (every PUBLISH from a 3.1.1
/// client to a v5 subscriber without subscription identifiers): its
/// property block is the single byte 0, written without the property walk.
fn bare(p: &Publish) -> bool {
    p.properties.is_none()
        && p.subscription_ids.is_empty()
        && p.topic_alias.is_none()
        && p.message_expiry_left.is_none()
}

fn publish_remaining_length(p: &Publish) -> Option<usize> {
    if p.qos > 2 {
        return None;
    }
    if bare(p) {
        if p.topic.len() > usize::from(u16::MAX) {
            return None;
        }
        let len = 2 + p.topic.len() + if p.qos > 0 { 2 } else { 0 } + 1 + p.payload.len();
        return (len <= MAX_REMAINING_LENGTH).then_some(len);
    }
    let mut size = Size::default();
    publish(p, &mut size);
    (!size.bad && size.len <= MAX_REMAINING_LENGTH).then_some(size.len)
}

/// Encodes `packet` as MQTT 5 into `dst`; writes nothing if it cannot be encoded.
pub(super) fn encode(packet: &Packet, dst: &mut BytesMut) -> io::Result<()> {
    let Some(len) = remaining_length(packet) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not encodable as MQTT 5", name(packet)),
        ));
    };
    dst.reserve(1 + varint_len(len) + len);
    dst.put_u8(first_byte(packet));
    varint(dst, len);
    body(packet, dst);
    Ok(())
}

/// PUBLISH, the fan-out hot path: like [`encode`] without building a `Packet`.
/// Returns false (and writes nothing) if `p` cannot be encoded.
pub(super) fn encode_publish(p: &Publish, dst: &mut BytesMut) -> bool {
    let Some(len) = publish_remaining_length(p) else {
        return false;
    };
    dst.reserve(1 + varint_len(len) + len);
    dst.put_u8(0x30 | u8::from(p.dup) << 3 | p.qos << 1 | u8::from(p.retain));
    varint(dst, len);
    publish(p, dst);
    true
}

/// The encoded size of a PUBLISH in bytes, fixed header included, or None if it
/// cannot be encoded.
pub(super) fn publish_size(p: &Publish) -> Option<usize> {
    publish_remaining_length(p).map(|len| 1 + varint_len(len) + len)
}

fn name(packet: &Packet) -> &'static str {
    super::error::packet_name(first_byte(packet) >> 4)
}

/// The message properties of a PUBLISH or will (§3.3.2.3, §3.1.3.2), with those of
/// identifiers between 0x09 and 0x26 (a PUBLISH's subscription identifiers and topic
/// alias, a will's delay) written by `after_correlation`, in their place in the order.
fn publish_properties(
    o: &mut dyn Sink,
    props: Option<&PublishProperties>,
    message_expiry: Option<u32>,
    after_correlation: &dyn Fn(&mut dyn Sink),
) {
    let none = PublishProperties::default();
    let p = props.unwrap_or(&none);
    p_byte(o, id::PAYLOAD_FORMAT_INDICATOR, p.payload_format);
    p_four(o, id::MESSAGE_EXPIRY_INTERVAL, message_expiry);
    p_string(o, id::CONTENT_TYPE, p.content_type.as_deref());
    p_string(o, id::RESPONSE_TOPIC, p.response_topic.as_deref());
    p_binary(o, id::CORRELATION_DATA, p.correlation_data.as_deref());
    after_correlation(o);
    p_user(o, &p.user);
}

/// §3.3: topic, packet identifier (QoS 1, 2), properties, payload. The message expiry
/// sent is `message_expiry_left` when the session set it (what is left of the interval,
/// [MQTT-3.3.2-6]), else the one received.
fn publish(p: &Publish, o: &mut dyn Sink) {
    string(o, &p.topic);
    if p.qos > 0 {
        two(o, p.pkid);
    }
    if bare(p) {
        byte(o, 0);
        o.put(&p.payload);
        return;
    }
    let props = p.properties.as_deref();
    let expiry = p
        .message_expiry_left
        .or_else(|| props.and_then(|q| q.message_expiry));
    properties(o, &|o| {
        publish_properties(o, props, expiry, &|o| {
            for &sid in &p.subscription_ids {
                p_subscription_id(o, sid);
            }
            if p.topic_alias == Some(0) {
                // [MQTT-3.3.2-8]: a Topic Alias of 0 is not permitted.
                o.unencodable();
            }
            p_two(o, id::TOPIC_ALIAS, p.topic_alias);
        });
    });
    o.put(&p.payload);
}

/// §3.1, with "MQTT" and level 5 whatever `c.level` says (the caller chose MQTT 5).
fn connect(c: &Connect, o: &mut dyn Sink) {
    string(o, "MQTT");
    byte(o, 5);
    let mut flags = u8::from(c.clean_session) << 1;
    if let Some(w) = &c.will {
        if w.qos > 2 {
            o.unencodable();
        }
        flags |= 0x04 | (w.qos & 0b11) << 3 | u8::from(w.retain) << 5;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    byte(o, flags);
    two(o, c.keep_alive);
    let p = &c.properties;
    properties(o, &|o| {
        p_four(o, id::SESSION_EXPIRY_INTERVAL, p.session_expiry);
        p_string(
            o,
            id::AUTHENTICATION_METHOD,
            p.authentication_method.as_deref(),
        );
        p_binary(o, id::AUTHENTICATION_DATA, p.authentication_data.as_deref());
        p_bool(
            o,
            id::REQUEST_PROBLEM_INFORMATION,
            p.request_problem_information,
        );
        p_bool(
            o,
            id::REQUEST_RESPONSE_INFORMATION,
            p.request_response_information,
        );
        p_two(o, id::RECEIVE_MAXIMUM, p.receive_maximum);
        p_two(o, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
        p_user(o, &p.user);
        p_four(o, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
    });
    string(o, &c.client_id);
    if let Some(w) = &c.will {
        will(w, o);
    }
    if let Some(u) = &c.username {
        string(o, u);
    }
    if let Some(pw) = &c.password {
        binary(o, pw);
    }
}

/// The will of a CONNECT: properties (the will delay in its place), topic, payload.
fn will(w: &Will, o: &mut dyn Sink) {
    let props = w.properties.as_deref();
    let expiry = props.and_then(|p| p.message_expiry);
    let delay = (w.delay != 0).then_some(w.delay);
    properties(o, &|o| {
        publish_properties(o, props, expiry, &|o| {
            p_four(o, id::WILL_DELAY_INTERVAL, delay)
        })
    });
    string(o, &w.topic);
    binary(o, &w.payload);
}

/// §3.2.
fn connack(a: &ConnAck, o: &mut dyn Sink) {
    byte(o, u8::from(a.session_present));
    byte(o, a.code);
    let p = &a.properties;
    properties(o, &|o| {
        p_four(o, id::SESSION_EXPIRY_INTERVAL, p.session_expiry);
        p_string(
            o,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            p.assigned_client_id.as_deref(),
        );
        p_two(o, id::SERVER_KEEP_ALIVE, p.server_keep_alive);
        p_string(
            o,
            id::AUTHENTICATION_METHOD,
            p.authentication_method.as_deref(),
        );
        p_binary(o, id::AUTHENTICATION_DATA, p.authentication_data.as_deref());
        p_string(
            o,
            id::RESPONSE_INFORMATION,
            p.response_information.as_deref(),
        );
        p_string(o, id::SERVER_REFERENCE, p.server_reference.as_deref());
        p_string(o, id::REASON_STRING, p.reason_string.as_deref());
        p_two(o, id::RECEIVE_MAXIMUM, p.receive_maximum);
        p_two(o, id::TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum);
        p_byte(o, id::MAXIMUM_QOS, p.maximum_qos);
        p_bool(o, id::RETAIN_AVAILABLE, p.retain_available);
        p_user(o, &p.user);
        p_four(o, id::MAXIMUM_PACKET_SIZE, p.maximum_packet_size);
        p_bool(
            o,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            p.wildcard_subscription_available,
        );
        p_bool(
            o,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            p.subscription_identifiers_available,
        );
        p_bool(
            o,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            p.shared_subscription_available,
        );
    });
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-3.7): the packet identifier alone when the
/// reason is 0 and there are no properties, the reason without a property length when
/// there are none.
fn ack(a: &Ack, o: &mut dyn Sink) {
    two(o, a.pkid);
    let no_props = a.reason_string.is_none() && a.user.is_empty();
    if a.reason == 0 && no_props {
        return;
    }
    byte(o, a.reason);
    if !no_props {
        properties(o, &|o| {
            p_reason_and_user(o, a.reason_string.as_deref(), &a.user)
        });
    }
}

/// §3.8.
fn subscribe(s: &Subscribe, o: &mut dyn Sink) {
    two(o, s.pkid);
    properties(o, &|o| {
        if let Some(sid) = s.id {
            p_subscription_id(o, sid);
        }
        p_user(o, &s.user);
    });
    for (filter, opts) in &s.filters {
        string(o, filter);
        if opts.qos > 2 || opts.retain_handling > 2 {
            o.unencodable();
        }
        byte(
            o,
            (opts.retain_handling & 0b11) << 4
                | u8::from(opts.retain_as_published) << 3
                | u8::from(opts.no_local) << 2
                | (opts.qos & 0b11),
        );
    }
}

/// §3.9.
fn suback(a: &SubAck, o: &mut dyn Sink) {
    two(o, a.pkid);
    properties(o, &|o| {
        p_reason_and_user(o, a.reason_string.as_deref(), &a.user)
    });
    o.put(&a.codes);
}

/// §3.10.
fn unsubscribe(u: &Unsubscribe, o: &mut dyn Sink) {
    two(o, u.pkid);
    properties(o, &|o| p_user(o, &u.user));
    for filter in &u.filters {
        string(o, filter);
    }
}

/// §3.11.
fn unsuback(a: &UnsubAck, o: &mut dyn Sink) {
    two(o, a.pkid);
    properties(o, &|o| {
        p_reason_and_user(o, a.reason_string.as_deref(), &a.user)
    });
    o.put(&a.codes);
}

/// §3.14: nothing for a normal disconnection without properties, the reason alone
/// when there are no properties.
fn disconnect(d: &Disconnect, o: &mut dyn Sink) {
    let no_props = d.session_expiry.is_none()
        && d.reason_string.is_none()
        && d.server_reference.is_none()
        && d.user.is_empty();
    if d.reason == 0 && no_props {
        return;
    }
    byte(o, d.reason);
    if !no_props {
        properties(o, &|o| {
            p_four(o, id::SESSION_EXPIRY_INTERVAL, d.session_expiry);
            p_string(o, id::SERVER_REFERENCE, d.server_reference.as_deref());
            p_reason_and_user(o, d.reason_string.as_deref(), &d.user);
        });
    }
}

/// §3.15: nothing for success without properties; otherwise the reason and the
/// properties (AUTH's property length is never left out).
fn auth(a: &Auth, o: &mut dyn Sink) {
    let no_props = a.authentication_method.is_none()
        && a.authentication_data.is_none()
        && a.reason_string.is_none()
        && a.user.is_empty();
    if a.reason == 0 && no_props {
        return;
    }
    byte(o, a.reason);
    properties(o, &|o| {
        p_string(
            o,
            id::AUTHENTICATION_METHOD,
            a.authentication_method.as_deref(),
        );
        p_binary(o, id::AUTHENTICATION_DATA, a.authentication_data.as_deref());
        p_reason_and_user(o, a.reason_string.as_deref(), &a.user);
    });
}
