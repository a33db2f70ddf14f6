use super::client::segment;
use super::commands::run_with;
use super::*;
use crate::config::Config;
use clap::Parser;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// One request as the fake server saw it.
#[derive(Debug)]
struct Seen {
    /// `GET`, `POST`, ...
    method: String,
    /// The path with its query string, as sent.
    target: String,
    /// Header names lower-cased.
    headers: HashMap<String, String>,
    /// The body, as text.
    body: String,
}

/// A fake admin API: answers each connection with the next canned
/// `(status, body)` and reports what it was asked.
struct Fake {
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// The requests, in order.
    seen: mpsc::Receiver<Seen>,
}

impl Fake {
    fn start(answers: Vec<(u16, &str)>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let answers: Vec<(u16, String)> = answers
            .into_iter()
            .map(|(status, body)| (status, body.to_string()))
            .collect();
        let (tx, seen) = mpsc::channel();
        thread::spawn(move || {
            for (status, body) in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut parts = request_line.split_whitespace();
                let method = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        headers.insert(name.trim().to_lowercase(), value.trim().to_string());
                    }
                }
                let length: usize = headers
                    .get("content-length")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let mut raw = vec![0; length];
                if reader.read_exact(&mut raw).is_err() {
                    return;
                }
                let _ = tx.send(Seen {
                    method,
                    target,
                    headers,
                    body: String::from_utf8_lossy(&raw).into_owned(),
                });
                let mut stream = reader.into_inner();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Fake { url, seen }
    }

    /// The next request the fake server saw.
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(Duration::from_secs(5))
            .expect("a request reached the fake server")
    }
}

/// Runs `args` (after `brook`) against `url` with admin token "admin";
/// returns (exit code, stdout, stderr).
fn run(args: &[&str], url: &str, token: &str) -> (i32, String, String) {
    let cli = Cli::try_parse_from(std::iter::once("brook").chain(args.iter().copied()))
        .expect("valid command line");
    let command = cli.command_or_serve();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run_with(&command, url, token, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// A URL where nothing listens.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

const DEVICE: &str = r#"{"id":"d1","name":"my sensor","tags":[{"key":"site","value":"north"},{"key":"kind","value":"t"}],
    "params":[{"id":"p1","key":"interval","value":"60","sent":false}],"parser":true,"connected":true,
    "last_input":"2026-11-24T10:00:00.000Z","created_at":"2026-11-01T00:00:00.000Z",
    "tokens":[{"id":"t1","name":"default","permission":"full","last4":"wxyz","created_at":"2026-11-01T00:00:00.000Z","expires_at":null}]}"#;

#[test]
fn no_subcommand_is_serve() {
    let cli = Cli::try_parse_from(["brook"]).expect("valid");
    assert_eq!(cli.command, None);
    assert_eq!(cli.command_or_serve(), Command::Serve);
    let cli = Cli::try_parse_from(["brook", "--config", "x.toml"]).expect("valid");
    assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
    assert_eq!(cli.command_or_serve(), Command::Serve);
}

#[test]
fn serve_with_config() {
    let cli =
        Cli::try_parse_from(["brook", "serve", "--config", "/etc/brook.toml"]).expect("valid");
    assert_eq!(cli.command, Some(Command::Serve));
    assert_eq!(cli.config, Some(PathBuf::from("/etc/brook.toml")));
}

#[test]
fn device_add_parses_tags_and_parser() {
    let cli = Cli::try_parse_from([
        "brook",
        "device",
        "add",
        "my sensor",
        "--tag",
        "site=north",
        "--tag",
        "k=a=b",
        "--parser",
        "p.js",
        "--url",
        "http://h:1",
    ])
    .expect("valid");
    assert_eq!(cli.url.as_deref(), Some("http://h:1"));
    assert_eq!(
        cli.command,
        Some(Command::Device(DeviceCommand::Add {
            name: "my sensor".into(),
            tags: vec![
                Tag {
                    key: "site".into(),
                    value: "north".into()
                },
                Tag {
                    key: "k".into(),
                    value: "a=b".into()
                },
            ],
            parser: Some(PathBuf::from("p.js")),
            retention: None,
            max_rows: None,
        }))
    );
}

#[test]
fn tag_without_equals_is_a_usage_error() {
    let err = Cli::try_parse_from(["brook", "device", "add", "d", "--tag", "nokey"])
        .expect_err("usage error");
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(err.to_string().contains("nokey"), "{err}");
    assert!(Cli::try_parse_from(["brook", "device", "add", "d", "--tag", "=v"]).is_err());
}

#[test]
fn device_list_show_rm() {
    let cli = Cli::try_parse_from(["brook", "device", "list"]).expect("valid");
    assert_eq!(cli.command, Some(Command::Device(DeviceCommand::List)));
    let cli = Cli::try_parse_from(["brook", "device", "show", "d"]).expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Device(DeviceCommand::Show { name: "d".into() }))
    );
    let cli = Cli::try_parse_from(["brook", "device", "rm", "d", "--yes"]).expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Device(DeviceCommand::Rm {
            name: "d".into(),
            yes: true
        }))
    );
    assert!(Cli::try_parse_from(["brook", "device", "show"]).is_err());
}

