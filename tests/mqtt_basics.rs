//! MQTT 3.1.1 as the README's guarantees state it: login with a device
//! token, the CONNECT rules, QoS 0/1/2 delivery, retained and will messages,
//! keep-alive, session takeover, topic wildcards and `$` topics, UNSUBSCRIBE.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::raw::{self, ConnectOpts, Raw};
use common::{text, topics, Config, Server, WAIT};
use rumqttc::{QoS, SubscribeReasonCode};

const CLOSE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- CONNECT

#[test]
fn connect_with_valid_token_gets_connack_0() {
    let s = Server::start();
    let token = s.token("d1");
    let (_raw, code, session_present) =
        Raw::connect(s.mqtt_port, &ConnectOpts::new("c1", Some(&token)));
    assert_eq!(code, 0, "CONNACK return code for a valid token");
    assert!(
        !session_present,
        "clean session must not report a session present"
    );
    // And a real client library gets in too.
    let m = s.mqtt("c2", &token);
    m.disconnect();
}

#[test]
fn connect_with_wrong_token_gets_connack_5() {
    let s = Server::start();
    let token = s.token("d1");
    let wrong = format!("{token}x");
    let (mut raw, code, _) = Raw::connect(s.mqtt_port, &ConnectOpts::new("c1", Some(&wrong)));
    assert_eq!(code, 5, "CONNACK return code for a wrong token");
    raw.assert_closed(
        CLOSE,
        "the broker must close the connection after CONNACK 5",
    );
}

#[test]
fn connect_without_password_gets_connack_5_when_anonymous_is_off() {
    let s = Server::start_with(Config::new().mqtt("allow_anonymous", "false"));
    let (mut raw, code, _) = Raw::connect(s.mqtt_port, &ConnectOpts::new("anon", None));
    assert_eq!(
        code, 5,
        "CONNACK for no username and no password, allow_anonymous = false"
    );
    raw.assert_closed(
        CLOSE,
        "the broker must close the connection after CONNACK 5",
    );

    let mut with_user = ConnectOpts::new("anon2", None);
    with_user.username = Some("Token".into());
    let (_raw, code, _) = Raw::connect(s.mqtt_port, &with_user);
    assert_eq!(
        code, 5,
        "CONNACK for a username without password, allow_anonymous = false"
    );
}

#[test]
fn connect_without_password_gets_connack_0_when_anonymous_is_on() {
    let s = Server::start_with(Config::new().mqtt("allow_anonymous", "true"));
    let (_raw, code, _) = Raw::connect(s.mqtt_port, &ConnectOpts::new("anon", None));
    assert_eq!(code, 0, "CONNACK for no password, allow_anonymous = true");
}

#[test]
fn mqtt_3_1_connect_is_accepted() {
    let s = Server::start();
    let token = s.token("d1");
    let opts = ConnectOpts::new("old-client", Some(&token)).protocol("MQIsdp", 3);
    let (_raw, code, _) = Raw::connect(s.mqtt_port, &opts);
    assert_eq!(code, 0, "CONNACK for an MQTT 3.1 (MQIsdp, level 3) CONNECT");
}

#[test]
fn unsupported_protocol_level_gets_connack_1() {
    let s = Server::start();
    let token = s.token("d1");
    let opts = ConnectOpts::new("future", Some(&token)).protocol("MQTT", 9);
    let mut raw = Raw::open(s.mqtt_port);
    raw.send(&raw::connect_packet(&opts));
    match raw.read_packet(WAIT) {
        Ok(p) => {
            assert_eq!(p.kind, raw::CONNACK, "expected CONNACK, got {p:?}");
            assert_eq!(
                p.body[1], 1,
                "CONNACK return code for protocol level 9 (spec 3.1.2.2)"
            );
        }
        Err(e) => panic!("expected CONNACK 1 for protocol level 9, got {e:?}"),
    }
    raw.assert_closed(CLOSE, "after CONNACK 1 the connection must close");
}

#[test]
fn first_packet_not_connect_closes_connection() {
    let s = Server::start();
    let mut raw = Raw::open(s.mqtt_port);
    raw.send(&raw::publish_packet("a/b", b"hello", 0, false, false, 0));
    raw.assert_closed(CLOSE, "a PUBLISH as first packet must close the connection");

    let mut raw = Raw::open(s.mqtt_port);
    raw.send(&raw::pingreq_packet());
    raw.assert_closed(CLOSE, "a PINGREQ as first packet must close the connection");
}

