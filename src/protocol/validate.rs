//! Validity rules for MQTT strings, topic names and topic filters (MQTT 3.1.1 §1.5.3,
//! §4.7). Each check returns a short reason suitable for a `Malformed` error message.

/// A topic name (PUBLISH, will topic): non-empty, no U+0000, no `+` or `#`.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() {
        return Err("is empty");
    }
    if topic.contains('\0') {
        return Err("contains U+0000");
    }
    if topic.contains(['+', '#']) {
        return Err("contains a wildcard");
    }
    Ok(())
}

/// A topic filter (SUBSCRIBE, UNSUBSCRIBE): non-empty, no U+0000, `+` only as a whole
/// level, `#` only as the whole last level.
pub(crate) fn check_topic_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("is empty");
    }
    if filter.contains('\0') {
        return Err("contains U+0000");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("uses '#' other than as the whole last level");
        }
        if level.contains('+') && level != "+" {
            return Err("uses '+' other than as a whole level");
        }
    }
    Ok(())
}

/// A shared subscription's filter, `$share/{ShareName}/{filter}` (MQTT 5 §4.8.2):
/// `Ok(Some((share name, filter)))` for one, `Ok(None)` for an ordinary filter, and an error
/// for a `$share/` filter that breaks [MQTT-4.8.2-1] or [MQTT-4.8.2-2] (an empty share
/// name or one with a wildcard, no valid topic filter after it).
pub(crate) fn split_shared(filter: &str) -> Result<Option<(&str, &str)>, &'static str> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Ok(None);
    };
    let Some((name, inner)) = rest.split_once('/') else {
        return Err("is a shared subscription without a topic filter");
    };
    if name.is_empty() {
        return Err("has an empty share name");
    }
    if name.contains(['+', '#']) {
        return Err("has a wildcard in its share name");
    }
    check_topic_filter(inner)?;
    Ok(Some((name, inner)))
}

/// Decodes an MQTT UTF-8 string: well-formed UTF-8 without U+0000 (§1.5.3).
pub(crate) fn utf8_string(bytes: &[u8]) -> Result<String, &'static str> {
    utf8_str(bytes).map(str::to_owned)
}

/// [`utf8_string`] without the copy, for callers that keep the text in
/// another form (a PUBLISH's topic becomes an `Arc<str>`).
pub(crate) fn utf8_str(bytes: &[u8]) -> Result<&str, &'static str> {
    let s = std::str::from_utf8(bytes).map_err(|_| "is not valid UTF-8")?;
    if s.contains('\0') {
        return Err("contains U+0000");
    }
    Ok(s)
}
