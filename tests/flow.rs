//! Flow without silent loss (the README's guarantees): many QoS 1 messages from
//! several publishers all reach a subscriber once and in order per
//! publisher; a subscriber that never reads holds publishers back for
//! `slow_subscriber_timeout`, is then disconnected, the publishers go on, and
//! the broker's memory stays bounded throughout.
//!
//! The tests here are heavy; a lock keeps them from running at the same
//! time on a 2-core machine, so that timing bounds mean something.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::raw::{ConnectOpts, Raw};
use common::{text, Config, Mqtt, Server};
use rumqttc::{Event, Packet, QoS};

static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts this client's PUBACKs until `n` arrived; returns the time of each.
fn collect_pubacks(m: &mut Mqtt, n: usize, deadline: Instant) -> Vec<Instant> {
    let mut times = Vec::with_capacity(n);
    while times.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let what = format!("PUBACK {} of {n}", times.len() + 1);
        m.expect(&what, left, |e| match e {
            Event::Incoming(Packet::PubAck(_)) => Some(()),
            _ => None,
        });
        times.push(Instant::now());
    }
    times
}

/// 4 publishers × 50,000 QoS 1 messages to one subscriber on `flow/#`:
/// every message arrives exactly once, in order per publisher. (A debug
/// build does this in a few seconds on 2 cores, so plain `cargo test` runs
/// the full count.)
#[test]
fn four_publishers_deliver_every_qos1_message_once_in_order() {
    let _heavy = heavy();
    const PUBLISHERS: usize = 4;
    let n: usize = 50_000;
    let deadline = Instant::now() + Duration::from_secs(60);

    let s = Server::start();
    let token = s.token("d1");
    let mut sub = Mqtt::connect(s.mqtt_options("flow-sub", &token), 100);
    sub.subscribe("flow/#", QoS::AtLeastOnce);

    let started = Instant::now();
    let mut handles = Vec::new();
    for k in 0..PUBLISHERS {
        let opts = s.mqtt_options(&format!("flow-pub-{k}"), &token);
        handles.push(thread::spawn(move || {
            let mut m = Mqtt::connect(opts, 1000);
            let topic = format!("flow/p{k}");
            for seq in 0..n {
                m.publish(&topic, QoS::AtLeastOnce, false, format!("{k}:{seq}"));
            }
            m.publish(&topic, QoS::AtLeastOnce, false, format!("{k}:end"));
            collect_pubacks(&mut m, n + 1, deadline);
        }));
    }

    let mut next: HashMap<usize, usize> = HashMap::new();
    let mut ended = 0;
    while ended < PUBLISHERS {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = sub.recv(left);
        let body = text(&p);
        let (k, seq) = body
            .split_once(':')
            .unwrap_or_else(|| panic!("unexpected payload {body:?}"));
        let k: usize = k.parse().expect("publisher number");
        let expected = next.entry(k).or_insert(0);
        if seq == "end" {
            assert_eq!(
                *expected, n,
                "publisher {k}: its end marker came after {expected} of {n} messages"
            );
            ended += 1;
            continue;
        }
        let seq: usize = seq.parse().expect("sequence number");
        assert_eq!(
            seq, *expected,
            "publisher {k}: got message {seq} where {expected} was next (a loss, a duplicate or a reorder)"
        );
        *expected += 1;
    }
    for h in handles {
        h.join().expect("publisher thread");
    }
    let took = started.elapsed();
    eprintln!(
        "flow: {} messages in {took:?} ({:.0} msg/s)",
        PUBLISHERS * n,
        (PUBLISHERS * n) as f64 / took.as_secs_f64()
    );
}

