//! Diagnostics for TOML files read by hand or through serde, shared by
//! `config.toml` and the action files: the line of a byte offset, the dotted
//! key at a span, and serde's messages reworded for people who write TOML.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// Where each line of a text starts, to turn byte offsets into line numbers.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Rewords serde's messages for people who write TOML, not Rust: "unknown
/// field" becomes "unknown key", the raw structs' names become "a table".
pub(crate) fn plain_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let known = rest
            .split_once(", expected ")
            .map(|(_, known)| known.replace("one of ", "").replace('`', ""));
        return match known {
            Some(known) => format!("unknown key (known keys: {known})"),
            None => "unknown key".to_string(),
        };
    }
    let mut out = message.replace("missing field `", "missing key `");
    for raw in [
        "struct RawConfig",
        "struct RawServer",
        "struct RawMqtt",
        "struct RawHttp",
        "struct RawActions",
        "struct RawLimits",
        "struct RawData",
        "struct RawSmtp",
        "struct RawLog",
        "struct RawAcl",
        "struct RawBridge",
        "struct RawTopicMap",
    ] {
        out = out.replace(raw, "a table");
    }
    out
}

/// The dotted key whose name or value covers `span`, the innermost one
/// (`mqtt.listen`, `acl.who`); `None` when the span is outside every key.
pub(crate) fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    let mut path = Vec::new();
    let mut best: Option<(usize, Vec<String>)> = None;
    search_table(table, span, &mut path, &mut best);
    best.map(|(_, path)| path.join("."))
}

/// Walks `table` for [`key_at`], keeping in `best` the narrowest match.
fn search_table(
    table: &DeTable<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        for candidate in [key.span(), value.span()] {
            let covers = candidate.start <= span.start
                && (span.end <= candidate.end || span.start < candidate.end);
            let width = candidate.end.saturating_sub(candidate.start);
            if covers && best.as_ref().is_none_or(|(w, _)| width <= *w) {
                *best = Some((width, path.clone()));
            }
        }
        search_value(value.get_ref(), span, path, best);
        path.pop();
    }
}

/// Walks into tables and arrays of tables for [`search_table`].
fn search_value(
    value: &DeValue<'_>,
    span: &Range<usize>,
    path: &mut Vec<String>,
    best: &mut Option<(usize, Vec<String>)>,
) {
    match value {
        DeValue::Table(table) => search_table(table, span, path, best),
        DeValue::Array(array) => {
            for item in array.iter() {
                search_value(item.get_ref(), span, path, best);
            }
        }
        _ => {}
    }
}
