//! The crate's modules form layers: a module uses only modules of lower
//! layers (or of its own layer where the table below says so), so there is
//! no import cycle. This reads every `src/**/*.rs` (tests and comments left
//! out), collects the top-level modules each refers to (`crate::x`, and
//! `super::` from a module's files), and checks each reference against the
//! table, which is also the README's "Layout".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom-up. A module may use those in earlier layers, and in its own
/// layer those listed after it in its row.
const LAYERS: &[&[&str]] = &[
    &["metrics", "protocol", "config"],
    &["store"],
    &["device", "router"],
    &["actions"],
    &["broker"],
    &["bridge", "session"],
    &["http", "listener", "sys"],
    &["server", "cli", "fuzzing"],
];

fn layer_of(module: &str) -> Option<(usize, usize)> {
    LAYERS.iter().enumerate().find_map(|(layer, row)| {
        row.iter()
            .position(|m| *m == module)
            .map(|pos| (layer, pos))
    })
}

/// The source without comments and without `#[cfg(test)]` modules.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn refs(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let after = &rest[i + prefix.len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `use crate::{a, b::c}`
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = &rest[i + prefix.len()..];
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        // The binaries and the crate root are not modules of a layer.
        if parts[0] == "bin" || parts.len() == 1 && matches!(parts[0].as_str(), "lib" | "main") {
            continue;
        }
        let module = parts[0].clone();
        let text = code(&std::fs::read_to_string(&file).expect("read a source file"));
        let mut used = refs(&text, "crate::");
        // `super::x` from `module/file.rs` (or deeper) stays inside `module`;
        // from `module.rs` or `module/mod.rs` it names a crate-level module.
        let top_file = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod");
        if top_file {
            used.extend(refs(&text, "super::"));
        }
        used.remove(&module);
        uses.entry(module).or_default().extend(used);
    }
    let mut wrong = Vec::new();
    for (module, used) in &uses {
        let Some((layer, pos)) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer of tests/layers.rs"));
            continue;
        };
        for other in used {
            let Some((other_layer, other_pos)) = layer_of(other) else {
                continue; // not a module (a macro or a type at the root)
            };
            let below = other_layer < layer || (other_layer == layer && other_pos > pos);
            if !below {
                wrong.push(format!(
                    "{module} (layer {layer}) uses {other} (layer {other_layer})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules out of layer order:\n{}",
        wrong.join("\n")
    );
}
