//! MQTT over WebSocket (`ws_listen`, `wss_listen`) against the real server:
//! a tokio-tungstenite client sends hand-built MQTT 3.1.1 packets in binary
//! messages and reads the broker's from the messages it gets back, so the
//! tests can split a packet over messages (and over continuation frames),
//! put two in one message, send a text message or an oversized frame, and
//! see the close code. The handshake's refusals (404, 400, 403), the Live
//! Inspector's transport and peer (with `X-Forwarded-For` from a trusted
//! proxy, and without), interop with a TCP client on the same topic, and a
//! revoked token. MQTT 5 over a WebSocket is the same session as over TCP:
//! raw v5 packets (tests/common/v5.rs) get a v5 CONNACK with its properties
//! and exchange messages with a 3.1.1 client on TCP. Then real clients over
//! ws and wss, both protocol versions: MQTT.js from Node and paho-mqtt with
//! `transport="websockets"`, pinned in `tests/ws-clients/`.

mod common;

use std::time::{Duration, Instant};

use common::install;
use common::raw::{self, ConnectOpts, Packet};
use common::v5::{prop, puback5, publish5, rc, sub_opts, subscribe5, Connect5, Props};
use common::*;
use rumqttc::QoS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// A current-thread runtime for one test's client side; the harness's own
/// calls (admin API, inspector) stay outside it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The upgrade request to `ws://127.0.0.1:PORT{path}` with `headers`.
fn request(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("{scheme}://{host}:{port}{path}")
        .into_client_request()
        .expect("a request");
    for (k, v) in headers {
        req.headers_mut()
            .append(*k, HeaderValue::from_str(v).expect("a header value"));
    }
    req
}

/// A WebSocket client that speaks MQTT bytes.
struct Ws<S> {
    ws: WebSocketStream<S>,
    /// Bytes received and not yet a whole packet.
    buf: Vec<u8>,
    /// What the server chose from the offered subprotocols.
    protocol: Option<String>,
}

/// Opens `ws://127.0.0.1:PORT/mqtt` offering the subprotocol `mqtt`.
async fn ws_open(port: u16) -> Ws<TcpStream> {
    ws_open_with(port, "/mqtt", &[("sec-websocket-protocol", "mqtt")])
        .await
        .expect("the upgrade")
}

async fn ws_open_with(
    port: u16,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Ws<TcpStream>, WsError> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to ws_listen");
    Ws::handshake(request("ws", "127.0.0.1", port, path, headers), tcp).await
}

impl<S: AsyncRead + AsyncWrite + Unpin> Ws<S> {
    async fn handshake(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
        stream: S,
    ) -> Result<Ws<S>, WsError> {
        let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
            .await
            .expect("the handshake within WAIT")?;
        let protocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().expect("ASCII").to_string());
        Ok(Ws {
            ws,
            buf: Vec::new(),
            protocol,
        })
    }

    async fn send_message(&mut self, m: Message) {
        use futures::SinkExt;
        tokio::time::timeout(WAIT, self.ws.send(m))
            .await
            .expect("a send within WAIT")
            .expect("a send");
    }

    /// Sends `bytes` as one binary message.
    async fn send(&mut self, bytes: &[u8]) {
        self.send_message(Message::Binary(bytes.to_vec().into()))
            .await;
    }

    /// The next message from the server (pongs included); None at the end.
    async fn next_message(&mut self) -> Option<Result<Message, WsError>> {
        use futures::StreamExt;
        tokio::time::timeout(WAIT, self.ws.next())
            .await
            .expect("a message (or the end) within WAIT")
    }

    /// The next MQTT packet, from however many binary messages it takes.
    async fn packet(&mut self) -> Packet {
        loop {
            if let Some((p, used)) = decode(&self.buf) {
                self.buf.drain(..used);
                return p;
            }
            match self.next_message().await {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("waiting for an MQTT packet, got {other:?}"),
            }
        }
    }

    async fn expect_kind(&mut self, kind: u8, what: &str) -> Packet {
        let p = self.packet().await;
        assert_eq!(p.kind, kind, "{what}: got {p:?}");
        p
    }

    /// CONNECT with `token`; asserts CONNACK 0.
    async fn login(&mut self, client_id: &str, token: &str) {
        self.send(&raw::connect_packet(&ConnectOpts::new(
            client_id,
            Some(token),
        )))
        .await;
        let ack = self.expect_kind(raw::CONNACK, "CONNACK").await;
        assert_eq!(ack.body, vec![0, 0], "CONNACK accepted");
    }

    /// Waits for the server's close frame and the end; returns its code.
    async fn expect_close(&mut self, what: &str) -> Option<CloseCode> {
        loop {
            match self.next_message().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => panic!("{what}: the connection failed instead of closing: {e}"),
                None => panic!("{what}: the connection ended without a close frame"),
                Some(Ok(other)) => panic!("{what}: got {other:?}"),
            }
        }
    }
}

