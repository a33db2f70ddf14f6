//! Just enough of MQTT 3.1.1 on the wire for a load generator: encode
//! CONNECT, SUBSCRIBE, PUBLISH, PUBACK, DISCONNECT; split a byte stream into
//! packets. Independent of the broker's own codec on purpose, so that the
//! benchmark measures any broker the same way.

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
pub(crate) const SUBACK: u8 = 9;

/// Where and how to log in.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT over WebSocket at this path (`--ws`), instead of plain TCP.
    pub ws_path: Option<String>,
}

pub(crate) fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
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

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u16(s.len() as u16);
    buf.put_slice(s);
}

pub(crate) fn connect(buf: &mut BytesMut, client_id: &str, keep_alive: u16, target: &Target) {
    let mut flags = 0x02u8; // clean session
    let mut len = 10 + 2 + client_id.len();
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
    buf.put_u8(4);
    buf.put_u8(flags);
    buf.put_u16(keep_alive);
    put_str(buf, client_id.as_bytes());
    if let Some(u) = &target.username {
        put_str(buf, u.as_bytes());
    }
    if let Some(p) = &target.password {
        put_str(buf, p.as_bytes());
    }
}

pub(crate) fn subscribe(buf: &mut BytesMut, packet_id: u16, filter: &str, qos: u8) {
    buf.put_u8(0x82);
    put_remaining_length(buf, 2 + 2 + filter.len() + 1);
    buf.put_u16(packet_id);
    put_str(buf, filter.as_bytes());
    buf.put_u8(qos);
}

pub(crate) fn publish(buf: &mut BytesMut, topic: &str, qos: u8, packet_id: u16, payload: &[u8]) {
    buf.put_u8((PUBLISH << 4) | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_remaining_length(buf, 2 + topic.len() + id_len + payload.len());
    put_str(buf, topic.as_bytes());
    if qos > 0 {
        buf.put_u16(packet_id);
    }
    buf.put_slice(payload);
}

pub(crate) fn ack(buf: &mut BytesMut, kind: u8, packet_id: u16) {
    let flags = if kind == PUBREL { 0x02 } else { 0 };
    buf.put_u8((kind << 4) | flags);
    buf.put_u8(2);
    buf.put_u16(packet_id);
}

pub(crate) fn disconnect(buf: &mut BytesMut) {
    buf.put_u8(0xE0);
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

    /// (qos, packet id, payload) of a PUBLISH.
    pub(crate) fn publish(&self) -> Result<(u8, u16, Bytes)> {
        let qos = (self.header >> 1) & 3;
        let b = &self.body;
        if b.len() < 2 {
            bail!("short PUBLISH");
        }
        let tlen = u16::from_be_bytes([b[0], b[1]]) as usize;
        let mut at = 2 + tlen;
        let mut id = 0;
        if qos > 0 {
            if b.len() < at + 2 {
                bail!("short PUBLISH");
            }
            id = u16::from_be_bytes([b[at], b[at + 1]]);
            at += 2;
        }
        if b.len() < at {
            bail!("short PUBLISH");
        }
        Ok((qos, id, self.body.slice(at..)))
    }
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
/// WebSocket upgrade with `--ws`, CONNECT, CONNACK 0. Returns the stream and what was read past the CONNACK.
pub(crate) async fn open(
    target: &Target,
    client_id: &str,
    keep_alive: u16,
    recv_buffer: Option<u32>,
) -> Result<(Conn, BytesMut)> {
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
    if p.kind() != CONNACK || p.body.len() < 2 {
        bail!("expected CONNACK, got packet type {}", p.kind());
    }
    if p.body[1] != 0 {
        bail!("CONNACK return code {}", p.body[1]);
    }
    Ok((stream, buf))
}

/// SUBSCRIBE and wait for its SUBACK (answering nothing else meanwhile).
pub(crate) async fn subscribe_and_wait(
    stream: &mut Conn,
    buf: &mut BytesMut,
    filter: &str,
    qos: u8,
) -> Result<()> {
    let mut out = BytesMut::with_capacity(64);
    subscribe(&mut out, 1, filter, qos);
    stream.write_all(&out).await?;
    loop {
        let p = tokio::time::timeout(Duration::from_secs(30), read_packet(stream, buf))
            .await
            .map_err(|_| anyhow!("no SUBACK within 30 s"))??;
        if p.kind() == SUBACK {
            if p.body.len() < 3 || p.body[2] == 0x80 {
                bail!("subscription to {filter} refused");
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip() {
        let mut b = BytesMut::new();
        publish(&mut b, "a/b", 1, 7, &[1u8; 300]);
        ack(&mut b, PUBACK, 9);
        let p = next_packet(&mut b).unwrap().unwrap();
        let (qos, id, payload) = p.publish().unwrap();
        assert_eq!((qos, id, payload.len()), (1, 7, 300));
        let a = next_packet(&mut b).unwrap().unwrap();
        assert_eq!((a.kind(), a.ack_id()), (PUBACK, 9));
        assert!(next_packet(&mut b).unwrap().is_none());
    }

    #[test]
    fn split_input_waits() {
        let mut whole = BytesMut::new();
        publish(&mut whole, "t", 0, 0, &[0u8; 200]);
        let mut part = BytesMut::from(&whole[..3]);
        assert!(next_packet(&mut part).unwrap().is_none());
        part.extend_from_slice(&whole[3..]);
        assert!(next_packet(&mut part).unwrap().is_some());
    }
}
