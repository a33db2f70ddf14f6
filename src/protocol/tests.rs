//! Unit tests for the protocol module: framing, every validity check, round-trips of
//! every packet type, and a fuzz-like never-panic test.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::packet::Unsubscribe;
use super::validate::{check_topic_filter, check_topic_name};
use super::*;

const MAX: usize = 1 << 20;

/// A frame with the given first byte and body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let byte = (len & 0x7F) as u8;
        len >>= 7;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string.
fn s(x: &[u8]) -> Vec<u8> {
    let mut out = (x.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(x);
    out
}

fn decode(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    MqttCodec::new(MAX).decode(&mut BytesMut::from(bytes))
}

fn decode_ok(bytes: &[u8]) -> Packet {
    decode(bytes).unwrap().unwrap()
}

/// Asserts the bytes are Malformed, with a reason containing `needle`.
fn assert_malformed(bytes: &[u8], needle: &str) {
    match decode(bytes) {
        Err(DecodeError::Malformed(why)) => {
            assert!(why.contains(needle), "{why:?} lacks {needle:?}")
        }
        other => panic!("expected Malformed({needle:?}), got {other:?}"),
    }
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut dst = BytesMut::new();
    MqttCodec::new(MAX).encode(packet, &mut dst).unwrap();
    dst.to_vec()
}

fn connect_body(name: &[u8], level: u8, flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = s(name);
    body.extend([level, flags, 0, 60]);
    for field in fields {
        body.extend(s(field));
    }
    body
}

fn connect(level: u8, flags: u8, fields: &[&[u8]]) -> Vec<u8> {
    let name: &[u8] = if level == 3 { b"MQIsdp" } else { b"MQTT" };
    frame(0x10, &connect_body(name, level, flags, fields))
}

fn publish_frame(first: u8, topic: &[u8], pkid: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = s(topic);
    if let Some(id) = pkid {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

fn subscribe_frame(pkid: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (f, qos) in filters {
        body.extend(s(f));
        body.push(*qos);
    }
    frame(0x82, &body)
}

fn unsubscribe_frame(pkid: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for f in filters {
        body.extend(s(f));
    }
    frame(0xA2, &body)
}

/// A CONNACK.
fn connack(session_present: bool, code: u8) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
        ..ConnAck::default()
    })
}

/// A SUBSCRIBE of `(filter, qos)` pairs.
fn subscribe(pkid: u16, filters: &[(&str, u8)]) -> Packet {
    Packet::Subscribe(Subscribe {
        pkid,
        filters: filters
            .iter()
            .map(|(f, qos)| {
                let options = SubscriptionOptions {
                    qos: *qos,
                    ..SubscriptionOptions::default()
                };
                (f.to_string(), options)
            })
            .collect(),
        ..Subscribe::default()
    })
}

/// A SUBACK.
fn suback(pkid: u16, codes: &[u8]) -> Packet {
    Packet::SubAck(SubAck {
        pkid,
        codes: codes.to_vec(),
        ..SubAck::default()
    })
}

/// An UNSUBSCRIBE.
fn unsubscribe(pkid: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        pkid,
        filters: filters.iter().map(|f| f.to_string()).collect(),
        ..Unsubscribe::default()
    })
}

/// A 3.1.1 UNSUBACK.
fn unsuback(pkid: u16) -> Packet {
    Packet::UnsubAck(UnsubAck {
        pkid,
        ..UnsubAck::default()
    })
}

fn sample_publish() -> Publish {
    Publish {
        dup: true,
        pkid: 7,
        ..Publish::new("a/b", Bytes::from_static(b"hello"), 1, true)
    }
}

