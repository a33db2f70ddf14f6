//! Installing the outside clients some tests drive (TagoIO's SDKs, MQTT.js,
//! paho-mqtt) at the exact versions pinned in the repository, once per test
//! run, into `target/NAME/`; reused while the pinned files are unchanged.
//! When a tool is missing or the install fails, the tests fail under `CI`
//! and are skipped (with a line saying why) otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one install step (venv, pip, npm ci) may take on a slow machine
/// with a cold cache.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `target/NAME/`: found from this test binary (`target/debug/deps/…`), so
/// a custom `CARGO_TARGET_DIR` is followed.
pub(crate) fn env_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join(name)
}

/// `tool`'s path when it is on PATH.
pub(crate) fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs an install step to its end within [`INSTALL_TIMEOUT`]; Err carries
/// the command and the tail of its output.
pub(crate) fn install_step(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    // Drained on threads, so a chatty installer never blocks on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {INSTALL_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let output = text(out) + &text(err);
    let tail: String = output
        .lines()
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!("{shown} failed ({status}):\n{tail}"))
}

fn drain(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Holds an exclusive lock on `DIR/.lock` until dropped, so two
/// test runs at once (two `cargo test`s) do not install into one place.
pub(crate) struct InstallLock(#[allow(dead_code)] fs::File);

impl InstallLock {
    pub(crate) fn take(dir: &Path) -> Result<InstallLock, String> {
        use std::os::unix::io::AsRawFd;
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(".lock");
        let file = fs::File::create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        // SAFETY: flock on a descriptor this File owns; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(InstallLock(file))
    }
}

/// Installs into `dir` unless its marker already holds `pinned` (the pinned
/// file's text): then the install is the one wanted and is reused.
pub(crate) fn install_once(
    dir: &Path,
    pinned: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let marker = dir.join(".brook-installed");
    if fs::read_to_string(&marker).is_ok_and(|m| m == pinned) {
        return Ok(());
    }
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    install(dir)?;
    fs::write(&marker, pinned).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// A venv in `env/python` with `requirements` (a pinned pip file)
/// installed; its Python.
pub(crate) fn python_venv(requirements: &Path, env: &Path) -> Result<PathBuf, String> {
    let python3 = on_path("python3").ok_or("python3 not found on PATH")?;
    let _lock = InstallLock::take(env)?;
    let pinned = fs::read_to_string(requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = env.join("python");
    install_once(&venv, &pinned, |venv| {
        install_step(Command::new(&python3).args(["-m", "venv"]).arg(venv)).map_err(|e| {
            format!("{e}\n(on Debian, `apt-get install python3-venv` provides the venv module)")
        })?;
        install_step(
            Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--disable-pip-version-check"])
                .args(["--no-input", "--quiet", "-r"])
                .arg(requirements),
        )
    })?;
    Ok(venv.join("bin/python"))
}

/// `env/node/node_modules`, installed by `npm ci` from `pinned`'s
/// `package.json` and `package-lock.json`.
pub(crate) fn node_modules(pinned: &Path, env: &Path) -> Result<PathBuf, String> {
    on_path("node").ok_or("node not found on PATH")?;
    let npm = on_path("npm").ok_or("npm not found on PATH")?;
    let _lock = InstallLock::take(env)?;
    let lock_file = pinned.join("package-lock.json");
    let pinned_text = fs::read_to_string(&lock_file)
        .map_err(|e| format!("cannot read {}: {e}", lock_file.display()))?;
    let project = env.join("node");
    install_once(&project, &pinned_text, |project| {
        for file in ["package.json", "package-lock.json"] {
            fs::copy(pinned.join(file), project.join(file))
                .map_err(|e| format!("cannot copy {file}: {e}"))?;
        }
        install_step(
            Command::new(&npm)
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(project),
        )
    })?;
    Ok(project.join("node_modules"))
}

/// Under `CI`, a missing install fails the test; elsewhere it skips it, saying why.
pub(crate) fn required<T: Clone>(what: &str, installed: &Result<T, String>) -> Option<T> {
    match installed {
        Ok(t) => Some(t.clone()),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{what} could not be installed, and CI needs it:\n{e}")
        }
        Err(e) => {
            eprintln!("skipping: {what} could not be installed: {e}");
            None
        }
    }
}

/// `tests/ws-clients/`: MQTT.js and paho-mqtt pinned, and their scripts.
pub(crate) fn ws_clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ws-clients")
}

/// `node_modules` with MQTT.js (`tests/ws-clients/package.json`), installed
/// into `target/ws-clients-env/` on first use; None (skip) or a panic
/// (under CI) when it cannot be.
pub(crate) fn mqtt_js() -> Option<PathBuf> {
    static NODE: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    required(
        "MQTT.js (tests/ws-clients/package.json)",
        NODE.get_or_init(|| node_modules(&ws_clients_dir(), &env_dir("ws-clients-env"))),
    )
}
