//! The web page in a real browser: Debian's headless Chromium, driven over
//! the WebDriver protocol (chromedriver's HTTP API, spoken here with ureq),
//! against the real brook binary while an MQTT client publishes.
//!
//! One test loads MQTT.js's browser bundle (the npm package pinned in
//! `tests/ws-clients/`) in a page that speaks MQTT over WebSocket to brook,
//! as MQTT 3.1.1 and as MQTT 5.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them the test fails under CI and is skipped elsewhere. Every wait polls
//! the page's DOM up to a deadline. Each view is photographed, wide
//! (1280×900) and as a phone (390×844), into `target/screenshots/`, or into
//! `docs/` (`console-*.png`, `inspector*.png`, which the README shows) with
//! `BROOK_SCREENSHOTS=docs`; a person checks them by eye.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::install;
use common::remotes::{Mosquitto, MosquittoSetup};
use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};
use tempfile::TempDir;

/// How long chromedriver may take to answer its `/status`.
const DRIVER_STARTUP: Duration = Duration::from_secs(10);

/// How long one WebDriver command may take (starting Chromium is the slowest).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The W3C WebDriver key under which an element reference comes.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session. On drop the session is deleted (Chromium
/// exits) and chromedriver is killed; the profile directory is removed.
struct Browser {
    /// `http://127.0.0.1:PORT/session/ID`: every command's URL prefix.
    session_url: String,
    http: ureq::Agent,
    /// Declared before `profile`: the browser is gone before its profile is removed.
    _driver: ChildGuard,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session, or None (skip) when
    /// they are not installed.
    fn start() -> Option<Browser> {
        let chromium = require_tool_from("chromium", "chromium")?;
        let chromedriver = require_tool_from("chromedriver", "chromium-driver")?;
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(COMMAND_TIMEOUT))
            .build()
            .into();
        let (driver, base) = start_driver(&chromedriver, &http);
        let profile = tempfile::Builder::new()
            .prefix("brook-chromium-")
            .tempdir()
            .expect("temp dir for the Chromium profile");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--window-size=1280,900".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created = command(
            &http,
            "POST",
            &format!("{base}/session"),
            Some(capabilities),
        );
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in the new session's answer: {created}"));
        Some(Browser {
            session_url: format!("{base}/session/{id}"),
            http,
            _driver: driver,
            _profile: profile,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        command(
            &self.http,
            method,
            &format!("{}{path}", self.session_url),
            body,
        )
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls `script` until it returns something other than null or false;
    /// that value. Panics naming `what` (and the page's text) at the deadline.
    fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.script(script);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() >= deadline {
                let text = self.script("return document.body.innerText;");
                panic!(
                    "timed out after {WAIT:?} waiting until {what}; the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the element `css` selects, as a user would.
    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// The WebDriver reference of the element `css` selects.
    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element for {css}: {found}"))
            .to_string()
    }

    /// Types `text` into the element `css` selects, as a user would.
    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("the screenshot as base64 text"))
            .expect("the screenshot decodes as base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("screenshot: {}", path.display());
    }
}

impl Browser {
    /// The text of the element `css` selects, or null when there is none.
    fn text(&self, css: &str) -> Value {
        self.script(&format!(
            "const e = document.querySelector({css:?}); return e && e.textContent;"
        ))
    }

    /// Moves the mouse to the middle of the element `css` selects.
    fn hover(&self, css: &str) {
        let id = self.element(css);
        let origin = json!({ ELEMENT_KEY: id });
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{
                "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
                "actions": [{"type": "pointerMove", "duration": 0, "origin": origin, "x": 0, "y": 0}],
            }]})),
        );
    }

    /// A wide and a phone-sized PNG of the page into `docs/NAME.png` and
    /// `docs/NAME-phone.png`. `top` (CSS) is scrolled to the top of the
    /// phone's screen; `ready` (a script) must hold before each picture
    /// (charts redraw for the new width).
    fn photograph(&self, name: &str, top: &str, ready: &str) {
        let dir = docs_dir();
        // The rates at the top need two samples of /metrics.
        let ready = format!(
            "if (document.getElementById('m-in').textContent === '–') return false; {ready}"
        );
        let ready = ready.as_str();
        self.resize(1280, 900);
        self.script("window.scrollTo(0, 0);");
        self.wait_for(&format!("{name} is drawn wide"), ready);
        self.screenshot(&dir.join(format!("{name}.png")));
        self.resize(390, 844);
        self.wait_for(
            &format!("{name} is drawn for a phone"),
            &format!(
                "if (document.documentElement.scrollWidth > window.innerWidth) return false; {ready}"
            ),
        );
        self.script(&format!(
            "document.querySelector({top:?}).scrollIntoView({{block: 'start'}});"
        ));
        self.screenshot(&dir.join(format!("{name}-phone.png")));
        self.resize(1280, 900);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium; killing chromedriver alone would leave it running.
        // Then the fields drop in order: chromedriver is killed, the
        // profile removed.
        let _ = self.http.delete(&self.session_url).call();
    }
}

