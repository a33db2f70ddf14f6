//! Action files as `brook actions check` sees them: each kind of problem with
//! its exact line, and what a good file turns into.

use super::schedule::crontab_weekdays;
use super::*;
use crate::store::devices::Tag;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A temporary actions directory with these files (and `scripts`, created
/// executable).
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            if !name.ends_with(".toml") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        Dir { dir }
    }

    fn load(&self) -> Result<Vec<ActionDef>, Vec<ActionError>> {
        load_dir(self.dir.path())
    }

    /// The problems, with the directory prefix removed: `a.toml:3: message`.
    fn errors(&self) -> Vec<String> {
        let prefix = format!("{}/", self.dir.path().display());
        match self.load() {
            Ok(defs) => panic!("expected problems, got {} actions", defs.len()),
            Err(errors) => errors
                .iter()
                .map(|e| e.to_string().replace(&prefix, ""))
                .collect(),
        }
    }

    fn only(&self) -> ActionDef {
        match self.load() {
            Ok(mut defs) if defs.len() == 1 => defs.remove(0),
            Ok(defs) => panic!("expected one action, got {}", defs.len()),
            Err(errors) => panic!(
                "unexpected problems: {:?}",
                errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            ),
        }
    }
}

fn errors_of(text: &str) -> Vec<String> {
    Dir::new(&[("a.toml", text)]).errors()
}

fn one(text: &str) -> ActionDef {
    Dir::new(&[("a.toml", text)]).only()
}

const STORE: &str = r#"
[[action]]
name = "store"
trigger = { mqtt_topic = ["sensors/+/temperature", "sensors/+/humidity"] }
type = "insert_bucket"
"#;

#[test]
fn insert_bucket_with_defaults() {
    let def = one(STORE);
    assert_eq!(def.name, "store");
    assert!(def.enabled);
    assert_eq!(def.devices, vec![DeviceSelector::Any]);
    assert_eq!(
        def.trigger,
        Trigger::MqttTopic(vec![
            "sensors/+/temperature".into(),
            "sensors/+/humidity".into()
        ])
    );
    assert_eq!(def.conditions, vec![]);
    assert_eq!(def.unlock, vec![]);
    assert_eq!(def.kind, ActionKind::InsertBucket);
    assert_eq!(def.line, 2);
    assert!(def.file.ends_with("a.toml"));
    assert_eq!(def.hash.len(), 64);
}

#[test]
fn analysis_with_every_field() {
    let d = Dir::new(&[
        (
            "a.toml",
            r#"
[[action]]
name = "too-hot"
enabled = false
devices = ["*", "greenhouse", "tag:site=north"]
trigger = { mqtt_topic = "sensors/#" }
condition = { variable = "temperature", op = ">", value = 30 }
type = "analysis"
analysis = { command = ["python3", "analysis/too_hot.py"], timeout = "5s", env = { LIMIT = "30", N = 2 } }
"#,
        ),
        ("analysis/too_hot.py", "print('hot')\n"),
    ]);
    let def = d.only();
    assert!(!def.enabled);
    assert_eq!(
        def.devices,
        vec![
            DeviceSelector::Any,
            DeviceSelector::Name("greenhouse".into()),
            DeviceSelector::Tag {
                key: "site".into(),
                value: "north".into()
            }
        ]
    );
    assert_eq!(def.trigger, Trigger::MqttTopic(vec!["sensors/#".into()]));
    assert_eq!(
        def.conditions,
        vec![Condition {
            variable: "temperature".into(),
            test: Test::Compare(Op::Gt, ConditionValue::Number(30.0)),
            field: None,
        }]
    );
    let ActionKind::Analysis(spec) = &def.kind else {
        panic!("not an analysis: {:?}", def.kind);
    };
    assert_eq!(spec.command, vec!["python3", "analysis/too_hot.py"]);
    assert_eq!(spec.timeout, Duration::from_secs(5));
    assert_eq!(
        spec.env,
        BTreeMap::from([("LIMIT".into(), "30".into()), ("N".into(), "2".into())])
    );
    assert!(spec.working_dir.is_absolute());
    assert_eq!(
        spec.working_dir.canonicalize().unwrap(),
        d.dir.path().canonicalize().unwrap()
    );
}

#[test]
fn analysis_timeout_defaults_to_30s() {
    let d = Dir::new(&[
        (
            "a.toml",
            "[[action]]\nname = \"n\"\ntrigger = { schedule = \"0 0 2 * * *\" }\ntype = \"analysis\"\nanalysis = { command = [\"./analysis/nightly.sh\"] }\n",
        ),
        ("analysis/nightly.sh", "#!/bin/sh\necho ok\n"),
    ]);
    let ActionKind::Analysis(spec) = d.only().kind else {
        panic!("not an analysis");
    };
    assert_eq!(spec.timeout, Duration::from_secs(30));
    assert!(spec.env.is_empty());
}

