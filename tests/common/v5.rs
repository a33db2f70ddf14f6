//! MQTT 5 for the integration tests: a rumqttc `v5` client wrapper like
//! [`super::Mqtt`], and raw MQTT 5 packets (properties, reason codes) over
//! [`super::raw::Raw`] for what a client library will not send or will not
//! show: topic aliases as they are on the wire, flow control, AUTH, a
//! DISCONNECT with a reason code and a session expiry.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Filter, Packet as V5Packet, PubAck, Publish as V5Publish, PublishProperties,
    SubscribeProperties, SubscribeReasonCode, UnsubAck,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use rumqttc::Outgoing;

use super::raw::{encode_remaining_length, packet, Packet, Raw, ReadEnd};
use super::WAIT;

// ------------------------------------------------------------ rumqttc v5

/// What the event thread of an [`Mqtt5`] forwards.
pub(crate) type Item5 = Result<Event, String>;

/// A rumqttc v5 client whose event loop runs on its own thread.
pub(crate) struct Mqtt5 {
    pub client: Client,
    pub events: Receiver<Item5>,
    pub client_id: String,
    pub closed: bool,
    /// Incoming PUBLISHes that arrived while a wait looked for something else.
    stash: VecDeque<Event>,
}

/// MQTT 5 options for `client_id` at 127.0.0.1:`port`, logging in with
/// `token` (user name "Token"), keep alive 30 s, clean start.
pub(crate) fn options5(port: u16, client_id: &str, token: &str) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials("Token", token);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(Some(1 << 20));
    o
}

impl Mqtt5 {
    /// Connects; panics unless CONNACK 0 comes. Returns the client and the
    /// CONNACK (with its properties).
    pub(crate) fn connect(opts: MqttOptions) -> (Mqtt5, ConnAck) {
        let (m, ack) = Mqtt5::try_connect(opts);
        match ack {
            Ok(a) => (m, a),
            Err(e) => panic!("v5 client {:?} could not connect: {e}", m.client_id),
        }
    }

    /// Connects and returns the CONNACK, or the error rumqttc reported
    /// (a refusal reads "Connection refused, return code: `...`").
    pub(crate) fn try_connect(opts: MqttOptions) -> (Mqtt5, Result<ConnAck, String>) {
        let client_id = opts.client_id();
        let (client, mut connection) = Client::new(opts, 100);
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("mqtt5-{client_id}"))
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
        let mut m = Mqtt5 {
            client,
            events: rx,
            client_id,
            closed: false,
            stash: VecDeque::new(),
        };
        let ack = m.next_matching("CONNACK", WAIT, |e| match e {
            Event::Incoming(V5Packet::ConnAck(a)) => Some(a.clone()),
            _ => None,
        });
        (m, ack)
    }

    /// Waits for the first event for which `f` returns Some; incoming
    /// PUBLISHes skipped on the way are kept for a later wait. Err when the
    /// connection ended first; panics at the deadline.
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
                    if matches!(ev, Event::Incoming(V5Packet::Publish(_))) {
                        self.stash.push_back(ev);
                    }
                }
                Ok(Err(e)) => {
                    self.closed = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "v5 client {:?}: timed out after {timeout:?} waiting for {what}",
                    self.client_id
                ),
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
            panic!("v5 client {id:?}: connection ended while waiting for {what}: {e}")
        })
    }

    /// The next incoming PUBLISH.
    pub(crate) fn recv(&mut self, timeout: Duration) -> V5Publish {
        self.expect("a PUBLISH", timeout, |e| match e {
            Event::Incoming(V5Packet::Publish(p)) => Some(p.clone()),
            _ => None,
        })
    }

    /// Subscribes to `filters` (with their options) in one SUBSCRIBE with
    /// subscription identifier `id`; returns the SUBACK's codes.
    pub(crate) fn subscribe_with(
        &mut self,
        filters: Vec<Filter>,
        id: Option<usize>,
    ) -> Vec<SubscribeReasonCode> {
        let props = SubscribeProperties {
            id,
            user_properties: Vec::new(),
        };
        self.client
            .subscribe_many_with_properties(filters, props)
            .expect("queue SUBSCRIBE");
        self.expect("SUBACK", WAIT, |e| match e {
            Event::Incoming(V5Packet::SubAck(s)) => Some(s.return_codes.clone()),
            _ => None,
        })
    }

    /// Subscribes to one filter with default options; asserts the grant.
    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) {
        let codes = self.subscribe_with(vec![Filter::new(filter, qos)], None);
        assert_eq!(
            codes,
            vec![SubscribeReasonCode::Success(qos)],
            "SUBACK for {filter}"
        );
    }

    /// Unsubscribes; returns the UNSUBACK.
    pub(crate) fn unsubscribe(&mut self, filter: &str) -> UnsubAck {
        self.client.unsubscribe(filter).expect("queue UNSUBSCRIBE");
        self.expect("UNSUBACK", WAIT, |e| match e {
            Event::Incoming(V5Packet::UnsubAck(u)) => Some(u.clone()),
            _ => None,
        })
    }

    /// Queues a publish with properties, without waiting.
    pub(crate) fn publish_with(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        props: PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, qos, retain, payload.into(), props)
            .expect("queue PUBLISH");
    }

    /// Queues a publish without properties.
    pub(crate) fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, qos, retain, payload.into())
            .expect("queue PUBLISH");
    }

    /// Publishes QoS 1 with properties and returns the broker's PUBACK
    /// (with its reason code). Use with nothing else in flight.
    pub(crate) fn publish_acked(
        &mut self,
        topic: &str,
        retain: bool,
        payload: impl Into<Vec<u8>>,
        props: PublishProperties,
    ) -> PubAck {
        self.publish_with(topic, QoS::AtLeastOnce, retain, payload, props);
        self.expect(
            &format!("the PUBACK of a publish to {topic}"),
            WAIT,
            |e| match e {
                Event::Incoming(V5Packet::PubAck(a)) => Some(a.clone()),
                _ => None,
            },
        )
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
}

