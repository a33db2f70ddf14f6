//! TagoIO's actions against the real server (issue 14): variable triggers
//! fired by every path that stores data, conditions, lock and unlock across
//! a restart, the loop guard and the action context of analyses,
//! `http_post` to a real local HTTP server (retries, fallback, a pending
//! delivery surviving `kill -9`) and `email` to a small SMTP server written
//! here. Nothing of brook's is mocked: the endpoints are real sockets.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};

/// `POST /data` as the device; asserts it was accepted.
fn post_data(s: &Server, token: &str, body: Value) {
    let (status, v) = s.http_request("POST", "/data", Some(token), Some(body));
    assert_eq!(status, 200, "POST /data: {v}");
}

/// The run records of `action` once exactly `n` exist and none is pending.
fn settled_runs(s: &Server, action: &str, n: usize) -> Vec<Value> {
    let mut runs = Vec::new();
    wait_until(&format!("{n} settled run(s) of {action}"), WAIT, || {
        runs = s.runs(action);
        runs.len() >= n && runs.iter().all(|r| r["outcome"] != "pending")
    });
    assert_eq!(runs.len(), n, "runs of {action}: {runs:#?}");
    runs
}

// ---- A tiny HTTP server: answers each request with the next status.

/// One request the endpoint received.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    /// Header names lower-cased.
    headers: BTreeMap<String, String>,
    body: Value,
}

/// An HTTP endpoint on a thread: the n-th request gets `statuses[n]`, or
/// the last of them once they run out.
struct Endpoint {
    port: u16,
    requests: Receiver<Request>,
}

impl Endpoint {
    fn start(statuses: &[u16]) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the endpoint");
        Endpoint::serve(listener, statuses)
    }

    fn serve(listener: TcpListener, statuses: &[u16]) -> Endpoint {
        let port = listener.local_addr().expect("endpoint address").port();
        let statuses = statuses.to_vec();
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
                match answer(stream, status) {
                    Some(r) => {
                        if tx.send(r).is_err() {
                            return;
                        }
                    }
                    None => continue,
                }
            }
        });
        Endpoint { port, requests }
    }

    fn next(&self) -> Request {
        self.requests
            .recv_timeout(WAIT)
            .expect("a request at the endpoint")
    }
}

/// Reads one request and answers it with `status`.
fn answer(stream: TcpStream, status: u16) -> Option<Request> {
    stream.set_read_timeout(Some(WAIT)).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let mut out = stream;
    let text = if status == 200 { "fine" } else { "not today" };
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    Some(Request {
        path,
        headers,
        body: serde_json::from_slice(&body).ok()?,
    })
}

// ---- Variable triggers, conditions, templates.

#[test]
fn a_variable_trigger_fires_once_per_batch_stored_by_post_data_and_by_mqtt_with_templates() {
    let s = Server::start();
    s.install_action(
        "alarm",
        r#"
[[action]]
name = "alarm"
trigger = { variable = ["temperature"] }
type = "mqtt_publish"
mqtt_publish = { topic = "alarm/$DEVICE.NAME$", payload = "$VARIABLE$=$VALUE$ $UNIT$|$TIME$|$LOCATION$|$GROUP$|$ACTION.STATE$", qos = 1 }
"#,
    );
    let d = s.create_device("boiler");
    let watcher = s.create_device("watcher");
    let mut w = s.mqtt("watcher", &watcher.token);
    w.subscribe("alarm/#", QoS::AtLeastOnce);

    // One batch of three items, two of them temperatures: one run.
    post_data(
        &s,
        &d.token,
        json!([
            {"variable": "temperature", "value": 95, "unit": "C", "time": "2026-11-30T10:00:00.000Z",
             "location": {"lat": -23.5, "lng": -46.6}, "group": "g1"},
            {"variable": "temperature", "value": 96, "unit": "C"},
            {"variable": "humidity", "value": 40},
        ]),
    );
    let p = w.recv(WAIT);
    assert_eq!(p.topic, "alarm/boiler");
    assert_eq!(
        text(&p),
        "temperature=95 C|2026-11-30T10:00:00.000Z|-23.5,-46.6|g1|unlocked"
    );
    let runs = settled_runs(&s, "alarm", 1);
    assert_eq!(runs[0]["trigger"]["kind"], "variable");

    // A batch without the variable: nothing.
    post_data(&s, &d.token, json!({"variable": "humidity", "value": 41}));

    // The same trigger through MQTT: the legacy topic stores, and the
    // stored batch fires.
    let mut c = s.mqtt("boiler", &d.token);
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"temperature","value":97,"unit":"C"},{"variable":"temperature","value":98}]"#,
    );
    let p = w.recv(WAIT);
    assert!(text(&p).starts_with("temperature=97 C|"), "{}", text(&p));
    settled_runs(&s, "alarm", 2);
}

