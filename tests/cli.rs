//! The command line against a running server (as the README documents it) and the
//! config file's error reporting (section 2).

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::raw::{ConnectOpts, Raw};
use common::{brook_bin, free_port, run_bounded, Server};

const CLI: Duration = Duration::from_secs(20);

#[test]
fn cli_device_add_prints_a_token_that_logs_in() {
    let s = Server::start();
    let out = s.cli(&["device", "add", "cli-dev"], CLI);
    assert!(out.status.success(), "brook device add failed: {out:?}");
    let token = out
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        !token.is_empty() && !token.contains(' '),
        "last stdout line should be the token alone: {:?}",
        out.stdout
    );
    let (_raw, code, _) = Raw::connect(s.mqtt_port, &ConnectOpts::new("cli-client", Some(&token)));
    assert_eq!(
        code, 0,
        "CONNACK for the token printed by `brook device add`"
    );

    let list = s.cli(&["device", "list"], CLI);
    assert!(list.status.success(), "brook device list failed: {list:?}");
    assert!(
        list.stdout.contains("cli-dev"),
        "`brook device list` should show cli-dev: {:?}",
        list.stdout
    );
}

#[test]
fn cli_device_add_sets_retention_and_max_rows_and_device_show_lists_them() {
    let s = Server::start();
    let out = s.cli(
        &[
            "device",
            "add",
            "kept",
            "--retention",
            "30d",
            "--max-rows",
            "100000",
        ],
        CLI,
    );
    assert!(out.status.success(), "brook device add failed: {out:?}");
    let device = s.admin_ok("GET", "/devices/kept", None);
    assert_eq!(device["retention"], "30d", "{device}");
    assert_eq!(device["max_rows"], 100000, "{device}");
    let show = s.cli(&["device", "show", "kept"], CLI);
    assert!(show.status.success(), "{show:?}");
    assert!(show.stdout.contains("retention:  30d"), "{}", show.stdout);
    assert!(
        show.stdout.contains("max rows:   100000"),
        "{}",
        show.stdout
    );
}

#[test]
fn cli_device_add_refuses_a_parser_over_64_kb_with_its_size() {
    let s = Server::start();
    let big = s.dir.path().join("big.js");
    fs::write(
        &big,
        format!("// {}\npayload = payload;\n", "x".repeat(70_000)),
    )
    .expect("write big.js");
    let out = s.cli(
        &[
            "device",
            "add",
            "big",
            "--parser",
            &big.display().to_string(),
        ],
        CLI,
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("64 KB") && out.stderr.contains("bytes"),
        "{out:?}"
    );
    let (status, _) = s.admin("GET", "/devices/big", None);
    assert_eq!(status, 404, "nothing was created");
}

#[test]
fn cli_token_add_prints_a_token_that_logs_in() {
    let s = Server::start();
    s.create_device("d1");
    let out = s.cli(&["token", "add", "d1", "--name", "second"], CLI);
    assert!(out.status.success(), "brook token add failed: {out:?}");
    let token = out
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let (_raw, code, _) = Raw::connect(s.mqtt_port, &ConnectOpts::new("tok-client", Some(&token)));
    assert_eq!(
        code, 0,
        "CONNACK for the token printed by `brook token add`"
    );
}

#[test]
fn cli_without_a_server_says_so_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let port = free_port(); // nothing listens there
    fs::write(
        &config,
        format!("[http]\nlisten = \"127.0.0.1:{port}\"\nadmin_token = \"test-admin\"\n"),
    )
    .unwrap();
    let out = run_bounded(
        Command::new(brook_bin())
            .args(["device", "list", "--config"])
            .arg(&config),
        CLI,
    );
    assert!(
        !out.status.success(),
        "`brook device list` with no server must fail: {out:?}"
    );
    let msg = out.stderr.trim();
    assert!(!msg.is_empty(), "it must say why on stderr: {out:?}");
    assert!(
        msg.lines().count() <= 2,
        "one line, not a backtrace: {msg:?}"
    );
}

#[test]
fn bad_config_stops_the_server_naming_file_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let data = dir.path().join("data");
    fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n\n[mqtt]\nlisten = \"127.0.0.1:{}\"\nmax_inflight = \"lots\"\n",
            data.display().to_string(),
            free_port()
        ),
    )
    .unwrap();
    let out = run_bounded(
        Command::new(brook_bin())
            .args(["serve", "--config"])
            .arg(&config),
        CLI,
    );
    assert!(
        !out.status.success(),
        "brook must stop on a bad config: {out:?}"
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("config.toml"),
        "the message must name the file: {all}"
    );
    assert!(
        all.contains("max_inflight"),
        "the message must name the key: {all}"
    );
    assert!(
        all.contains("line 6") || all.contains(":6:") || all.contains(":6 "),
        "the message must name line 6: {all}"
    );
}

#[test]
fn server_runs_without_subcommand_as_serve() {
    // `brook --config FILE` alone is `brook serve`.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.toml");
    let http = free_port();
    fs::create_dir_all(dir.path().join("actions")).unwrap();
    fs::write(
        &config,
        format!(
            "[server]\ndata_dir = {:?}\n[mqtt]\nlisten = \"127.0.0.1:{}\"\nws_listen = \"\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[actions]\ndir = {:?}\n",
            dir.path().join("data").display().to_string(),
            free_port(),
            dir.path().join("actions").display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(brook_bin())
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn brook");
    let mut guard = common::ChildGuard(Some(child));
    let agent = ureq::agent();
    common::wait_until(
        "`brook --config FILE` answers /health",
        Duration::from_secs(30),
        || {
            assert!(
                guard.child().try_wait().unwrap().is_none(),
                "brook --config exited early"
            );
            matches!(agent.get(&format!("http://127.0.0.1:{http}/health")).call(), Ok(r) if r.status() == 200)
        },
    );
}

#[test]
fn cli_device_param_sets_what_the_device_reads_from_device_params() {
    let s = Server::start();
    let d = s.create_device("pump");
    let out = s.cli(
        &[
            "device",
            "param",
            "pump",
            "--set",
            "interval=60",
            "--set",
            "mode=eco",
        ],
        CLI,
    );
    assert!(out.status.success(), "brook device param failed: {out:?}");
    assert!(
        out.stdout.contains("interval") && out.stdout.contains("60"),
        "{}",
        out.stdout
    );
    let (status, body) = s.http_request("GET", "/device/params", Some(&d.token), None);
    assert_eq!(status, 200, "{body}");
    let params = body["result"].as_array().cloned().unwrap_or_default();
    let interval = params
        .iter()
        .find(|p| p["key"] == "interval")
        .expect("interval param");
    assert_eq!(interval["value"], "60");
    assert_eq!(interval["sent"], false);

    let out = s.cli(&["device", "param", "pump", "--unset", "mode"], CLI);
    assert!(out.status.success(), "{out:?}");
    let (_, body) = s.http_request("GET", "/device/params", Some(&d.token), None);
    let keys: Vec<_> = body["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p["key"].clone())
        .collect();
    assert_eq!(keys, vec![serde_json::json!("interval")]);
}
