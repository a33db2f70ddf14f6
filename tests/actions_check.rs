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
             {f}:5: unknown key `colour` in [[action]] (known keys: name, enabled, devices, trigger, condition, unlock, type, analysis, mqtt_publish, http_post, email)\n"
        )
    );
    assert!(out.stderr.contains("2 problems"), "{out:?}");
}

#[test]
fn bad_http_post_email_unlock_and_timezone_each_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tagoio.toml");
    std::fs::write(
        &file,
        r#"[[action]]
name = "forward"
trigger = { variable = ["temperature"] }
type = "http_post"
http_post = { url = "ftp://host/$DEVICE.NAME$", attempts = 0 }

[[action]]
name = "mail"
trigger = { variable = ["temperature"] }
unlock = { variable = "temperature", op = "below", value = 90 }
type = "email"
email = { to = ["nobody"], subject = "$NOPE$" }

[[action]]
name = "night"
trigger = { schedule = "0 2 * * *", timezone = "Mars/Olympus" }
type = "mqtt_publish"
mqtt_publish = { topic = "t" }
"#,
    )
    .expect("write tagoio.toml");
    let out = check(dir.path());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let f = file.display().to_string();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (line, key) in [
        (5, "http_post.url:"),
        (5, "http_post.attempts:"),
        (10, "unlock.op:"),
        (12, "email.to:"),
        (12, "email.subject:"),
        (16, "timezone:"),
    ] {
        let want = format!("{f}:{line}: {key}");
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in:\n{}",
            out.stdout
        );
    }
    assert_eq!(lines.len(), 6, "{}", out.stdout);
}

#[test]
fn repository_examples_check_ok() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("actions");
    let out = check(&dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("8 actions OK in {}\n", dir.display()));
}