/// A publish's topic as text.
pub(crate) fn topic5(p: &V5Publish) -> String {
    String::from_utf8_lossy(&p.topic).into_owned()
}

/// A publish's payload as text.
pub(crate) fn text5(p: &V5Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

// ------------------------------------------------------------ properties

/// Property identifiers (MQTT 5 §2.2.2.2).
pub(crate) mod prop {
    pub(crate) const PAYLOAD_FORMAT: u8 = 0x01;
    pub(crate) const MESSAGE_EXPIRY: u8 = 0x02;
    pub(crate) const CONTENT_TYPE: u8 = 0x03;
    pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
    pub(crate) const CORRELATION_DATA: u8 = 0x09;
    pub(crate) const SUBSCRIPTION_ID: u8 = 0x0B;
    pub(crate) const SESSION_EXPIRY: u8 = 0x11;
    pub(crate) const ASSIGNED_CLIENT_ID: u8 = 0x12;
    pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub(crate) const AUTH_METHOD: u8 = 0x15;
    pub(crate) const AUTH_DATA: u8 = 0x16;
    pub(crate) const REQUEST_PROBLEM_INFO: u8 = 0x17;
    pub(crate) const WILL_DELAY: u8 = 0x18;
    pub(crate) const REQUEST_RESPONSE_INFO: u8 = 0x19;
    pub(crate) const RESPONSE_INFO: u8 = 0x1A;
    pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
    pub(crate) const REASON_STRING: u8 = 0x1F;
    pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
    pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub(crate) const TOPIC_ALIAS: u8 = 0x23;
    pub(crate) const MAXIMUM_QOS: u8 = 0x24;
    pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
    pub(crate) const USER_PROPERTY: u8 = 0x26;
    pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub(crate) const WILDCARD_AVAILABLE: u8 = 0x28;
    pub(crate) const SUBSCRIPTION_ID_AVAILABLE: u8 = 0x29;
    pub(crate) const SHARED_AVAILABLE: u8 = 0x2A;
}

/// One property as it is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Prop {
    Byte(u8, u8),
    U16(u8, u16),
    U32(u8, u32),
    /// A variable byte integer (the subscription identifier).
    Var(u8, u32),
    Str(u8, String),
    Bin(u8, Vec<u8>),
    Pair(String, String),
}

