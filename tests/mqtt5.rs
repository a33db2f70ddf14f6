//! MQTT 5 on the wire, one behaviour per test: CONNACK properties and
//! refusal codes, session expiry, message expiry, properties forwarded
//! unchanged, topic aliases both ways, subscription options and
//! identifiers, reason codes on SUBACK/UNSUBACK/PUBACK, shared
//! subscriptions, receive maximum both ways, the client's maximum packet
//! size, will delay, AUTH, 3.1.1 interop and the server's DISCONNECT.
//!
//! Most tests speak raw MQTT 5 (tests/common/v5.rs) so that what is asserted
//! is what is on the wire; the rumqttc v5 client covers the cases a client
//! library expresses. Non-delivery is asserted with a marker: a subscriber
//! has one FIFO queue, so when a message published after a forbidden one
//! arrives first, the forbidden one was not sent. Where only time can make
//! something happen (an expiry, a delay), the test lets that time pass and
//! says so.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::raw::*;
use common::v5::*;
use common::*;
use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;

/// An MQTT 5 CONNECT with `token`, clean start.
fn c5(id: &str, token: &str) -> Connect5 {
    Connect5::new(id, Some(token))
}

/// Logs in an MQTT 5 raw client with clean start and no properties.
fn login(s: &Server, id: &str, token: &str) -> Raw {
    Raw::login5(s.mqtt_port, &c5(id, token)).0
}

/// Logs in a raw MQTT 5 client that keeps its session for `expiry` seconds
/// (clean start 0); returns it with the CONNACK's session present flag.
fn login_persistent(s: &Server, id: &str, token: &str, expiry: u32) -> (Raw, bool) {
    let (raw, ack) = Raw::login5(
        s.mqtt_port,
        &c5(id, token).clean_start(false).session_expiry(expiry),
    );
    (raw, ack.session_present)
}

/// Sends DISCONNECT (reason 0, no properties) and waits for the close.
fn bye(mut c: Raw) {
    c.send(&disconnect5(rc::SUCCESS, &Props::new()));
    c.assert_closed(WAIT, "the broker closes after the client's DISCONNECT");
}

/// Publishes QoS 1 from a fresh MQTT 5 connection and returns the PUBACK's
/// reason code.
fn publish_once(s: &Server, token: &str, topic: &str, payload: &[u8], props: &Props) -> u8 {
    let id = format!("pub-{}", unique());
    let mut p = login(s, &id, token);
    let code = p.publish_acked5(topic, payload, 1, props).reason;
    bye(p);
    code
}

fn unique() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Reads PUBLISHes (acknowledging QoS 1) until one with payload `marker`;
/// returns the payloads before it.
fn until_marker(c: &mut Raw, marker: &str) -> Vec<String> {
    let mut before = Vec::new();
    loop {
        let p = c.recv5(WAIT);
        if p.text() == marker {
            return before;
        }
        before.push(p.text());
    }
}

// ------------------------------------------------------------------ CONNACK

#[test]
fn connack_announces_receive_maximum_topic_alias_maximum_and_available_features() {
    let s = Server::start_with(Config::new().mqtt("receive_maximum", "20"));
    let token = s.token("d1");
    let (m, ack) = Mqtt5::connect(options5(s.mqtt_port, "features", &token));
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    assert!(!ack.session_present, "a clean start has no session");
    let p = ack.properties.expect("CONNACK properties");
    assert_eq!(
        p.receive_max,
        Some(20),
        "receive maximum = [mqtt] receive_maximum"
    );
    assert_eq!(
        p.topic_alias_max,
        Some(10),
        "topic alias maximum, default 10"
    );
    // Absent means 2 (§3.2.2.3.4); only 0 or 1 may be sent.
    assert_eq!(p.max_qos.unwrap_or(2), 2, "maximum QoS 2");
    // Absent means available.
    assert_eq!(p.retain_available.unwrap_or(1), 1, "retain available");
    assert_eq!(
        p.wildcard_subscription_available.unwrap_or(1),
        1,
        "wildcards"
    );
    assert_eq!(
        p.subscription_identifiers_available.unwrap_or(1),
        1,
        "sub ids"
    );
    assert_eq!(
        p.shared_subscription_available.unwrap_or(1),
        1,
        "shared subs"
    );
    assert_eq!(
        p.assigned_client_identifier, None,
        "the client chose its id"
    );
    assert_eq!(p.server_keep_alive, None, "30 s is not capped");
    m.disconnect();
}

#[test]
fn empty_client_id_gets_an_assigned_client_identifier() {
    let s = Server::start();
    let token = s.token("d1");
    let (c, ack) = Raw::login5(s.mqtt_port, &c5("", &token));
    let id = ack
        .props
        .str_of(prop::ASSIGNED_CLIENT_ID)
        .unwrap_or_else(|| panic!("no assigned client identifier in {ack:?}"));
    assert!(!id.is_empty(), "the assigned id is not empty");
    // The assigned id is a working one: a second empty id gets another.
    let (c2, ack2) = Raw::login5(s.mqtt_port, &c5("", &token));
    let id2 = ack2
        .props
        .str_of(prop::ASSIGNED_CLIENT_ID)
        .expect("second id");
    assert_ne!(id, id2, "every empty id gets its own identifier");
    bye(c);
    bye(c2);
}

#[test]
fn empty_client_id_with_clean_start_0_is_allowed_in_v5_and_assigned() {
    let s = Server::start();
    let token = s.token("d1");
    let (c, ack) = Raw::connect5(
        s.mqtt_port,
        &c5("", &token).clean_start(false).session_expiry(60),
    );
    assert_eq!(
        ack.code, 0,
        "MQTT 5 assigns an id whatever Clean Start says"
    );
    assert!(!ack.session_present, "an assigned id has no session yet");
    assert!(
        ack.props.str_of(prop::ASSIGNED_CLIENT_ID).is_some(),
        "assigned client identifier in {ack:?}"
    );
    bye(c);
}

#[test]
fn server_keep_alive_is_sent_when_max_keep_alive_caps_the_clients() {
    let s = Server::start_with(Config::new().mqtt("max_keep_alive", "30"));
    let token = s.token("d1");
    let (c, ack) = Raw::login5(s.mqtt_port, &c5("long", &token).keep_alive(120));
    assert_eq!(
        ack.props.u16_of(prop::SERVER_KEEP_ALIVE),
        Some(30),
        "server keep alive caps 120 s at 30 s: {ack:?}"
    );
    bye(c);
    let (c, ack) = Raw::login5(s.mqtt_port, &c5("short", &token).keep_alive(20));
    assert_eq!(
        ack.props.u16_of(prop::SERVER_KEEP_ALIVE),
        None,
        "20 s is within the cap: {ack:?}"
    );
    bye(c);
}

#[test]
fn bad_token_is_refused_with_0x86_and_a_reason_string() {
    let s = Server::start();
    let (mut c, ack) = Raw::connect5(s.mqtt_port, &c5("bad", "not-a-token"));
    assert_eq!(ack.code, rc::BAD_USER_NAME_OR_PASSWORD, "{ack:?}");
    assert!(!ack.session_present);
    assert!(
        ack.props.str_of(prop::REASON_STRING).is_some(),
        "a reason string on the refusal: {ack:?}"
    );
    c.assert_closed(WAIT, "a refused CONNECT is closed");
}

#[test]
fn connect_with_an_authentication_method_is_refused_with_0x8c() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, ack) = Raw::connect5(
        s.mqtt_port,
        &c5("scram", &token).prop(Prop::Str(prop::AUTH_METHOD, "SCRAM-SHA-1".into())),
    );
    assert_eq!(ack.code, rc::BAD_AUTHENTICATION_METHOD, "{ack:?}");
    c.assert_closed(WAIT, "a refused CONNECT is closed");
}

// ------------------------------------------------------------ session expiry

#[test]
fn session_expiry_0_ends_the_session_at_disconnect() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, present) = login_persistent(&s, "brief", &token, 0);
    assert!(!present);
    assert_eq!(c.subscribe5(1, None, &[("se0/t", 1)]).codes, vec![1]);
    bye(c);
    // Nobody subscribes any more: the session and its subscription are gone.
    assert_eq!(
        publish_once(&s, &token, "se0/t", b"x", &Props::new()),
        rc::NO_MATCHING_SUBSCRIBERS,
        "the subscription ended with the session"
    );
    let (c, present) = login_persistent(&s, "brief", &token, 0);
    assert!(!present, "session expiry 0: no session to resume");
    bye(c);
}

