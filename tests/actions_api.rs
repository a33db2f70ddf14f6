//! The admin API's action views on a running server: `GET /actions` lists the
//! loaded actions with their last run, `GET /actions/{name}/runs` pages an
//! action's runs newest first; both want the admin token.
//!
//! The runs are real: the server's own supervisor records them as a device
//! publishes.

mod common;

use common::raw::{publish_packet, ConnectOpts, Raw, PUBACK};
use common::{Server, WAIT};
use serde_json::{json, Value};

const ACTIONS: &str = "[[action]]\nname = \"store\"\ntrigger = { mqtt_topic = [\"sensors/#\"] }\ntype = \"insert_bucket\"\n\n\
     [[action]]\nname = \"idle\"\nenabled = false\ntrigger = { device_event = \"connect\" }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"hello\" }\n";

/// Loads the two actions and has a device publish five readings to
/// `sensors/t0` .. `sensors/t4`, the last one invalid; returns the ids of the
/// five runs of `store`, oldest first.
fn record(s: &Server) -> Vec<i64> {
    s.install_action("a", ACTIONS);
    let d = s.create_device("dev");
    let mut c = Raw::login(s.mqtt_port, &ConnectOpts::new("dev", Some(&d.token)));
    for i in 0..5u16 {
        let payload = if i == 4 {
            r#"{"variable":"not ok","value":1}"#.to_string()
        } else {
            format!(r#"{{"variable":"t","value":{i}}}"#)
        };
        c.send(&publish_packet(
            &format!("sensors/t{i}"),
            payload.as_bytes(),
            1,
            false,
            false,
            i + 1,
        ));
        let ack = c.expect_kind(PUBACK, WAIT, "PUBACK");
        assert_eq!(ack.pkid(), i + 1);
    }
    let mut runs = s.wait_for_runs("store", 5);
    runs.reverse();
    runs.iter().map(|r| r["id"].as_i64().unwrap_or(0)).collect()
}

#[test]
fn actions_are_listed_with_their_last_run() {
    let s = Server::start();
    let ids = record(&s);
    let list = s.admin_ok("GET", "/actions", None);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["idle", "store"]);
    let idle = &list[0];
    assert_eq!(idle["enabled"], json!(false));
    assert_eq!(idle["type"], "mqtt_publish");
    assert_eq!(idle["trigger"], json!({"device_event": "connect"}));
    assert_eq!(idle["last_run"], json!(null));
    assert_eq!(idle["line"], 6);
    let store = &list[1];
    assert_eq!(store["hash"].as_str().map(str::len), Some(64));
    assert_eq!(store["last_run"]["id"], json!(ids[4]));
    assert_eq!(store["last_run"]["outcome"], "error");
    assert!(
        store["last_run"]["duration_ms"]
            .as_i64()
            .is_some_and(|ms| ms >= 0),
        "{store}"
    );
    assert_eq!(
        store["last_run"]["trigger"],
        json!({"kind": "mqtt_topic", "detail": "sensors/t4"})
    );
    assert!(
        store["loaded_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{store}"
    );
}

#[test]
fn runs_are_paged_newest_first() {
    let s = Server::start();
    let ids = record(&s);
    let page = s.admin_ok("GET", "/actions/store/runs?limit=2", None);
    let got: Vec<i64> = page
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(got, vec![ids[4], ids[3]]);
    let next = s.admin_ok(
        "GET",
        &format!("/actions/store/runs?limit=2&before={}", ids[3]),
        None,
    );
    assert_eq!(next[0]["id"], json!(ids[2]));
    assert_eq!(next[0]["trigger"]["detail"], "sensors/t2");
    assert_eq!(next.as_array().map(Vec::len), Some(2));
    // Default page: all five.
    let all = s.admin_ok("GET", "/actions/store/runs", None);
    assert_eq!(all.as_array().map(Vec::len), Some(5));
    // A loaded action without runs: an empty page, not a 404.
    assert_eq!(s.admin_ok("GET", "/actions/idle/runs", None), json!([]));

    let (status, body) = s.admin("GET", "/actions/nope/runs", None);
    assert_eq!((status, &body["message"]), (404, &json!("no such action")));
    let (status, body) = s.admin("GET", "/actions/store/runs?limit=0", None);
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.admin("GET", "/actions/store/runs?before=x", None);
    assert_eq!(status, 400, "{body}");
}

#[test]
fn action_views_want_the_admin_token() {
    let s = Server::start();
    for path in ["/actions", "/actions/store/runs"] {
        let (status, body) = s.http_request("GET", path, Some("Bearer wrong"), None);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["status"], json!(false));
    }
}

#[test]
fn a_failed_reload_lists_each_problem_and_keeps_the_actions() {
    let s = Server::start();
    let dir = s.dir.path().join("actions");
    std::fs::write(
        dir.join("good.toml"),
        "[[action]]\nname = \"store\"\ntrigger = { mqtt_topic = [\"sensors/#\"] }\ntype = \"insert_bucket\"\n",
    )
    .expect("write good.toml");
    assert_eq!(
        s.admin_ok("POST", "/actions/reload", None),
        "1 actions loaded"
    );
    std::fs::write(
        dir.join("bad.toml"),
        "[[action]]\nname = \"broken\"\ntrigger = { mqtt_topic = [\"a/#\"] }\ntype = \"no_such_type\"\n",
    )
    .expect("write bad.toml");
    let (status, body) = s.admin("POST", "/actions/reload", None);
    assert_eq!(status, 400, "{body}");
    let problems = body["problems"].as_array().expect("a list of problems");
    assert_eq!(problems.len(), 1, "{body}");
    let bad = dir.join("bad.toml").display().to_string();
    let first = problems[0].as_str().unwrap_or("");
    assert!(
        first.starts_with(&format!("{bad}:4: ")),
        "FILE:LINE: message, got {first}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("the previous actions stay: "),
        "{body}"
    );
    let names: Vec<Value> = s
        .admin_ok("GET", "/actions", None)
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("store")], "the loaded set stays");
}
