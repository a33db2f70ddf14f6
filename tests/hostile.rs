//! A device as an attacker: each test is one way a client with a device
//! token (or a leaked one) tried to crash, stall, impersonate or outgrow the
//! broker, and asserts that it cannot. The numbers in the section titles are
//! the findings of the hardening issue.
//!
//! Non-delivery is asserted without sleeping: a subscriber has one FIFO
//! queue, and a publisher's PUBACK comes only once its message is queued for
//! every subscriber, so when a marker published after a forbidden message
//! arrives first, the forbidden one was never queued.

mod common;

use std::time::{Duration, Instant};

use common::raw::*;
use common::*;
use serde_json::json;

/// `levels` levels of `a`: `a/a/.../a`.
fn deep(levels: usize) -> String {
    vec!["a"; levels].join("/")
}

/// A fresh client still round-trips a QoS 1 message through the broker.
fn assert_serving(s: &Server, token: &str, topic: &str) {
    let id = format!("probe-{}", rand_suffix());
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new(&id, Some(token)));
    assert_eq!(c.subscribe(1, &[(topic, 1)]), vec![1]);
    c.send(&publish_packet(topic, b"alive", 1, false, false, 2));
    loop {
        let p = c.expect_packet(WAIT, "the probe's own message");
        if p.kind == PUBLISH {
            assert_eq!(p.publish().payload, b"alive");
            break;
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Publishes QoS 1 on a raw connection and waits for its PUBACK.
fn publish_acked(c: &mut Raw, topic: &str, payload: &[u8], retain: bool, pkid: u16) {
    c.send(&publish_packet(topic, payload, 1, retain, false, pkid));
    let p = c.expect_kind(PUBACK, WAIT, "PUBACK");
    assert_eq!(p.pkid(), pkid);
}

/// The next PUBLISH on a raw connection, acknowledging QoS 1 ones.
fn next_publish(c: &mut Raw) -> Publish {
    loop {
        let p = c.expect_packet(WAIT, "a PUBLISH");
        if p.kind != PUBLISH {
            continue;
        }
        let p = p.publish();
        if p.qos == 1 {
            c.send(&puback_packet(p.pkid));
        }
        return p;
    }
}

// 1. Topic trees without recursion limits -----------------------------------

#[test]
fn a_filter_of_32768_levels_is_refused_and_the_broker_goes_on() {
    let s = Server::start();
    let d = s.create_device("eve");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("deep", Some(&d.token)));
    let filter = deep(32768);
    assert_eq!(filter.len(), 65535);
    assert_eq!(c.subscribe(1, &[(&filter, 1), ("ok/#", 1)]), vec![0x80, 1]);
    c.send(&unsubscribe_packet(2, &[&filter]));
    c.expect_kind(UNSUBACK, WAIT, "UNSUBACK");
    assert_serving(&s, &d.token, "probe/t");
}

#[test]
fn unsubscribing_a_filter_of_32768_levels_does_not_overflow_the_stack() {
    let s = Server::start_with(Config::new().mqtt("max_topic_levels", "32768"));
    let d = s.create_device("eve");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("deep", Some(&d.token)));
    let filter = deep(32768);
    assert_eq!(c.subscribe(1, &[(&filter, 1)]), vec![1]);
    // A publish on the deepest topic there can be is matched and delivered.
    let topic = deep(32768);
    publish_acked(&mut c, &topic, b"deep", false, 2);
    let p = next_publish(&mut c);
    assert_eq!((p.topic.len(), p.payload.as_slice()), (65535, &b"deep"[..]));
    c.send(&unsubscribe_packet(3, &[&filter]));
    c.expect_kind(UNSUBACK, WAIT, "UNSUBACK");
    assert_serving(&s, &d.token, "probe/t");
}

