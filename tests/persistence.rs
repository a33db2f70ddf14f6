//! Persistent sessions and what survives the process: queued QoS 1 messages
//! for an offline client, redelivery of unacknowledged ones with DUP, and
//! retained messages and sessions surviving `kill -9` and SIGTERM.

mod common;

use std::time::Duration;

use common::raw::{self, ConnectOpts, Raw};
use common::{text, Mqtt, Server, WAIT};
use rumqttc::QoS;

/// Connects `client_id` with clean_session = false; returns the client and
/// the CONNACK's session-present flag.
fn connect_persistent(s: &Server, client_id: &str, token: &str) -> (Mqtt, bool) {
    let mut o = s.mqtt_options(client_id, token);
    o.set_clean_session(false);
    let (m, ack) = Mqtt::try_connect(o, 100);
    let ack = ack.unwrap_or_else(|e| panic!("{client_id} could not connect: {e}"));
    (m, ack.session_present)
}

fn publish_numbered(s: &Server, token: &str, topic: &str, n: usize) {
    let mut publisher = s.mqtt("publisher", token);
    for i in 0..n {
        publisher.publish_acked(topic, QoS::AtLeastOnce, false, format!("m{i}"));
    }
    publisher.disconnect();
}

fn expect_numbered(m: &mut Mqtt, topic: &str, n: usize) {
    let mut got = Vec::new();
    for _ in 0..n {
        let p = m.recv(WAIT);
        assert_eq!(p.topic, topic);
        got.push(text(&p));
    }
    let expected: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "queued messages, in order");
}

#[test]
fn persistent_session_receives_queued_messages_in_order_after_reconnect() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, present) = connect_persistent(&s, "keeper", &token);
    assert!(!present, "a brand-new client id has no session");
    sub.subscribe("ps/t", QoS::AtLeastOnce);
    sub.disconnect();

    publish_numbered(&s, &token, "ps/t", 10);

    let (mut sub, present) = connect_persistent(&s, "keeper", &token);
    assert!(present, "CONNACK session present = 1 for a stored session");
    expect_numbered(&mut sub, "ps/t", 10);
}

#[test]
fn clean_session_connect_discards_the_stored_session() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = connect_persistent(&s, "forgetful", &token);
    sub.subscribe("cs/t", QoS::AtLeastOnce);
    sub.disconnect();
    publish_numbered(&s, &token, "cs/t", 3);

    // clean_session = true: the stored session (and its queue) is dropped.
    let clean = s.mqtt("forgetful", &token);
    clean.disconnect();
    let (mut sub, present) = connect_persistent(&s, "forgetful", &token);
    assert!(
        !present,
        "after a clean-session connect, no session is present"
    );
    // Nothing queued arrives, and the old subscription is gone: a marker on
    // a new subscription comes first.
    sub.subscribe("cs/marker", QoS::AtLeastOnce);
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("cs/t", QoS::AtLeastOnce, false, "not subscribed");
    publisher.publish_acked("cs/marker", QoS::AtLeastOnce, false, "marker");
    let got = sub.recv_until_topic("cs/marker", WAIT);
    assert_eq!(common::topics(&got), vec!["cs/marker"]);
}

#[test]
fn unacknowledged_qos1_message_is_redelivered_with_dup_after_reconnect() {
    let s = Server::start();
    let token = s.token("d1");
    let opts = ConnectOpts::new("no-acker", Some(&token)).clean(false);
    let mut raw = Raw::login(s.mqtt_port, &opts);
    assert_eq!(raw.subscribe(1, &[("dup/t", 1)]), vec![1]);

    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("dup/t", QoS::AtLeastOnce, false, "once more");

    let first = raw.expect_publish(WAIT);
    assert_eq!(
        (first.topic.as_str(), first.payload.as_slice(), first.qos),
        ("dup/t", &b"once more"[..], 1)
    );
    assert!(!first.dup, "first delivery must not have DUP set");
    // No PUBACK: leave.
    raw.send(&raw::disconnect_packet());
    raw.assert_closed(WAIT, "the broker closes after DISCONNECT");

    let (mut raw, code, present) = Raw::connect(s.mqtt_port, &opts);
    assert_eq!(code, 0);
    assert!(present, "session present after reconnect");
    let again = raw.expect_publish(WAIT);
    assert_eq!(
        again.payload, b"once more",
        "the unacknowledged message is sent again"
    );
    assert!(again.dup, "redelivery must have DUP set (spec 4.4)");
    assert_eq!(again.qos, 1);
    raw.send(&raw::puback_packet(again.pkid));
}