/// One of every packet variant, with non-default field values.
fn all_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(Connect {
            level: 4,
            client_id: "client-1".into(),
            clean_session: true,
            keep_alive: 30,
            username: Some("user".into()),
            password: Some(vec![0xFF, 0x00, 0xC3]),
            will: Some(Will {
                topic: "last/will".into(),
                payload: Bytes::from_static(b"bye"),
                qos: 2,
                retain: true,
                ..Will::default()
            }),
            ..Connect::default()
        })),
        Packet::Connect(Box::new(Connect {
            level: 3,
            client_id: "old".into(),
            ..Connect::default()
        })),
        connack(true, 0),
        connack(false, 5),
        Packet::Publish(sample_publish()),
        Packet::Publish(Publish::new("x", Bytes::new(), 0, false)),
        Packet::Publish(Publish {
            pkid: 65535,
            ..Publish::new("q/2", vec![7u8; 300], 2, false)
        }),
        Packet::PubAck(Ack::ok(1)),
        Packet::PubRec(Ack::ok(2)),
        Packet::PubRel(Ack::ok(3)),
        Packet::PubComp(Ack::ok(65535)),
        subscribe(9, &[("a/+/c", 0), ("#", 1), ("d/#", 2)]),
        suback(9, &[0, 1, 2, 0x80]),
        unsubscribe(10, &["a/+/c", "#"]),
        unsuback(10),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ]
}

// ---- fixed header -------------------------------------------------------------------

#[test]
fn remaining_length_over_four_bytes_is_malformed() {
    assert_malformed(
        &[0x30, 0x80, 0x80, 0x80, 0x80, 0x01],
        "remaining length longer than 4 bytes",
    );
    // Four bytes with the continuation bit are already known to be bad.
    assert_malformed(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], "longer than 4 bytes");
}

#[test]
fn remaining_length_of_four_bytes_is_accepted() {
    // 0x0FFFFFFF is the largest legal length; with a small max it is TooLarge, not Malformed.
    let mut codec = MqttCodec::new(100);
    let err = codec
        .decode(&mut BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0x7F][..]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                size: 268_435_460,
                max: 100
            }
        ),
        "{err:?}"
    );
}

#[test]
fn reserved_packet_types_are_malformed() {
    assert_malformed(&[0x00, 0x00], "reserved packet type 0");
    assert_malformed(&[0xF0, 0x00], "reserved packet type 15");
}

#[test]
fn fixed_header_flags_are_checked() {
    for kind in 1u8..=14 {
        if kind == 3 {
            continue;
        }
        let required = if matches!(kind, 6 | 8 | 10) {
            0b0010
        } else {
            0
        };
        for flags in 0u8..16 {
            if flags != required {
                assert_malformed(&[kind << 4 | flags, 0x00], "fixed header flags");
            }
        }
    }
}

#[test]
fn publish_qos_3_is_malformed() {
    assert_malformed(&publish_frame(0x36, b"a", Some(1), b""), "PUBLISH: QoS 3");
}

#[test]
fn server_to_client_types_decode() {
    assert_eq!(decode_ok(&[0x20, 0x02, 0x01, 0x00]), connack(true, 0));
    assert_eq!(
        decode_ok(&[0x90, 0x03, 0x00, 0x05, 0x80]),
        suback(5, &[0x80])
    );
    assert_eq!(decode_ok(&[0xB0, 0x02, 0x00, 0x05]), unsuback(5));
    assert_eq!(decode_ok(&[0xD0, 0x00]), Packet::PingResp);
    assert_malformed(&[0x20, 0x02, 0x02, 0x00], "CONNACK");
    assert_malformed(&[0x90, 0x03, 0x00, 0x05, 0x03], "SUBACK");
}

#[test]
fn fixed_length_packets_are_checked() {
    for first in [0x40u8, 0x50, 0x62, 0x70, 0x20, 0xB0] {
        assert_malformed(&[first, 0x01, 0x00], "expected 2");
        assert_malformed(&[first, 0x03, 0x00, 0x01, 0x00], "expected 2");
        assert_malformed(&[first, 0x00], "expected 2");
    }
    for first in [0xC0u8, 0xD0, 0xE0] {
        assert_malformed(&[first, 0x01, 0x00], "expected 0");
    }
    // Rejected on the header alone, before the body arrives.
    assert_malformed(&[0x40, 0x05], "PUBACK: remaining length 5, expected 2");
    assert_eq!(
        decode_ok(&[0x40, 0x02, 0x12, 0x34]),
        Packet::PubAck(Ack::ok(0x1234))
    );
    assert_eq!(decode_ok(&[0xC0, 0x00]), Packet::PingReq);
    assert_eq!(
        decode_ok(&[0xE0, 0x00]),
        Packet::Disconnect(Disconnect::default())
    );
}