#[test]
fn session_with_expiry_resumes_with_session_present_and_its_queued_qos1() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, present) = login_persistent(&s, "keeper", &token, 60);
    assert!(!present);
    assert_eq!(c.subscribe5(1, None, &[("se60/t", 1)]).codes, vec![1]);
    bye(c);
    assert_eq!(
        publish_once(&s, &token, "se60/t", b"while away", &Props::new()),
        rc::SUCCESS,
        "a session that is away still subscribes"
    );
    let (mut c, present) = login_persistent(&s, "keeper", &token, 60);
    assert!(present, "the session is resumed");
    let p = c.recv5(WAIT);
    assert_eq!(
        (p.topic.as_str(), p.text().as_str(), p.qos),
        ("se60/t", "while away", 1)
    );
    bye(c);
}

#[test]
fn session_is_gone_once_its_expiry_interval_has_passed() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, _) = login_persistent(&s, "ephemeral", &token, 1);
    assert_eq!(c.subscribe5(1, None, &[("se1/t", 1)]).codes, vec![1]);
    bye(c);
    // The session subscribes until it expires: then publishes find nobody.
    let started = Instant::now();
    wait_until("the session expired (PUBACK 0x10)", WAIT, || {
        publish_once(&s, &token, "se1/t", b"probe", &Props::new()) == rc::NO_MATCHING_SUBSCRIBERS
    });
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the session outlived its connection for about its 1 s expiry, not {:?}",
        started.elapsed()
    );
    let (c, present) = login_persistent(&s, "ephemeral", &token, 1);
    assert!(!present, "an expired session is not resumed");
    bye(c);
}

#[test]
fn disconnect_with_session_expiry_0_ends_a_session_that_had_one() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, _) = login_persistent(&s, "changer", &token, 600);
    assert_eq!(c.subscribe5(1, None, &[("sechg/t", 1)]).codes, vec![1]);
    c.send(&disconnect5(
        rc::SUCCESS,
        &Props::new().u32(prop::SESSION_EXPIRY, 0),
    ));
    c.assert_closed(WAIT, "closed after DISCONNECT");
    assert_eq!(
        publish_once(&s, &token, "sechg/t", b"x", &Props::new()),
        rc::NO_MATCHING_SUBSCRIBERS,
        "DISCONNECT's session expiry 0 ended the session"
    );
    let (c, present) = login_persistent(&s, "changer", &token, 600);
    assert!(!present, "no session to resume");
    bye(c);
}

#[test]
fn disconnect_giving_an_expiry_to_a_session_without_one_gets_0x82() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, _) = login_persistent(&s, "sneaky", &token, 0);
    assert_eq!(c.subscribe5(1, None, &[("se082/t", 1)]).codes, vec![1]);
    c.send(&disconnect5(
        rc::SUCCESS,
        &Props::new().u32(prop::SESSION_EXPIRY, 600),
    ));
    let d = c.expect_disconnect5(WAIT, "DISCONNECT from 0 to 600 s");
    assert_eq!(d.reason, rc::PROTOCOL_ERROR, "{d:?}");
    // The session still ends: its expiry was 0.
    wait_until("the session ended", WAIT, || {
        publish_once(&s, &token, "se082/t", b"x", &Props::new()) == rc::NO_MATCHING_SUBSCRIBERS
    });
}

// ------------------------------------------------------------ message expiry

#[test]
fn message_expiry_is_forwarded_as_the_remaining_interval() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = login_persistent(&s, "late", &token, 600);
    assert_eq!(sub.subscribe5(1, None, &[("mexp/t", 1)]).codes, vec![1]);
    bye(sub);
    let expiry = Props::new().u32(prop::MESSAGE_EXPIRY, 30);
    assert_eq!(
        publish_once(&s, &token, "mexp/t", b"m", &expiry),
        rc::SUCCESS
    );
    let published = Instant::now();
    // The interval counts down in whole seconds: let two pass.
    thread::sleep(Duration::from_millis(2100));
    let (mut sub, present) = login_persistent(&s, "late", &token, 600);
    assert!(present);
    let p = sub.recv5(WAIT);
    let waited = published.elapsed().as_secs() as u32;
    let left = p
        .props
        .u32_of(prop::MESSAGE_EXPIRY)
        .unwrap_or_else(|| panic!("no message expiry on the delivery: {p:?}"));
    assert!(
        left <= 30 - 2 && left >= 30 - waited - 1,
        "remaining expiry {left} s after {waited} s of 30 s"
    );
    bye(sub);
}

#[test]
fn expired_message_is_not_delivered_to_a_session_that_was_away() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = login_persistent(&s, "away", &token, 600);
    assert_eq!(sub.subscribe5(1, None, &[("mexp2/t", 1)]).codes, vec![1]);
    bye(sub);
    let short = Props::new().u32(prop::MESSAGE_EXPIRY, 1);
    assert_eq!(
        publish_once(&s, &token, "mexp2/t", b"stale", &short),
        rc::SUCCESS
    );
    assert_eq!(
        publish_once(&s, &token, "mexp2/t", b"fresh", &Props::new()),
        rc::SUCCESS
    );
    // Only time makes a message expire.
    thread::sleep(Duration::from_millis(2100));
    let (mut sub, present) = login_persistent(&s, "away", &token, 600);
    assert!(present);
    assert_eq!(
        until_marker(&mut sub, "fresh"),
        Vec::<String>::new(),
        "the expired message is dropped from the session's queue"
    );
    bye(sub);
}

#[test]
fn expired_message_is_not_delivered_after_a_restart() {
    let mut s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = login_persistent(&s, "away", &token, 600);
    assert_eq!(sub.subscribe5(1, None, &[("mexp3/t", 1)]).codes, vec![1]);
    bye(sub);
    let short = Props::new().u32(prop::MESSAGE_EXPIRY, 1);
    let long = Props::new().u32(prop::MESSAGE_EXPIRY, 600);
    assert_eq!(
        publish_once(&s, &token, "mexp3/t", b"stale", &short),
        rc::SUCCESS
    );
    assert_eq!(
        publish_once(&s, &token, "mexp3/t", b"fresh", &long),
        rc::SUCCESS
    );
    s.kill9();
    // Only time makes a message expire.
    thread::sleep(Duration::from_millis(2100));
    s.restart();
    let (mut sub, present) = login_persistent(&s, "away", &token, 600);
    assert!(present, "the session survived kill -9");
    let p = sub.recv5(WAIT);
    assert_eq!(
        p.text(),
        "fresh",
        "the expired message is gone after a restart"
    );
    let left = p
        .props
        .u32_of(prop::MESSAGE_EXPIRY)
        .expect("remaining expiry");
    assert!(
        (540..=598).contains(&left),
        "the remaining expiry counts from the arrival, across the restart: {left}"
    );
    bye(sub);
}

#[test]
fn payload_format_utf8_with_invalid_utf8_gets_puback_0x99_and_is_not_delivered() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "watcher", &token);
    assert_eq!(sub.subscribe5(1, None, &[("pfi/t", 1)]).codes, vec![1]);
    let mut p = login(&s, "liar", &token);
    let utf8 = Props::new().byte(prop::PAYLOAD_FORMAT, 1);
    let ack = p.publish_acked5("pfi/t", &[0xFF, 0xFE, 0x80], 1, &utf8);
    assert_eq!(ack.reason, rc::PAYLOAD_FORMAT_INVALID, "{ack:?}");
    let ack = p.publish_acked5("pfi/t", "grüße".as_bytes(), 2, &utf8);
    assert_eq!(ack.reason, rc::SUCCESS, "valid UTF-8 is accepted");
    let got = sub.recv5(WAIT);
    assert_eq!(got.text(), "grüße", "only the valid payload is delivered");
    assert_eq!(got.props.byte_of(prop::PAYLOAD_FORMAT), Some(1));
    bye(p);
    bye(sub);
}

