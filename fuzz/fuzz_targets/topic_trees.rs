//! `cargo +nightly fuzz run topic_trees`: see `brook::fuzzing::topic_trees`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::topic_trees(data));