#[test]
fn a_publish_deeper_than_max_topic_levels_closes_only_its_connection() {
    let s = Server::start();
    let d = s.create_device("eve");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("deep", Some(&d.token)));
    c.send(&publish_packet(&deep(129), b"x", 0, false, false, 0));
    c.assert_closed(WAIT, "a PUBLISH of 129 levels");
    let mut ok = Raw::login(s.mqtt_port, &ConnectOpts::new("fine", Some(&d.token)));
    publish_acked(&mut ok, &deep(128), b"x", false, 1);
    assert_serving(&s, &d.token, "probe/t");
}

#[test]
fn a_stored_subscription_beyond_the_limit_is_dropped_at_start_not_a_crash() {
    let mut s = Server::start_with(Config::new().mqtt("max_topic_levels", "32768"));
    let d = s.create_device("eve");
    let opts = ConnectOpts::new("keeper", Some(&d.token)).clean(false);
    let mut c = Raw::login(s.mqtt_port, &opts);
    assert_eq!(
        c.subscribe(1, &[(&deep(32768), 1), ("kept/t", 1)]),
        vec![1, 1]
    );
    c.send(&disconnect_packet());
    c.assert_closed(WAIT, "DISCONNECT");
    s.terminate(WAIT);
    s.restart_with(Config::new());
    assert!(
        s.log().contains("subscription dropped"),
        "no log line for the dropped subscription:\n{}",
        s.log()
    );
    let (mut c, code, present) = Raw::connect(s.mqtt_port, &opts);
    assert_eq!((code, present), (0, true));
    c.send(&unsubscribe_packet(2, &[&deep(32768)]));
    c.expect_kind(UNSUBACK, WAIT, "UNSUBACK");
    // The filter within the limit is still in force.
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    publish_acked(&mut p, "kept/t", b"still here", false, 1);
    assert_eq!(next_publish(&mut c).payload, b"still here");
}

// 2. A client id or device name cannot widen `%c` / `%d` ---------------------

fn namespace_config() -> Config {
    Config::new()
        .acl("*", "clients/%c/#", "allow", &["publish", "subscribe"])
        .acl("*", "clients/#", "deny", &["publish", "subscribe"])
}

#[test]
fn a_client_id_of_plus_or_hash_gets_no_other_clients_namespace() {
    let s = Server::start_with(namespace_config());
    let alice = s.create_device("alice");
    let eve = s.create_device("eve");
    let mut victim = Raw::login(s.mqtt_port, &ConnectOpts::new("victim", Some(&alice.token)));
    assert_eq!(victim.subscribe(1, &[("clients/victim/#", 1)]), vec![1]);
    for id in ["+", "#"] {
        let mut e = Raw::login(s.mqtt_port, &ConnectOpts::new(id, Some(&eve.token)));
        assert_eq!(
            e.subscribe(1, &[("clients/victim/#", 1), ("clients/+/#", 1)]),
            vec![0x80, 0x80],
            "client id {id:?}"
        );
        // Acknowledged, and dropped.
        publish_acked(&mut e, "clients/victim/cmd", b"from eve", false, 2);
    }
    publish_acked(&mut victim, "clients/victim/cmd", b"marker", false, 2);
    assert_eq!(next_publish(&mut victim).payload, b"marker");
}

