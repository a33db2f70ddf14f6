//! Interoperability with Mosquitto's command-line clients: what
//! `mosquitto_pub` sends at QoS 0, 1 and 2 reaches `mosquitto_sub`, a
//! retained message reaches a later `mosquitto_sub`, and a wrong password
//! makes `mosquitto_pub` fail.
//!
//! Without the tools these tests print a skip line, or fail under CI.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{require_tool, run_bounded, ChildGuard, Server};
use rumqttc::QoS;

const TOOL: Duration = Duration::from_secs(20);

/// Starts `mosquitto_sub -v` on `topic`, receiving `count` messages (it gives
/// up after 20 s by itself); its stdout lines come through the channel.
fn spawn_sub(s: &Server, token: &str, topic: &str, count: usize) -> (ChildGuard, Receiver<String>) {
    let mut child = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &s.mqtt_port.to_string(),
            "-u",
            "Token",
            "-P",
            token,
        ])
        .args([
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            &count.to_string(),
            "-v",
            "-W",
            "20",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn mosquitto_sub");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    (ChildGuard(Some(child)), rx)
}

fn recv_line(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(TOOL)
        .unwrap_or_else(|_| panic!("mosquitto_sub printed no line for {what} within {TOOL:?}"))
}

fn pub_args(s: &Server, token: &str) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &s.mqtt_port.to_string(),
        "-u",
        "Token",
        "-P",
        token,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn wait_exit(guard: &mut ChildGuard, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + TOOL;
    loop {
        if let Some(s) = guard.child().try_wait().expect("try_wait") {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {TOOL:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn mosquitto_sub_receives_what_mosquitto_pub_sends_at_each_qos() {
    if require_tool("mosquitto_pub").is_none() || require_tool("mosquitto_sub").is_none() {
        return;
    }
    let s = Server::start();
    let token = s.token("d1");
    // A retained probe: mosquitto_sub prints it as soon as its SUBSCRIBE is
    // in place, so the test knows when to start publishing.
    let mut probe = s.mqtt("probe", &token);
    probe.publish_acked("x/ready", QoS::AtLeastOnce, true, "ready");

    let (mut sub, lines) = spawn_sub(&s, &token, "x/#", 4);
    assert_eq!(recv_line(&lines, "the retained probe"), "x/ready ready");

    let mut expected = Vec::new();
    for q in 0..3 {
        let msg = format!("hi{q}");
        let out = run_bounded(
            Command::new("mosquitto_pub")
                .args(pub_args(&s, &token))
                .args(["-t", "x/y", "-m", &msg, "-q", &q.to_string()]),
            TOOL,
        );
        assert!(out.status.success(), "mosquitto_pub -q {q} failed: {out:?}");
        expected.push(format!("x/y {msg}"));
    }
    let mut got: Vec<String> = (0..3)
        .map(|i| recv_line(&lines, &format!("message {i}")))
        .collect();
    got.sort();
    assert_eq!(got, expected, "what mosquitto_sub printed");
    let status = wait_exit(&mut sub, "mosquitto_sub -C 4");
    assert!(status.success(), "mosquitto_sub exit status {status}");
}

#[test]
fn mosquitto_sub_gets_a_retained_message_from_mosquitto_pub() {
    if require_tool("mosquitto_pub").is_none() || require_tool("mosquitto_sub").is_none() {
        return;
    }
    let s = Server::start();
    let token = s.token("d1");
    let out = run_bounded(
        Command::new("mosquitto_pub")
            .args(pub_args(&s, &token))
            .args(["-r", "-q", "1", "-t", "x/r", "-m", "kept"]),
        TOOL,
    );
    assert!(out.status.success(), "mosquitto_pub -r failed: {out:?}");
    let (mut sub, lines) = spawn_sub(&s, &token, "x/r", 1);
    assert_eq!(recv_line(&lines, "the retained message"), "x/r kept");
    let status = wait_exit(&mut sub, "mosquitto_sub -C 1");
    assert!(status.success(), "mosquitto_sub exit status {status}");
}

#[test]
fn mosquitto_pub_with_a_wrong_token_fails() {
    if require_tool("mosquitto_pub").is_none() {
        return;
    }
    let s = Server::start();
    let token = s.token("d1");
    let out = run_bounded(
        Command::new("mosquitto_pub")
            .args(pub_args(&s, &format!("{token}-wrong")))
            .args(["-t", "x/y", "-m", "no", "-q", "1"]),
        TOOL,
    );
    assert!(
        !out.status.success(),
        "mosquitto_pub with a wrong -P must exit non-zero: {out:?}"
    );
}
