//! The two kinds of client every scenario is made of, in MQTT 3.1.1 or 5: a
//! publisher (one topic, QoS 0 or 1, a window of unacknowledged messages,
//! optionally a fixed rate) and a counting subscriber (sequence numbers per publisher: lost,
//! duplicated, out of order; send timestamps: latency).

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::Conn;
use anyhow::{bail, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::wire::{self, Version, DISCONNECT, PUBACK, PUBLISH, PUBREC};

/// Bytes at the start of every binary payload: publisher index (u32),
/// sequence number (u64), send time in ns since the run's base (u64).
pub(crate) const HEADER: usize = 20;

/// Messages encoded into one write when nothing limits the rate.
const BATCH: usize = 64;

#[derive(Clone)]
pub(crate) enum Payload {
    /// `HEADER` bytes, then zeros up to `size`.
    Binary { size: usize },
    /// A TagoIO data item `{"variable": NAME, "value": SEQ}` (for
    /// `insert_bucket`).
    Json { variable: String },
}

pub(crate) struct PubSpec {
    pub version: Version,
    pub index: u32,
    pub topic: String,
    pub qos: u8,
    /// Messages to send; `None` = until `stop_sending`.
    pub count: Option<u64>,
    /// QoS 1: most unacknowledged messages at once (with MQTT 5, within
    /// the broker's receive maximum: see `wire::Connack::window`).
    pub window: usize,
    /// Messages per second; `None` = as fast as the window allows.
    pub rate: Option<f64>,
    pub payload: Payload,
    /// Time origin for the timestamps in the payload.
    pub base: Instant,
    /// No new message after this.
    pub stop_sending: Instant,
    /// Give up waiting for acknowledgements after this.
    pub give_up: Instant,
    /// Messages acknowledged (QoS 1) or written (QoS 0) so far, for samplers.
    pub progress: Arc<AtomicU64>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct PubResult {
    pub sent: u64,
    pub acked: u64,
    /// MQTT 5: acknowledgements with a failure reason code (0x80 and up).
    pub refused: u64,
    /// The last acknowledgement (QoS 1) or the last write (QoS 0).
    pub finished: Option<Instant>,
    pub timed_out: bool,
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn encode(spec: &PubSpec, out: &mut BytesMut, scratch: &mut Vec<u8>, seq: u64, id: u16) {
    scratch.clear();
    match &spec.payload {
        Payload::Binary { size } => {
            scratch.extend_from_slice(&spec.index.to_be_bytes());
            scratch.extend_from_slice(&seq.to_be_bytes());
            scratch.extend_from_slice(&now_ns(spec.base).to_be_bytes());
            scratch.resize((*size).max(HEADER), 0);
        }
        Payload::Json { variable } => {
            scratch.extend_from_slice(
                format!("{{\"variable\":\"{variable}\",\"value\":{seq}}}").as_bytes(),
            );
        }
    }
    wire::publish(out, spec.version, &spec.topic, spec.qos, false, id, scratch);
}

/// Runs one publisher on an open connection until its count is sent and
/// acknowledged, or its deadlines pass.
pub(crate) async fn publisher(
    mut stream: Conn,
    mut inbuf: BytesMut,
    spec: PubSpec,
) -> Result<PubResult> {
    let mut res = PubResult::default();
    let mut out = BytesMut::with_capacity(BATCH * 128);
    let mut scratch = Vec::with_capacity(256);
    let mut inflight = 0usize;
    let mut next_id: u16 = 0;
    let window = if spec.qos == 0 {
        usize::MAX
    } else {
        spec.window.max(1)
    };
    let mut acks = BytesMut::new();
    loop {
        let now = Instant::now();
        let more = spec.count.is_none_or(|c| res.sent < c) && now < spec.stop_sending;
        if !more && inflight == 0 {
            break;
        }
        if now >= spec.give_up {
            res.timed_out = true;
            break;
        }
        let room = window.saturating_sub(inflight);
        if more && room > 0 {
            let mut n = room.min(BATCH);
            if let Some(c) = spec.count {
                n = n.min((c - res.sent) as usize);
            }
            if let Some(rate) = spec.rate {
                // The next message's slot; wait for it (reading acks meanwhile
                // would be nicer but they wait in the socket just as well).
                let due = spec.base + Duration::from_secs_f64(res.sent as f64 / rate);
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                }
                n = 1;
            }
            for _ in 0..n {
                next_id = next_id.wrapping_add(1).max(1);
                encode(&spec, &mut out, &mut scratch, res.sent, next_id);
                res.sent += 1;
            }
            stream.write_all(&out).await?;
            out.clear();
            if spec.qos == 0 {
                res.acked = res.sent;
                res.finished = Some(Instant::now());
                spec.progress.fetch_add(n as u64, Ordering::Relaxed);
            } else {
                inflight += n;
            }
        }
        if spec.qos == 0 && spec.rate.is_none() {
            continue;
        }
        // Read what has arrived; block only when nothing else can be done.
        let must_wait = inflight > 0 && (inflight >= window || !more);
        if must_wait {
            let left = spec.give_up.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.read_buf(&mut inbuf)).await {
                Ok(Ok(0)) => bail!("publisher {}: connection closed", spec.index),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => continue, // give_up reached; checked above
            }
        } else {
            match stream.try_read_buf(&mut inbuf) {
                Ok(0) => bail!("publisher {}: connection closed", spec.index),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        while let Some(p) = wire::next_packet(&mut inbuf)? {
            match p.kind() {
                PUBACK => {
                    inflight = inflight.saturating_sub(1);
                    res.acked += 1;
                    if p.reason(spec.version) >= 0x80 {
                        res.refused += 1;
                    }
                    res.finished = Some(Instant::now());
                    spec.progress.fetch_add(1, Ordering::Relaxed);
                }
                // A PUBREC with a failure reason ends the exchange (MQTT 5).
                PUBREC if p.reason(spec.version) >= 0x80 => {
                    inflight = inflight.saturating_sub(1);
                    res.refused += 1;
                }
                PUBREC => wire::ack(&mut acks, wire::PUBREL, p.ack_id()),
                DISCONNECT => bail!(
                    "publisher {}: DISCONNECT from the broker, reason {:#04x}",
                    spec.index,
                    p.reason(spec.version)
                ),
                _ => {}
            }
        }
        if !acks.is_empty() {
            stream.write_all(&acks).await?;
            acks.clear();
        }
    }
    let mut bye = BytesMut::new();
    wire::disconnect(&mut bye);
    let _ = stream.write_all(&bye).await;
    Ok(res)
}

/// A growable bitset of the sequence numbers seen from one publisher.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    unique: u64,
    max: Option<u64>,
}

impl Seen {
    /// true when `seq` was new.
    fn insert(&mut self, seq: u64) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        let was = self.bits[w] & (1 << b) != 0;
        self.bits[w] |= 1 << b;
        if !was {
            self.unique += 1;
        }
        !was
    }
}

pub(crate) struct SubSpec {
    pub version: Version,
    pub publishers: usize,
    /// Messages expected in all; `None` = unknown (stop on idle or deadline).
    pub expected: Option<u64>,
    pub base: Instant,
    /// Latency samples are kept for sequence numbers from this one on.
    pub latency_from_seq: Option<u64>,
    /// Set when the publishers are done; then `idle` without a message ends
    /// the subscriber.
    pub publishers_done: Arc<AtomicBool>,
    pub idle: Duration,
    pub give_up: Instant,
    pub progress: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
pub(crate) struct SubResult {
    pub received: u64,
    pub unique: u64,
    pub dup: u64,
    pub out_of_order: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Per publisher: unique messages received.
    pub per_publisher: Vec<u64>,
    /// Latencies in µs.
    pub latencies_us: Vec<u64>,
    pub timed_out: bool,
}

/// Counts what arrives on an open, subscribed connection.
pub(crate) async fn subscriber(
    mut stream: Conn,
    mut inbuf: BytesMut,
    spec: SubSpec,
) -> Result<SubResult> {
    let mut res = SubResult::default();
    let mut seen: Vec<Seen> = (0..spec.publishers).map(|_| Seen::default()).collect();
    let mut acks = BytesMut::with_capacity(4096);
    let mut last_activity = Instant::now();
    loop {
        while let Some(p) = wire::next_packet(&mut inbuf)? {
            match p.kind() {
                PUBLISH => {
                    let (qos, id, payload) = p.publish(spec.version)?;
                    let now = Instant::now();
                    res.first.get_or_insert(now);
                    res.last = Some(now);
                    res.received += 1;
                    if qos == 1 {
                        wire::ack(&mut acks, PUBACK, id);
                    } else if qos == 2 {
                        wire::ack(&mut acks, PUBREC, id);
                    }
                    if payload.len() < 12 {
                        continue;
                    }
                    let publisher = u32::from_be_bytes(payload[0..4].try_into()?) as usize;
                    let seq = u64::from_be_bytes(payload[4..12].try_into()?);
                    let Some(s) = seen.get_mut(publisher) else {
                        continue;
                    };
                    if !s.insert(seq) {
                        res.dup += 1;
                        continue;
                    }
                    if s.max.is_some_and(|m| seq < m) {
                        res.out_of_order += 1;
                    }
                    s.max = Some(s.max.map_or(seq, |m| m.max(seq)));
                    res.unique += 1;
                    spec.progress.store(res.unique, Ordering::Relaxed);
                    if let (Some(from), true) = (spec.latency_from_seq, payload.len() >= HEADER) {
                        if seq >= from {
                            let sent = u64::from_be_bytes(payload[12..20].try_into()?);
                            let lat = now.duration_since(spec.base).as_nanos() as u64;
                            res.latencies_us.push(lat.saturating_sub(sent) / 1000);
                        }
                    }
                }
                wire::PUBREL => wire::ack(&mut acks, wire::PUBCOMP, p.ack_id()),
                DISCONNECT => bail!(
                    "subscriber: DISCONNECT from the broker, reason {:#04x}",
                    p.reason(spec.version)
                ),
                _ => {}
            }
        }
        let complete = spec.expected.is_some_and(|e| res.unique >= e);
        let until = Until {
            publishers_done: &spec.publishers_done,
            idle: spec.idle,
            give_up: spec.give_up,
        };
        let room = (16 * 1024, 256 * 1024);
        match end_of_pass(
            &mut stream,
            &mut inbuf,
            &mut acks,
            complete,
            &until,
            last_activity,
            room,
        )
        .await?
        {
            Pass::Read => last_activity = Instant::now(),
            Pass::Quiet => {}
            Pass::Stop { timed_out } => {
                res.timed_out = timed_out;
                break;
            }
        }
    }
    res.per_publisher = seen.iter().map(|s| s.unique).collect();
    let mut bye = BytesMut::new();
    wire::disconnect(&mut bye);
    let _ = stream.write_all(&bye).await;
    Ok(res)
}

pub(crate) struct CountSpec {
    pub version: Version,
    /// Distinct keys expected; reaching them ends the subscriber.
    pub expected: u64,
    /// Set when the publishers are done (or from the start, when nothing
    /// more is coming but what the broker holds); then `idle` without a
    /// packet ends the subscriber.
    pub publishers_done: Arc<AtomicBool>,
    pub idle: Duration,
    pub give_up: Instant,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct CountResult {
    /// PUBLISH packets received.
    pub received: u64,
    /// Distinct keys among them.
    pub unique: u64,
    pub dup: u64,
    /// Keys lower than one seen before.
    pub out_of_order: u64,
    /// When the read that brought the last PUBLISH returned.
    pub last: Option<Instant>,
    pub timed_out: bool,
}

/// A lean subscriber for scenarios with many of them (fan-out) or many
/// messages to count (retained): it parses packets in place in its read
/// buffer (no copy, no allocation per message), takes the clock once per
/// read rather than per message, answers QoS 1/2 with one write per read,
/// and counts the distinct `key`s of the PUBLISHes (`None`: not counted).
pub(crate) async fn counting_subscriber<K>(
    mut stream: Conn,
    mut inbuf: BytesMut,
    spec: CountSpec,
    key: K,
) -> Result<CountResult>
where
    K: Fn(&wire::Publish<'_>) -> Option<u64>,
{
    let mut res = CountResult::default();
    let mut seen = Seen::default();
    let mut acks = BytesMut::with_capacity(4096);
    let mut last_activity = Instant::now();
    let mut read_at = last_activity;
    loop {
        let mut got = false;
        let used = wire::for_each_packet(&inbuf, |header, body| {
            match header >> 4 {
                PUBLISH => {
                    let p = wire::Publish::parse(header, body, spec.version)?;
                    got = true;
                    res.received += 1;
                    match p.qos {
                        1 => wire::ack(&mut acks, PUBACK, p.id),
                        2 => wire::ack(&mut acks, PUBREC, p.id),
                        _ => {}
                    }
                    if let Some(k) = key(&p) {
                        if !seen.insert(k) {
                            res.dup += 1;
                        } else if seen.max.is_some_and(|m| k < m) {
                            res.out_of_order += 1;
                        }
                        seen.max = Some(seen.max.map_or(k, |m| m.max(k)));
                    }
                }
                wire::SUBACK => {
                    if let Some(code) = wire::suback_codes(body, spec.version)?
                        .iter()
                        .find(|c| **c >= 0x80)
                    {
                        bail!("subscription refused ({code:#04x})");
                    }
                }
                wire::PUBREL if body.len() >= 2 => wire::ack(
                    &mut acks,
                    wire::PUBCOMP,
                    u16::from_be_bytes([body[0], body[1]]),
                ),
                DISCONNECT => bail!(
                    "subscriber: DISCONNECT from the broker, reason {:#04x}",
                    if spec.version == Version::V5 {
                        body.first().copied().unwrap_or(0)
                    } else {
                        0
                    }
                ),
                _ => {}
            }
            Ok(())
        })?;
        inbuf.advance(used);
        res.unique = seen.unique;
        if got {
            res.last = Some(read_at);
        }
        let complete = res.unique >= spec.expected;
        let until = Until {
            publishers_done: &spec.publishers_done,
            idle: spec.idle,
            give_up: spec.give_up,
        };
        let room = (8 * 1024, 64 * 1024);
        match end_of_pass(
            &mut stream,
            &mut inbuf,
            &mut acks,
            complete,
            &until,
            last_activity,
            room,
        )
        .await?
        {
            Pass::Read => {
                read_at = Instant::now();
                last_activity = read_at;
            }
            Pass::Quiet => {}
            Pass::Stop { timed_out } => {
                res.timed_out = timed_out;
                break;
            }
        }
    }
    let mut bye = BytesMut::new();
    wire::disconnect(&mut bye);
    let _ = stream.write_all(&bye).await;
    Ok(res)
}

/// When a subscriber stops waiting for more.
struct Until<'a> {
    /// Set once the publishers are done; then `idle` without a message ends it.
    publishers_done: &'a AtomicBool,
    idle: Duration,
    give_up: Instant,
}

/// What the end of one pass of a subscriber's loop came to.
enum Pass {
    /// More bytes are in the buffer.
    Read,
    /// Nothing came within the wait (the clock and the done flag are looked
    /// at again).
    Quiet,
    Stop {
        timed_out: bool,
    },
}

/// The end of one pass of a subscriber's loop: sends the acknowledgements
/// gathered, then stops (`complete`, past `give_up`, or the publishers are
/// done and nothing came since `last_activity` for `idle`) or reads more,
/// waiting at most 100 ms; `room` is (free bytes below which the buffer
/// grows, by how much).
async fn end_of_pass(
    stream: &mut Conn,
    inbuf: &mut BytesMut,
    acks: &mut BytesMut,
    complete: bool,
    until: &Until<'_>,
    last_activity: Instant,
    room: (usize, usize),
) -> Result<Pass> {
    if !acks.is_empty() {
        stream.write_all(acks).await?;
        acks.clear();
    }
    if complete {
        return Ok(Pass::Stop { timed_out: false });
    }
    let now = Instant::now();
    if now >= until.give_up {
        return Ok(Pass::Stop { timed_out: true });
    }
    let done = until.publishers_done.load(Ordering::Relaxed);
    if done && now.duration_since(last_activity) >= until.idle {
        return Ok(Pass::Stop { timed_out: false });
    }
    // Wake up now and then to look at the clock and the done flag.
    let wait = Duration::from_millis(100).min(until.give_up - now);
    if inbuf.capacity() - inbuf.len() < room.0 {
        inbuf.reserve(room.1);
    }
    match tokio::time::timeout(wait, stream.read_buf(inbuf)).await {
        Ok(Ok(0)) => bail!("subscriber: connection closed by the broker"),
        Ok(Ok(_)) => Ok(Pass::Read),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Ok(Pass::Quiet),
    }
}

/// The sequence number of a binary payload (see `HEADER`).
pub(crate) fn payload_seq(p: &wire::Publish<'_>) -> Option<u64> {
    let b = p.payload.get(4..12)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}
