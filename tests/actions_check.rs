//! `brook actions check DIR` as a user runs it: the real binary, a bad file
//! gives exit 1 and `FILE:LINE: message` per problem, a good directory (the
//! repository's own examples) exit 0.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{brook_bin, run_bounded};

fn check(dir: &Path) -> common::CliOutput {
    run_bounded(
        Command::new(brook_bin())
            .args(["actions", "check"])
            .arg(dir)
            // No config.toml is read from the test's working directory.
            .current_dir(dir),
        Duration::from_secs(30),
    )
}

#[test]
fn bad_action_file_gives_exit_1_and_file_line_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[[action]]\nname = \"x\"\ntrigger = { mqtt_topic = [\"a/#/b\"] }\ntype = \"insert_bucket\"\ncolour = \"red\"\n",
    )
    .expect("write bad.toml");
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let f = file.display();
    assert_eq!(
        out.stdout,
        format!(
            "{f}:3: mqtt_topic: invalid topic filter \"a/#/b\": uses '#' other than as the whole last level\n\
             {f}:5: unknown key `colour` in [[action]] (known keys: name, enabled, devices, trigger, condition, type, analysis, mqtt_publish)\n"
        )
    );
    assert!(out.stderr.contains("2 problems"), "{out:?}");
}

#[test]
fn repository_examples_check_ok() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("actions");
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("6 actions OK in {}\n", dir.display()));
}
