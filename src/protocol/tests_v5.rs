//! Unit tests of the MQTT 5 codec: a round trip of every packet type, the exact bytes of
//! the short forms, every class of error with its reason code, the version switch at
//! CONNECT, robustness (truncations, mutations, claimed lengths, errors that leave the
//! codec usable), the allocation-free PUBLISH encoding, and a cross-check with
//! `rmqtt-codec` in both directions.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::packet::{Auth, Unsubscribe, UserProperties};
use super::*;

const MAX: usize = 1 << 20;

// ---- wire helpers, independent of the encoder under test ----

/// A Variable Byte Integer (§1.5.5).
fn vbi(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A frame with the given first byte and body.
fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(vbi(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary.
fn s(x: impl AsRef<[u8]>) -> Vec<u8> {
    let x = x.as_ref();
    let mut out = (x.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(x);
    out
}

/// A property block: length, then the properties.
fn props(items: &[&[u8]]) -> Vec<u8> {
    let body = items.concat();
    let mut out = vbi(body.len());
    out.extend(body);
    out
}

/// Concatenates byte pieces.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A user property.
fn up(k: &str, v: &str) -> Vec<u8> {
    cat(&[&[0x26], &s(k), &s(v)])
}

/// A codec at level 5.
fn codec5() -> MqttCodec {
    let mut c = MqttCodec::new(MAX);
    c.set_version(5);
    c
}

fn decode5(bytes: &[u8]) -> Result<Option<Packet>, DecodeError> {
    codec5().decode(&mut BytesMut::from(bytes))
}

fn decode5_ok(bytes: &[u8]) -> Packet {
    match decode5(bytes) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet from {bytes:02x?}, got {other:?}"),
    }
}

fn encode5(packet: &Packet) -> Vec<u8> {
    let mut dst = BytesMut::new();
    codec5().encode(packet, &mut dst).unwrap();
    dst.to_vec()
}

/// Encodes as MQTT 5, decodes, compares; returns the bytes.
fn round_trip(packet: Packet) -> Vec<u8> {
    let bytes = encode5(&packet);
    let mut buf = BytesMut::from(&bytes[..]);
    let back = codec5().decode(&mut buf).unwrap().unwrap();
    assert_eq!(back, packet, "round trip of {bytes:02x?}");
    assert!(buf.is_empty());
    bytes
}

/// Asserts a Malformed Packet (0x81) whose reason contains `needle`.
fn assert_malformed(bytes: &[u8], needle: &str) {
    match decode5(bytes) {
        Err(e @ DecodeError::Malformed(_)) => {
            assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
            assert_eq!(e.reason_code(), reason::MALFORMED_PACKET);
        }
        other => panic!("expected Malformed({needle:?}), got {other:?}"),
    }
}

/// Asserts a Protocol Error with reason code `code` whose reason contains `needle`.
fn assert_protocol(bytes: &[u8], code: u8, needle: &str) {
    match decode5(bytes) {
        Err(e @ DecodeError::Protocol { .. }) => {
            assert!(e.to_string().contains(needle), "{e} lacks {needle:?}");
            assert_eq!(e.reason_code(), code, "{e}");
        }
        other => panic!("expected Protocol({code:#04x}, {needle:?}), got {other:?}"),
    }
}

// ---- sample packets ----

fn user() -> UserProperties {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "v2".into()),
        ("ü".into(), "".into()),
    ]
}

fn full_publish_properties() -> PublishProperties {
    PublishProperties {
        payload_format: Some(1),
        message_expiry: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\xffid")),
        user: user(),
    }
}

fn full_connect() -> Connect {
    Connect {
        level: 5,
        client_id: "client-1".into(),
        clean_session: true,
        keep_alive: 30,
        username: Some("user".into()),
        password: Some(b"\x00secret".to_vec()),
        will: Some(Will {
            topic: "will/topic".into(),
            payload: Bytes::from_static(b"gone"),
            qos: 1,
            retain: true,
            delay: 5,
            properties: Some(Arc::new(full_publish_properties())),
        }),
        properties: ConnectProperties {
            session_expiry: Some(0xFFFF_FFFF),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user: user(),
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"\x01\x02")),
        },
    }
}

fn full_connack() -> ConnAck {
    ConnAck {
        session_present: true,
        code: reason::SUCCESS,
        properties: ConnAckProperties {
            session_expiry: Some(7200),
            receive_maximum: Some(100),
            maximum_qos: Some(1),
            retain_available: Some(false),
            maximum_packet_size: Some(1 << 20),
            assigned_client_id: Some("brook-0123".into()),
            topic_alias_maximum: Some(10),
            reason_string: Some("welcome".into()),
            user: user(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(false),
            shared_subscription_available: Some(true),
            server_keep_alive: Some(60),
            response_information: Some("resp/".into()),
            server_reference: Some("other:1883".into()),
            authentication_method: Some("m".into()),
            authentication_data: Some(Bytes::from_static(b"d")),
        },
    }
}

fn full_publish() -> Publish {
    Publish {
        topic: "sensors/t1".into(),
        payload: Bytes::from_static(b"{\"t\":21}"),
        qos: 1,
        retain: true,
        dup: true,
        pkid: 7,
        topic_alias: Some(3),
        subscription_ids: vec![1, 268_435_455, 128],
        properties: Some(Arc::new(full_publish_properties())),
        message_expiry_left: None,
    }
}

fn full_ack(pkid: u16, reason: u8) -> Ack {
    Ack {
        pkid,
        reason,
        reason_string: Some("why".into()),
        user: user(),
    }
}

fn options(qos: u8, no_local: bool, rap: bool, rh: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local,
        retain_as_published: rap,
        retain_handling: rh,
    }
}

fn full_subscribe() -> Subscribe {
    Subscribe {
        pkid: 9,
        filters: vec![
            ("a/+/c".into(), options(2, true, true, 2)),
            ("$share/group/b/#".into(), options(1, false, false, 1)),
            ("#".into(), options(0, false, true, 0)),
        ],
        id: Some(268_435_455),
        user: user(),
    }
}

fn full_disconnect() -> Disconnect {
    Disconnect {
        reason: reason::SESSION_TAKEN_OVER,
        session_expiry: Some(0),
        reason_string: Some("taken over".into()),
        server_reference: Some("elsewhere".into()),
        user: user(),
    }
}