#[test]
fn retained_message_survives_kill_9() {
    let mut s = Server::start();
    let token = s.token("d1");
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("kill/retained", QoS::AtLeastOnce, true, "still here");
    s.kill9();
    s.restart();
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("kill/retained", QoS::AtLeastOnce);
    let p = sub.recv(WAIT);
    assert_eq!(
        text(&p),
        "still here",
        "retained message after kill -9 and restart"
    );
    assert!(p.retain);
}

#[test]
fn queued_session_messages_survive_kill_9() {
    let mut s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = connect_persistent(&s, "sleeper", &token);
    sub.subscribe("kill/q", QoS::AtLeastOnce);
    sub.disconnect();
    publish_numbered(&s, &token, "kill/q", 20);

    s.kill9();
    s.restart();

    let (mut sub, present) = connect_persistent(&s, "sleeper", &token);
    assert!(present, "the persistent session survives kill -9");
    expect_numbered(&mut sub, "kill/q", 20);
}

#[test]
fn sigterm_shuts_down_gracefully_and_keeps_state() {
    let mut s = Server::start();
    let token = s.token("d1");
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("term/retained", QoS::AtLeastOnce, true, "kept");
    let mut watcher = s.mqtt("watcher", &token);
    let status = s.terminate(Duration::from_secs(10));
    // A graceful stop exits 0 and says so; a kill would end by the signal.
    assert_eq!(
        status.code(),
        Some(0),
        "brook exit status after SIGTERM: {status}"
    );
    let log = s.log();
    for line in ["shutting down", "stopped"] {
        assert!(
            log.contains(line),
            "no {line:?} in the log of a SIGTERM:\n{log}"
        );
    }
    let err = watcher.wait_closed(WAIT);
    assert!(!err.is_empty());
    s.restart();
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("term/retained", QoS::AtLeastOnce);
    assert_eq!(text(&sub.recv(WAIT)), "kept");
}

#[test]
fn offline_session_keeps_only_the_newest_max_queued_messages() {
    let s = Server::start_with(common::Config::new().mqtt("max_queued_messages", "100"));
    let token = s.token("d1");
    let (mut sub, _) = connect_persistent(&s, "away", &token);
    sub.subscribe("lim/t", QoS::AtLeastOnce);
    sub.disconnect();
    publish_numbered(&s, &token, "lim/t", 150);

    let (mut sub, present) = connect_persistent(&s, "away", &token);
    assert!(present);
    let mut publisher = s.mqtt("marker", &token);
    publisher.publish_acked("lim/t", QoS::AtLeastOnce, false, "marker");
    let mut got = Vec::new();
    loop {
        let p = sub.recv(WAIT);
        let t = text(&p);
        if t == "marker" {
            break;
        }
        got.push(t);
    }
    let expected: Vec<String> = (50..150).map(|i| format!("m{i}")).collect();
    assert_eq!(
        got.first().map(String::as_str),
        Some("m50"),
        "the oldest 50 of 150 must be dropped with max_queued_messages = 100"
    );
    assert_eq!(got, expected, "the newest 100 messages, in order");
}