#[test]
fn second_connect_closes_connection() {
    let s = Server::start();
    let token = s.token("d1");
    let opts = ConnectOpts::new("twice", Some(&token));
    let mut raw = Raw::login(s.mqtt_port, &opts);
    let _ = raw.try_send(&raw::connect_packet(&opts));
    raw.assert_closed(
        CLOSE,
        "a second CONNECT must close the connection (spec 3.1.0-2)",
    );
}

#[test]
fn empty_client_id_with_clean_session_is_accepted() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut raw, code, _) =
        Raw::connect(s.mqtt_port, &ConnectOpts::new("", Some(&token)).clean(true));
    assert_eq!(code, 0, "CONNACK for an empty client id with clean session");
    // The session works: subscribe and get our own message back.
    assert_eq!(raw.subscribe(1, &[("empty/id", 0)]), vec![0]);
    raw.send(&raw::publish_packet("empty/id", b"x", 0, false, false, 0));
    let p = raw.expect_publish(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.payload.as_slice()),
        ("empty/id", &b"x"[..])
    );
}

#[test]
fn empty_client_id_without_clean_session_gets_connack_2() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut raw, code, _) = Raw::connect(
        s.mqtt_port,
        &ConnectOpts::new("", Some(&token)).clean(false),
    );
    assert_eq!(
        code, 2,
        "CONNACK for an empty client id without clean session (spec 3.1.3-8)"
    );
    raw.assert_closed(CLOSE, "after CONNACK 2 the connection must close");
}

// ---------------------------------------------------------------- QoS

fn qos_of(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

#[test]
fn publish_is_delivered_at_min_of_publish_and_granted_qos() {
    let s = Server::start();
    let token = s.token("d1");
    let mut subs: Vec<_> = (0..3u8)
        .map(|g| {
            let mut m = s.mqtt(&format!("sub-g{g}"), &token);
            m.subscribe("q/t", qos_of(g));
            m
        })
        .collect();
    let mut publisher = s.mqtt("pub", &token);
    for q in 0..3u8 {
        let payload = format!("published at qos {q}");
        publisher.publish_acked("q/t", qos_of(q), false, payload.clone());
        for (g, sub) in subs.iter_mut().enumerate() {
            let p = sub.recv(WAIT);
            assert_eq!(text(&p), payload, "subscriber granted QoS {g}");
            assert_eq!(
                p.qos,
                qos_of(q.min(g as u8)),
                "delivery QoS for publish QoS {q}, granted QoS {g}"
            );
            assert!(!p.retain, "a live delivery must not carry the retain flag");
        }
    }
}

#[test]
fn qos2_messages_are_delivered_exactly_once() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("exact/#", QoS::ExactlyOnce);
    let publisher = s.mqtt("pub", &token);
    const N: usize = 50;
    for i in 0..N {
        publisher.publish("exact/t", QoS::ExactlyOnce, false, format!("{i}"));
    }
    // Two end markers on the same topic (order is kept per topic and
    // publisher): a duplicate of anything before the first would show up
    // before the second.
    publisher.publish("exact/t", QoS::ExactlyOnce, false, "end");
    publisher.publish("exact/t", QoS::ExactlyOnce, false, "end2");
    let mut payloads = Vec::new();
    while payloads.last().map(String::as_str) != Some("end2") {
        let p = sub.recv(Duration::from_secs(20));
        assert_eq!(p.qos, QoS::ExactlyOnce, "delivered at QoS 2");
        payloads.push(text(&p));
    }
    let mut expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    expected.push("end".into());
    expected.push("end2".into());
    assert_eq!(payloads, expected, "each QoS 2 message once, in order");
}

// ---------------------------------------------------------------- retained