#[test]
fn device_names_are_restricted_to_a_safe_set() {
    let s = Server::start();
    for bad in ["a+b", "#", "a/b", "white space", "", "ä"] {
        let (status, body) = s.admin("POST", "/devices", Some(json!({"name": bad})));
        assert_eq!(status, 400, "device name {bad:?}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("A-Za-z0-9_.-"), "{message}");
    }
    s.create_device("pump-2.north_A");
}

// 3. Sessions belong to their device ---------------------------------------

#[test]
fn another_device_cannot_resume_take_over_or_clean_a_persistent_session() {
    let s = Server::start();
    let alice = s.create_device("alice");
    let eve = s.create_device("eve");
    let alice_events = s.watch("alice");
    let eve_events = s.watch("eve");
    let opts = ConnectOpts::new("alice-1", Some(&alice.token)).clean(false);
    let mut a = Raw::login(s.mqtt_port, &opts);
    assert_eq!(a.subscribe(1, &[("alice/inbox", 1)]), vec![1]);

    // While Alice is connected, Eve cannot take the client id over.
    let (_e, code, _) = Raw::connect(
        s.mqtt_port,
        &ConnectOpts::new("alice-1", Some(&eve.token)).clean(false),
    );
    assert_eq!(code, 2, "takeover by another device");
    a.send(&pingreq_packet());
    a.expect_kind(PINGRESP, WAIT, "PINGRESP");
    a.send(&disconnect_packet());
    a.assert_closed(WAIT, "DISCONNECT");

    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&alice.token)));
    publish_acked(&mut p, "alice/inbox", b"for alice only", false, 1);

    for clean in [false, true] {
        let (_e, code, present) = Raw::connect(
            s.mqtt_port,
            &ConnectOpts::new("alice-1", Some(&eve.token)).clean(clean),
        );
        assert_eq!((code, present), (2, false), "clean session {clean}");
    }
    let refused = next_event_of(&alice_events, "refused");
    assert_eq!(refused["kind"], "session");
    assert_eq!(refused["client_id"], "alice-1");
    assert_eq!(refused["by_device"], "eve");
    let refused = next_event_of(&eve_events, "refused");
    assert_eq!(refused["kind"], "session");
    assert_eq!(refused["client_id"], "alice-1");

    let (mut a, code, present) = Raw::connect(s.mqtt_port, &opts);
    assert_eq!((code, present), (0, true));
    assert_eq!(next_publish(&mut a).payload, b"for alice only");
}

// 4. `$` topics are the broker's --------------------------------------------

#[test]
fn a_device_cannot_write_sys_topics() {
    let s = Server::start_with(Config::new().mqtt("sys_interval", "\"300ms\""));
    let d = s.create_device("eve");
    let mut watcher = Raw::login(s.mqtt_port, &ConnectOpts::new("watcher", Some(&d.token)));
    assert_eq!(watcher.subscribe(1, &[("$SYS/broker/version", 1)]), vec![1]);
    let first = next_publish(&mut watcher);
    assert!(first.payload.starts_with(b"brook "), "{first:?}");

    let mut e = Raw::login(s.mqtt_port, &ConnectOpts::new("eve", Some(&d.token)));
    publish_acked(&mut e, "$SYS/broker/version", b"pwned", true, 1);
    publish_acked(&mut e, "$other/x", b"pwned", true, 2);
    // The next broker publications come; the forged one never does.
    for _ in 0..3 {
        let p = next_publish(&mut watcher);
        assert!(p.payload.starts_with(b"brook "), "{p:?}");
    }
    let mut fresh = Raw::login(s.mqtt_port, &ConnectOpts::new("fresh", Some(&d.token)));
    assert_eq!(fresh.subscribe(1, &[("$SYS/broker/version", 1)]), vec![1]);
    assert!(next_publish(&mut fresh).payload.starts_with(b"brook "));

    let (status, body) = s.admin(
        "POST",
        "/analysis/services/mqtt/publish",
        Some(json!({"topic": "$SYS/broker/version", "message": "pwned"})),
    );
    assert_eq!(status, 403, "{body}");
}

// 5. A wildcard that only overlaps a deny rule is granted and filtered -------

#[test]
fn a_wildcard_subscription_is_granted_and_denied_topics_are_never_delivered() {
    let s = Server::start_with(Config::new().acl("*", "test/nosubscribe", "deny", &["subscribe"]));
    let d = s.create_device("dash");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    publish_acked(&mut p, "test/nosubscribe", b"retained secret", true, 1);

    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("dash", Some(&d.token)));
    assert_eq!(
        c.subscribe(1, &[("#", 1), ("+/+", 1), ("test/nosubscribe", 1)]),
        vec![1, 1, 0x80]
    );
    publish_acked(&mut p, "test/nosubscribe", b"live secret", false, 2);
    publish_acked(&mut p, "test/other", b"marker", false, 3);
    let got = next_publish(&mut c);
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice()),
        ("test/other", &b"marker"[..])
    );
}

