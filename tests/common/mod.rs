//! The harness every integration test shares: it starts the real `brook`
//! binary on ephemeral ports with a config file and a SQLite data dir in a
//! temporary directory, creates devices and tokens through the admin API,
//! and connects real clients (rumqttc, raw TCP, the mosquitto tools).
//!
//! Nothing here sleeps to "let things happen": every wait polls a condition
//! or blocks on a channel up to a deadline, and panics naming what it waited
//! for. The server child is killed when its `Server` is dropped, also when
//! the test panics; then the tail of the server's log is printed.
#![allow(dead_code)]

pub(crate) mod install;
pub(crate) mod raw;
pub(crate) mod remotes;
pub(crate) mod v5;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Event, MqttOptions, Outgoing, Packet, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use serde_json::{json, Value};
use tempfile::TempDir;

pub(crate) const ADMIN_TOKEN: &str = "test-admin";

/// The usual bound for one awaited event (a CONNACK, a delivery). Generous,
/// because a debug build on two busy cores can be slow; a healthy broker
/// answers in milliseconds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How long a started server may take to answer `/health`.
const STARTUP: Duration = Duration::from_secs(30);

/// Start attempts when a picked port was taken before the server bound it.
const START_ATTEMPTS: usize = 5;

/// A port that was free a moment ago: bind `127.0.0.1:0`, read, drop.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `cond` every 15 ms until it holds; panics naming `what` at the
/// deadline.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        thread::sleep(Duration::from_millis(15));
    }
}

/// Path of the binary under test: this build's, or the one named by
/// `BROOK_TEST_BIN` (to run a test against another build, such as the last
/// release, and see it fail there).
pub(crate) fn brook_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BROOK_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_brook").to_string())
    })
}

/// The part of config.toml a test changes. Everything else is the harness's:
/// ports, data dir, admin token, actions dir.
#[derive(Clone, Default)]
pub(crate) struct Config {
    /// `key = value` lines for `[mqtt]` (value as TOML), later ones replace
    /// earlier ones with the same key.
    mqtt: Vec<(String, String)>,
    /// TLS certificate and key (PEM files); enables `tls_listen`.
    tls: Option<(PathBuf, PathBuf)>,
    /// Raw TOML appended at the end (the `[[acl]]` tables).
    tail: String,
    /// `key = value` lines for `[server]`, `[http]` and `[actions]`.
    server: Vec<(String, String)>,
    http: Vec<(String, String)>,
    actions: Vec<(String, String)>,
    /// Environment variables the server process gets beside the test's own.
    env: Vec<(String, String)>,
}

impl Config {
    pub(crate) fn new() -> Self {
        Config::default()
    }

