//! The fuzz targets' entry points (`fuzz/fuzz_targets/`), shared with
//! `cargo test`, which replays the committed corpus and every past crash
//! through them (`tests/fuzz_corpus.rs`) on the stable toolchain.
//!
//! Each takes arbitrary bytes and must not panic, loop or allocate without
//! bound; [`topic_trees`] also checks the trees against a naive matcher and
//! panics on any difference, and [`mqtt5_decode`] checks that every MQTT 5
//! packet it decodes encodes back to the same packet.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::protocol::validate::{check_topic_filter, check_topic_name};
use crate::protocol::{DecodeError, MqttCodec, Packet};
use crate::router::acl::filters_intersect;
use crate::router::trie::{filter_covers, filter_matches, NameTrie, SubTrie};

/// The packets a byte stream decodes to, up to the first error, with a codec
/// that starts at protocol level `version`.
fn decode_all(version: u8, chunks: &[&[u8]]) -> (Vec<Packet>, Option<String>) {
    let mut codec = MqttCodec::new(64 * 1024);
    codec.set_version(version);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let level = codec.version();
            match codec.decode(&mut buf) {
                Ok(Some(p)) => {
                    if level == 5 {
                        round_trip_v5(&p);
                    }
                    out.push(p)
                }
                Ok(None) => break,
                Err(e) => return (out, Some(error_kind(&e))),
            }
        }
    }
    (out, None)
}

/// A packet decoded as MQTT 5 encodes, and decodes back to itself.
fn round_trip_v5(p: &Packet) {
    let mut codec = MqttCodec::new(usize::MAX);
    codec.set_version(5);
    let mut buf = BytesMut::new();
    if let Err(e) = codec.encode(p, &mut buf) {
        panic!("decoded MQTT 5 packet does not encode: {e}: {p:?}");
    }
    let mut codec = MqttCodec::new(usize::MAX);
    codec.set_version(5);
    match codec.decode(&mut buf) {
        Ok(Some(back)) => assert_eq!(&back, p, "MQTT 5 round trip changed the packet"),
        other => panic!("re-encoded MQTT 5 packet does not decode: {other:?}: {p:?}"),
    }
    assert!(buf.is_empty(), "re-encoded MQTT 5 packet left bytes over");
}

fn error_kind(e: &DecodeError) -> String {
    e.to_string()
}

/// The bytes decoded whole and split in two at a point the first byte picks
/// must give the same packets and the same error.
fn decode_both_ways(version: u8, data: &[u8]) {
    let whole = decode_all(version, &[data]);
    let at = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let split = decode_all(version, &[&data[..at], &data[at..]]);
    assert_eq!(whole, split, "decoding depends on how the bytes arrive");
}

/// MQTT 3.1.1 framing and every packet type (a CONNECT of level 5 switches
/// the codec to MQTT 5).
pub fn mqtt_decode(data: &[u8]) {
    decode_both_ways(4, data);
}

/// MQTT 5: every packet type, properties and reason codes, from a codec set to
/// level 5 (a CONNECT of another level switches it back); every packet decoded
/// must survive an encode/decode round trip unchanged.
pub fn mqtt5_decode(data: &[u8]) {
    decode_both_ways(5, data);
}

/// Builds topic strings from fuzz bytes: few levels from a small alphabet,
/// so that filters and names meet often.
struct Words<'a> {
    data: &'a [u8],
}

impl Words<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(*b)
    }

    fn text(&mut self) -> Option<String> {
        const LEVELS: [&str; 8] = ["a", "b", "+", "#", "$SYS", "", "c", "a+"];
        let n = usize::from(self.byte()? % 5) + 1;
        let mut levels = Vec::with_capacity(n);
        for _ in 0..n {
            levels.push(LEVELS[usize::from(self.byte()? % 8)]);
        }
        Some(levels.join("/"))
    }
}

