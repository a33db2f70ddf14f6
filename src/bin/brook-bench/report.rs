//! Turns result lines (one JSON object per scenario run) into Markdown
//! tables: per scenario and figure, the median for brook and for each peer
//! that has runs in the file (rumqttd, Mosquitto) over the runs, and brook's
//! ratio to each peer; brook's durable ingest against each peer's QoS 1
//! fan-in relay, over the medians and round by round (field `round`); when
//! brook was also run over WebSocket (label `brook-ws`), brook over ws next
//! to tcp; and when a broker was also run with `--mqtt 5` (label
//! `BROKER-v5`), its MQTT 5 figures next to its 3.1.1 ones, with the ratio
//! v5/v4.

use serde_json::Value;

/// The brokers brook is compared with, in the order of the columns.
const PEERS: [&str; 2] = ["rumqttd", "mosquitto"];

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
        "fanout" => &[
            (
                "deliveries_per_s",
                "deliveries/s, all subscribers (higher is better)",
            ),
            ("sent_per_s", "published msg/s"),
            ("lost", "lost (expected − received, all subscribers)"),
            ("min_received", "fewest received by one subscriber"),
            ("max_received", "most received by one subscriber"),
            ("dup", "duplicated"),
            ("out_of_order", "out of order"),
        ],
        "retained" => &[
            (
                "bytes_per_topic",
                "RSS bytes per retained topic (lower is better)",
            ),
            ("rss_before_kb", "RSS before, KB"),
            ("rss_retained_kb", "RSS with the topics retained, KB"),
            (
                "retained_received",
                "retained messages a new subscriber got",
            ),
            ("missing", "retained topics missing"),
            ("publish_per_s", "retained PUBLISHes acknowledged/s"),
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
        "fanout" => format!(
            "fanout QoS {} 1→{}×{}×{} B",
            n("qos"),
            n("subscribers"),
            n("messages"),
            n("size")
        ),
        "retained" => format!("retained {} topics × {} B", n("topics"), n("size")),
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

/// brook's durable ingest (`dk`) against each peer's QoS 1 fan-in (`fk`)
/// round by round (result lines with a `round`), and the median of those
/// ratios; empty when no line has a round.
fn durable_rounds(lines: &[Value], dk: &str, fk: &str, peers: &[&str]) -> String {
    let mut rounds: Vec<u64> = lines
        .iter()
        .filter(|v| key(v).as_deref() == Some(dk))
        .filter_map(|v| v["round"].as_u64())
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
    if rounds.is_empty() {
        return String::new();
    }
    let at = |k: &str, broker: &str, field: &str, round: u64| {
        median(
            lines
                .iter()
                .filter(|v| key(v).as_deref() == Some(k) && v["broker"] == broker)
                .filter(|v| v["round"].as_u64() == Some(round))
                .filter_map(|v| number(&v[field]))
                .collect(),
        )
    };
    let mut out = format!("\nDurable ingest ({dk}) against the QoS 1 relay ({fk}), round by round:\n\n| round | brook stored msg/s |");
    for p in peers {
        out.push_str(&format!(" {p} relayed msg/s |"));
    }
    for p in peers {
        out.push_str(&format!(" brook/{p} |"));
    }
    out.push_str("\n| --- | ---: |");
    out.push_str(&" ---: |".repeat(2 * peers.len()));
    out.push('\n');
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    for r in &rounds {
        let b = at(dk, "brook", "sent_per_s", *r);
        let ms: Vec<_> = peers.iter().map(|p| at(fk, p, "recv_per_s", *r)).collect();
        out.push_str(&format!("| {r} | {} |", fmt(b)));
        for m in &ms {
            out.push_str(&format!(" {} |", fmt(*m)));
        }
        for (i, m) in ms.iter().enumerate() {
            out.push_str(&format!(" {} |", ratio(b, *m)));
            if let (Some(b), Some(m)) = (b, m) {
                if *m != 0.0 {
                    ratios[i].push(b / m);
                }
            }
        }
        out.push('\n');
    }
    out.push_str("| median of the rounds' ratios | |");
    out.push_str(&" |".repeat(peers.len()));
    for xs in ratios {
        match median(xs) {
            Some(x) => out.push_str(&format!(" {x:.2} |")),
            None => out.push_str(" – |"),
        }
    }
    out.push('\n');
    out
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
    let peers: Vec<&str> = PEERS
        .iter()
        .copied()
        .filter(|p| lines.iter().any(|v| v["broker"] == *p))
        .collect();
    let mut out = String::new();
    out.push_str("| scenario | figure | brook |");
    for p in &peers {
        out.push_str(&format!(" {p} |"));
    }
    for p in &peers {
        out.push_str(&format!(" brook/{p} |"));
    }
    let initials: Vec<&str> = std::iter::once("b")
        .chain(peers.iter().map(|p| &p[..1]))
        .collect();
    out.push_str(&format!(" runs ({}) |\n", initials.join("/")));
    out.push_str("| --- | --- | ---: |");
    out.push_str(&" ---: |".repeat(2 * peers.len()));
    out.push_str(" --- |\n");
    // One row: brook's median, each peer's, brook's ratio to each.
    let row = |out: &mut String,
               k: &str,
               label: &str,
               b: (Option<f64>, usize),
               ms: &[(Option<f64>, usize)]| {
        out.push_str(&format!("| {k} | {label} | {} |", fmt(b.0)));
        for m in ms {
            out.push_str(&format!(" {} |", fmt(m.0)));
        }
        for m in ms {
            out.push_str(&format!(" {} |", ratio(b.0, m.0)));
        }
        let runs: Vec<String> = std::iter::once(b.1)
            .chain(ms.iter().map(|m| m.1))
            .map(|n| n.to_string())
            .collect();
        out.push_str(&format!(" {} |\n", runs.join("/")));
    };
    for (k, s) in &keys {
        for (field, label) in figures(s) {
            let b = pick(k, "brook", field);
            let ms: Vec<_> = peers.iter().map(|p| pick(k, p, field)).collect();
            if b.1 == 0 && ms.iter().all(|m| m.1 == 0) {
                continue;
            }
            row(&mut out, k, label, b, &ms);
        }
    }
    // Durable ingest against each peer's QoS 1 fan-in, which stores
    // nothing. The insert_bucket run when its rows were counted, else the
    // run on tago/data/post (stored by brook without any action).
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
    let mut per_round = String::new();
    if let (Some((dk, _)), Some((fk, _))) = (durable, fanin1) {
        let (rows, _) = pick(dk, "brook", "rows_stored");
        let (expected, _) = pick(dk, "brook", "rows_expected");
        let verified = match (rows, expected) {
            (Some(r), Some(e)) if r >= e => "all rows counted".to_string(),
            (Some(r), Some(e)) => {
                format!("rows counted: only {} of {}", fmt(Some(r)), fmt(Some(e)))
            }
            (Some(_), None) => "rows counted".to_string(),
            (None, _) => "rows NOT counted (no GET /data count)".to_string(),
        };
        let b = pick(dk, "brook", "sent_per_s");
        let ms: Vec<_> = peers.iter().map(|p| pick(fk, p, "recv_per_s")).collect();
        row(
            &mut out,
            &format!("{dk} vs {fk}"),
            &format!("brook stored msg/s vs the peer's QoS 1 relay, received msg/s; {verified}"),
            b,
            &ms,
        );
        per_round = durable_rounds(&lines, dk, fk, &peers);
    }
    out.push_str(&per_round);
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
    fn each_peer_gets_a_median_and_a_ratio() {
        let text = r#"{"scenario":"fanout","broker":"brook","qos":0,"subscribers":50,"messages":100,"size":64,"deliveries_per_s":400,"lost":0}
{"scenario":"fanout","broker":"rumqttd","qos":0,"subscribers":50,"messages":100,"size":64,"deliveries_per_s":800,"lost":0}
{"scenario":"fanout","broker":"mosquitto","qos":0,"subscribers":50,"messages":100,"size":64,"deliveries_per_s":100,"lost":3}
{"scenario":"retained","broker":"brook","topics":1000,"size":16,"bytes_per_topic":600}
{"scenario":"retained","broker":"mosquitto","topics":1000,"size":16,"bytes_per_topic":400}
{"scenario":"fanout","broker":"brook-v5","qos":0,"subscribers":50,"messages":100,"size":64,"deliveries_per_s":380}
"#;
        let t = table(text);
        assert!(
            t.contains("| scenario | figure | brook | rumqttd | mosquitto | brook/rumqttd | brook/mosquitto | runs (b/r/m) |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout QoS 0 1→50×100×64 B | deliveries/s, all subscribers (higher is better) | 400 | 800 | 100 | 0.50 | 4.00 | 1/1/1 |"),
            "{t}"
        );
        assert!(
            t.contains("| fanout QoS 0 1→50×100×64 B | lost (expected − received, all subscribers) | 0 | 0 | 3 | – | 0.00 | 1/1/1 |"),
            "{t}"
        );
        // A peer without a run of this scenario: "–", no ratio.
        assert!(
            t.contains("| retained 1000 topics × 16 B | RSS bytes per retained topic (lower is better) | 600 | – | 400 | – | 1.50 | 1/0/1 |"),
            "{t}"
        );
        // The v5 run stays out of this table, into the v5/v4 one.
        assert!(!t.contains("| 380 | 800 |"), "{t}");
        assert!(t.contains("| fanout QoS 0 1→50×100×64 B | deliveries/s, all subscribers (higher is better) | brook | 400 | 380 | 0.95 | 1/1 |"), "{t}");
    }

    #[test]
    fn durable_against_each_peers_relay_over_medians_and_per_round() {
        let mut text = String::new();
        for (round, b, r, m) in [(1, 100, 400, 50), (2, 120, 300, 40), (3, 90, 200, 60)] {
            text.push_str(&format!(
                r#"{{"scenario":"durable","broker":"brook","via":"insert_bucket","publishers":4,"messages":400,"sent_per_s":{b},"rows_stored":400,"rows_expected":400,"round":{round}}}
{{"scenario":"fanin","broker":"rumqttd","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":{r},"round":{round}}}
{{"scenario":"fanin","broker":"mosquitto","qos":1,"publishers":4,"messages":400,"size":64,"recv_per_s":{m},"round":{round}}}
"#
            ));
        }
        let t = table(&text);
        // Medians: brook 100, rumqttd 300, mosquitto 50.
        assert!(
            t.contains("| durable via insert_bucket 4×100 vs fanin QoS 1 4×100×64 B | brook stored msg/s vs the peer's QoS 1 relay, received msg/s; all rows counted | 100 | 300 | 50 | 0.33 | 2.00 | 3/3/3 |"),
            "{t}"
        );
        assert!(t.contains("| round | brook stored msg/s | rumqttd relayed msg/s | mosquitto relayed msg/s | brook/rumqttd | brook/mosquitto |"), "{t}");
        assert!(t.contains("| 2 | 120 | 300 | 40 | 0.40 | 3.00 |"), "{t}");
        // Ratios per round: rumqttd 0.25, 0.40, 0.45; mosquitto 2.00, 3.00, 1.50.
        assert!(
            t.contains("| median of the rounds' ratios | | | | 0.40 | 2.00 |"),
            "{t}"
        );
        // Rows short of what was acknowledged are said so.
        let short = text.replace(r#""rows_stored":400"#, r#""rows_stored":399"#);
        assert!(table(&short).contains("rows counted: only 399 of 400"));
        // Without rounds (lines from before --round), no per-round table.
        let no_rounds: String = text
            .lines()
            .map(|l| format!("{}}}\n", &l[..l.find(r#","round""#).unwrap()]))
            .collect();
        let t = table(&no_rounds);
        assert!(
            t.contains("| 100 | 300 | 50 | 0.33 | 2.00 | 3/3/3 |"),
            "{t}"
        );
        assert!(!t.contains("round by round"), "{t}");
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