/// One MQTT packet from the front of `buf`, and how many bytes it took.
fn decode(buf: &[u8]) -> Option<(Packet, usize)> {
    let first = *buf.first()?;
    let (mut len, mut mult, mut at) = (0usize, 1usize, 1usize);
    loop {
        let b = *buf.get(at)?;
        len += usize::from(b & 0x7f) * mult;
        mult *= 128;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = buf.get(at..at + len)?.to_vec();
    Some((
        Packet {
            kind: first >> 4,
            flags: first & 0x0f,
            body,
        },
        at + len,
    ))
}

/// Subscribes to `filter` at QoS 1 and waits for the SUBACK.
async fn subscribe<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, filter: &str) {
    ws.send(&raw::subscribe_packet(1, &[(filter, 1)])).await;
    let ack = ws.expect_kind(raw::SUBACK, "SUBACK").await;
    assert_eq!(ack.body, vec![0, 1, 1], "granted QoS 1");
}

#[test]
fn a_ws_client_and_a_tcp_client_share_a_topic() {
    let s = Server::start();
    let d = s.create_device("dash");
    let events = s.watch("dash");
    let mut tcp = s.mqtt("tcp-side", &d.token);
    tcp.subscribe("room/+", QoS::AtLeastOnce);

    let rt = runtime();
    let mut ws = rt.block_on(async {
        let mut ws = ws_open(s.ws_port).await;
        assert_eq!(
            ws.protocol.as_deref(),
            Some("mqtt"),
            "the subprotocol offered"
        );
        ws.login("ws-side", &d.token).await;
        subscribe(&mut ws, "room/#").await;
        // A QoS 1 publish from the browser side reaches both.
        ws.send(&raw::publish_packet(
            "room/1", b"from ws", 1, false, false, 7,
        ))
        .await;
        // Its PUBACK and its own delivery, in either order.
        let (mut acked, mut delivered) = (false, false);
        while !(acked && delivered) {
            let p = ws.packet().await;
            match p.kind {
                raw::PUBACK => {
                    assert_eq!(p.pkid(), 7);
                    acked = true;
                }
                raw::PUBLISH => {
                    let p = p.publish();
                    assert_eq!(
                        (p.topic.as_str(), p.payload.as_slice()),
                        ("room/1", &b"from ws"[..])
                    );
                    ws.send(&raw::puback_packet(p.pkid)).await;
                    delivered = true;
                }
                other => panic!("unexpected packet type {other}"),
            }
        }
        ws
    });
    let p = tcp.recv(WAIT);
    assert_eq!((p.topic.as_str(), text(&p).as_str()), ("room/1", "from ws"));

    tcp.publish("room/2", QoS::AtLeastOnce, false, "from tcp");
    rt.block_on(async {
        let p = ws
            .expect_kind(raw::PUBLISH, "the TCP client's publish")
            .await
            .publish();
        assert_eq!(
            (p.topic.as_str(), p.payload.as_slice()),
            ("room/2", &b"from tcp"[..])
        );
        ws.send(&raw::puback_packet(p.pkid)).await;
        // Ping and pong, the MQTT ones inside the WebSocket ones.
        ws.send_message(Message::Ping(b"hi".to_vec().into())).await;
        ws.send(&raw::pingreq_packet()).await;
        ws.expect_kind(raw::PINGRESP, "PINGRESP").await;
        ws.send(&raw::disconnect_packet()).await;
        assert_eq!(
            ws.expect_close("after DISCONNECT").await,
            Some(CloseCode::Normal)
        );
    });

    // The inspector tells the transports apart.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = next_event_of(&events, "connect");
        seen.push((
            e["client_id"].as_str().unwrap_or_default().to_string(),
            e["transport"].as_str().unwrap_or_default().to_string(),
            e["peer"].as_str().unwrap_or_default().to_string(),
        ));
    }
    seen.sort();
    assert_eq!(seen[0].0, "tcp-side");
    assert_eq!(seen[0].1, "tcp");
    assert_eq!(seen[1].0, "ws-side");
    assert_eq!(seen[1].1, "ws");
    assert!(
        seen[1].2.starts_with("127.0.0.1:"),
        "the socket's peer: {seen:?}"
    );
}

