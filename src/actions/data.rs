//! Data items in TagoIO's format (the README's data format): turning an HTTP body or
//! an MQTT publish into candidate items, validating them all-or-nothing into
//! [`DataItem`]s, and the date handling the data API needs (ISO 8601 and
//! relative dates such as `"1 day"`, and the `…T10:00:00.000Z` wire form).
//!
//! This module is pure: no database, no network, no clock except where the
//! caller passes `now_ms` (and [`new_id`], which draws random bytes). The rules
//! follow TagoIO's documented limits and, where the documentation is silent,
//! what TagoCore (TagoIO's open-source server) does: unknown fields are
//! ignored, items of one insert without a group share one generated group, an
//! empty array is valid and adds nothing.

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

pub(crate) use crate::store::item::{format_time, new_id, DataItem};

/// Largest HTTP body or MQTT payload accepted as data (TagoIO: 200 kB per post).
pub(crate) const MAX_BODY: usize = 200 * 1024;
/// Largest `value`, measured as text: byte length of a string, length of the
/// printed number for numbers and booleans (TagoIO: 6 kB).
pub(crate) const MAX_VALUE_BYTES: usize = 6 * 1024;
/// Largest `metadata` object, measured as compact JSON (TagoIO: 10 kB).
pub(crate) const MAX_METADATA_BYTES: usize = 10 * 1024;
/// Longest `variable`, in characters.
pub(crate) const MAX_VARIABLE_CHARS: usize = 100;
/// Longest `unit`, in characters.
pub(crate) const MAX_UNIT_CHARS: usize = 25;
/// Longest `group` (or its old name `serie`), in characters.
pub(crate) const MAX_GROUP_CHARS: usize = 100;
/// Characters TagoIO forbids in a variable name (besides whitespace).
const FORBIDDEN_VARIABLE_CHARS: &[char] = &['*', '?', '!', '<', '>', '.', '-', '=', '$'];

/// Why input could not become data. Every variant is meant to be shown to the
/// sender as it is (HTTP 400 message, Live Inspector, action run record).
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum DataError {
    /// The body or payload is over [`MAX_BODY`]; nothing of it is stored.
    #[error("body is {size} bytes, over the 200 kB limit")]
    TooLarge { size: usize },
    /// The body could not be parsed as JSON (the text is serde_json's message).
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The body is JSON but neither an object nor an array (the text names its type).
    #[error("body must be a JSON object or an array of objects, not {0}")]
    NotItems(String),
    /// One item broke a rule; `index` is its 0-based position in the array
    /// (0 for a single object) and `field` the offending field (`item` when
    /// the item itself is not an object).
    #[error("item {index}: {field}: {message}")]
    Invalid {
        index: usize,
        field: String,
        message: String,
    },
}

/// Rejects a body or payload larger than [`MAX_BODY`]. [`parse_items`] calls it;
/// the MQTT path should call it on the payload before [`items_from_mqtt`].
pub(crate) fn check_size(size: usize) -> Result<(), DataError> {
    if size > MAX_BODY {
        Err(DataError::TooLarge { size })
    } else {
        Ok(())
    }
}

/// Parses an HTTP body or JSON text: one object or an array of objects (size
/// checked first). A single object comes back as a one-element vector; an
/// empty array as an empty vector (the caller answers "0 Data Added", as
/// TagoIO does). Fields are not checked here (a payload parser may still
/// reshape the items): that is [`validate`]'s job.
pub(crate) fn parse_items(body: &[u8]) -> Result<Vec<Value>, DataError> {
    check_size(body.len())?;
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| DataError::NotJson(e.to_string()))?;
    match parsed {
        Value::Object(_) => Ok(vec![parsed]),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(not_an_object(index, item));
                }
            }
            Ok(items)
        }
        other => Err(DataError::NotItems(json_type(&other).to_string())),
    }
}