fn full_auth() -> Auth {
    Auth {
        reason: reason::CONTINUE_AUTHENTICATION,
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"data")),
        reason_string: Some("more".into()),
        user: user(),
    }
}

/// Every packet type, with all its properties and in its shortest form.
fn all_packets() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(full_connect())),
        Packet::Connect(Box::new(Connect {
            level: 5,
            client_id: "".into(),
            ..Connect::default()
        })),
        Packet::ConnAck(full_connack()),
        Packet::ConnAck(ConnAck {
            code: reason::BAD_USER_NAME_OR_PASSWORD,
            ..ConnAck::default()
        }),
        Packet::Publish(full_publish()),
        Packet::Publish(Publish {
            topic: "a".into(),
            payload: Bytes::new(),
            ..Publish::default()
        }),
        Packet::Publish(Publish {
            topic: "".into(),
            topic_alias: Some(1),
            qos: 2,
            pkid: 65_535,
            payload: Bytes::from_static(b"p"),
            ..Publish::default()
        }),
        Packet::PubAck(full_ack(1, reason::NO_MATCHING_SUBSCRIBERS)),
        Packet::PubAck(Ack::ok(1)),
        Packet::PubAck(Ack::with_reason(2, reason::QUOTA_EXCEEDED)),
        Packet::PubRec(full_ack(3, reason::SUCCESS)),
        Packet::PubRec(Ack::ok(3)),
        Packet::PubRel(full_ack(4, reason::PACKET_IDENTIFIER_NOT_FOUND)),
        Packet::PubRel(Ack::ok(4)),
        Packet::PubComp(full_ack(5, reason::SUCCESS)),
        Packet::PubComp(Ack::with_reason(5, reason::PACKET_IDENTIFIER_NOT_FOUND)),
        Packet::Subscribe(full_subscribe()),
        Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![("t".into(), SubscriptionOptions::default())],
            ..Subscribe::default()
        }),
        Packet::SubAck(SubAck {
            pkid: 9,
            codes: vec![0, 1, 2, 0x80, 0x87, 0x8F, 0x9E, 0xA1, 0xA2],
            reason_string: Some("partly".into()),
            user: user(),
        }),
        Packet::SubAck(SubAck {
            pkid: 1,
            codes: vec![0],
            ..SubAck::default()
        }),
        Packet::Unsubscribe(Unsubscribe {
            pkid: 10,
            filters: vec!["a/+".into(), "$share/g/#".into()],
            user: user(),
        }),
        Packet::UnsubAck(UnsubAck {
            pkid: 10,
            codes: vec![0x00, 0x11, 0x87],
            reason_string: Some("r".into()),
            user: user(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(full_disconnect()),
        Packet::Disconnect(Disconnect::default()),
        Packet::Disconnect(Disconnect {
            reason: reason::DISCONNECT_WITH_WILL,
            ..Disconnect::default()
        }),
        Packet::Auth(full_auth()),
        Packet::Auth(Auth::default()),
    ]
}

// ---- round trips and exact bytes ----

#[test]
fn every_packet_type_round_trips() {
    let packets = all_packets();
    let mut kinds = std::collections::BTreeSet::new();
    for p in packets {
        let bytes = round_trip(p);
        kinds.insert(bytes[0] >> 4);
    }
    assert_eq!(kinds.len(), 15, "all 15 packet types: {kinds:?}");
}

#[test]
fn all_packets_in_one_stream_decode_in_order() {
    let packets = all_packets();
    let mut buf = BytesMut::new();
    let mut enc = codec5();
    for p in &packets {
        enc.encode(p, &mut buf).unwrap();
    }
    let mut dec = codec5();
    for p in &packets {
        assert_eq!(dec.decode(&mut buf).unwrap().as_ref(), Some(p));
    }
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
}

#[test]
fn short_forms_are_used_and_understood() {
    // Reason 0 without properties: the packet identifier alone (§3.4.2.1).
    assert_eq!(encode5(&Packet::PubAck(Ack::ok(1))), [0x40, 2, 0, 1]);
    assert_eq!(encode5(&Packet::PubRel(Ack::ok(1))), [0x62, 2, 0, 1]);
    // A reason without properties: no property length (§3.4.2.2.1).
    assert_eq!(
        encode5(&Packet::PubRec(Ack::with_reason(1, 0x10))),
        [0x50, 3, 0, 1, 0x10]
    );
    // DISCONNECT and AUTH: remaining length 0 means success (§3.14.2.1, §3.15.2.1).
    assert_eq!(
        encode5(&Packet::Disconnect(Disconnect::default())),
        [0xE0, 0]
    );
    assert_eq!(encode5(&Packet::Auth(Auth::default())), [0xF0, 0]);
    assert_eq!(
        encode5(&Packet::Disconnect(Disconnect {
            reason: 4,
            ..Disconnect::default()
        })),
        [0xE0, 1, 4]
    );
    // The long forms decode to the same packets.
    assert_eq!(
        decode5_ok(&[0x40, 4, 0, 1, 0, 0]),
        Packet::PubAck(Ack::ok(1))
    );
    assert_eq!(
        decode5_ok(&[0xE0, 2, 0, 0]),
        Packet::Disconnect(Disconnect::default())
    );
    assert_eq!(encode5(&Packet::PingReq), [0xC0, 0]);
}

#[test]
fn publish_without_properties_has_the_expected_bytes() {
    let p = Publish {
        pkid: 5,
        ..Publish::new("a/b", Bytes::from_static(b"hello"), 1, true)
    };
    let want = [
        0x33, 0x0D, 0, 3, b'a', b'/', b'b', 0, 5, 0, b'h', b'e', b'l', b'l', b'o',
    ];
    assert_eq!(encode5(&Packet::Publish(p.clone())), want);
    let mut dst = BytesMut::new();
    encode_publish(&p, 5, &mut dst);
    assert_eq!(&dst[..], want);
    assert_eq!(publish_size(&p, 5), Some(want.len()));
    assert_eq!(publish_size(&p, 4), Some(want.len() - 1));
}

#[test]
fn publish_size_is_exact() {
    for p in all_packets() {
        if let Packet::Publish(p) = p {
            let mut dst = BytesMut::new();
            encode_publish(&p, 5, &mut dst);
            assert_eq!(publish_size(&p, 5), Some(dst.len()));
        }
    }
    let big = Publish::new("t", vec![7u8; 20_000], 0, false);
    let mut dst = BytesMut::new();
    encode_publish(&big, 5, &mut dst);
    assert_eq!(publish_size(&big, 5), Some(dst.len()));
}

#[test]
fn message_expiry_left_replaces_the_received_interval() {
    let p = Publish {
        message_expiry_left: Some(12),
        ..full_publish()
    };
    let Packet::Publish(back) = decode5_ok(&encode5(&Packet::Publish(p))) else {
        panic!()
    };
    let props = back.properties.unwrap();
    assert_eq!(props.message_expiry, Some(12));
    // Everything else is as it came.
    assert_eq!(
        *props,
        PublishProperties {
            message_expiry: Some(12),
            ..full_publish_properties()
        }
    );
}

#[test]
fn hand_made_publish_decodes_with_every_property() {
    let body = cat(&[
        &s("sensors/t"),
        &[0, 7],
        &props(&[
            &[0x01, 1],
            &[0x02, 0, 0, 0, 30],
            &cat(&[&[0x03], &s("text/plain")]),
            &cat(&[&[0x08], &s("r/t")]),
            &cat(&[&[0x09], &s(b"\xff\x00")]),
            &[0x0B, 0x80, 0x01],
            &[0x0B, 0x05],
            &[0x23, 0, 3],
            &up("k", "v"),
            &up("k", "v2"),
        ]),
        b"payload",
    ]);
    let Packet::Publish(p) = decode5_ok(&frame(0x32, &body)) else {
        panic!()
    };
    assert_eq!((&*p.topic, p.pkid, p.qos), ("sensors/t", 7, 1));
    assert_eq!(p.topic_alias, Some(3));
    assert_eq!(p.subscription_ids, [128, 5]);
    assert_eq!(&p.payload[..], b"payload");
    let props = p.properties.unwrap();
    assert_eq!(props.payload_format, Some(1));
    assert_eq!(props.message_expiry, Some(30));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("r/t"));
    assert_eq!(props.correlation_data.as_deref(), Some(&b"\xff\x00"[..]));
    assert_eq!(
        props.user,
        [
            ("k".to_string(), "v".to_string()),
            ("k".into(), "v2".into())
        ]
    );
}