#[test]
fn mqtt_publish_on_connect() {
    let def = one(r#"[[action]]
name = "send-config"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { topic = "devices/$DEVICE.NAME$/config", payload = "{\"interval\":60}", qos = 1, retain = true }
"#);
    assert_eq!(def.trigger, Trigger::DeviceEvent(DeviceEvent::Connect));
    assert_eq!(
        def.kind,
        ActionKind::MqttPublish(PublishSpec {
            topic: "devices/$DEVICE.NAME$/config".into(),
            payload: "{\"interval\":60}".into(),
            qos: 1,
            retain: true
        })
    );
}

#[test]
fn mqtt_publish_defaults() {
    let def = one(
        "[[action]]\nname = \"p\"\ntrigger = { device_event = \"disconnect\" }\ntype = \"mqtt_publish\"\n\n[action.mqtt_publish]\ntopic = \"gone\"\n",
    );
    assert_eq!(def.trigger, Trigger::DeviceEvent(DeviceEvent::Disconnect));
    assert_eq!(
        def.kind,
        ActionKind::MqttPublish(PublishSpec {
            topic: "gone".into(),
            payload: String::new(),
            qos: 0,
            retain: false
        })
    );
}

#[test]
fn hash_changes_with_the_definition_only() {
    let a = one(STORE);
    let moved = one(&format!("\n\n\n{STORE}"));
    assert_eq!(a.hash, moved.hash);
    assert_ne!(a.line, moved.line);
    let changed = one(&STORE.replace("humidity", "pressure"));
    assert_ne!(a.hash, changed.hash);
    assert_eq!(
        a.definition(),
        json!({
            "name": "store", "enabled": true, "devices": ["*"],
            "trigger": {"mqtt_topic": ["sensors/+/temperature", "sensors/+/humidity"]},
            "condition": null, "type": "insert_bucket"
        })
    );
}

#[test]
fn several_files_load_in_name_order() {
    let d = Dir::new(&[
        ("b.toml", &STORE.replace("\"store\"", "\"b\"")),
        ("a.toml", &STORE.replace("\"store\"", "\"a\"")),
        ("notes.txt", "not an action file"),
        (".hidden.toml", "garbage ["),
    ]);
    let names: Vec<String> = d.load().unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn empty_directory_has_no_actions() {
    assert_eq!(Dir::new(&[]).load().unwrap(), vec![]);
}

// ---- Problems, each with its line.

#[test]
fn missing_directory() {
    let errors = load_dir(Path::new("/no/such/brook/actions")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .starts_with("/no/such/brook/actions: cannot read the actions directory: "),
        "{}",
        errors[0]
    );
}

#[test]
fn toml_syntax_error() {
    assert_eq!(
        errors_of("[[action]]\nname = \"x\"\ntype = \n"),
        vec!["a.toml:3: TOML syntax error: string values must be quoted, expected literal string"]
    );
}

#[test]
fn unknown_keys_everywhere() {
    let d = Dir::new(&[
        (
            "a.toml",
            r#"title = "mine"

[[action]]
name = "x"
colour = "red"
trigger = { mqtt_topic = ["a"], qos = 1 }
condition = { variable = "t", op = ">", value = 1, unit = "C" }
type = "analysis"
analysis = { command = ["sh", "s.sh"], retries = 3 }

[[action]]
name = "y"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { topic = "t", qos = 0, dup = true }
"#,
        ),
        ("s.sh", "echo\n"),
    ]);
    assert_eq!(
        d.errors(),
        vec![
            "a.toml:1: unknown key `title` (a file holds only [[action]] tables)",
            "a.toml:5: unknown key `colour` in [[action]] (known keys: name, enabled, devices, trigger, condition, unlock, type, analysis, mqtt_publish, http_post, email)",
            "a.toml:6: unknown key `qos` in trigger (known keys: mqtt_topic, variable, schedule, every, device_event, timezone)",
            "a.toml:7: unknown key `unit` in condition (known keys: variable, op, value, field)",
            "a.toml:9: unknown key `retries` in analysis (known keys: command, timeout, env)",
            "a.toml:15: unknown key `dup` in mqtt_publish (known keys: topic, payload, qos, retain)",
        ]
    );
}

#[test]
fn missing_keys_are_reported_at_the_header() {
    assert_eq!(
        errors_of("# actions\n\n[[action]]\nenabled = true\n"),
        vec![
            "a.toml:3: missing key `name`",
            "a.toml:3: missing key `trigger` (one of mqtt_topic, variable, schedule, every, device_event)",
            "a.toml:3: missing key `type` (insert_bucket, analysis, mqtt_publish, http_post or email)",
        ]
    );
}

#[test]
fn wrong_value_types() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = 5\nenabled = \"yes\"\ndevices = {}\ntrigger = \"sensors/#\"\ntype = \"insert_bucket\"\n"
        ),
        vec![
            "a.toml:2: name: expected a string, got integer",
            "a.toml:3: enabled: expected true or false, got string",
            "a.toml:4: devices: expected an array of strings (\"*\", names, \"tag:KEY=VALUE\"), got table",
            "a.toml:5: trigger: expected a table like { mqtt_topic = [\"sensors/#\"] }, got string",
        ]
    );
}

#[test]
fn bad_device_selectors() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"x\"\ndevices = [\n  \"tag:site\",\n  \"\",\n]\ntrigger = { mqtt_topic = [\"a\"] }\ntype = \"insert_bucket\"\n\n[[action]]\nname = \"y\"\ndevices = []\ntrigger = { mqtt_topic = [\"a\"] }\ntype = \"insert_bucket\"\n"
        ),
        vec![
            "a.toml:4: devices: invalid device selector \"tag:site\": expected \"tag:KEY=VALUE\"",
            "a.toml:5: devices: a device name is empty; use \"*\" for every device",
            "a.toml:12: devices: is empty, so the action would never run; use [\"*\"] for every device",
        ]
    );
}

#[test]
fn bad_topic_filters_each_on_its_line() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"x\"\ntype = \"insert_bucket\"\n\n[action.trigger]\nmqtt_topic = [\n  \"ok/+/fine\",\n  \"a/#/b\",\n  \"a/b#\",\n  \"a/x+/c\",\n  \"\",\n]\n"
        ),
        vec![
            "a.toml:8: mqtt_topic: invalid topic filter \"a/#/b\": uses '#' other than as the whole last level",
            "a.toml:9: mqtt_topic: invalid topic filter \"a/b#\": uses '#' other than as the whole last level",
            "a.toml:10: mqtt_topic: invalid topic filter \"a/x+/c\": uses '+' other than as a whole level",
            "a.toml:11: mqtt_topic: invalid topic filter \"\": is empty",
        ]
    );
}