    /// Sets `[mqtt] key = value`; `value` is TOML (`"2s"` must carry its quotes).
    pub(crate) fn mqtt(mut self, key: &str, value: &str) -> Self {
        self.mqtt.retain(|(k, _)| k != key);
        self.mqtt.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets `[server] key = value` (value as TOML).
    pub(crate) fn server(mut self, key: &str, value: &str) -> Self {
        self.server.retain(|(k, _)| k != key);
        self.server.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets `[http] key = value` (value as TOML).
    pub(crate) fn http(mut self, key: &str, value: &str) -> Self {
        self.http.retain(|(k, _)| k != key);
        self.http.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets `[actions] key = value` (value as TOML).
    pub(crate) fn actions(mut self, key: &str, value: &str) -> Self {
        self.actions.retain(|(k, _)| k != key);
        self.actions.push((key.to_string(), value.to_string()));
        self
    }

    /// An environment variable for the server process.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds an `[[acl]]` rule.
    pub(crate) fn acl(mut self, who: &str, topic: &str, access: &str, actions: &[&str]) -> Self {
        let actions: Vec<String> = actions.iter().map(|a| format!("{a:?}")).collect();
        self.tail.push_str(&format!(
            "\n[[acl]]\nwho = {who:?}\ntopic = {topic:?}\naccess = {access:?}\nactions = [{}]\n",
            actions.join(", ")
        ));
        self
    }

    /// Appends raw TOML (whole tables, such as `[limits]`) to the config.
    pub(crate) fn raw(mut self, toml: &str) -> Self {
        self.tail.push('\n');
        self.tail.push_str(toml);
        self.tail.push('\n');
        self
    }

    pub(crate) fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    fn render(&self, dir: &Path, ports: &Ports) -> String {
        let Ports {
            mqtt: mqtt_port,
            http: http_port,
            tls: tls_port,
            ws: ws_port,
            wss: wss_port,
        } = *ports;
        let mut s = String::new();
        s.push_str(&format!(
            "[server]\ndata_dir = {:?}\n",
            dir.join("data").display().to_string()
        ));
        for (k, v) in &self.server {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push('\n');
        s.push_str(&format!("[mqtt]\nlisten = \"127.0.0.1:{mqtt_port}\"\n"));
        // Never the default 0.0.0.0:8083/8084: tests run side by side.
        // (Unless the test sets the key itself.)
        let set = |key: &str| self.mqtt.iter().any(|(k, _)| k == key);
        if !set("ws_listen") {
            s.push_str(&format!("ws_listen = \"127.0.0.1:{ws_port}\"\n"));
        }
        if let (Some(wss_port), false) = (wss_port, set("wss_listen")) {
            s.push_str(&format!("wss_listen = \"127.0.0.1:{wss_port}\"\n"));
        }
        if let (Some((cert, key)), Some(tls_port)) = (&self.tls, tls_port) {
            s.push_str(&format!("tls_listen = \"127.0.0.1:{tls_port}\"\n"));
            s.push_str(&format!("tls_cert = {:?}\n", cert.display().to_string()));
            s.push_str(&format!("tls_key = {:?}\n", key.display().to_string()));
        }
        for (k, v) in &self.mqtt {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push_str(&format!(
            "\n[http]\nlisten = \"127.0.0.1:{http_port}\"\nadmin_token = {ADMIN_TOKEN:?}\n"
        ));
        for (k, v) in &self.http {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push_str(&format!(
            "\n[actions]\ndir = {:?}\n",
            dir.join("actions").display().to_string()
        ));
        for (k, v) in &self.actions {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s.push_str(&self.tail);
        s
    }
}

/// The ports one start of a server uses.
#[derive(Clone, Copy)]
struct Ports {
    mqtt: u16,
    http: u16,
    tls: Option<u16>,
    ws: u16,
    wss: Option<u16>,
}

/// Waits for the next Live Inspector event of `kind`, skipping others.
pub(crate) fn next_event_of(rx: &Receiver<Value>, kind: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if e["type"] == kind => return e,
            Ok(_) => continue,
            Err(_) => panic!("no Live Inspector event of type {kind:?} within {WAIT:?}"),
        }
    }
}

/// A device created through the admin API, with its first token.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub name: String,
    pub id: String,
    pub token: String,
    pub token_id: String,
}

/// A running `brook serve`. Killed (SIGKILL) and reaped on drop.
pub(crate) struct Server {
    /// Holds config.toml, data/ (brook.db), actions/ and brook.log; removed
    /// when the test ends.
    pub dir: TempDir,
    config: Config,
    child: Option<Child>,
    pub mqtt_port: u16,
    pub http_port: u16,
    pub tls_port: Option<u16>,
    /// MQTT over WebSocket (`ws://127.0.0.1:PORT/mqtt`).
    pub ws_port: u16,
    /// MQTT over WebSocket over TLS, when the server has a certificate.
    pub wss_port: Option<u16>,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    http: ureq::Agent,
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// What a waited-on child did.
enum Startup {
    Ready,
    Exited(ExitStatus),
}

impl Server {
    /// Starts brook with the default test config.
    pub(crate) fn start() -> Server {
        Server::start_with(Config::new())
    }

    pub(crate) fn start_with(config: Config) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("brook-test-")
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("data")).expect("create data dir");
        fs::create_dir_all(dir.path().join("actions")).expect("create actions dir");
        let config_path = dir.path().join("config.toml");
        let log_path = dir.path().join("brook.log");
        let mut server = Server {
            dir,
            config,
            child: None,
            mqtt_port: 0,
            http_port: 0,
            tls_port: None,
            ws_port: 0,
            wss_port: None,
            config_path,
            log_path,
            http: http_agent(),
        };
        server.boot();
        server
    }

    /// Picks ports, writes config.toml and runs brook until `/health`
    /// answers and the MQTT port(s) accept; retries with other ports when one
    /// was taken in between.
    fn boot(&mut self) {
        for attempt in 1..=START_ATTEMPTS {
            self.mqtt_port = free_port();
            self.http_port = free_port();
            self.tls_port = self.config.tls.as_ref().map(|_| free_port());
            self.ws_port = free_port();
            self.wss_port = self.config.tls.as_ref().map(|_| free_port());
            let ports = Ports {
                mqtt: self.mqtt_port,
                http: self.http_port,
                tls: self.tls_port,
                ws: self.ws_port,
                wss: self.wss_port,
            };
            let text = self.config.render(self.dir.path(), &ports);
            fs::write(&self.config_path, text).expect("write config.toml");
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .expect("open brook.log");
            let child = Command::new(brook_bin())
                .arg("serve")
                .arg("--config")
                .arg(&self.config_path)
                .envs(self.config.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn brook");
            self.child = Some(child);
            match self.wait_ready() {
                Startup::Ready => return,
                Startup::Exited(status) => {
                    self.child = None;
                    let log = self.log();
                    let lower = log.to_lowercase();
                    if lower.contains("address already in use") || lower.contains("addrinuse") {
                        eprintln!("brook start attempt {attempt}: a port was taken, retrying");
                        continue;
                    }
                    panic!("brook exited with {status} before it was ready; its log:\n{log}");
                }
            }
        }
        panic!(
            "brook could not bind free ports in {START_ATTEMPTS} attempts; log:\n{}",
            self.log()
        );
    }

    fn wait_ready(&mut self) -> Startup {
        let deadline = Instant::now() + STARTUP;
        let url = format!("http://127.0.0.1:{}/health", self.http_port);
        let set = |key: &str| self.config.mqtt.iter().any(|(k, _)| k == key);
        let mut ports = vec![self.mqtt_port];
        ports.extend(self.tls_port);
        if !set("ws_listen") {
            ports.push(self.ws_port);
        }
        if !set("wss_listen") {
            ports.extend(self.wss_port);
        }
        let mut healthy = false;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Startup::Exited(status);
            }
            if !healthy {
                healthy = matches!(self.http.get(&url).call(), Ok(r) if r.status().as_u16() == 200);
            }
            if healthy
                && ports.iter().all(|p| {
                    TcpStream::connect_timeout(&([127, 0, 0, 1], *p).into(), Duration::from_secs(1))
                        .is_ok()
                })
            {
                // Both answered; make sure it was this child and not a
                // neighbour's server that took one of the ports.
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    return Startup::Exited(status);
                }
                return Startup::Ready;
            }
            if Instant::now() >= deadline {
                panic!(
                    "brook did not become ready in {STARTUP:?} (health ok: {healthy}); log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's stdout+stderr so far.
    pub(crate) fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// SIGKILL (`kill -9`) and reap.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts brook again on the same data dir (ports may change).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart() after kill9() or stop()");
        self.boot();
    }

    /// Starts brook again on the same data dir with another configuration.
    pub(crate) fn restart_with(&mut self, config: Config) {
        self.config = config;
        self.restart();
    }

    /// The config file the server runs with.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// How many threads the server process has, from /proc/PID/status.
    pub(crate) fn threads(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("Threads:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }

    /// The value of one sample of `/metrics` (`brook_name` or
    /// `brook_name{label="x"}`), 0 when it is not there.
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        let (status, body) = self.http_request("GET", "/metrics", None, None);
        assert_eq!(status, 200, "GET /metrics");
        let text = body.as_str().unwrap_or_default().to_string();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Opens a device's Live Inspector stream and waits until it is live
    /// (its first event, `{"type": "watching"}`, has arrived); the events
    /// after that arrive on the channel.
    pub(crate) fn watch(&self, device: &str) -> Receiver<Value> {
        let url = self.http_url(&format!("/devices/{device}/live"));
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let response = ureq::get(&url)
                .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
                .call()
                .expect("open the live stream");
            let reader = std::io::BufReader::new(response.into_body().into_reader());
            for line in std::io::BufRead::lines(reader) {
                let Ok(line) = line else { return };
                if let Some(data) = line.strip_prefix("data: ") {
                    let Ok(event) = serde_json::from_str::<Value>(data) else {
                        return;
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        match rx.recv_timeout(WAIT) {
            Ok(first) if first["type"] == "watching" => rx,
            other => panic!("the live stream of {device} did not start: {other:?}"),
        }
    }

    /// Writes `actions/NAME.toml` and reloads the server's actions.
    pub(crate) fn install_action(&self, name: &str, toml: &str) {
        let dir = self.dir.path().join("actions");
        fs::write(dir.join(format!("{name}.toml")), toml).expect("write action file");
        self.admin_ok("POST", "/actions/reload", None);
    }

    /// The run records of an action, newest first.
    pub(crate) fn runs(&self, action: &str) -> Vec<Value> {
        let v = self.admin_ok("GET", &format!("/actions/{action}/runs"), None);
        v.as_array().cloned().unwrap_or_default()
    }

    /// Waits until an action has at least `n` run records; returns them.
    pub(crate) fn wait_for_runs(&self, action: &str, n: usize) -> Vec<Value> {
        let mut found = Vec::new();
        wait_until(&format!("{n} run(s) of {action}"), WAIT, || {
            found = self.runs(action);
            found.len() >= n
        });
        found
    }

    /// Sends SIGTERM and waits for the exit, up to `timeout`.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        self.wait_exit(timeout)
    }

    /// Waits for the server process to exit by itself, up to `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("server is running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("brook did not exit within {timeout:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server process, from /proc/PID/status, in kB.
    pub(crate) fn rss_kb(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
    }

    pub(crate) fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    /// An admin API request with the admin bearer token: (HTTP status, body
    /// as JSON, or the body text as a JSON string when it is not JSON).
    pub(crate) fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.http_request(method, path, Some(&format!("Bearer {ADMIN_TOKEN}")), body)
    }

    pub(crate) fn http_request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = self.http_url(path);
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.http.get(&url);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.http.delete(&url);
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, body) => {
                let mut r = match m {
                    "POST" => self.http.post(&url),
                    "PUT" => self.http.put(&url),
                    "PATCH" => self.http.patch(&url),
                    other => panic!("unsupported method {other}"),
                };
                if let Some(a) = auth {
                    r = r.header("Authorization", a);
                }
                r.send_json(body.unwrap_or(json!({})))
            }
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Like `admin`, but asserts a 2xx answer with `"status": true` and
    /// returns its `result`.
    pub(crate) fn admin_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.admin(method, path, body);
        assert!(
            (200..300).contains(&status) && v["status"] == json!(true),
            "{method} {path}: HTTP {status}, body {v}"
        );
        v["result"].clone()
    }

    /// Creates a device through the admin API; returns it with its token.
    pub(crate) fn create_device(&self, name: &str) -> Device {
        self.create_device_with_tags(name, &[])
    }

    pub(crate) fn create_device_with_tags(&self, name: &str, tags: &[(&str, &str)]) -> Device {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let r = self.admin_ok(
            "POST",
            "/devices",
            Some(json!({"name": name, "tags": tags})),
        );
        let token = r["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {r}"))
            .to_string();
        Device {
            name: name.to_string(),
            id: id_string(&r["device"]["id"]),
            token,
            token_id: id_string(&r["token_id"]),
        }
    }

    /// A new token for `device`: (token id, secret).
    pub(crate) fn add_token(&self, device: &str, body: Value) -> (String, String) {
        let r = self.admin_ok("POST", &format!("/devices/{device}/tokens"), Some(body));
        (
            id_string(&r["id"]),
            r["token"]
                .as_str()
                .unwrap_or_else(|| panic!("no token in {r}"))
                .to_string(),
        )
    }

    /// A fresh device's token, for tests that just need to log in.
    pub(crate) fn token(&self, device: &str) -> String {
        self.create_device(device).token
    }

    /// Connects a rumqttc client with `token` over TCP; panics unless CONNACK 0.
    pub(crate) fn mqtt(&self, client_id: &str, token: &str) -> Mqtt {
        Mqtt::connect(self.mqtt_options(client_id, token), 100)
    }

    pub(crate) fn mqtt_options(&self, client_id: &str, token: &str) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", self.mqtt_port);
        o.set_credentials("Token", token);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(1 << 20, 1 << 20);
        o
    }

    /// Runs a `brook` subcommand with `--config` of this server, bounded by
    /// `timeout`.
    pub(crate) fn cli(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push("--config".into());
        all.push(self.config_path.display().to_string());
        run_bounded(Command::new(brook_bin()).args(&all), timeout)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(80);
            eprintln!(
                "---- last {} lines of brook's log ({}) ----\n{}\n---- end of brook's log ----",
                lines.len() - from,
                self.log_path.display(),
                lines[from..].join("\n")
            );
        }
    }
}

/// An id from the API as a string, whether it came as a string or a number.
pub(crate) fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => panic!("missing id"),
        other => other.to_string(),
    }
}

