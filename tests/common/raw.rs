//! A raw MQTT 3.1.1 client over `std::net::TcpStream`: hand-built packets for
//! what a well-behaved client library would never send (a PUBLISH before
//! CONNECT, a second CONNECT, wrong flags, lying lengths), and a reader that
//! tells exactly which bytes the broker sent back and when it closed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Packet types (the high nibble of the fixed header).
pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// One packet read from the broker: type, the fixed header's low nibble, and
/// the variable header plus payload.
#[derive(Debug, Clone)]
pub(crate) struct Packet {
    pub kind: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

/// A PUBLISH as received, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub dup: bool,
    pub retain: bool,
    pub pkid: u16,
}

/// The will of a CONNECT.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// Everything a CONNECT can carry.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOpts {
    /// ("MQTT", 4) for 3.1.1, ("MQIsdp", 3) for 3.1.
    pub protocol: (&'static str, u8),
    pub client_id: String,
    pub clean_session: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
}

impl ConnectOpts {
    /// A 3.1.1 CONNECT with username "Token" and `token` as the password,
    /// keep-alive 60 s.
    pub(crate) fn new(client_id: &str, token: Option<&str>) -> Self {
        ConnectOpts {
            protocol: ("MQTT", 4),
            client_id: client_id.to_string(),
            clean_session: true,
            keep_alive: 60,
            username: token.map(|_| "Token".to_string()),
            password: token.map(str::to_string),
            will: None,
        }
    }
    pub(crate) fn clean(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }
    pub(crate) fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    pub(crate) fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Self {
        self.will = Some(Will {
            topic: topic.to_string(),
            payload: payload.to_vec(),
            qos,
            retain,
        });
        self
    }
    pub(crate) fn protocol(mut self, name: &'static str, level: u8) -> Self {
        self.protocol = (name, level);
        self
    }
}

pub(crate) fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A whole packet from a first header byte and a body.
pub(crate) fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    encode_remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

