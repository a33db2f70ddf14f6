//! `$SYS/broker/...`: the broker's own numbers, published as retained
//! messages every `[mqtt] sys_interval`, with Mosquitto's topic names.

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::Broker;
use crate::metrics::METRICS;
use crate::router::{publish, Publication};

pub(crate) fn start(broker: Arc<Broker>) {
    let every = broker.config.mqtt.sys_interval;
    actix::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let m = &*METRICS;
            let values: [(&str, String); 9] = [
                (
                    "$SYS/broker/version",
                    format!("brook {}", env!("CARGO_PKG_VERSION")),
                ),
                (
                    "$SYS/broker/uptime",
                    format!("{} seconds", broker.started.elapsed().as_secs()),
                ),
                (
                    "$SYS/broker/clients/connected",
                    m.clients_connected.get().to_string(),
                ),
                (
                    "$SYS/broker/messages/received",
                    m.messages_received.get().to_string(),
                ),
                (
                    "$SYS/broker/messages/sent",
                    m.messages_sent.get().to_string(),
                ),
                (
                    "$SYS/broker/bytes/received",
                    m.bytes_received.get().to_string(),
                ),
                ("$SYS/broker/bytes/sent", m.bytes_sent.get().to_string()),
                (
                    "$SYS/broker/messages/dropped",
                    m.dropped_total().to_string(),
                ),
                (
                    "$SYS/broker/clients/slow",
                    m.slow_consumers.get().to_string(),
                ),
            ];
            for (topic, value) in values {
                let m = Publication::new(topic.into(), Bytes::from(value), 0, true);
                publish(&broker.router, m).await;
            }
        }
    });
}