#[test]
fn trigger_needs_exactly_one_kind() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"x\"\ntrigger = {}\ntype = \"insert_bucket\"\n\n[[action]]\nname = \"y\"\ntype = \"analysis\"\nanalysis = { command = [\"true\"] }\n[action.trigger]\nschedule = \"* * * * *\"\ndevice_event = \"connect\"\n"
        ),
        vec![
            "a.toml:3: trigger: needs one of mqtt_topic, variable, schedule, every, device_event",
            "a.toml:12: trigger: has both schedule and device_event; give exactly one",
        ]
    );
}

#[test]
fn bad_device_event() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"x\"\ntrigger = { device_event = \"online\" }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"t\" }\n"
        ),
        vec!["a.toml:3: device_event: expected \"connect\" or \"disconnect\", got \"online\""]
    );
}

#[test]
fn bad_cron() {
    let text = |schedule: &str| {
        format!(
            "[[action]]\nname = \"x\"\ntype = \"analysis\"\nanalysis = {{ command = [\"true\"] }}\ntrigger = {{ schedule = \"{schedule}\" }}\n"
        )
    };
    assert_eq!(
        errors_of(&text("* * *")),
        vec!["a.toml:5: schedule: invalid schedule \"* * *\": expected 5 fields (minute hour day month weekday) or 6-7 with seconds first, got 3"]
    );
    let errors = errors_of(&text("0 61 * * * *"));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("a.toml:5: schedule: invalid schedule \"0 61 * * * *\": "),
        "{}",
        errors[0]
    );
    assert_eq!(
        errors_of(&text("0 0 * * 8")),
        vec!["a.toml:5: schedule: invalid day of week \"8\": \"8\" is not 0-7 (0 and 7 are Sunday) or a name like MON"]
    );
    assert_eq!(
        errors_of(&text("0 0 30 2 *")),
        vec!["a.toml:5: schedule: schedule \"0 0 30 2 *\" never fires"]
    );
}

#[test]
fn bad_condition() {
    assert_eq!(
        errors_of(
            r#"[[action]]
name = "x"
trigger = { mqtt_topic = ["a"] }
type = "insert_bucket"
condition = { variable = "t", op = "~", value = [1] }

[[action]]
name = "y"
trigger = { mqtt_topic = ["a"] }
type = "insert_bucket"
condition = { variable = "on", op = "<", value = true }

[[action]]
name = "z"
trigger = { mqtt_topic = ["a"] }
type = "insert_bucket"
condition = { op = "=" }
"#
        ),
        vec![
            "a.toml:5: condition.op: expected one of <, >, =, !=, <=, >=, between, any, got \"~\"",
            "a.toml:11: condition.op: < does not apply to a boolean; use = or !=",
            "a.toml:17: condition: missing key `variable`",
            "a.toml:17: condition: missing key `value`",
        ]
    );
}

#[test]
fn condition_needs_a_topic_trigger() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"x\"\ntrigger = { device_event = \"connect\" }\ncondition = { variable = \"t\", op = \">\", value = 1 }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"t\" }\n"
        ),
        vec!["a.toml:4: condition: only an mqtt_topic or a variable trigger has data to test; drop the condition or trigger on a topic or a variable"]
    );
}

#[test]
fn bad_type_and_type_tables() {
    assert_eq!(
        errors_of(
            r#"[[action]]
name = "a"
trigger = { mqtt_topic = ["a"] }
type = "store"

[[action]]
name = "b"
trigger = { mqtt_topic = ["a"] }
type = "analysis"

[[action]]
name = "c"
trigger = { mqtt_topic = ["a"] }
type = "insert_bucket"
mqtt_publish = { topic = "x" }

[[action]]
name = "d"
trigger = { mqtt_topic = ["a"] }
type = "mqtt_publish"
analysis = { command = ["true"] }

[[action]]
name = "e"
trigger = { schedule = "@daily" }
type = "insert_bucket"
"#
        ),
        vec![
            "a.toml:4: type: expected insert_bucket, analysis, mqtt_publish, http_post or email, got \"store\"",
            "a.toml:9: type \"analysis\" needs an `analysis` table, like analysis = { command = [\"python3\", \"analysis/x.py\"] }",
            "a.toml:15: `mqtt_publish` table given, but type is \"insert_bucket\"",
            "a.toml:20: type \"mqtt_publish\" needs an `mqtt_publish` table, like mqtt_publish = { topic = \"devices/$DEVICE.NAME$/config\" }",
            "a.toml:21: `analysis` table given, but type is \"mqtt_publish\"",
            "a.toml:26: type: insert_bucket stores a message's data, so it needs an mqtt_topic trigger, not schedule",
        ]
    );
}

#[test]
fn bad_analysis_table() {
    let d = Dir::new(&[(
        "a.toml",
        r#"[[action]]
name = "x"
trigger = { mqtt_topic = ["a"] }
type = "analysis"
analysis = { command = "python3 x.py", timeout = "soon" }

[[action]]
name = "y"
trigger = { mqtt_topic = ["a"] }
type = "analysis"
analysis = { command = [], timeout = "0s" }

[[action]]
name = "z"
trigger = { mqtt_topic = ["a"] }
type = "analysis"

[action.analysis]
command = ["true"]
env = { T_ANALYSIS_TOKEN = "mine", LIST = [1] }
"#,
    )]);
    assert_eq!(
        d.errors(),
        vec![
            "a.toml:5: analysis.command: expected an array like [\"python3\", \"analysis/x.py\"], got string",
            "a.toml:5: analysis.timeout: invalid duration \"soon\": expected a number and a unit, like \"500ms\", \"10s\", \"5m\", \"2h\" or \"1d\"",
            "a.toml:11: analysis.command: is empty",
            "a.toml:11: analysis.timeout: must be more than 0",
            "a.toml:20: analysis.env.LIST: expected a string, got array",
            "a.toml:20: analysis.env: T_ANALYSIS_TOKEN is set by brook itself",
        ]
    );
}