#[test]
fn between_any_a_list_of_conditions_and_a_forced_field_type() {
    let s = Server::start();
    s.install_action(
        "conditions",
        r#"
[[action]]
name = "warm"
trigger = { variable = ["temperature"] }
condition = { variable = "temperature", op = "between", value = [20, 30] }
type = "mqtt_publish"
mqtt_publish = { topic = "out/warm", payload = "$VALUE$" }

[[action]]
name = "door-and-warm"
trigger = { variable = ["temperature", "door"] }
condition = [
  { variable = "door", op = "any" },
  { variable = "temperature", op = ">", value = 25 },
]
type = "mqtt_publish"
mqtt_publish = { topic = "out/both", payload = "$VARIABLE$" }

[[action]]
name = "code"
trigger = { variable = ["code"] }
condition = { variable = "code", op = "=", value = "0x1", field = "string" }
type = "mqtt_publish"
mqtt_publish = { topic = "out/code", payload = "$VALUE$" }

[[action]]
name = "level"
trigger = { variable = ["level"] }
condition = { variable = "level", op = ">=", value = 5, field = "number" }
type = "mqtt_publish"
mqtt_publish = { topic = "out/level", payload = "$VALUE$" }
"#,
    );
    let d = s.create_device("d1");
    // Batches that meet nothing first, then the ones that do: each run
    // record appearing last proves the ones before did not run.
    for body in [
        json!({"variable": "temperature", "value": 19.9}),
        json!({"variable": "temperature", "value": 30.1}),
        json!({"variable": "door", "value": "open"}),
        json!({"variable": "code", "value": 1}),
        json!({"variable": "level", "value": "low"}),
        json!({"variable": "level", "value": "4"}),
    ] {
        post_data(&s, &d.token, body);
    }
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 20}),
    );
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 30}),
    );
    assert_eq!(settled_runs(&s, "warm", 2).len(), 2, "20 and 30 are inside");
    assert!(s.runs("door-and-warm").is_empty(), "door alone, or cool");
    post_data(
        &s,
        &d.token,
        json!([{"variable": "door", "value": "open"}, {"variable": "temperature", "value": 26}]),
    );
    settled_runs(&s, "door-and-warm", 1);
    // "0x1" compared as a string; the number 1 is not "0x1".
    post_data(&s, &d.token, json!({"variable": "code", "value": "0x1"}));
    settled_runs(&s, "code", 1);
    // "7" as a number is above 5.
    post_data(&s, &d.token, json!({"variable": "level", "value": "7"}));
    settled_runs(&s, "level", 1);
    // The list also holds for mqtt_topic triggers.
    s.install_action(
        "topic",
        r#"
[[action]]
name = "topic"
trigger = { mqtt_topic = ["t/#"] }
condition = [{ variable = "a", op = "any" }, { variable = "b", op = "between", value = [1, 2] }]
type = "insert_bucket"
"#,
    );
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "t/x",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"a","value":1},{"variable":"b","value":3}]"#,
    );
    c.publish_acked(
        "t/x",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"a","value":1},{"variable":"b","value":2}]"#,
    );
    let runs = settled_runs(&s, "topic", 1);
    assert_eq!(runs[0]["outcome"], "ok");
}

