//! Just enough of MQTT 3.1.1 and MQTT 5 on the wire for a load generator:
//! encode CONNECT, SUBSCRIBE, PUBLISH, the acknowledgements, DISCONNECT; split
//! a byte stream into packets; read CONNACK, SUBACK and PUBLISH of either
//! version. Independent of the broker's own codec on purpose, so that the
//! benchmark measures any broker the same way.
//!
//! MQTT 5 (`--mqtt 5`) is the same packets with a property block where the
//! spec puts one, always empty here (the scenarios use clean sessions, so
//! CONNECT needs no session expiry), and reason codes in the
//! acknowledgements (the short form, success, unless an answer needs one).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::conn::Conn;

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const DISCONNECT: u8 = 14;

/// The protocol the clients speak (`--mqtt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1, protocol level 4.
    #[default]
    V4,
    /// MQTT 5, protocol level 5.
    V5,
}

impl Version {
    /// `3.1.1` or `4`; `5` or `5.0`.
    pub(crate) fn parse(s: &str) -> Result<Version, String> {
        match s {
            "3.1.1" | "4" => Ok(Version::V4),
            "5" | "5.0" => Ok(Version::V5),
            other => Err(format!("MQTT version {other:?}: 3.1.1 (or 4) or 5")),
        }
    }

    /// The protocol level in CONNECT.
    pub(crate) fn level(self) -> u8 {
        match self {
            Version::V4 => 4,
            Version::V5 => 5,
        }
    }

    fn v5(self) -> bool {
        self == Version::V5
    }

    /// Bytes of an empty property block: its length, 0 (MQTT 5 only).
    fn props_len(self) -> usize {
        usize::from(self.v5())
    }

    fn put_empty_props(self, buf: &mut BytesMut) {
        if self.v5() {
            buf.put_u8(0);
        }
    }
}

/// Where and how to log in.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT over WebSocket at this path (`--ws`), instead of plain TCP.
    pub ws_path: Option<String>,
    pub version: Version,
}

fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

/// A variable byte integer at the front of `b`: (value, bytes it took).
fn get_varint(b: &[u8]) -> Result<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        value |= ((byte & 0x7f) as usize) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    bail!("malformed variable byte integer")
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

pub(crate) fn connect(buf: &mut BytesMut, client_id: &str, keep_alive: u16, target: &Target) {
    let v = target.version;
    let mut flags = 0x02u8; // clean session (MQTT 5: clean start, session expiry 0)
    let mut len = 10 + v.props_len() + 2 + client_id.len();
    if let Some(u) = &target.username {
        flags |= 0x80;
        len += 2 + u.len();
    }
    if let Some(p) = &target.password {
        flags |= 0x40;
        len += 2 + p.len();
    }
    buf.put_u8(CONNECT << 4);
    put_remaining_length(buf, len);
    put_str(buf, b"MQTT");
    buf.put_u8(v.level());
    buf.put_u8(flags);
    buf.put_u16(keep_alive);
    v.put_empty_props(buf);
    put_str(buf, client_id.as_bytes());
    if let Some(u) = &target.username {
        put_str(buf, u.as_bytes());
    }
    if let Some(p) = &target.password {
        put_str(buf, p.as_bytes());
    }
}

/// SUBSCRIBE to `filters`, each at `qos`. MQTT 5: an empty property block,
/// and the options byte is the maximum QoS alone (no local 0, retain as
/// published 0, retain handling 0: as 3.1.1 behaves).
pub(crate) fn subscribe_many(
    buf: &mut BytesMut,
    v: Version,
    packet_id: u16,
    filters: &[&str],
    qos: u8,
) {
    let len = 2 + v.props_len() + filters.iter().map(|f| 2 + f.len() + 1).sum::<usize>();
    buf.put_u8((SUBSCRIBE << 4) | 0x02);
    put_remaining_length(buf, len);
    buf.put_u16(packet_id);
    v.put_empty_props(buf);
    for f in filters {
        put_str(buf, f.as_bytes());
        buf.put_u8(qos);
    }
}