#[test]
fn hand_made_connect_decodes() {
    let body = cat(&[
        &s("MQTT"),
        &[5, 0xC0 | 0x04 | 0x08 | 0x20 | 0x02, 0, 30],
        &props(&[
            &[0x11, 0, 0, 0x0E, 0x10],
            &[0x21, 0, 20],
            &[0x27, 0, 1, 0, 0],
            &[0x22, 0, 10],
            &[0x19, 1],
            &[0x17, 0],
            &up("app", "x"),
        ]),
        &s("cid"),
        &props(&[&[0x18, 0, 0, 0, 5], &[0x01, 1]]),
        &s("will/t"),
        &s("bye"),
        &s("user"),
        &s("pw"),
    ]);
    let mut codec = MqttCodec::new(MAX);
    let Some(Packet::Connect(c)) = codec
        .decode(&mut BytesMut::from(&frame(0x10, &body)[..]))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(codec.version(), 5, "an MQTT 5 CONNECT switches the codec");
    assert_eq!(
        (c.level, c.client_id.as_str(), c.clean_session, c.keep_alive),
        (5, "cid", true, 30)
    );
    assert_eq!(c.properties.session_expiry, Some(3600));
    assert_eq!(c.properties.receive_maximum, Some(20));
    assert_eq!(c.properties.maximum_packet_size, Some(65_536));
    assert_eq!(c.properties.topic_alias_maximum, Some(10));
    assert_eq!(c.properties.request_response_information, Some(true));
    assert_eq!(c.properties.request_problem_information, Some(false));
    let w = c.will.unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..], w.qos, w.retain, w.delay),
        ("will/t", &b"bye"[..], 1, true, 5)
    );
    assert_eq!(w.properties.unwrap().payload_format, Some(1));
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn password_without_user_name_is_allowed() {
    let body = cat(&[&s("MQTT"), &[5, 0x42, 0, 0], &props(&[]), &s(""), &s("pw")]);
    let Packet::Connect(c) = decode5_ok(&frame(0x10, &body)) else {
        panic!()
    };
    assert_eq!((c.username, c.password), (None, Some(b"pw".to_vec())));
}

// ---- version switching ----