#[test]
fn a_lock_holds_across_a_restart_until_an_item_meets_unlock_or_the_api_resets_it() {
    let mut s = Server::start();
    s.install_action(
        "hot",
        r#"
[[action]]
name = "hot"
trigger = { variable = ["temperature"] }
condition = { variable = "temperature", op = ">", value = 100 }
unlock = { variable = "temperature", op = "<", value = 90 }
type = "mqtt_publish"
mqtt_publish = { topic = "hot/$DEVICE.NAME$", payload = "$VALUE$ $ACTION.STATE$" }
"#,
    );
    let d = s.create_device("boiler");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 120}),
    );
    let runs = settled_runs(&s, "hot", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    let hot = |s: &Server| -> Value {
        let all = s.admin_ok("GET", "/actions", None);
        all.as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "hot").cloned())
            .unwrap_or_else(|| panic!("no action hot in {all}"))
    };
    let locks = hot(&s)["locks"].clone();
    assert_eq!(locks.as_array().map(Vec::len), Some(1), "{locks}");
    assert_eq!(locks[0]["device"], "boiler");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 130}),
    );

    s.kill9();
    s.restart();
    assert_eq!(hot(&s)["locks"][0]["device"], "boiler", "the lock survived");
    let watcher = s.create_device("watcher");
    let mut w = s.mqtt("watcher", &watcher.token);
    w.subscribe("hot/#", QoS::AtLeastOnce);
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 125}),
    );
    // 80 unlocks (and does not itself meet the condition); 110 runs again.
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 80}),
    );
    assert_eq!(hot(&s)["locks"], json!([]));
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 110}),
    );
    let p = w.recv(WAIT);
    assert_eq!(
        text(&p),
        "110 locked",
        "125 did not run; 110 did, and locked"
    );
    assert_eq!(settled_runs(&s, "hot", 2).len(), 2);

    // Locked again; the admin API resets it.
    let (status, v) = s.admin("POST", "/actions/hot/unlock?device=boiler", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(hot(&s)["locks"], json!([]));
    let (status, _) = s.admin("POST", "/actions/hot/unlock?device=nobody", None);
    assert_eq!(status, 404);
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 115}),
    );
    assert_eq!(text(&w.recv(WAIT)), "115 locked");
    settled_runs(&s, "hot", 3);
}

#[test]
fn an_analysis_gets_the_action_context_and_its_own_writes_do_not_retrigger_it() {
    let s = Server::start();
    let dir = s.dir.path().join("actions");
    std::fs::create_dir_all(dir.join("analysis")).expect("mkdir");
    std::fs::write(
        dir.join("analysis/echo.py"),
        r#"
import json, os, sys, urllib.request
job = json.load(sys.stdin)
value = job["scope"][0]["value"]
print("got", value)
env = {e["key"]: e["value"] for e in json.loads(os.environ["T_ANALYSIS_ENV"])}
print("context", env["_action_id"], env["_action_type"], env["_action_state"], env["_device_id"])
body = json.dumps([{"variable": "temperature", "value": value * 2}]).encode()
req = urllib.request.Request(os.environ["BROOK_API"] + "/data", data=body, method="POST",
    headers={"token": os.environ["T_ANALYSIS_TOKEN"], "content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode())
"#,
    )
    .expect("write script");
    s.install_action(
        "echo",
        r#"
[[action]]
name = "echo"
trigger = { variable = ["temperature"] }
type = "analysis"
analysis = { command = ["python3", "analysis/echo.py"], timeout = "20s" }
"#,
    );
    let d = s.create_device("d1");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 10}),
    );
    let runs = settled_runs(&s, "echo", 1);
    let out = runs[0]["stdout"].as_str().unwrap_or_default().to_string();
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    assert!(out.contains("got 10"), "{out}");
    assert!(
        out.contains(&format!("context echo condition unlocked {}", d.id)),
        "{out}"
    );
    assert!(out.contains("1 Data Added"), "{out}");
    // The device's next batch runs it again; its write-back of 20 never did.
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 11}),
    );
    let runs = settled_runs(&s, "echo", 2);
    for r in &runs {
        let out = r["stdout"].as_str().unwrap_or_default();
        assert!(!out.contains("got 20") && !out.contains("got 22"), "{out}");
    }
}

// ---- http_post.

const POST_ACTION: &str = r#"
[[action]]
name = "forward"
trigger = { variable = ["temperature"] }
type = "http_post"
http_post = { url = "http://127.0.0.1:PORT/in/$DEVICE.NAME$", headers = { Authorization = "Bearer k-$DEVICE.NAME$" }, attempts = 3, backoff = "100ms", timeout = "5s", fallback_device = "http-errors" }
"#;

