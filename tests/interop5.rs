//! The MQTT 5 clients people use against a running brook, unchanged:
//! paho-mqtt (PyPI) and MQTT.js (npm, package `mqtt`), at the exact versions
//! pinned in `tests/interop5/`, both set to protocol version 5 with the device
//! token as the password.
//!
//! A script in each language (`tests/interop5/paho_v5.py`, `mqttjs_v5.js`)
//! runs the same story with three clients and prints one JSON line of what
//! they saw: the CONNACK and its properties; a subscription with a
//! subscription identifier and no local; QoS 0, 1 and 2 publishes carrying
//! user properties, content type, response topic, correlation data, message
//! expiry and payload format, received by a second client; a request/response
//! round trip on the response topic with the correlation data; a session kept
//! by its expiry interval, with a QoS 1 message queued while it was away. The
//! tests here assert that line field by field, and brook's metrics.
//!
//! The clients are installed once per test run into `target/interop5-env/`
//! (`tests/common/install.rs`, as the SDK tests do); when `python3`, `node` or
//! `npm` is missing or the install fails, the tests fail under `CI` and are
//! skipped (with a line saying why) otherwise.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// How long a script may take: four connections and about twenty packets
/// each way, plus the interpreter's start and the client's import.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the clients are installed: `target/interop5-env/`.
const ENV: &str = "interop5-env";

/// What brook announces in CONNACK, set apart from the defaults so that the
/// scripts' reading of them is checked.
const RECEIVE_MAXIMUM: u64 = 20;
const TOPIC_ALIAS_MAXIMUM: u64 = 5;

/// `tests/interop5/` in the repository: the pinned dependency files and the
/// scripts.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop5")
}

/// The venv's Python with paho-mqtt, installed on first use.
fn paho() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    install::required(
        "paho-mqtt (tests/interop5/requirements.txt)",
        PYTHON.get_or_init(|| {
            install::python_venv(
                &interop_dir().join("requirements.txt"),
                &install::env_dir(ENV),
            )
        }),
    )
}

/// The `node_modules` with MQTT.js, installed on first use.
fn mqttjs() -> Option<PathBuf> {
    static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    install::required(
        "MQTT.js (tests/interop5/package.json)",
        NODE.get_or_init(|| install::node_modules(&interop_dir(), &install::env_dir(ENV))),
    )
}

/// The pinned version of `package` in `requirements.txt` (`NAME==VERSION`).
fn pinned_pip(package: &str) -> String {
    let path = interop_dir().join("requirements.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{package}==")))
        .unwrap_or_else(|| panic!("{} pins no {package}", path.display()))
        .to_string()
}

/// The pinned version of `package` in `package.json`'s dependencies.
fn pinned_npm(package: &str) -> String {
    let path = interop_dir().join("package.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    json["dependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("{} pins no {package}", path.display()))
        .to_string()
}

/// A brook with CONNACK values of its own, and the device whose token every
/// client of the script uses.
fn start() -> (Server, Device) {
    let s = Server::start_with(
        Config::new()
            .mqtt("receive_maximum", &RECEIVE_MAXIMUM.to_string())
            .mqtt("topic_alias_maximum", &TOPIC_ALIAS_MAXIMUM.to_string()),
    );
    let d = s.create_device("interop5");
    (s, d)
}