#[test]
fn retained_message_is_delivered_to_later_subscriber_with_retain_flag() {
    let s = Server::start();
    let token = s.token("d1");
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("ret/t", QoS::AtLeastOnce, true, "kept");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("ret/t", QoS::AtLeastOnce);
    let p = sub.recv(WAIT);
    assert_eq!((p.topic.as_str(), text(&p).as_str()), ("ret/t", "kept"));
    assert!(
        p.retain,
        "a retained message sent on subscription must carry the retain flag"
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[test]
fn suback_comes_before_the_retained_messages_of_its_subscription() {
    let s = Server::start();
    let token = s.token("d1");
    let mut publisher = s.mqtt("pub", &token);
    for i in 0..20 {
        publisher.publish_acked(&format!("order/{i}"), QoS::AtLeastOnce, true, "kept");
    }
    // A persistent session: its SUBACK waits for the subscription's commit,
    // which is when retained messages used to overtake it.
    for clean in [false, true] {
        let mut raw = Raw::login(
            s.mqtt_port,
            &ConnectOpts::new(&format!("orderly-{clean}"), Some(&token)).clean(clean),
        );
        raw.send(&raw::subscribe_packet(7, &[("order/#", 1)]));
        let first = raw.expect_packet(WAIT, "the answer to SUBSCRIBE");
        assert_eq!(
            first.kind,
            raw::SUBACK,
            "clean session {clean}: SUBACK first, got {first:?}"
        );
        for _ in 0..20 {
            let p = raw.expect_publish(WAIT);
            assert!(p.retain, "a retained message after the SUBACK");
            raw.send(&raw::puback_packet(p.pkid));
        }
    }
}

#[test]
fn empty_retained_payload_clears_retained_message() {
    let s = Server::start();
    let token = s.token("d1");
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("ret/c", QoS::AtLeastOnce, true, "kept");
    publisher.publish_acked("ret/c", QoS::AtLeastOnce, true, "");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("ret/c", QoS::AtLeastOnce);
    // A retained message would come right after SUBACK, before this live one.
    publisher.publish_acked("ret/c", QoS::AtLeastOnce, false, "live");
    let p = sub.recv(WAIT);
    assert_eq!(
        text(&p),
        "live",
        "the first delivery after subscribing (retained: {})",
        p.retain
    );
    assert!(!p.retain);
}

// ---------------------------------------------------------------- will

#[test]
fn will_is_published_when_connection_drops_without_disconnect() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = s.mqtt("watcher", &token);
    sub.subscribe("will/#", QoS::AtLeastOnce);
    let opts = ConnectOpts::new("dying", Some(&token)).will("will/dying", b"gone", 1, false);
    let raw = Raw::login(s.mqtt_port, &opts);
    raw.abort();
    let p = sub.recv(WAIT);
    assert_eq!(
        (p.topic.as_str(), text(&p).as_str()),
        ("will/dying", "gone")
    );
    assert_eq!(p.qos, QoS::AtLeastOnce, "will QoS");
}

#[test]
fn will_is_not_published_after_disconnect() {
    let s = Server::start();
    let dev = s.create_device("d1");
    let watcher_dev = s.create_device("watcher");
    let mut sub = s.mqtt("watcher", &watcher_dev.token);
    sub.subscribe("will/#", QoS::AtLeastOnce);
    let opts = ConnectOpts::new("polite", Some(&dev.token)).will("will/polite", b"gone", 1, false);
    let mut raw = Raw::login(s.mqtt_port, &opts);
    raw.send(&raw::disconnect_packet());
    raw.assert_closed(CLOSE, "the broker closes the connection after DISCONNECT");
    // Wait until the broker has finished with that session, then send a
    // marker: a will would have been routed before it.
    common::wait_until("device d1 shows as disconnected", WAIT, || {
        let v = s.admin_ok("GET", "/devices/d1", None);
        let c = &v["connected"];
        assert!(
            !c.is_null(),
            "GET /devices/d1 has no `connected` field: {v}"
        );
        c == &serde_json::json!(false)
    });
    let mut publisher = s.mqtt("marker", &watcher_dev.token);
    publisher.publish_acked("will/marker", QoS::AtLeastOnce, false, "m");
    let got = sub.recv_until_topic("will/marker", WAIT);
    assert_eq!(
        topics(&got),
        vec!["will/marker"],
        "no will after a clean DISCONNECT"
    );
}

// ---------------------------------------------------------------- keep-alive

#[test]
fn keep_alive_silence_closes_connection_after_one_and_a_half_intervals() {
    let s = Server::start();
    let token = s.token("d1");
    let mut raw = Raw::login(
        s.mqtt_port,
        &ConnectOpts::new("quiet", Some(&token)).keep_alive(1),
    );
    // Timed from the CONNACK, which the broker sends just after it last
    // heard from the client: at most a few milliseconds early.
    let start = Instant::now();
    let closed_after = match raw.wait_closed(Duration::from_secs(3)) {
        Ok(_) => start.elapsed(),
        Err(e) => panic!("keep-alive 1 s, silent client: {e} (expected close after ~1.5 s)"),
    };
    assert!(
        closed_after >= Duration::from_millis(1450),
        "closed after {closed_after:?}, before 1.5 keep-alive intervals"
    );
    assert!(
        closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}, long after 1.5 keep-alive intervals"
    );
}