#[test]
fn http_post_fails_twice_then_delivers_with_tagoio_retries_and_one_run_of_three_attempts() {
    let s = Server::start();
    let endpoint = Endpoint::start(&[500, 503, 200]);
    s.install_action(
        "forward",
        &POST_ACTION.replace("PORT", &endpoint.port.to_string()),
    );
    let d = s.create_device("boiler");
    post_data(
        &s,
        &d.token,
        json!([{"variable": "temperature", "value": 95, "unit": "C"}, {"variable": "humidity", "value": 3}]),
    );
    let requests: Vec<Request> = (0..3).map(|_| endpoint.next()).collect();
    for r in &requests {
        assert_eq!(r.path, "/in/boiler");
        assert_eq!(r.headers["authorization"], "Bearer k-boiler");
        assert_eq!(r.body.as_array().map(Vec::len), Some(1), "{}", r.body);
        assert_eq!(r.body[0]["variable"], "temperature");
        assert_eq!(r.body[0]["value"], 95);
        assert_eq!(r.body[0]["unit"], "C");
    }
    let retries: Vec<Option<&str>> = requests
        .iter()
        .map(|r| r.headers.get("tagoio-retries").map(String::as_str))
        .collect();
    assert_eq!(retries, vec![None, Some("1"), Some("2")]);
    let runs = settled_runs(&s, "forward", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    let attempts = runs[0]["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 3, "{}", runs[0]);
    let oks: Vec<bool> = attempts.iter().map(|a| a["ok"] == true).collect();
    assert_eq!(oks, vec![false, false, true]);
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[1]["status"], 503);
    assert!(s.metric("brook_delivery_attempts_total{result=\"failed\"}") >= 2.0);
}

#[test]
fn http_post_that_always_fails_stores_the_items_in_the_fallback_device() {
    let s = Server::start();
    let endpoint = Endpoint::start(&[500]);
    s.install_action(
        "forward",
        &POST_ACTION.replace("PORT", &endpoint.port.to_string()),
    );
    s.create_device("http-errors");
    let d = s.create_device("boiler");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 95, "metadata": {"site": "north"}}),
    );
    for _ in 0..3 {
        endpoint.next();
    }
    let runs = settled_runs(&s, "forward", 1);
    assert_eq!(runs[0]["outcome"], "error", "{}", runs[0]);
    assert_eq!(runs[0]["attempts"].as_array().map(Vec::len), Some(3));
    let mut items = Vec::new();
    wait_until("the fallback device to hold the items", WAIT, || {
        items = s
            .admin_ok("GET", "/devices/http-errors/data", None)
            .as_array()
            .cloned()
            .unwrap_or_default();
        !items.is_empty()
    });
    assert_eq!(items.len(), 1, "{items:?}");
    let meta = &items[0]["metadata"];
    assert_eq!(items[0]["variable"], "temperature");
    assert_eq!(items[0]["value"], 95);
    assert_eq!(meta["site"], "north");
    assert_eq!(meta["_http_attempts"], 3);
    assert_eq!(
        meta["_http_url"],
        format!("http://127.0.0.1:{}/in/boiler", endpoint.port)
    );
    assert!(
        meta["_http_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{meta}"
    );
}

#[test]
fn a_pending_delivery_survives_kill_9_and_is_made_after_the_restart() {
    let mut s = Server::start();
    // Nothing listens yet: every attempt is refused, quickly.
    let port = free_port();
    s.install_action(
        "forward",
        &POST_ACTION
            .replace("PORT", &port.to_string())
            .replace("attempts = 3", "attempts = 20")
            .replace("backoff = \"100ms\"", "backoff = \"500ms\""),
    );
    let d = s.create_device("boiler");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 42}),
    );
    wait_until("a failed attempt in the run record", WAIT, || {
        s.runs("forward").first().is_some_and(|r| {
            r["outcome"] == "pending" && r["attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
    });
    s.kill9();
    let endpoint = Endpoint::serve(
        TcpListener::bind(("127.0.0.1", port)).expect("bind the endpoint's port"),
        &[200],
    );
    s.restart();
    let r = endpoint.next();
    assert_eq!(r.body[0]["value"], 42);
    assert!(r.headers.contains_key("tagoio-retries"), "{:?}", r.headers);
    let runs = settled_runs(&s, "forward", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    let attempts = runs[0]["attempts"].as_array().cloned().unwrap_or_default();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert_eq!(attempts.last().map(|a| a["ok"].clone()), Some(json!(true)));
}

// ---- email, to a small SMTP server.

/// A message the SMTP server took.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// Speaks just enough SMTP (RFC 5321, no TLS, no AUTH) to take messages;
/// each arrives on the channel.
fn smtp_server() -> (u16, Receiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
    let port = listener.local_addr().expect("SMTP address").port();
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = smtp_session(stream, &tx);
            });
        }
    });
    (port, rx)
}