// 7. Limits for everything that grows ---------------------------------------

#[test]
fn retained_messages_past_the_limit_are_delivered_but_not_retained() {
    let s = Server::start_with(
        Config::new()
            .mqtt("max_retained_messages", "2")
            .mqtt("max_retained_bytes", "12"),
    );
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    let mut live = Raw::login(s.mqtt_port, &ConnectOpts::new("live", Some(&d.token)));
    assert_eq!(live.subscribe(1, &[("r/#", 1)]), vec![1]);
    publish_acked(&mut p, "r/1", b"one", true, 1);
    publish_acked(&mut p, "r/2", b"two", true, 2);
    publish_acked(&mut p, "r/3", b"three", true, 3); // over the count
    publish_acked(&mut p, "r/1", b"one-longer", true, 4); // 10 + 3 bytes: over the bytes
    publish_acked(&mut p, "r/1", b"uno", true, 5); // a replacement that fits
    let got: Vec<Vec<u8>> = (0..5).map(|_| next_publish(&mut live).payload).collect();
    assert_eq!(
        got,
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"three".to_vec(),
            b"one-longer".to_vec(),
            b"uno".to_vec()
        ]
    );
    for (topic, want) in [
        ("r/1", Some(&b"uno"[..])),
        ("r/2", Some(b"two")),
        ("r/3", None),
    ] {
        let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("late", Some(&d.token)));
        assert_eq!(c.subscribe(1, &[(topic, 1)]), vec![1]);
        publish_acked(&mut p, topic, b"marker", false, 6);
        let first = next_publish(&mut c);
        match want {
            Some(w) => assert_eq!(
                (first.payload.as_slice(), first.retain),
                (w, true),
                "{topic}"
            ),
            None => assert_eq!(first.payload, b"marker", "{topic} kept a retained message"),
        }
    }
    assert_eq!(s.metric("brook_retained_messages"), 2.0);
    assert_eq!(s.metric("brook_retained_refused_total"), 2.0);
}

#[test]
fn subscriptions_per_client_are_capped_with_0x80() {
    let s = Server::start_with(Config::new().mqtt("max_subscriptions_per_client", "2"));
    let d = s.create_device("d");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&d.token)));
    assert_eq!(
        c.subscribe(1, &[("a", 0), ("b", 1), ("c", 1)]),
        vec![0, 1, 0x80]
    );
    // Changing the QoS of a filter it holds is not a new subscription.
    assert_eq!(c.subscribe(2, &[("a", 1)]), vec![1]);
    c.send(&unsubscribe_packet(3, &["b"]));
    c.expect_kind(UNSUBACK, WAIT, "UNSUBACK");
    assert_eq!(c.subscribe(4, &[("c", 1)]), vec![1]);
    assert_eq!(
        s.metric("brook_subscriptions_refused_total{reason=\"limit\"}"),
        1.0
    );
}

#[test]
fn a_publish_that_needs_a_topic_past_max_topics_closes_its_connection() {
    let s = Server::start_with(Config::new().mqtt("max_topics", "3"));
    let d = s.create_device("d");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&d.token)));
    for (i, t) in ["t/1", "t/2", "t/3"].iter().enumerate() {
        publish_acked(&mut c, t, b"x", false, i as u16 + 1);
    }
    c.send(&publish_packet("t/4", b"x", 1, false, false, 9));
    c.assert_closed(WAIT, "a publish needing a 4th topic");
    assert_serving(&s, &d.token, "t/1");
    assert_eq!(s.metric("brook_topics_refused_total"), 1.0);
}