#[test]
fn too_large_is_rejected_before_the_body_is_buffered() {
    let mut codec = MqttCodec::new(64);
    let mut buf = BytesMut::from(&[0x30u8, 0xE8, 0x07][..]); // remaining length 1000, no body
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::TooLarge {
                size: 1003,
                max: 64
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.connack_code(), None);
    // Exactly at the limit is fine.
    let ok = publish_frame(0x30, b"t", None, &[0u8; 59]);
    assert_eq!(ok.len(), 64);
    assert!(codec
        .decode(&mut BytesMut::from(&ok[..]))
        .unwrap()
        .is_some());
}

// ---- CONNECT ------------------------------------------------------------------------

#[test]
fn connect_311_decodes() {
    let bytes = connect(
        4,
        0b1110_1110,
        &[b"cid", b"will/t", b"bye", b"user", &[0xFF, 0x00, 0x80]],
    );
    let Packet::Connect(c) = decode_ok(&bytes) else {
        panic!()
    };
    assert_eq!(c.level, 4);
    assert_eq!(c.client_id, "cid");
    assert!(c.clean_session);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(
        c.password.as_deref(),
        Some(&[0xFF, 0x00, 0x80][..]),
        "binary password"
    );
    let will = c.will.unwrap();
    assert_eq!(
        (
            will.topic.as_str(),
            &will.payload[..],
            will.qos,
            will.retain
        ),
        ("will/t", &b"bye"[..], 1, true)
    );
}

#[test]
fn connect_31_decodes() {
    let Packet::Connect(c) = decode_ok(&connect(3, 0x00, &[b"cid"])) else {
        panic!()
    };
    assert_eq!(
        (c.level, c.clean_session, c.username, c.password, c.will),
        (3, false, None, None, None)
    );
    // MQTT 3.1 allows a password without a user name.
    let Packet::Connect(c) = decode_ok(&connect(3, 0x40, &[b"cid", b"pw"])) else {
        panic!()
    };
    assert_eq!(c.password, Some(b"pw".to_vec()));
}

#[test]
fn connect_empty_client_id_is_not_an_error() {
    let Packet::Connect(c) = decode_ok(&connect(4, 0x00, &[b""])) else {
        panic!()
    };
    assert_eq!(c.client_id, "");
}

#[test]
fn connect_protocol_name_and_level() {
    assert_malformed(
        &frame(0x10, &connect_body(b"MQTX", 4, 0x02, &[b"c"])),
        "CONNECT: unknown protocol name",
    );
    assert_malformed(
        &frame(0x10, &connect_body(b"MQIsdp", 4, 0x02, &[b"c"])[..4]),
        "protocol name",
    );
    for (name, level) in [
        (&b"MQTT"[..], 6u8),
        (b"MQTT", 3),
        (b"MQIsdp", 4),
        (b"MQTT", 0),
    ] {
        let err = decode(&frame(0x10, &connect_body(name, level, 0x02, &[b"c"]))).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnacceptableProtocol { level: l } if l == level),
            "{err:?}"
        );
        assert_eq!(err.connack_code(), Some(1));
    }
    // An MQTT 5 CONNECT (properties after keep alive) decodes as MQTT 5.
    let mut v5 = connect_body(b"MQTT", 5, 0x02, &[]);
    v5.extend([0x00, 0x00, 0x01, b'c']);
    assert!(matches!(
        decode(&frame(0x10, &v5)),
        Ok(Some(Packet::Connect(c))) if c.level == 5 && c.client_id == "c"
    ));
}

#[test]
fn connect_flags_are_checked() {
    assert_malformed(&connect(4, 0x03, &[b"c"]), "reserved connect flag");
    assert_malformed(
        &connect(4, 0x08, &[b"c"]),
        "will QoS or will retain set without the will flag",
    );
    assert_malformed(&connect(4, 0x20, &[b"c"]), "without the will flag");
    assert_malformed(&connect(4, 0x1C, &[b"c", b"t", b"m"]), "will QoS is 3");
    assert_malformed(
        &connect(4, 0x40, &[b"c", b"pw"]),
        "password flag set without the user name flag",
    );
}

