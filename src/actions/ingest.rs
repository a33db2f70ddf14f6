//! From a publish's bytes to validated data items: TagoIO items or one
//! `payload` item, then the device's JavaScript parser (on the blocking pool,
//! never on a network thread), then validation (all or nothing).

use std::sync::Arc;

use bytes::Bytes;

use super::data::{self, DataItem};
use super::parser::{run_parser, ParserDevice, ParserLimits};
use crate::device::DeviceInfo;
use crate::store::now_ms;

/// What came of a publish, for the run record and the Live Inspector.
#[derive(Debug)]
pub struct Parsed {
    pub items: Vec<DataItem>,
    /// `console.log` lines of the parser, if one ran.
    pub logs: Vec<String>,
}

/// Why a publish gave no data: said in the run record; the publish is still
/// acknowledged (sending it again would not make it valid).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub reason: String,
    pub logs: Vec<String>,
}

pub fn parser_device(d: &DeviceInfo) -> ParserDevice {
    ParserDevice {
        id: d.id.clone(),
        name: d.name.clone(),
        tags: d
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect(),
        params: d
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
    }
}

/// Items from an MQTT publish on `topic` by `device`.
pub async fn from_mqtt(
    device: Arc<DeviceInfo>,
    topic: &str,
    payload: Bytes,
) -> Result<Parsed, Rejected> {
    let reject = |reason: String| Rejected {
        reason,
        logs: Vec::new(),
    };
    data::check_size(payload.len()).map_err(|e| reject(e.to_string()))?;
    let items = data::items_from_mqtt(topic, &payload);
    finish(device, items, payload).await
}

/// Items from an HTTP body (`POST /data`).
pub async fn from_body(device: Arc<DeviceInfo>, body: Bytes) -> Result<Parsed, Rejected> {
    let items = data::parse_items(&body).map_err(|e| Rejected {
        reason: e.to_string(),
        logs: Vec::new(),
    })?;
    finish(device, items, body).await
}

async fn finish(
    device: Arc<DeviceInfo>,
    items: Vec<serde_json::Value>,
    raw: Bytes,
) -> Result<Parsed, Rejected> {
    let (items, logs) = match device.parser.clone() {
        None => (items, Vec::new()),
        Some(source) => {
            let pdev = parser_device(&device);
            let ran = tokio::task::spawn_blocking(move || {
                run_parser(&source, &items, &raw, &pdev, &ParserLimits::default())
            })
            .await;
            match ran {
                Ok(Ok(out)) => (out.payload, out.logs),
                Ok(Err(e)) => {
                    return Err(Rejected {
                        reason: format!("payload parser: {}", e.message),
                        logs: e.logs,
                    })
                }
                Err(e) => {
                    return Err(Rejected {
                        reason: format!("payload parser crashed: {e}"),
                        logs: Vec::new(),
                    })
                }
            }
        }
    };
    match data::validate(items, &device.id, now_ms()) {
        Ok(items) => Ok(Parsed { items, logs }),
        Err(e) => Err(Rejected {
            reason: e.to_string(),
            logs,
        }),
    }
}