#[test]
fn publish_properties_are_forwarded_unchanged_and_in_order() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "reader", &token);
    assert_eq!(sub.subscribe5(1, None, &[("props/t", 1)]).codes, vec![1]);
    let sent = Props::new()
        .user("z", "first")
        .str(prop::CONTENT_TYPE, "application/json")
        .user("a", "second")
        .str(prop::RESPONSE_TOPIC, "props/reply")
        .user("z", "third")
        .bin(prop::CORRELATION_DATA, &[0, 1, 2, 0xFF])
        .byte(prop::PAYLOAD_FORMAT, 1);
    let mut p = login(&s, "writer", &token);
    assert_eq!(
        p.publish_acked5("props/t", b"{}", 1, &sent).reason,
        rc::SUCCESS
    );
    let got = sub.recv5(WAIT);
    assert_eq!(
        got.props.users(),
        sent.users(),
        "user properties, same order"
    );
    assert_eq!(
        got.props.str_of(prop::CONTENT_TYPE),
        Some("application/json")
    );
    assert_eq!(got.props.str_of(prop::RESPONSE_TOPIC), Some("props/reply"));
    assert_eq!(
        got.props.bin_of(prop::CORRELATION_DATA),
        Some(&[0u8, 1, 2, 0xFF][..])
    );
    assert_eq!(got.props.byte_of(prop::PAYLOAD_FORMAT), Some(1));
    // Nothing added but what a delivery may carry.
    for q in &got.props.0 {
        assert!(
            sent.0.contains(q) || q.id() == prop::SUBSCRIPTION_ID || q.id() == prop::TOPIC_ALIAS,
            "unexpected property {q:?} on the delivery"
        );
    }
    bye(p);
    bye(sub);
}

// ------------------------------------------------------------ topic aliases

#[test]
fn client_topic_alias_is_set_then_names_the_topic() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "reader", &token);
    assert_eq!(sub.subscribe5(1, None, &[("alias/in", 1)]).codes, vec![1]);
    let mut p = login(&s, "aliaser", &token);
    let alias = Props::new().u16(prop::TOPIC_ALIAS, 1);
    p.send(&publish5("alias/in", b"one", 1, false, 1, &alias));
    assert_eq!(p.expect_kind(PUBACK, WAIT, "PUBACK").puback5().reason, 0);
    p.send(&publish5("", b"two", 1, false, 2, &alias));
    assert_eq!(p.expect_kind(PUBACK, WAIT, "PUBACK").puback5().reason, 0);
    for want in ["one", "two"] {
        let got = sub.recv5(WAIT);
        assert_eq!(
            (got.topic.as_str(), got.text().as_str()),
            ("alias/in", want)
        );
    }
    bye(p);
    bye(sub);
}

#[test]
fn topic_alias_0_gets_disconnect_0x94() {
    let s = Server::start();
    let token = s.token("d1");
    let mut p = login(&s, "zero", &token);
    let alias = Props::new().u16(prop::TOPIC_ALIAS, 0);
    p.send(&publish5("alias/zero", b"x", 1, false, 1, &alias));
    let d = p.expect_disconnect5(WAIT, "topic alias 0");
    assert_eq!(d.reason, rc::TOPIC_ALIAS_INVALID, "{d:?}");
}

#[test]
fn topic_alias_above_the_maximum_gets_disconnect_0x94() {
    let s = Server::start_with(Config::new().mqtt("topic_alias_maximum", "10"));
    let token = s.token("d1");
    let (mut p, ack) = Raw::login5(s.mqtt_port, &c5("big", &token));
    assert_eq!(ack.props.u16_of(prop::TOPIC_ALIAS_MAXIMUM), Some(10));
    let alias = Props::new().u16(prop::TOPIC_ALIAS, 11);
    p.send(&publish5("alias/big", b"x", 1, false, 1, &alias));
    let d = p.expect_disconnect5(WAIT, "topic alias 11 of 10");
    assert_eq!(d.reason, rc::TOPIC_ALIAS_INVALID, "{d:?}");
}

#[test]
fn broker_sends_a_topic_alias_to_a_client_that_allows_them() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = Raw::login5(
        s.mqtt_port,
        &c5("aliased", &token).prop(Prop::U16(prop::TOPIC_ALIAS_MAXIMUM, 5)),
    );
    assert_eq!(
        sub.subscribe5(1, None, &[("alias/out/#", 1)]).codes,
        vec![1]
    );
    let mut p = login(&s, "pub", &token);
    for (i, m) in ["a", "b", "c"].iter().enumerate() {
        let ack = p.publish_acked5("alias/out/x", m.as_bytes(), i as u16 + 1, &Props::new());
        assert_eq!(ack.reason, 0);
    }
    let first = sub.recv5(WAIT);
    assert_eq!(first.topic, "alias/out/x", "the first names the topic");
    let alias = first
        .props
        .u16_of(prop::TOPIC_ALIAS)
        .unwrap_or_else(|| panic!("the first publish sets an alias: {first:?}"));
    assert!(
        (1..=5).contains(&alias),
        "alias {alias} within the client's 5"
    );
    for want in ["b", "c"] {
        let next = sub.recv5(WAIT);
        assert_eq!(next.text(), want);
        assert_eq!(
            next.topic, "",
            "later publishes name the topic by alias only"
        );
        assert_eq!(next.props.u16_of(prop::TOPIC_ALIAS), Some(alias));
    }
    bye(p);
    bye(sub);
}

#[test]
fn no_topic_alias_is_sent_to_a_client_that_does_not_allow_them() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "plain", &token);
    assert_eq!(sub.subscribe5(1, None, &[("alias/none", 1)]).codes, vec![1]);
    let mut p = login(&s, "pub", &token);
    p.publish_acked5("alias/none", b"a", 1, &Props::new());
    p.publish_acked5("alias/none", b"b", 2, &Props::new());
    for want in ["a", "b"] {
        let got = sub.recv5(WAIT);
        assert_eq!(
            (got.topic.as_str(), got.text().as_str()),
            ("alias/none", want)
        );
        assert_eq!(got.props.u16_of(prop::TOPIC_ALIAS), None);
    }
    bye(p);
    bye(sub);
}

// ------------------------------------------------------------ subscription options

#[test]
fn no_local_subscription_does_not_receive_its_own_publishes() {
    let s = Server::start();
    let token = s.token("d1");
    let mut me = login(&s, "me", &token);
    let a = me.subscribe5(1, None, &[("nolocal/t", sub_opts(1, true, false, 0))]);
    assert_eq!(a.codes, vec![1]);
    assert_eq!(
        me.publish_acked5("nolocal/t", b"mine", 2, &Props::new())
            .reason,
        0
    );
    let mut other = login(&s, "other", &token);
    other.publish_acked5("nolocal/t", b"theirs", 1, &Props::new());
    assert_eq!(
        until_marker(&mut me, "theirs"),
        Vec::<String>::new(),
        "no local: its own publish is not sent back"
    );
    bye(other);
    bye(me);
}

#[test]
fn retain_as_published_keeps_the_retain_flag_and_default_clears_it() {
    let s = Server::start();
    let token = s.token("d1");
    let mut rap = login(&s, "rap", &token);
    let mut plain = login(&s, "plain", &token);
    assert_eq!(
        rap.subscribe5(1, None, &[("rap/t", sub_opts(1, false, true, 0))])
            .codes,
        vec![1]
    );
    assert_eq!(
        plain
            .subscribe5(1, None, &[("rap/t", sub_opts(1, false, false, 0))])
            .codes,
        vec![1]
    );
    let mut p = login(&s, "pub", &token);
    p.send(&publish5("rap/t", b"kept", 1, true, 1, &Props::new()));
    p.expect_kind(PUBACK, WAIT, "PUBACK");
    let got = rap.recv5(WAIT);
    assert!(got.retain, "retain as published: flag kept");
    let got = plain.recv5(WAIT);
    assert!(!got.retain, "without it a live message has retain 0");
    // Clean up the retained message.
    p.send(&publish5("rap/t", b"", 1, true, 2, &Props::new()));
    p.expect_kind(PUBACK, WAIT, "PUBACK");
    bye(p);
    bye(rap);
    bye(plain);
}

/// A broker holding a retained message on `topic`, and a token.
fn with_retained(topic: &str) -> (Server, String) {
    let s = Server::start();
    let token = s.token("d1");
    let mut p = login(&s, "retainer", &token);
    p.send(&publish5(topic, b"retained", 1, true, 1, &Props::new()));
    p.expect_kind(PUBACK, WAIT, "PUBACK");
    bye(p);
    (s, token)
}