#[test]
fn connect_strings_are_checked() {
    assert_malformed(
        &connect(4, 0x00, &[&[0xC3, 0x28]]),
        "client identifier is not valid UTF-8",
    );
    assert_malformed(
        &connect(4, 0x00, &[b"a\0b"]),
        "client identifier contains U+0000",
    );
    assert_malformed(
        &connect(4, 0x80, &[b"c", &[0xFF]]),
        "user name is not valid UTF-8",
    );
    assert_malformed(
        &connect(4, 0x80, &[b"c", b"\0"]),
        "user name contains U+0000",
    );
    assert_malformed(
        &connect(4, 0x04, &[b"c", b"a/+", b"m"]),
        "will topic contains a wildcard",
    );
    assert_malformed(&connect(4, 0x04, &[b"c", b"", b"m"]), "will topic is empty");
    assert_malformed(
        &connect(4, 0x04, &[b"c", &[0xFF], b"m"]),
        "will topic is not valid UTF-8",
    );
}

#[test]
fn connect_lengths_stay_within_the_frame() {
    // Client id declares 10 bytes, 3 present.
    let mut body = connect_body(b"MQTT", 4, 0x02, &[]);
    body.extend([0x00, 0x0A, b'a', b'b', b'c']);
    assert_malformed(
        &frame(0x10, &body),
        "client identifier runs past the end of the packet",
    );
    // Username flag set but no user name.
    assert_malformed(&connect(4, 0x80, &[b"c"]), "user name missing");
    // Will flag set but no will message.
    assert_malformed(&connect(4, 0x04, &[b"c", b"t"]), "will message missing");
    // Missing keep alive.
    assert_malformed(
        &frame(0x10, &connect_body(b"MQTT", 4, 0x02, &[])[..8]),
        "keep alive missing",
    );
    // Trailing bytes after the last field.
    assert_malformed(
        &connect(4, 0x00, &[b"c", b"extra"]),
        "CONNECT: 7 unexpected trailing bytes",
    );
}

#[test]
fn connect_31_long_client_id_is_rejected() {
    let err = decode(&connect(3, 0x02, &[&[b'x'; 24]])).unwrap_err();
    assert!(matches!(err, DecodeError::IdentifierRejected(_)), "{err:?}");
    assert_eq!(err.connack_code(), Some(2));
    assert!(decode(&connect(3, 0x02, &[&[b'x'; 23]])).is_ok());
    assert!(decode(&connect(4, 0x02, &[&[b'x'; 100]])).is_ok());
}

// ---- PUBLISH ------------------------------------------------------------------------

#[test]
fn publish_decodes_flags_and_payload() {
    let p = decode_ok(&publish_frame(0x3B, b"a/b", Some(7), b"hello")); // dup, qos 1, retain
    assert_eq!(p, Packet::Publish(sample_publish()));
    let Packet::Publish(p) = decode_ok(&publish_frame(0x30, b"t", None, b"")) else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.pkid, p.dup, p.retain, p.payload.len()),
        (0, 0, false, false, 0)
    );
    let Packet::Publish(p) = decode_ok(&publish_frame(0x34, b"t", Some(9), b"x")) else {
        panic!()
    };
    assert_eq!((p.qos, p.pkid, p.dup), (2, 9, false));
}

#[test]
fn publish_topic_is_checked() {
    assert_malformed(
        &publish_frame(0x30, &[0xC3, 0x28], None, b""),
        "PUBLISH: topic name is not valid UTF-8",
    );
    assert_malformed(
        &publish_frame(0x30, b"", None, b"x"),
        "PUBLISH: topic name is empty",
    );
    assert_malformed(
        &publish_frame(0x30, b"a\0b", None, b""),
        "PUBLISH: topic name contains U+0000",
    );
    assert_malformed(
        &publish_frame(0x30, b"a/+", None, b""),
        "PUBLISH: topic name contains a wildcard",
    );
    assert_malformed(
        &publish_frame(0x30, b"a/#", None, b""),
        "PUBLISH: topic name contains a wildcard",
    );
}

