//! Replays the committed fuzz corpus (`fuzz/corpus/TARGET/`) and every
//! input that once crashed a target (`fuzz/regressions/TARGET/`) through
//! the same entry points `cargo +nightly fuzz` runs, on the stable
//! toolchain: what the fuzzers found stays fixed.

use std::path::Path;

#[test]
fn every_committed_fuzz_input_runs_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (target, run) in brook::fuzzing::TARGETS {
        let mut count = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let data =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
                count += 1;
            }
        }
        assert!(
            count > 0,
            "no committed inputs for the fuzz target {target}"
        );
        total += count;
    }
    eprintln!("replayed {total} fuzz inputs");
}