/// Publishes `marker` (not retained) on `topic` and returns what `c` got
/// before it.
fn before_marker(s: &Server, token: &str, c: &mut Raw, topic: &str, marker: &str) -> Vec<String> {
    publish_once(s, token, topic, marker.as_bytes(), &Props::new());
    until_marker(c, marker)
}

#[test]
fn retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let (s, token) = with_retained("rh0/t");
    let mut c = login(&s, "rh0", &token);
    for pkid in [1, 2] {
        c.subscribe5(pkid, None, &[("rh0/t", sub_opts(1, false, false, 0))]);
        let got = c.recv5(WAIT);
        assert_eq!(
            (got.text().as_str(), got.retain),
            ("retained", true),
            "subscribe {pkid}"
        );
    }
    bye(c);
}

#[test]
fn retain_handling_1_sends_retained_messages_only_for_a_new_subscription() {
    let (s, token) = with_retained("rh1/t");
    let mut c = login(&s, "rh1", &token);
    c.subscribe5(1, None, &[("rh1/t", sub_opts(1, false, false, 1))]);
    let got = c.recv5(WAIT);
    assert_eq!((got.text().as_str(), got.retain), ("retained", true));
    c.subscribe5(2, None, &[("rh1/t", sub_opts(1, false, false, 1))]);
    assert_eq!(
        before_marker(&s, &token, &mut c, "rh1/t", "marker"),
        Vec::<String>::new(),
        "an existing subscription is not sent the retained message again"
    );
    bye(c);
}

#[test]
fn retain_handling_2_never_sends_retained_messages() {
    let (s, token) = with_retained("rh2/t");
    let mut c = login(&s, "rh2", &token);
    c.subscribe5(1, None, &[("rh2/t", sub_opts(1, false, false, 2))]);
    assert_eq!(
        before_marker(&s, &token, &mut c, "rh2/t", "marker"),
        Vec::<String>::new(),
        "retain handling 2: no retained message on subscribe"
    );
    bye(c);
}

// ------------------------------------------------------------ subscription identifiers

#[test]
fn overlapping_subscriptions_get_one_copy_with_every_identifier_at_the_highest_qos() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "overlap", &token);
    assert_eq!(c.subscribe5(1, Some(7), &[("ids/#", 0)]).codes, vec![0]);
    assert_eq!(c.subscribe5(2, Some(300), &[("ids/a", 1)]).codes, vec![1]);
    let mut p = login(&s, "pub", &token);
    p.publish_acked5("ids/a", b"both", 1, &Props::new());
    p.publish_acked5("ids/b", b"one", 2, &Props::new());
    let got = c.recv5(WAIT);
    assert_eq!(got.text(), "both");
    assert_eq!(
        got.qos, 1,
        "the highest granted QoS of the matching subscriptions"
    );
    let mut ids = got.props.sub_ids();
    ids.sort();
    assert_eq!(ids, vec![7, 300], "every matching subscription identifier");
    let next = c.recv5(WAIT);
    assert_eq!(
        next.text(),
        "one",
        "one copy only: the next is the next message"
    );
    assert_eq!(next.props.sub_ids(), vec![7]);
    assert_eq!(next.qos, 0);
    bye(p);
    bye(c);
}

#[test]
fn subscription_identifier_is_carried_by_the_rumqttc_v5_client() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = Mqtt5::connect(options5(s.mqtt_port, "ids-sub", &token));
    let codes = sub.subscribe_with(vec![Filter::new("rids/+", QoS::AtLeastOnce)], Some(42));
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
            QoS::AtLeastOnce
        )]
    );
    let (mut p, _) = Mqtt5::connect(options5(s.mqtt_port, "ids-pub", &token));
    let ack = p.publish_acked("rids/x", false, "hi", PublishProperties::default());
    assert_eq!(
        ack.reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::Success
    );
    let got = sub.recv(WAIT);
    assert_eq!(text5(&got), "hi");
    let props = got.properties.expect("delivery properties");
    assert_eq!(props.subscription_identifiers, vec![42]);
    p.disconnect();
    sub.disconnect();
}

// ------------------------------------------------------------ reason codes

#[test]
fn suback_has_0x87_for_an_acl_denied_filter_and_0x8f_for_an_invalid_shared_one() {
    let s = Server::start_with(Config::new().acl("*", "suback/secret/#", "deny", &["subscribe"]));
    let token = s.token("d1");
    let mut c = login(&s, "subber", &token);
    let a = c.subscribe5(
        1,
        None,
        &[("suback/open", 1), ("suback/secret/x", 1), ("suback/ok", 2)],
    );
    assert_eq!(a.codes, vec![1, rc::NOT_AUTHORIZED, 2], "per filter");
    // A shared subscription without a filter after its group.
    let a = c.subscribe5(2, None, &[("$share/g", 1), ("suback/fine", 0)]);
    assert_eq!(a.codes, vec![rc::TOPIC_FILTER_INVALID, 0], "per filter");
    bye(c);
}

#[test]
fn suback_has_0x8f_for_a_filter_with_a_misplaced_wildcard() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "wild", &token);
    let a = c.subscribe5(1, None, &[("suback/#/bad", 1), ("suback/fine", 0)]);
    assert_eq!(a.codes, vec![rc::TOPIC_FILTER_INVALID, 0], "per filter");
    // The valid filter of the same SUBSCRIBE is in force.
    assert_eq!(
        publish_once(&s, &token, "suback/fine", b"x", &Props::new()),
        rc::SUCCESS
    );
    bye(c);
}

#[test]
fn unsuback_has_0x11_when_no_subscription_existed() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "unsubber", &token);
    c.subscribe5(1, None, &[("unsub/a", 1)]);
    c.send(&unsubscribe5(2, &["unsub/a", "unsub/never"]));
    let a = c.expect_kind(UNSUBACK, WAIT, "UNSUBACK").suback5();
    assert_eq!(a.pkid, 2);
    assert_eq!(a.codes, vec![rc::SUCCESS, rc::NO_SUBSCRIPTION_EXISTED]);
    bye(c);
}

#[test]
fn puback_has_0x10_when_no_subscriber_matches() {
    let s = Server::start();
    let token = s.token("d1");
    let mut p = login(&s, "lonely", &token);
    let ack = p.publish_acked5("nobody/here", b"x", 1, &Props::new());
    assert_eq!(ack.reason, rc::NO_MATCHING_SUBSCRIBERS, "{ack:?}");
    let mut sub = login(&s, "someone", &token);
    sub.subscribe5(1, None, &[("nobody/here", 0)]);
    let ack = p.publish_acked5("nobody/here", b"x", 2, &Props::new());
    assert_eq!(ack.reason, rc::SUCCESS, "now somebody subscribes");
    bye(p);
    bye(sub);
}

#[test]
fn puback_has_0x87_for_an_acl_denied_publish_and_the_publisher_stays() {
    let s = Server::start_with(Config::new().acl("*", "ro/#", "deny", &["publish"]));
    let token = s.token("d1");
    let mut sub = login(&s, "sub", &token);
    sub.subscribe5(1, None, &[("ro/#", 1), ("rw/t", 1)]);
    let mut p = login(&s, "pub", &token);
    let ack = p.publish_acked5("ro/x", b"denied", 1, &Props::new());
    assert_eq!(ack.reason, rc::NOT_AUTHORIZED, "{ack:?}");
    let ack = p.publish_acked5("rw/t", b"allowed", 2, &Props::new());
    assert_eq!(ack.reason, rc::SUCCESS, "the publisher is still connected");
    assert_eq!(until_marker(&mut sub, "allowed"), Vec::<String>::new());
    bye(p);
    bye(sub);
}

// ------------------------------------------------------------ shared subscriptions

