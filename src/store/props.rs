//! MQTT 5 message properties as stored with a retained or queued message:
//! JSON, readable with `sqlite3`, and a column that stays NULL for the
//! messages that have none (every 3.1.1 message).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::protocol::PublishProperties;

/// The column value for `p`; None when there is nothing to keep.
pub(crate) fn to_column(p: Option<&Arc<PublishProperties>>) -> Option<String> {
    to_json(p?).map(|v| v.to_string())
}

/// `p` as a JSON object (what the column and the Live Inspector show; the
/// correlation data in hex, user properties as `[name, value]` pairs in
/// order); None when there is nothing to show. The expiry is left out.
pub(crate) fn to_json(p: &PublishProperties) -> Option<Value> {
    let mut m = Map::new();
    if let Some(f) = p.payload_format {
        m.insert("payload_format".into(), json!(f));
    }
    if let Some(c) = &p.content_type {
        m.insert("content_type".into(), json!(c));
    }
    if let Some(t) = &p.response_topic {
        m.insert("response_topic".into(), json!(t));
    }
    if let Some(d) = &p.correlation_data {
        m.insert("correlation_data".into(), json!(hex::encode(d)));
    }
    if !p.user.is_empty() {
        let pairs: Vec<Value> = p.user.iter().map(|(k, v)| json!([k, v])).collect();
        m.insert("user".into(), Value::Array(pairs));
    }
    // The expiry is its own column (`expires_at`): what is left of it is
    // worked out when the message is sent.
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The properties of a column value; a value that does not read (edited by
/// hand, say) gives none rather than failing the load.
pub(crate) fn from_column(text: Option<String>) -> Option<Arc<PublishProperties>> {
    let v: Value = serde_json::from_str(&text?).ok()?;
    let m = v.as_object()?;
    let string = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    let p = PublishProperties {
        payload_format: m
            .get("payload_format")
            .and_then(Value::as_u64)
            .and_then(|f| u8::try_from(f).ok()),
        message_expiry: None,
        content_type: string("content_type"),
        response_topic: string("response_topic"),
        correlation_data: m
            .get("correlation_data")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .map(Bytes::from),
        user: m
            .get("user")
            .and_then(Value::as_array)
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|pair| {
                        let k = pair.get(0)?.as_str()?;
                        let v = pair.get(1)?.as_str()?;
                        Some((k.to_owned(), v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    (!p.is_empty()).then(|| Arc::new(p))
}

/// Subscription identifiers as stored: comma-separated; None for none.
pub(crate) fn ids_to_column(ids: Option<&Arc<[u32]>>) -> Option<String> {
    let ids = ids.filter(|i| !i.is_empty())?;
    Some(ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
}

/// The identifiers of a stored column (ones that do not parse are left out).
pub(crate) fn ids_from_column(text: Option<String>) -> Option<Arc<[u32]>> {
    let ids: Vec<u32> = text?
        .split(',')
        .filter_map(|i| i.trim().parse().ok())
        .filter(|&i| i > 0)
        .collect();
    (!ids.is_empty()).then(|| ids.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_in_order_and_empty_ones_are_null() {
        let p = Arc::new(PublishProperties {
            payload_format: Some(1),
            message_expiry: None,
            content_type: Some("application/json".into()),
            response_topic: Some("r/1".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\xffid")),
            user: vec![
                ("b".into(), "2".into()),
                ("a".into(), "1".into()),
                ("b".into(), "3".into()),
            ],
        });
        let col = to_column(Some(&p));
        assert_eq!(from_column(col), Some(p));
        assert_eq!(
            to_column(Some(&Arc::new(PublishProperties::default()))),
            None
        );
        assert_eq!(to_column(None), None);
        assert_eq!(from_column(Some("not json".into())), None);
        assert_eq!(from_column(None), None);
    }

    #[test]
    fn identifiers_round_trip() {
        let ids: Arc<[u32]> = vec![1, 7, 268_435_455].into();
        assert_eq!(ids_from_column(ids_to_column(Some(&ids))), Some(ids));
        assert_eq!(ids_to_column(None), None);
        assert_eq!(ids_from_column(Some("x,0".into())), None);
    }
}