/// Starts chromedriver on a free port; returns it and its base URL once it
/// answers ready. Retries on another port if the picked one was taken.
fn start_driver(chromedriver: &Path, http: &ureq::Agent) -> (ChildGuard, String) {
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let mut guard = ChildGuard(Some(child));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + DRIVER_STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = guard.child().try_wait() {
                break; // exited: most likely the port was taken meanwhile
            }
            let ready = http
                .get(&format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return (guard, base);
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("chromedriver did not become ready on any of 3 ports");
}

/// One WebDriver command; its `value`, or a panic with the driver's error.
fn command(http: &ureq::Agent, method: &str, url: &str, body: Option<Value>) -> Value {
    let result = match (method, body) {
        ("GET", _) => http.get(url).call(),
        ("DELETE", _) => http.delete(url).call(),
        ("POST", body) => http.post(url).send_json(body.unwrap_or(json!({}))),
        (other, _) => panic!("unsupported WebDriver method {other}"),
    };
    let mut response = result.unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = response.status().as_u16();
    let answer: Value = response
        .body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: HTTP {status}, not JSON: {e}"));
    if status != 200 {
        panic!(
            "WebDriver {method} {url}: HTTP {status}: {} {}",
            answer["value"]["error"], answer["value"]["message"]
        );
    }
    answer["value"].clone()
}

/// Where the pictures go: `docs/` when `BROOK_SCREENSHOTS=docs` (to update
/// the README's pictures), else `target/screenshots/`, so that a test run
/// leaves the repository's files as they were.
fn docs_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = if std::env::var("BROOK_SCREENSHOTS").as_deref() == Ok("docs") {
        root.join("docs")
    } else {
        root.join("target").join("screenshots")
    };
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// Charts drawn at the window's width (they redraw on resize).
const CHARTS_FIT: &str = "const svgs = [...document.querySelectorAll('#charts svg')];
    return svgs.length > 0 && svgs.every(s => Number(s.getAttribute('width')) <= window.innerWidth);";

/// What the chart of `variable` shows: points in its SVG (the `data-points`
/// attribute and the line's M/L commands), the latest value, its unit and
/// the min/max line; null while there is no chart.
fn chart(browser: &Browser, variable: &str) -> Value {
    browser.script(&format!(
        r#"const card = document.querySelector('#charts figure[data-variable="{variable}"]');
           const svg = card && card.querySelector('svg');
           if (!svg) return null;
           const d = svg.querySelector('path.line').getAttribute('d') || '';
           return {{points: Number(svg.dataset.points), commands: (d.match(/[ML]/g) || []).length,
                    latest: card.querySelector('.latest-value').textContent,
                    unit: card.querySelector('.latest-unit').textContent.trim(),
                    stats: card.querySelector('.stats').textContent,
                    yUnit: svg.querySelector('text.unit').textContent,
                    timeLabels: svg.querySelectorAll('.axis.x text').length}};"#
    ))
}

/// Waits until the chart of `variable` has `points` points; its state.
fn wait_points(browser: &Browser, variable: &str, points: u64) -> Value {
    let mut last = Value::Null;
    let deadline = Instant::now() + WAIT;
    loop {
        let c = chart(browser, variable);
        if c["points"] == json!(points) {
            return c;
        }
        if Instant::now() >= deadline {
            panic!("the {variable} chart never had {points} points; last seen: {last}");
        }
        last = c;
        thread::sleep(Duration::from_millis(50));
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("a time in range")
        .to_rfc3339()
}

/// The page's whole device story: created from the page with a parser, its
/// token read off the page and used over MQTT, its readings charted as they
/// are stored, thousands of them downsampled, a token added and the first
/// revoked (the MQTT connection closes), a parameter set, and another device
/// deleted after typing its name.
#[test]
fn the_page_adds_a_device_charts_its_readings_and_revokes_its_token() {
    let s = Server::start();
    std::fs::write(
        s.dir.path().join("actions").join("store.toml"),
        "[[action]]\nname = \"store-readings\"\ntrigger = { mqtt_topic = [\"sensors/#\"] }\ntype = \"insert_bucket\"\n",
    )
    .expect("write store.toml");
    s.admin_ok("POST", "/actions/reload", None);
    let Some(browser) = Browser::start() else {
        return;
    };
    let files = tempfile::tempdir().expect("temp dir");
    let parser = files.path().join("celsius.js");
    std::fs::write(
        &parser,
        "payload = payload.map((item) => item.variable === \"temperature\" ? Object.assign({}, item, { unit: \"°C\" }) : item);\n",
    )
    .expect("write the parser");

    browser.goto(&s.http_url(&format!("/#token={ADMIN_TOKEN}")));
    browser.wait_for(
        "the page says there are no devices",
        "return !document.getElementById('devices-empty').hidden;",
    );

    // Add a device from the page; its token is shown once.
    browser.click("#add-device-open");
    browser.type_into("#new-name", "greenhouse");
    browser.type_into("#new-tags", "site=north, kind=climate");
    browser.type_into("#new-parser", &parser.display().to_string());
    browser.click("#add-device button[type=submit]");
    let token = browser.wait_for(
        "the new device's token is shown",
        "const e = document.getElementById('new-token'); return e && e.value;",
    );
    let token = token.as_str().expect("the token as text").to_string();
    browser.wait_for(
        "the new device is open",
        "return document.getElementById('detail-name').textContent === 'greenhouse'
                && location.hash === '#device=greenhouse'
                && !document.getElementById('charts-empty').hidden;",
    );
    let created = s.admin_ok("GET", "/devices/greenhouse", None);
    assert_eq!(
        created["tags"],
        json!([{"key": "site", "value": "north"}, {"key": "kind", "value": "climate"}])
    );
    assert!(
        created["parser_source"]
            .as_str()
            .unwrap_or("")
            .contains("°C"),
        "the uploaded parser is the device's: {created}"
    );

    // That token logs in over MQTT; the broker at a glance counts it.
    let mut c = s.mqtt("greenhouse-sensor", &token);
    browser.wait_for(
        "the glance shows one connection",
        "return document.getElementById('m-connected').textContent === '1';",
    );

    // Readings stored by the action appear as points, one by one.
    let now = chrono::Utc::now().timestamp_millis();
    let readings = [
        (Some(now - 45 * 60_000), "19.5"),
        (Some(now - 30 * 60_000), "20.25"),
        (Some(now - 15 * 60_000), "21"),
        (None, "22.5"),
    ];
    let mut seen = Value::Null;
    for (i, (time, value)) in readings.iter().enumerate() {
        let payload = match time {
            Some(t) => format!(
                r#"{{"variable":"temperature","value":{value},"time":"{}"}}"#,
                iso(*t)
            ),
            None => format!(r#"{{"variable":"temperature","value":{value}}}"#),
        };
        c.publish_acked("sensors/greenhouse", QoS::AtLeastOnce, false, payload);
        seen = wait_points(&browser, "temperature", i as u64 + 1);
        assert_eq!(
            seen["commands"],
            json!(i + 1),
            "one line point per reading: {seen}"
        );
        assert_eq!(
            seen["latest"],
            json!(value),
            "the latest value, large: {seen}"
        );
    }
    assert_eq!(seen["unit"], "°C", "the unit the parser added");
    assert_eq!(seen["yUnit"], "°C", "the value axis names its unit");
    assert!(
        seen["timeLabels"].as_u64().unwrap_or(0) >= 3,
        "a labelled time axis: {seen}"
    );
    assert_eq!(
        seen["stats"]
            .as_str()
            .unwrap_or("")
            .split(" · latest")
            .next(),
        Some("min 19.5 °C · max 22.5 °C over 24 h")
    );

    // A day of readings every 30 s: 2880 stored, about 288 drawn.
    let items: Vec<Value> = (0..2880i64)
        .map(|i| {
            let phase = i as f64 / 2880.0 * std::f64::consts::TAU;
            json!({"variable": "humidity", "unit": "%",
                   "value": (55.0 + 15.0 * phase.cos() + (i % 13) as f64 * 0.2).round(),
                   "time": iso(now - 86_400_000 + 15_000 + i * 30_000)})
        })
        .collect();
    for chunk in items.chunks(1000) {
        let r = ureq::post(&s.http_url("/data"))
            .header("token", &token)
            .send_json(json!(chunk))
            .expect("POST /data");
        assert_eq!(r.status().as_u16(), 200);
    }
    browser.click(r#"#ranges [data-range="24h"]"#); // asks for the whole range again
    let humidity = browser.wait_for(
        "the humidity chart is drawn",
        r#"const s = document.querySelector('#charts figure[data-variable="humidity"] svg');
           return s && Number(s.dataset.points);"#,
    );
    let drawn = humidity.as_u64().unwrap_or(0);
    assert!(
        (287..=290).contains(&drawn),
        "2880 readings come as one point per 5 minutes, got {drawn}"
    );

    // The range picker: the hour holds all four temperature readings.
    browser.click(r#"#ranges [data-range="1h"]"#);
    let hour = wait_points(&browser, "temperature", 4);
    assert!(
        hour["stats"].as_str().unwrap_or("").contains("over 1 h"),
        "{hour}"
    );
    browser.click(r#"#ranges [data-range="24h"]"#);
    wait_points(&browser, "temperature", 4);
    browser.hover(r#"#charts figure[data-variable="humidity"] rect.hit"#);
    let tip = browser.wait_for(
        "hovering the humidity chart shows a point",
        r#"const t = document.querySelector('#charts figure[data-variable="humidity"] .tip');
           return t && !t.hidden && t.textContent;"#,
    );
    assert!(tip.as_str().unwrap_or("").contains(" %"), "{tip}");
    browser.photograph("console-readings", "#detail", CHARTS_FIT);

    // Tokens: listed by last 4 characters; add one, revoke the first.
    browser.click(r#"#tabs a[data-tab="tokens"]"#);
    let last4 = &token[token.len() - 4..];
    let listed = browser.wait_for(
        "the tokens tab lists the device's token",
        "return [...document.querySelectorAll('#tokens li.token')].map(li => li.dataset.last4);",
    );
    assert_eq!(listed, json!([last4]));
    browser.type_into("#token-name", "spare");
    browser.click("#add-token button[type=submit]");
    let spare = browser.wait_for(
        "the new token is shown once",
        "const e = document.querySelector('#token-new input'); return e && e.value;",
    );
    let spare = spare.as_str().expect("the spare token").to_string();
    browser.wait_for(
        "two tokens are listed",
        "return document.querySelectorAll('#tokens li.token').length === 2;",
    );
    assert!(
        !browser
            .script("return document.getElementById('tokens').textContent;")
            .as_str()
            .unwrap_or("")
            .contains(&spare),
        "the list never shows a whole token"
    );
    browser.photograph("console-tokens", "#detail", "return true;");
    let revoke = format!(r#"#tokens li[data-last4="{last4}"] .revoke"#);
    browser.click(&revoke);
    assert_eq!(
        browser.text(&revoke),
        json!(format!("Revoke …{last4}?")),
        "the first click asks again"
    );
    browser.click(&revoke);
    let closed = c.wait_closed(WAIT);
    eprintln!("the revoked token's connection ended: {closed}");
    browser.wait_for(
        "the page says the token was revoked",
        "const e = document.getElementById('tokens-status');
         return e.textContent.includes('revoked') && document.querySelectorAll('#tokens li.token').length === 1;",
    );

    // Settings: a parameter set from the page.
    browser.click(r#"#tabs a[data-tab="settings"]"#);
    browser.click("#param-add");
    browser.type_into("#params li:last-child .param-key", "interval");
    browser.type_into("#params li:last-child .param-value", "60");
    browser.click("#params-form button[type=submit]");
    browser.wait_for(
        "the parameter is saved",
        "return document.getElementById('params-status').textContent === '1 parameter saved.';",
    );
    let params = s.admin_ok("GET", "/devices/greenhouse", None)["params"].clone();
    assert_eq!(params[0]["key"], "interval");
    assert_eq!(params[0]["value"], "60");
    assert_eq!(params[0]["sent"], false);
    browser.photograph("console-settings", "#detail", "return true;");

    // A bookmark opens a device's tab; deleting wants its name typed.
    s.create_device("cellar");
    browser.goto(&s.http_url("/#device=cellar&tab=settings"));
    browser.wait_for(
        "the bookmark opens cellar's settings",
        "return document.getElementById('detail-name').textContent === 'cellar'
                && !document.getElementById('tab-settings').hidden;",
    );
    browser.type_into("#delete-confirm", "cella");
    assert_eq!(
        browser.script("return document.getElementById('delete-device').disabled;"),
        json!(true),
        "not before the whole name is typed"
    );
    browser.type_into("#delete-confirm", "r");
    browser.click("#delete-device");
    browser.wait_for(
        "cellar is gone from the list",
        r#"return !document.querySelector('#devices [data-device="cellar"]')
                  && !!document.querySelector('#devices [data-device="greenhouse"]')
                  && location.hash === '';"#,
    );
    let (status, _) = s.admin("GET", "/devices/cellar", None);
    assert_eq!(status, 404, "deleted through the admin API");
}

/// The action views: the list with each action's last run, a failing run's
/// record with its stderr, a reload that shows each problem as
/// `FILE:LINE: message`, an action locked for a device and unlocked from the
/// page, and the bridges panel with a bridge to a real Mosquitto (when it is
/// installed) and one whose remote refuses the connection.
#[test]
fn the_page_shows_actions_their_failed_run_and_reload_problems() {
    let remote = Mosquitto::start(MosquittoSetup::default());
    let mut bridges = String::from(
        "[[bridge]]\nname = \"backup\"\nurl = \"mqtt://127.0.0.1:1\"\nclient_id = \"brook-backup\"\n\
         reconnect_min = \"1s\"\nreconnect_max = \"2s\"\nout = [{ filter = \"sensors/#\", qos = 1 }]\n",
    );
    if let Some(m) = &remote {
        bridges.push_str(&format!(
            "[[bridge]]\nname = \"cloud\"\nurl = {:?}\nclient_id = \"brook-cloud\"\n\
             out = [{{ filter = \"sensors/#\", qos = 1, remote_prefix = \"site-a/\" }}]\n",
            m.url()
        ));
    }
    let s = Server::start_with(Config::new().raw(&bridges));
    let actions = s.dir.path().join("actions");
    std::fs::write(
        actions.join("site.toml"),
        r#"[[action]]
name = "store-readings"
trigger = { mqtt_topic = ["sensors/#"] }
type = "insert_bucket"

[[action]]
name = "check-sensor"
trigger = { mqtt_topic = ["alarms/#"] }
type = "analysis"
analysis = { command = ["sh", "-c", "echo checking the sensor; echo 'sensor offline: no reading for 10 min' >&2; exit 3"], timeout = "10s" }

[[action]]
name = "too-hot"
trigger = { variable = ["temperature"] }
condition = { variable = "temperature", op = ">", value = 30 }
unlock = { variable = "temperature", op = "<", value = 25 }
type = "mqtt_publish"
mqtt_publish = { topic = "alerts/$DEVICE.NAME$", payload = "$VALUE$ $UNIT$" }
"#,
    )
    .expect("write site.toml");
    s.admin_ok("POST", "/actions/reload", None);
    let d = s.create_device("greenhouse");
    let mut c = s.mqtt("greenhouse-sensor", &d.token);
    c.publish_acked(
        "sensors/greenhouse",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"temperature","value":21.5,"unit":"°C"}"#,
    );
    c.publish_acked("alarms/greenhouse", QoS::AtLeastOnce, false, "offline?");
    wait_until("check-sensor has run", WAIT, || {
        s.admin_ok("GET", "/actions/check-sensor/runs", None)
            .as_array()
            .is_some_and(|runs| !runs.is_empty())
    });
    // Stored by store-readings, 34.2 sets too-hot off, which locks it for
    // greenhouse.
    c.publish_acked(
        "sensors/greenhouse",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"temperature","value":34.2,"unit":"°C"}"#,
    );
    let too_hot_locks = |s: &Server| -> Value {
        let all = s.admin_ok("GET", "/actions", None);
        all.as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "too-hot"))
            .map(|a| a["locks"].clone())
            .unwrap_or_else(|| panic!("no action too-hot in {all}"))
    };
    wait_until("too-hot is locked for greenhouse", WAIT, || {
        too_hot_locks(&s)[0]["device"] == "greenhouse"
    });
    let Some(browser) = Browser::start() else {
        return;
    };

    browser.goto(&s.http_url(&format!("/#token={ADMIN_TOKEN}&actions")));
    let last = browser.wait_for(
        "the actions are listed with their last run",
        r#"const b = document.querySelector('#actions [data-action="check-sensor"] .outcome');
           return b && document.querySelectorAll('#actions button.action').length === 3 && b.textContent;"#,
    );
    assert_eq!(last, json!("error"));
    assert_eq!(
        browser.script("return location.hash;"),
        json!("#actions"),
        "the token left the address bar, the view stayed"
    );

    browser.click(r#"#actions [data-action="check-sensor"]"#);
    let run = browser.wait_for(
        "the failed run's record is shown",
        "const r = document.querySelector('#runs .run');
         return r && [location.hash, r.dataset.outcome, r.querySelector('.run-detail').textContent,
                      r.querySelector('.stderr').textContent, r.querySelector('.device').textContent];",
    );
    assert_eq!(
        run,
        json!([
            "#actions=check-sensor",
            "error",
            "exit code 3",
            "sensor offline: no reading for 10 min\n",
            "greenhouse"
        ])
    );

    // A broken file: the reload says where, and the loaded actions stay.
    let bad = actions.join("broken.toml");
    std::fs::write(
        &bad,
        "[[action]]\nname = \"broken\"\ntrigger = { mqtt_topic = [\"x/#\"] }\ntype = \"insert_bucket\"\ncondition = { variable = \"t\", op = \"~\", value = 1 }\n",
    )
    .expect("write broken.toml");
    browser.click("#reload-actions");
    let problems = browser.wait_for(
        "the reload's problems are shown",
        "const p = [...document.querySelectorAll('#reload-result .problems li')];
         return p.length > 0 && p.map(li => li.textContent);",
    );
    let first = problems[0].as_str().unwrap_or("");
    assert!(
        first.starts_with(&format!("{}:5: ", bad.display())),
        "FILE:LINE: message, got {problems}"
    );
    assert_eq!(
        browser.text(r#"#actions [data-action="too-hot"] .locks"#),
        json!("locked for greenhouse"),
        "the list says which devices an action is locked for"
    );

    // The bridges panel: the one to Mosquitto connected, the other's error.
    let bridges = browser.wait_for(
        "the bridges panel shows both bridges",
        &(format!("const needCloud = {};", remote.is_some())
            + r#"const b = [...document.querySelectorAll('#bridges li.bridge')];
           const backup = document.querySelector('#bridges li.bridge[data-bridge="backup"]');
           const cloud = document.querySelector('#bridges li.bridge[data-bridge="cloud"]');
           if (document.getElementById('bridges-panel').hidden || !backup) return null;
           if (!backup.querySelector('.last-error')) return null;
           if (needCloud && !(cloud && cloud.querySelector('.state').textContent === 'connected')) return null;
           return {count: b.length,
                   backup: backup.querySelector('.state').textContent,
                   cloud: cloud && cloud.querySelector('.state').textContent,
                   cloudSent: cloud && cloud.querySelector('.field.sent').textContent};"#),
    );
    eprintln!("the bridges panel: {bridges}");
    assert_eq!(bridges["backup"], "disconnected", "{bridges}");
    if remote.is_some() {
        assert_eq!(bridges["count"], 2, "{bridges}");
        assert_eq!(bridges["cloud"], "connected", "{bridges}");
    }
    browser.photograph("console-actions", "#runs-detail", "return true;");

    std::fs::remove_file(&bad).expect("remove broken.toml");
    browser.click("#reload-actions");
    browser.wait_for(
        "the reload succeeds",
        "return document.getElementById('reload-result').textContent === '3 actions loaded';",
    );

    // too-hot's lock, unlocked from the page.
    browser.click(r#"#actions [data-action="too-hot"]"#);
    let lock = browser.wait_for(
        "too-hot's lock for greenhouse is shown",
        r#"const l = document.querySelector('#locks li.lock[data-device="greenhouse"]');
           return !document.getElementById('locks-panel').hidden && l
                  && [l.querySelector('.device').textContent, l.querySelector('.since').textContent,
                      l.querySelector('button.unlock').textContent];"#,
    );
    assert_eq!(lock[0], "greenhouse", "{lock}");
    assert!(
        lock[1].as_str().unwrap_or("").starts_with("locked since "),
        "{lock}"
    );
    assert_eq!(lock[2], "Unlock", "{lock}");
    let facts = browser.script(
        "return [...document.querySelectorAll('#action-def dt')].map(dt => dt.textContent + ': ' + dt.nextElementSibling.textContent);",
    );
    let facts: Vec<&str> = facts
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(facts.contains(&"condition: temperature > 30"), "{facts:?}");
    assert!(facts.contains(&"unlock: temperature < 25"), "{facts:?}");
    browser.photograph("console-locks", "#runs-detail", "return true;");
    browser.click(r#"#locks li.lock[data-device="greenhouse"] button.unlock"#);
    let said = browser.wait_for(
        "the page says too-hot was unlocked and shows no lock",
        r#"const e = document.getElementById('locks-status');
           return document.querySelectorAll('#locks li.lock').length === 0
                  && !document.getElementById('locks-empty').hidden
                  && !document.querySelector('#actions [data-action="too-hot"] .locks')
                  && e.textContent && [e.textContent, e.classList.contains('error')];"#,
    );
    assert_eq!(said, json!(["too-hot unlocked for greenhouse", false]));
    assert_eq!(
        too_hot_locks(&s),
        json!([]),
        "unlocked through the admin API"
    );
    // An error shows the API's message (the page's own unlock, for a device
    // that does not exist).
    browser.script("unlock('too-hot', 'nobody', document.createElement('button'));");
    let said = browser.wait_for(
        "the page shows the API's error",
        "const e = document.getElementById('locks-status');
         return e.classList.contains('error') && e.textContent;",
    );
    assert_eq!(said, json!("nobody: no such device"));

    // A bookmark opens an action's runs.
    browser.goto(&s.http_url("/#actions=check-sensor"));
    browser.wait_for(
        "the bookmark opens check-sensor's runs",
        "return document.getElementById('runs-name').textContent === 'check-sensor'
                && !!document.querySelector('#runs .run[data-outcome=\"error\"]');",
    );
    c.disconnect();
}

#[test]
fn the_page_lists_devices_and_shows_a_publish_as_it_happens() {
    let started = Instant::now();
    let s = Server::start();
    let d = s.create_device("greenhouse");
    s.create_device("cellar");
    let Some(browser) = Browser::start() else {
        return;
    };

    browser.goto(&s.http_url(&format!("/#token={ADMIN_TOKEN}")));
    browser.wait_for(
        "the device list shows greenhouse",
        r#"return !!document.querySelector('#devices [data-device="greenhouse"]');"#,
    );
    let kept =
        browser.script("return [location.hash, sessionStorage.getItem('brook.admin_token')];");
    assert_eq!(
        kept,
        json!(["", ADMIN_TOKEN]),
        "the token moves from the URL fragment into session storage"
    );

    browser.click(r#"#devices [data-device="greenhouse"]"#);
    browser.click(r#"#tabs a[data-tab="inspector"]"#);
    browser.wait_for(
        "the Live Inspector is watching greenhouse",
        r#"return location.hash === '#device=greenhouse&tab=inspector'
                  && !document.getElementById('tab-inspector').hidden
                  && !!document.querySelector('#events .event[data-type="watching"]');"#,
    );

    // The payload carries markup: the page must show it as text.
    let payload = r#"{"temperature":21.5,"note":"<b>warm</b>"}"#;
    let mut c = s.mqtt("greenhouse-sensor", &d.token);
    c.subscribe("greenhouse/cmd/#", QoS::AtLeastOnce);
    c.publish_acked("greenhouse/climate", QoS::AtLeastOnce, false, payload);

    let shown = browser.wait_for(
        "the publish appears in the Live Inspector",
        r#"const e = document.querySelector('#events .event[data-type="publish"]');
           return e && [e.querySelector('.client').textContent,
                        e.querySelector('.topic').textContent,
                        e.querySelector('.payload').textContent];"#,
    );
    assert_eq!(
        shown,
        json!(["greenhouse-sensor", "greenhouse/climate", payload])
    );
    let order = browser.script(
        "return [...document.querySelectorAll('#events .event')].map(e => e.dataset.type);",
    );
    assert_eq!(
        order,
        json!(["publish", "subscribe", "connect", "watching"]),
        "newest on top"
    );
    assert_eq!(
        browser.script("return document.querySelectorAll('#events b').length;"),
        json!(0),
        "a payload's markup is never rendered"
    );
    browser.wait_for(
        "the device list shows greenhouse connected",
        r#"return document.querySelector('#devices [data-device="greenhouse"]').classList.contains('online');"#,
    );
    browser.photograph("inspector", "#detail", "return true;");

    // A device's name, tags and data are text too, in the charts as well.
    let markup = "<img src=x onerror=alert(1)>";
    ureq::post(&s.http_url("/data"))
        .header("token", &d.token)
        .send_json(json!([{"variable": "note", "value": markup},
                          {"variable": "level", "value": 3, "unit": "<i>m</i>"}]))
        .expect("POST /data");
    browser.click(r#"#tabs a[data-tab="overview"]"#);
    let drawn = browser.wait_for(
        "the readings tab shows the new values",
        r#"const n = document.querySelector('#charts figure[data-variable="note"] .latest-value');
           const u = document.querySelector('#charts figure[data-variable="level"] svg text.unit');
           return n && u && [n.textContent, u.textContent];"#,
    );
    assert_eq!(drawn, json!([markup, "<i>m</i>"]));
    assert_eq!(
        browser.script("return document.querySelectorAll('#detail img, #detail i').length;"),
        json!(0),
        "a value's markup is never rendered"
    );
    c.disconnect();
    eprintln!("browser test took {:?}", started.elapsed());
}

#[test]
fn the_page_asks_for_the_token_and_refuses_a_wrong_one() {
    let s = Server::start();
    s.create_device("greenhouse");
    let Some(browser) = Browser::start() else {
        return;
    };

    browser.goto(&s.http_url("/#token=not-the-admin-token"));
    let message = browser.wait_for(
        "the page refuses the wrong token",
        "const e = document.getElementById('login-error');
         return !document.getElementById('login').hidden && e.textContent || null;",
    );
    assert_eq!(message, json!("The admin token was refused."));
    assert_eq!(
        browser.script("return sessionStorage.getItem('brook.admin_token');"),
        Value::Null,
        "a refused token is forgotten"
    );

    browser.type_into("#token-input", ADMIN_TOKEN);
    browser.click("#login-form button");
    browser.wait_for(
        "the device list shows greenhouse after logging in",
        r#"return !!document.querySelector('#devices [data-device="greenhouse"]');"#,
    );
}

#[test]
fn the_page_files_are_served_with_their_content_types_and_no_cache() {
    let s = Server::start();
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>brook</title>"),
        (
            "/static/app.js",
            "text/javascript; charset=utf-8",
            "EventSource",
        ),
        (
            "/static/chart.js",
            "text/javascript; charset=utf-8",
            "createElementNS",
        ),
        ("/static/style.css", "text/css; charset=utf-8", "#events"),
    ] {
        let mut r = ureq::get(&s.http_url(path))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        let body = r.body_mut().read_to_string().expect("the file as text");
        assert!(body.contains(needle), "{path} contains {needle}");
    }
}

#[test]
fn mqtt_js_in_the_browser_publishes_and_receives_over_websocket() {
    // The page a dashboard would be: MQTT.js's browser bundle (from the
    // pinned npm package) over ws://127.0.0.1:PORT/mqtt with a device token,
    // protocol 4 and then 5; the inspector shows each connection's transport
    // and protocol.
    let Some(node_modules) = install::mqtt_js() else {
        return;
    };
    let s = Server::start();
    let token = s.token("dashboard");
    let page = tempfile::tempdir().expect("temp dir for the page");
    std::fs::copy(
        install::ws_clients_dir().join("browser.html"),
        page.path().join("browser.html"),
    )
    .expect("copy the page");
    std::fs::copy(
        node_modules.join("mqtt/dist/mqtt.min.js"),
        page.path().join("mqtt.min.js"),
    )
    .expect("copy MQTT.js's browser bundle");
    let Some(browser) = Browser::start() else {
        return;
    };
    let url = format!("ws://127.0.0.1:{}/mqtt", s.ws_port);
    let events = s.watch("dashboard");
    let open = |v: u8| {
        browser.goto(&format!(
            "file://{}/browser.html?url={url}&token={token}&v={v}",
            page.path().display()
        ));
        browser.wait_for(
            &format!("MQTT.js (protocol {v}) gets its message back, or an error"),
            "const o = document.getElementById('out');
             return o.dataset.got ? {got: o.dataset.got, user: o.dataset.user || null}
                  : o.dataset.error ? {error: o.dataset.error} : null;",
        )
    };
    let r = open(4);
    assert_eq!(
        r,
        json!({"got": "hello from the browser", "user": null}),
        "protocol 4 (3.1.1)"
    );
    let e = next_event_of(&events, "connect");
    assert_eq!(
        (&e["transport"], &e["protocol"]),
        (&json!("ws"), &json!("3.1.1")),
        "{e}"
    );
    // Protocol 5: connects, and its publish comes back with its user
    // property.
    let r = open(5);
    assert_eq!(
        r,
        json!({"got": "hello from the browser", "user": "{\"origin\":\"browser\"}"}),
        "protocol 5"
    );
    let e = next_event_of(&events, "connect");
    assert_eq!(
        (&e["transport"], &e["protocol"]),
        (&json!("ws"), &json!("5")),
        "{e}"
    );
}