pub(crate) fn connect_packet(o: &ConnectOpts) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(o.protocol.0.as_bytes(), &mut body);
    body.push(o.protocol.1);
    let mut flags = 0u8;
    if o.clean_session {
        flags |= 0x02;
    }
    if let Some(w) = &o.will {
        flags |= 0x04 | (w.qos << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    if o.username.is_some() {
        flags |= 0x80;
    }
    body.push(flags);
    body.extend_from_slice(&o.keep_alive.to_be_bytes());
    put_str(o.client_id.as_bytes(), &mut body);
    if let Some(w) = &o.will {
        put_str(w.topic.as_bytes(), &mut body);
        put_str(&w.payload, &mut body);
    }
    if let Some(u) = &o.username {
        put_str(u.as_bytes(), &mut body);
    }
    if let Some(p) = &o.password {
        put_str(p.as_bytes(), &mut body);
    }
    packet(0x10, &body)
}

pub(crate) fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
    dup: bool,
    pkid: u16,
) -> Vec<u8> {
    let mut first = 0x30 | (qos << 1);
    if retain {
        first |= 0x01;
    }
    if dup {
        first |= 0x08;
    }
    let mut body = Vec::new();
    put_str(topic.as_bytes(), &mut body);
    if qos > 0 {
        body.extend_from_slice(&pkid.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(first, &body)
}

pub(crate) fn subscribe_packet(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (f, q) in filters {
        put_str(f.as_bytes(), &mut body);
        body.push(*q);
    }
    packet(0x82, &body)
}

pub(crate) fn unsubscribe_packet(pkid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for f in filters {
        put_str(f.as_bytes(), &mut body);
    }
    packet(0xA2, &body)
}

pub(crate) fn puback_packet(pkid: u16) -> Vec<u8> {
    packet(0x40, &pkid.to_be_bytes())
}
pub(crate) fn pubrec_packet(pkid: u16) -> Vec<u8> {
    packet(0x50, &pkid.to_be_bytes())
}
pub(crate) fn pubrel_packet(pkid: u16) -> Vec<u8> {
    packet(0x62, &pkid.to_be_bytes())
}
pub(crate) fn pubcomp_packet(pkid: u16) -> Vec<u8> {
    packet(0x70, &pkid.to_be_bytes())
}
pub(crate) fn disconnect_packet() -> Vec<u8> {
    vec![0xE0, 0x00]
}
pub(crate) fn pingreq_packet() -> Vec<u8> {
    vec![0xC0, 0x00]
}

impl Packet {
    /// Decodes this packet as a PUBLISH; panics when it is another type.
    pub(crate) fn publish(&self) -> Publish {
        assert_eq!(self.kind, PUBLISH, "expected a PUBLISH, got {:?}", self);
        let qos = (self.flags >> 1) & 0x03;
        let tlen = u16::from_be_bytes([self.body[0], self.body[1]]) as usize;
        let topic = String::from_utf8_lossy(&self.body[2..2 + tlen]).into_owned();
        let mut at = 2 + tlen;
        let mut pkid = 0;
        if qos > 0 {
            pkid = u16::from_be_bytes([self.body[at], self.body[at + 1]]);
            at += 2;
        }
        Publish {
            topic,
            payload: self.body[at..].to_vec(),
            qos,
            dup: self.flags & 0x08 != 0,
            retain: self.flags & 0x01 != 0,
            pkid,
        }
    }

    /// The packet identifier of an ack-like packet (PUBACK, SUBACK, ...).
    pub(crate) fn pkid(&self) -> u16 {
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
}

/// How a read ended when it did not produce a packet.
#[derive(Debug, PartialEq)]
pub(crate) enum ReadEnd {
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing complete arrived before the deadline.
    TimedOut,
}

pub(crate) struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// Packets read while waiting for another (a retained PUBLISH that came
    /// before its SUBACK), handed out first by the next read.
    early: std::collections::VecDeque<Packet>,
}

impl Raw {
    /// Opens a TCP connection to 127.0.0.1:`port` (no MQTT yet).
    pub(crate) fn open(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("raw TCP connect to 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).ok();
        Raw {
            stream,
            buf: Vec::new(),
            early: std::collections::VecDeque::new(),
        }
    }

    /// Opens a connection, sends CONNECT and reads the CONNACK: returns the
    /// client, the return code and the session-present flag. Panics when no
    /// CONNACK comes within 10 s.
    pub(crate) fn connect(port: u16, opts: &ConnectOpts) -> (Raw, u8, bool) {
        let mut raw = Raw::open(port);
        raw.send(&connect_packet(opts));
        let p = raw.expect_packet(Duration::from_secs(10), "CONNACK");
        assert_eq!(p.kind, CONNACK, "expected CONNACK, got {:?}", p);
        assert_eq!(p.body.len(), 2, "CONNACK body must be 2 bytes: {:?}", p);
        (raw, p.body[1], p.body[0] & 0x01 != 0)
    }

    /// Connects and asserts CONNACK 0.
    pub(crate) fn login(port: u16, opts: &ConnectOpts) -> Raw {
        let (raw, code, _) = Raw::connect(port, opts);
        assert_eq!(
            code, 0,
            "CONNACK return code for client {:?}",
            opts.client_id
        );
        raw
    }

    /// Writes bytes; a write error (the broker already closed) is returned,
    /// not a panic, because several tests expect exactly that.
    pub(crate) fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("raw write failed: {e}"));
    }

    fn try_parse(&mut self) -> Option<Packet> {
        if self.buf.len() < 2 {
            return None;
        }
        let mut len = 0usize;
        let mut mult = 1usize;
        let mut i = 1;
        loop {
            if i >= self.buf.len() {
                return None;
            }
            let b = self.buf[i];
            len += (b & 0x7F) as usize * mult;
            mult *= 128;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            assert!(i <= 4, "broker sent a remaining length longer than 4 bytes");
        }
        if self.buf.len() < i + len {
            return None;
        }
        let first = self.buf[0];
        let body = self.buf[i..i + len].to_vec();
        self.buf.drain(..i + len);
        Some(Packet {
            kind: first >> 4,
            flags: first & 0x0F,
            body,
        })
    }

    /// Reads the next packet, waiting at most `timeout`.
    pub(crate) fn read_packet(&mut self, timeout: Duration) -> Result<Packet, ReadEnd> {
        if let Some(p) = self.early.pop_front() {
            return Ok(p);
        }
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        loop {
            if let Some(p) = self.try_parse() {
                return Ok(p);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadEnd::TimedOut);
            }
            self.stream.set_read_timeout(Some(deadline - now)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ReadEnd::TimedOut)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(ReadEnd::Closed),
            }
        }
    }

    pub(crate) fn expect_packet(&mut self, timeout: Duration, what: &str) -> Packet {
        match self.read_packet(timeout) {
            Ok(p) => p,
            Err(end) => panic!("waiting for {what}: {end:?} after {timeout:?}"),
        }
    }

    /// Reads until a packet of `kind` arrives; the packets read before it
    /// are kept, in order, for the next reads.
    pub(crate) fn expect_kind(&mut self, kind: u8, timeout: Duration, what: &str) -> Packet {
        let mut before = Vec::new();
        let found = loop {
            let p = self.expect_packet(timeout, what);
            if p.kind == kind {
                break p;
            }
            before.push(p);
        };
        for p in before.into_iter().rev() {
            self.early.push_front(p);
        }
        found
    }

    /// Reads the next PUBLISH, skipping nothing: any other packet panics.
    pub(crate) fn expect_publish(&mut self, timeout: Duration) -> Publish {
        let p = self.expect_packet(timeout, "PUBLISH");
        p.publish()
    }

    /// Subscribes and returns the SUBACK's return codes. PUBLISHes that
    /// arrive before the SUBACK (retained messages may) are kept for the
    /// next reads; any other packet panics.
    pub(crate) fn subscribe(&mut self, pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
        self.send(&subscribe_packet(pkid, filters));
        let mut early = Vec::new();
        let p = loop {
            let p = self.expect_packet(Duration::from_secs(10), "SUBACK");
            if p.kind == PUBLISH {
                early.push(p);
                continue;
            }
            break p;
        };
        self.early.extend(early);
        assert_eq!(p.kind, SUBACK, "expected SUBACK, got {:?}", p);
        assert_eq!(p.pkid(), pkid, "SUBACK packet id");
        p.body[2..].to_vec()
    }

    /// Reads (and discards) whatever comes until the broker closes the
    /// connection; returns how long that took, or Err when it is still open
    /// at the deadline.
    pub(crate) fn wait_closed(&mut self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut chunk = [0u8; 65536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("connection still open after {timeout:?}"));
            }
            self.stream.set_read_timeout(Some(deadline - now)).ok();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(start.elapsed()),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Ok(start.elapsed()),
            }
        }
    }

    /// Asserts the broker closes this connection within `timeout`.
    pub(crate) fn assert_closed(&mut self, timeout: Duration, why: &str) -> Duration {
        match self.wait_closed(timeout) {
            Ok(t) => t,
            Err(e) => panic!("{why}: {e}"),
        }
    }

    /// Drops the TCP connection without DISCONNECT.
    pub(crate) fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
