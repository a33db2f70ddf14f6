//! `cargo +nightly fuzz run action_file`: see `brook::fuzzing::action_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| brook::fuzzing::action_file(data));
