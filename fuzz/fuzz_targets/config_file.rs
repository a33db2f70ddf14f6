//! `cargo +nightly fuzz run config_file`: see `brook::fuzzing::config_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::config_file(data));