#[test]
fn missing_script_files() {
    let d = Dir::new(&[
        (
            "a.toml",
            r#"[[action]]
name = "x"
trigger = { mqtt_topic = ["a"] }
type = "analysis"
analysis = { command = ["python3", "analysis/missing.py"] }

[[action]]
name = "y"
trigger = { schedule = "0 0 2 * * *" }
type = "analysis"
analysis = { command = [
  "./analysis/nightly.sh",
  "--verbose",
] }

[[action]]
name = "z"
trigger = { schedule = "0 0 2 * * *" }
type = "analysis"
analysis = { command = ["./analysis/plain.sh"] }

[[action]]
name = "w"
trigger = { schedule = "0 0 2 * * *" }
type = "analysis"
analysis = { command = ["node", "analysis"] }
"#,
        ),
        ("analysis/plain.sh", "echo\n"),
    ]);
    // Made not executable after the fact.
    std::fs::set_permissions(
        d.dir.path().join("analysis/plain.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // Paths are shown under the actions directory (here the temp dir,
    // removed by `errors()`).
    assert_eq!(
        d.errors(),
        vec![
            "a.toml:5: analysis.command: script analysis/missing.py not found (commands run in the actions directory: analysis/missing.py does not exist)",
            "a.toml:12: analysis.command: script ./analysis/nightly.sh not found (commands run in the actions directory: ./analysis/nightly.sh does not exist)",
            "a.toml:20: analysis.command: ./analysis/plain.sh is not executable (chmod +x it, or run it through its interpreter)",
        ]
    );
}

#[test]
fn duplicate_names_across_files() {
    let d = Dir::new(&[
        ("a.toml", STORE),
        ("b.toml", &format!("# again\n{STORE}")),
        ("c.toml", &format!("{STORE}{STORE}")),
    ]);
    assert_eq!(
        d.errors(),
        vec![
            "b.toml:4: duplicate action name \"store\" (also at a.toml:3)",
            "c.toml:3: duplicate action name \"store\" (also at a.toml:3)",
            "c.toml:8: duplicate action name \"store\" (also at a.toml:3)",
        ]
    );
}

#[test]
fn bad_names() {
    assert_eq!(
        errors_of(
            "[[action]]\nname = \"\"\ntrigger = { mqtt_topic = [\"a\"] }\ntype = \"insert_bucket\"\n\n[[action]]\nname = \"a/b\"\ntrigger = { mqtt_topic = [\"a\"] }\ntype = \"insert_bucket\"\n"
        ),
        vec![
            "a.toml:2: name: is empty",
            "a.toml:7: name: may not contain `/` (it is part of the admin API's URLs)",
        ]
    );
}

#[test]
fn bad_mqtt_publish_table() {
    assert_eq!(
        errors_of(
            r#"[[action]]
name = "x"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { topic = "devices/+/config", qos = 3, retain = "no" }

[[action]]
name = "y"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { topic = "devices/$DEVICE_NAME$/config", payload = "$VALUE$ costs $5 $UNITS$" }

[[action]]
name = "z"
trigger = { device_event = "connect" }
type = "mqtt_publish"
mqtt_publish = { payload = "x" }
"#
        ),
        vec![
            "a.toml:5: mqtt_publish.topic: invalid topic name \"devices/+/config\": contains a wildcard",
            "a.toml:5: mqtt_publish.qos: expected 0, 1 or 2, got 3",
            "a.toml:5: mqtt_publish.retain: expected true or false, got string",
            "a.toml:11: mqtt_publish.topic: unknown template $DEVICE_NAME$ (known: $DEVICE.NAME$, $DEVICE$, $VARIABLE$, $VALUE$, $UNIT$, $TIME$, $LOCATION$, $GROUP$, $TOPIC$, $ACTION.STATE$)",
            "a.toml:11: mqtt_publish.payload: unknown template $UNITS$ (known: $DEVICE.NAME$, $DEVICE$, $VARIABLE$, $VALUE$, $UNIT$, $TIME$, $LOCATION$, $GROUP$, $TOPIC$, $ACTION.STATE$)",
            "a.toml:17: mqtt_publish: missing key `topic`",
        ]
    );
}

#[test]
fn action_must_be_an_array_of_tables() {
    assert_eq!(
        errors_of("[action]\nname = \"x\"\n"),
        vec!["a.toml:1: `action` must be an array of tables: write [[action]]"]
    );
}

#[test]
fn all_problems_of_all_files_are_reported() {
    let d = Dir::new(&[
        (
            "a.toml",
            "[[action]]\nname = \"a\"\ntype = \"insert_bucket\"\n",
        ),
        ("b.toml", "oops = \n"),
        ("c.toml", STORE),
    ]);
    let errors = d.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("a.toml:1: missing key `trigger`"));
    assert!(errors[1].starts_with("b.toml:1: TOML syntax error"));
}

#[test]
fn check_output() {
    let good = Dir::new(&[("a.toml", STORE)]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_with(good.dir.path(), &mut out, &mut err), 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("1 action OK in {}\n", good.dir.path().display())
    );
    assert!(err.is_empty());

    let bad = Dir::new(&[("a.toml", "[[action]]\nname = \"a\"\n")]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(check_with(bad.dir.path(), &mut out, &mut err), 1);
    let path = bad.dir.path().join("a.toml");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "{p}:1: missing key `trigger` (one of mqtt_topic, variable, schedule, every, device_event)\n\
             {p}:1: missing key `type` (insert_bucket, analysis, mqtt_publish, http_post or email)\n",
            p = path.display()
        )
    );
    assert_eq!(
        String::from_utf8(err).unwrap(),
        format!("brook: 2 problems in {}\n", bad.dir.path().display())
    );
}

