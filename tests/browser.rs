//! The web page in a real browser: Debian's headless Chromium, driven over
//! the WebDriver protocol (chromedriver's HTTP API, spoken here with ureq),
//! against the real brook binary while an MQTT client publishes.
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them); without
//! them the test fails under CI and is skipped elsewhere. Every wait polls
//! the page's DOM up to a deadline. Screenshots go to `target/` for a human
//! to look at: `browser-test.png` (desktop) and `browser-test-phone.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
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

fn target_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&dir).expect("create target/");
    dir
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
    browser.wait_for(
        "the Live Inspector is watching greenhouse",
        r#"return !!document.querySelector('#events .event[data-type="watching"]');"#,
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
    browser.wait_for(
        "the latest-data panel has answered (no data yet)",
        "return !document.getElementById('data-empty').hidden;",
    );

    let dir = target_dir();
    browser.screenshot(&dir.join("browser-test.png"));
    browser.resize(390, 844);
    browser.screenshot(&dir.join("browser-test-phone.png"));
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