/// What a bounded child process printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command with stdout/stderr captured to files; kills it at the
/// deadline (and panics).
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> CliOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {timeout:?}; stdout: {}; stderr: {}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    CliOutput {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// A child process killed and reaped on drop (mosquitto_sub, ...).
pub(crate) struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child still owned")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Finds `tool` (from mosquitto-clients) on PATH; see [`require_tool_from`].
pub(crate) fn require_tool(tool: &str) -> Option<PathBuf> {
    require_tool_from(tool, "mosquitto-clients")
}

/// Finds `tool`, which Debian's `package` provides, on PATH. When missing:
/// under CI (env `CI` set) panics, else prints a skip line to stderr and
/// returns None so the test can return.
pub(crate) fn require_tool_from(tool: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} not found; .ci/run installs {package}");
        }
        eprintln!("skipping: {tool} not found (apt-get install {package})");
    }
    found
}

/// What the event thread of an `Mqtt` forwards: an event, or the error that
/// ended the connection (then nothing more comes).
pub(crate) type Item = Result<Event, String>;

/// A rumqttc client whose event loop runs on its own thread and forwards
/// every event into a channel.
pub(crate) struct Mqtt {
    pub client: Client,
    pub events: Receiver<Item>,
    pub client_id: String,
    /// Set once the connection's end was seen (error or our DISCONNECT).
    pub closed: bool,
    /// Incoming PUBLISHes that arrived while a wait looked for something
    /// else (a retained message may come before its SUBACK): kept, in
    /// order, for the next wait that wants them.
    stash: VecDeque<Event>,
}