/// The subscription and name trees against a naive list, after every
/// operation the bytes describe; and the ACL's filter relations against the
/// names seen.
pub fn topic_trees(data: &[u8]) {
    let clients: Vec<Arc<str>> = ["c0", "c1", "c2"].iter().map(|c| Arc::from(*c)).collect();
    let mut subs = SubTrie::default();
    let mut model: HashMap<(String, usize), u8> = HashMap::new();
    let mut names = NameTrie::default();
    let mut name_model: Vec<String> = Vec::new();
    let mut w = Words { data };
    while let Some(op) = w.byte() {
        let Some(text) = w.text() else { break };
        let client = usize::from(op >> 4) % clients.len();
        match op % 6 {
            0 if check_topic_filter(&text).is_ok() => {
                let qos = (op >> 2) % 3;
                subs.insert(&text, &clients[client], qos);
                model.insert((text, client), qos);
            }
            1 if check_topic_filter(&text).is_ok() => {
                let had = model.remove(&(text.clone(), client)).is_some();
                assert_eq!(subs.remove(&text, &clients[client]), had, "remove {text}");
            }
            2 if check_topic_name(&text).is_ok() => {
                let mut want: HashMap<Arc<str>, u8> = HashMap::new();
                for ((f, c), q) in &model {
                    if filter_matches(f, &text) {
                        let e = want.entry(clients[*c].clone()).or_insert(*q);
                        *e = (*e).max(*q);
                    }
                }
                assert_eq!(subs.matches(&text), want, "matches {text}");
                assert_eq!(subs.any_match(&text), !want.is_empty(), "any_match {text}");
                for c in &clients {
                    assert_eq!(
                        subs.grant_of(&text, c),
                        want.get(c).copied(),
                        "grant {text}"
                    );
                }
            }
            3 if check_topic_name(&text).is_ok() => {
                names.insert(&Arc::from(text.as_str()));
                if !name_model.contains(&text) {
                    name_model.push(text);
                }
            }
            4 if check_topic_name(&text).is_ok() => {
                let had = name_model.iter().position(|n| *n == text);
                assert_eq!(names.remove(&text), had.is_some(), "remove name {text}");
                if let Some(i) = had {
                    name_model.swap_remove(i);
                }
            }
            5 if check_topic_filter(&text).is_ok() => {
                let mut got: Vec<String> = Vec::new();
                names.for_each_match(&text, |n| got.push(n.to_string()));
                got.sort();
                let mut want: Vec<String> = name_model
                    .iter()
                    .filter(|n| filter_matches(&text, n))
                    .cloned()
                    .collect();
                want.sort();
                assert_eq!(got, want, "names matching {text}");
                // The ACL's relations hold on every name seen.
                if let Some(other) = w.text().filter(|o| check_topic_filter(o).is_ok()) {
                    for n in &name_model {
                        let (a, b) = (filter_matches(&text, n), filter_matches(&other, n));
                        if filter_covers(&text, &other) && b {
                            assert!(a, "{text} covers {other} but not {n}");
                        }
                        if a && b {
                            assert!(
                                filters_intersect(&text, &other),
                                "{text} and {other} share {n}"
                            );
                        }
                    }
                }
            }
            _ => {}
        }
        assert_eq!(subs.len(), model.len());
        assert_eq!(names.len(), name_model.len());
    }
}

/// Data items from a JSON body and from an MQTT payload, through validation.
pub fn data_items(data: &[u8]) {
    if let Ok(items) = crate::actions::data::parse_items(data) {
        let _ = crate::actions::data::validate(items, "d0000000000000000000000a", 0);
    }
    let items = crate::actions::data::items_from_mqtt("sensors/t1", data, &[]);
    let _ = crate::actions::data::validate(items, "d0000000000000000000000a", 0);
}

/// An action file.
pub fn action_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let dir = Path::new("/nonexistent-brook-fuzz");
    let _ = crate::actions::file::load_text(&dir.join("fuzz.toml"), &text, dir);
}

/// A config file.
pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ =
        crate::config::Config::from_str(&text, Path::new("/nonexistent-brook-fuzz/config.toml"));
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("mqtt_decode", mqtt_decode),
    ("mqtt5_decode", mqtt5_decode),
    ("topic_trees", topic_trees),
    ("data_items", data_items),
    ("action_file", action_file),
    ("config_file", config_file),
];
