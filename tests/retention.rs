//! Data that ages out (issue 14), against the real server: `[data]
//! retention`, a device's `retention` and `max_rows` set through the admin
//! API, pruned in the background while a QoS 1 publisher keeps writing;
//! `GET /data` never answering an expired item; the 64 KB parser limit.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rumqttc::QoS;
use serde_json::{json, Value};

/// Rows of a device in brook.db, read beside the server (WAL).
fn rows(s: &Server, device_id: &str) -> i64 {
    let db = s.dir.path().join("data").join("brook.db");
    let conn = rusqlite::Connection::open(db).expect("open brook.db");
    conn.busy_timeout(WAIT).expect("busy timeout");
    conn.query_row(
        "SELECT count(*) FROM data WHERE device_id = ?1",
        [device_id],
        |r| r.get(0),
    )
    .expect("count rows")
}

/// An ISO time `ago` before now.
fn iso_ago(ago: Duration) -> String {
    let t = std::time::SystemTime::now() - ago;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Posts `n` items of `variable`, `ago` old, in bodies under the size limit.
fn post_old(s: &Server, token: &str, variable: &str, n: usize, ago: Duration) {
    let time = iso_ago(ago);
    let mut left = n;
    while left > 0 {
        let now = left.min(2000);
        let items: Vec<Value> = (0..now)
            .map(|i| json!({"variable": variable, "value": i, "time": time}))
            .collect();
        let (status, v) = s.http_request("POST", "/data", Some(token), Some(Value::Array(items)));
        assert_eq!(status, 200, "POST /data: {v}");
        left -= now;
    }
}

fn new_device(s: &Server, body: Value) -> Device {
    let r = s.admin_ok("POST", "/devices", Some(body.clone()));
    Device {
        name: body["name"].as_str().unwrap_or_default().to_string(),
        id: id_string(&r["device"]["id"]),
        token: r["token"].as_str().unwrap_or_default().to_string(),
        token_id: id_string(&r["token_id"]),
    }
}

#[test]
fn retention_removes_old_rows_in_the_background_without_blocking_a_qos1_ingest() {
    let s = Server::start_with(Config::new().raw("[data]\nprune_interval = \"200ms\"\n"));
    let old = new_device(&s, json!({"name": "old"}));
    post_old(&s, &old.token, "t", 20_000, Duration::from_secs(2 * 3600));
    assert_eq!(rows(&s, &old.id), 20_000, "kept: no retention yet");

    // A publisher that times each PUBACK while the pruner works.
    let live = s.create_device("live");
    let stop = Arc::new(AtomicBool::new(false));
    let mut c = s.mqtt("live", &live.token);
    let publisher = {
        let stop = stop.clone();
        thread::spawn(move || {
            let (mut sent, mut worst) = (0usize, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) || sent < 50 {
                let began = Instant::now();
                c.publish_acked(
                    "tago/data/post",
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"variable":"n","value":{sent}}}"#),
                );
                worst = worst.max(began.elapsed());
                sent += 1;
            }
            (sent, worst)
        })
    };
    let pruned_before = s.metric("brook_data_pruned_total");
    let r = s.admin_ok("PATCH", "/devices/old", Some(json!({"retention": "1h"})));
    assert_eq!(r["retention"], "1h", "{r}");
    wait_until("the old rows to be pruned", Duration::from_secs(60), || {
        rows(&s, &old.id) == 0
    });
    stop.store(true, Ordering::Relaxed);
    let (sent, worst) = publisher.join().expect("publisher");
    eprintln!("{sent} QoS 1 publishes while pruning; slowest PUBACK {worst:?}");
    assert_eq!(
        rows(&s, &live.id),
        sent as i64,
        "every acknowledged publish stored"
    );
    // A debug build on two busy cores: generous, but far below what one
    // 20 000-row delete in one transaction would hold a publisher.
    assert!(worst < Duration::from_secs(1), "slowest PUBACK {worst:?}");
    assert!(s.metric("brook_data_pruned_total") - pruned_before >= 20_000.0);
    // New data of the device stays.
    let (status, _) = s.http_request(
        "POST",
        "/data",
        Some(&old.token),
        Some(json!({"variable": "t", "value": 1})),
    );
    assert_eq!(status, 200);
    assert_eq!(rows(&s, &old.id), 1);
}