/// From an MQTT publish: a JSON payload that is an object with a `variable`
/// field, or an array of such objects, gives those items; any other payload
/// gives one item `{"variable":"payload","value": <payload as text>}` (lossy
/// UTF-8, as TagoIO does: a JSON string payload such as `"001100"`
/// keeps its quotes; a parser can `JSON.parse` it).
/// Every item gets `metadata.topic` and `metadata.mqtt_topic` = `topic`, merged
/// into an existing metadata object (a non-object metadata is left for
/// [`validate`] to reject). An MQTT 5 publish's user properties become
/// `metadata.user_properties`, an object of name to value (a name given
/// more than once maps to the array of its values, in order, as MQTT.js
/// shows them). An empty JSON array gives no items.
/// The size limit is not checked here: call [`check_size`] first.
pub(crate) fn items_from_mqtt(
    topic: &str,
    payload: &[u8],
    user: &[(String, String)],
) -> Vec<Value> {
    let has_variable = |v: &Value| v.as_object().is_some_and(|o| o.contains_key("variable"));
    let mut items = match serde_json::from_slice::<Value>(payload) {
        Ok(obj @ Value::Object(_)) if has_variable(&obj) => vec![obj],
        Ok(Value::Array(arr)) if arr.iter().all(has_variable) => arr,
        _ => {
            let text = String::from_utf8_lossy(payload).into_owned();
            vec![json!({"variable": "payload", "value": text})]
        }
    };
    for item in &mut items {
        let Some(obj) = item.as_object_mut() else {
            continue; // unreachable: every item above is an object
        };
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if metadata.is_null() {
            *metadata = Value::Object(Map::new());
        }
        if let Some(meta) = metadata.as_object_mut() {
            meta.insert("topic".into(), Value::String(topic.to_string()));
            meta.insert("mqtt_topic".into(), Value::String(topic.to_string()));
            if !user.is_empty() {
                meta.insert("user_properties".into(), user_properties(user));
            }
        }
    }
    items
}

/// User properties as a JSON object; repeated names give arrays.
fn user_properties(user: &[(String, String)]) -> Value {
    let mut m = Map::new();
    for (k, v) in user {
        let v = Value::String(v.clone());
        match m.get_mut(k) {
            None => {
                m.insert(k.clone(), v);
            }
            Some(Value::Array(values)) => values.push(v),
            Some(first) => *first = Value::Array(vec![first.take(), v]),
        }
    }
    Value::Object(m)
}

/// Validates every item (all or nothing) and builds [`DataItem`]s for
/// `device_id`, stamping `now_ms` as `created_at` and where `time` is absent.
///
/// Items without `group` (or its old name `serie`) share one generated group,
/// as in TagoIO. `id`, `device`, `created_at`, `origin` and unknown fields are
/// ignored (TagoIO strips unknown fields rather than refusing them).
pub(crate) fn validate(
    items: Vec<Value>,
    device_id: &str,
    now_ms: i64,
) -> Result<Vec<DataItem>, DataError> {
    let mut shared_group: Option<String> = None;
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(obj) = item else {
            return Err(not_an_object(index, &item));
        };
        let err = |field: &str, message: String| DataError::Invalid {
            index,
            field: field.to_string(),
            message,
        };

        let variable = check_variable(obj.get("variable")).map_err(|m| err("variable", m))?;
        let value = check_value(obj.get("value")).map_err(|m| err("value", m))?;
        let unit = check_short_string(obj.get("unit"), MAX_UNIT_CHARS, false)
            .map_err(|m| err("unit", m))?;
        let group = match check_short_string(obj.get("group"), MAX_GROUP_CHARS, false)
            .map_err(|m| err("group", m))?
        {
            Some(group) => Some(group),
            None => check_short_string(obj.get("serie"), MAX_GROUP_CHARS, true)
                .map_err(|m| err("serie", m))?,
        };
        let group = match group {
            Some(group) => group,
            None => shared_group.get_or_insert_with(new_id).clone(),
        };
        let metadata = check_metadata(obj.get("metadata")).map_err(|m| err("metadata", m))?;
        let time = check_time(obj.get("time"), now_ms)
            .map_err(|m| err("time", m))?
            .unwrap_or(now_ms);
        let location = check_location(obj.get("location")).map_err(|m| err("location", m))?;

        out.push(DataItem {
            id: new_id(),
            device: device_id.to_string(),
            variable,
            value,
            unit,
            time,
            group: Some(group),
            location,
            metadata,
            created_at: now_ms,
        });
    }
    Ok(out)
}

