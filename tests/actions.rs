//! The action engine against the real server: what a publish turns into.

mod common;

use common::*;
use rumqttc::QoS;

/// (variable, value as JSON text) of a device's stored items, oldest first,
/// read straight from the SQLite file.
fn stored(s: &Server, device_id: &str) -> Vec<(String, String)> {
    let db = s.dir.path().join("data").join("brook.db");
    let conn = rusqlite::Connection::open(db).expect("open brook.db");
    let mut stmt = conn
        .prepare("SELECT variable, value FROM data WHERE device_id = ?1 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([device_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn qos1_publish_to_tago_data_post_is_committed_before_its_puback() {
    let mut s = Server::start();
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"temperature","value":21.5,"unit":"C"},{"variable":"humidity","value":40}]"#,
    );
    s.kill9();
    assert_eq!(
        stored(&s, &d.id),
        vec![
            ("temperature".to_string(), "21.5".to_string()),
            ("humidity".to_string(), "40".to_string())
        ]
    );
    s.restart();
    let mut c = s.mqtt("c2", &d.token);
    c.publish_acked("tago/data/post", QoS::AtLeastOnce, false, "plain text");
    assert_eq!(
        stored(&s, &d.id).last(),
        Some(&("payload".to_string(), "\"plain text\"".to_string()))
    );
}

#[test]
fn an_invalid_item_rejects_the_whole_publish_and_it_is_still_acknowledged() {
    let s = Server::start();
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"ok","value":1},{"variable":"not ok","value":2}]"#,
    );
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"after","value":3}"#,
    );
    assert_eq!(
        stored(&s, &d.id),
        vec![("after".to_string(), "3".to_string())]
    );
}

const STORE_READINGS: &str = r#"
[[action]]
name = "store-readings"
trigger = { mqtt_topic = ["sensors/+/temperature"] }
type = "insert_bucket"
"#;

#[test]
fn a_publish_on_a_matching_topic_is_stored_and_a_non_matching_one_is_not() {
    let s = Server::start();
    s.install_action("store", STORE_READINGS);
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked("sensors/a/humidity", QoS::AtLeastOnce, false, "55");
    c.publish_acked(
        "sensors/a/temperature",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"temperature","value":21.5}"#,
    );
    assert_eq!(
        stored(&s, &d.id),
        vec![("temperature".to_string(), "21.5".to_string())]
    );
    let r = s.wait_for_runs("store-readings", 1);
    assert_eq!(r[0]["outcome"], "ok");
}

#[test]
fn a_qos1_publish_stored_by_an_action_survives_kill_9_right_after_its_puback() {
    let mut s = Server::start();
    s.install_action("store", STORE_READINGS);
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    for i in 0..20 {
        c.publish_acked(
            "sensors/a/temperature",
            QoS::AtLeastOnce,
            false,
            format!(r#"{{"variable":"t","value":{i}}}"#),
        );
    }
    s.kill9();
    let rows = stored(&s, &d.id);
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[19], ("t".to_string(), "19".to_string()));
}

#[test]
fn an_invalid_item_is_recorded_in_the_run_with_its_reason() {
    let s = Server::start();
    s.install_action("store", STORE_READINGS);
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "sensors/a/temperature",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"a","value":1},{"variable":"b$","value":2}]"#,
    );
    let r = s.wait_for_runs("store-readings", 1);
    assert_eq!(r[0]["outcome"], "error");
    let detail = r[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("item 1") && detail.contains("variable"),
        "{detail}"
    );
    assert!(stored(&s, &d.id).is_empty());
}

const HEX_PARSER: &str = r#"
const hex = String(payload[0].value);
const buf = Buffer.from(hex, 'hex');
payload = [
  { variable: 'temperature', value: buf.readInt16BE(0) / 10, unit: 'C' },
  { variable: 'humidity', value: buf.readUInt8(2) },
];
"#;

#[test]
fn a_payload_parser_turns_a_hex_payload_into_two_variables() {
    let s = Server::start();
    s.install_action("store", STORE_READINGS);
    let d = s.create_device("d1");
    s.admin_ok(
        "PATCH",
        "/devices/d1",
        Some(serde_json::json!({"parser": HEX_PARSER})),
    );
    let mut c = s.mqtt("c1", &d.token);
    // 0x00D7 = 215 -> 21.5 C; 0x37 = 55 %
    c.publish_acked("sensors/a/temperature", QoS::AtLeastOnce, false, "00D737");
    assert_eq!(
        stored(&s, &d.id),
        vec![
            ("temperature".to_string(), "21.5".to_string()),
            ("humidity".to_string(), "55".to_string())
        ]
    );
}

