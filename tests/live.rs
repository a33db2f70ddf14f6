//! The Live Inspector: server-sent events of a device's traffic.

mod common;

use std::sync::mpsc;

use common::*;
use rumqttc::QoS;
use serde_json::Value;

fn next_event(rx: &mpsc::Receiver<Value>) -> Value {
    rx.recv_timeout(WAIT).expect("a Live Inspector event")
}

#[test]
fn an_sse_client_sees_connect_publish_and_disconnect_in_order() {
    let s = Server::start();
    let d = s.create_device("d1");
    // Returns once the stream is live: its "watching" event has come.
    let events = s.watch("d1");

    let mut c = s.mqtt("inspected", &d.token);
    c.publish_acked("sensors/t1", QoS::AtLeastOnce, false, "21.5");
    c.disconnect();

    let connect = next_event(&events);
    assert_eq!(connect["type"], "connect");
    assert_eq!(connect["client_id"], "inspected");
    assert_eq!(
        connect["token"],
        format!("…{}", &d.token[d.token.len() - 4..])
    );
    let publish = next_event(&events);
    assert_eq!(publish["type"], "publish");
    assert_eq!(publish["topic"], "sensors/t1");
    assert_eq!(publish["qos"], 1);
    assert_eq!(publish["payload"], "21.5");
    let disconnect = next_event(&events);
    assert_eq!(disconnect["type"], "disconnect");
    assert_eq!(disconnect["reason"], "client disconnected");
}

#[test]
fn the_live_stream_needs_the_admin_token() {
    let s = Server::start();
    s.create_device("d1");
    let (status, body) = s.http_request("GET", "/devices/d1/live", None, None);
    assert_eq!(status, 401);
    assert_eq!(body["status"], false);
}
