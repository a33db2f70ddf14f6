//! A smoke run of the load generator (`brook-bench`) against a real brook:
//! a second of QoS 1 fan-in, nothing lost, over TCP and over WebSocket
//! (`--ws`), in MQTT 3.1.1 and in MQTT 5 (`--mqtt 5`); and a short QoS 1
//! latency run in MQTT 5; a QoS 1 fan-out to 20 subscribers, every one
//! getting every message; and retained-topic memory, every topic retained
//! and counted back by a new subscriber. Not a benchmark: no figure is
//! checked beyond "it ran and counted everything".

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_bounded, Server};
use serde_json::Value;

#[test]
fn bench_fanin_qos1_smoke() {
    fanin_smoke(false, "3.1.1");
}

#[test]
fn bench_fanin_qos1_smoke_over_websocket() {
    fanin_smoke(true, "3.1.1");
}

#[test]
fn bench_fanin_qos1_smoke_mqtt5() {
    fanin_smoke(false, "5");
}

#[test]
fn bench_fanin_qos1_smoke_mqtt5_over_websocket() {
    fanin_smoke(true, "5");
}

/// The latency scenario's publisher keeps a window of 65,000, more than
/// brook's receive maximum (256): with MQTT 5 it keeps to the CONNACK's.
#[test]
fn bench_latency_qos1_smoke_mqtt5() {
    let server = Server::start();
    let token = server.token("bench");
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_brook-bench")).args([
            "--mqtt",
            "5",
            "--port",
            &server.mqtt_port.to_string(),
            "--username",
            "Token",
            "--password",
            &token,
            "--broker",
            "brook-v5",
            "--max-seconds",
            "20",
            "latency",
            "--qos",
            "1",
            "--rate",
            "2000",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "brook-bench failed: {}", out.stderr);
    let line: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {}", out.stdout));
    assert_eq!(line["scenario"], "latency");
    assert_eq!(line["mqtt"], "5", "{line}");
    assert_eq!(line["lost"], 0, "{line}");
    assert_eq!(line["refused"], 0, "{line}");
    assert_eq!(line["timed_out"], false, "{line}");
    assert_eq!(line["samples"], 2000, "{line}");
    assert!(line["p50_us"].as_u64().is_some(), "{line}");
}

fn fanin_smoke(ws: bool, mqtt: &str) {
    let server = Server::start();
    let token = server.token("bench");
    let port = if ws { server.ws_port } else { server.mqtt_port }.to_string();
    let pid = server.pid().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook-bench"));
    if ws {
        cmd.arg("--ws");
    }
    cmd.args(["--mqtt", mqtt]);
    let out = run_bounded(
        cmd.args([
            "--port",
            &port,
            "--username",
            "Token",
            "--password",
            &token,
            "--broker",
            "brook",
            "--broker-pid",
            &pid,
            "--max-seconds",
            "20",
            "fanin",
            "--qos",
            "1",
            "--publishers",
            "2",
            "--messages",
            "2000",
        ]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "brook-bench failed: {}", out.stderr);
    let line: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {}", out.stdout));
    assert_eq!(line["scenario"], "fanin");
    assert_eq!(line["mqtt"], mqtt, "{line}");
    assert_eq!(line["refused"], 0, "{line}");
    assert_eq!(line["received"], 4000, "{line}");
    assert_eq!(line["lost"], 0, "{line}");
    assert_eq!(line["dup"], 0, "{line}");
    assert_eq!(line["out_of_order"], 0, "{line}");
    assert_eq!(line["timed_out"], false, "{line}");
    assert!(line["rss_kb"].as_u64().is_some_and(|kb| kb > 0), "{line}");
}

/// Runs brook-bench against `server` with `args` after the connection
/// flags; returns its one JSON line.
fn bench_line(server: &Server, args: &[&str]) -> Value {
    let token = server.token("bench");
    let port = server.mqtt_port.to_string();
    let pid = server.pid().to_string();
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_brook-bench"))
            .args([
                "--port",
                &port,
                "--username",
                "Token",
                "--password",
                &token,
                "--broker",
                "brook",
                "--broker-pid",
                &pid,
                "--round",
                "2",
                "--max-seconds",
                "40",
            ])
            .args(args),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "brook-bench failed: {}", out.stderr);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {}", out.stdout))
}

/// QoS 1 fan-out: each of the 20 subscribers gets each of the 500
/// messages once, in order; the line carries the round it was given.
#[test]
fn bench_fanout_qos1_smoke() {
    let server = Server::start();
    let line = bench_line(
        &server,
        &[
            "fanout",
            "--qos",
            "1",
            "--subscribers",
            "20",
            "--messages",
            "500",
            "--window",
            "50",
        ],
    );
    assert_eq!(line["scenario"], "fanout", "{line}");
    assert_eq!(line["round"], 2, "{line}");
    assert_eq!(line["expected"], 10_000, "{line}");
    assert_eq!(line["received"], 10_000, "{line}");
    assert_eq!(line["lost"], 0, "{line}");
    assert_eq!(line["min_received"], 500, "{line}");
    assert_eq!(line["max_received"], 500, "{line}");
    assert_eq!(line["complete_subscribers"], 20, "{line}");
    assert_eq!(line["dup"], 0, "{line}");
    assert_eq!(line["out_of_order"], 0, "{line}");
    assert_eq!(line["refused"], 0, "{line}");
    assert_eq!(line["timed_out"], false, "{line}");
    assert!(
        line["deliveries_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{line}"
    );
}

/// Retained memory: 2,000 retained topics, all acknowledged, and a new
/// subscriber to their prefix gets each one back, flagged retained.
#[test]
fn bench_retained_smoke() {
    let server = Server::start();
    let line = bench_line(
        &server,
        &["retained", "--topics", "2000", "--settle", "0.2"],
    );
    assert_eq!(line["scenario"], "retained", "{line}");
    assert_eq!(line["topics"], 2000, "{line}");
    assert_eq!(line["retained_received"], 2000, "{line}");
    assert_eq!(line["missing"], 0, "{line}");
    assert_eq!(line["dup"], 0, "{line}");
    assert_eq!(line["not_counted"], 0, "{line}");
    assert_eq!(line["timed_out"], false, "{line}");
    assert!(
        line["rss_retained_kb"].as_u64().is_some_and(|kb| kb > 0),
        "{line}"
    );
    assert!(line["bytes_per_topic"].as_f64().is_some(), "{line}");
}