#[test]
fn publish_packet_id_is_checked() {
    assert_malformed(
        &publish_frame(0x32, b"t", Some(0), b"x"),
        "PUBLISH: packet identifier is 0",
    );
    assert_malformed(
        &publish_frame(0x34, b"t", Some(0), b""),
        "PUBLISH: packet identifier is 0",
    );
    assert_malformed(
        &publish_frame(0x32, b"t", None, b""),
        "PUBLISH: packet identifier missing",
    );
}

#[test]
fn publish_topic_longer_than_frame_is_malformed() {
    // Declares a 10-byte topic in a 5-byte body (mqtt-protocol would accept this for QoS 0).
    assert_malformed(
        &[0x30, 0x05, 0x00, 0x0A, b'a', b'b', b'c'],
        "topic name runs past the end of the packet",
    );
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------

#[test]
fn subscribe_decodes() {
    let p = decode_ok(&subscribe_frame(
        3,
        &[(b"a/+/c", 0), (b"#", 2), (b"+", 1), (b"/#", 0)],
    ));
    let filters = [("a/+/c", 0), ("#", 2), ("+", 1), ("/#", 0)];
    assert_eq!(p, subscribe(3, &filters));
}

#[test]
fn subscribe_is_checked() {
    assert_malformed(&subscribe_frame(3, &[]), "SUBSCRIBE: no topic filters");
    assert_malformed(
        &subscribe_frame(0, &[(b"a", 0)]),
        "SUBSCRIBE: packet identifier is 0",
    );
    assert_malformed(&subscribe_frame(3, &[(b"a", 3)]), "SUBSCRIBE");
    assert_malformed(&subscribe_frame(3, &[(b"a", 0x41)]), "SUBSCRIBE");
    assert_malformed(&subscribe_frame(3, &[(b"a", 0x80)]), "SUBSCRIBE");
    for bad in [&b""[..], b"a/#/b", b"a#", b"a/b+", b"+a/b", b"##"] {
        assert_malformed(&subscribe_frame(3, &[(b"ok", 0), (bad, 0)]), "SUBSCRIBE");
    }
    assert_malformed(
        &subscribe_frame(3, &[(b"a\0", 0)]),
        "SUBSCRIBE: topic filter contains U+0000",
    );
    assert_malformed(
        &subscribe_frame(3, &[(&[0xFF, 0xFE], 0)]),
        "SUBSCRIBE: a string is not valid UTF-8",
    );
    // Filter without its QoS byte.
    let mut short = subscribe_frame(3, &[(b"abc", 1)]);
    short.pop();
    short[1] -= 1;
    assert_malformed(&short, "SUBSCRIBE: a field runs past the end of the packet");
}

#[test]
fn unsubscribe_is_checked() {
    let p = decode_ok(&unsubscribe_frame(4, &[b"a/+", b"#"]));
    assert_eq!(p, unsubscribe(4, &["a/+", "#"]));
    assert_malformed(&unsubscribe_frame(4, &[]), "UNSUBSCRIBE: no topic filters");
    assert_malformed(
        &unsubscribe_frame(0, &[b"a"]),
        "UNSUBSCRIBE: packet identifier is 0",
    );
    assert_malformed(
        &unsubscribe_frame(4, &[b"a/#/b"]),
        "UNSUBSCRIBE: topic filter uses '#'",
    );
    assert_malformed(
        &unsubscribe_frame(4, &[b"a+"]),
        "UNSUBSCRIBE: topic filter uses '+'",
    );
    assert_malformed(
        &unsubscribe_frame(4, &[b""]),
        "UNSUBSCRIBE: topic filter is empty",
    );
    assert_malformed(
        &unsubscribe_frame(4, &[b"\0"]),
        "UNSUBSCRIBE: topic filter contains U+0000",
    );
    assert_malformed(
        &unsubscribe_frame(4, &[&[0xFF]]),
        "UNSUBSCRIBE: topic filter is not valid UTF-8",
    );
    // Last filter declares 10 bytes, 3 present (mqtt-protocol would accept this).
    assert_malformed(
        &[0xA2, 0x07, 0x00, 0x04, 0x00, 0x0A, b'a', b'b', b'c'],
        "topic filter runs past the end",
    );
    assert_malformed(
        &[0xA2, 0x01, 0x00],
        "UNSUBSCRIBE: packet identifier missing",
    );
}

#[test]
fn topic_validation_rules() {
    for ok in ["a", "a/b", "/", "a//b", "$SYS/x", "é/ü"] {
        assert_eq!(check_topic_name(ok), Ok(()), "{ok}");
    }
    for ok in ["#", "+", "a/#", "+/+/#", "/+", "a//+/b", "+/"] {
        assert_eq!(check_topic_filter(ok), Ok(()), "{ok}");
    }
    for bad in ["", "a#", "#/a", "a/#/", "a+/b", "a/+b", "\0", "a/b#"] {
        assert!(check_topic_filter(bad).is_err(), "{bad}");
    }
}

// ---- framing ------------------------------------------------------------------------

#[test]
fn frame_split_byte_by_byte() {
    let bytes = connect(4, 0xC2, &[b"client", b"user", b"secret"]);
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::new();
    for (i, &b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        let got = codec.decode(&mut buf).unwrap();
        assert_eq!(got.is_some(), i == bytes.len() - 1, "at byte {i}");
    }
    assert!(buf.is_empty());
}

#[test]
fn two_frames_in_one_buffer() {
    let mut bytes = publish_frame(0x32, b"t", Some(1), b"one");
    bytes.extend(&[0xC0, 0x00]);
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::from(&bytes[..]);
    let Some(Packet::Publish(p)) = codec.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"one");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Packet::PingReq));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn truncated_frame_is_not_consumed() {
    let bytes = subscribe_frame(3, &[(b"a/b", 1)]);
    let mut codec = MqttCodec::new(MAX);
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None, "cut at {cut}");
        assert_eq!(&buf[..], &bytes[..cut], "cut at {cut} consumed input");
    }
}

