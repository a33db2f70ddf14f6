use super::*;

/// Parses `text` as `config.toml` and returns the error's text.
fn error(text: &str) -> String {
    match Config::from_str(text, Path::new("config.toml")) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(err) => err.to_string(),
    }
}

/// Parses `text` as `config.toml`, which must be valid.
fn parse(text: &str) -> Config {
    match Config::from_str(text, Path::new("config.toml")) {
        Ok(config) => config,
        Err(err) => panic!("unexpected error: {err}"),
    }
}

#[test]
fn empty_file_gives_defaults() {
    let config = parse("");
    let defaults = Config::default();
    assert_eq!(config.server, defaults.server);
    assert_eq!(config.mqtt, defaults.mqtt);
    assert_eq!(config.http, defaults.http);
    assert_eq!(config.actions, defaults.actions);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.log, defaults.log);
    assert!(config.acl.is_empty());
    assert_eq!(config.source, Some(PathBuf::from("config.toml")));
    assert_eq!(config.mqtt.listen.to_string(), "0.0.0.0:1883");
    assert_eq!(config.mqtt.tls_listen.to_string(), "0.0.0.0:8883");
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.mqtt.max_packet_size, 1_048_576);
    assert_eq!(config.mqtt.max_inflight, 100);
    assert_eq!(config.mqtt.max_queued_messages, 10_000);
    assert_eq!(config.mqtt.slow_subscriber_timeout, Duration::from_secs(10));
    assert_eq!(config.mqtt.sys_interval, Duration::from_secs(10));
    assert_eq!(config.server.synchronous, Synchronous::Normal);
    assert!(!config.mqtt.allow_anonymous);
    assert!(config.mqtt.tls().is_none());
}

