//! From a publish's bytes to validated data items: TagoIO items or one
//! `payload` item, then the device's JavaScript parser (on the blocking pool,
//! never on a network thread), then validation (all or nothing).
//!
//! Parser runs go through a [`ParserPool`]: at most `max_parser_runs` at
//! once over all devices, one at a time per device (in arrival order), and
//! at most `max_parser_queue` waiting; past that a message is refused at
//! once. Each run has its own time and memory limit, so the pool bounds the
//! threads and memory that parsers can take, whatever the devices send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::data::{self, DataItem};
use super::parser::{run_parser, ParserDevice, ParserLimits};
use crate::device::watch::Event;
use crate::device::DeviceInfo;
use crate::metrics::METRICS;
use crate::store::now_ms;

/// The bound on parser runs; see the module documentation.
pub(crate) struct ParserPool {
    /// Runs at once, over all devices.
    running: Arc<Semaphore>,
    /// One run at a time per device; an entry lives while a run of that
    /// device runs or waits.
    devices: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Runs admitted and not yet running.
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl ParserPool {
    /// `max_runs` 0 means one per core.
    pub(crate) fn new(max_runs: usize, max_waiting: usize) -> ParserPool {
        let runs = if max_runs == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            max_runs
        };
        ParserPool {
            running: Arc::new(Semaphore::new(runs)),
            devices: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// Runs `job` (a parser run) on the blocking pool once the device's turn
    /// and a slot come; `Err` with the reason when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        device: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            });
        if admitted.is_err() {
            METRICS.parser_refused.inc();
            return Err(format!(
                "payload parser not run: the parser queue is full ({} runs waiting, actions.max_parser_queue)",
                self.max_waiting
            ));
        }
        let turn = self
            .devices
            .lock()
            .entry(device.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = turn.lock().await;
            let slot = self.running.acquire().await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            let ran = tokio::task::spawn_blocking(job).await;
            drop(slot);
            ran.map_err(|e| format!("payload parser crashed: {e}"))
        };
        let mut devices = self.devices.lock();
        // Only the map and this run hold it: nobody else waits for the device.
        if Arc::strong_count(&turn) == 2 {
            devices.remove(device);
        }
        result
    }
}

/// What came of a publish, for the run record and the Live Inspector.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub items: Vec<DataItem>,
    /// `console.log` lines of the parser, if one ran.
    pub logs: Vec<String>,
}

/// Why a publish gave no data: said in the run record; the publish is still
/// acknowledged (sending it again would not make it valid).
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub reason: String,
    pub logs: Vec<String>,
}

pub(crate) fn parser_device(d: &DeviceInfo) -> ParserDevice {
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

/// Items from an MQTT publish on `topic` by `device`, with its MQTT 5 user
/// properties (none for 3.1.1).
pub(crate) async fn from_mqtt(
    pool: &ParserPool,
    device: Arc<DeviceInfo>,
    topic: &str,
    payload: Bytes,
    user: &[(String, String)],
) -> Result<Parsed, Rejected> {
    let parsed = match data::check_size(payload.len()) {
        Ok(()) => {
            let items = data::items_from_mqtt(topic, &payload, user);
            finish(pool, device.clone(), items, payload).await
        }
        Err(e) => Err(Rejected {
            reason: e.to_string(),
            logs: Vec::new(),
        }),
    };
    tell(&device, Some(topic), None, &parsed);
    parsed
}

/// Shows the parser's output, or why there is no data, in the device's
/// Live Inspector: the one place a parser event comes from.
fn tell(
    device: &DeviceInfo,
    topic: Option<&str>,
    source: Option<&str>,
    parsed: &Result<Parsed, Rejected>,
) {
    let (error, logs) = match parsed {
        Ok(p) if p.logs.is_empty() => return,
        Ok(p) => (None, &p.logs),
        Err(r) => (Some(r.reason.as_str()), &r.logs),
    };
    device.watch.emit(|| Event::Parser {
        topic,
        source,
        error,
        logs,
    });
}

/// Items from an HTTP body (`POST /data`).
pub(crate) async fn from_body(
    pool: &ParserPool,
    device: Arc<DeviceInfo>,
    body: Bytes,
) -> Result<Parsed, Rejected> {
    let parsed = match data::parse_items(&body) {
        Ok(items) => finish(pool, device.clone(), items, body).await,
        Err(e) => Err(Rejected {
            reason: e.to_string(),
            logs: Vec::new(),
        }),
    };
    tell(&device, None, Some("POST /data"), &parsed);
    parsed
}

async fn finish(
    pool: &ParserPool,
    device: Arc<DeviceInfo>,
    items: Vec<serde_json::Value>,
    raw: Bytes,
) -> Result<Parsed, Rejected> {
    let (items, logs) = match device.parser.clone() {
        None => (items, Vec::new()),
        Some(source) => {
            let pdev = parser_device(&device);
            let ran = pool
                .run(&device.id, move || {
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
                Err(reason) => {
                    return Err(Rejected {
                        reason,
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