#[test]
fn max_rows_keeps_the_newest_and_the_server_default_applies_to_the_rest() {
    let s = Server::start_with(
        Config::new().raw("[data]\nretention = \"1d\"\nprune_interval = \"200ms\"\n"),
    );
    let capped = new_device(&s, json!({"name": "capped", "max_rows": 100}));
    let shown = s.admin_ok("GET", "/devices/capped", None);
    assert_eq!(shown["max_rows"], 100, "{shown}");
    assert_eq!(shown["retention"], Value::Null, "the server's default");
    // 150 readings a minute apart, the oldest first.
    let items: Vec<Value> = (0..150u64)
        .map(|i| json!({"variable": "t", "value": i, "time": iso_ago(Duration::from_secs(60 * (150 - i)))}))
        .collect();
    let (status, v) = s.http_request(
        "POST",
        "/data",
        Some(&capped.token),
        Some(Value::Array(items)),
    );
    assert_eq!(status, 200, "{v}");
    wait_until("the bucket to be cut to 100 rows", WAIT, || {
        rows(&s, &capped.id) == 100
    });
    let kept = s.admin_ok(
        "GET",
        "/devices/capped/data?variable=t&qty=1000&ordination=ascending",
        None,
    );
    let values: Vec<i64> = kept
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["value"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(values.len(), 100, "{kept}");
    assert_eq!(values.iter().min(), Some(&50), "the oldest 50 went");

    // [data] retention = 1d for a device without its own; "0s" keeps for ever.
    let plain = s.create_device("plain");
    let forever = new_device(&s, json!({"name": "forever", "retention": "0s"}));
    post_old(&s, &plain.token, "t", 10, Duration::from_secs(2 * 86_400));
    post_old(&s, &forever.token, "t", 10, Duration::from_secs(2 * 86_400));
    wait_until("the plain device's old rows to go", WAIT, || {
        rows(&s, &plain.id) == 0
    });
    // The pruner has been through the devices at least once since.
    let pruned = s.metric("brook_data_pruned_total");
    post_old(&s, &plain.token, "t", 1, Duration::from_secs(2 * 86_400));
    wait_until("a next round", WAIT, || {
        s.metric("brook_data_pruned_total") > pruned
    });
    assert_eq!(rows(&s, &forever.id), 10);

    // PATCH null goes back to the defaults.
    let r = s.admin_ok(
        "PATCH",
        "/devices/capped",
        Some(json!({"max_rows": null, "retention": "30d"})),
    );
    assert_eq!(
        (r["max_rows"].clone(), r["retention"].clone()),
        (Value::Null, json!("30d"))
    );
    let (status, v) = s.admin("PATCH", "/devices/capped", Some(json!({"max_rows": 0})));
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.admin(
        "PATCH",
        "/devices/capped",
        Some(json!({"retention": "soon"})),
    );
    assert_eq!(status, 400, "{v}");
}

#[test]
fn get_data_never_answers_an_item_past_its_retention_even_before_it_is_pruned() {
    // The pruner's first round runs at start, then not for an hour.
    let s = Server::start_with(Config::new().raw("[data]\nprune_interval = \"1h\"\n"));
    let d = s.create_device("d1");
    post_old(&s, &d.token, "t", 5, Duration::from_secs(3 * 3600));
    post_old(&s, &d.token, "t", 2, Duration::from_secs(60));
    let r = s.admin_ok("PATCH", "/devices/d1", Some(json!({"retention": "2h"})));
    assert_eq!(r["retention"], "2h");
    assert_eq!(rows(&s, &d.id), 7, "not pruned yet");
    let (status, v) = s.http_request("GET", "/data?variable=t&qty=100", Some(&d.token), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"].as_array().map(Vec::len), Some(2), "{v}");
    let admin = s.admin_ok("GET", "/devices/d1/data?variable=t&qty=100", None);
    assert_eq!(admin.as_array().map(Vec::len), Some(2), "{admin}");
}

#[test]
fn a_parser_over_64_kb_is_refused_at_add_and_at_patch() {
    let s = Server::start();
    let big = format!("// {}\npayload = [];\n", "x".repeat(64 * 1024));
    let (status, v) = s.admin(
        "POST",
        "/devices",
        Some(json!({"name": "big", "parser": big})),
    );
    assert_eq!(status, 400, "{v}");
    let message = v.to_string();
    assert!(message.contains("64 KB"), "{message}");
    s.create_device("small");
    let (status, v) = s.admin("PATCH", "/devices/small", Some(json!({"parser": big})));
    assert_eq!(status, 400, "{v}");
    let ok = "payload = payload;".to_string();
    s.admin_ok("PATCH", "/devices/small", Some(json!({"parser": ok})));
}