/// A subscriber that never reads its socket, and a publisher sending
/// 100,000 QoS 1 messages of ~100 bytes: the publisher is held back (a gap
/// of about `slow_subscriber_timeout` = 2 s in its PUBACKs), then goes on and
/// completes; the slow subscriber is disconnected; the broker's RSS stays
/// under 200 MB all along (sampled every 20 ms).
#[test]
fn slow_subscriber_holds_publisher_back_then_is_disconnected() {
    let _heavy = heavy();
    const MESSAGES: usize = 100_000;
    const RSS_LIMIT_KB: u64 = 200 * 1024;
    let s = Server::start_with(
        Config::new()
            .mqtt("slow_subscriber_timeout", "\"2s\"")
            .mqtt("max_inflight", "20")
            .mqtt("max_queued_messages", "1000"),
    );
    let token = s.token("d1");

    // keep-alive 0: only slowness may get this client disconnected.
    let mut slow = Raw::login(
        s.mqtt_port,
        &ConnectOpts::new("slow-sub", Some(&token)).keep_alive(0),
    );
    assert_eq!(slow.subscribe(1, &[("slow/t", 1)]), vec![1]);

    let sampler = RssSampler::start(s.pid());

    let mut publisher = Mqtt::connect(s.mqtt_options("fast-pub", &token), 1000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let payload = vec![b'p'; 100];
    let acks = {
        let client = publisher.client.clone();
        let payload = payload.clone();
        let feeder = thread::spawn(move || {
            for _ in 0..MESSAGES {
                if client
                    .publish("slow/t", QoS::AtLeastOnce, false, payload.clone())
                    .is_err()
                {
                    break;
                }
            }
        });
        let acks = collect_pubacks(&mut publisher, MESSAGES, deadline);
        feeder.join().expect("feeder thread");
        acks
    };
    let took = started.elapsed();
    let max_rss_kb = sampler.stop();

    let mut max_gap = Duration::ZERO;
    let mut prev = started;
    for t in &acks {
        max_gap = max_gap.max(t.duration_since(prev));
        prev = *t;
    }
    eprintln!("slow subscriber: {MESSAGES} acked in {took:?}, longest PUBACK gap {max_gap:?}, max RSS {max_rss_kb} kB");

    assert!(!publisher.closed, "the publisher must stay connected");
    assert!(
        max_gap >= Duration::from_millis(1500),
        "the publisher was never held back: longest gap between PUBACKs {max_gap:?} (slow_subscriber_timeout = 2s)"
    );
    assert!(
        max_rss_kb < RSS_LIMIT_KB,
        "broker RSS reached {max_rss_kb} kB (limit {RSS_LIMIT_KB} kB)"
    );
    slow.assert_closed(
        Duration::from_secs(10),
        "the slow subscriber must be disconnected by the broker",
    );
}

/// A QoS 0 subscriber that never reads holds its publishers back like any
/// full subscriber, but only for `slow_subscriber_timeout`: then it is a
/// slow consumer, disconnected, and what it held is dropped and counted;
/// the publisher's 100,000 QoS 1 messages are all acknowledged and the
/// broker's RSS stays under 200 MB.
#[test]
fn qos0_subscriber_that_never_reads_holds_publishers_back_only_until_it_is_slow() {
    let _heavy = heavy();
    const MESSAGES: usize = 100_000;
    const RSS_LIMIT_KB: u64 = 200 * 1024;
    let timeout = Duration::from_secs(2);
    let s = Server::start_with(
        Config::new()
            .mqtt("slow_subscriber_timeout", "\"2s\"")
            .mqtt("max_queued_messages", "1000"),
    );
    let token = s.token("d1");
    let mut slow = Raw::login(
        s.mqtt_port,
        &ConnectOpts::new("slow-qos0", Some(&token)).keep_alive(0),
    );
    assert_eq!(slow.subscribe(1, &[("slow0/t", 0)]), vec![0]);

    let sampler = RssSampler::start(s.pid());
    let mut publisher = Mqtt::connect(s.mqtt_options("qos0-pub", &token), 1000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let client = publisher.client.clone();
    let feeder = thread::spawn(move || {
        for _ in 0..MESSAGES {
            if client
                .publish("slow0/t", QoS::AtLeastOnce, false, vec![b'q'; 100])
                .is_err()
            {
                break;
            }
        }
    });
    let acks = collect_pubacks(&mut publisher, MESSAGES, deadline);
    feeder.join().expect("feeder thread");
    let max_rss_kb = sampler.stop();

    let mut max_gap = Duration::ZERO;
    let mut prev = started;
    for t in &acks {
        max_gap = max_gap.max(t.duration_since(prev));
        prev = *t;
    }
    eprintln!("qos0 slow subscriber: {MESSAGES} acked in {:?}, longest PUBACK gap {max_gap:?}, max RSS {max_rss_kb} kB", started.elapsed());
    assert_eq!(acks.len(), MESSAGES, "every publish acknowledged");
    assert!(
        max_gap >= timeout.mul_f32(0.9),
        "a full QoS 0 subscriber holds its publishers back (longest gap {max_gap:?})"
    );
    assert!(
        max_gap < timeout + Duration::from_secs(3),
        "but only until it is found slow (longest gap {max_gap:?})"
    );
    assert!(
        max_rss_kb < RSS_LIMIT_KB,
        "broker RSS reached {max_rss_kb} kB (limit {RSS_LIMIT_KB} kB)"
    );
    assert!(s.metric("brook_slow_consumers_total") >= 1.0, "found slow");
    assert!(
        s.metric("brook_messages_dropped_total{reason=\"slow_consumer\"}") > 0.0,
        "what the slow subscriber held is counted as dropped"
    );
    assert_eq!(
        s.metric("brook_messages_dropped_total{reason=\"queue_full_qos0\"}"),
        0.0,
        "nothing is dropped for a full queue while the subscriber may still read"
    );
}

/// A QoS 0 subscriber that keeps reading loses nothing, however fast its
/// publisher: a full queue holds the publisher back instead of dropping.
#[test]
fn a_qos0_subscriber_that_keeps_reading_loses_nothing() {
    let _heavy = heavy();
    const MESSAGES: usize = 50_000;
    let s = Server::start_with(Config::new().mqtt("max_queued_messages", "100"));
    let token = s.token("d1");
    let mut sub = Raw::login(s.mqtt_port, &ConnectOpts::new("reader0", Some(&token)));
    assert_eq!(sub.subscribe(1, &[("fast0/t", 0)]), vec![0]);
    let port = s.mqtt_port;
    let pub_token = token.clone();
    let publisher = thread::spawn(move || {
        let mut p = Raw::login(port, &ConnectOpts::new("writer0", Some(&pub_token)));
        let mut burst = Vec::new();
        for i in 0..MESSAGES {
            burst.extend(common::raw::publish_packet(
                "fast0/t",
                format!("{i:08}").as_bytes(),
                0,
                false,
                false,
                0,
            ));
            if burst.len() > 64 * 1024 {
                p.send(&burst);
                burst.clear();
            }
        }
        p.send(&burst);
        p
    });
    let mut got = 0usize;
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while got < MESSAGES && Instant::now() < deadline {
        match sub.read_packet(Duration::from_secs(30)) {
            Ok(packet) if packet.kind == 3 => {
                let n: usize = String::from_utf8_lossy(&packet.publish().payload)
                    .parse()
                    .expect("a number");
                assert!(
                    last.is_none_or(|l| n == l + 1),
                    "in order: {n} after {last:?}"
                );
                last = Some(n);
                got += 1;
            }
            Ok(_) => {}
            Err(e) => panic!("subscriber ended after {got} of {MESSAGES}: {e:?}"),
        }
    }
    let _p = publisher.join().expect("publisher thread");
    assert_eq!(
        got, MESSAGES,
        "every QoS 0 message reached a subscriber that kept reading"
    );
    assert_eq!(
        s.metric("brook_messages_dropped_total{reason=\"queue_full_qos0\"}"),
        0.0
    );
}

/// Samples a process's RSS every 20 ms on its own thread, keeping the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max_kb: Arc<AtomicU64>,
    thread: thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kb = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, max_kb) = (stop.clone(), max_kb.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = rss_kb(pid) {
                        max_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler {
            stop,
            max_kb,
            thread,
        }
    }

    /// Stops sampling; the peak RSS seen, in kB.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler");
        self.max_kb.load(Ordering::Relaxed)
    }
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}
