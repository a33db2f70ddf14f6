//! Malformed and oversized packets close the connection that sent them, and
//! only that one: a healthy publisher/subscriber pair keeps its traffic
//! flowing before, between and after the bad connections.

mod common;

use std::time::Duration;

use common::raw::{self, ConnectOpts, Raw};
use common::{text, Config, Mqtt, Server, WAIT};
use rumqttc::QoS;

const CLOSE: Duration = Duration::from_secs(5);
const MAX_PACKET: usize = 1024;

/// One round trip on the healthy pair.
fn healthy_round_trip(publisher: &mut Mqtt, sub: &mut Mqtt, n: usize) {
    let payload = format!("healthy {n}");
    publisher.publish_acked("ok/t", QoS::AtLeastOnce, false, payload.clone());
    let p = sub.recv(WAIT);
    assert_eq!(text(&p), payload, "the healthy subscriber's traffic");
}

/// Bad byte sequences, each sent after a valid CONNECT.
fn bad_packets() -> Vec<(&'static str, Vec<u8>)> {
    let mut oversize_payload = vec![b'x'; MAX_PACKET * 2];
    oversize_payload[0] = b'{';
    vec![
        (
            "PUBLISH whose topic length points past the packet end, then garbage",
            // remaining length 10; topic length 0x20 = 32 > 8 bytes left
            [
                vec![0x30, 0x0A, 0x00, 0x20],
                b"abcdefgh".to_vec(),
                vec![0xFF; 64],
            ]
            .concat(),
        ),
        ("SUBSCRIBE with reserved flags 0000 instead of 0010", {
            let mut p = raw::subscribe_packet(1, &[("a/b", 0)]);
            p[0] = 0x80;
            p
        }),
        (
            "PUBREL with reserved flags 0000 instead of 0010",
            raw::packet(0x60, &1u16.to_be_bytes()),
        ),
        (
            "PUBLISH with QoS 3",
            raw::packet(0x36, &[0x00, 0x01, b'a', 0x00, 0x01, b'x']),
        ),
        (
            "remaining length encoded in 5 bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        ("packet type 0 (reserved)", vec![0x00, 0x00]),
        ("packet type 15 (reserved in 3.1.1)", vec![0xF0, 0x00]),
        (
            "SUBSCRIBE with no topic filter (spec 3.8.3-3)",
            raw::packet(0x82, &1u16.to_be_bytes()),
        ),
        (
            "PUBLISH larger than max_packet_size",
            raw::publish_packet("big/t", &oversize_payload, 1, false, false, 7),
        ),
        (
            "PUBLISH topic that is not valid UTF-8",
            raw::packet(0x30, &[0x00, 0x02, 0xC3, 0x28, b'x']),
        ),
    ]
}

#[test]
fn malformed_packets_close_only_their_own_connection() {
    let s = Server::start_with(Config::new().mqtt("max_packet_size", &MAX_PACKET.to_string()));
    let token = s.token("d1");
    let mut sub = s.mqtt("healthy-sub", &token);
    sub.subscribe("ok/t", QoS::AtLeastOnce);
    let mut publisher = s.mqtt("healthy-pub", &token);
    healthy_round_trip(&mut publisher, &mut sub, 0);

    for (i, (what, bytes)) in bad_packets().into_iter().enumerate() {
        let mut bad = Raw::login(
            s.mqtt_port,
            &ConnectOpts::new(&format!("bad-{i}"), Some(&token)),
        );
        // The broker may close while we are still writing: a write error is fine.
        let _ = bad.try_send(&bytes);
        if let Err(e) = bad.wait_closed(CLOSE) {
            panic!("{what}: {e}");
        }
        healthy_round_trip(&mut publisher, &mut sub, i + 1);
    }
    assert!(
        !sub.closed && !publisher.closed,
        "the healthy clients stayed connected"
    );
}

#[test]
fn oversized_connect_closes_the_connection() {
    let s = Server::start_with(Config::new().mqtt("max_packet_size", &MAX_PACKET.to_string()));
    let token = s.token("d1");
    let mut opts = ConnectOpts::new("big-connect", Some(&token));
    opts.will = Some(raw::Will {
        topic: "w".into(),
        payload: vec![b'w'; MAX_PACKET * 4],
        qos: 0,
        retain: false,
    });
    let mut raw = Raw::open(s.mqtt_port);
    let _ = raw.try_send(&raw::connect_packet(&opts));
    // No CONNACK 0 may come; a close (possibly after a refusing CONNACK) must.
    loop {
        match raw.read_packet(CLOSE) {
            Ok(p) if p.kind == raw::CONNACK => {
                assert_ne!(p.body.get(1), Some(&0), "an oversized CONNECT was accepted")
            }
            Ok(p) => panic!("unexpected {p:?}"),
            Err(raw::ReadEnd::Closed) => break,
            Err(raw::ReadEnd::TimedOut) => {
                panic!("oversized CONNECT: connection still open after {CLOSE:?}")
            }
        }
    }
}

#[test]
fn incomplete_connect_does_not_block_other_clients() {
    let s = Server::start();
    let token = s.token("d1");
    // Half a CONNECT, then silence: the broker must keep serving others.
    let mut stuck = Raw::open(s.mqtt_port);
    let full = raw::connect_packet(&ConnectOpts::new("stuck", Some(&token)));
    stuck.send(&full[..full.len() / 2]);
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("ok/t", QoS::AtLeastOnce);
    let mut publisher = s.mqtt("pub", &token);
    healthy_round_trip(&mut publisher, &mut sub, 1);
}