#[test]
fn shared_subscription_is_served_round_robin_to_v5_and_311_members() {
    let s = Server::start();
    let token = s.token("d1");
    let mut m5 = login(&s, "member5", &token);
    assert_eq!(
        m5.subscribe5(1, None, &[("$share/g/shr/t", 1)]).codes,
        vec![1]
    );
    let mut m3 = Raw::login(s.mqtt_port, &ConnectOpts::new("member3", Some(&token)));
    assert_eq!(m3.subscribe(1, &[("$share/g/shr/t", 1)]), vec![1]);
    let mut all = login(&s, "everything", &token);
    assert_eq!(all.subscribe5(1, None, &[("shr/t", 1)]).codes, vec![1]);
    let mut p = login(&s, "pub", &token);
    for i in 1..=4u16 {
        p.publish_acked5("shr/t", format!("m{i}").as_bytes(), i, &Props::new());
    }
    // A plain subscriber gets all four; the group shares them.
    let plain: Vec<String> = (0..4).map(|_| all.recv5(WAIT).text()).collect();
    assert_eq!(plain, vec!["m1", "m2", "m3", "m4"]);
    let mut got5 = Vec::new();
    let mut got3 = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got5.len() + got3.len() < 4 {
        assert!(Instant::now() < deadline, "group got {got5:?} and {got3:?}");
        if let Ok(p) = m5.read_packet(Duration::from_millis(50)) {
            if p.kind == PUBLISH {
                let p = p.publish5();
                m5.send(&puback5(p.pkid));
                got5.push(p.text());
            }
        }
        if let Ok(p) = m3.read_packet(Duration::from_millis(50)) {
            if p.kind == PUBLISH {
                let p = p.publish();
                m3.send(&puback_packet(p.pkid));
                got3.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
    }
    assert_eq!(
        (got5.len(), got3.len()),
        (2, 2),
        "round robin: two each ({got5:?}, {got3:?})"
    );
    // Each message went to exactly one member.
    let mut both: Vec<String> = got5.iter().chain(got3.iter()).cloned().collect();
    both.sort();
    assert_eq!(both, vec!["m1", "m2", "m3", "m4"]);
    // Round robin alternates.
    assert_ne!(got5[0], got5[1]);
    let odd = |v: &Vec<String>| {
        v.iter()
            .filter(|m| ["m1", "m3"].contains(&m.as_str()))
            .count()
    };
    assert!(
        odd(&got5) == 2 || odd(&got5) == 0,
        "members alternate: v5 got {got5:?}, 3.1.1 got {got3:?}"
    );
    bye(p);
}

#[test]
fn retained_message_is_not_sent_on_a_shared_subscribe() {
    let (s, token) = with_retained("shret/t");
    let mut c = login(&s, "sharer", &token);
    assert_eq!(
        c.subscribe5(1, None, &[("$share/g/shret/t", 1)]).codes,
        vec![1]
    );
    assert_eq!(
        before_marker(&s, &token, &mut c, "shret/t", "marker"),
        Vec::<String>::new(),
        "no retained message on a shared subscribe"
    );
    bye(c);
}

// ------------------------------------------------------------ receive maximum

#[test]
fn client_exceeding_our_receive_maximum_gets_disconnect_0x93() {
    let s = Server::start_with(Config::new().mqtt("receive_maximum", "2"));
    let token = s.token("d1");
    let (mut c, ack) = Raw::login5(s.mqtt_port, &c5("greedy", &token));
    assert_eq!(ack.props.u16_of(prop::RECEIVE_MAXIMUM), Some(2));
    // QoS 2 publishes stay unacknowledged until PUBREL: never send one.
    for pkid in 1..=2u16 {
        c.send(&publish5("rm/t", b"x", 2, false, pkid, &Props::new()));
        let rec = c.expect_kind(PUBREC, WAIT, "PUBREC").puback5();
        assert_eq!(rec.pkid, pkid);
    }
    c.send(&publish5("rm/t", b"x", 2, false, 3, &Props::new()));
    let d = c.expect_disconnect5(WAIT, "a third unacknowledged QoS 2 publish");
    assert_eq!(d.reason, rc::RECEIVE_MAXIMUM_EXCEEDED, "{d:?}");
    // The broker goes on.
    let mut ok = login(&s, "polite", &token);
    assert_eq!(
        ok.publish_acked5("rm/t", b"y", 1, &Props::new()).reason,
        0x10
    );
    bye(ok);
}

#[test]
fn broker_never_exceeds_the_clients_receive_maximum() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut sub, _) = Raw::login5(
        s.mqtt_port,
        &c5("slow", &token).prop(Prop::U16(prop::RECEIVE_MAXIMUM, 2)),
    );
    assert_eq!(sub.subscribe5(1, None, &[("rmc/t", 1)]).codes, vec![1]);
    let mut p = login(&s, "pub", &token);
    for i in 1..=5u16 {
        p.publish_acked5("rmc/t", format!("m{i}").as_bytes(), i, &Props::new());
    }
    let first = sub.next_publish5(WAIT);
    let second = sub.next_publish5(WAIT);
    assert_eq!(
        (first.text().as_str(), second.text().as_str()),
        ("m1", "m2")
    );
    // Absence can only be shown by waiting: nothing more while two are out.
    sub.no_publish_within(Duration::from_millis(1500), "a third unacknowledged QoS 1");
    // Each PUBACK lets exactly one more through.
    sub.send(&puback5(first.pkid));
    let third = sub.next_publish5(WAIT);
    assert_eq!(third.text(), "m3");
    sub.no_publish_within(
        Duration::from_millis(500),
        "a fourth while m2 and m3 are out",
    );
    for p in [second, third] {
        sub.send(&puback5(p.pkid));
    }
    assert_eq!(sub.recv5(WAIT).text(), "m4");
    assert_eq!(sub.recv5(WAIT).text(), "m5");
    bye(p);
    bye(sub);
}

// ------------------------------------------------------------ maximum packet size

#[test]
fn message_larger_than_the_clients_maximum_packet_size_is_dropped_and_counted() {
    let s = Server::start();
    let token = s.token("d1");
    let metric = "brook_messages_dropped_total{reason=\"packet_too_large\"}";
    let (mut sub, _) = Raw::login5(
        s.mqtt_port,
        &c5("small", &token).prop(Prop::U32(prop::MAXIMUM_PACKET_SIZE, 200)),
    );
    assert_eq!(sub.subscribe5(1, None, &[("mps/t", 1)]).codes, vec![1]);
    let mut p = login(&s, "pub", &token);
    p.publish_acked5("mps/t", &[b'x'; 500], 1, &Props::new());
    p.publish_acked5("mps/t", b"fits", 2, &Props::new());
    let got = sub.recv5(WAIT);
    assert_eq!(
        got.text(),
        "fits",
        "the too large message is not sent, the next is"
    );
    // A fresh server: this is its only drop.
    assert_eq!(s.metric(metric), 1.0, "the drop is counted");
    bye(p);
    bye(sub);
}

// ------------------------------------------------------------ will

#[test]
fn will_is_sent_after_the_will_delay() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("wd/+", 1)]).codes, vec![1]);
    let will_props = Props::new()
        .u32(prop::WILL_DELAY, 2)
        .user("why", "gone")
        .str(prop::CONTENT_TYPE, "text/plain");
    let c = Raw::login5(
        s.mqtt_port,
        &c5("mortal", &token)
            .session_expiry(60)
            .will("wd/mortal", b"bye", 1, false, will_props),
    )
    .0;
    c.abort();
    let dropped = Instant::now();
    let will = sub.recv5(WAIT);
    let after = dropped.elapsed();
    assert_eq!(
        (will.topic.as_str(), will.text().as_str()),
        ("wd/mortal", "bye")
    );
    assert!(
        after >= Duration::from_millis(1500),
        "the will waited for its 2 s delay, not {after:?}"
    );
    assert_eq!(will.props.users(), vec![("why".into(), "gone".into())]);
    assert_eq!(will.props.str_of(prop::CONTENT_TYPE), Some("text/plain"));
}

#[test]
fn will_is_not_sent_when_the_client_reconnects_within_the_delay() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("wdr/+", 1)]).codes, vec![1]);
    let connect = c5("phoenix", &token)
        .clean_start(false)
        .session_expiry(60)
        .will(
            "wdr/phoenix",
            b"bye",
            1,
            false,
            Props::new().u32(prop::WILL_DELAY, 2),
        );
    let c = Raw::login5(s.mqtt_port, &connect).0;
    c.abort();
    let (back, ack) = Raw::login5(
        s.mqtt_port,
        &connect.clone().will(
            "wdr/phoenix",
            b"bye",
            1,
            false,
            Props::new().u32(prop::WILL_DELAY, 600),
        ),
    );
    assert!(ack.session_present, "reconnected within the delay");
    // Only time shows a will that does not come: let the first delay pass.
    thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        before_marker(&s, &token, &mut sub, "wdr/marker", "marker"),
        Vec::<String>::new(),
        "no will after a reconnect within the delay"
    );
    bye(back);
}

