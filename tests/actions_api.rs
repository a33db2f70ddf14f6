//! The admin API's action views on a running server: `GET /actions` lists the
//! loaded actions with their last run, `GET /actions/{name}/runs` pages an
//! action's runs newest first; both want the admin token.
//!
//! The records are written straight into the server's SQLite file (WAL lets a
//! second connection write beside the server), standing in for the action
//! supervisor.

mod common;

use std::time::Duration;

use brook::store::actions::{insert_run, sync, Run, RunOutcome};
use common::Server;
use serde_json::{json, Value};

fn record(s: &Server) -> Vec<i64> {
    let actions = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        actions.path().join("a.toml"),
        "[[action]]\nname = \"store\"\ntrigger = { mqtt_topic = [\"sensors/#\"] }\ntype = \"insert_bucket\"\n\n\
         [[action]]\nname = \"idle\"\nenabled = false\ntrigger = { device_event = \"connect\" }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"hello\" }\n",
    )
    .expect("write a.toml");
    let defs: Vec<_> = brook::actions::file::load_dir(actions.path())
        .expect("valid actions")
        .iter()
        .map(|d| d.record())
        .collect();
    let conn =
        rusqlite::Connection::open(s.dir.path().join("data").join("brook.db")).expect("open db");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    sync(&conn, &defs, 1_764_000_000_000).expect("sync");
    (0..5)
        .map(|i| {
            insert_run(
                &conn,
                &Run {
                    id: 0,
                    action: "store".into(),
                    trigger_kind: "mqtt_topic".into(),
                    trigger_detail: format!("sensors/t{i}"),
                    device_id: Some("dev".into()),
                    started_at: 1_764_000_000_000 + i,
                    ended_at: Some(1_764_000_000_010 + i),
                    outcome: if i == 4 {
                        RunOutcome::Error
                    } else {
                        RunOutcome::Ok
                    },
                    detail: format!("run {i}"),
                    exit_code: None,
                    stdout: String::new(),
                    stderr: String::new(),
                },
            )
            .expect("insert run")
        })
        .collect()
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
    assert_eq!(store["last_run"]["duration_ms"], 10);
    assert_eq!(
        store["last_run"]["trigger"],
        json!({"kind": "mqtt_topic", "detail": "sensors/t4"})
    );
    assert_eq!(store["loaded_at"], "2025-11-24T16:00:00.000Z");
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
    assert_eq!(next[0]["detail"], "run 2");
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
