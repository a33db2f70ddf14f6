//! `cargo +nightly fuzz run mqtt_decode`: see `brook::fuzzing::mqtt_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::mqtt_decode(data));