#[test]
fn short_declared_length_does_not_bleed_into_next_packet() {
    // SUBSCRIBE declares 5 bytes but its content is 8: the filter runs past its frame.
    let mut sub = subscribe_frame(3, &[(b"a/b", 1)]);
    sub[1] = 5;
    let mut bytes = sub.clone();
    bytes.extend(&[0xC0, 0x00]);
    let mut codec = MqttCodec::new(MAX);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(DecodeError::Malformed(_))
    ));
    assert_eq!(
        buf.len(),
        bytes.len() - 7,
        "consumed exactly the declared frame"
    );

    // PUBLISH QoS 1 whose length covers the topic but not the packet id.
    let mut bytes = vec![0x32, 0x03, 0x00, 0x01, b't', 0x00, 0x05];
    bytes.extend(&[0xC0, 0x00]);
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(DecodeError::Malformed(_))
    ));
    assert_eq!(buf.len(), 4);
}

#[test]
fn long_declared_length_does_not_bleed_into_next_packet() {
    // SUBSCRIBE declares 2 bytes more than it has; the PINGREQ after it falls inside
    // its frame and is rejected as a bad filter, not returned as a filter.
    let mut bytes = subscribe_frame(3, &[(b"a/b", 1)]);
    bytes[1] += 2;
    bytes.extend(&[0xC0, 0x00]);
    assert_malformed(&bytes, "SUBSCRIBE");
    // PUBACK declaring 4 is rejected on the header, before the next packet is read.
    assert_malformed(
        &[0x40, 0x04, 0x00, 0x01, 0xC0, 0x00],
        "PUBACK: remaining length 4",
    );
    // Length too long by one: the next packet is never decoded as part of it.
    let mut bytes = unsubscribe_frame(4, &[b"a"]);
    bytes[1] += 1;
    bytes.extend(&[0xC0, 0x00]);
    assert_malformed(&bytes, "UNSUBSCRIBE");
}

