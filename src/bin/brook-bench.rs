//! brook-bench: an MQTT 3.1.1 / MQTT 5 (`--mqtt 5`) load generator for
//! comparing brokers.
//!
//! It speaks the wire protocol itself over tokio TCP (no broker code, no
//! client crate), so it measures brook and Mosquitto the same way. Each
//! scenario is bounded by `--max-seconds` and prints one JSON line; `report`
//! turns a file of such lines into a table of medians and brook/Mosquitto
//! ratios. `bench/run.sh` drives it.

// A crate root resolves `mod` next to itself (src/bin/), so name the files.
#[path = "brook-bench/clients.rs"]
mod clients;
#[path = "brook-bench/conn.rs"]
mod conn;
#[path = "brook-bench/report.rs"]
mod report;
#[path = "brook-bench/wire.rs"]
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use clients::{Payload, PubResult, PubSpec, SubResult, SubSpec};
use wire::{Target, Version};

#[derive(Parser)]
#[command(
    name = "brook-bench",
    about = "MQTT load generator: brook vs any broker"
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, global = true, default_value_t = 1883)]
    port: u16,
    #[arg(long, global = true)]
    username: Option<String>,
    /// For brook: a device token.
    #[arg(long, global = true)]
    password: Option<String>,
    /// Label for the output line ("brook", "mosquitto").
    #[arg(long, global = true, default_value = "broker")]
    broker: String,
    /// The broker's process id, to read its RSS from /proc/PID/status.
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
    /// Hard bound on one scenario's run time.
    #[arg(long, global = true, default_value_t = 60)]
    max_seconds: u64,
    /// brook's HTTP base URL (durable: counts stored rows with GET /data).
    #[arg(long, global = true)]
    http: Option<String>,
    /// MQTT over WebSocket: `--port` is the broker's WebSocket port
    /// (brook's `ws_listen`), the upgrade asks for `--ws-path`.
    #[arg(long, global = true)]
    ws: bool,
    #[arg(long, global = true, default_value = "/mqtt")]
    ws_path: String,
    /// The MQTT version the clients speak: 3.1.1 (or 4) or 5.
    #[arg(long, global = true, default_value = "3.1.1", value_parser = Version::parse)]
    mqtt: Version,
    /// The round of `bench/run.sh` this run belongs to, copied into the
    /// result line (`report` pairs figures of the same round by it).
    #[arg(long, global = true)]
    round: Option<u32>,
}