#[test]
fn pingreq_keeps_connection_alive() {
    let s = Server::start();
    let token = s.token("d1");
    let mut raw = Raw::login(
        s.mqtt_port,
        &ConnectOpts::new("pinger", Some(&token)).keep_alive(1),
    );
    let start = Instant::now();
    // Ping every ~0.5 s for 3 s (well past 1.5 × keep-alive); each PINGRESP
    // is awaited, so the pacing is the broker's answer plus the read timeout.
    while start.elapsed() < Duration::from_secs(3) {
        raw.send(&raw::pingreq_packet());
        let p = raw.expect_packet(Duration::from_secs(1), "PINGRESP");
        assert_eq!(p.kind, raw::PINGRESP, "expected PINGRESP, got {p:?}");
        // Wait out half a keep-alive for anything the broker might send
        // (there should be nothing: a close here is the failure).
        match raw.read_packet(Duration::from_millis(500)) {
            Err(raw::ReadEnd::TimedOut) => {}
            other => panic!("unexpected {other:?} from the broker while pinging"),
        }
    }
}

// ---------------------------------------------------------------- takeover

#[test]
fn second_connection_with_same_client_id_closes_the_first() {
    let s = Server::start();
    let token = s.token("d1");
    let opts = ConnectOpts::new("same-id", Some(&token));
    let mut first = Raw::login(s.mqtt_port, &opts);
    let mut second = Raw::login(s.mqtt_port, &opts);
    first.assert_closed(CLOSE, "the first connection must be closed by the takeover");
    // The second one is the live session.
    assert_eq!(second.subscribe(1, &[("take/over", 0)]), vec![0]);
    second.send(&raw::publish_packet(
        "take/over",
        b"still here",
        0,
        false,
        false,
        0,
    ));
    assert_eq!(second.expect_publish(WAIT).payload, b"still here");
}

// ---------------------------------------------------------------- wildcards

#[test]
fn plus_and_hash_wildcards_match_as_in_the_specification() {
    let s = Server::start();
    let token = s.token("d1");
    let published = [
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player2",
        "sport/tennis/player1/ranking",
        "sport/badminton/player1",
        "finance",
        "/finance",
        "sport/",
    ];
    // Filter → the published topics it must receive (spec 4.7.1).
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "sport/tennis/player1/#",
            vec!["sport/tennis/player1", "sport/tennis/player1/ranking"],
        ),
        (
            "sport/#",
            vec![
                "sport",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player2",
                "sport/tennis/player1/ranking",
                "sport/badminton/player1",
                "sport/",
            ],
        ),
        (
            "sport/tennis/+",
            vec!["sport/tennis/player1", "sport/tennis/player2"],
        ),
        ("sport/+", vec!["sport/tennis", "sport/"]),
        ("+/+", vec!["sport/tennis", "/finance", "sport/"]),
        ("/+", vec!["/finance"]),
        ("+", vec!["sport", "finance"]),
        (
            "+/tennis/#",
            vec![
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player2",
                "sport/tennis/player1/ranking",
            ],
        ),
        (
            "sport/+/player1",
            vec!["sport/tennis/player1", "sport/badminton/player1"],
        ),
        ("#", published.to_vec()),
    ];
    let mut subs = Vec::new();
    for (i, (filter, _)) in cases.iter().enumerate() {
        let mut m = s.mqtt(&format!("wild-{i}"), &token);
        let codes = m.subscribe_many(&[(filter, QoS::AtLeastOnce), ("zz/end", QoS::AtLeastOnce)]);
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2],
            "SUBACK for {filter}"
        );
        subs.push(m);
    }
    let mut publisher = s.mqtt("pub", &token);
    for t in published {
        publisher.publish_acked(t, QoS::AtLeastOnce, false, t);
    }
    publisher.publish_acked("zz/end", QoS::AtLeastOnce, false, "end");
    for ((filter, expected), sub) in cases.iter().zip(subs.iter_mut()) {
        let got = sub.recv_until_topic("zz/end", WAIT);
        let mut got: Vec<String> = topics(&got).into_iter().filter(|t| t != "zz/end").collect();
        let mut expected: Vec<String> = expected.iter().map(|t| t.to_string()).collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "topics delivered for filter {filter:?}");
    }
}