#[test]
fn publish_split_at_every_position() {
    let mut bytes = publish_frame(0x3D, b"sensors/1/temp", Some(513), &[0xAB; 300]);
    bytes.extend(&[0xE0, 0x00]);
    let expected = Publish {
        dup: true,
        pkid: 513,
        ..Publish::new("sensors/1/temp", vec![0xAB; 300], 2, true)
    };
    for split in 0..=bytes.len() {
        let mut codec = MqttCodec::new(MAX);
        let mut buf = BytesMut::from(&bytes[..split]);
        let mut got = Vec::new();
        while let Some(p) = codec.decode(&mut buf).unwrap() {
            got.push(p);
        }
        buf.extend_from_slice(&bytes[split..]);
        while let Some(p) = codec.decode(&mut buf).unwrap() {
            got.push(p);
        }
        assert_eq!(
            got,
            vec![
                Packet::Publish(expected.clone()),
                Packet::Disconnect(Disconnect::default())
            ],
            "split at {split}"
        );
    }
}

// ---- encoding ----------------------------------------------------------------------

#[test]
fn every_packet_round_trips() {
    for packet in all_packets() {
        let bytes = encode(&packet);
        let mut codec = MqttCodec::new(MAX);
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().as_ref(), Some(&packet));
        assert!(buf.is_empty(), "{packet:?} left bytes");
    }
}

#[test]
fn owned_and_borrowed_encoders_agree() {
    for packet in all_packets() {
        let mut owned = BytesMut::new();
        MqttCodec::new(MAX)
            .encode(packet.clone(), &mut owned)
            .unwrap();
        assert_eq!(owned.to_vec(), encode(&packet));
    }
}

#[test]
fn encode_publish_writes_the_expected_bytes() {
    let mut dst = BytesMut::new();
    encode_publish(&sample_publish(), 4, &mut dst);
    assert_eq!(
        &dst[..],
        &[0x3B, 0x0C, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x07, b'h', b'e', b'l', b'l', b'o']
    );
    // QoS 0 carries no packet id even if one is set.
    let mut dst = BytesMut::new();
    encode_publish(
        &Publish {
            pkid: 5,
            ..Publish::new("t", Bytes::from_static(b"x"), 0, false)
        },
        4,
        &mut dst,
    );
    assert_eq!(&dst[..], &[0x30, 0x04, 0x00, 0x01, b't', b'x']);
}

#[test]
fn encode_publish_varint_boundaries() {
    for payload_len in [0usize, 122, 123, 16_378, 16_379, 2_097_146, 2_097_147] {
        let p = Publish::new("t", vec![1u8; payload_len], 0, false);
        let mut dst = BytesMut::new();
        encode_publish(&p, 4, &mut dst);
        let mut codec = MqttCodec::new(usize::MAX);
        assert_eq!(
            codec.decode(&mut dst).unwrap(),
            Some(Packet::Publish(p)),
            "payload {payload_len}"
        );
    }
}

#[test]
fn unencodable_packets_are_errors() {
    let mut codec = MqttCodec::new(MAX);
    let mut dst = BytesMut::new();
    let long_topic = "t".repeat(70_000);
    assert!(codec
        .encode(
            Packet::Publish(Publish::new(long_topic.as_str(), Bytes::new(), 0, false)),
            &mut dst
        )
        .is_err());
    assert!(codec.encode(subscribe(1, &[("a", 3)]), &mut dst).is_err());
    assert!(codec.encode(subscribe(1, &[("a#", 0)]), &mut dst).is_err());
    assert!(codec.encode(suback(1, &[0x81]), &mut dst).is_err());
    assert!(dst.is_empty());
}

// ---- robustness --------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn fuzz_never_panics() {
    let seeds: Vec<Vec<u8>> = all_packets().iter().map(encode).collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    for case in 0..20_000 {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        match case % 5 {
            0 => bytes.truncate(rng.below(bytes.len() + 1)),
            1 | 2 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
            }
            3 => {
                let extra = seeds[rng.below(seeds.len())].clone();
                bytes.extend(extra);
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            _ => bytes = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        }
        let mut codec = MqttCodec::new(4096);
        let mut buf = BytesMut::new();
        let mut fed = 0;
        'feed: while fed < bytes.len() {
            let chunk = 1 + rng.below(bytes.len() - fed);
            buf.extend_from_slice(&bytes[fed..fed + chunk]);
            fed += chunk;
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => decoded += 1,
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
    assert!(
        decoded > 1000,
        "mutations should leave many packets decodable ({decoded})"
    );
}