impl Mqtt {
    /// Connects with `cap` as the request channel capacity; panics unless
    /// CONNACK 0 arrives.
    pub(crate) fn connect(opts: MqttOptions, cap: usize) -> Mqtt {
        let (m, ack) = Mqtt::try_connect(opts, cap);
        match ack {
            Ok(_) => m,
            Err(e) => panic!("client {:?} could not connect: {e}", m.client_id),
        }
    }

    /// Connects and returns the CONNACK (or the error rumqttc reported).
    pub(crate) fn try_connect(
        opts: MqttOptions,
        cap: usize,
    ) -> (Mqtt, Result<rumqttc::ConnAck, String>) {
        let client_id = opts.client_id();
        let (client, mut connection) = Client::new(opts, cap);
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mqtt-{client_id}"))
            .spawn(move || {
                for ev in connection.iter() {
                    let end =
                        ev.is_err() || matches!(ev, Ok(Event::Outgoing(Outgoing::Disconnect)));
                    if tx.send(ev.map_err(|e| e.to_string())).is_err() || end {
                        break;
                    }
                }
            })
            .expect("spawn event thread");
        let mut m = Mqtt {
            client,
            events: rx,
            client_id,
            closed: false,
            stash: VecDeque::new(),
        };
        let ack = m.next_matching("CONNACK", WAIT, |e| match e {
            Event::Incoming(Packet::ConnAck(a)) => Some(a.clone()),
            _ => None,
        });
        (m, ack)
    }