#[test]
fn repository_examples_pass_the_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("actions");
    let defs = match load_dir(&dir) {
        Ok(defs) => defs,
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "average-alert-js",
            "average-alert-python",
            "boiler-alarm",
            "forward-http",
            "nightly",
            "send-config",
            "store-readings",
            "too-hot"
        ]
    );
    let kinds: Vec<&str> = defs.iter().map(|d| d.kind.type_name()).collect();
    for kind in ["insert_bucket", "analysis", "mqtt_publish"] {
        assert!(kinds.contains(&kind), "no {kind} example");
    }
}

// ---- Matching.

fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

#[test]
fn device_selectors_match() {
    let north = tags(&[("site", "north"), ("kind", "t")]);
    assert!(DeviceSelector::Any.matches("anything", &[]));
    assert!(DeviceSelector::Name("gh".into()).matches("gh", &[]));
    assert!(!DeviceSelector::Name("gh".into()).matches("gh2", &[]));
    let tag = DeviceSelector::parse("tag:site=north").unwrap();
    assert!(tag.matches("x", &north));
    assert!(!tag.matches("x", &tags(&[("site", "south")])));
    assert!(!tag.matches("x", &[]));
    // An empty tag value is a value like any other.
    let empty = DeviceSelector::parse("tag:kind=").unwrap();
    assert!(!empty.matches("x", &north));
    assert!(empty.matches("x", &tags(&[("kind", "")])));
    assert_eq!(tag.to_text(), "tag:site=north");
}

#[test]
fn action_applies_when_any_selector_matches() {
    let mut def = one(STORE);
    def.devices = vec![
        DeviceSelector::Name("a".into()),
        DeviceSelector::parse("tag:site=north").unwrap(),
    ];
    assert!(def.applies_to("a", &[]));
    assert!(def.applies_to("b", &tags(&[("site", "north")])));
    assert!(!def.applies_to("b", &[]));
}

fn condition(variable: &str, op: Op, value: ConditionValue) -> Condition {
    Condition {
        variable: variable.into(),
        test: Test::Compare(op, value),
        field: None,
    }
}

#[test]
fn numeric_conditions_compare_numbers() {
    let item = |v: Value| json!({"variable": "temperature", "value": v});
    let gt = condition("temperature", Op::Gt, ConditionValue::Number(30.0));
    assert!(gt.matches(&item(json!(30.5))));
    assert!(!gt.matches(&item(json!(30))));
    assert!(!gt.matches(&item(json!(5))));
    // A number sent as text (a raw MQTT payload) still compares as a number.
    assert!(gt.matches(&item(json!("31"))));
    assert!(!gt.matches(&item(json!("hot"))));
    assert!(!gt.matches(&item(json!(true))));
    // Another variable never matches.
    assert!(!gt.matches(&json!({"variable": "humidity", "value": 99})));
    // Variables are compared without regard to case.
    assert!(gt.matches(&json!({"variable": "Temperature", "value": 99})));
    assert!(!gt.matches(&json!({"variable": "temperature"})));
    for (op, v, want) in [
        (Op::Lt, 29.0, true),
        (Op::Lt, 30.0, false),
        (Op::Le, 30.0, true),
        (Op::Ge, 30.0, true),
        (Op::Ge, 29.9, false),
        (Op::Eq, 30.0, true),
        (Op::Ne, 30.0, false),
        (Op::Ne, 31.0, true),
    ] {
        let c = condition("temperature", op, ConditionValue::Number(30.0));
        assert_eq!(c.matches(&item(json!(v))), want, "{v} {} 30", op.as_str());
    }
}

#[test]
fn string_and_bool_conditions() {
    let item = |v: Value| json!({"variable": "state", "value": v});
    let eq = condition("state", Op::Eq, ConditionValue::Text("open".into()));
    assert!(eq.matches(&item(json!("open"))));
    assert!(!eq.matches(&item(json!("closed"))));
    assert!(!eq.matches(&item(json!(1))));
    let ne = condition("state", Op::Ne, ConditionValue::Text("open".into()));
    assert!(ne.matches(&item(json!("closed"))));
    let lt = condition("state", Op::Lt, ConditionValue::Text("m".into()));
    assert!(lt.matches(&item(json!("a"))));
    assert!(!lt.matches(&item(json!("z"))));

    let on = condition("state", Op::Eq, ConditionValue::Bool(true));
    assert!(on.matches(&item(json!(true))));
    assert!(on.matches(&item(json!("true"))));
    assert!(!on.matches(&item(json!(false))));
    assert!(!on.matches(&item(json!(1))));
    let off = condition("state", Op::Ne, ConditionValue::Bool(true));
    assert!(off.matches(&item(json!(false))));
    assert!(!condition("state", Op::Gt, ConditionValue::Bool(false)).matches(&item(json!(true))));

    let items = vec![item(json!("closed")), item(json!("open"))];
    assert!(eq.matches_any(&items));
    assert!(!eq.matches_any(&items[..1]));
}

// ---- Schedules.

#[test]
fn six_field_schedule_is_taken_as_is() {
    let s = parse_schedule("0 0 2 * * *").unwrap();
    assert_eq!(s.source(), "0 0 2 * * *");
}

#[test]
fn five_field_schedule_reads_seconds_as_zero() {
    use chrono::{TimeZone, Timelike, Utc};
    let s = parse_schedule("*/15 * * * *").unwrap();
    let after = Utc.with_ymd_and_hms(2026, 11, 24, 10, 7, 30).unwrap();
    let next = s.after(&after).next().unwrap();
    assert_eq!((next.hour(), next.minute(), next.second()), (10, 15, 0));
}