#[test]
fn version_follows_connect_and_set_version() {
    let mut codec = MqttCodec::new(MAX);
    assert_eq!(codec.version(), 4);
    // AUTH is a reserved type before MQTT 5.
    assert!(matches!(
        codec.decode(&mut BytesMut::from(&[0xF0u8, 0][..])),
        Err(DecodeError::Malformed(_))
    ));
    codec.set_version(5);
    assert_eq!(codec.version(), 5);
    assert_eq!(
        codec.decode(&mut BytesMut::from(&[0xF0u8, 0][..])).unwrap(),
        Some(Packet::Auth(Auth::default()))
    );
    // A 3.1.1 CONNECT switches back, and a PUBLISH is read without properties.
    let mut buf = BytesMut::from(&frame(0x10, &cat(&[&s("MQTT"), &[4, 2, 0, 60], &s("c")]))[..]);
    buf.extend_from_slice(&frame(0x30, &cat(&[&s("a"), b"x"])));
    assert!(matches!(
        codec.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(codec.version(), 4);
    let Ok(Some(Packet::Publish(p))) = codec.decode(&mut buf) else {
        panic!()
    };
    assert_eq!(&p.payload[..], b"x");
    // Encoding a CONNECT switches too (a client's codec).
    let mut dst = BytesMut::new();
    codec
        .encode(&Packet::Connect(Box::new(full_connect())), &mut dst)
        .unwrap();
    assert_eq!(codec.version(), 5);
    assert!(
        dst[..12].windows(5).any(|w| w == b"MQTT\x05"),
        "name and level 5"
    );
    codec
        .encode(&Packet::PubAck(Ack::with_reason(1, 0x10)), &mut dst)
        .unwrap();
    assert_eq!(&dst[dst.len() - 5..], [0x40, 3, 0, 1, 0x10]);
}

#[test]
fn broken_v5_connect_still_switches_to_v5() {
    // Duplicate session expiry: a Protocol Error, answered by an MQTT 5 CONNACK.
    let body = cat(&[
        &s("MQTT"),
        &[5, 2, 0, 0],
        &props(&[&[0x11, 0, 0, 0, 1], &[0x11, 0, 0, 0, 2]]),
        &s("c"),
    ]);
    let mut codec = MqttCodec::new(MAX);
    let err = codec
        .decode(&mut BytesMut::from(&frame(0x10, &body)[..]))
        .unwrap_err();
    assert_eq!(codec.version(), 5);
    assert_eq!(err.reason_code(), reason::PROTOCOL_ERROR);
    assert_eq!(err.connack_v5(), Some(reason::PROTOCOL_ERROR));
    assert_eq!(err.connack_code(), None);
}

// ---- error classes ----

#[test]
fn reason_codes_of_the_error_classes() {
    assert_eq!(
        DecodeError::TooLarge { size: 10, max: 5 }.reason_code(),
        reason::PACKET_TOO_LARGE
    );
    assert_eq!(
        DecodeError::Malformed("x".into()).reason_code(),
        reason::MALFORMED_PACKET
    );
    assert_eq!(
        DecodeError::Protocol {
            reason: 0x94,
            why: "x".into()
        }
        .reason_code(),
        0x94
    );
}

#[test]
fn duplicate_properties_are_protocol_errors() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (
            0x30,
            cat(&[&s("a"), &props(&[&[0x02, 0, 0, 0, 1], &[0x02, 0, 0, 0, 2]])]),
        ),
        (
            0x30,
            cat(&[&s("a"), &props(&[&[0x23, 0, 1], &[0x23, 0, 1]])]),
        ),
        (0x30, cat(&[&s("a"), &props(&[&[0x01, 0], &[0x01, 0]])])),
        (0x20, cat(&[&[0, 0], &props(&[&[0x24, 0], &[0x24, 1]])])),
        (
            0x40,
            cat(&[
                &[0, 1, 0],
                &props(&[&cat(&[&[0x1F], &s("a")]), &cat(&[&[0x1F], &s("b")])]),
            ]),
        ),
        (
            0x82,
            cat(&[&[0, 1], &props(&[&[0x0B, 1], &[0x0B, 2]]), &s("t"), &[0]]),
        ),
        (
            0xE0,
            cat(&[&[0], &props(&[&[0x11, 0, 0, 0, 0], &[0x11, 0, 0, 0, 0]])]),
        ),
        (
            0xF0,
            cat(&[
                &[0x18],
                &props(&[&cat(&[&[0x15], &s("m")]), &cat(&[&[0x15], &s("m")])]),
            ]),
        ),
    ];
    for (first, body) in cases {
        assert_protocol(
            &frame(first, &body),
            reason::PROTOCOL_ERROR,
            "more than once",
        );
    }
}

#[test]
fn repeatable_properties_may_repeat() {
    // User properties anywhere, subscription identifiers in a PUBLISH.
    let body = cat(&[
        &s("a"),
        &props(&[&up("a", "1"), &up("a", "1"), &[0x0B, 1], &[0x0B, 1]]),
    ]);
    let Packet::Publish(p) = decode5_ok(&frame(0x30, &body)) else {
        panic!()
    };
    assert_eq!(p.subscription_ids, [1, 1]);
    assert_eq!(p.properties.unwrap().user.len(), 2);
}

#[test]
fn topic_alias_0_is_0x94() {
    let body = cat(&[&s("a"), &props(&[&[0x23, 0, 0]])]);
    assert_protocol(
        &frame(0x30, &body),
        reason::TOPIC_ALIAS_INVALID,
        "topic alias is 0",
    );
}

#[test]
fn subscription_identifier_0_is_a_protocol_error() {
    let sub = cat(&[&[0, 1], &props(&[&[0x0B, 0]]), &s("t"), &[0]]);
    assert_protocol(
        &frame(0x82, &sub),
        reason::PROTOCOL_ERROR,
        "subscription identifier is 0",
    );
    let publish = cat(&[&s("t"), &props(&[&[0x0B, 0]])]);
    assert_protocol(
        &frame(0x30, &publish),
        reason::PROTOCOL_ERROR,
        "subscription identifier is 0",
    );
}

#[test]
fn wildcards_in_a_topic_name_are_0x90() {
    for topic in ["a/+", "#", "a/#", "+"] {
        let body = cat(&[&s(topic), &props(&[])]);
        assert_protocol(&frame(0x30, &body), reason::TOPIC_NAME_INVALID, "wildcard");
    }
    // The will topic is a topic name too.
    let body = cat(&[
        &s("MQTT"),
        &[5, 0x06, 0, 0],
        &props(&[]),
        &s("c"),
        &props(&[]),
        &s("w/+"),
        &s("x"),
    ]);
    assert!(matches!(
        decode5(&frame(0x10, &body)),
        Err(DecodeError::Connect5(e)) if e.reason_code() == reason::TOPIC_NAME_INVALID
    ));
    // An empty topic needs an alias (§3.3.2.1).
    assert_protocol(
        &frame(0x30, &cat(&[&s(""), &props(&[])])),
        reason::PROTOCOL_ERROR,
        "no topic alias",
    );
}

#[test]
fn subscription_options_are_checked() {
    let sub = |opts: u8| frame(0x82, &cat(&[&[0, 1], &props(&[]), &s("t"), &[opts]]));
    assert_malformed(&sub(0x40), "reserved bits of the subscription options");
    assert_malformed(&sub(0x80), "reserved bits of the subscription options");
    assert_protocol(&sub(0x03), reason::PROTOCOL_ERROR, "maximum QoS 3");
    assert_protocol(&sub(0x30), reason::PROTOCOL_ERROR, "retain handling 3");
    let Packet::Subscribe(decoded) = decode5_ok(&sub(0x2E)) else {
        panic!()
    };
    assert_eq!(decoded.filters[0].1, options(2, true, true, 2));
    // No local on a shared subscription ([MQTT-3.8.3-4]).
    let shared = frame(
        0x82,
        &cat(&[&[0, 1], &props(&[]), &s("$share/g/t"), &[0x04]]),
    );
    assert_protocol(&shared, reason::PROTOCOL_ERROR, "no local");
    // Bad filters are the session's to answer (SUBACK 0x8F per filter):
    // the packet decodes.
    for filter in ["a/#/b", "$share//t"] {
        let bad = frame(0x82, &cat(&[&[0, 1], &props(&[]), &s(filter), &[0]]));
        let mut codec = MqttCodec::new(1 << 20);
        codec.set_version(5);
        let mut buf = bytes::BytesMut::from(&bad[..]);
        assert!(
            matches!(codec.decode(&mut buf), Ok(Some(Packet::Subscribe(_)))),
            "{filter}"
        );
    }
    // No filters at all.
    assert_protocol(
        &frame(0x82, &cat(&[&[0, 1], &props(&[])])),
        reason::PROTOCOL_ERROR,
        "no topic filters",
    );
}