/// Runs a script against `s` and returns the JSON line it printed last.
fn run_script(s: &Server, cmd: &mut Command, token: &str) -> Value {
    let out = run_bounded(
        cmd.env("MQTT_HOST", "127.0.0.1")
            .env("MQTT_PORT", s.mqtt_port.to_string())
            .env("MQTT_USERNAME", "Token")
            .env("MQTT_PASSWORD", token),
        SCRIPT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "the script failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the script printed no JSON line ({e}):\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}

/// Asserts the value at `path` (keys and indexes separated by `/`) with
/// `check`, showing the whole result on failure.
fn expect(r: &Value, path: &str, check: impl FnOnce(&Value) -> bool) {
    let pointer = format!("/{path}");
    let v = r.pointer(&pointer).unwrap_or(&Value::Null);
    let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
    assert!(
        check(v),
        "{path} is {v}\nthe script's whole result:\n{pretty}"
    );
}

fn eq(r: &Value, path: &str, want: Value) {
    expect(r, path, |v| *v == want);
}

/// Absent, or announcing that the feature is there (1).
fn absent_or_on(v: &Value) -> bool {
    v.is_null() || *v == 1
}

/// A remaining message expiry: at most what was sent, and a few seconds less
/// at the very least, as brook forwards the time left.
fn remaining(sent: u64) -> impl FnOnce(&Value) -> bool {
    move |v| v.as_u64().is_some_and(|s| s <= sent && s + 10 >= sent)
}

/// What both clients must have seen from brook.
fn assert_result(r: &Value) {
    // CONNACK: accepted, a new session, brook's limits read by the client.
    eq(r, "connack/reason_code", json!(0));
    eq(r, "connack/session_present", json!(false));
    eq(r, "connack/receive_maximum", json!(RECEIVE_MAXIMUM));
    eq(r, "connack/topic_alias_maximum", json!(TOPIC_ALIAS_MAXIMUM));
    // Absent means QoS 2; the property may only say 0 or 1 (MQTT 5, 3.2.2.3.4).
    eq(r, "connack/maximum_qos", Value::Null);
    expect(r, "connack/retain_available", absent_or_on);
    expect(r, "connack/wildcard_subscription_available", absent_or_on);
    expect(r, "connack/subscription_identifier_available", absent_or_on);
    expect(r, "connack/shared_subscription_available", absent_or_on);
    // The client chose its id, a keep alive under the cap, no session expiry.
    eq(r, "connack/assigned_client_identifier", Value::Null);
    eq(r, "connack/server_keep_alive", Value::Null);
    eq(r, "connack/session_expiry_interval", Value::Null);

    // SUBACK: the granted QoS of each filter.
    eq(r, "suback/data", json!([2]));
    eq(r, "suback/request", json!([1]));
    eq(r, "suback/away", json!([1]));
    // PUBACK and PUBCOMP: success (not even 0x10, there is a subscriber).
    eq(r, "acks", json!({"1": 0, "2": 0}));

    // The three publishes, in order, each with its properties unchanged and
    // the listener's subscription identifier.
    expect(r, "received", |v| {
        v.as_array().is_some_and(|a| a.len() == 3)
    });
    for n in 0..3u64 {
        let m = format!("received/{n}");
        eq(r, &format!("{m}/topic"), json!("interop5/data"));
        eq(r, &format!("{m}/payload"), json!(format!("{{\"n\":{n}}}")));
        eq(r, &format!("{m}/qos"), json!(n));
        eq(r, &format!("{m}/retain"), json!(false));
        eq(
            r,
            &format!("{m}/user_properties"),
            json!([["n", n.to_string()], ["unit", "°C"], ["unit", "K"]]),
        );
        eq(r, &format!("{m}/content_type"), json!("application/json"));
        eq(
            r,
            &format!("{m}/response_topic"),
            json!("interop5/data/replies"),
        );
        eq(
            r,
            &format!("{m}/correlation_data"),
            json!(format!("00ff{n:02x}")),
        );
        expect(r, &format!("{m}/message_expiry_interval"), remaining(3600));
        eq(r, &format!("{m}/payload_format_indicator"), json!(1));
        eq(r, &format!("{m}/subscription_identifiers"), json!([7]));
    }
    // No local: the listener's own publish on its filter did not come back.
    eq(r, "no_local_echoes", json!(0));

    // Request/response: the listener saw the request's response topic and
    // correlation data and answered there; the talker got them back.
    let rr = "request_response";
    eq(r, &format!("{rr}/request/topic"), json!("interop5/request"));
    eq(r, &format!("{rr}/request/payload"), json!("ping"));
    eq(
        r,
        &format!("{rr}/request/response_topic"),
        json!("interop5/reply"),
    );
    eq(
        r,
        &format!("{rr}/request/correlation_data"),
        json!("7265712d0102"),
    );
    eq(
        r,
        &format!("{rr}/request/subscription_identifiers"),
        json!([8]),
    );
    eq(r, &format!("{rr}/reply/topic"), json!("interop5/reply"));
    eq(r, &format!("{rr}/reply/payload"), json!("pong:ping"));
    eq(
        r,
        &format!("{rr}/reply/correlation_data"),
        json!("7265712d0102"),
    );
    eq(r, &format!("{rr}/reply/response_topic"), Value::Null);
    eq(
        r,
        &format!("{rr}/reply/subscription_identifiers"),
        json!([10]),
    );

    // Session expiry: a new session first, then the same one back with the
    // QoS 1 message published while it was away.
    eq(r, "session/first_session_present", json!(false));
    eq(r, "session/resumed_reason_code", json!(0));
    eq(r, "session/resumed_session_present", json!(true));
    eq(r, "session/queued/topic", json!("interop5/away"));
    eq(r, "session/queued/payload", json!("while away"));
    eq(r, "session/queued/qos", json!(1));
    eq(
        r,
        "session/queued/user_properties",
        json!([["queued", "yes"]]),
    );
    expect(r, "session/queued/message_expiry_interval", remaining(600));
    eq(r, "session/queued/subscription_identifiers", json!([9]));
}

/// brook counted the script's clients as MQTT 5: four sessions opened
/// (listener, talker, away twice) and eight PUBLISH packets received (own,
/// three data, end, ping, pong, while away).
fn assert_counted_as_v5(s: &Server) {
    assert_eq!(s.metric("brook_connects_total{protocol=\"5\"}"), 4.0);
    assert_eq!(s.metric("brook_connects_total{protocol=\"3.1.1\"}"), 0.0);
    assert_eq!(
        s.metric("brook_messages_received_by_protocol_total{protocol=\"5\"}"),
        8.0
    );
}

#[test]
fn paho_mqtt_in_mqtt_5_gets_its_properties_subscription_ids_and_session_back() {
    let Some(python) = paho() else { return };
    let (s, d) = start();
    let r = run_script(
        &s,
        Command::new(python).arg(interop_dir().join("paho_v5.py")),
        &d.token,
    );
    eq(
        &r,
        "client",
        json!(format!("paho-mqtt {}", pinned_pip("paho-mqtt"))),
    );
    assert_result(&r);
    assert_counted_as_v5(&s);
}

#[test]
fn mqtt_js_in_mqtt_5_gets_its_properties_subscription_ids_and_session_back() {
    let Some(node_modules) = mqttjs() else {
        return;
    };
    let (s, d) = start();
    let r = run_script(
        &s,
        Command::new("node")
            .arg(interop_dir().join("mqttjs_v5.js"))
            .env("NODE_PATH", node_modules),
        &d.token,
    );
    eq(&r, "client", json!(format!("mqtt {}", pinned_npm("mqtt"))));
    assert_result(&r);
    assert_counted_as_v5(&s);
}