/// Shutdown as a protocol: SIGTERM while a client's QoS 1 publishes are in
/// flight. The session stops reading, answers what it had read, and closes;
/// every publish that got its PUBACK is stored by its insert_bucket action;
/// the process exits 0 within its bound.
#[test]
fn sigterm_stores_every_acknowledged_publish_and_exits_in_time() {
    let mut s = Server::start();
    s.install_action(
        "store",
        "[[action]]\nname = \"store\"\ntrigger = { mqtt_topic = [\"term/#\"] }\ntype = \"insert_bucket\"\n",
    );
    let d = s.create_device("d1");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("busy", Some(&d.token)));
    const N: u16 = 300;
    let mut burst = Vec::new();
    for i in 1..=N {
        let body = format!(r#"{{"variable":"n","value":{i}}}"#);
        burst.extend(raw::publish_packet(
            "term/t",
            body.as_bytes(),
            1,
            false,
            false,
            i,
        ));
    }
    c.send(&burst);
    // The first answer says the server is working on them; then SIGTERM.
    let first = c.expect_kind(raw::PUBACK, WAIT, "a first PUBACK");
    let mut acked = vec![first.pkid()];
    let pid = s.pid();
    let started = std::time::Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(term.success());
    loop {
        match c.read_packet(Duration::from_secs(10)) {
            Ok(p) if p.kind == raw::PUBACK => acked.push(p.pkid()),
            Ok(_) => {}
            Err(raw::ReadEnd::Closed) => break,
            Err(raw::ReadEnd::TimedOut) => panic!("the connection stayed open after SIGTERM"),
        }
    }
    let status = s.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < Duration::from_secs(8), "the shutdown took {took:?}");
    let db = s.dir.path().join("data").join("brook.db");
    let conn = rusqlite::Connection::open(db).expect("open brook.db");
    let stored: std::collections::HashSet<u16> = conn
        .prepare("SELECT value FROM data WHERE device_id = ?1")
        .expect("prepare")
        .query_map([&d.id], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|v| v.expect("a row").parse().expect("a number"))
        .collect();
    let missing: Vec<u16> = acked
        .iter()
        .filter(|i| !stored.contains(i))
        .copied()
        .collect();
    eprintln!(
        "SIGTERM during {N} QoS 1 publishes: {} acknowledged, {} stored, exited after {took:?}",
        acked.len(),
        stored.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
}

/// Publishes QoS 1 on a raw connection and waits for its PUBACK.
fn raw_publish_acked(c: &mut Raw, topic: &str, payload: &[u8], retain: bool, pkid: u16) {
    c.send(&raw::publish_packet(topic, payload, 1, retain, false, pkid));
    let p = c.expect_kind(raw::PUBACK, WAIT, "PUBACK");
    assert_eq!(p.pkid(), pkid);
}

/// The next PUBLISH on a raw connection, acknowledged when QoS 1.
fn raw_next_publish(c: &mut Raw) -> raw::Publish {
    let p = c.expect_publish(WAIT);
    if p.qos == 1 {
        c.send(&raw::puback_packet(p.pkid));
    }
    p
}

/// Retained topics that nobody publishes to have no topic actor (a restart
/// loads them into the retained table only), and a subscriber still gets
/// every one of them once, with the retain flag, through a queue ten times
/// smaller than their number.
#[test]
fn retained_topics_without_traffic_have_no_actor_and_are_all_delivered() {
    let mut s = Server::start_with(
        common::Config::new()
            .mqtt("max_queued_messages", "50")
            .mqtt("sys_interval", "\"1h\""),
    );
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    for i in 0..500u16 {
        let payload = format!("r{i}");
        raw_publish_acked(
            &mut p,
            &format!("idle/{i}"),
            payload.as_bytes(),
            true,
            i + 1,
        );
    }
    s.kill9();
    s.restart();
    let active = s.metric("brook_topics_active");
    assert!(
        active < 100.0,
        "{active} topic actors after a restart with 500 retained topics nobody publishes to"
    );
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("reader", Some(&d.token)));
    assert_eq!(c.subscribe(1, &[("idle/#", 1)]), vec![1]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let m = raw_next_publish(&mut c);
        assert!(
            m.retain,
            "a retained message on subscribe has the retain flag"
        );
        let i = m.topic.strip_prefix("idle/").expect("a topic under idle/");
        assert_eq!(
            m.payload,
            format!("r{i}").into_bytes(),
            "payload of {}",
            m.topic
        );
        assert!(seen.insert(m.topic.clone()), "{} delivered twice", m.topic);
    }
    assert_eq!(seen.len(), 500);
}