#[test]
fn five_field_weekdays_mean_what_they_mean_in_crontab() {
    use chrono::{Datelike, TimeZone, Utc, Weekday};
    // 2026-11-24 is a Tuesday.
    let after = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let weekdays = |expr: &str| -> Vec<Weekday> {
        parse_schedule(expr)
            .unwrap()
            .after(&after)
            .take(7)
            .map(|t| t.weekday())
            .collect()
    };
    assert_eq!(weekdays("0 9 * * 1"), vec![Weekday::Mon; 7]);
    assert_eq!(weekdays("0 9 * * 0"), vec![Weekday::Sun; 7]);
    assert_eq!(weekdays("0 9 * * 7"), vec![Weekday::Sun; 7]);
    assert_eq!(weekdays("0 9 * * sat"), vec![Weekday::Sat; 7]);
    assert_eq!(
        weekdays("0 9 * * 1-5"),
        vec![
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu
        ]
    );
    assert_eq!(
        weekdays("0 9 * * 5-7")[..3],
        [Weekday::Fri, Weekday::Sat, Weekday::Sun]
    );
    assert_eq!(
        weekdays("0 9 * * */2")[..4],
        [Weekday::Thu, Weekday::Sat, Weekday::Sun, Weekday::Tue]
    );
    assert_eq!(weekdays("0 9 * * 0,3")[..2], [Weekday::Wed, Weekday::Sun]);
    // The cron crate's own 6-field syntax keeps its numbering: 2 = Monday.
    assert_eq!(
        parse_schedule("0 0 9 * * 2")
            .unwrap()
            .after(&after)
            .next()
            .unwrap()
            .weekday(),
        Weekday::Mon
    );
    assert_eq!(crontab_weekdays("1-5").unwrap(), "2,3,4,5,6");
    assert_eq!(crontab_weekdays("*").unwrap(), "*");
    assert!(crontab_weekdays("5-1").is_err());
    assert!(crontab_weekdays("*/0").is_err());
}

#[test]
fn shorthand_schedules() {
    assert!(parse_schedule("@hourly").is_ok());
    assert!(parse_schedule("@sometimes").is_err());
}

// ---- Templates.

#[test]
fn templates_render_in_one_pass() {
    let vars = TemplateVars {
        device_name: "gh".into(),
        device_id: "abc123".into(),
        variable: "temperature".into(),
        value: "$TOPIC$".into(),
        topic: "sensors/gh/temperature".into(),
        ..TemplateVars::default()
    };
    assert_eq!(
        render_template("devices/$DEVICE.NAME$/$DEVICE$/$VARIABLE$", &vars),
        "devices/gh/abc123/temperature"
    );
    // A value that looks like a template is not expanded again; a lone `$` stays.
    assert_eq!(
        render_template("$VALUE$ at $TOPIC$ costs $5", &vars),
        "$TOPIC$ at sensors/gh/temperature costs $5"
    );
    let spec = PublishSpec {
        topic: "devices/$DEVICE.NAME$/config".into(),
        payload: "{\"for\":\"$DEVICE.NAME$\"}".into(),
        qos: 1,
        retain: false,
    };
    assert_eq!(
        spec.render(&vars).unwrap(),
        (
            "devices/gh/config".to_string(),
            "{\"for\":\"gh\"}".to_string()
        )
    );
    let wild = TemplateVars {
        device_name: "a+b".into(),
        ..vars
    };
    assert_eq!(
        spec.render(&wild).unwrap_err(),
        "topic \"devices/a+b/config\" contains a wildcard"
    );
}

// ---- TagoIO's actions: variable triggers, conditions, unlock, deliveries.

const ALARM: &str = r#"
[[action]]
name = "alarm"
trigger = { variable = ["Temperature", "humidity", "temperature"] }
condition = [
  { variable = "temperature", op = "between", value = [20, 30] },
  { variable = "door", op = "any" },
  { variable = "code", op = "=", value = 0x1, field = "string" },
]
unlock = { variable = "temperature", op = "<", value = 90 }
type = "http_post"
http_post = { url = "https://host/path/$DEVICE.NAME$", headers = { Authorization = "Bearer $VALUE$" }, attempts = 10, backoff = "2s", timeout = "5s", fallback_device = "http-errors", max_pending = 50 }
"#;

#[test]
fn variable_trigger_with_conditions_unlock_and_http_post() {
    let def = one(ALARM);
    assert_eq!(
        def.trigger,
        Trigger::Variable(vec!["temperature".into(), "humidity".into()]),
        "lower-cased, each once"
    );
    assert_eq!(
        def.conditions,
        vec![
            Condition {
                variable: "temperature".into(),
                test: Test::Between(ConditionValue::Number(20.0), ConditionValue::Number(30.0)),
                field: None,
            },
            Condition {
                variable: "door".into(),
                test: Test::Any,
                field: None,
            },
            Condition {
                variable: "code".into(),
                test: Test::Compare(Op::Eq, ConditionValue::Text("0x1".into())),
                field: Some(Field::String),
            },
        ]
    );
    assert_eq!(
        def.unlock,
        vec![Condition {
            variable: "temperature".into(),
            test: Test::Compare(Op::Lt, ConditionValue::Number(90.0)),
            field: None,
        }]
    );
    let ActionKind::HttpPost(spec) = &def.kind else {
        panic!("not an http_post: {:?}", def.kind);
    };
    assert_eq!(spec.url, "https://host/path/$DEVICE.NAME$");
    assert_eq!(spec.headers["Authorization"], "Bearer $VALUE$");
    assert_eq!(
        spec.retry,
        RetrySpec {
            attempts: 10,
            backoff: Duration::from_secs(2)
        }
    );
    assert_eq!(spec.timeout, Duration::from_secs(5));
    assert_eq!(spec.fallback_device.as_deref(), Some("http-errors"));
    assert_eq!(spec.max_pending, 50);
    // GET /actions shows the header's name, not its value; the hash still
    // changes with the value.
    assert_eq!(
        def.definition()["http_post"]["headers"],
        json!({"Authorization": "(hidden)"})
    );
    assert_eq!(def.definition()["unlock"]["op"], "<");
    assert_eq!(
        def.definition()["condition"][0]["value"],
        json!([20.0, 30.0])
    );
    let other = one(&ALARM.replace("Bearer $VALUE$", "Bearer x"));
    assert_ne!(def.hash, other.hash);
}