#[test]
fn parser_runs_are_bounded_and_the_overflow_is_refused_with_a_run_record() {
    let s = Server::start_with(
        Config::new()
            .actions("max_parser_runs", "1")
            .actions("max_parser_queue", "2"),
    );
    s.install_action(
        "store",
        r#"
[[action]]
name = "store"
trigger = { mqtt_topic = ["spin/#"] }
type = "insert_bucket"
"#,
    );
    // Holds about 14 MiB and spins until its time limit.
    let parser = "var hold = []; for (var i = 0; i < 14; i++) { hold.push(new Array(131072).fill(i)); } while (true) {}";
    let (status, body) = s.admin(
        "POST",
        "/devices",
        Some(json!({"name": "spinner", "parser": parser})),
    );
    assert!(status < 300, "{body}");
    let token = body["result"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base = s.threads().unwrap_or(0);
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&token)));
    let started = Instant::now();
    for i in 1..=20u16 {
        c.send(&publish_packet("spin/x", b"1", 1, false, false, i));
    }
    let mut peak = base;
    let mut acked = 0;
    while acked < 20 {
        peak = peak.max(s.threads().unwrap_or(0));
        match c.read_packet(Duration::from_millis(50)) {
            Ok(p) if p.kind == PUBACK => acked += 1,
            Ok(_) => {}
            Err(ReadEnd::TimedOut) => assert!(started.elapsed() < WAIT * 2, "PUBACKs stalled"),
            Err(ReadEnd::Closed) => panic!("connection closed"),
        }
    }
    assert!(
        peak <= base + 3,
        "threads went from {base} to {peak} for 20 parser runs"
    );
    let runs = s.wait_for_runs("store", 20);
    let refused = runs
        .iter()
        .filter(|r| {
            r["detail"]
                .as_str()
                .unwrap_or("")
                .contains("parser queue is full")
        })
        .count();
    assert!(refused >= 15, "{refused} of 20 runs refused: {runs:?}");
}

#[test]
fn persistent_sessions_per_device_are_capped() {
    let s = Server::start_with(Config::new().mqtt("max_sessions_per_device", "2"));
    let d = s.create_device("d");
    let persistent = |id: &str| ConnectOpts::new(id, Some(&d.token)).clean(false);
    for id in ["p1", "p2"] {
        let (c, code, _) = Raw::connect(s.mqtt_port, &persistent(id));
        assert_eq!(code, 0, "{id}");
        c.abort();
    }
    let (_c, code, _) = Raw::connect(s.mqtt_port, &persistent("p3"));
    assert_eq!(code, 2, "a third persistent session");
    // A clean session does not count, and ending a persistent one frees its place.
    Raw::login(s.mqtt_port, &ConnectOpts::new("p3", Some(&d.token)));
    let (_c, code, present) = Raw::connect(s.mqtt_port, &ConnectOpts::new("p1", Some(&d.token)));
    assert_eq!((code, present), (0, false));
    let (_c, code, _) = Raw::connect(s.mqtt_port, &persistent("p3"));
    assert_eq!(code, 0, "p3 once p1 was cleaned");
}

#[test]
fn connections_that_close_during_connect_leave_no_session_behind() {
    let s = Server::start();
    let d = s.create_device("d");
    for i in 0..200 {
        let mut c = Raw::open(s.mqtt_port);
        c.send(&connect_packet(&ConnectOpts::new(
            &format!("gone-{i}"),
            Some(&d.token),
        )));
        c.abort();
    }
    wait_until("every session of a closed connection is gone", WAIT, || {
        s.metric("brook_sessions") == 0.0 && s.metric("brook_connections_open") == 0.0
    });
}

// 8. Analyses get a clean environment and a narrow token -------------------