#[test]
fn full_file_is_read() {
    let config = parse(
        r#"
[server]
data_dir = "/var/lib/brook"
synchronous = "full"

[mqtt]
listen = "127.0.0.1:1884"
tls_listen = "[::]:8884"
tls_cert = "certs/server.pem"
tls_key = "/etc/brook/server.key"
allow_anonymous = true
max_packet_size = 2048
max_inflight = 65535
max_queued_messages = 5
slow_subscriber_timeout = "500ms"
sys_interval = "1m"

[http]
listen = "0.0.0.0:9000"
admin_token = "secret"

[actions]
dir = "my-actions"

[limits]
publish_per_minute = 60
connect_per_minute = 6

[log]
level = "brook=debug"

[[acl]]
who = "*"
topic = "test/nosubscribe"
access = "deny"
actions = ["subscribe"]

[[acl]]
who = "tag:site=north"
topic = "sites/north/%d/#"
access = "allow"
"#,
    );
    assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/brook"));
    assert_eq!(config.server.synchronous, Synchronous::Full);
    assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1884");
    assert_eq!(config.mqtt.tls_listen.to_string(), "[::]:8884");
    assert_eq!(
        config.mqtt.tls(),
        Some((
            Path::new("certs/server.pem"),
            Path::new("/etc/brook/server.key")
        ))
    );
    assert!(config.mqtt.allow_anonymous);
    assert_eq!(config.mqtt.max_packet_size, 2048);
    assert_eq!(config.mqtt.max_inflight, 65535);
    assert_eq!(config.mqtt.max_queued_messages, 5);
    assert_eq!(
        config.mqtt.slow_subscriber_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(config.mqtt.sys_interval, Duration::from_secs(60));
    assert_eq!(config.http.admin_token, "secret");
    assert_eq!(config.admin_url(), "http://127.0.0.1:9000");
    assert_eq!(config.actions.dir, PathBuf::from("my-actions"));
    assert_eq!(config.limits.publish_per_minute, 60);
    assert_eq!(config.limits.connect_per_minute, 6);
    assert_eq!(config.log.level.as_deref(), Some("brook=debug"));
    assert_eq!(
        config.acl,
        vec![
            AclRule {
                who: Who::Any,
                topic: "test/nosubscribe".into(),
                access: Access::Deny,
                actions: vec![AclAction::Subscribe],
                line: 32,
            },
            AclRule {
                who: Who::Tag("site".into(), "north".into()),
                topic: "sites/north/%d/#".into(),
                access: Access::Allow,
                actions: vec![AclAction::Publish, AclAction::Subscribe],
                line: 38,
            },
        ]
    );
}

#[test]
fn acl_who_forms() {
    let config = parse(
        r##"
acl = [
  { who = "anonymous", topic = "+/x", access = "deny", actions = ["publish"] },
  { who = "device:my sensor", topic = "a/%c", access = "allow", actions = ["publish", "subscribe"] },
  { who = "tag:k=", topic = "#", access = "allow" },
]
"##,
    );
    let who: Vec<_> = config.acl.iter().map(|rule| rule.who.clone()).collect();
    assert_eq!(
        who,
        vec![
            Who::Anonymous,
            Who::Device("my sensor".into()),
            Who::Tag("k".into(), String::new())
        ]
    );
    assert_eq!(config.acl[0].line, 3);
    assert_eq!(config.acl[2].line, 5);
    assert_eq!(config.acl[1].who.to_string(), "device:my sensor");
}

#[test]
fn relative_paths_follow_the_config_file() {
    let config = Config::from_str(
        "[server]\ndata_dir = \"db\"\n[mqtt]\ntls_cert = \"c.pem\"\ntls_key = \"/abs/k.pem\"\n",
        Path::new("/etc/brook/config.toml"),
    )
    .expect("valid config");
    assert_eq!(config.server.data_dir, PathBuf::from("/etc/brook/db"));
    assert_eq!(config.actions.dir, PathBuf::from("/etc/brook/actions"));
    assert_eq!(
        config.mqtt.tls_cert,
        Some(PathBuf::from("/etc/brook/c.pem"))
    );
    assert_eq!(config.mqtt.tls_key, Some(PathBuf::from("/abs/k.pem")));

    // A bare file name: relative to the current directory.
    let config = parse("");
    assert_eq!(config.server.data_dir, PathBuf::from("data"));
    assert_eq!(config.actions.dir, PathBuf::from("actions"));
}

#[test]
fn empty_tls_paths_mean_no_tls() {
    let config = parse("[mqtt]\ntls_cert = \"\"\ntls_key = \"\"\n");
    assert!(config.mqtt.tls().is_none());
}

#[test]
fn wrong_type_names_line_and_key() {
    let text = "# brook\n\n[server]\ndata_dir = \"d\"\n\n[mqtt]\nmax_inflight = \"x\"\n";
    assert_eq!(
        error(text),
        "config.toml:7: mqtt.max_inflight: invalid type: string \"x\", expected usize"
    );
}

#[test]
fn negative_number_names_line_and_key() {
    let err = error("[limits]\n\npublish_per_minute = -1\n");
    assert!(
        err.starts_with("config.toml:3: limits.publish_per_minute: "),
        "{err}"
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = error("[mqtt]\n\nlistn = \"0.0.0.0:1883\"\n");
    assert!(
        err.starts_with("config.toml:3: mqtt.listn: unknown key (known keys: listen, tls_listen,"),
        "{err}"
    );
}

#[test]
fn unknown_section_names_line_and_key() {
    let err = error("[server]\n[mqttt]\nlisten = \"x\"\n");
    assert!(
        err.starts_with("config.toml:2: mqttt: unknown key"),
        "{err}"
    );
}

#[test]
fn unknown_acl_key_names_line_and_key() {
    let err = error(
        "[[acl]]\nwho = \"*\"\ntopic = \"a\"\naccess = \"deny\"\n\n[[acl]]\nwho = \"*\"\ntopic = \"a\"\naccess = \"deny\"\nactoins = [\"publish\"]\n",
    );
    assert!(
        err.starts_with("config.toml:10: acl.actoins: unknown key"),
        "{err}"
    );
}

#[test]
fn missing_acl_key_names_the_table() {
    let err = error("[mqtt]\n\n[[acl]]\nwho = \"*\"\naccess = \"deny\"\n");
    assert!(err.ends_with("missing key `topic`"), "{err}");
    assert!(err.starts_with("config.toml:3: acl: "), "{err}");
}

#[test]
fn section_of_wrong_type() {
    assert_eq!(
        error("\nmqtt = 3\n"),
        "config.toml:2: mqtt: invalid type: integer `3`, expected a table"
    );
}

#[test]
fn syntax_error_names_the_line() {
    let err = error("[mqtt]\nlisten = \"0.0.0.0:1883\"\nmax_inflight = = 3\n");
    assert!(
        err.starts_with("config.toml:3: TOML syntax error: "),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn unterminated_string_names_the_line() {
    let err = error("[http]\n\nadmin_token = \"abc\n");
    assert!(err.starts_with("config.toml:3: "), "{err}");
}

#[test]
fn bad_address_names_line_and_key() {
    assert_eq!(
        error("[mqtt]\nlisten = \"0.0.0.0:1883\"\n\n[http]\n\nlisten = \"localhost\"\n"),
        "config.toml:6: http.listen: invalid address \"localhost\": expected IP:PORT, like \"0.0.0.0:1883\" or \"[::]:1883\""
    );
    let err = error("[mqtt]\ntls_listen = \"1.2.3.4:99999\"\n");
    assert!(
        err.starts_with("config.toml:2: mqtt.tls_listen: invalid address"),
        "{err}"
    );
    let err = error("[mqtt]\n\nlisten = \"nope\"\n");
    assert!(
        err.starts_with("config.toml:3: mqtt.listen: invalid address"),
        "{err}"
    );
}

#[test]
fn bad_duration_names_line_and_key() {
    let err = error("[mqtt]\nslow_subscriber_timeout = \"10 seconds\"\n");
    assert!(
        err.starts_with(
            "config.toml:2: mqtt.slow_subscriber_timeout: invalid duration \"10 seconds\""
        ),
        "{err}"
    );
    let err = error("[mqtt]\n\n\nsys_interval = \"ten\"\n");
    assert!(
        err.starts_with("config.toml:4: mqtt.sys_interval: invalid duration"),
        "{err}"
    );
    let err = error("[mqtt]\nsys_interval = 10\n");
    assert!(
        err.starts_with("config.toml:2: mqtt.sys_interval: invalid type"),
        "{err}"
    );
    let err = error("[mqtt]\nsys_interval = \"0s\"\n");
    assert_eq!(err, "config.toml:2: mqtt.sys_interval: must be more than 0");
}

#[test]
fn tls_cert_without_key() {
    assert_eq!(
        error("[mqtt]\nlisten = \"0.0.0.0:1883\"\ntls_cert = \"c.pem\"\n"),
        "config.toml:3: mqtt.tls_cert: tls_cert is set but tls_key is not; set both or neither"
    );
}

#[test]
fn tls_key_without_cert() {
    assert_eq!(
        error("[mqtt]\n\n\ntls_key = \"k.pem\"\n"),
        "config.toml:4: mqtt.tls_key: tls_key is set but tls_cert is not; set both or neither"
    );
}

#[test]
fn bad_synchronous() {
    assert_eq!(
        error("[server]\nsynchronous = \"off\"\n"),
        "config.toml:2: server.synchronous: expected \"normal\" or \"full\", got \"off\""
    );
}

#[test]
fn max_packet_size_bounds() {
    assert_eq!(
        error("[mqtt]\nmax_packet_size = 0\n"),
        "config.toml:2: mqtt.max_packet_size: must be between 1 and 268435455, got 0"
    );
    assert_eq!(
        error("[mqtt]\n\nmax_packet_size = 268435456\n"),
        "config.toml:3: mqtt.max_packet_size: must be between 1 and 268435455, got 268435456"
    );
    assert_eq!(
        parse("[mqtt]\nmax_packet_size = 268435455\n")
            .mqtt
            .max_packet_size,
        268_435_455
    );
}

#[test]
fn max_inflight_bounds() {
    assert_eq!(
        error("[mqtt]\nmax_inflight = 0\n"),
        "config.toml:2: mqtt.max_inflight: must be between 1 and 65535, got 0"
    );
    assert_eq!(
        error("[mqtt]\nlisten = \"0.0.0.0:1\"\nmax_inflight = 65536\n"),
        "config.toml:3: mqtt.max_inflight: must be between 1 and 65535, got 65536"
    );
}

/// An `[[acl]]` file with the rule's fields on lines 3 to 6 of the second rule.
fn acl_file(who: &str, topic: &str, access: &str, actions: &str) -> String {
    format!(
        "[[acl]]\nwho = \"*\"\ntopic = \"ok\"\naccess = \"allow\"\n\n[[acl]]\nwho = {who}\ntopic = {topic}\naccess = {access}\nactions = {actions}\n"
    )
}

#[test]
fn bad_acl_who() {
    for bad in ["\"everyone\"", "\"device:\"", "\"tag:k\"", "\"tag:=v\""] {
        let err = error(&acl_file(bad, "\"a/b\"", "\"deny\"", "[\"publish\"]"));
        assert!(
            err.starts_with("config.toml:7: acl.who: expected \"*\", \"anonymous\""),
            "{bad}: {err}"
        );
    }
}

#[test]
fn bad_acl_access() {
    assert_eq!(
        error(&acl_file("\"*\"", "\"a/b\"", "\"allw\"", "[\"publish\"]")),
        "config.toml:9: acl.access: expected \"allow\" or \"deny\", got \"allw\""
    );
}

#[test]
fn bad_acl_actions() {
    assert_eq!(
        error(&acl_file(
            "\"*\"",
            "\"a/b\"",
            "\"deny\"",
            "[\"publish\", \"read\"]"
        )),
        "config.toml:10: acl.actions: expected \"publish\" or \"subscribe\", got \"read\""
    );
    let err = error(&acl_file("\"*\"", "\"a/b\"", "\"deny\"", "[]"));
    assert!(
        err.starts_with("config.toml:10: acl.actions: empty"),
        "{err}"
    );
    let err = error(&acl_file("\"*\"", "\"a/b\"", "\"deny\"", "\"publish\""));
    assert!(
        err.starts_with("config.toml:10: acl.actions: invalid type"),
        "{err}"
    );
}

#[test]
fn bad_acl_topic() {
    for bad in ["a/#/b", "a/b#", "a+/b", "a/+b", "#/a", ""] {
        let err = error(&acl_file(
            "\"*\"",
            &format!("\"{bad}\""),
            "\"deny\"",
            "[\"publish\"]",
        ));
        assert!(
            err.starts_with("config.toml:8: acl.topic: "),
            "{bad}: {err}"
        );
    }
    for good in ["#", "+", "a/+/b/#", "+/+", "devices/%d/%c/#", "/a/"] {
        parse(&acl_file(
            "\"*\"",
            &format!("\"{good}\""),
            "\"deny\"",
            "[\"publish\"]",
        ));
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    for bad in [
        "",
        "10",
        "s",
        "10x",
        "1.5s",
        "-1s",
        "10 seconds",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn admin_url_replaces_unspecified_addresses() {
    let mut config = Config::default();
    assert_eq!(config.admin_url(), "http://127.0.0.1:8080");
    config.http.listen = "0.0.0.0:8081".parse().expect("literal address");
    assert_eq!(config.admin_url(), "http://127.0.0.1:8081");
    config.http.listen = "[::]:8082".parse().expect("literal address");
    assert_eq!(config.admin_url(), "http://[::1]:8082");
    config.http.listen = "[fe80::1]:80".parse().expect("literal address");
    assert_eq!(config.admin_url(), "http://[fe80::1]:80");
    config.http.listen = "10.0.0.5:80".parse().expect("literal address");
    assert_eq!(config.admin_url(), "http://10.0.0.5:80");
}

#[test]
fn admin_token_override() {
    let mut config = parse("[http]\nadmin_token = \"from-file\"\n");
    config.override_admin_token(None);
    assert_eq!(config.http.admin_token, "from-file");
    config.override_admin_token(Some(String::new()));
    assert_eq!(config.http.admin_token, "from-file");
    config.override_admin_token(Some("from-env".into()));
    assert_eq!(config.http.admin_token, "from-env");
}

#[test]
fn load_reads_the_named_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("brook.toml");
    std::fs::write(&file, "[mqtt]\nlisten = \"127.0.0.1:1999\"\n").expect("write");
    let config = Config::load(Some(&file)).expect("valid config");
    assert_eq!(config.mqtt.listen.to_string(), "127.0.0.1:1999");
    assert_eq!(config.source.as_deref(), Some(file.as_path()));
    assert_eq!(config.server.data_dir, dir.path().join("data"));
}

#[test]
fn load_of_a_missing_file_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("nope.toml");
    let err = Config::load(Some(&file)).expect_err("missing file");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().starts_with(&file.display().to_string()));
}

#[test]
fn load_reports_the_path_it_was_given() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[mqtt]\nmax_inflight = 0\n").expect("write");
    let err = Config::load(Some(&file)).expect_err("invalid");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: mqtt.max_inflight: must be between 1 and 65535, got 0",
            file.display()
        )
    );
    assert_eq!(err.line(), Some(2));
    assert_eq!(err.key(), Some("mqtt.max_inflight"));
}

#[test]
fn limits_out_of_range_name_file_line_and_key() {
    assert_eq!(
        error("[mqtt]\nmax_topic_levels = 0\n"),
        "config.toml:2: mqtt.max_topic_levels: must be between 1 and 32768, got 0"
    );
    assert_eq!(
        error("[server]\nmax_write_queue = -1\n"),
        "config.toml:2: server.max_write_queue: must be between 1 and 16777216, got -1"
    );
    assert_eq!(
        error("[http]\nrequest_timeout = \"0s\"\n"),
        "config.toml:2: http.request_timeout: must be more than 0"
    );
    let c = parse("[actions]\npass_env = [\"TZ\"]\nmax_parser_runs = 3\n[mqtt]\nmax_topics = 7\n");
    assert_eq!(c.actions.pass_env, vec!["TZ".to_string()]);
    assert_eq!((c.actions.max_parser_runs, c.mqtt.max_topics), (3, 7));
}

#[test]
fn repository_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let text = std::fs::read_to_string(&path).expect("the repository's config.toml");
    let config = Config::from_str(&text, Path::new("config.toml")).expect("valid example");
    let defaults = Config::default();
    assert_eq!(config.server, defaults.server);
    assert_eq!(config.mqtt, defaults.mqtt);
    assert_eq!(config.http, defaults.http);
    assert_eq!(config.actions, defaults.actions);
    assert_eq!(config.limits, defaults.limits);
    assert_eq!(config.data, defaults.data);
    assert_eq!(config.smtp, None, "[smtp] is commented out");
}