#[test]
fn a_delayed_will_goes_when_a_clean_start_takes_the_open_session_over() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("wto/+", 1)]).codes, vec![1]);
    // A will that would wait ten minutes: only the session's end sends it now.
    let (mut old, _) = Raw::login5(
        s.mqtt_port,
        &c5("twin", &token).session_expiry(600).will(
            "wto/twin",
            b"session over",
            1,
            false,
            Props::new().u32(prop::WILL_DELAY, 600),
        ),
    );
    let (new, ack) = Raw::login5(s.mqtt_port, &c5("twin", &token).clean_start(true));
    assert!(!ack.session_present, "a clean start");
    let d = old.expect_disconnect5(WAIT, "the connection taken over");
    assert_eq!(d.reason, rc::SESSION_TAKEN_OVER, "{d:?}");
    let will = sub.recv5(WAIT);
    assert_eq!(
        (will.topic.as_str(), will.text().as_str()),
        ("wto/twin", "session over"),
        "the clean start ended the old session, so its will went"
    );
    bye(new);
}

#[test]
fn a_delayed_will_does_not_go_when_a_resume_takes_the_open_session_over() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("wtr/+", 1)]).codes, vec![1]);
    let connect = c5("twin", &token).clean_start(false).session_expiry(600);
    let (mut old, _) = Raw::login5(
        s.mqtt_port,
        &connect.clone().will(
            "wtr/twin",
            b"session over",
            1,
            false,
            Props::new().u32(prop::WILL_DELAY, 600),
        ),
    );
    let (new, ack) = Raw::login5(s.mqtt_port, &connect);
    assert!(ack.session_present, "the session was resumed");
    let d = old.expect_disconnect5(WAIT, "the connection taken over");
    assert_eq!(d.reason, rc::SESSION_TAKEN_OVER, "{d:?}");
    old.assert_closed(WAIT, "the old connection is closed");
    assert_eq!(
        before_marker(&s, &token, &mut sub, "wtr/marker", "marker"),
        Vec::<String>::new(),
        "the session goes on, so the will waits for its delay"
    );
    bye(new);
}

#[test]
fn disconnect_with_reason_0x04_sends_the_will() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("w04/+", 1)]).codes, vec![1]);
    let (mut c, _) = Raw::login5(
        s.mqtt_port,
        &c5("leaver", &token).will("w04/leaver", b"as asked", 1, false, Props::new()),
    );
    c.send(&disconnect5(rc::DISCONNECT_WITH_WILL, &Props::new()));
    c.assert_closed(WAIT, "closed after DISCONNECT 0x04");
    let will = sub.recv5(WAIT);
    assert_eq!(
        (will.topic.as_str(), will.text().as_str()),
        ("w04/leaver", "as asked")
    );
}

#[test]
fn disconnect_with_reason_0_sends_no_will() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "heir", &token);
    assert_eq!(sub.subscribe5(1, None, &[("w00/+", 1)]).codes, vec![1]);
    let (c, _) = Raw::login5(
        s.mqtt_port,
        &c5("quiet", &token).will("w00/quiet", b"no", 1, false, Props::new()),
    );
    bye(c);
    assert_eq!(
        before_marker(&s, &token, &mut sub, "w00/marker", "marker"),
        Vec::<String>::new(),
        "a normal DISCONNECT discards the will"
    );
}

// ------------------------------------------------------------ AUTH

#[test]
fn auth_packet_is_refused_with_a_reason_code_and_the_broker_serves_others() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "authy", &token);
    c.send(&auth5(
        0x19,
        &Props::new().str(prop::AUTH_METHOD, "SCRAM-SHA-1"),
    ));
    let d = c.expect_disconnect5(WAIT, "AUTH without enhanced authentication");
    assert!(
        d.reason >= 0x80,
        "the DISCONNECT carries an error reason code: {d:?}"
    );
    let mut ok = login(&s, "after", &token);
    assert_eq!(ok.subscribe5(1, None, &[("auth/t", 1)]).codes, vec![1]);
    assert_eq!(
        ok.publish_acked5("auth/t", b"alive", 2, &Props::new())
            .reason,
        0
    );
    assert_eq!(ok.recv5(WAIT).text(), "alive");
    bye(ok);
}

// ------------------------------------------------------------ interop, takeover

#[test]
fn v5_and_311_clients_interoperate_on_one_topic() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut v5, _) = Mqtt5::connect(options5(s.mqtt_port, "five", &token));
    v5.subscribe("mix/t", QoS::AtLeastOnce);
    let mut v3 = s.mqtt("three", &token);
    v3.subscribe("mix/t", rumqttc::QoS::AtLeastOnce);
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        ..PublishProperties::default()
    };
    v5.publish_acked("mix/t", false, "from five", props);
    v3.publish_acked("mix/t", rumqttc::QoS::AtLeastOnce, false, "from three");
    let a = v3.recv(WAIT);
    let b = v3.recv(WAIT);
    assert_eq!(
        (text(&a), text(&b)),
        ("from five".into(), "from three".into())
    );
    let a = v5.recv(WAIT);
    assert_eq!(text5(&a), "from five");
    let props = a.properties.expect("the v5 publish's properties");
    assert_eq!(
        props.user_properties,
        vec![("k".to_string(), "v".to_string())]
    );
    let b = v5.recv(WAIT);
    assert_eq!(
        (topic5(&b), text5(&b)),
        ("mix/t".into(), "from three".into())
    );
    v5.disconnect();
    v3.disconnect();
}

#[test]
fn session_takeover_sends_disconnect_0x8e_to_the_old_connection() {
    let s = Server::start();
    let token = s.token("d1");
    let mut first = login(&s, "twin", &token);
    let second = login(&s, "twin", &token);
    let d = first.expect_disconnect5(WAIT, "the older connection of a taken over session");
    assert_eq!(d.reason, rc::SESSION_TAKEN_OVER, "{d:?}");
    bye(second);
}

// ------------------------------------------------------------ caps and protocol errors

#[test]
fn session_expiry_above_max_session_expiry_is_capped_and_announced_in_connack() {
    let s = Server::start_with(Config::new().mqtt("max_session_expiry", "\"1m\""));
    let token = s.token("d1");
    let (c, ack) = Raw::login5(
        s.mqtt_port,
        &c5("capped", &token).clean_start(false).session_expiry(3600),
    );
    assert_eq!(
        ack.props.u32_of(prop::SESSION_EXPIRY),
        Some(60),
        "CONNACK tells the granted session expiry: {ack:?}"
    );
    bye(c);
    let (c, ack) = Raw::login5(
        s.mqtt_port,
        &c5("within", &token).clean_start(false).session_expiry(30),
    );
    assert_eq!(
        ack.props.u32_of(prop::SESSION_EXPIRY),
        None,
        "an expiry within the cap is granted as asked: {ack:?}"
    );
    bye(c);
}

#[test]
fn message_expiry_above_max_message_expiry_is_capped() {
    let s = Server::start_with(Config::new().mqtt("max_message_expiry", "\"10s\""));
    let token = s.token("d1");
    let mut sub = login(&s, "reader", &token);
    assert_eq!(sub.subscribe5(1, None, &[("mcap/t", 1)]).codes, vec![1]);
    let long = Props::new().u32(prop::MESSAGE_EXPIRY, 3600);
    assert_eq!(publish_once(&s, &token, "mcap/t", b"m", &long), rc::SUCCESS);
    let got = sub.recv5(WAIT);
    let left = got
        .props
        .u32_of(prop::MESSAGE_EXPIRY)
        .expect("message expiry");
    assert!(left <= 10, "capped at [mqtt] max_message_expiry: {left}");
    bye(sub);
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "sharer", &token);
    c.send(&subscribe5(
        1,
        None,
        &[("$share/g/nl/t", sub_opts(1, true, false, 0))],
    ));
    // MQTT 5 §3.8.3.1: a Protocol Error, answered with DISCONNECT 0x82.
    let d = c.expect_disconnect5(WAIT, "No Local on a shared subscription");
    assert_eq!(d.reason, rc::PROTOCOL_ERROR, "{d:?}");
}

// ------------------------------------------------------------ actions