/// Parses an absolute or relative date to unix milliseconds.
///
/// Absolute: RFC 3339 (`2026-11-24T10:00:00.000Z`, `…+02:00`, also with a space
/// for the `T`), `YYYY-MM-DDTHH:mm[:ss[.fff]]` or with a space, with or without
/// a zone (`Z`, `+02:00`, `+0200`; without one it is UTC), and `YYYY-MM-DD`
/// (midnight UTC). Relative: `N unit` meaning that long before `now_ms`, with
/// unit second(s)/sec(s), minute(s)/min(s), hour(s), day(s), week(s),
/// month(s) (calendar months), year(s); an optional trailing `ago` is allowed.
pub(crate) fn parse_date(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(ms) = parse_relative(s, now_ms) {
        return Some(ms);
    }
    parse_absolute(s)
}

// ---------------------------------------------------------------------------
// field checks: each returns the message for DataError::Invalid

fn not_an_object(index: usize, item: &Value) -> DataError {
    DataError::Invalid {
        index,
        field: "item".into(),
        message: format!("must be a JSON object, not {}", json_type(item)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A variable name as an action file gives it (`trigger = { variable = … }`),
/// by the rules of a stored item's `variable`; lower-cased, as stored.
pub(crate) fn check_variable_name(name: &str) -> Result<String, String> {
    check_variable(Some(&Value::String(name.to_string())))
}

fn check_variable(v: Option<&Value>) -> Result<String, String> {
    let name = match v {
        None | Some(Value::Null) => return Err("is required".into()),
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("must be a string, not {}", json_type(other))),
    };
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    let chars = name.chars().count();
    if chars > MAX_VARIABLE_CHARS {
        return Err(format!(
            "is {chars} characters long, over the limit of {MAX_VARIABLE_CHARS}"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN_VARIABLE_CHARS.contains(c)) {
        return Err(format!(
            "must not contain '{c}' (none of * ? ! < > . - = $ is allowed)"
        ));
    }
    Ok(name.to_lowercase())
}

fn check_value(v: Option<&Value>) -> Result<Option<Value>, String> {
    let size = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.len(),
        Some(Value::Number(n)) => n.to_string().len(),
        Some(Value::Bool(_)) => 5,
        Some(other) => {
            return Err(format!(
                "must be a number, string or boolean, not {}",
                json_type(other)
            ))
        }
    };
    if size > MAX_VALUE_BYTES {
        return Err(format!(
            "is {size} bytes as text, over the 6 kB limit ({MAX_VALUE_BYTES} bytes)"
        ));
    }
    Ok(v.cloned())
}

/// A string of at most `max` characters; `allow_number` accepts a number too
/// (TagoIO's old `serie` was often a timestamp) and stores it as text.
fn check_short_string(
    v: Option<&Value>,
    max: usize,
    allow_number: bool,
) -> Result<Option<String>, String> {
    let s = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if allow_number => n.to_string(),
        Some(other) => return Err(format!("must be a string, not {}", json_type(other))),
    };
    let chars = s.chars().count();
    if chars > max {
        return Err(format!(
            "is {chars} characters long, over the limit of {max}"
        ));
    }
    Ok(Some(s))
}

fn check_metadata(v: Option<&Value>) -> Result<Option<Map<String, Value>>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => {
            let size = serde_json::to_string(map).map(|s| s.len()).unwrap_or(0);
            if size > MAX_METADATA_BYTES {
                return Err(format!(
                    "is {size} bytes as JSON, over the 10 kB limit ({MAX_METADATA_BYTES} bytes)"
                ));
            }
            Ok(Some(map.clone()))
        }
        Some(other) => Err(format!("must be an object, not {}", json_type(other))),
    }
}