#[test]
fn token_commands_parse() {
    let cli = Cli::try_parse_from([
        "brook",
        "token",
        "add",
        "d",
        "--name",
        "ci",
        "--permission",
        "read",
        "--expires",
        "30d",
    ])
    .expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Token(TokenCommand::Add {
            device: "d".into(),
            name: Some("ci".into()),
            permission: Permission::Read,
            expires: Some("30d".into()),
        }))
    );
    let cli = Cli::try_parse_from(["brook", "token", "add", "d", "--expires", "2027-01-01"])
        .expect("valid");
    assert!(matches!(
        cli.command,
        Some(Command::Token(TokenCommand::Add {
            permission: Permission::Full,
            ..
        }))
    ));
    assert!(Cli::try_parse_from(["brook", "token", "add", "d", "--permission", "admin"]).is_err());
    assert!(Cli::try_parse_from(["brook", "token", "add", "d", "--expires", "soon"]).is_err());
    let cli = Cli::try_parse_from(["brook", "token", "list", "d"]).expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Token(TokenCommand::List { device: "d".into() }))
    );
    let cli = Cli::try_parse_from(["brook", "token", "revoke", "t1"]).expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Token(TokenCommand::Revoke {
            token_id: "t1".into()
        }))
    );
}

#[test]
fn data_and_actions_parse() {
    let cli = Cli::try_parse_from([
        "brook",
        "data",
        "d",
        "--variable",
        "temperature",
        "--qty",
        "5",
        "--json",
    ])
    .expect("valid");
    assert_eq!(
        cli.command,
        Some(Command::Data {
            device: "d".into(),
            variable: Some("temperature".into()),
            qty: Some(5),
            json: true,
        })
    );
    assert!(Cli::try_parse_from(["brook", "data", "d", "--qty", "-1"]).is_err());
    let cli = Cli::try_parse_from(["brook", "actions", "check"]).expect("valid");
    let Some(Command::Actions(check)) = cli.command else {
        panic!("expected actions check");
    };
    assert_eq!(check.dir(&Config::default()), PathBuf::from("actions"));
    let cli = Cli::try_parse_from(["brook", "actions", "check", "other"]).expect("valid");
    let Some(Command::Actions(check)) = cli.command else {
        panic!("expected actions check");
    };
    assert_eq!(check.dir(&Config::default()), PathBuf::from("other"));
}

#[test]
fn expires_values() {
    assert_eq!(parse_expires("30d"), Ok("30d".into()));
    assert_eq!(parse_expires("12h"), Ok("12h".into()));
    assert_eq!(parse_expires("2027-01-01"), Ok("2027-01-01".into()));
    assert_eq!(
        parse_expires("2027-01-01T00:00:00Z"),
        Ok("2027-01-01T00:00:00Z".into())
    );
    assert!(parse_expires("0d").is_err());
    assert!(parse_expires("tomorrow").is_err());
    assert!(parse_expires("27-01-01").is_err());
}

#[test]
fn percent_encoding() {
    assert_eq!(segment("my sensor"), "my%20sensor");
    assert_eq!(segment("a/b?c#d%é"), "a%2Fb%3Fc%23d%25%C3%A9");
    assert_eq!(segment("Az09-._~"), "Az09-._~");
}