#[test]
fn http_post_and_email_defaults() {
    let post = one(
        "[[action]]\nname = \"p\"\ntrigger = { mqtt_topic = \"a/#\" }\ntype = \"http_post\"\nhttp_post = { url = \"http://127.0.0.1:9/x\" }\n",
    );
    let ActionKind::HttpPost(spec) = post.kind else {
        panic!("not an http_post");
    };
    assert_eq!(
        spec.retry,
        RetrySpec {
            attempts: 3,
            backoff: Duration::from_secs(1)
        }
    );
    assert_eq!(spec.timeout, Duration::from_secs(10));
    assert_eq!((spec.fallback_device, spec.max_pending), (None, 1000));

    let mail = one(
        "[[action]]\nname = \"m\"\ntrigger = { variable = \"t\" }\ntype = \"email\"\nemail = { to = \"ops@example.com\", subject = \"$DEVICE.NAME$: $VARIABLE$ = $VALUE$ $UNIT$\" }\n",
    );
    let ActionKind::Email(spec) = mail.kind else {
        panic!("not an email");
    };
    assert_eq!(spec.to, vec!["ops@example.com"]);
    assert_eq!(spec.body, "");
    assert_eq!(spec.timeout, Duration::from_secs(30));
}

#[test]
fn bad_http_post_email_unlock_and_timezone_name_their_lines() {
    assert_eq!(
        errors_of(
            r#"[[action]]
name = "a"
trigger = { variable = ["t"] }
type = "http_post"
http_post = { url = "ftp://host/x", attempts = 0, backoff = "2m", headers = { Host = "x", "X-Bad" = "a$NOPE$" }, fallback_device = "no/slash" }

[[action]]
name = "b"
trigger = { mqtt_topic = ["t"] }
unlock = { variable = "t", op = "<", value = 1 }
type = "email"
email = { to = ["not an address"], body = "x" }

[[action]]
name = "c"
trigger = { schedule = "0 2 * * *", timezone = "Mars/Olympus" }
type = "mqtt_publish"
mqtt_publish = { topic = "t" }

[[action]]
name = "d"
trigger = { every = "30s" }
type = "mqtt_publish"
mqtt_publish = { topic = "t" }

[[action]]
name = "e"
trigger = { every = "5m", timezone = "UTC" }
type = "mqtt_publish"
mqtt_publish = { topic = "t" }

[[action]]
name = "f"
trigger = { variable = ["has space"] }
condition = { variable = "t", op = "between", value = [30, 20] }
unlock = [{ variable = "t", op = "any", value = 1 }]
type = "insert_bucket"
"#
        ),
        vec![
            "a.toml:5: http_post.url: \"ftp://host/x\" has the scheme \"ftp\"; use http:// or https://",
            "a.toml:5: http_post.headers: \"Host\" is set by brook itself",
            "a.toml:5: http_post.headers.X-Bad: unknown template $NOPE$ (known: $DEVICE.NAME$, $DEVICE$, $VARIABLE$, $VALUE$, $UNIT$, $TIME$, $LOCATION$, $GROUP$, $TOPIC$, $ACTION.STATE$)",
            "a.toml:5: http_post.attempts: expected a whole number from 1 to 100, got 0",
            "a.toml:5: http_post.backoff: \"2m\" is longer than 1m",
            "a.toml:5: http_post.fallback_device: \"no/slash\" is not a device name (1 to 100 characters of A-Za-z0-9_.-)",
            "a.toml:10: unlock: only a variable trigger can be unlocked by data (as TagoIO's Trigger Unlock), not mqtt_topic",
            "a.toml:12: email.to: \"not an address\" is not an email address: Missing domain or user",
            "a.toml:12: email: missing key `subject`",
            "a.toml:16: timezone: unknown time zone \"Mars/Olympus\": expected an IANA name like \"America/Sao_Paulo\", \"Europe/Berlin\" or \"UTC\"",
            "a.toml:22: every: \"30s\" is shorter than the shortest interval, 1m",
            "a.toml:28: timezone: applies to a cron schedule only, not to every",
            "a.toml:34: variable: \"has space\" must not contain spaces",
            "a.toml:35: condition.value: [low, high] with low above high never holds",
            "a.toml:36: unlock.value: op \"any\" takes no value",
        ]
    );
}