#[test]
fn user_properties_reach_an_action_as_metadata_user_properties() {
    let s = Server::start();
    s.install_action(
        "store",
        r#"
[[action]]
name = "store-readings"
trigger = { mqtt_topic = ["v5/readings"] }
type = "insert_bucket"
"#,
    );
    let token = s.token("d1");
    let mut p = login(&s, "writer", &token);
    let props = Props::new()
        .user("site", "north")
        .user("unit", "C")
        .user("unit", "K");
    // QoS 1 insert_bucket: acknowledged after the commit, so the item is
    // there when the PUBACK is.
    let ack = p.publish_acked5("v5/readings", br#"{"variable":"t","value":1}"#, 1, &props);
    assert!(ack.reason < 0x80, "PUBACK {:#x}", ack.reason);
    let (status, body) = s.http_request("GET", "/data?variable=t", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    let item = &body["result"][0];
    assert_eq!(
        item["metadata"]["user_properties"],
        serde_json::json!({"site": "north", "unit": ["C", "K"]}),
        "{body}"
    );
    assert_eq!(item["metadata"]["mqtt_topic"], "v5/readings");
    bye(p);
}

#[test]
fn the_publish_service_sets_user_properties_content_type_and_message_expiry() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "reader", &token);
    assert_eq!(sub.subscribe5(1, None, &[("svc/t", 1)]).codes, vec![1]);
    let (status, body) = s.admin(
        "POST",
        "/analysis/services/mqtt/publish",
        Some(serde_json::json!({
            "topic": "svc/t",
            "message": "hello",
            "options": {"qos": 1, "user_properties": {"a": "1", "b": ["x", "y"]}},
            "content_type": "text/plain",
            "message_expiry": 600,
        })),
    );
    assert_eq!(status, 200, "{body}");
    let got = sub.recv5(WAIT);
    assert_eq!(&got.payload[..], b"hello");
    assert_eq!(
        got.props.users(),
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "x".to_string()),
            ("b".to_string(), "y".to_string())
        ]
    );
    assert_eq!(got.props.str_of(prop::CONTENT_TYPE), Some("text/plain"));
    let left = got
        .props
        .u32_of(prop::MESSAGE_EXPIRY)
        .expect("a message expiry");
    assert!((590..=600).contains(&left), "{left}");
    let (status, body) = s.admin(
        "POST",
        "/analysis/services/mqtt/publish",
        Some(serde_json::json!({"topic": "svc/t", "message": "x", "user_properties": {"a": 1}})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("user_properties.a"),
        "{body}"
    );
    bye(sub);
}

#[test]
fn a_revoked_token_gets_disconnect_0x98_administrative_action() {
    let s = Server::start();
    s.create_device("d1");
    let (token_id, token) = s.add_token(
        "d1",
        serde_json::json!({"name": "t2", "permission": "full", "expires": null}),
    );
    let mut c = login(&s, "revoked", &token);
    s.admin_ok("DELETE", &format!("/tokens/{token_id}"), None);
    let d = c.expect_disconnect5(WAIT, "the DISCONNECT of a revoked token's connection");
    assert_eq!(d.reason, 0x98, "{d:?}");
    assert!(d.props.str_of(prop::REASON_STRING).is_some(), "{d:?}");
}

#[test]
fn sigterm_sends_disconnect_0x8b_server_shutting_down() {
    let mut s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "stays", &token);
    let pid = s.pid();
    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(ok.success());
    let d = c.expect_disconnect5(WAIT, "the DISCONNECT of a server shutting down");
    assert_eq!(d.reason, 0x8B, "{d:?}");
    s.wait_exit(WAIT);
}

#[test]
fn a_persistent_v5_session_keeps_its_options_and_identifiers_across_kill_9() {
    let mut s = Server::start();
    let token = s.token("d1");
    let (mut me, _) = login_persistent(&s, "keeper", &token, 600);
    let a = me.subscribe5(1, Some(42), &[("keep/t", sub_opts(1, true, false, 0))]);
    assert_eq!(a.codes, vec![1]);
    bye(me);
    s.kill9();
    s.restart();
    let (mut me, present) = login_persistent(&s, "keeper", &token, 600);
    assert!(present, "the session survived kill -9");
    // No Local held: its own publish does not come back ...
    assert_eq!(
        me.publish_acked5("keep/t", b"mine", 2, &Props::new())
            .reason,
        0
    );
    // ... and another client's does, with the identifier.
    let mut other = login(&s, "other", &token);
    other.publish_acked5("keep/t", b"theirs", 1, &Props::new());
    let p = me.recv5(WAIT);
    assert_eq!(p.text(), "theirs", "no local survived the restart");
    assert_eq!(
        p.props.sub_ids(),
        vec![42],
        "the subscription identifier survived"
    );
    bye(other);
    bye(me);
}

#[test]
fn request_problem_information_0_leaves_reason_strings_out_of_acknowledgements() {
    let s = Server::start_with(Config::new().acl("*", "quiet/#", "deny", &["publish"]));
    let token = s.token("d1");
    let mut told = login(&s, "told", &token);
    let ack = told.publish_acked5("quiet/x", b"denied", 1, &Props::new());
    assert_eq!(ack.reason, rc::NOT_AUTHORIZED);
    assert!(
        ack.props.str_of(prop::REASON_STRING).is_some(),
        "by default a reason string: {ack:?}"
    );
    let (mut quiet, _) = Raw::login5(
        s.mqtt_port,
        &c5("quiet", &token).prop(Prop::Byte(prop::REQUEST_PROBLEM_INFO, 0)),
    );
    let ack = quiet.publish_acked5("quiet/x", b"denied", 1, &Props::new());
    assert_eq!(ack.reason, rc::NOT_AUTHORIZED);
    assert_eq!(ack.props.str_of(prop::REASON_STRING), None, "{ack:?}");
    bye(told);
    bye(quiet);
}

#[test]
fn suback_has_0x97_past_max_subscriptions_per_client() {
    let s = Server::start_with(Config::new().mqtt("max_subscriptions_per_client", "2"));
    let token = s.token("d1");
    let mut c = login(&s, "greedy", &token);
    let a = c.subscribe5(1, None, &[("q/1", 1), ("q/2", 1), ("q/3", 1)]);
    assert_eq!(a.codes, vec![1, 1, 0x97]);
    bye(c);
}

// ------------------------------------------------ refusals and closes in v5

#[test]
fn connect_without_a_token_is_refused_with_0x87_and_a_reason_string() {
    let s = Server::start();
    let (mut c, ack) = Raw::connect5(s.mqtt_port, &Connect5::new("anon", None));
    assert_eq!(ack.code, rc::NOT_AUTHORIZED, "{ack:?}");
    assert!(
        ack.props.str_of(prop::REASON_STRING).is_some(),
        "a reason string on the refusal: {ack:?}"
    );
    c.assert_closed(WAIT, "a refused CONNECT is closed");
}

#[test]
fn a_client_id_of_another_devices_session_is_refused_with_0x85() {
    let s = Server::start();
    let mine = s.token("d1");
    let theirs = s.token("d2");
    let (keeper, _) = login_persistent(&s, "claimed", &mine, 600);
    let (mut c, ack) = Raw::connect5(s.mqtt_port, &c5("claimed", &theirs));
    assert_eq!(ack.code, rc::CLIENT_IDENTIFIER_NOT_VALID, "{ack:?}");
    assert!(ack.props.str_of(prop::REASON_STRING).is_some(), "{ack:?}");
    c.assert_closed(WAIT, "a refused CONNECT is closed");
    // A client id reserved for bridges is refused the same way.
    let (mut b, ack) = Raw::connect5(s.mqtt_port, &c5("bridge:x", &mine));
    assert_eq!(ack.code, rc::CLIENT_IDENTIFIER_NOT_VALID, "{ack:?}");
    b.assert_closed(WAIT, "a refused CONNECT is closed");
    bye(keeper);
}

#[test]
fn connects_past_connect_per_minute_are_refused_with_0x9f() {
    let s = Server::start_with(Config::new().raw("[limits]\nconnect_per_minute = 2"));
    let token = s.token("d1");
    for i in 0..2 {
        bye(login(&s, &format!("often-{i}"), &token));
    }
    let (mut c, ack) = Raw::connect5(s.mqtt_port, &c5("often-2", &token));
    assert_eq!(ack.code, rc::CONNECTION_RATE_EXCEEDED, "{ack:?}");
    assert!(ack.props.str_of(prop::REASON_STRING).is_some(), "{ack:?}");
    c.assert_closed(WAIT, "a refused CONNECT is closed");
}