#[test]
fn no_server_answering() {
    let url = closed_port_url();
    let (code, out, err) = run(&["device", "list"], &url, "admin");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!("brook: no server answering at {url} (is `brook serve` running?)\n")
    );
}

#[test]
fn empty_admin_token() {
    let (code, out, err) = run(&["device", "list"], &closed_port_url(), "");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "brook: no admin token: set [http] admin_token in config.toml or BROOK_ADMIN_TOKEN\n"
    );
}

#[test]
fn device_rm_needs_yes() {
    // Nothing listens: the command must not try to connect.
    let (code, out, err) = run(&["device", "rm", "my sensor"], &closed_port_url(), "admin");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "brook: this deletes device my sensor and all its data; run again with --yes\n"
    );
}

#[test]
fn device_rm_with_yes() {
    let fake = Fake::start(vec![(200, r#"{"status":true,"result":"Device deleted"}"#)]);
    let (code, out, err) = run(&["device", "rm", "my sensor", "--yes"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "device my sensor deleted\n");
    let seen = fake.next();
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.target, "/devices/my%20sensor");
}

#[test]
fn device_add_prints_the_token_last() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parser = dir.path().join("parser.js");
    std::fs::write(&parser, "payload = payload;").expect("write");
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":{"device":{"id":"d1","name":"my sensor"},"token":"SECRET-TOKEN","token_id":"t1"}}"#,
    )]);
    let parser_arg = parser.display().to_string();
    let (code, out, err) = run(
        &[
            "device",
            "add",
            "my sensor",
            "--tag",
            "site=north",
            "--parser",
            &parser_arg,
        ],
        &fake.url,
        "admin",
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "device my sensor created (id d1)\ntoken id t1\nSECRET-TOKEN\n"
    );
    assert_eq!(out.lines().last(), Some("SECRET-TOKEN"));
    let seen = fake.next();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/devices");
    assert_eq!(
        seen.headers.get("authorization").map(String::as_str),
        Some("Bearer admin")
    );
    let body: Value = serde_json::from_str(&seen.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"name":"my sensor","tags":[{"key":"site","value":"north"}],"parser":"payload = payload;"})
    );
}

#[test]
fn device_add_sends_retention_and_max_rows() {
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":{"device":{"id":"d3","name":"x"},"token":"T","token_id":"t3"}}"#,
    )]);
    let (code, out, _) = run(
        &[
            "device",
            "add",
            "x",
            "--retention",
            "30d",
            "--max-rows",
            "100000",
        ],
        &fake.url,
        "admin",
    );
    assert_eq!(code, 0, "{out}");
    let body: Value = serde_json::from_str(&fake.next().body).expect("JSON body");
    assert_eq!(body["retention"], "30d");
    assert_eq!(body["max_rows"], 100000);
    for bad in [
        &["device", "add", "x", "--retention", "soon"][..],
        &["device", "add", "x", "--max-rows", "0"],
    ] {
        let args: Vec<&str> = std::iter::once("brook")
            .chain(bad.iter().copied())
            .collect();
        assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
    }
}

#[test]
fn device_add_without_parser_sends_null() {
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":{"device":{"id":"d2","name":"x"},"token":"T","token_id":"t2"}}"#,
    )]);
    let (code, out, _) = run(&["device", "add", "x"], &fake.url, "admin");
    assert_eq!(code, 0);
    assert_eq!(out.lines().last(), Some("T"));
    let body: Value = serde_json::from_str(&fake.next().body).expect("JSON body");
    assert_eq!(body, json!({"name":"x","tags":[],"parser":null}));
}

#[test]
fn device_add_unreadable_parser_names_the_file() {
    let (code, out, err) = run(
        &["device", "add", "x", "--parser", "/nonexistent/p.js"],
        &closed_port_url(),
        "admin",
    );
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.starts_with("brook: cannot read parser /nonexistent/p.js: "),
        "{err}"
    );
}