#[test]
fn forced_field_types() {
    let c = |text: &str| -> Vec<String> {
        errors_of(&format!(
            "[[action]]\nname = \"x\"\ntrigger = {{ variable = \"v\" }}\ncondition = {text}\ntype = \"mqtt_publish\"\nmqtt_publish = {{ topic = \"t\" }}\n"
        ))
    };
    assert_eq!(
        c(r#"{ variable = "v", op = ">", value = "warm", field = "number" }"#),
        vec!["a.toml:4: condition.value: \"warm\" is not a number (field = \"number\")"]
    );
    assert_eq!(
        c(r#"{ variable = "v", op = "=", value = 1, field = "boolean" }"#),
        vec!["a.toml:4: condition.value: 1.0 is not true or false (field = \"boolean\")"]
    );
    assert_eq!(
        c(r#"{ variable = "v", op = "=", value = 1, field = "text" }"#),
        vec!["a.toml:4: condition.field: expected \"number\", \"string\" or \"boolean\", got \"text\""]
    );
    assert_eq!(
        c(r#"{ variable = "v", op = "between", value = [true, false] }"#),
        vec!["a.toml:4: condition.op: between does not apply to booleans; use = or !="]
    );
    assert_eq!(c("[]"), vec!["a.toml:4: condition: is empty"]);
}

#[test]
fn between_any_and_forced_fields_match() {
    let item = |v: Value| json!({"variable": "t", "value": v});
    let between = Condition {
        variable: "t".into(),
        test: Test::Between(ConditionValue::Number(20.0), ConditionValue::Number(30.0)),
        field: None,
    };
    for (v, want) in [
        (json!(20), true),
        (json!(30), true),
        (json!(25.5), true),
        (json!("21"), true),
        (json!(19.9), false),
        (json!(30.1), false),
        (json!("warm"), false),
    ] {
        assert_eq!(between.matches(&item(v.clone())), want, "{v}");
    }
    let any = Condition {
        variable: "t".into(),
        test: Test::Any,
        field: None,
    };
    assert!(any.matches(&item(json!("whatever"))));
    assert!(
        any.matches(&json!({"variable": "t"})),
        "an item without a value is new data too"
    );
    assert!(!any.matches(&json!({"variable": "u", "value": 1})));
    // As a string, "0x1" is "0x1"; 21.5 is "21.5".
    let hex = Condition {
        variable: "t".into(),
        test: Test::Compare(Op::Eq, ConditionValue::Text("0x1".into())),
        field: Some(Field::String),
    };
    assert!(hex.matches(&item(json!("0x1"))));
    assert!(!hex.matches(&item(json!(1))));
    let text = Condition {
        variable: "t".into(),
        test: Test::Compare(Op::Eq, ConditionValue::Text("21.5".into())),
        field: Some(Field::String),
    };
    assert!(
        text.matches(&item(json!(21.5))),
        "a number compared as its text"
    );
    let unforced = Condition {
        field: None,
        ..text
    };
    assert!(
        !unforced.matches(&item(json!(21.5))),
        "without field, a number is not a string"
    );
    // A list holds when each condition is met by some item.
    let conditions = vec![between, any];
    assert!(all_hold(&conditions, &[item(json!(25))]));
    assert!(!all_hold(
        &conditions,
        &[json!({"variable": "u", "value": 25})]
    ));
    assert!(all_hold(&[], &[]));
}

#[test]
fn retries_back_off_doubling_up_to_a_minute() {
    let r = RetrySpec {
        attempts: 10,
        backoff: Duration::from_secs(1),
    };
    let waits: Vec<u64> = (1..=8).map(|n| r.delay_after(n).as_secs()).collect();
    assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    let fast = RetrySpec {
        attempts: 3,
        backoff: Duration::from_millis(100),
    };
    assert_eq!(fast.delay_after(2), Duration::from_millis(200));
    assert_eq!(fast.delay_after(u32::MAX), Duration::from_secs(60));
}

// ---- Schedules in a time zone, and intervals.

#[test]
fn a_schedule_fires_in_its_time_zone() {
    use chrono::{TimeZone, Utc};
    let def = one(
        "[[action]]\nname = \"n\"\ntrigger = { schedule = \"0 2 * * *\", timezone = \"America/Sao_Paulo\" }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"t\" }\n",
    );
    // 02:00 in São Paulo (UTC-3, no daylight saving since 2019) is 05:00 UTC.
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    assert_eq!(
        next_firing(&def.trigger, now),
        Some(Utc.with_ymd_and_hms(2026, 11, 25, 5, 0, 0).unwrap())
    );
    assert_eq!(
        def.definition()["trigger"],
        json!({"schedule": "0 2 * * *", "timezone": "America/Sao_Paulo"})
    );
}

#[test]
fn every_fires_on_multiples_of_its_interval() {
    use chrono::{TimeZone, Utc};
    let def = one(
        "[[action]]\nname = \"e\"\ntrigger = { every = \"5m\" }\ntype = \"mqtt_publish\"\nmqtt_publish = { topic = \"t\" }\n",
    );
    assert_eq!(def.trigger, Trigger::Every(Duration::from_secs(300)));
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 7, 30).unwrap();
    assert_eq!(
        next_firing(&def.trigger, now),
        Some(Utc.with_ymd_and_hms(2026, 11, 24, 12, 10, 0).unwrap())
    );
    let on_the_dot = Utc.with_ymd_and_hms(2026, 11, 24, 12, 10, 0).unwrap();
    assert_eq!(
        next_firing(&def.trigger, on_the_dot),
        Some(Utc.with_ymd_and_hms(2026, 11, 24, 12, 15, 0).unwrap()),
        "strictly after now"
    );
    assert_eq!(def.definition()["trigger"], json!({"every": "5m"}));
    assert_eq!(def.trigger.tagoio_type(), "interval");
}

// ---- Message variables.

#[test]
fn every_message_variable_is_filled_from_the_item() {
    let item = json!({
        "variable": "temperature", "value": 31.5, "unit": "°C",
        "time": "2026-11-24T10:00:00.000Z", "group": "g1",
        "location": {"type": "Point", "coordinates": [-46.6, -23.5]},
    });
    let vars = TemplateVars {
        device_name: "gh".into(),
        device_id: "abc".into(),
        topic: "sensors/gh".into(),
        action_state: "locked".into(),
        ..TemplateVars::default()
    }
    .with_item(Some(&item));
    assert_eq!(
        render_template(
            "$DEVICE.NAME$ $DEVICE$ $VARIABLE$=$VALUE$$UNIT$ at $TIME$ in $LOCATION$ ($GROUP$) on $TOPIC$: $ACTION.STATE$",
            &vars
        ),
        "gh abc temperature=31.5°C at 2026-11-24T10:00:00.000Z in -23.5,-46.6 (g1) on sensors/gh: locked"
    );
    // In a URL a value is percent-encoded; in a header, control characters go.
    let hostile = TemplateVars {
        value: "../../admin?x=1\r\nX-Evil: 1".into(),
        ..vars
    };
    assert_eq!(
        render_url("https://h/v/$VALUE$", &hostile),
        "https://h/v/..%2F..%2Fadmin%3Fx%3D1%0D%0AX-Evil%3A%201"
    );
    assert_eq!(
        render_line("v=$VALUE$", &hostile),
        "v=../../admin?x=1  X-Evil: 1"
    );
}
