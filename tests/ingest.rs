//! Durable ingest through `insert_bucket` under load, against the real
//! server: QoS 1 publishes pipelined by several devices at once (so that
//! many of them share a commit) are acknowledged only after the commit that
//! holds their rows; every acknowledged publish is a row; and the run
//! records, which count the runs of one commit batch in one row per action,
//! device and topic, add up to one run per publish, while a rejected publish
//! keeps a record of its own with its reason.

mod common;

use std::collections::BTreeSet;
use std::thread;

use common::raw::{publish_packet, ConnectOpts, Raw, PUBACK};
use common::{wait_until, Server, WAIT};
use serde_json::Value;

const STORE: &str = "[[action]]\nname = \"store\"\ntrigger = { mqtt_topic = [\"ingest/#\"] }\ntype = \"insert_bucket\"\n";

/// The payload of message `value`: a valid reading, or (when `bad`) an item
/// whose variable name is refused, which rejects the whole publish.
fn payload(value: u32, bad: bool) -> String {
    let variable = if bad { "not ok" } else { "reading" };
    format!(r#"{{"variable":"{variable}","value":{value}}}"#)
}

/// Logs in as `client` with `token` and sends `n` QoS 1 publishes on
/// `topic`, values `first..first + n`, all before reading any PUBACK; then
/// reads the PUBACKs. `bad(i)` picks the rejected ones. Returns the values
/// whose publishes were acknowledged, and keeps the connection.
fn pipeline(
    port: u16,
    client: &str,
    token: &str,
    topic: &str,
    first: u32,
    n: u16,
    bad: fn(u16) -> bool,
) -> (Raw, Vec<u32>) {
    let mut c = Raw::login(port, &ConnectOpts::new(client, Some(token)));
    let mut burst = Vec::new();
    for i in 1..=n {
        let p = payload(first + u32::from(i), bad(i));
        burst.extend(publish_packet(topic, p.as_bytes(), 1, false, false, i));
    }
    c.send(&burst);
    let mut acked = Vec::new();
    for _ in 0..n {
        let ack = c.expect_kind(PUBACK, WAIT, "PUBACK");
        acked.push(first + u32::from(ack.pkid()));
    }
    (c, acked)
}

/// Every run record of `action`, through the admin API, page by page.
fn all_runs(s: &Server, action: &str) -> Vec<Value> {
    let mut runs: Vec<Value> = Vec::new();
    loop {
        let before = runs
            .last()
            .map(|r| format!("&before={}", r["id"]))
            .unwrap_or_default();
        let page = s.admin_ok(
            "GET",
            &format!("/actions/{action}/runs?limit=500{before}"),
            None,
        );
        let page = page.as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return runs;
        }
        runs.extend(page);
    }
}