#[test]
fn data_retention_and_smtp() {
    let config = parse(
        "[data]\nretention = \"365d\"\nprune_interval = \"10s\"\n\n[smtp]\nhost = \"smtp.example.com\"\nusername = \"brook\"\npassword_env = \"BROOK_SMTP_PASSWORD\"\nfrom = \"Brook <brook@example.com>\"\n",
    );
    assert_eq!(config.data.retention, Duration::from_secs(365 * 86_400));
    assert_eq!(config.data.prune_interval, Duration::from_secs(10));
    let smtp = config.smtp.expect("[smtp]");
    assert_eq!(
        (smtp.host.as_str(), smtp.port, smtp.tls, smtp.line),
        ("smtp.example.com", 587, SmtpTls::StartTls, 5)
    );
    assert_eq!(smtp.username.as_deref(), Some("brook"));
    assert_eq!(smtp.password_env.as_deref(), Some("BROOK_SMTP_PASSWORD"));
    let tls = parse("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"tls\"\n")
        .smtp
        .expect("[smtp]");
    assert_eq!((tls.port, tls.tls), (465, SmtpTls::Tls));
    let none = parse("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"none\"\nport = 2525\n")
        .smtp
        .expect("[smtp]");
    assert_eq!((none.port, none.tls), (2525, SmtpTls::None));
    assert_eq!(
        parse("").data.retention,
        Duration::ZERO,
        "forever by default"
    );
    assert!(parse("").smtp.is_none());
}

