//! Turns result lines (one JSON object per scenario run) into a Markdown
//! table: per scenario and figure, the median for brook and for Mosquitto
//! over the runs, and the brook/Mosquitto ratio; when brook was also run
//! over WebSocket (label `brook-ws`), brook over ws next to tcp; and when a
//! broker was also run with `--mqtt 5` (label `BROKER-v5`), its MQTT 5
//! figures next to its 3.1.1 ones, with the ratio v5/v4.

use serde_json::Value;

/// (field, label) per scenario; the label says which way is better.
fn figures(scenario: &str) -> &'static [(&'static str, &'static str)] {
    match scenario {
        "fanin" => &[
            ("sent_per_s", "published msg/s (higher is better)"),
            ("recv_per_s", "received msg/s (higher is better)"),
            ("lost", "lost"),
            ("dup", "duplicated"),
            ("out_of_order", "out of order"),
        ],
        "latency" => &[
            ("p50_us", "p50 µs (lower is better)"),
            ("p99_us", "p99 µs (lower is better)"),
            ("p999_us", "p99.9 µs (lower is better)"),
            ("max_us", "max µs (lower is better)"),
            ("lost", "lost"),
        ],
        "connections" => &[
            ("connect_per_s", "connects/s (higher is better)"),
            ("connected", "connected"),
            ("rss_before_kb", "RSS before, KB"),
            ("rss_connected_kb", "RSS all connected, KB"),
            ("rss_after_kb", "RSS after they left, KB"),
            ("kb_per_connection", "KB per connection (lower is better)"),
            (
                "kb_per_connection_after_leaving",
                "KB per connection kept after leaving",
            ),
        ],
        "slow" => &[
            ("baseline_pub_per_s", "published msg/s, no slow sub"),
            ("slow_pub_per_s", "published msg/s, slow sub"),
            ("slow_pub_ratio", "slow / no-slow speed (higher is better)"),
            ("slow_tail_ratio", "same, last third of the run"),
            ("lost", "lost (normal subscriber)"),
            ("slow_sub_disconnected", "slow sub disconnected (1 = yes)"),
            ("rss_start_kb", "RSS at start, KB"),
            ("rss_max_kb", "RSS max, KB (lower is better)"),
            ("rss_end_kb", "RSS at end, KB"),
        ],
        "churn" => &[
            ("connect_ms_p50_before", "CONNECT ms p50, before"),
            ("connect_ms_max_before", "CONNECT ms max, before"),
            ("connect_ms_p50_leaving", "CONNECT ms p50, while it leaves"),
            (
                "connect_ms_max_leaving",
                "CONNECT ms max, while it leaves (lower is better)",
            ),
            ("rss_kb", "RSS, KB"),
        ],
        "durable" => &[
            ("sent_per_s", "acknowledged msg/s (higher is better)"),
            ("rows_stored", "rows stored"),
            ("rows_expected", "rows expected"),
        ],
        _ => &[],
    }
}

fn key(v: &Value) -> Option<String> {
    let s = v["scenario"].as_str()?;
    let n = |f: &str| v[f].as_f64().unwrap_or(0.0);
    Some(match s {
        "fanin" => {
            let p = n("publishers").max(1.0);
            format!(
                "fanin QoS {} {}×{}×{} B",
                n("qos"),
                p,
                n("messages") / p,
                n("size")
            )
        }
        "latency" => format!("latency QoS {} at {}/s", n("qos"), n("rate")),
        "connections" => format!("connections {} idle", n("clients")),
        "churn" => format!(
            "churn: {} retained topics, a client with {} subscriptions leaves",
            n("topics"),
            n("subscriptions")
        ),
        "slow" => format!(
            "slow subscriber QoS {} {}×{} s",
            n("qos"),
            n("publishers"),
            n("duration")
        ),
        "durable" => format!(
            "durable via {} {}×{}",
            v["via"].as_str().unwrap_or("insert_bucket"),
            n("publishers"),
            n("messages") / n("publishers").max(1.0)
        ),
        other => other.to_string(),
    })
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        other => other.as_f64(),
    }
}