#[test]
fn mqtt_5_over_ws_gets_a_v5_connack_and_talks_to_a_3_1_1_client_on_tcp() {
    let s = Server::start_with(
        Config::new()
            .mqtt("receive_maximum", "20")
            .mqtt("max_packet_size", "65536"),
    );
    let d = s.create_device("dash5");
    let events = s.watch("dash5");
    let mut tcp = s.mqtt("tcp-311", &d.token);
    tcp.subscribe("room5/+", QoS::AtLeastOnce);

    let rt = runtime();
    let mut ws = rt.block_on(async {
        // `mqtt` is the subprotocol MQTT 5's WebSocket binding names (§6).
        let mut ws = ws_open(s.ws_port).await;
        ws.send(&Connect5::new("ws-v5", Some(&d.token)).encode())
            .await;
        let ack = ws.expect_kind(raw::CONNACK, "CONNACK").await.connack5();
        assert_eq!(ack.code, rc::SUCCESS, "CONNACK reason 0: {ack:?}");
        assert!(!ack.session_present, "a clean start: {ack:?}");
        let p = &ack.props;
        assert_eq!(p.u16_of(prop::RECEIVE_MAXIMUM), Some(20), "{ack:?}");
        assert_eq!(p.u16_of(prop::TOPIC_ALIAS_MAXIMUM), Some(10), "{ack:?}");
        assert_eq!(p.u32_of(prop::MAXIMUM_PACKET_SIZE), Some(65536), "{ack:?}");
        // Absent means 2 (§3.2.2.3.4); absent features are available.
        assert_eq!(p.byte_of(prop::MAXIMUM_QOS).unwrap_or(2), 2, "{ack:?}");
        for feature in [
            prop::RETAIN_AVAILABLE,
            prop::WILDCARD_AVAILABLE,
            prop::SUBSCRIPTION_ID_AVAILABLE,
            prop::SHARED_AVAILABLE,
        ] {
            assert_eq!(
                p.byte_of(feature).unwrap_or(1),
                1,
                "0x{feature:02X}: {ack:?}"
            );
        }
        assert!(
            !p.has(prop::ASSIGNED_CLIENT_ID),
            "the client chose its id: {ack:?}"
        );

        ws.send(&subscribe5(
            1,
            Some(5),
            &[("room5/#", sub_opts(1, false, false, 0))],
        ))
        .await;
        let sub = ws.expect_kind(raw::SUBACK, "SUBACK").await.suback5();
        assert_eq!((sub.pkid, sub.codes), (1, vec![1]), "granted QoS 1");

        // A v5 publish with properties reaches both sides; its own delivery
        // keeps them and adds the subscription identifier.
        let props = Props::new()
            .user("origin", "ws")
            .str(prop::CONTENT_TYPE, "text/plain");
        ws.send(&publish5("room5/1", b"from ws v5", 1, false, 7, &props))
            .await;
        let (mut acked, mut delivered) = (false, false);
        while !(acked && delivered) {
            let p = ws.packet().await;
            match p.kind {
                raw::PUBACK => {
                    let a = p.puback5();
                    assert_eq!((a.pkid, a.reason), (7, rc::SUCCESS), "{a:?}");
                    acked = true;
                }
                raw::PUBLISH => {
                    let p = p.publish5();
                    assert_eq!(
                        (p.topic.as_str(), p.text().as_str()),
                        ("room5/1", "from ws v5")
                    );
                    assert_eq!(
                        p.props.users(),
                        vec![("origin".to_string(), "ws".to_string())],
                        "the user property intact: {p:?}"
                    );
                    assert_eq!(p.props.str_of(prop::CONTENT_TYPE), Some("text/plain"));
                    assert_eq!(p.props.sub_ids(), vec![5], "{p:?}");
                    ws.send(&puback5(p.pkid)).await;
                    delivered = true;
                }
                other => panic!("unexpected packet type {other}"),
            }
        }
        ws
    });
    let p = tcp.recv(WAIT);
    assert_eq!(
        (p.topic.as_str(), text(&p).as_str()),
        ("room5/1", "from ws v5"),
        "the 3.1.1 client gets the payload, without properties"
    );

    tcp.publish("room5/2", QoS::AtLeastOnce, false, "from tcp 3.1.1");
    rt.block_on(async {
        let p = ws
            .expect_kind(raw::PUBLISH, "the TCP client's publish")
            .await
            .publish5();
        assert_eq!(
            (p.topic.as_str(), p.text().as_str(), p.qos),
            ("room5/2", "from tcp 3.1.1", 1)
        );
        assert!(
            p.props.users().is_empty(),
            "a 3.1.1 publish has none: {p:?}"
        );
        ws.send(&puback5(p.pkid)).await;
        ws.send(&common::v5::disconnect5(rc::SUCCESS, &Props::new()))
            .await;
        assert_eq!(
            ws.expect_close("after DISCONNECT").await,
            Some(CloseCode::Normal)
        );
    });

    // The inspector shows each client's transport and protocol.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let e = next_event_of(&events, "connect");
        seen.push((
            e["client_id"].as_str().unwrap_or_default().to_string(),
            e["transport"].as_str().unwrap_or_default().to_string(),
            e["protocol"].as_str().unwrap_or_default().to_string(),
        ));
    }
    seen.sort();
    let owned = |c: &str, t: &str, p: &str| (c.to_string(), t.to_string(), p.to_string());
    assert_eq!(
        seen,
        vec![owned("tcp-311", "tcp", "3.1.1"), owned("ws-v5", "ws", "5")]
    );
}