#[test]
fn bad_data_and_smtp_name_line_and_key() {
    assert_eq!(
        error("[data]\nretention = \"a year\"\n"),
        "config.toml:2: data.retention: invalid duration \"a year\": expected a number and a unit, like \"500ms\", \"10s\", \"5m\", \"2h\" or \"1d\""
    );
    assert_eq!(
        error("[data]\nprune_interval = \"0s\"\n"),
        "config.toml:2: data.prune_interval: must be more than 0"
    );
    assert_eq!(
        error("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\ntls = \"ssl\"\n"),
        "config.toml:4: smtp.tls: expected \"starttls\", \"tls\" or \"none\", got \"ssl\""
    );
    assert!(error("[smtp]\nhost = \"h\"\nfrom = \"nobody\"\n")
        .starts_with("config.toml:3: smtp.from: \"nobody\" is not an address"),);
    assert!(error("[smtp]\nfrom = \"a@b.c\"\n").contains("missing key `host`"));
    assert_eq!(
        error("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\nport = 70000\n"),
        "config.toml:4: smtp.port: must be between 1 and 65535, got 70000"
    );
    assert!(
        error("[smtp]\nhost = \"h\"\nfrom = \"a@b.c\"\npassword = \"x\"\n")
            .starts_with("config.toml:4: smtp.password: unknown key")
    );
}