#[test]
fn wildcard_filters_do_not_match_dollar_topics() {
    let s = Server::start();
    let token = s.token("d1");
    // A $SYS subscriber first: the broker's $SYS topics exist (some may be
    // retained) before the wildcard subscribers come.
    let mut sys = s.mqtt("sys", &token);
    sys.subscribe_many(&[("$SYS/#", QoS::AtMostOnce), ("$test/#", QoS::AtLeastOnce)]);
    let mut hash = s.mqtt("hash", &token);
    hash.subscribe("#", QoS::AtLeastOnce);
    let mut plus = s.mqtt("plus", &token);
    plus.subscribe_many(&[
        ("+/x", QoS::AtLeastOnce),
        ("+/broker/#", QoS::AtLeastOnce),
        ("end/#", QoS::AtLeastOnce),
    ]);
    // Whether the broker routes a client's publish to a `$` topic or drops
    // it is its choice (spec 4.7.2: it SHOULD prevent such exchanges); so
    // either a PUBACK or a closed connection ends this step.
    let mut dollar_pub = s.mqtt("dollar-pub", &token);
    dollar_pub.publish("$test/x", QoS::AtLeastOnce, false, "dollar");
    let _ = dollar_pub.next_matching("PUBACK for $test/x", WAIT, |e| match e {
        rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => Some(()),
        _ => None,
    });
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("end/x", QoS::AtLeastOnce, false, "end");
    for sub in [&mut hash, &mut plus] {
        let id = sub.client_id.clone();
        let got = sub.recv_until_topic("end/x", WAIT);
        let dollar: Vec<String> = topics(&got)
            .into_iter()
            .filter(|t| t.starts_with('$'))
            .collect();
        assert!(
            dollar.is_empty(),
            "client {id}: a wildcard-first filter received $ topics {dollar:?}"
        );
    }
}

#[test]
fn sys_broker_topics_are_published() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sys = s.mqtt("sys", &token);
    sys.subscribe("$SYS/broker/#", QoS::AtMostOnce);
    // Any $SYS/broker topic within 15 s (retained ones come at once; a
    // periodic update may take one interval).
    let p = sys.recv(Duration::from_secs(15));
    assert!(p.topic.starts_with("$SYS/broker/"), "got {}", p.topic);
}

#[test]
fn publish_to_a_wildcard_topic_closes_the_connection() {
    let s = Server::start();
    let token = s.token("d1");
    for (i, topic) in ["a/+/b", "a/#", "+", "#"].iter().enumerate() {
        let mut raw = Raw::login(
            s.mqtt_port,
            &ConnectOpts::new(&format!("wild-pub-{i}"), Some(&token)),
        );
        let _ = raw.try_send(&raw::publish_packet(topic, b"x", 1, false, false, 1));
        // A PUBACK before the close would be wrong too: read until closed,
        // failing on a PUBACK.
        loop {
            match raw.read_packet(CLOSE) {
                Ok(p) if p.kind == raw::PUBACK => panic!("PUBACK for a publish to {topic:?}"),
                Ok(_) => continue,
                Err(raw::ReadEnd::Closed) => break,
                Err(raw::ReadEnd::TimedOut) => {
                    panic!("publish to {topic:?} did not close the connection in {CLOSE:?}")
                }
            }
        }
    }
}

#[test]
fn overlapping_subscriptions_get_one_copy_at_the_highest_qos() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    let codes = sub.subscribe_many(&[("ov/+", QoS::AtLeastOnce), ("ov/#", QoS::ExactlyOnce)]);
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Success(QoS::ExactlyOnce)
        ]
    );
    let mut publisher = s.mqtt("pub", &token);
    for i in 0..5 {
        publisher.publish_acked("ov/x", QoS::ExactlyOnce, false, format!("{i}"));
    }
    publisher.publish_acked("ov/end", QoS::ExactlyOnce, false, "end");
    publisher.publish_acked("ov/end2", QoS::ExactlyOnce, false, "end2");
    let got = sub.recv_until_topic("ov/end2", WAIT);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in &got {
        *counts
            .entry(format!("{} {}", p.topic, text(p)))
            .or_default() += 1;
        assert_eq!(
            p.qos,
            QoS::ExactlyOnce,
            "{} delivered at {:?}, not at the highest granted QoS 2",
            p.topic,
            p.qos
        );
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "messages delivered more than once: {dups:?}"
    );
    assert_eq!(
        got.len(),
        7,
        "5 messages + 2 markers, got {:?}",
        topics(&got)
    );
}

// ---------------------------------------------------------------- unsubscribe

#[test]
fn unsubscribe_stops_delivery() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe_many(&[("un/t", QoS::AtLeastOnce), ("un/marker", QoS::AtLeastOnce)]);
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("un/t", QoS::AtLeastOnce, false, "before");
    assert_eq!(text(&sub.recv(WAIT)), "before");
    sub.unsubscribe("un/t");
    publisher.publish_acked("un/t", QoS::AtLeastOnce, false, "after");
    publisher.publish_acked("un/marker", QoS::AtLeastOnce, false, "marker");
    let got = sub.recv_until_topic("un/marker", WAIT);
    assert_eq!(
        topics(&got),
        vec!["un/marker"],
        "nothing on un/t after UNSUBACK"
    );
}
