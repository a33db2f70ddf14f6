//! `[[acl]]` rules on SUBSCRIBE and PUBLISH: a denied filter gets 0x80 in the
//! SUBACK while the others in the same SUBSCRIBE are granted; a denied
//! publish is dropped and the publisher stays connected; `%d` stands for the
//! device name and `tag:` rules match a device's tags.

mod common;

use common::{text, topics, Config, Server, WAIT};
use rumqttc::{QoS, SubscribeReasonCode};

#[test]
fn denied_subscribe_gets_0x80_while_other_filters_are_granted() {
    let s = Server::start_with(Config::new().acl("*", "secret/#", "deny", &["subscribe"]));
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    let codes = sub.subscribe_many(&[
        ("public/x", QoS::AtLeastOnce),
        ("secret/x", QoS::AtLeastOnce),
        ("other/#", QoS::ExactlyOnce),
    ]);
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::ExactlyOnce),
        ],
        "SUBACK codes for public/x, secret/x (denied), other/#"
    );
    // The denied filter really is not subscribed.
    let mut publisher = s.mqtt("pub", &token);
    publisher.publish_acked("secret/x", QoS::AtLeastOnce, false, "hidden");
    publisher.publish_acked("public/x", QoS::AtLeastOnce, false, "marker");
    let got = sub.recv_until_topic("public/x", WAIT);
    assert_eq!(
        topics(&got),
        vec!["public/x"],
        "nothing from the denied filter"
    );
}

#[test]
fn denied_publish_is_dropped_and_publisher_stays_connected() {
    let s = Server::start_with(Config::new().acl("*", "readonly/#", "deny", &["publish"]));
    let token = s.token("d1");
    let mut sub = s.mqtt("sub", &token);
    sub.subscribe_many(&[
        ("readonly/#", QoS::AtLeastOnce),
        ("open/x", QoS::AtLeastOnce),
    ]);
    let mut publisher = s.mqtt("pub", &token);
    // MQTT 3.1.1 has no negative PUBACK: the broker acknowledges and drops.
    publisher.publish_acked("readonly/a", QoS::AtLeastOnce, false, "denied");
    publisher.publish_acked("open/x", QoS::AtLeastOnce, false, "allowed");
    let got = sub.recv_until_topic("open/x", WAIT);
    assert_eq!(
        topics(&got),
        vec!["open/x"],
        "the denied publish must not be delivered"
    );
    // Still connected: another publish goes through.
    publisher.publish_acked("open/x", QoS::AtLeastOnce, false, "again");
    assert_eq!(text(&sub.recv(WAIT)), "again");
    assert!(!publisher.closed, "the publisher's connection ended");
}

#[test]
fn acl_topic_pattern_expands_device_name_and_matches_tags() {
    let s = Server::start_with(
        Config::new()
            .acl("tag:role=admin", "devices/#", "allow", &["subscribe"])
            .acl("*", "devices/%d/#", "allow", &["subscribe", "publish"])
            .acl("*", "devices/#", "deny", &["subscribe", "publish"]),
    );
    let d1 = s.create_device("d1");
    let admin = s.create_device_with_tags("boss", &[("role", "admin")]);
    let mut m = s.mqtt("d1-client", &d1.token);
    let codes = m.subscribe_many(&[
        ("devices/d1/cmd", QoS::AtLeastOnce),
        ("devices/d2/cmd", QoS::AtLeastOnce),
    ]);
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure
        ],
        "d1 may subscribe under devices/d1/ (via %d) but not devices/d2/"
    );
    let mut boss = s.mqtt("boss-client", &admin.token);
    let codes = boss.subscribe_many(&[("devices/d2/cmd", QoS::AtLeastOnce)]);
    assert_eq!(
        codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)],
        "tag:role=admin may subscribe to devices/#"
    );
}