    /// Waits for the first event for which `f` returns Some; other events are
    /// skipped, except incoming PUBLISHes, which are stashed for a later
    /// wait. Err when the connection ended first; panics at the deadline.
    pub(crate) fn next_matching<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Result<T, String> {
        for i in 0..self.stash.len() {
            if let Some(t) = f(&self.stash[i]) {
                self.stash.remove(i);
                return Ok(t);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(ev)) => {
                    if matches!(ev, Event::Outgoing(Outgoing::Disconnect)) {
                        self.closed = true;
                    }
                    if let Some(t) = f(&ev) {
                        return Ok(t);
                    }
                    if matches!(ev, Event::Incoming(Packet::Publish(_))) {
                        self.stash.push_back(ev);
                    }
                }
                Ok(Err(e)) => {
                    self.closed = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "client {:?}: timed out after {timeout:?} waiting for {what}",
                        self.client_id
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    return Err("event loop ended".into());
                }
            }
        }
    }

    /// Like `next_matching`, panicking when the connection ends first.
    pub(crate) fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let id = self.client_id.clone();
        self.next_matching(what, timeout, f).unwrap_or_else(|e| {
            panic!("client {id:?}: connection ended while waiting for {what}: {e}")
        })
    }

    /// The next incoming PUBLISH.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Publish {
        self.expect("a PUBLISH", timeout, |e| match e {
            Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
    }

    /// Incoming PUBLISHes up to and including the first on `topic`.
    pub(crate) fn recv_until_topic(&mut self, topic: &str, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.expect(
                &format!("a PUBLISH on {topic} (got so far: {:?})", topics(&got)),
                left,
                |e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
                    _ => None,
                },
            );
            let done = p.topic == topic;
            got.push(p);
            if done {
                return got;
            }
        }
    }

    /// Subscribes to several filters in one SUBSCRIBE; returns the SUBACK codes.
    pub(crate) fn subscribe_many(&mut self, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
        let list: Vec<SubscribeFilter> = filters
            .iter()
            .map(|(f, q)| SubscribeFilter::new(f.to_string(), *q))
            .collect();
        self.client.subscribe_many(list).expect("queue SUBSCRIBE");
        self.expect("SUBACK", WAIT, |e| match e {
            Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
    }

    /// Subscribes and asserts the grant is the requested QoS.
    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_many(&[(filter, qos)]);
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter}"
        );
    }

    pub(crate) fn unsubscribe(&mut self, filter: &str) {
        self.client.unsubscribe(filter).expect("queue UNSUBSCRIBE");
        self.expect("UNSUBACK", WAIT, |e| match e {
            Event::Incoming(Packet::UnsubAck(_)) => Some(()),
            _ => None,
        });
    }

    /// Queues a publish without waiting.
    pub(crate) fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, retain, payload.into())
            .expect("queue PUBLISH");
    }

    /// Publishes and waits for the broker's acknowledgement: PUBACK for QoS 1,
    /// PUBCOMP for QoS 2, the packet leaving for QoS 0. Use with nothing else
    /// in flight.
    pub(crate) fn publish_acked(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
    ) {
        self.publish(topic, qos, retain, payload);
        let what = format!("the acknowledgement of a QoS {qos:?} publish to {topic}");
        self.expect(&what, WAIT, |e| match (qos, e) {
            (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_))) => Some(()),
            (QoS::AtLeastOnce, Event::Incoming(Packet::PubAck(_))) => Some(()),
            (QoS::ExactlyOnce, Event::Incoming(Packet::PubComp(_))) => Some(()),
            _ => None,
        });
    }

    /// Sends DISCONNECT and waits until it has left.
    pub(crate) fn disconnect(mut self) {
        if self.closed {
            return;
        }
        self.client.disconnect().expect("queue DISCONNECT");
        let _ = self.next_matching("DISCONNECT sent", WAIT, |e| match e {
            Event::Outgoing(Outgoing::Disconnect) => Some(()),
            _ => None,
        });
    }

    /// Waits until the broker closes this connection; returns the error text.
    pub(crate) fn wait_closed(&mut self, timeout: Duration) -> String {
        match self.next_matching("the connection to be closed", timeout, |_| None::<()>) {
            Ok(()) => unreachable!(),
            Err(e) => e,
        }
    }
}

pub(crate) fn topics(ps: &[Publish]) -> Vec<String> {
    ps.iter().map(|p| p.topic.clone()).collect()
}

pub(crate) fn text(p: &Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// A self-signed certificate for "localhost" written as PEM files in `dir`:
/// (cert path, key path, the certificate's DER for a client's root store).
pub(crate) fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    fs::write(&cert_path, ck.cert.pem()).expect("write cert");
    fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
    (cert_path, key_path, ck.cert.der().to_vec())
}

/// A rustls client config trusting exactly `ca_der`, on the ring provider
/// (the test binary links more than one provider, so none is implicit).
pub(crate) fn tls_client_config(ca_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .expect("add root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}