pub(crate) fn subscribe(buf: &mut BytesMut, v: Version, packet_id: u16, filter: &str, qos: u8) {
    subscribe_many(buf, v, packet_id, &[filter], qos);
}

pub(crate) fn publish(
    buf: &mut BytesMut,
    v: Version,
    topic: &str,
    qos: u8,
    retain: bool,
    packet_id: u16,
    payload: &[u8],
) {
    buf.put_u8((PUBLISH << 4) | (qos << 1) | u8::from(retain));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_remaining_length(
        buf,
        2 + topic.len() + id_len + v.props_len() + payload.len(),
    );
    put_str(buf, topic.as_bytes());
    if qos > 0 {
        buf.put_u16(packet_id);
    }
    v.put_empty_props(buf);
    buf.put_slice(payload);
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP with reason code 0 (success): the same two
/// bytes in 3.1.1 and MQTT 5 (whose short form means success).
pub(crate) fn ack(buf: &mut BytesMut, kind: u8, packet_id: u16) {
    ack_reason(buf, Version::V4, kind, packet_id, 0);
}

/// An acknowledgement with a reason code: MQTT 5 carries a non-zero one
/// (and no properties: the spec lets the property length go when the
/// remaining length is 3); 3.1.1 has none.
pub(crate) fn ack_reason(buf: &mut BytesMut, v: Version, kind: u8, packet_id: u16, reason: u8) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    buf.put_u8((kind << 4) | flags);
    if v.v5() && reason != 0 {
        buf.put_u8(3);
        buf.put_u16(packet_id);
        buf.put_u8(reason);
    } else {
        buf.put_u8(2);
        buf.put_u16(packet_id);
    }
}

pub(crate) fn disconnect(buf: &mut BytesMut) {
    buf.put_u8(DISCONNECT << 4);
    buf.put_u8(0);
}

/// One packet: the first byte of the fixed header and the rest after the
/// remaining length.
pub(crate) struct Packet {
    pub header: u8,
    pub body: Bytes,
}

impl Packet {
    pub(crate) fn kind(&self) -> u8 {
        self.header >> 4
    }

    /// The packet id of a PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK.
    pub(crate) fn ack_id(&self) -> u16 {
        if self.body.len() >= 2 {
            u16::from_be_bytes([self.body[0], self.body[1]])
        } else {
            0
        }
    }

    /// The reason code of a PUBACK/PUBREC/PUBREL/PUBCOMP (MQTT 5; absent =
    /// 0, success) or of a DISCONNECT. Always 0 in 3.1.1.
    pub(crate) fn reason(&self, v: Version) -> u8 {
        let at = if self.kind() == DISCONNECT { 0 } else { 2 };
        match v {
            Version::V5 => self.body.get(at).copied().unwrap_or(0),
            Version::V4 => 0,
        }
    }

    /// (qos, packet id, payload) of a PUBLISH; MQTT 5: its properties are
    /// skipped.
    pub(crate) fn publish(&self, v: Version) -> Result<(u8, u16, Bytes)> {
        let p = Publish::parse(self.header, &self.body, v)?;
        let at = self.body.len() - p.payload.len();
        Ok((p.qos, p.id, self.body.slice(at..)))
    }

    /// The CONNACK's return code (3.1.1) or reason code (MQTT 5) and, in
    /// MQTT 5, what its properties say that the clients heed.
    pub(crate) fn connack(&self, v: Version) -> Result<Connack> {
        let b = &self.body;
        if self.kind() != CONNACK || b.len() < 2 {
            bail!("expected CONNACK, got packet type {}", self.kind());
        }
        let mut c = Connack {
            code: b[1],
            receive_maximum: None,
            reason_string: None,
        };
        if v.v5() {
            for_each_property(&b[2..], |id, value| match id {
                0x21 if value.len() == 2 => {
                    c.receive_maximum = Some(u16::from_be_bytes([value[0], value[1]]))
                }
                0x1F => c.reason_string = Some(String::from_utf8_lossy(value).into_owned()),
                _ => {}
            })?;
        }
        Ok(c)
    }