#[test]
fn properties_not_allowed_in_the_packet_are_malformed() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        // Session expiry in a PUBACK.
        (0x40, cat(&[&[0, 1, 0], &props(&[&[0x11, 0, 0, 0, 1]])])),
        // Topic alias in a CONNECT's will.
        (
            0x10,
            cat(&[
                &s("MQTT"),
                &[5, 0x04, 0, 0],
                &props(&[]),
                &s("c"),
                &props(&[&[0x23, 0, 1]]),
                &s("w"),
                &s("x"),
            ]),
        ),
        // Will delay in a PUBLISH.
        (0x30, cat(&[&s("a"), &props(&[&[0x18, 0, 0, 0, 1]])])),
        // Subscription identifier in an UNSUBSCRIBE.
        (0xA2, cat(&[&[0, 1], &props(&[&[0x0B, 1]]), &s("t")])),
        // Reason string in a SUBSCRIBE.
        (
            0x82,
            cat(&[&[0, 1], &props(&[&cat(&[&[0x1F], &s("r")])]), &s("t"), &[0]]),
        ),
        // Assigned client identifier in a DISCONNECT.
        (0xE0, cat(&[&[0], &props(&[&cat(&[&[0x12], &s("c")])])])),
        // Maximum QoS in a CONNECT.
        (
            0x10,
            cat(&[&s("MQTT"), &[5, 2, 0, 0], &props(&[&[0x24, 0]]), &s("c")]),
        ),
        // Topic alias in an AUTH.
        (
            0xF0,
            cat(&[&[0x18], &props(&[&cat(&[&[0x15], &s("m")]), &[0x23, 0, 1]])]),
        ),
    ];
    for (first, body) in cases {
        let err = decode5(&frame(first, &body)).unwrap_err();
        assert_eq!(err.reason_code(), reason::MALFORMED_PACKET, "{err}");
        assert!(err.to_string().contains("is not allowed in"), "{err}");
    }
    assert_malformed(
        &frame(0x30, &cat(&[&s("a"), &props(&[&[0x04, 0]])])),
        "unknown property identifier 0x04",
    );
    assert_malformed(
        &frame(0x30, &cat(&[&s("a"), &props(&[&[0x80, 0x01]])])),
        "unknown property identifier 0x80",
    );
}

#[test]
fn property_values_are_checked() {
    let connect = |p: &[u8]| {
        frame(
            0x10,
            &cat(&[&s("MQTT"), &[5, 2, 0, 0], &props(&[p]), &s("c")]),
        )
    };
    let code = |bytes: &[u8]| decode5(bytes).unwrap_err().reason_code();
    assert_eq!(
        code(&connect(&[0x21, 0, 0])),
        reason::PROTOCOL_ERROR,
        "receive maximum 0"
    );
    assert_eq!(
        code(&connect(&[0x27, 0, 0, 0, 0])),
        reason::PROTOCOL_ERROR,
        "max packet size 0"
    );
    assert_eq!(
        code(&connect(&[0x17, 2])),
        reason::PROTOCOL_ERROR,
        "request problem info 2"
    );
    assert_eq!(code(&connect(&[0x19, 2])), reason::PROTOCOL_ERROR);
    assert_eq!(
        code(&connect(&cat(&[&[0x16], &s("d")]))),
        reason::PROTOCOL_ERROR,
        "auth data without method"
    );
    let connack = |p: &[u8]| frame(0x20, &cat(&[&[0, 0], &props(&[p])]));
    assert_eq!(
        code(&connack(&[0x24, 2])),
        reason::PROTOCOL_ERROR,
        "maximum QoS 2"
    );
    assert_eq!(code(&connack(&[0x25, 7])), reason::PROTOCOL_ERROR);
    assert_eq!(code(&connack(&[0x21, 0, 0])), reason::PROTOCOL_ERROR);
    let publish = |p: &[u8]| frame(0x30, &cat(&[&s("a"), &props(&[p])]));
    assert_eq!(
        code(&publish(&[0x01, 2])),
        reason::PROTOCOL_ERROR,
        "payload format 2"
    );
    assert_eq!(
        code(&publish(&cat(&[&[0x08], &s("r/+")]))),
        reason::PROTOCOL_ERROR,
        "response topic"
    );
    // Ill-formed values are malformed: a truncated four-byte integer, bad UTF-8,
    // U+0000, a user property without its value, a five-byte Variable Byte Integer.
    assert_malformed(&publish(&[0x02, 0, 0]), "message expiry interval missing");
    assert_malformed(&publish(&[0x03, 0, 2, 0xC3, 0x28]), "not valid UTF-8");
    assert_malformed(&publish(&[0x03, 0, 1, 0x00]), "content type");
    assert_malformed(
        &publish(&cat(&[&[0x26], &s("k")])),
        "user property value missing",
    );
    assert_malformed(
        &publish(&[0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        "longer than 4 bytes",
    );
    // A property length past the end of the packet.
    assert_malformed(
        &frame(0x30, &cat(&[&s("a"), &vbi(200), &[1, 1]])),
        "property length runs past the end",
    );
}

#[test]
fn packet_identifier_0_and_missing_parts_are_refused() {
    assert_protocol(
        &frame(0x32, &cat(&[&s("a"), &[0, 0], &props(&[])])),
        reason::PROTOCOL_ERROR,
        "packet identifier is 0",
    );
    assert_protocol(
        &frame(0x82, &cat(&[&[0, 0], &props(&[]), &s("t"), &[0]])),
        reason::PROTOCOL_ERROR,
        "packet identifier is 0",
    );
    assert_protocol(
        &frame(0x90, &cat(&[&[0, 1], &props(&[])])),
        reason::PROTOCOL_ERROR,
        "no reason codes",
    );
    assert_protocol(
        &frame(0xF0, &cat(&[&[0x18], &props(&[])])),
        reason::PROTOCOL_ERROR,
        "no authentication method",
    );
    // AUTH's property length has no default.
    assert_malformed(&frame(0xF0, &[0x18]), "property length missing");
    // Trailing bytes after a DISCONNECT's properties.
    assert_malformed(&frame(0xE0, &[0, 0, 9]), "trailing");
    // PINGREQ keeps its fixed length.
    assert!(matches!(
        decode5(&[0xC0, 1, 0]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn too_large_is_0x95_before_the_body_arrives() {
    let mut codec = MqttCodec::new(100);
    codec.set_version(5);
    let mut buf = BytesMut::from(&[0x30u8, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let cap = buf.capacity();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }));
    assert_eq!(err.reason_code(), reason::PACKET_TOO_LARGE);
    assert_eq!(
        buf.capacity(),
        cap,
        "nothing reserved for the claimed length"
    );
}

// ---- robustness ----

#[test]
fn an_error_does_not_wedge_the_codec() {
    let mut codec = codec5();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&frame(0x30, &cat(&[&s("a"), &props(&[&[0x23, 0, 0]])])));
    buf.extend_from_slice(&frame(0x30, &cat(&[&s("a/+"), &props(&[])])));
    buf.extend_from_slice(&frame(
        0x40,
        &cat(&[&[0, 1, 0], &props(&[&[0x11, 0, 0, 0, 1]])]),
    ));
    buf.extend_from_slice(&encode5(&Packet::PingReq));
    assert_eq!(codec.decode(&mut buf).unwrap_err().reason_code(), 0x94);
    assert_eq!(codec.decode(&mut buf).unwrap_err().reason_code(), 0x90);
    assert_eq!(codec.decode(&mut buf).unwrap_err().reason_code(), 0x81);
    // Each bad frame was consumed whole; the next packet decodes.
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Packet::PingReq));
    assert!(buf.is_empty());
    assert_eq!(codec.version(), 5);
}

#[test]
fn truncations_and_mutations_never_panic() {
    for p in all_packets() {
        let bytes = encode5(&p);
        // Every prefix: incomplete, never a packet or a panic.
        for n in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..n]);
            assert!(matches!(codec5().decode(&mut buf), Ok(None) | Err(_)));
        }
        // The body cut short under a fixed header that says so: an error, never a panic.
        let header = 1 + vbi(bytes.len() - 2).len();
        for n in header..bytes.len() {
            let body = &bytes[header..n];
            let _ = decode5(&frame(bytes[0], body));
        }
        // Every byte changed to a few values.
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut m = bytes.clone();
                m[i] = v;
                let _ = decode5(&m);
            }
        }
    }
}

