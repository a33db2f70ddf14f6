//! TagoIO's own SDKs against a running brook, unchanged: `tagoio-sdk` (PyPI)
//! and `@tago-io/sdk` (npm), at the exact versions pinned in `tests/sdk/`.
//!
//! A device script in each language (`tests/sdk/device.py`, `device.js`)
//! makes every `Device` call and prints what the SDK returned; the tests here
//! assert those answers. The analyses are the repository's own examples
//! (`actions/analysis/average_alert.py`, `.js`), started by an action on an
//! MQTT publish: each reads its scope and environment, stores an average
//! through `Device` with the run's token and publishes an alert with
//! `Services.MQTT.publish`, which an MQTT subscriber here receives.
//!
//! The SDKs are installed once per test run into `target/sdk-env/` (a Python
//! venv, an npm project; `common::install`), reused while the pinned files
//! are unchanged. When
//! `python3`, `node` or `npm` is missing or the install fails, the tests
//! fail under `CI` and are skipped (with a line saying why) otherwise.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::install::{self, required};
use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};

/// How long a device script may take: about twenty requests, plus the
/// interpreter's start and the SDK's import.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an analysis may take from the publish to its alert: a process
/// start, the SDK's import and two requests, on a busy two-core machine.
const ANALYSIS_WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The SDKs, installed once per run

/// `tests/sdk/` in the repository: the pinned dependency files and the scripts.
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("sdk")
}

/// The venv's Python with `tagoio-sdk` installed, in `target/sdk-env/`.
fn install_python() -> Result<PathBuf, String> {
    install::python_venv(
        &sdk_dir().join("requirements.txt"),
        &install::env_dir("sdk-env"),
    )
}

/// `node_modules` with `@tago-io/sdk` installed (`npm ci` from the lock
/// file), in `target/sdk-env/`.
fn install_node() -> Result<PathBuf, String> {
    install::node_modules(&sdk_dir(), &install::env_dir("sdk-env"))
}

/// The Python that has `tagoio-sdk`, installed on first use.
fn python_sdk() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    required(
        "the Python SDK (tests/sdk/requirements.txt)",
        PYTHON.get_or_init(install_python),
    )
}

/// The `node_modules` that has `@tago-io/sdk`, installed on first use.
fn node_sdk() -> Option<PathBuf> {
    static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    required(
        "the JavaScript SDK (tests/sdk/package.json)",
        NODE.get_or_init(install_node),
    )
}

// ---------------------------------------------------------------------------
// Device scripts

/// Gives `name` the configuration parameter the scripts read back.
fn set_params(s: &Server, name: &str) {
    s.admin_ok(
        "PATCH",
        &format!("/devices/{name}"),
        Some(json!({"params": [{"key": "interval", "value": "60", "sent": false}]})),
    );
}