pub(crate) fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let m = xs.len() / 2;
    Some(if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    })
}

fn fmt(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(x) if x.abs() >= 100.0 || x.fract() == 0.0 => format!("{:.0}", x),
        Some(x) => format!("{:.2}", x),
    }
}

fn ratio(b: Option<f64>, m: Option<f64>) -> String {
    match (b, m) {
        (Some(b), Some(m)) if m != 0.0 => format!("{:.2}", b / m),
        _ => "–".into(),
    }
}

pub(crate) fn table(text: &str) -> String {
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.is_object())
        .collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for v in &lines {
        if let (Some(k), Some(s)) = (key(v), v["scenario"].as_str()) {
            if !keys.iter().any(|(kk, _)| *kk == k) {
                keys.push((k, s.to_string()));
            }
        }
    }
    let pick = |k: &str, broker: &str, field: &str| -> (Option<f64>, usize) {
        let xs: Vec<f64> = lines
            .iter()
            .filter(|v| key(v).as_deref() == Some(k) && v["broker"] == broker)
            .filter_map(|v| number(&v[field]))
            .collect();
        let n = xs.len();
        (median(xs), n)
    };
    let mut out = String::new();
    out.push_str("| scenario | figure | brook | mosquitto | brook/mosquitto | runs (b/m) |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | --- |\n");
    for (k, s) in &keys {
        for (field, label) in figures(s) {
            let (b, nb) = pick(k, "brook", field);
            let (m, nm) = pick(k, "mosquitto", field);
            if nb == 0 && nm == 0 {
                continue;
            }
            out.push_str(&format!(
                "| {k} | {label} | {} | {} | {} | {nb}/{nm} |\n",
                fmt(b),
                fmt(m),
                ratio(b, m)
            ));
        }
    }
    // brook over WebSocket (`--ws`, broker label `brook-ws`) next to brook
    // over TCP, when there were such runs.
    if lines.iter().any(|v| v["broker"] == "brook-ws") {
        out.push_str("\n| scenario | figure | brook tcp | brook ws | ws/tcp | runs (t/w) |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: | --- |\n");
        for (k, s) in &keys {
            for (field, label) in figures(s) {
                let (t, nt) = pick(k, "brook", field);
                let (w, nw) = pick(k, "brook-ws", field);
                if nw == 0 {
                    continue;
                }
                out.push_str(&format!(
                    "| {k} | {label} | {} | {} | {} | {nt}/{nw} |\n",
                    fmt(t),
                    fmt(w),
                    ratio(w, t)
                ));
            }
        }
    }
    // MQTT 5 (`--mqtt 5`, broker label `BROKER-v5`) next to 3.1.1 (label
    // `BROKER`), per broker that had such runs.
    let mut v5_brokers: Vec<String> = Vec::new();
    for v in &lines {
        if let Some(base) = v["broker"].as_str().and_then(|b| b.strip_suffix("-v5")) {
            if !v5_brokers.iter().any(|b| b == base) {
                v5_brokers.push(base.to_string());
            }
        }
    }
    if !v5_brokers.is_empty() {
        out.push_str(
            "\n| scenario | figure | broker | MQTT 3.1.1 | MQTT 5 | v5/v4 | runs (4/5) |\n",
        );
        out.push_str("| --- | --- | --- | ---: | ---: | ---: | --- |\n");
        for (k, s) in &keys {
            for (field, label) in figures(s) {
                for base in &v5_brokers {
                    let (four, n4) = pick(k, base, field);
                    let (five, n5) = pick(k, &format!("{base}-v5"), field);
                    if n5 == 0 {
                        continue;
                    }
                    out.push_str(&format!(
                        "| {k} | {label} | {base} | {} | {} | {} | {n4}/{n5} |\n",
                        fmt(four),
                        fmt(five),
                        ratio(five, four)
                    ));
                }
            }
        }
    }
    // Durable ingest against Mosquitto's QoS 1 fan-in, which stores nothing.
    // The insert_bucket run when its rows were counted, else the run on
    // tago/data/post (stored by brook without any action).
    let counted = |k: &str| pick(k, "brook", "rows_stored").1 > 0;
    let durable = keys
        .iter()
        .find(|(k, s)| s == "durable" && k.contains("insert_bucket") && counted(k))
        .or_else(|| {
            keys.iter()
                .find(|(k, s)| s == "durable" && k.contains("tago/data/post"))
        })
        .or_else(|| keys.iter().find(|(_, s)| s == "durable"));
    let fanin1 = keys
        .iter()
        .find(|(k, s)| s == "fanin" && k.starts_with("fanin QoS 1 "));
    if let (Some((dk, _)), Some((fk, _))) = (durable, fanin1) {
        let (b, nb) = pick(dk, "brook", "sent_per_s");
        let (m, nm) = pick(fk, "mosquitto", "recv_per_s");
        let (rows, _) = pick(dk, "brook", "rows_stored");
        let verified = if rows.is_some() {
            "rows counted"
        } else {
            "rows NOT counted (no GET /data count)"
        };
        out.push_str(&format!(
            "| {dk} vs {fk} | brook stored msg/s vs mosquitto received msg/s, {verified} | {} | {} | {} | {nb}/{nm} |\n",
            fmt(b),
            fmt(m),
            ratio(b, m)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_runs_get_their_own_table() {
        let text = r#"{"scenario":"fanin","broker":"brook","qos":0,"publishers":4,"messages":400,"size":64,"recv_per_s":200}
{"scenario":"fanin","broker":"brook-ws","qos":0,"publishers":4,"messages":400,"size":64,"recv_per_s":100}
"#;
        let t = table(text);
        assert!(t.contains("| brook tcp | brook ws | ws/tcp |"), "{t}");
        assert!(t.contains("| 200 | 100 | 0.50 | 1/1 |"), "{t}");
        assert!(!table(&text.replace("brook-ws", "other")).contains("ws/tcp"));
    }

    #[test]
    fn mqtt5_runs_get_their_own_table() {
        let text = r#"{"scenario":"latency","broker":"brook","qos":0,"rate":1000,"p50_us":100}
{"scenario":"latency","broker":"brook-v5","qos":0,"rate":1000,"p50_us":110}
{"scenario":"latency","broker":"mosquitto","qos":0,"rate":1000,"p50_us":70}
{"scenario":"latency","broker":"mosquitto-v5","qos":0,"rate":1000,"p50_us":70}
"#;
        let t = table(text);
        assert!(t.contains("| MQTT 3.1.1 | MQTT 5 | v5/v4 |"), "{t}");
        assert!(
            t.contains("| p50 µs (lower is better) | brook | 100 | 110 | 1.10 | 1/1 |"),
            "{t}"
        );
        assert!(
            t.contains("| p50 µs (lower is better) | mosquitto | 70 | 70 | 1.00 | 1/1 |"),
            "{t}"
        );
        // The v5 lines stay out of the brook/mosquitto table.
        assert!(
            t.contains(
                "| latency QoS 0 at 1000/s | p50 µs (lower is better) | 100 | 70 | 1.43 | 1/1 |"
            ),
            "{t}"
        );
        assert!(!table(&text.replace("-v5", "-x")).contains("v5/v4"));
    }

    #[test]
    fn medians_and_ratio() {
        let text = r#"{"scenario":"fanin","broker":"brook","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":300}
{"scenario":"fanin","broker":"brook","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":100}
{"scenario":"fanin","broker":"brook","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":200}
{"scenario":"fanin","broker":"mosquitto","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":100}
not json"#;
        let t = table(text);
        assert!(
            t.contains("| received msg/s (higher is better) | 200 | 100 | 2.00 | 3/1 |"),
            "{t}"
        );
        assert_eq!(median(vec![1.0, 3.0]), Some(2.0));
    }
}
