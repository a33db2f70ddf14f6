//! MQTT over TLS (`tls_listen`, `tls_cert`, `tls_key`) with a self-signed
//! certificate for "localhost" made by rcgen in the test: rumqttc with that
//! certificate as its only root, and `mosquitto_pub --cafile`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    require_tool, run_bounded, self_signed_cert, text, tls_client_config, Config, Mqtt, Server,
    WAIT,
};
use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use tempfile::TempDir;

/// A server with TLS on, and the certificate's directory and DER.
fn tls_server() -> (Server, TempDir, Vec<u8>) {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, der) = self_signed_cert(certs.path());
    let s = Server::start_with(Config::new().tls(&cert, &key));
    (s, certs, der)
}

fn tls_options(s: &Server, client_id: &str, token: &str, ca_der: &[u8]) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "localhost", s.tls_port.expect("tls port"));
    o.set_credentials("Token", token);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls_client_config(ca_der),
    )));
    o
}

#[test]
fn rumqttc_publishes_and_receives_over_tls() {
    let (s, _certs, der) = tls_server();
    let token = s.token("d1");
    let mut tls_sub = Mqtt::connect(tls_options(&s, "tls-sub", &token, &der), 10);
    tls_sub.subscribe("tls/t", QoS::ExactlyOnce);
    let mut tcp_sub = s.mqtt("tcp-sub", &token);
    tcp_sub.subscribe("tls/t", QoS::ExactlyOnce);

    let mut tls_pub = Mqtt::connect(tls_options(&s, "tls-pub", &token, &der), 10);
    for q in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("over tls at {q:?}");
        tls_pub.publish_acked("tls/t", q, false, payload.clone());
        let p = tls_sub.recv(WAIT);
        assert_eq!((text(&p), p.qos), (payload.clone(), q), "TLS subscriber");
        let p = tcp_sub.recv(WAIT);
        assert_eq!((text(&p), p.qos), (payload, q), "plain TCP subscriber");
    }
}

#[test]
fn tls_listener_refuses_a_bad_token_too() {
    let (s, _certs, der) = tls_server();
    s.create_device("d1");
    let (_m, ack) = Mqtt::try_connect(tls_options(&s, "tls-bad", "not-a-token", &der), 10);
    let err = ack.expect_err("a wrong token over TLS must be refused");
    assert!(
        err.contains("NotAuthorized") || err.contains("BadUserNamePassword"),
        "refusal: {err}"
    );
}

#[test]
fn mosquitto_pub_over_tls_reaches_a_subscriber() {
    if require_tool("mosquitto_pub").is_none() {
        return;
    }
    let (s, certs, _der) = tls_server();
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe("tls/m", QoS::AtLeastOnce);
    let cafile = certs.path().join("server.pem");
    let out = run_bounded(
        Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &s.tls_port.unwrap().to_string()])
            .arg("--cafile")
            .arg(&cafile)
            .args([
                "-u",
                "Token",
                "-P",
                &token,
                "-t",
                "tls/m",
                "-m",
                "hello tls",
                "-q",
                "1",
            ]),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS failed: {out:?}"
    );
    assert_eq!(text(&sub.recv(WAIT)), "hello tls");
}