impl Prop {
    pub(crate) fn id(&self) -> u8 {
        match self {
            Prop::Byte(i, _)
            | Prop::U16(i, _)
            | Prop::U32(i, _)
            | Prop::Var(i, _)
            | Prop::Str(i, _)
            | Prop::Bin(i, _) => *i,
            Prop::Pair(..) => prop::USER_PROPERTY,
        }
    }
}

/// A property list, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Props(pub Vec<Prop>);

impl Props {
    pub(crate) fn new() -> Props {
        Props::default()
    }
    pub(crate) fn with(mut self, p: Prop) -> Props {
        self.0.push(p);
        self
    }
    pub(crate) fn byte(self, id: u8, v: u8) -> Props {
        self.with(Prop::Byte(id, v))
    }
    pub(crate) fn u16(self, id: u8, v: u16) -> Props {
        self.with(Prop::U16(id, v))
    }
    pub(crate) fn u32(self, id: u8, v: u32) -> Props {
        self.with(Prop::U32(id, v))
    }
    pub(crate) fn var(self, id: u8, v: u32) -> Props {
        self.with(Prop::Var(id, v))
    }
    pub(crate) fn str(self, id: u8, v: &str) -> Props {
        self.with(Prop::Str(id, v.to_string()))
    }
    pub(crate) fn bin(self, id: u8, v: &[u8]) -> Props {
        self.with(Prop::Bin(id, v.to_vec()))
    }
    pub(crate) fn user(self, k: &str, v: &str) -> Props {
        self.with(Prop::Pair(k.to_string(), v.to_string()))
    }