    /// The SUBACK's return codes (3.1.1: 0x80 = failure) or reason codes
    /// (MQTT 5: 0x80 and up = failure), one per filter.
    pub(crate) fn suback_codes(&self, v: Version) -> Result<&[u8]> {
        suback_codes(&self.body, v)
    }
}

/// The return or reason codes of a SUBACK with this body.
pub(crate) fn suback_codes(b: &[u8], v: Version) -> Result<&[u8]> {
    let mut at = 2;
    if v.v5() {
        let (plen, n) = get_varint(b.get(at..).unwrap_or_default())?;
        at += n + plen;
    }
    match b.get(at..) {
        Some(codes) if !codes.is_empty() => Ok(codes),
        _ => bail!("short SUBACK"),
    }
}

/// What a CONNACK says.
#[derive(Debug)]
pub(crate) struct Connack {
    /// 0 = accepted.
    pub code: u8,
    /// MQTT 5: the most unacknowledged QoS 1/2 PUBLISHes the broker takes
    /// from a client (absent = 65,535).
    pub receive_maximum: Option<u16>,
    /// MQTT 5: why a CONNECT was refused.
    pub reason_string: Option<String>,
}

impl Connack {
    /// The QoS 1 window a publisher may keep: its own, within the broker's
    /// receive maximum (MQTT 5; 3.1.1 has no such limit).
    pub(crate) fn window(&self, v: Version, wanted: usize) -> usize {
        match v {
            Version::V4 => wanted,
            Version::V5 => wanted.min(usize::from(self.receive_maximum.unwrap_or(u16::MAX))),
        }
    }
}

/// Walks an MQTT 5 property block (its length first), giving each
/// property's id and value bytes (a string's or binary's without its length;
/// a user property's name and value both).
fn for_each_property(block: &[u8], mut f: impl FnMut(u8, &[u8])) -> Result<()> {
    let (len, n) = get_varint(block)?;
    let mut p = block
        .get(n..n + len)
        .ok_or_else(|| anyhow!("short property block"))?;
    while !p.is_empty() {
        let id = p[0];
        p = &p[1..];
        let size = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => get_varint(p)?.1,
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                if p.len() < 2 {
                    bail!("short property {id:#04x}");
                }
                let l = u16::from_be_bytes([p[0], p[1]]) as usize;
                p = &p[2..];
                l
            }
            0x26 => {
                let first = p
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
                let second = first.and_then(|l| p.get(2 + l..4 + l));
                match second {
                    Some(b) => 4 + first.unwrap_or(0) + u16::from_be_bytes([b[0], b[1]]) as usize,
                    None => bail!("short user property"),
                }
            }
            other => bail!("unknown property {other:#04x}"),
        };
        let value = p
            .get(..size)
            .ok_or_else(|| anyhow!("short property {id:#04x}"))?;
        f(id, value);
        p = &p[size..];
    }
    Ok(())
}

/// A PUBLISH read in place: its parts borrow the packet's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Publish<'a> {
    pub qos: u8,
    pub retain: bool,
    pub id: u16,
    pub topic: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    /// The parts of a PUBLISH with this first byte and body (what follows
    /// the remaining length); MQTT 5: its properties are skipped.
    pub(crate) fn parse(header: u8, b: &'a [u8], v: Version) -> Result<Publish<'a>> {
        let qos = (header >> 1) & 3;
        if b.len() < 2 {
            bail!("short PUBLISH");
        }
        let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut at = 2 + tlen;
        let topic = b.get(2..at).ok_or_else(|| anyhow!("short PUBLISH"))?;
        let mut id = 0;
        if qos > 0 {
            if b.len() < at + 2 {
                bail!("short PUBLISH");
            }
            id = u16::from_be_bytes([b[at], b[at + 1]]);
            at += 2;
        }
        if v.v5() {
            let (plen, n) = get_varint(b.get(at..).unwrap_or_default())?;
            at += n + plen;
        }
        let payload = b.get(at..).ok_or_else(|| anyhow!("short PUBLISH"))?;
        Ok(Publish {
            qos,
            retain: header & 1 == 1,
            id,
            topic,
            payload,
        })
    }
}