#[test]
fn many_properties_decode_without_recursion() {
    // 10,000 user properties: one flat loop.
    let one = up("k", "v");
    let many: Vec<&[u8]> = std::iter::repeat_n(&one[..], 10_000).collect();
    let body = cat(&[&s("a"), &props(&many)]);
    let Packet::Publish(p) = decode5_ok(&frame(0x30, &body)) else {
        panic!()
    };
    assert_eq!(p.properties.unwrap().user.len(), 10_000);
}

#[test]
fn unencodable_packets_are_errors_and_write_nothing() {
    let mut dst = BytesMut::new();
    let long = "x".repeat(70_000);
    for p in [
        Packet::Publish(Publish::new(long.as_str(), Bytes::new(), 0, false)),
        Packet::Publish(Publish {
            subscription_ids: vec![0],
            ..Publish::new("t", Bytes::new(), 0, false)
        }),
        Packet::Publish(Publish {
            topic_alias: Some(0),
            ..Publish::new("t", Bytes::new(), 0, false)
        }),
        Packet::Subscribe(Subscribe {
            pkid: 1,
            filters: vec![("t".into(), options(3, false, false, 0))],
            ..Subscribe::default()
        }),
        Packet::Disconnect(Disconnect {
            reason_string: Some(long.clone()),
            ..Disconnect::default()
        }),
    ] {
        assert!(codec5().encode(&p, &mut dst).is_err(), "{p:?}");
        assert!(dst.is_empty());
    }
    let p = Publish::new(long.as_str(), Bytes::new(), 0, false);
    assert_eq!(publish_size(&p, 5), None);
}

// ---- the allocation-free PUBLISH ----