    /// The first property with `id`.
    pub(crate) fn get(&self, id: u8) -> Option<&Prop> {
        self.0.iter().find(|p| p.id() == id)
    }
    pub(crate) fn has(&self, id: u8) -> bool {
        self.get(id).is_some()
    }
    pub(crate) fn byte_of(&self, id: u8) -> Option<u8> {
        match self.get(id) {
            Some(Prop::Byte(_, v)) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn u16_of(&self, id: u8) -> Option<u16> {
        match self.get(id) {
            Some(Prop::U16(_, v)) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn u32_of(&self, id: u8) -> Option<u32> {
        match self.get(id) {
            Some(Prop::U32(_, v)) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn str_of(&self, id: u8) -> Option<&str> {
        match self.get(id) {
            Some(Prop::Str(_, v)) => Some(v),
            _ => None,
        }
    }
    pub(crate) fn bin_of(&self, id: u8) -> Option<&[u8]> {
        match self.get(id) {
            Some(Prop::Bin(_, v)) => Some(v),
            _ => None,
        }
    }
    /// Every subscription identifier, in order.
    pub(crate) fn sub_ids(&self) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Prop::Var(prop::SUBSCRIPTION_ID, v) => Some(*v),
                _ => None,
            })
            .collect()
    }
    /// The user properties, in order.
    pub(crate) fn users(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Prop::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// The encoded property list, with its length in front.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for p in &self.0 {
            body.push(p.id());
            match p {
                Prop::Byte(_, v) => body.push(*v),
                Prop::U16(_, v) => body.extend_from_slice(&v.to_be_bytes()),
                Prop::U32(_, v) => body.extend_from_slice(&v.to_be_bytes()),
                Prop::Var(_, v) => encode_remaining_length(*v as usize, &mut body),
                Prop::Str(_, v) => put_bin(v.as_bytes(), &mut body),
                Prop::Bin(_, v) => put_bin(v, &mut body),
                Prop::Pair(k, v) => {
                    put_bin(k.as_bytes(), &mut body);
                    put_bin(v.as_bytes(), &mut body);
                }
            }
        }
        let mut out = Vec::new();
        encode_remaining_length(body.len(), &mut out);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a property list (length first) at the start of `b`; returns
    /// it and how many bytes it took. Panics on anything malformed.
    pub(crate) fn decode(b: &[u8]) -> (Props, usize) {
        let (len, mut at) = read_varint(b, 0);
        let end = at + len as usize;
        assert!(end <= b.len(), "property length {len} beyond the packet");
        let mut props = Vec::new();
        while at < end {
            let id = b[at];
            at += 1;
            let p = match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => {
                    at += 1;
                    Prop::Byte(id, b[at - 1])
                }
                0x13 | 0x21 | 0x22 | 0x23 => {
                    at += 2;
                    Prop::U16(id, u16::from_be_bytes([b[at - 2], b[at - 1]]))
                }
                0x02 | 0x11 | 0x18 | 0x27 => {
                    at += 4;
                    Prop::U32(
                        id,
                        u32::from_be_bytes(b[at - 4..at].try_into().expect("four bytes")),
                    )
                }
                0x0B => {
                    let (v, next) = read_varint(b, at);
                    at = next;
                    Prop::Var(id, v)
                }
                0x03 | 0x08 | 0x12 | 0x15 | 0x1A | 0x1C | 0x1F => {
                    let (s, next) = read_bin(b, at);
                    at = next;
                    Prop::Str(id, String::from_utf8(s).expect("UTF-8 string property"))
                }
                0x09 | 0x16 => {
                    let (s, next) = read_bin(b, at);
                    at = next;
                    Prop::Bin(id, s)
                }
                0x26 => {
                    let (k, next) = read_bin(b, at);
                    let (v, next) = read_bin(b, next);
                    at = next;
                    Prop::Pair(
                        String::from_utf8(k).expect("UTF-8 key"),
                        String::from_utf8(v).expect("UTF-8 value"),
                    )
                }
                other => panic!("unknown property identifier 0x{other:02X} in {b:02X?}"),
            };
            props.push(p);
        }
        assert_eq!(at, end, "properties overran their length");
        (Props(props), end)
    }
}

fn put_bin(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn read_bin(b: &[u8], at: usize) -> (Vec<u8>, usize) {
    let len = u16::from_be_bytes([b[at], b[at + 1]]) as usize;
    (b[at + 2..at + 2 + len].to_vec(), at + 2 + len)
}

/// A variable byte integer at `at`: (value, index after it).
fn read_varint(b: &[u8], mut at: usize) -> (u32, usize) {
    let mut v = 0u32;
    let mut mult = 1u32;
    loop {
        let byte = b[at];
        at += 1;
        v += u32::from(byte & 0x7F) * mult;
        if byte & 0x80 == 0 {
            return (v, at);
        }
        mult *= 128;
        assert!(mult <= 128 * 128 * 128, "variable byte integer too long");
    }
}

// ------------------------------------------------------------ reason codes

/// Reason codes (MQTT 5 §2.4).
pub(crate) mod rc {
    pub(crate) const SUCCESS: u8 = 0x00;
    pub(crate) const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub(crate) const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub(crate) const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub(crate) const UNSPECIFIED: u8 = 0x80;
    pub(crate) const MALFORMED: u8 = 0x81;
    pub(crate) const PROTOCOL_ERROR: u8 = 0x82;
    pub(crate) const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    pub(crate) const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub(crate) const NOT_AUTHORIZED: u8 = 0x87;
    pub(crate) const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub(crate) const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub(crate) const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub(crate) const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub(crate) const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub(crate) const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub(crate) const PACKET_TOO_LARGE: u8 = 0x95;
    pub(crate) const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub(crate) const QUOTA_EXCEEDED: u8 = 0x97;
    pub(crate) const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub(crate) const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
}

// ------------------------------------------------------------ raw packets

/// The will of an MQTT 5 CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Will5 {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

/// Everything an MQTT 5 CONNECT can carry.
#[derive(Debug, Clone)]
pub(crate) struct Connect5 {
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub props: Props,
    pub will: Option<Will5>,
}

impl Connect5 {
    /// Clean start, keep alive 60 s, user name "Token" and `token` as the
    /// password, no properties.
    pub(crate) fn new(client_id: &str, token: Option<&str>) -> Connect5 {
        Connect5 {
            client_id: client_id.to_string(),
            clean_start: true,
            keep_alive: 60,
            username: token.map(|_| "Token".to_string()),
            password: token.map(str::to_string),
            props: Props::new(),
            will: None,
        }
    }
    pub(crate) fn clean_start(mut self, clean: bool) -> Connect5 {
        self.clean_start = clean;
        self
    }
    pub(crate) fn keep_alive(mut self, secs: u16) -> Connect5 {
        self.keep_alive = secs;
        self
    }
    pub(crate) fn props(mut self, props: Props) -> Connect5 {
        self.props = props;
        self
    }
    /// Adds one CONNECT property.
    pub(crate) fn prop(mut self, p: Prop) -> Connect5 {
        self.props.0.push(p);
        self
    }
    pub(crate) fn session_expiry(self, secs: u32) -> Connect5 {
        self.prop(Prop::U32(prop::SESSION_EXPIRY, secs))
    }
    pub(crate) fn will(
        mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        props: Props,
    ) -> Connect5 {
        self.will = Some(Will5 {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            retain,
            props,
        });
        self
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_bin(b"MQTT", &mut body);
        body.push(5);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        body.extend_from_slice(&self.props.encode());
        put_bin(self.client_id.as_bytes(), &mut body);
        if let Some(w) = &self.will {
            body.extend_from_slice(&w.props.encode());
            put_bin(w.topic.as_bytes(), &mut body);
            put_bin(&w.payload, &mut body);
        }
        if let Some(u) = &self.username {
            put_bin(u.as_bytes(), &mut body);
        }
        if let Some(p) = &self.password {
            put_bin(p.as_bytes(), &mut body);
        }
        packet(0x10, &body)
    }
}

/// An MQTT 5 PUBLISH.
pub(crate) fn publish5(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    pkid: u16,
    props: &Props,
) -> Vec<u8> {
    let mut first = 0x30 | (qos << 1);
    if retain {
        first |= 0x01;
    }
    let mut body = Vec::new();
    put_bin(topic.as_bytes(), &mut body);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(&props.encode());
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// Subscription options (§3.8.3.1): QoS, no local, retain as published,
/// retain handling.
pub(crate) fn sub_opts(qos: u8, no_local: bool, retain_as_published: bool, handling: u8) -> u8 {
    qos | (u8::from(no_local) << 2) | (u8::from(retain_as_published) << 3) | (handling << 4)
}

/// An MQTT 5 SUBSCRIBE of `filters` (filter, options byte), with a
/// subscription identifier when `id` is Some.
pub(crate) fn subscribe5(pkid: u16, id: Option<u32>, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    let mut props = Props::new();
    if let Some(id) = id {
        props = props.var(prop::SUBSCRIPTION_ID, id);
    }
    body.extend_from_slice(&props.encode());
    for (f, o) in filters {
        put_bin(f.as_bytes(), &mut body);
        body.push(*o);
    }
    packet(0x82, &body)
}

pub(crate) fn unsubscribe5(pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    body.push(0);
    for f in filters {
        put_bin(f.as_bytes(), &mut body);
    }
    packet(0xA2, &body)
}

/// PUBACK/PUBREC/PUBCOMP (`first` 0x40/0x50/0x70) or PUBREL (0x62) with a
/// reason code.
pub(crate) fn ack5(first: u8, pkid: u16, reason: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if reason != 0 {
        body.push(reason);
    }
    packet(first, &body)
}

pub(crate) fn puback5(pkid: u16) -> Vec<u8> {
    ack5(0x40, pkid, 0)
}

/// DISCONNECT with a reason code and properties (session expiry, ...).
pub(crate) fn disconnect5(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend_from_slice(&props.encode());
    packet(0xE0, &body)
}

/// AUTH with a reason code (0x18 continue, 0x19 re-authenticate) and
/// properties (authentication method, data).
pub(crate) fn auth5(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend_from_slice(&props.encode());
    packet(0xF0, &body)
}

/// A CONNACK as received.
#[derive(Debug, Clone)]
pub(crate) struct ConnAck5 {
    pub session_present: bool,
    pub code: u8,
    pub props: Props,
}

/// A PUBLISH as received.
#[derive(Debug, Clone)]
pub(crate) struct Publish5 {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub pkid: u16,
    pub props: Props,
}

impl Publish5 {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A SUBACK or UNSUBACK as received.
#[derive(Debug, Clone)]
pub(crate) struct Ack5 {
    pub pkid: u16,
    pub props: Props,
    pub codes: Vec<u8>,
}

/// A PUBACK/PUBREC/PUBREL/PUBCOMP as received.
#[derive(Debug, Clone)]
pub(crate) struct PubAck5 {
    pub pkid: u16,
    pub reason: u8,
    pub props: Props,
}

/// A DISCONNECT (or AUTH) as received.
#[derive(Debug, Clone)]
pub(crate) struct Disconnect5 {
    pub reason: u8,
    pub props: Props,
}

impl Packet {
    pub(crate) fn connack5(&self) -> ConnAck5 {
        assert_eq!(self.kind, super::raw::CONNACK, "expected CONNACK: {self:?}");
        // A 3.1.1 CONNACK (two bytes) has no properties.
        let props = if self.body.len() > 2 {
            Props::decode(&self.body[2..]).0
        } else {
            Props::new()
        };
        ConnAck5 {
            session_present: self.body[0] & 1 != 0,
            code: self.body[1],
            props,
        }
    }

    pub(crate) fn publish5(&self) -> Publish5 {
        assert_eq!(self.kind, super::raw::PUBLISH, "expected PUBLISH: {self:?}");
        let qos = (self.flags >> 1) & 3;
        let (topic, mut at) = read_bin(&self.body, 0);
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([self.body[at], self.body[at + 1]]);
            at += 2;
        }
        let (props, n) = Props::decode(&self.body[at..]);
        Publish5 {
            topic: String::from_utf8(topic).expect("UTF-8 topic"),
            payload: self.body[at + n..].to_vec(),
            qos,
            dup: self.flags & 0x08 != 0,
            retain: self.flags & 0x01 != 0,
            pkid,
            props,
        }
    }

    /// A SUBACK or UNSUBACK.
    pub(crate) fn suback5(&self) -> Ack5 {
        let pkid = self.pkid();
        let (props, n) = Props::decode(&self.body[2..]);
        Ack5 {
            pkid,
            props,
            codes: self.body[2 + n..].to_vec(),
        }
    }

    /// A PUBACK/PUBREC/PUBREL/PUBCOMP: a body of 2 bytes means reason 0.
    pub(crate) fn puback5(&self) -> PubAck5 {
        let pkid = self.pkid();
        let reason = self.body.get(2).copied().unwrap_or(0);
        let props = if self.body.len() > 3 {
            Props::decode(&self.body[3..]).0
        } else {
            Props::new()
        };
        PubAck5 {
            pkid,
            reason,
            props,
        }
    }

    /// A DISCONNECT or AUTH: an empty body means reason 0.
    pub(crate) fn disconnect5(&self) -> Disconnect5 {
        let reason = self.body.first().copied().unwrap_or(0);
        let props = if self.body.len() > 1 {
            Props::decode(&self.body[1..]).0
        } else {
            Props::new()
        };
        Disconnect5 { reason, props }
    }
}

/// The MQTT 5 side of [`Raw`].
pub(crate) trait Raw5 {
    /// Opens a connection, sends `c` and reads the CONNACK.
    fn connect5(port: u16, c: &Connect5) -> (Raw, ConnAck5);
    /// Connects and asserts CONNACK 0.
    fn login5(port: u16, c: &Connect5) -> (Raw, ConnAck5);
    /// Subscribes; PUBLISHes that come first are kept for later reads.
    fn subscribe5(&mut self, pkid: u16, id: Option<u32>, filters: &[(&str, u8)]) -> Ack5;
    /// The next PUBLISH, skipping (and keeping nothing of) other packets.
    fn next_publish5(&mut self, timeout: Duration) -> Publish5;
    /// The next PUBLISH, acknowledging it when it is QoS 1.
    fn recv5(&mut self, timeout: Duration) -> Publish5;
    /// Publishes QoS 1 and returns its PUBACK.
    fn publish_acked5(&mut self, topic: &str, payload: &[u8], pkid: u16, props: &Props) -> PubAck5;
    /// Waits for the broker's DISCONNECT and then the close; panics when the
    /// connection stays open or closes without one.
    fn expect_disconnect5(&mut self, timeout: Duration, what: &str) -> Disconnect5;
    /// Asserts that no PUBLISH arrives within `quiet` (other packets are
    /// skipped). Only used where a positive marker cannot prove absence.
    fn no_publish_within(&mut self, quiet: Duration, what: &str);
}

impl Raw5 for Raw {
    fn connect5(port: u16, c: &Connect5) -> (Raw, ConnAck5) {
        let mut raw = Raw::open(port);
        raw.send(&c.encode());
        let p = raw.expect_packet(WAIT, "CONNACK");
        let ack = p.connack5();
        (raw, ack)
    }

    fn login5(port: u16, c: &Connect5) -> (Raw, ConnAck5) {
        let (raw, ack) = Raw::connect5(port, c);
        assert_eq!(
            ack.code, 0,
            "CONNACK reason code for {:?}: {ack:?}",
            c.client_id
        );
        (raw, ack)
    }

    fn subscribe5(&mut self, pkid: u16, id: Option<u32>, filters: &[(&str, u8)]) -> Ack5 {
        self.send(&subscribe5(pkid, id, filters));
        let p = self.expect_kind(super::raw::SUBACK, WAIT, "SUBACK");
        let a = p.suback5();
        assert_eq!(a.pkid, pkid, "SUBACK packet id");
        a
    }

    fn next_publish5(&mut self, timeout: Duration) -> Publish5 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let p = self.expect_packet(left, "a PUBLISH");
            if p.kind == super::raw::PUBLISH {
                return p.publish5();
            }
        }
    }

    fn recv5(&mut self, timeout: Duration) -> Publish5 {
        let p = self.next_publish5(timeout);
        if p.qos == 1 {
            self.send(&puback5(p.pkid));
        }
        p
    }

    fn publish_acked5(&mut self, topic: &str, payload: &[u8], pkid: u16, props: &Props) -> PubAck5 {
        self.send(&publish5(topic, payload, 1, false, pkid, props));
        let p = self.expect_kind(super::raw::PUBACK, WAIT, "PUBACK");
        let a = p.puback5();
        assert_eq!(a.pkid, pkid, "PUBACK packet id");
        a
    }

    fn expect_disconnect5(&mut self, timeout: Duration, what: &str) -> Disconnect5 {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_packet(left) {
                Ok(p) if p.kind == super::raw::DISCONNECT => {
                    let d = p.disconnect5();
                    let left = deadline.saturating_duration_since(Instant::now());
                    self.wait_closed(left.max(Duration::from_secs(1)))
                        .unwrap_or_else(|e| panic!("{what}: after DISCONNECT: {e}"));
                    return d;
                }
                Ok(_) => continue,
                Err(ReadEnd::Closed) => panic!("{what}: closed without a DISCONNECT"),
                Err(ReadEnd::TimedOut) => panic!("{what}: no DISCONNECT within {timeout:?}"),
            }
        }
    }

    fn no_publish_within(&mut self, quiet: Duration, what: &str) {
        let deadline = Instant::now() + quiet;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.read_packet(left) {
                Ok(p) if p.kind == super::raw::PUBLISH => {
                    panic!("{what}: got {:?}", p.publish5())
                }
                Ok(_) => continue,
                Err(ReadEnd::TimedOut) => return,
                Err(ReadEnd::Closed) => panic!("{what}: the connection closed"),
            }
        }
    }
}

/// The QoS of rumqttc's v5 API from a number.
pub(crate) fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}