/// `Ok(None)` when absent (the caller uses now). Accepts an ISO 8601 string
/// (see [`parse_date`]; relative dates too) or a number of unix milliseconds
/// (TagoIO passes `time` to JavaScript's `new Date()`, which takes both).
fn check_time(v: Option<&Value>, now_ms: i64) -> Result<Option<i64>, String> {
    let ms = match v {
        None | Some(Value::Null) => return Ok(None),
        // TagoIO treats an empty time as absent.
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => parse_date(s, now_ms).ok_or_else(|| {
            format!("{s:?} is not an ISO 8601 date/time (e.g. 2026-11-24T10:00:00Z)")
        })?,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) => ms,
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e17 => f.trunc() as i64,
                _ => return Err(format!("{n} is not a valid time in milliseconds")),
            },
        },
        Some(other) => {
            return Err(format!(
                "must be an ISO 8601 string, not {}",
                json_type(other)
            ))
        }
    };
    // Keep to the years the wire form can show with four digits.
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) if (0..=9999).contains(&chrono::Datelike::year(&t)) => Ok(Some(ms)),
        _ => Err("is outside the years 0000 to 9999".into()),
    }
}

fn check_location(v: Option<&Value>) -> Result<Option<Value>, String> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(format!(
                "must be {{\"lat\":…,\"lng\":…}} or a GeoJSON point, not {}",
                json_type(other)
            ))
        }
    };
    let (lng, lat) = if obj.contains_key("type") || obj.contains_key("coordinates") {
        if obj.get("type").and_then(Value::as_str) != Some("Point") {
            return Err("a GeoJSON location must have \"type\": \"Point\"".into());
        }
        match obj.get("coordinates").and_then(Value::as_array) {
            Some(c) if c.len() == 2 => (c[0].clone(), c[1].clone()),
            _ => return Err("GeoJSON \"coordinates\" must be [lng, lat]".into()),
        }
    } else {
        match (obj.get("lng"), obj.get("lat")) {
            (Some(lng), Some(lat)) => (lng.clone(), lat.clone()),
            _ => return Err("must have both \"lat\" and \"lng\"".into()),
        }
    };
    let lat_f = lat.as_f64().ok_or("latitude must be a number")?;
    let lng_f = lng.as_f64().ok_or("longitude must be a number")?;
    if !(-90.0..=90.0).contains(&lat_f) {
        return Err(format!("latitude {lat_f} is outside -90..90"));
    }
    if !(-180.0..=180.0).contains(&lng_f) {
        return Err(format!("longitude {lng_f} is outside -180..180"));
    }
    Ok(Some(json!({"type": "Point", "coordinates": [lng, lat]})))
}

// ---------------------------------------------------------------------------
// dates

fn parse_relative(s: &str, now_ms: i64) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let lower = lower
        .strip_suffix("ago")
        .map(str::trim_end)
        .unwrap_or(&lower);
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    if digits_end == 0 {
        return None;
    }
    let n: i64 = lower[..digits_end].parse().ok()?;
    let unit = lower[digits_end..].trim();
    let unit = unit.strip_suffix('s').unwrap_or(unit);
    let step_ms: i64 = match unit {
        "second" | "sec" => 1_000,
        "minute" | "min" => 60_000,
        "hour" => 3_600_000,
        "day" => 86_400_000,
        "week" => 7 * 86_400_000,
        "month" | "year" => {
            let months = if unit == "year" {
                n.checked_mul(12)?
            } else {
                n
            };
            let now = DateTime::<Utc>::from_timestamp_millis(now_ms)?;
            let then = now.checked_sub_months(Months::new(u32::try_from(months).ok()?))?;
            return Some(then.timestamp_millis());
        }
        _ => return None,
    };
    now_ms.checked_sub(n.checked_mul(step_ms)?)
}