#[test]
fn an_analysis_sees_only_its_own_environment_and_its_token_only_writes_as_its_device() {
    let s = Server::start_with(
        Config::new()
            .env("BROOK_TEST_SECRET", "do-not-leak")
            .env("BROOK_TEST_PASSED", "shared")
            .actions("pass_env", "[\"BROOK_TEST_PASSED\"]")
            .acl("device:probe", "forbidden/#", "deny", &["publish"]),
    );
    let dir = s.dir.path().join("actions");
    std::fs::create_dir_all(dir.join("analysis")).expect("mkdir");
    std::fs::write(
        dir.join("analysis/probe.py"),
        r#"
import json, os, sys, urllib.request
api, token = os.environ["BROOK_API"], os.environ["T_ANALYSIS_TOKEN"]
def call(method, path, body=None):
    req = urllib.request.Request(api + path, method=method, headers={"token": token, "content-type": "application/json"},
                                 data=None if body is None else json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
out = {
    "env": sorted(os.environ),
    "passed": os.environ.get("BROOK_TEST_PASSED"),
    "post": call("POST", "/data", [{"variable": "x", "value": 1}]),
    "put": call("PUT", "/data", [{"id": "0" * 24, "value": 2}]),
    "delete": call("DELETE", "/data?variable=x"),
    "get": call("GET", "/data?variable=x"),
    "publish": call("POST", "/analysis/services/mqtt/publish", {"topic": "probe/out", "message": "hi"}),
    "publish_sys": call("POST", "/analysis/services/mqtt/publish", {"topic": "$SYS/x", "message": "hi"}),
    "publish_denied": call("POST", "/analysis/services/mqtt/publish", {"topic": "forbidden/x", "message": "hi"}),
}
print(json.dumps(out))
"#,
    )
    .expect("write probe.py");
    s.install_action(
        "probe",
        r#"
[[action]]
name = "probe"
trigger = { mqtt_topic = ["go"] }
type = "analysis"
analysis = { command = ["python3", "analysis/probe.py"], timeout = "20s", env = { MINE = "1" } }
"#,
    );
    let d = s.create_device("probe");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&d.token)));
    publish_acked(&mut c, "go", b"1", false, 1);
    let runs = s.wait_for_runs("probe", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    let out: serde_json::Value =
        serde_json::from_str(runs[0]["stdout"].as_str().unwrap_or("").trim())
            .unwrap_or_else(|e| panic!("{e}: {}", runs[0]));
    let env: Vec<&str> = out["env"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(!env.contains(&"BROOK_TEST_SECRET"), "{env:?}");
    assert!(!env.contains(&"BROOK_ADMIN_TOKEN"), "{env:?}");
    for want in [
        "PATH",
        "T_ANALYSIS_TOKEN",
        "T_ANALYSIS_CONTEXT",
        "BROOK_API",
        "TAGOIO_API",
        "MINE",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    assert_eq!(out["passed"], "shared");
    assert_eq!(out["post"], 200);
    for refused in ["put", "delete", "get", "publish_sys", "publish_denied"] {
        let code = out[refused].as_u64().unwrap_or(0);
        assert!(
            code == 401 || code == 403,
            "{refused} answered {code}: {out}"
        );
    }
    assert_eq!(out["publish"], 200);
}

// 9. The smaller findings ---------------------------------------------------

#[test]
fn a_live_connection_is_closed_when_its_token_expires() {
    let s = Server::start();
    s.create_device("d");
    let (_, token) = s.add_token("d", json!({"expires": "2s"}));
    let started = Instant::now();
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&token)));
    let closed_after = started.elapsed() + c.assert_closed(Duration::from_secs(5), "expired token");
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_millis(3500),
        "closed {closed_after:?} after connecting with a 2 s token"
    );
}