fn smtp_session(stream: TcpStream, tx: &Mutex<mpsc::Sender<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 test.local ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            out.write_all(b"250-test.local\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            out.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_string());
            out.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            out.write_all(b"250 queued\r\n")?;
            let mail = Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data,
            };
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(mail);
            }
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 OK\r\n")?;
        }
    }
}

#[test]
fn an_email_action_delivers_to_a_local_smtp_server_with_the_templates_filled() {
    let (port, mails) = smtp_server();
    let s = Server::start_with(Config::new().raw(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"brook@example.com\"\ntls = \"none\"\n"
    )));
    s.install_action(
        "mail",
        r#"
[[action]]
name = "mail"
trigger = { variable = ["temperature"] }
condition = { variable = "temperature", op = ">", value = 90 }
type = "email"
email = { to = ["ops@example.com", "night@example.com"], subject = "$DEVICE.NAME$: $VARIABLE$ = $VALUE$ $UNIT$", body = "At $TIME$ in group $GROUP$ ($ACTION.STATE$).", backoff = "100ms" }
"#,
    );
    let d = s.create_device("boiler");
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": 95, "unit": "C", "group": "g7", "time": "2026-11-30T10:00:00.000Z"}),
    );
    let mail = mails
        .recv_timeout(WAIT)
        .expect("a message at the SMTP server");
    assert_eq!(mail.from, "<brook@example.com>");
    assert_eq!(
        mail.to,
        vec![
            "<ops@example.com>".to_string(),
            "<night@example.com>".to_string()
        ]
    );
    assert!(
        mail.data
            .contains("Subject: boiler: temperature = 95 C\r\n"),
        "{}",
        mail.data
    );
    assert!(
        mail.data
            .contains("At 2026-11-30T10:00:00.000Z in group g7 (unlocked)."),
        "{}",
        mail.data
    );
    let runs = settled_runs(&s, "mail", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    assert_eq!(runs[0]["attempts"].as_array().map(Vec::len), Some(1));
}

#[test]
fn an_email_the_smtp_server_cannot_take_yet_is_retried() {
    // The first connection is closed at once; the second is served.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP");
    let port = listener.local_addr().expect("SMTP address").port();
    let (tx, mails) = mpsc::channel();
    thread::spawn(move || {
        let tx = Mutex::new(tx);
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            if n == 0 {
                let _ = stream.write_all(b"421 busy, try later\r\n");
                continue;
            }
            let _ = smtp_session(stream, &tx);
        }
    });
    let s = Server::start_with(Config::new().raw(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"brook@example.com\"\ntls = \"none\"\n"
    )));
    s.install_action(
        "mail",
        r#"
[[action]]
name = "mail"
trigger = { variable = ["temperature"] }
type = "email"
email = { to = "ops@example.com", subject = "$VALUE$", attempts = 3, backoff = "100ms" }
"#,
    );
    let d = s.create_device("boiler");
    post_data(&s, &d.token, json!({"variable": "temperature", "value": 7}));
    let mail = mails.recv_timeout(WAIT).expect("the retried message");
    assert!(mail.data.contains("Subject: 7\r\n"), "{}", mail.data);
    let runs = settled_runs(&s, "mail", 1);
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    let attempts = runs[0]["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["ok"], false);
}