fn count_of(run: &Value) -> u64 {
    run["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("a run without a count: {run}"))
}

/// Rows of `device` in the data API, counted by SQLite.
fn rows(s: &Server, device: &str) -> u64 {
    let n = s.admin_ok(
        "GET",
        &format!("/devices/{device}/data?query=count&variable=reading"),
        None,
    );
    n.as_f64().unwrap_or_else(|| panic!("not a number: {n}")) as u64
}

#[test]
fn every_acked_publish_is_a_row_and_the_run_counts_add_up_with_rejections_kept_apart() {
    const DEVICES: usize = 4;
    const EACH: u16 = 400;
    // Every 37th publish of a device is rejected.
    fn bad(i: u16) -> bool {
        i.is_multiple_of(37)
    }
    let rejected_each = (1..=EACH).filter(|i| bad(*i)).count() as u64;
    let good_each = u64::from(EACH) - rejected_each;

    let s = Server::start();
    s.install_action("store", STORE);
    let devices: Vec<_> = (0..DEVICES)
        .map(|d| s.create_device(&format!("dev{d}")))
        .collect();
    let port = s.mqtt_port;
    let sent: Vec<(Raw, Vec<u32>)> = devices
        .iter()
        .enumerate()
        .map(|(d, dev)| {
            let token = dev.token.clone();
            thread::spawn(move || {
                pipeline(
                    port,
                    &format!("c{d}"),
                    &token,
                    &format!("ingest/{d}"),
                    d as u32 * 10_000,
                    EACH,
                    bad,
                )
            })
        })
        .map(|t| t.join().expect("publisher thread"))
        .collect();
    for (_, acked) in &sent {
        assert_eq!(acked.len(), usize::from(EACH), "every publish acknowledged");
    }

    // Acknowledged after commit: the rows are there at once.
    for dev in &devices {
        assert_eq!(rows(&s, &dev.name), good_each, "rows of {}", dev.name);
    }

    // Rejections are recorded on their own (after their PUBACK, so wait).
    let total_rejected = rejected_each * DEVICES as u64;
    let mut runs = Vec::new();
    wait_until("every rejection recorded", WAIT, || {
        runs = all_runs(&s, "store");
        runs.iter().filter(|r| r["outcome"] == "error").count() as u64 == total_rejected
    });
    let mut ok_count = 0;
    for run in &runs {
        match run["outcome"].as_str() {
            Some("ok") => {
                ok_count += count_of(run);
                let detail = run["detail"].as_str().unwrap_or_default();
                assert!(
                    detail.starts_with(&format!("{} items stored", count_of(run))),
                    "one item per publish: {run}"
                );
                assert!(
                    run["trigger"]["detail"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("ingest/")),
                    "{run}"
                );
                assert!(run["device_id"].is_string(), "{run}");
            }
            Some("error") => {
                assert_eq!(count_of(run), 1, "a rejection is a record of its own");
                let detail = run["detail"].as_str().unwrap_or_default();
                assert!(detail.contains("variable"), "its reason: {run}");
            }
            _ => panic!("unexpected run {run}"),
        }
    }
    assert_eq!(
        ok_count,
        good_each * DEVICES as u64,
        "one run per stored publish"
    );
    assert_eq!(
        s.metric("brook_action_runs_total{outcome=\"ok\"}") as u64,
        ok_count
    );
    assert_eq!(
        s.metric("brook_action_runs_total{outcome=\"error\"}") as u64,
        total_rejected
    );
    assert_eq!(
        s.metric("brook_data_items_stored_total") as u64,
        good_each * DEVICES as u64
    );
    // The newest run of the action, as `GET /actions` lists it, carries
    // its count too.
    let list = s.admin_ok("GET", "/actions", None);
    let last = &list[0]["last_run"];
    assert!(count_of(last) >= 1, "{list}");
}

#[test]
fn every_acked_row_and_its_run_count_survive_kill_9_right_after_the_acks() {
    const EACH: u16 = 1000;
    let mut s = Server::start();
    s.install_action("store", STORE);
    let dev = s.create_device("dev");
    let second = s.create_device("dev2");
    let port = s.mqtt_port;
    let (t1, t2) = (dev.token.clone(), second.token.clone());
    let a = thread::spawn(move || pipeline(port, "a", &t1, "ingest/a", 0, EACH, |_| false));
    let b = thread::spawn(move || pipeline(port, "b", &t2, "ingest/b", 10_000, EACH, |_| false));
    let (_ca, acked_a) = a.join().expect("publisher a");
    let (_cb, acked_b) = b.join().expect("publisher b");
    s.kill9();

    let db = s.dir.path().join("data").join("brook.db");
    let conn = rusqlite::Connection::open(db).expect("open brook.db");
    let values = |device: &str| -> BTreeSet<u32> {
        conn.prepare("SELECT value FROM data WHERE device_id = ?1")
            .expect("prepare")
            .query_map([device], |r| r.get::<_, String>(0))
            .expect("query")
            .map(|v| v.expect("row").parse().expect("a number"))
            .collect()
    };
    assert_eq!(
        values(&dev.id),
        acked_a.iter().copied().collect::<BTreeSet<u32>>()
    );
    assert_eq!(
        values(&second.id),
        acked_b.iter().copied().collect::<BTreeSet<u32>>()
    );
    // The run records were in the same transactions as the rows.
    let counted: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(count), 0) FROM action_runs WHERE action = 'store' AND outcome = 'ok'",
            [],
            |r| r.get(0),
        )
        .expect("sum of counts");
    assert_eq!(counted, 2 * i64::from(EACH));
    drop(conn);

    // And the restarted server says the same.
    s.restart();
    assert_eq!(rows(&s, "dev"), u64::from(EACH));
    assert_eq!(rows(&s, "dev2"), u64::from(EACH));
    let runs = all_runs(&s, "store");
    assert_eq!(runs.iter().map(count_of).sum::<u64>(), 2 * u64::from(EACH));
}
