//! Running one analysis: the action's command as a child process, fed the
//! way TagoIO feeds an analysis, bounded in time and in captured output.
//!
//! The child gets the JSON `{"context": ..., "scope": [...]}` on stdin (then
//! stdin is closed) and TagoIO's environment variables (`T_ANALYSIS_CONTEXT`,
//! `T_ANALYSIS_DATA`, `T_ANALYSIS_ENV`, `T_ANALYSIS_ID`, `T_ANALYSIS_TOKEN`)
//! plus `TAGOIO_API` and `BROOK_API`, so that a script written with TagoIO's
//! SDK runs unchanged and talks to brook. It runs in its own process group:
//! when the time limit passes the whole group is killed, grandchildren too,
//! and when the command itself ends, whatever it left running in its group is
//! killed as well (a run's processes do not outlive the run). stdout and
//! stderr are drained concurrently, so a chatty child never blocks on a full
//! pipe, and only their first [`OUTPUT_LIMIT`] bytes are kept.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::config::ADMIN_TOKEN_ENV;

/// How much of stdout, and of stderr, a run record keeps. A few kilobytes
/// hold an error's traceback or a script's summary; more would make every
/// run record of a chatty script heavy, and the rest is read and discarded
/// so the child is never blocked.
pub(crate) const OUTPUT_LIMIT: usize = 8 * 1024;

/// How long to wait, after the command has ended and its process group has
/// been killed, for the last bytes of output to be read. The pipes are at EOF
/// as soon as every process holding them is gone, so this only bounds a
/// pathological case (a process that left the group and kept the pipe).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What to run for an `analysis` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnalysisSpec {
    /// The program and its arguments, as written in the action file. A
    /// program with a `/` in it is relative to `working_dir`; one without is
    /// looked up in `PATH`.
    pub command: Vec<String>,
    /// After this long the process group is killed and the run is a timeout.
    pub timeout: Duration,
    /// The action's `env`: set as environment variables and passed, as
    /// TagoIO does, in `T_ANALYSIS_ENV`. Sorted, so the hash is stable.
    pub env: BTreeMap<String, String>,
    /// Where the command runs: the actions directory, so that paths in the
    /// action file mean the same thing to `brook actions check` and at run time.
    pub working_dir: PathBuf,
}

/// The longest string Linux passes as one environment variable
/// (MAX_ARG_STRLEN, `NAME=value` and its NUL included). A larger scope is
/// still given on stdin, but `T_ANALYSIS_DATA` is then `[]`.
const ENV_STRING_LIMIT: usize = 32 * 4096;

/// The default `timeout` of an analysis.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one run is given.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnalysisInput {
    /// TagoIO's `context` object, as the supervisor builds it.
    pub context: Value,
    /// The data items that triggered the run (empty for a schedule).
    pub scope: Vec<Value>,
    /// `T_ANALYSIS_ID`: the action's name.
    pub analysis_id: String,
    /// `T_ANALYSIS_TOKEN`: the token valid for this run only.
    pub token: String,
    /// `TAGOIO_API` and `BROOK_API`: brook's HTTP base URL.
    pub api_base: String,
    /// Names of the server's environment variables the script may see
    /// beside [`BASE_ENV`] (`[actions] pass_env`).
    pub pass_env: Vec<String>,
    /// Entries TagoIO adds to the environment list of an analysis an action
    /// runs (`_action_id`, `_action_type`, `_action_state`, `_device_id`):
    /// in `T_ANALYSIS_ENV` after the action's `env`, not set as variables.
    pub action_env: Vec<(String, String)>,
}

/// The server's environment variables every analysis gets; nothing else of
/// the server's environment reaches a script unless `[actions] pass_env`
/// names it (a secret brook was started with stays brook's).
pub(crate) const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG"];

/// How a run ended: `Ok` (exit code 0), `Error` (another code, a signal
/// not ours, or it could not be started) or `Timeout` (its process group
/// was killed at its time limit); never `Skipped`, which the supervisor
/// records for runs it did not start.
pub(crate) use crate::store::actions::RunOutcome as Outcome;