/// Counts the allocations of the current thread, for the test below.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    /// The system allocator, counting each thread's allocations.
    pub(super) struct Counting;

    // SAFETY: every call goes to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract is passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: the caller's contract is passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    /// Allocations made by this thread so far.
    pub(super) fn count() -> usize {
        COUNT.with(Cell::get)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn publish_without_properties_encodes_without_allocating() {
    let p = Publish {
        pkid: 3,
        ..Publish::new("sensors/device-1/temp", vec![1u8; 300], 1, false)
    };
    let mut dst = BytesMut::with_capacity(4096);
    // The counter sees an allocation.
    let before = counting::count();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert!(counting::count() > before);
    let before = counting::count();
    for _ in 0..100 {
        encode_publish(&p, 5, &mut dst);
        dst.clear();
    }
    assert_eq!(counting::count() - before, 0, "allocations while encoding");
    // With subscription identifiers, a topic alias and the expiry left: still none.
    let p = Publish {
        subscription_ids: vec![1, 2],
        topic_alias: Some(4),
        message_expiry_left: Some(9),
        ..p
    };
    let before = counting::count();
    encode_publish(&p, 5, &mut dst);
    assert_eq!(counting::count() - before, 0);
}

// ---- cross-check with rmqtt-codec ----

/// `rmqtt-codec`'s MQTT 5 codec on our packets and ours on its: encoded with one,
/// decoded with the other, in both directions. Its model loses a few distinctions
/// (an absent property and its default value: receive maximum 65535, request problem
/// information 1, payload format 0...), so the samples avoid those values.
mod cross {
    use std::num::{NonZeroU16, NonZeroU32};

    use bytes::{Bytes, BytesMut};
    use rmqtt_codec::types::{Publish as RPublish, QoS};
    use rmqtt_codec::v5 as r;
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    fn nz16(v: u16) -> NonZeroU16 {
        NonZeroU16::new(v).unwrap()
    }

    fn nz32(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    fn rmqtt_decode(bytes: &[u8]) -> r::Packet {
        let mut buf = BytesMut::from(bytes);
        let (p, _) = r::Codec::new(0, 0).decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        p
    }

    fn rmqtt_encode(p: r::Packet) -> Vec<u8> {
        let mut dst = BytesMut::new();
        r::Codec::new(0, 0).encode(p, &mut dst).unwrap();
        dst.to_vec()
    }

    /// Ours → rmqtt → rmqtt's encoding → ours: nothing lost or changed.
    fn via_rmqtt(p: Packet) {
        let theirs = rmqtt_decode(&encode5(&p));
        let back = decode5_ok(&rmqtt_encode(theirs.clone()));
        assert_eq!(back, p, "through rmqtt-codec as {theirs:?}");
    }

    /// Samples of every packet type without the values rmqtt-codec cannot tell apart
    /// from an absent property.
    fn samples() -> Vec<Packet> {
        let mut connect = full_connect();
        connect.properties.request_problem_information = Some(false);
        let mut connack = full_connack();
        // rmqtt-codec writes these booleans only when false, as their absence means true.
        connack.properties.wildcard_subscription_available = Some(false);
        connack.properties.shared_subscription_available = None;
        vec![
            Packet::Connect(Box::new(connect)),
            Packet::ConnAck(connack),
            Packet::Publish(full_publish()),
            Packet::Publish(Publish {
                pkid: 2,
                ..Publish::new("a/b", Bytes::from_static(b"x"), 2, false)
            }),
            Packet::PubAck(full_ack(1, reason::NO_MATCHING_SUBSCRIBERS)),
            Packet::PubAck(Ack::ok(1)),
            Packet::PubRec(full_ack(3, reason::QUOTA_EXCEEDED)),
            Packet::PubRel(full_ack(4, reason::PACKET_IDENTIFIER_NOT_FOUND)),
            Packet::PubComp(Ack::ok(5)),
            Packet::Subscribe(full_subscribe()),
            Packet::SubAck(SubAck {
                pkid: 9,
                codes: vec![0, 1, 2, 0x80, 0x87, 0x8F, 0x9E, 0xA1, 0xA2],
                reason_string: Some("partly".into()),
                user: user(),
            }),
            Packet::Unsubscribe(Unsubscribe {
                pkid: 10,
                filters: vec!["a/+".into(), "$share/g/#".into()],
                user: user(),
            }),
            Packet::UnsubAck(UnsubAck {
                pkid: 10,
                codes: vec![0x00, 0x11, 0x87],
                reason_string: Some("r".into()),
                user: user(),
            }),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect(full_disconnect()),
            Packet::Disconnect(Disconnect::default()),
            Packet::Auth(full_auth()),
        ]
    }

    #[test]
    fn our_encoding_decodes_in_rmqtt_and_back() {
        for p in samples() {
            via_rmqtt(p);
        }
    }

    #[test]
    fn rmqtt_publish_decodes_here_and_back() {
        let theirs = r::Packet::Publish(Box::new(RPublish {
            dup: false,
            retain: true,
            qos: QoS::AtLeastOnce,
            topic: "t/1".into(),
            packet_id: Some(nz16(77)),
            payload: Bytes::from_static(b"body"),
            properties: Some(r::PublishProperties {
                topic_alias: Some(nz16(2)),
                correlation_data: Some(Bytes::from_static(b"c")),
                message_expiry_interval: Some(nz32(60)),
                content_type: Some("text/plain".into()),
                user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
                is_utf8_payload: true,
                response_topic: Some("r/1".into()),
                subscription_ids: vec![nz32(5), nz32(300)],
            }),
        }));
        let Packet::Publish(p) = decode5_ok(&rmqtt_encode(theirs.clone())) else {
            panic!()
        };
        assert_eq!((&*p.topic, p.pkid, p.qos, p.retain), ("t/1", 77, 1, true));
        assert_eq!(&p.payload[..], b"body");
        assert_eq!(
            (p.topic_alias, &p.subscription_ids[..]),
            (Some(2), &[5, 300][..])
        );
        let props = p.properties.clone().unwrap();
        assert_eq!(
            *props,
            PublishProperties {
                payload_format: Some(1),
                message_expiry: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            }
        );
        assert_eq!(rmqtt_decode(&encode5(&Packet::Publish(p))), theirs);
    }

    #[test]
    fn rmqtt_connect_decodes_here_and_back() {
        let theirs = r::Packet::Connect(Box::new(r::Connect {
            clean_start: true,
            keep_alive: 45,
            session_expiry_interval_secs: 120,
            auth_method: Some("m".into()),
            auth_data: Some(Bytes::from_static(b"d")),
            request_problem_info: false,
            request_response_info: true,
            receive_max: Some(nz16(10)),
            topic_alias_max: 5,
            user_properties: vec![("u".into(), "v".into())],
            max_packet_size: Some(nz32(4096)),
            last_will: Some(r::LastWill {
                qos: QoS::ExactlyOnce,
                retain: false,
                topic: "w".into(),
                message: Bytes::from_static(b"bye"),
                will_delay_interval_sec: Some(30),
                correlation_data: None,
                message_expiry_interval: Some(nz32(10)),
                content_type: None,
                user_properties: vec![],
                is_utf8_payload: Some(true),
                response_topic: None,
            }),
            client_id: "cid".into(),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"pw")),
            cert: None,
        }));
        let Packet::Connect(c) = decode5_ok(&rmqtt_encode(theirs.clone())) else {
            panic!()
        };
        assert_eq!(
            (c.level, c.client_id.as_str(), c.clean_session, c.keep_alive),
            (5, "cid", true, 45)
        );
        assert_eq!(
            c.properties,
            ConnectProperties {
                session_expiry: Some(120),
                receive_maximum: Some(10),
                maximum_packet_size: Some(4096),
                topic_alias_maximum: Some(5),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user: vec![("u".into(), "v".into())],
                authentication_method: Some("m".into()),
                authentication_data: Some(Bytes::from_static(b"d")),
            }
        );
        let w = c.will.as_ref().unwrap();
        assert_eq!(
            (w.topic.as_str(), &w.payload[..], w.qos, w.retain, w.delay),
            ("w", &b"bye"[..], 2, false, 30)
        );
        let wp = w.properties.as_deref().unwrap();
        assert_eq!((wp.payload_format, wp.message_expiry), (Some(1), Some(10)));
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("user"), Some(&b"pw"[..]))
        );
        assert_eq!(rmqtt_decode(&encode5(&Packet::Connect(c))), theirs);
    }

    #[test]
    fn rmqtt_subscribe_and_acks_decode_here_and_back() {
        let theirs = vec![
            r::Packet::Subscribe(r::Subscribe {
                packet_id: nz16(3),
                id: Some(nz32(99)),
                user_properties: vec![],
                topic_filters: vec![
                    (
                        "a/#".into(),
                        r::SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: r::RetainHandling::NoAtSubscribe,
                        },
                    ),
                    (
                        "b".into(),
                        r::SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            no_local: false,
                            retain_as_published: false,
                            retain_handling: r::RetainHandling::AtSubscribeNew,
                        },
                    ),
                ],
            }),
            r::Packet::PublishAck(r::PublishAck {
                packet_id: nz16(1),
                reason_code: r::PublishAckReason::NotAuthorized,
                properties: vec![],
                reason_string: Some("acl".into()),
            }),
            r::Packet::PingRequest,
            r::Packet::Disconnect(r::Disconnect {
                reason_code: r::DisconnectReasonCode::ServerShuttingDown,
                session_expiry_interval_secs: None,
                server_reference: None,
                reason_string: Some("bye".into()),
                user_properties: vec![],
            }),
        ];
        let want = [
            Packet::Subscribe(Subscribe {
                pkid: 3,
                filters: vec![
                    ("a/#".into(), options(1, true, true, 2)),
                    ("b".into(), options(2, false, false, 1)),
                ],
                id: Some(99),
                user: vec![],
            }),
            Packet::PubAck(Ack {
                pkid: 1,
                reason: reason::NOT_AUTHORIZED,
                reason_string: Some("acl".into()),
                user: vec![],
            }),
            Packet::PingReq,
            Packet::Disconnect(Disconnect {
                reason: reason::SERVER_SHUTTING_DOWN,
                reason_string: Some("bye".into()),
                ..Disconnect::default()
            }),
        ];
        for (theirs, want) in theirs.into_iter().zip(want) {
            let ours = decode5_ok(&rmqtt_encode(theirs.clone()));
            assert_eq!(ours, want);
            assert_eq!(rmqtt_decode(&encode5(&ours)), theirs);
        }
    }
}

