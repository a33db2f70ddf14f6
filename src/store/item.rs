//! The data model the store keeps: a data point in TagoIO's format
//! ([`DataItem`]), its ids and its time format. Validation of what senders
//! send lives above, in `actions::data`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// A stored data point in TagoIO's format (the README's data format).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct DataItem {
    /// 24 lowercase hex characters, random: the shape of TagoIO's ids, so SDKs
    /// and scripts that store or compare ids keep working.
    pub id: String,
    /// Id of the device whose bucket holds the item.
    pub device: String,
    /// Variable name, already lower-cased and checked, so queries can match it exactly.
    pub variable: String,
    /// A number, string or boolean; `None` when the item carries no value
    /// (a location-only item, for example).
    pub value: Option<Value>,
    /// Unit shown next to the value by widgets.
    pub unit: Option<String>,
    /// When the reading was taken, unix milliseconds (the sender's `time`, or
    /// the moment of the insert when it gave none).
    pub time: i64,
    /// Groups items sent together (table rows); generated when the sender gave none.
    pub group: Option<String>,
    /// Always a GeoJSON point `{"type":"Point","coordinates":[lng,lat]}`,
    /// whatever form the sender used, so readers handle one shape only.
    pub location: Option<Value>,
    /// Free-form object the sender attached (MQTT adds `topic` and `mqtt_topic`).
    pub metadata: Option<Map<String, Value>>,
    /// When brook stored the item, unix milliseconds.
    pub created_at: i64,
}

impl DataItem {
    /// The wire form used by the HTTP API: `time` and `created_at` as ISO 8601
    /// UTC with milliseconds and `Z`, absent optional fields omitted.
    pub(crate) fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("id".into(), Value::String(self.id.clone()));
        obj.insert("device".into(), Value::String(self.device.clone()));
        obj.insert("variable".into(), Value::String(self.variable.clone()));
        if let Some(value) = &self.value {
            obj.insert("value".into(), value.clone());
        }
        if let Some(unit) = &self.unit {
            obj.insert("unit".into(), Value::String(unit.clone()));
        }
        obj.insert("time".into(), Value::String(format_time(self.time)));
        if let Some(group) = &self.group {
            obj.insert("group".into(), Value::String(group.clone()));
        }
        if let Some(location) = &self.location {
            obj.insert("location".into(), location.clone());
        }
        if let Some(metadata) = &self.metadata {
            obj.insert("metadata".into(), Value::Object(metadata.clone()));
        }
        obj.insert(
            "created_at".into(),
            Value::String(format_time(self.created_at)),
        );
        Value::Object(obj)
    }
}

/// Formats unix milliseconds as ISO 8601 UTC with milliseconds and `Z`
/// (`2026-11-24T10:00:00.000Z`). Out of chrono's range (hundreds of thousands
/// of years; [`validate`] never stores such a time) it falls back to the epoch.
pub(crate) fn format_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A new random id: 24 lowercase hex characters (96 random bits), like TagoIO's.
pub(crate) fn new_id() -> String {
    // Shaped like TagoIO's (MongoDB ObjectId) ids: 4 bytes of seconds, 5
    // random bytes drawn once per process, a 3-byte counter. Ids made later
    // sort later, so the unique index on them grows at its end instead of
    // at random pages (the writer's profile showed the difference).
    static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let secs = (crate::store::now_ms() / 1000) as u32;
    let process = PROCESS.get_or_init(rand::random);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id[4..9].copy_from_slice(process);
    id[9..].copy_from_slice(&n.to_be_bytes()[1..]);
    hex::encode(id)
}