/// What a run did, for its run record.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub outcome: Outcome,
    /// The exit code, when the command exited by itself.
    pub exit_code: Option<i32>,
    /// The first [`OUTPUT_LIMIT`] bytes of stdout (lossy UTF-8), followed by
    /// a note when more was written.
    pub stdout: String,
    /// The same for stderr.
    pub stderr: String,
    /// One line for people: "exit code 2", "timed out after 30s",
    /// "cannot start python3: No such file or directory (os error 2)".
    pub detail: String,
}

/// Runs the analysis described by `spec` with `input` and waits for it to
/// end, at most `spec.timeout` (plus the moment it takes to kill it).
pub(crate) async fn run(spec: &AnalysisSpec, input: AnalysisInput) -> RunResult {
    let failed = |detail: String| RunResult {
        outcome: Outcome::Error,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        detail,
    };
    let Some(program) = spec.command.first() else {
        return failed("the command is empty".to_string());
    };

    let context_text = input.context.to_string();
    let mut scope_text = Value::Array(input.scope.clone()).to_string();
    let mut note = String::new();
    if "T_ANALYSIS_DATA=".len() + scope_text.len() + 1 > ENV_STRING_LIMIT {
        note = format!(
            "; T_ANALYSIS_DATA was left empty: the scope ({} bytes) is larger than an \
             environment variable may be, it is on stdin",
            scope_text.len()
        );
        scope_text = "[]".to_string();
    }
    let env_list: Vec<Value> = spec
        .env
        .iter()
        .chain(input.action_env.iter().map(|(k, v)| (k, v)))
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    let stdin_text = json!({"context": input.context, "scope": input.scope}).to_string();

    let mut cmd = Command::new(resolve_program(program, &spec.working_dir));
    cmd.args(&spec.command[1..])
        .current_dir(&spec.working_dir)
        .env_clear();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(input.pass_env.iter().map(String::as_str))
        // The admin token is brook's, never the script's.
        .filter(|name| *name != ADMIN_TOKEN_ENV)
    {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.envs(&spec.env)
        .env("T_ANALYSIS_CONTEXT", &context_text)
        .env("T_ANALYSIS_DATA", &scope_text)
        .env("T_ANALYSIS_ENV", Value::Array(env_list).to_string())
        .env("T_ANALYSIS_ID", &input.analysis_id)
        .env("T_ANALYSIS_TOKEN", &input.token)
        .env("TAGOIO_API", &input.api_base)
        .env("BROOK_API", &input.api_base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Should this future be dropped mid-run, the child does not live on.
        .kill_on_drop(true);

    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start {program}: {e}")),
    };
    // The child's pid is its process group's id (process_group(0)).
    let pgid = child.id().map(|id| id as libc::pid_t);

    // stdin is written on its own task: a child that never reads it must not
    // hold up the rest; one that exits early gives a broken pipe, ignored.
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            let _ = stdin.write_all(stdin_text.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stdout = child.stdout.take().map(|s| tokio::spawn(capture(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(capture(s)));

    let waited = tokio::time::timeout(spec.timeout, child.wait()).await;
    // Killing the group either ends a timed-out run or clears away what a
    // finished command left running; both close the pipes.
    kill_group(pgid);
    let (outcome, exit_code, detail) = match waited {
        Err(_) => {
            // Reap the killed leader so it leaves no zombie.
            let _ = child.wait().await;
            (
                Outcome::Timeout,
                None,
                format!("timed out after {}, killed", human(spec.timeout)),
            )
        }
        Ok(Err(e)) => (Outcome::Error, None, format!("waiting for {program}: {e}")),
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(0), _) => (Outcome::Ok, Some(0), "exit code 0".to_string()),
            (Some(code), _) => (Outcome::Error, Some(code), format!("exit code {code}")),
            (None, Some(signal)) => (Outcome::Error, None, format!("killed by signal {signal}")),
            (None, None) => (Outcome::Error, None, format!("{status}")),
        },
    };
    let stdout = collect(stdout).await;
    let stderr = collect(stderr).await;
    RunResult {
        outcome,
        exit_code,
        stdout,
        stderr,
        detail: detail + &note,
    }
}

/// `program` as the child will find it: a relative path with a `/` is taken
/// from the working directory, whatever the platform's exec does with it.
fn resolve_program(program: &str, working_dir: &Path) -> PathBuf {
    let path = Path::new(program);
    if program.contains('/') && path.is_relative() {
        working_dir.join(path)
    } else {
        path.to_path_buf()
    }
}

/// SIGKILL to every process of the group. A group already gone (ESRCH) is
/// the usual case after a clean exit and is not an error.
fn kill_group(pgid: Option<libc::pid_t>) {
    if let Some(pgid) = pgid.filter(|pgid| *pgid > 0) {
        // SAFETY: killpg only sends a signal; a stale id yields ESRCH.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// What one output stream gave: the kept bytes and the total written.
struct Captured {
    kept: Vec<u8>,
    total: usize,
}

/// Reads `stream` to its end, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn capture(mut stream: impl AsyncRead + Unpin) -> Captured {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                total += n;
            }
        }
    }
    Captured { kept, total }
}