#[test]
fn an_admin_request_without_a_token_is_refused_before_its_body_is_read() {
    let s = Server::start();
    for (method, path) in [
        ("POST", "/devices"),
        ("PATCH", "/devices/x"),
        ("POST", "/devices/x/tokens"),
    ] {
        let (status, body) = s.http_request(method, path, None, Some(json!({"no": "such field"})));
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
}

#[test]
fn a_request_body_sent_a_byte_at_a_time_is_timed_out() {
    use std::io::{Read, Write};
    let s = Server::start_with(Config::new().http("request_timeout", "\"1s\""));
    let d = s.create_device("slow");
    let mut t = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).expect("connect");
    t.write_all(
        format!("POST /data HTTP/1.1\r\nHost: x\r\ntoken: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n", d.token).as_bytes(),
    )
    .expect("write head");
    let started = Instant::now();
    t.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut answer = Vec::new();
    loop {
        if t.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still reading a trickled body after 8 s"
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn the_publish_service_checks_the_topic_like_a_publish() {
    let s = Server::start();
    for (topic, status) in [
        ("a".repeat(70_000), 400),
        ("a/+".to_string(), 400),
        (deep(129), 400),
        (String::new(), 400),
        ("$SYS/x".to_string(), 403),
    ] {
        let (got, body) = s.admin(
            "POST",
            "/analysis/services/mqtt/publish",
            Some(json!({"topic": topic, "message": "x"})),
        );
        assert_eq!(got, status, "topic of {} bytes: {body}", topic.len());
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_says_who_holds_it_and_exits_1() {
    let s = Server::start();
    let text = std::fs::read_to_string(s.config_path()).expect("read config");
    let other = text
        .replace(
            &format!("127.0.0.1:{}", s.mqtt_port),
            &format!("127.0.0.1:{}", free_port()),
        )
        .replace(
            &format!("127.0.0.1:{}", s.http_port),
            &format!("127.0.0.1:{}", free_port()),
        );
    let path = s.dir.path().join("second.toml");
    std::fs::write(&path, other).expect("write second config");
    let out = run_bounded(
        std::process::Command::new(brook_bin())
            .args(["serve", "--config"])
            .arg(&path),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("process {}", s.pid())),
        "the message does not name the first server's pid {}: {}",
        s.pid(),
        out.stderr
    );
}

#[test]
fn sigterm_with_an_open_live_stream_stops_within_seconds() {
    let mut s = Server::start();
    s.create_device("d");
    let _events = s.watch("d");
    let started = Instant::now();
    let status = s.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_resumed_session_is_read_from_sqlite_in_pages_not_all_at_once() {
    let s = Server::start();
    let d = s.create_device("d");
    let opts = ConnectOpts::new("away", Some(&d.token)).clean(false);
    let mut c = Raw::login(s.mqtt_port, &opts);
    assert_eq!(c.subscribe(1, &[("big/t", 1)]), vec![1]);
    c.send(&disconnect_packet());
    c.assert_closed(WAIT, "DISCONNECT");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    let payload = vec![b'x'; 256 * 1024];
    for i in 0..400u16 {
        let mut body = i.to_be_bytes().to_vec();
        body.extend_from_slice(&payload);
        publish_acked(&mut p, "big/t", &body, false, i + 1);
    }
    let before = s.rss_kb().unwrap_or(0);
    let (mut c, code, present) = Raw::connect(s.mqtt_port, &opts);
    assert_eq!((code, present), (0, true));
    let mut peak = before;
    for i in 0..400u16 {
        let m = next_publish(&mut c);
        assert_eq!(
            &m.payload[..2],
            &i.to_be_bytes(),
            "message {i} out of order"
        );
        if i % 20 == 0 {
            peak = peak.max(s.rss_kb().unwrap_or(0));
        }
    }
    let grew_mb = peak.saturating_sub(before) / 1024;
    assert!(
        grew_mb < 60,
        "RSS grew by {grew_mb} MB while resuming 100 MB of queued messages"
    );
}

#[test]
fn retained_messages_on_subscribe_respect_the_subscriber_queue_bound() {
    let s = Server::start_with(
        Config::new()
            .mqtt("max_queued_messages", "50")
            // The count is the bound under test here, not the bytes.
            .mqtt("max_queued_bytes", "67108864")
            .mqtt("slow_subscriber_timeout", "\"30s\""),
    );
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    let payload = vec![b'r'; 64 * 1024];
    for i in 0..300u16 {
        publish_acked(&mut p, &format!("ret/{i}"), &payload, true, i + 1);
    }
    // Subscribes to all of them and never reads.
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("stuck", Some(&d.token)));
    c.send(&subscribe_packet(1, &[("ret/#", 1)]));
    wait_until("the subscriber's queue fills", WAIT, || {
        s.metric("brook_queued_messages") >= 50.0
    });
    let mut most = 0.0f64;
    for _ in 0..20 {
        most = most.max(s.metric("brook_queued_messages"));
    }
    assert!(
        most <= 50.0,
        "{most} messages queued in memory for a queue of 50"
    );
}

#[test]
fn a_subscriber_queue_is_bounded_by_payload_bytes_too() {
    let s = Server::start_with(
        Config::new()
            .mqtt("max_queued_messages", "1000")
            .mqtt("max_queued_bytes", "1048576")
            .mqtt("slow_subscriber_timeout", "\"30s\""),
    );
    let d = s.create_device("d");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    let payload = vec![b'b'; 64 * 1024];
    // Enough that the socket's buffers and the writer fill first.
    for i in 0..300u16 {
        publish_acked(&mut p, &format!("bytes/{i}"), &payload, true, i + 1);
    }
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("stuck", Some(&d.token)));
    c.send(&subscribe_packet(1, &[("bytes/#", 1)]));
    wait_until("the subscriber's queue fills", WAIT, || {
        s.metric("brook_queued_messages") >= 16.0
    });
    let mut most = 0.0f64;
    for _ in 0..20 {
        most = most.max(s.metric("brook_queued_messages"));
    }
    assert!(
        most <= 16.0,
        "{most} messages of 64 KiB queued in memory under max_queued_bytes = 1 MiB"
    );
}

#[test]
fn drops_are_counted_under_what_they_are() {
    let s = Server::start();
    let d = s.create_device("d");
    let opts = ConnectOpts::new("away", Some(&d.token)).clean(false);
    let mut c = Raw::login(s.mqtt_port, &opts);
    assert_eq!(c.subscribe(1, &[("t", 1)]), vec![1]);
    c.send(&disconnect_packet());
    c.assert_closed(WAIT, "DISCONNECT");
    let mut p = Raw::login(s.mqtt_port, &ConnectOpts::new("pub", Some(&d.token)));
    p.send(&publish_packet("t", b"qos0 while away", 0, false, false, 0));
    publish_acked(&mut p, "t", b"qos1 while away", false, 1);
    wait_until("the QoS 0 drop is counted", WAIT, || {
        s.metric("brook_messages_dropped_total{reason=\"offline_qos0\"}") == 1.0
    });
    assert_eq!(
        s.metric("brook_messages_dropped_total{reason=\"queue_full_qos0\"}"),
        0.0
    );
}

#[test]
fn a_failing_parser_run_is_counted_in_the_run_metrics() {
    let s = Server::start();
    s.install_action(
        "store",
        r#"
[[action]]
name = "store"
trigger = { mqtt_topic = ["p/#"] }
type = "insert_bucket"
"#,
    );
    let (status, body) = s.admin(
        "POST",
        "/devices",
        Some(json!({"name": "broken", "parser": "throw new Error('nope')"})),
    );
    assert!(status < 300, "{body}");
    let token = body["result"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("c", Some(&token)));
    publish_acked(&mut c, "p/x", b"1", false, 1);
    let runs = s.wait_for_runs("store", 1);
    assert_eq!(runs[0]["outcome"], "error");
    assert_eq!(s.metric("brook_action_runs_total{outcome=\"error\"}"), 1.0);
}
