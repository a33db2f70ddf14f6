//! `/metrics` and `/health`: what an operator graphs.

mod common;

use std::collections::HashMap;

use common::*;
use rumqttc::QoS;

/// Parses Prometheus text: every sample line is `name{labels} value`; HELP and
/// TYPE comments come before their samples.
fn scrape(s: &Server) -> HashMap<String, f64> {
    let text = ureq::get(&s.http_url("/metrics"))
        .call()
        .expect("GET /metrics")
        .into_body()
        .read_to_string()
        .expect("body");
    let mut samples = HashMap::new();
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("a metric name");
            let kind = parts.next().expect("a metric type");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let name = key.split('{').next().unwrap_or(key);
        assert!(typed.contains(name), "sample before its TYPE: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(key.to_string(), v);
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text_and_move_when_messages_flow() {
    let s = Server::start();
    let before = scrape(&s);
    assert_eq!(before["brook_clients_connected"], 0.0);
    let d = s.create_device("d1");
    let mut sub = s.mqtt("sub", &d.token);
    sub.subscribe("m/#", QoS::AtLeastOnce);
    let mut publisher = s.mqtt("pub", &d.token);
    for i in 0..10 {
        publisher.publish_acked("m/x", QoS::AtLeastOnce, false, format!("{i}"));
    }
    for _ in 0..10 {
        sub.recv(WAIT);
    }
    let after = scrape(&s);
    assert_eq!(after["brook_clients_connected"], 2.0);
    assert!(
        after["brook_messages_received_total"] >= before["brook_messages_received_total"] + 10.0
    );
    assert!(after["brook_messages_sent_total"] >= before["brook_messages_sent_total"] + 10.0);
    assert!(after["brook_bytes_received_total"] > before["brook_bytes_received_total"]);
    assert!(after.contains_key("brook_messages_dropped_total{reason=\"acl\"}"));
    publisher.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"a","value":1},{"variable":"b","value":2}]"#,
    );
    let stored = scrape(&s);
    assert_eq!(
        stored["brook_data_items_stored_total"],
        after["brook_data_items_stored_total"] + 2.0,
        "the two items the acknowledged publish stored"
    );
    assert!(after.contains_key("brook_action_runs_total{outcome=\"ok\"}"));
}

#[test]
fn health_answers_ok() {
    let s = Server::start();
    let (status, body) = s.http_request("GET", "/health", None, None);
    assert_eq!(status, 200);
    assert_eq!(body["result"], "ok");
}