/// Calls `f(first byte, body)` for each whole packet at the front of `buf`,
/// without copying; returns the bytes those packets took (the caller
/// advances past them and keeps the rest for the next read).
pub(crate) fn for_each_packet(
    buf: &[u8],
    mut f: impl FnMut(u8, &[u8]) -> Result<()>,
) -> Result<usize> {
    let mut at = 0;
    while buf.len() - at >= 2 {
        let rest = &buf[at + 1..];
        let (len, n) = match get_varint(rest) {
            Ok(x) => x,
            // Fewer than 4 bytes, all with the continuation bit: wait.
            Err(_) if rest.len() < 4 => break,
            Err(e) => return Err(e),
        };
        let end = at + 1 + n + len;
        if end > buf.len() {
            break;
        }
        f(buf[at], &buf[at + 1 + n..end])?;
        at = end;
    }
    Ok(at)
}

/// Takes one whole packet off the front of `buf`, if there is one.
pub(crate) fn next_packet(buf: &mut BytesMut) -> Result<Option<Packet>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut i = 1;
    loop {
        if i >= buf.len() {
            return Ok(None);
        }
        if i > 4 {
            bail!("malformed remaining length");
        }
        let byte = buf[i];
        len += (byte & 0x7f) as usize * mult;
        mult *= 128;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
    }
    if buf.len() < i + len {
        buf.reserve(i + len - buf.len());
        return Ok(None);
    }
    let header = buf[0];
    buf.advance(i);
    let body = buf.split_to(len).freeze();
    Ok(Some(Packet { header, body }))
}

/// Reads until one whole packet is there.
pub(crate) async fn read_packet(stream: &mut Conn, buf: &mut BytesMut) -> Result<Packet> {
    loop {
        if let Some(p) = next_packet(buf)? {
            return Ok(p);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let n = stream.read_buf(buf).await?;
        if n == 0 {
            bail!("connection closed by the broker");
        }
    }
}

/// TCP connect (nodelay, optionally a small receive buffer), the
/// WebSocket upgrade with `--ws`, CONNECT, CONNACK 0. Returns the stream and
/// what was read past the CONNACK.
pub(crate) async fn open(
    target: &Target,
    client_id: &str,
    keep_alive: u16,
    recv_buffer: Option<u32>,
) -> Result<(Conn, BytesMut)> {
    let (stream, buf, _) = open_connack(target, client_id, keep_alive, recv_buffer).await?;
    Ok((stream, buf))
}

/// [`open`], and what the CONNACK said.
pub(crate) async fn open_connack(
    target: &Target,
    client_id: &str,
    keep_alive: u16,
    recv_buffer: Option<u32>,
) -> Result<(Conn, BytesMut, Connack)> {
    let addr = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| anyhow!("{} does not resolve", target.host))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut stream = match &target.ws_path {
        None => Conn::Tcp(stream),
        Some(path) => Conn::websocket(stream, &target.host, target.port, path)
            .await
            .with_context(|| format!("WebSocket upgrade at {addr}{path}"))?,
    };
    let mut out = BytesMut::with_capacity(128);
    connect(&mut out, client_id, keep_alive, target);
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(4096);
    let p = tokio::time::timeout(Duration::from_secs(30), read_packet(&mut stream, &mut buf))
        .await
        .map_err(|_| anyhow!("no CONNACK within 30 s"))??;
    let c = p.connack(target.version)?;
    if c.code != 0 {
        match (&c.reason_string, target.version) {
            (Some(why), _) => bail!("CONNACK reason code {:#04x}: {why}", c.code),
            (None, Version::V5) => bail!("CONNACK reason code {:#04x}", c.code),
            (None, Version::V4) => bail!("CONNACK return code {}", c.code),
        }
    }
    Ok((stream, buf, c))
}