#[test]
fn websocket_keys() {
    let defaults = parse("");
    assert_eq!(
        defaults.mqtt.ws_listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:8083")
    );
    assert_eq!(
        defaults.mqtt.wss_listen.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:8084")
    );
    assert_eq!(defaults.mqtt.ws_path, "/mqtt");
    assert!(defaults.mqtt.origin_allowed("https://anything.example"));
    assert!(!defaults.mqtt.trusted_proxy("127.0.0.1".parse().unwrap()));

    let c = parse(
        "[mqtt]\nws_listen = \"\"\nwss_listen = \" \"\nws_path = \"/ws/mqtt\"\nws_allowed_origins = [\"https://Dash.example.com\", \"null\"]\nws_trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n",
    );
    assert_eq!(
        (c.mqtt.ws_listen, c.mqtt.wss_listen),
        (None, None),
        "\"\" = off"
    );
    assert_eq!(c.mqtt.ws_path, "/ws/mqtt");
    assert!(c.mqtt.origin_allowed("https://dash.example.com"));
    assert!(c.mqtt.origin_allowed("null"));
    assert!(!c.mqtt.origin_allowed("https://evil.example"));
    assert!(c.mqtt.trusted_proxy("10.9.8.7".parse().unwrap()));
    assert!(c.mqtt.trusted_proxy("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!c.mqtt.trusted_proxy("127.0.0.2".parse().unwrap()));
    let c = parse("[mqtt]\nws_listen = \"127.0.0.1:9001\"\n");
    assert_eq!(c.mqtt.ws_listen.unwrap().to_string(), "127.0.0.1:9001");

    let err = error("[mqtt]\n\nws_listen = \"8083\"\n");
    assert!(
        err.starts_with("config.toml:3: mqtt.ws_listen: invalid address \"8083\""),
        "{err}"
    );
    let err = error("[mqtt]\nws_path = \"mqtt\"\n");
    assert!(
        err.starts_with("config.toml:2: mqtt.ws_path: \"mqtt\" must start with \"/\""),
        "{err}"
    );
    let err = error(
        "[mqtt]\nws_allowed_origins = [\n  \"https://ok.example\",\n  \"https://x.example/\",\n]\n",
    );
    assert!(
        err.starts_with(
            "config.toml:4: mqtt.ws_allowed_origins: invalid origin \"https://x.example/\""
        ),
        "{err}"
    );
    let err = error("[mqtt]\nws_trusted_proxies = [\"10.0.0.0/40\"]\n");
    assert!(
        err.starts_with("config.toml:2: mqtt.ws_trusted_proxies: invalid IP range \"10.0.0.0/40\""),
        "{err}"
    );
}

#[test]
fn max_queued_bytes_defaults_to_1_mib_and_refuses_0_with_file_line_and_key() {
    assert_eq!(parse("").mqtt.max_queued_bytes, 1 << 20);
    assert_eq!(
        parse("[mqtt]\nmax_queued_bytes = 4096\n")
            .mqtt
            .max_queued_bytes,
        4096
    );
    let e = error("[mqtt]\nmax_queued_bytes = 0\n");
    assert!(e.starts_with("config.toml:2:"), "{e}");
    assert!(e.contains("mqtt.max_queued_bytes"), "{e}");
}
