//! How the management commands print what they get.

use serde_json::Value;

/// A left-aligned table with a header row, columns two spaces apart.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Indents every line by two spaces.
pub(super) fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}\n")).collect()
}

/// A field as text: strings as they are, numbers and booleans written out,
/// missing or null as "".
pub(super) fn str_field(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => String::new(),
        other => value_text(other),
    }
}

/// A field as text, or `default` when it is missing, null or empty.
pub(super) fn text_or(value: &Value, key: &str, default: &str) -> String {
    let text = str_field(value, key);
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}

/// A JSON value as a table cell: strings without quotes, the rest as JSON.
pub(super) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An array's items, or none for anything else.
pub(super) fn as_array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A device's tags as `k=v,k2=v2`.
pub(super) fn tags_text(device: &Value) -> String {
    as_array(&device["tags"])
        .iter()
        .map(|tag| format!("{}={}", str_field(tag, "key"), str_field(tag, "value")))
        .collect::<Vec<_>>()
        .join(",")
}

/// `yes` or `no`.
pub(super) fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_string()
}
