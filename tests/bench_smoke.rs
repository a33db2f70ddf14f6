//! A smoke run of the load generator (`brook-bench`) against a real brook:
//! a second of QoS 1 fan-in, nothing lost, over TCP and over WebSocket
//! (`--ws`). Not a benchmark: no figure is
//! checked beyond "it ran and counted everything".

mod common;

use std::process::Command;
use std::time::Duration;

use common::{run_bounded, Server};
use serde_json::Value;

#[test]
fn bench_fanin_qos1_smoke() {
    fanin_smoke(false);
}

#[test]
fn bench_fanin_qos1_smoke_over_websocket() {
    fanin_smoke(true);
}

fn fanin_smoke(ws: bool) {
    let server = Server::start();
    let token = server.token("bench");
    let port = if ws { server.ws_port } else { server.mqtt_port }.to_string();
    let pid = server.pid().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brook-bench"));
    if ws {
        cmd.arg("--ws");
    }
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
    assert_eq!(line["received"], 4000, "{line}");
    assert_eq!(line["lost"], 0, "{line}");
    assert_eq!(line["dup"], 0, "{line}");
    assert_eq!(line["out_of_order"], 0, "{line}");
    assert_eq!(line["timed_out"], false, "{line}");
    assert!(line["rss_kb"].as_u64().is_some_and(|kb| kb > 0), "{line}");
}