// ---- reason codes and Variable Byte Integers ----

#[test]
fn reason_codes_not_defined_for_the_packet_are_protocol_errors() {
    let cases: [(u8, Vec<u8>); 8] = [
        (0x20, vec![0, 0x01, 0]),
        (0x40, vec![0, 1, 0x92]),
        (0x50, vec![0, 1, 0x01]),
        (0x62, vec![0, 1, 0x10]),
        (0x70, vec![0, 1, 0x80]),
        (0x90, vec![0, 1, 0, 0x03]),
        (0xB0, vec![0, 1, 0, 0x00, 0x01]),
        (0xE0, vec![0x18]),
    ];
    for (first, body) in cases {
        assert_protocol(&frame(first, &body), reason::PROTOCOL_ERROR, "reason code");
    }
    assert_protocol(
        &frame(0xF0, &[0x04, 0]),
        reason::PROTOCOL_ERROR,
        "reason code",
    );
    // Session present with a refusal ([MQTT-3.2.2-6]).
    assert_protocol(
        &frame(0x20, &[1, 0x86, 0]),
        reason::PROTOCOL_ERROR,
        "session present",
    );
    // Every code each packet may carry decodes.
    for code in [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99] {
        assert!(decode5(&frame(0x40, &[0, 1, code])).is_ok(), "{code:#x}");
    }
    for code in [0x00, 0x04, 0x8B, 0x8E, 0x98, 0xA2] {
        assert!(decode5(&frame(0xE0, &[code])).is_ok(), "{code:#x}");
    }
}

#[test]
fn variable_byte_integers_use_the_fewest_bytes() {
    // A property length of 0 in two bytes.
    assert_malformed(
        &frame(0x30, &cat(&[&s("a"), &[0x80, 0x00]])),
        "longer than it needs to be",
    );
    // A subscription identifier of 1 in two bytes.
    assert_malformed(
        &frame(0x30, &cat(&[&s("a"), &props(&[&[0x0B, 0x81, 0x00]])])),
        "longer than it needs to be",
    );
    // The remaining length in the fixed header: 0 in two bytes.
    assert_malformed(
        &[0xC0, 0x80, 0x00],
        "remaining length longer than it needs to be",
    );
    // 3.1.1 is unchanged.
    let mut codec = MqttCodec::new(MAX);
    assert_eq!(
        codec
            .decode(&mut BytesMut::from(&[0xC0u8, 0x80, 0x00][..]))
            .unwrap(),
        Some(Packet::PingReq)
    );
    // 128 in two bytes and 16,384 in three are minimal.
    let Packet::Publish(p) = decode5_ok(&frame(
        0x30,
        &cat(&[
            &s("a"),
            &props(&[&[0x0B, 0x80, 0x01], &[0x0B, 0x80, 0x80, 0x01]]),
        ]),
    )) else {
        panic!()
    };
    assert_eq!(p.subscription_ids, [128, 16_384]);
}

#[test]
fn fuzz_seeds_decode_as_their_names_say() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mqtt5_decode");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // What the fuzzer added (named by their SHA-1) may be anything; the
        // hand-made seeds say in their name what they are.
        if name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let mut buf = BytesMut::from(&std::fs::read(&path).unwrap()[..]);
        let mut codec = codec5();
        let mut result = Ok(());
        while !buf.is_empty() {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    result = Err("incomplete".to_string());
                    break;
                }
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            }
        }
        assert_eq!(
            name.starts_with("bad_"),
            result.is_err(),
            "{name}: {result:?}"
        );
        seen += 1;
    }
    assert!(seen >= 40, "{seen} seeds");
}