#[test]
fn persistent_sessions_past_max_sessions_per_device_are_refused_with_0x97() {
    let s = Server::start_with(Config::new().mqtt("max_sessions_per_device", "1"));
    let token = s.token("d1");
    let (first, _) = login_persistent(&s, "kept-1", &token, 600);
    let (mut c, ack) = Raw::connect5(
        s.mqtt_port,
        &c5("kept-2", &token).clean_start(false).session_expiry(600),
    );
    assert_eq!(ack.code, rc::QUOTA_EXCEEDED, "{ack:?}");
    assert!(ack.props.str_of(prop::REASON_STRING).is_some(), "{ack:?}");
    c.assert_closed(WAIT, "a refused CONNECT is closed");
    // A session that ends with its connection is not one more kept.
    bye(login(&s, "passing", &token));
    bye(first);
}

#[test]
fn connect_user_properties_are_accepted_and_ignored() {
    let s = Server::start();
    let token = s.token("d1");
    let mut sub = login(&s, "listener", &token);
    assert_eq!(sub.subscribe5(1, None, &[("cup/t", 1)]).codes, vec![1]);
    let (mut c, ack) = Raw::login5(
        s.mqtt_port,
        &c5("propful", &token)
            .prop(Prop::Pair("site".into(), "barn".into()))
            .prop(Prop::Pair("site".into(), "loft".into())),
    );
    assert_eq!(ack.code, rc::SUCCESS);
    assert_eq!(c.publish_acked5("cup/t", b"hi", 1, &Props::new()).reason, 0);
    let got = sub.recv5(WAIT);
    assert_eq!(got.text(), "hi");
    assert!(
        got.props.users().is_empty(),
        "CONNECT's user properties are not put on the client's publishes: {:?}",
        got.props
    );
    bye(c);
    bye(sub);
}

#[test]
fn past_publish_per_minute_qos1_gets_puback_0x97_and_qos0_disconnect_0x96() {
    let s = Server::start_with(Config::new().raw("[limits]\npublish_per_minute = 2"));
    let token = s.token("d1");
    let mut sub = login(&s, "counter", &token);
    assert_eq!(sub.subscribe5(1, None, &[("ppm/t", 1)]).codes, vec![1]);
    let mut c = login(&s, "chatty", &token);
    // The subscriber's SUBSCRIBE and both CONNECTs are not publishes.
    for (pkid, text) in [(1, "one"), (2, "two")] {
        assert_eq!(
            c.publish_acked5("ppm/t", text.as_bytes(), pkid, &Props::new())
                .reason,
            0
        );
    }
    let over = c.publish_acked5("ppm/t", b"three", 3, &Props::new());
    assert_eq!(over.reason, rc::QUOTA_EXCEEDED, "{over:?}");
    assert!(over.props.str_of(prop::REASON_STRING).is_some(), "{over:?}");
    // Still connected: a PINGREQ is answered.
    c.send(&[0xC0, 0x00]);
    let pong = c.expect_packet(WAIT, "PINGRESP");
    assert_eq!(pong.kind, PINGRESP, "{pong:?}");
    let got: Vec<String> = (0..2).map(|_| sub.recv5(WAIT).text()).collect();
    assert_eq!(
        got,
        vec!["one", "two"],
        "the refused publish was not delivered"
    );
    // QoS 0 has no acknowledgement to refuse it with: the connection goes.
    c.send(&publish5("ppm/t", b"four", 0, false, 0, &Props::new()));
    let d = c.expect_disconnect5(WAIT, "a QoS 0 publish past the limit");
    assert_eq!(d.reason, rc::MESSAGE_RATE_TOO_HIGH, "{d:?}");
    bye(sub);
}

#[test]
fn a_packet_larger_than_max_packet_size_gets_disconnect_0x95() {
    let s = Server::start_with(Config::new().mqtt("max_packet_size", "1024"));
    let token = s.token("d1");
    let mut c = login(&s, "big", &token);
    c.send(&publish5(
        "big/t",
        &[b'x'; 2000],
        0,
        false,
        0,
        &Props::new(),
    ));
    let d = c.expect_disconnect5(WAIT, "a packet over max_packet_size");
    assert_eq!(d.reason, rc::PACKET_TOO_LARGE, "{d:?}");
}

#[test]
fn a_malformed_packet_gets_disconnect_0x81() {
    let s = Server::start();
    let token = s.token("d1");
    let mut c = login(&s, "sloppy", &token);
    // A QoS 0 PUBLISH whose property length (9) runs past the packet's end.
    let mut body = Vec::new();
    body.extend_from_slice(&[0, 3, b'a', b'/', b'b']);
    body.extend_from_slice(&[9, 0x01, 0x01]);
    let mut packet = vec![0x30, body.len() as u8];
    packet.extend_from_slice(&body);
    c.send(&packet);
    let d = c.expect_disconnect5(WAIT, "a malformed PUBLISH");
    assert_eq!(d.reason, rc::MALFORMED, "{d:?}");
    assert!(d.props.str_of(prop::REASON_STRING).is_some(), "{d:?}");
}

#[test]
fn a_silent_client_gets_disconnect_0x8d_when_its_keep_alive_runs_out() {
    let s = Server::start();
    let token = s.token("d1");
    let (mut c, _) = Raw::login5(s.mqtt_port, &c5("mute", &token).keep_alive(1));
    // Only time makes a keep alive run out: 1.5 × 1 s (MQTT 5 §3.1.2.10).
    let d = c.expect_disconnect5(Duration::from_secs(10), "a keep alive that ran out");
    assert_eq!(d.reason, rc::KEEP_ALIVE_TIMEOUT, "{d:?}");
}

#[test]
fn a_publish_past_max_topics_gets_disconnect_0x97() {
    let s = Server::start_with(Config::new().mqtt("max_topics", "2"));
    let token = s.token("d1");
    let mut c = login(&s, "spreader", &token);
    let mut pkid = 0;
    let d = loop {
        pkid += 1;
        assert!(pkid < 10, "max_topics = 2 was never reached");
        c.send(&publish5(
            &format!("mt/{pkid}"),
            b"x",
            1,
            false,
            pkid,
            &Props::new(),
        ));
        let p = c.expect_packet(WAIT, "PUBACK or DISCONNECT");
        if p.kind == DISCONNECT {
            break p.disconnect5();
        }
    };
    assert_eq!(d.reason, rc::QUOTA_EXCEEDED, "{d:?}");
}
#[test]
fn a_subscriber_that_stops_reading_gets_disconnect_0x97_as_a_slow_consumer() {
    let s = Server::start_with(
        Config::new()
            .mqtt("slow_subscriber_timeout", "\"1s\"")
            .mqtt("max_queued_messages", "10"),
    );
    let token = s.token("d1");
    let (mut slow, _) = Raw::login5(s.mqtt_port, &c5("sloth", &token).keep_alive(0));
    assert_eq!(slow.subscribe5(1, None, &[("sc/t", 1)]).codes, vec![1]);
    let mut p = login(&s, "firehose", &token);
    // Enough to fill its socket and its queue; the publisher is held back
    // for slow_subscriber_timeout, then the subscriber is let go.
    let payload = vec![b'z'; 16 * 1024];
    for sent in 1..=4000 {
        p.send(&publish5("sc/t", &payload, 0, false, 0, &Props::new()));
        if sent % 100 == 0 && slow_gone(&s) {
            break;
        }
    }
    assert!(
        slow_gone(&s),
        "the subscriber was let go as a slow consumer"
    );
    // It reads again at once: what was in its socket, then the DISCONNECT
    // (the broker gives the last writes 2 s; a client that never reads
    // again gets the close alone).
    let d = slow.expect_disconnect5(Duration::from_secs(30), "a slow consumer");
    assert_eq!(d.reason, rc::QUOTA_EXCEEDED, "{d:?}");
    bye(p);
}

/// Whether the broker has counted a slow consumer yet.
fn slow_gone(s: &Server) -> bool {
    s.metric("brook_slow_consumers_total") > 0.0
}