/// SUBSCRIBE and wait for its SUBACK (answering nothing else meanwhile).
pub(crate) async fn subscribe_and_wait(
    stream: &mut Conn,
    buf: &mut BytesMut,
    v: Version,
    filter: &str,
    qos: u8,
) -> Result<()> {
    let mut out = BytesMut::with_capacity(64);
    subscribe(&mut out, v, 1, filter, qos);
    stream.write_all(&out).await?;
    loop {
        let p = tokio::time::timeout(Duration::from_secs(30), read_packet(stream, buf))
            .await
            .map_err(|_| anyhow!("no SUBACK within 30 s"))??;
        if p.kind() == SUBACK {
            let code = p.suback_codes(v)?[0];
            if code >= 0x80 {
                bail!("subscription to {filter} refused ({code:#04x})");
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(version: Version) -> Target {
        Target {
            host: "h".into(),
            port: 1,
            username: Some("u".into()),
            password: Some("p".into()),
            ws_path: None,
            version,
        }
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse("3.1.1"), Ok(Version::V4));
        assert_eq!(Version::parse("4"), Ok(Version::V4));
        assert_eq!(Version::parse("5"), Ok(Version::V5));
        assert!(Version::parse("3").is_err());
    }

    #[test]
    fn publish_round_trip() {
        for v in [Version::V4, Version::V5] {
            let mut b = BytesMut::new();
            publish(&mut b, v, "a/b", 1, false, 7, &[1u8; 300]);
            ack(&mut b, PUBACK, 9);
            let p = next_packet(&mut b).unwrap().unwrap();
            let (qos, id, payload) = p.publish(v).unwrap();
            assert_eq!((qos, id, payload.len()), (1, 7, 300), "{v:?}");
            let a = next_packet(&mut b).unwrap().unwrap();
            assert_eq!((a.kind(), a.ack_id(), a.reason(v)), (PUBACK, 9, 0));
            assert!(next_packet(&mut b).unwrap().is_none());
        }
    }

    #[test]
    fn split_input_waits() {
        let mut whole = BytesMut::new();
        publish(&mut whole, Version::V4, "t", 0, false, 0, &[0u8; 200]);
        let mut part = BytesMut::from(&whole[..3]);
        assert!(next_packet(&mut part).unwrap().is_none());
        part.extend_from_slice(&whole[3..]);
        assert!(next_packet(&mut part).unwrap().is_some());
    }

    /// Packets read in place: whole ones are given, a split one waits for
    /// the rest, whatever byte the read stopped at.
    #[test]
    fn packets_in_place() {
        for v in [Version::V4, Version::V5] {
            let mut whole = BytesMut::new();
            publish(&mut whole, v, "a/1", 1, true, 7, &[5u8; 200]);
            ack(&mut whole, PUBREL, 9);
            publish(&mut whole, v, "b", 0, false, 0, b"xy");
            for cut in 0..=whole.len() {
                let mut seen = Vec::new();
                let mut walk = |buf: &[u8]| {
                    for_each_packet(buf, |h, body| {
                        seen.push(h >> 4);
                        if h >> 4 == PUBLISH {
                            let p = Publish::parse(h, body, v)?;
                            assert!(p.topic == b"a/1" || p.topic == b"b");
                            if p.topic == b"a/1" {
                                assert_eq!(
                                    (p.qos, p.retain, p.id, p.payload.len()),
                                    (1, true, 7, 200)
                                );
                            } else {
                                assert_eq!((p.qos, p.retain, p.payload), (0, false, &b"xy"[..]));
                            }
                        }
                        Ok(())
                    })
                    .unwrap()
                };
                let used = walk(&whole[..cut]);
                let mut rest = whole[used..cut].to_vec();
                rest.extend_from_slice(&whole[cut..]);
                assert_eq!(walk(&rest), rest.len(), "{v:?} cut at {cut}");
                assert_eq!(seen, vec![PUBLISH, PUBREL, PUBLISH], "{v:?} cut at {cut}");
            }
        }
        let mut bad = BytesMut::from(&b"\x30\xff\xff\xff\xff\x01"[..]);
        assert!(for_each_packet(&bad, |_, _| Ok(())).is_err());
        bad.truncate(4);
        assert_eq!(for_each_packet(&bad, |_, _| Ok(())).unwrap(), 0);
    }

    /// The MQTT 5 packets byte for byte, as the spec lays them out.
    #[test]
    fn mqtt5_bytes() {
        let mut b = BytesMut::new();
        connect(&mut b, "c", 60, &target(Version::V5));
        assert_eq!(
            &b[..],
            b"\x10\x14\x00\x04MQTT\x05\xc2\x00\x3c\x00\x00\x01c\x00\x01u\x00\x01p"
        );
        b.clear();
        connect(&mut b, "c", 60, &target(Version::V4));
        assert_eq!(
            &b[..],
            b"\x10\x13\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01c\x00\x01u\x00\x01p"
        );
        b.clear();
        subscribe(&mut b, Version::V5, 1, "a/#", 1);
        assert_eq!(&b[..], b"\x82\x09\x00\x01\x00\x00\x03a/#\x01");
        b.clear();
        publish(&mut b, Version::V5, "t", 1, true, 5, b"xy");
        assert_eq!(&b[..], b"\x33\x08\x00\x01t\x00\x05\x00xy");
        b.clear();
        publish(&mut b, Version::V5, "t", 0, false, 0, b"xy");
        assert_eq!(&b[..], b"\x30\x06\x00\x01t\x00xy");
        b.clear();
        ack_reason(&mut b, Version::V5, PUBREL, 5, 0x92);
        assert_eq!(&b[..], b"\x62\x03\x00\x05\x92");
        b.clear();
        ack_reason(&mut b, Version::V4, PUBREL, 5, 0x92);
        assert_eq!(&b[..], b"\x62\x02\x00\x05");
    }

    #[test]
    fn mqtt5_incoming() {
        let v = Version::V5;
        // CONNACK: receive maximum 256, a user property, topic alias max 10.
        let mut b = BytesMut::from(
            &b"\x20\x11\x00\x00\x0e\x21\x01\x00\x26\x00\x01k\x00\x02vv\x22\x00\x0a"[..],
        );
        let c = next_packet(&mut b).unwrap().unwrap().connack(v).unwrap();
        assert_eq!((c.code, c.receive_maximum), (0, Some(256)));
        assert_eq!(c.window(v, 65_000), 256);
        assert_eq!(c.window(Version::V4, 65_000), 65_000);
        // A refusal with a reason string.
        let mut b = BytesMut::from(&b"\x20\x09\x00\x86\x06\x1f\x00\x03bad"[..]);
        let c = next_packet(&mut b).unwrap().unwrap().connack(v).unwrap();
        assert_eq!((c.code, c.reason_string.as_deref()), (0x86, Some("bad")));
        // SUBACK with a reason string property, granted QoS 1.
        let mut b = BytesMut::from(&b"\x90\x08\x00\x01\x04\x1f\x00\x01r\x01"[..]);
        let p = next_packet(&mut b).unwrap().unwrap();
        assert_eq!(p.suback_codes(v).unwrap(), &[1]);
        // PUBLISH with properties (message expiry, subscription id 3).
        let mut b =
            BytesMut::from(&b"\x32\x10\x00\x01t\x00\x07\x07\x02\x00\x00\x00\x3c\x0b\x03pay"[..]);
        let p = next_packet(&mut b).unwrap().unwrap();
        let (qos, id, payload) = p.publish(v).unwrap();
        assert_eq!((qos, id, &payload[..]), (1, 7, &b"pay"[..]));
        // PUBACK 0x10 (no matching subscribers) with no properties.
        let mut b = BytesMut::from(&b"\x40\x03\x00\x09\x10"[..]);
        let p = next_packet(&mut b).unwrap().unwrap();
        assert_eq!((p.ack_id(), p.reason(v)), (9, 0x10));
        // DISCONNECT 0x8e (session taken over).
        let mut b = BytesMut::from(&b"\xe0\x02\x8e\x00"[..]);
        assert_eq!(next_packet(&mut b).unwrap().unwrap().reason(v), 0x8e);
    }
}