#[test]
fn wss_serves_mqtt_with_the_tls_certificate() {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, der) = self_signed_cert(certs.path());
    let s = Server::start_with(Config::new().tls(&cert, &key));
    let d = s.create_device("secure");
    let events = s.watch("secure");
    let port = s.wss_port.expect("wss_listen with a certificate");
    runtime().block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let connector = tokio_rustls::TlsConnector::from(tls_client_config(&der));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("the TLS handshake");
        let req = request(
            "wss",
            "localhost",
            port,
            "/mqtt",
            &[("sec-websocket-protocol", "mqttv3.1")],
        );
        let mut ws = Ws::handshake(req, tls).await.expect("the upgrade");
        assert_eq!(ws.protocol.as_deref(), Some("mqttv3.1"));
        ws.login("wss-1", &d.token).await;
        subscribe(&mut ws, "secure/t").await;
        ws.send(&raw::publish_packet(
            "secure/t",
            b"over wss",
            0,
            false,
            false,
            0,
        ))
        .await;
        let p = ws
            .expect_kind(raw::PUBLISH, "its own publish")
            .await
            .publish();
        assert_eq!(p.payload, b"over wss");
    });
    let e = next_event_of(&events, "connect");
    assert_eq!(e["transport"], "wss", "{e}");
}

#[test]
fn wss_listens_only_with_a_certificate() {
    let plain = Server::start();
    let log = plain.log();
    assert!(log.contains("listening for ws"), "{log}");
    assert!(
        !log.contains("listening for wss"),
        "no certificate, no wss: {log}"
    );
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, _) = self_signed_cert(certs.path());
    let tls = Server::start_with(Config::new().tls(&cert, &key));
    assert!(tls.log().contains("listening for wss"), "{}", tls.log());
    // And "" switches ws off.
    let off = Server::start_with(Config::new().mqtt("ws_listen", "\"\""));
    assert!(!off.log().contains("listening for ws"), "{}", off.log());
}