#[test]
fn a_parser_that_loops_forever_is_stopped_and_the_next_message_goes_through() {
    let s = Server::start();
    s.install_action("store", STORE_READINGS);
    let d = s.create_device("d1");
    let parser = "if (String(payload[0].value) === 'loop') { while (true) {} }";
    s.admin_ok(
        "PATCH",
        "/devices/d1",
        Some(serde_json::json!({"parser": parser})),
    );
    let mut c = s.mqtt("c1", &d.token);
    let started = std::time::Instant::now();
    c.publish_acked("sensors/a/temperature", QoS::AtLeastOnce, false, "loop");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    c.publish_acked("sensors/a/temperature", QoS::AtLeastOnce, false, "7");
    assert_eq!(
        stored(&s, &d.id),
        vec![("payload".to_string(), "\"7\"".to_string())]
    );
    let r = s.wait_for_runs("store-readings", 2);
    let looped = &r[1];
    assert_eq!(looped["outcome"], "error");
    assert!(
        looped["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{looped}"
    );
}

#[test]
fn an_analysis_gets_the_scope_on_stdin_and_stores_data_back_through_the_api() {
    let s = Server::start();
    let dir = s.dir.path().join("actions");
    std::fs::create_dir_all(dir.join("analysis")).expect("mkdir");
    std::fs::write(
        dir.join("analysis/double.py"),
        r#"
import json, os, sys, urllib.request
job = json.load(sys.stdin)
value = job["scope"][0]["value"]
body = json.dumps([{"variable": "double", "value": value * 2}]).encode()
req = urllib.request.Request(os.environ["BROOK_API"] + "/data", data=body, method="POST",
    headers={"token": os.environ["T_ANALYSIS_TOKEN"], "content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode())
print("env", os.environ["T_ANALYSIS_ENV"], os.environ["T_ANALYSIS_ID"])
"#,
    )
    .expect("write script");
    s.install_action(
        "double",
        r#"
[[action]]
name = "double"
trigger = { mqtt_topic = ["sensors/+/raw"] }
type = "analysis"
analysis = { command = ["python3", "analysis/double.py"], timeout = "20s", env = { FACTOR = "2" } }
"#,
    );
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "sensors/a/raw",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"raw","value":21}"#,
    );
    let r = s.wait_for_runs("double", 1);
    assert_eq!(r[0]["outcome"], "ok", "{}", r[0]);
    let stdout = r[0]["stdout"].as_str().unwrap_or_default();
    assert!(stdout.contains("1 Data Added"), "{stdout}");
    // The action's `env` first, then TagoIO's action context.
    assert!(
        stdout.contains(r#"[{"key":"FACTOR","value":"2"},{"key":"_action_id","value":"double"},{"key":"_action_type","value":"mqtt_topic"}"#),
        "{stdout}"
    );
    assert_eq!(
        stored(&s, &d.id),
        vec![("double".to_string(), "42".to_string())]
    );
}

#[test]
fn an_analysis_that_sleeps_past_its_timeout_is_killed_and_recorded_as_timeout() {
    let s = Server::start();
    s.install_action(
        "sleepy",
        r#"
[[action]]
name = "sleepy"
trigger = { mqtt_topic = ["slow/#"] }
type = "analysis"
analysis = { command = ["sleep", "30"], timeout = "1s" }
"#,
    );
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked("slow/x", QoS::AtLeastOnce, false, "1");
    let r = s.wait_for_runs("sleepy", 1);
    assert_eq!(r[0]["outcome"], "timeout");
}

#[test]
fn a_six_field_schedule_fires() {
    let s = Server::start();
    s.install_action(
        "tick",
        r#"
[[action]]
name = "tick"
trigger = { schedule = "* * * * * *" }
type = "mqtt_publish"
mqtt_publish = { topic = "ticks", payload = "tick", qos = 1 }
"#,
    );
    let r = s.wait_for_runs("tick", 2);
    assert_eq!(r[0]["outcome"], "ok");
    assert_eq!(r[0]["trigger"]["kind"], "schedule");
}

#[test]
fn a_device_event_action_publishes_on_connect() {
    let s = Server::start();
    s.install_action(
        "send-config",
        r#"
[[action]]
name = "send-config"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { topic = "devices/$DEVICE.NAME$/config", payload = "{\"interval\":60}", qos = 1, retain = true }
"#,
    );
    let d = s.create_device("pump");
    let _device = s.mqtt("pump-client", &d.token);
    let watcher = s.create_device("watcher");
    let mut w = s.mqtt("watcher", &watcher.token);
    w.subscribe("devices/pump/config", QoS::AtLeastOnce);
    let p = w.recv(WAIT);
    assert_eq!(p.topic, "devices/pump/config");
    assert_eq!(text(&p), r#"{"interval":60}"#);
}

#[test]
fn sighup_picks_up_a_new_action_file() {
    let s = Server::start();
    let d = s.create_device("d1");
    std::fs::write(s.dir.path().join("actions/store.toml"), STORE_READINGS).expect("write");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    wait_until("the new action to be listed", WAIT, || {
        s.admin_ok("GET", "/actions", None)
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == "store-readings"))
    });
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked("sensors/a/temperature", QoS::AtLeastOnce, false, "3");
    assert_eq!(stored(&s, &d.id).len(), 1);
}
