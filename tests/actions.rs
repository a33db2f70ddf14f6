//! The action engine against the real server: what a publish turns into.

mod common;

use common::*;
use rumqttc::QoS;

/// (variable, value as JSON text) of a device's stored items, oldest first,
/// read straight from the SQLite file.
fn stored(s: &Server, device_id: &str) -> Vec<(String, String)> {
    let db = s.dir.path().join("data").join("brook.db");
    let conn = rusqlite::Connection::open(db).expect("open brook.db");
    let mut stmt = conn
        .prepare("SELECT variable, value FROM data WHERE device_id = ?1 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([device_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn qos1_publish_to_tago_data_post_is_committed_before_its_puback() {
    let mut s = Server::start();
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"temperature","value":21.5,"unit":"C"},{"variable":"humidity","value":40}]"#,
    );
    s.kill9();
    assert_eq!(
        stored(&s, &d.id),
        vec![
            ("temperature".to_string(), "21.5".to_string()),
            ("humidity".to_string(), "40".to_string())
        ]
    );
    s.restart();
    let mut c = s.mqtt("c2", &d.token);
    c.publish_acked("tago/data/post", QoS::AtLeastOnce, false, "plain text");
    assert_eq!(
        stored(&s, &d.id).last(),
        Some(&("payload".to_string(), "\"plain text\"".to_string()))
    );
}

#[test]
fn an_invalid_item_rejects_the_whole_publish_and_it_is_still_acknowledged() {
    let s = Server::start();
    let d = s.create_device("d1");
    let mut c = s.mqtt("c1", &d.token);
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"[{"variable":"ok","value":1},{"variable":"not ok","value":2}]"#,
    );
    c.publish_acked(
        "tago/data/post",
        QoS::AtLeastOnce,
        false,
        r#"{"variable":"after","value":3}"#,
    );
    assert_eq!(
        stored(&s, &d.id),
        vec![("after".to_string(), "3".to_string())]
    );
}