fn parse_absolute(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // With a zone but not strict RFC 3339 (no seconds, "+0200", space separator).
    const ZONED: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%d %H:%M%z",
    ];
    for fmt in ZONED {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_millis());
        }
    }
    // Without a zone: UTC. A trailing Z is also accepted here when seconds are missing.
    let naive_src = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix('z'))
        .unwrap_or(s);
    const NAIVE: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ];
    for fmt in NAIVE {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive_src, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(naive_src, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_514_400_000; // 2026-11-24T10:00:00.000Z

    fn one(item: Value) -> Result<DataItem, DataError> {
        validate(vec![item], "dev1", NOW).map(|mut v| v.remove(0))
    }

    fn invalid_field(item: Value) -> String {
        match one(item) {
            Err(DataError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn now_constant_is_what_the_tests_think() {
        assert_eq!(format_time(NOW), "2026-11-24T10:00:00.000Z");
    }

    #[test]
    fn full_item_roundtrip_and_wire_form() {
        let item = one(json!({
            "variable": "Temperature", "value": 21.5, "unit": "°C",
            "time": "2026-11-24T09:00:00Z", "group": "g1",
            "location": {"lat": -23.5, "lng": -46.6},
            "metadata": {"color": "red"},
            "id": "ignored", "device": "ignored", "created_at": "x", "origin": "o"
        }))
        .unwrap();
        assert_eq!(item.variable, "temperature");
        assert_eq!(item.device, "dev1");
        assert_eq!(item.id.len(), 24);
        assert_ne!(item.id, "ignored");
        assert_eq!(item.time, NOW - 3_600_000);
        assert_eq!(item.created_at, NOW);
        let wire = item.to_json();
        assert_eq!(wire["time"], "2026-11-24T09:00:00.000Z");
        assert_eq!(wire["created_at"], "2026-11-24T10:00:00.000Z");
        assert_eq!(wire["value"], 21.5);
        assert_eq!(wire["unit"], "°C");
        assert_eq!(wire["group"], "g1");
        assert_eq!(
            wire["location"],
            json!({"type": "Point", "coordinates": [-46.6, -23.5]})
        );
        assert_eq!(wire["metadata"], json!({"color": "red"}));
    }

    #[test]
    fn absent_fields_are_omitted_on_the_wire() {
        let item = one(json!({"variable": "x"})).unwrap();
        let wire = item.to_json();
        let obj = wire.as_object().unwrap();
        for key in ["value", "unit", "location", "metadata"] {
            assert!(!obj.contains_key(key), "{key} should be omitted");
        }
        assert_eq!(item.time, NOW);
        // a group is generated (TagoIO does so)
        assert!(obj.contains_key("group"));
    }

    #[test]
    fn items_without_group_share_one_generated_group() {
        let items = validate(
            vec![
                json!({"variable": "a"}),
                json!({"variable": "b"}),
                json!({"variable": "c", "group": "mine"}),
            ],
            "d",
            NOW,
        )
        .unwrap();
        assert_eq!(items[0].group, items[1].group);
        assert_eq!(items[0].group.as_ref().unwrap().len(), 24);
        assert_eq!(items[2].group.as_deref(), Some("mine"));
        assert_ne!(items[0].id, items[1].id);
    }

    #[test]
    fn serie_is_the_old_name_of_group() {
        assert_eq!(
            one(json!({"variable": "a", "serie": "s1"}))
                .unwrap()
                .group
                .as_deref(),
            Some("s1")
        );
        assert_eq!(
            one(json!({"variable": "a", "serie": 1700000000000u64}))
                .unwrap()
                .group
                .as_deref(),
            Some("1700000000000")
        );
        // group wins over serie
        assert_eq!(
            one(json!({"variable": "a", "serie": "s", "group": "g"}))
                .unwrap()
                .group
                .as_deref(),
            Some("g")
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "serie": "x".repeat(101)})),
            "serie"
        );
    }

    #[test]
    fn items_must_be_objects() {
        let err = validate(vec![json!({"variable": "a"}), json!(5)], "d", NOW).unwrap_err();
        assert_eq!(
            err,
            DataError::Invalid {
                index: 1,
                field: "item".into(),
                message: "must be a JSON object, not a number".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "item 1: item: must be a JSON object, not a number"
        );
    }

    #[test]
    fn variable_is_required_and_a_string() {
        assert_eq!(invalid_field(json!({"value": 1})), "variable");
        assert_eq!(invalid_field(json!({"variable": null})), "variable");
        assert_eq!(invalid_field(json!({"variable": 5})), "variable");
        assert_eq!(invalid_field(json!({"variable": ""})), "variable");
    }

    #[test]
    fn variable_length_limit() {
        assert!(one(json!({"variable": "a".repeat(100)})).is_ok());
        assert_eq!(
            invalid_field(json!({"variable": "a".repeat(101)})),
            "variable"
        );
        // characters, not bytes
        assert!(one(json!({"variable": "é".repeat(100)})).is_ok());
    }

    #[test]
    fn variable_is_lower_cased() {
        assert_eq!(
            one(json!({"variable": "TeMP_1"})).unwrap().variable,
            "temp_1"
        );
    }

    #[test]
    fn variable_forbidden_characters() {
        for bad in [
            "a b", "a\tb", "a*b", "a?b", "a!b", "a<b", "a>b", "a.b", "a-b", "a=b", "a$b",
        ] {
            let err = one(json!({"variable": bad})).unwrap_err();
            match err {
                DataError::Invalid { index, field, .. } => {
                    assert_eq!((index, field.as_str()), (0, "variable"), "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(one(json!({"variable": "ok_name:1/2"})).is_ok());
    }

    #[test]
    fn value_types() {
        assert_eq!(
            one(json!({"variable": "a", "value": 1})).unwrap().value,
            Some(json!(1))
        );
        assert_eq!(
            one(json!({"variable": "a", "value": "s"})).unwrap().value,
            Some(json!("s"))
        );
        assert_eq!(
            one(json!({"variable": "a", "value": true})).unwrap().value,
            Some(json!(true))
        );
        assert_eq!(
            one(json!({"variable": "a", "value": null})).unwrap().value,
            None
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "value": [1]})),
            "value"
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "value": {"x": 1}})),
            "value"
        );
    }

    #[test]
    fn value_size_limit() {
        assert!(one(json!({"variable": "a", "value": "x".repeat(6144)})).is_ok());
        assert_eq!(
            invalid_field(json!({"variable": "a", "value": "x".repeat(6145)})),
            "value"
        );
        // bytes for strings: 3073 two-byte characters are 6146 bytes
        assert_eq!(
            invalid_field(json!({"variable": "a", "value": "é".repeat(3073)})),
            "value"
        );
    }

    #[test]
    fn unit_limit_and_type() {
        assert!(one(json!({"variable": "a", "unit": "u".repeat(25)})).is_ok());
        assert_eq!(
            invalid_field(json!({"variable": "a", "unit": "u".repeat(26)})),
            "unit"
        );
        assert_eq!(invalid_field(json!({"variable": "a", "unit": 5})), "unit");
    }

    #[test]
    fn group_limit_and_type() {
        assert!(one(json!({"variable": "a", "group": "g".repeat(100)})).is_ok());
        assert_eq!(
            invalid_field(json!({"variable": "a", "group": "g".repeat(101)})),
            "group"
        );
        assert_eq!(invalid_field(json!({"variable": "a", "group": 5})), "group");
    }

    #[test]
    fn metadata_object_and_size() {
        assert_eq!(
            invalid_field(json!({"variable": "a", "metadata": "x"})),
            "metadata"
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "metadata": [1]})),
            "metadata"
        );
        assert!(one(json!({"variable": "a", "metadata": {"k": "x".repeat(10_000)}})).is_ok());
        assert_eq!(
            invalid_field(json!({"variable": "a", "metadata": {"k": "x".repeat(10_240)}})),
            "metadata"
        );
    }

    #[test]
    fn time_parsing_and_errors() {
        assert_eq!(
            one(json!({"variable": "a", "time": "2015-11-03 13:44:33"}))
                .unwrap()
                .time,
            1_446_558_273_000
        );
        assert_eq!(
            one(json!({"variable": "a", "time": "2015-11-03T13:44:33.250+02:00"}))
                .unwrap()
                .time,
            1_446_558_273_250 - 7_200_000
        );
        assert_eq!(
            one(json!({"variable": "a", "time": 1_446_558_273_000i64}))
                .unwrap()
                .time,
            1_446_558_273_000
        );
        assert_eq!(
            one(json!({"variable": "a", "time": null})).unwrap().time,
            NOW
        );
        assert_eq!(one(json!({"variable": "a", "time": ""})).unwrap().time, NOW);
        let err = one(json!({"variable": "a", "time": "yesterday-ish"})).unwrap_err();
        assert!(
            matches!(&err, DataError::Invalid { field, .. } if field == "time"),
            "{err:?}"
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "time": true})),
            "time"
        );
        assert_eq!(
            invalid_field(json!({"variable": "a", "time": "12000-01-01"})),
            "time"
        );
    }

    #[test]
    fn location_forms() {
        let geo = json!({"type": "Point", "coordinates": [-46.6, -23.5]});
        assert_eq!(
            one(json!({"variable": "a", "location": {"lat": -23.5, "lng": -46.6}}))
                .unwrap()
                .location,
            Some(geo.clone())
        );
        assert_eq!(
            one(json!({"variable": "a", "location": geo.clone()}))
                .unwrap()
                .location,
            Some(geo)
        );
        for bad in [
            json!({"lat": 91, "lng": 0}),
            json!({"lat": 0, "lng": 181}),
            json!({"lat": "1", "lng": 2}),
            json!({"lat": 1}),
            json!({"type": "Point", "coordinates": [200, 0]}),
            json!({"type": "Point", "coordinates": [1]}),
            json!({"type": "Polygon", "coordinates": [1, 2]}),
            json!("1,2"),
        ] {
            assert_eq!(
                invalid_field(json!({"variable": "a", "location": bad})),
                "location"
            );
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let item = one(json!({"variable": "a", "whatever": {"deep": 1}})).unwrap();
        assert!(!item.to_json().as_object().unwrap().contains_key("whatever"));
    }

    #[test]
    fn all_or_nothing_and_index_in_error() {
        let err = validate(
            vec![
                json!({"variable": "ok"}),
                json!({"variable": "ok2"}),
                json!({"variable": "bad", "unit": 1}),
            ],
            "d",
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 2: unit: must be a string, not a number"
        );
    }

    #[test]
    fn parse_items_object_array_and_errors() {
        assert_eq!(parse_items(br#"{"variable":"a"}"#).unwrap().len(), 1);
        assert_eq!(
            parse_items(br#"[{"variable":"a"},{"variable":"b"}]"#)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(parse_items(b"[]").unwrap().len(), 0);
        assert!(matches!(parse_items(b"{nope"), Err(DataError::NotJson(_))));
        assert!(matches!(
            parse_items(b"\xff\xfe"),
            Err(DataError::NotJson(_))
        ));
        assert_eq!(
            parse_items(b"5"),
            Err(DataError::NotItems("a number".into()))
        );
        assert!(matches!(
            parse_items(br#"[{"variable":"a"}, 3]"#),
            Err(DataError::Invalid { index: 1, .. })
        ));
    }

    #[test]
    fn body_over_200_kb_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_BODY + 1];
        assert_eq!(
            parse_items(&big),
            Err(DataError::TooLarge { size: MAX_BODY + 1 })
        );
        let mut ok = br#"[{"variable":"a"}]"#.to_vec();
        ok.resize(MAX_BODY, b' ');
        assert!(parse_items(&ok).is_ok());
        assert!(check_size(MAX_BODY).is_ok());
    }

    #[test]
    fn mqtt_json_items() {
        let items = items_from_mqtt(
            "sensors/t1",
            br#"[{"variable":"t","value":1},{"variable":"h","value":2,"metadata":{"k":"v"}}]"#,
            &[],
        );
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0]["metadata"],
            json!({"topic": "sensors/t1", "mqtt_topic": "sensors/t1"})
        );
        assert_eq!(
            items[1]["metadata"],
            json!({"k": "v", "topic": "sensors/t1", "mqtt_topic": "sensors/t1"})
        );
        let single = items_from_mqtt("a/b", br#"{"variable":"t","value":1}"#, &[]);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0]["value"], 1);
    }

    #[test]
    fn mqtt_5_user_properties_reach_the_metadata() {
        let user = [
            ("site".to_string(), "north".to_string()),
            ("unit".to_string(), "C".to_string()),
            ("unit".to_string(), "K".to_string()),
        ];
        let items = items_from_mqtt("a", br#"{"variable":"t","value":1}"#, &user);
        assert_eq!(
            items[0]["metadata"]["user_properties"],
            json!({"site": "north", "unit": ["C", "K"]})
        );
    }

    #[test]
    fn mqtt_other_payloads_become_text() {
        for (payload, text) in [
            (&b"21.5"[..], "21.5"),
            (b"hello world", "hello world"),
            (br#"{"temp":21}"#, r#"{"temp":21}"#),
            (
                br#"[{"variable":"a"},{"x":1}]"#,
                r#"[{"variable":"a"},{"x":1}]"#,
            ),
            (b"\x1a\x2b\xff", "\u{1a}+\u{fffd}"),
            (br#""001100""#, r#""001100""#),
        ] {
            let items = items_from_mqtt("t", payload, &[]);
            assert_eq!(items.len(), 1);
            assert_eq!(items[0]["variable"], "payload");
            assert_eq!(items[0]["value"], text);
            assert_eq!(items[0]["metadata"]["mqtt_topic"], "t");
            assert_eq!(items[0]["metadata"]["topic"], "t");
        }
        assert!(items_from_mqtt("t", b"[]", &[]).is_empty());
        let items = items_from_mqtt("t", b"", &[]);
        assert_eq!(items[0]["value"], "");
    }

    #[test]
    fn mqtt_items_validate() {
        let items = items_from_mqtt("sensors/t1", b"hello", &[]);
        let stored = validate(items, "d", NOW).unwrap();
        assert_eq!(stored[0].variable, "payload");
        assert_eq!(
            stored[0].metadata.as_ref().unwrap()["topic"],
            json!("sensors/t1")
        );
    }

    #[test]
    fn parse_date_absolute_forms() {
        let t = 1_446_558_273_000; // 2015-11-03T13:44:33Z
        assert_eq!(parse_date("2015-11-03T13:44:33Z", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03T13:44:33.000Z", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03 13:44:33", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03T13:44:33", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03T15:44:33+02:00", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03T15:44:33+0200", NOW), Some(t));
        assert_eq!(parse_date("2015-11-03T13:44Z", NOW), Some(t - 33_000));
        assert_eq!(parse_date("2015-11-03", NOW), Some(1_446_508_800_000));
        assert_eq!(parse_date(" 2015-11-03 ", NOW), Some(1_446_508_800_000));
        assert_eq!(parse_date("2015-13-03", NOW), None);
        assert_eq!(parse_date("soon", NOW), None);
        assert_eq!(parse_date("", NOW), None);
    }

    #[test]
    fn parse_date_relative_forms() {
        assert_eq!(parse_date("1 day", NOW), Some(NOW - 86_400_000));
        assert_eq!(parse_date("2 hours", NOW), Some(NOW - 7_200_000));
        assert_eq!(parse_date("30 minutes", NOW), Some(NOW - 1_800_000));
        assert_eq!(parse_date("45 seconds", NOW), Some(NOW - 45_000));
        assert_eq!(parse_date("1 week", NOW), Some(NOW - 7 * 86_400_000));
        assert_eq!(parse_date("1 Day ago", NOW), Some(NOW - 86_400_000));
        assert_eq!(
            parse_date("3 months", NOW).map(format_time).as_deref(),
            Some("2026-08-24T10:00:00.000Z")
        );
        assert_eq!(
            parse_date("1 year", NOW).map(format_time).as_deref(),
            Some("2025-11-24T10:00:00.000Z")
        );
        assert_eq!(parse_date("1 fortnight", NOW), None);
        assert_eq!(parse_date("day", NOW), None);
        assert_eq!(parse_date("99999999999999999999 days", NOW), None);
    }

    #[test]
    fn format_time_shape() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_446_558_273_007), "2015-11-03T13:44:33.007Z");
    }

    #[test]
    fn new_id_shape() {
        let id = new_id();
        assert_eq!(id.len(), 24);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(new_id(), id);
    }
}
