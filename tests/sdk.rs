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
//! venv, an npm project), reused while the pinned files are unchanged. When
//! `python3`, `node` or `npm` is missing or the install fails, the tests
//! fail under `CI` and are skipped (with a line saying why) otherwise.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};

/// How long one install step (venv, pip, npm ci) may take on a slow machine
/// with a cold cache.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

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

/// `target/sdk-env/`: found from this test binary (`target/debug/deps/sdk-…`),
/// so a custom `CARGO_TARGET_DIR` is followed.
fn env_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("sdk-env")
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs an install step to its end within [`INSTALL_TIMEOUT`]; Err carries
/// the command and the tail of its output.
fn install_step(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    // Drained on threads, so a chatty installer never blocks on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {INSTALL_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let output = text(out) + &text(err);
    let tail: String = output
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!("{shown} failed ({status}):\n{tail}"))
}

fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Holds an exclusive lock on `target/sdk-env/.lock` until dropped, so two
/// test runs at once (two `cargo test`s) do not install into one place.
struct InstallLock(#[allow(dead_code)] fs::File);

impl InstallLock {
    fn take(dir: &Path) -> Result<InstallLock, String> {
        use std::os::unix::io::AsRawFd;
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(".lock");
        let file = fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this File owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(InstallLock(file))
    }
}

/// Installs into `dir` unless its marker already holds `pinned` (the pinned
/// file's text): then the install is the one wanted and is reused.
fn install_once(
    dir: &Path,
    pinned: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let marker = dir.join(".brook-installed");
    if fs::read_to_string(&marker).is_ok_and(|m| m == pinned) {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    install(dir)?;
    fs::write(&marker, pinned).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// The venv's Python with `tagoio-sdk` installed.
fn install_python() -> Result<PathBuf, String> {
    let python3 = on_path("python3").ok_or("python3 not found on PATH")?;
    let env = env_dir();
    let _lock = InstallLock::take(&env)?;
    let requirements = sdk_dir().join("requirements.txt");
    let pinned = fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = env.join("python");
    install_once(&venv, &pinned, |venv| {
        install_step(Command::new(&python3).args(["-m", "venv"]).arg(venv)).map_err(|e| {
            format!("{e}\n(on Debian, `apt-get install python3-venv` provides the venv module)")
        })?;
        install_step(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check"])
                .args(["--no-input", "--quiet", "-r"])
                .arg(&requirements),
        )
    })?;
    Ok(venv.join("bin/python"))
}

/// `node_modules` with `@tago-io/sdk` installed (`npm ci` from the lock file).
fn install_node() -> Result<PathBuf, String> {
    on_path("node").ok_or("node not found on PATH")?;
    let npm = on_path("npm").ok_or("npm not found on PATH")?;
    let env = env_dir();
    let _lock = InstallLock::take(&env)?;
    let lock_file = sdk_dir().join("package-lock.json");
    let pinned = fs::read_to_string(&lock_file)
        .map_err(|e| format!("cannot read {}: {e}", lock_file.display()))?;
    let project = env.join("node");
    install_once(&project, &pinned, |project| {
        for file in ["package.json", "package-lock.json"] {
            fs::copy(sdk_dir().join(file), project.join(file))
                .map_err(|e| format!("cannot copy {file}: {e}"))?;
        }
        install_step(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(project),
        )
    })?;
    Ok(project.join("node_modules"))
}

/// Under `CI`, a missing SDK fails the test; elsewhere it skips it, saying why.
fn required<T: Clone>(what: &str, installed: &Result<T, String>) -> Option<T> {
    match installed {
        Ok(t) => Some(t.clone()),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{what} could not be installed, and CI needs it:\n{e}")
        }
        Err(e) => {
            eprintln!("skipping: {what} could not be installed: {e}");
            None
        }
    }
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