#[test]
fn server_message_is_shown() {
    let fake = Fake::start(vec![(
        409,
        r#"{"status":false,"message":"device x already exists"}"#,
    )]);
    let (code, out, err) = run(&["device", "add", "x"], &fake.url, "admin");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(err, "brook: device x already exists\n");
}

#[test]
fn unauthorized_message_is_shown() {
    let fake = Fake::start(vec![(
        401,
        r#"{"status":false,"message":"invalid admin token"}"#,
    )]);
    let (code, _, err) = run(&["token", "list", "x"], &fake.url, "wrong");
    assert_eq!(code, 1);
    assert_eq!(err, "brook: invalid admin token\n");
    assert_eq!(
        fake.next().headers.get("authorization").map(String::as_str),
        Some("Bearer wrong")
    );
}

#[test]
fn non_json_answer_is_one_line() {
    let fake = Fake::start(vec![(404, "")]);
    let (code, _, err) = run(&["device", "list"], &fake.url, "admin");
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!(
            "brook: unexpected answer from {} (HTTP 404): empty body\n",
            fake.url
        )
    );
}

#[test]
fn device_list_table() {
    let answer = format!(
        r#"{{"status":true,"result":[{DEVICE},{{"id":"d2","name":"b","tags":[],"params":[],"parser":false,"connected":false,"last_input":null,"created_at":"x"}}]}}"#
    );
    let fake = Fake::start(vec![(200, answer.as_str())]);
    let (code, out, err) = run(&["device", "list"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "NAME       ID  CONNECTED  LAST INPUT                TAGS\n\
         my sensor  d1  yes        2026-11-24T10:00:00.000Z  site=north,kind=t\n\
         b          d2  no         never\n"
    );
    let seen = fake.next();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/devices")
    );
}

#[test]
fn bridge_list_table() {
    let answer = r#"{"status":true,"result":[{"name":"cloud","url":"mqtts://b:8883","connected":false,"queued":12,"sent":3,"received":1,"dropped":0,"last_error":"b:8883: not authorized (CONNACK 0x05)"},{"name":"nats","url":"mqtt://n:1883","connected":true,"queued":0,"sent":9,"received":0,"dropped":2,"last_error":null}]}"#;
    let fake = Fake::start(vec![(200, answer)]);
    let (code, out, err) = run(&["bridge", "list"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "NAME   URL             CONNECTED  QUEUED  SENT  RECEIVED  DROPPED  LAST ERROR\n\
         cloud  mqtts://b:8883  no         12      3     1         0        b:8883: not authorized (CONNACK 0x05)\n\
         nats   mqtt://n:1883   yes        0       9     0         2        -\n"
    );
    let seen = fake.next();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("GET", "/bridges")
    );
    let fake = Fake::start(vec![(200, r#"{"status":true,"result":[]}"#)]);
    let (_, out, _) = run(&["bridge", "list"], &fake.url, "admin");
    assert_eq!(out, "no bridges configured\n");
}

#[test]
fn device_show_never_prints_a_full_token() {
    let answer = format!(r#"{{"status":true,"result":{DEVICE}}}"#);
    let fake = Fake::start(vec![(200, answer.as_str())]);
    let (code, out, err) = run(&["device", "show", "my sensor"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(fake.next().target, "/devices/my%20sensor");
    let expected = "\
device:     my sensor
id:         d1
status:     connected
last input: 2026-11-24T10:00:00.000Z
created:    2026-11-01T00:00:00.000Z
parser:     yes
tags:       site=north,kind=t
retention:  default ([data] retention)
max rows:   no cap
params:
  KEY       VALUE  SENT      ID
  interval  60     not sent  p1
tokens:
  ID  NAME     PERMISSION  LAST4    EXPIRES
  t1  default  full        ...wxyz  never
";
    assert_eq!(out, expected);
}

#[test]
fn token_add_prints_the_token_last() {
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":{"id":"t9","token":"NEW-SECRET","name":"ci","permission":"read","last4":"CRET","expires_at":"2027-01-01T00:00:00.000Z"}}"#,
    )]);
    let (code, out, err) = run(
        &[
            "token",
            "add",
            "my sensor",
            "--name",
            "ci",
            "--permission",
            "read",
            "--expires",
            "2027-01-01",
        ],
        &fake.url,
        "admin",
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "token t9 created for device my sensor (name ci, permission read, expires 2027-01-01T00:00:00.000Z)\nNEW-SECRET\n"
    );
    let seen = fake.next();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.target, "/devices/my%20sensor/tokens");
    let body: Value = serde_json::from_str(&seen.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"name":"ci","permission":"read","expires":"2027-01-01"})
    );
}