#[test]
fn a_stalled_upgrade_is_closed_after_the_handshake_timeout() {
    use std::io::{Read, Write};
    let s = Server::start();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", s.ws_port)).expect("connect");
    // Half a request head, then nothing.
    tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap_or(0);
    let took = start.elapsed();
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(15),
        "closed after {took:?}, want about 10 s"
    );
}

#[test]
fn the_handshake_refuses_other_paths_no_subprotocol_and_foreign_origins() {
    let s =
        Server::start_with(Config::new().mqtt("ws_allowed_origins", "[\"https://dash.example\"]"));
    let status = |r: Result<Ws<TcpStream>, WsError>| match r {
        Err(WsError::Http(resp)) => resp.status(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade went through"),
    };
    runtime().block_on(async {
        let mqtt = ("sec-websocket-protocol", "mqtt");
        let r = ws_open_with(s.ws_port, "/other", &[mqtt]).await;
        assert_eq!(status(r), StatusCode::NOT_FOUND);
        let r = ws_open_with(s.ws_port, "/mqtt", &[]).await;
        assert_eq!(status(r), StatusCode::BAD_REQUEST, "no subprotocol");
        let r = ws_open_with(s.ws_port, "/mqtt", &[("sec-websocket-protocol", "chat")]).await;
        assert_eq!(status(r), StatusCode::BAD_REQUEST, "no MQTT subprotocol");
        let r = ws_open_with(
            s.ws_port,
            "/mqtt",
            &[mqtt, ("origin", "https://evil.example")],
        )
        .await;
        assert_eq!(status(r), StatusCode::FORBIDDEN, "an Origin not allowed");
        let ok = ws_open_with(
            s.ws_port,
            "/mqtt",
            &[
                ("sec-websocket-protocol", "wamp, mqttv5"),
                ("origin", "https://dash.example"),
            ],
        )
        .await
        .expect("an allowed Origin");
        assert_eq!(ok.protocol.as_deref(), Some("mqttv5"));
        ws_open_with(s.ws_port, "/mqtt", &[mqtt])
            .await
            .expect("no Origin: not a browser");
    });
}

#[test]
fn packets_may_span_messages_and_frames_and_share_one() {
    let s = Server::start();
    let token = s.token("frames");
    runtime().block_on(async {
        let mut ws = ws_open(s.ws_port).await;
        // CONNECT cut in three binary messages.
        let connect = raw::connect_packet(&ConnectOpts::new("split", Some(&token)));
        for part in [&connect[..1], &connect[1..9], &connect[9..]] {
            ws.send(part).await;
        }
        let ack = ws
            .expect_kind(raw::CONNACK, "CONNACK to a split CONNECT")
            .await;
        assert_eq!(ack.body, vec![0, 0]);

        // SUBSCRIBE and a PUBLISH to it in one message.
        let mut both = raw::subscribe_packet(3, &[("f/t", 0)]);
        both.extend(raw::publish_packet("f/t", b"together", 0, false, false, 0));
        ws.send(&both).await;
        ws.expect_kind(raw::SUBACK, "SUBACK").await;
        let p = ws
            .expect_kind(raw::PUBLISH, "the publish after it")
            .await
            .publish();
        assert_eq!(p.payload, b"together");

        // A PUBLISH in one message of three frames (continuations).
        let publish = raw::publish_packet("f/t", b"in three frames", 0, false, false, 0);
        let (a, rest) = publish.split_at(3);
        let (b, c) = rest.split_at(5);
        ws.send_message(Message::Frame(Frame::message(
            a.to_vec(),
            OpCode::Data(Data::Binary),
            false,
        )))
        .await;
        ws.send_message(Message::Frame(Frame::message(
            b.to_vec(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .await;
        ws.send_message(Message::Frame(Frame::message(
            c.to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
        let p = ws
            .expect_kind(raw::PUBLISH, "the fragmented publish")
            .await
            .publish();
        assert_eq!(p.payload, b"in three frames");

        // A large payload comes back whole, over as many messages as it takes.
        let big = vec![b'x'; 100_000];
        ws.send(&raw::publish_packet("f/t", &big, 0, false, false, 0))
            .await;
        let p = ws
            .expect_kind(raw::PUBLISH, "the large publish")
            .await
            .publish();
        assert_eq!(p.payload.len(), big.len());
    });
}

#[test]
fn a_text_message_closes_the_connection() {
    let s = Server::start();
    let token = s.token("texter");
    runtime().block_on(async {
        let mut ws = ws_open(s.ws_port).await;
        ws.login("texter", &token).await;
        ws.send_message(Message::text("CONNECT")).await;
        assert_eq!(
            ws.expect_close("after a text message").await,
            Some(CloseCode::Unsupported)
        );
    });
}

#[test]
fn a_frame_over_max_packet_size_closes_the_connection() {
    let s = Server::start_with(Config::new().mqtt("max_packet_size", "2048"));
    let token = s.token("big");
    runtime().block_on(async {
        let mut ws = ws_open(s.ws_port).await;
        ws.login("big", &token).await;
        // Just under: fine.
        ws.send(&raw::publish_packet("b", &[0; 1900], 0, false, false, 0))
            .await;
        ws.send(&raw::pingreq_packet()).await;
        ws.expect_kind(raw::PINGRESP, "still open").await;
        ws.send(&vec![0u8; 2049]).await;
        assert_eq!(
            ws.expect_close("after an oversized frame").await,
            Some(CloseCode::Size)
        );
    });
}

#[test]
fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let xff = [
        ("sec-websocket-protocol", "mqtt"),
        ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
    ];
    let peer_of = |s: &Server, device: &str| {
        let token = s.token(device);
        let events = s.watch(device);
        runtime().block_on(async {
            let mut ws = ws_open_with(s.ws_port, "/mqtt", &xff)
                .await
                .expect("the upgrade");
            ws.login(device, &token).await;
        });
        next_event_of(&events, "connect")
    };

    let trusting =
        Server::start_with(Config::new().mqtt("ws_trusted_proxies", "[\"127.0.0.0/8\"]"));
    let e = peer_of(&trusting, "behind-proxy");
    assert_eq!(e["peer"], "203.0.113.7", "the proxy's word: {e}");
    assert!(
        e["proxy"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "the proxy is shown: {e}"
    );

    let wary = Server::start();
    let e = peer_of(&wary, "direct");
    let peer = e["peer"].as_str().unwrap_or_default();
    assert!(
        peer.starts_with("127.0.0.1:"),
        "not a trusted proxy: the socket's peer: {e}"
    );
    assert!(e.get("proxy").is_none(), "{e}");
}

#[test]
fn a_revoked_token_closes_its_websocket_within_a_second() {
    let s = Server::start();
    let d = s.create_device("revoked");
    let rt = runtime();
    let mut ws = rt.block_on(async {
        let mut ws = ws_open(s.ws_port).await;
        ws.login("rev", &d.token).await;
        ws
    });
    s.admin_ok("DELETE", &format!("/tokens/{}", d.token_id), None);
    let revoked_at = Instant::now();
    rt.block_on(async {
        loop {
            match ws.next_message().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    });
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

// ---------------------------------------------------------------------------
// Real clients: MQTT.js (from Node) and paho-mqtt, at the versions pinned in
// tests/ws-clients/, installed once per run into target/ws-clients-env/.

/// How long one client script may take: an interpreter's start and a few
/// round trips.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ws-clients")
}

/// The venv's Python with paho-mqtt, installed on first use.
fn paho() -> Option<std::path::PathBuf> {
    static PYTHON: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    install::required(
        "paho-mqtt (tests/ws-clients/requirements.txt)",
        PYTHON.get_or_init(|| {
            install::python_venv(
                &clients_dir().join("requirements.txt"),
                &install::env_dir("ws-clients-env"),
            )
        }),
    )
}

/// Runs a client script; its last line of output as JSON.
fn run_script(cmd: &mut std::process::Command) -> serde_json::Value {
    let out = run_bounded(cmd, SCRIPT_TIMEOUT);
    let last = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "the client printed no JSON line ({e}); status {}\nstdout: {}\nstderr: {}",
            out.status, out.stdout, out.stderr
        )
    })
}

fn mqtt_js_run(
    node_modules: &std::path::Path,
    url: &str,
    token: &str,
    version: u8,
    ca: Option<&std::path::Path>,
) -> serde_json::Value {
    let mut cmd = std::process::Command::new("node");
    cmd.arg(clients_dir().join("mqttjs.js"))
        .args([url, token, &version.to_string()])
        .env("NODE_PATH", node_modules);
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    run_script(&mut cmd)
}

#[test]
fn mqtt_js_publishes_and_receives_over_ws_and_wss() {
    let Some(node_modules) = install::mqtt_js() else {
        return;
    };
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, _) = self_signed_cert(certs.path());
    let s = Server::start_with(Config::new().tls(&cert, &key));
    let token = s.token("browser");
    let ws = format!("ws://127.0.0.1:{}/mqtt", s.ws_port);
    let r = mqtt_js_run(&node_modules, &ws, &token, 4, None);
    assert_eq!(r["connack"], 0, "over ws: {r}");
    assert_eq!(r["payload"], r["sent"], "over ws: {r}");
    assert_eq!(r["qos"], 1, "{r}");
    let wss = format!("wss://localhost:{}/mqtt", s.wss_port.expect("wss port"));
    let r = mqtt_js_run(&node_modules, &wss, &token, 4, Some(&cert));
    assert_eq!(r["payload"], r["sent"], "over wss: {r}");
}

#[test]
fn mqtt_js_protocol_5_over_ws_and_wss_as_over_tcp() {
    // MQTT 5 from MQTT.js: CONNACK 0, its own QoS 1 publish back with the
    // user property it sent, over TCP, ws and wss alike; the inspector shows
    // each connection as protocol 5 with its transport.
    let Some(node_modules) = install::mqtt_js() else {
        return;
    };
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, _) = self_signed_cert(certs.path());
    let s = Server::start_with(Config::new().tls(&cert, &key));
    let token = s.token("browser5");
    let events = s.watch("browser5");
    let runs = [
        ("tcp", format!("mqtt://127.0.0.1:{}", s.mqtt_port), None),
        ("ws", format!("ws://127.0.0.1:{}/mqtt", s.ws_port), None),
        (
            "wss",
            format!("wss://localhost:{}/mqtt", s.wss_port.expect("wss port")),
            Some(cert.as_path()),
        ),
    ];
    for (transport, url, ca) in &runs {
        let r = mqtt_js_run(&node_modules, url, &token, 5, *ca);
        assert_eq!(r["connack"], 0, "CONNACK reason over {transport}: {r}");
        assert_eq!(r["payload"], r["sent"], "over {transport}: {r}");
        assert_eq!(r["qos"], 1, "over {transport}: {r}");
        assert_eq!(
            r["user_properties"],
            serde_json::json!({"origin": "mqttjs"}),
            "the user property intact over {transport}: {r}"
        );
        let e = next_event_of(&events, "connect");
        assert_eq!(
            (e["transport"].as_str(), e["protocol"].as_str()),
            (Some(*transport), Some("5")),
            "{e}"
        );
    }
}

#[test]
fn paho_over_websockets_and_secure_websockets_in_both_protocols() {
    // MQTT 3.1.1 and MQTT 5 (with a user property that must come back) over
    // ws and wss.
    let Some(python) = paho() else {
        return;
    };
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert, key, _) = self_signed_cert(certs.path());
    let s = Server::start_with(Config::new().tls(&cert, &key));
    let token = s.token("paho");
    let script = clients_dir().join("paho_ws.py");
    let ws = s.ws_port.to_string();
    let wss = s.wss_port.expect("wss port").to_string();
    let runs = [
        ("ws", "127.0.0.1", &ws, None),
        ("wss", "localhost", &wss, Some(&cert)),
    ];
    for protocol in ["4", "5"] {
        for (transport, host, port, ca) in &runs {
            let mut cmd = std::process::Command::new(&python);
            cmd.arg(&script)
                .args([host, port.as_str(), &token, protocol]);
            if let Some(ca) = ca {
                cmd.arg(ca);
            }
            let r = run_script(&mut cmd);
            let what = format!("protocol {protocol} over {transport}: {r}");
            assert_eq!(r["payload"], "hello from paho over websockets", "{what}");
            assert_eq!(r["qos"], 1, "{what}");
            let user = if protocol == "5" {
                serde_json::json!([["origin", "paho"]])
            } else {
                serde_json::Value::Null
            };
            assert_eq!(r["user_properties"], user, "{what}");
        }
    }
}
