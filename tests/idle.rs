//! Idle connections hold no read buffer and no writer between packets (see
//! `src/session/reader.rs` and `src/session/outbound.rs`): what must still
//! hold is that a packet arriving in pieces, with the connection idle in
//! between, is read whole, and that connections that sat idle read and
//! write as before, over every transport.

mod common;

use std::time::Duration;

use common::raw::*;
use common::*;

const T: Duration = Duration::from_secs(10);

/// Sends `bytes` one at a time, each only once the broker has read the
/// one before (its `bytes_received_total` counter says so), so that the
/// connection goes idle with part of a packet read between any two bytes.
fn trickle(s: &Server, c: &mut Raw, bytes: &[u8]) {
    let before = s.metric("brook_bytes_received_total");
    for (i, b) in bytes.iter().enumerate() {
        c.send(&[*b]);
        let want = before + (i + 1) as f64;
        wait_until("the broker read the byte", T, || {
            s.metric("brook_bytes_received_total") >= want
        });
    }
}

#[test]
fn a_connect_and_a_publish_sent_a_byte_at_a_time_are_read_whole() {
    let s = Server::start();
    let dev = s.create_device("trickle");
    let mut sub = Raw::login(s.mqtt_port, &ConnectOpts::new("watcher", Some(&dev.token)));
    sub.subscribe(1, &[("trickle/#", 1)]);

    let mut c = Raw::open(s.mqtt_port);
    trickle(
        &s,
        &mut c,
        &connect_packet(&ConnectOpts::new("trickler", Some(&dev.token))),
    );
    let ack = c.expect_kind(CONNACK, T, "CONNACK after a CONNECT sent byte by byte");
    assert_eq!(ack.body, [0, 0]);

    // 300 bytes of payload: a two-byte remaining length, split too.
    let payload: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    trickle(
        &s,
        &mut c,
        &publish_packet("trickle/a", &payload, 1, false, false, 7),
    );
    let puback = c.expect_kind(PUBACK, T, "PUBACK of the trickled publish");
    assert_eq!(puback.pkid(), 7);
    let got = sub.expect_publish(T);
    assert_eq!(got.topic, "trickle/a");
    assert_eq!(
        got.payload, payload,
        "the payload arrived whole and in order"
    );

    // The connection still reads packets that come whole afterwards.
    c.send(&pingreq_packet());
    c.expect_kind(PINGRESP, T, "PINGRESP after the trickled packets");
}

#[test]
fn a_packet_over_max_packet_size_sent_in_pieces_is_refused_from_its_header() {
    let s = Server::start_with(Config::new().mqtt("max_packet_size", "1024"));
    let dev = s.create_device("big");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("big", Some(&dev.token)));
    // A PUBLISH announcing 1 MiB: the fixed header alone, a byte at a time.
    let mut header = vec![0x30];
    encode_remaining_length(1 << 20, &mut header);
    let _ = c.try_send(&header[..1]);
    let _ = c.try_send(&header[1..]);
    c.assert_closed(
        T,
        "a packet larger than max_packet_size closes the connection",
    );
}

#[test]
fn many_idle_connections_then_all_publish_and_every_message_is_delivered() {
    const N: usize = 200;
    let s = Server::start();
    let dev = s.create_device("crowd");
    let mut sub = Raw::login(s.mqtt_port, &ConnectOpts::new("all", Some(&dev.token)));
    sub.subscribe(1, &[("crowd/#", 1)]);
    let mut clients: Vec<Raw> = (0..N)
        .map(|i| {
            let mut c = Raw::login(
                s.mqtt_port,
                &ConnectOpts::new(&format!("idle-{i}"), Some(&dev.token)),
            );
            // Each is subscribed to its own topic too: both directions.
            c.subscribe(1, &[(&format!("back/{i}"), 1)]);
            c
        })
        .collect();
    // All connected and idle: a ping each first, then a publish each.
    for c in &mut clients {
        c.send(&pingreq_packet());
    }
    for c in &mut clients {
        c.expect_kind(PINGRESP, T, "PINGRESP from an idle connection");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let payload = format!("from {i}");
        c.send(&publish_packet(
            &format!("crowd/{i}"),
            payload.as_bytes(),
            1,
            false,
            false,
            1,
        ));
    }
    for c in &mut clients {
        assert_eq!(c.expect_kind(PUBACK, T, "PUBACK").pkid(), 1);
    }
    let mut seen = [false; N];
    for _ in 0..N {
        let p = sub.expect_publish(T);
        sub.send(&puback_packet(p.pkid));
        let i: usize = p.topic["crowd/".len()..].parse().expect("a client number");
        assert_eq!(p.payload, format!("from {i}").as_bytes());
        assert!(!seen[i], "delivered once: {}", p.topic);
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s), "every publish was delivered");

    // And the other way: a message to each idle connection.
    let mut publisher = Raw::login(s.mqtt_port, &ConnectOpts::new("back", Some(&dev.token)));
    for i in 0..N {
        let payload = format!("to {i}");
        publisher.send(&publish_packet(
            &format!("back/{i}"),
            payload.as_bytes(),
            1,
            false,
            false,
            (i + 1) as u16,
        ));
        publisher.expect_kind(PUBACK, T, "PUBACK");
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let p = c.expect_publish(T);
        assert_eq!(p.topic, format!("back/{i}"));
        assert_eq!(p.payload, format!("to {i}").as_bytes());
        c.send(&puback_packet(p.pkid));
    }
}