/// A retained topic without an actor: a new subscriber gets its retained
/// message, and live publishes after it (which start the topic's actor)
/// arrive after it, in order; a later retained publish replaces it, an
/// empty one clears it, and both survive another restart.
#[test]
fn a_retained_topic_without_an_actor_keeps_order_with_live_traffic() {
    let mut s = Server::start();
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    raw_publish_acked(&mut p, "quiet/a", b"old", true, 1);
    raw_publish_acked(&mut p, "quiet/b", b"gone soon", true, 2);
    s.kill9();
    s.restart();

    let mut sub = Raw::login(s.mqtt_port, &ConnectOpts::new("sub", Some(&d.token)));
    assert_eq!(sub.subscribe(1, &[("quiet/a", 1)]), vec![1]);
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    raw_publish_acked(&mut p, "quiet/a", b"live 1", false, 1);
    raw_publish_acked(&mut p, "quiet/a", b"new", true, 2);
    raw_publish_acked(&mut p, "quiet/a", b"live 2", false, 3);
    raw_publish_acked(&mut p, "quiet/b", b"", true, 4);
    let got: Vec<(Vec<u8>, bool)> = (0..4)
        .map(|_| {
            let m = raw_next_publish(&mut sub);
            (m.payload, m.retain)
        })
        .collect();
    let want: Vec<(Vec<u8>, bool)> = vec![
        (b"old".to_vec(), true),
        (b"live 1".to_vec(), false),
        (b"new".to_vec(), false),
        (b"live 2".to_vec(), false),
    ];
    assert_eq!(
        got, want,
        "the retained message first, then the live ones in order"
    );

    s.kill9();
    s.restart();
    let mut late = Raw::login(s.mqtt_port, &ConnectOpts::new("late", Some(&d.token)));
    assert_eq!(late.subscribe(1, &[("quiet/#", 1)]), vec![1]);
    let m = raw_next_publish(&mut late);
    assert_eq!(
        (m.topic.as_str(), &m.payload[..], m.retain),
        ("quiet/a", &b"new"[..], true)
    );
    // quiet/b was cleared: a marker published after the subscribe is next.
    raw_publish_acked(
        &mut Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token))),
        "quiet/marker",
        b"m",
        false,
        1,
    );
    let m = raw_next_publish(&mut late);
    assert_eq!(
        m.topic, "quiet/marker",
        "no retained message left on quiet/b"
    );
}

/// Retained messages loaded at start count against max_retained_messages:
/// with the limit full, a new topic's retained publish is delivered but
/// not retained, while a replacement on a loaded topic is.
#[test]
fn loaded_retained_messages_count_against_the_limit() {
    let mut s = Server::start_with(common::Config::new().mqtt("max_retained_messages", "2"));
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    raw_publish_acked(&mut p, "lim/1", b"one", true, 1);
    raw_publish_acked(&mut p, "lim/2", b"two", true, 2);
    s.kill9();
    s.restart();
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    raw_publish_acked(&mut p, "lim/3", b"three", true, 1);
    raw_publish_acked(&mut p, "lim/1", b"uno", true, 2);
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("sub", Some(&d.token)));
    assert_eq!(c.subscribe(1, &[("lim/#", 1)]), vec![1]);
    let mut got: Vec<(String, Vec<u8>)> = (0..2)
        .map(|_| {
            let m = raw_next_publish(&mut c);
            (m.topic, m.payload)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("lim/1".to_string(), b"uno".to_vec()),
            ("lim/2".to_string(), b"two".to_vec())
        ]
    );
    raw_publish_acked(&mut p, "lim/marker", b"m", false, 3);
    let m = raw_next_publish(&mut c);
    assert_eq!(m.topic, "lim/marker", "lim/3 was not retained");
}
