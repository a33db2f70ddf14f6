//! `cargo +nightly fuzz run data_items`: see `brook::fuzzing::data_items`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::data_items(data));