#[test]
fn a_full_delivery_queue_drops_the_oldest_and_counts_it() {
    let s = Server::start();
    // Nothing listens: every delivery waits a minute for its next attempt.
    let port = free_port();
    s.install_action(
        "forward",
        &POST_ACTION
            .replace("PORT", &port.to_string())
            .replace("attempts = 3", "attempts = 50")
            .replace("backoff = \"100ms\"", "backoff = \"1m\", max_pending = 2"),
    );
    let d = s.create_device("boiler");
    for v in 1..=4 {
        post_data(&s, &d.token, json!({"variable": "temperature", "value": v}));
    }
    let deadline = std::time::Instant::now() + WAIT;
    let runs = loop {
        let runs = s.runs("forward");
        if runs.iter().filter(|r| r["outcome"] == "skipped").count() == 2 {
            break runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two runs dropped: {runs:#?}"
        );
        thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(runs.len(), 4, "{runs:#?}");
    let pending = runs.iter().filter(|r| r["outcome"] == "pending").count();
    assert_eq!(pending, 2, "the newest two wait: {runs:#?}");
    for r in runs.iter().filter(|r| r["outcome"] == "skipped") {
        assert!(
            r["detail"]
                .as_str()
                .is_some_and(|t| t.contains("max_pending")),
            "{r}"
        );
    }
    assert_eq!(s.metric("brook_deliveries_dropped_total"), 2.0);
}

#[test]
fn a_schedule_with_a_timezone_fires() {
    let s = Server::start();
    s.install_action(
        "tick",
        r#"
[[action]]
name = "tick"
trigger = { schedule = "* * * * * *", timezone = "America/Sao_Paulo" }
type = "mqtt_publish"
mqtt_publish = { topic = "ticks", payload = "tick" }
"#,
    );
    let r = s.wait_for_runs("tick", 2);
    assert_eq!(r[0]["outcome"], "ok", "{}", r[0]);
    let all = s.admin_ok("GET", "/actions", None);
    let tick = all
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "tick").cloned())
        .unwrap_or_default();
    assert_eq!(
        tick["definition"]["trigger"]["timezone"], "America/Sao_Paulo",
        "{tick}"
    );
}

#[test]
fn an_every_interval_fires_on_the_next_whole_minute() {
    let s = Server::start();
    s.install_action(
        "minutely",
        r#"
[[action]]
name = "minutely"
trigger = { every = "1m" }
type = "mqtt_publish"
mqtt_publish = { topic = "ticks", payload = "tick" }
"#,
    );
    // At most a minute away (multiples of the interval since the epoch).
    let mut runs = Vec::new();
    wait_until("the interval to fire", Duration::from_secs(75), || {
        runs = s.runs("minutely");
        !runs.is_empty()
    });
    assert_eq!(runs[0]["outcome"], "ok", "{}", runs[0]);
    assert_eq!(runs[0]["trigger"]["kind"], "every");
    let at = runs[0]["trigger"]["detail"].as_str().unwrap_or_default();
    assert!(at.ends_with(":00.000Z"), "fired on a whole minute: {at}");
}

#[test]
fn the_live_inspector_shows_locks_and_delivery_attempts() {
    let s = Server::start();
    let endpoint = Endpoint::start(&[500, 200]);
    s.install_action(
        "forward",
        &POST_ACTION
            .replace("PORT", &endpoint.port.to_string())
            .replace(
            "type = \"http_post\"",
            "unlock = { variable = \"temperature\", op = \"<\", value = 0 }\ntype = \"http_post\"",
        ),
    );
    let d = s.create_device("boiler");
    let rx = s.watch("boiler");
    post_data(&s, &d.token, json!({"variable": "temperature", "value": 5}));
    let lock = next_event_of(&rx, "lock");
    assert_eq!(
        (lock["action"].clone(), lock["state"].clone()),
        (json!("forward"), json!("locked")),
        "{lock}"
    );
    let first = next_event_of(&rx, "delivery");
    assert_eq!(
        (first["attempt"].clone(), first["outcome"].clone()),
        (json!(1), json!("retry")),
        "{first}"
    );
    let second = next_event_of(&rx, "delivery");
    assert_eq!(
        (second["attempt"].clone(), second["outcome"].clone()),
        (json!(2), json!("ok")),
        "{second}"
    );
    post_data(
        &s,
        &d.token,
        json!({"variable": "temperature", "value": -1}),
    );
    let unlock = next_event_of(&rx, "lock");
    assert_eq!(unlock["state"], "unlocked", "{unlock}");
}
