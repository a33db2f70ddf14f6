//! `cargo +nightly fuzz run mqtt5_decode`: see `brook::fuzzing::mqtt5_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::mqtt5_decode(data));