impl Common {
    fn target(&self) -> Target {
        Target {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            password: self.password.clone(),
            ws_path: self.ws.then(|| self.ws_path.clone()),
            version: self.mqtt,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// P publishers, each N messages to its own topic; one wildcard subscriber.
    Fanin(FaninArgs),
    /// One publisher, N subscribers on its topic: deliveries/s and losses.
    Fanout(FanoutArgs),
    /// N retained topics: the broker's RSS per retained topic, and a
    /// wildcard subscriber checks they are all retained.
    Retained(RetainedArgs),
    /// One publisher at a fixed rate, one subscriber: latency percentiles.
    Latency(LatencyArgs),
    /// C idle clients at once: connect rate and the broker's RSS.
    Connections(ConnectionsArgs),
    /// brook only: QoS 1 publishes stored by an insert_bucket action.
    Durable(DurableArgs),
    /// A subscriber that stops reading: broker RSS and publisher speed.
    Slow(SlowArgs),
    /// Many retained topics and a client with many subscriptions leaving:
    /// how long another client's CONNECT takes meanwhile.
    Churn(ChurnArgs),
    /// Table of medians and ratios from a file of result lines.
    Report { file: String },
    /// Prints a free loopback TCP port.
    FreePort,
    /// Waits until GET URL answers 200.
    WaitHttp {
        url: String,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Creates a device through brook's admin API; prints its token.
    CreateDevice {
        #[arg(long)]
        admin_token: String,
        #[arg(long, default_value = "bench")]
        name: String,
    },
}

#[derive(Args)]
struct FaninArgs {
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    /// Payload bytes (at least 20: publisher, sequence, timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// QoS 1: unacknowledged messages per publisher.
    #[arg(long, default_value_t = 100)]
    window: usize,
}

#[derive(Args)]
struct FanoutArgs {
    #[arg(long, default_value_t = 50)]
    subscribers: usize,
    /// Messages the publisher sends (each subscriber should get them all).
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Payload bytes (at least 20: publisher, sequence, timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The publisher's and the subscriptions' QoS.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// QoS 1: unacknowledged messages the publisher keeps in flight.
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Subscriber connections being opened at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
}

#[derive(Args)]
struct RetainedArgs {
    /// Retained topics (`bench/RUN/r/I`, 16-byte payloads, QoS 1).
    #[arg(long, default_value_t = 100_000)]
    topics: usize,
    /// Unacknowledged retained PUBLISHes in flight.
    #[arg(long, default_value_t = 200)]
    window: usize,
    /// Seconds to wait before reading RSS after the last PUBACK.
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    /// The QoS of the subscription that counts the retained messages.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    sub_qos: u8,
}

#[derive(Args)]
struct LatencyArgs {
    /// Messages per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of measurement (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value_t = 64)]
    size: usize,
}

#[derive(Args)]
struct ConnectionsArgs {
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Seconds to wait before reading RSS (after connecting, after leaving).
    #[arg(long, default_value_t = 2.0)]
    settle: f64,
    #[arg(long, default_value_t = 300)]
    keep_alive: u16,
}

#[derive(Args)]
struct DurableArgs {
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Topic prefix an insert_bucket action matches (`PREFIX/#`).
    #[arg(long, default_value = "bench/durable")]
    prefix: String,
    /// Publish to `tago/data/post` instead, which brook stores without any
    /// action (TagoIO's legacy topic).
    #[arg(long)]
    tago_topic: bool,
}

#[derive(Args)]
struct SlowArgs {
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Seconds the publishers run, in each of the two phases.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// The slow subscriber's socket receive buffer (bytes).
    #[arg(long, default_value_t = 4096)]
    recv_buffer: u32,
    /// RSS sampling period.
    #[arg(long, default_value_t = 500)]
    sample_ms: u64,
}

#[derive(Args)]
struct ChurnArgs {
    /// Retained topics (16-byte payloads).
    #[arg(long, default_value_t = 100_000)]
    topics: usize,
    /// Subscriptions of the client that leaves (literal filters, one
    /// retained topic each).
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// CONNECTs timed before the client leaves, and while it does.
    #[arg(long, default_value_t = 200)]
    probes: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let c = cli.common;
    let line = rt.block_on(async {
        match cli.cmd {
            Cmd::Fanin(a) => fanin(&c, &a).await.map(Some),
            Cmd::Fanout(a) => fanout(&c, &a).await.map(Some),
            Cmd::Retained(a) => retained(&c, &a).await.map(Some),
            Cmd::Latency(a) => latency(&c, &a).await.map(Some),
            Cmd::Connections(a) => connections(&c, &a).await.map(Some),
            Cmd::Durable(a) => durable(&c, &a).await.map(Some),
            Cmd::Slow(a) => slow(&c, &a).await.map(Some),
            Cmd::Churn(a) => churn(&c, &a).await.map(Some),
            Cmd::Report { file } => {
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("read {file}"))?;
                print!("{}", report::table(&text));
                Ok(None)
            }
            Cmd::FreePort => {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                println!("{}", l.local_addr()?.port());
                Ok(None)
            }
            Cmd::WaitHttp { url, seconds } => {
                let deadline = Instant::now() + Duration::from_secs(seconds);
                loop {
                    if let Ok((200, _)) = http(&url, "GET", &[], None).await {
                        break Ok(None);
                    }
                    if Instant::now() >= deadline {
                        bail!("{url} did not answer 200 within {seconds} s");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Cmd::CreateDevice { admin_token, name } => {
                let base = c.http.clone().ok_or_else(|| anyhow!("--http URL needed"))?;
                let auth = format!("Bearer {admin_token}");
                let body = json!({ "name": name }).to_string();
                let (status, text) = http(
                    &format!("{base}/devices"),
                    "POST",
                    &[
                        ("Authorization", &auth),
                        ("Content-Type", "application/json"),
                    ],
                    Some(&body),
                )
                .await?;
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let token = v["result"]["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("POST /devices: HTTP {status}: {text}"))?;
                println!("{token}");
                Ok(None)
            }
        }
    })?;
    if let Some(mut line) = line {
        if let (Some(round), Some(o)) = (c.round, line.as_object_mut()) {
            o.insert("round".into(), json!(round));
        }
        println!("{line}");
    }
    // Idle connections and publisher tasks may still be open; don't wait.
    rt.shutdown_background();
    Ok(())
}

/// A short random id that keeps topics and client ids of runs apart.
fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn rate(n: u64, from: Instant, to: Option<Instant>) -> f64 {
    match to {
        Some(to) if to > from => (n as f64 / to.duration_since(from).as_secs_f64()).round(),
        _ => 0.0,
    }
}

/// "3.1.1" or "5", for the result lines.
fn mqtt_label(v: Version) -> &'static str {
    match v {
        Version::V4 => "3.1.1",
        Version::V5 => "5",
    }
}

/// Opens `n` publishers named `bench-RUN-pub-I`; each with the QoS 1 window
/// it may keep, `window` within what the broker's CONNACK allows.
async fn open_publishers(
    target: &Target,
    run: &str,
    n: usize,
    window: usize,
) -> Result<Vec<(conn::Conn, BytesMut, usize)>> {
    let mut v = Vec::with_capacity(n);
    for p in 0..n {
        let (s, b, connack) =
            wire::open_connack(target, &format!("bench-{run}-pub-{p}"), 60, None).await?;
        v.push((s, b, connack.window(target.version, window)));
    }
    Ok(v)
}

async fn open_subscriber(
    target: &Target,
    client_id: &str,
    filter: &str,
    qos: u8,
    recv_buffer: Option<u32>,
) -> Result<(conn::Conn, BytesMut)> {
    let (mut s, mut b) = wire::open(target, client_id, 120, recv_buffer).await?;
    wire::subscribe_and_wait(&mut s, &mut b, target.version, filter, qos).await?;
    Ok((s, b))
}

/// Runs publishers to completion; returns their results in order.
async fn join_publishers(
    set: Vec<tokio::task::JoinHandle<Result<PubResult>>>,
) -> Result<Vec<PubResult>> {
    let mut out = Vec::with_capacity(set.len());
    for h in set {
        out.push(h.await??);
    }
    Ok(out)
}

async fn fanin(c: &Common, a: &FaninArgs) -> Result<Value> {
    let target = c.target();
    let run = run_id();
    let wall = Instant::now();
    let deadline = wall + Duration::from_secs(c.max_seconds);
    let (sub, subbuf) = open_subscriber(
        &target,
        &format!("bench-{run}-sub"),
        &format!("bench/{run}/#"),
        a.qos,
        None,
    )
    .await?;
    let pubs = open_publishers(&target, &run, a.publishers, a.window).await?;
    let total = a.publishers as u64 * a.messages;
    let base = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let sub_task = tokio::spawn(clients::subscriber(
        sub,
        subbuf,
        SubSpec {
            version: target.version,
            publishers: a.publishers,
            expected: Some(total),
            base,
            latency_from_seq: None,
            publishers_done: done.clone(),
            idle: Duration::from_secs(2),
            give_up: deadline,
            progress: Arc::new(AtomicU64::new(0)),
        },
    ));
    let progress = Arc::new(AtomicU64::new(0));
    let handles = pubs
        .into_iter()
        .enumerate()
        .map(|(i, (s, b, window))| {
            tokio::spawn(clients::publisher(
                s,
                b,
                PubSpec {
                    version: target.version,
                    index: i as u32,
                    topic: format!("bench/{run}/{i}"),
                    qos: a.qos,
                    count: Some(a.messages),
                    window,
                    rate: None,
                    payload: Payload::Binary { size: a.size },
                    base,
                    stop_sending: deadline,
                    give_up: deadline,
                    progress: progress.clone(),
                },
            ))
        })
        .collect();
    let pubs = join_publishers(handles).await?;
    done.store(true, Ordering::Relaxed);
    let sub: SubResult = sub_task.await??;
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let finished = pubs.iter().filter_map(|p| p.finished).max();
    Ok(json!({
        "scenario": "fanin",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "qos": a.qos,
        "publishers": a.publishers,
        "messages": total,
        "size": a.size,
        "window": if a.qos > 0 { json!(a.window) } else { Value::Null },
        "sent_per_s": rate(acked, base, finished),
        "recv_per_s": rate(sub.unique, base, sub.last),
        "received": sub.unique,
        "lost": total - sub.unique.min(total),
        "refused": pubs.iter().map(|p| p.refused).sum::<u64>(),
        "dup": sub.dup,
        "out_of_order": sub.out_of_order,
        "timed_out": sub.timed_out || pubs.iter().any(|p| p.timed_out),
        "seconds": round3(base.elapsed().as_secs_f64()),
        "rss_kb": rss_kb(c.broker_pid),
    }))
}

/// Opens `n` subscribers `bench-RUN-sub-I` on `filter`, `concurrency` at
/// a time, each subscribed (SUBACK read) before this returns.
async fn open_subscribers(
    target: &Target,
    run: &str,
    n: usize,
    filter: &str,
    qos: u8,
    concurrency: usize,
    deadline: Instant,
) -> Result<Vec<(conn::Conn, BytesMut)>> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let target = target.clone();
        let id = format!("bench-{run}-sub-{i}");
        let filter = filter.to_string();
        set.spawn(async move {
            let r = tokio::time::timeout_at(
                deadline.into(),
                open_subscriber(&target, &id, &filter, qos, None),
            )
            .await
            .map_err(|_| anyhow!("subscriber {i}: not subscribed within --max-seconds"))
            .and_then(|r| r.with_context(|| format!("subscriber {i}")));
            drop(permit);
            r
        });
    }
    let mut subs = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        subs.push(r??);
    }
    Ok(subs)
}

async fn fanout(c: &Common, a: &FanoutArgs) -> Result<Value> {
    let target = c.target();
    let run = run_id();
    let deadline = Instant::now() + Duration::from_secs(c.max_seconds);
    let topic = format!("bench/{run}/fanout");
    let subs = open_subscribers(
        &target,
        &run,
        a.subscribers,
        &topic,
        a.qos,
        a.concurrency,
        deadline,
    )
    .await?;
    let (ps, pb, window) = open_publishers(&target, &run, 1, a.window)
        .await?
        .pop()
        .ok_or_else(|| anyhow!("open_publishers opened no publisher"))?;
    let done = Arc::new(AtomicBool::new(false));
    // One task per subscriber on the runtime's worker threads (as many as
    // cores): each wakes when its socket has data and counts what one read
    // brought in place, so the client side costs little per delivery.
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|(s, b)| {
            tokio::spawn(clients::counting_subscriber(
                s,
                b,
                clients::CountSpec {
                    version: target.version,
                    expected: a.messages,
                    publishers_done: done.clone(),
                    idle: Duration::from_secs(2),
                    give_up: deadline,
                },
                clients::payload_seq,
            ))
        })
        .collect();
    let base = Instant::now();
    let publisher = tokio::spawn(clients::publisher(
        ps,
        pb,
        PubSpec {
            version: target.version,
            index: 0,
            topic,
            qos: a.qos,
            count: Some(a.messages),
            window,
            rate: None,
            payload: Payload::Binary { size: a.size },
            base,
            stop_sending: deadline,
            give_up: deadline,
            progress: Arc::new(AtomicU64::new(0)),
        },
    ));
    let p = publisher.await??;
    done.store(true, Ordering::Relaxed);
    let mut results = Vec::with_capacity(sub_tasks.len());
    for t in sub_tasks {
        results.push(t.await??);
    }
    let expected = a.subscribers as u64 * a.messages;
    let unique: u64 = results.iter().map(|r| r.unique).sum();
    let last = results.iter().filter_map(|r| r.last).max();
    Ok(json!({
        "scenario": "fanout",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "qos": a.qos,
        "subscribers": a.subscribers,
        "messages": a.messages,
        "size": a.size,
        "window": if a.qos > 0 { json!(window) } else { Value::Null },
        "sent_per_s": rate(p.acked, base, p.finished),
        "deliveries_per_s": rate(unique, base, last),
        "expected": expected,
        "received": unique,
        "lost": expected - unique.min(expected),
        "min_received": results.iter().map(|r| r.unique).min(),
        "max_received": results.iter().map(|r| r.unique).max(),
        "complete_subscribers": results.iter().filter(|r| r.unique >= a.messages).count(),
        "refused": p.refused,
        "dup": results.iter().map(|r| r.dup).sum::<u64>(),
        "out_of_order": results.iter().map(|r| r.out_of_order).sum::<u64>(),
        "timed_out": p.timed_out || results.iter().any(|r| r.timed_out),
        "seconds": round3(base.elapsed().as_secs_f64()),
        "rss_kb": rss_kb(c.broker_pid),
    }))
}

async fn retained(c: &Common, a: &RetainedArgs) -> Result<Value> {
    if a.topics == 0 {
        bail!("--topics 0: nothing to measure");
    }
    let target = c.target();
    let run = run_id();
    let deadline = Instant::now() + Duration::from_secs(c.max_seconds);
    let prefix = format!("bench/{run}/r/");
    let topic = |i: usize| format!("{prefix}{i}");
    let (mut p, mut buf) = wire::open(&target, &format!("bench-{run}-retainer"), 60, None).await?;
    let rss_before = rss_kb(c.broker_pid);
    let base = Instant::now();
    publish_retained(
        &mut p,
        &mut buf,
        target.version,
        &topic,
        a.topics,
        a.window,
        deadline,
    )
    .await?;
    let publish_secs = base.elapsed().as_secs_f64();
    let mut bye = BytesMut::new();
    wire::disconnect(&mut bye);
    let _ = p.write_all(&bye).await;
    drop(p);
    tokio::time::sleep(Duration::from_secs_f64(a.settle)).await;
    let rss_retained = rss_kb(c.broker_pid);
    // Are they all retained? A new subscriber to the prefix gets each once.
    // Its SUBACK is read with the PUBLISHes: a broker may send retained
    // messages before it, which `subscribe_and_wait` would skip.
    let (mut s, b) = wire::open(&target, &format!("bench-{run}-counter"), 120, None).await?;
    let mut sub = BytesMut::new();
    wire::subscribe(
        &mut sub,
        target.version,
        1,
        &format!("{prefix}#"),
        a.sub_qos,
    );
    s.write_all(&sub).await?;
    let key = |p: &wire::Publish<'_>| -> Option<u64> {
        let rest = p.topic.strip_prefix(prefix.as_bytes())?;
        let i: u64 = std::str::from_utf8(rest).ok()?.parse().ok()?;
        (p.retain && i < a.topics as u64).then_some(i)
    };
    let count = clients::counting_subscriber(
        s,
        b,
        clients::CountSpec {
            version: target.version,
            expected: a.topics as u64,
            publishers_done: Arc::new(AtomicBool::new(true)),
            idle: Duration::from_secs(5),
            give_up: deadline,
        },
        key,
    )
    .await?;
    let rss_after_sub = rss_kb(c.broker_pid);
    let per_topic = match (rss_before, rss_retained) {
        (Some(b), Some(r)) => Some(((r as f64 - b as f64) * 1024.0 / a.topics as f64).round()),
        _ => None,
    };
    Ok(json!({
        "scenario": "retained",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "topics": a.topics,
        "size": 16,
        "publish_per_s": (a.topics as f64 / publish_secs).round(),
        "rss_before_kb": rss_before,
        "rss_retained_kb": rss_retained,
        "rss_after_subscriber_kb": rss_after_sub,
        "bytes_per_topic": per_topic,
        "retained_received": count.unique,
        "missing": a.topics as u64 - count.unique.min(a.topics as u64),
        "dup": count.dup,
        "not_counted": count.received - count.unique - count.dup,
        "timed_out": count.timed_out,
        "seconds": round3(base.elapsed().as_secs_f64()),
    }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn latency(c: &Common, a: &LatencyArgs) -> Result<Value> {
    let target = c.target();
    let run = run_id();
    let (sub, subbuf) = open_subscriber(
        &target,
        &format!("bench-{run}-sub"),
        &format!("bench/{run}/#"),
        a.qos,
        None,
    )
    .await?;
    let mut pubs = open_publishers(&target, &run, 1, 65_000).await?;
    let (ps, pb, window) = pubs
        .pop()
        .ok_or_else(|| anyhow!("open_publishers opened no publisher"))?;
    let warm = (a.rate * a.warmup).round() as u64;
    let total = warm + (a.rate * a.duration).round() as u64;
    let base = Instant::now();
    let deadline = base + Duration::from_secs(c.max_seconds);
    let done = Arc::new(AtomicBool::new(false));
    let sub_task = tokio::spawn(clients::subscriber(
        sub,
        subbuf,
        SubSpec {
            version: target.version,
            publishers: 1,
            expected: Some(total),
            base,
            latency_from_seq: Some(warm),
            publishers_done: done.clone(),
            idle: Duration::from_secs(2),
            give_up: deadline,
            progress: Arc::new(AtomicU64::new(0)),
        },
    ));
    let p = clients::publisher(
        ps,
        pb,
        PubSpec {
            version: target.version,
            index: 0,
            topic: format!("bench/{run}/0"),
            qos: a.qos,
            count: Some(total),
            window,
            rate: Some(a.rate),
            payload: Payload::Binary { size: a.size },
            base,
            stop_sending: deadline,
            give_up: deadline,
            progress: Arc::new(AtomicU64::new(0)),
        },
    )
    .await?;
    done.store(true, Ordering::Relaxed);
    let mut sub = sub_task.await??;
    sub.latencies_us.sort_unstable();
    let l = &sub.latencies_us;
    let q = |x| clients::quantile(l, x);
    let mean = if l.is_empty() {
        None
    } else {
        Some((l.iter().sum::<u64>() as f64 / l.len() as f64).round())
    };
    Ok(json!({
        "scenario": "latency",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "qos": a.qos,
        "rate": a.rate,
        "size": a.size,
        "messages": total,
        "warmup_messages": warm,
        "samples": l.len(),
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": l.last(),
        "mean_us": mean,
        "achieved_rate": rate(p.sent, base, p.finished),
        "lost": total - sub.unique.min(total),
        "refused": p.refused,
        "dup": sub.dup,
        "out_of_order": sub.out_of_order,
        "timed_out": sub.timed_out || p.timed_out,
        "seconds": round3(base.elapsed().as_secs_f64()),
    }))
}

/// The soft limit on open files of this process.
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Opens, times and closes `n` connections one after another: the CONNECT
/// to CONNACK time of each, in µs.
async fn connect_times(target: &Target, run: &str, tag: &str, n: usize) -> Result<Vec<u64>> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let began = Instant::now();
        // A CONNECT that gets no CONNACK within wire::open's 30 s counts as 30 s.
        let opened = wire::open(target, &format!("bench-{run}-{tag}-{i}"), 60, None).await;
        times.push(began.elapsed().as_micros() as u64);
        if let Ok((mut s, _)) = opened {
            let mut bye = BytesMut::new();
            wire::disconnect(&mut bye);
            let _ = s.write_all(&bye).await;
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Publishes `n` retained messages (QoS 1, 16-byte payloads) to `topic(0)`
/// .. `topic(n - 1)` with `window` of them unacknowledged at most, until
/// every one is acknowledged; `Err` past `deadline`. MQTT 5: a PUBACK with
/// a failure reason is an error (the topic would not be retained).
async fn publish_retained(
    p: &mut conn::Conn,
    buf: &mut BytesMut,
    v: Version,
    topic: &dyn Fn(usize) -> String,
    n: usize,
    window: usize,
    deadline: Instant,
) -> Result<()> {
    let window = window.max(1);
    let mut sent = 0usize;
    let mut acked = 0usize;
    let mut out = BytesMut::new();
    while acked < n {
        out.clear();
        while sent < n && sent - acked < window {
            let packet_id = (sent % 65535 + 1) as u16;
            wire::publish(
                &mut out,
                v,
                &topic(sent),
                1,
                true,
                packet_id,
                b"0123456789abcdef",
            );
            sent += 1;
        }
        if !out.is_empty() {
            p.write_all(&out).await?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let packet = tokio::time::timeout(left, wire::read_packet(p, buf))
            .await
            .map_err(|_| {
                anyhow!("{acked} of {n} retained topics acknowledged within --max-seconds")
            })??;
        match packet.kind() {
            wire::PUBACK if packet.reason(v) >= 0x80 => bail!(
                "retained PUBLISH {} refused, reason {:#04x}",
                packet.ack_id(),
                packet.reason(v)
            ),
            wire::PUBACK => acked += 1,
            wire::DISCONNECT => bail!(
                "DISCONNECT from the broker after {acked} retained topics, reason {:#04x}",
                packet.reason(v)
            ),
            _ => {}
        }
    }
    Ok(())
}

async fn churn(c: &Common, a: &ChurnArgs) -> Result<Value> {
    let target = c.target();
    let run = run_id();
    let deadline = Instant::now() + Duration::from_secs(c.max_seconds);
    let topic = |i: usize| format!("bench/{run}/r/{i}");
    let (mut p, mut buf) = wire::open(&target, &format!("bench-{run}-retainer"), 60, None).await?;
    publish_retained(
        &mut p,
        &mut buf,
        target.version,
        &topic,
        a.topics,
        200,
        deadline,
    )
    .await?;
    let mut out = BytesMut::new();
    let before = connect_times(&target, &run, "idle", a.probes).await?;
    // The client that will leave: clean session, many literal filters.
    let (mut heavy, mut hbuf) =
        wire::open(&target, &format!("bench-{run}-heavy"), 60, None).await?;
    let mut packet_id = 1u16;
    for chunk in (0..a.subscriptions).collect::<Vec<_>>().chunks(100) {
        let filters: Vec<String> = chunk.iter().map(|i| topic(*i)).collect();
        let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
        out.clear();
        wire::subscribe_many(&mut out, target.version, packet_id, &filters, 0);
        heavy.write_all(&out).await?;
        loop {
            let packet = wire::read_packet(&mut heavy, &mut hbuf).await?;
            if packet.kind() == wire::SUBACK {
                break;
            }
        }
        packet_id = packet_id.wrapping_add(1).max(1);
    }
    // It leaves without reading its retained messages, while a prober connects.
    let probe_target = target.clone();
    let probe_run = run.clone();
    let probes = a.probes;
    let prober =
        tokio::spawn(
            async move { connect_times(&probe_target, &probe_run, "leave", probes).await },
        );
    let mut bye = BytesMut::new();
    wire::disconnect(&mut bye);
    heavy.write_all(&bye).await?;
    drop(heavy);
    let during = prober.await??;
    let q = |v: &[u64], x: f64| clients::quantile(v, x).map(|us| round3(us as f64 / 1000.0));
    Ok(json!({
        "scenario": "churn",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "topics": a.topics,
        "subscriptions": a.subscriptions,
        "connect_ms_p50_before": q(&before, 0.5),
        "connect_ms_max_before": q(&before, 1.0),
        "connect_ms_p50_leaving": q(&during, 0.5),
        "connect_ms_max_leaving": q(&during, 1.0),
        "rss_kb": rss_kb(c.broker_pid),
    }))
}

async fn connections(c: &Common, a: &ConnectionsArgs) -> Result<Value> {
    if let Some(limit) = nofile_limit() {
        if (a.clients as u64) + 64 > limit {
            bail!(
                "{} clients need more open files than this process may have ({limit}); \
                 raise it with `ulimit -n {}` first",
                a.clients,
                a.clients + 1024
            );
        }
    }
    let target = c.target();
    let run = run_id();
    let deadline = Instant::now() + Duration::from_secs(c.max_seconds);
    let settle = Duration::from_secs_f64(a.settle);
    let rss_before = rss_kb(c.broker_pid);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..a.clients {
        let permit = sem.clone().acquire_owned().await?;
        let target = target.clone();
        let id = format!("bench-{run}-idle-{i}");
        let ka = a.keep_alive;
        set.spawn(async move {
            let r = tokio::time::timeout_at(deadline.into(), wire::open(&target, &id, ka, None))
                .await
                .map_err(|_| anyhow!("deadline"))
                .and_then(|r| r);
            drop(permit);
            r.map(|(s, _)| s)
        });
        if Instant::now() >= deadline {
            break;
        }
    }
    let mut streams = Vec::with_capacity(a.clients);
    let mut failed = 0usize;
    let mut first_error = None;
    while let Some(r) = set.join_next().await {
        match r? {
            Ok(s) => streams.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_connected = rss_kb(c.broker_pid);
    // Are they all still there? A closed socket reads EOF at once.
    let mut alive = 0usize;
    for s in &mut streams {
        if s.is_open() {
            alive += 1;
        }
    }
    let connected = streams.len();
    for mut s in streams {
        let mut bye = BytesMut::new();
        wire::disconnect(&mut bye);
        s.try_write(&bye);
        let _ = s.shutdown().await;
    }
    tokio::time::sleep(settle + Duration::from_secs(1)).await;
    let rss_after = rss_kb(c.broker_pid);
    let per_conn = |with: Option<u64>| match (rss_before, with) {
        (Some(b), Some(w)) if connected > 0 => {
            Some(round3((w as f64 - b as f64) / connected as f64))
        }
        _ => None,
    };
    Ok(json!({
        "scenario": "connections",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "clients": a.clients,
        "connected": connected,
        "alive_after_settle": alive,
        "failed": failed,
        "first_error": first_error,
        "connect_per_s": (connected as f64 / connect_secs).round(),
        "connect_seconds": round3(connect_secs),
        "rss_before_kb": rss_before,
        "rss_connected_kb": rss_connected,
        "rss_after_kb": rss_after,
        "kb_per_connection": per_conn(rss_connected),
        "kb_per_connection_after_leaving": per_conn(rss_after),
    }))
}

/// A minimal HTTP/1.0 client (brook's API on loopback): (status, body).
async fn http(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(hostport))
        .await
        .map_err(|_| anyhow!("connect {hostport}: timeout"))??;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {hostport}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut resp))
        .await
        .map_err(|_| anyhow!("{method} {url}: no answer within 30 s"))??;
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {url}: not an HTTP answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `GET /data?variable=V&query=count` with a device token: Ok(Some(n)), or
/// Ok(None) with the reason when the API does not give a count.
async fn count_rows(base: &str, token: &str, variable: &str) -> Result<Result<u64, String>> {
    let url = format!("{base}/data?variable={variable}&query=count");
    let (status, body) = http(&url, "GET", &[("Device-Token", token)], None).await?;
    if status != 200 {
        return Ok(Err(format!(
            "GET /data?query=count answered HTTP {status}: {}",
            body.chars().take(120).collect::<String>()
        )));
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let r = &v["result"];
    let n = r
        .as_u64()
        .or_else(|| r.as_f64().map(|f| f as u64))
        .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
        .or_else(|| r["count"].as_u64())
        .or_else(|| r["value"].as_u64());
    Ok(n.ok_or_else(|| format!("GET /data?query=count: no number in {body}")))
}

async fn durable(c: &Common, a: &DurableArgs) -> Result<Value> {
    let target = c.target();
    let run = run_id();
    let variable = format!("b{run}");
    let wall = Instant::now();
    let deadline = wall + Duration::from_secs(c.max_seconds);
    let token = c.password.clone().unwrap_or_default();
    let before = match &c.http {
        Some(h) => count_rows(h, &token, &variable).await?,
        None => Err("no --http URL given".to_string()),
    };
    let pubs = open_publishers(&target, &run, a.publishers, a.window).await?;
    let total = a.publishers as u64 * a.messages;
    let base = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let handles = pubs
        .into_iter()
        .enumerate()
        .map(|(i, (s, b, window))| {
            tokio::spawn(clients::publisher(
                s,
                b,
                PubSpec {
                    version: target.version,
                    index: i as u32,
                    topic: if a.tago_topic {
                        "tago/data/post".to_string()
                    } else {
                        format!("{}/{run}/{i}", a.prefix)
                    },
                    qos: 1,
                    count: Some(a.messages),
                    window,
                    rate: None,
                    payload: Payload::Json {
                        variable: variable.clone(),
                    },
                    base,
                    stop_sending: deadline,
                    give_up: deadline,
                    progress: progress.clone(),
                },
            ))
        })
        .collect();
    let pubs = join_publishers(handles).await?;
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let finished = pubs.iter().filter_map(|p| p.finished).max();
    // Acknowledged after commit: the rows should all be there at once.
    let mut rows_at_ack = None;
    let mut rows = None;
    let mut note = None;
    if let (Some(h), Ok(b)) = (&c.http, &before) {
        match count_rows(h, &token, &variable).await? {
            Ok(n) => {
                rows_at_ack = Some(n - n.min(*b));
                let until = Instant::now() + Duration::from_secs(5);
                let mut last = n;
                while last - last.min(*b) < acked && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Ok(n) = count_rows(h, &token, &variable).await? {
                        last = n;
                    }
                }
                rows = Some(last - last.min(*b));
            }
            Err(e) => note = Some(e),
        }
    } else if let Err(e) = &before {
        note = Some(format!("rows not counted: {e}"));
    }
    Ok(json!({
        "scenario": "durable",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "qos": 1,
        "via": if a.tago_topic { "tago/data/post" } else { "insert_bucket" },
        "publishers": a.publishers,
        "messages": total,
        "window": a.window,
        "sent_per_s": rate(acked, base, finished),
        "acked": acked,
        "refused": pubs.iter().map(|p| p.refused).sum::<u64>(),
        "rows_expected": total,
        "rows_at_last_ack": rows_at_ack,
        "rows_stored": rows,
        "note": note,
        "timed_out": pubs.iter().any(|p| p.timed_out),
        "seconds": round3(base.elapsed().as_secs_f64()),
        "rss_kb": rss_kb(c.broker_pid),
    }))
}

struct Phase {
    pub_per_s: f64,
    tail_pub_per_s: f64,
    recv_per_s: f64,
    sent: u64,
    acked: u64,
    received: u64,
    lost: u64,
    rss_kb: Vec<Option<u64>>,
    acked_per_sample: Vec<u64>,
    slow_disconnected: Option<bool>,
}

/// One phase of `slow`: publishers for `duration`, a normal subscriber, and
/// optionally a subscriber that never reads.
async fn slow_phase(c: &Common, a: &SlowArgs, with_slow: bool, deadline: Instant) -> Result<Phase> {
    let target = c.target();
    let run = run_id();
    let filter = format!("bench/{run}/#");
    let (sub, subbuf) =
        open_subscriber(&target, &format!("bench-{run}-sub"), &filter, a.qos, None).await?;
    let mut slow_sub = None;
    if with_slow {
        let (s, _) = open_subscriber(
            &target,
            &format!("bench-{run}-slow"),
            &filter,
            a.qos,
            Some(a.recv_buffer),
        )
        .await?;
        slow_sub = Some(s);
    }
    let pubs = open_publishers(&target, &run, a.publishers, a.window).await?;
    let base = Instant::now();
    let stop_sending = base + Duration::from_secs_f64(a.duration);
    if stop_sending >= deadline {
        bail!("--duration does not fit in --max-seconds");
    }
    let done = Arc::new(AtomicBool::new(false));
    let sub_task = tokio::spawn(clients::subscriber(
        sub,
        subbuf,
        SubSpec {
            version: target.version,
            publishers: a.publishers,
            expected: None,
            base,
            latency_from_seq: None,
            publishers_done: done.clone(),
            idle: Duration::from_secs(2),
            give_up: deadline,
            progress: Arc::new(AtomicU64::new(0)),
        },
    ));
    let progress = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(i, (s, b, window))| {
            tokio::spawn(clients::publisher(
                s,
                b,
                PubSpec {
                    version: target.version,
                    index: i as u32,
                    topic: format!("bench/{run}/{i}"),
                    qos: a.qos,
                    count: None,
                    window,
                    rate: None,
                    payload: Payload::Binary { size: a.size },
                    base,
                    stop_sending,
                    give_up: deadline,
                    progress: progress.clone(),
                },
            ))
        })
        .collect();
    // Sample RSS and progress until publishing stops.
    let mut rss = vec![rss_kb(c.broker_pid)];
    let mut acked_samples = vec![0];
    let period = Duration::from_millis(a.sample_ms.max(10));
    let mut tick = base + period;
    while tick <= stop_sending {
        tokio::time::sleep_until(tick.into()).await;
        rss.push(rss_kb(c.broker_pid));
        acked_samples.push(progress.load(Ordering::Relaxed));
        tick += period;
    }
    tokio::time::sleep_until(stop_sending.into()).await;
    let acked_at_stop = progress.load(Ordering::Relaxed);
    // Was the slow subscriber disconnected by the broker? Read what it holds
    // for a moment: EOF or a reset says yes. Then let it go either way.
    let mut slow_disconnected = None;
    if let Some(mut s) = slow_sub {
        let mut buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + Duration::from_millis(500);
        let mut closed = false;
        while Instant::now() < until {
            match tokio::time::timeout_at(until.into(), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
        slow_disconnected = Some(closed);
    }
    let pubs = join_publishers(handles).await?;
    done.store(true, Ordering::Relaxed);
    let sub = sub_task.await??;
    rss.push(rss_kb(c.broker_pid));
    let sent: u64 = pubs.iter().map(|p| p.sent).sum();
    let acked: u64 = pubs.iter().map(|p| p.acked).sum();
    let per_sample: Vec<u64> = acked_samples.windows(2).map(|w| w[1] - w[0]).collect();
    // The last third of the phase: after brook's slow_subscriber_timeout
    // (10 s of 15 by default) has let the publishers go.
    let third = per_sample.len() / 3;
    let tail_secs = third as f64 * a.sample_ms as f64 / 1000.0;
    let tail_pub_per_s = if third > 0 {
        (per_sample[per_sample.len() - third..].iter().sum::<u64>() as f64 / tail_secs).round()
    } else {
        0.0
    };
    Ok(Phase {
        pub_per_s: (acked_at_stop as f64 / a.duration).round(),
        tail_pub_per_s,
        recv_per_s: rate(sub.unique, base, sub.last),
        sent,
        acked,
        received: sub.unique,
        lost: acked - acked.min(sub.unique),
        rss_kb: rss,
        acked_per_sample: per_sample,
        slow_disconnected,
    })
}

async fn slow(c: &Common, a: &SlowArgs) -> Result<Value> {
    let wall = Instant::now();
    let deadline = wall + Duration::from_secs(c.max_seconds);
    let half = wall + Duration::from_secs(c.max_seconds) / 2;
    let baseline = slow_phase(c, a, false, half).await?;
    let slow = slow_phase(c, a, true, deadline).await?;
    let rss: Vec<u64> = slow.rss_kb.iter().flatten().copied().collect();
    Ok(json!({
        "scenario": "slow",
        "broker": c.broker,
        "mqtt": mqtt_label(c.mqtt),
        "qos": a.qos,
        "publishers": a.publishers,
        "size": a.size,
        "window": a.window,
        "duration": a.duration,
        "baseline_pub_per_s": baseline.pub_per_s,
        "slow_pub_per_s": slow.pub_per_s,
        "slow_pub_ratio": if baseline.pub_per_s > 0.0 {
            json!(round3(slow.pub_per_s / baseline.pub_per_s))
        } else {
            Value::Null
        },
        "baseline_tail_pub_per_s": baseline.tail_pub_per_s,
        "slow_tail_pub_per_s": slow.tail_pub_per_s,
        "slow_tail_ratio": if baseline.tail_pub_per_s > 0.0 {
            json!(round3(slow.tail_pub_per_s / baseline.tail_pub_per_s))
        } else {
            Value::Null
        },
        "baseline_recv_per_s": baseline.recv_per_s,
        "slow_recv_per_s": slow.recv_per_s,
        "baseline_lost": baseline.lost,
        "lost": slow.lost,
        "sent": slow.sent,
        "acked": slow.acked,
        "received": slow.received,
        "slow_sub_disconnected": slow.slow_disconnected,
        "rss_start_kb": rss.first(),
        "rss_max_kb": rss.iter().max(),
        "rss_end_kb": rss.last(),
        "baseline_rss_max_kb": baseline.rss_kb.iter().flatten().max(),
        "sample_ms": a.sample_ms,
        "rss_kb_samples": slow.rss_kb,
        "acked_per_sample": slow.acked_per_sample,
        "seconds": round3(wall.elapsed().as_secs_f64()),
    }))
}