/// Runs a device script and returns the JSON transcript it printed.
fn run_device_script(s: &Server, cmd: &mut Command, token: &str) -> Value {
    let out = run_bounded(
        cmd.env("BROOK_TOKEN", token)
            .env("TAGOIO_API", s.http_url(""))
            .env_remove("T_ANALYSIS_CONTEXT"),
        SCRIPT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "the device script failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        out.stdout,
        out.stderr
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the device script printed no JSON transcript ({e}):\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}

/// Asserts `r[step]` with `check`, showing the whole transcript on failure.
fn expect(r: &Value, step: &str, check: impl FnOnce(&Value) -> bool) {
    let pretty = serde_json::to_string_pretty(r).unwrap_or_default();
    assert!(
        check(&r[step]),
        "step {step:?} answered {}\nwhole transcript:\n{pretty}",
        r[step]
    );
}

fn values(v: &Value) -> Vec<Value> {
    v.as_array()
        .map(|items| items.iter().map(|i| i["value"].clone()).collect())
        .unwrap_or_default()
}

/// What both SDKs must have got from brook. `date_type` is how the SDK
/// represents a parsed `time` ("datetime" in Python, "Date" in JavaScript).
fn assert_device_transcript(r: &Value, device: &Device, date_type: &str) {
    expect(r, "send_one", |v| v == "1 Data Added");
    expect(r, "send_list", |v| v == "3 Data Added");
    expect(r, "get_qty", |v| {
        values(v) == [json!(23.5), json!(22.5)]
            && v[0]["time"]["type"] == date_type
            && v[0]["time"]["date"]
                .as_str()
                .is_some_and(|d| d.starts_with("2026-01-01T00:00:03"))
    });
    expect(r, "get_variables", |v| {
        values(v) == [json!(40), json!(23.5), json!(22.5), json!(21.5)]
    });
    expect(r, "get_dates", |v| values(v) == [json!(22.5)]);
    expect(r, "last_value", |v| values(v) == [json!(23.5)]);
    expect(r, "count", |v| values(v) == [json!(3)]);
    expect(r, "edit", |v| v == "1 item(s) updated");
    expect(r, "after_edit", |v| values(v) == [json!(30)]);
    expect(r, "delete", |v| v == "1 Data Removed");
    expect(r, "count_after_delete", |v| values(v) == [json!(0)]);
    expect(r, "info", |v| {
        v["id"] == device.id.as_str() && v["name"] == device.name.as_str()
    });
    expect(r, "params", |v| {
        v.as_array().is_some_and(|p| p.len() == 1)
            && v[0]["key"] == "interval"
            && v[0]["value"] == "60"
            && v[0]["sent"] == false
            && v[0]["id"].as_str().is_some_and(|id| !id.is_empty())
    });
    expect(r, "set_read", |v| v.is_string());
    expect(r, "bad_token", |v| v["error"] == "Invalid token");
}

#[test]
fn a_python_device_script_written_with_tagoio_sdk_runs_unchanged() {
    let Some(python) = python_sdk() else { return };
    let s = Server::start();
    let d = s.create_device("sensor-py");
    set_params(&s, &d.name);
    let r = run_device_script(
        &s,
        Command::new(python).arg(sdk_dir().join("device.py")),
        &d.token,
    );
    assert_device_transcript(&r, &d, "datetime");
    expect(&r, "params_after", |v| v[0]["sent"] == true);
}

#[test]
fn a_javascript_device_script_written_with_tago_io_sdk_runs_unchanged() {
    let Some(node_modules) = node_sdk() else {
        return;
    };
    let s = Server::start();
    let d = s.create_device("sensor-js");
    set_params(&s, &d.name);
    let r = run_device_script(
        &s,
        Command::new("node")
            .arg(sdk_dir().join("device.js"))
            .env("NODE_PATH", node_modules),
        &d.token,
    );
    assert_device_transcript(&r, &d, "Date");
    expect(&r, "params_unread", |v| v == &json!([]));
    expect(&r, "params_read", |v| {
        v.as_array().is_some_and(|p| p.len() == 1) && v[0]["sent"] == true
    });
}

// ---------------------------------------------------------------------------
// Analyses

/// The repository's example analysis `file`, copied into the server's
/// actions dir under `analysis/`.
fn install_example(s: &Server, file: &str) -> PathBuf {
    let analysis = s.dir.path().join("actions").join("analysis");
    fs::create_dir_all(&analysis).expect("mkdir actions/analysis");
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("actions/analysis")
        .join(file);
    fs::copy(&example, analysis.join(file))
        .unwrap_or_else(|e| panic!("copy {}: {e}", example.display()));
    analysis
}

/// Installs an action running `command` on `sensors/+/temperature`, with the
/// example's environment, and reloads.
fn install_average_action(s: &Server, name: &str, command: &[String], alert_topic: &str) {
    let command: Vec<String> = command.iter().map(|c| format!("{c:?}")).collect();
    let toml = format!(
        r#"
[[action]]
name = "{name}"
trigger = {{ mqtt_topic = ["sensors/+/temperature"] }}
type = "analysis"
analysis = {{ command = [{}], timeout = "60s", env = {{ VARIABLE = "temperature", LIMIT = "30", ALERT_TOPIC = "{alert_topic}" }} }}
"#,
        command.join(", ")
    );
    fs::write(
        s.dir.path().join("actions").join(format!("{name}.toml")),
        toml,
    )
    .expect("write the action file");
    s.admin_ok("POST", "/actions/reload", None);
}

/// Publishes readings averaging 32 (over the limit of 30); asserts that the
/// analysis `action` published its alert on `alert_topic` at QoS 1, ended
/// `ok`, and stored `temperature_avg` = 32 in the publishing device's bucket.
fn assert_average_and_alert(s: &Server, action: &str, alert_topic: &str) {
    let sensor = s.create_device("sensor");
    let watcher = s.create_device("watcher");
    let mut sub = s.mqtt("watcher", &watcher.token);
    sub.subscribe("alerts/#", QoS::AtLeastOnce);
    let mut publisher = s.mqtt("sensor", &sensor.token);
    publisher.publish_acked(
        "sensors/room/temperature",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"temperature","value":31},{"variable":"temperature","value":33},{"variable":"humidity","value":50}]"#,
    );

    // The run record, for every failure message below.
    let run = || {
        let (_, v) = s.admin("GET", &format!("/actions/{action}/runs"), None);
        v["result"][0].clone()
    };
    let deadline = Instant::now() + ANALYSIS_WAIT;
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            panic!("no alert on {alert_topic}; the run: {:#}", run());
        }
        let got = sub
            .events
            .recv_timeout(left.min(Duration::from_millis(500)));
        match got {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => break p,
            Ok(Ok(_)) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // A run that already failed will publish nothing.
                let r = run();
                assert!(
                    r.is_null() || r["outcome"] != "error",
                    "the analysis failed: {r:#}"
                );
            }
            other => panic!("the subscriber's connection ended: {other:?}"),
        }
    };
    assert_eq!(alert.topic, alert_topic);
    assert_eq!(alert.qos, QoS::AtLeastOnce, "the alert's QoS");
    let message: Value = serde_json::from_slice(&alert.payload)
        .unwrap_or_else(|e| panic!("the alert is not JSON ({e}): {}", text(&alert)));
    // Numbers compared as numbers: Python writes 32.0 where JavaScript writes 32.
    assert!(
        message["variable"] == "temperature"
            && message["average"].as_f64() == Some(32.0)
            && message["limit"].as_f64() == Some(30.0)
            && message["device"] == sensor.id.as_str(),
        "the alert: {message}"
    );

    let mut record = Value::Null;
    wait_until(
        &format!("the run of {action} to end"),
        ANALYSIS_WAIT,
        || {
            record = run();
            !record.is_null()
        },
    );
    assert_eq!(record["outcome"], "ok", "the run: {record:#}");

    let stored = s.admin_ok(
        "GET",
        &format!("/devices/{}/data?variable=temperature_avg", sensor.name),
        None,
    );
    assert!(
        stored.as_array().is_some_and(|s| s.len() == 1)
            && stored[0]["value"].as_f64() == Some(32.0)
            && stored[0]["metadata"]["readings"] == 2,
        "stored: {stored}"
    );
}

#[test]
fn a_python_sdk_analysis_stores_an_average_and_publishes_an_alert() {
    let Some(python) = python_sdk() else { return };
    let s = Server::start();
    install_example(&s, "average_alert.py");
    let command = [
        python.display().to_string(),
        "analysis/average_alert.py".to_string(),
    ];
    install_average_action(&s, "average-py", &command, "alerts/py");
    assert_average_and_alert(&s, "average-py", "alerts/py");
}

#[test]
fn a_javascript_sdk_analysis_stores_an_average_and_publishes_an_alert() {
    let Some(node_modules) = node_sdk() else {
        return;
    };
    let s = Server::start();
    let analysis = install_example(&s, "average_alert.js");
    // Where `npm install` in actions/analysis would have put the SDK.
    std::os::unix::fs::symlink(&node_modules, analysis.join("node_modules"))
        .expect("symlink node_modules");
    let command = ["node".to_string(), "analysis/average_alert.js".to_string()];
    install_average_action(&s, "average-js", &command, "alerts/js");
    assert_average_and_alert(&s, "average-js", "alerts/js");
}