/// The captured text of one stream, with a note when it was cut.
async fn collect(task: Option<tokio::task::JoinHandle<Captured>>) -> String {
    let Some(mut task) = task else {
        return String::new();
    };
    let captured = match tokio::time::timeout(DRAIN_GRACE, &mut task).await {
        Ok(Ok(captured)) => captured,
        Ok(Err(_)) => return String::new(),
        Err(_) => {
            task.abort();
            return "[output not read: the stream stayed open after the run]".to_string();
        }
    };
    let mut text = String::from_utf8_lossy(&captured.kept).into_owned();
    if captured.total > captured.kept.len() {
        text.push_str(&format!(
            "\n[truncated: {} of {} bytes kept]",
            captured.kept.len(),
            captured.total
        ));
    }
    text
}

/// A duration as an action file would write it: `30s`, `1500ms`, `2m`,
/// `3h`, `30d`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(86_400_000) && ms >= 86_400_000 {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(3_600_000) && ms >= 3_600_000 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms >= 60_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn spec(dir: &Path, command: &[&str], timeout: Duration) -> AnalysisSpec {
        AnalysisSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            timeout,
            env: BTreeMap::from([("LIMIT".to_string(), "30".to_string())]),
            working_dir: dir.to_path_buf(),
        }
    }

    fn input() -> AnalysisInput {
        AnalysisInput {
            context: json!({"token": "run-token", "analysis_id": "too-hot"}),
            scope: vec![json!({"variable": "temperature", "value": 31.5})],
            analysis_id: "too-hot".into(),
            token: "run-token".into(),
            api_base: "http://127.0.0.1:8080".into(),
            pass_env: Vec::new(),
            action_env: Vec::new(),
        }
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn script_receives_scope_on_stdin_and_tagoio_environment() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echo.sh",
            "#!/bin/sh\ncat\necho\necho \"ctx=$T_ANALYSIS_CONTEXT\"\necho \"data=$T_ANALYSIS_DATA\"\n\
             echo \"env=$T_ANALYSIS_ENV\"\necho \"id=$T_ANALYSIS_ID token=$T_ANALYSIS_TOKEN\"\n\
             echo \"api=$TAGOIO_API brook=$BROOK_API limit=$LIMIT admin=${BROOK_ADMIN_TOKEN:-unset}\"\n\
             pwd\necho oops >&2\n",
        );
        let result = rt().block_on(run(
            &spec(dir.path(), &["./echo.sh"], Duration::from_secs(10)),
            input(),
        ));
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
        assert_eq!(result.exit_code, Some(0));
        assert_eq!(result.detail, "exit code 0");
        let lines: Vec<&str> = result.stdout.lines().collect();
        let stdin: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(stdin["scope"][0]["value"], json!(31.5));
        assert_eq!(stdin["context"]["analysis_id"], "too-hot");
        assert_eq!(
            lines[1],
            r#"ctx={"analysis_id":"too-hot","token":"run-token"}"#
        );
        assert_eq!(
            lines[2],
            r#"data=[{"value":31.5,"variable":"temperature"}]"#
        );
        assert_eq!(lines[3], r#"env=[{"key":"LIMIT","value":"30"}]"#);
        assert_eq!(lines[4], "id=too-hot token=run-token");
        assert_eq!(
            lines[5],
            "api=http://127.0.0.1:8080 brook=http://127.0.0.1:8080 limit=30 admin=unset"
        );
        assert_eq!(
            Path::new(lines[6]).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(result.stderr, "oops\n");
    }

    #[test]
    fn non_zero_exit_is_an_error_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let result = rt().block_on(run(
            &spec(
                dir.path(),
                &["sh", "-c", "echo bad >&2; exit 2"],
                Duration::from_secs(10),
            ),
            input(),
        ));
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(result.exit_code, Some(2));
        assert_eq!(result.detail, "exit code 2");
        assert_eq!(result.stderr, "bad\n");
    }

    #[test]
    fn missing_program_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let result = rt().block_on(run(
            &spec(
                dir.path(),
                &["no-such-program-brook"],
                Duration::from_secs(10),
            ),
            input(),
        ));
        assert_eq!(result.outcome, Outcome::Error);
        assert_eq!(result.exit_code, None);
        assert!(
            result
                .detail
                .starts_with("cannot start no-such-program-brook: No such file or directory"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn timeout_kills_the_command_within_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let result = rt().block_on(run(
            &spec(dir.path(), &["sleep", "30"], Duration::from_secs(1)),
            input(),
        ));
        let took = started.elapsed();
        assert_eq!(result.outcome, Outcome::Timeout);
        assert_eq!(result.exit_code, None);
        assert_eq!(result.detail, "timed out after 1s, killed");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }

    /// Whether a process with this pid exists (and is not a zombie).
    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => false,
        }
    }

    #[test]
    fn timeout_kills_grandchildren_too() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("bg.pid");
        let command = format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display());
        let started = Instant::now();
        let result = rt().block_on(run(
            &spec(dir.path(), &["sh", "-c", &command], Duration::from_secs(1)),
            input(),
        ));
        assert_eq!(result.outcome, Outcome::Timeout);
        assert!(started.elapsed() < Duration::from_millis(1500));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "the background sleep {pid} outlived the run");
    }

    #[test]
    fn a_megabyte_of_output_is_truncated_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let result = rt().block_on(run(
            &spec(
                dir.path(),
                &["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' a; head -c 1048576 /dev/zero | tr '\\0' b >&2"],
                Duration::from_secs(10),
            ),
            input(),
        ));
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let note = "\n[truncated: 8192 of 1048576 bytes kept]";
        assert_eq!(result.stdout, format!("{}{note}", "a".repeat(OUTPUT_LIMIT)));
        assert_eq!(result.stderr, format!("{}{note}", "b".repeat(OUTPUT_LIMIT)));
    }

    #[test]
    fn a_scope_too_large_for_the_environment_is_on_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = input();
        // More than a pipe buffer of scope, never read by the child.
        input.scope = vec![json!({"variable": "x", "value": "y".repeat(200_000)})];
        let result = rt().block_on(run(
            &spec(
                dir.path(),
                &["sh", "-c", "echo \"$T_ANALYSIS_DATA\""],
                Duration::from_secs(10),
            ),
            input,
        ));
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
        // Too large for the environment: on stdin only, and the record says so.
        assert_eq!(result.stdout, "[]\n");
        assert!(
            result
                .detail
                .starts_with("exit code 0; T_ANALYSIS_DATA was left empty: the scope (200"),
            "{}",
            result.detail
        );
    }

    #[test]
    fn repository_too_hot_example_prints_an_alert() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("actions");
        let defs = crate::actions::file::load_dir(&dir).expect("the examples load");
        let Some(crate::actions::file::ActionKind::Analysis(spec)) = defs
            .iter()
            .find(|d| d.name == "too-hot")
            .map(|d| d.kind.clone())
        else {
            panic!("no too-hot analysis in actions/");
        };
        let mut input = input();
        input.scope = vec![
            json!({"variable": "temperature", "value": 31.5, "unit": "°C", "device": "gh"}),
            json!({"variable": "temperature", "value": 12}),
        ];
        let result = rt().block_on(run(&spec, input));
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
        assert_eq!(result.stdout, "ALERT: device gh reads 31.5°C, above 30.0\n");
    }

    #[test]
    fn durations_print_as_written() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
        assert_eq!(human(Duration::from_secs(30 * 86_400)), "30d");
    }
}