#[test]
fn token_add_defaults() {
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":{"id":"t9","token":"S","name":null,"permission":"full","last4":"S","expires_at":null}}"#,
    )]);
    let (code, out, _) = run(&["token", "add", "d"], &fake.url, "admin");
    assert_eq!(code, 0);
    assert_eq!(out.lines().last(), Some("S"));
    let body: Value = serde_json::from_str(&fake.next().body).expect("JSON body");
    assert_eq!(
        body,
        json!({"name":null,"permission":"full","expires":null})
    );
}

#[test]
fn token_list_table() {
    let fake = Fake::start(vec![(
        200,
        r#"{"status":true,"result":[{"id":"t1","name":"default","permission":"full","last4":"wxyz","created_at":"c","expires_at":null},{"id":"t2","name":"ci","permission":"write","last4":"abcd","created_at":"c","expires_at":"2027-01-01T00:00:00.000Z"}]}"#,
    )]);
    let (code, out, err) = run(&["token", "list", "d"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "ID  NAME     PERMISSION  LAST4    EXPIRES\n\
         t1  default  full        ...wxyz  never\n\
         t2  ci       write       ...abcd  2027-01-01T00:00:00.000Z\n"
    );
    assert_eq!(fake.next().target, "/devices/d/tokens");
}

#[test]
fn token_revoke() {
    let fake = Fake::start(vec![(200, r#"{"status":true,"result":"revoked"}"#)]);
    let (code, out, err) = run(&["token", "revoke", "t1"], &fake.url, "admin");
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "token t1 revoked\n");
    let seen = fake.next();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("DELETE", "/tokens/t1")
    );
}

const DATA: &str = r#"{"status":true,"result":[
    {"id":"1","variable":"temperature","value":21.5,"unit":"°C","time":"2026-11-24T10:00:00.000Z"},
    {"id":"2","variable":"label","value":"hello world","time":"2026-11-24T11:00:00.000Z"},
    {"id":"3","variable":"on","value":true,"time":"2026-11-24T09:00:00.000Z"}]}"#;

#[test]
fn data_table_newest_first() {
    let fake = Fake::start(vec![(200, DATA)]);
    let (code, out, err) = run(
        &[
            "data",
            "my sensor",
            "--variable",
            "temp erature",
            "--qty",
            "3",
        ],
        &fake.url,
        "admin",
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "TIME                      VARIABLE     VALUE        UNIT\n\
         2026-11-24T11:00:00.000Z  label        hello world\n\
         2026-11-24T10:00:00.000Z  temperature  21.5         °C\n\
         2026-11-24T09:00:00.000Z  on           true\n"
    );
    let seen = fake.next();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/devices/my%20sensor/data?variable=temp%20erature&qty=3"
    );
}

#[test]
fn data_json() {
    let fake = Fake::start(vec![(200, DATA)]);
    let (code, out, _) = run(&["data", "d", "--json"], &fake.url, "admin");
    assert_eq!(code, 0);
    let items: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(items.as_array().map(Vec::len), Some(3));
    assert_eq!(items[0]["variable"], "temperature");
    assert_eq!(fake.next().target, "/devices/d/data");
}

#[test]
fn trailing_slash_in_url() {
    let fake = Fake::start(vec![(200, r#"{"status":true,"result":[]}"#)]);
    let url = format!("{}/", fake.url);
    let (code, out, _) = run(&["device", "list"], &url, "admin");
    assert_eq!(code, 0);
    assert_eq!(out, "NAME  ID  CONNECTED  LAST INPUT  TAGS\n");
    assert_eq!(fake.next().target, "/devices");
}

#[test]
fn serve_is_not_management() {
    let (code, _, err) = run(&["serve"], &closed_port_url(), "admin");
    assert_eq!(code, 1);
    assert_eq!(err, "brook: not a management command\n");
}
