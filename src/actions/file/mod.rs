//! Action files: `actions/*.toml`, each with `[[action]]` tables, read into
//! [`ActionDef`]s that the action supervisor matches against publishes,
//! schedules and device events, and checked by `brook actions check`.
//!
//! A file is read as a spanned TOML tree and walked by hand rather than
//! deserialized, so that every problem in every file is reported at once,
//! each as `FILE:LINE: message` with the line of the offending key (or of its
//! `[[action]]` header when a key is missing). Nothing is loaded unless the
//! whole directory is clean: a reload that fails keeps the old set.

//!
//! `def.rs` holds the definitions and how they match devices,
//! `condition.rs` the conditions, `template.rs` the message variables,
//! `schedule.rs` the cron rules and time zones, `walk.rs` the reading of one
//! file; this file loads a directory and checks it.

mod condition;
mod def;
mod schedule;
mod template;
mod walk;

pub(crate) use condition::*;
pub(crate) use def::*;
pub(crate) use schedule::{next_firing, parse_schedule};
pub(crate) use template::*;

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use walk::Source;

/// One problem in the action files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionError {
    /// The file, as found in the directory (or the directory itself).
    pub file: PathBuf,
    /// The line of the offending key or `[[action]]` header; none when the
    /// problem is the file (or directory) as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ActionError {}

/// Reads and checks every `DIR/*.toml` (in name order; names starting with
/// `.` are skipped). Either every action, or every problem (sorted by file
/// and line). A directory that does not exist is a problem; so is a name
/// used twice, across files too.
pub(crate) fn load_dir(dir: &Path) -> Result<Vec<ActionDef>, Vec<ActionError>> {
    let dir_error = |message: String| {
        vec![ActionError {
            file: dir.to_path_buf(),
            line: None,
            message,
        }]
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return Err(dir_error(format!("cannot read the actions directory: {e}"))),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Err(dir_error(format!("cannot read the actions directory: {e}"))),
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".toml") && !name.starts_with('.') {
            files.push(dir.join(&*name));
        }
    }
    files.sort();

    // Commands run in the actions directory; an absolute path keeps that true
    // whatever the server's working directory becomes.
    let working_dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut errors = Vec::new();
    let mut defs: Vec<ActionDef> = Vec::new();
    let mut seen: HashMap<String, (PathBuf, usize)> = HashMap::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ActionError {
                    file: file.clone(),
                    line: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        let mut source = Source::new(file, &text, dir, &working_dir);
        for (def, name_line) in source.actions() {
            match seen.get(&def.name) {
                Some((other_file, other_line)) => source.errors.push(ActionError {
                    file: file.clone(),
                    line: Some(name_line),
                    message: format!(
                        "duplicate action name {:?} (also at {}:{other_line})",
                        def.name,
                        other_file.display()
                    ),
                }),
                None => {
                    seen.insert(def.name.clone(), (file.clone(), name_line));
                    defs.push(def);
                }
            }
        }
        errors.append(&mut source.errors);
    }
    if errors.is_empty() {
        Ok(defs)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(errors)
    }
}

/// Checks the text of one action file, `file` in `dir` (as [`load_dir`]
/// does for each file, duplicate names within the file included); for the
/// fuzz target and for checking a file before it is written.
pub(crate) fn load_text(
    file: &Path,
    text: &str,
    dir: &Path,
) -> Result<Vec<ActionDef>, Vec<ActionError>> {
    let mut source = Source::new(file, text, dir, dir);
    let mut defs: Vec<ActionDef> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (def, name_line) in source.actions() {
        if let Some(other_line) = seen.get(&def.name) {
            source.errors.push(ActionError {
                file: file.to_path_buf(),
                line: Some(name_line),
                message: format!(
                    "duplicate action name {:?} (also at line {other_line})",
                    def.name
                ),
            });
            continue;
        }
        seen.insert(def.name.clone(), name_line);
        defs.push(def);
    }
    if source.errors.is_empty() {
        Ok(defs)
    } else {
        Err(source.errors)
    }
}

/// `brook actions check DIR`: prints each problem as `FILE:LINE: message` on
/// stdout and returns 1 (with a count on stderr), or prints
/// `N actions OK in DIR` and returns 0.
pub fn check_command(dir: &Path) -> i32 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    check_with(dir, &mut stdout.lock(), &mut stderr.lock())
}

/// [`check_command`] with its output streams given, for tests.
pub(crate) fn check_with(dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match load_dir(dir) {
        Ok(defs) => {
            let noun = if defs.len() == 1 { "action" } else { "actions" };
            let _ = writeln!(out, "{} {noun} OK in {}", defs.len(), dir.display());
            0
        }
        Err(errors) => {
            for e in &errors {
                let _ = writeln!(out, "{e}");
            }
            let noun = if errors.len() == 1 {
                "problem"
            } else {
                "problems"
            };
            let _ = writeln!(err, "brook: {} {noun} in {}", errors.len(), dir.display());
            1
        }
    }
}

#[cfg(test)]
mod tests;
